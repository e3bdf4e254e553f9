//! Delegation tokens: their lifecycle and arithmetic (SPEC §4), the HMAC index used to
//! find a token by its authenticator (T-INDEX-1) and the SCRAM credentials of token
//! logins (T-TLOGIN-2).
//!
//! Every change is applied to the store under one short lock, so Create, Renew, Expire
//! and the sweep are linearizable (T-CONC-1); the caller is answered only after a group
//! commit has made the change durable (T-PERSIST-1). The lock is not held while waiting
//! for the flush, so concurrent writers share one.
//!
//! A token is one record under one key, so each change is a single-key write: sled's
//! batch path costs several times a plain insert and writes ten times the bytes
//! (`cargo bench --bench sled_write`), and a create that also wrote index keys had to be
//! a batch. The indexes Describe and the sweep need (by principal, by expiry) are kept in
//! memory beside the HMAC index, under the write lock, and rebuilt from the records at
//! startup.

mod record;
mod secret;
pub mod sweeper;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use dashmap::DashMap;
use ktb_protocol::scram::{MIN_ITERATIONS, ScramCredential, ScramMechanism, Secret};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tracing::{error, info};

pub use record::TokenDetails;
pub use secret::{MasterSecret, SECRET_FILE};

use crate::auth::Principal;
use crate::config::{Config, HmacAlgorithm};
use crate::store::{GroupCommit, Op, Store, StoreError};
use record::{LEGACY_INDEX_PREFIXES, TOKEN_PREFIX, token_key};

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

/// The token lifetimes a Create request asks for (T-CREATE-2, T-CREATE-3): issue, max
/// and expiry timestamps. Additions saturate (D-7).
pub fn create_times(settings: &TokenSettings, requested_max_lifetime_ms: i64, now: i64) -> (i64, i64, i64) {
    let mut max_life = settings.max_lifetime_ms;
    if requested_max_lifetime_ms > 0 {
        max_life = max_life.min(requested_max_lifetime_ms);
    }
    let max_ts = now.saturating_add(max_life);
    (now, max_ts, max_ts.min(now.saturating_add(settings.expiry_time_ms)))
}

/// The expiry after a renewal at `now` (T-RENEW-1, T-RENEW-2): never past the server's
/// renew interval, never past `max_ts`.
pub fn renewed_expiry(settings: &TokenSettings, max_ts: i64, requested_period_ms: i64, now: i64) -> i64 {
    let mut period = settings.expiry_time_ms;
    if requested_period_ms > 0 {
        period = period.min(requested_period_ms);
    }
    max_ts.min(now.saturating_add(period))
}

/// The SHA-256 of an HMAC: the key of the in-memory index (T-INDEX-1).
fn index_key(hmac: &[u8]) -> [u8; 32] {
    Sha256::digest(hmac).into()
}

/// A token id shared by the in-memory indexes.
type Id = Arc<str>;

/// A multiply-rotate hasher for keys the broker draws at random itself (token ids, the
/// SHA-256 of HMACs): nobody can choose them to collide, so the keyed SipHash of std,
/// which dominated loading a million tokens at startup, buys nothing here.
#[derive(Default, Clone, Copy)]
struct RandomKeyHasher(u64);

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
type HmacIndex = DashMap<[u8; 32], Id, RandomKeys>;

/// The in-memory indexes over the stored tokens, changed together with the store under
/// the write lock.
#[derive(Default)]
struct Indexes {
    /// Every token naming a principal as owner, requester or renewer (Describe).
    by_principal: HashMap<Principal, IdSet>,
    /// Tokens by expiry time (the sweep).
    by_expiry: BTreeSet<(i64, Id)>,
    /// How many tokens each owner has (D-20's `ktb.token.max.per.owner`).
    owned: HashMap<Principal, usize>,
}

impl Indexes {
    fn add(&mut self, t: &TokenDetails, id: &Id) {
        self.add_principals(t, id);
        self.by_expiry.insert((t.expiry_ts, id.clone()));
    }

    fn add_principals(&mut self, t: &TokenDetails, id: &Id) {
        *self.owned.entry(t.owner.clone()).or_default() += 1;
        for p in t.principals() {
            match self.by_principal.get_mut(p) {
                Some(ids) => ids.insert(id.clone()),
                None => self.by_principal.entry(p.clone()).or_default().insert(id.clone()),
            };
        }
    }

