#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Properties over random text: scanning never panics and reports valid spans; redaction
//! followed by restoration is the identity, whole or streamed in random chunks.

use keel_guardrails::{injection, scan, Kind, Redaction, StreamRestorer, TermMatcher};
use proptest::prelude::*;

const EMAILS: &[&str] = &[
    "ann@example.com",
    "bob.smith+tag@mail.example.org",
    "c_d@sub.example.co.uk",
];
const CARDS: &[&str] = &[
    "4111 1111 1111 1111",
    "5500-0055-5555-5559",
    "378282246310005",
];

fn filler() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9 .,:;@()\\[\\]_+-]{0,40}",
        "\\PC{0,20}",
        Just(String::from(" [EMAIL_1] ")),
        Just(String::from("[CARD_")),
    ]
}

fn text_with_pii() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        (
            filler(),
            prop::sample::select(EMAILS),
            filler(),
            prop::sample::select(CARDS),
        ),
        0..4,
    )
    .prop_map(|parts| {
        parts
            .into_iter()
            .map(|(a, e, b, c)| format!("{a} {e} {b} {c} "))
            .collect::<String>()
    })
}

proptest! {
    #[test]
    fn scan_never_panics_and_spans_are_char_boundaries(text in "\\PC{0,200}") {
        let findings = scan(&text, Kind::ALL);
        let mut last_end = 0;
        for f in &findings {
            prop_assert!(f.start < f.end && f.end <= text.len());
            prop_assert!(text.is_char_boundary(f.start) && text.is_char_boundary(f.end));
            prop_assert!(f.start >= last_end, "overlap or unsorted: {findings:?}");
            last_end = f.end;
        }
        let report = injection(&text);
        prop_assert!((0.0..=1.0).contains(&report.score));
        for e in &report.evidence {
            prop_assert!(e.start <= e.end && e.end <= text.len());
            prop_assert!(text.is_char_boundary(e.start) && text.is_char_boundary(e.end));
        }
    }

    #[test]
    fn digit_heavy_text_never_panics(text in "[0-9 .()+:-]{0,120}") {
        for f in scan(&text, Kind::ALL) {
            prop_assert!(f.end <= text.len());
        }
    }

    #[test]
    fn term_matches_are_valid_spans(text in "\\PC{0,120}") {
        let m = TermMatcher::new(&["banned".into(), "bad word".into()], &["x+y".into()]).unwrap();
        for hit in m.find(&text) {
            prop_assert!(hit.start <= hit.end && hit.end <= text.len());
            prop_assert!(text.is_char_boundary(hit.start) && text.is_char_boundary(hit.end));
        }
    }

    #[test]
    fn redact_then_restore_is_identity(text in text_with_pii(), cuts in proptest::collection::vec(0usize..400, 0..6)) {
        let mut r = Redaction::new();
        let redacted = r.redact(&text, &scan(&text, Kind::ALL)).into_owned();
        for e in EMAILS.iter().chain(CARDS) {
            if text.contains(e) {
                prop_assert!(!redacted.contains(e), "{e} left in {redacted}");
            }
        }
        prop_assert_eq!(r.restore(&redacted), text.as_str());

        let mut points: Vec<usize> = cuts.into_iter().map(|c| c % (redacted.len() + 1)).filter(|&c| redacted.is_char_boundary(c)).collect();
        points.sort_unstable();
        let mut stream = StreamRestorer::new(&r);
        let mut out = String::new();
        let mut from = 0;
        for p in points {
            out += &stream.push(&redacted[from..p]);
            from = p;
        }
        out += &stream.push(&redacted[from..]);
        out += &stream.finish();
        prop_assert_eq!(out, text);
    }
}
