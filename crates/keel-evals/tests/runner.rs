#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The runner end to end, in-process against the built-in mock provider: rate limits are
//! retried (the run completes with every case answered), eval calls are traced as eval
//! traffic, and the response cache skips unchanged calls unless it is bypassed.

use std::sync::atomic::{AtomicUsize, Ordering};

use keel_core::config::Config;
use keel_core::trace::Origin;
use keel_evals::dataset::{dataset_hash, write_lock};
use keel_evals::runner::exec::Progress;
use keel_evals::runner::plan::RunOptions;
use keel_evals::runner::{run_suite, RunSettings};
use keel_evals::suite::load_suite;
use keel_store::{list_traces, Store, TraceFilter};

struct Count(AtomicUsize);

impl Progress for Count {
    fn case_done(&self, _: &str, _: bool) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

const SUITE: &str = r#"
[target]
model = "flaky"
[dataset]
path = "cases.jsonl"
[[assert]]
type = "starts-with"
value = "Mock reply to:"
[run]
concurrency = 8
max_retries = 12
[gate]
min_pass_rate = 1.0
"#;

fn project(rate_429: f64) -> (tempfile::TempDir, Config, Store) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let config = format!(
        r#"
[gateway]
store = "keel.db"
[providers.mock]
kind = "mock"
[providers.mock.mock]
rate_429 = {rate_429}
retry_after_secs = 0
seed = 7
[models.flaky]
provider = "mock"
upstream_model = "mock-1"
input_price_per_mtok = 0.15
output_price_per_mtok = 0.60
"#
    );
    std::fs::write(root.join("keel.toml"), &config).unwrap();
    std::fs::create_dir_all(root.join("evals")).unwrap();
    let cases: String = (0..40)
        .map(|i| format!("{{\"id\":\"c{i}\",\"input\":\"question {i}\"}}\n"))
        .collect();
    std::fs::write(root.join("evals/cases.jsonl"), &cases).unwrap();
    std::fs::write(root.join("evals/s.toml"), SUITE).unwrap();
    write_lock(&root.join("evals/s.toml"), &dataset_hash(cases.as_bytes())).unwrap();
    let config = Config::load(&root.join("keel.toml")).unwrap();
    let store = Store::open(&config.gateway.store).unwrap();
    (dir, config, store)
}

fn settings(use_cache: bool) -> RunSettings {
    RunSettings {
        options: RunOptions::default(),
        use_cache,
        actor: "test".into(),
        concurrency: None,
        repeat: None,
    }
}

fn eval_traces(path: &str) -> Vec<keel_core::trace::TraceRecord> {
    let store = Store::open(path).unwrap();
    list_traces(
        &store.reader().unwrap(),
        &TraceFilter {
            origin: Some(Origin::Eval),
            limit: 0,
            ..TraceFilter::default()
        },
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_are_retried_until_every_case_is_answered() {
    let (dir, config, store) = project(0.4);
    let suite = load_suite(&dir.path().join("evals/s.toml")).unwrap();
    let progress = Count(AtomicUsize::new(0));
    let out = run_suite(&config, &store, &suite, &settings(false), &progress)
        .await
        .unwrap();
    assert_eq!(progress.0.load(Ordering::SeqCst), 40);
    assert!(
        out.candidate.failures.is_empty(),
        "{:?}",
        out.candidate.failures
    );
    assert_eq!(out.candidate.stats.passed, 40);
    assert!(out.gate.passed);
    let traces = eval_traces(&config.gateway.store);
    let limited = traces
        .iter()
        .filter(|t| t.error_class.as_deref() == Some("upstream_rate_limit"))
        .count();
    assert!(limited > 0, "the mock injected no 429 at rate 0.4?");
    assert_eq!(traces.len() - limited, 40, "one successful call per case");
    assert!(traces.iter().all(|t| t.origin == Origin::Eval));
    assert!(traces
        .iter()
        .all(|t| t.tags.contains(&"keel:eval".to_string())));
    // Eval traffic stays out of the live report.
    let report = keel_store::build_report(&store.reader().unwrap(), 0, i64::MAX / 2, 10).unwrap();
    assert_eq!(report.totals.requests, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cache_skips_unchanged_calls_unless_bypassed() {
    let (dir, config, store) = project(0.0);
    let suite = load_suite(&dir.path().join("evals/s.toml")).unwrap();
    let progress = Count(AtomicUsize::new(0));
    let first = run_suite(&config, &store, &suite, &settings(true), &progress)
        .await
        .unwrap();
    assert_eq!(eval_traces(&config.gateway.store).len(), 40);
    let second = run_suite(&config, &store, &suite, &settings(true), &progress)
        .await
        .unwrap();
    // Served from the cache: no new calls, the same scores and costs.
    assert_eq!(eval_traces(&config.gateway.store).len(), 40);
    assert_eq!(
        first.candidate.stats.pass_rate,
        second.candidate.stats.pass_rate
    );
    assert_eq!(first.candidate.stats.cost, second.candidate.stats.cost);
    let results =
        keel_store::evals::eval_results(&store.reader().unwrap(), &second.candidate.run_id)
            .unwrap();
    assert!(results.iter().all(|r| r.cached));
    run_suite(&config, &store, &suite, &settings(false), &progress)
        .await
        .unwrap();
    assert_eq!(eval_traces(&config.gateway.store).len(), 80);
}
