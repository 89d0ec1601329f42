//! Banned terms and banned regexes, matched on normalised text (see `normalize` for exactly
//! what is folded) and reported at their place in the original text.
//!
//! Terms match whole words only (no letter or digit on either side after normalisation) and
//! are combined into one regex, longest first, so a text is scanned once for all terms.
//! Between a term's words any run of separators matches, or none: "wire transfer" also
//! finds `Wire-Transfer`, `W1RE-TRANSFER`, `wire_transfer` and `wiretransfer`.
//! Regexes run case-insensitively on the normalised text and are not limited to whole words;
//! write them in plain lower-case. Mind the leet fold: `l` reads as `i` (write `ki[li]+`), and
//! the digits 0 1 3 4 5 7 read as letters, so `\d` only ever matches 2, 6, 8 and 9 — banned
//! regexes are for words, not numbers (numbers are `scan`'s job).

use crate::normalize::{fold_pattern, normalize};
use crate::GuardError;
use regex::Regex;
use std::collections::HashMap;

/// One banned term or regex found in a text, at byte offsets of the original text.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TermMatch {
    /// The term as configured, or the regex source for regex matches.
    pub term: String,
    pub start: usize,
    pub end: usize,
}

/// Banned terms and regexes, compiled once.
#[derive(Debug, Clone)]
pub struct TermMatcher {
    terms: Option<Regex>,
    /// Normalised term without separators -> the term as configured.
    term_names: HashMap<String, String>,
    regexes: Vec<(String, Regex)>,
}

impl TermMatcher {
    pub fn new(terms: &[String], regexes: &[String]) -> Result<TermMatcher, GuardError> {
        let mut term_names = HashMap::new();
        let mut folded_terms = Vec::new();
        for term in terms {
            let folded = normalize(term.trim()).text.trim().to_owned();
            if !folded.is_empty() {
                term_names
                    .entry(without_separators(&folded))
                    .or_insert_with(|| term.clone());
                folded_terms.push(folded);
            }
        }
        folded_terms.sort_by(|a, b| b.len().cmp(&a.len()).then(a.cmp(b)));
        folded_terms.dedup();
        let alternatives = folded_terms;
        let terms_regex = if alternatives.is_empty() {
            None
        } else {
            let body: Vec<String> = alternatives
                .iter()
                .map(|t| {
                    t.split(' ')
                        .map(regex::escape)
                        .collect::<Vec<_>>()
                        .join(SEPARATORS)
                })
                .collect();
            let pattern = format!("(?:{})", body.join("|"));
            Some(
                regex::RegexBuilder::new(&pattern)
                    .size_limit(64 << 20)
                    .build()
                    .map_err(|e| GuardError::TooManyTerms {
                        count: term_names.len(),
                        reason: e.to_string(),
                    })?,
            )
        };
        let regexes = regexes
            .iter()
            .map(|source| {
                Regex::new(&format!("(?i){}", fold_pattern(source)))
                    .map(|re| (source.clone(), re))
                    .map_err(|e| GuardError::BadRegex {
                        pattern: source.clone(),
                        reason: e.to_string(),
                    })
            })
            .collect::<Result<_, _>>()?;
        Ok(TermMatcher {
            terms: terms_regex,
            term_names,
            regexes,
        })
    }

    /// True when there is nothing to look for.
    pub fn is_empty(&self) -> bool {
        self.terms.is_none() && self.regexes.is_empty()
    }

    /// Every banned term or regex match in `text`, sorted by start, at original offsets.
    pub fn find(&self, text: &str) -> Vec<TermMatch> {
        if self.is_empty() || text.is_empty() {
            return Vec::new();
        }
        let normalized = normalize(text);
        let folded = normalized.text.as_str();
        let mut found = Vec::new();
        if let Some(re) = &self.terms {
            let word = |c: Option<char>| c.is_some_and(char::is_alphanumeric);
            for m in re.find_iter(folded) {
                let before = folded[..m.start()].chars().next_back();
                let after = folded[m.end()..].chars().next();
                if word(before) || word(after) {
                    continue;
                }
                let term = self
                    .term_names
                    .get(&without_separators(m.as_str()))
                    .cloned()
                    .unwrap_or_else(|| m.as_str().to_owned());
                let (start, end) = normalized.original_span(m.start(), m.end());
                found.push(TermMatch { term, start, end });
            }
        }
        for (source, re) in &self.regexes {
            for m in re.find_iter(folded) {
                if m.is_empty() {
                    continue;
                }
                let (start, end) = normalized.original_span(m.start(), m.end());
                found.push(TermMatch {
                    term: source.clone(),
                    start,
                    end,
                });
            }
        }
        found.sort_by_key(|m| (m.start, m.end));
        found
    }
}

