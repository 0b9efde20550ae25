//! Generation: `POST /api/chat` and `POST /api/generate`, streamed as NDJSON (the default)
//! or answered as one object (`"stream": false`).

use std::time::{Instant, SystemTime};

use hyper::StatusCode;
use serde::{Deserialize, Serialize};

use super::{Ctx, KeepAliveField, Options, is_unload, keep_alive, load, parse, quoted};
use crate::clock::rfc3339;
use crate::http::{self, ApiError, Cut, HttpResponse, Lines};
use crate::model::{Model, ModelKind};
use crate::reply::{Generation, Reply, count_tokens, words};
use crate::state::GenerationGuard;
use crate::vectors::token_id;

#[derive(Deserialize)]
struct ChatRequest {
    #[serde(default)]
    model: String,
    #[serde(default)]
    messages: Vec<Message>,
    stream: Option<bool>,
    options: Option<Options>,
    keep_alive: Option<KeepAliveField>,
}

#[derive(Deserialize)]
struct Message {
    role: String,
    #[serde(default)]
    content: String,
}

#[derive(Deserialize)]
struct GenerateRequest {
    #[serde(default)]
    model: String,
    #[serde(default)]
    prompt: String,
    #[serde(default)]
    system: String,
    #[serde(default)]
    raw: bool,
    stream: Option<bool>,
    options: Option<Options>,
    keep_alive: Option<KeepAliveField>,
}

/// `POST /api/chat`. Checks run in Ollama's order: the body, the model's existence, an
/// unload request, the model's ability to chat.
pub(super) async fn chat(ctx: Ctx, body: &[u8]) -> Result<HttpResponse, ApiError> {
    let request: ChatRequest = parse(body)?;
    let keep_alive = keep_alive(request.keep_alive)?;
    if request.model.is_empty() {
        return Err(ApiError::bad_request("model is required"));
    }
    let model = find(&ctx, &request.model)?;
    let endpoint = Endpoint::Chat;
    if request.messages.is_empty() && is_unload(&keep_alive) {
        ctx.shared.state().unload(&model);
        return Ok(endpoint.bare(&request.model, "unload"));
    }
    if model.kind != ModelKind::Chat {
        let message = format!("{} does not support chat", quoted(&request.model));
        return Err(ApiError::bad_request(message));
    }
    let options = request.options.unwrap_or_default();
    load(&ctx, &model, keep_alive, &options);
    let loaded_at = Instant::now();
    if request.messages.is_empty() {
        return Ok(endpoint.bare(&request.model, "load"));
    }
    let last_user = request
        .messages
        .iter()
        .rev()
        .find(|message| message.role == "user")
        .or(request.messages.last())
        .map_or("", |message| message.content.as_str());
    let prompt_words = request
        .messages
        .iter()
        .map(|message| count_tokens(&message.content))
        .sum();
    let generation = generation(&ctx, &model, last_user, &options, prompt_words);
    let answer = Answer::new(ctx, endpoint, request.model, generation, loaded_at);
    answer.send(request.stream != Some(false)).await
}

/// `POST /api/generate`: as chat, with the prompt as the one user message. An unknown
/// model is "not found" without the pulling hint here, as in Ollama.
pub(super) async fn generate(ctx: Ctx, body: &[u8]) -> Result<HttpResponse, ApiError> {
    let request: GenerateRequest = parse(body)?;
    let keep_alive = keep_alive(request.keep_alive)?;
    let model = find(&ctx, &request.model)?;
    if request.prompt.is_empty() && is_unload(&keep_alive) {
        ctx.shared.state().unload(&model);
        return Ok(Endpoint::Generate { context: None }.bare(&request.model, "unload"));
    }
    if model.kind != ModelKind::Chat {
        let message = format!("{} does not support generate", quoted(&request.model));
        return Err(ApiError::bad_request(message));
    }
    let options = request.options.unwrap_or_default();
    load(&ctx, &model, keep_alive, &options);
    let loaded_at = Instant::now();
    if request.prompt.is_empty() {
        return Ok(Endpoint::Generate { context: None }.bare(&request.model, "load"));
    }
    let prompt_words = count_tokens(&request.system) + count_tokens(&request.prompt);
    let generation = generation(&ctx, &model, &request.prompt, &options, prompt_words);
    // `context` encodes the conversation so far; raw prompts get none, as in Ollama.
    let context = (!request.raw).then(|| {
        words(&request.prompt)
            .iter()
            .chain(&generation.tokens)
            .map(|token| token_id(token))
            .collect()
    });
    let answer = Answer::new(
        ctx,
        Endpoint::Generate { context },
        request.model,
        generation,
        loaded_at,
    );
    answer.send(request.stream != Some(false)).await
}

