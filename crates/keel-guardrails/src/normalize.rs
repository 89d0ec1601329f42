//! Text normalisation for matching obfuscated words, with a byte map back to the original so
//! every match can be reported at its place in the text the user sent.
//!
//! Exactly what is normalised, in order, per character:
//! 1. invisible characters are removed: zero-width space/joiners (U+200B–U+200F), word
//!    joiner and invisible operators (U+2060–U+2064), BOM (U+FEFF), soft hyphen (U+00AD),
//!    Mongolian vowel separator (U+180E), variation selectors (U+FE00–U+FE0F) and Unicode
//!    tag characters (U+E0000–U+E007F);
//! 2. compatibility decomposition (NFKD: everything NFKC folds — full-width letters,
//!    ligatures, superscripts, circled and mathematical letters — plus accents split off);
//! 3. combining marks are removed (so `é` → `e`, `i̇` → `i`, stacked "zalgo" marks vanish);
//! 4. lower-casing (Unicode `to_lowercase`, our case fold);
//! 5. confusables: common Cyrillic and Greek look-alikes → Latin (`а`→a, `е`→e, `о`→o,
//!    `р`→p, `с`→c, `х`→x, `у`→y, `і`→i, `ѕ`→s, `ο`→o, `α`→a, `ν`→v, `τ`→t, `κ`→k …);
//! 6. leetspeak: `0`→o, `1`→i, `3`→e, `4`→a, `5`→s, `7`→t, `@`→a, `$`→s; and because `1`
//!    stands for both `i` and `l`, **`l` is folded to `i` too** (patterns are folded the same
//!    way, so "kill" and "ki11" both become "kiii");
//! 7. every whitespace character becomes one space;
//! 8. separators inside spelled-out words are dropped: a run of at least three single
//!    letters joined by the same one separator (space `.` `-` `_` `*` `·` `/` `|` `+` `~`)
//!    becomes one word, so "b.a.n.n.e.d" and "b a n n e d" read "banned". Runs of two, or
//!    mixed separators, are kept ("e.g." stays two letters);
//! 9. runs of spaces collapse to one.
//!
//! Not handled: separators inside longer fragments ("ban.ned"), reversed or translated
//! words, and confusables outside the table.

use unicode_normalization::char::{decompose_compatible, is_combining_mark};

/// Normalised text and, for each of its bytes, the original byte span it came from.
#[derive(Debug, Clone, Default)]
pub(crate) struct Normalized {
    pub(crate) text: String,
    starts: Vec<u32>,
    ends: Vec<u32>,
}

impl Normalized {
    /// The original byte span covering normalised bytes `start..end` (`end > start`).
    pub(crate) fn original_span(&self, start: usize, end: usize) -> (usize, usize) {
        let s = self.starts.get(start).copied().unwrap_or(0) as usize;
        let e = end
            .checked_sub(1)
            .and_then(|last| self.ends.get(last))
            .copied()
            .unwrap_or(0) as usize;
        (s, e.max(s))
    }
}

#[derive(Clone, Copy)]
struct Unit {
    ch: char,
    start: u32,
    end: u32,
}

pub(crate) fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{200B}'..='\u{200F}' | '\u{2060}'..='\u{2064}' | '\u{FEFF}' | '\u{00AD}' | '\u{180E}'
        | '\u{FE00}'..='\u{FE0F}' | '\u{E0000}'..='\u{E007F}')
}

/// Cyrillic/Greek look-alikes (already lower-cased) to Latin.
pub(crate) fn confusable(c: char) -> Option<char> {
    Some(match c {
        'а' | 'α' => 'a',
        'в' | 'β' => 'b',
        'с' | 'ϲ' => 'c',
        'ԁ' => 'd',
        'е' | 'ё' | 'ε' => 'e',
        'ɡ' => 'g',
        'һ' | 'н' => 'h',
        'і' | 'ї' | 'ι' | 'ı' => 'i',
        'ј' => 'j',
        'к' | 'κ' => 'k',
        'м' => 'm',
        'о' | 'ο' | 'σ' => 'o',
        'р' | 'ρ' => 'p',
        'ѕ' => 's',
        'т' | 'τ' => 't',
        'υ' => 'u',
        'ν' => 'v',
        'ѡ' | 'ω' => 'w',
        'х' | 'χ' => 'x',
        'у' | 'γ' => 'y',
        _ => return None,
    })
}

/// Step 6 (plus `l`→`i`): applied to text and to patterns alike.
pub(crate) fn fold_leet(c: char) -> char {
    match c {
        '0' => 'o',
        '1' | 'l' => 'i',
        '3' => 'e',
        '4' | '@' => 'a',
        '5' | '$' => 's',
        '7' => 't',
        other => other,
    }
}

