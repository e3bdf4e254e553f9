//! The four delegation-token APIs over TCP (SPEC §4, §5.4), on a manual clock.

mod common;

use std::sync::Arc;

use common::token_api::{create, create_ok, describe, expire, ids, renew};
use common::{TestBroker, TestClient, add_user};
use hmac::{Hmac, Mac};
use kafka_protocol::messages::{ApiKey, DescribeUserScramCredentialsRequest, ResponseKind};
use kafka_token_broker::clock::ManualClock;
use ktb_protocol::error_code::*;
use ktb_protocol::scram::ScramMechanism;

const T0: i64 = 1_700_000_000_000;
const DAY: i64 = 86_400_000;

/// A SASL broker on a manual clock at `T0`, with users alice, bob and carol (password =
/// name + "-pw") beside the super user admin. The sweep runs only when a test asks for
/// it (a huge check interval), so expired tokens stay until deleted.
async fn setup(extra: &[(&str, &str)]) -> (TestBroker, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(T0));
    let b = TestBroker::start_for_tokens(extra, clock.clone()).await;
    let mut admin = b.connect().await;
    admin.login_admin().await;
    for u in ["alice", "bob", "carol"] {
        add_user(&mut admin, u, &format!("{u}-pw")).await;
    }
    (b, clock)
}

async fn login(b: &TestBroker, user: &str) -> TestClient {
    let mut c = b.connect().await;
    if user == "admin" {
        c.login_admin().await;
    } else {
        let r = c.scram_login(ScramMechanism::Sha256, user, &format!("{user}-pw"), false).await;
        assert_eq!(r.error_code, 0, "{user} logs in");
    }
    c
}

/// T-CREATE-1, T-CREATE-3, T-CREATE-4, T-HMAC-2, T-TOKEN-3: a user creates a token for
/// itself at every version; the answer carries owner, requester (v3), the times from the
/// server defaults, a 22-character id and a 20-byte HmacSHA1 authenticator.
#[tokio::test]
async fn t_create_1_requester_creates_for_itself_at_every_version() {
    let (b, _clock) = setup(&[]).await;
    let mut alice = login(&b, "alice").await;
    for v in 0..=3 {
        let r = create(&mut alice, v, None, &[], -1).await;
        assert_eq!(r.error_code, 0, "v{v}");
        assert_eq!((r.principal_type.as_str(), r.principal_name.as_str()), ("User", "alice"));
        if v >= 3 {
            assert_eq!(
                (r.token_requester_principal_type.as_str(), r.token_requester_principal_name.as_str()),
                ("User", "alice")
            );
        }
        assert_eq!(r.issue_timestamp_ms, T0);
        assert_eq!(r.max_timestamp_ms, T0 + 7 * DAY);
        assert_eq!(r.expiry_timestamp_ms, T0 + DAY);
        assert_eq!(r.token_id.len(), 22);
        assert_eq!(r.hmac.len(), 20, "HmacSHA1 is the default");
        assert_eq!(r.throttle_time_ms, 0);
    }
    // An explicit v3 owner equal to the requester is creating for itself too.
    let r = create(&mut alice, 3, Some(("User", "alice")), &[], -1).await;
    assert_eq!(r.error_code, 0);
}

/// T-CREATE-2, T-CREATE-3: a requested max lifetime lowers the server's; expiry never
/// passes max; a request above the server max is capped.
#[tokio::test]
async fn t_create_2_requested_max_lifetime_is_capped() {
    let (b, _clock) = setup(&[("delegation.token.max.lifetime.ms", "172800000")]).await;
    let mut alice = login(&b, "alice").await;
    let r = create(&mut alice, 3, None, &[], 3_600_000).await;
    assert_eq!((r.max_timestamp_ms, r.expiry_timestamp_ms), (T0 + 3_600_000, T0 + 3_600_000));
    let r = create(&mut alice, 3, None, &[], 30 * DAY).await;
    assert_eq!((r.max_timestamp_ms, r.expiry_timestamp_ms), (T0 + 2 * DAY, T0 + DAY));
    let r = create(&mut alice, 3, None, &[], 0).await;
    assert_eq!(r.max_timestamp_ms, T0 + 2 * DAY, "0 means the server default");
}