/// What may stand between the words of a term in a text: any run of the separators
/// `normalize` knows (space . - _ * · / | + ~), or nothing.
const SEPARATORS: &str = "[ ._*·/|+~-]*";

/// `wire-transfer`, `wire transfer`, `wiretransfer` → `wiretransfer`: how a match is
/// named by the term it came from.
fn without_separators(s: &str) -> String {
    s.chars()
        .filter(|c| !matches!(c, ' ' | '.' | '_' | '*' | '·' | '/' | '|' | '+' | '~' | '-'))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matcher(terms: &[&str], regexes: &[&str]) -> TermMatcher {
        let own = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        TermMatcher::new(&own(terms), &own(regexes)).unwrap()
    }

    fn hits<'t>(m: &TermMatcher, text: &'t str) -> Vec<(String, &'t str)> {
        m.find(text)
            .into_iter()
            .map(|h| (h.term, &text[h.start..h.end]))
            .collect()
    }

    #[test]
    fn obfuscations_match_with_original_offsets() {
        let m = matcher(&["banned"], &[]);
        let cases = [
            ("this is BANNED.", "BANNED"),
            ("full width ｂａｎｎｅｄ here", "ｂａｎｎｅｄ"),
            ("zero width ban\u{200D}ned!", "ban\u{200D}ned"),
            ("leet b4nn3d stuff", "b4nn3d"),
            ("dots b.a.n.n.e.d ok", "b.a.n.n.e.d"),
            ("spaced b a n n e d ok", "b a n n e d"),
            ("accents bännéd", "bännéd"),
            ("cyrillic bаnnеd", "bаnnеd"),
        ];
        for (text, want) in cases {
            assert_eq!(hits(&m, text), [("banned".to_string(), want)], "{text}");
        }
    }

    #[test]
    fn separators_and_case_between_words_do_not_hide_a_term() {
        let m = matcher(&["wire transfer"], &[]);
        for text in [
            "send a Wire-Transfer now",
            "send a W1RE-TRANSFER now",
            "send a wire_transfer now",
            "send a wire  transfer now",
            "send a wire.transfer now",
            "send a wiretransfer now",
        ] {
            let found = hits(&m, text);
            assert_eq!(found.len(), 1, "{text}: {found:?}");
            assert_eq!(found[0].0, "wire transfer", "{text}");
            assert!(
                found[0].1.to_lowercase().starts_with("w"),
                "{text}: {found:?}"
            );
        }
        assert!(hits(&m, "a wired transfer, wire transfers").is_empty());
    }

    #[test]
    fn whole_words_only() {
        let m = matcher(&["ass"], &[]);
        assert!(hits(&m, "a classic assessment, grass").is_empty());
        assert_eq!(hits(&m, "you ass!").len(), 1);
        let m = matcher(&["kill", "kill switch"], &[]);
        assert_eq!(
            hits(&m, "the KILL SWITCH and ki11"),
            [
                ("kill switch".into(), "KILL SWITCH"),
                ("kill".into(), "ki11")
            ]
        );
        assert!(hits(&m, "skills killer").is_empty());
    }

    #[test]
    fn regexes_run_on_normalised_text() {
        let m = matcher(&[], &[r"project\s+(?:x|y)\d*"]);
        assert_eq!(
            hits(&m, "about PROJECT   X soon"),
            [(r"project\s+(?:x|y)\d*".to_string(), "PROJECT   X")]
        );
        assert!(matches!(
            TermMatcher::new(&[], &["(unclosed".to_string()]),
            Err(GuardError::BadRegex { .. })
        ));
        assert!(matcher(&[], &[]).find("anything").is_empty());
    }
}
