//! Discussions: made, listed, read, changed and deleted.
//!
//! | Route | Who | Answers |
//! |---|---|---|
//! | `GET /v1/discussions` | anyone | `200`: a page of the discussions they may read, newest first; filters `status`, `participant_id`, `owner_id` |
//! | `POST /v1/discussions` | members and admins | `201`: the new discussion (`draft`), at `Location` |
//! | `GET /v1/discussions/{discussion_id}` | its readers | `200`: the discussion, `ETag: "<version>"` |
//! | `PATCH /v1/discussions/{discussion_id}` | its owner, admins | `200`: the discussion, changed, one version on |
//! | `DELETE /v1/discussions/{discussion_id}` | its owner, admins | `204`: gone, with its participants and messages |
//!
//! Its readers are its owner, its human participants, everyone when it is shared,
//! and admins; anyone else gets the `404` of a discussion that does not exist.
//! A change names the `version` it was based on (or sends `If-Match`), so two
//! writers never overwrite each other unknowingly.

use arena_common::auth::{Access, Identity, Role};
use arena_common::body::read_json;
use arena_common::db::{Db, Row, Tx, transaction};
use arena_common::events;
use arena_common::idempotency::{Idempotency, IdempotencyKeyHeader};
use arena_common::ids::{self, Uuid};
use arena_common::pagination::{Page, PageRequest};
use arena_common::problem::responses::{
    Conflict, Forbidden, InvalidParameters, NotFound, PayloadTooLarge, PreconditionFailed,
    TurnInProgress, Unauthorized, UnsupportedMediaType, ValidationFailed,
};
use arena_common::query::Filters;
use arena_common::validate::{Validate, Validator};
use arena_common::visibility::Visibility;
use arena_common::{Problem, created, json, no_content};
use http::{HeaderValue, StatusCode};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::Request;
use crate::discussion::{
    self, ContextPolicy, DISCUSSION_COLUMNS, Discussion, MidTurnInput, Status, StopConditions,
    TurnStrategy,
};
use crate::participant::{PARTICIPANT_COLUMNS, PARTICIPANT_JOINS, Participant};
use crate::participants::{self, Seat, check_seat_parameters, check_seats};
use crate::turns::lease;

/// Every state but `archived`, which is read-only.
const NOT_ARCHIVED: [Status; 4] = [
    Status::Draft,
    Status::Active,
    Status::Paused,
    Status::Completed,
];

/// What `GET /v1/discussions` may be narrowed to; `None` filters nothing.
#[derive(Debug, Default, PartialEq)]
struct DiscussionFilters {
    status: Option<Status>,
    /// An agent or a user taking part now.
    participant_id: Option<Uuid>,
    owner_id: Option<Uuid>,
}

impl DiscussionFilters {
    fn from_query(query: Option<&str>) -> Result<Self, Problem> {
        let filters = Filters::from_query(query, &["status", "participant_id", "owner_id"])?;
        Ok(Self {
            status: filters.parse(
                "status",
                "one of draft, active, paused, completed, archived",
            )?,
            participant_id: filters.parse("participant_id", "a UUID (an agent's or a user's)")?,
            owner_id: filters.parse("owner_id", "a UUID")?,
        })
    }
}

/// List discussions
///
/// The discussions the caller may read (their own, the shared ones, and those they
/// take part in; an admin's: all), newest first, each with its present
/// participants.
#[utoipa::path(
    get,
    path = "/v1/discussions",
    tag = "discussions",
    operation_id = "listDiscussions",
    params(
        ("status" = Option<Status>, Query, description = "Only discussions in this state."),
        ("participant_id" = Option<Uuid>, Query, description = "Only discussions this agent or user takes part in now."),
        ("owner_id" = Option<Uuid>, Query, description = "Only discussions this user owns."),
        ("limit" = Option<u32>, Query, description = "Items per page, 1 to 200 (default 50)."),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page."),
    ),
    responses(
        (status = 200, description = "A page of discussions, newest first.", body = inline(Page<Discussion>)),
        ValidationFailed, Unauthorized,
    ),
)]
pub(crate) async fn list(req: &mut Request) -> Result<http::Response<String>, Problem> {
    let caller = Identity::from_request(req)?;
    let page = PageRequest::<Uuid>::from_query(req.uri().query())?;
    let filters = DiscussionFilters::from_query(req.uri().query())?;
    let db = Db::connect().await?;
    // Newest first is `discussion_id` descending: ids are UUID v7.
    let discussions: Vec<Discussion> = db
        .query(
            &format!(
                "select {DISCUSSION_COLUMNS}
                 from discussions d
                 where ($1::uuid is null or d.discussion_id < $1)
                   and ($2::boolean or d.owner_id = $3 or d.visibility = 'shared'
                        or exists (select 1 from discussion_participants p
                                   where p.discussion_id = d.discussion_id
                                     and p.user_id = $3 and p.left_at is null))
                   and ($4::text is null or d.status = $4)
                   and ($5::uuid is null or d.owner_id = $5)
                   and ($6::uuid is null
                        or exists (select 1 from discussion_participants p
                                   where p.discussion_id = d.discussion_id and p.left_at is null
                                     and (p.agent_id = $6 or p.user_id = $6)))
                 order by d.discussion_id desc
                 limit $7"
            ),
            &[
                page.after.into(),
                (caller.role == Role::Admin).into(),
                caller.user_id.into(),
                filters.status.into(),
                filters.owner_id.into(),
                filters.participant_id.into(),
                page.fetch_limit().into(),
            ],
        )
        .await?;
    let discussions = with_participants(&db, discussions).await?;
    json(
        StatusCode::OK,
        &page.finish(discussions, |discussion| discussion.discussion_id)?,
    )
}

