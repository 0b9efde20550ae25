//! What a chat model "generates": a scripted [`Reply`] or the default echo, cut short by
//! the request's `stop` strings and `num_predict` as a real model would be.

/// A reply as the tokens it streams, one NDJSON chunk per token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// The chunks' contents, in order; the reply's text is their concatenation.
    pub tokens: Vec<String>,
    /// `prompt_eval_count` to report; `None` counts the prompt's words (see [`Reply::echo`]).
    pub prompt_eval_count: Option<u32>,
}

impl Reply {
    /// A reply streamed exactly as these tokens: `Reply::from_tokens(["Hello", ",", " world"])`.
    pub fn from_tokens<I, S>(tokens: I) -> Reply
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Reply {
            tokens: tokens.into_iter().map(Into::into).collect(),
            prompt_eval_count: None,
        }
    }

    /// A reply of this text, split into word tokens (each word with the whitespace before it).
    pub fn from_text(text: &str) -> Reply {
        Reply::from_tokens(words(text))
    }

    /// The default reply to a prompt whose last user message is `user_text`:
    /// `"You said: <user_text>"` in word tokens. Without a script the fake answers this,
    /// and reports the prompt's word count (every message, system included) as
    /// `prompt_eval_count`, so tests can predict both.
    pub fn echo(user_text: &str) -> Reply {
        Reply::from_text(&format!("You said: {user_text}"))
    }

    /// Reports `count` as `prompt_eval_count` instead of the prompt's word count.
    pub fn with_prompt_eval_count(self, count: u32) -> Reply {
        Reply {
            prompt_eval_count: Some(count),
            ..self
        }
    }

    /// The whole text: what a non-streaming answer carries.
    pub fn content(&self) -> String {
        self.tokens.concat()
    }
}

/// `text` as word tokens: each is the whitespace before a word plus the word, and trailing
/// whitespace stays on the last one, so the tokens concatenate back to `text`.
pub(crate) fn words(text: &str) -> Vec<String> {
    let mut tokens: Vec<String> = Vec::new();
    let mut current = String::new();
    let mut in_word = false;
    for c in text.chars() {
        if c.is_whitespace() && in_word {
            tokens.push(std::mem::take(&mut current));
            in_word = false;
        }
        in_word |= !c.is_whitespace();
        current.push(c);
    }
    match tokens.last_mut() {
        Some(last) if !in_word => last.push_str(&current),
        _ if !current.is_empty() => tokens.push(current),
        _ => {}
    }
    tokens
}

/// How many tokens the fake counts in `text` (its words), for `prompt_eval_count`.
pub(crate) fn count_tokens(text: &str) -> usize {
    words(text).len()
}

/// A reply as it will be sent: limited by the request's options, with its counts.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Generation {
    pub tokens: Vec<String>,
    /// `"stop"` (ended, or hit a stop string) or `"length"` (cut by `num_predict`).
    pub done_reason: &'static str,
    pub prompt_eval_count: u32,
}

impl Generation {
    /// `reply` ending before the first of `stop` and after at most `num_predict` tokens
    /// (zero or negative: no limit, as in Ollama). `prompt_words` is the prompt's size,
    /// reported unless the reply names its own.
    pub fn new(
        reply: Reply,
        stop: &[String],
        num_predict: Option<i64>,
        prompt_words: usize,
    ) -> Self {
        let mut tokens = before_stop(reply.tokens, stop);
        let mut done_reason = "stop";
        if let Some(limit) = num_predict
            .and_then(|n| usize::try_from(n).ok())
            .filter(|&n| n > 0)
            && tokens.len() > limit
        {
            tokens.truncate(limit);
            done_reason = "length";
        }
        let prompt_eval_count = reply
            .prompt_eval_count
            .unwrap_or_else(|| u32::try_from(prompt_words).unwrap_or(u32::MAX));
        Generation {
            tokens,
            done_reason,
            prompt_eval_count,
        }
    }

    pub fn content(&self) -> String {
        self.tokens.concat()
    }

    /// `eval_count`: the tokens actually sent.
    pub fn eval_count(&self) -> u32 {
        u32::try_from(self.tokens.len()).unwrap_or(u32::MAX)
    }
}

/// The tokens up to the first occurrence of any stop string, which (as in Ollama) is not
/// sent; a token the stop string starts inside is sent only up to it.
fn before_stop(tokens: Vec<String>, stop: &[String]) -> Vec<String> {
    let text = tokens.concat();
    let Some(cut) = stop
        .iter()
        .filter(|s| !s.is_empty())
        .filter_map(|s| text.find(s.as_str()))
        .min()
    else {
        return tokens;
    };
    let mut kept = Vec::new();
    let mut used = 0;
    for token in tokens {
        if used + token.len() <= cut {
            used += token.len();
            kept.push(token);
        } else {
            let part = &token[..cut - used];
            if !part.is_empty() {
                kept.push(part.to_owned());
            }
            break;
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_keep_their_leading_whitespace_and_concatenate_back() {
        assert_eq!(
            words("You said: hi  there "),
            ["You", " said:", " hi", "  there "]
        );
        assert_eq!(words("  x"), ["  x"]);
        assert_eq!(words("   "), ["   "]);
        assert!(words("").is_empty());
    }

    #[test]
    fn a_stop_string_ends_the_reply_before_it_even_inside_a_token() {
        let reply = Reply::from_tokens(["Hello", ",", " world", "!"]);
        let stop = ["wor".to_owned()];
        let generation = Generation::new(reply, &stop, None, 3);
        assert_eq!(generation.tokens, ["Hello", ",", " "]);
        assert_eq!(generation.done_reason, "stop");
        assert_eq!(generation.prompt_eval_count, 3);
    }

    #[test]
    fn num_predict_cuts_with_reason_length_but_not_a_reply_that_fits() {
        let reply = Reply::from_text("one two three").with_prompt_eval_count(7);
        let cut = Generation::new(reply.clone(), &[], Some(2), 1);
        assert_eq!(
            (cut.content().as_str(), cut.done_reason),
            ("one two", "length")
        );
        assert_eq!(cut.prompt_eval_count, 7);
        let fits = Generation::new(reply.clone(), &[], Some(3), 1);
        assert_eq!(fits.done_reason, "stop");
        let unlimited = Generation::new(reply, &[], Some(-1), 1);
        assert_eq!(unlimited.eval_count(), 3);
    }
}
