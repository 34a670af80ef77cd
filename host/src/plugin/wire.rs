//! The wire form: host [`Event`]s to and from the flat WIT encoding (one arena of bytes,
//! spans into it, value trees as pre-order node lists stored column-wise).
//!
//! Encoders are kept by each plugin instance and reused, so a call allocates nothing on
//! the host side once the buffers have grown to the batch size.

use super::bindings::types as wit;
use crate::event::flat::{FlatError, FlatObject, FlatOutput};
use crate::event::{Event, Fields, FieldsRepr, Level, Map, Tags, Value};
use std::cell::{Cell, RefCell};
use std::sync::Arc;

/// Most tags one patch may set.
pub const MAX_TAGS_PER_PATCH: u32 = 1024;

/// Work allowed per output beyond its own size: nodes copied when trees are merged into
/// fields that already exist (a plugin may point every patch at one shared tree, which is
/// fine, but not make the host copy a huge tree once per event).
const MERGE_ALLOWANCE: usize = 1 << 16;

pub use runnel_flat::{kind, pack, unpack};

/// Plugin output that does not follow the contract.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum WireError {
    /// Spans, ranges and trees (see `crate::event::flat`).
    #[error(transparent)]
    Flat(#[from] FlatError),
    #[error(
        "output reuses its trees for more work than it is large (over {limit} nodes checked or copied)"
    )]
    TooMuchWork { limit: usize },
    #[error("a patch sets {count} tags; at most {MAX_TAGS_PER_PATCH} are allowed")]
    TooManyTags { count: u32 },
    #[error("{what}: expected {expected} entries (one per input event), got {got}")]
    CountMismatch {
        what: &'static str,
        expected: usize,
        got: usize,
    },
    #[error("emits input event {index} of {len}")]
    NoSuchInput { index: u32, len: usize },
    /// The host called a plugin as the wrong role (a bug in the host, not the plugin).
    #[error("called as another role: {0}")]
    WrongRole(&'static str),
}

pub fn level_to_wit(level: Level) -> wit::Level {
    match level {
        Level::Trace => wit::Level::Trace,
        Level::Debug => wit::Level::Debug,
        Level::Info => wit::Level::Info,
        Level::Warn => wit::Level::Warn,
        Level::Error => wit::Level::Error,
        Level::Fatal => wit::Level::Fatal,
        Level::Unknown => wit::Level::Unknown,
    }
}

pub fn level_from_wit(level: wit::Level) -> Level {
    match level {
        wit::Level::Trace => Level::Trace,
        wit::Level::Debug => Level::Debug,
        wit::Level::Info => Level::Info,
        wit::Level::Warn => Level::Warn,
        wit::Level::Error => Level::Error,
        wit::Level::Fatal => Level::Fatal,
        wit::Level::Unknown => Level::Unknown,
    }
}

fn push_span(arena: &mut Vec<u8>, bytes: &[u8]) -> wit::Span {
    let offset = arena.len() as u32;
    arena.extend_from_slice(bytes);
    wit::Span {
        offset,
        len: bytes.len() as u32,
    }
}

fn push_packed(arena: &mut Vec<u8>, bytes: &[u8]) -> u64 {
    let span = push_span(arena, bytes);
    pack(span.offset, span.len)
}

fn empty_nodes() -> wit::Nodes {
    wit::Nodes {
        kinds: Vec::new(),
        keys: Vec::new(),
        payloads: Vec::new(),
    }
}

fn clear_nodes(nodes: &mut wit::Nodes) {
    nodes.kinds.clear();
    nodes.keys.clear();
    nodes.payloads.clear();
}

fn push_node(nodes: &mut wit::Nodes, kind: u8, key: u64, payload: u64) {
    nodes.kinds.push(kind);
    nodes.keys.push(key);
    nodes.payloads.push(payload);
}

fn push_value(arena: &mut Vec<u8>, nodes: &mut wit::Nodes, key: u64, value: &Value) {
    let (k, payload) = match value {
        Value::Null => (kind::NULL, 0),
        Value::Bool(b) => (kind::BOOL, u64::from(*b)),
        Value::Int(i) => (kind::INT, *i as u64),
        Value::Uint(u) => (kind::UINT, *u),
        Value::Float(f) => (kind::FLOAT, f.to_bits()),
        Value::String(s) => (kind::STR, push_packed(arena, s.as_bytes())),
        Value::Bytes(b) => (kind::BYTES, push_packed(arena, b)),
        Value::Array(items) => {
            push_node(nodes, kind::ARRAY, key, items.len() as u64);
            for item in items {
                push_value(arena, nodes, 0, item);
            }
            return;
        }
        Value::Object(map) => {
            push_object(arena, nodes, key, map);
            return;
        }
    };
    push_node(nodes, k, key, payload);
}

