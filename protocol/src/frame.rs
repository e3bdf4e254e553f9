//! Size-prefixed framing (T-WIRE-1, T-WIRE-2, T-WIRE-3).

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Why a frame cannot be accepted; each one closes the connection with no response.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    /// The size prefix is negative.
    #[error("frame size {0} is negative")]
    NegativeSize(i32),
    /// The size prefix is larger than the limit in force.
    #[error("frame size {size} exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The size the client announced.
        size: i32,
        /// The limit in force on this connection.
        limit: i32,
    },
    /// A frame of size zero carries no request header.
    #[error("empty frame")]
    Empty,
}

/// Takes one complete frame off the front of `buf`, if one is there.
///
/// Returns `Ok(None)` while more bytes are needed. The size prefix is checked against
/// `limit` before anything is reserved for the body, so an oversized announcement costs
/// no memory. When a frame is incomplete, `buf` is grown to hold it so that the caller's
/// next read can fill it in one go.
pub fn decode_frame(buf: &mut BytesMut, limit: i32) -> Result<Option<Bytes>, FrameError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let size = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    if size < 0 {
        return Err(FrameError::NegativeSize(size));
    }
    if size > limit {
        return Err(FrameError::TooLarge { size, limit });
    }
    if size == 0 {
        return Err(FrameError::Empty);
    }
    let total = 4 + size as usize;
    if buf.len() < total {
        buf.reserve(total - buf.len());
        return Ok(None);
    }
    buf.advance(4);
    Ok(Some(buf.split_to(size as usize).freeze()))
}

/// Starts a frame in `buf`: a size placeholder that [`finish_frame`] fills in.
pub fn begin_frame(buf: &mut BytesMut) -> usize {
    let start = buf.len();
    buf.put_i32(0);
    start
}

/// Writes the size of the frame that [`begin_frame`] started at `start`.
pub fn finish_frame(buf: &mut BytesMut, start: usize) {
    let size = (buf.len() - start - 4) as i32;
    buf[start..start + 4].copy_from_slice(&size.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn buf(bytes: &[u8]) -> BytesMut {
        BytesMut::from(bytes)
    }

    /// T-WIRE-1: a frame is a big-endian int32 size and exactly that many bytes.
    #[test]
    fn t_wire_1_frames_are_size_prefixed() {
        let mut b = buf(&[0, 0, 0, 3, 1, 2, 3, 0, 0, 0, 1, 9, 0]);
        assert_eq!(decode_frame(&mut b, 100).unwrap().unwrap().as_ref(), &[1, 2, 3]);
        assert_eq!(decode_frame(&mut b, 100).unwrap().unwrap().as_ref(), &[9]);
        assert_eq!(decode_frame(&mut b, 100).unwrap(), None);
        assert_eq!(b.as_ref(), &[0]);
    }

    /// T-WIRE-1: a partial frame waits for more bytes and reserves room for the rest.
    #[test]
    fn t_wire_1_partial_frame_waits() {
        let mut b = buf(&[0, 0, 1, 0, 7]);
        assert_eq!(decode_frame(&mut b, 1000).unwrap(), None);
        assert!(b.capacity() >= 260);
        assert_eq!(b.len(), 5);
    }

    /// T-WIRE-2: negative and oversized sizes are refused before any allocation.
    #[test]
    fn t_wire_2_negative_and_oversized_sizes_are_errors() {
        let mut b = buf(&[0xff, 0xff, 0xff, 0xfe]);
        assert_eq!(decode_frame(&mut b, 100), Err(FrameError::NegativeSize(-2)));
        let mut b = buf(&[0x7f, 0xff, 0xff, 0xff]);
        let cap = b.capacity();
        assert_eq!(decode_frame(&mut b, 524_288), Err(FrameError::TooLarge { size: i32::MAX, limit: 524_288 }));
        assert_eq!(b.capacity(), cap, "nothing reserved for a refused frame");
        // Exactly at the limit is fine.
        let mut b = buf(&[0, 0, 0, 2, 1, 1]);
        assert!(decode_frame(&mut b, 2).unwrap().is_some());
    }

    /// T-WIRE-3: a frame of size zero is an error.
    #[test]
    fn t_wire_3_empty_frame_is_an_error() {
        let mut b = buf(&[0, 0, 0, 0]);
        assert_eq!(decode_frame(&mut b, 100), Err(FrameError::Empty));
    }

    #[test]
    fn begin_and_finish_frame_write_the_size() {
        let mut b = BytesMut::new();
        let start = begin_frame(&mut b);
        b.put_slice(b"hello");
        finish_frame(&mut b, start);
        assert_eq!(b.as_ref(), b"\x00\x00\x00\x05hello");
    }
}
