//! Traffic-split overrides of functions (`keel function canary`), in the store so a
//! running gateway picks them up within a registry refresh and every replica serves the
//! same split. The current override is one row per function in `function_splits` (no
//! row: the configured weights serve); every move is kept in `function_split_moves` and
//! in the audit log, in the same transaction as the change.

use keel_core::split::format_shares;
use serde::Serialize;
use serde_json::{json, Value};

use crate::audit::{record_audit, NewAuditEvent};
use crate::error::StoreError;
use crate::prompts::now_ms;
use crate::sql::{Db, Row};
use crate::values;

/// The audit action of a canary move.
pub const ACTION_CANARY: &str = "function.canary";
/// The audit action of a return to the configured weights.
pub const ACTION_RESET: &str = "function.canary_reset";

/// A function's current override: per-variant weights in basis points.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FunctionSplit {
    pub function: String,
    pub weights: Vec<(String, u32)>,
    pub updated_at_ms: i64,
    pub actor: String,
    pub reason: String,
}

/// One recorded move of a function's split.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SplitMove {
    pub id: i64,
    pub function: String,
    /// `canary` or `reset`.
    pub action: String,
    pub variant: Option<String>,
    pub percent_bps: Option<u32>,
    /// `None`: the configured weights were serving.
    pub from_weights: Option<Vec<(String, u32)>>,
    /// `None`: back to the configured weights.
    pub to_weights: Option<Vec<(String, u32)>>,
    pub at_ms: i64,
    pub actor: String,
    pub reason: String,
}

/// Who moves a split, why, and the configured weights (to record what served before
/// when no override did).
#[derive(Debug, Clone, Copy)]
pub struct SplitChange<'a> {
    pub actor: &'a str,
    pub reason: &'a str,
    pub config_weights: &'a [(String, u32)],
}

fn to_json(weights: &[(String, u32)]) -> String {
    Value::Array(
        weights
            .iter()
            .map(|(v, w)| json!({"variant": v, "weight": w}))
            .collect(),
    )
    .to_string()
}

/// Parse stored weights; a malformed value (never written by Keel) is a decoding error.
fn from_json(text: &str) -> Result<Vec<(String, u32)>, StoreError> {
    let bad = |why: String| {
        StoreError::Decode(format!(
            "stored split weights are not valid ({why}): {text}"
        ))
    };
    let value: Value = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
    let Value::Array(items) = value else {
        return Err(bad("not a JSON array".into()));
    };
    items
        .iter()
        .map(|item| {
            let variant = item["variant"]
                .as_str()
                .ok_or_else(|| bad("no variant".into()))?;
            let weight = item["weight"]
                .as_u64()
                .and_then(|w| u32::try_from(w).ok())
                .ok_or_else(|| bad(format!("bad weight for `{variant}`")))?;
            Ok((variant.to_string(), weight))
        })
        .collect()
}

/// On PostgreSQL, replicas moving splits take turns (a transaction-scoped advisory lock,
/// "keel" then 0x102), as SQLite's one writer does: each move records the split it
/// replaced, and two interleaved would record a stale one.
const SPLITS_LOCK: i64 = 0x6b65_656c_0000_0102;

const SPLIT_COLS: &str = "function, weights_json, updated_at_ms, actor, reason";

fn split_row(r: &Row<'_>) -> Result<FunctionSplit, StoreError> {
    let text: String = r.get(1)?;
    Ok(FunctionSplit {
        function: r.get(0)?,
        weights: from_json(&text)?,
        updated_at_ms: r.get(2)?,
        actor: r.get(3)?,
        reason: r.get(4)?,
    })
}

/// The override of `function`, if any.
pub fn current_split<'c>(
    db: impl Into<Db<'c>>,
    function: &str,
) -> Result<Option<FunctionSplit>, StoreError> {
    db.into().query_opt(
        &format!("SELECT {SPLIT_COLS} FROM function_splits WHERE function = ?1"),
        &values![function],
        split_row,
    )
}

