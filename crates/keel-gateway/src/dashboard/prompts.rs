//! `/ui/prompts` and `/ui/prompts/{name}`: every prompt with its labels; for one prompt
//! its versions, where each label points and how it moved (who, when, why), a diff
//! between two versions (`?a=1&b=2`, default the two newest), and its releases with
//! their traffic, cost, latency, online quality and eval runs (the lineage).

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::response::Html;
use keel_store::{PromptVersion, ReleaseFilter};
use serde_json::Value;

use super::html::{esc, ms, opt, pct, shell, table, urlenc, usd, when, PageError};
use super::{read, Params};
use crate::state::AppState;

/// Most releases read for one prompt's lineage.
const RELEASES: usize = 200;

/// `GET /ui/prompts`.
pub async fn list(State(app): State<Arc<AppState>>) -> Result<Html<String>, PageError> {
    let prompts = read(&app, |c| Ok(keel_store::list_prompts(c)?)).await?;
    let rows: Vec<Vec<String>> = prompts
        .iter()
        .map(|p| {
            vec![
                format!(
                    "<a href=\"/ui/prompts/{}\">{}</a>",
                    esc(&p.name),
                    esc(&p.name)
                ),
                format!("v{}", p.latest_version),
                p.labels
                    .iter()
                    .map(|(l, v)| format!("<span class=\"tag label\">{} → v{v}</span>", esc(l)))
                    .collect::<Vec<_>>()
                    .join(" "),
                when(p.last_change_ms),
            ]
        })
        .collect();
    let body = format!(
        "<p class=\"hint\">Prompts as code: pushed with <code>keel prompt push</code>; labels move only with \
         <code>keel prompt label</code> or <code>rollback</code>, each move audited.</p>{}",
        table("prompts", &["prompt", "latest", "labels", "last change (UTC)"], &rows)
    );
    Ok(shell("Prompts", "/ui/prompts", &body))
}

/// A version's content, pretty-printed (what the diff compares).
fn content(v: &PromptVersion) -> String {
    serde_json::from_str::<Value>(&v.content_json)
        .ok()
        .and_then(|j| serde_json::to_string_pretty(&j).ok())
        .unwrap_or_else(|| v.content_json.clone())
}

/// A line diff of two versions' contents.
fn diff(a: &PromptVersion, b: &PromptVersion) -> String {
    let (ta, tb) = (content(a), content(b));
    let d = similar::TextDiff::from_lines(&ta, &tb);
    let mut out = format!(
        "<pre class=\"diff\" id=\"diff\"><span class=\"hdr\">--- v{}\n+++ v{}</span>\n",
        a.version, b.version
    );
    for change in d.iter_all_changes() {
        let (class, sign) = match change.tag() {
            similar::ChangeTag::Delete => ("del", '-'),
            similar::ChangeTag::Insert => ("ins", '+'),
            similar::ChangeTag::Equal => ("eq", ' '),
        };
        let line = change.value();
        let _ = writeln!(
            out,
            "<span class=\"{class}\">{sign} {}</span>",
            esc(line.trim_end_matches('\n'))
        );
    }
    out.push_str("</pre>");
    out
}

fn version_param(params: &Params, key: &str) -> Result<Option<i64>, PageError> {
    params
        .get(key)
        .filter(|v| !v.is_empty())
        .map(|v| {
            v.trim_start_matches('v')
                .parse()
                .map_err(|_| PageError::BadRequest(format!("{key}={v} is not a version number")))
        })
        .transpose()
}

