//! `/ui/traces`: search the traces. Every filter is a GET parameter of one form (so a
//! search is a link that can be shared), mapped onto the store's `TraceFilter`; results
//! are newest first, [`PAGE`] per page. No count of all matches is shown: on millions of
//! traces counting would cost more than the search; the pager says whether there is more.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::response::Html;
use keel_core::money::Nanos;
use keel_core::trace::{Origin, TraceRecord, TraceStatus};
use keel_store::TraceFilter;

use super::html::{esc, ms, opt, shell, table, urlenc, usd, when, PageError};
use super::{read, Params, WINDOWS};
use crate::state::AppState;

/// Traces per page.
pub const PAGE: usize = 50;

/// How long one search may scan. Indexed filters answer well within it; a filter that
/// matches almost nothing in a huge window (a cost above any call's) stops here and says
/// so, rather than reading millions of traces (keel-store search.rs).
const SEARCH_BUDGET: std::time::Duration = std::time::Duration::from_millis(150);

/// The text filters: (parameter, label).
const TEXT: [(&str, &str); 10] = [
    ("id", "request id"),
    ("user", "user"),
    ("session", "session"),
    ("tenant", "tenant"),
    ("feature", "feature"),
    ("model", "model"),
    ("function", "function"),
    ("variant", "variant"),
    ("error_class", "error class"),
    ("prompt_version", "prompt version"),
];

/// The range filters: (parameter, label).
const RANGES: [(&str, &str); 4] = [
    ("min_cost", "min cost $"),
    ("max_cost", "max cost $"),
    ("min_latency", "min latency ms"),
    ("max_latency", "max latency ms"),
];

fn text(params: &Params, key: &str) -> Option<String> {
    params
        .get(key)
        .map(|v| v.trim())
        .filter(|v| !v.is_empty())
        .map(str::to_string)
}

fn number<T: std::str::FromStr>(params: &Params, key: &str) -> Result<Option<T>, PageError> {
    text(params, key)
        .map(|v| {
            v.parse()
                .map_err(|_| PageError::BadRequest(format!("{key}={v} is not a number")))
        })
        .transpose()
}

fn dollars(params: &Params, key: &str) -> Result<Option<i64>, PageError> {
    number::<f64>(params, key)?
        .map(|d| {
            Nanos::from_dollars(d)
                .map(|n| n.0)
                .ok_or_else(|| PageError::BadRequest(format!("{key} is not an amount")))
        })
        .transpose()
}

/// The store filter the parameters ask for (the page number aside).
pub fn filter(params: &Params, now_ms: i64) -> Result<TraceFilter, PageError> {
    let since_ms = match text(params, "since").as_deref() {
        None | Some("all") => None,
        Some(s) => match WINDOWS.iter().find(|(n, _, _)| *n == s) {
            Some((_, span, _)) => Some(now_ms - span),
            None => {
                return Err(PageError::BadRequest(format!(
                    "since={s} is not a window; use 1h, 24h, 7d, 30d or all"
                )))
            }
        },
    };
    let status = match text(params, "status") {
        None => None,
        Some(s) => Some(TraceStatus::parse(&s).ok_or_else(|| {
            PageError::BadRequest(format!("status={s}: use ok, error or client_disconnected"))
        })?),
    };
    let origin = match text(params, "origin") {
        None => None,
        Some(s) => Some(Origin::parse(&s).ok_or_else(|| {
            PageError::BadRequest(format!("origin={s}: use live, eval, replay or shadow"))
        })?),
    };
    Ok(TraceFilter {
        since_ms,
        id: text(params, "id"),
        user: text(params, "user"),
        session: text(params, "session"),
        tenant: text(params, "tenant"),
        feature: text(params, "feature"),
        model: text(params, "model"),
        function: text(params, "function"),
        variant: text(params, "variant"),
        error_class: text(params, "error_class"),
        prompt_version: number(params, "prompt_version")?,
        status,
        origin,
        min_cost_nanos: dollars(params, "min_cost")?,
        max_cost_nanos: dollars(params, "max_cost")?,
        min_latency_ms: number(params, "min_latency")?,
        max_latency_ms: number(params, "max_latency")?,
        limit: PAGE + 1,
        ..TraceFilter::default()
    })
}

fn select(name: &str, current: Option<&str>, choices: &[&str]) -> String {
    let mut out = format!("<select name=\"{name}\"><option value=\"\">any</option>");
    for c in choices {
        let sel = if current == Some(c) { " selected" } else { "" };
        let _ = write!(out, "<option{sel}>{c}</option>");
    }
    out.push_str("</select>");
    out
}

