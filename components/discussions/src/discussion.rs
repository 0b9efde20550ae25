//! A discussion as the API shows it and the database row decodes, its settings,
//! and who may do what with it.

use arena_common::auth::{Access, Identity, Role};
use arena_common::db::{
    Client, Db, DbError, FromRow, FromValue, Json, ParameterValue, Row, Tx, Typed,
};
use arena_common::ids::Uuid;
use arena_common::time::Timestamp;
use arena_common::visibility::Visibility;
use arena_common::{Problem, ProblemCode};
use serde::{Deserialize, Serialize};
use spin_sdk::pg::DbValue;
use utoipa::ToSchema;

use crate::participant::Participant;

/// The columns [`Discussion::from_row`] reads: `select {DISCUSSION_COLUMNS} from
/// discussions d ...`. `last_agent_speaker_id` is the agent participant whose turn
/// last counted, which round-robin continues from.
pub(crate) const DISCUSSION_COLUMNS: &str = "d.discussion_id, d.owner_id, d.title, d.topic, \
     d.status, d.completed_reason, d.turn_strategy, d.moderator_id, d.max_turns, d.token_budget, \
     d.stop_phrase, d.context_policy, d.mid_turn_input, d.visibility, d.parent_discussion_id, \
     d.forked_from_message_id, d.turn_count, d.tokens_used, to_jsonb(d.raised_hands) as raised_hands, \
     d.turn_id, d.turn_state, d.turn_speaker_id, d.turn_message_id, d.turn_started_at, \
     d.turn_lease_expires_at, d.version, d.created_at, d.updated_at, \
     (select m.participant_id from messages m \
       where m.discussion_id = d.discussion_id and m.agent_id is not null \
         and m.status in ('completed', 'cancelled') \
       order by m.seq desc limit 1) as last_agent_speaker_id, \
     (select coalesce(max(e.position), 0) from events e \
       where e.stream = 'discussion:' || d.discussion_id::text) as last_event_id";

/// Declares a closed set of names stored as text: its API and database names,
/// parsing, and decoding from a row.
macro_rules! text_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
        #[serde(rename_all = "snake_case")]
        pub(crate) enum $name { $($(#[$vmeta])* $variant),* }

        impl $name {
            pub(crate) const ALL: &[$name] = &[$($name::$variant),*];

            /// The name used in the API and the database.
            pub(crate) fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),* }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = ();
            fn from_str(text: &str) -> Result<Self, ()> {
                Self::ALL.iter().copied().find(|value| value.as_str() == text).ok_or(())
            }
        }

        impl FromValue for $name {
            fn from_value(value: &DbValue) -> Result<Self, String> {
                let text = String::from_value(value)?;
                text.parse().map_err(|()| format!("{text:?} is not a {}", stringify!($name)))
            }
        }

        impl From<$name> for ParameterValue {
            fn from(value: $name) -> Self {
                value.as_str().to_owned().into()
            }
        }
    };
}

text_enum! {
    /// Where a discussion is in its life: `draft → active ⇄ paused → completed`,
    /// and any of them → `archived`.
    Status {
        /// Being set up; no turns yet.
        Draft = "draft",
        /// Turns may be taken.
        Active = "active",
        /// No turns until it is resumed; people may still post.
        Paused = "paused",
        /// Over: a stop condition was met, or it was completed by hand.
        Completed = "completed",
        /// Put away; read-only.
        Archived = "archived",
    }
}

text_enum! {
    /// Why a discussion completed.
    CompletedReason {
        /// `stop.max_turns` turns were taken.
        MaxTurns = "max_turns",
        /// The discussion's model calls used `stop.token_budget` tokens.
        TokenBudget = "token_budget",
        /// A message contained `stop.stop_phrase`.
        StopPhrase = "stop_phrase",
        /// Its owner or an admin completed it.
        Manual = "manual",
    }
}

text_enum! {
    /// How the next speaker is chosen.
    TurnStrategy {
        /// The agents in turn, in their order.
        RoundRobin = "round_robin",
        /// Whoever advances the turn names the agent who speaks.
        Directed = "directed",
        /// The moderator (an agent participant) chooses, with a short model call.
        Moderator = "moderator",
    }
}

text_enum! {
    /// What a human message posted while a turn is generating does.
    MidTurnInput {
        /// It is stored at once and lands right after the turn's message.
        Enqueue = "enqueue",
        /// The turn is cancelled (its partial text kept), then the message is posted.
        Interrupt = "interrupt",
        /// It is refused with `409 turn_in_progress`.
        Reject = "reject",
    }
}

