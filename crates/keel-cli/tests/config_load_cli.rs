#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! A config load is audited with what changed: `keel serve` on a config, then on an edited
//! one, records two `config.load` events; the second names the hash it replaced and the
//! sections changed, added and removed (an incident's timeline shows it).

mod common;

use common::{Keel, Replica};
use serde_json::Value;

const KEEL: Keel = Keel::with_env(&[]);

const CONFIG: &str = r#"
[gateway]
listen = "127.0.0.1:0"
store = "shared.db"

[providers.local]
kind = "mock"

[models.mock-1]
provider = "local"
input_price_per_mtok = 0.15
output_price_per_mtok = 0.60

[models.old]
provider = "local"
input_price_per_mtok = 1
output_price_per_mtok = 1
"#;

#[test]
fn a_second_load_names_the_sections_that_changed() {
    let dir = tempfile::tempdir().unwrap();
    let mut first = Replica::start(dir.path(), "keel", CONFIG);
    first.stop();
    let edited = CONFIG
        .replace("input_price_per_mtok = 0.15", "input_price_per_mtok = 0.30")
        .replace(
            "[models.old]\nprovider = \"local\"\ninput_price_per_mtok = 1\noutput_price_per_mtok = 1\n",
            "[[alerts]]\nname = \"spend\"\nmetric = \"cost\"\nabove = 5.0\n",
        );
    let mut second = Replica::start(dir.path(), "keel", &edited);
    second.stop();
    let audit: Value = KEEL.json_ok(dir.path(), &["audit"]);
    let loads: Vec<&Value> = audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "config.load")
        .collect();
    assert_eq!(loads.len(), 2, "{audit}");
    let latest = loads[0];
    assert_eq!(latest["from_value"], loads[1]["to_value"], "{latest}");
    assert_eq!(
        latest["reason"],
        "a changed config was loaded: changed models.mock-1; added alerts.spend; removed models.old"
    );
}
