//! The column-wise node encoding: kind numbers, packed spans, [`NodeValue`] (one node's
//! kind and payload, typed) and [`NodesRef`] (a borrowed view of the three columns).

use crate::bindings::types::{Nodes, Span};

/// The kind numbers of the `nodes.kinds` column (see the WIT `nodes` record).
pub mod kind {
    pub const NULL: u8 = 0;
    pub const BOOL: u8 = 1;
    pub const INT: u8 = 2;
    pub const UINT: u8 = 3;
    pub const FLOAT: u8 = 4;
    pub const STR: u8 = 5;
    pub const BYTES: u8 = 6;
    pub const ARRAY: u8 = 7;
    pub const OBJECT: u8 = 8;
}

/// Packs a span into one number: `offset << 32 | len`.
#[inline]
pub const fn pack(span: Span) -> u64 {
    (span.offset as u64) << 32 | span.len as u64
}

/// The span of a packed span.
#[inline]
pub const fn unpack(packed: u64) -> Span {
    Span {
        offset: (packed >> 32) as u32,
        len: packed as u32,
    }
}

impl From<u64> for Span {
    /// Unpacks a packed span.
    #[inline]
    fn from(packed: u64) -> Self {
        unpack(packed)
    }
}

impl From<Span> for u64 {
    /// Packs a span.
    #[inline]
    fn from(span: Span) -> Self {
        pack(span)
    }
}

/// One node's value, typed: a scalar, or the child count of a container. This is what a
/// node's `kinds[i]` and `payloads[i]` mean together.
#[derive(Debug, Clone, Copy)]
pub enum NodeValue {
    Null,
    Boolean(bool),
    /// Any integer in the i64 range.
    Int(i64),
    /// Only integers above the i64 range.
    Uint(u64),
    Float(f64),
    /// UTF-8 text in the arena.
    Str(Span),
    /// Bytes in the arena.
    Bytes(Span),
    /// This many child values follow.
    Array(u32),
    /// This many members follow.
    Object(u32),
}

impl PartialEq for NodeValue {
    /// Spans compare by offset and length; floats as `f64`s (NaN is unequal).
    fn eq(&self, other: &Self) -> bool {
        use NodeValue::*;
        match (*self, *other) {
            (Null, Null) => true,
            (Boolean(a), Boolean(b)) => a == b,
            (Int(a), Int(b)) => a == b,
            (Uint(a), Uint(b)) => a == b,
            (Float(a), Float(b)) => a == b,
            (Str(a), Str(b)) | (Bytes(a), Bytes(b)) => pack(a) == pack(b),
            (Array(a), Array(b)) | (Object(a), Object(b)) => a == b,
            _ => false,
        }
    }
}

impl NodeValue {
    /// Reads a node's kind and payload; `None` for an unknown kind, a boolean other than
    /// 0 or 1, or a child count above `u32::MAX`. A `uint` in the i64 range reads as
    /// `Int`.
    #[inline]
    pub fn from_raw(kind: u8, payload: u64) -> Option<Self> {
        Some(match kind {
            kind::NULL => NodeValue::Null,
            kind::BOOL => match payload {
                0 => NodeValue::Boolean(false),
                1 => NodeValue::Boolean(true),
                _ => return None,
            },
            kind::INT => NodeValue::Int(payload as i64),
            kind::UINT => match i64::try_from(payload) {
                Ok(i) => NodeValue::Int(i),
                Err(_) => NodeValue::Uint(payload),
            },
            kind::FLOAT => NodeValue::Float(f64::from_bits(payload)),
            kind::STR => NodeValue::Str(unpack(payload)),
            kind::BYTES => NodeValue::Bytes(unpack(payload)),
            kind::ARRAY => NodeValue::Array(u32::try_from(payload).ok()?),
            kind::OBJECT => NodeValue::Object(u32::try_from(payload).ok()?),
            _ => return None,
        })
    }

    /// The node's kind and payload. A `Uint` in the i64 range is written as `int`.
    #[inline]
    pub fn to_raw(self) -> (u8, u64) {
        match self {
            NodeValue::Null => (kind::NULL, 0),
            NodeValue::Boolean(b) => (kind::BOOL, b as u64),
            NodeValue::Int(i) => (kind::INT, i as u64),
            NodeValue::Uint(u) => match i64::try_from(u) {
                Ok(i) => (kind::INT, i as u64),
                Err(_) => (kind::UINT, u),
            },
            NodeValue::Float(f) => (kind::FLOAT, f.to_bits()),
            NodeValue::Str(span) => (kind::STR, pack(span)),
            NodeValue::Bytes(span) => (kind::BYTES, pack(span)),
            NodeValue::Array(n) => (kind::ARRAY, u64::from(n)),
            NodeValue::Object(n) => (kind::OBJECT, u64::from(n)),
        }
    }
}

