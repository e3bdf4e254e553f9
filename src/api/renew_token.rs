//! RenewDelegationToken (key 39), versions 0–2 (SPEC §4.7).

use kafka_protocol::messages::RenewDelegationTokenResponse;

/// An error answer: the code and expiry −1 (T-RENEW-4, D-6).
pub fn refused(code: i16) -> RenewDelegationTokenResponse {
    RenewDelegationTokenResponse::default().with_error_code(code).with_expiry_timestamp_ms(-1)
}
