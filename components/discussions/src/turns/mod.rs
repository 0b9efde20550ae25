//! The turn engine: `POST /v1/discussions/{discussion_id}/turns` advances one
//! turn, `POST .../turns/current/cancel` stops the one in progress.
//!
//! | Step | Where | Written |
//! |---|---|---|
//! | claim the turn (status, stale lease, live turn, raised hand checked) | [`lease::claim`] | one transaction with the speaker's message when the speaker is known at once |
//! | choose the speaker: round-robin, directed, or a moderator's model call | `speaker`, [`model::Models::moderator_choice`] | the message in a second transaction (moderator) |
//! | build the prompt, condensing old history into the rolling summary | `prompt`, [`runner`] | the summary |
//! | stream the model; every ~100 ms the text, `turn.token`, the lease, a cancel looked for | [`runner`], [`lease::flush`] | one transaction per flush |
//! | end: the message, counts, stop conditions | [`lease::finish`] | one transaction |
//!
//! Three ways to wait: `Accept: text/event-stream` (or `"stream": true`) streams
//! the turn as server-sent events; `Prefer: respond-async` answers `202` with the
//! `generating` message and the turn goes on in the background; otherwise the
//! answer is the finished message (`201`), or the problem the model had (its
//! failed message stored). In every case the turn belongs to the database, not to
//! the connection: a caller who goes away does not stop it.
//!
//! Events on `discussion:<id>`: `turn.choosing` {turn_id} (a moderator's turn
//! claimed), `turn.started` {turn_id, message}, `turn.token` {message_id, offset,
//! content} (`offset`: characters of the message before the chunk),
//! `turn.cancelling`, `turn.completed|cancelled|failed` {turn_id, message, code?,
//! detail?}, `turn.interrupted` (a lease expired), `message.created` {message},
//! `context.updated` (a new rolling summary), `discussion.status_changed`.

pub(crate) mod lease;
mod model;
mod prompt;
mod runner;
mod speaker;
pub(crate) mod stop;

use arena_common::auth::{Access, Identity};
use arena_common::body::read_optional_json;
use arena_common::db::{Db, Tx, transaction};
use arena_common::idempotency::{Idempotency, IdempotencyKeyHeader, Stored, mark_replayed};
use arena_common::ids::{self, Uuid};
use arena_common::ollama::Ollama;
use arena_common::ollama::policy::{self, Policy};
use arena_common::problem::responses::{
    AwaitingParticipant, Forbidden, IdempotencyKeyReused, InvalidParameters, InvalidTransition,
    NoTurnInProgress, NotFound, QuotaExceeded, TurnInProgress, Unauthorized, UnsupportedMediaType,
    UpstreamUnavailable, ValidationFailed,
};
use arena_common::validate::{Validate, Validator};
use arena_common::{Problem, ProblemCode, json, request, sse};
use http::StatusCode;
use http::header::{HeaderValue, LOCATION};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::discussion::{self, Discussion, TurnState, TurnStrategy};
use crate::message::Message;
use crate::{Request, Response, plain};

use lease::TurnRef;
use model::{Models, Speaking};
use runner::{History, Runner};

/// What `POST /turns` may say; the body may be left out.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AdvanceTurn {
    /// The agent participant who speaks: required with the `directed` strategy,
    /// refused with the others.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speaker_id: Option<Uuid>,
    /// `true`: stream the turn as server-sent events, as `Accept:
    /// text/event-stream` does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
}

impl Validate for AdvanceTurn {
    fn validate(&self, _: &mut Validator) {}
}

/// `400` (field `speaker_id`) unless the body names a speaker exactly when the
/// strategy takes one.
fn check_speaker_field(strategy: TurnStrategy, speaker_id: Option<Uuid>) -> Result<(), Problem> {
    let message = match (strategy, speaker_id) {
        (TurnStrategy::Directed, None) => "is required: the discussion's turns are directed",
        (TurnStrategy::Directed, Some(_)) | (_, None) => return Ok(()),
        (strategy, Some(_)) => {
            return Err(Problem::validation_failed(format!(
                "the discussion's turn strategy is {strategy}; only a directed discussion takes a speaker_id"
            ))
            .with_field_error("speaker_id", "is only taken by the directed strategy"));
        }
    };
    Err(Problem::validation_failed(format!("speaker_id {message}"))
        .with_field_error("speaker_id", message))
}

