//! The wire form: host [`Event`]s to and from the flat WIT encoding (one arena of bytes,
//! spans into it, value trees as pre-order node lists).
//!
//! Encoders are kept by each plugin instance and reused, so a call allocates nothing on
//! the host side once the buffers have grown to the batch size.

use super::bindings::types as wit;
use crate::event::{Event, Fields, FieldsRepr, Level, Map, Tags, Value};
use std::sync::Arc;

/// Deepest value tree accepted from a plugin; deeper trees are malformed output (they
/// would otherwise exhaust the host's stack).
pub const MAX_DEPTH: usize = 128;

const NO_KEY: wit::Span = wit::Span { offset: 0, len: 0 };

/// Plugin output that does not follow the contract.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum WireError {
    #[error("span {offset}+{len} is outside the {arena}-byte arena")]
    SpanOutOfRange { offset: u32, len: u32, arena: usize },
    #[error("string at arena offset {offset} is not UTF-8")]
    NotUtf8 { offset: u32 },
    #[error("range {start}+{len} is outside the {available}-element list")]
    RangeOutOfBounds {
        start: u32,
        len: u32,
        available: usize,
    },
    #[error("malformed value tree: {0}")]
    MalformedTree(&'static str),
    #[error("fields must be an object")]
    FieldsNotObject,
    #[error("value tree deeper than {MAX_DEPTH}")]
    TooDeep,
    #[error("{what}: expected {expected} entries (one per input event), got {got}")]
    CountMismatch {
        what: &'static str,
        expected: usize,
        got: usize,
    },
}

pub fn level_to_wit(level: Level) -> wit::Level {
    match level {
        Level::Trace => wit::Level::Trace,
        Level::Debug => wit::Level::Debug,
        Level::Info => wit::Level::Info,
        Level::Warn => wit::Level::Warn,
        Level::Error => wit::Level::Error,
        Level::Fatal => wit::Level::Fatal,
        Level::Unknown => wit::Level::Unknown,
    }
}

pub fn level_from_wit(level: wit::Level) -> Level {
    match level {
        wit::Level::Trace => Level::Trace,
        wit::Level::Debug => Level::Debug,
        wit::Level::Info => Level::Info,
        wit::Level::Warn => Level::Warn,
        wit::Level::Error => Level::Error,
        wit::Level::Fatal => Level::Fatal,
        wit::Level::Unknown => Level::Unknown,
    }
}

fn push_span(arena: &mut Vec<u8>, bytes: &[u8]) -> wit::Span {
    let offset = arena.len() as u32;
    arena.extend_from_slice(bytes);
    wit::Span {
        offset,
        len: bytes.len() as u32,
    }
}

fn push_value(arena: &mut Vec<u8>, nodes: &mut Vec<wit::Node>, key: wit::Span, value: &Value) {
    let node = match value {
        Value::Null => wit::Value::Null,
        Value::Bool(b) => wit::Value::Boolean(*b),
        Value::Int(i) => wit::Value::Int(*i),
        Value::Uint(u) => wit::Value::Uint(*u),
        Value::Float(f) => wit::Value::Float(*f),
        Value::String(s) => wit::Value::Str(push_span(arena, s.as_bytes())),
        Value::Bytes(b) => wit::Value::Bytes(push_span(arena, b)),
        Value::Array(items) => {
            nodes.push(wit::Node {
                key,
                value: wit::Value::Array(items.len() as u32),
            });
            for item in items {
                push_value(arena, nodes, NO_KEY, item);
            }
            return;
        }
        Value::Object(map) => {
            push_object(arena, nodes, key, map);
            return;
        }
    };
    nodes.push(wit::Node { key, value: node });
}

fn push_object(arena: &mut Vec<u8>, nodes: &mut Vec<wit::Node>, key: wit::Span, map: &Map) {
    nodes.push(wit::Node {
        key,
        value: wit::Value::Object(map.len() as u32),
    });
    for (k, v) in map {
        let k = push_span(arena, k.as_bytes());
        push_value(arena, nodes, k, v);
    }
}

