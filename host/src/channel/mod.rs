//! Channels: the buffers between sources and sinks, with Flume's transactions. A source
//! puts a batch atomically; a sink takes a batch inside a transaction and commits it once
//! delivered, or rolls it back so the events are taken again.
//!
//! Every channel type is one module with its own config struct implementing
//! [`ChannelConfig`], and builds a [`Channel`]: the same put/take/commit/rollback
//! behind one handle, so the selector, workers and sinks never name a channel type.

pub mod file;
mod memory;
mod policy;

pub use memory::{MemoryChannel, MemoryChannelConfig};
pub use policy::{Capacity, FullPolicy};

use crate::config::Problems;
use crate::config::registry::registry;
use crate::event::Event;
use crate::plugin::state::StateCommit;
use crate::source::Checkpoint;
use futures_util::future::BoxFuture;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

registry! {
    /// Every channel type; `type = "..."` in a `[channels.NAME]` table selects one.
    pub enum ChannelType: ChannelConfig, "channel" {
        "memory" => Memory(memory::MemoryChannelConfig),
        "file" => File(file::FileChannelConfig),
    }
}

/// One channel type's settings, and how to build it.
pub trait ChannelConfig: std::fmt::Debug + Send + Sync {
    fn validate(&self, problems: &mut Problems);
    /// How many events the channel holds at most.
    fn capacity_events(&self) -> usize;
    /// Opens the channel (a file channel recovers what it holds on disk).
    fn build(&self, name: &str, data_dir: &Path) -> anyhow::Result<Channel>;
}

/// The channel has been closed and holds no more events.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("channel `{channel}` is closed ({not_put} events not put)")]
pub struct Closed {
    pub channel: String,
    /// Events of the put that did not go in (earlier parts of a split put did).
    pub not_put: usize,
}

/// How many events and bytes a take may return.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TakeLimits {
    pub events: usize,
    pub bytes: usize,
}

/// What every channel type does.
pub trait ChannelBackend: Send + Sync + 'static {
    fn name(&self) -> &str;

    /// Puts `events` in one or more transactions: each becomes visible (and, for a
    /// durable channel, is on disk) atomically. When the channel is full the channel's
    /// [`FullPolicy`] applies: wait, or drop (counted). Events that cannot fit in one
    /// transaction go in several, in order. A durable channel stores `checkpoint` (the
    /// positions of the source batch the events come from) in the last transaction, and
    /// hands it back from [`ChannelBackend::checkpoints`] after a restart.
    fn put(
        &self,
        events: Vec<Event>,
        checkpoint: Option<&Checkpoint>,
    ) -> BoxFuture<'_, Result<(), Closed>>;

    /// Resolves when a put of `events` events and about `bytes` bytes would go in without
    /// waiting (room is not reserved: another put may take it first). A batch larger
    /// than the channel waits for an empty one; a channel that drops when full never
    /// waits. Cancel-safe. For sources that must answer a client within a bounded time
    /// (the `http` source's `accept_timeout_ms`).
    fn room(&self, events: usize, bytes: usize) -> BoxFuture<'_, ()>;

    /// The checkpoints of `source` found in the channel when it was opened (none for a
    /// channel that does not survive a restart).
    fn checkpoints(&self, _source: &str) -> Vec<Checkpoint> {
        Vec::new()
    }

    /// The plugin state commits found in the channel's newest records when it was
    /// opened, for the plugins' states to take what their files lack.
    fn state_commits(&self) -> Vec<Arc<StateCommit>> {
        Vec::new()
    }

    /// Opens a take transaction. Waits for the first event, then up to `timeout` more
    /// for the batch to fill to `limits` (or for the channel to be full: a batch never
    /// waits for more than the channel can hold). Returns an empty transaction only
    /// when the channel is closed and drained. Cancel-safe: dropping the future takes
    /// nothing.
    fn take(&self, limits: TakeLimits, timeout: Duration) -> BoxFuture<'_, Take>;

    /// No more puts; takers drain what is left, then get empty transactions.
    fn close(&self);

    /// Events held: queued plus taken but not yet committed.
    fn len(&self) -> usize;

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether what the channel holds survives a restart (then it is not lost when the
    /// agent stops before delivering it).
    fn is_durable(&self) -> bool {
        false
    }
}

/// A channel handle: cheap to clone; clones are the same channel.
#[derive(Clone)]
pub struct Channel(Arc<dyn ChannelBackend>);

