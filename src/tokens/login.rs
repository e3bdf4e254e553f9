//! Token logins: the SCRAM credential derived from a token's HMAC (T-TLOGIN-2), kept until
//! the token goes, and the revocation signal of every token that has sessions (D-22).
//!
//! Every login reads the token's record from the store (a linearizable read on etcd), so a
//! token created on any broker logs in at once and an expired or deleted one is refused at
//! once (T-CLUSTER-3); the cached credential only saves the key derivation.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use dashmap::DashMap;
use ktb_protocol::scram::{MIN_ITERATIONS, ScramCredential, ScramMechanism};
use tokio::sync::watch;
use tracing::{error, info};

use super::record::{self, TokenDetails, token_key};
use super::{DELETED, Tokens};
use crate::store::StoreError;

/// What token logins need beyond the tokens: the pool their key derivations run on and
/// the key their salts are derived from.
#[derive(Clone)]
pub struct LoginKeys {
    /// The bounded key-derivation pool (T-LIMIT-6).
    pub kdf: Arc<crate::auth::kdf::KdfPool>,
    /// The fake-salt key of the data dir or the cluster (T-REVEAL-1).
    pub salt_key: [u8; 32],
}

/// A token found for a login: its credential and details.
pub struct TokenLogin {
    /// The SCRAM credential derived from the token's HMAC.
    pub credential: ScramCredential,
    /// The token.
    pub details: TokenDetails,
}

/// What token logins keep between logins.
#[derive(Default)]
pub(super) struct Sessions {
    /// The derived SCRAM credential of each token and mechanism that has logged in.
    scram: DashMap<(String, ScramMechanism), Arc<ScramCredential>>,
    /// One signal per token that has sessions, carrying the token's expiry and
    /// [`DELETED`] once it is deleted, so its connections close when it expires or goes.
    revocations: DashMap<String, watch::Sender<i64>>,
}

impl Sessions {
    pub(super) fn forget_credentials(&self, id: &str) {
        for m in [ScramMechanism::Sha256, ScramMechanism::Sha512] {
            self.scram.remove(&(id.to_owned(), m));
        }
    }

    /// Forgets a deleted token's credentials and ends its sessions (D-22).
    pub(super) fn revoke(&self, id: &str) {
        self.forget_credentials(id);
        if let Some((_, signal)) = self.revocations.remove(id) {
            signal.send_replace(DELETED);
        }
    }

    /// Ends every token session (the view can no longer be trusted to see deletions).
    pub(super) fn revoke_all(&self) {
        let ids: Vec<String> = self.revocations.iter().map(|e| e.key().clone()).collect();
        for id in ids {
            if let Some((_, signal)) = self.revocations.remove(&id) {
                signal.send_replace(DELETED);
            }
        }
    }

    /// Tells the sessions of token `id` its new expiry (D-22).
    pub(super) fn notify_expiry(&self, id: &str, expiry_ts: i64) {
        if let Some(signal) = self.revocations.get(id) {
            signal.send_replace(expiry_ts);
        }
    }
}

impl Tokens {
    /// The expiry of token `id` as it changes, [`DELETED`] once the token is deleted
    /// (D-22); connections that logged in with the token watch it. A token that is not
    /// live gets a signal that says so at once.
    pub async fn revocation(&self, id: &str, now: i64) -> watch::Receiver<i64> {
        if let Some(signal) = self.sessions.revocations.get(id) {
            return signal.subscribe();
        }
        let Some(expiry) = self.live_until(id, now).await else { return watch::channel(DELETED).1 };
        let rx = self.sessions.revocations.entry(id.to_owned()).or_insert_with(|| watch::channel(expiry).0).subscribe();
        // A deletion the view applied before the signal existed found nothing to tell; one
        // committed before this read is seen here, and any later one finds the signal.
        if self.live_until(id, now).await.is_none() {
            self.sessions.revoke(id);
        }
        rx
    }

    /// The expiry of token `token_id` if it exists and is live at `now` (D-2: checked
    /// again when a token login completes; D-22: when a session subscribes to the token and
    /// when its expiry passes). Reads only the record's timestamps.
    pub async fn live_until(&self, token_id: &str, now: i64) -> Option<i64> {
        let ring = self.keyring()?;
        match self.store.get(&token_key(token_id)).await {
            Ok(v) => {
                // A token whose key went is not live either (T-ROTATE-5).
                let v = v?;
                let (max_ts, expiry_ts, key_id) = record::liveness(token_id, &v.value).ok()?;
                ring.get(key_id)?;
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
    /// An error means the store could not be read (T-CLUSTER-7).
    pub async fn login(
        &self,
        token_id: &str,
        mech: ScramMechanism,
        now: i64,
    ) -> Result<Option<TokenLogin>, StoreError> {
        let Some(ring) = self.keyring() else { return Ok(None) };
        let Some((details, _)) = self.get(token_id).await? else { return Ok(None) };
        // A token whose master key this broker lacks cannot log in (T-ROTATE-5).
        let hmac = ring.hmac(&details.key_id, details.hmac_alg, &details.token_id);
        let Some(hmac) = hmac.filter(|_| !details.is_expired(now)) else {
            self.sessions.forget_credentials(token_id);
            return Ok(None);
        };
        let key = (token_id.to_owned(), mech);
        if let Some(c) = self.sessions.scram.get(&key) {
            return Ok(Some(TokenLogin { credential: (**c).clone(), details }));
        }
        let password = STANDARD.encode(hmac.expose());
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
                return Ok(None);
            }
        };
        self.sessions.scram.insert(key.clone(), Arc::new(derived.clone()));
        // A token deleted, or whose key was removed or changed, while its credential was
        // derived must not leave it cached.
        let same_key = self
            .keyring()
            .and_then(|r| r.hmac(&details.key_id, details.hmac_alg, &details.token_id))
            .is_some_and(|now| bool::from(subtle::ConstantTimeEq::ct_eq(now.expose(), hmac.expose())));
        if !same_key || !matches!(self.get(token_id).await, Ok(Some(_))) {
            self.sessions.scram.remove(&key);
            return Ok(None);
        }
        Ok(Some(TokenLogin { credential: derived, details }))
    }
}
