//! `POST /v1/ai/embeddings`: texts in, one vector each out (Ollama's `/api/embed`).

use std::time::Instant;

use arena_common::auth::{Identity, Role};
use arena_common::body::read_json;
use arena_common::ids::Uuid;
use arena_common::problem::responses::{
    Forbidden, InvalidParameters, NotFound, QuotaExceeded, Unauthorized, UpstreamUnavailable,
    ValidationFailed,
};
use arena_common::usage::{self, CallFor, Kind, Status};
use arena_common::validate::{Validate, Validator};
use arena_common::{Problem, json};
use http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{Request, Response, plain};
use arena_common::ollama::policy::{self, Policy};

/// The most texts one request may embed.
const MAX_INPUTS: usize = 512;

/// Texts to embed.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct EmbeddingsBody {
    /// An embedding model, e.g. `all-minilm`.
    model: String,
    /// One text, or a list of 1 to 512.
    input: Input,
    /// The agent the call is for, for usage and quotas.
    agent_id: Option<Uuid>,
    /// The discussion the call is for, for usage and quotas.
    discussion_id: Option<Uuid>,
}

/// One text or several.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub(crate) enum Input {
    One(String),
    Many(Vec<String>),
}

impl Input {
    fn into_texts(self) -> Vec<String> {
        match self {
            Input::One(text) => vec![text],
            Input::Many(texts) => texts,
        }
    }
}

impl Validate for EmbeddingsBody {
    fn validate(&self, v: &mut Validator) {
        v.length("model", &self.model, 1..=200);
        match &self.input {
            Input::One(text) => v.length("input", text, 1..=usize::MAX),
            Input::Many(texts) => {
                v.length("input", texts, 1..=MAX_INPUTS);
                for (n, text) in texts.iter().enumerate() {
                    v.length(format_args!("input[{n}]"), text, 1..=usize::MAX);
                }
            }
        }
    }
}

/// The vectors, in the order of the texts.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Embeddings {
    model: String,
    embeddings: Vec<Vec<f32>>,
    /// The length of every vector.
    dimensions: usize,
    /// Tokens read, as Ollama counted them.
    prompt_tokens: u32,
}

/// Embed texts
///
/// One vector per text, from an embedding model. Recorded in usage and counted
/// against quotas like a chat. Members and admins.
#[utoipa::path(
    post,
    path = "/v1/ai/embeddings",
    tag = "ai",
    operation_id = "createEmbeddings",
    request_body = EmbeddingsBody,
    responses(
        (status = 200, description = "One vector per text.", body = Embeddings),
        ValidationFailed, InvalidParameters, Unauthorized, Forbidden, NotFound, QuotaExceeded,
        UpstreamUnavailable,
    ),
)]
pub(crate) async fn post(req: &mut Request) -> Result<Response, Problem> {
    let caller = Identity::from_request(req)?;
    caller.require(Role::Member)?;
    let body: EmbeddingsBody = read_json(req).await?;
    Policy::from_variables().await?.check_model(&body.model)?;
    let call_for = CallFor {
        user_id: caller.user_id,
        agent_id: body.agent_id,
        discussion_id: body.discussion_id,
    };
    let (db, ollama) = policy::within_quotas(&call_for).await?;

    let texts = body.input.into_texts();
    let id = usage::start(&db, &call_for, &body.model, Kind::Embed).await?;
    let started = Instant::now();
    let result = ollama.embed(req, &body.model, &texts).await;
    let duration_ms = started.elapsed().as_secs_f64() * 1000.0;
    let (status, outcome) = match &result {
        Ok(answer) => (
            Status::Succeeded,
            usage::Outcome {
                prompt_tokens: answer.prompt_eval_count.unwrap_or(0),
                duration_ms,
                ..usage::Outcome::default()
            },
        ),
        Err(error) => (
            Status::Failed,
            usage::Outcome {
                duration_ms,
                error: Some(error.to_string()),
                ..usage::Outcome::default()
            },
        ),
    };
    usage::finish(&db, id, status, &outcome).await?;
    let answer = result?;
    plain(json(
        StatusCode::OK,
        &Embeddings {
            dimensions: answer.embeddings.first().map_or(0, Vec::len),
            prompt_tokens: outcome.prompt_tokens,
            embeddings: answer.embeddings,
            model: body.model,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(value: serde_json::Value) -> Result<(), Problem> {
        serde_json::from_value::<EmbeddingsBody>(value)
            .unwrap()
            .validated()
    }

    #[test]
    fn one_text_or_a_bounded_list_of_non_empty_ones() {
        assert!(check(serde_json::json!({ "model": "m", "input": "hello" })).is_ok());
        assert!(check(serde_json::json!({ "model": "m", "input": ["a", "b"] })).is_ok());
        let problem = check(serde_json::json!({ "model": "m", "input": ["a", ""] })).unwrap_err();
        assert_eq!(problem.errors()[0].field, "input[1]");
        let many: Vec<String> = (0..=MAX_INPUTS).map(|n| n.to_string()).collect();
        let problem = check(serde_json::json!({ "model": "m", "input": many })).unwrap_err();
        assert_eq!(problem.errors()[0].field, "input");
    }
}
