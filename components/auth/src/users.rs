//! Accounts and their roles, managed by admins.
//!
//! | Route | Who | Answers |
//! |---|---|---|
//! | `GET /v1/users` | admins | `200`: a page of users, newest first; filters `role`, `disabled`, `q` (username prefix) |
//! | `POST /v1/users` | admins | `201`: the new user, at `Location` |
//! | `GET /v1/users/{user_id}` | admins, and the user themselves | `200`: the user (anyone else: `404`) |
//! | `PATCH /v1/users/{user_id}` | admins | `200`: the user, changed |
//! | `DELETE /v1/users/{user_id}` | admins | `204`: gone, with their sessions and API keys |
//!
//! Two rules hold throughout. A change names the `version` of the user it was
//! based on, so two admins never overwrite each other unknowingly (a stale one is
//! a `409` naming the current version). And Arena never runs out of admins:
//! demoting, disabling or deleting the last enabled one is a `409`, decided under
//! locks so that two admins removing each other cannot both succeed (see
//! [`lock_enabled_admins`]).

use arena_common::audit::{AuditEvent, Outcome};
use arena_common::auth::{Identity, Role};
use arena_common::body::{present, read_json};
use arena_common::db::{Db, DbError, ResultExt, Row, Tx, transaction};
use arena_common::ids::{self, Uuid};
use arena_common::pagination::{Page, PageRequest};
use arena_common::problem::responses::{
    Conflict, Forbidden, NotFound, PayloadTooLarge, Unauthorized, UnsupportedMediaType,
    ValidationFailed,
};
use arena_common::validate::{Validate, Validator};
use arena_common::{Problem, created, json, no_content};
use http::StatusCode;
use serde::Deserialize;
use utoipa::ToSchema;

use crate::user::{USER_COLUMNS, User, check_account, check_display_name};
use crate::{Request, password, sessions};
use arena_common::query::Filters;

/// What `GET /v1/users` may be narrowed to; `None` filters nothing.
#[derive(Debug, Default, PartialEq)]
struct UserFilters {
    role: Option<Role>,
    disabled: Option<bool>,
    /// The start of the username, lowercased: usernames are lowercase, so the
    /// match ignores case.
    username_prefix: Option<String>,
}

impl UserFilters {
    fn from_query(query: Option<&str>) -> Result<Self, Problem> {
        let filters = Filters::from_query(query, &["role", "disabled", "q"])?;
        Ok(Self {
            role: filters.parse("role", "admin, member or viewer")?,
            disabled: filters.parse("disabled", "true or false")?,
            username_prefix: filters.text("q").map(str::to_lowercase),
        })
    }
}

/// List users
///
/// Every account, newest first. Admins only.
#[utoipa::path(
    get,
    path = "/v1/users",
    tag = "users",
    operation_id = "listUsers",
    params(
        ("role" = Option<Role>, Query, description = "Only users with this role."),
        ("disabled" = Option<bool>, Query, description = "`true`: only disabled users; `false`: only enabled ones."),
        ("q" = Option<String>, Query, description = "Only usernames starting with this, ignoring case."),
        ("limit" = Option<u32>, Query, description = "Items per page, 1 to 200 (default 50)."),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page."),
    ),
    responses(
        (status = 200, description = "A page of users, newest first.", body = inline(Page<User>)),
        ValidationFailed, Unauthorized, Forbidden,
    ),
)]
pub(crate) async fn list(req: &mut Request) -> Result<http::Response<String>, Problem> {
    let caller = Identity::from_request(req)?;
    caller.require(Role::Admin)?;
    let page = PageRequest::<Uuid>::from_query(req.uri().query())?;
    let filters = UserFilters::from_query(req.uri().query())?;
    let db = Db::connect().await?;
    // Newest first is `user_id` descending: ids are UUID v7, ordered by creation.
    let users: Vec<User> = db
        .query(
            &format!(
                "select {USER_COLUMNS}
                 from users
                 where ($1::uuid is null or user_id < $1)
                   and ($2::text is null or role = $2)
                   and ($3::boolean is null or (disabled_at is not null) = $3)
                   and ($4::text is null or starts_with(username, $4))
                 order by user_id desc
                 limit $5"
            ),
            &[
                page.after.into(),
                filters.role.into(),
                filters.disabled.into(),
                filters.username_prefix.into(),
                page.fetch_limit().into(),
            ],
        )
        .await?;
    json(StatusCode::OK, &page.finish(users, |user| user.user_id)?)
}

