//! Master-key rotation (SPEC §9.4, T-ROTATE-3..6) against the `ktb` binary: a keyring
//! made from the generated secret with `ktb secret rotate`, reloaded on SIGHUP and on a
//! changed file, tokens of every key working until their key goes, `ktb secret status`
//! from a running and a stopped broker, and the keyring's startup checks.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;

use common::token_api::{create_ok, describe, expire, ids, renew};
use common::{KtbProcess, TestBroker, TestClient, ktb_bin, token_login};
use kafka_token_broker::clock::SystemClock;
use kafka_token_broker::config::HmacAlgorithm;
use kafka_token_broker::rotation::Status;
use kafka_token_broker::tokens::MasterSecret;
use ktb_protocol::scram::ScramMechanism;

const PASSWORD: &str = "rotate-admin-password";

/// `ktb ARGS` in `cwd`, with no KTB_* variables of this process.
fn ktb(cwd: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(ktb_bin());
    cmd.current_dir(cwd).args(args);
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("KTB_")) {
        cmd.env_remove(k);
    }
    cmd.output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `ktb secret status ARGS --output json`, parsed.
fn status(cwd: &Path, args: &[&str]) -> Status {
    let mut all = vec!["secret", "status", "--output", "json"];
    all.extend_from_slice(args);
    let out = ktb(cwd, &all);
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Live tokens per key id (as shown) in a status.
fn live(s: &Status) -> Vec<(String, bool, Option<usize>)> {
    s.keys.iter().map(|k| (k.key_id.clone(), k.in_keyring, k.live_tokens)).collect()
}

/// Writes `contents` to `path` the way an editor or a config tool does: a new file with
/// `mode`, renamed over the old one.
fn replace_file(path: &Path, contents: &str, mode: u32) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents).unwrap();
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode)).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

async fn admin(addr: std::net::SocketAddr) -> TestClient {
    let mut c = TestClient::connect(addr).await;
    assert_eq!(c.scram_login(ScramMechanism::Sha512, "admin", PASSWORD, false).await.error_code, 0);
    c
}

async fn logs_in(addr: std::net::SocketAddr, id: &str, hmac: &[u8]) -> bool {
    token_login(addr, ScramMechanism::Sha512, id, hmac, true).await.1.error_code == 0
}

