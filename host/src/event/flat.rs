//! Fields kept as a plugin returned them (or as the file channel stored them): an object
//! tree in Runnel's flat layout — an arena of bytes, value trees as pre-order node
//! columns (kind, key span, payload), strings as packed spans into the arena; the layout
//! and its primitives are the `runnel-flat` crate. The events of one batch share the
//! arena and columns they came in, so parsed fields are not copied member by member into
//! the host and back out to the next plugin or the sink.
//!
//! A [`FlatObject`] is only made by [`FlatOutput::object`], which checks its tree whole:
//! every kind known, every count consistent, every span in range, every string UTF-8,
//! depth bounded. Reading one afterwards cannot fail.

use super::{Map, Value};
use runnel_flat::{kind, unpack};
use std::sync::Arc;

/// Deepest value tree accepted; deeper trees are malformed (they would otherwise exhaust
/// the host's stack when read).
pub const MAX_DEPTH: usize = 128;

/// Flat data that does not hold what it claims.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum FlatError {
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
}

/// An arena and the node columns that point into it: one plugin call's output, or one
/// batch read from a file channel. Unchecked until a tree of it is asked for.
pub struct FlatOutput {
    arena: Arena,
    kinds: Vec<u8>,
    keys: Vec<u64>,
    payloads: Vec<u64>,
}

/// The arena's bytes, checked once: text when all of them are UTF-8 (the usual case:
/// then a string span is a `str` slice whose ends `str::get` checks, in constant time),
/// bytes otherwise (then each string span is checked on its own).
enum Arena {
    Text(String),
    Bytes(Vec<u8>),
}

impl Arena {
    fn new(bytes: Vec<u8>) -> Self {
        match String::from_utf8(bytes) {
            Ok(text) => Arena::Text(text),
            Err(e) => Arena::Bytes(e.into_bytes()),
        }
    }

    #[inline]
    fn bytes(&self) -> &[u8] {
        match self {
            Arena::Text(text) => text.as_bytes(),
            Arena::Bytes(bytes) => bytes,
        }
    }

    /// The text at `start..end`: `None` when out of range or not UTF-8.
    #[inline]
    fn str(&self, start: usize, end: usize) -> Option<&str> {
        match self {
            Arena::Text(text) => text.get(start..end),
            Arena::Bytes(bytes) => std::str::from_utf8(bytes.get(start..end)?).ok(),
        }
    }
}

impl FlatOutput {
    pub fn new(arena: Vec<u8>, kinds: Vec<u8>, keys: Vec<u64>, payloads: Vec<u64>) -> Self {
        Self {
            arena: Arena::new(arena),
            kinds,
            keys,
            payloads,
        }
    }

    /// The whole arena.
    pub fn arena(&self) -> &[u8] {
        self.arena.bytes()
    }

    /// Nodes in the columns (all trees).
    pub fn node_count(&self) -> usize {
        self.kinds.len()
    }

    /// The bytes at `offset..offset + len`.
    pub fn bytes(&self, offset: u32, len: u32) -> Result<&[u8], FlatError> {
        let arena = self.arena.bytes();
        let start = offset as usize;
        start
            .checked_add(len as usize)
            .and_then(|end| arena.get(start..end))
            .ok_or(FlatError::SpanOutOfRange {
                offset,
                len,
                arena: arena.len(),
            })
    }

    /// The text at `offset..offset + len`.
    pub fn str(&self, offset: u32, len: u32) -> Result<&str, FlatError> {
        let start = offset as usize;
        match self.arena.str(start, start.saturating_add(len as usize)) {
            Some(text) => Ok(text),
            None => Err(match self.bytes(offset, len) {
                Err(out_of_range) => out_of_range,
                Ok(_) => FlatError::NotUtf8 { offset },
            }),
        }
    }

    fn packed_str(&self, packed: u64) -> Result<&str, FlatError> {
        let (offset, len) = unpack(packed);
        self.str(offset, len)
    }

    fn packed_bytes(&self, packed: u64) -> Result<&[u8], FlatError> {
        let (offset, len) = unpack(packed);
        self.bytes(offset, len)
    }

