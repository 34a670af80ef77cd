//! The config file as written: TOML in Flume's vocabulary. The agent and plugin sections
//! are read here (unknown keys are refused by serde, with their line); each source,
//! channel and sink is kept as its table until the registry of its kind reads it with
//! the config struct of its `type`.

use indexmap::IndexMap;
use serde::Deserialize;

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub agent: RawAgent,
    #[serde(default)]
    pub sources: IndexMap<String, toml::Table>,
    #[serde(default)]
    pub channels: IndexMap<String, toml::Table>,
    #[serde(default)]
    pub sinks: IndexMap<String, toml::Table>,
    #[serde(default)]
    pub sink_groups: IndexMap<String, RawSinkGroup>,
    #[serde(default)]
    pub plugins: IndexMap<String, RawPlugin>,
}

/// `[sink_groups.NAME]`: sinks of one channel behind one driver.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSinkGroup {
    #[serde(rename = "type")]
    pub mode: crate::sink::group::GroupMode,
    /// Member sinks, in priority order (failover).
    pub sinks: Vec<String>,
    pub selector: Option<crate::sink::group::Selector>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawAgent {
    pub name: Option<String>,
    pub hostname: Option<String>,
    pub summary_interval_secs: Option<u64>,
    pub shutdown_timeout_secs: Option<u64>,
    pub data_dir: Option<String>,
    pub plugin_cache: Option<bool>,
    pub plugin_backend: Option<crate::plugin::Backend>,
    pub watch_plugins: Option<bool>,
    pub admin_listen: Option<std::net::SocketAddr>,
    /// A file holding the admin endpoint's bearer token.
    pub admin_token_file: Option<String>,
    pub require_signed: Option<bool>,
    #[serde(default)]
    pub trusted_keys: Vec<String>,
}

/// The settings every source has, whatever its type.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommonSource {
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
    pub batch_bytes: Option<usize>,
    pub batch_timeout_ms: Option<u64>,
    pub max_line_bytes: Option<usize>,
    /// Tags every event of the source gets (unless it has the tag already).
    #[serde(default)]
    pub add_tags: IndexMap<String, String>,
}

impl CommonSource {
    pub const KEYS: &'static [&'static str] = &[
        "name",
        "plugins",
        "channels",
        "dead_letter",
        "routes",
        "batch_size",
        "batch_bytes",
        "batch_timeout_ms",
        "max_line_bytes",
        "add_tags",
    ];
}

/// The settings every sink has, whatever its type.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommonSink {
    pub channel: String,
    pub batch_size: Option<usize>,
    pub batch_bytes: Option<usize>,
    pub batch_timeout_ms: Option<u64>,
    /// Where batches the destination refuses for good go (a channel); without it they
    /// are dropped and counted.
    pub dead_letter: Option<String>,
    /// First delay before a failed send is retried; doubles (with jitter) per attempt.
    pub retry_initial_ms: Option<u64>,
    /// Longest delay between retries (also caps a destination's `Retry-After`).
    pub retry_max_ms: Option<u64>,
}

impl CommonSink {
    pub const KEYS: &'static [&'static str] = &[
        "channel",
        "batch_size",
        "batch_bytes",
        "batch_timeout_ms",
        "dead_letter",
        "retry_initial_ms",
        "retry_max_ms",
    ];
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
    pub recycle_mb: Option<usize>,
    pub tick_ms: Option<u64>,
    pub state_max_mb: Option<usize>,
    #[serde(default)]
    pub config: toml::Table,
}
