//! The weekly report, rendered for people: a terminal table (`keel report`) and GitHub
//! markdown (a PR comment or a wiki page).
//!
//! Both renderers draw the same sections from one description (`sections`), so they
//! cannot disagree; only the drawing differs. Money is shown as exact dollars, rates as
//! percents, durations in ms. A cost that leaves out unpriced calls reads `≥ $X` (or
//! `unpriced`), and unpriced calls get their own section saying they are not counted
//! as $0. Online quality (judged calls, pass rates, metrics, feedback, variants
//! compared) gets its sections only when some call in the window was judged or got
//! feedback.

use std::fmt::Write as _;

use comfy_table::{presets, CellAlignment, ContentArrangement, Table};
use keel_core::money::Nanos;

use crate::quality_figures::{format_rate, Quality, QualityRow};
use crate::report::{GroupRow, GroupStats, Percentiles, Report, ReportWindow};
use crate::report_compare::PreviousPeriod;

const GROUP_HEADER: [&str; 9] = [
    "requests",
    "errors",
    "tokens in",
    "tokens out",
    "tokens/call",
    "cost",
    "unpriced",
    "latency p50 / p95 / p99",
    "TTFT p50 / p95 / p99",
];

/// One titled table of the report.
struct Section {
    title: &'static str,
    header: Vec<&'static str>,
    /// Columns before this index are text (left-aligned); the rest are numbers...
    text_columns: usize,
    /// ...but for this many last columns, which are text too.
    trailing_text: usize,
    rows: Vec<Vec<String>>,
    /// What to print when there are no rows.
    empty: &'static str,
    /// A paragraph under the title.
    note: Option<String>,
    /// Whether the note is a warning (flagged as one in markdown).
    warning: bool,
}

/// The report for a terminal.
pub fn render_table(report: &Report) -> String {
    let mut out = format!("{}: {}\n", report.title, window_line(report));
    if report.is_empty() {
        out.push_str("\nNo traces in this window.\n");
        return out;
    }
    let _ = writeln!(out, "{}", summary_line(report));
    for section in sections(report) {
        let _ = writeln!(out, "\n{}", section.title);
        if let Some(note) = &section.note {
            let _ = writeln!(out, "{note}");
        }
        if section.rows.is_empty() {
            let _ = writeln!(out, "{}", section.empty);
            continue;
        }
        let mut table = Table::new();
        table.load_preset(presets::UTF8_FULL_CONDENSED);
        // Fits a terminal's width when printed to one; unconstrained otherwise.
        table.set_content_arrangement(ContentArrangement::Dynamic);
        table.set_header(section.header.clone());
        for row in &section.rows {
            table.add_row(row.clone());
        }
        for i in section.text_columns..section.header.len() - section.trailing_text {
            if let Some(column) = table.column_mut(i) {
                column.set_cell_alignment(CellAlignment::Right);
            }
        }
        let _ = writeln!(out, "{table}");
    }
    out
}

/// The report as GitHub-flavoured markdown.
pub fn render_markdown(report: &Report) -> String {
    let mut out = format!("## {}: {}\n\n", report.title, window_line(report));
    if report.is_empty() {
        out.push_str("No traces in this window.\n");
        return out;
    }
    let _ = writeln!(out, "{}", summary_line(report));
    for section in sections(report) {
        let _ = writeln!(out, "\n### {}\n", section.title);
        if let Some(note) = &section.note {
            let flag = if section.warning { "⚠️ " } else { "" };
            let _ = writeln!(out, "> {flag}{note}\n");
        }
        if section.rows.is_empty() {
            let _ = writeln!(out, "{}", section.empty);
            continue;
        }
        let cells: Vec<String> = section.header.iter().map(|h| md_cell(h)).collect();
        let _ = writeln!(out, "| {} |", cells.join(" | "));
        let rule: Vec<&str> = (0..section.header.len())
            .map(|i| {
                if i < section.text_columns || i >= section.header.len() - section.trailing_text {
                    "---"
                } else {
                    "---:"
                }
            })
            .collect();
        let _ = writeln!(out, "| {} |", rule.join(" | "));
        for row in &section.rows {
            let cells: Vec<String> = row.iter().map(|c| md_cell(c)).collect();
            let _ = writeln!(out, "| {} |", cells.join(" | "));
        }
    }
    out
}

