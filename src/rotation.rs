//! Master-key rotation on a running broker (SPEC §9.4, T-ROTATE-3..6).
//!
//! The keys come from a [`KeySource`]; they are read again on SIGHUP and when the
//! keyring file changes (checked once a second), and the tokens are indexed again for the
//! keys that came or went. Alone, new tokens use the keyring's last key. On etcd each
//! broker publishes its keys' fingerprints under its lease (`keys/<node.id>/<key_id>`),
//! and the key new tokens use is the cluster's `active_key`, which a broker moves forward
//! by compare-and-swap only once every live broker has published that key with the same
//! fingerprint: no broker mints a token another live broker cannot check.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tracing::{error, info, warn};

use crate::cluster::{Cluster, ClusterError, PublishedKeys};
use crate::tokens::keyring::{file_stamp, shown_id, stored_id};
use crate::tokens::{KeySource, Keyring, MasterSecret, Tokens};

/// How often the keyring file is looked at, and the cluster's active key reconsidered.
const PERIOD: Duration = Duration::from_secs(1);

/// A file's identity and change time, as [`file_stamp`] reads it.
type Stamp = Option<(u64, u64, u64, i64, i64)>;

/// The broker's master keys over time.
pub struct Rotation {
    source: KeySource,
    tokens: Arc<Tokens>,
    cluster: Arc<Cluster>,
    /// Fingerprints already computed (600,000 rounds each): key id, a copy of the key, and
    /// its fingerprint.
    fingerprints: Mutex<Vec<(String, MasterSecret, String)>>,
    /// The keyring file as last read.
    stamp: Mutex<Stamp>,
    /// One reload or cluster round at a time.
    reloading: tokio::sync::Mutex<()>,
    /// Set while the cluster's active key is missing here (logged once).
    missing_active: AtomicBool,
}

/// One key in `ktb secret status`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct KeyStatus {
    /// The key id as shown (`default` for the single secret).
    pub key_id: String,
    /// `hex(PBKDF2-HMAC-SHA256(key, …))` (§9.7); `None` for a key this keyring lacks.
    pub fingerprint: Option<String>,
    /// True when this keyring holds the key.
    pub in_keyring: bool,
    /// True for the key new tokens use.
    pub active: bool,
    /// How many live tokens were made with it; `None` when the store was not read.
    pub live_tokens: Option<usize>,
    /// The live brokers that hold it, on etcd; `None` alone.
    pub brokers: Option<Vec<i32>>,
}

/// What `ktb secret status` shows.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Status {
    /// The key new tokens use, as shown.
    pub active_key: Option<String>,
    /// Every key of the keyring, oldest first, then keys only tokens still name.
    pub keys: Vec<KeyStatus>,
}

/// Builds the status: the keyring's keys (with fingerprints `fps`, as shown), then the key
/// ids tokens record that the keyring lacks. `per_key` counts by stored id.
pub fn assemble(
    fps: &[(String, String)],
    active: Option<&str>,
    per_key: Option<&BTreeMap<String, usize>>,
    published: Option<&PublishedKeys>,
) -> Status {
    let holders = |shown: &str| {
        published.map(|p| p.iter().filter(|(_, keys)| keys.contains_key(shown)).map(|(b, _)| *b).collect())
    };
    let count = |shown: &str| per_key.map(|c| c.get(stored_id(shown)).copied().unwrap_or(0));
    let mut keys: Vec<KeyStatus> = fps
        .iter()
        .map(|(id, fp)| KeyStatus {
            key_id: id.clone(),
            fingerprint: Some(fp.clone()),
            in_keyring: true,
            active: active == Some(id.as_str()),
            live_tokens: count(id),
            brokers: holders(id),
        })
        .collect();
    for (stored, n) in per_key.into_iter().flatten() {
        let shown = shown_id(stored);
        if *n > 0 && !fps.iter().any(|(id, _)| id == shown) {
            keys.push(KeyStatus {
                key_id: shown.to_owned(),
                fingerprint: None,
                in_keyring: false,
                active: false,
                live_tokens: Some(*n),
                brokers: holders(shown),
            });
        }
    }
    Status { active_key: active.map(str::to_owned), keys }
}

/// The fingerprint of every key of `ring`, as shown, computed on a blocking thread.
pub async fn fingerprints_of(ring: &Keyring) -> Result<Vec<(String, String)>, String> {
    let keys: Vec<(String, MasterSecret)> =
        ring.keys().iter().map(|k| (k.id.clone(), MasterSecret::new_from(&k.secret))).collect();
    tokio::task::spawn_blocking(move || {
        keys.iter().map(|(id, s)| (shown_id(id).to_owned(), s.fingerprint(id))).collect::<Vec<_>>()
    })
    .await
    .map_err(|e| format!("the fingerprint task failed: {e}"))
}

