//! `/ui/review` and `/ui/review/{queue}`: the reviewer's pages (`[[review_queues]]`).
//!
//! The index lists the queues with their progress. A queue's page asks for the
//! reviewer's name once (then carries it in the URL), claims the next item for them
//! (`keel_store::review::claim_next`: the claim expires after the queue's `claim_ttl`, so
//! two reviewers never get the same single-review item and a closed tab gives it back)
//! and shows it: why it entered, the messages sent, the output, scores, feedback and a
//! link to the trace, with the label form. Other reviewers' labels are not shown, so two
//! reviews of one item stay independent. One form posts every action
//! (`action=label|skip|release|add`), guarded like the playground's (same-site, the
//! session's token); a label is checked and stored by `keel_review::label::submit`, the
//! one implementation `keel review next` uses too.

use keel_store::sql::Db;
use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Form;
use keel_core::config::review::ReviewQueueConfig;
use keel_review::label::{self, Answers};
use keel_store::review::{self as store, ReviewItem};

use super::html::{urlenc, PageError};
use super::review_view::{self as view, ItemView};
use super::{access, read, write_mut, Params};
use crate::state::AppState;

const DAY_MS: i64 = 86_400_000;

fn queue_config(app: &AppState, name: &str) -> Result<ReviewQueueConfig, PageError> {
    app.config
        .review_queues
        .iter()
        .find(|q| q.name == name)
        .cloned()
        .ok_or_else(|| {
            PageError::NotFound(format!(
                "no review queue `{name}` in the config ([[review_queues]]); see /ui/review"
            ))
        })
}

/// A reviewer's name as typed: trimmed, 1–64 printable characters.
fn reviewer_name(raw: Option<&str>) -> Result<Option<String>, PageError> {
    let Some(name) = raw.map(str::trim).filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    if name.chars().count() > 64 || name.chars().any(char::is_control) {
        return Err(PageError::BadRequest(
            "a reviewer's name is 1 to 64 printable characters".into(),
        ));
    }
    Ok(Some(name.to_string()))
}

/// `GET /ui/review`: every queue and where it stands.
pub async fn index(State(app): State<Arc<AppState>>) -> Result<Html<String>, PageError> {
    let queues = app.config.review_queues.clone();
    let qs = queues.clone();
    let now = keel_store::prompts::now_ms();
    let (today, month) = (keel_review::intake::day_start_ms(now), now - 30 * DAY_MS);
    let rows = read(&app, move |c| {
        qs.iter()
            .map(|q| {
                Ok((
                    store::progress(c, &q.name, today)?,
                    keel_review::agreement::figures(c, q, month)?,
                ))
            })
            .collect::<Result<Vec<_>, PageError>>()
    })
    .await?;
    Ok(view::index(&queues, &rows))
}

/// Everything the item's page shows, read in one go.
fn load_item(c: Db<'_>, item: ReviewItem, today: i64) -> Result<ItemView, PageError> {
    let trace = keel_store::get_trace(c, &item.trace_id)?;
    let (sent, scores, feedback) = match &trace {
        Some(t) => (
            Some(crate::rendered::sent_messages(c, t)),
            keel_store::scores::scores_for_trace(c, &t.id)?,
            keel_store::feedback_for_trace(c, &t.id)?,
        ),
        None => (None, Vec::new(), Vec::new()),
    };
    let progress = store::progress(c, &item.queue, today)?;
    Ok(ItemView {
        item,
        trace,
        sent,
        scores,
        feedback,
        progress,
        dataset_form: String::new(),
    })
}

/// `GET /ui/review/{queue}?reviewer=NAME`: claim the next item for NAME and show it.
pub async fn page(
    State(app): State<Arc<AppState>>,
    Path(queue): Path<String>,
    Query(params): Query<Params>,
    headers: HeaderMap,
) -> Result<Response, PageError> {
    let q = queue_config(&app, &queue)?;
    let Some(reviewer) = reviewer_name(params.get("reviewer").map(String::as_str))? else {
        return Ok(view::ask_name(&q).into_response());
    };
    let now = keel_store::prompts::now_ms();
    let ttl = i64::try_from(q.claim_ttl.as_millis()).unwrap_or(i64::MAX);
    let (name, who) = (q.name.clone(), reviewer.clone());
    let shown = write_mut(&app, move |c| {
        match store::claim_next(c, &name, &who, now, ttl)? {
            Some(item) => load_item(c, item, keel_review::intake::day_start_ms(now)).map(Ok),
            None => Ok(Err(store::progress(
                c,
                &name,
                keel_review::intake::day_start_ms(now),
            )?)),
        }
    })
    .await?;
    let token = access::form_token(&app, &headers);
    let saved = params.get("saved").map(String::as_str);
    Ok(match shown {
        Ok(mut item) => {
            let back = format!(
                "/ui/review/{}?reviewer={}",
                urlenc(&q.name),
                urlenc(&reviewer)
            );
            item.dataset_form = super::add_to_dataset::form(
                &app,
                &item.item.trace_id,
                token.as_deref(),
                &back,
                Some(&reviewer),
            );
            view::item_page(
                &q,
                &reviewer,
                &item,
                token.as_deref(),
                saved,
                None,
                &Answers::default(),
            )
        }
        Err(progress) => view::nothing_left(&q, &reviewer, &progress),
    }
    .into_response())
}

