//! The channel selector (Flume's multiplexing selector): maps each event's routes to the
//! source's channels and fans it out, cloning only for the second and later channel.

use super::chain::ChainOutput;
use crate::channel::Channel;
use crate::event::Event;
use crate::metrics::{Counter, Registry};

/// Where a source's events go.
pub struct Selector {
    channels: Vec<Channel>,
    default: Vec<usize>,
    dead_letter: Vec<usize>,
    /// For each router route (by index): channel indices; empty means "default".
    routes: Vec<Vec<usize>>,
    route_counters: Vec<Counter>,
    default_counter: Counter,
    dead_letter_counter: Counter,
}

impl Selector {
    /// `channels` are the distinct channels this source writes to; the other arguments
    /// index into it. `routes[i]` holds the name and channels of router route i.
    pub fn new(
        source: &str,
        channels: Vec<Channel>,
        default: Vec<usize>,
        dead_letter: Vec<usize>,
        routes: Vec<(String, Vec<usize>)>,
    ) -> Self {
        let r = Registry::global();
        Self {
            route_counters: routes
                .iter()
                .map(|(name, _)| r.counter(&format!("route.{source}.{name}"), "events"))
                .collect(),
            routes: routes.into_iter().map(|(_, targets)| targets).collect(),
            default_counter: r.counter(&format!("route.{source}.default"), "events"),
            dead_letter_counter: r.counter(&format!("route.{source}.dead_letter"), "events"),
            channels,
            default,
            dead_letter,
        }
    }

    pub fn channels(&self) -> &[Channel] {
        &self.channels
    }

    /// Splits the chain's output into one batch per channel (indexed like `channels`).
    pub fn select(&self, output: ChainOutput) -> Vec<Vec<Event>> {
        let ChainOutput {
            events,
            masks,
            dead_letter,
            state: _,
        } = output;
        let mut per_channel: Vec<Vec<Event>> =
            (0..self.channels.len()).map(|_| Vec::new()).collect();
        self.dead_letter_counter.add(dead_letter.len() as u64);
        let routed = masks.iter().any(|&m| m != 0);
        if !routed {
            // Every event goes to the default channels: hand the batch over whole.
            self.default_counter.add(events.len() as u64);
            if let Some((&last, rest)) = self.default.split_last() {
                for &t in rest {
                    per_channel[t].extend(events.iter().cloned());
                }
                per_channel[last] = events;
            }
        } else {
            let mut targets: Vec<usize> = Vec::with_capacity(self.channels.len());
            let mut default_count = 0u64;
            for (event, &mask) in events.into_iter().zip(&masks) {
                targets.clear();
                let mut bits = mask;
                while bits != 0 {
                    let i = bits.trailing_zeros() as usize;
                    bits &= bits - 1;
                    if let Some(route) = self.routes.get(i) {
                        self.route_counters[i].add(1);
                        for &t in route {
                            if !targets.contains(&t) {
                                targets.push(t);
                            }
                        }
                    }
                }
                if targets.is_empty() {
                    default_count += 1;
                    targets.extend_from_slice(&self.default);
                }
                fan_out(&mut per_channel, &targets, event);
            }
            self.default_counter.add(default_count);
        }
        for event in dead_letter {
            fan_out(&mut per_channel, &self.dead_letter, event);
        }
        per_channel
    }
}

fn fan_out(per_channel: &mut [Vec<Event>], targets: &[usize], event: Event) {
    if let Some((&last, rest)) = targets.split_last() {
        for &t in rest {
            per_channel[t].push(event.clone());
        }
        per_channel[last].push(event);
    }
}
