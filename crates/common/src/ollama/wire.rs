//! Ollama's HTTP API, as its JSON reads: requests Arena sends and answers it gets.
//! Field names are Ollama's own (see its `docs/api.md`); fields Arena does not use
//! are left out, and unknown ones ignored, so a newer Ollama still parses.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::validate::Validator;

/// One chat message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Message {
    /// `system`, `user`, `assistant` or `tool`.
    pub role: String,
    pub content: String,
}

/// Generation parameters (Ollama's `options`). Absent: the model's default.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Options {
    /// Randomness, 0 to 2; 0 always picks the likeliest token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    /// Nucleus sampling, 0 to 1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f32>,
    /// Sample among the k likeliest tokens, 0 (off) to 1000.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_k: Option<u32>,
    /// Penalty for repeating tokens, 0 to 2 (1: none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repeat_penalty: Option<f32>,
    /// The same seed and input give the same output.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    /// Context window in tokens, 256 to 1,048,576.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub num_ctx: Option<u32>,
    /// The most tokens to generate, 1 to 1,048,576.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub num_predict: Option<u32>,
    /// Generation stops before any of these (at most 8, 1 to 100 characters each).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop: Option<Vec<String>>,
}

/// The largest context window and output length accepted.
pub const MAX_TOKENS: u32 = 1_048_576;

impl Options {
    /// `422 invalid_parameters` naming every option out of its range.
    pub fn check(&self) -> Result<(), crate::Problem> {
        self.check_named("options")
    }

    /// [`check`](Self::check) for options a request body holds under another name:
    /// `check_named("participants[1].parameters")` names an out-of-range temperature
    /// `participants[1].parameters.temperature`.
    pub fn check_named(&self, field: impl std::fmt::Display) -> Result<(), crate::Problem> {
        let mut v = Validator::default();
        v.nested(field, |v| self.check_fields(v));
        v.finish_as(crate::ProblemCode::InvalidParameters)
    }

    /// Adds every out-of-range option to `v`, as `options.<name>`.
    pub fn check_into(&self, v: &mut Validator) {
        v.nested("options", |v| self.check_fields(v));
    }

    /// Adds every out-of-range option to `v`, named by the option alone (inside
    /// [`Validator::nested`] for the path).
    fn check_fields(&self, v: &mut Validator) {
        if let Some(temperature) = self.temperature {
            v.range("temperature", temperature, 0.0..=2.0);
        }
        if let Some(top_p) = self.top_p {
            v.range("top_p", top_p, 0.0..=1.0);
        }
        if let Some(top_k) = self.top_k {
            v.range("top_k", top_k, 0..=1000);
        }
        if let Some(penalty) = self.repeat_penalty {
            v.range("repeat_penalty", penalty, 0.0..=2.0);
        }
        if let Some(num_ctx) = self.num_ctx {
            v.range("num_ctx", num_ctx, 256..=MAX_TOKENS);
        }
        if let Some(num_predict) = self.num_predict {
            v.range("num_predict", num_predict, 1..=MAX_TOKENS);
        }
        if let Some(stop) = &self.stop {
            v.length("stop", stop, 0..=8);
            for (n, text) in stop.iter().enumerate() {
                v.length(format_args!("stop[{n}]"), text, 1..=100);
            }
        }
    }
}

/// The rule for a model name a client gives (an agent's model, a participant's
/// override): 1 to 200 characters, no spaces or control characters. Whether the
/// model is installed is Ollama's to say when it is called.
pub fn check_model_name(v: &mut Validator, field: impl std::fmt::Display, model: &str) {
    let field = field.to_string();
    v.length(&field, model, 1..=200);
    v.check(
        &field,
        !model.chars().any(|c| c.is_whitespace() || c.is_control()),
        "must not contain spaces or control characters",
    );
}

/// `POST /api/chat`.
#[derive(Debug, Serialize)]
pub struct ChatRequest<'a> {
    pub model: &'a str,
    pub messages: &'a [Message],
    pub stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub options: Option<&'a Options>,
}

/// One line of a streamed chat answer; the last has `done: true` and the figures.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ChatChunk {
    #[serde(default)]
    pub message: Option<Message>,
    #[serde(default)]
    pub done: bool,
    /// `stop`, `length`, ...
    #[serde(default)]
    pub done_reason: Option<String>,
    /// Prompt tokens evaluated.
    #[serde(default)]
    pub prompt_eval_count: Option<u32>,
    /// Tokens generated.
    #[serde(default)]
    pub eval_count: Option<u32>,
    /// Nanoseconds, all of it.
    #[serde(default)]
    pub total_duration: Option<u64>,
    #[serde(default)]
    pub load_duration: Option<u64>,
    #[serde(default)]
    pub prompt_eval_duration: Option<u64>,
    #[serde(default)]
    pub eval_duration: Option<u64>,
    /// Set instead of the rest when generation failed part-way.
    #[serde(default)]
    pub error: Option<String>,
}

/// `POST /api/embed`.
#[derive(Debug, Serialize)]
pub struct EmbedRequest<'a> {
    pub model: &'a str,
    pub input: &'a [String],
}

#[derive(Debug, Clone, Deserialize)]
pub struct EmbedResponse {
    pub embeddings: Vec<Vec<f32>>,
    #[serde(default)]
    pub prompt_eval_count: Option<u32>,
    #[serde(default)]
    pub total_duration: Option<u64>,
}

