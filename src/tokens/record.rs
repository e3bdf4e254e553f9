//! The stored form of a token (T-TOKEN-1, T-PERSIST-2).
//!
//! One key per token, `tok/<id>` → the versioned token record (never the HMAC), so every
//! change to a token is a single-key write. The indexes (by principal, by expiry, by HMAC)
//! live in memory and are rebuilt from these records at startup.

use crate::auth::Principal;
use crate::config::HmacAlgorithm;
use crate::store::StoreError;

const RECORD_VERSION: u8 = 1;
/// Prefix of token records.
pub const TOKEN_PREFIX: &[u8] = b"tok/";
/// Key prefixes of the principal and expiry indexes that earlier builds kept in the store;
/// opening a store removes any such keys (the indexes are in memory now).
pub const LEGACY_INDEX_PREFIXES: [&[u8]; 2] = [b"tpr/", b"tex/"];

/// A delegation token's details (SPEC §4.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenDetails {
    /// The token id (T-TOKEN-3).
    pub token_id: String,
    /// Whose identity the token carries.
    pub owner: Principal,
    /// Who created it.
    pub requester: Principal,
    /// Who may renew and expire it besides the owner, in request order.
    pub renewers: Vec<Principal>,
    /// Creation time.
    pub issue_ts: i64,
    /// The end of its life, which renewals cannot pass.
    pub max_ts: i64,
    /// When it expires unless renewed; never after `max_ts`.
    pub expiry_ts: i64,
    /// The HMAC algorithm of its authenticator.
    pub hmac_alg: HmacAlgorithm,
    /// The master key id (`""` in single-key mode, SPEC §6.5).
    pub key_id: String,
}

impl TokenDetails {
    /// T-TOKEN-2: expired iff `max_ts < now` or `expiry_ts < now`.
    pub fn is_expired(&self, now: i64) -> bool {
        expired(self.max_ts, self.expiry_ts, now)
    }

    /// Owner, requester or renewer: who sees the token in Describe.
    pub fn owner_or_renewer(&self, p: &Principal) -> bool {
        self.owner == *p || self.requester == *p || self.renewers.contains(p)
    }

    /// Owner or renewer: who may renew or expire it (the requester is not included).
    pub fn may_renew(&self, p: &Principal) -> bool {
        self.owner == *p || self.renewers.contains(p)
    }

    /// The principals the token names, each once, in order of first appearance; linear
    /// in the renewers (T-LIMIT-4).
    pub fn principals(&self) -> Vec<&Principal> {
        let mut seen = std::collections::HashSet::with_capacity(2 + self.renewers.len());
        std::iter::once(&self.owner)
            .chain(std::iter::once(&self.requester))
            .chain(&self.renewers)
            .filter(|p| seen.insert(*p))
            .collect()
    }
}

/// T-TOKEN-2 on a token's two timestamps: expired iff `max_ts < now` or `expiry_ts < now`.
pub fn expired(max_ts: i64, expiry_ts: i64, now: i64) -> bool {
    max_ts < now || expiry_ts < now
}

/// The key of a token record.
pub fn token_key(id: &str) -> Vec<u8> {
    [TOKEN_PREFIX, id.as_bytes()].concat()
}

fn alg_code(a: HmacAlgorithm) -> u8 {
    match a {
        HmacAlgorithm::Sha1 => 1,
        HmacAlgorithm::Sha256 => 2,
        HmacAlgorithm::Sha512 => 3,
    }
}

fn put_str(v: &mut Vec<u8>, s: &str) {
    v.extend_from_slice(&(s.len() as u32).to_be_bytes());
    v.extend_from_slice(s.as_bytes());
}

/// Encodes the record (the token id is in the key, not repeated here).
pub fn encode(t: &TokenDetails) -> Vec<u8> {
    let mut v = Vec::with_capacity(64 + 16 * (2 + t.renewers.len()));
    v.push(RECORD_VERSION);
    for ts in [t.issue_ts, t.max_ts, t.expiry_ts] {
        v.extend_from_slice(&ts.to_be_bytes());
    }
    v.push(alg_code(t.hmac_alg));
    put_str(&mut v, &t.key_id);
    for p in [&t.owner, &t.requester] {
        put_str(&mut v, &p.kind);
        put_str(&mut v, &p.name);
    }
    v.extend_from_slice(&(t.renewers.len() as u32).to_be_bytes());
    for p in &t.renewers {
        put_str(&mut v, &p.kind);
        put_str(&mut v, &p.name);
    }
    v
}

/// Reads fields off the front of a record.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.rest.len() < n {
            return None;
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }
    fn i64(&mut self) -> Option<i64> {
        Some(i64::from_be_bytes(self.take(8)?.try_into().ok()?))
    }
    fn str(&mut self) -> Option<&'a str> {
        let n = self.u32()? as usize;
        std::str::from_utf8(self.take(n)?).ok()
    }
    fn string(&mut self) -> Option<String> {
        self.str().map(str::to_owned)
    }
    fn principal(&mut self) -> Option<Principal> {
        Some(Principal { kind: self.string()?, name: self.string()? })
    }
}

