//! Tokens against the `ktb` binary: durability under `kill -9` and what the log says.

mod common;

use common::token_api::{create, describe, expire, ids, renew};
use common::{KtbProcess, TestClient, hex, token_login, token_password};
use ktb_protocol::scram::ScramMechanism;

const PASSWORD: &str = "token-process-admin";

fn start(cwd: &std::path::Path, extra: &[(&str, &str)]) -> KtbProcess {
    let mut env = vec![("KTB_LISTENERS", "SASL_PLAINTEXT://127.0.0.1:0"), ("KTB_ADMIN_PASSWORD", PASSWORD)];
    env.extend_from_slice(extra);
    let p = KtbProcess::start(cwd, &[], &env);
    assert!(p.addr.is_some(), "ktb listens: {:?}", p.log_lines());
    p
}

async fn admin(p: &KtbProcess) -> TestClient {
    let mut c = TestClient::connect(p.addr.unwrap()).await;
    assert_eq!(c.scram_login(ScramMechanism::Sha512, "admin", PASSWORD, false).await.error_code, 0);
    c
}

/// T-PERSIST-1, T-CREATE-6, T-EXPIRE-4: every acknowledged Create, Renew and Expire(−1)
/// survives SIGKILL right after its response: after a restart Describe shows the same
/// details and each created token logs in. Three kills in a row.
#[tokio::test]
async fn t_persist_1_acknowledged_changes_survive_kill_9() {
    let cwd = tempfile::tempdir().unwrap();
    for round in 0..3 {
        let mut p = start(cwd.path(), &[]);
        let mut c = admin(&p).await;
        let before = ids(&describe(&mut c, 3, None).await);
        let mut created = Vec::new();
        for _ in 0..5 {
            let t = create(&mut c, 3, Some(("User", "alice")), &[("User", "admin")], -1).await;
            assert_eq!(t.error_code, 0);
            created.push(t);
        }
        let renewed = renew(&mut c, 2, &created[0].hmac, 60_000).await;
        assert_eq!(renewed.error_code, 0);
        assert_eq!(expire(&mut c, 2, &created[1].hmac, -1).await.error_code, 0);
        let expected = describe(&mut c, 3, None).await;
        p.child.kill().unwrap(); // SIGKILL, no chance to flush
        p.child.wait().unwrap();

        let p = start(cwd.path(), &[]);
        let mut c = admin(&p).await;
        let after = describe(&mut c, 3, None).await;
        assert_eq!(after, expected, "round {round}: identical details after kill -9");
        assert_eq!(after.tokens.len(), before.len() + 4);
        let first = after.tokens.iter().find(|t| t.token_id == created[0].token_id).unwrap();
        assert_eq!(first.expiry_timestamp, renewed.expiry_timestamp_ms, "the renewal survived");
        assert!(!ids(&after).contains(&created[1].token_id.to_string()), "the deletion survived");
        for t in created.iter().filter(|t| t.token_id != created[1].token_id) {
            let (_, r) = token_login(p.addr.unwrap(), ScramMechanism::Sha256, &t.token_id, &t.hmac, false).await;
            assert_eq!(r.error_code, 0, "round {round}: {} logs in", t.token_id);
        }
    }
}

/// T-LOG-1, T-LOG-2, T-TOKEN-1: token events are logged at INFO with token id and owner
/// (created, renewed, expired, swept, failed login); no HMAC appears in the log or in the
/// data directory in any form.
#[tokio::test]
async fn t_log_2_token_events_are_logged_without_hmacs() {
    let cwd = tempfile::tempdir().unwrap();
    let p = start(cwd.path(), &[("KTB_DELEGATION_TOKEN_EXPIRY_CHECK_INTERVAL_MS", "100")]);
    let addr = p.addr.unwrap();
    let mut c = admin(&p).await;
    let kept = create(&mut c, 3, Some(("User", "alice")), &[], -1).await;
    let created = p.wait_for_log("token created").unwrap();
    for needle in [" INFO ", &format!("token_id={}", kept.token_id), "owner=User:alice", "requester=User:admin"] {
        assert!(created.contains(needle), "{needle} in {created}");
    }
    assert_eq!(
        renew(&mut c, 2, &kept.hmac, -1).await.error_code,
        ktb_protocol::error_code::DELEGATION_TOKEN_OWNER_MISMATCH,
        "admin is not a renewer"
    );
    let own = create(&mut c, 3, None, &[], -1).await;
    renew(&mut c, 2, &own.hmac, 10_000).await;
    let renewed = p.wait_for_log("token renewed").unwrap();
    assert!(renewed.contains(&format!("token_id={}", own.token_id)) && renewed.contains("owner=User:admin"));
    assert_eq!(token_login(addr, ScramMechanism::Sha512, &own.token_id, &own.hmac, false).await.1.error_code, 0);
    let mut wrong = own.hmac.to_vec();
    wrong[0] ^= 1;
    assert_eq!(token_login(addr, ScramMechanism::Sha512, &own.token_id, &wrong, false).await.1.error_code, 58);
    let failed = p.wait_for_log("authentication failed").unwrap();
    assert!(failed.contains(&format!("token_id={}", own.token_id)) && failed.contains("owner=User:admin"), "{failed}");
    expire(&mut c, 2, &own.hmac, -1).await;
    let expired = p.wait_for_log("token expired and deleted").unwrap();
    assert!(expired.contains(&format!("token_id={}", own.token_id)));
    let short = create(&mut c, 3, None, &[], 1).await;
    let swept = p.wait_for_log("token swept").expect("the sweep runs every 100 ms");
    assert!(swept.contains(&format!("token_id={}", short.token_id)), "{swept}");

    let lines = p.log_lines().join("\n");
    let files = common::files_under(&cwd.path().join("ktb-data"));
    for t in [&kept, &own, &short] {
        for needle in [token_password(&t.hmac), hex(&t.hmac)] {
            assert!(!lines.contains(&needle), "an HMAC in the log");
        }
        for (path, bytes) in &files {
            assert!(!common::contains(bytes, &t.hmac), "an HMAC in {}", path.display());
            assert!(!common::contains(bytes, token_password(&t.hmac).as_bytes()), "in {}", path.display());
        }
    }
}
