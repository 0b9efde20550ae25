//! Forking: a new discussion that starts as another one was at one of its
//! messages, to take it elsewhere.
//!
//! | Route | Who | Answers |
//! |---|---|---|
//! | `POST /v1/discussions/{discussion_id}/fork` | readers who are members or admins | `201`: the fork (`draft`), at `Location` |
//!
//! The fork belongs to whoever forks. It copies the discussion's settings (topic,
//! turn strategy, stop conditions, context policy, mid-turn input, visibility, the
//! context document), its present participants (or the ones given), and its
//! messages up to and including the chosen one, in order: new ids, the same `seq`,
//! turn, author, content, status, model and usage, each with
//! `copied_from_message_id`. A copied message points at the fork's participant for
//! the same agent or person, or at none when they are not in the fork. A message
//! still `generating` is copied `interrupted`: no turn runs in the fork. The rolling
//! summary is kept only if it covers nothing after the chosen message. The fork's
//! `turn.index` is the number of turns its copies took (the distinct turns of its
//! completed and cancelled messages); `tokens_used`, the usage they record.

use std::collections::HashSet;

use arena_common::auth::{Access, Identity, Role};
use arena_common::body::read_json;
use arena_common::db::{Db, DbError, FromRow, Json, Row, Tx, transaction};
use arena_common::events;
use arena_common::ids::{self, Uuid};
use arena_common::ollama::{Options, check_model_name};
use arena_common::problem::responses::{
    Forbidden, InvalidParameters, NotFound, PayloadTooLarge, Unauthorized, UnsupportedMediaType,
    ValidationFailed,
};
use arena_common::validate::{Validate, Validator};
use arena_common::{Problem, created};
use serde::Deserialize;
use utoipa::ToSchema;

use crate::Request;
use crate::discussion::{self, Discussion, TurnStrategy};
use crate::discussions::{self as resource, Settings, check_title};
use crate::participants::{self, MAX_PARTICIPANTS, Seat, check_seat_parameters, check_seats};

/// Messages copied per statement.
const BATCH: i64 = 1000;

/// What a fork changes of a participant it copies.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ParticipantOverride {
    /// An agent participant of the discussion forked (present now); the change
    /// applies to the fork's participant for the same agent.
    participant_id: Uuid,
    /// The model the agent speaks with in the fork.
    model: Option<String>,
    /// Generation parameters over the agent's own, in the fork (replacing those the
    /// participant had).
    parameters: Option<Options>,
}

/// A fork to make.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewFork {
    /// The last message to copy: a message of this discussion.
    message_id: Uuid,
    /// The fork's title; left out: the discussion's, with " (fork)".
    title: Option<String>,
    /// Who takes part in the fork, in speaking order; left out: the discussion's
    /// present participants, with their models and parameters.
    participants: Option<Vec<Seat>>,
    /// Changes to copied agents' models and parameters.
    #[serde(default)]
    overrides: Vec<ParticipantOverride>,
}

impl Validate for NewFork {
    fn validate(&self, v: &mut Validator) {
        if let Some(title) = &self.title {
            check_title(v, title);
        }
        if let Some(seats) = &self.participants {
            check_seats(v, "participants", seats);
        }
        v.length("overrides", &self.overrides, 0..=MAX_PARTICIPANTS);
        let mut seen = HashSet::new();
        for (n, change) in self.overrides.iter().enumerate() {
            v.nested(format_args!("overrides[{n}]"), |v| {
                v.check(
                    "participant_id",
                    seen.insert(change.participant_id),
                    "is already overridden above",
                );
                if let Some(model) = &change.model {
                    check_model_name(v, "model", model);
                }
            });
        }
    }
}

impl NewFork {
    /// `422` for parameters out of range, in `participants` or `overrides`.
    fn check_parameters(&self) -> Result<(), Problem> {
        if let Some(seats) = &self.participants {
            check_seat_parameters("participants", seats)?;
        }
        for (n, change) in self.overrides.iter().enumerate() {
            if let Some(parameters) = &change.parameters {
                parameters.check_named(format!("overrides[{n}].parameters"))?;
            }
        }
        Ok(())
    }
}

