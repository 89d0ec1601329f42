//! The rules file: scripted input→output pairs for the mock, so a demo, an eval or a
//! quickstart can get meaningful answers without a model.
//!
//! A rules file is TOML or JSON (chosen by the file extension) holding a list of rules,
//! checked in order against the last user message (directives already stripped); the
//! first rule that matches wins. The format is in the `mock` module docs. The file is
//! read and every regex compiled once, at load; a bad file is an error naming the file,
//! the rule and the problem.

use std::path::Path;

use regex::Regex;
use serde::Deserialize;

use super::MockError;

/// What a matching rule makes the mock do. Directives in the message override it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuleAction {
    pub reply: Option<String>,
    pub status: Option<u16>,
    pub tokens: Option<u32>,
    pub tool: Option<String>,
    pub latency_ms: Option<u64>,
}

#[derive(Debug, Clone)]
struct Rule {
    contains: Option<String>,
    regex: Option<Regex>,
    action: RuleAction,
}

impl Rule {
    fn matches(&self, text: &str) -> bool {
        self.contains
            .as_ref()
            .is_none_or(|s| text.contains(s.as_str()))
            && self.regex.as_ref().is_none_or(|r| r.is_match(text))
    }
}

/// The loaded rules, in file order. Empty when no file is configured.
#[derive(Debug, Clone, Default)]
pub struct RuleSet {
    rules: Vec<Rule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    #[serde(rename = "match")]
    contains: Option<String>,
    regex: Option<String>,
    reply: Option<String>,
    status: Option<u16>,
    tokens: Option<u32>,
    tool: Option<String>,
    latency_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    rules: Vec<RawRule>,
}

impl RuleSet {
    /// Read and check a rules file; `.toml` and `.json` are understood.
    pub fn load(path: &Path) -> Result<Self, MockError> {
        let shown = path.display().to_string();
        let err = |message: String| MockError::Rules {
            path: shown.clone(),
            message,
        };
        let text =
            std::fs::read_to_string(path).map_err(|e| err(format!("cannot read it: {e}")))?;
        match path.extension().and_then(|e| e.to_str()) {
            Some(ext) if ext.eq_ignore_ascii_case("toml") => Self::from_toml(&text, &shown),
            Some(ext) if ext.eq_ignore_ascii_case("json") => Self::from_json(&text, &shown),
            _ => Err(err(
                "unknown format: name the file `*.toml` or `*.json`".to_string()
            )),
        }
    }

