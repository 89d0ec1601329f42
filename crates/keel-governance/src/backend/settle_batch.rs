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
//! (`NOSCRIPT`: a restart or `SCRIPT FLUSH`) is loaded and the calls that missed it
//! are sent again, and every pipeline has `[limits] backend_timeout`. A settlement that
//! cannot be queued (the queue is full: Redis is slower than the traffic) is sent at
//! once on its own, as before. Held settlements are in memory only, as a spawned
//! settlement task always was: a replica that dies holding them loses at most
//! [`SETTLE_LINGER`] of them, and their reservations lapse with their hold.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::{Cmd, ErrorKind, RedisResult, Script, ServerErrorKind};
use tokio::sync::{mpsc, oneshot};

use super::BackendError;

/// How long the first settlement of a batch waits for others.
pub const SETTLE_LINGER: Duration = Duration::from_millis(2);
/// The most settlements in one pipeline.
pub const SETTLE_BATCH_MAX: usize = 64;
/// Settlements waiting to be sent; past this many, a settlement is sent on its own.
const QUEUE: usize = 4096;

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
        let queue = self.queue.get_or_init(|| {
            let (tx, rx) = mpsc::channel(QUEUE);
            tokio::spawn(run(self.sender.clone(), rx));
            tx
        });
        let (reply, answer) = oneshot::channel();
        match queue.try_send(Pending { cmd, reply }) {
            Ok(()) => answer.await.unwrap_or_else(|_| {
                Err(BackendError(
                    "redis: the settlement queue stopped before answering".into(),
                ))
            }),
            // Full (Redis is behind) or closed (its runtime ended): on its own, now.
            Err(e) => {
                let Pending { cmd, .. } = e.into_inner();
                let mut out = send(&self.sender, vec![cmd]).await;
                out.pop()
                    .unwrap_or_else(|| Err(BackendError("redis: no reply".into())))
            }
        }
    }
}

async fn run(sender: Sender, mut queue: mpsc::Receiver<Pending>) {
    let mut batch: Vec<Pending> = Vec::with_capacity(SETTLE_BATCH_MAX);
    while let Some(first) = queue.recv().await {
        batch.push(first);
        tokio::time::sleep(SETTLE_LINGER).await;
        while batch.len() < SETTLE_BATCH_MAX {
            match queue.try_recv() {
                Ok(p) => batch.push(p),
                Err(_) => break,
            }
        }
        let (cmds, replies): (Vec<Cmd>, Vec<_>) = batch.drain(..).map(|p| (p.cmd, p.reply)).unzip();
        for (reply, out) in replies.into_iter().zip(send(&sender, cmds).await) {
            // The caller may have gone (its task was cancelled): nothing to tell.
            let _ = reply.send(out);
        }
    }
}

/// Send `cmds` in one pipeline; one reply per command, in order. Commands that found
/// the script missing are sent once more after loading it.
async fn send(sender: &Sender, cmds: Vec<Cmd>) -> Vec<Reply> {
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
        let replies: Vec<RedisResult<Vec<i64>>> =
            match tokio::time::timeout(sender.timeout, pipe.query_async(&mut conn)).await {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => return fill(out, &e.to_string()),
                Err(_) => {
                    return fill(
                        out,
                        &format!(
                            "did not answer within {:?} ([limits] backend_timeout)",
                            sender.timeout
                        ),
                    )
                }
            };
        let mut again = Vec::new();
        for ((i, cmd), r) in todo.into_iter().zip(replies) {
            match r {
                Err(e) if attempt == 0 && is_noscript(&e) => again.push((i, cmd)),
                r => {
                    if let Some(slot) = out.get_mut(i) {
                        *slot = Some(r.map_err(|e| BackendError(format!("redis: {e}"))));
                    }
                }
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

fn is_noscript(e: &redis::RedisError) -> bool {
    e.kind() == ErrorKind::Server(ServerErrorKind::NoScript)
}

/// Every reply not yet given becomes the error `why`.
fn fill(out: Vec<Option<Reply>>, why: &str) -> Vec<Reply> {
    out.into_iter()
        .map(|r| r.unwrap_or_else(|| Err(BackendError(format!("redis: {why}")))))
        .collect()
}
