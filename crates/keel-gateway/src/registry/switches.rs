//! Kill switches and budget freezes as the request path sees them: read from the store
//! with the rest of the snapshot (`keel switch off`, `keel budget freeze` are served by
//! every replica within a registry refresh) and checked once per call, before anything is
//! rendered, reserved or sent. With nothing switched off — the normal case — the check is
//! one `is_empty`.

use std::collections::HashMap;

use keel_core::config::Config;
use keel_core::scope::CallScope;
use keel_store::sql::Db;

use crate::error::GatewayError;

/// What is switched off and frozen, with each reason.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Switches {
    /// (kind, value) → reason.
    off: HashMap<(String, String), String>,
    /// Frozen budgets that exist in the config: name → reason.
    frozen: Vec<(String, String)>,
}

/// The scope values of one call that a switch can name.
#[derive(Debug, Clone, Copy, Default)]
pub struct SwitchedCall<'a> {
    pub function: Option<&'a str>,
    pub feature: Option<&'a str>,
    pub key: Option<&'a str>,
    pub tenant: Option<&'a str>,
    pub model: Option<&'a str>,
}

/// Load the switched-off scopes and the frozen budgets.
pub fn load(conn: Db<'_>, config: &Config) -> rusqlite::Result<Switches> {
    let off = keel_store::switches::all_switches(conn)?
        .into_iter()
        .map(|s| ((s.kind, s.value), s.reason))
        .collect();
    let frozen = keel_store::switches::all_freezes(conn)?
        .into_iter()
        .filter(|f| config.governance.budgets.iter().any(|b| b.name == f.budget))
        .map(|f| (f.budget, f.reason))
        .collect();
    Ok(Switches { off, frozen })
}

impl Switches {
    /// One line for the log: what is off and frozen, or `none`.
    pub fn describe(&self) -> String {
        let mut parts: Vec<String> = self
            .off
            .iter()
            .map(|((k, v), r)| format!("{k}={v} off ({r})"))
            .chain(
                self.frozen
                    .iter()
                    .map(|(b, r)| format!("budget {b} frozen ({r})")),
            )
            .collect();
        parts.sort();
        if parts.is_empty() {
            "none".into()
        } else {
            parts.join(", ")
        }
    }

    pub fn is_empty(&self) -> bool {
        self.off.is_empty() && self.frozen.is_empty()
    }

    /// `Err(Disabled)` when a switch names one of the call's values, or a frozen
    /// budget applies to it.
    pub fn check(&self, config: &Config, call: &SwitchedCall<'_>) -> Result<(), GatewayError> {
        if self.is_empty() {
            return Ok(());
        }
        for (kind, value) in [
            ("function", call.function),
            ("feature", call.feature),
            ("key", call.key),
            ("tenant", call.tenant),
            ("model", call.model),
        ] {
            let Some(value) = value else { continue };
            if let Some(reason) = self.off.get(&(kind.to_string(), value.to_string())) {
                return Err(GatewayError::Disabled {
                    what: format!("{kind} `{value}` is switched off"),
                    reason: reason.clone(),
                    undo: format!("keel switch on --{kind} {value}"),
                });
            }
        }
        let scope = CallScope {
            key: call.key,
            tenant: call.tenant,
            feature: call.feature,
            model: call.model,
        };
        for (name, reason) in &self.frozen {
            let applies = config
                .governance
                .budgets
                .iter()
                .any(|b| &b.name == name && b.scope.applies(&scope).is_some());
            if applies {
                return Err(GatewayError::Disabled {
                    what: format!("budget `{name}` is frozen"),
                    reason: reason.clone(),
                    undo: format!("keel budget unfreeze {name}"),
                });
            }
        }
        Ok(())
    }

    /// Only the model switches (a function's variant resolves its model later).
    pub fn check_model(&self, model: &str) -> Result<(), GatewayError> {
        if self.off.is_empty() {
            return Ok(());
        }
        match self.off.get(&("model".to_string(), model.to_string())) {
            Some(reason) => Err(GatewayError::Disabled {
                what: format!("model `{model}` is switched off"),
                reason: reason.clone(),
                undo: format!("keel switch on --model {model}"),
            }),
            None => Ok(()),
        }
    }
}
