//! Property tests: no input makes the decoders panic (SPEC §2.6: bad input gets an error,
//! never a crash). Arbitrary bytes and mutations of valid requests for every served API
//! and version go through the frame decoder, the request parser and the SASL parsers;
//! arbitrary bytes and mutations of valid responses go through the client's response
//! decoder (T-LIMIT-7: a hostile server gets an error, never an abort).
//!
//! The case count is bounded so the test command stays fast; raise it with
//! `PROPTEST_CASES=100000 cargo test -p ktb-protocol --test malformed`.

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::api_versions_response::{ApiVersion, FinalizedFeatureKey, SupportedFeatureKey};
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::describe_delegation_token_response::{
    DescribedDelegationToken, DescribedDelegationTokenRenewer,
};
use kafka_protocol::messages::describe_user_scram_credentials_response::{
    CredentialInfo, DescribeUserScramCredentialsResult,
};
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use ktb_protocol::apis::SUPPORTED_APIS;
use ktb_protocol::client::{decode_response, encode_request};
use ktb_protocol::frame::decode_frame;
use ktb_protocol::plain::parse_plain;
use ktb_protocol::request::parse_request;
use ktb_protocol::response::encode_response;
use ktb_protocol::scram::{ScramCredential, ScramMechanism, parse_client_first, server_first};
use proptest::prelude::*;

/// A default request body of each served API.
fn body(key: ApiKey) -> RequestKind {
    match key {
        ApiKey::Metadata => MetadataRequest::default().into(),
        ApiKey::SaslHandshake => SaslHandshakeRequest::default().into(),
        ApiKey::ApiVersions => ApiVersionsRequest::default().into(),
        ApiKey::SaslAuthenticate => SaslAuthenticateRequest::default().into(),
        ApiKey::CreateDelegationToken => CreateDelegationTokenRequest::default().into(),
        ApiKey::RenewDelegationToken => RenewDelegationTokenRequest::default().into(),
        ApiKey::ExpireDelegationToken => ExpireDelegationTokenRequest::default().into(),
        ApiKey::DescribeDelegationToken => DescribeDelegationTokenRequest::default().into(),
        ApiKey::DescribeUserScramCredentials => DescribeUserScramCredentialsRequest::default().into(),
        ApiKey::AlterUserScramCredentials => AlterUserScramCredentialsRequest::default().into(),
        ApiKey::DescribeCluster => DescribeClusterRequest::default().into(),
        other => panic!("not served: {other:?}"),
    }
}

/// Every valid request frame (without its size prefix) of every served API and version.
fn valid_requests() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for api in SUPPORTED_APIS {
        for v in api.min..=api.max {
            let frame = encode_request(api.key, v, 7, "proptest", &body(api.key)).expect("default bodies encode");
            out.push(frame[4..].to_vec());
        }
    }
    out
}

fn s(x: &str) -> StrBytes {
    StrBytes::from_string(x.to_owned())
}

