//! Turns generated tokens into the text the caller may show so far.

/// Decodes token bytes into text, holding back an incomplete UTF-8 sequence
/// and any trailing text that might begin a stop sequence.
pub(super) struct TextStream<'a> {
    stop: Vec<&'a str>,
    /// Undecoded bytes: the start of a character split across tokens.
    pending: Vec<u8>,
    /// Decoded text not yet released.
    held: String,
}

pub(super) enum Step {
    /// Text to release now (possibly empty).
    Emit(String),
    /// A stop sequence was completed: the text before it, the last to release.
    Stop(String),
}

impl<'a> TextStream<'a> {
    pub(super) fn new(stop: &'a [String]) -> Self {
        Self {
            stop: stop
                .iter()
                .map(String::as_str)
                .filter(|s| !s.is_empty())
                .collect(),
            pending: Vec::new(),
            held: String::new(),
        }
    }

    pub(super) fn push(&mut self, bytes: &[u8]) -> Step {
        self.pending.extend_from_slice(bytes);
        self.decode_complete();
        if let Some(at) = self.stop.iter().filter_map(|s| self.held.find(s)).min() {
            self.held.truncate(at);
            self.pending.clear();
            return Step::Stop(std::mem::take(&mut self.held));
        }
        // Text from `keep` on is a prefix of a stop sequence: it could still
        // become one. Every occurrence starts in `held`, since what is
        // released never ends with such a prefix.
        let keep = self
            .held
            .char_indices()
            .map(|(i, _)| i)
            .find(|&i| self.stop.iter().any(|s| s.starts_with(&self.held[i..])))
            .unwrap_or(self.held.len());
        let rest = self.held.split_off(keep);
        Step::Emit(std::mem::replace(&mut self.held, rest))
    }

    /// Whatever was held back, now that no more tokens come.
    pub(super) fn finish(self) -> String {
        self.held + &String::from_utf8_lossy(&self.pending)
    }

    /// Moves the decodable bytes of `pending` to `held`, invalid ones as
    /// U+FFFD just as `String::from_utf8_lossy` would decode them all at once.
    fn decode_complete(&mut self) {
        let mut consumed = 0;
        for chunk in self.pending.utf8_chunks() {
            self.held.push_str(chunk.valid());
            consumed += chunk.valid().len();
            let invalid = chunk.invalid();
            let at_end = consumed + invalid.len() == self.pending.len();
            let incomplete = std::str::from_utf8(invalid).is_err_and(|e| e.error_len().is_none());
            if at_end && incomplete {
                break; // completed by a later token
            }
            if !invalid.is_empty() {
                self.held.push(char::REPLACEMENT_CHARACTER);
                consumed += invalid.len();
            }
        }
        self.pending.drain(..consumed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `pieces` and returns (released texts, final step was a stop, tail).
    fn run(stop: &[&str], pieces: &[&[u8]]) -> (Vec<String>, bool, String) {
        let stop: Vec<String> = stop.iter().map(|s| s.to_string()).collect();
        let mut stream = TextStream::new(&stop);
        let mut out = Vec::new();
        for piece in pieces {
            match stream.push(piece) {
                Step::Emit(text) => out.push(text),
                Step::Stop(text) => {
                    out.push(text);
                    return (out, true, stream.finish());
                }
            }
        }
        (out, false, stream.finish())
    }

    #[test]
    fn holds_split_characters_until_complete() {
        let euro = "€".as_bytes();
        let (out, stopped, tail) = run(&[], &[b"a", &euro[..1], &euro[1..], b"b"]);
        assert_eq!(out, ["a", "", "€", "b"]);
        assert!(!stopped);
        assert_eq!(tail, "");
    }

    #[test]
    fn invalid_bytes_decode_as_from_utf8_lossy() {
        let pieces: [&[u8]; 4] = [b"x", &[0xE2, 0x82], b"y", &[0xF0, 0x9F]];
        let whole: Vec<u8> = pieces.concat();
        let (out, _, tail) = run(&[], &pieces);
        assert_eq!(out.concat() + &tail, String::from_utf8_lossy(&whole));
    }

    #[test]
    fn stop_sequence_truncates_and_ends() {
        let (out, stopped, tail) = run(&["END"], &[b"ab", b"cE", b"N", b"Dxyz"]);
        assert_eq!(out, ["ab", "c", "", ""]);
        assert!(stopped);
        assert_eq!(tail, "");
    }

    #[test]
    fn false_start_of_a_stop_sequence_is_released() {
        let (out, stopped, tail) = run(&["END"], &[b"aE", b"Nb", b"E"]);
        assert_eq!(out, ["a", "ENb", ""]);
        assert!(!stopped);
        assert_eq!(tail, "E");
    }
}
