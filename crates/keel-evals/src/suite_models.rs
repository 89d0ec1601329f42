//! Which configured models each suite of the evals folder runs on: a model target's
//! model, a prompt target's model, or every variant's model of a function target (the
//! suite may run any of them with `--variant`). The model inventory, canaries and
//! `keel models check-successor` ask this to find the suites that test a model.

use std::path::PathBuf;

use keel_core::config::Config;

use crate::suite::{load_suite, Suite, Target};

/// (suite name, models) for every readable suite, sorted by name; and the problems of
/// files that could not be read.
pub fn suite_models(config: &Config) -> (Vec<(String, Vec<String>)>, Vec<String>) {
    let (suites, problems) = suites_in(config);
    let out = suites
        .iter()
        .map(|s| (s.name.clone(), models_of(config, s)))
        .collect();
    (out, problems)
}

/// Every readable suite in the evals folder, sorted by file name; and the problems.
pub fn suites_in(config: &Config) -> (Vec<Suite>, Vec<String>) {
    let Ok(entries) = std::fs::read_dir(&config.evals_dir) else {
        return (Vec::new(), Vec::new());
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    let (mut suites, mut problems) = (Vec::new(), Vec::new());
    for f in files {
        match load_suite(&f) {
            Ok(s) => suites.push(s),
            Err(e) => problems.push(e.to_string()),
        }
    }
    (suites, problems)
}

/// The configured models `suite` runs on.
pub fn models_of(config: &Config, suite: &Suite) -> Vec<String> {
    let mut models: Vec<String> = match &suite.target {
        Target::Model { model } | Target::Prompt { model, .. } => vec![model.clone()],
        Target::Function { function, variant } => config
            .functions
            .get(function)
            .map(|f| {
                f.variants
                    .iter()
                    .filter(|v| variant.as_ref().is_none_or(|n| *n == v.name))
                    .map(|v| v.model.clone())
                    .collect()
            })
            .unwrap_or_default(),
    };
    models.sort();
    models.dedup();
    models
}
