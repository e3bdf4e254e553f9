//! Operations against the `ktb` binary (SPEC §9.5): the metrics listener checked with the
//! Prometheus project's own `promtool` and scraped by a real `prometheus` server, the
//! health and readiness probes, and the audit log read line by line.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::token_api::{create, describe, expire, renew};
use common::{KtbProcess, TestClient, add_user, token_login, token_password};
use kafka_token_broker::cli::health;
use ktb_protocol::scram::ScramMechanism;

const PASSWORD: &str = "ops-admin-password";
const SECRET: &str = "ops-master-secret-never-logged";

/// `ktb serve` on loopback with the metrics listener on an ephemeral port; returns the
/// process and the metrics listener's address.
fn start(cwd: &Path, extra: &[(&str, &str)]) -> (KtbProcess, SocketAddr) {
    let mut env = vec![
        ("KTB_LISTENERS", "SASL_PLAINTEXT://127.0.0.1:0"),
        ("KTB_ADMIN_PASSWORD", PASSWORD),
        ("KTB_METRICS_LISTENER", "http://127.0.0.1:0"),
        ("KTB_DELEGATION_TOKEN_SECRET_KEY", SECRET),
        ("KTB_CONNECTION_FAILED_AUTHENTICATION_DELAY_MS", "0"),
    ];
    env.extend_from_slice(extra);
    let p = KtbProcess::start(cwd, &[], &env);
    assert!(p.addr.is_some(), "ktb listens: {:?}", p.log_lines());
    let addr = p.metrics_addr().expect("the metrics listener is announced");
    (p, addr)
}

async fn admin(p: &KtbProcess) -> TestClient {
    let mut c = TestClient::connect(p.addr.unwrap()).await;
    assert_eq!(c.scram_login(ScramMechanism::Sha512, "admin", PASSWORD, false).await.error_code, 0);
    c
}

async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    health::get(&format!("http://{addr}{path}"), Duration::from_secs(5)).await.unwrap()
}

/// The exposition text as series (name and labels) → value.
fn series(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_owned(), v.parse().ok()?))
        })
        .collect()
}

/// The sum of every series of metric `name` whose labels include all of `labels`.
fn sum(s: &BTreeMap<String, f64>, name: &str, labels: &[&str]) -> f64 {
    s.iter()
        .filter(|(k, _)| {
            let (n, rest) = k.split_once('{').unwrap_or((k, ""));
            n == name && labels.iter().all(|l| rest.contains(l))
        })
        .map(|(_, v)| v)
        .sum()
}

/// `promtool check metrics` on `text`: its exit status and what it printed.
fn promtool_check(text: &str) -> (bool, String) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is installed (Debian package prometheus; tests/run.sh installs it)");
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

