//! The data directory: its permissions, its exclusive lock and `meta.properties`
//! (SPEC §6.4, T-ZERO-3, T-ZERO-5).

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::fsutil::atomic_write;
use crate::{ids, properties};

/// A reason the broker cannot start on this data directory (exit code 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct DataDirError(pub String);

/// An open, locked data directory. The lock is held until this value is dropped.
#[derive(Debug)]
pub struct DataDir {
    path: PathBuf,
    _lock: File,
    /// The cluster id stored in `meta.properties`.
    pub cluster_id: String,
}

const META_VERSION: &str = "1";

impl DataDir {
    /// Creates (mode 0700) or opens the directory, takes its lock and reads or writes
    /// `meta.properties`, checking that the stored node id is `node_id`.
    pub fn open(path: &Path, node_id: i32) -> Result<DataDir, DataDirError> {
        Self::open_with(path, Some(node_id))
    }

    /// Opens the directory of a broker that has started before, whatever its node id
    /// (for offline tools such as `ktb user add --data-dir`).
    pub fn open_existing(path: &Path) -> Result<DataDir, DataDirError> {
        if !path.join("meta.properties").exists() {
            return Err(DataDirError(format!(
                "{} is not a ktb data directory (no meta.properties); start the broker once to create it",
                path.display()
            )));
        }
        Self::open_with(path, None)
    }

    fn open_with(path: &Path, node_id: Option<i32>) -> Result<DataDir, DataDirError> {
        let shown = path.display();
        let io = |what: &str, e: std::io::Error| DataDirError(format!("data dir {shown}: cannot {what}: {e}"));
        if !path.exists() {
            fs::create_dir_all(path).map_err(|e| io("create it", e))?;
            fs::set_permissions(path, fs::Permissions::from_mode(0o700)).map_err(|e| io("set its mode", e))?;
        }
        let meta = fs::metadata(path).map_err(|e| io("read it", e))?;
        if !meta.is_dir() {
            return Err(DataDirError(format!("data dir {shown} exists and is not a directory")));
        }
        check_private(path, meta.permissions().mode(), "chmod 700")?;

        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path.join("lock"))
            .map_err(|e| io("open its lock file", e))?;
        if lock.try_lock().is_err() {
            return Err(DataDirError(format!(
                "data dir {shown} is in use by another ktb process; stop it first, or give this one its own \
                 ktb.data.dir"
            )));
        }
        let mut lock = lock;
        let _ = lock.set_len(0).and_then(|_| writeln!(lock, "{}", std::process::id()));

        let cluster_id = read_or_create_meta(&path.join("meta.properties"), node_id)?;
        Ok(DataDir { path: path.to_owned(), _lock: lock, cluster_id })
    }

    /// This data dir's instance id in `meta.properties` (created on first use): a broker
    /// restarting on the same directory reclaims its own cluster registration with it
    /// (T-CLUSTER-4).
    pub fn instance_id(&self) -> Result<String, DataDirError> {
        let path = self.path.join("meta.properties");
        let text =
            std::fs::read_to_string(&path).map_err(|e| DataDirError(format!("cannot read {}: {e}", path.display())))?;
        if let Some(id) = text.lines().find_map(|l| l.strip_prefix("instance.id=")).filter(|id| !id.is_empty()) {
            return Ok(id.to_owned());
        }
        let id = uuid::Uuid::new_v4().to_string();
        let updated = format!("{}{}instance.id={id}\n", text, if text.ends_with('\n') { "" } else { "\n" });
        atomic_write(&path, updated.as_bytes(), 0o600)
            .map_err(|e| DataDirError(format!("cannot write {}: {e}", path.display())))?;
        Ok(id)
    }

    /// The directory itself.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where the embedded store keeps its files.
    pub fn store_path(&self) -> PathBuf {
        self.path.join("store")
    }

    /// The key of the fake salts shown for unknown names and of token credentials'
    /// salts (T-REVEAL-1): 32 random bytes in `fake-salt.key` (0600), generated on first
    /// use, so the same name gets the same salt across restarts.
    pub fn fake_salt_key(&self) -> Result<[u8; 32], DataDirError> {
        let path = self.path.join(FAKE_SALT_FILE);
        let shown = path.display();
        match fs::read(&path) {
            Ok(bytes) => {
                let meta = fs::metadata(&path).map_err(|e| DataDirError(format!("{shown}: {e}")))?;
                check_private(&path, meta.permissions().mode(), "chmod 600")?;
                bytes.try_into().map_err(|_| {
                    DataDirError(format!("{shown} is not a 32-byte key; remove it and ktb generates a new one"))
                })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut key = [0u8; 32];
                getrandom::fill(&mut key).map_err(|e| DataDirError(format!("the OS has no randomness: {e}")))?;
                atomic_write(&path, &key, 0o600).map_err(|e| DataDirError(format!("cannot write {shown}: {e}")))?;
                Ok(key)
            }
            Err(e) => Err(DataDirError(format!("cannot read {shown}: {e}"))),
        }
    }

    /// Makes every directory below the data dir 0700 and every file 0600 (T-REVEAL-3):
    /// the store's files are created by sled with the process umask, and stores written
    /// by earlier builds are world-readable.
    pub fn make_private(&self) -> Result<(), DataDirError> {
        fn walk(dir: &Path) -> std::io::Result<()> {
            for entry in fs::read_dir(dir)? {
                let entry = entry?;
                let kind = entry.file_type()?;
                let mode = if kind.is_dir() {
                    0o700
                } else if kind.is_file() {
                    0o600
                } else {
                    continue;
                };
                let path = entry.path();
                if entry.metadata()?.permissions().mode() & 0o777 != mode {
                    fs::set_permissions(&path, fs::Permissions::from_mode(mode))?;
                }
                if kind.is_dir() {
                    walk(&path)?;
                }
            }
            Ok(())
        }
        fs::set_permissions(&self.path, fs::Permissions::from_mode(0o700))
            .and_then(|_| walk(&self.path))
            .map_err(|e| DataDirError(format!("cannot make {} private: {e}", self.path.display())))
    }
}

