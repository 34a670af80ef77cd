//! The event: Runnel's unit of data, after the four-element log model of Flume-era
//! logging — a *name*, *fields*, *tags* and a *level* — plus a timestamp and the raw body.

pub mod flat;

use flat::FlatObject;
use indexmap::IndexMap;
use std::fmt;
use std::sync::Arc;

/// Field members in insertion order.
pub type Map = IndexMap<String, Value>;

/// A typed field value. Types survive plugins and sinks: `Float(1.0)` stays a float,
/// `Null` stays null, an empty array stays an array.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    /// Integers above `i64::MAX` only; smaller ones are `Int` (see [`Value::from_u64`]).
    Uint(u64),
    Float(f64),
    String(String),
    Bytes(Vec<u8>),
    Array(Vec<Value>),
    Object(Map),
}

impl Value {
    /// The canonical form of an unsigned integer: `Int` when it fits.
    pub fn from_u64(u: u64) -> Self {
        match i64::try_from(u) {
            Ok(i) => Value::Int(i),
            Err(_) => Value::Uint(u),
        }
    }
}

/// Severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Level {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
    Fatal,
    #[default]
    Unknown,
}

impl Level {
    /// The level of a syslog severity (also the journal's `PRIORITY`): emerg, alert,
    /// crit → fatal; err → error; warning → warn; notice, info → info; debug → debug.
    pub fn from_syslog_severity(severity: u8) -> Level {
        match severity {
            0..=2 => Level::Fatal,
            3 => Level::Error,
            4 => Level::Warn,
            5 | 6 => Level::Info,
            _ => Level::Debug,
        }
    }

    /// The level stored as `level as u8` (the declaration order), if `n` is one.
    pub fn from_u8(n: u8) -> Option<Level> {
        [
            Level::Trace,
            Level::Debug,
            Level::Info,
            Level::Warn,
            Level::Error,
            Level::Fatal,
            Level::Unknown,
        ]
        .get(n as usize)
        .copied()
    }

