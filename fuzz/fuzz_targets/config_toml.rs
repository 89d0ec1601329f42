//! `keel.toml`: parse and validate config text (`Config::from_toml`).
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = keel_core::config::Config::from_toml(text, Path::new("fuzz/keel.toml"));
    }
});
