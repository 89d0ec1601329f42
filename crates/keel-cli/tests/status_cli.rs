#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `keel status` against a running gateway whose `/status` needs the admin key: the key
//! is sent from `--admin-key` or `$KEEL_ADMIN_KEY`; without it the 401 says how to fix it.

mod common;

use std::process::Command;

use common::{project, stdout_and_stderr, Replica};

const ADMIN: &str = "status-admin-key-0123456789";

#[test]
fn status_sends_the_admin_key_from_the_flag_or_the_environment() {
    let dir = project("");
    let gw = Replica::start_with_env(
        dir.path(),
        "gw",
        r#"
[gateway]
listen = "127.0.0.1:0"
store = "STORE"
[auth]
mode = "required"
admin_key_env = "KEEL_STATUS_TEST_ADMIN"
[providers.mock]
kind = "mock"
[models.mock-1]
provider = "mock"
input_price_per_mtok = 0.15
output_price_per_mtok = 0.60
"#,
        &[("KEEL_STATUS_TEST_ADMIN", ADMIN)],
    );
    let status = |args: &[&str], env: Option<&str>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_keel"));
        cmd.args(["status", "--url", &gw.url])
            .args(args)
            .env_remove("KEEL_CONFIG")
            .env_remove("KEEL_ADMIN_KEY")
            .current_dir(dir.path());
        if let Some(key) = env {
            cmd.env("KEEL_ADMIN_KEY", key);
        }
        cmd.output().unwrap()
    };

    let o = status(&[], None);
    assert!(!o.status.success());
    let out = stdout_and_stderr(&o);
    assert!(
        out.contains("401") && out.contains("--admin-key") && out.contains("KEEL_ADMIN_KEY"),
        "{out}"
    );
    let o = status(&["--admin-key", "wrong"], None);
    assert!(!o.status.success());
    assert!(
        stdout_and_stderr(&o).contains("refused"),
        "{}",
        stdout_and_stderr(&o)
    );

    let o = status(&["--admin-key", ADMIN], None);
    assert!(o.status.success(), "{}", stdout_and_stderr(&o));
    assert!(
        stdout_and_stderr(&o).contains("mock-1"),
        "{}",
        stdout_and_stderr(&o)
    );
    let o = status(&["--json"], Some(ADMIN));
    assert!(o.status.success(), "{}", stdout_and_stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(v["models"]["mock-1"].is_object(), "{v}");
}
