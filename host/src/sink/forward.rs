//! The `forward` sink: batches to a collector agent's `forward` source over TCP, gzipped
//! and sealed with the shared key ([`crate::forward`]). A batch is delivered when the
//! collector acknowledges it, which it does once its channels hold the batch (with a
//! file channel: on disk). Each connection carries one batch at a time; `in_flight`
//! connections carry that many at once (commits stay in order). A broken connection is
//! opened again for the retry.

use super::{Payload, SendError, SinkConfig, SinkService};
use crate::channel::file::codec;
use crate::compress::Gzip;
use crate::config::Problems;
use crate::event::Event;
use crate::forward::{Connection, ForwardError, FrameType, SharedKey};
use futures_util::future::BoxFuture;
use serde::Deserialize;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::net::TcpStream;

#[derive(PartialEq, Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardSinkConfig {
    /// The collector's `forward` source: `host:port`.
    pub address: String,
    /// The key shared with the collector (`runnel forward keygen`).
    pub key_file: String,
    /// gzip level of each batch, 0 (stored) to 9.
    #[serde(default = "default_level")]
    pub compression_level: u32,
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// How long to wait for the collector's acknowledgement of a batch.
    #[serde(default = "default_ack_timeout_ms")]
    pub ack_timeout_ms: u64,
    /// Batches on their way at once (one connection each), 1 to 16. With more than 1,
    /// a retried batch can arrive after a later one.
    #[serde(default = "default_in_flight")]
    pub in_flight: usize,
}

fn default_in_flight() -> usize {
    2
}

fn default_level() -> u32 {
    1
}

fn default_connect_timeout_ms() -> u64 {
    5_000
}

fn default_ack_timeout_ms() -> u64 {
    30_000
}

impl SinkConfig for ForwardSinkConfig {
    fn validate(&self, problems: &mut Problems) {
        if self
            .address
            .rsplit_once(':')
            .is_none_or(|(host, port)| host.is_empty() || port.parse::<u16>().is_err())
        {
            problems.at("address", format!("`{}` is not host:port", self.address));
        }
        if let Err(e) = SharedKey::from_file(Path::new(&self.key_file)) {
            problems.at("key_file", format!("{e:#}"));
        }
        if !(1..=16).contains(&self.in_flight) {
            problems.at("in_flight", "must be 1 to 16");
        }
        if self.compression_level > 9 {
            problems.at("compression_level", "must be 0 to 9");
        }
        for (key, ms) in [
            ("connect_timeout_ms", self.connect_timeout_ms),
            ("ack_timeout_ms", self.ack_timeout_ms),
        ] {
            if ms == 0 {
                problems.at(key, "must be at least 1");
            }
        }
    }

    fn build(
        &self,
        name: &str,
        _data_dir: &std::path::Path,
    ) -> anyhow::Result<Arc<dyn SinkService>> {
        Ok(Arc::new(ForwardService {
            name: name.to_owned(),
            address: self.address.clone(),
            key: SharedKey::from_file(Path::new(&self.key_file))?,
            level: self.compression_level,
            connect_timeout: Duration::from_millis(self.connect_timeout_ms),
            ack_timeout: Duration::from_millis(self.ack_timeout_ms),
            connections: (0..self.in_flight.clamp(1, 16))
                .map(|_| tokio::sync::Mutex::new(None))
                .collect(),
            next_id: AtomicU64::new(1),
            encoders: std::sync::Mutex::new(Vec::new()),
        }))
    }
}

struct ForwardService {
    name: String,
    address: String,
    key: SharedKey,
    level: u32,
    connect_timeout: Duration,
    ack_timeout: Duration,
    /// One per batch in flight.
    connections: Vec<tokio::sync::Mutex<Option<Connection<TcpStream>>>>,
    next_id: AtomicU64,
    /// Idle encoders (payload encoder, gzip state, plain buffer), reused between batches:
    /// batches in flight are encoded at once, each with its own.
    encoders: std::sync::Mutex<Vec<(codec::Encoder, Gzip, Vec<u8>)>>,
}

