//! [`Output`]: writes the arena, nodes and tags that a plugin returns.

use crate::bindings::types::{Nodes, OutputData, Range, Span, Tag};
use crate::nodes::{NodeValue, kind, pack};
use crate::value::Value;

/// The packed key of a node whose parent is not an object.
const NO_KEY: u64 = 0;

/// A member name written once into an [`Output`] and reused by every object of the batch
/// (see [`Output::key`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key(u64);

/// A member name for [`ObjectWriter`]: a `&str` (copied into the arena each time) or a
/// [`Key`] (written once per output).
pub trait MemberKey {
    fn packed(self, out: &mut Output) -> u64;
}

impl<S: AsRef<str>> MemberKey for S {
    #[inline]
    fn packed(self, out: &mut Output) -> u64 {
        out.packed(self.as_ref().as_bytes())
    }
}

impl MemberKey for Key {
    #[inline]
    fn packed(self, _: &mut Output) -> u64 {
        self.0
    }
}

/// The arena, node columns and tag list a plugin fills while it handles one batch.
#[derive(Debug, Default)]
pub struct Output {
    arena: Vec<u8>,
    kinds: Vec<u8>,
    keys: Vec<u64>,
    payloads: Vec<u64>,
    tags: Vec<Tag>,
}

impl Output {
    pub fn new() -> Self {
        Self::default()
    }

    /// An output sized for `events` events of about `bytes_per_event` bytes and
    /// `nodes_per_event` nodes each.
    pub fn with_capacity(events: usize, bytes_per_event: usize, nodes_per_event: usize) -> Self {
        let nodes = events * nodes_per_event;
        Self {
            arena: Vec::with_capacity(events * bytes_per_event),
            kinds: Vec::with_capacity(nodes),
            keys: Vec::with_capacity(nodes),
            payloads: Vec::with_capacity(nodes),
            tags: Vec::new(),
        }
    }

    /// Copies `bytes` into the arena.
    pub fn span(&mut self, bytes: &[u8]) -> Span {
        let offset = self.arena.len() as u32;
        self.arena.extend_from_slice(bytes);
        Span {
            offset,
            len: bytes.len() as u32,
        }
    }

    /// Writes a member name once, for objects that all have it: a parser that writes the
    /// same dozen names for each of a thousand events writes them a dozen times, and the
    /// batch crossing the boundary is that much smaller.
    pub fn key(&mut self, name: &str) -> Key {
        Key(self.packed(name.as_bytes()))
    }

    /// Copies `bytes` into the arena; returns the packed span.
    #[inline]
    fn packed(&mut self, bytes: &[u8]) -> u64 {
        pack(self.span(bytes))
    }

    #[inline]
    fn push(&mut self, key: u64, kind: u8, payload: u64) -> usize {
        let at = self.kinds.len();
        self.kinds.push(kind);
        self.keys.push(key);
        self.payloads.push(payload);
        at
    }

    /// Starts an object at the root of a new tree (fields, a merge, a replacement).
    pub fn object(&mut self) -> ObjectWriter<'_> {
        let root = self.push(NO_KEY, kind::OBJECT, 0);
        ObjectWriter {
            out: self,
            root,
            count: 0,
        }
    }

    /// Writes `value` as a new tree and returns its range.
    pub fn tree(&mut self, value: &Value) -> Range {
        let start = self.kinds.len();
        self.push_value(NO_KEY, value);
        Range {
            start: start as u32,
            len: (self.kinds.len() - start) as u32,
        }
    }

    /// Writes tags and returns their range (for a patch).
    pub fn tags<'a>(&mut self, tags: impl IntoIterator<Item = (&'a str, &'a str)>) -> Range {
        let start = self.tags.len();
        for (key, value) in tags {
            let key = self.span(key.as_bytes());
            let value = self.span(value.as_bytes());
            self.tags.push(Tag { key, value });
        }
        Range {
            start: start as u32,
            len: (self.tags.len() - start) as u32,
        }
    }

    /// Hands the written data over, to return it to the host.
    pub fn finish(self) -> OutputData {
        OutputData {
            arena: self.arena,
            nodes: Nodes {
                kinds: self.kinds,
                keys: self.keys,
                payloads: self.payloads,
            },
            tags: self.tags,
        }
    }

    fn push_value(&mut self, key: u64, value: &Value) {
        let (kind, payload) = match value {
            Value::Null => (kind::NULL, 0),
            Value::Bool(b) => (kind::BOOL, *b as u64),
            Value::Int(i) => (kind::INT, *i as u64),
            Value::Uint(u) => NodeValue::Uint(*u).to_raw(),
            Value::Float(f) => (kind::FLOAT, f.to_bits()),
            Value::Str(s) => (kind::STR, self.packed(s.as_bytes())),
            Value::Bytes(b) => (kind::BYTES, self.packed(b)),
            Value::Array(items) => {
                self.push(key, kind::ARRAY, items.len() as u64);
                for item in items {
                    self.push_value(NO_KEY, item);
                }
                return;
            }
            Value::Object(members) => {
                self.push(key, kind::OBJECT, members.len() as u64);
                for (k, v) in members {
                    let k = self.packed(k.as_bytes());
                    self.push_value(k, v);
                }
                return;
            }
        };
        self.push(key, kind, payload);
    }
}

