//! Kill switches and budget freezes (migration 0025): an operator's one-command
//! mitigations during an incident. A switched-off scope — a function, feature, key, tenant
//! or model — makes matching calls fail fast with 503 `disabled`; a frozen budget stops
//! spend against it. Both live in the store so every replica serves them within a
//! registry refresh, and every change is audited in the same transaction (actions
//! `switch.off`, `switch.on`, `budget.freeze`, `budget.unfreeze`; target `kind=value` or
//! the budget's name), so an incident's timeline shows them as actions.

use rusqlite::{params, Connection, TransactionBehavior};
use serde::Serialize;

use crate::audit::{record_audit, NewAuditEvent};
use crate::error::StoreError;

/// The audit action of a switch turned off.
pub const ACTION_OFF: &str = "switch.off";
/// The audit action of a switch turned back on.
pub const ACTION_ON: &str = "switch.on";
/// The audit action of a budget frozen.
pub const ACTION_FREEZE: &str = "budget.freeze";
/// The audit action of a budget unfrozen.
pub const ACTION_UNFREEZE: &str = "budget.unfreeze";

/// What a switch can turn off.
pub const KINDS: [&str; 5] = ["function", "feature", "key", "tenant", "model"];

/// A scope switched off.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Switch {
    pub kind: String,
    pub value: String,
    pub reason: String,
    pub actor: String,
    pub at_ms: i64,
}

/// A frozen budget.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Freeze {
    pub budget: String,
    pub reason: String,
    pub actor: String,
    pub at_ms: i64,
}

/// Run one statement in its own transaction and, when it changed a row, audit `event` in
/// the same transaction: `true` when something changed.
fn change_audited(
    conn: &mut Connection,
    sql: &str,
    args: &[&dyn rusqlite::ToSql],
    now_ms: i64,
    event: &NewAuditEvent<'_>,
) -> Result<bool, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let changed = tx.execute(sql, args)? > 0;
    if changed {
        record_audit(&tx, now_ms, event)?;
    }
    tx.commit()?;
    Ok(changed)
}

/// The audit event of a change from `from` to `to` on `target`.
fn event<'a>(
    actor: &'a str,
    action: &'a str,
    target: &'a str,
    from: Option<&str>,
    to: Option<&str>,
    reason: &'a str,
) -> NewAuditEvent<'a> {
    NewAuditEvent {
        actor,
        action,
        target,
        from_value: from.map(str::to_string),
        to_value: to.map(str::to_string),
        reason: Some(reason),
        details: None,
    }
}

/// Turn `kind=value` off; `false` when it already was (nothing changes, nothing audited).
pub fn switch_off(
    conn: &mut Connection,
    kind: &str,
    value: &str,
    actor: &str,
    reason: &str,
    now_ms: i64,
) -> Result<bool, StoreError> {
    let target = format!("{kind}={value}");
    change_audited(
        conn,
        "INSERT INTO switches (kind, value, reason, actor, at_ms) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (kind, value) DO NOTHING",
        params![kind, value, reason, actor, now_ms],
        now_ms,
        &event(actor, ACTION_OFF, &target, Some("on"), Some("off"), reason),
    )
}

/// Turn `kind=value` back on; `false` when it was not off.
pub fn switch_on(
    conn: &mut Connection,
    kind: &str,
    value: &str,
    actor: &str,
    reason: &str,
    now_ms: i64,
) -> Result<bool, StoreError> {
    let target = format!("{kind}={value}");
    change_audited(
        conn,
        "DELETE FROM switches WHERE kind = ?1 AND value = ?2",
        params![kind, value],
        now_ms,
        &event(actor, ACTION_ON, &target, Some("off"), Some("on"), reason),
    )
}

