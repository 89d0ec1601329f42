//! The playground editor's HTML: the form (draft text, model, variables, the actions),
//! then what the last action gave — outputs side by side, a suite's comparison — and the
//! prompt's other drafts. Every value from a draft, a variable, an output or the store
//! is escaped here.

use std::fmt::Write as _;

use axum::response::Html;
use keel_registry::Prompt;
use serde_json::{Map, Value};

use super::actions::{Outcome, RECORDED_DEFAULT, RECORDED_MAX};
use super::{drafts_table, Editor};
use crate::dashboard::html::{esc, ms, pct, shell, table, urlenc, usd};
use crate::playground::draft;
use crate::playground::run::Side;
use crate::playground::suites::{SuiteComparison, MAX_CASES};
use crate::state::AppState;

/// A prompt name as a URL path (each segment encoded, the slashes kept).
pub(crate) fn prompt_path(name: &str) -> String {
    name.split('/').map(urlenc).collect::<Vec<_>>().join("/")
}

/// The variables the form offers: the draft's declarations when it parses, else the
/// live version's.
fn declared(ed: &Editor) -> Option<Prompt> {
    draft::check_source(&ed.name, &ed.draft.source)
        .map(|c| c.prompt)
        .ok()
        .or_else(|| ed.live.as_ref().and_then(|v| draft::stored_prompt(v).ok()))
}

fn list(id: &str, class: &str, items: &[String]) -> String {
    if items.is_empty() {
        return String::new();
    }
    let mut out = format!("<ul id=\"{id}\" class=\"{class}\">");
    for i in items {
        let _ = write!(out, "<li>{}</li>", esc(i));
    }
    out.push_str("</ul>");
    out
}

fn form(app: &AppState, ed: &Editor, token: Option<&str>) -> String {
    let d = &ed.draft;
    let mut models = String::new();
    for m in app.config.models.keys() {
        let sel = if *m == d.model { " selected" } else { "" };
        let _ = write!(models, "<option{sel}>{}</option>", esc(m));
    }
    let typed: Map<String, Value> = serde_json::from_str(&d.variables_json).unwrap_or_default();
    let mut vars = String::new();
    match declared(ed) {
        Some(p) if !p.variables.is_empty() => {
            for (name, decl) in &p.variables {
                let value = typed.get(name).and_then(Value::as_str).unwrap_or_default();
                let what = match (decl.required, &decl.default) {
                    (true, _) => decl.ty.as_str().to_string(),
                    (false, Some(dflt)) => format!("{}, default {dflt}", decl.ty.as_str()),
                    (false, None) => format!("{}, optional", decl.ty.as_str()),
                };
                let _ = write!(
                    vars,
                    "<label>{} <span class=\"hint\">({})</span>\
                     <textarea name=\"var.{}\" rows=\"2\">{}</textarea></label>",
                    esc(name),
                    esc(&what),
                    esc(name),
                    esc(value)
                );
            }
        }
        _ => vars.push_str("<p class=\"hint\">This prompt declares no variables.</p>"),
    }
    let (suites, problems) = app
        .suites
        .as_ref()
        .map(|s| s.suites_for(&app.config, &ed.name))
        .unwrap_or_default();
    let suite_part = if app.suites.is_none() {
        "<p class=\"hint\">Eval suites run from here under <code>keel serve</code>.</p>".to_string()
    } else if suites.is_empty() {
        format!(
            "<p class=\"hint\">No suite in the evals folder targets {}.</p>{}",
            esc(&ed.name),
            list("suite-problems", "error", &problems)
        )
    } else {
        let mut opts = String::new();
        for s in &suites {
            let _ = write!(opts, "<option>{}</option>", esc(s));
        }
        format!(
            "<label>Suite <select name=\"suite\">{opts}</select></label>\
             <button type=\"submit\" name=\"action\" value=\"eval\">Run suite on draft and live</button>\
             <p class=\"hint\">The first {MAX_CASES} cases, one sample each, draft and live; stored as eval runs.</p>{}",
            list("suite-problems", "error", &problems)
        )
    };
    let mut recorded = String::new();
    for n in 1..=RECORDED_MAX {
        let sel = if n == RECORDED_DEFAULT {
            " selected"
        } else {
            ""
        };
        let _ = write!(recorded, "<option{sel}>{n}</option>");
    }
    format!(
        "<form method=\"post\" action=\"/ui/playground/{path}\" id=\"editor\" class=\"playground\">\
         <input type=\"hidden\" name=\"token\" value=\"{token}\">\
         <input type=\"hidden\" name=\"draft\" value=\"{id}\">\
         <input type=\"hidden\" name=\"base_ref\" value=\"{base}\">\
         <div class=\"grid\"><div class=\"half\">\
         <label>Prompt file <code>{file}</code>\
         <textarea name=\"source\" rows=\"22\" spellcheck=\"false\" class=\"code\">{source}</textarea></label>\
         <label>Model <select name=\"model\">{models}</select></label>\
         <button type=\"submit\" name=\"action\" value=\"keep\">Keep draft</button>\
         <p class=\"hint\">A draft is stored under its id and never reaches traffic.</p>\
         </div><div class=\"half\">\
         <h3>Sample variables</h3>{vars}\
         <button type=\"submit\" name=\"action\" value=\"run\">Run on these variables</button>\
         <h3>Recorded inputs</h3><label>Variables of the newest live calls \
         <select name=\"recorded\">{recorded}</select></label>\
         <button type=\"submit\" name=\"action\" value=\"recorded\">Run on recorded inputs</button>\
         <h3>Eval suite</h3>{suite_part}\
         <h3>Save as a version</h3>\
         <label>Author <input name=\"author\" value=\"{author}\" autocomplete=\"name\"></label>\
         <label>Reason <input name=\"reason\" value=\"\" size=\"40\"></label>\
         <button type=\"submit\" name=\"action\" value=\"save\">Save as version</button>\
         <p class=\"hint\">A new version of {name} in the store, audited; no label moves.</p>\
         </div></div></form>",
        path = prompt_path(&ed.name),
        token = esc(token.unwrap_or_default()),
        id = esc(&d.id),
        base = esc(&d.base_ref),
        file = esc(&draft::file_of(&ed.name)),
        source = esc(&d.source),
        author = esc(if d.author == "anonymous" { "" } else { &d.author }),
        name = esc(&ed.name),
    )
}

