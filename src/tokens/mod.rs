//! Delegation tokens: their lifecycle (SPEC §4), over a view of the store that the
//! store's feed keeps current.
//!
//! A token is one record under one key, so each change is a single-key commit guarded by
//! the record's stamp: Create needs the key absent, Renew and Expire need the record they
//! read unchanged, and a refused commit is retried from a fresh read, so Create, Renew,
//! Expire and the sweep are linearizable on one broker and across brokers (T-CONC-1,
//! T-CLUSTER-2). No lock is held across a store call.
//!
//! The indexes Describe, Renew, Expire and the sweep need (by HMAC, by principal, by
//! expiry) live in memory ([`view`]) and follow the store's feed, whichever broker wrote;
//! a writer answers once the view holds its change (read-your-writes, T-CLUSTER-3). The
//! SCRAM credentials of token logins and the revocation signals of sessions are in
//! [`login`].

mod arithmetic;
pub mod keyring;
mod login;
mod record;
mod secret;
pub mod sweeper;
mod view;

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use ktb_protocol::scram::Secret;
use subtle::ConstantTimeEq;
use tracing::{error, info, warn};

pub use arithmetic::{create_times, renewed_expiry};
pub use keyring::{KeySource, Keyring};
pub use login::{LoginKeys, TokenLogin};
pub use record::{TOKEN_PREFIX, TokenDetails};
pub use secret::{MasterSecret, SECRET_FILE};

use crate::auth::Principal;
use crate::config::{Config, HmacAlgorithm};
use crate::store::{Change, FeedEvent, Guard, Op, Revision, SledStore, Store, StoreError};
use keyring::shown_id;
use login::Sessions;
use record::{LEGACY_INDEX_PREFIXES, token_key};
use view::{Bulk, HmacIndex, Id, Indexes, View, index_key};

/// Why a token operation was refused; each maps to one Kafka error code.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// No master secret: delegation tokens are disabled (61).
    #[error("delegation tokens are disabled")]
    Disabled,
    /// No live token has this HMAC (62).
    #[error("no such token")]
    NotFound,
    /// The token has expired (66).
    #[error("the token has expired")]
    Expired,
    /// The requester is neither owner nor renewer (63).
    #[error("not the token's owner or renewer")]
    OwnerMismatch,
    /// A D-20 limit refused the request (42); the message names the limit for the log.
    #[error("{0}")]
    LimitExceeded(String),
    /// The store failed (−1).
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl TokenError {
    /// The Kafka error code of this refusal.
    pub fn code(&self) -> i16 {
        use ktb_protocol::error_code::*;
        match self {
            Self::Disabled => DELEGATION_TOKEN_AUTH_DISABLED,
            Self::NotFound => DELEGATION_TOKEN_NOT_FOUND,
            Self::Expired => DELEGATION_TOKEN_EXPIRED,
            Self::OwnerMismatch => DELEGATION_TOKEN_OWNER_MISMATCH,
            Self::LimitExceeded(_) => INVALID_REQUEST,
            Self::Store(StoreError::Unavailable(_)) => REQUEST_TIMED_OUT,
            Self::Store(_) => UNKNOWN_SERVER_ERROR,
        }
    }
}

/// The token settings of the configuration.
#[derive(Debug, Clone, Copy)]
pub struct TokenSettings {
    /// `delegation.token.max.lifetime.ms`.
    pub max_lifetime_ms: i64,
    /// `delegation.token.expiry.time.ms`.
    pub expiry_time_ms: i64,
    /// `delegation.token.hmac.algorithm`, for new tokens.
    pub hmac_alg: HmacAlgorithm,
    /// `ktb.token.superuser.manage` (D-13).
    pub superuser_manage: bool,
    /// `ktb.token.max.renewers` (D-20).
    pub max_renewers: usize,
    /// `ktb.token.max.per.owner` (D-20).
    pub max_per_owner: usize,
}

impl TokenSettings {
    /// Kafka's defaults (7 days, 1 day, SHA-1) with small caps, for unit tests.
    #[cfg(test)]
    pub(crate) const TESTS: TokenSettings = TokenSettings {
        max_lifetime_ms: 7 * 86_400_000,
        expiry_time_ms: 86_400_000,
        hmac_alg: HmacAlgorithm::Sha1,
        superuser_manage: false,
        max_renewers: 64,
        max_per_owner: 10_000,
    };

    /// The settings in `config`.
    pub fn from_config(config: &Config) -> TokenSettings {
        TokenSettings {
            max_lifetime_ms: config.token_max_lifetime_ms,
            expiry_time_ms: config.token_expiry_time_ms,
            hmac_alg: config.token_hmac_algorithm,
            superuser_manage: config.superuser_manage_tokens,
            max_renewers: config.token_max_renewers,
            max_per_owner: config.token_max_per_owner,
        }
    }
}

/// How many times a change refused by a concurrent one is retried from a fresh read.
const RETRIES: usize = 32;

/// All the broker's delegation tokens.
pub struct Tokens {
    store: Arc<dyn Store>,
    /// The master keys and the one new tokens use; `None` when delegation tokens are
    /// disabled. Only the feed task replaces the keys, so a reload and the index changes
    /// of the feed never interleave.
    keys: Option<RwLock<Arc<KeyState>>>,
    /// Keyring replacements for the feed task.
    rekey: tokio::sync::mpsc::UnboundedSender<Rekey>,
    settings: TokenSettings,
    view: View,
    sessions: Sessions,
    /// Key derivations of first token logins (T-LIMIT-6) and the key of their salts
    /// (T-REVEAL-1).
    logins: LoginKeys,
    /// How long a request waits for the view to reach a revision.
    wait: Duration,
    /// Set once the feed carried a record of a newer schema (a newer broker wrote it):
    /// it is ignored and `/readyz` fails (§9.7).
    newer_schema_seen: std::sync::atomic::AtomicBool,
}

