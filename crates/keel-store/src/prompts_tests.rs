//! Tests of prompt versions, labels, rollback and their audit rows, on both backends.

use super::*;
use crate::audit::list_audit;
use crate::testing::{stores, TestDb};

fn push(db: Db<'_>, hash: &str) -> PushOutcome {
    push_version(
        db,
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
    for (backend, store, _db) in stores() {
        let conn = store.conn().unwrap();
        let db = conn.db();
        assert_eq!(push(db, "h1"), PushOutcome::Created(1), "{backend}");
        assert_eq!(push(db, "h1"), PushOutcome::Unchanged(1), "{backend}");
        assert_eq!(push(db, "h2"), PushOutcome::Created(2), "{backend}");
        assert_eq!(push(db, "h2"), PushOutcome::Unchanged(2), "{backend}");
        // Going back to old content keeps its version: one content is one version.
        assert_eq!(push(db, "h1"), PushOutcome::Unchanged(1), "{backend}");
        assert_eq!(push(db, "h3"), PushOutcome::Created(3), "{backend}");

        let v = latest_version(db, "support/answer").unwrap().unwrap();
        assert_eq!((v.version, v.content_hash.as_str()), (3, "h3"), "{backend}");
        assert_eq!(v.author, "Ann <ann@x>", "{backend}");
        assert_eq!(v.commit_id.as_deref(), Some("abc123"), "{backend}");
        let all: Vec<i64> = versions(db, "support/answer")
            .unwrap()
            .iter()
            .map(|v| v.version)
            .collect();
        assert_eq!(all, [3, 2, 1], "{backend}");
        assert!(get_version(db, "support/answer", 9).unwrap().is_none());
        assert_eq!(
            version_by_hash(db, "support/answer", "h2").unwrap(),
            Some(2)
        );
        assert_eq!(version_by_hash(db, "support/answer", "h9").unwrap(), None);

        let audit = list_audit(db, 0, 0).unwrap();
        assert_eq!(
            audit.len(),
            3,
            "{backend}: unchanged pushes are not audited"
        );
        assert!(audit.iter().all(|a| a.action == "prompt.push"), "{backend}");
        assert_eq!(audit[0].from_value.as_deref(), Some("v2"), "{backend}");
        assert_eq!(audit[0].to_value.as_deref(), Some("v3"), "{backend}");
        assert_eq!(audit[2].from_value, None, "{backend}");
        let details: serde_json::Value =
            serde_json::from_str(audit[0].details_json.as_deref().unwrap()).unwrap();
        assert_eq!(details["content_hash"], "h3", "{backend}");
    }
}

#[test]
fn labels_move_with_history_and_audit_and_roll_back() {
    for (backend, store, _db) in stores() {
        let conn = store.conn().unwrap();
        let db = conn.db();
        push(db, "h1");
        push(db, "h2");
        let name = "support/answer";

        let err = set_label(db, name, 7, "production", "ops", "typo").unwrap_err();
        assert_eq!(err.to_string(), "prompt `support/answer` has no version 7 — `keel prompt history support/answer` lists its versions");
        let err = rollback_label(db, name, "production", "ops", "r").unwrap_err();
        assert!(
            matches!(err, PromptStoreError::NoSuchLabel { .. }),
            "{backend}: {err}"
        );

        set_label(db, name, 1, "production", "ops", "launch").unwrap();
        let err = rollback_label(db, name, "production", "ops", "r").unwrap_err();
        assert_eq!(
            err.to_string(),
            "label production of support/answer has no earlier position"
        );

        let out = set_label(db, name, 2, "production", "bob", "better answers").unwrap();
        assert_eq!(
            out,
            LabelOutcome {
                from_version: Some(1),
                to_version: 2
            },
            "{backend}"
        );
        assert_eq!(label_version(db, name, "production").unwrap(), Some(2));

        let out = rollback_label(db, name, "production", "carol", "complaints").unwrap();
        assert_eq!(
            out,
            LabelOutcome {
                from_version: Some(2),
                to_version: 1
            },
            "{backend}"
        );
        assert_eq!(label_version(db, name, "production").unwrap(), Some(1));

        let moves = label_moves(db, name).unwrap();
        let seen: Vec<(Option<i64>, i64, &str)> = moves
            .iter()
            .map(|m| (m.from_version, m.to_version, m.actor.as_str()))
            .collect();
        assert_eq!(
            seen,
            [(Some(2), 1, "carol"), (Some(1), 2, "bob"), (None, 1, "ops")],
            "{backend}"
        );

        set_label(db, name, 2, "staging", "ops", "try").unwrap();
        let labels: Vec<(String, i64)> = all_labels(db)
            .unwrap()
            .into_iter()
            .map(|l| (l.label, l.version))
            .collect();
        assert_eq!(
            labels,
            [("production".to_string(), 1), ("staging".to_string(), 2)],
            "{backend}"
        );
        let list = list_prompts(db).unwrap();
        assert_eq!(list.len(), 1, "{backend}");
        assert_eq!(list[0].latest_version, 2, "{backend}");
        assert_eq!(list[0].labels.len(), 2, "{backend}");

        let audit = list_audit(db, 0, 0).unwrap();
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
            ],
            "{backend}"
        );
        assert_eq!(audit[1].target, "support/answer@production", "{backend}");
        assert_eq!(audit[1].reason.as_deref(), Some("complaints"), "{backend}");
        assert_eq!(audit[1].actor, "carol", "{backend}");
        assert_eq!(list_audit(db, 0, 2).unwrap().len(), 2, "{backend}");
        assert!(list_audit(db, i64::MAX, 0).unwrap().is_empty(), "{backend}");
    }
}