/// `GET /ui/prompts/{name}`.
pub async fn detail(
    State(app): State<Arc<AppState>>,
    Path(name): Path<String>,
    Query(params): Query<Params>,
) -> Result<Html<String>, PageError> {
    let (a, b) = (version_param(&params, "a")?, version_param(&params, "b")?);
    let n = name.clone();
    let (versions, labels, moves, releases) = read(&app, move |c| {
        let releases = keel_store::list_releases(
            c,
            &ReleaseFilter {
                limit: RELEASES,
                ..ReleaseFilter::default()
            },
        )?;
        Ok((
            keel_store::versions(c, &n)?,
            keel_store::all_labels(c)?
                .into_iter()
                .filter(|l| l.name == n)
                .collect::<Vec<_>>(),
            keel_store::label_moves(c, &n)?,
            releases
                .into_iter()
                .filter(|r| r.release.prompt_name == n)
                .collect::<Vec<_>>(),
        ))
    })
    .await?;
    if versions.is_empty() {
        return Err(PageError::NotFound(format!(
            "no prompt {name} in the store (`keel prompt push` records it)"
        )));
    }
    let version_rows: Vec<Vec<String>> = versions
        .iter()
        .take(100)
        .map(|v| {
            let here: Vec<String> = labels
                .iter()
                .filter(|l| l.version == v.version)
                .map(|l| format!("<span class=\"tag label\">{}</span>", esc(&l.label)))
                .collect();
            vec![
                format!("v{}", v.version),
                here.join(" "),
                when(v.created_at_ms),
                esc(&v.author),
                esc(&v.reason),
                opt(v.commit_id.as_deref()),
                format!(
                    "<code>{}</code>",
                    esc(v.content_hash.get(..12).unwrap_or(&v.content_hash))
                ),
            ]
        })
        .collect();
    let move_rows: Vec<Vec<String>> = moves
        .iter()
        .take(100)
        .map(|m| {
            vec![
                when(m.at_ms),
                esc(&m.label),
                opt(m.from_version.map(|v| format!("v{v}"))),
                format!("v{}", m.to_version),
                esc(&m.actor),
                esc(&m.reason),
            ]
        })
        .collect();
    // The diff: ?a and ?b, else the two newest versions.
    let newest = versions.first().map(|v| v.version);
    let b = b.or(newest);
    let a = a.or_else(|| versions.get(1).map(|v| v.version)).or(b);
    let find = |want: Option<i64>| versions.iter().find(|v| Some(v.version) == want);
    let diff_html = match (find(a), find(b)) {
        (Some(va), Some(vb)) => diff(va, vb),
        _ => "<p class=\"error\">No such version to compare.</p>".into(),
    };
    let mut picker = format!(
        "<form method=\"get\" class=\"filters\" action=\"/ui/prompts/{}\">",
        esc(&name)
    );
    for (key, cur) in [("a", a), ("b", b)] {
        let _ = write!(picker, "<label>{key} <select name=\"{key}\">");
        for v in &versions {
            let sel = if Some(v.version) == cur {
                " selected"
            } else {
                ""
            };
            let _ = write!(
                picker,
                "<option value=\"{0}\"{sel}>v{0}</option>",
                v.version
            );
        }
        picker.push_str("</select></label>");
    }
    picker.push_str("<button type=\"submit\">Diff</button></form>");
    let release_rows: Vec<Vec<String>> = releases
        .iter()
        .map(|r| {
            let t = &r.traffic;
            let evals = r
                .evals
                .iter()
                .map(|e| {
                    let rate = if e.cases > 0 {
                        e.passed as f64 / e.cases as f64
                    } else {
                        0.0
                    };
                    // The pass rate means little without the gate it was judged by.
                    format!(
                        "<a href=\"/ui/evals#{}\">{}</a> {} · gate {}",
                        urlenc(&e.suite),
                        esc(&e.suite),
                        pct(rate),
                        super::evals::gate(e.gate_passed)
                    )
                })
                .collect::<Vec<_>>()
                .join("<br>");
            vec![
                format!("<code>{}</code>", esc(&r.release.id)),
                format!("v{}", r.release.prompt_version),
                format!(
                    "<a href=\"/ui/traces?function={}&amp;variant={}\">{} / {}</a>",
                    urlenc(&r.release.function),
                    urlenc(&r.release.variant),
                    esc(&r.release.function),
                    esc(&r.release.variant)
                ),
                esc(&r.release.model),
                when(r.created_at_ms),
                opt(r.last_served_ms.map(when)),
                t.requests.to_string(),
                opt(t.error_rate.map(pct)),
                usd(t.cost.nanos()),
                opt(t.cost_per_call.map(|c| usd(c.nanos()))),
                opt(t
                    .latency_ms
                    .map(|p| format!("{} / {}", ms(p.p50), ms(p.p95)))),
                online_pass(r.quality.as_ref()),
                r.quality
                    .as_ref()
                    .map_or_else(|| "—".into(), super::functions::feedback),
                if evals.is_empty() {
                    "—".into()
                } else {
                    evals
                },
            ]
        })
        .collect();
    let body = format!(
        "<p><a class=\"playground\" href=\"/ui/playground/{}\">Edit a draft in the playground</a></p>\
         <h2>Labels and versions</h2>{}\
         <h2>Label history</h2>{}\
         <h2>Diff</h2>{picker}{diff_html}\
         <h2>Releases</h2><p class=\"hint\">Each release is a prompt version × model × parameters, with its \
         traffic over all time, its online quality (live calls judged by online evals, and users' feedback) and its newest eval runs.</p>{}",
        name.split('/').map(urlenc).collect::<Vec<_>>().join("/"),
        table("versions", &["version", "labels", "created (UTC)", "author", "reason", "commit", "hash"], &version_rows),
        table("label-moves", &["at (UTC)", "label", "from", "to", "actor", "reason"], &move_rows),
        table(
            "releases",
            &["release", "version", "function / variant", "model", "deployed", "last served", "requests", "errors", "spend", "per call", "p50 / p95", "online pass (95% CI)", "feedback +", "evals"],
            &release_rows
        ),
    );
    Ok(shell(&format!("Prompt {name}"), "/ui/prompts", &body))
}

/// A release's online pass rate with its interval and the calls judged, as `keel releases`
/// shows it.
fn online_pass(q: Option<&keel_store::quality_figures::QualityRow>) -> String {
    match q {
        Some(q) if q.judged > 0 => format!(
            "{} of {}",
            esc(&keel_store::quality_figures::format_rate(
                q.pass_rate,
                q.pass_rate_low,
                q.pass_rate_high
            )),
            q.judged
        ),
        _ => "—".into(),
    }
}
