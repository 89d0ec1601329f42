//! Traffic-split overrides (`keel function canary`) as the request path sees them: read
//! from the store with the rest of the snapshot, checked against the config, and kept as
//! one weight per configured variant so variant choice needs no lookup by name.
//!
//! An override that no longer fits the config (it names a variant keel.toml dropped, or
//! leaves no weight) is not served: the configured weights are, and the refresher logs
//! why (see [`keel_core::split::resolve_override`]).

use std::collections::HashMap;
use std::sync::Arc;

use keel_core::config::Config;
use keel_store::sql::Db;

/// Per function with a usable override: its weights in config order (basis points).
pub type Splits = HashMap<String, Arc<[u32]>>;

/// Load every override; returns the usable ones and, for the others, why not.
pub fn load(conn: Db<'_>, config: &Config) -> rusqlite::Result<(Splits, Vec<String>)> {
    let mut splits = Splits::new();
    let mut problems = Vec::new();
    for stored in keel_store::splits::all_splits(conn)? {
        // An override of a function keel.toml no longer has is inert: nothing routes by it.
        let Some(f) = config.functions.get(&stored.function) else {
            continue;
        };
        match keel_core::split::resolve_override(f, &stored.weights) {
            Ok(weights) => {
                splits.insert(stored.function, weights.into());
            }
            Err(why) => problems.push(why),
        }
    }
    Ok((splits, problems))
}