/// A present participant of the discussion forked, as its row holds it: the
/// seat to copy, with its own model and parameters (not the agent's).
struct Copied {
    participant_id: Uuid,
    seat: Seat,
}

impl FromRow for Copied {
    fn from_row(row: Row) -> Result<Self, DbError> {
        let parameters: Option<Json<Options>> = row.get("parameters")?;
        Ok(Self {
            participant_id: row.get("participant_id")?,
            seat: Seat {
                agent_id: row.get("agent_id")?,
                user_id: row.get("user_id")?,
                model: row.get("model")?,
                parameters: parameters.map(|Json(parameters)| parameters),
            },
        })
    }
}

/// The 400 naming `field` of the request.
fn invalid(field: &str, message: String) -> Problem {
    Problem::validation_failed(format!("{field} {message}")).with_field_error(field, message)
}

/// The fork's roster: the seats given, or those of `source` (read in `tx`), with
/// `overrides` applied.
async fn roster(tx: &Tx<'_>, source: &Discussion, request: &NewFork) -> Result<Vec<Seat>, Problem> {
    let copied: Vec<Copied> = tx
        .query(
            "select participant_id, agent_id, user_id, model, parameters
             from discussion_participants
             where discussion_id = $1 and left_at is null
             order by position",
            &[source.discussion_id.into()],
        )
        .await?;
    let mut seats: Vec<Seat> = match &request.participants {
        Some(seats) => seats.clone(),
        None => copied.iter().map(|copied| copied.seat.clone()).collect(),
    };
    for (n, change) in request.overrides.iter().enumerate() {
        let field = format!("overrides[{n}].participant_id");
        let agent_id = copied
            .iter()
            .find(|copied| copied.participant_id == change.participant_id)
            .and_then(|copied| copied.seat.agent_id)
            .ok_or_else(|| {
                invalid(
                    &field,
                    format!(
                        "{} is not an agent taking part in discussion {}",
                        change.participant_id, source.discussion_id
                    ),
                )
            })?;
        let seat = seats
            .iter_mut()
            .find(|seat| seat.agent_id == Some(agent_id))
            .ok_or_else(|| {
                invalid(
                    &field,
                    format!("its agent {agent_id} is not among the fork's participants"),
                )
            })?;
        if let Some(model) = &change.model {
            seat.model = Some(model.clone());
        }
        if let Some(parameters) = &change.parameters {
            seat.parameters = Some(parameters.clone());
        }
    }
    Ok(seats)
}

/// The title a fork gets when none is given: the discussion's, marked, within the
/// 200 characters a title has.
fn fork_title(title: &str) -> String {
    const MARK: &str = " (fork)";
    let room = 200 - MARK.chars().count();
    let kept: String = title.chars().take(room).collect();
    format!("{}{MARK}", kept.trim_end())
}

