//! The config file as written: TOML in Flume's vocabulary. Unknown keys are rejected by
//! serde (with the line of the key); everything else is checked in `validate`.

use indexmap::IndexMap;
use serde::Deserialize;

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub agent: RawAgent,
    #[serde(default)]
    pub sources: IndexMap<String, RawSource>,
    #[serde(default)]
    pub channels: IndexMap<String, RawChannel>,
    #[serde(default)]
    pub sinks: IndexMap<String, RawSink>,
    #[serde(default)]
    pub plugins: IndexMap<String, RawPlugin>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawAgent {
    pub name: Option<String>,
    pub hostname: Option<String>,
    pub summary_interval_secs: Option<u64>,
    pub shutdown_timeout_secs: Option<u64>,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SourceType {
    Exec,
    File,
    Stdin,
    Generator,
}

/// One source. Settings of every source type share this struct; `validate` refuses the
/// ones that do not belong to the source's `type`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSource {
    #[serde(rename = "type")]
    pub kind: SourceType,
    pub name: Option<String>,
    #[serde(default)]
    pub plugins: Vec<String>,
    #[serde(default)]
    pub channels: Vec<String>,
    #[serde(default)]
    pub dead_letter: Vec<String>,
    #[serde(default)]
    pub routes: IndexMap<String, Vec<String>>,
    pub batch_size: Option<usize>,
    pub batch_timeout_ms: Option<u64>,
    pub max_line_bytes: Option<usize>,
    // exec
    pub command: Option<String>,
    pub restart_backoff_ms: Option<u64>,
    pub restart_backoff_max_ms: Option<u64>,
    // file
    pub path: Option<String>,
    pub read_from: Option<String>,
    pub poll_interval_ms: Option<u64>,
    pub exit_on_eof: Option<bool>,
    // generator
    pub apps: Option<usize>,
    pub rate: Option<f64>,
    pub count: Option<u64>,
    pub kinds: Option<Vec<String>>,
    pub seed: Option<u64>,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ChannelType {
    Memory,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawChannel {
    #[serde(rename = "type")]
    pub kind: ChannelType,
    pub capacity: Option<usize>,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SinkType {
    Console,
    File,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSink {
    #[serde(rename = "type")]
    pub kind: SinkType,
    pub channel: String,
    pub format: Option<String>,
    pub batch_size: Option<usize>,
    pub batch_timeout_ms: Option<u64>,
    // console
    pub stream: Option<String>,
    // file
    pub path: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPlugin {
    pub builtin: Option<String>,
    pub path: Option<String>,
    pub on_error: Option<String>,
    pub keep_body: Option<bool>,
    pub timeout_ms: Option<u64>,
    pub memory_mb: Option<usize>,
    #[serde(default)]
    pub config: toml::Table,
}
