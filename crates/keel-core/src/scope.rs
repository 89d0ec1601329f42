//! Scopes and windows: who a budget, rate limit, spike detector or alert rule is about,
//! and over which stretch of time it counts.
//!
//! A scope is written `"global"`, `"tenant"` (each tenant separately), or
//! `"tenant=acme"` (that tenant only); likewise `key`, `feature` and `model`. One parser
//! serves every table that takes a scope, so they all read the same way.
//!
//! Windows are calendar windows in UTC (a day starts at 00:00, a week on Monday, a
//! month on the 1st) or `total` (never resets), so every replica and every report agrees
//! on where a window starts without sharing a clock beyond UTC.

use std::fmt;

use time::{Date, Duration, OffsetDateTime, Time};

/// What a scope is keyed by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ScopeKind {
    Global,
    Key,
    Tenant,
    Feature,
    Model,
}

impl ScopeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ScopeKind::Global => "global",
            ScopeKind::Key => "key",
            ScopeKind::Tenant => "tenant",
            ScopeKind::Feature => "feature",
            ScopeKind::Model => "model",
        }
    }

    pub fn parse(s: &str) -> Option<ScopeKind> {
        Some(match s {
            "global" => ScopeKind::Global,
            "key" => ScopeKind::Key,
            "tenant" => ScopeKind::Tenant,
            "feature" => ScopeKind::Feature,
            "model" => ScopeKind::Model,
            _ => return None,
        })
    }
}

/// A scope: a kind, and either one value (`tenant=acme`) or every value (`tenant`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Scope {
    pub kind: ScopeKind,
    /// `None`: each value separately (and always for `global`).
    pub value: Option<String>,
}

/// Why a scope string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a scope")]
pub struct BadScope(pub String);

impl Scope {
    pub const GLOBAL: Scope = Scope {
        kind: ScopeKind::Global,
        value: None,
    };

    /// Parse `global`, `tenant`, `tenant=acme`, `key=k_1`, `feature=support`, `model=gpt-4o`.
    /// `feature=NAME` or `tenant=NAME` (what narrows an online eval or a review queue);
    /// `None` for anything else.
    pub fn feature_or_tenant(s: &str) -> Option<Scope> {
        Scope::parse(s).ok().filter(|s| {
            matches!(s.kind, ScopeKind::Feature | ScopeKind::Tenant) && s.value.is_some()
        })
    }

    pub fn parse(s: &str) -> Result<Scope, BadScope> {
        let s = s.trim();
        let (kind, value) = match s.split_once('=') {
            Some((k, v)) => (k.trim(), Some(v.trim())),
            None => (s, None),
        };
        let kind = ScopeKind::parse(kind).ok_or_else(|| BadScope(s.to_string()))?;
        match (kind, value) {
            (ScopeKind::Global, Some(_)) => Err(BadScope(s.to_string())),
            (_, Some("")) => Err(BadScope(s.to_string())),
            (kind, value) => Ok(Scope {
                kind,
                value: value.map(str::to_string),
            }),
        }
    }

    /// The value a call has for this scope's kind, if the scope applies to it: `Some("")`
    /// for global, the call's tenant for `tenant`, and so on; `None` when the call has no
    /// such value or a fixed-value scope names another one.
    pub fn applies<'a>(&self, call: &CallScope<'a>) -> Option<&'a str> {
        let v = match self.kind {
            ScopeKind::Global => return Some(""),
            ScopeKind::Key => call.key,
            ScopeKind::Tenant => call.tenant,
            ScopeKind::Feature => call.feature,
            ScopeKind::Model => call.model,
        }?;
        match &self.value {
            Some(want) if want != v => None,
            _ => Some(v),
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.value {
            Some(v) => write!(f, "{}={v}", self.kind.as_str()),
            None => f.write_str(self.kind.as_str()),
        }
    }
}

/// The scope values of one call.
#[derive(Debug, Clone, Copy, Default)]
pub struct CallScope<'a> {
    pub key: Option<&'a str>,
    pub tenant: Option<&'a str>,
    pub feature: Option<&'a str>,
    /// The configured model (or function) the caller named.
    pub model: Option<&'a str>,
}