/// A response of `key` with entries in its arrays (nested ones too), valid at wire
/// version `v`: fields a version lacks are left at the defaults the encoder requires.
fn response_with_entries(key: ApiKey, v: i16) -> ResponseKind {
    match key {
        ApiKey::ApiVersions => {
            let r = ApiVersionsResponse::default().with_api_keys(vec![
                ApiVersion::default().with_api_key(3).with_max_version(12),
                ApiVersion::default().with_api_key(18).with_max_version(4),
            ]);
            if v < 3 {
                return r.into();
            }
            r.with_supported_features(vec![SupportedFeatureKey::default().with_name(s("metadata.version"))])
                .with_finalized_features_epoch(3)
                .with_finalized_features(vec![FinalizedFeatureKey::default().with_name(s("kraft.version"))])
                .into()
        }
        ApiKey::SaslHandshake => SaslHandshakeResponse::default().with_mechanisms(vec![s("PLAIN")]).into(),
        ApiKey::SaslAuthenticate => {
            SaslAuthenticateResponse::default().with_auth_bytes(Bytes::from_static(b"v=proof")).into()
        }
        ApiKey::Metadata => {
            let partition = MetadataResponsePartition::default()
                .with_leader_id(101.into())
                .with_replica_nodes(vec![101.into(), 102.into()])
                .with_isr_nodes(vec![101.into()])
                .with_offline_replicas(vec![102.into()]);
            let topic =
                MetadataResponseTopic::default().with_name(Some(s("t").into())).with_partitions(vec![partition]);
            let broker = MetadataResponseBroker::default().with_node_id(101.into()).with_host(s("h")).with_port(9092);
            MetadataResponse::default().with_brokers(vec![broker]).with_topics(vec![topic]).into()
        }
        ApiKey::DescribeCluster => DescribeClusterResponse::default()
            .with_brokers(vec![DescribeClusterBroker::default().with_host(s("h")).with_rack(Some(s("r")))])
            .into(),
        ApiKey::DescribeDelegationToken => {
            let renewer = DescribedDelegationTokenRenewer::default().with_principal_type(s("User"));
            let token = DescribedDelegationToken::default()
                .with_token_id(s("id"))
                .with_hmac(Bytes::from_static(&[1; 8]))
                .with_renewers(vec![renewer.clone(), renewer]);
            DescribeDelegationTokenResponse::default().with_tokens(vec![token]).into()
        }
        ApiKey::DescribeUserScramCredentials => DescribeUserScramCredentialsResponse::default()
            .with_results(vec![
                DescribeUserScramCredentialsResult::default()
                    .with_user(s("alice"))
                    .with_credential_infos(vec![CredentialInfo::default().with_mechanism(1).with_iterations(8192)]),
            ])
            .into(),
        ApiKey::AlterUserScramCredentials => AlterUserScramCredentialsResponse::default()
            .with_results(vec![alter_user_scram_credentials_response::AlterUserScramCredentialsResult::default()])
            .into(),
        other => default_response(other),
    }
}

/// A default response body of each served API.
fn default_response(key: ApiKey) -> ResponseKind {
    match key {
        ApiKey::Metadata => MetadataResponse::default().into(),
        ApiKey::SaslHandshake => SaslHandshakeResponse::default().into(),
        ApiKey::ApiVersions => ApiVersionsResponse::default().into(),
        ApiKey::SaslAuthenticate => SaslAuthenticateResponse::default().into(),
        ApiKey::CreateDelegationToken => CreateDelegationTokenResponse::default().into(),
        ApiKey::RenewDelegationToken => RenewDelegationTokenResponse::default().into(),
        ApiKey::ExpireDelegationToken => ExpireDelegationTokenResponse::default().into(),
        ApiKey::DescribeDelegationToken => DescribeDelegationTokenResponse::default().into(),
        ApiKey::DescribeUserScramCredentials => DescribeUserScramCredentialsResponse::default().into(),
        ApiKey::AlterUserScramCredentials => AlterUserScramCredentialsResponse::default().into(),
        ApiKey::DescribeCluster => DescribeClusterResponse::default().into(),
        other => panic!("not served: {other:?}"),
    }
}

/// Every valid response frame (without its size prefix) of every served API and version,
/// default and with entries, with the key and wire version it answers.
fn valid_responses() -> Vec<(ApiKey, i16, Vec<u8>)> {
    let mut out = Vec::new();
    for api in SUPPORTED_APIS {
        for v in api.min..=api.max {
            for body in [default_response(api.key), response_with_entries(api.key, v)] {
                let frame = encode_response(7, api.key, v, &body).expect("valid responses encode");
                out.push((api.key, v, frame[4..].to_vec()));
            }
        }
    }
    out
}

/// Decodes `bytes` as a stream of frames and parses each: errors are fine, panics are not.
fn feed(bytes: &[u8]) {
    let mut buf = BytesMut::from(bytes);
    while let Ok(Some(frame)) = decode_frame(&mut buf, 1 << 20) {
        let _ = parse_request(frame);
    }
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Truncate(usize),
    Insert(usize, Vec<u8>),
    SetI32(usize, i32),
}