fn side_cell(s: &Side) -> String {
    let mut out = String::new();
    match (&s.output, &s.error) {
        (_, Some(e)) => {
            let _ = write!(out, "<p class=\"error\">{}</p>", esc(e));
        }
        (Some(o), None) => {
            let _ = write!(out, "<pre class=\"cell output\">{}</pre>", esc(o));
        }
        (None, None) => out.push_str("<p class=\"empty\">no output</p>"),
    }
    let cost = match (s.cost, s.unpriced) {
        (Some(c), _) => usd(c),
        (None, true) => "unpriced".into(),
        (None, false) => "—".into(),
    };
    if let Some(id) = &s.trace_id {
        let _ = write!(
            out,
            "<p class=\"hint\">{} · {} · {} tokens out · <a href=\"/ui/traces/{}\">trace</a></p>",
            ms(s.latency_ms),
            esc(&cost),
            s.output_tokens
                .map_or_else(|| "—".into(), |n| n.to_string()),
            urlenc(id)
        );
    }
    out
}

fn rows_html(o: &Outcome) -> String {
    if o.rows.is_empty() {
        return String::new();
    }
    let rows: Vec<Vec<String>> = o
        .rows
        .iter()
        .map(|r| {
            let same = match &r.live {
                Some(l) if l.output.is_some() && l.output == r.draft.output => {
                    "<span class=\"tag ok\">same output</span>"
                }
                Some(_) => "<span class=\"tag warn\">differs</span>",
                None => "<span class=\"tag\">no live version</span>",
            };
            let source = if r.source == "typed" {
                "typed".to_string()
            } else {
                format!("<a href=\"/ui/traces/{}\">recorded</a>", urlenc(&r.source))
            };
            let vars = serde_json::to_string_pretty(&r.variables).unwrap_or_default();
            vec![
                format!("{source}<pre class=\"cell\">{}</pre>", esc(&vars)),
                side_cell(&r.draft),
                r.live.as_ref().map_or_else(|| "—".into(), side_cell),
                same.to_string(),
            ]
        })
        .collect();
    format!(
        "<h2>Draft beside live</h2><p class=\"hint\">Both sent through Keel's request path and traced \
         as playground traffic (origin eval, tag <code>keel:playground</code>), kept out of reports.</p>{}",
        table("results", &["input", "draft", "live", ""], &rows)
    )
}

