//! Spend-spike detection config (`[spikes]`): per scope, spend summed per bucket against
//! an EWMA baseline; a bucket this many deviations above it is a spike, which alerts,
//! blocks or downgrades (see `keel_governance::spikes`).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::alerting::{check_destinations, issue, Destination};
use super::error::ConfigIssue;
use super::governance::duration;
use crate::money::Nanos;
use crate::scope::ScopeKind;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSpikes {
    pub enabled: Option<bool>,
    pub scopes: Option<Vec<String>>,
    pub bucket: Option<String>,
    pub half_life: Option<String>,
    pub z: Option<f64>,
    pub min_usd: Option<f64>,
    pub warmup: Option<u32>,
    pub action: Option<String>,
    pub hold: Option<String>,
    pub alert_to: Option<Vec<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpikeAction {
    Alert,
    Block,
    Downgrade,
}

impl SpikeAction {
    pub fn as_str(self) -> &'static str {
        match self {
            SpikeAction::Alert => "alert",
            SpikeAction::Block => "block",
            SpikeAction::Downgrade => "downgrade",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct SpikeSettings {
    pub scopes: Vec<ScopeKind>,
    pub bucket: Duration,
    /// EWMA weight of the newest bucket, from `half_life` / `bucket`.
    pub alpha: f64,
    pub z: f64,
    pub min_cost: Nanos,
    pub warmup: u32,
    pub action: SpikeAction,
    pub hold: Duration,
    pub alert_to: Vec<String>,
}

pub(crate) fn validate_spikes(
    raw: &RawSpikes,
    destinations: &BTreeMap<String, Destination>,
    issues: &mut Vec<ConfigIssue>,
) -> Option<SpikeSettings> {
    let any = raw.scopes.is_some() || raw.action.is_some() || raw.z.is_some();
    if !raw.enabled.unwrap_or(any) {
        return None;
    }
    let mut scopes = Vec::new();
    for s in raw
        .scopes
        .clone()
        .unwrap_or_else(|| vec!["feature".into(), "tenant".into()])
    {
        match ScopeKind::parse(&s) {
            Some(k) if k != ScopeKind::Global || !scopes.contains(&k) => scopes.push(k),
            _ => issue(
                issues,
                "spikes.scopes".into(),
                format!("`{s}` is not a scope kind"),
                "use \"feature\", \"tenant\", \"key\", \"model\" or \"global\"",
            ),
        }
    }
    let bucket = duration(
        issues,
        "spikes.bucket",
        raw.bucket.as_deref(),
        Duration::from_secs(60),
    );
    let half_life = duration(
        issues,
        "spikes.half_life",
        raw.half_life.as_deref(),
        Duration::from_secs(1800),
    );
    let buckets = (half_life.as_secs_f64() / bucket.as_secs_f64()).max(1.0);
    let alpha = 1.0 - 0.5f64.powf(1.0 / buckets);
    let z = raw.z.unwrap_or(4.0);
    if !(z.is_finite() && z > 0.0) {
        issue(
            issues,
            "spikes.z".into(),
            format!("{z} must be above 0"),
            "e.g. z = 4.0",
        );
    }
    let min_cost = match Nanos::from_dollars(raw.min_usd.unwrap_or(0.01)) {
        Some(n) => n,
        None => {
            issue(
                issues,
                "spikes.min_usd".into(),
                "must be zero or more dollars".into(),
                "e.g. min_usd = 0.01",
            );
            Nanos(0)
        }
    };
    let action = match raw.action.as_deref().unwrap_or("alert") {
        "alert" => SpikeAction::Alert,
        "block" => SpikeAction::Block,
        "downgrade" => SpikeAction::Downgrade,
        other => {
            issue(
                issues,
                "spikes.action".into(),
                format!("unknown spike action `{other}`"),
                "use \"alert\", \"block\" or \"downgrade\"",
            );
            SpikeAction::Alert
        }
    };
    let alert_to = raw.alert_to.clone().unwrap_or_else(|| vec!["log".into()]);
    check_destinations(issues, "spikes.alert_to", &alert_to, destinations);
    Some(SpikeSettings {
        scopes,
        bucket,
        alpha,
        z,
        min_cost,
        warmup: raw.warmup.unwrap_or(10).max(2),
        action,
        hold: duration(
            issues,
            "spikes.hold",
            raw.hold.as_deref(),
            Duration::from_secs(900),
        ),
        alert_to,
    })
}
