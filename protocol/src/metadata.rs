//! Metadata requests read in place, and the topics of their answers written directly
//! (T-LIMIT-1, T-META-2).
//!
//! A Metadata request is mostly its topics array, and a broker without topics answers
//! each requested topic with the same few fields. Decoded by the codec, every 2-byte
//! entry of a v1 request becomes a struct of about 80 bytes and every answer entry one of
//! about 120: a 1 MiB request of empty names cost 37 MB. Here the request's topics stay
//! in the frame as borrowed slices, duplicates are dropped through a set of those slices,
//! and each distinct topic's answer is encoded straight into the output, so a request
//! costs a few times its own size. Everything else in the request and the answer goes
//! through the codec as usual.

use std::collections::HashSet;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::MetadataRequest;

/// The topics array of a Metadata request, validated and left in the frame.
#[derive(Debug, Clone)]
pub struct MetadataTopics {
    body: Bytes,
    version: i16,
    /// Where the first entry starts and how many entries there are; `None` for a null array.
    entries: Option<(usize, usize)>,
}

/// One requested topic: its name, or for v10+ a null name and the topic id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TopicRef<'a> {
    /// A topic asked for by name.
    Name(&'a str),
    /// A topic asked for by id only (v12).
    Id([u8; 16]),
}

/// Why a Metadata body is malformed (the connection closes, T-WIRE-12).
#[derive(Debug, thiserror::Error)]
#[error("bad Metadata v{version} body: {reason}")]
pub struct MetadataError {
    version: i16,
    reason: &'static str,
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    fn i16(&mut self) -> Option<i16> {
        Some(i16::from_be_bytes(self.take(2)?.try_into().ok()?))
    }
    fn i32(&mut self) -> Option<i32> {
        Some(i32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }
    /// An unsigned varint as the codec reads it (at most five bytes).
    fn uvarint(&mut self) -> Option<u32> {
        let mut value = 0u32;
        for i in 0..5 {
            let b = self.u8()?;
            value |= (u32::from(b) & 0x7f) << (i * 7);
            if b < 0x80 {
                break;
            }
        }
        Some(value)
    }
    fn tagged_fields(&mut self) -> Option<()> {
        for _ in 0..self.uvarint()? {
            self.uvarint()?;
            let size = self.uvarint()? as usize;
            self.take(size)?;
        }
        Some(())
    }
    /// A name: `None` for null (allowed from v10), an error for bad UTF-8 or a null
    /// where the version forbids one.
    fn name(&mut self, version: i16) -> Result<Option<&'a str>, &'static str> {
        let len = if version >= 9 {
            match self.uvarint().ok_or("truncated name")? {
                0 => None,
                n => Some(n as usize - 1),
            }
        } else {
            match self.i16().ok_or("truncated name")? {
                n if n < 0 => None,
                n => Some(n as usize),
            }
        };
        let Some(len) = len else {
            return if version >= 10 { Ok(None) } else { Err("null topic name") };
        };
        let bytes = self.take(len).ok_or("truncated name")?;
        std::str::from_utf8(bytes).map(Some).map_err(|_| "topic name is not UTF-8")
    }
}

impl MetadataTopics {
    /// Reads a Metadata body at codec version `version`: the topics are validated and left
    /// in `body`, the other fields come back in a [`MetadataRequest`] without topics.
    /// Bytes after the body are ignored, as the codec does (T-WIRE-12).
    pub fn parse(version: i16, body: Bytes) -> Result<(MetadataRequest, MetadataTopics), MetadataError> {
        let err = |reason| MetadataError { version, reason };
        let mut r = Reader { buf: &body, pos: 0 };
        let count = if version >= 9 {
            match r.uvarint().ok_or(err("truncated topics array"))? {
                0 => None,
                n => Some(n as usize - 1),
            }
        } else {
            match r.i32().ok_or(err("truncated topics array"))? {
                -1 if version >= 1 => None,
                n if n < 0 => return Err(err("negative topics count")),
                n => Some(n as usize),
            }
        };
        let start = r.pos;
        if let Some(n) = count {
            for _ in 0..n {
                if version >= 10 {
                    r.take(16).ok_or(err("truncated topic id"))?;
                }
                r.name(version).map_err(err)?;
                if version >= 9 {
                    r.tagged_fields().ok_or(err("truncated tagged fields"))?;
                }
            }
        }
        let mut req = MetadataRequest::default().with_topics(count.map(|_| Vec::new()));
        let flag = |r: &mut Reader<'_>| r.u8().map(|b| b != 0).ok_or(err("truncated flags"));
        if version >= 4 {
            req.allow_auto_topic_creation = flag(&mut r)?;
        }
        if (8..=10).contains(&version) {
            req.include_cluster_authorized_operations = flag(&mut r)?;
        }
        if version >= 8 {
            req.include_topic_authorized_operations = flag(&mut r)?;
        }
        if version >= 9 {
            r.tagged_fields().ok_or(err("truncated tagged fields"))?;
        }
        let topics = MetadataTopics { body, version, entries: count.map(|n| (start, n)) };
        Ok((req, topics))
    }

