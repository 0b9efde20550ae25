//! The generation loop.

use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use candle_core::{Device, Tensor};
use candle_transformers::models::quantized_llama::ModelWeights;

use super::sampling::Sampler;
use super::stream::{Step, TextStream};
use super::{ChatModel, DoneReason, GenerateError, Generation, SamplingOptions};

/// Prompt tokens per forward pass. Fewer passes are faster, but the attention
/// scores grow with chunk × context: 9 heads × 512 × 4096 × f32 = 75 MB.
const PROMPT_CHUNK: usize = 512;

impl ChatModel {
    /// Generates the continuation of `prompt` (token ids, e.g. from
    /// [`ChatModel::tokenize`] of [`ChatModel::render_chat`]).
    ///
    /// `on_token` is called once per generated token with the text it adds,
    /// which may be "" while text is held back (see [`Generation::tail`]);
    /// never for the end-of-turn token. `ControlFlow::Break` stops at once.
    ///
    /// Blocking and CPU-bound: run it on a blocking thread.
    pub fn generate(
        &self,
        prompt: &[u32],
        options: &SamplingOptions,
        on_token: &mut dyn FnMut(&str) -> ControlFlow<()>,
    ) -> Result<Generation, GenerateError> {
        let limit = options.num_ctx.min(self.context_length());
        if prompt.is_empty() {
            return Err(GenerateError::EmptyPrompt);
        }
        if prompt.len() >= limit {
            return Err(GenerateError::PromptTooLong {
                tokens: prompt.len(),
                limit,
            });
        }
        let vocab_size = self.tokenizer.vocab_size();
        if let Some(&id) = prompt.iter().find(|&&id| id as usize >= vocab_size) {
            return Err(GenerateError::UnknownToken { id });
        }
        let max_new = options
            .num_predict
            .unwrap_or(usize::MAX)
            .min(limit - prompt.len());

        // A clone shares the weights and starts with an empty KV cache.
        let mut model = self.weights.clone();
        let mut sampler = Sampler::new(options);
        let mut stream = TextStream::new(&options.stop);
        let mut context = prompt.to_vec();
        let started = Instant::now();
        let mut prompt_duration = Duration::ZERO;

        let done_reason = if max_new == 0 {
            DoneReason::Length
        } else {
            let mut logits = None;
            for (i, chunk) in prompt.chunks(PROMPT_CHUNK).enumerate() {
                logits = Some(forward(&mut model, chunk, i * PROMPT_CHUNK)?);
            }
            let Some(mut logits) = logits else {
                return Err(GenerateError::EmptyPrompt);
            };
            prompt_duration = started.elapsed();
            loop {
                let next = sampler.sample(&logits, &context)?;
                if self.tokenizer.is_end_of_turn(next) {
                    break DoneReason::Stop;
                }
                context.push(next);
                let (text, stopped) = match stream.push(self.tokenizer.token_bytes(next)) {
                    Step::Emit(text) => (text, false),
                    Step::Stop(text) => (text, true),
                };
                let flow = on_token(&text);
                if stopped {
                    break DoneReason::Stop;
                }
                if flow.is_break() {
                    break DoneReason::Cancelled;
                }
                if context.len() - prompt.len() == max_new {
                    break DoneReason::Length;
                }
                logits = forward(&mut model, &[next], context.len() - 1)?;
            }
        };

        let elapsed = started.elapsed();
        Ok(Generation {
            prompt_tokens: prompt.len(),
            generated_tokens: context.len() - prompt.len(),
            prompt_duration,
            generation_duration: elapsed.saturating_sub(prompt_duration),
            done_reason,
            tail: stream.finish(),
            context,
        })
    }
}

/// Runs `tokens`, at positions from `index_pos` on, through the model (which
/// caches their keys and values); returns the logits for the last one.
fn forward(
    model: &mut ModelWeights,
    tokens: &[u32],
    index_pos: usize,
) -> candle_core::Result<Tensor> {
    let input = Tensor::new(tokens, &Device::Cpu)?.unsqueeze(0)?;
    model.forward(&input, index_pos)
}
