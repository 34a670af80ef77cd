//! Reading a [`Batch`] without decoding it whole.
//!
//! [`events`] walks the events of a batch as [`EventRef`]s; [`NodeRef`] is a borrowed view
//! of one node of an event's fields, so a plugin that needs one field reads only the nodes
//! on the way to it:
//!
//! ```ignore
//! for event in runnel_plugin_sdk::events(&batch) {
//!     if let Some(status) = event.field(&["http", "status"]) {
//!         if let NodeValue::Int(code) = status.value() { /* … */ }
//!     }
//! }
//! ```
//!
//! [`BatchBuilder`] writes batches for native tests.

use crate::bindings::types::{Batch, Event, Level, Range, Span};
use crate::nodes::{NodeValue, NodesRef, unpack};
use crate::output::Output;
use crate::value::{DecodeError, Value, decode_value};
use crate::{span_bytes, span_str};

/// The events of `batch`, in order.
pub fn events(batch: &Batch) -> impl ExactSizeIterator<Item = EventRef<'_>> {
    batch
        .events
        .iter()
        .map(move |event| EventRef { batch, event })
}

/// One event of a batch, with access to the batch's arena, nodes and tags.
#[derive(Debug, Clone, Copy)]
pub struct EventRef<'a> {
    batch: &'a Batch,
    event: &'a Event,
}

impl<'a> EventRef<'a> {
    /// The wire record.
    pub fn event(&self) -> &'a Event {
        self.event
    }

    pub fn body(&self) -> &'a [u8] {
        span_bytes(&self.batch.arena, self.event.body)
    }

    /// The name; invalid UTF-8 is replaced.
    pub fn name(&self) -> std::borrow::Cow<'a, str> {
        span_str(&self.batch.arena, self.event.name)
    }

    pub fn level(&self) -> Level {
        self.event.level
    }

    pub fn timestamp(&self) -> Option<i64> {
        self.event.timestamp
    }

    /// The root of the fields (an object), or `None` when the range is empty or out of
    /// bounds.
    pub fn fields(&self) -> Option<NodeRef<'a>> {
        NodeRef::root(&self.batch.arena, &self.batch.nodes, self.event.fields)
    }

    /// The field at `path` (member names from the root, one per level of nesting).
    pub fn field<S: AsRef<str>>(&self, path: &[S]) -> Option<NodeRef<'a>> {
        self.fields()?.path(path)
    }

    /// The tags as `(key, value)` byte strings.
    pub fn tags(&self) -> impl Iterator<Item = (&'a [u8], &'a [u8])> + 'a {
        let arena = &self.batch.arena;
        let range = self.event.tags;
        let start = range.start as usize;
        let end = start.saturating_add(range.len as usize);
        self.batch
            .tags
            .get(start..end)
            .unwrap_or(&[])
            .iter()
            .map(move |tag| (span_bytes(arena, tag.key), span_bytes(arena, tag.value)))
    }

    /// The value of the last tag named `key`.
    pub fn tag(&self, key: &str) -> Option<&'a [u8]> {
        self.tags()
            .filter(|(k, _)| *k == key.as_bytes())
            .last()
            .map(|(_, v)| v)
    }
}

/// A borrowed view of one node of a value tree and, through it, of the node's subtree.
#[derive(Debug, Clone, Copy)]
pub struct NodeRef<'a> {
    arena: &'a [u8],
    /// The whole tree the node belongs to.
    nodes: NodesRef<'a>,
    at: usize,
}

impl<'a> NodeRef<'a> {
    /// A view of the root of the tree that fills `range` of `nodes` (for trees outside a
    /// batch, such as the nodes of an output).
    pub fn root(arena: &'a [u8], nodes: impl Into<NodesRef<'a>>, range: Range) -> Option<Self> {
        let start = range.start as usize;
        let nodes = nodes
            .into()
            .slice(start, start.checked_add(range.len as usize)?)?;
        if nodes.is_empty() {
            return None;
        }
        Some(Self {
            arena,
            nodes,
            at: 0,
        })
    }

    /// The node's value: a scalar, or the child count of a container. A malformed node
    /// (unknown kind, see [`NodeValue::from_raw`]) reads as `Null`.
    pub fn value(&self) -> NodeValue {
        self.nodes.value(self.at).unwrap_or(NodeValue::Null)
    }

    /// The node's kind number (see [`crate::kind`]).
    pub fn kind(&self) -> u8 {
        self.nodes.kinds[self.at]
    }

    /// The node's raw payload.
    pub fn payload(&self) -> u64 {
        self.nodes.payloads[self.at]
    }

