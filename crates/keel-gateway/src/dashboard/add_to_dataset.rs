//! "Add to dataset" on the trace and review pages: a recorded call proposed as an eval
//! case for a suite (`crate::case_drafts`, provided by `keel-evals`). The proposal is a
//! draft in the store; `keel dataset pull SUITE` writes it to the suite's file, so the
//! change lands through a pull request, like prompts. Guarded like every form.

use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;

use super::html::{esc, urlenc, PageError};
use super::{access, write};
use crate::state::AppState;

/// The form, for a page showing `trace_id`; `back` is where to return (a dashboard path).
pub(crate) fn form(
    app: &AppState,
    trace_id: &str,
    token: Option<&str>,
    back: &str,
    by: Option<&str>,
) -> String {
    let Some(drafts) = &app.case_drafts else {
        return String::new();
    };
    let suites = drafts.suites(&app.config);
    if suites.is_empty() {
        return String::new();
    }
    let options: String = suites
        .iter()
        .map(|s| format!("<option value=\"{0}\">{0}</option>", esc(s)))
        .collect();
    let who = match by {
        Some(b) => format!("<input type=\"hidden\" name=\"by\" value=\"{}\">", esc(b)),
        None => {
            "<label>as <input type=\"text\" name=\"by\" required maxlength=\"64\"></label> ".into()
        }
    };
    format!(
        "<form method=\"post\" action=\"/ui/datasets/propose\" id=\"add-to-dataset\" class=\"inline\">\
         <input type=\"hidden\" name=\"token\" value=\"{}\">\
         <input type=\"hidden\" name=\"trace\" value=\"{}\">\
         <input type=\"hidden\" name=\"back\" value=\"{}\">\
         <label>Add to dataset <select name=\"suite\">{options}</select></label> {who}\
         <button type=\"submit\">Propose case</button> \
         <span class=\"hint\">a draft until <code>keel dataset pull SUITE</code> writes it to the file; \
         a reviewer's correction becomes its <code>expected</code></span></form>",
        esc(token.unwrap_or("")),
        esc(trace_id),
        esc(back)
    )
}

/// `POST /ui/datasets/propose`.
pub async fn post(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    let field = |k: &str| {
        super::html::form_field(&form, k)
            .map(|v| v.trim().to_string())
            .unwrap_or_default()
    };
    if let Err(why) = access::check_form(
        &app,
        &headers,
        Some(&field("token"))
            .filter(|t| !t.is_empty())
            .map(String::as_str),
    ) {
        return PageError::Forbidden(why).into_response();
    }
    let Some(drafts) = app.case_drafts.clone() else {
        return PageError::BadRequest(
            "this gateway cannot propose cases (run it with `keel serve`)".into(),
        )
        .into_response();
    };
    let (suite, trace, by) = (field("suite"), field("trace"), field("by"));
    if suite.is_empty() || trace.is_empty() || by.is_empty() || by.chars().count() > 64 {
        return PageError::BadRequest(
            "the form needs `suite`, `trace` and who proposes it (`by`, 1 to 64 characters)".into(),
        )
        .into_response();
    }
    // Only back to a dashboard page.
    let back = Some(field("back"))
        .filter(|b| b.starts_with("/ui/") && !b.starts_with("//"))
        .unwrap_or_else(|| format!("/ui/traces/{}", urlenc(&trace)));
    let config = app.config.clone();
    let now = keel_store::prompts::now_ms();
    let (s, t) = (suite.clone(), trace.clone());
    let done = write(&app, move |c| {
        drafts
            .propose(&config, c, &s, &t, &by, now)
            .map_err(PageError::BadRequest)
    })
    .await;
    match done {
        Ok(new) => {
            let sep = if back.contains('?') { '&' } else { '?' };
            let state = if new { "proposed" } else { "already-proposed" };
            Redirect::to(&format!("{back}{sep}case={state}&suite={}", urlenc(&suite)))
                .into_response()
        }
        Err(e) => e.into_response(),
    }
}
