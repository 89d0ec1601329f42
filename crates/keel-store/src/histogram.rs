//! A fixed log-scale histogram of milliseconds, so latency and time-to-first-token
//! percentiles can be kept in the rollups (`rollup`) and merged across buckets without
//! keeping every value.
//!
//! Buckets: every value below 16 has its own bucket; above, each power of two is split
//! into 16 equal sub-buckets (976 buckets cover all of `u64`). A percentile is the
//! midpoint of the bucket holding the nearest-rank value, so it is exact below 32 ms and
//! otherwise within 1/32 (3.125 %) of the exact nearest-rank percentile of the same
//! values. The layout is fixed: stored histograms stay comparable forever.
//!
//! Stored form (`encode`/`decode`): a version byte, then (index delta, count) pairs of
//! LEB128 varints for the non-empty buckets — a few dozen bytes for a typical bucket.

use crate::report::Percentiles;

/// Sub-buckets per power of two, as a power of two (16).
const SUB_BITS: u32 = 4;
const SUB: u64 = 1 << SUB_BITS;
/// Buckets for every `u64`: 16 exact ones, then 16 per power of two from 2^4 to 2^63.
pub(crate) const BUCKETS: usize = (SUB + (64 - SUB_BITS as u64) * SUB) as usize;
/// The first byte of an encoded histogram.
const FORMAT: u8 = 1;

/// Counts of values per bucket; grows to the highest bucket used.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Histogram {
    counts: Vec<u64>,
}

/// The bucket holding `v`.
pub(crate) fn index(v: u64) -> usize {
    if v < SUB {
        return v as usize;
    }
    let exp = 63 - v.leading_zeros(); // >= SUB_BITS
    let shift = exp - SUB_BITS;
    let sub = (v >> shift) - SUB; // 0..SUB
    (SUB + u64::from(shift) * SUB + sub) as usize
}

/// The smallest and largest value of bucket `i`.
pub(crate) fn bounds(i: usize) -> (u64, u64) {
    let i = i as u64;
    if i < SUB {
        return (i, i);
    }
    let shift = (i - SUB) / SUB;
    let sub = (i - SUB) % SUB;
    let lo = (SUB + sub) << shift;
    (lo, lo + ((1u64 << shift) - 1))
}

/// What a bucket reports: its midpoint (rounded down).
fn representative(i: usize) -> u64 {
    let (lo, hi) = bounds(i);
    lo + (hi - lo) / 2
}

