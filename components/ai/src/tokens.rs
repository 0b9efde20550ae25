//! `POST /v1/ai/tokens/count`: how many tokens a text or a chat takes, counted
//! here with OpenAI's byte-pair encodings (tiktoken) rather than by a model.
//!
//! | Model | Encoding | `approximate` |
//! |---|---|---|
//! | `gpt-4o*`, `gpt-4.1*`, `gpt-4.5*`, `gpt-5*`, `gpt-oss*`, `o1*`, `o3*`, `o4*` | `o200k_base` | `false` |
//! | `gpt-4*`, `gpt-3.5*`, `text-embedding-3-*`, `text-embedding-ada-002` | `cl100k_base` | `false` |
//! | anything else (llama, qwen, mistral, gemma, ...), or none | `cl100k_base` | `true` |
//!
//! Open models each have their own tokenizer, which Ollama does not expose; an
//! encoding of a similar vocabulary size is within some percent of it, which is
//! what a budget check needs. A chat adds the framing of OpenAI's chat format:
//! [`TOKENS_PER_MESSAGE`] for each message and [`REPLY_PRIMING`] once, as OpenAI's
//! cookbook counts it; other models' templates frame messages similarly.
//!
//! The encoding is built for each request (no state outlives one): parsing its
//! vocabulary takes tens of milliseconds (`o200k_base` about twice `cl100k_base`),
//! small beside a model call but the bulk of this endpoint's time.

use arena_common::auth::Identity;
use arena_common::body::read_json;
use arena_common::ollama::Message;
use arena_common::problem::responses::{
    PayloadTooLarge, Unauthorized, UnsupportedMediaType, ValidationFailed,
};
use arena_common::validate::{Validate, Validator};
use arena_common::{Problem, json};
use http::StatusCode;
use serde::{Deserialize, Serialize};
use tiktoken_rs::CoreBPE;
use utoipa::ToSchema;

use crate::{Request, Response, plain};

/// The framing tokens around each message of a chat (`<|start|>{role}<|message|>`
/// ... `<|end|>`), beside those of its role and content.
const TOKENS_PER_MESSAGE: usize = 3;

/// The tokens that open the model's reply (`<|start|>assistant<|message|>`), once.
const REPLY_PRIMING: usize = 3;

/// The longest run of whitespace counted in one go. The encodings' pre-split
/// pattern backtracks through a whitespace run (`\s+(?!\S)`), and tiktoken panics
/// once a run nears a million characters; a longer run is cut into pieces counted
/// apart, which changes a count by at most a token per cut and never touches text
/// a person writes.
const MAX_WHITESPACE_RUN: usize = 4096;

/// What to count: a text, or a chat.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CountBody {
    /// The model the text is for, which picks the encoding; any name is accepted.
    /// 1 to 200 characters.
    model: Option<String>,
    /// A text. Give this or `messages`.
    text: Option<String>,
    /// A chat, counted with its framing. Give this or `text`.
    messages: Option<Vec<Message>>,
}

impl Validate for CountBody {
    fn validate(&self, v: &mut Validator) {
        if let Some(model) = &self.model {
            v.length("model", model, 1..=200);
        }
        match (&self.text, &self.messages) {
            (Some(_), Some(_)) => {
                v.error("text", "give text or messages, not both");
                v.error("messages", "give text or messages, not both");
            }
            (None, None) => {
                v.error("text", "give text or messages");
                v.error("messages", "give text or messages");
            }
            _ => {}
        }
    }
}

/// The count.
#[derive(Debug, PartialEq, Serialize, ToSchema)]
pub(crate) struct TokenCount {
    tokens: usize,
    /// The encoding counted with: `o200k_base` or `cl100k_base`.
    encoding: &'static str,
    /// `true` when the encoding is not the model's own, so the count is an
    /// estimate of what the model will see.
    approximate: bool,
}

/// One of OpenAI's encodings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Cl100kBase,
    O200kBase,
}

impl Encoding {
    fn name(self) -> &'static str {
        match self {
            Encoding::Cl100kBase => "cl100k_base",
            Encoding::O200kBase => "o200k_base",
        }
    }

    /// The encoding's tokenizer, built from the vocabulary compiled into the
    /// component.
    fn build(self) -> Result<CoreBPE, Problem> {
        let built = match self {
            Encoding::Cl100kBase => tiktoken_rs::cl100k_base(),
            Encoding::O200kBase => tiktoken_rs::o200k_base(),
        };
        built.map_err(|error| Problem::internal(format!("building {}: {error}", self.name())))
    }
}

