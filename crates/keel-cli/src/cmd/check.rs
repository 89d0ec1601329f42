//! `keel check`: the same load-and-validate path as `keel serve`, without serving.

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
}

pub fn run(args: CheckArgs) -> Result<ExitCode> {
    match Config::load(&args.config.config) {
        Ok(c) => {
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
                        })
                    })
                    .collect();
                println!(
                    "{}",
                    json!({"ok": true, "file": c.source, "providers": c.providers.keys().collect::<Vec<_>>(), "models": models, "warnings": c.warnings})
                );
            } else {
                for w in &c.warnings {
                    println!("warning: {w}");
                }
                println!(
                    "{}: ok ({} provider{}, {} model{})",
                    c.source.display(),
                    c.providers.len(),
                    if c.providers.len() == 1 { "" } else { "s" },
                    c.models.len(),
                    if c.models.len() == 1 { "" } else { "s" }
                );
            }
            Ok(ExitCode::SUCCESS)
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
