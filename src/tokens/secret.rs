//! The master secret and the token authenticator `HMAC(secret, tokenId)` (SPEC §4.3–4.4,
//! T-ZERO-2).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use ktb_protocol::scram::Secret;

use crate::config::{HmacAlgorithm, SecretSetting};
use crate::datadir::check_private;
use crate::fsutil::atomic_write;

/// The file holding the generated secret, inside the data directory.
pub const SECRET_FILE: &str = "delegation-token.secret";

/// The master secret: the UTF-8 bytes of the secret string, the HMAC key of every token.
/// Its contents are never printed.
pub struct MasterSecret(Secret);

impl std::fmt::Debug for MasterSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterSecret([hidden])")
    }
}

impl MasterSecret {
    /// A copy of `other`, for work off the async threads.
    pub fn new_from(other: &MasterSecret) -> MasterSecret {
        MasterSecret(Secret(other.0.expose().to_vec()))
    }

    /// A secret from its string form.
    pub fn new(text: &str) -> MasterSecret {
        MasterSecret(Secret(text.as_bytes().to_vec()))
    }

    /// The secret the configuration asks for: `None` when delegation tokens are disabled
    /// (T-ENABLE-1), the configured string, or the generated one from `data_dir`, created
    /// on first start (T-ENABLE-2, T-ZERO-2, T-ZERO-3).
    pub fn load(setting: &SecretSetting, data_dir: &Path) -> Result<Option<MasterSecret>, String> {
        match setting {
            SecretSetting::Disabled => Ok(None),
            SecretSetting::Configured(s) => Ok(Some(MasterSecret::new(s))),
            SecretSetting::Generated => load_or_generate(&data_dir.join(SECRET_FILE)).map(Some),
        }
    }

