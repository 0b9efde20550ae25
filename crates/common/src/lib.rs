//! Code every Arena component links, so each area answers in the same shape.
//!
//! | Module | What it gives a handler |
//! |---|---|
//! | [`problem`] | [`Problem`], the one error type: RFC 9457 `application/problem+json` |
//! | [`request`] | the request id and path of the request being served; outbound requests carrying the id |
//! | [`response`] | [`json`], a JSON response with any status |
//! | [`body`] | [`read_json`](body::read_json): a size-limited, typed, validated JSON body, every failure a 4xx |
//! | [`validate`] | [`Validate`](validate::Validate): range and length rules reporting every invalid field |
//! | [`ids`] | UUID v7 ids; a path parameter read as a UUID (400 if it is not one) |
//! | [`time`] | [`Timestamp`](time::Timestamp): UTC instants written as RFC 3339 |
//! | [`auth`] | [`Identity`](auth::Identity): the verified caller, their role, and the ownership rule |
//! | `audit` (`spin`) | [`AuditEvent`](audit::AuditEvent): a record in the audit trail |
//! | `credentials` (`credentials`) | access tokens (JWT), refresh tokens and API keys: made, digested, verified (natively too; the keys from a Spin variable with `spin`) |
//! | `ollama` (`ollama`) | the Ollama client: models, streamed chat, embeddings, with deadlines |
//! | `usage` (`spin`) | every model call recorded with its tokens; quotas enforced |
//! | `sse` (`ollama`) | server-sent events: a streamed response fed by a task |
//! | `tokens` (`tokens`) | token counts (tiktoken): a text, a chat with its framing, a text cut to a count |
//! | [`routes`] | the routes a component's OpenAPI declarations name, to check its router against |
//! | [`query`] | [`Filters`](query::Filters): a list's filter parameters, strictly read |
//! | [`pagination`] | `?limit=&cursor=` in, [`Page`](pagination::Page) `{items, next_cursor}` out |
//! | `db` (`spin`) | PostgreSQL: connecting, typed rows, transactions, errors mapped to problems |
//! | `variables` (`spin`) | Spin variables read and parsed, a broken one a 500 naming it |
//! | `events` (`spin`) | an event recorded in the same transaction as the write it announces |
//! | `idempotency` (`spin`) | `Idempotency-Key`: a retried create answers with the first result, doing nothing twice |
//! | [`visibility`] | [`Visibility`](visibility::Visibility): private to its owner, or shared with every user |
//!
//! Modules marked `spin` need spin-sdk and exist with the `spin` feature (on by
//! default); the native host turns it off and links the rest.
//!
//! A handler returns `Result<http::Response<String>, Problem>`; both sides convert
//! into a Spin response, so `?` and early returns read naturally:
//!
//! ```no_run
//! use arena_common::{json, Problem};
//! use http::StatusCode;
//! use spin_sdk::http::Request;
//!
//! fn retrieve(req: &Request, name: &str) -> Result<http::Response<String>, Problem> {
//!     if name != "ada" {
//!         return Err(Problem::not_found(format!("no agent named {name:?}")).for_request(req));
//!     }
//!     json(StatusCode::OK, &serde_json::json!({ "name": name }))
//! }
//! ```
//!
//! [`openapi()`] documents what this crate contributes to every component's API
//! description: the `Problem` schema and one reusable response per error code.

#[cfg(feature = "spin")]
pub mod audit;
pub mod auth;
pub mod body;
#[cfg(feature = "credentials")]
pub mod credentials;
#[cfg(feature = "spin")]
pub mod db;
#[cfg(feature = "spin")]
pub mod events;
#[cfg(feature = "spin")]
pub mod idempotency;
pub mod ids;
#[cfg(feature = "ollama")]
pub mod ollama;
pub mod pagination;
pub mod problem;
pub mod query;
pub mod request;
pub mod response;
pub mod routes;
#[cfg(feature = "ollama")]
pub mod sse;
pub mod time;
#[cfg(feature = "tokens")]
pub mod tokens;
#[cfg(feature = "spin")]
pub mod usage;
pub mod validate;
#[cfg(feature = "spin")]
pub mod variables;
pub mod visibility;

pub use problem::{FieldError, Problem, ProblemCode};
pub use response::{created, json, no_content};

/// The OpenAPI parts shared by every area: the `Problem` schemas and the reusable
/// problem responses (`#/components/responses/NotFound`, ...).
///
/// Components refer to these by name (see [`problem::responses`]); the meta component
/// merges this document once into the published one, so they are described once.
pub fn openapi() -> utoipa::openapi::OpenApi {
    problem::responses::openapi()
}
