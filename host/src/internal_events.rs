//! Typed internal events: one struct per observable thing that happens in the agent.
//! `emit` bumps the component's counters and writes one structured log record, so logs
//! and metrics never disagree. Emitted per batch, never per event.

use crate::channel::FullPolicy;
use crate::config::OnError;
use crate::metrics::{Counter, Registry};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Lets a log record through at most once per `every_secs` (counters still count every
/// occurrence; the summary shows them).
pub struct LogLimiter {
    last: AtomicU64,
    every_secs: u64,
    /// Records held back since the last one let through ([`LogLimiter::pass`]).
    held_back: AtomicU64,
}

impl LogLimiter {
    pub const fn new(every_secs: u64) -> Self {
        Self {
            last: AtomicU64::new(0),
            every_secs,
            held_back: AtomicU64::new(0),
        }
    }

    /// Like [`allow`](Self::allow), counting what it holds back: `Some(n)` lets a record
    /// through, `n` the records held back since the previous one (for the record to say).
    pub fn pass(&self) -> Option<u64> {
        if self.allow() {
            Some(self.held_back.swap(0, Ordering::Relaxed))
        } else {
            self.held_back.fetch_add(1, Ordering::Relaxed);
            None
        }
    }

    pub fn allow(&self) -> bool {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let last = self.last.load(Ordering::Relaxed);
        now >= last + self.every_secs
            && self
                .last
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }
}

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

/// A listening source closed a connection at once: over a limit.
pub struct ConnectionRefused<'a> {
    pub source: &'a str,
    /// The source type (`tcp`, `http`, …).
    pub kind: &'static str,
    pub peer: std::net::SocketAddr,
    pub reason: &'a str,
}

/// What [`ConnectionRefused`] counts (`source.<name> connections_refused`), and its log
/// limit: one record every 10 s at most, with the number held back since the last.
pub struct RefusalCounters {
    refused: Counter,
    log: LogLimiter,
}

impl ConnectionRefused<'_> {
    pub fn counters(source: &str) -> RefusalCounters {
        RefusalCounters {
            refused: Registry::global().counter(&format!("source.{source}"), "connections_refused"),
            log: LogLimiter::new(10),
        }
    }

    pub fn emit(self, counters: &RefusalCounters) {
        counters.refused.add(1);
        if let Some(held_back) = counters.log.pass() {
            tracing::warn!(
                source = self.source,
                peer = %self.peer,
                refused_since_last_report = held_back,
                refused_in_all = counters.refused.get(),
                "{}: refused a connection: {}",
                self.kind,
                self.reason
            );
        }
    }
}

/// The kernel dropped datagrams a UDP source's receive buffer had no room for (found
/// with the next datagram received).
pub struct KernelDrops<'a> {
    pub source: &'a str,
    pub count: u64,
    pub receive_buffer_bytes: usize,
}

/// What [`KernelDrops`] counts (`source.<name> dropped_kernel`) and its log limit.
pub struct KernelDropCounters {
    dropped: Counter,
    log: LogLimiter,
}

impl KernelDrops<'_> {
    pub fn counters(source: &str) -> KernelDropCounters {
        KernelDropCounters {
            dropped: Registry::global().counter(&format!("source.{source}"), "dropped_kernel"),
            log: LogLimiter::new(10),
        }
    }

    pub fn emit(self, counters: &KernelDropCounters) {
        counters.dropped.add(self.count);
        if counters.log.pass().is_some() {
            tracing::warn!(
                source = self.source,
                dropped_in_all = counters.dropped.get(),
                receive_buffer_bytes = self.receive_buffer_bytes,
                "syslog: the kernel dropped {} datagrams: the socket's receive buffer was full (raise receive_buffer_bytes, and net.core.rmem_max)",
                self.count
            );
        }
    }
}

