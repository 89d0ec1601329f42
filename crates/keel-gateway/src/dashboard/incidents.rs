//! `/ui/incidents`: open and recent incidents; `/ui/incidents/{id}`: one incident's
//! timeline drawn over its scope's metric charts (change points and changes marked on the
//! time axis), its suspects with their revert commands, notes, and the playbook of its
//! kind — the same facts as `keel incident show`, built by `keel-incidents`.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Form;
use keel_incidents::series::MetricSeries;
use keel_incidents::timeline::{fmt, Timeline};
use keel_incidents::{playbook, suspects, timeline};
use keel_store::incident_series::BUCKET_MS;

use super::charts::{lines_marked, Mark, Series};
use super::html::{esc, form_field, shell, table, when, PageError};
use super::{access, read, write_mut};
use crate::state::AppState;

/// Most incidents listed.
const LIST: usize = 100;

/// The charts drawn first, when they have points (metrics with a change point come
/// before all of them).
const CHARTED: [&str; 5] = [
    "error_rate",
    "latency_p95_ms",
    "spend_usd_per_hour",
    "tokens_per_call",
    "online_pass_rate",
];

pub async fn list(State(app): State<Arc<AppState>>) -> Result<Html<String>, PageError> {
    let all = read(&app, |c| Ok(keel_store::incidents::list(c, true, LIST)?)).await?;
    let rows: Vec<Vec<String>> = all
        .iter()
        .map(|i| {
            vec![
                format!(
                    "<a class=\"incident-link\" href=\"/ui/incidents/{0}\">{0}</a>",
                    i.id
                ),
                format!(
                    "<span class=\"tag {}\">{}</span>",
                    if i.status == "open" { "error" } else { "ok" },
                    esc(&i.status)
                ),
                format!("<span class=\"severity\">{}</span>", esc(&i.severity)),
                esc(i.scope.as_deref().unwrap_or("global")),
                esc(i.kind.as_deref().unwrap_or("—")),
                when(i.opened_at_ms),
                esc(&i.title),
            ]
        })
        .collect();
    let open = all.iter().filter(|i| i.status == "open").count();
    let body = format!(
        "<p id=\"open-count\" data-open=\"{open}\">{open} open. Open one with <code>keel incident \
         open --title T --kind K --scope function=F</code>, or let an alert rule with \
         <code>open_incident = true</code> open it.</p>{}",
        table(
            "incidents",
            &["id", "status", "severity", "scope", "kind", "opened", "title"],
            &rows
        )
    );
    Ok(shell("Incidents", "/ui/incidents", &body))
}

/// Most characters of a note or summary from the page.
const MAX_TEXT: usize = 4_000;

