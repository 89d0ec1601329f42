//! Validation: [`AssertionSpec::validate`] turns a spec as written into a typed
//! [`Assertion`], or an error that names the field and the fix.

use std::time::Duration;

use keel_core::money::Nanos;
use regex::Regex;
use serde_json::Value;
use serde_json_path::JsonPath;

use super::spec::{
    Assertion, AssertionKind, AssertionSpec, ContainsMode, ASSERTION_TYPES,
    DEFAULT_COMMAND_THRESHOLD, DEFAULT_COMMAND_TIMEOUT_MS, DEFAULT_JUDGE_THRESHOLD,
    DEFAULT_LEVENSHTEIN_THRESHOLD, DEFAULT_ROUGE_L_THRESHOLD,
};

/// The optional fields each type reads (`type`, `weight` and `metric` apply to all).
fn fields_of(base: &str) -> &'static [&'static str] {
    match base {
        "contains" | "icontains" => &["value", "mode"],
        "json-path" => &["path", "value"],
        "word-count" | "char-count" => &["min", "max"],
        "levenshtein" | "rouge-l" => &["value", "threshold"],
        "tool-call" => &["name", "arguments"],
        "llm-rubric" => &["rubric", "threshold", "judge"],
        "factuality" => &["value", "threshold", "judge"],
        "groundedness" => &["threshold", "judge"],
        "command" => &["command", "threshold", "timeout_ms"],
        "is-json" | "is-refusal" => &[],
        _ => &["value"],
    }
}

impl AssertionSpec {
    /// Check the spec and build the typed assertion. The error names the field and the fix.
    pub fn validate(&self) -> Result<Assertion, String> {
        let written = self.kind.trim();
        let (negate, base) = match written.strip_prefix("not-") {
            Some(base) => (true, base),
            None => (false, written),
        };
        if !ASSERTION_TYPES.contains(&base) {
            return Err(unknown_type(written, negate, base));
        }
        self.reject_unused_fields(base)?;
        let weight = match self.weight {
            None => 1.0,
            Some(w) if w.is_finite() && w >= 0.0 => w,
            Some(w) => return Err(format!("`weight`: {w} must be a number >= 0 (default 1)")),
        };
        if let Some(m) = &self.metric {
            if m.trim().is_empty() {
                return Err(
                    "`metric`: must not be empty (omit it to report under the type)".into(),
                );
            }
        }
        Ok(Assertion {
            kind: self.build_kind(base)?,
            negate,
            weight,
            metric: self.metric.as_ref().map(|m| m.trim().to_string()),
        })
    }

    fn reject_unused_fields(&self, base: &str) -> Result<(), String> {
        let set = [
            ("value", self.value.is_some()),
            ("threshold", self.threshold.is_some()),
            ("mode", self.mode.is_some()),
            ("path", self.path.is_some()),
            ("min", self.min.is_some()),
            ("max", self.max.is_some()),
            ("rubric", self.rubric.is_some()),
            ("name", self.name.is_some()),
            ("arguments", self.arguments.is_some()),
            ("command", self.command.is_some()),
            ("judge", self.judge.is_some()),
            ("timeout_ms", self.timeout_ms.is_some()),
        ];
        let allowed = fields_of(base);
        match set
            .iter()
            .find(|(f, is_set)| *is_set && !allowed.contains(f))
        {
            None => Ok(()),
            Some((field, _)) if allowed.is_empty() => Err(format!(
                "`{field}` does not apply to `{base}` (it takes only `weight` and `metric`)"
            )),
            Some((field, _)) => Err(format!(
                "`{field}` does not apply to `{base}` (its fields: {})",
                allowed.join(", ")
            )),
        }
    }