/// T-CREATE-5, SPEC §4.6 checks 2–3a, §5.4: creating for someone else needs a super
/// user (65); renewers and owner must be of type User (67); errors carry the derived
/// owner, the requester and −1 timestamps.
#[tokio::test]
async fn t_create_5_authorization_and_principal_types() {
    let (b, _clock) = setup(&[]).await;
    let mut alice = login(&b, "alice").await;
    let r = create(&mut alice, 3, Some(("User", "bob")), &[], -1).await;
    assert_eq!(r.error_code, DELEGATION_TOKEN_AUTHORIZATION_FAILED);
    assert_eq!((r.principal_type.as_str(), r.principal_name.as_str()), ("User", "bob"));
    assert_eq!(r.token_requester_principal_name.as_str(), "alice");
    assert_eq!((r.issue_timestamp_ms, r.expiry_timestamp_ms, r.max_timestamp_ms), (-1, -1, -1));
    assert!(r.token_id.is_empty() && r.hmac.is_empty());
    // 65 is checked before the renewer type.
    let r = create(&mut alice, 3, Some(("User", "bob")), &[("Group", "g")], -1).await;
    assert_eq!(r.error_code, DELEGATION_TOKEN_AUTHORIZATION_FAILED);
    let r = create(&mut alice, 3, None, &[("Group", "g")], -1).await;
    assert_eq!(r.error_code, INVALID_PRINCIPAL_TYPE);
    let r = create(&mut alice, 3, None, &[("user", "bob")], -1).await;
    assert_eq!(r.error_code, INVALID_PRINCIPAL_TYPE, "the type is case-sensitive");
    let mut admin = login(&b, "admin").await;
    // D-4: a super user may name another owner, but only of type User.
    let r = create(&mut admin, 3, Some(("Group", "ops")), &[], -1).await;
    assert_eq!(r.error_code, INVALID_PRINCIPAL_TYPE);
    assert_eq!((r.principal_type.as_str(), r.principal_name.as_str()), ("Group", "ops"));
}

/// T-CREATE-4, T-CREATE-7, SPEC §5.4: a super user creates for another owner, who need
/// not exist; renewers need not exist either; the requester is recorded.
#[tokio::test]
async fn t_create_7_super_user_creates_for_any_owner() {
    let (b, _clock) = setup(&[]).await;
    let mut admin = login(&b, "admin").await;
    let r = create(&mut admin, 3, Some(("User", "ghost")), &[("User", "nobody")], -1).await;
    assert_eq!(r.error_code, 0);
    assert_eq!(r.principal_name.as_str(), "ghost");
    assert_eq!(r.token_requester_principal_name.as_str(), "admin");
    let d = describe(&mut admin, 3, None).await;
    assert_eq!(d.tokens.len(), 1);
    assert_eq!(d.tokens[0].renewers[0].principal_name.as_str(), "nobody");
    // Before v3 there are no owner fields, so the owner is the requester.
    let r = create(&mut admin, 2, None, &[], -1).await;
    assert_eq!((r.error_code, r.principal_name.as_str()), (0, "admin"));
}

/// T-HMAC-1, T-HMAC-2: with HmacSHA512 and a configured secret string the HMAC is
/// Kafka's, HMAC-SHA512(UTF-8 secret, UTF-8 token id); SHA-256 gives 32 bytes.
#[tokio::test]
async fn t_hmac_1_authenticator_is_hmac_of_the_token_id() {
    for (alg, len) in [("HmacSHA512", 64), ("HmacSHA256", 32), ("HmacSHA1", 20)] {
        let (b, _clock) = setup(&[
            ("delegation.token.secret.key", "ktb-test-master-secret"),
            ("delegation.token.hmac.algorithm", alg),
        ])
        .await;
        let mut alice = login(&b, "alice").await;
        let r = create_ok(&mut alice, &[]).await;
        assert_eq!(r.hmac.len(), len, "{alg}");
        if alg == "HmacSHA512" {
            let mut m = Hmac::<sha2::Sha512>::new_from_slice(b"ktb-test-master-secret").unwrap();
            m.update(r.token_id.as_bytes());
            assert_eq!(r.hmac.as_ref(), m.finalize().into_bytes().as_slice());
        }
        let d = describe(&mut alice, 3, None).await;
        assert_eq!(d.tokens[0].hmac, r.hmac, "Describe recomputes the same HMAC");
    }
}

