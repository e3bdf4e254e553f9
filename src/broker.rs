//! The broker's shared state: configuration, store, users, tokens, clock and the
//! login pieces every connection uses. It sits below the network shell (`server`), the
//! handlers (`api`) and the SASL state machine (`auth::sasl`), which all take it from here.

use std::sync::Arc;

use tracing::{info, warn};

use ktb_protocol::scram::{ScramCredential, ScramMechanism};

use crate::audit::Audit;
use crate::auth::kdf::KdfPool;
use crate::auth::users::{Alteration, Users};
use crate::auth::{Identity, Principal};
use crate::clock::{Clock, SystemClock};
use crate::cluster::Cluster;
use crate::config::{Config, StoreKind};
use crate::datadir::DataDir;
use crate::metrics::Metrics;
use crate::rotation::Rotation;
use crate::store::etcd::EtcdStore;
use crate::store::{SledStore, Store};
use crate::tokens::{KeySource, LoginKeys, TokenDetails, TokenSettings, Tokens};

/// A reason the broker cannot start (exit code 2, T-LIFE-2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StartupError(pub String);

impl From<crate::cluster::ClusterError> for StartupError {
    fn from(e: crate::cluster::ClusterError) -> Self {
        StartupError(e.0)
    }
}

/// Where a cluster on etcd keeps the cluster id and the fake-salt key that all its
/// brokers share (T-CLUSTER-1, T-REVEAL-1).
pub const CLUSTER_ID_KEY: &[u8] = b"meta/cluster_id";
pub const FAKE_SALT_KEY: &[u8] = b"meta/fake_salt_key";

/// How to start a broker, beyond its configuration.
pub struct StartOptions {
    /// The clock (tests inject a manual one).
    pub clock: Arc<dyn Clock>,
    /// The bootstrap user's password (`KTB_ADMIN_PASSWORD`); generated when absent.
    pub admin_password: Option<String>,
    /// The metrics, when the caller serves them already (the metrics listener is bound
    /// before the store opens); otherwise made from the configuration.
    pub metrics: Option<Arc<Metrics>>,
}

impl Default for StartOptions {
    fn default() -> Self {
        StartOptions { clock: Arc::new(SystemClock), admin_password: None, metrics: None }
    }
}

/// State shared by every connection.
pub struct Broker {
    /// The typed configuration.
    pub config: Config,
    /// This cluster's id (T-ZERO-5).
    pub cluster_id: String,
    /// Durable storage.
    pub store: Arc<dyn Store>,
    /// SCRAM user credentials.
    pub users: Users,
    /// Delegation tokens.
    pub tokens: Arc<Tokens>,
    /// Their master keys over time (T-ROTATE-3..6).
    pub rotation: Arc<Rotation>,
    /// The brokers of the cluster (this one alone on sled).
    pub cluster: Arc<Cluster>,
    /// The broker's notion of now.
    pub clock: Arc<dyn Clock>,
    /// The data dir's key for the fake salts of unknown names and the salts of token
    /// credentials (T-REVEAL-1).
    pub fake_salt_key: [u8; 32],
    /// The bounded pool of client-triggered key derivations (T-LIMIT-6).
    pub kdf: Arc<KdfPool>,
    /// What the broker counts (T-LIFE-3, T-OPS-1).
    pub metrics: Arc<Metrics>,
    /// The audit log (T-OPS-2).
    pub audit: Audit,
    /// The bootstrap user's generated password, when this start created it (T-ZERO-4).
    /// The caller prints it once and drops it.
    pub generated_admin_password: Option<String>,
    data_dir: DataDir,
}

/// The store could not be read to decide a login: the connection is closed without an
/// answer, so the client tries another broker (T-CLUSTER-7, §9.7).
#[derive(Debug)]
pub struct Unreachable;

/// Logs a store failure met by a login and reports it as [`Unreachable`].
fn unreachable(e: crate::store::StoreError) -> Unreachable {
    tracing::warn!("a login could not read the store: {e}");
    Unreachable
}

/// Iterations for credentials ktb creates itself (D-26: the same as the fakes shown for
/// unknown names, so neither tells the other apart, T-REVEAL-1).
pub const BOOTSTRAP_ITERATIONS: u32 = ktb_protocol::scram::MIN_ITERATIONS;

