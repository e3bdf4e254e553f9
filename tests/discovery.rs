//! Metadata and DescribeCluster for a single node (SPEC §2.8).

mod common;

use common::TestBroker;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    ApiKey, BrokerId, DescribeClusterRequest, DescribeClusterResponse, MetadataRequest, MetadataResponse, ResponseKind,
    TopicName,
};
use kafka_protocol::protocol::StrBytes;
use ktb_protocol::error_code;

fn metadata(resp: ResponseKind) -> MetadataResponse {
    match resp {
        ResponseKind::Metadata(r) => r,
        other => panic!("expected Metadata, got {other:?}"),
    }
}

fn describe_cluster(resp: ResponseKind) -> DescribeClusterResponse {
    match resp {
        ResponseKind::DescribeCluster(r) => r,
        other => panic!("expected DescribeCluster, got {other:?}"),
    }
}

fn topic(name: &str) -> MetadataRequestTopic {
    MetadataRequestTopic::default().with_name(Some(TopicName(StrBytes::from_string(name.into()))))
}

/// T-META-1, T-META-2: at every version 0–12, one broker (this node at the listener's
/// advertised address), the cluster id (v2+), itself as controller (v1+), and no topics
/// for "all topics" (empty array in v0, null in v1+).
#[tokio::test]
async fn t_meta_1_t_meta_2_every_version_describes_this_node() {
    let broker = TestBroker::start(&[("node.id", "7")]).await;
    let cluster_id = broker.cluster_id_on_disk();
    let mut c = broker.connect().await;
    for version in 0..=12 {
        let req = if version == 0 {
            MetadataRequest::default().with_topics(Some(vec![]))
        } else {
            MetadataRequest::default().with_topics(None)
        };
        let r = metadata(c.call(ApiKey::Metadata, version, req.into()).await);
        assert_eq!(r.brokers.len(), 1, "v{version}");
        let b = &r.brokers[0];
        assert_eq!((b.node_id, b.host.as_str(), b.port), (BrokerId(7), "127.0.0.1", broker.addr.port() as i32));
        assert_eq!(b.rack, None);
        assert!(r.topics.is_empty(), "v{version}: all topics means none here");
        assert_eq!(r.throttle_time_ms, 0);
        if version >= 1 {
            assert_eq!(r.controller_id, BrokerId(7), "v{version}");
        }
        if version >= 2 {
            assert_eq!(r.cluster_id.as_deref(), Some(cluster_id.as_str()), "v{version}");
        }
    }
}

/// T-META-2: v1+ with an empty list means no topics.
#[tokio::test]
async fn t_meta_2_empty_list_means_none() {
    let broker = TestBroker::start(&[]).await;
    let mut c = broker.connect().await;
    let r = metadata(c.call(ApiKey::Metadata, 4, MetadataRequest::default().with_topics(Some(vec![])).into()).await);
    assert!(r.topics.is_empty());
}

/// T-META-2 (D-18, as §9.7 amends it): every distinct named topic is
/// UNKNOWN_TOPIC_OR_PARTITION, once, in order of first request, with a zero id, no
/// partitions and no authorized operations; nothing is created.
#[tokio::test]
async fn t_meta_2_named_topics_are_unknown() {
    let broker = TestBroker::start(&[]).await;
    let mut c = broker.connect().await;
    for version in [0, 1, 4, 8, 9, 10, 12] {
        let req = MetadataRequest::default()
            .with_topics(Some(vec![topic("orders"), topic("audit"), topic("orders")]))
            // v4+ may ask for auto-creation; it is ignored either way.
            .with_allow_auto_topic_creation(true);
        let r = metadata(c.call(ApiKey::Metadata, version, req.into()).await);
        let names: Vec<&str> = r.topics.iter().map(|t| t.name.as_ref().unwrap().0.as_str()).collect();
        assert_eq!(names, ["orders", "audit"], "v{version}: requested topics are a set (T-LIMIT-1)");
        for t in &r.topics {
            assert_eq!(t.error_code, error_code::UNKNOWN_TOPIC_OR_PARTITION);
            assert!(t.topic_id.is_nil());
            assert!(!t.is_internal);
            assert!(t.partitions.is_empty());
            assert_eq!(t.topic_authorized_operations, i32::MIN);
        }
    }
    // Asking again still finds nothing: no topic was auto-created.
    let r = metadata(c.call(ApiKey::Metadata, 1, MetadataRequest::default().with_topics(None).into()).await);
    assert!(r.topics.is_empty());
}

/// T-META-2: in v12, a topic asked for by id gets UNKNOWN_TOPIC_ID with its id echoed.
#[tokio::test]
async fn t_meta_2_topic_by_id_is_unknown_topic_id() {
    let broker = TestBroker::start(&[]).await;
    let mut c = broker.connect().await;
    let id = uuid::Uuid::from_u128(0x1234_5678_9abc_def0_1234_5678_9abc_def0);
    let req = MetadataRequest::default()
        .with_topics(Some(vec![MetadataRequestTopic::default().with_topic_id(id).with_name(None)]));
    let r = metadata(c.call(ApiKey::Metadata, 12, req.into()).await);
    assert_eq!(r.topics.len(), 1);
    assert_eq!(r.topics[0].error_code, error_code::UNKNOWN_TOPIC_ID);
    assert_eq!(r.topics[0].name, None);
    assert_eq!(r.topics[0].topic_id, id);
}

