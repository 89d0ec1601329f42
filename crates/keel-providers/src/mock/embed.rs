//! The mock's embeddings: deterministic unit vectors, so tests can assert on them.
//!
//! Each input's vector is a pure function of the model, the input text (token ids as
//! numbers) and the size: SHA-256 of `model \0 text \0 block` gives 8 values per block,
//! each a u32 mapped to [-1, 1], and the vector is scaled to length 1. Same input, same
//! vector; different inputs, unrelated vectors. Size: `dimensions`, else
//! [`MOCK_EMBEDDING_DIMS`]. Usage counts the mock's tokens of every input.

use keel_core::embeddings::{Embedding, EmbeddingRequest, EmbeddingResponse, EmbeddingUsage};
use sha2::{Digest, Sha256};

/// The vector size when the request sets no `dimensions`.
pub const MOCK_EMBEDDING_DIMS: u32 = 64;
/// The largest `dimensions` the mock answers (OpenAI's largest model has 3,072).
pub const MOCK_MAX_DIMS: u32 = 4096;

/// The vector of one input.
pub fn vector(model: &str, text: &str, dims: u32) -> Vec<f32> {
    let dims = dims.min(MOCK_MAX_DIMS) as usize;
    let mut v = Vec::with_capacity(dims);
    let mut block: u32 = 0;
    while v.len() < dims {
        let digest = Sha256::new()
            .chain_update(model.as_bytes())
            .chain_update([0])
            .chain_update(text.as_bytes())
            .chain_update([0])
            .chain_update(block.to_le_bytes())
            .finalize();
        for word in digest.chunks_exact(4) {
            if v.len() == dims {
                break;
            }
            let n = u32::from_le_bytes([word[0], word[1], word[2], word[3]]);
            v.push((f64::from(n) / f64::from(u32::MAX) * 2.0 - 1.0) as f32);
        }
        block += 1;
    }
    let norm = v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    if norm > 0.0 {
        for x in &mut v {
            *x = (f64::from(*x) / norm) as f32;
        }
    }
    v
}

/// The mock's answer to an embeddings request.
pub fn embed(req: &EmbeddingRequest) -> EmbeddingResponse {
    let dims = req.dimensions.unwrap_or(MOCK_EMBEDDING_DIMS);
    let texts = req.input.texts();
    let tokens: u64 = texts.iter().map(|t| super::tokens::count(t)).sum();
    let data = texts
        .iter()
        .enumerate()
        .map(|(i, t)| Embedding::new(i, vector(&req.model, t, dims), req.wants_base64()))
        .collect();
    EmbeddingResponse {
        object: "list".into(),
        data,
        model: req.model.clone(),
        usage: EmbeddingUsage {
            prompt_tokens: tokens,
            total_tokens: tokens,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_are_deterministic_unit_length_and_sized() {
        let a = vector("m", "hello", 64);
        assert_eq!(a, vector("m", "hello", 64));
        assert_ne!(a, vector("m", "hello!", 64));
        assert_ne!(a, vector("other", "hello", 64));
        assert_eq!(a.len(), 64);
        let norm: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "{norm}");
        assert_eq!(vector("m", "x", 3).len(), 3);
    }
}
