use std::num::NonZeroUsize;
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
fn every_unknown_key_is_reported_at_once() {
    let text = CONTRACT
        .replace("upstream_model =", "upstrem_model =")
        .replace("listen =", "lisen =")
        .replace("api_key_env =", "api_key_var =")
        + "\n[[budgets]]\nname = \"b\"\nscope = \"global\"\nlimit_usd = 1\nwindow = \"day\"\nmod = \"hard\"\n[gatway]\n";
    let e = load(&text).unwrap_err();
    let paths: Vec<&str> = e.issues.iter().map(|i| i.path.as_str()).collect();
    for want in [
        "gateway.lisen",
        "providers.up.api_key_var",
        "models.mock-1.upstrem_model",
        "budgets[0].mod",
        "gatway",
    ] {
        assert!(paths.contains(&want), "{want} missing from {paths:?}\n{e}");
    }
    assert_eq!(paths.len(), 5, "{e}");
    let s = e.to_string();
    assert!(s.contains("did you mean `upstream_model`?"), "{s}");
    assert!(s.contains("did you mean `listen`?"), "{s}");
    assert!(s.contains("did you mean `mode`?"), "{s}");
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
fn worker_threads_default_to_one_per_core_and_are_bounded() {
    assert_eq!(load(CONTRACT).unwrap().gateway.worker_threads, None);
    let with =
        |v: &str| load(&CONTRACT.replace("[gateway]", &format!("[gateway]\nworker_threads = {v}")));
    for good in [1, 1024] {
        let c = with(&good.to_string()).unwrap();
        assert_eq!(c.gateway.worker_threads.map(|n| n.get()), Some(good));
    }
    for bad in ["0", "1025"] {
        let e = with(bad).unwrap_err().to_string();
        assert!(e.contains("gateway.worker_threads"), "{e}");
        assert!(e.contains(&format!("{bad} is out of range")), "{e}");
        assert!(e.contains("use 1 to 1024"), "{e}");
    }
    let e = with("-1").unwrap_err().to_string();
    assert!(e.contains("gateway.worker_threads"), "{e}");
}

#[test]
fn the_config_key_wins_over_tokio_worker_threads_and_a_bad_variable_is_named() {
    use std::ffi::OsStr;
    let two = NonZeroUsize::new(2);
    let n = |v: &str| worker_threads(None, Some(OsStr::new(v)));
    assert_eq!(worker_threads(two, Some(OsStr::new("junk"))), Ok(two));
    assert_eq!(worker_threads(None, None), Ok(None));
    assert_eq!(n("3"), Ok(NonZeroUsize::new(3)));
    for bad in ["0", "many", "1025", ""] {
        let e = n(bad).unwrap_err();
        assert!(
            e.contains("TOKIO_WORKER_THREADS") && e.contains("use 1 to 1024"),
            "{e}"
        );
    }
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

#[test]
fn a_postgres_store_url_is_kept_as_written() {
    let c = load("[gateway]\nstore = \"postgres://keel@db.internal:5432/keel\"\n").unwrap();
    assert_eq!(c.gateway.store, "postgres://keel@db.internal:5432/keel");
}

// ---- functions ----

const FUNCTIONS: &str = r#"
[providers.up]
kind = "mock"
[models.mock-1]
provider = "up"
[models.gpt-4o-mini]
provider = "up"

[functions.support-answer]
description = "Answers support questions"
sticky = "user"
[[functions.support-answer.variants]]
name = "control"
prompt = "support/answer"
prompt_label = "production"
model = "mock-1"
weight = 90
params = { temperature = 0.2 }
[[functions.support-answer.variants]]
name = "candidate"
prompt = "support/answer"
prompt_version = 4
model = "gpt-4o-mini"
weight = 10
"#;

/// The issue reported at `path` when `text` fails to load (panics if it loads or has none).
fn issue_at(text: &str, path: &str) -> ConfigIssue {
    let e = load(text).unwrap_err();
    e.issues
        .iter()
        .find(|i| i.path == path)
        .cloned()
        .unwrap_or_else(|| panic!("no issue at {path}: {e}"))
}

#[test]
fn the_documented_function_loads() {
    let c = load(FUNCTIONS).unwrap();
    let f = &c.functions["support-answer"];
    assert_eq!(f.name, "support-answer");
    assert_eq!(f.description.as_deref(), Some("Answers support questions"));
    assert_eq!(f.sticky, Sticky::User);
    assert_eq!(f.total_weight(), 100);
    let names: Vec<&str> = f.variants.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(names, ["control", "candidate"]);
    let control = &f.variants[0];
    assert_eq!(control.prompt, "support/answer");
    assert_eq!(control.prompt_ref, PromptRef::Label("production".into()));
    assert_eq!(control.model, "mock-1");
    assert_eq!(control.weight, 90);
    assert_eq!(control.params["temperature"], serde_json::json!(0.2));
    let candidate = f.variant("candidate").unwrap();
    assert_eq!(
        candidate.prompt_ref,
        PromptRef::Version(std::num::NonZeroU32::new(4).unwrap())
    );
    assert!(candidate.params.is_empty());
}

#[test]
fn function_defaults_are_user_stickiness_and_the_production_label() {
    let text = FUNCTIONS
        .replace("sticky = \"user\"\n", "")
        .replace("prompt_label = \"production\"\n", "")
        .replace("description = \"Answers support questions\"\n", "");
    let c = load(&text).unwrap();
    let f = &c.functions["support-answer"];
    assert_eq!(f.sticky, Sticky::User);
    assert_eq!(f.description, None);
    assert_eq!(
        f.variants[0].prompt_ref,
        PromptRef::Label("production".into())
    );
    for (mode, want) in [("session", Sticky::Session), ("none", Sticky::None)] {
        let c =
            load(&FUNCTIONS.replace("sticky = \"user\"", &format!("sticky = \"{mode}\""))).unwrap();
        assert_eq!(c.functions["support-answer"].sticky, want);
    }
    assert!(load(CONTRACT).unwrap().functions.is_empty());
}

#[test]
fn nested_params_pass_through_as_json() {
    let text = FUNCTIONS.replace(
        "params = { temperature = 0.2 }",
        "params = { temperature = 0.2, max_tokens = 200, stop = [\"\\n\\n\"], response_format = { type = \"json_object\" } }",
    );
    let c = load(&text).unwrap();
    let p = serde_json::Value::Object(c.functions["support-answer"].variants[0].params.clone());
    assert_eq!(
        p,
        serde_json::json!({
            "temperature": 0.2,
            "max_tokens": 200,
            "stop": ["\n\n"],
            "response_format": {"type": "json_object"}
        })
    );
    let bad = FUNCTIONS.replace("temperature = 0.2", "temperature = nan");
    let i = issue_at(
        &bad,
        "functions.support-answer.variants[0].params.temperature",
    );
    assert!(i.message.contains("JSON"), "{i:?}");
}

#[test]
fn an_unknown_model_names_the_variant_and_lists_the_models() {
    let text = FUNCTIONS.replace("model = \"gpt-4o-mini\"", "model = \"gpt-5\"");
    let i = issue_at(&text, "functions.support-answer.variants[1].model");
    assert!(i.message.contains("`gpt-5`"), "{i:?}");
    assert_eq!(
        i.hint.as_deref(),
        Some("configured models: gpt-4o-mini, mock-1")
    );
    // The whole error names the file too.
    let e = load(&text).unwrap_err().to_string();
    assert!(
        e.contains("/etc/keel/keel.toml: functions.support-answer.variants[1].model"),
        "{e}"
    );
}

#[test]
fn variant_names_must_be_unique_non_empty_and_header_safe() {
    let dup = FUNCTIONS.replace("name = \"candidate\"", "name = \"control\"");
    let i = issue_at(&dup, "functions.support-answer.variants[1].name");
    assert!(
        i.message
            .contains("already defined at functions.support-answer.variants[0]"),
        "{i:?}"
    );

    let empty = FUNCTIONS.replace("name = \"candidate\"", "name = \"\"");
    let i = issue_at(&empty, "functions.support-answer.variants[1].name");
    assert_eq!(i.message, "must not be empty");

    for bad in ["new one", "a/b", "ünï", "x:y"] {
        let text = FUNCTIONS.replace("name = \"candidate\"", &format!("name = \"{bad}\""));
        let i = issue_at(&text, "functions.support-answer.variants[1].name");
        assert!(
            i.message.contains("not a valid variant name"),
            "{bad}: {i:?}"
        );
        assert!(i.hint.unwrap().contains("x-keel-variant"));
    }
    let ok = FUNCTIONS.replace("name = \"candidate\"", "name = \"v2.b_x-1\"");
    assert!(load(&ok).is_ok());
}

#[test]
fn a_function_needs_variants_and_some_weight() {
    let none = "[providers.up]\nkind = \"mock\"\n[models.m]\nprovider = \"up\"\n[functions.f]\ndescription = \"x\"\n";
    let i = issue_at(none, "functions.f.variants");
    assert!(i.message.contains("at least one variant"), "{i:?}");
    assert!(i.hint.unwrap().contains("[[functions.f.variants]]"));

    let zero = FUNCTIONS
        .replace("weight = 90", "weight = 0")
        .replace("weight = 10", "weight = 0");
    let i = issue_at(&zero, "functions.support-answer.variants");
    assert!(i.message.contains("total weight is 0"), "{i:?}");

    let negative = FUNCTIONS.replace("weight = 10", "weight = -1");
    let i = issue_at(&negative, "functions.support-answer.variants[1].weight");
    assert!(i.message.contains("-1"), "{i:?}");
    let huge = FUNCTIONS.replace("weight = 10", "weight = 5000000000");
    issue_at(&huge, "functions.support-answer.variants[1].weight");

    // One weight of 0 is fine: that variant is reachable by the override header only.
    let c = load(&FUNCTIONS.replace("weight = 10", "weight = 0")).unwrap();
    assert_eq!(c.functions["support-answer"].variants[1].weight, 0);
}

#[test]
fn prompt_label_and_version_are_exclusive_and_versions_start_at_one() {
    let both = FUNCTIONS.replace(
        "prompt_version = 4",
        "prompt_version = 4\nprompt_label = \"staging\"",
    );
    let i = issue_at(&both, "functions.support-answer.variants[1]");
    assert!(i.message.contains("both set"), "{i:?}");
    for v in ["0", "-3", "99999999999"] {
        let text = FUNCTIONS.replace("prompt_version = 4", &format!("prompt_version = {v}"));
        let i = issue_at(&text, "functions.support-answer.variants[1].prompt_version");
        assert!(i.message.contains(v), "{i:?}");
    }
    let empty = FUNCTIONS.replace("prompt_label = \"production\"", "prompt_label = \"\"");
    issue_at(&empty, "functions.support-answer.variants[0].prompt_label");
    let no_prompt = FUNCTIONS.replace(
        "prompt = \"support/answer\"\nprompt_version",
        "prompt = \"\"\nprompt_version",
    );
    issue_at(&no_prompt, "functions.support-answer.variants[1].prompt");
}

#[test]
fn function_names_must_not_shadow_models_and_must_be_safe() {
    let text = FUNCTIONS.replace(
        "[models.gpt-4o-mini]",
        "[models.support-answer]\nprovider = \"up\"\n[models.gpt-4o-mini]",
    );
    let i = issue_at(&text, "functions.support-answer");
    assert!(i.message.contains("both a function and a model"), "{i:?}");
    assert!(i.hint.unwrap().starts_with("rename one"));

    let text = FUNCTIONS.replace("functions.support-answer", "functions.\"support answer\"");
    let i = issue_at(&text, "functions.support answer");
    assert!(i.message.contains("not a valid function name"), "{i:?}");
    let ok = FUNCTIONS.replace(
        "functions.support-answer",
        "functions.\"team/support.answer_v2\"",
    );
    assert!(load(&ok)
        .unwrap()
        .functions
        .contains_key("team/support.answer_v2"));
}

#[test]
fn sticky_must_be_user_session_or_none() {
    let text = FUNCTIONS.replace("sticky = \"user\"", "sticky = \"tenant\"");
    let i = issue_at(&text, "functions.support-answer.sticky");
    assert!(i.message.contains("`tenant`"), "{i:?}");
    assert!(i.hint.unwrap().contains("\"session\""));
}

#[test]
fn function_tables_reject_unknown_keys() {
    let text = FUNCTIONS.replace("weight = 10", "wieght = 10");
    let e = load(&text).unwrap_err().to_string();
    assert!(e.contains("functions.support-answer.variants"), "{e}");
    assert!(e.contains("did you mean `weight`?"), "{e}");
    let text = FUNCTIONS.replace("sticky = \"user\"", "stickyness = \"user\"");
    let e = load(&text).unwrap_err().to_string();
    assert!(e.contains("did you mean `sticky`?"), "{e}");
}

#[test]
fn every_function_problem_is_reported_at_once() {
    let text = FUNCTIONS
        .replace("model = \"gpt-4o-mini\"", "model = \"nope\"")
        .replace("sticky = \"user\"", "sticky = \"always\"")
        .replace("name = \"candidate\"", "name = \"control\"");
    let e = load(&text).unwrap_err();
    let paths: Vec<&str> = e.issues.iter().map(|i| i.path.as_str()).collect();
    assert!(
        paths.contains(&"functions.support-answer.sticky"),
        "{paths:?}"
    );
    assert!(
        paths.contains(&"functions.support-answer.variants[1].model"),
        "{paths:?}"
    );
    assert!(
        paths.contains(&"functions.support-answer.variants[1].name"),
        "{paths:?}"
    );
}

#[test]
fn a_shadow_caps_its_calls_in_flight() {
    let with = |extra: &str| {
        FUNCTIONS.replace(
            "sticky = \"user\"",
            &format!(
                "sticky = \"user\"\nshadow = {{ variant = \"candidate\", sample = 0.5{extra} }}"
            ),
        )
    };
    let c = load(&with("")).unwrap();
    let shadow = c.functions["support-answer"].shadow.clone().unwrap();
    assert_eq!(
        shadow.max_concurrent.get(),
        super::function::DEFAULT_SHADOW_CONCURRENCY
    );
    let c = load(&with(", max_concurrent = 3")).unwrap();
    let shadow = c.functions["support-answer"].shadow.clone().unwrap();
    assert_eq!(shadow.max_concurrent.get(), 3);
    for bad in ["0", "-2"] {
        let i = issue_at(
            &with(&format!(", max_concurrent = {bad}")),
            "functions.support-answer.shadow.max_concurrent",
        );
        assert!(i.message.contains(&format!("{bad} is not")), "{i:?}");
        assert!(i.hint.unwrap().contains("from 1"));
    }
}

#[test]
fn an_alert_rule_can_open_an_incident_with_a_kind() {
    let base = "[providers.p]\nkind = \"mock\"\n[models.m]\nprovider = \"p\"\ninput_price_per_mtok = 1\noutput_price_per_mtok = 1\n";
    let c = load(&format!(
        "{base}[[alerts]]\nname = \"spend\"\nmetric = \"spend_rate\"\nabove = 5.0\nopen_incident = true\nkind = \"cost-runaway\"\n"
    ))
    .unwrap();
    let inc = c.alerting.rules[0].incident.clone().unwrap();
    assert_eq!(inc.kind.as_deref(), Some("cost-runaway"));
    let c = load(&format!(
        "{base}[[alerts]]\nname = \"spend\"\nmetric = \"spend_rate\"\nabove = 5.0\nopen_incident = true\n"
    ))
    .unwrap();
    assert_eq!(c.alerting.rules[0].incident.clone().unwrap().kind, None);
    let e = load(&format!(
        "{base}[[alerts]]\nname = \"spend\"\nmetric = \"spend_rate\"\nabove = 5.0\nincident_kind = \"cost-runaway\"\n"
    ))
    .unwrap_err()
    .to_string();
    assert!(e.contains("alerts[0].incident_kind"), "{e}");
}

#[test]
fn a_pagerduty_destination_needs_its_routing_key_variable() {
    use crate::config::alerting::{Destination, PAGERDUTY_EVENTS_URL};
    let base = "[providers.p]\nkind = \"mock\"\n";
    let c = load(&format!(
        "{base}[alert_destinations.oncall]\nkind = \"pagerduty\"\nrouting_key_env = \"PD_KEY\"\n"
    ))
    .unwrap();
    assert_eq!(
        c.alerting.destinations["oncall"],
        Destination::PagerDuty {
            url: PAGERDUTY_EVENTS_URL.into(),
            routing_key_env: "PD_KEY".into(),
            severity: "error".into(),
        }
    );
    let e = load(&format!(
        "{base}[alert_destinations.oncall]\nkind = \"pagerduty\"\n"
    ))
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("alert_destinations.oncall.routing_key_env"),
        "{e}"
    );
    let e = load(&format!(
        "{base}[alert_destinations.oncall]\nkind = \"pagerduty\"\nrouting_key_env = \"K\"\nseverity = \"sev1\"\n"
    ))
    .unwrap_err()
    .to_string();
    assert!(e.contains("alert_destinations.oncall.severity"), "{e}");
    let e = load(&format!(
        "{base}[alert_destinations.hook]\nkind = \"webhook\"\nurl = \"http://x\"\nrouting_key_env = \"K\"\n"
    ))
    .unwrap_err()
    .to_string();
    assert!(e.contains("apply to kind = \"pagerduty\" only"), "{e}");
}
