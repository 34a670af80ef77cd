//! The Rust SDK for Runnel plugins.
//!
//! It holds the bindings of the `runnel:plugin` WIT package (one module per plugin role),
//! an owned [`Value`] tree with its decoder, and [`Output`], the builder that writes the
//! flat arena + column-wise node encoding that plugins return. A plugin crate implements the role's
//! `Guest` traits and calls the role's export macro:
//!
//! ```ignore
//! use runnel_plugin_sdk::parser::{Guest, GuestInstance, Instance, Lines, ParseOutput};
//! use runnel_plugin_sdk::types::Tree;
//! struct Plugin;
//! impl Guest for Plugin { type Instance = MyParser; }
//! runnel_plugin_sdk::export_parser!(Plugin with_types_in runnel_plugin_sdk::bindings::parser);
//! ```

mod batch;
pub mod bindings;
mod config;
mod level;
mod nodes;
mod output;
pub mod time;
mod value;

pub use batch::{BatchBuilder, Children, EventRef, NodeRef, events};
pub use bindings::types;
pub use config::Config;
pub use level::{level_by_name, level_from_text, level_name};
pub use nodes::{NodeValue, NodesRef, kind, pack, unpack};
pub use output::{Key, MemberKey, ObjectWriter, Output};
pub use value::{DecodeError, Value, decode_tree, decode_value};

/// The parser role: raw bodies in, fields out.
pub mod parser {
    pub use crate::bindings::parser::exports::runnel::plugin::parser::*;
}
/// The interceptor role: keep, drop or patch each event.
pub mod interceptor {
    pub use crate::bindings::interceptor::exports::runnel::plugin::interceptor::*;
}
/// The cleaner role: patch values, never drop.
pub mod cleaner {
    pub use crate::bindings::cleaner::exports::runnel::plugin::cleaner::*;
}
/// The processor role: any number of events out (keep, drop, change, emit new ones),
/// and `tick` on a timer.
pub mod processor {
    pub use crate::bindings::processor::exports::runnel::plugin::processor::*;
}
/// The router role: a route mask per event.
pub mod router {
    pub use crate::bindings::router::exports::runnel::plugin::router::*;
}
/// What the host offers: log, counter, now, hostname.
pub mod host {
    pub use crate::bindings::host::*;
}
/// Keyed state the host keeps for the plugin across traps, reloads and restarts.
pub mod state {
    pub use crate::bindings::state::*;
}

/// A patch that merges the object tree `fields` (in the plugin's [`Output`]) into the
/// event's fields and changes nothing else.
pub fn merge_patch(fields: types::Range) -> types::Patch {
    types::Patch {
        fields: Some(types::FieldsUpdate::Merge(fields)),
        tags: types::Range { start: 0, len: 0 },
        level: None,
        timestamp: None,
        name: None,
        body: None,
    }
}

/// A parser's input made from bodies (for native tests and benchmarks: the host builds
/// it the same way).
pub fn lines<B: AsRef<[u8]>>(bodies: &[B]) -> types::Lines {
    let mut arena = Vec::with_capacity(bodies.iter().map(|b| b.as_ref().len()).sum());
    let spans = bodies
        .iter()
        .map(|body| {
            let body = body.as_ref();
            let offset = arena.len() as u32;
            arena.extend_from_slice(body);
            pack(types::Span {
                offset,
                len: body.len() as u32,
            })
        })
        .collect();
    types::Lines {
        arena,
        bodies: spans,
    }
}

/// The bytes of `span` (a [`types::Span`] or a packed span) in `arena`, or an empty slice
/// when the span is out of range.
pub fn span_bytes(arena: &[u8], span: impl Into<types::Span>) -> &[u8] {
    let span = span.into();
    let start = span.offset as usize;
    let end = start.saturating_add(span.len as usize);
    arena.get(start..end).unwrap_or(&[])
}

/// The text of `span` (a [`types::Span`] or a packed span) in `arena`; invalid UTF-8 is
/// replaced, out-of-range is empty.
pub fn span_str(arena: &[u8], span: impl Into<types::Span>) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(span_bytes(arena, span))
}

/// The bytes of a packed span in `arena`, or an empty slice when out of range.
pub fn packed_bytes(arena: &[u8], packed: u64) -> &[u8] {
    span_bytes(arena, unpack(packed))
}

/// The text of a packed span in `arena`; invalid UTF-8 is replaced, out-of-range is empty.
pub fn packed_str(arena: &[u8], packed: u64) -> std::borrow::Cow<'_, str> {
    span_str(arena, unpack(packed))
}

pub use bindings::cleaner::export_cleaner;
pub use bindings::interceptor::export_interceptor;
pub use bindings::parser::export_parser;
pub use bindings::processor::export_processor;
pub use bindings::router::export_router;
