//! `POST /v1/auth/token`: the OAuth2 token endpoint (RFC 6749), with the
//! resource owner password grant (§4.3) and the refresh token grant (§6).
//!
//! Requests are `application/x-www-form-urlencoded`; answers are JSON with
//! `Cache-Control: no-store`. Failures are in RFC 6749 §5.2's form
//! (`{error, error_description}`), except a login back-off or rate limit, which is
//! a `429` problem like every other in the API.
//!
//! Refresh tokens rotate: each exchange marks the presented one used and hands
//! out a new one. A used one presented again was copied, so the whole session
//! (every token descended from the same login) is revoked.

use std::collections::HashMap;

use arena_common::audit::{AuditEvent, Outcome};
use arena_common::auth::Role;
use arena_common::body::read_form;
use arena_common::credentials::{self, AccessToken, REFRESH_TOKEN_PREFIX, Secret, SigningKeys};
use arena_common::db::{Db, Row, Tx, transaction};
use arena_common::ids::Uuid;
use arena_common::problem::responses::RateLimited;
use arena_common::time::Timestamp;
use arena_common::{Problem, json, request};
use http::header::{CACHE_CONTROL, PRAGMA};
use http::{HeaderValue, StatusCode};
use serde::Serialize;
use utoipa::ToSchema;

use crate::settings::{self, Backoff};
use crate::{Request, backoff, bootstrap, password, sessions};

/// Token requests are a few short fields; anything bigger is not one.
const FORM_LIMIT: usize = 16 * 1024;

/// What a successful grant answers (RFC 6749 §5.1).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct TokenResponse {
    /// A JWT to send as `Authorization: Bearer <access_token>`.
    access_token: String,
    /// Always `bearer`.
    token_type: &'static str,
    /// Seconds until the access token expires.
    expires_in: u64,
    /// Exchange it at this endpoint (`grant_type=refresh_token`) for new tokens; it
    /// works once.
    refresh_token: String,
    /// The role the tokens carry: `admin`, `member` or `viewer`.
    scope: Role,
}

/// An RFC 6749 §5.2 error answer.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct OAuthError {
    /// `invalid_request`, `invalid_grant`, `invalid_scope` or `unsupported_grant_type`.
    error: &'static str,
    error_description: String,
    #[serde(skip)]
    status: StatusCode,
}

impl OAuthError {
    fn new(error: &'static str, description: impl Into<String>) -> Self {
        Self {
            error,
            error_description: description.into(),
            status: StatusCode::BAD_REQUEST,
        }
    }

    fn invalid_request(description: impl Into<String>) -> Self {
        Self::new("invalid_request", description)
    }

    fn invalid_grant(description: impl Into<String>) -> Self {
        Self::new("invalid_grant", description)
    }
}

/// Why a grant was refused: in OAuth's words, or as a problem (a back-off, an
/// outage).
enum Refusal {
    OAuth(OAuthError),
    Problem(Problem),
}

impl From<Problem> for Refusal {
    fn from(problem: Problem) -> Self {
        Refusal::Problem(problem)
    }
}

impl From<arena_common::db::DbError> for Refusal {
    fn from(error: arena_common::db::DbError) -> Self {
        Refusal::Problem(error.into())
    }
}

impl From<OAuthError> for Refusal {
    fn from(error: OAuthError) -> Self {
        Refusal::OAuth(error)
    }
}

/// The one answer to a wrong username or password, whichever it was.
const WRONG_CREDENTIALS: &str = "the username or password is wrong";

/// Get tokens
///
/// Logs in with a username and password (`grant_type=password`), or exchanges a
/// refresh token for new tokens (`grant_type=refresh_token`). `scope` may ask for
/// a role below the user's own (`viewer`, say, for a read-only client).
#[utoipa::path(
    post,
    path = "/v1/auth/token",
    tag = "auth",
    operation_id = "createToken",
    security(()),
    request_body(
        content_type = "application/x-www-form-urlencoded",
        description = "`grant_type=password&username=..&password=..[&scope=..]` or \
                       `grant_type=refresh_token&refresh_token=..`",
        content = inline(HashMap<String, String>),
    ),
    responses(
        (status = 200, description = "New tokens.", body = TokenResponse),
        (status = 400, description = "The grant was refused (RFC 6749 §5.2).", body = OAuthError),
        (status = 415, description = "The body is not a form.", body = OAuthError),
        RateLimited,
    ),
)]
pub(crate) async fn post(req: &mut Request) -> Result<http::Response<String>, Problem> {
    match grant(req).await {
        Ok(tokens) => no_store(json(StatusCode::OK, &tokens)?),
        Err(Refusal::OAuth(error)) => no_store(json(error.status, &error)?),
        Err(Refusal::Problem(problem)) => Err(problem),
    }
}

