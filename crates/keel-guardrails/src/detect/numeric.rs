//! Numbers that are personal data: phone numbers, payment cards, US SSNs and IPv4 addresses.
//!
//! One pass of a cheap regex finds "digit runs" (digits joined by single spaces, dashes, dots
//! and parentheses, with an optional leading `+`/`(`); only those short slices are then
//! examined by the per-kind patterns and validated:
//! - card: 13–19 digits, consistent separators in groups of 4 (or Amex 4-6-5 / 4-6-4), a known
//!   IIN prefix and a passing **Luhn** check;
//! - SSN: `AAA-GG-SSSS` with area ≠ 000/666/9xx, group ≠ 00, serial ≠ 0000; nine bare digits only
//!   right after "SSN"/"social security (number)";
//! - IPv4: four dotted octets ≤ 255 that are not part of a longer dotted number (`1.2.3.4.5`);
//! - phone: `+` and 8–15 digits; or `(area)` and 10 digits; or NANP 3-3-4 with one separator;
//!   or a national number with a trunk `0` and 10–11 digits in groups. Dates (`2024-01-15`),
//!   versions, times and long bare digit runs (order ids) are not phones.

use super::{byte_at, byte_before, Finding};
use crate::Kind;
use regex::Regex;
use std::sync::LazyLock;

fn compile(pattern: &str) -> Regex {
    Regex::new(pattern).unwrap_or_else(|e| unreachable!("static numeric regex: {e}"))
}

static SSN: LazyLock<Regex> = LazyLock::new(|| compile(r"[0-9]{3}-[0-9]{2}-[0-9]{4}"));
static SSN_IN_CONTEXT: LazyLock<Regex> = LazyLock::new(|| {
    compile(r"(?i)\b(?:ssn|social security(?: number| no\.?| #)?)\s*(?:is|:|#|=|-)?\s*([0-9]{9})\b")
});
static IPV4: LazyLock<Regex> = LazyLock::new(|| compile(r"[0-9]{1,3}(?:\.[0-9]{1,3}){3}"));
// Unbounded: a run longer than a card ("0000 4111 1111 1111 1111") holds the whole run,
// and `card_within` finds the card in it. (Bounded at 19 digits, a number before the card
// took its first digits and the card was missed.)
static CARD: LazyLock<Regex> = LazyLock::new(|| compile(r"[0-9](?:[ \-]?[0-9]){12,}"));
static PHONE: LazyLock<Regex> = LazyLock::new(|| {
    compile(
        r"\+?(?:[0-9]{1,4}[ .\-]?)?(?:\([0-9]{1,5}\)[ .\-]?)?[0-9]{1,15}(?:[ .\-][0-9]{1,15}){0,6}",
    )
});

pub(super) fn find(text: &str, kinds: &[Kind], out: &mut Vec<Finding>) {
    if !text.bytes().any(|b| b.is_ascii_digit()) {
        return;
    }
    let wants = |k: Kind| kinds.contains(&k);
    for (base, end) in DigitRuns::new(text) {
        let slice = &text[base..end];
        if slice.len() < 7 {
            continue; // shorter than any kind here (1.2.3.4 is 7 bytes)
        }
        let digits = slice.bytes().filter(u8::is_ascii_digit).count();
        let dots = slice.bytes().filter(|&b| b == b'.').count();
        let mut push = |kind, s: usize, e: usize| {
            out.push(Finding {
                kind,
                start: base + s,
                end: base + e,
            })
        };
        if wants(Kind::UsSsn) && digits >= 9 && slice.contains('-') {
            for m in SSN.find_iter(slice) {
                if isolated(text, base + m.start(), base + m.end()) && valid_ssn(m.as_str()) {
                    push(Kind::UsSsn, m.start(), m.end());
                }
            }
        }
        if wants(Kind::IpAddress) && dots >= 3 {
            for m in IPV4.find_iter(slice) {
                if isolated(text, base + m.start(), base + m.end()) && valid_ipv4(m.as_str()) {
                    push(Kind::IpAddress, m.start(), m.end());
                }
            }
        }
        if wants(Kind::CreditCard) && digits >= 13 {
            for m in CARD.find_iter(slice) {
                if let Some((s, e)) = card_within(text, base + m.start(), m.as_str()) {
                    push(Kind::CreditCard, m.start() + s, m.start() + e);
                }
            }
        }
        if wants(Kind::Phone) && digits >= 8 {
            for m in PHONE.find_iter(slice) {
                if isolated(text, base + m.start(), base + m.end()) && looks_like_phone(m.as_str())
                {
                    push(Kind::Phone, m.start(), m.end());
                }
            }
        }
    }
    if wants(Kind::UsSsn) {
        for caps in SSN_IN_CONTEXT.captures_iter(text) {
            if let Some(m) = caps.get(1) {
                let d = m.as_str();
                let dashed = format!("{}-{}-{}", &d[..3], &d[3..5], &d[5..]);
                if valid_ssn(&dashed) {
                    out.push(Finding {
                        kind: Kind::UsSsn,
                        start: m.start(),
                        end: m.end(),
                    });
                }
            }
        }
    }
}