    /// The member name when the parent is an object, empty otherwise.
    pub fn key(&self) -> &'a [u8] {
        span_bytes(self.arena, unpack(self.nodes.keys[self.at]))
    }

    /// The text of a `str` node (`None` for other nodes and for invalid UTF-8).
    pub fn as_str(&self) -> Option<&'a str> {
        match self.value() {
            NodeValue::Str(span) => std::str::from_utf8(span_bytes(self.arena, span)).ok(),
            _ => None,
        }
    }

    /// The bytes of a `str` or `bytes` node.
    pub fn as_bytes(&self) -> Option<&'a [u8]> {
        match self.value() {
            NodeValue::Str(span) | NodeValue::Bytes(span) => Some(span_bytes(self.arena, span)),
            _ => None,
        }
    }

    /// The bytes of `span` in the tree's arena.
    pub fn span_bytes(&self, span: Span) -> &'a [u8] {
        span_bytes(self.arena, span)
    }

    /// The nodes of the whole subtree, this node first; `None` when the tree is malformed.
    pub fn subtree(&self) -> Option<NodesRef<'a>> {
        let len = subtree_len(self.nodes, self.at)?;
        self.nodes.slice(self.at, self.at + len)
    }

    /// Decodes the subtree into an owned [`Value`].
    pub fn decode(&self) -> Result<Value, DecodeError> {
        let len = subtree_len(self.nodes, self.at)
            .ok_or_else(|| DecodeError("tree ends before its last child".into()))?;
        decode_value(
            self.arena,
            self.nodes,
            Range {
                start: self.at as u32,
                len: len as u32,
            },
        )
    }

    /// The elements of an array or the members of an object (nothing for scalars).
    pub fn children(&self) -> Children<'a> {
        let remaining = match self.value() {
            NodeValue::Array(n) | NodeValue::Object(n) => n,
            _ => 0,
        };
        Children {
            arena: self.arena,
            nodes: self.nodes,
            next: self.at + 1,
            remaining,
        }
    }

    /// The first member named `key` of an object.
    pub fn get(&self, key: &str) -> Option<NodeRef<'a>> {
        let NodeValue::Object(members) = self.value() else {
            return None;
        };
        let mut at = self.at + 1;
        for _ in 0..members {
            let member = *self.nodes.keys.get(at)?;
            if span_bytes(self.arena, unpack(member)) == key.as_bytes() {
                return Some(NodeRef { at, ..*self });
            }
            at += subtree_len(self.nodes, at)?;
        }
        None
    }

    /// The node reached by following member names from this one.
    pub fn path<S: AsRef<str>>(&self, path: &[S]) -> Option<NodeRef<'a>> {
        path.iter()
            .try_fold(*self, |node, key| node.get(key.as_ref()))
    }
}

/// The children of a container node; see [`NodeRef::children`]. Stops early on a
/// malformed tree.
#[derive(Debug, Clone)]
pub struct Children<'a> {
    arena: &'a [u8],
    nodes: NodesRef<'a>,
    next: usize,
    remaining: u32,
}

impl<'a> Iterator for Children<'a> {
    type Item = NodeRef<'a>;

    fn next(&mut self) -> Option<NodeRef<'a>> {
        if self.remaining == 0 {
            return None;
        }
        let Some(len) = subtree_len(self.nodes, self.next) else {
            self.remaining = 0;
            return None;
        };
        let child = NodeRef {
            arena: self.arena,
            nodes: self.nodes,
            at: self.next,
        };
        self.next += len;
        self.remaining -= 1;
        Some(child)
    }
}

/// The number of nodes in the subtree at `at`, or `None` when it runs past `nodes`.
fn subtree_len(nodes: NodesRef<'_>, at: usize) -> Option<usize> {
    runnel_flat::subtree_len(nodes.kinds, nodes.payloads, at)
}

/// Writes a [`Batch`], for native tests of interceptors, cleaners and routers.
///
/// ```ignore
/// let mut b = BatchBuilder::new();
/// b.event("GET /", &fields).level(Level::Info).tag("host", "gw-7");
/// let batch = b.finish();
/// ```
#[derive(Debug, Default)]
pub struct BatchBuilder {
    out: Output,
    tag_count: u32,
    events: Vec<Event>,
}