/// A new account, as an admin makes it.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewUser {
    /// 3 to 64 lowercase letters, digits, `.`, `_` or `-`. Uppercase is refused
    /// rather than lowercased: the name given is the one the person will type.
    username: String,
    /// 12 to 256 characters, at least 5 different ones, not containing the username.
    password: String,
    role: Role,
    /// 1 to 100 characters.
    display_name: Option<String>,
}

impl Validate for NewUser {
    fn validate(&self, v: &mut Validator) {
        check_account(
            v,
            &self.username,
            &self.password,
            self.display_name.as_deref(),
        );
    }
}

/// Create a user
///
/// An account with any role. Admins only.
#[utoipa::path(
    post,
    path = "/v1/users",
    tag = "users",
    operation_id = "createUser",
    request_body = NewUser,
    responses(
        (
            status = 201,
            description = "The user.",
            body = User,
            headers(("Location" = String, description = "The user's path: `/v1/users/{user_id}`.")),
        ),
        ValidationFailed, Unauthorized, Forbidden, Conflict, PayloadTooLarge, UnsupportedMediaType,
    ),
)]
pub(crate) async fn create(req: &mut Request) -> Result<http::Response<String>, Problem> {
    let caller = Identity::from_request(req)?;
    caller.require(Role::Admin)?;
    let new: NewUser = read_json(req).await?;
    // Hashing takes tens of milliseconds: done before the transaction begins.
    let hash = password::hash(&new.password)?;
    let db = Db::connect().await?;
    let user = transaction(&db, async |tx| {
        let user = insert(
            tx,
            &new.username,
            new.display_name.as_deref(),
            new.role,
            &hash,
        )
        .await?;
        AuditEvent::new("user.created", Outcome::Success)
            .by(&caller)
            .target("user", user.user_id)
            .detail("username", &user.username)
            .detail("role", user.role)
            .record(tx, req)
            .await?;
        Ok(user)
    })
    .await?;
    created(&format!("/v1/users/{}", user.user_id), &user)
}

/// Inserts a user with a new id. A taken username is a 409 `conflict` whose field
/// error names `username`: the database decides (`users_username_key`), so two
/// concurrent creations of one name cannot both succeed.
pub(crate) async fn insert(
    tx: &Tx<'_>,
    username: &str,
    display_name: Option<&str>,
    role: Role,
    password_hash: &str,
) -> Result<User, DbError> {
    tx.query_one(
        &format!(
            "insert into users (user_id, username, display_name, role, password_hash)
             values ($1, $2, $3, $4, $5)
             returning {USER_COLUMNS}"
        ),
        &[
            ids::new_id().into(),
            username.to_owned().into(),
            display_name.map(str::to_owned).into(),
            role.into(),
            password_hash.to_owned().into(),
        ],
    )
    .await
    .on_constraint("users_username_key", |_| {
        Problem::conflict(format!("the username {username:?} is taken"))
            .with_field_error("username", "is taken")
    })
}

