//! The injection score of every line of a corpus, with the signals behind it: what to
//! read when `keel eval redteam` reports misses or false positives on a corpus.
//!
//! Usage: `cargo run --release -p keel-guardrails --example score_corpus < corpus.jsonl`
//! (lines: JSON strings, objects with `input`, or plain text). Prints one JSON object per
//! line: `{"score", "signals", "text"}`.

use std::io::BufRead;

fn main() {
    for line in std::io::stdin().lock().lines().map_while(Result::ok) {
        let text = match serde_json::from_str::<serde_json::Value>(&line) {
            Ok(serde_json::Value::String(s)) => s,
            Ok(v) => ["input", "prompt", "text"]
                .iter()
                .find_map(|k| v.get(k).and_then(|x| x.as_str()))
                .unwrap_or(&line)
                .to_string(),
            Err(_) => line.clone(),
        };
        let r = keel_guardrails::injection(&text);
        let mut signals: Vec<&str> = r.evidence.iter().map(|e| e.signal.as_str()).collect();
        signals.sort_unstable();
        signals.dedup();
        println!(
            "{}",
            serde_json::json!({"score": r.score, "signals": signals, "text": text})
        );
    }
}
