//! The load generator: starts `ktb` as a child process on loopback with a temporary data
//! directory, drives it with bounded work, and prints one `name: value` line per figure,
//! ending with the ratios the project tracks. Run `cargo bench --bench load` (full) or
//! `cargo bench --bench load -- --quick` (under a minute; the large store then holds
//! 50,000 tokens instead of 1,000,000, and `tokens_large` says which).
//!
//! `-- --etcd` (with or without `--quick`) measures the etcd store instead: it starts a
//! three-member etcd cluster on loopback (Debian's `etcd`), one and then three brokers on
//! it, and a sled broker for comparison, and prints the `ratio.etcd_*` figures.
//!
//! `-- --metrics` (with or without `--quick`) measures what counting costs: durable
//! creates/s and fresh token logins/s on a broker with `ktb.metrics.listener` off, then on,
//! then with the audit log on too, alternating over several rounds, and prints the
//! medians and the `ratio.metrics_*` figures.
//!
//! Figures are ratios taken in one run on the same machine, because shared 2-core
//! machines are noisy; absolute rates are printed for context.

#[path = "../tests/common/etcd.rs"]
mod etcd;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use kafka_protocol::messages::describe_delegation_token_request::DescribeDelegationTokenOwner;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_token_broker::auth::Principal;
use kafka_token_broker::client::{Client, Credentials};
use kafka_token_broker::config::HmacAlgorithm;
use kafka_token_broker::store::SledStore;
use kafka_token_broker::tokens::{TokenDetails, bulk_load};
use ktb_protocol::scram::{ScramClient, ScramMechanism, Secret};

const ADMIN_PW: &str = "load-admin";

/// The client's salted password for the token, derived once (salt, salted password).
type SaltCache = Arc<std::sync::Mutex<Option<(Vec<u8>, Secret)>>>;
const CONNECTIONS: usize = 64;
const TIMEOUT: Duration = Duration::from_secs(30);

struct Ktb {
    child: Child,
    addr: String,
}

impl Drop for Ktb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts ktb in `dir`; returns it once it listens, with the time that took.
fn start(dir: &Path) -> (Ktb, Duration) {
    start_with(dir, &[])
}

/// Starts ktb in `dir` with extra environment `env`.
fn start_with(dir: &Path, env: &[(&str, &str)]) -> (Ktb, Duration) {
    let t0 = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ktb"))
        .arg("serve")
        .current_dir(dir)
        .envs(env.iter().copied())
        .env("KTB_LISTENERS", "SASL_PLAINTEXT://127.0.0.1:0")
        .env("KTB_ADMIN_PASSWORD", ADMIN_PW)
        .env("KTB_LOG", "warn,kafka_token_broker::server=info")
        .env("KTB_MAX_CONNECTIONS", "10000")
        // One owner creates every token of the run: D-20's per-owner limit (10,000)
        // would refuse the throughput phase, which measures the path, not the limit.
        .env("KTB_TOKEN_MAX_PER_OWNER", "2147483647")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the ktb binary starts");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next().expect("ktb printed where it listens").unwrap();
        if let Some(rest) = line.split("listening on SASL_PLAINTEXT://").nth(1) {
            break rest.split_whitespace().next().unwrap().to_owned();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    (Ktb { child, addr }, t0.elapsed())
}

fn rss_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0);
    kb / 1024.0
}

async fn admin(addr: &str) -> Client {
    let mut c = Client::connect(addr, TIMEOUT, None).await.unwrap();
    let creds = Credentials {
        mechanism: "SCRAM-SHA-256".into(),
        username: "admin".into(),
        password: ADMIN_PW.into(),
        token_auth: false,
    };
    c.authenticate(&creds).await.unwrap();
    c
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_owned())
}

async fn create(c: &mut Client, owner: Option<&str>) -> CreateDelegationTokenResponse {
    let mut req = CreateDelegationTokenRequest::default().with_max_lifetime_ms(-1);
    if let Some(o) = owner {
        req.owner_principal_type = Some(s("User"));
        req.owner_principal_name = Some(s(o));
    }
    match c.call(ApiKey::CreateDelegationToken, 3, req.into()).await.unwrap() {
        ResponseKind::CreateDelegationToken(r) if r.error_code == 0 => r,
        other => panic!("create failed: {other:?}"),
    }
}