    fn build_kind(&self, base: &str) -> Result<AssertionKind, String> {
        Ok(match base {
            "equals" => AssertionKind::Equals(self.value.clone()),
            "contains" | "icontains" | "contains-any" | "contains-all" | "icontains-any"
            | "icontains-all" => {
                let written_mode = base.rsplit_once('-').map(|(_, m)| m);
                let mode = match written_mode.or(self.mode.as_deref()) {
                    None | Some("any") => ContainsMode::Any,
                    Some("all") => ContainsMode::All,
                    Some(other) => {
                        return Err(format!("`mode`: expected `any` or `all`, got `{other}`"))
                    }
                };
                AssertionKind::Contains {
                    values: self.string_list(base)?,
                    mode,
                    case_insensitive: base.starts_with('i'),
                }
            }
            "starts-with" => AssertionKind::StartsWith(self.string_value(base, "\"Dear\"")?),
            "regex" => {
                let pattern = self.string_value(base, "\"^\\\\d+$\"")?;
                let re = Regex::new(&pattern)
                    .map_err(|e| format!("`value`: invalid regex pattern `{pattern}`: {e}"))?;
                AssertionKind::Regex(re)
            }
            "is-json" => AssertionKind::IsJson,
            "is-refusal" => AssertionKind::IsRefusal,
            "json-schema" => {
                let schema = match &self.value {
                    Some(v @ (Value::Object(_) | Value::Bool(_))) => v,
                    _ => {
                        return Err("`value`: json-schema needs a JSON schema object, e.g. \
                             {\"type\": \"object\", \"required\": [\"answer\"]}"
                            .into())
                    }
                };
                let validator = jsonschema::validator_for(schema)
                    .map_err(|e| format!("`value`: invalid JSON schema: {e}"))?;
                AssertionKind::JsonSchema(Box::new(validator))
            }
            "json-path" => {
                let query = self
                    .path
                    .as_deref()
                    .ok_or("`path`: json-path needs a JSONPath query, e.g. \"$.answer\"")?;
                let path = JsonPath::parse(query)
                    .map_err(|e| format!("`path`: invalid JSONPath `{query}`: {e}"))?;
                AssertionKind::JsonPath {
                    path,
                    expected: self.value.clone(),
                }
            }
            "word-count" | "char-count" => {
                let (min, max) = (self.min, self.max);
                match (min, max) {
                    (None, None) => {
                        return Err(format!("`min`/`max`: {base} needs at least one bound"))
                    }
                    (Some(lo), Some(hi)) if lo > hi => {
                        return Err(format!("`min`: {lo} is greater than `max` {hi}"))
                    }
                    _ => {}
                }
                if base == "word-count" {
                    AssertionKind::WordCount { min, max }
                } else {
                    AssertionKind::CharCount { min, max }
                }
            }
            "levenshtein" | "rouge-l" => {
                let expected = match &self.value {
                    None => None,
                    Some(Value::String(s)) => Some(s.clone()),
                    Some(_) => {
                        return Err(format!(
                            "`value`: {base} compares with a string (omit it to use the case's `expected`)"
                        ))
                    }
                };
                if base == "levenshtein" {
                    let threshold = self.threshold_or(DEFAULT_LEVENSHTEIN_THRESHOLD)?;
                    AssertionKind::Levenshtein { threshold, expected }
                } else {
                    let threshold = self.threshold_or(DEFAULT_ROUGE_L_THRESHOLD)?;
                    AssertionKind::RougeL { threshold, expected }
                }
            }
            "latency" => AssertionKind::LatencyMs(self.whole_number(base, "milliseconds", "2000")?),
            "tokens" => AssertionKind::Tokens(self.whole_number(base, "output tokens", "500")?),
            "cost" => {
                let usd = self.value.as_ref().and_then(Value::as_f64);
                match usd.and_then(Nanos::from_dollars) {
                    Some(max) => AssertionKind::CostUsd(max),
                    None => {
                        return Err(
                            "`value`: cost needs a maximum in USD (a number >= 0), e.g. 0.002".into(),
                        )
                    }
                }
            }
            "tool-call" => {
                let name = non_empty(self.name.as_deref())
                    .ok_or("`name`: tool-call needs the tool's name, e.g. \"get_weather\"")?;
                if let Some(args) = &self.arguments {
                    if !args.is_object() {
                        return Err("`arguments`: must be an object of the arguments to match, \
                             e.g. {\"city\": \"Paris\"}"
                            .into());
                    }
                }
                AssertionKind::ToolCall {
                    name: name.to_string(),
                    arguments: self.arguments.clone(),
                }
            }
            "llm-rubric" => AssertionKind::LlmRubric {
                rubric: non_empty(self.rubric.as_deref())
                    .ok_or("`rubric`: llm-rubric needs a rubric, e.g. \"Apologizes and offers a refund\"")?
                    .to_string(),
                threshold: self.threshold_or(DEFAULT_JUDGE_THRESHOLD)?,
                judge: self.judge_model()?,
            },
            "factuality" => AssertionKind::Factuality {
                threshold: self.threshold_or(DEFAULT_JUDGE_THRESHOLD)?,
                judge: self.judge_model()?,
                expected: match &self.value {
                    None => None,
                    Some(Value::String(s)) => Some(s.clone()),
                    Some(other) => Some(other.to_string()),
                },
            },
            "groundedness" => AssertionKind::Groundedness {
                threshold: self.threshold_or(DEFAULT_JUDGE_THRESHOLD)?,
                judge: self.judge_model()?,
            },
            "command" => {
                let argv = self.command.clone().unwrap_or_default();
                if argv.first().is_none_or(|p| p.trim().is_empty()) {
                    return Err(
                        "`command`: needs a program and its arguments, e.g. [\"python3\", \"score.py\"]"
                            .into(),
                    );
                }
                let timeout_ms = self.timeout_ms.unwrap_or(DEFAULT_COMMAND_TIMEOUT_MS);
                if timeout_ms == 0 {
                    return Err("`timeout_ms`: must be > 0 (default 30000)".into());
                }
                AssertionKind::Command {
                    argv,
                    timeout: Duration::from_millis(timeout_ms),
                    threshold: self.threshold_or(DEFAULT_COMMAND_THRESHOLD)?,
                }
            }
            other => return Err(format!("unknown assertion type `{other}`")),
        })
    }

