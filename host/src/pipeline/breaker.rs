//! A circuit breaker per chain step: a plugin whose every call fails, batch after batch,
//! is not called for a while — its events get the step's `on_error` at once instead of
//! costing a failed call (or a deadline) each. After the back-off one batch is let
//! through (half open): if any call on it succeeds the breaker closes, otherwise it opens
//! again for twice as long, up to [`MAX_BACKOFF`].

use std::time::{Duration, Instant};

/// Batches in a row on which every call failed before the breaker opens.
pub const OPEN_AFTER: u32 = 3;
pub const FIRST_BACKOFF: Duration = Duration::from_secs(1);
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed {
        failed_batches: u32,
    },
    Open {
        until: Instant,
    },
    /// One batch is being let through.
    HalfOpen,
}

/// What changed after a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Opened { backoff: Duration },
    Closed,
}

#[derive(Debug)]
pub struct Breaker {
    state: State,
    backoff: Duration,
}

impl Default for Breaker {
    fn default() -> Self {
        Self {
            state: State::Closed { failed_batches: 0 },
            backoff: FIRST_BACKOFF,
        }
    }
}

impl Breaker {
    /// Whether the plugin may be called for a batch at `now`; `Err` with the time left
    /// while the breaker is open.
    pub fn allow(&mut self, now: Instant) -> Result<(), Duration> {
        match self.state {
            State::Open { until } if now < until => Err(until - now),
            State::Open { .. } => {
                self.state = State::HalfOpen;
                Ok(())
            }
            State::Closed { .. } | State::HalfOpen => Ok(()),
        }
    }

    /// Records how a batch went: `all_failed` when no call on it succeeded.
    pub fn record(&mut self, all_failed: bool, now: Instant) -> Option<Change> {
        match (self.state, all_failed) {
            (State::Closed { failed_batches }, true) => {
                let failed_batches = failed_batches + 1;
                if failed_batches >= OPEN_AFTER {
                    Some(self.open(now))
                } else {
                    self.state = State::Closed { failed_batches };
                    None
                }
            }
            (State::Closed { .. }, false) => {
                self.state = State::Closed { failed_batches: 0 };
                None
            }
            (State::HalfOpen, true) => {
                self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
                Some(self.open(now))
            }
            (State::HalfOpen, false) => {
                self.state = State::Closed { failed_batches: 0 };
                self.backoff = FIRST_BACKOFF;
                Some(Change::Closed)
            }
            // Not called while open: nothing to record.
            (State::Open { .. }, _) => None,
        }
    }

    fn open(&mut self, now: Instant) -> Change {
        self.state = State::Open {
            until: now + self.backoff,
        };
        Change::Opened {
            backoff: self.backoff,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_failed_batches_in_a_row_and_backs_off_doubling() {
        let mut b = Breaker::default();
        let t0 = Instant::now();
        assert_eq!(b.record(true, t0), None);
        // A good batch in between starts the count again.
        assert_eq!(b.record(false, t0), None);
        assert_eq!(b.record(true, t0), None);
        assert_eq!(b.record(true, t0), None);
        assert_eq!(
            b.record(true, t0),
            Some(Change::Opened {
                backoff: FIRST_BACKOFF
            })
        );
        assert_eq!(b.allow(t0), Err(FIRST_BACKOFF));
        // After the back-off one batch goes through; it fails: twice as long.
        let t1 = t0 + FIRST_BACKOFF;
        assert_eq!(b.allow(t1), Ok(()));
        assert_eq!(
            b.record(true, t1),
            Some(Change::Opened {
                backoff: 2 * FIRST_BACKOFF
            })
        );
        assert!(b.allow(t1 + FIRST_BACKOFF).is_err());
        let t2 = t1 + 2 * FIRST_BACKOFF;
        assert_eq!(b.allow(t2), Ok(()));
        // It works again: closed, and the back-off starts over.
        assert_eq!(b.record(false, t2), Some(Change::Closed));
        assert_eq!(b.allow(t2), Ok(()));
        for _ in 0..OPEN_AFTER - 1 {
            b.record(true, t2);
        }
        assert_eq!(
            b.record(true, t2),
            Some(Change::Opened {
                backoff: FIRST_BACKOFF
            })
        );
    }

    #[test]
    fn the_backoff_is_capped() {
        let mut b = Breaker::default();
        let mut now = Instant::now();
        for _ in 0..OPEN_AFTER {
            b.record(true, now);
        }
        for _ in 0..20 {
            now += MAX_BACKOFF;
            assert_eq!(b.allow(now), Ok(()));
            b.record(true, now);
        }
        assert_eq!(b.allow(now), Err(MAX_BACKOFF));
    }
}