/// `discussions` with their present participants, read in one query.
async fn with_participants(
    db: &Db,
    discussions: Vec<Discussion>,
) -> Result<Vec<Discussion>, Problem> {
    if discussions.is_empty() {
        return Ok(discussions);
    }
    let ids: Vec<String> = discussions
        .iter()
        .map(|discussion| discussion.discussion_id.to_string())
        .collect();
    let rows: Vec<Row> = db
        .query(
            &format!(
                "select {PARTICIPANT_COLUMNS} from {PARTICIPANT_JOINS}
                 where p.discussion_id = any($1::text[]::uuid[]) and p.left_at is null
                 order by p.discussion_id, p.position"
            ),
            &[ids.into()],
        )
        .await?;
    let mut seated: Vec<(Uuid, Participant)> = Vec::with_capacity(rows.len());
    for row in rows {
        let discussion_id: Uuid = row.get("discussion_id")?;
        seated.push((discussion_id, arena_common::db::FromRow::from_row(row)?));
    }
    Ok(discussions
        .into_iter()
        .map(|discussion| {
            let participants = seated
                .iter()
                .filter(|(id, _)| *id == discussion.discussion_id)
                .map(|(_, participant)| participant.clone())
                .collect();
            discussion.with_participants(participants)
        })
        .collect())
}

/// A new discussion. `Serialize` too: an `Idempotency-Key` is bound to it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewDiscussion {
    /// 1 to 200 characters, one line.
    title: String,
    /// The opening prompt every agent sees: 1 to 20,000 characters.
    topic: String,
    /// Who takes part, in speaking order (at most 50; none yet is fine for a
    /// draft). Each agent once, each person once.
    #[serde(default)]
    participants: Vec<Seat>,
    /// `round_robin` unless said otherwise.
    turn_strategy: Option<TurnStrategy>,
    /// For `turn_strategy: moderator` (and only then): the moderator, as its index
    /// in `participants` (from 0), which must be an agent. May wait (a `PATCH` of
    /// `moderator_id` once the agents have joined), but a moderated discussion
    /// starts only with one.
    moderator: Option<u32>,
    /// When the discussion ends by itself; none unless said.
    stop: Option<StopConditions>,
    /// How the history is fitted into a model's context window.
    context_policy: Option<ContextPolicy>,
    /// What a person's message during a turn does; `enqueue` unless said.
    mid_turn_input: Option<MidTurnInput>,
    /// `private` unless said otherwise.
    visibility: Option<Visibility>,
}

impl Validate for NewDiscussion {
    fn validate(&self, v: &mut Validator) {
        check_title(v, &self.title);
        check_topic(v, &self.topic);
        check_seats(v, "participants", &self.participants);
        let strategy = self.turn_strategy.unwrap_or(TurnStrategy::RoundRobin);
        match (strategy, self.moderator) {
            (TurnStrategy::Moderator, Some(at)) => {
                let seat = usize::try_from(at)
                    .ok()
                    .and_then(|at| self.participants.get(at));
                match seat {
                    None => v.error(
                        "moderator",
                        format!(
                            "must be the index of an agent in participants (0 to {}), got {at}",
                            self.participants.len().saturating_sub(1)
                        ),
                    ),
                    Some(seat) => v.check(
                        "moderator",
                        seat.agent_id.is_some(),
                        format!("participants[{at}] is a person; the moderator is an agent"),
                    ),
                }
            }
            (_, Some(_)) => v.error("moderator", "is only for turn_strategy moderator"),
            (_, None) => {}
        }
        if let Some(stop) = &self.stop {
            check_stop(v, stop);
        }
        if let Some(policy) = &self.context_policy {
            check_context_policy(v, policy);
        }
    }
}

/// A discussion's title: 1 to 200 characters, one line.
pub(crate) fn check_title(v: &mut Validator, title: &str) {
    v.text("title", title, 1..=200, false);
}

