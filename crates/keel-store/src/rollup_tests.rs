//! A batch counted per group and fanned out when written gives exactly the rows of
//! counting every trace into each of its 18 rows.

use std::collections::HashMap;

use super::*;

/// The rows of `samples`, each trace added to each of its rows (the batch before groups).
fn one_by_one<'a>(samples: &[Sample<'a>]) -> HashMap<Key<'a>, Counts> {
    let mut rows: HashMap<Key<'a>, Counts> = HashMap::new();
    for s in samples {
        for res_ms in LEVELS {
            for dim in Dim::EVERY {
                let key = Key {
                    res_ms,
                    bucket_ms: floor_to(s.started_at_ms, res_ms),
                    origin: s.origin,
                    dim,
                    value: Group::of(s).value(dim),
                };
                rows.entry(key).or_default().add(s);
            }
        }
    }
    rows
}

#[test]
fn rows_counted_per_group_equal_rows_counted_per_trace() {
    // Buckets either side of a 5-minute, an hour and a UTC day boundary (and before 1970),
    // dimensions set, unset and empty, every origin, streamed and failed calls.
    let day = 20_000 * DAY_MS;
    let times = [
        day - 1,
        day,
        day + FINE_MS - 1,
        day + FINE_MS,
        day + COARSE_MS - 1,
        day + COARSE_MS + 7,
        day + DAY_MS - 1,
        day + DAY_MS,
        -FINE_MS - 1,
    ];
    let names = [None, Some(""), Some("a"), Some("b")];
    let mut samples = Vec::new();
    for (i, &t) in times.iter().enumerate() {
        for (j, &name) in names.iter().enumerate() {
            for k in 0..3u64 {
                samples.push(Sample {
                    started_at_ms: t,
                    origin: ["live", "shadow"][(i + j) % 2],
                    model: names[(j + 1) % 4],
                    function: name,
                    feature: names[(i + j + k as usize) % 4],
                    tenant: name,
                    variant: names[k as usize % 4],
                    error: k == 1,
                    input_tokens: (k != 2).then_some(10 * k + j as u64),
                    output_tokens: Some(k),
                    cost_nanos: Some(i64::try_from(1_000 * k).unwrap_or(0)),
                    unpriced: j == 3,
                    latency_ms: 3 + 997 * k + i as u64,
                    ttft_ms: (k == 0).then_some(2 + i as u64),
                });
            }
        }
    }
    let mut batch = RollupBatch::default();
    for s in &samples {
        batch.add(s);
    }
    let grouped: HashMap<Key<'_>, Counts> = batch.rows().into_iter().collect();
    let expected = one_by_one(&samples);
    assert_eq!(grouped.len(), expected.len(), "the same rows");
    for (key, counts) in &expected {
        assert_eq!(grouped.get(key), Some(counts), "{key:?}");
        assert_eq!(
            key.bucket_ms.rem_euclid(key.res_ms),
            0,
            "{key:?} is aligned"
        );
    }
}