    fn remove(&mut self, t: &TokenDetails) {
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
    fn remove_expiry(&mut self, expiry_ts: i64, id: &str) -> Option<Id> {
        self.by_expiry.take(&(expiry_ts, Id::from(id))).map(|(_, id)| id)
    }

    fn move_expiry(&mut self, old_expiry: i64, t: &TokenDetails) {
        let id = self.remove_expiry(old_expiry, &t.token_id).unwrap_or_else(|| Id::from(t.token_id.as_str()));
        self.by_expiry.insert((t.expiry_ts, id));
    }

    /// How many tokens `owner` owns.
    fn owned_by(&self, owner: &Principal) -> usize {
        self.owned.get(owner).copied().unwrap_or(0)
    }

    /// The ids of the tokens naming any of `principals`, each once, in id order.
    fn naming(&self, principals: &[Principal]) -> BTreeSet<Id> {
        principals.iter().filter_map(|p| self.by_principal.get(p)).flatten().cloned().collect()
    }

    /// The first `limit` entries with an expiry before `now`, earliest first.
    fn expired_before(&self, now: i64, limit: usize) -> Vec<(i64, Id)> {
        self.by_expiry.range(..(now, Id::from(""))).take(limit).cloned().collect()
    }
}

/// All the broker's delegation tokens.
pub struct Tokens {
    store: Arc<dyn Store>,
    commit: GroupCommit,
    secret: Option<MasterSecret>,
    settings: TokenSettings,
    /// SHA-256(HMAC) → token id, for Renew and Expire. Rebuilt at startup, never stored.
    by_hmac: HmacIndex,
    /// The derived SCRAM credential of each token and mechanism that has logged in.
    scram: DashMap<(String, ScramMechanism), Arc<ScramCredential>>,
    /// Serializes changes (T-CONC-1) and guards the indexes that go with them; held for
    /// microseconds, never across a flush.
    state: Mutex<Indexes>,
    /// Key derivations of first token logins (T-LIMIT-6) and the key of their salts
    /// (T-REVEAL-1).
    logins: LoginKeys,
    /// One signal per token that has sessions, carrying the token's expiry and
    /// [`DELETED`] once it is deleted, so its connections close when it expires or goes
    /// (D-22).
    revocations: DashMap<String, tokio::sync::watch::Sender<i64>>,
}

/// What token logins need beyond the tokens: the pool their key derivations run on and
/// the key their salts are derived from.
#[derive(Clone)]
pub struct LoginKeys {
    /// The bounded key-derivation pool (T-LIMIT-6).
    pub kdf: Arc<crate::auth::kdf::KdfPool>,
    /// The fake-salt key of the data dir (T-REVEAL-1).
    pub salt_key: [u8; 32],
}

/// A token found for a login: its credential and details.
pub struct TokenLogin {
    /// The SCRAM credential derived from the token's HMAC.
    pub credential: ScramCredential,
    /// The token.
    pub details: TokenDetails,
}

impl Tokens {
    /// Loads every token from `store` and rebuilds the HMAC index (T-PERSIST-4).
    /// `secret` is `None` when delegation tokens are disabled.
    pub fn open(
        store: Arc<dyn Store>,
        commit: GroupCommit,
        secret: Option<MasterSecret>,
        settings: TokenSettings,
        logins: LoginKeys,
    ) -> Result<Tokens, StoreError> {
        remove_legacy_index_keys(store.as_ref())?;
        let (indexes, by_hmac) = load_indexes(store.as_ref(), secret.as_ref())?;
        Ok(Tokens {
            store,
            commit,
            secret,
            settings,
            by_hmac,
            scram: DashMap::new(),
            state: Mutex::new(indexes),
            logins,
            revocations: DashMap::new(),
        })
    }

    /// The expiry of token `id` as it changes, [`DELETED`] once the token is deleted
    /// (D-22); connections that logged in with the token watch it. A token that is not
    /// live gets a signal that says so at once, and leaves nothing behind.
    pub fn revocation(&self, id: &str, now: i64) -> tokio::sync::watch::Receiver<i64> {
        use dashmap::mapref::entry::Entry;
        // The entry's shard stays locked while liveness is checked, so a deletion either
        // comes before (and nothing is added) or finds the entry and signals it.
        match self.revocations.entry(id.to_owned()) {
            Entry::Occupied(e) => e.get().subscribe(),
            Entry::Vacant(e) => match self.live_until(id, now) {
                Some(expiry) => e.insert(tokio::sync::watch::channel(expiry).0).subscribe(),
                None => tokio::sync::watch::channel(DELETED).1,
            },
        }
    }

