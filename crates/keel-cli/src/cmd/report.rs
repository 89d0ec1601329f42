//! `keel report`: the weekly review — totals, by model/feature/tenant/key, top callers
//! by spend and by tokens per call, budget use, unpriced calls, online quality per
//! function/variant/prompt version/model with variants compared — as a terminal table,
//! JSON or Markdown. `--since`/`--until` pick any past window; `--month 2026-11` makes it
//! the monthly review of that month, compared with the month before.

use std::process::ExitCode;

use anyhow::Result;

use crate::since::{now_ms, parse_since};
use crate::ConfigArg;

#[derive(clap::Args)]
pub struct ReportArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Window start: a duration back from now (24h, 7d, 30d) or an RFC 3339 time.
    #[arg(long, default_value = "7d", conflicts_with = "month")]
    since: String,
    /// Window end (default: now): a duration back from now or an RFC 3339 time, so any
    /// past window can be reported (`--since 14d --until 7d`: the week before last).
    #[arg(long, conflicts_with = "month")]
    until: Option<String>,
    /// The monthly review of a calendar month (UTC), e.g. 2026-11; `last` for the
    /// previous month, `this` for the current one so far.
    #[arg(long)]
    month: Option<String>,
    /// How many top callers to list.
    #[arg(long, default_value_t = 10)]
    top: usize,
    /// Print JSON.
    #[arg(long, conflicts_with = "markdown")]
    json: bool,
    /// Print Markdown (for a PR comment or a wiki page).
    #[arg(long)]
    markdown: bool,
}

pub fn run(a: ReportArgs) -> Result<ExitCode> {
    let config = super::load_config(&a.config)?;
    let (since, until, title) = match a.month.as_deref() {
        None => {
            let since = parse_since(&a.since)?;
            let until = match &a.until {
                Some(u) => parse_since(u).map_err(|_| {
                    anyhow::anyhow!("--until `{u}` is neither a duration back from now (e.g. 7d) nor an RFC 3339 time (e.g. 2026-11-01T00:00:00Z)")
                })?,
                None => now_ms() + 1,
            };
            if since >= until {
                anyhow::bail!(
                    "--since ({}) is not before --until ({}): the window is empty",
                    a.since,
                    a.until.as_deref().unwrap_or("now")
                );
            }
            (since, until, None)
        }
        Some(m) => {
            let (start, end, label) = month_window(m, now_ms())?;
            (
                start,
                end.min(now_ms() + 1),
                Some(format!("Keel monthly review {label}")),
            )
        }
    };
    let (_store, conn) = super::open_store(&config)?;
    let mut report = keel_store::build_report(&conn, since, until, a.top)?;
    if let Some(t) = title {
        report.title = t;
        // The month before, over as many days as this one has had (all of it for a
        // finished month).
        let prev_start = keel_core::scope::Window::Month.span(since - 1).start_ms;
        let prev_end = since.min(prev_start + (until - since));
        report.previous = Some(keel_store::previous_period(&conn, prev_start, prev_end)?);
    }
    report.budgets = keel_store::spend::budget_rows(&conn, &config.governance.budgets, now_ms())?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else if a.markdown {
        print!("{}", keel_store::render_markdown(&report));
    } else {
        print!("{}", keel_store::render_table(&report));
    }
    Ok(ExitCode::SUCCESS)
}

/// `2026-11`, `last` or `this` → the month's [start, end) in Unix ms and its label.
fn month_window(m: &str, now: i64) -> Result<(i64, i64, String)> {
    use keel_core::scope::Window;
    let this = Window::Month.span(now);
    let span = match m {
        "this" => this,
        "last" => Window::Month.span(this.start_ms - 1),
        _ => {
            let bad =
                || anyhow::anyhow!("--month `{m}`: write YYYY-MM (e.g. 2026-11), `last` or `this`");
            let (y, mo) = m.split_once('-').ok_or_else(bad)?;
            let y: i32 = y.parse().map_err(|_| bad())?;
            let mo: u8 = mo.parse().map_err(|_| bad())?;
            let month = time::Month::try_from(mo).map_err(|_| bad())?;
            let first = time::Date::from_calendar_date(y, month, 1).map_err(|_| bad())?;
            let ms = first
                .with_time(time::Time::MIDNIGHT)
                .assume_utc()
                .unix_timestamp()
                * 1000;
            Window::Month.span(ms)
        }
    };
    if span.start_ms > now {
        anyhow::bail!("--month `{m}` has not started yet");
    }
    Ok((span.start_ms, span.end_ms, span.label))
}
