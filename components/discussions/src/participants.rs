//! Who takes part in a discussion, and in which order they speak.
//!
//! | Route | Who | Answers |
//! |---|---|---|
//! | `GET /v1/discussions/{discussion_id}/participants` | readers | `200`: `{items}`, the present participants in speaking order |
//! | `POST /v1/discussions/{discussion_id}/participants` | its owner, admins | `201`: the new participant |
//! | `DELETE /v1/discussions/{discussion_id}/participants/{participant_id}` | its owner, admins | `204`: they left; the others close ranks |
//! | `PUT /v1/discussions/{discussion_id}/participants/order` | its owner, admins | `200`: `{items}` in the new order |
//!
//! A roster change locks the discussion, so it never races a turn being claimed:
//! it waits for no turn (`409 turn_in_progress` while one runs), is refused once the
//! discussion is over (`409 invalid_transition` when completed or archived), bumps
//! the discussion's `version`, and records its event on `discussion:<id>`. Positions
//! stay `0..n` without gaps; the unique `(discussion_id, position)` constraint is
//! checked at commit, so renumbering in place is safe.
//!
//! [`Seat`] (who to seat) and its checks are shared with creating and forking a
//! discussion.

use std::collections::HashSet;

use arena_common::auth::{Access, Identity};
use arena_common::body::read_json;
use arena_common::db::{Db, ParameterValue, Row, Tx, Typed, transaction};
use arena_common::events;
use arena_common::ids::{self, Uuid};
use arena_common::ollama::{Options, check_model_name};
use arena_common::problem::responses::{
    Conflict, Forbidden, InvalidParameters, NotFound, PayloadTooLarge, Unauthorized,
    UnsupportedMediaType, ValidationFailed,
};
use arena_common::validate::{Validate, Validator};
use arena_common::{Problem, created, json, no_content};
use http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::Request;
use crate::discussion::{self, Discussion, Status, TurnStrategy};
use crate::participant::{PARTICIPANT_COLUMNS, PARTICIPANT_JOINS, Participant};
use crate::turns::lease;

/// The most participants present in a discussion at once.
pub(crate) const MAX_PARTICIPANTS: usize = 50;

/// Where the roster may change: not once the discussion is over.
const ROSTER_OPEN: [Status; 3] = [Status::Draft, Status::Active, Status::Paused];

/// Someone to seat: an agent (with what this discussion changes of it) or a person.
/// Exactly one of `agent_id` and `user_id`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Seat {
    /// An agent the caller may use (their own or a shared one; admins: any), not
    /// deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<Uuid>,
    /// A user, who takes part by posting messages and raising a hand.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<Uuid>,
    /// Agents only: the model it speaks with here instead of its own (1 to 200
    /// characters, no spaces).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Agents only: generation parameters set over the agent's own; out of range is
    /// a `422 invalid_parameters`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Options>,
}

impl Seat {
    /// Records what is wrong with this seat's shape in `v` (inside the seat's path).
    pub(crate) fn check(&self, v: &mut Validator) {
        match (self.agent_id, self.user_id) {
            (Some(_), Some(_)) => v.error("user_id", "give agent_id or user_id, not both"),
            (None, None) => v.error("agent_id", "is required (or user_id, for a person)"),
            _ => {}
        }
        if self.user_id.is_some() {
            v.check("model", self.model.is_none(), "only an agent has a model");
            v.check(
                "parameters",
                self.parameters.is_none(),
                "only an agent has generation parameters",
            );
        }
        if let Some(model) = &self.model {
            check_model_name(v, "model", model);
        }
    }

    /// `422 invalid_parameters` for parameters out of range, named under `at`
    /// (`participants[1]` gives `participants[1].parameters.temperature`).
    pub(crate) fn check_parameters(&self, at: &str) -> Result<(), Problem> {
        match &self.parameters {
            Some(parameters) => parameters.check_named(prefixed(at, "parameters")),
            None => Ok(()),
        }
    }

