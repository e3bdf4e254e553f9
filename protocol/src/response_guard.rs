//! The array-length guard of `guard`, applied to the responses the `ktb` client decodes
//! (T-LIMIT-7).
//!
//! A server can announce two billion ApiVersions entries in a ten-byte answer just as a
//! client can in a request, and the codec's up-front reservation would abort the `ktb`
//! process. Response arrays nest (partitions inside topics, renewers inside tokens, feature
//! lists inside ApiVersions' tagged fields), so this walk reads every field of every
//! element, in the codec's order and at the codec's version rules, to find each count
//! where the codec will read it. It runs to the end of the body, which lets the tests
//! prove the layouts against the codec's own encoder.

use kafka_protocol::messages::ApiKey;

use crate::guard::{ImplausibleLength, Reader, Truncated};

/// Why a walk stopped early.
enum Stop {
    /// The bytes ran out; the codec will fail at the same place and say so.
    Truncated,
    /// A count cannot fit in the bytes left.
    Implausible(ImplausibleLength),
}

impl From<Truncated> for Stop {
    fn from(_: Truncated) -> Self {
        Stop::Truncated
    }
}

/// Checks every array count in a response body of `key` at codec version `version`
/// (the version `apis::body_version` gives, as the codec is called with).
pub fn check_response_array_lengths(key: ApiKey, version: i16, body: &[u8]) -> Result<(), ImplausibleLength> {
    match walk(&mut Reader::new(body), key, version) {
        Ok(()) | Err(Stop::Truncated) => Ok(()),
        Err(Stop::Implausible(e)) => Err(e),
    }
}

/// Reads an array count and checks it against the bytes left, `min` bytes per element.
fn array(r: &mut Reader<'_>, flexible: bool, min: usize) -> Result<u64, Stop> {
    r.array(flexible, min)?.map_err(Stop::Implausible)
}

/// An array of INT32 (broker ids): the check bounds it, so skipping it cannot overflow.
fn int32_array(r: &mut Reader<'_>, flexible: bool) -> Result<(), Stop> {
    let n = array(r, flexible, 4)?;
    Ok(r.skip(n as usize * 4)?)
}

/// Smallest wire sizes: a string (i16 length, or compact varint), an array or bytes
/// length (i32, or compact varint), and the tagged-field count of a flexible struct.
fn min_string(flexible: bool) -> usize {
    if flexible { 1 } else { 2 }
}

fn min_array(flexible: bool) -> usize {
    if flexible { 1 } else { 4 }
}

fn min_tags(flexible: bool) -> usize {
    usize::from(flexible)
}

/// Tagged fields that are there only in flexible versions.
fn tags(r: &mut Reader<'_>, flexible: bool) -> Result<(), Stop> {
    if flexible {
        r.tagged_fields()?;
    }
    Ok(())
}

fn walk(r: &mut Reader<'_>, key: ApiKey, v: i16) -> Result<(), Stop> {
    match key {
        ApiKey::ApiVersions => api_versions(r, v),
        ApiKey::SaslHandshake => {
            r.skip(2)?; // error_code
            for _ in 0..array(r, false, 2)? {
                r.string(false)?;
            }
            Ok(())
        }
        ApiKey::SaslAuthenticate => {
            let flexible = v >= 2;
            r.skip(2)?;
            r.string(flexible)?; // error_message
            r.bytes(flexible)?; // auth_bytes
            if v >= 1 {
                r.skip(8)?; // session_lifetime_ms
            }
            tags(r, flexible)
        }
        ApiKey::Metadata => metadata(r, v),
        ApiKey::DescribeCluster => describe_cluster(r, v),
        ApiKey::CreateDelegationToken => {
            let flexible = v >= 2;
            r.skip(2)?;
            r.string(flexible)?; // principal_type
            r.string(flexible)?; // principal_name
            if v >= 3 {
                r.string(true)?; // token_requester_principal_type
                r.string(true)?; // token_requester_principal_name
            }
            r.skip(24)?; // issue, expiry, max timestamps
            r.string(flexible)?; // token_id
            r.bytes(flexible)?; // hmac
            r.skip(4)?; // throttle_time_ms
            tags(r, flexible)
        }
        ApiKey::RenewDelegationToken | ApiKey::ExpireDelegationToken => {
            r.skip(2 + 8 + 4)?; // error_code, expiry_timestamp_ms, throttle_time_ms
            tags(r, v >= 2)
        }
        ApiKey::DescribeDelegationToken => describe_delegation_token(r, v),
        ApiKey::DescribeUserScramCredentials => describe_user_scram_credentials(r),
        ApiKey::AlterUserScramCredentials => {
            r.skip(4)?; // throttle_time_ms
            for _ in 0..array(r, true, 1 + 2 + 1 + 1)? {
                r.string(true)?; // user
                r.skip(2)?;
                r.string(true)?; // error_message
                r.tagged_fields()?;
            }
            Ok(r.tagged_fields()?)
        }
        // The client decodes no other response.
        _ => Ok(()),
    }
}