/// Every function's override (what the gateway's registry snapshot loads), by function.
pub fn all_splits<'c>(db: impl Into<Db<'c>>) -> Result<Vec<FunctionSplit>, StoreError> {
    let mut splits = db.into().query(
        &format!("SELECT {SPLIT_COLS} FROM function_splits"),
        &[],
        split_row,
    )?;
    // Sorted here, byte by byte as SQLite sorts text: a PostgreSQL database's collation
    // would order names differently.
    splits.sort_by(|a, b| a.function.cmp(&b.function));
    Ok(splits)
}

/// Make `weights` the split of `function` (a canary of `variant` at `percent_bps`);
/// returns the override it replaced. Recorded as a move and an audit event even when
/// nothing changes (the operator's act is what is audited).
pub fn set_split<'c>(
    db: impl Into<Db<'c>>,
    function: &str,
    variant: &str,
    percent_bps: u32,
    weights: &[(String, u32)],
    change: &SplitChange<'_>,
) -> Result<Option<FunctionSplit>, StoreError> {
    db.into().exclusive(SPLITS_LOCK, |tx| {
        let before = current_split(tx, function)?;
        let at = now_ms();
        let to = to_json(weights);
        tx.execute(
            "INSERT INTO function_splits (function, weights_json, updated_at_ms, actor, reason)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (function) DO UPDATE SET weights_json = excluded.weights_json,
                 updated_at_ms = excluded.updated_at_ms, actor = excluded.actor, reason = excluded.reason",
            &values![function, to, at, change.actor, change.reason],
        )?;
        record_move(
            tx,
            &Move {
                function,
                canary: Some((variant, percent_bps)),
                before: before.as_ref(),
                to: Some(weights),
                at,
            },
            change,
        )?;
        Ok(before)
    })
}

/// Drop the override of `function` (back to its configured weights); returns the
/// override it removed (`None`: the configured weights were already serving, and
/// nothing is recorded).
pub fn reset_split<'c>(
    db: impl Into<Db<'c>>,
    function: &str,
    change: &SplitChange<'_>,
) -> Result<Option<FunctionSplit>, StoreError> {
    db.into().exclusive(SPLITS_LOCK, |tx| {
        let Some(before) = current_split(tx, function)? else {
            return Ok(None);
        };
        tx.execute(
            "DELETE FROM function_splits WHERE function = ?1",
            &values![function],
        )?;
        let at = now_ms();
        record_move(
            tx,
            &Move {
                function,
                canary: None,
                before: Some(&before),
                to: None,
                at,
            },
            change,
        )?;
        Ok(Some(before))
    })
}

/// One move of a split, as recorded: a canary (variant and its basis points) or, with
/// `canary: None`, a reset; what served before (`None`: the configured weights) and after.
struct Move<'a> {
    function: &'a str,
    canary: Option<(&'a str, u32)>,
    before: Option<&'a FunctionSplit>,
    to: Option<&'a [(String, u32)]>,
    at: i64,
}

fn record_move(tx: Db<'_>, m: &Move<'_>, change: &SplitChange<'_>) -> Result<(), StoreError> {
    let Move {
        function,
        canary,
        before,
        to,
        at,
    } = *m;
    let action = if canary.is_some() { "canary" } else { "reset" };
    let from_json_text = before.map(|b| to_json(&b.weights));
    let to_json_text = to.map(to_json);
    tx.execute(
        "INSERT INTO function_split_moves
             (function, action, variant, percent_bps, from_weights, to_weights, at_ms, actor, reason)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        &values![
            function,
            action,
            canary.map(|c| c.0),
            canary.map(|c| c.1),
            from_json_text,
            to_json_text,
            at,
            change.actor,
            change.reason
        ],
    )?;
    let from_value = before.map_or_else(
        || format_shares(change.config_weights),
        |b| format_shares(&b.weights),
    );
    let to_value = to.map_or_else(|| format_shares(change.config_weights), format_shares);
    record_audit(
        tx,
        at,
        &NewAuditEvent {
            actor: change.actor,
            action: if action == "reset" {
                ACTION_RESET
            } else {
                ACTION_CANARY
            },
            target: function,
            from_value: Some(from_value),
            to_value: Some(to_value),
            reason: Some(change.reason),
            details: Some(json!({
                "variant": canary.map(|c| c.0),
                "percent_bps": canary.map(|c| c.1),
                "from_config": before.is_none(),
                "to_config": to.is_none(),
            })),
        },
    )?;
    Ok(())
}