/// One raw HTTP/1.1 exchange, for what the ktb client does not send.
fn raw_http(addr: SocketAddr, request: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

/// T-LIFE-3, T-OPS-1: every series moves as a client creates, renews, expires and
/// describes tokens, logs in (users and tokens, failing and succeeding, re-authenticating)
/// and tokens are swept; the scrape passes `promtool check metrics`; the probes answer.
#[tokio::test]
async fn t_ops_1_every_series_moves_and_passes_promtool() {
    let cwd = tempfile::tempdir().unwrap();
    let (p, m) = start(
        cwd.path(),
        &[("KTB_DELEGATION_TOKEN_EXPIRY_CHECK_INTERVAL_MS", "300"), ("KTB_CONNECTIONS_MAX_REAUTH_MS", "60000")],
    );
    let (status, before) = get(m, "/metrics").await;
    assert_eq!(status, 200);
    let before = series(&before);

    let mut c = admin(&p).await;
    let t = create(&mut c, 3, None, &[], -1).await;
    assert_eq!(t.error_code, 0);
    assert_eq!(renew(&mut c, 2, &t.hmac, 60_000).await.error_code, 0);
    assert_eq!(renew(&mut c, 2, b"not an hmac", 60_000).await.error_code, 62);
    assert_eq!(describe(&mut c, 3, None).await.error_code, 0);
    // A token of one second, which the sweeper deletes.
    let short = create(&mut c, 3, None, &[], 1_000).await;
    assert_eq!(short.error_code, 0);
    let doomed = create(&mut c, 3, None, &[], -1).await;
    assert_eq!(expire(&mut c, 2, &doomed.hmac, -1).await.error_code, 0);
    // Logins: a token (implicit), a wrong password, a re-authentication.
    let (_tc, r) = token_login(p.addr.unwrap(), ScramMechanism::Sha256, &t.token_id, &t.hmac, false).await;
    assert_eq!(r.error_code, 0);
    let mut bad = TestClient::connect(p.addr.unwrap()).await;
    assert_eq!(bad.scram_login(ScramMechanism::Sha256, "admin", "wrong", false).await.error_code, 58);
    assert_eq!(c.scram_login(ScramMechanism::Sha512, "admin", PASSWORD, false).await.error_code, 0);
    // Wait for the sweep of the short token.
    let deadline = Instant::now() + Duration::from_secs(10);
    let after = loop {
        let (_, text) = get(m, "/metrics").await;
        let s = series(&text);
        if sum(&s, "ktb_sweep_deleted_total", &[]) >= 1.0 || Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let now = series(&after);

    let moved = |name: &str, labels: &[&str]| sum(&now, name, labels) > sum(&before, name, labels);
    assert!(sum(&now, "ktb_connections_active", &[]) >= 2.0, "the admin and token connections are open");
    for (name, labels) in [
        ("ktb_connections_total", &[][..]),
        (
            "ktb_sasl_authentications_total",
            &[r#"mechanism="SCRAM-SHA-512""#, r#"token="false""#, r#"result="success""#],
        ),
        ("ktb_sasl_authentications_total", &[r#"mechanism="SCRAM-SHA-256""#, r#"token="true""#, r#"result="success""#]),
        ("ktb_sasl_authentications_total", &[r#"mechanism="SCRAM-SHA-256""#, r#"result="failure""#]),
        ("ktb_reauthentications_total", &[r#"result="success""#]),
        ("ktb_requests_total", &[r#"api="CreateDelegationToken""#, r#"version="3""#, r#"error_code="0""#]),
        ("ktb_requests_total", &[r#"api="RenewDelegationToken""#, r#"error_code="62""#]),
        ("ktb_requests_total", &[r#"api="SaslAuthenticate""#, r#"error_code="58""#]),
        ("ktb_request_duration_seconds_count", &[r#"api="CreateDelegationToken""#]),
        ("ktb_request_duration_seconds_bucket", &[r#"api="DescribeDelegationToken""#, r#"le="+Inf""#]),
        ("ktb_token_operations_total", &[r#"op="create""#, r#"error_code="0""#]),
        ("ktb_token_operations_total", &[r#"op="renew""#, r#"error_code="0""#]),
        ("ktb_token_operations_total", &[r#"op="renew""#, r#"error_code="62""#]),
        ("ktb_token_operations_total", &[r#"op="expire""#, r#"error_code="0""#]),
        ("ktb_token_operations_total", &[r#"op="describe""#, r#"error_code="0""#]),
        ("ktb_sweep_deleted_total", &[]),
        ("ktb_store_commit_duration_seconds_count", &[]),
    ] {
        assert!(moved(name, labels), "{name}{labels:?} moved:\n{after}");
    }
    assert_eq!(sum(&now, "ktb_tokens", &[]), 1.0, "one live token left:\n{after}");
    assert_eq!(sum(&now, "ktb_cluster_brokers", &[]), 1.0);
    assert!(!after.contains("ktb_etcd_up"), "no etcd series on sled");
    assert_eq!(sum(&now, "ktb_build_info", &[&format!(r#"version="{}""#, env!("CARGO_PKG_VERSION"))]), 1.0);
    // Bounded labels: no user name, token id or address anywhere in the scrape.
    for secretish in ["admin", t.token_id.as_str(), "127.0.0.1", PASSWORD, SECRET, &token_password(&t.hmac)] {
        assert!(!after.contains(secretish), "{secretish:?} is not in the scrape");
    }

    let (ok, out) = promtool_check(&after);
    assert!(ok, "promtool check metrics:\n{out}");

    assert_eq!(get(m, "/healthz").await, (200, "ok\n".to_owned()));
    assert_eq!(get(m, "/readyz").await, (200, "ready\n".to_owned()));
    assert_eq!(get(m, "/nothing").await.0, 404);
    let post = raw_http(m, "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    assert!(post.starts_with("HTTP/1.1 405"), "{post}");
    // The container health check's client: exit 0 when ready, 3 when nothing answers.
    let ktb = common::ktb_bin();
    let status = Command::new(&ktb).args(["health", "--url", &format!("http://{m}/readyz")]).status().unwrap();
    assert_eq!(status.code(), Some(0));
    let free = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let status = Command::new(&ktb).args(["health", "--url", &format!("http://{free}/readyz")]).status().unwrap();
    assert_eq!(status.code(), Some(3));
}

/// One GET over a connection from `source`, a loopback address of the test's choosing.
async fn get_from(source: &str, to: SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    let mut s = socket.connect(to).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// T-OPS-1 (§9.1 applied to the metrics listener): one address that opens connections and
/// never finishes a request head gets a few slots and no more (the rest are closed at
/// once); another client is still answered meanwhile; a huge header is refused.
#[tokio::test]
async fn t_ops_1_metrics_listener_is_bounded() {
    let cwd = tempfile::tempdir().unwrap();
    let (_p, m) = start(cwd.path(), &[]);
    let mut held = Vec::new();
    let mut closed = 0;
    for _ in 0..64 {
        let mut s = TcpStream::connect(m).unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nX-Slow: ").unwrap();
        s.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
        let mut b = [0u8; 1];
        match s.read(&mut b) {
            Ok(0) => closed += 1,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => closed += 1,
            _ => held.push(s),
        }
    }
    assert!(held.len() <= 4, "one address holds at most 4 connections ({} held)", held.len());
    assert_eq!(closed + held.len(), 64);
    // Another client (another loopback address) is served at once meanwhile.
    let started = Instant::now();
    let answer = get_from("127.0.0.2", m, "/healthz").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(2));
    // Once the head deadline passes, the slow address's slots are free again.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(get(m, "/healthz").await.0, 200);
    drop(held);
    let huge = format!("GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "a".repeat(1 << 20));
    let mut s = TcpStream::connect(m).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = s.write_all(huge.as_bytes());
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    assert!(out.is_empty() || out.starts_with("HTTP/1.1 431"), "{}", &out[..out.len().min(200)]);
    assert_eq!(get(m, "/healthz").await.0, 200);
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Kills the Prometheus server when the test ends.
struct Prometheus(std::process::Child);

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The value of instant query `q` on the Prometheus at `addr`, if it has one series.
async fn query(addr: SocketAddr, q: &str) -> Option<f64> {
    let encoded: String = q
        .bytes()
        .map(|b| if b.is_ascii_alphanumeric() || b == b'_' { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect();
    let (status, body) =
        health::get(&format!("http://{addr}/api/v1/query?query={encoded}"), Duration::from_secs(5)).await.ok()?;
    if status != 200 {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    let result = v["data"]["result"].as_array()?;
    let [one] = result.as_slice() else { return None };
    one["value"][1].as_str()?.parse().ok()
}

/// T-OPS-1: a real Prometheus server scrapes ktb; its HTTP API then answers for
/// `ktb_tokens` and `ktb_requests_total` as the token traffic left them.
#[tokio::test]
async fn t_ops_1_a_real_prometheus_scrapes_ktb() {
    let cwd = tempfile::tempdir().unwrap();
    let (p, m) = start(cwd.path(), &[]);
    let mut c = admin(&p).await;
    for _ in 0..3 {
        assert_eq!(create(&mut c, 3, None, &[], -1).await.error_code, 0);
    }
    let prom_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let config = cwd.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: ktb\n    \
             static_configs:\n      - targets: ['{m}']\n"
        ),
    )
    .unwrap();
    let log = std::fs::File::create(cwd.path().join("prometheus.log")).unwrap();
    let _prom = Prometheus(
        Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", cwd.path().join("tsdb").display()))
            .arg(format!("--web.listen-address={prom_addr}"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("prometheus is installed (Debian package prometheus; tests/run.sh installs it)"),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let q = r#"sum(ktb_requests_total{api="CreateDelegationToken",error_code="0"})"#;
    let (tokens, creates) = loop {
        let (tokens, creates) = (query(prom_addr, "ktb_tokens").await, query(prom_addr, q).await);
        if (tokens == Some(3.0) && creates == Some(3.0)) || Instant::now() > deadline {
            break (tokens, creates);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let prom_log = std::fs::read_to_string(cwd.path().join("prometheus.log")).unwrap_or_default();
    assert_eq!(tokens, Some(3.0), "Prometheus has ktb_tokens = 3; its log:\n{prom_log}");
    assert_eq!(creates, Some(3.0), "and three successful Creates in ktb_requests_total");
    assert_eq!(query(prom_addr, r#"up{job="ktb"}"#).await, Some(1.0));
}

/// The audit log's lines, parsed.
fn audit_lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("a JSON line: {e}: {l}")))
        .collect()
}

fn wait_for_event(path: &Path, event: &str, count: usize) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let lines = audit_lines(path);
        if lines.iter().filter(|l| l["event"] == event).count() >= count || Instant::now() > deadline {
            return lines;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// T-OPS-2: every event type is written as one JSON object per line with the fields of
/// §9.7, before the answer; the file is 0600; no HMAC, password or key appears; SIGHUP
/// reopens the file after a rotation; failed logins are limited per address.
#[tokio::test]
async fn t_ops_2_audit_log_has_every_event_and_no_secret() {
    use std::os::unix::fs::PermissionsExt;
    let cwd = tempfile::tempdir().unwrap();
    let path = cwd.path().join("audit.log");
    let path_s = path.display().to_string();
    let (p, _m) =
        start(cwd.path(), &[("KTB_AUDIT_LOG_FILE", &path_s), ("KTB_DELEGATION_TOKEN_EXPIRY_CHECK_INTERVAL_MS", "300")]);
    let addr = p.addr.unwrap();
    let mut c = admin(&p).await;
    add_user(&mut c, "alice", "alice-password-secret").await;
    let t = create(&mut c, 3, Some(("User", "alice")), &[("User", "admin")], -1).await;
    assert_eq!(t.error_code, 0);
    // Written before the answer: the line is there as soon as Create has returned.
    let created = audit_lines(&path);
    let line = created.iter().find(|l| l["event"] == "token_created").expect("token_created before the answer");
    assert_eq!(line["token_id"], t.token_id.as_str());
    assert_eq!(line["owner"], "User:alice");
    assert_eq!(line["requester"], "User:admin");
    assert_eq!(line["principal"], "User:admin");
    assert_eq!(line["listener"], "SASL_PLAINTEXT");
    assert_eq!(line["code"], 0);
    assert!(line["client"].as_str().unwrap().starts_with("127.0.0.1:"));
    let ts = line["ts"].as_str().unwrap();
    assert!(ts.len() == 24 && ts.ends_with('Z') && ts.as_bytes()[10] == b'T' && ts.as_bytes()[19] == b'.', "{ts}");

    assert_eq!(renew(&mut c, 2, &t.hmac, 60_000).await.error_code, 0);
    assert_eq!(expire(&mut c, 2, &t.hmac, 30_000).await.error_code, 0);
    let short = create(&mut c, 3, None, &[], 1_000).await;
    let doomed = create(&mut c, 3, None, &[], -1).await;
    assert_eq!(expire(&mut c, 2, &doomed.hmac, -1).await.error_code, 0);
    // Refused: alice may not renew a token of admin's (63).
    let mut alice = TestClient::connect(addr).await;
    assert_eq!(alice.scram_login(ScramMechanism::Sha256, "alice", "alice-password-secret", false).await.error_code, 0);
    assert_eq!(renew(&mut alice, 2, &short.hmac, 1_000).await.error_code, 63);
    // Failed logins: a wrong password, and a token with a wrong HMAC.
    let mut bad = TestClient::connect(addr).await;
    assert_eq!(bad.scram_login(ScramMechanism::Sha256, "alice", "not-her-password", false).await.error_code, 58);
    let (_, r) = token_login(addr, ScramMechanism::Sha256, &t.token_id, b"wrong hmac", true).await;
    assert_eq!(r.error_code, 58);
    let lines = wait_for_event(&path, "token_swept", 1);

    let events: BTreeSet<&str> = lines.iter().map(|l| l["event"].as_str().unwrap()).collect();
    let expected = ["token_created", "token_renewed", "token_expired", "token_swept", "user_altered", "login_failed"];
    assert_eq!(events, expected.into_iter().collect(), "{lines:#?}");
    for l in &lines {
        for field in ["ts", "event", "token_id", "owner", "requester", "principal", "client", "listener", "code"] {
            assert!(l.get(field).is_some(), "{field} in {l}");
        }
    }
    let find = |event: &str, pred: &dyn Fn(&serde_json::Value) -> bool| {
        lines.iter().find(|l| l["event"] == event && pred(l)).cloned().unwrap_or_else(|| panic!("{event}: {lines:#?}"))
    };
    let renewed = find("token_renewed", &|l| l["code"] == 0);
    assert_eq!((renewed["token_id"].as_str(), renewed["owner"].as_str()), (Some(&*t.token_id), Some("User:alice")));
    let refused = find("token_renewed", &|l| l["code"] == 63);
    assert_eq!(refused["principal"], "User:alice");
    assert_eq!(refused["token_id"], short.token_id.as_str());
    find("token_expired", &|l| l["token_id"] == doomed.token_id.as_str() && l["code"] == 0);
    let swept = find("token_swept", &|l| l["token_id"] == short.token_id.as_str());
    assert!(swept["principal"].is_null() && swept["client"].is_null(), "the sweeper is nobody's request");
    let altered = find("user_altered", &|l| l["user"] == "alice");
    assert_eq!((altered["code"].as_i64(), altered["principal"].as_str()), (Some(0), Some("User:admin")));
    let wrong_password = find("login_failed", &|l| l["user"] == "alice");
    assert_eq!(wrong_password["code"], 58);
    let wrong_hmac = find("login_failed", &|l| l["token_id"] == t.token_id.as_str());
    assert_eq!(wrong_hmac["owner"], "User:alice", "a known token's owner is named");

    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let text = std::fs::read(&path).unwrap();
    let text = String::from_utf8_lossy(&text);
    for tok in [&t, &short, &doomed] {
        assert!(!text.contains(&token_password(&tok.hmac)), "no HMAC (base64)");
        assert!(!text.contains(&common::hex(&tok.hmac)), "no HMAC (hex)");
    }
    for secret in [PASSWORD, SECRET, "alice-password-secret", "not-her-password"] {
        assert!(!text.contains(secret), "{secret:?} is not in the audit log");
    }

    // Log rotation: move the file away, SIGHUP, and new lines go to a new file.
    let rotated = cwd.path().join("audit.log.1");
    std::fs::rename(&path, &rotated).unwrap();
    p.signal("HUP");
    assert!(p.wait_for_log("audit log reopened").is_some(), "{:?}", p.log_lines());
    let again = create(&mut c, 3, None, &[], -1).await;
    let fresh = audit_lines(&path);
    assert_eq!(fresh.len(), 1, "{fresh:?}");
    assert_eq!(fresh[0]["token_id"], again.token_id.as_str());
    assert!(!audit_lines(&rotated).iter().any(|l| l["token_id"] == again.token_id.as_str()));
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);

    // A burst of failed logins from one address, 60 from 12 connections at a time: at most
    // 10 lines a second, the rest counted in `suppressed` lines.
    std::thread::sleep(Duration::from_millis(1100));
    let burst = 60u64;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..12 {
        tasks.push(tokio::spawn(async move {
            for _ in 0..burst / 12 {
                let mut bad = TestClient::connect(addr).await;
                assert_eq!(bad.scram_login(ScramMechanism::Sha256, "mallory", "guess", false).await.error_code, 58);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let seconds = started.elapsed().as_secs() + 1;
    let deadline = Instant::now() + Duration::from_secs(5);
    let (written, suppressed) = loop {
        let lines = audit_lines(&path);
        let written = lines.iter().filter(|l| l["event"] == "login_failed" && l["user"] == "mallory").count() as u64;
        let suppressed: u64 = lines.iter().filter_map(|l| l["suppressed"].as_u64()).sum();
        if written + suppressed >= burst || Instant::now() > deadline {
            break (written, suppressed);
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let dump: Vec<String> =
        audit_lines(&path).iter().filter(|l| l["event"] == "login_failed").map(|l| l.to_string()).collect();
    assert_eq!(written + suppressed, burst, "every failure is written or counted: {dump:#?}");
    assert!(written <= 10 * (seconds + 1), "at most 10 a second: {written} lines in {seconds} s");
    assert!(suppressed > 0);
    drop(p);
}
