//! A discussion's messages: read in either direction, and posted by people.
//!
//! | Route | Who | Answers |
//! |---|---|---|
//! | `GET /v1/discussions/{id}/messages` | readers | `200`: a page of messages, from the first (`order=asc`, the default) or from the latest (`order=desc`) |
//! | `GET /v1/discussions/{id}/messages/{message_id}` | readers | `200`: the message |
//! | `POST /v1/discussions/{id}/messages` | human participants, its owner, admins | `201`: the message, at `Location` |
//!
//! A page is a range of `seq` read through the `messages_seq_key` index on
//! `(discussion_id, seq)`, so the hundredth page costs what the first does.
//!
//! A person's message counts as a turn: it takes the next turn index, lowers its
//! author's raised hand, and may end the discussion (`max_turns`, the stop phrase).
//! Posted while an agent's turn is running, it does what the discussion's
//! `mid_turn_input` says: `enqueue` posts it at once (after the turn's message),
//! `interrupt` cancels the turn first, `reject` refuses it.

use arena_common::auth::{Access, Identity};
use arena_common::body::read_json;
use arena_common::db::{Client, Db, Tx, Typed, transaction};
use arena_common::events;
use arena_common::idempotency::{Idempotency, IdempotencyKeyHeader, Stored};
use arena_common::ids::{self, Uuid};
use arena_common::pagination::{Page, PageRequest};
use arena_common::problem::responses::{
    Conflict, Forbidden, IdempotencyKeyReused, NotFound, PayloadTooLarge, Unauthorized,
    UnsupportedMediaType, ValidationFailed,
};
use arena_common::query::Filters;
use arena_common::validate::{Validate, Validator};
use arena_common::{Problem, ProblemCode, created, json};
use http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use crate::discussion::{self, CompletedReason, Discussion, MidTurnInput, Status, TurnState};
use crate::message::{MESSAGE_COLUMNS, MESSAGE_JOINS, Message};
use crate::turns::{lease, stop};
use crate::{Request, lifecycle};

/// Which end of the discussion a page starts from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
#[schema(as = MessageOrder)]
pub(crate) enum Order {
    /// From the first message on.
    #[default]
    Asc,
    /// From the latest message back.
    Desc,
}

impl std::str::FromStr for Order {
    type Err = ();
    fn from_str(text: &str) -> Result<Self, ()> {
        match text {
            "asc" => Ok(Order::Asc),
            "desc" => Ok(Order::Desc),
            _ => Err(()),
        }
    }
}

impl Order {
    fn from_query(query: Option<&str>) -> Result<Self, Problem> {
        let filters = Filters::from_query(query, &["order"])?;
        Ok(filters.parse("order", "asc or desc")?.unwrap_or_default())
    }

    /// The page after the message at `after` (the previous page's last `seq`), in
    /// this order; `(discussion_id, seq)` is a unique index, so either way is a
    /// range scan of it.
    fn statement(self) -> String {
        let (compare, direction) = match self {
            Order::Asc => (">", "asc"),
            Order::Desc => ("<", "desc"),
        };
        format!(
            "select {MESSAGE_COLUMNS} from {MESSAGE_JOINS}
             where m.discussion_id = $1 and m.seq {compare} $2
             order by m.seq {direction}
             limit $3"
        )
    }

    /// Where the first page starts: before every `seq` (from 1), or after them all.
    fn start(self) -> i64 {
        match self {
            Order::Asc => 0,
            Order::Desc => i64::MAX,
        }
    }
}

/// List messages
///
/// The discussion's messages, a page at a time: from the first (`order=asc`, the
/// default) or from the latest (`order=desc`). Pass `next_cursor` back with the
/// same `order` for the next page. A message being generated is listed with its
/// text so far. Whoever may read the discussion.
#[utoipa::path(
    get,
    path = "/v1/discussions/{discussion_id}/messages",
    tag = "discussions",
    operation_id = "listMessages",
    params(
        ("discussion_id" = Uuid, Path, description = "The discussion."),
        ("order" = Option<Order>, Query, description = "`asc` (default): from the first message; `desc`: from the latest."),
        ("limit" = Option<u32>, Query, description = "Items per page, 1 to 200 (default 50)."),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page (with the same `order`)."),
    ),
    responses(
        (status = 200, description = "A page of messages, in `seq` order (descending for `desc`).", body = inline(Page<Message>)),
        ValidationFailed, Unauthorized, NotFound,
    ),
)]
pub(crate) async fn list(req: &mut Request, id: &str) -> Result<http::Response<String>, Problem> {
    let caller = Identity::from_request(req)?;
    let discussion_id = ids::parse_id("discussion_id", id)?;
    let order = Order::from_query(req.uri().query())?;
    let page = PageRequest::<i64>::from_query(req.uri().query())?;
    let db = Db::connect().await?;
    discussion::load(&db, &caller, discussion_id, Access::Read).await?;
    let messages: Vec<Message> = db
        .query(
            &order.statement(),
            &[
                discussion_id.into(),
                page.after.unwrap_or(order.start()).into(),
                page.fetch_limit().into(),
            ],
        )
        .await?;
    json(
        StatusCode::OK,
        &page.finish(messages, |message| message.seq)?,
    )
}

