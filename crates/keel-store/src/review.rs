//! Review queues' items, claims, labels and skips (migration 0022).
//!
//! An item is one trace in one queue. A reviewer opening the queue claims the oldest item
//! that still needs a label and that they have neither labelled nor skipped, unless the
//! claims of others already cover the labels it still needs: two reviewers never get the
//! same single-review item at once. Claims expire (the queue's `claim_ttl`), so a closed
//! tab gives its item back. A label completes the reviewer's part of the item; an item
//! is done when it has `needed` labels. Whoever fills the queue (the intake, a person
//! adding a trace) only calls [`enqueue`].

use serde::Serialize;
use serde_json::Value;

use crate::error::StoreError;
use crate::sql::{Db, Dialect, Row};
use crate::values;

/// One trace waiting in (or done in) a queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReviewItem {
    pub id: i64,
    pub queue: String,
    pub trace_id: String,
    /// Why it entered: `sample`, `failed_eval`, `score_below`, `negative_feedback`,
    /// `guardrail_flagged` or `added`.
    pub reason: String,
    pub entered_at_ms: i64,
    /// Labels (reviewers) the item needs.
    pub needed: u32,
    /// Labels recorded so far.
    pub labelled: u32,
    pub added_by: Option<String>,
}

/// One reviewer's label on an item, as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredLabel {
    pub item_id: i64,
    pub queue: String,
    pub trace_id: String,
    pub reviewer: String,
    /// The `verdict` label's answer, when the schema has one.
    pub verdict: Option<String>,
    /// Every label as answered.
    pub labels: Value,
    pub correction: Option<String>,
    pub at_ms: i64,
}

/// A label to record.
#[derive(Debug, Clone, Copy)]
pub struct NewLabel<'a> {
    pub verdict: Option<&'a str>,
    /// Every label as answered, a JSON object.
    pub labels: &'a Value,
    pub correction: Option<&'a str>,
}

/// What recording a label did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// Stored; the item now has this many labels.
    Labelled {
        labelled: u32,
        needed: u32,
    },
    /// The item already has every label it needs from other reviewers.
    AlreadyComplete,
    NoSuchItem,
}

/// A queue's progress, as the reviewer's page and `keel review list` show it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Progress {
    /// Items still needing a label.
    pub open: u64,
    /// Items with every label they need.
    pub done: u64,
    /// Labels recorded since the day started (UTC).
    pub labelled_today: u64,
    /// Items that entered since the day started, hand-added ones excluded (the daily cap
    /// counts these).
    pub entered_today: u64,
}

const ITEM_COLS: &str = "id, queue, trace_id, reason, entered_at_ms, needed, labelled, added_by";

fn item_row(r: &Row<'_>) -> Result<ReviewItem, StoreError> {
    Ok(ReviewItem {
        id: r.get(0)?,
        queue: r.get(1)?,
        trace_id: r.get(2)?,
        reason: r.get(3)?,
        entered_at_ms: r.get(4)?,
        needed: r.get(5)?,
        labelled: r.get(6)?,
        added_by: r.get(7)?,
    })
}

fn label_row(r: &Row<'_>) -> Result<StoredLabel, StoreError> {
    let labels: String = r.get(5)?;
    Ok(StoredLabel {
        item_id: r.get(0)?,
        queue: r.get(1)?,
        trace_id: r.get(2)?,
        reviewer: r.get(3)?,
        verdict: r.get(4)?,
        labels: serde_json::from_str(&labels).unwrap_or(Value::Null),
        correction: r.get(6)?,
        at_ms: r.get(7)?,
    })
}

const LABEL_COLS: &str =
    "item_id, queue, trace_id, reviewer, verdict, labels_json, correction, at_ms";

/// The audit action of a trace put in a queue by hand.
pub const ADD_ACTION: &str = "review.add";

