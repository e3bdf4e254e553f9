//! Durable storage behind a trait that knows nothing about Kafka (T-PERSIST-3).
//!
//! The store holds opaque records under byte keys; the layers above (users, tokens)
//! choose the keys and encode the records. A batch of puts and deletes is applied
//! atomically, and [`Store::flush`] makes everything applied so far durable. The embedded
//! sled store is the default; a distributed store implements the same trait.

mod commit;
mod sled_store;

pub use commit::GroupCommit;
pub use sled_store::SledStore;

/// A storage failure.
#[derive(Debug, Clone, thiserror::Error)]
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

/// A visitor of records, for [`Store::for_each_prefix`].
pub type Visit<'a> = dyn FnMut(&[u8], &[u8]) -> Result<(), StoreError> + 'a;

/// One change in an atomic batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Set `key` to `value`.
    Put(Vec<u8>, Vec<u8>),
    /// Remove `key` (no error if absent).
    Delete(Vec<u8>),
}

/// Durable storage for the broker's state.
pub trait Store: Send + Sync + 'static {
    /// The value under `key`.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    /// Every `(key, value)` whose key starts with `prefix`, in key order.
    fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<Record>, StoreError>;
    /// The first `limit` `(key, value)` pairs with `start <= key < end`, in key order.
    fn scan_range(&self, start: &[u8], end: &[u8], limit: usize) -> Result<Vec<Record>, StoreError>;
    /// Calls `f` with every `(key, value)` whose key starts with `prefix`, in key order,
    /// without collecting them (for loading large stores).
    fn for_each_prefix(&self, prefix: &[u8], f: &mut Visit<'_>) -> Result<(), StoreError> {
        for (k, v) in self.scan_prefix(prefix)? {
            f(&k, &v)?;
        }
        Ok(())
    }
    /// True when some key starts with `prefix`.
    fn any_with_prefix(&self, prefix: &[u8]) -> Result<bool, StoreError>;
    /// Applies every op or none of them.
    fn apply(&self, ops: Vec<Op>) -> Result<(), StoreError>;
    /// Sets `key` to `value` unless `key` exists; true when it did. Callers that need
    /// this atomic against other writers hold their own lock, or use a store that
    /// overrides it.
    fn put_new(&self, key: &[u8], value: Vec<u8>) -> Result<bool, StoreError> {
        if self.get(key)?.is_some() {
            return Ok(false);
        }
        self.apply(vec![Op::Put(key.to_vec(), value)])?;
        Ok(true)
    }
    /// Makes every write so far durable.
    fn flush(&self) -> Result<(), StoreError>;

    /// Applies a batch and makes it durable before returning (T-PERSIST-1).
    fn apply_durable(&self, ops: Vec<Op>) -> Result<(), StoreError> {
        self.apply(ops)?;
        self.flush()
    }
}
