//! The `ktb serve` process: zero-config start, configuration sources, exit codes and
//! graceful shutdown (T-ZERO-*, T-CFG-*, T-LIFE-*).

mod common;

use std::process::Command;

use common::{KtbProcess, TestClient, ktb_bin};
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, MetadataRequest, ResponseKind};
use ktb_protocol::scram::ScramMechanism;

async fn metadata(addr: std::net::SocketAddr) -> kafka_protocol::messages::MetadataResponse {
    let mut c = TestClient::connect(addr).await;
    match c.call(ApiKey::Metadata, 2, MetadataRequest::default().with_topics(None).into()).await {
        ResponseKind::Metadata(r) => r,
        other => panic!("{other:?}"),
    }
}

/// T-ZERO-1, T-ZERO-4, T-LOG-1: `ktb serve` with no file and no environment listens on
/// SASL_PLAINTEXT://127.0.0.1:9092 with ./ktb-data, creates the super user `admin` and
/// shows its generated password once on stderr, outside the log; the password logs in
/// with both SCRAM mechanisms and appears nowhere in the data directory. A restart shows
/// nothing.
#[tokio::test]
async fn t_zero_1_t_zero_4_zero_config_start() {
    let cwd = tempfile::tempdir().unwrap();
    let mut p = KtbProcess::start(cwd.path(), &[], &[]);
    let addr = p.addr.expect("ktb listens");
    assert_eq!(addr.to_string(), "127.0.0.1:9092");
    assert!(p.wait_for_log("data directory ./ktb-data").is_some());
    let lines = p.log_lines();
    let at = lines.iter().position(|l| l.contains("with this password:")).expect("a password banner");
    let password = lines[at + 2].trim().to_owned();
    assert_eq!(password.len(), 32, "24 random bytes, unpadded URL-safe base64");
    let log_lines: Vec<&String> = lines.iter().filter(|l| l.contains(" INFO ") || l.contains(" WARN ")).collect();
    assert!(!log_lines.is_empty());
    assert!(log_lines.iter().all(|l| !l.contains(&password)), "the password is never in the log");

    for mech in [ScramMechanism::Sha256, ScramMechanism::Sha512] {
        let mut c = TestClient::connect(addr).await;
        let r = c.scram_login(mech, "admin", &password, false).await;
        assert_eq!(r.error_code, 0, "{mech:?}");
        let ResponseKind::Metadata(m) =
            c.call(ApiKey::Metadata, 2, MetadataRequest::default().with_topics(None).into()).await
        else {
            panic!()
        };
        assert_eq!((m.brokers[0].node_id.0, m.brokers[0].host.as_str(), m.brokers[0].port), (1, "127.0.0.1", 9092));
        let meta = std::fs::read_to_string(cwd.path().join("ktb-data/meta.properties")).unwrap();
        assert!(meta.contains(&format!("cluster.id={}", m.cluster_id.unwrap().as_str())));
    }
    p.signal("TERM");
    assert_eq!(p.wait_exit(), Some(0));
    for (path, bytes) in common::files_under(&cwd.path().join("ktb-data")) {
        assert!(!common::contains(&bytes, password.as_bytes()), "password found in {}", path.display());
    }

    let p = KtbProcess::start(cwd.path(), &[], &[]);
    assert!(p.addr.is_some());
    assert!(p.log_lines().iter().all(|l| !l.contains("with this password")), "shown only on the first start");
}

/// T-CFG-2: KTB_LISTENERS and KTB_DATA_DIR set where the broker listens and keeps data;
/// an --override flag beats the environment, which beats the file.
#[tokio::test]
async fn t_cfg_2_environment_and_flags_override_the_file() {
    let cwd = tempfile::tempdir().unwrap();
    std::fs::write(cwd.path().join("server.properties"), "node.id=4\nktb.data.dir=./file-data\n").unwrap();
    let p = KtbProcess::start(
        cwd.path(),
        &["--config", "server.properties", "--override", "node.id=6"],
        &[("KTB_LISTENERS", "PLAINTEXT://127.0.0.1:0"), ("KTB_DATA_DIR", "./scratch-data"), ("KTB_NODE_ID", "5")],
    );
    let addr = p.addr.expect("ktb listens");
    assert!(cwd.path().join("scratch-data/meta.properties").exists());
    assert!(!cwd.path().join("file-data").exists());
    assert_eq!(metadata(addr).await.brokers[0].node_id.0, 6);
}

