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
    /// The admin key, which `GET /status` needs when the gateway has one (default:
    /// $KEEL_ADMIN_KEY, else the variable the config's [auth] admin_key_env names).
    #[arg(long, env = "KEEL_ADMIN_KEY", hide_env_values = true)]
    admin_key: Option<String>,
    #[arg(long)]
    json: bool,
}

pub fn run(a: StatusArgs) -> Result<ExitCode> {
    let config = match &a.url {
        Some(_) => super::load_config(&a.config).ok(),
        None => Some(super::load_config(&a.config)?),
    };
    let base = match (&a.url, &config) {
        (Some(u), _) => u.trim_end_matches('/').to_string(),
        (None, Some(c)) => format!("http://{}", c.gateway.listen),
        (None, None) => return Err(anyhow!("no gateway address: pass --url")),
    };
    let admin_key = a.admin_key.clone().filter(|k| !k.is_empty()).or_else(|| {
        let var = &config.as_ref()?.governance.auth.admin_key_env;
        std::env::var(var).ok().filter(|k| !k.is_empty())
    });
    let url = format!("{base}/status");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let status: Value = rt.block_on(async {
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(5))
            .build()?;
        let mut req = client.get(&url);
        if let Some(key) = &admin_key {
            req = req.bearer_auth(key);
        }
        let resp = req.send().await.map_err(|e| {
            anyhow!("cannot reach a gateway at {url}: {e} — is `keel serve` running? (pass --url to point elsewhere)")
        })?;
        if resp.status() == reqwest::StatusCode::UNAUTHORIZED {
            let sent = if admin_key.is_some() {
                "the admin key sent was refused"
            } else {
                "no admin key was sent"
            };
            return Err(anyhow!(
                "{url} answered 401: {sent} — pass the gateway's admin key with --admin-key or $KEEL_ADMIN_KEY"
            ));
        }
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