fn push_object(arena: &mut Vec<u8>, nodes: &mut wit::Nodes, key: u64, map: &Map) {
    push_node(nodes, kind::OBJECT, key, map.len() as u64);
    for (k, v) in map {
        let k = push_packed(arena, k.as_bytes());
        push_value(arena, nodes, k, v);
    }
}

/// An object of the members of `map` that `projection` names.
fn push_projected_object(
    arena: &mut Vec<u8>,
    nodes: &mut wit::Nodes,
    map: &Map,
    projection: &Projection,
) {
    let root = nodes.kinds.len();
    push_node(nodes, kind::OBJECT, 0, 0);
    let mut kept = 0;
    for (k, v) in map {
        if projection.contains(k) {
            let k = push_packed(arena, k.as_bytes());
            push_value(arena, nodes, k, v);
            kept += 1;
        }
    }
    nodes.payloads[root] = kept;
}

/// Encodes a lone value (a plugin's config) as a tree.
pub fn encode_tree(value: &Value) -> wit::Tree {
    let mut tree = wit::Tree {
        arena: Vec::new(),
        nodes: empty_nodes(),
    };
    push_value(&mut tree.arena, &mut tree.nodes, 0, value);
    tree
}

/// Encodes bodies for parsers.
#[derive(Default)]
pub struct LinesEncoder {
    lines: Option<wit::Lines>,
}

impl LinesEncoder {
    pub fn encode(&mut self, events: &[Event]) -> &wit::Lines {
        let lines = self.lines.get_or_insert_with(|| wit::Lines {
            arena: Vec::new(),
            bodies: Vec::new(),
        });
        lines.arena.clear();
        lines.bodies.clear();
        for event in events {
            let span = push_packed(&mut lines.arena, &event.body);
            lines.bodies.push(span);
        }
        lines
    }
}

/// The top-level fields a plugin reads (its `reads`): only those members of each event's
/// fields are encoded for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Projection {
    names: Vec<String>,
}

impl Projection {
    pub fn new(mut names: Vec<String>) -> Self {
        names.sort();
        names.dedup();
        Self { names }
    }

    pub fn contains(&self, key: &str) -> bool {
        self.contains_bytes(key.as_bytes())
    }

    /// [`Projection::contains`] for a name held as bytes (a checked wire-form key).
    pub fn contains_bytes(&self, key: &[u8]) -> bool {
        // A handful of names: a scan beats hashing.
        self.names.iter().any(|n| n.as_bytes() == key)
    }
}

/// Encodes whole events for interceptors, cleaners and routers.
#[derive(Default)]
pub struct BatchEncoder {
    batch: Option<wit::Batch>,
}

