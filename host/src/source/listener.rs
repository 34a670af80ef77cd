//! The TCP listener of the network sources (`syslog` over TCP, `tcp`, `http`,
//! `forward`): accepts connections within a limit in all and per peer address, completes
//! the TLS handshake when the source has TLS (within [`HANDSHAKE_TIMEOUT`], in the
//! connection's task), and serves each in a task of its own with its own [`Batcher`]
//! feeding the source's worker. A connection over a limit is closed at once and counted
//! (`connections_refused`; logged at most every 10 s, with the count since the last
//! report). Every connection has an idle timeout ([`Idle`]): a read or a write that
//! waits longer than `idle` for the peer ends the connection, so peers that open
//! connections and send nothing cannot hold the slots. At shutdown, connections end
//! after the batch they are handing over.

use super::{Batcher, SourceContext};
use crate::internal_events::ConnectionRefused;
use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::time::Sleep;
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

/// Connections served at once, and how long one may wait for its peer.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub connections: usize,
    pub per_peer: usize,
    /// A read or write waiting this long for the peer ends the connection.
    pub idle: Duration,
}

/// The default `idle_timeout_secs` of the line-oriented listeners (`tcp`, `syslog`,
/// `forward`): long enough for an app that logs rarely, short enough that silent
/// connections do not hold the slots for good.
pub const DEFAULT_IDLE_TIMEOUT_SECS: u64 = 300;

impl Limits {
    /// Checks the settings a listening source shares: its connection limits (keys
    /// `max_connections`, `max_connections_per_peer`, `idle_timeout_secs`) and its `tls`.
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
        if self.idle.is_zero() {
            problems.at("idle_timeout_secs", "must be at least 1");
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
    let refused = ConnectionRefused::counters(&cx.name);
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
                ConnectionRefused {
                    source: &cx.name,
                    kind,
                    peer,
                    reason: "too many connections from this address",
                }
                .emit(&refused);
                continue;
            }
            *count += 1;
        }
        let (batcher, shutdown) = (cx.batcher.clone_for_task(), cx.shutdown.clone());
        let (handle, per_peer, tls) = (handle.clone(), per_peer.clone(), tls.clone());
        let source = cx.name.clone();
        connections.spawn(async move {
            let _ = stream.set_nodelay(true);
            let stream = Idle::new(stream, limits.idle);
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

/// A stream whose reads and writes give up when the peer keeps them waiting for longer
/// than `idle` (a `TimedOut` error): the time counts from when a read (or write) first
/// had to wait, and starts again with each byte that moves. Time the connection's
/// handler spends elsewhere (handing a batch to a full pipeline) does not count.
pub struct Idle<S> {
    inner: S,
    idle: Duration,
    read: Timer,
    write: Timer,
}

/// One direction's deadline, armed while that direction waits for the peer.
struct Timer {
    sleep: Pin<Box<Sleep>>,
    armed: bool,
}

impl Timer {
    fn new() -> Self {
        Self {
            sleep: Box::pin(tokio::time::sleep(Duration::ZERO)),
            armed: false,
        }
    }

    /// After the inner stream was not ready: arms the deadline if this wait is new, and
    /// says whether it has passed.
    fn expired(&mut self, idle: Duration, cx: &mut Context<'_>) -> bool {
        if !self.armed {
            self.armed = true;
            self.sleep
                .as_mut()
                .reset(tokio::time::Instant::now() + idle);
        }
        self.sleep.as_mut().poll(cx).is_ready()
    }
}

impl<S> Idle<S> {
    pub fn new(inner: S, idle: Duration) -> Self {
        Self {
            inner,
            idle,
            read: Timer::new(),
            write: Timer::new(),
        }
    }
}

fn idle_error(idle: Duration, what: &str) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!(
            "the peer {what} nothing for {}s (idle_timeout_secs)",
            idle.as_secs()
        ),
    )
}

impl Timer {
    /// What the stream answers, given what the inner stream did: its result when ready
    /// (the wait, if any, is over), a `TimedOut` error once the peer kept this direction
    /// waiting for `idle`, else pending.
    fn settle<T>(
        &mut self,
        inner: Poll<std::io::Result<T>>,
        idle: Duration,
        what: &str,
        cx: &mut Context<'_>,
    ) -> Poll<std::io::Result<T>> {
        match inner {
            Poll::Ready(result) => {
                self.armed = false;
                Poll::Ready(result)
            }
            Poll::Pending if self.expired(idle, cx) => {
                self.armed = false;
                Poll::Ready(Err(idle_error(idle, what)))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Idle<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        let inner = Pin::new(&mut this.inner).poll_read(cx, buf);
        this.read.settle(inner, this.idle, "sent", cx)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Idle<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        let inner = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.write.settle(inner, this.idle, "read", cx)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        let inner = Pin::new(&mut this.inner).poll_flush(cx);
        this.write.settle(inner, this.idle, "read", cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn a_silent_peer_times_out_and_a_talking_one_does_not() {
        let (near, mut far) = tokio::io::duplex(64);
        let idle = Duration::from_millis(300);
        let mut stream = Idle::new(near, idle);
        let talker = tokio::spawn(async move {
            // A byte every 20 ms, 100 in all: 2 s, many idle periods, never one silent.
            for _ in 0..100 {
                tokio::time::sleep(Duration::from_millis(20)).await;
                far.write_all(b"x").await.unwrap();
            }
            far
        });
        let mut byte = [0u8; 1];
        for _ in 0..100 {
            stream.read_exact(&mut byte).await.unwrap();
        }
        let _far = talker.await.unwrap();
        // Now silence: the read gives up, after the idle time at the earliest.
        let started = std::time::Instant::now();
        let e = stream.read(&mut byte).await.unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
        assert!(started.elapsed() >= idle);
    }

    #[tokio::test]
    async fn time_away_from_the_stream_does_not_count() {
        let (near, mut far) = tokio::io::duplex(64);
        let mut stream = Idle::new(near, Duration::from_millis(100));
        far.write_all(b"ab").await.unwrap();
        let mut byte = [0u8; 1];
        stream.read_exact(&mut byte).await.unwrap();
        // The handler is busy for 5 idle times (a full pipeline), then reads on.
        tokio::time::sleep(Duration::from_millis(500)).await;
        stream.read_exact(&mut byte).await.unwrap();
        assert_eq!(&byte, b"b");
    }

    #[tokio::test]
    async fn a_peer_that_does_not_read_times_the_writer_out() {
        let (near, _far) = tokio::io::duplex(16);
        let mut stream = Idle::new(near, Duration::from_millis(100));
        let e = stream.write_all(&[0u8; 64]).await.unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
    }
}
