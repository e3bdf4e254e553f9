//! The master keys (SPEC §9.4, T-ROTATE-3..6): the single secret of Kafka parity, or a
//! keyring file of `<key_id> <secret>` lines, and where the broker reads them from.
//!
//! A token records the id of the key its HMAC was computed with. The single secret's id
//! is stored as `""` and shown as `default` (§9.7), so a keyring made from the generated
//! secret, with that secret on a `default` line, keeps every earlier token working.

use std::collections::HashSet;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ktb_protocol::scram::Secret;

use super::secret::{MasterSecret, SECRET_FILE};
use crate::config::{Config, HmacAlgorithm, SecretSetting};
use crate::datadir::check_private;
use crate::fsutil::atomic_write;

/// The keyring's file inside the data directory, used when
/// `delegation.token.secret.keyring.file` is not set.
pub const KEYRING_FILE: &str = "delegation-token.keyring";

/// How the single secret's key id is shown.
pub const DEFAULT_KEY_ID: &str = "default";

/// The most keys a keyring may hold: every key costs a fingerprint at start, and on etcd
/// a broker publishes (and unpublishes) its keys in one transaction of at most 128
/// operations.
pub const MAX_KEYS: usize = 64;

/// The id as shown and published: `default` for the single secret's `""`.
pub fn shown_id(stored: &str) -> &str {
    if stored.is_empty() { DEFAULT_KEY_ID } else { stored }
}

/// The id as stored in token records: `""` for `default`.
pub fn stored_id(shown: &str) -> &str {
    if shown == DEFAULT_KEY_ID { "" } else { shown }
}

/// True when `id` is a valid key id: `[A-Za-z0-9_-]{1,32}`.
pub fn valid_key_id(id: &str) -> bool {
    (1..=32).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// One master key.
pub struct Key {
    /// Its id as stored in token records (`""` for `default`).
    pub id: String,
    /// The key itself.
    pub secret: MasterSecret,
}

/// The master keys, in file order: the last one is the newest.
pub struct Keyring {
    keys: Vec<Key>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.keys.iter().map(|k| shown_id(&k.id))).finish()
    }
}

impl Keyring {
    /// The single secret as the one key `default` (T-ROTATE-1).
    pub fn single(secret: MasterSecret) -> Keyring {
        Keyring { keys: vec![Key { id: String::new(), secret }] }
    }

