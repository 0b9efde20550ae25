//! The BERT weights from model.safetensors.

use std::path::Path;

use anyhow::Context;
use candle_core::{DType, Device};
use candle_nn::VarBuilder;

pub(super) struct Weights {
    pub tensors: VarBuilder<'static>,
    /// Parameters the BERT encoder uses.
    pub parameter_count: u64,
}

pub(super) fn load(path: &Path, device: &Device) -> anyhow::Result<Weights> {
    let tensors = candle_core::safetensors::load(path, device)
        .with_context(|| format!("loading {}", path.display()))?;
    // The pooler head is unused: sentence-transformers pools the token states
    // itself. Integer buffers (position ids) are not parameters.
    let parameter_count = tensors
        .iter()
        .filter(|(name, tensor)| !name.starts_with("pooler.") && tensor.dtype().is_float())
        .map(|(_, tensor)| tensor.elem_count() as u64)
        .sum();
    Ok(Weights {
        tensors: VarBuilder::from_tensors(tensors, DType::F32, device),
        parameter_count,
    })
}