impl Nodes {
    /// No nodes.
    pub fn new() -> Self {
        Self::with_capacity(0)
    }

    /// No nodes, with room for `n` in each column.
    pub fn with_capacity(n: usize) -> Self {
        Self {
            kinds: Vec::with_capacity(n),
            keys: Vec::with_capacity(n),
            payloads: Vec::with_capacity(n),
        }
    }

    /// The number of nodes (of the shortest column, should they differ).
    pub fn len(&self) -> usize {
        self.kinds
            .len()
            .min(self.keys.len())
            .min(self.payloads.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends a node whose member name is `key` (a packed span, 0 for none).
    #[inline]
    pub fn push(&mut self, key: u64, value: NodeValue) {
        let (kind, payload) = value.to_raw();
        self.kinds.push(kind);
        self.keys.push(key);
        self.payloads.push(payload);
    }

    /// The value of node `i`; `None` when out of bounds or malformed.
    pub fn value(&self, i: usize) -> Option<NodeValue> {
        self.view().value(i)
    }

    /// Overwrites the value of node `i` (its key stays). Panics when out of bounds.
    pub fn set_value(&mut self, i: usize, value: NodeValue) {
        let (kind, payload) = value.to_raw();
        self.kinds[i] = kind;
        self.payloads[i] = payload;
    }

    /// Drops the nodes from `len` on.
    pub fn truncate(&mut self, len: usize) {
        self.kinds.truncate(len);
        self.keys.truncate(len);
        self.payloads.truncate(len);
    }

    /// A borrowed view of the columns.
    pub fn view(&self) -> NodesRef<'_> {
        NodesRef::from(self)
    }
}

impl Default for Nodes {
    fn default() -> Self {
        Self::new()
    }
}

/// A borrowed view of node columns of equal length (a whole node list or a slice of it).
#[derive(Debug, Clone, Copy)]
pub struct NodesRef<'a> {
    pub kinds: &'a [u8],
    pub keys: &'a [u64],
    pub payloads: &'a [u64],
}

impl<'a> From<&'a Nodes> for NodesRef<'a> {
    /// The columns, cut to the shortest should their lengths differ.
    fn from(nodes: &'a Nodes) -> Self {
        let n = nodes.len();
        Self {
            kinds: &nodes.kinds[..n],
            keys: &nodes.keys[..n],
            payloads: &nodes.payloads[..n],
        }
    }
}

impl<'a> NodesRef<'a> {
    /// A view of columns; `None` when their lengths differ.
    pub fn new(kinds: &'a [u8], keys: &'a [u64], payloads: &'a [u64]) -> Option<Self> {
        (kinds.len() == keys.len() && kinds.len() == payloads.len()).then_some(Self {
            kinds,
            keys,
            payloads,
        })
    }

    pub fn len(&self) -> usize {
        self.kinds.len()
    }

    pub fn is_empty(&self) -> bool {
        self.kinds.is_empty()
    }

    /// Nodes `start..end`, or `None` when out of bounds.
    pub fn slice(&self, start: usize, end: usize) -> Option<Self> {
        Some(Self {
            kinds: self.kinds.get(start..end)?,
            keys: self.keys.get(start..end)?,
            payloads: self.payloads.get(start..end)?,
        })
    }

    /// The value of node `i`; `None` when out of bounds or malformed.
    #[inline]
    pub fn value(&self, i: usize) -> Option<NodeValue> {
        NodeValue::from_raw(*self.kinds.get(i)?, *self.payloads.get(i)?)
    }

    /// The packed key span of node `i` (0 when out of bounds).
    #[inline]
    pub fn key(&self, i: usize) -> u64 {
        self.keys.get(i).copied().unwrap_or(0)
    }

    /// The child count of node `i` when it is a container (0 otherwise). Not limited to
    /// u32, so that a malformed count is seen as too large rather than cut.
    #[inline]
    pub(crate) fn children(&self, i: usize) -> u64 {
        match self.kinds.get(i) {
            Some(&kind::ARRAY | &kind::OBJECT) => self.payloads[i],
            _ => 0,
        }
    }

    /// The values of the nodes, in order (`None` for malformed ones).
    pub fn values(&self) -> impl ExactSizeIterator<Item = Option<NodeValue>> + 'a {
        let this = *self;
        (0..this.len()).map(move |i| this.value(i))
    }
}