/// T-CFG-1: an unknown Kafka property is a warning; an unknown ktb.* property or an
/// invalid value stops the broker with exit code 2 and a message naming the property.
#[test]
fn t_cfg_1_unknown_and_invalid_properties() {
    let cwd = tempfile::tempdir().unwrap();
    let env = [("KTB_LISTENERS", "PLAINTEXT://127.0.0.1:0")];
    let p = KtbProcess::start(cwd.path(), &["-o", "num.io.threads=8"], &env);
    assert!(p.addr.is_some());
    let warned = p.log_lines().iter().any(|l| l.contains("WARN") && l.contains("num.io.threads"));
    assert!(warned, "unknown Kafka property is logged at WARN");
    drop(p);

    for (args, needle) in [
        (vec!["-o", "ktb.no.such.thing=1"], "ktb.no.such.thing"),
        (vec!["-o", "connections.max.idle.ms=soon"], "connections.max.idle.ms"),
    ] {
        let out = Command::new(ktb_bin()).arg("serve").args(&args).current_dir(cwd.path()).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(needle), "{stderr}");
    }
}

/// T-CFG-3: --print-config shows each property, its value and source, secrets hidden.
#[test]
fn t_cfg_3_print_config() {
    let cwd = tempfile::tempdir().unwrap();
    let out = Command::new(ktb_bin())
        .args(["serve", "--print-config", "-o", "delegation.token.secret.key=hunter2"])
        .env("KTB_NODE_ID", "9")
        .current_dir(cwd.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("node.id=9    # env"), "{stdout}");
    assert!(stdout.contains("delegation.token.secret.key=[hidden]    # flag"), "{stdout}");
    assert!(stdout.contains("ktb.data.dir=./ktb-data    # default"), "{stdout}");
    assert!(!stdout.contains("hunter2") && !String::from_utf8_lossy(&out.stderr).contains("hunter2"));
    assert!(!cwd.path().join("ktb-data").exists(), "printing the config starts nothing");
}