fn api_versions(r: &mut Reader<'_>, v: i16) -> Result<(), Stop> {
    let flexible = v >= 3;
    r.skip(2)?; // error_code
    // api_key, min_version, max_version
    for _ in 0..array(r, flexible, 6 + min_tags(flexible))? {
        r.skip(6)?;
        tags(r, flexible)?;
    }
    if v >= 1 {
        r.skip(4)?; // throttle_time_ms
    }
    if !flexible {
        return Ok(());
    }
    // The codec decodes the known tags in place, from the stream, whatever size they
    // announce; only unknown tags are skipped by size. So must the walk.
    for _ in 0..r.uvarint()? {
        let tag = r.uvarint()?;
        let size = r.uvarint()?;
        match tag {
            // SupportedFeatures, FinalizedFeatures: name, two INT16 levels, tagged fields.
            0 | 2 => {
                for _ in 0..array(r, true, 1 + 4 + 1)? {
                    r.string(true)?;
                    r.skip(4)?;
                    r.tagged_fields()?;
                }
            }
            1 => r.skip(8)?, // FinalizedFeaturesEpoch
            3 => r.skip(1)?, // ZkMigrationReady
            _ => r.skip(size as usize)?,
        }
    }
    Ok(())
}

fn metadata(r: &mut Reader<'_>, v: i16) -> Result<(), Stop> {
    let flexible = v >= 9;
    let (s, a, t) = (min_string(flexible), min_array(flexible), min_tags(flexible));
    if v >= 3 {
        r.skip(4)?; // throttle_time_ms
    }
    // node_id, host, port, rack (v1+)
    let broker = 4 + s + 4 + if v >= 1 { s } else { 0 } + t;
    for _ in 0..array(r, flexible, broker)? {
        r.skip(4)?;
        r.string(flexible)?;
        r.skip(4)?;
        if v >= 1 {
            r.string(flexible)?;
        }
        tags(r, flexible)?;
    }
    if v >= 2 {
        r.string(flexible)?; // cluster_id
    }
    if v >= 1 {
        r.skip(4)?; // controller_id
    }
    // error_code, name, topic_id (v10+), is_internal (v1+), partitions,
    // topic_authorized_operations (v8+)
    let topic = 2 + s + if v >= 10 { 16 } else { 0 } + if v >= 1 { 1 } else { 0 } + a + if v >= 8 { 4 } else { 0 } + t;
    // error_code, partition_index, leader_id, leader_epoch (v7+), replica_nodes,
    // isr_nodes, offline_replicas (v5+)
    let partition = 2 + 4 + 4 + if v >= 7 { 4 } else { 0 } + a + a + if v >= 5 { a } else { 0 } + t;
    for _ in 0..array(r, flexible, topic)? {
        r.skip(2)?;
        r.string(flexible)?;
        if v >= 10 {
            r.skip(16)?;
        }
        if v >= 1 {
            r.skip(1)?;
        }
        for _ in 0..array(r, flexible, partition)? {
            r.skip(10)?;
            if v >= 7 {
                r.skip(4)?;
            }
            int32_array(r, flexible)?;
            int32_array(r, flexible)?;
            if v >= 5 {
                int32_array(r, flexible)?;
            }
            tags(r, flexible)?;
        }
        if v >= 8 {
            r.skip(4)?;
        }
        tags(r, flexible)?;
    }
    if (8..=10).contains(&v) {
        r.skip(4)?; // cluster_authorized_operations
    }
    if v >= 13 {
        r.skip(2)?; // error_code
    }
    tags(r, flexible)
}

