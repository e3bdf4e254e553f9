//! Logging in with a delegation token (SPEC §3.5, §3.6, §3.9 for tokens).

mod common;

use std::sync::Arc;

use common::token_api::{create, create_ok, renew};
use common::{TestBroker, TestClient, add_user, token_login, token_password};
use kafka_protocol::messages::{ApiKey, DescribeUserScramCredentialsRequest, ResponseKind};
use kafka_token_broker::clock::ManualClock;
use ktb_protocol::error_code::*;
use ktb_protocol::scram::{ScramClient, ScramMechanism};

const T0: i64 = 1_700_000_000_000;
const DAY: i64 = 86_400_000;

async fn setup(extra: &[(&str, &str)]) -> (TestBroker, Arc<ManualClock>, TestClient) {
    let clock = Arc::new(ManualClock::new(T0));
    let b = TestBroker::start_for_tokens(extra, clock.clone()).await;
    let mut admin = b.connect().await;
    admin.login_admin().await;
    add_user(&mut admin, "alice", "alice-pw").await;
    (b, clock, admin)
}

async fn alice(b: &TestBroker) -> TestClient {
    let mut c = b.connect().await;
    assert_eq!(c.scram_login(ScramMechanism::Sha512, "alice", "alice-pw", false).await.error_code, 0);
    c
}

/// True when the connection's principal passes the super-user check.
async fn is_super(c: &mut TestClient) -> bool {
    let req = DescribeUserScramCredentialsRequest::default().with_users(Some(vec![]));
    match c.call(ApiKey::DescribeUserScramCredentials, 0, req.into()).await {
        ResponseKind::DescribeUserScramCredentials(r) => r.error_code == 0,
        other => panic!("{other:?}"),
    }
}

/// T-TLOGIN-1, T-TLOGIN-2, T-TLOGIN-4, T-SCRAM-12, T-REAUTH-1: a token logs in with both
/// SCRAM mechanisms and `tokenauth=true`, with 4096 iterations, as its owner; the session
/// lifetime ends at the token's expiry.
#[tokio::test]
async fn t_tlogin_1_explicit_token_login() {
    let (b, clock, _admin) = setup(&[]).await;
    let mut a = alice(&b).await;
    let t = create_ok(&mut a, &[]).await;
    clock.advance(1_000);
    for mech in [ScramMechanism::Sha256, ScramMechanism::Sha512] {
        let mut c = b.connect().await;
        assert_eq!(c.handshake(1, mech.name()).await.0, 0);
        let client = ScramClient::new(mech, &t.token_id, "tokenclientnonce", true);
        let first = c.authenticate(2, &client.client_first()).await;
        assert_eq!(first.error_code, 0);
        let server_first = String::from_utf8(first.auth_bytes.to_vec()).unwrap();
        assert!(server_first.ends_with(",i=4096"), "T-TLOGIN-2: {server_first}");
        let (sent, last) = client.client_final(&first.auth_bytes, token_password(&t.hmac).as_bytes()).unwrap();
        let fin = c.authenticate(2, &last).await;
        assert_eq!((fin.error_code, fin.session_lifetime_ms), (0, DAY - 1_000), "{mech:?}");
        sent.verify_server_final(&fin.auth_bytes).unwrap();
        assert!(!is_super(&mut c).await, "User:alice, not a super user");
        // A second login hits the cached credential and behaves the same.
        let (_, r) = token_login(b.addr, mech, &t.token_id, &t.hmac, true).await;
        assert_eq!(r.error_code, 0);
    }
    // A super user's token is a super user (T-TLOGIN-4: the principal is the owner's).
    let mut admin = b.connect().await;
    admin.login_admin().await;
    let t = create(&mut admin, 3, Some(("User", "admin")), &[], -1).await;
    let (mut c, r) = token_login(b.addr, ScramMechanism::Sha256, &t.token_id, &t.hmac, true).await;
    assert_eq!(r.error_code, 0);
    assert!(is_super(&mut c).await);
}