/// Random bytes from the OS, or a startup error.
fn random_bytes<const N: usize>() -> Result<[u8; N], StartupError> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).map_err(|e| StartupError(format!("the OS has no randomness for ktb: {e}")))?;
    Ok(b)
}

/// Both SCRAM credentials for `password`, each with its own random 32-byte salt.
pub fn new_user_credentials(password: &str, iterations: u32) -> Result<Vec<Alteration>, StartupError> {
    [ScramMechanism::Sha256, ScramMechanism::Sha512]
        .into_iter()
        .map(|m| {
            let salt = random_bytes::<32>()?.to_vec();
            Ok(Alteration::Upsert(m, ScramCredential::from_password(m, password.as_bytes(), salt, iterations)))
        })
        .collect()
}

impl Broker {
    /// Opens the data directory and the store, and creates the bootstrap user when the
    /// store has no users (T-PERSIST-4's first steps, T-ZERO-4).
    pub async fn open(config: Config, options: StartOptions) -> Result<Broker, StartupError> {
        let data_dir = DataDir::open(&config.data_dir, config.node_id).map_err(|e| StartupError(e.0))?;
        let keys = KeySource::from_config(&config, data_dir.path()).map_err(StartupError)?;
        let (store, etcd_store): (Arc<dyn Store>, _) = match &config.store {
            StoreKind::Sled => {
                let sled = SledStore::open(&data_dir.store_path()).map_err(|e| {
                    StartupError(format!("cannot open the store in {}: {e}", data_dir.path().display()))
                })?;
                crate::tokens::remove_legacy_index_keys(&sled)
                    .map_err(|e| StartupError(format!("cannot migrate the store: {e}")))?;
                (Arc::new(sled), None)
            }
            StoreKind::Etcd(etcd) => {
                if !keys.shareable() {
                    return Err(StartupError(
                        "ktb.store=etcd needs delegation.token.secret.keyring.file (or \
                         delegation.token.secret.key), the same keys on every broker: a secret generated into one \
                         broker's data dir would differ from the others' (set delegation.token.secret.key empty to \
                         disable delegation tokens)"
                            .into(),
                    ));
                }
                let timeout = std::time::Duration::from_millis(config.etcd_request_timeout_ms.max(1) as u64);
                let store = EtcdStore::connect(etcd, timeout)
                    .await
                    .map_err(|e| StartupError(format!("cannot use etcd at {}: {e}", etcd.endpoints.join(","))))?;
                let store = Arc::new(store);
                (store.clone(), Some(store))
            }
        };
        let metrics = options.metrics.unwrap_or_else(|| Arc::new(Metrics::for_config(&config)));
        let store: Arc<dyn Store> =
            if metrics.enabled() { Arc::new(crate::store::timed::Timed::new(store, metrics.clone())) } else { store };
        let audit = Audit::open(config.audit_log_file.as_deref())
            .map_err(|e| StartupError(format!("ktb.audit.log.file: {e}")))?;
        // Files sled created with the process umask, or an earlier build left readable.
        data_dir.make_private().map_err(|e| StartupError(e.0))?;
        // Before users or tokens are written: keys that cannot be used stop the start here.
        let ring = keys.load().map_err(StartupError)?;
        let (cluster_id, fake_salt_key) = match &config.store {
            StoreKind::Sled => (data_dir.cluster_id.clone(), data_dir.fake_salt_key().map_err(|e| StartupError(e.0))?),
            // One cluster id and one fake-salt key for every broker on the prefix (T-CLUSTER-1,
            // T-REVEAL-1): the first broker's, written once.
            StoreKind::Etcd(_) => {
                let shared = |key: &'static [u8], fresh: Vec<u8>| {
                    let store = store.clone();
                    async move {
                        crate::store::put_new(store.as_ref(), key, fresh).await?;
                        store.get(key).await.map(|v| v.map(|v| v.value).unwrap_or_default())
                    }
                };
                let etcd_err = |e: crate::store::StoreError| {
                    StartupError(format!("cannot read the cluster's identity from etcd: {e}"))
                };
                let id = shared(CLUSTER_ID_KEY, data_dir.cluster_id.clone().into_bytes()).await.map_err(etcd_err)?;
                let salt = shared(FAKE_SALT_KEY, random_bytes::<32>()?.to_vec()).await.map_err(etcd_err)?;
                let salt: [u8; 32] = salt
                    .try_into()
                    .map_err(|_| StartupError("the cluster's fake-salt key in etcd is not 32 bytes".into()))?;
                (String::from_utf8_lossy(&id).into_owned(), salt)
            }
        };
        let kdf = KdfPool::for_this_machine()
            .map_err(|e| StartupError(format!("cannot start the key-derivation threads: {e}")))?;
        let cluster = Arc::new(match (&config.store, etcd_store) {
            (StoreKind::Etcd(etcd), Some(store)) => {
                let instance = data_dir.instance_id().map_err(|e| StartupError(e.0))?;
                Cluster::on_etcd(store, config.node_id, instance, etcd.lease_ms)
            }
            _ => Cluster::single(config.node_id),
        });
        let users = Users::new(store.clone());
        let generated_admin_password = bootstrap_user(&config, &users, options.admin_password).await?;
        let logins = LoginKeys { kdf: kdf.clone(), salt_key: fake_salt_key };
        let on_swept = |t: &TokenDetails| record_swept(&metrics, &audit, t);
        let tokens = open_tokens(&config, ring, store.clone(), options.clock.as_ref(), logins, &on_swept).await?;
        let rotation = Rotation::start(keys, tokens.clone(), cluster.clone(), options.clock.now_ms()).await?;
        Ok(Broker {
            tokens,
            rotation,
            cluster,
            cluster_id,
            config,
            store,
            users,
            clock: options.clock,
            fake_salt_key,
            kdf,
            metrics,
            audit,
            generated_admin_password,
            data_dir,
        })
    }

    /// The credential and identity for a SCRAM login (T-SCRAM-5). `None` for both means
    /// the login will fail at client-final after a fake server-first (D-3);
    /// [`Unreachable`] that the store could not be read (T-CLUSTER-7).
    pub async fn scram_lookup(
        &self,
        username: &str,
        mech: ScramMechanism,
        token_auth: bool,
    ) -> Result<(Option<ScramCredential>, Option<Identity>), Unreachable> {
        // The user and the token of that name are read together (one round trip on etcd,
        // §9.7), and always both, so a user, a token and an unknown name cost the same
        // reads (T-REVEAL-1).
        let (user, token) = tokio::join!(self.users.credential(username, mech), self.token_lookup(username, mech));
        let (user, token) = (user.map_err(unreachable)?, token?);
        if token_auth {
            // A miss shows the user's salt if the name is a user, as a login without
            // `tokenauth` would, so comparing the two tells nothing; with no identity the
            // exchange still fails at client-final.
            return Ok(match token {
                (None, _) => (user, None),
                found => found,
            });
        }
        Ok(match user {
            Some(c) => (
                Some(c),
                Some(Identity { principal: Principal::user(username), token_expiry_ms: None, token_id: None }),
            ),
            // D-1: user credentials win; only then may the name be a token id.
            None if self.config.implicit_token_login => token,
            None => (None, None),
        })
    }

    /// A token login as `token_id` (T-TLOGIN-1..4): authenticated as the token's owner.
    async fn token_lookup(
        &self,
        token_id: &str,
        mech: ScramMechanism,
    ) -> Result<(Option<ScramCredential>, Option<Identity>), Unreachable> {
        Ok(match self.tokens.login(token_id, mech, self.clock.now_ms()).await.map_err(unreachable)? {
            Some(login) => (
                Some(login.credential),
                Some(Identity {
                    principal: login.details.owner,
                    token_expiry_ms: Some(login.details.expiry_ts),
                    token_id: Some(login.details.token_id.clone()),
                }),
            ),
            None => (None, None),
        })
    }

    /// Checks a PLAIN password against the user's stored SCRAM credential, SHA-512 first
    /// (T-PLAIN-2). An unknown user costs the same PBKDF2 work as a known one, and the
    /// work runs off the async workers.
    pub async fn plain_verify(&self, username: &str, password: &str) -> Result<bool, Unreachable> {
        // Both mechanisms are read whatever the first finds, so a user and an unknown
        // name cost the same store reads (§9.7).
        let found = match self.users.both(username).await.map_err(unreachable)? {
            [Some(c), _] => Some((ScramMechanism::Sha512, c)),
            [None, Some(c)] => Some((ScramMechanism::Sha256, c)),
            [None, None] => None,
        };
        let password = password.as_bytes().to_vec();
        let fake_salt = ktb_protocol::scram::fake_salt(&self.fake_salt_key, ScramMechanism::Sha512, username);
        let verified = self
            .kdf
            .run(crate::auth::kdf::Work::Plain, move || match found {
                Some((m, c)) => c.verify_password(m, &password),
                None => {
                    let _ = ScramMechanism::Sha512.salted_password(&password, &fake_salt, BOOTSTRAP_ITERATIONS);
                    false
                }
            })
            .await;
        Ok(match verified {
            Ok(ok) => ok,
            Err(busy) => {
                info!(user = %crate::logsafe::Untrusted(username), "PLAIN login refused: {busy}");
                false
            }
        })
    }

    /// True when `principal` is listed in `super.users`.
    pub fn is_super_user(&self, principal: &Principal) -> bool {
        self.config.super_users.contains(principal)
    }

    /// The data directory in use.
    pub fn data_dir(&self) -> &std::path::Path {
        self.data_dir.path()
    }
}

