//! Agents: made, listed, read, changed and deleted.
//!
//! | Route | Who | Answers |
//! |---|---|---|
//! | `GET /v1/agents` | anyone | `200`: a page of the agents they may read, newest first; filters `owner_id`, `tag`, `model`, `q` (name prefix), `visibility` |
//! | `POST /v1/agents` | members and admins | `201`: the new agent (version 1), at `Location` |
//! | `GET /v1/agents/{agent_id}` | whoever may read it | `200`: the agent |
//! | `PATCH /v1/agents/{agent_id}` | its owner, admins | `200`: the agent, changed, one version on |
//! | `DELETE /v1/agents/{agent_id}` | its owner, admins | `204`: gone from every list and lookup; `409 agent_in_use` while it takes part in a discussion not over |
//!
//! A change names the `version` it was based on, so two writers never overwrite
//! each other unknowingly (a stale one is a `409` naming the current version).
//! Every version is kept in `agent_versions` (see [`crate::versions`]). Each
//! write announces itself on the owner's event stream, `user:<owner_id>`.

use arena_common::auth::{Access, Identity, Role};
use arena_common::body::read_json;
use arena_common::db::{Db, DbError, ParameterValue, Row, Tx, transaction};
use arena_common::events;
use arena_common::idempotency::{Idempotency, IdempotencyKeyHeader};
use arena_common::ids::{self, Uuid};
use arena_common::ollama::{Options, check_model_name};
use arena_common::pagination::{Page, PageRequest};
use arena_common::problem::responses::{
    AgentInUse, Conflict, Forbidden, InvalidParameters, NotFound, PayloadTooLarge, Unauthorized,
    UnsupportedMediaType, ValidationFailed,
};
use arena_common::query::Filters;
use arena_common::validate::{Validate, Validator};
use arena_common::{Problem, ProblemCode, created, json, no_content};
use http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::Request;
use crate::agent::{AGENT_COLUMNS, Agent, Visibility, check_tags};

/// What `GET /v1/agents` may be narrowed to; `None` filters nothing.
#[derive(Debug, Default, PartialEq)]
struct AgentFilters {
    owner_id: Option<Uuid>,
    tag: Option<String>,
    model: Option<String>,
    /// A `LIKE` pattern for the lowercased name: the lowercased prefix asked
    /// for, its wildcards escaped, then `%`.
    name_pattern: Option<String>,
    visibility: Option<Visibility>,
}

impl AgentFilters {
    fn from_query(query: Option<&str>) -> Result<Self, Problem> {
        let filters = Filters::from_query(query, &["owner_id", "tag", "model", "q", "visibility"])?;
        Ok(Self {
            owner_id: filters.parse("owner_id", "a UUID")?,
            tag: filters.text("tag").map(str::to_owned),
            model: filters.text("model").map(str::to_owned),
            name_pattern: filters.text("q").map(prefix_pattern),
            visibility: filters.parse("visibility", "private or shared")?,
        })
    }
}

