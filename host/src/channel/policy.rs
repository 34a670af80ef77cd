//! What every channel type shares: its capacity (events and bytes) and what a put does
//! when the channel is full.

use serde::Deserialize;

/// What a put does when the channel is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FullPolicy {
    /// Wait for room: backpressure reaches the sources (Flume's behaviour).
    #[default]
    Block,
    /// Drop the events being put (counted as `events_dropped_full`).
    DropNewest,
    /// Drop the oldest queued events to make room (counted as `events_dropped_full`).
    DropOldest,
}

impl FullPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            FullPolicy::Block => "block",
            FullPolicy::DropNewest => "drop_newest",
            FullPolicy::DropOldest => "drop_oldest",
        }
    }
}

/// How much a channel holds at most: both bounds apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capacity {
    pub events: usize,
    pub bytes: usize,
}

impl Capacity {
    /// Whether `events`/`bytes` more fit next to what is held. A lone batch larger than
    /// the byte bound fits an empty channel (it could never fit otherwise).
    pub fn fits(&self, held_events: usize, held_bytes: usize, events: usize, bytes: usize) -> bool {
        held_events + events <= self.events
            && (held_bytes + bytes <= self.bytes || held_events == 0)
    }

    /// Like [`fits`](Self::fits) for a put that may be larger than the channel: such a
    /// put fits an empty channel (the channel then takes it in several transactions).
    pub fn fits_or_empty(
        &self,
        held_events: usize,
        held_bytes: usize,
        events: usize,
        bytes: usize,
    ) -> bool {
        held_events == 0 || self.fits(held_events, held_bytes, events.min(self.events), bytes)
    }
}
