//! PII and secret detection: `scan` runs each requested detector family once over the text
//! and resolves overlaps so that callers (redaction, policies) get a clean, sorted list.
//!
//! Families: `contact` (email), `numeric` (phone, card, SSN, IPv4 — one pass finds digit
//! runs, then each run is classified), `banking` (IBAN), `network` (IPv6) and `secrets`
//! (one combined regex for all token formats). Every regex is compiled once, lazily.

mod banking;
mod contact;
mod network;
mod numeric;
mod secrets;

use crate::Kind;
use std::collections::BTreeMap;

/// One match: byte offsets into the scanned text.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Finding {
    pub kind: Kind,
    pub start: usize,
    pub end: usize,
}

impl Finding {
    /// The matched text.
    pub fn text<'t>(&self, scanned: &'t str) -> &'t str {
        scanned.get(self.start..self.end).unwrap_or("")
    }
}

/// Scan `text` for the given kinds; findings sorted by start, non-overlapping (the longer
/// finding wins; at equal length the more specific kind wins, e.g. a card over a phone).
pub fn scan(text: &str, kinds: &[Kind]) -> Vec<Finding> {
    let wants = |k: Kind| kinds.contains(&k);
    let mut found = Vec::new();
    if wants(Kind::Email) {
        contact::find_emails(text, &mut found);
    }
    if [Kind::Phone, Kind::CreditCard, Kind::UsSsn, Kind::IpAddress]
        .iter()
        .any(|&k| wants(k))
    {
        numeric::find(text, kinds, &mut found);
    }
    if wants(Kind::Iban) {
        banking::find_ibans(text, &mut found);
    }
    if wants(Kind::IpAddress) {
        network::find_ipv6(text, &mut found);
    }
    if Kind::SECRETS.iter().any(|&k| wants(k)) {
        secrets::find(text, kinds, &mut found);
    }
    resolve_overlaps(found)
}

/// Keep a maximal set of non-overlapping findings, preferring longer then more specific ones.
fn resolve_overlaps(mut found: Vec<Finding>) -> Vec<Finding> {
    if found.len() <= 1 {
        return found;
    }
    found.sort_by(|a, b| {
        (b.end - b.start)
            .cmp(&(a.end - a.start))
            .then(b.kind.specificity().cmp(&a.kind.specificity()))
            .then(a.start.cmp(&b.start))
    });
    // start -> end of accepted findings; intervals in the map never overlap.
    let mut taken: BTreeMap<usize, usize> = BTreeMap::new();
    let mut kept = Vec::with_capacity(found.len());
    for f in found {
        let clashes_before = taken
            .range(..f.end)
            .next_back()
            .is_some_and(|(_, &end)| end > f.start);
        if !clashes_before {
            taken.insert(f.start, f.end);
            kept.push(f);
        }
    }
    kept.sort_by_key(|f| f.start);
    kept
}

/// True when the byte before `start` (if any) satisfies `pred`.
pub(crate) fn byte_before(text: &str, start: usize, pred: impl Fn(u8) -> bool) -> bool {
    start > 0 && text.as_bytes().get(start - 1).copied().is_some_and(pred)
}

/// True when the byte at `end` (if any) satisfies `pred`.
pub(crate) fn byte_at(text: &str, end: usize, pred: impl Fn(u8) -> bool) -> bool {
    text.as_bytes().get(end).copied().is_some_and(pred)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(kind: Kind, start: usize, end: usize) -> Finding {
        Finding { kind, start, end }
    }

    #[test]
    fn overlaps_keep_longer_then_more_specific() {
        let kept = resolve_overlaps(vec![
            f(Kind::Phone, 0, 10),
            f(Kind::CreditCard, 0, 10),
            f(Kind::IpAddress, 5, 30),
            f(Kind::Email, 40, 50),
        ]);
        assert_eq!(
            kept,
            vec![f(Kind::IpAddress, 5, 30), f(Kind::Email, 40, 50)]
        );
        let kept = resolve_overlaps(vec![f(Kind::Phone, 0, 10), f(Kind::CreditCard, 0, 10)]);
        assert_eq!(kept, vec![f(Kind::CreditCard, 0, 10)]);
        let kept = resolve_overlaps(vec![f(Kind::Phone, 0, 10), f(Kind::Email, 10, 20)]);
        assert_eq!(kept.len(), 2);
    }

    #[test]
    fn scan_only_runs_requested_kinds() {
        let text = "mail a@example.com or call +44 20 7946 0958";
        let only_email = scan(text, &[Kind::Email]);
        assert_eq!(only_email.len(), 1);
        assert_eq!(only_email[0].text(text), "a@example.com");
        let all = scan(text, Kind::ALL);
        assert_eq!(all.len(), 2);
        assert_eq!(all[1].text(text), "+44 20 7946 0958");
        assert!(scan("", Kind::ALL).is_empty());
    }
}
