//! The owned value tree and its decoder from the flat pre-order node encoding.

use crate::bindings::types::{self, Node, Range, Span};
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
    decode_value(
        &tree.arena,
        &tree.nodes,
        Range {
            start: 0,
            len: tree.nodes.len() as u32,
        },
    )
}

/// Decodes the tree that fills exactly `range` of `nodes`.
pub fn decode_value(arena: &[u8], nodes: &[Node], range: Range) -> Result<Value, DecodeError> {
    let start = range.start as usize;
    let end = start + range.len as usize;
    let slice = nodes
        .get(start..end)
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

fn decode_at(arena: &[u8], nodes: &[Node], pos: &mut usize) -> Result<Value, DecodeError> {
    let node = nodes
        .get(*pos)
        .ok_or_else(|| DecodeError("tree ends before its last child".into()))?;
    *pos += 1;
    Ok(match node.value {
        types::Value::Null => Value::Null,
        types::Value::Boolean(b) => Value::Bool(b),
        types::Value::Int(i) => Value::Int(i),
        types::Value::Uint(u) => match i64::try_from(u) {
            Ok(i) => Value::Int(i),
            Err(_) => Value::Uint(u),
        },
        types::Value::Float(f) => Value::Float(f),
        types::Value::Str(span) => Value::Str(text(arena, span)?),
        types::Value::Bytes(span) => Value::Bytes(bytes(arena, span)?.to_vec()),
        types::Value::Array(n) => {
            let mut items = Vec::with_capacity((n as usize).min(nodes.len()));
            for _ in 0..n {
                items.push(decode_at(arena, nodes, pos)?);
            }
            Value::Array(items)
        }
        types::Value::Object(n) => {
            let mut members = Vec::with_capacity((n as usize).min(nodes.len()));
            for _ in 0..n {
                let key = match nodes.get(*pos) {
                    Some(child) => text(arena, child.key)?,
                    None => return Err(DecodeError("object ends before its last member".into())),
                };
                members.push((key, decode_at(arena, nodes, pos)?));
            }
            Value::Object(members)
        }
    })
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