    /// Tells the sessions of token `id` its new expiry (D-22).
    fn notify_expiry(&self, id: &str, expiry_ts: i64) {
        if let Some(signal) = self.revocations.get(id) {
            signal.send_replace(expiry_ts);
        }
    }

    /// True when a master secret is configured (T-ENABLE-1).
    pub fn enabled(&self) -> bool {
        self.secret.is_some()
    }

    /// The settings in force.
    pub fn settings(&self) -> &TokenSettings {
        &self.settings
    }

    /// How many tokens the HMAC index holds.
    pub fn len(&self) -> usize {
        self.by_hmac.len()
    }

    /// True when there are no tokens.
    pub fn is_empty(&self) -> bool {
        self.by_hmac.is_empty()
    }

    fn lock(&self) -> MutexGuard<'_, Indexes> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn secret(&self) -> Result<&MasterSecret, TokenError> {
        self.secret.as_ref().ok_or(TokenError::Disabled)
    }

    /// Owner or renewer, or a super user when D-13 is on: who may renew or expire `t`.
    fn may_manage(&self, t: &TokenDetails, requester: &Principal, super_user: bool) -> bool {
        t.may_renew(requester) || (super_user && self.settings.superuser_manage)
    }

    /// The HMAC of token `t`.
    fn hmac_of(&self, secret: &MasterSecret, t: &TokenDetails) -> Secret {
        secret.token_hmac(t.hmac_alg, &t.token_id)
    }

    fn get(&self, id: &str) -> Result<Option<TokenDetails>, StoreError> {
        self.store.get(&token_key(id))?.map(|v| record::decode(id, &v)).transpose()
    }

    /// The live-or-expired (not yet deleted) token whose HMAC is exactly `hmac`.
    fn find_by_hmac(&self, secret: &MasterSecret, hmac: &[u8]) -> Result<Option<TokenDetails>, StoreError> {
        let Some(id) = self.by_hmac.get(&index_key(hmac)).map(|e| e.value().clone()) else { return Ok(None) };
        let Some(t) = self.get(&id)? else { return Ok(None) };
        let matches = bool::from(self.hmac_of(secret, &t).expose().ct_eq(hmac));
        Ok(matches.then_some(t))
    }

    /// The write that stores `t`.
    fn put_op(t: &TokenDetails) -> Op {
        Op::Put(token_key(&t.token_id), record::encode(t))
    }

    /// The write that deletes `t`.
    fn delete_op(t: &TokenDetails) -> Op {
        Op::Delete(token_key(&t.token_id))
    }

    /// Drops the in-memory traces of a deleted token (T-EXPIRE-4, T-TLOGIN-2); the
    /// caller holds the write lock, whose indexes are `indexes`.
    fn forget(&self, indexes: &mut Indexes, t: &TokenDetails) {
        indexes.remove(t);
        if let Some(secret) = &self.secret {
            self.by_hmac.remove(&index_key(self.hmac_of(secret, t).expose()));
        }
        self.forget_credentials(&t.token_id);
        self.revoke_sessions(&t.token_id);
    }

    fn forget_credentials(&self, id: &str) {
        for m in [ScramMechanism::Sha256, ScramMechanism::Sha512] {
            self.scram.remove(&(id.to_owned(), m));
        }
    }