fn describe_cluster(r: &mut Reader<'_>, v: i16) -> Result<(), Stop> {
    r.skip(4 + 2)?; // throttle_time_ms, error_code
    r.string(true)?; // error_message
    if v >= 1 {
        r.skip(1)?; // endpoint_type
    }
    r.string(true)?; // cluster_id
    r.skip(4)?; // controller_id
    // broker_id, host, port, rack, is_fenced (v2+)
    let fenced = usize::from(v >= 2);
    for _ in 0..array(r, true, 4 + 1 + 4 + 1 + fenced + 1)? {
        r.skip(4)?;
        r.string(true)?;
        r.skip(4)?;
        r.string(true)?;
        r.skip(fenced)?;
        r.tagged_fields()?;
    }
    r.skip(4)?; // cluster_authorized_operations
    Ok(r.tagged_fields()?)
}

fn describe_delegation_token(r: &mut Reader<'_>, v: i16) -> Result<(), Stop> {
    let flexible = v >= 2;
    let (s, a, t) = (min_string(flexible), min_array(flexible), min_tags(flexible));
    r.skip(2)?; // error_code
    // principal type and name, requester type and name (v3+), three timestamps,
    // token_id, hmac (bytes, sized like an array), renewers
    let token = s + s + if v >= 3 { 2 } else { 0 } + 24 + s + a + a + t;
    for _ in 0..array(r, flexible, token)? {
        r.string(flexible)?;
        r.string(flexible)?;
        if v >= 3 {
            r.string(true)?;
            r.string(true)?;
        }
        r.skip(24)?;
        r.string(flexible)?;
        r.bytes(flexible)?;
        for _ in 0..array(r, flexible, s + s + t)? {
            r.string(flexible)?;
            r.string(flexible)?;
            tags(r, flexible)?;
        }
        tags(r, flexible)?;
    }
    r.skip(4)?; // throttle_time_ms
    tags(r, flexible)
}

