//! Framing, headers and ApiVersions over real TCP (SPEC §2).

mod common;

use std::time::Duration;

use common::{TestBroker, TestClient};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, CreateDelegationTokenRequest, DescribeDelegationTokenRequest, MetadataRequest,
    ResponseKind,
};
use kafka_protocol::protocol::StrBytes;
use ktb_protocol::apis::SUPPORTED_APIS;
use ktb_protocol::client::decode_response;
use ktb_protocol::error_code;

fn api_versions(resp: ResponseKind) -> kafka_protocol::messages::ApiVersionsResponse {
    match resp {
        ResponseKind::ApiVersions(r) => r,
        other => panic!("expected ApiVersions, got {other:?}"),
    }
}

fn v3_request(name: &str, version: &str) -> ApiVersionsRequest {
    ApiVersionsRequest::default()
        .with_client_software_name(StrBytes::from_string(name.into()))
        .with_client_software_version(StrBytes::from_string(version.into()))
}

/// A connection that still works: ApiVersions v0 round-trips.
async fn still_served(broker: &TestBroker) {
    let mut c = broker.connect().await;
    let r = api_versions(c.call(ApiKey::ApiVersions, 0, ApiVersionsRequest::default().into()).await);
    assert_eq!(r.error_code, 0);
}

/// T-APIV-1, T-APIV-2, T-APIV-7: every version 0–4 is accepted and lists exactly the 11
/// APIs of SPEC §2.3 sorted by key, throttle 0, no features (epoch −1).
#[tokio::test]
async fn t_apiv_1_t_apiv_2_t_apiv_7_every_version_lists_the_spec_table() {
    let broker = TestBroker::start(&[]).await;
    let mut c = broker.connect().await;
    let expected: Vec<(i16, i16, i16)> = SUPPORTED_APIS.iter().map(|a| (a.key as i16, a.min, a.max)).collect();
    assert_eq!(expected.len(), 11);
    for version in 0..=4 {
        let req = if version >= 3 { v3_request("ktb-test", "1.0") } else { ApiVersionsRequest::default() };
        let r = api_versions(c.call(ApiKey::ApiVersions, version, req.into()).await);
        assert_eq!(r.error_code, 0, "v{version}");
        let got: Vec<(i16, i16, i16)> = r.api_keys.iter().map(|a| (a.api_key, a.min_version, a.max_version)).collect();
        assert_eq!(got, expected, "v{version}");
        assert_eq!(r.throttle_time_ms, 0);
        assert!(r.supported_features.is_empty() && r.finalized_features.is_empty());
        assert_eq!(r.finalized_features_epoch, -1);
        assert!(!r.zk_migration_ready);
    }
}

/// T-APIV-2: in v3+, no tagged field is written: the body ends with a single 0x00.
#[tokio::test]
async fn t_apiv_2_no_feature_tags_on_the_wire() {
    let broker = TestBroker::start(&[]).await;
    let mut c = broker.connect().await;
    c.send(ApiKey::ApiVersions, 3, v3_request("a", "1").into()).await;
    let frame = c.read_frame().await.unwrap();
    // header v0 (4 bytes) + error (2) + compact array of 11 entries (1 + 11 * 7) + throttle (4) + tags (1)
    assert_eq!(frame.len(), 4 + 2 + 1 + 11 * 7 + 4 + 1);
    assert_eq!(frame.last(), Some(&0));
}

/// T-APIV-3: the list is the same on every ApiVersions of a connection.
#[tokio::test]
async fn t_apiv_3_same_list_every_time() {
    let broker = TestBroker::start(&[]).await;
    let mut c = broker.connect().await;
    let a = api_versions(c.call(ApiKey::ApiVersions, 0, ApiVersionsRequest::default().into()).await);
    let _ = c.call(ApiKey::Metadata, 1, MetadataRequest::default().with_topics(None).into()).await;
    let b = api_versions(c.call(ApiKey::ApiVersions, 2, ApiVersionsRequest::default().into()).await);
    assert_eq!(a.api_keys, b.api_keys);
}