    /// Who this seat names, to tell the same agent or person twice.
    fn who(&self) -> Option<Who> {
        self.agent_id
            .map(Who::Agent)
            .or(self.user_id.map(Who::User))
    }
}

/// An agent or a person, by id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Who {
    Agent(Uuid),
    User(Uuid),
}

impl Who {
    fn of(participant: &Participant) -> Option<Who> {
        participant
            .agent_id
            .map(Who::Agent)
            .or(participant.user_id.map(Who::User))
    }

    fn field(self) -> &'static str {
        match self {
            Who::Agent(_) => "agent_id",
            Who::User(_) => "user_id",
        }
    }
}

/// `at.field`, or `field` when `at` is the body itself.
fn prefixed(at: &str, field: &str) -> String {
    if at.is_empty() {
        field.to_owned()
    } else {
        format!("{at}.{field}")
    }
}

/// Checks a list of seats under `field` (`participants`): at most
/// [`MAX_PARTICIPANTS`], each well formed, no agent or person twice.
pub(crate) fn check_seats(v: &mut Validator, field: &str, seats: &[Seat]) {
    v.length(field, seats, 0..=MAX_PARTICIPANTS);
    let mut seen = HashSet::new();
    for (n, seat) in seats.iter().enumerate() {
        v.nested(format_args!("{field}[{n}]"), |v| {
            seat.check(v);
            if let Some(who) = seat.who()
                && !seen.insert(who)
            {
                v.error(who.field(), "is already in the list: each takes part once");
            }
        });
    }
}

/// `422` for the first seat whose parameters are out of range, named by its place
/// in the list `field`.
pub(crate) fn check_seat_parameters(field: &str, seats: &[Seat]) -> Result<(), Problem> {
    for (n, seat) in seats.iter().enumerate() {
        seat.check_parameters(&format!("{field}[{n}]"))?;
    }
    Ok(())
}

/// An agent as a seat needs it: whose it is and whether it is shared.
struct AgentAccess {
    agent_id: Uuid,
    owner_id: Uuid,
    shared: bool,
}

impl arena_common::db::FromRow for AgentAccess {
    fn from_row(row: Row) -> Result<Self, arena_common::db::DbError> {
        let visibility: arena_common::visibility::Visibility = row.get("visibility")?;
        Ok(Self {
            agent_id: row.get("agent_id")?,
            owner_id: row.get("owner_id")?,
            shared: visibility.is_shared(),
        })
    }
}

/// Checks that every seat names what may be seated: an agent the caller may use
/// and that is not deleted, a user who exists. `seats` pairs each seat with the
/// field path it came from (`participants[2]`, or `""` for a body that is one
/// seat); every bad one is a 400 naming its `agent_id` or `user_id`.
///
/// The agents are read `for share`: an agent's delete waits for this transaction,
/// then sees it taking part, so no discussion ever seats a deleted agent.
pub(crate) async fn check_seatable(
    tx: &Tx<'_>,
    caller: &Identity,
    seats: &[(String, &Seat)],
) -> Result<(), Problem> {
    let agent_ids: Vec<String> = seats
        .iter()
        .filter_map(|(_, seat)| seat.agent_id.map(|id| id.to_string()))
        .collect();
    let user_ids: Vec<String> = seats
        .iter()
        .filter_map(|(_, seat)| seat.user_id.map(|id| id.to_string()))
        .collect();
    let agents: Vec<AgentAccess> = if agent_ids.is_empty() {
        Vec::new()
    } else {
        tx.query(
            "select agent_id, owner_id, visibility from agents
             where agent_id = any($1::text[]::uuid[]) and deleted_at is null
             for share",
            &[agent_ids.into()],
        )
        .await?
    };
    let users: Vec<Row> = if user_ids.is_empty() {
        Vec::new()
    } else {
        tx.query(
            "select user_id from users where user_id = any($1::text[]::uuid[])",
            &[user_ids.into()],
        )
        .await?
    };
    let users: HashSet<Uuid> = users
        .iter()
        .map(|row| row.get("user_id"))
        .collect::<Result<_, _>>()?;
    let mut v = Validator::default();
    for (at, seat) in seats {
        if let Some(agent_id) = seat.agent_id {
            let usable = agents.iter().any(|agent| {
                agent.agent_id == agent_id && caller.can_read(agent.owner_id, agent.shared)
            });
            v.check(
                prefixed(at, "agent_id"),
                usable,
                format!("there is no agent {agent_id} you may use"),
            );
        }
        if let Some(user_id) = seat.user_id {
            v.check(
                prefixed(at, "user_id"),
                users.contains(&user_id),
                format!("there is no user {user_id}"),
            );
        }
    }
    v.finish()
}