/// The key new tokens should use: the newest key of `ring` that every broker of `live`
/// holds with the same fingerprint (`mine` are this broker's, by shown id), never older
/// than the cluster's `active` key. `None` when no key qualifies.
fn choose<'a>(
    ring: &'a Keyring,
    mine: &BTreeMap<String, String>,
    live: &[i32],
    published: &PublishedKeys,
    active: Option<&str>,
) -> Option<&'a str> {
    let floor = active.and_then(|a| ring.position(stored_id(a))).unwrap_or(0);
    ring.keys().iter().enumerate().rev().take_while(|(i, _)| *i >= floor).map(|(_, k)| k).find_map(|k| {
        let shown = shown_id(&k.id);
        let fp = mine.get(shown)?;
        live.iter().all(|b| published.get(b).and_then(|keys| keys.get(shown)) == Some(fp)).then_some(k.id.as_str())
    })
}

impl Rotation {
    /// The rotation of a broker whose tokens were opened with `source`'s keys. On etcd
    /// the keys are checked against the cluster first (T-CLUSTER-5, T-ROTATE-4): a key
    /// whose fingerprint differs from the cluster's, or a missing key that live tokens use
    /// or another live broker holds (the active key included), refuse the start.
    pub async fn start(
        source: KeySource,
        tokens: Arc<Tokens>,
        cluster: Arc<Cluster>,
        now: i64,
    ) -> Result<Arc<Rotation>, ClusterError> {
        let rotation = Arc::new(Rotation {
            stamp: Mutex::new(source.watched().and_then(|p| file_stamp(&p))),
            source,
            tokens,
            cluster,
            fingerprints: Mutex::new(Vec::new()),
            reloading: tokio::sync::Mutex::new(()),
            missing_active: AtomicBool::new(false),
        });
        if let Some(ring) = rotation.tokens.keyring() {
            info!(key_ids = %ring.describe(), "master keys loaded");
            if rotation.cluster.clustered() {
                let fps = rotation.fingerprints(&ring).await.map_err(ClusterError)?;
                let per_key = rotation.tokens.tokens_per_key(now);
                let (live, others) = rotation.others().await?;
                for (stored, n) in per_key.iter().filter(|(_, n)| **n > 0) {
                    let shown = shown_id(stored);
                    let holders: Vec<i32> =
                        others.iter().filter(|(_, keys)| keys.contains_key(shown)).map(|(b, _)| *b).collect();
                    if ring.get(stored).is_none() && !holders.is_empty() {
                        return Err(ClusterError(format!(
                            "{n} live tokens use master key {shown}, which brokers {holders:?} hold and this broker's \
                             keyring lacks; add the key, or remove it from every broker first (with a reload, no \
                             restart is needed)"
                        )));
                    }
                }
                let active = rotation.check(&ring, &fps, &per_key, &others).await?;
                // Until the cluster's round has run: the active key, or the newest that every
                // registered broker holds, or the single secret's (what brokers of earlier
                // releases use); with none of them, Create answers 7.
                let mine: BTreeMap<String, String> = fps.into_iter().collect();
                let mut published = others;
                let me = rotation.cluster.node_id();
                published.insert(me, mine.clone());
                let mut live = live;
                live.push(me);
                let minting = match active.as_deref().filter(|a| ring.get(stored_id(a)).is_some()) {
                    Some(a) => Some(stored_id(a).to_owned()),
                    None => {
                        choose(&ring, &mine, &live, &published, None).or(ring.get("").map(|_| "")).map(str::to_owned)
                    }
                };
                rotation.tokens.set_minting_key(minting.as_deref());
            }
        }
        Ok(rotation)
    }

    /// Once the broker is registered: publishes its keys and settles the active key (on
    /// etcd), then follows the keyring file and, on etcd, the cluster.
    pub async fn serve(self: &Arc<Self>) {
        if self.cluster.clustered()
            && let Err(e) = self.round().await
        {
            warn!("cannot settle the cluster's active master key yet: {e}");
        }
        let watched = self.source.watched();
        if watched.is_none() && !self.cluster.clustered() {
            return;
        }
        tokio::spawn(follow(Arc::downgrade(self)));
    }

