//! A batch of events as one WAL record payload: the flat WIT encoding that plugins
//! receive (`plugin::wire::BatchEncoder`), its columns laid out one after another, and
//! read back through the same checked reader as a plugin's output
//! (`plugin::wire::decode_batch`). One codec for the flat form, not a second one.
//!
//! Layout (little-endian): `version u8`, then the counts `arena u32, nodes u32,
//! tags u32, events u32`, then the arena bytes, the node kinds (u8 each), keys (u64
//! each), payloads (u64 each), the tags (key offset, key len, value offset, value len:
//! u32 each), and per event: name span (2 × u32), level (u8), timestamp flag (u8) and
//! value (i64), body span (2 × u32), fields range and tags range (2 × u32 each).
//!
//! A put that carries its source's positions (see [`crate::source::checkpoint`]) is
//! stored as `CHECKPOINTED u8, length u32, the checkpoint's bytes`, then the payload
//! above: the positions are durable exactly when the events are.

use crate::event::{Event, Level};
use crate::plugin::bindings::types as wit;
use crate::plugin::wire::{self, BatchEncoder, level_from_wit, level_to_wit};
use crate::source::checkpoint::{Checkpoint, CheckpointError};

const VERSION: u8 = 1;
/// The first byte of a payload that starts with a checkpoint.
const CHECKPOINTED: u8 = 0xC1;
/// Encoded size of one event's entry after the columns.
const EVENT_BYTES: usize = 8 + 1 + 9 + 8 + 8 + 8;

