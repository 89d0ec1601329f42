//! Store work from async code: always on a blocking thread (a SQLite call may wait on a
//! lock for seconds, which must never stall an async worker), its failure logged and
//! turned into a 500 that says what could not be done and to retry.

use std::sync::Arc;

use keel_store::Store;

use crate::error::GatewayError;

/// Run `f` with the store on a blocking thread; `what` names the data for the message
/// ("feedback", "stored responses").
pub async fn on_store<T: Send + 'static>(
    store: &Arc<Store>,
    what: &'static str,
    f: impl FnOnce(&Store) -> Result<T, keel_store::StoreError> + Send + 'static,
) -> Result<T, GatewayError> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || f(&store))
        .await
        .map_err(|e| GatewayError::Internal(e.to_string()))?
        .map_err(|e| {
            tracing::warn!(error = %e, what, "store failed");
            GatewayError::Internal(format!("cannot read or write {what} now ({e}); retry"))
        })
}