/// Loads the master keys and the tokens, rebuilds the HMAC index and sweeps what
/// expired while the broker was down (T-PERSIST-4, T-SWEEP-1).
async fn open_tokens(
    config: &Config,
    secret: Option<crate::tokens::Keyring>,
    store: Arc<dyn Store>,
    clock: &dyn Clock,
    logins: LoginKeys,
    on_swept: &(dyn Fn(&TokenDetails) + Send + Sync),
) -> Result<Arc<Tokens>, StartupError> {
    if secret.is_none() {
        warn!("delegation.token.secret.key is empty: delegation tokens are disabled");
    }
    let store_err = |e: crate::store::StoreError| StartupError(format!("cannot load tokens: {e}"));
    let wait = std::time::Duration::from_millis(config.etcd_request_timeout_ms.max(1) as u64);
    let tokens =
        Tokens::open(store, secret, TokenSettings::from_config(config), logins, wait).await.map_err(store_err)?;
    if let StoreKind::Etcd(etcd) = &config.store {
        let stale = std::time::Duration::from_millis(etcd.stale_ms.max(1) as u64);
        tokio::spawn(Tokens::confirm_view(Arc::downgrade(&tokens), stale));
    }
    // On etcd only the elected sweeper sweeps, and it is elected once registered.
    let swept = match config.store {
        StoreKind::Sled => tokens.sweep(clock.now_ms(), on_swept).await.map_err(store_err)?,
        StoreKind::Etcd(_) => 0,
    };
    info!(indexed = tokens.len(), swept, "tokens loaded");
    Ok(tokens)
}