fn suite_html(c: &SuiteComparison, o: &Outcome) -> String {
    let rate = |p: u64| {
        if c.cases_run == 0 {
            "—".to_string()
        } else {
            pct(p as f64 / c.cases_run as f64)
        }
    };
    let summary = table(
        "eval-summary",
        &["arm", "what ran", "passed", "pass rate"],
        &[
            vec![
                "live".into(),
                esc(&c.live_label),
                format!("{} / {}", c.live_passed, c.cases_run),
                rate(c.live_passed),
            ],
            vec![
                "draft".into(),
                esc(&c.draft_label),
                format!("{} / {}", c.draft_passed, c.cases_run),
                rate(c.draft_passed),
            ],
        ],
    );
    let changed: Vec<Vec<String>> = c
        .cases
        .iter()
        .filter(|k| k.live_pass != Some(k.draft_pass))
        .map(|k| {
            let kind = match k.live_pass {
                Some(true) => "<span class=\"tag regression\">regression</span>",
                Some(false) => "<span class=\"tag fixed\">fixed</span>",
                None => "<span class=\"tag\">new</span>",
            };
            let (live_out, draft_out) =
                o.suite_outputs.get(&k.case_id).cloned().unwrap_or_default();
            let pre = |t: Option<String>| {
                t.map_or_else(
                    || "—".into(),
                    |t| format!("<pre class=\"cell\">{}</pre>", esc(&t)),
                )
            };
            vec![
                esc(&k.case_id),
                kind.to_string(),
                format!("{:.2}", k.live_score.unwrap_or(0.0)),
                format!("{:.2}", k.draft_score),
                pre(live_out),
                pre(draft_out),
            ]
        })
        .collect();
    let regressions = c
        .cases
        .iter()
        .filter(|k| k.live_pass == Some(true) && !k.draft_pass)
        .count();
    let failures: Vec<String> = c
        .failures
        .iter()
        .map(|(case, e)| format!("{case}: {e}"))
        .collect();
    format!(
        "<section id=\"eval-results\"><h2>Suite {suite}: draft against live</h2>\
         <p>Ran the first {run} of {total} cases. <strong>regressions: {regressions}</strong> · \
         verdict: {verdict} · <a href=\"/ui/evals/compare?a={a}&amp;b={b}\">every case, with outputs</a></p>{unlocked}\
         {summary}<h3>Cases whose result differs</h3>{changed}{failures}</section>",
        suite = esc(&c.suite),
        run = c.cases_run,
        total = c.cases_total,
        verdict = esc(c.verdict.as_deref().unwrap_or("—")),
        a = urlenc(&c.live_run),
        b = urlenc(&c.draft_run),
        unlocked = if c.unlocked {
            "<p class=\"hint\">The dataset is not locked (or changed since): fine for trying, not a gate.</p>"
        } else {
            ""
        },
        changed = table(
            "eval-changes",
            &["case", "change", "live score", "draft score", "live output", "draft output"],
            &changed
        ),
        failures = list("eval-failures", "error", &failures),
    )
}

/// The editor page, with what `outcome` holds.
pub(crate) fn page(
    app: &AppState,
    ed: &Editor,
    outcome: &Outcome,
    token: Option<&str>,
) -> Html<String> {
    let d = &ed.draft;
    let live = match &ed.live {
        Some(v) => format!(
            "Live: <span class=\"tag label\">{}</span> → v{} (created by {})",
            esc(&d.base_ref),
            v.version,
            esc(&v.author)
        ),
        None => format!(
            "<span class=\"error\">{} points at no version</span>",
            esc(&d.base_ref)
        ),
    };
    let state = if ed.stored {
        format!(
            "Draft <code id=\"draft-id\">{}</code> by {}{}",
            esc(&d.id),
            esc(&d.author),
            d.saved_version
                .map(|v| format!(" · <span class=\"tag ok\" id=\"saved\">saved as v{v}</span>"))
                .unwrap_or_default()
        )
    } else {
        "New draft (not kept yet)".into()
    };
    let body = format!(
        "{note}<p>{live} · {state} · <a href=\"/ui/prompts/{path}\">versions and labels</a></p>\
         {messages}{errors}{warnings}{form}{rows}{suite}<h2>Drafts of this prompt</h2>{drafts}",
        note = ed
            .note
            .as_ref()
            .map(|n| format!("<p class=\"hint\">{}</p>", esc(n)))
            .unwrap_or_default(),
        path = prompt_path(&ed.name),
        messages = list("messages", "msg ok", &outcome.messages),
        errors = list("problems", "error", &outcome.errors),
        warnings = list("warnings", "hint", &outcome.warnings),
        form = form(app, ed, token),
        rows = rows_html(outcome),
        suite = outcome
            .suite
            .as_ref()
            .map(|c| suite_html(c, outcome))
            .unwrap_or_default(),
        drafts = drafts_table("drafts", &ed.others, false),
    );
    shell(&format!("Playground: {}", ed.name), "/ui/playground", &body)
}