/// Seats `seat` in `discussion_id` at `position` (the caller makes room), and
/// returns the new participant's id.
pub(crate) async fn insert(
    tx: &Tx<'_>,
    discussion_id: Uuid,
    position: i32,
    seat: &Seat,
) -> Result<Uuid, Problem> {
    let participant_id = ids::new_id();
    let kind = if seat.agent_id.is_some() {
        "agent"
    } else {
        "user"
    };
    let parameters = match &seat.parameters {
        Some(parameters) => spin_sdk::pg::jsonb(parameters).map_err(Problem::internal)?,
        None => ParameterValue::DbNull,
    };
    tx.execute(
        "insert into discussion_participants
             (participant_id, discussion_id, position, kind, agent_id, user_id, model, parameters)
         values ($1, $2, $3, $4, $5, $6, $7, $8)",
        &[
            participant_id.into(),
            discussion_id.into(),
            position.into(),
            kind.to_owned().into(),
            seat.agent_id.into(),
            seat.user_id.into(),
            seat.model.clone().into(),
            parameters,
        ],
    )
    .await?;
    Ok(participant_id)
}

/// One participant (present or not), as the API shows it.
pub(crate) async fn read(
    client: &impl Typed,
    participant_id: Uuid,
) -> Result<Participant, Problem> {
    Ok(client
        .row(
            &format!(
                "select {PARTICIPANT_COLUMNS} from {PARTICIPANT_JOINS} where p.participant_id = $1"
            ),
            &[participant_id.into()],
        )
        .await?)
}

/// A roster change bumps the discussion's version: a `PATCH` based on what the
/// roster was (a moderator chosen from it) must not pass unnoticed.
async fn bump_version(tx: &Tx<'_>, discussion_id: Uuid) -> Result<(), Problem> {
    tx.execute(
        "update discussions set version = version + 1 where discussion_id = $1",
        &[discussion_id.into()],
    )
    .await?;
    Ok(())
}

/// Locks the discussion for a roster change by `caller`: its owner or an admin,
/// while it is not over and no turn is running (a turn whose runner died is
/// cleared first).
async fn lock_roster(
    tx: &Tx<'_>,
    caller: &Identity,
    discussion_id: Uuid,
) -> Result<Discussion, Problem> {
    let mut discussion = discussion::lock(tx, caller, discussion_id, Access::Write).await?;
    discussion.require_status(&ROSTER_OPEN, "change its participants")?;
    lease::expire_if_stale(tx, &mut discussion).await?;
    discussion.require_no_turn("change the participants")?;
    Ok(discussion)
}

/// The present participants, in speaking order.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ParticipantList {
    pub items: Vec<Participant>,
}