/// Counts a token the sweeper deleted and audits it (T-LIFE-3, T-OPS-2).
pub fn record_swept(metrics: &Metrics, audit: &Audit, t: &TokenDetails) {
    metrics.swept(1);
    let subject = crate::audit::Subject {
        token_id: Some(&t.token_id),
        owner: Some(&t.owner),
        requester: Some(&t.requester),
        ..crate::audit::Subject::default()
    };
    audit.record_detached(&crate::audit::Event { event: "token_swept", subject, code: ktb_protocol::error_code::NONE });
}

/// Creates `ktb.bootstrap.user` when the store has no users (T-ZERO-4). Returns the
/// password when it was generated, so the caller can show it once.
async fn bootstrap_user(
    config: &Config,
    users: &Users,
    password: Option<String>,
) -> Result<Option<String>, StartupError> {
    let store_err = |e: crate::store::StoreError| StartupError(format!("cannot read or write users: {e}"));
    if !users.is_empty().await.map_err(store_err)? {
        return Ok(None);
    }
    let name = &config.bootstrap_user;
    let (password, generated) = match password.filter(|p| !p.is_empty()) {
        Some(p) => (p, false),
        None => {
            use base64::Engine;
            (base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random_bytes::<24>()?), true)
        }
    };
    let changes: Vec<(String, Alteration)> =
        new_user_credentials(&password, BOOTSTRAP_ITERATIONS)?.into_iter().map(|a| (name.clone(), a)).collect();
    if !users.bootstrap(&changes).await.map_err(store_err)? {
        return Ok(None);
    }
    info!(user = %crate::logsafe::Untrusted(name), "created the bootstrap user (SCRAM-SHA-256 and SCRAM-SHA-512)");
    if !config.super_users.contains(&Principal::user(name)) {
        warn!(user = %crate::logsafe::Untrusted(name), "super.users does not list the bootstrap user; it cannot manage users");
    }
    Ok(generated.then_some(password))
}
