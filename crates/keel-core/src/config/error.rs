//! Configuration errors that name the file, the key path and the fix.

use std::fmt;
use std::path::PathBuf;

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigIssue {
    /// Dotted key path, e.g. `models.mock-1.provider` (empty for whole-file problems).
    pub path: String,
    pub message: String,
    /// What to do about it.
    pub hint: Option<String>,
}

/// Everything wrong with a config file (all issues, not just the first).
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    pub file: PathBuf,
    pub issues: Vec<ConfigIssue>,
}

impl ConfigError {
    pub fn single(file: PathBuf, path: &str, message: String, hint: Option<String>) -> Self {
        ConfigError {
            file,
            issues: vec![ConfigIssue {
                path: path.to_string(),
                message,
                hint,
            }],
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, issue) in self.issues.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            let file = self.file.display();
            if issue.path.is_empty() {
                write!(f, "{file}: {}", issue.message)?;
            } else {
                write!(f, "{file}: {}: {}", issue.path, issue.message)?;
            }
            if let Some(h) = &issue.hint {
                write!(f, " ({h})")?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// For a serde "unknown field `x`, expected one of `a`, `b`" message, suggest the
/// closest expected name.
pub(crate) fn did_you_mean(message: &str) -> Option<String> {
    let unknown = message
        .strip_prefix("unknown field `")?
        .split('`')
        .next()?
        .to_string();
    let expected: Vec<&str> = message
        .split("expected ")
        .nth(1)?
        .split('`')
        .enumerate()
        .filter(|(i, _)| i % 2 == 1)
        .map(|(_, s)| s)
        .collect();
    let best = expected
        .iter()
        .map(|e| (strsim::jaro_winkler(&unknown, e), *e))
        .max_by(|a, b| a.0.total_cmp(&b.0))?;
    if best.0 >= 0.75 {
        Some(format!("did you mean `{}`?", best.1))
    } else {
        Some(format!("valid keys here: {}", expected.join(", ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_the_closest_key() {
        let m = "unknown field `upstrem_model`, expected one of `provider`, `upstream_model`, `timeout`";
        assert_eq!(did_you_mean(m).unwrap(), "did you mean `upstream_model`?");
        let m = "unknown field `zzz`, expected `kind` or `base_url`";
        assert_eq!(did_you_mean(m).unwrap(), "valid keys here: kind, base_url");
        assert!(did_you_mean("invalid type: string").is_none());
    }
}