    /// Parses a keyring file's text. Blank lines and lines starting with `#` are skipped;
    /// errors name the line, never its secret.
    pub fn parse(text: &str) -> Result<Keyring, String> {
        let mut keys = Vec::new();
        let mut seen = HashSet::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (id, secret) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
            let secret = secret.trim();
            if !valid_key_id(id) {
                return Err(format!(
                    "line {}: the key id must be 1 to 32 of A-Z a-z 0-9 _ - (the line is `<key_id> <secret>`)",
                    n + 1
                ));
            }
            if secret.is_empty() {
                // The one field may be a secret pasted alone: it is not repeated.
                return Err(format!("line {}: one field where `<key_id> <secret>` was expected", n + 1));
            }
            if !seen.insert(id.to_owned()) {
                return Err(format!("line {}: key {id} appears twice", n + 1));
            }
            keys.push(Key { id: stored_id(id).to_owned(), secret: MasterSecret::new(secret) });
        }
        if keys.is_empty() {
            return Err("it holds no key; add one with `ktb secret rotate`".into());
        }
        if keys.len() > MAX_KEYS {
            return Err(format!("it holds {} keys, more than {MAX_KEYS}; remove keys no token uses", keys.len()));
        }
        Ok(Keyring { keys })
    }

    /// Reads the keyring at `path`, which must be private (0600, like the secret file).
    pub fn read(path: &Path) -> Result<Keyring, String> {
        let shown = path.display();
        let meta = fs::metadata(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => {
                format!("the keyring {shown} does not exist; create it with `ktb secret rotate --keyring-file {shown}`")
            }
            _ => format!("cannot read the keyring {shown}: {e}"),
        })?;
        // Read every second: nobody but its owner, this process's user, may write it either.
        let mode = meta.permissions().mode();
        check_private(path, mode, "chmod 600").map_err(|e| e.0)?;
        if mode & 0o022 != 0 {
            return Err(format!(
                "the keyring {shown} is writable by group or others (mode {:o}); fix it with: chmod 600 {shown}",
                mode & 0o777
            ));
        }
        // SAFETY: geteuid has no preconditions and cannot fail.
        let me = unsafe { libc::geteuid() };
        if meta.uid() != me {
            return Err(format!(
                "the keyring {shown} belongs to uid {}, not to the broker's user (uid {me}); fix it with: chown {me} {shown}",
                meta.uid()
            ));
        }
        let text = fs::read_to_string(path).map_err(|e| format!("cannot read the keyring {shown}: {e}"))?;
        Keyring::parse(&text).map_err(|e| format!("the keyring {shown}: {e}"))
    }

    /// The key with stored id `id`.
    pub fn get(&self, id: &str) -> Option<&MasterSecret> {
        self.keys.iter().find(|k| k.id == id).map(|k| &k.secret)
    }

    /// The keys, oldest first.
    pub fn keys(&self) -> &[Key] {
        &self.keys
    }

    /// The newest key (the last line).
    pub fn newest(&self) -> &Key {
        self.keys.last().expect("a keyring holds at least one key")
    }

    /// Where key `id` stands in the file, oldest first.
    pub fn position(&self, id: &str) -> Option<usize> {
        self.keys.iter().position(|k| k.id == id)
    }

    /// `HMAC(key, tokenId)` for a token that recorded `key_id`; `None` when this keyring
    /// lacks the key (the token is then invalid here, T-ROTATE-5).
    pub fn hmac(&self, key_id: &str, alg: HmacAlgorithm, token_id: &str) -> Option<Secret> {
        self.get(key_id).map(|k| k.token_hmac(alg, token_id))
    }

    /// A short line naming the key ids, for the log (never the keys).
    pub fn describe(&self) -> String {
        self.keys.iter().map(|k| shown_id(&k.id)).collect::<Vec<_>>().join(", ")
    }
}

/// Where the broker's master keys come from, decided once at startup.
#[derive(Clone)]
pub enum KeySource {
    /// `delegation.token.secret.key` is empty: delegation tokens are disabled.
    Disabled,
    /// `delegation.token.secret.key` is set: one key, nothing to reload.
    Configured(String),
    /// Nothing is configured: the keyring in the data dir if there is one, else the
    /// secret generated into the data dir. `ktb secret rotate --data-dir` turns the one
    /// into the other; the broker follows on its next reload.
    DataDir(PathBuf),
    /// `delegation.token.secret.keyring.file`.
    Keyring(PathBuf),
}

impl std::fmt::Debug for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeySource::Disabled => f.write_str("Disabled"),
            KeySource::Configured(_) => f.write_str("Configured([hidden])"),
            KeySource::DataDir(d) => f.debug_tuple("DataDir").field(d).finish(),
            KeySource::Keyring(p) => f.debug_tuple("Keyring").field(p).finish(),
        }
    }
}

impl KeySource {
    /// The source `config` asks for, with `data_dir` as the data directory. A configured
    /// secret beside a keyring is refused (T-ROTATE-2: one or the other).
    pub fn from_config(config: &Config, data_dir: &Path) -> Result<KeySource, String> {
        let local = data_dir.join(KEYRING_FILE);
        let configured = config.token_keyring_file.clone();
        match (&config.token_secret, configured) {
            (SecretSetting::Generated, Some(file)) => Ok(KeySource::Keyring(file)),
            (SecretSetting::Generated, None) => Ok(KeySource::DataDir(data_dir.to_owned())),
            (_, Some(_)) => Err("delegation.token.secret.keyring.file and delegation.token.secret.key are both set: \
                                 use one or the other"
                .into()),
            (setting, None) if local.exists() => Err(format!(
                "{} exists, but delegation.token.secret.key is {}: use one or the other (unset the property to use \
                 the keyring, or remove the keyring)",
                local.display(),
                if matches!(setting, SecretSetting::Disabled) { "empty" } else { "set" }
            )),
            (SecretSetting::Disabled, None) => Ok(KeySource::Disabled),
            (SecretSetting::Configured(s), None) => Ok(KeySource::Configured(s.clone())),
        }
    }

