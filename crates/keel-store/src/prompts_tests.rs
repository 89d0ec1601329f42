//! Tests of prompt versions, labels, rollback and their audit rows.

use super::*;
use crate::audit::list_audit;

fn store() -> (Store, Connection) {
    let store = Store::open(":memory:").unwrap();
    let conn = store.writer_conn().unwrap();
    (store, conn)
}

fn push(conn: &Connection, hash: &str) -> PushOutcome {
    push_version(
        conn,
        "support/answer",
        hash,
        "{}",
        "Ann <ann@x>",
        "first",
        Some("abc123"),
    )
    .unwrap()
}

#[test]
fn push_is_idempotent_and_new_content_is_a_new_version() {
    let (_s, conn) = store();
    assert_eq!(push(&conn, "h1"), PushOutcome::Created(1));
    assert_eq!(push(&conn, "h1"), PushOutcome::Unchanged(1));
    assert_eq!(push(&conn, "h2"), PushOutcome::Created(2));
    assert_eq!(push(&conn, "h2"), PushOutcome::Unchanged(2));
    // Going back to old content keeps its version: one content is one version.
    assert_eq!(push(&conn, "h1"), PushOutcome::Unchanged(1));
    assert_eq!(push(&conn, "h3"), PushOutcome::Created(3));

    let v = latest_version(&conn, "support/answer").unwrap().unwrap();
    assert_eq!((v.version, v.content_hash.as_str()), (3, "h3"));
    assert_eq!(v.author, "Ann <ann@x>");
    assert_eq!(v.commit_id.as_deref(), Some("abc123"));
    let all: Vec<i64> = versions(&conn, "support/answer")
        .unwrap()
        .iter()
        .map(|v| v.version)
        .collect();
    assert_eq!(all, [3, 2, 1]);
    assert!(get_version(&conn, "support/answer", 9).unwrap().is_none());

    let audit = list_audit(&conn, 0, 0).unwrap();
    assert_eq!(audit.len(), 3, "unchanged pushes are not audited");
    assert!(audit.iter().all(|a| a.action == "prompt.push"));
    assert_eq!(audit[0].from_value.as_deref(), Some("v2"));
    assert_eq!(audit[0].to_value.as_deref(), Some("v3"));
    assert_eq!(audit[2].from_value, None);
}

#[test]
fn labels_move_with_history_and_audit_and_roll_back() {
    let (_s, conn) = store();
    push(&conn, "h1");
    push(&conn, "h2");
    let name = "support/answer";

    let err = set_label(&conn, name, 7, "production", "ops", "typo").unwrap_err();
    assert_eq!(err.to_string(), "prompt `support/answer` has no version 7 — `keel prompt history support/answer` lists its versions");
    let err = rollback_label(&conn, name, "production", "ops", "r").unwrap_err();
    assert!(matches!(err, PromptStoreError::NoSuchLabel { .. }), "{err}");

    set_label(&conn, name, 1, "production", "ops", "launch").unwrap();
    let err = rollback_label(&conn, name, "production", "ops", "r").unwrap_err();
    assert_eq!(
        err.to_string(),
        "label production of support/answer has no earlier position"
    );

    let out = set_label(&conn, name, 2, "production", "bob", "better answers").unwrap();
    assert_eq!(
        out,
        LabelOutcome {
            from_version: Some(1),
            to_version: 2
        }
    );
    assert_eq!(label_version(&conn, name, "production").unwrap(), Some(2));

    let out = rollback_label(&conn, name, "production", "carol", "complaints").unwrap();
    assert_eq!(
        out,
        LabelOutcome {
            from_version: Some(2),
            to_version: 1
        }
    );
    assert_eq!(label_version(&conn, name, "production").unwrap(), Some(1));

    let moves = label_moves(&conn, name).unwrap();
    let seen: Vec<(Option<i64>, i64, &str)> = moves
        .iter()
        .map(|m| (m.from_version, m.to_version, m.actor.as_str()))
        .collect();
    assert_eq!(
        seen,
        [(Some(2), 1, "carol"), (Some(1), 2, "bob"), (None, 1, "ops")]
    );

    set_label(&conn, name, 2, "staging", "ops", "try").unwrap();
    let labels: Vec<(String, i64)> = all_labels(&conn)
        .unwrap()
        .into_iter()
        .map(|l| (l.label, l.version))
        .collect();
    assert_eq!(
        labels,
        [("production".to_string(), 1), ("staging".to_string(), 2)]
    );
    let list = list_prompts(&conn).unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].latest_version, 2);
    assert_eq!(list[0].labels.len(), 2);

    let audit = list_audit(&conn, 0, 0).unwrap();
    let actions: Vec<&str> = audit.iter().map(|a| a.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "prompt.label",
            "prompt.rollback",
            "prompt.label",
            "prompt.label",
            "prompt.push",
            "prompt.push"
        ]
    );
    assert_eq!(audit[1].target, "support/answer@production");
    assert_eq!(audit[1].reason.as_deref(), Some("complaints"));
    assert_eq!(audit[1].actor, "carol");
    assert_eq!(list_audit(&conn, 0, 2).unwrap().len(), 2);
    assert!(list_audit(&conn, i64::MAX, 0).unwrap().is_empty());
}

#[test]
fn setting_a_label_where_it_is_records_nothing() {
    let (_s, conn) = store();
    push(&conn, "h1");
    set_label(&conn, "support/answer", 1, "production", "ops", "launch").unwrap();
    set_label(&conn, "support/answer", 1, "production", "ops", "again").unwrap();
    assert_eq!(label_moves(&conn, "support/answer").unwrap().len(), 1);
}
