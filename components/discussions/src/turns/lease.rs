//! The turn lease: at most one turn runs per discussion, and a turn whose runner
//! died is noticed. The discussion row holds the turn (`turn_id`, its state, and
//! `turn_lease_expires_at`, which the runner pushes on at every flush); every
//! write here is one transaction (or part of the caller's) that also records its
//! event. Writes by a runner are conditional on `turn_id` still being its own, so
//! a runner whose turn was expired (and perhaps replaced) changes nothing.

use arena_common::db::{Client, Db, Row, Tx, Typed, transaction};
use arena_common::events;
use arena_common::ids::{self, Uuid};
use arena_common::{Problem, ProblemCode, variables};
use serde_json::json;

use crate::discussion::{self, Discussion, Status, TurnState};
use crate::message::{MESSAGE_COLUMNS, MESSAGE_JOINS, Message, MessageStatus};

use super::model::Speaking;
use super::stop;
use crate::lifecycle;

/// The Spin variable: seconds a turn stays claimed without a sign of life.
const LEASE_VARIABLE: &str = "turn_lease_seconds";

/// The lease length the deployment sets, in seconds.
pub(crate) async fn seconds() -> Result<f64, Problem> {
    let seconds: f64 = variables::parsed(LEASE_VARIABLE).await?;
    // A tenth of a second is no lease at all; NaN and negatives are that too.
    Ok(seconds.max(0.1))
}

/// The turn a runner holds: enough to write to it, and to notice it is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TurnRef {
    pub discussion_id: Uuid,
    pub turn_id: Uuid,
    pub message_id: Uuid,
}

impl TurnRef {
    fn stream(&self) -> String {
        discussion::stream(self.discussion_id)
    }
}

/// What a runner learns when it renews its lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lease {
    /// The turn is still its own: go on.
    Held,
    /// A cancel was asked for: stop and store the text so far as `cancelled`.
    Cancelling,
    /// The turn is no longer its own (its lease expired and it was interrupted):
    /// stop, and write nothing more.
    Lost,
}

/// Asks the turn in progress to stop: one write, which the runner sees at its next
/// flush (it then stores its partial text as `cancelled`). A discussion with no
/// turn is left alone; callers decide whether that is an error.
pub(crate) async fn request_cancel(tx: &Tx<'_>, discussion: &Discussion) -> Result<(), Problem> {
    let changed = tx
        .execute(
            "update discussions set turn_state = 'cancelling'
             where discussion_id = $1 and turn_id is not null",
            &[discussion.discussion_id.into()],
        )
        .await?;
    if changed > 0 {
        events::emit(
            tx,
            &discussion.stream(),
            "turn.cancelling",
            &json!({
                "turn_id": discussion.turn.turn_id,
                "message_id": discussion.turn.message_id,
            }),
        )
        .await?;
    }
    Ok(())
}

/// Clears a turn whose lease has expired (its runner died or was cut off): its
/// message becomes `interrupted` with the text it had, the turn columns are
/// emptied, and `turn.interrupted` is recorded. `discussion` must be locked; it is
/// updated to match. A live turn, or none, is left alone.
pub(crate) async fn expire_if_stale(
    tx: &Tx<'_>,
    discussion: &mut Discussion,
) -> Result<(), Problem> {
    if !discussion.turn_in_progress() {
        return Ok(());
    }
    // The database's clock decides, as it does for the runner's renewals.
    let expired: Option<Row> = tx
        .query_opt(
            &format!(
                "update discussions set {CLEAR_TURN}
                 where discussion_id = $1 and turn_id is not null and turn_lease_expires_at < now()
                 returning discussion_id"
            ),
            &[discussion.discussion_id.into()],
        )
        .await?;
    if expired.is_none() {
        return Ok(());
    }
    let turn_id = discussion.turn.turn_id;
    let message_id = discussion.turn.message_id;
    if let Some(message_id) = message_id {
        tx.execute(
            "update messages set status = 'interrupted', completed_at = now()
             where message_id = $1 and status = 'generating'",
            &[message_id.into()],
        )
        .await?;
    }
    events::emit(
        tx,
        &discussion.stream(),
        "turn.interrupted",
        &json!({ "turn_id": turn_id, "message_id": message_id }),
    )
    .await?;
    clear(discussion);
    Ok(())
}

