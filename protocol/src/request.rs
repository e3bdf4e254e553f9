//! Turning one frame into a decoded request (T-WIRE-3, T-WIRE-7..12, T-APIV-4).

use bytes::{Buf, Bytes};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind};
use kafka_protocol::protocol::Decodable;

use crate::apis;
use crate::guard::check_array_lengths;
use crate::metadata::MetadataTopics;

/// The parts of a request header the broker uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The API.
    pub api_key: ApiKey,
    /// The API version on the wire (before any T-WIRE-14 mapping).
    pub version: i16,
    /// Echoed in the response (T-WIRE-8).
    pub correlation_id: i32,
    /// The client's id; a null id is read as empty.
    pub client_id: String,
}

/// A frame the broker can act on.
#[derive(Debug)]
pub enum Request {
    /// ApiVersions at a version outside 0–4: answered without reading the body (T-APIV-4).
    UnsupportedApiVersions(Header),
    /// A served API at a served version with a body that decoded. Boxed: the largest
    /// request type dwarfs the rest of the enum.
    Api(Header, Box<RequestKind>),
    /// A Metadata request: its fields without the topics, and the topics read in place
    /// (T-LIMIT-1: see [`crate::metadata`]). Metadata never comes as [`Request::Api`].
    Metadata(Header, Box<kafka_protocol::messages::MetadataRequest>, MetadataTopics),
    /// A served API at a served version whose body the caller chose not to decode (a
    /// connection that has not authenticated gets an error answer that needs no body,
    /// T-LIMIT-2).
    Undecoded(Header),
}

/// Why a frame is not a request the broker serves. Every variant closes the connection
/// with no response; the variants exist for the log.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// Fewer bytes than an API key and version.
    #[error("frame too short for a request header")]
    TooShort,
    /// An API key Kafka does not define (T-WIRE-10).
    #[error("unknown API key {0}")]
    UnknownApiKey(i16),
    /// A Kafka API the broker does not serve, or a version outside its range (T-WIRE-11).
    #[error("{key:?} v{version} is not served")]
    NotServed {
        /// The API.
        key: ApiKey,
        /// The version asked for.
        version: i16,
    },
    /// The header did not parse (T-WIRE-3).
    #[error("bad request header: {0}")]
    Header(String),
    /// The body did not parse (T-WIRE-12).
    #[error("bad {key:?} v{version} body: {reason}")]
    Body {
        /// The API.
        key: ApiKey,
        /// The version on the wire.
        version: i16,
        /// What the decoder said.
        reason: String,
    },
}

/// Decodes one frame (without its size prefix) into a request.
pub fn parse_request(frame: Bytes) -> Result<Request, RequestError> {
    parse_request_with(frame, |_| true)
}

