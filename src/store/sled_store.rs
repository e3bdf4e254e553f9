//! The embedded sled store.
//!
//! One process owns the directory (the data dir's lock), so commits are serialized by one
//! short mutex: guards are checked, the writes applied and the feed told under it, then
//! the writer waits for a group flush outside it, so concurrent writers share one fsync
//! (T-PERSIST-1). A flush that fails withdraws the writes it did not cover.

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use sha2::{Digest, Sha256};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

use super::commit::GroupCommit;
use super::{Change, FeedEvent, Guard, Op, Record, Revision, Store, StoreError, StoreFuture, Versioned, Visit};

/// The schema version this build writes and reads.
const SCHEMA_VERSION: u32 = 1;
const SCHEMA_KEY: &[u8] = b"schema_version";
/// sled's page cache. Its default (1 GiB) lets a store of a million tokens grow the
/// process past 600 MB; the hot data of a token broker is far smaller.
const CACHE_BYTES: u64 = 64 << 20;

/// A store in a sled database directory. Records live in one tree so that any batch of
/// them is a single atomic sled batch.
pub struct SledStore {
    db: sled::Db,
    records: sled::Tree,
    /// sled's log file. sled makes its writes stable with `sync_file_range`, which does not
    /// flush a disk's write cache; a flush calls `fdatasync` on this file as well, so an
    /// acknowledged change also survives a power loss.
    log: Arc<std::fs::File>,
    writer: Mutex<Writer>,
    commit: GroupCommit,
    /// Tests make flushes fail with this.
    #[cfg(test)]
    pub(crate) fail_flush: Arc<std::sync::atomic::AtomicBool>,
}

/// What commits share under the write mutex.
#[derive(Default)]
struct Writer {
    /// The revision of the last commit in this process.
    revision: Revision,
    /// Who follows which prefix.
    feeds: Vec<(Vec<u8>, UnboundedSender<FeedEvent>)>,
}

fn io(e: sled::Error) -> StoreError {
    StoreError::Io(e.to_string())
}

/// The stamp of a sled value: the first 8 bytes of its SHA-256.
fn stamp(value: &[u8]) -> i64 {
    let d = Sha256::digest(value);
    i64::from_be_bytes(d[..8].try_into().expect("8 bytes of a 32-byte digest"))
}

fn flush_db(db: &sled::Db, log: &std::fs::File) -> Result<(), StoreError> {
    db.flush().map_err(io)?;
    log.sync_data().map_err(|e| StoreError::Io(format!("fdatasync of the store failed: {e}")))
}