    /// True when the keys are shared by configuration or a keyring file, as a cluster on
    /// etcd needs (a secret generated into one data dir would differ from the others').
    pub fn shareable(&self) -> bool {
        match self {
            KeySource::DataDir(dir) => dir.join(KEYRING_FILE).exists(),
            _ => true,
        }
    }

    /// The keys at startup: `None` when tokens are disabled; the secret is generated into
    /// the data dir on first start when nothing is configured (T-ZERO-2).
    pub fn load(&self) -> Result<Option<Keyring>, String> {
        match self {
            KeySource::Disabled => Ok(None),
            KeySource::Configured(s) => Ok(Some(Keyring::single(MasterSecret::new(s)))),
            KeySource::Keyring(path) => Keyring::read(path).map(Some),
            KeySource::DataDir(dir) => {
                let keyring = dir.join(KEYRING_FILE);
                if keyring.exists() {
                    Keyring::read(&keyring).map(Some)
                } else {
                    MasterSecret::load(&SecretSetting::Generated, dir).map(|s| s.map(Keyring::single))
                }
            }
        }
    }

    /// The keys as the files hold them now, for a reload: `None` when there is nothing to
    /// reload (a configured secret, or the generated one with no keyring beside it).
    pub fn reload(&self) -> Result<Option<Keyring>, String> {
        match self {
            KeySource::Disabled | KeySource::Configured(_) => Ok(None),
            KeySource::Keyring(path) => Keyring::read(path).map(Some),
            KeySource::DataDir(dir) => {
                let keyring = dir.join(KEYRING_FILE);
                if keyring.exists() { Keyring::read(&keyring).map(Some) } else { Ok(None) }
            }
        }
    }

    /// The file whose changes trigger a reload, if any.
    pub fn watched(&self) -> Option<PathBuf> {
        match self {
            KeySource::Disabled | KeySource::Configured(_) => None,
            KeySource::Keyring(path) => Some(path.clone()),
            KeySource::DataDir(dir) => Some(dir.join(KEYRING_FILE)),
        }
    }
}

/// What identifies a file's current contents cheaply: device, inode, size and change
/// time (a rename, a rewrite in place and a chmod all move one of them).
pub fn file_stamp(path: &Path) -> Option<(u64, u64, u64, i64, i64)> {
    fs::metadata(path).ok().map(|m| (m.dev(), m.ino(), m.size(), m.ctime(), m.ctime_nsec()))
}

/// A new key id from the clock: `k` and the UTC time to the second, unique in `ring`.
fn new_key_id(now_ms: i64, taken: &dyn Fn(&str) -> bool) -> String {
    let stamp: String = crate::clock::rfc3339(now_ms).chars().filter(|c| c.is_ascii_digit()).take(14).collect();
    let base = format!("k{}T{}Z", &stamp[..8.min(stamp.len())], &stamp[8.min(stamp.len())..]);
    (1..).map(|n| if n == 1 { base.clone() } else { format!("{base}-{n}") }).find(|id| !taken(id)).unwrap_or(base)
}

/// A new random secret: 32 bytes from the OS, URL-safe base64 (as the generated secret).
fn new_secret() -> Result<String, String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| format!("the OS has no randomness for ktb: {e}"))?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// What `ktb secret rotate` did.
#[derive(Debug)]
pub struct Rotated {
    /// The keyring written.
    pub path: PathBuf,
    /// The new key's id.
    pub key_id: String,
    /// The key ids now in the keyring, oldest first.
    pub key_ids: Vec<String>,
    /// True when the generated secret was moved into the keyring as key `default`.
    pub migrated: bool,
}

/// Serialises rotations within one process (tests run several).
static ROTATING: Mutex<()> = Mutex::new(());