impl BatchEncoder {
    /// Encodes `events`; with a projection, only the projected members of their fields.
    pub fn encode(&mut self, events: &[Event], projection: Option<&Projection>) -> &wit::Batch {
        let b = self.batch.get_or_insert_with(|| wit::Batch {
            arena: Vec::new(),
            nodes: empty_nodes(),
            tags: Vec::new(),
            events: Vec::new(),
        });
        b.arena.clear();
        clear_nodes(&mut b.nodes);
        b.tags.clear();
        b.events.clear();
        // Events fresh from one parser call share its output: copy that arena once, at
        // offset 0, and their node columns in bulk, spans unchanged (not with a
        // projection: then only the projected members' bytes are copied).
        let shared = if projection.is_none() {
            common_output(events)
        } else {
            None
        };
        if let Some(output) = shared {
            b.arena.extend_from_slice(output.arena());
        }
        for event in events {
            let name = push_span(&mut b.arena, event.name.as_bytes());
            let body = push_span(&mut b.arena, &event.body);
            let fields_start = b.nodes.kinds.len();
            match (event.fields.repr(), projection) {
                (FieldsRepr::Empty, _) => push_node(&mut b.nodes, kind::OBJECT, 0, 0),
                (FieldsRepr::Owned(map), Some(p)) => {
                    push_projected_object(&mut b.arena, &mut b.nodes, map, p)
                }
                (FieldsRepr::Flat(object), Some(p)) => {
                    encode_projected_into(object, &mut b.arena, &mut b.nodes, p)
                }
                (FieldsRepr::Owned(map), None) => push_object(&mut b.arena, &mut b.nodes, 0, map),
                (FieldsRepr::Flat(object), None)
                    if shared.is_some_and(|s| Arc::ptr_eq(s, object.output())) =>
                {
                    copy_columns_into(object, &mut b.nodes)
                }
                (FieldsRepr::Flat(object), None) => {
                    encode_nodes_into(object, 0..object.node_count(), &mut b.arena, &mut b.nodes)
                }
            }
            let tags_start = b.tags.len();
            for (k, v) in event.tags.iter() {
                let key = push_span(&mut b.arena, k.as_bytes());
                let value = push_span(&mut b.arena, v.as_bytes());
                b.tags.push(wit::Tag { key, value });
            }
            b.events.push(wit::Event {
                name,
                timestamp: event.timestamp,
                level: level_to_wit(event.level),
                body,
                fields: wit::Range {
                    start: fields_start as u32,
                    len: (b.nodes.kinds.len() - fields_start) as u32,
                },
                tags: wit::Range {
                    start: tags_start as u32,
                    len: (b.tags.len() - tags_start) as u32,
                },
            });
        }
        b
    }
}

/// Decodes a batch in the flat form back into events (the `file` channel stores batches
/// this way). Everything is checked as a plugin's output is, so a damaged batch is an
/// error, never a panic; fields stay in the checked flat form.
pub fn decode_batch(batch: wit::Batch) -> Result<Vec<Event>, WireError> {
    let wit::Batch {
        arena,
        nodes,
        tags,
        events,
    } = batch;
    let reader = OutputReader::new(wit::OutputData { arena, nodes, tags });
    let mut out = Vec::with_capacity(events.len());
    let mut last_name: Option<Arc<str>> = None;
    // Events of one source share their tags (a file's path and pattern): the previous
    // event's tags are reused when they are the same, instead of new strings per event.
    let mut last_tags = Tags::default();
    for e in &events {
        let name = reader.str(e.name)?;
        let name = match &last_name {
            Some(n) if &**n == name => n.clone(),
            _ => {
                let n: Arc<str> = Arc::from(name);
                last_name = Some(n.clone());
                n
            }
        };
        let mut event = Event {
            name,
            timestamp: e.timestamp,
            level: level_from_wit(e.level),
            tags: Tags::default(),
            fields: Fields::default(),
            body: reader.bytes(e.body)?.to_vec(),
        };
        let tags = OutputReader::range(&reader.tags, e.tags)?;
        let same = tags.len() == last_tags.len()
            && tags.iter().zip(last_tags.iter()).all(|(t, (k, v))| {
                reader.str(t.key).is_ok_and(|tk| tk == k)
                    && reader.str(t.value).is_ok_and(|tv| tv == v)
            });
        if same {
            event.tags = last_tags.clone();
        } else {
            reader.set_tags(&mut event.tags, e.tags)?;
            last_tags = event.tags.clone();
        }
        let object = reader.object(e.fields)?;
        if !object.is_empty() {
            event.fields = Fields::from(object);
        }
        out.push(event);
    }
    Ok(out)
}

/// The plugin output that every wire-form event of `events` points into, if they all
/// point into the same one (and at least one does), and they use at least half of it:
/// copying its whole arena is then cheaper than copying their trees one by one. (After
/// a filter, or in a put that holds part of a parser's batch, the rest of the arena
/// would be dead weight in every copy.)
fn common_output(events: &[Event]) -> Option<&Arc<FlatOutput>> {
    let mut common: Option<&Arc<FlatOutput>> = None;
    let mut nodes = 0;
    for event in events {
        if let FieldsRepr::Flat(object) = event.fields.repr() {
            match common {
                None => common = Some(object.output()),
                Some(c) if Arc::ptr_eq(c, object.output()) => {}
                Some(_) => return None,
            }
            nodes += object.node_count();
        }
    }
    common.filter(|output| nodes * 2 >= output.node_count())
}

