//! `keel serve`: run the gateway until SIGTERM or Ctrl-C, then drain the trace queue.

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::{Context, Result};
use keel_gateway::Gateway;

use crate::ConfigArg;

#[derive(clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Listen on this address instead of [gateway] listen.
    #[arg(long)]
    listen: Option<SocketAddr>,
}

pub fn run(args: ServeArgs) -> Result<ExitCode> {
    init_logging();
    let mut config = super::load_config(&args.config)?;
    if let Some(l) = args.listen {
        config.gateway.listen = l;
    }
    // Unpriced models are among the warnings: once per model, at startup.
    for w in &config.warnings {
        tracing::warn!("{w}");
    }
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    let workers = keel_core::config::worker_threads(
        config.gateway.worker_threads,
        std::env::var_os("TOKIO_WORKER_THREADS").as_deref(),
    )
    .map_err(anyhow::Error::msg)?;
    if let Some(n) = workers {
        rt.worker_threads(n.get());
    }
    let rt = rt.enable_all().build()?;
    rt.block_on(async move {
        // Bind first: a gateway that cannot serve (the port is taken) writes nothing to
        // the store.
        let listen = config.gateway.listen;
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen} (is another process using it? change [gateway] listen or pass --listen)"))?;
        for line in super::serve_prompts::prepare(&config)? {
            tracing::info!("{line}");
        }
        let store = config.gateway.store.clone();
        // The playground runs eval suites with keel-evals, which the gateway cannot
        // depend on: it is handed the runner here.
        // Online evals judge with keel-online (above the gateway too).
        let online = keel_online::compile_all(&config)
            .map_err(|issues| anyhow::anyhow!("{}", keel_core::config::ConfigError { file: config.source.clone(), issues }))?;
        let extensions = keel_gateway::Extensions {
            suites: Some(std::sync::Arc::new(keel_evals::playground::PlaygroundSuites)),
            case_drafts: Some(std::sync::Arc::new(keel_evals::from_traces::Drafts)),
            online: (!online.is_empty()).then(|| {
                std::sync::Arc::new(keel_online::OnlineJudges::new(online))
                    as std::sync::Arc<dyn keel_gateway::online::Judges>
            }),
        };
        let queues = config.review_queues.clone();
        let gateway = Gateway::start_with(config, listener, extensions).await?;
        // Review queues fill off the request path (keel-review, above the gateway too).
        let intake_stop = tokio_util::sync::CancellationToken::new();
        let intake = gateway.state.store.clone().map(|s| {
            let counters = std::sync::Arc::new(IntakeMetrics(gateway.state.clone()));
            tokio::spawn(keel_review::intake::run_every(
                s,
                queues,
                intake_stop.clone(),
                counters,
            ))
        });
        let workers = tokio::runtime::Handle::current().metrics().num_workers();
        tracing::info!(addr = %gateway.addr, store = %store, workers, "keel gateway listening");
        println!("keel gateway listening on http://{}", gateway.addr);
        let report = gateway.run_until(shutdown_signal()).await?;
        intake_stop.cancel();
        if let Some(task) = intake {
            let _ = task.await;
        }
        tracing::info!(written = report.traces_written, dropped = report.traces_dropped, "stopped; trace queue drained");
        Ok(ExitCode::SUCCESS)
    })
}

/// The review intake's counts, as the gateway's metrics.
struct IntakeMetrics(std::sync::Arc<keel_gateway::state::AppState>);

impl keel_review::intake::IntakeCounters for IntakeMetrics {
    fn entered(&self, queue: &str, reason: &str, n: u64) {
        self.0
            .metrics
            .review_entered
            .get_or_create(&keel_gateway::metrics::ReviewLabels {
                queue: queue.to_string(),
                reason: reason.to_string(),
            })
            .inc_by(n);
    }

    fn failed(&self) {
        self.0.metrics.review_intake_errors.inc();
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down: finishing in-flight requests and draining the trace queue");
}

pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("KEEL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}