/// Retrieve a user
///
/// Admins may read anyone; any other caller only themselves (see also
/// `GET /v1/auth/me`).
#[utoipa::path(
    get,
    path = "/v1/users/{user_id}",
    tag = "users",
    operation_id = "retrieveUser",
    params(("user_id" = Uuid, Path, description = "The user.")),
    responses(
        (status = 200, description = "The user.", body = User),
        ValidationFailed, Unauthorized, NotFound,
    ),
)]
pub(crate) async fn get(req: &mut Request, id: &str) -> Result<http::Response<String>, Problem> {
    let caller = Identity::from_request(req)?;
    let user_id = ids::parse_id("user_id", id)?;
    // Anyone else gets what a missing user gets: which ids are accounts is not
    // theirs to learn.
    if !caller.can_read(user_id, false) {
        return Err(no_such_user(user_id));
    }
    let db = Db::connect().await?;
    let user: Option<User> = db
        .query_opt(
            &format!("select {USER_COLUMNS} from users where user_id = $1"),
            &[user_id.into()],
        )
        .await?;
    json(StatusCode::OK, &user.ok_or_else(|| no_such_user(user_id))?)
}

/// A change to a user. Fields left out stay as they are.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UserUpdate {
    /// The `version` of the user the change is based on.
    version: i32,
    role: Option<Role>,
    /// 1 to 100 characters; `null` clears it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    display_name: Option<Option<String>>,
    /// `true` disables the user and ends their sessions; `false` enables them again.
    disabled: Option<bool>,
    /// A new password, under the same rules as at creation. Ends every session of
    /// the user.
    password: Option<String>,
}

/// Reads a field that is there, `null` included, as `Some`. With
/// `#[serde(default)]` for a field left out, an `Option<Option<T>>` then tells
/// "leave it" (`None`) from "clear it" (`Some(None)`).
impl Validate for UserUpdate {
    fn validate(&self, v: &mut Validator) {
        v.range("version", self.version, 1..=i32::MAX);
        if let Some(Some(name)) = &self.display_name {
            check_display_name(v, "display_name", name);
        }
        // The password's strength rules need the username: see `new_password_hash`.
    }
}

/// Update a user
///
/// Changes a user's role, display name, password or whether they are disabled,
/// based on the `version` last read: if the user changed since, nothing is
/// changed and the answer is a `409` naming the current version. Disabling a user
/// or setting their password ends every session they have. Demoting or disabling
/// the last enabled admin is a `409`. A change that changes nothing leaves the
/// version as it is. Admins only.
#[utoipa::path(
    patch,
    path = "/v1/users/{user_id}",
    tag = "users",
    operation_id = "updateUser",
    params(("user_id" = Uuid, Path, description = "The user.")),
    request_body = UserUpdate,
    responses(
        (status = 200, description = "The user, changed.", body = User),
        ValidationFailed, Unauthorized, Forbidden, NotFound, Conflict, PayloadTooLarge,
        UnsupportedMediaType,
    ),
)]
pub(crate) async fn update(req: &mut Request, id: &str) -> Result<http::Response<String>, Problem> {
    let caller = Identity::from_request(req)?;
    caller.require(Role::Admin)?;
    let user_id = ids::parse_id("user_id", id)?;
    let update: UserUpdate = read_json(req).await?;
    let db = Db::connect().await?;
    let password_hash = match &update.password {
        Some(password) => Some(new_password_hash(&db, user_id, password).await?),
        None => None,
    };
    let user = transaction(&db, async |tx| {
        let admins = lock_enabled_admins(tx).await?;
        let user = lock_user(tx, user_id).await?;
        if update.version != user.version {
            return Err(Problem::stale_version(update.version, user.version));
        }
        let changes = Changes::between(&user, &update);
        if let Some(doing) = changes.takes_away_admin() {
            ensure_another_admin(&admins, &user, doing)?;
        }
        if changes.is_empty() {
            return Ok(user);
        }
        let updated: User = tx
            .query_one(
                &format!(
                    "update users
                     set role = $2,
                         display_name = $3,
                         -- Kept while the user stays disabled: it says since when.
                         disabled_at = case when $4 then coalesce(disabled_at, now()) end,
                         password_hash = coalesce($5, password_hash),
                         version = version + 1
                     where user_id = $1
                     returning {USER_COLUMNS}"
                ),
                &[
                    user_id.into(),
                    update.role.unwrap_or(user.role).into(),
                    update
                        .display_name
                        .clone()
                        .unwrap_or(user.display_name)
                        .into(),
                    update.disabled.unwrap_or(user.disabled_at.is_some()).into(),
                    password_hash.clone().into(),
                ],
            )
            .await?;
        if let Some(reason) = changes.ends_sessions() {
            sessions::revoke_all(tx, user_id, reason).await?;
        }
        for event in changes.audit_events() {
            event
                .by(&caller)
                .target("user", user_id)
                .record(tx, req)
                .await?;
        }
        Ok(updated)
    })
    .await?;
    json(StatusCode::OK, &user)
}