/// How the caller waits for the turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Server-sent events as it happens.
    Stream,
    /// `202` at once; the turn goes on in the background.
    Background,
    /// The finished message.
    Wait,
}

impl Mode {
    fn of<B>(req: &http::Request<B>, body: &AdvanceTurn) -> Self {
        if body.stream == Some(true) || sse::wanted(req) {
            Mode::Stream
        } else if prefers_async(req) {
            Mode::Background
        } else {
            Mode::Wait
        }
    }
}

/// Whether the request carries `Prefer: respond-async` (RFC 7240), among other
/// preferences or not.
fn prefers_async<B>(req: &http::Request<B>) -> bool {
    req.headers()
        .get_all("prefer")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|preference| {
            let name = preference.split([';', '=']).next().unwrap_or_default();
            name.trim().eq_ignore_ascii_case("respond-async")
        })
}

/// The path of a message.
fn message_path(message: &Message) -> String {
    format!(
        "/v1/discussions/{}/messages/{}",
        message.discussion_id, message.message_id
    )
}

/// `status` with `message` as its body and its path as `Location`.
fn with_message(status: StatusCode, message: &Message) -> Result<http::Response<String>, Problem> {
    let mut response = json(status, message)?;
    let location = HeaderValue::from_str(&message_path(message))
        .map_err(|_| Problem::internal("a message path is not a valid header"))?;
    response.headers_mut().insert(LOCATION, location);
    Ok(response)
}

/// The `409` when no agent takes part: there is no one to speak.
fn no_agent() -> Problem {
    Problem::new(
        ProblemCode::InvalidTransition,
        "the discussion has no agent participant to speak; add one before advancing a turn",
    )
}

/// A turn claimed, as the first transaction leaves it.
enum Begun {
    /// The same request (`Idempotency-Key`) was answered before.
    Replay(Stored),
    /// A moderator chooses the speaker before the message exists.
    Choosing {
        discussion: Box<Discussion>,
        turn_id: Uuid,
    },
    /// The speaker's message is started.
    Started(Box<Started>),
}

/// A turn whose message is started: what its runner needs.
struct Started {
    discussion: Discussion,
    speaking: Speaking,
    message: Message,
    turn_id: Uuid,
}

