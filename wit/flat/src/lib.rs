//! The flat encoding of `runnel:plugin` (see `wit/runnel.wit`): value trees as pre-order
//! node lists stored column-wise (`kinds`, `keys`, `payloads`), strings and bytes as
//! spans into one arena, spans packed into one `u64`.
//!
//! One implementation, used by the host (`host/src/plugin/wire.rs`: encoding batches,
//! checking plugin output) and by the Rust SDK (`guest-plugins/sdk-rust`: reading
//! batches, writing output), so the two cannot disagree. `no_std`: it costs a plugin
//! nothing it does not use.

#![no_std]

/// The kind numbers of the `nodes.kinds` column.
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

    /// Whether nodes of this kind are followed by children (their payload counts them).
    #[inline]
    pub const fn is_container(kind: u8) -> bool {
        matches!(kind, ARRAY | OBJECT)
    }
}

/// A span packed into one number, as the WIT `packed-span`: `offset << 32 | len`.
#[inline]
pub const fn pack(offset: u32, len: u32) -> u64 {
    (offset as u64) << 32 | len as u64
}

/// `(offset, len)` of a packed span.
#[inline]
pub const fn unpack(packed: u64) -> (u32, u32) {
    ((packed >> 32) as u32, packed as u32)
}

/// A span type: the SDK's is its generated WIT `span` record, the default a pair.
pub trait Span: Copy {
    fn from_parts(offset: u32, len: u32) -> Self;
    fn parts(self) -> (u32, u32);
}

impl Span for (u32, u32) {
    #[inline]
    fn from_parts(offset: u32, len: u32) -> Self {
        (offset, len)
    }

    #[inline]
    fn parts(self) -> (u32, u32) {
        self
    }
}

/// One node's value, typed: a scalar, or the child count of a container. This is what a
/// node's `kinds[i]` and `payloads[i]` mean together.
#[derive(Debug, Clone, Copy)]
pub enum NodeValue<S: Span = (u32, u32)> {
    Null,
    Boolean(bool),
    /// Any integer in the i64 range.
    Int(i64),
    /// Only integers above the i64 range.
    Uint(u64),
    Float(f64),
    /// UTF-8 text in the arena.
    Str(S),
    /// Bytes in the arena.
    Bytes(S),
    /// This many child values follow.
    Array(u32),
    /// This many members follow.
    Object(u32),
}

impl<S: Span> PartialEq for NodeValue<S> {
    /// Spans compare by offset and length; floats as `f64`s (NaN is unequal).
    fn eq(&self, other: &Self) -> bool {
        use NodeValue::*;
        match (*self, *other) {
            (Null, Null) => true,
            (Boolean(a), Boolean(b)) => a == b,
            (Int(a), Int(b)) => a == b,
            (Uint(a), Uint(b)) => a == b,
            (Float(a), Float(b)) => a == b,
            (Str(a), Str(b)) | (Bytes(a), Bytes(b)) => a.parts() == b.parts(),
            (Array(a), Array(b)) | (Object(a), Object(b)) => a == b,
            _ => false,
        }
    }
}

