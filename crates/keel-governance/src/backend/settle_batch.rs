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
//! `[limits] backend_timeout`; when it runs out, only the settlements not answered by
//! then fail (their commands may already be written: Redis can still apply them, so
//! the caller only logs).
//!
//! When a batch goes: its first settlement waits [`SETTLE_LINGER`] (not at all when the
//! queue already holds a full batch), then the batch takes what is waiting, up to
//! [`SETTLE_BATCH_MAX`], and is sent from a task of its own. Up to `IN_FLIGHT` (4)
//! pipelines are out at once; while the next batch waits for one to come back, the
//! queue fills, and the batch tops itself up once it may go. So a Redis that does not
//! answer still drains at least `IN_FLIGHT` × [`SETTLE_BATCH_MAX`] settlements per
//! `backend_timeout`: with the queue full, the last one queued waits at most ~17 ×
//! `backend_timeout` (16 rounds for the queue, one for the batch in hand). A settlement that finds the queue full (Redis is far behind the
//! traffic) is sent at once on its own, outside the in-flight cap: it adds a round trip
//! rather than wait behind 4,096 others.
//!
//! What can be lost: queued settlements are in memory only, as a spawned settlement task
//! always was. A replica that dies loses those Redis has not yet applied (normally
//! the last 2 ms of calls, and any waiting to be sent again after a reload; more while
//! Redis is behind), and their reservations lapse with their hold.

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
    /// Pipelines sent (batches, settlements sent on their own, and resends after a
    /// reload of the script), for tests and logs.
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
        // More may have come while every pipeline was out.
        take_waiting(&mut queue, &mut batch);
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
/// included) within `[limits] backend_timeout`; one reply per command, in order. A
/// timeout fails only the commands not answered by then: a settlement that landed in
/// the first attempt keeps its reply when the reload or the resend runs out of time.
async fn send(sender: &Sender, cmds: Vec<Cmd>) -> Vec<Reply> {
    let mut out: Vec<Option<Reply>> = (0..cmds.len()).map(|_| None).collect();
    let why = match tokio::time::timeout(sender.timeout, attempts(sender, cmds, &mut out)).await {
        Ok(why) => why,
        Err(_) => format!(
            "did not answer within {:?} ([limits] backend_timeout)",
            sender.timeout
        ),
    };
    out.into_iter()
        .map(|r| r.unwrap_or_else(|| Err(BackendError(format!("redis: {why}")))))
        .collect()
}

/// The pipeline, and once more for the commands that found the script missing after
/// loading it, each reply put in `out` as it is read (one that cannot be read fails its
/// call alone). Answers why the commands still without a reply have none.
async fn attempts(sender: &Sender, cmds: Vec<Cmd>, out: &mut [Option<Reply>]) -> String {
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
            Err(e) => return e.to_string(),
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
            return format!("cannot load the settlement script: {e}");
        }
        todo = again;
    }
    "no reply for this settlement".into()
}

#[cfg(test)]
mod tests {
    //! Against a scripted server on loopback that speaks RESP: a real Redis cannot be
    //! made to lose a script for some calls of a pipeline and then stall on the reload.

    use super::*;
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    use tokio::net::TcpListener;

    /// Where the scripted server stops answering.
    #[derive(Clone, Copy, PartialEq)]
    enum Stall {
        Never,
        /// At `SCRIPT LOAD`.
        Reload,
        /// At the resend after the reload.
        Resend,
    }

