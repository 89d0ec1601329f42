//! Deterministic sampling: whether a call is in a named sample, decided from the
//! sample's name and the call's request id alone. The same call gets the same answer
//! on every replica and on every re-scan, so a sample never changes after the fact, and
//! two samples (an online eval, a review queue) draw independently.

use sha2::{Digest, Sha256};

/// Whether the call `request_id` is in the sample `name` at `rate` (0..=1).
pub fn in_sample(name: &str, request_id: &str, rate: f64) -> bool {
    if rate >= 1.0 {
        return true;
    }
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([0u8]);
    h.update(request_id.as_bytes());
    let digest = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    let point = u64::from_be_bytes(first) as f64 / 18_446_744_073_709_551_616.0;
    point < rate
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_share_drawn_is_the_rate_and_the_same_each_time() {
        let ids: Vec<String> = (0..20_000).map(|i| format!("req-{i}")).collect();
        let drawn = ids.iter().filter(|id| in_sample("q", id, 0.1)).count();
        assert!(
            (1_800..=2_200).contains(&drawn),
            "{drawn} of 20,000 at 10 %"
        );
        let again = ids.iter().filter(|id| in_sample("q", id, 0.1)).count();
        assert_eq!(drawn, again);
        let other = ids
            .iter()
            .filter(|id| in_sample("q", id, 0.1) && in_sample("r", id, 0.1))
            .count();
        assert!(
            other < 400,
            "two samples draw independently: {other} in both"
        );
        assert!(ids.iter().all(|id| in_sample("q", id, 1.0)));
        assert!(!ids.iter().any(|id| in_sample("q", id, 0.0)));
    }
}
