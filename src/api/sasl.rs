//! SaslHandshake (17) and SaslAuthenticate (36) on a connection that is already
//! authenticated and is not re-authenticating (T-SASL-3).

use kafka_protocol::messages::{SaslAuthenticateResponse, SaslHandshakeResponse};
use kafka_protocol::protocol::StrBytes;
use ktb_protocol::error_code;

/// `{34, []}`; the connection stays open.
pub fn handshake_after_authentication() -> SaslHandshakeResponse {
    SaslHandshakeResponse::default().with_error_code(error_code::ILLEGAL_SASL_STATE)
}

/// `{34, "SaslAuthenticate request received after successful authentication"}`; the
/// connection stays open.
pub fn authenticate_after_authentication() -> SaslAuthenticateResponse {
    SaslAuthenticateResponse::default().with_error_code(error_code::ILLEGAL_SASL_STATE).with_error_message(Some(
        StrBytes::from_static_str("SaslAuthenticate request received after successful authentication"),
    ))
}
