//! The models installed in Ollama: listed, inspected, pulled and deleted.
//!
//! | Route | Who | Answers |
//! |---|---|---|
//! | `GET /v1/ai/models` | anyone | `200`: `{items}`, every installed model |
//! | `GET /v1/ai/models/{name}` | anyone | `200`: the model; `404` if it is not installed |
//! | `POST /v1/ai/models/pull` | admins | `200` `text/event-stream`: the download's progress |
//! | `DELETE /v1/ai/models/{name}` | admins | `204`; `404` if it is not installed |
//!
//! A model's size, digest and date come from Ollama's `/api/tags`; its context
//! length and capabilities only from `/api/show`, one call per model, which the
//! list makes all at once rather than one after another.
//!
//! The pull's events:
//!
//! | Event | Data | When |
//! |---|---|---|
//! | `progress` | `{status, digest?, total?, completed?}` | each line Ollama writes (`pulling manifest`, bytes of a layer, `success`) |
//! | `done` | `{model}` | once, after Ollama said `success` |
//! | `error` | `{code, detail}` | Ollama refused the pull part-way, or the connection broke |
//!
//! An error before Ollama starts answering is a plain problem instead, as nothing
//! has been streamed yet. A client that leaves stops the pull: its stream is
//! dropped, which closes the connection, and Ollama cancels a pull whose request
//! is gone (what was downloaded stays, and a later pull resumes it).

use arena_common::auth::{Identity, Role};
use arena_common::body::read_json;
use arena_common::ollama::{
    InstalledModel, Ollama, OllamaError, PullProgress, Show, Stream, same_model,
};
use arena_common::problem::responses::{
    Forbidden, NotFound, PayloadTooLarge, Unauthorized, UnsupportedMediaType, UpstreamUnavailable,
    ValidationFailed,
};
use arena_common::time::Timestamp;
use arena_common::validate::{Validate, Validator};
use arena_common::{Problem, json, no_content, sse};
use futures::future;
use http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{Request, Response, plain};

/// An installed model.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Model {
    /// Ollama's name for it, with its tag: `llama3.2:1b`.
    name: String,
    /// On disk, in bytes.
    size: u64,
    /// The architecture family: `llama`, `qwen2`, `gemma3`, ...
    family: Option<String>,
    /// Parameters, as Ollama writes them: `8.0B`.
    parameter_size: Option<String>,
    /// The weights' quantization: `Q4_K_M`.
    quantization: Option<String>,
    /// The context window the model was trained with, in tokens; `null` when its
    /// metadata does not say.
    context_length: Option<u64>,
    /// What it can do: `completion`, `embedding`, `tools`, `vision`, ...
    capabilities: Vec<String>,
    /// When it was last pulled or changed.
    modified_at: Option<Timestamp>,
    /// The digest of its manifest.
    digest: Option<String>,
}

impl Model {
    fn new(installed: InstalledModel, show: Show) -> Self {
        let context_length = show.context_length();
        let details = installed.details;
        Self {
            name: installed.name,
            size: installed.size,
            family: details.family,
            parameter_size: details.parameter_size,
            quantization: details.quantization_level,
            context_length,
            capabilities: show.capabilities,
            // Ollama writes local times with nanoseconds; Arena's timestamps are UTC.
            modified_at: installed.modified_at.and_then(|at| at.parse().ok()),
            digest: installed.digest,
        }
    }
}

/// The installed models.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ModelList {
    items: Vec<Model>,
}

/// List models
///
/// Every model installed in Ollama, in Ollama's order (most recently changed
/// first), with its details.
#[utoipa::path(
    get,
    path = "/v1/ai/models",
    tag = "ai",
    operation_id = "listModels",
    responses(
        (status = 200, description = "The installed models.", body = ModelList),
        Unauthorized, UpstreamUnavailable,
    ),
)]
pub(crate) async fn list(req: &mut Request) -> Result<Response, Problem> {
    Identity::from_request(req)?;
    let ollama = Ollama::from_variables().await?;
    let installed = ollama.tags(req).await?.models;
    let shows = future::join_all(installed.iter().map(|model| ollama.show(req, &model.name))).await;
    let mut items = Vec::with_capacity(installed.len());
    for (model, show) in installed.into_iter().zip(shows) {
        match show {
            Ok(show) => items.push(Model::new(model, show)),
            // Deleted between the two calls: no longer installed, so not listed.
            Err(error) if error.is_not_found() => {}
            Err(error) => return Err(error.into()),
        }
    }
    plain(json(StatusCode::OK, &ModelList { items }))
}

