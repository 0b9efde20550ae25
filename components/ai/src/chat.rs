//! `POST /v1/ai/chat`: a chat answer from a model, streamed token by token as
//! server-sent events (`"stream": true` or `Accept: text/event-stream`) or whole.
//!
//! The stream's events:
//!
//! | Event | Data | When |
//! |---|---|---|
//! | `token` | `{"content": "..."}` | as soon as Ollama yields each token |
//! | `done` | [`Answer`] without the message: why it stopped, usage, timings | once, at the end |
//! | `error` | `{"code", "detail"}` | the model or the connection to it failed part-way |
//!
//! Every call is recorded in `model_calls` (see `arena_common::usage`) with
//! Ollama's token counts; quotas are checked first. A client that disconnects
//! stops the generation: the next token finds no one to send to, the Ollama
//! stream is dropped, and the call is recorded as `cancelled`.

use std::time::Instant;

use arena_common::auth::{Identity, Role};
use arena_common::body::read_json;
use arena_common::db::Db;
use arena_common::ids::Uuid;
use arena_common::ollama::{ChatChunk, ChatRequest, Message, OllamaError, Options, Stream};
use arena_common::problem::responses::{
    Forbidden, InvalidParameters, NotFound, QuotaExceeded, Unauthorized, UpstreamUnavailable,
    ValidationFailed,
};
use arena_common::usage::{self, CallFor, Kind, Status};
use arena_common::validate::{Validate, Validator};
use arena_common::{Problem, json, sse};
use http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::policy::{self, Policy};
use crate::{Request, Response, plain};

/// The roles a chat message may have.
const ROLES: [&str; 4] = ["system", "user", "assistant", "tool"];

/// A chat request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ChatBody {
    /// An installed model, e.g. `llama3.2:1b`.
    model: String,
    /// The conversation so far, oldest first: 1 to 1000 messages.
    messages: Vec<Message>,
    options: Option<Options>,
    /// `true`: stream the answer as server-sent events.
    #[serde(default)]
    stream: bool,
    /// The agent the call is for, for usage and quotas.
    agent_id: Option<Uuid>,
    /// The discussion the call is for, for usage and quotas.
    discussion_id: Option<Uuid>,
}

impl Validate for ChatBody {
    fn validate(&self, v: &mut Validator) {
        v.length("model", &self.model, 1..=200);
        v.length("messages", &self.messages, 1..=1000);
        for (n, message) in self.messages.iter().enumerate() {
            v.check(
                format_args!("messages[{n}].role"),
                ROLES.contains(&message.role.as_str()),
                format!(
                    "must be one of {}, got {:?}",
                    ROLES.join(", "),
                    message.role
                ),
            );
        }
    }
}

/// A whole answer, or (without `message`) the `done` event of a stream.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Answer {
    model: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<Message>,
    /// Why generation stopped: `stop` (the model finished), `length` (the token bound).
    done_reason: Option<String>,
    usage: Usage,
    timings: Timings,
}

/// Tokens, as Ollama counted them.
#[derive(Debug, Default, Serialize, ToSchema)]
pub(crate) struct Usage {
    prompt_tokens: u32,
    completion_tokens: u32,
    total_tokens: u32,
}

/// Milliseconds.
#[derive(Debug, Default, Serialize, ToSchema)]
pub(crate) struct Timings {
    /// From Arena's call to the first token, as Arena measured it.
    first_token_ms: Option<f64>,
    /// The whole call, as Arena measured it.
    total_ms: f64,
    /// Ollama's own figures: loading the model, reading the prompt, generating.
    load_ms: Option<f64>,
    prompt_eval_ms: Option<f64>,
    eval_ms: Option<f64>,
    /// Generated tokens per second of generation, by Ollama's clock.
    tokens_per_second: Option<f64>,
}

