//! The `file` channel: durable. Every put transaction is one record of a write-ahead log
//! on disk ([`wal`]): a batch in the flat encoding ([`codec`]) with a checksum, made
//! durable per the `fsync` policy before the put returns. Sinks read records back,
//! decode them, and take events in transactions; once every event of a record is
//! committed, the WAL's ledger moves past it and whole segments are deleted. After a
//! crash the agent reopens the log, cuts a torn tail, skips corrupt records (counted and
//! reported) and delivers everything else that was not committed.
//!
//! Events are numbered in put order (`seq`). A take hands out a contiguous run of them;
//! commits may come back out of order (several sinks, several batches in flight), so the
//! channel acknowledges records only up to the first event still outstanding.

pub mod codec;
pub mod wal;

use super::{
    Capacity, Channel, ChannelBackend, ChannelConfig, Closed, FullPolicy, Looked, Take, TakeLimits,
    TakeTxn, take_when_ready,
};
use crate::config::Problems;
use crate::event::Event;
use crate::internal_events::{ChannelCounters, EventsDroppedFull, LogLimiter};
use crate::metrics::{Counter, Registry};
use crate::plugin::state::StateCommit;
use crate::source::checkpoint::{Checkpoint, Newest};
use futures_util::future::BoxFuture;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;
use tokio::sync::Notify;
use wal::{Cipher, RecordId, Wal, WalOptions, WalReader};

/// When a put is made durable (fsync of the log).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FsyncPolicy {
    /// Before every put returns: survives a power cut with nothing acknowledged lost.
    #[default]
    Batch,
    /// Every `fsync_interval_ms`: survives a crash of the agent (the kernel still has
    /// the data); a power cut loses at most the last interval.
    Interval,
    /// Never (the kernel writes back when it likes): survives a crash of the agent
    /// only. For tests and benchmarks.
    Never,
}

/// Where the key for encryption at rest comes from.
#[derive(PartialEq, Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncryptionConfig {
    /// A file holding the 32-byte key (raw, or 64 hex digits).
    pub key_file: Option<String>,
    /// An environment variable holding the key as 64 hex digits.
    pub key_env: Option<String>,
}

impl EncryptionConfig {
    fn cipher(&self) -> anyhow::Result<Cipher> {
        match (&self.key_file, &self.key_env) {
            (Some(file), None) => Ok(Cipher::from_key_file(Path::new(file))?),
            (None, Some(var)) => {
                let value = std::env::var(var).map_err(|_| {
                    anyhow::anyhow!("environment variable `{var}` (encryption.key_env) is not set")
                })?;
                Ok(Cipher::from_hex_or_raw(value.trim().as_bytes())?)
            }
            _ => anyhow::bail!("set exactly one of encryption.key_file and encryption.key_env"),
        }
    }
}

/// Default `capacity` (events) of a file channel.
pub const DEFAULT_CAPACITY: usize = 1_000_000;
/// Default `capacity_bytes` (encoded bytes held on disk) of a file channel.
pub const DEFAULT_CAPACITY_BYTES: u64 = 1 << 30;

#[derive(PartialEq, Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileChannelConfig {
    /// The log's directory; default `<agent.data_dir>/channels/<name>`.
    pub dir: Option<String>,
    /// Most events held (not yet committed by a sink).
    #[serde(default = "default_capacity")]
    pub capacity: usize,
    /// Most bytes held on disk (encoded records not yet committed).
    #[serde(default = "default_capacity_bytes")]
    pub capacity_bytes: u64,
    #[serde(default)]
    pub full_policy: FullPolicy,
    #[serde(default)]
    pub fsync: FsyncPolicy,
    #[serde(default = "default_fsync_interval_ms")]
    pub fsync_interval_ms: u64,
    /// A new segment file is started past this size.
    #[serde(default = "default_segment_bytes")]
    pub segment_bytes: u64,
    /// Encryption at rest (AES-256-GCM).
    pub encryption: Option<EncryptionConfig>,
}

fn default_capacity() -> usize {
    DEFAULT_CAPACITY
}
fn default_capacity_bytes() -> u64 {
    DEFAULT_CAPACITY_BYTES
}
fn default_fsync_interval_ms() -> u64 {
    1000
}
fn default_segment_bytes() -> u64 {
    wal::DEFAULT_SEGMENT_BYTES
}

impl FileChannelConfig {
    /// The channel's log directory.
    pub fn dir(&self, name: &str, data_dir: &Path) -> PathBuf {
        match &self.dir {
            Some(dir) => PathBuf::from(dir),
            None => data_dir.join("channels").join(name),
        }
    }
}

impl ChannelConfig for FileChannelConfig {
    fn validate(&self, problems: &mut Problems) {
        problems.range("capacity", self.capacity, 1, 1_000_000_000);
        problems.range("capacity_bytes", self.capacity_bytes, 1 << 16, 1 << 50);
        problems.range("fsync_interval_ms", self.fsync_interval_ms, 1, 3_600_000);
        problems.range("segment_bytes", self.segment_bytes, 1 << 16, 1 << 34);
        if let Some(dir) = &self.dir
            && dir.trim().is_empty()
        {
            problems.at("dir", "must not be empty");
        }
        if let Some(e) = &self.encryption {
            match (&e.key_file, &e.key_env) {
                (Some(_), None) | (None, Some(_)) => {
                    if let Err(err) = e.cipher() {
                        problems.at("encryption", format!("{err:#}"));
                    }
                }
                _ => problems.at("encryption", "set exactly one of `key_file` and `key_env`"),
            }
        }
    }

    fn capacity_events(&self) -> usize {
        self.capacity
    }

