//! A cluster of brokers on a real three-member etcd cluster (SPEC §9.3, T-CLUSTER-*),
//! started and stopped by each test on loopback ports.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::etcd::EtcdCluster;
use common::token_api::{create_ok, describe, expire, ids, renew};
use common::{KtbProcess, TestBroker, TestClient, token_login};
use kafka_token_broker::clock::SystemClock;
use kafka_token_broker::config::{Config, StoreKind};
use kafka_token_broker::store::etcd::EtcdStore;
use ktb_protocol::scram::ScramMechanism;

/// The master secret every broker of a test cluster shares.
const SECRET: &str = "cluster-test-secret";

/// The etcd settings for `endpoints` and `prefix`, as the configuration types them.
fn etcd_settings(endpoints: &str, prefix: &str) -> kafka_token_broker::config::EtcdSettings {
    let overrides = [
        ("ktb.store".to_owned(), "etcd".to_owned()),
        ("ktb.etcd.endpoints".to_owned(), endpoints.to_owned()),
        ("ktb.etcd.prefix".to_owned(), prefix.to_owned()),
    ];
    match Config::load(None, [], &overrides).unwrap().0.store {
        StoreKind::Etcd(s) => s,
        other => panic!("{other:?}"),
    }
}

/// A SASL broker in this process on the etcd cluster under `prefix`, as node `node_id`.
async fn broker(etcd: &EtcdCluster, prefix: &str, node_id: i32, extra: &[(&str, &str)]) -> TestBroker {
    let node = node_id.to_string();
    let endpoints = etcd.endpoints();
    let mut all = vec![
        ("listeners", "SASL_PLAINTEXT://127.0.0.1:0"),
        ("connection.failed.authentication.delay.ms", "0"),
        ("ktb.store", "etcd"),
        ("ktb.etcd.endpoints", endpoints.as_str()),
        ("ktb.etcd.prefix", prefix),
        ("node.id", node.as_str()),
        ("delegation.token.secret.key", SECRET),
    ];
    all.extend_from_slice(extra);
    TestBroker::start_with(&all, Arc::new(SystemClock)).await
}

/// T-CLUSTER-1, T-CLUSTER-2: the store contract the sled store passes holds on etcd:
/// guarded commits, read-after-commit, the ordered feed with previous values, barriers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t_cluster_2_store_contract_holds_for_etcd() {
    let etcd = EtcdCluster::start(3).await;
    let store =
        EtcdStore::connect(&etcd_settings(&etcd.endpoints(), "/conformance/"), Duration::from_secs(5)).await.unwrap();
    kafka_token_broker::store::conformance::check(&store).await;
}

/// T-CLUSTER-3: a token created on broker A logs in on B and C at once, 1,000 times
/// over, with no failure; an Expire on B is refused on A and C at once; a Renew on C
/// shows in a Describe on A.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t_cluster_3_read_your_writes_across_brokers() {
    let etcd = EtcdCluster::start(3).await;
    let (a, b, c) = (
        broker(&etcd, "/ryw/", 1, &[]).await,
        broker(&etcd, "/ryw/", 2, &[]).await,
        broker(&etcd, "/ryw/", 3, &[]).await,
    );
    let mech = ScramMechanism::Sha256;
    // 1,000 rounds in 8 concurrent streams of 125.
    let rounds = (0..8).map(|stream| {
        let (a, b, c) = (a.addr, b.addr, c.addr);
        tokio::spawn(async move {
            let mut on_a = common::TestClient::connect(a).await;
            on_a.login_admin().await;
            let mut failures = Vec::new();
            for i in 0..125 {
                let r = create_ok(&mut on_a, &[]).await;
                let id = r.token_id.to_string();
                let (lb, lc) =
                    tokio::join!(token_login(b, mech, &id, &r.hmac, false), token_login(c, mech, &id, &r.hmac, true));
                if lb.1.error_code != 0 || lc.1.error_code != 0 {
                    failures.push((stream * 125 + i, lb.1.error_code, lc.1.error_code));
                }
            }
            failures
        })
    });
    let mut failures = Vec::new();
    for r in rounds.collect::<Vec<_>>() {
        failures.extend(r.await.unwrap());
    }
    assert!(failures.is_empty(), "cross-broker logins failed (round, B, C): {failures:?}");
    let mut on_a = a.connect().await;
    on_a.login_admin().await;

    // Expire on B: refused on A and C at once.
    let t = create_ok(&mut on_a, &[]).await;
    let mut on_b = b.connect().await;
    on_b.login_admin().await;
    assert_eq!(expire(&mut on_b, 2, &t.hmac, -1).await.error_code, 0);
    for addr in [a.addr, c.addr] {
        let (_, r) = token_login(addr, mech, &t.token_id, &t.hmac, false).await;
        assert_eq!(r.error_code, 58, "a token expired on B logs in nowhere");
    }
    let mut on_c = c.connect().await;
    on_c.login_admin().await;
    assert_eq!(renew(&mut on_c, 2, &t.hmac, 1_000).await.error_code, 62, "C knows it is gone");

    // Renew on C: Describe on A shows the new expiry at once.
    let t = create_ok(&mut on_a, &[]).await;
    let renewed = renew(&mut on_c, 2, &t.hmac, 3_600_000).await;
    assert_eq!(renewed.error_code, 0);
    assert!(renewed.expiry_timestamp_ms < t.expiry_timestamp_ms, "a shorter period moves the expiry");
    let d = describe(&mut on_a, 3, None).await;
    let shown = d.tokens.iter().find(|x| x.token_id == t.token_id).expect("listed on A");
    assert_eq!(shown.expiry_timestamp, renewed.expiry_timestamp_ms, "A shows C's renewal");
    assert!(ids(&d).len() >= 1_001, "A lists every token created through it");
}

