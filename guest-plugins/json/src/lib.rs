//! `json`: parses bodies that each hold one JSON object (JSON Lines, ndjson).
//!
//! ```text
//! {"ts":"2024-05-01T10:00:00.123Z","level":"warn","msg":"disk 91% full","disk":{"free":1.5e9}}
//! ```
//!
//! Fields: the members of the object, in order, with their JSON types kept exactly:
//! `null`, booleans, integers (as `int` in the signed 64-bit range, as `uint` above it up
//! to 2^64-1; larger ones become floats), numbers written with `.`, `e` or `E` (as
//! `float`, so `1.0` stays a float; `-0` also becomes the float `-0.0`), strings (every
//! escape decoded, `\uXXXX` surrogate pairs included), arrays and nested objects (empty
//! ones too). A name that occurs twice is passed on twice; the host keeps the last value.
//!
//! A body that is not valid UTF-8, not JSON, JSON that is not an object, or an object
//! followed by anything but whitespace is a parse error naming the problem, for example
//! `json: expected an object, got array` or
//! `json: expected `,` or `}` at line 1 column 12`.
//!
//! Config (all optional):
//!
//! - `level_key`: the member whose string value sets the event level, case-insensitive:
//!   `trace`, `debug`, `info`, `warn`/`warning`, `error`/`err`,
//!   `fatal`/`critical`/`crit`/`emerg`/`alert`/`panic`; any other text sets `unknown`.
//!   A member of another type leaves the level unset.
//! - `name_key`: the member whose string value sets the event name.
//! - `timestamp_key`: the member holding the event time, either an RFC 3339 string
//!   (`2024-05-01T10:00:00.123Z`, `2024-05-01T12:00:00+02:00`) or a number of seconds
//!   since the Unix epoch (integer or fractional). A value that is neither leaves the
//!   timestamp unset; it is not an error.
//!
//! These members stay in the fields too.

pub mod meta;
mod tree;

use runnel_plugin_sdk::parser::{ParseOutput, ParseResult, Parsed};
use runnel_plugin_sdk::types::{Level, Lines, OutputData, Range, Span};
use runnel_plugin_sdk::{Config, NodeValue as Wire, span_bytes};
use serde::de::{DeserializeSeed, IgnoredAny};
use tree::{RootMembers, RootSeed, Tree};

/// The config keys.
const KEYS: &[&str] = &["level_key", "name_key", "timestamp_key"];

/// A configured parser.
#[derive(Debug, Clone, Default)]
pub struct Json {
    level_key: Option<String>,
    name_key: Option<String>,
    timestamp_key: Option<String>,
}

impl Json {
    /// Reads the config; errors name the offending key.
    pub fn new(config: &Config) -> Result<Self, String> {
        Self::build(config).map_err(|e| format!("json: {e}"))
    }

    fn build(config: &Config) -> Result<Self, String> {
        config.deny_unknown(KEYS)?;
        let key = |name: &str| Ok::<_, String>(config.str(name)?.map(str::to_owned));
        Ok(Self {
            level_key: key("level_key")?,
            name_key: key("name_key")?,
            timestamp_key: key("timestamp_key")?,
        })
    }

    /// Parses every body of `input`: one result per body, in order.
    pub fn parse_lines(&self, input: &Lines) -> ParseOutput {
        let mut tree = Tree::with_capacity(input.arena.len(), input.bodies.len() * 16);
        let results = input
            .bodies
            .iter()
            .map(|&span| {
                let body = span_bytes(&input.arena, span);
                match self.parse_body(&mut tree, body) {
                    Ok(parsed) => ParseResult::Ok(parsed),
                    Err(message) => ParseResult::Error(tree.span(message.as_bytes())),
                }
            })
            .collect();
        ParseOutput {
            data: OutputData {
                arena: tree.arena,
                nodes: tree.nodes,
                tags: Vec::new(),
            },
            results,
        }
    }

    /// Parses one body into `tree`; on error the tree is left as it was.
    fn parse_body(&self, tree: &mut Tree, body: &[u8]) -> Result<Parsed, String> {
        let mark = tree.mark();
        let result = self.write_body(tree, body);
        if result.is_err() {
            tree.rollback(mark);
        }
        result
    }