    fn build(&self, name: &str, data_dir: &Path) -> anyhow::Result<Channel> {
        Ok(Channel::new(FileChannel::open(name, self, data_dir)?))
    }
}

/// Where a record's events stand.
#[derive(Debug, Clone, Copy)]
struct RecordMeta {
    id: RecordId,
    next: RecordId,
    items: u64,
    bytes: u64,
    /// The seq of the record's first event.
    start: u64,
}

/// The durable channel. Cheap to clone; clones are the same channel.
#[derive(Clone)]
pub struct FileChannel {
    shared: Arc<Shared>,
}

struct Shared {
    name: String,
    dir: PathBuf,
    capacity: Capacity,
    policy: FullPolicy,
    fsync: FsyncPolicy,
    writer: Mutex<Writer>,
    /// Encodes puts (its own lock: encoding does not hold up appends and fsyncs).
    encoder: Mutex<codec::Encoder>,
    /// Everything before this position is on disk (group commit: one fsync covers every
    /// record appended before it started).
    synced: Mutex<RecordId>,
    state: Mutex<State>,
    not_empty: Notify,
    not_full: Notify,
    counters: ChannelCounters,
    io_errors: Counter,
    corrupt: Counter,
    io_log: LogLimiter,
    /// The newest position per source and file stored in the log: found at open, then
    /// kept up to date by puts (under the writer lock, in log order).
    checkpoints: Mutex<HashMap<Arc<str>, Newest>>,
    /// What `checkpoints` held at open, for the sources starting.
    recovered: HashMap<Arc<str>, Vec<Checkpoint>>,
    /// The plugin state commits in the log's last segments at open.
    recovered_state: Vec<Arc<StateCommit>>,
}

struct Writer {
    wal: Wal,
}

struct State {
    reader: WalReader,
    /// Records in the log not yet read by a taker, in log order, and their events.
    unread: VecDeque<RecordMeta>,
    unread_events: usize,
    /// Events of the record being read, not yet taken; the first has seq `head_seq`.
    head: VecDeque<Event>,
    head_seq: u64,
    /// Rolled-back takes, handed out again first: start seq → events.
    redeliver: BTreeMap<u64, Vec<Event>>,
    /// Records with events not yet committed, in log order.
    live: VecDeque<RecordMeta>,
    /// Taken and not committed (rolled-back takes included): start seq → end seq.
    outstanding: BTreeMap<u64, u64>,
    /// Corrupt records found (and reported) at open, which the reader skips again.
    known_corrupt: HashSet<(u64, u64)>,
    /// The seq the next record put gets.
    next_seq: u64,
    held_events: usize,
    held_bytes: u64,
    closed: bool,
}

impl State {
    /// Events ready to be taken.
    fn available(&self) -> usize {
        self.redeliver.values().map(Vec::len).sum::<usize>() + self.head.len() + self.unread_events
    }

    /// The seq of the first event not yet handed out to a taker.
    fn cursor(&self) -> u64 {
        if !self.head.is_empty() {
            self.head_seq
        } else {
            self.unread.front().map_or(self.next_seq, |r| r.start)
        }
    }

    /// The first event not yet committed: records wholly before it are done.
    fn watermark(&self) -> u64 {
        let cursor = self.cursor();
        self.outstanding
            .keys()
            .next()
            .map_or(cursor, |&first| first.min(cursor))
    }
}

/// Pops the records wholly before the watermark and frees their bytes; returns where
/// the log may be acknowledged up to.
fn retire(state: &mut State) -> Option<RecordId> {
    let watermark = state.watermark();
    let mut upto = None;
    while let Some(r) = state.live.front() {
        if r.start + r.items > watermark {
            break;
        }
        upto = Some(r.next);
        state.held_bytes = state.held_bytes.saturating_sub(r.bytes);
        state.live.pop_front();
    }
    upto
}

impl FileChannel {
    /// Opens (or creates) the channel's log and recovers what it holds.
    pub fn open(name: &str, config: &FileChannelConfig, data_dir: &Path) -> anyhow::Result<Self> {
        let dir = config.dir(name, data_dir);
        let cipher = config.encryption.as_ref().map(|e| e.cipher()).transpose()?;
        let mut options = WalOptions::new(&dir);
        options.segment_bytes = config.segment_bytes;
        options.cipher = cipher.clone();
        let (wal, report) = Wal::open(options)
            .map_err(|e| anyhow::anyhow!("channel `{name}`: cannot open {}: {e}", dir.display()))?;
        let component = format!("channel.{name}");
        let registry = Registry::global();
        let corrupt = registry.counter(&component, "records_corrupt");
        if report.is_clean() {
            tracing::info!(channel = name, dir = %dir.display(), "{report}");
        } else {
            tracing::warn!(channel = name, dir = %dir.display(), "recovered with damage: {report}");
            registry
                .counter(&component, "records_cut")
                .add(report.torn_tail.as_ref().map_or(0, |_| 1));
            corrupt.add(report.corrupt.len() as u64);
        }

        // What the log holds past the acknowledged position, as the recovery scan found
        // it (corrupt records are not in it: takes skip them without counting them
        // again).
        let mut unread = VecDeque::new();
        let mut next_seq = 0u64;
        let mut held_bytes = 0u64;
        for record in &report.pending {
            let meta = RecordMeta {
                id: record.id,
                next: record.next,
                items: u64::from(record.items),
                bytes: record.bytes,
                start: next_seq,
            };
            next_seq += meta.items;
            held_bytes += meta.bytes;
            unread.push_back(meta);
        }
        let known_corrupt: HashSet<(u64, u64)> = report
            .corrupt
            .iter()
            .map(|c| (c.segment, c.offset))
            .collect();
        let pending = next_seq as usize;
        if pending > 0 {
            tracing::info!(
                channel = name,
                events = pending,
                records = unread.len(),
                "events from before the restart are delivered first"
            );
        }
        let (checkpoints, recovered_state) = recover_checkpoints(&wal);
        let recovered = checkpoints
            .iter()
            .map(|(source, newest)| (source.clone(), newest.checkpoints(source)))
            .collect();
        let shared = Arc::new(Shared {
            name: name.to_owned(),
            dir: dir.clone(),
            capacity: Capacity {
                events: config.capacity.max(1),
                bytes: usize::try_from(config.capacity_bytes).unwrap_or(usize::MAX),
            },
            policy: config.full_policy,
            fsync: config.fsync,
            synced: Mutex::new(wal.end()),
            state: Mutex::new(State {
                reader: WalReader::new(&dir, cipher, wal.acked()),
                live: unread.clone(),
                unread,
                unread_events: pending,
                head: VecDeque::new(),
                head_seq: 0,
                redeliver: BTreeMap::new(),
                outstanding: BTreeMap::new(),
                known_corrupt,
                next_seq,
                held_events: pending,
                held_bytes,
                closed: false,
            }),
            writer: Mutex::new(Writer { wal }),
            encoder: Mutex::new(codec::Encoder::default()),
            not_empty: Notify::new(),
            not_full: Notify::new(),
            counters: ChannelCounters::new(name),
            io_errors: registry.counter(&component, "io_errors"),
            corrupt,
            io_log: LogLimiter::new(5),
            checkpoints: Mutex::new(checkpoints),
            recovered,
            recovered_state,
        });
        shared.counters.put.add(0);
        if config.fsync == FsyncPolicy::Interval {
            spawn_syncer(
                Arc::downgrade(&shared),
                Duration::from_millis(config.fsync_interval_ms),
            )?;
        }
        Ok(Self { shared })
    }

