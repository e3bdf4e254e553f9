//! Hostile clients against the `ktb` binary (SPEC §9.1, §9.2, D-20..D-22): each test runs
//! one class of attack over real sockets with bounded loops, and asserts what users of the
//! broker would see: the attacker answered or closed, the broker's resident memory (from
//! `/proc/<pid>/status`) bounded, and a legitimate client on another connection keeping
//! its latency. No test times the attack itself.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::token_api::{create, expire};
use common::{KtbProcess, TestClient, add_user, token_password};
use kafka_protocol::messages::create_delegation_token_request::CreatableRenewers;
use kafka_protocol::messages::describe_user_scram_credentials_request::UserName;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use ktb_protocol::client::encode_request;
use ktb_protocol::error_code;
use ktb_protocol::scram::{ScramClient, ScramMechanism};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const PASSWORD: &str = "hostile-admin-password";
const MIB: u64 = 1 << 20;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_owned())
}

/// A broker with a SASL_PLAINTEXT and a PLAINTEXT listener on ephemeral ports.
struct Broker {
    p: KtbProcess,
    sasl: SocketAddr,
    plain: SocketAddr,
}

fn start(cwd: &std::path::Path, extra: &[(&str, &str)]) -> Broker {
    let mut env = vec![
        ("KTB_LISTENERS", "SASL_PLAINTEXT://127.0.0.1:0,PLAINTEXT://127.0.0.1:0"),
        ("KTB_ADMIN_PASSWORD", PASSWORD),
        ("KTB_CONNECTION_FAILED_AUTHENTICATION_DELAY_MS", "0"),
    ];
    env.extend_from_slice(extra);
    let p = KtbProcess::start(cwd, &[], &env);
    let sasl = p.addr.unwrap_or_else(|| panic!("ktb listens: {:?}", p.log_lines()));
    let plain = p
        .wait_for_log("listening on PLAINTEXT://")
        .and_then(|l| l.split("://").nth(1)?.split_whitespace().next()?.parse().ok())
        .expect("the PLAINTEXT listener");
    Broker { p, sasl, plain }
}

/// (VmRSS, VmHWM) of a process, in bytes: resident now, and the peak so far.
fn memory(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        let line = status.lines().find(|l| l.starts_with(name)).unwrap();
        line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
    };
    (field("VmRSS:"), field("VmHWM:"))
}

async fn admin(addr: SocketAddr) -> TestClient {
    let mut c = TestClient::connect(addr).await;
    assert_eq!(c.scram_login(ScramMechanism::Sha512, "admin", PASSWORD, false).await.error_code, 0);
    c
}

