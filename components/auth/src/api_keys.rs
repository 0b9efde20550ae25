//! API keys: long-lived credentials for scripts and services, sent as
//! `Authorization: Bearer arena_ak_...`.
//!
//! | Route | Answers |
//! |---|---|
//! | `GET /v1/auth/api-keys` | `200`: a page of the caller's keys, newest first, revoked ones included (admins: `?user_id=` for anyone's) |
//! | `POST /v1/auth/api-keys` | `201`: the new key, with its clear text this once |
//! | `DELETE /v1/auth/api-keys/{api_key_id}` | `204`: the key is revoked (someone else's: `404`, unless admin) |
//!
//! A key acts with the role it was made with, never more than its maker's role
//! at the time (the middleware also caps it by its owner's current role). Arena
//! keeps only the key's SHA-256 and its first characters, so a lost key cannot
//! be shown again: revoke it and make another.

use arena_common::audit::{AuditEvent, Outcome};
use arena_common::auth::{Identity, Role};
use arena_common::body::read_json;
use arena_common::credentials::{API_KEY_PREFIX, Secret};
use arena_common::db::{Db, DbError, FromRow, Row, transaction};
use arena_common::ids::{self, Uuid};
use arena_common::pagination::{Page, PageRequest};
use arena_common::problem::responses::{
    Forbidden, NotFound, PayloadTooLarge, Unauthorized, UnsupportedMediaType, ValidationFailed,
};
use arena_common::time::Timestamp;
use arena_common::validate::{Validate, Validator};
use arena_common::{Problem, created, json, no_content};
use http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::Request;
use crate::user::check_display_name;
use arena_common::query::Filters;

/// How much of a key is kept and shown: its `arena_ak_` prefix and four random
/// characters, enough for a person to tell their keys apart and far too few to
/// guess the rest.
const SHOWN_PREFIX_LEN: usize = API_KEY_PREFIX.len() + 4;

/// An API key, as its owner sees it. Never carries the key itself.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ApiKey {
    api_key_id: Uuid,
    /// The owner: whose account the key acts for.
    user_id: Uuid,
    name: String,
    /// The most the key may do.
    role: Role,
    /// The key's first characters (`arena_ak_` and four more), to tell keys apart.
    key_prefix: String,
    created_at: Timestamp,
    /// When the key was last used; `null` if never.
    last_used_at: Option<Timestamp>,
    /// When the key stops working; `null`: never.
    expires_at: Option<Timestamp>,
    /// Set once the key is revoked: it no longer works.
    revoked_at: Option<Timestamp>,
}

/// The columns [`ApiKey::from_row`] reads.
const API_KEY_COLUMNS: &str = "api_key_id, user_id, name, role, key_prefix, created_at, \
     last_used_at, expires_at, revoked_at";

impl FromRow for ApiKey {
    fn from_row(row: Row) -> Result<Self, DbError> {
        Ok(Self {
            api_key_id: row.get("api_key_id")?,
            user_id: row.get("user_id")?,
            name: row.get("name")?,
            role: row.get("role")?,
            key_prefix: row.get("key_prefix")?,
            created_at: row.get("created_at")?,
            last_used_at: row.get("last_used_at")?,
            expires_at: row.get("expires_at")?,
            revoked_at: row.get("revoked_at")?,
        })
    }
}

/// A key just made: the key's details and, this once, the key.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CreatedApiKey {
    #[serde(flatten)]
    api_key: ApiKey,
    /// The key: send it as `Authorization: Bearer <key>`. Shown only now; Arena
    /// keeps only its digest.
    key: String,
}

/// List API keys
///
/// The caller's keys, newest first, revoked and expired ones included
/// (`revoked_at`, `expires_at` tell). An admin may list anyone's with `user_id`.
#[utoipa::path(
    get,
    path = "/v1/auth/api-keys",
    tag = "auth",
    operation_id = "listApiKeys",
    params(
        ("user_id" = Option<Uuid>, Query, description = "Whose keys (admins only); the caller's by default."),
        ("limit" = Option<u32>, Query, description = "Items per page, 1 to 200 (default 50)."),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page."),
    ),
    responses(
        (status = 200, description = "A page of API keys, newest first.", body = inline(Page<ApiKey>)),
        ValidationFailed, Unauthorized, Forbidden,
    ),
)]
pub(crate) async fn list(req: &mut Request) -> Result<http::Response<String>, Problem> {
    let caller = Identity::from_request(req)?;
    let page = PageRequest::<Uuid>::from_query(req.uri().query())?;
    let filters = Filters::from_query(req.uri().query(), &["user_id"])?;
    let owner = filters
        .parse("user_id", "a user id (a UUID)")?
        .unwrap_or(caller.user_id);
    if !caller.can_read(owner, false) {
        return Err(Problem::forbidden(
            "only admins may list another user's API keys",
        ));
    }
    let db = Db::connect().await?;
    // Newest first is `api_key_id` descending: ids are UUID v7, ordered by creation.
    let keys: Vec<ApiKey> = db
        .query(
            &format!(
                "select {API_KEY_COLUMNS}
                 from api_keys
                 where user_id = $1 and ($2::uuid is null or api_key_id < $2)
                 order by api_key_id desc
                 limit $3"
            ),
            &[owner.into(), page.after.into(), page.fetch_limit().into()],
        )
        .await?;
    json(StatusCode::OK, &page.finish(keys, |key| key.api_key_id)?)
}