    /// Reads the keys again (SIGHUP, a changed keyring file) and applies them. `Ok(None)`
    /// when the source has nothing to reload. A keyring that cannot be read, or on etcd
    /// one that conflicts with the cluster, is refused and the keys in force stay.
    pub async fn reload(&self, why: &str) -> Result<Option<crate::tokens::KeyChange>, String> {
        let _one = self.reloading.lock().await;
        *self.stamp.lock().unwrap_or_else(|p| p.into_inner()) = self.source.watched().and_then(|p| file_stamp(&p));
        let Some(ring) = self.source.reload()? else { return Ok(None) };
        if self.cluster.clustered() {
            self.check_reload(&ring).await.map_err(|e| e.0)?;
        }
        let minting = (!self.cluster.clustered()).then(|| ring.newest().id.clone());
        let ids = ring.describe();
        let change = self.tokens.replace_keys(ring, minting).await;
        info!(
            key_ids = %ids,
            added = ?change.added,
            removed = ?change.removed,
            changed = ?change.changed,
            tokens_indexed = change.reindexed,
            took_ms = change.took.as_millis() as u64,
            "master keys reloaded ({why})"
        );
        if !change.removed.is_empty() {
            warn!(removed = ?change.removed, "tokens made with the removed master keys are refused from now on");
        }
        if self.cluster.clustered()
            && let Err(e) = self.round_locked().await
        {
            warn!("cannot settle the cluster's active master key yet: {e}");
        }
        Ok(Some(change))
    }

    /// On etcd, before `ring` replaces the keys in force: checks it against the cluster;
    /// keys it drops are unpublished first and the check made again, so no broker moves
    /// the active key to a key this broker is about to drop.
    async fn check_reload(&self, ring: &Keyring) -> Result<(), ClusterError> {
        let now = crate::clock::Clock::now_ms(&crate::clock::SystemClock);
        let fps = self.fingerprints(ring).await.map_err(ClusterError)?;
        let per_key = self.tokens.tokens_per_key(now);
        let (_, others) = self.others().await?;
        self.check(ring, &fps, &per_key, &others).await?;
        let Some(old) = self.tokens.keyring() else { return Ok(()) };
        let old_fps = self.fingerprints(&old).await.map_err(ClusterError)?;
        let kept: Vec<(String, String)> =
            old_fps.iter().filter(|(id, _)| ring.get(stored_id(id)).is_some()).cloned().collect();
        if kept.len() == old_fps.len() {
            return Ok(());
        }
        self.cluster.publish_keys(&kept).await?;
        let (_, others) = self.others().await?;
        if let Err(e) = self.check(ring, &fps, &per_key, &others).await {
            let _ = self.cluster.publish_keys(&old_fps).await;
            return Err(e);
        }
        Ok(())
    }

    /// The keys' status: fingerprints, the active key, live tokens per key and, on etcd,
    /// which live brokers hold which keys.
    pub async fn status(&self, now: i64) -> Result<Status, String> {
        let Some(ring) = self.tokens.keyring() else { return Ok(assemble(&[], None, None, None)) };
        let fps = self.fingerprints(&ring).await?;
        let per_key = self.tokens.tokens_per_key(now);
        let published = match self.cluster.clustered() {
            true => {
                let live = self.cluster.registered_ids().await.map_err(|e| e.0)?;
                Some(self.cluster.published_keys(&live).await.map_err(|e| e.0)?)
            }
            false => None,
        };
        let minting = self.tokens.minting_key();
        Ok(assemble(&fps, minting.as_deref().map(shown_id), Some(&per_key), published.as_ref()))
    }

    /// The fingerprints of `ring`'s keys, as shown, from the cache or computed; the cache
    /// keeps the keys of `ring` only.
    async fn fingerprints(&self, ring: &Keyring) -> Result<Vec<(String, String)>, String> {
        let cached = |id: &str, key: &MasterSecret| {
            let cache = self.fingerprints.lock().unwrap_or_else(|p| p.into_inner());
            cache.iter().find(|(i, k, _)| i == id && k.same_as(key)).map(|(_, _, fp)| fp.clone())
        };
        let mut out = Vec::with_capacity(ring.keys().len());
        let mut fresh = Vec::new();
        for k in ring.keys() {
            let fp = match cached(&k.id, &k.secret) {
                Some(fp) => fp,
                None => {
                    let (id, key) = (k.id.clone(), MasterSecret::new_from(&k.secret));
                    let fp = tokio::task::spawn_blocking(move || key.fingerprint(&id))
                        .await
                        .map_err(|e| format!("the fingerprint task failed: {e}"))?;
                    fresh.push((k.id.clone(), MasterSecret::new_from(&k.secret), fp.clone()));
                    fp
                }
            };
            out.push((shown_id(&k.id).to_owned(), fp));
        }
        let mut cache = self.fingerprints.lock().unwrap_or_else(|p| p.into_inner());
        cache.retain(|(i, k, _)| ring.get(i).is_some_and(|now| now.same_as(k)));
        cache.extend(fresh);
        Ok(out)
    }