/// The encoding for `model`, and whether it only approximates the model's own (see
/// the module table). A namespace (`openai/gpt-4o`) and case are ignored.
fn encoding_for(model: Option<&str>) -> (Encoding, bool) {
    const O200K: [&str; 8] = [
        "gpt-4o", "gpt-4.1", "gpt-4.5", "gpt-5", "gpt-oss", "o1", "o3", "o4",
    ];
    const CL100K: [&str; 4] = [
        "gpt-4",
        "gpt-3.5",
        "text-embedding-3-",
        "text-embedding-ada-002",
    ];
    let Some(model) = model else {
        return (Encoding::Cl100kBase, true);
    };
    let name = model
        .rsplit('/')
        .next()
        .unwrap_or(model)
        .to_ascii_lowercase();
    if O200K.iter().any(|prefix| name.starts_with(prefix)) {
        (Encoding::O200kBase, false)
    } else if CL100K.iter().any(|prefix| name.starts_with(prefix)) {
        (Encoding::Cl100kBase, false)
    } else {
        (Encoding::Cl100kBase, true)
    }
}

/// The tokens of a chat: each message's role and content, its framing, and the
/// reply's priming.
fn count_messages(bpe: &CoreBPE, messages: &[Message]) -> usize {
    let framed: usize = messages
        .iter()
        .map(|message| {
            TOKENS_PER_MESSAGE + count_text(bpe, &message.role) + count_text(bpe, &message.content)
        })
        .sum();
    framed + REPLY_PRIMING
}

/// The tokens of `text`. Text that looks like a special token (`<|endoftext|>`) is
/// counted as the ordinary text it is when a person sends it.
fn count_text(bpe: &CoreBPE, text: &str) -> usize {
    pieces(text)
        .into_iter()
        .map(|piece| bpe.count_ordinary(piece))
        .sum()
}

/// `text` cut inside every run of whitespace longer than [`MAX_WHITESPACE_RUN`]
/// characters; most text is one piece.
fn pieces(text: &str) -> Vec<&str> {
    let mut pieces = Vec::new();
    let (mut start, mut run) = (0, 0);
    for (at, c) in text.char_indices() {
        run = if c.is_whitespace() { run + 1 } else { 0 };
        if run > MAX_WHITESPACE_RUN {
            pieces.push(&text[start..at]);
            start = at;
            run = 1;
        }
    }
    pieces.push(&text[start..]);
    pieces
}

/// Count tokens
///
/// How many tokens a text, or a chat with its message framing, takes. Counted with
/// OpenAI's encodings: exact for OpenAI's models, an estimate (`approximate: true`)
/// for others. Anyone signed in.
#[utoipa::path(
    post,
    path = "/v1/ai/tokens/count",
    tag = "ai",
    operation_id = "countTokens",
    request_body = CountBody,
    responses(
        (status = 200, description = "The count.", body = TokenCount),
        ValidationFailed, Unauthorized, PayloadTooLarge, UnsupportedMediaType,
    ),
)]
pub(crate) async fn count(req: &mut Request) -> Result<Response, Problem> {
    Identity::from_request(req)?;
    let body: CountBody = read_json(req).await?;
    plain(json(StatusCode::OK, &counted(&body)?))
}

