//! The counts quality alerts are computed from, per consecutive window: online evals'
//! pass counts and score sums, users' negative feedback, and whether an eval judged
//! anything while its scope had traffic.
//!
//! Windows are `count` back-to-back spans of `width_ms` ending at `end_ms`, index 0 the
//! newest: `[end - (i+1)·width, end - i·width)`. Scores and feedback are placed in the
//! window of the **call** they are on (its trace's `started_at_ms`), so a rate says how
//! the calls made in that window did, whatever the judging or feedback delay. Only live
//! calls count (`origin = 'live'`).

use serde::Serialize;

use crate::error::StoreError;
use crate::sql::{Db, Row, Value};
use crate::values;

/// Which calls are read: every field set must match the trace.
#[derive(Debug, Clone, Copy, Default)]
pub struct CallFilter<'a> {
    pub function: Option<&'a str>,
    pub variant: Option<&'a str>,
    pub tenant: Option<&'a str>,
    pub feature: Option<&'a str>,
    /// `model_requested`.
    pub model: Option<&'a str>,
}

/// `count` consecutive windows of `width_ms` ending at `end_ms` (index 0 newest).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Windows {
    pub end_ms: i64,
    pub width_ms: i64,
    pub count: usize,
}

impl Windows {
    pub fn start_ms(&self) -> i64 {
        // Saturating: a configured window may be absurdly long.
        self.end_ms.saturating_sub(
            self.width_ms
                .max(1)
                .saturating_mul(i64::try_from(self.count).unwrap_or(i64::MAX)),
        )
    }
}

/// A window's binary samples: `n` samples, `hits` of them successes (passes, or
/// negative feedback).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub n: u64,
    pub hits: u64,
}

/// A window's scores: count, sum and sum of squares (for the mean and its variance).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Sums {
    pub n: u64,
    pub sum: f64,
    pub sum_sq: f64,
}

/// The SQL of the call filter on `t`, numbered from `?3` (`?1`, `?2` are the window).
/// (The casts type for PostgreSQL what it cannot infer from `IS NULL`.)
const FILTER: &str = "t.origin = 'live' AND t.started_at_ms >= ?1 AND t.started_at_ms < ?2
   AND (CAST(?3 AS TEXT) IS NULL OR t.function = ?3)
   AND (CAST(?4 AS TEXT) IS NULL OR t.variant = ?4)
   AND (CAST(?5 AS TEXT) IS NULL OR t.tenant = ?5)
   AND (CAST(?6 AS TEXT) IS NULL OR t.feature = ?6)
   AND (CAST(?7 AS TEXT) IS NULL OR t.model_requested = ?7)";

/// The window index of a call started at `t.started_at_ms` (`?2` the end, `?8` width).
/// Cast: PostgreSQL would otherwise type `?2 - 1` as a 32-bit integer.
const BUCKET: &str = "(CAST(?2 AS BIGINT) - 1 - t.started_at_ms) / CAST(?8 AS BIGINT)";

/// A window's `(n, hits)` from columns 1 and 2.
fn counts(r: &Row<'_>) -> Result<Counts, StoreError> {
    Ok(Counts {
        n: u64::try_from(r.get::<i64>(1)?).unwrap_or(0),
        hits: u64::try_from(r.get::<i64>(2)?).unwrap_or(0),
    })
}

fn bucket(w: &Windows, idx: i64) -> Option<usize> {
    usize::try_from(idx).ok().filter(|i| *i < w.count)
}

/// Whose scores are read: the online judges' (`online`, `backfill`) or people's
/// (`human`, the scores a review queue's labels become; `eval` is then the queue).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ScoreSources {
    #[default]
    Judge,
    Human,
}

impl ScoreSources {
    fn sql(self) -> &'static str {
        match self {
            ScoreSources::Judge => "('online', 'backfill')",
            ScoreSources::Human => "('human')",
        }
    }
}

