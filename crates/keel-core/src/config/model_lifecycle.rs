//! A configured model's lifecycle: `[models.NAME] deprecated / retires / successor` over
//! the built-in table's entry for its upstream id (see `crate::lifecycle`).

use super::error::ConfigIssue;
use super::raw::RawModel;

/// A model's lifecycle: `keel.toml`'s fields over the built-in table's entry for its
/// upstream id; a retirement date alone implies deprecation from today.
pub(crate) fn resolve(
    path: &str,
    m: &RawModel,
    table: Option<crate::lifecycle::Lifecycle>,
    issues: &mut Vec<ConfigIssue>,
) -> Option<crate::lifecycle::Lifecycle> {
    use crate::lifecycle::{overlay, LifecycleSource, RawLifecycle};
    let raw = RawLifecycle {
        deprecated: m.deprecated.as_deref(),
        retires: m.retires.as_deref(),
        successor: m.successor.as_deref(),
    };
    let config = match raw.resolve(LifecycleSource::Config) {
        Ok(c) => c,
        Err(found) => {
            for i in found {
                issues.push(ConfigIssue {
                    path: format!("{path}.{}", i.key),
                    message: i.message,
                    hint: Some(
                        "dates are YYYY-MM-DD, e.g. retires = \"2027-01-14\"; successor names a model"
                            .into(),
                    ),
                });
            }
            None
        }
    };
    overlay(config, table).map(|l| l.with_implied_deprecation(crate::lifecycle::today()))
}
