//! Lineage: a *release* is the exact combination that served a function call — a prompt
//! version, a model with its pinned upstream id, the effective parameters and the tools.
//!
//! Its id is a content hash of that combination, so the same combination deployed twice
//! (a label moved away and back, a restart, another replica) is the same release, and
//! any change to one of its parts is a new one. Traces point at it by id; the store keeps
//! one row per release (`keel releases` reads them with their traffic).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// What shipped together.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Release {
    /// `rel_` + the first 16 hex digits of SHA-256 over the canonical JSON of the rest.
    pub id: String,
    pub function: String,
    pub variant: String,
    pub prompt_name: String,
    pub prompt_version: i64,
    /// The prompt version's content hash.
    pub prompt_hash: String,
    /// The configured model name, its provider and the pinned id sent upstream.
    pub model: String,
    pub provider: String,
    pub upstream_model: String,
    /// Prompt default parameters overridden by the variant's.
    pub params: Map<String, Value>,
    pub tools: Option<Vec<Value>>,
}

impl Release {
    /// A release with its id computed from its parts.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        function: &str,
        variant: &str,
        prompt_name: &str,
        prompt_version: i64,
        prompt_hash: &str,
        model: &str,
        provider: &str,
        upstream_model: &str,
        params: Map<String, Value>,
        tools: Option<Vec<Value>>,
    ) -> Release {
        let mut r = Release {
            id: String::new(),
            function: function.to_string(),
            variant: variant.to_string(),
            prompt_name: prompt_name.to_string(),
            prompt_version,
            prompt_hash: prompt_hash.to_string(),
            model: model.to_string(),
            provider: provider.to_string(),
            upstream_model: upstream_model.to_string(),
            params,
            tools,
        };
        r.id = r.compute_id();
        r
    }

    /// The content id. `serde_json::Map` keeps keys sorted (no `preserve_order`), so the
    /// JSON below is canonical; the id field itself is left out.
    fn compute_id(&self) -> String {
        let parts = serde_json::json!({
            "function": self.function,
            "variant": self.variant,
            "prompt_name": self.prompt_name,
            "prompt_version": self.prompt_version,
            "prompt_hash": self.prompt_hash,
            "model": self.model,
            "provider": self.provider,
            "upstream_model": self.upstream_model,
            "params": self.params,
            "tools": self.tools,
        });
        let digest = Sha256::digest(parts.to_string().as_bytes());
        let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        format!("rel_{hex}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn release(version: i64, temperature: f64) -> Release {
        let mut params = Map::new();
        params.insert("temperature".into(), temperature.into());
        Release::new(
            "support-answer",
            "control",
            "support/answer",
            version,
            "abc",
            "mock-1",
            "mock",
            "mock-1",
            params,
            None,
        )
    }

    #[test]
    fn same_parts_same_id_and_any_change_is_a_new_release() {
        let a = release(1, 0.2);
        assert_eq!(a.id, release(1, 0.2).id);
        assert!(a.id.starts_with("rel_") && a.id.len() == 20, "{}", a.id);
        assert_ne!(a.id, release(2, 0.2).id);
        assert_ne!(a.id, release(1, 0.3).id);
    }

    #[test]
    fn the_id_is_stable_across_versions_of_keel() {
        // Golden value: traces in existing stores point at this id.
        assert_eq!(release(1, 0.2).id, GOLDEN);
    }

    const GOLDEN: &str = "rel_b191d052b97d2608";
}
