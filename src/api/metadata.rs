//! Metadata (key 3), versions 0–12, for a broker with no topics (T-META-1..3, D-18).

use kafka_protocol::messages::metadata_response::MetadataResponseBroker;
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse};
use kafka_protocol::protocol::StrBytes;
use ktb_protocol::error_code;
use ktb_protocol::metadata::{MetadataTopics, UnknownTopics};

use super::Context;

/// "Not computed" for authorized-operation fields.
pub const OPERATIONS_NOT_COMPUTED: i32 = i32::MIN;
/// The seven CLUSTER operations a super user holds: CREATE, ALTER, DESCRIBE, CLUSTER_ACTION,
/// DESCRIBE_CONFIGS, ALTER_CONFIGS, IDEMPOTENT_WRITE (T-META-3).
pub const SUPER_USER_CLUSTER_OPERATIONS: i32 =
    (1 << 5) | (1 << 7) | (1 << 8) | (1 << 9) | (1 << 10) | (1 << 11) | (1 << 12);

/// Answers Metadata: the answer without topics, and what its topics array holds, one
/// entry per distinct requested topic (T-META-2, T-LIMIT-1). `None` (close) for a topic
/// without a name below v12, which Kafka cannot parse either.
pub fn handle<'a>(
    ctx: &Context<'_>,
    version: i16,
    req: &MetadataRequest,
    topics: &'a MetadataTopics,
) -> Option<(MetadataResponse, UnknownTopics<'a>)> {
    if version < 12 && topics.any_by_id() {
        return None;
    }
    let unknown = UnknownTopics {
        topics,
        name_error: error_code::UNKNOWN_TOPIC_OR_PARTITION,
        id_error: error_code::UNKNOWN_TOPIC_ID,
    };
    let cluster = &ctx.broker.cluster;
    let brokers = ctx.live_brokers(|id, host, port| {
        MetadataResponseBroker::default().with_node_id(id).with_host(host).with_port(port)
    });
    let mut resp = MetadataResponse::default().with_brokers(brokers);
    if version >= 1 {
        resp.controller_id = BrokerId(cluster.controller_id());
    }
    if version >= 2 {
        resp.cluster_id = Some(StrBytes::from_string(ctx.broker.cluster_id.clone()));
    }
    if (8..=10).contains(&version) && req.include_cluster_authorized_operations {
        resp.cluster_authorized_operations = cluster_operations(ctx);
    }
    Some((resp, unknown))
}

/// What the connection may do on the cluster, when a request asks (T-META-3).
pub fn cluster_operations(ctx: &Context<'_>) -> i32 {
    if ctx.is_super_user() { SUPER_USER_CLUSTER_OPERATIONS } else { 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// T-META-3: 8096 is Kafka's value for the seven CLUSTER operations.
    #[test]
    fn t_meta_3_super_user_operations_value() {
        assert_eq!(SUPER_USER_CLUSTER_OPERATIONS, 8096);
    }
}