    fn string_value(&self, base: &str, example: &str) -> Result<String, String> {
        match &self.value {
            Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
            _ => Err(format!(
                "`value`: {base} needs a non-empty string, e.g. {example}"
            )),
        }
    }

    fn string_list(&self, base: &str) -> Result<Vec<String>, String> {
        let fix = format!("`value`: {base} needs a string or a list of strings, e.g. [\"refund\", \"money back\"]");
        let values: Vec<String> = match &self.value {
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(items)) if !items.is_empty() => items
                .iter()
                .map(|v| v.as_str().map(str::to_string))
                .collect::<Option<_>>()
                .ok_or(fix)?,
            _ => return Err(fix),
        };
        if values.iter().any(String::is_empty) {
            return Err(format!(
                "`value`: {base} with an empty string matches everything"
            ));
        }
        Ok(values)
    }

    fn whole_number(&self, base: &str, unit: &str, example: &str) -> Result<u64, String> {
        self.value.as_ref().and_then(Value::as_u64).ok_or_else(|| {
            format!("`value`: {base} needs a maximum in {unit} (a whole number), e.g. {example}")
        })
    }

    fn threshold_or(&self, default: f64) -> Result<f64, String> {
        match self.threshold {
            None => Ok(default),
            Some(t) if (0.0..=1.0).contains(&t) => Ok(t),
            Some(t) => Err(format!(
                "`threshold`: {t} is outside 0..1 (default {default})"
            )),
        }
    }

    fn judge_model(&self) -> Result<Option<String>, String> {
        match &self.judge {
            None => Ok(None),
            Some(j) => match non_empty(Some(j)) {
                Some(j) => Ok(Some(j.to_string())),
                None => Err("`judge`: must name a model (omit it to use the suite's judge)".into()),
            },
        }
    }
}

fn non_empty(s: Option<&str>) -> Option<&str> {
    s.map(str::trim).filter(|s| !s.is_empty())
}

fn unknown_type(written: &str, negate: bool, base: &str) -> String {
    let best = ASSERTION_TYPES
        .iter()
        .map(|t| (strsim::levenshtein(base, t), *t))
        .min_by_key(|(d, _)| *d);
    match best {
        Some((d, t)) if d <= 2.max(base.len() / 3) => {
            let prefix = if negate { "not-" } else { "" };
            format!("unknown assertion type `{written}` (did you mean `{prefix}{t}`?)")
        }
        _ => format!(
            "unknown assertion type `{written}` (known types: {}; prefix with `not-` to negate)",
            ASSERTION_TYPES.join(", ")
        ),
    }
}
