//! One module per subcommand.

pub mod alerts;
pub mod audit;
pub mod check;
pub mod check_functions;
pub mod dataset;
pub mod dev;
pub mod eval;
pub mod function;
pub mod incident;
pub mod keys;
pub mod mock;
pub mod models;
pub mod online;
pub mod prompt;
pub mod releases;
pub mod replay;
pub mod report;
pub mod review;
pub mod review_next;
pub mod serve;
pub mod serve_prompts;
pub mod shadow;
pub mod status;
pub mod store;
pub mod store_detach;
pub mod switch;
pub mod traces;
pub mod traces_purge;

use anyhow::{Context, Result};
use keel_core::config::Config;

use crate::ConfigArg;

/// Load and validate the config, printing every problem. Online evals' assertions are
/// compiled here too (`keel_online`), so every command refuses a table `keel serve` would.
pub fn load_config(arg: &ConfigArg) -> Result<Config> {
    let config = Config::load(&arg.config).map_err(|e| anyhow::anyhow!("{e}"))?;
    online_issues(&config)?;
    Ok(config)
}

/// The online evals' assertion problems of a loaded config, as a config error.
pub fn online_issues(config: &Config) -> Result<()> {
    match keel_online::compile_all(config) {
        Ok(_) => Ok(()),
        Err(issues) => Err(anyhow::anyhow!(
            "{}",
            keel_core::config::ConfigError {
                file: config.source.clone(),
                issues,
            }
        )),
    }
}

/// Open the store named by the config, for reading.
/// The store of `config`, opened for writing (commands that change state).
pub fn open_writer(config: &Config) -> Result<keel_store::Conn> {
    let (store, _reader) = open_store(config)?;
    store.conn().with_context(|| {
        format!(
            "opening the store of {} for writing",
            config.source.display()
        )
    })
}

/// Who a command acts as: `--actor`, else `$KEEL_ACTOR`, git user.name or `$USER`.
pub fn actor_or_default(actor: &Option<String>) -> String {
    actor.clone().unwrap_or_else(prompt::default_actor)
}

pub fn open_store(config: &Config) -> Result<(keel_store::Store, keel_store::Conn)> {
    if config.gateway.store == ":memory:" {
        anyhow::bail!("{}: [gateway] store is \":memory:\", so traces live only inside a running `keel serve`; set store = \"keel.db\" to keep them", config.source.display());
    }
    let store = keel_store::Store::open(&config.gateway.store)
        .with_context(|| format!("opening the trace store of {}", config.source.display()))?;
    let conn = store.conn()?;
    Ok((store, conn))
}
