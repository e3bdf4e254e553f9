//! kcat (librdkafka, from Debian) against the `ktb` binary.

use std::process::Command;

use crate::common::KtbProcess;

fn kcat() -> Command {
    let path = std::env::var("KTB_KCAT").unwrap_or_else(|_| "kcat".to_owned());
    let probe = Command::new(&path).arg("-V").output();
    assert!(
        probe.is_ok_and(|o| o.status.success()),
        "kcat is not installed: run tests/run.sh, which installs it (apt-get install kcat)"
    );
    Command::new(path)
}

/// T-META-1, T-META-5, T-APIV-1: `kcat -L` over PLAINTEXT negotiates ApiVersions and lists
/// ktb as the one broker and controller, at its advertised host:port, with no topics.
#[test]
fn kcat_lists_the_broker_over_plaintext() {
    let cwd = tempfile::tempdir().unwrap();
    let p = KtbProcess::start(cwd.path(), &[], &[("KTB_LISTENERS", "PLAINTEXT://127.0.0.1:0"), ("KTB_NODE_ID", "3")]);
    let addr = p.addr.expect("ktb listens");
    let out = kcat().args(["-b", &addr.to_string(), "-L", "-m", "10"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "kcat failed: {stdout}\n{stderr}");
    assert!(stdout.contains(" 1 brokers:"), "{stdout}");
    assert!(stdout.contains(&format!("broker 3 at {addr} (controller)")), "{stdout}");
    assert!(stdout.contains(" 0 topics:"), "{stdout}");
}

/// T-META-2: asking kcat for one topic shows it as unknown, and nothing is created.
#[test]
fn kcat_sees_requested_topics_as_unknown() {
    let cwd = tempfile::tempdir().unwrap();
    let p = KtbProcess::start(cwd.path(), &[], &[("KTB_LISTENERS", "PLAINTEXT://127.0.0.1:0")]);
    let addr = p.addr.expect("ktb listens");
    let out = kcat().args(["-b", &addr.to_string(), "-L", "-t", "orders", "-m", "10"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("topic \"orders\" with 0 partitions: Broker: Unknown topic or partition"), "{stdout}");
}

fn sasl_broker(cwd: &std::path::Path) -> KtbProcess {
    KtbProcess::start(
        cwd,
        &[],
        &[("KTB_LISTENERS", "SASL_PLAINTEXT://127.0.0.1:0"), ("KTB_ADMIN_PASSWORD", "kcat-admin-secret")],
    )
}

fn kcat_scram(addr: &str, mech: &str, user: &str, password: &str) -> std::process::Output {
    kcat()
        .args(["-b", addr, "-L", "-m", "10"])
        .args(["-X", "security.protocol=SASL_PLAINTEXT", "-X", &format!("sasl.mechanisms={mech}")])
        .args(["-X", &format!("sasl.username={user}"), "-X", &format!("sasl.password={password}")])
        .output()
        .unwrap()
}

/// T-SASL-2, T-SCRAM-9, T-SCRAM-12: kcat (librdkafka 2.0.2: SaslAuthenticate v0 and a
/// doubled client nonce) logs in with both SCRAM mechanisms and lists the broker.
#[test]
fn kcat_scram_login_lists_the_broker() {
    let cwd = tempfile::tempdir().unwrap();
    let p = sasl_broker(cwd.path());
    let addr = p.addr.expect("ktb listens").to_string();
    for mech in ["SCRAM-SHA-256", "SCRAM-SHA-512"] {
        let out = kcat_scram(&addr, mech, "admin", "kcat-admin-secret");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{mech}: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
        assert!(stdout.contains(&format!("broker 1 at {addr} (controller)")), "{stdout}");
    }
}

/// T-SASL-8, T-SASL-10: a wrong password makes kcat report a SASL authentication error
/// carrying the broker's generic message, and exit 1.
#[test]
fn kcat_wrong_password_fails() {
    let cwd = tempfile::tempdir().unwrap();
    let p = sasl_broker(cwd.path());
    let addr = p.addr.expect("ktb listens").to_string();
    let out = kcat_scram(&addr, "SCRAM-SHA-512", "admin", "wrong");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("SASL authentication error"), "{stderr}");
    assert!(stderr.contains("invalid credentials with SASL mechanism SCRAM-SHA-512"), "{stderr}");
}

/// T-TLOGIN-5, D-1, T-TLOGIN-4: kcat cannot send `tokenauth=true`, yet logs in with a
/// token id and its base64 HMAC through the implicit token login and lists the broker;
/// after the token is expired (deleted) the same login fails.
#[tokio::test]
async fn kcat_token_login_through_the_implicit_path() {
    use crate::common::token_api::{create, expire};
    use crate::common::{TestClient, token_password};
    let cwd = tempfile::tempdir().unwrap();
    let p = sasl_broker(cwd.path());
    let addr = p.addr.expect("ktb listens");
    let mut admin = TestClient::connect(addr).await;
    let r = admin.scram_login(ktb_protocol::scram::ScramMechanism::Sha512, "admin", "kcat-admin-secret", false).await;
    assert_eq!(r.error_code, 0);
    let t = create(&mut admin, 3, Some(("User", "app")), &[("User", "admin")], -1).await;
    assert_eq!(t.error_code, 0);
    let password = token_password(&t.hmac);
    for mech in ["SCRAM-SHA-256", "SCRAM-SHA-512"] {
        let out = kcat_scram(&addr.to_string(), mech, &t.token_id, &password);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{mech}: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
        assert!(stdout.contains(&format!("broker 1 at {addr} (controller)")), "{stdout}");
    }
    let line = p.wait_for_log("token=true").expect("a token login is logged");
    assert!(line.contains("principal=User:app"), "{line}");
    assert_eq!(expire(&mut admin, 2, &t.hmac, -1).await.error_code, 0);
    let out = kcat_scram(&addr.to_string(), "SCRAM-SHA-256", &t.token_id, &password);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("SASL authentication error"), "{stderr}");
}

