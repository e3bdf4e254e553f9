//! The embedded sled store.

use std::path::Path;

use super::{Op, Record, Store, StoreError, Visit};

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
    /// flush a disk's write cache; [`Store::flush`] calls `fdatasync` on this file as well,
    /// so an acknowledged change also survives a power loss.
    log: std::fs::File,
}

fn io(e: sled::Error) -> StoreError {
    StoreError::Io(e.to_string())
}

impl SledStore {
    /// Opens (or creates) the database at `path` and checks its schema version.
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
        let log = std::fs::File::open(path.join("db"))
            .map_err(|e| StoreError::Io(format!("cannot open sled's log file {}: {e}", path.join("db").display())))?;
        Ok(SledStore { db, records, log })
    }
}

impl Store for SledStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.records.get(key).map_err(io)?.map(|v| v.to_vec()))
    }

    fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<Record>, StoreError> {
        self.records.scan_prefix(prefix).map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())).map_err(io)).collect()
    }

    fn scan_range(&self, start: &[u8], end: &[u8], limit: usize) -> Result<Vec<Record>, StoreError> {
        if start >= end {
            return Ok(Vec::new());
        }
        self.records
            .range(start..end)
            .take(limit)
            .map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())).map_err(io))
            .collect()
    }

    fn for_each_prefix(&self, prefix: &[u8], f: &mut Visit<'_>) -> Result<(), StoreError> {
        for item in self.records.scan_prefix(prefix) {
            let (k, v) = item.map_err(io)?;
            f(&k, &v)?;
        }
        Ok(())
    }

    fn any_with_prefix(&self, prefix: &[u8]) -> Result<bool, StoreError> {
        Ok(self.records.scan_prefix(prefix).next().transpose().map_err(io)?.is_some())
    }

    fn apply(&self, ops: Vec<Op>) -> Result<(), StoreError> {
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

    fn put_new(&self, key: &[u8], value: Vec<u8>) -> Result<bool, StoreError> {
        let swapped = self.records.compare_and_swap(key, None as Option<&[u8]>, Some(value)).map_err(io)?;
        Ok(swapped.is_ok())
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.db.flush().map_err(io)?;
        self.log.sync_data().map_err(|e| StoreError::Io(format!("fdatasync of the store failed: {e}")))
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

    /// T-PERSIST-3: batches are atomic, prefixes scan in key order, data survives reopen.
    #[test]
    fn t_persist_3_batches_scans_and_reopen() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("store");
        {
            let s = SledStore::open(&path).unwrap();
            s.apply_durable(vec![
                Op::Put(b"a/2".to_vec(), b"two".to_vec()),
                Op::Put(b"a/1".to_vec(), b"one".to_vec()),
                Op::Put(b"b/1".to_vec(), b"other".to_vec()),
            ])
            .unwrap();
            s.apply_durable(vec![Op::Delete(b"b/1".to_vec()), Op::Delete(b"missing".to_vec())]).unwrap();
        }
        let s = SledStore::open(&path).unwrap();
        assert_eq!(
            s.scan_prefix(b"a/").unwrap(),
            vec![(b"a/1".to_vec(), b"one".to_vec()), (b"a/2".to_vec(), b"two".to_vec())]
        );
        assert_eq!(s.get(b"a/2").unwrap(), Some(b"two".to_vec()));
        assert_eq!(s.scan_range(b"a/", b"a/2", 10).unwrap(), vec![(b"a/1".to_vec(), b"one".to_vec())]);
        assert_eq!(s.scan_range(b"a/", b"b", 1).unwrap().len(), 1, "limited");
        assert!(s.scan_range(b"b", b"a", 10).unwrap().is_empty());
        assert!(!s.any_with_prefix(b"b/").unwrap());
        assert!(s.any_with_prefix(b"a/").unwrap());
        assert!(!s.put_new(b"a/1", b"other".to_vec()).unwrap(), "an existing key is kept");
        assert!(s.put_new(b"a/3", b"three".to_vec()).unwrap());
        assert_eq!((s.get(b"a/1").unwrap(), s.get(b"a/3").unwrap()), (Some(b"one".to_vec()), Some(b"three".to_vec())));
    }
}