/// T-APIV-4, T-WIRE-9: ApiVersions v9 gets SPEC's byte-exact v0 answer, and so does a
/// negative version; the connection stays usable.
#[tokio::test]
async fn t_apiv_4_t_wire_9_unknown_version_gets_the_byte_exact_answer() {
    let broker = TestBroker::start(&[]).await;
    let mut c = broker.connect().await;
    c.send_raw(&[
        0x00, 0x00, 0x00, 0x15, 0x00, 0x12, 0x00, 0x09, 0x00, 0x00, 0x00, 0x07, 0x00, 0x05, 0x70, 0x72, 0x6f, 0x62,
        0x65, 0x00, 0x02, 0x78, 0x02, 0x31, 0x00,
    ])
    .await;
    let frame = c.read_frame().await.unwrap();
    let mut framed = vec![0x00, 0x00, 0x00, 0x10];
    framed.extend_from_slice(&frame);
    assert_eq!(
        framed,
        [
            0x00, 0x00, 0x00, 0x10, 0x00, 0x00, 0x00, 0x07, 0x00, 0x23, 0x00, 0x00, 0x00, 0x01, 0x00, 0x12, 0x00, 0x00,
            0x00, 0x04
        ]
    );
    // Version -1, header v1, correlation id 8, null client id, and no body at all.
    c.send_raw(&[0, 0, 0, 10, 0, 18, 0xff, 0xff, 0, 0, 0, 8, 0xff, 0xff]).await;
    let (id, body) = decode_response(ApiKey::ApiVersions, 0, c.read_frame().await.unwrap()).unwrap();
    assert_eq!(id, 8);
    let body = api_versions(body);
    assert_eq!(body.error_code, error_code::UNSUPPORTED_VERSION);
    assert_eq!(body.api_keys.len(), 1);
    let r = api_versions(c.call(ApiKey::ApiVersions, 0, ApiVersionsRequest::default().into()).await);
    assert_eq!(r.api_keys.len(), 11);
}

/// T-APIV-5: a malformed client software name or version gets 42 with an empty list.
#[tokio::test]
async fn t_apiv_5_bad_software_name_is_invalid_request() {
    let broker = TestBroker::start(&[]).await;
    let mut c = broker.connect().await;
    for (name, version) in [("bad name", "1.0"), ("ok", "-1"), ("", "1")] {
        for v in [3, 4] {
            let r = api_versions(c.call(ApiKey::ApiVersions, v, v3_request(name, version).into()).await);
            assert_eq!(r.error_code, error_code::INVALID_REQUEST, "{name:?} {version:?}");
            assert!(r.api_keys.is_empty());
            assert_eq!(r.throttle_time_ms, 0);
        }
    }
}

/// T-WIRE-1, T-WIRE-4, T-WIRE-8: 50 pipelined requests in one write are answered in
/// order, each echoing its correlation id.
#[tokio::test]
async fn t_wire_1_t_wire_4_t_wire_8_pipelined_requests_answer_in_order() {
    let broker = TestBroker::start(&[]).await;
    let mut c = broker.connect().await;
    let mut batch = Vec::new();
    let mut expected = Vec::new();
    for i in 0..50i32 {
        let (key, version, body) = if i % 2 == 0 {
            (ApiKey::ApiVersions, (i % 5) as i16, ApiVersionsRequest::default().into())
        } else {
            (ApiKey::Metadata, (i % 13) as i16, MetadataRequest::default().into())
        };
        let body = if key == ApiKey::ApiVersions && version >= 3 { v3_request("a", "1").into() } else { body };
        let correlation = 1000 + i * 7;
        batch.extend_from_slice(&ktb_protocol::client::encode_request(key, version, correlation, "p", &body).unwrap());
        expected.push((key, version, correlation));
    }
    c.send_raw(&batch).await;
    for (key, version, correlation) in expected {
        let frame = c.read_frame().await.unwrap();
        let (id, _) = decode_response(key, version, frame).unwrap();
        assert_eq!(id, correlation);
    }
}