/// A key to make for the caller.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewApiKey {
    /// What the key is for, to tell it apart: 1 to 100 characters.
    name: String,
    /// The most the key may do; at most the caller's role, which is the default.
    role: Option<Role>,
    /// Days until the key stops working, 1 to 3650; without it, it works until revoked.
    #[schema(minimum = 1, maximum = 3650)]
    expires_in_days: Option<i32>,
}

impl Validate for NewApiKey {
    fn validate(&self, v: &mut Validator) {
        // A key's name follows a display name's rule.
        check_display_name(v, "name", &self.name);
        if let Some(days) = self.expires_in_days {
            v.range("expires_in_days", days, 1..=3650);
        }
    }
}

/// The role a new key gets: the one `requested`, by default the caller's own. One
/// above the caller's (an API key's caller: above that key's) is a 403: a key
/// never does more than the credential that made it.
fn key_role(requested: Option<Role>, caller: &Identity) -> Result<Role, Problem> {
    let role = requested.unwrap_or(caller.role);
    if role > caller.role {
        return Err(Problem::forbidden(format!(
            "an API key may not have the {role} role: this request has only {}",
            caller.role
        )));
    }
    Ok(role)
}

/// Create an API key
///
/// A key for the caller's own account. The response carries the key itself, which
/// is never shown again.
#[utoipa::path(
    post,
    path = "/v1/auth/api-keys",
    tag = "auth",
    operation_id = "createApiKey",
    request_body = NewApiKey,
    responses(
        (
            status = 201,
            description = "The key, with its clear text this once.",
            body = CreatedApiKey,
            headers(("Location" = String, description = "The key's path: `/v1/auth/api-keys/{api_key_id}`.")),
        ),
        ValidationFailed, Unauthorized, Forbidden, PayloadTooLarge, UnsupportedMediaType,
    ),
)]
pub(crate) async fn create(req: &mut Request) -> Result<http::Response<String>, Problem> {
    let caller = Identity::from_request(req)?;
    let new: NewApiKey = read_json(req).await?;
    let role = key_role(new.role, &caller)?;
    let secret = Secret::generate(API_KEY_PREFIX)?;
    let db = Db::connect().await?;
    let api_key: ApiKey = transaction(&db, async |tx| {
        let api_key: ApiKey = tx
            .query_one(
                &format!(
                    "insert into api_keys (api_key_id, user_id, name, role, key_hash, key_prefix, expires_at)
                     values ($1, $2, $3, $4, $5, $6, now() + make_interval(days => $7))
                     returning {API_KEY_COLUMNS}"
                ),
                &[
                    ids::new_id().into(),
                    caller.user_id.into(),
                    new.name.clone().into(),
                    role.into(),
                    secret.digest.clone().into(),
                    secret.text[..SHOWN_PREFIX_LEN].to_owned().into(),
                    new.expires_in_days.into(),
                ],
            )
            .await?;
        AuditEvent::new("api_key.created", Outcome::Success)
            .by(&caller)
            .target("api_key", api_key.api_key_id)
            .detail("name", &api_key.name)
            .detail("role", api_key.role)
            .record(tx, req)
            .await?;
        Ok(api_key)
    })
    .await?;
    let location = format!("/v1/auth/api-keys/{}", api_key.api_key_id);
    created(
        &location,
        &CreatedApiKey {
            api_key,
            key: secret.text,
        },
    )
}