/// Round trips of ApiVersions on its own connection, every 10 ms until `stop` is set;
/// returns each round trip's latency.
fn probe(
    addr: SocketAddr,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> tokio::task::JoinHandle<Vec<Duration>> {
    tokio::spawn(async move {
        let mut c = admin(addr).await;
        let mut out = Vec::new();
        while !stop.load(std::sync::atomic::Ordering::SeqCst) && out.len() < 3_000 {
            let t = Instant::now();
            c.call(ApiKey::ApiVersions, 3, ApiVersionsRequest::default().into()).await;
            out.push(t.elapsed());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        out
    })
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Reads from `stream` until the broker closes it (EOF or reset) or 10 s pass; returns
/// the bytes read and whether it closed.
async fn drain(stream: &mut TcpStream) -> (usize, bool) {
    let mut total = 0;
    let mut buf = vec![0u8; 1 << 16];
    let deadline = Instant::now() + Duration::from_secs(10);
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (total, true),
            Ok(Ok(n)) => total += n,
            Err(_) => break,
        }
    }
    (total, false)
}

/// T-LIMIT-4, D-20: a non-super user sending 1 MB Creates with 10,000 renewers gets 42
/// for each (and a closed connection for 60,000), the broker's peak memory grows by less
/// than T-LIMIT-1's bound for one such frame, and an ApiVersions client on another
/// connection keeps its latency. At the limit (64) a Create succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t_limit_4_d_20_renewer_flood_is_refused_without_stalling_others() {
    let cwd = tempfile::tempdir().unwrap();
    let b = start(cwd.path(), &[]);
    let mut a = admin(b.sasl).await;
    add_user(&mut a, "mallory", "mallory-pw").await;
    let mut m = TestClient::connect(b.sasl).await;
    assert_eq!(m.scram_login(ScramMechanism::Sha256, "mallory", "mallory-pw", false).await.error_code, 0);

    let names = |n: usize| (0..n).map(|i| format!("r{i:06}")).collect::<Vec<_>>();
    let some = names(65);
    let users: Vec<(&str, &str)> = some.iter().map(|n| ("User", n.as_str())).collect();
    assert_eq!(create(&mut m, 3, None, &users[..64], -1).await.error_code, 0, "64 renewers are allowed");
    assert_eq!(create(&mut m, 3, None, &users, -1).await.error_code, error_code::INVALID_REQUEST, "D-20");

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let latencies = probe(b.sasl, stop.clone());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (_, hwm_before) = memory(b.p.child.id());
    // 10,000 renewers of 90 characters: about 1 MB, the most entries a request may have.
    let renewers: Vec<CreatableRenewers> = (0..10_000)
        .map(|i| {
            CreatableRenewers::default().with_principal_type(s("User")).with_principal_name(s(&format!("{i:090}")))
        })
        .collect();
    let req = CreateDelegationTokenRequest::default().with_renewers(renewers).with_max_lifetime_ms(-1);
    for _ in 0..10 {
        match m.call(ApiKey::CreateDelegationToken, 3, req.clone().into()).await {
            ResponseKind::CreateDelegationToken(r) => assert_eq!(r.error_code, error_code::INVALID_REQUEST),
            other => panic!("{other:?}"),
        }
    }
    // More entries than that close the connection before anything is decoded.
    let renewers: Vec<CreatableRenewers> = names(60_000)
        .into_iter()
        .map(|n| CreatableRenewers::default().with_principal_type(s("User")).with_principal_name(s(&n)))
        .collect();
    m.send(ApiKey::CreateDelegationToken, 3, CreateDelegationTokenRequest::default().with_renewers(renewers).into())
        .await;
    assert!(m.closed_without_response().await);
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let latencies = latencies.await.unwrap();
    let (_, hwm_after) = memory(b.p.child.id());
    let worst = *latencies.iter().max().unwrap();
    println!(
        "renewer flood: peak RSS +{} KiB, probe median {:?} max {worst:?} over {} calls",
        (hwm_after - hwm_before) / 1024,
        median(latencies.clone()),
        latencies.len()
    );
    assert!(worst < Duration::from_millis(500), "another client stalled for {worst:?}");
    assert!(hwm_after - hwm_before < 16 * MIB + 64 * 1024, "peak grew by {} bytes", hwm_after - hwm_before);
}

