//! What this component declares about its routes, for the published OpenAPI document.

use utoipa::OpenApi as _;
use utoipa::openapi::OpenApi;

#[derive(utoipa::OpenApi)]
#[openapi(
    paths(
        crate::register::post,
        crate::token::post,
        crate::sessions::logout,
        crate::me::get,
        crate::me::change_password,
        crate::sessions::list,
        crate::sessions::revoke,
        crate::api_keys::list,
        crate::api_keys::create,
        crate::api_keys::revoke,
        crate::users::list,
        crate::users::create,
        crate::users::get,
        crate::users::update,
        crate::users::delete,
        crate::audit_events::list,
    ),
    tags(
        (name = "auth", description = "Logging in and out: the OAuth2 token endpoint, sessions, API keys, the caller's own account."),
        (name = "users", description = "Accounts and roles (admins)."),
        (name = "audit", description = "The audit trail of security-relevant events (admins)."),
    ),
)]
struct AuthApi;

/// The routes this component serves; meta merges them into the published document.
pub fn openapi() -> OpenApi {
    AuthApi::openapi()
}
