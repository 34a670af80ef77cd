//! Sources: where lines come from. Each source reads lines, the [`Batcher`] turns them
//! into events and hands full (or timed-out) batches to the source's pipeline worker.

mod batcher;
mod exec;
mod file;
mod generator;
mod lines;

pub use batcher::Batcher;
pub use lines::LineSplitter;

use crate::config::{SourceKind, SourceSpec};
use tokio_util::sync::CancellationToken;

/// Runs a source until `shutdown` is cancelled or the source ends (stdin EOF, a
/// generator's count reached). Buffered lines are flushed before it returns.
pub async fn run(spec: SourceSpec, mut batcher: Batcher, shutdown: CancellationToken) {
    match &spec.kind {
        SourceKind::Exec {
            command,
            backoff_initial,
            backoff_max,
        } => {
            exec::run(
                &spec.name,
                command,
                *backoff_initial,
                *backoff_max,
                &mut batcher,
                &shutdown,
            )
            .await
        }
        SourceKind::File {
            path,
            read_from,
            poll_interval,
            exit_on_eof,
        } => {
            let follow = file::Follow {
                read_from: *read_from,
                poll_interval: *poll_interval,
                exit_on_eof: *exit_on_eof,
            };
            file::run(&spec.name, path, follow, &mut batcher, &shutdown).await
        }
        SourceKind::Stdin => {
            let result = lines::pump(tokio::io::stdin(), &mut batcher, &shutdown).await;
            if let Err(e) = result {
                batcher.error(&format!("reading stdin: {e}"), None);
            }
        }
        SourceKind::Generator(g) => {
            generator::run(&spec, g, batcher.clone_for_task(), &shutdown).await
        }
    }
    batcher.flush().await;
}