/// Byte spans of "digit runs": an optional `+` or `(`, a digit, then more digits each
/// reached over at most two of ` .-()`. A hand-rolled scan: this runs over every request.
struct DigitRuns<'t> {
    bytes: &'t [u8],
    at: usize,
}

impl<'t> DigitRuns<'t> {
    fn new(text: &'t str) -> Self {
        DigitRuns {
            bytes: text.as_bytes(),
            at: 0,
        }
    }
}

impl Iterator for DigitRuns<'_> {
    type Item = (usize, usize);

    fn next(&mut self) -> Option<(usize, usize)> {
        let b = self.bytes;
        let first = self.at + b.get(self.at..)?.iter().position(u8::is_ascii_digit)?;
        let start = if first > 0 && matches!(b[first - 1], b'+' | b'(') {
            first - 1
        } else {
            first
        };
        let is_sep = |x: u8| matches!(x, b' ' | b'.' | b'-' | b'(' | b')');
        let mut end = first + 1;
        loop {
            while end < b.len() && b[end].is_ascii_digit() {
                end += 1;
            }
            let mut next = end;
            while next < b.len() && next - end < 2 && is_sep(b[next]) {
                next += 1;
            }
            if next > end && next < b.len() && b[next].is_ascii_digit() {
                end = next;
            } else {
                break;
            }
        }
        self.at = end;
        Some((start, end))
    }
}

/// Not glued to a longer token: no letter/digit on either side and no `digit.`/`.digit`.
fn isolated(text: &str, start: usize, end: usize) -> bool {
    let glued_before = byte_before(text, start, |b| b.is_ascii_alphanumeric() || b == b'_')
        || (byte_before(text, start, |b| b == b'.' || b == b'-')
            && start >= 2
            && byte_before(text, start - 1, |b| b.is_ascii_digit()));
    let glued_after = byte_at(text, end, |b| b.is_ascii_alphanumeric() || b == b'_')
        || (byte_at(text, end, |b| b == b'.' || b == b'-')
            && byte_at(text, end + 1, |b| b.is_ascii_digit()));
    !glued_before && !glued_after
}

fn digits_of(s: &str) -> impl Iterator<Item = u32> + '_ {
    s.bytes()
        .filter(u8::is_ascii_digit)
        .map(|b| u32::from(b - b'0'))
}

fn digit_groups(s: &str) -> Vec<usize> {
    s.split(|c: char| !c.is_ascii_digit())
        .filter(|g| !g.is_empty())
        .map(str::len)
        .collect()
}

pub(crate) fn valid_ssn(s: &str) -> bool {
    let (area, group, serial) = match (s.get(0..3), s.get(4..6), s.get(7..11)) {
        (Some(a), Some(g), Some(r)) => (a, g, r),
        _ => return false,
    };
    area != "000" && area != "666" && !area.starts_with('9') && group != "00" && serial != "0000"
}

fn valid_ipv4(s: &str) -> bool {
    s.split('.')
        .all(|o| o.parse::<u16>().is_ok_and(|v| v <= 255))
}