impl Tokens {
    /// Loads every token from `store`, builds the view and starts following the store's
    /// feed (T-PERSIST-4). `secret` is `None` when delegation tokens are disabled; `wait`
    /// bounds how long a request waits for the view.
    pub async fn open(
        store: Arc<dyn Store>,
        keys: Option<Keyring>,
        settings: TokenSettings,
        logins: LoginKeys,
        wait: Duration,
    ) -> Result<Arc<Tokens>, StoreError> {
        let keys = keys.map(Arc::new);
        let (indexes, by_hmac, revision) = load_view(store.as_ref(), keys.clone()).await?;
        let feed = store.feed(TOKEN_PREFIX, revision)?;
        let (rekey, rekeys) = tokio::sync::mpsc::unbounded_channel();
        let tokens = Arc::new(Tokens {
            store,
            keys: keys.map(|ring| {
                let minting = Some(ring.newest().id.clone());
                RwLock::new(Arc::new(KeyState { ring, minting }))
            }),
            rekey,
            settings,
            view: View::new(indexes, by_hmac, revision),
            sessions: Sessions::default(),
            logins,
            wait,
            newer_schema_seen: false.into(),
        });
        tokio::spawn(follow(Arc::downgrade(&tokens), feed, rekeys));
        Ok(tokens)
    }

    /// True when a master secret is configured (T-ENABLE-1).
    pub fn enabled(&self) -> bool {
        self.keys.is_some()
    }

    fn key_state(&self) -> Option<Arc<KeyState>> {
        self.keys.as_ref().map(|k| k.read().unwrap_or_else(|p| p.into_inner()).clone())
    }

    /// The master keys in force, `None` when tokens are disabled.
    pub fn keyring(&self) -> Option<Arc<Keyring>> {
        self.key_state().map(|s| s.ring.clone())
    }

    /// The stored id of the key new tokens use; `None` while none may be used (on etcd,
    /// before the cluster agreed on one).
    pub fn minting_key(&self) -> Option<String> {
        self.key_state().and_then(|s| s.minting.clone())
    }

    /// Makes new tokens use key `id` (stored form; `None`: refuse Create with 7 for now).
    /// On etcd the cluster moves it once every live broker holds the key (T-ROTATE-4).
    pub fn set_minting_key(&self, id: Option<&str>) {
        let Some(slot) = &self.keys else { return };
        let mut state = slot.write().unwrap_or_else(|p| p.into_inner());
        let id = id.filter(|id| state.ring.get(id).is_some());
        if state.minting.as_deref() != id {
            match id {
                Some(id) => info!(key_id = shown_id(id), "new tokens now use this master key"),
                None => warn!("no master key may be used for new tokens yet; Create answers 7"),
            }
            *state = Arc::new(KeyState { ring: state.ring.clone(), minting: id.map(str::to_owned) });
        }
    }

    /// Replaces the master keys (a reload, T-ROTATE-5/6) and, with `minting`, the key new
    /// tokens use. The tokens of every key that was added, removed or changed are indexed
    /// again; those whose key is gone are refused from now on and their sessions end.
    /// Returns once the view holds the change.
    pub async fn replace_keys(&self, keys: Keyring, minting: Option<String>) -> KeyChange {
        if self.keys.is_none() {
            return KeyChange::default();
        }
        let (done, answer) = tokio::sync::oneshot::channel();
        if self.rekey.send(Rekey { keys: Arc::new(keys), minting, done }).is_err() {
            return KeyChange::default();
        }
        answer.await.unwrap_or_default()
    }

    /// How many tokens live at `now` each key id serves, by stored id; ids the keyring
    /// lacks are included (their tokens are invalid here).
    pub fn tokens_per_key(&self, now: i64) -> BTreeMap<String, usize> {
        self.view.lock().per_key(now)
    }

    /// Applies a keyring replacement on the feed task.
    fn apply_keys(&self, rekey: Rekey) {
        let Some(slot) = &self.keys else { return };
        let started = std::time::Instant::now();
        let new = rekey.keys;
        let old = {
            let mut state = slot.write().unwrap_or_else(|p| p.into_inner());
            // The key new tokens use changes with the keys, in one step: a Create never
            // sees a key id the keyring it read lacks.
            let minting = rekey.minting.or_else(|| state.minting.clone()).filter(|m| new.get(m).is_some());
            let before = std::mem::replace(&mut *state, Arc::new(KeyState { ring: new.clone(), minting }));
            before.ring.clone()
        };
        let mut change = KeyChange::default();
        let mut affected = HashSet::new();
        for k in old.keys() {
            match new.get(&k.id) {
                None => change.removed.push(shown_id(&k.id).to_owned()),
                Some(s) if !s.same_as(&k.secret) => change.changed.push(shown_id(&k.id).to_owned()),
                Some(_) => continue,
            }
            affected.insert(k.id.clone());
        }
        for k in new.keys().iter().filter(|k| old.get(&k.id).is_none()) {
            change.added.push(shown_id(&k.id).to_owned());
            affected.insert(k.id.clone());
        }
        let tokens = self.view.lock().using_keys(&affected);
        for (id, alg, key_id) in &tokens {
            let before = old.hmac(key_id, *alg, id);
            if let Some(h) = &before {
                self.view.by_hmac.remove_if(&index_key(h.expose()), |_, v| v == id);
            }
            let after = new.hmac(key_id, *alg, id);
            if let Some(h) = &after {
                self.view.by_hmac.insert(index_key(h.expose()), id.clone());
            }
            // Gone or changed: the HMAC its sessions logged in with is no longer valid.
            if before.is_some() {
                self.sessions.revoke(id);
            } else {
                self.sessions.forget_credentials(id);
            }
        }
        change.reindexed = tokens.len();
        change.took = started.elapsed();
        let _ = rekey.done.send(change);
    }