    /// Ends the sessions of a deleted token (D-22).
    fn revoke_sessions(&self, id: &str) {
        if let Some((_, signal)) = self.revocations.remove(id) {
            signal.send_replace(DELETED);
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
        let secret = self.secret()?;
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
            key_id: String::new(),
        };
        // Everything that grows with the renewers is done before the lock (T-LIMIT-4).
        let mut encoded = record::encode(&t);
        if encoded.len() > record::MAX_RECORD_BYTES {
            return Err(TokenError::LimitExceeded(format!(
                "the token's principal names take {} bytes, over the {} a token may have",
                encoded.len(),
                record::MAX_RECORD_BYTES
            )));
        }
        let (token, hmac) = {
            let mut indexes = self.lock();
            if indexes.owned_by(&t.owner) >= self.settings.max_per_owner {
                return Err(TokenError::LimitExceeded(format!(
                    "{} owns {} tokens, the most ktb.token.max.per.owner allows",
                    t.owner.logged(),
                    self.settings.max_per_owner
                )));
            }
            self.commit.note_write();
            // A fresh id never names a stored token; `put_new` makes sure of it in the
            // same step as the write (the id is in the key, not the record).
            while !self.store.put_new(&token_key(&t.token_id), std::mem::take(&mut encoded))? {
                t.token_id = crate::ids::random_kafka_id();
                encoded = record::encode(&t);
            }
            // Indexed together with the write, under the same lock, so every later sweep
            // or delete of the token also removes its index entries.
            let id = Id::from(t.token_id.as_str());
            indexes.add(&t, &id);
            let hmac = self.hmac_of(secret, &t);
            self.by_hmac.insert(index_key(hmac.expose()), id);
            (t, hmac)
        };
        if let Err(e) = self.commit.durable().await {
            let mut indexes = self.lock();
            if let Err(undo) = self.store.apply(vec![Self::delete_op(&token)]) {
                error!(token_id = %token.token_id, "cannot withdraw the token that failed to persist: {undo}");
            }
            self.forget(&mut indexes, &token);
            error!(token_id = %token.token_id, "token not created: the store could not make it durable: {e}");
            return Err(e.into());
        }
        log_event(&token, "token created");
        Ok((token, hmac))
    }

    /// Renews the token with this HMAC for `requester` (SPEC §4.7 checks 2–6); returns the
    /// new expiry once it is durable.
    pub async fn renew(
        &self,
        hmac: &[u8],
        requester: &Principal,
        super_user: bool,
        requested_period_ms: i64,
        now: i64,
    ) -> Result<i64, TokenError> {
        let secret = self.secret()?;
        let token = {
            let mut indexes = self.lock();
            let mut t = self.find_by_hmac(secret, hmac)?.ok_or(TokenError::NotFound)?;
            if t.is_expired(now) {
                return Err(TokenError::Expired);
            }
            if !self.may_manage(&t, requester, super_user) {
                return Err(TokenError::OwnerMismatch);
            }
            let old_expiry = t.expiry_ts;
            t.expiry_ts = renewed_expiry(&self.settings, t.max_ts, requested_period_ms, now);
            self.commit.note_write();
            self.store.apply(vec![Self::put_op(&t)])?;
            indexes.move_expiry(old_expiry, &t);
            // Under the lock, so sessions hear expiries in the order they were stored.
            self.notify_expiry(&t.token_id, t.expiry_ts);
            t
        };
        self.commit.durable().await?;
        info!(token_id = %token.token_id, owner = %token.owner.logged(), by = %requester.logged(), expiry_timestamp_ms = token.expiry_ts, "token renewed");
        Ok(token.expiry_ts)
    }

    /// Expires the token with this HMAC (SPEC §4.8 checks 2–4, T-EXPIRE-1..4): a negative
    /// period deletes it, otherwise its expiry becomes `min(max, now + period)`. Returns
    /// the resulting expiry once the change is durable.
    pub async fn expire(
        &self,
        hmac: &[u8],
        requester: &Principal,
        super_user: bool,
        period_ms: i64,
        now: i64,
    ) -> Result<i64, TokenError> {
        let secret = self.secret()?;
        let (token, deleted) = {
            let mut indexes = self.lock();
            let mut t = self.find_by_hmac(secret, hmac)?.ok_or(TokenError::NotFound)?;
            if !self.may_manage(&t, requester, super_user) {
                return Err(TokenError::OwnerMismatch);
            }
            if period_ms < 0 {
                self.commit.note_write();
                self.store.apply(vec![Self::delete_op(&t)])?;
                self.forget(&mut indexes, &t);
                t.expiry_ts = now;
                (t, true)
            } else {
                if t.is_expired(now) {
                    return Err(TokenError::Expired);
                }
                let old_expiry = t.expiry_ts;
                t.expiry_ts = t.max_ts.min(now.saturating_add(period_ms));
                self.commit.note_write();
                self.store.apply(vec![Self::put_op(&t)])?;
                indexes.move_expiry(old_expiry, &t);
                self.notify_expiry(&t.token_id, t.expiry_ts);
                (t, false)
            }
        };
        self.commit.durable().await?;
        let what = if deleted { "token expired and deleted" } else { "token expiry changed" };
        info!(token_id = %token.token_id, owner = %token.owner.logged(), by = %requester.logged(), expiry_timestamp_ms = token.expiry_ts, "{what}");
        Ok(token.expiry_ts)
    }