/// List a discussion's participants
///
/// Who takes part now, in speaking order (those who left are not listed; their
/// messages still name them). Whoever may read the discussion.
#[utoipa::path(
    get,
    path = "/v1/discussions/{discussion_id}/participants",
    tag = "discussions",
    operation_id = "listParticipants",
    params(("discussion_id" = Uuid, Path, description = "The discussion.")),
    responses(
        (status = 200, description = "The present participants, in speaking order.", body = ParticipantList),
        ValidationFailed, Unauthorized, NotFound,
    ),
)]
pub(crate) async fn list(req: &mut Request, id: &str) -> Result<http::Response<String>, Problem> {
    let caller = Identity::from_request(req)?;
    let discussion_id = ids::parse_id("discussion_id", id)?;
    let db = Db::connect().await?;
    let discussion = discussion::load(&db, &caller, discussion_id, Access::Read).await?;
    json(
        StatusCode::OK,
        &ParticipantList {
            items: discussion.participants,
        },
    )
}

/// A participant to add: an agent or a person, and where they speak.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewParticipant {
    /// An agent the caller may use (their own or a shared one; admins: any).
    agent_id: Option<Uuid>,
    /// A user.
    user_id: Option<Uuid>,
    /// Their place in the speaking order, from 0; those from there on move one
    /// down. Left out: last.
    position: Option<i32>,
    /// Agents only: the model it speaks with here.
    model: Option<String>,
    /// Agents only: generation parameters over the agent's own.
    parameters: Option<Options>,
}

impl NewParticipant {
    fn seat(&self) -> Seat {
        Seat {
            agent_id: self.agent_id,
            user_id: self.user_id,
            model: self.model.clone(),
            parameters: self.parameters.clone(),
        }
    }
}

impl Validate for NewParticipant {
    fn validate(&self, v: &mut Validator) {
        self.seat().check(v);
        if let Some(position) = self.position {
            v.range("position", position, 0..=MAX_PARTICIPANTS as i32);
        }
    }
}

/// Add a participant
///
/// Seats an agent (one the caller may use, not deleted) or a user, last or at
/// `position`. The same agent or person twice is a `409 conflict`; so is a full
/// discussion (50 present). Refused while a turn is in progress (`409
/// turn_in_progress`) and once the discussion is completed or archived (`409
/// invalid_transition`). Its owner and admins. Event `participant.joined`.
#[utoipa::path(
    post,
    path = "/v1/discussions/{discussion_id}/participants",
    tag = "discussions",
    operation_id = "addParticipant",
    params(("discussion_id" = Uuid, Path, description = "The discussion.")),
    request_body = NewParticipant,
    responses(
        (
            status = 201,
            description = "The participant.",
            body = Participant,
            headers(("Location" = String, description = "`/v1/discussions/{discussion_id}/participants/{participant_id}`.")),
        ),
        ValidationFailed, InvalidParameters, Unauthorized, Forbidden, NotFound, Conflict,
        PayloadTooLarge, UnsupportedMediaType,
    ),
)]
pub(crate) async fn add(req: &mut Request, id: &str) -> Result<http::Response<String>, Problem> {
    let caller = Identity::from_request(req)?;
    let discussion_id = ids::parse_id("discussion_id", id)?;
    let new: NewParticipant = read_json(req).await?;
    let seat = new.seat();
    seat.check_parameters("")?;
    let db = Db::connect().await?;
    let participant = transaction(&db, async |tx| {
        let discussion = lock_roster(tx, &caller, discussion_id).await?;
        let present = discussion.participants.len();
        if let Some(who) = seat.who()
            && let Some(there) = discussion
                .participants
                .iter()
                .find(|participant| Who::of(participant) == Some(who))
        {
            return Err(Problem::conflict(format!(
                "{} already takes part, as participant {}",
                there.name, there.participant_id
            ))
            .with_field_error(who.field(), "already takes part"));
        }
        if present >= MAX_PARTICIPANTS {
            return Err(Problem::conflict(format!(
                "the discussion has {MAX_PARTICIPANTS} participants, the most it may have"
            )));
        }
        let last = i32::try_from(present).map_err(Problem::internal)?;
        let position = new.position.unwrap_or(last);
        if position > last {
            let message = format!("must be between 0 and {last}, got {position}");
            return Err(Problem::validation_failed(format!("position {message}"))
                .with_field_error("position", message));
        }
        check_seatable(tx, &caller, &[(String::new(), &seat)]).await?;
        tx.execute(
            "update discussion_participants set position = position + 1
             where discussion_id = $1 and left_at is null and position >= $2",
            &[discussion_id.into(), position.into()],
        )
        .await?;
        let participant_id = insert(tx, discussion_id, position, &seat).await?;
        bump_version(tx, discussion_id).await?;
        let participant = read(tx, participant_id).await?;
        events::emit(tx, &discussion.stream(), "participant.joined", &participant).await?;
        Ok(participant)
    })
    .await?;
    created(
        &format!(
            "/v1/discussions/{discussion_id}/participants/{}",
            participant.participant_id
        ),
        &participant,
    )
}