/// A stored histogram that does not decode (a damaged store).
#[derive(Debug, thiserror::Error)]
#[error("a stored latency histogram is damaged: {0}")]
pub struct DamagedHistogram(&'static str);

impl Histogram {
    pub fn add(&mut self, v: u64) {
        self.add_n(index(v), 1);
    }

    fn add_n(&mut self, i: usize, n: u64) {
        if self.counts.len() <= i {
            self.counts.resize(i + 1, 0);
        }
        if let Some(c) = self.counts.get_mut(i) {
            *c = c.saturating_add(n);
        }
    }

    pub fn merge(&mut self, other: &Histogram) {
        if self.counts.len() < other.counts.len() {
            self.counts.resize(other.counts.len(), 0);
        }
        for (c, o) in self.counts.iter_mut().zip(&other.counts) {
            *c = c.saturating_add(*o);
        }
    }

    /// How many values were added.
    pub fn total(&self) -> u64 {
        self.counts.iter().fold(0u64, |a, c| a.saturating_add(*c))
    }

    /// The nearest-rank p-th percentile (1..=100), estimated as described in the module
    /// doc; `None` when empty.
    pub fn percentile(&self, p: u64) -> Option<u64> {
        let n = self.total();
        if n == 0 {
            return None;
        }
        // rank = ceil(p/100 * n), 1-based, as Percentiles::nearest_rank.
        let rank = (u128::from(p) * u128::from(n)).div_ceil(100).max(1);
        let mut seen: u128 = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += u128::from(*c);
            if seen >= rank {
                return Some(representative(i));
            }
        }
        self.counts.iter().rposition(|c| *c > 0).map(representative)
    }

    /// p50, p95 and p99; `None` when empty.
    pub fn percentiles(&self) -> Option<Percentiles> {
        Some(Percentiles {
            p50: self.percentile(50)?,
            p95: self.percentile(95)?,
            p99: self.percentile(99)?,
        })
    }

    /// The stored form (see the module doc).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![FORMAT];
        let mut last = 0usize;
        for (i, c) in self.counts.iter().enumerate().filter(|(_, c)| **c > 0) {
            put_varint(&mut out, (i - last) as u64);
            put_varint(&mut out, *c);
            last = i;
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Histogram, DamagedHistogram> {
        let (first, mut rest) = bytes.split_first().ok_or(DamagedHistogram("it is empty"))?;
        if *first != FORMAT {
            return Err(DamagedHistogram("unknown format"));
        }
        let mut h = Histogram::default();
        let mut at = 0u64;
        while !rest.is_empty() {
            let delta = take_varint(&mut rest)?;
            let count = take_varint(&mut rest)?;
            at = at
                .checked_add(delta)
                .filter(|i| *i < BUCKETS as u64)
                .ok_or(DamagedHistogram("bucket out of range"))?;
            h.add_n(at as usize, count);
        }
        Ok(h)
    }
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn take_varint(bytes: &mut &[u8]) -> Result<u64, DamagedHistogram> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let (b, rest) = bytes.split_first().ok_or(DamagedHistogram("truncated"))?;
        *bytes = rest;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(DamagedHistogram("varint too long"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_tile_every_u64_in_order() {
        assert_eq!(BUCKETS, 976);
        assert_eq!(index(0), 0);
        assert_eq!(index(31), 31);
        assert_eq!(index(u64::MAX), BUCKETS - 1);
        assert_eq!(bounds(BUCKETS - 1).1, u64::MAX);
        for i in 1..BUCKETS {
            assert_eq!(bounds(i).0, bounds(i - 1).1 + 1, "bucket {i}");
            assert_eq!(index(bounds(i).0), i);
            assert_eq!(index(bounds(i).1), i);
        }
    }

    #[test]
    fn percentiles_are_within_the_documented_bound_of_the_exact_ones() {
        // A long-tailed spread of latencies, and the exact nearest-rank answer.
        let values: Vec<u64> = (0..5000u64)
            .map(|i| 20 + (i * 7919 % 5000) * (i % 13 + 1) / 3)
            .collect();
        let mut h = Histogram::default();
        values.iter().for_each(|v| h.add(*v));
        let exact = Percentiles::nearest_rank(values).unwrap();
        let est = h.percentiles().unwrap();
        for (e, x) in [
            (est.p50, exact.p50),
            (est.p95, exact.p95),
            (est.p99, exact.p99),
        ] {
            let err = e.abs_diff(x) as f64 / x as f64;
            assert!(err <= 1.0 / 32.0, "estimate {e} vs exact {x}");
        }
        // Small values are exact.
        let mut h = Histogram::default();
        (1..=20).for_each(|v| h.add(v));
        assert_eq!(
            h.percentiles(),
            Percentiles::nearest_rank((1..=20).collect())
        );
        assert_eq!(Histogram::default().percentiles(), None);
    }

    #[test]
    fn merging_equals_adding_everything_and_survives_encoding() {
        let (mut a, mut b, mut all) = (
            Histogram::default(),
            Histogram::default(),
            Histogram::default(),
        );
        for v in [0, 3, 17, 900, 12_345, u64::MAX] {
            a.add(v);
            all.add(v);
        }
        for v in [3, 5_000_000, 40] {
            b.add(v);
            all.add(v);
        }
        a.merge(&b);
        assert_eq!(a, all);
        assert_eq!(a.total(), 9);
        let bytes = a.encode();
        assert_eq!(Histogram::decode(&bytes).unwrap(), a);
        assert_eq!(
            Histogram::decode(&Histogram::default().encode()).unwrap(),
            Histogram::default()
        );
        assert!(Histogram::decode(&[]).is_err());
        assert!(Histogram::decode(&[9]).is_err());
        assert!(Histogram::decode(&[FORMAT, 0x80]).is_err());
        assert!(Histogram::decode(&[FORMAT, 0xff, 0x0f, 1]).is_err());
    }
}