/// Its topic: 1 to 20,000 characters; line breaks allowed.
fn check_topic(v: &mut Validator, topic: &str) {
    v.text("topic", topic, 1..=20_000, true);
}

/// The ranges of stop conditions (the schema's own).
fn check_stop(v: &mut Validator, stop: &StopConditions) {
    v.nested("stop", |v| {
        if let Some(max_turns) = stop.max_turns {
            v.range("max_turns", max_turns, 1..=100_000);
        }
        if let Some(budget) = stop.token_budget {
            v.range("token_budget", budget, 1..=1_000_000_000);
        }
        if let Some(phrase) = &stop.stop_phrase {
            v.text("stop_phrase", phrase, 1..=200, false);
        }
    });
}

/// The ranges of a context policy, and room left for the prompt.
fn check_context_policy(v: &mut Validator, policy: &ContextPolicy) {
    v.nested("context_policy", |v| {
        v.range("reserve_tokens", policy.reserve_tokens, 0..=65_536);
        if let Some(window) = policy.max_context_tokens {
            const WINDOWS: std::ops::RangeInclusive<u32> = 256..=1_048_576;
            v.range("max_context_tokens", window, WINDOWS);
            // Room for the prompt, once both are in range on their own.
            if WINDOWS.contains(&window) && policy.reserve_tokens <= 65_536 {
                v.check(
                    "reserve_tokens",
                    policy.reserve_tokens < window,
                    format!("must be less than max_context_tokens ({window})"),
                );
            }
        }
        v.range("keep_recent_messages", policy.keep_recent_messages, 0..=100);
    });
}

/// What a new discussion row holds besides its id and owner.
pub(crate) struct Settings {
    pub title: String,
    pub topic: String,
    pub turn_strategy: TurnStrategy,
    pub stop: StopConditions,
    pub context_policy: ContextPolicy,
    pub mid_turn_input: MidTurnInput,
    pub visibility: Visibility,
}

/// Writes a new `draft` discussion with `settings` (no participants yet).
pub(crate) async fn insert(
    tx: &Tx<'_>,
    discussion_id: Uuid,
    owner_id: Uuid,
    settings: &Settings,
) -> Result<(), Problem> {
    tx.execute(
        "insert into discussions
             (discussion_id, owner_id, title, topic, turn_strategy, max_turns, token_budget,
              stop_phrase, context_policy, mid_turn_input, visibility)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        &[
            discussion_id.into(),
            owner_id.into(),
            settings.title.clone().into(),
            settings.topic.clone().into(),
            settings.turn_strategy.into(),
            settings.stop.max_turns.into(),
            settings.stop.token_budget.into(),
            settings.stop.stop_phrase.clone().into(),
            jsonb(&settings.context_policy)?,
            settings.mid_turn_input.into(),
            settings.visibility.into(),
        ],
    )
    .await?;
    Ok(())
}

/// Create a discussion
///
/// A `draft` discussion owned by the caller, with its participants in speaking
/// order: agents the caller may use (their own or shared ones; admins: any), not
/// deleted, and users who exist. Members and admins. Events `discussion.created`,
/// then `participant.joined` for each participant.
///
/// With an `Idempotency-Key`, a retry of the same request answers with the first
/// result (`Idempotent-Replayed: true`) and makes no second discussion.
#[utoipa::path(
    post,
    path = "/v1/discussions",
    tag = "discussions",
    operation_id = "createDiscussion",
    params(IdempotencyKeyHeader),
    request_body = NewDiscussion,
    responses(
        (
            status = 201,
            description = "The discussion (replayed: the first answer to this `Idempotency-Key`).",
            body = Discussion,
            headers(
                ("Location" = String, description = "`/v1/discussions/{discussion_id}`."),
                ("Idempotent-Replayed" = Option<bool>, description = "`true` on the replay of an earlier request with the same `Idempotency-Key`."),
            ),
        ),
        ValidationFailed, InvalidParameters, Unauthorized, Forbidden, Conflict, PayloadTooLarge,
        UnsupportedMediaType,
    ),
)]
pub(crate) async fn create(req: &mut Request) -> Result<http::Response<String>, Problem> {
    let caller = Identity::from_request(req)?;
    caller.require(Role::Member)?;
    let new: NewDiscussion = read_json(req).await?;
    let idempotency = Idempotency::from_request(req, caller.user_id, &new)?;
    check_seat_parameters("participants", &new.participants)?;
    let db = Db::connect().await?;
    if let Some(stored) = idempotency.replay(&db).await? {
        let location = format!("/v1/discussions/{}", stored.resource_id.unwrap_or_default());
        return stored.created(&location);
    }
    let settings = Settings {
        title: new.title.clone(),
        topic: new.topic.clone(),
        turn_strategy: new.turn_strategy.unwrap_or(TurnStrategy::RoundRobin),
        stop: new.stop.clone().unwrap_or_default(),
        context_policy: new.context_policy.clone().unwrap_or_default(),
        mid_turn_input: new.mid_turn_input.unwrap_or(MidTurnInput::Enqueue),
        visibility: new.visibility.unwrap_or_default(),
    };
    let discussion = transaction(&db, async |tx| {
        let seats: Vec<(String, &Seat)> = new
            .participants
            .iter()
            .enumerate()
            .map(|(n, seat)| (format!("participants[{n}]"), seat))
            .collect();
        participants::check_seatable(tx, &caller, &seats).await?;
        let discussion_id = ids::new_id();
        insert(tx, discussion_id, caller.user_id, &settings).await?;
        let mut seated = Vec::with_capacity(new.participants.len());
        for (position, seat) in (0..).zip(&new.participants) {
            seated.push(participants::insert(tx, discussion_id, position, seat).await?);
        }
        if let Some(at) = new.moderator {
            let moderator = usize::try_from(at).ok().and_then(|at| seated.get(at));
            tx.execute(
                "update discussions set moderator_id = $2 where discussion_id = $1",
                &[discussion_id.into(), moderator.copied().into()],
            )
            .await?;
        }
        let discussion = discussion::fetch(tx, discussion_id).await?;
        events::emit(tx, &discussion.stream(), "discussion.created", &discussion).await?;
        for participant in &discussion.participants {
            events::emit(tx, &discussion.stream(), "participant.joined", participant).await?;
        }
        idempotency
            .record(tx, StatusCode::CREATED, Some(discussion_id), &discussion)
            .await?;
        Ok(discussion)
    })
    .await?;
    let response = created(
        &format!("/v1/discussions/{}", discussion.discussion_id),
        &discussion,
    )?;
    with_etag(response, discussion.version)
}

