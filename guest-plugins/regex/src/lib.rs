//! `regex`: parses bodies with a regular expression; its named capture groups become
//! fields.
//!
//! ```toml
//! [plugins.zookeeper]
//! builtin = "regex"
//! [plugins.zookeeper.config]
//! pattern = '^(?P<date>\S+) (?P<time>\S+) - (?P<level>[A-Z]+)\s+\[(?P<node>[^:]*):(?P<component>[^@]*)@(?P<id>\d+)\] - (?P<content>.*)$'
//! types = { id = "int" }
//! level_capture = "level"
//! ```
//!
//! Fields: one per named capture group, in the order the groups open in the pattern, as
//! strings unless `types` says otherwise. A group that did not take part in the match
//! (an optional or alternative branch) is `null`. Unnamed groups are not fields. The
//! syntax is that of the Rust `regex` crate (no look-around or back-references; matching
//! time is linear in the line). Invalid UTF-8 in a body is replaced by U+FFFD before
//! matching, and a trailing `\r` or `\n` is ignored.
//!
//! A line the pattern does not match is a parse error,
//! `regex: line does not match `pattern``; so is a capture that does not convert to its
//! type, `regex: capture `id`: `12a` is not an int`.
//!
//! Config:
//!
//! - `pattern` (required): the regular expression, with at least one named group
//!   `(?P<name>…)` or `(?<name>…)`.
//! - `types` (optional): a table of capture name → `"string"`, `"int"` (signed 64-bit, or
//!   unsigned 64-bit above that range), `"float"` (finite) or `"bool"` (`true`/`false`,
//!   any case). Every name must be a named group of the pattern.
//! - `level_capture` (optional): the group whose text sets the event level,
//!   case-insensitive: `trace`, `debug`, `info`, `warn`/`warning`, `error`/`err`,
//!   `fatal`/`critical`/`crit`/`emerg`/`alert`/`panic`; other text sets `unknown`.
//! - `name_capture` (optional): the group whose text sets the event name.
//!
//! The level and name captures stay in the fields too.

mod convert;

use convert::{Field, Kind};
use regex::{CaptureLocations, Regex};
use runnel_plugin_sdk::parser::{ParseOutput, ParseResult, Parsed};
use runnel_plugin_sdk::types::{Lines, Range};
use runnel_plugin_sdk::{Config, Output, Value, span_bytes};

/// The config keys.
const KEYS: &[&str] = &["pattern", "types", "level_capture", "name_capture"];

const NO_MATCH: &str = "regex: line does not match `pattern`";

/// A named capture group that becomes a field.
#[derive(Debug, Clone)]
struct Capture {
    /// The group's index in the pattern.
    group: usize,
    name: String,
    kind: Kind,
}

/// A configured parser.
#[derive(Debug, Clone)]
pub struct RegexParser {
    regex: Regex,
    captures: Vec<Capture>,
    level_group: Option<usize>,
    name_group: Option<usize>,
}

impl RegexParser {
    /// Compiles the pattern and checks the config; errors name the offending key.
    pub fn new(config: &Config) -> Result<Self, String> {
        Self::build(config).map_err(|e| format!("regex: {e}"))
    }

    fn build(config: &Config) -> Result<Self, String> {
        config.deny_unknown(KEYS)?;
        let pattern = config
            .str("pattern")?
            .ok_or("config: `pattern` is required")?;
        let regex =
            Regex::new(pattern).map_err(|e| format!("config: `pattern` does not compile: {e}"))?;
        let mut captures = named_captures(&regex);
        if captures.is_empty() {
            return Err(
                "config: `pattern` has no named capture group such as `(?P<name>...)`".into(),
            );
        }
        if let Some(types) = config.table("types")? {
            apply_types(&mut captures, types)?;
        }
        let level_group = group_of(config, &captures, "level_capture")?;
        let name_group = group_of(config, &captures, "name_capture")?;
        Ok(Self {
            regex,
            captures,
            level_group,
            name_group,
        })
    }

    /// Parses every body of `input`: one result per body, in order.
    pub fn parse_lines(&self, input: &Lines) -> ParseOutput {
        let mut out = Output::with_capacity(input.bodies.len(), 128, self.captures.len() + 1);
        let mut locs = self.regex.capture_locations();
        let mut fields = Vec::with_capacity(self.captures.len());
        let results = input
            .bodies
            .iter()
            .map(|&span| {
                let body = String::from_utf8_lossy(span_bytes(&input.arena, span));
                let line = body.trim_end_matches(['\r', '\n']);
                match self.parse_line(&mut out, &mut locs, &mut fields, line) {
                    Ok(parsed) => ParseResult::Ok(parsed),
                    Err(message) => ParseResult::Error(out.span(message.as_bytes())),
                }
            })
            .collect();
        ParseOutput {
            data: out.finish(),
            results,
        }
    }

