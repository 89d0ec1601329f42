//! `[retention]`: how long the store keeps traces, and their captured text.
//!
//! ```toml
//! [retention]
//! traces = "90d"            # delete whole traces (and what derives from them) older than this
//! capture = "30d"           # drop captured inputs and outputs older than this; keep the rest
//! every = "10m"             # how often `keel serve` runs the job (default 10m)
//! batch = 1000              # rows per transaction (default 1000)
//!
//! [retention.origins.eval]  # per origin (live, eval, shadow, replay, judge, canary): its own windows
//! traces = "7d"
//! ```
//!
//! Windows end at a UTC midnight, so each day is deleted whole, once (its rollups are then
//! recomputed from nothing, cheaply). Unset: kept forever.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::error::ConfigIssue;
use super::governance::duration;

/// How often the job runs unless `every` says.
pub const DEFAULT_EVERY: Duration = Duration::from_secs(600);
/// Rows per transaction unless `batch` says.
pub const DEFAULT_BATCH: usize = 1000;
/// The origins a trace can have.
pub const ORIGINS: [&str; 6] = ["live", "eval", "shadow", "replay", "judge", "canary"];

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRetention {
    pub traces: Option<String>,
    pub capture: Option<String>,
    pub every: Option<String>,
    pub batch: Option<usize>,
    #[serde(default)]
    pub origins: BTreeMap<String, RawWindows>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWindows {
    pub traces: Option<String>,
    pub capture: Option<String>,
}

/// How long one origin's traces, and their text, are kept (`None`: forever).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Windows {
    pub traces: Option<Duration>,
    pub capture: Option<Duration>,
}

/// A validated `[retention]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionConfig {
    /// Every origin's windows: its own where `[retention.origins.X]` sets them, else the
    /// table's.
    pub windows: BTreeMap<&'static str, Windows>,
    pub every: Duration,
    pub batch: usize,
}

fn window(issues: &mut Vec<ConfigIssue>, path: String, v: Option<&str>) -> Option<Duration> {
    v.map(|v| duration(issues, &path, Some(v), Duration::ZERO))
        .filter(|d| !d.is_zero())
}

/// `None` when nothing is to be removed (no table, or no window set anywhere).
pub(crate) fn validate_retention(
    raw: &RawRetention,
    issues: &mut Vec<ConfigIssue>,
) -> Option<RetentionConfig> {
    let base = Windows {
        traces: window(issues, "retention.traces".into(), raw.traces.as_deref()),
        capture: window(issues, "retention.capture".into(), raw.capture.as_deref()),
    };
    for name in raw.origins.keys() {
        if !ORIGINS.contains(&name.as_str()) {
            issues.push(ConfigIssue {
                path: format!("retention.origins.{name}"),
                message: format!("unknown origin `{name}`"),
                hint: Some(format!("use one of: {}", ORIGINS.join(", "))),
            });
        }
    }
    let windows: BTreeMap<&'static str, Windows> = ORIGINS
        .iter()
        .map(|&origin| {
            let own = raw.origins.get(origin);
            let path = |key: &str| format!("retention.origins.{origin}.{key}");
            let w = Windows {
                traces: match own.and_then(|o| o.traces.as_deref()) {
                    Some(v) => window(issues, path("traces"), Some(v)),
                    None => base.traces,
                },
                capture: match own.and_then(|o| o.capture.as_deref()) {
                    Some(v) => window(issues, path("capture"), Some(v)),
                    None => base.capture,
                },
            };
            (origin, w)
        })
        .collect();
    let batch = raw.batch.unwrap_or(DEFAULT_BATCH);
    if batch == 0 || batch > 100_000 {
        issues.push(ConfigIssue {
            path: "retention.batch".into(),
            message: format!("{batch} rows per transaction is out of range"),
            hint: Some("use 1 to 100000 (default 1000)".into()),
        });
    }
    let every = duration(
        issues,
        "retention.every",
        raw.every.as_deref(),
        DEFAULT_EVERY,
    );
    let any = windows
        .values()
        .any(|w| w.traces.is_some() || w.capture.is_some());
    any.then_some(RetentionConfig {
        windows,
        every,
        batch,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> (Option<RetentionConfig>, Vec<ConfigIssue>) {
        let raw: RawRetention = toml::from_str(text).unwrap();
        let mut issues = Vec::new();
        (validate_retention(&raw, &mut issues), issues)
    }

    #[test]
    fn origins_take_their_own_windows_and_the_rest_the_tables() {
        let (r, issues) = parse(
            "traces = \"90d\"\ncapture = \"30d\"\n[origins.eval]\ntraces = \"7d\"\n[origins.judge]\ncapture = \"1d\"\n",
        );
        assert!(issues.is_empty(), "{issues:?}");
        let r = r.unwrap();
        let day = 86_400;
        assert_eq!(
            r.windows["live"].traces,
            Some(Duration::from_secs(90 * day))
        );
        assert_eq!(r.windows["eval"].traces, Some(Duration::from_secs(7 * day)));
        assert_eq!(
            r.windows["eval"].capture,
            Some(Duration::from_secs(30 * day))
        );
        assert_eq!(r.windows["judge"].capture, Some(Duration::from_secs(day)));
        assert_eq!((r.every, r.batch), (DEFAULT_EVERY, DEFAULT_BATCH));
        assert_eq!(parse("").0, None, "nothing set: nothing removed");
    }

    #[test]
    fn bad_values_are_named() {
        let (_, issues) =
            parse("traces = \"soon\"\nbatch = 0\n[origins.robots]\ntraces = \"1d\"\n");
        let paths: Vec<&str> = issues.iter().map(|i| i.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "retention.traces",
                "retention.origins.robots",
                "retention.batch"
            ]
        );
    }
}
