//! The worker thread of one source: takes batches from the source, runs the chain,
//! puts the results into channels (waiting when they are full: backpressure reaches the
//! source through the bounded queue in front of the worker). When the chain has
//! processors that tick, the worker also wakes for their ticks, and gives them a last
//! one when the source has ended.
//!
//! A batch larger than the source's `batch_size` / `batch_bytes` (an `http` request or a
//! `forward` batch, which arrive whole) runs through the chain in source-sized parts,
//! each put before the next is processed; the source's acknowledgement goes with the
//! last part, once every part is in.

use super::{Chain, ChainOutput, Selector};
use crate::config::BatchSpec;
use crate::event::Event;
use crate::internal_events::EventsLost;
use crate::source::{Ack, Batch, Checkpoint};
use std::panic::AssertUnwindSafe;
use tokio::sync::mpsc;

/// Where a source sends its batches.
pub type WorkerHandle = mpsc::Sender<Batch>;

pub struct Worker {
    pub chain: Chain,
    pub selector: Selector,
    /// The source's batch limits: what the chain is handed at most at once.
    pub batch: BatchSpec,
}

/// What the worker wakes up for.
enum Wake {
    Batch(Batch),
    Tick,
    /// The source has ended and its queue is empty.
    Closed,
}

impl Worker {
    /// Starts the worker thread. It ends when every sender of the returned handle is
    /// dropped and the queue is empty.
    pub fn spawn(
        self,
        source: &str,
        runtime: tokio::runtime::Handle,
    ) -> std::io::Result<(WorkerHandle, std::thread::JoinHandle<()>)> {
        let (tx, mut rx) = mpsc::channel::<Batch>(2);
        let source = source.to_owned();
        let Worker {
            mut chain,
            selector,
            batch: limits,
        } = self;
        let thread = std::thread::Builder::new()
            .name(format!("runnel-{source}"))
            .spawn(move || {
                let deliver = |output: ChainOutput, ack: Option<Ack>| {
                    put(&runtime, &selector, &source, output, ack)
                };
                loop {
                    let wake = match chain.next_tick() {
                        None => rx.blocking_recv().map_or(Wake::Closed, Wake::Batch),
                        Some(at) => runtime.block_on(async {
                            match tokio::time::timeout_at(at.into(), rx.recv()).await {
                                Ok(Some(batch)) => Wake::Batch(batch),
                                Ok(None) => Wake::Closed,
                                Err(_) => Wake::Tick,
                            }
                        }),
                    };
                    let (parts, mut ack, all) = match wake {
                        Wake::Batch(Batch { events, ack }) => (parts(events, limits), ack, false),
                        Wake::Tick => (vec![None], None, false),
                        Wake::Closed => (vec![None], None, true),
                    };
                    let last = parts.len() - 1;
                    let mut all_put = true;
                    for (i, part) in parts.into_iter().enumerate() {
                        let n = part.as_ref().map_or(0, Vec::len) as u64;
                        // A bug in the host must not kill the source's pipeline for good.
                        let output = std::panic::catch_unwind(AssertUnwindSafe(|| match part {
                            Some(events) => chain.run(events),
                            None => chain.tick(std::time::Instant::now(), all),
                        }));
                        // The acknowledgement goes with the last part, if all went in.
                        let with = if i == last && all_put {
                            ack.take()
                        } else {
                            None
                        };
                        all_put &= match output {
                            Ok(output) => deliver(output, with),
                            Err(_) => {
                                EventsLost {
                                    count: n,
                                    at: &source,
                                    reason: &"the plugin chain panicked (a bug in the agent)",
                                }
                                .emit();
                                false
                            }
                        };
                    }
                    if all {
                        break;
                    }
                }
            })?;
        Ok((tx, thread))
    }
}

