//! What a plugin writes to its standard output and error — a Python traceback, a Rust
//! panic message, a C `fprintf(stderr, ...)` — captured into the agent's log instead of
//! discarded. Writes go to a bounded buffer per instance (the excess is counted, never
//! an error the guest would see: a failed write to stderr makes some runtimes trap);
//! after every call the host logs the buffered lines under the plugin's name — at most
//! [`LINES_PER_WINDOW`] per plugin every [`WINDOW`], across its instances and streams
//! ([`OutputBudget`]): a plugin that panics on every poison event of a stream must not
//! flood the agent's log. The lines left out are counted (`plugin.NAME
//! output_lines_suppressed` in the summary) and their number logged when the next
//! window's output is.

use bytes::Bytes;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// Bytes kept per stream between two drains.
const CAPACITY: usize = 64 << 10;
/// Lines of a plugin's output logged per window.
pub const LINES_PER_WINDOW: usize = 20;
/// The window of [`LINES_PER_WINDOW`].
pub const WINDOW: Duration = Duration::from_secs(10);

/// How much of a plugin's output may still be logged: one per plugin, shared by its
/// instances (a trapping instance is replaced, its budget is not).
pub struct OutputBudget {
    state: Mutex<BudgetState>,
    /// Lines not logged, in total.
    suppressed: crate::metrics::Counter,
}

#[derive(Default)]
struct BudgetState {
    /// When the current window started (none before the first output).
    window: Option<Instant>,
    /// Lines logged in the current window.
    shown: usize,
    /// Lines left out in the current window.
    suppressed: u64,
}

/// What may be logged of `lines` lines of output.
#[derive(Debug, PartialEq, Eq)]
struct Admitted {
    /// How many of them to log.
    shown: usize,
    /// Lines left out in the windows before this one (logged now, once).
    earlier: u64,
    /// Whether these are the first lines left out in this window.
    first_suppressed: bool,
}

impl OutputBudget {
    pub fn new(plugin: &str) -> Self {
        Self {
            state: Mutex::default(),
            suppressed: crate::metrics::Registry::global()
                .counter(&format!("plugin.{plugin}"), "output_lines_suppressed"),
        }
    }

    fn admit(&self, now: Instant, lines: usize) -> Admitted {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut earlier = 0;
        if s.window
            .is_none_or(|start| now.saturating_duration_since(start) >= WINDOW)
        {
            earlier = std::mem::take(&mut s.suppressed);
            s.window = Some(now);
            s.shown = 0;
        }
        let shown = lines.min(LINES_PER_WINDOW - s.shown);
        s.shown += shown;
        let left_out = (lines - shown) as u64;
        let first_suppressed = left_out > 0 && s.suppressed == 0;
        s.suppressed += left_out;
        self.suppressed.add(left_out);
        Admitted {
            shown,
            earlier,
            first_suppressed,
        }
    }
}

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
    /// Logs what was written since the last call, as `plugin`'s `stream`, as far as
    /// `budget` lets it.
    pub fn drain_to_log(&self, plugin: &str, stream: &str, budget: &OutputBudget) {
        let (bytes, dropped) = {
            let mut b = self.buffer.lock().unwrap_or_else(|e| e.into_inner());
            if b.bytes.is_empty() && b.dropped == 0 {
                return;
            }
            (std::mem::take(&mut b.bytes), std::mem::take(&mut b.dropped))
        };
        let text = String::from_utf8_lossy(&bytes);
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        let admitted = budget.admit(Instant::now(), lines.len());
        if admitted.earlier > 0 {
            tracing::warn!(
                plugin,
                suppressed = admitted.earlier,
                "{} lines of the plugin's output were not shown (at most {LINES_PER_WINDOW} every {} s)",
                admitted.earlier,
                WINDOW.as_secs()
            );
        }
        for line in &lines[..admitted.shown] {
            tracing::warn!(plugin, stream, "{line}");
        }
        if admitted.first_suppressed {
            tracing::warn!(
                plugin,
                stream,
                "more output than {LINES_PER_WINDOW} lines in {} s: the rest is not shown, only counted (output_lines_suppressed)",
                WINDOW.as_secs()
            );
        }
        if dropped > 0 && admitted.shown > 0 {
            tracing::warn!(
                plugin,
                stream,
                "{dropped} more bytes were written between two calls (not shown)"
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
        out.drain_to_log("p", "stderr", &OutputBudget::new("p"));
        let b = out.buffer.lock().unwrap();
        assert!(b.bytes.is_empty() && b.dropped == 0);
    }

    #[test]
    fn a_plugin_logs_a_bounded_number_of_lines_per_window_and_counts_the_rest() {
        let budget = OutputBudget::new("budget-test");
        let t0 = Instant::now();
        let at = |secs| t0 + Duration::from_secs(secs);
        // 100 calls of 3 lines in the first window: 20 lines shown in all.
        let mut shown = 0;
        let mut firsts = 0;
        for _ in 0..100 {
            let a = budget.admit(at(1), 3);
            assert_eq!(a.earlier, 0);
            shown += a.shown;
            firsts += usize::from(a.first_suppressed);
        }
        assert_eq!(shown, LINES_PER_WINDOW);
        assert_eq!(firsts, 1, "the cut is said once per window");
        assert_eq!(budget.suppressed.get(), 300 - LINES_PER_WINDOW as u64);
        // The next window logs again, and says how many were left out before.
        let a = budget.admit(at(1) + WINDOW, 3);
        assert_eq!(
            a,
            Admitted {
                shown: 3,
                earlier: 300 - LINES_PER_WINDOW as u64,
                first_suppressed: false
            }
        );
        // Said once.
        assert_eq!(budget.admit(at(2) + WINDOW, 1).earlier, 0);
    }
}
