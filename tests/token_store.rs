//! Tokens on disk: restarts, the sweep, the HMAC index and secret rotation (SPEC §4.10,
//! §4.11, §6.3, §6.5).

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::token_api::{create, create_ok, describe, expire, ids, renew};
use common::{ADMIN_PASSWORD, TestBroker, TestClient, token_login};
use kafka_protocol::messages::DescribeDelegationTokenResponse;
use kafka_token_broker::clock::{Clock, ManualClock};
use ktb_protocol::error_code::*;
use ktb_protocol::scram::ScramMechanism;

const T0: i64 = 1_700_000_000_000;
const HOUR: i64 = 3_600_000;

fn sasl(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
    let mut all =
        vec![("listeners", "SASL_PLAINTEXT://127.0.0.1:0"), ("connection.failed.authentication.delay.ms", "0")];
    all.extend_from_slice(extra);
    all
}

async fn admin(b: &TestBroker) -> TestClient {
    let mut c = b.connect().await;
    let r = c.scram_login(ScramMechanism::Sha512, "admin", ADMIN_PASSWORD, false).await;
    assert_eq!(r.error_code, 0);
    c
}

/// Describes as admin until `done` holds, for at most 5 s of wall time.
async fn describe_until(b: &TestBroker, done: impl Fn(&DescribeDelegationTokenResponse) -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut c = admin(b).await;
    while Instant::now() < deadline {
        if done(&describe(&mut c, 3, None).await) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// T-SWEEP-1, T-SWEEP-2, T-SWEEP-3: an expired token stays listed until the sweep, with
/// Renew and Expire(≥ 0) answering 66 and logins failing; the sweep runs when the
/// injected clock passes the check interval and deletes it; Expire(−1) still works.
#[tokio::test]
async fn t_sweep_1_expired_tokens_are_swept_on_the_clock() {
    let clock = Arc::new(ManualClock::new(T0));
    let b = TestBroker::start_with(&sasl(&[]), clock.clone()).await;
    let mut c = admin(&b).await;
    let short = create(&mut c, 3, None, &[], 10 * 60_000).await;
    let other = create(&mut c, 3, None, &[], 10 * 60_000).await;
    let long = create_ok(&mut c, &[]).await;
    clock.advance(10 * 60_000 + 1);
    // T-SWEEP-2: expired but not yet swept.
    assert_eq!(ids(&describe(&mut c, 3, None).await).len(), 3);
    assert_eq!(renew(&mut c, 2, &short.hmac, -1).await.error_code, DELEGATION_TOKEN_EXPIRED);
    assert_eq!(expire(&mut c, 2, &short.hmac, 1_000).await.error_code, DELEGATION_TOKEN_EXPIRED);
    let (_, r) = token_login(b.addr, ScramMechanism::Sha256, &short.token_id, &short.hmac, true).await;
    assert_eq!(r.error_code, SASL_AUTHENTICATION_FAILED);
    assert_eq!(expire(&mut c, 2, &other.hmac, -1).await.error_code, 0, "−1 deletes an expired token");
    // The sweep comes one check interval (1 h by default) after start.
    clock.advance(HOUR);
    let long_id = long.token_id.to_string();
    assert!(describe_until(&b, |d| ids(d) == [long_id.clone()]).await, "the sweep removed the expired token");
    assert_eq!(renew(&mut c, 2, &short.hmac, -1).await.error_code, DELEGATION_TOKEN_NOT_FOUND);
    assert_eq!(renew(&mut c, 2, &long.hmac, -1).await.error_code, 0, "live tokens stay");
}

/// T-PERSIST-4, T-INDEX-1, T-SWEEP-1: after a restart tokens keep their details and
/// expiry, Renew finds them by HMAC (the index is rebuilt), they log in; tokens that
/// expired while the broker was down are swept before it serves.
#[tokio::test]
async fn t_persist_4_tokens_survive_restart() {
    let clock = Arc::new(ManualClock::new(T0));
    let b = TestBroker::start_with(&sasl(&[]), clock.clone()).await;
    let mut c = admin(&b).await;
    let kept = create(&mut c, 3, Some(("User", "alice")), &[("User", "bob"), ("User", "admin")], -1).await;
    let short = create(&mut c, 3, None, &[], 60_000).await;
    clock.advance(1_000);
    assert_eq!(renew(&mut c, 2, &kept.hmac, 5 * HOUR).await.error_code, 0);
    let before = describe(&mut c, 3, None).await;
    assert_eq!(before.tokens.len(), 2);
    drop(c);
    let (result, dir) = b.shutdown().await;
    result.unwrap();

    let b = TestBroker::start_in(dir, &sasl(&[]), clock.clone()).await;
    let mut c = admin(&b).await;
    assert_eq!(describe(&mut c, 3, None).await, before, "identical details after a restart");
    // The in-memory principal index is rebuilt: by owner, by renewer, and not by others.
    let kept_id = [kept.token_id.to_string()];
    assert_eq!(ids(&describe(&mut c, 3, Some(&[("User", "alice")])).await), kept_id);
    assert_eq!(ids(&describe(&mut c, 3, Some(&[("User", "bob")])).await), kept_id);
    assert!(ids(&describe(&mut c, 3, Some(&[("User", "carol")])).await).is_empty());
    let b2 = {
        let (result, dir) = b.shutdown().await;
        result.unwrap();
        clock.advance(60_000);
        TestBroker::start_in(dir, &sasl(&[]), clock.clone()).await
    };
    let mut c = admin(&b2).await;
    assert_eq!(ids(&describe(&mut c, 3, None).await), [kept.token_id.to_string()], "swept at startup");
    assert_eq!(renew(&mut c, 2, &short.hmac, -1).await.error_code, DELEGATION_TOKEN_NOT_FOUND);
    let r = renew(&mut c, 2, &kept.hmac, HOUR).await;
    assert_eq!((r.error_code, r.expiry_timestamp_ms), (0, clock.now_ms() + HOUR), "found by HMAC");
    for token_auth in [true, false] {
        let (_, r) = token_login(b2.addr, ScramMechanism::Sha512, &kept.token_id, &kept.hmac, token_auth).await;
        assert_eq!(r.error_code, 0);
    }
}

/// T-ROTATE-1: with another secret every HMAC changes: old tokens fail to log in and are
/// not found by their old HMAC, as in Kafka; Describe shows the new HMAC.
#[tokio::test]
async fn t_rotate_1_changing_the_secret_invalidates_hmacs() {
    let clock = Arc::new(ManualClock::new(T0));
    let b = TestBroker::start_with(&sasl(&[("delegation.token.secret.key", "first-secret")]), clock.clone()).await;
    let mut c = admin(&b).await;
    let t = create_ok(&mut c, &[]).await;
    drop(c);
    let (result, dir) = b.shutdown().await;
    result.unwrap();
    let b = TestBroker::start_in(dir, &sasl(&[("delegation.token.secret.key", "second-secret")]), clock).await;
    let mut c = admin(&b).await;
    let (_, r) = token_login(b.addr, ScramMechanism::Sha256, &t.token_id, &t.hmac, true).await;
    assert_eq!(r.error_code, SASL_AUTHENTICATION_FAILED);
    assert_eq!(renew(&mut c, 2, &t.hmac, -1).await.error_code, DELEGATION_TOKEN_NOT_FOUND);
    assert_eq!(expire(&mut c, 2, &t.hmac, -1).await.error_code, DELEGATION_TOKEN_NOT_FOUND);
    let d = describe(&mut c, 3, None).await;
    assert_eq!(ids(&d), [t.token_id.to_string()]);
    assert_ne!(d.tokens[0].hmac, t.hmac);
    let (_, r) = token_login(b.addr, ScramMechanism::Sha256, &t.token_id, &d.tokens[0].hmac, true).await;
    assert_eq!(r.error_code, 0, "the new HMAC works");
}

/// T-TOKEN-1, T-TLOGIN-2: no file in the data directory holds an issued HMAC, in raw,
/// base64 or hex form, after creates, renewals, logins and a clean stop.
#[tokio::test]
async fn t_token_1_no_hmac_on_disk() {
    let b = TestBroker::start_with(&sasl(&[]), Arc::new(kafka_token_broker::clock::SystemClock)).await;
    let mut c = admin(&b).await;
    let mut hmacs = Vec::new();
    for _ in 0..5 {
        let t = create_ok(&mut c, &[]).await;
        renew(&mut c, 2, &t.hmac, 1_000).await;
        for mech in [ScramMechanism::Sha256, ScramMechanism::Sha512] {
            assert_eq!(token_login(b.addr, mech, &t.token_id, &t.hmac, true).await.1.error_code, 0);
        }
        hmacs.push(t.hmac.to_vec());
    }
    drop(c);
    let (result, dir) = b.shutdown().await;
    result.unwrap();
    let files = common::files_under(dir.path());
    assert!(files.len() > 3, "the store has files: {files:?}");
    for (f, bytes) in files {
        for h in &hmacs {
            for needle in [h.clone(), common::token_password(h).into_bytes(), common::hex(h).into_bytes()] {
                assert!(!common::contains(&bytes, &needle), "{} holds an HMAC", f.display());
            }
        }
    }
}
