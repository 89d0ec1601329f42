//! Accepting and serving client connections under explicit limits, so no client can pin
//! the gateway (a slowloris, idle sockets, a flood of half-open connections, a
//! connection that will not let shutdown finish). Every limit is a `[gateway]` key:
//!
//! - `header_read_timeout` (10 s): a connection must deliver a request's whole header
//!   within this once it starts waiting for one (after accept, and after each response on
//!   a kept-alive HTTP/1.1 connection), so a header sent a byte a second, and a kept-alive
//!   connection that sends nothing, are closed.
//! - `idle_timeout` (180 s): a connection (HTTP/1.1 or HTTP/2) on which no byte moves
//!   either way for this long is closed — a call waiting on its upstream included, so
//!   keep it above the longest a call may be silent (`request_timeout`, 120 s, and any
//!   model's longer `timeout`).
//! - `max_connections` (10,000): open connections at most; one more is answered
//!   `503 overloaded` (`Connection: close`) and closed, before the process runs out of
//!   file descriptors for the calls it is serving.
//! - `shutdown_timeout` (30 s): after a stop signal, connections finish their requests
//!   within this; then they are closed, their calls traced as `shutdown`, and the process
//!   goes on to drain its trace queue and exit.
//!
//! Each request carries axum's `ConnectInfo<SocketAddr>` (the client's address).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

/// The connection limits (see the module doc).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
    pub shutdown_timeout: Duration,
}

/// What a refused connection is told, in full.
const OVERLOADED: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nconnection: close\r\nretry-after: 1\r\ncontent-length: 153\r\n\r\n{\"error\":{\"message\":\"Keel has reached [gateway] max_connections open connections; retry shortly\",\"type\":\"server_error\",\"code\":\"overloaded\",\"param\":null}}";

/// Serve `app` on `listener` until `stop` resolves; then let connections finish until
/// `deadline` (`shutdown_timeout` after the stop), cancel `abort` and close the rest
/// (their requests' futures are dropped, which traces them). Returns the deadline.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    stop: impl Future<Output = ()>,
    abort: CancellationToken,
) -> Instant {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let builder = Arc::new(builder);
    let tasks = TaskTracker::new();
    tokio::pin!(stop);
    loop {
        let (tcp, addr) = tokio::select! {
            () = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors, or a connection reset before accept: wait
                    // a little rather than spin.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // Streamed chunks are small writes; without this, Nagle holds them back.
        let _ = tcp.set_nodelay(true);
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tokio::spawn(refuse(tcp));
            continue;
        };
        let service =
            app.clone()
                .map_request(move |mut req: http::Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(ConnectInfo(addr));
                    req
                });
        let io = TokioIo::new(IdleIo::new(
            tcp,
            limits.header_read_timeout,
            limits.idle_timeout,
        ));
        let conn = builder
            .serve_connection_with_upgrades(io, TowerToHyperService::new(service))
            .into_owned();
        let conn = graceful.watch(conn);
        let abort = abort.clone();
        tasks.spawn(async move {
            tokio::select! {
                done = conn => if let Err(e) = done {
                    tracing::debug!(error = %e, "connection ended with an error");
                },
                () = abort.cancelled() => {}
            }
            drop(permit);
        });
    }
    drop(listener);
    let deadline = Instant::now() + limits.shutdown_timeout;
    tasks.close();
    if tokio::time::timeout_at(deadline, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            "connections still open after [gateway] shutdown_timeout ({:?}); closing them",
            limits.shutdown_timeout
        );
        abort.cancel();
    }
    tasks.wait().await;
    deadline
}

/// Answer 503 `overloaded` and close, without reading the request (bounded: a client
/// that will not read its answer is dropped after a second).
async fn refuse(mut tcp: TcpStream) {
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = tcp.write_all(OVERLOADED).await;
        let _ = tcp.shutdown().await;
    })
    .await;
}

/// A socket that fails with `TimedOut` once no byte has moved either way for `idle` (or,
/// before its first byte, for the header-read limit).
struct IdleIo {
    inner: TcpStream,
    idle: Duration,
    timer: Pin<Box<Sleep>>,
}

impl IdleIo {
    /// `first`: how long the first byte may take (the header-read limit: the protocol
    /// sniffing that picks HTTP/1.1 or HTTP/2 reads before hyper's own header timer runs).
    fn new(inner: TcpStream, first: Duration, idle: Duration) -> IdleIo {
        IdleIo {
            inner,
            idle,
            timer: Box::pin(tokio::time::sleep(first.min(idle))),
        }
    }

    fn moved(&mut self) {
        let next = Instant::now() + self.idle;
        self.timer.as_mut().reset(next);
    }

    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        self.timer.as_mut().poll(cx).is_ready()
    }

    /// A write moved bytes (the timer starts again), or is waiting past the limit.
    fn after_write(
        &mut self,
        cx: &mut Context<'_>,
        written: Poll<std::io::Result<usize>>,
    ) -> Poll<std::io::Result<usize>> {
        match written {
            Poll::Ready(Ok(n)) => {
                if n > 0 {
                    self.moved();
                }
                Poll::Ready(Ok(n))
            }
            Poll::Pending if self.expired(cx) => Poll::Ready(Err(idle_error())),
            other => other,
        }
    }
}

fn idle_error() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        "no byte moved within [gateway] idle_timeout",
    )
}

impl AsyncRead for IdleIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    self.moved();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending if self.expired(cx) => Poll::Ready(Err(idle_error())),
            other => other,
        }
    }
}

impl AsyncWrite for IdleIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let written = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.after_write(cx, written)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let written = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.after_write(cx, written)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
