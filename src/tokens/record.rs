//! The stored form of a token and the store keys of its indexes (T-TOKEN-1, T-PERSIST-2).
//!
//! Keys:
//! - `tok/<id>` → the versioned token record (never the HMAC);
//! - `tpr/<len><type><len><name><id>` → empty, one per principal the token names (owner,
//!   requester, renewers), so Describe by owner reads only matching tokens;
//! - `tex/<expiry><id>` → empty, ordered by expiry, so the sweep reads only expired tokens.

use crate::auth::Principal;
use crate::config::HmacAlgorithm;
use crate::store::StoreError;

const RECORD_VERSION: u8 = 1;
/// Prefix of token records.
pub const TOKEN_PREFIX: &[u8] = b"tok/";
const PRINCIPAL_PREFIX: &[u8] = b"tpr/";
/// Prefix of the expiry index.
pub const EXPIRY_PREFIX: &[u8] = b"tex/";

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
        self.max_ts < now || self.expiry_ts < now
    }

    /// Owner, requester or renewer: who sees the token in Describe.
    pub fn owner_or_renewer(&self, p: &Principal) -> bool {
        self.owner == *p || self.requester == *p || self.renewers.contains(p)
    }

    /// Owner or renewer: who may renew or expire it (the requester is not included).
    pub fn may_renew(&self, p: &Principal) -> bool {
        self.owner == *p || self.renewers.contains(p)
    }

    /// The principals the token names, each once.
    pub fn principals(&self) -> Vec<&Principal> {
        let mut out = vec![&self.owner];
        for p in std::iter::once(&self.requester).chain(&self.renewers) {
            if !out.contains(&p) {
                out.push(p);
            }
        }
        out
    }
}

/// The key of a token record.
pub fn token_key(id: &str) -> Vec<u8> {
    [TOKEN_PREFIX, id.as_bytes()].concat()
}

/// The prefix under which every token naming `p` is indexed. Type and name are each
/// length-prefixed, since either may contain `:`.
pub fn principal_prefix(p: &Principal) -> Vec<u8> {
    let mut k = Vec::with_capacity(PRINCIPAL_PREFIX.len() + 8 + p.kind.len() + p.name.len() + 22);
    k.extend_from_slice(PRINCIPAL_PREFIX);
    for part in [&p.kind, &p.name] {
        k.extend_from_slice(&(part.len() as u32).to_be_bytes());
        k.extend_from_slice(part.as_bytes());
    }
    k
}

/// The principal-index key of token `id` for `p`.
pub fn principal_key(p: &Principal, id: &str) -> Vec<u8> {
    let mut k = principal_prefix(p);
    k.extend_from_slice(id.as_bytes());
    k
}

/// The token id at the end of a principal-index key.
pub fn id_from_principal_key(prefix_len: usize, key: &[u8]) -> Option<String> {
    String::from_utf8(key.get(prefix_len..)?.to_vec()).ok()
}

/// Orders i64 timestamps as unsigned big-endian bytes.
fn sortable(ts: i64) -> [u8; 8] {
    ((ts as u64) ^ (1 << 63)).to_be_bytes()
}

/// The expiry-index key of a token expiring at `expiry_ts`.
pub fn expiry_key(expiry_ts: i64, id: &str) -> Vec<u8> {
    [EXPIRY_PREFIX, &sortable(expiry_ts), id.as_bytes()].concat()
}

/// The first expiry-index key of a token expiring at or after `ts`.
pub fn expiry_bound(ts: i64) -> Vec<u8> {
    [EXPIRY_PREFIX, &sortable(ts)].concat()
}

/// The token id in an expiry-index key.
pub fn id_from_expiry_key(key: &[u8]) -> Option<String> {
    String::from_utf8(key.get(EXPIRY_PREFIX.len() + 8..)?.to_vec()).ok()
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
    fn string(&mut self) -> Option<String> {
        let n = self.u32()? as usize;
        String::from_utf8(self.take(n)?.to_vec()).ok()
    }
    fn principal(&mut self) -> Option<Principal> {
        Some(Principal { kind: self.string()?, name: self.string()? })
    }
}

/// The HMAC algorithm of a stored record, read without decoding the rest (startup reads
/// every record for this alone).
pub fn hmac_algorithm(id: &str, v: &[u8]) -> Result<HmacAlgorithm, StoreError> {
    match v.first() {
        Some(&version) if version > RECORD_VERSION => {
            Err(StoreError::NewerSchema { found: u32::from(version), supported: u32::from(RECORD_VERSION) })
        }
        _ => match v.get(25) {
            Some(1) => Ok(HmacAlgorithm::Sha1),
            Some(2) => Ok(HmacAlgorithm::Sha256),
            Some(3) => Ok(HmacAlgorithm::Sha512),
            _ => Err(StoreError::Corrupt { key: format!("tok/{id}"), reason: "malformed token record".into() }),
        },
    }
}

/// Decodes the record stored under `tok/<id>`.
pub fn decode(id: &str, v: &[u8]) -> Result<TokenDetails, StoreError> {
    let corrupt = || StoreError::Corrupt { key: format!("tok/{id}"), reason: "malformed token record".into() };
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
        assert_eq!(hmac_algorithm(&t.token_id, &v).unwrap(), t.hmac_alg);
        let mut newer = v.clone();
        newer[0] = RECORD_VERSION + 1;
        assert!(matches!(decode(&t.token_id, &newer), Err(StoreError::NewerSchema { .. })));
        for cut in 0..v.len() {
            assert!(decode(&t.token_id, &v[..cut]).is_err(), "a truncated record is an error, not a panic");
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

    /// T-DESC-1: `User:a`/`b` and `User`/`a:b` are different principals with different
    /// index prefixes, and neither prefix is a prefix of the other's keys.
    #[test]
    fn t_desc_1_principal_keys_do_not_collide() {
        let (p, q) = (Principal::new("User:a", "b"), Principal::new("User", "a:b"));
        assert_ne!(principal_prefix(&p), principal_prefix(&q));
        assert!(!principal_key(&q, "id").starts_with(&principal_prefix(&p)));
        assert!(!principal_key(&Principal::user("ab"), "x").starts_with(&principal_prefix(&Principal::user("a"))));
    }

    #[test]
    fn expiry_keys_sort_by_time() {
        let mut keys = [expiry_key(5, "b"), expiry_key(-3, "a"), expiry_key(i64::MAX, "c"), expiry_key(0, "d")];
        keys.sort();
        let ids: Vec<_> = keys.iter().map(|k| id_from_expiry_key(k).unwrap()).collect();
        assert_eq!(ids, ["a", "d", "b", "c"]);
        assert!(expiry_key(4, "zz") < expiry_bound(5) && expiry_bound(5) <= expiry_key(5, ""));
    }
}
