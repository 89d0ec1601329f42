//! `/ui/evals` and `/ui/evals/compare`: eval runs per suite with their pass-rate trend,
//! and two runs side by side, case by case (`?a=RUN&b=RUN`), filterable to the cases
//! that regressed (`&only=regressions`: passed in `a`, failed in `b`).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::response::Html;
use keel_store::evals::{EvalResult, EvalRun};

use super::charts::bars;
use super::html::{esc, ms, pct, shell, table, urlenc, when, PageError};
use super::{read, Params};
use crate::state::AppState;

/// Most runs read for the runs page.
const RUNS: usize = 500;
/// Runs per suite in its trend chart and its table.
const PER_SUITE: usize = 30;

fn rate(r: &EvalRun) -> f64 {
    if r.cases > 0 {
        r.passed as f64 / r.cases as f64
    } else {
        0.0
    }
}

fn target(r: &EvalRun) -> String {
    let x = &r.run;
    let mut parts = Vec::new();
    if let Some(f) = &x.function {
        parts.push(match &x.variant {
            Some(v) => format!("{f} / {v}"),
            None => f.clone(),
        });
    }
    if let (Some(p), Some(v)) = (&x.prompt_name, x.prompt_version) {
        parts.push(format!("{p} v{v}"));
    }
    if let Some(m) = &x.model {
        parts.push(m.clone());
    }
    esc(&parts.join(" · "))
}

/// A run's gate verdict as a tag (shared with the prompt page's release table).
pub(crate) fn gate(g: Option<bool>) -> String {
    match g {
        Some(true) => "<span class=\"tag ok\">passed</span>".into(),
        Some(false) => "<span class=\"tag error\">failed</span>".into(),
        None => "—".into(),
    }
}

fn compare_href(a: &str, b: &str) -> String {
    format!("/ui/evals/compare?a={}&amp;b={}", urlenc(a), urlenc(b))
}

/// `GET /ui/evals`.
pub async fn runs(State(app): State<Arc<AppState>>) -> Result<Html<String>, PageError> {
    let runs = read(&app, |c| {
        Ok(keel_store::evals::list_eval_runs(c, None, RUNS)?)
    })
    .await?;
    let mut suites: BTreeMap<&str, Vec<&EvalRun>> = BTreeMap::new();
    for r in &runs {
        suites.entry(r.run.suite.as_str()).or_default().push(r);
    }
    let mut body = String::from(
        "<p class=\"hint\">Runs recorded by <code>keel eval run</code>. Compare any run with the one before it, \
         or pick two below.</p>",
    );
    if suites.is_empty() {
        body.push_str(
            "<p class=\"empty\">No eval runs yet: try <code>keel eval run support</code>.</p>",
        );
    }
    for (suite, list) in &suites {
        // `list` is newest first; the chart reads oldest to newest.
        let recent: Vec<&&EvalRun> = list.iter().take(PER_SUITE).collect();
        let labels: Vec<String> = recent
            .iter()
            .rev()
            .map(|r| when(r.run.started_at_ms))
            .collect();
        let values: Vec<f64> = recent.iter().rev().map(|r| rate(r)).collect();
        let chart = bars(&format!("{suite}: pass rate"), &labels, &values, &|v| {
            pct(v)
        });
        let rows: Vec<Vec<String>> = recent
            .iter()
            .enumerate()
            .map(|(i, r)| {
                // A run with a baseline compares with it; others with the run before.
                let prev = match &r.baseline_run {
                    Some(b) => Some((b.clone(), "compare baseline", "vs baseline")),
                    None => list
                        .get(i + 1)
                        .map(|p| (p.run.id.clone(), "compare", "vs previous")),
                };
                vec![
                    format!("<code>{}</code>", esc(&r.run.id)),
                    when(r.run.started_at_ms),
                    esc(&r.run.role),
                    target(r),
                    format!("{}/{}", r.passed, r.cases),
                    pct(rate(r)),
                    gate(r.gate_passed),
                    esc(&r.status),
                    prev.map_or("—".into(), |(p, class, label)| {
                        format!(
                            "<a class=\"{class}\" href=\"{}\">{label}</a>",
                            compare_href(&p, &r.run.id)
                        )
                    }),
                ]
            })
            .collect();
        let _ = write!(
            body,
            "<section id=\"{}\"><h2>Suite {}</h2><div class=\"charts\">{chart}</div>{}</section>",
            esc(suite),
            esc(suite),
            table(
                &format!("runs-{suite}"),
                &[
                    "run",
                    "started (UTC)",
                    "role",
                    "target",
                    "passed",
                    "rate",
                    "gate",
                    "status",
                    "compare"
                ],
                &rows
            )
        );
    }
    if runs.len() >= 2 {
        let options: String = runs
            .iter()
            .take(100)
            .map(|r| {
                format!(
                    "<option value=\"{}\">{} · {} · {}</option>",
                    esc(&r.run.id),
                    esc(&r.run.suite),
                    when(r.run.started_at_ms),
                    esc(&r.run.id)
                )
            })
            .collect();
        let _ = write!(
            body,
            "<h2>Compare two runs</h2><form method=\"get\" action=\"/ui/evals/compare\" class=\"filters\">\
             <label>a (before) <select name=\"a\">{options}</select></label>\
             <label>b (after) <select name=\"b\">{options}</select></label>\
             <label><input type=\"checkbox\" name=\"only\" value=\"regressions\"> regressions only</label>\
             <button type=\"submit\">Compare</button></form>"
        );
    }
    Ok(shell("Evals", "/ui/evals", &body))
}