/// T-LIMIT-2, D-25: before authentication, a 500 KB DescribeUserScramCredentials after a
/// handshake gets a 34 answer under 1 KiB, then the connection closes; a hundred such
/// clients that never read cost the broker little memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t_limit_2_pre_auth_answers_are_small_whatever_the_request() {
    let cwd = tempfile::tempdir().unwrap();
    let b = start(cwd.path(), &[]);
    let users: Vec<UserName> = (0..4_500).map(|i| UserName::default().with_name(s(&format!("{i:0>100}")))).collect();
    let body: RequestKind = DescribeUserScramCredentialsRequest::default().with_users(Some(users)).into();
    let frame = encode_request(ApiKey::DescribeUserScramCredentials, 0, 9, "x", &body).unwrap();
    assert!(frame.len() > 450_000 && frame.len() < 524_288, "{}", frame.len());

    let mut c = TestClient::connect(b.sasl).await;
    assert_eq!(c.handshake(1, "SCRAM-SHA-256").await.0, 0);
    c.send_raw(&frame).await;
    let answer = c.read_frame().await.expect("a 34 answer");
    assert!(answer.len() <= 1024, "answer of {} bytes", answer.len());
    let (_, r) = ktb_protocol::client::decode_response(ApiKey::DescribeUserScramCredentials, 0, answer).unwrap();
    let ResponseKind::DescribeUserScramCredentials(r) = r else { panic!() };
    assert_eq!(r.error_code, error_code::ILLEGAL_SASL_STATE);
    assert!(r.results.is_empty());
    assert!(c.closed_without_response().await);

    let (rss_before, _) = memory(b.p.child.id());
    let mut silent = Vec::new();
    for _ in 0..100 {
        let mut c = TestClient::connect(b.sasl).await;
        assert_eq!(c.handshake(1, "SCRAM-SHA-256").await.0, 0);
        c.send_raw(&frame).await;
        silent.push(c); // never read
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (rss_after, _) = memory(b.p.child.id());
    println!("100 silent pre-auth clients: RSS {} -> {} KiB", rss_before / 1024, rss_after / 1024);
    assert!(rss_after < rss_before + 64 * MIB, "RSS grew from {rss_before} to {rss_after}");
    // The broker still serves everyone else.
    admin(b.sasl).await;
    // A SCRAM client-first far larger than any name and nonce fails at once (58).
    let mut c = TestClient::connect(b.sasl).await;
    assert_eq!(c.handshake(1, "SCRAM-SHA-256").await.0, 0);
    let huge = format!("n,,n=admin,r={}", "x".repeat(100_000));
    assert_eq!(c.authenticate(2, huge.as_bytes()).await.error_code, error_code::SASL_AUTHENTICATION_FAILED);
}

/// T-LIMIT-3: a client that pipelines large answers and never reads them is closed once
/// the broker could write nothing for `ktb.write.timeout.ms`; reading afterwards it finds
/// the connection closed before all answers came, and others are served meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t_limit_3_stalled_reader_is_closed() {
    let cwd = tempfile::tempdir().unwrap();
    let b = start(cwd.path(), &[("KTB_WRITE_TIMEOUT_MS", "1000")]);
    // 50,000 distinct topics: a 400 KB request whose answer is about 750 KB.
    let topics: Vec<MetadataRequestTopic> = (0..50_000)
        .map(|i| MetadataRequestTopic::default().with_name(Some(TopicName(s(&format!("t{i:05}"))))))
        .collect();
    let body: RequestKind = MetadataRequest::default().with_topics(Some(topics)).into();
    let frame = encode_request(ApiKey::Metadata, 1, 1, "x", &body).unwrap();
    const SENT: usize = 20;
    let stream = TcpStream::connect(b.plain).await.unwrap();
    let (mut rd, mut wr) = stream.into_split();
    let writer = tokio::spawn(async move {
        for _ in 0..SENT {
            if wr.write_all(&frame).await.is_err() {
                break;
            }
        }
        wr
    });
    tokio::time::sleep(Duration::from_millis(3_000)).await;
    let mut other = TestClient::connect(b.plain).await;
    other.call(ApiKey::ApiVersions, 3, ApiVersionsRequest::default().into()).await;

    let mut total = 0usize;
    let mut buf = vec![0u8; 1 << 16];
    let closed = loop {
        match tokio::time::timeout(Duration::from_secs(10), rd.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(n)) => total += n,
            Err(_) => break false,
        }
    };
    writer.abort();
    println!("stalled reader: closed={closed} after {total} bytes of {SENT} answers of ~750 KB");
    assert!(closed, "the broker closed the stalled connection");
    assert!(total < SENT * 700_000, "the broker stopped writing ({total} bytes read)");
}

/// The peak resident-memory growth of the broker while it answers `frame` on a fresh
/// connection to `addr`, and the answer.
async fn peak_growth(b: &Broker, addr: SocketAddr, frame: &[u8]) -> (u64, Bytes) {
    let mut c = TestClient::connect(addr).await;
    c.call(ApiKey::ApiVersions, 3, ApiVersionsRequest::default().into()).await;
    let (_, hwm_before) = memory(b.p.child.id());
    c.send_raw(frame).await;
    let answer = c.read_frame().await.expect("an answer");
    let (_, hwm_after) = memory(b.p.child.id());
    (hwm_after - hwm_before, answer)
}

