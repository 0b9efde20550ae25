//! `POST /api/embed` (one text or many) and the older `POST /api/embeddings`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use serde_json::{Value, json};

use super::catalog::Kind;
use super::error::ApiError;
use super::registry::Models;
use super::wire::{EmbedRequest, EmbeddingsRequest};
use super::{model_for, nanos, parse, releases_model};
use crate::embedding::{EmbedError, Embeddings};

pub async fn embed(
    State(models): State<Arc<Models>>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let received = Instant::now();
    let request: EmbedRequest = parse(&body)?;
    let entry = model_for(&request.model, Kind::Embedding)?;
    if request.dimensions == Some(0) {
        return Err(ApiError::bad_request("dimensions must be at least 1"));
    }
    let texts = request.input.into_texts();
    let (mut embeddings, load_duration) =
        run(&models, texts, request.truncate.unwrap_or(true)).await?;
    if let Some(dimensions) = request.dimensions {
        for vector in &mut embeddings.vectors {
            shorten(vector, dimensions);
        }
    }
    if releases_model(&request.keep_alive) {
        models.unload(entry).await;
    }
    Ok(Json(json!({
        "model": entry.name,
        "embeddings": embeddings.vectors,
        "total_duration": nanos(received.elapsed()),
        "load_duration": nanos(load_duration),
        "prompt_eval_count": embeddings.prompt_tokens,
    })))
}

pub async fn embeddings(
    State(models): State<Arc<Models>>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let request: EmbeddingsRequest = parse(&body)?;
    model_for(&request.model, Kind::Embedding)?;
    let texts = match request.prompt.is_empty() {
        true => Vec::new(),
        false => vec![request.prompt],
    };
    let (embeddings, _) = run(&models, texts, true).await?;
    let embedding = embeddings.vectors.into_iter().next().unwrap_or_default();
    Ok(Json(json!({ "embedding": embedding })))
}

/// Embeds `texts` on the blocking pool once an inference slot is free.
async fn run(
    models: &Models,
    texts: Vec<String>,
    truncate: bool,
) -> Result<(Embeddings, Duration), ApiError> {
    let embedder = models.embedder().await?;
    let slot = models.inference_slot().await;
    let model = Arc::clone(&embedder.model);
    let embeddings = tokio::task::spawn_blocking(move || {
        let _slot = slot;
        model.embed(&texts, truncate)
    })
    .await
    .map_err(|error| ApiError::internal(anyhow::anyhow!("embedding panicked: {error}")))?
    .map_err(|error| match error {
        EmbedError::TooLong {
            index,
            tokens,
            limit,
        } => ApiError::bad_request(format!(
            "input length exceeds the context length: input {index} has {tokens} tokens, \
             the model takes {limit} (send \"truncate\": true to cut it)"
        )),
        EmbedError::Model(error) => ApiError::internal(error),
    })?;
    Ok((embeddings, embedder.load_duration))
}

/// The first `dimensions` of a unit vector, scaled back to unit length (as
/// Ollama does for models trained to allow it).
fn shorten(vector: &mut Vec<f32>, dimensions: usize) {
    vector.truncate(dimensions);
    let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        vector.iter_mut().for_each(|x| *x /= norm);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shortened_vector_is_unit_length_again() {
        let mut vector = vec![0.6, 0.0, 0.8];
        shorten(&mut vector, 2);
        assert_eq!(vector, [1.0, 0.0]);
    }
}