/// Appends the node columns of `object` as they are, for a batch whose arena starts
/// with the object's whole output arena.
fn copy_columns_into(object: &FlatObject, nodes: &mut wit::Nodes) {
    let (kinds, keys, payloads) = object.columns();
    nodes.kinds.extend_from_slice(kinds);
    nodes.keys.extend_from_slice(keys);
    nodes.payloads.extend_from_slice(payloads);
}

/// Appends an object of the root members of `object` that `projection` names, copying
/// their strings into `arena`; the other members are skipped without being read.
fn encode_projected_into(
    object: &FlatObject,
    arena: &mut Vec<u8>,
    nodes: &mut wit::Nodes,
    projection: &Projection,
) {
    let root = nodes.kinds.len();
    push_node(nodes, kind::OBJECT, 0, 0);
    let mut kept = 0;
    let mut at = 1;
    for _ in 0..object.len() {
        let end = object.subtree_end(at);
        if projection.contains_bytes(object.bytes(object.node(at).key)) {
            encode_nodes_into(object, at..end, arena, nodes);
            kept += 1;
        }
        at = end;
    }
    nodes.payloads[root] = kept;
}

/// Appends nodes `range` (whole subtrees) of `object` with their keys and strings
/// copied into `arena`.
fn encode_nodes_into(
    object: &FlatObject,
    range: std::ops::Range<usize>,
    arena: &mut Vec<u8>,
    nodes: &mut wit::Nodes,
) {
    for i in range {
        let node = object.node(i);
        let key = if i == 0 || node.key == 0 {
            0
        } else {
            push_packed(arena, object.bytes(node.key))
        };
        let payload = match node.kind {
            kind::STR | kind::BYTES => push_packed(arena, object.bytes(node.payload)),
            _ => node.payload,
        };
        push_node(nodes, node.kind, key, payload);
    }
}

/// Reads what a plugin returned, checking every span, range and tree.
pub struct OutputReader {
    output: Arc<FlatOutput>,
    tags: Vec<wit::Tag>,
    /// The tree checked last: patches may all point at one tree, checked once.
    last_checked: RefCell<Option<FlatObject>>,
    /// Nodes still allowed to be checked or copied (see [`MERGE_ALLOWANCE`]): a
    /// well-formed output checks each of its nodes once; pointing many events at large
    /// trees costs more, up to this bound.
    work_budget: Cell<usize>,
}

impl OutputReader {
    pub fn new(data: wit::OutputData) -> Self {
        let work_budget = 4 * data.nodes.kinds.len() + MERGE_ALLOWANCE;
        let wit::Nodes {
            kinds,
            keys,
            payloads,
        } = data.nodes;
        Self {
            last_checked: RefCell::new(None),
            work_budget: Cell::new(work_budget),
            output: Arc::new(FlatOutput::new(data.arena, kinds, keys, payloads)),
            tags: data.tags,
        }
    }

    pub fn bytes(&self, span: wit::Span) -> Result<&[u8], WireError> {
        Ok(self.output.bytes(span.offset, span.len)?)
    }

    pub fn str(&self, span: wit::Span) -> Result<&str, WireError> {
        Ok(self.output.str(span.offset, span.len)?)
    }

    fn range<T>(list: &[T], range: wit::Range) -> Result<&[T], WireError> {
        let start = range.start as usize;
        start
            .checked_add(range.len as usize)
            .and_then(|end| list.get(start..end))
            .ok_or(WireError::Flat(FlatError::RangeOutOfBounds {
                start: range.start,
                len: range.len,
                available: list.len(),
            }))
    }

    /// The object tree that fills exactly `range`, checked (a range asked for twice in a
    /// row is checked once).
    pub fn object(&self, range: wit::Range) -> Result<FlatObject, WireError> {
        if let Some(last) = self.last_checked.borrow().as_ref()
            && last.range() == (range.start, range.len)
        {
            return Ok(last.clone());
        }
        self.charge(range.len as usize)?;
        let object = self.output.object(range.start, range.len)?;
        *self.last_checked.borrow_mut() = Some(object.clone());
        Ok(object)
    }

    /// Merges `object` into `fields`, charging the copy a merge into existing fields
    /// makes against this output's budget.
    pub fn merge(&self, fields: &mut Fields, object: FlatObject) -> Result<(), WireError> {
        if !fields.is_empty() {
            self.charge(object.node_count())?;
        }
        fields.merge(object);
        Ok(())
    }