/// T-RENEW-1, T-RENEW-2, T-RENEW-4: owner and renewers renew; the period is capped by
/// the renew interval and by max; errors carry −1.
#[tokio::test]
async fn t_renew_1_owner_and_renewers_renew_within_limits() {
    let (b, clock) = setup(&[]).await;
    let mut alice = login(&b, "alice").await;
    let t = create(&mut alice, 3, None, &[("User", "bob")], 2 * DAY).await;
    clock.advance(1_000);
    let r = renew(&mut alice, 2, &t.hmac, 5_000).await;
    assert_eq!((r.error_code, r.expiry_timestamp_ms), (0, T0 + 6_000));
    let r = renew(&mut alice, 0, &t.hmac, -1).await;
    assert_eq!(r.expiry_timestamp_ms, T0 + 1_000 + DAY, "default period");
    let r = renew(&mut alice, 1, &t.hmac, 10 * DAY).await;
    assert_eq!(r.expiry_timestamp_ms, T0 + 1_000 + DAY, "never past the renew interval");
    let mut bob = login(&b, "bob").await;
    clock.advance(DAY - 500);
    let r = renew(&mut bob, 2, &t.hmac, -1).await;
    assert_eq!((r.error_code, r.expiry_timestamp_ms), (0, T0 + 2 * DAY), "never past max");
    let d = describe(&mut alice, 3, None).await;
    assert_eq!(d.tokens[0].expiry_timestamp, T0 + 2 * DAY, "the renewal is stored");
}

/// T-RENEW-3, T-RENEW-4, SPEC §4.7: unknown HMAC → 62; the requester that is neither
/// owner nor renewer → 63; an expired token → 66 even for a stranger (expiry first).
#[tokio::test]
async fn t_renew_3_check_order() {
    let (b, clock) = setup(&[]).await;
    let mut admin = login(&b, "admin").await;
    // admin is the requester, alice the owner: the requester may not renew.
    let t = create(&mut admin, 3, Some(("User", "alice")), &[], -1).await;
    let r = renew(&mut admin, 2, &t.hmac, -1).await;
    assert_eq!((r.error_code, r.expiry_timestamp_ms), (DELEGATION_TOKEN_OWNER_MISMATCH, -1));
    let mut carol = login(&b, "carol").await;
    assert_eq!(renew(&mut carol, 2, &t.hmac, -1).await.error_code, DELEGATION_TOKEN_OWNER_MISMATCH);
    let r = renew(&mut carol, 2, b"not an hmac", -1).await;
    assert_eq!((r.error_code, r.expiry_timestamp_ms), (DELEGATION_TOKEN_NOT_FOUND, -1));
    let mut wrong = t.hmac.to_vec();
    wrong[0] ^= 1;
    assert_eq!(renew(&mut carol, 2, &wrong, -1).await.error_code, DELEGATION_TOKEN_NOT_FOUND);
    assert_eq!(renew(&mut carol, 2, &t.hmac[..10], -1).await.error_code, DELEGATION_TOKEN_NOT_FOUND);
    clock.advance(DAY + 1);
    assert_eq!(renew(&mut carol, 2, &t.hmac, -1).await.error_code, DELEGATION_TOKEN_EXPIRED);
}

/// D-13: `ktb.token.superuser.manage=true` lets a super user renew and expire any token;
/// off by default (the check order test above shows 63).
#[tokio::test]
async fn t_renew_superuser_manage_option() {
    let (b, _clock) = setup(&[("ktb.token.superuser.manage", "true")]).await;
    let mut alice = login(&b, "alice").await;
    let t = create_ok(&mut alice, &[]).await;
    let mut admin = login(&b, "admin").await;
    assert_eq!(renew(&mut admin, 2, &t.hmac, 1_000).await.error_code, 0);
    assert_eq!(expire(&mut admin, 2, &t.hmac, -1).await.error_code, 0);
    let mut carol = login(&b, "carol").await;
    let t = create_ok(&mut alice, &[]).await;
    assert_eq!(renew(&mut carol, 2, &t.hmac, 1_000).await.error_code, DELEGATION_TOKEN_OWNER_MISMATCH);
}

