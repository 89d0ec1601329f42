//! Reversible redaction with typed, numbered placeholders (`[EMAIL_1]`, `[CARD_2]`).
//!
//! One [`Redaction`] is shared by every message of a request, so the same original value
//! always gets the same placeholder and a conversation stays coherent for the model; the
//! model's answer can then be restored (whole with [`Redaction::restore`], or chunk by chunk
//! with [`crate::StreamRestorer`]). Placeholders never contain `[`, so a restore scan that
//! meets a `[` simply looks up the bracketed token: unknown tokens are left untouched.
//! Placeholder-shaped tokens already present in a redacted text are never issued, so a user
//! who types `[EMAIL_1]` gets it back verbatim.

use crate::{Finding, Kind};
use std::borrow::Cow;
use std::collections::HashMap;

/// The longest placeholder we ever produce: `[` + longest tag + `_` + u32 digits + `]`.
pub(crate) const MAX_PLACEHOLDER_LEN: usize = 1 + 12 + 1 + 10 + 1;

/// Placeholders issued for one request, both ways, with a counter per placeholder tag.
#[derive(Debug, Default, Clone)]
pub struct Redaction {
    by_placeholder: HashMap<String, String>,
    by_original: HashMap<String, String>,
    counters: HashMap<&'static str, u32>,
}

impl Redaction {
    pub fn new() -> Self {
        Self::default()
    }

    /// Replace every finding in `text`; returns the new text (`Cow::Borrowed` when nothing
    /// was found). `findings` must come from scanning this `text` (sorted, non-overlapping);
    /// findings that are out of range, overlap or split a character are skipped.
    pub fn redact<'a>(&mut self, text: &'a str, findings: &[Finding]) -> Cow<'a, str> {
        if findings.is_empty() {
            return Cow::Borrowed(text);
        }
        self.reserve_literal_placeholders(text);
        let mut out = String::with_capacity(text.len());
        let mut copied_to = 0;
        for f in findings {
            if f.start < copied_to || f.start >= f.end {
                continue;
            }
            let (Some(before), Some(original)) =
                (text.get(copied_to..f.start), text.get(f.start..f.end))
            else {
                continue;
            };
            out.push_str(before);
            out.push_str(self.placeholder_for(f.kind, original));
            copied_to = f.end;
        }
        if copied_to == 0 {
            return Cow::Borrowed(text);
        }
        out.push_str(text.get(copied_to..).unwrap_or(""));
        Cow::Owned(out)
    }

    /// Scan `text` with the detectors `kinds` and replace what they find (what a policy's
    /// `redact` check does, for text outside a request: eval cases taken from traces).
    /// `Cow::Borrowed` when nothing was found or `kinds` is empty.
    pub fn redact_kinds<'a>(&mut self, text: &'a str, kinds: &[Kind]) -> Cow<'a, str> {
        if kinds.is_empty() {
            return Cow::Borrowed(text);
        }
        let findings = crate::scan(text, kinds);
        self.redact(text, &findings)
    }

    /// A token shaped like one of our placeholders that the user wrote themselves
    /// (`"see [EMAIL_1]"`) must never be issued, or restoring would replace the user's own
    /// text: bump the counter past it. Tokens already issued by us are left alone.
    fn reserve_literal_placeholders(&mut self, text: &str) {
        if !text.contains('[') {
            return;
        }
        for (open, _) in text.match_indices('[') {
            let rest = &text[open + 1..];
            let Some(close) = rest
                .get(..floor_char_boundary(rest, MAX_PLACEHOLDER_LEN))
                .and_then(|w| w.find(']'))
            else {
                continue;
            };
            let token = &text[open..open + close + 2];
            let Some((tag, n)) = rest[..close].rsplit_once('_') else {
                continue;
            };
            let Ok(n) = n.parse::<u32>() else { continue };
            if self.by_placeholder.contains_key(token) {
                continue;
            }
            if let Some(kind) = Kind::ALL.iter().find(|k| k.placeholder_tag() == tag) {
                let counter = self.counters.entry(kind.placeholder_tag()).or_insert(0);
                *counter = (*counter).max(n);
            }
        }
    }

    /// The placeholder for `original`, issuing the next number for its kind's tag if new.
    pub fn placeholder_for(&mut self, kind: Kind, original: &str) -> &str {
        if !self.by_original.contains_key(original) {
            let tag = kind.placeholder_tag();
            let n = self.counters.entry(tag).or_insert(0);
            *n += 1;
            let placeholder = format!("[{tag}_{n}]");
            self.by_placeholder
                .insert(placeholder.clone(), original.to_owned());
            self.by_original.insert(original.to_owned(), placeholder);
        }
        self.by_original.get(original).map_or("", String::as_str)
    }

    /// The original behind a placeholder such as `[EMAIL_1]`.
    pub fn original(&self, placeholder: &str) -> Option<&str> {
        self.by_placeholder.get(placeholder).map(String::as_str)
    }

    /// Put the originals back in `text` (the model's answer). Placeholders may appear in any
    /// order and any number of times; tokens that look like placeholders but were never
    /// issued are left as they are.
    pub fn restore<'a>(&self, text: &'a str) -> Cow<'a, str> {
        if self.by_placeholder.is_empty() || !text.contains('[') {
            return Cow::Borrowed(text);
        }
        let mut out: Option<String> = None;
        let mut copied_to = 0;
        let mut search_from = 0;
        while let Some(rel) = text.get(search_from..).and_then(|rest| rest.find('[')) {
            let open = search_from + rel;
            search_from = open + 1;
            let window_end = open + floor_char_boundary(&text[open..], MAX_PLACEHOLDER_LEN);
            let Some(window) = text.get(open..window_end) else {
                continue;
            };
            let Some(close) = window.find(']') else {
                continue;
            };
            let candidate = &window[..=close];
            if let Some(original) = self.by_placeholder.get(candidate) {
                let buf = out.get_or_insert_with(|| String::with_capacity(text.len() + 64));
                buf.push_str(&text[copied_to..open]);
                buf.push_str(original);
                copied_to = open + candidate.len();
                search_from = copied_to;
            }
        }
        match out {
            None => Cow::Borrowed(text),
            Some(mut buf) => {
                buf.push_str(&text[copied_to..]);
                Cow::Owned(buf)
            }
        }
    }

    /// True when `tail` (starting with `[`) is a strict prefix of an issued placeholder.
    pub(crate) fn is_placeholder_prefix(&self, tail: &str) -> bool {
        tail.len() < MAX_PLACEHOLDER_LEN
            && self
                .by_placeholder
                .keys()
                .any(|p| p.len() > tail.len() && p.starts_with(tail))
    }

    /// No placeholder issued yet.
    pub fn is_empty(&self) -> bool {
        self.by_placeholder.is_empty()
    }

    /// Number of distinct originals redacted.
    pub fn len(&self) -> usize {
        self.by_placeholder.len()
    }
}