/// Fork a discussion
///
/// A new `draft` discussion, owned by the caller, that starts as this one was at
/// `message_id`: its settings, its present participants (or `participants`, with
/// `overrides` to copied agents' models and parameters), and its messages up to
/// and including that one, copied in order. Every agent must be one the caller may
/// use. `parent_discussion_id` and `forked_from_message_id` say where it came from.
/// Members and admins who may read the discussion. Event `discussion.created` on
/// the fork's stream.
#[utoipa::path(
    post,
    path = "/v1/discussions/{discussion_id}/fork",
    tag = "discussions",
    operation_id = "forkDiscussion",
    params(("discussion_id" = Uuid, Path, description = "The discussion to fork.")),
    request_body = NewFork,
    responses(
        (
            status = 201,
            description = "The fork.",
            body = Discussion,
            headers(("Location" = String, description = "`/v1/discussions/{discussion_id}` of the fork.")),
        ),
        ValidationFailed, InvalidParameters, Unauthorized, Forbidden, NotFound, PayloadTooLarge,
        UnsupportedMediaType,
    ),
)]
pub(crate) async fn fork(req: &mut Request, id: &str) -> Result<http::Response<String>, Problem> {
    let caller = Identity::from_request(req)?;
    let source_id = ids::parse_id("discussion_id", id)?;
    let request: NewFork = read_json(req).await?;
    request.check_parameters()?;
    let db = Db::connect().await?;
    // A reader who may not write anything (a viewer) learns first that the
    // discussion is there, then that they may not fork it.
    let source = discussion::load(&db, &caller, source_id, Access::Read).await?;
    caller.require(Role::Member)?;
    let fork = transaction(&db, async |tx| {
        let chosen: Option<Row> = tx
            .query_opt(
                "select seq from messages where message_id = $1 and discussion_id = $2",
                &[request.message_id.into(), source_id.into()],
            )
            .await?;
        let through_seq: i64 = match chosen {
            Some(row) => row.get("seq")?,
            None => {
                return Err(invalid(
                    "message_id",
                    format!(
                        "{} is not a message of discussion {source_id}",
                        request.message_id
                    ),
                ));
            }
        };
        let seats = roster(tx, &source, &request).await?;
        let named: Vec<(String, &Seat)> = seats
            .iter()
            .enumerate()
            .map(|(n, seat)| (format!("participants[{n}]"), seat))
            .collect();
        participants::check_seatable(tx, &caller, &named).await?;
        // The moderator is the fork's participant for the same agent.
        let moderator_agent = match source.turn_strategy {
            TurnStrategy::Moderator => source
                .moderator_id
                .and_then(|id| source.participant(id))
                .and_then(|moderator| moderator.agent_id),
            _ => None,
        };
        if let Some(agent_id) = moderator_agent
            && !seats.iter().any(|seat| seat.agent_id == Some(agent_id))
        {
            return Err(invalid(
                "participants",
                format!(
                    "must include the moderator, agent {agent_id}: the discussion's turn \
                     strategy is moderator"
                ),
            ));
        }
        let fork_id = ids::new_id();
        let settings = Settings {
            title: request
                .title
                .clone()
                .unwrap_or_else(|| fork_title(&source.title)),
            topic: source.topic.clone(),
            // A draft may be moderated without a moderator yet (it names one
            // before it starts).
            turn_strategy: source.turn_strategy,
            stop: source.stop.clone(),
            context_policy: source.context_policy.clone(),
            mid_turn_input: source.mid_turn_input,
            visibility: source.visibility,
        };
        resource::insert(tx, fork_id, caller.user_id, &settings).await?;
        let mut moderator_id = None;
        for (position, seat) in (0..).zip(&seats) {
            let participant_id = participants::insert(tx, fork_id, position, seat).await?;
            if seat.agent_id.is_some() && seat.agent_id == moderator_agent {
                moderator_id = Some(participant_id);
            }
        }
        copy_messages(tx, source_id, fork_id, through_seq).await?;
        tx.execute(
            "update discussions f
             set parent_discussion_id = s.discussion_id, forked_from_message_id = $3,
                 moderator_id = $4, context = s.context,
                 summary = case when s.summary_through_seq <= $5 then s.summary else '' end,
                 summary_through_seq =
                     case when s.summary_through_seq <= $5 then s.summary_through_seq else 0 end,
                 turn_count = (select count(distinct m.turn_index) from messages m
                               where m.discussion_id = f.discussion_id
                                 and m.status in ('completed', 'cancelled')),
                 tokens_used = (select coalesce(sum(coalesce(m.prompt_tokens, 0)
                                                    + coalesce(m.completion_tokens, 0)), 0)
                                from messages m where m.discussion_id = f.discussion_id)
             from discussions s
             where f.discussion_id = $1 and s.discussion_id = $2",
            &[
                fork_id.into(),
                source_id.into(),
                request.message_id.into(),
                moderator_id.into(),
                through_seq.into(),
            ],
        )
        .await?;
        let fork = discussion::fetch(tx, fork_id).await?;
        events::emit(tx, &fork.stream(), "discussion.created", &fork).await?;
        Ok(fork)
    })
    .await?;
    created(&format!("/v1/discussions/{}", fork.discussion_id), &fork)
}

