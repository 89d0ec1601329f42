//! `POST /v1/feedback`: an app attaches its user's verdict on a response — a thumbs-down,
//! a rating, a category — to the call, by the `x-keel-request-id` the response carried.
//!
//! Body: `{"request_id", "name", "value", "comment"?, "source"?}`; `value` is a number,
//! a boolean or a category string, `source` defaults to `user`. One value per (call,
//! name, source): a later one replaces the earlier (201 for a new value, 200 for a
//! replacement, which is audited). Answers and errors are OpenAI-shaped; a bad body is
//! a 400 whose `param` names the field.
//!
//! Who may: the call's own key, another key of the call's tenant, or the admin key; on
//! an open gateway (`[auth] mode = "off"`) a caller without a key too. Any other key
//! gets the 404 an unknown id gets — same message, same timing — so a tenant cannot
//! learn which ids another tenant's calls used.
//!
//! The trace writer is asynchronous, so feedback sent the moment a response arrives may
//! find its trace not yet written: the lookup polls the store for up to [`TRACE_WAIT`]
//! (pauses of 20 ms doubling to 200 ms) before answering 404. The store work runs on
//! blocking threads, never on the async workers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use keel_store::feedback::{feedback_targets, Feedback, FeedbackTarget, FeedbackValue};
use keel_store::Store;
use serde_json::{json, Map, Value};

use crate::error::GatewayError;
use crate::handlers::caller::{caller, Caller};
use crate::handlers::common::{error_response, ClientApi};
use crate::pipeline::body;
use crate::state::AppState;
use crate::store_task::on_store;

/// How long a request id that is not (yet) in the store is looked for.
pub const TRACE_WAIT: Duration = Duration::from_secs(2);
const FIRST_PAUSE: Duration = Duration::from_millis(20);
const MAX_PAUSE: Duration = Duration::from_millis(200);

/// Limits of the body's fields (characters).
const MAX_REQUEST_ID: usize = 256;
const MAX_NAME: usize = 64;
const MAX_CATEGORY: usize = 256;
const MAX_COMMENT: usize = 4000;
const DEFAULT_SOURCE: &str = "user";
const FIELDS: [&str; 5] = ["request_id", "name", "value", "comment", "source"];

/// A parsed, checked body.
#[derive(Debug, PartialEq)]
struct FeedbackBody {
    request_id: String,
    name: String,
    source: String,
    value: FeedbackValue,
    comment: Option<String>,
}

