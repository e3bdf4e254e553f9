//! SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677) as Kafka applies them, as pure
//! state machines for both sides (SPEC §3.4).
//!
//! Nothing here draws randomness or looks anything up: the server side parses the
//! client-first message and hands the caller the user name and the `tokenauth`
//! extension, the caller finds a credential (or none) and a nonce, and the state machine
//! does the rest. Secrets live in types whose `Debug` shows no key material, and proofs
//! are compared in constant time.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256, Sha512};
use subtle::ConstantTimeEq;

/// The fewest PBKDF2 iterations a credential may have (Kafka's `minIterations`).
pub const MIN_ITERATIONS: u32 = 4096;
/// The most PBKDF2 iterations a credential may have (Kafka's `maxIterations`).
pub const MAX_ITERATIONS: u32 = 16384;

/// A SCRAM mechanism.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ScramMechanism {
    /// SCRAM-SHA-256: HMAC-SHA-256, 32-byte keys.
    Sha256,
    /// SCRAM-SHA-512: HMAC-SHA-512, 64-byte keys.
    Sha512,
}

impl ScramMechanism {
    /// The SASL mechanism name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Sha256 => "SCRAM-SHA-256",
            Self::Sha512 => "SCRAM-SHA-512",
        }
    }

    /// The mechanism code of the user-credential APIs (1 or 2).
    pub fn code(self) -> i8 {
        match self {
            Self::Sha256 => 1,
            Self::Sha512 => 2,
        }
    }

    /// The mechanism for a user-credential API code, if it is one.
    pub fn from_code(code: i8) -> Option<Self> {
        match code {
            1 => Some(Self::Sha256),
            2 => Some(Self::Sha512),
            _ => None,
        }
    }

    /// The mechanism for a SASL name, if it is one.
    pub fn from_name(name: &str) -> Option<Self> {
        [Self::Sha256, Self::Sha512].into_iter().find(|m| m.name() == name)
    }

    /// Length in bytes of the hash, and so of every key.
    pub fn hash_len(self) -> usize {
        match self {
            Self::Sha256 => 32,
            Self::Sha512 => 64,
        }
    }

    /// HMAC(key, data).
    pub fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        match self {
            Self::Sha256 => {
                let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
                m.update(data);
                m.finalize().into_bytes().to_vec()
            }
            Self::Sha512 => {
                let mut m = <Hmac<Sha512> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
                m.update(data);
                m.finalize().into_bytes().to_vec()
            }
        }
    }

    /// H(data).
    pub fn hash(self, data: &[u8]) -> Vec<u8> {
        match self {
            Self::Sha256 => Sha256::digest(data).to_vec(),
            Self::Sha512 => Sha512::digest(data).to_vec(),
        }
    }

    /// Hi(password, salt, i): PBKDF2 with this HMAC and one output block.
    pub fn salted_password(self, password: &[u8], salt: &[u8], iterations: u32) -> Secret {
        let mut out = vec![0u8; self.hash_len()];
        match self {
            Self::Sha256 => pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut out),
            Self::Sha512 => pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, iterations, &mut out),
        }
        Secret(out)
    }
}

/// Key material that must never be shown: `Debug` prints only its length.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub Vec<u8>);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret([{} bytes hidden])", self.0.len())
    }
}

impl Secret {
    /// The bytes.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

/// What the server keeps for one (user, mechanism): never the password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScramCredential {
    /// The salt sent in server-first.
    pub salt: Vec<u8>,
    /// H(ClientKey).
    pub stored_key: Secret,
    /// HMAC(SaltedPassword, "Server Key").
    pub server_key: Secret,
    /// PBKDF2 iterations.
    pub iterations: u32,
}

impl ScramCredential {
    /// Derives the stored keys from a salted password (what AlterUserScramCredentials sends).
    pub fn from_salted_password(mech: ScramMechanism, salted: &[u8], salt: Vec<u8>, iterations: u32) -> Self {
        let client_key = mech.hmac(salted, b"Client Key");
        ScramCredential {
            salt,
            stored_key: Secret(mech.hash(&client_key)),
            server_key: Secret(mech.hmac(salted, b"Server Key")),
            iterations,
        }
    }