/// RFC 6749 §5.1: token answers, good or bad, must not be cached.
fn no_store(mut response: http::Response<String>) -> Result<http::Response<String>, Problem> {
    let headers = response.headers_mut();
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(PRAGMA, HeaderValue::from_static("no-cache"));
    Ok(response)
}

async fn grant(req: &mut Request) -> Result<TokenResponse, Refusal> {
    let form = read_form(req, FORM_LIMIT)
        .await
        .map_err(|problem| OAuthError {
            status: problem.status(),
            ..OAuthError::invalid_request(problem.detail())
        })?;
    let params = Params::new(form)?;
    match params.require("grant_type")? {
        "password" => password_grant(req, &params).await,
        "refresh_token" => refresh_grant(req, &params).await,
        other => Err(OAuthError::new(
            "unsupported_grant_type",
            format!("grant_type {other:?} is not supported; use password or refresh_token"),
        )
        .into()),
    }
}

/// A token request's parameters: each at most once (RFC 6749 §3.2).
struct Params(HashMap<String, String>);

impl Params {
    fn new(form: Vec<(String, String)>) -> Result<Self, OAuthError> {
        let mut params = HashMap::new();
        for (name, value) in form {
            if params.contains_key(&name) {
                return Err(OAuthError::invalid_request(format!(
                    "the parameter {name:?} is given more than once"
                )));
            }
            params.insert(name, value);
        }
        Ok(Self(params))
    }

    /// A parameter's value; empty counts as missing (RFC 6749 §3.1).
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .get(name)
            .map(String::as_str)
            .filter(|value| !value.is_empty())
    }

    fn require(&self, name: &str) -> Result<&str, OAuthError> {
        self.get(name).ok_or_else(|| {
            OAuthError::invalid_request(format!("the parameter {name:?} is missing"))
        })
    }
}

/// The user a password grant logs in as.
struct Candidate {
    user_id: Uuid,
    role: Role,
    password_hash: String,
    disabled_at: Option<Timestamp>,
}

async fn password_grant(req: &Request, params: &Params) -> Result<TokenResponse, Refusal> {
    // Usernames are stored lowercase; `Ada` logs in as `ada`.
    let username = params.require("username")?.to_ascii_lowercase();
    let password = params.require("password")?;
    let scope = requested_scope(params)?;

    let db = Db::connect().await?;
    let backoff_settings = Backoff::from_variables().await?;
    let subjects = backoff::subjects(&username, request::client_ip(req));
    if let Some(wait) = backoff::locked_for(&db, &subjects).await? {
        login_failed(&db, req, None, &username, "locked_out").await?;
        return Err(backoff::locked_out(wait).into());
    }
    bootstrap::ensure_first_admin(&db, req).await?;

    let candidate: Option<Row> = db
        .query_opt(
            "select user_id, role, password_hash, disabled_at from users where username = $1",
            &[username.clone().into()],
        )
        .await?;
    let candidate = candidate
        .map(|row| -> Result<Candidate, arena_common::db::DbError> {
            Ok(Candidate {
                user_id: row.get("user_id")?,
                role: row.get("role")?,
                password_hash: row.get("password_hash")?,
                disabled_at: row.get("disabled_at")?,
            })
        })
        .transpose()?;

    let matches = password::verify(
        password,
        candidate.as_ref().map(|c| c.password_hash.as_str()),
    );
    let user = match candidate {
        Some(user) if matches => user,
        other => {
            backoff::record_failure(&db, &subjects, &backoff_settings).await?;
            login_failed(
                &db,
                req,
                other.map(|c| c.user_id),
                &username,
                "wrong_credentials",
            )
            .await?;
            return Err(OAuthError::invalid_grant(WRONG_CREDENTIALS).into());
        }
    };
    if user.disabled_at.is_some() {
        // Said only to whoever knows the password.
        login_failed(&db, req, Some(user.user_id), &username, "disabled").await?;
        return Err(OAuthError::invalid_grant("this account is disabled").into());
    }
    if let Some(scope) = scope
        && scope > user.role
    {
        return Err(OAuthError::new(
            "invalid_scope",
            format!("the scope {scope} is above this user's role"),
        )
        .into());
    }
    backoff::record_success(&db, &username).await?;

    let keys = SigningKeys::from_variables().await?;
    let ttl = Lifetimes::from_variables().await?;
    let role = scope.unwrap_or(user.role);
    let tokens = transaction(&db, async |tx| {
        let session_id = sessions::open(tx, req, user.user_id, scope, ttl.session_secs).await?;
        let tokens = issue(tx, &keys, &ttl, user.user_id, role, session_id).await?;
        AuditEvent::new("auth.login", Outcome::Success)
            .by_user(user.user_id)
            .with_credential(session_id)
            .target("session", session_id)
            .detail("scope", role)
            .record(tx, req)
            .await?;
        Ok(tokens)
    })
    .await?;
    Ok(tokens)
}