/// What `GET /api/tags` and `GET /api/ps` say of a model's make-up.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ModelDetails {
    #[serde(default)]
    pub format: Option<String>,
    #[serde(default)]
    pub family: Option<String>,
    #[serde(default)]
    pub families: Option<Vec<String>>,
    /// e.g. `8.0B`.
    #[serde(default)]
    pub parameter_size: Option<String>,
    /// e.g. `Q4_K_M`.
    #[serde(default)]
    pub quantization_level: Option<String>,
}

/// `GET /api/tags`.
#[derive(Debug, Clone, Deserialize)]
pub struct Tags {
    pub models: Vec<InstalledModel>,
}

/// One installed model.
#[derive(Debug, Clone, Deserialize)]
pub struct InstalledModel {
    pub name: String,
    #[serde(default)]
    pub size: u64,
    #[serde(default)]
    pub digest: Option<String>,
    #[serde(default)]
    pub modified_at: Option<String>,
    #[serde(default)]
    pub details: ModelDetails,
}

/// `POST /api/show`: what Arena reads of it.
#[derive(Debug, Clone, Deserialize)]
pub struct Show {
    #[serde(default)]
    pub details: ModelDetails,
    /// GGUF metadata, e.g. `"llama.context_length": 131072`.
    #[serde(default)]
    pub model_info: serde_json::Map<String, serde_json::Value>,
    /// `completion`, `embedding`, `tools`, ...
    #[serde(default)]
    pub capabilities: Vec<String>,
}

impl Show {
    /// The context length the model was trained with: `<architecture>.context_length`.
    pub fn context_length(&self) -> Option<u64> {
        let architecture = self.model_info.get("general.architecture")?.as_str()?;
        self.model_info
            .get(&format!("{architecture}.context_length"))?
            .as_u64()
    }
}

/// `GET /api/ps`.
#[derive(Debug, Clone, Deserialize)]
pub struct Running {
    pub models: Vec<LoadedModel>,
}

/// A model loaded in memory.
#[derive(Debug, Clone, Deserialize)]
pub struct LoadedModel {
    pub name: String,
    #[serde(default)]
    pub size: u64,
    #[serde(default)]
    pub size_vram: u64,
    #[serde(default)]
    pub expires_at: Option<String>,
}

/// `GET /api/version`.
#[derive(Debug, Clone, Deserialize)]
pub struct Version {
    pub version: String,
}

/// One line of `POST /api/pull`'s progress.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PullProgress {
    #[serde(default)]
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// An error answer: `{"error": "..."}`.
#[derive(Debug, Clone, Deserialize)]
pub struct ErrorBody {
    pub error: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_out_of_range_are_named_field_by_field() {
        let options: Options = serde_json::from_value(serde_json::json!({
            "temperature": 3.0, "top_p": -0.1, "num_ctx": 10, "stop": ["", "ok"]
        }))
        .unwrap();
        let problem = options.check().unwrap_err();
        assert_eq!(problem.status(), http::StatusCode::UNPROCESSABLE_ENTITY);
        let fields: Vec<&str> = problem.errors().iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "options.temperature",
                "options.top_p",
                "options.num_ctx",
                "options.stop[0]"
            ]
        );
    }

    #[test]
    fn options_under_another_name_are_named_under_it() {
        let options = Options {
            top_k: Some(1001),
            stop: Some(vec![String::new()]),
            ..Options::default()
        };
        let problem = options
            .check_named("participants[1].parameters")
            .unwrap_err();
        assert_eq!(problem.status(), http::StatusCode::UNPROCESSABLE_ENTITY);
        let fields: Vec<&str> = problem.errors().iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "participants[1].parameters.top_k",
                "participants[1].parameters.stop[0]"
            ]
        );
        assert!(Options::default().check_named("parameters").is_ok());
    }

    #[test]
    fn a_model_name_is_short_and_has_no_spaces() {
        let named = |model: &str| {
            let mut v = Validator::default();
            check_model_name(&mut v, "model", model);
            v.is_valid()
        };
        assert!(named("llama3.2:1b"));
        assert!(!named(""));
        assert!(!named("llama 3"));
        assert!(!named(&"m".repeat(201)));
    }

    #[test]
    fn unset_options_are_left_out_of_the_request() {
        let options = Options {
            temperature: Some(0.0),
            ..Options::default()
        };
        assert_eq!(
            serde_json::to_value(&options).unwrap(),
            serde_json::json!({ "temperature": 0.0 })
        );
    }

    #[test]
    fn context_length_is_read_under_the_models_architecture() {
        let show: Show = serde_json::from_value(serde_json::json!({
            "details": { "family": "llama" },
            "model_info": { "general.architecture": "llama", "llama.context_length": 131072 },
            "capabilities": ["completion"],
            "modelfile": "ignored"
        }))
        .unwrap();
        assert_eq!(show.context_length(), Some(131072));
    }

    #[test]
    fn a_final_chat_line_carries_the_figures() {
        let chunk: ChatChunk = serde_json::from_str(
            r#"{"model":"m","created_at":"x","message":{"role":"assistant","content":""},
                "done":true,"done_reason":"stop","prompt_eval_count":26,"eval_count":290,
                "total_duration":4883583458,"eval_duration":4709213000}"#,
        )
        .unwrap();
        assert!(chunk.done);
        assert_eq!(
            (chunk.prompt_eval_count, chunk.eval_count),
            (Some(26), Some(290))
        );
    }
}