/// Chat with a model
///
/// Answers the conversation with the model's next message. With `"stream": true`
/// (or `Accept: text/event-stream`) the tokens arrive as `token` events as the
/// model produces them, then a `done` event with usage and timings, or an `error`
/// event if the model fails part-way. Generation parameters are checked against
/// their ranges and the deployment's policy (allowed models, a token ceiling); token
/// quotas are enforced. Members and admins.
#[utoipa::path(
    post,
    path = "/v1/ai/chat",
    tag = "ai",
    operation_id = "createChat",
    request_body = ChatBody,
    responses(
        (status = 200, description = "The answer (JSON), or its event stream (`text/event-stream`).",
            content((Answer = "application/json"), (String = "text/event-stream"))),
        ValidationFailed, InvalidParameters, Unauthorized, Forbidden, NotFound, QuotaExceeded,
        UpstreamUnavailable,
    ),
)]
pub(crate) async fn post(req: &mut Request) -> Result<Response, Problem> {
    let caller = Identity::from_request(req)?;
    caller.require(Role::Member)?;
    let body: ChatBody = read_json(req).await?;
    let policy = Policy::from_variables().await?;
    policy.check_model(&body.model)?;
    let options = policy.bound(body.options)?;
    let call_for = CallFor {
        user_id: caller.user_id,
        agent_id: body.agent_id,
        discussion_id: body.discussion_id,
    };
    let (db, ollama) = policy::within_quotas(&call_for).await?;

    let call = Call {
        id: usage::start(&db, &call_for, &body.model, Kind::Chat).await?,
        model: body.model.clone(),
        started: Instant::now(),
        first_token_ms: None,
        completion_tokens: 0,
        db,
    };
    let request = ChatRequest {
        model: &body.model,
        messages: &body.messages,
        stream: true,
        options: Some(&options),
    };
    let stream = match ollama.chat(req, &request).await {
        Ok(stream) => stream,
        Err(error) => return Err(call.failed(error).await),
    };
    if body.stream || sse::wanted(req) {
        let (events, response) = sse::channel();
        spin_sdk::wasip3::spawn(relay(stream, events, call));
        spin_sdk::http::IntoResponse::into_response(response)
            .map_err(|error| Problem::internal(format!("starting the event stream: {error:?}")))
    } else {
        plain(json(StatusCode::OK, &collect(stream, call).await?))
    }
}

/// A model call in progress, and what is known of it so far.
struct Call {
    id: Uuid,
    model: String,
    started: Instant,
    first_token_ms: Option<f64>,
    completion_tokens: u32,
    db: Db,
}

impl Call {
    fn elapsed_ms(&self) -> f64 {
        self.started.elapsed().as_secs_f64() * 1000.0
    }

    /// Notes a generated token.
    fn token(&mut self) {
        if self.first_token_ms.is_none() {
            self.first_token_ms = Some(self.elapsed_ms());
        }
        self.completion_tokens += 1;
    }

    /// Records the call as succeeded with Ollama's final figures; the answer
    /// to give (without the message).
    async fn succeeded(self, last: &ChatChunk) -> Answer {
        let prompt_tokens = last.prompt_eval_count.unwrap_or(0);
        let completion_tokens = last.eval_count.unwrap_or(self.completion_tokens);
        let ms = |ns: Option<u64>| ns.map(|ns| ns as f64 / 1e6);
        let timings = Timings {
            first_token_ms: self.first_token_ms,
            total_ms: self.elapsed_ms(),
            load_ms: ms(last.load_duration),
            prompt_eval_ms: ms(last.prompt_eval_duration),
            eval_ms: ms(last.eval_duration),
            tokens_per_second: last
                .eval_duration
                .filter(|&ns| ns > 0)
                .map(|ns| f64::from(completion_tokens) / (ns as f64 / 1e9)),
        };
        let outcome = usage::Outcome {
            prompt_tokens,
            completion_tokens,
            first_token_ms: self.first_token_ms,
            duration_ms: timings.total_ms,
            load_ns: last.load_duration,
            prompt_eval_ns: last.prompt_eval_duration,
            eval_ns: last.eval_duration,
            error: None,
        };
        self.record(Status::Succeeded, outcome).await;
        Answer {
            model: self.model,
            message: None,
            done_reason: last.done_reason.clone(),
            usage: Usage {
                prompt_tokens,
                completion_tokens,
                total_tokens: prompt_tokens + completion_tokens,
            },
            timings,
        }
    }

