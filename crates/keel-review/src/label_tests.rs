//! `label`'s tests: answers checked against a schema, and a stored label turned into the
//! human scores reports and alerts read.

use std::path::Path;

use super::*;
use keel_core::config::Config;
use keel_store::scores::scores_for_trace;
use keel_store::Store;

fn queue(extra: &str) -> ReviewQueueConfig {
    let toml = format!(
        "[providers.up]\nkind = \"mock\"\n[models.mock-1]\nprovider = \"up\"\n\
         [[review_queues]]\nname = \"support\"\n{extra}"
    );
    Config::from_toml(&toml, Path::new("/tmp/keel.toml"))
        .map_err(|e| e.to_string())
        .unwrap()
        .review_queues
        .remove(0)
}

const SCHEMA: &str = "reviewers = 2\nlabels = [\n\
    { name = \"verdict\", type = \"choice\", choices = [\"good\", \"bad\", \"unsure\"] },\n\
    { name = \"accuracy\", type = \"number\", min = 1, max = 5 },\n\
    { name = \"note\", type = \"text\" },\n]\n";

fn answers(pairs: &[(&str, &str)], correction: Option<&str>) -> Answers {
    Answers {
        values: pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        correction: correction.map(str::to_string),
    }
}

#[test]
fn answers_are_checked_against_the_schema() {
    let q = queue(SCHEMA);
    let ok = check(
        &q,
        &answers(
            &[("verdict", "BAD"), ("accuracy", "2"), ("note", " ")],
            Some(" fixed "),
        ),
    )
    .unwrap();
    assert_eq!(
        ok.verdict.as_deref(),
        Some("bad"),
        "choices match case-insensitively"
    );
    assert_eq!(ok.labels.get("accuracy").and_then(Value::as_f64), Some(2.0));
    assert!(
        !ok.labels.contains_key("note"),
        "an empty optional text is left out"
    );
    assert_eq!(ok.correction.as_deref(), Some("fixed"));

    let err = |a: Answers| check(&q, &a).unwrap_err().to_string();
    assert!(err(answers(&[("accuracy", "2")], None)).contains("`verdict` needs an answer"));
    assert!(err(answers(&[("verdict", "meh"), ("accuracy", "2")], None))
        .contains("takes one of good, bad, unsure"));
    assert!(
        err(answers(&[("verdict", "good"), ("accuracy", "9")], None))
            .contains("a number from 1 to 5")
    );
    assert!(err(answers(&[("verdict", "good"), ("accuracy", "x")], None)).contains("`x`"));
    assert!(err(answers(
        &[("verdict", "good"), ("accuracy", "3"), ("tone", "ok")],
        None
    ))
    .contains("no label `tone`"));
    let no_corrections = queue("corrections = false\n");
    assert!(matches!(
        check(&no_corrections, &answers(&[("verdict", "good")], Some("x"))),
        Err(LabelError::CorrectionsOff)
    ));
}

#[test]
fn two_labels_become_mean_human_scores_on_the_trace() {
    let q = queue(SCHEMA);
    let store = Store::open(":memory:").unwrap();
    let conn = store.writer_conn().unwrap();
    keel_store::review::enqueue(&conn, "support", "t1", "sample", 2, 1, None).unwrap();
    let item = keel_store::review::items_for_trace(&conn, "t1").unwrap()[0].id;

    let first = submit(
        (&conn).into(),
        &q,
        item,
        "ana",
        &answers(&[("verdict", "good"), ("accuracy", "5")], None),
        10,
    )
    .unwrap();
    assert_eq!(
        first,
        Submitted {
            labelled: 1,
            needed: 2
        }
    );
    let second = submit(
        (&conn).into(),
        &q,
        item,
        "bo",
        &answers(
            &[("verdict", "bad"), ("accuracy", "2")],
            Some("Better answer"),
        ),
        20,
    )
    .unwrap();
    assert_eq!(
        second,
        Submitted {
            labelled: 2,
            needed: 2
        }
    );

    let scores = scores_for_trace(&conn, "t1").unwrap();
    let get = |m: &str| scores.iter().find(|s| s.metric == m).unwrap();
    assert!(scores
        .iter()
        .all(|s| s.source == HUMAN && s.eval == "support"));
    assert_eq!(get("verdict").value, 0.5);
    assert!((get("accuracy").value - (1.0 + 0.25) / 2.0).abs() < 1e-9);
    assert_eq!(scores.len(), 2, "text labels do not score");

    // A third reviewer is refused; a label for another queue's item too.
    let third = submit(
        (&conn).into(),
        &q,
        item,
        "cy",
        &answers(&[("verdict", "good"), ("accuracy", "5")], None),
        30,
    );
    assert!(matches!(third, Err(LabelError::AlreadyComplete(_))));
    keel_store::review::enqueue(&conn, "other", "t2", "added", 1, 1, None).unwrap();
    let other = keel_store::review::items_for_trace(&conn, "t2").unwrap()[0].id;
    let wrong = submit(
        (&conn).into(),
        &q,
        other,
        "ana",
        &answers(&[("verdict", "good"), ("accuracy", "5")], None),
        40,
    );
    assert!(matches!(wrong, Err(LabelError::WrongQueue { .. })));
    assert!(matches!(
        submit((&conn).into(), &q, 999, "ana", &Answers::default(), 50),
        Err(LabelError::NoSuchItem(999))
    ));
}

#[test]
fn unsure_gives_no_verdict_score() {
    let q = queue("");
    let labels = [serde_json::json!({"verdict": "unsure"})];
    assert!(human_scores(&q, labels.iter()).is_empty());
    let labels = [
        serde_json::json!({"verdict": "good"}),
        serde_json::json!({"verdict": "unsure"}),
    ];
    let rows = human_scores(&q, labels.iter());
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0].value, rows[0].passed), (1.0, true));
}
