//! ExpireDelegationToken (key 40), versions 0–2 (SPEC §4.8).

use kafka_protocol::messages::ExpireDelegationTokenResponse;

/// An error answer: the code and expiry −1 (D-6).
pub fn refused(code: i16) -> ExpireDelegationTokenResponse {
    ExpireDelegationTokenResponse::default().with_error_code(code).with_expiry_timestamp_ms(-1)
}