/// The `LIKE` pattern matching what starts with `prefix`, ignoring case.
fn prefix_pattern(prefix: &str) -> String {
    let mut pattern = String::with_capacity(prefix.len() + 1);
    for c in prefix.to_lowercase().chars() {
        if matches!(c, '\\' | '%' | '_') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

/// List agents
///
/// The agents the caller may read (their own and the shared ones; an admin's:
/// all), newest first.
#[utoipa::path(
    get,
    path = "/v1/agents",
    tag = "agents",
    operation_id = "listAgents",
    params(
        ("owner_id" = Option<Uuid>, Query, description = "Only agents this user owns."),
        ("tag" = Option<String>, Query, description = "Only agents with this tag."),
        ("model" = Option<String>, Query, description = "Only agents on this model."),
        ("q" = Option<String>, Query, description = "Only names starting with this, ignoring case."),
        ("visibility" = Option<Visibility>, Query, description = "Only private or only shared agents."),
        ("limit" = Option<u32>, Query, description = "Items per page, 1 to 200 (default 50)."),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page."),
    ),
    responses(
        (status = 200, description = "A page of agents, newest first.", body = inline(Page<Agent>)),
        ValidationFailed, Unauthorized,
    ),
)]
pub(crate) async fn list(req: &mut Request) -> Result<http::Response<String>, Problem> {
    let caller = Identity::from_request(req)?;
    let page = PageRequest::<Uuid>::from_query(req.uri().query())?;
    let filters = AgentFilters::from_query(req.uri().query())?;
    let db = Db::connect().await?;
    // Newest first is `agent_id` descending: ids are UUID v7, ordered by creation.
    let agents: Vec<Agent> = db
        .query(
            &format!(
                "select {AGENT_COLUMNS}
                 from agents
                 where deleted_at is null
                   and ($1::uuid is null or agent_id < $1)
                   and ($2::boolean or owner_id = $3 or visibility = 'shared')
                   and ($4::uuid is null or owner_id = $4)
                   and ($5::text is null or tags @> array[$5::text])
                   and ($6::text is null or model = $6)
                   and ($7::text is null or lower(name) like $7)
                   and ($8::text is null or visibility = $8)
                 order by agent_id desc
                 limit $9"
            ),
            &[
                page.after.into(),
                (caller.role == Role::Admin).into(),
                caller.user_id.into(),
                filters.owner_id.into(),
                filters.tag.into(),
                filters.model.into(),
                filters.name_pattern.into(),
                filters.visibility.into(),
                page.fetch_limit().into(),
            ],
        )
        .await?;
    json(
        StatusCode::OK,
        &page.finish(agents, |agent| agent.agent_id)?,
    )
}

/// A new agent. `Serialize` too: an `Idempotency-Key` is bound to it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewAgent {
    /// 1 to 100 characters.
    name: String,
    /// Up to 2,000 characters.
    description: Option<String>,
    /// The system prompt: 1 to 20,000 characters.
    persona: String,
    /// An Ollama model name, 1 to 200 characters.
    model: String,
    /// Generation parameters; out of range is a `422 invalid_parameters`.
    parameters: Option<Options>,
    /// At most 20, each 1 to 40 lowercase letters, digits or `-`.
    tags: Option<Vec<String>>,
    /// `private` unless said otherwise.
    visibility: Option<Visibility>,
}

impl Validate for NewAgent {
    fn validate(&self, v: &mut Validator) {
        check_fields(
            v,
            Some(&self.name),
            self.description.as_deref(),
            Some(&self.persona),
            Some(&self.model),
            self.tags.as_deref(),
        );
    }
}

/// The rules of an agent's fields, for those given.
fn check_fields(
    v: &mut Validator,
    name: Option<&str>,
    description: Option<&str>,
    persona: Option<&str>,
    model: Option<&str>,
    tags: Option<&[String]>,
) {
    if let Some(name) = name {
        v.text("name", name, 1..=100, false);
    }
    if let Some(description) = description {
        v.text("description", description, 0..=2000, true);
    }
    if let Some(persona) = persona {
        v.text("persona", persona, 1..=20_000, true);
    }
    if let Some(model) = model {
        check_model_name(v, "model", model);
    }
    if let Some(tags) = tags {
        check_tags(v, tags);
    }
}