    /// The object tree that fills exactly nodes `start..start + len`, checked whole.
    pub fn object(self: &Arc<Self>, start: u32, len: u32) -> Result<FlatObject, FlatError> {
        let columns = self.kinds.len();
        if self.keys.len() != columns || self.payloads.len() != columns {
            return Err(FlatError::MalformedTree("node columns differ in length"));
        }
        let first = start as usize;
        let end = first
            .checked_add(len as usize)
            .filter(|&end| end <= columns)
            .ok_or(FlatError::RangeOutOfBounds {
                start,
                len,
                available: columns,
            })?;
        match self.kinds[first..end].first() {
            None => return Err(FlatError::MalformedTree("empty range")),
            Some(&kind::OBJECT) => {}
            Some(_) => return Err(FlatError::FieldsNotObject),
        }
        let mut pos = first;
        self.check_at(end, &mut pos, 0, false)?;
        if pos != end {
            return Err(FlatError::MalformedTree("range holds nodes after the tree"));
        }
        Ok(FlatObject {
            output: self.clone(),
            start,
            len,
        })
    }

    /// Checks the subtree at `pos` (and its key, when it is an object member); the tree
    /// must end before `end`.
    fn check_at(
        &self,
        end: usize,
        pos: &mut usize,
        depth: usize,
        keyed: bool,
    ) -> Result<(), FlatError> {
        if depth > MAX_DEPTH {
            return Err(FlatError::TooDeep);
        }
        if *pos >= end {
            return Err(FlatError::MalformedTree("tree ends before its last child"));
        }
        let (k, key, payload) = (self.kinds[*pos], self.keys[*pos], self.payloads[*pos]);
        *pos += 1;
        if keyed {
            self.packed_str(key)?;
        } else if key != 0 {
            return Err(FlatError::MalformedTree(
                "a node that is not an object member has a key",
            ));
        }
        match k {
            kind::BOOL if payload > 1 => {
                return Err(FlatError::MalformedTree(
                    "boolean payload other than 0 or 1",
                ));
            }
            kind::NULL | kind::BOOL | kind::INT | kind::UINT | kind::FLOAT => {}
            kind::STR => {
                self.packed_str(payload)?;
            }
            kind::BYTES => {
                self.packed_bytes(payload)?;
            }
            kind::ARRAY | kind::OBJECT => {
                if payload > (end - *pos) as u64 {
                    return Err(FlatError::MalformedTree(
                        "container claims more children than remain",
                    ));
                }
                for _ in 0..payload {
                    self.check_at(end, pos, depth + 1, k == kind::OBJECT)?;
                }
            }
            _ => return Err(FlatError::MalformedTree("unknown node kind")),
        }
        Ok(())
    }
}

/// One node of a checked tree.
#[derive(Debug, Clone, Copy)]
pub struct NodeView {
    pub kind: u8,
    pub key: u64,
    pub payload: u64,
}

/// A checked object tree inside a [`FlatOutput`] (see the module documentation).
#[derive(Clone)]
pub struct FlatObject {
    output: Arc<FlatOutput>,
    start: u32,
    len: u32,
}

impl FlatObject {
    /// The output the tree is in (shared with the other trees of its batch).
    pub fn output(&self) -> &Arc<FlatOutput> {
        &self.output
    }

    /// Where the tree is in its output's columns: `(start, len)`.
    pub fn range(&self) -> (u32, u32) {
        (self.start, self.len)
    }

    /// Number of nodes in the tree, root included.
    pub fn node_count(&self) -> usize {
        self.len as usize
    }

    /// Node `i` of the tree (0 is the root; `i < node_count()`).
    #[inline]
    pub fn node(&self, i: usize) -> NodeView {
        let at = self.start as usize + i;
        let o = &*self.output;
        NodeView {
            kind: o.kinds[at],
            key: o.keys[at],
            payload: o.payloads[at],
        }
    }

    /// The tree's node columns: `(kinds, keys, payloads)`, spans into the output's arena.
    pub fn columns(&self) -> (&[u8], &[u64], &[u64]) {
        let range = self.start as usize..(self.start + self.len) as usize;
        let o = &*self.output;
        (
            &o.kinds[range.clone()],
            &o.keys[range.clone()],
            &o.payloads[range],
        )
    }