/// The file of the fake-salt key (T-REVEAL-1).
pub const FAKE_SALT_FILE: &str = "fake-salt.key";

/// Refuses a file or directory that group or others can read (T-ZERO-3).
pub fn check_private(path: &Path, mode: u32, fix: &str) -> Result<(), DataDirError> {
    if mode & 0o044 != 0 {
        return Err(DataDirError(format!(
            "{} is readable by group or others (mode {:o}); fix it with: {fix} {}",
            path.display(),
            mode & 0o777,
            path.display()
        )));
    }
    Ok(())
}

fn read_or_create_meta(path: &Path, node_id: Option<i32>) -> Result<String, DataDirError> {
    let shown = path.display();
    match fs::read_to_string(path) {
        Ok(text) => {
            let pairs = properties::parse(&text).map_err(|e| DataDirError(format!("{shown}: {e}")))?;
            let get = |k: &str| pairs.iter().rev().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
            if get("version") != Some(META_VERSION) {
                return Err(DataDirError(format!(
                    "{shown}: unsupported version {:?}; this ktb reads version {META_VERSION}",
                    get("version").unwrap_or("(missing)")
                )));
            }
            let stored: i32 = get("node.id")
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| DataDirError(format!("{shown}: node.id is missing or not a number")))?;
            if let Some(node_id) = node_id.filter(|n| *n != stored) {
                return Err(DataDirError(format!(
                    "{shown} belongs to node.id={stored}, but node.id={node_id} is configured; set node.id={stored} \
                     or use another ktb.data.dir"
                )));
            }
            match get("cluster.id") {
                Some(id) if !id.is_empty() => Ok(id.to_owned()),
                _ => Err(DataDirError(format!("{shown}: cluster.id is missing"))),
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let node_id = node_id.unwrap_or(1);
            let cluster_id = ids::random_kafka_id();
            let text = format!("version={META_VERSION}\ncluster.id={cluster_id}\nnode.id={node_id}\n");
            atomic_write(path, text.as_bytes(), 0o600)
                .map_err(|e| DataDirError(format!("cannot write {shown}: {e}")))?;
            Ok(cluster_id)
        }
        Err(e) => Err(DataDirError(format!("cannot read {shown}: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// T-ZERO-5: the cluster id is made once and kept; a different node id is refused.
    #[test]
    fn t_zero_5_cluster_id_persists_and_node_id_must_match() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        let first = DataDir::open(&dir, 1).unwrap().cluster_id;
        assert_eq!(first.len(), 22);
        assert_eq!(fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700);
        let text = fs::read_to_string(dir.join("meta.properties")).unwrap();
        assert!(
            text.contains(&format!("cluster.id={first}")) && text.contains("node.id=1") && text.contains("version=1")
        );
        assert_eq!(DataDir::open(&dir, 1).unwrap().cluster_id, first);
        let e = DataDir::open(&dir, 2).unwrap_err().0;
        assert!(e.contains("node.id=1") && e.contains("node.id=2"), "{e}");
    }

    /// SPEC §6.4: a second opener of the same data dir fails fast.
    #[test]
    fn data_dir_lock_is_exclusive() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        let held = DataDir::open(&dir, 1).unwrap();
        let e = DataDir::open(&dir, 1).unwrap_err().0;
        assert!(e.contains("in use by another ktb process"), "{e}");
        drop(held);
        DataDir::open(&dir, 1).unwrap();
    }

    /// T-ZERO-3: a data dir readable by others is refused with a fix hint.
    #[test]
    fn t_zero_3_world_readable_data_dir_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        fs::create_dir(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        let e = DataDir::open(&dir, 1).unwrap_err().0;
        assert!(e.contains("chmod 700"), "{e}");
    }
}
