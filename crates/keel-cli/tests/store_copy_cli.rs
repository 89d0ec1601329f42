#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `keel store copy`: a SQLite store moved into an empty PostgreSQL database, counted,
//! and a second copy into the same database refused; bad arguments named.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{stderr, stdout};
use keel_store::testing::TestDb;

fn keel(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_keel"))
        .args(args)
        .current_dir(dir)
        .env_remove("KEEL_CONFIG")
        .env_remove("KEEL_STORE_COPY_TO")
        .output()
        .unwrap()
}

#[test]
fn a_sqlite_store_is_copied_into_postgres_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let gen = keel(
        dir.path(),
        &[
            "dev",
            "gen-traces",
            "--store",
            "keel.db",
            "--count",
            "1500",
            "--days",
            "2",
        ],
    );
    assert!(gen.status.success(), "{}", stderr(&gen));
    let db = TestDb::new();
    let url = db.url();
    let out = keel(
        dir.path(),
        &["store", "copy", "--from", "keel.db", "--to", &url, "--json"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(report["resumed"], false);
    assert_eq!(report["rollup_traces"], 1500);
    let traces = report["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == "traces")
        .unwrap();
    assert_eq!(
        (traces["source"].as_u64(), traces["target"].as_u64()),
        (Some(1500), Some(1500))
    );

    let again = keel(
        dir.path(),
        &["store", "copy", "--from", "keel.db", "--to", &url],
    );
    assert_eq!(again.status.code(), Some(2));
    assert!(
        stderr(&again).contains("already holds Keel data"),
        "{}",
        stderr(&again)
    );
}

#[test]
fn a_missing_source_or_a_url_as_source_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let out = keel(
        dir.path(),
        &[
            "store",
            "copy",
            "--from",
            "nope.db",
            "--to",
            "postgres://u@127.0.0.1:1/x",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("--from nope.db: no such file"),
        "{}",
        stderr(&out)
    );
    let out = keel(
        dir.path(),
        &[
            "store",
            "copy",
            "--from",
            "postgres://u@h/x",
            "--to",
            "postgres://u@h/y",
        ],
    );
    assert!(
        stderr(&out).contains("must be a SQLite store file"),
        "{}",
        stderr(&out)
    );
}
