//! The prompt playground's work, apart from its pages (`dashboard/playground/`): people
//! who do not write code edit a draft of a prompt, try it on typed or recorded variables
//! beside the live version, run an eval suite on it, and save it as a version.
//!
//! - [`draft`] — a draft's text checked like a prompt file, and made into a deployment;
//! - [`run`] — a draft and the live version tried on the same inputs through the request
//!   path, traced as playground (eval-origin) traffic;
//! - [`suites`] — what the playground needs of `keel-evals` to run a suite, which
//!   `keel serve` provides.
//!
//! Safety: nothing here moves a label or changes what the gateway serves. Drafts live in
//! their own table (`keel_store::drafts`); saving one as a version is a push, audited.

pub mod draft;
pub mod run;
pub mod suites;
