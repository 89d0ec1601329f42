//! Keeping the snapshot current: a small thread that rebuilds it from the store every
//! `[registry] refresh`, records releases the first time they deploy, logs what changed,
//! and swaps the new snapshot in. Requests never wait for it; a store error keeps the
//! previous snapshot serving and is logged.

use std::collections::HashSet;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use keel_core::config::Config;
use keel_store::{Conn, Store};

use super::{Registry, Snapshot};

/// Stops the refresher when dropped or on [`RefreshHandle::stop`].
pub struct RefreshHandle {
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl RefreshHandle {
    pub fn stop(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for RefreshHandle {
    fn drop(&mut self) {
        self.stop_now();
    }
}

/// What the refresher keeps between rounds.
struct Refresher {
    config: Arc<Config>,
    registry: Arc<Registry>,
    reader: Conn,
    writer: Conn,
    /// Where new connections come from when these are lost.
    store: Arc<Store>,
    recorded: HashSet<String>,
}

impl Refresher {
    /// Rebuild, record new releases, log changes, swap.
    fn round(&mut self) {
        // A PostgreSQL store that restarted closed these: take new ones from the pool.
        for conn in [&mut self.reader, &mut self.writer] {
            if conn.is_closed() {
                match self.store.conn() {
                    Ok(fresh) => *conn = fresh,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot reach the store to refresh prompt labels; still serving the previous versions");
                        return;
                    }
                }
            }
        }
        let previous = self.registry.current();
        let next = match Snapshot::build(self.reader.db(), &self.config, &previous) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot refresh prompt labels from the store; still serving the previous versions");
                return;
            }
        };
        log_changes(&previous, &next);
        let now = keel_store::prompts::now_ms();
        for d in next.deployments() {
            if self.recorded.contains(&d.release.id) {
                continue;
            }
            match keel_store::record_release(self.writer.db(), &d.release, now) {
                Ok(_) => {
                    self.recorded.insert(d.release.id.clone());
                }
                Err(e) => {
                    tracing::warn!(release = %d.release.id, error = %e, "cannot record a release; will retry")
                }
            }
        }
        self.registry.replace(next);
    }
}

fn log_changes(previous: &Snapshot, next: &Snapshot) {
    for d in next.deployments() {
        let before = previous
            .deployments()
            .find(|p| p.function == d.function && p.variant == d.variant);
        match before {
            Some(p) if p.release.id == d.release.id => {}
            Some(p) => tracing::info!(
                function = %d.function, variant = %d.variant,
                "now serving prompt {} v{} (was v{}), release {}",
                d.prompt_name, d.prompt_version, p.prompt_version, d.release.id
            ),
            None => tracing::info!(
                function = %d.function, variant = %d.variant,
                "serving prompt {} v{} on model {}, release {}",
                d.prompt_name, d.prompt_version, d.model, d.release.id
            ),
        }
    }
    for name in next.changed_splits(previous) {
        match next.split(&name) {
            Some(w) => {
                tracing::info!(function = %name, "serving the traffic split {w:?} (basis points, config order) set by `keel function canary`")
            }
            None => tracing::info!(function = %name, "serving the configured traffic split"),
        }
    }
    if next.switches() != previous.switches() {
        tracing::warn!(
            "kill switches and budget freezes now: {}",
            next.switches().describe()
        );
    }
    for why in next.split_problems() {
        if !previous.split_problems().contains(why) {
            tracing::warn!("{why}");
        }
    }
    let old: HashSet<_> = previous.problems().into_iter().collect();
    for p in next.problems() {
        if !old.contains(&p) {
            tracing::warn!("{}; requests routed to it get 503", p.2);
        }
    }
}

/// Build the first snapshot now (so the gateway serves the right versions from its
/// first request), then refresh every `config.registry.refresh` on a thread of its own.
pub fn start(
    store: &Arc<Store>,
    config: Arc<Config>,
) -> anyhow::Result<(Arc<Registry>, Option<RefreshHandle>)> {
    // Even without functions it runs: the snapshot also carries kill switches and
    // budget freezes, which apply to plain model calls.
    let registry = Arc::new(Registry::new(Snapshot::empty()));
    let mut r = Refresher {
        config: config.clone(),
        registry: registry.clone(),
        reader: store.conn()?,
        writer: store.conn()?,
        store: store.clone(),
        recorded: HashSet::new(),
    };
    r.round();
    let every = config.registry.refresh;
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("keel-registry".into())
        .spawn(move || run(r, every, stopped))?;
    Ok((
        registry,
        Some(RefreshHandle {
            stop: Some(stop),
            thread: Some(thread),
        }),
    ))
}

fn run(mut r: Refresher, every: Duration, stopped: Receiver<()>) {
    loop {
        match stopped.recv_timeout(every) {
            Err(RecvTimeoutError::Timeout) => r.round(),
            // Stop asked (or the handle dropped).
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}
