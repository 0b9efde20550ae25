//! The one Ollama client every component uses (AI, discussions, knowledge, code).
//!
//! | Call | Ollama | Answer |
//! |---|---|---|
//! | [`Ollama::version`] | `GET /api/version` | [`Version`] |
//! | [`Ollama::tags`] | `GET /api/tags` | installed models |
//! | [`Ollama::show`] | `POST /api/show` | a model's details and metadata |
//! | [`Ollama::running`] | `GET /api/ps` | models loaded in memory |
//! | [`Ollama::pull`] | `POST /api/pull` | a [`Stream`] of [`PullProgress`] |
//! | [`Ollama::delete`] | `DELETE /api/delete` | |
//! | [`Ollama::chat`] | `POST /api/chat` | a [`Stream`] of [`ChatChunk`]s, token by token |
//! | [`Ollama::embed`] | `POST /api/embed` | one vector per input |
//!
//! Ollama's address is the Spin variable [`OLLAMA_URL`]. Every call has a deadline
//! ([`TIMEOUT_VARIABLE`], in seconds): for the answer's head, and then between one
//! streamed chunk and the next, so a stalled Ollama is an error, never a hang.
//! Generation is always streamed from Ollama, even for a client that wants one
//! answer: that way the deadline covers a slow model too, and dropping the
//! [`Stream`] (a client gone) closes the connection, which stops Ollama generating.
//!
//! Failures are [`OllamaError`]s, which become problems: unreachable or too slow →
//! `503 upstream_unavailable`; Ollama's own `404` → `404 not_found` with its words
//! (`model "x" not found`); its `400` → `400 validation_failed`.
//!
//! A streamed chat answer is read with [`Stream::step`] (token, end, or failure),
//! or whole with [`Stream::whole`]. What a deployment allows of model calls
//! (models, token ceiling, quotas) is [`policy`].

mod ndjson;
pub mod policy;
mod wire;

pub use ndjson::Lines;
pub use wire::*;

use std::collections::VecDeque;
use std::fmt;
use std::pin::pin;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt as _;
use futures::future::{self, Either};
use http::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use spin_sdk::http::body::IncomingBodyExt;
use spin_sdk::wasip3::http::types::ErrorCode;

use crate::{Problem, request, variables};

/// The Spin variable holding Ollama's base URL, e.g. `http://127.0.0.1:11434`. The
/// component's `allowed_outbound_hosts` must list it.
pub const OLLAMA_URL: &str = "ollama_url";

/// The Spin variable holding the deadline, in seconds, for Ollama's answer to
/// begin, and then for each streamed chunk to follow the one before.
pub const TIMEOUT_VARIABLE: &str = "ollama_timeout_seconds";

/// `name` as Ollama lists it: without a tag (no `:` after the last `/`, so a
/// registry's port is not taken for one) it means `:latest`.
pub fn tagged(name: &str) -> String {
    let last = name.rsplit('/').next().unwrap_or(name);
    if last.contains(':') {
        name.to_owned()
    } else {
        format!("{name}:latest")
    }
}

/// Whether two names are the same model to Ollama: tags filled in, case ignored.
pub fn same_model(a: &str, b: &str) -> bool {
    tagged(a).eq_ignore_ascii_case(&tagged(b))
}

/// Why a call to Ollama failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OllamaError {
    /// No connection (refused, unresolvable, reset): Ollama is down or elsewhere.
    Unreachable(String),
    /// No answer, or no next chunk, within the deadline.
    TimedOut(Duration),
    /// Ollama answered with an error status and its `{"error": ...}`.
    Status { status: StatusCode, message: String },
    /// The answer is not what Ollama sends.
    Protocol(String),
}

impl OllamaError {
    /// Whether Ollama said the model (or path) does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, OllamaError::Status { status, .. } if *status == StatusCode::NOT_FOUND)
    }
}

impl fmt::Display for OllamaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OllamaError::Unreachable(cause) => write!(f, "Ollama is not reachable ({cause})"),
            OllamaError::TimedOut(after) => {
                write!(f, "Ollama did not answer within {} s", after.as_secs())
            }
            OllamaError::Status { status, message } => {
                write!(f, "Ollama answered {}: {message}", status.as_u16())
            }
            OllamaError::Protocol(what) => write!(f, "Ollama's answer is malformed: {what}"),
        }
    }
}

impl From<OllamaError> for Problem {
    fn from(error: OllamaError) -> Self {
        match &error {
            OllamaError::Status { status, message } if *status == StatusCode::NOT_FOUND => {
                Problem::not_found(message.clone())
            }
            OllamaError::Status { status, message } if *status == StatusCode::BAD_REQUEST => {
                Problem::validation_failed(format!("the model refused the request: {message}"))
            }
            _ => Problem::upstream_unavailable(error.to_string()).with_retry_after(5),
        }
    }
}

