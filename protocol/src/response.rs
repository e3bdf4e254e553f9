//! Encoding responses into frames (T-WIRE-1, T-WIRE-7, T-WIRE-8, T-APIV-4).

use bytes::BytesMut;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiKey, ApiVersionsResponse, MetadataResponse, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::Encodable;

use crate::metadata::UnknownTopics;
use crate::{apis, error_code, frame};

/// A response the codec could not encode: a broker bug, never a client's fault.
#[derive(Debug, thiserror::Error)]
#[error("cannot encode {key:?} v{version} response: {reason}")]
pub struct EncodeError {
    key: ApiKey,
    version: i16,
    reason: String,
}

/// Encodes a whole response frame: size, header (version per T-WIRE-7) and body.
pub fn encode_response(
    correlation_id: i32,
    key: ApiKey,
    version: i16,
    body: &ResponseKind,
) -> Result<BytesMut, EncodeError> {
    let err = |e: anyhow::Error| EncodeError { key, version, reason: e.to_string() };
    let mut buf = BytesMut::with_capacity(128);
    let start = frame::begin_frame(&mut buf);
    ResponseHeader::default()
        .with_correlation_id(correlation_id)
        .encode(&mut buf, apis::response_header_version(key, version))
        .map_err(err)?;
    body.encode(&mut buf, apis::body_version(key, version)).map_err(err)?;
    frame::finish_frame(&mut buf, start);
    Ok(buf)
}

/// Encodes a Metadata answer: `resp` (without topics) through the codec, with the
/// topics array `topics` writes in place of its empty one (T-LIMIT-1).
pub fn encode_metadata_response(
    correlation_id: i32,
    version: i16,
    resp: &MetadataResponse,
    topics: &UnknownTopics<'_>,
) -> Result<BytesMut, EncodeError> {
    let body_version = apis::body_version(ApiKey::Metadata, version);
    let empty = encode_response(correlation_id, ApiKey::Metadata, version, &ResponseKind::Metadata(resp.clone()))?;
    let empty_array = if body_version >= 9 { 1 } else { 4 };
    let tail = crate::metadata::bytes_after_topics(body_version);
    let Some(head) = empty.len().checked_sub(tail + empty_array).filter(|_| resp.topics.is_empty()) else {
        return Err(EncodeError {
            key: ApiKey::Metadata,
            version,
            reason: "a Metadata answer to splice must have no topics".into(),
        });
    };
    let mut out = BytesMut::with_capacity(empty.len());
    out.extend_from_slice(&empty[..head]);
    topics.encode(body_version, &mut out);
    out.extend_from_slice(&empty[empty.len() - tail..]);
    let size = (out.len() - 4) as i32;
    out[..4].copy_from_slice(&size.to_be_bytes());
    Ok(out)
}

/// The answer to ApiVersions at an unknown version: a v0 body with error 35 listing only
/// ApiVersions itself, under a v0 response header (T-APIV-4).
pub fn encode_unsupported_api_versions(correlation_id: i32) -> Result<BytesMut, EncodeError> {
    let served = apis::supported(ApiKey::ApiVersions).expect("ApiVersions is in the table");
    let body = ApiVersionsResponse::default().with_error_code(error_code::UNSUPPORTED_VERSION).with_api_keys(vec![
        ApiVersion::default()
            .with_api_key(ApiKey::ApiVersions as i16)
            .with_min_version(served.min)
            .with_max_version(served.max),
    ]);
    encode_response(correlation_id, ApiKey::ApiVersions, 0, &body.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// T-APIV-4: the byte-exact answer of SPEC §2.5 for correlation id 7.
    #[test]
    fn t_apiv_4_unsupported_version_answer_is_byte_exact() {
        let got = encode_unsupported_api_versions(7).unwrap();
        assert_eq!(
            got.as_ref(),
            &[
                0x00, 0x00, 0x00, 0x10, 0x00, 0x00, 0x00, 0x07, 0x00, 0x23, 0x00, 0x00, 0x00, 0x01, 0x00, 0x12, 0x00,
                0x00, 0x00, 0x04
            ]
        );
    }
}