impl<S: Span> NodeValue<S> {
    /// Reads a node's kind and payload; `None` for an unknown kind, a boolean other than
    /// 0 or 1, or a child count above `u32::MAX`. A `uint` in the i64 range reads as
    /// `Int`.
    #[inline]
    pub fn from_raw(kind: u8, payload: u64) -> Option<Self> {
        let span = || {
            let (offset, len) = unpack(payload);
            S::from_parts(offset, len)
        };
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
            kind::STR => NodeValue::Str(span()),
            kind::BYTES => NodeValue::Bytes(span()),
            kind::ARRAY => NodeValue::Array(u32::try_from(payload).ok()?),
            kind::OBJECT => NodeValue::Object(u32::try_from(payload).ok()?),
            _ => return None,
        })
    }

    /// The node's kind and payload. A `Uint` in the i64 range is written as `int`.
    #[inline]
    pub fn to_raw(self) -> (u8, u64) {
        let packed = |s: S| {
            let (offset, len) = s.parts();
            pack(offset, len)
        };
        match self {
            NodeValue::Null => (kind::NULL, 0),
            NodeValue::Boolean(b) => (kind::BOOL, b as u64),
            NodeValue::Int(i) => (kind::INT, i as u64),
            NodeValue::Uint(u) => match i64::try_from(u) {
                Ok(i) => (kind::INT, i as u64),
                Err(_) => (kind::UINT, u),
            },
            NodeValue::Float(f) => (kind::FLOAT, f.to_bits()),
            NodeValue::Str(span) => (kind::STR, packed(span)),
            NodeValue::Bytes(span) => (kind::BYTES, packed(span)),
            NodeValue::Array(n) => (kind::ARRAY, u64::from(n)),
            NodeValue::Object(n) => (kind::OBJECT, u64::from(n)),
        }
    }
}

/// The number of children the node of `kind` and `payload` has (0 for a scalar).
#[inline]
pub const fn children(kind: u8, payload: u64) -> u64 {
    if kind::is_container(kind) { payload } else { 0 }
}

/// The number of nodes in the subtree that starts at node `at` (itself included), or
/// `None` when the subtree would run past the end of the columns (a malformed tree, or
/// `at` out of range). Reads only `kinds` and `payloads`; linear in the subtree's size.
#[inline]
pub fn subtree_len(kinds: &[u8], payloads: &[u64], at: usize) -> Option<usize> {
    let n = kinds.len().min(payloads.len());
    let mut pending: u64 = 1;
    let mut i = at;
    while pending > 0 {
        if i >= n {
            return None;
        }
        let children = children(kinds[i], payloads[i]);
        i += 1;
        pending = (pending - 1).saturating_add(children);
        if pending > (n - i) as u64 {
            return None;
        }
    }
    Some(i - at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_pack_into_one_number_and_back() {
        assert_eq!(pack(7, 3), 7 << 32 | 3);
        assert_eq!(unpack(pack(u32::MAX, 0)), (u32::MAX, 0));
    }

    #[test]
    fn every_node_value_round_trips_through_its_raw_form() {
        let values: [NodeValue; 9] = [
            NodeValue::Null,
            NodeValue::Boolean(true),
            NodeValue::Int(-5),
            NodeValue::Uint(u64::MAX),
            NodeValue::Float(1.5),
            NodeValue::Str((3, 4)),
            NodeValue::Bytes((0, 9)),
            NodeValue::Array(2),
            NodeValue::Object(1),
        ];
        for v in values {
            let (k, p) = v.to_raw();
            assert_eq!(NodeValue::<(u32, u32)>::from_raw(k, p), Some(v));
        }
        // A uint that fits an i64 is an int.
        assert_eq!(
            NodeValue::<(u32, u32)>::from_raw(kind::UINT, 5),
            Some(NodeValue::Int(5))
        );
        assert_eq!(NodeValue::<(u32, u32)>::from_raw(kind::BOOL, 2), None);
        assert_eq!(NodeValue::<(u32, u32)>::from_raw(9, 0), None);
    }

    #[test]
    fn subtrees_are_measured_and_truncated_trees_refused() {
        // {a: [1, 2], b: null}
        let kinds = [kind::OBJECT, kind::ARRAY, kind::INT, kind::INT, kind::NULL];
        let payloads = [2, 2, 1, 2, 0];
        assert_eq!(subtree_len(&kinds, &payloads, 0), Some(5));
        assert_eq!(subtree_len(&kinds, &payloads, 1), Some(3));
        assert_eq!(subtree_len(&kinds, &payloads, 4), Some(1));
        assert_eq!(subtree_len(&kinds, &payloads, 5), None);
        // An object claiming more members than there are nodes.
        assert_eq!(
            subtree_len(&[kind::OBJECT, kind::NULL], &[u64::MAX, 0], 0),
            None
        );
    }
}
