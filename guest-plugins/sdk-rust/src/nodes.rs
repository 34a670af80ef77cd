//! The column-wise node encoding: kind numbers, packed spans, [`NodeValue`] (one node's
//! kind and payload, typed) and [`NodesRef`] (a borrowed view of the three columns).

use crate::bindings::types::{Nodes, Span};

pub use runnel_flat::kind;

/// Packs a span into one number: `offset << 32 | len`.
#[inline]
pub const fn pack(span: Span) -> u64 {
    runnel_flat::pack(span.offset, span.len)
}

/// The span of a packed span.
#[inline]
pub const fn unpack(packed: u64) -> Span {
    let (offset, len) = runnel_flat::unpack(packed);
    Span { offset, len }
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

impl runnel_flat::Span for Span {
    #[inline]
    fn from_parts(offset: u32, len: u32) -> Self {
        Span { offset, len }
    }

    #[inline]
    fn parts(self) -> (u32, u32) {
        (self.offset, self.len)
    }
}

/// One node's value, typed: a scalar, or the child count of a container (see
/// [`runnel_flat::NodeValue`]), with spans as WIT [`Span`]s.
pub type NodeValue = runnel_flat::NodeValue<Span>;

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

    /// The values of the nodes, in order (`None` for malformed ones).
    pub fn values(&self) -> impl ExactSizeIterator<Item = Option<NodeValue>> + 'a {
        let this = *self;
        (0..this.len()).map(move |i| this.value(i))
    }
}
