//! `keel status`: ask a running gateway (`GET /status`) for its models' routing and
//! circuit-breaker state, the functions that cannot serve, and its trace queue.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, Result};
use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::Table;
use serde_json::Value;

use crate::ConfigArg;

#[derive(clap::Args)]
pub struct StatusArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// The gateway's address (default: [gateway] listen of the config).
    #[arg(long)]
    url: Option<String>,
    #[arg(long)]
    json: bool,
}

pub fn run(a: StatusArgs) -> Result<ExitCode> {
    let base = match a.url {
        Some(u) => u.trim_end_matches('/').to_string(),
        None => {
            let config = super::load_config(&a.config)?;
            format!("http://{}", config.gateway.listen)
        }
    };
    let url = format!("{base}/status");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let status: Value = rt.block_on(async {
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(5))
            .build()?;
        let resp = client.get(&url).send().await.map_err(|e| {
            anyhow!("cannot reach a gateway at {url}: {e} — is `keel serve` running? (pass --url to point elsewhere)")
        })?;
        if !resp.status().is_success() {
            return Err(anyhow!("{url} answered {}", resp.status()));
        }
        Ok::<Value, anyhow::Error>(resp.json().await?)
    })?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&status)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "keel {} at {base}: {} in flight, trace queue {}",
        status["version"].as_str().unwrap_or("?"),
        status["in_flight"],
        status["trace_queue"]
    );
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    t.set_header([
        "model",
        "provider",
        "upstream",
        "retries",
        "fallbacks",
        "circuit",
    ]);
    if let Some(models) = status["models"].as_object() {
        for (name, m) in models {
            let fallbacks: Vec<&str> = m["fallbacks"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            t.add_row([
                name.clone(),
                m["provider"].as_str().unwrap_or("-").to_string(),
                m["upstream_model"].as_str().unwrap_or("-").to_string(),
                m["retries"].to_string(),
                if fallbacks.is_empty() {
                    "-".into()
                } else {
                    fallbacks.join(" → ")
                },
                m["circuit"].as_str().unwrap_or("no breaker").to_string(),
            ]);
        }
    }
    println!("{t}");
    if let Some(problems) = status["functions_unavailable"].as_array() {
        for p in problems {
            println!("unavailable: {}", p["problem"].as_str().unwrap_or("?"));
        }
    }
    if let Some(problems) = status["split_problems"].as_array() {
        for p in problems {
            println!("warning: {}", p.as_str().unwrap_or("?"));
        }
    }
    Ok(ExitCode::SUCCESS)
}
