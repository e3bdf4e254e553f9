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