/// Decodes one frame, decoding the body only of the APIs for which `decode_body` says
/// so; the others come back as [`Request::Undecoded`] after their header is checked.
pub fn parse_request_with(mut frame: Bytes, decode_body: impl Fn(ApiKey) -> bool) -> Result<Request, RequestError> {
    if frame.len() < 4 {
        return Err(RequestError::TooShort);
    }
    let raw_key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let key = ApiKey::try_from(raw_key).map_err(|_| RequestError::UnknownApiKey(raw_key))?;
    let served = apis::supported(key).ok_or(RequestError::NotServed { key, version })?;
    let in_range = (served.min..=served.max).contains(&version);
    if !in_range && key != ApiKey::ApiVersions {
        return Err(RequestError::NotServed { key, version });
    }

    // T-WIRE-9: for ApiVersions at any version, even an unknown one, the header version
    // follows the usual rule (v3 and above use header v2).
    let header_version = apis::request_header_version(key, version);
    let raw = RequestHeader::decode(&mut frame, header_version).map_err(|e| RequestError::Header(e.to_string()))?;
    let header = Header {
        api_key: key,
        version,
        correlation_id: raw.correlation_id,
        client_id: raw.client_id.map(|s| s.to_string()).unwrap_or_default(),
    };
    if !in_range {
        return Ok(Request::UnsupportedApiVersions(header));
    }
    if !decode_body(key) {
        return Ok(Request::Undecoded(header));
    }

    let body_version = apis::body_version(key, version);
    let body_err = |reason: String| RequestError::Body { key, version, reason };
    check_array_lengths(key, body_version, frame.chunk()).map_err(|e| body_err(e.to_string()))?;
    if key == ApiKey::Metadata {
        let (req, topics) = MetadataTopics::parse(body_version, frame).map_err(|e| body_err(e.to_string()))?;
        return Ok(Request::Metadata(header, Box::new(req), topics));
    }
    // T-WIRE-12: bytes left after a body that decoded are ignored.
    let body = RequestKind::decode(key, &mut frame, body_version).map_err(|e| body_err(e.to_string()))?;
    Ok(Request::Api(header, Box::new(body)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::encode_request;
    use kafka_protocol::messages::{ApiVersionsRequest, CreateDelegationTokenRequest, MetadataRequest};

    fn frame_body(mut framed: bytes::BytesMut) -> Bytes {
        framed.advance(4);
        framed.freeze()
    }

    /// T-WIRE-10: an API key Kafka does not define is an error.
    #[test]
    fn t_wire_10_unknown_api_key() {
        let frame = Bytes::from_static(&[0x03, 0xe7, 0, 0, 0, 0, 0, 1, 0, 0]);
        assert!(matches!(parse_request(frame), Err(RequestError::UnknownApiKey(999))));
    }

    /// T-WIRE-11: Produce, and Metadata 13, are not served.
    #[test]
    fn t_wire_11_unserved_api_or_version() {
        let frame = Bytes::from_static(&[0, 0, 0, 9, 0, 0, 0, 1, 0, 0]);
        assert!(matches!(parse_request(frame), Err(RequestError::NotServed { key: ApiKey::Produce, .. })));
        let frame = Bytes::from_static(&[0, 3, 0, 13, 0, 0, 0, 1, 0, 0, 0]);
        assert!(matches!(parse_request(frame), Err(RequestError::NotServed { key: ApiKey::Metadata, version: 13 })));
    }

    /// T-WIRE-3: a header that cannot be parsed is an error.
    #[test]
    fn t_wire_3_truncated_header() {
        assert!(matches!(parse_request(Bytes::from_static(&[0, 18])), Err(RequestError::TooShort)));
        let frame = Bytes::from_static(&[0, 18, 0, 0, 0, 0]);
        assert!(matches!(parse_request(frame), Err(RequestError::Header(_))));
    }

    /// T-WIRE-9 / T-APIV-4: ApiVersions v9 parses its header as v2 and skips the body.
    #[test]
    fn t_wire_9_apiversions_above_max_skips_body() {
        // SPEC's byte-exact example, without the size prefix.
        let frame = Bytes::from_static(&[
            0x00, 0x12, 0x00, 0x09, 0x00, 0x00, 0x00, 0x07, 0x00, 0x05, 0x70, 0x72, 0x6f, 0x62, 0x65, 0x00, 0x02, 0x78,
            0x02, 0x31, 0x00,
        ]);
        match parse_request(frame).unwrap() {
            Request::UnsupportedApiVersions(h) => {
                assert_eq!(h.correlation_id, 7);
                assert_eq!(h.client_id, "probe");
                assert_eq!(h.version, 9);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    /// T-WIRE-12: a body that does not decode is an error; trailing bytes are ignored.
    #[test]
    fn t_wire_12_bad_body_and_trailing_bytes() {
        let good = encode_request(ApiKey::ApiVersions, 3, 1, "c", &ApiVersionsRequest::default().into()).unwrap();
        let mut with_trailer = frame_body(good).to_vec();
        let truncated = Bytes::from(with_trailer[..with_trailer.len() - 2].to_vec());
        assert!(matches!(parse_request(truncated), Err(RequestError::Body { .. })));
        with_trailer.extend_from_slice(b"junk");
        assert!(matches!(parse_request(Bytes::from(with_trailer)), Ok(Request::Api(..))));
    }

    /// T-WIRE-14: v0 of CreateDelegationToken decodes as v1.
    #[test]
    fn t_wire_14_create_token_v0_decodes() {
        let body = CreateDelegationTokenRequest::default().with_max_lifetime_ms(5);
        let framed = encode_request(ApiKey::CreateDelegationToken, 0, 3, "c", &body.into()).unwrap();
        match parse_request(frame_body(framed)).unwrap() {
            Request::Api(h, body) if matches!(*body, RequestKind::CreateDelegationToken(_)) => {
                let RequestKind::CreateDelegationToken(r) = *body else { unreachable!() };
                assert_eq!(h.version, 0);
                assert_eq!(r.max_lifetime_ms, 5);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    /// An array count no frame could hold is refused before the codec reserves memory.
    #[test]
    fn huge_array_count_is_a_body_error() {
        let framed = encode_request(ApiKey::Metadata, 1, 1, "c", &MetadataRequest::default().into()).unwrap();
        let mut bytes = frame_body(framed).to_vec();
        let n = bytes.len();
        bytes[n - 4..].copy_from_slice(&i32::MAX.to_be_bytes());
        assert!(matches!(parse_request(Bytes::from(bytes)), Err(RequestError::Body { .. })));
    }
}