    /// Puts `events`; the checkpoint goes with the last part, made durable after the
    /// others.
    async fn put_all(
        &self,
        events: Vec<Event>,
        checkpoint: Option<Checkpoint>,
    ) -> Result<(), Closed> {
        let total = events.len();
        let mut done = 0;
        let step = self.shared.capacity.events;
        let parts = total.div_ceil(step);
        let mut payload = Vec::new();
        if total == 0 {
            // Only a checkpoint (plugin state changes of a batch that left no events).
            lock(&self.shared.encoder).encode(&[], checkpoint.as_ref(), &mut payload);
            return self.put_payload(&payload, 0, checkpoint.as_ref()).await;
        }
        for (i, part) in events.chunks(step).enumerate() {
            payload.clear();
            let with = checkpoint.as_ref().filter(|_| i + 1 == parts);
            lock(&self.shared.encoder).encode(part, with, &mut payload);
            self.put_payload(&payload, part.len(), with)
                .await
                .map_err(|c| Closed {
                    not_put: total - done,
                    ..c
                })?;
            done += part.len();
        }
        Ok(())
    }

    /// Waits for room (or drops, per the policy), appends the record, makes it durable.
    async fn put_payload(
        &self,
        payload: &[u8],
        n: usize,
        checkpoint: Option<&Checkpoint>,
    ) -> Result<(), Closed> {
        let shared = &self.shared;
        let bytes = payload.len();
        loop {
            let room = shared.not_full.notified();
            let mut ack = None;
            let reserved = {
                let mut state = lock(&shared.state);
                if state.closed {
                    return Err(self.closed(n));
                }
                if !self.fits(&state, n, bytes) {
                    match shared.policy {
                        FullPolicy::Block => {}
                        FullPolicy::DropNewest => {
                            drop(state);
                            EventsDroppedFull {
                                channel: &shared.name,
                                count: n as u64,
                                policy: FullPolicy::DropNewest,
                            }
                            .emit(&shared.counters);
                            return Ok(());
                        }
                        FullPolicy::DropOldest => {
                            ack = self.drop_oldest(&mut state, n, bytes);
                            if !self.fits(&state, n, bytes) {
                                // Events in flight to a stuck sink hold the room: the
                                // incoming batch goes (a drop policy never waits).
                                drop(state);
                                self.ack(ack);
                                EventsDroppedFull {
                                    channel: &shared.name,
                                    count: n as u64,
                                    policy: FullPolicy::DropOldest,
                                }
                                .emit(&shared.counters);
                                return Ok(());
                            }
                        }
                    }
                }
                // Reserve the room now: concurrent puts cannot overshoot it.
                let fits = self.fits(&state, n, bytes);
                if fits {
                    state.held_events += n;
                    state.held_bytes += bytes as u64;
                }
                fits
            };
            self.ack(ack);
            if reserved {
                break;
            }
            room.await;
        }
        let next = match self.append(payload, n, checkpoint).await {
            Ok(next) => next,
            Err(closed) => {
                let mut state = lock(&shared.state);
                state.held_events -= n;
                state.held_bytes -= bytes as u64;
                return Err(closed);
            }
        };
        if shared.fsync == FsyncPolicy::Batch {
            self.sync_until(next).await?;
        }
        shared.counters.put.add(n as u64);
        Ok(())
    }

    fn fits(&self, state: &State, n: usize, bytes: usize) -> bool {
        self.shared.capacity.fits(
            state.held_events,
            usize::try_from(state.held_bytes).unwrap_or(usize::MAX),
            n,
            bytes,
        )
    }