/// Retrieve a discussion
///
/// The discussion with its present participants, the turn in progress and who
/// speaks next. `ETag` is its version, for `If-Match` on a `PATCH`. Whoever may
/// read it: its owner, its human participants, anyone if it is shared, admins.
#[utoipa::path(
    get,
    path = "/v1/discussions/{discussion_id}",
    tag = "discussions",
    operation_id = "retrieveDiscussion",
    params(("discussion_id" = Uuid, Path, description = "The discussion.")),
    responses(
        (
            status = 200,
            description = "The discussion.",
            body = Discussion,
            headers(("ETag" = String, description = "`\"<version>\"`.")),
        ),
        ValidationFailed, Unauthorized, NotFound,
    ),
)]
pub(crate) async fn get(req: &mut Request, id: &str) -> Result<http::Response<String>, Problem> {
    let caller = Identity::from_request(req)?;
    let discussion_id = ids::parse_id("discussion_id", id)?;
    let db = Db::connect().await?;
    let discussion = discussion::load(&db, &caller, discussion_id, Access::Read).await?;
    with_etag(json(StatusCode::OK, &discussion)?, discussion.version)
}

/// The entity tag of a discussion at `version`: `"<version>"`.
fn etag(version: i32) -> String {
    format!("\"{version}\"")
}

/// `response` with the `ETag` of `version`.
fn with_etag(
    mut response: http::Response<String>,
    version: i32,
) -> Result<http::Response<String>, Problem> {
    let value = HeaderValue::from_str(&etag(version)).map_err(Problem::internal)?;
    response.headers_mut().insert(http::header::ETAG, value);
    Ok(response)
}

/// A change to stop conditions: fields left out stay, `null` removes a condition.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct StopUpdate {
    #[serde(default, deserialize_with = "arena_common::body::present")]
    #[schema(value_type = Option<i32>)]
    max_turns: Option<Option<i32>>,
    #[serde(default, deserialize_with = "arena_common::body::present")]
    #[schema(value_type = Option<i64>)]
    token_budget: Option<Option<i64>>,
    #[serde(default, deserialize_with = "arena_common::body::present")]
    #[schema(value_type = Option<String>)]
    stop_phrase: Option<Option<String>>,
}

impl StopUpdate {
    fn apply_to(&self, stop: &StopConditions) -> StopConditions {
        StopConditions {
            max_turns: self.max_turns.unwrap_or(stop.max_turns),
            token_budget: self.token_budget.unwrap_or(stop.token_budget),
            stop_phrase: self
                .stop_phrase
                .clone()
                .unwrap_or_else(|| stop.stop_phrase.clone()),
        }
    }
}

/// A change to the context policy: fields left out stay; `max_context_tokens:
/// null` goes back to the speaking agent's window.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ContextPolicyUpdate {
    #[serde(default, deserialize_with = "arena_common::body::present")]
    #[schema(value_type = Option<u32>)]
    max_context_tokens: Option<Option<u32>>,
    reserve_tokens: Option<u32>,
    keep_recent_messages: Option<u32>,
    summarize: Option<bool>,
}

