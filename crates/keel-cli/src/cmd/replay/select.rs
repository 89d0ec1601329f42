//! What a replay run replays: the trace selection from `--function`, `--since`,
//! `--limit` and `--filter KEY=VALUE`, and the one candidate from the flags.

use anyhow::{anyhow, bail, Result};
use keel_core::trace::{Origin, TraceStatus};
use keel_gateway::replay::Candidate;
use keel_store::TraceFilter;
use serde_json::{json, Map, Value};

use super::{CandidateArgs, RunArgs};
use crate::since::parse_since;

pub(super) const FILTER_KEYS: &str = "tenant, feature, user, session, variant, model, status";

/// The trace selection from `--function`, `--since`, `--limit` and `--filter`s.
pub(super) fn trace_filter(a: &RunArgs, function: &str) -> Result<TraceFilter> {
    let mut f = TraceFilter {
        function: Some(function.to_string()),
        since_ms: Some(parse_since(&a.since)?),
        status: Some(TraceStatus::Ok),
        // Recorded production calls only: never shadow, eval or replay traffic.
        origin: Some(Origin::Live),
        limit: a.limit,
        ..TraceFilter::default()
    };
    for item in &a.filter {
        let Some((key, value)) = item.split_once('=') else {
            bail!("--filter `{item}` is not KEY=VALUE; keys: {FILTER_KEYS}");
        };
        let value = value.trim();
        let text = Some(value.to_string());
        match key.trim() {
            "tenant" => f.tenant = text,
            "feature" => f.feature = text,
            "user" => f.user = text,
            "session" => f.session = text,
            "variant" => f.variant = text,
            "model" => f.model = text,
            "status" => {
                f.status = Some(TraceStatus::parse(value).ok_or_else(|| {
                    anyhow!("--filter status=`{value}` is not a status; use ok, error or client_disconnected")
                })?);
            }
            other => bail!("--filter key `{other}` is not known; valid keys: {FILTER_KEYS}"),
        }
    }
    Ok(f)
}

pub(super) fn candidate(c: &CandidateArgs) -> Result<(Candidate, &'static str, String)> {
    match (&c.candidate, c.prompt_version, &c.model) {
        (Some(v), None, None) => Ok((Candidate::Variant(v.clone()), "variant", v.clone())),
        (None, Some(n), None) => Ok((Candidate::PromptVersion(n), "prompt_version", n.to_string())),
        (None, None, Some(m)) => Ok((Candidate::Model(m.clone()), "model", m.clone())),
        _ => bail!("give exactly one of --candidate, --prompt-version or --model"),
    }
}

/// The selection as given: `{"since": "7d", "limit": 50, "tenant": "acme", …}`.
pub(super) fn filters_json(a: &RunArgs) -> Value {
    let mut all = Map::new();
    all.insert("since".into(), json!(a.since));
    all.insert("limit".into(), json!(a.limit));
    for (k, v) in a.filter.iter().filter_map(|f| f.split_once('=')) {
        all.insert(k.trim().to_string(), Value::String(v.trim().to_string()));
    }
    Value::Object(all)
}

pub(super) fn describe_filters(filters: &[String]) -> String {
    if filters
        .iter()
        .any(|f| f.trim_start().starts_with("status="))
    {
        filters.join(", ")
    } else {
        let mut all = vec!["status=ok".to_string()];
        all.extend(filters.iter().cloned());
        all.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::replay::{ReplayArgs, ReplayCommand};
    use clap::Parser;
    use keel_core::trace::TraceStatus;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        replay: ReplayArgs,
    }

    fn parse(args: &[&str]) -> Result<ReplayArgs, clap::Error> {
        let mut all = vec!["keel-replay"];
        all.extend(args);
        Cli::try_parse_from(all).map(|c| c.replay)
    }

    #[test]
    fn the_run_is_the_default_and_subcommands_need_no_function() {
        let a = parse(&["--function", "f", "--model", "m", "--filter", "tenant=acme"]).unwrap();
        assert!(a.command.is_none());
        assert_eq!(a.run.function.as_deref(), Some("f"));
        assert_eq!(a.run.candidate.model.as_deref(), Some("m"));
        assert!(matches!(
            parse(&["show", "rpl_1"]).unwrap().command,
            Some(ReplayCommand::Show(_))
        ));
        assert!(matches!(
            parse(&["list"]).unwrap().command,
            Some(ReplayCommand::List(_))
        ));
        assert!(matches!(
            parse(&["run", "--function", "f", "--candidate", "v"])
                .unwrap()
                .command,
            Some(ReplayCommand::Run(_))
        ));
    }

    #[test]
    fn exactly_one_candidate_and_a_positive_version() {
        assert!(parse(&["--function", "f"]).is_err());
        assert!(parse(&["--function", "f", "--model", "m", "--candidate", "v"]).is_err());
        assert!(parse(&["--function", "f", "--prompt-version", "0"]).is_err());
        assert!(
            parse(&["--candidate", "v"]).is_err(),
            "--function is required"
        );
    }

    #[test]
    fn filters_map_to_the_trace_filter_and_unknown_keys_are_named() {
        let a = parse(&[
            "--function",
            "f",
            "--candidate",
            "v",
            "--filter",
            "tenant=acme",
            "--filter",
            "status=error",
            "--filter",
            "model=mock-1",
        ])
        .unwrap();
        let f = trace_filter(&a.run, "f").unwrap();
        assert_eq!(f.tenant.as_deref(), Some("acme"));
        assert_eq!(f.model.as_deref(), Some("mock-1"));
        assert_eq!(f.status, Some(TraceStatus::Error));
        assert_eq!((f.function.as_deref(), f.limit), (Some("f"), 50));
        // Shadow (and eval, replay) traces are never "recorded production calls".
        assert_eq!(f.origin, Some(Origin::Live));

        let a = parse(&[
            "--function",
            "f",
            "--candidate",
            "v",
            "--filter",
            "region=eu",
        ])
        .unwrap();
        let err = trace_filter(&a.run, "f").unwrap_err().to_string();
        assert!(
            err.contains("`region`") && err.contains(FILTER_KEYS),
            "{err}"
        );
        let a = parse(&["--function", "f", "--candidate", "v", "--filter", "tenant"]).unwrap();
        assert!(trace_filter(&a.run, "f")
            .unwrap_err()
            .to_string()
            .contains("KEY=VALUE"));
        let a = parse(&["--function", "f", "--candidate", "v"]).unwrap();
        assert_eq!(
            trace_filter(&a.run, "f").unwrap().status,
            Some(TraceStatus::Ok)
        );
    }
}
