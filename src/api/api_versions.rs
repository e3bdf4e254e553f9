//! ApiVersions (key 18), versions 0–4 (T-APIV-1..7).
//!
//! The answer needs no broker state and the SASL state machine gives it before a
//! connection reaches the handlers, so it is built in `ktb_protocol::answers`.

use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse};

/// Answers ApiVersions at a version in 0–4 (T-APIV-3).
pub fn handle(version: i16, req: &ApiVersionsRequest) -> ApiVersionsResponse {
    ktb_protocol::answers::api_versions(version, req)
}
