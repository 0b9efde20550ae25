//! `GET /v1/ai/usage`: tokens, requests and time spent on models, summed from
//! `model_calls` (every call any component makes; see `arena_common::usage`).
//!
//! | Parameter | Meaning | Default |
//! |---|---|---|
//! | `from`, `to` | calls started in `[from, to)`, RFC 3339 | the 30 days up to now |
//! | `group_by` | `model`, `user`, `agent`, `discussion` or `day` (UTC) | `model` |
//! | `user_id` | only this user's calls (admins) | everyone's for admins; the caller's own for others |
//!
//! Groups come largest first (by total tokens), except days, which come in
//! order. A call without an agent or discussion falls in the group with key
//! `null`. `failed` counts calls that failed or were cancelled; calls still
//! running count as requests, with the tokens they have reported so far (none).

use std::str::FromStr;

use arena_common::auth::{Identity, Role};
use arena_common::db::{Db, DbError, FromRow, Row};
use arena_common::ids::Uuid;
use arena_common::problem::responses::{Forbidden, Unauthorized, ValidationFailed};
use arena_common::query::{self, Filters};
use arena_common::time::Timestamp;
use arena_common::{Problem, json};
use chrono::{DateTime, TimeDelta, Utc};
use http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;

use crate::{Request, Response, plain};

/// The range reported when `from` is not given: this many days before `to`.
const DEFAULT_DAYS: i64 = 30;

/// What the usage is summed per.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum GroupBy {
    #[default]
    Model,
    User,
    Agent,
    Discussion,
    /// The UTC date the call started, `2025-01-02`.
    Day,
}

impl GroupBy {
    const ALL: [GroupBy; 5] = [
        GroupBy::Model,
        GroupBy::User,
        GroupBy::Agent,
        GroupBy::Discussion,
        GroupBy::Day,
    ];

    fn name(self) -> &'static str {
        match self {
            GroupBy::Model => "model",
            GroupBy::User => "user",
            GroupBy::Agent => "agent",
            GroupBy::Discussion => "discussion",
            GroupBy::Day => "day",
        }
    }

    /// The group's key as SQL text: a fixed expression per grouping, never input.
    fn key(self) -> &'static str {
        match self {
            GroupBy::Model => "model",
            GroupBy::User => "user_id::text",
            GroupBy::Agent => "agent_id::text",
            GroupBy::Discussion => "discussion_id::text",
            GroupBy::Day => "to_char(started_at at time zone 'UTC', 'YYYY-MM-DD')",
        }
    }

    /// The groups' order: days in order, the rest largest first (ties by key, so
    /// the order is stable).
    fn order(self) -> &'static str {
        match self {
            GroupBy::Day => "1",
            _ => "sum(prompt_tokens) + sum(completion_tokens) desc, 1",
        }
    }
}

impl FromStr for GroupBy {
    type Err = ();

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        GroupBy::ALL
            .into_iter()
            .find(|group| group.name() == text)
            .ok_or(())
    }
}

/// Sums over some calls.
#[derive(Debug, Default, Clone, PartialEq, Serialize, ToSchema)]
pub(crate) struct Totals {
    prompt_tokens: i64,
    completion_tokens: i64,
    /// Prompt and completion tokens together.
    total_tokens: i64,
    /// Calls made.
    requests: i64,
    /// Of `requests`, those that failed or were cancelled.
    failed: i64,
    /// Time spent in the calls, as Arena measured it, in milliseconds.
    duration_ms: f64,
}

impl Totals {
    fn add(mut self, other: &Totals) -> Self {
        self.prompt_tokens += other.prompt_tokens;
        self.completion_tokens += other.completion_tokens;
        self.total_tokens += other.total_tokens;
        self.requests += other.requests;
        self.failed += other.failed;
        self.duration_ms += other.duration_ms;
        self
    }
}

/// The sums for one group.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub(crate) struct Group {
    /// The model's name, the user's, agent's or discussion's id, or the date;
    /// `null` for calls made for no agent or no discussion.
    key: Option<String>,
    #[serde(flatten)]
    totals: Totals,
}

impl FromRow for Group {
    fn from_row(row: Row) -> Result<Self, DbError> {
        let prompt_tokens: i64 = row.get("prompt_tokens")?;
        let completion_tokens: i64 = row.get("completion_tokens")?;
        Ok(Self {
            key: row.get("key")?,
            totals: Totals {
                prompt_tokens,
                completion_tokens,
                total_tokens: prompt_tokens + completion_tokens,
                requests: row.get("requests")?,
                failed: row.get("failed")?,
                duration_ms: row.get("duration_ms")?,
            },
        })
    }
}

