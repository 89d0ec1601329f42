//! Model lifecycle in config: the built-in table's dates reach the model, keel.toml
//! overrides them field by field, a model retiring within 90 days is warned about with
//! its successor command, and bad dates are refused at their key.

use std::path::Path;

use crate::config::Config;
use crate::lifecycle::{format_date, parse_date, today, LifecycleSource};

fn load(models: &str) -> Result<Config, String> {
    let text = format!("[providers.up]\nkind = \"mock\"\n{models}");
    Config::from_toml(&text, Path::new("/tmp/keel.toml")).map_err(|e| e.to_string())
}

fn in_days(n: i64) -> String {
    format_date(today() + time::Duration::days(n))
}

#[test]
fn the_table_dates_reach_a_model_named_like_a_real_one() {
    let c = load("[models.chat]\nprovider = \"up\"\nupstream_model = \"gpt-4o-mini-2024-07-18\"\n")
        .unwrap();
    let l = c.models["chat"].lifecycle.clone().unwrap();
    assert_eq!(l.retires, parse_date("2027-01-14"));
    assert_eq!(l.successor.as_deref(), Some("gpt-6-luna"));
    assert!(matches!(l.source, LifecycleSource::Builtin { .. }));
    let none = load("[models.m]\nprovider = \"up\"\nupstream_model = \"mock-1\"\n").unwrap();
    assert!(none.models["m"].lifecycle.is_none());
}

#[test]
fn config_overrides_field_by_field_and_a_near_retirement_is_warned_about() {
    let c = load(&format!(
        "[models.house]\nprovider = \"up\"\nupstream_model = \"house-v1\"\ninput_price_per_mtok = 1\noutput_price_per_mtok = 2\nretires = \"{}\"\nsuccessor = \"house-v2\"\n",
        in_days(20)
    ))
    .unwrap();
    let l = c.models["house"].lifecycle.clone().unwrap();
    assert_eq!(l.source, LifecycleSource::Config);
    assert_eq!(
        l.deprecated,
        Some(today()),
        "a retirement alone implies deprecation"
    );
    let w: Vec<_> = c
        .warnings
        .iter()
        .filter(|w| w.contains("retires"))
        .collect();
    assert_eq!(w.len(), 1, "{:?}", c.warnings);
    assert!(
        w[0].contains("models.house: upstream `house-v1` retires on"),
        "{}",
        w[0]
    );
    assert!(w[0].contains("(in 20 days)"), "{}", w[0]);
    assert!(
        w[0].contains("keel models check-successor house"),
        "{}",
        w[0]
    );

    let far = load(&format!(
        "[models.house]\nprovider = \"up\"\nupstream_model = \"house-v1\"\ninput_price_per_mtok = 1\noutput_price_per_mtok = 2\nretires = \"{}\"\n",
        in_days(200)
    ))
    .unwrap();
    assert!(
        !far.warnings.iter().any(|w| w.contains("retires")),
        "{:?}",
        far.warnings
    );

    let table = load("[models.chat]\nprovider = \"up\"\nupstream_model = \"gpt-4o-mini\"\nsuccessor = \"chat-next\"\n")
        .unwrap();
    let l = table.models["chat"].lifecycle.clone().unwrap();
    assert_eq!(
        l.retires,
        parse_date("2027-01-14"),
        "the table's date stays"
    );
    assert_eq!(
        l.successor.as_deref(),
        Some("chat-next"),
        "config's successor wins"
    );
}

#[test]
fn bad_dates_are_refused_at_their_key() {
    let e = load("[models.m]\nprovider = \"up\"\nupstream_model = \"x\"\nretires = \"next spring\"\ndeprecated = \"2026-13-01\"\n")
        .unwrap_err();
    assert!(e.contains("models.m.retires"), "{e}");
    assert!(e.contains("models.m.deprecated"), "{e}");
    assert!(e.contains("YYYY-MM-DD"), "{e}");
}

#[test]
fn version_memory_defaults_to_a_week_and_is_read() {
    let c = load("").unwrap();
    assert_eq!(c.gateway.version_memory.as_secs(), 7 * 86_400);
    let c = Config::from_toml(
        "[gateway]\nversion_memory = \"2d\"\n[providers.up]\nkind = \"mock\"\n",
        Path::new("/tmp/keel.toml"),
    )
    .unwrap();
    assert_eq!(c.gateway.version_memory.as_secs(), 2 * 86_400);
}
