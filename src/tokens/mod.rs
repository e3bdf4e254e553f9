//! Delegation tokens: their lifecycle and arithmetic (SPEC §4), the HMAC index used to
//! find a token by its authenticator (T-INDEX-1) and the SCRAM credentials of token
//! logins (T-TLOGIN-2).
//!
//! Every change is applied to the store under one short lock, so Create, Renew, Expire
//! and the sweep are linearizable (T-CONC-1); the caller is answered only after a group
//! commit has made the change durable (T-PERSIST-1). The lock is not held while waiting
//! for the flush, so concurrent writers share one.

mod record;
mod secret;
pub mod sweeper;

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
use record::{
    EXPIRY_PREFIX, TOKEN_PREFIX, expiry_bound, expiry_key, id_from_expiry_key, id_from_principal_key, principal_key,
    principal_prefix, token_key,
};

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
}

impl TokenSettings {
    /// The settings in `config`.
    pub fn from_config(config: &Config) -> TokenSettings {
        TokenSettings {
            max_lifetime_ms: config.token_max_lifetime_ms,
            expiry_time_ms: config.token_expiry_time_ms,
            hmac_alg: config.token_hmac_algorithm,
            superuser_manage: config.superuser_manage_tokens,
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

/// All the broker's delegation tokens.
pub struct Tokens {
    store: Arc<dyn Store>,
    commit: GroupCommit,
    secret: Option<MasterSecret>,
    settings: TokenSettings,
    /// SHA-256(HMAC) → token id, for Renew and Expire. Rebuilt at startup, never stored.
    by_hmac: DashMap<[u8; 32], String>,
    /// The derived SCRAM credential of each token and mechanism that has logged in.
    scram: DashMap<(String, ScramMechanism), Arc<ScramCredential>>,
    /// Serializes changes (T-CONC-1); held for microseconds, never across a flush.
    writes: Mutex<()>,
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
    ) -> Result<Tokens, StoreError> {
        let tokens = Tokens {
            store,
            commit,
            secret,
            settings,
            by_hmac: DashMap::new(),
            scram: DashMap::new(),
            writes: Mutex::new(()),
        };
        if let Some(secret) = &tokens.secret {
            tokens.store.for_each_prefix(TOKEN_PREFIX, &mut |k, v| {
                let id = String::from_utf8_lossy(&k[TOKEN_PREFIX.len()..]).into_owned();
                let alg = record::hmac_algorithm(&id, v)?;
                tokens.by_hmac.insert(index_key(secret.token_hmac(alg, &id).expose()), id);
                Ok(())
            })?;
        }
        Ok(tokens)
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

    fn lock(&self) -> MutexGuard<'_, ()> {
        self.writes.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
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

    /// The puts that store `t` with its index entries.
    fn put_ops(t: &TokenDetails) -> Vec<Op> {
        let mut ops = vec![
            Op::Put(token_key(&t.token_id), record::encode(t)),
            Op::Put(expiry_key(t.expiry_ts, &t.token_id), Vec::new()),
        ];
        ops.extend(t.principals().into_iter().map(|p| Op::Put(principal_key(p, &t.token_id), Vec::new())));
        ops
    }

    /// The deletes that remove `t` and its index entries.
    fn delete_ops(t: &TokenDetails) -> Vec<Op> {
        let mut ops = vec![Op::Delete(token_key(&t.token_id)), Op::Delete(expiry_key(t.expiry_ts, &t.token_id))];
        ops.extend(t.principals().into_iter().map(|p| Op::Delete(principal_key(p, &t.token_id))));
        ops
    }

    /// The changes that store `t` with its new expiry, moving its expiry-index entry from
    /// `old_expiry` (the delete comes first, in case the two are equal).
    fn expiry_change_ops(old_expiry: i64, t: &TokenDetails) -> Vec<Op> {
        vec![
            Op::Delete(expiry_key(old_expiry, &t.token_id)),
            Op::Put(expiry_key(t.expiry_ts, &t.token_id), Vec::new()),
            Op::Put(token_key(&t.token_id), record::encode(t)),
        ]
    }

    /// Drops the in-memory traces of a deleted token (T-EXPIRE-4, T-TLOGIN-2).
    fn forget(&self, secret: &MasterSecret, t: &TokenDetails) {
        self.by_hmac.remove(&index_key(self.hmac_of(secret, t).expose()));
        self.forget_credentials(&t.token_id);
    }

    fn forget_credentials(&self, id: &str) {
        for m in [ScramMechanism::Sha256, ScramMechanism::Sha512] {
            self.scram.remove(&(id.to_owned(), m));
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
        let (issue_ts, max_ts, expiry_ts) = create_times(&self.settings, requested_max_lifetime_ms, now);
        let (token, hmac) = {
            let _guard = self.lock();
            let token_id = loop {
                let id = crate::ids::random_kafka_id();
                if self.get(&id)?.is_none() {
                    break id;
                }
            };
            let t = TokenDetails {
                token_id,
                owner,
                requester,
                renewers,
                issue_ts,
                max_ts,
                expiry_ts,
                hmac_alg: self.settings.hmac_alg,
                key_id: String::new(),
            };
            self.commit.note_write();
            self.store.apply(Self::put_ops(&t))?;
            // Indexed together with the write, under the same lock, so every later sweep
            // or delete of the token also removes its index entry.
            let hmac = self.hmac_of(secret, &t);
            self.by_hmac.insert(index_key(hmac.expose()), t.token_id.clone());
            (t, hmac)
        };
        if let Err(e) = self.commit.durable().await {
            let _guard = self.lock();
            if let Err(undo) = self.store.apply(Self::delete_ops(&token)) {
                error!(token_id = %token.token_id, "cannot withdraw the token that failed to persist: {undo}");
            }
            self.forget(secret, &token);
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
            let _guard = self.lock();
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
            self.store.apply(Self::expiry_change_ops(old_expiry, &t))?;
            t
        };
        self.commit.durable().await?;
        info!(token_id = %token.token_id, owner = %token.owner, by = %requester, expiry_timestamp_ms = token.expiry_ts, "token renewed");
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
            let _guard = self.lock();
            let mut t = self.find_by_hmac(secret, hmac)?.ok_or(TokenError::NotFound)?;
            if !self.may_manage(&t, requester, super_user) {
                return Err(TokenError::OwnerMismatch);
            }
            if period_ms < 0 {
                self.commit.note_write();
                self.store.apply(Self::delete_ops(&t))?;
                self.forget(secret, &t);
                t.expiry_ts = now;
                (t, true)
            } else {
                if t.is_expired(now) {
                    return Err(TokenError::Expired);
                }
                let old_expiry = t.expiry_ts;
                t.expiry_ts = t.max_ts.min(now.saturating_add(period_ms));
                self.commit.note_write();
                self.store.apply(Self::expiry_change_ops(old_expiry, &t))?;
                (t, false)
            }
        };
        self.commit.durable().await?;
        let what = if deleted { "token expired and deleted" } else { "token expiry changed" };
        info!(token_id = %token.token_id, owner = %token.owner, by = %requester, expiry_timestamp_ms = token.expiry_ts, "{what}");
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
            Some(owners) => self
                .naming(owners)?
                .into_iter()
                .filter(|t| owners.iter().any(|o| t.owner_or_renewer(o)))
                .filter(|t| super_user || t.owner_or_renewer(requester))
                .collect(),
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
        let mut ids = std::collections::BTreeSet::new();
        for p in principals {
            let prefix = principal_prefix(p);
            for (k, _) in self.store.scan_prefix(&prefix)? {
                ids.extend(id_from_principal_key(prefix.len(), &k));
            }
        }
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            // A token deleted between the two reads is simply not listed.
            out.extend(self.get(&id)?);
        }
        Ok(out)
    }

    /// The token `token_id` if it exists and is live at `now` (D-2: checked again when a
    /// token login completes).
    pub fn live(&self, token_id: &str, now: i64) -> Option<TokenDetails> {
        self.secret.as_ref()?;
        match self.get(token_id) {
            Ok(t) => t.filter(|t| !t.is_expired(now)),
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
        let mut salt = vec![0u8; 16];
        getrandom::fill(&mut salt).ok()?;
        let derived = tokio::task::spawn_blocking(move || {
            ScramCredential::from_password(mech, password.as_bytes(), salt, MIN_ITERATIONS)
        })
        .await
        .ok()?;
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
        let _guard = self.lock();
        let mut ops = Vec::new();
        let mut gone = Vec::new();
        // Expiry never passes max, so `expiry < now` finds every expired token.
        for (k, _) in self.store.scan_range(EXPIRY_PREFIX, &expiry_bound(now), limit)? {
            let Some(id) = id_from_expiry_key(&k) else { continue };
            match self.get(&id)? {
                Some(t) if t.is_expired(now) => {
                    ops.extend(Self::delete_ops(&t));
                    gone.push(t);
                }
                // An entry that no longer matches its token is dropped; the token stays.
                Some(t) if expiry_key(t.expiry_ts, &t.token_id) != k => ops.push(Op::Delete(k)),
                Some(_) => {}
                None => ops.push(Op::Delete(k)),
            }
        }
        if ops.is_empty() {
            return Ok(gone);
        }
        self.commit.note_write();
        self.store.apply(ops)?;
        for t in &gone {
            match &self.secret {
                Some(secret) => self.forget(secret, t),
                None => self.forget_credentials(&t.token_id),
            }
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
        owner = %t.owner,
        requester = %t.requester,
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
        ops.extend(Tokens::put_ops(&t));
        n += 1;
        if ops.len() >= 40_000 {
            store.apply(std::mem::take(&mut ops))?;
        }
    }
    store.apply(ops)?;
    store.flush()?;
    Ok(n)
}

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
            Tokens::open(store.clone(), GroupCommit::start(store).unwrap(), Some(MasterSecret::new("s")), S).unwrap();
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

    const S: TokenSettings = TokenSettings {
        max_lifetime_ms: 7 * 86_400_000,
        expiry_time_ms: 86_400_000,
        hmac_alg: HmacAlgorithm::Sha1,
        superuser_manage: false,
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
