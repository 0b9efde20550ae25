//! Newline-delimited JSON (Ollama's streaming format), from byte chunks that
//! split lines anywhere.

use serde::de::DeserializeOwned;

/// Collects chunks and hands out each complete line, decoded.
#[derive(Debug, Default)]
pub struct Lines {
    pending: Vec<u8>,
}

impl Lines {
    /// Adds `chunk`, returning every line it completes, decoded as `T`. Blank lines
    /// are skipped; a line that is not a `T` is an error naming it.
    pub fn push<T: DeserializeOwned>(&mut self, chunk: &[u8]) -> Result<Vec<T>, String> {
        self.pending.extend_from_slice(chunk);
        let mut items = Vec::new();
        while let Some(end) = self.pending.iter().position(|&byte| byte == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=end).collect();
            if let Some(item) = decode(&line)? {
                items.push(item);
            }
        }
        Ok(items)
    }

    /// The last line, if the stream ended without a final newline.
    pub fn finish<T: DeserializeOwned>(&mut self) -> Result<Option<T>, String> {
        let line = std::mem::take(&mut self.pending);
        decode(&line)
    }
}

fn decode<T: DeserializeOwned>(line: &[u8]) -> Result<Option<T>, String> {
    let line = line.trim_ascii();
    if line.is_empty() {
        return Ok(None);
    }
    serde_json::from_slice(line).map(Some).map_err(|error| {
        let shown: String = String::from_utf8_lossy(line).chars().take(120).collect();
        format!("a streamed line is not what Ollama sends ({error}): {shown}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    #[test]
    fn lines_split_anywhere_come_out_whole_and_in_order() {
        let mut lines = Lines::default();
        let first: Vec<Value> = lines
            .push(
                br#"{"a":1}
{"b""#,
            )
            .unwrap();
        assert_eq!(first, [json!({"a": 1})]);
        let rest: Vec<Value> = lines.push(b":2}\n\n{\"c\":3}\n").unwrap();
        assert_eq!(rest, [json!({"b": 2}), json!({"c": 3})]);
        assert_eq!(lines.finish::<Value>().unwrap(), None);
    }

    #[test]
    fn a_last_line_without_a_newline_is_kept_for_the_end() {
        let mut lines = Lines::default();
        assert!(lines.push::<Value>(br#"{"done":true}"#).unwrap().is_empty());
        assert_eq!(
            lines.finish::<Value>().unwrap(),
            Some(json!({"done": true}))
        );
    }

    #[test]
    fn a_line_that_is_not_json_says_so() {
        let error = Lines::default().push::<Value>(b"<html>\n").unwrap_err();
        assert!(error.contains("<html>"), "{error}");
    }
}