/// Encodes a lone value (a plugin's config) as a tree.
pub fn encode_tree(value: &Value) -> wit::Tree {
    let mut tree = wit::Tree {
        arena: Vec::new(),
        nodes: Vec::new(),
    };
    push_value(&mut tree.arena, &mut tree.nodes, NO_KEY, value);
    tree
}

/// Encodes bodies for parsers.
#[derive(Default)]
pub struct LinesEncoder {
    lines: Option<wit::Lines>,
}

impl LinesEncoder {
    pub fn encode(&mut self, events: &[Event]) -> &wit::Lines {
        let lines = self.lines.get_or_insert_with(|| wit::Lines {
            arena: Vec::new(),
            bodies: Vec::new(),
        });
        lines.arena.clear();
        lines.bodies.clear();
        for event in events {
            let span = push_span(&mut lines.arena, &event.body);
            lines.bodies.push(span);
        }
        lines
    }
}

/// Encodes whole events for interceptors, cleaners and routers.
#[derive(Default)]
pub struct BatchEncoder {
    batch: Option<wit::Batch>,
}

impl BatchEncoder {
    pub fn encode(&mut self, events: &[Event]) -> &wit::Batch {
        let b = self.batch.get_or_insert_with(|| wit::Batch {
            arena: Vec::new(),
            nodes: Vec::new(),
            tags: Vec::new(),
            events: Vec::new(),
        });
        b.arena.clear();
        b.nodes.clear();
        b.tags.clear();
        b.events.clear();
        for event in events {
            let name = push_span(&mut b.arena, event.name.as_bytes());
            let body = push_span(&mut b.arena, &event.body);
            let fields_start = b.nodes.len();
            match event.fields.repr() {
                FieldsRepr::Owned(map) => push_object(&mut b.arena, &mut b.nodes, NO_KEY, map),
                FieldsRepr::Wire(object) => object.encode_into(&mut b.arena, &mut b.nodes),
            }
            let tags_start = b.tags.len();
            for (k, v) in event.tags.iter() {
                let key = push_span(&mut b.arena, k.as_bytes());
                let value = push_span(&mut b.arena, v.as_bytes());
                b.tags.push(wit::Tag { key, value });
            }
            b.events.push(wit::Event {
                name,
                timestamp: event.timestamp,
                level: level_to_wit(event.level),
                body,
                fields: wit::Range {
                    start: fields_start as u32,
                    len: (b.nodes.len() - fields_start) as u32,
                },
                tags: wit::Range {
                    start: tags_start as u32,
                    len: (b.tags.len() - tags_start) as u32,
                },
            });
        }
        b
    }
}

/// A plugin's output arena and nodes, shared by the events whose fields point into it.
pub struct SharedOutput {
    arena: Vec<u8>,
    nodes: Vec<wit::Node>,
}

/// An object tree inside a plugin's output: an event's fields, kept in the wire form
/// instead of being copied out into a [`Map`]. Only [`OutputReader::object`] makes one,
/// after checking the tree, so every span in it is in range and every string is UTF-8.
#[derive(Clone)]
pub struct WireObject {
    output: Arc<SharedOutput>,
    start: u32,
    len: u32,
}

impl WireObject {
    /// The tree's nodes, root first.
    pub fn nodes(&self) -> &[wit::Node] {
        &self.output.nodes[self.start as usize..(self.start + self.len) as usize]
    }

    /// The bytes of a span of this tree (checked at construction).
    pub fn bytes(&self, span: wit::Span) -> &[u8] {
        &self.output.arena[span.offset as usize..(span.offset + span.len) as usize]
    }

    /// The text of a string span of this tree (checked UTF-8 at construction).
    pub fn str(&self, span: wit::Span) -> &str {
        std::str::from_utf8(self.bytes(span)).unwrap_or_default()
    }