    /// Matches one line and writes its fields; nothing is written when it fails.
    fn parse_line(
        &self,
        out: &mut Output,
        locs: &mut CaptureLocations,
        fields: &mut Vec<Field>,
        line: &str,
    ) -> Result<Parsed, String> {
        self.regex
            .captures_read(locs, line)
            .ok_or_else(|| NO_MATCH.to_owned())?;
        fields.clear();
        for capture in &self.captures {
            fields.push(match locs.get(capture.group) {
                None => Field::Null,
                Some((start, end)) => convert::convert(capture.kind, &line[start..end], start)
                    .map_err(|what| {
                        format!(
                            "regex: capture `{}`: `{}` is not {what}",
                            capture.name,
                            &line[start..end]
                        )
                    })?,
            });
        }
        let text = |group: Option<usize>| {
            let (start, end) = locs.get(group?)?;
            Some(&line[start..end])
        };
        let level = text(self.level_group).map(runnel_plugin_sdk::level_from_text);
        let name = text(self.name_group).map(|name| out.span(name.as_bytes()));
        let fields = self.write_fields(out, fields, line);
        Ok(Parsed {
            fields,
            level,
            timestamp: None,
            name,
        })
    }

    fn write_fields(&self, out: &mut Output, fields: &[Field], line: &str) -> Range {
        let mut obj = out.object();
        for (capture, field) in self.captures.iter().zip(fields) {
            let key = capture.name.as_str();
            match *field {
                Field::Null => obj.null(key),
                Field::Str(start, end) => obj.str(key, &line[start..end]),
                Field::Int(i) => obj.int(key, i),
                Field::Uint(u) => obj.value(key, &Value::Uint(u)),
                Field::Float(f) => obj.float(key, f),
                Field::Bool(b) => obj.bool(key, b),
            };
        }
        obj.finish()
    }
}

/// The named groups of `regex`, in the order they open, as strings.
fn named_captures(regex: &Regex) -> Vec<Capture> {
    regex
        .capture_names()
        .enumerate()
        .filter_map(|(group, name)| {
            Some(Capture {
                group,
                name: name?.to_owned(),
                kind: Kind::String,
            })
        })
        .collect()
}

/// The group named by the string at config `key`, if it is set.
fn group_of(config: &Config, captures: &[Capture], key: &str) -> Result<Option<usize>, String> {
    let Some(name) = config.str(key)? else {
        return Ok(None);
    };
    captures
        .iter()
        .find(|c| c.name == name)
        .map(|c| Some(c.group))
        .ok_or_else(|| {
            format!("config: `{key}` names `{name}`, which is not a named group of `pattern`")
        })
}

/// Sets the kind of each capture named in the `types` table.
fn apply_types(captures: &mut [Capture], types: &[(String, Value)]) -> Result<(), String> {
    for (name, value) in types {
        let kind = value.as_str().and_then(Kind::from_name).ok_or_else(|| {
            format!(
                "config: `types.{name}` must be one of \"string\", \"int\", \"float\", \"bool\""
            )
        })?;
        let capture = captures
            .iter_mut()
            .find(|c| &c.name == name)
            .ok_or_else(|| {
                format!("config: `types` names `{name}`, which is not a named group of `pattern`")
            })?;
        capture.kind = kind;
    }
    Ok(())
}

#[cfg(target_arch = "wasm32")]
mod component {
    use runnel_plugin_sdk::parser::{Guest, GuestInstance, Instance, ParseOutput};
    use runnel_plugin_sdk::types::{Lines, Tree};

    struct Plugin;

    impl Guest for Plugin {
        type Instance = super::RegexParser;
    }

    impl GuestInstance for super::RegexParser {
        fn create(config: Tree) -> Result<Instance, String> {
            let config =
                runnel_plugin_sdk::Config::from_tree(&config).map_err(|e| format!("regex: {e}"))?;
            Ok(Instance::new(super::RegexParser::new(&config)?))
        }

        fn parse(&self, input: Lines) -> ParseOutput {
            self.parse_lines(&input)
        }
    }

    runnel_plugin_sdk::export_parser!(Plugin with_types_in runnel_plugin_sdk::bindings::parser);
}

#[cfg(test)]
mod tests;
