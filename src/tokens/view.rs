//! The in-memory indexes over the stored tokens: by HMAC (Renew, Expire: T-INDEX-1), by
//! principal (Describe), by expiry (the sweep) and the count per owner (D-20).
//!
//! They are a view of the store, never written directly: the store's feed tells every
//! committed change, whichever broker made it, and [`View::put`] and [`View::delete`] apply
//! it. A writer waits until the view has reached its commit's revision before it answers,
//! so the broker it asked reads its write at once; a reader that must see every commit of
//! every broker first asks the store for a barrier and waits for that revision (T-CLUSTER-3).
//! The view is a hint: every decision reads the record itself from the store.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use dashmap::DashMap;
use sha2::{Digest, Sha256};
use tokio::sync::watch;

use super::TokenDetails;
use crate::auth::Principal;
use crate::config::HmacAlgorithm;
use crate::store::{Revision, StoreError};

/// The SHA-256 of an HMAC: the key of the HMAC index (T-INDEX-1).
pub fn index_key(hmac: &[u8]) -> [u8; 32] {
    Sha256::digest(hmac).into()
}

/// A token id shared by the indexes.
pub type Id = std::sync::Arc<str>;

/// A multiply-rotate hasher for keys the broker draws at random itself (token ids, the
/// SHA-256 of HMACs): nobody can choose them to collide, so the keyed SipHash of std,
/// which dominated loading a million tokens at startup, buys nothing here.
#[derive(Default, Clone, Copy)]
pub struct RandomKeyHasher(u64);

impl std::hash::Hasher for RandomKeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(word)).wrapping_mul(0x517c_c1b7_2722_0a95);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

type RandomKeys = std::hash::BuildHasherDefault<RandomKeyHasher>;
type IdSet = HashSet<Id, RandomKeys>;
/// SHA-256(HMAC) → token id.
pub type HmacIndex = DashMap<[u8; 32], Id, RandomKeys>;

/// The principal and expiry indexes, changed together under one lock.
#[derive(Default)]
pub struct Indexes {
    /// Every token naming a principal as owner, requester or renewer (Describe).
    by_principal: HashMap<Principal, IdSet>,
    /// Tokens by expiry time (the sweep).
    by_expiry: BTreeSet<(i64, Id)>,
    /// How many tokens each owner has (D-20's `ktb.token.max.per.owner`).
    owned: HashMap<Principal, usize>,
    /// The tokens of each master key id and HMAC algorithm: what a keyring reload must
    /// index again (T-ROTATE-5), and how many tokens each key serves (`ktb secret status`).
    by_key: HashMap<(String, HmacAlgorithm), IdSet>,
}

impl Indexes {
    /// Indexes `t` under `id`.
    pub fn add(&mut self, t: &TokenDetails, id: &Id) {
        self.add_principals(t, id);
        self.by_expiry.insert((t.expiry_ts, id.clone()));
    }

    fn add_principals(&mut self, t: &TokenDetails, id: &Id) {
        self.by_key.entry((t.key_id.clone(), t.hmac_alg)).or_default().insert(id.clone());
        *self.owned.entry(t.owner.clone()).or_default() += 1;
        for p in t.principals() {
            match self.by_principal.get_mut(p) {
                Some(ids) => ids.insert(id.clone()),
                None => self.by_principal.entry(p.clone()).or_default().insert(id.clone()),
            };
        }
    }

    /// Forgets `t`.
    pub fn remove(&mut self, t: &TokenDetails) {
        let key = (t.key_id.clone(), t.hmac_alg);
        if let Some(ids) = self.by_key.get_mut(&key) {
            ids.remove(t.token_id.as_str());
            if ids.is_empty() {
                self.by_key.remove(&key);
            }
        }
        if let Some(n) = self.owned.get_mut(&t.owner) {
            *n -= 1;
            if *n == 0 {
                self.owned.remove(&t.owner);
            }
        }
        for p in t.principals() {
            if let Some(ids) = self.by_principal.get_mut(p) {
                ids.remove(t.token_id.as_str());
                if ids.is_empty() {
                    self.by_principal.remove(p);
                }
            }
        }
        self.remove_expiry(t.expiry_ts, &t.token_id);
    }

    /// Removes the expiry entry `(expiry_ts, id)`, returning the shared id if it was there.
    pub fn remove_expiry(&mut self, expiry_ts: i64, id: &str) -> Option<Id> {
        self.by_expiry.take(&(expiry_ts, Id::from(id))).map(|(_, id)| id)
    }

    /// Moves `t` from `old_expiry` to its expiry.
    pub fn move_expiry(&mut self, old_expiry: i64, t: &TokenDetails) {
        let id = self.remove_expiry(old_expiry, &t.token_id).unwrap_or_else(|| Id::from(t.token_id.as_str()));
        self.by_expiry.insert((t.expiry_ts, id));
    }

    /// How many tokens `owner` owns.
    pub fn owned_by(&self, owner: &Principal) -> usize {
        self.owned.get(owner).copied().unwrap_or(0)
    }

    /// The ids of the tokens naming any of `principals`, each once, in id order.
    pub fn naming(&self, principals: &[Principal]) -> BTreeSet<Id> {
        principals.iter().filter_map(|p| self.by_principal.get(p)).flatten().cloned().collect()
    }

    /// The first `limit` entries with an expiry before `now`, earliest first.
    pub fn expired_before(&self, now: i64, limit: usize) -> Vec<(i64, Id)> {
        self.by_expiry.range(..(now, Id::from(""))).take(limit).cloned().collect()
    }