    fn write_body(&self, tree: &mut Tree, body: &[u8]) -> Result<Parsed, String> {
        let text = std::str::from_utf8(body)
            .map_err(|e| format!("json: body is not valid UTF-8 at byte {}", e.valid_up_to()))?;
        let first = text
            .trim_start_matches([' ', '\t', '\n', '\r'])
            .bytes()
            .next();
        if first != Some(b'{') {
            return Err(not_an_object(text, first));
        }
        let start = tree.len();
        let mut found = Found::new(self);
        let mut de = serde_json::Deserializer::from_str(text);
        RootSeed {
            tree: &mut *tree,
            members: &mut found,
        }
        .deserialize(&mut de)
        .and_then(|()| de.end())
        .map_err(|e| format!("json: {e}"))?;
        Ok(Parsed {
            fields: Range {
                start: start as u32,
                len: (tree.len() - start) as u32,
            },
            level: found.level,
            timestamp: found.timestamp,
            name: found.name,
        })
    }
}

/// The error for a body that does not start with `{`: serde's message when it is not
/// JSON at all, otherwise the type it holds.
fn not_an_object(text: &str, first: Option<u8>) -> String {
    if let Err(e) = serde_json::from_str::<IgnoredAny>(text) {
        return format!("json: {e}");
    }
    let kind = match first {
        Some(b'[') => "array",
        Some(b'"') => "string",
        Some(b't' | b'f') => "boolean",
        Some(b'n') => "null",
        _ => "number",
    };
    format!("json: expected an object, got {kind}")
}

/// The level, name and timestamp read from the configured members of the root object.
struct Found<'k> {
    keys: &'k Json,
    level: Option<Level>,
    name: Option<Span>,
    timestamp: Option<i64>,
}

impl<'k> Found<'k> {
    fn new(keys: &'k Json) -> Self {
        Self {
            keys,
            level: None,
            name: None,
            timestamp: None,
        }
    }
}

fn is_key(configured: Option<&str>, key: &[u8]) -> bool {
    configured.is_some_and(|k| k.as_bytes() == key)
}

impl RootMembers for Found<'_> {
    fn member(&mut self, tree: &Tree, key: Span, at: usize) {
        let key = tree.bytes(key);
        let value = &tree.value(at);
        let text = |value: &Wire| match value {
            Wire::Str(span) => std::str::from_utf8(tree.bytes(*span)).ok(),
            _ => None,
        };
        if is_key(self.keys.level_key.as_deref(), key) {
            self.level = text(value).map(runnel_plugin_sdk::level_from_text);
        }
        if is_key(self.keys.name_key.as_deref(), key) {
            self.name = match value {
                Wire::Str(span) => Some(*span),
                _ => None,
            };
        }
        if is_key(self.keys.timestamp_key.as_deref(), key) {
            self.timestamp = match value {
                Wire::Str(_) => text(value).and_then(meta::rfc3339_to_ns),
                Wire::Int(secs) => meta::seconds_to_ns(*secs),
                Wire::Float(secs) => meta::float_seconds_to_ns(*secs),
                _ => None,
            };
        }
    }
}

#[cfg(target_arch = "wasm32")]
mod component {
    use runnel_plugin_sdk::parser::{Guest, GuestInstance, Instance, ParseOutput};
    use runnel_plugin_sdk::types::{Lines, Tree};

    struct Plugin;

    impl Guest for Plugin {
        type Instance = super::Json;
    }

    impl GuestInstance for super::Json {
        fn create(config: Tree) -> Result<Instance, String> {
            let config =
                runnel_plugin_sdk::Config::from_tree(&config).map_err(|e| format!("json: {e}"))?;
            Ok(Instance::new(super::Json::new(&config)?))
        }

        fn parse(&self, input: Lines) -> ParseOutput {
            self.parse_lines(&input)
        }
    }

    runnel_plugin_sdk::export_parser!(Plugin with_types_in runnel_plugin_sdk::bindings::parser);
}

#[cfg(test)]
mod tests;
