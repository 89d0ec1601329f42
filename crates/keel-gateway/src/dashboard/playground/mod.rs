//! `/ui/playground` and `/ui/playground/{prompt}`: the prompt playground's pages. A
//! person picks a prompt, edits a draft of its file (starting from the version a label
//! points at, default `production`, or a given version), keeps it, tries it beside the
//! live version on typed or recorded variables, runs an eval suite on both, and saves it
//! as a new version with a reason.
//!
//! One form posts every action (`action=keep|run|recorded|eval|save`); each first keeps
//! the draft, so what was tried is what is stored. A draft never moves a label; a save
//! is a `prompt.push` in the audit log (with `source = playground`). The work itself is
//! in `crate::playground`; this module is the HTTP side and [`view`] the HTML.

mod actions;
mod view;

use keel_store::sql::Db;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Form;
use keel_store::drafts::{self, Draft};
use keel_store::PromptVersion;

use super::access;
use super::html::{esc, shell, table, urlenc, when, PageError};
use super::{read, Params};
use crate::playground::draft;
use crate::state::AppState;
use actions::Outcome;

/// Drafts listed per prompt, and on the index.
const DRAFTS_LISTED: usize = 20;

/// `GET /ui/playground`: the prompts to open, and the latest drafts.
pub async fn index(State(app): State<Arc<AppState>>) -> Result<Html<String>, PageError> {
    let (prompts, recent) = read(&app, |c| {
        Ok((
            keel_store::list_prompts(c)?,
            drafts::recent_drafts(c, DRAFTS_LISTED)?,
        ))
    })
    .await?;
    let rows: Vec<Vec<String>> = prompts
        .iter()
        .map(|p| {
            vec![
                format!(
                    "<a class=\"open\" href=\"/ui/playground/{}\">{}</a>",
                    view::prompt_path(&p.name),
                    esc(&p.name)
                ),
                format!("v{}", p.latest_version),
                p.labels
                    .iter()
                    .map(|(l, v)| {
                        format!(
                            "<a class=\"tag label\" href=\"/ui/playground/{}?from={}\">{} → v{v}</a>",
                            view::prompt_path(&p.name),
                            urlenc(l),
                            esc(l)
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(" "),
            ]
        })
        .collect();
    let body = format!(
        "<p class=\"hint\">Edit a draft of a prompt, try it beside the live version on typed or recorded \
         inputs and on an eval suite, then save it as a version. A draft never moves a label.</p>\
         <h2>Prompts</h2>{}<h2>Latest drafts</h2>{}",
        table("playground-prompts", &["prompt", "latest", "start from a label"], &rows),
        drafts_table("drafts", &recent, true),
    );
    Ok(shell("Playground", "/ui/playground", &body))
}

/// A table of drafts, each linking to its editor.
fn drafts_table(id: &str, list: &[Draft], with_prompt: bool) -> String {
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|d| {
            let mut row = vec![format!(
                "<a href=\"/ui/playground/{}?draft={}\"><code>{}</code></a>",
                view::prompt_path(&d.prompt_name),
                urlenc(&d.id),
                esc(&d.id)
            )];
            if with_prompt {
                row.push(esc(&d.prompt_name));
            }
            row.extend([
                format!(
                    "{}{}",
                    esc(&d.base_ref),
                    d.base_version
                        .map(|v| format!(" (v{v})"))
                        .unwrap_or_default()
                ),
                esc(&d.model),
                esc(&d.author),
                when(d.updated_at_ms),
                d.saved_version.map_or_else(
                    || "—".into(),
                    |v| format!("<span class=\"tag ok\">v{v}</span>"),
                ),
            ]);
            row
        })
        .collect();
    let mut headers = vec!["draft"];
    if with_prompt {
        headers.push("prompt");
    }
    headers.extend([
        "started from",
        "model",
        "author",
        "edited (UTC)",
        "saved as",
    ]);
    table(id, &headers, &rows)
}

/// Where the editor starts: a label or `vN`, and the version it points at now.
pub(crate) fn resolve_ref(
    c: Db<'_>,
    name: &str,
    base_ref: &str,
) -> Result<Option<PromptVersion>, PageError> {
    let version = match base_ref
        .strip_prefix('v')
        .and_then(|n| n.parse::<i64>().ok())
    {
        Some(n) => Some(n),
        None => keel_store::label_version(c, name, base_ref)?,
    };
    Ok(match version {
        Some(v) => keel_store::get_version(c, name, v)?,
        None => None,
    })
}

/// What the editor shows: the prompt, the draft (stored or new), the live version.
pub(crate) struct Editor {
    pub name: String,
    pub draft: Draft,
    /// Whether the draft is stored yet.
    pub stored: bool,
    /// The version the draft's ref points at now (what "live" means on the page).
    pub live: Option<PromptVersion>,
    pub others: Vec<Draft>,
    pub note: Option<String>,
}

/// Load the editor's state for `GET` (and for a post's page).
async fn load(app: &Arc<AppState>, name: String, params: &Params) -> Result<Editor, PageError> {
    let config = app.config.clone();
    let draft_id = params.get("draft").filter(|s| !s.is_empty()).cloned();
    let from = params
        .get("from")
        .filter(|s| !s.trim().is_empty())
        .map_or_else(|| "production".to_string(), |s| s.trim().to_string());
    read(app, move |c| {
        let versions = keel_store::versions(c, &name)?;
        if versions.is_empty() {
            return Err(PageError::NotFound(format!(
                "no prompt {name} in the store (`keel prompt push` records it)"
            )));
        }
        let others = drafts::drafts_for(c, &name, DRAFTS_LISTED)?;
        if let Some(id) = draft_id {
            let d = drafts::get_draft(c, &id)?
                .filter(|d| d.prompt_name == name)
                .ok_or_else(|| PageError::NotFound(format!("no draft {id} of prompt {name}")))?;
            let live = resolve_ref(c, &name, &d.base_ref)?;
            return Ok(Editor {
                name,
                draft: d,
                stored: true,
                live,
                others,
                note: None,
            });
        }
        let (base_ref, live, note) = match resolve_ref(c, &name, &from)? {
            Some(v) => (from, Some(v), None),
            None => {
                let latest = versions.first().cloned();
                let n = latest.as_ref().map_or(0, |v| v.version);
                (
                    format!("v{n}"),
                    latest,
                    Some(format!(
                        "{from} does not point at a version of {name}; starting from the latest, v{n}"
                    )),
                )
            }
        };
        let base = live.as_ref().ok_or_else(|| PageError::Internal("no version".into()))?;
        let source = draft::source_of(&config, base).map_err(PageError::Internal)?;
        let model = draft::default_model(&config, &name).unwrap_or_default();
        Ok(Editor {
            draft: Draft {
                id: String::new(),
                prompt_name: name.clone(),
                base_ref,
                base_version: Some(base.version),
                source,
                model,
                variables_json: "{}".into(),
                author: String::new(),
                created_at_ms: 0,
                updated_at_ms: 0,
                saved_version: None,
            },
            name,
            stored: false,
            live,
            others,
            note,
        })
    })
    .await
}

/// `GET /ui/playground/{prompt}` (`?from=LABEL|vN`, `?draft=ID`).
pub async fn editor(
    State(app): State<Arc<AppState>>,
    Path(name): Path<String>,
    Query(params): Query<Params>,
    headers: HeaderMap,
) -> Result<Html<String>, PageError> {
    let ed = load(&app, name, &params).await?;
    let token = access::form_token(&app, &headers);
    Ok(view::page(&app, &ed, &Outcome::default(), token.as_deref()))
}

/// `POST /ui/playground/{prompt}`: keep the draft, then do the action.
pub async fn post(
    State(app): State<Arc<AppState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    let field = |k: &str| super::html::form_field(&form, k);
    if let Err(why) = access::check_form(&app, &headers, field("token")) {
        return PageError::Forbidden(why).into_response();
    }
    let action = field("action").unwrap_or("keep").to_string();
    let (ed, outcome) = match actions::perform(&app, &name, &form, &action).await {
        Ok(done) => done,
        Err(e) => return e.into_response(),
    };
    if action == "keep" && outcome.errors.is_empty() {
        return Redirect::to(&format!(
            "/ui/playground/{}?draft={}",
            view::prompt_path(&name),
            urlenc(&ed.draft.id)
        ))
        .into_response();
    }
    let token = access::form_token(&app, &headers);
    view::page(&app, &ed, &outcome, token.as_deref()).into_response()
}
