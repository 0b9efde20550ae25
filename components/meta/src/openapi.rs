//! `GET /v1/openapi.json`: the OpenAPI 3.1 document of the whole API.
//!
//! No one writes the document by hand. Each area's crate declares its own routes with
//! `#[utoipa::path]` and exposes them as `pub fn openapi() -> utoipa::openapi::OpenApi`;
//! `generate::assemble` merges those declarations into `components/meta/openapi.json`, which
//! this component serves as it is ([`DOCUMENT`]) and the TypeScript SDK's types are
//! generated from.
//!
//! The file is generated, and checked in so that a change to the API shows in review:
//! `ARENA_UPDATE_OPENAPI=1 cargo test --release -p arena-meta` rewrites it, and the
//! same test without the variable fails while the file is out of date. The areas are
//! linked only into that native test, never into this component's Wasm: a component
//! crate built as a dependency would overwrite its own `.wasm` with one that exports
//! nothing.

use arena_common::Problem;
use arena_common::problem::responses::MethodNotAllowed;
use arena_common::response::APPLICATION_JSON;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, StatusCode};
use utoipa::OpenApi as _;
use utoipa::openapi::OpenApi;

#[cfg(test)]
pub(crate) mod generate;

/// The published document, as `components/meta/openapi.json` holds it.
pub const DOCUMENT: &str = include_str!("../openapi.json");

/// What the meta component itself serves.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(crate::health::get, crate::ready::get, get, crate::docs::get),
    tags((name = "meta", description = "Whether the API is up and ready, and what it offers.")),
)]
struct MetaApi;

/// The routes this component serves, and nothing else; the document merges it with
/// the other areas'.
pub fn openapi() -> OpenApi {
    MetaApi::openapi()
}

/// Describe the API
///
/// The OpenAPI 3.1 document of every route, assembled from what each component declares
/// about its own routes. The TypeScript SDK's types are generated from it.
#[utoipa::path(
    get,
    path = "/v1/openapi.json",
    tag = "meta",
    operation_id = "retrieveOpenApi",
    security(()),
    responses(
        (status = 200, description = "The OpenAPI 3.1 document.", body = Object, content_type = "application/json"),
        MethodNotAllowed,
    ),
)]
pub(crate) fn get() -> Result<http::Response<String>, Problem> {
    let mut response = http::Response::new(DOCUMENT.to_owned());
    *response.status_mut() = StatusCode::OK;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(APPLICATION_JSON));
    Ok(response)
}