fn sections(report: &Report) -> Vec<Section> {
    let breakdown = |title, name_header, rows: &[GroupRow]| Section {
        title,
        header: std::iter::once(name_header).chain(GROUP_HEADER).collect(),
        text_columns: 1,
        trailing_text: 0,
        rows: rows
            .iter()
            .map(|r| {
                std::iter::once(one_line(&r.name))
                    .chain(group_cells(&r.stats))
                    .collect()
            })
            .collect(),
        empty: "(none)",
        note: None,
        warning: false,
    };
    let mut out = vec![Section {
        title: "Totals",
        header: GROUP_HEADER.to_vec(),
        text_columns: 0,
        trailing_text: 0,
        rows: vec![group_cells(&report.totals)],
        empty: "",
        note: None,
        warning: false,
    }];
    if let Some(prev) = &report.previous {
        out.push(comparison(&report.totals, prev));
    }
    out.extend([
        breakdown("By model", "model", &report.by_model),
        breakdown("By feature", "feature", &report.by_feature),
        breakdown("By tenant", "tenant", &report.by_tenant),
        breakdown("By key", "key", &report.by_key),
        Section {
            title: "Top callers by spend",
            header: vec![
                "#",
                "caller",
                "kind",
                "requests",
                "cost",
                "tokens/call",
                "unpriced",
            ],
            text_columns: 3,
            trailing_text: 0,
            rows: report
                .top_callers
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    vec![
                        (i + 1).to_string(),
                        one_line(&c.caller),
                        c.kind.as_str().to_string(),
                        thousands(c.requests),
                        cost(c.cost.nanos(), c.unpriced_calls),
                        per_call(c.tokens_per_call),
                        thousands(c.unpriced_calls),
                    ]
                })
                .collect(),
            empty: "(none)",
            note: None,
            warning: false,
        },
        Section {
            title: "Top callers by tokens per call",
            header: vec!["#", "caller", "kind", "requests", "tokens/call", "cost"],
            text_columns: 3,
            trailing_text: 0,
            rows: report
                .top_by_tokens_per_call
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    vec![
                        (i + 1).to_string(),
                        one_line(&c.caller),
                        c.kind.as_str().to_string(),
                        thousands(c.requests),
                        per_call(c.tokens_per_call),
                        cost(c.cost.nanos(), c.unpriced_calls),
                    ]
                })
                .collect(),
            empty: "(none)",
            note: None,
            warning: false,
        },
        Section {
            title: "Budgets (current windows)",
            header: vec!["budget", "scope", "window", "mode", "spent", "limit", "used"],
            text_columns: 4,
            trailing_text: 0,
            rows: report
                .budgets
                .iter()
                .map(|b| {
                    vec![
                        one_line(&b.budget),
                        one_line(&b.scope),
                        b.window.clone(),
                        b.mode.to_string(),
                        dollars(b.spent.nanos()),
                        format!("${}", b.limit_usd),
                        percent(b.used),
                    ]
                })
                .collect(),
            empty: "No budgets are configured ([[budgets]] in keel.toml, or keel keys create --budget).",
            note: None,
            warning: false,
        },
        Section {
            title: "Unpriced calls",
            header: vec!["model", "calls", "tokens in", "tokens out"],
            text_columns: 1,
            trailing_text: 0,
            rows: report
                .unpriced
                .iter()
                .map(|u| {
                    vec![
                        one_line(&u.model),
                        thousands(u.calls),
                        thousands(u.input_tokens),
                        thousands(u.output_tokens),
                    ]
                })
                .collect(),
            empty: "None: every call with usage had a known price.",
            note: unpriced_note(report),
            warning: true,
        },
    ]);
    if let Some(e) = &report.embeddings {
        out.push(Section {
            title: "Embeddings (also in the tables above)",
            header: GROUP_HEADER.to_vec(),
            text_columns: 0,
            trailing_text: 0,
            rows: vec![group_cells(&e.totals)],
            empty: "",
            note: None,
            warning: false,
        });
        out.extend([
            breakdown("Embeddings by model", "model", &e.by_model),
            breakdown("Embeddings by feature", "feature", &e.by_feature),
            breakdown("Embeddings by tenant", "tenant", &e.by_tenant),
        ]);
    }
    if !report.quality.is_empty() {
        out.extend(quality_sections(&report.quality));
    }
    out
}

const QUALITY_HEADER: [&str; 6] = [
    "judged",
    "pass rate (95% CI)",
    "human good (95% CI)",
    "feedback",
    "positive (95% CI)",
    "metrics: mean (95% CI)",
];