/// T-LIMIT-1, D-21: 1 MiB Metadata requests on a PLAINTEXT listener with no login —
/// empty names (all duplicates, at v1 and v9) and then distinct short names — are answered
/// (one entry per distinct topic) while the broker's peak memory grows by less than
/// 16 × the frame + 64 KiB. Each request runs on a fresh broker, since the peak only rises.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t_limit_1_metadata_requests_cost_bounded_memory() {
    let names = |n: usize, distinct: bool| -> Vec<MetadataRequestTopic> {
        (0..n)
            .map(|i| {
                let name = if distinct { format!("{i:x}") } else { String::new() };
                MetadataRequestTopic::default().with_name(Some(TopicName(s(&name))))
            })
            .collect()
    };
    // v1: 2 bytes per empty name; v9: 2 bytes (compact length, tags); distinct hex names
    // of up to 5 characters in v1: about 7 bytes each.
    let cases = [(1i16, names((MIB as usize - 64) / 2, false), 1usize), (9, names((MIB as usize - 64) / 2, false), 1)];
    let distinct_n = 150_000;
    let cases = cases.into_iter().chain([(1i16, names(distinct_n, true), distinct_n)]);
    for (version, topics, expected) in cases {
        let cwd = tempfile::tempdir().unwrap();
        let b = start(cwd.path(), &[]);
        let body: RequestKind = MetadataRequest::default().with_topics(Some(topics)).into();
        let frame = encode_request(ApiKey::Metadata, version, 1, "x", &body).unwrap();
        assert!(frame.len() as u64 <= MIB + 4, "{}", frame.len());
        let (grown, answer) = peak_growth(&b, b.plain, &frame).await;
        let (_, r) = ktb_protocol::client::decode_response(ApiKey::Metadata, version, answer).unwrap();
        let ResponseKind::Metadata(r) = r else { panic!() };
        assert_eq!(r.topics.len(), expected, "one answer per distinct topic");
        let bound = 16 * frame.len() as u64 + 64 * 1024;
        println!(
            "Metadata v{version}, {} KiB frame, {expected} distinct topics: peak RSS +{} KiB (bound {} KiB)",
            frame.len() / 1024,
            grown / 1024,
            bound / 1024
        );
        assert!(grown < bound, "peak grew by {grown} bytes, over {bound}");
    }
    // A frame over the new default limit closes the connection without an answer.
    let cwd = tempfile::tempdir().unwrap();
    let b = start(cwd.path(), &[]);
    let mut c = TestClient::connect(b.plain).await;
    c.send_raw(&(2 * MIB as i32).to_be_bytes()).await;
    assert!(c.closed_without_response().await, "D-21");
}

/// T-LIMIT-1: an array of a token or user API request with more than 10,000 entries
/// closes the connection before it is decoded (each entry would cost the codec up to 90
/// bytes whatever its size); 10,000 are answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t_limit_1_token_and_user_api_arrays_are_capped() {
    use kafka_protocol::messages::describe_delegation_token_request::DescribeDelegationTokenOwner;
    let cwd = tempfile::tempdir().unwrap();
    let b = start(cwd.path(), &[]);
    let owners = |n: usize| -> RequestKind {
        let o = (0..n).map(|i| {
            DescribeDelegationTokenOwner::default()
                .with_principal_type(s("User"))
                .with_principal_name(s(&i.to_string()))
        });
        DescribeDelegationTokenRequest::default().with_owners(Some(o.collect())).into()
    };
    let mut a = admin(b.sasl).await;
    match a.call(ApiKey::DescribeDelegationToken, 3, owners(10_000)).await {
        ResponseKind::DescribeDelegationToken(r) => assert_eq!(r.error_code, 0),
        other => panic!("{other:?}"),
    }
    a.send(ApiKey::DescribeDelegationToken, 3, owners(10_001)).await;
    assert!(a.closed_without_response().await);
    let users = |n: usize| -> RequestKind {
        let u = (0..n).map(|i| UserName::default().with_name(s(&i.to_string())));
        DescribeUserScramCredentialsRequest::default().with_users(Some(u.collect())).into()
    };
    let mut anonymous = TestClient::connect(b.plain).await;
    // 20,000 short names: about 140 KB, well inside the frame limit, so only the cap refuses it.
    anonymous.send(ApiKey::DescribeUserScramCredentials, 0, users(20_000)).await;
    assert!(anonymous.closed_without_response().await, "on PLAINTEXT too");
}