/// Remove a participant
///
/// The participant leaves: they are no longer listed nor given turns, the others
/// close ranks, and a hand they raised is lowered. Their messages stay. The
/// moderator of a `moderator` discussion cannot leave (`409 conflict`) until the
/// turn strategy is changed. Refused while a turn is in progress (`409
/// turn_in_progress`) and once the discussion is completed or archived (`409
/// invalid_transition`). Its owner and admins. Event `participant.left`.
#[utoipa::path(
    delete,
    path = "/v1/discussions/{discussion_id}/participants/{participant_id}",
    tag = "discussions",
    operation_id = "removeParticipant",
    params(
        ("discussion_id" = Uuid, Path, description = "The discussion."),
        ("participant_id" = Uuid, Path, description = "The participant."),
    ),
    responses(
        (status = 204, description = "The participant left."),
        ValidationFailed, Unauthorized, Forbidden, NotFound, Conflict,
    ),
)]
pub(crate) async fn remove(
    req: &mut Request,
    id: &str,
    participant: &str,
) -> Result<http::Response<String>, Problem> {
    let caller = Identity::from_request(req)?;
    let discussion_id = ids::parse_id("discussion_id", id)?;
    let participant_id = ids::parse_id("participant_id", participant)?;
    let db = Db::connect().await?;
    transaction(&db, async |tx| {
        let discussion = lock_roster(tx, &caller, discussion_id).await?;
        if discussion.participant(participant_id).is_none() {
            return Err(Problem::not_found(format!(
                "participant {participant_id} does not take part in discussion {discussion_id}"
            )));
        }
        let moderates = discussion.moderator_id == Some(participant_id);
        if moderates && discussion.turn_strategy == TurnStrategy::Moderator {
            return Err(Problem::conflict(format!(
                "participant {participant_id} moderates the discussion; change its turn_strategy \
                 (or name another moderator) before removing them"
            )));
        }
        tx.execute(
            "update discussion_participants set left_at = now(), position = null
             where participant_id = $1",
            &[participant_id.into()],
        )
        .await?;
        tx.execute(
            "update discussion_participants p set position = ranked.position
             from (select participant_id,
                          (row_number() over (order by position) - 1)::integer as position
                   from discussion_participants
                   where discussion_id = $1 and left_at is null) ranked
             where p.participant_id = ranked.participant_id and p.position <> ranked.position",
            &[discussion_id.into()],
        )
        .await?;
        crate::hands::lower_hand(tx, &discussion, participant_id, caller.user_id).await?;
        tx.execute(
            "update discussions
             set version = version + 1, moderator_id = nullif(moderator_id, $2)
             where discussion_id = $1",
            &[discussion_id.into(), participant_id.into()],
        )
        .await?;
        let left = read(tx, participant_id).await?;
        events::emit(tx, &discussion.stream(), "participant.left", &left).await?;
        Ok(())
    })
    .await?;
    no_content()
}

/// A new speaking order.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ParticipantOrder {
    /// Every present participant, once each, in the order they are to speak.
    participant_ids: Vec<Uuid>,
}

