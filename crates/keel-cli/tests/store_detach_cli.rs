#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `keel store detach`: old days of a PostgreSQL store's traces leave it whole (counted
//! first with --dry-run), and the report, the trace list and the rollups agree after;
//! on a SQLite store the command says to use [retention].

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{stderr, stdout};
use keel_store::testing::TestDb;
use serde_json::Value;

fn keel(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_keel"))
        .args(args)
        .current_dir(dir)
        .env_remove("KEEL_CONFIG")
        .env_remove("KEEL_STORE")
        .env("KEEL_ACTOR", "test-actor")
        .output()
        .unwrap()
}

fn json(dir: &Path, args: &[&str]) -> Value {
    let out = keel(dir, args);
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    serde_json::from_str(&stdout(&out)).unwrap()
}

fn config(dir: &Path, store: &str) {
    std::fs::write(
        dir.join("keel.toml"),
        format!("[gateway]\nstore = \"{store}\"\n[providers.local]\nkind = \"mock\"\n[models.mock-1]\nprovider = \"local\"\n"),
    )
    .unwrap();
}

#[test]
fn old_days_leave_a_postgres_store_whole_and_the_figures_agree() {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::new();
    let url = db.url();
    config(dir.path(), &url);
    let gen = keel(
        dir.path(),
        &[
            "dev",
            "gen-traces",
            "--store",
            &url,
            "--count",
            "3000",
            "--days",
            "6",
        ],
    );
    assert!(gen.status.success(), "{}", stderr(&gen));
    let listed = |dir: &Path| {
        json(
            dir,
            &["traces", "list", "--limit", "0", "--since", "30d", "--json"],
        )
        .as_array()
        .unwrap()
        .len()
    };
    assert_eq!(listed(dir.path()), 3000);

    let dry = json(
        dir.path(),
        &["store", "detach", "--before", "3d", "--dry-run", "--json"],
    );
    assert_eq!(dry["dry_run"], true);
    let days = dry["days"].as_array().unwrap().len();
    assert!((2..=4).contains(&days), "{dry}");
    let leaving = dry["traces"].as_u64().unwrap() as usize;
    assert!(leaving > 0 && leaving < 3000, "{dry}");
    assert_eq!(listed(dir.path()), 3000, "a dry run changes nothing");

    let done = json(dir.path(), &["store", "detach", "--before", "3d", "--json"]);
    assert_eq!(done["traces"], dry["traces"]);
    let left = listed(dir.path());
    assert_eq!(left, 3000 - leaving);
    // The rollups (what the report and the dashboard read) count what is left, no more.
    let store = keel_store::Store::open(&url).unwrap();
    let rows = keel_store::rollup::all_rows(&store.conn().unwrap()).unwrap();
    let day_all: u64 = rows
        .iter()
        .filter(|(k, _)| k.0 == keel_store::rollup::DAY_MS && k.3 == "all")
        .map(|(_, c)| c.requests)
        .sum();
    assert_eq!(day_all, left as u64);
    // A human-readable run with nothing left to detach says so.
    let again = keel(dir.path(), &["store", "detach", "--before", "3d"]);
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(
        stdout(&again).contains("no day of traces before"),
        "{}",
        stdout(&again)
    );
}

#[test]
fn a_sqlite_store_is_told_to_use_retention() {
    let dir = tempfile::tempdir().unwrap();
    config(dir.path(), "keel.db");
    let out = keel(dir.path(), &["store", "detach", "--before", "90d"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("[retention]"), "{}", stderr(&out));
    let bad = keel(dir.path(), &["store", "detach", "--before", "soon"]);
    assert!(stderr(&bad).contains("90d"), "{}", stderr(&bad));
}
