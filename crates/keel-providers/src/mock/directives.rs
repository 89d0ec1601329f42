//! In-message directives: `[mock:NAME]` or `[mock:NAME=VALUE]` tags in the last user
//! message that script one request without reconfiguring the mock (the list is in the
//! module docs of `mock`). This module only parses them and strips them from the text;
//! `reply` decides what they mean.

/// The directives found in one message. `None`/`false` means "not given".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Directives {
    pub status: Option<u16>,
    pub retry_after: Option<u64>,
    pub latency_ms: Option<u64>,
    pub chunk_delay_ms: Option<u64>,
    pub tokens: Option<u32>,
    pub timeout: bool,
    pub cut: bool,
    pub garbage: bool,
    pub reply: Option<String>,
    pub tool: Option<String>,
}

/// A message's directives and its text with them removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Parsed {
    pub directives: Directives,
    pub text: String,
}

const OPEN: &str = "[mock:";

/// The directive names, for error messages.
const KNOWN: &str =
    "status, retry_after, latency, chunk_delay, tokens, timeout, cut, garbage, reply, tool";

/// Find and remove every directive of `text`. A malformed directive (unknown name, bad
/// value) is an error whose message names it, so a typo in a test fails loudly.
/// An `[mock:` with no closing `]` is left in the text.
pub fn parse(text: &str) -> Result<Parsed, String> {
    let mut directives = Directives::default();
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find(OPEN) {
        let after = &rest[open + OPEN.len()..];
        let Some(close) = after.find(']') else {
            break;
        };
        out.push_str(&rest[..open]);
        apply(&mut directives, &after[..close])?;
        rest = &after[close + 1..];
        // Removing `a [mock:x] b` must not leave a double space.
        if out.is_empty() || out.ends_with(char::is_whitespace) {
            rest = rest.trim_start_matches([' ', '\t']);
        }
    }
    out.push_str(rest);
    Ok(Parsed {
        directives,
        text: out.trim().to_string(),
    })
}

fn apply(d: &mut Directives, body: &str) -> Result<(), String> {
    let (name, value) = match body.split_once('=') {
        Some((n, v)) => (n.trim(), Some(v)),
        None => (body.trim(), None),
    };
    let shown = format!("[mock:{body}]");
    match (name, value) {
        ("status", Some(v)) => {
            let status = number::<u16>(&shown, v)?;
            if !(400..=599).contains(&status) {
                return Err(format!(
                    "mock directive `{shown}`: status must be an error status between 400 and 599"
                ));
            }
            d.status = Some(status);
        }
        ("retry_after", Some(v)) => d.retry_after = Some(number(&shown, v)?),
        ("latency", Some(v)) => d.latency_ms = Some(number(&shown, v)?),
        ("chunk_delay", Some(v)) => d.chunk_delay_ms = Some(number(&shown, v)?),
        ("tokens", Some(v)) => d.tokens = Some(number(&shown, v)?),
        ("timeout", None) => d.timeout = true,
        ("cut", None) => d.cut = true,
        ("garbage", None) => d.garbage = true,
        ("reply", Some(v)) => d.reply = Some(v.to_string()),
        ("tool", Some(v)) if !v.trim().is_empty() => d.tool = Some(v.trim().to_string()),
        ("status" | "retry_after" | "latency" | "chunk_delay" | "tokens" | "reply" | "tool", _) => {
            return Err(format!(
                "mock directive `{shown}` needs a value, e.g. `[mock:{name}=...]`"
            ))
        }
        ("timeout" | "cut" | "garbage", Some(_)) => {
            return Err(format!(
                "mock directive `{shown}` takes no value; write `[mock:{name}]`"
            ))
        }
        _ => {
            return Err(format!(
                "unknown mock directive `{shown}`; known directives: {KNOWN}"
            ))
        }
    }
    Ok(())
}

fn number<T: std::str::FromStr>(shown: &str, value: &str) -> Result<T, String> {
    value.trim().parse().map_err(|_| {
        format!(
            "mock directive `{shown}`: `{}` is not a valid non-negative integer",
            value.trim()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_directives_keeps_text() {
        let p = parse("  What is 2+2?  ").unwrap();
        assert_eq!(p.text, "What is 2+2?");
        assert_eq!(p.directives, Directives::default());
    }

    #[test]
    fn parses_and_strips_every_kind() {
        let p = parse(
            "Hi [mock:status=429] there [mock:latency=200][mock:tokens=50] [mock:timeout] \
             [mock:cut] [mock:garbage] [mock:reply=Exactly this] [mock:tool=get_weather] \
             [mock:retry_after=7] [mock:chunk_delay=3]end",
        )
        .unwrap();
        let d = p.directives;
        assert_eq!(d.status, Some(429));
        assert_eq!(d.latency_ms, Some(200));
        assert_eq!(d.tokens, Some(50));
        assert!(d.timeout && d.cut && d.garbage);
        assert_eq!(d.reply.as_deref(), Some("Exactly this"));
        assert_eq!(d.tool.as_deref(), Some("get_weather"));
        assert_eq!(d.retry_after, Some(7));
        assert_eq!(d.chunk_delay_ms, Some(3));
        assert_eq!(p.text, "Hi there end");
    }

    #[test]
    fn unclosed_tag_is_text() {
        let p = parse("look [mock:status=500").unwrap();
        assert_eq!(p.text, "look [mock:status=500");
        assert_eq!(p.directives.status, None);
    }

    #[test]
    fn bad_directives_are_named() {
        let e = parse("x [mock:stauts=429]").unwrap_err();
        assert!(
            e.contains("unknown mock directive `[mock:stauts=429]`"),
            "{e}"
        );
        let e = parse("[mock:status=abc]").unwrap_err();
        assert!(e.contains("`abc` is not a valid"), "{e}");
        let e = parse("[mock:status=200]").unwrap_err();
        assert!(e.contains("between 400 and 599"), "{e}");
        let e = parse("[mock:cut=1]").unwrap_err();
        assert!(e.contains("takes no value"), "{e}");
        let e = parse("[mock:tool=]").unwrap_err();
        assert!(e.contains("needs a value"), "{e}");
    }
}
