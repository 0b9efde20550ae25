//! Model management: `GET /api/version`, `GET /api/tags`, `POST /api/show`, `GET /api/ps`,
//! `POST /api/pull`, `DELETE /api/delete`.

use std::time::SystemTime;

use hyper::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::{Ctx, Details, parse};
use crate::clock::rfc3339;
use crate::http::{self, ApiError, Cut, HttpResponse, Lines};
use crate::model::{Model, ModelKind};
use crate::vectors::digest;

/// The Ollama version the fake claims to be.
pub const OLLAMA_VERSION: &str = "0.12.3";

/// What Ollama answers when the registry has no such model.
const NOT_IN_REGISTRY: &str = "pull model manifest: file does not exist";

/// The prompt template `/api/show` reports for chat models (llama 3's).
const CHAT_TEMPLATE: &str = "{{ if .System }}<|start_header_id|>system<|end_header_id|>\n\n\
{{ .System }}<|eot_id|>{{ end }}{{ if .Prompt }}<|start_header_id|>user<|end_header_id|>\n\n\
{{ .Prompt }}<|eot_id|>{{ end }}<|start_header_id|>assistant<|end_header_id|>\n\n\
{{ .Response }}<|eot_id|>";

/// The parameters `/api/show` reports for chat models, in `ollama show`'s layout.
const CHAT_PARAMETERS: &str = "stop                           \"<|start_header_id|>\"\n\
stop                           \"<|end_header_id|>\"\n\
stop                           \"<|eot_id|>\"";

pub(super) fn version() -> HttpResponse {
    http::json(StatusCode::OK, &json!({ "version": OLLAMA_VERSION }))
}

#[derive(Serialize)]
struct ListedModel<'a> {
    name: &'a str,
    model: &'a str,
    modified_at: String,
    size: u64,
    digest: String,
    details: Details<'a>,
}

/// `GET /api/tags`: the installed models, most recently modified first.
pub(super) fn tags(ctx: &Ctx) -> HttpResponse {
    let state = ctx.shared.state();
    let mut installed: Vec<_> = state.models.iter().collect();
    installed.sort_by_key(|installed| std::cmp::Reverse(installed.modified_at));
    let models: Vec<ListedModel> = installed
        .into_iter()
        .map(|installed| ListedModel {
            name: &installed.model.name,
            model: &installed.model.name,
            modified_at: rfc3339(installed.modified_at),
            size: installed.model.size,
            digest: digest(&installed.model.name),
            details: Details::from(&installed.model),
        })
        .collect();
    http::json(StatusCode::OK, &json!({ "models": models }))
}

#[derive(Serialize)]
struct RunningModel<'a> {
    name: &'a str,
    model: &'a str,
    size: u64,
    digest: String,
    details: Details<'a>,
    expires_at: String,
    size_vram: u64,
    context_length: u64,
}

/// `GET /api/ps`: models a request used within their `keep_alive`, longest-staying first.
pub(super) fn ps(ctx: &Ctx) -> HttpResponse {
    let state = ctx.shared.state();
    let mut running = state.running();
    running.sort_by_key(|(_, loaded)| std::cmp::Reverse(loaded.expires_at));
    let models: Vec<RunningModel> = running
        .into_iter()
        .map(|(installed, loaded)| RunningModel {
            name: &installed.model.name,
            model: &installed.model.name,
            size: installed.model.size,
            digest: digest(&installed.model.name),
            details: Details::from(&installed.model),
            expires_at: rfc3339(loaded.expires_at),
            size_vram: installed.model.size,
            context_length: loaded.context_length,
        })
        .collect();
    http::json(StatusCode::OK, &json!({ "models": models }))
}

/// A request naming a model as `model` or (older clients) `name`.
#[derive(Deserialize)]
struct NamedRequest {
    #[serde(default)]
    model: String,
    #[serde(default)]
    name: String,
    stream: Option<bool>,
}

impl NamedRequest {
    fn model(&self) -> &str {
        if self.model.is_empty() {
            &self.name
        } else {
            &self.model
        }
    }
}

#[derive(Serialize)]
struct ShowResponse<'a> {
    modelfile: String,
    #[serde(skip_serializing_if = "str::is_empty")]
    parameters: &'a str,
    template: &'a str,
    details: Details<'a>,
    model_info: Map<String, Value>,
    capabilities: [&'a str; 1],
    modified_at: String,
}

