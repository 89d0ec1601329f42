//! Kill switches and budget freezes (migration 0025): an operator's one-command
//! mitigations during an incident. A switched-off scope — a function, feature, key, tenant
//! or model — makes matching calls fail fast with 503 `disabled`; a frozen budget stops
//! spend against it. Both live in the store so every replica serves them within a
//! registry refresh, and every change is audited in the same transaction (actions
//! `switch.off`, `switch.on`, `budget.freeze`, `budget.unfreeze`; target `kind=value` or
//! the budget's name), so an incident's timeline shows them as actions.

use serde::Serialize;

use crate::audit::{record_audit, NewAuditEvent};
use crate::error::StoreError;
use crate::sql::{Db, Value};
use crate::values;

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

/// On PostgreSQL, switch and freeze changes take turns (a transaction-scoped advisory
/// lock, "keel" then 0x104), as they do on SQLite (`BEGIN IMMEDIATE`). Each change is one
/// statement whose row count decides the audit, so this is belt and braces: the
/// statement alone already lets only one of two replicas change a row.
const SWITCHES_LOCK: i64 = 0x6b65_656c_0000_0104;

/// Run one statement in its own transaction and, when it changed a row, audit `event` in
/// the same transaction: `true` when something changed.
fn change_audited(
    db: Db<'_>,
    sql: &str,
    args: &[Value],
    now_ms: i64,
    event: &NewAuditEvent<'_>,
) -> Result<bool, StoreError> {
    db.exclusive(SWITCHES_LOCK, |tx| {
        let changed = tx.execute(sql, args)? > 0;
        if changed {
            record_audit(tx, now_ms, event)?;
        }
        Ok(changed)
    })
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
pub fn switch_off<'c>(
    db: impl Into<Db<'c>>,
    kind: &str,
    value: &str,
    actor: &str,
    reason: &str,
    now_ms: i64,
) -> Result<bool, StoreError> {
    let target = format!("{kind}={value}");
    change_audited(
        db.into(),
        "INSERT INTO switches (kind, value, reason, actor, at_ms) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (kind, value) DO NOTHING",
        &values![kind, value, reason, actor, now_ms],
        now_ms,
        &event(actor, ACTION_OFF, &target, Some("on"), Some("off"), reason),
    )
}

/// Turn `kind=value` back on; `false` when it was not off.
pub fn switch_on<'c>(
    db: impl Into<Db<'c>>,
    kind: &str,
    value: &str,
    actor: &str,
    reason: &str,
    now_ms: i64,
) -> Result<bool, StoreError> {
    let target = format!("{kind}={value}");
    change_audited(
        db.into(),
        "DELETE FROM switches WHERE kind = ?1 AND value = ?2",
        &values![kind, value],
        now_ms,
        &event(actor, ACTION_ON, &target, Some("off"), Some("on"), reason),
    )
}

/// Every scope switched off, by kind and value.
pub fn all_switches<'c>(db: impl Into<Db<'c>>) -> Result<Vec<Switch>, StoreError> {
    let mut all = db.into().query(
        "SELECT kind, value, reason, actor, at_ms FROM switches",
        &[],
        |r| {
            Ok(Switch {
                kind: r.get(0)?,
                value: r.get(1)?,
                reason: r.get(2)?,
                actor: r.get(3)?,
                at_ms: r.get(4)?,
            })
        },
    )?;
    // Sorted here, byte by byte as SQLite sorts text: a PostgreSQL database's collation
    // would order values differently.
    all.sort_by(|a, b| (&a.kind, &a.value).cmp(&(&b.kind, &b.value)));
    Ok(all)
}

/// Freeze `budget`; `false` when it already was frozen.
pub fn freeze_budget<'c>(
    db: impl Into<Db<'c>>,
    budget: &str,
    actor: &str,
    reason: &str,
    now_ms: i64,
) -> Result<bool, StoreError> {
    change_audited(
        db.into(),
        "INSERT INTO budget_freezes (budget, reason, actor, at_ms) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (budget) DO NOTHING",
        &values![budget, reason, actor, now_ms],
        now_ms,
        &event(actor, ACTION_FREEZE, budget, None, Some("frozen"), reason),
    )
}