/// T-EXPIRE-1, T-EXPIRE-4: a negative period deletes the token at once: the answer is
/// now, Describe no longer lists it, Renew and Expire give 62, it cannot log in.
#[tokio::test]
async fn t_expire_1_negative_period_deletes() {
    let (b, clock) = setup(&[]).await;
    let mut alice = login(&b, "alice").await;
    let t = create_ok(&mut alice, &[]).await;
    clock.advance(10);
    let r = expire(&mut alice, 0, &t.hmac, -1).await;
    assert_eq!((r.error_code, r.expiry_timestamp_ms), (0, T0 + 10));
    assert!(describe(&mut alice, 3, None).await.tokens.is_empty());
    assert_eq!(renew(&mut alice, 2, &t.hmac, -1).await.error_code, DELEGATION_TOKEN_NOT_FOUND);
    let r = expire(&mut alice, 2, &t.hmac, -1).await;
    assert_eq!((r.error_code, r.expiry_timestamp_ms), (DELEGATION_TOKEN_NOT_FOUND, -1));
    let (_, r) = common::token_login(b.addr, ScramMechanism::Sha256, &t.token_id, &t.hmac, true).await;
    assert_eq!(r.error_code, SASL_AUTHENTICATION_FAILED);
    // An expired token is deleted by −1 too.
    let t = create_ok(&mut alice, &[]).await;
    clock.advance(DAY + 1);
    assert_eq!(expire(&mut alice, 2, &t.hmac, -1).await.error_code, 0);
    assert!(describe(&mut alice, 3, None).await.tokens.is_empty());
}

/// T-EXPIRE-2, T-EXPIRE-3: a period ≥ 0 sets expiry to min(max, now + period), even
/// later than the renew interval; 0 leaves the token live for the rest of that
/// millisecond; an expired token gives 66; a stranger gets 63 before anything else.
#[tokio::test]
async fn t_expire_3_period_sets_expiry() {
    let (b, clock) = setup(&[]).await;
    let mut alice = login(&b, "alice").await;
    let t = create_ok(&mut alice, &[]).await;
    let mut carol = login(&b, "carol").await;
    assert_eq!(expire(&mut carol, 2, &t.hmac, -1).await.error_code, DELEGATION_TOKEN_OWNER_MISMATCH);
    let r = expire(&mut alice, 2, &t.hmac, 3 * DAY).await;
    assert_eq!((r.error_code, r.expiry_timestamp_ms), (0, T0 + 3 * DAY), "past the renew interval, up to max");
    let r = expire(&mut alice, 2, &t.hmac, 30 * DAY).await;
    assert_eq!(r.expiry_timestamp_ms, T0 + 7 * DAY, "capped by max");
    let r = expire(&mut alice, 1, &t.hmac, 0).await;
    assert_eq!(r.expiry_timestamp_ms, T0);
    assert_eq!(renew(&mut alice, 2, &t.hmac, 1_000).await.error_code, 0, "still live at expiry == now");
    expire(&mut alice, 1, &t.hmac, 0).await;
    clock.advance(1);
    let r = expire(&mut alice, 2, &t.hmac, 5_000).await;
    assert_eq!((r.error_code, r.expiry_timestamp_ms), (DELEGATION_TOKEN_EXPIRED, -1));
}

