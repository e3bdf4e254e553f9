//! A store that times its commits for `ktb_store_commit_duration_seconds` (T-OPS-1).

use std::sync::Arc;
use std::time::Instant;

use super::{FeedEvent, Guard, Op, Record, Revision, Store, StoreError, StoreFuture, Versioned, Visit};
use crate::metrics::Metrics;

/// `inner`, with every commit's duration observed by `metrics`.
pub struct Timed {
    inner: Arc<dyn Store>,
    metrics: Arc<Metrics>,
}

impl Timed {
    /// Times the commits of `inner`.
    pub fn new(inner: Arc<dyn Store>, metrics: Arc<Metrics>) -> Timed {
        Timed { inner, metrics }
    }
}

impl Store for Timed {
    fn get<'a>(&'a self, key: &'a [u8]) -> StoreFuture<'a, Option<Versioned>> {
        self.inner.get(key)
    }

    fn get_many<'a>(&'a self, keys: &'a [Vec<u8>]) -> StoreFuture<'a, Vec<Option<Versioned>>> {
        self.inner.get_many(keys)
    }

    fn scan_prefix<'a>(&'a self, prefix: &'a [u8]) -> StoreFuture<'a, Vec<Record>> {
        self.inner.scan_prefix(prefix)
    }

    fn load<'a>(&'a self, prefix: &'a [u8], visit: &'a mut Visit<'_>) -> StoreFuture<'a, Revision> {
        self.inner.load(prefix, visit)
    }

    fn commit(&self, guards: Vec<Guard>, ops: Vec<Op>) -> StoreFuture<'_, Option<Revision>> {
        Box::pin(async move {
            let start = Instant::now();
            let outcome = self.inner.commit(guards, ops).await;
            self.metrics.commit(start.elapsed());
            outcome
        })
    }

    fn feed(
        &self,
        prefix: &[u8],
        after: Revision,
    ) -> Result<tokio::sync::mpsc::UnboundedReceiver<FeedEvent>, StoreError> {
        self.inner.feed(prefix, after)
    }

    fn barrier(&self) -> StoreFuture<'_, Revision> {
        self.inner.barrier()
    }

    fn settled(&self) -> StoreFuture<'_, ()> {
        self.inner.settled()
    }

    fn close(&self) -> StoreFuture<'_, ()> {
        self.inner.close()
    }
}