    /// Derives the stored keys from a password (PBKDF2, then as above).
    pub fn from_password(mech: ScramMechanism, password: &[u8], salt: Vec<u8>, iterations: u32) -> Self {
        let salted = mech.salted_password(password, &salt, iterations);
        Self::from_salted_password(mech, salted.expose(), salt, iterations)
    }

    /// True when `password` produces this credential's StoredKey, compared in constant
    /// time (used by PLAIN, T-PLAIN-2).
    pub fn verify_password(&self, mech: ScramMechanism, password: &[u8]) -> bool {
        let salted = mech.salted_password(password, &self.salt, self.iterations);
        let stored = mech.hash(&mech.hmac(salted.expose(), b"Client Key"));
        bool::from(stored.ct_eq(self.stored_key.expose()))
    }
}

/// Why a SCRAM exchange failed. The server turns both into error 58; only the message
/// differs (SPEC §3.7).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScramError {
    /// Bad grammar, bad proof, unknown user: the generic message.
    #[error("invalid credentials")]
    InvalidCredentials,
    /// The authzid is empty or differs from the user name (T-SCRAM-3).
    #[error("authorization id differs from user name")]
    AuthzidMismatch,
}

/// A parsed client-first message (T-SCRAM-1..4).
#[derive(Debug, Clone)]
pub struct ClientFirst {
    /// The user name, unescaped (a token id for token logins).
    pub username: String,
    /// True when the `tokenauth` extension is `true`, case-insensitively.
    pub token_auth: bool,
    gs2_header: String,
    bare: String,
    cnonce: String,
}

/// Unescapes a saslname: `=2C` → `,`, `=3D` → `=`; any other `=` or a character outside
/// 0x01–0x7F makes it invalid.
fn unescape_saslname(s: &str) -> Option<String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(c) = rest.chars().next() {
        if c == '=' {
            if let Some(r) = rest.strip_prefix("=2C") {
                out.push(',');
                rest = r;
            } else if let Some(r) = rest.strip_prefix("=3D") {
                out.push('=');
                rest = r;
            } else {
                return None;
            }
        } else if ('\u{1}'..='\u{7f}').contains(&c) && c != ',' {
            out.push(c);
            rest = &rest[1..];
        } else {
            return None;
        }
    }
    (!out.is_empty()).then_some(out)
}

/// Escapes a user name for a client-first message.
pub fn escape_saslname(s: &str) -> String {
    s.replace('=', "=3D").replace(',', "=2C")
}

fn valid_nonce(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b',')
}

fn valid_extension(key: &str, value: &str) -> bool {
    !key.is_empty()
        && key.bytes().all(|b| b.is_ascii_alphabetic())
        && !value.is_empty()
        && value.bytes().all(|b| (0x01..=0x7f).contains(&b))
}

/// Parses a client-first message.
pub fn parse_client_first(msg: &[u8]) -> Result<ClientFirst, ScramError> {
    use ScramError::InvalidCredentials as Bad;
    let msg = std::str::from_utf8(msg).map_err(|_| Bad)?;
    // gs2-header: cbind flag "n", then [a=authzid], each followed by ','.
    let rest = msg.strip_prefix("n,").ok_or(Bad)?;
    let (authz, bare) = rest.split_once(',').ok_or(Bad)?;
    let gs2_header = format!("n,{authz},");
    let authzid = match authz {
        "" => None,
        a => Some(a.strip_prefix("a=").ok_or(Bad)?),
    };
    let mut attrs = bare.split(',');
    let username = attrs.next().and_then(|a| a.strip_prefix("n=")).ok_or(Bad)?;
    let username = unescape_saslname(username).ok_or(Bad)?;
    let cnonce = attrs.next().and_then(|a| a.strip_prefix("r=")).ok_or(Bad)?;
    if !valid_nonce(cnonce) {
        return Err(Bad);
    }
    let mut token_auth = false;
    for ext in attrs {
        let (key, value) = ext.split_once('=').ok_or(Bad)?;
        if !valid_extension(key, value) {
            return Err(Bad);
        }
        if key == "tokenauth" {
            token_auth = value.eq_ignore_ascii_case("true");
        }
    }
    // T-SCRAM-3 (D-16): checked before any lookup; both sides unescaped.
    if let Some(a) = authzid {
        match unescape_saslname(a) {
            Some(a) if a == username => {}
            _ => return Err(ScramError::AuthzidMismatch),
        }
    }
    Ok(ClientFirst { username, token_auth, gs2_header, bare: bare.to_owned(), cnonce: cnonce.to_owned() })
}

