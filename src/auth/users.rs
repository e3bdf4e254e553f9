//! SCRAM user credentials in the store (SPEC §5.1).
//!
//! Key: `cred/` ‖ mechanism code ‖ user name. Value: a versioned record of salt,
//! StoredKey, ServerKey and iterations; never a password or salted password (T-USER-1).

use std::collections::BTreeMap;
use std::sync::Arc;

use ktb_protocol::scram::{ScramCredential, ScramMechanism, Secret};

use crate::store::{GroupCommit, Op, Store, StoreError};

const PREFIX: &[u8] = b"cred/";
const RECORD_VERSION: u8 = 1;

/// One pending change to a user's credentials.
#[derive(Debug, Clone)]
pub enum Alteration {
    /// Remove the credential for this mechanism.
    Delete(ScramMechanism),
    /// Create or replace the credential for this mechanism.
    Upsert(ScramMechanism, ScramCredential),
}

/// The user-credential part of the store.
#[derive(Clone)]
pub struct Users {
    store: Arc<dyn Store>,
}

fn key(name: &str, mech: ScramMechanism) -> Vec<u8> {
    let mut k = Vec::with_capacity(PREFIX.len() + 1 + name.len());
    k.extend_from_slice(PREFIX);
    k.push(mech.code() as u8);
    k.extend_from_slice(name.as_bytes());
    k
}

fn encode(c: &ScramCredential) -> Vec<u8> {
    let mut v = Vec::with_capacity(8 + c.salt.len() + 2 * 64);
    v.push(RECORD_VERSION);
    v.extend_from_slice(&c.iterations.to_be_bytes());
    v.extend_from_slice(&(c.salt.len() as u16).to_be_bytes());
    v.extend_from_slice(&c.salt);
    for k in [&c.stored_key, &c.server_key] {
        v.push(k.expose().len() as u8);
        v.extend_from_slice(k.expose());
    }
    v
}

fn decode(key: &[u8], v: &[u8]) -> Result<ScramCredential, StoreError> {
    let corrupt = |reason: &str| StoreError::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        reason: reason.to_owned(),
    };
    let (&version, rest) = v.split_first().ok_or_else(|| corrupt("empty"))?;
    if version > RECORD_VERSION {
        return Err(StoreError::NewerSchema { found: u32::from(version), supported: u32::from(RECORD_VERSION) });
    }
    let take = |rest: &mut &[u8], n: usize| -> Result<Vec<u8>, StoreError> {
        if rest.len() < n {
            return Err(corrupt("truncated"));
        }
        let (head, tail) = rest.split_at(n);
        *rest = tail;
        Ok(head.to_vec())
    };
    let mut rest = rest;
    let iterations = u32::from_be_bytes(take(&mut rest, 4)?.try_into().map_err(|_| corrupt("iterations"))?);
    let salt_len = u16::from_be_bytes(take(&mut rest, 2)?.try_into().map_err(|_| corrupt("salt length"))?);
    let salt = take(&mut rest, salt_len as usize)?;
    let stored_len = take(&mut rest, 1)?[0] as usize;
    let stored_key = Secret(take(&mut rest, stored_len)?);
    let server_len = take(&mut rest, 1)?[0] as usize;
    let server_key = Secret(take(&mut rest, server_len)?);
    Ok(ScramCredential { salt, stored_key, server_key, iterations })
}

impl Users {
    /// Users kept in `store`.
    pub fn new(store: Arc<dyn Store>) -> Users {
        Users { store }
    }

    /// The credential of `name` for `mech`, if any.
    pub fn credential(&self, name: &str, mech: ScramMechanism) -> Result<Option<ScramCredential>, StoreError> {
        let k = key(name, mech);
        self.store.get(&k)?.map(|v| decode(&k, &v)).transpose()
    }

    /// True when no user has any credential.
    pub fn is_empty(&self) -> Result<bool, StoreError> {
        Ok(!self.store.any_with_prefix(PREFIX)?)
    }

    /// Every user with its `(mechanism, iterations)` pairs, sorted by name then mechanism.
    pub fn list(&self) -> Result<BTreeMap<String, Vec<(ScramMechanism, u32)>>, StoreError> {
        let mut out: BTreeMap<String, Vec<(ScramMechanism, u32)>> = BTreeMap::new();
        for (k, v) in self.store.scan_prefix(PREFIX)? {
            let Some((&code, name)) = k[PREFIX.len()..].split_first() else { continue };
            let Some(mech) = ScramMechanism::from_code(code as i8) else { continue };
            let cred = decode(&k, &v)?;
            out.entry(String::from_utf8_lossy(name).into_owned()).or_default().push((mech, cred.iterations));
        }
        for infos in out.values_mut() {
            infos.sort();
        }
        Ok(out)
    }

    fn ops(changes: &[(String, Alteration)]) -> Vec<Op> {
        changes
            .iter()
            .map(|(name, a)| match a {
                Alteration::Delete(m) => Op::Delete(key(name, *m)),
                Alteration::Upsert(m, c) => Op::Put(key(name, *m), encode(c)),
            })
            .collect()
    }

    /// Applies alterations for several users atomically and durably (T-USER-8), flushing
    /// on the calling thread (startup and offline tools).
    pub fn alter(&self, changes: &[(String, Alteration)]) -> Result<(), StoreError> {
        self.store.apply_durable(Self::ops(changes))
    }

    /// As [`Users::alter`], waiting for `commit` instead of flushing on the caller's
    /// thread (the request path).
    pub async fn alter_shared_flush(
        &self,
        changes: &[(String, Alteration)],
        commit: &GroupCommit,
    ) -> Result<(), StoreError> {
        commit.note_write();
        self.store.apply(Self::ops(changes))?;
        commit.durable().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SledStore;

    /// T-USER-1: a user exists while it has a credential; records round-trip.
    #[test]
    fn t_user_1_credentials_round_trip() {
        let tmp = tempfile::tempdir().unwrap();
        let users = Users::new(Arc::new(SledStore::open(&tmp.path().join("s")).unwrap()));
        assert!(users.is_empty().unwrap());
        let c = ScramCredential::from_password(ScramMechanism::Sha512, b"pw", vec![1; 32], 8192);
        users.alter(&[("bob".into(), Alteration::Upsert(ScramMechanism::Sha512, c.clone()))]).unwrap();
        assert_eq!(users.credential("bob", ScramMechanism::Sha512).unwrap(), Some(c));
        assert_eq!(users.credential("bob", ScramMechanism::Sha256).unwrap(), None);
        assert_eq!(users.list().unwrap().get("bob"), Some(&vec![(ScramMechanism::Sha512, 8192)]));
        users.alter(&[("bob".into(), Alteration::Delete(ScramMechanism::Sha512))]).unwrap();
        assert!(users.is_empty().unwrap());
    }
}