/// `POST /ui/incidents/{id}`: `action=note` (with `text`) or `action=close` (with the
/// summary in `text`), by `author`; audited like `keel incident note|close`.
pub async fn post(
    State(app): State<Arc<AppState>>,
    Path(id): Path<i64>,
    headers: HeaderMap,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    let field = |k: &str| {
        form_field(&form, k)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    if let Err(why) = access::check_form(&app, &headers, field("token").as_deref()) {
        return PageError::Forbidden(why).into_response();
    }
    let (Some(action), Some(text), Some(author)) =
        (field("action"), field("text"), field("author"))
    else {
        return PageError::BadRequest(
            "the form needs `action` (note or close), `text` and `author` (who you are)".into(),
        )
        .into_response();
    };
    if text.chars().count() > MAX_TEXT || author.chars().count() > 100 {
        return PageError::BadRequest(format!(
            "the text is limited to {MAX_TEXT} characters and the author to 100"
        ))
        .into_response();
    }
    let now = keel_store::prompts::now_ms();
    let done = write_mut(&app, move |c| {
        match action.as_str() {
            "note" => keel_store::incidents::note(c, id, "note", &author, &text, now)?,
            "close" => {
                keel_store::incidents::close(c, id, &author, &text, now)?;
            }
            other => {
                return Err(PageError::BadRequest(format!(
                    "unknown action `{other}`: use note or close"
                )))
            }
        }
        Ok(())
    })
    .await;
    match done {
        Ok(()) => Redirect::to(&format!("/ui/incidents/{id}")).into_response(),
        Err(e) => e.into_response(),
    }
}

/// The note and close forms of an incident page.
fn forms(id: i64, open: bool, token: Option<&str>) -> String {
    let token = token
        .map(|t| {
            format!(
                "<input type=\"hidden\" name=\"token\" value=\"{}\">",
                esc(t)
            )
        })
        .unwrap_or_default();
    let mut out = format!(
        "<form method=\"post\" action=\"/ui/incidents/{id}\" id=\"note-form\">{token}\
         <input type=\"hidden\" name=\"action\" value=\"note\">\
         <input name=\"author\" placeholder=\"your name\" required maxlength=\"100\"> \
         <input name=\"text\" placeholder=\"a note or an action taken\" required maxlength=\"{MAX_TEXT}\" size=\"60\"> \
         <button>Add note</button></form>"
    );
    if open {
        out.push_str(&format!(
            "<form method=\"post\" action=\"/ui/incidents/{id}\" id=\"close-form\">{token}\
             <input type=\"hidden\" name=\"action\" value=\"close\">\
             <input name=\"author\" placeholder=\"your name\" required maxlength=\"100\"> \
             <input name=\"text\" placeholder=\"summary: what happened and how it was resolved\" required maxlength=\"{MAX_TEXT}\" size=\"60\"> \
             <button>Close incident</button></form>"
        ));
    }
    out
}

pub async fn detail(
    State(app): State<Arc<AppState>>,
    Path(id): Path<i64>,
    headers: HeaderMap,
) -> Result<Html<String>, PageError> {
    let config = app.config.clone();
    let built = read(&app, move |c| {
        let Some((inc, events)) = keel_store::incidents::get(c, id)? else {
            return Ok(None);
        };
        let now = keel_store::prompts::now_ms();
        let tl = timeline::build(c, &config, &inc, &events, now)?;
        Ok(Some((inc, tl)))
    })
    .await?;
    let Some((inc, tl)) = built else {
        return Err(PageError::NotFound(format!(
            "there is no incident {id}; see /ui/incidents"
        )));
    };
    let sus = suspects::rank(
        &tl,
        inc.kind.as_deref(),
        inc.scope.as_deref(),
        inc.id,
        inc.first_signal_ms,
    );
    let dir = app
        .config
        .source
        .parent()
        .map(std::path::Path::to_path_buf)
        .unwrap_or_default();
    let book = inc.kind.as_deref().and_then(|k| playbook::find(&dir, k));

    let mut body = format!(
        "<p id=\"incident\" data-status=\"{}\">{} · {} · scope <b>{}</b> · kind <b>{}</b> · opened {} by {}{}</p>",
        esc(&inc.status),
        esc(&inc.status),
        esc(&inc.severity),
        esc(inc.scope.as_deref().unwrap_or("global")),
        esc(inc.kind.as_deref().unwrap_or("—")),
        when(inc.opened_at_ms),
        esc(&inc.opened_by),
        inc.summary
            .as_ref()
            .map(|s| format!(" · summary: {}", esc(s)))
            .unwrap_or_default()
    );
    body.push_str("<h2>Metrics</h2>");
    body.push_str(&charts(&tl));
    body.push_str("<h2>Suspects</h2>");
    let rows: Vec<Vec<String>> = sus
        .iter()
        .take(10)
        .map(|s| {
            vec![
                when(s.at_ms),
                format!("{} <code>{}</code>", esc(&s.action), esc(&s.target)),
                esc(&s.actor),
                esc(&s.why),
                s.revert
                    .as_ref()
                    .map(|r| format!("<code class=\"revert\">{}</code>", esc(r)))
                    .unwrap_or_else(|| "—".into()),
            ]
        })
        .collect();
    body.push_str(&table(
        "suspects",
        &["when", "change", "by", "why", "revert"],
        &rows,
    ));
    body.push_str("<h2>Timeline</h2>");
    let rows: Vec<Vec<String>> = tl
        .entries
        .iter()
        .map(|e| {
            let traces: Vec<String> = e
                .traces
                .iter()
                .map(|t| {
                    format!(
                        "<a class=\"trace-link\" href=\"/ui/traces/{0}\">{0}</a>",
                        esc(t)
                    )
                })
                .collect();
            vec![
                when(e.at_ms),
                format!("<span class=\"tag {0}\">{0}</span>", esc(&e.kind)),
                esc(&e.title),
                format!(
                    "{}{}",
                    esc(&e.detail),
                    if traces.is_empty() {
                        String::new()
                    } else {
                        format!("<br>traces: {}", traces.join(" "))
                    }
                ),
                esc(e.actor.as_deref().unwrap_or("")),
            ]
        })
        .collect();
    body.push_str(&table(
        "timeline",
        &["when", "kind", "what", "detail", "by"],
        &rows,
    ));
    body.push_str(&forms(
        inc.id,
        inc.status == "open",
        access::form_token(&app, &headers).as_deref(),
    ));
    body.push_str("<h2>Playbook</h2>");
    match book {
        Some(b) => body.push_str(&format!(
            "<p class=\"muted\">{} ({})</p><pre class=\"playbook\" id=\"playbook\">{}</pre>",
            esc(&b.kind),
            esc(&b.source),
            esc(&b.markdown)
        )),
        None => body.push_str(
            "<p class=\"empty\">No playbook: this incident has no kind with one (see playbooks/).</p>",
        ),
    }
    Ok(shell(
        &format!("Incident {}: {}", inc.id, inc.title),
        "/ui/incidents",
        &body,
    ))
}

/// The scope's charts with the change points (`cp`), changes and actions marked.
fn charts(tl: &Timeline) -> String {
    let start = tl.since_ms - tl.since_ms.rem_euclid(BUCKET_MS);
    let n = usize::try_from((tl.until_ms - start) / BUCKET_MS + 1)
        .unwrap_or(1)
        .clamp(1, 2_000);
    let index = |ms: i64| {
        usize::try_from((ms - start).max(0) / BUCKET_MS)
            .unwrap_or(0)
            .min(n - 1)
    };
    let labels: Vec<String> = (0..n)
        .map(|i| {
            let t = when(start + i as i64 * BUCKET_MS);
            t.rsplit(' ').next().unwrap_or(&t).to_string()
        })
        .collect();
    let change_marks: Vec<Mark<'_>> = tl
        .entries
        .iter()
        .filter(|e| e.kind == "change" || e.kind == "action")
        .map(|e| Mark {
            at: index(e.at_ms),
            class: if e.kind == "change" {
                "change"
            } else {
                "action"
            },
            title: e.title.clone(),
        })
        .collect();
    let mut order: Vec<&MetricSeries> = tl
        .metrics
        .iter()
        .filter(|m| !m.change_points.is_empty())
        .collect();
    for name in CHARTED {
        if let Some(m) = tl.metrics.iter().find(|m| m.metric == name) {
            if m.change_points.is_empty() && !m.points.is_empty() {
                order.push(m);
            }
        }
    }
    if order.is_empty() {
        return "<p class=\"empty\">No traffic in the scope over the window.</p>".into();
    }
    let mut out = String::new();
    for m in order {
        let mut points = vec![None; n];
        for (b, v) in &m.points {
            points[index(*b)] = Some(*v);
        }
        let mut marks: Vec<Mark<'_>> = m
            .change_points
            .iter()
            .map(|c| Mark {
                at: index(c.point.at_ms),
                class: "cp",
                title: format!(
                    "{} shifted {} → {}",
                    m.metric,
                    fmt(c.point.before),
                    fmt(c.point.after)
                ),
            })
            .collect();
        marks.extend(change_marks.iter().map(|c| Mark {
            at: c.at,
            class: c.class,
            title: c.title.clone(),
        }));
        out.push_str(&format!(
            "<div class=\"metric\" data-metric=\"{}\" data-change-points=\"{}\">{}</div>",
            esc(&m.metric),
            m.change_points.len(),
            lines_marked(
                &m.metric,
                &labels,
                &[Series {
                    name: &m.metric,
                    class: "s1",
                    points,
                }],
                &marks,
                &|v| fmt(v),
            )
        ));
    }
    out
}
