//! [`Batcher`]: lines → events → batches of `batch_size` events or `batch_bytes` bytes,
//! or smaller after `batch_timeout` (Flume's batchSize / batchTimeout on the source side).
//!
//! Sources that checkpoint (taildir) mark each line with where it ends in its file; a
//! flushed batch carries the last mark per file in an [`Ack`], which the pipeline worker
//! sends back once every event of the batch is in its channels (durably, for a file
//! channel). Only then may the source persist those positions.

use super::checkpoint::{Checkpoint, Mark};
use crate::config::BatchSpec;
use crate::event::{Event, Tags};
use crate::internal_events::{
    EventsLost, LineTruncated, LinesRead, LostOnTruncate, SourceCounters, SourceError,
};
use crate::pipeline::WorkerHandle;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The positions a batch covers, sent back to its source once the batch is safely in
/// its channels. Dropped unsent when the batch was not (lost at a forced stop): the
/// lines are then read again after a restart.
#[derive(Debug)]
pub struct Ack {
    marks: Vec<Mark>,
    /// The batch's number in its source (see [`Checkpoint::seq`]).
    seq: u64,
    source: Arc<str>,
    to: mpsc::UnboundedSender<Acked>,
}

impl Ack {
    /// The positions to store with the batch in a durable channel.
    pub fn checkpoint(&self) -> Checkpoint {
        Checkpoint {
            source: self.source.clone(),
            seq: self.seq,
            state: Vec::new(),
            positions: self.marks.iter().map(|m| (m.file, m.offset)).collect(),
        }
    }

    pub fn done(self) {
        let _ = self.to.send(Acked {
            seq: self.seq,
            marks: self.marks,
        });
    }
}

/// A batch that is safely in its channels: its number and last mark per file.
#[derive(Debug)]
pub struct Acked {
    pub seq: u64,
    pub marks: Vec<Mark>,
}

/// What a source hands to its pipeline worker.
#[derive(Debug)]
pub struct Batch {
    pub events: Vec<Event>,
    pub ack: Option<Ack>,
}

pub struct Batcher {
    source: Arc<str>,
    event_name: Arc<str>,
    batch: BatchSpec,
    max_line_bytes: usize,
    events: Vec<Event>,
    bytes: u64,
    due: Option<Instant>,
    worker: WorkerHandle,
    /// Marks of the buffered batch (last per file), and where acks go.
    marks: Vec<Mark>,
    acks: Option<mpsc::UnboundedSender<Acked>>,
    /// Whether every batch is acknowledged, not only those with marks.
    ack_every_batch: bool,
    /// The number of the next acknowledged batch.
    next_seq: u64,
    /// Cancelled when the agent stops without draining: a hand-over waiting for a busy
    /// worker gives up then.
    hard_stop: CancellationToken,
    counters: Arc<SourceCounters>,
    /// The source's `add_tags` (shared: adding one to an event allocates nothing).
    add_tags: Arc<[(Arc<str>, Arc<str>)]>,
    /// The channels the source's worker puts into (for [`Batcher::room_for`]).
    channels: Arc<[crate::channel::Channel]>,
}

impl Batcher {
    pub fn new(
        source: &str,
        event_name: Arc<str>,
        batch: BatchSpec,
        max_line_bytes: usize,
        worker: WorkerHandle,
        hard_stop: CancellationToken,
    ) -> Self {
        Self {
            source: Arc::from(source),
            event_name,
            batch,
            max_line_bytes,
            events: Vec::new(),
            bytes: 0,
            due: None,
            worker,
            marks: Vec::new(),
            acks: None,
            ack_every_batch: false,
            next_seq: 0,
            hard_stop,
            counters: Arc::new(SourceCounters::new(source)),
            add_tags: Arc::new([]),
            channels: Arc::new([]),
        }
    }

    /// Sets the channels the source's worker puts into.
    pub fn with_channels(mut self, channels: &[crate::channel::Channel]) -> Self {
        self.channels = channels.into();
        self
    }

    /// The channels the source's worker puts into: a source that must answer its
    /// client within a bounded time asks them for [`room`](crate::channel::Channel::room)
    /// before it hands a batch over.
    pub fn channels(&self) -> Arc<[crate::channel::Channel]> {
        self.channels.clone()
    }

    /// Sets the tags every event gets unless it has them (the source's `add_tags`).
    pub fn with_tags(mut self, tags: Tags) -> Self {
        self.add_tags = tags
            .iter()
            .map(|(k, v)| (Arc::from(k), Arc::from(v)))
            .collect();
        self
    }