/// The fake salt for a name with no credential (T-REVEAL-1):
/// `HMAC-SHA-256(key, mechanism ‖ 0x00 ‖ username)`, 32 bytes like the salts of the
/// credentials ktb creates itself. Token credentials use it as their real salt.
pub fn fake_salt(key: &[u8], mech: ScramMechanism, username: &str) -> Vec<u8> {
    let mut data = Vec::with_capacity(mech.name().len() + 1 + username.len());
    data.extend_from_slice(mech.name().as_bytes());
    data.push(0);
    data.extend_from_slice(username.as_bytes());
    ScramMechanism::Sha256.hmac(key, &data).to_vec()
}

/// The server after sending server-first, waiting for client-final.
#[derive(Debug)]
pub struct ServerFirstSent {
    mech: ScramMechanism,
    client_first: ClientFirst,
    server_first: String,
    expected_nonce_suffix: String,
    credential: Option<ScramCredential>,
}

/// Builds server-first for `client_first`. With no credential (unknown user or token),
/// a server-first with `fake_salt` and 4096 iterations is sent and the exchange fails at
/// client-final, so nothing reveals which names exist (D-3, T-SCRAM-8). A credential
/// below the minimum iterations fails the same way (T-SCRAM-6).
pub fn server_first(
    mech: ScramMechanism,
    client_first: ClientFirst,
    credential: Option<ScramCredential>,
    fake_salt: Vec<u8>,
    snonce: &str,
) -> (ServerFirstSent, Vec<u8>) {
    let credential = credential.filter(|c| c.iterations >= MIN_ITERATIONS);
    let (salt, iterations) = match &credential {
        Some(c) => (c.salt.as_slice(), c.iterations),
        None => (fake_salt.as_slice(), MIN_ITERATIONS),
    };
    let nonce = format!("{}{}", client_first.cnonce, snonce);
    let server_first = format!("r={nonce},s={},i={iterations}", STANDARD.encode(salt));
    let bytes = server_first.clone().into_bytes();
    (ServerFirstSent { mech, client_first, server_first, expected_nonce_suffix: nonce, credential }, bytes)
}

impl ServerFirstSent {
    /// The parsed client-first of this exchange.
    pub fn client_first(&self) -> &ClientFirst {
        &self.client_first
    }

    /// Checks client-final and returns server-final (`v=…`) on success (T-SCRAM-9..12).
    pub fn client_final(self, msg: &[u8]) -> Result<Vec<u8>, ScramError> {
        use ScramError::InvalidCredentials as Bad;
        let msg = std::str::from_utf8(msg).map_err(|_| Bad)?;
        let (without_proof, proof_b64) = msg.rsplit_once(",p=").ok_or(Bad)?;
        let mut attrs = without_proof.split(',');
        let channel = attrs.next().and_then(|a| a.strip_prefix("c=")).ok_or(Bad)?;
        let nonce = attrs.next().and_then(|a| a.strip_prefix("r=")).ok_or(Bad)?;
        for ext in attrs {
            let (key, value) = ext.split_once('=').ok_or(Bad)?;
            if !valid_extension(key, value) {
                return Err(Bad);
            }
        }
        // T-SCRAM-10 (D-5): c= is exactly the gs2 header of client-first.
        if STANDARD.decode(channel).map_err(|_| Bad)? != self.client_first.gs2_header.as_bytes() {
            return Err(Bad);
        }
        // T-SCRAM-9: ends with cnonce ‖ snonce (librdkafka < 2.6.1 doubles the cnonce).
        if !valid_nonce(nonce) || !nonce.ends_with(&self.expected_nonce_suffix) {
            return Err(Bad);
        }
        let proof = STANDARD.decode(proof_b64).map_err(|_| Bad)?;
        let credential = self.credential.as_ref().ok_or(Bad)?;
        if proof.len() != self.mech.hash_len() {
            return Err(Bad);
        }
        let auth_message = format!("{},{},{}", self.client_first.bare, self.server_first, without_proof);
        let signature = self.mech.hmac(credential.stored_key.expose(), auth_message.as_bytes());
        let client_key: Vec<u8> = proof.iter().zip(&signature).map(|(p, s)| p ^ s).collect();
        let stored = self.mech.hash(&client_key);
        if !bool::from(stored.ct_eq(credential.stored_key.expose())) {
            return Err(Bad);
        }
        let server_signature = self.mech.hmac(credential.server_key.expose(), auth_message.as_bytes());
        Ok(format!("v={}", STANDARD.encode(server_signature)).into_bytes())
    }
}

