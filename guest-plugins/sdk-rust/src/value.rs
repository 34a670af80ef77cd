//! The owned value tree and its decoder from the flat pre-order node encoding.

use crate::bindings::types::{self, Nodes, Range, Span};
use crate::nodes::{NodeValue, NodesRef, unpack};
use std::fmt;

/// A value as a plugin sees it. Types survive the boundary: `Float(1.0)` stays a float,
/// `Null` stays null, an empty `Array` stays an array.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    /// Integers above `i64::MAX` only.
    Uint(u64),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    Array(Vec<Value>),
    /// Members in order.
    Object(Vec<(String, Value)>),
}

impl Value {
    /// A string value.
    pub fn str(text: impl Into<String>) -> Value {
        Value::Str(text.into())
    }

    /// An object value from `(name, value)` members, in order.
    pub fn object<K: Into<String>>(members: impl IntoIterator<Item = (K, Value)>) -> Value {
        Value::Object(members.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }

    /// The member `key` of an object.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Object(members) => members.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The name of the value's type, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "bool",
            Value::Int(_) | Value::Uint(_) => "integer",
            Value::Float(_) => "float",
            Value::Str(_) => "string",
            Value::Bytes(_) => "bytes",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
        }
    }
}

/// Why a node list is not a well-formed tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError(pub String);

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DecodeError {}

/// Decodes a whole [`types::Tree`] (its root is `nodes[0]`).
pub fn decode_tree(tree: &types::Tree) -> Result<Value, DecodeError> {
    let nodes = columns(&tree.nodes)?;
    decode_value(
        &tree.arena,
        nodes,
        Range {
            start: 0,
            len: nodes.len() as u32,
        },
    )
}

/// The columns of `nodes`, which must have the same length.
fn columns(nodes: &Nodes) -> Result<NodesRef<'_>, DecodeError> {
    NodesRef::new(&nodes.kinds, &nodes.keys, &nodes.payloads).ok_or_else(|| {
        DecodeError(format!(
            "node columns differ in length: {} kinds, {} keys, {} payloads",
            nodes.kinds.len(),
            nodes.keys.len(),
            nodes.payloads.len()
        ))
    })
}

/// Decodes the tree that fills exactly `range` of `nodes` (a [`Nodes`] or a
/// [`NodesRef`]).
pub fn decode_value<'n>(
    arena: &[u8],
    nodes: impl Into<NodesRef<'n>>,
    range: Range,
) -> Result<Value, DecodeError> {
    let nodes = nodes.into();
    let start = range.start as usize;
    let end = start + range.len as usize;
    let slice = nodes
        .slice(start, end)
        .ok_or_else(|| DecodeError(format!("node range {start}..{end} is out of bounds")))?;
    let mut pos = 0;
    let value = decode_at(arena, slice, &mut pos)?;
    if pos != slice.len() {
        return Err(DecodeError(format!(
            "node range holds {} nodes but the tree uses {pos}",
            slice.len()
        )));
    }
    Ok(value)
}

fn decode_at(arena: &[u8], nodes: NodesRef<'_>, pos: &mut usize) -> Result<Value, DecodeError> {
    let at = *pos;
    let (&kind, &payload) = nodes
        .kinds
        .get(at)
        .zip(nodes.payloads.get(at))
        .ok_or_else(|| DecodeError("tree ends before its last child".into()))?;
    *pos += 1;
    let value = NodeValue::from_raw(kind, payload).ok_or_else(|| {
        DecodeError(format!(
            "node {at} is malformed (kind {kind}, payload {payload})"
        ))
    })?;
    Ok(match value {
        NodeValue::Null => Value::Null,
        NodeValue::Boolean(b) => Value::Bool(b),
        NodeValue::Int(i) => Value::Int(i),
        NodeValue::Uint(u) => Value::Uint(u),
        NodeValue::Float(f) => Value::Float(f),
        NodeValue::Str(span) => Value::Str(text(arena, span)?),
        NodeValue::Bytes(span) => Value::Bytes(bytes(arena, span)?.to_vec()),
        NodeValue::Array(n) => {
            check_count(n, nodes.len() - *pos)?;
            let mut items = Vec::with_capacity(n as usize);
            for _ in 0..n {
                items.push(decode_at(arena, nodes, pos)?);
            }
            Value::Array(items)
        }
        NodeValue::Object(n) => {
            check_count(n, nodes.len() - *pos)?;
            let mut members = Vec::with_capacity(n as usize);
            for _ in 0..n {
                let key = match nodes.keys.get(*pos) {
                    Some(&key) => text(arena, unpack(key))?,
                    None => return Err(DecodeError("object ends before its last member".into())),
                };
                members.push((key, decode_at(arena, nodes, pos)?));
            }
            Value::Object(members)
        }
    })
}