/// Put `trace_id` in `queue` by hand (reason `added`, by `actor`) and record the audit
/// event `review.add` in the same transaction, so an added item is never unaudited.
/// `via` says where (`cli`, `dashboard`). `false` (and no event) when it was there.
pub fn add_by_hand<'c>(
    db: impl Into<Db<'c>>,
    queue: &str,
    trace_id: &str,
    needed: u32,
    actor: &str,
    at_ms: i64,
    via: &str,
) -> Result<bool, StoreError> {
    db.into().transaction(|tx| {
        if !enqueue(tx, queue, trace_id, "added", needed, at_ms, Some(actor))? {
            return Ok(false);
        }
        crate::audit::record_audit(
            tx,
            at_ms,
            &crate::audit::NewAuditEvent {
                actor,
                action: ADD_ACTION,
                target: queue,
                from_value: None,
                to_value: Some(trace_id.to_string()),
                reason: None,
                details: Some(serde_json::json!({ "source": via })),
            },
        )?;
        Ok(true)
    })
}

/// Put `trace_id` in `queue`; `false` when it is there already (a trace enters a queue
/// once, keeping the reason it first entered for).
pub fn enqueue<'c>(
    db: impl Into<Db<'c>>,
    queue: &str,
    trace_id: &str,
    reason: &str,
    needed: u32,
    at_ms: i64,
    added_by: Option<&str>,
) -> Result<bool, StoreError> {
    let n = db.into().execute(
        "INSERT OR IGNORE INTO review_items (queue, trace_id, reason, entered_at_ms, needed, added_by)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        &values![queue, trace_id, reason, at_ms, needed.max(1), added_by],
    )?;
    Ok(n == 1)
}

pub fn get_item<'c>(db: impl Into<Db<'c>>, id: i64) -> Result<Option<ReviewItem>, StoreError> {
    db.into().query_opt(
        &format!("SELECT {ITEM_COLS} FROM review_items WHERE id = ?1"),
        &values![id],
        item_row,
    )
}

