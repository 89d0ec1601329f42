//! `keel keys`: create, list, revoke and rotate virtual keys in the store a gateway
//! reads. A created or rotated key is printed once; only its hash is kept. Every change
//! is audited. A running gateway picks changes up within `[auth] refresh`.

use std::process::ExitCode;

use anyhow::{Context, Result};
use comfy_table::Table;
use keel_governance::keys::{mint_for, parse_expiry, KeySpec};
use keel_store::keys::{insert_key, list_keys, revoke_key, rotate_key, KeyRow};
use serde_json::json;

use crate::since::format_ms;
use crate::ConfigArg;

#[derive(clap::Subcommand)]
pub enum KeysCommand {
    /// Create a key for a tenant and print it (once).
    Create(CreateArgs),
    /// List keys (never their secrets).
    List(ListArgs),
    /// Revoke a key: it stops working at the gateway's next refresh.
    Revoke(ChangeArgs),
    /// Give a key a new secret, keeping its id, limits and spend; print it (once).
    Rotate(RotateArgs),
}

#[derive(clap::Args)]
pub struct CreateArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// The tenant the key spends for (callers cannot override it with x-keel-tenant).
    #[arg(long)]
    tenant: String,
    /// Fix the feature too (else the caller's x-keel-feature is used).
    #[arg(long)]
    feature: Option<String>,
    /// The models and functions it may call (comma-separated; default: all).
    #[arg(long, value_delimiter = ',')]
    models: Vec<String>,
    /// Its own hard budget: AMOUNT[/day|week|month|total], e.g. 10/day (default window: month).
    #[arg(long)]
    budget: Option<String>,
    /// Requests per minute.
    #[arg(long)]
    rpm: Option<u32>,
    /// Tokens (input + output) per minute.
    #[arg(long)]
    tpm: Option<u64>,
    /// Expiry: a duration from now (30d, 12h) or an RFC 3339 time.
    #[arg(long)]
    expires: Option<String>,
    /// A name to recognise it by.
    #[arg(long)]
    name: Option<String>,
    /// Why it exists (kept in the audit log).
    #[arg(long, short = 'm', default_value = "no reason given")]
    reason: String,
    /// Who creates it (default: $KEEL_ACTOR, else git user.name, else $USER).
    #[arg(long)]
    actor: Option<String>,
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub struct ListArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Include revoked keys.
    #[arg(long)]
    all: bool,
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub struct ChangeArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// The key id (the middle part of the key, as `keel keys list` shows it).
    id: String,
    #[arg(long, short = 'm', default_value = "no reason given")]
    reason: String,
    #[arg(long)]
    actor: Option<String>,
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub struct RotateArgs {
    #[command(flatten)]
    change: ChangeArgs,
    /// Keep the old secret working this long (e.g. 10m) while callers switch.
    #[arg(long)]
    grace: Option<String>,
}

pub fn run(cmd: KeysCommand) -> Result<ExitCode> {
    match cmd {
        KeysCommand::Create(a) => create(a),
        KeysCommand::List(a) => list(a),
        KeysCommand::Revoke(a) => change(a, None),
        KeysCommand::Rotate(a) => {
            let grace = a.grace.clone();
            change(a.change, Some(grace))
        }
    }
}

fn writer(config: &ConfigArg) -> Result<(keel_store::Store, keel_store::Conn)> {
    let config = super::load_config(config)?;
    let (store, _) = super::open_store(&config)?;
    let conn = store.conn()?;
    Ok((store, conn))
}

fn actor(a: &Option<String>) -> String {
    a.clone().unwrap_or_else(super::prompt::git::default_actor)
}

fn create(a: CreateArgs) -> Result<ExitCode> {
    let spec = KeySpec {
        tenant: a.tenant.clone(),
        name: a.name.clone(),
        feature: a.feature.clone(),
        models: Some(a.models.clone()),
        budget: a.budget.clone(),
        rpm: a.rpm,
        tpm: a.tpm,
        expires: a.expires.clone(),
    };
    let now = keel_store::prompts::now_ms();
    let (minted, row) = match spec.mint(&actor(&a.actor), now) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    let (_store, conn) = writer(&a.config)?;
    insert_key(&conn, &row, &a.reason).context("storing the key")?;
    if a.json {
        println!(
            "{}",
            json!({"key": minted.key, "id": row.id, "details": row})
        );
    } else {
        println!("created key {} for tenant {}", row.id, row.tenant);
        println!("{}", minted.key);
        println!("This is the only time the key is shown; store it now. Only its hash is kept.");
    }
    Ok(ExitCode::SUCCESS)
}