/// `scope`, if asked for: one role name (RFC 6749 §3.3 allows a list; Arena's
/// scopes are its roles, and a token has one).
fn requested_scope(params: &Params) -> Result<Option<Role>, OAuthError> {
    params
        .get("scope")
        .map(|text| {
            text.parse().map_err(|_| {
                OAuthError::new(
                    "invalid_scope",
                    format!("scope {text:?} is not one of admin, member or viewer"),
                )
            })
        })
        .transpose()
}

/// Records a failed login. The attempted username is kept only when it is a
/// well-formed one: a password typed into the wrong field must not be logged.
async fn login_failed(
    db: &Db,
    req: &Request,
    user_id: Option<Uuid>,
    username: &str,
    reason: &str,
) -> Result<(), Problem> {
    let mut v = arena_common::validate::Validator::default();
    crate::user::check_username(&mut v, "username", username);
    let mut event = AuditEvent::new("auth.login", Outcome::Failure).detail("reason", reason);
    if v.is_valid() {
        event = event.detail("username", username);
    }
    if let Some(user_id) = user_id {
        event = event.by_user(user_id).target("user", user_id);
    }
    event.record(db, req).await?;
    Ok(())
}

/// What a refresh token leads to.
struct Family {
    session_id: Uuid,
    user_id: Uuid,
    rotated: bool,
    /// The session is live and its user enabled.
    usable: bool,
    role: Role,
    scope: Option<Role>,
}

async fn refresh_grant(req: &Request, params: &Params) -> Result<TokenResponse, Refusal> {
    let presented = params.require("refresh_token")?;
    let invalid = || OAuthError::invalid_grant("the refresh token is not valid");
    if !presented.starts_with(REFRESH_TOKEN_PREFIX) {
        return Err(invalid().into());
    }
    let digest = credentials::digest(presented);
    let db = Db::connect().await?;
    let family: Option<Row> = db
        .query_opt(
            "select r.session_id, s.user_id, r.rotated_at is not null as rotated,
                    (s.revoked_at is null and s.expires_at > now() and u.disabled_at is null)
                        as usable,
                    u.role, s.scope
             from refresh_tokens r
             join sessions s using (session_id)
             join users u using (user_id)
             where r.token_hash = $1",
            &[digest.clone().into()],
        )
        .await?;
    let Some(row) = family else {
        return Err(invalid().into());
    };
    let family = Family {
        session_id: row.get("session_id")?,
        user_id: row.get("user_id")?,
        rotated: row.get("rotated")?,
        usable: row.get("usable")?,
        role: row.get("role")?,
        scope: row.get("scope")?,
    };
    if !family.usable {
        return Err(OAuthError::invalid_grant("the session has ended").into());
    }
    if family.rotated {
        return Err(reuse_detected(&db, req, &family).await?.into());
    }

    let keys = SigningKeys::from_variables().await?;
    let ttl = Lifetimes::from_variables().await?;
    let role = family
        .scope
        .map_or(family.role, |scope| scope.min(family.role));
    let exchanged = transaction(&db, async |tx| {
        // Conditional, so two concurrent exchanges of one token cannot both win.
        let claimed = tx
            .execute(
                "update refresh_tokens set rotated_at = now()
                 where token_hash = $1 and rotated_at is null",
                &[digest.clone().into()],
            )
            .await?;
        if claimed == 0 {
            return Ok(None);
        }
        tx.execute(
            "update sessions set last_used_at = now() where session_id = $1",
            &[family.session_id.into()],
        )
        .await?;
        let tokens = issue(tx, &keys, &ttl, family.user_id, role, family.session_id).await?;
        AuditEvent::new("auth.token_refreshed", Outcome::Success)
            .by_user(family.user_id)
            .with_credential(family.session_id)
            .target("session", family.session_id)
            .record(tx, req)
            .await?;
        Ok(Some(tokens))
    })
    .await?;
    match exchanged {
        Some(tokens) => Ok(tokens),
        None => Err(reuse_detected(&db, req, &family).await?.into()),
    }
}

