//! The one table of APIs the broker serves, and the version rules derived from it.
//!
//! The broker's ApiVersions answer, the check that closes connections sending anything
//! else (T-WIRE-10, T-WIRE-11) and the codec's version mapping all read from here.

use kafka_protocol::messages::ApiKey;

/// One API the broker serves and the versions it accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SupportedApi {
    /// The API.
    pub key: ApiKey,
    /// The lowest version accepted.
    pub min: i16,
    /// The highest version accepted and advertised.
    pub max: i16,
}

const fn api(key: ApiKey, min: i16, max: i16) -> SupportedApi {
    SupportedApi { key, min, max }
}

/// The advertised APIs, sorted by key (T-APIV-1, SPEC §2.3).
///
/// Metadata stops at 12 and DescribeCluster at 1 although the codec knows newer
/// versions: those are the Kafka 3.9 ranges (T-WIRE-14).
pub const SUPPORTED_APIS: [SupportedApi; 11] = [
    api(ApiKey::Metadata, 0, 12),
    api(ApiKey::SaslHandshake, 0, 1),
    api(ApiKey::ApiVersions, 0, 4),
    api(ApiKey::SaslAuthenticate, 0, 2),
    api(ApiKey::CreateDelegationToken, 0, 3),
    api(ApiKey::RenewDelegationToken, 0, 2),
    api(ApiKey::ExpireDelegationToken, 0, 2),
    api(ApiKey::DescribeDelegationToken, 0, 3),
    api(ApiKey::DescribeUserScramCredentials, 0, 0),
    api(ApiKey::AlterUserScramCredentials, 0, 0),
    api(ApiKey::DescribeCluster, 0, 1),
];

/// The advertised range of `key`, if the broker serves it.
pub fn supported(key: ApiKey) -> Option<SupportedApi> {
    SUPPORTED_APIS.iter().copied().find(|a| a.key == key)
}

/// The version the codec uses for the body of `key` at wire version `version`.
///
/// Version 0 of the four delegation-token APIs is byte-identical to version 1 on the
/// wire, but the codec only knows version 1 onwards (T-WIRE-14).
pub fn body_version(key: ApiKey, version: i16) -> i16 {
    match key {
        ApiKey::CreateDelegationToken
        | ApiKey::RenewDelegationToken
        | ApiKey::ExpireDelegationToken
        | ApiKey::DescribeDelegationToken
            if version == 0 =>
        {
            1
        }
        _ => version,
    }
}

/// The request header version that `key` at `version` implies (T-WIRE-7, T-WIRE-9).
pub fn request_header_version(key: ApiKey, version: i16) -> i16 {
    key.request_header_version(version)
}

/// The response header version for `key` at `version` (T-WIRE-7): ApiVersions always 0.
pub fn response_header_version(key: ApiKey, version: i16) -> i16 {
    key.response_header_version(version)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// T-WIRE-7: header versions follow each API's first flexible version, and the
    /// ApiVersions response always uses header v0. The table is SPEC §2.3.
    #[test]
    fn t_wire_7_header_versions_follow_flexible_versions() {
        // (key, first flexible version, or None for never)
        let flexible_from = [
            (ApiKey::Metadata, Some(9)),
            (ApiKey::SaslHandshake, None),
            (ApiKey::ApiVersions, Some(3)),
            (ApiKey::SaslAuthenticate, Some(2)),
            (ApiKey::CreateDelegationToken, Some(2)),
            (ApiKey::RenewDelegationToken, Some(2)),
            (ApiKey::ExpireDelegationToken, Some(2)),
            (ApiKey::DescribeDelegationToken, Some(2)),
            (ApiKey::DescribeUserScramCredentials, Some(0)),
            (ApiKey::AlterUserScramCredentials, Some(0)),
            (ApiKey::DescribeCluster, Some(0)),
        ];
        for (key, from) in flexible_from {
            let api = supported(key).unwrap();
            for v in api.min..=api.max {
                let flexible = from.is_some_and(|f| v >= f);
                assert_eq!(request_header_version(key, v), if flexible { 2 } else { 1 }, "{key:?} v{v}");
                let resp = if key == ApiKey::ApiVersions {
                    0
                } else if flexible {
                    1
                } else {
                    0
                };
                assert_eq!(response_header_version(key, v), resp, "{key:?} v{v}");
            }
        }
    }

    /// T-APIV-1: exactly the 11 APIs of SPEC §2.3, sorted by key, with Kafka 3.9 ranges.
    #[test]
    fn t_apiv_1_the_table_is_the_spec_table() {
        let got: Vec<(i16, i16, i16)> = SUPPORTED_APIS.iter().map(|a| (a.key as i16, a.min, a.max)).collect();
        assert_eq!(
            got,
            vec![
                (3, 0, 12),
                (17, 0, 1),
                (18, 0, 4),
                (36, 0, 2),
                (38, 0, 3),
                (39, 0, 2),
                (40, 0, 2),
                (41, 0, 3),
                (50, 0, 0),
                (51, 0, 0),
                (60, 0, 1),
            ]
        );
    }

    /// T-WIRE-14: v0 of the token APIs is coded as v1; nothing else is remapped.
    #[test]
    fn t_wire_14_token_api_v0_is_coded_as_v1() {
        assert_eq!(body_version(ApiKey::CreateDelegationToken, 0), 1);
        assert_eq!(body_version(ApiKey::DescribeDelegationToken, 0), 1);
        assert_eq!(body_version(ApiKey::RenewDelegationToken, 0), 1);
        assert_eq!(body_version(ApiKey::ExpireDelegationToken, 0), 1);
        assert_eq!(body_version(ApiKey::CreateDelegationToken, 3), 3);
        assert_eq!(body_version(ApiKey::Metadata, 0), 0);
    }
}
