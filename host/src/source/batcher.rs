//! [`Batcher`]: lines → events → batches of `batch_size`, or smaller after
//! `batch_timeout` (Flume's batchSize / batchTimeout on the source side).

use crate::config::BatchSpec;
use crate::event::Event;
use crate::internal_events::{EventsLost, LineTruncated, LinesRead, SourceCounters, SourceError};
use crate::pipeline::WorkerHandle;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub struct Batcher {
    source: Arc<str>,
    event_name: Arc<str>,
    batch: BatchSpec,
    max_line_bytes: usize,
    events: Vec<Event>,
    bytes: u64,
    due: Option<Instant>,
    worker: WorkerHandle,
    /// Cancelled when the agent stops without draining: a hand-over waiting for a busy
    /// worker gives up then.
    hard_stop: CancellationToken,
    counters: Arc<SourceCounters>,
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
            hard_stop,
            counters: Arc::new(SourceCounters::new(source)),
        }
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
            hard_stop: self.hard_stop.clone(),
            counters: self.counters.clone(),
        }
    }

    pub fn max_line_bytes(&self) -> usize {
        self.max_line_bytes
    }

    /// Adds one line (without its line end) as an event named after the source.
    pub async fn push(&mut self, line: Vec<u8>) {
        let name = self.event_name.clone();
        self.push_named(name, line).await;
    }

    /// Adds one line as an event with the given name.
    pub async fn push_named(&mut self, name: Arc<str>, line: Vec<u8>) {
        if self.events.is_empty() {
            self.due = Some(Instant::now() + self.batch.timeout);
        }
        self.bytes += line.len() as u64;
        self.events.push(Event::from_body(name, line));
        if self.events.len() >= self.batch.size {
            self.flush().await;
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
            sent = self.worker.send(events) => sent.map_err(|_| "the pipeline worker is gone"),
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

    /// Resolves when the buffered batch is due (never, when nothing is buffered).
    pub async fn due(&self) {
        match self.due {
            Some(at) => tokio::time::sleep_until(at).await,
            None => std::future::pending().await,
        }
    }
}