/// Create an agent
///
/// An agent owned by the caller, at version 1. Members and admins.
///
/// With an `Idempotency-Key`, a retry of the same request answers with the first
/// result (`Idempotent-Replayed: true`) and makes no second agent; the key on
/// another request is a `422 idempotency_key_reused`, and while the first request
/// runs a `409 conflict`.
#[utoipa::path(
    post,
    path = "/v1/agents",
    tag = "agents",
    operation_id = "createAgent",
    params(IdempotencyKeyHeader),
    request_body = NewAgent,
    responses(
        (
            status = 201,
            description = "The agent (replayed: the first answer to this `Idempotency-Key`).",
            body = Agent,
            headers(
                ("Location" = String, description = "The agent's path: `/v1/agents/{agent_id}`."),
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
    let new: NewAgent = read_json(req).await?;
    let idempotency = Idempotency::from_request(req, caller.user_id, &new)?;
    let parameters = new.parameters.clone().unwrap_or_default();
    parameters.check_named("parameters")?;
    let parameters = jsonb(&parameters)?;
    let db = Db::connect().await?;
    if let Some(stored) = idempotency.replay(&db).await? {
        return stored.created("/v1/agents");
    }
    let agent = transaction(&db, async |tx| {
        let agent: Agent = tx
            .query_one(
                &format!(
                    "insert into agents
                         (agent_id, owner_id, name, description, persona, model, parameters,
                          tags, visibility)
                     values ($1, $2, $3, $4, $5, $6, $7, $8::text[], $9)
                     returning {AGENT_COLUMNS}"
                ),
                &[
                    ids::new_id().into(),
                    caller.user_id.into(),
                    new.name.clone().into(),
                    new.description.clone().into(),
                    new.persona.clone().into(),
                    new.model.clone().into(),
                    parameters.clone(),
                    new.tags.clone().unwrap_or_default().into(),
                    new.visibility.unwrap_or_default().into(),
                ],
            )
            .await?;
        record_version(tx, &agent, caller.user_id).await?;
        announce(tx, "agent.created", &agent).await?;
        idempotency
            .record(tx, StatusCode::CREATED, Some(agent.agent_id), &agent)
            .await?;
        Ok(agent)
    })
    .await?;
    created(&format!("/v1/agents/{}", agent.agent_id), &agent)
}

/// Retrieve an agent
///
/// Whoever may read it: its owner, anyone if it is shared, admins. Anyone else
/// gets the `404` of an agent that does not exist.
#[utoipa::path(
    get,
    path = "/v1/agents/{agent_id}",
    tag = "agents",
    operation_id = "retrieveAgent",
    params(("agent_id" = Uuid, Path, description = "The agent.")),
    responses(
        (status = 200, description = "The agent.", body = Agent),
        ValidationFailed, Unauthorized, NotFound,
    ),
)]
pub(crate) async fn get(req: &mut Request, id: &str) -> Result<http::Response<String>, Problem> {
    let caller = Identity::from_request(req)?;
    let agent_id = ids::parse_id("agent_id", id)?;
    let db = Db::connect().await?;
    let agent = readable(&db, &caller, agent_id).await?;
    json(StatusCode::OK, &agent)
}

/// The agent `agent_id` if the caller may read it and it is not deleted; else
/// the same 404 either way.
pub(crate) async fn readable(db: &Db, caller: &Identity, agent_id: Uuid) -> Result<Agent, Problem> {
    let agent: Option<Agent> = db
        .query_opt(
            &format!(
                "select {AGENT_COLUMNS} from agents where agent_id = $1 and deleted_at is null"
            ),
            &[agent_id.into()],
        )
        .await?;
    let agent = agent.ok_or_else(|| no_such_agent(agent_id))?;
    check(caller, Access::Read, &agent)?;
    Ok(agent)
}

/// A change to an agent. Fields left out stay as they are.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AgentUpdate {
    /// The `version` of the agent the change is based on.
    version: i32,
    /// 1 to 100 characters.
    name: Option<String>,
    /// Up to 2,000 characters; `null` clears it.
    #[serde(default, deserialize_with = "arena_common::body::present")]
    #[schema(value_type = Option<String>)]
    description: Option<Option<String>>,
    /// 1 to 20,000 characters.
    persona: Option<String>,
    model: Option<String>,
    /// Replaces the parameters as a whole.
    parameters: Option<Options>,
    /// Replaces the tags as a whole.
    tags: Option<Vec<String>>,
    visibility: Option<Visibility>,
}

impl Validate for AgentUpdate {
    fn validate(&self, v: &mut Validator) {
        v.range("version", self.version, 1..=i32::MAX);
        check_fields(
            v,
            self.name.as_deref(),
            self.description.as_ref().and_then(Option::as_deref),
            self.persona.as_deref(),
            self.model.as_deref(),
            self.tags.as_deref(),
        );
    }
}

impl AgentUpdate {
    /// `agent` with this change applied (its version, times and ids as they are).
    fn apply_to(&self, agent: &Agent) -> Agent {
        Agent {
            name: self.name.clone().unwrap_or_else(|| agent.name.clone()),
            description: self
                .description
                .clone()
                .unwrap_or_else(|| agent.description.clone()),
            persona: self
                .persona
                .clone()
                .unwrap_or_else(|| agent.persona.clone()),
            model: self.model.clone().unwrap_or_else(|| agent.model.clone()),
            parameters: self
                .parameters
                .clone()
                .unwrap_or_else(|| agent.parameters.clone()),
            tags: self.tags.clone().unwrap_or_else(|| agent.tags.clone()),
            visibility: self.visibility.unwrap_or(agent.visibility),
            ..agent.clone()
        }
    }
}