/// Retrieve a message
///
/// One message of the discussion, as it is now (a message being generated has its
/// text so far). Whoever may read the discussion.
#[utoipa::path(
    get,
    path = "/v1/discussions/{discussion_id}/messages/{message_id}",
    tag = "discussions",
    operation_id = "retrieveMessage",
    params(
        ("discussion_id" = Uuid, Path, description = "The discussion."),
        ("message_id" = Uuid, Path, description = "The message."),
    ),
    responses(
        (status = 200, description = "The message.", body = Message),
        ValidationFailed, Unauthorized, NotFound,
    ),
)]
pub(crate) async fn get(
    req: &mut Request,
    id: &str,
    message: &str,
) -> Result<http::Response<String>, Problem> {
    let caller = Identity::from_request(req)?;
    let discussion_id = ids::parse_id("discussion_id", id)?;
    let message_id = ids::parse_id("message_id", message)?;
    let db = Db::connect().await?;
    discussion::load(&db, &caller, discussion_id, Access::Read).await?;
    let message = fetch(&db, discussion_id, message_id).await?;
    json(StatusCode::OK, &message)
}

/// The message `message_id` of the discussion, or a 404 naming it.
async fn fetch(
    client: &impl Client,
    discussion_id: Uuid,
    message_id: Uuid,
) -> Result<Message, Problem> {
    client
        .row_opt(
            &format!(
                "select {MESSAGE_COLUMNS} from {MESSAGE_JOINS}
                 where m.discussion_id = $1 and m.message_id = $2"
            ),
            &[discussion_id.into(), message_id.into()],
        )
        .await?
        .ok_or_else(|| {
            Problem::not_found(format!(
                "there is no message {message_id} in discussion {discussion_id}"
            ))
        })
}

/// A person's message.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewMessage {
    /// 1 to 20,000 characters, not blank.
    content: String,
}

impl Validate for NewMessage {
    fn validate(&self, v: &mut Validator) {
        v.text("content", &self.content, 1..=20_000, true);
    }
}

