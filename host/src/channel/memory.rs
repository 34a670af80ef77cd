//! The memory channel: a bounded in-memory queue, bounded by events and by bytes. Fast;
//! loses its contents if the agent dies (the `file` channel is the durable one).

use super::{
    Capacity, Channel, ChannelBackend, ChannelConfig, Closed, FullPolicy, Looked, Take, TakeLimits,
    TakeTxn, take_when_ready,
};
use crate::config::Problems;
use crate::event::Event;
use crate::internal_events::{ChannelCounters, EventsDroppedFull};
use crate::source::Checkpoint;
use futures_util::future::BoxFuture;
use serde::Deserialize;
use std::collections::VecDeque;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::Notify;

/// Default `capacity` (events) of a memory channel.
pub const DEFAULT_CAPACITY: usize = 10_000;
/// Default `capacity_bytes` of a memory channel: small enough for an edge host.
pub const DEFAULT_CAPACITY_BYTES: usize = 16 << 20;

#[derive(PartialEq, Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryChannelConfig {
    /// Most events held (queued plus taken and not yet committed).
    #[serde(default = "default_capacity")]
    pub capacity: usize,
    /// Most bytes held (estimated in-memory size of the events).
    #[serde(default = "default_capacity_bytes")]
    pub capacity_bytes: usize,
    /// What a put does when the channel is full.
    #[serde(default)]
    pub full_policy: FullPolicy,
}

fn default_capacity() -> usize {
    DEFAULT_CAPACITY
}

fn default_capacity_bytes() -> usize {
    DEFAULT_CAPACITY_BYTES
}

impl ChannelConfig for MemoryChannelConfig {
    fn validate(&self, problems: &mut Problems) {
        problems.range("capacity", self.capacity, 1, 100_000_000);
        problems.range("capacity_bytes", self.capacity_bytes, 4096, 1 << 40);
    }

    fn capacity_events(&self) -> usize {
        self.capacity
    }

    fn build(&self, name: &str, _data_dir: &Path) -> anyhow::Result<Channel> {
        Ok(Channel::new(MemoryChannel::new(
            name,
            Capacity {
                events: self.capacity,
                bytes: self.capacity_bytes,
            },
            self.full_policy,
        )))
    }
}

/// A bounded queue of events. Cheap to clone; clones are the same channel.
#[derive(Clone)]
pub struct MemoryChannel {
    shared: Arc<Shared>,
}

struct Shared {
    name: String,
    capacity: Capacity,
    policy: FullPolicy,
    state: Mutex<State>,
    /// Woken when events are put or rolled back, and on close.
    not_empty: Notify,
    /// Woken when capacity is freed (commit) and on close.
    not_full: Notify,
    counters: ChannelCounters,
}

#[derive(Default)]
struct State {
    /// Events with their size estimate.
    queue: VecDeque<(Event, usize)>,
    queued_bytes: usize,
    /// Taken by open transactions: they still hold capacity until committed.
    in_flight: usize,
    in_flight_bytes: usize,
    closed: bool,
}

impl State {
    fn held(&self) -> (usize, usize) {
        (
            self.queue.len() + self.in_flight,
            self.queued_bytes + self.in_flight_bytes,
        )
    }
}

impl MemoryChannel {
    pub fn new(name: &str, capacity: Capacity, policy: FullPolicy) -> Self {
        Self {
            shared: Arc::new(Shared {
                name: name.to_owned(),
                capacity: Capacity {
                    events: capacity.events.max(1),
                    bytes: capacity.bytes.max(1),
                },
                policy,
                state: Mutex::new(State::default()),
                not_empty: Notify::new(),
                not_full: Notify::new(),
                counters: ChannelCounters::new(name),
            }),
        }
    }

    /// Puts `events` in transactions of at most the capacity, in order.
    async fn put_all(&self, events: Vec<Event>) -> Result<(), Closed> {
        let total = events.len();
        let mut done = 0;
        let mut part: Vec<(Event, usize)> = Vec::new();
        let mut part_bytes = 0;
        for event in events {
            let size = event.size_estimate();
            if !part.is_empty()
                && (part.len() >= self.shared.capacity.events
                    || part_bytes + size > self.shared.capacity.bytes)
            {
                let n = part.len();
                self.put_one(std::mem::take(&mut part), part_bytes)
                    .await
                    .map_err(|c| Closed {
                        not_put: total - done,
                        ..c
                    })?;
                done += n;
                part_bytes = 0;
            }
            part_bytes += size;
            part.push((event, size));
        }
        self.put_one(part, part_bytes).await.map_err(|c| Closed {
            not_put: total - done,
            ..c
        })
    }