    /// The bytes of a packed span of this tree: a string, bytes or key span of one of
    /// its nodes (checked when the tree was made).
    #[inline]
    pub fn bytes(&self, packed: u64) -> &[u8] {
        let (offset, len) = unpack(packed);
        &self.output.arena.bytes()[offset as usize..(offset + len) as usize]
    }

    /// The text of a string span of this tree: the payload of one of its string nodes
    /// or the key of one of its object members. Each was checked (in range, UTF-8) when
    /// the tree was made, so the empty text for a span that is neither is never
    /// returned for those.
    #[inline]
    pub fn str(&self, packed: u64) -> &str {
        let (offset, len) = unpack(packed);
        let text = self
            .output
            .arena
            .str(offset as usize, (offset + len) as usize);
        debug_assert!(text.is_some(), "a string span not checked at construction");
        text.unwrap_or_default()
    }

    /// Members of the root object.
    pub fn len(&self) -> usize {
        self.node(0).payload as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The index just past the subtree that starts at node `at`. The tree is checked:
    /// its counts are consistent, so this walks it without the bounds checks of
    /// `runnel_flat::subtree_len`, which is for unchecked input.
    #[inline]
    pub fn subtree_end(&self, mut at: usize) -> usize {
        let mut left = 1u64;
        while left > 0 {
            let node = self.node(at);
            at += 1;
            left = left - 1 + runnel_flat::children(node.kind, node.payload);
        }
        at
    }

    /// Copies the tree out into an owned map.
    pub fn to_map(&self) -> Map {
        let mut pos = 1;
        let mut map = Map::with_capacity(self.len());
        for _ in 0..self.len() {
            let key = self.str(self.node(pos).key).to_owned();
            let value = self.value_at(&mut pos);
            map.insert(key, value);
        }
        map
    }

    /// Writes the text of the root's member `key` when it is a scalar (a string as is;
    /// a number or boolean as JSON writes it); false when there is no such member, or it
    /// is null, bytes, an array or an object.
    pub fn scalar_text(&self, key: &str, out: &mut String) -> bool {
        let mut pos = 1;
        for _ in 0..self.len() {
            let node = self.node(pos);
            if self.str(node.key) == key {
                return match node.kind {
                    kind::BOOL => {
                        out.push_str(if node.payload != 0 { "true" } else { "false" });
                        true
                    }
                    kind::INT => scalar_text(&Value::Int(node.payload as i64), out),
                    kind::UINT => scalar_text(&Value::from_u64(node.payload), out),
                    kind::FLOAT => scalar_text(&Value::Float(f64::from_bits(node.payload)), out),
                    kind::STR => {
                        out.push_str(self.str(node.payload));
                        true
                    }
                    _ => false,
                };
            }
            pos = self.subtree_end(pos);
        }
        false
    }

    fn value_at(&self, pos: &mut usize) -> Value {
        let node = self.node(*pos);
        *pos += 1;
        match node.kind {
            kind::BOOL => Value::Bool(node.payload != 0),
            kind::INT => Value::Int(node.payload as i64),
            kind::UINT => Value::from_u64(node.payload),
            kind::FLOAT => Value::Float(f64::from_bits(node.payload)),
            kind::STR => Value::String(self.str(node.payload).to_owned()),
            kind::BYTES => Value::Bytes(self.bytes(node.payload).to_vec()),
            kind::ARRAY => Value::Array((0..node.payload).map(|_| self.value_at(pos)).collect()),
            kind::OBJECT => {
                let mut map = Map::with_capacity(node.payload as usize);
                for _ in 0..node.payload {
                    let key = self.str(self.node(*pos).key).to_owned();
                    let value = self.value_at(pos);
                    map.insert(key, value);
                }
                Value::Object(map)
            }
            _ => Value::Null,
        }
    }
}

/// Writes the text of a scalar value (see [`FlatObject::scalar_text`]); false for the others.
pub fn scalar_text(value: &Value, out: &mut String) -> bool {
    use std::fmt::Write;
    match value {
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Int(n) => {
            let _ = write!(out, "{n}");
        }
        Value::Uint(n) => {
            let _ = write!(out, "{n}");
        }
        Value::Float(f) => {
            let _ = write!(out, "{f}");
        }
        Value::String(s) => out.push_str(s),
        Value::Null | Value::Bytes(_) | Value::Array(_) | Value::Object(_) => return false,
    }
    true
}
