//! The review pages' HTML: the queue list, the name form, one item with its label form
//! and keyboard shortcuts, and "nothing left". Every value is escaped where it is put in.

use std::fmt::Write as _;

use axum::response::Html;
use keel_core::chat::Message;
use keel_core::config::review::{LabelKind, ReviewQueueConfig};
use keel_core::trace::TraceRecord;
use keel_review::label::Answers;
use keel_store::review::{Progress, ReviewItem};

use super::html::{esc, shell, table, urlenc, when};
use super::trace::{feedback_section, scores_section, sent_section};

/// What one item's page shows.
pub(crate) struct ItemView {
    pub item: ReviewItem,
    /// `None` when the trace is gone (deleted by retention).
    pub trace: Option<TraceRecord>,
    pub sent: Option<Result<Vec<Message>, String>>,
    pub scores: Vec<keel_store::scores::StoredScore>,
    pub feedback: Vec<keel_store::Feedback>,
    pub progress: Progress,
    /// The "add to dataset" form (empty when no suite can take it).
    pub dataset_form: String,
}

/// The keyboard: g / b / u pick the verdict (and send the form when nothing else it
/// needs is missing), n or Enter saves and opens the next item, s skips. Keys typed into
/// a text field are left alone.
const KEYS_JS: &str = r#"<script>
(function () {
  var f = document.getElementById('label-form');
  if (!f) return;
  function send(action) {
    f.elements['action'].value = action;
    if (action === 'label' && !f.reportValidity()) return;
    f.submit();
  }
  var picks = { g: 'good', b: 'bad', u: 'unsure' };
  document.addEventListener('keydown', function (e) {
    var t = e.target;
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    if ((t.tagName === 'INPUT' && t.type !== 'radio') || t.tagName === 'TEXTAREA' || t.tagName === 'SELECT') return;
    var k = e.key.length === 1 ? e.key.toLowerCase() : e.key;
    if (picks[k]) {
      var r = f.querySelector('input[name="label.verdict"][value="' + picks[k] + '"]');
      if (!r) return;
      e.preventDefault();
      r.checked = true;
      if (f.checkValidity()) send('label');
    } else if (k === 'n' || k === 'Enter') {
      e.preventDefault();
      send('label');
    } else if (k === 's') {
      e.preventDefault();
      send('skip');
    }
  });
  var copy = document.getElementById('from-output');
  if (copy) copy.addEventListener('click', function () {
    var out = document.getElementById('output');
    f.elements['correction'].value = out ? out.textContent : '';
  });
})();
</script>"#;

fn progress_line(p: &Progress) -> String {
    format!(
        "<p id=\"progress\" data-done-today=\"{d}\" data-left=\"{l}\">Labelled today: <b>{d}</b> · \
         left: <b>{l}</b> · done: {done}</p>",
        d = p.labelled_today,
        l = p.open,
        done = p.done
    )
}

/// `/ui/review`.
pub(crate) fn index(
    queues: &[ReviewQueueConfig],
    rows: &[(Progress, keel_review::agreement::QueueFigures)],
) -> Html<String> {
    if queues.is_empty() {
        return shell(
            "Review",
            "/ui/review",
            "<p class=\"empty\">No review queues. Add a <code>[[review_queues]]</code> table to \
             keel.toml (see the README's \"Human review\") to have people label real calls.</p>",
        );
    }
    let agreement = |a: &Option<keel_review::Agreement>| match a {
        None => "—".to_string(),
        Some(a) => format!(
            "{:.0}% of {} · κ {}",
            a.observed * 100.0,
            a.n,
            a.kappa
                .map_or_else(|| "undefined".to_string(), |k| format!("{k:.2}"))
        ),
    };
    let table_rows: Vec<Vec<String>> = queues
        .iter()
        .zip(rows)
        .map(|(q, (p, f))| {
            vec![
                format!(
                    "<a class=\"queue\" href=\"/ui/review/{}\">{}</a>",
                    urlenc(&q.name),
                    esc(&q.name)
                ),
                esc(&q.describe()),
                esc(&q.entry.describe()),
                q.reviewers.to_string(),
                p.open.to_string(),
                p.labelled_today.to_string(),
                format!("{} / {}", p.entered_today, q.max_items_per_day),
                f.items_reviewed.to_string(),
                agreement(&f.reviewers),
                agreement(&f.human_vs_judge),
            ]
        })
        .collect();
    let body = format!(
        "<p class=\"hint\">People label a share of real calls. Open a queue to review its items one \
         at a time (keys: <kbd>g</kbd> good, <kbd>b</kbd> bad, <kbd>u</kbd> unsure, <kbd>n</kbd> save \
         and next, <kbd>s</kbd> skip).</p>{}",
        table(
            "queues",
            &[
                "queue",
                "covers",
                "enters by",
                "reviewers per item",
                "left",
                "labelled today",
                "entered today / cap",
                "reviewed (30 d)",
                "reviewers agree (κ)",
                "humans agree with the judge (κ)"
            ],
            &table_rows
        )
    );
    shell("Review", "/ui/review", &body)
}