    /// Drops the oldest events nobody has taken yet until `n`/`bytes` fit. Returns
    /// where to acknowledge the log up to (after the state lock is released).
    fn drop_oldest(&self, state: &mut State, n: usize, bytes: usize) -> Option<RecordId> {
        let mut dropped = 0u64;
        let mut ack = None;
        while !self.fits(state, n, bytes) {
            let k = if !state.head.is_empty() {
                let k = state.head.len() as u64;
                state.head.clear();
                state.head_seq += k;
                k
            } else if let Some(r) = state.unread.pop_front() {
                state.unread_events -= r.items as usize;
                state.reader.seek(r.next);
                r.items
            } else {
                break;
            };
            dropped += k;
            state.held_events = state.held_events.saturating_sub(k as usize);
            ack = retire(state).or(ack);
        }
        if dropped > 0 {
            EventsDroppedFull {
                channel: &self.shared.name,
                count: dropped,
                policy: FullPolicy::DropOldest,
            }
            .emit(&self.shared.counters);
        }
        ack
    }

    /// Appends one record, retrying I/O errors (a full disk) with backoff: the put
    /// waits, which is backpressure. Registers the record for takers in log order.
    /// When the record starts a new segment, the newest position of every source's
    /// files follows it: the segments at the end of the log always hold them, however
    /// many older ones are deleted.
    async fn append(
        &self,
        payload: &[u8],
        n: usize,
        checkpoint: Option<&Checkpoint>,
    ) -> Result<RecordId, Closed> {
        let shared = &self.shared;
        let mut delay = Duration::from_millis(100);
        loop {
            {
                let mut writer = lock(&shared.writer);
                let segment = writer.wal.end().segment;
                match writer.wal.append(payload, n as u32) {
                    Ok(id) => {
                        if checkpoint.is_some() || id.segment != segment {
                            let mut newest = lock(&shared.checkpoints);
                            if let Some(c) = checkpoint {
                                newest.entry(c.source.clone()).or_default().record(c);
                            }
                            if id.segment != segment {
                                // The segments this one may outlive must not hold
                                // state changes the plugins' state files lack.
                                crate::plugin::state::save_all_synced();
                                self.carry_forward(&mut writer.wal, &newest);
                            }
                        }
                        let next = writer.wal.end();
                        let mut state = lock(&shared.state);
                        let meta = RecordMeta {
                            id,
                            next,
                            items: n as u64,
                            bytes: payload.len() as u64,
                            start: state.next_seq,
                        };
                        state.next_seq += n as u64;
                        state.unread.push_back(meta);
                        state.unread_events += n;
                        state.live.push_back(meta);
                        drop(state);
                        drop(writer);
                        shared.not_empty.notify_waiters();
                        return Ok(next);
                    }
                    Err(e) => self.io_error("cannot write the channel's log", &e, delay),
                }
            }
            if lock(&shared.state).closed {
                return Err(self.closed(n));
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(5));
        }
    }

    /// Writes the newest positions of every source's files as records without events.
    /// A failure is logged: the positions are still in the older segments and the
    /// sources' position files.
    fn carry_forward(&self, wal: &mut Wal, newest: &HashMap<Arc<str>, Newest>) {
        let mut encoder = codec::Encoder::default();
        let mut payload = Vec::new();
        for (source, files) in newest {
            for checkpoint in files.checkpoints(source) {
                payload.clear();
                encoder.encode(&[], Some(&checkpoint), &mut payload);
                if let Err(e) = wal.append(&payload, 0) {
                    self.io_error(
                        "cannot carry read positions into the new segment",
                        &e,
                        Duration::ZERO,
                    );
                    return;
                }
            }
        }
    }

    /// Makes everything up to `next` durable; retries I/O errors with backoff.
    async fn sync_until(&self, next: RecordId) -> Result<(), Closed> {
        let mut delay = Duration::from_millis(100);
        loop {
            match self.shared.sync_until(next) {
                Ok(()) => return Ok(()),
                Err(e) => self.io_error("cannot fsync the channel's log", &e, delay),
            }
            if lock(&self.shared.state).closed {
                return Err(self.closed(0));
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(5));
        }
    }

    fn io_error(&self, what: &str, error: &wal::WalError, retry_in: Duration) {
        self.shared.io_errors.add(1);
        if self.shared.io_log.allow() {
            tracing::error!(
                channel = %self.shared.name,
                dir = %self.shared.dir.display(),
                retry_in_ms = retry_in.as_millis() as u64,
                "{what} (puts wait until it works again; nothing is lost): {error}"
            );
        }
    }

    fn closed(&self, not_put: usize) -> Closed {
        Closed {
            channel: self.shared.name.clone(),
            not_put,
        }
    }

    /// Acknowledges the log up to `upto` (called without the state lock: the writer
    /// lock is always taken first).
    fn ack(&self, upto: Option<RecordId>) {
        let Some(upto) = upto else {
            return;
        };
        if let Err(e) = lock(&self.shared.writer).wal.ack(upto) {
            // Only the ledger lags: these records are delivered again after a restart.
            self.io_error(
                "cannot record delivered events in the ledger",
                &e,
                Duration::ZERO,
            );
        }
    }

    async fn take_batch(&self, limits: TakeLimits, timeout: Duration) -> Take {
        let max = limits.events.max(1);
        let max_bytes = limits.bytes.max(1);
        take_when_ready(&self.shared.not_empty, timeout, |expired| {
            let mut state = lock(&self.shared.state);
            let available = state.available();
            let full = !self.fits(&state, 1, 0);
            let ready = available >= max
                || (available > 0 && (expired || state.closed || full))
                || (available == 0 && state.closed);
            if !ready {
                return if available == 0 {
                    Looked::Empty
                } else {
                    Looked::Filling
                };
            }
            let mut ack = None;
            let take = self.take_now(&mut state, max, max_bytes, &mut ack);
            drop(state);
            self.ack(ack);
            Looked::Ready(take)
        })
        .await
    }