/// Copies the messages of `source_id` up to `through_seq` into `fork_id`, in
/// batches: each copy gets a new id, and the fork's participant for its author.
async fn copy_messages(
    tx: &Tx<'_>,
    source_id: Uuid,
    fork_id: Uuid,
    through_seq: i64,
) -> Result<(), Problem> {
    let mut after = 0_i64;
    loop {
        let batch: Vec<Row> = tx
            .query(
                "select message_id, seq from messages
                 where discussion_id = $1 and seq > $2 and seq <= $3
                 order by seq limit $4",
                &[
                    source_id.into(),
                    after.into(),
                    through_seq.into(),
                    BATCH.into(),
                ],
            )
            .await?;
        let Some(last) = batch.last() else {
            return Ok(());
        };
        after = last.get("seq")?;
        let old: Vec<String> = batch
            .iter()
            .map(|row| row.get::<Uuid>("message_id").map(|id| id.to_string()))
            .collect::<Result<_, _>>()?;
        let new: Vec<String> = old.iter().map(|_| ids::new_id().to_string()).collect();
        tx.execute(
            "insert into messages
                 (message_id, discussion_id, seq, turn_index, participant_id, agent_id,
                  agent_version, user_id, content, model, prompt_tokens, completion_tokens,
                  first_token_ms, latency_ms, status, error, copied_from_message_id,
                  created_at, completed_at)
             select copy.new_id, $1, m.seq, m.turn_index, p.participant_id, m.agent_id,
                    m.agent_version, m.user_id, m.content, m.model, m.prompt_tokens,
                    m.completion_tokens, m.first_token_ms, m.latency_ms,
                    case when m.status = 'generating' then 'interrupted' else m.status end,
                    m.error, m.message_id, m.created_at,
                    case when m.status = 'generating' then now() else m.completed_at end
             from unnest($2::text[]::uuid[], $3::text[]::uuid[]) as copy(old_id, new_id)
             join messages m on m.message_id = copy.old_id
             left join discussion_participants p
               on p.discussion_id = $1 and p.left_at is null
              and ((m.agent_id is not null and p.agent_id = m.agent_id)
                or (m.agent_id is null and p.user_id = m.user_id))",
            &[fork_id.into(), old.into(), new.into()],
        )
        .await?;
        if (batch.len() as i64) < BATCH {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arena_common::ProblemCode;

    fn request(json: serde_json::Value) -> NewFork {
        serde_json::from_value(json).unwrap()
    }

    fn invalid_fields(body: &impl Validate) -> Vec<String> {
        match body.validated() {
            Ok(()) => Vec::new(),
            Err(problem) => problem.errors().iter().map(|e| e.field.clone()).collect(),
        }
    }

    #[test]
    fn a_fork_needs_only_the_message() {
        let minimal = request(serde_json::json!({"message_id": Uuid::from_u128(1)}));
        assert!(invalid_fields(&minimal).is_empty());
        assert!(minimal.check_parameters().is_ok());
        assert!(serde_json::from_value::<NewFork>(serde_json::json!({})).is_err());
        assert!(
            serde_json::from_value::<NewFork>(
                serde_json::json!({"message_id": Uuid::from_u128(1), "status": "active"})
            )
            .is_err()
        );
    }

    #[test]
    fn a_fork_names_its_bad_fields() {
        let agent = Uuid::from_u128(7);
        let body = request(serde_json::json!({
            "message_id": Uuid::from_u128(1),
            "title": "",
            "participants": [{"agent_id": agent}, {"agent_id": agent}],
            "overrides": [
                {"participant_id": Uuid::from_u128(2), "model": "a b"},
                {"participant_id": Uuid::from_u128(2)},
            ],
        }));
        assert_eq!(
            invalid_fields(&body),
            [
                "title",
                "participants[1].agent_id",
                "overrides[0].model",
                "overrides[1].participant_id",
            ]
        );
        let parameters = request(serde_json::json!({
            "message_id": Uuid::from_u128(1),
            "overrides": [{"participant_id": Uuid::from_u128(2), "parameters": {"top_p": 2}}],
        }));
        let problem = parameters.check_parameters().unwrap_err();
        assert_eq!(problem.code(), ProblemCode::InvalidParameters);
        assert_eq!(problem.errors()[0].field, "overrides[0].parameters.top_p");
    }

    #[test]
    fn a_forks_default_title_is_marked_and_fits() {
        assert_eq!(fork_title("Tabs or spaces"), "Tabs or spaces (fork)");
        let long = "x".repeat(200);
        let title = fork_title(&long);
        assert_eq!(title.chars().count(), 200);
        assert!(title.ends_with(" (fork)"));
    }
}
