//! The audit trail, for admins: who did what to what, when, from where.
//!
//! | Route | Answers |
//! |---|---|
//! | `GET /v1/audit-events` | `200`: a page of records, newest first, filtered by any of `action`, `outcome`, `actor_user_id`, `target_type`, `target_id`, `since`, `until` |
//!
//! Records are written where the things they record happen (see
//! [`arena_common::audit`]); this module only reads them.
//!
//! It is also home to [`Filters`], the strict reading of a list's query-string
//! filters that every list in this component uses.

use arena_common::audit::Outcome;
use arena_common::auth::{Identity, Role};
use arena_common::db::{Db, DbError, FromRow, Row};
use arena_common::ids::Uuid;
use arena_common::pagination::{Page, PageRequest};
use arena_common::problem::responses::{Forbidden, Unauthorized, ValidationFailed};
use arena_common::query::{Filters, invalid};
use arena_common::time::Timestamp;
use arena_common::{Problem, json};
use http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;

use crate::Request;

/// One record of the audit trail. Never holds a secret: no password, hash, token
/// or key.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AuditEvent {
    /// UUID v7: the records' order, and the list's cursor.
    audit_event_id: Uuid,
    occurred_at: Timestamp,
    /// What happened: `auth.login`, `user.role_changed`, `permission.denied`, ...
    action: String,
    outcome: Outcome,
    /// Who did it; `null` before they proved who they are (a failed login).
    actor_user_id: Option<Uuid>,
    /// The session or API key they used.
    actor_credential_id: Option<Uuid>,
    /// What it was done to: `user`, `session`, `api_key`, ...
    target_type: Option<String>,
    target_id: Option<String>,
    client_addr: Option<String>,
    user_agent: Option<String>,
    /// The `X-Request-Id` of the request that did it.
    request_id: Option<String>,
    /// What else the action records (`{"from": "member", "to": "admin"}` for a role
    /// change); `{}` when nothing.
    #[schema(value_type = Object)]
    details: serde_json::Value,
}

/// The columns [`AuditEvent::from_row`] reads.
const AUDIT_EVENT_COLUMNS: &str = "audit_event_id, occurred_at, action, outcome, actor_user_id, \
     actor_credential_id, target_type, target_id, client_addr, user_agent, request_id, details";

impl FromRow for AuditEvent {
    fn from_row(row: Row) -> Result<Self, DbError> {
        Ok(Self {
            audit_event_id: row.get("audit_event_id")?,
            occurred_at: row.get("occurred_at")?,
            action: row.get("action")?,
            outcome: row.get("outcome")?,
            actor_user_id: row.get("actor_user_id")?,
            actor_credential_id: row.get("actor_credential_id")?,
            target_type: row.get("target_type")?,
            target_id: row.get("target_id")?,
            client_addr: row.get("client_addr")?,
            user_agent: row.get("user_agent")?,
            request_id: row.get("request_id")?,
            details: row.get("details")?,
        })
    }
}

/// What `GET /v1/audit-events` may be narrowed to; `None` filters nothing.
#[derive(Debug, Default, PartialEq)]
struct AuditFilters {
    action: Option<String>,
    outcome: Option<Outcome>,
    actor_user_id: Option<Uuid>,
    target_type: Option<String>,
    target_id: Option<String>,
    /// From this instant on, inclusive.
    since: Option<Timestamp>,
    /// Before this instant, exclusive: `since` = `until` of the previous window
    /// counts each record once.
    until: Option<Timestamp>,
}

impl AuditFilters {
    const PARAMETERS: &[&str] = &[
        "action",
        "outcome",
        "actor_user_id",
        "target_type",
        "target_id",
        "since",
        "until",
    ];

