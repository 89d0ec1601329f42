//! Prompts as code (being written).