impl Channel {
    pub fn new(backend: impl ChannelBackend) -> Self {
        Self(Arc::new(backend))
    }

    pub fn name(&self) -> &str {
        self.0.name()
    }

    pub async fn put(&self, events: Vec<Event>) -> Result<(), Closed> {
        self.put_checkpointed(events, None).await
    }

    /// Puts `events` with the positions of the source batch they come from. A durable
    /// channel stores a checkpoint with plugin state changes even without events.
    pub async fn put_checkpointed(
        &self,
        events: Vec<Event>,
        checkpoint: Option<&Checkpoint>,
    ) -> Result<(), Closed> {
        let state_only = checkpoint.is_some_and(|c| !c.state.is_empty()) && self.is_durable();
        if events.is_empty() && !state_only {
            return Ok(());
        }
        self.0.put(events, checkpoint).await
    }

    /// See [`ChannelBackend::room`].
    pub async fn room(&self, events: usize, bytes: usize) {
        self.0.room(events, bytes).await
    }

    /// See [`ChannelBackend::checkpoints`].
    pub fn checkpoints(&self, source: &str) -> Vec<Checkpoint> {
        self.0.checkpoints(source)
    }

    /// See [`ChannelBackend::state_commits`].
    pub fn state_commits(&self) -> Vec<Arc<StateCommit>> {
        self.0.state_commits()
    }

    pub async fn take(&self, limits: TakeLimits, timeout: Duration) -> Take {
        self.0.take(limits, timeout).await
    }

    pub fn close(&self) {
        self.0.close()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn is_durable(&self) -> bool {
        self.0.is_durable()
    }
}

/// How a channel finishes a take transaction.
pub trait TakeTxn: Send {
    /// The events are delivered: free their capacity (for a durable channel, record
    /// them as consumed).
    fn commit(self: Box<Self>);
    /// The events were not delivered: give them back, in order, at the front.
    fn rollback(self: Box<Self>, events: Vec<Event>);
}

/// An open take transaction. Commit it once its events are delivered; roll it back (or
/// drop it) to return them to the front of the channel.
#[must_use = "commit or roll back the transaction"]
pub struct Take {
    events: Vec<Event>,
    txn: Option<Box<dyn TakeTxn>>,
}

impl Take {
    pub fn new(events: Vec<Event>, txn: Box<dyn TakeTxn>) -> Self {
        Self {
            events,
            txn: Some(txn),
        }
    }

    /// The transaction of a closed, drained channel.
    pub fn empty() -> Self {
        Self {
            events: Vec::new(),
            txn: None,
        }
    }

    pub fn events(&self) -> &[Event] {
        &self.events
    }

    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    pub fn commit(mut self) {
        if let Some(txn) = self.txn.take() {
            txn.commit();
        }
    }

    pub fn rollback(mut self) {
        self.restore();
    }

    fn restore(&mut self) {
        if let Some(txn) = self.txn.take() {
            txn.rollback(std::mem::take(&mut self.events));
        }
    }
}

impl Drop for Take {
    fn drop(&mut self) {
        self.restore();
    }
}

/// What a take found when it looked at its channel.
pub(crate) enum Looked {
    /// A batch (or, for a closed and drained channel, the empty take).
    Ready(Take),
    /// Nothing to take.
    Empty,
    /// Some events, fewer than the take wants: worth waiting for more.
    Filling,
}

/// The wait every channel's take shares: look; while the batch is not ready, wait for
/// the next put — until `timeout` after events were first seen (then `look` is told the
/// wait expired and hands out a partial batch), and without a deadline while there is
/// nothing at all (another taker may have got there first: waiting out an old deadline
/// would spin).
pub(crate) async fn take_when_ready(
    not_empty: &Notify,
    timeout: Duration,
    mut look: impl FnMut(bool) -> Looked,
) -> Take {
    let mut deadline: Option<Instant> = None;
    loop {
        // Made before looking: a put between the look and the wait still wakes it.
        let more = not_empty.notified();
        let expired = deadline.is_some_and(|d| Instant::now() >= d);
        match look(expired) {
            Looked::Ready(take) => return take,
            Looked::Empty => deadline = None,
            Looked::Filling => {
                deadline.get_or_insert_with(|| Instant::now() + timeout);
            }
        }
        match deadline {
            Some(d) => {
                let _ = tokio::time::timeout_at(d, more).await;
            }
            None => more.await,
        }
    }
}
