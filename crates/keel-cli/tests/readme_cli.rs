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
