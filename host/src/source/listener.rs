//! The TCP listener of the network sources (`syslog` over TCP, `tcp`): accepts
//! connections within a limit in all and per peer address, and serves each in a task of
//! its own with its own [`Batcher`] feeding the source's worker. A connection over a
//! limit is closed at once and logged; at shutdown, connections end after the batch they
//! are handing over.

use super::{Batcher, SourceContext};
use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// Connections served at once.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub connections: usize,
    pub per_peer: usize,
}

/// Listens on `listen` until the source's shutdown, serving each connection with
/// `handle(stream, peer, batcher, shutdown)`. `kind` names the source type in logs.
pub async fn serve<F, Fut>(
    listen: SocketAddr,
    limits: Limits,
    kind: &'static str,
    cx: SourceContext,
    handle: F,
) where
    F: Fn(TcpStream, SocketAddr, Batcher, CancellationToken) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = match TcpListener::bind(listen).await {
        Ok(listener) => listener,
        Err(e) => {
            cx.batcher
                .error(&format!("listen on tcp {listen}: {e}"), None);
            return;
        }
    };
    tracing::info!(source = %cx.name, %listen, "{kind}: listening on TCP");
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
        let work = handle(
            stream,
            peer,
            cx.batcher.clone_for_task(),
            cx.shutdown.clone(),
        );
        let per_peer = per_peer.clone();
        connections.spawn(async move {
            work.await;
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