/// A rotated refresh token came back: someone holds a copy. Revokes the whole
/// session, records it, and says only that the grant is invalid.
async fn reuse_detected(db: &Db, req: &Request, family: &Family) -> Result<OAuthError, Problem> {
    transaction(db, async |tx| {
        sessions::revoke_one(
            tx,
            family.user_id,
            family.session_id,
            "refresh_token_reused",
        )
        .await?;
        AuditEvent::new("auth.refresh_token_reused", Outcome::Failure)
            .by_user(family.user_id)
            .with_credential(family.session_id)
            .target("session", family.session_id)
            .record(tx, req)
            .await?;
        Ok(())
    })
    .await?;
    Ok(OAuthError::invalid_grant(
        "the refresh token was already used; the session is revoked",
    ))
}

/// How long tokens and sessions live.
struct Lifetimes {
    access_secs: u64,
    session_secs: u64,
}

impl Lifetimes {
    async fn from_variables() -> Result<Self, Problem> {
        Ok(Self {
            access_secs: settings::access_token_ttl_secs().await?,
            session_secs: settings::session_ttl_secs().await?,
        })
    }
}

/// A new refresh token (stored as its digest) and access token for a session.
async fn issue(
    tx: &Tx<'_>,
    keys: &SigningKeys,
    ttl: &Lifetimes,
    user_id: Uuid,
    role: Role,
    session_id: Uuid,
) -> Result<TokenResponse, Problem> {
    let refresh = Secret::generate(REFRESH_TOKEN_PREFIX)?;
    tx.execute(
        "insert into refresh_tokens (token_hash, session_id) values ($1, $2)",
        &[refresh.digest.into(), session_id.into()],
    )
    .await?;
    let access_token = keys.issue(
        &AccessToken {
            user_id,
            role,
            session_id,
        },
        ttl.access_secs,
    )?;
    Ok(TokenResponse {
        access_token,
        token_type: "bearer",
        expires_in: ttl.access_secs,
        refresh_token: refresh.text,
        scope: role,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Result<Params, OAuthError> {
        Params::new(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        )
    }

    #[test]
    fn a_parameter_given_twice_is_an_invalid_request() {
        let error = params(&[("grant_type", "password"), ("grant_type", "password")])
            .err()
            .unwrap();
        assert_eq!(error.error, "invalid_request");
        assert!(error.error_description.contains("grant_type"));
    }

    #[test]
    fn an_empty_parameter_counts_as_missing() {
        let params = params(&[("username", "")]).unwrap();
        assert_eq!(
            params.require("username").err().unwrap().error,
            "invalid_request"
        );
    }

    #[test]
    fn scope_is_one_role_name() {
        let scope = |text| requested_scope(&params(&[("scope", text)]).unwrap());
        assert_eq!(scope("viewer").unwrap(), Some(Role::Viewer));
        assert_eq!(scope("").unwrap(), None);
        assert_eq!(scope("read write").err().unwrap().error, "invalid_scope");
    }

    #[test]
    fn oauth_errors_serialize_in_rfc_6749_form() {
        let body = serde_json::to_value(OAuthError::invalid_grant("no")).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"error": "invalid_grant", "error_description": "no"})
        );
    }
}
