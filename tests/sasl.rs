//! SASL over real TCP: the pre-authentication state machine, SCRAM, PLAIN and
//! re-authentication (SPEC §3).

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use common::{ADMIN_PASSWORD, TestBroker};
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, DescribeClusterRequest, MetadataRequest, ResponseKind};
use kafka_protocol::protocol::StrBytes;
use kafka_token_broker::clock::ManualClock;
use ktb_protocol::error_code;
use ktb_protocol::scram::{ScramClient, ScramMechanism};

const SHA256: ScramMechanism = ScramMechanism::Sha256;
const SHA512: ScramMechanism = ScramMechanism::Sha512;

fn generic_failure(mech: &str) -> String {
    format!("Authentication failed during authentication due to invalid credentials with SASL mechanism {mech}")
}

async fn metadata_ok(c: &mut common::TestClient) -> bool {
    matches!(
        c.call(ApiKey::Metadata, 1, MetadataRequest::default().with_topics(None).into()).await,
        ResponseKind::Metadata(_)
    )
}

/// T-SASL-2, T-SCRAM-12: the Java flow (ApiVersions v0, handshake v1), the
/// @platformatic/kafka flow (handshake first) and both mechanisms log in as User:admin.
#[tokio::test]
async fn t_sasl_2_t_scram_12_login_flows_and_mechanisms() {
    let broker = TestBroker::start_sasl(&[]).await;
    for mech in [SHA256, SHA512] {
        let mut java = broker.connect().await;
        let ResponseKind::ApiVersions(v) =
            java.call(ApiKey::ApiVersions, 0, ApiVersionsRequest::default().into()).await
        else {
            panic!()
        };
        assert_eq!(v.api_keys.len(), 11, "T-APIV-3: the same list before authentication");
        let r = java.scram_login(mech, "admin", ADMIN_PASSWORD, false).await;
        assert_eq!((r.error_code, r.error_message.as_deref(), r.session_lifetime_ms), (0, None, 0));
        assert!(metadata_ok(&mut java).await);

        let mut platformatic = broker.connect().await;
        assert_eq!(platformatic.scram_login(mech, "admin", ADMIN_PASSWORD, false).await.error_code, 0);
        assert!(metadata_ok(&mut platformatic).await);
    }
}

/// T-SASL-2: kafka-python 2.0's flow: handshake v0, then raw SCRAM frames; a failure
/// there closes the connection with no response.
#[tokio::test]
async fn t_sasl_2_handshake_v0_with_raw_frames() {
    let broker = TestBroker::start_sasl(&[]).await;
    let mut c = broker.connect().await;
    assert_eq!(c.handshake(0, "SCRAM-SHA-256").await.0, 0);
    let client = ScramClient::new(SHA256, "admin", "rawnonce", false);
    let mut frame = (client.client_first().len() as i32).to_be_bytes().to_vec();
    frame.extend_from_slice(&client.client_first());
    c.send_raw(&frame).await;
    let server_first = c.read_frame().await.unwrap();
    let (sent, last) = client.client_final(&server_first, ADMIN_PASSWORD.as_bytes()).unwrap();
    let mut frame = (last.len() as i32).to_be_bytes().to_vec();
    frame.extend_from_slice(&last);
    c.send_raw(&frame).await;
    sent.verify_server_final(&c.read_frame().await.unwrap()).unwrap();
    assert!(metadata_ok(&mut c).await);

    let mut bad = broker.connect().await;
    assert_eq!(bad.handshake(0, "SCRAM-SHA-256").await.0, 0);
    bad.send_raw(&[0, 0, 0, 5, b'h', b'e', b'l', b'l', b'o']).await;
    assert!(bad.closed_without_response().await);
}

