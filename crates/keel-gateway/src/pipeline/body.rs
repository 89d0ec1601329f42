//! Reading a request body under explicit limits: a size cap (413) and a deadline for
//! slow clients (408).
//!
//! An oversized body is still drained (up to `DRAIN_CAP`) before answering, so an honest
//! client that is mid-upload gets a clean 413 instead of a connection reset.

use std::time::Duration;

use axum::body::Body;
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;

use crate::error::GatewayError;

/// Past this many bytes we stop draining an oversized body and drop the connection.
const DRAIN_CAP: usize = 64 * 1024 * 1024;

pub async fn read_body(
    body: Body,
    limit: usize,
    deadline: Duration,
) -> Result<Bytes, GatewayError> {
    match tokio::time::timeout(deadline, read_limited(body, limit)).await {
        Ok(result) => result,
        Err(_) => Err(GatewayError::BodyTimeout(deadline)),
    }
}

async fn read_limited(mut body: Body, limit: usize) -> Result<Bytes, GatewayError> {
    let mut buf = BytesMut::new();
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
        buf.extend_from_slice(&data);
    }
    if too_large {
        return Err(GatewayError::BodyTooLarge { limit });
    }
    Ok(buf.freeze())
}
