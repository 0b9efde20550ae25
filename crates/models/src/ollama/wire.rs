//! Ollama's request and response bodies, as the embedded server reads and
//! writes them. Fields the embedded models cannot honour are read so that a
//! request using them is refused by name rather than silently ignored.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::generation::Role;

/// `POST /api/chat`.
#[derive(Debug, Deserialize)]
pub struct ChatRequest {
    #[serde(default)]
    pub model: String,
    #[serde(default)]
    pub messages: Vec<Message>,
    pub stream: Option<bool>,
    #[serde(default)]
    pub options: Options,
    pub keep_alive: Option<Value>,
    pub format: Option<Value>,
    pub tools: Option<Vec<Value>>,
    pub think: Option<Value>,
}

#[derive(Debug, Deserialize)]
pub struct Message {
    pub role: Role,
    #[serde(default)]
    pub content: String,
    pub images: Option<Vec<Value>>,
}

/// `POST /api/generate`.
#[derive(Debug, Deserialize)]
pub struct GenerateRequest {
    #[serde(default)]
    pub model: String,
    #[serde(default)]
    pub prompt: String,
    pub system: Option<String>,
    /// Token ids a previous answer returned, to continue that conversation.
    pub context: Option<Vec<u32>>,
    /// The prompt is already in the model's format: no template.
    #[serde(default)]
    pub raw: bool,
    pub stream: Option<bool>,
    #[serde(default)]
    pub options: Options,
    pub keep_alive: Option<Value>,
    pub suffix: Option<String>,
    pub template: Option<String>,
    pub format: Option<Value>,
    pub images: Option<Vec<Value>>,
    pub think: Option<Value>,
}

/// The generation options Ollama takes (a Modelfile's `PARAMETER`s); others
/// are ignored, as Ollama ignores options a model has no use for.
#[derive(Debug, Default, Deserialize)]
pub struct Options {
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub top_k: Option<i64>,
    pub seed: Option<i64>,
    pub num_predict: Option<i64>,
    pub num_ctx: Option<i64>,
    pub stop: Option<Vec<String>>,
    pub repeat_penalty: Option<f32>,
    pub repeat_last_n: Option<i64>,
}

/// `POST /api/embed`.
#[derive(Debug, Deserialize)]
pub struct EmbedRequest {
    #[serde(default)]
    pub model: String,
    #[serde(default)]
    pub input: Input,
    pub truncate: Option<bool>,
    /// Keep only the first `dimensions` of each vector (re-normalised).
    pub dimensions: Option<usize>,
    pub keep_alive: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Input {
    One(String),
    Many(Vec<String>),
}

impl Default for Input {
    fn default() -> Input {
        Input::Many(Vec::new())
    }
}

impl Input {
    pub fn into_texts(self) -> Vec<String> {
        match self {
            Input::One(text) if text.is_empty() => Vec::new(),
            Input::One(text) => vec![text],
            Input::Many(texts) => texts,
        }
    }
}

/// `POST /api/embeddings`, the older single-text form.
#[derive(Debug, Deserialize)]
pub struct EmbeddingsRequest {
    #[serde(default)]
    pub model: String,
    #[serde(default)]
    pub prompt: String,
}

/// `POST /api/show`, `/api/pull`, `DELETE /api/delete`: a model by name
/// (`name` is the older spelling).
#[derive(Debug, Deserialize)]
pub struct ModelRequest {
    pub model: Option<String>,
    pub name: Option<String>,
    pub stream: Option<bool>,
}

impl ModelRequest {
    pub fn model(&self) -> &str {
        self.model.as_deref().or(self.name.as_deref()).unwrap_or("")
    }
}

/// What `/api/tags`, `/api/ps` and `/api/show` say of a model's make-up.
#[derive(Debug, Serialize)]
pub struct Details {
    pub parent_model: &'static str,
    pub format: &'static str,
    pub family: &'static str,
    pub families: [&'static str; 1],
    pub parameter_size: &'static str,
    pub quantization_level: &'static str,
}

/// The statistics of a finished generation, on its last line.
#[derive(Debug, Serialize)]
pub struct Stats {
    pub done_reason: &'static str,
    pub total_duration: u64,
    pub load_duration: u64,
    pub prompt_eval_count: usize,
    pub prompt_eval_duration: u64,
    pub eval_count: usize,
    pub eval_duration: u64,
}