/// Each child is at least one node: more children than nodes left is malformed.
fn check_count(count: u32, remaining: usize) -> Result<(), DecodeError> {
    if count as usize > remaining {
        return Err(DecodeError(format!(
            "container claims {count} children but only {remaining} nodes follow"
        )));
    }
    Ok(())
}

fn bytes(arena: &[u8], span: Span) -> Result<&[u8], DecodeError> {
    let start = span.offset as usize;
    let end = start + span.len as usize;
    arena
        .get(start..end)
        .ok_or_else(|| DecodeError(format!("span {start}..{end} is outside the arena")))
}

fn text(arena: &[u8], span: Span) -> Result<String, DecodeError> {
    let raw = bytes(arena, span)?;
    std::str::from_utf8(raw)
        .map(str::to_owned)
        .map_err(|e| DecodeError(format!("string at {} is not UTF-8: {e}", span.offset)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nodes::{kind, pack};

    fn tree(arena: &[u8], nodes: &[(u8, u64, u64)]) -> types::Tree {
        types::Tree {
            arena: arena.to_vec(),
            nodes: Nodes {
                kinds: nodes.iter().map(|n| n.0).collect(),
                keys: nodes.iter().map(|n| n.1).collect(),
                payloads: nodes.iter().map(|n| n.2).collect(),
            },
        }
    }

    fn span(offset: u32, len: u32) -> u64 {
        pack(Span { offset, len })
    }

    #[test]
    fn pack_and_unpack_round_trip() {
        let s = Span {
            offset: 0xdead_beef,
            len: 7,
        };
        assert_eq!(pack(s), 0xdead_beef_0000_0007);
        let back = unpack(pack(s));
        assert_eq!((back.offset, back.len), (s.offset, s.len));
        assert_eq!(crate::packed_bytes(b"hello", span(1, 3)), b"ell");
        assert_eq!(crate::span_str(b"hello", span(3, 9)), "");
    }

    #[test]
    fn columns_decode_every_kind() {
        let t = tree(
            b"kstrbyt",
            &[
                (kind::OBJECT, 0, 8),
                (kind::NULL, span(0, 1), 0),
                (kind::BOOL, span(0, 1), 1),
                (kind::INT, span(0, 1), (-5i64) as u64),
                (kind::UINT, span(0, 1), u64::MAX),
                (kind::UINT, span(0, 1), 3),
                (kind::FLOAT, span(0, 1), 1.0f64.to_bits()),
                (kind::STR, span(0, 1), span(1, 3)),
                (kind::ARRAY, span(0, 1), 1),
                (kind::BYTES, 0, span(4, 3)),
            ],
        );
        let k = || "k".to_string();
        assert_eq!(
            decode_tree(&t).unwrap(),
            Value::Object(vec![
                (k(), Value::Null),
                (k(), Value::Bool(true)),
                (k(), Value::Int(-5)),
                (k(), Value::Uint(u64::MAX)),
                (k(), Value::Int(3)),
                (k(), Value::Float(1.0)),
                (k(), Value::Str("str".into())),
                (k(), Value::Array(vec![Value::Bytes(b"byt".to_vec())])),
            ])
        );
    }

    #[test]
    fn malformed_columns_are_rejected() {
        let bad = [
            // Unknown kind.
            tree(b"", &[(9, 0, 0)]),
            // A boolean that is neither 0 nor 1.
            tree(b"", &[(kind::BOOL, 0, 2)]),
            // A span outside the arena.
            tree(b"ab", &[(kind::STR, 0, span(1, 2))]),
            // Invalid UTF-8 text and key.
            tree(b"\xff", &[(kind::STR, 0, span(0, 1))]),
            tree(
                b"\xff",
                &[(kind::OBJECT, 0, 1), (kind::NULL, span(0, 1), 0)],
            ),
            // More children than nodes.
            tree(b"", &[(kind::ARRAY, 0, 2), (kind::NULL, 0, 0)]),
            tree(b"", &[(kind::ARRAY, 0, u64::MAX)]),
            // Columns of different lengths.
            types::Tree {
                arena: Vec::new(),
                nodes: Nodes {
                    kinds: vec![kind::NULL],
                    keys: vec![],
                    payloads: vec![0],
                },
            },
        ];
        for (i, t) in bad.iter().enumerate() {
            assert!(decode_tree(t).is_err(), "case {i}");
        }
    }
}