fn apply(mut v: Vec<u8>, muts: &[Mutation]) -> Vec<u8> {
    for m in muts {
        if v.is_empty() {
            break;
        }
        match m {
            Mutation::Flip(i, x) => {
                let i = i % v.len();
                v[i] ^= x;
            }
            Mutation::Truncate(i) => v.truncate(i % v.len()),
            Mutation::Insert(i, bytes) => {
                let i = i % (v.len() + 1);
                v.splice(i..i, bytes.iter().copied());
            }
            Mutation::SetI32(i, x) => {
                let i = i % v.len();
                for (j, b) in x.to_be_bytes().iter().enumerate() {
                    if let Some(slot) = v.get_mut(i + j) {
                        *slot = *b;
                    }
                }
            }
        }
    }
    v
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1u8..=255).prop_map(|(i, x)| Mutation::Flip(i, x)),
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), proptest::collection::vec(any::<u8>(), 1..16)).prop_map(|(i, b)| Mutation::Insert(i, b)),
        (any::<usize>(), prop_oneof![Just(i32::MAX), Just(-1), Just(0x7fff_fff0), any::<i32>()])
            .prop_map(|(i, x)| Mutation::SetI32(i, x)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    /// Arbitrary byte streams through the frame decoder and request parser.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        feed(&bytes);
        let _ = parse_request(Bytes::from(bytes));
    }

    /// Valid requests of every API and version, with bytes flipped, cut, inserted or
    /// overwritten by huge or negative lengths.
    #[test]
    fn mutated_requests_never_panic(pick in any::<usize>(), muts in proptest::collection::vec(mutation(), 1..6)) {
        let valid = valid_requests();
        let frame = apply(valid[pick % valid.len()].clone(), &muts);
        let _ = parse_request(Bytes::from(frame.clone()));
        let mut sized = (frame.len() as i32).to_be_bytes().to_vec();
        sized.extend_from_slice(&frame);
        feed(&sized);
    }

    /// T-LIMIT-7: arbitrary bytes as the answer to every API and version the client asks.
    #[test]
    fn t_limit_7_arbitrary_responses_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let frame = Bytes::from(bytes);
        for api in SUPPORTED_APIS {
            for v in api.min..=api.max {
                let _ = decode_response(api.key, v, frame.clone());
            }
        }
    }

    /// T-LIMIT-7: valid responses of every API and version, with bytes flipped, cut,
    /// inserted or overwritten by huge or negative lengths.
    #[test]
    fn t_limit_7_mutated_responses_never_panic(pick in any::<usize>(), muts in proptest::collection::vec(mutation(), 1..6)) {
        let valid = valid_responses();
        let (key, v, frame) = &valid[pick % valid.len()];
        let _ = decode_response(*key, *v, Bytes::from(apply(frame.clone(), &muts)));
    }

    /// SASL messages: client-first (and the server-first built from it), PLAIN.
    #[test]
    fn sasl_messages_never_panic(msg in proptest::collection::vec(any::<u8>(), 0..256), tail in "[ -~]{0,64}") {
        let _ = parse_plain(&msg);
        let _ = parse_client_first(&msg);
        let text = format!("n,,n=user,r=nonce{tail}");
        if let Ok(cf) = parse_client_first(text.as_bytes()) {
            let cred = ScramCredential::from_salted_password(ScramMechanism::Sha256, &[1; 32], vec![2; 16], 4096);
            let (state, _) = server_first(ScramMechanism::Sha256, cf, Some(cred), Vec::new(), "snonce");
            let _ = state.client_final(&msg);
        }
    }
}

/// T-LIMIT-7: every valid response decodes through the guard.
#[test]
fn t_limit_7_every_valid_response_decodes() {
    for (key, v, frame) in valid_responses() {
        let decoded = decode_response(key, v, Bytes::from(frame));
        assert!(matches!(decoded, Ok((7, _))), "{key:?} v{v}: {decoded:?}");
    }
}

/// T-LIMIT-7: the answer that made the client abort on a 64 GB reservation, an ApiVersions
/// list of 2^31-1 entries in a 10-byte frame, is an error at every version.
#[test]
fn t_limit_7_huge_api_versions_answer_is_an_error() {
    // correlation id, error code, INT32 count
    let classic: &[u8] = &[0, 0, 0, 7, 0, 0, 0x7f, 0xff, 0xff, 0xff];
    // correlation id, error code, varint count 2^32-1
    let compact: &[u8] = &[0, 0, 0, 7, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f];
    for v in 0..=4 {
        let frame = if v >= 3 { compact } else { classic };
        assert!(decode_response(ApiKey::ApiVersions, v, Bytes::copy_from_slice(frame)).is_err(), "v{v}");
    }
}

#[test]
fn every_valid_request_parses() {
    for frame in valid_requests() {
        assert!(parse_request(Bytes::from(frame)).is_ok());
    }
}