async fn describe_owner(c: &mut Client, owner: &str) -> usize {
    let req = DescribeDelegationTokenRequest::default().with_owners(Some(vec![
        DescribeDelegationTokenOwner::default().with_principal_type(s("User")).with_principal_name(s(owner)),
    ]));
    match c.call(ApiKey::DescribeDelegationToken, 3, req.into()).await.unwrap() {
        ResponseKind::DescribeDelegationToken(r) => r.tokens.len(),
        other => panic!("{other:?}"),
    }
}

/// Runs `op` on each client until `dur` has passed; returns operations per second.
async fn throughput<F, Fut>(clients: Vec<Client>, dur: Duration, op: F) -> (f64, Vec<Client>)
where
    F: Fn(Client) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Client> + Send,
{
    let count = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + dur;
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for mut c in clients {
        let (op, count) = (op.clone(), count.clone());
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                c = op(c).await;
                count.fetch_add(1, Ordering::Relaxed);
            }
            c
        }));
    }
    let mut back = Vec::new();
    for t in tasks {
        back.push(t.await.unwrap());
    }
    (count.load(Ordering::Relaxed) as f64 / t0.elapsed().as_secs_f64(), back)
}

/// Runs `op` `concurrency` at a time until `dur` has passed; returns operations per second.
async fn fresh_connections<F, Fut>(concurrency: usize, dur: Duration, op: F) -> f64
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let count = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + dur;
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (op, count) = (op.clone(), count.clone());
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                op().await;
                count.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    count.load(Ordering::Relaxed) as f64 / t0.elapsed().as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// Median latencies (ms) of sequential creates and of Describe for an owner of 10 tokens.
