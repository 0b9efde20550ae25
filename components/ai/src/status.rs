//! `GET /v1/ai/status`: whether Ollama answers, for a dashboard.
//!
//! Always `200`, Ollama down or not: the answer is the report, and a dashboard
//! shows `reachable: false` with the `error` rather than failing itself. The probe
//! asks for Ollama's version and its loaded models at once, with a deadline of at
//! most [`PROBE_TIMEOUT`], so a stalled Ollama makes a slow report, not a hung one.

use std::time::{Duration, Instant};

use arena_common::auth::Identity;
use arena_common::ollama::{LoadedModel, OLLAMA_URL, Ollama, TIMEOUT_VARIABLE};
use arena_common::problem::responses::Unauthorized;
use arena_common::time::Timestamp;
use arena_common::{Problem, json, variables};
use futures::future;
use http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;

use crate::{Request, Response, plain};

/// The longest the probe waits for Ollama, whatever the deployment's deadline for
/// model calls (which may be minutes, for a slow model).
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Ollama as Arena sees it now.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AiStatus {
    /// Whether Ollama answered.
    reachable: bool,
    /// The Ollama Arena is configured to use, without any credentials in it.
    url: String,
    /// Ollama's version, if it answered.
    version: Option<String>,
    /// The models in memory now; empty if Ollama did not say.
    loaded_models: Vec<Loaded>,
    /// How long the probe took, in milliseconds.
    latency_ms: f64,
    /// What went wrong, if anything.
    error: Option<String>,
}

/// A model loaded in memory.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Loaded {
    name: String,
    /// In memory, in bytes.
    size: u64,
    /// Of `size`, how much is in GPU memory.
    size_vram: u64,
    /// When Ollama unloads it if it stays unused.
    expires_at: Option<Timestamp>,
}

impl From<LoadedModel> for Loaded {
    fn from(model: LoadedModel) -> Self {
        Self {
            name: model.name,
            size: model.size,
            size_vram: model.size_vram,
            expires_at: model.expires_at.and_then(|at| at.parse().ok()),
        }
    }
}

/// Retrieve the AI status
///
/// Whether Ollama answers, its version and the models it has loaded, and how long
/// it took to say so. Always `200`: an unreachable Ollama is `reachable: false`
/// with the `error`.
#[utoipa::path(
    get,
    path = "/v1/ai/status",
    tag = "ai",
    operation_id = "retrieveAiStatus",
    responses(
        (status = 200, description = "Ollama's status.", body = AiStatus),
        Unauthorized,
    ),
)]
pub(crate) async fn get(req: &mut Request) -> Result<Response, Problem> {
    Identity::from_request(req)?;
    let url = variables::text(OLLAMA_URL).await?;
    let seconds: u64 = variables::parsed(TIMEOUT_VARIABLE).await?;
    let timeout = Duration::from_secs(seconds.max(1)).min(PROBE_TIMEOUT);
    let ollama = Ollama::new(url.as_str(), timeout);

    let started = Instant::now();
    let (version, running) = future::join(ollama.version(req), ollama.running(req)).await;
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;

    let status = match (version, running) {
        (Ok(version), Ok(running)) => AiStatus {
            reachable: true,
            url: redact(&url),
            version: Some(version.version),
            loaded_models: running.models.into_iter().map(Loaded::from).collect(),
            latency_ms,
            error: None,
        },
        (Ok(version), Err(error)) => AiStatus {
            reachable: true,
            url: redact(&url),
            version: Some(version.version),
            loaded_models: Vec::new(),
            latency_ms,
            error: Some(format!("listing the loaded models: {error}")),
        },
        (Err(error), _) => AiStatus {
            reachable: false,
            url: redact(&url),
            version: None,
            loaded_models: Vec::new(),
            latency_ms,
            error: Some(error.to_string()),
        },
    };
    plain(json(StatusCode::OK, &status))
}

/// `url` without a trailing slash or any `user:password@`, which any signed-in
/// user would otherwise read.
fn redact(url: &str) -> String {
    let url = url.trim().trim_end_matches('/');
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let host = authority.rsplit('@').next().unwrap_or(authority);
    let scheme = if scheme.is_empty() {
        String::new()
    } else {
        format!("{scheme}://")
    };
    format!("{scheme}{host}{path}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_url_shown_loses_credentials_and_trailing_slashes() {
        assert_eq!(redact("http://127.0.0.1:11434/"), "http://127.0.0.1:11434");
        assert_eq!(
            redact("https://ada:s3cret@ollama.example/api/"),
            "https://ollama.example/api"
        );
        assert_eq!(
            redact("http://ollama:11434/p@th"),
            "http://ollama:11434/p@th"
        );
        assert_eq!(redact("ollama:11434"), "ollama:11434");
    }

    #[test]
    fn a_loaded_model_expires_in_utc() {
        let loaded: LoadedModel = serde_json::from_value(serde_json::json!({
            "name": "llama3.2:1b", "model": "llama3.2:1b", "size": 2000, "size_vram": 1500,
            "expires_at": "2024-06-04T14:38:31.83753-07:00"
        }))
        .unwrap();
        let loaded = serde_json::to_value(Loaded::from(loaded)).unwrap();
        assert_eq!(loaded["expires_at"], "2024-06-04T21:38:31.837530Z");
        assert_eq!(loaded["size_vram"], 1500);
    }
}