/// The assignments that empty a discussion row's turn.
const CLEAR_TURN: &str = "turn_id = null, turn_state = null, turn_speaker_id = null, \
     turn_message_id = null, turn_started_at = null, turn_lease_expires_at = null";

/// Empties the turn of a discussion value after the row's turn was cleared.
fn clear(discussion: &mut Discussion) {
    let turn = &mut discussion.turn;
    turn.status = TurnState::Idle;
    turn.turn_id = None;
    turn.speaker_id = None;
    turn.message_id = None;
    turn.started_at = None;
    turn.lease_expires_at = None;
}

/// Claims the next turn of the locked `discussion` in `state` (`choosing` while a
/// moderator picks the speaker, else `generating`), leased for `lease` seconds.
/// Refused unless the discussion is `active`, no live turn holds it (a stale one
/// is interrupted first) and no human participant has raised a hand. Returns the
/// new turn's id; `discussion` is updated to match.
pub(crate) async fn claim(
    tx: &Tx<'_>,
    discussion: &mut Discussion,
    state: TurnState,
    lease: f64,
) -> Result<Uuid, Problem> {
    discussion.require_status(&[Status::Active], "take a turn")?;
    expire_if_stale(tx, discussion).await?;
    discussion.require_no_turn("advance the next")?;
    if let Some(&hand) = discussion.raised_hands.first() {
        let who = discussion
            .participant(hand)
            .map_or_else(|| format!("participant {hand}"), |p| p.name.clone());
        return Err(Problem::new(
            ProblemCode::AwaitingParticipant,
            format!(
                "{who} raised a hand and speaks next: they post, or their hand is lowered, \
                 before an agent's turn"
            ),
        ));
    }
    let turn_id = ids::new_id();
    let row: Row = tx
        .query_one(
            "update discussions set turn_id = $2, turn_state = $3, turn_speaker_id = null,
                 turn_message_id = null, turn_started_at = now(),
                 turn_lease_expires_at = now() + make_interval(secs => $4)
             where discussion_id = $1
             returning turn_started_at, turn_lease_expires_at",
            &[
                discussion.discussion_id.into(),
                turn_id.into(),
                state.into(),
                lease.into(),
            ],
        )
        .await?;
    if state == TurnState::Choosing {
        // The only state change of a claim a client cannot see from `turn.started`.
        events::emit(
            tx,
            &discussion.stream(),
            "turn.choosing",
            &json!({ "turn_id": turn_id }),
        )
        .await?;
    }
    let turn = &mut discussion.turn;
    turn.turn_id = Some(turn_id);
    turn.status = state;
    turn.started_at = row.get("turn_started_at")?;
    turn.lease_expires_at = row.get("turn_lease_expires_at")?;
    Ok(turn_id)
}

/// Starts the message of the claimed turn `turn_id`: the speaker's `generating`
/// message at the end of the discussion, the turn moved to `generating` (unless a
/// cancel already came) with its speaker and message, and `turn.started`. `409`
/// if the turn is no longer the discussion's.
pub(crate) async fn start_message(
    tx: &Tx<'_>,
    discussion: &Discussion,
    turn_id: Uuid,
    speaking: &Speaking,
    lease: f64,
) -> Result<Message, Problem> {
    let message_id = ids::new_id();
    let claimed = tx
        .execute(
            "update discussions set turn_speaker_id = $3, turn_message_id = $4,
                 turn_state = case when turn_state = 'cancelling' then turn_state else 'generating' end,
                 turn_lease_expires_at = now() + make_interval(secs => $5)
             where discussion_id = $1 and turn_id = $2",
            &[
                discussion.discussion_id.into(),
                turn_id.into(),
                speaking.participant_id.into(),
                message_id.into(),
                lease.into(),
            ],
        )
        .await?;
    if claimed == 0 {
        return Err(Problem::new(
            ProblemCode::TurnInProgress,
            "the turn was interrupted before its speaker was chosen; advance it again",
        ));
    }
    tx.execute(
        "insert into messages (message_id, discussion_id, seq, turn_index, participant_id,
             agent_id, agent_version, model, status)
         values ($1, $2, (select coalesce(max(seq), 0) + 1 from messages where discussion_id = $2),
             $3, $4, $5, $6, $7, 'generating')",
        &[
            message_id.into(),
            discussion.discussion_id.into(),
            discussion.turn.index.into(),
            speaking.participant_id.into(),
            speaking.agent_id.into(),
            speaking.agent_version.into(),
            speaking.model.clone().into(),
        ],
    )
    .await?;
    let message = message(tx, message_id).await?;
    events::emit(
        tx,
        &discussion.stream(),
        "turn.started",
        &json!({ "turn_id": turn_id, "message": message }),
    )
    .await?;
    Ok(message)
}

