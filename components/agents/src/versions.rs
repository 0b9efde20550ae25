//! An agent's version history: every version it has had, as it was written.
//!
//! | Route | Who | Answers |
//! |---|---|---|
//! | `GET /v1/agents/{agent_id}/versions` | whoever may read the agent | `200`: a page of its versions, newest first |
//! | `GET /v1/agents/{agent_id}/versions/{version}` | whoever may read the agent | `200`: that version |
//!
//! A deleted agent has no history to show: its versions stay for the
//! discussions that name them, but are not listed here.

use arena_common::auth::Identity;
use arena_common::db::Db;
use arena_common::ids;
use arena_common::pagination::{Page, PageRequest};
use arena_common::problem::responses::{NotFound, Unauthorized, ValidationFailed};
use arena_common::query::Filters;
use arena_common::{Problem, json};
use http::StatusCode;

use crate::Request;
use crate::agent::{AgentVersion, VERSION_COLUMNS};
use crate::agents::readable;

/// List an agent's versions
///
/// Every version the agent has had, newest first. Whoever may read the agent.
#[utoipa::path(
    get,
    path = "/v1/agents/{agent_id}/versions",
    tag = "agents",
    operation_id = "listAgentVersions",
    params(
        ("agent_id" = Uuid, Path, description = "The agent."),
        ("limit" = Option<u32>, Query, description = "Items per page, 1 to 200 (default 50)."),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page."),
    ),
    responses(
        (status = 200, description = "A page of versions, newest first.", body = inline(Page<AgentVersion>)),
        ValidationFailed, Unauthorized, NotFound,
    ),
)]
pub(crate) async fn list(req: &mut Request, id: &str) -> Result<http::Response<String>, Problem> {
    let caller = Identity::from_request(req)?;
    let agent_id = ids::parse_id("agent_id", id)?;
    let page = PageRequest::<i32>::from_query(req.uri().query())?;
    // No filters, but still strict: a misspelt parameter is a 400.
    Filters::from_query(req.uri().query(), &[])?;
    let db = Db::connect().await?;
    readable(&db, &caller, agent_id).await?;
    let versions: Vec<AgentVersion> = db
        .query(
            &format!(
                "select {VERSION_COLUMNS}
                 from agent_versions
                 where agent_id = $1 and ($2::integer is null or version < $2)
                 order by version desc
                 limit $3"
            ),
            &[
                agent_id.into(),
                page.after.into(),
                page.fetch_limit().into(),
            ],
        )
        .await?;
    json(
        StatusCode::OK,
        &page.finish(versions, |version| version.version)?,
    )
}

/// Retrieve a version of an agent
///
/// The agent as it was at `version`. Whoever may read the agent.
#[utoipa::path(
    get,
    path = "/v1/agents/{agent_id}/versions/{version}",
    tag = "agents",
    operation_id = "retrieveAgentVersion",
    params(
        ("agent_id" = Uuid, Path, description = "The agent."),
        ("version" = i32, Path, description = "The version, from 1."),
    ),
    responses(
        (status = 200, description = "The version.", body = AgentVersion),
        ValidationFailed, Unauthorized, NotFound,
    ),
)]
pub(crate) async fn get(
    req: &mut Request,
    id: &str,
    version: &str,
) -> Result<http::Response<String>, Problem> {
    let caller = Identity::from_request(req)?;
    let agent_id = ids::parse_id("agent_id", id)?;
    let version = parse_version(version)?;
    let db = Db::connect().await?;
    readable(&db, &caller, agent_id).await?;
    let found: Option<AgentVersion> = db
        .query_opt(
            &format!(
                "select {VERSION_COLUMNS} from agent_versions where agent_id = $1 and version = $2"
            ),
            &[agent_id.into(), version.into()],
        )
        .await?;
    let found = found.ok_or_else(|| {
        Problem::not_found(format!("the agent {agent_id} has no version {version}"))
    })?;
    json(StatusCode::OK, &found)
}

/// A version number from a path: a whole number from 1, else a 400 naming it.
fn parse_version(text: &str) -> Result<i32, Problem> {
    text.parse()
        .ok()
        .filter(|version| *version >= 1)
        .ok_or_else(|| {
            let message = format!("must be a whole number from 1, got {text:?}");
            Problem::validation_failed(format!("version {message}"))
                .with_field_error("version", message)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_version_is_a_whole_number_from_one() {
        assert_eq!(parse_version("1").unwrap(), 1);
        assert_eq!(parse_version("42").unwrap(), 42);
        for bad in ["0", "-1", "x", "1.5", "", "99999999999"] {
            let problem = parse_version(bad).unwrap_err();
            assert_eq!(problem.errors()[0].field, "version", "{bad}");
        }
    }
}
