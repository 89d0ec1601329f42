//! What a playground form post does: keep the draft (always first), then the action —
//! try it on typed variables (`run`) or recorded ones (`recorded`) beside the live
//! version, run an eval suite on both (`eval`), or save it as a version (`save`).
//! Problems a person can fix (a template error, a missing reason) come back in the
//! [`Outcome`] and are shown on the page; only store failures are page errors.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use keel_registry::{Prompt, VarType};
use keel_store::drafts::{self, DraftEdit};
use keel_store::PushOutcome;
use serde_json::{json, Map, Value};

use super::{load, resolve_ref, Editor};
use crate::dashboard::html::PageError;
use crate::dashboard::{read, write, Params};
use crate::playground::draft::{self, Checked};
use crate::playground::run::{self, Arm, Row, TAG};
use crate::playground::suites::{SuiteComparison, SuiteJob, MAX_CASES};
use crate::state::AppState;

/// Recorded inputs offered per try (default, and most).
pub const RECORDED_DEFAULT: usize = 3;
pub const RECORDED_MAX: usize = 10;
/// The longest a suite run may take before the page gives up waiting (the run itself
/// goes on and is stored).
const SUITE_WAIT: Duration = Duration::from_secs(600);

/// What the action did, for the page.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    /// The draft's problems, or why the action could not run.
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
    pub messages: Vec<String>,
    /// Inputs tried on both sides.
    pub rows: Vec<Row>,
    pub suite: Option<SuiteComparison>,
    /// For cases whose result differs: (live output, draft output).
    pub suite_outputs: HashMap<String, (Option<String>, Option<String>)>,
}

fn field<'a>(form: &'a [(String, String)], key: &str) -> Option<&'a str> {
    form.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// A draft id from the form, when it is one this page made (`drf_` + hex).
fn draft_id(form: &[(String, String)]) -> Option<String> {
    field(form, "draft")
        .filter(|id| {
            id.strip_prefix("drf_")
                .is_some_and(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_hexdigit()))
        })
        .map(str::to_string)
}

fn new_draft_id() -> String {
    format!("drf_{}", uuid::Uuid::now_v7().simple())
}

/// The typed variables as the prompt declares them: text for strings, JSON otherwise
/// (text that is not JSON is passed as text, so the error names the variable and its
/// type); empty fields are left out, so a required one is reported missing.
pub(crate) fn typed_variables(prompt: &Prompt, typed: &Map<String, Value>) -> Map<String, Value> {
    let mut out = Map::new();
    for (k, v) in typed {
        let Some(text) = v.as_str().filter(|t| !t.is_empty()) else {
            continue;
        };
        let value = match prompt.variables.get(k).map(|d| d.ty) {
            Some(VarType::String) | None => Value::String(text.to_string()),
            Some(_) => serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.into())),
        };
        out.insert(k.clone(), value);
    }
    out
}

