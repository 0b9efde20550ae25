//! `POST /v1/auth/register`: anyone creates an account, as a member, while the
//! Spin variable `open_registration` is `true`.

use arena_common::audit::{AuditEvent, Outcome};
use arena_common::auth::Role;
use arena_common::body::read_json;
use arena_common::db::{Db, transaction};
use arena_common::problem::responses::{
    Conflict, Forbidden, PayloadTooLarge, RateLimited, UnsupportedMediaType, ValidationFailed,
};
use arena_common::validate::{Validate, Validator};
use arena_common::{Problem, created};
use serde::Deserialize;
use utoipa::ToSchema;

use crate::user::{User, check_account};
use crate::{Request, password, settings, users};

/// A new account.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Registration {
    /// 3 to 64 lowercase letters, digits, `.`, `_` or `-`.
    username: String,
    /// 12 to 256 characters, at least 5 different ones, not containing the username.
    password: String,
    display_name: Option<String>,
}

impl Validate for Registration {
    fn validate(&self, v: &mut Validator) {
        check_account(
            v,
            &self.username,
            &self.password,
            self.display_name.as_deref(),
        );
    }
}

/// Create an account
///
/// Open only when the deployment allows it (`open_registration`); the account is
/// a member. Log in afterwards with `POST /v1/auth/token`.
#[utoipa::path(
    post,
    path = "/v1/auth/register",
    tag = "auth",
    operation_id = "register",
    security(()),
    request_body = Registration,
    responses(
        (status = 201, description = "The account.", body = User),
        ValidationFailed, Forbidden, Conflict, PayloadTooLarge, UnsupportedMediaType, RateLimited,
    ),
)]
pub(crate) async fn post(req: &mut Request) -> Result<http::Response<String>, Problem> {
    if !settings::open_registration().await? {
        return Err(Problem::forbidden(
            "registration is closed; ask an admin for an account",
        ));
    }
    let registration: Registration = read_json(req).await?;
    let hash = password::hash(&registration.password)?;
    let db = Db::connect().await?;
    let user: User = transaction(&db, async |tx| {
        let user = users::insert(
            tx,
            &registration.username,
            registration.display_name.as_deref(),
            Role::Member,
            &hash,
        )
        .await?;
        AuditEvent::new("user.registered", Outcome::Success)
            .by_user(user.user_id)
            .target("user", user.user_id)
            .detail("username", &user.username)
            .record(tx, req)
            .await?;
        Ok(user)
    })
    .await?;
    created(&format!("/v1/users/{}", user.user_id), &user)
}
