//! Sessions: one per login, owning the family of refresh tokens that descend from
//! it. Access tokens name their session (`sid`), and the middleware looks it up on
//! every request, so revoking a session stops its tokens at once.
//!
//! | Route | Answers |
//! |---|---|
//! | `GET /v1/auth/sessions` | the caller's active sessions, newest first; `current` marks the one in use |
//! | `DELETE /v1/auth/sessions/{id}` | `204`: that session is revoked (someone else's: `404`, unless admin) |
//! | `POST /v1/auth/logout` | `204`: the caller's own session is revoked |

use arena_common::audit::{AuditEvent, Outcome};
use arena_common::auth::{Credential, Identity, Role};
use arena_common::db::{Db, DbError, FromRow, Row, Tx, transaction};
use arena_common::ids::{self, Uuid};
use arena_common::pagination::{Page, PageRequest};
use arena_common::problem::responses::{NotFound, Unauthorized, ValidationFailed};
use arena_common::query::Filters;
use arena_common::time::Timestamp;
use arena_common::{Problem, events, json, no_content, request};
use http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;

use crate::Request;

/// A login, as its owner sees it.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Session {
    session_id: Uuid,
    /// The device, as its `User-Agent` said at login.
    user_agent: Option<String>,
    /// The address the login came from.
    client_addr: Option<String>,
    created_at: Timestamp,
    /// When a refresh token of the session was last exchanged.
    last_used_at: Timestamp,
    /// When the session ends, however often it is refreshed.
    expires_at: Timestamp,
    /// Whether this is the session the request itself uses.
    current: bool,
}

impl FromRow for Session {
    fn from_row(row: Row) -> Result<Self, DbError> {
        Ok(Self {
            session_id: row.get("session_id")?,
            user_agent: row.get("user_agent")?,
            client_addr: row.get("client_addr")?,
            created_at: row.get("created_at")?,
            last_used_at: row.get("last_used_at")?,
            expires_at: row.get("expires_at")?,
            current: false,
        })
    }
}

/// Opens a session for `user_id` logging in through `req`, lasting `ttl_secs`;
/// `scope` caps its tokens' role. Returns its id.
pub(crate) async fn open(
    tx: &Tx<'_>,
    req: &Request,
    user_id: Uuid,
    scope: Option<Role>,
    ttl_secs: u64,
) -> Result<Uuid, DbError> {
    let session_id = ids::new_id();
    tx.execute(
        "insert into sessions (session_id, user_id, user_agent, client_addr, scope, expires_at)
         values ($1, $2, $3, $4, $5, now() + make_interval(secs => $6))",
        &[
            session_id.into(),
            user_id.into(),
            request::user_agent(req).into(),
            request::client_ip(req).map(|ip| ip.to_string()).into(),
            scope.into(),
            (ttl_secs as f64).into(),
        ],
    )
    .await?;
    Ok(session_id)
}

/// Revokes one session of `user_id` for `reason`, announcing it on the user's
/// event stream (the realtime hub closes the session's sockets). `false` if it
/// was not active.
pub(crate) async fn revoke_one(
    tx: &Tx<'_>,
    user_id: Uuid,
    session_id: Uuid,
    reason: &str,
) -> Result<bool, DbError> {
    let revoked = tx
        .execute(
            "update sessions set revoked_at = now(), revoked_reason = $3
             where session_id = $1 and user_id = $2 and revoked_at is null",
            &[session_id.into(), user_id.into(), reason.to_owned().into()],
        )
        .await?;
    if revoked > 0 {
        announce(tx, user_id, &[session_id], reason).await?;
    }
    Ok(revoked > 0)
}

/// Revokes every active session of `user_id` for `reason` (a disabled account, a
/// new password). Returns how many there were.
pub(crate) async fn revoke_all(tx: &Tx<'_>, user_id: Uuid, reason: &str) -> Result<u64, DbError> {
    revoke_all_but(tx, user_id, None, reason).await
}

/// [`revoke_all`], sparing the session `keep` (the one changing its password).
pub(crate) async fn revoke_all_but(
    tx: &Tx<'_>,
    user_id: Uuid,
    keep: Option<Uuid>,
    reason: &str,
) -> Result<u64, DbError> {
    let rows: Vec<Row> = tx
        .query(
            "update sessions set revoked_at = now(), revoked_reason = $3
             where user_id = $1 and revoked_at is null
               and ($2::uuid is null or session_id <> $2)
             returning session_id",
            &[user_id.into(), keep.into(), reason.to_owned().into()],
        )
        .await?;
    let ids = rows
        .iter()
        .map(|row| row.get("session_id"))
        .collect::<Result<Vec<Uuid>, _>>()?;
    if !ids.is_empty() {
        announce(tx, user_id, &ids, reason).await?;
    }
    Ok(ids.len() as u64)
}