/// Keep the draft, then perform `action`; the editor (reloaded) and what happened.
pub(crate) async fn perform(
    app: &Arc<AppState>,
    name: &str,
    form: &[(String, String)],
    action: &str,
) -> Result<(Editor, Outcome), PageError> {
    let mut out = Outcome::default();
    // Browsers send a textarea's line breaks as CRLF; the file has LF.
    let source = field(form, "source")
        .unwrap_or_default()
        .replace("\r\n", "\n");
    let model = field(form, "model").unwrap_or_default().trim().to_string();
    let base_ref = field(form, "base_ref")
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .unwrap_or("production")
        .to_string();
    let author = field(form, "author").unwrap_or_default().trim().to_string();
    let reason = field(form, "reason").unwrap_or_default().trim().to_string();
    let typed: Map<String, Value> = form
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix("var.")?.to_string(), json!(v))))
        .collect();
    if !app.config.models.contains_key(&model) {
        out.errors.push(format!(
            "model `{model}` is not configured; pick one of: {}",
            app.model_list
        ));
    }
    let checked = match draft::check_source(name, &source) {
        Ok(c) => {
            out.warnings.clone_from(&c.warnings);
            Some(c)
        }
        Err(errors) => {
            out.errors.extend(errors);
            None
        }
    };

    // Keep the draft: under its id when the form has one of this prompt, else a new one.
    let id = draft_id(form).unwrap_or_else(new_draft_id);
    let (n, m, r, s, a) = (
        name.to_string(),
        model.clone(),
        base_ref.clone(),
        source.clone(),
        if author.is_empty() {
            "anonymous".to_string()
        } else {
            author.clone()
        },
    );
    let vars_json = Value::Object(typed.clone()).to_string();
    let id = write(app, move |c| {
        let base_version = resolve_ref(c, &n, &r)?.map(|v| v.version);
        let edit = DraftEdit {
            prompt_name: &n,
            base_ref: &r,
            base_version,
            source: &s,
            model: &m,
            variables_json: &vars_json,
            author: &a,
        };
        if drafts::keep_draft(c, &id, &edit)? {
            return Ok(id);
        }
        let fresh = new_draft_id();
        drafts::keep_draft(c, &fresh, &edit)?;
        Ok(fresh)
    })
    .await?;
    let mut params = Params::new();
    params.insert("draft".into(), id.clone());
    let ed = load(app, name.to_string(), &params).await?;

    let Some(checked) = checked.filter(|_| out.errors.is_empty()) else {
        if action != "keep" {
            out.errors
                .push("fix the draft first: nothing was run or saved".into());
        }
        return Ok((ed, out));
    };
    match action {
        "keep" => out.messages.push(format!("Draft {id} kept.")),
        "run" => {
            let vars = typed_variables(&checked.prompt, &typed);
            let inputs = vec![("typed".to_string(), vars)];
            try_inputs(app, &ed, &checked, &model, inputs, &mut out).await;
        }
        "recorded" => {
            let want = field(form, "recorded")
                .and_then(|n| n.parse::<usize>().ok())
                .unwrap_or(RECORDED_DEFAULT)
                .clamp(1, RECORDED_MAX);
            let n = name.to_string();
            let found = read(app, move |c| Ok(drafts::recorded_inputs(c, &n, want)?)).await?;
            if found.is_empty() {
                out.errors.push(format!(
                    "no recorded inputs: no successful live call of {name} with its variables captured \
                     (calls made with capture = \"none\" keep none)"
                ));
            } else {
                let inputs = found
                    .into_iter()
                    .map(|r| (r.trace_id, r.variables))
                    .collect();
                try_inputs(app, &ed, &checked, &model, inputs, &mut out).await;
            }
        }
        "eval" => {
            run_suite(
                app,
                &ed,
                checked,
                &model,
                field(form, "suite"),
                &author,
                &mut out,
            )
            .await?
        }
        "save" => save(app, &ed, &checked, &author, &reason, &mut out).await?,
        other => out.errors.push(format!("unknown action `{other}`")),
    }
    let ed = if action == "save" {
        load(app, name.to_string(), &params).await?
    } else {
        ed
    };
    Ok((ed, out))
}

/// The live version as a prompt, and the model the live side runs on.
fn live_prompt(
    app: &AppState,
    ed: &Editor,
    model: &str,
) -> Result<Option<(Prompt, i64, String)>, String> {
    let Some(v) = &ed.live else { return Ok(None) };
    let p = draft::stored_prompt(v)?;
    let live_model = draft::reference_variant(&app.config, &ed.name)
        .map_or_else(|| model.to_string(), |r| r.model.clone());
    Ok(Some((p, v.version, live_model)))
}

async fn try_inputs(
    app: &Arc<AppState>,
    ed: &Editor,
    checked: &Checked,
    model: &str,
    inputs: Vec<(String, Map<String, Value>)>,
    out: &mut Outcome,
) {
    let hash = checked.prompt.content_hash();
    let same_as = ed
        .live
        .as_ref()
        .filter(|v| v.content_hash == hash)
        .map(|v| v.version);
    let draft_dep = match draft::deploy(
        &app.config,
        checked.prompt.clone(),
        same_as.unwrap_or(0),
        model,
        "draft",
    ) {
        Ok(d) => d,
        Err(e) => return out.errors.push(format!("the draft cannot be served: {e}")),
    };
    let live_dep = match live_prompt(app, ed, model) {
        Ok(Some((p, v, m))) => match draft::deploy(&app.config, p, v, &m, "live") {
            Ok(d) => Some((d, v)),
            Err(e) => {
                out.errors
                    .push(format!("the live version cannot be served: {e}"));
                None
            }
        },
        Ok(None) => None,
        Err(e) => {
            out.errors.push(e);
            None
        }
    };
    let draft_arm = Arm {
        deployment: &draft_dep,
        version: same_as,
        side: "draft",
    };
    let live_arm = live_dep.as_ref().map(|(d, v)| Arm {
        deployment: d,
        version: Some(*v),
        side: "live",
    });
    let tags = vec![format!("draft:{}", ed.draft.id)];
    out.rows = run::compare(app, &draft_arm, live_arm.as_ref(), inputs, &tags).await;
}

