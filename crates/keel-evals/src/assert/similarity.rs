//! Similarity against the expected answer: normalized Levenshtein and ROUGE-L.
//!
//! - Levenshtein similarity: `1 - distance / max(len)`, in characters, on the trimmed
//!   texts (two empty texts are identical: 1.0).
//! - ROUGE-L: the F1 of the longest common subsequence of word tokens (lowercase runs of
//!   letters and digits): `P = lcs / candidate tokens`, `R = lcs / reference tokens`,
//!   `F = 2PR / (P + R)`; 1.0 for two texts without tokens, 0.0 when only one has none.

use super::Outcome;
pub use keel_stats::text::{levenshtein_similarity, rouge_l_f1, word_tokens};

pub(crate) fn levenshtein(text: &str, expected: Option<&str>, threshold: f64) -> Outcome {
    let Some(expected) = expected else {
        return Outcome::cannot_evaluate("levenshtein needs `expected` in the case or `value`");
    };
    let sim = levenshtein_similarity(text, expected);
    Outcome::scored(
        sim >= threshold,
        sim,
        format!("levenshtein similarity {sim:.2} (threshold {threshold:.2})"),
        format!("reach levenshtein similarity {threshold:.2} to the expected answer"),
    )
}

pub(crate) fn rouge_l(text: &str, expected: Option<&str>, threshold: f64) -> Outcome {
    let Some(expected) = expected else {
        return Outcome::cannot_evaluate("rouge-l needs `expected` in the case or `value`");
    };
    let f = rouge_l_f1(text, expected);
    Outcome::scored(
        f >= threshold,
        f,
        format!("rouge-l {f:.2} (threshold {threshold:.2})"),
        format!("reach rouge-l {threshold:.2} against the expected answer"),
    )
}