/// The `session.revoked` event on `user:<id>`.
async fn announce(
    tx: &Tx<'_>,
    user_id: Uuid,
    sessions: &[Uuid],
    reason: &str,
) -> Result<(), DbError> {
    #[derive(Serialize)]
    struct Revoked<'a> {
        session_ids: &'a [Uuid],
        reason: &'a str,
    }
    let stream = format!("user:{user_id}");
    events::emit(
        tx,
        &stream,
        "session.revoked",
        &Revoked {
            session_ids: sessions,
            reason,
        },
    )
    .await?;
    Ok(())
}

/// List your active sessions
///
/// The caller's logins that have neither ended nor been revoked, newest first.
#[utoipa::path(
    get,
    path = "/v1/auth/sessions",
    tag = "auth",
    operation_id = "listSessions",
    params(
        ("limit" = Option<u32>, Query, description = "Items per page, 1 to 200 (default 50)."),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page."),
    ),
    responses(
        (status = 200, description = "A page of sessions.", body = inline(Page<Session>)),
        ValidationFailed, Unauthorized,
    ),
)]
pub(crate) async fn list(req: &mut Request) -> Result<http::Response<String>, Problem> {
    let caller = Identity::from_request(req)?;
    Filters::from_query(req.uri().query(), &[])?;
    let page = PageRequest::<Uuid>::from_query(req.uri().query())?;
    let db = Db::connect().await?;
    let mut sessions: Vec<Session> = db
        .query(
            "select session_id, user_agent, client_addr, created_at, last_used_at, expires_at
             from sessions
             where user_id = $1 and revoked_at is null and expires_at > now()
               and ($2::uuid is null or session_id < $2)
             order by session_id desc
             limit $3",
            &[
                caller.user_id.into(),
                page.after.into(),
                page.fetch_limit().into(),
            ],
        )
        .await?;
    for session in &mut sessions {
        session.current = caller.credential == Credential::Session(session.session_id);
    }
    json(
        StatusCode::OK,
        &page.finish(sessions, |session| session.session_id)?,
    )
}

/// Revoke a session
///
/// Ends one of the caller's sessions (an admin: anyone's): its refresh token stops
/// working, and its access tokens on their next request.
#[utoipa::path(
    delete,
    path = "/v1/auth/sessions/{session_id}",
    tag = "auth",
    operation_id = "revokeSession",
    params(("session_id" = Uuid, Path, description = "The session to revoke.")),
    responses(
        (status = 204, description = "The session is revoked (or already was)."),
        ValidationFailed, Unauthorized, NotFound,
    ),
)]
pub(crate) async fn revoke(req: &mut Request, id: &str) -> Result<http::Response<String>, Problem> {
    let caller = Identity::from_request(req)?;
    let session_id = ids::parse_id("session_id", id)?;
    let db = Db::connect().await?;
    transaction(&db, async |tx| {
        let owner: Option<Row> = tx
            .query_opt(
                "select user_id from sessions where session_id = $1 for update",
                &[session_id.into()],
            )
            .await?;
        let owner: Uuid = match owner {
            Some(row) => row.get("user_id")?,
            None => return Err(no_such_session()),
        };
        if owner != caller.user_id && caller.role != Role::Admin {
            return Err(no_such_session());
        }
        if revoke_one(tx, owner, session_id, "revoked").await? {
            AuditEvent::new("session.revoked", Outcome::Success)
                .by(&caller)
                .target("session", session_id)
                .detail("reason", "revoked")
                .record(tx, req)
                .await?;
        }
        Ok(())
    })
    .await?;
    no_content()
}

/// Log out
///
/// Ends the session the request's access token belongs to, as
/// `DELETE /v1/auth/sessions/{id}` would. An API key has no session: revoke the
/// key instead.
#[utoipa::path(
    post,
    path = "/v1/auth/logout",
    tag = "auth",
    operation_id = "logout",
    responses(
        (status = 204, description = "The session is over."),
        ValidationFailed, Unauthorized,
    ),
)]
pub(crate) async fn logout(req: &mut Request) -> Result<http::Response<String>, Problem> {
    let caller = Identity::from_request(req)?;
    let Credential::Session(session_id) = caller.credential else {
        return Err(Problem::validation_failed(
            "an API key has no session to log out of; revoke the key instead",
        ));
    };
    let db = Db::connect().await?;
    transaction(&db, async |tx| {
        if revoke_one(tx, caller.user_id, session_id, "logout").await? {
            AuditEvent::new("session.revoked", Outcome::Success)
                .by(&caller)
                .target("session", session_id)
                .detail("reason", "logout")
                .record(tx, req)
                .await?;
        }
        Ok(())
    })
    .await?;
    no_content()
}

fn no_such_session() -> Problem {
    Problem::not_found("there is no such session")
}
