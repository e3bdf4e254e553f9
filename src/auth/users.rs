//! SCRAM user credentials in the store (SPEC §5.1).
//!
//! Key: `cred/` ‖ mechanism code ‖ user name. Value: a versioned record of salt,
//! StoredKey, ServerKey and iterations; never a password or salted password (T-USER-1).

use std::collections::BTreeMap;
use std::sync::Arc;

use ktb_protocol::scram::{ScramCredential, ScramMechanism, Secret};

use crate::store::{Guard, Op, Store, StoreError};

/// Where user credentials live in the store: `cred/<mechanism code><name>`.
pub const PREFIX: &[u8] = b"cred/";
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

    /// The credential of `name` for `mech`, if any, as of now.
    pub async fn credential(&self, name: &str, mech: ScramMechanism) -> Result<Option<ScramCredential>, StoreError> {
        Ok(self.stamped(name, mech).await?.map(|(c, _)| c))
    }

    /// The credential of `name` for `mech` with the stamp that guards a change to it.
    pub async fn stamped(
        &self,
        name: &str,
        mech: ScramMechanism,
    ) -> Result<Option<(ScramCredential, i64)>, StoreError> {
        let k = key(name, mech);
        match self.store.get(&k).await? {
            Some(v) => Ok(Some((decode(&k, &v.value)?, v.stamp))),
            None => Ok(None),
        }
    }

    /// Both credentials of `name`, SHA-512 first, read together.
    pub async fn both(&self, name: &str) -> Result<[Option<ScramCredential>; 2], StoreError> {
        let keys = [key(name, ScramMechanism::Sha512), key(name, ScramMechanism::Sha256)];
        let found = self.store.get_many(&keys).await?;
        let mut out = [None, None];
        for (i, (k, v)) in keys.iter().zip(found).enumerate() {
            out[i] = v.map(|v| decode(k, &v.value)).transpose()?;
        }
        Ok(out)
    }

    /// True when no user has any credential.
    pub async fn is_empty(&self) -> Result<bool, StoreError> {
        Ok(self.store.scan_prefix(PREFIX).await?.is_empty())
    }

    /// Every user with its `(mechanism, iterations)` pairs, sorted by name then mechanism.
    pub async fn list(&self) -> Result<BTreeMap<String, Vec<(ScramMechanism, u32)>>, StoreError> {
        let mut out: BTreeMap<String, Vec<(ScramMechanism, u32)>> = BTreeMap::new();
        for (k, v) in self.store.scan_prefix(PREFIX).await? {
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

    /// The guard of a deletion that read `stamp` for `name`'s `mech` credential.
    pub fn unchanged(name: &str, mech: ScramMechanism, stamp: i64) -> Guard {
        Guard::Unchanged(key(name, mech), stamp)
    }

    /// Applies alterations for several users atomically and durably (T-USER-8) if every
    /// guard holds; false when one did not and nothing changed.
    pub async fn alter(&self, changes: &[(String, Alteration)], guards: Vec<Guard>) -> Result<bool, StoreError> {
        Ok(self.store.commit(guards, Self::ops(changes)).await?.is_some())
    }

    /// Creates the bootstrap user's credentials once per store (T-ZERO-4): false when the
    /// store has users, or another broker created them first.
    pub async fn bootstrap(&self, changes: &[(String, Alteration)]) -> Result<bool, StoreError> {
        if !self.is_empty().await? {
            return Ok(false);
        }
        // Guarded by the keys it writes: of brokers starting together, one creates it.
        let guards = Self::ops(changes)
            .into_iter()
            .filter_map(|op| match op {
                Op::Put(k, _) => Some(Guard::Absent(k)),
                Op::Delete(_) => None,
            })
            .collect();
        self.alter(changes, guards).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SledStore;

    /// T-USER-1: a user exists while it has a credential; records round-trip.
    #[tokio::test]
    async fn t_user_1_credentials_round_trip() {
        let tmp = tempfile::tempdir().unwrap();
        let users = Users::new(Arc::new(SledStore::open(&tmp.path().join("s")).unwrap()));
        assert!(users.is_empty().await.unwrap());
        let c = ScramCredential::from_password(ScramMechanism::Sha512, b"pw", vec![1; 32], 8192);
        let bob = |a| [("bob".to_owned(), a)];
        assert!(users.alter(&bob(Alteration::Upsert(ScramMechanism::Sha512, c.clone())), vec![]).await.unwrap());
        assert_eq!(users.credential("bob", ScramMechanism::Sha512).await.unwrap(), Some(c.clone()));
        assert_eq!(users.credential("bob", ScramMechanism::Sha256).await.unwrap(), None);
        assert_eq!(users.both("bob").await.unwrap(), [Some(c), None]);
        assert_eq!(users.list().await.unwrap().get("bob"), Some(&vec![(ScramMechanism::Sha512, 8192)]));
        let (_, stamp) = users.stamped("bob", ScramMechanism::Sha512).await.unwrap().unwrap();
        let guard = || vec![Users::unchanged("bob", ScramMechanism::Sha512, stamp)];
        assert!(users.alter(&bob(Alteration::Delete(ScramMechanism::Sha512)), guard()).await.unwrap());
        assert!(!users.alter(&bob(Alteration::Delete(ScramMechanism::Sha512)), guard()).await.unwrap(), "stale");
        assert!(users.is_empty().await.unwrap());
    }
}