/// T-LIFE-2, T-ZERO-3, T-ZERO-5, SPEC §6.4: startup errors exit with code 2 — a data dir
/// held by another broker, one readable by others, a node id that does not match the
/// data dir, a port that cannot be bound.
#[test]
fn t_life_2_startup_errors_exit_2() {
    let cwd = tempfile::tempdir().unwrap();
    let env = [("KTB_LISTENERS", "PLAINTEXT://127.0.0.1:0")];
    let first = KtbProcess::start(cwd.path(), &[], &env);
    let addr = first.addr.expect("first broker listens");

    let run = |args: &[&str], env: &[(&str, &str)]| {
        let mut cmd = Command::new(ktb_bin());
        cmd.arg("serve").args(args).current_dir(cwd.path()).envs(env.iter().copied());
        let out = cmd.output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (code, err) = run(&[], &env);
    assert_eq!(code, Some(2));
    assert!(err.contains("in use by another ktb process"), "{err}");

    let port_taken = format!("PLAINTEXT://{addr}");
    let (code, err) = run(&["-o", "ktb.data.dir=./other"], &[("KTB_LISTENERS", port_taken.as_str())]);
    assert_eq!(code, Some(2));
    assert!(err.contains("cannot bind"), "{err}");
    drop(first);

    let (code, err) = run(&["-o", "node.id=2"], &env);
    assert_eq!(code, Some(2));
    assert!(err.contains("node.id=1") && err.contains("node.id=2"), "{err}");

    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(cwd.path().join("ktb-data"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let (code, err) = run(&[], &env);
    assert_eq!(code, Some(2));
    assert!(err.contains("chmod 700"), "{err}");
}

/// T-ZERO-5: the cluster id survives a restart.
#[tokio::test]
async fn t_zero_5_cluster_id_survives_restart() {
    let cwd = tempfile::tempdir().unwrap();
    let env = [("KTB_LISTENERS", "PLAINTEXT://127.0.0.1:0")];
    let mut p = KtbProcess::start(cwd.path(), &[], &env);
    let before = metadata(p.addr.unwrap()).await.cluster_id.unwrap();
    p.signal("TERM");
    assert_eq!(p.wait_exit(), Some(0));
    let p = KtbProcess::start(cwd.path(), &[], &env);
    let after = metadata(p.addr.unwrap()).await.cluster_id.unwrap();
    assert_eq!(before, after);
}

/// T-LIFE-1: SIGTERM and SIGINT stop accepting, close open connections, flush the store
/// and exit 0.
#[tokio::test]
async fn t_life_1_signals_stop_gracefully() {
    for sig in ["TERM", "INT"] {
        let cwd = tempfile::tempdir().unwrap();
        let mut p = KtbProcess::start(cwd.path(), &[], &[("KTB_LISTENERS", "PLAINTEXT://127.0.0.1:0")]);
        let addr = p.addr.unwrap();
        let mut open = TestClient::connect(addr).await;
        let _ = open.call(ApiKey::ApiVersions, 0, ApiVersionsRequest::default().into()).await;
        p.signal(sig);
        assert!(p.wait_for_log("store flushed").is_some(), "SIG{sig}: store flushed");
        assert_eq!(p.wait_exit(), Some(0), "SIG{sig}: exit code");
        assert!(open.closed_without_response().await);
        assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "no longer listening");
    }
}

/// T-LIFE-1: a broker stopped in-process closes its connections and releases its data dir.
#[tokio::test]
async fn t_life_1_in_process_shutdown_releases_the_data_dir() {
    let broker = common::TestBroker::start(&[]).await;
    let mut c = broker.connect().await;
    let _ = c.call(ApiKey::ApiVersions, 0, ApiVersionsRequest::default().into()).await;
    let (result, dir) = broker.shutdown().await;
    result.unwrap();
    assert!(c.closed_without_response().await);
    kafka_token_broker::datadir::DataDir::open(&dir.path().join("data"), 1).expect("the lock is released");
}

/// T-LOG-2: a failed login is logged at INFO with the remote address, the mechanism and
/// the user name as sent, cut to 64 characters, and never the password.
#[tokio::test]
async fn t_log_2_failed_logins_are_logged() {
    let cwd = tempfile::tempdir().unwrap();
    let env = [("KTB_LISTENERS", "SASL_PLAINTEXT://127.0.0.1:0"), ("KTB_ADMIN_PASSWORD", "pw-for-log-test")];
    let p = KtbProcess::start(cwd.path(), &[], &env);
    let addr = p.addr.unwrap();
    let long_name = format!("{}{}", "u".repeat(64), "TAIL");
    let mut c = TestClient::connect(addr).await;
    assert_eq!(c.scram_login(ScramMechanism::Sha256, &long_name, "guess-123", false).await.error_code, 58);
    let line = p.wait_for_log("authentication failed").expect("a log line");
    assert!(line.contains(" INFO "), "{line}");
    assert!(line.contains("SCRAM-SHA-256"), "{line}");
    assert!(line.contains("127.0.0.1:"), "{line}");
    assert!(line.contains(&"u".repeat(64)) && !line.contains("TAIL"), "{line}");
    assert!(p.log_lines().iter().all(|l| !l.contains("guess-123") && !l.contains("pw-for-log-test")));
}

/// T-LIFE-2: settings that cannot be served stop the broker with exit 2 and a message
/// naming the property: etcd without endpoints, a metrics listener whose port is taken.
#[test]
fn unservable_settings_are_startup_errors() {
    let cwd = tempfile::tempdir().unwrap();
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = holder.local_addr().unwrap().to_string();
    for (k, v, needle) in
        [("ktb.metrics.listener", taken.as_str(), "ktb.metrics.listener"), ("ktb.store", "etcd", "etcd")]
    {
        // Under `timeout`: a broker that started anyway fails the test instead of hanging it.
        let out = Command::new("timeout")
            .arg("20")
            .arg(ktb_bin())
            .args(["serve", "-o", &format!("{k}={v}"), "-o", "listeners=SASL_PLAINTEXT://127.0.0.1:0"])
            .env("KTB_ADMIN_PASSWORD", "x")
            .current_dir(cwd.path())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{k}");
        assert!(String::from_utf8_lossy(&out.stderr).contains(needle), "{k}");
    }
    drop(holder);
}