/// Advance a turn
///
/// The next agent speaks: with `round_robin` the agent after the last who spoke;
/// with `directed` the one `speaker_id` names; with `moderator` the one the
/// moderator's model names (the next in order when it names nobody valid). Its
/// model streams the message, which is stored as it grows (events `turn.started`,
/// `turn.token`, then `turn.completed` and `message.created` on the discussion's
/// stream). The discussion must be `active`, with no turn in progress and no raised
/// hand. Stop conditions are checked when the turn ends and may complete the
/// discussion.
///
/// `Accept: text/event-stream` (or `"stream": true`) streams the turn as events:
/// `turn.started` {message}, `token` {content}, then `turn.completed` or
/// `turn.cancelled` {message}, or `turn.failed` {message, code, detail}.
/// `Prefer: respond-async` answers `202` with the `generating` message at once.
/// Otherwise the answer is the finished message; a model failure answers its
/// problem, the `failed` message stored. A caller who disconnects does not stop
/// the turn. A retry with the same `Idempotency-Key` answers `200` with the turn's
/// message as it is now and starts nothing. Its owner and admins.
#[utoipa::path(
    post,
    path = "/v1/discussions/{discussion_id}/turns",
    tag = "discussions",
    operation_id = "advanceTurn",
    params(
        ("discussion_id" = Uuid, Path, description = "The discussion."),
        IdempotencyKeyHeader,
        ("Prefer" = Option<String>, Header, description = "`respond-async`: answer `202` with the `generating` message at once."),
    ),
    request_body(content = Option<AdvanceTurn>, description = "Optional."),
    responses(
        (status = 201, description = "The turn's message, finished (`completed`, or `cancelled` if it was stopped).", body = Message,
            headers(("Location" = String, description = "The message's path."))),
        (status = 200, description = "The message of the turn an earlier request with the same `Idempotency-Key` advanced, as it is now; or, with `text/event-stream`, the turn as server-sent events.",
            content((Message = "application/json"), (String = "text/event-stream")),
            headers(("Idempotent-Replayed" = Option<bool>, description = "`true` on a replay."))),
        (status = 202, description = "`Prefer: respond-async`: the message, `generating`; the turn goes on.", body = Message,
            headers(("Location" = String, description = "The message's path."))),
        ValidationFailed, InvalidParameters, Unauthorized, Forbidden, NotFound,
        InvalidTransition, TurnInProgress, AwaitingParticipant, IdempotencyKeyReused,
        UnsupportedMediaType, QuotaExceeded, UpstreamUnavailable,
    ),
)]
pub(crate) async fn advance(req: &mut Request, id: &str) -> Result<Response, Problem> {
    let caller = Identity::from_request(req)?;
    let discussion_id = ids::parse_id("discussion_id", id)?;
    let body: AdvanceTurn = read_optional_json(req).await?.unwrap_or_default();
    let mode = Mode::of(req, &body);
    let idempotency = Idempotency::from_request(req, caller.user_id, &body)?;
    // Everything that may fail for want of configuration fails before a claim.
    let policy = Policy::from_variables().await?;
    let ollama = Ollama::from_variables().await?;
    let lease = lease::seconds().await?;
    let db = Db::connect().await?;

    let begun = transaction(&db, async |tx| {
        begin(
            tx,
            &caller,
            discussion_id,
            &body,
            &policy,
            &idempotency,
            lease,
        )
        .await
    })
    .await?;
    let models = Models {
        db,
        ollama,
        policy,
        outbound: outbound(req),
        user_id: caller.user_id,
        discussion_id,
    };
    let (started, other_tokens) = match begun {
        Begun::Replay(stored) => return plain(replay(&models.db, &stored).await),
        Begun::Started(started) => (*started, 0),
        Begun::Choosing {
            discussion,
            turn_id,
        } => {
            let chosen = choose(&models, &discussion, turn_id, &idempotency, lease).await;
            match chosen {
                Ok(chosen) => chosen,
                Err(problem) => {
                    if let Err(error) =
                        lease::release(&models.db, discussion_id, turn_id, &problem).await
                    {
                        eprintln!("releasing turn {turn_id}: {error}");
                    }
                    return Err(problem);
                }
            }
        }
    };

    let Started {
        discussion,
        speaking,
        message,
        turn_id,
    } = started;
    let runner = Runner {
        turn: TurnRef {
            discussion_id,
            turn_id,
            message_id: message.message_id,
        },
        models,
        discussion,
        speaking,
        message: message.clone(),
        lease,
        other_tokens,
        events: None,
    };
    match mode {
        Mode::Wait => {
            let ended = runner.run().await?;
            match ended.problem {
                Some(problem) => Err(problem),
                None => plain(with_message(StatusCode::CREATED, &ended.message)),
            }
        }
        Mode::Background => {
            spin_sdk::wasip3::spawn(finish_in_background(runner));
            plain(with_message(StatusCode::ACCEPTED, &message))
        }
        Mode::Stream => {
            let (events, response) = sse::channel();
            let runner = Runner {
                events: Some(events),
                ..runner
            };
            spin_sdk::wasip3::spawn(finish_in_background(runner));
            spin_sdk::http::IntoResponse::into_response(response)
                .map_err(|error| Problem::internal(format!("starting the event stream: {error:?}")))
        }
    }
}

/// Runs a turn no caller waits on to its end; what goes wrong is logged (the
/// message says it too).
async fn finish_in_background(runner: Runner) {
    let turn_id = runner.turn.turn_id;
    if let Err(problem) = runner.run().await {
        eprintln!("turn {turn_id}: {problem}");
    }
}

/// A request carrying only the request id of `req`, for the model calls of a turn
/// that may outlive it.
fn outbound<B>(req: &http::Request<B>) -> http::Request<()> {
    let mut outbound = http::Request::new(());
    if let Some(id) = req.headers().get(request::REQUEST_ID_HEADER) {
        outbound
            .headers_mut()
            .insert(request::REQUEST_ID_HEADER, id.clone());
    }
    outbound
}