    /// The brokers registered now other than this one, and the keys they published.
    async fn others(&self) -> Result<(Vec<i32>, PublishedKeys), ClusterError> {
        let me = self.cluster.node_id();
        let live: Vec<i32> = self.cluster.registered_ids().await?.into_iter().filter(|b| *b != me).collect();
        let published = self.cluster.published_keys(&live).await?;
        Ok((live, published))
    }

    /// Checks `ring` against the cluster: each key's fingerprint against the one recorded
    /// for its id and the ones other live brokers publish (`others`), and the active key
    /// present when live tokens use it or another live broker holds it. Returns the
    /// active key id (as shown).
    async fn check(
        &self,
        ring: &Keyring,
        fps: &[(String, String)],
        per_key: &BTreeMap<String, usize>,
        others: &PublishedKeys,
    ) -> Result<Option<String>, ClusterError> {
        for (id, fp) in fps {
            self.cluster.check_fingerprint(id, fp.clone()).await?;
        }
        for (broker, keys) in others {
            for (id, fp) in fps {
                if let Some(theirs) = keys.get(id).filter(|theirs| *theirs != fp) {
                    return Err(ClusterError(format!(
                        "master key {id} differs from the key broker {broker} holds under that id (fingerprint {} \
                         here, {} there); give every broker the same secret for each key id",
                        short(fp),
                        short(theirs)
                    )));
                }
            }
        }
        let active = self.cluster.active_key().await?.map(|(a, _)| a);
        if let Some(a) = &active
            && ring.get(stored_id(a)).is_none()
            && (per_key.get(stored_id(a)).is_some_and(|n| *n > 0) || others.values().any(|k| k.contains_key(a)))
        {
            return Err(ClusterError(format!(
                "master key {a} is the cluster's active key (new tokens use it) and this broker's keyring lacks it; \
                 add it to the keyring"
            )));
        }
        Ok(active)
    }

    /// [`Rotation::round_locked`], one at a time with reloads.
    async fn round(&self) -> Result<(), ClusterError> {
        let _one = self.reloading.lock().await;
        self.round_locked().await
    }

    /// Publishes this broker's keys if etcd does not show them, moves the cluster's
    /// active key forward when every registered broker holds a newer one, and makes new
    /// tokens use the active key (T-ROTATE-4). The active key moves only from a key this
    /// broker holds, or from one no registered broker holds any more.
    async fn round_locked(&self) -> Result<(), ClusterError> {
        let Some(ring) = self.tokens.keyring() else { return Ok(()) };
        let fps = self.fingerprints(&ring).await.map_err(ClusterError)?;
        let me = self.cluster.node_id();
        let mine: BTreeMap<String, String> = fps.iter().cloned().collect();
        let live = self.cluster.registered_ids().await?;
        let mut published = self.cluster.published_keys(&live).await?;
        if published.get(&me) != Some(&mine) {
            self.cluster.publish_keys(&fps).await?;
            info!(key_ids = %ring.describe(), "published this broker's master-key fingerprints");
            published.insert(me, mine.clone());
        }
        let mut active = self.cluster.active_key().await?;
        let current = active.as_ref().map(|(a, _)| a.clone());
        let held_here = current.as_deref().is_none_or(|a| ring.get(stored_id(a)).is_some());
        let held_anywhere = current.as_deref().is_some_and(|a| published.values().any(|k| k.contains_key(a)));
        let floor = current.as_deref().filter(|_| held_here);
        if (held_here || !held_anywhere)
            && let Some(target) = choose(&ring, &mine, &live, &published, floor).map(shown_id)
            && Some(target) != current.as_deref()
            && self.cluster.move_active_key(active.as_ref().map(|(_, stamp)| *stamp), target).await?
        {
            info!(
                key_id = target,
                previous = current.as_deref().unwrap_or("none"),
                "every live broker holds this master key: it is the cluster's active key now"
            );
            active = self.cluster.active_key().await?;
        }
        let minting = match active {
            Some((a, _)) if ring.get(stored_id(&a)).is_some() => {
                self.missing_active.store(false, Ordering::Relaxed);
                Some(stored_id(&a).to_owned())
            }
            Some((a, _)) => {
                if !self.missing_active.swap(true, Ordering::Relaxed) {
                    error!(key_id = %a, "the cluster's active master key is not in this broker's keyring; Create answers 7 here until it is added");
                }
                None
            }
            None => self.tokens.minting_key(),
        };
        self.tokens.set_minting_key(minting.as_deref());
        Ok(())
    }
}