/// A client for one Ollama server, used for one request.
#[derive(Debug, Clone)]
pub struct Ollama {
    base: String,
    timeout: Duration,
}

impl Ollama {
    /// The Ollama the Spin variables name.
    pub async fn from_variables() -> Result<Self, Problem> {
        let base = variables::text(OLLAMA_URL).await?;
        let seconds: u64 = variables::parsed(TIMEOUT_VARIABLE).await?;
        Ok(Self::new(base, Duration::from_secs(seconds.max(1))))
    }

    /// Ollama at `base` (`http://host:port`), with `timeout` as every deadline.
    pub fn new(base: impl Into<String>, timeout: Duration) -> Self {
        let base: String = base.into();
        Self {
            base: base.trim_end_matches('/').to_owned(),
            timeout,
        }
    }

    /// Ollama's version: the cheapest call, a reachability probe.
    pub async fn version<B>(&self, incoming: &http::Request<B>) -> Result<Version, OllamaError> {
        self.json(incoming, Method::GET, "/api/version", None::<&()>)
            .await
    }

    /// The installed models.
    pub async fn tags<B>(&self, incoming: &http::Request<B>) -> Result<Tags, OllamaError> {
        self.json(incoming, Method::GET, "/api/tags", None::<&()>)
            .await
    }

    /// One model's details; `404` if it is not installed.
    pub async fn show<B>(
        &self,
        incoming: &http::Request<B>,
        model: &str,
    ) -> Result<Show, OllamaError> {
        let body = serde_json::json!({ "model": model });
        self.json(incoming, Method::POST, "/api/show", Some(&body))
            .await
    }

    /// The models loaded in memory now.
    pub async fn running<B>(&self, incoming: &http::Request<B>) -> Result<Running, OllamaError> {
        self.json(incoming, Method::GET, "/api/ps", None::<&()>)
            .await
    }

    /// Removes a model; `404` if it is not installed.
    pub async fn delete<B>(
        &self,
        incoming: &http::Request<B>,
        model: &str,
    ) -> Result<(), OllamaError> {
        let body = serde_json::json!({ "model": model });
        self.send(incoming, Method::DELETE, "/api/delete", Some(&body))
            .await
            .map(drop)
    }

    /// Downloads a model, reporting progress line by line.
    pub async fn pull<B>(
        &self,
        incoming: &http::Request<B>,
        model: &str,
    ) -> Result<Stream<PullProgress>, OllamaError> {
        let body = serde_json::json!({ "model": model, "stream": true });
        self.stream(incoming, "/api/pull", &body).await
    }

    /// Generates a chat answer, token by token (`request.stream` is forced on; see
    /// the module docs).
    pub async fn chat<B>(
        &self,
        incoming: &http::Request<B>,
        request: &ChatRequest<'_>,
    ) -> Result<Stream<ChatChunk>, OllamaError> {
        let request = ChatRequest {
            stream: true,
            ..*request
        };
        self.stream(incoming, "/api/chat", &request).await
    }

    /// One embedding per input, in order.
    pub async fn embed<B>(
        &self,
        incoming: &http::Request<B>,
        model: &str,
        inputs: &[String],
    ) -> Result<EmbedResponse, OllamaError> {
        let body = EmbedRequest {
            model,
            input: inputs,
        };
        let answer: EmbedResponse = self
            .json(incoming, Method::POST, "/api/embed", Some(&body))
            .await?;
        if answer.embeddings.len() != inputs.len() {
            return Err(OllamaError::Protocol(format!(
                "{} embeddings for {} inputs",
                answer.embeddings.len(),
                inputs.len()
            )));
        }
        Ok(answer)
    }