/// T-SASL-1, T-WIRE-13: before authentication only ApiVersions, SaslHandshake and
/// SaslAuthenticate are processed; anything else, a second successful ApiVersions, or a
/// first frame that is not a Kafka request closes the connection with no response.
#[tokio::test]
async fn t_sasl_1_t_wire_13_pre_authentication_gate() {
    let broker = TestBroker::start_sasl(&[]).await;
    let mut c = broker.connect().await;
    c.send(ApiKey::Metadata, 1, MetadataRequest::default().into()).await;
    assert!(c.closed_without_response().await, "Metadata before authentication");

    let mut c = broker.connect().await;
    let _ = c.call(ApiKey::ApiVersions, 0, ApiVersionsRequest::default().into()).await;
    c.send(ApiKey::ApiVersions, 0, ApiVersionsRequest::default().into()).await;
    assert!(c.closed_without_response().await, "a second ApiVersions");

    let mut c = broker.connect().await;
    c.send_raw(b"\x00\x00\x00\x0aGET / HTTP").await;
    assert!(c.closed_without_response().await, "not a Kafka request");

    // T-APIV-6: after an ApiVersions error, ApiVersions may be retried.
    let mut c = broker.connect().await;
    let bad = ApiVersionsRequest::default()
        .with_client_software_name(StrBytes::from_static_str("bad name"))
        .with_client_software_version(StrBytes::from_static_str("1"));
    let ResponseKind::ApiVersions(r) = c.call(ApiKey::ApiVersions, 3, bad.into()).await else { panic!() };
    assert_eq!(r.error_code, error_code::INVALID_REQUEST);
    let ResponseKind::ApiVersions(r) = c.call(ApiKey::ApiVersions, 0, ApiVersionsRequest::default().into()).await
    else {
        panic!()
    };
    assert_eq!(r.error_code, 0);
    assert_eq!(c.scram_login(SHA512, "admin", ADMIN_PASSWORD, false).await.error_code, 0);
}

/// T-APIV-6: the pre-auth connection stays open after a T-APIV-4 answer too.
#[tokio::test]
async fn t_apiv_6_unknown_version_before_authentication_can_be_retried() {
    let broker = TestBroker::start_sasl(&[]).await;
    let mut c = broker.connect().await;
    // ApiVersions v9: header v2 (null client id, no tags), no body.
    c.send_raw(&[0, 0, 0, 11, 0, 18, 0, 9, 0, 0, 0, 8, 0xff, 0xff, 0]).await;
    let frame = c.read_frame().await.unwrap();
    assert_eq!(&frame[..6], &[0, 0, 0, 8, 0, 35]);
    assert_eq!(c.scram_login(SHA256, "admin", ADMIN_PASSWORD, false).await.error_code, 0);
}

/// SPEC §3.1: mid-exchange, another request of §2.3 gets that API's 34 answer, then close.
#[tokio::test]
async fn other_request_during_authentication_gets_34_then_close() {
    let broker = TestBroker::start_sasl(&[]).await;
    let mut c = broker.connect().await;
    assert_eq!(c.handshake(1, "SCRAM-SHA-256").await.0, 0);
    let ResponseKind::DescribeCluster(r) =
        c.call(ApiKey::DescribeCluster, 0, DescribeClusterRequest::default().into()).await
    else {
        panic!()
    };
    assert_eq!(r.error_code, error_code::ILLEGAL_SASL_STATE);
    assert!(c.closed_without_response().await);
}

/// T-SASL-4, T-SASL-5, T-SASL-6: a known mechanism gets 0 and the enabled list in
/// configuration order without duplicates; an unknown one (including a different case,
/// and PLAIN while it is off) gets 33 and the list, then the connection closes.
#[tokio::test]
async fn t_sasl_4_t_sasl_5_t_sasl_6_handshake() {
    let broker = TestBroker::start_sasl(&[]).await;
    let mut c = broker.connect().await;
    assert_eq!(c.handshake(1, "SCRAM-SHA-512").await, (0, vec!["SCRAM-SHA-256".into(), "SCRAM-SHA-512".into()]));
    for bad in ["scram-sha-256", "PLAIN", "GSSAPI"] {
        let mut c = broker.connect().await;
        let (code, list) = c.handshake(1, bad).await;
        assert_eq!(code, error_code::UNSUPPORTED_SASL_MECHANISM, "{bad}");
        assert_eq!(list, ["SCRAM-SHA-256", "SCRAM-SHA-512"]);
        assert!(c.closed_without_response().await);
    }
    let broker = TestBroker::start_sasl(&[("sasl.enabled.mechanisms", "SCRAM-SHA-512,PLAIN,SCRAM-SHA-512")]).await;
    let mut c = broker.connect().await;
    assert_eq!(c.handshake(1, "PLAIN").await, (0, vec!["SCRAM-SHA-512".into(), "PLAIN".into()]));
}

