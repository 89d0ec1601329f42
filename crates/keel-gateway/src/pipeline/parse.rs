//! Turning request bytes into the canonical request, with errors that name the field.

use keel_core::chat::ChatRequest;
use serde::de::DeserializeOwned;

use crate::error::GatewayError;

const ROLES: [&str; 6] = [
    "system",
    "developer",
    "user",
    "assistant",
    "tool",
    "function",
];

/// Parse JSON, naming the path of the first bad field (`messages[0].role: ...`).
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, GatewayError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(GatewayError::InvalidRequest(
            "request body is empty; send a JSON object".into(),
        ));
    }
    // Fast path: plain serde. Only a failing body pays for the path-tracking parse
    // that names the offending field.
    if let Ok(parsed) = serde_json::from_slice::<T>(bytes) {
        return Ok(parsed);
    }
    if std::str::from_utf8(bytes).is_err() {
        return Err(GatewayError::InvalidRequest(
            "request body is not valid UTF-8; send UTF-8 encoded JSON".into(),
        ));
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            GatewayError::InvalidRequest(format!("request body is not valid JSON: {inner}"))
        } else if path == "." {
            GatewayError::InvalidRequest(format!("invalid request body: {inner}"))
        } else {
            GatewayError::InvalidRequest(format!("invalid request body: `{path}`: {inner}"))
        }
    })
}

/// Checks serde cannot express: a non-empty conversation with known roles and sane
/// numeric ranges. A call to a function (`is_function`) may send no messages: the
/// function's prompt supplies them.
pub fn validate_chat(req: &ChatRequest, is_function: bool) -> Result<(), GatewayError> {
    let bad = |m: String| Err(GatewayError::InvalidRequest(m));
    if req.model.trim().is_empty() {
        return bad("`model` must not be empty; name one of the models from GET /v1/models".into());
    }
    if req.messages.is_empty() && !is_function {
        return bad("`messages` must contain at least one message".into());
    }
    for (i, m) in req.messages.iter().enumerate() {
        if !ROLES.contains(&m.role.as_str()) {
            return bad(format!(
                "`messages[{i}].role`: unknown role `{}`; expected one of {}",
                m.role,
                ROLES.join(", ")
            ));
        }
    }
    if let Some(t) = req.temperature {
        if !(0.0..=2.0).contains(&t) {
            return bad(format!(
                "`temperature`: {t} is out of range; use a value between 0 and 2"
            ));
        }
    }
    if let Some(p) = req.top_p {
        if !(0.0..=1.0).contains(&p) {
            return bad(format!(
                "`top_p`: {p} is out of range; use a value between 0 and 1"
            ));
        }
    }
    if req.n == Some(0) {
        return bad("`n` must be at least 1".into());
    }
    if req.max_tokens == Some(0) || req.max_completion_tokens == Some(0) {
        return bad("`max_tokens` / `max_completion_tokens` must be at least 1".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(body: &str) -> String {
        match parse_json::<ChatRequest>(body.as_bytes())
            .and_then(|r| validate_chat(&r, false).map(|_| r))
        {
            Ok(_) => panic!("accepted {body}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn errors_name_the_field() {
        assert!(err(r#"{"model":"m","messages":[{"content":"x"}]}"#).contains("messages[0]"));
        assert!(err(r#"{"model":"m","messages":"hi"}"#).contains("`messages`"));
        assert!(err(r#"{"model":"m","messages":[],"temperature":"hot"}"#).contains("`temperature`"));
        assert!(err(r#"{"model":"m","messages":[]}"#).contains("at least one message"));
        assert!(
            err(r#"{"model":"m","messages":[{"role":"robot","content":"x"}]}"#)
                .contains("messages[0].role")
        );
        assert!(err(r#"{"model": "m", "#).contains("not valid JSON"));
        assert!(err("").contains("empty"));
        assert!(err(r#"{"messages":[]}"#).contains("model"));
    }

    #[test]
    fn invalid_utf8_is_named() {
        let e = parse_json::<ChatRequest>(b"{\"model\":\"\xff\"}")
            .unwrap_err()
            .to_string();
        assert!(e.contains("UTF-8"), "{e}");
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use keel_providers::anthropic::MessagesRequest;
    use proptest::prelude::*;

    proptest! {
        /// Any bytes at all: a parsed request or a 400 naming the problem — never a panic.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            if let Err(e) = parse_json::<ChatRequest>(&bytes).and_then(|r| validate_chat(&r, false).map(|_| r)) {
                prop_assert!(matches!(e, GatewayError::InvalidRequest(_)));
            }
            let _ = parse_json::<MessagesRequest>(&bytes);
        }

        /// JSON-looking text with random structure: same guarantee.
        #[test]
        fn arbitrary_json_shapes_never_panic(s in r#"\{("(model|messages|role|content|tools|n|stream)":(\[|\{|"x"|1|null|true|-1\.5)[,\]\}]{0,3}){0,6}"#) {
            let _ = parse_json::<ChatRequest>(s.as_bytes()).and_then(|r| validate_chat(&r, false).map(|_| r));
            let _ = parse_json::<MessagesRequest>(s.as_bytes());
        }
    }
}