/// ` FOR UPDATE` on PostgreSQL: the item rows a claim or a label decides on are locked
/// until it commits. (SQLite has no row locks: these run under its write lock.)
fn lock(db: Db<'_>) -> &'static str {
    match db.dialect() {
        Dialect::Sqlite => "",
        Dialect::Postgres => " FOR UPDATE",
    }
}

/// Items that still need a label from `?2`: not done, not labelled by them, and not
/// covered by others' live claims (expired ones are gone by then).
const NEEDS_REVIEWER: &str = "i.labelled < i.needed
    AND NOT EXISTS (SELECT 1 FROM review_labels l WHERE l.item_id = i.id AND l.reviewer = ?2)
    AND i.labelled + (SELECT COUNT(*) FROM review_claims c
                       WHERE c.item_id = i.id AND c.reviewer <> ?2) < i.needed";

/// How many candidates one claim tries when the one it picked was taken meanwhile by
/// another replica (each try takes a fresh look, so more than one retry is rare).
const CLAIM_TRIES: usize = 8;

/// In one transaction: drop expired claims, take the item `pick` names (`None`: no
/// candidate; `held`: one `reviewer` holds a claim on), and claim it for `reviewer`
/// until `now_ms + ttl_ms` (refreshing a claim they already hold).
///
/// Exclusive on both backends, so two reviewers never claim one single-review item: on
/// SQLite the transaction holds the write lock from the start; on PostgreSQL `pick`
/// locks the item's row (`FOR UPDATE`), and whether it still needs `reviewer` is asked
/// again once the lock is held, by a statement that sees every claim committed before
/// (another claimer of the same item waits for the lock, then sees this claim). An item
/// taken meanwhile is passed over and `pick` asked again.
fn claim_with(
    db: Db<'_>,
    reviewer: &str,
    now_ms: i64,
    ttl_ms: i64,
    pick: impl Fn(Db<'_>) -> Result<Option<Picked>, StoreError>,
) -> Result<Option<ReviewItem>, StoreError> {
    db.write_transaction(|tx| {
        tx.execute(
            "DELETE FROM review_claims WHERE expires_at_ms <= ?1",
            &values![now_ms],
        )?;
        for _ in 0..CLAIM_TRIES {
            let Some(picked) = pick(tx)? else {
                return Ok(None);
            };
            let (still, params) = if picked.held {
                ("i.labelled < i.needed", values![picked.id])
            } else {
                (NEEDS_REVIEWER, values![picked.id, reviewer])
            };
            let Some(item) = tx.query_opt(
                &format!("SELECT {ITEM_COLS} FROM review_items i WHERE i.id = ?1 AND {still}"),
                &params,
                item_row,
            )?
            else {
                continue;
            };
            tx.execute(
                "INSERT INTO review_claims (item_id, reviewer, claimed_at_ms, expires_at_ms)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (item_id, reviewer) DO UPDATE SET expires_at_ms = excluded.expires_at_ms",
                &values![item.id, reviewer, now_ms, now_ms.saturating_add(ttl_ms)],
            )?;
            return Ok(Some(item));
        }
        Ok(None)
    })
}

/// An item a claim settled on (its row locked on PostgreSQL).
struct Picked {
    id: i64,
    /// The reviewer holds a claim on it already (it is refreshed, not taken anew).
    held: bool,
}

/// The item `reviewer` should look at next in `queue`, claimed for them until
/// `now_ms + ttl_ms`: the one they already hold, else the oldest that still needs a
/// label they have not given or skipped and that others' live claims do not cover.
/// `None`: nothing left for them.
pub fn claim_next<'c>(
    db: impl Into<Db<'c>>,
    queue: &str,
    reviewer: &str,
    now_ms: i64,
    ttl_ms: i64,
) -> Result<Option<ReviewItem>, StoreError> {
    claim_with(db.into(), reviewer, now_ms, ttl_ms, |tx| {
        let lock = lock(tx);
        let held = tx.query_opt(
            &format!(
                "SELECT id FROM review_items WHERE id = (
                   SELECT c.item_id FROM review_claims c JOIN review_items i ON i.id = c.item_id
                    WHERE c.reviewer = ?2 AND i.queue = ?1 AND i.labelled < i.needed
                    ORDER BY c.claimed_at_ms LIMIT 1){lock}"
            ),
            &values![queue, reviewer],
            |r| {
                Ok(Picked {
                    id: r.get(0)?,
                    held: true,
                })
            },
        )?;
        if held.is_some() {
            return Ok(held);
        }
        tx.query_opt(
            &format!(
                "SELECT i.id FROM review_items i
                  WHERE i.queue = ?1 AND {NEEDS_REVIEWER}
                    AND NOT EXISTS (SELECT 1 FROM review_skips s
                                     WHERE s.item_id = i.id AND s.reviewer = ?2)
                  ORDER BY i.entered_at_ms, i.id LIMIT 1{lock}"
            ),
            &values![queue, reviewer],
            |r| {
                Ok(Picked {
                    id: r.get(0)?,
                    held: false,
                })
            },
        )
    })
}

/// Claim a given item for `reviewer` (reviewing one call on purpose: `keel review next
/// --trace`), refreshing their claim if they hold it. `None` when it needs no label from
/// them: done, already labelled by them, or others' live claims cover what it needs.
pub fn claim_item<'c>(
    db: impl Into<Db<'c>>,
    item_id: i64,
    reviewer: &str,
    now_ms: i64,
    ttl_ms: i64,
) -> Result<Option<ReviewItem>, StoreError> {
    let tried = std::cell::Cell::new(false);
    claim_with(db.into(), reviewer, now_ms, ttl_ms, |tx| {
        // One item only: if it was taken meanwhile, there is no other to try.
        if tried.replace(true) {
            return Ok(None);
        }
        tx.query_opt(
            &format!(
                "SELECT i.id FROM review_items i WHERE i.id = ?1 AND {NEEDS_REVIEWER}{}",
                lock(tx)
            ),
            &values![item_id, reviewer],
            |r| {
                Ok(Picked {
                    id: r.get(0)?,
                    held: false,
                })
            },
        )
    })
}

/// Give an item back without labelling it (it stays offered to `reviewer` too).
pub fn release_claim<'c>(
    db: impl Into<Db<'c>>,
    item_id: i64,
    reviewer: &str,
) -> Result<(), StoreError> {
    db.into().execute(
        "DELETE FROM review_claims WHERE item_id = ?1 AND reviewer = ?2",
        &values![item_id, reviewer],
    )?;
    Ok(())
}

