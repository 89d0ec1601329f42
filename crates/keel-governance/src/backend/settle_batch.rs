//! Settlements sent to Redis together: one pipeline for the calls that finished within
//! [`SETTLE_LINGER`] of each other, instead of one round trip each.
//!
//! Why: a settlement runs after the response, off the request path, so it can wait a
//! moment for company at no cost to any caller. A round trip costs both processes more
//! than the script it carries: on the 2-core bench machine Redis spent ~122 µs of CPU per
//! governed call at 2,000 calls/s, of which its scripts were ~71 (`INFO commandstats`),
//! and each round trip also costs the gateway a write, a wake-up and a read. Sent one by
//! one, settlements at that rate rarely overlap; held for 2 ms they share a pipeline, and
//! Redis's CPU per call fell to ~92 µs, the gateway's by ~6 % (`bench/redis_cost.sh`,
//! bench/RESULTS.md 2026-12-07).
//!
//! What stays as it was: each settlement is still its own `EVALSHA` of `finish.lua`
//! (atomic on its own, its own answer and its own error), a script Redis lost
//! (`NOSCRIPT`: a restart or `SCRIPT FLUSH`) is loaded and the calls that missed it are
//! sent again, and a pipeline's whole exchange (reload and resend included) has
//! `[limits] backend_timeout`. A batch is sent once it holds [`SETTLE_BATCH_MAX`] or its
//! first settlement has waited [`SETTLE_LINGER`]; up to four pipelines are out at once,
//! so a slow Redis delays the queue behind them by its timeout, not by one per batch. A
//! settlement that cannot be queued (the queue is full: Redis is slower than the
//! traffic) is sent at once on its own. Queued settlements are in memory only, as a
//! spawned settlement task always was: a replica that dies loses those not yet answered
//! (normally the last 2 ms of calls; more while Redis is behind), and their reservations
//! lapse with their hold.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::{Cmd, Script, ServerErrorKind, Value};
use tokio::sync::{mpsc, oneshot, Semaphore};

use super::BackendError;

/// How long the first settlement of a batch waits for others.
pub const SETTLE_LINGER: Duration = Duration::from_millis(2);
/// The most settlements in one pipeline.
pub const SETTLE_BATCH_MAX: usize = 64;
/// Settlements waiting to be sent; past this many, a settlement is sent on its own.
const QUEUE: usize = 4096;
/// Pipelines out at once: a slow Redis holds these, and the queue keeps forming the next.
const IN_FLIGHT: usize = 4;

type Reply = Result<Vec<i64>, BackendError>;

struct Pending {
    cmd: Cmd,
    reply: oneshot::Sender<Reply>,
}

/// What sends a batch: the connection, the settlement script (to load it again when
/// Redis lost it) and the timeout.
#[derive(Clone)]
pub(super) struct Sender {
    pub conn: ConnectionManager,
    pub script: Arc<Script>,
    pub timeout: Duration,
    /// Pipelines sent (batches and settlements sent on their own), for tests and logs.
    pub pipelines: Arc<AtomicU64>,
}

/// The queue in front of the batching task, which starts with the first settlement
/// (inside the runtime that makes it).
pub(super) struct SettleBatches {
    sender: Sender,
    queue: OnceLock<mpsc::Sender<Pending>>,
}

impl SettleBatches {
    pub fn new(sender: Sender) -> SettleBatches {
        SettleBatches {
            sender,
            queue: OnceLock::new(),
        }
    }

    /// Settle with `cmd` (an `EVALSHA` of the settlement script): its reply, once the
    /// batch it joined has been answered.
    pub async fn settle(&self, cmd: Cmd) -> Reply {
        // The batching task runs in the runtime of the first settlement (the runtime is
        // looked up once, not per settlement); the callers (`ticket.rs`) only settle
        // inside one.
        let queue = match self.queue.get() {
            Some(q) => q,
            None => match tokio::runtime::Handle::try_current() {
                Ok(runtime) => self.queue.get_or_init(|| {
                    let (tx, rx) = mpsc::channel(QUEUE);
                    runtime.spawn(run(self.sender.clone(), rx));
                    tx
                }),
                Err(_) => {
                    return Err(BackendError(
                        "redis: a settlement outside a Tokio runtime".into(),
                    ))
                }
            },
        };
        let (reply, answer) = oneshot::channel();
        match queue.try_send(Pending { cmd, reply }) {
            Ok(()) => answer.await.unwrap_or_else(|_| {
                Err(BackendError(
                    "redis: the settlement queue stopped before answering".into(),
                ))
            }),
            // Full (Redis is behind) or closed (its runtime ended): on its own, now.
            Err(e) => alone(&self.sender, e.into_inner().cmd).await,
        }
    }
}

