//! Property tests: no input makes the decoders panic (SPEC §2.6: bad input gets an error,
//! never a crash). Arbitrary bytes and mutations of valid requests for every served API
//! and version go through the frame decoder, the request parser and the SASL parsers.
//!
//! The case count is bounded so the test command stays fast; raise it with
//! `PROPTEST_CASES=100000 cargo test -p ktb-protocol --test malformed`.

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::*;
use ktb_protocol::apis::SUPPORTED_APIS;
use ktb_protocol::client::encode_request;
use ktb_protocol::frame::decode_frame;
use ktb_protocol::plain::parse_plain;
use ktb_protocol::request::parse_request;
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

#[test]
fn every_valid_request_parses() {
    for frame in valid_requests() {
        assert!(parse_request(Bytes::from(frame)).is_ok());
    }
}
