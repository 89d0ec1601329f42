//! IBANs: two-letter country code, two check digits and the BBAN, optionally grouped by four
//! with single spaces. A candidate counts only when its country is in the length table, it has
//! exactly that country's length, and the ISO 13616 **mod-97** check passes; a typo in the
//! check digits is therefore not a finding. Lower-case IBANs are not matched.

use super::{byte_at, byte_before, Finding};
use crate::Kind;
use regex::Regex;
use std::sync::LazyLock;

static IBAN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]){10,30}")
        .unwrap_or_else(|e| unreachable!("static iban regex: {e}"))
});

/// IBAN length per country (ISO 13616 registry), for the countries we check.
fn iban_length(country: &str) -> Option<usize> {
    Some(match country {
        "AD" => 24,
        "AE" => 23,
        "AT" => 20,
        "BA" => 20,
        "BE" => 16,
        "BG" => 22,
        "BH" => 22,
        "BR" => 29,
        "CH" => 21,
        "CY" => 28,
        "CZ" => 24,
        "DE" => 22,
        "DK" => 18,
        "EE" => 20,
        "ES" => 24,
        "FI" => 18,
        "FO" => 18,
        "FR" => 27,
        "GB" => 22,
        "GI" => 23,
        "GL" => 18,
        "GR" => 27,
        "HR" => 21,
        "HU" => 28,
        "IE" => 22,
        "IL" => 23,
        "IS" => 26,
        "IT" => 27,
        "KW" => 30,
        "KZ" => 20,
        "LB" => 28,
        "LI" => 21,
        "LT" => 20,
        "LU" => 20,
        "LV" => 21,
        "MC" => 27,
        "ME" => 22,
        "MK" => 19,
        "MT" => 31,
        "MU" => 30,
        "NL" => 18,
        "NO" => 15,
        "PK" => 24,
        "PL" => 28,
        "PT" => 25,
        "QA" => 29,
        "RO" => 24,
        "RS" => 22,
        "SA" => 24,
        "SE" => 24,
        "SI" => 19,
        "SK" => 24,
        "SM" => 27,
        "TN" => 24,
        "TR" => 26,
        "UA" => 29,
        "VA" => 22,
        "XK" => 20,
        _ => return None,
    })
}

pub(super) fn find_ibans(text: &str, out: &mut Vec<Finding>) {
    for m in IBAN.find_iter(text) {
        let start = m.start();
        if byte_before(text, start, |b| b.is_ascii_alphanumeric()) {
            continue;
        }
        let Some(want) = m.as_str().get(0..2).and_then(iban_length) else {
            continue;
        };
        // Take exactly `want` alphanumerics; the regex may have run into a following word.
        let mut taken = 0;
        let mut end = start;
        for (i, b) in m.as_str().bytes().enumerate() {
            if b != b' ' {
                taken += 1;
            }
            if taken == want {
                end = start + i + 1;
                break;
            }
        }
        if taken < want || byte_at(text, end, |b| b.is_ascii_alphanumeric()) {
            continue;
        }
        if mod97_valid(&text[start..end]) {
            out.push(Finding {
                kind: Kind::Iban,
                start,
                end,
            });
        }
    }
}

/// ISO 13616: move the first four characters to the end, letters to 10..35, value mod 97 == 1.
pub(crate) fn mod97_valid(iban: &str) -> bool {
    let compact: Vec<u8> = iban.bytes().filter(|b| *b != b' ').collect();
    if compact.len() < 5 {
        return false;
    }
    let rotated = compact[4..].iter().chain(&compact[..4]);
    let mut rem: u32 = 0;
    for &b in rotated {
        rem = match b {
            b'0'..=b'9' => (rem * 10 + u32::from(b - b'0')) % 97,
            b'A'..=b'Z' => (rem * 100 + u32::from(b - b'A') + 10) % 97,
            _ => return false,
        };
    }
    rem == 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ibans(text: &str) -> Vec<&str> {
        let mut out = Vec::new();
        find_ibans(text, &mut out);
        out.iter().map(|f| &text[f.start..f.end]).collect()
    }

    #[test]
    fn valid_ibans_with_and_without_spaces() {
        for i in [
            "DE89370400440532013000",
            "DE89 3704 0044 0532 0130 00",
            "GB29 NWBK 6016 1331 9268 19",
            "FR14 2004 1010 0505 0001 3M02 606",
            "NL91ABNA0417164300",
            "BE68 5390 0754 7034",
            "CH93 0076 2011 6238 5295 7",
            "ES91 2100 0418 4502 0005 1332",
            "IT60 X054 2811 1010 0000 0123 456",
            "AT61 1904 3002 3457 3201",
            "PL61 1090 1014 0000 0712 1981 2874",
        ] {
            let text = format!("pay to {i} THEN done");
            assert_eq!(ibans(&text), [i], "{i}");
        }
    }

    #[test]
    fn wrong_check_digit_or_length_is_not_an_iban() {
        for t in [
            "DE88 3704 0044 0532 0130 00", // check digit
            "DE89 3704 0044 0532 0130 0",  // too short
            "XX89 3704 0044 0532 0130 00", // unknown country
            "GB29NWBK6016133192681",       // too short for GB
            "ID12345678901234567890",      // not a country we check
        ] {
            assert!(ibans(t).is_empty(), "{t}");
        }
    }
}