/// The server-first of a login as `name` (with `tokenauth` when `token`): (salt, iterations).
async fn server_first(addr: SocketAddr, mech: ScramMechanism, name: &str, token: bool) -> (String, String) {
    let mut c = TestClient::connect(addr).await;
    assert_eq!(c.handshake(1, mech.name()).await.0, 0);
    let r = c.authenticate(2, &ScramClient::new(mech, name, "nonce", token).client_first()).await;
    assert_eq!(r.error_code, 0);
    let sf = String::from_utf8(r.auth_bytes.to_vec()).unwrap();
    let mut parts = sf.split(',').skip(1);
    (parts.next().unwrap().to_owned(), parts.next().unwrap().to_owned())
}

/// T-REVEAL-1, D-26: an unknown user's server-first has the salt length and iterations of
/// a user ktb created, and the same salt after a restart; a token's server-first is the
/// same live, after its deletion and across restarts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t_reveal_1_unknown_names_look_like_real_ones_across_restarts() {
    use base64::Engine;
    let cwd = tempfile::tempdir().unwrap();
    let mech = ScramMechanism::Sha512;
    let (ghost, token, token_live) = {
        let b = start(cwd.path(), &[]);
        let (real_salt, real_i) = server_first(b.sasl, mech, "admin", false).await;
        let (ghost_salt, ghost_i) = server_first(b.sasl, mech, "ghost", false).await;
        let len = |salt: &str| base64::engine::general_purpose::STANDARD.decode(&salt[2..]).unwrap().len();
        assert_eq!((len(&ghost_salt), &ghost_i), (len(&real_salt), &real_i), "same shape as a real user");
        assert_eq!(real_i, "i=4096");
        // A user name tried as a token shows the same salt as the user's own login.
        assert_eq!(server_first(b.sasl, mech, "admin", true).await, (real_salt.clone(), real_i.clone()));
        assert_eq!(server_first(b.sasl, mech, "ghost", true).await.0, ghost_salt, "and an unknown one its fake");
        let mut a = admin(b.sasl).await;
        let t = create(&mut a, 3, None, &[], -1).await;
        let id = t.token_id.to_string();
        let mut tc = TestClient::connect(b.sasl).await;
        let ok = tc.scram_login(mech, &id, &token_password(&t.hmac), true).await;
        assert_eq!(ok.error_code, 0);
        let live = server_first(b.sasl, mech, &id, true).await;
        assert_eq!(expire(&mut a, 2, &t.hmac, -1).await.error_code, 0);
        let gone = server_first(b.sasl, mech, &id, true).await;
        assert_eq!(live, gone, "a deleted token looks like a live one");
        (ghost_salt, id, live)
    };
    let b = start(cwd.path(), &[]);
    assert_eq!(server_first(b.sasl, mech, "ghost", false).await.0, ghost, "stable across restarts");
    assert_eq!(server_first(b.sasl, mech, &token, true).await, token_live);
    let mode = |p: &std::path::Path| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    };
    assert_eq!(mode(&cwd.path().join("ktb-data/fake-salt.key")), 0o600);
}

