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

use arena_common::auth::{Identity, Role};
use arena_common::body::read_json;
use arena_common::db::Db;
use arena_common::ids::Uuid;
use arena_common::ollama::policy::{self, Policy};
use arena_common::ollama::{ChatChunk, ChatRequest, Message, OllamaError, Options, Step, Stream};
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
        usage: usage::Call::start(&db, &call_for, &body.model, Kind::Chat).await?,
        model: body.model.clone(),
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

/// A model call in progress: its usage record, and where it is written.
struct Call {
    usage: usage::Call,
    model: String,
    db: Db,
}

impl Call {
    /// Notes a generated token.
    fn token(&mut self) {
        self.usage.token();
    }

    /// Records the call as succeeded with Ollama's final figures; the answer
    /// to give (without the message).
    async fn succeeded(self, last: &ChatChunk) -> Answer {
        let outcome = self.usage.outcome(last);
        let ms = |ns: Option<u64>| ns.map(|ns| ns as f64 / 1e6);
        let timings = Timings {
            first_token_ms: outcome.first_token_ms,
            total_ms: outcome.duration_ms,
            load_ms: ms(last.load_duration),
            prompt_eval_ms: ms(last.prompt_eval_duration),
            eval_ms: ms(last.eval_duration),
            tokens_per_second: last
                .eval_duration
                .filter(|&ns| ns > 0)
                .map(|ns| f64::from(outcome.completion_tokens) / (ns as f64 / 1e9)),
        };
        self.usage
            .record(&self.db, Status::Succeeded, &outcome)
            .await;
        Answer {
            model: self.model,
            message: None,
            done_reason: last.done_reason.clone(),
            usage: Usage {
                prompt_tokens: outcome.prompt_tokens,
                completion_tokens: outcome.completion_tokens,
                total_tokens: outcome.prompt_tokens + outcome.completion_tokens,
            },
            timings,
        }
    }

    /// Records the call as failed (or cancelled) with what was generated so far;
    /// the problem to answer with.
    async fn ended_early(self, status: Status, error: Option<OllamaError>) -> Problem {
        let outcome = self
            .usage
            .early_outcome(0, error.as_ref().map(ToString::to_string));
        self.usage.record(&self.db, status, &outcome).await;
        match error {
            Some(error) => error.into(),
            None => Problem::upstream_unavailable("the model stopped before it finished"),
        }
    }

    async fn failed(self, error: OllamaError) -> Problem {
        self.ended_early(Status::Failed, Some(error)).await
    }
}

/// Reads the whole answer for a client that wants it in one piece.
async fn collect(mut stream: Stream<ChatChunk>, mut call: Call) -> Result<Answer, Problem> {
    match stream.whole(|_| call.token()).await {
        Ok((content, last)) => {
            let mut answer = call.succeeded(&last).await;
            answer.message = Some(Message {
                role: "assistant".to_owned(),
                content,
            });
            Ok(answer)
        }
        Err(error) => Err(call.failed(error).await),
    }
}

/// Passes each token on as an event, then `done` or `error`; stops (and drops the
/// Ollama stream) when the client has gone.
async fn relay(mut stream: Stream<ChatChunk>, mut events: sse::Sender, mut call: Call) {
    let failure = loop {
        match stream.step().await {
            Step::Token(content) => {
                call.token();
                let token = serde_json::json!({ "content": content });
                if events.send("token", &token).await.is_err() {
                    drop(stream);
                    call.ended_early(Status::Cancelled, None).await;
                    return;
                }
            }
            Step::Done(last) => {
                let answer = call.succeeded(&last).await;
                let _ = events.send("done", &answer).await;
                return;
            }
            Step::Failed(error) => break call.failed(error).await,
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
