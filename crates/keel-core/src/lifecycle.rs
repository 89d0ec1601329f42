//! Model lifecycle: when a provider deprecates a model, when it retires it (calls fail
//! from that day), and what it recommends instead.
//!
//! Providers retire models on their schedule; a team must know months ahead, with the
//! successor already tested. The dates come from Keel's built-in table (the price table's
//! `deprecated`, `retires` and `successor`, dated by its `lifecycle_as_of`) or from
//! `keel.toml` (`[models.NAME] deprecated / retires / successor`, which win). Everything
//! that warns — `keel check`, startup, the `model_retiring` alert, the `Deprecation` and
//! `Sunset` response headers, `keel models` — reads the one [`Lifecycle`] resolved here,
//! so they cannot disagree.

use time::format_description::well_known::Rfc2822;
use time::macros::format_description;
use time::{Date, OffsetDateTime};

/// A model retiring within this many days is warned about.
pub const WARN_DAYS: i64 = 90;
/// The `model_retiring` alert fires once at each of these days left (and once more when
/// the day has passed).
pub const STAGES: [i64; 3] = [90, 30, 7];

/// Where a model's lifecycle dates came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LifecycleSource {
    /// `keel.toml` set at least one of the dates or the successor.
    Config,
    /// Keel's built-in table, checked on this date.
    Builtin { as_of: String },
}

impl LifecycleSource {
    pub fn describe(&self) -> String {
        match self {
            LifecycleSource::Config => "keel.toml".into(),
            LifecycleSource::Builtin { as_of } => format!("Keel's lifecycle table of {as_of}"),
        }
    }
}

/// What is known of one model's retirement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lifecycle {
    /// The day the provider deprecated it (announced its retirement).
    pub deprecated: Option<Date>,
    /// The first day calls to it fail.
    pub retires: Option<Date>,
    /// The provider's recommended replacement (an upstream id, or a configured model).
    pub successor: Option<String>,
    pub source: LifecycleSource,
}

/// The stage `days_left` has reached: 90, 30 or 7, 0 once retired; `None` before 90.
pub fn stage_of(days_left: i64) -> Option<i64> {
    if days_left <= 0 {
        return Some(0);
    }
    STAGES.iter().rev().copied().find(|s| days_left <= *s)
}

/// Parse a `YYYY-MM-DD` date.
pub fn parse_date(s: &str) -> Option<Date> {
    Date::parse(s.trim(), format_description!("[year]-[month]-[day]")).ok()
}

/// A date as `YYYY-MM-DD`.
pub fn format_date(d: Date) -> String {
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

/// The UTC day of a Unix time in milliseconds.
pub fn day_of_ms(ms: i64) -> Date {
    OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
        .map(|t| t.date())
        .unwrap_or(Date::MIN)
}

/// Today, in UTC.
pub fn today() -> Date {
    OffsetDateTime::now_utc().date()
}

fn midnight_unix(d: Date) -> i64 {
    d.midnight().assume_utc().unix_timestamp()
}

impl Lifecycle {
    /// Days from `today` to retirement (0 on the day, negative after); `None` when no
    /// retirement date is known.
    pub fn days_left(&self, today: Date) -> Option<i64> {
        self.retires.map(|r| (r - today).whole_days())
    }

    /// Whether it retires within [`WARN_DAYS`] of `today`, or has retired.
    pub fn retiring(&self, today: Date) -> bool {
        self.days_left(today).is_some_and(|d| d <= WARN_DAYS)
    }

    /// The alert stage reached on `today`: 90, 30 or 7 days left, or 0 once retired.
    pub fn stage(&self, today: Date) -> Option<i64> {
        stage_of(self.days_left(today)?)
    }

    /// The `Deprecation` header value (RFC 9745: `@` and a Unix time), when deprecated.
    pub fn deprecation_header(&self) -> Option<String> {
        self.deprecated.map(|d| format!("@{}", midnight_unix(d)))
    }

    /// The `Sunset` header value (RFC 8594: an HTTP-date), when a retirement is known.
    pub fn sunset_header(&self) -> Option<String> {
        let r = self.retires?;
        let t = r.midnight().assume_utc();
        // RFC 2822 writes `+0000`; an HTTP-date says `GMT`.
        t.format(&Rfc2822).ok().map(|s| s.replace(" +0000", " GMT"))
    }

    /// The sentence `keel check` and startup print for a retiring model, with the
    /// command that tests the successor.
    pub fn warning(&self, model: &str, upstream: &str, today: Date) -> Option<String> {
        if !self.retiring(today) {
            return None;
        }
        let retires = self.retires.map(format_date)?;
        let left = self.days_left(today)?;
        let when = match left {
            l if l < 0 => format!("retired on {retires} ({} days ago): its calls fail", -l),
            0 => format!("retires today ({retires})"),
            1 => format!("retires on {retires} (tomorrow)"),
            l => format!("retires on {retires} (in {l} days)"),
        };
        let next = match &self.successor {
            Some(s) => format!(
                "; successor `{s}`: test it with `keel models check-successor {model}` or `keel eval compare SUITE --model {s} --baseline-model {model}`"
            ),
            None => "; no successor is known: choose one and set `successor` on the model".into(),
        };
        Some(format!(
            "models.{model}: upstream `{upstream}` {when} (per {}){next}",
            self.source.describe()
        ))
    }
}

/// The lifecycle fields as written (config or the built-in table), before checking.
#[derive(Debug, Clone, Default)]
pub struct RawLifecycle<'a> {
    pub deprecated: Option<&'a str>,
    pub retires: Option<&'a str>,
    pub successor: Option<&'a str>,
}