/// Online quality per grouping, then each function's variants compared.
fn quality_sections(q: &Quality) -> Vec<Section> {
    let grouped = |title, name_header, rows: &[QualityRow], note: Option<String>| Section {
        title,
        header: std::iter::once(name_header).chain(QUALITY_HEADER).collect(),
        text_columns: 1,
        trailing_text: 1,
        rows: rows.iter().map(quality_cells).collect(),
        empty: "(none)",
        note,
        warning: false,
    };
    let note = "Live calls judged by online evals, reviewed by people (review queues' \
                verdicts: good of those given good or bad), and feedback from apps' users. A judged \
                call passes when every assertion of every eval on it passed. Intervals are \
                95%: Wilson for rates, normal for means. Feedback above 0 is positive, at \
                or below 0 negative; categories are counted but left out of the rate.";
    let mut out = vec![
        grouped(
            "Online quality by function",
            "function",
            &q.by_function,
            Some(note.to_string()),
        ),
        grouped(
            "Online quality by variant",
            "function/variant",
            &q.by_variant,
            None,
        ),
        grouped(
            "Online quality by prompt version",
            "prompt",
            &q.by_prompt_version,
            None,
        ),
        grouped("Online quality by model", "model", &q.by_model, None),
    ];
    if !q.comparisons.is_empty() {
        out.push(Section {
            title: "Variants compared (two-proportion z-test)",
            header: vec!["function", "baseline", "variant", "pass rate", "feedback"],
            text_columns: 5,
            trailing_text: 0,
            rows: q
                .comparisons
                .iter()
                .map(|c| {
                    vec![
                        one_line(&c.function),
                        one_line(&c.baseline),
                        one_line(&c.variant),
                        one_line(&c.pass_rate.verdict),
                        one_line(&c.feedback.verdict),
                    ]
                })
                .collect(),
            empty: "",
            note: Some("Significant when p < 0.05; the baseline is the variant with the most judged calls.".into()),
            warning: false,
        });
    }
    out
}

fn quality_cells(r: &QualityRow) -> Vec<String> {
    let metrics = r
        .metrics
        .iter()
        .map(|m| {
            let name = if m.eval == m.metric {
                m.metric.clone()
            } else {
                format!("{}/{}", m.eval, m.metric)
            };
            format!(
                "{} {:.2} [{:.2}–{:.2}] n={}",
                one_line(&name),
                m.mean,
                m.low,
                m.high,
                thousands(m.n)
            )
        })
        .collect::<Vec<_>>()
        .join("; ");
    let f = &r.feedback;
    let feedback = match f.category {
        0 => thousands(f.count),
        c => format!("{} ({} category)", thousands(f.count), thousands(c)),
    };
    vec![
        one_line(&r.name),
        thousands(r.judged),
        format_rate(r.pass_rate, r.pass_rate_low, r.pass_rate_high),
        match r.human_good_rate {
            None => "—".to_string(),
            Some(_) => format!(
                "{} of {}",
                format_rate(
                    r.human_good_rate,
                    r.human_good_rate_low,
                    r.human_good_rate_high
                ),
                thousands(r.human_reviewed)
            ),
        },
        feedback,
        match f.positive_rate {
            None => "—".to_string(),
            Some(_) => format!(
                "{} of {}",
                format_rate(f.positive_rate, f.positive_rate_low, f.positive_rate_high),
                thousands(f.positive + f.negative)
            ),
        },
        if metrics.is_empty() {
            "—".to_string()
        } else {
            metrics
        },
    ]
}

/// This window's totals beside the previous period's, with the change.
fn comparison(now: &GroupStats, prev: &PreviousPeriod) -> Section {
    let p = &prev.totals;
    let row = |what: &str, before: String, after: String, change: String| {
        vec![what.to_string(), before, after, change]
    };
    let count_change = |a: u64, b: u64| change_pct(a as f64, b as f64);
    // A cost with unpriced calls on either side is a lower bound: no % is claimed.
    let cost_change = if now.unpriced_calls + p.unpriced_calls == 0 {
        change_pct(p.cost.nanos().0 as f64, now.cost.nanos().0 as f64)
    } else {
        "— (unpriced calls)".to_string()
    };
    Section {
        title: "Compared with the previous period",
        header: vec!["", "previous", "this period", "change"],
        text_columns: 1,
        trailing_text: 0,
        rows: vec![
            row(
                "requests",
                thousands(p.requests),
                thousands(now.requests),
                count_change(p.requests, now.requests),
            ),
            row(
                "error rate",
                percent(p.error_rate),
                percent(now.error_rate),
                format!("{:+.1} pts", (now.error_rate - p.error_rate) * 100.0),
            ),
            row(
                "tokens in",
                thousands(p.input_tokens),
                thousands(now.input_tokens),
                count_change(p.input_tokens, now.input_tokens),
            ),
            row(
                "tokens out",
                thousands(p.output_tokens),
                thousands(now.output_tokens),
                count_change(p.output_tokens, now.output_tokens),
            ),
            row(
                "cost",
                cost(p.cost.nanos(), p.unpriced_calls),
                cost(now.cost.nanos(), now.unpriced_calls),
                cost_change,
            ),
            row(
                "latency p95",
                format!("{} ms", p.latency_ms.p95),
                format!("{} ms", now.latency_ms.p95),
                count_change(p.latency_ms.p95, now.latency_ms.p95),
            ),
        ],
        empty: "",
        note: Some(format!("previous: {}", window_line_of(&prev.window))),
        warning: false,
    }
}