/// Why a client-side exchange failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScramClientError {
    /// The server's message does not follow the grammar or does not match this exchange.
    #[error("malformed SCRAM message from the server: {0}")]
    Malformed(&'static str),
    /// The server asked for an iteration count outside 4096..=16384.
    #[error("the server asked for {0} iterations, outside {MIN_ITERATIONS}..={MAX_ITERATIONS}")]
    Iterations(u32),
    /// The server's signature is wrong: it does not know the password.
    #[error("the server's signature does not match: it is not the server that holds this credential")]
    ServerSignature,
}

/// The client side: builds client-first, answers server-first, checks server-final.
pub struct ScramClient {
    mech: ScramMechanism,
    bare: String,
    cnonce: String,
}

impl ScramClient {
    /// Starts an exchange for `username` with the client nonce `cnonce` (printable ASCII,
    /// no commas); `token_auth` adds the `tokenauth=true` extension.
    pub fn new(mech: ScramMechanism, username: &str, cnonce: &str, token_auth: bool) -> ScramClient {
        let mut bare = format!("n={},r={cnonce}", escape_saslname(username));
        if token_auth {
            bare.push_str(",tokenauth=true");
        }
        ScramClient { mech, bare, cnonce: cnonce.to_owned() }
    }

    /// The client-first message.
    pub fn client_first(&self) -> Vec<u8> {
        format!("n,,{}", self.bare).into_bytes()
    }

    /// Answers server-first with client-final, using `password`.
    pub fn client_final(
        self,
        server_first: &[u8],
        password: &[u8],
    ) -> Result<(ScramClientFinalSent, Vec<u8>), ScramClientError> {
        let mech = self.mech;
        self.client_final_with(server_first, |salt, iterations| mech.salted_password(password, salt, iterations))
    }

    /// As [`ScramClient::client_final`], with the salted password supplied by `salted` from
    /// the salt and iteration count (so a caller may cache the derivation, as the load
    /// generator does to measure the server alone).
    pub fn client_final_with(
        self,
        server_first: &[u8],
        salted: impl FnOnce(&[u8], u32) -> Secret,
    ) -> Result<(ScramClientFinalSent, Vec<u8>), ScramClientError> {
        let sf = std::str::from_utf8(server_first).map_err(|_| ScramClientError::Malformed("not UTF-8"))?;
        let mut attrs = sf.split(',');
        let nonce = attrs.next().and_then(|a| a.strip_prefix("r=")).ok_or(ScramClientError::Malformed("r="))?;
        let salt = attrs.next().and_then(|a| a.strip_prefix("s=")).ok_or(ScramClientError::Malformed("s="))?;
        let iterations = attrs.next().and_then(|a| a.strip_prefix("i=")).ok_or(ScramClientError::Malformed("i="))?;
        if !nonce.starts_with(&self.cnonce) || nonce.len() == self.cnonce.len() || !valid_nonce(nonce) {
            return Err(ScramClientError::Malformed("server nonce"));
        }
        let salt = STANDARD.decode(salt).map_err(|_| ScramClientError::Malformed("salt"))?;
        let iterations: u32 = iterations.parse().map_err(|_| ScramClientError::Malformed("iterations"))?;
        if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&iterations) {
            return Err(ScramClientError::Iterations(iterations));
        }
        let salted = salted(&salt, iterations);
        Ok(self.client_final_with_salted(sf, nonce, salted.expose()))
    }

    /// Builds client-final from an already derived salted password.
    fn client_final_with_salted(
        self,
        server_first: &str,
        nonce: &str,
        salted: &[u8],
    ) -> (ScramClientFinalSent, Vec<u8>) {
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{},{},{}", self.bare, server_first, without_proof);
        let client_key = self.mech.hmac(salted, b"Client Key");
        let stored_key = self.mech.hash(&client_key);
        let signature = self.mech.hmac(&stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key.iter().zip(&signature).map(|(k, s)| k ^ s).collect();
        let server_key = self.mech.hmac(salted, b"Server Key");
        let expected = self.mech.hmac(&server_key, auth_message.as_bytes());
        let msg = format!("{without_proof},p={}", STANDARD.encode(proof)).into_bytes();
        (ScramClientFinalSent { expected_server_signature: Secret(expected) }, msg)
    }
}

