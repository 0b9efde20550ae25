//! Running token sequences through BERT in padded batches, then mean
//! pooling and L2 normalisation (sentence-transformers' pipeline).

use candle_core::{D, Tensor};
use candle_transformers::models::bert::BertModel;

/// Sequences per forward pass. Larger batches gain little on CPU and the
/// attention scores grow with batch × length².
const BATCH_SIZE: usize = 32;

/// Groups sequence indices into batches of similar lengths (longest first),
/// so little compute goes to padding.
pub(super) fn plan(lengths: &[usize]) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.sort_by_key(|&index| std::cmp::Reverse(lengths[index]));
    order.chunks(BATCH_SIZE).map(<[usize]>::to_vec).collect()
}

/// One unit-length embedding per sequence, in order. Sequences are padded
/// on the right with `pad_id` and masked out of attention and pooling, so a
/// sequence embeds the same whatever it is batched with.
pub(super) fn embed(
    model: &BertModel,
    sequences: &[&[u32]],
    pad_id: u32,
) -> candle_core::Result<Vec<Vec<f32>>> {
    let width = sequences.iter().map(|ids| ids.len()).max().unwrap_or(0);
    let mut ids = Vec::with_capacity(sequences.len() * width);
    let mut mask = Vec::with_capacity(sequences.len() * width);
    for sequence in sequences {
        let padding = width - sequence.len();
        ids.extend_from_slice(sequence);
        ids.extend(std::iter::repeat_n(pad_id, padding));
        mask.extend(std::iter::repeat_n(1f32, sequence.len()));
        mask.extend(std::iter::repeat_n(0f32, padding));
    }
    let shape = (sequences.len(), width);
    let ids = Tensor::from_vec(ids, shape, &model.device)?;
    let mask = Tensor::from_vec(mask, shape, &model.device)?;
    let hidden = model.forward(&ids, &ids.zeros_like()?, Some(&mask))?;

    let mask = mask.unsqueeze(D::Minus1)?;
    let sums = hidden.broadcast_mul(&mask)?.sum(1)?;
    let means = sums.broadcast_div(&mask.sum(1)?)?;
    // As torch's F.normalize: a zero vector stays zero instead of NaN.
    let norms = means.sqr()?.sum_keepdim(1)?.sqrt()?.maximum(1e-12)?;
    means.broadcast_div(&norms)?.to_vec2()
}