fn field_error(param: &str, message: String) -> GatewayError {
    GatewayError::InvalidField {
        param: param.to_string(),
        message,
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A required or optional string field, at most `max` characters.
fn string_field(
    m: &Map<String, Value>,
    field: &str,
    required: bool,
    max: usize,
) -> Result<Option<String>, GatewayError> {
    match m.get(field) {
        None | Some(Value::Null) if !required => Ok(None),
        None => Err(field_error(field, format!("`{field}` is required"))),
        Some(Value::String(s)) if s.chars().count() > max => Err(field_error(
            field,
            format!(
                "`{field}` is {} characters long; at most {max} are allowed",
                s.chars().count()
            ),
        )),
        Some(Value::String(s)) if s.is_empty() => {
            Err(field_error(field, format!("`{field}` must not be empty")))
        }
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(field_error(
            field,
            format!("`{field}` must be a string, not {}", json_type(other)),
        )),
    }
}

/// `name` and `source`: 1 to 64 of `A-Z a-z 0-9 _ . -`.
fn label_field(value: String, field: &str) -> Result<String, GatewayError> {
    if value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
    {
        Ok(value)
    } else {
        Err(field_error(
            field,
            format!("`{field}` may hold only letters, digits, `_`, `.` and `-` (e.g. \"thumbs\")"),
        ))
    }
}

fn value_field(m: &Map<String, Value>) -> Result<FeedbackValue, GatewayError> {
    const WANT: &str = "a number, a boolean or a category string";
    match m.get("value") {
        None => Err(field_error(
            "value",
            format!("`value` is required: {WANT} (e.g. 1, true or \"wrong_answer\")"),
        )),
        Some(Value::Bool(b)) => Ok(FeedbackValue::Bool(*b)),
        Some(Value::Number(n)) => n
            .as_f64()
            .filter(|f| f.is_finite())
            .map(FeedbackValue::Number)
            .ok_or_else(|| field_error("value", format!("`value` {n} is not a finite number"))),
        Some(Value::String(_)) => Ok(FeedbackValue::Category(
            string_field(m, "value", true, MAX_CATEGORY)?.unwrap_or_default(),
        )),
        Some(other) => Err(field_error(
            "value",
            format!("`value` must be {WANT}, not {}", json_type(other)),
        )),
    }
}

/// Parse and check a body, naming the first field that is wrong.
fn parse_body(bytes: &[u8]) -> Result<FeedbackBody, GatewayError> {
    let example = r#"{"request_id": "…", "name": "thumbs", "value": -1}"#;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(GatewayError::InvalidRequest(format!(
            "request body is empty; send a JSON object such as {example}"
        )));
    }
    let v: Value = serde_json::from_slice(bytes).map_err(|e| {
        GatewayError::InvalidRequest(format!("request body is not valid JSON: {e}"))
    })?;
    let Value::Object(m) = v else {
        return Err(GatewayError::InvalidRequest(format!(
            "request body must be a JSON object such as {example}, not {}",
            json_type(&v)
        )));
    };
    if let Some(unknown) = m.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(field_error(
            unknown,
            format!(
                "unknown field `{unknown}`; a feedback body has {}",
                FIELDS.join(", ")
            ),
        ));
    }
    let request_id = string_field(&m, "request_id", true, MAX_REQUEST_ID)?.unwrap_or_default();
    let name = string_field(&m, "name", true, MAX_NAME)?.unwrap_or_default();
    let name = label_field(name, "name")?;
    let value = value_field(&m)?;
    // An empty comment box is no comment.
    let comment = match m.get("comment") {
        Some(Value::String(c)) if c.is_empty() => None,
        _ => string_field(&m, "comment", false, MAX_COMMENT)?,
    };
    let source = match string_field(&m, "source", false, MAX_NAME)? {
        Some(s) => label_field(s, "source")?,
        None => DEFAULT_SOURCE.to_string(),
    };
    Ok(FeedbackBody {
        request_id,
        name,
        source,
        value,
        comment,
    })
}

/// The call `request_id` names that `who` may see, looked for up to [`TRACE_WAIT`]
/// (its trace may still be in the writer's queue). Not found and not visible take the
/// same path and the same time.
async fn find_call(
    store: &Arc<Store>,
    request_id: &str,
    who: &Caller,
) -> Result<FeedbackTarget, GatewayError> {
    let deadline = Instant::now() + TRACE_WAIT;
    let mut pause = FIRST_PAUSE;
    loop {
        let id = request_id.to_string();
        let targets = on_store(store, "feedback", move |s| {
            feedback_targets(s.conn()?.db(), &id)
        })
        .await?;
        if let Some(t) = targets
            .into_iter()
            .find(|t| who.may_see(t.key_id.as_deref(), t.tenant.as_deref()))
        {
            return Ok(t);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(GatewayError::UnknownRequestId(request_id.to_string()));
        }
        tokio::time::sleep(pause.min(left)).await;
        pause = (pause * 2).min(MAX_PAUSE);
    }
}

/// `POST /v1/feedback`.
pub async fn post_feedback(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match handle(&app, &headers, body).await {
        Ok(resp) => resp,
        Err(e) => error_response(&e, ClientApi::OpenAi, ""),
    }
}