impl SledStore {
    /// Opens (or creates) the database at `path`, checks its schema version and starts
    /// its flusher thread.
    pub fn open(path: &Path) -> Result<SledStore, StoreError> {
        let db = sled::Config::new().path(path).cache_capacity(CACHE_BYTES).open().map_err(io)?;
        let meta = db.open_tree("meta").map_err(io)?;
        match meta.get(SCHEMA_KEY).map_err(io)? {
            Some(raw) => {
                let found = <[u8; 4]>::try_from(raw.as_ref())
                    .map(u32::from_be_bytes)
                    .map_err(|_| StoreError::Corrupt { key: "schema_version".into(), reason: "not 4 bytes".into() })?;
                if found > SCHEMA_VERSION {
                    return Err(StoreError::NewerSchema { found, supported: SCHEMA_VERSION });
                }
            }
            None => {
                meta.insert(SCHEMA_KEY, &SCHEMA_VERSION.to_be_bytes()).map_err(io)?;
                db.flush().map_err(io)?;
            }
        }
        let records = db.open_tree("records").map_err(io)?;
        let log =
            Arc::new(std::fs::File::open(path.join("db")).map_err(|e| {
                StoreError::Io(format!("cannot open sled's log file {}: {e}", path.join("db").display()))
            })?);
        #[cfg(test)]
        let fail_flush = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flush: super::commit::Flush = {
            let (db, log) = (db.clone(), log.clone());
            #[cfg(test)]
            let fail = fail_flush.clone();
            Box::new(move || {
                #[cfg(test)]
                if fail.load(std::sync::atomic::Ordering::SeqCst) {
                    return Err(StoreError::Io("injected flush failure".into()));
                }
                flush_db(&db, &log)
            })
        };
        let commit =
            GroupCommit::start(flush).map_err(|e| StoreError::Io(format!("cannot start the flusher thread: {e}")))?;
        Ok(SledStore {
            db,
            records,
            log,
            writer: Mutex::new(Writer::default()),
            commit,
            #[cfg(test)]
            fail_flush,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Writer> {
        self.writer.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Applies `ops` at once without a flush or the feed: the bulk path for filling a
    /// stopped broker's store (the load generator) and offline tools. Call
    /// [`SledStore::flush`] afterwards.
    pub fn apply_now(&self, ops: Vec<Op>) -> Result<(), StoreError> {
        // A single write is atomic on its own, and sled's batch path costs several times a
        // plain insert (`cargo bench --bench sled_write`).
        if let [op] = ops.as_slice() {
            return match op {
                Op::Put(k, v) => self.records.insert(k.as_slice(), v.as_slice()).map(|_| ()),
                Op::Delete(k) => self.records.remove(k.as_slice()).map(|_| ()),
            }
            .map_err(io);
        }
        let mut batch = sled::Batch::default();
        for op in ops {
            match op {
                Op::Put(k, v) => batch.insert(k, v),
                Op::Delete(k) => batch.remove(k),
            }
        }
        self.records.apply_batch(batch).map_err(io)
    }

    /// The first `limit` keys starting with `prefix`, in key order.
    pub fn keys_with_prefix(&self, prefix: &[u8], limit: usize) -> Result<Vec<Vec<u8>>, StoreError> {
        self.records.scan_prefix(prefix).keys().take(limit).map(|k| k.map(|k| k.to_vec()).map_err(io)).collect()
    }

    /// Makes every write so far durable, on the calling thread.
    pub fn flush(&self) -> Result<(), StoreError> {
        flush_db(&self.db, &self.log)
    }

    fn value(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.records.get(key).map_err(io)?.map(|v| v.to_vec()))
    }

    fn holds(&self, guard: &Guard) -> Result<bool, StoreError> {
        Ok(match guard {
            Guard::Absent(k) => self.records.get(k).map_err(io)?.is_none(),
            Guard::Unchanged(k, s) => self.records.get(k).map_err(io)?.is_some_and(|v| stamp(&v) == *s),
        })
    }

    /// Applies `changes` under the write lock `w` and tells the feeds; returns the revision.
    fn apply_locked(&self, w: &mut Writer, changes: Vec<Change>) -> Result<Revision, StoreError> {
        let ops = changes
            .iter()
            .map(|c| match &c.value {
                Some(v) => Op::Put(c.key.clone(), v.clone()),
                None => Op::Delete(c.key.clone()),
            })
            .collect();
        self.commit.note_write();
        self.apply_now(ops)?;
        w.revision += 1;
        let revision = w.revision;
        // Every feed hears every revision, with or without changes under its prefix, so a
        // barrier's revision is always reached.
        w.feeds.retain(|(prefix, tx)| {
            let mine: Vec<Change> = changes.iter().filter(|c| c.key.starts_with(prefix)).cloned().collect();
            tx.send(FeedEvent::Changes { revision, changes: mine }).is_ok()
        });
        Ok(revision)
    }

    async fn commit_durably(&self, guards: Vec<Guard>, ops: Vec<Op>) -> Result<Option<Revision>, StoreError> {
        let (revision, written) = {
            let mut w = self.lock();
            for g in &guards {
                if !self.holds(g)? {
                    return Ok(None);
                }
            }
            let mut changes = Vec::with_capacity(ops.len());
            for op in ops {
                let (key, value) = match op {
                    Op::Put(k, v) => (k, Some(v)),
                    Op::Delete(k) => (k, None),
                };
                let prev = self.value(&key)?;
                changes.push(Change { key, value, prev });
            }
            (self.apply_locked(&mut w, changes.clone())?, changes)
        };
        if let Err(e) = self.commit.durable().await {
            self.withdraw(written);
            return Err(e);
        }
        Ok(Some(revision))
    }

    /// Puts back what a commit whose flush failed replaced, where nothing changed it since,
    /// so nothing answered as failed stays (T-CREATE-6).
    fn withdraw(&self, written: Vec<Change>) {
        let mut w = self.lock();
        let mut undo = Vec::new();
        for c in written {
            if matches!(self.value(&c.key), Ok(v) if v == c.value) {
                undo.push(Change { key: c.key, value: c.prev, prev: c.value });
            }
        }
        if let Err(e) = self.apply_locked(&mut w, undo) {
            tracing::error!("cannot withdraw a change that failed to persist: {e}");
        }
    }
}

impl Store for SledStore {
    fn get<'a>(&'a self, key: &'a [u8]) -> StoreFuture<'a, Option<Versioned>> {
        Box::pin(async move {
            Ok(self.value(key)?.map(|value| {
                let stamp = stamp(&value);
                Versioned { value, stamp }
            }))
        })
    }

    fn get_many<'a>(&'a self, keys: &'a [Vec<u8>]) -> StoreFuture<'a, Vec<Option<Versioned>>> {
        Box::pin(async move {
            keys.iter()
                .map(|k| {
                    Ok(self.value(k)?.map(|value| {
                        let stamp = stamp(&value);
                        Versioned { value, stamp }
                    }))
                })
                .collect()
        })
    }

    fn scan_prefix<'a>(&'a self, prefix: &'a [u8]) -> StoreFuture<'a, Vec<Record>> {
        Box::pin(async move {
            self.records.scan_prefix(prefix).map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())).map_err(io)).collect()
        })
    }