/// A problem with lifecycle fields: the key and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LifecycleIssue {
    pub key: &'static str,
    pub message: String,
}

impl RawLifecycle<'_> {
    pub fn is_empty(&self) -> bool {
        self.deprecated.is_none() && self.retires.is_none() && self.successor.is_none()
    }

    /// Check and convert.
    pub fn resolve(
        &self,
        source: LifecycleSource,
    ) -> Result<Option<Lifecycle>, Vec<LifecycleIssue>> {
        if self.is_empty() {
            return Ok(None);
        }
        let mut issues = Vec::new();
        let mut date = |key: &'static str, v: Option<&str>| {
            v.and_then(|s| match parse_date(s) {
                Some(d) => Some(d),
                None => {
                    issues.push(LifecycleIssue {
                        key,
                        message: format!("`{s}` is not a date"),
                    });
                    None
                }
            })
        };
        let retires = date("retires", self.retires);
        let deprecated = date("deprecated", self.deprecated);
        if let (Some(d), Some(r)) = (deprecated, retires) {
            if d > r {
                issues.push(LifecycleIssue {
                    key: "deprecated",
                    message: format!(
                        "deprecated on {} is after it retires on {}",
                        format_date(d),
                        format_date(r)
                    ),
                });
            }
        }
        let successor = self.successor.map(str::trim);
        if successor.is_some_and(str::is_empty) {
            issues.push(LifecycleIssue {
                key: "successor",
                message: "is empty".into(),
            });
        }
        if !issues.is_empty() {
            return Err(issues);
        }
        Ok(Some(Lifecycle {
            deprecated,
            retires,
            successor: successor.map(str::to_string),
            source,
        }))
    }
}

impl Lifecycle {
    /// A model given only a retirement date counts as deprecated from `today` (the day
    /// Keel learned of it), so its responses carry `Deprecation`: set `deprecated` to
    /// say since when.
    pub fn with_implied_deprecation(mut self, today: Date) -> Lifecycle {
        if self.deprecated.is_none() {
            self.deprecated = self.retires.map(|r| r.min(today));
        }
        self
    }
}