/// Post a message
///
/// A person's message, `completed` at once, authored by the caller: a human
/// participant, or the discussion's owner or an admin (who post as themselves
/// whether or not they take part). The discussion must be `active` or `paused`.
/// It counts as a turn (it may end the discussion by `max_turns` or its stop
/// phrase) and lowers the author's raised hand.
///
/// While an agent's turn is running, the discussion's `mid_turn_input` decides:
/// `enqueue` posts it at once (after the turn's message), `interrupt` cancels the
/// turn (its text so far is kept, `cancelled`) and posts it, `reject` refuses it
/// with `409 turn_in_progress`.
///
/// Refusals are `409`s with their own codes: `invalid_transition` (the
/// discussion is not active or paused), `turn_in_progress` (`reject`), `conflict`
/// (a request with the same `Idempotency-Key` is in progress).
///
/// With an `Idempotency-Key`, a retry answers with the first result
/// (`Idempotent-Replayed: true`) and posts nothing twice; the key on another
/// request is a `422 idempotency_key_reused`.
#[utoipa::path(
    post,
    path = "/v1/discussions/{discussion_id}/messages",
    tag = "discussions",
    operation_id = "postMessage",
    params(
        ("discussion_id" = Uuid, Path, description = "The discussion."),
        IdempotencyKeyHeader,
    ),
    request_body = NewMessage,
    responses(
        (
            status = 201,
            description = "The message (replayed: the first answer to this `Idempotency-Key`).",
            body = Message,
            headers(
                ("Location" = String, description = "The message's path: `/v1/discussions/{discussion_id}/messages/{message_id}`."),
                ("Idempotent-Replayed" = Option<bool>, description = "`true` on the replay of an earlier request with the same `Idempotency-Key`."),
            ),
        ),
        ValidationFailed, Unauthorized, Forbidden, NotFound, Conflict, IdempotencyKeyReused,
        PayloadTooLarge, UnsupportedMediaType,
    ),
)]
pub(crate) async fn post(req: &mut Request, id: &str) -> Result<http::Response<String>, Problem> {
    let caller = Identity::from_request(req)?;
    let discussion_id = ids::parse_id("discussion_id", id)?;
    let new: NewMessage = read_json(req).await?;
    let idempotency = Idempotency::from_request(req, caller.user_id, &new)?;
    let db = Db::connect().await?;
    let posted = transaction(&db, async |tx| {
        let mut discussion = discussion::lock(tx, &caller, discussion_id, Access::Read).await?;
        // After the lock: a concurrent duplicate waits for the first and replays it.
        if let Some(stored) = idempotency.replay(tx).await? {
            return Ok(Posted::Replayed(stored));
        }
        discussion.check_may_post(&caller)?;
        discussion.require_status(&[Status::Active, Status::Paused], "take messages")?;
        lease::expire_if_stale(tx, &mut discussion).await?;
        if discussion.turn_in_progress() {
            match discussion.mid_turn_input {
                MidTurnInput::Enqueue => {}
                MidTurnInput::Interrupt => cancel_turn(tx, &discussion).await?,
                MidTurnInput::Reject => {
                    return Err(Problem::new(
                        ProblemCode::TurnInProgress,
                        "a turn is in progress and this discussion rejects messages meanwhile \
                         (mid_turn_input: reject); post once it ends or is cancelled",
                    ));
                }
            }
        }
        let message = insert(tx, &discussion, &caller, &new.content).await?;
        if let Some(participant_id) = author_participant(&message) {
            crate::hands::lower_hand(tx, &discussion, participant_id, caller.user_id).await?;
        }
        events::emit(
            tx,
            &discussion.stream(),
            "message.created",
            &json!({ "message": message }),
        )
        .await?;
        discussion.turn.index += 1;
        if let Some(reason) = stop::reached(&discussion, &message.content) {
            complete(tx, &discussion, reason).await?;
        }
        idempotency
            .record(tx, StatusCode::CREATED, Some(message.message_id), &message)
            .await?;
        Ok(Posted::New(message))
    })
    .await?;
    let messages = format!("/v1/discussions/{discussion_id}/messages");
    match posted {
        Posted::Replayed(stored) => stored.created(&messages),
        Posted::New(message) => created(&format!("{messages}/{}", message.message_id), &message),
    }
}

/// What posting did: a new message, or the replay of the first answer.
enum Posted {
    New(Message),
    Replayed(Stored),
}

/// The participant who wrote `message`, if it was written as one.
fn author_participant(message: &Message) -> Option<Uuid> {
    match message.author {
        crate::message::Author::User { participant_id, .. } => participant_id,
        crate::message::Author::Agent { .. } => None,
    }
}

/// Asks the running turn to stop, unless it already was.
async fn cancel_turn(tx: &Tx<'_>, discussion: &Discussion) -> Result<(), Problem> {
    if discussion.turn.status == TurnState::Cancelling {
        return Ok(());
    }
    lease::request_cancel(tx, discussion).await
}

/// Inserts the caller's message, completed, at the end (`seq` = the last + 1, so
/// after a message being generated), in the turn `discussion` is at, and counts the
/// turn. Its author is the caller's participant entry, or none for an owner or
/// admin who does not take part.
async fn insert(
    tx: &Tx<'_>,
    discussion: &Discussion,
    caller: &Identity,
    content: &str,
) -> Result<Message, Problem> {
    let message_id = ids::new_id();
    let participant_id = discussion
        .participant_for(caller.user_id)
        .map(|participant| participant.participant_id);
    tx.execute(
        "insert into messages
             (message_id, discussion_id, seq, turn_index, participant_id, user_id, content,
              status, completed_at)
         values ($1, $2,
                 (select coalesce(max(seq), 0) + 1 from messages where discussion_id = $2),
                 $3, $4, $5, $6, 'completed', now())",
        &[
            message_id.into(),
            discussion.discussion_id.into(),
            discussion.turn.index.into(),
            participant_id.into(),
            caller.user_id.into(),
            content.to_owned().into(),
        ],
    )
    .await?;
    tx.execute(
        "update discussions set turn_count = turn_count + 1 where discussion_id = $1",
        &[discussion.discussion_id.into()],
    )
    .await?;
    fetch(tx, discussion.discussion_id, message_id).await
}