/// How a case changed from `a` to `b`.
fn change(a: Option<&EvalResult>, b: Option<&EvalResult>) -> &'static str {
    match (a.map(|r| r.pass), b.map(|r| r.pass)) {
        (Some(true), Some(false)) => "regression",
        (Some(false), Some(true)) => "fixed",
        (Some(_), None) => "only in a",
        (None, Some(_)) => "only in b",
        _ => "same",
    }
}

fn side(r: Option<&EvalResult>) -> [String; 3] {
    match r {
        None => ["—".into(), "—".into(), "—".into()],
        Some(r) => [
            format!(
                "<span class=\"tag {c}\">{c}</span> {:.2}",
                r.score,
                c = if r.pass { "pass" } else { "fail" }
            ),
            format!(
                "<pre class=\"cell\">{}</pre>{}",
                esc(r.output.as_deref().or(r.error.as_deref()).unwrap_or("")),
                r.trace_id.as_deref().map_or(String::new(), |t| format!(
                    "<a href=\"/ui/traces/{}\">trace</a>",
                    urlenc(t)
                ))
            ),
            ms(r.latency_ms),
        ],
    }
}

/// `GET /ui/evals/compare?a=RUN&b=RUN[&only=regressions]`.
pub async fn compare(
    State(app): State<Arc<AppState>>,
    Query(params): Query<Params>,
) -> Result<Html<String>, PageError> {
    let (Some(a), Some(b)) = (params.get("a").cloned(), params.get("b").cloned()) else {
        return Err(PageError::BadRequest("give two runs: ?a=RUN&b=RUN".into()));
    };
    let only_regressions = params.get("only").is_some_and(|v| v == "regressions");
    let (ra, rb) = (a.clone(), b.clone());
    let (run_a, run_b, res_a, res_b) = read(&app, move |c| {
        Ok((
            keel_store::evals::get_eval_run(c, &ra)?,
            keel_store::evals::get_eval_run(c, &rb)?,
            keel_store::evals::eval_results(c, &ra)?,
            keel_store::evals::eval_results(c, &rb)?,
        ))
    })
    .await?;
    let (Some(run_a), Some(run_b)) = (run_a, run_b) else {
        return Err(PageError::NotFound(format!("no eval run {a} or {b}")));
    };
    let key = |r: &EvalResult| (r.case_id.clone(), r.repeat_idx);
    let map_a: HashMap<_, &EvalResult> = res_a.iter().map(|r| (key(r), r)).collect();
    let map_b: HashMap<_, &EvalResult> = res_b.iter().map(|r| (key(r), r)).collect();
    let mut keys: Vec<(String, u32)> = map_a.keys().chain(map_b.keys()).cloned().collect();
    keys.sort();
    keys.dedup();
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    let mut rows = Vec::new();
    for k in &keys {
        let (ca, cb) = (map_a.get(k).copied(), map_b.get(k).copied());
        let what = change(ca, cb);
        *counts.entry(what).or_default() += 1;
        if only_regressions && what != "regression" {
            continue;
        }
        let [pa, oa, la] = side(ca);
        let [pb, ob, lb] = side(cb);
        let case = if k.1 > 0 {
            format!("{} #{}", esc(&k.0), k.1)
        } else {
            esc(&k.0)
        };
        rows.push(vec![
            case,
            format!(
                "<span class=\"tag {}\">{what}</span>",
                what.replace(' ', "-")
            ),
            pa,
            oa,
            la,
            pb,
            ob,
            lb,
        ]);
    }
    let summary: String = counts
        .iter()
        .map(|(k, v)| {
            format!(
                "<span class=\"tag {}\">{k}: {v}</span> ",
                k.replace(' ', "-")
            )
        })
        .collect();
    let toggle = if only_regressions {
        format!("<a href=\"{}\">show every case</a>", compare_href(&a, &b))
    } else {
        format!(
            "<a href=\"{}&amp;only=regressions\">regressions only</a>",
            compare_href(&a, &b)
        )
    };
    let head = |r: &EvalRun| {
        format!(
            "<code>{}</code> · {} · {} · {}/{} ({}) · gate {}",
            esc(&r.run.id),
            esc(&r.run.suite),
            target(r),
            r.passed,
            r.cases,
            pct(rate(r)),
            gate(r.gate_passed)
        )
    };
    let body =
        format!(
        "<p>a (before): {}<br>b (after): {}</p><p id=\"summary\">{summary}</p><p>{toggle}</p>{}",
        head(&run_a),
        head(&run_b),
        table(
            "cases",
            &["case", "change", "a", "a output", "a latency", "b", "b output", "b latency"],
            &rows
        ),
    );
    Ok(shell("Eval comparison", "/ui/evals", &body))
}
