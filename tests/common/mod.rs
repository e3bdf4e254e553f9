//! Test helpers: a broker on loopback (in-process or as the `ktb` binary) and a
//! minimal client that speaks through the same codec as the broker.
#![allow(dead_code)]

pub mod etcd;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc as std_mpsc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestKind, ResponseKind};
use kafka_protocol::messages::{SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest};
use kafka_protocol::protocol::StrBytes;
use kafka_token_broker::broker::{Broker, StartOptions};
use kafka_token_broker::clock::{Clock, ManualClock, SystemClock};
use kafka_token_broker::config::Config;
use kafka_token_broker::server::Server;
use ktb_protocol::client::{decode_response, encode_request};
use ktb_protocol::frame::decode_frame;
use ktb_protocol::scram::{ScramClient, ScramMechanism};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The bootstrap user's password in in-process test brokers.
pub const ADMIN_PASSWORD: &str = "admin-secret-for-tests";

/// A broker running inside the test process on an ephemeral loopback port.
pub struct TestBroker {
    /// The first listener's address.
    pub addr: SocketAddr,
    /// Every listener's address, in configuration order.
    pub addrs: Vec<SocketAddr>,
    pub data_dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), kafka_token_broker::store::StoreError>>>,
}

/// Properties every test broker gets: a PLAINTEXT loopback listener on an ephemeral port.
pub fn base_overrides(data_dir: &Path) -> Vec<(String, String)> {
    vec![
        ("listeners".into(), "PLAINTEXT://127.0.0.1:0".into()),
        ("ktb.data.dir".into(), data_dir.join("data").display().to_string()),
    ]
}

impl TestBroker {
    /// Starts a broker with the base properties plus `extra`.
    pub async fn start(extra: &[(&str, &str)]) -> TestBroker {
        Self::start_with(extra, Arc::new(SystemClock)).await
    }

    /// Starts a SASL_PLAINTEXT broker whose bootstrap user is `admin` / [`ADMIN_PASSWORD`].
    pub async fn start_sasl(extra: &[(&str, &str)]) -> TestBroker {
        let mut all =
            vec![("listeners", "SASL_PLAINTEXT://127.0.0.1:0"), ("connection.failed.authentication.delay.ms", "0")];
        all.extend_from_slice(extra);
        Self::start_with(&all, Arc::new(SystemClock)).await
    }

    /// As [`TestBroker::start_sasl`], on a manual clock.
    pub async fn start_sasl_with_clock(extra: &[(&str, &str)], clock: Arc<ManualClock>) -> TestBroker {
        let mut all =
            vec![("listeners", "SASL_PLAINTEXT://127.0.0.1:0"), ("connection.failed.authentication.delay.ms", "0")];
        all.extend_from_slice(extra);
        Self::start_with(&all, clock).await
    }

    /// A SASL broker on `clock` for token tests: the sweep runs only when a test sets its
    /// interval (the default here is huge), so expired tokens stay until deleted.
    pub async fn start_for_tokens(extra: &[(&str, &str)], clock: Arc<ManualClock>) -> TestBroker {
        let mut all = vec![("delegation.token.expiry.check.interval.ms", "1000000000000")];
        all.extend_from_slice(extra);
        Self::start_sasl_with_clock(&all, clock).await
    }

    /// Starts a broker with the base properties plus `extra` on `clock`.
    pub async fn start_with(extra: &[(&str, &str)], clock: Arc<dyn Clock>) -> TestBroker {
        let data_dir = tempfile::tempdir().unwrap();
        Self::start_in(data_dir, extra, clock).await
    }

    /// Starts a broker on an existing directory (for restarts).
    pub async fn start_in(data_dir: tempfile::TempDir, extra: &[(&str, &str)], clock: Arc<dyn Clock>) -> TestBroker {
        let mut overrides = base_overrides(data_dir.path());
        overrides.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let (config, _) = Config::load(None, [], &overrides).unwrap();
        let options =
            StartOptions { clock, admin_password: Some(ADMIN_PASSWORD.to_owned()), ..StartOptions::default() };
        let server = Server::bind(Broker::open(config, options).await.unwrap()).await.unwrap();
        let addrs = server.local_addrs();
        let addr = addrs[0];
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(server.run(async move {
            let _ = rx.await;
        }));
        TestBroker { addr, addrs, data_dir, stop: Some(tx), task: Some(task) }
    }

    pub async fn connect(&self) -> TestClient {
        TestClient::connect(self.addr).await
    }

