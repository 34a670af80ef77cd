//! Who sends a batch: one sink, or a group of sinks of one channel behind one driver
//! (Flume's sink processors). A member that fails a send (a retryable error) is set
//! aside for a backoff that doubles while it keeps failing and resets when it succeeds;
//! the batch goes at once to another member when there is one.
//!
//! - `failover`: each batch goes to the first member, in the order listed (priority),
//!   that is not set aside; when the first comes back, traffic returns to it.
//! - `load_balance`: batches go to the members not set aside in turn (`round_robin`) or
//!   at random (`random`).
//!
//! A lone sink is a group of one: it waits out its backoff and tries again.

use super::{Backoff, SinkService};
use crate::internal_events::SinkCounters;
use serde::Deserialize;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How a group picks the member for a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupMode {
    Failover,
    LoadBalance,
}

/// How `load_balance` spreads batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Selector {
    #[default]
    RoundRobin,
    Random,
}

/// One sink of a group.
pub struct Member {
    pub name: String,
    pub service: Arc<dyn SinkService>,
    pub counters: Arc<SinkCounters>,
    health: Mutex<Health>,
}

struct Health {
    /// Set aside until then, after a failed send.
    down_until: Option<Instant>,
    backoff: Backoff,
}

/// The members of a sink (one) or of a group, and how they are picked.
pub struct Members {
    members: Vec<Member>,
    mode: GroupMode,
    selector: Selector,
    retry: (Duration, Duration),
    turn: AtomicUsize,
    seed: AtomicU64,
}

impl Members {
    /// `members`: (name, service) in priority order; `retry`: the backoff's first and
    /// longest delay.
    pub fn new(
        members: Vec<(String, Arc<dyn SinkService>)>,
        mode: GroupMode,
        selector: Selector,
        retry: (Duration, Duration),
    ) -> Self {
        let members = members
            .into_iter()
            .map(|(name, service)| Member {
                counters: Arc::new(SinkCounters::new(&name)),
                name,
                service,
                health: Mutex::new(Health {
                    down_until: None,
                    backoff: Backoff::new(retry.0, retry.1),
                }),
            })
            .collect();
        Self {
            members,
            mode,
            selector,
            retry,
            turn: AtomicUsize::new(0),
            seed: AtomicU64::new(0x2545_F491_4F6C_DD1D),
        }
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    pub fn get(&self, i: usize) -> &Member {
        &self.members[i]
    }

    /// The member to send the next batch to; or, when every member is set aside, the
    /// moment the first of them comes back.
    pub fn pick(&self, now: Instant) -> Result<usize, Instant> {
        let up: Vec<usize> = (0..self.members.len())
            .filter(|&i| self.down_until(i).is_none_or(|t| t <= now))
            .collect();
        if up.is_empty() {
            let back = (0..self.members.len())
                .filter_map(|i| self.down_until(i))
                .min()
                .unwrap_or(now);
            return Err(back);
        }
        let i = match (self.mode, self.selector) {
            (GroupMode::Failover, _) => 0,
            (GroupMode::LoadBalance, Selector::RoundRobin) => {
                self.turn.fetch_add(1, Ordering::Relaxed) % up.len()
            }
            (GroupMode::LoadBalance, Selector::Random) => {
                (self.next_random() % up.len() as u64) as usize
            }
        };
        Ok(up[i])
    }

    /// Sets member `i` aside after a failed send: for `after` when the destination said
    /// how long (capped by the longest backoff), else for its next backoff. Returns the
    /// delay.
    pub fn failed(&self, i: usize, after: Option<Duration>) -> Duration {
        let mut health = self.health(i);
        let delay = match after {
            Some(after) => after.min(self.retry.1),
            None => health.backoff.next_delay(),
        };
        health.down_until = Some(Instant::now() + delay);
        delay
    }

    /// Member `i` delivered: its backoff starts over.
    pub fn succeeded(&self, i: usize) {
        let mut health = self.health(i);
        if health.down_until.is_some() {
            health.down_until = None;
            health.backoff = Backoff::new(self.retry.0, self.retry.1);
        }
    }

    fn down_until(&self, i: usize) -> Option<Instant> {
        self.health(i).down_until
    }

    fn health(&self, i: usize) -> std::sync::MutexGuard<'_, Health> {
        self.members[i]
            .health
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// xorshift64*: enough to spread batches.
    fn next_random(&self) -> u64 {
        let mut x = self.seed.load(Ordering::Relaxed);
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.seed.store(x, Ordering::Relaxed);
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Event;
    use crate::sink::{Payload, SendError};
    use futures_util::future::BoxFuture;

    struct Nowhere;

    impl SinkService for Nowhere {
        fn encode(&self, _: &[Event], _: &mut Vec<u8>) {}
        fn send(self: Arc<Self>, _: Arc<Payload>) -> BoxFuture<'static, Result<(), SendError>> {
            Box::pin(async { Ok(()) })
        }
    }

    fn group(mode: GroupMode, selector: Selector, n: usize) -> Members {
        let members = (0..n)
            .map(|i| (format!("s{i}"), Arc::new(Nowhere) as Arc<dyn SinkService>))
            .collect();
        Members::new(
            members,
            mode,
            selector,
            (Duration::from_millis(100), Duration::from_millis(400)),
        )
    }

    #[test]
    fn failover_takes_the_first_member_up_and_returns_to_it_when_it_is_back() {
        let g = group(GroupMode::Failover, Selector::RoundRobin, 3);
        let now = Instant::now();
        assert_eq!(g.pick(now), Ok(0));
        let delay = g.failed(0, None);
        assert!(delay >= Duration::from_millis(50) && delay <= Duration::from_millis(100));
        assert_eq!(g.pick(Instant::now()), Ok(1));
        g.failed(1, Some(Duration::from_secs(60)));
        assert_eq!(g.pick(Instant::now()), Ok(2));
        // The primary's backoff over: traffic returns to it.
        assert_eq!(g.pick(Instant::now() + Duration::from_millis(101)), Ok(0));
        // All set aside: when the first comes back (the 60 s is capped at 400 ms).
        g.failed(2, None);
        let back = g.pick(Instant::now()).unwrap_err();
        assert!(back <= Instant::now() + Duration::from_millis(400));
        g.succeeded(0);
        assert_eq!(g.pick(Instant::now()), Ok(0));
    }

    #[test]
    fn a_members_backoff_doubles_while_it_fails_and_resets_when_it_delivers() {
        let g = group(GroupMode::Failover, Selector::RoundRobin, 1);
        let delays: Vec<Duration> = (0..4).map(|_| g.failed(0, None)).collect();
        assert!(delays[3] > Duration::from_millis(200), "{delays:?}");
        g.succeeded(0);
        assert!(g.failed(0, None) <= Duration::from_millis(100));
    }

    #[test]
    fn load_balance_spreads_batches_over_the_members_up() {
        let g = group(GroupMode::LoadBalance, Selector::RoundRobin, 3);
        let now = Instant::now();
        let picks: Vec<usize> = (0..6).map(|_| g.pick(now).unwrap()).collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
        g.failed(1, Some(Duration::from_secs(1)));
        let now = Instant::now();
        assert!((0..6).all(|_| g.pick(now).unwrap() != 1));

        let g = group(GroupMode::LoadBalance, Selector::Random, 3);
        let mut seen = [0; 3];
        for _ in 0..300 {
            seen[g.pick(now).unwrap()] += 1;
        }
        assert!(seen.iter().all(|&n| n > 50), "{seen:?}");
    }
}
