//! Answers that need no broker state: the ApiVersions answer and the error answer of every
//! served API. Both the SASL state machine (before a connection may reach the handlers)
//! and the handlers use them, so they live here, below both.

use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{
    AlterUserScramCredentialsResponse, ApiKey, ApiVersionsRequest, ApiVersionsResponse, BrokerId,
    CreateDelegationTokenResponse, DescribeClusterResponse, DescribeDelegationTokenResponse,
    DescribeUserScramCredentialsResponse, ExpireDelegationTokenResponse, MetadataResponse,
    RenewDelegationTokenResponse, ResponseKind, SaslAuthenticateResponse, SaslHandshakeResponse,
};
use kafka_protocol::protocol::StrBytes;

use crate::apis::SUPPORTED_APIS;
use crate::error_code;
use crate::request::Header;

/// Answers ApiVersions at a version in 0–4; the same list before and after
/// authentication (T-APIV-3). Versions outside 0–4 never reach here (T-APIV-4).
pub fn api_versions(version: i16, req: &ApiVersionsRequest) -> ApiVersionsResponse {
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

/// The error code an answer carries at its top level (for AlterUserScramCredentials, the
/// first failed user's; for Metadata, none): what metrics count it under.
pub fn top_level_error_code(resp: &ResponseKind) -> i16 {
    match resp {
        ResponseKind::ApiVersions(r) => r.error_code,
        ResponseKind::SaslHandshake(r) => r.error_code,
        ResponseKind::SaslAuthenticate(r) => r.error_code,
        ResponseKind::CreateDelegationToken(r) => r.error_code,
        ResponseKind::RenewDelegationToken(r) => r.error_code,
        ResponseKind::ExpireDelegationToken(r) => r.error_code,
        ResponseKind::DescribeDelegationToken(r) => r.error_code,
        ResponseKind::DescribeUserScramCredentials(r) => r.error_code,
        ResponseKind::AlterUserScramCredentials(r) => {
            r.results.iter().map(|u| u.error_code).find(|c| *c != error_code::NONE).unwrap_or(error_code::NONE)
        }
        ResponseKind::DescribeCluster(r) => r.error_code,
        _ => error_code::NONE,
    }
}

/// True when ApiVersions was answered with an error, which keeps a pre-auth connection in
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

/// A Create refusal naming `owner` and `requester` (`(type, name)`; the requester only
/// from v3): the code, timestamps −1, empty token id and HMAC (T-CREATE-5).
pub fn create_token_refused(
    version: i16,
    owner: (&str, &str),
    requester: (&str, &str),
    code: i16,
) -> CreateDelegationTokenResponse {
    let text = |s: &str| StrBytes::from_string(s.to_owned());
    let mut resp = CreateDelegationTokenResponse::default()
        .with_error_code(code)
        .with_principal_type(text(owner.0))
        .with_principal_name(text(owner.1))
        .with_issue_timestamp_ms(-1)
        .with_expiry_timestamp_ms(-1)
        .with_max_timestamp_ms(-1);
    if version >= 3 {
        resp.token_requester_principal_type = text(requester.0);
        resp.token_requester_principal_name = text(requester.1);
    }
    resp
}

/// A Renew refusal: the code and expiry −1 (T-RENEW-4, D-6).
pub fn renew_token_refused(code: i16) -> RenewDelegationTokenResponse {
    RenewDelegationTokenResponse::default().with_error_code(code).with_expiry_timestamp_ms(-1)
}

/// An Expire refusal: the code and expiry −1 (D-6).
pub fn expire_token_refused(code: i16) -> ExpireDelegationTokenResponse {
    ExpireDelegationTokenResponse::default().with_error_code(code).with_expiry_timestamp_ms(-1)
}

/// A Describe refusal with no tokens.
pub fn describe_tokens_refused(code: i16) -> DescribeDelegationTokenResponse {
    DescribeDelegationTokenResponse::default().with_error_code(code)
}

/// The error answer of an API for a request that cannot be served in the connection's
/// state (SPEC §3.1: 34 during authentication). It carries no per-entry results, whatever
/// the request held (T-LIMIT-2, D-25), so it needs only the header. `None` for an API
/// outside §2.3.
pub fn error_response(header: &Header, code: i16, message: &str) -> Option<ResponseKind> {
    let msg = || Some(StrBytes::from_string(message.to_owned()));
    Some(match header.api_key {
        ApiKey::ApiVersions => ApiVersionsResponse::default().with_error_code(code).into(),
        ApiKey::SaslHandshake => SaslHandshakeResponse::default().with_error_code(code).into(),
        ApiKey::SaslAuthenticate => {
            SaslAuthenticateResponse::default().with_error_code(code).with_error_message(msg()).into()
        }
        // Metadata has no top-level error code: an answer with no topics and no brokers.
        ApiKey::Metadata => MetadataResponse::default().into(),
        ApiKey::DescribeCluster => DescribeClusterResponse::default()
            .with_error_code(code)
            .with_error_message(msg())
            .with_controller_id(BrokerId(-1))
            .into(),
        // The connection has no principal yet: Kafka names the anonymous one.
        ApiKey::CreateDelegationToken => {
            create_token_refused(header.version, ("User", "ANONYMOUS"), ("User", "ANONYMOUS"), code).into()
        }
        ApiKey::RenewDelegationToken => renew_token_refused(code).into(),
        ApiKey::ExpireDelegationToken => expire_token_refused(code).into(),
        ApiKey::DescribeDelegationToken => describe_tokens_refused(code).into(),
        ApiKey::DescribeUserScramCredentials => {
            DescribeUserScramCredentialsResponse::default().with_error_code(code).with_error_message(msg()).into()
        }
        ApiKey::AlterUserScramCredentials => AlterUserScramCredentialsResponse::default().into(),
        _ => return None,
    })
}

/// Kafka's upper-case name of an API (`DESCRIBE_CLUSTER`), as its error messages use.
pub fn kafka_name(key: ApiKey) -> String {
    let mut out = String::new();
    for (i, c) in format!("{key:?}").chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
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

    #[test]
    fn kafka_names() {
        assert_eq!(kafka_name(ApiKey::DescribeCluster), "DESCRIBE_CLUSTER");
        assert_eq!(kafka_name(ApiKey::Metadata), "METADATA");
    }
}
