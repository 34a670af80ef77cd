//! The TCP listener of the network sources (`syslog` over TCP, `tcp`): accepts
//! connections within a limit in all and per peer address, completes the TLS handshake
//! when the source has TLS (within [`HANDSHAKE_TIMEOUT`], in the connection's task), and
//! serves each in a task of its own with its own [`Batcher`] feeding the source's worker. A connection over a
//! limit is closed at once and logged; at shutdown, connections end after the batch they
//! are handing over.

use super::{Batcher, SourceContext};
use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

/// What a connection's handler reads (and writes, for a source that answers): the TCP
/// stream, or the TLS stream over it.
pub type Stream = Box<dyn Io>;

/// A byte stream both ways.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// How long a peer has to complete the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections served at once.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub connections: usize,
    pub per_peer: usize,
}

impl Limits {
    /// Checks the settings a listening source shares: its connection limits (keys
    /// `max_connections`, `max_connections_per_peer`) and its `tls`.
    pub fn validate(
        self,
        tls: Option<&super::tls::TlsConfig>,
        problems: &mut crate::config::Problems,
    ) {
        if self.connections == 0 {
            problems.at("max_connections", "must be at least 1");
        }
        if self.per_peer == 0 {
            problems.at("max_connections_per_peer", "must be at least 1");
        }
        if let Some(tls) = tls {
            tls.validate(problems);
        }
    }
}

/// Listens on `listen` until the source's shutdown, serving each connection (over TLS
/// when `tls` is set) with `handle(stream, peer, batcher, shutdown)`. `kind` names the
/// source type in logs.
pub async fn serve<F, Fut>(
    listen: SocketAddr,
    limits: Limits,
    tls: Option<&super::tls::TlsConfig>,
    kind: &'static str,
    cx: SourceContext,
    handle: F,
) where
    F: Fn(Stream, SocketAddr, Batcher, CancellationToken) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let tls: Option<TlsAcceptor> = match tls.map(|t| t.acceptor()).transpose() {
        Ok(tls) => tls,
        Err((key, e)) => {
            cx.batcher.error(&format!("tls.{key}: {e}"), None);
            return;
        }
    };
    let listener = match TcpListener::bind(listen).await {
        Ok(listener) => listener,
        Err(e) => {
            cx.batcher
                .error(&format!("listen on tcp {listen}: {e}"), None);
            return;
        }
    };
    tracing::info!(source = %cx.name, %listen, tls = tls.is_some(), "{kind}: listening on TCP");
    let handle = Arc::new(handle);
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.connections));
    let per_peer: Arc<Mutex<HashMap<IpAddr, usize>>> = Arc::default();
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let slot = tokio::select! {
            _ = cx.shutdown.cancelled() => break,
            slot = slots.clone().acquire_owned() => slot.expect("never closed"),
        };
        let (stream, peer) = tokio::select! {
            _ = cx.shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    cx.batcher.error(&format!("accept: {e}"), Some(Duration::from_millis(100)));
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        {
            let mut open = per_peer.lock().unwrap_or_else(|p| p.into_inner());
            let count = open.entry(peer.ip()).or_default();
            if *count >= limits.per_peer {
                tracing::warn!(source = %cx.name, %peer, limit = limits.per_peer, "{kind}: refused a connection: too many from this address");
                continue;
            }
            *count += 1;
        }
        let (batcher, shutdown) = (cx.batcher.clone_for_task(), cx.shutdown.clone());
        let (handle, per_peer, tls) = (handle.clone(), per_peer.clone(), tls.clone());
        let source = cx.name.clone();
        connections.spawn(async move {
            let _ = stream.set_nodelay(true);
            let stream: Option<Stream> = match tls {
                None => Some(Box::new(stream)),
                Some(tls) => match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.accept(stream)).await {
                    Ok(Ok(stream)) => Some(Box::new(stream)),
                    Ok(Err(e)) => {
                        tracing::warn!(%source, %peer, "{kind}: TLS handshake failed: {e}");
                        None
                    }
                    Err(_) => {
                        tracing::warn!(%source, %peer, "{kind}: no TLS handshake within {HANDSHAKE_TIMEOUT:?}");
                        None
                    }
                },
            };
            if let Some(stream) = stream {
                handle(stream, peer, batcher, shutdown).await;
            }
            let mut open = per_peer.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(count) = open.get_mut(&peer.ip()) {
                *count -= 1;
                if *count == 0 {
                    open.remove(&peer.ip());
                }
            }
            drop(slot);
        });
        while connections.try_join_next().is_some() {}
    }
    while connections.join_next().await.is_some() {}
}