/// T-SASL-7, T-SASL-8, T-SASL-10, T-REVEAL-1: a wrong password and an unknown user get
/// the same server-first shape (32-byte salt, 4096 iterations, D-26) and the same 58
/// answer (generic message, no bytes, no lifetime), then the connection closes.
#[tokio::test]
async fn t_sasl_8_t_sasl_10_t_reveal_1_failures_look_the_same() {
    let broker = TestBroker::start_sasl(&[]).await;
    for (user, password) in [("admin", "wrong"), ("nobody", "whatever")] {
        for mech in [SHA256, SHA512] {
            let mut c = broker.connect().await;
            assert_eq!(c.handshake(1, mech.name()).await.0, 0);
            let client = ScramClient::new(mech, user, "abcdefgh", false);
            let first = c.authenticate(2, &client.client_first()).await;
            assert_eq!((first.error_code, first.session_lifetime_ms), (0, 0), "T-SASL-7");
            let sf = String::from_utf8(first.auth_bytes.to_vec()).unwrap();
            let salt = sf.split(",s=").nth(1).unwrap().split(',').next().unwrap();
            assert_eq!(STANDARD.decode(salt).unwrap().len(), 32, "{user}");
            assert!(sf.starts_with("r=abcdefgh") && sf.ends_with(",i=4096"), "{sf}");
            let (_, last) = client.client_final(&first.auth_bytes, password.as_bytes()).unwrap();
            let r = c.authenticate(2, &last).await;
            assert_eq!(r.error_code, error_code::SASL_AUTHENTICATION_FAILED);
            assert_eq!(r.error_message.as_deref(), Some(generic_failure(mech.name()).as_str()));
            assert!(r.auth_bytes.is_empty());
            assert_eq!(r.session_lifetime_ms, 0);
            assert!(c.closed_without_response().await);
        }
    }
}

/// T-SCRAM-8: the fake salt of an unknown user is the same on every attempt, so probing
/// twice does not tell a real user (fixed salt) from a missing one.
#[tokio::test]
async fn t_scram_8_fake_salt_is_stable() {
    let broker = TestBroker::start_sasl(&[]).await;
    let mut salts = Vec::new();
    for _ in 0..2 {
        let mut c = broker.connect().await;
        c.handshake(1, "SCRAM-SHA-256").await;
        let r = c.authenticate(2, &ScramClient::new(SHA256, "ghost", "n1", false).client_first()).await;
        salts.push(String::from_utf8(r.auth_bytes.to_vec()).unwrap().split(",s=").nth(1).unwrap().to_owned());
    }
    assert_eq!(salts[0], salts[1]);
}

/// T-SCRAM-3, T-SCRAM-4, T-SCRAM-13: an authzid other than the user name fails at
/// client-first with the specific message; bad grammar and `m=` fail with the generic one.
#[tokio::test]
async fn t_scram_3_t_scram_4_t_scram_13_client_first_failures() {
    let broker = TestBroker::start_sasl(&[]).await;
    let cases = [
        (
            "n,a=root,n=admin,r=abc",
            "Authentication failed: Client requested an authorization id that is different from username".to_owned(),
        ),
        ("n,,m=x,n=admin,r=abc", generic_failure("SCRAM-SHA-256")),
        ("y,,n=admin,r=abc", generic_failure("SCRAM-SHA-256")),
        ("garbage", generic_failure("SCRAM-SHA-256")),
    ];
    for (msg, expected) in cases {
        let mut c = broker.connect().await;
        c.handshake(1, "SCRAM-SHA-256").await;
        let r = c.authenticate(1, msg.as_bytes()).await;
        assert_eq!(r.error_code, 58, "{msg}");
        assert_eq!(r.error_message.as_deref(), Some(expected.as_str()), "{msg}");
        assert!(c.closed_without_response().await);
    }
    // A matching authzid is fine (here the proof is over c=biws, so it still fails at the
    // final step; what matters is that client-first passed).
    let mut c = broker.connect().await;
    c.handshake(1, "SCRAM-SHA-256").await;
    let r = c.authenticate(1, b"n,a=admin,n=admin,r=abc").await;
    assert_eq!(r.error_code, 0);
}