    /// Signals shutdown, waits for the broker to finish and hands back its directory.
    pub async fn shutdown(mut self) -> (Result<(), kafka_token_broker::store::StoreError>, tempfile::TempDir) {
        let _ = self.stop.take().unwrap().send(());
        (self.task.take().unwrap().await.unwrap(), self.data_dir)
    }

    pub fn cluster_id_on_disk(&self) -> String {
        let text = std::fs::read_to_string(self.data_dir.path().join("data/meta.properties")).unwrap();
        text.lines().find_map(|l| l.strip_prefix("cluster.id=")).unwrap().to_owned()
    }
}

/// A connection that sends requests and reads responses, one frame at a time.
pub struct TestClient {
    pub stream: TcpStream,
    buf: BytesMut,
    next_correlation: i32,
}

impl TestClient {
    pub async fn connect(addr: SocketAddr) -> TestClient {
        let stream = TcpStream::connect(addr).await.unwrap();
        TestClient { stream, buf: BytesMut::new(), next_correlation: 1 }
    }

    /// Sends a request and returns its correlation id.
    pub async fn send(&mut self, key: ApiKey, version: i16, body: RequestKind) -> i32 {
        let id = self.next_correlation;
        self.next_correlation += 1;
        let frame = encode_request(key, version, id, "ktb-test", &body).unwrap();
        self.stream.write_all(&frame).await.unwrap();
        id
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    /// Reads one frame (without the size), or `None` if the broker closed the connection.
    pub async fn read_frame(&mut self) -> Option<Bytes> {
        loop {
            if let Some(f) = decode_frame(&mut self.buf, i32::MAX).unwrap() {
                return Some(f);
            }
            if !self.fill().await {
                return None;
            }
        }
    }

    /// Reads more bytes into the buffer; false when the broker closed the connection.
    async fn fill(&mut self) -> bool {
        let n = tokio::time::timeout(Duration::from_secs(10), self.stream.read_buf(&mut self.buf))
            .await
            .expect("broker answered within 10 s")
            .unwrap_or(0);
        n > 0
    }

    /// Reads one raw frame that may be empty (a raw SASL reply after handshake v0).
    pub async fn read_frame_allow_empty(&mut self) -> Option<Bytes> {
        loop {
            if self.buf.len() >= 4 && self.buf[..4] == [0, 0, 0, 0] {
                let _ = self.buf.split_to(4);
                return Some(Bytes::new());
            }
            if self.buf.len() >= 4 {
                return self.read_frame().await;
            }
            if !self.fill().await {
                return None;
            }
        }
    }

    /// Reads a response and checks its correlation id.
    pub async fn recv(&mut self, key: ApiKey, version: i16, correlation_id: i32) -> ResponseKind {
        let frame = self.read_frame().await.expect("a response, not a closed connection");
        let (got, body) = decode_response(key, version, frame).unwrap();
        assert_eq!(got, correlation_id, "T-WIRE-8: correlation id echoed");
        body
    }

    pub async fn call(&mut self, key: ApiKey, version: i16, body: RequestKind) -> ResponseKind {
        let id = self.send(key, version, body).await;
        self.recv(key, version, id).await
    }

    /// SaslHandshake at `version` for `mechanism`; returns (error code, mechanisms).
    pub async fn handshake(&mut self, version: i16, mechanism: &str) -> (i16, Vec<String>) {
        let req = SaslHandshakeRequest::default().with_mechanism(StrBytes::from_string(mechanism.to_owned()));
        match self.call(ApiKey::SaslHandshake, version, req.into()).await {
            ResponseKind::SaslHandshake(r) => (r.error_code, r.mechanisms.iter().map(|m| m.to_string()).collect()),
            other => panic!("{other:?}"),
        }
    }

    /// One SaslAuthenticate round trip at `version`.
    pub async fn authenticate(&mut self, version: i16, bytes: &[u8]) -> SaslAuthenticateResponse {
        let req = SaslAuthenticateRequest::default().with_auth_bytes(bytes::Bytes::copy_from_slice(bytes));
        match self.call(ApiKey::SaslAuthenticate, version, req.into()).await {
            ResponseKind::SaslAuthenticate(r) => r,
            other => panic!("{other:?}"),
        }
    }

    /// A full SCRAM login after a v1 handshake, with SaslAuthenticate v2. Returns the
    /// last SaslAuthenticate response (error 0 and server-final on success, or the error).
    pub async fn scram_login(
        &mut self,
        mech: ScramMechanism,
        user: &str,
        password: &str,
        token_auth: bool,
    ) -> SaslAuthenticateResponse {
        let (code, _) = self.handshake(1, mech.name()).await;
        assert_eq!(code, 0, "handshake for {}", mech.name());
        self.scram_exchange(mech, user, password, token_auth).await
    }

    /// The SCRAM messages of a login (the handshake already done).
    pub async fn scram_exchange(
        &mut self,
        mech: ScramMechanism,
        user: &str,
        password: &str,
        token_auth: bool,
    ) -> SaslAuthenticateResponse {
        let client = ScramClient::new(mech, user, "testclientnonce0123456789", token_auth);
        let first = self.authenticate(2, &client.client_first()).await;
        if first.error_code != 0 {
            return first;
        }
        let (sent, last) = client.client_final(&first.auth_bytes, password.as_bytes()).unwrap();
        let fin = self.authenticate(2, &last).await;
        if fin.error_code == 0 {
            sent.verify_server_final(&fin.auth_bytes).expect("server-final proves the server knows the key");
        }
        fin
    }

    /// Logs in as the test broker's bootstrap admin with SCRAM-SHA-512, or panics.
    pub async fn login_admin(&mut self) {
        let r = self.scram_login(ScramMechanism::Sha512, "admin", ADMIN_PASSWORD, false).await;
        assert_eq!(r.error_code, 0, "{:?}", r.error_message);
    }

    /// True when the broker closes the connection without sending anything more.
    pub async fn closed_without_response(&mut self) -> bool {
        self.read_frame().await.is_none()
    }
}

/// Upserts `name` with both SCRAM mechanisms (8192 iterations) through
/// AlterUserScramCredentials, in two requests (one alteration per user per request), and
/// asserts success. `client` must be logged in as a super user.
pub async fn add_user(client: &mut TestClient, name: &str, password: &str) {
    use kafka_protocol::messages::AlterUserScramCredentialsRequest;
    use kafka_protocol::messages::alter_user_scram_credentials_request::ScramCredentialUpsertion;
    for mech in [ScramMechanism::Sha256, ScramMechanism::Sha512] {
        let salt = format!("salt-of-{name}-{}", mech.code()).into_bytes();
        let salted = mech.salted_password(password.as_bytes(), &salt, 8192);
        let req = AlterUserScramCredentialsRequest::default().with_upsertions(vec![
            ScramCredentialUpsertion::default()
                .with_name(StrBytes::from_string(name.to_owned()))
                .with_mechanism(mech.code())
                .with_iterations(8192)
                .with_salt(Bytes::from(salt))
                .with_salted_password(Bytes::copy_from_slice(salted.expose())),
        ]);
        match client.call(ApiKey::AlterUserScramCredentials, 0, req.into()).await {
            ResponseKind::AlterUserScramCredentials(r) => {
                assert_eq!(r.results.len(), 1);
                assert_eq!(r.results[0].error_code, 0, "{:?}", r.results[0].error_message);
            }
            other => panic!("{other:?}"),
        }
    }
}

/// The `ktb` binary started as a child process, with its log read for the bound address.
pub struct KtbProcess {
    pub child: Child,
    pub addr: Option<SocketAddr>,
    pub log: std_mpsc::Receiver<String>,
    /// Every log line read so far.
    seen: std::cell::RefCell<Vec<String>>,
}

/// The `ktb` binary under test: this build's, or the one `KTB_TEST_BIN` names (to run
/// the process tests against another build, e.g. an earlier release).
pub fn ktb_bin() -> PathBuf {
    std::env::var_os("KTB_TEST_BIN").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_ktb")))
}

impl KtbProcess {
    /// Starts `ktb serve ARGS` in `cwd` with `env` (and nothing else from this process's
    /// KTB_* environment), waiting until it listens or exits.
    pub fn start(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> KtbProcess {
        let mut cmd = Command::new(ktb_bin());
        cmd.arg("serve").args(args);
        Self::spawn(cmd, cwd, env)
    }

    /// Starts `ktb serve` through `sh -c "SHELL_PREFIX; exec ktb serve"`, for limits such
    /// as `ulimit -n` that only a shell sets.
    pub fn start_in_shell(cwd: &Path, shell_prefix: &str, env: &[(&str, &str)]) -> KtbProcess {
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg(format!("{shell_prefix}; exec \"$0\" serve")).arg(ktb_bin());
        Self::spawn(cmd, cwd, env)
    }

    fn spawn(mut cmd: Command, cwd: &Path, env: &[(&str, &str)]) -> KtbProcess {
        cmd.current_dir(cwd).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("KTB_")) {
            cmd.env_remove(k);
        }
        cmd.env("KTB_LOG", "info");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std_mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut p = KtbProcess { child, addr: None, log: rx, seen: Default::default() };
        p.addr = p.wait_for_log("listening on ").and_then(|l| parse_listen_addr(&l));
        p
    }

