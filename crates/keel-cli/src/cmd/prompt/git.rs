//! Who changed a prompt file and why, from git: the last commit that touched it. Used by
//! `keel prompt push` when `--author`/`--message` are not given, and whether the file has
//! changes no commit describes yet.

use std::path::Path;
use std::process::Command;

/// The last commit touching a file.
pub struct FileCommit {
    /// `Name <email>`.
    pub author: String,
    pub subject: String,
    pub commit_id: String,
}

/// `None` when the file is not in a git work tree, has no commit, or git is missing.
pub fn last_commit(file: &Path) -> Option<FileCommit> {
    let dir = file.parent()?;
    let name = file.file_name()?;
    let out = Command::new("git")
        .current_dir(dir)
        .args(["log", "-1", "--format=%an <%ae>%x1f%s%x1f%H", "--"])
        .arg(name)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut parts = text.trim_end().splitn(3, '\u{1f}');
    let (author, subject, commit_id) = (parts.next()?, parts.next()?, parts.next()?);
    if commit_id.is_empty() {
        return None;
    }
    Some(FileCommit {
        author: author.to_string(),
        subject: subject.to_string(),
        commit_id: commit_id.to_string(),
    })
}

/// Who is acting: `$KEEL_ACTOR`, else `git config user.name`, else `$USER`, else "unknown".
pub fn default_actor() -> String {
    if let Some(a) = non_empty_env("KEEL_ACTOR") {
        return a;
    }
    let git_name = Command::new("git")
        .args(["config", "user.name"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|s| !s.is_empty());
    git_name.unwrap_or_else(default_user)
}

/// `$USER`, else "unknown".
pub fn default_user() -> String {
    non_empty_env("USER").unwrap_or_else(|| "unknown".to_string())
}

fn non_empty_env(key: &str) -> Option<String> {
    std::env::var(key).ok().filter(|v| !v.trim().is_empty())
}

/// Whether `file` differs from the last commit (modified, staged or never committed):
/// then that commit's author and message do not describe its content. `false` outside
/// a git work tree or without git.
pub fn uncommitted(file: &Path) -> bool {
    let (Some(dir), Some(name)) = (file.parent(), file.file_name()) else {
        return false;
    };
    Command::new("git")
        .current_dir(dir)
        .args(["status", "--porcelain", "--"])
        .arg(name)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .is_some_and(|o| !o.stdout.iter().all(u8::is_ascii_whitespace))
}