#[test]
fn setting_a_label_where_it_is_records_nothing() {
    for (backend, store, _db) in stores() {
        let conn = store.conn().unwrap();
        let db = conn.db();
        push(db, "h1");
        set_label(db, "support/answer", 1, "production", "ops", "launch").unwrap();
        set_label(db, "support/answer", 1, "production", "ops", "again").unwrap();
        assert_eq!(
            label_moves(db, "support/answer").unwrap().len(),
            1,
            "{backend}"
        );
    }
}

#[test]
fn prompts_and_labels_are_listed_in_byte_order() {
    for (backend, store, _db) in stores() {
        let conn = store.conn().unwrap();
        let db = conn.db();
        for name in ["b", "a_b", "B", "ab"] {
            push_version(db, name, "h", "{}", "a", "r", None).unwrap();
            set_label(db, name, 1, "z", "a", "r").unwrap();
            set_label(db, name, 1, "Z", "a", "r").unwrap();
        }
        let names: Vec<String> = list_prompts(db)
            .unwrap()
            .into_iter()
            .map(|p| p.name)
            .collect();
        assert_eq!(names, ["B", "a_b", "ab", "b"], "{backend}");
        let labels: Vec<String> = all_labels(db)
            .unwrap()
            .into_iter()
            .map(|l| format!("{}@{}", l.name, l.label))
            .collect();
        assert_eq!(labels[..2], ["B@Z", "B@z"], "{backend}");
    }
}

/// Replicas pushing and moving labels at the same moment (several connections, each on
/// its own thread): every version number is taken once, in order, and every label move
/// is recorded from where the label really was.
fn race(store: &Store, backend: &str) {
    const WRITERS: usize = 4;
    const EACH: usize = 8;
    std::thread::scope(|s| {
        for w in 0..WRITERS {
            s.spawn(move || {
                let conn = store.conn().unwrap();
                for i in 0..EACH {
                    let hash = format!("w{w}-{i}");
                    let PushOutcome::Created(v) =
                        push_version(&conn, "p", &hash, "{}", "a", "r", None).unwrap()
                    else {
                        panic!("{backend}: {hash} was new");
                    };
                    set_label(&conn, "p", v, "production", "a", "r").unwrap();
                }
            });
        }
    });
    let conn = store.conn().unwrap();
    let mut got: Vec<i64> = versions(&conn, "p")
        .unwrap()
        .iter()
        .map(|v| v.version)
        .collect();
    got.reverse();
    let want: Vec<i64> = (1..=i64::try_from(WRITERS * EACH).unwrap()).collect();
    assert_eq!(got, want, "{backend}");
    // Each move starts where the previous one left the label: none lost.
    let mut moves = label_moves(&conn, "p").unwrap();
    moves.reverse();
    assert_eq!(moves.len(), WRITERS * EACH, "{backend}");
    for pair in moves.windows(2) {
        assert_eq!(pair[1].from_version, Some(pair[0].to_version), "{backend}");
    }
    assert_eq!(
        label_version(&conn, "p", "production").unwrap(),
        Some(moves[moves.len() - 1].to_version),
        "{backend}"
    );
}

#[test]
fn replicas_pushing_at_once_never_share_a_version_or_lose_a_move() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = Store::open(dir.path().join("k.db").to_str().unwrap()).unwrap();
    race(&sqlite, "sqlite");
    let db = TestDb::new();
    let pg = Store::open(&db.url()).unwrap();
    race(&pg, "postgres");
}
