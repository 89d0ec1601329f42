//! An online eval's assertions, compiled with the suites' engine.
//!
//! Any assertion type of `keel eval` that needs no expected output works online. A live
//! call has no `expected` answer and no `context`, so `equals`, `levenshtein`, `rouge-l`
//! and `factuality` need their `value`, and `groundedness` cannot run; judge-backed types
//! need a judge model (the eval's `judge`, or the assertion's own, a configured model).
//! `keel check` and `keel serve` both run [`compile_all`], so a table that would fail at
//! the first sampled call fails at load instead.

use std::sync::Arc;

use keel_core::config::online::OnlineEvalConfig;
use keel_core::config::{Config, ConfigIssue};
use keel_evals::assert::{Assertion, AssertionKind, AssertionSpec};

/// An online eval ready to judge.
#[derive(Debug)]
pub struct CompiledEval {
    pub config: Arc<OnlineEvalConfig>,
    pub assertions: Vec<Assertion>,
}

/// Compile every `[[online_evals]]` table of `config`; all problems at once.
pub fn compile_all(config: &Config) -> Result<Vec<CompiledEval>, Vec<ConfigIssue>> {
    let mut issues = Vec::new();
    let mut out = Vec::new();
    for (i, cfg) in config.online_evals.iter().enumerate() {
        match compile(config, cfg, i) {
            Ok(assertions) => out.push(CompiledEval {
                config: Arc::new(cfg.clone()),
                assertions,
            }),
            Err(mut found) => issues.append(&mut found),
        }
    }
    if issues.is_empty() {
        Ok(out)
    } else {
        Err(issues)
    }
}

/// Compile one eval's assertions (`index`: its place among the tables, for key paths).
pub fn compile(
    config: &Config,
    cfg: &OnlineEvalConfig,
    index: usize,
) -> Result<Vec<Assertion>, Vec<ConfigIssue>> {
    let mut issues = Vec::new();
    let mut out = Vec::new();
    for (j, raw) in cfg.asserts.iter().enumerate() {
        let path = format!("online_evals[{index}].assert[{j}]");
        let issue = |message: String, hint: &str| ConfigIssue {
            path: path.clone(),
            message,
            hint: Some(hint.to_string()),
        };
        let spec: AssertionSpec = match raw.clone().try_into() {
            Ok(s) => s,
            Err(e) => {
                issues.push(issue(
                    e.to_string().lines().next().unwrap_or_default().to_string(),
                    "an assertion table, e.g. { type = \"not-is-refusal\" }",
                ));
                continue;
            }
        };
        let assertion = match spec.validate() {
            Ok(a) => a,
            Err(e) => {
                issues.push(issue(
                    e,
                    "see the assertion types in the README's Evals section",
                ));
                continue;
            }
        };
        if let Some((message, hint)) = not_online(&assertion) {
            issues.push(issue(message, hint));
            continue;
        }
        if let Some(model) = judge_of(&assertion) {
            match model.or(cfg.judge.as_deref()) {
                None => issues.push(issue(
                    format!("`{}` needs a judge model", spec.kind),
                    "set judge = \"MODEL\" on the online eval (a configured model)",
                )),
                Some(m) if !config.models.contains_key(m) => issues.push(issue(
                    format!("the judge `{m}` is not a configured model"),
                    "name a model of [models]",
                )),
                Some(_) => {}
            }
        }
        out.push(assertion);
    }
    if issues.is_empty() {
        Ok(out)
    } else {
        Err(issues)
    }
}

/// Why `a` cannot run on a live call, and what to do.
fn not_online(a: &Assertion) -> Option<(String, &'static str)> {
    let needs_value = |t: &str| {
        Some((
            format!("`{t}` compares with an expected answer, and a live call has none"),
            "give the answer to compare with as `value`, or use a check that needs none (llm-rubric, contains, regex, word-count…)",
        ))
    };
    match &a.kind {
        AssertionKind::Equals(None) => needs_value("equals"),
        AssertionKind::Levenshtein { expected: None, .. } => needs_value("levenshtein"),
        AssertionKind::RougeL { expected: None, .. } => needs_value("rouge-l"),
        AssertionKind::Factuality { expected: None, .. } => needs_value("factuality"),
        AssertionKind::Groundedness { .. } => Some((
            "`groundedness` grades against the case's context, and a live call has none".into(),
            "use llm-rubric with a rubric that says what the answer must rest on",
        )),
        _ => None,
    }
}

