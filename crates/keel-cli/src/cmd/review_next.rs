//! `keel review next QUEUE`: review items one at a time in a terminal.
//!
//! Each item is claimed for the reviewer (as the dashboard does: the claim expires after
//! the queue's `claim_ttl`), shown — why it entered, the messages sent, the output, its
//! scores and feedback — and labelled by answering one prompt per label of the queue's
//! schema, then an optional one-line correction. At any prompt `s` skips the item and
//! `q` stops (giving the item back). A refused answer is explained and asked again.
//! When stdin is not a terminal the answers are read line by line, so a script (or a
//! test) can review; end of input stops like `q`.

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

use anyhow::Result;
use keel_core::config::review::{LabelKind, LabelSpec, ReviewQueueConfig};
use keel_review::label::{submit, Answers};
use keel_store::review::{self as store, ReviewItem};

use crate::since::{format_ms, now_ms};
use crate::ConfigArg;

#[derive(clap::Args)]
pub struct NextArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// The queue (`name` of a [[review_queues]] table).
    queue: String,
    /// Who is reviewing (default: $KEEL_ACTOR, else git's user.name, else $USER).
    #[arg(long)]
    reviewer: Option<String>,
    /// Review this call (its request id) first, even if older items wait; it is added to
    /// the queue by hand when it is not in it yet.
    #[arg(long)]
    trace: Option<String>,
    /// Stop after this many labels (0: until the queue is empty for you).
    #[arg(long, default_value_t = 0)]
    limit: usize,
}

/// What the reviewer typed at a prompt.
enum Reply {
    Answer(String),
    Skip,
    Quit,
}

struct Prompter<R> {
    input: R,
    tty: bool,
}

impl<R: BufRead> Prompter<R> {
    fn ask(&mut self, prompt: &str) -> Result<Reply> {
        if self.tty {
            print!("{prompt} ");
            std::io::stdout().flush()?;
        } else {
            println!("{prompt}");
        }
        let mut line = String::new();
        if self.input.read_line(&mut line)? == 0 {
            return Ok(Reply::Quit);
        }
        let line = line.trim_end_matches(['\n', '\r']).to_string();
        Ok(match line.trim() {
            "q" | "quit" => Reply::Quit,
            "s" | "skip" => Reply::Skip,
            _ => Reply::Answer(line),
        })
    }
}

/// The prompt of one label, and the answer as the schema takes it (a choice may be
/// given by its number or its first letter when that is unambiguous).
fn label_prompt(spec: &LabelSpec) -> String {
    let opt = if spec.required {
        ""
    } else {
        ", Enter to leave out"
    };
    match &spec.kind {
        LabelKind::Choice(cs) => {
            let listed: Vec<String> = cs
                .iter()
                .enumerate()
                .map(|(i, c)| format!("{}={c}", i + 1))
                .collect();
            format!("{} [{}]{opt}:", spec.name, listed.join(" "))
        }
        LabelKind::Number { min, max } => format!("{} ({min}–{max}){opt}:", spec.name),
        LabelKind::Text => format!("{}{opt}:", spec.name),
    }
}

fn expand_choice(spec: &LabelSpec, raw: &str) -> String {
    let LabelKind::Choice(cs) = &spec.kind else {
        return raw.to_string();
    };
    let t = raw.trim();
    if let Some(c) = t
        .parse::<usize>()
        .ok()
        .and_then(|i| i.checked_sub(1))
        .and_then(|i| cs.get(i))
    {
        return c.clone();
    }
    let starts: Vec<&String> = cs
        .iter()
        .filter(|c| t.len() == 1 && c.to_lowercase().starts_with(&t.to_lowercase()))
        .collect();
    match starts.as_slice() {
        [one] => (*one).clone(),
        _ => t.to_string(),
    }
}

fn show(conn: keel_store::sql::Db<'_>, item: &ReviewItem) -> Result<()> {
    println!(
        "\n=== item {} · entered {} because {} · trace {} ({} of {} labels)",
        item.id,
        format_ms(item.entered_at_ms),
        item.reason.replace('_', " "),
        item.trace_id,
        item.labelled,
        item.needed
    );
    let Some(t) = keel_store::get_trace(conn, &item.trace_id)? else {
        println!("(the trace is no longer in the store; skip it with `s`)");
        return Ok(());
    };
    println!(
        "{} · {} · {}",
        t.function
            .as_deref()
            .or(t.model_requested.as_deref())
            .unwrap_or("-"),
        t.served_model
            .as_deref()
            .or(t.upstream_model.as_deref())
            .unwrap_or("-"),
        format_ms(t.started_at_ms)
    );
    println!("\n--- sent to the provider ---");
    match keel_gateway::rendered::sent_messages(conn, &t) {
        Ok(messages) => {
            for m in messages {
                println!("[{}] {}", m.role, m.text_content());
            }
        }
        Err(why) => println!("(cannot be shown: {why})"),
    }
    println!(
        "\n--- output ---\n{}",
        t.output.as_deref().unwrap_or("(not captured)")
    );
    super::traces::print_scores(&keel_store::scores::scores_for_trace(conn, &t.id)?);
    super::traces::print_feedback(&keel_store::feedback_for_trace(conn, &t.id)?);
    println!();
    Ok(())
}

