//! Money as an exact integer of nano-dollars (1e-9 USD).
//!
//! Floats drift when summed over millions of calls and cannot be summed exactly in SQL;
//! an i64 of nano-dollars holds up to ~9.2 billion dollars exactly. Prices per million
//! tokens are held in nano-dollars per million tokens, so a per-call cost is one exact
//! integer multiplication and one rounded division.

use std::fmt;

use serde::{Deserialize, Serialize};

/// An amount of money in nano-dollars.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Nanos(pub i64);

pub const NANOS_PER_DOLLAR: i64 = 1_000_000_000;

impl Nanos {
    pub const ZERO: Nanos = Nanos(0);

    /// Convert a dollar amount given as a decimal float (a config or price-file value).
    /// Rounds to the nearest nano-dollar; `None` for negative, NaN or absurd values.
    pub fn from_dollars(usd: f64) -> Option<Nanos> {
        if !usd.is_finite() || !(0.0..=1.0e9).contains(&usd) {
            return None;
        }
        Some(Nanos((usd * NANOS_PER_DOLLAR as f64).round() as i64))
    }

    pub fn as_dollars(self) -> f64 {
        self.0 as f64 / NANOS_PER_DOLLAR as f64
    }

    pub fn saturating_add(self, other: Nanos) -> Nanos {
        Nanos(self.0.saturating_add(other.0))
    }

    /// The cost of `tokens` at `per_mtok` (a price per million tokens), rounded half up.
    pub fn for_tokens(tokens: u64, per_mtok: Nanos) -> Nanos {
        let exact = tokens as i128 * per_mtok.0 as i128;
        let rounded = (exact + 500_000) / 1_000_000;
        Nanos(rounded.clamp(0, i64::MAX as i128) as i64)
    }

    /// Dollars with up to 9 decimals, trailing zeros trimmed (at least 2 decimals kept):
    /// `0.000123`, `1.50`. Exact: no float formatting involved.
    pub fn to_dollar_string(self) -> String {
        self.dollars().to_string()
    }

    /// The same text as [`Nanos::to_dollar_string`], written where it is displayed
    /// without a string of its own (a response header per call formats it).
    pub fn dollars(self) -> Dollars {
        Dollars(self)
    }
}

/// [`Nanos`] displayed as dollars without a `$` (see [`Nanos::dollars`]).
#[derive(Debug, Clone, Copy)]
pub struct Dollars(Nanos);

impl fmt::Display for Dollars {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0 .0;
        let sign = if n < 0 { "-" } else { "" };
        let abs = n.unsigned_abs();
        let whole = abs / NANOS_PER_DOLLAR as u64;
        let mut frac = abs % NANOS_PER_DOLLAR as u64;
        let mut digits = 9;
        while digits > 2 && frac.is_multiple_of(10) {
            frac /= 10;
            digits -= 1;
        }
        write!(f, "{sign}{whole}.{frac:0digits$}")
    }
}

impl fmt::Display for Nanos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "${}", self.dollars())
    }
}

impl std::iter::Sum for Nanos {
    fn sum<I: Iterator<Item = Nanos>>(iter: I) -> Nanos {
        iter.fold(Nanos::ZERO, Nanos::saturating_add)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_convert_exactly() {
        assert_eq!(Nanos::from_dollars(0.15), Some(Nanos(150_000_000)));
        assert_eq!(Nanos::from_dollars(0.075), Some(Nanos(75_000_000)));
        assert_eq!(Nanos::from_dollars(-1.0), None);
        assert_eq!(Nanos::from_dollars(f64::NAN), None);
    }

    #[test]
    fn token_cost_rounds_half_up() {
        // 1000 tokens at $0.15/Mtok = $0.00015 = 150_000 nanos.
        assert_eq!(Nanos::for_tokens(1000, Nanos(150_000_000)), Nanos(150_000));
        // 1 token at $0.0005/Mtok = 0.5 nanos -> rounds to 1.
        assert_eq!(Nanos::for_tokens(1, Nanos(500_000)), Nanos(1));
        assert_eq!(Nanos::for_tokens(1, Nanos(499_999)), Nanos(0));
        assert_eq!(
            Nanos::for_tokens(u64::MAX, Nanos(i64::MAX)),
            Nanos(i64::MAX)
        );
    }

    #[test]
    fn dollar_strings_are_exact() {
        assert_eq!(Nanos(150_000).to_dollar_string(), "0.00015");
        assert_eq!(Nanos(1_500_000_000).to_dollar_string(), "1.50");
        assert_eq!(Nanos(1).to_dollar_string(), "0.000000001");
        assert_eq!(Nanos(0).to_string(), "$0.00");
        assert_eq!(Nanos(-2_500_000_000).to_dollar_string(), "-2.50");
        assert_eq!(Nanos(i64::MIN).to_dollar_string(), "-9223372036.854775808");
        assert_eq!(Nanos(123_456_789_010).to_dollar_string(), "123.45678901");
    }

    #[test]
    fn sums_are_exact_where_floats_drift() {
        let total: Nanos = std::iter::repeat_n(Nanos(100_000_000), 10).sum();
        assert_eq!(total, Nanos(NANOS_PER_DOLLAR));
    }
}