impl ContextPolicyUpdate {
    fn apply_to(&self, policy: &ContextPolicy) -> ContextPolicy {
        ContextPolicy {
            max_context_tokens: self.max_context_tokens.unwrap_or(policy.max_context_tokens),
            reserve_tokens: self.reserve_tokens.unwrap_or(policy.reserve_tokens),
            keep_recent_messages: self
                .keep_recent_messages
                .unwrap_or(policy.keep_recent_messages),
            summarize: self.summarize.unwrap_or(policy.summarize),
        }
    }
}

/// A change to a discussion. Fields left out stay as they are.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct DiscussionUpdate {
    /// The `version` the change is based on. Required unless `If-Match` names it.
    version: Option<i32>,
    /// 1 to 200 characters, one line.
    title: Option<String>,
    /// 1 to 20,000 characters.
    topic: Option<String>,
    /// Changing it away from `moderator` drops the moderator.
    turn_strategy: Option<TurnStrategy>,
    /// The moderator, a present agent participant, for the `moderator` strategy
    /// (refused with another). A draft may be without one for now; a discussion
    /// that has started may not.
    #[serde(default, deserialize_with = "arena_common::body::present")]
    #[schema(value_type = Option<Uuid>)]
    moderator_id: Option<Option<Uuid>>,
    /// Merged into the stop conditions: `null` removes one.
    stop: Option<StopUpdate>,
    /// Merged into the context policy.
    context_policy: Option<ContextPolicyUpdate>,
    mid_turn_input: Option<MidTurnInput>,
    visibility: Option<Visibility>,
}

impl Validate for DiscussionUpdate {
    fn validate(&self, v: &mut Validator) {
        if let Some(version) = self.version {
            v.range("version", version, 1..=i32::MAX);
        }
        if let Some(title) = &self.title {
            check_title(v, title);
        }
        if let Some(topic) = &self.topic {
            check_topic(v, topic);
        }
        // The merged stop conditions and policy are checked against the
        // discussion's current ones, once it is read.
    }
}

/// What a discussion's settings are once `update` applies to it; `Err` names the
/// fields that do not fit (the moderator, the merged stop conditions and policy).
fn apply(update: &DiscussionUpdate, current: &Discussion) -> Result<Discussion, Problem> {
    let mut changed = current.clone();
    if let Some(title) = &update.title {
        changed.title.clone_from(title);
    }
    if let Some(topic) = &update.topic {
        changed.topic.clone_from(topic);
    }
    if let Some(strategy) = update.turn_strategy {
        changed.turn_strategy = strategy;
    }
    if let Some(stop) = &update.stop {
        changed.stop = stop.apply_to(&current.stop);
    }
    if let Some(policy) = &update.context_policy {
        changed.context_policy = policy.apply_to(&current.context_policy);
    }
    if let Some(input) = update.mid_turn_input {
        changed.mid_turn_input = input;
    }
    if let Some(visibility) = update.visibility {
        changed.visibility = visibility;
    }
    let mut v = Validator::default();
    if update.stop.is_some() {
        check_stop(&mut v, &changed.stop);
    }
    if update.context_policy.is_some() {
        check_context_policy(&mut v, &changed.context_policy);
    }
    match (changed.turn_strategy, update.moderator_id) {
        (TurnStrategy::Moderator, Some(Some(moderator))) => {
            let agent = current
                .participant(moderator)
                .is_some_and(|participant| participant.agent_id.is_some());
            v.check(
                "moderator_id",
                agent,
                format!("{moderator} is not an agent taking part in the discussion"),
            );
            changed.moderator_id = Some(moderator);
        }
        (TurnStrategy::Moderator, cleared) => {
            if cleared.is_some() {
                changed.moderator_id = None;
            }
            v.check(
                "moderator_id",
                changed.moderator_id.is_some() || current.status == Status::Draft,
                "is required with turn_strategy moderator once the discussion has started: \
                 a present agent participant",
            );
        }
        (_, Some(Some(_))) => v.error("moderator_id", "is only for turn_strategy moderator"),
        (_, _) => changed.moderator_id = None,
    }
    v.finish()?;
    Ok(changed)
}