    /// Records the call as failed (or cancelled) with what was generated so far;
    /// the problem to answer with.
    async fn ended_early(self, status: Status, error: Option<OllamaError>) -> Problem {
        let outcome = usage::Outcome {
            completion_tokens: self.completion_tokens,
            first_token_ms: self.first_token_ms,
            duration_ms: self.elapsed_ms(),
            error: error.as_ref().map(ToString::to_string),
            ..usage::Outcome::default()
        };
        self.record(status, outcome).await;
        match error {
            Some(error) => error.into(),
            None => Problem::upstream_unavailable("the model stopped before it finished"),
        }
    }

    async fn failed(self, error: OllamaError) -> Problem {
        self.ended_early(Status::Failed, Some(error)).await
    }

    /// Writes the outcome. The caller's answer does not depend on it: a failure to
    /// record is logged, never turned into an error the client sees mid-stream.
    async fn record(&self, status: Status, outcome: usage::Outcome) {
        if let Err(error) = usage::finish(&self.db, self.id, status, &outcome).await {
            eprintln!("recording model call {}: {error}", self.id);
        }
    }
}

/// Reads the whole answer for a client that wants it in one piece.
async fn collect(mut stream: Stream<ChatChunk>, mut call: Call) -> Result<Answer, Problem> {
    let mut content = String::new();
    loop {
        match stream.next().await {
            Some(Ok(chunk)) if chunk.error.is_some() => {
                let message = chunk.error.unwrap_or_default();
                return Err(call.failed(OllamaError::Protocol(message)).await);
            }
            Some(Ok(chunk)) if chunk.done => {
                let mut answer = call.succeeded(&chunk).await;
                answer.message = Some(Message {
                    role: "assistant".to_owned(),
                    content,
                });
                return Ok(answer);
            }
            Some(Ok(chunk)) => {
                if let Some(message) = chunk.message.filter(|m| !m.content.is_empty()) {
                    call.token();
                    content.push_str(&message.content);
                }
            }
            Some(Err(error)) => return Err(call.failed(error).await),
            None => return Err(call.ended_early(Status::Failed, None).await),
        }
    }
}

/// Passes each token on as an event, then `done` or `error`; stops (and drops the
/// Ollama stream) when the client has gone.
async fn relay(mut stream: Stream<ChatChunk>, mut events: sse::Sender, mut call: Call) {
    let failure = loop {
        match stream.next().await {
            Some(Ok(chunk)) if chunk.error.is_some() => {
                break call
                    .failed(OllamaError::Protocol(chunk.error.unwrap_or_default()))
                    .await;
            }
            Some(Ok(chunk)) if chunk.done => {
                let answer = call.succeeded(&chunk).await;
                let _ = events.send("done", &answer).await;
                return;
            }
            Some(Ok(chunk)) => {
                let Some(message) = chunk.message.filter(|m| !m.content.is_empty()) else {
                    continue;
                };
                call.token();
                let token = serde_json::json!({ "content": message.content });
                if events.send("token", &token).await.is_err() {
                    drop(stream);
                    call.ended_early(Status::Cancelled, None).await;
                    return;
                }
            }
            Some(Err(error)) => break call.failed(error).await,
            None => break call.ended_early(Status::Failed, None).await,
        }
    };
    let error = serde_json::json!({ "code": failure.code(), "detail": failure.detail() });
    let _ = events.send("error", &error).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(value: serde_json::Value) -> Result<(), Problem> {
        serde_json::from_value::<ChatBody>(value)
            .unwrap()
            .validated()
    }

    #[test]
    fn a_conversation_needs_a_model_and_messages_with_known_roles() {
        let ok = serde_json::json!({
            "model": "llama3.2:1b",
            "messages": [{ "role": "system", "content": "Be brief." }, { "role": "user", "content": "Hi" }]
        });
        assert!(body(ok).is_ok());
        let problem = body(serde_json::json!({
            "model": "",
            "messages": [{ "role": "wizard", "content": "Hi" }]
        }))
        .unwrap_err();
        let fields: Vec<&str> = problem.errors().iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["model", "messages[0].role"]);
    }

    #[test]
    fn an_empty_conversation_is_refused() {
        let problem = body(serde_json::json!({ "model": "m", "messages": [] })).unwrap_err();
        assert_eq!(problem.errors()[0].field, "messages");
    }
}