/// T-ROTATE-5, T-ROTATE-6: a broker on its generated secret; `ktb secret rotate` moves the
/// secret into a keyring as `default` and adds a key; after a SIGHUP the old token logs
/// in, renews and is listed, new tokens use the new key; removing `default` from the file
/// (no signal: the file changed) refuses the old token at once (login, 62 on Renew and
/// Expire, its session closed, gone from Describe) while the new one works. A keyring
/// readable by others is not loaded. No key is ever logged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t_rotate_5_rotation_without_an_outage() {
    let cwd = tempfile::tempdir().unwrap();
    let env = [
        ("KTB_LISTENERS", "SASL_PLAINTEXT://127.0.0.1:0"),
        ("KTB_ADMIN_PASSWORD", PASSWORD),
        ("KTB_METRICS_LISTENER", "127.0.0.1:0"),
        ("KTB_CONNECTION_FAILED_AUTHENTICATION_DELAY_MS", "0"),
    ];
    let mut p = KtbProcess::start(cwd.path(), &[], &env);
    let addr = p.addr.expect("ktb listens");
    let url = format!("http://{}", p.metrics_addr().expect("metrics listener"));
    let mut c = admin(addr).await;
    let old = create_ok(&mut c, &[]).await;
    let old_id = old.token_id.to_string();

    // Before any rotation: one key, `default`, the generated secret.
    let s = status(cwd.path(), &["--url", &url]);
    assert_eq!(s.active_key.as_deref(), Some("default"));
    assert_eq!(live(&s), [("default".to_string(), true, Some(1))]);

    let out = ktb(cwd.path(), &["secret", "rotate", "--data-dir", "ktb-data"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let said = text(&out.stdout);
    assert!(said.contains("moved the generated secret into") && said.contains("as key default"), "{said}");
    let keyring = cwd.path().join("ktb-data/delegation-token.keyring");
    assert_eq!(std::fs::metadata(&keyring).unwrap().permissions().mode() & 0o777, 0o600);
    assert!(!cwd.path().join("ktb-data/delegation-token.secret").exists());
    let new_key = text(&std::fs::read(&keyring).unwrap()).lines().last().unwrap().split(' ').next().unwrap().to_owned();
    assert!(said.contains(&format!("added key {new_key}")), "{said}");

    p.signal("HUP");
    assert!(p.wait_for_log("master keys reloaded").is_some(), "{:?}", p.log_lines());
    let (session, r) = token_login(addr, ScramMechanism::Sha512, &old_id, &old.hmac, true).await;
    assert_eq!(r.error_code, 0, "the pre-rotation token logs in after the rotation");
    assert_eq!(renew(&mut c, 2, &old.hmac, 3_600_000).await.error_code, 0, "and renews");
    let new = create_ok(&mut c, &[]).await;
    let new_id = new.token_id.to_string();
    assert!(logs_in(addr, &new_id, &new.hmac).await);
    let s = status(cwd.path(), &["--url", &url]);
    assert_eq!(s.active_key.as_deref(), Some(new_key.as_str()), "new tokens use the new key");
    assert_eq!(live(&s), [("default".to_string(), true, Some(1)), (new_key.clone(), true, Some(1))]);
    let fp = s.keys.iter().find(|k| k.key_id == "default").unwrap().fingerprint.clone().unwrap();
    assert_eq!(fp.len(), 64, "the full fingerprint in JSON");

    // The new token's HMAC is computed with the new key, read from the keyring itself.
    let secrets: Vec<(String, String)> = text(&std::fs::read(&keyring).unwrap())
        .lines()
        .map(|l| l.split_once(' ').map(|(a, b)| (a.to_owned(), b.to_owned())).unwrap())
        .collect();
    let key_of = |id: &str| MasterSecret::new(&secrets.iter().find(|(k, _)| k == id).unwrap().1);
    assert_eq!(key_of(&new_key).token_hmac(HmacAlgorithm::Sha1, &new_id).expose(), &new.hmac[..]);
    assert_eq!(key_of("default").token_hmac(HmacAlgorithm::Sha1, &old_id).expose(), &old.hmac[..]);

    // The old key goes: the file changes, no signal is sent.
    let kept: String = text(&std::fs::read(&keyring).unwrap())
        .lines()
        .filter(|l| !l.starts_with("default "))
        .map(|l| format!("{l}\n"))
        .collect();
    replace_file(&keyring, &kept, 0o600);
    let line = p.wait_for_log("master keys reloaded (the keyring file changed)").expect("reloaded on the change");
    assert!(line.contains("removed"), "{line}");
    assert!(!logs_in(addr, &old_id, &old.hmac).await, "the old key's token is refused");
    assert_eq!(renew(&mut c, 2, &old.hmac, 3_600_000).await.error_code, 62);
    assert_eq!(expire(&mut c, 2, &old.hmac, 0).await.error_code, 62);
    let mut session = session;
    assert!(session.closed_without_response().await, "the old token's session is closed (D-22)");
    assert!(logs_in(addr, &new_id, &new.hmac).await, "the new key's token works");
    assert_eq!(renew(&mut c, 2, &new.hmac, 3_600_000).await.error_code, 0);
    assert_eq!(ids(&describe(&mut c, 3, None).await), std::slice::from_ref(&new_id), "the invalid token is not listed");
    let s = status(cwd.path(), &["--url", &url]);
    assert_eq!(live(&s), [(new_key.clone(), true, Some(1)), ("default".to_string(), false, Some(1))]);
    let human = ktb(cwd.path(), &["secret", "status", "--url", &url]);
    let table = text(&human.stdout);
    assert!(table.starts_with("KEY ID") && table.contains("keys not in the keyring"), "{table}");

    // A keyring others can read is not loaded; the keys in force stay.
    std::fs::set_permissions(&keyring, std::fs::Permissions::from_mode(0o644)).unwrap();
    let refused = p.wait_for_log("the keyring was not reloaded").expect("the refusal is logged");
    assert!(refused.contains("chmod 600"), "{refused}");
    assert!(logs_in(addr, &new_id, &new.hmac).await);
    std::fs::set_permissions(&keyring, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(expire(&mut c, 2, &new.hmac, 60_000).await.error_code, 0, "and expires");

    // From the stopped broker's files: the same keys and counts.
    p.signal("TERM");
    assert_eq!(p.wait_exit(), Some(0));
    let s = status(cwd.path(), &["--data-dir", "ktb-data"]);
    assert_eq!(s.active_key.as_deref(), Some(new_key.as_str()));
    assert_eq!(live(&s), [(new_key.clone(), true, Some(1)), ("default".to_string(), false, Some(1))]);

    let log = p.log_lines().join("\n");
    for (_, secret) in &secrets {
        assert!(!log.contains(secret.as_str()), "a key appeared in the log");
    }
    assert!(log.contains(&format!("key_ids={new_key}")), "the log names key ids");
}

/// T-ROTATE-3: stores written before keyrings (tokens recorded with the single secret)
/// keep working once that secret is the keyring's `default`; new tokens then use the
/// keyring's last key.
#[tokio::test]
async fn t_rotate_3_earlier_tokens_read_as_default() {
    let clock = Arc::new(SystemClock);
    let b = TestBroker::start_with(
        &[("listeners", "SASL_PLAINTEXT://127.0.0.1:0"), ("delegation.token.secret.key", "the-one-secret")],
        clock.clone(),
    )
    .await;
    let mut c = admin_in_process(b.addr).await;
    let old = create_ok(&mut c, &[]).await;
    drop(c);
    let (done, dir) = b.shutdown().await;
    done.unwrap();

    let keyring = dir.path().join("data/delegation-token.keyring");
    replace_file(&keyring, "default the-one-secret\nk2 the-second-secret\n", 0o600);
    let b = TestBroker::start_in(dir, &[("listeners", "SASL_PLAINTEXT://127.0.0.1:0")], clock).await;
    let mut c = admin_in_process(b.addr).await;
    assert!(logs_in(b.addr, &old.token_id.to_string(), &old.hmac).await);
    assert_eq!(renew(&mut c, 2, &old.hmac, 60_000).await.error_code, 0);
    let new = create_ok(&mut c, &[]).await;
    assert_eq!(
        MasterSecret::new("the-second-secret").token_hmac(HmacAlgorithm::Sha1, &new.token_id.to_string()).expose(),
        &new.hmac[..],
        "new tokens use the last key"
    );
    assert_eq!(ids(&describe(&mut c, 3, None).await).len(), 2);
}

async fn admin_in_process(addr: std::net::SocketAddr) -> TestClient {
    let mut c = TestClient::connect(addr).await;
    assert_eq!(c.scram_login(ScramMechanism::Sha512, "admin", common::ADMIN_PASSWORD, false).await.error_code, 0);
    c
}

/// T-ROTATE-3: the keyring is refused at startup (exit 2, the reason in the log) when it
/// is readable by others, missing, or set beside `delegation.token.secret.key`, and a
/// keyring in the data dir beside a configured secret is refused too.
#[test]
fn t_rotate_3_keyring_startup_checks() {
    let cwd = tempfile::tempdir().unwrap();
    let keyring = cwd.path().join("keyring");
    let file = keyring.display().to_string();
    let base = [("KTB_LISTENERS", "SASL_PLAINTEXT://127.0.0.1:0"), ("KTB_ADMIN_PASSWORD", PASSWORD)];
    let refused = |extra: &[(&str, &str)], want: &str| {
        let mut env = base.to_vec();
        env.extend_from_slice(extra);
        let mut p = KtbProcess::start(cwd.path(), &[], &env);
        assert_eq!(p.wait_exit(), Some(2), "{want}: {:?}", p.log_lines());
        assert!(p.log_lines().iter().any(|l| l.contains(want)), "{want}: {:?}", p.log_lines());
    };
    refused(&[("KTB_DELEGATION_TOKEN_SECRET_KEYRING_FILE", &file)], "does not exist");
    replace_file(&keyring, "k1 keyring-secret-one\n", 0o644);
    refused(&[("KTB_DELEGATION_TOKEN_SECRET_KEYRING_FILE", &file)], "chmod 600");
    replace_file(&keyring, "k1 keyring-secret-one\n", 0o600);
    refused(
        &[("KTB_DELEGATION_TOKEN_SECRET_KEYRING_FILE", &file), ("KTB_DELEGATION_TOKEN_SECRET_KEY", "s")],
        "use one or the other",
    );
    std::fs::create_dir_all(cwd.path().join("ktb-data")).unwrap();
    replace_file(&cwd.path().join("ktb-data/delegation-token.keyring"), "k1 keyring-secret-one\n", 0o600);
    refused(&[("KTB_DELEGATION_TOKEN_SECRET_KEY", "s")], "use one or the other");

    // The keyring file named outright serves.
    let p = KtbProcess::start(
        cwd.path(),
        &[],
        &[base[0], base[1], ("KTB_DELEGATION_TOKEN_SECRET_KEYRING_FILE", &file), ("KTB_DATA_DIR", "other-data")],
    );
    assert!(p.addr.is_some(), "{:?}", p.log_lines());
    assert!(p.log_lines().iter().any(|l| l.contains("master keys loaded") && l.contains("key_ids=k1")));
    assert!(!p.log_lines().iter().any(|l| l.contains("keyring-secret-one")));
}