/// `reviewer` passes over an item: not offered to them again; others still get it.
pub fn skip<'c>(
    db: impl Into<Db<'c>>,
    item_id: i64,
    reviewer: &str,
    now_ms: i64,
) -> Result<(), StoreError> {
    let db = db.into();
    db.execute(
        "INSERT INTO review_skips (item_id, reviewer, at_ms) VALUES (?1, ?2, ?3)
         ON CONFLICT (item_id, reviewer) DO UPDATE SET at_ms = excluded.at_ms",
        &values![item_id, reviewer, now_ms],
    )?;
    release_claim(db, item_id, reviewer)
}

/// Record `reviewer`'s label on an item (replacing their earlier one) and release their
/// claim. Refused when others have already given every label the item needs.
///
/// Exclusive per item: SQLite's write lock is held from the start; on PostgreSQL the
/// item's row is locked (`FOR UPDATE`, after the reviewer's claim), so two labels on one
/// item are counted one after the other and a single-review item never takes two.
pub fn record_label<'c>(
    db: impl Into<Db<'c>>,
    item_id: i64,
    reviewer: &str,
    label: &NewLabel<'_>,
    now_ms: i64,
) -> Result<Recorded, StoreError> {
    db.into().write_transaction(|tx| {
        if tx.dialect() == Dialect::Postgres {
            // Claims before items, as a claim takes them (it clears expired claims, then
            // locks an item): locking the item first, then deleting the reviewer's
            // expired claim that a claimer has just cleared, would deadlock with it.
            tx.query(
                "SELECT 1 FROM review_claims WHERE item_id = ?1 AND reviewer = ?2 FOR UPDATE",
                &values![item_id, reviewer],
                |_| Ok(()),
            )?;
        }
        let Some(item) = tx.query_opt(
            &format!(
                "SELECT {ITEM_COLS} FROM review_items WHERE id = ?1{}",
                lock(tx)
            ),
            &values![item_id],
            item_row,
        )?
        else {
            return Ok(Recorded::NoSuchItem);
        };
        let relabel: bool = tx.query_row(
            "SELECT EXISTS (SELECT 1 FROM review_labels WHERE item_id = ?1 AND reviewer = ?2)",
            &values![item_id, reviewer],
            |r| r.get(0),
        )?;
        if !relabel && item.labelled >= item.needed {
            return Ok(Recorded::AlreadyComplete);
        }
        tx.execute(
            &format!(
                "INSERT INTO review_labels ({LABEL_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT (item_id, reviewer) DO UPDATE SET
                     queue = excluded.queue, trace_id = excluded.trace_id,
                     verdict = excluded.verdict, labels_json = excluded.labels_json,
                     correction = excluded.correction, at_ms = excluded.at_ms"
            ),
            &values![
                item_id,
                &item.queue,
                &item.trace_id,
                reviewer,
                label.verdict,
                label.labels.to_string(),
                label.correction,
                now_ms
            ],
        )?;
        let labelled: u32 = tx.query_row(
            "SELECT COUNT(*) FROM review_labels WHERE item_id = ?1",
            &values![item_id],
            |r| r.get(0),
        )?;
        tx.execute(
            "UPDATE review_items SET labelled = ?2 WHERE id = ?1",
            &values![item_id, labelled],
        )?;
        tx.execute(
            "DELETE FROM review_claims WHERE item_id = ?1 AND reviewer = ?2",
            &values![item_id, reviewer],
        )?;
        Ok(Recorded::Labelled {
            labelled,
            needed: item.needed,
        })
    })
}

/// Every label on an item, oldest first.
pub fn labels_for_item<'c>(
    db: impl Into<Db<'c>>,
    item_id: i64,
) -> Result<Vec<StoredLabel>, StoreError> {
    db.into().query(
        &format!(
            "SELECT {LABEL_COLS} FROM review_labels WHERE item_id = ?1 ORDER BY at_ms, reviewer"
        ),
        &values![item_id],
        label_row,
    )
}

