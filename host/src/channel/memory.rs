//! The memory channel: a bounded in-memory queue. Fast; loses its contents if the agent
//! dies (a durable file channel is the answer to that).

use super::Closed;
use crate::event::Event;
use crate::metrics::{Counter, Registry};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

/// A bounded queue of events. Cheap to clone; clones are the same channel.
#[derive(Clone)]
pub struct MemoryChannel {
    shared: Arc<Shared>,
}

struct Shared {
    name: String,
    capacity: usize,
    state: Mutex<State>,
    /// Woken when events are put or rolled back, and on close.
    not_empty: Notify,
    /// Woken when capacity is freed (commit) and on close.
    not_full: Notify,
    put: Counter,
    taken: Counter,
    rolled_back: Counter,
}

#[derive(Default)]
struct State {
    queue: VecDeque<Event>,
    /// Taken by open transactions: they still hold capacity until committed.
    in_flight: usize,
    closed: bool,
}

impl MemoryChannel {
    pub fn new(name: &str, capacity: usize) -> Self {
        let component = format!("channel.{name}");
        let registry = Registry::global();
        Self {
            shared: Arc::new(Shared {
                name: name.to_owned(),
                capacity: capacity.max(1),
                state: Mutex::new(State::default()),
                not_empty: Notify::new(),
                not_full: Notify::new(),
                put: registry.counter(&component, "events_put"),
                taken: registry.counter(&component, "events_committed"),
                rolled_back: registry.counter(&component, "events_rolled_back"),
            }),
        }
    }

    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// Events queued plus events held by open transactions.
    pub fn len(&self) -> usize {
        let state = self.shared.lock();
        state.queue.len() + state.in_flight
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Puts `events` as one transaction: all become visible together, once there is room
    /// for all of them (backpressure: the caller waits). A batch larger than the
    /// capacity goes in capacity-sized transactions.
    pub async fn put(&self, mut events: Vec<Event>) -> Result<(), Closed> {
        while events.len() > self.shared.capacity {
            let rest = events.split_off(self.shared.capacity);
            self.put_one(events).await?;
            events = rest;
        }
        self.put_one(events).await
    }

    async fn put_one(&self, events: Vec<Event>) -> Result<(), Closed> {
        if events.is_empty() {
            return Ok(());
        }
        let n = events.len();
        loop {
            let room = self.shared.not_full.notified();
            {
                let mut state = self.shared.lock();
                if state.closed {
                    return Err(Closed(self.shared.name.clone()));
                }
                if state.queue.len() + state.in_flight + n <= self.shared.capacity {
                    state.queue.extend(events);
                    drop(state);
                    self.shared.put.add(n as u64);
                    self.shared.not_empty.notify_waiters();
                    return Ok(());
                }
            }
            room.await;
        }
    }

    /// Opens a take transaction of up to `max` events. Waits for the first event, then up
    /// to `timeout` more for the batch to fill (Flume's batchSize / batchTimeout). Returns
    /// an empty transaction only when the channel is closed and drained.
    pub async fn take(&self, max: usize, timeout: Duration) -> Take {
        let max = max.max(1);
        let mut deadline: Option<Instant> = None;
        loop {
            let more = self.shared.not_empty.notified();
            {
                let mut state = self.shared.lock();
                let available = state.queue.len();
                let expired = deadline.is_some_and(|d| Instant::now() >= d);
                if available >= max
                    || (available > 0 && (expired || state.closed))
                    || (available == 0 && state.closed)
                {
                    let n = available.min(max);
                    let events: Vec<Event> = state.queue.drain(..n).collect();
                    state.in_flight += n;
                    return Take {
                        events,
                        shared: self.shared.clone(),
                        open: true,
                    };
                }
                if available == 0 {
                    // Another taker got there first: wait for the next put, not the old
                    // deadline (which would spin).
                    deadline = None;
                } else if deadline.is_none() {
                    deadline = Some(Instant::now() + timeout);
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

    /// No more puts; takers drain what is left, then get empty transactions.
    pub fn close(&self) {
        self.shared.lock().closed = true;
        self.shared.not_empty.notify_waiters();
        self.shared.not_full.notify_waiters();
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// An open take transaction. Commit it once its events are delivered; roll it back (or
/// drop it) to return them to the front of the channel.
#[must_use = "commit or roll back the transaction"]
pub struct Take {
    events: Vec<Event>,
    shared: Arc<Shared>,
    open: bool,
}

impl Take {
    pub fn events(&self) -> &[Event] {
        &self.events
    }

    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// The events are delivered: free their capacity.
    pub fn commit(mut self) {
        self.open = false;
        let n = self.events.len();
        self.shared.lock().in_flight -= n;
        self.shared.taken.add(n as u64);
        self.shared.not_full.notify_waiters();
    }

    /// The events were not delivered: put them back, in order, at the front.
    pub fn rollback(mut self) {
        self.restore();
    }

    fn restore(&mut self) {
        if !self.open {
            return;
        }
        self.open = false;
        let events = std::mem::take(&mut self.events);
        let n = events.len();
        let mut state = self.shared.lock();
        state.in_flight -= n;
        for event in events.into_iter().rev() {
            state.queue.push_front(event);
        }
        drop(state);
        self.shared.rolled_back.add(n as u64);
        self.shared.not_empty.notify_waiters();
    }
}

impl Drop for Take {
    fn drop(&mut self) {
        self.restore();
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

    fn bodies(take: &Take) -> Vec<String> {
        take.events()
            .iter()
            .map(|e| String::from_utf8(e.body.clone()).unwrap())
            .collect()
    }

    #[tokio::test]
    async fn rollback_returns_events_to_the_front_in_order() {
        let ch = MemoryChannel::new("rb", 10);
        ch.put(events(0..5)).await.unwrap();
        let t = ch.take(3, Duration::from_millis(1)).await;
        assert_eq!(bodies(&t), ["0", "1", "2"]);
        t.rollback();
        let t = ch.take(10, Duration::from_millis(1)).await;
        assert_eq!(bodies(&t), ["0", "1", "2", "3", "4"]);
        t.commit();
        assert!(ch.is_empty());
    }

    #[tokio::test]
    async fn a_dropped_transaction_rolls_back() {
        let ch = MemoryChannel::new("drop", 10);
        ch.put(events(0..2)).await.unwrap();
        drop(ch.take(2, Duration::from_millis(1)).await);
        assert_eq!(ch.take(2, Duration::from_millis(1)).await.len(), 2);
    }

    #[tokio::test]
    async fn put_waits_for_capacity_held_by_open_transactions() {
        let ch = MemoryChannel::new("bp", 4);
        ch.put(events(0..4)).await.unwrap();
        let t = ch.take(4, Duration::from_millis(1)).await;
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
        let ch = MemoryChannel::new("to", 100);
        ch.put(events(0..3)).await.unwrap();
        let t = ch.take(50, Duration::from_millis(30)).await;
        assert_eq!(t.len(), 3);
        t.commit();
    }

    #[tokio::test]
    async fn close_drains_then_ends() {
        let ch = MemoryChannel::new("close", 10);
        ch.put(events(0..2)).await.unwrap();
        ch.close();
        assert!(ch.put(events(2..3)).await.is_err());
        let t = ch.take(10, Duration::from_secs(10)).await;
        assert_eq!(t.len(), 2);
        t.commit();
        assert!(ch.take(10, Duration::from_secs(10)).await.is_empty());
    }

    #[tokio::test]
    async fn oversized_puts_are_split_not_deadlocked() {
        let ch = MemoryChannel::new("big", 3);
        let ch2 = ch.clone();
        let producer = tokio::spawn(async move { ch2.put(events(0..7)).await });
        let mut got = Vec::new();
        while got.len() < 7 {
            let t = ch.take(3, Duration::from_millis(5)).await;
            got.extend(bodies(&t));
            t.commit();
        }
        producer.await.unwrap().unwrap();
        assert_eq!(got, (0..7).map(|i| i.to_string()).collect::<Vec<_>>());
    }
}