/// Why a payload could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("payload ends early (at byte {0})")]
    Short(usize),
    #[error("unknown payload version {0}")]
    Version(u8),
    #[error("unknown level {0}")]
    Level(u8),
    #[error(transparent)]
    Wire(#[from] wire::WireError),
    #[error("the checkpoint is damaged: {0}")]
    Checkpoint(#[from] CheckpointError),
}

/// Encodes batches, reusing its buffers.
#[derive(Default)]
pub struct Encoder {
    batch: BatchEncoder,
}

impl Encoder {
    /// Appends `events` as one payload to `out`, after `checkpoint` if there is one.
    pub fn encode(&mut self, events: &[Event], checkpoint: Option<&Checkpoint>, out: &mut Vec<u8>) {
        if let Some(checkpoint) = checkpoint {
            out.push(CHECKPOINTED);
            let at = out.len();
            out.extend_from_slice(&[0; 4]);
            checkpoint.encode(out);
            let len = (out.len() - at - 4) as u32;
            out[at..at + 4].copy_from_slice(&len.to_le_bytes());
        }
        let b = self.batch.encode(events, None);
        out.reserve(
            17 + b.arena.len()
                + b.nodes.kinds.len() * 17
                + b.tags.len() * 16
                + b.events.len() * EVENT_BYTES,
        );
        out.push(VERSION);
        for n in [
            b.arena.len(),
            b.nodes.kinds.len(),
            b.tags.len(),
            b.events.len(),
        ] {
            out.extend_from_slice(&(n as u32).to_le_bytes());
        }
        out.extend_from_slice(&b.arena);
        out.extend_from_slice(&b.nodes.kinds);
        for k in &b.nodes.keys {
            out.extend_from_slice(&k.to_le_bytes());
        }
        for p in &b.nodes.payloads {
            out.extend_from_slice(&p.to_le_bytes());
        }
        for t in &b.tags {
            for v in [t.key.offset, t.key.len, t.value.offset, t.value.len] {
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
        for e in &b.events {
            put_span(out, e.name);
            out.push(level_from_wit(e.level) as u8);
            out.push(u8::from(e.timestamp.is_some()));
            out.extend_from_slice(&e.timestamp.unwrap_or(0).to_le_bytes());
            put_span(out, e.body);
            put_range(out, e.fields);
            put_range(out, e.tags);
        }
    }
}

fn put_span(out: &mut Vec<u8>, s: wit::Span) {
    out.extend_from_slice(&s.offset.to_le_bytes());
    out.extend_from_slice(&s.len.to_le_bytes());
}

fn put_range(out: &mut Vec<u8>, r: wit::Range) {
    out.extend_from_slice(&r.start.to_le_bytes());
    out.extend_from_slice(&r.len.to_le_bytes());
}

/// Splits a payload into its checkpoint's bytes (if it has one) and its events' bytes.
fn split(payload: &[u8]) -> Result<(Option<&[u8]>, &[u8]), DecodeError> {
    if payload.first() != Some(&CHECKPOINTED) {
        return Ok((None, payload));
    }
    let mut r = Reader {
        bytes: payload,
        at: 1,
    };
    let len = r.u32()? as usize;
    let checkpoint = r.take(len)?;
    Ok((Some(checkpoint), &payload[r.at..]))
}

/// The checkpoint stored with a payload, if it has one.
pub fn checkpoint(payload: &[u8]) -> Result<Option<Checkpoint>, DecodeError> {
    match split(payload)?.0 {
        Some(bytes) => Ok(Some(Checkpoint::decode(bytes)?.0)),
        None => Ok(None),
    }
}

/// Reads the events of a payload written by [`Encoder::encode`].
pub fn decode(payload: &[u8]) -> Result<Vec<Event>, DecodeError> {
    let (_, events) = split(payload)?;
    let mut r = Reader {
        bytes: events,
        at: 0,
    };
    let version = r.u8()?;
    if version != VERSION {
        return Err(DecodeError::Version(version));
    }
    let arena_len = r.u32()? as usize;
    let nodes = r.u32()? as usize;
    let tags = r.u32()? as usize;
    let events = r.u32()? as usize;
    // Every count is checked against what is left before anything is allocated.
    let arena = r.take(arena_len)?.to_vec();
    let kinds = r.take(nodes)?.to_vec();
    r.need(nodes.saturating_mul(16))?;
    let keys = (0..nodes).map(|_| r.u64()).collect::<Result<Vec<_>, _>>()?;
    let payloads = (0..nodes).map(|_| r.u64()).collect::<Result<Vec<_>, _>>()?;
    r.need(tags.saturating_mul(16))?;
    let tag_list = (0..tags)
        .map(|_| {
            Ok(wit::Tag {
                key: r.span()?,
                value: r.span()?,
            })
        })
        .collect::<Result<Vec<_>, DecodeError>>()?;
    r.need(events.saturating_mul(EVENT_BYTES))?;
    let mut event_list = Vec::with_capacity(events);
    for _ in 0..events {
        let name = r.span()?;
        let level = r.u8()?;
        let level = level_to_wit(Level::from_u8(level).ok_or(DecodeError::Level(level))?);
        let has_ts = r.u8()? != 0;
        let ts = r.i64()?;
        event_list.push(wit::Event {
            name,
            timestamp: has_ts.then_some(ts),
            level,
            body: r.span()?,
            fields: r.range()?,
            tags: r.range()?,
        });
    }
    Ok(wire::decode_batch(wit::Batch {
        arena,
        nodes: wit::Nodes {
            kinds,
            keys,
            payloads,
        },
        tags: tag_list,
        events: event_list,
    })?)
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn need(&self, n: usize) -> Result<(), DecodeError> {
        if self.bytes.len() - self.at < n {
            return Err(DecodeError::Short(self.bytes.len()));
        }
        Ok(())
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        self.need(n)?;
        let s = &self.bytes[self.at..self.at + n];
        self.at += n;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    fn i64(&mut self) -> Result<i64, DecodeError> {
        Ok(i64::from_le_bytes(self.array()?))
    }

    fn span(&mut self) -> Result<wit::Span, DecodeError> {
        Ok(wit::Span {
            offset: self.u32()?,
            len: self.u32()?,
        })
    }

    fn range(&mut self) -> Result<wit::Range, DecodeError> {
        Ok(wit::Range {
            start: self.u32()?,
            len: self.u32()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Map, Value};
    use std::sync::Arc;

    fn sample() -> Vec<Event> {
        let mut a = Event::from_body(Arc::from("web"), b"GET / 200".to_vec());
        a.level = Level::Warn;
        a.timestamp = Some(1_700_000_000_123_456_789);
        a.tags.set("file", "/var/log/a.log");
        let mut map = Map::new();
        map.insert("status".into(), Value::Int(200));
        map.insert("ratio".into(), Value::Float(1.0));
        map.insert("raw".into(), Value::Bytes(vec![0, 255]));
        map.insert(
            "nested".into(),
            Value::Object(Map::from_iter([(
                "list".to_owned(),
                Value::Array(vec![Value::Null, Value::Bool(true), Value::Uint(u64::MAX)]),
            )])),
        );
        a.fields = map.into();
        let b = Event::from_body(Arc::from("web"), "ünïcode\u{1}".as_bytes().to_vec());
        // Runs of equal tags (reused when decoding) and a change in the middle of one.
        let tagged = |file: &str| {
            let mut e = Event::from_body(Arc::from("web"), b"x".to_vec());
            e.tags.set("file", file);
            e.tags.set("pattern", "app");
            e
        };
        vec![a, b, tagged("/a"), tagged("/a"), tagged("/b"), tagged("/b")]
    }

    #[test]
    fn events_round_trip_with_types_tags_and_levels() {
        let events = sample();
        let mut out = Vec::new();
        Encoder::default().encode(&events, None, &mut out);
        let back = decode(&out).unwrap();
        assert_eq!(back, events);
    }

    #[test]
    fn a_checkpoint_travels_in_front_of_the_events() {
        use crate::source::checkpoint::{FileId, Fingerprint};
        let c = Checkpoint {
            source: Arc::from("app"),
            seq: 9,
            state: Vec::new(),
            positions: vec![(
                FileId {
                    dev: 1,
                    inode: 2,
                    fingerprint: Fingerprint::of(b"x"),
                },
                300,
            )],
        };
        let mut out = Vec::new();
        Encoder::default().encode(&sample(), Some(&c), &mut out);
        assert_eq!(checkpoint(&out).unwrap(), Some(c));
        assert_eq!(decode(&out).unwrap(), sample());
        let mut plain = Vec::new();
        Encoder::default().encode(&sample(), None, &mut plain);
        assert_eq!(checkpoint(&plain).unwrap(), None);
        for cut in 1..out.len() {
            assert!(decode(&out[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn every_truncation_and_a_flipped_byte_are_errors_not_panics() {
        let mut out = Vec::new();
        Encoder::default().encode(&sample(), None, &mut out);
        for cut in 0..out.len() {
            assert!(decode(&out[..cut]).is_err(), "cut at {cut}");
        }
        for i in 0..out.len() {
            let mut bad = out.clone();
            bad[i] ^= 0xA5;
            let _ = decode(&bad);
        }
    }
}