fn describe_user_scram_credentials(r: &mut Reader<'_>) -> Result<(), Stop> {
    r.skip(4 + 2)?; // throttle_time_ms, error_code
    r.string(true)?; // error_message
    // user, error_code, error_message, credential_infos
    for _ in 0..array(r, true, 1 + 2 + 1 + 1 + 1)? {
        r.string(true)?;
        r.skip(2)?;
        r.string(true)?;
        // mechanism, iterations
        for _ in 0..array(r, true, 1 + 4 + 1)? {
            r.skip(5)?;
            r.tagged_fields()?;
        }
        r.tagged_fields()?;
    }
    Ok(r.tagged_fields()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apis::{SUPPORTED_APIS, body_version};
    use bytes::{Bytes, BytesMut};
    use kafka_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
    use kafka_protocol::messages::api_versions_response::{ApiVersion, FinalizedFeatureKey, SupportedFeatureKey};
    use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
    use kafka_protocol::messages::describe_delegation_token_response::{
        DescribedDelegationToken, DescribedDelegationTokenRenewer,
    };
    use kafka_protocol::messages::describe_user_scram_credentials_response::{
        CredentialInfo, DescribeUserScramCredentialsResult,
    };
    use kafka_protocol::messages::metadata_response::{
        MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
    };
    use kafka_protocol::messages::*;
    use kafka_protocol::protocol::StrBytes;
    use std::collections::BTreeMap;

    fn s(x: &str) -> StrBytes {
        StrBytes::from_string(x.to_owned())
    }

    /// An unknown tagged field, kept only by flexible versions.
    fn unknown() -> BTreeMap<i32, Bytes> {
        BTreeMap::from([(99, Bytes::from_static(b"xyz"))])
    }

    /// A default response of `key`.
    fn default_response(key: ApiKey) -> ResponseKind {
        match key {
            ApiKey::Metadata => MetadataResponse::default().into(),
            ApiKey::SaslHandshake => SaslHandshakeResponse::default().into(),
            ApiKey::ApiVersions => ApiVersionsResponse::default().into(),
            ApiKey::SaslAuthenticate => SaslAuthenticateResponse::default().into(),
            ApiKey::CreateDelegationToken => CreateDelegationTokenResponse::default().into(),
            ApiKey::RenewDelegationToken => RenewDelegationTokenResponse::default().into(),
            ApiKey::ExpireDelegationToken => ExpireDelegationTokenResponse::default().into(),
            ApiKey::DescribeDelegationToken => DescribeDelegationTokenResponse::default().into(),
            ApiKey::DescribeUserScramCredentials => DescribeUserScramCredentialsResponse::default().into(),
            ApiKey::AlterUserScramCredentials => AlterUserScramCredentialsResponse::default().into(),
            ApiKey::DescribeCluster => DescribeClusterResponse::default().into(),
            other => panic!("not decoded by the client: {other:?}"),
        }
    }

    /// A response of `key` at codec version `v` with entries in every array, every
    /// nullable field set and unknown tagged fields at every level, so that a walk that
    /// misplaces one field cannot end where the body ends.
    fn full_response(key: ApiKey, v: i16) -> ResponseKind {
        match key {
            ApiKey::ApiVersions => {
                let mut r = ApiVersionsResponse::default()
                    .with_throttle_time_ms(5)
                    .with_api_keys(vec![
                        ApiVersion::default()
                            .with_api_key(3)
                            .with_max_version(12)
                            .with_unknown_tagged_fields(unknown()),
                        ApiVersion::default().with_api_key(18).with_min_version(1).with_max_version(4),
                    ])
                    .with_unknown_tagged_fields(unknown());
                if v >= 3 {
                    r = r
                        .with_supported_features(vec![
                            SupportedFeatureKey::default()
                                .with_name(s("metadata.version"))
                                .with_min_version(1)
                                .with_max_version(21)
                                .with_unknown_tagged_fields(unknown()),
                        ])
                        .with_finalized_features_epoch(7)
                        .with_finalized_features(vec![
                            FinalizedFeatureKey::default()
                                .with_name(s("kraft.version"))
                                .with_min_version_level(0)
                                .with_max_version_level(1),
                            FinalizedFeatureKey::default().with_name(s("group.version")),
                        ])
                        .with_zk_migration_ready(true);
                }
                r.into()
            }
            ApiKey::SaslHandshake => {
                SaslHandshakeResponse::default().with_mechanisms(vec![s("SCRAM-SHA-256"), s("PLAIN")]).into()
            }
            ApiKey::SaslAuthenticate => SaslAuthenticateResponse::default()
                .with_error_code(58)
                .with_error_message(Some(s("bad")))
                .with_auth_bytes(Bytes::from_static(b"v=abc"))
                .with_session_lifetime_ms(1000)
                .with_unknown_tagged_fields(unknown())
                .into(),
            ApiKey::Metadata => {
                let partition = |i| {
                    MetadataResponsePartition::default()
                        .with_partition_index(i)
                        .with_leader_id(101.into())
                        .with_leader_epoch(3)
                        .with_replica_nodes(vec![101.into(), 102.into(), 103.into()])
                        .with_isr_nodes(vec![101.into(), 102.into()])
                        .with_offline_replicas(vec![103.into()])
                        .with_unknown_tagged_fields(unknown())
                };
                let mut topic = MetadataResponseTopic::default()
                    .with_name(Some(s("orders").into()))
                    .with_is_internal(true)
                    .with_partitions(vec![partition(0), partition(1)])
                    .with_unknown_tagged_fields(unknown());
                if v >= 8 {
                    topic = topic.with_topic_authorized_operations(0x0f);
                }
                let broker = |id: i32| {
                    MetadataResponseBroker::default()
                        .with_node_id(id.into())
                        .with_host(s("broker.example"))
                        .with_port(9092)
                        .with_rack(Some(s("rack-a")))
                        .with_unknown_tagged_fields(unknown())
                };
                let mut r = MetadataResponse::default()
                    .with_throttle_time_ms(1)
                    .with_brokers(vec![broker(1), broker(2)])
                    .with_cluster_id(Some(s("cluster")))
                    .with_controller_id(1.into())
                    .with_topics(vec![topic, MetadataResponseTopic::default().with_name(Some(s("t").into()))])
                    .with_unknown_tagged_fields(unknown());
                if (8..=10).contains(&v) {
                    r = r.with_cluster_authorized_operations(0x0f);
                }
                r.into()
            }
            ApiKey::DescribeCluster => {
                let broker = |id: i32| {
                    DescribeClusterBroker::default()
                        .with_broker_id(id.into())
                        .with_host(s("broker.example"))
                        .with_port(9092)
                        .with_rack(Some(s("rack-a")))
                        .with_is_fenced(v >= 2)
                        .with_unknown_tagged_fields(unknown())
                };
                DescribeClusterResponse::default()
                    .with_error_message(Some(s("none")))
                    .with_endpoint_type(1)
                    .with_cluster_id(s("cluster"))
                    .with_controller_id(1.into())
                    .with_brokers(vec![broker(1), DescribeClusterBroker::default().with_host(s("h"))])
                    .with_unknown_tagged_fields(unknown())
                    .into()
            }
            ApiKey::CreateDelegationToken => {
                let mut r = CreateDelegationTokenResponse::default()
                    .with_principal_type(s("User"))
                    .with_principal_name(s("alice"))
                    .with_issue_timestamp_ms(1)
                    .with_expiry_timestamp_ms(2)
                    .with_max_timestamp_ms(3)
                    .with_token_id(s("token-id"))
                    .with_hmac(Bytes::from_static(&[1; 32]))
                    .with_throttle_time_ms(4)
                    .with_unknown_tagged_fields(unknown());
                if v >= 3 {
                    r = r.with_token_requester_principal_type(s("User")).with_token_requester_principal_name(s("bob"));
                }
                r.into()
            }
            ApiKey::RenewDelegationToken => RenewDelegationTokenResponse::default()
                .with_expiry_timestamp_ms(9)
                .with_unknown_tagged_fields(unknown())
                .into(),
            ApiKey::ExpireDelegationToken => ExpireDelegationTokenResponse::default()
                .with_expiry_timestamp_ms(9)
                .with_unknown_tagged_fields(unknown())
                .into(),
            ApiKey::DescribeDelegationToken => {
                let renewer = |name: &str| {
                    DescribedDelegationTokenRenewer::default()
                        .with_principal_type(s("User"))
                        .with_principal_name(s(name))
                        .with_unknown_tagged_fields(unknown())
                };
                let token = |renewers| {
                    let t = DescribedDelegationToken::default()
                        .with_principal_type(s("User"))
                        .with_principal_name(s("alice"))
                        .with_issue_timestamp(1)
                        .with_expiry_timestamp(2)
                        .with_max_timestamp(3)
                        .with_token_id(s("token-id"))
                        .with_hmac(Bytes::from_static(&[2; 32]))
                        .with_renewers(renewers)
                        .with_unknown_tagged_fields(unknown());
                    if v >= 3 {
                        t.with_token_requester_principal_type(s("User")).with_token_requester_principal_name(s("bob"))
                    } else {
                        t
                    }
                };
                DescribeDelegationTokenResponse::default()
                    .with_tokens(vec![token(vec![renewer("bob"), renewer("carol")]), token(vec![])])
                    .with_unknown_tagged_fields(unknown())
                    .into()
            }
            ApiKey::DescribeUserScramCredentials => {
                let info = |mechanism, iterations| {
                    CredentialInfo::default()
                        .with_mechanism(mechanism)
                        .with_iterations(iterations)
                        .with_unknown_tagged_fields(unknown())
                };
                DescribeUserScramCredentialsResponse::default()
                    .with_error_message(Some(s("partial")))
                    .with_results(vec![
                        DescribeUserScramCredentialsResult::default()
                            .with_user(s("alice"))
                            .with_credential_infos(vec![info(1, 8192), info(2, 4096)])
                            .with_unknown_tagged_fields(unknown()),
                        DescribeUserScramCredentialsResult::default()
                            .with_user(s("nobody"))
                            .with_error_code(91)
                            .with_error_message(Some(s("unknown user"))),
                    ])
                    .with_unknown_tagged_fields(unknown())
                    .into()
            }
            ApiKey::AlterUserScramCredentials => AlterUserScramCredentialsResponse::default()
                .with_results(vec![
                    AlterUserScramCredentialsResult::default()
                        .with_user(s("alice"))
                        .with_error_message(Some(s("ok")))
                        .with_unknown_tagged_fields(unknown()),
                ])
                .with_unknown_tagged_fields(unknown())
                .into(),
            other => panic!("not decoded by the client: {other:?}"),
        }
    }

    fn encode(body: &ResponseKind, v: i16) -> Vec<u8> {
        let mut buf = BytesMut::new();
        body.encode(&mut buf, v).expect("valid responses encode");
        buf.to_vec()
    }

    /// Every served API at every codec version, with a default and a full response body.
    fn valid_bodies() -> Vec<(ApiKey, i16, Vec<u8>)> {
        let mut out = Vec::new();
        for api in SUPPORTED_APIS {
            for wire in api.min..=api.max {
                let v = body_version(api.key, wire);
                out.push((api.key, v, encode(&default_response(api.key), v)));
                out.push((api.key, v, encode(&full_response(api.key, v), v)));
            }
        }
        out
    }

    /// T-LIMIT-7: every valid response passes, and the walk reads exactly its bytes (a
    /// walk out of step with the codec would stop short or run out instead).
    #[test]
    fn t_limit_7_every_valid_response_passes_and_is_walked_to_its_end() {
        for (key, v, body) in valid_bodies() {
            let mut r = Reader::new(&body);
            assert!(matches!(walk(&mut r, key, v), Ok(())), "{key:?} v{v}: walk stopped early");
            assert_eq!(r.remaining(), 0, "{key:?} v{v}: walk ended {} bytes early", r.remaining());
            assert!(check_response_array_lengths(key, v, &body).is_ok(), "{key:?} v{v}");
            let decoded = ResponseKind::decode(key, &mut Bytes::from(body), v);
            assert!(decoded.is_ok(), "{key:?} v{v}: the sample does not decode");
        }
    }

    /// T-LIMIT-7: a valid response cut short anywhere is an error: refused here when a
    /// count no longer fits, otherwise left to the codec, which then reports it.
    #[test]
    fn t_limit_7_truncated_responses_get_an_error() {
        for (key, v, body) in valid_bodies() {
            for cut in 0..body.len() {
                let cut_body = &body[..cut];
                if check_response_array_lengths(key, v, cut_body).is_ok() {
                    let decoded = ResponseKind::decode(key, &mut Bytes::copy_from_slice(cut_body), v);
                    assert!(decoded.is_err(), "{key:?} v{v} cut at {cut} decoded");
                }
            }
        }
    }

    /// T-LIMIT-7: ApiVersions v0-2 with an INT32 count of 2^31-1 entries.
    #[test]
    fn t_limit_7_huge_api_versions_count_is_refused_v0() {
        let body = [0, 0, 0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 0];
        for v in 0..=2 {
            assert!(check_response_array_lengths(ApiKey::ApiVersions, v, &body).is_err(), "v{v}");
        }
        // One entry with its six bytes is plausible.
        let body = [0, 0, 0, 0, 0, 1, 0, 18, 0, 0, 0, 4];
        assert!(check_response_array_lengths(ApiKey::ApiVersions, 0, &body).is_ok());
    }

    /// T-LIMIT-7: ApiVersions v3+ with a varint count near 2^32, in the body and in the
    /// SupportedFeatures and FinalizedFeatures tagged fields the codec decodes in place.
    #[test]
    fn t_limit_7_huge_api_versions_count_is_refused_v3() {
        let huge = [0xff, 0xff, 0xff, 0xff, 0x0f];
        let mut body = vec![0, 0];
        body.extend_from_slice(&huge);
        body.extend_from_slice(&[0; 8]);
        for v in 3..=4 {
            assert!(check_response_array_lengths(ApiKey::ApiVersions, v, &body).is_err(), "v{v}");
        }
        for tag in [0, 2] {
            // error_code, no api_keys, throttle_time_ms, one tagged field whose announced
            // size (1) the codec ignores for a known tag.
            let mut body = vec![0, 0, 1, 0, 0, 0, 0, 1, tag, 1];
            body.extend_from_slice(&huge);
            body.extend_from_slice(&[0; 8]);
            assert!(check_response_array_lengths(ApiKey::ApiVersions, 3, &body).is_err(), "tag {tag}");
        }
        // The same bytes under an unknown tag are skipped by size, as the codec does.
        let mut body = vec![0, 0, 1, 0, 0, 0, 0, 1, 9, 5];
        body.extend_from_slice(&huge);
        assert!(check_response_array_lengths(ApiKey::ApiVersions, 3, &body).is_ok());
    }

    /// T-LIMIT-7: the renewers of a token sit behind its strings, timestamps and HMAC; a
    /// huge count there is refused at every version although the token count is fine.
    #[test]
    fn t_limit_7_nested_renewers_in_describe_delegation_token_are_checked() {
        for v in 1..=3 {
            let flexible = v >= 2;
            // One token with no renewers: its renewer count is the last thing before the
            // token's tagged fields (flexible), the throttle time and the body's tags.
            let token = DescribedDelegationToken::default()
                .with_principal_type(s("User"))
                .with_principal_name(s("alice"))
                .with_token_id(s("id"))
                .with_hmac(Bytes::from_static(&[3; 16]));
            let mut body = encode(&DescribeDelegationTokenResponse::default().with_tokens(vec![token]).into(), v);
            let tail = if flexible { 1 + 4 + 1 } else { 4 };
            let at = body.len() - tail - min_array(flexible);
            let huge: &[u8] = if flexible { &[0xff, 0xff, 0xff, 0xff, 0x0f] } else { &[0x7f, 0xff, 0xff, 0xff] };
            body.splice(at..at + min_array(flexible), huge.iter().copied());
            assert!(check_response_array_lengths(ApiKey::DescribeDelegationToken, v, &body).is_err(), "v{v}");
        }
    }

    /// T-LIMIT-7: Metadata's replica list sits inside a partition inside a topic.
    #[test]
    fn t_limit_7_nested_metadata_replicas_are_checked() {
        for v in [0, 4, 9, 12] {
            let flexible = v >= 9;
            // One topic with one partition whose arrays are all empty; at v0-4 the last
            // array before the topic's end is isr_nodes, at v5+ offline_replicas.
            let topic = MetadataResponseTopic::default()
                .with_name(Some(s("t").into()))
                .with_partitions(vec![MetadataResponsePartition::default()]);
            let mut body = encode(&MetadataResponse::default().with_topics(vec![topic]).into(), v);
            let mut tail = min_tags(flexible) + if v >= 8 { 4 } else { 0 } + min_tags(flexible);
            tail += if (8..=10).contains(&v) { 4 } else { 0 } + min_tags(flexible);
            let at = body.len() - tail - min_array(flexible);
            let huge: &[u8] = if flexible { &[0xff, 0xff, 0xff, 0xff, 0x0f] } else { &[0x7f, 0xff, 0xff, 0xff] };
            body.splice(at..at + min_array(flexible), huge.iter().copied());
            assert!(check_response_array_lengths(ApiKey::Metadata, v, &body).is_err(), "v{v}");
        }
    }

    /// T-LIMIT-7: the credential infos of a user inside DescribeUserScramCredentials.
    #[test]
    fn t_limit_7_nested_scram_credential_infos_are_checked() {
        let result = DescribeUserScramCredentialsResult::default().with_user(s("alice"));
        let mut body = encode(&DescribeUserScramCredentialsResponse::default().with_results(vec![result]).into(), 0);
        // credential_infos count, then the result's and the body's tagged fields.
        let at = body.len() - 3;
        body.splice(at..at + 1, [0xff, 0xff, 0xff, 0xff, 0x0f]);
        assert!(check_response_array_lengths(ApiKey::DescribeUserScramCredentials, 0, &body).is_err());
    }
}