/// The installed model a generation request names, or Ollama's 404.
fn find(ctx: &Ctx, name: &str) -> Result<Model, ApiError> {
    ctx.find(name)
        .ok_or_else(|| ApiError::not_found(format!("model '{name}' not found")))
}

/// What `model` says to `user_text`: the test's script for it, or the echo.
fn generation(
    ctx: &Ctx,
    model: &Model,
    user_text: &str,
    options: &Options,
    prompt_words: usize,
) -> Generation {
    let scripted = ctx.shared.state().script(model);
    let reply = scripted.unwrap_or_else(|| Reply::echo(user_text));
    let stop = options.stop.as_deref().unwrap_or_default();
    Generation::new(reply, stop, options.num_predict, prompt_words)
}

/// Which endpoint's objects to write.
enum Endpoint {
    Chat,
    Generate { context: Option<Vec<u32>> },
}

/// A generation's figures, in the final object: durations in nanoseconds, measured.
#[derive(Clone, Copy, Serialize)]
struct Stats {
    total_duration: u64,
    load_duration: u64,
    prompt_eval_count: u32,
    prompt_eval_duration: u64,
    eval_count: u32,
    eval_duration: u64,
}

/// How an object ends the reply: why, and with which figures (none for load and unload).
#[derive(Clone, Copy)]
struct Ending<'a> {
    reason: &'a str,
    stats: Option<Stats>,
}

#[derive(Serialize)]
struct AssistantMessage<'a> {
    role: &'static str,
    content: &'a str,
}

#[derive(Serialize)]
struct ChatObject<'a> {
    model: &'a str,
    created_at: String,
    message: AssistantMessage<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    done_reason: Option<&'a str>,
    done: bool,
    #[serde(flatten)]
    stats: Option<Stats>,
}

#[derive(Serialize)]
struct GenerateObject<'a> {
    model: &'a str,
    created_at: String,
    response: &'a str,
    done: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    done_reason: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    context: Option<&'a [u32]>,
    #[serde(flatten)]
    stats: Option<Stats>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Object<'a> {
    Chat(ChatObject<'a>),
    Generate(GenerateObject<'a>),
}

impl Endpoint {
    /// One object: a token (`ending` none) or the last one.
    fn object<'a>(
        &'a self,
        model: &'a str,
        content: &'a str,
        ending: Option<Ending<'a>>,
    ) -> Object<'a> {
        let created_at = rfc3339(SystemTime::now());
        let done_reason = ending.map(|ending| ending.reason);
        let stats = ending.and_then(|ending| ending.stats);
        match self {
            Endpoint::Chat => Object::Chat(ChatObject {
                model,
                created_at,
                message: AssistantMessage {
                    role: "assistant",
                    content,
                },
                done_reason,
                done: ending.is_some(),
                stats,
            }),
            Endpoint::Generate { context } => Object::Generate(GenerateObject {
                model,
                created_at,
                response: content,
                done: ending.is_some(),
                done_reason,
                context: stats.and(context.as_deref()),
                stats,
            }),
        }
    }

    /// The single object answering a load or unload request (no messages or prompt).
    fn bare(&self, model: &str, reason: &str) -> HttpResponse {
        let ending = Ending {
            reason,
            stats: None,
        };
        http::json(StatusCode::OK, &self.object(model, "", Some(ending)))
    }
}

