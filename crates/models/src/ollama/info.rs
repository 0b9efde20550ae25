//! The endpoints that describe the models: `/api/version`, `/api/tags`,
//! `/api/show`, `/api/ps`, and `/api/pull` and `/api/delete`, which have
//! nothing to do for models built into the server.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::catalog::{self, Entry, Kind};
use super::completion::timestamp;
use super::error::ApiError;
use super::registry::Models;
use super::wire::{Details, ModelRequest};
use super::{named_model, parse};

/// The Ollama API version this server speaks.
pub const OLLAMA_API_VERSION: &str = "0.12.0";

/// Ollama answers its root so tools can tell it is up.
pub async fn root() -> &'static str {
    "Ollama is running"
}

pub async fn version() -> Json<Value> {
    Json(json!({ "version": OLLAMA_API_VERSION }))
}

pub async fn tags(State(models): State<Arc<Models>>) -> Json<Value> {
    let listed: Vec<Value> = models
        .installed()
        .into_iter()
        .map(|entry| {
            let weights = models.store().path(entry.asset, entry.weights);
            let modified = std::fs::metadata(weights)
                .and_then(|metadata| metadata.modified())
                .unwrap_or(SystemTime::UNIX_EPOCH);
            json!({
                "name": entry.name,
                "model": entry.name,
                "modified_at": timestamp(modified),
                "size": entry.size(),
                "digest": entry.digest(),
                "details": details(entry),
            })
        })
        .collect();
    Json(json!({ "models": listed }))
}

pub async fn show(State(models): State<Arc<Models>>, body: Bytes) -> Result<Json<Value>, ApiError> {
    let request: ModelRequest = parse(&body)?;
    let entry = installed(&models, request.model())?;
    let (model_info, parameters, template) = match entry.kind {
        // Read from the file's header, as Ollama does: showing a model does not load it.
        Kind::Completion => {
            let description = models.chat_description().await?;
            let mut info = description.metadata;
            // What this server runs rather than what the file allows: clients
            // size `num_ctx` by it.
            info.insert(
                format!("{}.context_length", description.architecture),
                json!(description.context_length),
            );
            let stop = "stop \"<|im_start|>\"\nstop \"<|im_end|>\"";
            (
                Value::Object(info),
                stop,
                crate::generation::OLLAMA_TEMPLATE,
            )
        }
        Kind::Embedding => {
            let model = models.embedder().await?.model;
            (Value::Object(model.description()), "", "")
        }
    };
    Ok(Json(json!({
        "license": entry.license,
        "modelfile": format!("# Built into the arena host\nFROM {}\n", entry.name),
        "parameters": parameters,
        "template": template,
        "details": details(entry),
        "model_info": model_info,
        "capabilities": [entry.kind.capability()],
        "modified_at": timestamp(SystemTime::now()),
    })))
}

pub async fn ps(State(models): State<Arc<Models>>) -> Json<Value> {
    // Embedded models stay loaded until asked to unload: no expiry, as
    // Ollama shows a model kept alive forever (a date far ahead).
    let forever = SystemTime::now() + Duration::from_secs(100 * 365 * 24 * 3600);
    let running: Vec<Value> = models
        .running()
        .await
        .into_iter()
        .map(|(entry, _since)| {
            json!({
                "name": entry.name,
                "model": entry.name,
                "size": entry.size(),
                "digest": entry.digest(),
                "details": details(entry),
                "expires_at": timestamp(forever),
                "size_vram": 0,
            })
        })
        .collect();
    Json(json!({ "models": running }))
}

/// Pulling a built-in model has nothing to download: its progress is one line.
pub async fn pull(State(models): State<Arc<Models>>, body: Bytes) -> Result<Response, ApiError> {
    let request: ModelRequest = parse(&body)?;
    let name = request.model();
    if catalog::find(name).is_none() {
        return Err(ApiError::bad_request(format!(
            "model '{name}' cannot be pulled: the embedded server serves only its \
             built-in models ({})",
            built_in_names()
        )));
    }
    installed(&models, name)?;
    let done = json!({ "status": "success" });
    Ok(match request.stream.unwrap_or(true) {
        true => (
            [(header::CONTENT_TYPE, "application/x-ndjson")],
            format!("{done}\n"),
        )
            .into_response(),
        false => Json(done).into_response(),
    })
}

pub async fn delete(
    State(models): State<Arc<Models>>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let request: ModelRequest = parse(&body)?;
    let entry = installed(&models, request.model())?;
    Err(ApiError::bad_request(format!(
        "model '{}' is built into the embedded server and cannot be deleted",
        entry.name
    )))
}

/// The model named, if its files are in the store; else Ollama's 404.
fn installed(models: &Models, name: &str) -> Result<&'static Entry, ApiError> {
    let entry = named_model(name)?;
    match models.is_installed(entry) {
        true => Ok(entry),
        false => Err(ApiError::not_installed(entry)),
    }
}

fn built_in_names() -> String {
    catalog::ALL.map(|entry| entry.name).join(", ")
}

fn details(entry: &Entry) -> Details {
    Details {
        parent_model: "",
        format: entry.format,
        family: entry.family,
        families: [entry.family],
        parameter_size: entry.parameter_size,
        quantization_level: entry.quantization_level,
    }
}