/// Unfreeze `budget`; `false` when it was not frozen.
pub fn unfreeze_budget<'c>(
    db: impl Into<Db<'c>>,
    budget: &str,
    actor: &str,
    reason: &str,
    now_ms: i64,
) -> Result<bool, StoreError> {
    change_audited(
        db.into(),
        "DELETE FROM budget_freezes WHERE budget = ?1",
        &values![budget],
        now_ms,
        &event(actor, ACTION_UNFREEZE, budget, Some("frozen"), None, reason),
    )
}

/// Every frozen budget.
pub fn all_freezes<'c>(db: impl Into<Db<'c>>) -> Result<Vec<Freeze>, StoreError> {
    let mut all = db.into().query(
        "SELECT budget, reason, actor, at_ms FROM budget_freezes",
        &[],
        |r| {
            Ok(Freeze {
                budget: r.get(0)?,
                reason: r.get(1)?,
                actor: r.get(2)?,
                at_ms: r.get(3)?,
            })
        },
    )?;
    // Byte order, as SQLite sorts text (see `all_switches`).
    all.sort_by(|a, b| a.budget.cmp(&b.budget));
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::testing::stores;

    fn audits(c: Db<'_>) -> Vec<(String, String)> {
        crate::list_audit(c, 0, 0)
            .unwrap()
            .into_iter()
            .rev()
            .map(|e| (e.action, e.target))
            .collect()
    }

    #[test]
    fn switches_turn_off_once_and_back_on_audited() {
        for (backend, store, _db) in stores() {
            let conn = store.conn().unwrap();
            let c = conn.db();
            assert!(switch_off(c, "function", "support", "ana", "bad answers", 1).unwrap());
            assert!(!switch_off(c, "function", "support", "ana", "again", 2).unwrap());
            assert!(switch_off(c, "tenant", "acme", "ana", "abuse", 3).unwrap());
            assert!(switch_off(c, "function", "Support", "ana", "case", 3).unwrap());
            let all = all_switches(c).unwrap();
            let seen: Vec<(&str, &str)> = all
                .iter()
                .map(|s| (s.kind.as_str(), s.value.as_str()))
                .collect();
            assert_eq!(
                seen,
                [
                    ("function", "Support"),
                    ("function", "support"),
                    ("tenant", "acme")
                ],
                "{backend}"
            );
            assert_eq!(all[1].reason, "bad answers", "{backend}");
            assert_eq!((all[1].actor.as_str(), all[1].at_ms), ("ana", 1));
            assert!(switch_on(c, "function", "support", "bo", "fixed", 4).unwrap());
            assert!(!switch_on(c, "function", "support", "bo", "fixed", 5).unwrap());
            assert!(switch_on(c, "function", "Support", "bo", "fixed", 5).unwrap());
            assert_eq!(all_switches(c).unwrap().len(), 1, "{backend}");
            assert_eq!(
                audits(c),
                [
                    ("switch.off".to_string(), "function=support".to_string()),
                    ("switch.off".into(), "tenant=acme".into()),
                    ("switch.off".into(), "function=Support".into()),
                    ("switch.on".into(), "function=support".into()),
                    ("switch.on".into(), "function=Support".into()),
                ],
                "{backend}"
            );
        }
    }

    #[test]
    fn budgets_freeze_once_and_unfreeze_audited() {
        for (backend, store, _db) in stores() {
            let conn = store.conn().unwrap();
            let c = conn.db();
            assert!(freeze_budget(c, "monthly", "ana", "runaway", 1).unwrap());
            assert!(!freeze_budget(c, "monthly", "ana", "runaway", 2).unwrap());
            assert_eq!(all_freezes(c).unwrap()[0].budget, "monthly", "{backend}");
            assert!(unfreeze_budget(c, "monthly", "ana", "ok", 3).unwrap());
            assert!(!unfreeze_budget(c, "monthly", "ana", "ok", 4).unwrap());
            assert!(all_freezes(c).unwrap().is_empty(), "{backend}");
            assert_eq!(
                audits(c),
                [
                    ("budget.freeze".to_string(), "monthly".to_string()),
                    ("budget.unfreeze".into(), "monthly".into()),
                ],
                "{backend}"
            );
        }
    }

    /// A caller holding its writer connection mutably (the CLI) still passes it.
    #[test]
    fn a_mutable_sqlite_connection_is_still_accepted() {
        let (_d, mut c) = crate::test_conn();
        assert!(switch_off(&mut c, "key", "k1", "ana", "leak", 1).unwrap());
        assert_eq!(all_switches(&c).unwrap().len(), 1);
    }
}
