//! Picks the next token from the logits, as the sampling options say.

use candle_core::{DType, Result, Tensor};
use candle_transformers::generation::{LogitsProcessor, Sampling};
use candle_transformers::utils::apply_repeat_penalty;

use super::SamplingOptions;

pub(super) struct Sampler {
    processor: LogitsProcessor,
    repeat_penalty: f32,
    repeat_last_n: usize,
}

impl Sampler {
    pub(super) fn new(options: &SamplingOptions) -> Self {
        Self {
            processor: LogitsProcessor::from_sampling(options.seed, sampling(options)),
            repeat_penalty: options.repeat_penalty,
            repeat_last_n: options.repeat_last_n,
        }
    }

    /// `logits`: the model's output for the last position, `(1, vocab)`;
    /// `context`: every token so far, prompt included.
    pub(super) fn sample(&mut self, logits: &Tensor, context: &[u32]) -> Result<u32> {
        let logits = logits.squeeze(0)?.to_dtype(DType::F32)?;
        let penalised = self.repeat_penalty > 0.0 && self.repeat_penalty != 1.0;
        let logits = if penalised && self.repeat_last_n > 0 {
            let recent = &context[context.len().saturating_sub(self.repeat_last_n)..];
            apply_repeat_penalty(&logits, self.repeat_penalty, recent)?
        } else {
            logits
        };
        self.processor.sample(&logits)
    }
}

/// Ollama's (llama.cpp's) pipeline: greedy at temperature 0, else top-k, then
/// top-p, then a draw at the temperature.
fn sampling(options: &SamplingOptions) -> Sampling {
    let temperature = options.temperature;
    // top_p 0 keeps only the likeliest token, as in llama.cpp.
    if temperature.is_nan() || temperature <= 0.0 || options.top_p <= 0.0 {
        return Sampling::ArgMax;
    }
    let top_p = options.top_p < 1.0;
    match (options.top_k, top_p) {
        (0, false) => Sampling::All { temperature },
        (0, true) => Sampling::TopP {
            p: options.top_p,
            temperature,
        },
        (k, false) => Sampling::TopK { k, temperature },
        (k, true) => Sampling::TopKThenTopP {
            k,
            p: options.top_p,
            temperature,
        },
    }
}
