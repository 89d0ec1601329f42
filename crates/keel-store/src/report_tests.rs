//! `report`'s unit tests: percentiles and cost serialization (the report over a store
//! is tested on both backends in `tests/report.rs`).

use super::*;

#[test]
fn nearest_rank_percentiles() {
    assert_eq!(Percentiles::nearest_rank(Vec::new()), None);
    let one = Percentiles::nearest_rank(vec![7]).unwrap();
    assert_eq!((one.p50, one.p95, one.p99), (7, 7, 7));
    // 1..=100 shuffled: the p-th percentile is p itself.
    let values: Vec<u64> = (1..=100).rev().collect();
    let p = Percentiles::nearest_rank(values).unwrap();
    assert_eq!((p.p50, p.p95, p.p99), (50, 95, 99));
    // 1..=20: ranks ceil(10)=10, ceil(19)=19, ceil(19.8)=20.
    let p = Percentiles::nearest_rank((1..=20).collect()).unwrap();
    assert_eq!((p.p50, p.p95, p.p99), (10, 19, 20));
}

#[test]
fn cost_serializes_as_nanos_and_exact_dollars() {
    let json = serde_json::to_value(Cost(Nanos(150_000))).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"cost_nanos": 150000, "cost_usd": "0.00015"})
    );
}
