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
    /// Connections from one address at once (edges behind one NAT address share it).
    #[serde(default = "default_max_connections_per_peer")]
    pub max_connections_per_peer: usize,
    /// A connection whose edge sends nothing (or reads none of our answers) for this
    /// long is closed; the edge connects again with its next batch.
    #[serde(default = "default_idle_timeout_secs")]
    pub idle_timeout_secs: u64,
}

fn default_max_connections() -> usize {
    256
}

fn default_max_connections_per_peer() -> usize {
    64
}

fn default_idle_timeout_secs() -> u64 {
    super::listener::DEFAULT_IDLE_TIMEOUT_SECS
}

impl ForwardSourceConfig {
    /// The connection limits, as the listener takes them.
    fn limits(&self) -> Limits {
        Limits {
            connections: self.max_connections,
            per_peer: self.max_connections_per_peer,
            idle: Duration::from_secs(self.idle_timeout_secs),
        }
    }
}

/// How long an edge has to complete the handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

impl SourceConfig for ForwardSourceConfig {
    fn validate(&self, problems: &mut Problems) {
        if let Err(e) = SharedKey::from_file(Path::new(&self.key_file)) {
            problems.at("key_file", format!("{e:#}"));
        }
        self.limits().validate(None, problems);
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
            let limits = config.limits();
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

/// The fuzz targets of the forward protocol (issue 26): whatever a peer sends before or
/// after the handshake, and whatever an authenticated edge's batch holds, the collector
/// answers with an error, never a panic.
#[cfg(test)]
mod fuzz {
    use super::*;
    use crate::event::{Event, Map, Value};
    use proptest::prelude::*;
    use tokio::io::AsyncWriteExt;

    /// A batch as an edge encodes it: the file channel's payload form.
    fn encoded_batch() -> Vec<u8> {
        let mut event = Event::from_body(Arc::from("app"), b"id=1 hello".to_vec());
        event.timestamp = Some(1_700_000_000_000_000_000);
        event.tags.set("file", "/var/log/app.log");
        let mut map = Map::new();
        map.insert("n".into(), Value::Int(-3));
        map.insert(
            "nested".into(),
            Value::Object(Map::from_iter([(
                "a".to_owned(),
                Value::Array(vec![Value::Null, Value::Float(0.5)]),
            )])),
        );
        event.fields = map.into();
        let events = vec![
            event.clone(),
            Event::from_body(Arc::from("app"), vec![0xff, 0]),
        ];
        let mut out = Vec::new();
        codec::Encoder::default().encode(&events, None, &mut out);
        out
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(bytes).expect("in memory");
        encoder.finish().expect("in memory")
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        #[test]
        fn any_batch_payload_decodes_or_is_refused(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode(&bytes);
            let _ = decode(&gzip(&bytes));
        }

        #[test]
        fn a_damaged_batch_decodes_or_is_refused(
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut batch = encoded_batch();
            for (at, byte) in flips {
                let i = at.index(batch.len());
                batch[i] ^= byte.max(1);
            }
            let keep = cut.index(batch.len() + 1);
            let _ = decode(&gzip(&batch));
            let _ = decode(&gzip(&batch[..keep]));
        }

        #[test]
        fn any_bytes_from_an_unauthenticated_peer_end_in_an_error(
            bytes in proptest::collection::vec(any::<u8>(), 0..200),
            greet in any::<bool>(),
        ) {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            let served = runtime.block_on(async move {
                let (mut peer, collector) = tokio::io::duplex(1 << 16);
                let server = tokio::spawn(async move {
                    Connection::server(collector, &SharedKey::from_bytes([5; 32])).await.map(|_| ())
                });
                if greet {
                    peer.write_all(b"RNF1").await.expect("open");
                }
                let _ = peer.write_all(&bytes).await;
                drop(peer);
                server.await.expect("no panic")
            });
            prop_assert!(served.is_err());
        }
    }
}
