//! `keel check`: the same load-and-validate path as `keel serve`, without serving, plus
//! the prompts folder when `prompts` is configured (errors fail the check, unused
//! variables are warnings).

use std::process::ExitCode;

use anyhow::Result;
use keel_core::config::{Config, PriceSource};
use serde_json::json;

use crate::ConfigArg;

#[derive(clap::Args)]
pub struct CheckArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
    /// Exit 1 when a configured model retires within 90 days (or has retired).
    #[arg(long)]
    strict: bool,
}

pub fn run(args: CheckArgs) -> Result<ExitCode> {
    match Config::load(&args.config.config) {
        Ok(c) => {
            let prompts = c.prompts_dir.as_deref().map(keel_registry::check_prompts);
            let prompt_errors = prompts.as_ref().map_or(&[][..], |p| &p.errors[..]);
            // Functions are keel.toml's: their errors are counted there, not in the folder.
            let mut config_errors =
                super::check_functions::function_issues(&c, prompts.as_ref().map(|p| &p.set));
            // Online evals' assertions, compiled as `keel serve` compiles them.
            if let Err(issues) = keel_online::compile_all(&c) {
                config_errors.extend(issues.into_iter().map(|i| keel_registry::PromptIssue {
                    file: c.source.clone(),
                    path: i.path,
                    message: i.message,
                    hint: i.hint,
                }));
            }
            let prompt_warnings = prompts.as_ref().map_or(&[][..], |p| &p.set.warnings[..]);
            let ok = prompt_errors.is_empty() && config_errors.is_empty();
            let today = keel_core::lifecycle::today();
            let retiring: Vec<_> = c
                .models
                .values()
                .filter(|m| m.lifecycle.as_ref().is_some_and(|l| l.retiring(today)))
                .collect();
            let strict_failed = args.strict && !retiring.is_empty();
            if args.json {
                let models: Vec<_> = c
                    .models
                    .values()
                    .map(|m| {
                        json!({
                            "name": m.name,
                            "provider": m.provider,
                            "upstream_model": m.upstream_model,
                            "priced": m.price.is_some(),
                            "price_source": match &m.price_source {
                                PriceSource::Config => "config".to_string(),
                                PriceSource::Builtin { as_of } => format!("builtin ({as_of})"),
                                PriceSource::Unpriced => "unpriced".to_string(),
                            },
                            "lifecycle": m.lifecycle.as_ref().map(|l| super::models::lifecycle_json(&m.name, l, today)),
                        })
                    })
                    .collect();
                println!(
                    "{}",
                    json!({"ok": ok && !strict_failed, "file": c.source,
                    "retiring": retiring.iter().map(|m| m.name.as_str()).collect::<Vec<_>>(), "providers": c.providers.keys().collect::<Vec<_>>(), "models": models, "warnings": c.warnings,
                    "errors": super::prompt::issues_json(&config_errors),
                    "prompts": prompts.as_ref().map(|p| json!({
                        "dir": c.prompts_dir,
                        "names": p.set.prompts.keys().collect::<Vec<_>>(),
                        "errors": super::prompt::issues_json(prompt_errors),
                        "warnings": super::prompt::issues_json(prompt_warnings),
                    }))})
                );
            } else {
                for w in &c.warnings {
                    println!("warning: {w}");
                }
                for w in prompt_warnings {
                    println!("warning: {w}");
                }
                if !ok {
                    let file = c.source.display().to_string();
                    super::prompt::print_errors_in(&config_errors, &file);
                    super::prompt::print_errors_in(prompt_errors, "the prompts folder");
                    return Ok(ExitCode::from(1));
                }
                let mut prompt_count = prompts
                    .as_ref()
                    .map(|p| {
                        format!(
                            ", {} prompt{}",
                            p.set.prompts.len(),
                            if p.set.prompts.len() == 1 { "" } else { "s" }
                        )
                    })
                    .unwrap_or_default();
                if !c.functions.is_empty() {
                    let n = c.functions.len();
                    prompt_count
                        .push_str(&format!(", {n} function{}", if n == 1 { "" } else { "s" }));
                }
                println!(
                    "{}: ok ({} provider{}, {} model{}{prompt_count})",
                    c.source.display(),
                    c.providers.len(),
                    if c.providers.len() == 1 { "" } else { "s" },
                    c.models.len(),
                    if c.models.len() == 1 { "" } else { "s" }
                );
            }
            if strict_failed && !args.json {
                let names: Vec<_> = retiring.iter().map(|m| m.name.as_str()).collect();
                eprintln!(
                    "error: --strict: {} configured model{} retire{} within 90 days or already retired: {} (see the warnings above; `keel models` shows each successor)",
                    names.len(),
                    if names.len() == 1 { "" } else { "s" },
                    if names.len() == 1 { "s" } else { "" },
                    names.join(", ")
                );
            }
            Ok(if ok && !strict_failed {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Err(e) => {
            if args.json {
                let issues: Vec<_> = e
                    .issues
                    .iter()
                    .map(|i| json!({"path": i.path, "message": i.message, "hint": i.hint}))
                    .collect();
                println!("{}", json!({"ok": false, "file": e.file, "errors": issues}));
            } else {
                eprintln!("{e}");
                eprintln!(
                    "{} error{} in {}",
                    e.issues.len(),
                    if e.issues.len() == 1 { "" } else { "s" },
                    e.file.display()
                );
            }
            Ok(ExitCode::from(1))
        }
    }
}