/// Retrieve a model
///
/// One installed model, with its details.
#[utoipa::path(
    get,
    path = "/v1/ai/models/{name}",
    tag = "ai",
    operation_id = "retrieveModel",
    params(("name" = String, Path, description = "The model, e.g. `llama3.2:1b`; a name without a tag means `:latest`.")),
    responses(
        (status = 200, description = "The model.", body = Model),
        ValidationFailed, Unauthorized, NotFound, UpstreamUnavailable,
    ),
)]
pub(crate) async fn get(req: &mut Request, name: &str) -> Result<Response, Problem> {
    Identity::from_request(req)?;
    let ollama = Ollama::from_variables().await?;
    let (tags, show) = future::join(ollama.tags(req), ollama.show(req, name)).await;
    let show = show.map_err(|error| or_not_installed(name, error))?;
    let installed = tags?
        .models
        .into_iter()
        .find(|model| same_model(&model.name, name))
        .ok_or_else(|| not_installed(name))?;
    plain(json(StatusCode::OK, &Model::new(installed, show)))
}

/// What to pull.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PullBody {
    /// The model to download, as the Ollama library names it: `llama3.2:1b`,
    /// `hf.co/org/repo:Q4_K_M`. 1 to 200 characters.
    model: String,
}

impl Validate for PullBody {
    fn validate(&self, v: &mut Validator) {
        v.length("model", &self.model, 1..=200);
    }
}

/// Pull a model
///
/// Downloads a model into Ollama (or updates it), reporting progress as
/// server-sent events: `progress` for each step, then `done`, or `error` if the
/// download fails part-way. Admins only.
#[utoipa::path(
    post,
    path = "/v1/ai/models/pull",
    tag = "ai",
    operation_id = "pullModel",
    request_body = PullBody,
    responses(
        (status = 200, description = "The progress, as `progress` events with a `PullProgress` each, then `done` (`{model}`) or `error` (`{code, detail}`).",
            content((String = "text/event-stream"))),
        ValidationFailed, Unauthorized, Forbidden, NotFound, PayloadTooLarge, UnsupportedMediaType,
        UpstreamUnavailable,
    ),
)]
pub(crate) async fn pull(req: &mut Request) -> Result<Response, Problem> {
    Identity::from_request(req)?.require(Role::Admin)?;
    let body: PullBody = read_json(req).await?;
    let ollama = Ollama::from_variables().await?;
    let progress = ollama.pull(req, &body.model).await?;
    let (events, response) = sse::channel();
    spin_sdk::wasip3::spawn(relay(progress, events, body.model));
    spin_sdk::http::IntoResponse::into_response(response)
        .map_err(|error| Problem::internal(format!("starting the event stream: {error:?}")))
}

/// Passes each progress line on, then `done` or `error`; stops (dropping the
/// Ollama stream) when the client has gone.
async fn relay(mut progress: Stream<PullProgress>, mut events: sse::Sender, model: String) {
    let mut succeeded = false;
    let failure = loop {
        match progress.next().await {
            Some(Ok(PullProgress {
                error: Some(message),
                ..
            })) => {
                break Problem::upstream_unavailable(format!(
                    "Ollama could not pull {model:?}: {message}"
                ));
            }
            Some(Ok(line)) => {
                succeeded = line.status == "success";
                if events.send("progress", &line).await.is_err() {
                    return;
                }
            }
            Some(Err(error)) => break error.into(),
            None if succeeded => {
                let _ = events
                    .send("done", &serde_json::json!({ "model": model }))
                    .await;
                return;
            }
            None => {
                break Problem::upstream_unavailable(format!(
                    "Ollama stopped pulling {model:?} before it finished"
                ));
            }
        }
    };
    let error = serde_json::json!({ "code": failure.code(), "detail": failure.detail() });
    let _ = events.send("error", &error).await;
}

