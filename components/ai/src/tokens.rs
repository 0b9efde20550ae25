//! `POST /v1/ai/tokens/count`: how many tokens a text or a chat takes, counted
//! here with OpenAI's byte-pair encodings (tiktoken) rather than by a model.
//!
//! The model named picks the encoding, exact for OpenAI's models and an estimate
//! for the rest (see `arena_common::tokens`); a chat is counted with its framing.

use arena_common::auth::Identity;
use arena_common::body::read_json;
use arena_common::ollama::Message;
use arena_common::problem::responses::{
    PayloadTooLarge, Unauthorized, UnsupportedMediaType, ValidationFailed,
};
use arena_common::tokens::{Counter, Encoding};
use arena_common::validate::{Validate, Validator};
use arena_common::{Problem, json};
use http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{Request, Response, plain};

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
    plain(json(StatusCode::OK, &counted(&body)))
}

/// The count for a validated body.
fn counted(body: &CountBody) -> TokenCount {
    let (encoding, approximate) = Encoding::for_model(body.model.as_deref());
    let counter = Counter::shared(encoding);
    let tokens = match (&body.text, &body.messages) {
        (Some(text), _) => counter.text(text),
        (None, messages) => counter.chat(messages.as_deref().unwrap_or_default()),
    };
    TokenCount {
        tokens,
        encoding: encoding.name(),
        approximate,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arena_common::tokens::{REPLY_PRIMING, TOKENS_PER_MESSAGE};

    fn body(value: serde_json::Value) -> CountBody {
        serde_json::from_value(value).unwrap()
    }

    fn count(value: serde_json::Value) -> TokenCount {
        let body = body(value);
        body.validated().unwrap();
        counted(&body)
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
        let counted =
            count(serde_json::json!({ "model": "llama3.2", "text": "tiktoken is great!" }));
        assert_eq!(
            counted,
            TokenCount {
                tokens: 6,
                encoding: "cl100k_base",
                approximate: true
            }
        );
        let counted = count(serde_json::json!({ "text": "tiktoken is great!" }));
        assert_eq!((counted.tokens, counted.encoding), (6, "cl100k_base"));
    }

    #[test]
    fn a_chat_is_counted_with_its_framing() {
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
}
