//! DescribeDelegationToken (key 41), versions 0–3 (SPEC §4.9).

use kafka_protocol::messages::DescribeDelegationTokenResponse;

/// An error answer: the code and no tokens.
pub fn refused(code: i16) -> DescribeDelegationTokenResponse {
    DescribeDelegationTokenResponse::default().with_error_code(code)
}