    /// Waits up to 20 s for a log line containing `needle`; `None` if the process ended.
    pub fn wait_for_log(&self, needle: &str) -> Option<String> {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
            match self.log.recv_timeout(left) {
                Ok(line) => {
                    self.seen.borrow_mut().push(line.clone());
                    if line.contains(needle) {
                        return Some(line);
                    }
                }
                Err(_) => return None,
            }
        }
        None
    }

    /// Sends a signal with the `kill` command.
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill").arg(format!("-{sig}")).arg(self.child.id().to_string()).status().unwrap();
        assert!(ok.success());
    }

    /// Waits up to 20 s for the process to exit and returns its exit code.
    pub fn wait_exit(&mut self) -> Option<i32> {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while std::time::Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Every log line the process has written so far.
    pub fn log_lines(&self) -> Vec<String> {
        let mut seen = self.seen.borrow_mut();
        seen.extend(self.log.try_iter());
        seen.clone()
    }
}

impl Drop for KtbProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `ktb serve` as a process on this cluster under `prefix`, as node `node_id` with
/// master secret `secret`, its data dir under `cwd`, a SASL_PLAINTEXT loopback
/// listener and the tests' admin password.
pub fn etcd_broker_process(
    etcd: &etcd::EtcdCluster,
    cwd: &Path,
    prefix: &str,
    node_id: i32,
    secret: &str,
) -> KtbProcess {
    etcd_broker_process_with(etcd, cwd, prefix, node_id, secret, &[])
}

