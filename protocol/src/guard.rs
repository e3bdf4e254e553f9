//! A bounds check on array lengths, run before a body reaches the codec.
//!
//! The `kafka-protocol` decoder reserves room for an array's announced element count
//! before it reads a single element. A 20-byte request announcing two billion entries
//! would make it ask the allocator for hundreds of gigabytes, and a failed allocation
//! aborts the process. Each element of every array the broker decodes takes at least a
//! known number of bytes on the wire, so a count that needs more bytes than the frame
//! has left is refused here. The walk below covers exactly the arrays of the request
//! bodies the broker decodes; all other fields are left to the codec. The same reader
//! walks the responses the `ktb` client decodes (`response_guard`).

use kafka_protocol::messages::ApiKey;

/// A request or response body announced more array elements than its bytes can hold.
#[derive(Debug, thiserror::Error)]
pub enum ImplausibleLength {
    /// More elements than the bytes left could hold.
    #[error("array length {count} cannot fit in the {remaining} bytes left")]
    Unfit {
        /// The announced count.
        count: u64,
        /// The bytes left in the body.
        remaining: usize,
    },
    /// More elements than any request of its API needs ([`MAX_REQUEST_ENTRIES`]).
    #[error("array length {count} is over the {MAX_REQUEST_ENTRIES} entries a request may have")]
    OverLimit {
        /// The announced count.
        count: u64,
    },
}

/// The most entries an array of a token or user API request may have (T-LIMIT-1).
/// Decoded, each entry costs the codec 50–90 bytes whatever its size on the wire (down to
/// 2 bytes), so the count is what bounds a request's memory; no client needs more (a
/// Create allows 64 renewers, an AlterUserScramCredentials 100 alterations by default).
/// Metadata's topics are read in place instead ([`crate::metadata`]).
pub const MAX_REQUEST_ENTRIES: u64 = 10_000;

/// A cursor over a body that reads lengths exactly as the codec does.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
}

/// Returned when the walk runs past the end; the codec will report the real error.
pub(crate) struct Truncated;

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    #[cfg(test)]
    pub(crate) fn remaining(&self) -> usize {
        self.buf.len()
    }

    pub(crate) fn skip(&mut self, n: usize) -> Result<(), Truncated> {
        if self.buf.len() < n {
            return Err(Truncated);
        }
        self.buf = &self.buf[n..];
        Ok(())
    }

    fn i16(&mut self) -> Result<i16, Truncated> {
        let b = self.buf.get(..2).ok_or(Truncated)?;
        let v = i16::from_be_bytes([b[0], b[1]]);
        self.buf = &self.buf[2..];
        Ok(v)
    }

    fn i32(&mut self) -> Result<i32, Truncated> {
        let b = self.buf.get(..4).ok_or(Truncated)?;
        let v = i32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        self.buf = &self.buf[4..];
        Ok(v)
    }

    /// An unsigned varint read exactly as the codec reads it: at most five bytes, the
    /// fifth ending the number whatever its continuation bit, bits past 32 dropped. A
    /// stricter reading here would let through counts the codec then believes.
    pub(crate) fn uvarint(&mut self) -> Result<u64, Truncated> {
        let mut value = 0u32;
        for i in 0..5 {
            let (&b, rest) = self.buf.split_first().ok_or(Truncated)?;
            self.buf = rest;
            value |= (u32::from(b) & 0x7f) << (i * 7);
            if b < 0x80 {
                break;
            }
        }
        Ok(u64::from(value))
    }

    /// A compact string or compact bytes field; 0 is null.
    pub(crate) fn compact_string(&mut self) -> Result<(), Truncated> {
        let n = self.uvarint()?;
        self.skip(n.saturating_sub(1) as usize)
    }

    /// A string (i16 length) or, when `flexible`, a compact string; null takes no bytes.
    pub(crate) fn string(&mut self, flexible: bool) -> Result<(), Truncated> {
        if flexible {
            return self.compact_string();
        }
        // -1 is null; other negative lengths are the codec's error to report.
        let n = self.i16()?.max(0);
        self.skip(n as usize)
    }

    /// A bytes field (i32 length) or, when `flexible`, compact bytes.
    pub(crate) fn bytes(&mut self, flexible: bool) -> Result<(), Truncated> {
        if flexible {
            return self.compact_string();
        }
        let n = self.i32()?.max(0);
        self.skip(n as usize)
    }

    pub(crate) fn tagged_fields(&mut self) -> Result<(), Truncated> {
        for _ in 0..self.uvarint()? {
            self.uvarint()?;
            let size = self.uvarint()?;
            self.skip(size as usize)?;
        }
        Ok(())
    }

    /// Reads an array's element count and checks it against the bytes left.
    pub(crate) fn array(
        &mut self,
        flexible: bool,
        min_element: usize,
    ) -> Result<Result<u64, ImplausibleLength>, Truncated> {
        let count = if flexible {
            self.uvarint()?.saturating_sub(1)
        } else {
            // -1 is null; other negative counts are the codec's error to report.
            self.i32()?.max(0) as u64
        };
        let remaining = self.buf.len();
        if count.saturating_mul(min_element as u64) > remaining as u64 {
            return Ok(Err(ImplausibleLength::Unfit { count, remaining }));
        }
        Ok(Ok(count))
    }
}