/// The client after sending client-final.
pub struct ScramClientFinalSent {
    expected_server_signature: Secret,
}

impl ScramClientFinalSent {
    /// Checks server-final.
    pub fn verify_server_final(self, msg: &[u8]) -> Result<(), ScramClientError> {
        let s = std::str::from_utf8(msg).map_err(|_| ScramClientError::Malformed("not UTF-8"))?;
        let v = s.strip_prefix("v=").ok_or(ScramClientError::Malformed("v="))?;
        let v = STANDARD.decode(v).map_err(|_| ScramClientError::Malformed("signature"))?;
        if bool::from(v.ct_eq(self.expected_server_signature.expose())) {
            Ok(())
        } else {
            Err(ScramClientError::ServerSignature)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    fn run_server(
        mech: ScramMechanism,
        client_first: &str,
        cred: Option<ScramCredential>,
        snonce: &str,
        client_final: &str,
    ) -> (String, Result<Vec<u8>, ScramError>) {
        let cf = parse_client_first(client_first.as_bytes()).unwrap();
        let (state, sf) = server_first(mech, cf, cred, vec![0; 16], snonce);
        (String::from_utf8(sf).unwrap(), state.client_final(client_final.as_bytes()))
    }

    /// T-SCRAM-VEC-A: SPEC §3.10 A, server side and client side.
    #[test]
    fn t_scram_vec_a_user_login_sha256() {
        let mech = ScramMechanism::Sha256;
        let salt = hex("a3f1c2d4e5b60718293a4b5c6d7e8f90");
        let salted = mech.salted_password(b"alice-secret", &salt, 4096);
        assert_eq!(salted.expose(), hex("9f2c0708b1b7c4e806c9e7c2933d1a65f2f8dfda01174176143cbee35e49b45f"));
        let cred = ScramCredential::from_salted_password(mech, salted.expose(), salt, 4096);
        assert_eq!(cred.stored_key.expose(), hex("634db813565cf8bebe2b06f9bd29cfe34e8c984af2379606d898f4aa87ca5bbd"));
        assert_eq!(cred.server_key.expose(), hex("0ef431b94ae6936ab4e1ffdbc454baffc18fce6f2156f2c8f054bda2676ec448"));

        let (sf, result) = run_server(
            mech,
            "n,,n=alice,r=K7pQ2mWx9Zr4Tn8Vb3Lc6Hd1",
            Some(cred),
            "5f2kq0x8w3m1r7t9v4b6n2c8z",
            "c=biws,r=K7pQ2mWx9Zr4Tn8Vb3Lc6Hd15f2kq0x8w3m1r7t9v4b6n2c8z,p=rMX6cc4Ow1/O5Ng8RqOamnCYYC+CYT52DCGOf3XMGF8=",
        );
        assert_eq!(sf, "r=K7pQ2mWx9Zr4Tn8Vb3Lc6Hd15f2kq0x8w3m1r7t9v4b6n2c8z,s=o/HC1OW2BxgpOktcbX6PkA==,i=4096");
        assert_eq!(result.unwrap(), b"v=kwJwsT1zJ3se6ZY2s9cTxd71TPrWcUi5BAsuSV/KSGs=");

        let client = ScramClient::new(mech, "alice", "K7pQ2mWx9Zr4Tn8Vb3Lc6Hd1", false);
        assert_eq!(client.client_first(), b"n,,n=alice,r=K7pQ2mWx9Zr4Tn8Vb3Lc6Hd1");
        let (sent, cfinal) = client.client_final(sf.as_bytes(), b"alice-secret").unwrap();
        assert_eq!(
            String::from_utf8(cfinal).unwrap(),
            "c=biws,r=K7pQ2mWx9Zr4Tn8Vb3Lc6Hd15f2kq0x8w3m1r7t9v4b6n2c8z,p=rMX6cc4Ow1/O5Ng8RqOamnCYYC+CYT52DCGOf3XMGF8="
        );
        sent.verify_server_final(b"v=kwJwsT1zJ3se6ZY2s9cTxd71TPrWcUi5BAsuSV/KSGs=").unwrap();
    }

    const TOKEN_PASSWORD: &str =
        "a56Akuv3RKHfpxxMIPxCwDuq6hY/pqWklBYYcTec3FhBCIV1aMYGg25CAs4Fp30glgI+5BiXpohP4MJIREA7MQ==";

    /// T-SCRAM-VEC-C: SPEC §3.10 C, a token login with the tokenauth extension.
    #[test]
    fn t_scram_vec_c_token_login_sha256() {
        let mech = ScramMechanism::Sha256;
        let cred = ScramCredential::from_password(
            mech,
            TOKEN_PASSWORD.as_bytes(),
            b"4k3j2h1g0f9e8d7c6b5a4z3y2".to_vec(),
            4096,
        );
        assert_eq!(cred.stored_key.expose(), hex("2b8a04adb3d8980832e3428e67809c74d8203dd56befc3ae8a645607cdd824ec"));
        assert_eq!(cred.server_key.expose(), hex("419970b2a6f5e608e45b3456369b0327122016c661c5d5f9384e7f04c477a127"));
        let cf = parse_client_first(b"n,,n=bxw-KptNTH6KHys8TV5vcA,r=Qm9uZ2FyZGVuLWNsaWVudC0x,tokenauth=true").unwrap();
        assert!(cf.token_auth);
        assert_eq!(cf.username, "bxw-KptNTH6KHys8TV5vcA");
        let (state, sf) = server_first(mech, cf, Some(cred), vec![], "1x2w3v4u5t6s7r8q9p0o1n2m3");
        assert_eq!(
            sf,
            b"r=Qm9uZ2FyZGVuLWNsaWVudC0x1x2w3v4u5t6s7r8q9p0o1n2m3,s=NGszajJoMWcwZjllOGQ3YzZiNWE0ejN5Mg==,i=4096"
        );
        let sfinal = state
            .client_final(b"c=biws,r=Qm9uZ2FyZGVuLWNsaWVudC0x1x2w3v4u5t6s7r8q9p0o1n2m3,p=cSjiHm0HlpE633FwDl2jHkVGN1hi368vdW8PLtPCufE=")
            .unwrap();
        assert_eq!(sfinal, b"v=+TzrCvtzWkmpf3hr510WotWmAUq9lbPXErViiVgFSRU=");
    }

    /// T-SCRAM-VEC-D: SPEC §3.10 D, SHA-512.
    #[test]
    fn t_scram_vec_d_token_login_sha512() {
        let mech = ScramMechanism::Sha512;
        let cred = ScramCredential::from_password(
            mech,
            TOKEN_PASSWORD.as_bytes(),
            b"4k3j2h1g0f9e8d7c6b5a4z3y2".to_vec(),
            4096,
        );
        let (_, result) = run_server(
            mech,
            "n,,n=bxw-KptNTH6KHys8TV5vcA,r=Qm9uZ2FyZGVuLWNsaWVudC0y,tokenauth=true",
            Some(cred),
            "9z8y7x6w5v4u3t2s1r0q9p8o7",
            "c=biws,r=Qm9uZ2FyZGVuLWNsaWVudC0y9z8y7x6w5v4u3t2s1r0q9p8o7,p=6MPhiDh1IYXp1EspB5fxqMD8upgw9+mlYEtswxjd2Ihso2KdpA76jcT9cNQc3nVnpljn4CFa5clrtY1g5oBcug==",
        );
        assert_eq!(
            result.unwrap(),
            b"v=BU2VVE9qsi8OpZhdilxRbuk5OdwdIo8oldPq12kyFiydVHAUrMl0VNCjoIqKPIb04LOU88dFFCJvGhHTX5VlpA=="
        );
    }

    /// T-USER-VEC-E: SPEC §3.10 E, keys derived from an upserted salted password.
    #[test]
    fn t_user_vec_e_keys_from_salted_password() {
        let mech = ScramMechanism::Sha512;
        let salt = hex("00112233445566778899aabbccddeeff");
        let salted = mech.salted_password(b"bob-secret", &salt, 8192);
        assert_eq!(
            salted.expose(),
            hex(
                "97c68c8714adf89814d0253a70eed397bda40805a7c66891a65736de6e6f38d74db7a4b6781679b415c9379ebe56cc2c086812e15d42e1318334e4e8dca54207"
            )
        );
        let cred = ScramCredential::from_salted_password(mech, salted.expose(), salt, 8192);
        assert_eq!(
            cred.stored_key.expose(),
            hex(
                "aafd7d573d7581a03e283d8841f7e5673c5f492661e0565f41ba7a7871b8d485329e7723b53e03baad69d680758d8610d6d9ad7af2c65dc5284e548074198424"
            )
        );
        assert_eq!(
            cred.server_key.expose(),
            hex(
                "9c7e13ef3f2359e0e83d70101bde02487462a12029c2f19ba321523dd337b922f2dd5c49b0e53d27c4e1588689e4e643bb99fa12445cb7b815a862288d03b1e9"
            )
        );
        assert!(cred.verify_password(mech, b"bob-secret"));
        assert!(!cred.verify_password(mech, b"bob-secreT"));
        assert!(!format!("{cred:?}").contains("aafd"), "Debug hides keys");
    }

    /// T-SCRAM-1, T-SCRAM-2, T-SCRAM-4, T-SCRAM-13: the client-first grammar.
    #[test]
    fn t_scram_1_t_scram_2_t_scram_4_client_first_grammar() {
        let ok = |m: &str| parse_client_first(m.as_bytes()).unwrap();
        assert_eq!(ok("n,,n=a=2Cb=3Dc,r=x").username, "a,b=c");
        // librdkafka's nonces carry '=', '\\', '[' and '~'.
        assert_eq!(ok("n,,n=u,r=ab=\\[~c").cnonce, "ab=\\[~c");
        assert!(ok("n,,n=u,r=x,tokenauth=TRUE").token_auth);
        assert!(!ok("n,,n=u,r=x,tokenauth=true,tokenauth=no").token_auth, "last occurrence wins");
        assert!(!ok("n,,n=u,r=x,tokenauth=yes").token_auth);
        assert!(ok("n,,n=u,r=x,other=a=b").username == "u");
        for bad in [
            "y,,n=u,r=x",
            "p=tls-unique,,n=u,r=x",
            "n,,n=,r=x",
            "n,,n=a=2Xb,r=x",
            "n,,n=u,r=",
            "n,,n=u",
            "n,,r=x,n=u",
            "n,,m=ext,n=u,r=x",
            "n,,n=u,r=x,=v",
            "n,,n=u,r=x,k1=v",
            "n,,n=u,r=x,k=",
            "n,,n=u,r=x y",
            "n,,n=ü,r=x",
            "n,,x",
            "n,a,n=u,r=x",
            "",
        ] {
            assert_eq!(parse_client_first(bad.as_bytes()).unwrap_err(), ScramError::InvalidCredentials, "{bad:?}");
        }
    }

    /// T-SCRAM-3: an authzid must equal the user name (both unescaped).
    #[test]
    fn t_scram_3_authzid_must_match() {
        assert_eq!(parse_client_first(b"n,a=u=2Cv,n=u=2Cv,r=x").unwrap().username, "u,v");
        assert_eq!(parse_client_first(b"n,a=bob,n=alice,r=x").unwrap_err(), ScramError::AuthzidMismatch);
        assert_eq!(parse_client_first(b"n,a=,n=alice,r=x").unwrap_err(), ScramError::AuthzidMismatch);
    }

    fn alice() -> ScramCredential {
        ScramCredential::from_password(ScramMechanism::Sha256, b"pw", b"salt".to_vec(), 4096)
    }

    fn login(
        client_first: &str,
        cred: Option<ScramCredential>,
        edit: impl Fn(String) -> String,
    ) -> Result<Vec<u8>, ScramError> {
        let mech = ScramMechanism::Sha256;
        let cf = parse_client_first(client_first.as_bytes()).unwrap();
        let (state, sf) = server_first(mech, cf, cred, vec![1; 16], "SNONCE");
        let client = ScramClient::new(mech, "alice", "CNONCE", false);
        let (_, cfinal) = client.client_final(&sf, b"pw").unwrap();
        state.client_final(edit(String::from_utf8(cfinal).unwrap()).as_bytes())
    }

    /// T-SCRAM-9: r= must end with cnonce ‖ snonce; a doubled client nonce (librdkafka
    /// before 2.6.1) is accepted when the proof covers it.
    #[test]
    fn t_scram_9_nonce_suffix() {
        assert!(login("n,,n=alice,r=CNONCE", Some(alice()), |m| m).is_ok());
        assert!(login("n,,n=alice,r=CNONCE", Some(alice()), |m| m.replace("SNONCE", "SNONCF")).is_err());

        // A client that doubles its nonce computes its proof over the doubled r=.
        let mech = ScramMechanism::Sha256;
        let cred = alice();
        let cf = parse_client_first(b"n,,n=alice,r=CNONCE").unwrap();
        let (state, sf) = server_first(mech, cf, Some(cred), vec![], "SNONCE");
        let sf = String::from_utf8(sf).unwrap();
        let salted = mech.salted_password(b"pw", b"salt", 4096);
        let client = ScramClient::new(mech, "alice", "CNONCE", false);
        let (_, cfinal) = client.client_final_with_salted(&sf, "CNONCECNONCESNONCE", salted.expose());
        assert!(state.client_final(&cfinal).is_ok());
    }

    /// T-SCRAM-10: c= must be the gs2 header of client-first.
    #[test]
    fn t_scram_10_channel_binding_must_match() {
        assert!(login("n,,n=alice,r=CNONCE", Some(alice()), |m| m.replace("c=biws", "c=eSws")).is_err());
        // With an authzid the header is "n,a=alice," and c= must carry it.
        let r = login("n,a=alice,n=alice,r=CNONCE", Some(alice()), |m| m);
        assert!(r.is_err(), "the client signed c=biws, not the authzid header");
    }

    /// T-SCRAM-11: wrong-length or wrong proofs fail; so does a missing credential (D-3)
    /// and one below the minimum iterations (T-SCRAM-6).
    #[test]
    fn t_scram_11_proof_checks() {
        assert!(login("n,,n=alice,r=CNONCE", Some(alice()), |m| m).is_ok());
        let short = |m: String| format!("{},p=AAAA", m.rsplit_once(",p=").unwrap().0);
        assert_eq!(login("n,,n=alice,r=CNONCE", Some(alice()), short), Err(ScramError::InvalidCredentials));
        let flipped = |m: String| {
            let (head, p) = m.rsplit_once(",p=").unwrap();
            let mut proof = STANDARD.decode(p).unwrap();
            proof[0] ^= 1;
            format!("{head},p={}", STANDARD.encode(proof))
        };
        assert_eq!(login("n,,n=alice,r=CNONCE", Some(alice()), flipped), Err(ScramError::InvalidCredentials));
        assert_eq!(login("n,,n=alice,r=CNONCE", None, |m| m), Err(ScramError::InvalidCredentials));
        let weak = ScramCredential::from_password(ScramMechanism::Sha256, b"pw", b"salt".to_vec(), 4095);
        assert_eq!(login("n,,n=alice,r=CNONCE", Some(weak), |m| m), Err(ScramError::InvalidCredentials));
    }

    /// T-SCRAM-8: the fake server-first looks like a real one and its salt is stable per
    /// (key, mechanism, name).
    #[test]
    fn t_scram_8_fake_server_first() {
        let key = [7u8; 32];
        let s1 = fake_salt(&key, ScramMechanism::Sha256, "nobody");
        assert_eq!(s1.len(), 32);
        assert_eq!(s1, fake_salt(&key, ScramMechanism::Sha256, "nobody"));
        assert_ne!(s1, fake_salt(&key, ScramMechanism::Sha512, "nobody"));
        let cf = parse_client_first(b"n,,n=nobody,r=abc").unwrap();
        let (_, sf) = server_first(ScramMechanism::Sha256, cf, None, s1.clone(), "def");
        assert_eq!(String::from_utf8(sf).unwrap(), format!("r=abcdef,s={},i=4096", STANDARD.encode(&s1)));
    }
}
