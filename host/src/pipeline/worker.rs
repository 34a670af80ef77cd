//! The worker thread of one source: takes batches from the source, runs the chain,
//! puts the results into channels (waiting when they are full: backpressure reaches the
//! source through the bounded queue in front of the worker).

use super::{Chain, Selector};
use crate::event::Event;
use crate::internal_events::EventsLost;
use std::panic::AssertUnwindSafe;
use tokio::sync::mpsc;

/// Where a source sends its batches.
pub type WorkerHandle = mpsc::Sender<Vec<Event>>;

pub struct Worker {
    pub chain: Chain,
    pub selector: Selector,
}

impl Worker {
    /// Starts the worker thread. It ends when every sender of the returned handle is
    /// dropped and the queue is empty.
    pub fn spawn(
        self,
        source: &str,
        runtime: tokio::runtime::Handle,
    ) -> std::io::Result<(WorkerHandle, std::thread::JoinHandle<()>)> {
        let (tx, mut rx) = mpsc::channel::<Vec<Event>>(2);
        let source = source.to_owned();
        let Worker {
            mut chain,
            selector,
        } = self;
        let thread = std::thread::Builder::new()
            .name(format!("runnel-{source}"))
            .spawn(move || {
                while let Some(batch) = rx.blocking_recv() {
                    let n = batch.len() as u64;
                    // A bug in the host must not kill the source's pipeline for good.
                    let output =
                        match std::panic::catch_unwind(AssertUnwindSafe(|| chain.run(batch))) {
                            Ok(output) => output,
                            Err(_) => {
                                EventsLost {
                                    count: n,
                                    at: &source,
                                    reason: &"the plugin chain panicked (a bug in the agent)",
                                }
                                .emit();
                                continue;
                            }
                        };
                    for (channel, events) in selector.channels().iter().zip(selector.select(output))
                    {
                        if events.is_empty() {
                            continue;
                        }
                        let n = events.len() as u64;
                        if let Err(e) = runtime.block_on(channel.put(events)) {
                            // Channels close before workers finish only at a forced stop.
                            EventsLost {
                                count: n,
                                at: &source,
                                reason: &e,
                            }
                            .emit();
                        }
                    }
                }
            })?;
        Ok((tx, thread))
    }
}