impl SinkService for ForwardService {
    fn in_flight(&self) -> usize {
        self.connections.len()
    }

    /// The batch in the file channel's payload form, gzipped.
    fn encode(&self, events: &[Event], out: &mut Vec<u8>) {
        let idle = self
            .encoders
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop();
        let (mut encoder, mut gzip, mut plain) =
            idle.unwrap_or_else(|| (codec::Encoder::default(), Gzip::new(self.level), Vec::new()));
        plain.clear();
        encoder.encode(events, None, &mut plain);
        gzip.compress(&plain, out);
        self.encoders
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((encoder, gzip, plain));
    }

    fn send(self: Arc<Self>, payload: Arc<Payload>) -> BoxFuture<'static, Result<(), SendError>> {
        Box::pin(async move {
            // A free connection; the driver never has more batches out than there are.
            let mut slot = match self.connections.iter().find_map(|c| c.try_lock().ok()) {
                Some(slot) => slot,
                None => self.connections[0].lock().await,
            };
            let result = self.deliver(&mut slot, &payload.bytes).await;
            if result.is_err() {
                // Whatever state the connection is in, the retry starts a new one.
                *slot = None;
            }
            result
        })
    }
}

/// Whether the peer has closed an idle connection (or sent what it never should between
/// batches): a read that does not wait finds the end of the stream, or bytes.
fn closed_by_peer(stream: &TcpStream) -> bool {
    let mut byte = [0u8; 1];
    match stream.try_read(&mut byte) {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => false,
        Ok(_) | Err(_) => true,
    }
}

impl ForwardService {
    async fn deliver(
        &self,
        slot: &mut Option<Connection<TcpStream>>,
        bytes: &[u8],
    ) -> Result<(), SendError> {
        let failed =
            |what: &str, e: ForwardError| SendError::retry(format!("{what} {}: {e}", self.address));
        // A collector closes connections that stay idle (its `idle_timeout_secs`): one
        // it has closed is replaced before the batch, not found dead after it.
        if slot
            .as_ref()
            .is_some_and(|conn| closed_by_peer(conn.get_ref()))
        {
            *slot = None;
        }
        if slot.is_none() {
            let stream =
                tokio::time::timeout(self.connect_timeout, TcpStream::connect(&self.address))
                    .await
                    .map_err(|_| {
                        SendError::retry(format!("connect to {}: timed out", self.address))
                    })?
                    .map_err(|e| failed("connect to", e.into()))?;
            let _ = stream.set_nodelay(true);
            let conn = tokio::time::timeout(
                self.connect_timeout,
                Connection::client(stream, &self.key, &self.name),
            )
            .await
            .map_err(|_| SendError::retry(format!("handshake with {}: timed out", self.address)))?
            .map_err(|e| failed("handshake with", e))?;
            *slot = Some(conn);
        }
        let conn = slot.as_mut().expect("connected above");
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        conn.send(FrameType::Batch, id, bytes)
            .await
            .map_err(|e| failed("send to", e))?;
        let answer = tokio::time::timeout(self.ack_timeout, conn.receive())
            .await
            .map_err(|_| {
                SendError::retry(format!(
                    "{}: no acknowledgement within {:?}",
                    self.address, self.ack_timeout
                ))
            })?
            .map_err(|e| failed("acknowledgement from", e))?;
        match answer {
            (FrameType::Ack, acked, _) if acked == id => Ok(()),
            (FrameType::Nack, nacked, reason) if nacked == id => Err(SendError::retry(format!(
                "{} did not take the batch: {}",
                self.address,
                String::from_utf8_lossy(&reason)
            ))),
            (kind, other, _) => Err(SendError::retry(format!(
                "{}: {kind:?} for batch {other} while waiting for batch {id}",
                self.address
            ))),
        }
    }
}
