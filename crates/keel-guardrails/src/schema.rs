//! Output contracts: a model's answer must be JSON matching a schema. Failures come back as
//! one short message a model can act on when re-asked ("/items/0/price: \"x\" is not of type
//! \"number\""), naming at most the first three errors with their JSON paths.
//! A single fenced code block (```json … ```) around the JSON is accepted.

use crate::GuardError;

const ERRORS_SHOWN: usize = 3;

/// A compiled JSON schema, built once per policy.
#[derive(Debug)]
pub struct OutputContract {
    validator: jsonschema::Validator,
}

impl OutputContract {
    pub fn new(schema: &serde_json::Value) -> Result<Self, GuardError> {
        jsonschema::validator_for(schema)
            .map(|validator| OutputContract { validator })
            .map_err(|e| GuardError::BadSchema {
                reason: e.to_string(),
            })
    }

    /// Validate `output`; `Err` carries the model-readable message.
    pub fn check(&self, output: &str) -> Result<(), String> {
        let json = strip_fence(output);
        let doc: serde_json::Value = serde_json::from_str(json).map_err(|e| {
            format!("the output is not valid JSON ({e}); reply with only a JSON document matching the schema")
        })?;
        let mut errors = self.validator.iter_errors(&doc);
        let shown: Vec<String> = errors
            .by_ref()
            .take(ERRORS_SHOWN)
            .map(|e| {
                let path = e.instance_path().to_string();
                let path = if path.is_empty() {
                    "/".to_owned()
                } else {
                    path
                };
                format!("{path}: {}", shorten(&e.to_string(), 160))
            })
            .collect();
        if shown.is_empty() {
            return Ok(());
        }
        let more = errors.count();
        let tail = if more > 0 {
            format!(" (and {more} more)")
        } else {
            String::new()
        };
        Err(format!(
            "the output does not match the schema: {}{tail}",
            shown.join("; ")
        ))
    }
}

/// Validate text as JSON against a JSON schema (compiles the schema on each call; use
/// [`OutputContract`] on the request path).
pub fn check_json_schema(output: &str, schema: &serde_json::Value) -> Result<(), String> {
    OutputContract::new(schema)
        .map_err(|e| e.to_string())?
        .check(output)
}

fn strip_fence(text: &str) -> &str {
    let t = text.trim();
    let Some(rest) = t.strip_prefix("```") else {
        return t;
    };
    let Some(body) = rest.strip_suffix("```") else {
        return t;
    };
    match body.find('\n') {
        Some(nl) if body[..nl].trim().chars().all(|c| c.is_ascii_alphanumeric()) => {
            body[nl + 1..].trim()
        }
        _ => body.trim(),
    }
}

fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let cut: String = s.chars().take(max).collect();
    format!("{cut}…")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> serde_json::Value {
        json!({
            "type": "object",
            "required": ["name", "items"],
            "properties": {
                "name": {"type": "string"},
                "items": {"type": "array", "items": {"type": "object", "required": ["price"], "properties": {"price": {"type": "number"}}}}
            }
        })
    }

    #[test]
    fn valid_json_passes_including_fenced() {
        assert_eq!(
            check_json_schema(r#"{"name":"a","items":[{"price":1.5}]}"#, &schema()),
            Ok(())
        );
        assert_eq!(
            check_json_schema("```json\n{\"name\":\"a\",\"items\":[]}\n```", &schema()),
            Ok(())
        );
    }

    #[test]
    fn messages_name_paths() {
        let err =
            check_json_schema(r#"{"name":3,"items":[{"price":"x"}]}"#, &schema()).unwrap_err();
        assert!(
            err.starts_with("the output does not match the schema: "),
            "{err}"
        );
        assert!(err.contains("/name: 3 is not of type \"string\""), "{err}");
        assert!(
            err.contains("/items/0/price: \"x\" is not of type \"number\""),
            "{err}"
        );
        let err = check_json_schema(r#"{"items":[]}"#, &schema()).unwrap_err();
        assert!(err.contains("/: \"name\" is a required property"), "{err}");
        let err = check_json_schema("Sure! Here it is: {", &schema()).unwrap_err();
        assert!(err.starts_with("the output is not valid JSON"), "{err}");
    }

    #[test]
    fn bad_schema_is_reported() {
        assert!(matches!(
            OutputContract::new(&json!({"type": 12})),
            Err(GuardError::BadSchema { .. })
        ));
    }
}
