//! Sources: where lines come from. Each source reads lines, the [`Batcher`] turns them
//! into events and hands full (or timed-out) batches to the source's pipeline worker.
//!
//! Every source type is one module with its own config struct (serde, unknown keys
//! refused) implementing [`SourceConfig`]: validate, then run under a shutdown signal.
//! Adding a type is one module and one line in the [`SourceType`] registry.

mod batcher;
pub mod checkpoint;
mod exec;
mod file;
mod forward;
mod generator;
mod http;
mod intern;
mod journald;
mod lines;
mod listener;
mod mqtt;
mod spooldir;
mod stdin;
mod syslog;
pub mod taildir;
mod tcp;
mod tls;

pub use batcher::{Ack, Acked, Batch, Batcher};
pub use checkpoint::{Checkpoint, Mark, Recovered};
pub use lines::LineSplitter;

use crate::config::Problems;
use crate::config::registry::registry;
use futures_util::future::BoxFuture;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

registry! {
    /// Every source type; `type = "..."` in a `[sources.NAME]` table selects one.
    pub enum SourceType: SourceConfig, "source" {
        "exec" => Exec(exec::ExecConfig),
        "file" => File(file::FileConfig),
        "forward" => Forward(forward::ForwardSourceConfig),
        "generator" => Generator(generator::GeneratorConfig),
        "http" => Http(http::HttpSourceConfig),
        "journald" => Journald(journald::JournaldConfig),
        "mqtt" => Mqtt(mqtt::MqttConfig),
        "spooldir" => Spooldir(spooldir::SpooldirConfig),
        "stdin" => Stdin(stdin::StdinConfig),
        "syslog" => Syslog(syslog::SyslogConfig),
        "taildir" => Taildir(taildir::TaildirConfig),
        "tcp" => Tcp(tcp::TcpConfig),
    }
}

/// What a running source gets.
pub struct SourceContext {
    /// The source's name (its `[sources.NAME]` key).
    pub name: Arc<str>,
    pub batcher: Batcher,
    pub shutdown: CancellationToken,
    /// The agent's data directory (for position files).
    pub data_dir: PathBuf,
    /// The positions the source's durable channels hold for it (see [`checkpoint`]).
    pub recovered: Recovered,
}

/// One source type's settings, and how to run it.
pub trait SourceConfig: std::fmt::Debug + Send + Sync {
    /// Checks the settings (ranges, conflicts, paths), naming each problem's key.
    fn validate(&self, problems: &mut Problems);

    /// Whether this source reads the file at `path` (to refuse sinks writing into it).
    fn reads_file(&self, _path: &Path) -> bool {
        false
    }

    /// Runs until `shutdown` is cancelled or the source ends (stdin EOF, a generator's
    /// count reached), then flushes what is buffered.
    fn run(&self, cx: SourceContext) -> BoxFuture<'static, ()>;
}

/// Checks that a configured path names something a source can read: not empty.
pub(crate) fn check_path(problems: &mut Problems, key: &str, path: &str) {
    if path.trim().is_empty() {
        problems.at(key, "must not be empty");
    }
}

/// Whether two paths name the same file (by their absolute, normalised form; the file
/// need not exist).
pub fn same_file(a: &Path, b: &Path) -> bool {
    fn absolute(p: &Path) -> PathBuf {
        let p = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
        std::fs::canonicalize(&p).unwrap_or(p)
    }
    absolute(a) == absolute(b)
}