    fn charge(&self, nodes: usize) -> Result<(), WireError> {
        let left = self.work_budget.get();
        if nodes > left {
            return Err(WireError::TooMuchWork {
                limit: 4 * self.output.node_count() + MERGE_ALLOWANCE,
            });
        }
        self.work_budget.set(left - nodes);
        Ok(())
    }

    /// A whole new event the plugin wrote into its output (a processor's `new`).
    pub fn event(&self, e: &wit::Event) -> Result<Event, WireError> {
        let mut event = Event {
            name: Arc::from(self.str(e.name)?),
            timestamp: e.timestamp,
            level: level_from_wit(e.level),
            tags: Tags::default(),
            fields: Fields::default(),
            body: self.bytes(e.body)?.to_vec(),
        };
        self.set_tags(&mut event.tags, e.tags)?;
        let object = self.object(e.fields)?;
        if !object.is_empty() {
            event.fields = Fields::from(object);
        }
        Ok(event)
    }

    fn set_tags(&self, tags: &mut Tags, range: wit::Range) -> Result<(), WireError> {
        for tag in Self::range(&self.tags, range)? {
            tags.set(self.str(tag.key)?, self.str(tag.value)?);
        }
        Ok(())
    }

    /// Applies a patch to `event`. Nothing is changed when the patch is malformed.
    pub fn apply_patch(&self, event: &mut Event, patch: &wit::Patch) -> Result<(), WireError> {
        let fields = match patch.fields {
            Some(wit::FieldsUpdate::Merge(range)) => Some((false, self.object(range)?)),
            Some(wit::FieldsUpdate::Replace(range)) => Some((true, self.object(range)?)),
            None => None,
        };
        let name = patch.name.map(|span| self.str(span)).transpose()?;
        let body = patch.body.map(|span| self.bytes(span)).transpose()?;
        if patch.tags.len > MAX_TAGS_PER_PATCH {
            return Err(WireError::TooManyTags {
                count: patch.tags.len,
            });
        }
        let tags = if patch.tags.len == 0 {
            None
        } else {
            let mut tags = event.tags.clone();
            self.set_tags(&mut tags, patch.tags)?;
            Some(tags)
        };

        match fields {
            Some((true, object)) => event.fields = Fields::from(object),
            Some((false, object)) => self.merge(&mut event.fields, object)?,
            None => {}
        }
        if let Some(tags) = tags {
            event.tags = tags;
        }
        if let Some(level) = patch.level {
            event.level = level_from_wit(level);
        }
        if let Some(ts) = patch.timestamp {
            event.timestamp = Some(ts);
        }
        if let Some(name) = name {
            event.name = Arc::from(name);
        }
        if let Some(body) = body {
            event.body = body.to_vec();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_fields() -> Map {
        let mut inner = Map::new();
        inner.insert("empty_obj".into(), Value::Object(Map::new()));
        let mut fields = Map::new();
        fields.insert("null".into(), Value::Null);
        fields.insert("float".into(), Value::Float(1.0));
        fields.insert("int".into(), Value::Int(-7));
        fields.insert("big".into(), Value::Uint(u64::MAX));
        fields.insert("empty".into(), Value::Array(vec![]));
        fields.insert(
            "mixed".into(),
            Value::Array(vec![
                Value::Bool(true),
                Value::String("é".into()),
                Value::Bytes(vec![0, 255]),
            ]),
        );
        fields.insert("nested".into(), Value::Object(inner));
        fields
    }

    fn output(arena: Vec<u8>, nodes: &[(u8, u64, u64)], tags: Vec<wit::Tag>) -> wit::OutputData {
        wit::OutputData {
            arena,
            nodes: wit::Nodes {
                kinds: nodes.iter().map(|n| n.0).collect(),
                keys: nodes.iter().map(|n| n.1).collect(),
                payloads: nodes.iter().map(|n| n.2).collect(),
            },
            tags,
        }
    }

    fn as_output(batch: &wit::Batch) -> wit::OutputData {
        wit::OutputData {
            arena: batch.arena.clone(),
            nodes: wit::Nodes {
                kinds: batch.nodes.kinds.clone(),
                keys: batch.nodes.keys.clone(),
                payloads: batch.nodes.payloads.clone(),
            },
            tags: batch.tags.clone(),
        }
    }

    #[test]
    fn encoded_batch_decodes_to_the_same_fields() {
        let mut event = Event::from_body(Arc::from("app"), b"raw".to_vec());
        event.fields = Fields::from(sample_fields());
        let mut encoder = BatchEncoder::default();
        let batch = encoder.encode(std::slice::from_ref(&event), None);
        let range = batch.events[0].fields;
        let reader = OutputReader::new(as_output(batch));
        let decoded = reader.object(range).unwrap().to_map();
        assert_eq!(decoded, sample_fields());
        // Order is kept too.
        assert!(decoded.keys().eq(sample_fields().keys()));

        // Fields kept in the wire form encode to the same batch again.
        let mut again = event.clone();
        again.fields = Fields::from(reader.object(range).unwrap());
        let mut encoder2 = BatchEncoder::default();
        let batch2 = encoder2.encode(std::slice::from_ref(&again), None);
        let range2 = batch2.events[0].fields;
        let reader2 = OutputReader::new(as_output(batch2));
        assert_eq!(reader2.object(range2).unwrap().to_map(), sample_fields());
    }

    #[test]
    fn a_projection_encodes_only_the_members_it_names_whatever_their_form() {
        let wanted = Projection::new(vec!["nested".into(), "int".into(), "absent".into()]);
        let mut expected = Map::new();
        for (k, v) in sample_fields() {
            if k == "int" || k == "nested" {
                expected.insert(k, v);
            }
        }
        let mut owned = Event::from_body(Arc::from("app"), b"raw".to_vec());
        owned.fields = Fields::from(sample_fields());
        // The same fields in the wire form (as a parser's output leaves them), twice:
        // two events sharing one output.
        let batch = BatchEncoder::default()
            .encode(std::slice::from_ref(&owned), None)
            .clone();
        let reader = OutputReader::new(as_output(&batch));
        let mut wire = owned.clone();
        wire.fields = Fields::from(reader.object(batch.events[0].fields).unwrap());
        let events = [owned, wire.clone(), wire];
        let mut encoder = BatchEncoder::default();
        let projected = encoder.encode(&events, Some(&wanted));
        let reader = OutputReader::new(as_output(projected));
        for e in &projected.events {
            let got = reader.object(e.fields).unwrap().to_map();
            assert_eq!(got, expected);
            assert!(got.keys().eq(expected.keys()), "order kept");
        }
        // Only the projected bytes travel: no other member's strings are in the arena.
        assert!(!projected.arena.windows(4).any(|w| w == b"mixe"));
        // Nothing named: empty objects.
        let none = Projection::new(vec![]);
        let empty = encoder.encode(&events, Some(&none));
        assert!(empty.events.iter().all(|e| e.fields.len == 1));
    }

    #[test]
    fn hostile_output_is_rejected_not_trusted() {
        let r = OutputReader::new(output(
            b"abc\xff".to_vec(),
            &[(kind::OBJECT, 0, u64::from(u32::MAX))],
            vec![],
        ));
        assert!(matches!(
            r.object(wit::Range { start: 0, len: 1 }),
            Err(WireError::Flat(FlatError::MalformedTree(_)))
        ));
        assert!(matches!(
            r.object(wit::Range { start: 0, len: 9 }),
            Err(WireError::Flat(FlatError::RangeOutOfBounds { .. }))
        ));
        assert!(matches!(
            r.str(wit::Span { offset: 2, len: 2 }),
            Err(WireError::Flat(FlatError::NotUtf8 { .. }))
        ));
        assert!(matches!(
            r.bytes(wit::Span {
                offset: u32::MAX,
                len: u32::MAX
            }),
            Err(WireError::Flat(FlatError::SpanOutOfRange { .. }))
        ));
        // A string whose span leaves the arena, an unknown kind, a member key that is not UTF-8.
        let bad_span = OutputReader::new(output(
            b"x".to_vec(),
            &[(kind::OBJECT, 0, 1), (kind::STR, pack(0, 1), pack(0, 5))],
            vec![],
        ));
        assert!(matches!(
            bad_span.object(wit::Range { start: 0, len: 2 }),
            Err(WireError::Flat(FlatError::SpanOutOfRange { .. }))
        ));
        let bad_kind = OutputReader::new(output(
            b"x".to_vec(),
            &[(kind::OBJECT, 0, 1), (42, pack(0, 1), 0)],
            vec![],
        ));
        assert!(matches!(
            bad_kind.object(wit::Range { start: 0, len: 2 }),
            Err(WireError::Flat(FlatError::MalformedTree(_)))
        ));
        let bad_key = OutputReader::new(output(
            b"\xff".to_vec(),
            &[(kind::OBJECT, 0, 1), (kind::NULL, pack(0, 1), 0)],
            vec![],
        ));
        assert!(matches!(
            bad_key.object(wit::Range { start: 0, len: 2 }),
            Err(WireError::Flat(FlatError::NotUtf8 { .. }))
        ));
    }

    #[test]
    fn one_tree_may_serve_every_patch_but_not_copy_without_bound() {
        // One object of 2,000 members, pointed at by every patch.
        let mut members = Map::new();
        for i in 0..2000 {
            members.insert(format!("k{i}"), Value::Int(i));
        }
        let mut arena = Vec::new();
        let mut nodes = empty_nodes();
        push_object(&mut arena, &mut nodes, 0, &members);
        let len = nodes.kinds.len() as u32;
        let reader = OutputReader::new(wit::OutputData {
            arena,
            nodes,
            tags: vec![],
        });
        let range = wit::Range { start: 0, len };
        // Into empty fields: shared, no copy, any number of times.
        for _ in 0..10_000 {
            let mut fields = Fields::default();
            reader
                .merge(&mut fields, reader.object(range).unwrap())
                .unwrap();
        }
        // Into existing fields: a copy each time, within a budget.
        let mut results = (0..1000).map(|_| {
            let mut fields = Fields::from(Map::from_iter([("x".to_owned(), Value::Null)]));
            reader.merge(&mut fields, reader.object(range).unwrap())
        });
        assert!(results.by_ref().take(10).all(|r| r.is_ok()));
        assert!(matches!(
            results.last(),
            Some(Err(WireError::TooMuchWork { .. }))
        ));
    }

    #[test]
    fn a_key_on_a_node_that_is_not_a_member_is_refused() {
        let reader = OutputReader::new(output(
            b"k".to_vec(),
            &[
                (kind::OBJECT, 0, 1),
                (kind::ARRAY, pack(0, 1), 1),
                (kind::NULL, pack(0, 1), 0),
            ],
            vec![],
        ));
        assert!(matches!(
            reader.object(wit::Range { start: 0, len: 3 }),
            Err(WireError::Flat(FlatError::MalformedTree(_)))
        ));
    }

    #[test]
    fn deep_trees_are_refused() {
        let mut nodes = vec![(kind::OBJECT, 0, 1)];
        nodes.extend((0..crate::event::flat::MAX_DEPTH + 2).map(|_| (kind::ARRAY, 0, 1)));
        nodes.push((kind::NULL, 0, 0));
        let len = nodes.len() as u32;
        let reader = OutputReader::new(output(Vec::new(), &nodes, vec![]));
        assert!(matches!(
            reader.object(wit::Range { start: 0, len }),
            Err(WireError::Flat(FlatError::TooDeep))
        ));
    }

    #[test]
    fn patches_merge_replace_and_set() {
        let data = {
            let mut arena = Vec::new();
            let mut nodes = empty_nodes();
            let mut m = Map::new();
            m.insert("added".into(), Value::Int(1));
            push_object(&mut arena, &mut nodes, 0, &m);
            let k = push_span(&mut arena, b"host");
            let v = push_span(&mut arena, b"gw-1");
            wit::OutputData {
                arena,
                nodes,
                tags: vec![wit::Tag { key: k, value: v }],
            }
        };
        let reader = OutputReader::new(data);
        let mut event = Event::default();
        event.fields.insert("kept", Value::Null);
        let patch = wit::Patch {
            fields: Some(wit::FieldsUpdate::Merge(wit::Range { start: 0, len: 2 })),
            tags: wit::Range { start: 0, len: 1 },
            level: Some(wit::Level::Warn),
            timestamp: Some(42),
            name: None,
            body: None,
        };
        reader.apply_patch(&mut event, &patch).unwrap();
        assert_eq!(event.fields.len(), 2);
        assert_eq!(event.tags.get("host"), Some("gw-1"));
        assert_eq!((event.level, event.timestamp), (Level::Warn, Some(42)));

        let replace = wit::Patch {
            fields: Some(wit::FieldsUpdate::Replace(wit::Range { start: 0, len: 2 })),
            ..patch
        };
        reader.apply_patch(&mut event, &replace).unwrap();
        assert_eq!(
            event.fields.to_map().keys().collect::<Vec<_>>(),
            vec!["added"]
        );
    }
}
