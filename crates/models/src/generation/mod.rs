//! Text generation with SmolLM2-135M-Instruct (GGUF), run by candle on the CPU.
//!
//! [`ChatModel`] holds the weights and the tokenizer, both read from the one
//! GGUF file; every [`ChatModel::generate`] call runs on its own copy of the
//! model state, so one `ChatModel` serves concurrent requests.

mod generate;
mod sampling;
mod stream;
mod template;
mod threads;
mod tokenizer;
mod weights;

use std::path::Path;

use anyhow::{Context, Result};
use candle_transformers::models::quantized_llama::ModelWeights;
use serde::{Deserialize, Serialize};

pub use self::template::OLLAMA_TEMPLATE;
pub use self::threads::pin_cpu_threads;
use self::tokenizer::Tokenizer;

/// A loaded chat model: `Send + Sync`, meant to be shared in an `Arc`.
pub struct ChatModel {
    /// Never run itself: each generation clones it (the clone shares the
    /// weights, which are reference-counted) to get a fresh KV cache.
    weights: ModelWeights,
    tokenizer: Tokenizer,
    description: ModelDescription,
}

/// What `/api/show` and `/api/tags` say about the model.
#[derive(Debug, Clone)]
pub struct ModelDescription {
    /// `general.architecture`, e.g. "llama".
    pub architecture: String,
    /// Summed from the tensor shapes.
    pub parameter_count: u64,
    /// The file's quantization ("Q4_1"), although the weights run as f32.
    pub quantization: String,
    pub context_length: usize,
    pub embedding_length: usize,
    pub file_size: u64,
    /// The GGUF metadata as Ollama's `/api/show` `model_info` shows it.
    pub metadata: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
    Tool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: Role,
    pub content: String,
}

/// Ollama's sampling options, with Ollama's defaults.
#[derive(Debug, Clone)]
pub struct SamplingOptions {
    /// `<= 0` (or NaN) means greedy decoding.
    pub temperature: f64,
    /// `>= 1` disables nucleus sampling.
    pub top_p: f64,
    /// `0` disables top-k.
    pub top_k: usize,
    pub seed: u64,
    /// `None`: until the context is full.
    pub num_predict: Option<usize>,
    /// Context size: prompt plus generated tokens (capped at the model's).
    pub num_ctx: usize,
    pub stop: Vec<String>,
    /// `1.0` disables the penalty.
    pub repeat_penalty: f32,
    /// How many of the latest tokens the penalty looks at; `0` disables it.
    pub repeat_last_n: usize,
}

impl Default for SamplingOptions {
    fn default() -> Self {
        Self {
            temperature: 0.8,
            top_p: 0.9,
            top_k: 40,
            seed: random_seed(),
            num_predict: None,
            num_ctx: 4096,
            stop: Vec::new(),
            repeat_penalty: 1.1,
            repeat_last_n: 64,
        }
    }
}

/// A fresh random seed: std's `RandomState` is randomly keyed per process and
/// per instance, which spares a dependency on an RNG crate.
fn random_seed() -> u64 {
    use std::hash::BuildHasher;
    std::collections::hash_map::RandomState::new().hash_one(0u8)
}

/// The outcome of [`ChatModel::generate`].
#[derive(Debug, Clone)]
pub struct Generation {
    pub prompt_tokens: usize,
    /// Tokens passed to `on_token` (the end-of-turn token is not one of them).
    pub generated_tokens: usize,
    /// Time to evaluate the prompt.
    pub prompt_duration: std::time::Duration,
    /// Time spent generating tokens after it.
    pub generation_duration: std::time::Duration,
    pub done_reason: DoneReason,
    /// Text held back from `on_token` (an incomplete UTF-8 sequence, or what
    /// might have begun a stop sequence) and released at the end.
    pub tail: String,
    /// Prompt and generated token ids (not the end-of-turn token): Ollama's
    /// `/api/generate` `context`.
    pub context: Vec<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DoneReason {
    /// End of turn, or a stop sequence.
    Stop,
    /// `num_predict` tokens generated, or the context is full.
    Length,
    /// `on_token` returned `ControlFlow::Break`.
    Cancelled,
}

impl DoneReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stop => "stop",
            Self::Length => "length",
            Self::Cancelled => "cancelled",
        }
    }
}

/// Why [`ChatModel::generate`] failed: the first three are the caller's
/// (an HTTP 400), `Model` is ours.
#[derive(Debug)]
pub enum GenerateError {
    EmptyPrompt,
    /// The prompt leaves no room to generate: `tokens >= limit`, where `limit`
    /// is `num_ctx` capped at the model's context length.
    PromptTooLong {
        tokens: usize,
        limit: usize,
    },
    UnknownToken {
        id: u32,
    },
    Model(anyhow::Error),
}

impl std::fmt::Display for GenerateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::EmptyPrompt => f.write_str("the prompt is empty"),
            Self::PromptTooLong { tokens, limit } => write!(
                f,
                "the prompt has {tokens} tokens, the context only {limit}"
            ),
            Self::UnknownToken { id } => write!(f, "token id {id} is not in the vocabulary"),
            Self::Model(e) => write!(f, "generation failed: {e:#}"),
        }
    }
}

impl std::error::Error for GenerateError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Model(e) => Some(e.as_ref()),
            _ => None,
        }
    }
}

impl From<candle_core::Error> for GenerateError {
    fn from(e: candle_core::Error) -> Self {
        Self::Model(e.into())
    }
}

impl ChatModel {
    /// Reads the GGUF: weights (dequantized to f32), tokenizer and description.
    pub fn load(gguf: &Path) -> Result<ChatModel> {
        let file_size = std::fs::metadata(gguf)
            .with_context(|| format!("reading {}", gguf.display()))?
            .len();
        let (content, weights) =
            weights::load(gguf).with_context(|| format!("loading {}", gguf.display()))?;
        let tokenizer = Tokenizer::from_gguf(&content.metadata)
            .with_context(|| format!("tokenizer of {}", gguf.display()))?;
        let description = weights::describe(&content, file_size)?;
        Ok(ChatModel {
            weights,
            tokenizer,
            description,
        })
    }

    /// The description alone, from the GGUF's header: no weights are read.
    pub fn describe(gguf: &Path) -> Result<ModelDescription> {
        let file =
            std::fs::File::open(gguf).with_context(|| format!("reading {}", gguf.display()))?;
        let file_size = file.metadata()?.len();
        let content =
            candle_core::quantized::gguf_file::Content::read(&mut std::io::BufReader::new(file))
                .with_context(|| format!("reading the header of {}", gguf.display()))?;
        weights::describe(&content, file_size)
    }

    /// The GGUF's context length, capped at what candle's llama supports.
    pub fn context_length(&self) -> usize {
        self.description.context_length
    }

    pub fn description(&self) -> &ModelDescription {
        &self.description
    }

    /// SmolLM2's ChatML prompt, ending with the assistant's turn opened.
    pub fn render_chat(&self, messages: &[ChatMessage]) -> String {
        template::render(messages)
    }

    /// Special tokens such as `<|im_start|>` become their single ids.
    pub fn tokenize(&self, text: &str) -> Result<Vec<u32>> {
        self.tokenizer.encode(text)
    }

    /// Ids outside the vocabulary are skipped; invalid UTF-8 becomes U+FFFD.
    pub fn detokenize(&self, ids: &[u32]) -> String {
        self.tokenizer.decode(ids)
    }
}
