//! `strip-control`: removes control characters, invisible characters and ANSI escape
//! sequences from the body and from the string values of the fields.
//!
//! Removed: C0 controls U+0000–U+001F (the tab only when `keep_tabs` is false; newlines
//! and carriage returns too), DEL U+007F, C1 controls U+0080–U+009F, the zero-width
//! characters U+200B–U+200D, the word joiner U+2060, the byte order mark U+FEFF and the
//! bidi controls U+200E, U+200F, U+202A–U+202E and U+2066–U+2069. An ANSI escape
//! sequence goes whole: `ESC [` with its parameter, intermediate and final bytes
//! (`\x1b[1;31m`), or `ESC` with the one character after it.
//!
//! Fields: string values are cleaned wherever they are (inside arrays and nested
//! objects too); member names, other types and byte strings are left alone. A body that
//! is not UTF-8 loses its ASCII control bytes (C0 and DEL) only. Events with nothing to
//! remove are left as they were; for the others the patch holds the cleaned body and the
//! changed top-level members.
//!
//! Counter: `chars_removed`, the characters removed (every character of an escape
//! sequence counts).
//!
//! Config (all optional):
//!
//! - `keep_tabs` (bool, default true): keep U+0009.
//! - `body` (bool, default true): clean the body.
//! - `fields` (list of strings, default every field): the top-level fields to clean;
//!   an empty list cleans no field.
//! - `replacement` (string, default empty): put in place of each removed character or
//!   escape sequence; it must not itself hold a character that is removed.

pub mod strip;

use runnel_plugin_sdk::cleaner::CleanOutput;
use runnel_plugin_sdk::types::{Batch, FieldsUpdate, Patch, Range, Span};
use runnel_plugin_sdk::{Config, EventRef, NodeRef, Output, Value, events};
use strip::Stripper;

/// The config keys.
const KEYS: &[&str] = &["keep_tabs", "body", "fields", "replacement"];

const NO_TAGS: Range = Range { start: 0, len: 0 };

/// A configured cleaner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StripControl {
    stripper: Stripper,
    body: bool,
    /// `None`: every top-level field.
    fields: Option<Vec<String>>,
}

/// A batch's patches and the number of characters removed from it.
#[derive(Debug)]
pub struct Cleaned {
    pub output: CleanOutput,
    pub removed: u64,
}

impl StripControl {
    /// Reads the config; errors name the offending key.
    pub fn new(config: &Config) -> Result<Self, String> {
        Self::build(config).map_err(|e| format!("strip-control: {e}"))
    }

    fn build(config: &Config) -> Result<Self, String> {
        config.deny_unknown(KEYS)?;
        let stripper = Stripper {
            keep_tabs: config.bool("keep_tabs")?.unwrap_or(true),
            replacement: config.str("replacement")?.unwrap_or_default().to_owned(),
        };
        if stripper.needs_cleaning(&stripper.replacement) {
            return Err(
                "config: `replacement` holds a character that strip-control removes".into(),
            );
        }
        Ok(Self {
            stripper,
            body: config.bool("body")?.unwrap_or(true),
            fields: config.strings("fields")?,
        })
    }

    /// Cleans every event of `batch`: one entry per event, `None` for unchanged ones.
    pub fn clean(&self, batch: &Batch) -> Cleaned {
        let mut out = Output::new();
        let mut removed = 0;
        let patches = events(batch)
            .map(|event| self.clean_event(&mut out, event, &mut removed))
            .collect();
        Cleaned {
            output: CleanOutput {
                data: out.finish(),
                patches,
            },
            removed,
        }
    }

