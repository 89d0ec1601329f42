//! `keel alerts`: the configured alert rules with their current state and recent
//! events (`list`), and a test notification through a rule's destinations (`test`).

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Result;
use comfy_table::Table;
use keel_governance::alerts::rules::{measure, notice};
use keel_governance::alerts::{AlertNotice, AlertState, Dispatched, Dispatcher};
use keel_store::alerts::{firing_alerts, last_alert_event, list_alert_events};
use serde_json::json;

use crate::since::{format_ms, parse_since};
use crate::ConfigArg;

#[derive(clap::Subcommand)]
pub enum AlertsCommand {
    /// The alert rules, whether each is firing, and the recent alert events.
    List(ListArgs),
    /// Send a test alert through a rule's destinations (or one destination) now.
    Test(TestArgs),
}

#[derive(clap::Args)]
pub struct ListArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Events since (7d, 24h, or an RFC 3339 time).
    #[arg(long, default_value = "7d")]
    since: String,
    /// At most this many events (0 = all).
    #[arg(long, default_value_t = 50)]
    limit: usize,
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub struct TestArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// A rule name (its destinations get the test, with the rule's current value) or a
    /// destination name.
    name: String,
    #[arg(long)]
    json: bool,
}

pub fn run(cmd: AlertsCommand) -> Result<ExitCode> {
    match cmd {
        AlertsCommand::List(a) => list(a),
        AlertsCommand::Test(a) => test(a),
    }
}

fn list(a: ListArgs) -> Result<ExitCode> {
    let since = parse_since(&a.since)?;
    let config = super::load_config(&a.config)?;
    let (_store, conn) = super::open_store(&config)?;
    let mut rules = Vec::new();
    for r in &config.alerting.rules {
        let last = last_alert_event(&conn, &format!("rule|{}", r.name))?;
        rules.push(json!({
            "name": r.name, "metric": r.metric.as_str(), "scope": r.scope_label(),
            "window": humantime::format_duration(r.window).to_string(),
            "threshold": r.threshold.describe(), "to": r.to,
            "state": last.as_ref().map_or("ok", |e| if e.state == "firing" { "firing" } else { "ok" }),
            "since_ms": last.as_ref().map(|e| e.at_ms),
            "last_message": last.as_ref().map(|e| e.message.clone()),
        }));
    }
    let firing = firing_alerts(&conn)?;
    let events = list_alert_events(&conn, since, a.limit)?;
    if a.json {
        println!(
            "{}",
            json!({"rules": rules, "firing": firing, "events": events})
        );
        return Ok(ExitCode::SUCCESS);
    }
    if rules.is_empty() {
        println!("no alert rules ([[alerts]] in {})", config.source.display());
    } else {
        let mut t = Table::new();
        t.set_header([
            "rule",
            "metric",
            "scope",
            "window",
            "threshold",
            "to",
            "state",
        ]);
        for r in &rules {
            let s = |k: &str| r[k].as_str().unwrap_or_default().to_string();
            let state = match r["since_ms"].as_i64() {
                Some(at) if s("state") == "firing" => format!("FIRING since {}", format_ms(at)),
                _ => s("state"),
            };
            let to = r["to"]
                .as_array()
                .map(|v| {
                    v.iter()
                        .filter_map(|x| x.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_default();
            t.add_row([
                s("name"),
                s("metric"),
                s("scope"),
                s("window"),
                s("threshold"),
                to,
                state,
            ]);
        }
        println!("{t}");
    }
    let others: Vec<_> = firing.iter().filter(|e| e.source != "rule").collect();
    if !others.is_empty() {
        println!("\nAlso firing:");
        for e in others {
            println!(
                "- {} {} ({}) since {}: {}",
                e.source,
                e.name,
                e.scope,
                format_ms(e.at_ms),
                first_line(&e.message)
            );
        }
    }
    if events.is_empty() {
        println!("\nno alert events since {}", a.since);
    } else {
        let mut t = Table::new();
        t.set_header([
            "when",
            "source",
            "name",
            "scope",
            "state",
            "message",
            "delivered",
        ]);
        for e in &events {
            let delivered = e
                .delivered
                .as_ref()
                .and_then(|d| d.as_object())
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| format!("{k}: {}", v.as_str().unwrap_or("?")))
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_default();
            t.add_row([
                format_ms(e.at_ms),
                e.source.clone(),
                e.name.clone(),
                e.scope.clone(),
                e.state.clone(),
                first_line(&e.message),
                delivered,
            ]);
        }
        println!("\n{t}");
    }
    Ok(ExitCode::SUCCESS)
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or_default().to_string()
}

fn test(a: TestArgs) -> Result<ExitCode> {
    let config = super::load_config(&a.config)?;
    let (store, _) = super::open_store(&config)?;
    let store = Arc::new(store);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let now = keel_store::prompts::now_ms();
    let n = if let Some(rule) = config.alerting.rules.iter().find(|r| r.name == a.name) {
        let m = rt
            .block_on(measure(rule, &store, None, now))
            .map_err(|e| anyhow::anyhow!(e))?;
        let mut n = notice(rule, AlertState::Test, &m, now);
        n.source = "test";
        n.message = format!("test of rule `{}` — now: {}", rule.name, m.detail);
        n.dedupe_key = format!("test|{}", rule.name);
        n
    } else if config.alerting.destinations.contains_key(&a.name) {
        AlertNotice {
            source: "test",
            name: a.name.clone(),
            scope: "global".into(),
            state: AlertState::Test,
            value: None,
            threshold: None,
            message: format!("test of destination `{}`", a.name),
            dedupe_key: format!("test|{}", a.name),
            to: vec![a.name.clone()],
            repeat: None,
            at_ms: now,
            incident: None,
        }
    } else {
        let rules: Vec<_> = config
            .alerting
            .rules
            .iter()
            .map(|r| r.name.as_str())
            .collect();
        let dests: Vec<_> = config
            .alerting
            .destinations
            .keys()
            .map(String::as_str)
            .collect();
        eprintln!(
            "error: `{}` is neither an alert rule ({}) nor a destination ({})",
            a.name,
            if rules.is_empty() {
                "none configured".into()
            } else {
                rules.join(", ")
            },
            dests.join(", ")
        );
        return Ok(ExitCode::from(2));
    };
    let d = Dispatcher::new(store, config.alerting.destinations.clone());
    let outcome = rt
        .block_on(d.dispatch_one(n))
        .map_err(|e| anyhow::anyhow!(e))?;
    let delivered: BTreeMap<String, String> = match outcome {
        Dispatched::Sent { delivered, .. } => delivered,
        Dispatched::Deduplicated => BTreeMap::new(),
    };
    let ok = delivered.values().all(|v| v == "ok");
    if a.json {
        println!("{}", json!({"delivered": delivered, "ok": ok}));
    } else {
        for (to, r) in &delivered {
            println!("{to}: {r}");
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