/// Every label on a trace, in any queue, oldest first (the trace page shows them).
pub fn labels_for_trace<'c>(
    db: impl Into<Db<'c>>,
    trace_id: &str,
) -> Result<Vec<StoredLabel>, StoreError> {
    db.into().query(
        &format!(
            "SELECT {LABEL_COLS} FROM review_labels WHERE trace_id = ?1 ORDER BY at_ms, reviewer"
        ),
        &values![trace_id],
        label_row,
    )
}

/// The labels of `queue` recorded since `since_ms`, oldest first, with the reason each
/// item entered (what `keel review export` writes).
pub fn labels_since<'c>(
    db: impl Into<Db<'c>>,
    queue: &str,
    since_ms: i64,
) -> Result<Vec<(StoredLabel, String)>, StoreError> {
    db.into().query(
        "SELECT l.item_id, l.queue, l.trace_id, l.reviewer, l.verdict, l.labels_json,
                l.correction, l.at_ms, i.reason
           FROM review_labels l JOIN review_items i ON i.id = l.item_id
          WHERE l.queue = ?1 AND l.at_ms >= ?2 ORDER BY l.at_ms, l.item_id, l.reviewer",
        &values![queue, since_ms],
        |r| Ok((label_row(r)?, r.get::<String>(8)?)),
    )
}

/// Where `queue` stands, with "today" starting at `day_start_ms`.
pub fn progress<'c>(
    db: impl Into<Db<'c>>,
    queue: &str,
    day_start_ms: i64,
) -> Result<Progress, StoreError> {
    let db = db.into();
    let (open, done, entered_today): (i64, i64, i64) = db.query_row(
        "SELECT COALESCE(SUM(CASE WHEN labelled < needed THEN 1 ELSE 0 END), 0),
                COALESCE(SUM(CASE WHEN labelled >= needed THEN 1 ELSE 0 END), 0),
                COALESCE(SUM(CASE WHEN entered_at_ms >= ?2 AND reason <> 'added' THEN 1 ELSE 0 END), 0)
           FROM review_items WHERE queue = ?1",
        &values![queue, day_start_ms],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    let labelled_today: i64 = db.query_row(
        "SELECT COUNT(*) FROM review_labels WHERE queue = ?1 AND at_ms >= ?2",
        &values![queue, day_start_ms],
        |r| r.get(0),
    )?;
    let n = |v: i64| u64::try_from(v).unwrap_or(0);
    Ok(Progress {
        open: n(open),
        done: n(done),
        labelled_today: n(labelled_today),
        entered_today: n(entered_today),
    })
}

/// For calls of `queue` whose human verdict score (written since `since_ms`) is clear
/// (not a tie between two reviewers) and that an online eval also judged: (the humans
/// said good, the judge passed it — every assertion of every online eval on the call).
pub fn human_and_judge<'c>(
    db: impl Into<Db<'c>>,
    queue: &str,
    since_ms: i64,
) -> Result<Vec<(bool, bool)>, StoreError> {
    db.into().query(
        "SELECT h.value > 0.5,
                (SELECT MIN(s.passed) FROM scores s
                  WHERE s.trace_id = h.trace_id AND s.source IN ('online', 'backfill'))
           FROM scores h
          WHERE h.eval = ?1 AND h.source = 'human' AND h.metric = 'verdict'
            AND h.value <> 0.5 AND h.created_at_ms >= ?2
            AND EXISTS (SELECT 1 FROM scores s
                         WHERE s.trace_id = h.trace_id AND s.source IN ('online', 'backfill'))",
        &values![queue, since_ms],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
}

/// The queues `trace_id` is in, with its item there.
pub fn items_for_trace<'c>(
    db: impl Into<Db<'c>>,
    trace_id: &str,
) -> Result<Vec<ReviewItem>, StoreError> {
    db.into().query(
        &format!("SELECT {ITEM_COLS} FROM review_items WHERE trace_id = ?1 ORDER BY queue"),
        &values![trace_id],
        item_row,
    )
}

#[cfg(test)]
#[path = "review_tests.rs"]
mod tests;