    /// Hands out up to `max` events: rolled-back ones first, then in log order.
    fn take_now(
        &self,
        state: &mut State,
        max: usize,
        max_bytes: usize,
        ack: &mut Option<RecordId>,
    ) -> Take {
        if let Some((&start, _)) = state.redeliver.iter().next()
            && let Some(events) = state.redeliver.remove(&start)
        {
            let end = start + events.len() as u64;
            return Take::new(events, self.txn(start, end));
        }
        let mut events = Vec::new();
        let mut bytes = 0;
        let start = state.cursor();
        while events.len() < max {
            // Takes end at record boundaries when they can (a record larger than a
            // take is split): the log is acknowledged by whole records, so a take that
            // ended inside one would, after a crash, deliver its committed part again.
            if state.head.is_empty()
                && !events.is_empty()
                && state
                    .unread
                    .front()
                    .is_some_and(|r| events.len() + r.items as usize > max)
            {
                break;
            }
            if state.head.is_empty() && !self.read_record(state, ack) {
                break;
            }
            let Some(size) = state.head.front().map(Event::size_estimate) else {
                continue;
            };
            if !events.is_empty() && bytes + size > max_bytes {
                break;
            }
            if let Some(event) = state.head.pop_front() {
                bytes += size;
                state.head_seq += 1;
                events.push(event);
            }
        }
        if events.is_empty() {
            return Take::empty();
        }
        let end = start + events.len() as u64;
        state.outstanding.insert(start, end);
        Take::new(events, self.txn(start, end))
    }

    fn txn(&self, start: u64, end: u64) -> Box<dyn TakeTxn> {
        Box::new(FileTxn {
            channel: self.clone(),
            start,
            end,
        })
    }

    /// Reads and decodes the next unread record into `head`; false when none is left.
    /// A record that cannot be read or decoded is counted as lost and skipped.
    fn read_record(&self, state: &mut State, ack: &mut Option<RecordId>) -> bool {
        let Some(meta) = state.unread.pop_front() else {
            return false;
        };
        state.unread_events -= meta.items as usize;
        state.head_seq = meta.start;
        if meta.items == 0 {
            // A record without events (positions carried into a new segment, state
            // changes of a batch that left no events) has nothing to take: its content
            // is read at open. Not read back: it may be acknowledged already (nothing
            // of it is waited for), and its segment deleted.
            state.reader.seek(meta.next);
            return true;
        }
        let read = state.reader.next(meta.next);
        for c in state.reader.take_corrupt() {
            if !state.known_corrupt.remove(&(c.segment, c.offset)) {
                tracing::error!(channel = %self.shared.name, "skipping a corrupt record: {c}");
                self.shared.corrupt.add(1);
            }
        }
        let decoded = match read {
            Ok(Some(record)) if record.id == meta.id => {
                codec::decode(&record.payload).map_err(|e| e.to_string())
            }
            Ok(Some(record)) => Err(format!(
                "expected the record at {}, read the one at {}",
                meta.id, record.id
            )),
            Ok(None) => Err(format!("the record at {} is gone", meta.id)),
            Err(e) => Err(e.to_string()),
        };
        state.reader.seek(meta.next);
        match decoded {
            Ok(events) if events.len() as u64 == meta.items => state.head.extend(events),
            outcome => {
                let reason = match outcome {
                    Ok(events) => format!(
                        "record at {} holds {} events, its header says {}",
                        meta.id,
                        events.len(),
                        meta.items
                    ),
                    Err(e) => e,
                };
                crate::internal_events::EventsLost {
                    count: meta.items,
                    at: &self.shared.name,
                    reason: &format!(
                        "unreadable record in {}: {reason}",
                        self.shared.dir.display()
                    ),
                }
                .emit();
                self.shared.corrupt.add(1);
                state.head_seq = meta.start + meta.items;
                state.held_events = state.held_events.saturating_sub(meta.items as usize);
                *ack = retire(state).or(*ack);
            }
        }
        true
    }
}

impl Shared {
    fn sync_until(&self, next: RecordId) -> Result<(), wal::WalError> {
        let mut synced = lock(&self.synced);
        if *synced >= next {
            return Ok(());
        }
        let mut writer = lock(&self.writer);
        let end = writer.wal.end();
        writer.wal.sync()?;
        *synced = end;
        Ok(())
    }
}

/// `fsync = "interval"`: a thread that syncs the log while the channel exists.
fn spawn_syncer(shared: Weak<Shared>, every: Duration) -> anyhow::Result<()> {
    std::thread::Builder::new()
        .name("runnel-fsync".into())
        .spawn(move || {
            loop {
                std::thread::sleep(every);
                let Some(shared) = shared.upgrade() else {
                    return;
                };
                let end = lock(&shared.writer).wal.end();
                if let Err(e) = shared.sync_until(end) {
                    shared.io_errors.add(1);
                    if shared.io_log.allow() {
                        tracing::error!(channel = %shared.name, "cannot fsync the channel's log: {e}");
                    }
                }
            }
        })?;
    Ok(())
}

impl ChannelBackend for FileChannel {
    fn name(&self) -> &str {
        &self.shared.name
    }

