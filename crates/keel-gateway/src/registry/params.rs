//! A variant's parameters, checked once when its deployment is built and applied to
//! each request without re-parsing.
//!
//! Parameters come from the prompt file's `[params]` (defaults) overridden by the
//! variant's `params` in `keel.toml`. They are operator decisions, so they win over the
//! same field sent by the caller; fields the operator did not set pass through from the
//! caller unchanged.

use keel_core::chat::ChatRequest;
use serde_json::{Map, Value};

/// Keys a prompt or variant may not set: they belong to the request itself.
const RESERVED: [&str; 6] = [
    "model",
    "messages",
    "stream",
    "stream_options",
    "variables",
    "tools",
];

/// The parameters as typed request fields (unset fields are `None`).
#[derive(Debug, Clone, PartialEq)]
pub struct ParamPatch {
    typed: ChatRequest,
}

impl ParamPatch {
    /// Check `params` against the request schema; the error names the key.
    pub fn new(params: &Map<String, Value>) -> Result<ParamPatch, String> {
        if let Some(k) = params.keys().find(|k| RESERVED.contains(&k.as_str())) {
            return Err(format!(
                "`{k}` cannot be set in params (tools belong in the prompt's [[tools]]; the rest belong to the request)"
            ));
        }
        let mut obj = params.clone();
        obj.insert("model".into(), Value::String(String::new()));
        obj.insert("messages".into(), Value::Array(Vec::new()));
        let typed: ChatRequest = serde_path_to_error::deserialize(Value::Object(obj))
            .map_err(|e| format!("params `{}`: {}", e.path(), e.inner()))?;
        Ok(ParamPatch { typed })
    }

    /// Set every parameter the operator chose on `req`.
    pub fn apply(&self, req: &mut ChatRequest) {
        let p = &self.typed;
        macro_rules! set {
            ($($field:ident),*) => {$(
                if p.$field.is_some() {
                    req.$field.clone_from(&p.$field);
                }
            )*};
        }
        set!(
            temperature,
            top_p,
            max_tokens,
            max_completion_tokens,
            stop,
            seed,
            n,
            user,
            tool_choice,
            response_format
        );
        for (k, v) in &p.extra {
            req.extra.insert(k.clone(), v.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn patch(v: Value) -> Result<ParamPatch, String> {
        ParamPatch::new(v.as_object().unwrap())
    }

    #[test]
    fn operator_params_win_and_the_rest_pass_through() {
        let p =
            patch(json!({"temperature": 0.2, "max_tokens": 300, "presence_penalty": 0.5})).unwrap();
        let mut req: ChatRequest = serde_json::from_value(json!({
            "model": "f", "messages": [], "temperature": 1.0, "top_p": 0.9
        }))
        .unwrap();
        p.apply(&mut req);
        assert_eq!(req.temperature, Some(0.2));
        assert_eq!(req.max_tokens, Some(300));
        assert_eq!(req.top_p, Some(0.9));
        assert_eq!(req.extra["presence_penalty"], json!(0.5));
    }

    #[test]
    fn wrong_types_and_reserved_keys_are_named() {
        let err = patch(json!({"max_tokens": "lots"})).unwrap_err();
        assert!(err.contains("max_tokens"), "{err}");
        let err = patch(json!({"stream": true})).unwrap_err();
        assert!(err.contains("`stream`"), "{err}");
    }
}
