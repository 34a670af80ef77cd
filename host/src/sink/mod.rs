//! Sinks: take batches from a channel in a transaction, encode them (the request
//! builder), write them (the driver retries with backoff), and commit only what was
//! written. While a write fails the batch stays taken and uncommitted (order is kept);
//! if the agent must stop first, the batch is rolled back into the channel.

mod console;
mod file;

use crate::channel::MemoryChannel;
use crate::config::{BatchSpec, SinkKind, SinkSpec};
use crate::encoding::Format;
use crate::internal_events::{BatchDelivered, SinkCounters, SinkWriteFailed};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const RETRY_INITIAL: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(30);

/// Where encoded batches are written.
pub enum Writer {
    Console(console::ConsoleWriter),
    File(file::FileWriter),
}

impl Writer {
    pub fn build(kind: &SinkKind) -> (Self, Format) {
        match kind {
            SinkKind::Console { format, stream } => (
                Writer::Console(console::ConsoleWriter::new(*stream)),
                *format,
            ),
            SinkKind::File { path, format } => {
                (Writer::File(file::FileWriter::new(path.clone())), *format)
            }
        }
    }

    /// Writes `bytes` (left as they were on return, so the buffer can be reused).
    async fn write(&mut self, bytes: &mut Vec<u8>) -> std::io::Result<()> {
        match self {
            Writer::Console(w) => w.write(bytes).await,
            Writer::File(w) => w.write(bytes).await,
        }
    }
}

/// A running sink.
pub struct Sink {
    name: String,
    channel: MemoryChannel,
    batch: BatchSpec,
    format: Format,
    writer: Writer,
    counters: SinkCounters,
}

impl Sink {
    pub fn new(spec: &SinkSpec, channel: MemoryChannel) -> Self {
        let (writer, format) = Writer::build(&spec.kind);
        Self {
            name: spec.name.clone(),
            channel,
            batch: spec.batch,
            format,
            writer,
            counters: SinkCounters::new(&spec.name),
        }
    }

    /// Delivers until the channel is closed and drained. `abort` stops retrying a batch
    /// that cannot be written (it stays in the channel, rolled back).
    pub async fn run(mut self, abort: CancellationToken) {
        let mut buf = Vec::with_capacity(256 * 1024);
        loop {
            let take = tokio::select! {
                take = self.channel.take(self.batch.size, self.batch.timeout) => take,
                _ = abort.cancelled() => return,
            };
            if take.is_empty() {
                return;
            }
            buf.clear();
            for event in take.events() {
                self.format.encode(event, &mut buf);
            }
            let mut attempt = 0u32;
            let mut delay = RETRY_INITIAL;
            loop {
                let written = tokio::select! {
                    written = self.writer.write(&mut buf) => written,
                    _ = abort.cancelled() => {
                        take.rollback();
                        return;
                    }
                };
                if buf.is_empty() && !take.is_empty() {
                    // The writer lost the buffer (its blocking task failed): encode again.
                    for event in take.events() {
                        self.format.encode(event, &mut buf);
                    }
                }
                match written {
                    Ok(()) => {
                        BatchDelivered {
                            events: take.len() as u64,
                            bytes: buf.len() as u64,
                        }
                        .emit(&self.counters);
                        take.commit();
                        break;
                    }
                    Err(error) => {
                        attempt += 1;
                        SinkWriteFailed {
                            sink: &self.name,
                            error: &error,
                            attempt,
                            retry_in: delay,
                        }
                        .emit(&self.counters);
                        tokio::select! {
                            _ = tokio::time::sleep(delay) => {}
                            _ = abort.cancelled() => {
                                take.rollback();
                                return;
                            }
                        }
                        delay = (delay * 2).min(RETRY_MAX);
                    }
                }
            }
        }
    }
}