impl Validate for ParticipantOrder {
    fn validate(&self, v: &mut Validator) {
        v.length(
            "participant_ids",
            &self.participant_ids,
            0..=MAX_PARTICIPANTS,
        );
        let mut seen = HashSet::new();
        for (n, id) in self.participant_ids.iter().enumerate() {
            v.check(
                format_args!("participant_ids[{n}]"),
                seen.insert(*id),
                format!("repeats {id}"),
            );
        }
    }
}

/// What is wrong with `order` as a new order of `present`: the ids it lacks and
/// those that are not present participants.
fn order_mismatch(order: &[Uuid], present: &[Uuid]) -> Option<String> {
    let missing: Vec<String> = present
        .iter()
        .filter(|id| !order.contains(id))
        .map(Uuid::to_string)
        .collect();
    let unknown: Vec<String> = order
        .iter()
        .filter(|id| !present.contains(id))
        .map(Uuid::to_string)
        .collect();
    let mut problems = Vec::new();
    if !missing.is_empty() {
        problems.push(format!("lacks {}", missing.join(", ")));
    }
    if !unknown.is_empty() {
        problems.push(format!(
            "names {}, not present participants",
            unknown.join(", ")
        ));
    }
    (!problems.is_empty()).then(|| {
        format!(
            "must list exactly the present participants; it {}",
            problems.join(" and ")
        )
    })
}

/// Reorder the participants
///
/// Sets the speaking order: `participant_ids` lists every present participant
/// exactly once. Refused while a turn is in progress (`409 turn_in_progress`) and
/// once the discussion is completed or archived (`409 invalid_transition`). Its
/// owner and admins. Event `participants.reordered`.
#[utoipa::path(
    put,
    path = "/v1/discussions/{discussion_id}/participants/order",
    tag = "discussions",
    operation_id = "reorderParticipants",
    params(("discussion_id" = Uuid, Path, description = "The discussion.")),
    request_body = ParticipantOrder,
    responses(
        (status = 200, description = "The participants, in the new order.", body = ParticipantList),
        ValidationFailed, Unauthorized, Forbidden, NotFound, Conflict, PayloadTooLarge,
        UnsupportedMediaType,
    ),
)]
pub(crate) async fn reorder(
    req: &mut Request,
    id: &str,
) -> Result<http::Response<String>, Problem> {
    let caller = Identity::from_request(req)?;
    let discussion_id = ids::parse_id("discussion_id", id)?;
    let order: ParticipantOrder = read_json(req).await?;
    let db = Db::connect().await?;
    let items = transaction(&db, async |tx| {
        let discussion = lock_roster(tx, &caller, discussion_id).await?;
        let present: Vec<Uuid> = discussion
            .participants
            .iter()
            .map(|participant| participant.participant_id)
            .collect();
        if let Some(message) = order_mismatch(&order.participant_ids, &present) {
            return Err(
                Problem::validation_failed(format!("participant_ids {message}"))
                    .with_field_error("participant_ids", message),
            );
        }
        if order.participant_ids == present {
            return Ok(discussion.participants);
        }
        let ids: Vec<String> = order.participant_ids.iter().map(Uuid::to_string).collect();
        tx.execute(
            "update discussion_participants p set position = (o.n - 1)::integer
             from unnest($2::text[]::uuid[]) with ordinality as o(participant_id, n)
             where p.participant_id = o.participant_id and p.discussion_id = $1",
            &[discussion_id.into(), ids.into()],
        )
        .await?;
        bump_version(tx, discussion_id).await?;
        events::emit(
            tx,
            &discussion.stream(),
            "participants.reordered",
            &serde_json::json!({ "participant_ids": order.participant_ids }),
        )
        .await?;
        Ok(crate::participant::present(tx, discussion_id).await?)
    })
    .await?;
    json(StatusCode::OK, &ParticipantList { items })
}

#[cfg(test)]
mod tests {
    use super::*;
    use arena_common::ProblemCode;

