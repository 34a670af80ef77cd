//! When a sink closes the file it writes and starts the next: by size, by number of
//! events, by age — the limits the `file` and `webhdfs` sinks share. Only whole batches
//! go into a file, so a file always ends at a batch boundary.

use std::time::{Duration, Instant};

/// The limits of one file; a sink rolls when one is set ([`RollLimits::any`]).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct RollLimits {
    pub max_bytes: Option<u64>,
    pub max_events: Option<u64>,
    pub interval: Option<Duration>,
}

/// What a sink knows of the file it writes, to decide when to roll it.
#[derive(Debug, Clone, Copy)]
pub struct Current {
    pub bytes: u64,
    /// Events in it (its lines, when the agent found it there).
    pub events: u64,
    /// When the agent opened it (a restart counts from then).
    pub opened: Instant,
}

impl Current {
    /// A file of `bytes` and `events` opened now.
    pub fn new(bytes: u64, events: u64) -> Self {
        Self {
            bytes,
            events,
            opened: Instant::now(),
        }
    }
}

impl RollLimits {
    /// From a sink's `roll_bytes`, `roll_events` and `roll_interval_secs`.
    pub fn new(bytes: Option<u64>, events: Option<u64>, interval_secs: Option<u64>) -> Self {
        Self {
            max_bytes: bytes,
            max_events: events,
            interval: interval_secs.map(Duration::from_secs),
        }
    }

    /// Whether any limit is set.
    pub fn any(&self) -> bool {
        self.max_bytes.is_some() || self.max_events.is_some() || self.interval.is_some()
    }

    /// Whether the file must be rolled before a batch of `bytes` and `events` goes in.
    /// An empty file is never rolled: a batch larger than `max_bytes` fills a file alone.
    pub fn due(&self, current: &Current, bytes: u64, events: u64) -> bool {
        current.bytes > 0 && (self.full(current, bytes, events) || self.expired(current))
    }

    /// Whether the file has been open for `interval` (rolled then even with no batch).
    pub fn expired(&self, current: &Current) -> bool {
        self.interval
            .is_some_and(|age| current.opened.elapsed() >= age)
    }

    fn full(&self, current: &Current, bytes: u64, events: u64) -> bool {
        self.max_bytes
            .is_some_and(|max| current.bytes + bytes > max)
            || self
                .max_events
                .is_some_and(|max| current.events + events > max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn current(bytes: u64, events: u64) -> Current {
        Current::new(bytes, events)
    }

    #[test]
    fn a_roll_is_due_before_a_batch_would_pass_a_limit_but_never_on_an_empty_file() {
        let bytes = RollLimits::new(Some(100), None, None);
        assert!(!bytes.due(&current(60, 1), 40, 1));
        assert!(bytes.due(&current(60, 1), 41, 1));
        assert!(
            !bytes.due(&current(0, 0), 1000, 10),
            "an oversized batch fills a file alone"
        );
        let events = RollLimits::new(None, Some(10), None);
        assert!(!events.due(&current(5, 8), 5, 2));
        assert!(events.due(&current(5, 8), 5, 3));
        let age = RollLimits::new(None, None, Some(0));
        assert!(age.due(&current(1, 1), 1, 1));
        assert!(!age.due(&current(0, 0), 1, 1));
        assert!(!RollLimits::default().any() && age.any());
    }
}
