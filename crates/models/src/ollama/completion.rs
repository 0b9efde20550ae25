//! Running a generation for `/api/chat` and `/api/generate`: on the blocking
//! pool once an inference slot is free, one NDJSON line per token as the model
//! produces it (or one JSON answer), and the statistics on the last line.
//!
//! A client that goes away drops the receiving end of the token channel; the
//! model's next token then finds nobody listening and generation stops.

use std::convert::Infallible;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use axum::Json;
use axum::body::{Body, Bytes};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::catalog::Entry;
use super::error::ApiError;
use super::nanos;
use super::registry::{Loaded, Models};
use super::wire::Stats;
use crate::generation::{ChatModel, GenerateError, Generation, SamplingOptions};

/// Tokens buffered between the model and a slow client.
const CHANNEL_DEPTH: usize = 64;

/// Which endpoint's lines to write.
#[derive(Debug, Clone, Copy)]
pub enum Shape {
    /// `{"message": {"role": "assistant", "content": ...}}`
    Chat,
    /// `{"response": ...}`, and the token ids as `context` at the end.
    Generate,
}

/// A generation ready to run.
pub struct Completion {
    pub shape: Shape,
    pub entry: &'static Entry,
    pub model: Loaded<ChatModel>,
    pub prompt: Vec<u32>,
    pub options: SamplingOptions,
    /// When the request arrived (for `total_duration`).
    pub received: Instant,
    pub stream: bool,
    /// Unload the model once done (`keep_alive: 0`).
    pub unload_after: bool,
}

enum Event {
    Token(String),
    Done(Result<Generation, GenerateError>),
}

impl Completion {
    pub async fn respond(self, models: Arc<Models>) -> Result<Response, ApiError> {
        // Waiting here keeps the request in the queue; a client leaving drops it.
        let slot = models.inference_slot().await;
        let (sender, mut receiver) = mpsc::channel(CHANNEL_DEPTH);
        let model = Arc::clone(&self.model.model);
        let (prompt, options) = (self.prompt.clone(), self.options.clone());
        tokio::task::spawn_blocking(move || {
            let mut send = |text: &str| match sender.blocking_send(Event::Token(text.to_owned())) {
                Ok(()) => ControlFlow::Continue(()),
                Err(_) => ControlFlow::Break(()),
            };
            let outcome = model.generate(&prompt, &options, &mut send);
            drop(slot);
            // Nobody may be listening any more; then there is no one to tell.
            let _ = sender.blocking_send(Event::Done(outcome));
        });
        // The answer starts with the first token, so that a request the model
        // refuses (token ids it does not know...) is still a plain 400.
        let first = match receiver.recv().await {
            Some(Event::Done(Err(error))) => return Err(refused(error)),
            Some(first) => first,
            None => return Err(ended_early()),
        };
        let lines = Lines {
            completion: self,
            models,
        };
        match lines.completion.stream {
            true => Ok(lines.stream(first, receiver)),
            false => lines.whole(first, receiver).await,
        }
    }
}

fn refused(error: GenerateError) -> ApiError {
    match error {
        GenerateError::Model(error) => ApiError::internal(error),
        caller => ApiError::bad_request(caller.to_string()),
    }
}

fn ended_early() -> ApiError {
    ApiError::internal(anyhow::anyhow!("the generation ended without an answer"))
}

struct Lines {
    completion: Completion,
    models: Arc<Models>,
}