/// `POST /ui/review/{queue}`: label, skip or release the reviewer's item, or add a trace
/// to the queue by hand.
pub async fn post(
    State(app): State<Arc<AppState>>,
    Path(queue): Path<String>,
    headers: HeaderMap,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    handle(&app, &queue, &headers, &form).await
}

/// `POST /ui/review`: the same, with the queue named by the form's `queue` field (the
/// trace page's "add to review queue", which picks the queue in the form).
pub async fn post_index(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    let queue = form
        .iter()
        .find(|(k, _)| k == "queue")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    handle(&app, &queue, &headers, &form).await
}

async fn handle(
    app: &Arc<AppState>,
    queue: &str,
    headers: &HeaderMap,
    form: &[(String, String)],
) -> Response {
    let field = |k: &str| {
        form.iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    };
    if let Err(why) = access::check_form(app, headers, field("token")) {
        return PageError::Forbidden(why).into_response();
    }
    let q = match queue_config(app, queue) {
        Ok(q) => q,
        Err(e) => return e.into_response(),
    };
    let reviewer = match reviewer_name(field("reviewer")) {
        Ok(Some(r)) => r,
        Ok(None) => {
            return PageError::BadRequest("say who is reviewing: the form needs `reviewer`".into())
                .into_response()
        }
        Err(e) => return e.into_response(),
    };
    let back = format!(
        "/ui/review/{}?reviewer={}",
        urlenc(&q.name),
        urlenc(&reviewer)
    );
    let now = keel_store::prompts::now_ms();
    let action = field("action").unwrap_or("label").to_string();
    if action == "add" {
        return add(app, &q, &reviewer, field("trace").unwrap_or(""), now).await;
    }
    let Some(item_id) = field("item").and_then(|s| s.parse::<i64>().ok()) else {
        return PageError::BadRequest("the form needs the `item` it is about".into())
            .into_response();
    };
    let answers = Answers {
        values: form
            .iter()
            .filter_map(|(k, v)| k.strip_prefix("label.").map(|k| (k.to_string(), v.clone())))
            .collect::<BTreeMap<_, _>>(),
        correction: field("correction").map(str::to_string),
    };
    let (qc, who, a) = (q.clone(), reviewer.clone(), answers.clone());
    let done = write_mut(app, move |c| {
        match action.as_str() {
            "skip" => store::skip(c, item_id, &who, now)?,
            "release" => store::release_claim(c, item_id, &who)?,
            "label" => {
                if let Err(e) = label::submit(c, &qc, item_id, &who, &a, now) {
                    // Shown on the same item, with what was typed kept.
                    let item = store::get_item(c, item_id)?
                        .ok_or_else(|| PageError::NotFound(format!("no review item {item_id}")))?;
                    return Ok(Some((
                        load_item(c, item, keel_review::intake::day_start_ms(now))?,
                        e.to_string(),
                    )));
                }
            }
            other => {
                return Err(PageError::BadRequest(format!(
                    "`{other}` is not an action here; use label, skip, release or add"
                )))
            }
        }
        Ok(None)
    })
    .await;
    match done {
        Ok(None) if field("action") == Some("release") => {
            Redirect::to("/ui/review").into_response()
        }
        Ok(None) => Redirect::to(&format!("{back}&saved={item_id}")).into_response(),
        Ok(Some((item, error))) => {
            let token = access::form_token(app, headers);
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                view::item_page(
                    &q,
                    &reviewer,
                    &item,
                    token.as_deref(),
                    None,
                    Some(&error),
                    &answers,
                ),
            )
                .into_response()
        }
        Err(e) => e.into_response(),
    }
}

/// Add a trace to the queue by hand (the trace page's "add to review queue"), audited.
async fn add(
    app: &Arc<AppState>,
    q: &ReviewQueueConfig,
    reviewer: &str,
    trace: &str,
    now: i64,
) -> Response {
    let trace = trace.trim().to_string();
    if trace.is_empty() {
        return PageError::BadRequest("the form needs the `trace` to add".into()).into_response();
    }
    let (name, who, needed, t) = (
        q.name.clone(),
        reviewer.to_string(),
        q.reviewers,
        trace.clone(),
    );
    let added = write_mut(app, move |c| {
        if keel_store::get_trace(c, &t)?.is_none() {
            return Err(PageError::NotFound(format!("no trace with request id {t}")));
        }
        Ok(store::add_by_hand(
            c,
            &name,
            &t,
            needed,
            &who,
            now,
            "dashboard",
        )?)
    })
    .await;
    match added {
        Ok(_) => Redirect::to(&format!(
            "/ui/traces/{}?queued={}",
            urlenc(&trace),
            urlenc(&q.name)
        ))
        .into_response(),
        Err(e) => e.into_response(),
    }
}
