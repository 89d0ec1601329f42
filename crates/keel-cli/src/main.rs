//! `keel`: the one binary. Each subcommand is a thin layer over a library crate.
//!
//! Exit codes: 0 success; 1 the command ran and found a problem (`keel check` found
//! config errors, `keel traces show` found no such trace); 2 usage or runtime error
//! (bad flags, unreadable store, port in use).

/// mimalloc: the request path allocates many small, short-lived buffers; glibc's
/// malloc showed up at the top of the gateway's profiles.
// The bench build that counts allocations brings its own (`bench/allocations.sh`).
#[cfg(not(feature = "count-allocations"))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod cmd;
mod since;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "keel",
    version,
    about = "Keel: an LLM gateway that traces, prices and reports every model call"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway (OpenAI- and Anthropic-compatible) with the given config.
    Serve(cmd::serve::ServeArgs),
    /// Validate the config without serving; exit 0 when valid, 1 when not.
    Check(cmd::check::CheckArgs),
    /// Run the built-in mock LLM provider as an HTTP server (OpenAI and Anthropic wire formats).
    MockProvider(cmd::mock::MockArgs),
    /// List and show recorded traces.
    Traces {
        #[command(subcommand)]
        command: cmd::traces::TracesCommand,
    },
    /// The usage, cost and latency report (by model, feature, tenant; top callers; unpriced calls).
    Report(cmd::report::ReportArgs),
    /// Prompts as code: push versions, move and roll back labels, show history and diffs.
    Prompt {
        #[command(subcommand)]
        command: cmd::prompt::PromptCommand,
    },
    /// Eval suites as CI gates: run, compare models, lock datasets, history.
    Eval {
        #[command(subcommand)]
        command: cmd::eval::EvalCommand,
    },
    /// Functions' traffic split: canary a variant in steps, show the split and its history.
    Function {
        #[command(subcommand)]
        command: cmd::function::FunctionCommand,
    },
    /// Shadow traffic: compare a function's shadow variant with its live traffic.
    Shadow {
        #[command(subcommand)]
        command: cmd::shadow::ShadowCommand,
    },
    /// Ask a running gateway for its models' routing and circuit-breaker state.
    Status(cmd::status::StatusArgs),
    /// The audit log: every prompt push, label move, key change and config load, with who and why.
    Audit(cmd::audit::AuditArgs),
    /// Virtual keys: create (printed once), list, revoke, rotate.
    Keys {
        #[command(subcommand)]
        command: cmd::keys::KeysCommand,
    },
    /// Alert rules and their state; send a test alert.
    Alerts {
        #[command(subcommand)]
        command: cmd::alerts::AlertsCommand,
    },
    /// Online evals: their judging status, and judging calls recorded before.
    Online {
        #[command(subcommand)]
        command: cmd::online::OnlineCommand,
    },
    /// Datasets from production: cases from recorded calls, dashboard drafts pulled,
    /// locked versions, fresh samples.
    Dataset {
        #[command(subcommand)]
        command: cmd::dataset::DatasetCommand,
    },
    /// Incidents: open, show (timeline, suspects, playbook), note, close, export a
    /// postmortem draft.
    Incident {
        #[command(subcommand)]
        command: cmd::incident::IncidentCommand,
    },
    /// Kill switches: turn a function, feature, key, tenant or model off (503 `disabled`)
    /// and back on.
    Switch {
        #[command(subcommand)]
        command: cmd::switch::SwitchCommand,
    },
    /// Freeze and unfreeze a budget: stop all spend against it during an incident.
    Budget {
        #[command(subcommand)]
        command: cmd::switch::BudgetCommand,
    },
    /// The model inventory: providers, versions seen, prices, lifecycle and what uses each
    /// model; `check-successor` tests a retiring model's successor.
    Models(cmd::models::ModelsArgs),
    /// Human review: queues, labelling items from a terminal, export, agreement.
    Review {
        #[command(subcommand)]
        command: cmd::review::ReviewCommand,
    },
    /// Lineage: what shipped together (prompt version × model × params × tools), when it served, its traffic, cost and latency.
    Releases(cmd::releases::ReleasesArgs),
    /// Replay recorded inputs through a candidate variant, prompt version or model, and compare side by side.
    Replay(Box<cmd::replay::ReplayArgs>),
    /// The store itself: copy a SQLite store into PostgreSQL.
    Store {
        #[command(subcommand)]
        command: cmd::store::StoreCommand,
    },
    /// Tools for developing Keel (the scale benchmark's trace generator).
    #[command(hide = true)]
    Dev {
        #[command(subcommand)]
        command: cmd::dev::DevCommand,
    },
}

/// `--config`, shared by every command that reads keel.toml.
#[derive(clap::Args, Clone)]
pub struct ConfigArg {
    /// Path to keel.toml.
    #[arg(long, short = 'c', default_value = "keel.toml", env = "KEEL_CONFIG")]
    pub config: PathBuf,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(a) => cmd::serve::run(a),
        Command::Check(a) => cmd::check::run(a),
        Command::MockProvider(a) => cmd::mock::run(a),
        Command::Traces { command } => cmd::traces::run(command),
        Command::Report(a) => cmd::report::run(a),
        Command::Prompt { command } => cmd::prompt::run(command),
        Command::Audit(a) => cmd::audit::run(a),
        Command::Keys { command } => cmd::keys::run(command),
        Command::Alerts { command } => cmd::alerts::run(command),
        Command::Status(a) => cmd::status::run(a),
        Command::Shadow { command } => cmd::shadow::run(command),
        Command::Function { command } => cmd::function::run(command),
        Command::Eval { command } => cmd::eval::run(command),
        Command::Releases(a) => cmd::releases::run(a),
        Command::Online { command } => cmd::online::run(command),
        Command::Review { command } => cmd::review::run(command),
        Command::Models(a) => cmd::models::run(a),
        Command::Switch { command } => cmd::switch::run(command),
        Command::Incident { command } => cmd::incident::run(command),
        Command::Budget { command } => cmd::switch::run_budget(command),
        Command::Dataset { command } => cmd::dataset::run(command),
        Command::Replay(a) => cmd::replay::run(*a),
        Command::Store { command } => cmd::store::run(command),
        Command::Dev { command } => cmd::dev::run(command),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
