//! Prices: the built-in, dated price table and the per-call cost computation.
//!
//! The table ships as a data file (`data/prices.toml`) compiled into the binary, so a
//! price update is a one-file change with a reviewable diff. Config can override any
//! model. A model with no known price is *unpriced*: its calls are recorded with tokens
//! and no cost, never as $0.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::chat::Usage;
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
    models: BTreeMap<String, RawPrice>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPrice {
    input: f64,
    output: f64,
    cached_input: Option<f64>,
}

/// The built-in price table.
#[derive(Debug, Clone)]
pub struct PriceTable {
    pub as_of: String,
    prices: BTreeMap<String, ModelPrice>,
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
        let mut prices = BTreeMap::new();
        for (name, p) in raw.models {
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
            prices,
        })
    }

    /// The price of an upstream model id: exact match, else the longest table entry
    /// that is a prefix followed by `-` (dated snapshots such as `gpt-4o-2024-08-06`).
    pub fn lookup(&self, model: &str) -> Option<ModelPrice> {
        if let Some(p) = self.prices.get(model) {
            return Some(*p);
        }
        self.prices
            .iter()
            .filter(|(name, _)| {
                model.len() > name.len()
                    && model.starts_with(name.as_str())
                    && model.as_bytes()[name.len()] == b'-'
            })
            .max_by_key(|(name, _)| name.len())
            .map(|(_, p)| *p)
    }

    pub fn len(&self) -> usize {
        self.prices.len()
    }

    pub fn is_empty(&self) -> bool {
        self.prices.is_empty()
    }
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