/// A budget window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Window {
    Day,
    Week,
    Month,
    /// Never resets.
    Total,
}

/// One occurrence of a window: where it starts and ends (Unix ms) and a stable label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowSpan {
    pub start_ms: i64,
    /// `i64::MAX` for `total`.
    pub end_ms: i64,
    /// `2026-12-02`, `2026-W49`, `2026-12`, `total`.
    pub label: String,
}

impl Window {
    pub fn parse(s: &str) -> Option<Window> {
        Some(match s {
            "day" => Window::Day,
            "week" => Window::Week,
            "month" => Window::Month,
            "total" => Window::Total,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Window::Day => "day",
            Window::Week => "week",
            Window::Month => "month",
            Window::Total => "total",
        }
    }

    /// The window that holds `at_ms`.
    pub fn span(self, at_ms: i64) -> WindowSpan {
        let at = OffsetDateTime::from_unix_timestamp_nanos(i128::from(at_ms) * 1_000_000)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH);
        let day = at.date();
        let ms = |d: Date| d.with_time(Time::MIDNIGHT).assume_utc().unix_timestamp() * 1000;
        match self {
            Window::Total => WindowSpan {
                start_ms: 0,
                end_ms: i64::MAX,
                label: "total".into(),
            },
            Window::Day => WindowSpan {
                start_ms: ms(day),
                end_ms: ms(day) + 86_400_000,
                label: format!("{day}"),
            },
            Window::Week => {
                let monday =
                    day - Duration::days(i64::from(day.weekday().number_days_from_monday()));
                let (year, week, _) = monday.to_iso_week_date();
                WindowSpan {
                    start_ms: ms(monday),
                    end_ms: ms(monday) + 7 * 86_400_000,
                    label: format!("{year}-W{week:02}"),
                }
            }
            Window::Month => {
                let first = day.replace_day(1).unwrap_or(day);
                let next = match first.month() {
                    time::Month::December => {
                        Date::from_calendar_date(first.year() + 1, time::Month::January, 1)
                    }
                    m => Date::from_calendar_date(first.year(), m.next(), 1),
                }
                .unwrap_or(first);
                WindowSpan {
                    start_ms: ms(first),
                    end_ms: ms(next),
                    label: format!("{}-{:02}", first.year(), u8::from(first.month())),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_parse_and_apply() {
        let each = Scope::parse("tenant").unwrap();
        let acme = Scope::parse("tenant = acme").unwrap();
        assert_eq!(acme.to_string(), "tenant=acme");
        assert!(Scope::parse("global=x").is_err());
        assert!(Scope::parse("team").is_err());
        assert!(Scope::parse("tenant=").is_err());
        let call = CallScope {
            tenant: Some("globex"),
            ..CallScope::default()
        };
        assert_eq!(each.applies(&call), Some("globex"));
        assert_eq!(acme.applies(&call), None);
        assert_eq!(Scope::GLOBAL.applies(&call), Some(""));
        assert_eq!(Scope::parse("feature").unwrap().applies(&call), None);
    }

    #[test]
    fn windows_are_utc_calendar_spans() {
        // 2026-12-02T20:25:52Z, a Wednesday.
        let at = 1_796_243_152_000;
        let d = Window::Day.span(at);
        assert_eq!(d.label, "2026-12-02");
        assert_eq!(d.end_ms - d.start_ms, 86_400_000);
        assert!(d.start_ms <= at && at < d.end_ms);
        let w = Window::Week.span(at);
        assert_eq!(w.label, "2026-W49");
        assert_eq!(w.start_ms, d.start_ms - 2 * 86_400_000);
        let m = Window::Month.span(at);
        assert_eq!(m.label, "2026-12");
        assert_eq!((m.end_ms - m.start_ms) / 86_400_000, 31);
        assert_eq!(Window::Month.span(m.end_ms).label, "2027-01");
        assert_eq!(Window::Total.span(at).start_ms, 0);
    }
}