    fn put(
        &self,
        events: Vec<Event>,
        checkpoint: Option<&Checkpoint>,
    ) -> BoxFuture<'_, Result<(), Closed>> {
        Box::pin(self.put_all(events, checkpoint.cloned()))
    }

    fn checkpoints(&self, source: &str) -> Vec<Checkpoint> {
        self.shared
            .recovered
            .get(source)
            .cloned()
            .unwrap_or_default()
    }

    fn state_commits(&self) -> Vec<Arc<StateCommit>> {
        self.shared.recovered_state.clone()
    }

    fn take(&self, limits: TakeLimits, timeout: Duration) -> BoxFuture<'_, Take> {
        Box::pin(self.take_batch(limits, timeout))
    }

    fn close(&self) {
        lock(&self.shared.state).closed = true;
        // What is put is on disk: sync it whatever the policy, so a clean stop loses
        // nothing even with `fsync = "never"`.
        let end = lock(&self.shared.writer).wal.end();
        if let Err(e) = self.shared.sync_until(end) {
            tracing::error!(channel = %self.shared.name, "cannot fsync the channel's log at close: {e}");
        }
        self.shared.not_empty.notify_waiters();
        self.shared.not_full.notify_waiters();
    }

    fn len(&self) -> usize {
        lock(&self.shared.state).held_events
    }

    fn room(&self, events: usize, bytes: usize) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let shared = &self.shared;
            loop {
                let room = shared.not_full.notified();
                {
                    let state = lock(&shared.state);
                    let held_bytes = usize::try_from(state.held_bytes).unwrap_or(usize::MAX);
                    if state.closed
                        || shared.policy != FullPolicy::Block
                        || shared.capacity.fits_or_empty(
                            state.held_events,
                            held_bytes,
                            events,
                            bytes,
                        )
                    {
                        return;
                    }
                }
                room.await;
            }
        })
    }

    fn is_durable(&self) -> bool {
        true
    }
}

/// How many of the newest segments are searched for checkpoints at open. Each segment
/// starts with the newest position of every file (see [`FileChannel::append`]); the one
/// before is read too, for a crash right after a segment was started.
const CHECKPOINT_SEGMENTS: usize = 2;

/// Reads the checkpoints stored in the log's last segments, acknowledged records
/// included: the newest position per source and file, and the plugin state commits
/// (those of older segments are in the state files: they are saved before a segment
/// starts). Damaged records are left to the takers to report.
fn recover_checkpoints(wal: &Wal) -> (HashMap<Arc<str>, Newest>, Vec<Arc<StateCommit>>) {
    let mut newest: HashMap<Arc<str>, Newest> = HashMap::new();
    let mut state = Vec::new();
    let mut reader = wal.reader_of_last_segments(CHECKPOINT_SEGMENTS);
    let end = wal.end();
    while let Ok(Some(record)) = reader.next(end) {
        if let Ok(Some(checkpoint)) = codec::checkpoint(&record.payload) {
            newest
                .entry(checkpoint.source.clone())
                .or_default()
                .record(&checkpoint);
            state.extend(checkpoint.state);
        }
    }
    (newest, state)
}

/// An open take of the file channel: events `start..end` in put order.
struct FileTxn {
    channel: FileChannel,
    start: u64,
    end: u64,
}

impl TakeTxn for FileTxn {
    fn commit(self: Box<Self>) {
        let shared = &self.channel.shared;
        let n = (self.end - self.start) as usize;
        let ack = {
            let mut state = lock(&shared.state);
            state.outstanding.remove(&self.start);
            state.held_events = state.held_events.saturating_sub(n);
            retire(&mut state)
        };
        self.channel.ack(ack);
        shared.counters.committed.add(n as u64);
        shared.not_full.notify_waiters();
    }

