//! Arena's auth component: who may use Arena, and how they prove it.
//!
//! | Route | Module | Who |
//! |---|---|---|
//! | `POST /v1/auth/register` | `register` | anyone, when open registration is on |
//! | `POST /v1/auth/token` | `token` | anyone: the OAuth2 password and refresh-token grants |
//! | `POST /v1/auth/logout` | `sessions` | the caller: ends the session they use |
//! | `GET /v1/auth/me` | `me` | the caller |
//! | `POST /v1/auth/password` | `me` | the caller: changes their password |
//! | `GET /v1/auth/sessions`, `DELETE /v1/auth/sessions/{id}` | `sessions` | the caller's own (an admin's: anyone's) |
//! | `GET, POST /v1/auth/api-keys`, `DELETE /v1/auth/api-keys/{id}` | `api_keys` | the caller's own (an admin's: anyone's) |
//! | `GET, POST /v1/users`, `GET, PATCH, DELETE /v1/users/{id}` | `users` | admins (a user may read themselves) |
//! | `GET /v1/audit-events` | `audit_events` | admins |
//!
//! The auth middleware stands in front of this component as of every other: the
//! token and register routes are public, every other one arrives with a verified
//! [`Identity`](arena_common::auth::Identity). Every 403 this component answers is
//! recorded in the audit trail.

mod api_keys;
mod audit_events;
mod backoff;
mod bootstrap;
mod me;
mod openapi;
mod password;
mod register;
mod sessions;
mod settings;
mod token;
mod user;
mod users;

pub use openapi::openapi;

use arena_common::{Problem, audit, request};
use http::Method;

/// The body type handlers read: Spin's incoming body in the component, an
/// in-memory one in tests.
pub(crate) type Request = spin_sdk::http::Request;

/// A resource this component serves; ids are still text, parsed by the handler
/// so a malformed one gets a 400 naming the parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route<'a> {
    Register,
    Token,
    Logout,
    Me,
    Password,
    Sessions,
    Session(&'a str),
    ApiKeys,
    ApiKey(&'a str),
    Users,
    User(&'a str),
    AuditEvents,
}

impl<'a> Route<'a> {
    /// The resource at `path`, if any. Paths match exactly: no trailing slash.
    fn at(path: &'a str) -> Option<Self> {
        Some(match arena_common::routes::segments(path)?.as_slice() {
            ["auth", "register"] => Route::Register,
            ["auth", "token"] => Route::Token,
            ["auth", "logout"] => Route::Logout,
            ["auth", "me"] => Route::Me,
            ["auth", "password"] => Route::Password,
            ["auth", "sessions"] => Route::Sessions,
            ["auth", "sessions", id] => Route::Session(id),
            ["auth", "api-keys"] => Route::ApiKeys,
            ["auth", "api-keys", id] => Route::ApiKey(id),
            ["users"] => Route::Users,
            ["users", id] => Route::User(id),
            ["audit-events"] => Route::AuditEvents,
            _ => return None,
        })
    }

    /// The methods the resource answers, for routing and for `Allow`.
    fn methods(self) -> &'static [Method] {
        match self {
            Route::Register | Route::Token | Route::Logout | Route::Password => &[Method::POST],
            Route::Me | Route::Sessions | Route::AuditEvents => &[Method::GET, Method::HEAD],
            Route::Session(_) | Route::ApiKey(_) => &[Method::DELETE],
            Route::ApiKeys | Route::Users => &[Method::GET, Method::HEAD, Method::POST],
            Route::User(_) => &[Method::GET, Method::HEAD, Method::PATCH, Method::DELETE],
        }
    }
}

/// Answers one request. Every problem names the request's path and id, wherever it
/// was raised; every 403 is recorded in the audit trail.
pub async fn respond(mut req: Request) -> Result<http::Response<String>, Problem> {
    let path = request::path(&req).to_owned();
    let result = dispatch(&mut req, &path).await;
    if let Err(problem) = &result {
        audit::record_if_denied(&req, problem).await;
    }
    result.map_err(|problem| problem.for_request(&req))
}

async fn dispatch(req: &mut Request, path: &str) -> Result<http::Response<String>, Problem> {
    let Some(route) = Route::at(path) else {
        return Err(Problem::not_found(format!("there is nothing at {path}")));
    };
    let method = req.method().clone();
    if !route.methods().contains(&method) {
        return Err(Problem::method_not_allowed(&method, route.methods()));
    }
    let is_read = method == Method::GET || method == Method::HEAD;
    match route {
        Route::Register => register::post(req).await,
        Route::Token => token::post(req).await,
        Route::Logout => sessions::logout(req).await,
        Route::Me => me::get(req).await,
        Route::Password => me::change_password(req).await,
        Route::Sessions => sessions::list(req).await,
        Route::Session(id) => sessions::revoke(req, id).await,
        Route::ApiKeys if is_read => api_keys::list(req).await,
        Route::ApiKeys => api_keys::create(req).await,
        Route::ApiKey(id) => api_keys::revoke(req, id).await,
        Route::Users if is_read => users::list(req).await,
        Route::Users => users::create(req).await,
        Route::User(id) if is_read => users::get(req, id).await,
        Route::User(id) if method == Method::PATCH => users::update(req, id).await,
        Route::User(id) => users::delete(req, id).await,
        Route::AuditEvents => audit_events::list(req).await,
    }
}

/// The Spin entry point: the component's `wasi:http/handler` export.
#[cfg(all(feature = "component", target_family = "wasm"))]
#[spin_sdk::http_service]
async fn serve(req: spin_sdk::http::Request) -> Result<http::Response<String>, Problem> {
    respond(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_route_to_their_resources_with_ids_as_text() {
        assert_eq!(Route::at("/v1/auth/token"), Some(Route::Token));
        assert_eq!(Route::at("/v1/users/abc"), Some(Route::User("abc")));
        assert_eq!(Route::at("/v1/auth/api-keys/k1"), Some(Route::ApiKey("k1")));
        assert_eq!(Route::at("/v1/audit-events"), Some(Route::AuditEvents));
    }

    #[test]
    fn unknown_and_trailing_slash_paths_route_nowhere() {
        for path in [
            "/v1/auth",
            "/v1/auth/token/",
            "/v1/users/a/b",
            "/auth/token",
            "/v1/userss",
        ] {
            assert_eq!(Route::at(path), None, "{path}");
        }
    }

    #[test]
    fn the_document_describes_exactly_the_routes_served() {
        let documented = arena_common::routes::documented(&openapi());
        assert_eq!(
            documented.len(),
            12,
            "one documented path per kind of route"
        );
        for (path, methods) in documented {
            let route = Route::at(&path).unwrap_or_else(|| panic!("{path} is not served"));
            assert_eq!(
                methods,
                arena_common::routes::sorted(route.methods().to_vec()),
                "{path}"
            );
        }
    }

    #[test]
    fn every_route_answers_head_wherever_it_answers_get() {
        for route in [
            Route::Me,
            Route::Sessions,
            Route::ApiKeys,
            Route::Users,
            Route::User("x"),
            Route::AuditEvents,
        ] {
            assert!(route.methods().contains(&Method::HEAD), "{route:?}");
        }
    }
}