impl Lines {
    fn stream(self, first: Event, receiver: mpsc::Receiver<Event>) -> Response {
        // The stream owns the receiver: when the client goes away, hyper drops
        // the stream, and with it the channel the model writes to.
        let start = Some((self, Some(first), receiver));
        let lines = futures::stream::unfold(start, |state| async move {
            let (lines, first, mut receiver) = state?;
            let event = match first {
                Some(first) => first,
                None => receiver.recv().await?,
            };
            let (line, next) = match event {
                Event::Token(text) => (lines.chunk(&text), Some((lines, None, receiver))),
                Event::Done(Ok(generation)) => {
                    let last = lines.last(&generation.tail, &generation);
                    lines.finish().await;
                    (last, None)
                }
                Event::Done(Err(error)) => (json!({ "error": format!("{error:#}") }), None),
            };
            Some((Ok::<_, Infallible>(ndjson(&line)), next))
        });
        (
            [(header::CONTENT_TYPE, "application/x-ndjson")],
            Body::from_stream(lines),
        )
            .into_response()
    }

    async fn whole(
        self,
        first: Event,
        mut receiver: mpsc::Receiver<Event>,
    ) -> Result<Response, ApiError> {
        let mut text = String::new();
        let mut next = Some(first);
        loop {
            let event = match next.take() {
                Some(event) => event,
                None => receiver.recv().await.ok_or_else(ended_early)?,
            };
            match event {
                Event::Token(piece) => text.push_str(&piece),
                Event::Done(Ok(generation)) => {
                    text.push_str(&generation.tail);
                    let answer = self.last(&text, &generation);
                    self.finish().await;
                    return Ok(Json(answer).into_response());
                }
                Event::Done(Err(error)) => return Err(refused(error)),
            }
        }
    }

    async fn finish(&self) {
        if self.completion.unload_after {
            self.models.unload(self.completion.entry).await;
        }
    }

    /// A line carrying one token's text.
    fn chunk(&self, text: &str) -> Value {
        let mut line = self.head(text);
        line["done"] = json!(false);
        line
    }

    /// The last line: the rest of the text, and the statistics.
    fn last(&self, text: &str, generation: &Generation) -> Value {
        let mut line = self.head(text);
        line["done"] = json!(true);
        let stats = Stats {
            done_reason: generation.done_reason.as_str(),
            total_duration: nanos(self.completion.received.elapsed()),
            load_duration: nanos(self.completion.model.load_duration),
            prompt_eval_count: generation.prompt_tokens,
            prompt_eval_duration: nanos(generation.prompt_duration),
            eval_count: generation.generated_tokens,
            eval_duration: nanos(generation.generation_duration),
        };
        merge(&mut line, json!(stats));
        if let Shape::Generate = self.shape() {
            line["context"] = json!(generation.context);
        }
        line
    }

    fn head(&self, text: &str) -> Value {
        let mut line = json!({
            "model": self.completion.entry.name,
            "created_at": timestamp(SystemTime::now()),
        });
        match self.shape() {
            Shape::Chat => line["message"] = json!({ "role": "assistant", "content": text }),
            Shape::Generate => line["response"] = json!(text),
        }
        line
    }

    fn shape(&self) -> Shape {
        self.completion.shape
    }
}

/// An answer that runs no generation: the model was loaded (`done_reason:
/// "load"`) or unloaded (`"unload"`), as Ollama answers an empty request.
pub fn loaded_only(entry: &Entry, shape: Shape, done_reason: &str) -> Response {
    let mut line = json!({
        "model": entry.name,
        "created_at": timestamp(SystemTime::now()),
        "done": true,
        "done_reason": done_reason,
    });
    match shape {
        Shape::Chat => line["message"] = json!({ "role": "assistant", "content": "" }),
        Shape::Generate => line["response"] = json!(""),
    }
    Json(line).into_response()
}

fn ndjson(line: &Value) -> Bytes {
    let mut bytes = line.to_string().into_bytes();
    bytes.push(b'\n');
    Bytes::from(bytes)
}

fn merge(line: &mut Value, fields: Value) {
    if let (Value::Object(line), Value::Object(fields)) = (line, fields) {
        line.extend(fields);
    }
}

/// RFC 3339 with nanoseconds, as Ollama writes `created_at`.
pub fn timestamp(time: SystemTime) -> String {
    humantime::format_rfc3339_nanos(time).to_string()
}