/// T-WIRE-2: a negative size, or one above socket.request.max.bytes, closes that
/// connection with no response; other connections are unaffected.
#[tokio::test]
async fn t_wire_2_bad_sizes_close_only_their_connection() {
    let broker = TestBroker::start(&[("socket.request.max.bytes", "1000")]).await;
    let mut bystander = broker.connect().await;
    for size in [-1i32, i32::MIN, 1001, i32::MAX] {
        let mut c = broker.connect().await;
        c.send_raw(&size.to_be_bytes()).await;
        assert!(c.closed_without_response().await, "size {size}");
    }
    let r = api_versions(bystander.call(ApiKey::ApiVersions, 1, ApiVersionsRequest::default().into()).await);
    assert_eq!(r.error_code, 0);
}

/// T-WIRE-2: exactly socket.request.max.bytes is accepted (trailing bytes are ignored).
#[tokio::test]
async fn t_wire_2_frame_at_the_limit_is_accepted() {
    let broker = TestBroker::start(&[("socket.request.max.bytes", "1000")]).await;
    let mut c = broker.connect().await;
    let mut frame =
        ktb_protocol::client::encode_request(ApiKey::ApiVersions, 0, 5, "x", &ApiVersionsRequest::default().into())
            .unwrap()
            .to_vec();
    frame.resize(1004, 0);
    frame[..4].copy_from_slice(&1000i32.to_be_bytes());
    c.send_raw(&frame).await;
    let (id, _) = decode_response(ApiKey::ApiVersions, 0, c.read_frame().await.unwrap()).unwrap();
    assert_eq!(id, 5);
}

/// T-WIRE-3, T-WIRE-10, T-WIRE-11, T-WIRE-12: empty frames, truncated or garbage
/// headers, unknown API keys, unserved APIs and versions, and undecodable bodies each
/// close their own connection with no response, while another client keeps being served.
#[tokio::test]
async fn t_wire_3_t_wire_10_t_wire_11_t_wire_12_malformed_requests_close_only_their_connection() {
    let broker = TestBroker::start(&[]).await;
    let mut bystander = broker.connect().await;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("size zero", vec![0, 0, 0, 0]),
        ("truncated header", vec![0, 0, 0, 3, 0, 18, 0]),
        ("garbage header", vec![0, 0, 0, 6, 0xde, 0xad, 0xbe, 0xef, 0x01, 0x02]),
        ("client id longer than the frame", vec![0, 0, 0, 10, 0, 18, 0, 0, 0, 0, 0, 1, 0x7f, 0xff]),
        ("unknown API key", vec![0, 0, 0, 10, 0x7f, 0x00, 0, 0, 0, 0, 0, 1, 0, 0]),
        ("Produce is not served", vec![0, 0, 0, 10, 0, 0, 0, 9, 0, 0, 0, 1, 0, 0]),
        ("DescribeAcls is not served", vec![0, 0, 0, 10, 0, 29, 0, 1, 0, 0, 0, 1, 0, 0]),
        ("Metadata v13 is not advertised", vec![0, 0, 0, 11, 0, 3, 0, 13, 0, 0, 0, 1, 0, 0, 0]),
        ("DescribeCluster v2 is not advertised", vec![0, 0, 0, 11, 0, 60, 0, 2, 0, 0, 0, 1, 0, 0, 0]),
        ("Metadata v1 body cut short", vec![0, 0, 0, 12, 0, 3, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0]),
        ("Metadata v1 claims 2^31-1 topics", vec![0, 0, 0, 14, 0, 3, 0, 1, 0, 0, 0, 1, 0, 0, 0x7f, 0xff, 0xff, 0xff]),
        ("ApiVersions v3 body missing", vec![0, 0, 0, 11, 0, 18, 0, 3, 0, 0, 0, 1, 0, 0, 0]),
        // Found by the property test: a five-byte varint count with the continuation bit
        // still set on its last byte (the codec reads it as ~2^31 topics).
        (
            "Metadata v10 varint count with a dangling continuation bit",
            [&[0, 0, 0, 33][..], b"\x00\x03\x00\x0a\x00\x00\x00\x07\x00\x08proptest\x00"]
                .concat()
                .into_iter()
                .chain([0x99, 0x85, 0xfc, 0x93, 0xcd, 0x8d, 0x18, 0xe8, 0xf7, 0x01, 0x01, 0x00, 0x00, 0x00])
                .collect(),
        ),
    ];
    for (what, bytes) in cases {
        let mut c = broker.connect().await;
        c.send_raw(&bytes).await;
        assert!(c.closed_without_response().await, "{what}");
        let r = api_versions(bystander.call(ApiKey::ApiVersions, 0, ApiVersionsRequest::default().into()).await);
        assert_eq!(r.error_code, 0, "after {what}");
    }
    still_served(&broker).await;
}