    /// Whether the request's topics array was null (all topics).
    pub fn is_null(&self) -> bool {
        self.entries.is_none()
    }

    /// Each requested topic in request order, duplicates included.
    pub fn iter(&self) -> impl Iterator<Item = TopicRef<'_>> {
        let (start, n) = self.entries.unwrap_or((0, 0));
        let mut r = Reader { buf: &self.body, pos: start };
        let version = self.version;
        // `parse` validated every entry, so the reads below cannot fail.
        (0..n).map_while(move |_| {
            let id: [u8; 16] = if version >= 10 { r.take(16)?.try_into().ok()? } else { [0; 16] };
            let name = r.name(version).ok()?;
            if version >= 9 {
                r.tagged_fields()?;
            }
            Some(match name {
                Some(name) => TopicRef::Name(name),
                None => TopicRef::Id(id),
            })
        })
    }

    /// Each distinct requested topic once, in order of first appearance (Kafka treats
    /// the requested topics as a set).
    pub fn distinct(&self) -> impl Iterator<Item = TopicRef<'_>> {
        let mut seen = HashSet::new();
        self.iter().filter(move |t| seen.insert(*t))
    }

    /// True when a topic is asked for by id only.
    pub fn any_by_id(&self) -> bool {
        self.iter().any(|t| matches!(t, TopicRef::Id(_)))
    }
}

/// The answer's topics for a broker that has none of them: `name_error` for a topic asked
/// by name, `id_error` for one asked by id; a zero id for names, no partitions, not
/// internal, authorized operations not computed.
#[derive(Debug, Clone, Copy)]
pub struct UnknownTopics<'a> {
    /// The request's topics.
    pub topics: &'a MetadataTopics,
    /// The error of a topic asked for by name.
    pub name_error: i16,
    /// The error of a topic asked for by id.
    pub id_error: i16,
}

impl UnknownTopics<'_> {
    /// Appends the answer's `topics` array at codec version `version` to `out`: one entry
    /// per distinct requested topic, in order of first appearance. One set of borrowed
    /// slices finds the distinct topics and, emptied as they are written, keeps their
    /// order; nothing else grows with the request.
    pub fn encode(&self, version: i16, out: &mut BytesMut) {
        let mut pending: HashSet<TopicRef<'_>> = self.topics.iter().collect();
        let n = pending.len();
        if version >= 9 {
            put_uvarint(out, n as u32 + 1);
        } else {
            out.put_i32(n as i32);
        }
        out.reserve(n * (16 + if version >= 10 { 16 } else { 0 }));
        for t in self.topics.iter() {
            if !pending.remove(&t) {
                continue;
            }
            let (code, name, id) = match t {
                TopicRef::Name(name) => (self.name_error, Some(name), [0u8; 16]),
                TopicRef::Id(id) => (self.id_error, None, id),
            };
            out.put_i16(code);
            match (name, version >= 9) {
                (Some(name), true) => {
                    put_uvarint(out, name.len() as u32 + 1);
                    out.put_slice(name.as_bytes());
                }
                (None, true) => put_uvarint(out, 0),
                (Some(name), false) => {
                    out.put_i16(name.len() as i16);
                    out.put_slice(name.as_bytes());
                }
                (None, false) => out.put_i16(-1),
            }
            if version >= 10 {
                out.put_slice(&id);
            }
            if version >= 1 {
                out.put_u8(0); // is_internal
            }
            if version >= 9 {
                put_uvarint(out, 1); // no partitions
            } else {
                out.put_i32(0);
            }
            if version >= 8 {
                out.put_i32(i32::MIN); // topic authorized operations: not computed
            }
            if version >= 9 {
                out.put_u8(0); // no tagged fields
            }
        }
    }
}

/// The bytes a MetadataResponse at `version` has after its topics array: cluster
/// authorized operations (v8–10) and tagged fields (v9+).
pub fn bytes_after_topics(version: i16) -> usize {
    let ops = if (8..=10).contains(&version) { 4 } else { 0 };
    let tags = if version >= 9 { 1 } else { 0 };
    ops + tags
}