/// Update an agent
///
/// Changes an agent based on the `version` last read: if it changed since,
/// nothing is changed and the answer is a `409` naming the current version. A
/// change makes a new version, kept in the history; one that changes nothing
/// leaves the version as it is. Its owner and admins.
#[utoipa::path(
    patch,
    path = "/v1/agents/{agent_id}",
    tag = "agents",
    operation_id = "updateAgent",
    params(("agent_id" = Uuid, Path, description = "The agent.")),
    request_body = AgentUpdate,
    responses(
        (status = 200, description = "The agent, changed.", body = Agent),
        ValidationFailed, InvalidParameters, Unauthorized, Forbidden, NotFound, Conflict,
        PayloadTooLarge, UnsupportedMediaType,
    ),
)]
pub(crate) async fn update(req: &mut Request, id: &str) -> Result<http::Response<String>, Problem> {
    let caller = Identity::from_request(req)?;
    caller.require(Role::Member)?;
    let agent_id = ids::parse_id("agent_id", id)?;
    let update: AgentUpdate = read_json(req).await?;
    if let Some(parameters) = &update.parameters {
        parameters.check_named("parameters")?;
    }
    let db = Db::connect().await?;
    let agent = transaction(&db, async |tx| {
        let agent = lock_agent(tx, agent_id).await?;
        check(&caller, Access::Write, &agent)?;
        if update.version != agent.version {
            return Err(Problem::stale_version(update.version, agent.version));
        }
        let changed = update.apply_to(&agent);
        if changed == agent {
            return Ok(agent);
        }
        let updated: Agent = tx
            .query_one(
                &format!(
                    "update agents
                     set name = $2, description = $3, persona = $4, model = $5,
                         parameters = $6, tags = $7::text[], visibility = $8,
                         version = version + 1
                     where agent_id = $1
                     returning {AGENT_COLUMNS}"
                ),
                &[
                    agent_id.into(),
                    changed.name.into(),
                    changed.description.into(),
                    changed.persona.into(),
                    changed.model.into(),
                    jsonb(&changed.parameters)?,
                    changed.tags.into(),
                    changed.visibility.into(),
                ],
            )
            .await?;
        record_version(tx, &updated, caller.user_id).await?;
        announce(tx, "agent.updated", &updated).await?;
        Ok(updated)
    })
    .await?;
    json(StatusCode::OK, &agent)
}

/// Delete an agent
///
/// The agent leaves every list and lookup (its versions stay, for the
/// discussions that name them). Its owner and admins.
///
/// Refused with `409 agent_in_use` while the agent takes part (has not left) in
/// a discussion that is `draft`, `active` or `paused`: those may still give it a
/// turn. Remove it from them, or complete or archive them, first.
#[utoipa::path(
    delete,
    path = "/v1/agents/{agent_id}",
    tag = "agents",
    operation_id = "deleteAgent",
    params(("agent_id" = Uuid, Path, description = "The agent.")),
    responses(
        (status = 204, description = "The agent is deleted."),
        ValidationFailed, Unauthorized, Forbidden, NotFound, AgentInUse,
    ),
)]
pub(crate) async fn delete(req: &mut Request, id: &str) -> Result<http::Response<String>, Problem> {
    let caller = Identity::from_request(req)?;
    caller.require(Role::Member)?;
    let agent_id = ids::parse_id("agent_id", id)?;
    let db = Db::connect().await?;
    transaction(&db, async |tx| {
        let agent = lock_agent(tx, agent_id).await?;
        check(&caller, Access::Write, &agent)?;
        // The agent's row is locked: a discussion adding it now waits for this
        // transaction (it reads the agent `for share`), then finds it deleted.
        let in_use: Vec<Row> = tx
            .query(
                "select d.discussion_id from discussion_participants p
                 join discussions d on d.discussion_id = p.discussion_id
                 where p.agent_id = $1 and p.left_at is null
                   and d.status in ('draft', 'active', 'paused')",
                &[agent_id.into()],
            )
            .await?;
        if !in_use.is_empty() {
            return Err(in_use_problem(agent_id, in_use.len()));
        }
        tx.execute(
            "update agents set deleted_at = now() where agent_id = $1",
            &[agent_id.into()],
        )
        .await?;
        announce(tx, "agent.deleted", &agent).await?;
        Ok(())
    })
    .await?;
    no_content()
}