    /// The tokens `requester` may see (SPEC §4.9 check 4, T-DESC-1..3), each with its
    /// HMAC, ordered by issue time then id. `owners` is the request's filter: `None` for
    /// "everything I may see"; an empty slice is answered by the caller. Answers only once
    /// everything it read is durable, so it never shows a change that could still be lost.
    pub async fn describe(
        &self,
        owners: Option<&[Principal]>,
        requester: &Principal,
        super_user: bool,
    ) -> Result<Vec<(TokenDetails, Secret)>, TokenError> {
        let secret = self.secret()?;
        let mut found: Vec<TokenDetails> = match owners {
            None if super_user => self
                .store
                .scan_prefix(TOKEN_PREFIX)?
                .into_iter()
                .map(|(k, v)| record::decode(&String::from_utf8_lossy(&k[TOKEN_PREFIX.len()..]), &v))
                .collect::<Result<_, _>>()?,
            None => self.naming(std::slice::from_ref(requester))?,
            Some(owners) => {
                // A set: many owners cost one pass over each token's principals (T-LIMIT-1).
                let wanted: HashSet<&Principal> = owners.iter().collect();
                let distinct: Vec<Principal> = wanted.iter().map(|p| (*p).clone()).collect();
                self.naming(&distinct)?
                    .into_iter()
                    .filter(|t| t.principals().iter().any(|p| wanted.contains(p)))
                    .filter(|t| super_user || t.owner_or_renewer(requester))
                    .collect()
            }
        };
        self.commit.settled().await?;
        found.sort_by(|a, b| (a.issue_ts, &a.token_id).cmp(&(b.issue_ts, &b.token_id)));
        Ok(found
            .into_iter()
            .map(|t| {
                let hmac = self.hmac_of(secret, &t);
                (t, hmac)
            })
            .collect())
    }

