//! What this component declares about its routes, for the published OpenAPI document.

use utoipa::OpenApi as _;
use utoipa::openapi::OpenApi;

#[derive(utoipa::OpenApi)]
#[openapi(
    paths(
        crate::models::list,
        crate::models::get,
        crate::models::pull,
        crate::models::delete,
        crate::status::get,
        crate::chat::post,
        crate::embeddings::post,
        crate::tokens::count,
        crate::usage::get,
    ),
    tags((name = "ai", description = "Language models through Ollama: models, streamed chat, embeddings, token counts and usage.")),
)]
struct AiApi;

/// The routes this component serves; meta merges them into the published document.
pub fn openapi() -> OpenApi {
    AiApi::openapi()
}