    async fn json<B, T: DeserializeOwned>(
        &self,
        incoming: &http::Request<B>,
        method: Method,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> Result<T, OllamaError> {
        let response = self.send(incoming, method, path, body).await?;
        let bytes = self.within(response.into_body().bytes()).await?;
        let bytes = bytes.map_err(|code| OllamaError::Unreachable(format!("{code:?}")))?;
        serde_json::from_slice(&bytes).map_err(|error| OllamaError::Protocol(error.to_string()))
    }

    async fn stream<B, T: DeserializeOwned>(
        &self,
        incoming: &http::Request<B>,
        path: &str,
        body: &impl Serialize,
    ) -> Result<Stream<T>, OllamaError> {
        let response = self.send(incoming, Method::POST, path, Some(body)).await?;
        Ok(Stream {
            chunks: Box::pin(response.into_body().stream()),
            lines: Lines::default(),
            ready: VecDeque::new(),
            timeout: self.timeout,
            waiting_since: None,
            ended: false,
        })
    }

    /// Sends a request; its head must arrive within the deadline, and an error
    /// status becomes [`OllamaError::Status`] with Ollama's message.
    async fn send<B>(
        &self,
        incoming: &http::Request<B>,
        method: Method,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> Result<spin_sdk::http::Response, OllamaError> {
        let bytes = match body {
            Some(body) => serde_json::to_vec(body)
                .map_err(|error| OllamaError::Protocol(format!("encoding the request: {error}")))?,
            None => Vec::new(),
        };
        let call = request::outbound(incoming)
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(spin_sdk::http::FullBody::new(Bytes::from(bytes)))
            .map_err(|error| {
                OllamaError::Protocol(format!("the Ollama URL is invalid: {error}"))
            })?;
        let response = self
            .within(nudged(spin_sdk::http::send(call)))
            .await?
            .map_err(|error| OllamaError::Unreachable(format!("{error:?}")))?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        let body = self
            .within(response.into_body().bytes())
            .await?
            .unwrap_or_default();
        let message = serde_json::from_slice::<ErrorBody>(&body)
            .map(|body| body.error)
            .unwrap_or_else(|_| String::from_utf8_lossy(&body).trim().to_owned());
        Err(OllamaError::Status { status, message })
    }

    /// `work`, unless the deadline passes first.
    async fn within<T>(&self, work: impl Future<Output = T>) -> Result<T, OllamaError> {
        deadline(work, self.timeout).await
    }
}

/// Polls `work`, waking its task once the first time `work` waits.
///
/// Sending a request spawns a task (`wit_bindgen::spawn`) that writes its body.
/// wit-bindgen's executor adds a spawned task to those it polls only after the
/// current poll, and polls it when something next wakes the component's task:
/// from a task that was itself spawned (a turn or a stream going on after the
/// response), nothing may, so the body would never be written and the answer
/// never come. The one wake gets the new task polled.
async fn nudged<T>(work: impl Future<Output = T>) -> T {
    let mut work = pin!(work);
    let mut nudged = false;
    std::future::poll_fn(|cx| match work.as_mut().poll(cx) {
        std::task::Poll::Pending if !nudged => {
            nudged = true;
            cx.waker().wake_by_ref();
            std::task::Poll::Pending
        }
        polled => polled,
    })
    .await
}

async fn deadline<T>(work: impl Future<Output = T>, limit: Duration) -> Result<T, OllamaError> {
    match future::select(pin!(work), pin!(spin_sdk::time::sleep(limit))).await {
        Either::Left((value, _)) => Ok(value),
        Either::Right(_) => Err(OllamaError::TimedOut(limit)),
    }
}

/// A streamed answer, item by item as Ollama writes them. Dropping it closes the
/// connection, which makes Ollama stop.
pub struct Stream<T> {
    chunks: std::pin::Pin<Box<dyn futures::Stream<Item = Result<Bytes, ErrorCode>>>>,
    lines: Lines,
    ready: VecDeque<T>,
    timeout: Duration,
    /// When the wait for the next chunk began: the deadline runs from there, even
    /// across calls a reader gave up on ([`Stream::step_within`]).
    waiting_since: Option<std::time::Instant>,
    ended: bool,
}

impl<T: DeserializeOwned> Stream<T> {
    /// The next item; `None` once the answer has ended. A connection that breaks
    /// or stalls part-way is an error, after which the stream ends.
    pub async fn next(&mut self) -> Option<Result<T, OllamaError>> {
        loop {
            if let Some(item) = self.ready.pop_front() {
                return Some(Ok(item));
            }
            if self.ended {
                return None;
            }
            let waiting_since = *self
                .waiting_since
                .get_or_insert_with(std::time::Instant::now);
            let left = self.timeout.saturating_sub(waiting_since.elapsed());
            let chunk = match deadline(self.chunks.next(), left).await {
                Ok(chunk) => chunk,
                Err(_) => return Some(Err(self.fail(OllamaError::TimedOut(self.timeout)))),
            };
            self.waiting_since = None;
            let decoded = match chunk {
                Some(Ok(bytes)) => self.lines.push(&bytes),
                Some(Err(error)) => {
                    return Some(Err(self.fail(OllamaError::Unreachable(format!(
                        "the stream broke: {error:?}"
                    )))));
                }
                None => {
                    self.ended = true;
                    self.lines.finish().map(|last| last.into_iter().collect())
                }
            };
            match decoded {
                Ok(items) => self.ready.extend(items),
                Err(what) => return Some(Err(self.fail(OllamaError::Protocol(what)))),
            }
        }
    }

    fn fail(&mut self, error: OllamaError) -> OllamaError {
        self.ended = true;
        self.ready.clear();
        error
    }
}

/// What one read of a streamed chat answer gives.
#[derive(Debug, Clone)]
pub enum Step {
    /// Generated text (never empty).
    Token(String),
    /// The last chunk: why generation stopped, token counts and timings.
    Done(ChatChunk),
    /// The model failed part-way (Ollama's `error` line), the connection broke or
    /// stalled, or the answer ended without its last chunk. The stream is over.
    Failed(OllamaError),
}

impl Stream<ChatChunk> {
    /// The next token, the end, or the failure; chunks without text are skipped.
    pub async fn step(&mut self) -> Step {
        loop {
            match self.next().await {
                Some(Ok(chunk)) if chunk.error.is_some() => {
                    let message = chunk.error.unwrap_or_default();
                    return Step::Failed(self.fail(OllamaError::Protocol(message)));
                }
                Some(Ok(chunk)) if chunk.done => return Step::Done(chunk),
                Some(Ok(chunk)) => {
                    if let Some(message) = chunk.message.filter(|m| !m.content.is_empty()) {
                        return Step::Token(message.content);
                    }
                }
                Some(Err(error)) => return Step::Failed(error),
                None => {
                    return Step::Failed(OllamaError::Protocol(
                        "the answer ended before its last chunk".to_owned(),
                    ));
                }
            }
        }
    }

    /// [`step`](Self::step), unless `limit` passes first (`None`), for a reader with
    /// other work on a timer. Nothing is lost when the wait ends: the chunk not yet
    /// read is read by the next call. The per-chunk deadline still applies.
    pub async fn step_within(&mut self, limit: Duration) -> Option<Step> {
        match future::select(pin!(self.step()), pin!(spin_sdk::time::sleep(limit))).await {
            Either::Left((step, _)) => Some(step),
            Either::Right(_) => None,
        }
    }

    /// The rest of the answer, whole: its text and last chunk. `on_token` hears of
    /// each token as it comes (to time the first and count them).
    pub async fn whole(
        &mut self,
        mut on_token: impl FnMut(&str),
    ) -> Result<(String, ChatChunk), OllamaError> {
        let mut content = String::new();
        loop {
            match self.step().await {
                Step::Token(text) => {
                    on_token(&text);
                    content.push_str(&text);
                }
                Step::Done(last) => return Ok((content, last)),
                Step::Failed(error) => return Err(error),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ollamas_own_404_and_400_keep_their_words_and_the_rest_is_unavailable() {
        let status = |status, message: &str| OllamaError::Status {
            status,
            message: message.to_owned(),
        };
        let missing = Problem::from(status(StatusCode::NOT_FOUND, "model \"x\" not found"));
        assert_eq!(missing.status(), StatusCode::NOT_FOUND);
        assert_eq!(missing.detail(), "model \"x\" not found");
        assert_eq!(
            Problem::from(status(StatusCode::BAD_REQUEST, "no")).status(),
            StatusCode::BAD_REQUEST
        );
        for error in [
            OllamaError::Unreachable("ConnectionRefused".into()),
            OllamaError::TimedOut(Duration::from_secs(3)),
            status(StatusCode::INTERNAL_SERVER_ERROR, "out of memory"),
        ] {
            let problem = Problem::from(error);
            assert_eq!(problem.status(), StatusCode::SERVICE_UNAVAILABLE);
            assert!(problem.headers().contains_key(http::header::RETRY_AFTER));
        }
    }

    #[test]
    fn a_name_without_a_tag_means_latest_and_a_registry_port_is_not_a_tag() {
        assert_eq!(tagged("llama3.2"), "llama3.2:latest");
        assert_eq!(tagged("hf.co/org/model:Q4_K_M"), "hf.co/org/model:Q4_K_M");
        assert_eq!(
            tagged("registry.local:5000/org/model"),
            "registry.local:5000/org/model:latest"
        );
        assert!(same_model("LLAMA3.2", "llama3.2:latest"));
        assert!(!same_model("llama3.2", "llama3.2:1b"));
    }

    #[test]
    fn the_base_url_loses_trailing_slashes() {
        assert_eq!(
            Ollama::new("http://127.0.0.1:11434/", Duration::from_secs(1)).base,
            "http://127.0.0.1:11434"
        );
    }
}