/// T-REVEAL-2: a user name and a mechanism name carrying line breaks and terminal
/// escapes are logged escaped: no forged line, no raw ESC.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t_reveal_2_client_strings_are_escaped_in_the_log() {
    let cwd = tempfile::tempdir().unwrap();
    let b = start(cwd.path(), &[]);
    let mut c = TestClient::connect(b.sasl).await;
    assert_eq!(c.handshake(1, "SCRAM-SHA-256").await.0, 0);
    let evil = "evil\nINFO forged line\x1b[31m";
    let first = c.authenticate(2, &ScramClient::new(ScramMechanism::Sha256, evil, "n", false).client_first()).await;
    if first.error_code == 0 {
        let client = ScramClient::new(ScramMechanism::Sha256, evil, "n", false);
        let (_, last) = client.client_final(&first.auth_bytes, b"pw").unwrap();
        c.authenticate(2, &last).await;
    }
    let mut c = TestClient::connect(b.sasl).await;
    c.handshake(1, "X\nINFO forged mechanism\x1b]0;title\x07").await;
    assert!(b.p.wait_for_log("unsupported SASL mechanism").is_some());
    assert!(b.p.wait_for_log("authentication failed").is_some() || !b.p.log_lines().is_empty());
    let lines = b.p.log_lines();
    assert!(lines.iter().all(|l| !l.contains('\x1b') && !l.contains('\x07')), "{lines:?}");
    assert!(lines.iter().all(|l| !l.trim_start().starts_with("INFO forged")), "{lines:?}");
    assert!(lines.iter().any(|l| l.contains("X\\nINFO forged mechanism\\x1b]0;title\\x07")), "{lines:?}");
    assert!(lines.iter().any(|l| l.contains("evil\\nINFO forged line\\x1b[31m")), "{lines:?}");
}

/// T-REVEAL-3: every directory in the data dir is 0700 and every file 0600, the store's
/// included, and a store left world-readable by an earlier build is made private.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t_reveal_3_every_file_in_the_data_dir_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let cwd = tempfile::tempdir().unwrap();
    let data = cwd.path().join("ktb-data");
    let check = |fix_first: bool| {
        let mut seen = 0;
        let mut stack = vec![data.clone()];
        while let Some(dir) = stack.pop() {
            for e in std::fs::read_dir(&dir).unwrap() {
                let e = e.unwrap();
                let mode = e.metadata().unwrap().permissions().mode() & 0o777;
                if fix_first {
                    let loose = if e.file_type().unwrap().is_dir() { 0o755 } else { 0o644 };
                    std::fs::set_permissions(e.path(), std::fs::Permissions::from_mode(loose)).unwrap();
                } else if e.file_type().unwrap().is_dir() {
                    assert_eq!(mode, 0o700, "{}", e.path().display());
                } else {
                    assert_eq!(mode, 0o600, "{}", e.path().display());
                }
                if e.file_type().unwrap().is_dir() {
                    stack.push(e.path());
                }
                seen += 1;
            }
        }
        seen
    };
    {
        let b = start(cwd.path(), &[]);
        let mut a = admin(b.sasl).await;
        assert_eq!(create(&mut a, 3, None, &[], -1).await.error_code, 0);
        assert!(check(false) > 3, "the store's files are there and private");
        b.p.signal("TERM");
    }
    check(true);
    let b = start(cwd.path(), &[]);
    admin(b.sasl).await;
    check(false);
}

