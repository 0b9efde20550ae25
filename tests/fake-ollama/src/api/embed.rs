//! Embeddings: `POST /api/embed`. Any model can embed (Ollama allows it), with vectors as
//! long as its embedding length.

use hyper::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Ctx, KeepAliveField, Options, keep_alive, load, parse};
use crate::http::{self, ApiError, HttpResponse};
use crate::reply::words;
use crate::vectors::{embedding, normalised};

#[derive(Deserialize)]
struct EmbedRequest {
    #[serde(default)]
    model: String,
    /// A string or an array of strings.
    #[serde(default)]
    input: Value,
    /// Whether an input longer than the context is cut to fit (the default) or refused.
    truncate: Option<bool>,
    /// Shortens the vectors to this many numbers (renormalised), when fewer than the model's.
    #[serde(default)]
    dimensions: usize,
    options: Option<Options>,
    keep_alive: Option<KeepAliveField>,
}

#[derive(Serialize)]
struct EmbedResponse<'a> {
    model: &'a str,
    embeddings: Vec<Vec<f32>>,
    #[serde(skip_serializing_if = "is_zero")]
    total_duration: u64,
    #[serde(skip_serializing_if = "is_zero")]
    load_duration: u64,
    #[serde(skip_serializing_if = "is_zero")]
    prompt_eval_count: u64,
}

fn is_zero(value: &u64) -> bool {
    *value == 0
}

pub(super) fn embed(ctx: &Ctx, body: &[u8]) -> Result<HttpResponse, ApiError> {
    let request: EmbedRequest = parse(body)?;
    let inputs = inputs(request.input)?;
    let keep_alive = keep_alive(request.keep_alive)?;
    if request.model.is_empty() {
        return Err(ApiError::bad_request("model is required"));
    }
    let model = ctx
        .find(&request.model)
        .ok_or_else(|| ApiError::not_found(format!("model '{}' not found", request.model)))?;
    load(
        ctx,
        &model,
        keep_alive,
        &request.options.unwrap_or_default(),
    );
    if inputs.is_empty() {
        // Ollama answers an empty input with the model and no vectors, nothing else.
        let empty = EmbedResponse {
            model: &request.model,
            embeddings: Vec::new(),
            total_duration: 0,
            load_duration: 0,
            prompt_eval_count: 0,
        };
        return Ok(http::json(StatusCode::OK, &empty));
    }
    let loaded = ctx.started.elapsed();
    let context = usize::try_from(model.context_length).unwrap_or(usize::MAX);
    let mut embeddings = Vec::with_capacity(inputs.len());
    let mut tokens_used = 0;
    for input in &inputs {
        let mut tokens = words(input);
        if tokens.len() > context {
            if request.truncate == Some(false) {
                return Err(ApiError::bad_request(
                    "the input length exceeds the context length",
                ));
            }
            tokens.truncate(context);
        }
        tokens_used += tokens.len();
        let mut vector = embedding(&tokens.concat(), model.embedding_length);
        if (1..vector.len()).contains(&request.dimensions) {
            let shortened: Vec<f64> = vector[..request.dimensions]
                .iter()
                .map(|&v| f64::from(v))
                .collect();
            vector = normalised(&shortened);
        }
        embeddings.push(vector);
    }
    let response = EmbedResponse {
        model: &request.model,
        embeddings,
        total_duration: ctx.started.elapsed().as_nanos() as u64,
        load_duration: loaded.as_nanos() as u64,
        prompt_eval_count: tokens_used as u64,
    };
    Ok(http::json(StatusCode::OK, &response))
}

/// The texts to embed: `input` as a string (none if empty) or an array of strings.
fn inputs(input: Value) -> Result<Vec<String>, ApiError> {
    let invalid = || ApiError::bad_request("invalid input type");
    match input {
        Value::Null => Ok(Vec::new()),
        Value::String(text) if text.is_empty() => Ok(Vec::new()),
        Value::String(text) => Ok(vec![text]),
        Value::Array(items) => items
            .into_iter()
            .map(|item| match item {
                Value::String(text) => Ok(text),
                _ => Err(invalid()),
            })
            .collect(),
        _ => Err(invalid()),
    }
}
