//! The gateway's view of the prompt registry: which prompt version, model, parameters
//! and tools each function variant serves right now.
//!
//! Prompt versions and labels live in the store and move while the gateway runs (`keel
//! prompt label`, `keel prompt rollback`). The request path must see a moved label
//! within seconds but must never wait on the store, so:
//!
//! - [`snapshot`] builds an immutable [`Snapshot`]: every variant of every function
//!   resolved to a [`Deployment`] (compiled prompt, merged parameters, its release), or to
//!   the reason it cannot serve;
//! - [`refresh`] rebuilds it on a blocking thread every `[registry] refresh` (default
//!   2 s), reusing compiled prompt versions, records new releases, and swaps it in;
//! - a request reads the current snapshot with one atomic load ([`Registry::current`]).
//!
//! The same snapshot carries the functions' traffic-split overrides ([`splits`], moved
//! by `keel function canary`), so a moved split is served within one refresh too.

pub mod params;
pub mod refresh;
pub mod snapshot;
pub mod splits;
pub mod switches;

use std::sync::Arc;

use arc_swap::ArcSwap;

pub use snapshot::{Deployment, PromptOverrides, Snapshot, FOLDER_LABEL, UNPUSHED_VERSION};

/// The current snapshot, swapped atomically by the refresher.
pub struct Registry {
    current: ArcSwap<Snapshot>,
}

impl Registry {
    pub fn new(initial: Snapshot) -> Registry {
        Registry {
            current: ArcSwap::from_pointee(initial),
        }
    }

    /// The snapshot to serve this request with (lock-free).
    pub fn current(&self) -> arc_swap::Guard<Arc<Snapshot>> {
        self.current.load()
    }

    pub fn replace(&self, next: Snapshot) {
        self.current.store(Arc::new(next));
    }
}