    /// Another batcher feeding the same worker (for sources with concurrent readers).
    pub fn clone_for_task(&self) -> Self {
        Self {
            source: self.source.clone(),
            event_name: self.event_name.clone(),
            batch: self.batch,
            max_line_bytes: self.max_line_bytes,
            events: Vec::new(),
            bytes: 0,
            due: None,
            worker: self.worker.clone(),
            marks: Vec::new(),
            acks: None,
            ack_every_batch: false,
            next_seq: 0,
            hard_stop: self.hard_stop.clone(),
            counters: self.counters.clone(),
            add_tags: self.add_tags.clone(),
            channels: self.channels.clone(),
        }
    }

    /// The name events of this source get (its `name`, else the source's own).
    pub fn event_name(&self) -> Arc<str> {
        self.event_name.clone()
    }

    pub fn max_line_bytes(&self) -> usize {
        self.max_line_bytes
    }

    /// Turns on acknowledgements: every flushed batch with marks is acknowledged on the
    /// returned receiver, in order, once it is in its channels. Batches are numbered
    /// from `after + 1` (the last number a previous run stored, if any).
    pub fn acknowledged(&mut self, after: Option<u64>) -> mpsc::UnboundedReceiver<Acked> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.acks = Some(tx);
        self.next_seq = after.map_or(0, |s| s.saturating_add(1));
        rx
    }

    /// Turns on acknowledgements of every flushed batch, marks or not (for sources whose
    /// peer redelivers what it was not told is safe: an MQTT broker). Batches are
    /// numbered from 0; [`batch_seq`](Self::batch_seq) tells which batch an event
    /// pushed now will be in.
    pub fn acknowledged_batches(&mut self) -> mpsc::UnboundedReceiver<Acked> {
        self.ack_every_batch = true;
        self.acknowledged(None)
    }

    /// The number the buffered batch will have when it is flushed: an event pushed now
    /// is safe in its channels once that batch is acknowledged.
    pub fn batch_seq(&self) -> u64 {
        self.next_seq
    }

    /// Adds one line of a file that ends at `mark`, with the file's tags.
    pub async fn push_marked(&mut self, line: Vec<u8>, mark: Mark, tags: &Tags) {
        // The newest mark of the key wins, file and all: a key's file can change (its
        // fingerprint grows; a copytruncate's copy continues the original's key).
        match self.marks.iter_mut().find(|m| m.key == mark.key) {
            Some(m) => *m = mark,
            None => self.marks.push(mark),
        }
        let mut event = Event::from_body(self.event_name.clone(), line);
        event.tags = tags.clone();
        self.push_event(event).await;
    }

    /// Adds one line (without its line end) as an event named after the source.
    pub async fn push(&mut self, line: Vec<u8>) {
        let name = self.event_name.clone();
        self.push_named(name, line).await;
    }

    /// Adds one line as an event with the given name.
    pub async fn push_named(&mut self, name: Arc<str>, line: Vec<u8>) {
        self.push_event(Event::from_body(name, line)).await;
    }

    /// Adds one event made by the source.
    pub async fn push_event(&mut self, mut event: Event) {
        self.tag(&mut event);
        if self.events.is_empty() {
            self.due = Some(Instant::now() + self.batch.timeout);
        }
        self.bytes += event.body.len() as u64;
        self.events.push(event);
        if self.events.len() >= self.batch.size || self.bytes >= self.batch.bytes as u64 {
            self.flush().await;
        }
    }

    /// Adds the source's `add_tags` the event lacks.
    fn tag(&self, event: &mut Event) {
        for (key, value) in self.add_tags.iter() {
            if event.tags.get(key).is_none() {
                event.tags.set(key.clone(), value.clone());
            }
        }
    }

    /// Records a line cut at `max_line_bytes`.
    pub fn truncated(&self) {
        LineTruncated {
            source: &self.source,
            limit: self.max_line_bytes,
        }
        .emit(&self.counters);
    }

    /// Records bytes of a followed file truncated away unread (no copy found).
    pub fn lost_on_truncate(&self, path: &std::path::Path, bytes: u64) {
        LostOnTruncate {
            source: &self.source,
            path,
            bytes,
        }
        .emit(&self.counters);
    }

    /// Records a recoverable source error.
    pub fn error(&self, error: &dyn std::fmt::Display, retry_in: Option<Duration>) {
        SourceError {
            source: &self.source,
            error,
            retry_in,
        }
        .emit(&self.counters);
    }

    /// Sends what is buffered to the worker (waiting if the worker is busy).
    pub async fn flush(&mut self) {
        self.due = None;
        if self.events.is_empty() {
            return;
        }
        // Marks come only with lines: a batch with events carries its positions.
        let ack = match &self.acks {
            Some(to) if self.ack_every_batch || !self.marks.is_empty() => {
                self.next_seq += 1;
                Some(Ack {
                    marks: std::mem::take(&mut self.marks),
                    seq: self.next_seq - 1,
                    source: self.source.clone(),
                    to: to.clone(),
                })
            }
            _ => None,
        };
        // The next batch will likely be as large as this one: size it so, and no larger
        // (a generator with thousands of slow apps holds thousands of small batches).
        let next = Vec::with_capacity(self.events.len());
        let events = std::mem::replace(&mut self.events, next);
        LinesRead {
            count: events.len() as u64,
            bytes: std::mem::take(&mut self.bytes),
        }
        .emit(&self.counters);
        let n = events.len() as u64;
        let outcome = tokio::select! {
            sent = self.worker.send(Batch { events, ack }) => sent.map_err(|_| "the pipeline worker is gone"),
            _ = self.hard_stop.cancelled() => Err("the agent stopped before the pipeline took the batch"),
        };
        if let Err(reason) = outcome {
            EventsLost {
                count: n,
                at: &self.source,
                reason: &reason,
            }
            .emit();
        }
    }

    /// Hands a whole batch of events (a `forward` source's) to the worker, apart from the
    /// line batch, and waits until the source's channels hold it: true; false when the
    /// agent stopped first (the events were not taken, or not all put).
    pub async fn send_acknowledged(&mut self, mut events: Vec<Event>) -> bool {
        events.iter_mut().for_each(|e| self.tag(e));
        let (to, mut acked) = mpsc::unbounded_channel();
        let ack = Ack {
            marks: Vec::new(),
            seq: self.next_seq,
            source: self.source.clone(),
            to,
        };
        self.next_seq += 1;
        LinesRead {
            count: events.len() as u64,
            bytes: events.iter().map(|e| e.body.len() as u64).sum(),
        }
        .emit(&self.counters);
        let sent = tokio::select! {
            sent = self.worker.send(Batch { events, ack: Some(ack) }) => sent.is_ok(),
            _ = self.hard_stop.cancelled() => false,
        };
        sent && acked.recv().await.is_some()
    }

    /// Like [`send_acknowledged`](Self::send_acknowledged), but only when the worker can
    /// take the batch now: `Err(events)` when its queue is full (the channels are
    /// full, or the plugins busy: the caller tells its client to come back later).
    /// `Ok(future)` resolves to whether the source's channels hold the batch.
    pub fn try_send_acknowledged(
        &mut self,
        mut events: Vec<Event>,
    ) -> Result<impl std::future::Future<Output = bool> + use<>, Vec<Event>> {
        events.iter_mut().for_each(|e| self.tag(e));
        let (to, mut acked) = mpsc::unbounded_channel();
        let ack = Ack {
            marks: Vec::new(),
            seq: self.next_seq,
            source: self.source.clone(),
            to,
        };
        let (count, bytes) = (
            events.len() as u64,
            events.iter().map(|e| e.body.len() as u64).sum(),
        );
        match self.worker.try_send(Batch {
            events,
            ack: Some(ack),
        }) {
            Ok(()) => {
                self.next_seq += 1;
                LinesRead { count, bytes }.emit(&self.counters);
                Ok(async move { acked.recv().await.is_some() })
            }
            Err(
                mpsc::error::TrySendError::Full(batch) | mpsc::error::TrySendError::Closed(batch),
            ) => Err(batch.events),
        }
    }

    /// Ends an acknowledging source: flushes what is buffered, then hands each
    /// acknowledgement to `on_ack` until every batch handed over is acknowledged, or
    /// `wait` has passed (logged: those batches' lines are read again after a restart).
    pub async fn finish(
        mut self,
        acks: &mut mpsc::UnboundedReceiver<Acked>,
        wait: Duration,
        mut on_ack: impl FnMut(Acked),
    ) {
        self.flush().await;
        let source = self.source.clone();
        // The receiver ends once the batcher and every pending ack are gone.
        drop(self);
        let deadline = tokio::time::sleep(wait);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                acked = acks.recv() => match acked {
                    Some(acked) => on_ack(acked),
                    None => break,
                },
                _ = &mut deadline => {
                    tracing::warn!(
                        %source,
                        "not all batches were acknowledged within {wait:?}; their lines will be read again after a restart"
                    );
                    break;
                }
            }
        }
    }

    /// Resolves when the buffered batch is due (never, when nothing is buffered).
    pub async fn due(&self) {
        match self.due {
            Some(at) => tokio::time::sleep_until(at).await,
            None => std::future::pending().await,
        }
    }
}
