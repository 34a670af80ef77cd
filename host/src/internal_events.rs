//! Typed internal events: one struct per observable thing that happens in the agent.
//! `emit` bumps the component's counters and writes one structured log record, so logs
//! and metrics never disagree. Emitted per batch, never per event.

use crate::config::OnError;
use crate::metrics::{Counter, Registry};
use std::time::Duration;

/// The agent-wide count of accepted events that were not delivered (`agent`
/// `events_lost`): only a forced stop can make it non-zero.
pub fn lost_counter() -> Counter {
    Registry::global().counter("agent", "events_lost")
}

/// Events were given up at a forced stop.
pub struct EventsLost<'a> {
    pub count: u64,
    pub at: &'a str,
    pub reason: &'a dyn std::fmt::Display,
}

impl EventsLost<'_> {
    pub fn emit(self) {
        lost_counter().add(self.count);
        tracing::error!(
            events = self.count,
            at = self.at,
            "events lost: {}",
            self.reason
        );
    }
}

/// A source's counters (`source.<name>`).
pub struct SourceCounters {
    pub events: Counter,
    pub bytes: Counter,
    pub errors: Counter,
    pub truncated: Counter,
}

impl SourceCounters {
    pub fn new(source: &str) -> Self {
        let c = format!("source.{source}");
        let r = Registry::global();
        Self {
            events: r.counter(&c, "events_out"),
            bytes: r.counter(&c, "bytes_in"),
            errors: r.counter(&c, "errors"),
            truncated: r.counter(&c, "lines_truncated"),
        }
    }
}

/// A plugin step's counters (`step.<source>.<plugin>`).
pub struct StepCounters {
    pub events_in: Counter,
    pub events_out: Counter,
    pub dropped: Counter,
    pub failed: Counter,
    pub call_failures: Counter,
}

impl StepCounters {
    pub fn new(component: &str) -> Self {
        let r = Registry::global();
        Self {
            events_in: r.counter(component, "events_in"),
            events_out: r.counter(component, "events_out"),
            dropped: r.counter(component, "events_dropped"),
            failed: r.counter(component, "events_failed"),
            call_failures: r.counter(component, "call_failures"),
        }
    }
}

/// A sink's counters (`sink.<name>`).
pub struct SinkCounters {
    pub events: Counter,
    pub bytes: Counter,
    pub errors: Counter,
}

impl SinkCounters {
    pub fn new(sink: &str) -> Self {
        let c = format!("sink.{sink}");
        let r = Registry::global();
        Self {
            events: r.counter(&c, "events_out"),
            bytes: r.counter(&c, "bytes_out"),
            errors: r.counter(&c, "write_errors"),
        }
    }
}

/// A source read a batch of lines.
pub struct LinesRead {
    pub count: u64,
    pub bytes: u64,
}

impl LinesRead {
    pub fn emit(self, c: &SourceCounters) {
        c.events.add(self.count);
        c.bytes.add(self.bytes);
        tracing::trace!(count = self.count, bytes = self.bytes, "lines read");
    }
}

/// A line longer than `max_line_bytes` was cut.
pub struct LineTruncated<'a> {
    pub source: &'a str,
    pub limit: usize,
}

impl LineTruncated<'_> {
    pub fn emit(self, c: &SourceCounters) {
        c.truncated.add(1);
        tracing::warn!(
            source = self.source,
            limit = self.limit,
            "line longer than max_line_bytes truncated"
        );
    }
}

/// A source hit an error it will recover from (a command died, a file vanished).
pub struct SourceError<'a> {
    pub source: &'a str,
    pub error: &'a dyn std::fmt::Display,
    pub retry_in: Option<Duration>,
}

impl SourceError<'_> {
    pub fn emit(self, c: &SourceCounters) {
        c.errors.add(1);
        match self.retry_in {
            Some(d) => tracing::warn!(
                source = self.source,
                retry_in_ms = d.as_millis() as u64,
                "{}",
                self.error
            ),
            None => tracing::warn!(source = self.source, "{}", self.error),
        }
    }
}

/// A plugin step handled a batch.
pub struct StepProcessed {
    pub events_in: u64,
    pub events_out: u64,
    pub dropped: u64,
}

impl StepProcessed {
    pub fn emit(self, c: &StepCounters) {
        c.events_in.add(self.events_in);
        c.events_out.add(self.events_out);
        c.dropped.add(self.dropped);
    }
}

/// A plugin could not handle some events of a batch (parse errors, malformed patches).
pub struct EventsFailed<'a> {
    pub step: &'a str,
    pub count: u64,
    pub first_error: &'a str,
    pub action: OnError,
}

impl EventsFailed<'_> {
    pub fn emit(self, c: &StepCounters) {
        c.failed.add(self.count);
        tracing::debug!(
            step = self.step,
            count = self.count,
            action = ?self.action,
            first_error = self.first_error,
            "events failed in plugin"
        );
    }
}

/// A whole plugin call failed (trap, deadline, malformed output); the instance is
/// replaced and the batch handled by the step's `on_error`.
pub struct PluginCallFailed<'a> {
    pub step: &'a str,
    pub events: u64,
    pub error: &'a dyn std::fmt::Display,
}

impl PluginCallFailed<'_> {
    pub fn emit(self, c: &StepCounters) {
        c.call_failures.add(1);
        tracing::error!(
            step = self.step,
            events = self.events,
            "{}; the instance will be replaced",
            self.error
        );
    }
}

/// A sink delivered a batch and committed it.
pub struct BatchDelivered {
    pub events: u64,
    pub bytes: u64,
}

impl BatchDelivered {
    pub fn emit(self, c: &SinkCounters) {
        c.events.add(self.events);
        c.bytes.add(self.bytes);
        tracing::trace!(events = self.events, bytes = self.bytes, "batch delivered");
    }
}

/// A sink failed to write a batch; the batch stays taken (uncommitted) and is retried.
pub struct SinkWriteFailed<'a> {
    pub sink: &'a str,
    pub error: &'a dyn std::fmt::Display,
    pub attempt: u32,
    pub retry_in: Duration,
}

impl SinkWriteFailed<'_> {
    pub fn emit(self, c: &SinkCounters) {
        c.errors.add(1);
        tracing::warn!(
            sink = self.sink,
            attempt = self.attempt,
            retry_in_ms = self.retry_in.as_millis() as u64,
            "write failed; the batch stays in its transaction and is retried: {}",
            self.error
        );
    }
}