/// Every scope switched off, by kind and value.
pub fn all_switches(conn: &Connection) -> rusqlite::Result<Vec<Switch>> {
    let mut stmt = conn.prepare_cached(
        "SELECT kind, value, reason, actor, at_ms FROM switches ORDER BY kind, value",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(Switch {
            kind: r.get(0)?,
            value: r.get(1)?,
            reason: r.get(2)?,
            actor: r.get(3)?,
            at_ms: r.get(4)?,
        })
    })?;
    rows.collect()
}

/// Freeze `budget`; `false` when it already was frozen.
pub fn freeze_budget(
    conn: &mut Connection,
    budget: &str,
    actor: &str,
    reason: &str,
    now_ms: i64,
) -> Result<bool, StoreError> {
    change_audited(
        conn,
        "INSERT INTO budget_freezes (budget, reason, actor, at_ms) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (budget) DO NOTHING",
        params![budget, reason, actor, now_ms],
        now_ms,
        &event(actor, ACTION_FREEZE, budget, None, Some("frozen"), reason),
    )
}

/// Unfreeze `budget`; `false` when it was not frozen.
pub fn unfreeze_budget(
    conn: &mut Connection,
    budget: &str,
    actor: &str,
    reason: &str,
    now_ms: i64,
) -> Result<bool, StoreError> {
    change_audited(
        conn,
        "DELETE FROM budget_freezes WHERE budget = ?1",
        params![budget],
        now_ms,
        &event(actor, ACTION_UNFREEZE, budget, Some("frozen"), None, reason),
    )
}

/// Every frozen budget.
pub fn all_freezes(conn: &Connection) -> rusqlite::Result<Vec<Freeze>> {
    let mut stmt = conn.prepare_cached(
        "SELECT budget, reason, actor, at_ms FROM budget_freezes ORDER BY budget",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(Freeze {
            budget: r.get(0)?,
            reason: r.get(1)?,
            actor: r.get(2)?,
            at_ms: r.get(3)?,
        })
    })?;
    rows.collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::test_conn as conn;

    fn audits(c: &Connection) -> Vec<(String, String)> {
        crate::list_audit(c, 0, 0)
            .unwrap()
            .into_iter()
            .rev()
            .map(|e| (e.action, e.target))
            .collect()
    }

    #[test]
    fn switches_turn_off_once_and_back_on_audited() {
        let (_d, mut c) = conn();
        assert!(switch_off(&mut c, "function", "support", "ana", "bad answers", 1).unwrap());
        assert!(!switch_off(&mut c, "function", "support", "ana", "again", 2).unwrap());
        assert!(switch_off(&mut c, "tenant", "acme", "ana", "abuse", 3).unwrap());
        let all = all_switches(&c).unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].kind, "function");
        assert_eq!(all[0].reason, "bad answers");
        assert!(switch_on(&mut c, "function", "support", "bo", "fixed", 4).unwrap());
        assert!(!switch_on(&mut c, "function", "support", "bo", "fixed", 5).unwrap());
        assert_eq!(all_switches(&c).unwrap().len(), 1);
        assert_eq!(
            audits(&c),
            [
                ("switch.off".to_string(), "function=support".to_string()),
                ("switch.off".into(), "tenant=acme".into()),
                ("switch.on".into(), "function=support".into()),
            ]
        );
    }

    #[test]
    fn budgets_freeze_once_and_unfreeze_audited() {
        let (_d, mut c) = conn();
        assert!(freeze_budget(&mut c, "monthly", "ana", "runaway", 1).unwrap());
        assert!(!freeze_budget(&mut c, "monthly", "ana", "runaway", 2).unwrap());
        assert_eq!(all_freezes(&c).unwrap()[0].budget, "monthly");
        assert!(unfreeze_budget(&mut c, "monthly", "ana", "ok", 3).unwrap());
        assert!(!unfreeze_budget(&mut c, "monthly", "ana", "ok", 4).unwrap());
        assert!(all_freezes(&c).unwrap().is_empty());
        assert_eq!(
            audits(&c),
            [
                ("budget.freeze".to_string(), "monthly".to_string()),
                ("budget.unfreeze".into(), "monthly".into()),
            ]
        );
    }
}
