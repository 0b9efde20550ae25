//! Sentence embeddings with all-MiniLM-L6-v2: BERT, mean pooling over the
//! real tokens, L2 normalisation; 384 dimensions.

mod batch;
mod config;
mod tokens;
mod weights;

use std::fmt;
use std::sync::Arc;

use anyhow::Context;
use candle_core::Device;
use candle_transformers::models::bert::BertModel;
use serde_json::{Map, Value};
use tokenizers::Tokenizer;

use crate::assets::{MINILM, Store};
use config::ModelConfig;

/// The loaded model. Cheap to clone; clones share the weights.
#[derive(Clone)]
pub struct Embedder {
    model: Arc<Model>,
}

struct Model {
    bert: BertModel,
    tokenizer: Tokenizer,
    config: ModelConfig,
    parameter_count: u64,
    description: Map<String, Value>,
}

/// The vectors for a request, one per input in order.
#[derive(Debug, Clone, PartialEq)]
pub struct Embeddings {
    pub vectors: Vec<Vec<f32>>,
    /// Tokens embedded, [CLS] and [SEP] included, after truncation.
    pub prompt_tokens: usize,
}

#[derive(Debug)]
pub enum EmbedError {
    /// Input `index` is longer than the model takes and truncation is off.
    TooLong {
        index: usize,
        tokens: usize,
        limit: usize,
    },
    Model(anyhow::Error),
}

impl Embedder {
    /// Loads the model from `store`, after verifying its files (a failure
    /// carries the [`AssetError`](crate::assets::AssetError)).
    pub fn load(store: &Store) -> anyhow::Result<Embedder> {
        store.verify(&MINILM)?;
        let config = ModelConfig::read(store)?;
        let tokenizer = tokens::load(&store.path(&MINILM, "tokenizer.json"))?;

        let weights = weights::load(&store.path(&MINILM, "model.safetensors"), &Device::Cpu)?;
        let bert =
            BertModel::load(weights.tensors, &config.bert).context("building the BERT model")?;
        let parameter_count = weights.parameter_count;

        let description = config.description(parameter_count);
        Ok(Embedder {
            model: Arc::new(Model {
                bert,
                tokenizer,
                config,
                parameter_count,
                description,
            }),
        })
    }

    pub fn dimensions(&self) -> usize {
        self.model.config.bert.hidden_size
    }

    /// Longest input in tokens, [CLS] and [SEP] included.
    pub fn max_tokens(&self) -> usize {
        self.model.config.max_tokens
    }

    /// `bert.*` and `general.*` keys, as Ollama's `/api/show` `model_info`.
    pub fn description(&self) -> Map<String, Value> {
        self.model.description.clone()
    }

    pub fn parameter_count(&self) -> u64 {
        self.model.parameter_count
    }

    /// Embeds `inputs`, one unit vector each, in order. Inputs longer than
    /// [`max_tokens`](Self::max_tokens) are cut when `truncate`, refused
    /// otherwise. Blocking and CPU-bound: run it on a blocking thread.
    pub fn embed(&self, inputs: &[String], truncate: bool) -> Result<Embeddings, EmbedError> {
        let sequences = self.tokenize(inputs, truncate)?;
        let lengths: Vec<usize> = sequences.iter().map(Vec::len).collect();
        let pad_id = self.model.config.bert.pad_token_id as u32;

        let mut vectors = vec![Vec::new(); inputs.len()];
        for indices in batch::plan(&lengths) {
            let batch: Vec<&[u32]> = indices.iter().map(|&i| sequences[i].as_slice()).collect();
            let embedded = batch::embed(&self.model.bert, &batch, pad_id)
                .map_err(|error| EmbedError::Model(error.into()))?;
            for (index, vector) in indices.into_iter().zip(embedded) {
                vectors[index] = vector;
            }
        }
        Ok(Embeddings {
            vectors,
            prompt_tokens: lengths.iter().sum(),
        })
    }

    fn tokenize(&self, inputs: &[String], truncate: bool) -> Result<Vec<Vec<u32>>, EmbedError> {
        let limit = self.max_tokens();
        inputs
            .iter()
            .enumerate()
            .map(|(index, text)| {
                let mut ids =
                    tokens::encode(&self.model.tokenizer, text).map_err(EmbedError::Model)?;
                if ids.len() > limit && !truncate {
                    return Err(EmbedError::TooLong {
                        index,
                        tokens: ids.len(),
                        limit,
                    });
                }
                tokens::truncate(&mut ids, limit);
                Ok(ids)
            })
            .collect()
    }
}

impl fmt::Debug for Embedder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Embedder")
            .field("model", &MINILM.name)
            .field("dimensions", &self.dimensions())
            .field("max_tokens", &self.max_tokens())
            .finish_non_exhaustive()
    }
}

impl fmt::Display for EmbedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EmbedError::TooLong {
                index,
                tokens,
                limit,
            } => write!(
                f,
                "input {index} has {tokens} tokens, more than the model's limit of {limit} \
                 (truncation is off)"
            ),
            EmbedError::Model(error) => write!(f, "embedding failed: {error:#}"),
        }
    }
}

impl std::error::Error for EmbedError {}
