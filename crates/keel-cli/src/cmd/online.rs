//! `keel online status` and `keel online run`: online evals from a terminal. The figures
//! are `keel_online::status` (shared with the dashboard); the judging of recorded calls
//! is `keel_online::backfill`.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Result};
use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::Table;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use keel_core::trace::Origin;
use serde_json::{json, Value};

use crate::ConfigArg;

#[derive(clap::Subcommand)]
pub enum OnlineCommand {
    /// Each online eval: sample rate, judged and failed in the last hour with the last
    /// error, calls waiting, judge spend today against its cap, pass rate (24 h) with its
    /// 95 % interval; `stalled` when its scope had traffic and nothing was judged.
    Status(StatusArgs),
    /// Judge calls recorded before (e.g. after adding an online eval), newest first,
    /// within the eval's judge spend cap.
    Run(RunArgs),
}

#[derive(clap::Args)]
pub struct StatusArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// The running gateway, asked for the calls waiting in its queue (default: [gateway]
    /// listen); skipped quietly when it cannot be reached.
    #[arg(long)]
    url: Option<String>,
    #[arg(long, env = "KEEL_ADMIN_KEY", hide_env_values = true)]
    admin_key: Option<String>,
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub struct RunArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// The online eval (`name` of an [[online_evals]] table).
    name: String,
    /// How far back: a duration (24h, 7d) or an RFC 3339 time.
    #[arg(long, default_value = "24h")]
    since: String,
    /// Judge at most this many calls (0: all in the window).
    #[arg(long, default_value_t = 0)]
    limit: usize,
    /// Judge calls this eval already scored again.
    #[arg(long)]
    rejudge: bool,
    #[arg(long)]
    json: bool,
}

pub fn run(c: OnlineCommand) -> Result<ExitCode> {
    match c {
        OnlineCommand::Status(a) => status(a),
        OnlineCommand::Run(a) => backfill(a),
    }
}

