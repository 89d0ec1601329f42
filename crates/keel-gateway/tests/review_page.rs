#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The reviewer's pages in-process, as a browser uses them: the queue list, the name
//! form, an item claimed and shown with its output and label form, a bad answer refused
//! with what was typed kept, a label saved as a human score and counted, a second
//! reviewer kept off a claimed item, skips, hand-added traces (audited), and the
//! cross-site guard.

mod common;

use std::time::{Duration, Instant};

use common::{Harness, Options};

const EXTRA: &str = r#"
[[review_queues]]
name = "support"
model = "mock-1"
labels = [
  { name = "verdict", type = "choice", choices = ["good", "bad", "unsure"] },
  { name = "accuracy", type = "number", min = 1, max = 5, required = false },
  { name = "note", type = "text" },
]
"#;

async fn post(h: &Harness, fields: &[(&str, &str)]) -> reqwest::Response {
    common::no_redirects()
        .post(h.url("/ui/review/support"))
        .form(fields)
        .send()
        .await
        .unwrap()
}

fn item_of(page: &str) -> String {
    let at = page.find("data-item=\"").expect("an item on the page") + 11;
    page[at..].split('"').next().unwrap().to_string()
}

/// Three calls, traced, each put in the queue by hand.
async fn seeded() -> (Harness, Vec<String>) {
    let h = Harness::with(Options {
        extra: EXTRA.into(),
        ..Options::default()
    })
    .await;
    let mut ids = Vec::new();
    for i in 0..3 {
        let resp = h
            .chat(&common::chat_body("mock-1", &format!("question {i}")))
            .await;
        assert_eq!(resp.status(), 200);
        ids.push(common::request_id(&resp));
    }
    let start = Instant::now();
    while common::read_traces(&h.store_path).len() < 3 {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "traces not written"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The trace page offers the queue; its form posts to /ui/review with the queue named.
    let trace = h.page(&format!("/ui/traces/{}", ids[0])).await;
    assert!(trace.contains("id=\"add-to-review\""), "{trace}");
    let first = common::no_redirects()
        .post(h.url("/ui/review"))
        .form(&[
            ("action", "add"),
            ("queue", "support"),
            ("reviewer", "ana"),
            ("trace", &ids[0]),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), 303, "{}", first.text().await.unwrap());
    for id in &ids[1..] {
        let resp = post(&h, &[("action", "add"), ("reviewer", "ana"), ("trace", id)]).await;
        assert_eq!(resp.status(), 303, "{}", resp.text().await.unwrap());
    }
    (h, ids)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reviewer_labels_items_one_at_a_time() {
    let (h, ids) = seeded().await;
    let index = h.page("/ui/review").await;
    assert!(index.contains("href=\"/ui/review/support\""), "{index}");
    assert!(index.contains("model=mock-1"), "{index}");
    assert!(index.contains("humans agree with the judge"), "{index}");
    assert!(h.page("/").await.contains("href=\"/ui/review\""));
    let ask = h.page("/ui/review/support").await;
    assert!(ask.contains("name=\"reviewer\""), "{ask}");

    let first = h.page("/ui/review/support?reviewer=ana").await;
    assert!(
        first.contains("data-done-today=\"0\" data-left=\"3\""),
        "{first}"
    );
    assert!(
        first.contains(&format!("/ui/traces/{}", ids[0])),
        "oldest first: {first}"
    );
    assert!(first.contains("id=\"output\""), "{first}");
    assert!(
        first.contains("name=\"label.verdict\" value=\"bad\""),
        "{first}"
    );
    assert!(first.contains("name=\"correction\""), "{first}");
    let item = item_of(&first);

    // Bo does not get the item Ana holds.
    let bo = h.page("/ui/review/support?reviewer=bo").await;
    assert_ne!(item_of(&bo), item, "{bo}");

    // A bad answer is refused on the same item, what was typed kept.
    let bad = post(
        &h,
        &[
            ("reviewer", "ana"),
            ("item", &item),
            ("label.verdict", "meh"),
            ("label.note", "keep me"),
        ],
    )
    .await;
    assert_eq!(bad.status(), 422);
    let bad = bad.text().await.unwrap();
    assert!(bad.contains("takes one of good, bad, unsure"), "{bad}");
    assert!(bad.contains("keep me"), "{bad}");
    assert_eq!(item_of(&bad), item);

    // A label saves, moves on and is counted; it is a human score on the trace.
    let ok = post(
        &h,
        &[
            ("reviewer", "ana"),
            ("item", &item),
            ("label.verdict", "bad"),
            ("label.accuracy", "2"),
            ("correction", "The right answer"),
        ],
    )
    .await;
    assert_eq!(ok.status(), 303);
    let next = ok.headers()["location"].to_str().unwrap().to_string();
    assert!(
        next.starts_with("/ui/review/support?reviewer=ana&saved="),
        "{next}"
    );
    let second = h.page(&next).await;
    assert!(
        second.contains("data-done-today=\"1\" data-left=\"2\""),
        "{second}"
    );
    assert_ne!(item_of(&second), item);
    let trace = h.page(&format!("/ui/traces/{}", ids[0])).await;
    assert!(trace.contains("<td>human</td>"), "{trace}");
    assert!(trace.contains("id=\"review-labels\""), "{trace}");
    assert!(trace.contains("The right answer"), "{trace}");
    assert!(
        !trace.contains("id=\"add-to-review\""),
        "already in the only queue: {trace}"
    );

    // Skipping passes the item over for Ana only: with Bo holding the other one, nothing
    // is left for her; Bo gets the skipped item once he is done with his.
    let second_item = item_of(&second);
    let skip = post(
        &h,
        &[
            ("reviewer", "ana"),
            ("item", &second_item),
            ("action", "skip"),
        ],
    )
    .await;
    assert_eq!(skip.status(), 303);
    let none = h.page("/ui/review/support?reviewer=ana").await;
    assert!(none.contains("id=\"nothing-left\""), "{none}");
    let bo_item = item_of(&bo);
    let done = post(
        &h,
        &[
            ("reviewer", "bo"),
            ("item", &bo_item),
            ("label.verdict", "good"),
        ],
    )
    .await;
    assert_eq!(done.status(), 303);
    let bo_next = h.page("/ui/review/support?reviewer=bo").await;
    assert_eq!(item_of(&bo_next), second_item);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adds_are_audited_and_bad_requests_refused() {
    let (h, ids) = seeded().await;
    let conn = keel_store::Store::open(&h.store_path)
        .unwrap()
        .reader()
        .unwrap();
    let added: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM audit_events WHERE action = 'review.add'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(added, 3);
    // Adding again is a no-op, not a second audit event.
    post(
        &h,
        &[("action", "add"), ("reviewer", "ana"), ("trace", &ids[0])],
    )
    .await;
    let again: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM audit_events WHERE action = 'review.add'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(again, 3);

    let unknown = post(
        &h,
        &[("action", "add"), ("reviewer", "ana"), ("trace", "nope")],
    )
    .await;
    assert_eq!(unknown.status(), 404);
    assert_eq!(h.get("/ui/review/nope?reviewer=ana").await.status(), 404);
    let nameless = post(&h, &[("item", "1"), ("label.verdict", "good")]).await;
    assert_eq!(nameless.status(), 400);
    let cross = common::no_redirects()
        .post(h.url("/ui/review/support"))
        .header("origin", "https://evil.example")
        .form(&[
            ("reviewer", "ana"),
            ("item", "1"),
            ("label.verdict", "good"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(cross.status(), 403);
}
