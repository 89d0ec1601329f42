//! Traffic-split overrides ("canaries"): the arithmetic shared by `keel function canary`,
//! the store that keeps the override, and the gateway that serves it.
//!
//! A function's configured weights are its default split. An operator can move it in
//! steps without editing `keel.toml`: `canary F V --percent P` gives variant `V` P % of
//! the traffic and lets the other variants share the rest in proportion to their
//! configured weights. The result is a list of per-variant weights in basis points
//! (summing to exactly [`SPLIT_TOTAL`] = 10,000, the sticky hash's bucket count), so
//! each basis point owns exactly one bucket and moving V from 10 % to 20 % moves only
//! the users of the buckets that changed owner.
//!
//! This module is pure: parsing a percentage, computing a canary, checking a stored
//! override against the current config, and rendering weights as `a=90,b=10`.

use crate::config::FunctionConfig;

/// The total of an override's weights (basis points: 1 = 0.01 % of traffic).
pub const SPLIT_TOTAL: u32 = 10_000;

/// Why a split cannot be computed or applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SplitError {
    #[error("`{given}` is not a percentage; use a number from 0 to 100 (e.g. 10 or 2.5)")]
    BadPercent { given: String },
    #[error(
        "function `{function}` has no variant `{variant}`; its variants are: {}",
        known.join(", ")
    )]
    UnknownVariant {
        function: String,
        variant: String,
        known: Vec<String>,
    },
    #[error(
        "cannot give `{variant}` {percent} % of `{function}`: the other variants ({}) all have weight 0 in keel.toml, so nothing says how to share the remaining {rest} %; give one of them a weight in keel.toml, or use --percent 100",
        others.join(", "),
        percent = format_bps(*bps),
        rest = format_bps(SPLIT_TOTAL - *bps)
    )]
    OthersHaveNoWeight {
        function: String,
        variant: String,
        bps: u32,
        others: Vec<String>,
    },
}

/// Parse `"10"`, `"2.5"` or `"10%"` into basis points (`1000`, `250`); at most two
/// decimals are kept (rounded), anything outside 0..=100 is refused.
pub fn parse_percent(s: &str) -> Result<u32, SplitError> {
    let bad = || SplitError::BadPercent { given: s.into() };
    let p: f64 = s
        .trim()
        .trim_end_matches('%')
        .trim()
        .parse()
        .map_err(|_| bad())?;
    if !p.is_finite() || !(0.0..=100.0).contains(&p) {
        return Err(bad());
    }
    // In range, so the product is in 0..=10_000 and the cast is exact.
    Ok((p * 100.0).round() as u32)
}

/// The weights (basis points, in config order) that give `variant` `bps` of the traffic
/// and share the rest among the other variants by their configured weights (largest
/// remainder, ties to the earlier variant, so the total is exactly [`SPLIT_TOTAL`]).
pub fn canary_weights(
    f: &FunctionConfig,
    variant: &str,
    bps: u32,
) -> Result<Vec<(String, u32)>, SplitError> {
    let bps = bps.min(SPLIT_TOTAL);
    let Some(target) = f.variants.iter().position(|v| v.name == variant) else {
        return Err(SplitError::UnknownVariant {
            function: f.name.clone(),
            variant: variant.into(),
            known: f.variants.iter().map(|v| v.name.clone()).collect(),
        });
    };
    let rest = u64::from(SPLIT_TOTAL - bps);
    let others: u64 = f
        .variants
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != target)
        .map(|(_, v)| u64::from(v.weight))
        .sum();
    if others == 0 && rest > 0 {
        return Err(SplitError::OthersHaveNoWeight {
            function: f.name.clone(),
            variant: variant.into(),
            bps,
            others: f
                .variants
                .iter()
                .filter(|v| v.name != variant)
                .map(|v| v.name.clone())
                .collect(),
        });
    }
    // Floors first, then hand out what is left by largest remainder.
    let mut out: Vec<(String, u32)> = Vec::with_capacity(f.variants.len());
    let mut remainders: Vec<(u64, usize)> = Vec::new();
    let mut given = u64::from(bps);
    for (i, v) in f.variants.iter().enumerate() {
        if i == target {
            out.push((v.name.clone(), bps));
            continue;
        }
        if others == 0 {
            out.push((v.name.clone(), 0));
            continue;
        }
        let exact = rest * u64::from(v.weight);
        let floor = exact / others;
        given += floor;
        remainders.push((exact % others, i));
        out.push((v.name.clone(), u32::try_from(floor).unwrap_or(0)));
    }
    remainders.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let mut left = u64::from(SPLIT_TOTAL).saturating_sub(given);
    for (r, i) in remainders {
        if left == 0 {
            break;
        }
        if r > 0 {
            out[i].1 += 1;
            left -= 1;
        }
    }
    Ok(out)
}