/// T-DESC-1, T-DESC-2, T-DESC-3, SPEC §4.9, §5.4: null owners lists what the caller may
/// see (owner, requester, renewer; everything for a super user), an empty list nothing,
/// a filter the matching tokens the caller may see; each token carries its HMAC and
/// renewers; order is issue time, then id.
#[tokio::test]
async fn t_desc_1_filters_and_visibility() {
    let (b, clock) = setup(&[]).await;
    let mut admin = login(&b, "admin").await;
    let mut alice = login(&b, "alice").await;
    let mut bob = login(&b, "bob").await;
    let a1 = create(&mut alice, 3, None, &[("User", "bob")], -1).await;
    clock.advance(5);
    let b1 = create_ok(&mut bob, &[]).await;
    clock.advance(5);
    let for_carol = create(&mut admin, 3, Some(("User", "carol")), &[], -1).await;
    let (a1_id, b1_id, c1_id) = (a1.token_id.to_string(), b1.token_id.to_string(), for_carol.token_id.to_string());

    assert_eq!(ids(&describe(&mut alice, 3, None).await), [a1_id.as_str()]);
    assert_eq!(ids(&describe(&mut bob, 3, None).await), [a1_id.clone(), b1_id.clone()], "bob renews a1");
    assert_eq!(ids(&describe(&mut admin, 3, None).await), [a1_id.clone(), b1_id.clone(), c1_id.clone()]);
    let mut carol = login(&b, "carol").await;
    assert_eq!(ids(&describe(&mut carol, 3, None).await), [c1_id.as_str()]);
    // T-DESC-1: an empty owner list means none (what kafka-delegation-tokens.sh 3.5+ sends).
    assert!(describe(&mut admin, 3, Some(&[])).await.tokens.is_empty());
    // Filters: tokens naming bob that the caller may see.
    assert_eq!(ids(&describe(&mut admin, 3, Some(&[("User", "bob")])).await), [a1_id.clone(), b1_id.clone()]);
    assert_eq!(ids(&describe(&mut alice, 3, Some(&[("User", "bob")])).await), [a1_id.as_str()]);
    assert_eq!(ids(&describe(&mut admin, 3, Some(&[("User", "admin")])).await), [c1_id.as_str()], "requester");
    assert!(describe(&mut admin, 3, Some(&[("Group", "bob")])).await.tokens.is_empty(), "type matters");

    let d = describe(&mut bob, 3, None).await;
    let t = &d.tokens[0];
    assert_eq!(d.error_code, 0);
    assert_eq!((t.principal_type.as_str(), t.principal_name.as_str()), ("User", "alice"));
    assert_eq!(t.token_requester_principal_name.as_str(), "alice");
    assert_eq!((t.issue_timestamp, t.expiry_timestamp, t.max_timestamp), (T0, T0 + DAY, T0 + 7 * DAY));
    assert_eq!(t.hmac, a1.hmac, "T-DESC-2: a renewer learns the HMAC");
    assert_eq!(t.renewers.len(), 1);
    assert_eq!((t.renewers[0].principal_type.as_str(), t.renewers[0].principal_name.as_str()), ("User", "bob"));
    for v in 0..=2 {
        let d = describe(&mut bob, v, None).await;
        assert_eq!(ids(&d), [a1_id.clone(), b1_id.clone()], "v{v}");
    }
}

/// T-GATE-1, T-AUTHZ-1: a token-authenticated connection gets 64 from all four token
/// APIs and nothing changes; it authenticates as the owner for everything else
/// (T-TLOGIN-4: a super user's token passes the super-user check).
#[tokio::test]
async fn t_gate_1_token_sessions_cannot_use_token_apis() {
    let (b, _clock) = setup(&[]).await;
    let mut admin = login(&b, "admin").await;
    let t = create_ok(&mut admin, &[]).await;
    let (mut tc, r) = common::token_login(b.addr, ScramMechanism::Sha512, &t.token_id, &t.hmac, true).await;
    assert_eq!(r.error_code, 0);
    let c = create(&mut tc, 3, None, &[], -1).await;
    assert_eq!(
        (c.error_code, c.principal_name.as_str(), c.token_requester_principal_name.as_str()),
        (64, "admin", "admin")
    );
    let r = renew(&mut tc, 2, &t.hmac, -1).await;
    assert_eq!((r.error_code, r.expiry_timestamp_ms), (DELEGATION_TOKEN_REQUEST_NOT_ALLOWED, -1));
    assert_eq!(expire(&mut tc, 2, &t.hmac, -1).await.error_code, DELEGATION_TOKEN_REQUEST_NOT_ALLOWED);
    let d = describe(&mut tc, 3, None).await;
    assert_eq!((d.error_code, d.tokens.len()), (DELEGATION_TOKEN_REQUEST_NOT_ALLOWED, 0));
    assert_eq!(ids(&describe(&mut admin, 3, None).await), [t.token_id.to_string()], "nothing changed");
    // The owner's authority carries over to non-token APIs.
    let req = DescribeUserScramCredentialsRequest::default().with_users(Some(vec![]));
    match tc.call(ApiKey::DescribeUserScramCredentials, 0, req.into()).await {
        ResponseKind::DescribeUserScramCredentials(r) => assert_eq!(r.error_code, 0, "User:admin is a super user"),
        other => panic!("{other:?}"),
    }
}

