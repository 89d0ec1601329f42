//! Text similarity: normalized Levenshtein and ROUGE-L.
//!
//! - Levenshtein similarity: `1 - distance / max(len)`, in characters, on the trimmed
//!   texts (two empty texts are identical: 1.0).
//! - ROUGE-L: the F1 of the longest common subsequence of word tokens (lowercase runs of
//!   letters and digits): `P = lcs / candidate tokens`, `R = lcs / reference tokens`,
//!   `F = 2PR / (P + R)`; 1.0 for two texts without tokens, 0.0 when only one has none.

/// Normalized Levenshtein similarity of two texts, in 0..=1.
pub fn levenshtein_similarity(a: &str, b: &str) -> f64 {
    strsim::normalized_levenshtein(a.trim(), b.trim())
}

/// Lowercase word tokens: runs of alphanumeric characters.
pub fn word_tokens(text: &str) -> Vec<String> {
    text.to_lowercase()
        .split(|c: char| !c.is_alphanumeric())
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect()
}

/// The length of the longest common subsequence (two rows of the classic table).
fn lcs_len(a: &[String], b: &[String]) -> usize {
    let mut prev = vec![0usize; b.len() + 1];
    let mut cur = vec![0usize; b.len() + 1];
    for x in a {
        for (j, y) in b.iter().enumerate() {
            cur[j + 1] = if x == y {
                prev[j] + 1
            } else {
                cur[j].max(prev[j + 1])
            };
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// ROUGE-L F1 of `candidate` against `reference`, in 0..=1.
pub fn rouge_l_f1(candidate: &str, reference: &str) -> f64 {
    let (c, r) = (word_tokens(candidate), word_tokens(reference));
    match (c.is_empty(), r.is_empty()) {
        (true, true) => return 1.0,
        (true, false) | (false, true) => return 0.0,
        _ => {}
    }
    let lcs = lcs_len(&c, &r) as f64;
    if lcs == 0.0 {
        return 0.0;
    }
    let (p, rec) = (lcs / c.len() as f64, lcs / r.len() as f64);
    2.0 * p * rec / (p + rec)
}