fn ktb_process(etcd: &EtcdCluster, cwd: &std::path::Path, prefix: &str, node_id: i32, secret: &str) -> KtbProcess {
    common::etcd_broker_process(etcd, cwd, prefix, node_id, secret)
}

/// The brokers a Metadata v12 answer lists, as (node id, port), and its controller id.
async fn metadata_brokers(addr: std::net::SocketAddr) -> (Vec<(i32, i32)>, i32) {
    use kafka_protocol::messages::{ApiKey, MetadataRequest, ResponseKind};
    let mut c = common::TestClient::connect(addr).await;
    c.login_admin().await;
    match c.call(ApiKey::Metadata, 12, MetadataRequest::default().into()).await {
        ResponseKind::Metadata(r) => (r.brokers.iter().map(|b| (b.node_id.0, b.port)).collect(), r.controller_id.0),
        other => panic!("{other:?}"),
    }
}

/// T-CLUSTER-4, T-CLUSTER-5: three brokers list each other in Metadata with the lowest
/// node id as controller; a second live broker with a taken node.id and a broker with
/// another master secret are refused with exit 2 and a message naming the problem; a
/// broker that stops leaves the list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t_cluster_4_membership_and_refusals() {
    let etcd = EtcdCluster::start(3).await;
    let cwd = tempfile::tempdir().unwrap();
    let procs: Vec<KtbProcess> = (1..=3).map(|n| ktb_process(&etcd, cwd.path(), "/members/", n, SECRET)).collect();
    let addrs: Vec<std::net::SocketAddr> = procs.iter().map(|p| p.addr.expect("listening")).collect();
    let expected: Vec<(i32, i32)> =
        addrs.iter().enumerate().map(|(i, a)| (i as i32 + 1, i32::from(a.port()))).collect();
    for addr in &addrs {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let (brokers, controller) = metadata_brokers(*addr).await;
            if brokers == expected {
                assert_eq!(controller, 1, "the lowest live node id is the controller");
                break;
            }
            assert!(std::time::Instant::now() < deadline, "{addr} lists {brokers:?}, not {expected:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    // node.id 2 again, from another data dir: refused while the first is live.
    let other = tempfile::tempdir().unwrap();
    let mut dup = ktb_process(&etcd, other.path(), "/members/", 2, SECRET);
    assert_eq!(dup.wait_exit(), Some(2), "a taken node.id exits 2");
    assert!(dup.log_lines().iter().any(|l| l.contains("node.id=2 is already registered")), "{:?}", dup.log_lines());

    // Another secret: refused, the message names the fingerprint mismatch.
    let mut wrong = ktb_process(&etcd, other.path(), "/members/", 4, "another-secret");
    assert_eq!(wrong.wait_exit(), Some(2), "a mismatched secret exits 2");
    let lines = wrong.log_lines();
    assert!(lines.iter().any(|l| l.contains("differs from the key of that id the cluster's brokers use")), "{lines:?}");
    assert!(!lines.iter().any(|l| l.contains("another-secret")), "the secret itself is never printed");

    // Broker 1 stops: the others stop listing it, and 2 becomes the controller.
    let mut procs = procs;
    procs[0].signal("TERM");
    assert_eq!(procs[0].wait_exit(), Some(0));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (brokers, controller) = metadata_brokers(addrs[1]).await;
        if brokers == expected[1..] {
            assert_eq!(controller, 2);
            break;
        }
        assert!(std::time::Instant::now() < deadline, "broker 1 still listed: {brokers:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Killed with SIGKILL, its registration outlives it until the lease runs out, yet
    // restarted on its own data dir node 3 reclaims it at once instead of being refused.
    procs[2].signal("KILL");
    let _ = procs[2].wait_exit();
    let back = ktb_process(&etcd, cwd.path(), "/members/", 3, SECRET);
    assert!(back.addr.is_some(), "node 3 restarts on its data dir: {:?}", back.log_lines());
    assert!(back.log_lines().iter().any(|l| l.contains("reclaimed this data dir's registration")));
}

/// What a Create answered.
#[derive(Debug, Clone, PartialEq)]
struct Acked {
    id: String,
    hmac: Vec<u8>,
    issue: i64,
    expiry: i64,
    max: i64,
}

/// Creates tokens on `addrs[start]` until `stop`, moving to the next broker when a
/// connection breaks; returns every acknowledged token and every error code.
async fn create_storm(
    addrs: Vec<std::net::SocketAddr>,
    start: usize,
    stop: tokio::sync::watch::Receiver<bool>,
) -> (Vec<Acked>, Vec<i16>) {
    let acked = Arc::new(std::sync::Mutex::new(Vec::new()));
    let errors = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut at = start;
    while !*stop.borrow() {
        let addr = addrs[at % addrs.len()];
        at += 1;
        // One task per connection: the test client panics when the broker goes away
        // mid-call, and that answer never came, so nothing it held was acknowledged.
        let (stop, acked, errors) = (stop.clone(), acked.clone(), errors.clone());
        let _ = tokio::spawn(async move {
            let mut c = common::TestClient::connect(addr).await;
            c.login_admin().await;
            while !*stop.borrow() {
                let r = common::token_api::create(&mut c, 3, None, &[], -1).await;
                if r.error_code == 0 {
                    acked.lock().unwrap().push(Acked {
                        id: r.token_id.to_string(),
                        hmac: r.hmac.to_vec(),
                        issue: r.issue_timestamp_ms,
                        expiry: r.expiry_timestamp_ms,
                        max: r.max_timestamp_ms,
                    });
                } else {
                    errors.lock().unwrap().push(r.error_code);
                }
            }
        })
        .await;
    }
    let acked = acked.lock().unwrap().clone();
    let errors = errors.lock().unwrap().clone();
    (acked, errors)
}

/// Every token a super user's Describe on `addr` lists, by id.
async fn described(addr: std::net::SocketAddr) -> std::collections::HashMap<String, Acked> {
    let mut c = common::TestClient::connect(addr).await;
    c.login_admin().await;
    let d = describe(&mut c, 3, None).await;
    assert_eq!(d.error_code, 0);
    d.tokens
        .iter()
        .map(|t| {
            let a = Acked {
                id: t.token_id.to_string(),
                hmac: t.hmac.to_vec(),
                issue: t.issue_timestamp,
                expiry: t.expiry_timestamp,
                max: t.max_timestamp,
            };
            (a.id.clone(), a)
        })
        .collect()
}

/// T-CLUSTER-8: a broker killed with SIGKILL during an 8-stream create storm loses no
/// acknowledged token: every one is on both survivors with identical details, and the
/// storm's clients carry on through the other brokers. Then one etcd member of three is
/// killed mid-storm: no create is refused and none is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t_cluster_8_no_acknowledged_change_is_lost() {
    let mut etcd = EtcdCluster::start(3).await;
    let cwd = tempfile::tempdir().unwrap();
    let procs: Vec<KtbProcess> = (1..=3).map(|n| ktb_process(&etcd, cwd.path(), "/storm/", n, SECRET)).collect();
    let addrs: Vec<std::net::SocketAddr> = procs.iter().map(|p| p.addr.expect("listening")).collect();

    let storm = |stop: &tokio::sync::watch::Receiver<bool>| {
        (0..8).map(|i| tokio::spawn(create_storm(addrs.clone(), i, stop.clone()))).collect::<Vec<_>>()
    };
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let streams = storm(&stop_rx);
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    procs[0].signal("KILL");
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    stop_tx.send_replace(true);
    let mut acked = Vec::new();
    for s in streams {
        let (a, _errors) = s.await.unwrap();
        acked.extend(a);
    }
    assert!(acked.len() > 50, "the storm created tokens: {}", acked.len());
    for addr in &addrs[1..] {
        let listed = described(*addr).await;
        for a in &acked {
            assert_eq!(listed.get(&a.id), Some(a), "acknowledged token {} on {addr}", a.id);
        }
    }

    // One etcd member of three dies mid-storm: nothing refused, nothing lost.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let survivors = addrs[1..].to_vec();
    let streams: Vec<_> = (0..8).map(|i| tokio::spawn(create_storm(survivors.clone(), i, stop_rx.clone()))).collect();
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    etcd.kill(0);
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    stop_tx.send_replace(true);
    let (mut acked, mut errors) = (Vec::new(), Vec::new());
    for s in streams {
        let (a, e) = s.await.unwrap();
        acked.extend(a);
        errors.extend(e);
    }
    let why: Vec<String> = procs[1..]
        .iter()
        .flat_map(|p| p.log_lines())
        .filter(|l| l.contains("token not created") || l.contains("lapsed"))
        .collect();
    assert!(
        errors.is_empty(),
        "creates refused while one etcd member of three was down: {errors:?}; the brokers said {why:?}"
    );
    let listed = described(survivors[0]).await;
    for a in &acked {
        assert_eq!(listed.get(&a.id), Some(a), "acknowledged token {}", a.id);
    }
}

/// T-CLUSTER-6, T-SWEEP-1: one broker, elected through etcd, sweeps; the others see its
/// deletions, so an expired token leaves every broker's Describe.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t_cluster_6_one_sweeper_and_everyone_sees_it() {
    let etcd = EtcdCluster::start(3).await;
    let fast = [("delegation.token.expiry.check.interval.ms", "200")];
    let brokers = [
        broker(&etcd, "/sweep/", 1, &fast).await,
        broker(&etcd, "/sweep/", 2, &fast).await,
        broker(&etcd, "/sweep/", 3, &fast).await,
    ];
    let mut on_b = brokers[1].connect().await;
    on_b.login_admin().await;
    let short = common::token_api::create(&mut on_b, 3, None, &[], 1_000).await;
    assert_eq!(short.error_code, 0);
    let kept = create_ok(&mut on_b, &[]).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    for b in &brokers {
        loop {
            let listed = described(b.addr).await;
            if !listed.contains_key(&short.token_id.to_string()) {
                assert!(listed.contains_key(&kept.token_id.to_string()), "the live token stays");
                break;
            }
            assert!(std::time::Instant::now() < deadline, "the expired token is still listed on {}", b.addr);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let mut client = etcd_client::Client::connect(etcd.endpoint_list(), None).await.unwrap();
    let holder = client.get("/sweep/sweeper", None).await.unwrap();
    let holder = holder.kvs().first().map(|kv| kv.value_str().unwrap().to_owned());
    assert!(matches!(holder.as_deref(), Some("1" | "2" | "3")), "one broker holds the sweeper key: {holder:?}");
}

/// T-CLUSTER-7: without an etcd quorum a Create answers 7 within the request timeout and
/// leaves nothing behind; once the members are back the same broker creates again,
/// without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t_cluster_7_no_quorum_answers_7_then_resumes() {
    let mut etcd = EtcdCluster::start(3).await;
    let b = broker(&etcd, "/quorum/", 1, &[("ktb.etcd.request.timeout.ms", "2000")]).await;
    let mut c = b.connect().await;
    c.login_admin().await;
    let before = create_ok(&mut c, &[]).await;
    etcd.kill(1);
    etcd.kill(2);
    let started = std::time::Instant::now();
    let refused = common::token_api::create(&mut c, 3, None, &[], -1).await;
    assert_eq!(refused.error_code, 7, "no quorum: REQUEST_TIMED_OUT");
    assert!(started.elapsed() < Duration::from_millis(4_000), "answered within the timeout: {:?}", started.elapsed());
    etcd.restart(1);
    etcd.restart(2);
    etcd.wait_ready(Duration::from_secs(30)).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let after = loop {
        let r = common::token_api::create(&mut c, 3, None, &[], -1).await;
        if r.error_code == 0 {
            break r;
        }
        assert_eq!(r.error_code, 7, "only the retriable error while the broker re-registers");
        assert!(std::time::Instant::now() < deadline, "the broker did not resume");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // The refused create may have reached etcd's log and commit once the quorum is back;
    // the broker then takes it back, so in the end only the acknowledged tokens remain.
    let mut expected = vec![before.token_id.to_string(), after.token_id.to_string()];
    expected.sort();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let listed = described(b.addr).await;
        let mut ids: Vec<String> = listed.keys().cloned().collect();
        ids.sort();
        if ids == expected {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the refused create left {ids:?}, not {expected:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// T-CLUSTER-7: without a quorum, a token whose record this broker read within
/// `ktb.etcd.stale.ms` still logs in; one it never confirmed, and any after the window,
/// gets its connection closed without an answer (a 58 would make clients give up rather
/// than try another broker).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t_cluster_7_logins_within_the_stale_window() {
    let mut etcd = EtcdCluster::start(3).await;
    let extra = [("ktb.etcd.request.timeout.ms", "1000"), ("ktb.etcd.stale.ms", "6000")];
    let b = broker(&etcd, "/stale/", 1, &extra).await;
    let mut admin = b.connect().await;
    admin.login_admin().await;
    let seen = create_ok(&mut admin, &[]).await;
    let unseen = create_ok(&mut admin, &[]).await;
    let mech = ScramMechanism::Sha256;
    assert_eq!(token_login(b.addr, mech, &seen.token_id, &seen.hmac, false).await.1.error_code, 0);
    etcd.kill(1);
    etcd.kill(2);
    let lost = std::time::Instant::now();
    let (_, r) = token_login(b.addr, mech, &seen.token_id, &seen.hmac, false).await;
    assert_eq!(r.error_code, 0, "confirmed within the window: still logs in");
    let closes = |id: String| async move {
        let mut c = common::TestClient::connect(b.addr).await;
        assert_eq!(c.handshake(1, mech.name()).await.0, 0);
        let first = ktb_protocol::scram::ScramClient::new(mech, &id, "clientnonce", false).client_first();
        let req = kafka_protocol::messages::SaslAuthenticateRequest::default().with_auth_bytes(first.into());
        c.send(kafka_protocol::messages::ApiKey::SaslAuthenticate, 2, req.into()).await;
        c.closed_without_response().await
    };
    assert!(closes(unseen.token_id.to_string()).await, "never confirmed: closed without an answer");
    tokio::time::sleep(Duration::from_millis(6_500).saturating_sub(lost.elapsed())).await;
    assert!(closes(seen.token_id.to_string()).await, "after the window: closed without an answer");
}

/// Runs `ktb store migrate` for `data_dir` into `prefix`; its exit code and stderr.
fn migrate(etcd: &EtcdCluster, data_dir: &std::path::Path, prefix: &str) -> (Option<i32>, String) {
    let out = std::process::Command::new(common::ktb_bin())
        .args(["store", "migrate", "--data-dir"])
        .arg(data_dir)
        .args(["--to-etcd", &etcd.endpoints(), "--prefix", prefix])
        .env_remove("KTB_CONFIG")
        .output()
        .unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// T-CLUSTER-1 (§9.7 `ktb store migrate`): a stopped single broker's users, tokens and
/// cluster id move into an empty etcd prefix; a broker on it, given the generated secret,
/// logs in the user and the token with the same details and cluster id; a second run
/// finds everything there; a broker with another secret is refused (the fingerprint was
/// copied, never the secret); a prefix in use is refused without a write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t_cluster_1_store_migrate_moves_a_single_broker_into_etcd() {
    use kafka_protocol::messages::{ApiKey, MetadataRequest, ResponseKind};
    let etcd = EtcdCluster::start(3).await;
    let single = TestBroker::start_sasl(&[]).await;
    let cluster_id = single.cluster_id_on_disk();
    let mut c = single.connect().await;
    c.login_admin().await;
    common::add_user(&mut c, "bob", "bob-password").await;
    let token = create_ok(&mut c, &[("User", "carol")]).await;
    let before = describe(&mut c, 3, None).await;
    drop(c);
    let (result, dir) = single.shutdown().await;
    result.unwrap();
    let data = dir.path().join("data");

    let (code, stderr) = migrate(&etcd, &data, "/migrated/");
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("4 user credential(s) and 1 token(s)"), "{stderr}");
    assert!(stderr.contains("(8 record(s) written, 0 there already)"), "and the cluster's shared keys: {stderr}");
    assert!(stderr.contains("delegation-token.secret"), "names the secret's file: {stderr}");
    let secret = std::fs::read_to_string(data.join("delegation-token.secret")).unwrap().trim().to_owned();
    assert!(!stderr.contains(&secret), "the secret itself is never printed");
    let (code, stderr) = migrate(&etcd, &data, "/migrated/");
    assert_eq!(code, Some(0), "a second run completes nothing new: {stderr}");
    assert!(stderr.contains("(0 record(s) written, 8 there already)"), "{stderr}");

    let on_etcd = broker(&etcd, "/migrated/", 1, &[("delegation.token.secret.key", secret.as_str())]).await;
    let (_, r) = token_login(on_etcd.addr, ScramMechanism::Sha512, &token.token_id, &token.hmac, true).await;
    assert_eq!(r.error_code, 0, "the migrated token logs in");
    let mut bob = on_etcd.connect().await;
    assert_eq!(bob.scram_login(ScramMechanism::Sha256, "bob", "bob-password", false).await.error_code, 0);
    let mut admin = on_etcd.connect().await;
    admin.login_admin().await;
    assert_eq!(describe(&mut admin, 3, None).await.tokens, before.tokens, "identical details, renewers included");
    match admin.call(ApiKey::Metadata, 12, MetadataRequest::default().into()).await {
        ResponseKind::Metadata(m) => assert_eq!(m.cluster_id.as_deref(), Some(cluster_id.as_str()), "same cluster id"),
        other => panic!("{other:?}"),
    }

    let cwd = tempfile::tempdir().unwrap();
    let mut wrong = ktb_process(&etcd, cwd.path(), "/migrated/", 2, "not-the-generated-secret");
    assert_eq!(wrong.wait_exit(), Some(2), "another secret is refused");
    assert!(wrong.log_lines().iter().any(|l| l.contains("differs from the key of that id the cluster's brokers use")));

    let other = TestBroker::start_sasl(&[]).await;
    let (result, other_dir) = other.shutdown().await;
    result.unwrap();
    let (code, stderr) = migrate(&etcd, &other_dir.path().join("data"), "/migrated/");
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("is in use") && stderr.contains("nothing was written"), "{stderr}");
    let mut admin = on_etcd.connect().await;
    admin.login_admin().await;
    assert_eq!(describe(&mut admin, 3, None).await.tokens, before.tokens, "the refused run changed nothing");
}

/// T-OPS-1 on etcd: a broker is ready while etcd answers; `ktb_etcd_up` and
/// `ktb_cluster_brokers` say so. A token record of a newer schema seen through the watch
/// is ignored but makes `/readyz` fail (§9.7) while the broker keeps serving; without a
/// quorum `/readyz` fails and `ktb_etcd_up` is 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t_ops_1_readiness_follows_etcd_and_the_schema() {
    use kafka_token_broker::cli::health;
    let mut etcd = EtcdCluster::start(3).await;
    let cwd = tempfile::tempdir().unwrap();
    let metrics = [("KTB_METRICS_LISTENER", "127.0.0.1:0")];
    let p1 = common::etcd_broker_process_with(&etcd, cwd.path(), "/ready/", 1, SECRET, &metrics);
    let _p2 = common::etcd_broker_process_with(&etcd, cwd.path(), "/ready/", 2, SECRET, &metrics);
    let m = p1.metrics_addr().expect("metrics listener");
    let get = |path: &'static str| async move {
        health::get(&format!("http://{m}{path}"), Duration::from_secs(10)).await.unwrap()
    };
    let gauge = |text: &str, name: &str| {
        text.lines().find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse::<f64>().ok()))
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (_, text) = get("/metrics").await;
        if gauge(&text, "ktb_cluster_brokers ") == Some(2.0) {
            assert_eq!(gauge(&text, "ktb_etcd_up "), Some(1.0), "{text}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "two brokers: {text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(get("/readyz").await, (200, "ready\n".to_owned()));

    // A newer broker's record: ignored, and this one is no longer ready.
    let mut client = etcd_client::Client::connect(etcd.endpoint_list(), None).await.unwrap();
    client.put("/ready/tok/from-the-future", vec![200u8, 1, 2, 3], None).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let (status, body) = loop {
        let r = get("/readyz").await;
        if r.0 != 200 || std::time::Instant::now() > deadline {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(status, 503);
    assert!(body.contains("newer schema"), "{body}");
    let mut c = TestClient::connect(p1.addr.unwrap()).await;
    c.login_admin().await;
    let t = create_ok(&mut c, &[]).await;
    let (_, r) = token_login(p1.addr.unwrap(), ScramMechanism::Sha256, &t.token_id, &t.hmac, false).await;
    assert_eq!(r.error_code, 0, "the broker keeps serving");

    // No quorum: not ready, and etcd is down as far as the metrics know.
    etcd.kill(1);
    etcd.kill(2);
    let m2 = _p2.metrics_addr().unwrap();
    let (status, body) = health::get(&format!("http://{m2}/readyz"), Duration::from_secs(10)).await.unwrap();
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("store"), "{body}");
    let (_, text) = get("/metrics").await;
    assert_eq!(gauge(&text, "ktb_etcd_up "), Some(0.0), "{text}");
}

/// `GET /keys` of a broker's metrics listener (what `ktb secret status --url` shows).
async fn key_status(metrics: std::net::SocketAddr) -> kafka_token_broker::rotation::Status {
    let (code, body) =
        kafka_token_broker::cli::health::get(&format!("http://{metrics}/keys"), Duration::from_secs(10)).await.unwrap();
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// Polls `metrics`'s key status until `done` holds, for at most 15 s.
async fn key_status_until(
    metrics: std::net::SocketAddr,
    what: &str,
    done: impl Fn(&kafka_token_broker::rotation::Status) -> bool,
) -> kafka_token_broker::rotation::Status {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let s = key_status(metrics).await;
        if done(&s) {
            return s;
        }
        assert!(std::time::Instant::now() < deadline, "{what}: {s:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn write_private(path: &std::path::Path, contents: &str) {
    use std::os::unix::fs::PermissionsExt;
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents).unwrap();
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// T-ROTATE-4, T-CLUSTER-5: three brokers, each with its own copy of the keyring. A key
/// added to two of them is published but not used: tokens made meanwhile carry the old
/// key and log in on the third broker. Once the third has it too, the cluster's active
/// key moves and every broker mints with it. A fourth broker without the active key, with
/// another secret under its id, or without the old key that live tokens use and the
/// others hold, is refused. A key removed from every broker makes
/// its tokens fail everywhere while the new key's work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t_rotate_4_a_key_is_active_once_every_live_broker_holds_it() {
    use kafka_token_broker::config::HmacAlgorithm;
    use kafka_token_broker::tokens::MasterSecret;
    let etcd = EtcdCluster::start(3).await;
    let cwd = tempfile::tempdir().unwrap();
    let first = "k1 first-cluster-key\n";
    let both = "k1 first-cluster-key\nk2 second-cluster-key\n";
    let keyring = |n: i32| cwd.path().join(format!("keyring{n}"));
    let metrics = [("KTB_METRICS_LISTENER", "127.0.0.1:0")];
    let mut procs = Vec::new();
    for n in 1..=3 {
        write_private(&keyring(n), first);
        let p = common::etcd_broker_process_keyring(&etcd, cwd.path(), "/rotate/", n, &keyring(n), &metrics);
        assert!(p.addr.is_some(), "broker {n}: {:?}", p.log_lines());
        procs.push(p);
    }
    let addrs: Vec<_> = procs.iter().map(|p| p.addr.unwrap()).collect();
    let urls: Vec<_> = procs.iter().map(|p| p.metrics_addr().unwrap()).collect();
    let login = |at: std::net::SocketAddr, id: String, hmac: Vec<u8>| async move {
        token_login(at, ScramMechanism::Sha512, &id, &hmac, true).await.1.error_code == 0
    };
    let mut c1 = TestClient::connect(addrs[0]).await;
    c1.login_admin().await;
    let t1 = create_ok(&mut c1, &[]).await;

    // Brokers 1 and 2 get k2, broker 3 not yet: k2 is published, k1 stays active.
    for n in [1, 2] {
        write_private(&keyring(n), both);
        assert!(procs[n as usize - 1].wait_for_log("master keys reloaded").is_some());
    }
    let s = key_status_until(urls[0], "k2 published by brokers 1 and 2", |s| {
        s.keys.iter().any(|k| k.key_id == "k2" && k.brokers.as_deref() == Some(&[1, 2]))
    })
    .await;
    assert_eq!(s.active_key.as_deref(), Some("k1"), "broker 3 lacks k2");
    let t2 = create_ok(&mut c1, &[]).await;
    assert!(
        login(addrs[2], t2.token_id.to_string(), t2.hmac.to_vec()).await,
        "a token made meanwhile logs in on the broker without k2"
    );

    // Broker 3 gets k2: it becomes the active key on every broker.
    write_private(&keyring(3), both);
    assert!(procs[2].wait_for_log("master keys reloaded").is_some());
    for url in &urls {
        key_status_until(*url, "k2 active", |s| s.active_key.as_deref() == Some("k2")).await;
    }
    let mut c2 = TestClient::connect(addrs[1]).await;
    c2.login_admin().await;
    let t3 = create_ok(&mut c2, &[]).await;
    let t3_id = t3.token_id.to_string();
    assert_eq!(
        MasterSecret::new("second-cluster-key").token_hmac(HmacAlgorithm::Sha1, &t3_id).expose(),
        &t3.hmac[..],
        "new tokens use k2"
    );
    for at in &addrs {
        assert!(login(*at, t3_id.clone(), t3.hmac.to_vec()).await);
        assert!(login(*at, t1.token_id.to_string(), t1.hmac.to_vec()).await, "k1's tokens still work");
    }
    let s = key_status(urls[2]).await;
    let rows: Vec<_> = s.keys.iter().map(|k| (k.key_id.as_str(), k.live_tokens, k.brokers.clone())).collect();
    assert_eq!(rows, [("k1", Some(2), Some(vec![1, 2, 3])), ("k2", Some(1), Some(vec![1, 2, 3]))]);

    // A fourth broker without the active key, or with another secret for k2: refused.
    let other = tempfile::tempdir().unwrap();
    let fourth = other.path().join("keyring4");
    write_private(&fourth, first);
    let mut p = common::etcd_broker_process_keyring(&etcd, other.path(), "/rotate/", 4, &fourth, &[]);
    assert_eq!(p.wait_exit(), Some(2));
    assert!(
        p.log_lines().iter().any(|l| l.contains("master key k2") && l.contains("keyring lacks")),
        "{:?}",
        p.log_lines()
    );
    write_private(&fourth, "k1 first-cluster-key\nk2 not-the-second-key\n");
    let mut p = common::etcd_broker_process_keyring(&etcd, other.path(), "/rotate/", 4, &fourth, &[]);
    assert_eq!(p.wait_exit(), Some(2));
    let lines = p.log_lines();
    assert!(lines.iter().any(|l| l.contains("master key k2 differs")), "{lines:?}");
    assert!(!lines.iter().any(|l| l.contains("not-the-second-key")), "the secret itself is never printed");
    write_private(&fourth, "k2 second-cluster-key\n");
    let mut p = common::etcd_broker_process_keyring(&etcd, other.path(), "/rotate/", 4, &fourth, &[]);
    assert_eq!(p.wait_exit(), Some(2), "without k1, which live tokens use and brokers 1-3 hold");
    let lines = p.log_lines();
    assert!(
        lines.iter().any(|l| l.contains("2 live tokens use master key k1, which brokers [1, 2, 3] hold")),
        "{lines:?}"
    );

    // k1 leaves every broker: its tokens fail everywhere, k2's work.
    for n in 1..=3 {
        write_private(&keyring(n), "k2 second-cluster-key\n");
        assert!(procs[n as usize - 1].wait_for_log("master keys reloaded").is_some());
    }
    for at in &addrs {
        assert!(!login(*at, t1.token_id.to_string(), t1.hmac.to_vec()).await, "k1's tokens are refused");
        assert!(login(*at, t3_id.clone(), t3.hmac.to_vec()).await);
    }
    assert_eq!(renew(&mut c2, 2, &t2.hmac, 60_000).await.error_code, 62);
    let s = key_status_until(urls[0], "k1 gone from every broker", |s| {
        s.keys.iter().any(|k| k.key_id == "k1" && !k.in_keyring && k.brokers.as_deref() == Some(&[]))
    })
    .await;
    assert_eq!(s.active_key.as_deref(), Some("k2"));
}
