//! Heap allocations per request, in a bench build only (feature `count-allocations`,
//! `bench/allocations.sh`; issue 21's target is under 60 for a plain non-streamed call).
//!
//! callgrind counts every `__rust_alloc` of the process over all threads, which mixes
//! the trace writer, timers and hyper's connection handling into the figure. This
//! counts only what the request path does itself: the allocations made on the current
//! thread while the router's service is called for a `/v1/*` request and while its
//! future is polled — parsing, routing, admission, the upstream call as the handler
//! drives it, pricing, the trace handed to the writer and the response built. Not
//! counted: hyper reading the request head before the service is called and writing
//! the response after it, the upstream connection's own task, and the writer thread.
//!
//! The counting allocator (`allocation-counter`) replaces the global allocator, so the
//! binary built with the feature runs on the system allocator: fine for counting, never
//! for a release. The totals are read at `GET /debug/allocations` (JSON), which only
//! this build has.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use axum::Json;

/// Requests counted (those whose future completed) and the allocations they made.
static REQUESTS: AtomicU64 = AtomicU64::new(0);
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);

/// Count the allocations of every `/v1/*` request `router` serves.
pub fn count(router: axum::Router) -> axum::Router {
    router
        .route("/debug/allocations", axum::routing::get(totals))
        .layer(tower::layer::layer_fn(|inner| Counting { inner }))
}

/// `GET /debug/allocations`: the totals so far (a bench reads them before and after).
async fn totals() -> Response {
    Json(serde_json::json!({
        "requests": REQUESTS.load(Ordering::Relaxed),
        "allocations": ALLOCATIONS.load(Ordering::Relaxed),
        "bytes": BYTES.load(Ordering::Relaxed),
    }))
    .into_response()
}

/// The router's service, with each `/v1/*` call measured.
#[derive(Clone)]
struct Counting<S> {
    inner: S,
}

impl<S> tower::Service<Request> for Counting<S>
where
    S: tower::Service<Request, Response = Response>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        if !req.uri().path().starts_with("/v1/") {
            return Box::pin(self.inner.call(req));
        }
        let mut fut = None;
        let info = allocation_counter::measure(|| fut = Some(self.inner.call(req)));
        match fut {
            Some(fut) => Box::pin(Measured {
                inner: Box::pin(fut),
                allocations: info.count_total,
                bytes: info.bytes_total,
            }),
            // `measure` runs its closure exactly once.
            None => unreachable_call(),
        }
    }
}

/// Never reached (see `call`); a future that never completes rather than a panic.
fn unreachable_call<T: Send + 'static>() -> Pin<Box<dyn Future<Output = T> + Send>> {
    Box::pin(std::future::pending())
}

/// A request's future, its allocations counted on every poll.
struct Measured<F> {
    inner: Pin<Box<F>>,
    allocations: u64,
    bytes: u64,
}

impl<F: Future> Future for Measured<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = &mut *self;
        let mut out = Poll::Pending;
        let info = allocation_counter::measure(|| out = this.inner.as_mut().poll(cx));
        this.allocations += info.count_total;
        this.bytes += info.bytes_total;
        if out.is_ready() {
            REQUESTS.fetch_add(1, Ordering::Relaxed);
            ALLOCATIONS.fetch_add(this.allocations, Ordering::Relaxed);
            BYTES.fetch_add(this.bytes, Ordering::Relaxed);
        }
        out
    }
}
