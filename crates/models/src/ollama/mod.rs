//! Ollama's HTTP API over the embedded models: the same paths, NDJSON
//! streams and error shapes as Ollama, so the components cannot tell which
//! one answers.

mod catalog;
mod chat;
mod completion;
mod embed;
mod error;
mod info;
mod options;
mod registry;
mod wire;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::{delete, get, post};
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::net::TcpListener;

pub use catalog::{ALL as CATALOG, Entry, Kind};
pub use info::OLLAMA_API_VERSION;
pub use registry::Models;

use error::ApiError;

/// The API's routes over `models`.
pub fn router(models: Arc<Models>) -> Router {
    Router::new()
        .route("/", get(info::root).head(info::root))
        .route("/api/version", get(info::version))
        .route("/api/tags", get(info::tags))
        .route("/api/ps", get(info::ps))
        .route("/api/show", post(info::show))
        .route("/api/pull", post(info::pull))
        .route("/api/delete", delete(info::delete))
        .route("/api/chat", post(chat::chat))
        .route("/api/generate", post(chat::generate))
        .route("/api/embed", post(embed::embed))
        .route("/api/embeddings", post(embed::embeddings))
        .with_state(models)
}

/// Serves the API on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    models: Arc<Models>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(models))
        .with_graceful_shutdown(shutdown)
        .await
}

/// A request body as Ollama reads it: JSON whatever the Content-Type, and a
/// 400 saying what is wrong otherwise.
fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request("missing request body"));
    }
    serde_json::from_slice(body).map_err(|error| ApiError::bad_request(error.to_string()))
}

/// The model a request names: a 400 without a name, Ollama's 404 for one
/// that is not built in.
fn named_model(name: &str) -> Result<&'static Entry, ApiError> {
    if name.trim().is_empty() {
        return Err(ApiError::bad_request("model is required"));
    }
    catalog::find(name).ok_or_else(|| ApiError::model_not_found(name))
}

/// [`named_model`], refused with a 400 when it does another job than `kind`.
fn model_for(name: &str, kind: Kind) -> Result<&'static Entry, ApiError> {
    let entry = named_model(name)?;
    match entry.kind == kind {
        true => Ok(entry),
        false => Err(ApiError::unsupported(entry, kind)),
    }
}

/// Ollama's durations: nanoseconds.
fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// Whether `keep_alive` asks to unload the model once answered (`0`, `"0"`, `"0s"`...).
fn releases_model(keep_alive: &Option<Value>) -> bool {
    match keep_alive {
        Some(Value::Number(number)) => number.as_f64() == Some(0.0),
        Some(Value::String(text)) => {
            let digits = text.trim_end_matches(|c: char| c.is_ascii_alphabetic());
            !digits.is_empty() && digits.parse::<f64>() == Ok(0.0)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_a_zero_keep_alive_releases_the_model() {
        for zero in [json!(0), json!("0"), json!("0s"), json!("0m")] {
            assert!(releases_model(&Some(zero.clone())), "{zero}");
        }
        for other in [json!(-1), json!("5m"), json!("-1"), json!(""), json!(null)] {
            assert!(!releases_model(&Some(other.clone())), "{other}");
        }
        assert!(!releases_model(&None));
    }

    #[test]
    fn an_empty_or_malformed_body_is_a_400_saying_so() {
        let empty = parse::<wire::ModelRequest>(b"  ").unwrap_err();
        assert_eq!(empty.message(), "missing request body");
        let malformed = parse::<wire::ModelRequest>(b"{\"model\": 3}").unwrap_err();
        assert!(
            malformed.message().contains("invalid type"),
            "{}",
            malformed.message()
        );
    }
}
