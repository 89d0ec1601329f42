//! Email addresses. The regex finds `local@domain.tld` candidates; the checks around it
//! reject what looks like code rather than an address:
//! - `user@localhost` (no dot-separated TLD of letters) is not matched at all;
//! - `foo@bar.baz()` / `x@y.z.method(` — followed by `(`: a method call, not an address;
//! - `git@github.com:org/repo.git` — followed by `:` and a path: an SSH remote, not a mailbox;
//! - `@decorator` has no local part, so it never matches.

use super::{byte_at, byte_before, Finding};
use crate::Kind;
use regex::Regex;
use std::sync::LazyLock;

static EMAIL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"[A-Za-z0-9][A-Za-z0-9._%+\-]*@[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?)*\.[A-Za-z]{2,24}")
        .unwrap_or_else(|e| unreachable!("static email regex: {e}"))
});

pub(super) fn find_emails(text: &str, out: &mut Vec<Finding>) {
    if !text.contains('@') {
        return;
    }
    for m in EMAIL.find_iter(text) {
        let (start, end) = (m.start(), m.end());
        // Part of a longer token: `a@b.com1`, `x.a@b.com` already absorbed by the regex.
        if byte_at(text, end, |b| {
            b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
        }) {
            continue;
        }
        if byte_before(text, start, |b| b == b'@' || b == b'/' || b == b'\\') {
            continue;
        }
        if byte_at(text, end, |b| b == b'(') {
            continue;
        }
        if byte_at(text, end, |b| b == b':') && byte_at(text, end + 1, |b| !b.is_ascii_whitespace())
        {
            continue;
        }
        out.push(Finding {
            kind: Kind::Email,
            start,
            end,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn emails(text: &str) -> Vec<&str> {
        let mut out = Vec::new();
        find_emails(text, &mut out);
        out.iter().map(|f| &text[f.start..f.end]).collect()
    }

    #[test]
    fn finds_standard_addresses() {
        assert_eq!(
            emails("write to jane.doe@example.com today"),
            ["jane.doe@example.com"]
        );
        assert_eq!(
            emails("<bob+billing@mail.eu.example.co.uk>"),
            ["bob+billing@mail.eu.example.co.uk"]
        );
        assert_eq!(
            emails("A_B-c@sub-domain.example.io."),
            ["A_B-c@sub-domain.example.io"]
        );
        assert_eq!(emails("email: x@y.org: please reply"), ["x@y.org"]);
        assert_eq!(emails("a@b.com, c@d.net"), ["a@b.com", "c@d.net"]);
    }

    #[test]
    fn rejects_code_and_near_misses() {
        assert!(emails("ping user@localhost now").is_empty());
        assert!(emails("call foo@bar.baz() here").is_empty());
        assert!(emails("@decorator\ndef f(): pass").is_empty());
        assert!(emails("git clone git@github.com:org/repo.git").is_empty());
        assert!(emails("version@1.2.3").is_empty());
        assert!(emails("no at sign here.com").is_empty());
        assert!(emails("user@host.c0m").is_empty());
    }
}