fn list(a: ListArgs) -> Result<ExitCode> {
    let config = super::load_config(&a.config)?;
    let (_store, conn) = super::open_store(&config)?;
    let keys = list_keys(&conn, a.all)?;
    if a.json {
        println!("{}", json!({"keys": keys}));
        return Ok(ExitCode::SUCCESS);
    }
    if keys.is_empty() {
        // Revoked and expired keys are listed only with --all: say they exist.
        let hidden = if a.all {
            0
        } else {
            list_keys(&conn, true)?.len()
        };
        if hidden > 0 {
            println!(
                "no active keys ({hidden} revoked or expired: `keel keys list --all` shows them; `keel keys create --tenant T` makes a new one)"
            );
        } else {
            println!("no keys (create one with `keel keys create --tenant T`)");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let now = keel_store::prompts::now_ms();
    let mut t = Table::new();
    t.set_header([
        "id", "name", "tenant", "feature", "models", "budget", "rpm", "tpm", "expires", "state",
        "created",
    ]);
    for k in &keys {
        t.add_row([
            k.id.clone(),
            k.name.clone().unwrap_or_default(),
            k.tenant.clone(),
            k.feature.clone().unwrap_or_default(),
            k.models.as_ref().map_or("all".into(), |m| m.join(",")),
            budget_text(k),
            k.rpm.map(|r| r.to_string()).unwrap_or_default(),
            k.tpm.map(|r| r.to_string()).unwrap_or_default(),
            k.expires_at_ms.map(format_ms).unwrap_or_default(),
            state(k, now).into(),
            format!("{} by {}", format_ms(k.created_at_ms), k.created_by),
        ]);
    }
    println!("{t}");
    Ok(ExitCode::SUCCESS)
}

fn budget_text(k: &KeyRow) -> String {
    match (k.budget_nanos, &k.budget_window) {
        (Some(n), Some(w)) => format!("${}/{w}", keel_core::money::Nanos(n).to_dollar_string()),
        _ => String::new(),
    }
}

fn state(k: &KeyRow, now: i64) -> &'static str {
    if k.revoked_at_ms.is_some() {
        "revoked"
    } else if k.expires_at_ms.is_some_and(|e| now >= e) {
        "expired"
    } else {
        "active"
    }
}

fn change(a: ChangeArgs, rotate: Option<Option<String>>) -> Result<ExitCode> {
    let (_store, conn) = writer(&a.config)?;
    let who = actor(&a.actor);
    let outcome = match &rotate {
        None => revoke_key(&conn, &a.id, &who, &a.reason).map(|r| (r, None)),
        Some(grace) => {
            let now = keel_store::prompts::now_ms();
            let until = match grace.as_deref().map(|g| parse_expiry(g, now)).transpose() {
                Ok(u) => u,
                Err(e) => {
                    eprintln!("error: --grace {e}");
                    return Ok(ExitCode::from(2));
                }
            };
            let minted = mint_for(&a.id)
                .map_err(|e| anyhow::anyhow!("cannot draw random bytes for the new secret: {e}"))?;
            rotate_key(&conn, &a.id, &minted.secret_hash, until, &who, &a.reason)
                .map(|r| (r, Some(minted.key)))
        }
    };
    match outcome {
        Ok((row, key)) => {
            if a.json {
                println!("{}", json!({"id": row.id, "key": key, "details": row}));
            } else if let Some(key) = key {
                println!("rotated key {}", row.id);
                println!("{key}");
                match row.prev_valid_until_ms {
                    Some(u) => println!("The old secret keeps working until {}.", format_ms(u)),
                    None => println!("The old secret stops working at the gateway's next refresh."),
                }
            } else {
                println!("revoked key {}", row.id);
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(
            e @ (keel_store::keys::KeyStoreError::NoSuchKey(_)
            | keel_store::keys::KeyStoreError::Revoked(_)),
        ) => {
            eprintln!("error: {e}");
            Ok(ExitCode::from(1))
        }
        Err(e) => Err(e.into()),
    }
}
