//! Token counts with OpenAI's byte-pair encodings (tiktoken): for a budget check,
//! fitting a prompt into a context window, or reporting a text's size.
//!
//! | Model | Encoding | approximate |
//! |---|---|---|
//! | `gpt-4o*`, `gpt-4.1*`, `gpt-4.5*`, `gpt-5*`, `gpt-oss*`, `o1*`, `o3*`, `o4*` | `o200k_base` | no |
//! | `gpt-4*`, `gpt-3.5*`, `text-embedding-3-*`, `text-embedding-ada-002` | `cl100k_base` | no |
//! | anything else (llama, qwen, mistral, gemma, ...), or none | `cl100k_base` | yes |
//!
//! Open models each have their own tokenizer, which Ollama does not expose; an
//! encoding of a similar vocabulary size is within some percent of it, which is
//! what a budget needs. A chat adds the framing of OpenAI's chat format:
//! [`TOKENS_PER_MESSAGE`] for each message and [`REPLY_PRIMING`] once, as OpenAI's
//! cookbook counts it; other models' templates frame messages similarly.
//!
//! Parsing an encoding's vocabulary takes tens of milliseconds (`o200k_base` about
//! twice `cl100k_base`), so [`Counter::shared`] builds each at most once per
//! instance, on first use: once per request in a Spin component, however many
//! texts it counts.

use std::sync::OnceLock;

use tiktoken_rs::{CoreBPE, Rank};

use crate::ollama::Message;

/// The framing tokens around each message of a chat (`<|start|>{role}<|message|>`
/// ... `<|end|>`), beside those of its role and content.
pub const TOKENS_PER_MESSAGE: usize = 3;

/// The tokens that open the model's reply (`<|start|>assistant<|message|>`), once.
pub const REPLY_PRIMING: usize = 3;

/// At least as many tokens as `messages` count in any byte-pair encoding, without
/// building one: every token stands for at least one byte. A prompt within its
/// budget by this bound needs no counting, which spares building an encoding
/// (tens of milliseconds) when a conversation is still short.
pub fn upper_bound<'m>(messages: impl IntoIterator<Item = &'m Message>) -> usize {
    messages
        .into_iter()
        .map(|message| TOKENS_PER_MESSAGE + message.role.len() + message.content.len())
        .sum::<usize>()
        + REPLY_PRIMING
}

/// The longest run of whitespace counted in one go. The encodings' pre-split
/// pattern backtracks through a whitespace run (`\s+(?!\S)`), and tiktoken panics
/// once a run nears a million characters; a longer run is cut into pieces counted
/// apart, which changes a count by at most a token per cut and never touches text
/// a person writes.
const MAX_WHITESPACE_RUN: usize = 4096;

/// One of OpenAI's encodings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Cl100kBase,
    O200kBase,
}

impl Encoding {
    /// Its name: `cl100k_base` or `o200k_base`.
    pub fn name(self) -> &'static str {
        match self {
            Encoding::Cl100kBase => "cl100k_base",
            Encoding::O200kBase => "o200k_base",
        }
    }

    /// The encoding for `model`, and whether it only approximates the model's own
    /// (see the module table). A namespace (`openai/gpt-4o`) and case are ignored.
    pub fn for_model(model: Option<&str>) -> (Encoding, bool) {
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
}

/// Counts tokens with one encoding. Text that looks like a special token
/// (`<|endoftext|>`) counts as the ordinary text it is when a person sends it.
pub struct Counter {
    bpe: CoreBPE,
}