    /// Members of the root object.
    pub fn len(&self) -> usize {
        match self.nodes().first().map(|n| n.value) {
            Some(wit::Value::Object(n)) => n as usize,
            _ => 0,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Copies the tree out into an owned map.
    pub fn to_map(&self) -> Map {
        let nodes = self.nodes();
        let mut pos = 1;
        let mut map = Map::with_capacity(self.len());
        for _ in 0..self.len() {
            let key = self.str(nodes[pos].key).to_owned();
            let value = self.value_at(nodes, &mut pos);
            map.insert(key, value);
        }
        map
    }

    fn value_at(&self, nodes: &[wit::Node], pos: &mut usize) -> Value {
        let node = nodes[*pos];
        *pos += 1;
        match node.value {
            wit::Value::Null => Value::Null,
            wit::Value::Boolean(b) => Value::Bool(b),
            wit::Value::Int(i) => Value::Int(i),
            wit::Value::Uint(u) => Value::from_u64(u),
            wit::Value::Float(f) => Value::Float(f),
            wit::Value::Str(span) => Value::String(self.str(span).to_owned()),
            wit::Value::Bytes(span) => Value::Bytes(self.bytes(span).to_vec()),
            wit::Value::Array(n) => {
                Value::Array((0..n).map(|_| self.value_at(nodes, pos)).collect())
            }
            wit::Value::Object(n) => {
                let mut map = Map::with_capacity(n as usize);
                for _ in 0..n {
                    let key = self.str(nodes[*pos].key).to_owned();
                    let value = self.value_at(nodes, pos);
                    map.insert(key, value);
                }
                Value::Object(map)
            }
        }
    }

    /// Appends the tree to an encoding batch, copying its strings into `arena`.
    fn encode_into(&self, arena: &mut Vec<u8>, nodes: &mut Vec<wit::Node>) {
        for (i, node) in self.nodes().iter().enumerate() {
            let key = if i == 0 || node.key.len == 0 {
                NO_KEY
            } else {
                push_span(arena, self.bytes(node.key))
            };
            let value = match node.value {
                wit::Value::Str(span) => wit::Value::Str(push_span(arena, self.bytes(span))),
                wit::Value::Bytes(span) => wit::Value::Bytes(push_span(arena, self.bytes(span))),
                other => other,
            };
            nodes.push(wit::Node { key, value });
        }
    }
}

/// Reads what a plugin returned, checking every span, range and tree.
pub struct OutputReader {
    output: Arc<SharedOutput>,
    tags: Vec<wit::Tag>,
}

impl OutputReader {
    pub fn new(data: wit::OutputData) -> Self {
        Self {
            output: Arc::new(SharedOutput {
                arena: data.arena,
                nodes: data.nodes,
            }),
            tags: data.tags,
        }
    }

    pub fn bytes(&self, span: wit::Span) -> Result<&[u8], WireError> {
        let arena = &self.output.arena;
        let start = span.offset as usize;
        start
            .checked_add(span.len as usize)
            .and_then(|end| arena.get(start..end))
            .ok_or(WireError::SpanOutOfRange {
                offset: span.offset,
                len: span.len,
                arena: arena.len(),
            })
    }

    pub fn str(&self, span: wit::Span) -> Result<&str, WireError> {
        std::str::from_utf8(self.bytes(span)?).map_err(|_| WireError::NotUtf8 {
            offset: span.offset,
        })
    }

    fn range<T>(list: &[T], range: wit::Range) -> Result<&[T], WireError> {
        let start = range.start as usize;
        start
            .checked_add(range.len as usize)
            .and_then(|end| list.get(start..end))
            .ok_or(WireError::RangeOutOfBounds {
                start: range.start,
                len: range.len,
                available: list.len(),
            })
    }

    /// The object tree that fills exactly `range`, checked.
    pub fn object(&self, range: wit::Range) -> Result<WireObject, WireError> {
        let nodes = Self::range(&self.output.nodes, range)?;
        if !matches!(nodes.first().map(|n| n.value), Some(wit::Value::Object(_))) {
            return Err(if nodes.is_empty() {
                WireError::MalformedTree("empty range")
            } else {
                WireError::FieldsNotObject
            });
        }
        let mut pos = 0;
        self.check_at(nodes, &mut pos, 0, false)?;
        if pos != nodes.len() {
            return Err(WireError::MalformedTree("range holds nodes after the tree"));
        }
        Ok(WireObject {
            output: self.output.clone(),
            start: range.start,
            len: range.len,
        })
    }

    /// Checks the subtree at `pos` (and its key, when it is an object member).
    fn check_at(
        &self,
        nodes: &[wit::Node],
        pos: &mut usize,
        depth: usize,
        keyed: bool,
    ) -> Result<(), WireError> {
        if depth > MAX_DEPTH {
            return Err(WireError::TooDeep);
        }
        let node = nodes
            .get(*pos)
            .ok_or(WireError::MalformedTree("tree ends before its last child"))?;
        *pos += 1;
        if keyed {
            self.str(node.key)?;
        }
        match node.value {
            wit::Value::Str(span) => {
                self.str(span)?;
            }
            wit::Value::Bytes(span) => {
                self.bytes(span)?;
            }
            wit::Value::Array(n) | wit::Value::Object(n) => {
                if n as usize > nodes.len() - *pos {
                    return Err(WireError::MalformedTree(
                        "container claims more children than remain",
                    ));
                }
                let members = matches!(node.value, wit::Value::Object(_));
                for _ in 0..n {
                    self.check_at(nodes, pos, depth + 1, members)?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn set_tags(&self, tags: &mut Tags, range: wit::Range) -> Result<(), WireError> {
        for tag in Self::range(&self.tags, range)? {
            tags.set(self.str(tag.key)?, self.str(tag.value)?);
        }
        Ok(())
    }

    /// Applies a patch to `event`. Nothing is changed when the patch is malformed.
    pub fn apply_patch(&self, event: &mut Event, patch: &wit::Patch) -> Result<(), WireError> {
        let fields = match patch.fields {
            Some(wit::FieldsUpdate::Merge(range)) => Some((false, self.object(range)?)),
            Some(wit::FieldsUpdate::Replace(range)) => Some((true, self.object(range)?)),
            None => None,
        };
        let name = patch.name.map(|span| self.str(span)).transpose()?;
        let body = patch.body.map(|span| self.bytes(span)).transpose()?;
        let mut tags = event.tags.clone();
        self.set_tags(&mut tags, patch.tags)?;

        match fields {
            Some((true, object)) => event.fields = Fields::from(object),
            Some((false, object)) => event.fields.merge(object),
            None => {}
        }
        event.tags = tags;
        if let Some(level) = patch.level {
            event.level = level_from_wit(level);
        }
        if let Some(ts) = patch.timestamp {
            event.timestamp = Some(ts);
        }
        if let Some(name) = name {
            event.name = Arc::from(name);
        }
        if let Some(body) = body {
            event.body = body.to_vec();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_fields() -> Map {
        let mut inner = Map::new();
        inner.insert("empty_obj".into(), Value::Object(Map::new()));
        let mut fields = Map::new();
        fields.insert("null".into(), Value::Null);
        fields.insert("float".into(), Value::Float(1.0));
        fields.insert("int".into(), Value::Int(-7));
        fields.insert("big".into(), Value::Uint(u64::MAX));
        fields.insert("empty".into(), Value::Array(vec![]));
        fields.insert(
            "mixed".into(),
            Value::Array(vec![
                Value::Bool(true),
                Value::String("é".into()),
                Value::Bytes(vec![0, 255]),
            ]),
        );
        fields.insert("nested".into(), Value::Object(inner));
        fields
    }

    #[test]
    fn encoded_batch_decodes_to_the_same_fields() {
        let mut event = Event::from_body(Arc::from("app"), b"raw".to_vec());
        event.fields = Fields::from(sample_fields());
        let mut encoder = BatchEncoder::default();
        let batch = encoder.encode(std::slice::from_ref(&event));
        let data = wit::OutputData {
            arena: batch.arena.clone(),
            nodes: batch.nodes.clone(),
            tags: batch.tags.clone(),
        };
        let reader = OutputReader::new(data);
        let decoded = reader.object(batch.events[0].fields).unwrap().to_map();
        assert_eq!(decoded, sample_fields());
        // Order is kept too.
        assert!(decoded.keys().eq(sample_fields().keys()));

        // Fields kept in the wire form encode to the same batch again.
        let mut again = event.clone();
        again.fields = Fields::from(reader.object(batch.events[0].fields).unwrap());
        let mut encoder2 = BatchEncoder::default();
        let batch2 = encoder2.encode(std::slice::from_ref(&again));
        let reader2 = OutputReader::new(wit::OutputData {
            arena: batch2.arena.clone(),
            nodes: batch2.nodes.clone(),
            tags: batch2.tags.clone(),
        });
        assert_eq!(
            reader2.object(batch2.events[0].fields).unwrap().to_map(),
            sample_fields()
        );
    }

    #[test]
    fn hostile_output_is_rejected_not_trusted() {
        let data = wit::OutputData {
            arena: b"abc\xff".to_vec(),
            nodes: vec![wit::Node {
                key: NO_KEY,
                value: wit::Value::Object(u32::MAX),
            }],
            tags: vec![],
        };
        let r = OutputReader::new(data);
        assert!(matches!(
            r.object(wit::Range { start: 0, len: 1 }),
            Err(WireError::MalformedTree(_))
        ));
        assert!(matches!(
            r.object(wit::Range { start: 0, len: 9 }),
            Err(WireError::RangeOutOfBounds { .. })
        ));
        assert!(matches!(
            r.str(wit::Span { offset: 2, len: 2 }),
            Err(WireError::NotUtf8 { .. })
        ));
        assert!(matches!(
            r.bytes(wit::Span {
                offset: u32::MAX,
                len: u32::MAX
            }),
            Err(WireError::SpanOutOfRange { .. })
        ));
    }

    #[test]
    fn deep_trees_are_refused() {
        let nodes = (0..MAX_DEPTH + 2)
            .map(|_| wit::Node {
                key: NO_KEY,
                value: wit::Value::Array(1),
            })
            .chain([wit::Node {
                key: NO_KEY,
                value: wit::Value::Null,
            }])
            .collect::<Vec<_>>();
        let mut nodes = nodes;
        nodes[0].value = wit::Value::Object(1);
        let data = wit::OutputData {
            arena: vec![],
            nodes,
            tags: vec![],
        };
        let len = data.nodes.len() as u32;
        assert!(matches!(
            OutputReader::new(data).object(wit::Range { start: 0, len }),
            Err(WireError::TooDeep)
        ));
    }

    #[test]
    fn patches_merge_replace_and_set() {
        let data = {
            let mut arena = Vec::new();
            let mut nodes = Vec::new();
            let mut m = Map::new();
            m.insert("added".into(), Value::Int(1));
            push_object(&mut arena, &mut nodes, NO_KEY, &m);
            let k = push_span(&mut arena, b"host");
            let v = push_span(&mut arena, b"gw-1");
            wit::OutputData {
                arena,
                nodes,
                tags: vec![wit::Tag { key: k, value: v }],
            }
        };
        let reader = OutputReader::new(data);
        let mut event = Event::default();
        event.fields.insert("kept", Value::Null);
        let patch = wit::Patch {
            fields: Some(wit::FieldsUpdate::Merge(wit::Range { start: 0, len: 2 })),
            tags: wit::Range { start: 0, len: 1 },
            level: Some(wit::Level::Warn),
            timestamp: Some(42),
            name: None,
            body: None,
        };
        reader.apply_patch(&mut event, &patch).unwrap();
        assert_eq!(event.fields.len(), 2);
        assert_eq!(event.tags.get("host"), Some("gw-1"));
        assert_eq!((event.level, event.timestamp), (Level::Warn, Some(42)));

        let replace = wit::Patch {
            fields: Some(wit::FieldsUpdate::Replace(wit::Range { start: 0, len: 2 })),
            ..patch
        };
        reader.apply_patch(&mut event, &replace).unwrap();
        assert_eq!(
            event.fields.to_map().keys().collect::<Vec<_>>(),
            vec!["added"]
        );
    }
}
