//! `[registry] push_on_start` and `bootstrap_label`: what `keel serve` does with the
//! prompts folder before it starts serving. A convenience for local work and the
//! quickstart (one command, prompts live at once); a team pushes from CI with `keel
//! prompt push` and moves labels on purpose. Both steps are ordinary, audited store
//! operations with `keel serve` as the actor.

use anyhow::{Context, Result};
use keel_core::config::Config;
use keel_store::PushOutcome;

const ACTOR: &str = "keel serve";

/// Push changed prompts and set the bootstrap label where it is missing. Returns one
/// line per change, for the startup log.
pub fn prepare(config: &Config) -> Result<Vec<String>> {
    let r = &config.registry;
    let (Some(dir), true) = (&config.prompts_dir, r.push_on_start) else {
        return Ok(Vec::new());
    };
    if config.gateway.store == ":memory:" {
        // The gateway opens its own in-memory store; nothing pushed here would reach it.
        anyhow::bail!(
            "{}: [registry] push_on_start needs a store file, not \":memory:\"",
            config.source.display()
        );
    }
    let set = keel_registry::load_prompts(dir).map_err(|issues| {
        let lines: Vec<String> = issues.iter().map(ToString::to_string).collect();
        anyhow::anyhow!(
            "[registry] push_on_start: the prompts folder has errors (run `keel check`):\n{}",
            lines.join("\n")
        )
    })?;
    let store = keel_store::Store::open(&config.gateway.store)?;
    let conn = store.conn().context("opening the store to push prompts")?;
    let mut log = Vec::new();
    for (name, prompt) in &set.prompts {
        let outcome = keel_store::push_version(
            &conn,
            name,
            &prompt.content_hash(),
            &prompt.to_json().to_string(),
            ACTOR,
            "pushed at startup ([registry] push_on_start)",
            None,
        )?;
        if let PushOutcome::Created(v) = outcome {
            log.push(format!("prompt {name}: pushed v{v}"));
        }
        let Some(label) = &r.bootstrap_label else {
            continue;
        };
        if keel_store::label_version(&conn, name, label)?.is_none() {
            if let Some(latest) = keel_store::latest_version(&conn, name)? {
                keel_store::set_label(
                    &conn,
                    name,
                    latest.version,
                    label,
                    ACTOR,
                    "first label of a new prompt ([registry] bootstrap_label)",
                )?;
                log.push(format!("prompt {name}: {label} → v{}", latest.version));
            }
        }
    }
    Ok(log)
}
