//! The byte-level BPE tokenizer, rebuilt from the GGUF metadata so the model
//! file is the only asset.

use std::collections::HashMap;

use anyhow::{Context, Result, anyhow, bail};
use candle_core::quantized::gguf_file::Value;
use tokenizers::models::bpe::{BPE, Vocab};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::{AddedToken, Tokenizer as HfTokenizer};

/// GGUF token types (llama.cpp's `llama_token_type`) matched as whole words
/// before BPE: control tokens (`<|im_start|>`) and user-defined ones.
const CONTROL: i32 = 3;
const USER_DEFINED: i32 = 4;

/// ChatML's turn boundaries: a model that opens a new turn has ended its own.
const END_OF_TURN: [&str; 3] = ["<|im_end|>", "<|endoftext|>", "<|im_start|>"];

pub(super) struct Tokenizer {
    inner: HfTokenizer,
    /// Each token's bytes. Byte-level BPE spells bytes as printable chars; as
    /// bytes, a character split across tokens can be streamed when complete.
    bytes: Vec<Vec<u8>>,
    end_of_turn: Vec<u32>,
}

impl Tokenizer {
    pub(super) fn from_gguf(md: &HashMap<String, Value>) -> Result<Self> {
        let get = |key: &str| md.get(key).with_context(|| format!("no {key} in the GGUF"));
        let model = get("tokenizer.ggml.model")?.to_string()?;
        let pre = get("tokenizer.ggml.pre")?.to_string()?;
        // "smollm" is StarCoder's pre-tokenizer: digits split one by one,
        // then GPT-2's byte-level split (SmolLM2's tokenizer.json).
        if model != "gpt2" || pre != "smollm" {
            bail!("unsupported tokenizer {model}/{pre} (expected gpt2/smollm)");
        }
        let tokens = strings(get("tokenizer.ggml.tokens")?)?;
        let types = get("tokenizer.ggml.token_type")?
            .to_vec()?
            .iter()
            .map(Value::to_i32)
            .collect::<candle_core::Result<Vec<_>>>()?;
        if types.len() != tokens.len() {
            bail!("{} token types for {} tokens", types.len(), tokens.len());
        }
        let merges = strings(get("tokenizer.ggml.merges")?)?
            .into_iter()
            .map(|merge| {
                let (a, b) = merge
                    .split_once(' ')
                    .with_context(|| format!("bad merge {merge:?}"))?;
                Ok((a.to_owned(), b.to_owned()))
            })
            .collect::<Result<Vec<_>>>()?;

        let vocab: Vocab = (0u32..)
            .zip(&tokens)
            .map(|(id, t)| ((*t).to_owned(), id))
            .collect();
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .build()
            .map_err(|e| anyhow!("building the BPE model: {e}"))?;
        let mut inner = HfTokenizer::new(bpe);
        inner.with_pre_tokenizer(Some(Sequence::new(vec![
            Digits::new(true).into(),
            ByteLevel::new(false, true, true).into(),
        ])));
        let added = tokens
            .iter()
            .zip(&types)
            .filter_map(|(token, &ty)| match ty {
                CONTROL => Some(AddedToken::from(*token, true)),
                USER_DEFINED => Some(AddedToken::from(*token, false)),
                _ => None,
            });
        inner
            .add_special_tokens(added)
            .map_err(|e| anyhow!("adding special tokens: {e}"))?;

        let byte_of = byte_decoder();
        let bytes = tokens
            .iter()
            .zip(&types)
            .map(|(token, &ty)| match ty {
                CONTROL | USER_DEFINED => token.as_bytes().to_vec(),
                _ => token
                    .chars()
                    .flat_map(|c| match byte_of.get(&c) {
                        Some(&b) => vec![b],
                        None => c.to_string().into_bytes(),
                    })
                    .collect(),
            })
            .collect();

        let eos = get("tokenizer.ggml.eos_token_id")?.to_u32()?;
        let mut end_of_turn: Vec<u32> = END_OF_TURN
            .iter()
            .filter_map(|t| inner.token_to_id(t))
            .collect();
        end_of_turn.push(eos);
        Ok(Self {
            inner,
            bytes,
            end_of_turn,
        })
    }

    pub(super) fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let encoding = self
            .inner
            .encode_fast(text, false)
            .map_err(|e| anyhow!("tokenizing: {e}"))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// Ids outside the vocabulary are skipped; invalid UTF-8 becomes U+FFFD.
    pub(super) fn decode(&self, ids: &[u32]) -> String {
        let bytes: Vec<u8> = ids
            .iter()
            .flat_map(|&id| self.token_bytes(id))
            .copied()
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// The bytes a token stands for; none for an unknown id.
    pub(super) fn token_bytes(&self, id: u32) -> &[u8] {
        self.bytes.get(id as usize).map_or(&[], Vec::as_slice)
    }

    pub(super) fn vocab_size(&self) -> usize {
        self.bytes.len()
    }

    pub(super) fn is_end_of_turn(&self, id: u32) -> bool {
        self.end_of_turn.contains(&id)
    }
}

fn strings(value: &Value) -> Result<Vec<&str>> {
    value
        .to_vec()?
        .iter()
        .map(|v| Ok(v.to_string()?.as_str()))
        .collect()
}

/// GPT-2's byte-level alphabet, reversed: printable Latin-1 bytes stand for
/// themselves, the others for U+0100 onwards in byte order.
fn byte_decoder() -> HashMap<char, u8> {
    let mut shifted = 0;
    (0..=255u8)
        .filter_map(|b| {
            let printable = matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
            let code = if printable {
                u32::from(b)
            } else {
                shifted += 1;
                0xFF + shifted
            };
            char::from_u32(code).map(|c| (c, b))
        })
        .collect()
}