/// T-SCRAM-11, D-8: a wrong-length proof gets 58 with the generic message (and is
/// delayed like other failures).
#[tokio::test]
async fn t_scram_11_wrong_length_proof_is_58() {
    let broker = TestBroker::start_sasl(&[]).await;
    let mut c = broker.connect().await;
    c.handshake(1, "SCRAM-SHA-512").await;
    let client = ScramClient::new(SHA512, "admin", "n0nce", false);
    let first = c.authenticate(2, &client.client_first()).await;
    let nonce = String::from_utf8(first.auth_bytes.to_vec()).unwrap().split(',').next().unwrap().to_owned();
    let r = c.authenticate(2, format!("c=biws,{nonce},p=AAAA").as_bytes()).await;
    assert_eq!((r.error_code, r.error_message.unwrap().to_string()), (58, generic_failure("SCRAM-SHA-512")));
}

/// T-SASL-11: the failure answer and the close wait connection.failed.authentication.
/// delay.ms, and only that connection waits.
#[tokio::test]
async fn t_sasl_11_failed_authentication_is_delayed() {
    let broker = TestBroker::start_sasl(&[("connection.failed.authentication.delay.ms", "400")]).await;
    let mut failing = broker.connect().await;
    failing.handshake(1, "SCRAM-SHA-256").await;
    let started = Instant::now();
    failing
        .send(
            ApiKey::SaslAuthenticate,
            2,
            kafka_protocol::messages::SaslAuthenticateRequest::default()
                .with_auth_bytes(bytes::Bytes::from_static(b"junk"))
                .into(),
        )
        .await;
    // Meanwhile another client logs in without waiting.
    let mut other = broker.connect().await;
    let other_started = Instant::now();
    assert_eq!(other.scram_login(SHA256, "admin", ADMIN_PASSWORD, false).await.error_code, 0);
    assert!(other_started.elapsed() < Duration::from_millis(350), "others are not held up");
    let frame = failing.read_frame().await.expect("the 58 answer");
    assert!(started.elapsed() >= Duration::from_millis(380), "answered after {:?}", started.elapsed());
    let (_, body) = ktb_protocol::client::decode_response(ApiKey::SaslAuthenticate, 2, frame).unwrap();
    let ResponseKind::SaslAuthenticate(r) = body else { panic!() };
    assert_eq!(r.error_code, 58);
    assert!(failing.closed_without_response().await);
}

/// T-SASL-3: after authentication, SaslHandshake (no session expiry, so no re-auth) and
/// SaslAuthenticate get 34 and the connection stays open.
#[tokio::test]
async fn t_sasl_3_sasl_after_authentication_is_34() {
    let broker = TestBroker::start_sasl(&[]).await;
    let mut c = broker.connect().await;
    c.login_admin().await;
    assert_eq!(c.handshake(1, "SCRAM-SHA-512").await, (error_code::ILLEGAL_SASL_STATE, vec![]));
    let r = c.authenticate(2, b"x").await;
    assert_eq!(r.error_code, error_code::ILLEGAL_SASL_STATE);
    assert_eq!(r.error_message.as_deref(), Some("SaslAuthenticate request received after successful authentication"));
    assert!(metadata_ok(&mut c).await);
}