/// For a judge-backed assertion: `Some(its own judge model, if any)`.
fn judge_of(a: &Assertion) -> Option<Option<&str>> {
    match &a.kind {
        AssertionKind::LlmRubric { judge, .. }
        | AssertionKind::Factuality { judge, .. }
        | AssertionKind::Groundedness { judge, .. } => Some(judge.as_deref()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(online: &str) -> Result<Config, String> {
        let text = format!(
            "[providers.m]\nkind = \"mock\"\n[models.fast]\nprovider = \"m\"\nupstream_model = \"f\"\n[models.judge]\nprovider = \"m\"\nupstream_model = \"j\"\n{online}"
        );
        Config::from_toml(&text, std::path::Path::new("keel.toml")).map_err(|e| e.to_string())
    }

    fn issues(online: &str) -> Vec<String> {
        let c = config(online).unwrap();
        match compile_all(&c) {
            Ok(_) => Vec::new(),
            Err(i) => i
                .iter()
                .map(|i| format!("{}: {}", i.path, i.message))
                .collect(),
        }
    }

    #[test]
    fn checks_that_need_an_expected_answer_or_a_judge_are_refused_with_their_path() {
        let found = issues(
            r#"
[[online_evals]]
name = "q"
model = "fast"
sample_rate = 0.5
assert = [
  { type = "not-is-refusal" },
  { type = "equals" },
  { type = "groundedness" },
  { type = "llm-rubric", rubric = "polite" },
  { type = "word-count", max = 200 },
  { type = "contains", value = "refund", bogus = 1 },
]
"#,
        );
        assert_eq!(found.len(), 4, "{found:?}");
        assert!(
            found[0].starts_with("online_evals[0].assert[1]: `equals` compares"),
            "{found:?}"
        );
        assert!(
            found[1].starts_with("online_evals[0].assert[2]: `groundedness`"),
            "{found:?}"
        );
        assert!(
            found[2].starts_with("online_evals[0].assert[3]: `llm-rubric` needs a judge"),
            "{found:?}"
        );
        assert!(
            found[3].contains("assert[5]") && found[3].contains("bogus"),
            "{found:?}"
        );
    }

    #[test]
    fn a_valid_table_compiles_with_the_evals_judge() {
        let c = config(
            r#"
[[online_evals]]
name = "q"
function = "nope"
sample_rate = 0.05
judge = "judge"
assert = [{ type = "llm-rubric", rubric = "polite", threshold = 0.7, metric = "helpful" }]
"#,
        );
        // The function does not exist: keel-core refuses the table before the engine sees it.
        assert!(c
            .unwrap_err()
            .contains("online_evals[0].function: no function `nope`"));
        let c = config(
            r#"
[[online_evals]]
name = "q"
model = "fast"
scope = "feature=support"
sample_rate = 0.05
judge = "judge"
max_judge_spend_usd_per_day = 5
assert = [{ type = "llm-rubric", rubric = "polite", threshold = 0.7, metric = "helpful" }, { type = "not-is-refusal" }]
"#,
        )
        .unwrap();
        let evals = compile_all(&c).unwrap();
        assert_eq!(evals[0].assertions.len(), 2);
        assert_eq!(evals[0].config.describe(), "model=fast, feature=support");
    }

    #[test]
    fn bad_tables_name_every_problem() {
        let err = config(
            r#"
[[online_evals]]
name = "q"
model = "fast"
function = "f"
sample_rate = 0
scope = "key=abc"
judge = "nobody"
max_judge_spend_usd_per_day = -1
assert = []
"#,
        )
        .unwrap_err();
        for want in [
            "online_evals[0].function: both `function` and `model`",
            "online_evals[0].sample_rate",
            "online_evals[0].scope",
            "online_evals[0].judge: no model `nobody`",
            "online_evals[0].max_judge_spend_usd_per_day",
            "online_evals[0].assert: no assertions",
        ] {
            assert!(err.contains(want), "missing {want}: {err}");
        }
    }
}