async fn run_suite(
    app: &Arc<AppState>,
    ed: &Editor,
    checked: Checked,
    model: &str,
    suite: Option<&str>,
    author: &str,
    out: &mut Outcome,
) -> Result<(), PageError> {
    let Some(suite) = suite.map(str::trim).filter(|s| !s.is_empty()) else {
        out.errors.push("pick an eval suite to run".into());
        return Ok(());
    };
    let (Some(runner), Some(store)) = (app.suites.clone(), app.store.clone()) else {
        out.errors
            .push("eval suites can be run from the playground only under `keel serve`".into());
        return Ok(());
    };
    let Some(live) = &ed.live else {
        out.errors.push(format!(
            "{} points at no version to compare with",
            ed.draft.base_ref
        ));
        return Ok(());
    };
    let job = SuiteJob {
        config: app.config.clone(),
        store,
        suite: suite.to_string(),
        prompt_name: ed.name.clone(),
        draft: checked.prompt,
        draft_model: model.to_string(),
        live_ref: format!("v{}", live.version),
        max_cases: MAX_CASES,
        actor: format!(
            "playground:{}",
            if author.is_empty() {
                "anonymous"
            } else {
                author
            }
        ),
        tags: vec![
            TAG.to_string(),
            "playground:eval".into(),
            format!("draft:{}", ed.draft.id),
        ],
    };
    let result = match tokio::time::timeout(SUITE_WAIT, runner.run(job)).await {
        Ok(r) => r,
        Err(_) => Err(format!(
            "the suite took longer than {} s; its runs are stored and listed under Evals",
            SUITE_WAIT.as_secs()
        )),
    };
    let cmp = match result {
        Ok(c) => c,
        Err(e) => {
            out.errors.push(format!("suite {suite}: {e}"));
            return Ok(());
        }
    };
    let (live_run, draft_run) = (cmp.live_run.clone(), cmp.draft_run.clone());
    let changed: Vec<String> = cmp
        .cases
        .iter()
        .filter(|c| c.live_pass != Some(c.draft_pass))
        .map(|c| c.case_id.clone())
        .collect();
    out.suite_outputs = read(app, move |c| {
        let mut outputs: HashMap<String, (Option<String>, Option<String>)> = HashMap::new();
        for (run, is_draft) in [(live_run, false), (draft_run, true)] {
            for r in keel_store::evals::eval_results(c, &run)? {
                if !changed.contains(&r.case_id) {
                    continue;
                }
                let text = r.output.or(r.error);
                let slot = outputs.entry(r.case_id).or_default();
                if is_draft {
                    slot.1 = text;
                } else {
                    slot.0 = text;
                }
            }
        }
        Ok(outputs)
    })
    .await?;
    out.suite = Some(cmp);
    Ok(())
}

async fn save(
    app: &Arc<AppState>,
    ed: &Editor,
    checked: &Checked,
    author: &str,
    reason: &str,
    out: &mut Outcome,
) -> Result<(), PageError> {
    if author.is_empty() || reason.is_empty() {
        out.errors.push(
            "saving a version needs an author and a reason (both are kept in the audit log)".into(),
        );
        return Ok(());
    }
    let p = &checked.prompt;
    let (name, hash, content) = (ed.name.clone(), p.content_hash(), p.to_json().to_string());
    let (author, reason, id) = (author.to_string(), reason.to_string(), ed.draft.id.clone());
    let pushed = write(app, move |c| {
        let mut source = Map::new();
        source.insert("source".into(), json!("playground"));
        source.insert("draft".into(), json!(id));
        let pushed = keel_store::push_version_with(
            c,
            &name,
            &hash,
            &content,
            &author,
            &reason,
            None,
            Some(&source),
        )
        .map_err(|e| PageError::Internal(e.to_string()))?;
        if let PushOutcome::Created(v) = pushed {
            drafts::mark_saved(c, &id, v)?;
        }
        Ok(pushed)
    })
    .await?;
    match pushed {
        PushOutcome::Created(v) => out.messages.push(format!(
            "Saved as v{v} of {} (audited as prompt.push). No label moved: to serve it, \
             `keel prompt label {} {v} production`. To keep it in git, copy the draft into {}.",
            ed.name,
            ed.name,
            draft::file_of(&ed.name)
        )),
        PushOutcome::Unchanged(v) => out.messages.push(format!(
            "The draft is the same as the latest version, v{v}: nothing was saved."
        )),
    }
    Ok(())
}