    /// The level named `name` (as [`Level::as_str`] writes it; any case).
    pub fn from_name(name: &str) -> Option<Level> {
        (0..=6)
            .filter_map(Level::from_u8)
            .find(|l| l.as_str().eq_ignore_ascii_case(name))
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Level::Trace => "trace",
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
            Level::Fatal => "fatal",
            Level::Unknown => "unknown",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An event's fields: an object of named, typed values. Fields a plugin produced stay in
/// the flat form it returned them in (a [`FlatObject`], shared by the batch) until
/// something changes them, so a parsed event is not copied member by member into the
/// host and back out to the next plugin or the sink.
#[derive(Clone)]
pub struct Fields(FieldsRepr);

/// How [`Fields`] are held (for encoders that read either form).
#[derive(Clone)]
pub enum FieldsRepr {
    /// No fields (an event fresh from a source): nothing allocated.
    Empty,
    /// Boxed: events move through vectors and queues, and a small event moves cheaply.
    Owned(Box<Map>),
    /// A checked tree in a plugin's output or a stored batch (see [`flat`]).
    Flat(FlatObject),
}

impl Default for Fields {
    fn default() -> Self {
        Fields(FieldsRepr::Empty)
    }
}

impl From<Map> for Fields {
    fn from(map: Map) -> Self {
        Fields(FieldsRepr::Owned(Box::new(map)))
    }
}

impl From<FlatObject> for Fields {
    fn from(object: FlatObject) -> Self {
        Fields(FieldsRepr::Flat(object))
    }
}

impl Fields {
    pub fn repr(&self) -> &FieldsRepr {
        &self.0
    }

    pub fn len(&self) -> usize {
        match &self.0 {
            FieldsRepr::Empty => 0,
            FieldsRepr::Owned(map) => map.len(),
            FieldsRepr::Flat(object) => object.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Writes the text of the top-level member `key` when it is a scalar (a string as
    /// is; a number or boolean as JSON writes it); false when there is none, or it is
    /// null, bytes, an array or an object.
    pub fn scalar_text(&self, key: &str, out: &mut String) -> bool {
        match &self.0 {
            FieldsRepr::Empty => false,
            FieldsRepr::Owned(map) => map.get(key).is_some_and(|v| flat::scalar_text(v, out)),
            FieldsRepr::Flat(object) => object.scalar_text(key, out),
        }
    }

    /// A copy as an owned map.
    pub fn to_map(&self) -> Map {
        match &self.0 {
            FieldsRepr::Empty => Map::new(),
            FieldsRepr::Owned(map) => (**map).clone(),
            FieldsRepr::Flat(object) => object.to_map(),
        }
    }

    /// The fields as an owned map, to change them (copied out of the flat form first).
    pub fn make_mut(&mut self) -> &mut Map {
        match &self.0 {
            FieldsRepr::Empty => self.0 = FieldsRepr::Owned(Box::default()),
            FieldsRepr::Flat(object) => self.0 = FieldsRepr::Owned(Box::new(object.to_map())),
            FieldsRepr::Owned(_) => {}
        }
        match &mut self.0 {
            FieldsRepr::Owned(map) => map,
            FieldsRepr::Empty | FieldsRepr::Flat(_) => unreachable!("made owned above"),
        }
    }

    pub fn insert(&mut self, key: impl Into<String>, value: Value) {
        self.make_mut().insert(key.into(), value);
    }

    /// Sets the members of `object`, keeping the others.
    pub fn merge(&mut self, object: FlatObject) {
        if self.is_empty() {
            *self = Fields::from(object);
        } else {
            self.make_mut().extend(object.to_map());
        }
    }
}

impl PartialEq for Fields {
    fn eq(&self, other: &Self) -> bool {
        self.to_map() == other.to_map()
    }
}

impl fmt::Debug for Fields {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.to_map().fmt(f)
    }
}

/// Tags: short string labels (`host=gw-7`), Flume's headers. Setting a key that exists
/// replaces its value; order is insertion order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tags(Vec<(Arc<str>, Arc<str>)>);

impl Tags {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| &**k == key).map(|(_, v)| &**v)
    }

    pub fn set(&mut self, key: impl Into<Arc<str>>, value: impl Into<Arc<str>>) {
        let key = key.into();
        let value = value.into();
        match self.0.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => self.0.push((key, value)),
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (&**k, &**v))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// One log event.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Event {
    /// Which application or stream the event belongs to.
    pub name: Arc<str>,
    /// Nanoseconds since the Unix epoch, UTC.
    pub timestamp: Option<i64>,
    pub level: Level,
    pub tags: Tags,
    pub fields: Fields,
    /// The raw body, usually the line as read (without its line end).
    pub body: Vec<u8>,
}

impl Event {
    /// Approximately how many bytes the event holds in memory: what channels and
    /// batches are bounded by. Fields kept in a plugin's output are estimated per node
    /// (the output is shared by its batch).
    pub fn size_estimate(&self) -> usize {
        const NODE: usize = 40;
        const MEMBER: usize = 96;
        let fields = match self.fields.repr() {
            FieldsRepr::Empty => 0,
            FieldsRepr::Owned(map) => map.len() * MEMBER,
            FieldsRepr::Flat(object) => object.node_count() * NODE,
        };
        std::mem::size_of::<Event>() + self.body.len() + self.tags.len() * 48 + fields
    }

    /// A fresh event from a source: a body and the source's name, nothing parsed yet.
    pub fn from_body(name: Arc<str>, body: Vec<u8>) -> Self {
        Self {
            name,
            body,
            ..Self::default()
        }
    }
}

/// The wall clock as events carry time: nanoseconds since the Unix epoch, UTC (0 when
/// the clock is before the epoch).
pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

/// The tag a step writes when it could not handle an event (`parse_error`, …).
pub mod error_tags {
    /// A parser reported that it could not parse the body.
    pub const PARSE_ERROR: &str = "parse_error";
    /// A plugin failed on the whole batch (trap, timeout, malformed output).
    pub const PLUGIN_ERROR: &str = "plugin_error";
    /// The step (plugin name) that set one of the tags above.
    pub const ERROR_STEP: &str = "error_step";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_replace_existing_keys_and_keep_order() {
        let mut tags = Tags::default();
        tags.set("host", "a");
        tags.set("env", "prod");
        tags.set("host", "b");
        assert_eq!(
            tags.iter().collect::<Vec<_>>(),
            vec![("host", "b"), ("env", "prod")]
        );
    }

    #[test]
    fn unsigned_integers_are_canonical() {
        assert_eq!(Value::from_u64(5), Value::Int(5));
        assert_eq!(Value::from_u64(u64::MAX), Value::Uint(u64::MAX));
    }
}