/// `+12.5%`; `new` when there was nothing before.
fn change_pct(before: f64, after: f64) -> String {
    if before == 0.0 {
        return if after == 0.0 { "0.0%" } else { "new" }.to_string();
    }
    format!("{:+.1}%", (after - before) / before * 100.0)
}

fn group_cells(s: &GroupStats) -> Vec<String> {
    vec![
        thousands(s.requests),
        format!("{} ({})", thousands(s.errors), percent(s.error_rate)),
        thousands(s.input_tokens),
        thousands(s.output_tokens),
        per_call(s.tokens_per_call),
        cost(s.cost.nanos(), s.unpriced_calls),
        thousands(s.unpriced_calls),
        percentiles(Some(s.latency_ms)),
        percentiles(s.ttft_ms),
    ]
}

fn window_line(report: &Report) -> String {
    window_line_of(&report.window)
}

fn window_line_of(w: &ReportWindow) -> String {
    format!("{} → {}", human_time(w.since_ms), human_time(w.until_ms))
}

fn summary_line(report: &Report) -> String {
    let t = &report.totals;
    let mut line = format!(
        "{} requests · {} errors ({}) · cost {}",
        thousands(t.requests),
        thousands(t.errors),
        percent(t.error_rate),
        cost(t.cost.nanos(), t.unpriced_calls)
    );
    if t.unpriced_calls > 0 {
        let _ = write!(
            line,
            " + {} unpriced calls (not counted, see below)",
            thousands(t.unpriced_calls)
        );
    }
    line
}

fn unpriced_note(report: &Report) -> Option<String> {
    if report.unpriced.is_empty() {
        return None;
    }
    let models: Vec<String> = report.unpriced.iter().map(|u| one_line(&u.model)).collect();
    Some(format!(
        "{} calls had no known price. They are NOT counted as $0: every cost above leaves \
         them out, so real spend is higher. Models: {}. Set input_price_per_mtok and \
         output_price_per_mtok under [models.<name>] in keel.toml to price them.",
        thousands(report.totals.unpriced_calls),
        models.join(", ")
    ))
}

fn dollars(n: Nanos) -> String {
    format!("${}", n.to_dollar_string())
}

/// The priced cost of a group. With unpriced calls in it, the real cost is higher:
/// `≥ $X`, or `unpriced` when nothing in it had a price. Never a bare `$0.00` for them.
fn cost(priced: Nanos, unpriced_calls: u64) -> String {
    match (unpriced_calls, priced) {
        (0, n) => dollars(n),
        (_, Nanos(0)) => "unpriced".to_string(),
        (_, n) => format!("≥ {}", dollars(n)),
    }
}

fn percent(rate: f64) -> String {
    format!("{:.1}%", rate * 100.0)
}

fn per_call(v: Option<f64>) -> String {
    v.map_or_else(|| "—".to_string(), |v| thousands(v.round() as u64))
}

fn percentiles(p: Option<Percentiles>) -> String {
    p.map_or_else(
        || "—".to_string(),
        |p| format!("{} / {} / {} ms", p.p50, p.p95, p.p99),
    )
}

/// `1234567` → `1,234,567`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

fn human_time(ms: i64) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute] UTC");
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(format).ok())
        .unwrap_or_else(|| format!("{ms} ms"))
}

/// Names come from request headers: keep each on one line.
fn one_line(s: &str) -> String {
    s.replace(['\r', '\n'], " ")
}

fn md_cell(s: &str) -> String {
    one_line(s).replace('|', "\\|")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_grouped_and_money_is_exact() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(dollars(Nanos(150_000)), "$0.00015");
        assert_eq!(cost(Nanos(150_000), 0), "$0.00015");
        assert_eq!(cost(Nanos(150_000), 3), "≥ $0.00015");
        assert_eq!(cost(Nanos(0), 3), "unpriced");
        assert_eq!(cost(Nanos(0), 0), "$0.00");
        assert_eq!(percent(2.0 / 17.0), "11.8%");
        assert_eq!(change_pct(200.0, 250.0), "+25.0%");
        assert_eq!(change_pct(0.0, 5.0), "new");
        assert_eq!(human_time(0), "1970-01-01 00:00 UTC");
        assert_eq!(md_cell("a|b\nc"), "a\\|b c");
    }
}