/// The configured weights of `f`, in config order.
pub fn config_weights(f: &FunctionConfig) -> Vec<(String, u32)> {
    f.variants
        .iter()
        .map(|v| (v.name.clone(), v.weight))
        .collect()
}

/// A stored override checked against the current config: one weight per configured
/// variant (in config order; variants it does not name get 0). `Err` says why it cannot
/// apply (it names a variant keel.toml no longer has, or leaves no weight).
pub fn resolve_override(f: &FunctionConfig, stored: &[(String, u32)]) -> Result<Vec<u32>, String> {
    if let Some((gone, _)) = stored.iter().find(|(n, _)| f.variant(n).is_none()) {
        return Err(format!(
            "the stored split of function `{}` names variant `{gone}`, which keel.toml no longer has; serving the configured weights — run `keel function canary {} VARIANT --percent P` or `--reset`",
            f.name, f.name
        ));
    }
    let weights: Vec<u32> = f
        .variants
        .iter()
        .map(|v| {
            stored
                .iter()
                .find(|(n, _)| *n == v.name)
                .map_or(0, |(_, w)| *w)
        })
        .collect();
    if weights.iter().all(|w| *w == 0) {
        return Err(format!(
            "the stored split of function `{}` gives every variant weight 0; serving the configured weights — run `keel function canary {} --reset`",
            f.name, f.name
        ));
    }
    Ok(weights)
}

