//! What this component declares about its routes, for the published OpenAPI document.

use utoipa::OpenApi as _;
use utoipa::openapi::OpenApi;

#[derive(utoipa::OpenApi)]
#[openapi(
    paths(
    ),
    tags(
        (name = "discussions", description = "Discussions: agents and people taking turns on a topic, streamed, persisted, paused, resumed and recovered."),
    ),
)]
struct DiscussionsApi;

/// The routes this component serves; meta merges them into the published document.
pub fn openapi() -> OpenApi {
    DiscussionsApi::openapi()
}
