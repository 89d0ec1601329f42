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

/// A dataset read and checked against its lock, every case in memory (for `keel eval
/// lock` and small consumers; the runner streams with [`scan_dataset`] instead).
#[derive(Debug, Clone)]
pub struct Dataset {
    pub hash: String,
    pub cases: Vec<Case>,
}

/// A dataset checked line by line without keeping its cases: its hash and case count.
/// [`DatasetInfo::cases`] reads the cases again, one at a time, so a run over 20,000
/// cases holds only the cases in flight.
#[derive(Debug, Clone)]
pub struct DatasetInfo {
    pub path: std::path::PathBuf,
    pub hash: String,
    pub cases: usize,
}

fn read_error(path: &Path, e: impl std::fmt::Display) -> DatasetError {
    DatasetError::Read {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

fn check_lock(
    path: &Path,
    suite: &str,
    locked: Option<&str>,
    hash: &str,
) -> Result<(), DatasetError> {
    let p = path.display().to_string();
    match locked {
        None => Err(DatasetError::NotLocked {
            path: p,
            suite: suite.into(),
        }),
        Some(l) if l != hash => Err(DatasetError::Changed {
            path: p,
            suite: suite.into(),
            locked: l.into(),
            actual: hash.into(),
        }),
        Some(_) => Ok(()),
    }
}

/// Parse one non-empty line `n` (1-based) into a validated case.
fn parse_line(line: &str, n: usize, path: &str) -> Result<Case, DatasetError> {
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
    Ok(case)
}

/// Calls `each(line_number, line)` for every line of `reader` (without its newline)
/// and returns the SHA-256 of its exact bytes; one line in memory at a time. `path`
/// names the source in errors.
fn for_each_line(
    mut reader: impl std::io::BufRead,
    path: &Path,
    mut each: impl FnMut(usize, &str) -> Result<(), DatasetError>,
) -> Result<String, DatasetError> {
    let mut hasher = Sha256::new();
    let mut buf = Vec::new();
    let mut n = 0;
    loop {
        buf.clear();
        let read = reader
            .read_until(b'\n', &mut buf)
            .map_err(|e| read_error(path, e))?;
        if read == 0 {
            break;
        }
        n += 1;
        hasher.update(&buf);
        let line = std::str::from_utf8(&buf)
            .map_err(|e| read_error(path, format!("line {n} is not UTF-8: {e}")))?;
        each(n, line.trim_end_matches(['\n', '\r']))?;
    }
    Ok(format!("sha256:{}", hex::encode(hasher.finalize())))
}

fn open(path: &Path) -> Result<std::io::BufReader<std::fs::File>, DatasetError> {
    let file = std::fs::File::open(path).map_err(|e| read_error(path, e))?;
    Ok(std::io::BufReader::new(file))
}

/// Parse and check every case of `reader` — one per non-empty line, ids defaulting to
/// `line-N` and unique — handing each to `keep`. Returns the hash of the bytes and the
/// number of cases (none is an error).
fn check_cases(
    reader: impl std::io::BufRead,
    path: &Path,
    mut keep: impl FnMut(Case),
) -> Result<(String, usize), DatasetError> {
    let p = path.display().to_string();
    let mut seen = HashSet::new();
    let hash = for_each_line(reader, path, |n, line| {
        if line.trim().is_empty() {
            return Ok(());
        }
        let case = parse_line(line, n, &p)?;
        if !seen.insert(case.id.clone()) {
            return Err(DatasetError::Line {
                path: p.clone(),
                line: n,
                message: format!("duplicate case id `{}`", case.id),
            });
        }
        keep(case);
        Ok(())
    })?;
    if seen.is_empty() {
        return Err(DatasetError::Empty { path: p });
    }
    Ok((hash, seen.len()))
}

/// Check `path` in one streaming pass: every line parses into a valid case, ids are
/// unique, and (with `require_lock`) the bytes match the suite's lock. Holds the case ids
/// (for the uniqueness check), never the cases.
pub fn scan_dataset(
    path: &Path,
    suite: &str,
    locked: Option<&str>,
    require_lock: bool,
) -> Result<DatasetInfo, DatasetError> {
    // A changed file is reported as changed even when it also has a bad line.
    let (hash, cases) = match check_cases(open(path)?, path, |_| {}) {
        Ok(checked) => checked,
        Err(e) => {
            if require_lock {
                if let Ok(bytes) = std::fs::read(path) {
                    check_lock(path, suite, locked, &dataset_hash(&bytes))?;
                }
            }
            return Err(e);
        }
    };
    if require_lock {
        check_lock(path, suite, locked, &hash)?;
    }
    Ok(DatasetInfo {
        path: path.to_path_buf(),
        hash,
        cases,
    })
}

impl DatasetInfo {
    /// The cases, read from the file again one line at a time, in file order. A line
    /// that no longer parses (the file changed since the scan) is yielded as an error;
    /// [`DatasetInfo::verify_unchanged`] after the run tells whether it did.
    pub fn cases(&self) -> Result<CaseReader, DatasetError> {
        Ok(CaseReader {
            path: self.path.display().to_string(),
            lines: std::io::BufRead::lines(open(&self.path)?),
            n: 0,
        })
    }

    /// The file still hashes to what was scanned (a run's results belong to the locked
    /// dataset only if nobody edited it mid-run).
    pub fn verify_unchanged(&self, suite: &str) -> Result<(), DatasetError> {
        let hash = for_each_line(open(&self.path)?, &self.path, |_, _| Ok(()))?;
        check_lock(&self.path, suite, Some(&self.hash), &hash)
    }
}

/// Iterator over a dataset's cases, one line in memory at a time.
pub struct CaseReader {
    path: String,
    lines: std::io::Lines<std::io::BufReader<std::fs::File>>,
    n: usize,
}

impl Iterator for CaseReader {
    type Item = Result<Case, DatasetError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let line = self.lines.next()?;
            self.n += 1;
            let line = match line {
                Ok(l) => l,
                Err(e) => {
                    return Some(Err(DatasetError::Read {
                        path: self.path.clone(),
                        message: e.to_string(),
                    }))
                }
            };
            if line.trim().is_empty() {
                continue;
            }
            return Some(parse_line(&line, self.n, &self.path));
        }
    }
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
    let bytes = std::fs::read(path).map_err(|e| read_error(path, e))?;
    let hash = dataset_hash(&bytes);
    if require_lock {
        check_lock(path, suite, locked, &hash)?;
    }
    let cases = parse_cases(&bytes, &p)?;
    Ok(Dataset { hash, cases })
}