/// The count for a validated body.
fn counted(body: &CountBody) -> Result<TokenCount, Problem> {
    let (encoding, approximate) = encoding_for(body.model.as_deref());
    let bpe = encoding.build()?;
    let tokens = match (&body.text, &body.messages) {
        (Some(text), _) => count_text(&bpe, text),
        (None, messages) => count_messages(&bpe, messages.as_deref().unwrap_or_default()),
    };
    Ok(TokenCount {
        tokens,
        encoding: encoding.name(),
        approximate,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(value: serde_json::Value) -> CountBody {
        serde_json::from_value(value).unwrap()
    }

    fn count(value: serde_json::Value) -> TokenCount {
        let body = body(value);
        body.validated().unwrap();
        counted(&body).unwrap()
    }

    #[test]
    fn openai_models_get_their_own_encoding_and_the_rest_an_approximation() {
        assert_eq!(
            encoding_for(Some("gpt-4o-mini")),
            (Encoding::O200kBase, false)
        );
        assert_eq!(encoding_for(Some("gpt-4.1")), (Encoding::O200kBase, false));
        assert_eq!(encoding_for(Some("O3-mini")), (Encoding::O200kBase, false));
        assert_eq!(
            encoding_for(Some("gpt-oss:20b")),
            (Encoding::O200kBase, false)
        );
        assert_eq!(
            encoding_for(Some("openai/gpt-5")),
            (Encoding::O200kBase, false)
        );
        assert_eq!(
            encoding_for(Some("gpt-4-turbo")),
            (Encoding::Cl100kBase, false)
        );
        assert_eq!(
            encoding_for(Some("gpt-3.5-turbo")),
            (Encoding::Cl100kBase, false)
        );
        assert_eq!(
            encoding_for(Some("llama3.2:1b")),
            (Encoding::Cl100kBase, true)
        );
        assert_eq!(encoding_for(Some("qwen3:8b")), (Encoding::Cl100kBase, true));
        assert_eq!(encoding_for(None), (Encoding::Cl100kBase, true));
    }

    #[test]
    fn a_text_is_counted_with_the_models_encoding() {
        let counted = count(serde_json::json!({ "model": "gpt-4o", "text": "Hello, world!" }));
        assert_eq!(
            counted,
            TokenCount {
                tokens: 4,
                encoding: "o200k_base",
                approximate: false
            }
        );
        let counted = count(serde_json::json!({ "text": "tiktoken is great!" }));
        assert_eq!((counted.tokens, counted.encoding), (6, "cl100k_base"));
    }

    #[test]
    fn special_token_text_counts_as_ordinary_text() {
        let counted = count(serde_json::json!({ "text": "<|endoftext|>" }));
        assert!(counted.tokens > 1, "{counted:?}");
    }

    #[test]
    fn a_chat_adds_three_tokens_a_message_and_three_for_the_reply() {
        let counted = count(serde_json::json!({
            "model": "gpt-4o",
            "messages": [
                { "role": "system", "content": "You are a helpful assistant." },
                { "role": "user", "content": "Say this is a test." }
            ]
        }));
        let content = 6 + 6; // the two contents
        let roles = 1 + 1;
        assert_eq!(
            counted.tokens,
            content + roles + 2 * TOKENS_PER_MESSAGE + REPLY_PRIMING
        );
        let empty = count(serde_json::json!({ "messages": [] }));
        assert_eq!(empty.tokens, REPLY_PRIMING);
    }

    #[test]
    fn exactly_one_of_text_and_messages_is_needed() {
        let fields = |value| {
            let problem = body(value).validated().unwrap_err();
            problem
                .errors()
                .iter()
                .map(|e| e.field.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(fields(serde_json::json!({})), ["text", "messages"]);
        assert_eq!(
            fields(serde_json::json!({ "text": "a", "messages": [] })),
            ["text", "messages"]
        );
        assert_eq!(
            fields(serde_json::json!({ "model": "", "text": "a" })),
            ["model"]
        );
        assert!(serde_json::from_value::<CountBody>(serde_json::json!({ "txt": "a" })).is_err());
    }

    #[test]
    fn only_very_long_whitespace_runs_are_cut() {
        let prose = "Hello,\n\n    world!\t".repeat(1000);
        assert_eq!(pieces(&prose), [prose.as_str()]);
        let blank = format!("a{}b", " ".repeat(2 * MAX_WHITESPACE_RUN + 1));
        let lengths: Vec<usize> = pieces(&blank).iter().map(|piece| piece.len()).collect();
        assert_eq!(lengths, [1 + MAX_WHITESPACE_RUN, MAX_WHITESPACE_RUN, 2]);
    }

    #[test]
    fn a_mebibyte_of_whitespace_is_counted_rather_than_panicking() {
        // Whole, these runs make tiktoken's pre-split pattern give up and panic.
        for model in ["gpt-4o", "llama3.2"] {
            let spaces = format!("{}x", " ".repeat(1 << 20));
            assert!(count(serde_json::json!({ "model": model, "text": spaces })).tokens > 0);
            let mixed = format!("x{}x", " \t".repeat(1 << 19));
            assert!(count(serde_json::json!({ "model": model, "text": mixed })).tokens > 0);
        }
    }
}