    /// Answers `EVALSHA <sha> 0 ok` with `[7]`, `EVALSHA <sha> 0 lost` with `NOSCRIPT`
    /// until the script is loaded (`[8]` after), `SCRIPT LOAD` with the hash; anything
    /// else (the client's handshake) with `+OK`. Stops answering where `stall` says.
    async fn scripted_redis(stall: Stall) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                tokio::spawn(serve(sock, stall));
            }
        });
        format!("redis://{addr}")
    }

    async fn serve(sock: tokio::net::TcpStream, stall: Stall) {
        let (read, mut write) = sock.into_split();
        let mut read = BufReader::new(read);
        let mut loaded = false;
        while let Some(args) = read_command(&mut read).await {
            let first = args.first().map(|a| a.to_ascii_uppercase());
            let reply = match (first.as_deref(), args.last().map(String::as_str)) {
                (Some("EVALSHA"), Some("ok")) => "*1\r\n:7\r\n".to_string(),
                (Some("EVALSHA"), Some("lost")) if loaded && stall == Stall::Resend => {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    return;
                }
                (Some("EVALSHA"), Some("lost")) if loaded => "*1\r\n:8\r\n".to_string(),
                (Some("EVALSHA"), Some("lost")) => {
                    "-NOSCRIPT No matching script. Please use EVAL.\r\n".to_string()
                }
                (Some("SCRIPT"), _) if stall == Stall::Reload => {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    return;
                }
                (Some("SCRIPT"), _) => {
                    loaded = true;
                    let sha = Script::new("return 1").get_hash().to_string();
                    format!("${}\r\n{sha}\r\n", sha.len())
                }
                _ => "+OK\r\n".to_string(),
            };
            if write.write_all(reply.as_bytes()).await.is_err() {
                return;
            }
        }
    }

    /// One command: an array of bulk strings.
    async fn read_command<R: AsyncBufReadExt + Unpin>(read: &mut R) -> Option<Vec<String>> {
        let mut line = String::new();
        read.read_line(&mut line).await.ok()?;
        let n: usize = line.trim().strip_prefix('*')?.parse().ok()?;
        let mut args = Vec::with_capacity(n);
        for _ in 0..n {
            line.clear();
            read.read_line(&mut line).await.ok()?;
            let len: usize = line.trim().strip_prefix('$')?.parse().ok()?;
            let mut buf = vec![0u8; len + 2];
            read.read_exact(&mut buf).await.ok()?;
            buf.truncate(len);
            args.push(String::from_utf8(buf).ok()?);
        }
        Some(args)
    }

    /// A sender configured as `RedisBackend::new` configures its connection.
    async fn sender_to(url: &str, timeout: Duration) -> Sender {
        let client = redis::Client::open(url).unwrap();
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1);
        let conn = ConnectionManager::new_with_config(client, config)
            .await
            .unwrap();
        Sender {
            conn,
            script: Arc::new(Script::new("return 1")),
            timeout,
            pipelines: Arc::new(AtomicU64::new(0)),
        }
    }

    fn evalsha(what: &str) -> Cmd {
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(Script::new("return 1").get_hash()).arg(0).arg(what);
        cmd
    }

    #[tokio::test]
    async fn calls_that_lost_the_script_are_sent_again_and_the_others_answered_once() {
        let sender = sender_to(&scripted_redis(Stall::Never).await, Duration::from_secs(5)).await;
        let out = send(&sender, vec![evalsha("ok"), evalsha("lost"), evalsha("ok")]).await;
        let out: Vec<_> = out.into_iter().map(|r| r.map_err(|e| e.0)).collect();
        assert_eq!(out, vec![Ok(vec![7]), Ok(vec![8]), Ok(vec![7])]);
        // The batch, then the resend of the one that missed the script.
        assert_eq!(sender.pipelines.load(Ordering::Relaxed), 2);
    }

    #[tokio::test]
    async fn a_timeout_in_the_reload_or_the_resend_fails_only_the_settlements_not_yet_answered() {
        for stall in [Stall::Reload, Stall::Resend] {
            let timeout = Duration::from_millis(300);
            let sender = sender_to(&scripted_redis(stall).await, timeout).await;
            let out = send(&sender, vec![evalsha("ok"), evalsha("lost")]).await;
            // The first attempt's answer stands; the one still waiting fails (the
            // connection's own response timeout and backend_timeout are the same
            // length: either may be the one that ends it).
            assert_eq!(out[0].as_ref().map_err(|e| e.0.clone()), Ok(&vec![7]));
            assert!(out[1].is_err(), "answered through a stall: {:?}", out[1]);
        }
    }
}
