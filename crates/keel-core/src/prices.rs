//! Prices: the built-in, dated price table and the per-call cost computation.
//!
//! The table ships as a data file (`data/prices.toml`) compiled into the binary, so a
//! price update is a one-file change with a reviewable diff. Config can override any
//! model. A model with no known price is *unpriced*: its calls are recorded with tokens
//! and no cost, never as $0.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::chat::Usage;
use crate::lifecycle::{Lifecycle, LifecycleSource, RawLifecycle};
use crate::money::Nanos;

const BUILTIN_PRICES: &str = include_str!("../data/prices.toml");

/// What a model costs, per million tokens, in nano-dollars.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelPrice {
    pub input_per_mtok: Nanos,
    pub output_per_mtok: Nanos,
    /// Price of prompt tokens served from the provider's cache; `None` = input price.
    pub cached_input_per_mtok: Option<Nanos>,
}

impl ModelPrice {
    /// The exact cost of a call's usage. Cached tokens (a subset of prompt tokens) are
    /// charged at the cached price; reasoning tokens are part of completion tokens.
    pub fn cost(&self, usage: &Usage) -> Nanos {
        let cached = usage.cached_tokens().min(usage.prompt_tokens);
        let uncached = usage.prompt_tokens - cached;
        let cached_price = self.cached_input_per_mtok.unwrap_or(self.input_per_mtok);
        Nanos::for_tokens(uncached, self.input_per_mtok)
            .saturating_add(Nanos::for_tokens(cached, cached_price))
            .saturating_add(Nanos::for_tokens(
                usage.completion_tokens,
                self.output_per_mtok,
            ))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTable {
    as_of: String,
    /// When the lifecycle fields were last checked against the providers' pages.
    lifecycle_as_of: Option<String>,
    models: BTreeMap<String, RawPrice>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPrice {
    input: f64,
    output: f64,
    cached_input: Option<f64>,
    /// Lifecycle (see [`crate::lifecycle`]): `YYYY-MM-DD` dates and the successor.
    deprecated: Option<String>,
    retires: Option<String>,
    successor: Option<String>,
}

/// The built-in price table, with each model's lifecycle where the provider published one.
#[derive(Debug, Clone)]
pub struct PriceTable {
    pub as_of: String,
    /// When the lifecycle dates were checked (the prices' date when not given).
    pub lifecycle_as_of: String,
    prices: BTreeMap<String, ModelPrice>,
    lifecycle: BTreeMap<String, Lifecycle>,
}

#[derive(Debug, thiserror::Error)]
#[error("built-in price table is invalid: {0}")]
pub struct PriceTableError(String);

impl PriceTable {
    /// The table compiled into this binary.
    pub fn builtin() -> Result<PriceTable, PriceTableError> {
        Self::parse(BUILTIN_PRICES)
    }

    pub fn parse(text: &str) -> Result<PriceTable, PriceTableError> {
        let raw: RawTable = toml::from_str(text).map_err(|e| PriceTableError(e.to_string()))?;
        let lifecycle_as_of = raw.lifecycle_as_of.unwrap_or_else(|| raw.as_of.clone());
        let mut prices = BTreeMap::new();
        let mut lifecycle = BTreeMap::new();
        for (name, p) in raw.models {
            let life = RawLifecycle {
                deprecated: p.deprecated.as_deref(),
                retires: p.retires.as_deref(),
                successor: p.successor.as_deref(),
            }
            .resolve(LifecycleSource::Builtin {
                as_of: lifecycle_as_of.clone(),
            })
            .map_err(|issues| {
                let i = &issues[0];
                PriceTableError(format!("models.{name}.{}: {}", i.key, i.message))
            })?;
            if let Some(l) = life {
                lifecycle.insert(name.clone(), l);
            }
            let conv = |v: f64, what: &str| {
                Nanos::from_dollars(v).ok_or_else(|| {
                    PriceTableError(format!("models.{name}.{what} = {v} is not a price"))
                })
            };
            let price = ModelPrice {
                input_per_mtok: conv(p.input, "input")?,
                output_per_mtok: conv(p.output, "output")?,
                cached_input_per_mtok: p
                    .cached_input
                    .map(|c| conv(c, "cached_input"))
                    .transpose()?,
            };
            prices.insert(name, price);
        }
        Ok(PriceTable {
            as_of: raw.as_of,
            lifecycle_as_of,
            prices,
            lifecycle,
        })
    }

    /// The price of an upstream model id: exact match, else the longest table entry
    /// that is a prefix followed by `-` (dated snapshots such as `gpt-4o-2024-08-06`).
    pub fn lookup(&self, model: &str) -> Option<ModelPrice> {
        longest_match(&self.prices, model).copied()
    }

    /// The lifecycle of an upstream model id, matched as [`PriceTable::lookup`] matches.
    pub fn lookup_lifecycle(&self, model: &str) -> Option<Lifecycle> {
        longest_match(&self.lifecycle, model).cloned()
    }

    pub fn len(&self) -> usize {
        self.prices.len()
    }

    pub fn is_empty(&self) -> bool {
        self.prices.is_empty()
    }
}

/// The entry for `model`: exact, else the longest name that prefixes it followed by `-`.
fn longest_match<'a, T>(table: &'a BTreeMap<String, T>, model: &str) -> Option<&'a T> {
    if let Some(v) = table.get(model) {
        return Some(v);
    }
    table
        .iter()
        .filter(|(name, _)| {
            model.len() > name.len()
                && model.starts_with(name.as_str())
                && model.as_bytes()[name.len()] == b'-'
        })
        .max_by_key(|(name, _)| name.len())
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::PromptTokensDetails;

    #[test]
    fn builtin_table_parses_and_covers_three_providers() {
        let t = PriceTable::builtin().unwrap();
        assert!(t.len() > 20);
        assert!(t.lookup("gpt-4o-mini").is_some());
        assert!(t.lookup("claude-sonnet-4-5").is_some());
        assert!(t.lookup("gemini-2.5-pro").is_some());
        assert!(!t.as_of.is_empty());
    }

    #[test]
    fn dated_snapshots_match_the_longest_prefix() {
        let t = PriceTable::builtin().unwrap();
        let mini = t.lookup("gpt-4o-mini-2024-07-18").unwrap();
        assert_eq!(mini.input_per_mtok, Nanos(150_000_000));
        let full = t.lookup("gpt-4o-2024-08-06").unwrap();
        assert_eq!(full.input_per_mtok, Nanos(2_500_000_000));
        assert!(t.lookup("gpt-4ox").is_none());
        assert!(t.lookup("mock-1").is_none());
    }

    #[test]
    fn the_table_carries_lifecycle_dates_matched_like_prices() {
        let t = PriceTable::builtin().unwrap();
        let mini = t.lookup_lifecycle("gpt-4o-mini-2024-07-18").unwrap();
        assert!(mini.retires.is_some());
        assert!(mini.successor.is_some());
        assert!(matches!(mini.source, LifecycleSource::Builtin { .. }));
        assert!(t.lookup_lifecycle("gpt-4o-mini").is_some());
        assert!(t.lookup_lifecycle("mock-1").is_none());
        let bad = "as_of = \"x\"\n[models.m]\ninput = 1\noutput = 1\nretires = \"soon\"\n";
        let e = PriceTable::parse(bad).unwrap_err().to_string();
        assert!(e.contains("models.m.retires"), "{e}");
    }

    #[test]
    fn cached_tokens_are_charged_at_the_cached_price() {
        let p = ModelPrice {
            input_per_mtok: Nanos(1_000_000_000),
            output_per_mtok: Nanos(4_000_000_000),
            cached_input_per_mtok: Some(Nanos(100_000_000)),
        };
        let mut u = Usage::new(1_000_000, 1_000);
        u.prompt_tokens_details = Some(PromptTokensDetails {
            cached_tokens: 500_000,
        });
        // 500k uncached at $1 + 500k cached at $0.10 + 1k out at $4 = 0.5 + 0.05 + 0.004
        assert_eq!(p.cost(&u), Nanos(554_000_000));
    }
}
