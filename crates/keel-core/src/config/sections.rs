//! What changed between two loads of a config file: each section of keel.toml — a
//! provider, a model, a function, a guardrail policy, an alert rule, a budget, … —
//! fingerprinted on its own, so the audit event of a config load can say which sections
//! changed, were added or removed (an incident's timeline shows it beside the hash).

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

/// Each section's path (`models.gpt-4o-mini`, `alerts.support-spend`, `gateway`) and a
/// short fingerprint of its content; `None` when the text is not TOML.
pub fn fingerprints(text: &str) -> Option<BTreeMap<String, String>> {
    let table: toml::Table = toml::from_str(text).ok()?;
    let mut out = BTreeMap::new();
    for (key, value) in &table {
        match value {
            // Named children (`[models.NAME]`, `[guardrails.policies.NAME]` one level in).
            toml::Value::Table(t) if t.values().all(|v| v.is_table()) && !t.is_empty() => {
                for (child, v) in t {
                    out.insert(format!("{key}.{child}"), digest(v));
                }
            }
            // Arrays of tables (`[[alerts]]`, `[[budgets]]`): by `name`, else position.
            toml::Value::Array(items)
                if items.iter().all(|v| v.is_table()) && !items.is_empty() =>
            {
                for (i, v) in items.iter().enumerate() {
                    let id = v
                        .get("name")
                        .or_else(|| v.get("suite"))
                        .and_then(|n| n.as_str())
                        .map_or_else(|| i.to_string(), str::to_string);
                    out.insert(format!("{key}.{id}"), digest(v));
                }
            }
            v => {
                out.insert(key.clone(), digest(v));
            }
        }
    }
    Some(out)
}

fn digest(v: &toml::Value) -> String {
    let text = toml::to_string(v).unwrap_or_else(|_| format!("{v:?}"));
    Sha256::digest(text.as_bytes())
        .iter()
        .take(6)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Sections changed, added and removed from `before` to `after`, each sorted.
pub fn diff(
    before: &BTreeMap<String, String>,
    after: &BTreeMap<String, String>,
) -> (Vec<String>, Vec<String>, Vec<String>) {
    let changed = after
        .iter()
        .filter(|(k, v)| before.get(*k).is_some_and(|b| b != *v))
        .map(|(k, _)| k.clone())
        .collect();
    let added = after
        .keys()
        .filter(|k| !before.contains_key(*k))
        .cloned()
        .collect();
    let removed = before
        .keys()
        .filter(|k| !after.contains_key(*k))
        .cloned()
        .collect();
    (changed, added, removed)
}

/// "changed models.a; added alerts.b; removed budgets.c" (empty when nothing did).
pub fn describe(changed: &[String], added: &[String], removed: &[String]) -> String {
    let mut parts = Vec::new();
    for (what, list) in [("changed", changed), ("added", added), ("removed", removed)] {
        if !list.is_empty() {
            parts.push(format!("{what} {}", list.join(", ")));
        }
    }
    parts.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_are_fingerprinted_one_by_one_and_diffed() {
        let a = fingerprints(
            "prompts = \"p\"\n[gateway]\nlisten = \"x\"\n[models.a]\nprovider = \"p\"\n[models.b]\nprovider = \"p\"\n\
             [[alerts]]\nname = \"spend\"\nmetric = \"cost\"\nabove = 1\n[[budgets]]\nname = \"m\"\nlimit_usd = 1\n",
        )
        .unwrap();
        assert!(
            a.contains_key("models.a")
                && a.contains_key("alerts.spend")
                && a.contains_key("gateway")
        );
        let b = fingerprints(
            "prompts = \"p\"\n[gateway]\nlisten = \"x\"\n[models.a]\nprovider = \"q\"\n\
             [[alerts]]\nname = \"spend\"\nmetric = \"cost\"\nabove = 1\n[[alerts]]\nname = \"errors\"\nmetric = \"error_rate\"\nabove = 0.1\n",
        )
        .unwrap();
        let (changed, added, removed) = diff(&a, &b);
        assert_eq!(changed, ["models.a"]);
        assert_eq!(added, ["alerts.errors"]);
        assert_eq!(removed, ["budgets.m", "models.b"]);
        assert_eq!(
            describe(&changed, &added, &removed),
            "changed models.a; added alerts.errors; removed budgets.m, models.b"
        );
        assert!(fingerprints("not = [toml").is_none());
    }
}