/// T-ENABLE-1: an empty secret disables tokens: the APIs answer 61 after the 64 gate,
/// Describe with no tokens.
#[tokio::test]
async fn t_enable_1_empty_secret_disables_tokens() {
    let (b, _clock) = setup(&[("delegation.token.secret.key", "")]).await;
    let mut alice = login(&b, "alice").await;
    let r = create(&mut alice, 3, None, &[], -1).await;
    assert_eq!((r.error_code, r.principal_name.as_str()), (DELEGATION_TOKEN_AUTH_DISABLED, "alice"));
    // 65 comes before 61.
    let r = create(&mut alice, 3, Some(("User", "bob")), &[], -1).await;
    assert_eq!(r.error_code, DELEGATION_TOKEN_AUTHORIZATION_FAILED);
    assert_eq!(renew(&mut alice, 2, b"x", -1).await.error_code, DELEGATION_TOKEN_AUTH_DISABLED);
    assert_eq!(expire(&mut alice, 2, b"x", -1).await.error_code, DELEGATION_TOKEN_AUTH_DISABLED);
    let d = describe(&mut alice, 3, None).await;
    assert_eq!((d.error_code, d.tokens.len()), (DELEGATION_TOKEN_AUTH_DISABLED, 0));
    assert!(!b.data_dir.path().join("data/delegation-token.secret").exists());
}

/// T-CONC-1: a Renew racing an Expire(−1) on the same token ends renewed-then-deleted
/// or as 62, never as a resurrected token; concurrent creates get distinct ids.
#[tokio::test]
async fn t_conc_1_racing_changes_are_linearizable() {
    let (b, _clock) = setup(&[]).await;
    let mut alice = login(&b, "alice").await;
    for _ in 0..10 {
        let t = create_ok(&mut alice, &[]).await;
        let (mut c1, mut c2) = (login(&b, "alice").await, login(&b, "alice").await);
        let (h1, h2) = (t.hmac.clone(), t.hmac.clone());
        let r = tokio::spawn(async move { renew(&mut c1, 2, &h1, 1_000).await.error_code });
        let e = tokio::spawn(async move { expire(&mut c2, 2, &h2, -1).await.error_code });
        let (r, e) = (r.await.unwrap(), e.await.unwrap());
        assert_eq!(e, 0);
        assert!(r == 0 || r == DELEGATION_TOKEN_NOT_FOUND, "renew answered {r}");
        assert!(describe(&mut alice, 3, None).await.tokens.is_empty(), "the token stays deleted");
    }
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let mut c = login(&b, "alice").await;
        tasks.push(tokio::spawn(async move { create_ok(&mut c, &[]).await.token_id.to_string() }));
    }
    let mut created = Vec::new();
    for t in tasks {
        created.push(t.await.unwrap());
    }
    let mut listed = ids(&describe(&mut alice, 3, None).await);
    created.sort();
    listed.sort();
    assert_eq!(listed, created);
}

/// D-20: `ktb.token.max.per.owner` counts the tokens an owner has; past it Create answers
/// 42 (after the gate and authorization) and nothing is stored; once one of them is
/// deleted the owner may create again. `ktb.token.max.renewers` refuses a longer list.
#[tokio::test]
async fn d_20_tokens_per_owner_and_renewers_are_limited() {
    let (b, _clock) = setup(&[("ktb.token.max.per.owner", "2"), ("ktb.token.max.renewers", "1")]).await;
    let mut alice = login(&b, "alice").await;
    let first = create(&mut alice, 3, None, &[("User", "bob")], -1).await;
    assert_eq!(first.error_code, NONE);
    assert_eq!(create(&mut alice, 3, None, &[], -1).await.error_code, NONE);
    assert_eq!(create(&mut alice, 3, None, &[], -1).await.error_code, INVALID_REQUEST, "a third token");
    let mut bob = login(&b, "bob").await;
    assert_eq!(create(&mut bob, 3, None, &[], -1).await.error_code, NONE, "other owners are not affected");
    assert_eq!(
        create(&mut bob, 3, None, &[("User", "alice"), ("User", "carol")], -1).await.error_code,
        INVALID_REQUEST,
        "two renewers"
    );
    // A token whose principal names take more than 64 KiB is refused too.
    let long = "n".repeat(70_000);
    assert_eq!(create(&mut bob, 3, None, &[("User", long.as_str())], -1).await.error_code, INVALID_REQUEST);
    // A super user creating for alice counts against her limit too.
    let mut admin = login(&b, "admin").await;
    assert_eq!(create(&mut admin, 3, Some(("User", "alice")), &[], -1).await.error_code, INVALID_REQUEST);
    assert_eq!(ids(&describe(&mut alice, 3, None).await).len(), 2, "nothing stored past the limit");
    assert_eq!(expire(&mut alice, 2, &first.hmac, -1).await.error_code, NONE);
    assert_eq!(create(&mut alice, 3, None, &[], -1).await.error_code, NONE, "room again after a deletion");
}
