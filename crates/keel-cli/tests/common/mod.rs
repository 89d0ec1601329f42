//! Scaffolding shared by the integration tests of the `keel` binary: a project in a
//! temporary folder, prompt files in it, the built binary run against it, its output
//! decoded, and traffic seeded into its store.
//!
//! Each test file compiles this module on its own (`mod common;`) and none uses all of
//! it, hence the `dead_code` allowance.

#![allow(dead_code)]

use std::fs::{self, File};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use keel_core::trace::TraceRecord;
use keel_store::{Store, WriterStats};
use serde_json::Value;

/// The support prompt most tests push: a system and a user message, two variables.
pub const SUPPORT_ANSWER: &str = r#"
[[messages]]
role = "system"
content = "You are a support agent for {{ product }}."
[[messages]]
role = "user"
content = "{{ question }}"
[variables.product]
type = "string"
[variables.question]
type = "string"
"#;

/// A temporary folder holding `keel.toml` with `config`; the folder is removed on drop.
pub fn project(config: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("keel.toml"), config).unwrap();
    dir
}

/// Write (or overwrite) the prompt file `rel` under the project's `prompts/` folder,
/// creating the folders it needs.
pub fn write_prompt(dir: &Path, rel: &str, text: &str) {
    let path = dir.join("prompts").join(rel);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
}

/// Copy of the repository's `examples/quickstart` (without its store) in a temporary
/// folder: the guard that removes it on drop, and its path.
pub fn quickstart() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/quickstart");
    copy_dir(&root, dir.path());
    let p = dir.path().to_path_buf();
    (dir, p)
}

