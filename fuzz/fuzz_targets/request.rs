//! Fuzzes the broker's input path: frame decoding, request headers and bodies, and the
//! SASL message parsers. Any panic or abort (for example a huge allocation) is a finding.
//!
//! Run: `cargo install cargo-fuzz && cargo +nightly fuzz run request -- -max_total_time=300`
#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut buf = BytesMut::from(data);
    while let Ok(Some(frame)) = ktb_protocol::frame::decode_frame(&mut buf, 1 << 20) {
        let _ = ktb_protocol::request::parse_request(frame);
    }
    let _ = ktb_protocol::request::parse_request(Bytes::copy_from_slice(data));
    let _ = ktb_protocol::scram::parse_client_first(data);
    let _ = ktb_protocol::plain::parse_plain(data);
});
