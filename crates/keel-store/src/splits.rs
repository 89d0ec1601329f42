//! Traffic-split overrides of functions (`keel function canary`), in the store so a
//! running gateway picks them up within a registry refresh and every replica serves the
//! same split. The current override is one row per function in `function_splits` (no
//! row: the configured weights serve); every move is kept in `function_split_moves` and
//! in the audit log, in the same transaction as the change.

use keel_core::split::format_shares;
use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};
use serde::Serialize;
use serde_json::{json, Value};

use crate::audit::{record_audit, NewAuditEvent};
use crate::prompts::now_ms;

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

/// Parse stored weights; a malformed value (never written by Keel) is a conversion error.
fn from_json(text: &str) -> rusqlite::Result<Vec<(String, u32)>> {
    let bad = |why: String| {
        rusqlite::Error::FromSqlConversionFailure(
            0,
            rusqlite::types::Type::Text,
            format!("stored split weights are not valid ({why}): {text}").into(),
        )
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

fn immediate(conn: &Connection) -> rusqlite::Result<Transaction<'_>> {
    Transaction::new_unchecked(conn, TransactionBehavior::Immediate)
}

const SPLIT_COLS: &str = "function, weights_json, updated_at_ms, actor, reason";

fn split_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<FunctionSplit> {
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
pub fn current_split(conn: &Connection, function: &str) -> rusqlite::Result<Option<FunctionSplit>> {
    conn.query_row(
        &format!("SELECT {SPLIT_COLS} FROM function_splits WHERE function = ?1"),
        [function],
        split_row,
    )
    .optional()
}

/// Every function's override (what the gateway's registry snapshot loads).
pub fn all_splits(conn: &Connection) -> rusqlite::Result<Vec<FunctionSplit>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {SPLIT_COLS} FROM function_splits ORDER BY function"
    ))?;
    let rows = stmt.query_map([], split_row)?;
    rows.collect()
}

/// Make `weights` the split of `function` (a canary of `variant` at `percent_bps`);
/// returns the override it replaced. Recorded as a move and an audit event even when
/// nothing changes (the operator's act is what is audited).
pub fn set_split(
    conn: &Connection,
    function: &str,
    variant: &str,
    percent_bps: u32,
    weights: &[(String, u32)],
    change: &SplitChange<'_>,
) -> rusqlite::Result<Option<FunctionSplit>> {
    let tx = immediate(conn)?;
    let before = current_split(&tx, function)?;
    let at = now_ms();
    let to = to_json(weights);
    tx.execute(
        "INSERT INTO function_splits (function, weights_json, updated_at_ms, actor, reason)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (function) DO UPDATE SET weights_json = excluded.weights_json,
             updated_at_ms = excluded.updated_at_ms, actor = excluded.actor, reason = excluded.reason",
        params![function, to, at, change.actor, change.reason],
    )?;
    record_move(
        &tx,
        &Move {
            function,
            canary: Some((variant, percent_bps)),
            before: before.as_ref(),
            to: Some(weights),
            at,
        },
        change,
    )?;
    tx.commit()?;
    Ok(before)
}

/// Drop the override of `function` (back to its configured weights); returns the
/// override it removed (`None`: the configured weights were already serving, and
/// nothing is recorded).
pub fn reset_split(
    conn: &Connection,
    function: &str,
    change: &SplitChange<'_>,
) -> rusqlite::Result<Option<FunctionSplit>> {
    let tx = immediate(conn)?;
    let Some(before) = current_split(&tx, function)? else {
        return Ok(None);
    };
    tx.execute(
        "DELETE FROM function_splits WHERE function = ?1",
        [function],
    )?;
    let at = now_ms();
    record_move(
        &tx,
        &Move {
            function,
            canary: None,
            before: Some(&before),
            to: None,
            at,
        },
        change,
    )?;
    tx.commit()?;
    Ok(Some(before))
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

fn record_move(tx: &Connection, m: &Move<'_>, change: &SplitChange<'_>) -> rusqlite::Result<()> {
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
        params![
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
pub fn split_moves(
    conn: &Connection,
    function: &str,
    limit: usize,
) -> rusqlite::Result<Vec<SplitMove>> {
    let limit = if limit == 0 {
        -1
    } else {
        i64::try_from(limit).unwrap_or(i64::MAX)
    };
    let mut stmt = conn.prepare(
        "SELECT id, function, action, variant, percent_bps, from_weights, to_weights, at_ms, actor, reason
         FROM function_split_moves WHERE function = ?1 ORDER BY id DESC LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![function, limit], |r| {
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
    })?;
    rows.collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::list_audit;
    use crate::Store;

    fn w(pairs: &[(&str, u32)]) -> Vec<(String, u32)> {
        pairs.iter().map(|(n, w)| (n.to_string(), *w)).collect()
    }

    #[test]
    fn canary_moves_reset_and_history_are_recorded_and_audited() {
        let store = Store::open(":memory:").unwrap();
        let conn = store.writer_conn().unwrap();
        let config = w(&[("control", 90), ("candidate", 10)]);
        let change = SplitChange {
            actor: "ann",
            reason: "step 1",
            config_weights: &config,
        };
        assert_eq!(current_split(&conn, "f").unwrap(), None);
        let first = w(&[("control", 7500), ("candidate", 2500)]);
        assert_eq!(
            set_split(&conn, "f", "candidate", 2500, &first, &change).unwrap(),
            None
        );
        let second = w(&[("control", 5000), ("candidate", 5000)]);
        let before = set_split(
            &conn,
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
        assert_eq!(before.weights, first);
        let now = current_split(&conn, "f").unwrap().unwrap();
        assert_eq!(
            (now.weights.clone(), now.reason.as_str()),
            (second.clone(), "step 2")
        );
        assert_eq!(all_splits(&conn).unwrap(), vec![now]);

        let removed = reset_split(
            &conn,
            "f",
            &SplitChange {
                reason: "done",
                ..change
            },
        )
        .unwrap();
        assert_eq!(removed.unwrap().weights, second);
        assert_eq!(current_split(&conn, "f").unwrap(), None);
        // A second reset has nothing to undo and records nothing.
        assert_eq!(reset_split(&conn, "f", &change).unwrap(), None);

        let moves = split_moves(&conn, "f", 0).unwrap();
        assert_eq!(moves.len(), 3);
        assert_eq!(moves[0].action, "reset");
        assert_eq!(moves[0].to_weights, None);
        assert_eq!(moves[1].percent_bps, Some(5000));
        assert_eq!(moves[2].from_weights, None);
        assert_eq!(split_moves(&conn, "f", 1).unwrap().len(), 1);
        assert!(split_moves(&conn, "other", 0).unwrap().is_empty());

        let audit = list_audit(&conn, 0, 0).unwrap();
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
            ]
        );
    }

    #[test]
    fn malformed_stored_weights_are_an_error_not_a_panic() {
        let store = Store::open(":memory:").unwrap();
        let conn = store.writer_conn().unwrap();
        conn.execute(
            "INSERT INTO function_splits VALUES ('f', '{\"oops\": 1}', 1, 'a', 'r')",
            [],
        )
        .unwrap();
        let e = current_split(&conn, "f").unwrap_err();
        assert!(
            e.to_string().contains("stored split weights are not valid"),
            "{e}"
        );
    }
}