/// The first transaction of a turn: the discussion locked and checked, a replay
/// answered, the turn claimed and (unless a moderator chooses) its message started.
async fn begin(
    tx: &Tx<'_>,
    caller: &Identity,
    discussion_id: Uuid,
    body: &AdvanceTurn,
    policy: &Policy,
    idempotency: &Idempotency,
    lease: f64,
) -> Result<Begun, Problem> {
    let mut discussion = discussion::lock(tx, caller, discussion_id, Access::Write).await?;
    if let Some(stored) = idempotency.replay(tx).await? {
        return Ok(Begun::Replay(stored));
    }
    check_speaker_field(discussion.turn_strategy, body.speaker_id)?;
    if let Some(speaker_id) = body.speaker_id
        && discussion
            .participant(speaker_id)
            .is_none_or(|participant| participant.agent_id.is_none())
    {
        return Err(model::not_an_agent(speaker_id));
    }
    let state = match discussion.turn_strategy {
        TurnStrategy::Moderator => TurnState::Choosing,
        _ => TurnState::Generating,
    };
    let turn_id = lease::claim(tx, &mut discussion, state, lease).await?;
    if discussion.agents().next().is_none() {
        return Err(no_agent());
    }
    let speaker_id = match discussion.turn_strategy {
        TurnStrategy::Moderator => {
            return Ok(Begun::Choosing {
                discussion: Box::new(discussion),
                turn_id,
            });
        }
        TurnStrategy::Directed => body.speaker_id,
        TurnStrategy::RoundRobin => speaker::round_robin(&discussion),
    };
    let speaker_id = speaker_id.ok_or_else(no_agent)?;
    let (speaking, message) = start(
        tx,
        caller.user_id,
        &discussion,
        speaker_id,
        turn_id,
        policy,
        idempotency,
        lease,
    )
    .await?;
    Ok(Begun::Started(Box::new(Started {
        discussion,
        speaking,
        message,
        turn_id,
    })))
}

/// Starts the message of `speaker_id`: the agent loaded and checked against the
/// policy and quotas, the message inserted, the answer recorded for retries.
#[allow(clippy::too_many_arguments)]
async fn start(
    tx: &Tx<'_>,
    user_id: Uuid,
    discussion: &Discussion,
    speaker_id: Uuid,
    turn_id: Uuid,
    policy: &Policy,
    idempotency: &Idempotency,
    lease: f64,
) -> Result<(Speaking, Message), Problem> {
    let speaking = Speaking::load(tx, discussion, speaker_id, policy).await?;
    let call_for = arena_common::usage::CallFor {
        user_id,
        agent_id: Some(speaking.agent_id),
        discussion_id: Some(discussion.discussion_id),
    };
    policy::check_quotas(tx, &call_for).await?;
    let message = lease::start_message(tx, discussion, turn_id, &speaking, lease).await?;
    idempotency
        .record(tx, StatusCode::CREATED, Some(message.message_id), &())
        .await?;
    Ok((speaking, message))
}

/// The moderator's part of a turn: its choice (a model call outside any
/// transaction), then the chosen agent's message started on the discussion as it
/// now is. The tokens the choice used come back too.
async fn choose(
    models: &Models,
    discussion: &Discussion,
    turn_id: Uuid,
    idempotency: &Idempotency,
    lease: f64,
) -> Result<(Started, u64), Problem> {
    let history = History::load(&models.db, discussion.discussion_id).await?;
    let (chosen, tokens) = models.moderator_choice(discussion, &history.messages).await;
    let speaker_id = chosen.ok_or_else(no_agent)?;
    transaction(&models.db, async |tx| {
        let discussion = discussion::lock_unchecked(tx, discussion.discussion_id).await?;
        let (speaking, message) = start(
            tx,
            models.user_id,
            &discussion,
            speaker_id,
            turn_id,
            &models.policy,
            idempotency,
            lease,
        )
        .await?;
        let started = Started {
            discussion,
            speaking,
            message,
            turn_id,
        };
        Ok((started, tokens))
    })
    .await
}

/// The answer to a retried advance: the turn's message as it is now.
async fn replay(db: &Db, stored: &Stored) -> Result<http::Response<String>, Problem> {
    let Some(message_id) = stored.resource_id else {
        return stored.response();
    };
    let message = lease::message(db, message_id).await?;
    let mut response = with_message(StatusCode::OK, &message)?;
    mark_replayed(&mut response);
    Ok(response)
}

