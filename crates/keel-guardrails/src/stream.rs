//! Restoring placeholders in a streamed answer. A placeholder can be split across chunks
//! (`"… [EMA"` + `"IL_1] …"`), so the restorer holds back a tail that could still grow into
//! an issued placeholder and emits everything before it. The concatenation of every `push`
//! and the final `finish` equals `Redaction::restore` of the whole answer.

use crate::Redaction;

/// Streaming counterpart of [`Redaction::restore`].
#[derive(Debug)]
pub struct StreamRestorer<'r> {
    redaction: &'r Redaction,
    pending: String,
}

impl<'r> StreamRestorer<'r> {
    pub fn new(redaction: &'r Redaction) -> Self {
        Self {
            redaction,
            pending: String::new(),
        }
    }

    /// Feed the next chunk; returns the text that is safe to emit now.
    pub fn push(&mut self, chunk: &str) -> String {
        self.pending.push_str(chunk);
        let hold_from = self
            .pending
            .rfind('[')
            .filter(|&i| self.redaction.is_placeholder_prefix(&self.pending[i..]))
            .unwrap_or(self.pending.len());
        let held = self.pending.split_off(hold_from);
        let ready = std::mem::replace(&mut self.pending, held);
        self.redaction.restore(&ready).into_owned()
    }

    /// The stream ended: flush whatever was held back.
    pub fn finish(self) -> String {
        self.redaction.restore(&self.pending).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{scan, Kind};

    #[test]
    fn every_split_point_restores_like_the_whole() {
        let mut r = Redaction::new();
        let original = "ann@example.com and ben@example.org, card 4111 1111 1111 1111.";
        let red = r.redact(original, &scan(original, Kind::ALL)).into_owned();
        let answer = format!("Sure: {red} [not] [EMAIL_ [EMAIL_1]");
        let whole = r.restore(&answer).into_owned();
        for a in 0..=answer.len() {
            for b in a..=answer.len() {
                if !answer.is_char_boundary(a) || !answer.is_char_boundary(b) {
                    continue;
                }
                let mut s = StreamRestorer::new(&r);
                let mut got = s.push(&answer[..a]);
                got += &s.push(&answer[a..b]);
                got += &s.push(&answer[b..]);
                got += &s.finish();
                assert_eq!(got, whole, "split at {a},{b}");
            }
        }
    }

    #[test]
    fn byte_by_byte_holds_only_possible_prefixes() {
        let mut r = Redaction::new();
        r.placeholder_for(Kind::Email, "x@example.com");
        let mut s = StreamRestorer::new(&r);
        assert_eq!(s.push("hi [EM"), "hi ");
        assert_eq!(s.push("AIL_1"), "");
        assert_eq!(s.push("] [Q"), "x@example.com [Q");
        assert_eq!(s.finish(), "");
    }
}