/// Reloads once the keyring file has changed and then stayed the same for a poll (a file
/// written in place is not read half-written) and, on etcd, runs the cluster's round,
/// once a second until the broker is gone.
async fn follow(rotation: Weak<Rotation>) {
    let mut failed_round = false;
    let mut pending: Option<Stamp> = None;
    loop {
        tokio::time::sleep(PERIOD).await;
        let Some(r) = rotation.upgrade() else { return };
        let now = r.source.watched().and_then(|p| file_stamp(&p));
        let last = *r.stamp.lock().unwrap_or_else(|p| p.into_inner());
        if now == last {
            pending = None;
        } else if pending == Some(now) {
            pending = None;
            if let Err(e) = r.reload("the keyring file changed").await {
                error!("the keyring was not reloaded; the keys in force stay: {e}");
            }
        } else {
            pending = Some(now);
        }
        if r.cluster.clustered() {
            match r.round().await {
                Ok(()) => failed_round = false,
                Err(e) if !failed_round => {
                    warn!("cannot settle the cluster's active master key: {e}");
                    failed_round = true;
                }
                Err(_) => {}
            }
        }
    }
}

/// The first 16 characters of a fingerprint, for a message; cut on a character boundary,
/// whatever etcd holds.
fn short(fp: &str) -> String {
    fp.chars().take(16).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn published(entries: &[(i32, &[(&str, &str)])]) -> PublishedKeys {
        entries
            .iter()
            .map(|(b, keys)| (*b, keys.iter().map(|(k, f)| (k.to_string(), f.to_string())).collect()))
            .collect()
    }

    /// T-ROTATE-4: the newest key every live broker holds with the same fingerprint, never
    /// older than the active one.
    #[test]
    fn t_rotate_4_active_key_choice() {
        let ring = Keyring::parse("default a\nk1 b\nk2 c\n").unwrap();
        let mine: BTreeMap<String, String> = [("default", "fa"), ("k1", "fb"), ("k2", "fc")]
            .iter()
            .map(|(k, f)| (k.to_string(), f.to_string()))
            .collect();
        let all = [("default", "fa"), ("k1", "fb"), ("k2", "fc")];
        let late = [("default", "fa"), ("k1", "fb")];
        let p = published(&[(1, &all), (2, &all), (3, &late)]);
        assert_eq!(choose(&ring, &mine, &[1, 2, 3], &p, None), Some("k1"), "broker 3 lacks k2");
        assert_eq!(choose(&ring, &mine, &[1, 2], &p, None), Some("k2"));
        let p = published(&[(1, &all), (2, &all), (3, &all)]);
        assert_eq!(choose(&ring, &mine, &[1, 2, 3], &p, Some("k1")), Some("k2"));
        let other = [("default", "fa"), ("k1", "fb"), ("k2", "XX")];
        let p = published(&[(1, &all), (2, &other)]);
        assert_eq!(choose(&ring, &mine, &[1, 2], &p, None), Some("k1"), "a differing fingerprint is not held");
        let p = published(&[(1, &all), (2, &[("default", "fa")])]);
        assert_eq!(choose(&ring, &mine, &[1, 2], &p, Some("k1")), None, "never backwards");
    }

    /// T-ROTATE-5: the status lists the keyring's keys, then ids only tokens still name.
    #[test]
    fn t_rotate_5_status_lists_keys_and_orphans() {
        let fps = vec![("default".to_string(), "f0".to_string()), ("k1".to_string(), "f1".to_string())];
        let per_key: BTreeMap<String, usize> = [("".to_string(), 2), ("gone".to_string(), 1)].into_iter().collect();
        let s = assemble(&fps, Some("k1"), Some(&per_key), None);
        let rows: Vec<_> = s.keys.iter().map(|k| (k.key_id.as_str(), k.in_keyring, k.active, k.live_tokens)).collect();
        assert_eq!(
            rows,
            [("default", true, false, Some(2)), ("k1", true, true, Some(0)), ("gone", false, false, Some(1))]
        );
    }
}