/// The report.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct UsageReport {
    from: Timestamp,
    to: Timestamp,
    group_by: GroupBy,
    items: Vec<Group>,
    /// The sums over every group.
    totals: Totals,
}

/// The report's parameters, checked.
#[derive(Debug, PartialEq)]
struct UsageQuery {
    from: Timestamp,
    to: Timestamp,
    group_by: GroupBy,
    /// Only this user's calls; `None` is everyone's.
    user_id: Option<Uuid>,
}

impl UsageQuery {
    /// Reads the query string for `caller` at `now`: 400 for an unknown or
    /// malformed parameter or an empty range; 403 for someone else's `user_id`
    /// asked by anyone but an admin.
    fn read(query: Option<&str>, caller: &Identity, now: Timestamp) -> Result<Self, Problem> {
        let filters = Filters::from_query(query, &["from", "to", "group_by", "user_id"])?;
        let expected = "an RFC 3339 timestamp, e.g. 2025-01-02T00:00:00Z";
        let to = filters.parse("to", expected)?.unwrap_or(now);
        let from = match filters.parse("from", expected)? {
            Some(from) => from,
            None => Timestamp::from(DateTime::<Utc>::from(to) - TimeDelta::days(DEFAULT_DAYS)),
        };
        if from >= to {
            return Err(query::invalid(
                "from",
                format!("must be before to ({to}), got {from}"),
            ));
        }
        let group_by = filters
            .parse("group_by", "model, user, agent, discussion or day")?
            .unwrap_or_default();
        let asked: Option<Uuid> = filters.parse("user_id", "a UUID")?;
        let user_id = match (caller.role, asked) {
            (Role::Admin, asked) => asked,
            (_, Some(other)) if other != caller.user_id => {
                return Err(Problem::forbidden(
                    "only admins may see another user's usage; leave user_id out for your own",
                ));
            }
            _ => Some(caller.user_id),
        };
        Ok(Self {
            from,
            to,
            group_by,
            user_id,
        })
    }
}

