#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Properties of money arithmetic: exact, monotonic, additive to within one nano-dollar,
//! and printed without loss.

use keel_core::chat::{PromptTokensDetails, Usage};
use keel_core::money::Nanos;
use keel_core::prices::ModelPrice;
use proptest::prelude::*;

fn parse_dollars(s: &str) -> i64 {
    let (whole, frac) = s.split_once('.').unwrap();
    let mut frac = frac.to_string();
    while frac.len() < 9 {
        frac.push('0');
    }
    whole.parse::<i64>().unwrap() * 1_000_000_000 + frac.parse::<i64>().unwrap()
}

proptest! {
    #[test]
    fn dollar_strings_round_trip(n in 0i64..i64::MAX / 2) {
        prop_assert_eq!(parse_dollars(&Nanos(n).to_dollar_string()), n);
    }

    #[test]
    fn token_cost_is_the_rounded_exact_product(tokens in 0u64..10_000_000_000, price in 0i64..1_000_000_000_000) {
        let got = Nanos::for_tokens(tokens, Nanos(price)).0 as i128;
        let exact_times_1e6 = tokens as i128 * price as i128;
        // got = round(exact): |got*1e6 - exact*1e6| <= 0.5e6
        prop_assert!((got * 1_000_000 - exact_times_1e6).abs() <= 500_000);
    }

    #[test]
    fn token_cost_is_monotonic_and_additive(a in 0u64..1_000_000_000, b in 0u64..1_000_000_000, price in 0i64..100_000_000_000) {
        let p = Nanos(price);
        let ab = Nanos::for_tokens(a + b, p).0;
        let sum = Nanos::for_tokens(a, p).0 + Nanos::for_tokens(b, p).0;
        prop_assert!(ab >= Nanos::for_tokens(a, p).0);
        prop_assert!((ab - sum).abs() <= 1);
    }

    #[test]
    fn caching_never_costs_more_when_the_cached_price_is_lower(
        prompt in 0u64..10_000_000, cached_share in 0u64..=100, completion in 0u64..1_000_000,
        input in 0i64..20_000_000_000, discount in 0i64..=100,
    ) {
        let price = ModelPrice {
            input_per_mtok: Nanos(input),
            output_per_mtok: Nanos(input * 4),
            cached_input_per_mtok: Some(Nanos(input * discount / 100)),
        };
        let plain = Usage::new(prompt, completion);
        let mut cached = plain;
        cached.prompt_tokens_details = Some(PromptTokensDetails { cached_tokens: prompt * cached_share / 100 });
        // Rounding each part separately can add at most one nano per part.
        prop_assert!(price.cost(&cached).0 <= price.cost(&plain).0 + 2);
    }
}