/// Recursive copy of `from` into `to`, leaving out any `keel.db*` (a store and its WAL
/// files) so that a copy starts with no recorded traffic.
pub fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else if !entry.file_name().to_string_lossy().starts_with("keel.db") {
            fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// How a test file runs the built `keel` binary: the environment variables it sets on
/// top of the test runner's. Each file declares one as a `const` and runs every command
/// through it, so the identity its commands record is stated once.
#[derive(Clone, Copy)]
pub struct Keel {
    env: &'static [(&'static str, &'static str)],
}

impl Keel {
    /// `$KEEL_ACTOR` (who moves a label, runs a replay…) and `$USER` (the author of a
    /// push outside git, without `--author`) both fixed, so outputs can be asserted.
    pub const AS_TEST_USER: Keel =
        Keel::with_env(&[("KEEL_ACTOR", "test-actor"), ("USER", "test-user")]);

    /// Runs with these variables set; an empty list leaves the runner's environment as is.
    pub const fn with_env(env: &'static [(&'static str, &'static str)]) -> Keel {
        Keel { env }
    }

    /// `keel <args> --config <dir>/keel.toml`, run in `dir`, with `$KEEL_CONFIG` removed
    /// so the runner's own config cannot leak in.
    pub fn run(&self, dir: &Path, args: &[&str]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_keel"));
        cmd.args(args)
            .arg("--config")
            .arg(dir.join("keel.toml"))
            .env_remove("KEEL_CONFIG");
        for (key, value) in self.env {
            cmd.env(key, value);
        }
        cmd.current_dir(dir).output().unwrap()
    }

    /// [`Keel::run`], asserting success (the message carries stderr); returns stdout.
    pub fn stdout_ok(&self, dir: &Path, args: &[&str]) -> String {
        let out = self.run(dir, args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        stdout(&out)
    }

    /// [`Keel::stdout_ok`] with `--json` appended, its stdout parsed.
    pub fn json_ok(&self, dir: &Path, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.push("--json");
        serde_json::from_str(&self.stdout_ok(dir, &all)).unwrap()
    }

    /// `prompt push <push_args>`, then `support/answer` v1 labelled `production` with
    /// `reason`, as `keel serve` does on start: the baseline most tests compare against.
    pub fn push_and_label_production(&self, dir: &Path, push_args: &[&str], reason: &str) {
        let push = [&["prompt", "push"][..], push_args].concat();
        self.stdout_ok(dir, &push);
        self.stdout_ok(
            dir,
            &[
                "prompt",
                "label",
                "support/answer",
                "1",
                "production",
                "--reason",
                reason,
            ],
        );
    }
}

/// A command's stdout, decoded lossily (the binary writes UTF-8).
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A command's stderr, decoded lossily.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Stdout, a newline, then stderr: for asserting on a message whichever stream it is on.
pub fn stdout_and_stderr(out: &Output) -> String {
    format!("{}\n{}", stdout(out), stderr(out))
}

/// Record `traces` through the store's trace writer, as the gateway does, and wait for
/// it to drain; returns its final counters for the caller to check.
pub fn record_traces(store: &Store, traces: impl IntoIterator<Item = TraceRecord>) -> WriterStats {
    let (writer, handle) = keel_store::spawn(store, keel_store::WriterOptions::default()).unwrap();
    for t in traces {
        writer.record(t);
    }
    drop(writer);
    handle.shutdown()
}

/// One running `keel serve`, stopped (SIGTERM, queue drained) on drop.
pub struct Replica {
    child: Child,
    pub url: String,
}

impl Replica {
    /// Start `keel serve` on `<name>.toml` in `dir` (written from `config`, where
    /// `STORE` becomes `<name>.db`; listen on port 0) and wait for its address. Its
    /// stderr (the log, at `$KEEL_LOG` = debug) goes to `<name>.log`.
    pub fn start(dir: &Path, name: &str, config: &str) -> Replica {
        Replica::start_with_env(dir, name, config, &[])
    }

    /// [`Replica::start`] with these environment variables set for the gateway.
    pub fn start_with_env(dir: &Path, name: &str, config: &str, env: &[(&str, &str)]) -> Replica {
        let cfg = dir.join(format!("{name}.toml"));
        std::fs::write(&cfg, config.replace("STORE", &format!("{name}.db"))).unwrap();
        let log = File::create(dir.join(format!("{name}.log"))).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_keel"))
            .args(["serve", "--config"])
            .arg(&cfg)
            .env_remove("KEEL_CONFIG")
            .env("KEEL_LOG", "debug")
            .envs(env.iter().copied())
            .current_dir(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        let mut line = String::new();
        let stdout = child.stdout.take().unwrap();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        let url = line
            .trim()
            .strip_prefix("keel gateway listening on ")
            .unwrap_or_else(|| {
                let log = std::fs::read_to_string(dir.join(format!("{name}.log")));
                panic!("{name} did not start: {line:?}\n{log:?}")
            })
            .to_string();
        Replica { child, url }
    }

    /// SIGTERM (the gateway drains its trace queue), then wait; once only.
    pub fn stop(&mut self) {
        if !matches!(self.child.try_wait(), Ok(None)) {
            return;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The Redis the replica tests share limits through (key prefixes of their own).
pub const REDIS: &str = "redis://127.0.0.1:6379";

/// A fresh key prefix in a reachable Redis, or `None` to skip.
pub fn redis_prefix(test: &str) -> Option<String> {
    let reachable = redis::Client::open(REDIS)
        .and_then(|c| c.get_connection())
        .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c));
    if let Err(e) = reachable {
        if std::env::var("KEEL_SKIP_REDIS").as_deref() == Ok("1") {
            eprintln!("skipping (KEEL_SKIP_REDIS=1): no Redis at {REDIS}: {e}");
            return None;
        }
        panic!("no Redis at {REDIS} ({e}): start it, or set KEEL_SKIP_REDIS=1 to skip");
    }
    Some(format!("keel-test-{test}-{}:", std::process::id()))
}

/// Delete every key under `prefix`; how many there were.
pub fn redis_cleanup(prefix: &str) -> usize {
    let Ok(mut c) = redis::Client::open(REDIS).and_then(|c| c.get_connection()) else {
        return 0;
    };
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query(&mut c)
        .unwrap_or_default();
    let n = keys.len();
    if n > 0 {
        let _: Result<i64, _> = redis::cmd("DEL").arg(keys).query(&mut c);
    }
    n
}

/// Two replicas' config with limits in Redis under `prefix`, plus `limits` (budgets, rate
/// limits). `STORE` is each replica's own SQLite file ([`Replica::start`]); replace it
/// with a PostgreSQL URL for one shared store.
pub fn redis_limits_config(prefix: &str, limits: &str) -> String {
    format!(
        r#"
[gateway]
listen = "127.0.0.1:0"
store = "STORE"

[providers.local]
kind = "mock"
[providers.local.mock]
output_tokens = 20

[models.mock-1]
provider = "local"
upstream_model = "mock-1"
input_price_per_mtok = 0.15
output_price_per_mtok = 0.60

[limits]
backend = "redis"
redis_url = "{REDIS}"
key_prefix = "{prefix}"
# These tests are about what is admitted, not Redis latency: 200 calls at once on a
# loaded 2-core machine can keep a Lua round trip past the 250 ms default.
backend_timeout = "5s"
{limits}
"#
    )
}
