//! Channels: the buffers between sources and sinks, with Flume's transactions. A source
//! puts a batch atomically; a sink takes a batch inside a transaction and commits it once
//! delivered, or rolls it back so the events are taken again.

mod memory;

pub use memory::{MemoryChannel, Take};

/// The channel has been closed and holds no more events.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("channel `{0}` is closed")]
pub struct Closed(pub String);