text_enum! {
    /// Where the turn in progress is.
    TurnState {
        /// No turn is in progress.
        Idle = "idle",
        /// The next speaker is being chosen (the moderator is asked).
        Choosing = "choosing",
        /// The speaker's model is generating.
        Generating = "generating",
        /// A cancel was asked for; the turn stops at its next flush.
        Cancelling = "cancelling",
    }
}

/// When a discussion ends by itself; each `null` is no limit.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct StopConditions {
    /// Complete after this many turns (1 to 100,000).
    pub max_turns: Option<i32>,
    /// Complete once the discussion's model calls used this many tokens, prompt
    /// and completion together (1 to 10⁹).
    pub token_budget: Option<i64>,
    /// Complete when a message contains this, ignoring case (1 to 200 characters).
    pub stop_phrase: Option<String>,
}

/// How the history is fitted into a model's context window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct ContextPolicy {
    /// The window, in tokens (256 to 1,048,576); `null`: the speaking agent's
    /// `num_ctx`, else 4,096.
    pub max_context_tokens: Option<u32>,
    /// Tokens kept free for the answer (0 to 65,536; default 512).
    pub reserve_tokens: u32,
    /// The latest messages always sent whole, never summarized (0 to 100; default 4).
    pub keep_recent_messages: u32,
    /// Condense older turns into a rolling summary (a model call) rather than drop
    /// them (default `true`).
    pub summarize: bool,
}

impl Default for ContextPolicy {
    fn default() -> Self {
        Self {
            max_context_tokens: None,
            reserve_tokens: 512,
            keep_recent_messages: 4,
            summarize: true,
        }
    }
}

/// The turn in progress, and who speaks next.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub(crate) struct Turn {
    /// The index the next turn gets: turns taken so far.
    pub index: i32,
    pub status: TurnState,
    /// Who speaks next, where that is known now: a participant with a raised hand,
    /// else (round-robin) the next agent.
    pub next_speaker_id: Option<Uuid>,
    pub turn_id: Option<Uuid>,
    /// Who is speaking in the turn in progress.
    pub speaker_id: Option<Uuid>,
    /// The message the turn in progress is writing.
    pub message_id: Option<Uuid>,
    pub started_at: Option<Timestamp>,
    /// When the turn is deemed interrupted unless its runner renews the lease.
    pub lease_expires_at: Option<Timestamp>,
}

/// Agents (and people) taking turns on a topic.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub(crate) struct Discussion {
    pub discussion_id: Uuid,
    /// The user who made it; they (and admins) manage it.
    pub owner_id: Uuid,
    pub title: String,
    /// The opening prompt every agent sees.
    pub topic: String,
    pub status: Status,
    pub completed_reason: Option<CompletedReason>,
    pub turn_strategy: TurnStrategy,
    /// The agent participant who chooses speakers, for the `moderator` strategy.
    pub moderator_id: Option<Uuid>,
    pub stop: StopConditions,
    pub context_policy: ContextPolicy,
    pub mid_turn_input: MidTurnInput,
    pub visibility: Visibility,
    /// The discussion this one was forked from, and at which message.
    pub parent_discussion_id: Option<Uuid>,
    pub forked_from_message_id: Option<Uuid>,
    /// Who takes part now, in speaking order.
    pub participants: Vec<Participant>,
    pub turn: Turn,
    /// Human participants waiting to speak, in the order they raised a hand.
    pub raised_hands: Vec<Uuid>,
    /// Tokens the discussion's model calls used, prompt and completion together.
    pub tokens_used: i64,
    /// Name it in a `PATCH` (or `If-Match: "<version>"`) so a concurrent change is
    /// not overwritten.
    pub version: i32,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// The latest event on `discussion:<id>` this read reflects (its position in
    /// the event log; 0 before any): subscribe to the realtime hub `since` it and
    /// nothing is missed. An event written just before the read may still come
    /// after it, so a client applies events it already reflects harmlessly.
    pub last_event_id: i64,
    /// The agent participant whose turn last counted; round-robin goes on after it.
    #[serde(skip)]
    pub last_agent_speaker_id: Option<Uuid>,
}

