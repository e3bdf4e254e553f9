//! Durable storage behind a trait that knows nothing about Kafka (T-PERSIST-3).
//!
//! The broker talks to `dyn Store`; the embedded sled store is the default and a
//! distributed store can stand beside it.

mod sled_store;

pub use sled_store::SledStore;

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The underlying store reported an error.
    #[error("store I/O error: {0}")]
    Io(String),
    /// The data was written by a newer ktb (T-PERSIST-2).
    #[error("the store holds schema version {found}, but this ktb understands up to {supported}; upgrade ktb")]
    NewerSchema {
        /// The version found on disk.
        found: u32,
        /// The newest version this build reads.
        supported: u32,
    },
}

/// Durable storage for the broker's state.
pub trait Store: Send + Sync + 'static {
    /// Makes every write so far durable.
    fn flush(&self) -> Result<(), StoreError>;
}
