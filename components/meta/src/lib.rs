//! Arena's meta component: whether the API is up, and what it offers.
//!
//! | Route | Module | Answers |
//! |---|---|---|
//! | `GET /v1/health` | `health` | `{"status":"ok","version":...}`: liveness, checks nothing else |
//! | `GET /v1/ready` | `ready` | each dependency (PostgreSQL, ...) `up` or `down`; `503` when a required one is down |
//! | `GET /v1/openapi.json` | `openapi` | the OpenAPI 3.1 [`DOCUMENT`] of the whole API |
//! | `GET /docs` | `docs` | that document as a browsable HTML reference |
//!
//! spin.toml routes `/v1/...` here as the fallback for every path no other component
//! claims, so an unknown path gets its 404 problem from this router.
//!
//! The Spin entry point is behind the `component` feature (on by default). With it
//! off, the crate is a plain library exporting nothing, which is how an area's crate
//! is linked into the native test that assembles the API document (see [`openapi()`]).

mod docs;
mod health;
mod openapi;
mod ready;

pub use openapi::{DOCUMENT, openapi};

use arena_common::{Problem, request};
use http::Method;

/// Every route here serves a read-only document. HEAD is GET without the body; the
/// HTTP server (hyper, under both Spin and the `arena` host) drops the body itself.
const READ_ONLY: &[Method] = &[Method::GET, Method::HEAD];

/// A resource this component serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Health,
    Ready,
    OpenApi,
    Docs,
}

/// The routing table: path to resource. Paths match exactly: no trailing slash, and
/// the query string plays no part.
const ROUTES: &[(&str, Route)] = &[
    ("/v1/health", Route::Health),
    ("/v1/ready", Route::Ready),
    ("/v1/openapi.json", Route::OpenApi),
    ("/docs", Route::Docs),
];

impl Route {
    /// The methods the resource answers, for routing and for the `Allow` header.
    fn methods(self) -> &'static [Method] {
        match self {
            Route::Health | Route::Ready | Route::OpenApi | Route::Docs => READ_ONLY,
        }
    }
}

/// Finds what `method` on `path` asks for: a 404 if nothing lives at the path, a 405
/// if something does but not with this method.
fn route(method: &Method, path: &str) -> Result<Route, Problem> {
    let Some(&(_, route)) = ROUTES.iter().find(|(known, _)| *known == path) else {
        return Err(Problem::not_found(format!("there is nothing at {path}")));
    };
    if route.methods().contains(method) {
        Ok(route)
    } else {
        Err(Problem::method_not_allowed(method, route.methods()))
    }
}

/// Answers one request. Every problem names the request's path and id, wherever it
/// was raised.
pub async fn respond<B>(req: &http::Request<B>) -> Result<http::Response<String>, Problem> {
    dispatch(req)
        .await
        .map_err(|problem| problem.for_request(req))
}

async fn dispatch<B>(req: &http::Request<B>) -> Result<http::Response<String>, Problem> {
    match route(req.method(), request::path(req))? {
        Route::Health => health::get(),
        Route::Ready => ready::get(req).await,
        Route::OpenApi => openapi::get(),
        Route::Docs => docs::get(),
    }
}