/// T-PLAIN-1, T-PLAIN-2: PLAIN, when enabled, checks the field count, then the names,
/// then the password against the stored SCRAM credential, and only then the authzid.
#[tokio::test]
async fn t_plain_1_t_plain_2_plain_logins() {
    let broker = TestBroker::start_sasl(&[("sasl.enabled.mechanisms", "SCRAM-SHA-512,PLAIN")]).await;
    let ok = format!("\0admin\0{ADMIN_PASSWORD}");
    let authz_ok = format!("admin\0admin\0{ADMIN_PASSWORD}");
    let authz_bad = format!("root\0admin\0{ADMIN_PASSWORD}");
    let cases: Vec<(&[u8], Option<&str>)> = vec![
        (ok.as_bytes(), None),
        (authz_ok.as_bytes(), None),
        (b"\0admin\0wrong", Some("Authentication failed: Invalid username or password")),
        (b"\0nobody\0wrong", Some("Authentication failed: Invalid username or password")),
        (b"root\0admin\0wrong", Some("Authentication failed: Invalid username or password")),
        (
            authz_bad.as_bytes(),
            Some("Authentication failed: Client requested an authorization id that is different from username"),
        ),
        (b"admin", Some("Invalid SASL/PLAIN response: expected 3 tokens, got 1")),
        (b"a\0b\0c\0d", Some("Invalid SASL/PLAIN response: expected 3 tokens, got 4")),
        (b"\0\0pw", Some("Authentication failed: username not specified")),
        (b"\0admin\0", Some("Authentication failed: password not specified")),
    ];
    for (msg, expected) in cases {
        let mut c = broker.connect().await;
        assert_eq!(c.handshake(1, "PLAIN").await.0, 0);
        let r = c.authenticate(1, msg).await;
        match expected {
            None => {
                assert_eq!((r.error_code, r.auth_bytes.len()), (0, 0));
                assert!(metadata_ok(&mut c).await);
            }
            Some(m) => {
                assert_eq!(
                    (r.error_code, r.error_message.as_deref()),
                    (58, Some(m)),
                    "{:?}",
                    String::from_utf8_lossy(msg)
                );
                assert!(c.closed_without_response().await);
            }
        }
    }
    // Handshake v0: the reply to PLAIN is an empty raw frame.
    let mut c = broker.connect().await;
    c.handshake(0, "PLAIN").await;
    let mut frame = (ok.len() as i32).to_be_bytes().to_vec();
    frame.extend_from_slice(ok.as_bytes());
    c.send_raw(&frame).await;
    assert_eq!(c.read_frame_allow_empty().await.map(|f| f.len()), Some(0));
    assert!(metadata_ok(&mut c).await);
}

/// T-REAUTH-1, T-SASL-7: with connections.max.reauth.ms set, the completing reply
/// carries it as the session lifetime (v1+), and the session ends then.
/// T-REAUTH-2, T-SASL-9: after expiry the next request closes the connection with no
/// response, even for a v0 SaslAuthenticate client that was never told the lifetime.
#[tokio::test]
async fn t_reauth_1_t_reauth_2_t_sasl_9_session_expiry() {
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    let broker = TestBroker::start_sasl_with_clock(&[("connections.max.reauth.ms", "10000")], clock.clone()).await;
    let mut c = broker.connect().await;
    let r = c.scram_login(SHA512, "admin", ADMIN_PASSWORD, false).await;
    assert_eq!(r.session_lifetime_ms, 10_000);
    clock.advance(10_000);
    assert!(metadata_ok(&mut c).await, "still live at exactly the expiry");
    clock.advance(1);
    c.send(ApiKey::Metadata, 1, MetadataRequest::default().into()).await;
    assert!(c.closed_without_response().await);

    // A v0 SaslAuthenticate client is not told, but expiry applies all the same.
    let mut v0 = broker.connect().await;
    v0.handshake(1, "SCRAM-SHA-256").await;
    let client = ScramClient::new(SHA256, "admin", "v0nonce", false);
    let first = v0.authenticate(0, &client.client_first()).await;
    let (_, last) = client.client_final(&first.auth_bytes, ADMIN_PASSWORD.as_bytes()).unwrap();
    let fin = v0.authenticate(0, &last).await;
    assert_eq!((fin.error_code, fin.session_lifetime_ms), (0, 0));
    clock.advance(10_001);
    v0.send(ApiKey::Metadata, 1, MetadataRequest::default().into()).await;
    assert!(v0.closed_without_response().await);
}

