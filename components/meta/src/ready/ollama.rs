//! The Ollama probe: its version, at the Spin variable `ollama_url`, through the
//! same client the AI component uses.

use arena_common::ollama::Ollama;

use super::Verdict;

pub(super) async fn probe<B>(req: &http::Request<B>) -> Verdict {
    let ollama = Ollama::from_variables()
        .await
        .map_err(|problem| problem.cause().unwrap_or(problem.detail()).to_owned())?;
    ollama
        .version(req)
        .await
        .map(drop)
        .map_err(|error| error.to_string())
}