    async fn put_one(
        &self,
        mut events: Vec<(Event, usize)>,
        mut bytes: usize,
    ) -> Result<(), Closed> {
        if events.is_empty() {
            return Ok(());
        }
        let capacity = self.shared.capacity;
        loop {
            let room = self.shared.not_full.notified();
            let mut dropped = 0u64;
            let put = {
                let mut state = self.shared.lock();
                if state.closed {
                    return Err(Closed {
                        channel: self.shared.name.clone(),
                        not_put: events.len(),
                    });
                }
                let fits = |state: &State, n, bytes| {
                    let (held, held_bytes) = state.held();
                    capacity.fits(held, held_bytes, n, bytes)
                };
                if !fits(&state, events.len(), bytes) {
                    match self.shared.policy {
                        FullPolicy::Block => {}
                        FullPolicy::DropNewest => {
                            dropped = events.len() as u64;
                            events.clear();
                            bytes = 0;
                        }
                        FullPolicy::DropOldest => {
                            // Queued events first (never ones in open transactions);
                            // when events in flight to a stuck sink hold the room, the
                            // oldest incoming ones: a drop policy never waits.
                            let mut skip = 0;
                            while !fits(&state, events.len() - skip, bytes) {
                                if let Some((_, size)) = state.queue.pop_front() {
                                    state.queued_bytes -= size;
                                } else if let Some((_, size)) = events.get(skip) {
                                    bytes -= size;
                                    skip += 1;
                                } else {
                                    break;
                                }
                                dropped += 1;
                            }
                            events.drain(..skip);
                        }
                    }
                }
                fits(&state, events.len(), bytes).then(|| {
                    let n = events.len();
                    state.queue.extend(events.drain(..));
                    state.queued_bytes += bytes;
                    n
                })
            };
            if dropped > 0 {
                EventsDroppedFull {
                    channel: &self.shared.name,
                    count: dropped,
                    policy: self.shared.policy,
                }
                .emit(&self.shared.counters);
            }
            if let Some(n) = put {
                self.shared.counters.put.add(n as u64);
                self.shared.not_empty.notify_waiters();
                return Ok(());
            }
            room.await;
        }
    }

    async fn take_batch(&self, limits: TakeLimits, timeout: Duration) -> Take {
        let max = limits.events.max(1);
        let max_bytes = limits.bytes.max(1);
        take_when_ready(&self.shared.not_empty, timeout, |expired| {
            let mut state = self.shared.lock();
            let available = state.queue.len();
            let (held, held_bytes) = state.held();
            // Full: no more can come until something is committed, so waiting for a
            // fuller batch would only wait out the timeout.
            let full = !self.shared.capacity.fits(held, held_bytes, 1, 0);
            let ready = available >= max
                || state.queued_bytes >= max_bytes
                || (available > 0 && (expired || state.closed || full))
                || (available == 0 && state.closed);
            if !ready {
                return if available == 0 {
                    Looked::Empty
                } else {
                    Looked::Filling
                };
            }
            let mut events = Vec::with_capacity(available.min(max));
            let mut bytes = 0;
            while events.len() < max {
                match state.queue.front() {
                    Some((_, size)) if events.is_empty() || bytes + size <= max_bytes => {
                        bytes += size;
                    }
                    _ => break,
                }
                if let Some((event, _)) = state.queue.pop_front() {
                    events.push(event);
                }
            }
            state.queued_bytes -= bytes;
            state.in_flight += events.len();
            state.in_flight_bytes += bytes;
            if events.is_empty() {
                return Looked::Ready(Take::empty());
            }
            let n = events.len();
            Looked::Ready(Take::new(
                events,
                Box::new(MemoryTxn {
                    shared: self.shared.clone(),
                    events: n,
                    bytes,
                }),
            ))
        })
        .await
    }
}

impl ChannelBackend for MemoryChannel {
    fn name(&self) -> &str {
        &self.shared.name
    }