    fn load<'a>(&'a self, prefix: &'a [u8], visit: &'a mut Visit<'_>) -> StoreFuture<'a, Revision> {
        Box::pin(async move {
            let revision = self.lock().revision;
            for item in self.records.scan_prefix(prefix) {
                let (k, v) = item.map_err(io)?;
                visit(&k, &v)?;
            }
            Ok(revision)
        })
    }

    fn commit(&self, guards: Vec<Guard>, ops: Vec<Op>) -> StoreFuture<'_, Option<Revision>> {
        Box::pin(self.commit_durably(guards, ops))
    }

    fn feed(&self, prefix: &[u8], after: Revision) -> Result<UnboundedReceiver<FeedEvent>, StoreError> {
        let mut w = self.lock();
        if w.revision != after {
            return Err(StoreError::Io(format!(
                "the sled store keeps no history: a feed must start at its revision {}, not {after}",
                w.revision
            )));
        }
        let (tx, rx) = unbounded_channel();
        w.feeds.push((prefix.to_vec(), tx));
        Ok(rx)
    }

    fn barrier(&self) -> StoreFuture<'_, Revision> {
        Box::pin(async move { Ok(self.lock().revision) })
    }

    fn settled(&self) -> StoreFuture<'_, ()> {
        Box::pin(self.commit.settled())
    }

    fn close(&self) -> StoreFuture<'_, ()> {
        Box::pin(async move { self.flush() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// T-PERSIST-2: a store written by a newer schema is refused.
    #[test]
    fn t_persist_2_newer_schema_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("store");
        SledStore::open(&path).unwrap().flush().unwrap();
        {
            let db = sled::open(&path).unwrap();
            db.open_tree("meta").unwrap().insert(SCHEMA_KEY, &(SCHEMA_VERSION + 1).to_be_bytes()).unwrap();
            db.flush().unwrap();
        }
        match SledStore::open(&path) {
            Err(StoreError::NewerSchema { found, .. }) => assert_eq!(found, SCHEMA_VERSION + 1),
            Err(e) => panic!("unexpected error {e}"),
            Ok(_) => panic!("a newer schema must be refused"),
        }
    }

    /// T-PERSIST-3 and T-CLUSTER-2 on sled: the trait's behaviour, shared with etcd.
    #[tokio::test]
    async fn t_persist_3_the_store_contract_holds_for_sled() {
        let tmp = tempfile::tempdir().unwrap();
        let store = SledStore::open(&tmp.path().join("store")).unwrap();
        crate::store::conformance::check(&store).await;
    }

    /// T-PERSIST-1: concurrent writers each see their write durable and survive a reopen.
    #[tokio::test]
    async fn t_persist_1_group_commit_covers_every_writer() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("s");
        {
            let store = Arc::new(SledStore::open(&path).unwrap());
            let mut tasks = Vec::new();
            for i in 0..50u32 {
                let store = store.clone();
                tasks.push(tokio::spawn(async move {
                    crate::store::write(store.as_ref(), vec![Op::Put(i.to_be_bytes().to_vec(), b"v".to_vec())]).await
                }));
            }
            for t in tasks {
                t.await.unwrap().unwrap();
            }
        }
        // sled's own background thread may hold the file lock a moment longer.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let reopened = loop {
            match SledStore::open(&path) {
                Ok(s) => break s,
                Err(e) if std::time::Instant::now() > deadline => panic!("cannot reopen the store: {e}"),
                Err(_) => std::thread::sleep(std::time::Duration::from_millis(20)),
            }
        };
        assert_eq!(reopened.scan_prefix(b"").await.unwrap().len(), 50);
    }

    /// T-CREATE-6, T-PERSIST-1: a commit whose flush fails is withdrawn, and the feed says so.
    #[tokio::test]
    async fn t_persist_1_failed_flush_is_withdrawn() {
        let tmp = tempfile::tempdir().unwrap();
        let store = SledStore::open(&tmp.path().join("s")).unwrap();
        let mut feed = store.feed(b"k", 0).unwrap();
        crate::store::write(&store, vec![Op::Put(b"k1".to_vec(), b"one".to_vec())]).await.unwrap();
        store.fail_flush.store(true, std::sync::atomic::Ordering::SeqCst);
        let e = crate::store::write(&store, vec![Op::Put(b"k1".to_vec(), b"two".to_vec())]).await;
        assert!(e.is_err(), "the failed flush is reported");
        store.fail_flush.store(false, std::sync::atomic::Ordering::SeqCst);
        assert_eq!(store.get(b"k1").await.unwrap().map(|v| v.value), Some(b"one".to_vec()), "withdrawn");
        let mut last = None;
        while let Ok(FeedEvent::Changes { changes, .. }) = feed.try_recv() {
            last = changes.last().cloned();
        }
        assert_eq!(last.and_then(|c| c.value), Some(b"one".to_vec()), "the feed ends on the value kept");
    }
}