/// A message as the API shows it.
pub(crate) async fn message(client: &impl Client, message_id: Uuid) -> Result<Message, Problem> {
    Ok(client
        .row(
            &format!("select {MESSAGE_COLUMNS} from {MESSAGE_JOINS} where m.message_id = $1"),
            &[message_id.into()],
        )
        .await?)
}

/// Renews the lease and reads whether a cancel was asked for. With `chunk` (the
/// text generated since the last flush; it starts at character `offset` of the
/// message) it is also appended to the message and announced as `turn.token`.
/// Writes nothing once the turn is no longer the runner's.
pub(crate) async fn flush(
    db: &Db,
    turn: &TurnRef,
    chunk: &str,
    offset: usize,
    lease: f64,
) -> Result<Lease, Problem> {
    transaction(db, async |tx| {
        let renewed: Option<Row> = tx
            .query_opt(
                "update discussions set turn_lease_expires_at = now() + make_interval(secs => $3)
                 where discussion_id = $1 and turn_id = $2
                 returning turn_state",
                &[turn.discussion_id.into(), turn.turn_id.into(), lease.into()],
            )
            .await?;
        let Some(renewed) = renewed else {
            return Ok(Lease::Lost);
        };
        if !chunk.is_empty() {
            tx.execute(
                "update messages set content = content || $2
                 where message_id = $1 and status = 'generating'",
                &[turn.message_id.into(), chunk.to_owned().into()],
            )
            .await?;
            events::emit(
                tx,
                &turn.stream(),
                "turn.token",
                &json!({ "message_id": turn.message_id, "offset": offset, "content": chunk }),
            )
            .await?;
        }
        let state: TurnState = renewed.get("turn_state")?;
        Ok(if state == TurnState::Cancelling {
            Lease::Cancelling
        } else {
            Lease::Held
        })
    })
    .await
}

/// Stores a new rolling summary covering the messages through `through_seq`, and
/// renews the lease, if the turn is still the runner's. A summary is part of the
/// discussion's context, so `context.updated` announces it.
pub(crate) async fn store_summary(
    db: &Db,
    turn: &TurnRef,
    summary: &str,
    through_seq: i64,
    lease: f64,
) -> Result<(), Problem> {
    transaction(db, async |tx| {
        let stored: Option<Row> = tx
            .query_opt(
                "update discussions set summary = $3, summary_through_seq = $4,
                     turn_lease_expires_at = now() + make_interval(secs => $5)
                 where discussion_id = $1 and turn_id = $2 and summary_through_seq < $4
                 returning context_version",
                &[
                    turn.discussion_id.into(),
                    turn.turn_id.into(),
                    summary.to_owned().into(),
                    through_seq.into(),
                    lease.into(),
                ],
            )
            .await?;
        if let Some(stored) = stored {
            let version: i32 = stored.get("context_version")?;
            events::emit(
                tx,
                &turn.stream(),
                "context.updated",
                &json!({
                    "version": version,
                    "summary": { "text": summary, "through_seq": through_seq },
                }),
            )
            .await?;
        }
        Ok(())
    })
    .await
}

/// How a turn's message ended, as [`finish`] writes it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Ending {
    /// `completed`, `cancelled` or `failed`.
    pub status: MessageStatus,
    /// The whole text generated.
    pub content: String,
    /// For `failed`: the problem's code and detail.
    pub failure: Option<(ProblemCode, String)>,
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    pub first_token_ms: Option<f64>,
    pub latency_ms: Option<f64>,
    /// Tokens the turn's other model calls used (the moderator's choice, a
    /// summary), counted in the discussion's `tokens_used` with the turn's own.
    pub other_tokens: u64,
}

impl Ending {
    /// Whether the turn counts: a completed or cancelled message is part of the
    /// discussion; a failed one is retried.
    fn counts(&self) -> bool {
        matches!(
            self.status,
            MessageStatus::Completed | MessageStatus::Cancelled
        )
    }