    fn from_query(query: Option<&str>) -> Result<Self, Problem> {
        let filters = Filters::from_query(query, Self::PARAMETERS)?;
        let parsed = Self {
            action: filters.text("action").map(str::to_owned),
            outcome: filters.parse("outcome", "success, failure or denied")?,
            actor_user_id: filters.parse("actor_user_id", "a user id (a UUID)")?,
            target_type: filters.text("target_type").map(str::to_owned),
            target_id: filters.text("target_id").map(str::to_owned),
            since: filters.parse("since", TIMESTAMP)?,
            until: filters.parse("until", TIMESTAMP)?,
        };
        if let (Some(since), Some(until)) = (parsed.since, parsed.until)
            && since >= until
        {
            return Err(invalid(
                "until",
                format!("must be later than since ({since})"),
            ));
        }
        Ok(parsed)
    }
}

/// What a time filter must be, as its error says.
const TIMESTAMP: &str =
    "an RFC 3339 timestamp such as 2025-01-02T03:04:05Z (with an offset, encode its '+' as %2B)";

/// List the audit trail
///
/// Security-relevant events, newest first: logins and failed logins, role
/// changes, revoked sessions and keys, refused requests. Admins only.
#[utoipa::path(
    get,
    path = "/v1/audit-events",
    tag = "audit",
    operation_id = "listAuditEvents",
    params(
        ("action" = Option<String>, Query, description = "Only this action, e.g. `user.role_changed`."),
        ("outcome" = Option<Outcome>, Query, description = "Only this outcome."),
        ("actor_user_id" = Option<Uuid>, Query, description = "Only what this user did."),
        ("target_type" = Option<String>, Query, description = "Only what was done to this kind of thing: `user`, `session`, `api_key`, ..."),
        ("target_id" = Option<String>, Query, description = "Only what was done to the thing with this id."),
        ("since" = Option<Timestamp>, Query, description = "Only records from this instant on (inclusive); RFC 3339, `+` encoded as `%2B`."),
        ("until" = Option<Timestamp>, Query, description = "Only records before this instant (exclusive); RFC 3339, `+` encoded as `%2B`."),
        ("limit" = Option<u32>, Query, description = "Items per page, 1 to 200 (default 50)."),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page."),
    ),
    responses(
        (status = 200, description = "A page of audit records, newest first.", body = inline(Page<AuditEvent>)),
        ValidationFailed, Unauthorized, Forbidden,
    ),
)]
pub(crate) async fn list(req: &mut Request) -> Result<http::Response<String>, Problem> {
    let caller = Identity::from_request(req)?;
    caller.require(Role::Admin)?;
    let page = PageRequest::<Uuid>::from_query(req.uri().query())?;
    let filters = AuditFilters::from_query(req.uri().query())?;
    let db = Db::connect().await?;
    let events: Vec<AuditEvent> = db
        .query(
            &format!(
                "select {AUDIT_EVENT_COLUMNS}
                 from audit_events
                 where ($1::uuid is null or audit_event_id < $1)
                   and ($2::text is null or action = $2)
                   and ($3::text is null or outcome = $3)
                   and ($4::uuid is null or actor_user_id = $4)
                   and ($5::text is null or target_type = $5)
                   and ($6::text is null or target_id = $6)
                   and ($7::timestamp is null or occurred_at >= $7::timestamp at time zone 'UTC')
                   and ($8::timestamp is null or occurred_at < $8::timestamp at time zone 'UTC')
                 order by audit_event_id desc
                 limit $9"
            ),
            &[
                page.after.into(),
                filters.action.into(),
                filters.outcome.map(|o| o.as_str().to_owned()).into(),
                filters.actor_user_id.into(),
                filters.target_type.into(),
                filters.target_id.into(),
                filters.since.into(),
                filters.until.into(),
                page.fetch_limit().into(),
            ],
        )
        .await?;
    json(
        StatusCode::OK,
        &page.finish(events, |event| event.audit_event_id)?,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use arena_common::ProblemCode;

    fn audit(query: &str) -> Result<AuditFilters, Problem> {
        AuditFilters::from_query(Some(query))
    }

    /// The one field error of a 400, as `(field, message)`.
    fn field_error(problem: Problem) -> (String, String) {
        assert_eq!(problem.code(), ProblemCode::ValidationFailed);
        let [error] = problem.errors() else {
            panic!("expected one field error: {problem:?}");
        };
        (error.field.clone(), error.message.clone())
    }

    #[test]
    fn no_query_filters_nothing() {
        assert_eq!(
            AuditFilters::from_query(None).unwrap(),
            AuditFilters::default()
        );
        assert_eq!(audit("").unwrap(), AuditFilters::default());
    }

    #[test]
    fn every_filter_is_read_and_limit_and_cursor_are_left_to_the_page() {
        let filters = audit(
            "action=user.role_changed&outcome=denied&actor_user_id=0191f0c4-8d5e-7c1a-9b7e-3f2a1c4d5e6f\
             &target_type=user&target_id=abc&since=2025-01-01T03:04:05Z\
             &until=2025-01-02T04:04:05%2B01:00&limit=10&cursor=",
        )
        .unwrap();
        assert_eq!(
            filters,
            AuditFilters {
                action: Some("user.role_changed".into()),
                outcome: Some(Outcome::Denied),
                actor_user_id: Some("0191f0c4-8d5e-7c1a-9b7e-3f2a1c4d5e6f".parse().unwrap()),
                target_type: Some("user".into()),
                target_id: Some("abc".into()),
                since: Some("2025-01-01T03:04:05Z".parse().unwrap()),
                until: Some("2025-01-02T03:04:05Z".parse().unwrap()),
            }
        );
    }

    #[test]
    fn a_misspelt_parameter_is_400_naming_it_and_the_ones_there_are() {
        let (field, message) =
            field_error(audit("actor=0191f0c4-8d5e-7c1a-9b7e-3f2a1c4d5e6f").unwrap_err());
        assert_eq!(field, "actor");
        assert_eq!(
            message,
            "is not a parameter of this list; it takes action, outcome, actor_user_id, \
             target_type, target_id, since, until, limit, cursor"
        );
    }

    #[test]
    fn each_bad_value_is_400_naming_the_parameter_and_quoting_the_value() {
        for (query, parameter, quoted) in [
            ("outcome=ok", "outcome", "\"ok\""),
            ("actor_user_id=42", "actor_user_id", "\"42\""),
            ("since=yesterday", "since", "\"yesterday\""),
            // An unencoded `+` is a space, so the offset is lost: refused, not misread.
            (
                "until=2025-01-02T04:04:05+01:00",
                "until",
                "\"2025-01-02T04:04:05 01:00\"",
            ),
        ] {
            let (field, message) = field_error(audit(query).unwrap_err());
            assert_eq!(field, parameter, "{query}");
            assert!(message.starts_with("must be "), "{message}");
            assert!(message.ends_with(&format!("got {quoted}")), "{message}");
        }
    }

    #[test]
    fn until_must_come_after_since() {
        let (field, message) = field_error(
            audit("since=2025-01-02T00:00:00Z&until=2025-01-01T00:00:00Z").unwrap_err(),
        );
        assert_eq!(field, "until");
        assert!(message.contains("later than since"), "{message}");
        assert!(audit("since=2025-01-01T00:00:00Z&until=2025-01-02T00:00:00Z").is_ok());
    }

    #[test]
    fn a_filter_given_twice_is_400() {
        let (field, message) = field_error(audit("action=a&action=b").unwrap_err());
        assert_eq!(
            (field.as_str(), message.as_str()),
            ("action", "must be given at most once")
        );
        // An empty first value does not hide the second.
        assert!(audit("action=&action=b").is_err());
    }

    #[test]
    fn an_empty_value_filters_nothing() {
        assert_eq!(
            audit("action=&outcome=&since=").unwrap(),
            AuditFilters::default()
        );
    }
}