/// The Spin entry point: the component's `wasi:http/handler` export.
///
/// Compiled for Wasm only: the export's symbol name (`wasi:http/handler@0.3.0#handle`)
/// is not one a native linker accepts, and native builds exist for the tests.
#[cfg(all(feature = "component", target_family = "wasm"))]
#[spin_sdk::http_service]
async fn serve(req: spin_sdk::http::Request) -> Result<http::Response<String>, Problem> {
    respond(&req).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use arena_common::ProblemCode;
    use futures::executor::block_on;
    use http::StatusCode;
    use http::header::{ALLOW, CONTENT_TYPE};

    fn request(method: Method, uri: &str) -> http::Request<()> {
        http::Request::builder()
            .method(method)
            .uri(uri)
            .header("x-request-id", "req-42")
            .body(())
            .unwrap()
    }

    fn problem_json(problem: Problem) -> serde_json::Value {
        serde_json::from_str(problem.to_response().body()).unwrap()
    }

    #[test]
    fn each_known_path_routes_to_its_resource() {
        assert_eq!(route(&Method::GET, "/v1/health").unwrap(), Route::Health);
        assert_eq!(route(&Method::GET, "/v1/ready").unwrap(), Route::Ready);
        assert_eq!(
            route(&Method::GET, "/v1/openapi.json").unwrap(),
            Route::OpenApi
        );
        assert_eq!(route(&Method::GET, "/docs").unwrap(), Route::Docs);
    }

    #[test]
    fn head_is_answered_wherever_get_is() {
        for (path, resource) in ROUTES {
            assert_eq!(route(&Method::HEAD, path).unwrap(), *resource);
        }
    }

    #[test]
    fn unknown_paths_are_404_problems_naming_the_path_and_request() {
        let problem = block_on(respond(&request(Method::GET, "/v1/nothing-here?x=1"))).unwrap_err();
        assert_eq!(problem.code(), ProblemCode::NotFound);
        let json = problem_json(problem);
        assert_eq!(json["status"], 404);
        assert_eq!(json["instance"], "/v1/nothing-here");
        assert_eq!(json["request_id"], "req-42");
        assert_eq!(json["detail"], "there is nothing at /v1/nothing-here");
    }

    #[test]
    fn routes_match_exactly() {
        for path in [
            "/v1/health/",
            "/v1/HEALTH",
            "/v1",
            "/",
            "/docs/x",
            "/v1/health/../docs",
        ] {
            let problem = route(&Method::GET, path).unwrap_err();
            assert_eq!(problem.code(), ProblemCode::NotFound, "{path}");
        }
    }

    #[test]
    fn the_query_string_plays_no_part_in_routing() {
        let response = block_on(respond(&request(Method::GET, "/v1/health?verbose=1"))).unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }

    #[test]
    fn a_known_path_with_another_method_is_405_with_allow() {
        for method in [
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
            Method::OPTIONS,
        ] {
            let problem = block_on(respond(&request(method.clone(), "/v1/health"))).unwrap_err();
            assert_eq!(problem.code(), ProblemCode::MethodNotAllowed, "{method}");
            let response = problem.to_response();
            assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
            assert_eq!(response.headers()[ALLOW], "GET, HEAD");
            assert_eq!(response.headers()[CONTENT_TYPE], "application/problem+json");
            let json: serde_json::Value = serde_json::from_str(response.body()).unwrap();
            assert_eq!(json["instance"], "/v1/health");
            assert_eq!(json["request_id"], "req-42");
        }
    }

    #[test]
    fn extension_methods_are_405_not_a_crash() {
        let method = Method::from_bytes(b"BREW").unwrap();
        let problem = block_on(respond(&request(method, "/docs"))).unwrap_err();
        assert_eq!(problem.code(), ProblemCode::MethodNotAllowed);
    }

    #[test]
    fn every_route_answers_get_with_200_and_its_media_type() {
        let expected = [
            ("/v1/health", "application/json"),
            ("/v1/openapi.json", "application/json"),
            ("/docs", "text/html; charset=utf-8"),
        ];
        for (path, media_type) in expected {
            let response = block_on(respond(&request(Method::GET, path))).unwrap();
            assert_eq!(response.status(), StatusCode::OK, "{path}");
            assert_eq!(response.headers()[CONTENT_TYPE], media_type, "{path}");
        }
    }

    #[test]
    fn the_document_describes_exactly_the_routes_served() {
        let documented = arena_common::routes::documented(&openapi());
        let served: Vec<(String, Vec<Method>)> = ROUTES
            .iter()
            .map(|(path, route)| {
                let methods = arena_common::routes::sorted(route.methods().to_vec());
                ((*path).to_owned(), methods)
            })
            .collect();
        assert_eq!(documented, served);
    }
}