/// Appends a new random key to the keyring at `path` (T-ROTATE-6), creating it when
/// absent. `secret_file` is the data dir's generated secret: when the keyring does not
/// exist yet and it does, its secret becomes the keyring's first key, `default`, so every
/// token made with it keeps working, and the file is removed once the keyring is durable.
/// The existing lines are kept byte for byte; the file is replaced atomically, mode 0600.
pub fn rotate(path: &Path, secret_file: Option<&Path>, key_id: Option<&str>, now_ms: i64) -> Result<Rotated, String> {
    let _one = ROTATING.lock().unwrap_or_else(|p| p.into_inner());
    let shown = path.display();
    let (mut text, ring, migrated) = match fs::metadata(path) {
        Ok(_) => {
            let ring = Keyring::read(path)?;
            let text = fs::read_to_string(path).map_err(|e| format!("cannot read the keyring {shown}: {e}"))?;
            (text, Some(ring), false)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => match secret_file.filter(|f| f.exists()) {
            Some(file) => {
                let meta = fs::metadata(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
                check_private(file, meta.permissions().mode(), "chmod 600").map_err(|e| e.0)?;
                let secret = fs::read_to_string(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
                let secret = secret.trim();
                if secret.is_empty() || secret.contains(char::is_whitespace) {
                    return Err(format!(
                        "{} does not hold a secret a keyring line can carry; write the keyring by hand",
                        file.display()
                    ));
                }
                (format!("{DEFAULT_KEY_ID} {secret}\n"), None, true)
            }
            None => (String::new(), None, false),
        },
        Err(e) => return Err(format!("cannot read the keyring {shown}: {e}")),
    };
    let taken =
        |id: &str| ring.as_ref().is_some_and(|r| r.get(stored_id(id)).is_some()) || (migrated && id == DEFAULT_KEY_ID);
    let id = match key_id {
        Some(id) if !valid_key_id(id) => {
            return Err(format!("--key-id {id:?}: a key id is 1 to 32 of A-Z a-z 0-9 _ -"));
        }
        Some(id) if taken(id) => return Err(format!("--key-id {id}: the keyring already holds that key id")),
        Some(id) => id.to_owned(),
        None => new_key_id(now_ms, &taken),
    };
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(&format!("{id} {}\n", new_secret()?));
    let parsed = Keyring::parse(&text).map_err(|e| format!("the new keyring would be invalid: {e}"))?;
    atomic_write(path, text.as_bytes(), 0o600).map_err(|e| format!("cannot write the keyring {shown}: {e}"))?;
    if migrated && let Some(file) = secret_file {
        fs::remove_file(file).map_err(|e| {
            format!(
                "the keyring {shown} holds the generated secret now, but {} could not be removed: {e}",
                file.display()
            )
        })?;
    }
    Ok(Rotated {
        path: path.to_owned(),
        key_id: id,
        key_ids: parsed.keys().iter().map(|k| shown_id(&k.id).to_owned()).collect(),
        migrated,
    })
}

/// Where `ktb secret` works: the data dir's keyring (with its generated secret), or a
/// keyring file named outright.
pub fn keyring_path(data_dir: Option<&Path>, keyring_file: Option<&Path>) -> (PathBuf, Option<PathBuf>) {
    match (keyring_file, data_dir) {
        (Some(file), _) => (file.to_owned(), None),
        (None, Some(dir)) => (dir.join(KEYRING_FILE), Some(dir.join(SECRET_FILE))),
        (None, None) => (PathBuf::from(KEYRING_FILE), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// T-ROTATE-3: lines are `<key_id> <secret>`; a bad id, a missing secret, a repeated
    /// id and an empty file are refused with the line number and without the secret.
    #[test]
    fn t_rotate_3_keyring_lines() {
        let ring = Keyring::parse("# keys\ndefault s0\n\nk-1 s1\nk_2   s2 \n").unwrap();
        assert_eq!(format!("{ring:?}"), r#"["default", "k-1", "k_2"]"#, "ids only, never the keys");
        assert_eq!(ring.newest().id, "k_2");
        assert!(ring.get("").is_some(), "default is stored as \"\"");
        assert!(ring.get("default").is_none());
        let hmac = |r: &Keyring, id| r.hmac(id, HmacAlgorithm::Sha256, "t").unwrap().expose().to_vec();
        assert_eq!(hmac(&ring, "k-1"), MasterSecret::new("s1").token_hmac(HmacAlgorithm::Sha256, "t").expose());
        assert_ne!(hmac(&ring, "k-1"), hmac(&ring, "k_2"));
        for (text, want) in [
            ("bad.id secret-x\n", "line 1: the key id"),
            ("k1\n", "line 1: one field"),
            ("k1 a\nk1 secret-y\n", "line 2: key k1 appears twice"),
            ("# nothing\n", "holds no key"),
            (&format!("{} s\n", "x".repeat(33)), "line 1: the key id"),
        ] {
            let e = Keyring::parse(text).unwrap_err();
            assert!(e.contains(want), "{text:?}: {e}");
            assert!(!e.contains("secret-x") && !e.contains("secret-y"), "{e}");
        }
    }

    /// T-ROTATE-3: a keyring readable by others is refused, like the secret file.
    #[test]
    fn t_rotate_3_keyring_must_be_private() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join(KEYRING_FILE);
        fs::write(&path, "k1 s1\n").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let e = Keyring::read(&path).unwrap_err();
        assert!(e.contains("chmod 600"), "{e}");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        assert!(Keyring::read(&path).is_ok());
    }

    /// T-ROTATE-6: rotate appends a fresh key and keeps the earlier lines byte for byte;
    /// on a data dir with the generated secret, that secret becomes `default` and its file
    /// goes; the file stays 0600.
    #[test]
    fn t_rotate_6_rotate_appends_and_migrates() {
        let tmp = tempfile::tempdir().unwrap();
        let generated = MasterSecret::load(&SecretSetting::Generated, tmp.path()).unwrap().unwrap();
        let (path, secret_file) = keyring_path(Some(tmp.path()), None);
        let first = rotate(&path, secret_file.as_deref(), None, 1_796_307_305_000).unwrap();
        assert!(first.migrated);
        assert_eq!(first.key_ids, ["default", first.key_id.as_str()]);
        assert!(first.key_id.starts_with('k') && valid_key_id(&first.key_id), "{}", first.key_id);
        assert!(!tmp.path().join(SECRET_FILE).exists(), "the secret lives in the keyring only");
        let ring = Keyring::read(&path).unwrap();
        assert!(ring.get("").unwrap().same_as(&generated), "default is the generated secret");
        let before = fs::read_to_string(&path).unwrap();
        let second = rotate(&path, secret_file.as_deref(), None, 1_796_307_305_000).unwrap();
        assert_eq!(second.key_id, format!("{}-2", first.key_id), "unique within the same second");
        let after = fs::read_to_string(&path).unwrap();
        assert!(after.starts_with(&before));
        assert_eq!(after.lines().count(), 3);
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert!(rotate(&path, None, Some(&first.key_id), 0).unwrap_err().contains("already holds"));
        assert!(rotate(&path, None, Some("no spaces"), 0).unwrap_err().contains("--key-id"));
        let fresh = tmp.path().join("other.keyring");
        let made = rotate(&fresh, None, Some("first"), 0).unwrap();
        assert_eq!(made.key_ids, ["first"]);
        assert!(!made.migrated);
    }

    /// T-ROTATE-2 (as amended by T-ROTATE-3): a configured secret beside a keyring in the
    /// data dir is refused at startup.
    #[test]
    fn t_rotate_3_secret_and_keyring_conflict() {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(tmp.path().join(KEYRING_FILE), "k1 s1\n").unwrap();
        let mut config = Config::load(None, std::iter::empty(), &[]).unwrap().0;
        config.token_secret = SecretSetting::Configured("x".into());
        let e = KeySource::from_config(&config, tmp.path()).unwrap_err();
        assert!(e.contains("use one or the other"), "{e}");
        config.token_secret = SecretSetting::Generated;
        assert!(matches!(KeySource::from_config(&config, tmp.path()), Ok(KeySource::DataDir(_))));
    }
}