fn form(params: &Params) -> String {
    let mut out = String::from("<form method=\"get\" action=\"/ui/traces\" class=\"filters\">");
    let since = params.get("since").map_or("all", String::as_str);
    out.push_str("<label>window <select name=\"since\">");
    for w in ["all", "1h", "24h", "7d", "30d"] {
        let sel = if since == w { " selected" } else { "" };
        let _ = write!(out, "<option{sel}>{w}</option>");
    }
    out.push_str("</select></label>");
    for (key, label) in TEXT.iter().chain(RANGES.iter()) {
        let _ = write!(
            out,
            "<label>{label} <input name=\"{key}\" value=\"{}\"></label>",
            esc(params.get(*key).map_or("", String::as_str))
        );
    }
    let _ = write!(
        out,
        "<label>status {}</label><label>origin {}</label>",
        select(
            "status",
            params.get("status").map(String::as_str),
            &["ok", "error", "client_disconnected"]
        ),
        select(
            "origin",
            params.get("origin").map(String::as_str),
            &["live", "eval", "replay", "shadow"]
        ),
    );
    out.push_str("<button type=\"submit\">Search</button> <a href=\"/ui/traces\">clear</a></form>");
    out
}

fn row(t: &TraceRecord) -> Vec<String> {
    let tokens = match (t.input_tokens, t.output_tokens) {
        (None, None) => "—".to_string(),
        (i, o) => format!("{} → {}", i.unwrap_or(0), o.unwrap_or(0)),
    };
    let cost = match (t.cost, t.unpriced) {
        (_, true) => "<span class=\"tag warn\">unpriced</span>".to_string(),
        (Some(c), false) => usd(c),
        (None, false) => "—".to_string(),
    };
    let function = match (&t.function, &t.variant) {
        (Some(f), Some(v)) => format!("{} / {}", esc(f), esc(v)),
        (Some(f), None) => esc(f),
        _ => "—".into(),
    };
    vec![
        when(t.started_at_ms),
        format!(
            "<a class=\"trace-link\" href=\"/ui/traces/{}\"><code>{}</code></a>",
            urlenc(&t.id),
            esc(&t.id)
        ),
        opt(t.model_requested.as_deref()),
        function,
        opt(t.tenant.as_deref()),
        opt(t.feature.as_deref()),
        opt(t.user.as_deref()),
        format!(
            "<span class=\"tag {s}\">{s}</span>{}",
            t.error_class
                .as_deref()
                .map(|c| format!(" <code>{}</code>", esc(c)))
                .unwrap_or_default(),
            s = t.status.as_str()
        ),
        tokens,
        cost,
        ms(t.latency_ms),
    ]
}

/// The same search on another page.
fn page_link(params: &Params, page: usize, label: &str) -> String {
    let mut q: Vec<String> = params
        .iter()
        .filter(|(k, v)| k.as_str() != "page" && !v.is_empty())
        .map(|(k, v)| format!("{}={}", urlenc(k), urlenc(v)))
        .collect();
    q.sort();
    q.push(format!("page={page}"));
    format!("<a href=\"/ui/traces?{}\">{label}</a>", esc(&q.join("&")))
}

/// `GET /ui/traces`.
pub async fn page(
    State(app): State<Arc<AppState>>,
    Query(params): Query<Params>,
) -> Result<Html<String>, PageError> {
    let mut f = filter(&params, keel_store::prompts::now_ms())?;
    let page_no: usize = number(&params, "page")?.unwrap_or(1).max(1);
    f.offset = (page_no - 1).saturating_mul(PAGE);
    let found = read(&app, move |c| {
        Ok(keel_store::search_traces(c, &f, SEARCH_BUDGET)?)
    })
    .await?;
    let mut traces = found.traces;
    let more = traces.len() > PAGE;
    traces.truncate(PAGE);
    let rows: Vec<Vec<String>> = traces.iter().map(row).collect();
    let mut pager = String::from("<p class=\"pager\">");
    if page_no > 1 {
        pager.push_str(&page_link(&params, page_no - 1, "← newer"));
    }
    let _ = write!(pager, " page {page_no} ");
    if more {
        pager.push_str(&page_link(&params, page_no + 1, "older →"));
    }
    pager.push_str("</p>");
    let stopped = if found.complete {
        String::new()
    } else {
        format!(
            "<p id=\"search-stopped\" class=\"warn\">The search stopped after {} ms: these are \
             the newest matches among the traces it reached; older traces were not all looked \
             at. Pick a shorter window or add a filter (user, tenant, feature, function, error \
             class) to search further.</p>",
            SEARCH_BUDGET.as_millis()
        )
    };
    let body = format!(
        "{}{stopped}<p id=\"trace-count\" data-count=\"{n}\">{n} trace{s} on this page{more}</p>{}{pager}",
        form(&params),
        table(
            "traces",
            &[
                "started (UTC)",
                "request id",
                "model",
                "function / variant",
                "tenant",
                "feature",
                "user",
                "status",
                "tokens in → out",
                "cost",
                "latency"
            ],
            &rows
        ),
        n = traces.len(),
        s = if traces.len() == 1 { "" } else { "s" },
        more = if more { " (more on the next page)" } else { "" },
    );
    Ok(shell("Traces", "/ui/traces", &body))
}
