//! `ktb token refresh` end to end: second-scale token lifetimes on a live broker, with the
//! refreshed librdkafka file read by kcat itself (`kcat -F`).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{KtbProcess, ktb_bin};

/// T-REFRESH-1..4, T-TLOGIN-5: the sidecar renews the token and replaces it before its
/// max lifetime, expiring the old one after the grace period; every version of the file
/// logs kcat in (implicit token login); SIGTERM stops it with exit 0.
#[test]
fn t_refresh_2_live_renewal_and_successor() {
    let cwd = tempfile::tempdir().unwrap();
    let p = KtbProcess::start(
        cwd.path(),
        &[],
        &[
            ("KTB_LISTENERS", "SASL_PLAINTEXT://127.0.0.1:0"),
            ("KTB_ADMIN_PASSWORD", "refresh-admin"),
            ("KTB_DELEGATION_TOKEN_MAX_LIFETIME_MS", "6000"),
            ("KTB_DELEGATION_TOKEN_EXPIRY_TIME_MS", "3000"),
            ("KTB_DELEGATION_TOKEN_EXPIRY_CHECK_INTERVAL_MS", "500"),
        ],
    );
    let addr = p.addr.expect("ktb listens").to_string();
    let out = cwd.path().join("client.conf");
    let state = cwd.path().join("client.conf.state.json");
    let sidecar = Command::new(ktb_bin())
        .args([
            "token",
            "refresh",
            "--out",
            out.to_str().unwrap(),
            "--format",
            "librdkafka",
            "--expire-old",
            "--grace",
            "1s",
        ])
        .env("KTB_BOOTSTRAP_SERVER", &addr)
        .env("KTB_SASL_USERNAME", "admin")
        .env("KTB_SASL_PASSWORD", "refresh-admin")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Killed on drop, so a failed assertion does not leave it retrying forever.
    let mut sidecar = KillOnDrop(sidecar);

    let mut ids: Vec<String> = Vec::new();
    let mut renewals = 0;
    let mut last_change = None;
    let mut logins = 0;
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline && (ids.len() < 2 || renewals < 1) {
        std::thread::sleep(Duration::from_millis(150));
        let (Ok(text), Ok(st)) = (std::fs::read_to_string(&out), std::fs::read_to_string(&state)) else { continue };
        let st: serde_json::Value = serde_json::from_str(&st).unwrap();
        let id = text.lines().find_map(|l| l.strip_prefix("sasl.username=")).expect("a username line").to_owned();
        let changed = st["last_change_ms"].as_i64();
        if ids.last() != Some(&id) {
            ids.push(id.clone());
        } else if changed != last_change && st["token"]["token_id"] == id.as_str() {
            renewals += 1;
        }
        last_change = changed;
        // The file as it is now logs kcat in.
        let kcat = std::env::var("KTB_KCAT").unwrap_or_else(|_| "kcat".to_owned());
        let o = Command::new(kcat).args(["-F", out.to_str().unwrap(), "-b", &addr, "-L", "-m", "5"]).output().unwrap();
        assert!(o.status.success(), "kcat with {id}: {}", String::from_utf8_lossy(&o.stderr));
        logins += 1;
    }
    assert!(ids.len() >= 2, "a successor token was written: {ids:?}");
    assert!(renewals >= 1, "the token was renewed at least once");
    assert!(logins >= 2);
    assert!(p.wait_for_log("token expired and deleted").is_some(), "--expire-old expired the replaced token");
    let ok = Command::new("kill").arg("-TERM").arg(sidecar.0.id().to_string()).status().unwrap();
    assert!(ok.success());
    let status = sidecar.0.wait().unwrap();
    let mut log = String::new();
    std::io::Read::read_to_string(sidecar.0.stderr.as_mut().unwrap(), &mut log).unwrap();
    assert_eq!(status.code(), Some(0), "{log}");
    assert!(log.contains("renewed token") && log.contains("created token") && log.contains("stopping"), "{log}");
    assert!(
        !log.contains(&std::fs::read_to_string(&out).unwrap().lines().last().unwrap().replace("sasl.password=", "")),
        "no HMAC in its log"
    );
}

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
