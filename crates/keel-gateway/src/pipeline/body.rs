//! Reading a request body under explicit limits: a size cap (413), a deadline for
//! slow clients (408), and a cap on the body bytes held at once across all requests
//! (`[gateway] max_inflight_body_bytes`, 503 `overloaded`): a burst of large requests
//! is refused before it can take the process's memory, not after.
//!
//! The bytes are read into one buffer sized from `content-length` (no regrowth copies)
//! and held as a [`BodyHold`] until the request is answered.
//!
//! An oversized body is still drained (up to `DRAIN_CAP`) before answering, so an honest
//! client that is mid-upload gets a clean 413 instead of a connection reset.

use std::sync::Arc;

use axum::body::Body;
use axum::http::HeaderMap;
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::GatewayError;
use crate::state::AppState;

/// Past this many bytes we stop draining an oversized body and drop the connection.
const DRAIN_CAP: usize = 64 * 1024 * 1024;

/// The body bytes a request holds of `[gateway] max_inflight_body_bytes`, released
/// when it is dropped (the handler keeps it until the request is answered).
pub struct BodyHold {
    _permit: Option<OwnedSemaphorePermit>,
}

/// A request's body and its hold on the in-flight byte budget.
pub struct ReadBody {
    pub bytes: Bytes,
    pub hold: BodyHold,
}

/// Read `body` under the gateway's limits (size, time, bytes in flight).
pub async fn read_body(
    app: &AppState,
    headers: &HeaderMap,
    body: Body,
) -> Result<ReadBody, GatewayError> {
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let read = read_limited(body, app.max_body_bytes, declared, &app.body_budget);
    match tokio::time::timeout(app.body_read_timeout, read).await {
        Ok(result) => result,
        Err(_) => Err(GatewayError::BodyTimeout(app.body_read_timeout)),
    }
}

/// Take `n` bytes of the in-flight budget, adding to `permit`, or say why not.
fn take(
    budget: &Arc<Semaphore>,
    permit: &mut Option<OwnedSemaphorePermit>,
    n: usize,
) -> Result<(), GatewayError> {
    if n == 0 {
        return Ok(());
    }
    let got = u32::try_from(n)
        .ok()
        .and_then(|n| budget.clone().try_acquire_many_owned(n).ok())
        .ok_or_else(|| {
            GatewayError::Overloaded(
                "request bodies in flight have reached [gateway] max_inflight_body_bytes; retry shortly".into(),
            )
        })?;
    match permit {
        Some(p) => p.merge(got),
        None => *permit = Some(got),
    }
    Ok(())
}

async fn read_limited(
    mut body: Body,
    limit: usize,
    declared: Option<usize>,
    budget: &Arc<Semaphore>,
) -> Result<ReadBody, GatewayError> {
    if declared.is_some_and(|n| n > limit) {
        return Err(GatewayError::BodyTooLarge { limit });
    }
    // A declared length is taken from the budget (and allocated) before any byte is read.
    let mut permit = None;
    let reserved = declared.unwrap_or(0);
    take(budget, &mut permit, reserved)?;
    let mut buf = BytesMut::with_capacity(reserved);
    let mut seen = 0usize;
    let mut too_large = false;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            GatewayError::InvalidRequest(format!("could not read the request body: {e}"))
        })?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        seen = seen.saturating_add(data.len());
        if seen > limit {
            too_large = true;
            buf = BytesMut::new();
            if seen > DRAIN_CAP {
                break;
            }
            continue;
        }
        if seen > reserved {
            take(budget, &mut permit, seen - reserved.max(seen - data.len()))?;
        }
        buf.extend_from_slice(&data);
    }
    if too_large {
        return Err(GatewayError::BodyTooLarge { limit });
    }
    Ok(ReadBody {
        bytes: buf.freeze(),
        hold: BodyHold { _permit: permit },
    })
}