/// One settlement sent on its own, now.
async fn alone(sender: &Sender, cmd: Cmd) -> Reply {
    let mut out = send(sender, vec![cmd]).await;
    out.pop()
        .unwrap_or_else(|| Err(BackendError("redis: no reply".into())))
}

async fn run(sender: Sender, mut queue: mpsc::Receiver<Pending>) {
    let in_flight = Arc::new(Semaphore::new(IN_FLIGHT));
    while let Some(first) = queue.recv().await {
        let mut batch = Vec::with_capacity(SETTLE_BATCH_MAX);
        batch.push(first);
        take_waiting(&mut queue, &mut batch);
        // Linger only for a batch that is not full already.
        if batch.len() < SETTLE_BATCH_MAX {
            tokio::time::sleep(SETTLE_LINGER).await;
            take_waiting(&mut queue, &mut batch);
        }
        // A slow Redis holds up to IN_FLIGHT batches, not the queue behind them.
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            return;
        };
        let sender = sender.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let (cmds, replies): (Vec<Cmd>, Vec<_>) =
                batch.into_iter().map(|p| (p.cmd, p.reply)).unzip();
            for (reply, out) in replies.into_iter().zip(send(&sender, cmds).await) {
                // The caller may have gone (its task was cancelled): nothing to tell.
                let _ = reply.send(out);
            }
        });
    }
}

fn take_waiting(queue: &mut mpsc::Receiver<Pending>, batch: &mut Vec<Pending>) {
    while batch.len() < SETTLE_BATCH_MAX {
        match queue.try_recv() {
            Ok(p) => batch.push(p),
            Err(_) => break,
        }
    }
}

/// Send `cmds` in one pipeline, all of it (a reload of the script and a resend
/// included) within `[limits] backend_timeout`; one reply per command, in order.
async fn send(sender: &Sender, cmds: Vec<Cmd>) -> Vec<Reply> {
    let n = cmds.len();
    match tokio::time::timeout(sender.timeout, attempts(sender, cmds)).await {
        Ok(out) => out,
        Err(_) => fill(
            (0..n).map(|_| None).collect(),
            &format!(
                "did not answer within {:?} ([limits] backend_timeout)",
                sender.timeout
            ),
        ),
    }
}

/// The pipeline, and once more for the commands that found the script missing after
/// loading it. Each reply is read on its own: one that cannot be read fails its call
/// alone.
async fn attempts(sender: &Sender, cmds: Vec<Cmd>) -> Vec<Reply> {
    let mut out: Vec<Option<Reply>> = (0..cmds.len()).map(|_| None).collect();
    let mut todo: Vec<(usize, Cmd)> = cmds.into_iter().enumerate().collect();
    for attempt in 0..2 {
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        for (_, cmd) in &todo {
            pipe.add_command(cmd.clone());
        }
        sender.pipelines.fetch_add(1, Ordering::Relaxed);
        let mut conn = sender.conn.clone();
        let replies: Vec<Value> = match pipe.query_async(&mut conn).await {
            Ok(r) => r,
            Err(e) => return fill(out, &e.to_string()),
        };
        let mut again = Vec::new();
        for ((i, cmd), v) in todo.into_iter().zip(replies) {
            let reply = match v {
                Value::ServerError(e)
                    if attempt == 0 && e.kind() == Some(ServerErrorKind::NoScript) =>
                {
                    again.push((i, cmd));
                    continue;
                }
                Value::ServerError(e) => Err(BackendError(format!("redis: {e}"))),
                v => redis::from_redis_value::<Vec<i64>>(v)
                    .map_err(|e| BackendError(format!("redis: unexpected settlement reply: {e}"))),
            };
            if let Some(slot) = out.get_mut(i) {
                *slot = Some(reply);
            }
        }
        if again.is_empty() {
            break;
        }
        let mut conn = sender.conn.clone();
        if let Err(e) = sender.script.load_async(&mut conn).await {
            return fill(out, &format!("cannot load the settlement script: {e}"));
        }
        todo = again;
    }
    fill(out, "no reply for this settlement")
}

/// Every reply not yet given becomes the error `why`.
fn fill(out: Vec<Option<Reply>>, why: &str) -> Vec<Reply> {
    out.into_iter()
        .map(|r| r.unwrap_or_else(|| Err(BackendError(format!("redis: {why}")))))
        .collect()
}
