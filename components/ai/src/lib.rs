//! Arena's AI component: the one place that talks to Ollama on a caller's behalf.
//!
//! | Route | Module | Who |
//! |---|---|---|
//! | `GET /v1/ai/models` | `models` | anyone: the installed models |
//! | `GET /v1/ai/models/{name}` | `models` | anyone: one model |
//! | `POST /v1/ai/models/pull` | `models` | admins: downloads a model, progress as SSE |
//! | `DELETE /v1/ai/models/{name}` | `models` | admins |
//! | `GET /v1/ai/status` | `status` | anyone: Ollama reachable or not, its version, loaded models |
//! | `POST /v1/ai/chat` | `chat` | members: a chat answer, streamed as SSE or whole |
//! | `POST /v1/ai/embeddings` | `embeddings` | members: one vector per text |
//! | `POST /v1/ai/tokens/count` | `tokens` | anyone: how many tokens a text or chat takes |
//! | `GET /v1/ai/usage` | `usage` | anyone: their own usage (admins: everyone's) |
//!
//! Every 403 this component answers is recorded in the audit trail.
//!
//! Model names hold `:` and `/` (`llama3.2:1b`, `hf.co/org/model`): everything after
//! `/v1/ai/models/` is the name, percent-decoded.

mod chat;
mod embeddings;
mod models;
mod openapi;
mod status;
mod tokens;
mod usage;

pub use openapi::openapi;

use arena_common::{Problem, request};
use http::Method;

/// The request type handlers take.
pub(crate) type Request = spin_sdk::http::Request;

/// What handlers answer: a plain response, or an event stream.
pub(crate) use arena_common::response::AnyResponse as Response;
/// Turns a handler's plain answer into the component's response type.
pub(crate) use arena_common::response::any as plain;

/// A resource this component serves.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Route {
    Models,
    Model(String),
    Pull,
    Status,
    Chat,
    Embeddings,
    TokenCount,
    Usage,
}

impl Route {
    /// The resource at `path`, if any. A model name is percent-decoded; one that
    /// does not decode as UTF-8 routes nowhere.
    fn at(path: &str) -> Option<Self> {
        let rest = path.strip_prefix("/v1/ai/")?;
        Some(match rest {
            "models" => Route::Models,
            "models/pull" => Route::Pull,
            "status" => Route::Status,
            "chat" => Route::Chat,
            "embeddings" => Route::Embeddings,
            "tokens/count" => Route::TokenCount,
            "usage" => Route::Usage,
            _ => {
                let name = rest
                    .strip_prefix("models/")
                    .filter(|name| !name.is_empty())?;
                Route::Model(percent_decode(name)?)
            }
        })
    }

    fn methods(&self) -> &'static [Method] {
        match self {
            Route::Models | Route::Status | Route::Usage => &[Method::GET, Method::HEAD],
            Route::Model(_) => &[Method::GET, Method::HEAD, Method::DELETE],
            Route::Pull | Route::Chat | Route::Embeddings | Route::TokenCount => &[Method::POST],
        }
    }
}

/// `%XX` escapes decoded (a path's only escapes: `+` stays a plus); `None` if the
/// result is not UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    percent_encoding::percent_decode_str(text)
        .decode_utf8()
        .ok()
        .map(|name| name.into_owned())
}

/// Answers one request; every problem names the request's path and id.
pub async fn respond(mut req: Request) -> Response {
    use spin_sdk::http::IntoResponse;
    let path = request::path(&req).to_owned();
    match dispatch(&mut req, &path).await {
        Ok(response) => response,
        Err(problem) => {
            arena_common::audit::record_if_denied(&req, &problem).await;
            problem
                .for_request(&req)
                .into_response()
                .unwrap_or_else(|_| {
                    // A problem always converts; this only satisfies the types.
                    http::StatusCode::INTERNAL_SERVER_ERROR
                        .into_response()
                        .expect("a bare status converts")
                })
        }
    }
}

async fn dispatch(req: &mut Request, path: &str) -> Result<Response, Problem> {
    let Some(route) = Route::at(path) else {
        return Err(Problem::not_found(format!("there is nothing at {path}")));
    };
    let method = req.method().clone();
    if !route.methods().contains(&method) {
        return Err(Problem::method_not_allowed(&method, route.methods()));
    }
    match route {
        Route::Models => models::list(req).await,
        Route::Model(name) if method == Method::DELETE => models::delete(req, &name).await,
        Route::Model(name) => models::get(req, &name).await,
        Route::Pull => models::pull(req).await,
        Route::Status => status::get(req).await,
        Route::Chat => chat::post(req).await,
        Route::Embeddings => embeddings::post(req).await,
        Route::TokenCount => tokens::count(req).await,
        Route::Usage => usage::get(req).await,
    }
}

/// The Spin entry point: the component's `wasi:http/handler` export.
#[cfg(all(feature = "component", target_family = "wasm"))]
#[spin_sdk::http_service]
async fn serve(req: spin_sdk::http::Request) -> Response {
    respond(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_names_keep_their_colons_and_slashes_and_are_decoded() {
        assert_eq!(
            Route::at("/v1/ai/models/llama3.2:1b"),
            Some(Route::Model("llama3.2:1b".into()))
        );
        assert_eq!(
            Route::at("/v1/ai/models/hf.co/org/model%3Aq4"),
            Some(Route::Model("hf.co/org/model:q4".into()))
        );
        assert_eq!(Route::at("/v1/ai/models/pull"), Some(Route::Pull));
        assert_eq!(Route::at("/v1/ai/models/"), None);
        assert_eq!(Route::at("/v1/ai/models/%FF"), None);
    }

    #[test]
    fn the_document_describes_exactly_the_routes_served() {
        let documented = arena_common::routes::documented(&openapi());
        assert_eq!(documented.len(), 8, "one documented path per kind of route");
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
    fn unknown_paths_route_nowhere() {
        for path in [
            "/v1/ai",
            "/v1/ai/",
            "/v1/ai/chat/",
            "/v1/ai/tokens",
            "/v1/aix/chat",
        ] {
            assert_eq!(Route::at(path), None, "{path}");
        }
    }
}