/// The moves of `function`'s split, newest first, at most `limit` (0 = all).
pub fn split_moves<'c>(
    db: impl Into<Db<'c>>,
    function: &str,
    limit: usize,
) -> Result<Vec<SplitMove>, StoreError> {
    // 0 (all): the most rows either backend can count.
    let limit = if limit == 0 {
        i64::MAX
    } else {
        i64::try_from(limit).unwrap_or(i64::MAX)
    };
    db.into().query(
        "SELECT id, function, action, variant, percent_bps, from_weights, to_weights, at_ms, actor, reason
         FROM function_split_moves WHERE function = ?1 ORDER BY id DESC LIMIT ?2",
        &values![function, limit],
        |r| {
        let from: Option<String> = r.get(5)?;
        let to: Option<String> = r.get(6)?;
        Ok(SplitMove {
            id: r.get(0)?,
            function: r.get(1)?,
            action: r.get(2)?,
            variant: r.get(3)?,
            percent_bps: r.get(4)?,
            from_weights: from.as_deref().map(from_json).transpose()?,
            to_weights: to.as_deref().map(from_json).transpose()?,
            at_ms: r.get(7)?,
            actor: r.get(8)?,
            reason: r.get(9)?,
        })
    },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::list_audit;
    use crate::testing::stores;

    fn w(pairs: &[(&str, u32)]) -> Vec<(String, u32)> {
        pairs.iter().map(|(n, w)| (n.to_string(), *w)).collect()
    }

    #[test]
    fn canary_moves_reset_and_history_are_recorded_and_audited() {
        for (backend, store, _db) in stores() {
            let conn = store.conn().unwrap();
            let conn = conn.db();
            let config = w(&[("control", 90), ("candidate", 10)]);
            let change = SplitChange {
                actor: "ann",
                reason: "step 1",
                config_weights: &config,
            };
            assert_eq!(current_split(conn, "f").unwrap(), None, "{backend}");
            let first = w(&[("control", 7500), ("candidate", 2500)]);
            assert_eq!(
                set_split(conn, "f", "candidate", 2500, &first, &change).unwrap(),
                None,
                "{backend}"
            );
            let second = w(&[("control", 5000), ("candidate", 5000)]);
            let before = set_split(
                conn,
                "f",
                "candidate",
                5000,
                &second,
                &SplitChange {
                    reason: "step 2",
                    ..change
                },
            )
            .unwrap()
            .unwrap();
            assert_eq!(before.weights, first, "{backend}");
            let now = current_split(conn, "f").unwrap().unwrap();
            assert_eq!(
                (now.weights.clone(), now.reason.as_str()),
                (second.clone(), "step 2"),
                "{backend}"
            );
            set_split(conn, "e", "candidate", 100, &first, &change).unwrap();
            let all: Vec<String> = all_splits(conn)
                .unwrap()
                .into_iter()
                .map(|s| s.function)
                .collect();
            assert_eq!(all, ["e", "f"], "{backend}");
            assert_eq!(all_splits(conn).unwrap()[1], now, "{backend}");
            reset_split(conn, "e", &change).unwrap();

            let removed = reset_split(
                conn,
                "f",
                &SplitChange {
                    reason: "done",
                    ..change
                },
            )
            .unwrap();
            assert_eq!(removed.unwrap().weights, second, "{backend}");
            assert_eq!(current_split(conn, "f").unwrap(), None, "{backend}");
            // A second reset has nothing to undo and records nothing.
            assert_eq!(reset_split(conn, "f", &change).unwrap(), None, "{backend}");

            let moves = split_moves(conn, "f", 0).unwrap();
            assert_eq!(moves.len(), 3, "{backend}");
            assert_eq!(moves[0].action, "reset", "{backend}");
            assert_eq!(moves[0].to_weights, None, "{backend}");
            assert_eq!(moves[1].percent_bps, Some(5000), "{backend}");
            assert_eq!(moves[1].variant.as_deref(), Some("candidate"), "{backend}");
            assert_eq!(moves[2].from_weights, None, "{backend}");
            assert_eq!(moves[2].to_weights, Some(first.clone()), "{backend}");
            assert_eq!(split_moves(conn, "f", 1).unwrap().len(), 1, "{backend}");
            assert!(
                split_moves(conn, "other", 0).unwrap().is_empty(),
                "{backend}"
            );

            let audit: Vec<_> = list_audit(conn, 0, 0)
                .unwrap()
                .into_iter()
                .filter(|e| e.target == "f")
                .collect();
            let got: Vec<_> = audit
                .iter()
                .map(|e| {
                    (
                        e.action.as_str(),
                        e.target.as_str(),
                        e.from_value.as_deref().unwrap(),
                        e.to_value.as_deref().unwrap(),
                        e.reason.as_deref().unwrap(),
                        e.actor.as_str(),
                    )
                })
                .collect();
            assert_eq!(
                got,
                [
                    (
                        ACTION_RESET,
                        "f",
                        "control=50,candidate=50",
                        "control=90,candidate=10",
                        "done",
                        "ann"
                    ),
                    (
                        ACTION_CANARY,
                        "f",
                        "control=75,candidate=25",
                        "control=50,candidate=50",
                        "step 2",
                        "ann"
                    ),
                    (
                        ACTION_CANARY,
                        "f",
                        "control=90,candidate=10",
                        "control=75,candidate=25",
                        "step 1",
                        "ann"
                    ),
                ],
                "{backend}"
            );
        }
    }

    #[test]
    fn malformed_stored_weights_are_an_error_not_a_panic() {
        for (backend, store, _db) in stores() {
            let conn = store.conn().unwrap();
            conn.db()
                .execute(
                    "INSERT INTO function_splits VALUES ('f', '{\"oops\": 1}', 1, 'a', 'r')",
                    &[],
                )
                .unwrap();
            let e = current_split(&conn, "f").unwrap_err();
            assert!(
                e.to_string().contains("stored split weights are not valid"),
                "{backend}: {e}"
            );
        }
    }

    /// Replicas moving one split at the same moment: each move is recorded from the
    /// split the previous one left, none from a stale read.
    fn race(store: &crate::Store, backend: &str) {
        const REPLICAS: u32 = 4;
        const EACH: u32 = 5;
        let config = w(&[("control", 100)]);
        let start = std::sync::Barrier::new(REPLICAS as usize);
        std::thread::scope(|s| {
            for r in 0..REPLICAS {
                let (config, start) = (&config, &start);
                s.spawn(move || {
                    let conn = store.conn().unwrap();
                    start.wait();
                    for i in 0..EACH {
                        let bps = 100 * (r * EACH + i + 1);
                        let weights = w(&[("control", 10_000 - bps), ("candidate", bps)]);
                        let change = SplitChange {
                            actor: "ops",
                            reason: "step",
                            config_weights: config,
                        };
                        set_split(&conn, "f", "candidate", bps, &weights, &change).unwrap();
                    }
                });
            }
        });
        let conn = store.conn().unwrap();
        let mut moves = split_moves(&conn, "f", 0).unwrap();
        moves.reverse();
        assert_eq!(moves.len(), (REPLICAS * EACH) as usize, "{backend}");
        assert_eq!(moves[0].from_weights, None, "{backend}");
        for pair in moves.windows(2) {
            assert_eq!(pair[1].from_weights, pair[0].to_weights, "{backend}");
        }
    }

    #[test]
    fn replicas_moving_a_split_at_once_record_every_move_from_the_last() {
        let dir = tempfile::tempdir().unwrap();
        let sqlite = crate::Store::open(dir.path().join("k.db").to_str().unwrap()).unwrap();
        race(&sqlite, "sqlite");
        let db = crate::testing::TestDb::new();
        race(&crate::Store::open(&db.url()).unwrap(), "postgres");
    }
}