async fn handle(app: &AppState, headers: &HeaderMap, body: Body) -> Result<Response, GatewayError> {
    let who = caller(app, headers)?;
    let read = body::read_body(app, headers, body).await?;
    let fb = parse_body(&read.bytes)?;
    drop(read);
    let store = app
        .store
        .clone()
        .ok_or_else(|| GatewayError::Internal("this gateway has no store for feedback".into()))?;
    let call = find_call(&store, &fb.request_id, &who).await?;
    let row = Feedback {
        trace_id: call.id,
        name: fb.name,
        source: fb.source,
        value: fb.value,
        comment: fb.comment,
        key_id: who.key_id(),
        at_ms: keel_store::prompts::now_ms(),
    };
    let actor = who.actor();
    let (row, before) = on_store(&store, "feedback", move |s| {
        let before = s.record_feedback(&row, &actor)?;
        Ok((row, before))
    })
    .await?;
    app.metrics.feedback.inc(&row.name);
    let replaced = before.is_some();
    let status = if replaced {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    let answer = json!({
        "request_id": row.trace_id,
        "name": row.name,
        "source": row.source,
        "value": row.value.to_json(),
        "replaced": replaced,
    });
    Ok((status, Json(answer)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(body: &str) -> (String, String) {
        match parse_body(body.as_bytes()) {
            Err(e) => (e.param().unwrap_or("").to_string(), e.to_string()),
            Ok(b) => panic!("accepted {body}: {b:?}"),
        }
    }

    #[test]
    fn a_good_body_is_read_with_its_defaults() {
        let b = parse_body(br#"{"request_id": "r-1", "name": "thumbs", "value": -1}"#).unwrap();
        assert_eq!(
            b,
            FeedbackBody {
                request_id: "r-1".into(),
                name: "thumbs".into(),
                source: "user".into(),
                value: FeedbackValue::Number(-1.0),
                comment: None,
            }
        );
        let b = parse_body(
            br#"{"request_id": "r-1", "name": "reason", "value": "too_long", "comment": null, "source": "support.agent-2"}"#,
        )
        .unwrap();
        assert_eq!(b.value, FeedbackValue::Category("too_long".into()));
        assert_eq!(b.source, "support.agent-2");
        let b =
            parse_body(br#"{"request_id": "r", "name": "ok", "value": true, "comment": "fine"}"#)
                .unwrap();
        assert_eq!(b.value, FeedbackValue::Bool(true));
        assert_eq!(b.comment.as_deref(), Some("fine"));
        let b =
            parse_body(br#"{"request_id": "r", "name": "ok", "value": 1, "comment": ""}"#).unwrap();
        assert_eq!(b.comment, None);
    }

    #[test]
    fn a_bad_body_names_its_field() {
        let cases: [(&str, &str, &str); 12] = [
            (
                r#"{"request_id": "r", "name": "thumbs"}"#,
                "value",
                "required",
            ),
            (
                r#"{"request_id": "r", "name": "thumbs", "value": {"a": 1}}"#,
                "value",
                "not an object",
            ),
            (
                r#"{"request_id": "r", "name": "thumbs", "value": null}"#,
                "value",
                "not null",
            ),
            (
                r#"{"request_id": "r", "name": "thumbs", "value": [1]}"#,
                "value",
                "not an array",
            ),
            (
                r#"{"request_id": "r", "name": "thumbs", "value": ""}"#,
                "value",
                "empty",
            ),
            (
                r#"{"name": "thumbs", "value": 1}"#,
                "request_id",
                "required",
            ),
            (
                r#"{"request_id": 7, "name": "thumbs", "value": 1}"#,
                "request_id",
                "a string",
            ),
            (r#"{"request_id": "r", "value": 1}"#, "name", "required"),
            (
                r#"{"request_id": "r", "name": "thumbs up", "value": 1}"#,
                "name",
                "letters",
            ),
            (
                r#"{"request_id": "r", "name": "t", "value": 1, "source": "a/b"}"#,
                "source",
                "letters",
            ),
            (
                r#"{"request_id": "r", "name": "t", "value": 1, "comment": 3}"#,
                "comment",
                "a string",
            ),
            (
                r#"{"request_id": "r", "name": "t", "value": 1, "vaule": 1}"#,
                "vaule",
                "unknown field",
            ),
        ];
        for (body, param, says) in cases {
            let (p, msg) = err(body);
            assert_eq!(p, param, "{body}: {msg}");
            assert!(msg.contains(says), "{body}: {msg}");
        }
        let long = format!(
            r#"{{"request_id": "r", "name": "{}", "value": 1}}"#,
            "n".repeat(65)
        );
        let (p, msg) = err(&long);
        assert_eq!(p, "name");
        assert!(msg.contains("at most 64"), "{msg}");
        let comment = format!(
            r#"{{"request_id": "r", "name": "t", "value": 1, "comment": "{}"}}"#,
            "é".repeat(4001)
        );
        assert_eq!(err(&comment).0, "comment");
        let ok = format!(
            r#"{{"request_id": "r", "name": "t", "value": 1, "comment": "{}"}}"#,
            "é".repeat(4000)
        );
        assert!(parse_body(ok.as_bytes()).is_ok());
        for bad in ["", "  ", "{", "[1]", "\"thumbs\""] {
            let e = parse_body(bad.as_bytes()).unwrap_err();
            assert_eq!(e.view().status, StatusCode::BAD_REQUEST, "{bad}");
            assert!(e.to_string().contains("request body"), "{bad}: {e}");
        }
    }
}