/// The hash to store for `password`, the new password of `user_id`, once it
/// passes the strength rules, which need the username (404 if there is no such
/// user). Hashing takes tens of milliseconds, so it happens before the transaction
/// and no row stays locked meanwhile; usernames never change, so the one read
/// here is the one the transaction will see.
async fn new_password_hash(db: &Db, user_id: Uuid, password: &str) -> Result<String, Problem> {
    let row: Row = db
        .query_opt(
            "select username from users where user_id = $1",
            &[user_id.into()],
        )
        .await?
        .ok_or_else(|| no_such_user(user_id))?;
    let username: String = row.get("username")?;
    let mut v = Validator::default();
    password::check_strength(&mut v, "password", password, &username);
    v.finish()?;
    password::hash(password)
}

/// What an update changes about a user: only what differs from how they are,
/// each kind of change with its own audit record.
#[derive(Debug, Default, PartialEq)]
struct Changes {
    /// `(from, to)`.
    role: Option<(Role, Role)>,
    /// The new display name; `Some(None)` clears it.
    display_name: Option<Option<String>>,
    /// `true`: disabled; `false`: enabled again.
    disabled: Option<bool>,
    /// A new password. Always a change: telling whether it is the old one would
    /// take another hash, and setting it ends the sessions either way.
    password: bool,
}

impl Changes {
    fn between(user: &User, update: &UserUpdate) -> Self {
        Self {
            role: update
                .role
                .filter(|&role| role != user.role)
                .map(|role| (user.role, role)),
            display_name: update
                .display_name
                .clone()
                .filter(|name| *name != user.display_name),
            disabled: update
                .disabled
                .filter(|&disabled| disabled != user.disabled_at.is_some()),
            password: update.password.is_some(),
        }
    }

    fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// How the change takes an admin's powers away, if it does, in the words of
    /// the 409 should they be the last admin.
    fn takes_away_admin(&self) -> Option<&'static str> {
        if self.disabled == Some(true) {
            Some("disabling")
        } else if matches!(self.role, Some((Role::Admin, _))) {
            Some("demoting")
        } else {
            None
        }
    }

    /// Why the user's sessions end, if the change ends them: a disabled user must
    /// not stay logged in, and a reset password must log out whoever had the old one.
    fn ends_sessions(&self) -> Option<&'static str> {
        if self.disabled == Some(true) {
            Some("user_disabled")
        } else if self.password {
            Some("password_reset")
        } else {
            None
        }
    }

    /// One audit record per kind of change, still to be attributed and targeted.
    fn audit_events(&self) -> Vec<AuditEvent> {
        let event = |action| AuditEvent::new(action, Outcome::Success);
        let mut events = Vec::new();
        if let Some((from, to)) = self.role {
            events.push(
                event("user.role_changed")
                    .detail("from", from)
                    .detail("to", to),
            );
        }
        match self.disabled {
            Some(true) => events.push(event("user.disabled")),
            Some(false) => events.push(event("user.enabled")),
            None => {}
        }
        if self.password {
            events.push(event("user.password_reset"));
        }
        if let Some(name) = &self.display_name {
            events.push(event("user.updated").detail("display_name", name));
        }
        events
    }
}

