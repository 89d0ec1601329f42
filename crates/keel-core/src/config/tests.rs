use std::path::Path;

use super::*;

const CONTRACT: &str = r#"
[gateway]
listen = "127.0.0.1:8100"
store = "keel.db"

[providers.up]
kind = "openai"
base_url = "http://127.0.0.1:18080/v1"
api_key_env = "UP_KEY"

[models.mock-1]
provider = "up"
upstream_model = "mock-1"
input_price_per_mtok = 0.15
output_price_per_mtok = 0.60
"#;

fn load(text: &str) -> Result<Config, ConfigError> {
    Config::from_toml(text, Path::new("/etc/keel/keel.toml"))
}

#[test]
fn the_documented_contract_loads() {
    let c = load(CONTRACT).unwrap();
    assert_eq!(c.gateway.listen.to_string(), "127.0.0.1:8100");
    assert_eq!(c.gateway.store, "/etc/keel/keel.db");
    let m = &c.models["mock-1"];
    assert_eq!(m.upstream_model, "mock-1");
    assert_eq!(m.price_source, PriceSource::Config);
    assert_eq!(m.price.unwrap().input_per_mtok.0, 150_000_000);
    assert!(matches!(
        c.providers["up"].kind,
        ProviderKind::OpenAi { .. }
    ));
}

#[test]
fn unknown_keys_name_the_path_and_suggest_the_fix() {
    let text = CONTRACT.replace("upstream_model =", "upstrem_model =");
    let e = load(&text).unwrap_err();
    let s = e.to_string();
    assert!(s.contains("/etc/keel/keel.toml"), "{s}");
    assert!(s.contains("models.mock-1"), "{s}");
    assert!(s.contains("did you mean `upstream_model`?"), "{s}");
}

#[test]
fn unknown_tables_are_rejected() {
    let e = load("[gatway]\nlisten = \"x\"\n").unwrap_err().to_string();
    assert!(e.contains("did you mean `gateway`?"), "{e}");
}

#[test]
fn every_validation_problem_is_reported() {
    let text = r#"
[gateway]
listen = "nope"
capture = "some"
request_timeout = "soon"
[providers.up]
kind = "opnai"
[models.a]
provider = "missing"
input_price_per_mtok = 1.0
"#;
    let e = load(text).unwrap_err();
    let paths: Vec<&str> = e.issues.iter().map(|i| i.path.as_str()).collect();
    assert!(paths.contains(&"gateway.listen"), "{paths:?}");
    assert!(paths.contains(&"gateway.capture"), "{paths:?}");
    assert!(paths.contains(&"gateway.request_timeout"), "{paths:?}");
    assert!(paths.contains(&"providers.up.kind"), "{paths:?}");
    assert!(paths.contains(&"models.a.provider"), "{paths:?}");
    assert!(paths.contains(&"models.a"), "{paths:?}");
}

#[test]
fn syntax_errors_give_a_line() {
    let e = load("[gateway\nlisten = 1").unwrap_err().to_string();
    assert!(e.contains("not valid TOML") && e.contains("line 1"), "{e}");
}

#[test]
fn wrong_types_name_the_key() {
    let e = load("[gateway]\nmax_body_bytes = \"big\"\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("gateway.max_body_bytes"), "{e}");
}

#[test]
fn builtin_prices_apply_and_unknown_models_are_unpriced() {
    let text = r#"
[providers.oa]
kind = "openai"
[models.fast]
provider = "oa"
upstream_model = "gpt-4o-mini-2024-07-18"
[models.custom]
provider = "oa"
upstream_model = "my-finetune"
"#;
    let c = load(text).unwrap();
    assert!(matches!(
        c.models["fast"].price_source,
        PriceSource::Builtin { .. }
    ));
    assert_eq!(c.models["custom"].price_source, PriceSource::Unpriced);
    assert!(c.models["custom"].price.is_none());
    assert!(c
        .warnings
        .iter()
        .any(|w| w.contains("my-finetune") && w.contains("unpriced")));
}

#[test]
fn mock_providers_take_settings_and_check_rates() {
    let ok = "[providers.m]\nkind = \"mock\"\n[providers.m.mock]\nlatency_ms = 5\nrate_429 = 0.1\n[models.x]\nprovider = \"m\"\n";
    let c = load(ok).unwrap();
    match &c.providers["m"].kind {
        ProviderKind::Mock(s) => assert_eq!(s.latency_ms, 5),
        other => panic!("{other:?}"),
    }
    let bad = ok.replace("0.1", "1.5");
    let e = load(&bad).unwrap_err().to_string();
    assert!(e.contains("providers.m.mock.rate_429"), "{e}");
}

#[test]
fn memory_store_and_durations() {
    let c = load("[gateway]\nstore = \":memory:\"\nrequest_timeout = \"2s\"\n").unwrap();
    assert_eq!(c.gateway.store, ":memory:");
    assert_eq!(c.gateway.request_timeout.as_secs(), 2);
}