    /// Rules from TOML text (`[[rules]]` tables); `origin` names it in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<Self, MockError> {
        let raw: RawFile = toml::from_str(text).map_err(|e| MockError::Rules {
            path: origin.to_string(),
            message: format!("invalid TOML: {}", e.to_string().trim_end()),
        })?;
        Self::build(raw.rules, origin)
    }

    /// Rules from JSON text: `{"rules": [...]}` or a bare `[...]`; `origin` names it in errors.
    pub fn from_json(text: &str, origin: &str) -> Result<Self, MockError> {
        let err = |message: String| MockError::Rules {
            path: origin.to_string(),
            message,
        };
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| err(format!("invalid JSON: {e}")))?;
        let raw = if value.is_array() {
            serde_json::from_value::<Vec<RawRule>>(value)
        } else {
            serde_json::from_value::<RawFile>(value).map(|f| f.rules)
        }
        .map_err(|e| err(format!("invalid rules: {e}")))?;
        Self::build(raw, origin)
    }

    fn build(raw: Vec<RawRule>, origin: &str) -> Result<Self, MockError> {
        let mut rules = Vec::with_capacity(raw.len());
        for (i, r) in raw.into_iter().enumerate() {
            let err = |problem: String| MockError::Rules {
                path: origin.to_string(),
                message: format!("rule {} (counting from 1): {problem}", i + 1),
            };
            let regex = match r.regex {
                Some(src) => {
                    Some(Regex::new(&src).map_err(|e| err(format!("invalid regex `{src}`: {e}")))?)
                }
                None => None,
            };
            if let Some(status) = r.status {
                if !(400..=599).contains(&status) {
                    return Err(err(format!(
                        "status {status} is not an error status; use 400..=599"
                    )));
                }
            }
            if r.reply.is_some() && r.tool.is_some() {
                return Err(err("sets both `reply` and `tool`; keep one".to_string()));
            }
            if r.tool.as_deref().is_some_and(|t| t.trim().is_empty()) {
                return Err(err("`tool` is empty; give the tool's name".to_string()));
            }
            let action = RuleAction {
                reply: r.reply,
                status: r.status,
                tokens: r.tokens,
                tool: r.tool,
                latency_ms: r.latency_ms,
            };
            if action == RuleAction::default() {
                return Err(err(
                    "does nothing; give at least one of `reply`, `status`, `tokens`, `tool`, `latency_ms`"
                        .to_string(),
                ));
            }
            rules.push(Rule {
                contains: r.contains,
                regex,
                action,
            });
        }
        Ok(RuleSet { rules })
    }

    /// The action of the first rule matching `text`.
    pub fn first_match(&self, text: &str) -> Option<&RuleAction> {
        self.rules
            .iter()
            .find(|r| r.matches(text))
            .map(|r| &r.action)
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOML: &str = r#"
        [[rules]]
        match = "refund"
        regex = "(?i)order\\s+#\\d+"
        reply = "Refunds take 5 days."

        [[rules]]
        match = "refund"
        reply = "Which order?"

        [[rules]]
        regex = "^weather in"
        tool = "get_weather"

        [[rules]]
        match = "overload"
        status = 503
        latency_ms = 10

        [[rules]]
        match = "long"
        tokens = 30
    "#;

    #[test]
    fn first_match_wins_and_both_conditions_must_hold() {
        let rules = RuleSet::from_toml(TOML, "rules.toml").unwrap();
        assert_eq!(rules.len(), 5);
        let a = rules.first_match("refund for Order #12 please").unwrap();
        assert_eq!(a.reply.as_deref(), Some("Refunds take 5 days."));
        let a = rules.first_match("a refund please").unwrap();
        assert_eq!(a.reply.as_deref(), Some("Which order?"));
        let a = rules.first_match("weather in Paris").unwrap();
        assert_eq!(a.tool.as_deref(), Some("get_weather"));
        assert!(rules.first_match("the weather in Paris").is_none());
        let a = rules.first_match("overload me").unwrap();
        assert_eq!((a.status, a.latency_ms), (Some(503), Some(10)));
        assert!(
            rules.first_match("Refund").is_none(),
            "match is case-sensitive"
        );
    }

    #[test]
    fn json_accepts_object_or_bare_list() {
        let a =
            RuleSet::from_json(r#"{"rules":[{"match":"hi","reply":"hello"}]}"#, "r.json").unwrap();
        let b = RuleSet::from_json(r#"[{"match":"hi","reply":"hello"}]"#, "r.json").unwrap();
        for rules in [a, b] {
            assert_eq!(
                rules.first_match("hi!").and_then(|a| a.reply.as_deref()),
                Some("hello")
            );
        }
    }

    #[test]
    fn a_rule_without_condition_matches_everything() {
        let rules = RuleSet::from_json(r#"[{"tokens":5}]"#, "r.json").unwrap();
        assert_eq!(rules.first_match("").map(|a| a.tokens), Some(Some(5)));
    }

    fn error_of(result: Result<RuleSet, MockError>) -> String {
        result.unwrap_err().to_string()
    }

    #[test]
    fn bad_files_are_explained() {
        let e = error_of(RuleSet::from_toml(
            "[[rules]]\nmatch = \"x\"\nrepy = \"y\"\n",
            "a.toml",
        ));
        assert!(
            e.starts_with("mock rules file `a.toml`: invalid TOML"),
            "{e}"
        );
        assert!(e.contains("repy"), "{e}");
        let e = error_of(RuleSet::from_toml("[[rule]]\nmatch = \"x\"\n", "a.toml"));
        assert!(e.contains("unknown field `rule`"), "{e}");
        let e = error_of(RuleSet::from_json(
            r#"[{"regex":"(","reply":"x"}]"#,
            "b.json",
        ));
        assert!(
            e.contains("b.json") && e.contains("rule 1") && e.contains("invalid regex `(`"),
            "{e}"
        );
        let e = error_of(RuleSet::from_json(
            r#"[{"match":"x","status":200}]"#,
            "b.json",
        ));
        assert!(e.contains("status 200 is not an error status"), "{e}");
        let e = error_of(RuleSet::from_json(
            r#"[{"reply":"x"},{"match":"x"}]"#,
            "b.json",
        ));
        assert!(e.contains("rule 2") && e.contains("does nothing"), "{e}");
        let e = error_of(RuleSet::from_json(
            r#"[{"reply":"x","tool":"t"}]"#,
            "b.json",
        ));
        assert!(e.contains("both `reply` and `tool`"), "{e}");
        let e = error_of(RuleSet::from_json("{not json", "b.json"));
        assert!(e.contains("invalid JSON") && e.contains("line 1"), "{e}");
    }

    #[test]
    fn load_reads_by_extension() {
        let dir = std::env::temp_dir().join(format!("keel-mock-rules-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let toml_path = dir.join("rules.toml");
        std::fs::write(&toml_path, TOML).unwrap();
        assert_eq!(RuleSet::load(&toml_path).unwrap().len(), 5);
        let yaml = dir.join("rules.yaml");
        std::fs::write(&yaml, "rules: []").unwrap();
        let e = error_of(RuleSet::load(&yaml));
        assert!(
            e.contains("rules.yaml") && e.contains("`*.toml` or `*.json`"),
            "{e}"
        );
        let missing = dir.join("missing.json");
        let e = error_of(RuleSet::load(&missing));
        assert!(
            e.contains("missing.json") && e.contains("cannot read it"),
            "{e}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
