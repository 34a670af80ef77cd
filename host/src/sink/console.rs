//! The `console` sink: events as lines on standard output or standard error. A closed
//! stream (`runnel run | head -1`) refuses batches for good — they are counted, not
//! retried forever.

use super::{Payload, SendError, SinkConfig, SinkService};
use crate::config::Problems;
use crate::encoding::Format;
use crate::event::Event;
use futures_util::future::BoxFuture;
use serde::Deserialize;
use std::sync::Arc;
use tokio::io::AsyncWriteExt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    Stdout,
    Stderr,
}

#[derive(PartialEq, Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleSinkConfig {
    #[serde(default = "default_format")]
    pub format: Format,
    #[serde(default = "default_stream")]
    pub stream: Stream,
}

fn default_format() -> Format {
    Format::Human
}

fn default_stream() -> Stream {
    Stream::Stdout
}

impl SinkConfig for ConsoleSinkConfig {
    fn validate(&self, _problems: &mut Problems) {}

    fn build(
        &self,
        _name: &str,
        _data_dir: &std::path::Path,
    ) -> anyhow::Result<Arc<dyn SinkService>> {
        Ok(Arc::new(ConsoleService {
            format: self.format,
            stream: self.stream,
        }))
    }
}

struct ConsoleService {
    format: Format,
    stream: Stream,
}

impl SinkService for ConsoleService {
    fn encode(&self, events: &[Event], out: &mut Vec<u8>) {
        for event in events {
            self.format.encode(event, out);
        }
    }

    fn send(self: Arc<Self>, payload: Arc<Payload>) -> BoxFuture<'static, Result<(), SendError>> {
        Box::pin(async move {
            let written = match self.stream {
                Stream::Stdout => write_all(tokio::io::stdout(), &payload.bytes).await,
                Stream::Stderr => write_all(tokio::io::stderr(), &payload.bytes).await,
            };
            written.map_err(|e| match e.kind() {
                std::io::ErrorKind::BrokenPipe => {
                    SendError::reject(format!("{:?} is closed: {e}", self.stream))
                }
                _ => SendError::retry(format!("writing to {:?}: {e}", self.stream)),
            })
        })
    }
}

async fn write_all(
    mut out: impl tokio::io::AsyncWrite + Unpin,
    bytes: &[u8],
) -> std::io::Result<()> {
    out.write_all(bytes).await?;
    out.flush().await
}
