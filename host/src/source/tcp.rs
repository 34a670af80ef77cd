//! The `tcp` source: newline-delimited lines over TCP (`nc`, a shell loop, an app's
//! socket appender), each line an event, within connection limits in all and per peer
//! address ([`listener`](super::listener)). Lines longer than `max_line_bytes` are cut
//! and counted; a connection's unterminated last line is delivered when it closes.

use super::listener::{self, Limits};
use super::{SourceConfig, SourceContext, lines};
use crate::config::Problems;
use futures_util::future::BoxFuture;
use serde::Deserialize;
use std::net::SocketAddr;

#[derive(PartialEq, Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcpConfig {
    /// Where to listen: `0.0.0.0:5170`.
    pub listen: SocketAddr,
    /// Connections served at once.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Connections from one address at once.
    #[serde(default = "default_max_connections_per_peer")]
    pub max_connections_per_peer: usize,
    /// Serve TLS: `{ cert_file = "…", key_file = "…" }`.
    pub tls: Option<super::tls::TlsConfig>,
    /// A connection whose peer sends nothing (or reads nothing we answer) for this long
    /// is closed.
    #[serde(default = "default_idle_timeout_secs")]
    pub idle_timeout_secs: u64,
}

fn default_idle_timeout_secs() -> u64 {
    super::listener::DEFAULT_IDLE_TIMEOUT_SECS
}

fn default_max_connections() -> usize {
    256
}

fn default_max_connections_per_peer() -> usize {
    16
}

impl TcpConfig {
    /// The connection limits, as the listener takes them.
    fn limits(&self) -> Limits {
        Limits {
            connections: self.max_connections,
            per_peer: self.max_connections_per_peer,
            idle: std::time::Duration::from_secs(self.idle_timeout_secs),
        }
    }
}

impl SourceConfig for TcpConfig {
    fn validate(&self, problems: &mut Problems) {
        self.limits().validate(self.tls.as_ref(), problems);
    }

    fn run(&self, cx: SourceContext) -> BoxFuture<'static, ()> {
        let config = self.clone();
        Box::pin(async move {
            let limits = config.limits();
            let source = cx.name.clone();
            listener::serve(
                config.listen,
                limits,
                config.tls.as_ref(),
                "tcp",
                cx,
                move |stream, peer, mut batcher, shutdown| {
                    let source = source.clone();
                    async move {
                        if let Err(e) = lines::pump(stream, &mut batcher, &shutdown).await {
                            tracing::debug!(%source, %peer, "tcp: connection dropped: {e}");
                        }
                        batcher.flush().await;
                    }
                },
            )
            .await;
        })
    }
}
