//! The crash test: concurrent creates against the `ktb` binary, `kill -9` in the middle of
//! the storm, restart, and every acknowledged token must be there, identical, and log in
//! (T-PERSIST-1 under load).

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::token_api::describe;
use common::{KtbProcess, TestClient, token_login};
use kafka_protocol::messages::{ApiKey, CreateDelegationTokenRequest, CreateDelegationTokenResponse, ResponseKind};
use ktb_protocol::client::decode_response;
use ktb_protocol::scram::ScramMechanism;

const PASSWORD: &str = "crash-admin";
const KILLS: usize = 5;
const WRITERS: usize = 8;

fn start(cwd: &std::path::Path) -> KtbProcess {
    let p = KtbProcess::start(
        cwd,
        &[],
        &[
            ("KTB_LISTENERS", "SASL_PLAINTEXT://127.0.0.1:0"),
            ("KTB_ADMIN_PASSWORD", PASSWORD),
            // Five storms by one owner can pass D-20's default of 10,000 tokens per owner.
            ("KTB_TOKEN_MAX_PER_OWNER", "2147483647"),
        ],
    );
    assert!(p.addr.is_some(), "ktb restarts: {:?}", p.log_lines());
    p
}

/// One create; `None` once the broker is gone (no panic: the storm ends in a kill).
async fn try_create(c: &mut TestClient) -> Option<CreateDelegationTokenResponse> {
    let req = CreateDelegationTokenRequest::default().with_max_lifetime_ms(-1);
    let frame =
        ktb_protocol::client::encode_request(ApiKey::CreateDelegationToken, 3, 999, "crash", &req.into()).ok()?;
    tokio::io::AsyncWriteExt::write_all(&mut c.stream, &frame).await.ok()?;
    let body: Bytes = c.read_frame().await?;
    match decode_response(ApiKey::CreateDelegationToken, 3, body).ok()? {
        (_, ResponseKind::CreateDelegationToken(r)) if r.error_code == 0 => Some(r),
        _ => None,
    }
}

/// T-PERSIST-1, T-CREATE-6: five `kill -9`s in the middle of concurrent creates lose no
/// acknowledged token: after each restart every token acknowledged so far is described
/// with identical details, and the last 40 acknowledged before the kill log in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t_persist_1_kill_9_mid_storm_loses_no_acknowledged_token() {
    let cwd = tempfile::tempdir().unwrap();
    let acked: Arc<Mutex<Vec<CreateDelegationTokenResponse>>> = Arc::default();
    let mut checked_logins = 0;
    for round in 0..KILLS {
        let mut p = start(cwd.path());
        let addr = p.addr.unwrap();
        let before = acked.lock().unwrap().len();
        let mut writers = Vec::new();
        for _ in 0..WRITERS {
            let acked = acked.clone();
            let mut c = TestClient::connect(addr).await;
            assert_eq!(c.scram_login(ScramMechanism::Sha256, "admin", PASSWORD, false).await.error_code, 0);
            writers.push(tokio::spawn(async move {
                while let Some(r) = try_create(&mut c).await {
                    acked.lock().unwrap().push(r);
                }
            }));
        }
        // Let the storm run until it has acknowledged some tokens, then kill it mid-flight.
        let deadline = Instant::now() + Duration::from_secs(10);
        while acked.lock().unwrap().len() < before + 20 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(3 * round as u64)).await;
        p.child.kill().unwrap(); // SIGKILL
        p.child.wait().unwrap();
        for w in writers {
            let _ = w.await;
        }
        let expected: Vec<CreateDelegationTokenResponse> = acked.lock().unwrap().clone();
        assert!(expected.len() > before, "round {round}: the storm acknowledged creates before the kill");

        let p = start(cwd.path());
        let mut admin = TestClient::connect(p.addr.unwrap()).await;
        assert_eq!(admin.scram_login(ScramMechanism::Sha512, "admin", PASSWORD, false).await.error_code, 0);
        let listed = describe(&mut admin, 3, None).await;
        for t in &expected {
            let d = listed.tokens.iter().find(|d| d.token_id == t.token_id);
            let d = d.unwrap_or_else(|| panic!("round {round}: acknowledged token {} lost", t.token_id));
            assert_eq!(
                (d.issue_timestamp, d.expiry_timestamp, d.max_timestamp, &d.hmac, &d.principal_name),
                (t.issue_timestamp_ms, t.expiry_timestamp_ms, t.max_timestamp_ms, &t.hmac, &t.principal_name),
                "round {round}: identical details"
            );
        }
        // The last tokens acknowledged before the kill, the ones most at risk, log in.
        for t in expected[before..].iter().rev().take(40) {
            let (_, r) = token_login(p.addr.unwrap(), ScramMechanism::Sha256, &t.token_id, &t.hmac, false).await;
            assert_eq!(r.error_code, 0, "round {round}: {} logs in", t.token_id);
            checked_logins += 1;
        }
        drop(p);
    }
    eprintln!(
        "{} acknowledged tokens survived {KILLS} kills; {checked_logins} logins checked",
        acked.lock().unwrap().len()
    );
}