/// T-TLOGIN-1, T-SASL-10: a wrong HMAC, a wrong token id and an unknown token all fail
/// with the same generic 58; PLAIN never accepts a token (T-PLAIN-2).
#[tokio::test]
async fn t_tlogin_1_wrong_credentials_fail_alike() {
    let (b, _clock, _admin) = setup(&[("sasl.enabled.mechanisms", "SCRAM-SHA-256,SCRAM-SHA-512,PLAIN")]).await;
    let mut a = alice(&b).await;
    let t = create_ok(&mut a, &[]).await;
    let generic =
        "Authentication failed during authentication due to invalid credentials with SASL mechanism SCRAM-SHA-256";
    let mut other = t.hmac.to_vec();
    other[3] ^= 0x40;
    for (id, hmac) in [(t.token_id.as_str(), other.as_slice()), ("AAAAAAAAAAAAAAAAAAAAAA", &t.hmac[..])] {
        for token_auth in [true, false] {
            let (_, r) = token_login(b.addr, ScramMechanism::Sha256, id, hmac, token_auth).await;
            assert_eq!((r.error_code, r.error_message.as_deref()), (SASL_AUTHENTICATION_FAILED, Some(generic)));
        }
    }
    let mut c = b.connect().await;
    assert_eq!(c.handshake(1, "PLAIN").await.0, 0);
    let msg = format!("\0{}\0{}", t.token_id, token_password(&t.hmac));
    let r = c.authenticate(2, msg.as_bytes()).await;
    assert_eq!(r.error_code, SASL_AUTHENTICATION_FAILED);
}

/// T-TLOGIN-3, D-2: an expired token (not yet swept) cannot log in, nor can a token on a
/// broker whose tokens are disabled; a renewed one can again.
#[tokio::test]
async fn t_tlogin_3_expired_tokens_cannot_log_in() {
    let (b, clock, _admin) = setup(&[]).await;
    let mut a = alice(&b).await;
    let t = create(&mut a, 3, None, &[], 10_000).await;
    let t2 = create_ok(&mut a, &[]).await;
    clock.advance(10_000);
    let (_, r) = token_login(b.addr, ScramMechanism::Sha512, &t.token_id, &t.hmac, true).await;
    assert_eq!((r.error_code, r.session_lifetime_ms), (0, 0), "expiry == now is still live");
    clock.advance(1);
    for token_auth in [true, false] {
        let (_, r) = token_login(b.addr, ScramMechanism::Sha512, &t.token_id, &t.hmac, token_auth).await;
        assert_eq!(r.error_code, SASL_AUTHENTICATION_FAILED);
    }
    assert_eq!(renew(&mut a, 2, &t2.hmac, 1_000).await.error_code, 0);
    let (_, r) = token_login(b.addr, ScramMechanism::Sha512, &t2.token_id, &t2.hmac, true).await;
    assert_eq!((r.error_code, r.session_lifetime_ms), (0, 1_000));
}

/// T-TLOGIN-5, D-1: without `tokenauth` a token id logs in as the token; a user with the
/// same name wins; `ktb.sasl.scram.implicit.token.login=false` turns this off.
#[tokio::test]
async fn t_tlogin_5_implicit_token_login() {
    let (b, _clock, mut admin) = setup(&[]).await;
    let mut a = alice(&b).await;
    let t = create_ok(&mut a, &[]).await;
    for mech in [ScramMechanism::Sha256, ScramMechanism::Sha512] {
        let (mut c, r) = token_login(b.addr, mech, &t.token_id, &t.hmac, false).await;
        assert_eq!(r.error_code, 0, "{mech:?}");
        assert_eq!(r.session_lifetime_ms, DAY, "a token session ends at the token's expiry");
        let r = create(&mut c, 3, None, &[], -1).await;
        assert_eq!(r.error_code, DELEGATION_TOKEN_REQUEST_NOT_ALLOWED, "it is a token session");
    }
    // A user named like the token shadows it, for implicit logins only.
    add_user(&mut admin, &t.token_id, "user-password").await;
    let (_, r) = token_login(b.addr, ScramMechanism::Sha256, &t.token_id, &t.hmac, false).await;
    assert_eq!(r.error_code, SASL_AUTHENTICATION_FAILED, "user credentials win");
    let mut c = b.connect().await;
    assert_eq!(c.scram_login(ScramMechanism::Sha256, &t.token_id, "user-password", false).await.error_code, 0);
    let (_, r) = token_login(b.addr, ScramMechanism::Sha256, &t.token_id, &t.hmac, true).await;
    assert_eq!(r.error_code, 0, "tokenauth=true still reaches the token");

    let (b, _clock, _admin) = setup(&[("ktb.sasl.scram.implicit.token.login", "false")]).await;
    let mut a = alice(&b).await;
    let t = create_ok(&mut a, &[]).await;
    let (_, r) = token_login(b.addr, ScramMechanism::Sha256, &t.token_id, &t.hmac, false).await;
    assert_eq!(r.error_code, SASL_AUTHENTICATION_FAILED, "strict Kafka behaviour");
    let (_, r) = token_login(b.addr, ScramMechanism::Sha256, &t.token_id, &t.hmac, true).await;
    assert_eq!(r.error_code, 0);
}