/// T-REAUTH-3, T-REAUTH-5: a handshake on a session with an expiry starts
/// re-authentication (before or after expiry); success sets a new expiry.
/// A second re-auth within one second is not a re-auth: 34.
#[tokio::test]
async fn t_reauth_3_t_reauth_5_reauthentication_extends_the_session() {
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    let broker = TestBroker::start_sasl_with_clock(&[("connections.max.reauth.ms", "10000")], clock.clone()).await;
    let mut c = broker.connect().await;
    c.login_admin().await;
    clock.advance(9_000);
    let r = c.scram_login(SHA512, "admin", ADMIN_PASSWORD, false).await;
    assert_eq!((r.error_code, r.session_lifetime_ms), (0, 10_000));
    clock.advance(5_000);
    assert!(metadata_ok(&mut c).await, "the new expiry counts from the re-auth");
    clock.advance(5_001);
    c.send(ApiKey::Metadata, 1, MetadataRequest::default().into()).await;
    assert!(c.closed_without_response().await, "and ends 10 s after it");
}

/// T-REAUTH-3: within one second of the previous re-authentication's start, a handshake
/// is not a re-authentication (34, connection open); after expiry it closes.
#[tokio::test]
async fn t_reauth_3_one_second_rule() {
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    let broker = TestBroker::start_sasl_with_clock(&[("connections.max.reauth.ms", "10000")], clock.clone()).await;
    let mut c = broker.connect().await;
    c.login_admin().await;
    assert_eq!(c.scram_login(SHA512, "admin", ADMIN_PASSWORD, false).await.error_code, 0);
    clock.advance(500);
    assert_eq!(c.handshake(1, "SCRAM-SHA-512").await.0, error_code::ILLEGAL_SASL_STATE);
    clock.advance(600);
    assert_eq!(c.scram_login(SHA512, "admin", ADMIN_PASSWORD, false).await.error_code, 0);
}

/// T-REAUTH-4: re-auth with another enabled mechanism: handshake success, then the next
/// frame closes; re-auth as another principal: 58 with Kafka's message, then close.
#[tokio::test]
async fn t_reauth_4_mechanism_and_principal_must_not_change() {
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    let broker = TestBroker::start_sasl_with_clock(&[("connections.max.reauth.ms", "10000")], clock.clone()).await;
    let mut admin = broker.connect().await;
    admin.login_admin().await;
    common::add_user(&mut admin, "bob", "bob-secret").await;

    let mut c = broker.connect().await;
    c.login_admin().await;
    assert_eq!(c.handshake(1, "SCRAM-SHA-256").await.0, 0);
    c.send(ApiKey::SaslAuthenticate, 2, kafka_protocol::messages::SaslAuthenticateRequest::default().into()).await;
    assert!(c.closed_without_response().await);

    let mut c = broker.connect().await;
    c.login_admin().await;
    let r = c.scram_login(SHA512, "bob", "bob-secret", false).await;
    assert_eq!(r.error_code, 58);
    assert_eq!(
        r.error_message.as_deref(),
        Some("Cannot change principals during re-authentication from User.admin: User.bob")
    );
    assert!(c.closed_without_response().await);

    // A wrong password during re-auth uses the re-authentication wording.
    let mut c = broker.connect().await;
    c.login_admin().await;
    let r = c.scram_login(SHA512, "admin", "wrong", false).await;
    assert_eq!(
        r.error_message.as_deref(),
        Some(
            "Authentication failed during re-authentication due to invalid credentials with SASL mechanism SCRAM-SHA-512"
        )
    );
}

/// T-REAUTH-6: during re-authentication any request but SaslAuthenticate gets 34, then
/// the connection closes.
#[tokio::test]
async fn t_reauth_6_other_request_during_reauth() {
    let broker = TestBroker::start_sasl(&[("connections.max.reauth.ms", "60000")]).await;
    let mut c = broker.connect().await;
    c.login_admin().await;
    assert_eq!(c.handshake(1, "SCRAM-SHA-512").await.0, 0);
    let ResponseKind::Metadata(m) = c
        .call(
            ApiKey::Metadata,
            1,
            MetadataRequest::default()
                .with_topics(Some(vec![
                    kafka_protocol::messages::metadata_request::MetadataRequestTopic::default()
                        .with_name(Some(kafka_protocol::messages::TopicName(StrBytes::from_static_str("t")))),
                ]))
                .into(),
        )
        .await
    else {
        panic!()
    };
    // D-25: the error answer carries no per-topic results (Metadata has no top-level code).
    assert!(m.topics.is_empty() && m.brokers.is_empty(), "{m:?}");
    assert!(c.closed_without_response().await);
}