    /// The tokens recorded with any of the key ids `keys`: id, algorithm and key id.
    pub fn using_keys(&self, keys: &HashSet<String>) -> Vec<(Id, HmacAlgorithm, String)> {
        self.by_key
            .iter()
            .filter(|((k, _), _)| keys.contains(k))
            .flat_map(|((k, alg), ids)| ids.iter().map(move |id| (id.clone(), *alg, k.clone())))
            .collect()
    }

    /// How many tokens live at `now` each stored key id serves.
    pub fn per_key(&self, now: i64) -> BTreeMap<String, usize> {
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for ((k, _), ids) in &self.by_key {
            *counts.entry(k.clone()).or_default() += ids.len();
        }
        // Expired tokens wait for the sweep: few, and found through the expiry index.
        for (_, id) in self.by_expiry.range(..(now, Id::from(""))) {
            if let Some(((k, _), _)) = self.by_key.iter().find(|(_, ids)| ids.contains(id))
                && let Some(n) = counts.get_mut(k)
            {
                *n -= 1;
            }
        }
        counts
    }

    /// Every indexed id with its expiry.
    pub fn all(&self) -> impl Iterator<Item = &(i64, Id)> {
        self.by_expiry.iter()
    }
}

/// Builds indexes from many tokens at once: far cheaper than one insert each.
#[derive(Default)]
pub struct Bulk {
    indexes: Indexes,
    by_expiry: Vec<(i64, Id)>,
}

impl Bulk {
    /// Adds `t`.
    pub fn add(&mut self, t: &TokenDetails, id: Id) {
        self.indexes.add_principals(t, &id);
        self.by_expiry.push((t.expiry_ts, id));
    }

    /// The indexes of everything added.
    pub fn finish(mut self) -> Indexes {
        self.indexes.by_expiry = self.by_expiry.into_iter().collect();
        self.indexes
    }
}

/// The indexes and the revision of the store they have reached.
pub struct View {
    indexes: Mutex<Indexes>,
    /// SHA-256(HMAC) → token id, for Renew and Expire. Rebuilt at startup, never stored.
    pub by_hmac: HmacIndex,
    applied: watch::Sender<Revision>,
}

impl View {
    /// A view holding `indexes` and `by_hmac`, as of `revision`.
    pub fn new(indexes: Indexes, by_hmac: HmacIndex, revision: Revision) -> View {
        View { indexes: Mutex::new(indexes), by_hmac, applied: watch::channel(revision).0 }
    }

    /// The indexes, locked for a moment (never across an await).
    pub fn lock(&self) -> MutexGuard<'_, Indexes> {
        self.indexes.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Replaces the indexes (a reload after etcd compacted the history the feed needed).
    pub fn replace(&self, indexes: Indexes) {
        *self.lock() = indexes;
    }

    /// Records that the view has applied every change up to `revision`.
    pub fn reached(&self, revision: Revision) {
        self.applied.send_if_modified(|r| {
            let newer = revision > *r;
            if newer {
                *r = revision;
            }
            newer
        });
    }

    /// Waits until the view has applied `revision`, for at most `timeout`.
    pub async fn wait_for(&self, revision: Revision, timeout: Duration) -> Result<(), StoreError> {
        let mut rx = self.applied.subscribe();
        match tokio::time::timeout(timeout, rx.wait_for(|r| *r >= revision)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(StoreError::Io("the token view stopped".into())),
            Err(_) => Err(StoreError::Unavailable(format!(
                "the store's change feed has not reached revision {revision} in {timeout:?}"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(id: &str, owner: &str, renewers: &[&str], expiry_ts: i64) -> TokenDetails {
        TokenDetails {
            token_id: id.into(),
            owner: Principal::user(owner),
            requester: Principal::user("admin"),
            renewers: renewers.iter().map(|r| Principal::user(r)).collect(),
            issue_ts: 0,
            max_ts: 10_000,
            expiry_ts,
            hmac_alg: HmacAlgorithm::Sha1,
            key_id: String::new(),
        }
    }

    /// T-DESC-1, T-SWEEP-1: the in-memory indexes find tokens by every principal they
    /// name (`User:a`/`b` and `User`/`a:b` stay apart) and by expiry, and forget them.
    #[test]
    fn t_desc_1_in_memory_indexes() {
        let mut ix = Indexes::default();
        let (a, b, c) = (token("a", "alice", &["bob"], 300), token("b", "bob", &[], 100), token("c", "a:b", &[], 200));
        for t in [&a, &b, &c] {
            ix.add(t, &Id::from(t.token_id.as_str()));
        }
        let names = |ix: &Indexes, p: Principal| ix.naming(&[p]).into_iter().map(|i| i.to_string()).collect::<Vec<_>>();
        assert_eq!(names(&ix, Principal::user("bob")), ["a", "b"], "owner and renewer");
        assert_eq!(names(&ix, Principal::user("admin")), ["a", "b", "c"], "requester");
        assert_eq!(names(&ix, Principal::user("a:b")), ["c"]);
        assert!(names(&ix, Principal::new("User:a", "b")).is_empty());
        let expired =
            |ix: &Indexes, now| ix.expired_before(now, 10).into_iter().map(|(_, i)| i.to_string()).collect::<Vec<_>>();
        assert_eq!(expired(&ix, 201), ["b", "c"], "by expiry, strictly before now");
        assert_eq!(expired(&ix, 200), ["b"]);
        let mut renewed = b.clone();
        renewed.expiry_ts = 400;
        ix.move_expiry(100, &renewed);
        assert_eq!(expired(&ix, 301), ["c", "a"]);
        ix.remove(&a);
        assert_eq!(names(&ix, Principal::user("bob")), ["b"]);
        assert_eq!(expired(&ix, 1_000), ["c", "b"]);
        assert!(!ix.by_principal.contains_key(&Principal::user("alice")), "empty sets are dropped");
    }
}