/// A queue's page before the reviewer said who they are.
pub(crate) fn ask_name(q: &ReviewQueueConfig) -> Html<String> {
    let body = format!(
        "<form method=\"get\" action=\"/ui/review/{}\" class=\"inline\">\
         <label>Your name <input type=\"text\" name=\"reviewer\" required maxlength=\"64\" autofocus></label> \
         <button type=\"submit\">Start reviewing</button></form>\
         <p class=\"hint\">Labels are kept with the reviewer's name and time. Opening an item claims it \
         for you for {} min so nobody else reviews it meanwhile.</p>",
        urlenc(&q.name),
        q.claim_ttl.as_secs().div_ceil(60)
    );
    shell(&format!("Review: {}", q.name), "/ui/review", &body)
}

/// Nothing left for this reviewer.
pub(crate) fn nothing_left(q: &ReviewQueueConfig, reviewer: &str, p: &Progress) -> Html<String> {
    let body = format!(
        "{}<p class=\"empty\" id=\"nothing-left\">Nothing left for {} in this queue: every item is \
         labelled, skipped by you, or being reviewed by someone else.</p>",
        progress_line(p),
        esc(reviewer)
    );
    shell(&format!("Review: {}", q.name), "/ui/review", &body)
}

fn label_inputs(q: &ReviewQueueConfig, answers: &Answers) -> String {
    let mut out = String::new();
    for spec in &q.labels {
        let given = answers
            .values
            .get(&spec.name)
            .map(String::as_str)
            .unwrap_or("");
        let req = if spec.required { " required" } else { "" };
        let name = format!("label.{}", spec.name);
        let _ = write!(
            out,
            "<fieldset class=\"label\"><legend>{}</legend>",
            esc(&spec.name)
        );
        match &spec.kind {
            LabelKind::Choice(choices) => {
                for c in choices {
                    let checked = if c.eq_ignore_ascii_case(given) {
                        " checked"
                    } else {
                        ""
                    };
                    let _ = write!(
                        out,
                        "<label><input type=\"radio\" name=\"{n}\" value=\"{v}\"{req}{checked}> {v}</label> ",
                        n = esc(&name),
                        v = esc(c)
                    );
                }
            }
            LabelKind::Number { min, max } => {
                let _ = write!(
                    out,
                    "<input type=\"number\" name=\"{}\" min=\"{min}\" max=\"{max}\" step=\"any\" value=\"{}\"{req}> \
                     <span class=\"hint\">{min}–{max}</span>",
                    esc(&name),
                    esc(given)
                );
            }
            LabelKind::Text => {
                let _ = write!(
                    out,
                    "<textarea name=\"{}\" rows=\"2\"{req}>{}</textarea>",
                    esc(&name),
                    esc(given)
                );
            }
        }
        out.push_str("</fieldset>");
    }
    if q.corrections {
        let c = answers.correction.as_deref().unwrap_or("");
        let open = if c.is_empty() { "" } else { " open" };
        let _ = write!(
            out,
            "<details class=\"correction\"{open}><summary>Correct the output</summary>\
             <textarea name=\"correction\" rows=\"6\" placeholder=\"What the answer should have been\">{}</textarea>\
             <button type=\"button\" id=\"from-output\">Start from the output</button></details>",
            esc(c)
        );
    }
    out
}