async fn latencies(addr: &str, samples: usize) -> (f64, f64) {
    let mut c = admin(addr).await;
    for _ in 0..10 {
        create(&mut c, Some("probe")).await;
    }
    let mut creates = Vec::new();
    for _ in 0..samples {
        let t = Instant::now();
        create(&mut c, Some("probe-creates")).await;
        creates.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let mut describes = Vec::new();
    for _ in 0..samples {
        let t = Instant::now();
        assert_eq!(describe_owner(&mut c, "probe").await, 10);
        describes.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    (median(creates), median(describes))
}

/// One token login on a fresh connection: ApiVersions, SaslHandshake, SCRAM-SHA-256 with
/// the client's key derivation cached.
async fn token_login(addr: String, token_id: String, salted: SaltCache, password: String) {
    assert!(try_token_login(addr, token_id, salted, password).await, "the token logs in");
}

/// [`token_login`], telling whether the login succeeded.
async fn try_token_login(addr: String, token_id: String, salted: SaltCache, password: String) -> bool {
    let mut c = Client::connect(&addr, TIMEOUT, None).await.unwrap();
    let req = SaslHandshakeRequest::default().with_mechanism(s("SCRAM-SHA-256"));
    let ResponseKind::SaslHandshake(h) = c.call(ApiKey::SaslHandshake, 1, req.into()).await.unwrap() else { panic!() };
    assert_eq!(h.error_code, 0);
    let v = c.version(ApiKey::SaslAuthenticate).unwrap();
    let scram = ScramClient::new(ScramMechanism::Sha256, &token_id, "loadgeneratornonce", false);
    let req = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(scram.client_first()));
    let ResponseKind::SaslAuthenticate(first) = c.call(ApiKey::SaslAuthenticate, v, req.into()).await.unwrap() else {
        panic!()
    };
    if first.error_code != 0 {
        return false;
    }
    let (_, last) = scram
        .client_final_with(&first.auth_bytes, |salt, iterations| {
            let mut cache = salted.lock().unwrap();
            if let Some((s, sp)) = cache.as_ref().filter(|(s, _)| s == salt) {
                let _ = s;
                return Secret(sp.expose().to_vec());
            }
            let sp = ScramMechanism::Sha256.salted_password(password.as_bytes(), salt, iterations);
            *cache = Some((salt.to_vec(), Secret(sp.expose().to_vec())));
            sp
        })
        .unwrap();
    let req = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(last));
    match c.call(ApiKey::SaslAuthenticate, v, req.into()).await {
        Ok(ResponseKind::SaslAuthenticate(fin)) => fin.error_code == 0,
        _ => false,
    }
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    if std::env::args().any(|a| a == "--etcd") {
        return etcd_mode(&rt, quick);
    }
    if std::env::args().any(|a| a == "--metrics") {
        return metrics_mode(&rt, quick);
    }
    let (dur, samples, large) =
        if quick { (Duration::from_secs(3), 100, 50_000) } else { (Duration::from_secs(10), 300, 1_000_000) };
    println!("mode: {}", if quick { "quick" } else { "full" });
    println!("tokens_large: {large}");

    // Phase 1: a store with about 1k tokens.
    let small_dir = tempfile::tempdir().unwrap();
    let (ktb, startup) = start(small_dir.path());
    println!("start_to_listening_ms_empty: {:.1}", startup.as_secs_f64() * 1000.0);
    let addr = ktb.addr.clone();
    let (create_p50_1k, describe_p50_1k) = rt.block_on(async {
        let mut c = admin(&addr).await;
        for _ in 0..1_000 {
            create(&mut c, Some("filler")).await;
        }
        latencies(&addr, samples).await
    });
    println!("create_p50_ms_1k: {create_p50_1k:.3}");
    println!("describe_owner_p50_ms_1k: {describe_p50_1k:.3}");

    let (api_versions_per_s, creates_per_s) = rt.block_on(async {
        let mut clients = Vec::new();
        for _ in 0..CONNECTIONS {
            clients.push(admin(&addr).await);
        }
        let (av, clients) = throughput(clients, dur, |mut c: Client| async move {
            c.call(
                ApiKey::ApiVersions,
                3,
                ApiVersionsRequest::default()
                    .with_client_software_name(s("load"))
                    .with_client_software_version(s("1"))
                    .into(),
            )
            .await
            .unwrap();
            c
        })
        .await;
        let (cr, _) = throughput(clients, dur, |mut c: Client| async move {
            create(&mut c, None).await;
            c
        })
        .await;
        (av, cr)
    });
    println!("api_versions_per_s_64conn: {api_versions_per_s:.0}");
    println!("durable_creates_per_s_64conn: {creates_per_s:.0}");

    let (connects_per_s, token_logins_per_s) = rt.block_on(async {
        let a = addr.clone();
        let connects = fresh_connections(16, dur, move || {
            let a = a.clone();
            async move {
                let _ = Client::connect(&a, TIMEOUT, None).await.unwrap();
            }
        })
        .await;
        let mut c = admin(&addr).await;
        let t = create(&mut c, None).await;
        let password = STANDARD.encode(&t.hmac);
        let cache = Arc::new(std::sync::Mutex::new(None));
        let (a, id) = (addr.clone(), t.token_id.to_string());
        let logins =
            fresh_connections(16, dur, move || token_login(a.clone(), id.clone(), cache.clone(), password.clone()))
                .await;
        (connects, logins)
    });
    println!("fresh_connects_per_s: {connects_per_s:.0}");
    println!("fresh_token_logins_per_s: {token_logins_per_s:.0}");
    drop(ktb);

    // Phase 2: a store with `large` tokens, loaded through the bulk path.
    let large_dir = tempfile::tempdir().unwrap();
    drop(start(large_dir.path()).0); // creates the data dir, secret and admin
    std::thread::sleep(Duration::from_millis(200));
    let t0 = Instant::now();
    {
        let store = SledStore::open(&large_dir.path().join("ktb-data/store")).unwrap();
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
        let n = bulk_load(&store, (0..large).map(|i| bulk_token(i, now))).unwrap();
        assert_eq!(n, large);
    }
    println!("bulk_load_s: {:.1}", t0.elapsed().as_secs_f64());
    let t0 = Instant::now();
    let (ktb, _) = start(large_dir.path());
    let addr = ktb.addr.clone();
    // Ready means answering: the first login and request, after loading every token.
    rt.block_on(async {
        let _ = admin(&addr).await;
    });
    let restart_ms = t0.elapsed().as_secs_f64() * 1000.0;
    println!("restart_to_ready_ms_large: {restart_ms:.0}");
    let (create_p50_large, describe_p50_large) = rt.block_on(latencies(&addr, samples));
    println!("create_p50_ms_large: {create_p50_large:.3}");
    println!("describe_owner_p50_ms_large: {describe_p50_large:.3}");
    let rss = rss_mb(ktb.child.id());
    println!("rss_mb_large: {rss:.0}");
    drop(ktb);

    println!(
        "restart_to_ready_ms_1m: {restart_ms:.0}    # target <= 3000{}",
        if quick { " (quick: large store)" } else { "" }
    );
    println!("rss_mb_1m: {rss:.0}    # target <= 512{}", if quick { " (quick: large store)" } else { "" });
    println!("ratio.create_vs_apiversions: {:.3}    # target >= 0.5", creates_per_s / api_versions_per_s);
    println!("ratio.token_login_vs_connect: {:.3}    # target >= 0.5", token_logins_per_s / connects_per_s);
    println!("ratio.create_p50_1m_vs_1k: {:.3}    # target <= 1.5", create_p50_large / create_p50_1k);
    println!("ratio.describe_owner_p50_1m_vs_1k: {:.3}    # target <= 1.5", describe_p50_large / describe_p50_1k);
}