    fn clean_event(
        &self,
        out: &mut Output,
        event: EventRef<'_>,
        removed: &mut u64,
    ) -> Option<Patch> {
        let body = self.clean_body(out, event.body(), removed);
        let members = self.changed_members(event, removed);
        let fields = (!members.is_empty()).then(|| {
            let mut obj = out.object();
            for (key, value) in &members {
                obj.value(key, value);
            }
            FieldsUpdate::Merge(obj.finish())
        });
        if body.is_none() && fields.is_none() {
            return None;
        }
        Some(Patch {
            fields,
            tags: NO_TAGS,
            level: None,
            timestamp: None,
            name: None,
            body,
        })
    }

    fn clean_body(&self, out: &mut Output, body: &[u8], removed: &mut u64) -> Option<Span> {
        if !self.body {
            return None;
        }
        let (cleaned, n) = match std::str::from_utf8(body) {
            Ok(text) => self
                .stripper
                .clean_str(text)
                .map(|(s, n)| (s.into_bytes(), n))?,
            Err(_) => self.stripper.clean_bytes(body)?,
        };
        *removed += n;
        Some(out.span(&cleaned))
    }

    /// The cleaned values of the selected top-level members that change.
    fn changed_members<'e>(&self, event: EventRef<'e>, removed: &mut u64) -> Vec<(&'e str, Value)> {
        let Some(root) = event.fields() else {
            return Vec::new();
        };
        root.children()
            .filter_map(|member| {
                let key = std::str::from_utf8(member.key()).ok()?;
                if !self.selected(key) || !self.has_dirty_string(member) {
                    return None;
                }
                let mut value = member.decode().ok()?;
                *removed += self.clean_value(&mut value);
                Some((key, value))
            })
            .collect()
    }

    fn selected(&self, key: &str) -> bool {
        self.fields
            .as_ref()
            .is_none_or(|names| names.iter().any(|n| n == key))
    }

    /// Whether a string anywhere in the member's subtree needs cleaning (read in place).
    fn has_dirty_string(&self, member: NodeRef<'_>) -> bool {
        member.subtree().is_some_and(|nodes| {
            nodes.values().any(|node| match node {
                Some(runnel_plugin_sdk::NodeValue::Str(span)) => {
                    std::str::from_utf8(member.span_bytes(span))
                        .is_ok_and(|text| self.stripper.needs_cleaning(text))
                }
                _ => false,
            })
        })
    }

    /// Cleans every string in `value`; returns the characters removed.
    fn clean_value(&self, value: &mut Value) -> u64 {
        match value {
            Value::Str(text) => match self.stripper.clean_str(text) {
                Some((cleaned, n)) => {
                    *text = cleaned;
                    n
                }
                None => 0,
            },
            Value::Array(items) => items.iter_mut().map(|v| self.clean_value(v)).sum(),
            Value::Object(members) => members.iter_mut().map(|(_, v)| self.clean_value(v)).sum(),
            _ => 0,
        }
    }
}

#[cfg(target_arch = "wasm32")]
mod component {
    use runnel_plugin_sdk::cleaner::{CleanOutput, Guest, GuestInstance, Instance};
    use runnel_plugin_sdk::types::{Batch, Tree};

    struct Plugin;

    impl Guest for Plugin {
        type Instance = super::StripControl;
    }

    impl GuestInstance for super::StripControl {
        fn create(config: Tree) -> Result<Instance, String> {
            let config = runnel_plugin_sdk::Config::from_tree(&config)
                .map_err(|e| format!("strip-control: {e}"))?;
            Ok(Instance::new(super::StripControl::new(&config)?))
        }

        fn clean(&self, input: Batch) -> CleanOutput {
            let cleaned = super::StripControl::clean(self, &input);
            if cleaned.removed > 0 {
                runnel_plugin_sdk::host::counter("chars_removed", cleaned.removed);
            }
            cleaned.output
        }

        /// Every field: any string may hold control characters.
        fn reads(&self) -> Option<Vec<String>> {
            None
        }
    }

    runnel_plugin_sdk::export_cleaner!(Plugin with_types_in runnel_plugin_sdk::bindings::cleaner);
}

#[cfg(test)]
mod tests;