    /// Every token naming one of `principals` as owner, requester or renewer, each once,
    /// read through the principal index.
    fn naming(&self, principals: &[Principal]) -> Result<Vec<TokenDetails>, StoreError> {
        let ids = self.lock().naming(principals);
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            // A token deleted between the two reads is simply not listed.
            out.extend(self.get(&id)?);
        }
        Ok(out)
    }

    /// The expiry of token `token_id` if it exists and is live at `now` (D-2: checked
    /// again when a token login completes; D-22: when a session subscribes to the token and
    /// when its expiry passes).
    /// Reads only the record's timestamps.
    pub fn live_until(&self, token_id: &str, now: i64) -> Option<i64> {
        self.secret.as_ref()?;
        match self.store.get(&token_key(token_id)) {
            Ok(v) => {
                let (max_ts, expiry_ts) = record::times(&v?)?;
                (!record::expired(max_ts, expiry_ts, now)).then_some(expiry_ts)
            }
            Err(e) => {
                error!("token lookup failed: {e}");
                None
            }
        }
    }

    /// The SCRAM credential for a token login as `token_id` with `mech` (T-TLOGIN-2,
    /// T-TLOGIN-3): `None` when tokens are disabled or the token is unknown or expired.
    /// The credential is derived on a token's first login per mechanism (one PBKDF2 of
    /// 4096 iterations, off the async workers) and kept in memory until the token goes.
    pub async fn login(&self, token_id: &str, mech: ScramMechanism, now: i64) -> Option<TokenLogin> {
        let secret = self.secret.as_ref()?;
        let details = match self.get(token_id) {
            Ok(Some(t)) => t,
            Ok(None) => return None,
            Err(e) => {
                error!("token lookup failed: {e}");
                return None;
            }
        };
        if details.is_expired(now) {
            self.forget_credentials(token_id);
            return None;
        }
        let key = (token_id.to_owned(), mech);
        if let Some(c) = self.scram.get(&key) {
            return Some(TokenLogin { credential: (**c).clone(), details });
        }
        let password = STANDARD.encode(self.hmac_of(secret, &details).expose());
        // The salt a fake for this name would show, so a token's server-first looks the
        // same live, expired or unknown, and across restarts (T-REVEAL-1).
        let salt = ktb_protocol::scram::fake_salt(&self.logins.salt_key, mech, token_id);
        let derived = match self
            .logins
            .kdf
            .run(crate::auth::kdf::Work::TokenLogin, move || {
                ScramCredential::from_password(mech, password.as_bytes(), salt, MIN_ITERATIONS)
            })
            .await
        {
            Ok(derived) => derived,
            Err(busy) => {
                info!(token_id = %crate::logsafe::Untrusted(token_id), "token login refused: {busy}");
                return None;
            }
        };
        self.scram.insert(key.clone(), Arc::new(derived.clone()));
        // A token deleted while its credential was derived must not leave it cached.
        if !matches!(self.get(token_id), Ok(Some(_))) {
            self.scram.remove(&key);
            return None;
        }
        Some(TokenLogin { credential: derived, details })
    }

    /// The store changes that delete every token expired at `now` (T-SWEEP-1), at most
    /// `limit` of them, applied under the write lock. Returns the deleted tokens.
    fn sweep_apply(&self, now: i64, limit: usize) -> Result<Vec<TokenDetails>, StoreError> {
        let mut indexes = self.lock();
        let mut gone = Vec::new();
        // Expiry never passes max, so `expiry < now` finds every expired token.
        for (expiry_ts, id) in indexes.expired_before(now, limit) {
            match self.get(&id)? {
                Some(t) if t.is_expired(now) => gone.push(t),
                // An entry that does not match its token is dropped; the token stays.
                Some(t) if t.expiry_ts == expiry_ts => {}
                _ => {
                    indexes.remove_expiry(expiry_ts, &id);
                }
            }
        }
        if gone.is_empty() {
            return Ok(gone);
        }
        self.commit.note_write();
        self.store.apply(gone.iter().map(Self::delete_op).collect())?;
        for t in &gone {
            self.forget(&mut indexes, t);
        }
        Ok(gone)
    }

    fn log_swept(gone: &[TokenDetails]) {
        for t in gone {
            log_event(t, "token swept");
        }
    }

    /// Deletes every token expired at `now`, durably; returns how many.
    pub async fn sweep(self: Arc<Self>, now: i64) -> Result<usize, StoreError> {
        let mut total = 0;
        loop {
            let tokens = self.clone();
            let gone = tokio::task::spawn_blocking(move || tokens.sweep_apply(now, SWEEP_BATCH))
                .await
                .map_err(|e| StoreError::Io(format!("the sweep task failed: {e}")))??;
            if gone.is_empty() {
                return Ok(total);
            }
            self.commit.durable().await?;
            Self::log_swept(&gone);
            total += gone.len();
        }
    }

    /// [`Tokens::sweep`] for startup, before the runtime serves anything.
    pub fn sweep_at_startup(&self, now: i64) -> Result<usize, StoreError> {
        let mut total = 0;
        loop {
            let gone = self.sweep_apply(now, SWEEP_BATCH)?;
            if gone.is_empty() {
                return Ok(total);
            }
            self.store.flush()?;
            Self::log_swept(&gone);
            total += gone.len();
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

/// Writes `tokens` straight into `store` in large batches and flushes: the bulk path for
/// loading many tokens into a stopped broker's store (the load generator's 1M-token
/// store). A running broker must not share the store.
pub fn bulk_load(store: &dyn Store, tokens: impl Iterator<Item = TokenDetails>) -> Result<usize, StoreError> {
    let mut ops = Vec::new();
    let mut n = 0;
    for t in tokens {
        ops.push(Tokens::put_op(&t));
        n += 1;
        if ops.len() >= 10_000 {
            store.apply(std::mem::take(&mut ops))?;
        }
    }
    store.apply(ops)?;
    store.flush()?;
    Ok(n)
}

/// Reads every token record and builds the in-memory indexes (T-PERSIST-4, T-INDEX-1):
/// this thread reads the store while a second one decodes the records and indexes them,
/// so a large store loads in about the time of reading it.
fn load_indexes(store: &dyn Store, secret: Option<&MasterSecret>) -> Result<(Indexes, HmacIndex), StoreError> {
    const BATCH: usize = 1024;
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<(Vec<u8>, Vec<u8>)>>(8);
    std::thread::scope(|scope| {
        let indexer = scope.spawn(move || {
            let mut indexes = Indexes::default();
            let by_hmac = DashMap::default();
            // Collected and sorted once at the end: far cheaper than a million inserts.
            let mut by_expiry = Vec::new();
            for batch in rx {
                for (k, v) in batch {
                    let t = record::decode(&String::from_utf8_lossy(&k[TOKEN_PREFIX.len()..]), &v)?;
                    let id = Id::from(t.token_id.as_str());
                    if let Some(secret) = secret {
                        by_hmac.insert(index_key(secret.token_hmac(t.hmac_alg, &t.token_id).expose()), id.clone());
                    }
                    indexes.add_principals(&t, &id);
                    by_expiry.push((t.expiry_ts, id));
                }
            }
            indexes.by_expiry = by_expiry.into_iter().collect();
            Ok::<_, StoreError>((indexes, by_hmac))
        });
        let mut batch = Vec::with_capacity(BATCH);
        let read = store.for_each_prefix(TOKEN_PREFIX, &mut |k, v| {
            batch.push((k.to_vec(), v.to_vec()));
            if batch.len() == BATCH {
                // A send fails only when the indexer stopped on an error, reported below.
                let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
                tx.send(full).map_err(|_| StoreError::Io("the token indexer stopped".into()))?;
            }
            Ok(())
        });
        let _ = tx.send(batch);
        drop(tx);
        let indexed = indexer.join().map_err(|_| StoreError::Io("the token indexer thread panicked".into()))??;
        read?;
        Ok(indexed)
    })
}

/// Deletes the index keys that earlier builds stored beside the token records (the
/// indexes are rebuilt in memory now); the tokens themselves stay.
fn remove_legacy_index_keys(store: &dyn Store) -> Result<(), StoreError> {
    let mut removed = false;
    for prefix in LEGACY_INDEX_PREFIXES {
        let mut end = prefix.to_vec();
        *end.last_mut().expect("a non-empty prefix") += 1;
        loop {
            let keys = store.scan_range(prefix, &end, 10_000)?;
            if keys.is_empty() {
                break;
            }
            store.apply(keys.into_iter().map(|(k, _)| Op::Delete(k)).collect())?;
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

/// The most tokens one sweep batch deletes (the write lock is held for one batch).
const SWEEP_BATCH: usize = 1_000;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Record, SledStore};
    use std::sync::atomic::{AtomicBool, Ordering};

    /// A sled store whose flush can be made to fail.
    struct FlakyStore {
        inner: SledStore,
        fail_flush: AtomicBool,
    }

    impl Store for FlakyStore {
        fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
            self.inner.get(key)
        }
        fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<Record>, StoreError> {
            self.inner.scan_prefix(prefix)
        }
        fn scan_range(&self, start: &[u8], end: &[u8], limit: usize) -> Result<Vec<Record>, StoreError> {
            self.inner.scan_range(start, end, limit)
        }
        fn any_with_prefix(&self, prefix: &[u8]) -> Result<bool, StoreError> {
            self.inner.any_with_prefix(prefix)
        }
        fn apply(&self, ops: Vec<Op>) -> Result<(), StoreError> {
            self.inner.apply(ops)
        }
        fn flush(&self) -> Result<(), StoreError> {
            if self.fail_flush.load(Ordering::SeqCst) {
                return Err(StoreError::Io("injected flush failure".into()));
            }
            self.inner.flush()
        }
    }

    /// T-CREATE-6, T-PERSIST-1: when the store cannot make a new token durable the answer
    /// is −1 and the token is neither indexed nor listed; the store recovers afterwards.
    #[tokio::test]
    async fn t_create_6_unflushed_create_is_refused_and_undone() {
        let tmp = tempfile::tempdir().unwrap();
        let flaky = Arc::new(FlakyStore { inner: SledStore::open(tmp.path()).unwrap(), fail_flush: false.into() });
        let store: Arc<dyn Store> = flaky.clone();
        let tokens =
            Tokens::open(store.clone(), GroupCommit::start(store).unwrap(), Some(MasterSecret::new("s")), S, keys())
                .unwrap();
        let alice = Principal::user("alice");
        tokens.create(alice.clone(), alice.clone(), vec![], -1, 1_000).await.unwrap();
        flaky.fail_flush.store(true, Ordering::SeqCst);
        let e = tokens.create(alice.clone(), alice.clone(), vec![], -1, 1_000).await.unwrap_err();
        assert_eq!(e.code(), ktb_protocol::error_code::UNKNOWN_SERVER_ERROR);
        flaky.fail_flush.store(false, Ordering::SeqCst);
        assert_eq!(tokens.len(), 1, "the failed token is not indexed");
        assert_eq!(tokens.describe(None, &alice, true).await.unwrap().len(), 1, "nor listed");
        tokens.create(alice.clone(), alice.clone(), vec![], -1, 1_000).await.unwrap();
        assert_eq!(tokens.describe(None, &alice, false).await.unwrap().len(), 2);
    }

    fn keys() -> LoginKeys {
        LoginKeys { kdf: crate::auth::kdf::KdfPool::start(1, 8).unwrap(), salt_key: [3; 32] }
    }

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

    /// T-PERSIST-2: a store written by an earlier build, with index keys beside the
    /// records, opens with every token, and the old index keys are removed.
    #[tokio::test]
    async fn t_persist_2_earlier_layout_is_migrated() {
        let tmp = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(SledStore::open(tmp.path()).unwrap());
        let t = token("bxw-KptNTH6KHys8TV5vcA", "alice", &["bob"], 5_000);
        store
            .apply_durable(vec![
                Tokens::put_op(&t),
                Op::Put(b"tpr/\0\0\0\x04User\0\0\0\x05alicebxw-KptNTH6KHys8TV5vcA".to_vec(), Vec::new()),
                Op::Put(b"tex/\x80\0\0\0\0\0\x13\x88bxw-KptNTH6KHys8TV5vcA".to_vec(), Vec::new()),
                Op::Put(b"usr/other".to_vec(), b"kept".to_vec()),
            ])
            .unwrap();
        let tokens = Tokens::open(
            store.clone(),
            GroupCommit::start(store.clone()).unwrap(),
            Some(MasterSecret::new("s")),
            S,
            keys(),
        )
        .unwrap();
        assert_eq!(tokens.len(), 1);
        let found = tokens.describe(Some(&[Principal::user("bob")]), &Principal::user("bob"), false).await.unwrap();
        assert_eq!(found.into_iter().map(|(t, _)| t).collect::<Vec<_>>(), [t]);
        assert!(!store.any_with_prefix(b"tpr/").unwrap() && !store.any_with_prefix(b"tex/").unwrap());
        assert_eq!(store.get(b"usr/other").unwrap(), Some(b"kept".to_vec()), "other records stay");
    }

    const S: TokenSettings = TokenSettings {
        max_lifetime_ms: 7 * 86_400_000,
        expiry_time_ms: 86_400_000,
        hmac_alg: HmacAlgorithm::Sha1,
        superuser_manage: false,
        max_renewers: 64,
        max_per_owner: 10_000,
    };

    /// T-CREATE-2, T-CREATE-3: lifetimes, clamps and saturation.
    #[test]
    fn t_create_3_lifetime_arithmetic() {
        let now = 1_000_000;
        assert_eq!(create_times(&S, -1, now), (now, now + 7 * 86_400_000, now + 86_400_000));
        assert_eq!(create_times(&S, 0, now), create_times(&S, -1, now), "0 means the server default");
        assert_eq!(create_times(&S, 3_600_000, now), (now, now + 3_600_000, now + 3_600_000), "expiry capped by max");
        assert_eq!(create_times(&S, 30 * 86_400_000, now).1, now + 7 * 86_400_000, "cannot exceed the server max");
        let huge = TokenSettings { max_lifetime_ms: i64::MAX, expiry_time_ms: i64::MAX, ..S };
        assert_eq!(create_times(&huge, -1, now), (now, i64::MAX, i64::MAX), "D-7: saturating");
    }

    /// T-RENEW-1, T-RENEW-2: the period is capped by the server's renew interval and max.
    #[test]
    fn t_renew_1_period_is_capped() {
        let now = 1_000_000;
        let max = now + 3 * 86_400_000;
        assert_eq!(renewed_expiry(&S, max, -1, now), now + 86_400_000);
        assert_eq!(renewed_expiry(&S, max, 0, now), now + 86_400_000);
        assert_eq!(renewed_expiry(&S, max, 5_000, now), now + 5_000);
        assert_eq!(renewed_expiry(&S, max, 10 * 86_400_000, now), now + 86_400_000, "never past the interval");
        assert_eq!(renewed_expiry(&S, now + 10, 5_000, now), now + 10, "never past max");
        assert_eq!(renewed_expiry(&S, i64::MAX, i64::MAX, i64::MAX - 1), i64::MAX, "D-7: saturating");
    }
}
