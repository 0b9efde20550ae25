//! Errors as Ollama answers them: a status and `{"error": "..."}`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::catalog::{Entry, Kind};

#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }

    pub fn model_not_found(name: &str) -> ApiError {
        ApiError {
            status: StatusCode::NOT_FOUND,
            message: format!("model '{name}' not found"),
        }
    }

    /// A built-in model whose files were never fetched.
    pub fn not_installed(entry: &Entry) -> ApiError {
        ApiError {
            status: StatusCode::NOT_FOUND,
            message: format!(
                "model '{}' not found: its files are not installed (run `arena models fetch`)",
                entry.name
            ),
        }
    }

    /// A model asked for what it cannot do (chat from an embedding model...).
    pub fn unsupported(entry: &Entry, what: Kind) -> ApiError {
        let what = match what {
            Kind::Completion => "generate",
            Kind::Embedding => "embeddings",
        };
        ApiError::bad_request(format!("\"{}\" does not support {what}", entry.name))
    }

    /// The model could not run: files missing or corrupt, or an engine failure.
    pub fn internal(error: anyhow::Error) -> ApiError {
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: format!("{error:#}"),
        }
    }

    pub fn message(&self) -> &str {
        &self.message
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({ "error": self.message }))).into_response()
    }
}
