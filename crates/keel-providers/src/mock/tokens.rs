//! The mock's token arithmetic: a deterministic, tokenizer-free approximation.
//!
//! A token is a maximal run of word characters (Unicode alphanumerics and `_`) or one
//! other non-whitespace character; whitespace is never a token. So `"Hello, world!"` is
//! 4 tokens (`Hello` `,` `world` `!`). Real tokenizers count differently, but this is
//! stable, cheap and easy to reason about in a test. Every function here cuts text only
//! at token boundaries, so truncating or splitting never breaks a word or a character.

/// Words appended to pad a reply up to an exact token count; each is exactly one token.
const FILLER: [&str; 19] = [
    "lorem",
    "ipsum",
    "dolor",
    "sit",
    "amet",
    "consectetur",
    "adipiscing",
    "elit",
    "sed",
    "do",
    "eiusmod",
    "tempor",
    "incididunt",
    "ut",
    "labore",
    "et",
    "dolore",
    "magna",
    "aliqua",
];

fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// How many tokens `text` holds.
pub fn count(text: &str) -> u64 {
    let mut n = 0;
    let mut in_word = false;
    for c in text.chars() {
        if is_word(c) {
            if !in_word {
                n += 1;
                in_word = true;
            }
        } else {
            in_word = false;
            if !c.is_whitespace() {
                n += 1;
            }
        }
    }
    n
}

/// The byte span `(start, end)` of every token of `text`, in order.
fn spans(text: &str) -> Vec<(usize, usize)> {
    let mut out: Vec<(usize, usize)> = Vec::new();
    let mut in_word = false;
    for (i, c) in text.char_indices() {
        let end = i + c.len_utf8();
        if is_word(c) {
            match out.last_mut() {
                Some(last) if in_word => last.1 = end,
                _ => out.push((i, end)),
            }
            in_word = true;
        } else {
            in_word = false;
            if !c.is_whitespace() {
                out.push((i, end));
            }
        }
    }
    out
}

/// `text` cut after its `max`-th token (trailing whitespace dropped), and whether
/// anything was cut.
pub fn truncate(text: &str, max: u64) -> (&str, bool) {
    let spans = spans(text);
    let max = usize::try_from(max).unwrap_or(usize::MAX);
    if spans.len() <= max {
        return (text, false);
    }
    let end = match max.checked_sub(1) {
        Some(last) => spans[last].1,
        None => 0,
    };
    (&text[..end], true)
}

/// `text` truncated or padded with filler words to exactly `n` tokens.
pub fn fit(text: &str, n: u64) -> String {
    let have = count(text);
    if have >= n {
        return truncate(text, n).0.to_string();
    }
    let mut out = text.trim_end().to_string();
    for i in 0..(n - have) {
        if !out.is_empty() {
            out.push(' ');
        }
        // `i % len` is below 19, so the index is in range.
        out.push_str(FILLER[(i % FILLER.len() as u64) as usize]);
    }
    out
}

/// `text` split into consecutive pieces of `per_piece` tokens each (the last may be
/// shorter). Each piece but the first starts with the whitespace before its first token,
/// as model tokens do (`" world"`); joined, they give back `text` exactly. Empty text
/// gives no pieces.
pub fn split(text: &str, per_piece: usize) -> Vec<&str> {
    if text.is_empty() {
        return Vec::new();
    }
    let per_piece = per_piece.max(1);
    let spans = spans(text);
    // Cut after the last token of each full piece that has a token after it.
    let cuts: Vec<usize> = spans
        .iter()
        .enumerate()
        .filter(|(i, _)| (i + 1) % per_piece == 0 && i + 1 < spans.len())
        .map(|(_, span)| span.1)
        .collect();
    let mut out = Vec::with_capacity(cuts.len() + 1);
    let mut from = 0;
    for cut in cuts {
        out.push(&text[from..cut]);
        from = cut;
    }
    out.push(&text[from..]);
    out
}

/// The first `n` characters of `text` (characters, not bytes).
pub fn first_chars(text: &str, n: usize) -> &str {
    match text.char_indices().nth(n) {
        Some((i, _)) => &text[..i],
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_words_and_punctuation() {
        assert_eq!(count("Hello, world!"), 4);
        assert_eq!(count(""), 0);
        assert_eq!(count("   \n\t"), 0);
        assert_eq!(count("snake_case x2 42"), 3);
        assert_eq!(count("{\"a\":1}"), 7);
        assert_eq!(count("héllo wörld"), 2);
    }

    #[test]
    fn truncate_cuts_at_token_boundaries() {
        assert_eq!(truncate("one two, three", 2), ("one two", true));
        assert_eq!(truncate("one two, three", 3), ("one two,", true));
        assert_eq!(truncate("one two", 2), ("one two", false));
        assert_eq!(truncate("one two", 0), ("", true));
        assert_eq!(truncate("", 0), ("", false));
    }

    #[test]
    fn fit_pads_and_truncates_to_exact_counts() {
        for n in [0, 1, 3, 7, 50, 200] {
            let out = fit("Mock reply to: hi", n);
            assert_eq!(count(&out), n, "fit to {n} gave {out:?}");
        }
        assert_eq!(fit("a b", 4), "a b lorem ipsum");
        assert_eq!(fit("a b c", 2), "a b");
        assert_eq!(fit("", 2), "lorem ipsum");
    }

    #[test]
    fn split_keeps_text_and_piece_sizes() {
        let text = "Mock reply to: what is the capital of France?";
        let pieces = split(text, 4);
        assert_eq!(pieces.concat(), text);
        assert_eq!(
            pieces,
            vec!["Mock reply to:", " what is the capital", " of France?"]
        );
        assert!(split("", 4).is_empty());
        assert_eq!(split("  lead", 4), vec!["  lead"]);
        assert_eq!(split("a b c d ", 2), vec!["a b", " c d "]);
    }

    #[test]
    fn first_chars_counts_characters() {
        assert_eq!(first_chars("héllo", 2), "hé");
        assert_eq!(first_chars("hi", 10), "hi");
    }
}