impl FromRow for Discussion {
    fn from_row(row: Row) -> Result<Self, DbError> {
        let Json(context_policy) = row.get("context_policy")?;
        let Json(raised_hands) = row.get("raised_hands")?;
        let turn_state: Option<TurnState> = row.get("turn_state")?;
        Ok(Self {
            discussion_id: row.get("discussion_id")?,
            owner_id: row.get("owner_id")?,
            title: row.get("title")?,
            topic: row.get("topic")?,
            status: row.get("status")?,
            completed_reason: row.get("completed_reason")?,
            turn_strategy: row.get("turn_strategy")?,
            moderator_id: row.get("moderator_id")?,
            stop: StopConditions {
                max_turns: row.get("max_turns")?,
                token_budget: row.get("token_budget")?,
                stop_phrase: row.get("stop_phrase")?,
            },
            context_policy,
            mid_turn_input: row.get("mid_turn_input")?,
            visibility: row.get("visibility")?,
            parent_discussion_id: row.get("parent_discussion_id")?,
            forked_from_message_id: row.get("forked_from_message_id")?,
            participants: Vec::new(),
            turn: Turn {
                index: row.get("turn_count")?,
                status: turn_state.unwrap_or(TurnState::Idle),
                next_speaker_id: None,
                turn_id: row.get("turn_id")?,
                speaker_id: row.get("turn_speaker_id")?,
                message_id: row.get("turn_message_id")?,
                started_at: row.get("turn_started_at")?,
                lease_expires_at: row.get("turn_lease_expires_at")?,
            },
            raised_hands,
            tokens_used: row.get("tokens_used")?,
            version: row.get("version")?,
            created_at: row.get("created_at")?,
            updated_at: row.get("updated_at")?,
            last_event_id: row.get("last_event_id")?,
            last_agent_speaker_id: row.get("last_agent_speaker_id")?,
        })
    }
}

impl Discussion {
    /// The event stream of this discussion: `discussion:<id>`.
    pub(crate) fn stream(&self) -> String {
        stream(self.discussion_id)
    }

    /// Whether a turn holds the lease (it may have expired: see `turns::lease`).
    pub(crate) fn turn_in_progress(&self) -> bool {
        self.turn.turn_id.is_some()
    }

    /// `409 turn_in_progress` while a turn runs: what must wait for it.
    pub(crate) fn require_no_turn(&self, action: &str) -> Result<(), Problem> {
        if self.turn_in_progress() {
            return Err(Problem::new(
                ProblemCode::TurnInProgress,
                format!("a turn is in progress; {action} once it ends or is cancelled"),
            ));
        }
        Ok(())
    }

    /// `409 invalid_transition` naming the current state unless the discussion is in
    /// one of `allowed`.
    pub(crate) fn require_status(&self, allowed: &[Status], action: &str) -> Result<(), Problem> {
        if allowed.contains(&self.status) {
            return Ok(());
        }
        Err(Problem::new(
            ProblemCode::InvalidTransition,
            format!("the discussion is {}; it cannot {action}", self.status),
        ))
    }

    /// The present participant with this id.
    pub(crate) fn participant(&self, participant_id: Uuid) -> Option<&Participant> {
        self.participants
            .iter()
            .find(|participant| participant.participant_id == participant_id)
    }

    /// The caller's own participant entry, if they take part.
    pub(crate) fn participant_for(&self, user_id: Uuid) -> Option<&Participant> {
        self.participants
            .iter()
            .find(|participant| participant.user_id == Some(user_id))
    }

    /// The present agents, in speaking order.
    pub(crate) fn agents(&self) -> impl Iterator<Item = &Participant> {
        self.participants
            .iter()
            .filter(|participant| participant.agent_id.is_some())
    }

    /// The agent after `previous` in speaking order (wrapping round); the first
    /// agent when `previous` is none or no longer present. Never `previous` itself
    /// while another agent is present.
    pub(crate) fn agent_after(&self, previous: Option<Uuid>) -> Option<&Participant> {
        let agents: Vec<&Participant> = self.agents().collect();
        let at = previous.and_then(|id| agents.iter().position(|a| a.participant_id == id));
        match at {
            Some(at) => agents.get((at + 1) % agents.len()).copied(),
            None => agents.first().copied(),
        }
    }

    /// The discussion with its present participants, and what follows from them
    /// (who speaks next): for a list, which reads the participants of a page at once.
    pub(crate) fn with_participants(mut self, participants: Vec<Participant>) -> Self {
        self.participants = participants;
        self.settle_next_speaker();
        self
    }