/// Fold the ASCII letters of a regex written in plain lower-case English so that it
/// matches normalised text (only `l` changes); regex syntax is left alone.
pub(crate) fn fold_pattern(pattern: &str) -> String {
    pattern
        .chars()
        .map(|c| {
            if c.is_ascii_lowercase() {
                fold_leet(c)
            } else {
                c
            }
        })
        .collect()
}

fn is_word_separator(c: char) -> bool {
    matches!(c, ' ' | '.' | '-' | '_' | '*' | '·' | '/' | '|' | '+' | '~')
}

fn push_folded(units: &mut Vec<Unit>, c: char, start: u32, end: u32) {
    if c.is_ascii() {
        let ch = if c.is_ascii_whitespace() {
            ' '
        } else {
            fold_leet(c.to_ascii_lowercase())
        };
        units.push(Unit { ch, start, end });
        return;
    }
    if is_combining_mark(c) {
        return;
    }
    if c.is_whitespace() {
        units.push(Unit {
            ch: ' ',
            start,
            end,
        });
        return;
    }
    for lower in c.to_lowercase() {
        let ch = fold_leet(confusable(lower).unwrap_or(lower));
        units.push(Unit { ch, start, end });
    }
}

/// Normalise `text` as documented at the top of this module.
pub(crate) fn normalize(text: &str) -> Normalized {
    let mut units: Vec<Unit> = Vec::with_capacity(text.len());
    for (i, c) in text.char_indices() {
        let (start, end) = (i as u32, (i + c.len_utf8()) as u32);
        if c.is_ascii() {
            push_folded(&mut units, c, start, end);
        } else if !is_invisible(c) {
            decompose_compatible(c, |d| push_folded(&mut units, d, start, end));
        }
    }
    let drop = spelled_out_separators(&units);
    let mut out = Normalized {
        text: String::with_capacity(units.len()),
        starts: Vec::with_capacity(units.len()),
        ends: Vec::with_capacity(units.len()),
    };
    for (i, u) in units.iter().enumerate() {
        if drop.as_ref().is_some_and(|d| d[i]) || (u.ch == ' ' && out.text.ends_with(' ')) {
            continue;
        }
        out.text.push(u.ch);
        for _ in 0..u.ch.len_utf8() {
            out.starts.push(u.start);
            out.ends.push(u.end);
        }
    }
    out
}

/// Marks the separators inside runs like `b.a.n.n.e.d` (step 8); `None` when there are none.
fn spelled_out_separators(units: &[Unit]) -> Option<Vec<bool>> {
    let alnum = |i: usize| units.get(i).is_some_and(|u| u.ch.is_alphanumeric());
    let single = |i: usize| alnum(i) && (i == 0 || !alnum(i - 1)) && !alnum(i + 1);
    let mut drop: Option<Vec<bool>> = None;
    let mut i = 0;
    while i < units.len() {
        if !single(i) {
            i += 1;
            continue;
        }
        let Some(sep) = units
            .get(i + 1)
            .map(|u| u.ch)
            .filter(|&c| is_word_separator(c))
        else {
            i += 1;
            continue;
        };
        let mut last = i;
        let mut letters = 1;
        while units.get(last + 1).is_some_and(|u| u.ch == sep) && single(last + 2) {
            last += 2;
            letters += 1;
        }
        if letters >= 3 {
            let d = drop.get_or_insert_with(|| vec![false; units.len()]);
            for k in (i + 1..last).step_by(2) {
                d[k] = true;
            }
        }
        i = last + 1;
    }
    drop
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> String {
        normalize(s).text
    }

    #[test]
    fn documented_folds() {
        assert_eq!(norm("BaNNed"), "banned");
        assert_eq!(norm("ｂａｎｎｅｄ"), "banned");
        assert_eq!(norm("ba\u{200B}nn\u{200D}ed"), "banned");
        assert_eq!(norm("b4nn3d"), "banned");
        assert_eq!(norm("b.a.n.n.e.d"), "banned");
        assert_eq!(norm("b a n n e d word"), "banned word");
        assert_eq!(norm("bánnéd"), "banned");
        assert_eq!(norm("bаnnеd"), "banned"); // Cyrillic а and е
        assert_eq!(norm("kill ki11"), "kiii kiii");
        assert_eq!(norm("e.g. a  b\t\tc"), "e.g. a b c");
        assert_eq!(norm("ﬁle"), "fiie");
    }

    #[test]
    fn spans_map_back_to_original() {
        let text = "say ｂ.ａ.ｎ now";
        let n = normalize(text);
        let at = n.text.find("ban").unwrap();
        let (s, e) = n.original_span(at, at + 3);
        assert_eq!(&text[s..e], "ｂ.ａ.ｎ");
    }
}
