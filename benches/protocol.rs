//! The cost of the wire layer: frame decode, request parse, response encode.
//!
//! Run with `cargo bench --bench protocol`.

use bytes::BytesMut;
use criterion::{Criterion, black_box, criterion_group, criterion_main};
use kafka_protocol::messages::describe_delegation_token_response::DescribedDelegationToken;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use ktb_protocol::client::encode_request;
use ktb_protocol::frame::decode_frame;
use ktb_protocol::request::parse_request;
use ktb_protocol::response::encode_response;

fn bench(c: &mut Criterion) {
    let create = CreateDelegationTokenRequest::default()
        .with_owner_principal_type(Some(StrBytes::from_static_str("User")))
        .with_owner_principal_name(Some(StrBytes::from_static_str("app")))
        .with_max_lifetime_ms(-1);
    let frame = encode_request(ApiKey::CreateDelegationToken, 3, 7, "bench", &create.clone().into()).unwrap();

    c.bench_function("frame_decode", |b| {
        b.iter(|| {
            let mut buf = BytesMut::from(&frame[..]);
            decode_frame(black_box(&mut buf), 1 << 20).unwrap().unwrap()
        })
    });
    let body = frame.clone().freeze().slice(4..);
    c.bench_function("request_parse/CreateDelegationToken_v3", |b| {
        b.iter(|| parse_request(black_box(body.clone())).unwrap())
    });
    c.bench_function("request_encode/CreateDelegationToken_v3", |b| {
        b.iter(|| {
            encode_request(ApiKey::CreateDelegationToken, 3, 7, "bench", black_box(&create.clone().into())).unwrap()
        })
    });
    let resp: ResponseKind = DescribeDelegationTokenResponse::default()
        .with_tokens(
            (0..10)
                .map(|i| {
                    DescribedDelegationToken::default()
                        .with_principal_type(StrBytes::from_static_str("User"))
                        .with_principal_name(StrBytes::from_string(format!("owner-{i}")))
                        .with_token_id(StrBytes::from_static_str("bxw-KptNTH6KHys8TV5vcA"))
                        .with_hmac(bytes::Bytes::from_static(&[7; 20]))
                })
                .collect(),
        )
        .into();
    c.bench_function("response_encode/DescribeDelegationToken_v3_10_tokens", |b| {
        b.iter(|| encode_response(7, ApiKey::DescribeDelegationToken, 3, black_box(&resp)).unwrap())
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