/// A batch in parts the chain may take at once, cut as the source's batcher cuts: after
/// `limits.size` events, or after the event that brings the body bytes to
/// `limits.bytes`. A batch the batcher made is one part.
fn parts(mut events: Vec<Event>, limits: BatchSpec) -> Vec<Option<Vec<Event>>> {
    let first_cut = |events: &[Event]| {
        let mut bytes = 0;
        for (i, event) in events.iter().enumerate() {
            bytes += event.body.len();
            if i + 1 >= limits.size || bytes >= limits.bytes {
                return i + 1;
            }
        }
        events.len()
    };
    let mut parts = Vec::new();
    loop {
        let cut = first_cut(&events);
        if cut == events.len() {
            parts.push(Some(events));
            return parts;
        }
        let rest = events.split_off(cut);
        parts.push(Some(std::mem::replace(&mut events, rest)));
    }
}

/// Puts a chain's output into the source's channels; true when all of it went in. With a source's `ack`, the batch's
/// read positions go with its last durable put, and the source is told once all is in.
/// The plugin state changes the batch made go in the same record (into the first
/// durable channel, without events, when no durable channel gets any), and become
/// durable in their stores once every put is done.
fn put(
    runtime: &tokio::runtime::Handle,
    selector: &Selector,
    source: &str,
    mut output: ChainOutput,
    ack: Option<Ack>,
) -> bool {
    let journal = std::mem::take(&mut output.state);
    let selected = selector.select(output);
    let channels = selector.channels();
    // The source's positions go with the batch's last durable put, made after the
    // others: stored, they say the whole batch is.
    let last_durable = selected
        .iter()
        .zip(channels)
        .rposition(|(events, channel)| !events.is_empty() && channel.is_durable())
        .or_else(|| {
            // State changes are stored even when no event is.
            (!journal.is_empty())
                .then(|| channels.iter().position(|c| c.is_durable()))
                .flatten()
        });
    // Made only when a durable channel keeps it.
    let checkpoint = last_durable
        .filter(|_| ack.is_some() || !journal.is_empty())
        .map(|_| {
            let mut checkpoint = match &ack {
                Some(ack) => ack.checkpoint(),
                None => Checkpoint {
                    source: source.into(),
                    seq: 0,
                    positions: Vec::new(),
                    state: Vec::new(),
                },
            };
            checkpoint.state = journal.commits();
            checkpoint
        });
    let mut all_put = true;
    for (i, (channel, events)) in channels.iter().zip(selected).enumerate() {
        let with = checkpoint.as_ref().filter(|_| Some(i) == last_durable);
        if events.is_empty() && with.is_none() {
            continue;
        }
        if let Err(e) = runtime.block_on(channel.put_checkpointed(events, with)) {
            // Channels close before workers finish only at a forced stop. Parts of a
            // split put that went in are not lost.
            all_put = false;
            EventsLost {
                count: e.not_put as u64,
                at: source,
                reason: &e,
            }
            .emit();
        }
    }
    if all_put {
        journal.applied();
        // The source may now persist the positions this batch covers.
        if let Some(ack) = ack {
            ack.done();
        }
    }
    all_put
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn events(bodies: &[usize]) -> Vec<Event> {
        bodies
            .iter()
            .enumerate()
            .map(|(i, len)| {
                let mut body = vec![b'x'; *len];
                body[0] = b'a' + i as u8;
                Event::from_body("t".into(), body)
            })
            .collect()
    }

    fn firsts(parts: Vec<Option<Vec<Event>>>) -> Vec<Vec<u8>> {
        parts
            .into_iter()
            .map(|p| p.unwrap().iter().map(|e| e.body[0]).collect())
            .collect()
    }

    #[test]
    fn a_large_batch_is_cut_into_source_sized_parts_in_order() {
        let limits = BatchSpec {
            size: 3,
            bytes: 10,
            timeout: Duration::from_secs(1),
        };
        assert_eq!(firsts(parts(events(&[1, 1, 1]), limits)), [b"abc".to_vec()]);
        // By count: 3, 3, 1.
        assert_eq!(
            firsts(parts(events(&[1; 7]), limits)),
            [b"abc".to_vec(), b"def".to_vec(), b"g".to_vec()]
        );
        // By bytes: the third 4 brings the part to 10 or more; a lone 20 is a part.
        assert_eq!(
            firsts(parts(events(&[4, 4, 4, 20, 1]), limits)),
            [b"abc".to_vec(), b"d".to_vec(), b"e".to_vec()]
        );
        assert_eq!(firsts(parts(Vec::new(), limits)), [Vec::<u8>::new()]);
    }
}