/// Ask for every label and the correction; `Err(reply)` when the reviewer skipped or quit.
fn ask_labels<R: BufRead>(
    p: &mut Prompter<R>,
    q: &ReviewQueueConfig,
) -> Result<Result<Answers, Reply>> {
    let mut answers = Answers::default();
    for spec in &q.labels {
        match p.ask(&label_prompt(spec))? {
            Reply::Answer(a) => {
                answers
                    .values
                    .insert(spec.name.clone(), expand_choice(spec, &a));
            }
            other => return Ok(Err(other)),
        }
    }
    if q.corrections {
        match p.ask("correction (the answer it should have been, one line; Enter for none):")? {
            Reply::Answer(a) => answers.correction = Some(a),
            other => return Ok(Err(other)),
        }
    }
    Ok(Ok(answers))
}

pub fn next(a: NextArgs) -> Result<ExitCode> {
    let config = super::load_config(&a.config)?;
    let q = super::review::queue(&config, &a.queue)?.clone();
    let (_store, mut conn) = super::review::open_filled(&config)?;
    let who = a.reviewer.unwrap_or_else(super::prompt::default_actor);
    let ttl = i64::try_from(q.claim_ttl.as_millis()).unwrap_or(i64::MAX);
    let stdin = std::io::stdin();
    let mut p = Prompter {
        tty: stdin.is_terminal(),
        input: stdin.lock(),
    };
    if p.tty {
        println!(
            "Reviewing {} as {who}: answer each prompt; `s` skips an item, `q` stops.",
            q.name
        );
    }
    let mut labelled = 0usize;
    let mut first = match &a.trace {
        None => None,
        Some(id) => {
            if keel_store::get_trace(&conn, id)?.is_none() {
                anyhow::bail!(
                    "no trace with request id `{id}` in {}",
                    config.gateway.store
                );
            }
            let now = now_ms();
            store::add_by_hand(&conn, &q.name, id, q.reviewers, &who, now, "cli")?;
            let item = store::items_for_trace(&conn, id)?
                .into_iter()
                .find(|i| i.queue == q.name)
                .ok_or_else(|| anyhow::anyhow!("trace `{id}` is not in {}", q.name))?;
            match store::claim_item(&mut conn, item.id, &who, now_ms(), ttl)? {
                Some(item) => Some(item),
                None => anyhow::bail!(
                    "trace `{id}` needs no label from {who} in {} (labelled already, or being reviewed by others)",
                    q.name
                ),
            }
        }
    };
    loop {
        if a.limit > 0 && labelled >= a.limit {
            break;
        }
        let next = match first.take() {
            Some(item) => Some(item),
            None => store::claim_next(&mut conn, &q.name, &who, now_ms(), ttl)?,
        };
        let Some(item) = next else {
            let pr = store::progress(&conn, &q.name, keel_review::intake::day_start_ms(now_ms()))?;
            println!(
                "Nothing left for {who} in {} ({} open, labelled today {}).",
                q.name, pr.open, pr.labelled_today
            );
            break;
        };
        show(conn.db(), &item)?;
        loop {
            match ask_labels(&mut p, &q)? {
                Ok(answers) => match submit(conn.db(), &q, item.id, &who, &answers, now_ms()) {
                    Ok(s) => {
                        labelled += 1;
                        println!(
                            "saved item {} ({} of {} labels)",
                            item.id, s.labelled, s.needed
                        );
                        break;
                    }
                    Err(e) => println!("not saved: {e}; answer again"),
                },
                Err(Reply::Skip) => {
                    store::skip(&conn, item.id, &who, now_ms())?;
                    println!("skipped item {}", item.id);
                    break;
                }
                Err(_) => {
                    store::release_claim(&conn, item.id, &who)?;
                    println!("stopped; {labelled} labelled");
                    return Ok(ExitCode::SUCCESS);
                }
            }
        }
    }
    println!("{labelled} labelled");
    Ok(ExitCode::SUCCESS)
}
