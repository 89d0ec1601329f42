//! Agreement between two raters on the same items: the share of items they label alike,
//! and Cohen's kappa, which discounts the agreement two raters would reach by chance
//! given how often each uses each label (Cohen, 1960). Kappa is 1 for perfect agreement,
//! 0 for chance level, negative below it; it is undefined when chance agreement is
//! certain (both raters gave every item the same one label), and then reported as
//! `None`, never as a number.

use std::collections::BTreeMap;

use serde::Serialize;

/// Two raters' agreement over the items both labelled.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Agreement {
    /// Items both raters labelled.
    pub n: u64,
    /// Share of those labelled alike.
    pub observed: f64,
    /// Agreement expected by chance from each rater's label shares.
    pub expected: f64,
    /// Cohen's kappa; `None` when `expected` is 1 (undefined).
    pub kappa: Option<f64>,
}

/// Agreement over `pairs` (one pair of labels per item); `None` when there are none.
pub fn cohen_kappa<L: Ord>(pairs: &[(L, L)]) -> Option<Agreement> {
    if pairs.is_empty() {
        return None;
    }
    let n = pairs.len() as f64;
    let mut first: BTreeMap<&L, f64> = BTreeMap::new();
    let mut second: BTreeMap<&L, f64> = BTreeMap::new();
    let mut same = 0.0;
    for (a, b) in pairs {
        *first.entry(a).or_default() += 1.0;
        *second.entry(b).or_default() += 1.0;
        if a == b {
            same += 1.0;
        }
    }
    let observed = same / n;
    let expected: f64 = first
        .iter()
        .map(|(label, ca)| ca / n * second.get(label).copied().unwrap_or(0.0) / n)
        .sum();
    let kappa = (expected < 1.0 - 1e-12).then(|| (observed - expected) / (1.0 - expected));
    Some(Agreement {
        n: pairs.len() as u64,
        observed,
        expected,
        kappa,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(counts: &[(&'static str, &'static str, usize)]) -> Vec<(&'static str, &'static str)> {
        counts
            .iter()
            .flat_map(|(a, b, n)| std::iter::repeat_n((*a, *b), *n))
            .collect()
    }

    #[test]
    fn the_textbook_table_gives_its_kappa() {
        // 50 items: both yes 20, yes/no 5, no/yes 10, both no 15 → p_o 0.7, p_e 0.5, κ 0.4.
        let a = cohen_kappa(&pairs(&[
            ("yes", "yes", 20),
            ("yes", "no", 5),
            ("no", "yes", 10),
            ("no", "no", 15),
        ]))
        .unwrap();
        assert_eq!(a.n, 50);
        assert!((a.observed - 0.7).abs() < 1e-12);
        assert!((a.expected - 0.5).abs() < 1e-12);
        assert!((a.kappa.unwrap() - 0.4).abs() < 1e-12);
    }

    #[test]
    fn three_labels_and_the_edges() {
        // Three categories (Fleiss' worked example shape): κ = (p_o − p_e)/(1 − p_e).
        let a = cohen_kappa(&pairs(&[
            ("good", "good", 10),
            ("bad", "bad", 6),
            ("unsure", "unsure", 2),
            ("good", "bad", 2),
        ]))
        .unwrap();
        let (po, pe) = (18.0 / 20.0, (12.0 * 10.0 + 6.0 * 8.0 + 2.0 * 2.0) / 400.0);
        assert!((a.kappa.unwrap() - (po - pe) / (1.0 - pe)).abs() < 1e-12);
        // Perfect agreement on two labels: κ = 1.
        assert_eq!(
            cohen_kappa(&pairs(&[("good", "good", 3), ("bad", "bad", 2)]))
                .unwrap()
                .kappa,
            Some(1.0)
        );
        // Always opposite on a 50/50 split: κ = −1.
        let opposite = cohen_kappa(&pairs(&[("good", "bad", 5), ("bad", "good", 5)])).unwrap();
        assert!((opposite.kappa.unwrap() + 1.0).abs() < 1e-12);
        // Everyone always says the same one label: chance agreement is certain, κ undefined.
        let one = cohen_kappa(&pairs(&[("good", "good", 7)])).unwrap();
        assert_eq!((one.observed, one.kappa), (1.0, None));
        assert!(cohen_kappa::<&str>(&[]).is_none());
    }
}