/// Ends the discussion for `reason` (a stop condition the message met), and asks a
/// turn still running to stop: the discussion is over.
async fn complete(
    tx: &Tx<'_>,
    discussion: &Discussion,
    reason: CompletedReason,
) -> Result<(), Problem> {
    lifecycle::change(tx, discussion, Status::Completed, Some(reason)).await?;
    if discussion.turn_in_progress() {
        cancel_turn(tx, discussion).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discussion::StopConditions;
    use crate::turns::stop::tests::discussion as a_discussion;

    fn invalid_fields(body: &impl Validate) -> Vec<String> {
        match body.validated() {
            Ok(()) => Vec::new(),
            Err(problem) => problem.errors().iter().map(|e| e.field.clone()).collect(),
        }
    }

    fn message(content: &str) -> NewMessage {
        serde_json::from_value(json!({ "content": content })).unwrap()
    }

    #[test]
    fn order_is_asc_by_default_and_strict() {
        assert_eq!(Order::from_query(None).unwrap(), Order::Asc);
        assert_eq!(
            Order::from_query(Some("order=desc&limit=5&cursor=x")).unwrap(),
            Order::Desc
        );
        assert_eq!(Order::from_query(Some("order=")).unwrap(), Order::Asc);
        for (query, field) in [
            ("order=newest", "order"),
            ("sort=asc", "sort"),
            ("order=asc&order=desc", "order"),
        ] {
            let problem = Order::from_query(Some(query)).unwrap_err();
            assert_eq!(problem.code(), ProblemCode::ValidationFailed, "{query}");
            assert_eq!(problem.errors()[0].field, field, "{query}");
        }
    }

    #[test]
    fn pages_are_ranges_of_seq_in_either_direction() {
        let asc = Order::Asc.statement();
        assert!(asc.contains("m.seq > $2") && asc.contains("order by m.seq asc"));
        let desc = Order::Desc.statement();
        assert!(desc.contains("m.seq < $2") && desc.contains("order by m.seq desc"));
        // The first page starts before the first message, or after the latest.
        assert_eq!(Order::Asc.start(), 0);
        assert_eq!(Order::Desc.start(), i64::MAX);
    }

    #[test]
    fn a_cursor_carries_the_last_seq() {
        let page = PageRequest::<i64>::from_query(Some("limit=2")).unwrap();
        let cursor = page
            .finish(vec![9, 8, 7], |seq| *seq)
            .unwrap()
            .next_cursor
            .unwrap();
        let next = PageRequest::<i64>::from_query(Some(&format!("cursor={cursor}"))).unwrap();
        assert_eq!(next.after, Some(8));
    }

    #[test]
    fn content_has_1_to_20000_characters_and_is_not_blank() {
        assert!(invalid_fields(&message("Let me add one thing.\n\nTwo.")).is_empty());
        assert!(invalid_fields(&message(&"é".repeat(20_000))).is_empty());
        for bad in ["", "  \n ", &"a".repeat(20_001), "bell\u{7}"] {
            assert_eq!(invalid_fields(&message(bad)), ["content"], "{bad:?}");
        }
        assert!(
            serde_json::from_value::<NewMessage>(json!({"content": "hi", "role": "system"}))
                .is_err()
        );
        assert!(serde_json::from_value::<NewMessage>(json!({})).is_err());
    }

    #[test]
    fn a_human_message_counts_toward_max_turns_and_the_stop_phrase() {
        let mut discussion = a_discussion(StopConditions {
            max_turns: Some(3),
            stop_phrase: Some("that settles it".into()),
            ..Default::default()
        });
        // Two turns taken; the human message is the third.
        discussion.turn.index = 2 + 1;
        assert_eq!(
            stop::reached(&discussion, "hello"),
            Some(CompletedReason::MaxTurns)
        );
        discussion.turn.index = 1 + 1;
        assert_eq!(
            stop::reached(&discussion, "Well, That settles it."),
            Some(CompletedReason::StopPhrase)
        );
        assert_eq!(stop::reached(&discussion, "hello"), None);
    }

    #[test]
    fn the_author_participant_is_read_from_the_message() {
        let author = |participant_id| crate::message::Author::User {
            participant_id,
            user_id: Some(Uuid::from_u128(1)),
            name: "ada".into(),
        };
        let mut message = Message {
            message_id: Uuid::from_u128(2),
            discussion_id: Uuid::from_u128(3),
            seq: 1,
            turn_index: 0,
            author: author(Some(Uuid::from_u128(4))),
            content: "hi".into(),
            status: crate::message::MessageStatus::Completed,
            error: None,
            model: None,
            usage: None,
            first_token_ms: None,
            latency_ms: None,
            created_at: arena_common::time::Timestamp::now(),
            completed_at: None,
        };
        assert_eq!(author_participant(&message), Some(Uuid::from_u128(4)));
        message.author = author(None);
        assert_eq!(author_participant(&message), None);
    }
}
