#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `keel models`, `keel check --strict` and `keel models check-successor` on a copy of the
//! quickstart: a model retiring in 20 days (config) is warned about and fails `--strict`;
//! the inventory lists versions seen (a fingerprint change is audited once), lifecycle,
//! and what uses each model; `check-successor` exits 0 when the successor is at parity,
//! 1 when it regresses, 2 when there is nothing to compare.

mod common;

use std::fs;

use common::{quickstart, record_traces, stderr, stdout, Keel};
use keel_core::trace::{TraceRecord, TraceStatus};

const KEEL: Keel = Keel::with_env(&[("KEEL_ACTOR", "ci")]);

fn in_days(n: i64) -> String {
    let d = time::OffsetDateTime::now_utc().date() + time::Duration::days(n);
    keel_core::lifecycle::format_date(d)
}

/// The quickstart with mock-1 retiring in 20 days (successor `good-next`, the same
/// mock), and `broken-next`, a successor whose provider fails every call.
fn project() -> (tempfile::TempDir, std::path::PathBuf) {
    let (dir, work) = quickstart();
    let path = work.join("keel.toml");
    let text = fs::read_to_string(&path).unwrap();
    let text = text.replacen(
        "[models.mock-1]\nprovider = \"mock\"\n",
        &format!(
            "[models.mock-1]\nprovider = \"mock\"\nretires = \"{}\"\nsuccessor = \"good-next\"\n",
            in_days(20)
        ),
        1,
    );
    assert!(text.contains("successor = \"good-next\""));
    let text = format!(
        "{text}\n[providers.broken]\nkind = \"mock\"\n[providers.broken.mock]\nrate_500 = 1.0\n\
         [models.broken-next]\nprovider = \"broken\"\nupstream_model = \"mock-1\"\nretries = 0\n\
         input_price_per_mtok = 0.15\noutput_price_per_mtok = 0.60\n\
         [models.good-next]\nprovider = \"mock\"\nupstream_model = \"mock-1\"\n\
         input_price_per_mtok = 0.15\noutput_price_per_mtok = 0.60\n"
    );
    fs::write(&path, text).unwrap();
    (dir, work)
}

fn call(id: &str, at_ms: i64, fingerprint: &str) -> TraceRecord {
    let mut t = TraceRecord::new(id.into(), at_ms, "openai", "/v1/chat/completions");
    t.model_requested = Some("mock-1".into());
    t.provider = Some("mock".into());
    t.upstream_model = Some("mock-1".into());
    t.system_fingerprint = Some(fingerprint.into());
    t.status = TraceStatus::Ok;
    t
}

#[test]
fn a_model_retiring_soon_is_warned_about_and_fails_strict() {
    let (_d, work) = project();
    let out = KEEL.run(&work, &["check"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains(&format!(
            "models.mock-1: upstream `mock-1` retires on {} (in 20 days)",
            in_days(20)
        )),
        "{text}"
    );
    assert!(
        text.contains("keel models check-successor mock-1"),
        "{text}"
    );
    let strict = KEEL.run(&work, &["check", "--strict"]);
    assert_eq!(strict.status.code(), Some(1), "{}", stdout(&strict));
    assert!(stderr(&strict).contains("--strict"), "{}", stderr(&strict));
    let json = KEEL.run(&work, &["check", "--strict", "--json"]);
    assert_eq!(json.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_str(&stdout(&json)).unwrap();
    assert_eq!(v["ok"], false);
    assert!(
        v["retiring"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m == "mock-1"),
        "{v}"
    );
}

#[test]
fn the_inventory_lists_versions_lifecycle_and_what_uses_each_model() {
    let (_d, work) = project();
    let store = keel_store::Store::open(work.join("keel.db").to_str().unwrap()).unwrap();
    let now = keel_store::prompts::now_ms();
    record_traces(
        &store,
        [
            call("t1", now - 60_000, "fp_a"),
            call("t2", now - 50_000, "fp_a"),
            call("t3", now - 40_000, "fp_b"),
        ],
    );
    let inv = KEEL.json_ok(&work, &["models"]);
    let models = inv["models"].as_array().unwrap();
    let mock = models.iter().find(|m| m["name"] == "mock-1").unwrap();
    let versions = mock["deployments"][0]["versions"].as_array().unwrap();
    let seen: Vec<_> = versions
        .iter()
        .map(|v| (v["version"].as_str().unwrap(), v["calls"].as_i64().unwrap()))
        .collect();
    assert_eq!(seen, [("fp_a", 2), ("fp_b", 1)], "{mock}");
    assert_eq!(mock["lifecycle"]["retiring"], true);
    assert_eq!(mock["lifecycle"]["successor"], "good-next");
    assert_eq!(mock["lifecycle"]["days_left"], 20);
    assert_eq!(
        mock["lifecycle"]["compare_command"],
        "keel eval compare support --model good-next --baseline-model mock-1"
    );
    assert_eq!(mock["functions"][0], "support-answer/control");
    assert_eq!(mock["suites"][0], "support");
    assert_eq!(mock["online_evals"][0], "support-quality");
    assert_eq!(mock["price"]["source"], "config");
    let mini = models.iter().find(|m| m["name"] == "gpt-4o-mini").unwrap();
    assert_eq!(mini["price"]["source"], "builtin");
    assert!(mini["lifecycle"]["retires"].is_string(), "{mini}");

    // The change from fp_a to fp_b is audited once, however often the inventory is read.
    KEEL.stdout_ok(&work, &["models"]);
    let audit = KEEL.stdout_ok(&work, &["audit", "--json"]);
    assert_eq!(audit.matches("model.version_changed").count(), 1, "{audit}");
    let text = KEEL.stdout_ok(&work, &["models"]);
    assert!(text.contains("RETIRES"), "{text}");
    assert!(text.contains("fp_b"), "{text}");
}

#[test]
fn check_successor_exits_0_at_parity_1_on_regression_2_without_a_comparison() {
    let (_d, work) = project();
    let ok = KEEL.run(&work, &["models", "check-successor", "mock-1"]);
    let text = stdout(&ok);
    assert_eq!(ok.status.code(), Some(0), "{text}\n{}", stderr(&ok));
    assert!(text.contains("good-next against mock-1"), "{text}");
    assert!(text.contains("parity or better"), "{text}");

    let bad = KEEL.run(
        &work,
        &[
            "models",
            "check-successor",
            "mock-1",
            "--successor",
            "broken-next",
            "--json",
        ],
    );
    assert_eq!(
        bad.status.code(),
        Some(1),
        "{}\n{}",
        stdout(&bad),
        stderr(&bad)
    );
    let v: serde_json::Value = serde_json::from_str(&stdout(&bad)).unwrap();
    assert_eq!(v["regressed"], true);
    assert_eq!(v["suites"][0]["suite"], "support");

    let none = KEEL.run(&work, &["models", "check-successor", "house-model"]);
    assert_eq!(none.status.code(), Some(2));
    assert!(
        stderr(&none).contains("no successor is known for `house-model`"),
        "{}",
        stderr(&none)
    );
    let unconfigured = KEEL.run(&work, &["models", "check-successor", "gpt-4o-mini"]);
    assert_eq!(unconfigured.status.code(), Some(2));
    assert!(
        stderr(&unconfigured).contains("is not a configured model"),
        "{}",
        stderr(&unconfigured)
    );
}