/// One item with the label form.
pub(crate) fn item_page(
    q: &ReviewQueueConfig,
    reviewer: &str,
    v: &ItemView,
    token: Option<&str>,
    saved: Option<&str>,
    error: Option<&str>,
    answers: &Answers,
) -> Html<String> {
    let item = &v.item;
    let mut body = progress_line(&v.progress);
    if let Some(s) = saved {
        let _ = write!(
            body,
            "<p class=\"hint\" id=\"saved\">Saved item {}.</p>",
            esc(s)
        );
    }
    if let Some(e) = error {
        let _ = write!(body, "<p class=\"error\" id=\"label-error\">{}</p>", esc(e));
    }
    let _ = write!(
        body,
        "<p id=\"item\" data-item=\"{id}\">Item {id} · entered {when} because <b>{reason}</b> · \
         trace <a class=\"trace-link\" href=\"/ui/traces/{tu}\"><code>{t}</code></a> · reviewing as <b>{who}</b> \
         ({labelled} of {needed} labels)</p>",
        id = item.id,
        when = when(item.entered_at_ms),
        reason = esc(&item.reason.replace('_', " ")),
        tu = urlenc(&item.trace_id),
        t = esc(&item.trace_id),
        who = esc(reviewer),
        labelled = item.labelled,
        needed = item.needed,
    );
    match &v.trace {
        None => body.push_str(
            "<p class=\"empty\">The trace is no longer in the store (removed by retention). Skip it.</p>",
        ),
        Some(t) => {
            let _ = write!(
                body,
                "<p class=\"hint\">{} · {} · {}</p>",
                esc(t.function.as_deref().or(t.model_requested.as_deref()).unwrap_or("—")),
                esc(t.served_model.as_deref().or(t.upstream_model.as_deref()).unwrap_or("—")),
                when(t.started_at_ms)
            );
            if let Some(sent) = &v.sent {
                body.push_str(&sent_section(sent));
            }
            body.push_str("<h2>Output</h2>");
            match &t.output {
                Some(o) => {
                    let _ = write!(body, "<pre id=\"output\">{}</pre>", esc(o));
                }
                None => body.push_str("<p class=\"empty\">No output captured.</p>"),
            }
        }
    }
    body.push_str(&scores_section(&v.scores));
    body.push_str(&feedback_section(&v.feedback));
    let _ = write!(
        body,
        "<h2>Your label</h2><p class=\"hint\">Keys: <kbd>g</kbd> good · <kbd>b</kbd> bad · \
         <kbd>u</kbd> unsure · <kbd>n</kbd> save and next · <kbd>s</kbd> skip (not while typing in a field).</p>\
         <form method=\"post\" id=\"label-form\" action=\"/ui/review/{q}\">\
         <input type=\"hidden\" name=\"token\" value=\"{token}\">\
         <input type=\"hidden\" name=\"reviewer\" value=\"{who}\">\
         <input type=\"hidden\" name=\"item\" value=\"{id}\">\
         <input type=\"hidden\" name=\"action\" value=\"label\">{inputs}\
         <p><button type=\"submit\">Save and next (n)</button> \
         <button type=\"submit\" formnovalidate onclick=\"this.form.elements['action'].value='skip'\">Skip (s)</button> \
         <button type=\"submit\" formnovalidate onclick=\"this.form.elements['action'].value='release'\">Stop reviewing</button></p>\
         </form>{dataset}{KEYS_JS}",
        q = urlenc(&q.name),
        token = esc(token.unwrap_or("")),
        who = esc(reviewer),
        id = item.id,
        inputs = label_inputs(q, answers),
        dataset = v.dataset_form,
    );
    shell(&format!("Review: {}", q.name), "/ui/review", &body)
}

/// The trace page's review part: the queues the call is in, its labels, and a form to
/// add it to a queue by hand.
pub(crate) fn trace_review_section(
    queues: &[ReviewQueueConfig],
    trace_id: &str,
    items: &[ReviewItem],
    labels: &[keel_store::review::StoredLabel],
    token: Option<&str>,
) -> String {
    if queues.is_empty() && items.is_empty() {
        return String::new();
    }
    let mut out = String::from("<h2 id=\"review\">Review</h2>");
    if !labels.is_empty() {
        let rows: Vec<Vec<String>> = labels
            .iter()
            .map(|l| {
                vec![
                    esc(&l.queue),
                    esc(&l.reviewer),
                    esc(l.verdict.as_deref().unwrap_or("—")),
                    format!("<code>{}</code>", esc(&l.labels.to_string())),
                    l.correction
                        .as_deref()
                        .map_or_else(|| "—".to_string(), |c| format!("<pre>{}</pre>", esc(c))),
                    when(l.at_ms),
                ]
            })
            .collect();
        out.push_str(&table(
            "review-labels",
            &[
                "queue",
                "reviewer",
                "verdict",
                "labels",
                "correction",
                "at (UTC)",
            ],
            &rows,
        ));
    }
    for i in items {
        let _ = write!(
            out,
            "<p class=\"hint\">In queue <a href=\"/ui/review/{}\">{}</a> ({}; {} of {} labels).</p>",
            urlenc(&i.queue),
            esc(&i.queue),
            esc(&i.reason.replace('_', " ")),
            i.labelled,
            i.needed
        );
    }
    let open: Vec<&ReviewQueueConfig> = queues
        .iter()
        .filter(|q| !items.iter().any(|i| i.queue == q.name))
        .collect();
    if !open.is_empty() {
        let options: String = open
            .iter()
            .map(|q| format!("<option value=\"{0}\">{0}</option>", esc(&q.name)))
            .collect();
        let _ = write!(
            out,
            "<form method=\"post\" id=\"add-to-review\" class=\"inline\" action=\"/ui/review\">\
             <input type=\"hidden\" name=\"token\" value=\"{}\">\
             <input type=\"hidden\" name=\"action\" value=\"add\">\
             <input type=\"hidden\" name=\"trace\" value=\"{}\">\
             <label>Add to review queue <select name=\"queue\">{options}</select></label> \
             <label>as <input type=\"text\" name=\"reviewer\" required maxlength=\"64\"></label> \
             <button type=\"submit\">Add</button></form>",
            esc(token.unwrap_or("")),
            esc(trace_id)
        );
    }
    out
}