/// Delete a user
///
/// The account goes, and with it the user's sessions (ended at once) and API
/// keys. The last enabled admin cannot be deleted. Admins only.
#[utoipa::path(
    delete,
    path = "/v1/users/{user_id}",
    tag = "users",
    operation_id = "deleteUser",
    params(("user_id" = Uuid, Path, description = "The user.")),
    responses(
        (status = 204, description = "The user is deleted."),
        ValidationFailed, Unauthorized, Forbidden, NotFound, Conflict,
    ),
)]
pub(crate) async fn delete(req: &mut Request, id: &str) -> Result<http::Response<String>, Problem> {
    let caller = Identity::from_request(req)?;
    caller.require(Role::Admin)?;
    let user_id = ids::parse_id("user_id", id)?;
    let db = Db::connect().await?;
    transaction(&db, async |tx| {
        let admins = lock_enabled_admins(tx).await?;
        let user = lock_user(tx, user_id).await?;
        ensure_another_admin(&admins, &user, "deleting")?;
        // Revoked rather than left to the cascade, so that the realtime hub hears
        // of it and closes the user's connections.
        sessions::revoke_all(tx, user_id, "user_deleted").await?;
        tx.execute("delete from users where user_id = $1", &[user_id.into()])
            .await?;
        AuditEvent::new("user.deleted", Outcome::Success)
            .by(&caller)
            .target("user", user_id)
            .detail("username", &user.username)
            .record(tx, req)
            .await?;
        Ok(())
    })
    .await?;
    no_content()
}

/// Locks the row of every enabled admin, in id order, and returns their ids.
///
/// Every update and deletion takes these locks before any other, in the same
/// order, since any of them may demote, disable or delete an admin (which one is
/// known only once the user's row is read). Two of them then queue rather than
/// deadlock, and the second, once the first commits, sees what the first did:
/// PostgreSQL re-checks a locked row against the `where` when its lock frees.
/// Without the locks, two admins demoting each other would each count the other
/// and both succeed.
async fn lock_enabled_admins(tx: &Tx<'_>) -> Result<Vec<Uuid>, DbError> {
    let rows: Vec<Row> = tx
        .query(
            "select user_id from users
             where role = 'admin' and disabled_at is null
             order by user_id
             for update",
            &[],
        )
        .await?;
    rows.iter().map(|row| row.get("user_id")).collect()
}

/// The user `user_id`, their row locked until the transaction ends; 404 if there
/// is none.
async fn lock_user(tx: &Tx<'_>, user_id: Uuid) -> Result<User, Problem> {
    tx.query_opt(
        &format!("select {USER_COLUMNS} from users where user_id = $1 for update"),
        &[user_id.into()],
    )
    .await?
    .ok_or_else(|| no_such_user(user_id))
}

/// 409 if `user` is an enabled admin and no one else in `enabled_admins` (from
/// [`lock_enabled_admins`]) is: `doing` that to them (`"disabling"`, ...) would
/// leave no one able to manage users.
fn ensure_another_admin(enabled_admins: &[Uuid], user: &User, doing: &str) -> Result<(), Problem> {
    let is_enabled_admin = user.role == Role::Admin && user.disabled_at.is_none();
    if is_enabled_admin && enabled_admins.iter().all(|&id| id == user.user_id) {
        return Err(Problem::conflict(format!(
            "{:?} is the last enabled admin; {doing} them would leave no one to manage \
             users: make another user an admin first",
            user.username
        )));
    }
    Ok(())
}