/// Update a discussion
///
/// Changes a discussion based on the `version` last read (in the body, or as
/// `If-Match: "<version>"`): if it changed since, nothing is changed and the
/// answer is a `409 conflict` naming the current version (`412
/// precondition_failed` for a stale `If-Match`). A change that changes nothing
/// leaves the version as it is. An archived discussion is read-only (`409
/// invalid_transition`). Its owner and admins. Event `discussion.updated`.
#[utoipa::path(
    patch,
    path = "/v1/discussions/{discussion_id}",
    tag = "discussions",
    operation_id = "updateDiscussion",
    params(
        ("discussion_id" = Uuid, Path, description = "The discussion."),
        ("If-Match" = Option<String>, Header, description = "`\"<version>\"`, the `ETag` last read."),
    ),
    request_body = DiscussionUpdate,
    responses(
        (
            status = 200,
            description = "The discussion, changed.",
            body = Discussion,
            headers(("ETag" = String, description = "`\"<version>\"`.")),
        ),
        ValidationFailed, Unauthorized, Forbidden, NotFound, Conflict, PreconditionFailed,
        PayloadTooLarge, UnsupportedMediaType,
    ),
)]
pub(crate) async fn update(req: &mut Request, id: &str) -> Result<http::Response<String>, Problem> {
    let caller = Identity::from_request(req)?;
    let discussion_id = ids::parse_id("discussion_id", id)?;
    let headers = req.headers().clone();
    let update: DiscussionUpdate = read_json(req).await?;
    if update.version.is_none() && !headers.contains_key(http::header::IF_MATCH) {
        return Err(Problem::validation_failed(
            "version is required: the version the change is based on (or send If-Match)",
        )
        .with_field_error("version", "is required"));
    }
    let db = Db::connect().await?;
    let discussion = transaction(&db, async |tx| {
        let discussion = discussion::lock(tx, &caller, discussion_id, Access::Write).await?;
        discussion.require_status(&NOT_ARCHIVED, "be changed")?;
        arena_common::request::if_match(&headers, &etag(discussion.version))?;
        if let Some(version) = update.version
            && version != discussion.version
        {
            return Err(Problem::stale_version(version, discussion.version));
        }
        let changed = apply(&update, &discussion)?;
        if changed == discussion {
            return Ok(discussion);
        }
        tx.execute(
            "update discussions
             set title = $2, topic = $3, turn_strategy = $4, moderator_id = $5, max_turns = $6,
                 token_budget = $7, stop_phrase = $8, context_policy = $9, mid_turn_input = $10,
                 visibility = $11, version = version + 1
             where discussion_id = $1",
            &[
                discussion_id.into(),
                changed.title.into(),
                changed.topic.into(),
                changed.turn_strategy.into(),
                changed.moderator_id.into(),
                changed.stop.max_turns.into(),
                changed.stop.token_budget.into(),
                changed.stop.stop_phrase.into(),
                jsonb(&changed.context_policy)?,
                changed.mid_turn_input.into(),
                changed.visibility.into(),
            ],
        )
        .await?;
        let updated = discussion::fetch(tx, discussion_id).await?;
        events::emit(tx, &updated.stream(), "discussion.updated", &updated).await?;
        Ok(updated)
    })
    .await?;
    with_etag(json(StatusCode::OK, &discussion)?, discussion.version)
}

/// Delete a discussion
///
/// The discussion is gone for good, with its participants and messages (forks of
/// it stay, without their parent link). Refused while a turn is in progress (`409
/// turn_in_progress`): cancel it first. Its owner and admins. Event
/// `discussion.deleted`, the last on its stream.
#[utoipa::path(
    delete,
    path = "/v1/discussions/{discussion_id}",
    tag = "discussions",
    operation_id = "deleteDiscussion",
    params(("discussion_id" = Uuid, Path, description = "The discussion.")),
    responses(
        (status = 204, description = "The discussion is deleted."),
        ValidationFailed, Unauthorized, Forbidden, NotFound, TurnInProgress,
    ),
)]
pub(crate) async fn delete(req: &mut Request, id: &str) -> Result<http::Response<String>, Problem> {
    let caller = Identity::from_request(req)?;
    let discussion_id = ids::parse_id("discussion_id", id)?;
    let db = Db::connect().await?;
    transaction(&db, async |tx| {
        let mut discussion = discussion::lock(tx, &caller, discussion_id, Access::Write).await?;
        lease::expire_if_stale(tx, &mut discussion).await?;
        discussion.require_no_turn("delete the discussion")?;
        tx.execute(
            "delete from discussions where discussion_id = $1",
            &[discussion_id.into()],
        )
        .await?;
        events::emit(
            tx,
            &discussion.stream(),
            "discussion.deleted",
            &serde_json::json!({ "discussion_id": discussion_id }),
        )
        .await?;
        Ok(())
    })
    .await?;
    no_content()
}

/// A value as a `jsonb` statement parameter.
pub(crate) fn jsonb(value: &impl Serialize) -> Result<arena_common::db::ParameterValue, Problem> {
    spin_sdk::pg::jsonb(value).map_err(Problem::internal)
}

/// Values for the unit tests of this component.
#[cfg(test)]
pub(crate) mod tests_support {
    use super::*;
    use arena_common::time::Timestamp;

