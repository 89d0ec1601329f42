//! What `keel prompt impact` reads from the store (`keel_store::prompt_traffic`).

use anyhow::Result;
use keel_registry::MAX_SAMPLES;
use keel_store::sql::Db;
use serde_json::{Map, Value};

pub(super) use keel_store::prompt_traffic::TrafficGroup as Group;

/// The prompt's calls that reached a model (ok, or with usage), grouped.
pub(super) fn traffic(
    conn: Db<'_>,
    name: &str,
    since_ms: i64,
    until_ms: i64,
) -> Result<Vec<Group>> {
    Ok(keel_store::prompt_traffic::prompt_traffic(
        conn, name, since_ms, until_ms,
    )?)
}

/// The `variables` of the prompt's newest recorded calls, at most [`MAX_SAMPLES`].
pub(super) fn recorded_variables(conn: Db<'_>, name: &str) -> Result<Vec<Map<String, Value>>> {
    Ok(keel_store::prompt_traffic::recorded_variables(
        conn,
        name,
        MAX_SAMPLES,
    )?)
}