/// The largest record a token may have: its principals' names together (D-20). Every
/// per-token operation reads the record, so its size bounds what one token costs.
pub const MAX_RECORD_BYTES: usize = 64 * 1024;

/// What a liveness check needs of the record under `tok/<id>`, read without decoding
/// the principals: `(max_ts, expiry_ts, key_id)`.
pub fn liveness<'a>(id: &str, v: &'a [u8]) -> Result<(i64, i64, &'a str), StoreError> {
    let mut r = Reader { rest: v };
    let version = r.u8().ok_or_else(|| corrupt(id))?;
    if version > RECORD_VERSION {
        return Err(StoreError::NewerSchema { found: u32::from(version), supported: u32::from(RECORD_VERSION) });
    }
    let parsed = (|| {
        let (_issue_ts, max_ts, expiry_ts) = (r.i64()?, r.i64()?, r.i64()?);
        r.u8()?; // the HMAC algorithm
        Some((max_ts, expiry_ts, r.str()?))
    })();
    parsed.ok_or_else(|| corrupt(id))
}

fn corrupt(id: &str) -> StoreError {
    StoreError::Corrupt { key: format!("tok/{id}"), reason: "malformed token record".into() }
}

/// Decodes the record stored under `tok/<id>`.
pub fn decode(id: &str, v: &[u8]) -> Result<TokenDetails, StoreError> {
    let corrupt = || corrupt(id);
    let mut r = Reader { rest: v };
    let version = r.u8().ok_or_else(corrupt)?;
    if version > RECORD_VERSION {
        return Err(StoreError::NewerSchema { found: u32::from(version), supported: u32::from(RECORD_VERSION) });
    }
    let parsed = (|| {
        let (issue_ts, max_ts, expiry_ts) = (r.i64()?, r.i64()?, r.i64()?);
        let hmac_alg = match r.u8()? {
            1 => HmacAlgorithm::Sha1,
            2 => HmacAlgorithm::Sha256,
            3 => HmacAlgorithm::Sha512,
            _ => return None,
        };
        let key_id = r.string()?;
        let (owner, requester) = (r.principal()?, r.principal()?);
        let n = r.u32()? as usize;
        let mut renewers = Vec::with_capacity(n.min(1024));
        for _ in 0..n {
            renewers.push(r.principal()?);
        }
        Some(TokenDetails {
            token_id: id.to_owned(),
            owner,
            requester,
            renewers,
            issue_ts,
            max_ts,
            expiry_ts,
            hmac_alg,
            key_id,
        })
    })();
    parsed.ok_or_else(corrupt)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> TokenDetails {
        TokenDetails {
            token_id: "bxw-KptNTH6KHys8TV5vcA".into(),
            owner: Principal::user("alice"),
            requester: Principal::user("admin"),
            renewers: vec![Principal::user("bob"), Principal::user("alice"), Principal::user("bob")],
            issue_ts: 1_000,
            max_ts: 5_000,
            expiry_ts: 3_000,
            hmac_alg: HmacAlgorithm::Sha256,
            key_id: String::new(),
        }
    }

    /// T-PERSIST-2, T-TOKEN-1: records round-trip, hold no HMAC, and a newer record
    /// version is refused.
    #[test]
    fn t_persist_2_token_records_round_trip() {
        let t = sample();
        let v = encode(&t);
        assert_eq!(decode(&t.token_id, &v).unwrap(), t);
        let mut newer = v.clone();
        newer[0] = RECORD_VERSION + 1;
        assert!(matches!(decode(&t.token_id, &newer), Err(StoreError::NewerSchema { .. })));
        for cut in 0..v.len() {
            assert!(decode(&t.token_id, &v[..cut]).is_err(), "a truncated record is an error, not a panic");
        }
        // The liveness read agrees with the full decode and refuses what it refuses.
        let t = TokenDetails { key_id: "k20261203T144214Z".into(), ..t };
        let v = encode(&t);
        assert_eq!(liveness(&t.token_id, &v).unwrap(), (t.max_ts, t.expiry_ts, t.key_id.as_str()));
        assert!(matches!(liveness(&t.token_id, &newer), Err(StoreError::NewerSchema { .. })));
        let key_end = 1 + 3 * 8 + 1 + 4 + t.key_id.len();
        for cut in 0..key_end {
            assert!(liveness(&t.token_id, &v[..cut]).is_err(), "cut at {cut}");
        }
    }

    /// T-TOKEN-2: expiry is strict; ownerOrRenewer includes the requester, mayRenew not.
    #[test]
    fn t_token_2_expiry_and_roles() {
        let t = sample();
        assert!(!t.is_expired(3_000), "expiry_ts == now is still live");
        assert!(t.is_expired(3_001));
        assert!(TokenDetails { max_ts: 2_000, ..t.clone() }.is_expired(2_001));
        assert!(t.owner_or_renewer(&Principal::user("admin")) && !t.may_renew(&Principal::user("admin")));
        assert!(t.may_renew(&Principal::user("bob")) && t.may_renew(&Principal::user("alice")));
        assert!(!t.owner_or_renewer(&Principal::user("carol")));
        assert_eq!(t.principals().len(), 3, "each principal indexed once");
    }
}