/// A generation being answered.
struct Answer {
    ctx: Ctx,
    endpoint: Endpoint,
    /// The model as the request named it, which is what Ollama echoes.
    model: String,
    generation: Generation,
    loaded_at: Instant,
    guard: GenerationGuard,
}

impl Answer {
    fn new(
        ctx: Ctx,
        endpoint: Endpoint,
        model: String,
        generation: Generation,
        loaded_at: Instant,
    ) -> Answer {
        let guard = GenerationGuard::new(ctx.shared.clone());
        Answer {
            ctx,
            endpoint,
            model,
            generation,
            loaded_at,
            guard,
        }
    }

    /// Streams the reply from a task of its own, or waits for all of it and answers once.
    /// Each token takes the configured delay either way.
    async fn send(self, streamed: bool) -> Result<HttpResponse, ApiError> {
        if streamed {
            let (lines, response) = http::ndjson();
            tokio::spawn(self.stream(lines));
            return Ok(response);
        }
        let evaluating = Instant::now();
        let cut_after = self.ctx.conditions.cut_after();
        let tokens = cut_after.map_or(self.generation.tokens.len(), |limit| {
            limit.min(self.generation.tokens.len())
        });
        for _ in 0..tokens {
            self.ctx.pause().await;
        }
        if cut_after.is_some() {
            self.guard.cut();
            return Err(ApiError::Hangup);
        }
        let content = self.generation.content();
        let stats = self.stats(evaluating);
        let ending = self.ending(stats);
        let response = http::json(
            StatusCode::OK,
            &self.endpoint.object(&self.model, &content, Some(ending)),
        );
        self.guard.completed();
        Ok(response)
    }

    /// Sends the tokens, then the final object. A failed send means the client went away:
    /// the task ends and the guard, dropped unsettled, counts a cancelled generation.
    async fn stream(self, lines: Lines) {
        let evaluating = Instant::now();
        let cut_after = self.ctx.conditions.cut_after();
        let tokens = &self.generation.tokens;
        let sent = cut_after.map_or(tokens.len(), |limit| limit.min(tokens.len()));
        for token in &tokens[..sent] {
            self.ctx.pause().await;
            let line = http::line(&self.endpoint.object(&self.model, token, None));
            if lines.send(Ok(line)).await.is_err() {
                return;
            }
        }
        if cut_after.is_some() {
            self.guard.cut();
            let _ = lines.send(Err(Cut)).await;
            return;
        }
        let stats = self.stats(evaluating);
        let line = http::line(
            &self
                .endpoint
                .object(&self.model, "", Some(self.ending(stats))),
        );
        if lines.send(Ok(line)).await.is_ok() {
            self.guard.completed();
        }
    }

    fn ending(&self, stats: Stats) -> Ending<'_> {
        Ending {
            reason: self.generation.done_reason,
            stats: Some(stats),
        }
    }

    /// The figures of a generation whose tokens started at `evaluating`, measured now.
    /// Each duration is at least 1 ns: Ollama omits zero ones, and a real model never
    /// takes no time.
    fn stats(&self, evaluating: Instant) -> Stats {
        let nanos =
            |from: Instant, to: Instant| (to - from).as_nanos().clamp(1, u64::MAX.into()) as u64;
        let now = Instant::now();
        Stats {
            total_duration: nanos(self.ctx.started, now),
            load_duration: nanos(self.ctx.started, self.loaded_at),
            prompt_eval_count: self.generation.prompt_eval_count,
            prompt_eval_duration: nanos(self.loaded_at, evaluating),
            eval_count: self.generation.eval_count(),
            eval_duration: nanos(evaluating, now),
        }
    }
}