/// A source's counters (`source.<name>`).
pub struct SourceCounters {
    pub events: Counter,
    pub bytes: Counter,
    pub errors: Counter,
    pub truncated: Counter,
    /// Bytes of followed files truncated away before they were read, with no copy found.
    pub lost_on_truncate: Counter,
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
            lost_on_truncate: r.counter(&c, "bytes_lost_on_truncate"),
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
    /// Times the step's circuit breaker opened.
    pub breaker_opened: Counter,
    /// Failed calls are logged at most every 5 s (a poisoned batch is split and retried,
    /// failing several times).
    pub call_failure_log: LogLimiter,
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
            breaker_opened: r.counter(component, "breaker_opened"),
            call_failure_log: LogLimiter::new(5),
        }
    }
}

/// A sink's counters (`sink.<name>`).
pub struct SinkCounters {
    pub events: Counter,
    pub bytes: Counter,
    pub requests: Counter,
    pub errors: Counter,
    pub rejected: Counter,
    pub dead_lettered: Counter,
    pub log_limit: LogLimiter,
}

impl SinkCounters {
    pub fn new(sink: &str) -> Self {
        let c = format!("sink.{sink}");
        let r = Registry::global();
        Self {
            events: r.counter(&c, "events_out"),
            bytes: r.counter(&c, "bytes_out"),
            requests: r.counter(&c, "batches_out"),
            errors: r.counter(&c, "write_errors"),
            rejected: r.counter(&c, "events_rejected"),
            dead_lettered: r.counter(&c, "events_dead_lettered"),
            log_limit: LogLimiter::new(10),
        }
    }
}

/// A channel's counters (`channel.<name>`).
pub struct ChannelCounters {
    pub put: Counter,
    pub committed: Counter,
    pub rolled_back: Counter,
    pub dropped_full: Counter,
    pub log_limit: LogLimiter,
}

impl ChannelCounters {
    pub fn new(channel: &str) -> Self {
        let c = format!("channel.{channel}");
        let r = Registry::global();
        Self {
            put: r.counter(&c, "events_put"),
            committed: r.counter(&c, "events_committed"),
            rolled_back: r.counter(&c, "events_rolled_back"),
            dropped_full: r.counter(&c, "events_dropped_full"),
            log_limit: LogLimiter::new(10),
        }
    }
}

/// A full channel dropped events (its `full_policy` is a drop policy).
pub struct EventsDroppedFull<'a> {
    pub channel: &'a str,
    pub count: u64,
    pub policy: FullPolicy,
}

