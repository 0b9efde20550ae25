//! Deterministic stand-ins for what a real model computes: digests and embeddings that are
//! the same on every run and machine, from a hash fixed here (std's `DefaultHasher` may
//! change between Rust releases).

/// FNV-1a, 64 bits.
fn stable_hash(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// SplitMix64: a stream of well-mixed numbers from one seed.
struct SplitMix(u64);

impl Iterator for SplitMix {
    type Item = u64;

    fn next(&mut self) -> Option<u64> {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        Some(z ^ (z >> 31))
    }
}

/// A sha256-shaped digest (64 hex digits) standing for `seed`'s content.
pub(crate) fn digest(seed: &str) -> String {
    SplitMix(stable_hash(seed.as_bytes()))
        .take(4)
        .map(|word| format!("{word:016x}"))
        .collect()
}

/// A token id for `token`, below the vocabulary size of llama 3 (128 256).
pub(crate) fn token_id(token: &str) -> u32 {
    const VOCABULARY: u64 = 128_256;
    (stable_hash(token.as_bytes()) % VOCABULARY) as u32
}

/// An L2-normalised vector of `dimensions` numbers for `text`, built by feature hashing:
/// the sum of one pseudo-random vector per lower-cased word. Equal texts get equal vectors,
/// and texts sharing words get closer vectors than unrelated ones, so retrieval tests can
/// expect a query to find the passage that shares its words.
pub(crate) fn embedding(text: &str, dimensions: usize) -> Vec<f32> {
    let lowered = text.to_lowercase();
    let mut words: Vec<&str> = lowered
        .split(|c: char| !c.is_alphanumeric())
        .filter(|word| !word.is_empty())
        .collect();
    if words.is_empty() {
        // Punctuation or nothing at all: still a vector, still determined by the text.
        words.push(&lowered);
    }
    let mut vector = vec![0.0f64; dimensions];
    for word in words {
        for (value, random) in vector
            .iter_mut()
            .zip(SplitMix(stable_hash(word.as_bytes())))
        {
            // The top 53 bits as a number in [-1, 1).
            *value += (random >> 11) as f64 / (1u64 << 52) as f64 - 1.0;
        }
    }
    normalised(&vector)
}

/// `vector` scaled to length 1 (left as is when it is all zeros), as Ollama returns them.
pub(crate) fn normalised(vector: &[f64]) -> Vec<f32> {
    let norm = vector.iter().map(|v| v * v).sum::<f64>().sqrt().max(1e-12);
    vector.iter().map(|v| (v / norm) as f32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cosine(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    #[test]
    fn embeddings_are_unit_length_and_closer_when_texts_share_words() {
        let llamas = embedding("Llamas live in the Andes.", 384);
        let query = embedding("where do llamas live", 384);
        let other = embedding("Rust compiles to WebAssembly", 384);
        assert_eq!(llamas.len(), 384);
        assert!((cosine(&llamas, &llamas) - 1.0).abs() < 1e-5);
        assert!(cosine(&llamas, &query) > cosine(&other, &query) + 0.2);
        assert_eq!(embedding("?!", 8), embedding("?!", 8));
    }

    #[test]
    fn digests_are_stable_sha256_shapes() {
        assert_eq!(digest("a").len(), 64);
        assert_eq!(digest("a"), digest("a"));
        assert_ne!(digest("a"), digest("b"));
    }
}