/// Delete a model
///
/// Removes an installed model from Ollama's disk. Admins only.
#[utoipa::path(
    delete,
    path = "/v1/ai/models/{name}",
    tag = "ai",
    operation_id = "deleteModel",
    params(("name" = String, Path, description = "The model, e.g. `llama3.2:1b`; a name without a tag means `:latest`.")),
    responses(
        (status = 204, description = "The model is gone."),
        ValidationFailed, Unauthorized, Forbidden, NotFound, UpstreamUnavailable,
    ),
)]
pub(crate) async fn delete(req: &mut Request, name: &str) -> Result<Response, Problem> {
    Identity::from_request(req)?.require(Role::Admin)?;
    let ollama = Ollama::from_variables().await?;
    ollama
        .delete(req, name)
        .await
        .map_err(|error| or_not_installed(name, error))?;
    plain(no_content())
}

/// The 404 for a model that is not installed.
fn not_installed(name: &str) -> Problem {
    Problem::not_found(format!("the model {name:?} is not installed"))
}

/// Ollama's 404 as [`not_installed`], naming the model as the caller did; other
/// errors as they are.
fn or_not_installed(name: &str, error: OllamaError) -> Problem {
    if error.is_not_found() {
        not_installed(name)
    } else {
        error.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_model_joins_its_tags_entry_and_its_details_in_utc() {
        let installed: InstalledModel = serde_json::from_value(serde_json::json!({
            "name": "llama3.2:1b",
            "model": "llama3.2:1b",
            "size": 1321098329,
            "digest": "baf6a787fdff",
            "modified_at": "2024-12-07T09:40:13.603419479-08:00",
            "details": { "family": "llama", "parameter_size": "1.2B", "quantization_level": "Q8_0" }
        }))
        .unwrap();
        let show: Show = serde_json::from_value(serde_json::json!({
            "model_info": { "general.architecture": "llama", "llama.context_length": 131072 },
            "capabilities": ["completion", "tools"]
        }))
        .unwrap();
        let model = serde_json::to_value(Model::new(installed, show)).unwrap();
        assert_eq!(
            model,
            serde_json::json!({
                "name": "llama3.2:1b",
                "size": 1321098329u64,
                "family": "llama",
                "parameter_size": "1.2B",
                "quantization": "Q8_0",
                "context_length": 131072,
                "capabilities": ["completion", "tools"],
                "modified_at": "2024-12-07T17:40:13.603419Z",
                "digest": "baf6a787fdff"
            })
        );
    }

    #[test]
    fn ollamas_404_names_the_model_asked_for_and_other_errors_pass_through() {
        let missing = OllamaError::Status {
            status: StatusCode::NOT_FOUND,
            message: "model 'x' not found".into(),
        };
        let problem = or_not_installed("x", missing);
        assert_eq!(problem.status(), StatusCode::NOT_FOUND);
        assert_eq!(problem.detail(), r#"the model "x" is not installed"#);
        let down = or_not_installed("x", OllamaError::Unreachable("refused".into()));
        assert_eq!(down.status(), StatusCode::SERVICE_UNAVAILABLE);
    }

    #[test]
    fn a_pull_names_one_model_and_nothing_else() {
        let body = |value| serde_json::from_value::<PullBody>(value);
        assert!(
            body(serde_json::json!({ "model": "llama3.2:1b" }))
                .unwrap()
                .validated()
                .is_ok()
        );
        let problem = body(serde_json::json!({ "model": "" }))
            .unwrap()
            .validated()
            .unwrap_err();
        assert_eq!(problem.errors()[0].field, "model");
        let long = "m".repeat(201);
        assert!(
            body(serde_json::json!({ "model": long }))
                .unwrap()
                .validated()
                .is_err()
        );
        assert!(body(serde_json::json!({ "model": "m", "insecure": true })).is_err());
    }
}
