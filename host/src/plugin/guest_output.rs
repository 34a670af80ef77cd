//! What a plugin writes to its standard output and error — a Python traceback, a Rust
//! panic message, a C `fprintf(stderr, ...)` — captured into the agent's log instead of
//! discarded. Writes go to a bounded buffer per instance (the excess is counted, never
//! an error the guest would see: a failed write to stderr makes some runtimes trap);
//! after every call the host logs the buffered lines under the plugin's name, at most
//! [`LINES_PER_CALL`] of them, and says how many more were left out.

use bytes::Bytes;
use std::sync::{Arc, Mutex};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// Bytes kept per stream between two drains.
const CAPACITY: usize = 64 << 10;
/// Lines logged per stream and call.
pub const LINES_PER_CALL: usize = 20;

#[derive(Default)]
struct Buffer {
    bytes: Vec<u8>,
    /// Bytes written past the capacity since the last drain.
    dropped: usize,
}

/// One captured stream (`stdout` or `stderr`) of one instance.
#[derive(Clone, Default)]
pub struct GuestOutput {
    buffer: Arc<Mutex<Buffer>>,
}

impl GuestOutput {
    /// Logs what was written since the last call, as `plugin`'s `stream`.
    pub fn drain_to_log(&self, plugin: &str, stream: &str) {
        let (bytes, dropped) = {
            let mut b = self.buffer.lock().unwrap_or_else(|e| e.into_inner());
            if b.bytes.is_empty() && b.dropped == 0 {
                return;
            }
            (std::mem::take(&mut b.bytes), std::mem::take(&mut b.dropped))
        };
        let text = String::from_utf8_lossy(&bytes);
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        for line in lines.iter().take(LINES_PER_CALL) {
            tracing::warn!(plugin, stream, "{line}");
        }
        let more = lines.len().saturating_sub(LINES_PER_CALL);
        if more > 0 || dropped > 0 {
            tracing::warn!(
                plugin,
                stream,
                "{more} more lines and {dropped} more bytes were written (not shown)"
            );
        }
    }
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        // Only the WASI p2 stream is linked; nothing writes through this one.
        Box::new(tokio::io::sink())
    }
}

impl OutputStream for GuestOutput {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        let mut b = self.buffer.lock().unwrap_or_else(|e| e.into_inner());
        let room = CAPACITY.saturating_sub(b.bytes.len());
        let kept = bytes.len().min(room);
        b.bytes.extend_from_slice(&bytes[..kept]);
        b.dropped += bytes.len() - kept;
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(CAPACITY)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for GuestOutput {
    async fn ready(&mut self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_past_the_capacity_are_counted_not_refused() {
        let mut out = GuestOutput::default();
        out.write(Bytes::from(vec![b'x'; CAPACITY - 1])).unwrap();
        out.write(Bytes::from_static(b"abc")).unwrap();
        {
            let b = out.buffer.lock().unwrap();
            assert_eq!(b.bytes.len(), CAPACITY);
            assert_eq!(b.dropped, 2);
        }
        out.drain_to_log("p", "stderr");
        let b = out.buffer.lock().unwrap();
        assert!(b.bytes.is_empty() && b.dropped == 0);
    }
}