/// [`etcd_broker_process`] with more environment variables.
pub fn etcd_broker_process_with(
    etcd: &etcd::EtcdCluster,
    cwd: &Path,
    prefix: &str,
    node_id: i32,
    secret: &str,
    env: &[(&str, &str)],
) -> KtbProcess {
    etcd_broker(etcd, cwd, prefix, node_id, ("delegation.token.secret.key", secret), env)
}

/// [`etcd_broker_process_with`] with the keyring file `keyring` instead of a secret.
pub fn etcd_broker_process_keyring(
    etcd: &etcd::EtcdCluster,
    cwd: &Path,
    prefix: &str,
    node_id: i32,
    keyring: &Path,
    env: &[(&str, &str)],
) -> KtbProcess {
    let file = keyring.display().to_string();
    etcd_broker(etcd, cwd, prefix, node_id, ("delegation.token.secret.keyring.file", &file), env)
}

fn etcd_broker(
    etcd: &etcd::EtcdCluster,
    cwd: &Path,
    prefix: &str,
    node_id: i32,
    keys: (&str, &str),
    env: &[(&str, &str)],
) -> KtbProcess {
    let o = |k: &str, v: &str| format!("{k}={v}");
    let dir = cwd.join(format!("node{node_id}"));
    let args = [
        o("listeners", "SASL_PLAINTEXT://127.0.0.1:0"),
        o("ktb.data.dir", &dir.display().to_string()),
        o("ktb.store", "etcd"),
        o("ktb.etcd.endpoints", &etcd.endpoints()),
        o("ktb.etcd.prefix", prefix),
        o("node.id", &node_id.to_string()),
        o(keys.0, keys.1),
        o("connection.failed.authentication.delay.ms", "0"),
    ];
    let args: Vec<String> = args.iter().flat_map(|a| ["--override".to_owned(), a.clone()]).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut all = vec![("KTB_ADMIN_PASSWORD", ADMIN_PASSWORD)];
    all.extend_from_slice(env);
    KtbProcess::start(cwd, &args, &all)
}

impl KtbProcess {
    /// The address of the metrics listener the process announced, if it has one.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        let line = self.log_lines().into_iter().find(|l| l.contains("metrics, health and readiness on http://"))?;
        line.split("http://").nth(1)?.split_whitespace().next()?.parse().ok()
    }
}

fn parse_listen_addr(line: &str) -> Option<SocketAddr> {
    let rest = line.split("://").nth(1)?;
    rest.split_whitespace().next()?.parse().ok()
}

/// Delegation-token calls over a [`TestClient`], each at the given API version.
pub mod token_api {
    use super::TestClient;
    use bytes::Bytes;
    use kafka_protocol::messages::create_delegation_token_request::CreatableRenewers;
    use kafka_protocol::messages::describe_delegation_token_request::DescribeDelegationTokenOwner;
    use kafka_protocol::messages::*;
    use kafka_protocol::protocol::StrBytes;

    fn s(v: &str) -> StrBytes {
        StrBytes::from_string(v.to_owned())
    }

