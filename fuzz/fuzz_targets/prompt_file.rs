//! A prompt file: parse it and check its templates against its variables
//! (`check_prompt_text`: what `keel check` does per file and what the dashboard's
//! playground runs on a draft).
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let file = Path::new("prompts/fuzz/answer.toml");
        let _ = keel_registry::check_prompt_text("fuzz/answer", file, text);
    }
});