    /// A memory channel does not survive a restart: it keeps no checkpoint.
    fn put(
        &self,
        events: Vec<Event>,
        _checkpoint: Option<&Checkpoint>,
    ) -> BoxFuture<'_, Result<(), Closed>> {
        Box::pin(self.put_all(events))
    }

    fn take(&self, limits: TakeLimits, timeout: Duration) -> BoxFuture<'_, Take> {
        Box::pin(self.take_batch(limits, timeout))
    }

    fn room(&self, events: usize, bytes: usize) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            loop {
                let room = self.shared.not_full.notified();
                {
                    let state = self.shared.lock();
                    let (held, held_bytes) = state.held();
                    if state.closed
                        || self.shared.policy != FullPolicy::Block
                        || self
                            .shared
                            .capacity
                            .fits_or_empty(held, held_bytes, events, bytes)
                    {
                        return;
                    }
                }
                room.await;
            }
        })
    }

    fn close(&self) {
        self.shared.lock().closed = true;
        self.shared.not_empty.notify_waiters();
        self.shared.not_full.notify_waiters();
    }

    fn len(&self) -> usize {
        self.shared.lock().held().0
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// An open take of a memory channel: the events' capacity is held until commit.
struct MemoryTxn {
    shared: Arc<Shared>,
    events: usize,
    bytes: usize,
}

impl TakeTxn for MemoryTxn {
    fn commit(self: Box<Self>) {
        let mut state = self.shared.lock();
        state.in_flight -= self.events;
        state.in_flight_bytes -= self.bytes;
        drop(state);
        self.shared.counters.committed.add(self.events as u64);
        self.shared.not_full.notify_waiters();
    }

    fn rollback(self: Box<Self>, events: Vec<Event>) {
        let mut state = self.shared.lock();
        state.in_flight -= self.events;
        state.in_flight_bytes -= self.bytes;
        let mut bytes = 0;
        for event in events.into_iter().rev() {
            let size = event.size_estimate();
            bytes += size;
            state.queue.push_front((event, size));
        }
        state.queued_bytes += bytes;
        drop(state);
        self.shared.counters.rolled_back.add(self.events as u64);
        self.shared.not_empty.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc as StdArc;

    fn events(range: std::ops::Range<u32>) -> Vec<Event> {
        range
            .map(|i| Event::from_body(StdArc::from("t"), i.to_string().into_bytes()))
            .collect()
    }

    fn channel(name: &str, capacity: usize) -> Channel {
        Channel::new(MemoryChannel::new(
            name,
            Capacity {
                events: capacity,
                bytes: 1 << 30,
            },
            FullPolicy::Block,
        ))
    }

    fn limits(events: usize) -> TakeLimits {
        TakeLimits {
            events,
            bytes: 1 << 30,
        }
    }

    fn bodies(take: &Take) -> Vec<String> {
        take.events()
            .iter()
            .map(|e| String::from_utf8(e.body.clone()).unwrap())
            .collect()
    }

    #[tokio::test]
    async fn rollback_returns_events_to_the_front_in_order() {
        let ch = channel("rb", 10);
        ch.put(events(0..5)).await.unwrap();
        let t = ch.take(limits(3), Duration::from_millis(1)).await;
        assert_eq!(bodies(&t), ["0", "1", "2"]);
        t.rollback();
        let t = ch.take(limits(10), Duration::from_millis(1)).await;
        assert_eq!(bodies(&t), ["0", "1", "2", "3", "4"]);
        t.commit();
        assert!(ch.is_empty());
    }

    #[tokio::test]
    async fn a_dropped_transaction_rolls_back() {
        let ch = channel("drop", 10);
        ch.put(events(0..2)).await.unwrap();
        drop(ch.take(limits(2), Duration::from_millis(1)).await);
        assert_eq!(ch.take(limits(2), Duration::from_millis(1)).await.len(), 2);
    }

    #[tokio::test]
    async fn put_waits_for_capacity_held_by_open_transactions() {
        let ch = channel("bp", 4);
        ch.put(events(0..4)).await.unwrap();
        let t = ch.take(limits(4), Duration::from_millis(1)).await;
        // The taken events still hold the capacity: a put must wait.
        let blocked = tokio::time::timeout(Duration::from_millis(50), ch.put(events(4..5))).await;
        assert!(blocked.is_err(), "put must wait while the channel is full");
        let ch2 = ch.clone();
        let waiter = tokio::spawn(async move { ch2.put(events(4..6)).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished());
        t.commit();
        waiter.await.unwrap().unwrap();
        assert_eq!(ch.len(), 2);
    }

    #[tokio::test]
    async fn take_waits_for_the_batch_timeout_then_returns_a_partial_batch() {
        let ch = channel("to", 100);
        ch.put(events(0..3)).await.unwrap();
        let t = ch.take(limits(50), Duration::from_millis(30)).await;
        assert_eq!(t.len(), 3);
        t.commit();
    }

    #[tokio::test]
    async fn close_drains_then_ends() {
        let ch = channel("close", 10);
        ch.put(events(0..2)).await.unwrap();
        ch.close();
        assert!(ch.put(events(2..3)).await.is_err());
        let t = ch.take(limits(10), Duration::from_secs(10)).await;
        assert_eq!(t.len(), 2);
        t.commit();
        assert!(
            ch.take(limits(10), Duration::from_secs(10))
                .await
                .is_empty()
        );
    }

    #[tokio::test]
    async fn oversized_puts_are_split_not_deadlocked() {
        let ch = channel("big", 3);
        let ch2 = ch.clone();
        let producer = tokio::spawn(async move { ch2.put(events(0..7)).await });
        let mut got = Vec::new();
        while got.len() < 7 {
            let t = ch.take(limits(3), Duration::from_millis(5)).await;
            got.extend(bodies(&t));
            t.commit();
        }
        producer.await.unwrap().unwrap();
        assert_eq!(got, (0..7).map(|i| i.to_string()).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn a_take_larger_than_the_channel_returns_when_the_channel_is_full() {
        let ch = channel("small", 511);
        ch.put(events(0..511)).await.unwrap();
        let started = std::time::Instant::now();
        let t = ch.take(limits(512), Duration::from_secs(10)).await;
        assert_eq!(t.len(), 511);
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "must not wait out the timeout"
        );
        t.commit();
    }

    #[tokio::test]
    async fn a_split_put_cut_short_by_close_reports_only_what_did_not_go_in() {
        let ch = channel("split", 3);
        let ch2 = ch.clone();
        let producer = tokio::spawn(async move { ch2.put(events(0..7)).await });
        while ch.len() < 3 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        ch.close();
        let err = producer.await.unwrap().unwrap_err();
        assert_eq!(err.not_put, 4, "3 of 7 went in");
    }

    #[tokio::test]
    async fn capacity_in_bytes_bounds_puts_and_takes() {
        let one = events(0..1)[0].size_estimate();
        let ch = Channel::new(MemoryChannel::new(
            "bytes",
            Capacity {
                events: 1000,
                bytes: one * 4,
            },
            FullPolicy::Block,
        ));
        ch.put(events(0..4)).await.unwrap();
        let blocked = tokio::time::timeout(Duration::from_millis(50), ch.put(events(4..5))).await;
        assert!(blocked.is_err(), "full by bytes");
        let t = ch
            .take(
                TakeLimits {
                    events: 100,
                    bytes: one * 2,
                },
                Duration::from_millis(1),
            )
            .await;
        assert_eq!(t.len(), 2, "a take stops at its byte limit");
        t.commit();
    }

    #[tokio::test]
    async fn drop_policies_never_wait_even_with_a_stuck_taker() {
        let newest = Channel::new(MemoryChannel::new(
            "newest",
            Capacity {
                events: 4,
                bytes: 1 << 30,
            },
            FullPolicy::DropNewest,
        ));
        newest.put(events(0..4)).await.unwrap();
        newest.put(events(4..6)).await.unwrap();
        let t = newest.take(limits(10), Duration::from_millis(1)).await;
        assert_eq!(bodies(&t), ["0", "1", "2", "3"]);

        let oldest = Channel::new(MemoryChannel::new(
            "oldest",
            Capacity {
                events: 4,
                bytes: 1 << 30,
            },
            FullPolicy::DropOldest,
        ));
        oldest.put(events(0..4)).await.unwrap();
        // A stuck sink holds two events in an open transaction.
        let stuck = oldest.take(limits(2), Duration::from_millis(1)).await;
        oldest.put(events(4..8)).await.unwrap();
        let t = oldest.take(limits(10), Duration::from_millis(1)).await;
        assert_eq!(
            bodies(&t),
            ["6", "7"],
            "queued and then the oldest incoming dropped"
        );
        drop(stuck);
    }
}
