//! kafka-python (PyPI, installed by tests/run.sh into tests/interop/.venv) against the
//! `ktb` binary.

use std::process::Command;

use crate::common::KtbProcess;

fn python() -> Command {
    let venv = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/.venv/bin/python");
    let probe = Command::new(venv).args(["-c", "import kafka"]).output();
    assert!(
        probe.is_ok_and(|o| o.status.success()),
        "kafka-python is not installed: run tests/run.sh, which installs it into tests/interop/.venv"
    );
    let mut cmd = Command::new(venv);
    cmd.arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/python/kafka_python_client.py"));
    cmd
}

fn run(addr: &str, mech: &str, user: &str, password: &str, action: &str) -> serde_json::Value {
    run_with(addr, mech, user, password, action, &[])
}

pub(crate) fn run_with(
    addr: &str,
    mech: &str,
    user: &str,
    password: &str,
    action: &str,
    extra: &[&str],
) -> serde_json::Value {
    let out = python().args([addr, mech, user, password, action]).args(extra).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "kafka-python: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

fn broker(cwd: &std::path::Path) -> KtbProcess {
    KtbProcess::start(
        cwd,
        &[],
        &[("KTB_LISTENERS", "SASL_PLAINTEXT://127.0.0.1:0"), ("KTB_ADMIN_PASSWORD", "py-admin-secret")],
    )
}

/// T-SASL-2, T-SCRAM-12, T-META-1, T-META-4: kafka-python logs in with SCRAM-SHA-256
/// and SCRAM-SHA-512 and reads the cluster (ApiVersions v4, handshake v1,
/// SaslAuthenticate v2, Metadata, DescribeCluster v1).
#[test]
fn kafka_python_scram_login_and_metadata() {
    let cwd = tempfile::tempdir().unwrap();
    let p = broker(cwd.path());
    let addr = p.addr.expect("ktb listens").to_string();
    let cluster_id = std::fs::read_to_string(cwd.path().join("ktb-data/meta.properties")).unwrap();
    for mech in ["SCRAM-SHA-256", "SCRAM-SHA-512"] {
        let v = run(&addr, mech, "admin", "py-admin-secret", "metadata");
        assert_eq!(v["controller_id"], 1, "{v}");
        assert!(cluster_id.contains(v["cluster_id"].as_str().unwrap()), "{v}");
        let port: u16 = addr.rsplit(':').next().unwrap().parse().unwrap();
        assert_eq!(v["brokers"], serde_json::json!([{"node_id": 1, "host": "127.0.0.1", "port": port}]), "{v}");
        // T-META-3: kafka-python asks for them and decodes 8096 for a super user.
        let ops =
            ["ALTER", "ALTER_CONFIGS", "CLUSTER_ACTION", "CREATE", "DESCRIBE", "DESCRIBE_CONFIGS", "IDEMPOTENT_WRITE"];
        assert_eq!(v["authorized_operations"], serde_json::json!(ops), "{v}");
    }
}

/// T-SASL-8, T-SASL-10: a wrong password fails kafka-python's login (it retries, then
/// gives up), and the broker logs the failure.
#[test]
fn kafka_python_wrong_password_fails() {
    let cwd = tempfile::tempdir().unwrap();
    let p = broker(cwd.path());
    let addr = p.addr.expect("ktb listens").to_string();
    let v = run(&addr, "SCRAM-SHA-512", "admin", "not-the-password", "metadata");
    assert!(v["error"].is_string(), "login must fail: {v}");
    assert!(p.wait_for_log("authentication failed").is_some());
}

/// T-USER-3, T-USER-8: kafka-python's alter_user_scram_credentials (it computes the salted
/// password itself) and describe_user_scram_credentials against ktb; the new user then
/// logs in from kafka-python.
#[test]
fn kafka_python_user_credential_apis() {
    let cwd = tempfile::tempdir().unwrap();
    let p = broker(cwd.path());
    let addr = p.addr.expect("ktb listens").to_string();
    let v = run(&addr, "SCRAM-SHA-512", "admin", "py-admin-secret", "users");
    assert_eq!(v["altered"], serde_json::json!({"py-user": null}), "{v}");
    assert_eq!(v["users"]["py-user"], serde_json::json!([[1, 8192]]), "{v}");
    assert_eq!(v["users"]["admin"], serde_json::json!([[1, 4096], [2, 4096]]), "{v}: D-26");
    let v = run(&addr, "SCRAM-SHA-256", "py-user", "py-password", "metadata");
    assert_eq!(v["controller_id"], 1, "{v}");
    assert_eq!(v["authorized_operations"], serde_json::json!([]), "not a super user: {v}");
}

/// T-TLOGIN-1, T-TLOGIN-4, T-TLOGIN-5, T-TLOGIN-3: kafka-python logs in with a token both
/// through the implicit path (its SCRAM sends no extensions) and with `tokenauth=true`
/// added to its client-first message, as the token's owner (not a super user here); after
/// the token is deleted both logins fail.
#[tokio::test]
async fn kafka_python_token_login_implicit_and_tokenauth() {
    use crate::common::token_api::{create, expire};
    use crate::common::{TestClient, token_password};
    let cwd = tempfile::tempdir().unwrap();
    let p = broker(cwd.path());
    let addr = p.addr.expect("ktb listens");
    let mut admin = TestClient::connect(addr).await;
    let r = admin.scram_login(ktb_protocol::scram::ScramMechanism::Sha512, "admin", "py-admin-secret", false).await;
    assert_eq!(r.error_code, 0);
    let t = create(&mut admin, 3, Some(("User", "py-app")), &[("User", "admin")], -1).await;
    assert_eq!(t.error_code, 0);
    let (addr, password) = (addr.to_string(), token_password(&t.hmac));
    for (mech, extra) in [("SCRAM-SHA-256", &[][..]), ("SCRAM-SHA-512", &["tokenauth"][..])] {
        let v = run_with(&addr, mech, &t.token_id, &password, "metadata", extra);
        assert_eq!(v["controller_id"], 1, "{mech} {extra:?}: {v}");
        assert_eq!(v["authorized_operations"], serde_json::json!([]), "User:py-app is no super user: {v}");
    }
    let logins: Vec<String> = p.log_lines().into_iter().filter(|l| l.contains("token=true")).collect();
    assert!(logins.iter().any(|l| l.contains("principal=User:py-app")), "{logins:?}");
    assert_eq!(expire(&mut admin, 2, &t.hmac, -1).await.error_code, 0);
    for extra in [&[][..], &["tokenauth"][..]] {
        let v = run_with(&addr, "SCRAM-SHA-256", &t.token_id, &password, "metadata", extra);
        assert!(v["error"].is_string(), "an expired token must not log in: {v}");
    }
}
