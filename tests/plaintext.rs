//! What a PLAINTEXT connection (principal User:ANONYMOUS) may do (D-10, T-GATE-1,
//! T-USER-2, T-USER-6, T-SASL-3).

mod common;

use common::TestBroker;
use kafka_protocol::messages::alter_user_scram_credentials_request::{
    ScramCredentialDeletion, ScramCredentialUpsertion,
};
use kafka_protocol::messages::create_delegation_token_request::CreatableRenewers;
use kafka_protocol::messages::describe_user_scram_credentials_request::UserName;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use ktb_protocol::error_code;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_owned())
}

/// T-GATE-1 (D-10): every token API answers 64 on PLAINTEXT, with the error payloads of
/// T-CREATE-5 and D-6, at every version.
#[tokio::test]
async fn t_gate_1_token_apis_answer_64_on_plaintext() {
    let broker = TestBroker::start(&[]).await;
    let mut c = broker.connect().await;
    for v in 0..=3 {
        let req = CreateDelegationTokenRequest::default()
            .with_renewers(vec![
                CreatableRenewers::default().with_principal_type(s("User")).with_principal_name(s("bob")),
            ])
            .with_max_lifetime_ms(-1);
        let ResponseKind::CreateDelegationToken(r) = c.call(ApiKey::CreateDelegationToken, v, req.into()).await else {
            panic!()
        };
        assert_eq!(r.error_code, error_code::DELEGATION_TOKEN_REQUEST_NOT_ALLOWED);
        assert_eq!((r.principal_type.as_str(), r.principal_name.as_str()), ("User", "ANONYMOUS"));
        assert_eq!((r.issue_timestamp_ms, r.expiry_timestamp_ms, r.max_timestamp_ms), (-1, -1, -1));
        assert!(r.token_id.is_empty() && r.hmac.is_empty());
        if v >= 3 {
            assert_eq!(
                (r.token_requester_principal_type.as_str(), r.token_requester_principal_name.as_str()),
                ("User", "ANONYMOUS")
            );
        }
    }
    // v3 with an explicit owner: the error names that owner.
    let req = CreateDelegationTokenRequest::default()
        .with_owner_principal_type(Some(s("User")))
        .with_owner_principal_name(Some(s("carol")));
    let ResponseKind::CreateDelegationToken(r) = c.call(ApiKey::CreateDelegationToken, 3, req.into()).await else {
        panic!()
    };
    assert_eq!((r.error_code, r.principal_name.as_str()), (64, "carol"));
    assert_eq!(r.token_requester_principal_name.as_str(), "ANONYMOUS");

    for v in 0..=2 {
        let req =
            RenewDelegationTokenRequest::default().with_hmac(bytes::Bytes::from_static(b"x")).with_renew_period_ms(-1);
        let ResponseKind::RenewDelegationToken(r) = c.call(ApiKey::RenewDelegationToken, v, req.into()).await else {
            panic!()
        };
        assert_eq!((r.error_code, r.expiry_timestamp_ms), (64, -1));
        let req = ExpireDelegationTokenRequest::default().with_hmac(bytes::Bytes::from_static(b"x"));
        let ResponseKind::ExpireDelegationToken(r) = c.call(ApiKey::ExpireDelegationToken, v, req.into()).await else {
            panic!()
        };
        assert_eq!((r.error_code, r.expiry_timestamp_ms), (64, -1));
    }
    for v in 0..=3 {
        let ResponseKind::DescribeDelegationToken(r) = c
            .call(
                ApiKey::DescribeDelegationToken,
                v,
                DescribeDelegationTokenRequest::default().with_owners(None).into(),
            )
            .await
        else {
            panic!()
        };
        assert_eq!(r.error_code, 64);
        assert!(r.tokens.is_empty());
    }
}

