#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Every command the README shows works verbatim on a fresh copy of `examples/`.
//!
//! Each ```sh block of README.md that starts with `cd examples/NAME` is run line by line
//! on its own fresh copy of that folder (no store, committed to a new git repository, as
//! in a clone of Keel): a `keel …` line runs the built binary with exactly the README's
//! arguments, and must exit with the code its comment states (`# exit 1`), else 0. A
//! comment line is an instruction to the reader ("edit …, commit it"); this file knows
//! what each one means, and a new one fails the test until it is taught here — so the
//! README cannot drift from what works. `examples/ci/keel-eval-gate.yml` is run the same
//! way: its `run:` steps, in order, on a fresh repository holding the quickstart.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{copy_dir, stdout_and_stderr};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The README's ```sh blocks that start with `cd examples/…`: (example folder, lines).
fn readme_blocks() -> Vec<(String, Vec<String>)> {
    let readme = fs::read_to_string(repo_root().join("README.md")).unwrap();
    let mut blocks = Vec::new();
    let mut current: Option<Vec<String>> = None;
    for line in readme.lines() {
        match (&mut current, line.trim_end()) {
            (None, "```sh") => current = Some(Vec::new()),
            (Some(_), "```") => {
                let lines = current.take().unwrap();
                if let Some(folder) = lines.first().and_then(|l| l.strip_prefix("cd examples/")) {
                    blocks.push((folder.trim().to_string(), lines[1..].to_vec()));
                }
            }
            (Some(lines), l) => lines.push(l.to_string()),
            (None, _) => {}
        }
    }
    blocks
}

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .args(["-c", "commit.gpgsign=false"])
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "you")
        .env("GIT_AUTHOR_EMAIL", "you@example.com")
        .env("GIT_COMMITTER_NAME", "you")
        .env("GIT_COMMITTER_EMAIL", "you@example.com")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        stdout_and_stderr(&out)
    );
}

/// A fresh copy of `examples/<folder>` (no store), committed to a new git repository.
fn fresh_copy(folder: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&repo_root().join("examples").join(folder), dir.path());
    fs::write(dir.path().join(".gitignore"), "keel.db*\n").unwrap();
    git(dir.path(), &["init", "-q", "-b", "main"]);
    git(dir.path(), &["add", "-A"]);
    git(dir.path(), &["commit", "-q", "-m", "the example"]);
    dir
}

/// Split a shell line into words: spaces separate, single and double quotes group.
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut quote: Option<char> = None;
    for c in line.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.get_or_insert_with(String::new).push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                word.get_or_insert_with(String::new);
            }
            (None, c) if c.is_whitespace() => words.extend(word.take()),
            (None, c) => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    words
}

/// A command and its trailing comment (`keel check   # … ok`).
fn split_comment(line: &str) -> (&str, &str) {
    match line.find(" #") {
        Some(i) => (line[..i].trim(), line[i + 2..].trim()),
        None => (line.trim(), ""),
    }
}