/// The agent `agent_id`, not deleted, its row locked until the transaction ends;
/// 404 if there is none.
async fn lock_agent(tx: &Tx<'_>, agent_id: Uuid) -> Result<Agent, Problem> {
    tx.query_opt(
        &format!(
            "select {AGENT_COLUMNS} from agents
             where agent_id = $1 and deleted_at is null
             for update"
        ),
        &[agent_id.into()],
    )
    .await?
    .ok_or_else(|| no_such_agent(agent_id))
}

/// The ownership rule for `agent`, its 404 naming the agent.
fn check(caller: &Identity, access: Access, agent: &Agent) -> Result<(), Problem> {
    if !caller.can_read(agent.owner_id, agent.visibility.is_shared()) {
        return Err(no_such_agent(agent.agent_id));
    }
    caller.check(
        access,
        agent.owner_id,
        agent.visibility.is_shared(),
        "agent",
    )
}

/// Writes `agent` as it now is to its version history, written by `by`.
async fn record_version(tx: &Tx<'_>, agent: &Agent, by: Uuid) -> Result<(), DbError> {
    tx.execute(
        "insert into agent_versions
             (agent_id, version, name, description, persona, model, parameters, tags,
              visibility, created_by)
         select agent_id, version, name, description, persona, model, parameters, tags,
                visibility, $2
         from agents where agent_id = $1",
        &[agent.agent_id.into(), by.into()],
    )
    .await?;
    Ok(())
}

/// Emits `event_type` with `agent` on its owner's stream.
async fn announce(tx: &Tx<'_>, event_type: &str, agent: &Agent) -> Result<(), DbError> {
    let stream = format!("user:{}", agent.owner_id);
    events::emit(tx, &stream, event_type, agent).await?;
    Ok(())
}

/// Parameters as a `jsonb` statement parameter.
fn jsonb(parameters: &Options) -> Result<ParameterValue, Problem> {
    spin_sdk::pg::jsonb(parameters).map_err(Problem::internal)
}

/// The 409 for deleting an agent that takes part in `count` discussions not over.
fn in_use_problem(agent_id: Uuid, count: usize) -> Problem {
    let discussions = if count == 1 {
        "discussion that is"
    } else {
        "discussions that are"
    };
    Problem::new(
        ProblemCode::AgentInUse,
        format!(
            "the agent {agent_id} takes part in {count} {discussions} not over (draft, \
             active or paused); remove it from them, or complete or archive them, first"
        ),
    )
}

