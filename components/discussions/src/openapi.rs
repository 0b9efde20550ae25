//! What this component declares about its routes, for the published OpenAPI document.

use utoipa::OpenApi as _;
use utoipa::openapi::OpenApi;

#[derive(utoipa::OpenApi)]
#[openapi(
    paths(
        crate::discussions::list,
        crate::discussions::create,
        crate::discussions::get,
        crate::discussions::update,
        crate::discussions::delete,
        crate::lifecycle::start,
        crate::lifecycle::pause,
        crate::lifecycle::resume,
        crate::lifecycle::complete,
        crate::lifecycle::archive,
        crate::participants::list,
        crate::participants::add,
        crate::participants::remove,
        crate::participants::reorder,
        crate::context::get,
        crate::context::put,
        crate::fork::fork,
        crate::export::export,
        crate::messages::list,
        crate::messages::post,
        crate::messages::get,
        crate::hands::raise,
        crate::hands::lower,
        crate::turns::advance,
        crate::turns::cancel,
    ),
    // Named by query parameters only, which do not register their schemas.
    components(schemas(crate::messages::Order)),
    tags(
        (name = "discussions", description = "Discussions: agents and people taking turns on a topic, streamed, persisted, paused, resumed and recovered."),
    ),
)]
struct DiscussionsApi;

/// The routes this component serves; meta merges them into the published document.
pub fn openapi() -> OpenApi {
    DiscussionsApi::openapi()
}