/// The master secret of the etcd-mode brokers.
const ETCD_SECRET: &str = "load-generator-cluster-secret";

/// Starts a broker on `etcd` under `prefix` as `node_id`, in its own directory under `dir`.
fn start_on_etcd(dir: &Path, etcd: &etcd::EtcdCluster, prefix: &str, node_id: i32) -> (Ktb, Duration) {
    let node_dir = dir.join(format!("node{node_id}"));
    std::fs::create_dir_all(&node_dir).unwrap();
    let (endpoints, node) = (etcd.endpoints(), node_id.to_string());
    start_with(
        &node_dir,
        &[
            ("KTB_STORE", "etcd"),
            ("KTB_ETCD_ENDPOINTS", &endpoints),
            ("KTB_ETCD_PREFIX", prefix),
            ("KTB_NODE_ID", &node),
            ("KTB_DELEGATION_TOKEN_SECRET_KEY", ETCD_SECRET),
        ],
    )
}

/// Single-key etcd transactions per second (create-if-absent of a 100-byte value, as a
/// token Create is) from `concurrency` tasks sharing one client.
async fn raw_etcd_txns(endpoints: Vec<String>, concurrency: usize, dur: Duration) -> f64 {
    use etcd_client::{Compare, CompareOp, Txn, TxnOp};
    let client = etcd_client::Client::connect(endpoints, None).await.unwrap();
    let count = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + dur;
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for task in 0..concurrency {
        let (client, count) = (client.clone(), count.clone());
        tasks.push(tokio::spawn(async move {
            let mut kv = client.kv_client();
            let mut i = 0u64;
            while Instant::now() < deadline {
                let key = format!("/raw/{task}/{i}");
                i += 1;
                let txn = Txn::new()
                    .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
                    .and_then([TxnOp::put(key, vec![7u8; 100], None)]);
                kv.txn(txn).await.unwrap();
                count.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    count.load(Ordering::Relaxed) as f64 / t0.elapsed().as_secs_f64()
}

/// Creates/s on `CONNECTIONS` admin connections spread over `addrs`.
async fn creates_over(addrs: &[String], dur: Duration) -> f64 {
    let mut clients = Vec::new();
    for i in 0..CONNECTIONS {
        clients.push(admin(&addrs[i % addrs.len()]).await);
    }
    throughput(clients, dur, |mut c: Client| async move {
        create(&mut c, None).await;
        c
    })
    .await
    .0
}

/// Fresh-connection token logins/s on `addr` for a token created there.
async fn logins_on(addr: &str, dur: Duration) -> f64 {
    let mut c = admin(addr).await;
    let t = create(&mut c, None).await;
    let password = STANDARD.encode(&t.hmac);
    let cache = Arc::new(std::sync::Mutex::new(None));
    let (a, id) = (addr.to_owned(), t.token_id.to_string());
    fresh_connections(16, dur, move || token_login(a.clone(), id.clone(), cache.clone(), password.clone())).await
}

/// What metrics and the audit log cost (issue 14): creates/s and token logins/s with
/// both off, metrics on, and metrics and audit on, in alternating rounds.
fn metrics_mode(rt: &tokio::runtime::Runtime, quick: bool) {
    let (dur, rounds) = if quick { (Duration::from_secs(2), 1) } else { (Duration::from_secs(5), 5) };
    println!("mode: metrics {}", if quick { "quick" } else { "full" });
    let settings: [(&str, &[(&str, &str)]); 3] = [
        ("off", &[]),
        ("metrics", &[("KTB_METRICS_LISTENER", "127.0.0.1:0")]),
        ("metrics_audit", &[("KTB_METRICS_LISTENER", "127.0.0.1:0"), ("KTB_AUDIT_LOG_FILE", "audit.log")]),
    ];
    let mut creates: Vec<Vec<f64>> = vec![Vec::new(); settings.len()];
    let mut logins: Vec<Vec<f64>> = vec![Vec::new(); settings.len()];
    for round in 0..rounds {
        for (i, (name, env)) in settings.iter().enumerate() {
            let dir = tempfile::tempdir().unwrap();
            let (ktb, _) = start_with(dir.path(), env);
            let addr = ktb.addr.clone();
            let (c, l) = rt.block_on(async {
                let c = creates_over(std::slice::from_ref(&addr), dur).await;
                (c, logins_on(&addr, dur).await)
            });
            println!("round {round} {name}: creates_per_s {c:.0} token_logins_per_s {l:.0}");
            creates[i].push(c);
            logins[i].push(l);
        }
    }
    let creates: Vec<f64> = creates.into_iter().map(median).collect();
    let logins: Vec<f64> = logins.into_iter().map(median).collect();
    for (i, (name, _)) in settings.iter().enumerate() {
        println!("median_creates_per_s_{name}: {:.0}", creates[i]);
        println!("median_token_logins_per_s_{name}: {:.0}", logins[i]);
    }
    println!("ratio.metrics_on_vs_off_creates: {:.3}    # target >= 0.95", creates[1] / creates[0]);
    println!("ratio.metrics_on_vs_off_token_logins: {:.3}    # target >= 0.95", logins[1] / logins[0]);
    println!("ratio.metrics_audit_vs_off_creates: {:.3}", creates[2] / creates[0]);
    println!("ratio.metrics_audit_vs_off_token_logins: {:.3}", logins[2] / logins[0]);
}

/// The etcd figures (SPEC §9.3, issue 13's benchmark).
fn etcd_mode(rt: &tokio::runtime::Runtime, quick: bool) {
    let (dur, large) = if quick { (Duration::from_secs(3), 20_000) } else { (Duration::from_secs(10), 100_000) };
    println!("mode: etcd {}", if quick { "quick" } else { "full" });
    let cluster = rt.block_on(etcd::EtcdCluster::start(3));
    let txns_per_s = rt.block_on(raw_etcd_txns(cluster.endpoint_list(), CONNECTIONS, dur));
    println!("etcd_txns_per_s_64: {txns_per_s:.0}");

    let dir = tempfile::tempdir().unwrap();
    let one = start_on_etcd(dir.path(), &cluster, "/one/", 1).0;
    let creates_1 = rt.block_on(creates_over(std::slice::from_ref(&one.addr), dur));
    println!("etcd_durable_creates_per_s_64conn_1broker: {creates_1:.0}");
    let etcd_logins = rt.block_on(logins_on(&one.addr, dur));
    println!("etcd_fresh_token_logins_per_s: {etcd_logins:.0}");
    drop(one);

    let sled_dir = tempfile::tempdir().unwrap();
    let sled = start(sled_dir.path()).0;
    let sled_logins = rt.block_on(logins_on(&sled.addr, dur));
    println!("sled_fresh_token_logins_per_s: {sled_logins:.0}");
    drop(sled);

    let three: Vec<Ktb> = (1..=3).map(|n| start_on_etcd(dir.path(), &cluster, "/three/", n).0).collect();
    let addrs: Vec<String> = three.iter().map(|k| k.addr.clone()).collect();
    let creates_3 = rt.block_on(creates_over(&addrs, dur));
    println!("etcd_durable_creates_per_s_64conn_3brokers: {creates_3:.0}");
    let failures = rt.block_on(async {
        let mut c = admin(&addrs[0]).await;
        let mut failures = 0;
        for i in 0..1_000 {
            let t = create(&mut c, None).await;
            let other = addrs[1 + i % 2].clone();
            let cache = Arc::new(std::sync::Mutex::new(None));
            if !try_token_login(other, t.token_id.to_string(), cache, STANDARD.encode(&t.hmac)).await {
                failures += 1;
            }
        }
        failures
    });
    drop(three);

    // Restart-to-ready against a prefix holding `large` tokens, written straight to etcd.
    let t0 = Instant::now();
    rt.block_on(async {
        use kafka_token_broker::store::Op;
        let settings = kafka_token_broker::config::EtcdSettings {
            endpoints: cluster.endpoint_list(),
            prefix: "/large/".into(),
            username: None,
            password: None,
            ca_file: None,
            cert_file: None,
            key_file: None,
            lease_ms: 10_000,
            stale_ms: 10_000,
        };
        let store = Arc::new(kafka_token_broker::store::etcd::EtcdStore::connect(&settings, TIMEOUT).await.unwrap());
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
        let batches: Vec<Vec<Op>> = (0..large)
            .map(|i| {
                let (k, v) = kafka_token_broker::tokens::stored_record(&bulk_token(i, now));
                Op::Put(k, v)
            })
            .collect::<Vec<_>>()
            .chunks(100)
            .map(<[Op]>::to_vec)
            .collect();
        let batches = Arc::new(std::sync::Mutex::new(batches));
        let mut writers = Vec::new();
        for _ in 0..16 {
            let (store, batches) = (store.clone(), batches.clone());
            writers.push(tokio::spawn(async move {
                loop {
                    let Some(batch) = batches.lock().unwrap().pop() else { return };
                    kafka_token_broker::store::write(store.as_ref(), batch).await.unwrap();
                }
            }));
        }
        for w in writers {
            w.await.unwrap();
        }
    });
    println!("etcd_bulk_load_s: {:.1}", t0.elapsed().as_secs_f64());
    let t0 = Instant::now();
    let big = start_on_etcd(dir.path(), &cluster, "/large/", 1).0;
    rt.block_on(async {
        let _ = admin(&big.addr).await;
    });
    let restart_ms = t0.elapsed().as_secs_f64() * 1000.0;
    println!("etcd_tokens_large: {large}");
    println!("etcd_restart_to_ready_ms_large: {restart_ms:.0}");
    println!("rss_mb_etcd_large: {:.0}", rss_mb(big.child.id()));
    drop(big);

    println!("ratio.etcd_create_vs_etcd_txn: {:.3}    # target >= 0.5", creates_1 / txns_per_s);
    println!("ratio.etcd_create_3brokers_vs_etcd_txn: {:.3}", creates_3 / txns_per_s);
    println!("ratio.etcd_login_vs_sled_login: {:.3}    # target >= 0.5", etcd_logins / sled_logins);
    println!("cross_broker_login_failures: {failures}    # target 0 (of 1000)");
}

/// Token `i` of a bulk-loaded store: one of 1,000 owners, issued at `now` with Kafka's
/// default lifetimes.
fn bulk_token(i: usize, now: i64) -> TokenDetails {
    let owner = Principal::user(&format!("bulk-{}", i % 1000));
    TokenDetails {
        token_id: kafka_token_broker::ids::random_kafka_id(),
        requester: owner.clone(),
        owner,
        renewers: Vec::new(),
        issue_ts: now,
        max_ts: now + 7 * 86_400_000,
        expiry_ts: now + 86_400_000,
        hmac_alg: HmacAlgorithm::Sha1,
        key_id: String::new(),
    }
}
