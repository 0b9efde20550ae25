//! What this component declares about its routes, for the published OpenAPI document.

use utoipa::OpenApi as _;
use utoipa::openapi::OpenApi;

#[derive(utoipa::OpenApi)]
#[openapi(
    paths(
        crate::agents::list,
        crate::agents::create,
        crate::agents::get,
        crate::agents::update,
        crate::agents::delete,
        crate::versions::list,
        crate::versions::get,
    ),
    tags(
        (name = "agents", description = "Agents: a persona on a model with its parameters, versioned; private to their owner or shared."),
    ),
)]
struct AgentsApi;

/// The routes this component serves; meta merges them into the published document.
pub fn openapi() -> OpenApi {
    AgentsApi::openapi()
}