/// Retrieve usage
///
/// Tokens, requests, failures and time spent on language models over a time range,
/// summed per model, user, agent, discussion or day. Admins see everyone's
/// (`user_id` narrows it to one user); anyone else sees their own.
#[utoipa::path(
    get,
    path = "/v1/ai/usage",
    tag = "ai",
    operation_id = "retrieveUsage",
    params(
        ("from" = Option<Timestamp>, Query, description = "Calls started at or after this (default: 30 days before `to`)."),
        ("to" = Option<Timestamp>, Query, description = "Calls started before this (default: now)."),
        ("group_by" = Option<GroupBy>, Query, description = "What to sum per (default `model`)."),
        ("user_id" = Option<Uuid>, Query, description = "Only this user's calls; anyone but an admin may name only themselves."),
    ),
    responses(
        (status = 200, description = "The usage, per group and in total.", body = UsageReport),
        ValidationFailed, Unauthorized, Forbidden,
    ),
)]
pub(crate) async fn get(req: &mut Request) -> Result<Response, Problem> {
    let caller = Identity::from_request(req)?;
    let query = UsageQuery::read(req.uri().query(), &caller, Timestamp::now())?;
    let db = Db::connect().await?;
    let items: Vec<Group> = db
        .query(
            &format!(
                "select {key} as key,
                     coalesce(sum(prompt_tokens), 0)::bigint as prompt_tokens,
                     coalesce(sum(completion_tokens), 0)::bigint as completion_tokens,
                     count(*) as requests,
                     count(*) filter (where status in ('failed', 'cancelled')) as failed,
                     coalesce(sum(duration_ms), 0)::double precision as duration_ms
                 from model_calls
                 where started_at >= $1::timestamp at time zone 'UTC'
                   and started_at < $2::timestamp at time zone 'UTC'
                   and ($3::uuid is null or user_id = $3)
                 group by 1
                 order by {order}",
                key = query.group_by.key(),
                order = query.group_by.order(),
            ),
            &[query.from.into(), query.to.into(), query.user_id.into()],
        )
        .await?;
    let totals = items
        .iter()
        .fold(Totals::default(), |sum, group| sum.add(&group.totals));
    let report = UsageReport {
        from: query.from,
        to: query.to,
        group_by: query.group_by,
        items,
        totals,
    };
    plain(json(StatusCode::OK, &report))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arena_common::auth::Credential;

    fn caller(role: Role) -> Identity {
        Identity {
            user_id: Uuid::from_u128(1),
            role,
            credential: Credential::Session(Uuid::from_u128(9)),
        }
    }

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn read(query: &str, role: Role) -> Result<UsageQuery, Problem> {
        UsageQuery::read(Some(query), &caller(role), at("2025-03-31T12:00:00Z"))
    }

    #[test]
    fn by_default_it_is_the_callers_last_30_days_per_model() {
        assert_eq!(
            read("", Role::Member).unwrap(),
            UsageQuery {
                from: at("2025-03-01T12:00:00Z"),
                to: at("2025-03-31T12:00:00Z"),
                group_by: GroupBy::Model,
                user_id: Some(Uuid::from_u128(1)),
            }
        );
        assert_eq!(read("", Role::Admin).unwrap().user_id, None);
    }

    #[test]
    fn every_grouping_parses_by_name_and_others_are_refused() {
        for group in GroupBy::ALL {
            let query = read(&format!("group_by={}", group.name()), Role::Viewer).unwrap();
            assert_eq!(query.group_by, group);
        }
        let problem = read("group_by=week", Role::Viewer).unwrap_err();
        assert_eq!(problem.status(), StatusCode::BAD_REQUEST);
        assert_eq!(problem.errors()[0].field, "group_by");
    }

    #[test]
    fn a_range_is_read_in_utc_and_must_not_be_empty() {
        let query = read(
            "from=2025-01-01T01:00:00%2B01:00&to=2025-02-01T00:00:00Z",
            Role::Member,
        )
        .unwrap();
        assert_eq!(query.from, at("2025-01-01T00:00:00Z"));
        let to_only = read("to=2025-02-01T00:00:00Z", Role::Member).unwrap();
        assert_eq!(to_only.from, at("2025-01-02T00:00:00Z"));
        for bad in [
            "from=2025-02-01T00:00:00Z&to=2025-02-01T00:00:00Z",
            "from=yesterday",
        ] {
            let problem = read(bad, Role::Member).unwrap_err();
            assert_eq!(problem.status(), StatusCode::BAD_REQUEST, "{bad}");
            assert_eq!(problem.errors()[0].field, "from", "{bad}");
        }
    }

    #[test]
    fn only_admins_may_name_another_user() {
        let other = Uuid::from_u128(2);
        let own = read(&format!("user_id={}", Uuid::from_u128(1)), Role::Viewer).unwrap();
        assert_eq!(own.user_id, Some(Uuid::from_u128(1)));
        let problem = read(&format!("user_id={other}"), Role::Member).unwrap_err();
        assert_eq!(problem.status(), StatusCode::FORBIDDEN);
        assert_eq!(
            read(&format!("user_id={other}"), Role::Admin)
                .unwrap()
                .user_id,
            Some(other)
        );
        assert_eq!(
            read("user_id=42", Role::Admin).unwrap_err().errors()[0].field,
            "user_id"
        );
    }

    #[test]
    fn an_unknown_parameter_is_refused_by_name() {
        let problem = read("groupby=day", Role::Admin).unwrap_err();
        assert_eq!(problem.errors()[0].field, "groupby");
    }

    #[test]
    fn a_group_is_flat_and_the_totals_sum_the_groups() {
        let group = |key: Option<&str>, prompt, completion| Group {
            key: key.map(str::to_owned),
            totals: Totals {
                prompt_tokens: prompt,
                completion_tokens: completion,
                total_tokens: prompt + completion,
                requests: 2,
                failed: 1,
                duration_ms: 1.5,
            },
        };
        let groups = [group(Some("llama3.2:1b"), 10, 5), group(None, 1, 2)];
        let json = serde_json::to_value(&groups[1]).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "key": null, "prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3,
                "requests": 2, "failed": 1, "duration_ms": 1.5
            })
        );
        let totals = groups
            .iter()
            .fold(Totals::default(), |sum, g| sum.add(&g.totals));
        assert_eq!(
            (totals.total_tokens, totals.requests, totals.duration_ms),
            (18, 4, 3.0)
        );
    }
}