/// T-USER-2 (D-10, D-17): DescribeUserScramCredentials from a non-super principal is 31,
/// with one 31 result per named user and none for a null or empty list.
#[tokio::test]
async fn t_user_2_describe_users_is_31_for_anonymous() {
    let broker = TestBroker::start(&[]).await;
    let mut c = broker.connect().await;
    let names = vec![UserName::default().with_name(s("bob")), UserName::default().with_name(s("alice"))];
    for (users, expected) in [(Some(names), vec!["bob", "alice"]), (Some(vec![]), vec![]), (None, vec![])] {
        let req = DescribeUserScramCredentialsRequest::default().with_users(users);
        let ResponseKind::DescribeUserScramCredentials(r) =
            c.call(ApiKey::DescribeUserScramCredentials, 0, req.into()).await
        else {
            panic!()
        };
        assert_eq!(r.error_code, error_code::CLUSTER_AUTHORIZATION_FAILED);
        assert_eq!(r.error_message, None);
        let got: Vec<&str> = r.results.iter().map(|x| x.user.as_str()).collect();
        assert_eq!(got, expected);
        assert!(
            r.results.iter().all(|x| x.error_code == 31 && x.error_message.is_none() && x.credential_infos.is_empty())
        );
    }
}

/// T-USER-6 (D-10): AlterUserScramCredentials from a non-super principal: one 31 per
/// distinct user, sorted, with the ktb message.
#[tokio::test]
async fn t_user_6_alter_users_is_31_for_anonymous() {
    let broker = TestBroker::start(&[]).await;
    let mut c = broker.connect().await;
    let req = AlterUserScramCredentialsRequest::default()
        .with_deletions(vec![ScramCredentialDeletion::default().with_name(s("zed")).with_mechanism(1)])
        .with_upsertions(vec![
            ScramCredentialUpsertion::default().with_name(s("amy")).with_mechanism(2).with_iterations(8192),
            ScramCredentialUpsertion::default().with_name(s("zed")).with_mechanism(2).with_iterations(8192),
        ]);
    let ResponseKind::AlterUserScramCredentials(r) = c.call(ApiKey::AlterUserScramCredentials, 0, req.into()).await
    else {
        panic!()
    };
    let got: Vec<(&str, i16, Option<&str>)> =
        r.results.iter().map(|x| (x.user.as_str(), x.error_code, x.error_message.as_deref())).collect();
    assert_eq!(
        got,
        [("amy", 31, Some("Cluster authorization failed.")), ("zed", 31, Some("Cluster authorization failed."))]
    );
}

/// T-SASL-3: on a connection that needs no authentication, SaslHandshake gets 34 with no
/// mechanisms and SaslAuthenticate gets 34 with Kafka's message; the connection stays up.
#[tokio::test]
async fn t_sasl_3_sasl_requests_after_authentication_get_34() {
    let broker = TestBroker::start(&[]).await;
    let mut c = broker.connect().await;
    for v in 0..=1 {
        let req = SaslHandshakeRequest::default().with_mechanism(s("SCRAM-SHA-256"));
        let ResponseKind::SaslHandshake(r) = c.call(ApiKey::SaslHandshake, v, req.into()).await else { panic!() };
        assert_eq!(r.error_code, error_code::ILLEGAL_SASL_STATE);
        assert!(r.mechanisms.is_empty());
    }
    for v in 0..=2 {
        let ResponseKind::SaslAuthenticate(r) =
            c.call(ApiKey::SaslAuthenticate, v, SaslAuthenticateRequest::default().into()).await
        else {
            panic!()
        };
        assert_eq!(r.error_code, error_code::ILLEGAL_SASL_STATE);
        assert_eq!(
            r.error_message.as_deref(),
            Some("SaslAuthenticate request received after successful authentication")
        );
    }
    let ResponseKind::ApiVersions(r) = c.call(ApiKey::ApiVersions, 0, ApiVersionsRequest::default().into()).await
    else {
        panic!()
    };
    assert_eq!(r.error_code, 0);
}