pub(crate) fn no_such_agent(agent_id: Uuid) -> Problem {
    Problem::not_found(format!("there is no agent {agent_id}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arena_common::time::Timestamp;

    fn invalid_fields(body: &impl Validate) -> Vec<String> {
        match body.validated() {
            Ok(()) => Vec::new(),
            Err(problem) => problem.errors().iter().map(|e| e.field.clone()).collect(),
        }
    }

    fn agent() -> Agent {
        let at: Timestamp = "2025-01-02T03:04:05Z".parse().unwrap();
        Agent {
            agent_id: Uuid::from_u128(1),
            owner_id: Uuid::from_u128(2),
            name: "Socrates".into(),
            description: Some("asks".into()),
            persona: "You ask questions.".into(),
            model: "llama3.2".into(),
            parameters: Options::default(),
            tags: vec!["philosophy".into()],
            visibility: Visibility::Private,
            version: 3,
            created_at: at,
            updated_at: at,
        }
    }

    fn update(json: serde_json::Value) -> AgentUpdate {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn a_new_agent_needs_a_name_a_persona_and_a_model() {
        let new: NewAgent = serde_json::from_value(serde_json::json!({
            "name": "Socrates", "persona": "You ask.", "model": "llama3.2",
            "tags": ["greek"], "visibility": "shared", "parameters": {"temperature": 0.7}
        }))
        .unwrap();
        assert!(invalid_fields(&new).is_empty());
        assert!(
            serde_json::from_value::<NewAgent>(serde_json::json!({"name": "x", "model": "m"}))
                .is_err()
        );
    }

    #[test]
    fn a_new_agent_reports_every_bad_field() {
        let new: NewAgent = serde_json::from_value(serde_json::json!({
            "name": "", "description": "d".repeat(2001), "persona": " ",
            "model": "llama 3", "tags": ["Greek"]
        }))
        .unwrap();
        assert_eq!(
            invalid_fields(&new),
            ["name", "description", "persona", "model", "tags[0]"]
        );
    }

    #[test]
    fn unknown_fields_visibilities_and_parameters_are_refused() {
        let parse = |json| serde_json::from_value::<NewAgent>(json);
        let base = serde_json::json!({"name": "a", "persona": "p", "model": "m"});
        for (key, value) in [
            ("owner_id", serde_json::json!("x")),
            ("visibility", serde_json::json!("public")),
            ("parameters", serde_json::json!({"temprature": 1})),
            ("tags", serde_json::json!("one")),
        ] {
            let mut body = base.clone();
            body[key] = value;
            assert!(parse(body).is_err(), "{key}");
        }
    }

    #[test]
    fn an_update_needs_a_version_and_tells_a_cleared_description_from_one_left_out() {
        assert!(serde_json::from_value::<AgentUpdate>(serde_json::json!({"name": "x"})).is_err());
        assert_eq!(update(serde_json::json!({"version": 1})).description, None);
        assert_eq!(
            update(serde_json::json!({"version": 1, "description": null})).description,
            Some(None)
        );
        assert_eq!(
            invalid_fields(&update(serde_json::json!({"version": 0, "name": ""}))),
            ["version", "name"]
        );
    }

    #[test]
    fn only_what_differs_is_a_change() {
        let socrates = agent();
        let same = update(serde_json::json!({
            "version": 3, "name": "Socrates", "tags": ["philosophy"], "visibility": "private"
        }));
        assert_eq!(same.apply_to(&socrates), socrates);
        let changed = update(serde_json::json!({
            "version": 3, "description": null, "visibility": "shared"
        }))
        .apply_to(&socrates);
        assert_eq!(changed.description, None);
        assert_eq!(changed.visibility, Visibility::Shared);
        assert_eq!(changed.name, "Socrates");
    }

    #[test]
    fn filters_read_owner_tag_model_visibility_and_an_escaped_prefix() {
        let filters = AgentFilters::from_query(Some(
            "owner_id=00000000-0000-0000-0000-000000000002&tag=greek&model=llama3.2&q=So_c%25&visibility=shared&limit=5",
        ))
        .unwrap();
        assert_eq!(
            filters,
            AgentFilters {
                owner_id: Some(Uuid::from_u128(2)),
                tag: Some("greek".into()),
                model: Some("llama3.2".into()),
                name_pattern: Some("so\\_c\\%%".into()),
                visibility: Some(Visibility::Shared),
            }
        );
        for (query, parameter) in [
            ("owner=1", "owner"),
            ("owner_id=1", "owner_id"),
            ("visibility=public", "visibility"),
        ] {
            let problem = AgentFilters::from_query(Some(query)).unwrap_err();
            assert_eq!(problem.code(), ProblemCode::ValidationFailed, "{query}");
            assert_eq!(problem.errors()[0].field, parameter, "{query}");
        }
    }

    #[test]
    fn an_agent_in_use_is_a_409_counting_the_discussions() {
        let problem = in_use_problem(Uuid::from_u128(1), 2);
        assert_eq!(problem.code(), ProblemCode::AgentInUse);
        assert_eq!(problem.status(), StatusCode::CONFLICT);
        assert!(
            problem.detail().contains("2 discussions"),
            "{}",
            problem.detail()
        );
        assert!(
            in_use_problem(Uuid::from_u128(1), 1)
                .detail()
                .contains("1 discussion ")
        );
    }
}