fn put_uvarint(out: &mut BytesMut, mut v: u32) {
    while v >= 0x80 {
        out.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    out.put_u8(v as u8);
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
    use kafka_protocol::messages::metadata_response::MetadataResponseTopic;
    use kafka_protocol::messages::{MetadataResponse, TopicName};
    use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

    fn topic(name: Option<&str>, id: u8) -> MetadataRequestTopic {
        MetadataRequestTopic::default()
            .with_name(name.map(|n| TopicName(StrBytes::from_string(n.to_owned()))))
            .with_topic_id(uuid::Uuid::from_bytes([id; 16]))
    }

    fn encode(req: &MetadataRequest, version: i16) -> Bytes {
        let mut b = BytesMut::new();
        req.encode(&mut b, version).unwrap();
        b.freeze()
    }

    /// T-LIMIT-1: for every version the in-place reading finds the codec's topics and
    /// flags, and the directly written answer is byte for byte the codec's answer for
    /// the distinct topics.
    #[test]
    fn t_limit_1_in_place_reading_and_writing_match_the_codec() {
        for version in 0..=12i16 {
            let mut topics = vec![topic(Some("orders"), 0), topic(Some(""), 0), topic(Some("orders"), 0)];
            topics.push(topic(Some("é-ü"), 0));
            if version >= 10 {
                topics.push(topic(None, 7));
                topics.push(topic(None, 7));
                topics.push(topic(None, 9));
            }
            let mut req = MetadataRequest::default().with_topics(Some(topics.clone()));
            if version >= 4 {
                req.allow_auto_topic_creation = false;
            }
            if (8..=10).contains(&version) {
                req.include_cluster_authorized_operations = true;
            }
            if version >= 8 {
                req.include_topic_authorized_operations = true;
            }
            let body = encode(&req, version);
            let decoded = MetadataRequest::decode(&mut body.clone(), version).unwrap();
            let (flags, view) = MetadataTopics::parse(version, body).unwrap();
            assert_eq!(flags.allow_auto_topic_creation, decoded.allow_auto_topic_creation, "v{version}");
            assert_eq!(
                flags.include_cluster_authorized_operations, decoded.include_cluster_authorized_operations,
                "v{version}"
            );
            assert_eq!(flags.include_topic_authorized_operations, decoded.include_topic_authorized_operations);
            let want: Vec<TopicRef<'_>> = decoded
                .topics
                .as_ref()
                .unwrap()
                .iter()
                .map(|t| match &t.name {
                    Some(n) => TopicRef::Name(n.as_str()),
                    None => TopicRef::Id(*t.topic_id.as_bytes()),
                })
                .collect();
            assert_eq!(view.iter().collect::<Vec<_>>(), want, "v{version}");
            let distinct: Vec<TopicRef<'_>> = view.distinct().collect();
            assert_eq!(distinct.len(), if version >= 10 { 5 } else { 3 }, "v{version}");

            // The answer: the codec's encoding of the same entries, built as structs.
            let structs: Vec<MetadataResponseTopic> = distinct
                .iter()
                .map(|t| match t {
                    TopicRef::Name(n) => MetadataResponseTopic::default()
                        .with_error_code(3)
                        .with_name(Some(TopicName(StrBytes::from_string((*n).to_owned())))),
                    TopicRef::Id(id) => MetadataResponseTopic::default()
                        .with_error_code(100)
                        .with_name(None)
                        .with_topic_id(uuid::Uuid::from_bytes(*id)),
                })
                .collect();
            let with = MetadataResponse::default().with_topics(structs);
            let without = MetadataResponse::default();
            let (mut a, mut b) = (BytesMut::new(), BytesMut::new());
            with.encode(&mut a, version).unwrap();
            without.encode(&mut b, version).unwrap();
            let empty_len = if version >= 9 { 1 } else { 4 };
            let tail = bytes_after_topics(version);
            let head = b.len() - tail - empty_len;
            let mut spliced = BytesMut::from(&b[..head]);
            UnknownTopics { topics: &view, name_error: 3, id_error: 100 }.encode(version, &mut spliced);
            spliced.extend_from_slice(&b[b.len() - tail..]);
            assert_eq!(spliced.as_ref(), a.as_ref(), "v{version}");
        }
    }

    /// Malformed bodies are errors, never panics: truncation anywhere, bad UTF-8, a null
    /// name below v10, a negative count in v0.
    #[test]
    fn malformed_metadata_bodies_are_errors() {
        for version in 0..=12i16 {
            let req = MetadataRequest::default().with_topics(Some(vec![topic(Some("abc"), 0)]));
            let body = encode(&req, version);
            for cut in 0..body.len() {
                assert!(MetadataTopics::parse(version, body.slice(..cut)).is_err(), "v{version} cut {cut}");
            }
        }
        let bad_utf8 = Bytes::from_static(&[0, 0, 0, 1, 0, 2, 0xff, 0xfe]);
        assert!(MetadataTopics::parse(1, bad_utf8).is_err());
        let null_name = Bytes::from_static(&[0, 0, 0, 1, 0xff, 0xff]);
        assert!(MetadataTopics::parse(1, null_name).is_err());
        assert!(MetadataTopics::parse(0, Bytes::from_static(&[0xff, 0xff, 0xff, 0xff])).is_err());
        let (_, null) = MetadataTopics::parse(1, Bytes::from_static(&[0xff, 0xff, 0xff, 0xff])).unwrap();
        assert!(null.is_null() && null.iter().count() == 0);
    }
}
