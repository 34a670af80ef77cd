//! The `stdin` source: lines from the agent's standard input, until EOF.

use super::{SourceConfig, SourceContext, lines};
use crate::config::Problems;
use futures_util::future::BoxFuture;
use serde::Deserialize;

#[derive(PartialEq, Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StdinConfig {}

impl SourceConfig for StdinConfig {
    fn validate(&self, _problems: &mut Problems) {}

    fn run(&self, cx: SourceContext) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            let SourceContext {
                mut batcher,
                shutdown,
                ..
            } = cx;
            if let Err(e) = lines::pump(tokio::io::stdin(), &mut batcher, &shutdown).await {
                batcher.error(&format!("reading stdin: {e}"), None);
            }
            batcher.flush().await;
        })
    }
}