/// SPEC §6.1 (SASL_SSL, PEM keystore), T-SCOPE-2: kcat (librdkafka with OpenSSL) lists
/// the broker over SASL_SSL, trusting the test CA, with a user and with a token.
#[tokio::test]
async fn kcat_over_sasl_ssl() {
    use crate::common::token_api::create;
    use crate::common::{TestClient, token_password};
    let cwd = tempfile::tempdir().unwrap();
    let pki = crate::common::pki();
    let ca = cwd.path().join("ca.pem");
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    let p = KtbProcess::start(
        cwd.path(),
        &[],
        &[
            ("KTB_LISTENERS", "SASL_SSL://127.0.0.1:0,SASL_PLAINTEXT://127.0.0.1:0"),
            ("KTB_LISTENER_SECURITY_PROTOCOL_MAP", "SASL_SSL:SASL_SSL,SASL_PLAINTEXT:SASL_PLAINTEXT"),
            ("KTB_ADMIN_PASSWORD", "kcat-admin-secret"),
            ("KTB_SSL_KEYSTORE_CERTIFICATE_CHAIN", &pki.server_chain_pem),
            ("KTB_SSL_KEYSTORE_KEY", &pki.server_key_pem),
        ],
    );
    let tls_addr = p.addr.expect("ktb listens");
    let plain_addr = p
        .wait_for_log("listening on SASL_PLAINTEXT://")
        .and_then(|l| l.split("://").nth(1)?.split_whitespace().next()?.parse::<std::net::SocketAddr>().ok());
    let mut admin = TestClient::connect(plain_addr.expect("second listener")).await;
    assert_eq!(
        admin
            .scram_login(ktb_protocol::scram::ScramMechanism::Sha512, "admin", "kcat-admin-secret", false)
            .await
            .error_code,
        0
    );
    let t = create(&mut admin, 3, None, &[], -1).await;
    let password = token_password(&t.hmac);
    for (user, pw) in [("admin", "kcat-admin-secret"), (t.token_id.as_str(), password.as_str())] {
        let out = kcat()
            .args(["-b", &tls_addr.to_string(), "-L", "-m", "10"])
            .args(["-X", "security.protocol=SASL_SSL", "-X", &format!("ssl.ca.location={}", ca.display())])
            .args(["-X", "sasl.mechanisms=SCRAM-SHA-256", "-X", &format!("sasl.username={user}")])
            .args(["-X", &format!("sasl.password={pw}")])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{user}: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
        assert!(stdout.contains(&format!("broker 1 at {tls_addr} (controller)")), "{stdout}");
    }
}

/// T-CLUSTER-3, T-CLUSTER-4 with librdkafka: on a three-broker cluster over a real etcd,
/// `kcat -L` against broker 1 lists all three brokers, and a token created on broker 1
/// logs in with kcat on broker 2 at once (implicit token login, SPEC D-1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kcat_sees_the_cluster_and_logs_in_on_another_broker() {
    let etcd = crate::common::etcd::EtcdCluster::start(3).await;
    let cwd = tempfile::tempdir().unwrap();
    let procs: Vec<KtbProcess> = (1..=3)
        .map(|n| crate::common::etcd_broker_process(&etcd, cwd.path(), "/kcat/", n, "kcat-cluster-secret"))
        .collect();
    let addrs: Vec<String> = procs.iter().map(|p| p.addr.expect("listening").to_string()).collect();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let out = kcat_scram(&addrs[0], "SCRAM-SHA-512", "admin", crate::common::ADMIN_PASSWORD);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if stdout.contains(" 3 brokers:") {
            assert!(stdout.contains(&format!("broker 1 at {} (controller)", addrs[0])), "{stdout}");
            for (i, a) in addrs.iter().enumerate().skip(1) {
                assert!(stdout.contains(&format!("broker {} at {a}", i + 1)), "{stdout}");
            }
            break;
        }
        assert!(std::time::Instant::now() < deadline, "kcat does not list three brokers: {stdout}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let mut c = crate::common::TestClient::connect(procs[0].addr.unwrap()).await;
    c.login_admin().await;
    let t = crate::common::token_api::create_ok(&mut c, &[]).await;
    let password = crate::common::token_password(&t.hmac);
    let out = kcat_scram(&addrs[1], "SCRAM-SHA-256", &t.token_id, &password);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the token made on broker 1 logs in on broker 2: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(" 3 brokers:"), "{stdout}");
}