/// Per window: calls judged by `eval` (scored by `sources`) and how many passed every
/// assertion (for people: every scored label, e.g. the verdict good).
pub fn pass_counts<'c>(
    db: impl Into<Db<'c>>,
    eval: &str,
    sources: ScoreSources,
    f: &CallFilter<'_>,
    w: &Windows,
) -> Result<Vec<Counts>, StoreError> {
    let sql = format!(
        "SELECT {BUCKET} AS b, COUNT(*), COALESCE(SUM(ok), 0) FROM (
           SELECT t.started_at_ms, MIN(s.passed) AS ok
             FROM scores s JOIN traces t ON t.id = s.trace_id
            WHERE s.eval = ?9 AND s.source IN {}
              AND s.created_at_ms >= ?1 AND {FILTER}
            GROUP BY s.trace_id, t.started_at_ms) t
         GROUP BY b",
        sources.sql()
    );
    let rows = db
        .into()
        .query(&sql, &window_params(f, w, values![eval]), |r| {
            Ok((r.get::<i64>(0)?, counts(r)?))
        })?;
    let mut out = vec![Counts::default(); w.count];
    for (b, c) in rows {
        if let Some(i) = bucket(w, b) {
            out[i] = c;
        }
    }
    Ok(out)
}

/// What every window query binds: ?1–?8 (the windows and the call filter, as in
/// `FILTER` and `BUCKET`), then `more` from ?9 on.
fn window_params(f: &CallFilter<'_>, w: &Windows, more: Vec<Value>) -> Vec<Value> {
    let mut all = values![
        w.start_ms(),
        w.end_ms,
        f.function,
        f.variant,
        f.tenant,
        f.feature,
        f.model,
        w.width_ms.max(1)
    ];
    all.extend(more);
    all
}

/// Per window: the values of `eval`'s assertion `metric`, one per judged call (the mean
/// when a call was judged both online and by a backfill).
pub fn score_sums<'c>(
    db: impl Into<Db<'c>>,
    eval: &str,
    metric: &str,
    sources: ScoreSources,
    f: &CallFilter<'_>,
    w: &Windows,
) -> Result<Vec<Sums>, StoreError> {
    let sql = format!(
        "SELECT {BUCKET} AS b, COUNT(*), COALESCE(SUM(v), 0.0), COALESCE(SUM(v * v), 0.0) FROM (
           SELECT t.started_at_ms, AVG(s.value) AS v
             FROM scores s JOIN traces t ON t.id = s.trace_id
            WHERE s.eval = ?9 AND s.metric = ?10 AND s.source IN {}
              AND s.created_at_ms >= ?1 AND {FILTER}
            GROUP BY s.trace_id, t.started_at_ms) t
         GROUP BY b",
        sources.sql()
    );
    let rows = db
        .into()
        .query(&sql, &window_params(f, w, values![eval, metric]), |r| {
            Ok((
                r.get::<i64>(0)?,
                Sums {
                    n: u64::try_from(r.get::<i64>(1)?).unwrap_or(0),
                    sum: r.get(2)?,
                    sum_sq: r.get(3)?,
                },
            ))
        })?;
    let mut out = vec![Sums::default(); w.count];
    for (b, sums) in rows {
        if let Some(i) = bucket(w, b) {
            out[i] = sums;
        }
    }
    Ok(out)
}

/// Per window: feedback values (numbers and booleans; categories are neither positive nor
/// negative and are left out) and how many were negative (`value <= 0`); `name` narrows
/// to one feedback name.
pub fn negative_feedback_counts<'c>(
    db: impl Into<Db<'c>>,
    name: Option<&str>,
    f: &CallFilter<'_>,
    w: &Windows,
) -> Result<Vec<Counts>, StoreError> {
    let sql = format!(
        "SELECT {BUCKET} AS b, COUNT(*),
                COALESCE(SUM(CASE WHEN fb.value_num <= 0 THEN 1 ELSE 0 END), 0)
           FROM feedback fb JOIN traces t ON t.id = fb.trace_id
          WHERE fb.value_kind != 'category' AND fb.value_num IS NOT NULL
            AND (CAST(?9 AS TEXT) IS NULL OR fb.name = ?9) AND fb.at_ms >= ?1 AND {FILTER}
          GROUP BY b"
    );
    let rows = db
        .into()
        .query(&sql, &window_params(f, w, values![name]), |r| {
            Ok((r.get::<i64>(0)?, counts(r)?))
        })?;
    let mut out = vec![Counts::default(); w.count];
    for (b, c) in rows {
        if let Some(i) = bucket(w, b) {
            out[i] = c;
        }
    }
    Ok(out)
}

