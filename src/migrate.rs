//! `ktb store migrate`: copies a stopped broker's sled store into an etcd prefix, so a
//! single broker can become the first of a cluster without losing a user or a token
//! (SPEC §9.7, T-CLUSTER-1).
//!
//! Every record is copied as it is, with what a cluster shares besides them: the data
//! dir's cluster id (clients keep seeing the same cluster), its fake-salt key (unknown
//! names keep their salts, T-REVEAL-1) and the fingerprint of the master secret that
//! made the tokens (T-CLUSTER-5), so a broker started with another secret is refused
//! instead of refusing every token. The secret itself is never written.
//!
//! The copy is guarded key by key (absent, or already holding the same value), so a run
//! that stopped half-way can be run again, and a prefix already used by something else
//! is refused without a write.

use std::collections::BTreeMap;
use std::path::Path;

use crate::broker::{CLUSTER_ID_KEY, FAKE_SALT_KEY};
use crate::config::{Config, StoreKind};
use crate::datadir::DataDir;
use crate::store::etcd::EtcdStore;
use crate::store::{Guard, Op, SledStore, Store};
use crate::tokens::keyring::KEYRING_FILE;
use crate::tokens::{KeySource, SECRET_FILE, remove_legacy_index_keys};

/// At most this many keys, and about this many bytes, per transaction (etcd's default
/// limits are 128 operations and 1.5 MiB).
const BATCH_KEYS: usize = 100;
const BATCH_BYTES: usize = 1 << 20;

/// What a migration copied.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Migrated {
    /// User credential records (one per user and mechanism).
    pub credentials: usize,
    /// Tokens.
    pub tokens: usize,
    /// Records written to etcd.
    pub written: usize,
    /// Records that were already in etcd with the same value (an earlier, interrupted run).
    pub already_there: usize,
    /// Whether the master secret's fingerprint was published (tokens were enabled).
    pub fingerprint: bool,
    /// The secret the tokens were made with came from the data dir's generated file.
    pub generated_secret: bool,
    /// Whether the keys are the data dir's keyring (brokers need a copy of it).
    pub data_dir_keyring: bool,
}

/// Copies the sled store of the stopped broker in `data_dir` into the etcd prefix of
/// `config` (which must say `ktb.store=etcd`). Fails without writing when the prefix
/// holds records the store does not, or the same keys with other values.
pub async fn sled_to_etcd(config: &Config, data_dir: &Path) -> Result<Migrated, String> {
    let StoreKind::Etcd(settings) = &config.store else {
        return Err("the destination is not etcd (ktb.store=etcd)".into());
    };
    let dir = DataDir::open_existing(data_dir).map_err(|e| e.0)?;
    let sled = SledStore::open(&dir.store_path())
        .map_err(|e| format!("cannot open the store in {}: {e}", data_dir.display()))?;
    remove_legacy_index_keys(&sled).map_err(|e| format!("cannot read the store: {e}"))?;
    let records = sled.scan_prefix(b"").await.map_err(|e| format!("cannot read the store: {e}"))?;

    let mut migrated = Migrated::default();
    for (key, _) in &records {
        if key.starts_with(crate::tokens::TOKEN_PREFIX) {
            migrated.tokens += 1;
        } else if key.starts_with(crate::auth::users::PREFIX) {
            migrated.credentials += 1;
        }
    }
    let mut wanted: BTreeMap<Vec<u8>, Vec<u8>> = records.into_iter().collect();
    wanted.insert(FAKE_SALT_KEY.to_vec(), dir.fake_salt_key().map_err(|e| e.0)?.to_vec());
    for (key_id, fingerprint) in fingerprints(config, &dir, &mut migrated).await? {
        wanted.insert(crate::cluster::fingerprint_key(&key_id), fingerprint.into_bytes());
        migrated.fingerprint = true;
    }

    wanted.insert(CLUSTER_ID_KEY.to_vec(), dir.cluster_id.clone().into_bytes());

    let timeout = std::time::Duration::from_millis(config.etcd_request_timeout_ms.max(1) as u64);
    let etcd = EtcdStore::connect(settings, timeout)
        .await
        .map_err(|e| format!("cannot use etcd at {}: {e}", settings.endpoints.join(",")))?;
    let present = etcd.scan_prefix(b"").await.map_err(|e| format!("cannot read etcd: {e}"))?;
    let mut foreign = Vec::new();
    for (key, value) in present {
        match wanted.get(&key) {
            Some(v) if *v == value => {
                wanted.remove(&key);
                migrated.already_there += 1;
            }
            _ if crate::store::etcd::OWN_KEYS.contains(&key.as_slice()) => {}
            _ => foreign.push(String::from_utf8_lossy(&key).into_owned()),
        }
    }
    if !foreign.is_empty() {
        return Err(format!(
            "the etcd prefix {prefix:?} is in use: it holds {n} record(s) that differ from {dir}'s (for example \
             {first:?}); nothing was written. Migrate into an empty prefix (--prefix), or, if nothing uses it, \
             empty it with `etcdctl del --prefix {prefix}`",
            prefix = settings.prefix,
            n = foreign.len(),
            dir = data_dir.display(),
            first = foreign[0],
        ));
    }

    // Records first, the cluster id last: a broker that finds the cluster id finds
    // everything else too.
    let last = wanted.remove_entry(CLUSTER_ID_KEY);
    let pending = wanted.into_iter().chain(last);
    let mut batch: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    let mut bytes = 0;
    for (key, value) in pending {
        migrated.written += 1;
        if batch.len() == BATCH_KEYS || bytes + key.len() + value.len() > BATCH_BYTES {
            put_absent(&etcd, std::mem::take(&mut batch)).await?;
            bytes = 0;
        }
        bytes += key.len() + value.len();
        batch.push((key, value));
    }
    put_absent(&etcd, batch).await?;
    // Everything is committed; a failure to close the connection changes nothing.
    let _ = etcd.close().await;
    Ok(migrated)
}

/// The fingerprints of the keys that made the store's tokens (each key id as shown), if
/// tokens are enabled. A generated secret is not generated here: without one the broker
/// never had tokens enabled, and there is none to keep.
async fn fingerprints(
    config: &Config,
    dir: &DataDir,
    migrated: &mut Migrated,
) -> Result<Vec<(String, String)>, String> {
    let source = KeySource::from_config(config, dir.path())?;
    if let KeySource::DataDir(d) = &source {
        match (d.join(KEYRING_FILE).exists(), d.join(SECRET_FILE).exists()) {
            (false, false) => return Ok(Vec::new()),
            (false, true) => migrated.generated_secret = true,
            (true, _) => migrated.data_dir_keyring = true,
        }
    }
    match source.load()? {
        Some(ring) => crate::rotation::fingerprints_of(&ring).await,
        None => Ok(Vec::new()),
    }
}

async fn put_absent(etcd: &EtcdStore, batch: Vec<(Vec<u8>, Vec<u8>)>) -> Result<(), String> {
    if batch.is_empty() {
        return Ok(());
    }
    let guards = batch.iter().map(|(k, _)| Guard::Absent(k.clone())).collect();
    let ops = batch.into_iter().map(|(k, v)| Op::Put(k, v)).collect();
    match etcd.commit(guards, ops).await {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err("another writer changed the etcd prefix during the migration; run it again once \
                         nothing else writes there (a broker already started on it?)"
            .into()),
        Err(e) => Err(format!(
            "cannot write to etcd: {e}; what was written stays, and running the migration \
                               again completes it"
        )),
    }
}