/// D-22: after Expire(−1) of a token, its idle session is closed within a second and
/// without an answer, and a busy one before its next request is served; after Expire(0)
/// (expiry moved to now) an idle session closes within a second too, while a renewal
/// keeps the sessions of another token open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d_22_revoked_token_sessions_are_closed() {
    let cwd = tempfile::tempdir().unwrap();
    let b = start(cwd.path(), &[]);
    let mut a = admin(b.sasl).await;
    let t = create(&mut a, 3, None, &[], -1).await;
    let login = |t: &CreateDelegationTokenResponse| {
        let (id, pw) = (t.token_id.to_string(), token_password(&t.hmac));
        async move {
            let mut c = TestClient::connect(b.sasl).await;
            assert_eq!(c.scram_login(ScramMechanism::Sha256, &id, &pw, false).await.error_code, 0);
            c.call(ApiKey::ApiVersions, 3, ApiVersionsRequest::default().into()).await;
            c
        }
    };
    let mut idle = login(&t).await;
    let mut busy = login(&t).await;
    assert_eq!(expire(&mut a, 2, &t.hmac, -1).await.error_code, 0);
    let expired_at = Instant::now();
    let (bytes, closed) = drain(&mut idle.stream).await;
    assert!(closed && bytes == 0, "the idle session closed without an answer");
    assert!(expired_at.elapsed() < Duration::from_secs(1), "within 1 s: {:?}", expired_at.elapsed());
    busy.send(ApiKey::ApiVersions, 3, ApiVersionsRequest::default().into()).await;
    assert!(busy.closed_without_response().await);

    let t = create(&mut a, 3, None, &[], -1).await;
    let kept = create(&mut a, 3, None, &[], -1).await;
    let mut c = login(&t).await;
    let mut k = login(&kept).await;
    assert_eq!(common::token_api::renew(&mut a, 2, &kept.hmac, 60_000).await.error_code, 0);
    assert_eq!(expire(&mut a, 2, &t.hmac, 0).await.error_code, 0);
    let expired_at = Instant::now();
    let (bytes, closed) = drain(&mut c.stream).await;
    assert!(closed && bytes == 0, "the expired token's idle session closed");
    assert!(expired_at.elapsed() < Duration::from_secs(1), "within 1 s: {:?}", expired_at.elapsed());
    k.call(ApiKey::ApiVersions, 3, ApiVersionsRequest::default().into()).await;
}

/// T-LIMIT-5: at `max.connections.per.ip` new connections from that address are closed at
/// once while another address still logs in; `max.connections` follows the open-file
/// limit (logged at startup).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t_limit_5_a_flood_from_one_address_does_not_lock_out_others() {
    let cwd = tempfile::tempdir().unwrap();
    let b = start(cwd.path(), &[("KTB_MAX_CONNECTIONS_PER_IP", "5"), ("KTB_CONNECTIONS_MAX_IDLE_MS", "600000")]);
    let from = |ip: &str| {
        let ip: std::net::IpAddr = ip.parse().unwrap();
        async move {
            let sock = TcpSocket::new_v4().unwrap();
            sock.bind(SocketAddr::new(ip, 0)).unwrap();
            sock.connect(b.sasl).await.unwrap()
        }
    };
    let mut flood = Vec::new();
    for _ in 0..5 {
        flood.push(from("127.0.0.2").await);
    }
    let mut refused = 0;
    for _ in 0..20 {
        let mut extra = from("127.0.0.2").await;
        let (bytes, closed) = drain(&mut extra).await;
        assert!(closed && bytes == 0);
        refused += 1;
    }
    assert_eq!(refused, 20);
    // Another address is unaffected, and the flood's own connections still work.
    admin(b.sasl).await;
    let mut first = flood.remove(0);
    let frame = encode_request(ApiKey::ApiVersions, 3, 1, "x", &ApiVersionsRequest::default().into()).unwrap();
    first.write_all(&frame).await.unwrap();
    let mut len = [0u8; 4];
    tokio::time::timeout(Duration::from_secs(5), first.read_exact(&mut len)).await.unwrap().unwrap();

    let cwd = tempfile::tempdir().unwrap();
    let env = [("KTB_LISTENERS", "SASL_PLAINTEXT://127.0.0.1:0"), ("KTB_ADMIN_PASSWORD", PASSWORD)];
    let p = KtbProcess::start_in_shell(cwd.path(), "ulimit -n 256", &env);
    let line = p.wait_for_log("connection limits").expect("logged at startup");
    assert!(line.contains("max_connections=192"), "{line}");
}

