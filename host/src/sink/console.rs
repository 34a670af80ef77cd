//! The `console` sink's writer: standard output or standard error.

use crate::config::Stream;
use tokio::io::AsyncWriteExt;

pub struct ConsoleWriter {
    stream: Stream,
}

impl ConsoleWriter {
    pub fn new(stream: Stream) -> Self {
        Self { stream }
    }

    pub async fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self.stream {
            Stream::Stdout => {
                let mut out = tokio::io::stdout();
                out.write_all(bytes).await?;
                out.flush().await
            }
            Stream::Stderr => {
                let mut out = tokio::io::stderr();
                out.write_all(bytes).await?;
                out.flush().await
            }
        }
    }
}