    /// Fills in what the row alone does not say: who speaks next.
    fn settle_next_speaker(&mut self) {
        self.turn.next_speaker_id = match self.raised_hands.first() {
            Some(&hand) => Some(hand),
            None if self.turn_strategy == TurnStrategy::RoundRobin => self
                .agent_after(self.last_agent_speaker_id)
                .map(|agent| agent.participant_id),
            None => None,
        };
    }

    /// Whether `caller` may read the discussion: its owner, admins, its human
    /// participants, and everyone when it is shared.
    pub(crate) fn readable_by(&self, caller: &Identity) -> bool {
        caller.can_read(self.owner_id, self.visibility.is_shared())
            || self.participant_for(caller.user_id).is_some()
    }

    /// The ownership rule for this discussion: 404 for who may not read it, 403 for
    /// a reader who may not manage it (only its owner and admins do).
    pub(crate) fn check(&self, caller: &Identity, access: Access) -> Result<(), Problem> {
        if !self.readable_by(caller) {
            return Err(not_found(self.discussion_id));
        }
        if access == Access::Write && !caller.can_write(self.owner_id) {
            return Err(Problem::forbidden(format!(
                "only the discussion's owner or an admin may change it; the {} role here does not",
                caller.role
            )));
        }
        Ok(())
    }

    /// Whether `caller` may post messages: its human participants, and who manages it.
    pub(crate) fn check_may_post(&self, caller: &Identity) -> Result<(), Problem> {
        self.check(caller, Access::Read)?;
        let participant = self.participant_for(caller.user_id).is_some();
        if (participant && caller.role >= Role::Member) || caller.can_write(self.owner_id) {
            return Ok(());
        }
        Err(Problem::forbidden(
            "only the discussion's human participants, its owner and admins may post in it",
        ))
    }
}

/// The event stream of a discussion: `discussion:<id>`.
pub(crate) fn stream(discussion_id: Uuid) -> String {
    format!("discussion:{discussion_id}")
}

/// The 404 for a discussion the caller may not see, or that does not exist.
pub(crate) fn not_found(discussion_id: Uuid) -> Problem {
    Problem::not_found(format!("there is no discussion {discussion_id}"))
}

/// Reads a discussion and its participants (`for update` when `lock`), or `None`.
async fn read(
    client: &impl Client,
    discussion_id: Uuid,
    lock: bool,
) -> Result<Option<Discussion>, Problem> {
    let lock = if lock { " for update of d" } else { "" };
    let statement =
        format!("select {DISCUSSION_COLUMNS} from discussions d where d.discussion_id = $1{lock}");
    let Some(mut discussion) = client
        .row_opt::<Discussion>(&statement, &[discussion_id.into()])
        .await?
    else {
        return Ok(None);
    };
    discussion.participants = crate::participant::present(client, discussion_id).await?;
    discussion.settle_next_speaker();
    Ok(Some(discussion))
}

/// Loads a discussion for `caller` with `access`, or the answer to give instead
/// (404 for one they may not see).
pub(crate) async fn load(
    db: &Db,
    caller: &Identity,
    discussion_id: Uuid,
    access: Access,
) -> Result<Discussion, Problem> {
    let discussion = read(db, discussion_id, false)
        .await?
        .ok_or_else(|| not_found(discussion_id))?;
    discussion.check(caller, access)?;
    Ok(discussion)
}

/// Loads and locks (`for update`) a discussion inside a transaction, so writes
/// that depend on its state (status, the turn, the roster) are serialised.
pub(crate) async fn lock(
    tx: &Tx<'_>,
    caller: &Identity,
    discussion_id: Uuid,
    access: Access,
) -> Result<Discussion, Problem> {
    let discussion = read(tx, discussion_id, true)
        .await?
        .ok_or_else(|| not_found(discussion_id))?;
    discussion.check(caller, access)?;
    Ok(discussion)
}

/// Reads a discussion as it now is, for no one in particular: what a write answers
/// with once it has checked its caller (inside its transaction, its own changes
/// included).
pub(crate) async fn fetch(
    client: &impl Client,
    discussion_id: Uuid,
) -> Result<Discussion, Problem> {
    read(client, discussion_id, false)
        .await?
        .ok_or_else(|| not_found(discussion_id))
}

/// Locks a discussion for the turn engine, which acts for a caller already
/// checked (or for no one: a runner finishing its turn).
pub(crate) async fn lock_unchecked(
    tx: &Tx<'_>,
    discussion_id: Uuid,
) -> Result<Discussion, Problem> {
    read(tx, discussion_id, true)
        .await?
        .ok_or_else(|| not_found(discussion_id))
}