    /// The event that announces it.
    fn event(&self) -> &'static str {
        match self.status {
            MessageStatus::Completed => "turn.completed",
            MessageStatus::Cancelled => "turn.cancelled",
            _ => "turn.failed",
        }
    }

    /// Every token the turn's model calls used.
    fn tokens(&self) -> i64 {
        let own = u64::from(self.prompt_tokens) + u64::from(self.completion_tokens);
        i64::try_from(own + self.other_tokens).unwrap_or(i64::MAX)
    }
}

/// Ends the turn with its message as `ending` says, in one transaction: the
/// message's text, status and figures; the turn counted (completed or cancelled)
/// or not (failed); the turn cleared; `turn.completed|cancelled|failed` and
/// `message.created`; then the stop conditions, which may complete the discussion
/// (`discussion.status_changed`). `None` when the turn was no longer the runner's:
/// then nothing is written.
pub(crate) async fn finish(
    db: &Db,
    turn: &TurnRef,
    ending: &Ending,
) -> Result<Option<Message>, Problem> {
    transaction(db, async |tx| {
        let mut discussion = discussion::lock_unchecked(tx, turn.discussion_id).await?;
        if discussion.turn.turn_id != Some(turn.turn_id) {
            return Ok(None);
        }
        let clamp = |tokens: u32| i32::try_from(tokens).unwrap_or(i32::MAX);
        tx.execute(
            "update messages set status = $2, content = $3, error = $4, prompt_tokens = $5,
                 completion_tokens = $6, first_token_ms = $7, latency_ms = $8, completed_at = now()
             where message_id = $1",
            &[
                turn.message_id.into(),
                ending.status.into(),
                ending.content.clone().into(),
                ending
                    .failure
                    .as_ref()
                    .map(|(_, detail)| detail.clone())
                    .into(),
                clamp(ending.prompt_tokens).into(),
                clamp(ending.completion_tokens).into(),
                ending.first_token_ms.into(),
                ending.latency_ms.into(),
            ],
        )
        .await?;
        let counted = i32::from(ending.counts());
        tx.execute(
            &format!(
                "update discussions set turn_count = turn_count + $2,
                     tokens_used = tokens_used + $3, {CLEAR_TURN}
                 where discussion_id = $1"
            ),
            &[
                turn.discussion_id.into(),
                counted.into(),
                ending.tokens().into(),
            ],
        )
        .await?;
        let message = message(tx, turn.message_id).await?;
        let mut payload = json!({ "turn_id": turn.turn_id, "message": message });
        if let Some((code, detail)) = &ending.failure {
            payload["code"] = json!(code);
            payload["detail"] = json!(detail);
        }
        events::emit(tx, &turn.stream(), ending.event(), &payload).await?;
        events::emit(
            tx,
            &turn.stream(),
            "message.created",
            &json!({ "message": message }),
        )
        .await?;

        discussion.turn.index += counted;
        discussion.tokens_used = discussion.tokens_used.saturating_add(ending.tokens());
        let open = matches!(discussion.status, Status::Active | Status::Paused);
        if ending.counts()
            && open
            && let Some(reason) = stop::reached(&discussion, &ending.content)
        {
            lifecycle::change(tx, &discussion, Status::Completed, Some(reason)).await?;
        }
        Ok(Some(message))
    })
    .await
}

/// Gives up a claimed turn that never got its message (its speaker could not be
/// chosen or may not speak): the turn is cleared, not counted, and `turn.failed`
/// says why. Nothing if the turn is no longer `turn_id`.
pub(crate) async fn release(
    db: &Db,
    discussion_id: Uuid,
    turn_id: Uuid,
    problem: &Problem,
) -> Result<(), Problem> {
    transaction(db, async |tx| {
        let released = tx
            .execute(
                &format!(
                    "update discussions set {CLEAR_TURN} where discussion_id = $1 and turn_id = $2"
                ),
                &[discussion_id.into(), turn_id.into()],
            )
            .await?;
        if released > 0 {
            events::emit(
                tx,
                &discussion::stream(discussion_id),
                "turn.failed",
                &json!({
                    "turn_id": turn_id,
                    "message": null,
                    "code": problem.code(),
                    "detail": problem.detail(),
                }),
            )
            .await?;
        }
        Ok(())
    })
    .await
}
