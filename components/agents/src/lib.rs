//! Arena's agents component: the participants of discussions.
//!
//! An agent is a persona (its system prompt) on a model, with the model's
//! generation parameters and tags. Its owner, or an admin, changes it; it is
//! private to them or shared with every user, who may then read it. Every
//! version it has had is kept, so a discussion can record which one spoke.
//!
//! | Route | Module | Who |
//! |---|---|---|
//! | `GET, POST /v1/agents` | `agents` | readers: own, shared (admins: all); writers: members and admins |
//! | `GET, PATCH, DELETE /v1/agents/{agent_id}` | `agents` | whoever may read it; its owner or an admin changes it |
//! | `GET /v1/agents/{agent_id}/versions`, `GET /v1/agents/{agent_id}/versions/{version}` | `versions` | whoever may read the agent |
//!
//! The ownership rule is [`Identity::check`](arena_common::auth::Identity::check)'s:
//! another user's private agent is a 404, as if it did not exist. Every 403 this
//! component answers is recorded in the audit trail.

mod agent;
mod agents;
mod openapi;
mod versions;

pub use openapi::openapi;

use arena_common::{Problem, request};
use http::Method;

/// The body type handlers read: Spin's incoming body.
pub(crate) type Request = spin_sdk::http::Request;

/// A resource this component serves; ids are still text, parsed by the handler
/// so a malformed one gets a 400 naming the parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route<'a> {
    Agents,
    Agent(&'a str),
    Versions(&'a str),
    Version(&'a str, &'a str),
}

impl<'a> Route<'a> {
    /// The resource at `path`, if any. Paths match exactly: no trailing slash.
    fn at(path: &'a str) -> Option<Self> {
        Some(match arena_common::routes::segments(path)?.as_slice() {
            ["agents"] => Route::Agents,
            ["agents", id] => Route::Agent(id),
            ["agents", id, "versions"] => Route::Versions(id),
            ["agents", id, "versions", version] => Route::Version(id, version),
            _ => return None,
        })
    }

    /// The methods the resource answers, for routing and for `Allow`.
    fn methods(self) -> &'static [Method] {
        match self {
            Route::Agents => &[Method::GET, Method::HEAD, Method::POST],
            Route::Agent(_) => &[Method::GET, Method::HEAD, Method::PATCH, Method::DELETE],
            Route::Versions(_) | Route::Version(..) => &[Method::GET, Method::HEAD],
        }
    }
}

/// Answers one request. Every problem names the request's path and id, wherever it
/// was raised.
pub async fn respond(mut req: Request) -> Result<http::Response<String>, Problem> {
    let path = request::path(&req).to_owned();
    let result = dispatch(&mut req, &path).await;
    if let Err(problem) = &result {
        arena_common::audit::record_if_denied(&req, problem).await;
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
        Route::Agents if is_read => agents::list(req).await,
        Route::Agents => agents::create(req).await,
        Route::Agent(id) if is_read => agents::get(req, id).await,
        Route::Agent(id) if method == Method::PATCH => agents::update(req, id).await,
        Route::Agent(id) => agents::delete(req, id).await,
        Route::Versions(id) => versions::list(req, id).await,
        Route::Version(id, version) => versions::get(req, id, version).await,
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
        assert_eq!(Route::at("/v1/agents"), Some(Route::Agents));
        assert_eq!(Route::at("/v1/agents/a1"), Some(Route::Agent("a1")));
        assert_eq!(
            Route::at("/v1/agents/a1/versions"),
            Some(Route::Versions("a1"))
        );
        assert_eq!(
            Route::at("/v1/agents/a1/versions/3"),
            Some(Route::Version("a1", "3"))
        );
    }

    #[test]
    fn unknown_and_trailing_slash_paths_route_nowhere() {
        for path in [
            "/v1/agents/",
            "/v1/agents/a/b",
            "/v1/agents/a/versions/1/x",
            "/agents",
            "/v1/agentss",
        ] {
            assert_eq!(Route::at(path), None, "{path}");
        }
    }

    #[test]
    fn the_document_describes_exactly_the_routes_served() {
        let documented = arena_common::routes::documented(&openapi());
        assert_eq!(documented.len(), 4, "one documented path per kind of route");
        for (path, methods) in documented {
            let route = Route::at(&path).unwrap_or_else(|| panic!("{path} is not served"));
            assert_eq!(
                methods,
                arena_common::routes::sorted(route.methods().to_vec()),
                "{path}"
            );
        }
    }
}
