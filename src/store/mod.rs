//! Durable storage behind a trait that knows nothing about Kafka (T-PERSIST-3).
//!
//! The store holds opaque records under byte keys; the layers above (users, tokens)
//! choose the keys and encode the records. Both stores answer the same questions the same
//! way, so the layers above never ask which one they run on:
//!
//! - reads are current: they see every commit that completed before they began (etcd
//!   reads are linearizable);
//! - a commit is a set of guards and a set of writes, applied together only if every
//!   guard holds (T-CONC-1 across brokers, T-CLUSTER-2), and durable when it returns
//!   (T-PERSIST-1);
//! - the feed tells, in commit order, every change under a prefix after a revision,
//!   whoever made it; the in-memory indexes follow it (T-CLUSTER-3);
//! - a barrier names the revision that the feed must reach to include every commit that
//!   completed before the barrier began.
//!
//! The embedded sled store is the default; the etcd store shares one state between brokers.

mod commit;
pub mod conformance;
pub mod etcd;
mod sled_store;
pub mod timed;

use std::future::Future;
use std::pin::Pin;

pub use sled_store::SledStore;

/// A storage failure.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The underlying store reported an error.
    #[error("store I/O error: {0}")]
    Io(String),
    /// The store did not answer in time, or cannot reach a quorum: the outcome of a write
    /// that got this error is unknown (T-CLUSTER-7).
    #[error("the store did not answer in time: {0}")]
    Unavailable(String),
    /// The data was written by a newer ktb (T-PERSIST-2).
    #[error("the store holds schema version {found}, but this ktb understands up to {supported}; upgrade ktb")]
    NewerSchema {
        /// The version found.
        found: u32,
        /// The newest version this build reads.
        supported: u32,
    },
    /// A record could not be decoded.
    #[error("corrupt record under key {key}: {reason}")]
    Corrupt {
        /// The key, lossily printed.
        key: String,
        /// What is wrong.
        reason: String,
    },
}

/// A stored record: its key and value.
pub type Record = (Vec<u8>, Vec<u8>);

/// A position in the store's history: every commit has a larger one than the commits
/// before it (etcd's revision; a per-process sequence for sled).
pub type Revision = i64;

/// A value with the stamp a guard compares: etcd's mod revision, or for sled a digest of
/// the value. Two reads of a key show the same stamp exactly when nothing changed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned {
    /// The stored bytes.
    pub value: Vec<u8>,
    /// What [`Guard::Unchanged`] compares.
    pub stamp: i64,
}

/// A condition a commit needs to hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Guard {
    /// The key does not exist.
    Absent(Vec<u8>),
    /// The key exists and still carries this stamp.
    Unchanged(Vec<u8>, i64),
}

/// One change in a commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Set `key` to `value`.
    Put(Vec<u8>, Vec<u8>),
    /// Remove `key` (no error if absent).
    Delete(Vec<u8>),
}

/// One change the feed reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The key changed.
    pub key: Vec<u8>,
    /// Its new value; `None` when it was deleted.
    pub value: Option<Vec<u8>>,
    /// Its value before the change, when the store still knows it.
    pub prev: Option<Vec<u8>>,
}

/// What the feed delivers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedEvent {
    /// The changes of the commits up to and including `revision`, in order.
    Changes {
        /// The revision of the last of them.
        revision: Revision,
        /// The changes.
        changes: Vec<Change>,
    },
    /// The history since the last event is gone (etcd compacted it): these are all the
    /// records under the prefix at `revision`; whoever follows the feed replaces its state
    /// with them.
    Reload {
        /// The revision of the snapshot.
        revision: Revision,
        /// Every record under the prefix.
        records: Vec<Record>,
    },
}

/// A boxed future of a store call.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// A visitor of records, for [`Store::load`].
pub type Visit<'a> = dyn FnMut(&[u8], &[u8]) -> Result<(), StoreError> + Send + 'a;

/// Durable storage for the broker's state.
pub trait Store: Send + Sync + 'static {
    /// The value under `key`, as of now.
    fn get<'a>(&'a self, key: &'a [u8]) -> StoreFuture<'a, Option<Versioned>>;
    /// The values under `keys`, in their order, each as of now.
    fn get_many<'a>(&'a self, keys: &'a [Vec<u8>]) -> StoreFuture<'a, Vec<Option<Versioned>>>;
    /// Every `(key, value)` whose key starts with `prefix`, in key order, as of now.
    fn scan_prefix<'a>(&'a self, prefix: &'a [u8]) -> StoreFuture<'a, Vec<Record>>;
    /// Calls `visit` with every record under `prefix`, all as of one revision, which it
    /// returns: the feed continues from there.
    fn load<'a>(&'a self, prefix: &'a [u8], visit: &'a mut Visit<'_>) -> StoreFuture<'a, Revision>;
    /// Applies `ops` if every guard holds, durably: `Some(revision)` of the commit, or
    /// `None` when a guard failed and nothing changed.
    fn commit(&self, guards: Vec<Guard>, ops: Vec<Op>) -> StoreFuture<'_, Option<Revision>>;
    /// The changes under `prefix` after `after`, in commit order, until the store closes.
    fn feed(
        &self,
        prefix: &[u8],
        after: Revision,
    ) -> Result<tokio::sync::mpsc::UnboundedReceiver<FeedEvent>, StoreError>;
    /// The revision the feed must reach to include every commit that completed before
    /// this call.
    fn barrier(&self) -> StoreFuture<'_, Revision>;
    /// Completes once every change the feed has told so far is durable (sled tells a change
    /// before its flush, and withdraws it if the flush fails).
    fn settled(&self) -> StoreFuture<'_, ()> {
        Box::pin(async { Ok(()) })
    }
    /// Makes everything durable before the broker stops.
    fn close(&self) -> StoreFuture<'_, ()>;
}

/// Puts `value` under `key` unless the key exists: true when it was written.
pub async fn put_new(store: &dyn Store, key: &[u8], value: Vec<u8>) -> Result<bool, StoreError> {
    Ok(store.commit(vec![Guard::Absent(key.to_vec())], vec![Op::Put(key.to_vec(), value)]).await?.is_some())
}

/// Applies `ops` without guards.
pub async fn write(store: &dyn Store, ops: Vec<Op>) -> Result<Revision, StoreError> {
    store.commit(Vec::new(), ops).await?.ok_or_else(|| StoreError::Io("an unguarded commit was refused".into()))
}