    fn rollback(self: Box<Self>, events: Vec<Event>) {
        let shared = &self.channel.shared;
        let n = events.len() as u64;
        lock(&shared.state).redeliver.insert(self.start, events);
        shared.counters.rolled_back.add(n);
        shared.not_empty.notify_waiters();
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> FileChannelConfig {
        toml::from_str(&format!("fsync = \"never\"\n{extra}")).unwrap()
    }

    fn open(dir: &Path, extra: &str) -> Channel {
        config(extra).build("t", dir).unwrap()
    }

    fn events(range: std::ops::Range<u32>) -> Vec<Event> {
        range
            .map(|i| Event::from_body(Arc::from("t"), i.to_string().into_bytes()))
            .collect()
    }

    fn limits(events: usize) -> TakeLimits {
        TakeLimits {
            events,
            bytes: 1 << 30,
        }
    }

    fn bodies(take: &Take) -> Vec<u32> {
        take.events()
            .iter()
            .map(|e| std::str::from_utf8(&e.body).unwrap().parse().unwrap())
            .collect()
    }

    const SHORT: Duration = Duration::from_millis(1);

    #[tokio::test]
    async fn what_is_not_committed_survives_a_restart_and_what_is_does_not() {
        let dir = tempfile::tempdir().unwrap();
        {
            let ch = open(dir.path(), "");
            for i in 0..3 {
                ch.put(events(i * 10..i * 10 + 10)).await.unwrap();
            }
            let t = ch.take(limits(10), SHORT).await;
            assert_eq!(bodies(&t), (0..10).collect::<Vec<_>>());
            t.commit();
            // Taken but never committed: back after the restart.
            let t = ch.take(limits(5), SHORT).await;
            assert_eq!(bodies(&t), (10..15).collect::<Vec<_>>());
            drop(t); // rolled back in memory only: on disk, as after a crash
        }
        let ch = open(dir.path(), "");
        assert_eq!(ch.len(), 20);
        let t = ch.take(limits(100), SHORT).await;
        assert_eq!(bodies(&t), (10..30).collect::<Vec<_>>());
        t.commit();
        assert_eq!(ch.len(), 0);
    }

    #[tokio::test]
    async fn checkpoints_are_found_after_a_restart_even_once_delivered() {
        use crate::source::checkpoint::{FileId, Fingerprint};
        let position = |seq: u64, inode: u64, offset: u64| Checkpoint {
            source: Arc::from("app"),
            seq,
            state: Vec::new(),
            positions: vec![(
                FileId {
                    dev: 1,
                    inode,
                    fingerprint: Fingerprint::of(b"head"),
                },
                offset,
            )],
        };
        let dir = tempfile::tempdir().unwrap();
        {
            // Small segments: the checkpoints span several, the oldest deleted.
            let ch = open(dir.path(), "capacity = 4\nsegment_bytes = 200");
            for seq in 0..6 {
                let c = position(seq, seq % 2, seq * 100);
                ch.put_checkpointed(events(0..4), Some(&c)).await.unwrap();
                ch.take(limits(4), SHORT).await.commit();
            }
            // Split into parts: the positions go with the last one only.
            let c = position(6, 0, 600);
            let put = ch.put_checkpointed(events(0..6), Some(&c));
            let take = async {
                let t = ch.take(limits(4), SHORT).await;
                assert_eq!(t.len(), 4);
                t.commit();
            };
            let (put, ()) = tokio::join!(put, take);
            put.unwrap();
            ch.put(events(0..1)).await.unwrap();
        }
        let ch = open(dir.path(), "capacity = 4\nsegment_bytes = 200");
        let mut found = ch.checkpoints("app");
        found.sort_by_key(|c| c.seq);
        assert_eq!(found, vec![position(5, 1, 500), position(6, 0, 600)]);
        assert!(ch.checkpoints("other").is_empty());
        // The events still pending are delivered as usual.
        assert_eq!(bodies(&ch.take(limits(10), SHORT).await), vec![4, 5, 0]);
    }

    #[tokio::test]
    async fn state_changes_without_events_are_stored_and_skipped_by_takers() {
        use crate::plugin::state::StateCommit;
        let commit = |version: u64| {
            Arc::new(StateCommit {
                plugin: "counter".into(),
                version,
                changes: vec![(b"k".to_vec(), Some(version.to_string().into_bytes()))],
            })
        };
        let only_state = |version: u64| Checkpoint {
            source: Arc::from("app"),
            seq: 0,
            positions: Vec::new(),
            state: vec![commit(version)],
        };
        let dir = tempfile::tempdir().unwrap();
        {
            let ch = open(dir.path(), "");
            ch.put(events(0..2)).await.unwrap();
            // A batch that left no events but changed state: a record without events.
            ch.put_checkpointed(Vec::new(), Some(&only_state(1)))
                .await
                .unwrap();
            ch.put(events(2..4)).await.unwrap();
            assert_eq!(ch.len(), 4);
            let t = ch.take(limits(10), SHORT).await;
            assert_eq!(bodies(&t), vec![0, 1, 2, 3]);
            t.commit();
            ch.put_checkpointed(Vec::new(), Some(&only_state(2)))
                .await
                .unwrap();
        }
        let ch = open(dir.path(), "");
        assert_eq!(ch.state_commits(), vec![commit(1), commit(2)]);
        assert_eq!(ch.len(), 0);
        // Nothing to take; what comes next is taken as usual.
        ch.put(events(4..5)).await.unwrap();
        assert_eq!(bodies(&ch.take(limits(10), SHORT).await), vec![4]);
        // A memory channel keeps no state changes: nothing is put.
        let memory = Channel::new(crate::channel::MemoryChannel::new(
            "m",
            Capacity {
                events: 10,
                bytes: 1 << 20,
            },
            FullPolicy::Block,
        ));
        memory
            .put_checkpointed(Vec::new(), Some(&only_state(3)))
            .await
            .unwrap();
        assert_eq!(memory.len(), 0);
    }

    #[tokio::test]
    async fn records_without_events_are_never_read_back_so_never_found_gone() {
        use crate::plugin::state::StateCommit;
        let only_state = |version: u64| Checkpoint {
            source: Arc::from("app"),
            seq: version,
            positions: Vec::new(),
            state: vec![Arc::new(StateCommit {
                plugin: "counter".into(),
                version,
                changes: vec![(b"k".to_vec(), Some(version.to_string().into_bytes()))],
            })],
        };
        // Small segments: a record without events often ends one, which is deleted
        // once the events before it are committed.
        let extra = "segment_bytes = 200";
        let name = "state_only_records";
        let corrupt = Registry::global().counter(&format!("channel.{name}"), "records_corrupt");
        let dir = tempfile::tempdir().unwrap();
        let build = || config(extra).build(name, dir.path()).unwrap();
        let take_all = |ch: Channel, n: u32| async move {
            let mut got = Vec::new();
            while got.len() < n as usize {
                let t = ch.take(limits(2), SHORT).await;
                assert!(!t.is_empty(), "{} of {n} events taken", got.len());
                got.extend(bodies(&t));
                t.commit();
            }
            assert!(ch.is_empty());
            got
        };
        // While running.
        let ch = build();
        for i in 0..20 {
            ch.put(events(2 * i..2 * i + 2)).await.unwrap();
            ch.put_checkpointed(Vec::new(), Some(&only_state(i as u64)))
                .await
                .unwrap();
        }
        assert_eq!(take_all(ch, 40).await, (0..40).collect::<Vec<_>>());
        assert_eq!(corrupt.get(), 0, "records counted corrupt while running");
        // Reopened with them pending, some at the front of what is pending.
        {
            let ch = build();
            for i in 20..40 {
                ch.put_checkpointed(Vec::new(), Some(&only_state(i as u64)))
                    .await
                    .unwrap();
                ch.put(events(2 * i..2 * i + 2)).await.unwrap();
            }
        }
        let ch = build();
        assert_eq!(ch.len(), 40);
        assert_eq!(take_all(ch, 40).await, (40..80).collect::<Vec<_>>());
        assert_eq!(corrupt.get(), 0, "records counted corrupt after a restart");
    }

    #[tokio::test]
    async fn rollback_hands_events_out_again_first_and_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let ch = open(dir.path(), "");
        ch.put(events(0..6)).await.unwrap();
        let a = ch.take(limits(3), SHORT).await;
        let b = ch.take(limits(3), SHORT).await;
        b.rollback();
        a.rollback();
        let t = ch.take(limits(3), SHORT).await;
        assert_eq!(bodies(&t), [0, 1, 2]);
        t.commit();
        let t = ch.take(limits(3), SHORT).await;
        assert_eq!(bodies(&t), [3, 4, 5]);
        t.commit();
        assert!(ch.is_empty());
    }