/// T-META-3: cluster authorized operations are "not computed" unless asked for; asked
/// for by a principal that is not a super user (ANONYMOUS here), they are 0, and for a
/// super user 8096.
#[tokio::test]
async fn t_meta_3_cluster_authorized_operations() {
    let broker = TestBroker::start(&[]).await;
    let mut c = broker.connect().await;
    for version in 8..=10 {
        let r = metadata(c.call(ApiKey::Metadata, version, MetadataRequest::default().with_topics(None).into()).await);
        assert_eq!(r.cluster_authorized_operations, i32::MIN);
        let req = MetadataRequest::default().with_topics(None).with_include_cluster_authorized_operations(true);
        let r = metadata(c.call(ApiKey::Metadata, version, req.into()).await);
        assert_eq!(r.cluster_authorized_operations, 0, "v{version}");
    }
    let req = DescribeClusterRequest::default().with_include_cluster_authorized_operations(true);
    assert_eq!(describe_cluster(c.call(ApiKey::DescribeCluster, 0, req.into()).await).cluster_authorized_operations, 0);
    let r = describe_cluster(c.call(ApiKey::DescribeCluster, 0, DescribeClusterRequest::default().into()).await);
    assert_eq!(r.cluster_authorized_operations, i32::MIN);

    let broker = TestBroker::start(&[("super.users", "User:ANONYMOUS")]).await;
    let mut c = broker.connect().await;
    let req = MetadataRequest::default().with_topics(None).with_include_cluster_authorized_operations(true);
    assert_eq!(metadata(c.call(ApiKey::Metadata, 9, req.into()).await).cluster_authorized_operations, 8096);
    let req = DescribeClusterRequest::default().with_include_cluster_authorized_operations(true);
    assert_eq!(
        describe_cluster(c.call(ApiKey::DescribeCluster, 1, req.into()).await).cluster_authorized_operations,
        8096
    );
}

/// T-META-4: DescribeCluster v0 and v1 describe this node; v1 endpoint type 2 is 114 and
/// any other type 115, with Kafka's messages and default fields.
#[tokio::test]
async fn t_meta_4_describe_cluster() {
    let broker = TestBroker::start(&[("node.id", "3")]).await;
    let cluster_id = broker.cluster_id_on_disk();
    let mut c = broker.connect().await;
    for version in [0, 1] {
        let r =
            describe_cluster(c.call(ApiKey::DescribeCluster, version, DescribeClusterRequest::default().into()).await);
        assert_eq!(r.error_code, 0);
        assert_eq!(r.error_message, None);
        assert_eq!(r.cluster_id.as_str(), cluster_id);
        assert_eq!(r.controller_id, BrokerId(3));
        assert_eq!(r.brokers.len(), 1);
        let b = &r.brokers[0];
        assert_eq!((b.broker_id, b.host.as_str(), b.port), (BrokerId(3), "127.0.0.1", broker.addr.port() as i32));
        assert_eq!(b.rack, None);
        assert_eq!(r.endpoint_type, 1);
    }
    let r = describe_cluster(
        c.call(ApiKey::DescribeCluster, 1, DescribeClusterRequest::default().with_endpoint_type(2).into()).await,
    );
    assert_eq!(r.error_code, error_code::MISMATCHED_ENDPOINT_TYPE);
    assert_eq!(
        r.error_message.as_deref(),
        Some("The request was sent to an endpoint of type BROKER, but we wanted an endpoint of type CONTROLLER")
    );
    assert_eq!((r.cluster_id.as_str(), r.controller_id, r.brokers.len()), ("", BrokerId(-1), 0));
    assert_eq!((r.cluster_authorized_operations, r.endpoint_type), (i32::MIN, 1));
    for bad in [0, 3, -1] {
        let r = describe_cluster(
            c.call(ApiKey::DescribeCluster, 1, DescribeClusterRequest::default().with_endpoint_type(bad).into()).await,
        );
        assert_eq!(r.error_code, error_code::UNSUPPORTED_ENDPOINT_TYPE);
        assert_eq!(r.error_message.as_deref(), Some(format!("Unsupported endpoint type {bad}").as_str()));
        assert!(r.brokers.is_empty());
    }
}

/// T-META-5: the advertised address is what clients are told, per listener.
#[tokio::test]
async fn t_meta_5_advertised_listener_is_returned() {
    let broker = TestBroker::start(&[
        ("listeners", "PLAINTEXT://127.0.0.1:0,OTHER://127.0.0.1:0"),
        ("listener.security.protocol.map", "OTHER:PLAINTEXT"),
        ("advertised.listeners", "OTHER://kafka.example.com:29092"),
    ])
    .await;
    let mut c = broker.connect().await;
    let r = metadata(c.call(ApiKey::Metadata, 1, MetadataRequest::default().with_topics(None).into()).await);
    assert_eq!((r.brokers[0].host.as_str(), r.brokers[0].port), ("127.0.0.1", broker.addr.port() as i32));
    // The second listener advertises its configured address.
    let other = common::TestClient::connect(broker_other_addr(&broker)).await;
    let mut other = other;
    let r = metadata(other.call(ApiKey::Metadata, 1, MetadataRequest::default().with_topics(None).into()).await);
    assert_eq!((r.brokers[0].host.as_str(), r.brokers[0].port), ("kafka.example.com", 29092));
    let r = describe_cluster(other.call(ApiKey::DescribeCluster, 0, DescribeClusterRequest::default().into()).await);
    assert_eq!((r.brokers[0].host.as_str(), r.brokers[0].port), ("kafka.example.com", 29092));
}

fn broker_other_addr(broker: &TestBroker) -> std::net::SocketAddr {
    broker.addrs[1]
}
