//! Sinks: take batches from a channel in a transaction, encode them once, send them (the
//! [`driver`] retries what can succeed later, with backoff), and commit only what the
//! destination accepted. A batch the destination refuses for good goes to the sink's
//! dead-letter channel (or is dropped and counted); it never blocks the channel.
//!
//! Every sink type is one module with its own config struct implementing [`SinkConfig`]
//! and a [`SinkService`] that encodes and sends. Adding a type is one module and one
//! line in the [`SinkType`] registry.

mod console;
mod driver;
mod file;
mod forward;
pub mod group;
pub mod http;
mod kafka;
mod retry;
mod rolling;
mod webhdfs;

pub use driver::Sink;
pub use retry::Backoff;

use crate::config::Problems;
use crate::config::registry::registry;
use crate::event::Event;
use futures_util::future::BoxFuture;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

registry! {
    /// Every sink type; `type = "..."` in a `[sinks.NAME]` table selects one.
    pub enum SinkType: SinkConfig, "sink" {
        "console" => Console(console::ConsoleSinkConfig),
        "file" => File(file::FileSinkConfig),
        "forward" => Forward(forward::ForwardSinkConfig),
        "http" => Http(http::HttpSinkConfig),
        "kafka" => Kafka(kafka::KafkaSinkConfig),
        "webhdfs" => WebHdfs(webhdfs::WebHdfsSinkConfig),
    }
}

/// One sink type's settings, and how to build it.
pub trait SinkConfig: std::fmt::Debug + Send + Sync {
    fn validate(&self, problems: &mut Problems);
    /// The local file this sink writes, if any (to refuse feedback loops).
    fn writes_file(&self) -> Option<PathBuf> {
        None
    }
    /// `data_dir`: the agent's data directory, for what a sink keeps across restarts.
    fn build(&self, name: &str, data_dir: &Path) -> anyhow::Result<Arc<dyn SinkService>>;
}

/// A batch encoded for its destination, sent as is by every attempt.
#[derive(Debug, Default)]
pub struct Payload {
    /// Shared, not copied, by every attempt (an HTTP request body takes it as is).
    pub bytes: bytes::Bytes,
    pub events: usize,
    /// Where the runs of `bytes` go, for a sink that sends one batch to several places
    /// (see [`SinkService::encode_parts`]); empty: all of it to the sink's one place.
    pub parts: Vec<Part>,
}

/// One run of a payload's bytes, `..end` (from the previous part's end), and the place
/// it goes to (a file path, for instance).
#[derive(Debug, Clone, PartialEq)]
pub struct Part {
    pub key: String,
    pub end: usize,
    pub events: usize,
    /// Where this part's events are in the batch (ascending): what the driver refuses
    /// when the sink refuses this part alone ([`SendError::RejectParts`]).
    pub positions: Vec<u32>,
}

/// Groups a batch's events by the place each goes to (`key_of` writes it into the
/// buffer it is given), in the order each place first appears, the events of a place in
/// their order, each with its position in the batch.
pub fn group_by_key(
    events: &[Event],
    mut key_of: impl FnMut(&Event, &mut String),
) -> indexmap::IndexMap<String, Vec<(u32, &Event)>> {
    let mut groups: indexmap::IndexMap<String, Vec<(u32, &Event)>> = indexmap::IndexMap::new();
    let mut key = String::new();
    for (position, event) in events.iter().enumerate() {
        key.clear();
        key_of(event, &mut key);
        let entry = (position as u32, event);
        match groups.get_mut(key.as_str()) {
            Some(group) => group.push(entry),
            None => {
                groups.insert(key.clone(), vec![entry]);
            }
        }
    }
    groups
}

/// Why a send failed, and whether trying again can help.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// It may succeed later (a connection error, a timeout, 408, 429, 5xx, a full disk):
    /// the batch stays in its transaction and is sent again after `after` (when the
    /// destination said so, e.g. `Retry-After`) or the sink's backoff.
    #[error("{message}")]
    Retry {
        message: String,
        after: Option<Duration>,
    },
    /// The destination will never accept this batch (400, 413, a closed pipe).
    #[error("{message}")]
    Reject { message: String },
    /// The destination will never accept these parts of the batch (indexes into
    /// [`Payload::parts`]: a file path no file system can hold, a topic the broker
    /// refuses), and took every other part: the refused parts' events go to the
    /// dead-letter channel (or are dropped and counted), the rest is delivered.
    #[error("{message}")]
    RejectParts { parts: Vec<usize>, message: String },
}

impl SendError {
    pub fn retry(message: impl Into<String>) -> Self {
        SendError::Retry {
            message: message.into(),
            after: None,
        }
    }

    pub fn reject(message: impl Into<String>) -> Self {
        SendError::Reject {
            message: message.into(),
        }
    }
}

/// How a sink type encodes and sends batches.
pub trait SinkService: Send + Sync + 'static {
    /// Encodes `events` into `out` (once per batch).
    fn encode(&self, events: &[Event], out: &mut Vec<u8>);
    /// For a sink that sends one batch to several places: encodes `events` into `out` as
    /// consecutive runs, one per place, and says where each goes. The driver calls this;
    /// the default is [`encode`](Self::encode) and one place.
    fn encode_parts(&self, events: &[Event], out: &mut Vec<u8>) -> Vec<Part> {
        self.encode(events, out);
        Vec::new()
    }
    /// Sends an encoded batch (once per attempt).
    fn send(self: Arc<Self>, payload: Arc<Payload>) -> BoxFuture<'static, Result<(), SendError>>;
    /// How many batches may be on their way at once (commits stay in order).
    fn in_flight(&self) -> usize {
        1
    }
    /// Work due with time rather than with batches (closing idle files, rolling files
    /// past their age). The driver runs it every [`HOUSEKEEPING_PERIOD`], beside the
    /// sends, never two at once.
    fn housekeep(self: Arc<Self>) -> Option<BoxFuture<'static, ()>> {
        None
    }
    /// Called once when the sink stops after its last batch was delivered (not when
    /// the agent aborts): close what is open (a file gets its final name).
    fn close(self: Arc<Self>) -> BoxFuture<'static, ()> {
        Box::pin(async {})
    }
}

/// How often the driver runs [`SinkService::housekeep`].
pub const HOUSEKEEPING_PERIOD: Duration = Duration::from_secs(1);
