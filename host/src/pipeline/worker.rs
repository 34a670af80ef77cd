//! The worker thread of one source: takes batches from the source, runs the chain,
//! puts the results into channels (waiting when they are full: backpressure reaches the
//! source through the bounded queue in front of the worker).

use super::{Chain, Selector};
use crate::event::Event;
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
                    let output = chain.run(batch);
                    for (channel, events) in selector.channels().iter().zip(selector.select(output))
                    {
                        if events.is_empty() {
                            continue;
                        }
                        let n = events.len();
                        if let Err(e) = runtime.block_on(channel.put(events)) {
                            // Channels close only after every worker has finished, so this
                            // is a bug, not a normal path; say so loudly with the count.
                            tracing::error!(source = %source, events = n, "events lost: {e}");
                        }
                    }
                }
            })?;
        Ok((tx, thread))
    }
}