    fn fields(check: impl FnOnce(&mut Validator)) -> Vec<String> {
        let mut v = Validator::default();
        check(&mut v);
        match v.finish() {
            Ok(()) => Vec::new(),
            Err(problem) => problem.errors().iter().map(|e| e.field.clone()).collect(),
        }
    }

    fn seats(json: serde_json::Value) -> Vec<Seat> {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn a_seat_is_an_agent_or_a_person_and_only_agents_have_models() {
        let agent = Uuid::from_u128(1);
        let user = Uuid::from_u128(2);
        let list = seats(serde_json::json!([
            {"agent_id": agent, "model": "llama3.2", "parameters": {"temperature": 0.2}},
            {"user_id": user},
            {"agent_id": Uuid::from_u128(3), "user_id": Uuid::from_u128(4)},
            {},
            {"user_id": Uuid::from_u128(5), "model": "m", "parameters": {}},
            {"agent_id": Uuid::from_u128(6), "model": "has space"},
            {"agent_id": agent},
            {"user_id": user},
        ]));
        assert_eq!(
            fields(|v| check_seats(v, "participants", &list)),
            [
                "participants[2].user_id",
                "participants[3].agent_id",
                "participants[4].model",
                "participants[4].parameters",
                "participants[5].model",
                "participants[6].agent_id",
                "participants[7].user_id",
            ]
        );
    }

    #[test]
    fn unknown_seat_fields_are_refused_and_the_list_is_bounded() {
        assert!(
            serde_json::from_value::<Seat>(
                serde_json::json!({"agent_id": Uuid::from_u128(1), "name": "x"})
            )
            .is_err()
        );
        let many: Vec<Seat> = (0..=MAX_PARTICIPANTS as u128)
            .map(|n| Seat {
                agent_id: Some(Uuid::from_u128(n + 1)),
                ..Seat::default()
            })
            .collect();
        assert_eq!(
            fields(|v| check_seats(v, "participants", &many)),
            ["participants"]
        );
    }

    #[test]
    fn seat_parameters_out_of_range_are_422_named_by_their_place() {
        let list = seats(serde_json::json!([
            {"agent_id": Uuid::from_u128(1)},
            {"agent_id": Uuid::from_u128(2), "parameters": {"temperature": 9}},
        ]));
        let problem = check_seat_parameters("participants", &list).unwrap_err();
        assert_eq!(problem.code(), ProblemCode::InvalidParameters);
        assert_eq!(
            problem.errors()[0].field,
            "participants[1].parameters.temperature"
        );
        let one = &list[1];
        assert_eq!(
            one.check_parameters("").unwrap_err().errors()[0].field,
            "parameters.temperature"
        );
    }

    #[test]
    fn a_new_participant_has_a_position_in_range() {
        let new: NewParticipant = serde_json::from_value(serde_json::json!({
            "user_id": Uuid::from_u128(1), "position": -1
        }))
        .unwrap();
        assert_eq!(fields(|v| new.validate(v)), ["position"]);
        assert!(
            serde_json::from_value::<NewParticipant>(serde_json::json!({"participant_id": "x"}))
                .is_err()
        );
    }

    #[test]
    fn an_order_lists_exactly_the_present_participants_once() {
        let [a, b, c] = [1, 2, 3].map(Uuid::from_u128);
        assert_eq!(order_mismatch(&[b, a], &[a, b]), None);
        let mismatch = order_mismatch(&[a, c], &[a, b]).unwrap();
        assert!(mismatch.contains(&format!("lacks {b}")), "{mismatch}");
        assert!(mismatch.contains(&format!("names {c}")), "{mismatch}");
        let order: ParticipantOrder =
            serde_json::from_value(serde_json::json!({"participant_ids": [a, a]})).unwrap();
        assert_eq!(fields(|v| order.validate(v)), ["participant_ids[1]"]);
    }
}
