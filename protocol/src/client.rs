//! The client half of the codec: encode requests, decode responses.
//!
//! Used by the `ktb` command line and by the tests, so both speak to the broker through
//! the same version rules the broker itself applies.

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use crate::response_guard::check_response_array_lengths;
use crate::{apis, frame};

/// A request or response that the codec could not handle.
#[derive(Debug, thiserror::Error)]
#[error("{key:?} v{version}: {reason}")]
pub struct CodecError {
    key: ApiKey,
    version: i16,
    reason: String,
}

/// Encodes a whole request frame: size, header (version per T-WIRE-7) and body.
pub fn encode_request(
    key: ApiKey,
    version: i16,
    correlation_id: i32,
    client_id: &str,
    body: &kafka_protocol::messages::RequestKind,
) -> Result<BytesMut, CodecError> {
    let err = |e: anyhow::Error| CodecError { key, version, reason: e.to_string() };
    let mut buf = BytesMut::with_capacity(64);
    let start = frame::begin_frame(&mut buf);
    RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_string(client_id.to_owned())))
        .encode(&mut buf, apis::request_header_version(key, version))
        .map_err(err)?;
    body.encode(&mut buf, apis::body_version(key, version)).map_err(err)?;
    frame::finish_frame(&mut buf, start);
    Ok(buf)
}

/// Decodes a response frame (without its size prefix) into its correlation id and body.
///
/// The body's array counts are checked against its length first (T-LIMIT-7): the codec
/// reserves room for a count before reading it, so a hostile server could otherwise make
/// the caller abort on a failed allocation.
pub fn decode_response(key: ApiKey, version: i16, mut frame: Bytes) -> Result<(i32, ResponseKind), CodecError> {
    let err = |e: anyhow::Error| CodecError { key, version, reason: e.to_string() };
    let header = ResponseHeader::decode(&mut frame, apis::response_header_version(key, version)).map_err(err)?;
    let body_version = apis::body_version(key, version);
    check_response_array_lengths(key, body_version, &frame).map_err(|e| err(e.into()))?;
    let body = ResponseKind::decode(key, &mut frame, body_version).map_err(err)?;
    Ok((header.correlation_id, body))
}
