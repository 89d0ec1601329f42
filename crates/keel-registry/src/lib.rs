//! Prompts as code: the prompt file format, loading and validating a prompts folder,
//! rendering a prompt with variables, its content hash and the diff between two versions.
//!
//! A prompt is one TOML file under the prompts folder; its name is its path there without
//! `.toml`. [`load_prompts`] (or [`check_prompts`], which also returns warnings) is the
//! path `keel check` and `keel prompt push` share ([`check_prompt_text`] checks one
//! text, as the playground does); [`Prompt::render`] is what the gateway calls;
//! [`Prompt::content_hash`] and [`Prompt::to_json`] are what the store keeps per version,
//! and [`Prompt::to_toml`] writes a version back as file text. Versions and labels
//! themselves live in `keel-store`.

mod billed;
mod compiled;
mod diff;
mod file;
mod format;
mod load;
mod prompt;
mod render;
mod tokens;
mod validate;

pub use billed::ImageRule;
pub use compiled::CompiledPrompt;
pub use diff::{diff, PromptDiff, SectionDiff};
pub use format::parse_prompt;
pub use load::{
    check_prompt_text, check_prompts, load_prompts, PromptCheck, PromptIssue, PromptSet,
};
pub use prompt::{MessageTemplate, Prompt, PromptBody, Role, SnapshotError, VarType, VariableDecl};
pub use render::RenderError;
pub use tokens::{
    render_pair, synthetic_variables, tables_for, warm_encodings, Encoding, RenderedPair,
    TokenDelta, VariableSource, MAX_SAMPLES,
};
pub use validate::{OUT_OF_FUEL, QUICK_FUEL, RENDER_FUEL};

#[cfg(test)]
mod tests;