/// The exit code a comment states (`exit 1: …`), else 0.
fn expected_exit(comment: &str) -> i32 {
    comment
        .strip_prefix("exit ")
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Carry out an instruction the README gives the reader in a comment line.
fn follow(dir: &Path, instruction: &str) {
    let prompt = dir.join("prompts/support/answer.toml");
    let src = fs::read_to_string(&prompt).unwrap();
    match instruction {
        "edit prompts/support/answer.toml, commit it, then:" => {
            fs::write(&prompt, src.replace("Answer briefly", "Answer in two sentences")).unwrap();
            git(dir, &["commit", "-q", "-am", "your commit subject"]);
        }
        "break the prompt: in prompts/support/answer.toml, content = \"{{ question | upper }}\"" => {
            let broken = src.replace(
                "content = \"{{ question }}\"",
                "content = \"{{ question | upper }}\"",
            );
            assert_ne!(broken, src, "the quickstart prompt has no `{{{{ question }}}}` line");
            fs::write(&prompt, broken).unwrap();
        }
        other => panic!(
            "README.md instructs `# {other}`, which tests/readme_cli.rs does not know how to \
             follow: teach `follow` what it means"
        ),
    }
}

fn run_keel(dir: &Path, args: &[String]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_keel"))
        .args(args)
        .current_dir(dir)
        .env_remove("KEEL_CONFIG")
        .env_remove("KEEL_ACTOR")
        .env("USER", "readme-reader")
        .output()
        .unwrap()
}

#[test]
fn every_quickstart_command_in_the_readme_works_verbatim_on_a_fresh_copy() {
    let blocks = readme_blocks();
    assert!(
        blocks.len() >= 2,
        "the README's walkthroughs (cd examples/quickstart) were not found"
    );
    for (folder, lines) in blocks {
        let guard = fresh_copy(&folder);
        let dir = guard.path();
        for line in lines.iter().filter(|l| !l.trim().is_empty()) {
            if let Some(instruction) = line.trim().strip_prefix("# ") {
                follow(dir, instruction);
                continue;
            }
            let (command, comment) = split_comment(line);
            let words = shell_words(command);
            assert_eq!(
                words.first().map(String::as_str),
                Some("keel"),
                "README line `{line}` in a `cd examples/{folder}` block is not a keel command"
            );
            let out = run_keel(dir, &words[1..]);
            assert_eq!(
                out.status.code(),
                Some(expected_exit(comment)),
                "README: `{line}` on a fresh copy of examples/{folder}:\n{}",
                stdout_and_stderr(&out)
            );
        }
    }
}

/// One `run:` step of a workflow.
struct Step {
    name: String,
    env: Vec<(String, String)>,
    script: String,
}

/// The `run:` steps of a GitHub Actions workflow, in order. Enough YAML for the example:
/// `- name:`/`- uses:` start a step, `run: |` takes the more-indented lines after it,
/// `env:` a block of `KEY: value` lines.
fn workflow_steps(yaml: &str) -> Vec<Step> {
    let mut steps = Vec::new();
    let mut name = String::new();
    let mut env = Vec::new();
    let mut lines = yaml.lines().peekable();
    while let Some(line) = lines.next() {
        let t = line.trim_start();
        let indent = line.len() - t.len();
        if let Some(rest) = t.strip_prefix("- ") {
            name = rest.strip_prefix("name: ").unwrap_or(rest).to_string();
            env.clear();
        } else if t == "env:" {
            while let Some(next) = lines.peek() {
                let nt = next.trim_start();
                if next.len() - nt.len() <= indent || nt.is_empty() {
                    break;
                }
                let (k, v) = nt.split_once(": ").unwrap();
                env.push((k.to_string(), v.to_string()));
                lines.next();
            }
        } else if let Some(rest) = t.strip_prefix("run: ") {
            let mut script = String::new();
            if rest == "|" {
                while let Some(next) = lines.peek() {
                    let nt = next.trim_start();
                    if !nt.is_empty() && next.len() - nt.len() <= indent {
                        break;
                    }
                    script.push_str(nt);
                    script.push('\n');
                    lines.next();
                }
            } else {
                script = rest.to_string();
            }
            steps.push(Step {
                name: name.clone(),
                env: env.clone(),
                script,
            });
        }
    }
    steps
}

/// GitHub's `${{ … }}` expressions as a pull request from `base` would see them.
fn expand(text: &str, base: &str) -> String {
    let mut out = text.replace("${{ github.event.pull_request.base.sha }}", base);
    while let Some(start) = out.find("${{") {
        let end = out[start..].find("}}").map_or(out.len(), |e| start + e + 2);
        out.replace_range(start..end, "");
    }
    out
}

/// Run the example workflow's steps in `repo` (checked out at the pull request, with
/// `base` its base commit), `keel` on the PATH; returns the gate step's exit code.
fn run_workflow(repo: &Path, base: &str) -> i32 {
    let yaml = fs::read_to_string(repo_root().join("examples/ci/keel-eval-gate.yml")).unwrap();
    let bin = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_keel"), bin.path().join("keel")).unwrap();
    let path = format!(
        "{}:{}",
        bin.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut gate = None;
    for Step { name, env, script } in workflow_steps(&yaml) {
        if script.starts_with("cargo install") {
            continue; // the binary under test is on the PATH instead
        }
        let mut cmd = Command::new("bash");
        cmd.args(["-e", "-c", &expand(&script, base)])
            .current_dir(repo)
            .env("PATH", &path)
            .env_remove("KEEL_CONFIG")
            .env_remove("KEEL_ACTOR");
        for (k, v) in env {
            cmd.env(k, expand(&v, base));
        }
        let out = cmd.output().unwrap();
        if name == "Run the gate" {
            gate = out.status.code();
            fs::write(repo.join("gate.log"), stdout_and_stderr(&out)).unwrap();
        } else {
            assert!(
                out.status.success(),
                "workflow step `{name}` failed:\n{}",
                stdout_and_stderr(&out)
            );
        }
    }
    gate.expect("the workflow has a step named `Run the gate`")
}

fn head(repo: &Path) -> String {
    let out = Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(repo)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn the_ci_example_gates_pull_requests_from_a_fresh_repository() {
    // A repository with no prompts yet; the first pull request adds the quickstart.
    let repo = tempfile::tempdir().unwrap();
    let dir = repo.path();
    fs::write(dir.join("README.md"), "an app\n").unwrap();
    fs::write(dir.join(".gitignore"), "keel.db*\neval-*\ngate.log\n").unwrap();
    git(dir, &["init", "-q", "-b", "main"]);
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "-m", "an app"]);
    let empty_base = head(dir);
    copy_dir(&repo_root().join("examples/quickstart"), dir);
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "-m", "add keel"]);
    let gate = run_workflow(dir, &empty_base);
    let log = fs::read_to_string(dir.join("gate.log")).unwrap();
    assert_eq!(gate, 0, "first pull request, fresh store:\n{log}");
    assert!(dir.join("eval-report.md").exists() && dir.join("eval-junit.xml").exists());

    // The next pull request breaks the prompt: a fresh store again (each CI job starts
    // empty), the base commit's prompt is the baseline, and the gate blocks it.
    let merged = head(dir);
    for f in ["keel.db", "keel.db-wal", "keel.db-shm", "eval-report.md"] {
        let _ = fs::remove_file(dir.join(f));
    }
    let prompt = dir.join("prompts/support/answer.toml");
    let src = fs::read_to_string(&prompt).unwrap();
    fs::write(
        &prompt,
        src.replace("{{ question }}", "{{ question | upper }}"),
    )
    .unwrap();
    git(dir, &["commit", "-q", "-am", "shout the question"]);
    let gate = run_workflow(dir, &merged);
    let log = fs::read_to_string(dir.join("gate.log")).unwrap();
    assert_eq!(gate, 1, "a regressing pull request:\n{log}");
    assert!(log.contains("GATE FAILED"), "{log}");
    let report = fs::read_to_string(dir.join("eval-report.md")).unwrap();
    assert!(report.contains("(regression)"), "{report}");
}