/// Revoke an API key
///
/// The key stops working at once. The caller's own keys; an admin's, anyone's.
/// Revoking a revoked key changes nothing and answers the same.
#[utoipa::path(
    delete,
    path = "/v1/auth/api-keys/{api_key_id}",
    tag = "auth",
    operation_id = "revokeApiKey",
    params(("api_key_id" = Uuid, Path, description = "The key to revoke.")),
    responses(
        (status = 204, description = "The key is revoked (or already was)."),
        ValidationFailed, Unauthorized, NotFound,
    ),
)]
pub(crate) async fn revoke(req: &mut Request, id: &str) -> Result<http::Response<String>, Problem> {
    let caller = Identity::from_request(req)?;
    let api_key_id = ids::parse_id("api_key_id", id)?;
    let db = Db::connect().await?;
    transaction(&db, async |tx| {
        let key: Option<Row> = tx
            .query_opt(
                "select user_id, name, revoked_at from api_keys where api_key_id = $1 for update",
                &[api_key_id.into()],
            )
            .await?;
        let Some(key) = key else {
            return Err(no_such_key());
        };
        let owner: Uuid = key.get("user_id")?;
        // Whoever may see a key may revoke it, a viewer too: revoking only takes
        // power away. Anyone else learns no more than a missing key would tell.
        if !caller.can_read(owner, false) {
            return Err(no_such_key());
        }
        if key.get::<Option<Timestamp>>("revoked_at")?.is_some() {
            return Ok(());
        }
        tx.execute(
            "update api_keys set revoked_at = now() where api_key_id = $1",
            &[api_key_id.into()],
        )
        .await?;
        AuditEvent::new("api_key.revoked", Outcome::Success)
            .by(&caller)
            .target("api_key", api_key_id)
            .detail("name", key.get::<String>("name")?)
            .detail("user_id", owner)
            .record(tx, req)
            .await?;
        Ok(())
    })
    .await?;
    no_content()
}

fn no_such_key() -> Problem {
    Problem::not_found("there is no such API key")
}

#[cfg(test)]
mod tests {
    use super::*;
    use arena_common::ProblemCode;
    use arena_common::auth::Credential;

    fn caller(role: Role) -> Identity {
        Identity {
            user_id: Uuid::from_u128(1),
            role,
            credential: Credential::ApiKey(Uuid::from_u128(9)),
        }
    }

    fn new_key(json: serde_json::Value) -> Result<NewApiKey, Problem> {
        let key: NewApiKey =
            serde_json::from_value(json).map_err(|e| Problem::validation_failed(e.to_string()))?;
        key.validated()?;
        Ok(key)
    }

    fn invalid_field(json: serde_json::Value) -> String {
        new_key(json).unwrap_err().errors()[0].field.clone()
    }

    #[test]
    fn a_key_defaults_to_the_callers_role_and_may_ask_for_less() {
        assert_eq!(key_role(None, &caller(Role::Member)).unwrap(), Role::Member);
        assert_eq!(
            key_role(Some(Role::Viewer), &caller(Role::Admin)).unwrap(),
            Role::Viewer
        );
        assert_eq!(
            key_role(Some(Role::Admin), &caller(Role::Admin)).unwrap(),
            Role::Admin
        );
    }

    #[test]
    fn a_key_above_the_callers_role_is_forbidden() {
        let problem = key_role(Some(Role::Admin), &caller(Role::Member)).unwrap_err();
        assert_eq!(problem.code(), ProblemCode::Forbidden);
        assert_eq!(
            problem.detail(),
            "an API key may not have the admin role: this request has only member"
        );
    }

    #[test]
    fn a_new_key_needs_a_name_and_a_sensible_lifetime() {
        assert!(new_key(serde_json::json!({"name": "ci"})).is_ok());
        assert!(
            new_key(serde_json::json!({"name": "ci", "role": "viewer", "expires_in_days": 3650}))
                .is_ok()
        );
        assert_eq!(invalid_field(serde_json::json!({"name": ""})), "name");
        assert_eq!(
            invalid_field(serde_json::json!({"name": "x".repeat(101)})),
            "name"
        );
        assert_eq!(
            invalid_field(serde_json::json!({"name": "ci", "expires_in_days": 0})),
            "expires_in_days"
        );
        assert_eq!(
            invalid_field(serde_json::json!({"name": "ci", "expires_in_days": 3651})),
            "expires_in_days"
        );
        assert!(new_key(serde_json::json!({"name": "ci", "key": "arena_ak_mine"})).is_err());
    }

    #[test]
    fn the_shown_prefix_is_the_marker_and_four_random_characters() {
        let secret = Secret::generate(API_KEY_PREFIX).unwrap();
        let shown = &secret.text[..SHOWN_PREFIX_LEN];
        assert_eq!(shown.len(), 13);
        assert!(shown.starts_with("arena_ak_"), "{shown}");
    }

    #[test]
    fn a_created_key_is_the_key_and_its_details_side_by_side() {
        let at: Timestamp = "2025-01-02T03:04:05Z".parse().unwrap();
        let created = CreatedApiKey {
            api_key: ApiKey {
                api_key_id: Uuid::from_u128(2),
                user_id: Uuid::from_u128(1),
                name: "ci".into(),
                role: Role::Viewer,
                key_prefix: "arena_ak_abcd".into(),
                created_at: at,
                last_used_at: None,
                expires_at: None,
                revoked_at: None,
            },
            key: "arena_ak_abcdefg".into(),
        };
        let json = serde_json::to_value(&created).unwrap();
        assert_eq!(json["key"], "arena_ak_abcdefg");
        assert_eq!(json["key_prefix"], "arena_ak_abcd");
        assert_eq!(json["role"], "viewer");
        assert_eq!(json["revoked_at"], serde_json::Value::Null);
    }
}