/// The largest char boundary of `s` at or below `at`.
fn floor_char_boundary(s: &str, at: usize) -> usize {
    let mut at = at.min(s.len());
    while !s.is_char_boundary(at) {
        at -= 1;
    }
    at
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scan;

    fn redact_all(r: &mut Redaction, text: &str) -> String {
        let findings = scan(text, Kind::ALL);
        r.redact(text, &findings).into_owned()
    }

    #[test]
    fn redacting_with_kinds_touches_only_those_kinds() {
        let mut r = Redaction::new();
        let text = "mail ana@example.com or call +1 415 555 0100";
        let only_email = r.redact_kinds(text, &[Kind::Email]).into_owned();
        assert!(
            only_email.contains("[EMAIL_1]") && only_email.contains("415 555 0100"),
            "{only_email}"
        );
        assert_eq!(
            r.redact_kinds("again ana@example.com", &[Kind::Email]),
            "again [EMAIL_1]"
        );
        assert!(matches!(r.redact_kinds(text, &[]), Cow::Borrowed(_)));
        assert!(matches!(
            r.redact_kinds("nothing here", &[Kind::Email]),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn typed_numbered_placeholders_round_trip() {
        let mut r = Redaction::new();
        let text = "Mail ann@example.com or bob@example.org, card 4111 1111 1111 1111, again ann@example.com";
        let red = redact_all(&mut r, text);
        assert_eq!(
            red,
            "Mail [EMAIL_1] or [EMAIL_2], card [CARD_1], again [EMAIL_1]"
        );
        assert_eq!(r.len(), 3);
        assert_eq!(r.restore(&red), text);
    }

    #[test]
    fn same_value_same_placeholder_across_messages() {
        let mut r = Redaction::new();
        let a = redact_all(&mut r, "I am ann@example.com");
        let b = redact_all(&mut r, "cc carl@example.com and ann@example.com");
        assert_eq!(a, "I am [EMAIL_1]");
        assert_eq!(b, "cc [EMAIL_2] and [EMAIL_1]");
    }

    #[test]
    fn restore_in_any_order_and_leaves_unknown_tokens() {
        let mut r = Redaction::new();
        redact_all(
            &mut r,
            "a@example.com then +44 20 7946 0958 then b@example.com",
        );
        let answer = "[PHONE_1] belongs to [EMAIL_2]; [EMAIL_1] wrote [EMAIL_9] and [x] [EMAIL_1";
        assert_eq!(
            r.restore(answer),
            "+44 20 7946 0958 belongs to b@example.com; a@example.com wrote [EMAIL_9] and [x] [EMAIL_1"
        );
        assert!(matches!(r.restore("nothing here"), Cow::Borrowed(_)));
    }

    #[test]
    fn literal_placeholder_in_input_is_never_issued() {
        let mut r = Redaction::new();
        let text = "ann@example.com wrote [EMAIL_1] and [EMAIL_x]";
        let red = redact_all(&mut r, text);
        assert_eq!(red, "[EMAIL_2] wrote [EMAIL_1] and [EMAIL_x]");
        assert_eq!(r.restore(&red), text);
        // Multi-byte text right after the token must not hide it.
        let text = "[CARD_1]éééééééééééééééééééé 4111 1111 1111 1111";
        let red = redact_all(&mut r, text);
        assert_eq!(red, "[CARD_1]éééééééééééééééééééé [CARD_2]");
        assert_eq!(r.restore(&red), text);
    }

    #[test]
    fn no_findings_borrows() {
        let mut r = Redaction::new();
        assert!(matches!(r.redact("plain", &[]), Cow::Borrowed(_)));
        assert!(r.is_empty());
        let bogus = [Finding {
            kind: Kind::Email,
            start: 3,
            end: 99,
        }];
        assert!(matches!(r.redact("plain", &bogus), Cow::Borrowed(_)));
    }

    #[test]
    fn openai_and_anthropic_share_the_api_key_counter() {
        let mut r = Redaction::new();
        assert_eq!(r.placeholder_for(Kind::OpenaiKey, "sk-1"), "[API_KEY_1]");
        assert_eq!(
            r.placeholder_for(Kind::AnthropicKey, "sk-ant-2"),
            "[API_KEY_2]"
        );
        assert_eq!(r.original("[API_KEY_2]"), Some("sk-ant-2"));
    }
}
