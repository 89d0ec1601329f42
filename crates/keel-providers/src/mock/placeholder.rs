//! Placeholder values from a JSON schema: the arguments of a mock tool call and the reply
//! of a mock `json_schema` response are the smallest value that satisfies the schema's
//! shape — every required property present, each with a fixed value for its type — so
//! code that parses them has something valid and predictable to parse.

use serde_json::{Map, Value};

/// Nesting deeper than this gives `null` (guards against recursive schemas).
const MAX_DEPTH: usize = 8;

/// A placeholder value for `schema`: `"mock"` for strings, `1` for numbers, `true` for
/// booleans, `[]` for arrays, `null` for null, the first `enum` value, the `const`, the
/// first `anyOf`/`oneOf` branch, and for objects one entry per `required` property.
pub fn for_schema(schema: &Value) -> Value {
    value(schema, 0)
}

fn value(schema: &Value, depth: usize) -> Value {
    if depth > MAX_DEPTH {
        return Value::Null;
    }
    let Some(obj) = schema.as_object() else {
        return Value::String("mock".to_string());
    };
    if let Some(c) = obj.get("const") {
        return c.clone();
    }
    if let Some(first) = obj
        .get("enum")
        .and_then(Value::as_array)
        .and_then(|e| e.first())
    {
        return first.clone();
    }
    for key in ["anyOf", "oneOf", "allOf"] {
        if let Some(first) = obj
            .get(key)
            .and_then(Value::as_array)
            .and_then(|b| b.first())
        {
            return value(first, depth + 1);
        }
    }
    let kind = match obj.get("type") {
        Some(Value::String(t)) => t.as_str(),
        // `["string", "null"]`: the first non-null type.
        Some(Value::Array(ts)) => ts
            .iter()
            .filter_map(Value::as_str)
            .find(|t| *t != "null")
            .unwrap_or("null"),
        _ if obj.contains_key("properties") => "object",
        _ => "string",
    };
    match kind {
        "object" => object(obj, depth),
        "array" => Value::Array(Vec::new()),
        "integer" | "number" => Value::from(1),
        "boolean" => Value::Bool(true),
        "null" => Value::Null,
        _ => Value::String("mock".to_string()),
    }
}

fn object(obj: &Map<String, Value>, depth: usize) -> Value {
    let mut out = Map::new();
    let properties = obj.get("properties").and_then(Value::as_object);
    let required = obj.get("required").and_then(Value::as_array);
    for name in required.into_iter().flatten().filter_map(Value::as_str) {
        let sub = properties
            .and_then(|p| p.get(name))
            .map(|s| value(s, depth + 1))
            .unwrap_or_else(|| Value::String("mock".to_string()));
        out.insert(name.to_string(), sub);
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fills_required_properties_by_type() {
        let schema = json!({
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "days": {"type": "integer"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "detailed": {"type": "boolean"},
                "tags": {"type": "array", "items": {"type": "string"}},
                "where": {"type": "object", "properties": {"lat": {"type": "number"}}, "required": ["lat"]},
                "note": {"type": ["string", "null"]},
                "optional": {"type": "string"}
            },
            "required": ["city", "days", "unit", "detailed", "tags", "where", "note", "missing"]
        });
        assert_eq!(
            for_schema(&schema),
            json!({"city": "mock", "days": 1, "unit": "celsius", "detailed": true, "tags": [],
                   "where": {"lat": 1}, "note": "mock", "missing": "mock"})
        );
    }

    #[test]
    fn no_required_gives_empty_object() {
        assert_eq!(
            for_schema(&json!({"type":"object","properties":{"a":{}}})),
            json!({})
        );
        assert_eq!(
            for_schema(&json!({"anyOf":[{"const":3},{"type":"string"}]})),
            json!(3)
        );
    }
}
