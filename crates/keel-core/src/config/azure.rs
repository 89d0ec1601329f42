//! `kind = "azure"`: Azure OpenAI's deployment API.
//!
//! ```toml
//! [providers.azure]
//! kind = "azure"
//! base_url = "https://RESOURCE.openai.azure.com"   # the resource endpoint (required)
//! api_version = "2024-10-21"                       # data-plane api-version (default)
//! api_key_env = "AZURE_OPENAI_API_KEY"             # sent as the `api-key` header…
//! # bearer_token_env = "AZURE_OPENAI_AD_TOKEN"     # …or a Microsoft Entra ID token, as a bearer
//!
//! [models.gpt-4o-mini]
//! provider = "azure"
//! upstream_model = "my-gpt4o-mini-deployment"      # the deployment name
//! ```

use super::error::ConfigIssue;
use super::guardrails::issue;
use super::model::{ProviderKind, AZURE_API_VERSION};
use super::raw::RawProvider;

/// Validate an Azure provider at `path`.
pub(super) fn validate_azure(
    p: &RawProvider,
    path: &str,
    issues: &mut Vec<ConfigIssue>,
) -> ProviderKind {
    let base_url = match p.base_url.as_deref() {
        Some(u) if u.starts_with("https://") || u.starts_with("http://") => {
            let u = u.trim_end_matches('/');
            if u.ends_with("/openai") || u.contains("/openai/") {
                issue(
                    issues,
                    format!("{path}.base_url"),
                    format!("`{u}` includes the API path"),
                    "give the resource endpoint only, e.g. \"https://RESOURCE.openai.azure.com\" (Keel adds /openai/deployments/…); for Azure's v1 API (…/openai/v1) use kind = \"openai\"",
                );
            }
            if super::validate::url_has_credentials(u) {
                issue(
                    issues,
                    format!("{path}.base_url"),
                    super::validate::CREDENTIALS_IN_URL.into(),
                    "remove them and give the key in api_key_env (or bearer_token_env)",
                );
            }
            u.to_string()
        }
        Some(u) => {
            issue(
                issues,
                format!("{path}.base_url"),
                format!("`{u}` is not an http(s) URL"),
                "e.g. \"https://RESOURCE.openai.azure.com\"",
            );
            String::new()
        }
        None => {
            issue(
                issues,
                format!("{path}.base_url"),
                "an azure provider needs its resource endpoint".into(),
                "add base_url = \"https://RESOURCE.openai.azure.com\"",
            );
            String::new()
        }
    };
    let api_version = p
        .api_version
        .clone()
        .unwrap_or_else(|| AZURE_API_VERSION.to_string());
    let well_formed = api_version.len() >= 10
        && api_version.as_bytes()[..10]
            .iter()
            .enumerate()
            .all(|(i, b)| {
                if i == 4 || i == 7 {
                    *b == b'-'
                } else {
                    b.is_ascii_digit()
                }
            });
    if !well_formed {
        issue(
            issues,
            format!("{path}.api_version"),
            format!("`{api_version}` is not an Azure OpenAI api-version"),
            &format!("use a dated version, e.g. \"{AZURE_API_VERSION}\" or \"2025-04-01-preview\""),
        );
    }
    if p.api_key_env.is_some() && p.bearer_token_env.is_some() {
        issue(
            issues,
            path.to_string(),
            "has both api_key_env and bearer_token_env".into(),
            "keep one: the api-key header, or an Entra ID bearer token",
        );
    }
    ProviderKind::Azure {
        base_url,
        api_version,
        api_key_env: p.api_key_env.clone(),
        bearer_token_env: p.bearer_token_env.clone(),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::{Config, ProviderKind};

    fn load(provider: &str) -> Result<Config, crate::config::ConfigError> {
        Config::from_toml(
            &format!("[providers.az]\nkind = \"azure\"\n{provider}\n[models.m]\nprovider = \"az\"\nupstream_model = \"dep-1\"\n"),
            Path::new("/etc/keel/keel.toml"),
        )
    }

    #[test]
    fn an_azure_provider_takes_its_endpoint_version_and_auth() {
        let c =
            load("base_url = \"https://res.openai.azure.com/\"\napi_key_env = \"AZ_KEY\"").unwrap();
        let ProviderKind::Azure {
            base_url,
            api_version,
            api_key_env,
            bearer_token_env,
        } = &c.providers["az"].kind
        else {
            panic!("{:?}", c.providers["az"].kind)
        };
        assert_eq!(base_url, "https://res.openai.azure.com");
        assert_eq!(api_version, super::AZURE_API_VERSION);
        assert_eq!(api_key_env.as_deref(), Some("AZ_KEY"));
        assert!(bearer_token_env.is_none());
        assert_eq!(c.models["m"].upstream_model, "dep-1");
    }

    #[test]
    fn mistakes_name_the_key_and_the_fix() {
        let paths = |text: &str| -> Vec<String> {
            load(text)
                .unwrap_err()
                .issues
                .iter()
                .map(|i| i.path.clone())
                .collect()
        };
        assert!(paths("").contains(&"providers.az.base_url".to_string()));
        assert!(
            paths("base_url = \"https://res.openai.azure.com/openai/v1\"")
                .contains(&"providers.az.base_url".to_string())
        );
        assert!(
            paths("base_url = \"https://r.openai.azure.com\"\napi_version = \"latest\"")
                .contains(&"providers.az.api_version".to_string())
        );
        assert!(paths("base_url = \"https://r.openai.azure.com\"\napi_key_env = \"A\"\nbearer_token_env = \"B\"")
            .contains(&"providers.az".to_string()));
        // Azure's keys on another kind.
        let e = Config::from_toml(
            "[providers.o]\nkind = \"openai\"\napi_version = \"2024-10-21\"\n",
            Path::new("/k.toml"),
        )
        .unwrap_err();
        assert!(
            e.issues.iter().any(|i| i.path == "providers.o.api_version"),
            "{e}"
        );
    }

    #[test]
    fn a_base_url_with_credentials_is_refused_without_echoing_them() {
        let e = load("base_url = \"https://me:hunter2@r.openai.azure.com\"").unwrap_err();
        let text = e.to_string();
        assert!(text.contains("carries credentials"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
        for kind in ["openai", "anthropic", "gemini"] {
            let e = Config::from_toml(
                &format!("[providers.p]\nkind = \"{kind}\"\nbase_url = \"http://u:s3cret@127.0.0.1:9/v1\"\n"),
                Path::new("/k.toml"),
            )
            .unwrap_err();
            let text = e.to_string();
            assert!(
                e.issues.iter().any(|i| i.path == "providers.p.base_url"
                    && i.message.contains("carries credentials")),
                "{kind}: {text}"
            );
            assert!(!text.contains("s3cret"), "{kind}: {text}");
        }
        // An `@` in the path is not a credential.
        assert!(!super::super::validate::url_has_credentials(
            "https://h/v1/@models"
        ));
        assert!(super::super::validate::url_has_credentials(
            "https://u@h/v1"
        ));
    }
}