    /// The fingerprint brokers compare instead of the secret (T-CLUSTER-5, §9.7):
    /// `hex(PBKDF2-HMAC-SHA256(key, "ktb-fp-v1" ‖ 0x00 ‖ key_id, 600000))`. Slow on purpose:
    /// whoever reads it from etcd cannot test guesses of the secret quickly.
    pub fn fingerprint(&self, key_id: &str) -> String {
        let salt = [b"ktb-fp-v1\0".as_slice(), key_id.as_bytes()].concat();
        let fp = ktb_protocol::scram::ScramMechanism::Sha256.salted_password(self.0.expose(), &salt, 600_000);
        fp.expose().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// True when both are the same key, compared in constant time.
    pub fn same_as(&self, other: &MasterSecret) -> bool {
        use subtle::ConstantTimeEq;
        self.0.expose().len() == other.0.expose().len() && bool::from(self.0.expose().ct_eq(other.0.expose()))
    }

    /// `HMAC(secret, tokenId)` with `alg` (T-HMAC-1).
    pub fn token_hmac(&self, alg: HmacAlgorithm, token_id: &str) -> Secret {
        fn mac<M: Mac + hmac::digest::KeyInit>(key: &[u8], msg: &[u8]) -> Vec<u8> {
            let mut m = <M as Mac>::new_from_slice(key).expect("HMAC accepts keys of any length");
            m.update(msg);
            m.finalize().into_bytes().to_vec()
        }
        let (key, msg) = (self.0.expose(), token_id.as_bytes());
        Secret(match alg {
            HmacAlgorithm::Sha1 => mac::<Hmac<sha1::Sha1>>(key, msg),
            HmacAlgorithm::Sha256 => mac::<Hmac<sha2::Sha256>>(key, msg),
            HmacAlgorithm::Sha512 => mac::<Hmac<sha2::Sha512>>(key, msg),
        })
    }
}

fn load_or_generate(path: &Path) -> Result<MasterSecret, String> {
    let shown = path.display();
    match fs::metadata(path) {
        Ok(meta) => {
            check_private(path, meta.permissions().mode(), "chmod 600").map_err(|e| e.0)?;
            let text = fs::read_to_string(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
            let text = text.trim_end();
            if text.is_empty() {
                return Err(format!(
                    "{shown} is empty; restore it from a backup (tokens issued with it stop working otherwise), or \
                     delete it to generate a new secret"
                ));
            }
            Ok(MasterSecret::new(text))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut bytes = [0u8; 32];
            getrandom::fill(&mut bytes).map_err(|e| format!("the OS has no randomness for ktb: {e}"))?;
            let text = URL_SAFE_NO_PAD.encode(bytes);
            atomic_write(path, format!("{text}\n").as_bytes(), 0o600)
                .map_err(|e| format!("cannot write {shown}: {e}"))?;
            tracing::info!("generated the delegation-token master secret in {shown}");
            Ok(MasterSecret::new(&text))
        }
        Err(e) => Err(format!("cannot read {shown}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::STANDARD;

    /// T-HMAC-1, T-HMAC-3: SPEC §3.10 vector B for each algorithm.
    #[test]
    fn t_hmac_3_vector_b() {
        let s = MasterSecret::new("ktb-test-master-secret");
        let id = "bxw-KptNTH6KHys8TV5vcA";
        let b64 = |alg| STANDARD.encode(s.token_hmac(alg, id).expose());
        assert_eq!(
            b64(HmacAlgorithm::Sha512),
            "a56Akuv3RKHfpxxMIPxCwDuq6hY/pqWklBYYcTec3FhBCIV1aMYGg25CAs4Fp30glgI+5BiXpohP4MJIREA7MQ=="
        );
        assert_eq!(b64(HmacAlgorithm::Sha256), "dQKpumwn4agywfSpNizKoOk4Cj+p96C4gpdJlfJIEEE=");
        assert_eq!(b64(HmacAlgorithm::Sha1), "QHDV7y4V+Avhh9iiMvgPWSA0KvM=");
        assert_eq!(format!("{s:?}"), "MasterSecret([hidden])");
    }

    /// T-ZERO-2: the generated secret is 43 URL-safe characters and a newline, mode 0600,
    /// and the same secret is read back on the next start.
    #[test]
    fn t_zero_2_generated_secret_file() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join(SECRET_FILE);
        let first = MasterSecret::load(&SecretSetting::Generated, tmp.path()).unwrap().unwrap();
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(text.len(), 44);
        assert!(text.ends_with('\n'));
        assert_eq!(URL_SAFE_NO_PAD.decode(text.trim_end()).unwrap().len(), 32);
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let again = MasterSecret::load(&SecretSetting::Generated, tmp.path()).unwrap().unwrap();
        assert_eq!(
            first.token_hmac(HmacAlgorithm::Sha1, "x").expose(),
            again.token_hmac(HmacAlgorithm::Sha1, "x").expose()
        );
        assert_eq!(
            first.token_hmac(HmacAlgorithm::Sha1, "x").expose(),
            MasterSecret::new(text.trim_end()).token_hmac(HmacAlgorithm::Sha1, "x").expose(),
            "the file's text is the secret string"
        );
    }

    /// T-ZERO-3: a secret file readable by others is refused with a fix hint.
    #[test]
    fn t_zero_3_readable_secret_file_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        MasterSecret::load(&SecretSetting::Generated, tmp.path()).unwrap();
        fs::set_permissions(tmp.path().join(SECRET_FILE), fs::Permissions::from_mode(0o644)).unwrap();
        let e = MasterSecret::load(&SecretSetting::Generated, tmp.path()).unwrap_err();
        assert!(e.contains("chmod 600"), "{e}");
    }

    /// T-ENABLE-1, T-ENABLE-2: an empty configured secret disables tokens; a configured one
    /// writes no file.
    #[test]
    fn t_enable_2_configured_and_disabled() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(MasterSecret::load(&SecretSetting::Disabled, tmp.path()).unwrap().is_none());
        assert!(MasterSecret::load(&SecretSetting::Configured("k".into()), tmp.path()).unwrap().is_some());
        assert!(!tmp.path().join(SECRET_FILE).exists());
    }
}
