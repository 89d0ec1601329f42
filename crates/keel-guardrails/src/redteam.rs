//! The red-team set, compiled in: hand-written attacks (prompt injection, jailbreaks,
//! system-prompt leak requests, PII extraction) and as many benign look-alikes, one
//! JSON object per line (see `redteam/README.md`). `keel eval redteam` runs them
//! through a guardrail policy.

/// Attack lines (`"expect": "block"`).
pub const ATTACKS: &str = include_str!("../redteam/attacks.jsonl");
/// Benign lines (`"expect": "allow"`).
pub const BENIGN: &str = include_str!("../redteam/benign.jsonl");
/// The system prompt the `leak` lines are measured against.
pub const SYSTEM_PROMPT: &str = include_str!("../redteam/system_prompt.txt");
