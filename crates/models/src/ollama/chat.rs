//! `POST /api/chat` and `POST /api/generate`.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::State;
use axum::response::Response;
use serde_json::Value;

use super::catalog::{Entry, Kind};
use super::completion::{self, Completion, Shape};
use super::error::ApiError;
use super::options;
use super::registry::Models;
use super::wire::{ChatRequest, GenerateRequest};
use super::{model_for, parse, releases_model};
use crate::generation::{ChatMessage, ChatModel, Role};

pub async fn chat(State(models): State<Arc<Models>>, body: Bytes) -> Result<Response, ApiError> {
    let received = Instant::now();
    let request: ChatRequest = parse(&body)?;
    let entry = model_for(&request.model, Kind::Completion)?;
    refuse(request.format.is_some(), "structured output (format)")?;
    refuse(request.tools.is_some(), "tools")?;
    refuse(thinks(&request.think), "thinking")?;
    refuse(
        request
            .messages
            .iter()
            .any(|message| message.images.is_some()),
        "images",
    )?;
    let mut options = options::sampling(&request.options)?;
    let unload_after = releases_model(&request.keep_alive);
    if request.messages.is_empty() {
        return load_only(&models, entry, Shape::Chat, unload_after).await;
    }

    let model = models.chat_model().await?;
    options.num_ctx = options.num_ctx.min(model.model.context_length());
    let messages: Vec<ChatMessage> = request
        .messages
        .into_iter()
        .map(|message| ChatMessage {
            role: message.role,
            content: message.content,
        })
        .collect();
    let prompt = fit(&model.model, &messages, options.num_ctx)?;
    Completion {
        shape: Shape::Chat,
        entry,
        model,
        prompt,
        options,
        received,
        stream: request.stream.unwrap_or(true),
        unload_after,
    }
    .respond(models)
    .await
}

pub async fn generate(
    State(models): State<Arc<Models>>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let received = Instant::now();
    let request: GenerateRequest = parse(&body)?;
    let entry = model_for(&request.model, Kind::Completion)?;
    refuse(request.format.is_some(), "structured output (format)")?;
    refuse(request.suffix.is_some(), "fill-in-the-middle (suffix)")?;
    refuse(request.template.is_some(), "custom templates")?;
    refuse(request.images.is_some(), "images")?;
    refuse(thinks(&request.think), "thinking")?;
    let mut options = options::sampling(&request.options)?;
    let unload_after = releases_model(&request.keep_alive);
    if request.prompt.is_empty() {
        return load_only(&models, entry, Shape::Generate, unload_after).await;
    }

    let model = models.chat_model().await?;
    options.num_ctx = options.num_ctx.min(model.model.context_length());
    let text = match request.raw {
        true => request.prompt,
        false => {
            let system = request.system.map(|content| ChatMessage {
                role: Role::System,
                content,
            });
            let user = ChatMessage {
                role: Role::User,
                content: request.prompt,
            };
            model
                .model
                .render_chat(&system.into_iter().chain([user]).collect::<Vec<_>>())
        }
    };
    // A previous answer's `context` continues that conversation.
    let mut prompt = request.context.unwrap_or_default();
    prompt.extend(model.model.tokenize(&text).map_err(ApiError::internal)?);
    if prompt.len() >= options.num_ctx {
        return Err(too_long(prompt.len(), options.num_ctx));
    }
    Completion {
        shape: Shape::Generate,
        entry,
        model,
        prompt,
        options,
        received,
        stream: request.stream.unwrap_or(true),
        unload_after,
    }
    .respond(models)
    .await
}

/// The chat's prompt, within `num_ctx` with room for at least one token of
/// answer: as Ollama does, system messages stay and the oldest others go first,
/// but never the latest message.
fn fit(model: &ChatModel, messages: &[ChatMessage], num_ctx: usize) -> Result<Vec<u32>, ApiError> {
    let mut dropped = 0;
    loop {
        let kept = kept_messages(messages, dropped);
        let prompt = model
            .tokenize(&model.render_chat(&kept))
            .map_err(ApiError::internal)?;
        let others_left = kept.iter().filter(|m| m.role != Role::System).count();
        if prompt.len() < num_ctx {
            return Ok(prompt);
        }
        if others_left <= 1 {
            return Err(too_long(prompt.len(), num_ctx));
        }
        dropped += 1;
    }
}

/// The messages without the `dropped` oldest non-system ones.
fn kept_messages(messages: &[ChatMessage], dropped: usize) -> Vec<ChatMessage> {
    let mut skipped = 0;
    messages
        .iter()
        .filter(|message| {
            let skip = message.role != Role::System && skipped < dropped;
            skipped += usize::from(skip);
            !skip
        })
        .cloned()
        .collect()
}

fn too_long(tokens: usize, num_ctx: usize) -> ApiError {
    ApiError::bad_request(format!(
        "input length exceeds the context length: {tokens} tokens, num_ctx {num_ctx}"
    ))
}

/// A 400 for a feature the embedded models lack, rather than ignoring it.
fn refuse(asked: bool, feature: &str) -> Result<(), ApiError> {
    match asked {
        true => Err(ApiError::bad_request(format!(
            "the embedded models do not support {feature}"
        ))),
        false => Ok(()),
    }
}

/// `think` asks for thinking unless it is absent or false.
fn thinks(think: &Option<Value>) -> bool {
    !matches!(think, None | Some(Value::Null) | Some(Value::Bool(false)))
}

async fn load_only(
    models: &Models,
    entry: &Entry,
    shape: Shape,
    unload: bool,
) -> Result<Response, ApiError> {
    if unload {
        models.unload(entry).await;
        return Ok(completion::loaded_only(entry, shape, "unload"));
    }
    models.chat_model().await?;
    Ok(completion::loaded_only(entry, shape, "load"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(role: Role, content: &str) -> ChatMessage {
        ChatMessage {
            role,
            content: content.to_owned(),
        }
    }

    #[test]
    fn dropping_messages_keeps_system_ones_and_goes_oldest_first() {
        let messages = [
            message(Role::System, "s"),
            message(Role::User, "u1"),
            message(Role::Assistant, "a1"),
            message(Role::User, "u2"),
        ];
        let contents = |dropped| -> Vec<String> {
            kept_messages(&messages, dropped)
                .into_iter()
                .map(|m| m.content)
                .collect()
        };
        assert_eq!(contents(0), ["s", "u1", "a1", "u2"]);
        assert_eq!(contents(1), ["s", "a1", "u2"]);
        assert_eq!(contents(2), ["s", "u2"]);
    }

    #[test]
    fn only_an_explicit_request_asks_for_thinking() {
        assert!(!thinks(&None));
        assert!(!thinks(&Some(Value::Bool(false))));
        assert!(thinks(&Some(Value::Bool(true))));
        assert!(thinks(&Some(Value::String("high".into()))));
    }
}