    pub(crate) fn participant(n: u128, agent: bool) -> Participant {
        Participant {
            participant_id: Uuid::from_u128(n),
            kind: if agent {
                crate::participant::Kind::Agent
            } else {
                crate::participant::Kind::User
            },
            position: Some(0),
            agent_id: agent.then(|| Uuid::from_u128(100 + n)),
            user_id: (!agent).then(|| Uuid::from_u128(200 + n)),
            name: format!("p{n}"),
            model: agent.then(|| "llama3.2".to_owned()),
            parameters: None,
            joined_at: "2025-01-02T03:04:05Z".parse().unwrap(),
            left_at: None,
        }
    }

    pub(crate) fn discussion() -> Discussion {
        let at: Timestamp = "2025-01-02T03:04:05Z".parse().unwrap();
        Discussion {
            discussion_id: Uuid::from_u128(1),
            owner_id: Uuid::from_u128(2),
            title: "Tabs or spaces".into(),
            topic: "Settle it.".into(),
            status: Status::Draft,
            completed_reason: None,
            turn_strategy: TurnStrategy::RoundRobin,
            moderator_id: None,
            stop: StopConditions::default(),
            context_policy: ContextPolicy::default(),
            mid_turn_input: MidTurnInput::Enqueue,
            visibility: Visibility::Private,
            parent_discussion_id: None,
            forked_from_message_id: None,
            participants: vec![participant(10, true), participant(11, false)],
            turn: crate::discussion::Turn {
                index: 0,
                status: crate::discussion::TurnState::Idle,
                next_speaker_id: None,
                turn_id: None,
                speaker_id: None,
                message_id: None,
                started_at: None,
                lease_expires_at: None,
            },
            raised_hands: Vec::new(),
            tokens_used: 0,
            version: 3,
            created_at: at,
            updated_at: at,
            last_event_id: 0,
            last_agent_speaker_id: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::tests_support::discussion;
    use super::*;
    use arena_common::ProblemCode;

    fn invalid_fields(body: &impl Validate) -> Vec<String> {
        match body.validated() {
            Ok(()) => Vec::new(),
            Err(problem) => problem.errors().iter().map(|e| e.field.clone()).collect(),
        }
    }

    fn new(json: serde_json::Value) -> NewDiscussion {
        serde_json::from_value(json).unwrap()
    }

    fn update(json: serde_json::Value) -> DiscussionUpdate {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn a_new_discussion_needs_a_title_and_a_topic_only() {
        let minimal = new(serde_json::json!({"title": "Tabs", "topic": "Which?"}));
        assert!(invalid_fields(&minimal).is_empty());
        assert!(minimal.participants.is_empty());
        assert!(
            serde_json::from_value::<NewDiscussion>(serde_json::json!({"title": "t"})).is_err()
        );
        assert!(
            serde_json::from_value::<NewDiscussion>(
                serde_json::json!({"title": "t", "topic": "t", "owner_id": Uuid::from_u128(1)})
            )
            .is_err()
        );
    }

    #[test]
    fn a_new_discussion_reports_every_bad_field() {
        let body = new(serde_json::json!({
            "title": "a\nb", "topic": " ",
            "participants": [{"agent_id": Uuid::from_u128(1)}, {"agent_id": Uuid::from_u128(1)}],
            "stop": {"max_turns": 0, "token_budget": 1, "stop_phrase": ""},
            "context_policy": {"max_context_tokens": 300, "reserve_tokens": 400, "keep_recent_messages": 101},
        }));
        assert_eq!(
            invalid_fields(&body),
            [
                "title",
                "topic",
                "participants[1].agent_id",
                "stop.max_turns",
                "stop.stop_phrase",
                "context_policy.reserve_tokens",
                "context_policy.keep_recent_messages",
            ]
        );
        // A window out of range is that one field's fault alone.
        let small = new(serde_json::json!({
            "title": "t", "topic": "t", "context_policy": {"max_context_tokens": 100},
        }));
        assert_eq!(
            invalid_fields(&small),
            ["context_policy.max_context_tokens"]
        );
    }

    #[test]
    fn the_moderator_is_an_agent_named_by_its_index_and_only_for_that_strategy() {
        let agent = Uuid::from_u128(1);
        let user = Uuid::from_u128(2);
        let body = |strategy: &str, moderator: serde_json::Value| {
            new(serde_json::json!({
                "title": "t", "topic": "t", "turn_strategy": strategy, "moderator": moderator,
                "participants": [{"agent_id": agent}, {"user_id": user}],
            }))
        };
        assert!(invalid_fields(&body("moderator", serde_json::json!(0))).is_empty());
        // Named later, once the agents have joined.
        assert!(invalid_fields(&body("moderator", serde_json::json!(null))).is_empty());
        for (strategy, moderator) in [
            ("moderator", serde_json::json!(1)),
            ("moderator", serde_json::json!(2)),
            ("round_robin", serde_json::json!(0)),
        ] {
            assert_eq!(
                invalid_fields(&body(strategy, moderator.clone())),
                ["moderator"],
                "{strategy} {moderator}"
            );
        }
        assert!(invalid_fields(&body("directed", serde_json::json!(null))).is_empty());
    }

    #[test]
    fn filters_read_status_participant_and_owner() {
        let filters = DiscussionFilters::from_query(Some(
            "status=active&participant_id=00000000-0000-0000-0000-000000000005&limit=5",
        ))
        .unwrap();
        assert_eq!(
            filters,
            DiscussionFilters {
                status: Some(Status::Active),
                participant_id: Some(Uuid::from_u128(5)),
                owner_id: None,
            }
        );
        for (query, parameter) in [
            ("status=running", "status"),
            ("owner_id=me", "owner_id"),
            ("participant=x", "participant"),
        ] {
            let problem = DiscussionFilters::from_query(Some(query)).unwrap_err();
            assert_eq!(problem.code(), ProblemCode::ValidationFailed, "{query}");
            assert_eq!(problem.errors()[0].field, parameter, "{query}");
        }
    }

    #[test]
    fn an_update_changing_nothing_is_no_change() {
        let current = discussion();
        let same = update(serde_json::json!({
            "version": 3, "title": "Tabs or spaces", "visibility": "private", "stop": {}
        }));
        assert_eq!(apply(&same, &current).unwrap(), current);
    }

    #[test]
    fn stop_conditions_and_policy_merge_field_by_field() {
        let mut current = discussion();
        current.stop.max_turns = Some(10);
        current.stop.stop_phrase = Some("done".into());
        let changed = apply(
            &update(serde_json::json!({
                "version": 3,
                "stop": {"max_turns": null, "token_budget": 5000},
                "context_policy": {"max_context_tokens": 8192, "summarize": false},
            })),
            &current,
        )
        .unwrap();
        assert_eq!(
            changed.stop,
            StopConditions {
                max_turns: None,
                token_budget: Some(5000),
                stop_phrase: Some("done".into()),
            }
        );
        assert_eq!(changed.context_policy.max_context_tokens, Some(8192));
        assert_eq!(changed.context_policy.reserve_tokens, 512);
        assert!(!changed.context_policy.summarize);
        let bad = apply(
            &update(serde_json::json!({"version": 3, "stop": {"max_turns": 0}})),
            &current,
        )
        .unwrap_err();
        assert_eq!(bad.errors()[0].field, "stop.max_turns");
    }

    #[test]
    fn the_moderator_follows_the_strategy() {
        let current = discussion();
        let agent = Uuid::from_u128(10);
        let person = Uuid::from_u128(11);
        let moderated = apply(
            &update(serde_json::json!({"turn_strategy": "moderator", "moderator_id": agent})),
            &current,
        )
        .unwrap();
        assert_eq!(moderated.moderator_id, Some(agent));
        for body in [
            serde_json::json!({"turn_strategy": "moderator", "moderator_id": person}),
            serde_json::json!({"moderator_id": agent}),
        ] {
            let problem = apply(&update(body.clone()), &current).unwrap_err();
            assert_eq!(problem.errors()[0].field, "moderator_id", "{body}");
        }
        // A draft may name its moderator later; a started discussion may not.
        let unnamed = update(serde_json::json!({"turn_strategy": "moderator"}));
        assert_eq!(apply(&unnamed, &current).unwrap().moderator_id, None);
        let active = Discussion {
            status: Status::Active,
            ..current.clone()
        };
        let problem = apply(&unnamed, &active).unwrap_err();
        assert_eq!(problem.errors()[0].field, "moderator_id");
        let cleared = update(serde_json::json!({"moderator_id": null}));
        let active_moderated = Discussion {
            status: Status::Active,
            ..moderated.clone()
        };
        assert!(apply(&cleared, &active_moderated).is_err());
        assert_eq!(apply(&cleared, &moderated).unwrap().moderator_id, None);
        // Leaving the moderator strategy drops the moderator.
        let back = apply(
            &update(serde_json::json!({"turn_strategy": "round_robin"})),
            &moderated,
        )
        .unwrap();
        assert_eq!(back.moderator_id, None);
    }

    #[test]
    fn an_update_names_its_bad_fields_and_unknown_ones_are_refused() {
        assert_eq!(
            invalid_fields(&update(serde_json::json!({"version": 0, "title": ""}))),
            ["version", "title"]
        );
        assert!(
            serde_json::from_value::<DiscussionUpdate>(serde_json::json!({"status": "active"}))
                .is_err()
        );
        assert!(
            serde_json::from_value::<DiscussionUpdate>(
                serde_json::json!({"stop": {"max_turn": 1}})
            )
            .is_err()
        );
    }

    #[test]
    fn the_etag_is_the_quoted_version() {
        assert_eq!(etag(7), "\"7\"");
        let response = with_etag(json(StatusCode::OK, &1).unwrap(), 7).unwrap();
        assert_eq!(response.headers()[http::header::ETAG], "\"7\"");
    }
}
