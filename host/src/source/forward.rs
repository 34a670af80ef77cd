//! The `forward` source: a collector's end of [`crate::forward`]. It listens on TCP,
//! authenticates each edge agent by the shared key, and hands each batch it receives to
//! the pipeline; it acknowledges the batch once the source's channels hold it (with a
//! file channel: on disk), so the edge commits only what the collector keeps. A batch
//! the agent could not take (it is stopping) is refused, and the edge sends it again.

use super::listener::{self, Limits};
use super::{Batcher, SourceConfig, SourceContext};
use crate::channel::file::codec;
use crate::config::Problems;
use crate::forward::{Connection, ForwardError, FrameType, MAX_BATCH, SharedKey};
use futures_util::future::BoxFuture;
use serde::Deserialize;
use std::io::Read;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[derive(PartialEq, Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardSourceConfig {
    /// Where to listen: `0.0.0.0:7440`.
    pub listen: SocketAddr,
    /// The key shared with the edge agents (`runnel forward keygen`).
    pub key_file: String,
    /// Edge connections served at once; more wait to be accepted.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
}

fn default_max_connections() -> usize {
    256
}

/// How long an edge has to complete the handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

impl SourceConfig for ForwardSourceConfig {
    fn validate(&self, problems: &mut Problems) {
        if let Err(e) = SharedKey::from_file(Path::new(&self.key_file)) {
            problems.at("key_file", format!("{e:#}"));
        }
        if self.max_connections == 0 {
            problems.at("max_connections", "must be at least 1");
        }
    }

    fn run(&self, cx: SourceContext) -> BoxFuture<'static, ()> {
        let config = self.clone();
        Box::pin(async move {
            let key = match SharedKey::from_file(Path::new(&config.key_file)) {
                Ok(key) => Arc::new(key),
                Err(e) => {
                    cx.batcher.error(&format!("{e:#}"), None);
                    return;
                }
            };
            // Edges are many hosts behind few addresses (NAT): no limit per address.
            let limits = Limits {
                connections: config.max_connections,
                per_peer: config.max_connections,
            };
            let source = cx.name.clone();
            listener::serve(
                config.listen,
                limits,
                None,
                "forward",
                cx,
                move |stream, peer, batcher, shutdown| {
                    let (key, source) = (key.clone(), source.clone());
                    async move { serve(stream, peer, &key, batcher, shutdown, &source).await }
                },
            )
            .await;
        })
    }
}

/// One edge's connection: batches in, acknowledgements out, until either side stops.
async fn serve(
    stream: listener::Stream,
    peer: SocketAddr,
    key: &SharedKey,
    mut batcher: Batcher,
    shutdown: CancellationToken,
    source: &str,
) {
    let (mut conn, agent) = match tokio::time::timeout(
        HANDSHAKE_TIMEOUT,
        Connection::server(stream, key),
    )
    .await
    {
        Ok(Ok(accepted)) => accepted,
        Ok(Err(ForwardError::BadFrame)) => {
            tracing::warn!(source, %peer, "forward: refused a connection: its key does not match ours");
            return;
        }
        Ok(Err(e)) => {
            tracing::warn!(source, %peer, "forward: handshake failed: {e}");
            return;
        }
        Err(_) => {
            tracing::warn!(source, %peer, "forward: no handshake within {HANDSHAKE_TIMEOUT:?}");
            return;
        }
    };
    tracing::info!(source, %peer, agent, "forward: edge connected");
    loop {
        let frame = tokio::select! {
            _ = shutdown.cancelled() => return,
            frame = conn.receive() => frame,
        };
        let (kind, id, payload) = match frame {
            Ok(frame) => frame,
            Err(ForwardError::Io(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                tracing::info!(source, %peer, agent, "forward: edge disconnected");
                return;
            }
            Err(e) => {
                tracing::warn!(source, %peer, agent, "forward: connection dropped: {e}");
                return;
            }
        };
        if kind != FrameType::Batch {
            tracing::warn!(source, %peer, agent, "forward: unexpected {kind:?} frame; closing");
            return;
        }
        let answer = match decode(&payload) {
            Ok(events) => {
                if batcher.send_acknowledged(events).await {
                    conn.send(FrameType::Ack, id, b"").await
                } else {
                    conn.send(FrameType::Nack, id, b"the collector is stopping")
                        .await
                }
            }
            Err(e) => {
                // Authenticated, yet not a batch: a bug or a version skew; the edge's
                // retries will not help, but it keeps the batch rather than lose it.
                tracing::error!(source, %peer, agent, "forward: batch {id} does not decode: {e}");
                conn.send(
                    FrameType::Nack,
                    id,
                    format!("does not decode: {e}").as_bytes(),
                )
                .await
            }
        };
        if let Err(e) = answer {
            tracing::warn!(source, %peer, agent, "forward: could not answer batch {id}: {e}");
            return;
        }
    }
}

/// gunzip (at most [`MAX_BATCH`] bytes), then the file channel's payload reader.
fn decode(payload: &[u8]) -> anyhow::Result<Vec<crate::event::Event>> {
    let mut plain = Vec::new();
    flate2::read::GzDecoder::new(payload)
        .take(MAX_BATCH + 1)
        .read_to_end(&mut plain)?;
    if plain.len() as u64 > MAX_BATCH {
        anyhow::bail!("over {MAX_BATCH} bytes uncompressed");
    }
    Ok(codec::decode(&plain)?)
}
