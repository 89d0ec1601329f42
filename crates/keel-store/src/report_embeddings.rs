//! The report's embeddings section: `/v1/embeddings` calls on their own, by model,
//! feature and tenant. Their cost grows with the documents an app retrieves per request,
//! not with the answers it writes, so they get their own lines beside the totals.

use serde::Serialize;

use crate::report::{breakdown_of, Dimension, GroupRow, GroupStats, Window};
use crate::sql::Db;
use crate::StoreError;

/// The window's embeddings calls by model, feature and tenant.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EmbeddingsSection {
    pub totals: GroupStats,
    pub by_model: Vec<GroupRow>,
    pub by_feature: Vec<GroupRow>,
    pub by_tenant: Vec<GroupRow>,
}

/// The endpoint embeddings calls are traced with.
pub const EMBEDDINGS_ENDPOINT: &str = "/v1/embeddings";

pub(crate) fn embeddings_section(
    conn: Db<'_>,
    w: Window,
) -> Result<Option<EmbeddingsSection>, StoreError> {
    let only = Some(EMBEDDINGS_ENDPOINT);
    let Some(totals) = breakdown_of(conn, w, Dimension::All, only)?.pop() else {
        return Ok(None);
    };
    Ok(Some(EmbeddingsSection {
        totals: totals.stats,
        by_model: breakdown_of(conn, w, Dimension::Model, only)?,
        by_feature: breakdown_of(conn, w, Dimension::Feature, only)?,
        by_tenant: breakdown_of(conn, w, Dimension::Tenant, only)?,
    }))
}