/// Live calls matching `f` started in `[since_ms, until_ms)`.
pub fn calls_between<'c>(
    db: impl Into<Db<'c>>,
    f: &CallFilter<'_>,
    since_ms: i64,
    until_ms: i64,
) -> Result<u64, StoreError> {
    let n: i64 = db.into().query_row(
        &format!("SELECT COUNT(*) FROM traces t WHERE {FILTER}"),
        &values![since_ms, until_ms, f.function, f.variant, f.tenant, f.feature, f.model],
        |r| r.get(0),
    )?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// Calls matching `f` that `eval` judged (scored) in `[since_ms, until_ms)`, by when
/// they were judged, and the calls it failed to judge then.
pub fn judged_between<'c>(
    db: impl Into<Db<'c>>,
    eval: &str,
    f: &CallFilter<'_>,
    since_ms: i64,
    until_ms: i64,
) -> Result<(u64, u64), StoreError> {
    let db = db.into();
    // The call may have started before the window; only its judging time is bounded.
    let calls = "t.origin = 'live' AND (CAST(?3 AS TEXT) IS NULL OR t.function = ?3)
       AND (CAST(?4 AS TEXT) IS NULL OR t.variant = ?4)
       AND (CAST(?5 AS TEXT) IS NULL OR t.tenant = ?5)
       AND (CAST(?6 AS TEXT) IS NULL OR t.feature = ?6)
       AND (CAST(?7 AS TEXT) IS NULL OR t.model_requested = ?7)";
    let judged: i64 = db.query_row(
        &format!(
            "SELECT COUNT(DISTINCT s.trace_id) FROM scores s JOIN traces t ON t.id = s.trace_id
              WHERE s.eval = ?8 AND s.created_at_ms >= ?1 AND s.created_at_ms < ?2 AND {calls}"
        ),
        &values![since_ms, until_ms, f.function, f.variant, f.tenant, f.feature, f.model, eval],
        |r| r.get(0),
    )?;
    let failed: i64 = db.query_row(
        &format!(
            "SELECT COUNT(*) FROM online_eval_failures x JOIN traces t ON t.id = x.trace_id
              WHERE x.eval = ?8 AND x.at_ms >= ?1 AND x.at_ms < ?2 AND {calls}"
        ),
        &values![since_ms, until_ms, f.function, f.variant, f.tenant, f.feature, f.model, eval],
        |r| r.get(0),
    )?;
    Ok((
        u64::try_from(judged).unwrap_or(0),
        u64::try_from(failed).unwrap_or(0),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scores::{replace_scores, test_stores, ScoreRow};
    use crate::Conn;

    const H: i64 = 3_600_000;

    fn trace(conn: &Conn, id: &str, at: i64, variant: &str, origin: &str) {
        crate::partitions::ensure_days(conn.db(), std::iter::once(at), None).unwrap();
        conn.db().execute(
            "INSERT INTO traces (id, started_at_ms, api, endpoint, stream, unpriced, latency_ms,
                                 status, http_status, function, variant, origin)
             VALUES (?1, ?2, 'openai', '/v1/chat/completions', 0, 0, 10, 'ok', 200,
                     'support', ?3, ?4)",
            &values![id, at, variant, origin],
        )
        .unwrap();
    }

    fn score(conn: &Conn, id: &str, value: f64, passed: bool, at: i64) {
        let row = ScoreRow {
            metric: "helpful".into(),
            value,
            passed,
            reason: None,
        };
        replace_scores(conn, id, "q", "online", &[row], None, at).unwrap();
    }

    #[test]
    fn calls_land_in_the_window_they_started_in() {
        for (backend, store, _db) in test_stores() {
            let c = store.conn().unwrap();
            calls_land_in_the_window_they_started_in_on(backend, &c);
        }
    }

    fn calls_land_in_the_window_they_started_in_on(backend: &str, c: &Conn) {
        let end = 10 * H;
        // Window 0 = [9h, 10h): two calls, one passed; window 1: one passed call;
        // a call of another variant, a replay and a call after the end are left out.
        trace(c, "a", 9 * H + 5, "b", "live");
        trace(c, "b", 10 * H - 1, "b", "live");
        trace(c, "c", 8 * H, "b", "live");
        trace(c, "d", 9 * H + 7, "a", "live");
        trace(c, "e", 9 * H + 8, "b", "replay");
        trace(c, "f", 10 * H, "b", "live");
        for (id, v, ok) in [
            ("a", 0.9, true),
            ("b", 0.1, false),
            ("c", 0.8, true),
            ("d", 0.0, false),
            ("e", 0.0, false),
            ("f", 0.0, false),
        ] {
            score(c, id, v, ok, end);
        }
        let w = Windows {
            end_ms: end,
            width_ms: H,
            count: 3,
        };
        let f = CallFilter {
            function: Some("support"),
            variant: Some("b"),
            ..CallFilter::default()
        };
        let p = pass_counts(c, "q", ScoreSources::Judge, &f, &w).unwrap();
        assert_eq!(p[0], Counts { n: 2, hits: 1 }, "{backend}");
        assert_eq!(p[1], Counts { n: 1, hits: 1 }, "{backend}");
        assert_eq!(p[2], Counts::default(), "{backend}");
        let s = score_sums(c, "q", "helpful", ScoreSources::Judge, &f, &w).unwrap();
        assert_eq!(s[0].n, 2, "{backend}");
        assert!(
            (s[0].sum - 1.0).abs() < 1e-9 && (s[0].sum_sq - 0.82).abs() < 1e-9,
            "{backend}"
        );
        assert_eq!(calls_between(c, &f, 9 * H, end).unwrap(), 2, "{backend}");
        // Judging is bounded by when it happened, whenever the call started (a, b, c, f).
        assert_eq!(
            judged_between(c, "q", &f, end - 1, end + 1).unwrap(),
            (4, 0),
            "{backend}"
        );
        assert_eq!(
            judged_between(c, "q", &f, 0, end - 1).unwrap(),
            (0, 0),
            "{backend}"
        );
    }

    #[test]
    fn human_scores_are_read_apart_from_the_judges() {
        for (backend, store, _db) in test_stores() {
            let c = store.conn().unwrap();
            human_scores_are_read_apart_from_the_judges_on(backend, &c);
        }
    }

    fn human_scores_are_read_apart_from_the_judges_on(backend: &str, c: &Conn) {
        let end = 10 * H;
        trace(c, "a", 9 * H + 5, "b", "live");
        trace(c, "b", 9 * H + 6, "b", "live");
        trace(c, "c", 9 * H + 7, "b", "live");
        // The judge passed all three; the review queue `q` (its eval name; here the same
        // as the online eval's, told apart by the source) said good to a only, and its accuracy label scored a 1.0 and b 0.25.
        for id in ["a", "b", "c"] {
            score(c, id, 0.9, true, end);
        }
        let human = |verdict: f64, accuracy: Option<f64>| {
            let mut rows = vec![ScoreRow {
                metric: "verdict".into(),
                value: verdict,
                passed: verdict >= 0.5,
                reason: None,
            }];
            if let Some(a) = accuracy {
                rows.push(ScoreRow {
                    metric: "accuracy".into(),
                    value: a,
                    passed: a >= 0.5,
                    reason: None,
                });
            }
            rows
        };
        replace_scores(c, "a", "q", "human", &human(1.0, Some(1.0)), None, end).unwrap();
        replace_scores(c, "b", "q", "human", &human(0.0, Some(0.25)), None, end).unwrap();
        let w = Windows {
            end_ms: end,
            width_ms: H,
            count: 1,
        };
        let f = CallFilter::default();
        assert_eq!(
            pass_counts(c, "q", ScoreSources::Judge, &f, &w).unwrap()[0],
            Counts { n: 3, hits: 3 },
            "{backend}"
        );
        assert_eq!(
            pass_counts(c, "q", ScoreSources::Human, &f, &w).unwrap()[0],
            Counts { n: 2, hits: 1 },
            "{backend}"
        );
        let s = score_sums(c, "q", "accuracy", ScoreSources::Human, &f, &w).unwrap();
        assert_eq!(s[0].n, 2, "{backend}");
        assert!((s[0].sum - 1.25).abs() < 1e-9, "{backend}");
        assert_eq!(
            score_sums(c, "q", "accuracy", ScoreSources::Judge, &f, &w).unwrap()[0].n,
            0,
            "{backend}"
        );
    }

    #[test]
    fn feedback_counts_numbers_and_booleans_by_sign_and_skips_categories() {
        for (backend, store, _db) in test_stores() {
            let c = store.conn().unwrap();
            feedback_counts_on(backend, &c);
        }
    }

    fn feedback_counts_on(backend: &str, c: &Conn) {
        for (i, (v, kind, text)) in [
            (Some(1.0), "boolean", None),
            (Some(0.0), "boolean", None),
            (Some(-1.0), "number", None),
            (None, "category", Some("rude")),
        ]
        .into_iter()
        .enumerate()
        {
            let id = format!("t{i}");
            trace(c, &id, H + 1, "b", "live");
            c.db().execute(
                "INSERT INTO feedback (trace_id, name, source, value_num, value_text, value_kind, at_ms)
                 VALUES (?1, 'thumbs', 'app', ?2, ?3, ?4, ?5)",
                &values![&id, v, text, kind, H + 10],
            )
            .unwrap();
        }
        let w = Windows {
            end_ms: 2 * H,
            width_ms: H,
            count: 1,
        };
        let f = CallFilter::default();
        let got = negative_feedback_counts(c, Some("thumbs"), &f, &w).unwrap();
        assert_eq!(got, vec![Counts { n: 3, hits: 2 }], "{backend}");
        let other = negative_feedback_counts(c, Some("stars"), &f, &w).unwrap();
        assert_eq!(other, vec![Counts::default()], "{backend}");
    }

    #[test]
    fn windows_at_todays_times_are_counted_on_both_backends() {
        // Unix milliseconds today are past 32 bits: every window bound is a BIGINT.
        let end = 1_764_000_000_000;
        for (backend, store, _db) in test_stores() {
            let c = store.conn().unwrap();
            trace(&c, "a", end - 10, "b", "live");
            trace(&c, "b", end - H - 10, "b", "live");
            score(&c, "a", 1.0, true, end);
            score(&c, "b", 0.0, false, end);
            let w = Windows {
                end_ms: end,
                width_ms: H,
                count: 2,
            };
            let f = CallFilter::default();
            let p = pass_counts(&c, "q", ScoreSources::Judge, &f, &w).unwrap();
            assert_eq!(
                p,
                [Counts { n: 1, hits: 1 }, Counts { n: 1, hits: 0 }],
                "{backend}"
            );
            let s = score_sums(&c, "q", "helpful", ScoreSources::Judge, &f, &w).unwrap();
            assert_eq!((s[0].n, s[1].n), (1, 1), "{backend}");
            assert_eq!(
                calls_between(&c, &f, end - 2 * H, end).unwrap(),
                2,
                "{backend}"
            );
            let n = negative_feedback_counts(&c, None, &f, &w).unwrap();
            assert_eq!(n, [Counts::default(), Counts::default()], "{backend}");
        }
    }
}
