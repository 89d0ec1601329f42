//! `agreement`'s tests: two reviewers' known verdicts give the textbook kappa, and the
//! humans against a judge with known pass/fail give theirs.

use std::path::Path;

use super::*;
use crate::label::{submit, Answers};
use keel_core::config::Config;
use keel_store::scores::{replace_scores, ScoreRow};
use keel_store::Store;

fn queue() -> ReviewQueueConfig {
    let toml = "[providers.up]\nkind = \"mock\"\n[models.mock-1]\nprovider = \"up\"\n\
                [[review_queues]]\nname = \"support\"\nreviewers = 2\nlabels = [\n\
                { name = \"verdict\", type = \"choice\", choices = [\"good\", \"bad\", \"unsure\"] },\n\
                { name = \"accuracy\", type = \"number\", min = 1, max = 5, required = false },\n]\n";
    Config::from_toml(toml, Path::new("/tmp/keel.toml"))
        .map_err(|e| e.to_string())
        .unwrap()
        .review_queues
        .remove(0)
}

fn answer(verdict: &str, accuracy: &str) -> Answers {
    Answers {
        values: [("verdict", verdict), ("accuracy", accuracy)]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        correction: None,
    }
}

#[test]
fn known_verdicts_give_known_kappas() {
    let q = queue();
    let store = Store::open(":memory:").unwrap();
    let mut conn = store.writer_conn().unwrap();
    // (Ana, Bo) on ten calls: 4 both good, 3 both bad, 2 good/bad, 1 bad/good.
    let table = [
        ("good", "good"),
        ("good", "good"),
        ("good", "good"),
        ("good", "good"),
        ("bad", "bad"),
        ("bad", "bad"),
        ("bad", "bad"),
        ("good", "bad"),
        ("good", "bad"),
        ("bad", "good"),
    ];
    for (i, (ana, bo)) in table.iter().enumerate() {
        let trace = format!("t{i}");
        keel_store::review::enqueue(&conn, "support", &trace, "sample", 2, 1, None).unwrap();
        let item = keel_store::review::items_for_trace(&conn, &trace).unwrap()[0].id;
        submit(
            (&conn).into(),
            &q,
            item,
            "ana",
            &answer(ana, "4"),
            100 + i as i64,
        )
        .unwrap();
        submit(
            (&conn).into(),
            &q,
            item,
            "bo",
            &answer(bo, "2"),
            200 + i as i64,
        )
        .unwrap();
        // The judge passed three of the four calls both humans found good, and none of
        // the bad ones.
        let passed = i < 3;
        let rows = [ScoreRow {
            metric: "helpful".into(),
            value: if passed { 0.9 } else { 0.2 },
            passed,
            reason: None,
        }];
        replace_scores(&mut conn, &trace, "q", "online", &rows, None, 50).unwrap();
    }
    // Ana's label on an item of its own, and an unsure one: counted, never paired.
    keel_store::review::enqueue(&conn, "support", "solo", "sample", 2, 1, None).unwrap();
    let solo = keel_store::review::items_for_trace(&conn, "solo").unwrap()[0].id;
    submit((&conn).into(), &q, solo, "ana", &answer("unsure", ""), 300).unwrap();

    let f = figures((&conn).into(), &q, 0).unwrap();
    assert_eq!((f.items_reviewed, f.labels), (11, 21));
    assert_eq!(f.distribution["verdict"]["good"], 11);
    assert_eq!(f.distribution["verdict"]["bad"], 9);
    assert_eq!(f.distribution["verdict"]["unsure"], 1);
    assert!((f.means["accuracy"] - 3.0).abs() < 1e-12);

    // p_o 0.7, p_e 0.6·0.5 + 0.4·0.5 = 0.5 → κ 0.4.
    let r = f.reviewers.unwrap();
    assert_eq!(r.n, 10);
    assert!((r.kappa.unwrap() - 0.4).abs() < 1e-12, "{r:?}");
    // Ties (good/bad) leave 7 clear calls: (good, pass) ×3, (good, fail) ×1, (bad, fail) ×3
    // → p_o 6/7, p_e 24/49 → κ 18/25.
    let j = f.human_vs_judge.unwrap();
    assert_eq!(j.n, 7);
    assert!((j.observed - 6.0 / 7.0).abs() < 1e-12);
    assert!((j.kappa.unwrap() - 0.72).abs() < 1e-12, "{j:?}");

    // Nothing since later: no figures, no kappa.
    let later = figures((&conn).into(), &q, 10_000).unwrap();
    assert_eq!(later.items_reviewed, 0);
    assert!(later.reviewers.is_none());
}
