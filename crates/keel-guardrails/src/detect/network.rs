//! IPv6 addresses (IPv4 lives with the other numbers in `numeric`). Candidates are runs of hex
//! digits, colons and dots with at least two colons; each is confirmed with
//! `std::net::Ipv6Addr`'s parser. Rust paths (`std::io`), times (`12:30:45`) and MACs are
//! rejected: a candidate must stand alone and have at least two non-empty groups and five hex digits
//! (so `a::b` is a path, not an address).

use super::{byte_at, byte_before, Finding};
use crate::Kind;
use regex::Regex;
use std::net::Ipv6Addr;
use std::sync::LazyLock;

static IPV6: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"[0-9A-Fa-f]{0,4}:[0-9A-Fa-f:.]*:[0-9A-Fa-f.]*")
        .unwrap_or_else(|e| unreachable!("static ipv6 regex: {e}"))
});

pub(super) fn find_ipv6(text: &str, out: &mut Vec<Finding>) {
    if !text.contains(':') {
        return;
    }
    for m in IPV6.find_iter(text) {
        let (start, end) = (m.start(), m.end());
        let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b':';
        if byte_before(text, start, word) || byte_at(text, end, word) {
            continue;
        }
        let s = m.as_str();
        let groups = s.split(':').filter(|g| !g.is_empty()).count();
        let hex_digits = s.bytes().filter(u8::is_ascii_hexdigit).count();
        if groups < 2 || hex_digits < 5 || s.parse::<Ipv6Addr>().is_err() {
            continue;
        }
        out.push(Finding {
            kind: Kind::IpAddress,
            start,
            end,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v6(text: &str) -> Vec<&str> {
        let mut out = Vec::new();
        find_ipv6(text, &mut out);
        out.iter().map(|f| &text[f.start..f.end]).collect()
    }

    #[test]
    fn finds_ipv6() {
        assert_eq!(
            v6("from 2001:db8::8a2e:370:7334 ok"),
            ["2001:db8::8a2e:370:7334"]
        );
        assert_eq!(v6("[fe80::1]:8080"), ["fe80::1"]);
        assert_eq!(
            v6("2001:0db8:85a3:0000:0000:8a2e:0370:7334"),
            ["2001:0db8:85a3:0000:0000:8a2e:0370:7334"]
        );
        assert_eq!(v6("::ffff:192.0.2.128"), ["::ffff:192.0.2.128"]);
    }

    #[test]
    fn rejects_paths_times_and_macs() {
        for t in [
            "use std::io::Read;",
            "at 12:30:45",
            "mac 00:1a:2b:3c:4d:5e",
            "a::b",
            "dead::beef::1",
            "::",
        ] {
            assert!(v6(t).is_empty(), "{t}");
        }
    }
}