    /// CreateDelegationToken: `owner` as (type, name) for v3, renewers as (type, name).
    pub async fn create(
        c: &mut TestClient,
        version: i16,
        owner: Option<(&str, &str)>,
        renewers: &[(&str, &str)],
        max_lifetime_ms: i64,
    ) -> CreateDelegationTokenResponse {
        let mut req = CreateDelegationTokenRequest::default().with_max_lifetime_ms(max_lifetime_ms).with_renewers(
            renewers
                .iter()
                .map(|(t, n)| CreatableRenewers::default().with_principal_type(s(t)).with_principal_name(s(n)))
                .collect(),
        );
        if let Some((t, n)) = owner {
            req.owner_principal_type = Some(s(t));
            req.owner_principal_name = Some(s(n));
        }
        match c.call(ApiKey::CreateDelegationToken, version, req.into()).await {
            ResponseKind::CreateDelegationToken(r) => r,
            other => panic!("{other:?}"),
        }
    }

    /// Creates a token for the caller itself at v3 and asserts success.
    pub async fn create_ok(c: &mut TestClient, renewers: &[(&str, &str)]) -> CreateDelegationTokenResponse {
        let r = create(c, 3, None, renewers, -1).await;
        assert_eq!(r.error_code, 0, "create");
        r
    }

    pub async fn renew(c: &mut TestClient, version: i16, hmac: &[u8], period: i64) -> RenewDelegationTokenResponse {
        let req =
            RenewDelegationTokenRequest::default().with_hmac(Bytes::copy_from_slice(hmac)).with_renew_period_ms(period);
        match c.call(ApiKey::RenewDelegationToken, version, req.into()).await {
            ResponseKind::RenewDelegationToken(r) => r,
            other => panic!("{other:?}"),
        }
    }

    pub async fn expire(c: &mut TestClient, version: i16, hmac: &[u8], period: i64) -> ExpireDelegationTokenResponse {
        let req = ExpireDelegationTokenRequest::default()
            .with_hmac(Bytes::copy_from_slice(hmac))
            .with_expiry_time_period_ms(period);
        match c.call(ApiKey::ExpireDelegationToken, version, req.into()).await {
            ResponseKind::ExpireDelegationToken(r) => r,
            other => panic!("{other:?}"),
        }
    }

    /// DescribeDelegationToken with owners as (type, name); `None` sends null.
    pub async fn describe(
        c: &mut TestClient,
        version: i16,
        owners: Option<&[(&str, &str)]>,
    ) -> DescribeDelegationTokenResponse {
        let req = DescribeDelegationTokenRequest::default().with_owners(owners.map(|o| {
            o.iter()
                .map(|(t, n)| {
                    DescribeDelegationTokenOwner::default().with_principal_type(s(t)).with_principal_name(s(n))
                })
                .collect()
        }));
        match c.call(ApiKey::DescribeDelegationToken, version, req.into()).await {
            ResponseKind::DescribeDelegationToken(r) => r,
            other => panic!("{other:?}"),
        }
    }

    /// The token ids of a Describe answer, in answer order.
    pub fn ids(r: &DescribeDelegationTokenResponse) -> Vec<String> {
        r.tokens.iter().map(|t| t.token_id.to_string()).collect()
    }
}

/// The token password: standard base64 with padding of the HMAC (T-TLOGIN-1).
pub fn token_password(hmac: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(hmac)
}

/// A fresh connection logged in with a token; returns the client and the final
/// SaslAuthenticate response (error 0 on success).
pub async fn token_login(
    addr: SocketAddr,
    mech: ScramMechanism,
    token_id: &str,
    hmac: &[u8],
    token_auth: bool,
) -> (TestClient, SaslAuthenticateResponse) {
    let mut c = TestClient::connect(addr).await;
    let r = c.scram_login(mech, token_id, &token_password(hmac), token_auth).await;
    (c, r)
}

/// Every file under `dir`, read as bytes.
pub fn files_under(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push((path.clone(), std::fs::read(&path).unwrap()));
        }
    }
    out
}

/// True when `needle` occurs in `haystack`.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A CA, and a server certificate it signed for localhost and 127.0.0.1, as PEM.
pub struct Pki {
    pub ca_pem: String,
    pub server_chain_pem: String,
    pub server_key_pem: String,
}

pub fn pki() -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.distinguished_name.push(DnType::CommonName, "ktb test CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
    params.distinguished_name.push(DnType::CommonName, "localhost");
    let server = params.signed_by(&key, &ca, &ca_key).unwrap();
    Pki { ca_pem: ca.pem(), server_chain_pem: server.pem(), server_key_pem: key.serialize_pem() }
}