impl BatchBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an event with this body and fields (an object; `Value::Null` writes no
    /// fields). It has no name, timestamp or tags and the level `unknown` until the
    /// setters below change them.
    pub fn event(&mut self, body: impl AsRef<[u8]>, fields: &Value) -> &mut Self {
        let body = self.out.span(body.as_ref());
        let fields = match fields {
            Value::Null => Range { start: 0, len: 0 },
            value => self.out.tree(value),
        };
        self.events.push(Event {
            name: Span { offset: 0, len: 0 },
            timestamp: None,
            level: Level::Unknown,
            body,
            fields,
            tags: Range {
                start: self.tag_count,
                len: 0,
            },
        });
        self
    }

    fn last(&mut self) -> &mut Event {
        self.events
            .last_mut()
            .expect("BatchBuilder: call `event` before setting its parts")
    }

    pub fn name(&mut self, name: &str) -> &mut Self {
        let span = self.out.span(name.as_bytes());
        self.last().name = span;
        self
    }

    pub fn level(&mut self, level: Level) -> &mut Self {
        self.last().level = level;
        self
    }

    pub fn timestamp(&mut self, ns: i64) -> &mut Self {
        self.last().timestamp = Some(ns);
        self
    }

    /// Adds a tag to the last event.
    pub fn tag(&mut self, key: &str, value: &str) -> &mut Self {
        self.out.tags([(key, value)]);
        self.tag_count += 1;
        self.last().tags.len += 1;
        self
    }

    pub fn finish(self) -> Batch {
        let data = self.out.finish();
        Batch {
            arena: data.arena,
            nodes: data.nodes,
            tags: data.tags,
            events: self.events,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(members: &[(&str, Value)]) -> Value {
        Value::Object(
            members
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        )
    }

    fn sample() -> Batch {
        let nested = obj(&[
            (
                "list",
                Value::Array(vec![Value::Int(1), obj(&[("x", Value::Null)])]),
            ),
            (
                "http",
                obj(&[
                    ("status", Value::Int(404)),
                    ("path", Value::Str("/a".into())),
                ]),
            ),
            ("msg", Value::Str("hello".into())),
        ]);
        let mut b = BatchBuilder::new();
        b.event("first", &nested)
            .name("app")
            .level(Level::Warn)
            .timestamp(7)
            .tag("host", "a")
            .tag("host", "b");
        b.event(b"second", &Value::Null).tag("env", "prod");
        b.finish()
    }

    #[test]
    fn events_expose_their_parts() {
        let batch = sample();
        let all: Vec<_> = events(&batch).collect();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].body(), b"first");
        assert_eq!(all[0].name(), "app");
        assert_eq!(all[0].level(), Level::Warn);
        assert_eq!(all[0].timestamp(), Some(7));
        assert_eq!(all[0].tag("host"), Some(&b"b"[..]));
        assert_eq!(all[0].tags().count(), 2);
        assert_eq!(
            all[1].tags().collect::<Vec<_>>(),
            vec![(&b"env"[..], &b"prod"[..])]
        );
        assert!(all[1].fields().is_none());
        assert!(all[1].field(&["msg"]).is_none());
    }

    #[test]
    fn field_paths_walk_nested_objects() {
        let batch = sample();
        let event = events(&batch).next().unwrap();
        let status = event.field(&["http", "status"]).unwrap();
        assert!(matches!(status.value(), NodeValue::Int(404)));
        assert_eq!(status.key(), b"status");
        assert_eq!(event.field(&["http", "path"]).unwrap().as_str(), Some("/a"));
        assert_eq!(
            event.field(&["msg"]).unwrap().as_bytes(),
            Some(&b"hello"[..])
        );
        assert!(event.field(&["http", "nope"]).is_none());
        assert!(event.field(&["msg", "deeper"]).is_none());
        // Arrays are not walked by name.
        assert!(event.field(&["list", "x"]).is_none());
    }

    #[test]
    fn children_skip_whole_subtrees_and_decode() {
        let batch = sample();
        let root = events(&batch).next().unwrap().fields().unwrap();
        let keys: Vec<_> = root.children().map(|c| c.key().to_vec()).collect();
        assert_eq!(
            keys,
            vec![b"list".to_vec(), b"http".to_vec(), b"msg".to_vec()]
        );
        let list = root.get("list").unwrap();
        assert_eq!(list.subtree().unwrap().len(), 4);
        assert_eq!(
            list.decode().unwrap(),
            Value::Array(vec![Value::Int(1), obj(&[("x", Value::Null)])])
        );
        assert_eq!(list.children().count(), 2);
        assert_eq!(
            root.subtree().unwrap().len(),
            batch.events[0].fields.len as usize
        );
    }

    #[test]
    fn malformed_trees_do_not_panic() {
        let mut batch = sample();
        // The root claims more members than the range holds.
        batch.nodes.set_value(0, NodeValue::Object(50));
        let root = events(&batch).next().unwrap().fields().unwrap();
        assert!(root.subtree().is_none());
        assert!(root.decode().is_err());
        assert_eq!(root.children().count(), 3);
        assert!(root.get("absent").is_none());
        // An event whose range is out of bounds has no fields.
        batch.events[0].fields = Range {
            start: 1000,
            len: 3,
        };
        assert!(events(&batch).next().unwrap().fields().is_none());
        // A huge child count in a short tree.
        batch.nodes.set_value(0, NodeValue::Array(u32::MAX));
        let root = NodeRef::root(&batch.arena, &batch.nodes, Range { start: 0, len: 2 }).unwrap();
        assert!(root.subtree().is_none());
    }
}
