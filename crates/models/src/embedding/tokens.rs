//! Text to BERT token ids, [CLS] … [SEP].

use std::path::Path;

use tokenizers::Tokenizer;

pub(super) fn load(path: &Path) -> anyhow::Result<Tokenizer> {
    let mut tokenizer = Tokenizer::from_file(path)
        .map_err(|error| anyhow::anyhow!("loading {}: {error}", path.display()))?;
    // tokenizer.json pads and truncates to 128; lengths are handled here
    // (max_tokens, and padding per batch).
    tokenizer.with_padding(None);
    tokenizer
        .with_truncation(None)
        .map_err(|error| anyhow::anyhow!("turning off truncation: {error}"))?;
    Ok(tokenizer)
}

pub(super) fn encode(tokenizer: &Tokenizer, text: &str) -> anyhow::Result<Vec<u32>> {
    let encoding = tokenizer
        .encode_fast(text, true)
        .map_err(|error| anyhow::anyhow!("tokenizing: {error}"))?;
    Ok(encoding.get_ids().to_vec())
}

/// Cuts `ids` to `limit` tokens, keeping the final [SEP] so the sequence
/// stays well-formed, as the tokenizer's own truncation would.
pub(super) fn truncate(ids: &mut Vec<u32>, limit: usize) {
    if ids.len() > limit
        && let Some(&sep) = ids.last()
    {
        ids.truncate(limit.saturating_sub(1));
        ids.push(sep);
    }
}
