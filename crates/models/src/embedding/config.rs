//! The model's configuration files, and the description Ollama's
//! `/api/show` reports as `model_info`.

use std::path::Path;

use anyhow::{Context, bail};
use candle_transformers::models::bert;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};

use crate::assets::{MINILM, Store};

pub(super) struct ModelConfig {
    pub bert: bert::Config,
    /// Longest input in tokens, [CLS] and [SEP] included.
    pub max_tokens: usize,
}

/// sentence_bert_config.json
#[derive(Deserialize)]
struct SentenceBertConfig {
    max_seq_length: usize,
}

/// 1_Pooling/config.json: only mean pooling is implemented.
#[derive(Deserialize)]
struct PoolingConfig {
    pooling_mode_mean_tokens: bool,
}

impl ModelConfig {
    pub fn read(store: &Store) -> anyhow::Result<ModelConfig> {
        let bert: bert::Config = read_json(&store.path(&MINILM, "config.json"))?;
        let sentence: SentenceBertConfig =
            read_json(&store.path(&MINILM, "sentence_bert_config.json"))?;
        let pooling: PoolingConfig = read_json(&store.path(&MINILM, "1_Pooling/config.json"))?;
        if !pooling.pooling_mode_mean_tokens {
            bail!("the model's pooling is not mean pooling, the only one implemented");
        }
        // Positions past the embedding table do not exist.
        let max_tokens = sentence.max_seq_length.min(bert.max_position_embeddings);
        Ok(ModelConfig { bert, max_tokens })
    }

    /// `model_info` as Ollama reports it for a BERT model in GGUF.
    pub fn description(&self, parameter_count: u64) -> Map<String, Value> {
        let bert = &self.bert;
        [
            ("general.architecture", json!("bert")),
            ("general.parameter_count", json!(parameter_count)),
            ("bert.attention.causal", json!(false)),
            ("bert.attention.head_count", json!(bert.num_attention_heads)),
            (
                "bert.attention.layer_norm_epsilon",
                json!(bert.layer_norm_eps),
            ),
            ("bert.block_count", json!(bert.num_hidden_layers)),
            ("bert.context_length", json!(self.max_tokens)),
            ("bert.embedding_length", json!(bert.hidden_size)),
            ("bert.feed_forward_length", json!(bert.intermediate_size)),
            // llama.cpp's LLAMA_POOLING_TYPE_MEAN.
            ("bert.pooling_type", json!(1)),
        ]
        .into_iter()
        .map(|(key, value)| (key.to_string(), value))
        .collect()
    }
}

fn read_json<T: DeserializeOwned>(path: &Path) -> anyhow::Result<T> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}