/// One case per non-empty line; ids default to `line-N` and must be unique.
pub fn parse_cases(bytes: &[u8], path: &str) -> Result<Vec<Case>, DatasetError> {
    let mut cases = Vec::new();
    check_cases(bytes, Path::new(path), |c| cases.push(c))?;
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
    fn the_streaming_scan_agrees_with_loading_and_reads_the_cases_back() {
        let dir = tempfile::tempdir().unwrap();
        let text = "{\"id\":\"a\",\"input\":\"hi\"}\r\n\n{\"input\":\"no id\"}\n{\"id\":\"c\"}";
        let data = write(dir.path(), "d.jsonl", text);
        let loaded = load_dataset(&data, "s", None, false).unwrap();
        let info = scan_dataset(&data, "s", Some(&loaded.hash), true).unwrap();
        assert_eq!(info.hash, loaded.hash);
        assert_eq!(info.cases, 3);
        let streamed: Vec<Case> = info.cases().unwrap().map(Result::unwrap).collect();
        assert_eq!(streamed, loaded.cases);
        assert_eq!(streamed[1].id, "line-3");
        info.verify_unchanged("s").unwrap();

        // The same errors as loading, named by line; a changed file reads as changed.
        let e = scan_dataset(&data, "s", None, true).unwrap_err();
        assert!(matches!(e, DatasetError::NotLocked { .. }), "{e}");
        std::fs::write(&data, "{\"id\":\"a\"}\n{\"id\":\"a\"}\n").unwrap();
        let e = scan_dataset(&data, "s", None, false).unwrap_err();
        assert_eq!(
            e.to_string(),
            "{}:2: duplicate case id `a`".replace("{}", &data.display().to_string())
        );
        let e = scan_dataset(&data, "s", Some(&loaded.hash), true).unwrap_err();
        assert!(matches!(e, DatasetError::Changed { .. }), "{e}");
        let e = info.verify_unchanged("s").unwrap_err();
        assert!(e.to_string().contains("changed since it was locked"), "{e}");
        std::fs::write(&data, "\n\n").unwrap();
        assert!(matches!(
            scan_dataset(&data, "s", None, false).unwrap_err(),
            DatasetError::Empty { .. }
        ));
        // A line that breaks after the scan is an error from the reader, not a skip.
        std::fs::write(&data, "{\"id\":\"a\"}\nnot json\n").unwrap();
        let read: Vec<_> = info.cases().unwrap().collect();
        assert!(read[0].is_ok() && read[1].is_err());
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
