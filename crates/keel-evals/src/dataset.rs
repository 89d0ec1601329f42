//! Locked datasets. A suite records its dataset's SHA-256 (`[dataset] hash`); running
//! against a dataset whose bytes changed fails until `keel eval lock SUITE` re-locks it
//! (an audited act with a reason), so nobody edits the eval set to make scores go up.

use std::collections::HashSet;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::case::Case;

/// The hash of a dataset file's exact bytes, as written in the suite: `sha256:<hex>`.
pub fn dataset_hash(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Why a dataset cannot be used.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DatasetError {
    #[error("cannot read the dataset {path}: {message}")]
    Read { path: String, message: String },
    #[error("{path}:{line}: {message}")]
    Line {
        path: String,
        line: usize,
        message: String,
    },
    #[error("the dataset {path} is not locked: run `keel eval lock {suite} --reason \"...\"` to record its hash in the suite")]
    NotLocked { path: String, suite: String },
    #[error("the dataset {path} changed since it was locked (locked {locked}, now {actual}): if the change is intended, re-lock it with `keel eval lock {suite} --reason \"...\"`")]
    Changed {
        path: String,
        suite: String,
        locked: String,
        actual: String,
    },
    #[error("the dataset {path} has no cases")]
    Empty { path: String },
}

/// A dataset read and checked against its lock.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub hash: String,
    pub cases: Vec<Case>,
}

/// Read `path` and parse every line. `locked` is the suite's recorded hash; `suite`
/// names the suite in the messages. With `require_lock`, an unlocked or changed dataset
/// is an error.
pub fn load_dataset(
    path: &Path,
    suite: &str,
    locked: Option<&str>,
    require_lock: bool,
) -> Result<Dataset, DatasetError> {
    let p = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| DatasetError::Read {
        path: p.clone(),
        message: e.to_string(),
    })?;
    let hash = dataset_hash(&bytes);
    if require_lock {
        match locked {
            None => {
                return Err(DatasetError::NotLocked {
                    path: p,
                    suite: suite.into(),
                })
            }
            Some(l) if l != hash => {
                return Err(DatasetError::Changed {
                    path: p,
                    suite: suite.into(),
                    locked: l.into(),
                    actual: hash,
                })
            }
            Some(_) => {}
        }
    }
    let cases = parse_cases(&bytes, &p)?;
    Ok(Dataset { hash, cases })
}

/// One case per non-empty line; ids default to `line-N` and must be unique.
pub fn parse_cases(bytes: &[u8], path: &str) -> Result<Vec<Case>, DatasetError> {
    let text = std::str::from_utf8(bytes).map_err(|e| DatasetError::Read {
        path: path.into(),
        message: format!("not UTF-8: {e}"),
    })?;
    let mut cases = Vec::new();
    let mut seen = HashSet::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let at = |message: String| DatasetError::Line {
            path: path.into(),
            line: n,
            message,
        };
        let mut case: Case = serde_json::from_str(line).map_err(|e| at(e.to_string()))?;
        if case.id.is_empty() {
            case.id = format!("line-{n}");
        }
        for (j, spec) in case.assertions.iter().enumerate() {
            spec.validate()
                .map_err(|m| at(format!("assert[{j}]: {m}")))?;
        }
        if !seen.insert(case.id.clone()) {
            return Err(at(format!("duplicate case id `{}`", case.id)));
        }
        cases.push(case);
    }
    if cases.is_empty() {
        return Err(DatasetError::Empty { path: path.into() });
    }
    Ok(cases)
}

/// Rewrite `[dataset] hash` in the suite file at `suite_file`, keeping everything else
/// (comments, order) as written. Returns the previous hash.
pub fn write_lock(suite_file: &Path, hash: &str) -> Result<Option<String>, String> {
    let text = std::fs::read_to_string(suite_file).map_err(|e| e.to_string())?;
    let mut doc: toml_edit::DocumentMut = text
        .parse()
        .map_err(|e: toml_edit::TomlError| e.to_string())?;
    let Some(dataset) = doc.get_mut("dataset").and_then(|d| d.as_table_like_mut()) else {
        return Err("the suite has no [dataset] table".into());
    };
    let previous = dataset
        .get("hash")
        .and_then(|h| h.as_str())
        .map(str::to_string);
    dataset.insert("hash", toml_edit::value(hash));
    std::fs::write(suite_file, doc.to_string()).map_err(|e| e.to_string())?;
    Ok(previous)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn the_lock_catches_any_change_and_names_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let data = write(dir.path(), "d.jsonl", "{\"id\":\"a\",\"input\":\"hi\"}\n");
        let hash = dataset_hash(&std::fs::read(&data).unwrap());
        assert!(hash.starts_with("sha256:") && hash.len() == 71);
        let ok = load_dataset(&data, "s", Some(&hash), true).unwrap();
        assert_eq!(ok.cases.len(), 1);

        let e = load_dataset(&data, "s", None, true).unwrap_err();
        assert!(e.to_string().contains("keel eval lock s"), "{e}");

        // One changed character is a different dataset.
        std::fs::write(&data, "{\"id\":\"a\",\"input\":\"ho\"}\n").unwrap();
        let e = load_dataset(&data, "s", Some(&hash), true).unwrap_err();
        assert!(matches!(e, DatasetError::Changed { .. }), "{e}");
        assert!(e.to_string().contains("re-lock it"), "{e}");
        // Without the lock requirement it still loads (for `keel eval lock` itself).
        assert!(load_dataset(&data, "s", Some(&hash), false).is_ok());
    }

    #[test]
    fn bad_lines_are_named_by_line() {
        let e = parse_cases(b"{\"id\":\"a\"}\n\nnot json\n", "d.jsonl").unwrap_err();
        assert!(e.to_string().starts_with("d.jsonl:3:"), "{e}");
        let e = parse_cases(b"{\"id\":\"a\"}\n{\"id\":\"a\"}\n", "d.jsonl").unwrap_err();
        assert!(e.to_string().contains("duplicate case id `a`"), "{e}");
        let e = parse_cases(b"{\"id\":\"a\",\"oops\":1}\n", "d.jsonl").unwrap_err();
        assert!(e.to_string().contains("oops"), "{e}");
        let cases = parse_cases(b"{}\n{}\n", "d.jsonl").unwrap();
        assert_eq!(cases[1].id, "line-2");
        assert!(parse_cases(b"\n", "d.jsonl").is_err());
    }

    #[test]
    fn writing_the_lock_keeps_the_rest_of_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let suite = write(
            dir.path(),
            "s.toml",
            "# my suite\n[target]\nmodel = \"m\"\n\n[dataset]\npath = \"d.jsonl\" # the cases\n",
        );
        assert_eq!(write_lock(&suite, "sha256:aa").unwrap(), None);
        assert_eq!(
            write_lock(&suite, "sha256:bb").unwrap().as_deref(),
            Some("sha256:aa")
        );
        let text = std::fs::read_to_string(&suite).unwrap();
        assert!(
            text.contains("# my suite") && text.contains("# the cases"),
            "{text}"
        );
        assert!(text.contains("hash = \"sha256:bb\""), "{text}");
    }
}