fn no_such_user(user_id: Uuid) -> Problem {
    Problem::not_found(format!("there is no user {user_id}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arena_common::ProblemCode;
    use arena_common::time::Timestamp;

    fn user(role: Role, disabled: bool) -> User {
        let at: Timestamp = "2025-01-02T03:04:05Z".parse().unwrap();
        User {
            user_id: Uuid::from_u128(1),
            username: "ada".into(),
            display_name: Some("Ada".into()),
            role,
            disabled_at: disabled.then_some(at),
            version: 3,
            created_at: at,
            updated_at: at,
        }
    }

    fn update(json: serde_json::Value) -> UserUpdate {
        serde_json::from_value(json).unwrap()
    }

    fn changes(user: &User, json: serde_json::Value) -> Changes {
        Changes::between(user, &update(json))
    }

    fn invalid_fields(body: &impl Validate) -> Vec<String> {
        match body.validated() {
            Ok(()) => Vec::new(),
            Err(problem) => problem.errors().iter().map(|e| e.field.clone()).collect(),
        }
    }

    #[test]
    fn user_filters_read_role_disabled_and_a_lowercased_prefix() {
        let filters =
            UserFilters::from_query(Some("role=viewer&disabled=true&q=AdA&limit=5")).unwrap();
        assert_eq!(
            filters,
            UserFilters {
                role: Some(Role::Viewer),
                disabled: Some(true),
                username_prefix: Some("ada".into()),
            }
        );
        assert_eq!(
            UserFilters::from_query(None).unwrap(),
            UserFilters::default()
        );
    }

    #[test]
    fn bad_user_filters_are_400_naming_the_parameter() {
        for (query, parameter) in [
            ("role=root", "role"),
            ("role=Admin", "role"),
            ("disabled=yes", "disabled"),
            ("username=ada", "username"),
        ] {
            let problem = UserFilters::from_query(Some(query)).unwrap_err();
            assert_eq!(problem.code(), ProblemCode::ValidationFailed, "{query}");
            assert_eq!(problem.errors()[0].field, parameter, "{query}");
        }
    }

    #[test]
    fn a_new_user_with_an_uppercase_name_or_a_weak_password_is_refused() {
        let new: NewUser = serde_json::from_value(serde_json::json!({
            "username": "Ada", "password": "short", "role": "member", "display_name": ""
        }))
        .unwrap();
        assert_eq!(
            invalid_fields(&new),
            ["username", "password", "display_name"]
        );

        let new: NewUser = serde_json::from_value(serde_json::json!({
            "username": "ada", "password": "correct horse battery", "role": "admin"
        }))
        .unwrap();
        assert!(invalid_fields(&new).is_empty());
    }

    #[test]
    fn a_new_user_names_a_known_role_and_nothing_else() {
        let parse = |json| serde_json::from_value::<NewUser>(json);
        assert!(
            parse(serde_json::json!({"username": "ada", "password": "x", "role": "root"})).is_err()
        );
        assert!(
            parse(serde_json::json!({"username": "ada", "password": "x", "role": "admin", "admin": true}))
                .is_err()
        );
    }

    #[test]
    fn an_update_tells_a_display_name_left_out_from_one_cleared() {
        assert_eq!(update(serde_json::json!({"version": 1})).display_name, None);
        assert_eq!(
            update(serde_json::json!({"version": 1, "display_name": null})).display_name,
            Some(None)
        );
        assert_eq!(
            update(serde_json::json!({"version": 1, "display_name": "Ada"})).display_name,
            Some(Some("Ada".into()))
        );
    }

    #[test]
    fn an_update_needs_a_version_and_a_valid_display_name() {
        assert!(
            serde_json::from_value::<UserUpdate>(serde_json::json!({"role": "admin"})).is_err()
        );
        assert_eq!(
            invalid_fields(&update(
                serde_json::json!({"version": 0, "display_name": "a\u{7}"})
            )),
            ["version", "display_name"]
        );
        assert!(
            invalid_fields(&update(
                serde_json::json!({"version": 1, "display_name": null})
            ))
            .is_empty()
        );
    }

    #[test]
    fn only_what_differs_is_a_change() {
        let ada = user(Role::Member, false);
        let same = changes(
            &ada,
            serde_json::json!({"version": 3, "role": "member", "display_name": "Ada", "disabled": false}),
        );
        assert!(same.is_empty(), "{same:?}");
        assert_eq!(
            changes(
                &ada,
                serde_json::json!({"version": 3, "role": "admin", "display_name": null, "disabled": true})
            ),
            Changes {
                role: Some((Role::Member, Role::Admin)),
                display_name: Some(None),
                disabled: Some(true),
                password: false,
            }
        );
    }

    #[test]
    fn a_password_is_always_a_change_and_ends_the_sessions() {
        let reset = changes(
            &user(Role::Member, false),
            serde_json::json!({"version": 3, "password": "correct horse battery"}),
        );
        assert!(!reset.is_empty());
        assert_eq!(reset.ends_sessions(), Some("password_reset"));
    }

    #[test]
    fn disabling_ends_the_sessions_and_enabling_does_not() {
        let disabling = changes(
            &user(Role::Member, false),
            serde_json::json!({"version": 3, "disabled": true}),
        );
        assert_eq!(disabling.ends_sessions(), Some("user_disabled"));
        let enabling = changes(
            &user(Role::Member, true),
            serde_json::json!({"version": 3, "disabled": false}),
        );
        assert_eq!(enabling.disabled, Some(false));
        assert_eq!(enabling.ends_sessions(), None);
    }

    #[test]
    fn demoting_or_disabling_takes_away_admin_powers_and_promoting_does_not() {
        let admin = user(Role::Admin, false);
        let demote = changes(&admin, serde_json::json!({"version": 3, "role": "viewer"}));
        assert_eq!(demote.takes_away_admin(), Some("demoting"));
        let disable = changes(&admin, serde_json::json!({"version": 3, "disabled": true}));
        assert_eq!(disable.takes_away_admin(), Some("disabling"));
        let promote = changes(
            &user(Role::Member, false),
            serde_json::json!({"version": 3, "role": "admin"}),
        );
        assert_eq!(promote.takes_away_admin(), None);
    }

    #[test]
    fn each_kind_of_change_has_its_own_audit_record() {
        let all = changes(
            &user(Role::Member, false),
            serde_json::json!({
                "version": 3, "role": "viewer", "disabled": true,
                "password": "correct horse battery", "display_name": "Lovelace"
            }),
        );
        let records: Vec<String> = all
            .audit_events()
            .iter()
            .map(|e| format!("{e:?}"))
            .collect();
        let actions = [
            "user.role_changed",
            "user.disabled",
            "user.password_reset",
            "user.updated",
        ];
        assert_eq!(records.len(), actions.len());
        for (record, action) in records.iter().zip(actions) {
            assert!(record.contains(&format!("{action:?}")), "{record}");
        }
        assert!(
            records
                .iter()
                .all(|record| !record.contains("correct horse"))
        );
    }

    #[test]
    fn the_last_enabled_admin_stays_one() {
        let ada = user(Role::Admin, false);
        let problem = ensure_another_admin(&[ada.user_id], &ada, "demoting").unwrap_err();
        assert_eq!(problem.code(), ProblemCode::Conflict);
        assert!(
            problem
                .detail()
                .contains("\"ada\" is the last enabled admin"),
            "{}",
            problem.detail()
        );
    }

    #[test]
    fn an_admin_with_another_beside_them_or_anyone_else_may_go() {
        let ada = user(Role::Admin, false);
        assert!(ensure_another_admin(&[ada.user_id, Uuid::from_u128(2)], &ada, "deleting").is_ok());
        let member = user(Role::Member, false);
        assert!(ensure_another_admin(&[Uuid::from_u128(2)], &member, "deleting").is_ok());
        // A disabled admin manages nothing: removing them leaves the enabled ones.
        let disabled = user(Role::Admin, true);
        assert!(ensure_another_admin(&[], &disabled, "deleting").is_ok());
    }

    #[test]
    fn a_stale_version_is_a_conflict_naming_the_current_one() {
        let problem = Problem::stale_version(3, 5);
        assert_eq!(problem.code(), ProblemCode::Conflict);
        assert_eq!(
            problem.detail(),
            "version 3 is stale; the current version is 5"
        );
        assert_eq!(problem.errors()[0].field, "version");
    }

    #[test]
    fn the_update_schema_requires_only_the_version() {
        use utoipa::PartialSchema;
        let schema = serde_json::to_value(UserUpdate::schema()).unwrap();
        assert_eq!(schema["required"], serde_json::json!(["version"]));
        assert_eq!(
            schema["properties"]["display_name"]["type"],
            serde_json::json!(["string", "null"])
        );
    }
}