/// T-REAUTH-5 with tokens: after the token is renewed, re-authenticating on the same
/// connection extends the session to the new expiry.
#[tokio::test]
async fn t_reauth_5_renewed_token_extends_the_session() {
    let (b, clock, _admin) = setup(&[]).await;
    let mut a = alice(&b).await;
    let t = create_ok(&mut a, &[]).await;
    let (mut c, r) = token_login(b.addr, ScramMechanism::Sha256, &t.token_id, &t.hmac, false).await;
    assert_eq!(r.session_lifetime_ms, DAY);
    clock.advance(3_600_000);
    assert_eq!(renew(&mut a, 2, &t.hmac, -1).await.error_code, 0);
    let r = c.scram_login(ScramMechanism::Sha256, &t.token_id, &token_password(&t.hmac), false).await;
    assert_eq!((r.error_code, r.session_lifetime_ms), (0, DAY), "the new expiry is an hour later");
}

/// T-TLOGIN-3, D-2: a token that expires, or is deleted, between client-first and
/// client-final does not log in.
#[tokio::test]
async fn t_tlogin_3_token_gone_mid_exchange_fails() {
    let (b, clock, _admin) = setup(&[]).await;
    let mut a = alice(&b).await;
    let t = create(&mut a, 3, None, &[], 60_000).await;
    let t2 = create_ok(&mut a, &[]).await;
    for (token, expire_it) in [(&t, false), (&t2, true)] {
        let mut c = b.connect().await;
        assert_eq!(c.handshake(1, "SCRAM-SHA-256").await.0, 0);
        let client = ScramClient::new(ScramMechanism::Sha256, &token.token_id, "midexchangenonce", true);
        let first = c.authenticate(2, &client.client_first()).await;
        assert_eq!(first.error_code, 0);
        if expire_it {
            assert_eq!(common::token_api::expire(&mut a, 2, &token.hmac, -1).await.error_code, 0);
        } else {
            clock.advance(60_001);
        }
        let (_, last) = client.client_final(&first.auth_bytes, token_password(&token.hmac).as_bytes()).unwrap();
        let fin = c.authenticate(2, &last).await;
        assert_eq!(fin.error_code, SASL_AUTHENTICATION_FAILED, "expire_it={expire_it}");
    }
}

/// D-22 on the broker's clock: an idle token session stays open up to its token's expiry
/// and closes, without an answer, once the clock passes it.
#[tokio::test]
async fn d_22_idle_token_session_closes_at_the_tokens_expiry() {
    let (b, clock, _admin) = setup(&[]).await;
    let mut a = alice(&b).await;
    let t = create_ok(&mut a, &[]).await;
    let (mut c, r) = token_login(b.addr, ScramMechanism::Sha256, &t.token_id, &t.hmac, false).await;
    assert_eq!(r.error_code, 0);
    clock.advance(DAY);
    let open = tokio::time::timeout(std::time::Duration::from_millis(300), c.read_frame()).await;
    assert!(open.is_err(), "still open at the expiry itself");
    clock.advance(1);
    let closed = tokio::time::timeout(std::time::Duration::from_secs(1), c.read_frame()).await;
    assert!(matches!(closed, Ok(None)), "closed without an answer within 1 s of the expiry");
}