impl Counter {
    /// The counter for `encoding`, built on first use and kept for the instance.
    ///
    /// # Panics
    ///
    /// If tiktoken cannot parse the vocabulary compiled into the component: a
    /// broken build, which every test counting with the encoding reports.
    pub fn shared(encoding: Encoding) -> &'static Counter {
        static CL100K: OnceLock<Counter> = OnceLock::new();
        static O200K: OnceLock<Counter> = OnceLock::new();
        let (cell, build): (_, fn() -> anyhow::Result<CoreBPE>) = match encoding {
            Encoding::Cl100kBase => (&CL100K, tiktoken_rs::cl100k_base),
            Encoding::O200kBase => (&O200K, tiktoken_rs::o200k_base),
        };
        cell.get_or_init(|| Counter {
            bpe: build().expect("the compiled-in vocabulary parses"),
        })
    }

    /// The tokens of `text`.
    pub fn text(&self, text: &str) -> usize {
        pieces(text)
            .into_iter()
            .map(|piece| self.bpe.count_ordinary(piece))
            .sum()
    }

    /// The tokens one message adds to a chat: its role, its content and its
    /// framing. A chat's count is the sum over its messages plus [`REPLY_PRIMING`],
    /// so a prompt can be fitted message by message.
    pub fn message(&self, message: &Message) -> usize {
        TOKENS_PER_MESSAGE + self.text(&message.role) + self.text(&message.content)
    }

    /// The tokens of a chat: each message with its framing, and the reply's priming.
    pub fn chat(&self, messages: &[Message]) -> usize {
        messages
            .iter()
            .map(|message| self.message(message))
            .sum::<usize>()
            + REPLY_PRIMING
    }

    /// The longest start of `text` (cut at a character boundary) that this counter
    /// counts as at most `max` tokens: `text` itself when it fits.
    pub fn truncate<'t>(&self, text: &'t str, max: usize) -> &'t str {
        let encoded: Vec<(&str, Vec<Rank>)> = pieces(text)
            .into_iter()
            .map(|piece| (piece, self.bpe.encode_ordinary(piece)))
            .collect();
        if encoded.iter().map(|(_, ranks)| ranks.len()).sum::<usize>() <= max {
            return text;
        }
        // A cut text re-encodes close to, but not always exactly as, the tokens it
        // was cut after; take fewer until it counts within `max` (the empty text
        // always does).
        let mut keep = max;
        loop {
            let cut = &text[..self.prefix_len(&encoded, keep)];
            let tokens = self.text(cut);
            if tokens <= max {
                return cut;
            }
            keep = keep.saturating_sub(tokens - max);
        }
    }

    /// The length in bytes of the first `tokens` tokens of the `encoded` pieces of
    /// a text, down to a character boundary.
    fn prefix_len(&self, encoded: &[(&str, Vec<Rank>)], tokens: usize) -> usize {
        let (mut offset, mut left) = (0, tokens);
        for (piece, ranks) in encoded {
            if ranks.len() > left {
                // Tokens decode to the bytes they encoded; an unknown one cannot come
                // from `encode_ordinary`, and would only make the cut shorter.
                let bytes = self.bpe.decode_bytes(&ranks[..left]).map_or(0, |b| b.len());
                let mut end = bytes;
                while !piece.is_char_boundary(end) {
                    end -= 1;
                }
                return offset + end;
            }
            left -= ranks.len();
            offset += piece.len();
        }
        offset
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn cl100k() -> &'static Counter {
        Counter::shared(Encoding::Cl100kBase)
    }

    fn message(role: &str, content: &str) -> Message {
        Message {
            role: role.to_owned(),
            content: content.to_owned(),
        }
    }

    #[test]
    fn the_byte_bound_is_never_below_the_count_and_exact_for_one_byte_tokens() {
        let long = "x".repeat(5000);
        let texts = [
            "",
            "a",
            "hello world",
            "ünïcödé 😀 漢字",
            "    \n\n\t",
            &long,
        ];
        for (n, text) in texts.iter().enumerate() {
            let chat = [message("system", text), message("user", &text.repeat(n))];
            assert!(upper_bound(&chat) >= cl100k().chat(&chat), "{text:?}");
        }
        // Framing alone: three per message and the reply's priming, role bytes aside.
        let empty = [message("user", "")];
        assert_eq!(upper_bound(&empty), TOKENS_PER_MESSAGE + 4 + REPLY_PRIMING);
    }

    #[test]
    fn openai_models_get_their_own_encoding_and_the_rest_an_approximation() {
        use Encoding::{Cl100kBase, O200kBase};
        let cases = [
            (Some("gpt-4o-mini"), (O200kBase, false)),
            (Some("gpt-4.1"), (O200kBase, false)),
            (Some("O3-mini"), (O200kBase, false)),
            (Some("gpt-oss:20b"), (O200kBase, false)),
            (Some("openai/gpt-5"), (O200kBase, false)),
            (Some("gpt-4-turbo"), (Cl100kBase, false)),
            (Some("gpt-3.5-turbo"), (Cl100kBase, false)),
            (Some("llama3.2:1b"), (Cl100kBase, true)),
            (Some("qwen3:8b"), (Cl100kBase, true)),
            (None, (Cl100kBase, true)),
        ];
        for (model, expected) in cases {
            assert_eq!(Encoding::for_model(model), expected, "{model:?}");
        }
        assert_eq!(O200kBase.name(), "o200k_base");
    }

    #[test]
    fn texts_are_counted_with_each_encoding() {
        assert_eq!(
            Counter::shared(Encoding::O200kBase).text("Hello, world!"),
            4
        );
        assert_eq!(cl100k().text("tiktoken is great!"), 6);
        assert_eq!(cl100k().text(""), 0);
        assert!(cl100k().text("<|endoftext|>") > 1);
    }

    #[test]
    fn a_chat_adds_three_tokens_a_message_and_three_for_the_reply() {
        let chat = [
            message("system", "You are a helpful assistant."),
            message("user", "Say this is a test."),
        ];
        let counter = Counter::shared(Encoding::O200kBase);
        let (content, roles) = (6 + 6, 1 + 1);
        assert_eq!(
            counter.chat(&chat),
            content + roles + 2 * TOKENS_PER_MESSAGE + REPLY_PRIMING
        );
        assert_eq!(counter.message(&chat[1]), 6 + 1 + TOKENS_PER_MESSAGE);
        assert_eq!(counter.chat(&[]), REPLY_PRIMING);
    }

    #[test]
    fn a_cut_text_is_the_longest_start_within_the_count() {
        let counter = cl100k();
        let texts = [
            "The quick brown fox jumps over the lazy dog. ".repeat(40),
            "Grüße aus Köln — 東京からこんにちは 🦀🦀 ".repeat(30),
            format!("a{}b c", " ".repeat(3 * MAX_WHITESPACE_RUN)),
        ];
        for text in &texts {
            let whole = counter.text(text);
            assert_eq!(counter.truncate(text, whole), text);
            for max in [0, 1, 2, 3, 7, 50, whole / 2, whole - 1] {
                let cut = counter.truncate(text, max);
                assert!(text.starts_with(cut));
                assert!(counter.text(cut) <= max, "{max}: {cut:?}");
                assert!(cut.len() < text.len());
                // Nearly all of the allowance is used.
                assert!(counter.text(cut) + 2 >= max.min(whole), "{max}: {cut:?}");
            }
        }
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
        for encoding in [Encoding::O200kBase, Encoding::Cl100kBase] {
            let counter = Counter::shared(encoding);
            let spaces = format!("{}x", " ".repeat(1 << 20));
            assert!(counter.text(&spaces) > 0);
            let mixed = format!("x{}x", " \t".repeat(1 << 19));
            assert!(counter.text(&mixed) > 0);
        }
    }
}