/// Checks every array count in a body of `key` at codec version `version`.
pub fn check_array_lengths(key: ApiKey, version: i16, body: &[u8]) -> Result<(), ImplausibleLength> {
    let mut r = Reader { buf: body };
    match walk(&mut r, key, version) {
        Ok(result) => result,
        Err(Truncated) => Ok(()),
    }
}

fn walk(r: &mut Reader<'_>, key: ApiKey, version: i16) -> Result<Result<(), ImplausibleLength>, Truncated> {
    // Minimum element sizes: a classic string is at least 2 bytes, a compact one 1 byte,
    // a flexible struct ends with at least 1 byte of tagged fields, a UUID is 16 bytes.
    let ok = |count: Result<u64, ImplausibleLength>| match count {
        Ok(n) if key != ApiKey::Metadata && n > MAX_REQUEST_ENTRIES => Err(ImplausibleLength::OverLimit { count: n }),
        other => other.map(|_| ()),
    };
    Ok(match key {
        ApiKey::Metadata => {
            let min = match version {
                0..=8 => 2,
                9 => 2,
                _ => 18,
            };
            ok(r.array(version >= 9, min)?)
        }
        ApiKey::CreateDelegationToken => {
            if version >= 3 {
                r.compact_string()?;
                r.compact_string()?;
            }
            let flexible = version >= 2;
            ok(r.array(flexible, if flexible { 3 } else { 4 })?)
        }
        ApiKey::DescribeDelegationToken => {
            let flexible = version >= 2;
            ok(r.array(flexible, if flexible { 3 } else { 4 })?)
        }
        ApiKey::DescribeUserScramCredentials => ok(r.array(true, 2)?),
        ApiKey::AlterUserScramCredentials => {
            let deletions = match r.array(true, 3)? {
                Ok(n) if n > MAX_REQUEST_ENTRIES => return Ok(Err(ImplausibleLength::OverLimit { count: n })),
                Ok(n) => n,
                Err(e) => return Ok(Err(e)),
            };
            for _ in 0..deletions {
                r.compact_string()?;
                r.skip(1)?;
                r.tagged_fields()?;
            }
            ok(r.array(true, 9)?)
        }
        // The other bodies the broker decodes have no arrays.
        _ => Ok(()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_metadata_topic_count_is_refused() {
        // v1: topics array of i32::MAX entries followed by nothing.
        let body = [0x7f, 0xff, 0xff, 0xff];
        assert!(check_array_lengths(ApiKey::Metadata, 1, &body).is_err());
        // v9 (flexible): uvarint 0xffffffff.
        let body = [0xff, 0xff, 0xff, 0xff, 0x0f];
        assert!(check_array_lengths(ApiKey::Metadata, 9, &body).is_err());
    }

    /// Found by the property test: a five-byte varint whose last byte still has its
    /// continuation bit set. The codec stops there and reads a count near 2^31; the guard
    /// must read the same number.
    #[test]
    fn five_byte_varint_with_continuation_bit_is_checked() {
        let body = [0x99, 0x85, 0xfc, 0x93, 0xcd, 0x8d, 0x18, 0xe8, 0xf7, 0x01, 0x01, 0x00, 0x00, 0x00];
        assert!(check_array_lengths(ApiKey::Metadata, 10, &body).is_err());
    }

    #[test]
    fn plausible_counts_pass() {
        // v1 Metadata: one topic "a", then nothing.
        let body = [0, 0, 0, 1, 0, 1, b'a'];
        assert!(check_array_lengths(ApiKey::Metadata, 1, &body).is_ok());
        // null topics
        let body = [0xff, 0xff, 0xff, 0xff];
        assert!(check_array_lengths(ApiKey::Metadata, 1, &body).is_ok());
    }

    #[test]
    fn alter_user_scram_upsertions_are_checked_after_deletions() {
        // one deletion ("u", mechanism 1, no tags), then upsertions claiming 2^28 entries.
        let body = [2, 2, b'u', 1, 0, 0xff, 0xff, 0xff, 0xff, 0x01];
        assert!(check_array_lengths(ApiKey::AlterUserScramCredentials, 0, &body).is_err());
    }
}
