//! DescribeCluster (key 60), versions 0–1 (T-META-4).

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};
use kafka_protocol::protocol::StrBytes;
use ktb_protocol::error_code;

use super::Context;
use super::metadata::{OPERATIONS_NOT_COMPUTED, cluster_operations};

const BROKERS: i8 = 1;
const CONTROLLERS: i8 = 2;

/// Answers DescribeCluster with every live broker (T-CLUSTER-4).
pub fn handle(ctx: &Context<'_>, version: i16, req: &DescribeClusterRequest) -> DescribeClusterResponse {
    // A v0 request has no endpoint type and always means brokers.
    let endpoint_type = if version >= 1 { req.endpoint_type } else { BROKERS };
    let error = match endpoint_type {
        BROKERS => None,
        CONTROLLERS => Some((
            error_code::MISMATCHED_ENDPOINT_TYPE,
            "The request was sent to an endpoint of type BROKER, but we wanted an endpoint of type CONTROLLER"
                .to_owned(),
        )),
        other => Some((error_code::UNSUPPORTED_ENDPOINT_TYPE, format!("Unsupported endpoint type {other}"))),
    };
    if let Some((code, message)) = error {
        return DescribeClusterResponse::default()
            .with_error_code(code)
            .with_error_message(Some(StrBytes::from_string(message)))
            .with_controller_id(BrokerId(-1))
            .with_cluster_authorized_operations(OPERATIONS_NOT_COMPUTED);
    }
    let cluster = &ctx.broker.cluster;
    let brokers = ctx.live_brokers(|id, host, port| {
        DescribeClusterBroker::default().with_broker_id(id).with_host(host).with_port(port)
    });
    DescribeClusterResponse::default()
        .with_cluster_id(StrBytes::from_string(ctx.broker.cluster_id.clone()))
        .with_controller_id(BrokerId(cluster.controller_id()))
        .with_brokers(brokers)
        .with_cluster_authorized_operations(if req.include_cluster_authorized_operations {
            cluster_operations(ctx)
        } else {
            OPERATIONS_NOT_COMPUTED
        })
}
