//! `keel mock-provider`: the built-in mock LLM as a real HTTP server.

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::{Context, Result};
use keel_core::config::mock::MockSettings;

#[derive(clap::Args)]
pub struct MockArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:18080")]
    listen: SocketAddr,
    /// Latency before each reply (ms).
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Delay between streamed chunks (ms).
    #[arg(long, default_value_t = 0)]
    chunk_delay_ms: u64,
    /// Make every reply exactly this many completion tokens.
    #[arg(long)]
    output_tokens: Option<u32>,
    /// Share of requests (0..1) answered 429 with Retry-After.
    #[arg(long, default_value_t = 0.0)]
    rate_429: f64,
    /// Retry-After seconds on injected 429s.
    #[arg(long, default_value_t = 1)]
    retry_after: u64,
    /// Share of requests answered 500.
    #[arg(long, default_value_t = 0.0)]
    rate_500: f64,
    /// Share of requests that hang (to exercise timeouts).
    #[arg(long, default_value_t = 0.0)]
    rate_timeout: f64,
    /// Share of streamed requests cut half-way.
    #[arg(long, default_value_t = 0.0)]
    rate_cut: f64,
    /// Seed for fault injection.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// A TOML or JSON file of input→output rules.
    #[arg(long)]
    rules: Option<String>,
    /// The `system_fingerprint` replies carry (default fp_mock).
    #[arg(long)]
    fingerprint: Option<String>,
}

pub fn run(a: MockArgs) -> Result<ExitCode> {
    super::serve::init_logging();
    for (name, rate) in [
        ("--rate-429", a.rate_429),
        ("--rate-500", a.rate_500),
        ("--rate-timeout", a.rate_timeout),
        ("--rate-cut", a.rate_cut),
    ] {
        if !(0.0..=1.0).contains(&rate) {
            anyhow::bail!("{name} {rate} is not a share between 0 and 1 (e.g. 0.05 for 5%)");
        }
    }
    let settings = MockSettings {
        latency_ms: a.latency_ms,
        chunk_delay_ms: a.chunk_delay_ms,
        output_tokens: a.output_tokens,
        rate_429: a.rate_429,
        retry_after_secs: a.retry_after,
        rate_500: a.rate_500,
        rate_timeout: a.rate_timeout,
        rate_cut: a.rate_cut,
        seed: a.seed,
        rules: a.rules,
        fingerprint: a.fingerprint,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(a.listen)
            .await
            .with_context(|| format!("cannot listen on {}", a.listen))?;
        println!(
            "keel mock provider listening on http://{}/v1",
            listener.local_addr()?
        );
        keel_mock::serve_with_shutdown(listener, settings, super::serve::shutdown_signal()).await?;
        Ok(ExitCode::SUCCESS)
    })
}
