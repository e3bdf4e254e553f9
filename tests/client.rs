//! The client library against a fake older broker (T-CLI-3: ApiVersions negotiation,
//! including the T-APIV-4 fallback).

use std::time::Duration;

use bytes::{BufMut, BytesMut};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiKey, ApiVersionsResponse, ResponseKind};
use kafka_protocol::protocol::Encodable;
use kafka_token_broker::client::Client;
use ktb_protocol::frame::decode_frame;
use ktb_protocol::request::{Request, parse_request};
use ktb_protocol::response::encode_response;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A broker that knows ApiVersions only up to v2 and the token APIs up to v2, like a
/// Kafka 2.x broker: it answers a newer ApiVersions with the v0-format UNSUPPORTED_VERSION
/// body naming its own ApiVersions range.
async fn old_broker(listener: TcpListener) -> Vec<i16> {
    let (mut s, _) = listener.accept().await.unwrap();
    let mut buf = BytesMut::new();
    let mut asked = Vec::new();
    while asked.len() < 2 {
        let frame = loop {
            if let Some(f) = decode_frame(&mut buf, 1 << 20).unwrap() {
                break f;
            }
            assert!(s.read_buf(&mut buf).await.unwrap() > 0, "the client hung up");
        };
        let Ok(Request::Api(header, _)) = parse_request(frame) else { panic!("an ApiVersions request") };
        asked.push(header.version);
        let key = |k: ApiKey, max: i16| {
            ApiVersion::default().with_api_key(k as i16).with_min_version(0).with_max_version(max)
        };
        let out = if header.version > 2 {
            let body =
                ApiVersionsResponse::default().with_error_code(35).with_api_keys(vec![key(ApiKey::ApiVersions, 2)]);
            let mut b = BytesMut::new();
            b.put_i32(0);
            b.put_i32(header.correlation_id);
            body.encode(&mut b, 0).unwrap();
            let len = (b.len() - 4) as i32;
            b[..4].copy_from_slice(&len.to_be_bytes());
            b
        } else {
            let body = ApiVersionsResponse::default().with_api_keys(vec![
                key(ApiKey::ApiVersions, 2),
                key(ApiKey::SaslHandshake, 1),
                key(ApiKey::SaslAuthenticate, 1),
                key(ApiKey::CreateDelegationToken, 2),
                key(ApiKey::DescribeDelegationToken, 2),
            ]);
            encode_response(
                header.correlation_id,
                ApiKey::ApiVersions,
                header.version,
                &ResponseKind::ApiVersions(body),
            )
            .unwrap()
        };
        s.write_all(&out).await.unwrap();
    }
    asked
}

/// T-CLI-3, T-APIV-4: the client asks ApiVersions v4, falls back to the version an older
/// broker names, and then uses the highest version both sides know of each API.
#[tokio::test]
async fn t_cli_3_api_versions_fallback_and_negotiation() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let fake = tokio::spawn(old_broker(listener));
    let client = Client::connect(&addr, Duration::from_secs(5), None).await.unwrap();
    assert_eq!(fake.await.unwrap(), [4, 2], "v4 first, then the broker's own maximum");
    assert_eq!(client.version(ApiKey::CreateDelegationToken).unwrap(), 2, "min(ours 3, theirs 2)");
    assert_eq!(client.version(ApiKey::SaslAuthenticate).unwrap(), 1);
    assert!(client.version(ApiKey::RenewDelegationToken).is_err(), "not offered by that broker");
}
