//! `keel check` across files: every function variant must name a prompt that exists in
//! the prompts folder, and its parameters (the prompt's `[params]` overridden by the
//! variant's) must be valid request fields — the same check the gateway makes when it
//! deploys the variant, so a typo fails in CI rather than as a 503 in production.

use keel_core::config::Config;
use keel_gateway::registry::params::ParamPatch;
use keel_registry::{PromptIssue, PromptSet};

pub fn function_issues(c: &Config, prompts: Option<&PromptSet>) -> Vec<PromptIssue> {
    let mut out = Vec::new();
    let mut issue = |path: String, message: String, hint: Option<String>| {
        out.push(PromptIssue {
            file: c.source.clone(),
            path,
            message,
            hint,
        })
    };
    for f in c.functions.values() {
        let Some(set) = prompts else {
            issue(
                format!("functions.{}", f.name),
                "functions render prompts, but no prompts folder is configured".into(),
                Some("add prompts = \"prompts\" at the top of the file".into()),
            );
            continue;
        };
        for (i, v) in f.variants.iter().enumerate() {
            let path = format!("functions.{}.variants[{i}]", f.name);
            let Some(prompt) = set.prompts.get(&v.prompt) else {
                let names: Vec<&str> = set.prompts.keys().map(String::as_str).collect();
                issue(
                    format!("{path}.prompt"),
                    format!("no prompt `{}` in the prompts folder", v.prompt),
                    Some(if names.is_empty() {
                        "the prompts folder has no prompts yet".into()
                    } else {
                        format!("prompts: {}", names.join(", "))
                    }),
                );
                continue;
            };
            let mut params = prompt.params.clone();
            params.extend(v.params.clone());
            if let Err(e) = ParamPatch::new(&params) {
                issue(
                    format!("{path}.params"),
                    e,
                    Some(format!(
                        "parameters come from the prompt's [params] (`{}`) and the variant's params",
                        v.prompt
                    )),
                );
            }
        }
    }
    out
}