/// The Luhn (mod 10) check used by every card network.
pub(crate) fn luhn(digits: &[u32]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            if i % 2 == 1 {
                if d * 2 > 9 {
                    d * 2 - 9
                } else {
                    d * 2
                }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// Issuer prefixes (IIN) of the major networks.
fn known_iin(d: &[u32]) -> bool {
    let prefix = |n: usize| d.iter().take(n).fold(0u32, |acc, &x| acc * 10 + x);
    let (p1, p2, p3, p4) = (prefix(1), prefix(2), prefix(3), prefix(4));
    p1 == 4                                  // Visa
        || (51..=55).contains(&p2)           // Mastercard
        || (2221..=2720).contains(&p4)       // Mastercard 2-series
        || p2 == 34 || p2 == 37              // Amex
        || p4 == 6011 || p2 == 65 || (644..=649).contains(&p3) // Discover
        || (300..=305).contains(&p3) || p2 == 36 || p2 == 38 || p2 == 39 // Diners
        || (3528..=3589).contains(&p4)       // JCB
        || p2 == 62                          // UnionPay
        || p2 == 50 || (56..=58).contains(&p2) || p2 == 67 // Maestro
}

fn valid_card(s: &str) -> bool {
    let digits: Vec<u32> = digits_of(s).collect();
    if !(13..=19).contains(&digits.len()) || !known_iin(&digits) || !luhn(&digits) {
        return false;
    }
    let has_space = s.contains(' ');
    let has_dash = s.contains('-');
    if has_space && has_dash {
        return false;
    }
    if !has_space && !has_dash {
        return true;
    }
    let groups = digit_groups(s);
    let fours = groups
        .split_last()
        .is_some_and(|(last, rest)| rest.iter().all(|&g| g == 4) && (1..=4).contains(last));
    fours || groups == [4, 6, 5] || groups == [4, 6, 4]
}

/// The most bytes a card spans: 19 digits with a separator between each.
const MAX_CARD_SPAN: usize = 19 + 18;

/// The run may carry a neighbouring number ("4111 1111 1111 1111 12 26", "qty 2 4111 …",
/// "0000 4111 1111 1111 1111"): the longest sub-span that starts and ends on digit-group
/// boundaries and validates. Only spans a card can have are tried, so a long run of
/// digits costs linear time.
fn card_within(text: &str, at: usize, run: &str) -> Option<(usize, usize)> {
    let b = run.as_bytes();
    let starts = (0..b.len()).filter(|&i| i == 0 || !b[i - 1].is_ascii_digit());
    let ends: Vec<usize> = (1..=b.len())
        .rev()
        .filter(|&e| e == b.len() || !b[e].is_ascii_digit())
        .collect();
    let mut best: Option<(usize, usize)> = None;
    for s in starts {
        for &e in ends.iter().filter(|&&e| e > s && e - s <= MAX_CARD_SPAN) {
            let longer = best.is_none_or(|(bs, be)| e - s > be - bs);
            if longer && isolated(text, at + s, at + e) && valid_card(&run[s..e]) {
                best = Some((s, e));
            }
        }
    }
    best
}

fn looks_like_phone(s: &str) -> bool {
    let digit_count = digits_of(s).count();
    let groups = digit_groups(s);
    if s.starts_with('+') {
        return (8..=15).contains(&digit_count);
    }
    if s.contains('(') {
        return s.starts_with('(')
            && (digit_count == 10 || (digit_count == 11 && s.starts_with("(0")));
    }
    let separators: Vec<char> = s.chars().filter(|c| !c.is_ascii_digit()).collect();
    let one_separator = separators.windows(2).all(|w| w[0] == w[1]);
    if groups == [3, 3, 4] && one_separator {
        return !s.starts_with('0') && !s.starts_with('1');
    }
    let national = s.starts_with('0') && !s.starts_with("00");
    national
        && (10..=11).contains(&digit_count)
        && (2..=4).contains(&groups.len())
        && groups.iter().all(|&g| g >= 2)
        && groups.first().is_some_and(|&g| g <= 5)
        && !s.contains('.')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(text: &str, kind: Kind) -> Vec<&str> {
        let mut out = Vec::new();
        find(text, &[kind], &mut out);
        out.iter()
            .filter(|f| f.kind == kind)
            .map(|f| &text[f.start..f.end])
            .collect()
    }

    #[test]
    fn phones_in_common_formats() {
        for p in [
            "+44 20 7946 0958",
            "+1 (415) 555-2671",
            "+49 30 1234567",
            "020 7946 0958",
            "(415) 555-2671",
            "415-555-2671",
            "415.555.2671",
            "+14155552671",
            "+33 1 42 68 53 00",
        ] {
            let text = format!("call me at {p}, thanks");
            assert_eq!(found(&text, Kind::Phone), [p], "{p}");
        }
    }

    #[test]
    fn phone_near_misses() {
        for t in [
            "released 2024-01-15",
            "version 1.2.3.4",
            "extension 4512",
            "order 1234567890123456",
            "at 12:30:45 today",
            "pi is 3.14159",
            "range 100-200-3000",
            "build 10.0.19045.3803",
        ] {
            assert!(found(t, Kind::Phone).is_empty(), "{t}");
        }
    }

    #[test]
    fn cards_need_luhn_and_known_prefix() {
        for c in [
            "4111 1111 1111 1111",
            "4111-1111-1111-1111",
            "5500005555555559",
            "378282246310005",
            "3782 822463 10005",
            "6011 0009 9013 9424",
            "2221000000000009",
        ] {
            let text = format!("card: {c}.");
            assert_eq!(found(&text, Kind::CreditCard), [c], "{c}");
        }
        assert_eq!(
            found("card 4111 1111 1111 1111 12 26 cvv", Kind::CreditCard),
            ["4111 1111 1111 1111"]
        );
        assert_eq!(
            found("qty 2 4111 1111 1111 1111", Kind::CreditCard),
            ["4111 1111 1111 1111"]
        );
        // A longer number before the card (the run is past 19 digits): still found.
        assert_eq!(
            found(
                " ann@example.com 0000 4111 1111 1111 1111 ",
                Kind::CreditCard
            ),
            ["4111 1111 1111 1111"]
        );
        // A long run of digits is scanned in linear time, and finds nothing here.
        let long = "1234 ".repeat(20_000);
        assert!(found(&long, Kind::CreditCard).is_empty());
        for t in [
            "card: 4111 1111 1111 1112",      // fails Luhn
            "card: 4111 1111 1111 1112 0",    // no valid prefix either
            "id 1234567812345670",            // Luhn ok, no known prefix
            "card 4111 1111-1111 1111",       // mixed separators
            "x 41111111111111111111111",      // too long
            "tracking 4111 11 1111 111111 1", // odd grouping
        ] {
            assert!(found(t, Kind::CreditCard).is_empty(), "{t}");
        }
    }

    #[test]
    fn ssn_ranges() {
        assert_eq!(
            found("ssn 123-45-6789 on file", Kind::UsSsn),
            ["123-45-6789"]
        );
        for t in [
            "000-12-3456",
            "666-12-3456",
            "912-12-3456",
            "123-00-4567",
            "123-45-0000",
            "1123-45-6789",
        ] {
            assert!(found(t, Kind::UsSsn).is_empty(), "{t}");
        }
        assert_eq!(found("My SSN: 123456789", Kind::UsSsn), ["123456789"]);
        assert_eq!(
            found("social security number is 234567890", Kind::UsSsn),
            ["234567890"]
        );
        assert!(found("order 123456789", Kind::UsSsn).is_empty());
        assert!(found("SSN: 666456789", Kind::UsSsn).is_empty());
    }

    #[test]
    fn ipv4_octets_and_boundaries() {
        assert_eq!(
            found("host 192.168.1.20 up", Kind::IpAddress),
            ["192.168.1.20"]
        );
        assert_eq!(found("1.2.3.4", Kind::IpAddress), ["1.2.3.4"]);
        for t in ["256.1.1.1", "v1.2.3.4.5", "1.2.3.4.5", "10.0.0", "a1.2.3.4"] {
            assert!(found(t, Kind::IpAddress).is_empty(), "{t}");
        }
    }

    #[test]
    fn digit_runs_join_separators() {
        let text = "call +1 (415) 555-2671. then 12, and 3. 4 or 5.. 6";
        let runs: Vec<&str> = DigitRuns::new(text).map(|(s, e)| &text[s..e]).collect();
        assert_eq!(runs, ["+1 (415) 555-2671", "12", "3. 4", "5", "6"]);
    }

    #[test]
    fn luhn_known_values() {
        let d = |s: &str| digits_of(s).collect::<Vec<_>>();
        assert!(luhn(&d("79927398713")));
        assert!(!luhn(&d("79927398710")));
    }
}