fn status(a: StatusArgs) -> Result<ExitCode> {
    let config = super::load_config(&a.config)?;
    if config.online_evals.is_empty() {
        if a.json {
            println!("{}", json!({"online_evals": []}));
        } else {
            println!("no [[online_evals]] in {}", config.source.display());
        }
        return Ok(ExitCode::SUCCESS);
    }
    let (_store, conn) = super::open_store(&config)?;
    let mut rows = keel_online::status::status(conn.db(), &config, crate::since::now_ms())?;
    let live = gateway_figures(&config, a.url.as_deref(), a.admin_key.as_deref());
    for r in &mut rows {
        r.pending = live
            .iter()
            .find(|v| v["name"] == r.name.as_str())
            .and_then(|v| v["queued"].as_u64());
    }
    if a.json {
        println!("{}", json!({"online_evals": rows}));
        return Ok(ExitCode::SUCCESS);
    }
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    t.set_header(vec![
        "online eval",
        "covers",
        "sample",
        "judged 1h",
        "failed 1h",
        "pending",
        "judge spend today",
        "pass rate 24h (95 % CI)",
        "state",
    ]);
    for r in &rows {
        let spend = match r.judge_cap_usd {
            Some(cap) => format!("${:.4} of ${cap:.2}", r.judge_spend_today_usd),
            None => format!("${:.4} (no cap)", r.judge_spend_today_usd),
        };
        let rate = r.pass_rate_24h.map_or("–".to_string(), |p| {
            format!(
                "{:.1} % [{:.1}, {:.1}] n={}",
                p.rate * 100.0,
                p.low * 100.0,
                p.high * 100.0,
                p.n
            )
        });
        let state = if r.paused_for_budget {
            "paused: judge cap reached".to_string()
        } else if r.stalled {
            format!(
                "STALLED: {} calls in scope, none judged",
                r.traffic_last_hour
            )
        } else {
            "ok".to_string()
        };
        t.add_row(vec![
            r.name.clone(),
            r.covers.clone(),
            format!("{:.1} %", r.sample_rate * 100.0),
            r.judged_last_hour.to_string(),
            r.failed_last_hour.to_string(),
            r.pending.map_or("?".into(), |p| p.to_string()),
            spend,
            rate,
            state,
        ]);
    }
    println!("{t}");
    for r in rows.iter().filter(|r| r.last_error.is_some()) {
        println!(
            "{}: last judge error {}: {}",
            r.name,
            r.last_error_at_ms
                .map(crate::since::format_ms)
                .unwrap_or_default(),
            r.last_error.as_deref().unwrap_or_default()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The running gateway's `online_evals` figures from `GET /status`, or nothing.
fn gateway_figures(
    config: &keel_core::config::Config,
    url: Option<&str>,
    admin_key: Option<&str>,
) -> Vec<Value> {
    let base = url.map_or_else(
        || format!("http://{}", config.gateway.listen),
        |u| u.trim_end_matches('/').to_string(),
    );
    let key = admin_key
        .map(str::to_string)
        .filter(|k| !k.is_empty())
        .or_else(|| {
            std::env::var(&config.governance.auth.admin_key_env)
                .ok()
                .filter(|k| !k.is_empty())
        });
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return Vec::new();
    };
    rt.block_on(async {
        let Ok(client) = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(2))
            .build()
        else {
            return Vec::new();
        };
        let mut req = client.get(format!("{base}/status"));
        if let Some(k) = &key {
            req = req.bearer_auth(k);
        }
        match req.send().await {
            Ok(r) if r.status().is_success() => r
                .json::<Value>()
                .await
                .ok()
                .and_then(|v| v["online_evals"].as_array().cloned())
                .unwrap_or_default(),
            _ => Vec::new(),
        }
    })
}

fn backfill(a: RunArgs) -> Result<ExitCode> {
    let config = super::load_config(&a.config)?;
    let since_ms = crate::since::parse_since(&a.since)?;
    let evals =
        keel_online::compile_all(&config).map_err(|_| anyhow!("online evals do not compile"))?;
    let known: Vec<String> = evals.iter().map(|e| e.config.name.clone()).collect();
    let Some(eval) = evals.into_iter().find(|e| e.config.name == a.name) else {
        eprintln!(
            "error: no online eval `{}` in {} (known: {})",
            a.name,
            config.source.display(),
            if known.is_empty() {
                "none".into()
            } else {
                known.join(", ")
            }
        );
        return Ok(ExitCode::from(2));
    };
    let (store, _conn) = super::open_store(&config)?;
    let store = Arc::new(store);
    let engine = keel_gateway::inproc::InProcess::new(config.clone(), &store, Some(Origin::Judge))?;
    let bar = progress(a.json);
    let opts = keel_online::backfill::BackfillOptions {
        since_ms,
        limit: a.limit,
        rejudge: a.rejudge,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let app = engine.app();
    let report = rt.block_on(keel_online::backfill::run(
        app,
        store.clone(),
        &eval,
        &opts,
        &|done, total| {
            bar.set_length(total);
            bar.set_position(done);
        },
    ))?;
    bar.finish_and_clear();
    drop(rt);
    engine.finish();
    if a.json {
        println!("{}", json!({"online_eval": a.name, "report": report}));
    } else {
        println!(
            "{}: {} calls in the window; judged {} ({} passed), {} could not be judged, {} already scored, {} without text; judge spend ${:.4}{}",
            a.name,
            report.considered,
            report.judged,
            report.passed,
            report.failed,
            report.skipped_already_scored,
            report.skipped_no_text,
            report.judge_spend_usd,
            if report.stopped_for_budget { " — stopped: the judge's daily cap is reached" } else { "" },
        );
    }
    Ok(if report.failed > 0 && report.judged == 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn progress(json: bool) -> ProgressBar {
    if json || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(
        "{bar:30.cyan/blue} {pos}/{len} calls judged · {elapsed} · ETA {eta}",
    ) {
        bar.set_style(style);
    }
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}