    #[tokio::test]
    async fn an_earlier_take_still_open_holds_the_log_back_across_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        {
            let ch = open(dir.path(), "");
            ch.put(events(0..4)).await.unwrap();
            ch.put(events(4..8)).await.unwrap();
            let a = ch.take(limits(4), SHORT).await;
            let b = ch.take(limits(4), SHORT).await;
            b.commit();
            drop(a);
        }
        let ch = open(dir.path(), "");
        let t = ch.take(limits(100), SHORT).await;
        // The first record was never committed: delivered again (the second one too,
        // as the log is acknowledged in order: a duplicate, never a loss).
        assert_eq!(&bodies(&t)[..4], [0, 1, 2, 3]);
        t.commit();
    }

    #[tokio::test]
    async fn whole_segments_are_deleted_once_committed() {
        let dir = tempfile::tempdir().unwrap();
        let ch = open(dir.path(), "segment_bytes = 65536");
        let line = "x".repeat(1000);
        for _ in 0..200 {
            let batch = vec![Event::from_body(Arc::from("t"), line.clone().into_bytes())];
            ch.put(batch).await.unwrap();
        }
        let segments = || {
            std::fs::read_dir(dir.path().join("channels/t"))
                .unwrap()
                .filter(|e| {
                    e.as_ref()
                        .unwrap()
                        .file_name()
                        .to_string_lossy()
                        .ends_with(".wal")
                })
                .count()
        };
        assert!(segments() >= 3, "{}", segments());
        loop {
            let t = ch.take(limits(64), SHORT).await;
            let empty = t.is_empty();
            t.commit();
            if empty || ch.is_empty() {
                break;
            }
        }
        assert!(ch.is_empty());
        assert!(segments() <= 1, "{}", segments());
    }

    #[tokio::test]
    async fn full_policies_drop_newest_or_oldest_and_count_them() {
        let dir = tempfile::tempdir().unwrap();
        let ch = open(dir.path(), "capacity = 4\nfull_policy = \"drop_newest\"");
        ch.put(events(0..4)).await.unwrap();
        ch.put(events(4..6)).await.unwrap();
        let t = ch.take(limits(10), SHORT).await;
        assert_eq!(bodies(&t), [0, 1, 2, 3]);
        t.commit();

        let dir = tempfile::tempdir().unwrap();
        let ch = open(dir.path(), "capacity = 4\nfull_policy = \"drop_oldest\"");
        ch.put(events(0..2)).await.unwrap();
        ch.put(events(2..4)).await.unwrap();
        ch.put(events(4..6)).await.unwrap();
        let t = ch.take(limits(10), SHORT).await;
        assert_eq!(bodies(&t), [2, 3, 4, 5]);
        t.commit();
    }

    #[tokio::test]
    async fn block_waits_for_room_in_bytes_too() {
        let dir = tempfile::tempdir().unwrap();
        let ch = open(dir.path(), "capacity_bytes = 65536");
        let big = || vec![Event::from_body(Arc::from("t"), vec![b'y'; 40_000])];
        ch.put(big()).await.unwrap();
        let blocked = tokio::time::timeout(Duration::from_millis(50), ch.put(big())).await;
        assert!(blocked.is_err(), "the second put must wait for room");
        let t = ch.take(limits(1), SHORT).await;
        t.commit();
        tokio::time::timeout(Duration::from_secs(5), ch.put(big()))
            .await
            .expect("room after the commit")
            .unwrap();
    }

    #[tokio::test]
    async fn a_torn_tail_is_cut_and_what_came_before_is_delivered() {
        let dir = tempfile::tempdir().unwrap();
        {
            let ch = open(dir.path(), "");
            ch.put(events(0..5)).await.unwrap();
            ch.put(events(5..10)).await.unwrap();
        }
        let segment = std::fs::read_dir(dir.path().join("channels/t"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|e| e == "wal"))
            .unwrap();
        let len = std::fs::metadata(&segment).unwrap().len();
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&segment)
            .unwrap();
        file.set_len(len - 7).unwrap();
        let ch = open(dir.path(), "");
        let t = ch.take(limits(100), SHORT).await;
        assert_eq!(bodies(&t), [0, 1, 2, 3, 4]);
        t.commit();
    }

    #[tokio::test]
    async fn encrypted_logs_reopen_with_their_key() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("key");
        std::fs::write(&key, "11".repeat(32)).unwrap();
        let extra = format!("encryption = {{ key_file = \"{}\" }}", key.display());
        {
            let ch = open(dir.path(), &extra);
            ch.put(events(0..3)).await.unwrap();
        }
        let raw: Vec<u8> = std::fs::read_dir(dir.path().join("channels/t"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "wal"))
            .flat_map(|p| std::fs::read(p).unwrap())
            .collect();
        assert!(
            !raw.windows(3).any(|w| w == b"t\x001"),
            "bodies must not be on disk in the clear"
        );
        let ch = open(dir.path(), &extra);
        let t = ch.take(limits(10), SHORT).await;
        assert_eq!(bodies(&t), [0, 1, 2]);
        t.commit();
    }
}
