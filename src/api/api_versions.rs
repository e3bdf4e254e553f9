//! ApiVersions (key 18), versions 0–4 (T-APIV-1..7).

use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse};
use ktb_protocol::apis::SUPPORTED_APIS;
use ktb_protocol::error_code;

/// Answers ApiVersions at a version in 0–4; the same list before and after
/// authentication (T-APIV-3). Versions outside 0–4 never reach here (T-APIV-4).
pub fn handle(version: i16, req: &ApiVersionsRequest) -> ApiVersionsResponse {
    if version >= 3
        && !(valid_software_field(&req.client_software_name) && valid_software_field(&req.client_software_version))
    {
        // T-APIV-5: 42, no API list.
        return ApiVersionsResponse::default().with_error_code(error_code::INVALID_REQUEST);
    }
    ApiVersionsResponse::default().with_api_keys(
        SUPPORTED_APIS
            .iter()
            .map(|a| ApiVersion::default().with_api_key(a.key as i16).with_min_version(a.min).with_max_version(a.max))
            .collect(),
    )
}

/// True when the request was answered with an error, which keeps a pre-auth connection in
/// the "ApiVersions or handshake" state (T-APIV-6).
pub fn is_error(resp: &ApiVersionsResponse) -> bool {
    resp.error_code != error_code::NONE
}

/// `[a-zA-Z0-9](?:[a-zA-Z0-9\-.]*[a-zA-Z0-9])?`
fn valid_software_field(s: &str) -> bool {
    let b = s.as_bytes();
    match (b.first(), b.last()) {
        (Some(first), Some(last)) => {
            first.is_ascii_alphanumeric()
                && last.is_ascii_alphanumeric()
                && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-' || *c == b'.')
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// T-APIV-5: the software-name pattern.
    #[test]
    fn t_apiv_5_software_name_pattern() {
        for ok in ["a", "apache-kafka-java", "3.9.0", "librdkafka", "a.b-c9"] {
            assert!(valid_software_field(ok), "{ok}");
        }
        for bad in ["", "-a", "a-", ".a", "a.", "a b", "a_b", "é"] {
            assert!(!valid_software_field(bad), "{bad}");
        }
    }
}
