//! Streams JSON into the flat node encoding: serde_json drives a [`DeserializeSeed`] that
//! appends each value as it is read, so no intermediate tree is built.

use runnel_plugin_sdk::types::{Nodes, Span};
use runnel_plugin_sdk::{NodeValue as Wire, kind, pack};
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use std::fmt;

const NO_KEY: Span = Span { offset: 0, len: 0 };

/// The arena and node columns of one parse call.
#[derive(Debug, Default)]
pub struct Tree {
    pub arena: Vec<u8>,
    pub nodes: Nodes,
}

/// Where the tree ended before a line was written, to undo a line that failed.
#[derive(Debug, Clone, Copy)]
pub struct Mark {
    arena: usize,
    nodes: usize,
}

impl Tree {
    pub fn with_capacity(bytes: usize, nodes: usize) -> Self {
        Self {
            arena: Vec::with_capacity(bytes),
            nodes: Nodes::with_capacity(nodes),
        }
    }

    pub fn span(&mut self, bytes: &[u8]) -> Span {
        let offset = self.arena.len() as u32;
        self.arena.extend_from_slice(bytes);
        Span {
            offset,
            len: bytes.len() as u32,
        }
    }

    pub fn bytes(&self, span: Span) -> &[u8] {
        runnel_plugin_sdk::span_bytes(&self.arena, span)
    }

    pub fn mark(&self) -> Mark {
        Mark {
            arena: self.arena.len(),
            nodes: self.nodes.kinds.len(),
        }
    }

    pub fn rollback(&mut self, mark: Mark) {
        self.arena.truncate(mark.arena);
        self.nodes.truncate(mark.nodes);
    }

    /// The number of nodes written.
    pub fn len(&self) -> usize {
        self.nodes.kinds.len()
    }

    /// The value of node `at`.
    pub fn value(&self, at: usize) -> Wire {
        Wire::from_raw(self.nodes.kinds[at], self.nodes.payloads[at]).unwrap_or(Wire::Null)
    }

    #[inline]
    fn push(&mut self, key: Span, kind: u8, payload: u64) -> usize {
        let at = self.nodes.kinds.len();
        self.nodes.kinds.push(kind);
        self.nodes.keys.push(pack(key));
        self.nodes.payloads.push(payload);
        at
    }

    fn set_count(&mut self, at: usize, count: u32) {
        self.nodes.payloads[at] = u64::from(count);
    }
}

/// Called after each member of the root object is written: `key` is its name and
/// `at` the index of its node.
pub trait RootMembers {
    fn member(&mut self, tree: &Tree, key: Span, at: usize);
}

/// Writes the root object of a line, reporting each member to `members`.
pub struct RootSeed<'t, M> {
    pub tree: &'t mut Tree,
    pub members: &'t mut M,
}

impl<'de, M: RootMembers> DeserializeSeed<'de> for RootSeed<'_, M> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, M: RootMembers> Visitor<'de> for RootSeed<'_, M> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        let members = self.members;
        write_members(self.tree, NO_KEY, map, |tree, key, at| {
            members.member(tree, key, at)
        })
    }
}

/// Writes any JSON value as the node named `key`.
struct ValueSeed<'t> {
    tree: &'t mut Tree,
    key: Span,
}

impl<'de> DeserializeSeed<'de> for ValueSeed<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        self.tree.push(self.key, kind::NULL, 0);
        Ok(())
    }

    fn visit_bool<E>(self, v: bool) -> Result<(), E> {
        self.tree.push(self.key, kind::BOOL, v as u64);
        Ok(())
    }

    fn visit_i64<E>(self, v: i64) -> Result<(), E> {
        self.tree.push(self.key, kind::INT, v as u64);
        Ok(())
    }

    fn visit_u64<E>(self, v: u64) -> Result<(), E> {
        let (kind, payload) = Wire::Uint(v).to_raw();
        self.tree.push(self.key, kind, payload);
        Ok(())
    }

    fn visit_f64<E>(self, v: f64) -> Result<(), E> {
        self.tree.push(self.key, kind::FLOAT, v.to_bits());
        Ok(())
    }

    fn visit_str<E>(self, v: &str) -> Result<(), E> {
        let span = self.tree.span(v.as_bytes());
        self.tree.push(self.key, kind::STR, pack(span));
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let tree = self.tree;
        let at = tree.push(self.key, kind::ARRAY, 0);
        let mut count = 0u32;
        while seq
            .next_element_seed(ValueSeed {
                tree: &mut *tree,
                key: NO_KEY,
            })?
            .is_some()
        {
            count += 1;
        }
        tree.set_count(at, count);
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        write_members(self.tree, self.key, map, |_, _, _| {})
    }
}

/// Writes an object node named `key` and its members, calling `written` after each.
fn write_members<'de, A: MapAccess<'de>>(
    tree: &mut Tree,
    key: Span,
    mut map: A,
    mut written: impl FnMut(&Tree, Span, usize),
) -> Result<(), A::Error> {
    let at = tree.push(key, kind::OBJECT, 0);
    let mut count = 0u32;
    while let Some(key) = map.next_key_seed(KeySeed { tree: &mut *tree })? {
        let member = tree.len();
        map.next_value_seed(ValueSeed {
            tree: &mut *tree,
            key,
        })?;
        written(tree, key, member);
        count += 1;
    }
    tree.set_count(at, count);
    Ok(())
}

/// Writes a member name into the arena.
struct KeySeed<'t> {
    tree: &'t mut Tree,
}

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = Span;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Span, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed<'_> {
    type Value = Span;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a member name")
    }

    fn visit_str<E>(self, v: &str) -> Result<Span, E> {
        Ok(self.tree.span(v.as_bytes()))
    }
}
