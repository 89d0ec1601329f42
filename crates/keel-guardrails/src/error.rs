//! Errors from building guardrail matchers. Scanning itself never fails: every detector
//! accepts any `&str`, so only construction from caller-supplied patterns and schemas can.

/// What went wrong while building a matcher or a contract.
#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    /// A caller-supplied regex did not compile.
    #[error("banned-pattern regex `{pattern}` does not compile: {reason}")]
    BadRegex { pattern: String, reason: String },
    /// The banned terms, once combined, exceed the regex engine's size limit.
    #[error("the {count} banned terms are too many to combine into one matcher: {reason}; split them across policies")]
    TooManyTerms { count: usize, reason: String },
    /// A caller-supplied JSON schema is not a valid schema.
    #[error("the JSON schema is invalid: {reason}")]
    BadSchema { reason: String },
}