/// `POST /api/show`.
pub(super) fn show(ctx: &Ctx, body: &[u8]) -> Result<HttpResponse, ApiError> {
    let request: NamedRequest = parse(body)?;
    let name = request.model();
    if name.is_empty() {
        return Err(ApiError::bad_request("model is required"));
    }
    let state = ctx.shared.state();
    let installed = state
        .find(name)
        .ok_or_else(|| ApiError::not_found(format!("model '{name}' not found")))?;
    let model = &installed.model;
    let (template, parameters, capability) = match model.kind {
        ModelKind::Chat => (CHAT_TEMPLATE, CHAT_PARAMETERS, "completion"),
        ModelKind::Embedding => ("{{ .Prompt }}", "", "embedding"),
    };
    let architecture = &model.family;
    let mut model_info = Map::new();
    model_info.insert("general.architecture".into(), json!(architecture));
    model_info.insert(
        format!("{architecture}.context_length"),
        json!(model.context_length),
    );
    model_info.insert(
        format!("{architecture}.embedding_length"),
        json!(model.embedding_length),
    );
    let modelfile = format!(
        "# Modelfile generated by \"ollama show\"\n\
         # To build a new Modelfile based on this, replace FROM with:\n\
         # FROM {name}\n\n\
         FROM /root/.ollama/models/blobs/sha256-{blob}\n\
         TEMPLATE \"\"\"{template}\"\"\"\n",
        name = model.name,
        blob = layer_digest(model),
    );
    Ok(http::json(
        StatusCode::OK,
        &ShowResponse {
            modelfile,
            parameters,
            template,
            details: Details::from(model),
            model_info,
            capabilities: [capability],
            modified_at: rfc3339(installed.modified_at),
        },
    ))
}

/// `DELETE /api/delete`: 200 with no body, or 404.
pub(super) fn delete(ctx: &Ctx, body: &[u8]) -> Result<HttpResponse, ApiError> {
    let request: NamedRequest = parse(body)?;
    let name = request.model();
    if name.is_empty() {
        return Err(ApiError::bad_request(format!("name {name:?} is invalid")));
    }
    if ctx.shared.state().remove(name) {
        Ok(http::empty())
    } else {
        Err(ApiError::not_found(format!("model '{name}' not found")))
    }
}

/// One line of pull progress.
#[derive(Serialize)]
struct Progress {
    status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    digest: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    total: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    completed: Option<u64>,
}

impl Progress {
    fn status(status: &str) -> Progress {
        Progress {
            status: status.to_owned(),
            digest: None,
            total: None,
            completed: None,
        }
    }
}

/// The digest of a model's one layer, its weights.
fn layer_digest(model: &Model) -> String {
    digest(&format!("{}/weights", model.name))
}

/// The progress lines Ollama streams while pulling `model`: the manifest, the layer
/// arriving in three steps, then verification; `success` follows once it is installed.
fn progress(model: &Model) -> Vec<Progress> {
    let layer = layer_digest(model);
    let downloading = |completed| Progress {
        status: format!("pulling {}", &layer[..12]),
        digest: Some(format!("sha256:{layer}")),
        total: Some(model.size),
        completed,
    };
    vec![
        Progress::status("pulling manifest"),
        downloading(None),
        downloading(Some(model.size / 2)),
        downloading(Some(model.size)),
        Progress::status("verifying sha256 digest"),
        Progress::status("writing manifest"),
    ]
}

/// `POST /api/pull`. A model the fake's registry lacks fails as in Ollama: streamed, a 200
/// whose second line is `{"error": ...}`; not streamed, a 500.
pub(super) async fn pull(ctx: Ctx, body: &[u8]) -> Result<HttpResponse, ApiError> {
    let request: NamedRequest = parse(body)?;
    let name = request.model();
    if name.is_empty() {
        return Err(ApiError::bad_request("invalid model name"));
    }
    let pullable = {
        let state = ctx.shared.state();
        state
            .registry
            .iter()
            .find(|model| model.is_named(name))
            .cloned()
    };
    let streamed = request.stream != Some(false);
    let Some(model) = pullable else {
        if !streamed {
            return Err(ApiError::Status(
                StatusCode::INTERNAL_SERVER_ERROR,
                NOT_IN_REGISTRY.into(),
            ));
        }
        let (lines, response) = http::ndjson();
        tokio::spawn(async move {
            if lines
                .send(Ok(http::line(&Progress::status("pulling manifest"))))
                .await
                .is_ok()
            {
                let _ = lines
                    .send(Ok(http::line(&json!({ "error": NOT_IN_REGISTRY }))))
                    .await;
            }
        });
        return Ok(response);
    };
    if streamed {
        let (lines, response) = http::ndjson();
        tokio::spawn(stream_pull(ctx, model, lines));
        Ok(response)
    } else {
        for _ in progress(&model) {
            ctx.pause().await;
        }
        if ctx.conditions.cut_after().is_some() {
            return Err(ApiError::Hangup);
        }
        install(&ctx, model);
        Ok(http::json(StatusCode::OK, &Progress::status("success")))
    }
}

/// Streams the pull of `model`, installing it just before `success`; a client leaving
/// midway cancels the pull, as it does in Ollama.
async fn stream_pull(ctx: Ctx, model: Model, lines: Lines) {
    let steps = progress(&model);
    let cut_after = ctx.conditions.cut_after();
    let sent = cut_after.map_or(steps.len(), |limit| limit.min(steps.len()));
    for step in &steps[..sent] {
        ctx.pause().await;
        if lines.send(Ok(http::line(step))).await.is_err() {
            return;
        }
    }
    if cut_after.is_some() {
        let _ = lines.send(Err(Cut)).await;
        return;
    }
    install(&ctx, model);
    let _ = lines
        .send(Ok(http::line(&Progress::status("success"))))
        .await;
}

fn install(ctx: &Ctx, model: Model) {
    ctx.shared.state().install(model, SystemTime::now());
}
