#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The dashboard on a generated store (the scale benchmark's generator, at 20,000
//! traces over 30 days): the overview's totals are the store's, read from the rollups;
//! filtered searches return what the traces hold, newest first.

mod common;

use common::Harness;
use keel_store::synth::{generate, SynthOptions};
use keel_store::Store;

/// The value of the overview card labelled `label`.
fn card(body: &str, label: &str) -> String {
    let marker = format!("<div class=\"label\">{label}</div><div class=\"value\">");
    let at = body
        .find(&marker)
        .unwrap_or_else(|| panic!("no {label} card"))
        + marker.len();
    body[at..].split('<').next().unwrap().to_string()
}

fn count(body: &str) -> usize {
    let at = body.find("data-count=\"").expect("the trace count") + "data-count=\"".len();
    body[at..].split('"').next().unwrap().parse().unwrap()
}

fn raw(store_path: &str, sql: &str, args: &[i64]) -> i64 {
    let store = Store::open(store_path).unwrap();
    let r = store.reader().unwrap();
    r.query_row(sql, rusqlite::params_from_iter(args), |row| row.get(0))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overview_and_search_on_a_generated_store_match_its_traces() {
    let h = Harness::start().await;
    {
        let store = Store::open(&h.store_path).unwrap();
        let w = store.writer_conn().unwrap();
        let opts = SynthOptions {
            count: 20_000,
            days: 30,
            now_ms: keel_store::prompts::now_ms(),
            seed: 3,
            batch: 4_000,
        };
        assert_eq!(generate(&w, &opts, |_| {}).unwrap(), 20_000);
    }

    for (since, span) in [("24h", 86_400_000), ("30d", 30 * 86_400_000)] {
        // The window moves every 5 minutes: retry if it moved during the fetch.
        let mut checked = false;
        for _ in 0..3 {
            let window = |now| keel_store::overview::aligned_window(now, span);
            let (a, b) = window(keel_store::prompts::now_ms());
            let body = h.page(&format!("/?since={since}")).await;
            if window(keel_store::prompts::now_ms()) != (a, b) {
                continue;
            }
            let live = raw(
                &h.store_path,
                "SELECT COUNT(*) FROM traces WHERE origin = 'live' AND started_at_ms >= ?1 AND started_at_ms < ?2",
                &[a, b],
            );
            assert!(live > 500, "{since}: {live}");
            assert_eq!(card(&body, "requests"), live.to_string(), "{since}");
            let unpriced = raw(
                &h.store_path,
                "SELECT COUNT(*) FROM traces WHERE origin = 'live' AND unpriced = 1 AND started_at_ms >= ?1 AND started_at_ms < ?2",
                &[a, b],
            );
            assert_eq!(card(&body, "unpriced calls"), unpriced.to_string());
            for want in ["tenant-00", "gpt-4o-mini", "support-answer", "classify"] {
                assert!(body.contains(want), "{since} overview lacks {want}");
            }
            checked = true;
            break;
        }
        assert!(checked, "the window kept moving");
    }

    // Filtered searches: as many as the traces hold (up to a page), newest first.
    for (query, sql) in [
        (
            "tenant=tenant-03&status=error",
            "SELECT COUNT(*) FROM traces WHERE tenant = 'tenant-03' AND status = 'error'",
        ),
        (
            "user=user-00-007",
            "SELECT COUNT(*) FROM traces WHERE user = 'user-00-007'",
        ),
        (
            "model=claude-sonnet&feature=search&origin=live",
            "SELECT COUNT(*) FROM traces WHERE model_requested = 'claude-sonnet' AND feature = 'search' AND origin = 'live'",
        ),
        (
            "origin=eval&error_class=upstream_timeout",
            "SELECT COUNT(*) FROM traces WHERE origin = 'eval' AND error_class = 'upstream_timeout'",
        ),
        (
            "min_cost=0.05",
            "SELECT COUNT(*) FROM traces WHERE cost_nanos >= 50000000",
        ),
    ] {
        let body = h.page(&format!("/ui/traces?{query}")).await;
        let want = raw(&h.store_path, sql, &[]).min(50) as usize;
        assert_eq!(count(&body), want, "{query}");
        assert!(!body.contains("search-stopped"), "{query}");
    }
    h.finish().await;
}
