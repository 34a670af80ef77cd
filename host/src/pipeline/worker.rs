//! The worker thread of one source: takes batches from the source, runs the chain,
//! puts the results into channels (waiting when they are full: backpressure reaches the
//! source through the bounded queue in front of the worker). When the chain has
//! processors that tick, the worker also wakes for their ticks, and gives them a last
//! one when the source has ended.

use super::{Chain, ChainOutput, Selector};
use crate::internal_events::EventsLost;
use crate::source::{Ack, Batch, Checkpoint};
use std::panic::AssertUnwindSafe;
use tokio::sync::mpsc;

/// Where a source sends its batches.
pub type WorkerHandle = mpsc::Sender<Batch>;

pub struct Worker {
    pub chain: Chain,
    pub selector: Selector,
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
                    let (batch, ack, all) = match wake {
                        Wake::Batch(Batch { events, ack }) => (Some(events), ack, false),
                        Wake::Tick => (None, None, false),
                        Wake::Closed => (None, None, true),
                    };
                    let n = batch.as_ref().map_or(0, Vec::len) as u64;
                    // A bug in the host must not kill the source's pipeline for good.
                    let output = std::panic::catch_unwind(AssertUnwindSafe(|| match batch {
                        Some(events) => chain.run(events),
                        None => chain.tick(std::time::Instant::now(), all),
                    }));
                    match output {
                        Ok(output) => deliver(output, ack),
                        Err(_) => EventsLost {
                            count: n,
                            at: &source,
                            reason: &"the plugin chain panicked (a bug in the agent)",
                        }
                        .emit(),
                    }
                    if all {
                        break;
                    }
                }
            })?;
        Ok((tx, thread))
    }
}

/// Puts a chain's output into the source's channels. With a source's `ack`, the batch's
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
) {
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
}