/// T-WIRE-5: a connection with no traffic for connections.max.idle.ms is closed.
#[tokio::test]
async fn t_wire_5_idle_connections_are_closed() {
    let broker = TestBroker::start(&[("connections.max.idle.ms", "300")]).await;
    let mut c = broker.connect().await;
    let started = std::time::Instant::now();
    assert!(c.closed_without_response().await);
    assert!(started.elapsed() >= Duration::from_millis(250), "closed after {:?}", started.elapsed());
    // Traffic keeps a connection alive.
    let mut busy = broker.connect().await;
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        let _ = busy.call(ApiKey::ApiVersions, 0, ApiVersionsRequest::default().into()).await;
    }
}

/// T-WIRE-6: at max.connections, a new client waits (it is not accepted and closed) and
/// is served once a slot frees up.
#[tokio::test]
async fn t_wire_6_max_connections_makes_new_clients_wait() {
    let broker = TestBroker::start(&[("max.connections", "1")]).await;
    let mut first = broker.connect().await;
    let _ = first.call(ApiKey::ApiVersions, 0, ApiVersionsRequest::default().into()).await;
    let mut second = TestClient::connect(broker.addr).await;
    let id = second.send(ApiKey::ApiVersions, 0, ApiVersionsRequest::default().into()).await;
    let waited = tokio::time::timeout(Duration::from_millis(500), second.read_frame()).await;
    assert!(waited.is_err(), "the second client must not be served while the first holds the only slot");
    drop(first);
    let r = api_versions(second.recv(ApiKey::ApiVersions, 0, id).await);
    assert_eq!(r.error_code, 0);
}

/// T-WIRE-14: v0 of the token APIs is accepted, answered with a v0 header and a v1 body.
#[tokio::test]
async fn t_wire_14_token_api_v0_is_served() {
    let broker = TestBroker::start(&[]).await;
    let mut c = broker.connect().await;
    match c.call(ApiKey::CreateDelegationToken, 0, CreateDelegationTokenRequest::default().into()).await {
        ResponseKind::CreateDelegationToken(r) => {
            assert_eq!(r.error_code, error_code::DELEGATION_TOKEN_REQUEST_NOT_ALLOWED)
        }
        other => panic!("{other:?}"),
    }
    match c.call(ApiKey::DescribeDelegationToken, 0, DescribeDelegationTokenRequest::default().into()).await {
        ResponseKind::DescribeDelegationToken(r) => {
            assert_eq!(r.error_code, error_code::DELEGATION_TOKEN_REQUEST_NOT_ALLOWED)
        }
        other => panic!("{other:?}"),
    }
}