/// Layer config over the table: each field config sets wins; the rest comes from the
/// table. The source is `Config` when config set anything.
pub fn overlay(config: Option<Lifecycle>, table: Option<Lifecycle>) -> Option<Lifecycle> {
    match (config, table) {
        (None, t) => t,
        (Some(c), None) => Some(c),
        (Some(c), Some(t)) => Some(Lifecycle {
            deprecated: c.deprecated.or(t.deprecated),
            retires: c.retires.or(t.retires),
            successor: c.successor.or(t.successor),
            source: LifecycleSource::Config,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Date {
        parse_date(s).unwrap()
    }

    fn life(retires: &str) -> Lifecycle {
        Lifecycle {
            deprecated: Some(d("2026-10-14")),
            retires: Some(d(retires)),
            successor: Some("gpt-next".into()),
            source: LifecycleSource::Config,
        }
    }

    #[test]
    fn days_left_and_stages_count_whole_utc_days() {
        let l = life("2027-01-14");
        assert_eq!(l.days_left(d("2026-12-05")), Some(40));
        assert_eq!(l.stage(d("2026-10-15")), None, "91 days left: no stage yet");
        assert_eq!(l.stage(d("2026-10-16")), Some(90));
        assert_eq!(l.stage(d("2026-12-05")), Some(90));
        assert_eq!(l.stage(d("2026-12-15")), Some(30));
        assert_eq!(l.stage(d("2027-01-07")), Some(7));
        assert_eq!(l.stage(d("2027-01-14")), Some(0));
        assert_eq!(l.stage(d("2027-02-01")), Some(0));
        assert!(l.retiring(d("2026-12-05")));
        assert!(!l.retiring(d("2026-01-01")));
    }

    #[test]
    fn headers_follow_rfc_9745_and_rfc_8594() {
        let l = life("2027-01-14");
        assert_eq!(l.deprecation_header().as_deref(), Some("@1791936000"));
        assert_eq!(
            l.sunset_header().as_deref(),
            Some("Thu, 14 Jan 2027 00:00:00 GMT")
        );
    }

    #[test]
    fn warnings_name_the_date_the_source_and_the_successor_command() {
        let l = life("2027-01-14");
        let w = l.warning("chat", "gpt-4o-mini", d("2026-12-05")).unwrap();
        assert!(
            w.contains("models.chat: upstream `gpt-4o-mini` retires on 2027-01-14 (in 40 days)"),
            "{w}"
        );
        assert!(w.contains("keel models check-successor chat"), "{w}");
        assert!(w.contains("--model gpt-next --baseline-model chat"), "{w}");
        let past = l.warning("chat", "gpt-4o-mini", d("2027-01-20")).unwrap();
        assert!(
            past.contains("retired on 2027-01-14 (6 days ago)"),
            "{past}"
        );
        assert!(l.warning("chat", "gpt-4o-mini", d("2026-06-01")).is_none());
    }

    #[test]
    fn raw_fields_are_checked_and_a_retirement_alone_implies_deprecation() {
        let today = d("2026-12-05");
        let only = RawLifecycle {
            retires: Some("2027-03-01"),
            ..RawLifecycle::default()
        };
        let l = only.resolve(LifecycleSource::Config).unwrap().unwrap();
        assert_eq!(l.deprecated, None);
        assert_eq!(l.with_implied_deprecation(today).deprecated, Some(today));
        let bad = RawLifecycle {
            deprecated: Some("2027-05-01"),
            retires: Some("March 1st"),
            successor: Some(" "),
        };
        let issues = bad.resolve(LifecycleSource::Config).unwrap_err();
        let keys: Vec<_> = issues.iter().map(|i| i.key).collect();
        assert_eq!(keys, ["retires", "successor"]);
        let backwards = RawLifecycle {
            deprecated: Some("2027-05-01"),
            retires: Some("2027-03-01"),
            successor: None,
        };
        let issues = backwards.resolve(LifecycleSource::Config).unwrap_err();
        assert!(issues[0].message.contains("after it retires"));
        assert_eq!(
            RawLifecycle::default().resolve(LifecycleSource::Config),
            Ok(None)
        );
    }

    #[test]
    fn config_wins_field_by_field_over_the_table() {
        let table = Lifecycle {
            deprecated: Some(d("2026-10-14")),
            retires: Some(d("2027-01-14")),
            successor: Some("gpt-6-luna".into()),
            source: LifecycleSource::Builtin {
                as_of: "2026-12-01".into(),
            },
        };
        let config = Lifecycle {
            deprecated: None,
            retires: None,
            successor: Some("house-next".into()),
            source: LifecycleSource::Config,
        };
        let l = overlay(Some(config), Some(table.clone())).unwrap();
        assert_eq!(l.retires, table.retires);
        assert_eq!(l.successor.as_deref(), Some("house-next"));
        assert_eq!(l.source, LifecycleSource::Config);
        assert_eq!(overlay(None, Some(table.clone())), Some(table));
    }
}