impl EventsDroppedFull<'_> {
    pub fn emit(self, c: &ChannelCounters) {
        c.dropped_full.add(self.count);
        if c.log_limit.allow() {
            tracing::warn!(
                channel = self.channel,
                events = self.count,
                total = c.dropped_full.get(),
                policy = self.policy.as_str(),
                "channel full: events dropped (logged at most every 10 s; the total is in the summary)"
            );
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

/// A followed file was truncated before all of it was read, and no copy of it (a
/// copytruncate's) was found: those bytes are lost.
pub struct LostOnTruncate<'a> {
    pub source: &'a str,
    pub path: &'a std::path::Path,
    pub bytes: u64,
}

impl LostOnTruncate<'_> {
    pub fn emit(self, c: &SourceCounters) {
        c.lost_on_truncate.add(self.bytes);
        tracing::warn!(
            source = self.source,
            bytes = self.bytes,
            total = c.lost_on_truncate.get(),
            "{} was truncated with {} bytes not read yet, and no copy of it was found: they are lost (with logrotate's copytruncate, let a pattern match the copy, as `app.log.1`)",
            self.path.display(),
            self.bytes
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
/// replaced and the batch split to find the events that fail it.
pub struct PluginCallFailed<'a> {
    pub step: &'a str,
    pub events: u64,
    pub error: &'a dyn std::fmt::Display,
}

impl PluginCallFailed<'_> {
    pub fn emit(self, c: &StepCounters) {
        c.call_failures.add(1);
        if c.call_failure_log.allow() {
            tracing::error!(
                step = self.step,
                events = self.events,
                "{}; the instance will be replaced and the events retried in smaller batches \
                 (`call_failures` counts every failed call)",
                self.error
            );
        }
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

/// The destination refused a batch for good (it will never accept it): the batch goes
/// to the sink's dead-letter channel, or is dropped and counted as lost. Logged at most
/// every 10 s per sink (a closed pipe refuses every batch); the counters count all.
pub struct BatchRejected<'a> {
    pub sink: &'a str,
    pub events: u64,
    pub error: &'a dyn std::fmt::Display,
    pub dead_letter: Option<&'a str>,
}

impl BatchRejected<'_> {
    pub fn emit(self, c: &SinkCounters) {
        c.rejected.add(self.events);
        match self.dead_letter {
            Some(_) => c.dead_lettered.add(self.events),
            None => lost_counter().add(self.events),
        }
        if !c.log_limit.allow() {
            return;
        }
        match self.dead_letter {
            Some(channel) => tracing::error!(
                sink = self.sink,
                events = self.events,
                rejected_total = c.rejected.get(),
                dead_letter = channel,
                "batch refused for good; sent to the dead-letter channel: {}",
                self.error
            ),
            None => tracing::error!(
                sink = self.sink,
                events = self.events,
                rejected_total = c.rejected.get(),
                "batch refused for good; dropped and counted as lost (set `dead_letter` on the sink to keep such batches): {}",
                self.error
            ),
        }
    }
}

/// A `spooldir` source's own counters (`source.<name>`): files put away after every
/// line of them was in the channels, and files that changed while being read.
pub struct SpoolCounters {
    pub files_done: Counter,
    pub changed_files: Counter,
    pub symlinks_skipped: Counter,
}

impl SpoolCounters {
    pub fn new(source: &str) -> Self {
        let c = format!("source.{source}");
        let r = Registry::global();
        Self {
            files_done: r.counter(&c, "files_done"),
            changed_files: r.counter(&c, "changed_files"),
            symlinks_skipped: r.counter(&c, "symlinks_skipped"),
        }
    }
}

/// A spooled file was read whole, every batch of it acknowledged, then renamed or
/// deleted (`outcome` says which).
pub struct SpoolFileDone<'a> {
    pub source: &'a str,
    pub path: &'a std::path::Path,
    pub outcome: &'a dyn std::fmt::Display,
}

impl SpoolFileDone<'_> {
    pub fn emit(self, c: &SpoolCounters) {
        c.files_done.add(1);
        tracing::info!(
            source = self.source,
            "{}: done, {}",
            self.path.display(),
            self.outcome
        );
    }
}

/// A symbolic link in the spool directory was skipped (`follow_symlinks` is off).
pub struct SpoolSymlinkSkipped<'a> {
    pub source: &'a str,
    pub path: &'a std::path::Path,
}

impl SpoolSymlinkSkipped<'_> {
    pub fn emit(self, c: &SpoolCounters) {
        c.symlinks_skipped.add(1);
        tracing::warn!(
            source = self.source,
            "{} is a symbolic link; skipped (set `follow_symlinks = true` to read the files links point to)",
            self.path.display()
        );
    }
}

/// A spooled file changed while it was read (spooled files must not change): what was
/// read of it is delivered, the rest is not read.
pub struct SpoolFileChanged<'a> {
    pub source: &'a str,
    pub path: &'a std::path::Path,
    pub change: &'a dyn std::fmt::Display,
    /// What was done with it.
    pub action: &'a dyn std::fmt::Display,
}

impl SpoolFileChanged<'_> {
    pub fn emit(self, c: &SpoolCounters) {
        c.changed_files.add(1);
        tracing::error!(
            source = self.source,
            "{} changed while being read ({}): {}",
            self.path.display(),
            self.change,
            self.action
        );
    }
}