    /// The settings in force.
    pub fn settings(&self) -> &TokenSettings {
        &self.settings
    }

    /// How many tokens the view holds.
    pub fn len(&self) -> usize {
        self.view.by_hmac.len()
    }

    /// True once the feed carried a token record of a newer schema than this build's.
    pub fn newer_schema_seen(&self) -> bool {
        self.newer_schema_seen.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Notes a record that could not be decoded.
    fn ignored(&self, e: &StoreError) {
        if matches!(e, StoreError::NewerSchema { .. }) {
            self.newer_schema_seen.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// True when there are no tokens.
    pub fn is_empty(&self) -> bool {
        self.view.by_hmac.is_empty()
    }

    fn ring(&self) -> Result<Arc<Keyring>, TokenError> {
        self.keyring().ok_or(TokenError::Disabled)
    }

    /// Owner or renewer, or a super user when D-13 is on: who may renew or expire `t`.
    fn may_manage(&self, t: &TokenDetails, requester: &Principal, super_user: bool) -> bool {
        t.may_renew(requester) || (super_user && self.settings.superuser_manage)
    }

    /// Token `id` and the stamp a commit that changes it is guarded by.
    async fn get(&self, id: &str) -> Result<Option<(TokenDetails, i64)>, StoreError> {
        match self.store.get(&token_key(id)).await? {
            Some(v) => Ok(Some((record::decode(id, &v.value)?, v.stamp))),
            None => Ok(None),
        }
    }

    /// The token whose HMAC is exactly `hmac`, with its stamp. A miss in the view may only
    /// mean the view is behind another broker's Create: it is asked again once the view
    /// has caught up with the store (T-CLUSTER-3).
    async fn find_by_hmac(&self, ring: &Keyring, hmac: &[u8]) -> Result<Option<(TokenDetails, i64)>, StoreError> {
        let key = index_key(hmac);
        let id = match self.view.by_hmac.get(&key).map(|e| e.value().clone()) {
            Some(id) => id,
            None => {
                self.catch_up().await?;
                let Some(id) = self.view.by_hmac.get(&key).map(|e| e.value().clone()) else { return Ok(None) };
                id
            }
        };
        let Some((t, stamp)) = self.get(&id).await? else { return Ok(None) };
        // A token whose key this broker lacks matches nothing (T-ROTATE-5).
        let Some(own) = ring.hmac(&t.key_id, t.hmac_alg, &t.token_id) else { return Ok(None) };
        let matches = bool::from(own.expose().ct_eq(hmac));
        Ok(matches.then_some((t, stamp)))
    }

    /// Waits until the view holds every commit that completed before the call.
    async fn catch_up(&self) -> Result<(), StoreError> {
        let revision = self.store.barrier().await?;
        self.view.wait_for(revision, self.wait).await
    }

    /// Waits until the view holds this broker's own commit at `revision`. The commit is
    /// done whatever happens here, so a view that lags is logged, not reported.
    async fn settle(&self, revision: Revision, what: &str) {
        if let Err(e) = self.view.wait_for(revision, self.wait).await {
            warn!("{what} is committed, but this broker's token view lags: {e}");
        }
    }

    /// Creates a token (T-CREATE-2..7) and returns it with its HMAC once it is durable.
    /// Authorization is the caller's (SPEC §4.6 checks 1–3a).
    pub async fn create(
        &self,
        owner: Principal,
        requester: Principal,
        renewers: Vec<Principal>,
        requested_max_lifetime_ms: i64,
        now: i64,
    ) -> Result<(TokenDetails, Secret), TokenError> {
        let state = self.key_state().ok_or(TokenError::Disabled)?;
        let Some((key_id, secret)) = state.minting.as_ref().and_then(|id| Some((id.clone(), state.ring.get(id)?)))
        else {
            return Err(TokenError::Store(StoreError::Unavailable(
                "the brokers have not agreed on a master key for new tokens yet (ktb secret status)".into(),
            )));
        };
        if renewers.len() > self.settings.max_renewers {
            return Err(TokenError::LimitExceeded(format!(
                "{} renewers exceed ktb.token.max.renewers={}",
                renewers.len(),
                self.settings.max_renewers
            )));
        }
        let (issue_ts, max_ts, expiry_ts) = create_times(&self.settings, requested_max_lifetime_ms, now);
        let mut t = TokenDetails {
            token_id: crate::ids::random_kafka_id(),
            owner,
            requester,
            renewers,
            issue_ts,
            max_ts,
            expiry_ts,
            hmac_alg: self.settings.hmac_alg,
            key_id: key_id.clone(),
        };
        let encoded = record::encode(&t);
        if encoded.len() > record::MAX_RECORD_BYTES {
            return Err(TokenError::LimitExceeded(format!(
                "the token's principal names take {} bytes, over the {} a token may have",
                encoded.len(),
                record::MAX_RECORD_BYTES
            )));
        }
        // Counted in the view: concurrent creates on other brokers may pass it by one each.
        if self.view.lock().owned_by(&t.owner) >= self.settings.max_per_owner {
            return Err(TokenError::LimitExceeded(format!(
                "{} owns {} tokens, the most ktb.token.max.per.owner allows",
                t.owner.logged(),
                self.settings.max_per_owner
            )));
        }
        // A fresh id never names a stored token; the guard makes sure of it in the same
        // step as the write (the id is in the key, not the record).
        let revision = loop {
            let key = token_key(&t.token_id);
            match self.store.commit(vec![Guard::Absent(key.clone())], vec![Op::Put(key, encoded.clone())]).await {
                Ok(Some(revision)) => break revision,
                Ok(None) => t.token_id = crate::ids::random_kafka_id(),
                Err(e) => {
                    error!(token_id = %t.token_id, "token not created: {e}");
                    if matches!(e, StoreError::Unavailable(_)) {
                        // The answer says failed, but the transaction may still commit
                        // once etcd has a quorum again: it is taken back then.
                        tokio::spawn(withdraw_later(self.store.clone(), token_key(&t.token_id)));
                    }
                    return Err(e.into());
                }
            }
        };
        self.settle(revision, "a created token").await;
        log_event(&t, "token created");
        let hmac = secret.token_hmac(t.hmac_alg, &t.token_id);
        Ok((t, hmac))
    }

    /// Stores `t` in place of the record with `stamp`: `None` when another change came
    /// first. Answers once the view holds the change.
    async fn replace(&self, t: &TokenDetails, stamp: i64, delete: bool) -> Result<Option<()>, StoreError> {
        let key = token_key(&t.token_id);
        let op = if delete { Op::Delete(key.clone()) } else { Op::Put(key.clone(), record::encode(t)) };
        match self.store.commit(vec![Guard::Unchanged(key, stamp)], vec![op]).await? {
            Some(revision) => {
                self.settle(revision, "a token change").await;
                Ok(Some(()))
            }
            None => Ok(None),
        }
    }

    /// Renews the token with this HMAC for `requester` (SPEC §4.7 checks 2–6); returns the
    /// new expiry once it is durable. `found` gets the token's id and owner once the HMAC
    /// matched one, refusals included (for the audit log).
    pub async fn renew(
        &self,
        hmac: &[u8],
        requester: &Principal,
        super_user: bool,
        requested_period_ms: i64,
        now: i64,
        found: &mut Option<(String, Principal)>,
    ) -> Result<i64, TokenError> {
        let ring = self.ring()?;
        for _ in 0..RETRIES {
            let (mut t, stamp) = self.find_by_hmac(&ring, hmac).await?.ok_or(TokenError::NotFound)?;
            *found = Some((t.token_id.clone(), t.owner.clone()));
            if t.is_expired(now) {
                return Err(TokenError::Expired);
            }
            if !self.may_manage(&t, requester, super_user) {
                return Err(TokenError::OwnerMismatch);
            }
            t.expiry_ts = renewed_expiry(&self.settings, t.max_ts, requested_period_ms, now);
            if self.replace(&t, stamp, false).await?.is_some() {
                info!(token_id = %t.token_id, owner = %t.owner.logged(), by = %requester.logged(), expiry_timestamp_ms = t.expiry_ts, "token renewed");
                return Ok(t.expiry_ts);
            }
        }
        Err(contended())
    }

    /// Expires the token with this HMAC (SPEC §4.8 checks 2–4, T-EXPIRE-1..4): a negative
    /// period deletes it, otherwise its expiry becomes `min(max, now + period)`. Returns
    /// the resulting expiry once the change is durable; `found` as for [`Tokens::renew`].
    pub async fn expire(
        &self,
        hmac: &[u8],
        requester: &Principal,
        super_user: bool,
        period_ms: i64,
        now: i64,
        found: &mut Option<(String, Principal)>,
    ) -> Result<i64, TokenError> {
        let ring = self.ring()?;
        for _ in 0..RETRIES {
            let (mut t, stamp) = self.find_by_hmac(&ring, hmac).await?.ok_or(TokenError::NotFound)?;
            *found = Some((t.token_id.clone(), t.owner.clone()));
            if !self.may_manage(&t, requester, super_user) {
                return Err(TokenError::OwnerMismatch);
            }
            let delete = period_ms < 0;
            if !delete && t.is_expired(now) {
                return Err(TokenError::Expired);
            }
            t.expiry_ts = if delete { now } else { t.max_ts.min(now.saturating_add(period_ms)) };
            if self.replace(&t, stamp, delete).await?.is_some() {
                let what = if delete { "token expired and deleted" } else { "token expiry changed" };
                info!(token_id = %t.token_id, owner = %t.owner.logged(), by = %requester.logged(), expiry_timestamp_ms = t.expiry_ts, "{what}");
                return Ok(t.expiry_ts);
            }
        }
        Err(contended())
    }

    /// The tokens `requester` may see (SPEC §4.9 check 4, T-DESC-1..3), each with its
    /// HMAC, ordered by issue time then id. `owners` is the request's filter: `None` for
    /// "everything I may see"; an empty slice is answered by the caller. It sees every
    /// change answered before it began, on any broker, and answers only once everything
    /// it read is durable.
    pub async fn describe(
        &self,
        owners: Option<&[Principal]>,
        requester: &Principal,
        super_user: bool,
    ) -> Result<Vec<(TokenDetails, Secret)>, TokenError> {
        let ring = self.ring()?;
        self.catch_up().await?;
        let mut found: Vec<TokenDetails> = match owners {
            None if super_user => self
                .store
                .scan_prefix(TOKEN_PREFIX)
                .await?
                .into_iter()
                .map(|(k, v)| record::decode(&String::from_utf8_lossy(&k[TOKEN_PREFIX.len()..]), &v))
                .collect::<Result<_, _>>()?,
            None => self.naming(std::slice::from_ref(requester)).await?,
            Some(owners) => {
                // A set: many owners cost one pass over each token's principals (T-LIMIT-1).
                let wanted: HashSet<&Principal> = owners.iter().collect();
                let distinct: Vec<Principal> = wanted.iter().map(|p| (*p).clone()).collect();
                self.naming(&distinct)
                    .await?
                    .into_iter()
                    .filter(|t| t.principals().iter().any(|p| wanted.contains(p)))
                    .filter(|t| super_user || t.owner_or_renewer(requester))
                    .collect()
            }
        };
        self.store.settled().await?;
        found.sort_by(|a, b| (a.issue_ts, &a.token_id).cmp(&(b.issue_ts, &b.token_id)));
        // A token whose key is gone is invalid and left out (T-ROTATE-5).
        Ok(found
            .into_iter()
            .filter_map(|t| {
                let hmac = ring.hmac(&t.key_id, t.hmac_alg, &t.token_id)?;
                Some((t, hmac))
            })
            .collect())
    }

    /// Every token naming one of `principals` as owner, requester or renewer, each once,
    /// read through the principal index.
    async fn naming(&self, principals: &[Principal]) -> Result<Vec<TokenDetails>, StoreError> {
        let ids = self.view.lock().naming(principals);
        let keys: Vec<Vec<u8>> = ids.iter().map(|id| token_key(id)).collect();
        let mut out = Vec::with_capacity(ids.len());
        // A token deleted between the two reads is simply not listed.
        for (id, v) in ids.iter().zip(self.store.get_many(&keys).await?) {
            if let Some(v) = v {
                out.push(record::decode(id, &v.value)?);
            }
        }
        Ok(out)
    }

    /// Deletes every token expired at `now`, durably, in guarded chunks (T-SWEEP-1);
    /// returns how many.
    pub async fn sweep(&self, now: i64, swept: &(dyn Fn(&TokenDetails) + Send + Sync)) -> Result<usize, StoreError> {
        let mut total = 0;
        loop {
            let candidates = self.view.lock().expired_before(now, SWEEP_BATCH);
            if candidates.is_empty() {
                return Ok(total);
            }
            let keys: Vec<Vec<u8>> = candidates.iter().map(|(_, id)| token_key(id)).collect();
            let mut gone = Vec::new();
            for ((expiry_ts, id), v) in candidates.iter().zip(self.store.get_many(&keys).await?) {
                match v.map(|v| record::decode(id, &v.value).map(|t| (t, v.stamp))).transpose()? {
                    // Expiry never passes max, so `expiry < now` finds every expired token.
                    Some((t, stamp)) if t.is_expired(now) => gone.push((t, stamp)),
                    // An entry that does not match its token is dropped; the token stays.
                    _ => {
                        self.view.lock().remove_expiry(*expiry_ts, id);
                    }
                }
            }
            if gone.is_empty() {
                continue;
            }
            let guards = gone.iter().map(|(t, stamp)| Guard::Unchanged(token_key(&t.token_id), *stamp)).collect();
            let deletes = gone.iter().map(|(t, _)| Op::Delete(token_key(&t.token_id))).collect();
            match self.store.commit(guards, deletes).await? {
                Some(revision) => self.settle(revision, "the sweep").await,
                // One of them changed since it was read (renewed, deleted): each on its own.
                None => {
                    let mut swept = Vec::new();
                    for (t, stamp) in gone {
                        if self.replace(&t, stamp, true).await?.is_some() {
                            swept.push((t, stamp));
                        }
                    }
                    gone = swept;
                }
            }
            for (t, _) in &gone {
                log_event(t, "token swept");
                swept(t);
            }
            total += gone.len();
        }
    }

    /// Confirms once a second that the view has caught up with the store; when it cannot
    /// for longer than `stale`, ends every token session, since a deletion on another
    /// broker might not have reached it (D-22 in a cluster, §9.7). Runs while the tokens
    /// are in use.
    pub async fn confirm_view(tokens: Weak<Tokens>, stale: Duration) {
        let mut confirmed = tokio::time::Instant::now();
        let mut revoked = false;
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let Some(t) = tokens.upgrade() else { return };
            match t.catch_up().await {
                Ok(()) => {
                    if revoked {
                        info!("the token view is current again");
                    }
                    confirmed = tokio::time::Instant::now();
                    revoked = false;
                }
                Err(e) if confirmed.elapsed() > stale && !revoked => {
                    warn!("the token view could not be confirmed for {stale:?} ({e}); closing every token session");
                    t.sessions.revoke_all();
                    revoked = true;
                }
                Err(_) => {}
            }
        }
    }

    /// Applies what the feed tells to the view, the credential cache and the sessions.
    fn follow_event(&self, event: FeedEvent) {
        match event {
            FeedEvent::Changes { revision, changes } => {
                for c in changes {
                    self.apply_change(c);
                }
                self.view.reached(revision);
            }
            FeedEvent::Reload { revision, records } => {
                self.reload(records);
                self.view.reached(revision);
            }
        }
    }

    fn apply_change(&self, c: Change) {
        let Some(id) = c.key.strip_prefix(TOKEN_PREFIX).and_then(|id| std::str::from_utf8(id).ok()) else { return };
        let decode = |v: &Option<Vec<u8>>| match v.as_deref().map(|v| record::decode(id, v)) {
            Some(Ok(t)) => Some(t),
            Some(Err(e)) => {
                error!("ignoring a token record the feed carried: {e}");
                self.ignored(&e);
                None
            }
            None => None,
        };
        let (now, before) = (decode(&c.value), decode(&c.prev));
        match (now, before) {
            (Some(t), Some(old)) => {
                self.view.lock().move_expiry(old.expiry_ts, &t);
                self.sessions.notify_expiry(id, t.expiry_ts);
            }
            (Some(t), None) => {
                let shared = Id::from(id);
                self.view.lock().add(&t, &shared);
                if let Some(h) = self.keyring().and_then(|r| r.hmac(&t.key_id, t.hmac_alg, id)) {
                    self.view.by_hmac.insert(index_key(h.expose()), shared);
                }
                self.sessions.notify_expiry(id, t.expiry_ts);
            }
            (None, before) => {
                if let Some(old) = &before {
                    self.view.lock().remove(old);
                }
                self.forget_hmac(id, before.map(|t| (t.key_id, t.hmac_alg)));
                self.sessions.revoke(id);
            }
        }
    }

    /// Drops token `id` from the HMAC index; every key and algorithm is tried when the
    /// record's are unknown (a deletion whose previous value the store no longer had).
    fn forget_hmac(&self, id: &str, key: Option<(String, HmacAlgorithm)>) {
        let Some(ring) = self.keyring() else { return };
        let keys = match key {
            Some(k) => vec![k],
            None => ring
                .keys()
                .iter()
                .flat_map(|k| {
                    [HmacAlgorithm::Sha1, HmacAlgorithm::Sha256, HmacAlgorithm::Sha512].map(|a| (k.id.clone(), a))
                })
                .collect(),
        };
        for (key_id, a) in keys {
            if let Some(h) = ring.hmac(&key_id, a, id) {
                self.view.by_hmac.remove_if(&index_key(h.expose()), |_, v| &**v == id);
            }
        }
    }

    /// Replaces the view with `records` (the feed lost its history): tokens that are gone
    /// end their sessions, the others tell theirs their expiry.
    fn reload(&self, records: Vec<(Vec<u8>, Vec<u8>)>) {
        let mut bulk = Bulk::default();
        let by_hmac = HmacIndex::default();
        let mut live = HashSet::new();
        let ring = self.keyring();
        for (k, v) in records {
            let Some(id) = k.strip_prefix(TOKEN_PREFIX).and_then(|id| std::str::from_utf8(id).ok()) else { continue };
            match record::decode(id, &v) {
                Ok(t) => {
                    let shared = Id::from(id);
                    if let Some(h) = ring.as_ref().and_then(|r| r.hmac(&t.key_id, t.hmac_alg, id)) {
                        by_hmac.insert(index_key(h.expose()), shared.clone());
                    }
                    self.sessions.notify_expiry(id, t.expiry_ts);
                    bulk.add(&t, shared.clone());
                    live.insert(shared);
                }
                Err(e) => {
                    error!("ignoring a token record: {e}");
                    self.ignored(&e);
                }
            }
        }
        let gone: Vec<Id> =
            self.view.lock().all().filter(|(_, id)| !live.contains(id)).map(|(_, id)| id.clone()).collect();
        self.view.replace(bulk.finish());
        self.view.by_hmac.clear();
        for (k, id) in by_hmac {
            self.view.by_hmac.insert(k, id);
        }
        for id in gone {
            self.sessions.revoke(&id);
        }
        info!(tokens = live.len(), "token view reloaded from the store");
    }
}

/// The refusal when a token keeps changing under a request.
fn contended() -> TokenError {
    TokenError::Store(StoreError::Unavailable("the token kept changing under the request".into()))
}

/// Deletes the token under `key` if the create that answered 7 commits after all
/// (T-CLUSTER-7: nothing answered as failed stays). A transaction etcd had not committed
/// when the call gave up is decided within etcd's own request timeout once a quorum
/// answers, so the key is watched until it has read as absent, with etcd reachable, for
/// ten seconds in a row (or for at most an hour).
async fn withdraw_later(store: Arc<dyn Store>, key: Vec<u8>) {
    let give_up = tokio::time::Instant::now() + Duration::from_secs(3_600);
    let mut absent_since: Option<tokio::time::Instant> = None;
    while tokio::time::Instant::now() < give_up {
        // The barrier reads etcd itself: a get alone may answer from the stale cache.
        let reachable = store.barrier().await.is_ok();
        match store.get(&key).await {
            Ok(None) if reachable => {
                let since = *absent_since.get_or_insert_with(tokio::time::Instant::now);
                if since.elapsed() >= Duration::from_secs(10) {
                    return;
                }
            }
            Ok(Some(v)) => {
                absent_since = None;
                let guard = vec![Guard::Unchanged(key.clone(), v.stamp)];
                if let Ok(Some(_)) = store.commit(guard, vec![Op::Delete(key.clone())]).await {
                    warn!(key = %String::from_utf8_lossy(&key), "withdrew a token whose create had answered 7 but committed later");
                    return;
                }
            }
            _ => absent_since = None,
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The master keys and the stored id of the one new tokens use, replaced together.
struct KeyState {
    ring: Arc<Keyring>,
    minting: Option<String>,
}

/// A keyring replacement, applied by the feed task.
struct Rekey {
    keys: Arc<Keyring>,
    minting: Option<String>,
    done: tokio::sync::oneshot::Sender<KeyChange>,
}

/// What a keyring replacement changed (key ids only, as shown).
#[derive(Debug, Default)]
pub struct KeyChange {
    /// Keys that are new.
    pub added: Vec<String>,
    /// Keys that are gone: their tokens are invalid now.
    pub removed: Vec<String>,
    /// Keys whose secret changed under the same id: their tokens' HMACs changed.
    pub changed: Vec<String>,
    /// How many tokens were indexed again.
    pub reindexed: usize,
    /// How long the replacement held the feed.
    pub took: Duration,
}

/// Applies the feed and keyring replacements to the tokens, one at a time, until the
/// tokens or the feed are gone.
async fn follow(
    tokens: Weak<Tokens>,
    mut feed: tokio::sync::mpsc::UnboundedReceiver<FeedEvent>,
    mut rekeys: tokio::sync::mpsc::UnboundedReceiver<Rekey>,
) {
    loop {
        tokio::select! {
            event = feed.recv() => {
                let Some(event) = event else { return };
                let Some(tokens) = tokens.upgrade() else { return };
                tokens.follow_event(event);
            }
            Some(rekey) = rekeys.recv() => {
                let Some(tokens) = tokens.upgrade() else { return };
                // Off the runtime's threads: with many tokens the HMACs take a while, and
                // no feed event is applied until it is done.
                let _ = tokio::task::spawn_blocking(move || tokens.apply_keys(rekey)).await;
            }
        }
    }
}

/// Logs a token event at INFO with the token's id, owner, requester and times (T-LOG-2);
/// never its HMAC.
fn log_event(t: &TokenDetails, event: &str) {
    info!(
        token_id = %t.token_id,
        owner = %t.owner.logged(),
        requester = %t.requester.logged(),
        expiry_timestamp_ms = t.expiry_ts,
        max_timestamp_ms = t.max_ts,
        "{event}"
    );
}

/// The store record of `t`, key and value: the load generator writes these into an etcd
/// prefix to build a large store.
pub fn stored_record(t: &TokenDetails) -> (Vec<u8>, Vec<u8>) {
    (token_key(&t.token_id), record::encode(t))
}

/// How many tokens live at `now` each key id (stored form) serves, read from `store`
/// (`ktb secret status` on a stopped broker).
pub async fn live_tokens_per_key(store: &dyn Store, now: i64) -> Result<BTreeMap<String, usize>, StoreError> {
    let mut counts = BTreeMap::new();
    for (k, v) in store.scan_prefix(TOKEN_PREFIX).await? {
        let t = record::decode(&String::from_utf8_lossy(&k[TOKEN_PREFIX.len()..]), &v)?;
        if !t.is_expired(now) {
            *counts.entry(t.key_id).or_default() += 1;
        }
    }
    Ok(counts)
}

/// Writes `tokens` straight into a stopped broker's sled store in large batches and
/// flushes: the bulk path for the load generator's 1M-token store.
pub fn bulk_load(store: &SledStore, tokens: impl Iterator<Item = TokenDetails>) -> Result<usize, StoreError> {
    let mut ops = Vec::new();
    let mut n = 0;
    for t in tokens {
        ops.push(Op::Put(token_key(&t.token_id), record::encode(&t)));
        n += 1;
        if ops.len() >= 10_000 {
            store.apply_now(std::mem::take(&mut ops))?;
        }
    }
    store.apply_now(ops)?;
    store.flush()?;
    Ok(n)
}

/// Reads every token record and builds the view (T-PERSIST-4, T-INDEX-1): the store is
/// read on this task while a blocking thread decodes the records and indexes them, so a
/// large store loads in about the time of reading it.
async fn load_view(
    store: &dyn Store,
    keys: Option<Arc<Keyring>>,
) -> Result<(Indexes, HmacIndex, Revision), StoreError> {
    const BATCH: usize = 1024;
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<(Vec<u8>, Vec<u8>)>>(8);
    let indexer = tokio::task::spawn_blocking(move || {
        let mut bulk = Bulk::default();
        let by_hmac = HmacIndex::default();
        for batch in rx {
            for (k, v) in batch {
                let t = record::decode(&String::from_utf8_lossy(&k[TOKEN_PREFIX.len()..]), &v)?;
                let id = Id::from(t.token_id.as_str());
                if let Some(h) = keys.as_ref().and_then(|k| k.hmac(&t.key_id, t.hmac_alg, &t.token_id)) {
                    by_hmac.insert(index_key(h.expose()), id.clone());
                }
                bulk.add(&t, id);
            }
        }
        Ok::<_, StoreError>((bulk.finish(), by_hmac))
    });
    let mut batch = Vec::with_capacity(BATCH);
    let read = store
        .load(TOKEN_PREFIX, &mut |k, v| {
            batch.push((k.to_vec(), v.to_vec()));
            if batch.len() == BATCH {
                // A send fails only when the indexer stopped on an error, reported below.
                let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
                tx.send(full).map_err(|_| StoreError::Io("the token indexer stopped".into()))?;
            }
            Ok(())
        })
        .await;
    let _ = tx.send(batch);
    drop(tx);
    let (indexes, by_hmac) =
        indexer.await.map_err(|_| StoreError::Io("the token indexer thread panicked".into()))??;
    Ok((indexes, by_hmac, read?))
}

/// Deletes the index keys that earlier builds stored beside the token records in a sled
/// store (the indexes are rebuilt in memory now); the tokens themselves stay.
pub fn remove_legacy_index_keys(store: &SledStore) -> Result<(), StoreError> {
    let mut removed = false;
    for prefix in LEGACY_INDEX_PREFIXES {
        loop {
            let keys = store.keys_with_prefix(prefix, 10_000)?;
            if keys.is_empty() {
                break;
            }
            store.apply_now(keys.into_iter().map(Op::Delete).collect())?;
            removed = true;
        }
    }
    if removed {
        store.flush()?;
        info!("removed the token index keys of an earlier store layout; the indexes are kept in memory");
    }
    Ok(())
}

/// The expiry a revocation signal carries once its token is deleted (D-22).
pub const DELETED: i64 = i64::MIN;

/// The most tokens one sweep commit deletes (etcd takes at most 128 operations per
/// transaction; each deletion is a guard and a write).
const SWEEP_BATCH: usize = 64;

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;

    fn keys() -> LoginKeys {
        LoginKeys { kdf: crate::auth::kdf::KdfPool::start(1, 8).unwrap(), salt_key: [3; 32] }
    }

    const S: TokenSettings = TokenSettings::TESTS;

    async fn open(store: Arc<SledStore>) -> Arc<Tokens> {
        Tokens::open(store, Some(Keyring::single(MasterSecret::new("s"))), S, keys(), Duration::from_secs(5))
            .await
            .unwrap()
    }

    /// T-CREATE-6, T-PERSIST-1: when the store cannot make a new token durable the answer
    /// is −1 and the token is neither indexed nor listed; the store recovers afterwards.
    #[tokio::test]
    async fn t_create_6_unflushed_create_is_refused_and_undone() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Arc::new(SledStore::open(tmp.path()).unwrap());
        let tokens = open(store.clone()).await;
        let alice = Principal::user("alice");
        tokens.create(alice.clone(), alice.clone(), vec![], -1, 1_000).await.unwrap();
        store.fail_flush.store(true, Ordering::SeqCst);
        let e = tokens.create(alice.clone(), alice.clone(), vec![], -1, 1_000).await.unwrap_err();
        assert_eq!(e.code(), ktb_protocol::error_code::UNKNOWN_SERVER_ERROR);
        store.fail_flush.store(false, Ordering::SeqCst);
        let listed = tokens.describe(None, &alice, true).await.unwrap();
        assert_eq!(listed.len(), 1, "the failed token is not listed");
        assert_eq!(tokens.len(), 1, "nor indexed");
        tokens.create(alice.clone(), alice.clone(), vec![], -1, 1_000).await.unwrap();
        assert_eq!(tokens.describe(None, &alice, false).await.unwrap().len(), 2);
    }

    /// T-PERSIST-2: a store written by an earlier build, with index keys beside the
    /// records, opens with every token, and the old index keys are removed.
    #[tokio::test]
    async fn t_persist_2_earlier_layout_is_migrated() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Arc::new(SledStore::open(tmp.path()).unwrap());
        let t = TokenDetails {
            token_id: "bxw-KptNTH6KHys8TV5vcA".into(),
            owner: Principal::user("alice"),
            requester: Principal::user("admin"),
            renewers: vec![Principal::user("bob")],
            issue_ts: 0,
            max_ts: 10_000,
            expiry_ts: 5_000,
            hmac_alg: HmacAlgorithm::Sha1,
            key_id: String::new(),
        };
        store
            .apply_now(vec![
                Op::Put(token_key(&t.token_id), record::encode(&t)),
                Op::Put(b"tpr/\0\0\0\x04User\0\0\0\x05alicebxw-KptNTH6KHys8TV5vcA".to_vec(), Vec::new()),
                Op::Put(b"tex/\x80\0\0\0\0\0\x13\x88bxw-KptNTH6KHys8TV5vcA".to_vec(), Vec::new()),
                Op::Put(b"usr/other".to_vec(), b"kept".to_vec()),
            ])
            .unwrap();
        remove_legacy_index_keys(&store).unwrap();
        let tokens = open(store.clone()).await;
        assert_eq!(tokens.len(), 1);
        let found = tokens.describe(Some(&[Principal::user("bob")]), &Principal::user("bob"), false).await.unwrap();
        assert_eq!(found.into_iter().map(|(t, _)| t).collect::<Vec<_>>(), [t]);
        assert!(store.keys_with_prefix(b"tpr/", 1).unwrap().is_empty());
        assert!(store.keys_with_prefix(b"tex/", 1).unwrap().is_empty());
        assert_eq!(
            store.get(b"usr/other").await.unwrap().map(|v| v.value),
            Some(b"kept".to_vec()),
            "other records stay"
        );
    }
}
