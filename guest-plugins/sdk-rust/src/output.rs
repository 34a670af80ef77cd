//! [`Output`]: writes the arena, nodes and tags that a plugin returns.

use crate::bindings::types::{self, Node, OutputData, Range, Span, Tag};
use crate::value::Value;

const NO_KEY: Span = Span { offset: 0, len: 0 };

/// The arena, node list and tag list a plugin fills while it handles one batch.
#[derive(Debug, Default)]
pub struct Output {
    arena: Vec<u8>,
    nodes: Vec<Node>,
    tags: Vec<Tag>,
}

impl Output {
    pub fn new() -> Self {
        Self::default()
    }

    /// An output sized for `events` events of about `bytes_per_event` bytes and
    /// `nodes_per_event` nodes each.
    pub fn with_capacity(events: usize, bytes_per_event: usize, nodes_per_event: usize) -> Self {
        Self {
            arena: Vec::with_capacity(events * bytes_per_event),
            nodes: Vec::with_capacity(events * nodes_per_event),
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

    /// Starts an object at the root of a new tree (fields, a merge, a replacement).
    pub fn object(&mut self) -> ObjectWriter<'_> {
        let root = self.nodes.len();
        self.nodes.push(Node {
            key: NO_KEY,
            value: types::Value::Object(0),
        });
        ObjectWriter {
            out: self,
            root,
            count: 0,
        }
    }

    /// Writes `value` as a new tree and returns its range.
    pub fn tree(&mut self, value: &Value) -> Range {
        let start = self.nodes.len();
        self.push_value(NO_KEY, value);
        Range {
            start: start as u32,
            len: (self.nodes.len() - start) as u32,
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
            nodes: self.nodes,
            tags: self.tags,
        }
    }

    fn push_value(&mut self, key: Span, value: &Value) {
        let node = match value {
            Value::Null => types::Value::Null,
            Value::Bool(b) => types::Value::Boolean(*b),
            Value::Int(i) => types::Value::Int(*i),
            Value::Uint(u) => match i64::try_from(*u) {
                Ok(i) => types::Value::Int(i),
                Err(_) => types::Value::Uint(*u),
            },
            Value::Float(f) => types::Value::Float(*f),
            Value::Str(s) => types::Value::Str(self.span(s.as_bytes())),
            Value::Bytes(b) => types::Value::Bytes(self.span(b)),
            Value::Array(items) => {
                self.nodes.push(Node {
                    key,
                    value: types::Value::Array(items.len() as u32),
                });
                for item in items {
                    self.push_value(NO_KEY, item);
                }
                return;
            }
            Value::Object(members) => {
                self.nodes.push(Node {
                    key,
                    value: types::Value::Object(members.len() as u32),
                });
                for (k, v) in members {
                    let k = self.span(k.as_bytes());
                    self.push_value(k, v);
                }
                return;
            }
        };
        self.nodes.push(Node { key, value: node });
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
    fn member(&mut self, key: &str, value: types::Value) -> &mut Self {
        let key = self.out.span(key.as_bytes());
        self.out.nodes.push(Node { key, value });
        self.count += 1;
        self
    }

    pub fn str(&mut self, key: &str, value: &str) -> &mut Self {
        let span = self.out.span(value.as_bytes());
        self.member(key, types::Value::Str(span))
    }

    pub fn bytes(&mut self, key: &str, value: &[u8]) -> &mut Self {
        let span = self.out.span(value);
        self.member(key, types::Value::Bytes(span))
    }

    pub fn int(&mut self, key: &str, value: i64) -> &mut Self {
        self.member(key, types::Value::Int(value))
    }

    pub fn float(&mut self, key: &str, value: f64) -> &mut Self {
        self.member(key, types::Value::Float(value))
    }

    pub fn bool(&mut self, key: &str, value: bool) -> &mut Self {
        self.member(key, types::Value::Boolean(value))
    }

    pub fn null(&mut self, key: &str) -> &mut Self {
        self.member(key, types::Value::Null)
    }

    /// A member holding any value tree.
    pub fn value(&mut self, key: &str, value: &Value) -> &mut Self {
        let key = self.out.span(key.as_bytes());
        self.out.push_value(key, value);
        self.count += 1;
        self
    }

    /// A member holding a nested object, written through the returned writer.
    pub fn object(&mut self, key: &str) -> ObjectWriter<'_> {
        let key = self.out.span(key.as_bytes());
        let root = self.out.nodes.len();
        self.out.nodes.push(Node {
            key,
            value: types::Value::Object(0),
        });
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
            len: (self.out.nodes.len() - self.root) as u32,
        }
    }
}

impl Drop for ObjectWriter<'_> {
    fn drop(&mut self) {
        self.out.nodes[self.root].value = types::Value::Object(self.count);
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
