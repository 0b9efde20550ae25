//! Ollama's HTTP API: the routes, and what the handlers share. One module per area, as in
//! Ollama's documentation: models (list, show, running, pull, delete), generation (chat,
//! generate), embeddings.

mod embed;
mod generate;
mod models;

pub use models::OLLAMA_VERSION;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::clock::{self, KeepAlive};
use crate::http::{self, ApiError, HttpResponse};
use crate::model::Model;
use crate::state::{Conditions, Shared};

/// How long a model stays loaded when the request does not say (Ollama's default, 5m).
const DEFAULT_KEEP_ALIVE: Duration = Duration::from_secs(5 * 60);

/// The context size a model is loaded with when `options.num_ctx` does not say
/// (Ollama's default).
const DEFAULT_NUM_CTX: u64 = 4096;

/// What a handler gets besides the request body.
pub(crate) struct Ctx {
    pub shared: Arc<Shared>,
    /// When the request arrived: durations in replies are measured from here.
    pub started: Instant,
    pub conditions: Conditions,
}

impl Ctx {
    /// The installed model `name` means, if any.
    fn find(&self, name: &str) -> Option<Model> {
        let state = self.shared.state();
        state.find(name).map(|installed| installed.model.clone())
    }

    /// The configured delay before each streamed token or progress line.
    async fn pause(&self) {
        if !self.conditions.token_delay.is_zero() {
            tokio::time::sleep(self.conditions.token_delay).await;
        }
    }
}

/// The endpoints the fake serves.
enum Route {
    Root,
    Version,
    Tags,
    Ps,
    Show,
    Pull,
    Delete,
    Chat,
    Generate,
    Embed,
}

impl Route {
    fn find(path: &str) -> Option<Route> {
        Some(match path {
            "/" => Route::Root,
            "/api/version" => Route::Version,
            "/api/tags" => Route::Tags,
            "/api/ps" => Route::Ps,
            "/api/show" => Route::Show,
            "/api/pull" => Route::Pull,
            "/api/delete" => Route::Delete,
            "/api/chat" => Route::Chat,
            "/api/generate" => Route::Generate,
            "/api/embed" => Route::Embed,
            _ => return None,
        })
    }

    fn accepts(&self, method: &Method) -> bool {
        match self {
            Route::Root | Route::Version | Route::Tags => {
                method == Method::GET || method == Method::HEAD
            }
            Route::Ps => method == Method::GET,
            Route::Delete => method == Method::DELETE,
            Route::Show | Route::Pull | Route::Chat | Route::Generate | Route::Embed => {
                method == Method::POST
            }
        }
    }
}

/// Answers one request. An unknown path is Gin's plain-text 404, a known path with the
/// wrong method its 405 (Ollama turns `HandleMethodNotAllowed` on).
pub(crate) async fn route(
    ctx: Ctx,
    method: &Method,
    path: &str,
    body: Bytes,
) -> Result<HttpResponse, ApiError> {
    let Some(route) = Route::find(path) else {
        return Ok(http::text(StatusCode::NOT_FOUND, "404 page not found"));
    };
    if !route.accepts(method) {
        return Ok(http::text(
            StatusCode::METHOD_NOT_ALLOWED,
            "405 method not allowed",
        ));
    }
    match route {
        Route::Root => Ok(http::text(StatusCode::OK, "Ollama is running")),
        Route::Version => Ok(models::version()),
        Route::Tags => Ok(models::tags(&ctx)),
        Route::Ps => Ok(models::ps(&ctx)),
        Route::Show => models::show(&ctx, &body),
        Route::Pull => models::pull(ctx, &body).await,
        Route::Delete => models::delete(&ctx, &body),
        Route::Chat => generate::chat(ctx, &body).await,
        Route::Generate => generate::generate(ctx, &body).await,
        Route::Embed => embed::embed(&ctx, &body),
    }
}

/// The request body as `T`. An empty body is Ollama's "missing request body".
fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request("missing request body"));
    }
    Ok(serde_json::from_slice(body)?)
}

/// The model options the fake acts on; the rest (`temperature`, `top_p`, `seed`, ...) are
/// accepted, recorded with the request, and make no difference to a scripted reply.
#[derive(Default, Deserialize)]
struct Options {
    num_predict: Option<i64>,
    stop: Option<Vec<String>>,
    num_ctx: Option<u64>,
}

/// `keep_alive` as clients send it: seconds, or a Go duration string.
#[derive(Deserialize)]
#[serde(untagged)]
enum KeepAliveField {
    Seconds(f64),
    Text(String),
}

/// How long the model stays loaded after this request; a string that is not a Go duration
/// is refused as Go's JSON decoding refuses it.
fn keep_alive(field: Option<KeepAliveField>) -> Result<KeepAlive, ApiError> {
    match field {
        None => Ok(KeepAlive::For(DEFAULT_KEEP_ALIVE)),
        Some(KeepAliveField::Seconds(seconds)) => Ok(clock::keep_alive_seconds(seconds)),
        Some(KeepAliveField::Text(text)) => clock::parse_go_duration(&text)
            .ok_or_else(|| ApiError::bad_request(format!("time: invalid duration {text:?}"))),
    }
}

/// Whether `keep_alive` asks to unload the model now (`0`).
fn is_unload(keep_alive: &KeepAlive) -> bool {
    matches!(keep_alive, KeepAlive::For(duration) if duration.is_zero())
}

/// Marks `model` as loaded, as answering a request with it does.
fn load(ctx: &Ctx, model: &Model, keep_alive: KeepAlive, options: &Options) {
    ctx.shared.state().load(
        model,
        keep_alive,
        options.num_ctx.unwrap_or(DEFAULT_NUM_CTX),
    );
}

/// `name` quoted as Go's `%q` quotes it, for messages like `"all-minilm" does not support chat`.
fn quoted(name: &str) -> String {
    serde_json::Value::from(name).to_string()
}

/// `details`, as `/api/tags`, `/api/show` and `/api/ps` describe a model.
#[derive(Serialize)]
struct Details<'a> {
    parent_model: &'a str,
    format: &'a str,
    family: &'a str,
    families: [&'a str; 1],
    parameter_size: &'a str,
    quantization_level: &'a str,
}

impl<'a> From<&'a Model> for Details<'a> {
    fn from(model: &'a Model) -> Details<'a> {
        Details {
            parent_model: "",
            format: "gguf",
            family: &model.family,
            families: [&model.family],
            parameter_size: &model.parameter_size,
            quantization_level: &model.quantization_level,
        }
    }
}
