//! The caller's own account: `GET /v1/auth/me` and `POST /v1/auth/password`.

use arena_common::audit::{AuditEvent, Outcome};
use arena_common::auth::{Credential, Identity, Role};
use arena_common::body::read_json;
use arena_common::db::{Db, Row, transaction};
use arena_common::ids::Uuid;
use arena_common::problem::responses::{RateLimited, Unauthorized, ValidationFailed};
use arena_common::validate::{Validate, Validator};
use arena_common::{Problem, json, no_content, request};
use http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::settings::Backoff;
use crate::user::{USER_COLUMNS, User};
use crate::{Request, backoff, password, sessions};

/// Who the caller is, and with what credential.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Me {
    user: User,
    credential: CredentialInfo,
    /// The role in force for this request: the credential's, which may be below
    /// the user's own.
    role: Role,
}

/// The credential a request used.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CredentialInfo {
    /// `session` (an access token from a login) or `api_key`.
    kind: &'static str,
    /// The session's or the key's id.
    id: Uuid,
}

impl From<Credential> for CredentialInfo {
    fn from(credential: Credential) -> Self {
        let kind = match credential {
            Credential::Session(_) => "session",
            Credential::ApiKey(_) => "api_key",
        };
        Self {
            kind,
            id: credential.id(),
        }
    }
}

/// Who am I?
///
/// The caller's account, the credential the request used and the role in force.
#[utoipa::path(
    get,
    path = "/v1/auth/me",
    tag = "auth",
    operation_id = "retrieveMe",
    responses(
        (status = 200, description = "The caller.", body = Me),
        Unauthorized,
    ),
)]
pub(crate) async fn get(req: &mut Request) -> Result<http::Response<String>, Problem> {
    let caller = Identity::from_request(req)?;
    let db = Db::connect().await?;
    let user: User = db
        .query_opt(
            &format!("select {USER_COLUMNS} from users where user_id = $1"),
            &[caller.user_id.into()],
        )
        .await?
        // The middleware found the user a moment ago; it was deleted since.
        .ok_or_else(|| Problem::unauthorized("this account no longer exists"))?;
    json(
        StatusCode::OK,
        &Me {
            user,
            credential: caller.credential.into(),
            role: caller.role,
        },
    )
}

/// A new password, proven by the current one.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PasswordChange {
    current_password: String,
    new_password: String,
}

impl Validate for PasswordChange {
    fn validate(&self, v: &mut Validator) {
        v.length(
            "current_password",
            &self.current_password,
            1..=password::MAX_CHARS,
        );
        v.check(
            "new_password",
            self.new_password != self.current_password,
            "must differ from the current password",
        );
    }
}

/// Change your password
///
/// Every other session of the caller is revoked; the one making the change stays.
/// Wrong current passwords count towards the login back-off.
#[utoipa::path(
    post,
    path = "/v1/auth/password",
    tag = "auth",
    operation_id = "changePassword",
    request_body = PasswordChange,
    responses(
        (status = 204, description = "The password is changed."),
        ValidationFailed, Unauthorized, RateLimited,
    ),
)]
pub(crate) async fn change_password(req: &mut Request) -> Result<http::Response<String>, Problem> {
    let caller = Identity::from_request(req)?;
    let change: PasswordChange = read_json(req).await?;
    let db = Db::connect().await?;
    let row: Row = db
        .query_opt(
            "select username, password_hash from users where user_id = $1",
            &[caller.user_id.into()],
        )
        .await?
        .ok_or_else(|| Problem::unauthorized("this account no longer exists"))?;
    let username: String = row.get("username")?;
    let stored: String = row.get("password_hash")?;

    let mut v = Validator::default();
    password::check_strength(&mut v, "new_password", &change.new_password, &username);
    v.finish()?;

    let subjects = backoff::subjects(&username, request::client_ip(req));
    if let Some(wait) = backoff::locked_for(&db, &subjects).await? {
        return Err(backoff::locked_out(wait));
    }
    if !password::verify(&change.current_password, Some(&stored)) {
        backoff::record_failure(&db, &subjects, &Backoff::from_variables().await?).await?;
        return Err(Problem::validation_failed("the current password is wrong")
            .with_field_error("current_password", "is wrong"));
    }
    let hash = password::hash(&change.new_password)?;
    let keep = match caller.credential {
        Credential::Session(id) => Some(id),
        Credential::ApiKey(_) => None,
    };
    transaction(&db, async |tx| {
        tx.execute(
            "update users set password_hash = $2, version = version + 1 where user_id = $1",
            &[caller.user_id.into(), hash.clone().into()],
        )
        .await?;
        let revoked =
            sessions::revoke_all_but(tx, caller.user_id, keep, "password_changed").await?;
        AuditEvent::new("user.password_changed", Outcome::Success)
            .by(&caller)
            .target("user", caller.user_id)
            .detail("sessions_revoked", revoked)
            .record(tx, req)
            .await?;
        Ok(())
    })
    .await?;
    no_content()
}