/// Cancel the turn in progress
///
/// Asks the turn in progress to stop: its model is stopped at the next flush
/// (within about 100 ms while tokens flow) and its message kept, `cancelled`,
/// with the text so far; it counts as the turn. Answers at once with the
/// discussion, its turn `cancelling`. A turn whose lease expired is interrupted
/// instead (`409 no_turn_in_progress`). Its owner and admins. Event
/// `turn.cancelling`, then the turn's `turn.cancelled`.
#[utoipa::path(
    post,
    path = "/v1/discussions/{discussion_id}/turns/current/cancel",
    tag = "discussions",
    operation_id = "cancelTurn",
    params(("discussion_id" = Uuid, Path, description = "The discussion.")),
    responses(
        (status = 202, description = "The discussion, its turn `cancelling`.", body = Discussion),
        ValidationFailed, Unauthorized, Forbidden, NotFound, NoTurnInProgress,
    ),
)]
pub(crate) async fn cancel(req: &mut Request, id: &str) -> Result<http::Response<String>, Problem> {
    let caller = Identity::from_request(req)?;
    let discussion_id = ids::parse_id("discussion_id", id)?;
    let db = Db::connect().await?;
    let cancelled = transaction(&db, async |tx| {
        let mut discussion = discussion::lock(tx, &caller, discussion_id, Access::Write).await?;
        // A stale turn's interruption is kept even though there is nothing to cancel.
        lease::expire_if_stale(tx, &mut discussion).await?;
        if !discussion.turn_in_progress() {
            return Ok(None);
        }
        lease::request_cancel(tx, &discussion).await?;
        discussion.turn.status = TurnState::Cancelling;
        Ok(Some(discussion))
    })
    .await?;
    let discussion = cancelled.ok_or_else(|| {
        Problem::new(
            ProblemCode::NoTurnInProgress,
            "no turn is in progress in the discussion",
        )
    })?;
    json(StatusCode::ACCEPTED, &discussion)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(value: serde_json::Value) -> Result<AdvanceTurn, serde_json::Error> {
        serde_json::from_value(value)
    }

    #[test]
    fn the_body_names_a_speaker_or_a_stream_and_nothing_else() {
        let speaker = Uuid::from_u128(7);
        assert_eq!(
            body(serde_json::json!({ "speaker_id": speaker, "stream": true })).unwrap(),
            AdvanceTurn {
                speaker_id: Some(speaker),
                stream: Some(true),
            }
        );
        assert_eq!(body(serde_json::json!({})).unwrap(), AdvanceTurn::default());
        assert!(body(serde_json::json!({ "speaker": speaker })).is_err());
        assert!(body(serde_json::json!({ "speaker_id": "nobody" })).is_err());
    }

    #[test]
    fn only_a_directed_discussion_takes_a_speaker_and_it_needs_one() {
        let speaker = Some(Uuid::from_u128(7));
        assert!(check_speaker_field(TurnStrategy::Directed, speaker).is_ok());
        assert!(check_speaker_field(TurnStrategy::RoundRobin, None).is_ok());
        assert!(check_speaker_field(TurnStrategy::Moderator, None).is_ok());
        for (strategy, speaker_id) in [
            (TurnStrategy::Directed, None),
            (TurnStrategy::RoundRobin, speaker),
            (TurnStrategy::Moderator, speaker),
        ] {
            let problem = check_speaker_field(strategy, speaker_id).unwrap_err();
            assert_eq!(problem.status(), StatusCode::BAD_REQUEST, "{strategy}");
            assert_eq!(problem.errors()[0].field, "speaker_id");
        }
    }

    fn request(headers: &[(&str, &str)]) -> http::Request<()> {
        let mut builder = http::Request::builder().method("POST");
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).unwrap()
    }

    #[test]
    fn the_caller_chooses_how_to_wait() {
        let plain = AdvanceTurn::default();
        let streamed = AdvanceTurn {
            stream: Some(true),
            ..AdvanceTurn::default()
        };
        assert_eq!(Mode::of(&request(&[]), &plain), Mode::Wait);
        assert_eq!(Mode::of(&request(&[]), &streamed), Mode::Stream);
        assert_eq!(
            Mode::of(&request(&[("accept", "text/event-stream")]), &plain),
            Mode::Stream
        );
        assert_eq!(
            Mode::of(&request(&[("prefer", "respond-async")]), &plain),
            Mode::Background
        );
        assert_eq!(
            Mode::of(
                &request(&[("prefer", "return=minimal, Respond-Async; x=1")]),
                &plain
            ),
            Mode::Background
        );
        assert_eq!(
            Mode::of(&request(&[("prefer", "wait=5")]), &plain),
            Mode::Wait
        );
    }

    #[test]
    fn model_calls_carry_the_request_id_and_nothing_else() {
        let outbound = outbound(&request(&[
            (request::REQUEST_ID_HEADER, "r-1"),
            ("authorization", "Bearer x"),
        ]));
        assert_eq!(outbound.headers()[request::REQUEST_ID_HEADER], "r-1");
        assert_eq!(outbound.headers().len(), 1);
    }
}