/// Writes the members of one object. The member count is written when the writer is
/// finished or dropped.
pub struct ObjectWriter<'a> {
    out: &'a mut Output,
    root: usize,
    count: u32,
}

impl ObjectWriter<'_> {
    #[inline]
    fn member(&mut self, key: impl MemberKey, kind: u8, payload: u64) -> &mut Self {
        let key = key.packed(self.out);
        self.out.push(key, kind, payload);
        self.count += 1;
        self
    }

    pub fn str(&mut self, key: impl MemberKey, value: &str) -> &mut Self {
        let span = self.out.packed(value.as_bytes());
        self.member(key, kind::STR, span)
    }

    pub fn bytes(&mut self, key: impl MemberKey, value: &[u8]) -> &mut Self {
        let span = self.out.packed(value);
        self.member(key, kind::BYTES, span)
    }

    pub fn int(&mut self, key: impl MemberKey, value: i64) -> &mut Self {
        self.member(key, kind::INT, value as u64)
    }

    pub fn float(&mut self, key: impl MemberKey, value: f64) -> &mut Self {
        self.member(key, kind::FLOAT, value.to_bits())
    }

    pub fn bool(&mut self, key: impl MemberKey, value: bool) -> &mut Self {
        self.member(key, kind::BOOL, value as u64)
    }

    pub fn null(&mut self, key: impl MemberKey) -> &mut Self {
        self.member(key, kind::NULL, 0)
    }

    /// A member holding any value tree.
    pub fn value(&mut self, key: impl MemberKey, value: &Value) -> &mut Self {
        let key = key.packed(self.out);
        self.out.push_value(key, value);
        self.count += 1;
        self
    }

    /// A member holding a nested object, written through the returned writer.
    pub fn object(&mut self, key: impl MemberKey) -> ObjectWriter<'_> {
        let key = key.packed(self.out);
        let root = self.out.push(key, kind::OBJECT, 0);
        self.count += 1;
        ObjectWriter {
            out: self.out,
            root,
            count: 0,
        }
    }

    /// Ends the object; returns the range of its whole tree.
    pub fn finish(self) -> Range {
        Range {
            start: self.root as u32,
            len: (self.out.kinds.len() - self.root) as u32,
        }
    }
}

impl Drop for ObjectWriter<'_> {
    fn drop(&mut self) {
        self.out.payloads[self.root] = u64::from(self.count);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::decode_value;

    #[test]
    fn writer_output_decodes_to_the_same_tree() {
        let original = Value::Object(vec![
            ("a".into(), Value::Float(1.0)),
            ("b".into(), Value::Array(vec![])),
            ("c".into(), Value::Object(vec![])),
            ("d".into(), Value::Null),
            (
                "e".into(),
                Value::Array(vec![
                    Value::Int(-3),
                    Value::Str("é".into()),
                    Value::Uint(u64::MAX),
                ]),
            ),
        ]);
        let mut out = Output::new();
        let range = out.tree(&original);
        let data = out.finish();
        assert_eq!(
            decode_value(&data.arena, &data.nodes, range).unwrap(),
            original
        );
    }

    #[test]
    fn object_writer_counts_members_and_nests() {
        let mut out = Output::new();
        let range = {
            let mut obj = out.object();
            obj.str("host", "10.0.0.1").int("status", 200);
            {
                let mut inner = obj.object("geo");
                inner.float("lat", 1.5);
            }
            obj.null("user");
            obj.finish()
        };
        let data = out.finish();
        let value = decode_value(&data.arena, &data.nodes, range).unwrap();
        assert_eq!(
            value,
            Value::Object(vec![
                ("host".into(), Value::Str("10.0.0.1".into())),
                ("status".into(), Value::Int(200)),
                (
                    "geo".into(),
                    Value::Object(vec![("lat".into(), Value::Float(1.5))])
                ),
                ("user".into(), Value::Null),
            ])
        );
    }

    #[test]
    fn keys_written_once_are_shared_by_objects() {
        let mut out = Output::new();
        let host = out.key("host");
        let ranges: Vec<Range> = ["a", "b"]
            .iter()
            .map(|v| {
                let mut obj = out.object();
                obj.str(host, v).int("n", 1);
                obj.finish()
            })
            .collect();
        let data = out.finish();
        for (range, v) in ranges.iter().zip(["a", "b"]) {
            assert_eq!(
                decode_value(&data.arena, &data.nodes, *range).unwrap(),
                Value::Object(vec![
                    ("host".into(), Value::Str(v.into())),
                    ("n".into(), Value::Int(1))
                ])
            );
        }
        // "host" once, "a", "n", "b", "n".
        assert_eq!(data.arena, b"hostanbn");
    }

    #[test]
    fn malformed_trees_are_rejected() {
        let mut out = Output::new();
        let range = out.tree(&Value::Array(vec![Value::Int(1), Value::Int(2)]));
        let data = out.finish();
        let short = Range {
            start: range.start,
            len: range.len - 1,
        };
        assert!(decode_value(&data.arena, &data.nodes, short).is_err());
        let long = Range {
            start: range.start,
            len: range.len + 1,
        };
        assert!(decode_value(&data.arena, &data.nodes, long).is_err());
    }
}
