//! The BERT weights from model.safetensors, laid out for fast CPU inference.

use std::collections::HashMap;
use std::path::Path;

use anyhow::Context;
use candle_core::{DType, Device, Tensor};
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
    let tensors = tensors
        .into_iter()
        .map(|(name, tensor)| {
            let tensor = if name.starts_with("encoder.") && tensor.rank() == 2 && std::env::var_os("ROWMAJOR").is_none() {
                column_major(&tensor)?
            } else {
                tensor
            };
            Ok((name, tensor))
        })
        .collect::<candle_core::Result<HashMap<_, _>>>()?;
    Ok(Weights {
        tensors: VarBuilder::from_tensors(tensors, DType::F32, device),
        parameter_count,
    })
}

/// The same matrix, stored transposed. A linear layer computes `x · Wᵀ`; with
/// W row-major, gemm repacks the whole of W on every call (30% of the time
/// for short inputs), while `Wᵀ` stored row-major it reads in place.
fn column_major(weight: &Tensor) -> candle_core::Result<Tensor> {
    weight.t()?.contiguous()?.t()
}