/// `control=90,candidate=10`: each variant's share of the total, in percent with at
/// most two decimals.
pub fn format_shares(weights: &[(String, u32)]) -> String {
    let total: u64 = weights.iter().map(|(_, w)| u64::from(*w)).sum();
    weights
        .iter()
        .map(|(n, w)| {
            let bps = (u64::from(*w) * u64::from(SPLIT_TOTAL) + total / 2)
                .checked_div(total)
                .unwrap_or(0);
            format!(
                "{n}={}",
                format_bps(u32::try_from(bps).unwrap_or(SPLIT_TOTAL))
            )
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Basis points as a percentage: `1000` → `10`, `250` → `2.5`, `1` → `0.01`.
pub fn format_bps(bps: u32) -> String {
    let (whole, frac) = (bps / 100, bps % 100);
    match frac {
        0 => whole.to_string(),
        f if f % 10 == 0 => format!("{whole}.{}", f / 10),
        f => format!("{whole}.{f:02}"),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::Config;

    fn function(weights: &[(&str, i64)]) -> FunctionConfig {
        let mut text = String::from(
            "[providers.up]\nkind = \"mock\"\n[models.m]\nprovider = \"up\"\n[functions.f]\n",
        );
        for (n, w) in weights {
            text.push_str(&format!(
                "[[functions.f.variants]]\nname = \"{n}\"\nprompt = \"p\"\nmodel = \"m\"\nweight = {w}\n"
            ));
        }
        Config::from_toml(&text, Path::new("keel.toml"))
            .unwrap()
            .functions["f"]
            .clone()
    }

    fn pairs(v: &[(String, u32)]) -> Vec<(&str, u32)> {
        v.iter().map(|(n, w)| (n.as_str(), *w)).collect()
    }

    #[test]
    fn percentages_parse_to_basis_points_and_bad_ones_are_refused() {
        assert_eq!(parse_percent("10"), Ok(1000));
        assert_eq!(parse_percent("2.5"), Ok(250));
        assert_eq!(parse_percent("0.01"), Ok(1));
        assert_eq!(parse_percent("100%"), Ok(10_000));
        assert_eq!(parse_percent("0"), Ok(0));
        for bad in ["-1", "100.5", "150", "ten", "", "NaN", "inf"] {
            let e = parse_percent(bad).unwrap_err();
            assert!(e.to_string().contains("from 0 to 100"), "{bad}: {e}");
        }
    }

    #[test]
    fn the_canary_gets_its_share_and_the_others_split_the_rest_by_weight() {
        let f = function(&[("control", 90), ("candidate", 10)]);
        let w = canary_weights(&f, "candidate", 2500).unwrap();
        assert_eq!(pairs(&w), [("control", 7500), ("candidate", 2500)]);
        let f = function(&[("a", 2), ("b", 1), ("c", 1), ("new", 0)]);
        let w = canary_weights(&f, "new", 1000).unwrap();
        assert_eq!(
            pairs(&w),
            [("a", 4500), ("b", 2250), ("c", 2250), ("new", 1000)]
        );
        // Remainders: 10,000 · 1/3 each does not divide; the total stays exact.
        let f = function(&[("a", 1), ("b", 1), ("c", 1), ("x", 1)]);
        let w = canary_weights(&f, "x", 0).unwrap();
        assert_eq!(pairs(&w), [("a", 3334), ("b", 3333), ("c", 3333), ("x", 0)]);
        assert_eq!(w.iter().map(|(_, w)| w).sum::<u32>(), SPLIT_TOTAL);
        assert_eq!(format_shares(&w), "a=33.34,b=33.33,c=33.33,x=0");
    }

    #[test]
    fn a_canary_needs_other_weights_unless_it_takes_everything() {
        let f = function(&[("control", 0), ("candidate", 5)]);
        let e = canary_weights(&f, "candidate", 5000).unwrap_err();
        assert!(
            e.to_string()
                .contains("the other variants (control) all have weight 0"),
            "{e}"
        );
        let w = canary_weights(&f, "candidate", 10_000).unwrap();
        assert_eq!(pairs(&w), [("control", 0), ("candidate", 10_000)]);
        let e = canary_weights(&f, "nope", 10).unwrap_err();
        assert_eq!(
            e.to_string(),
            "function `f` has no variant `nope`; its variants are: control, candidate"
        );
    }

    #[test]
    fn a_stored_override_applies_only_to_the_variants_keel_toml_has() {
        let f = function(&[("control", 90), ("candidate", 10)]);
        let stored = vec![("candidate".to_string(), 10_000)];
        assert_eq!(resolve_override(&f, &stored), Ok(vec![0, 10_000]));
        let gone = vec![("old".to_string(), 5000), ("control".to_string(), 5000)];
        let e = resolve_override(&f, &gone).unwrap_err();
        assert!(e.contains("names variant `old`"), "{e}");
        let zero = vec![("control".to_string(), 0)];
        assert!(resolve_override(&f, &zero).is_err());
    }

    #[test]
    fn shares_render_as_percentages() {
        assert_eq!(format_bps(1000), "10");
        assert_eq!(format_bps(250), "2.5");
        assert_eq!(format_bps(1), "0.01");
        assert_eq!(format_bps(10_000), "100");
        let f = function(&[("control", 90), ("candidate", 10)]);
        assert_eq!(
            format_shares(&config_weights(&f)),
            "control=90,candidate=10"
        );
        let f = function(&[("a", 2), ("b", 1)]);
        assert_eq!(format_shares(&config_weights(&f)), "a=66.67,b=33.33");
    }
}