/// T-LIMIT-6: 32 clients hammering failing PLAIN logins do not slow a SCRAM login plus
/// Metadata on another connection beyond a small multiple of its quiet latency, and a
/// token's first login (a key derivation of its own) still succeeds; the flood itself is
/// refused (58).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t_limit_6_plain_flood_leaves_scram_logins_their_latency() {
    let cwd = tempfile::tempdir().unwrap();
    let b = start(cwd.path(), &[("KTB_SASL_ENABLED_MECHANISMS", "SCRAM-SHA-256,SCRAM-SHA-512,PLAIN")]);
    let addr = b.sasl;
    let legit = || async move {
        let mut out = Vec::new();
        for _ in 0..30 {
            let t = Instant::now();
            let mut c = admin(addr).await;
            c.call(ApiKey::Metadata, 12, MetadataRequest::default().with_topics(Some(vec![])).into()).await;
            out.push(t.elapsed());
        }
        median(out)
    };
    let quiet = legit().await;
    let mut a = admin(addr).await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut flood = Vec::new();
    for i in 0..32 {
        let stop = stop.clone();
        flood.push(tokio::spawn(async move {
            let mut failed = 0u32;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) && failed < 2_000 {
                let mut c = TestClient::connect(addr).await;
                c.handshake(1, "PLAIN").await;
                let r = c.authenticate(2, format!("\0user{i}\0wrong-password").as_bytes()).await;
                assert_eq!(r.error_code, error_code::SASL_AUTHENTICATION_FAILED);
                failed += 1;
            }
            failed
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let loaded = legit().await;
    // A token's first login needs a derivation too; token logins have their own queue
    // and go first, so the PLAIN flood cannot refuse it.
    let t = create(&mut a, 3, None, &[], -1).await;
    let mut tc = TestClient::connect(addr).await;
    assert_eq!(
        tc.scram_login(ScramMechanism::Sha512, &t.token_id, &token_password(&t.hmac), false).await.error_code,
        0
    );
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut failures = 0;
    for f in flood {
        failures += f.await.unwrap();
    }
    println!(
        "PLAIN flood of {failures} failed logins: SCRAM login + Metadata median {quiet:?} quiet, {loaded:?} under flood"
    );
    assert!(failures >= 32, "the flood ran: {failures} failed logins");
    assert!(loaded < quiet * 5 + Duration::from_millis(50), "{quiet:?} -> {loaded:?}");
}

/// T-LIMIT-7: `ktb token describe` against a server whose ApiVersions answer announces
/// 2^31−1 entries (and one whose ApiVersions v0 refusal does) exits 3 with an error,
/// instead of aborting on the allocation the codec would attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t_limit_7_client_survives_a_hostile_server() {
    for announced_at in [3i16, 0] {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let server = tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap();
            let mut len = [0u8; 4];
            sock.read_exact(&mut len).await.unwrap();
            let mut req = vec![0u8; u32::from_be_bytes(len) as usize];
            sock.read_exact(&mut req).await.unwrap();
            let correlation = &req[4..8];
            // Header v0 (correlation id), then error 0 (or 35 for the v0 fallback body)
            // and an api_keys array count of 2^31−1 with nothing after it.
            let mut body = correlation.to_vec();
            match announced_at {
                0 => body.extend_from_slice(&[0, 35, 0x7f, 0xff, 0xff, 0xff]),
                _ => body.extend_from_slice(&[0, 0, 0xff, 0xff, 0xff, 0xff, 0x07]),
            }
            let mut frame = (body.len() as u32).to_be_bytes().to_vec();
            frame.extend_from_slice(&body);
            sock.write_all(&frame).await.unwrap();
            let _ = sock.read(&mut [0u8; 16]).await;
        });
        let out = tokio::task::spawn_blocking(move || {
            std::process::Command::new(common::ktb_bin())
                .args(["token", "describe", "--bootstrap-server", &addr, "--timeout", "5s"])
                .env("KTB_SASL_USERNAME", "a")
                .env("KTB_SASL_PASSWORD", "b")
                .output()
                .unwrap()
        })
        .await
        .unwrap();
        server.abort();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "a malformed answer exits 3: {stderr}");
        assert!(stderr.contains("ApiVersions"), "{stderr}");
    }
}
