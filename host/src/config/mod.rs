//! The agent config: parse (TOML, unknown keys refused) → validate (every reference
//! resolved, every setting in range) → typed specs that the topology builds from.
//! Every error names its key path and line.

mod locate;
mod raw;
pub mod registry;

pub use locate::Locator;
pub use registry::Problems;

use crate::builtin;
use crate::channel::ChannelType;
use crate::event::{Map, Value};
use crate::plugin::Limits;
use crate::sink::SinkType;
use crate::source::SourceType;
use indexmap::IndexMap;
use raw::{CommonSink, CommonSource, RawConfig, RawPlugin};
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// One problem in a config, with where it is.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    pub origin: String,
    pub line: Option<usize>,
    pub path: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}: ", self.origin)?,
            None => write!(f, "{}: ", self.origin)?,
        }
        if !self.path.is_empty() {
            write!(f, "`{}`: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

/// All problems found in a config.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// A validated agent config.
#[derive(Debug, Clone)]
pub struct AgentSpec {
    /// Where the config came from (a path, or `<embedded default>`).
    pub origin: String,
    /// The file it was read from (what SIGHUP reads again); none for a config text.
    pub config_path: Option<PathBuf>,
    pub name: String,
    pub hostname: Arc<str>,
    /// Where durable state lives: file channels (by default), source positions.
    pub data_dir: PathBuf,
    /// Whether compiled plugins are kept in `<data_dir>/plugin-cache`.
    pub plugin_cache: bool,
    /// What runs plugin code (Cranelift, or the Pulley interpreter).
    pub plugin_backend: crate::plugin::Backend,
    /// Whether a plugin is reloaded when its file changes.
    pub watch_plugins: bool,
    /// Where the admin HTTP endpoint listens (none: no endpoint).
    pub admin_listen: Option<std::net::SocketAddr>,
    /// The bearer token the admin endpoint asks for (`admin_token_file`'s contents).
    pub admin_token: Option<crate::sink::http::Secret>,
    /// Public keys plugin files must be signed with (`require_signed`); none: plugins
    /// need no signature.
    pub trusted_keys: Option<Vec<PathBuf>>,
    pub summary_interval: Option<Duration>,
    pub shutdown_timeout: Duration,
    pub plugins: Vec<PluginSpec>,
    pub sources: Vec<SourceSpec>,
    pub channels: Vec<ChannelSpec>,
    pub sinks: Vec<SinkSpec>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum PluginCode {
    Builtin(&'static str),
    Path(PathBuf),
}

/// What happens to an event a plugin could not handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnError {
    /// Keep the event, unchanged, with an error tag, and go on.
    Tag,
    /// Send the event (tagged) to the source's dead-letter channels.
    DeadLetter,
    /// Count it and drop it.
    Drop,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PluginSpec {
    pub name: String,
    pub line: Option<usize>,
    pub code: PluginCode,
    pub config: Value,
    pub on_error: OnError,
    /// Parsers: keep the raw body after a successful parse.
    pub keep_body: bool,
    pub limits: Limits,
    /// Processors: how often `tick` is called.
    pub tick: Option<Duration>,
}

/// When a batch is closed: at `size` events, `bytes` bytes, or `timeout` after its first
/// event, whichever comes first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchSpec {
    pub size: usize,
    pub bytes: usize,
    pub timeout: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RouteSpec {
    pub name: String,
    pub line: Option<usize>,
    pub channels: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SourceSpec {
    pub name: String,
    pub line: Option<usize>,
    pub event_name: Arc<str>,
    pub kind: SourceType,
    pub plugins: Vec<String>,
    pub channels: Vec<String>,
    pub dead_letter: Vec<String>,
    pub routes: Vec<RouteSpec>,
    pub batch: BatchSpec,
    pub max_line_bytes: usize,
    /// `add_tags`: set on every event of the source that lacks them.
    pub add_tags: crate::event::Tags,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ChannelSpec {
    pub name: String,
    pub line: Option<usize>,
    pub kind: ChannelType,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SinkSpec {
    pub name: String,
    pub line: Option<usize>,
    pub channel: String,
    pub batch: BatchSpec,
    pub dead_letter: Option<String>,
    /// Retry backoff: first delay, longest delay.
    pub retry: (Duration, Duration),
    pub kind: SinkType,
    /// Whether `batch_size` was written (else the default, clamped to the channel).
    batch_size_set: bool,
    /// For a sink group: its members (the group's channel, batch, retry and dead-letter
    /// settings are its first member's; `kind` too, unused).
    pub group: Option<SinkGroupSpec>,
}

/// A `[sink_groups.NAME]`: how batches are spread over its member sinks.
#[derive(Debug, Clone, PartialEq)]
pub struct SinkGroupSpec {
    pub mode: crate::sink::group::GroupMode,
    pub selector: crate::sink::group::Selector,
    /// In priority order.
    pub members: Vec<SinkSpec>,
}

/// Settings compared across a config reload: the same settings at another line of the
/// file are the same component.
macro_rules! unlined {
    ($($Spec:ty),+) => {$(
        impl $Spec {
            /// A copy with no line numbers, to compare settings.
            pub fn unlined(&self) -> Self {
                let mut copy = self.clone();
                copy.line = None;
                copy
            }
        }
    )+};
}
unlined!(PluginSpec, ChannelSpec);

impl SinkSpec {
    /// A copy with no line numbers, to compare settings.
    pub fn unlined(&self) -> Self {
        let mut copy = self.clone();
        copy.line = None;
        if let Some(group) = &mut copy.group {
            for member in &mut group.members {
                member.line = None;
            }
        }
        copy
    }
}

impl SourceSpec {
    /// A copy with no line numbers, to compare settings.
    pub fn unlined(&self) -> Self {
        let mut copy = self.clone();
        copy.line = None;
        for route in &mut copy.routes {
            route.line = None;
        }
        copy
    }
}

/// The config compiled into the binary, used when no `--config` is given.
pub const EMBEDDED_DEFAULT: &str = include_str!("../../../config/default.toml");
pub const EMBEDDED_ORIGIN: &str = "<embedded default>";

/// Parses and validates a config text.
pub fn load(text: &str, origin: &str) -> Result<AgentSpec, ConfigErrors> {
    let locator = Locator::new(text);
    let raw: RawConfig = toml::from_str(text).map_err(|e| {
        let line = e.span().map(|s| locator.line_of(s.start));
        ConfigErrors(vec![ConfigError {
            origin: origin.to_owned(),
            line,
            path: line
                .and_then(|l| locator.key_at_line(l))
                .unwrap_or_default(),
            message: e.message().trim_end().to_owned(),
        }])
    })?;
    Validator {
        origin,
        locator: &locator,
        errors: Vec::new(),
    }
    .validate(raw)
}

/// Reads and validates a config file.
pub fn load_file(path: &std::path::Path) -> Result<AgentSpec, ConfigErrors> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            origin: origin.clone(),
            line: None,
            path: String::new(),
            message: format!("cannot read the config: {e}"),
        }])
    })?;
    let mut spec = load(&text, &origin)?;
    spec.config_path = Some(path.to_owned());
    Ok(spec)
}

/// Converts a TOML value into an event value (datetimes become strings).
pub fn toml_to_value(value: &toml::Value) -> Value {
    match value {
        toml::Value::String(s) => Value::String(s.clone()),
        toml::Value::Integer(i) => Value::Int(*i),
        toml::Value::Float(f) => Value::Float(*f),
        toml::Value::Boolean(b) => Value::Bool(*b),
        toml::Value::Datetime(d) => Value::String(d.to_string()),
        toml::Value::Array(items) => Value::Array(items.iter().map(toml_to_value).collect()),
        toml::Value::Table(t) => Value::Object(table_to_map(t)),
    }
}

fn table_to_map(table: &toml::Table) -> Map {
    table
        .iter()
        .map(|(k, v)| (k.clone(), toml_to_value(v)))
        .collect()
}

struct Validator<'a> {
    origin: &'a str,
    locator: &'a Locator<'a>,
    errors: Vec<ConfigError>,
}

impl Validator<'_> {
    fn error(&mut self, path: &[&str], message: impl Into<String>) {
        self.errors.push(ConfigError {
            origin: self.origin.to_owned(),
            line: self.locator.line(path),
            path: display_path(path),
            message: message.into(),
        });
    }

    /// Records a component's problems under its key path.
    fn problems(&mut self, at: &[&str], problems: Problems) {
        for (rel, message) in problems.found {
            let mut path: Vec<&str> = at.to_vec();
            path.extend(rel.iter().map(String::as_str));
            self.error(&path, message);
        }
    }

    fn validate(mut self, raw: RawConfig) -> Result<AgentSpec, ConfigErrors> {
        let hostname: Arc<str> = Arc::from(raw.agent.hostname.clone().unwrap_or_else(os_hostname));
        let plugins: Vec<PluginSpec> = raw
            .plugins
            .iter()
            .filter_map(|(name, p)| self.plugin(name, p))
            .collect();
        let channels: Vec<ChannelSpec> = raw
            .channels
            .iter()
            .filter_map(|(name, table)| self.channel(name, table.clone()))
            .collect();
        let channel_names: Vec<&str> = raw.channels.keys().map(String::as_str).collect();
        let plugin_names: Vec<&str> = raw.plugins.keys().map(String::as_str).collect();

        if raw.sources.is_empty() {
            self.error(
                &[],
                "no [sources.*] defined: an agent needs at least one source",
            );
        }
        let mut sources = Vec::new();
        for (name, table) in &raw.sources {
            if let Some(spec) =
                self.source(name, table.clone(), &channel_names, &plugin_names, &plugins)
            {
                sources.push(spec);
            }
        }
        let mut sinks: Vec<SinkSpec> = Vec::new();
        for (name, table) in &raw.sinks {
            if let Some(spec) = self.sink(name, table.clone(), &channel_names) {
                sinks.push(spec);
            }
        }
        // Every channel a sink names counts as drained, even a sink with other problems
        // (those are reported on their own).
        let drained: HashSet<&str> = raw
            .sinks
            .values()
            .filter_map(|t| t.get("channel").and_then(toml::Value::as_str))
            .collect();
        self.check_channel_use(&drained, &channel_names);
        self.check_batches_fit(&mut sinks, &channels);
        self.check_feedback_loops(&sources, &sinks);
        let sinks = self.sink_groups(&raw.sink_groups, sinks, &raw.sinks);
        let admin_token = match &raw.agent.admin_token_file {
            Some(file) => match crate::bearer::read_file(Path::new(file)) {
                Ok(token) => Some(crate::sink::http::Secret(token)),
                Err(e) => {
                    self.error(&["agent", "admin_token_file"], format!("{file}: {e}"));
                    None
                }
            },
            None => None,
        };
        if let Some(addr) = raw.agent.admin_listen
            && !addr.ip().is_loopback()
            && raw.agent.admin_token_file.is_none()
        {
            self.error(
                &["agent", "admin_listen"],
                format!(
                    "{addr} is reachable from other hosts: set `admin_token_file` too (the endpoint reloads config and plugins), or listen on 127.0.0.1"
                ),
            );
        }
        if raw.agent.require_signed == Some(true) && raw.agent.trusted_keys.is_empty() {
            self.error(
                &["agent", "trusted_keys"],
                "require_signed needs at least one trusted public key file (made by `runnel plugin keygen`)",
            );
        }

        if !self.errors.is_empty() {
            return Err(ConfigErrors(self.errors));
        }
        Ok(AgentSpec {
            origin: self.origin.to_owned(),
            config_path: None,
            name: raw.agent.name.unwrap_or_else(|| hostname.to_string()),
            hostname,
            data_dir: PathBuf::from(raw.agent.data_dir.as_deref().unwrap_or("runnel-data")),
            plugin_cache: raw.agent.plugin_cache.unwrap_or(true),
            plugin_backend: raw.agent.plugin_backend.unwrap_or_default(),
            watch_plugins: raw.agent.watch_plugins.unwrap_or(true),
            admin_listen: raw.agent.admin_listen,
            admin_token,
            trusted_keys: raw
                .agent
                .require_signed
                .unwrap_or(false)
                .then(|| raw.agent.trusted_keys.iter().map(PathBuf::from).collect()),
            summary_interval: match raw.agent.summary_interval_secs {
                Some(0) => None,
                Some(s) => Some(Duration::from_secs(s)),
                None => Some(Duration::from_secs(10)),
            },
            shutdown_timeout: Duration::from_secs(raw.agent.shutdown_timeout_secs.unwrap_or(30)),
            plugins,
            sources,
            channels,
            sinks,
        })
    }

    /// Splits a component's table into the settings every component of its kind has
    /// and the settings of its type, and reads the first with `read`.
    fn split<T: serde::de::DeserializeOwned>(
        &mut self,
        at: &[&str],
        mut table: toml::Table,
        common_keys: &[&str],
        what: &str,
    ) -> Option<(T, toml::Table)> {
        let mut common = toml::Table::new();
        for key in common_keys {
            if let Some(v) = table.remove(*key) {
                common.insert((*key).to_owned(), v);
            }
        }
        match registry::deserialize::<T>(common, what) {
            Ok(c) => Some((c, table)),
            Err(e) => {
                let mut path: Vec<&str> = at.to_vec();
                path.extend(e.path.iter().map(String::as_str));
                self.error(&path, e.message);
                None
            }
        }
    }

    /// Reads the `type` of a component and its type's settings through a registry.
    fn typed<T>(
        &mut self,
        at: &[&str],
        mut table: toml::Table,
        kind: &str,
        types: &[&str],
        parse: impl FnOnce(&str, toml::Table) -> Option<Result<T, registry::SettingError>>,
    ) -> Option<T> {
        let mut type_path = at.to_vec();
        type_path.push("type");
        let tag = match table.remove("type") {
            Some(toml::Value::String(t)) => t,
            Some(_) => {
                self.error(&type_path, "must be a string");
                return None;
            }
            None => {
                self.error(at, format!("set `type` (one of {})", types.join(", ")));
                return None;
            }
        };
        match parse(&tag, table) {
            Some(Ok(config)) => Some(config),
            Some(Err(e)) => {
                let mut path: Vec<&str> = at.to_vec();
                path.extend(e.path.iter().map(String::as_str));
                self.error(&path, e.message);
                None
            }
            None => {
                self.error(
                    &type_path,
                    format!("unknown {kind} type `{tag}` (types: {})", types.join(", ")),
                );
                None
            }
        }
    }

    fn channel(&mut self, name: &str, table: toml::Table) -> Option<ChannelSpec> {
        let at = ["channels", name];
        let kind = self.typed(
            &at,
            table,
            "channel",
            ChannelType::TYPES,
            ChannelType::parse,
        )?;
        let mut problems = Problems::default();
        kind.config().validate(&mut problems);
        if !problems.is_empty() {
            self.problems(&at, problems);
            return None;
        }
        Some(ChannelSpec {
            name: name.to_owned(),
            line: self.locator.line(&at),
            kind,
        })
    }

    fn plugin(&mut self, name: &str, p: &RawPlugin) -> Option<PluginSpec> {
        let at = |key: &'static str| ["plugins", name, key];
        let code = match (&p.builtin, &p.path) {
            (Some(b), None) => match builtin::find(b) {
                Some(builtin) => Some(PluginCode::Builtin(builtin.name)),
                None => {
                    self.error(
                        &at("builtin"),
                        format!(
                            "no builtin plugin `{b}` (builtins: {})",
                            builtin::names().join(", ")
                        ),
                    );
                    None
                }
            },
            (None, Some(path)) => Some(PluginCode::Path(PathBuf::from(path))),
            (Some(_), Some(_)) => {
                self.error(
                    &["plugins", name],
                    "set either `builtin` or `path`, not both",
                );
                None
            }
            (None, None) => {
                self.error(
                    &["plugins", name],
                    "set `builtin` (a shipped plugin) or `path` (a .wasm file)",
                );
                None
            }
        };
        let on_error = match p.on_error.as_deref() {
            None | Some("tag") => Some(OnError::Tag),
            Some("dead-letter") => Some(OnError::DeadLetter),
            Some("drop") => Some(OnError::Drop),
            Some(other) => {
                self.error(
                    &at("on_error"),
                    format!("unknown value `{other}` (expected tag, dead-letter or drop)"),
                );
                None
            }
        };
        let (code, on_error) = (code?, on_error?);
        let defaults = Limits::default();
        let timeout_ms = p
            .timeout_ms
            .unwrap_or(defaults.call_timeout.as_millis() as u64);
        if timeout_ms == 0 {
            self.error(&at("timeout_ms"), "must be at least 1");
        }
        let memory_mb = p.memory_mb.unwrap_or(defaults.memory_bytes >> 20);
        if memory_mb == 0 || memory_mb > 4096 {
            self.error(&at("memory_mb"), "must be between 1 and 4096");
        }
        let state_mb = p.state_max_mb.unwrap_or(defaults.state_bytes >> 20);
        if state_mb == 0 || state_mb > 4096 {
            self.error(&at("state_max_mb"), "must be between 1 and 4096");
        }
        if p.tick_ms.is_some_and(|t| t < 10) {
            self.error(&at("tick_ms"), "must be at least 10");
        }
        // Three quarters of the cap unless set; 0 turns recycling off.
        let recycle_mb = p.recycle_mb.unwrap_or(memory_mb * 3 / 4);
        if recycle_mb > memory_mb {
            self.error(
                &at("recycle_mb"),
                format!("must be at most memory_mb ({memory_mb})"),
            );
        }
        Some(PluginSpec {
            name: name.to_owned(),
            line: self.locator.line(&["plugins", name]),
            code,
            config: Value::Object(table_to_map(&p.config)),
            on_error,
            keep_body: p.keep_body.unwrap_or(false),
            limits: Limits {
                memory_bytes: memory_mb << 20,
                call_timeout: Duration::from_millis(timeout_ms.max(1)),
                recycle_bytes: recycle_mb << 20,
                state_bytes: state_mb << 20,
            },
            tick: p.tick_ms.map(Duration::from_millis),
        })
    }

    fn batch(
        &mut self,
        at: &[&str],
        size: Option<usize>,
        bytes: Option<usize>,
        timeout_ms: Option<u64>,
        default_timeout: u64,
    ) -> BatchSpec {
        let key = |k: &'static str| {
            let mut p = at.to_vec();
            p.push(k);
            p
        };
        let size = size.unwrap_or(512);
        if size == 0 {
            self.error(&key("batch_size"), "must be at least 1");
        }
        let bytes = bytes.unwrap_or(DEFAULT_BATCH_BYTES);
        if bytes < 1024 {
            self.error(&key("batch_bytes"), "must be at least 1024");
        }
        BatchSpec {
            size: size.max(1),
            bytes: bytes.max(1024),
            timeout: Duration::from_millis(timeout_ms.unwrap_or(default_timeout)),
        }
    }

    fn refs(&mut self, path: &[&str], names: &[String], defined: &[&str], what: &str) {
        for (i, n) in names.iter().enumerate() {
            if !defined.contains(&n.as_str()) {
                let index = i.to_string();
                let mut p = path.to_vec();
                p.push(&index);
                self.error(&p, undefined(what, n, defined));
            }
        }
    }

    fn source(
        &mut self,
        name: &str,
        table: toml::Table,
        channels: &[&str],
        plugin_names: &[&str],
        plugins: &[PluginSpec],
    ) -> Option<SourceSpec> {
        let at = ["sources", name];
        let errors_before = self.errors.len();
        let (s, rest) = self.split::<CommonSource>(&at, table, CommonSource::KEYS, "a source")?;
        let kind = self.typed(&at, rest, "source", SourceType::TYPES, SourceType::parse);
        if let Some(kind) = &kind {
            let mut problems = Problems::default();
            kind.config().validate(&mut problems);
            self.problems(&at, problems);
        }
        self.refs(
            &["sources", name, "plugins"],
            &s.plugins,
            plugin_names,
            "plugin",
        );
        self.refs(
            &["sources", name, "channels"],
            &s.channels,
            channels,
            "channel",
        );
        self.refs(
            &["sources", name, "dead_letter"],
            &s.dead_letter,
            channels,
            "channel",
        );
        if s.channels.is_empty() {
            self.error(&at, "set `channels`: where this source's events go");
        }
        for (route, targets) in &s.routes {
            self.refs(
                &["sources", name, "routes", route],
                targets,
                channels,
                "channel",
            );
        }
        let needs_dead_letter = s
            .plugins
            .iter()
            .filter_map(|p| plugins.iter().find(|spec| &spec.name == p))
            .find(|spec| spec.on_error == OnError::DeadLetter);
        if let (Some(p), true) = (needs_dead_letter, s.dead_letter.is_empty()) {
            self.error(
                &["sources", name, "plugins"],
                format!("plugin `{}` has on_error = \"dead-letter\" but this source sets no `dead_letter` channel", p.name),
            );
        }
        if !s.routes.is_empty() && s.plugins.is_empty() {
            self.error(
                &["sources", name, "routes"],
                "routes need a router plugin in `plugins`",
            );
        }
        let batch = self.batch(&at, s.batch_size, s.batch_bytes, s.batch_timeout_ms, 200);
        let max_line_bytes = s.max_line_bytes.unwrap_or(DEFAULT_MAX_LINE_BYTES);
        if !(16..=MAX_LINE_BYTES_LIMIT).contains(&max_line_bytes) {
            self.error(
                &["sources", name, "max_line_bytes"],
                format!("must be between 16 and {MAX_LINE_BYTES_LIMIT}"),
            );
        }
        let mut add_tags = crate::event::Tags::default();
        for (key, value) in &s.add_tags {
            if key.is_empty() {
                self.error(
                    &["sources", name, "add_tags"],
                    "a tag name must not be empty",
                );
            }
            add_tags.set(key.as_str(), value.as_str());
        }
        let kind = kind?;
        if self.errors.len() > errors_before {
            return None;
        }
        Some(SourceSpec {
            name: name.to_owned(),
            line: self.locator.line(&at),
            event_name: Arc::from(s.name.as_deref().unwrap_or(name)),
            kind,
            plugins: s.plugins.clone(),
            channels: s.channels.clone(),
            dead_letter: s.dead_letter.clone(),
            routes: s
                .routes
                .iter()
                .map(|(r, targets)| RouteSpec {
                    name: r.clone(),
                    line: self.locator.line(&["sources", name, "routes", r]),
                    channels: targets.clone(),
                })
                .collect(),
            batch,
            max_line_bytes,
            add_tags,
        })
    }

    fn sink(&mut self, name: &str, table: toml::Table, channels: &[&str]) -> Option<SinkSpec> {
        let at = ["sinks", name];
        let errors_before = self.errors.len();
        let (s, rest) = self.split::<CommonSink>(&at, table, CommonSink::KEYS, "a sink")?;
        if !channels.contains(&s.channel.as_str()) {
            self.error(
                &["sinks", name, "channel"],
                undefined("channel", &s.channel, channels),
            );
        }
        if let Some(dl) = &s.dead_letter {
            if !channels.contains(&dl.as_str()) {
                self.error(
                    &["sinks", name, "dead_letter"],
                    undefined("channel", dl, channels),
                );
            } else if *dl == s.channel {
                self.error(
                    &["sinks", name, "dead_letter"],
                    "must not be the channel this sink takes from (refused batches would come straight back)",
                );
            }
        }
        let batch = self.batch(&at, s.batch_size, s.batch_bytes, s.batch_timeout_ms, 1000);
        let retry_initial = s.retry_initial_ms.unwrap_or(100);
        let retry_max = s.retry_max_ms.unwrap_or(30_000);
        if !(1..=3_600_000).contains(&retry_initial) {
            self.error(
                &["sinks", name, "retry_initial_ms"],
                "must be between 1 and 3600000",
            );
        }
        if retry_max < retry_initial || retry_max > 3_600_000 {
            self.error(
                &["sinks", name, "retry_max_ms"],
                "must be between `retry_initial_ms` and 3600000",
            );
        }
        let kind = self.typed(&at, rest, "sink", SinkType::TYPES, SinkType::parse)?;
        let mut problems = Problems::default();
        kind.config().validate(&mut problems);
        self.problems(&at, problems);
        if self.errors.len() > errors_before {
            return None;
        }
        Some(SinkSpec {
            name: name.to_owned(),
            line: self.locator.line(&at),
            channel: s.channel,
            batch,
            dead_letter: s.dead_letter,
            retry: (
                Duration::from_millis(retry_initial),
                Duration::from_millis(retry_max),
            ),
            kind,
            batch_size_set: s.batch_size.is_some(),
            group: None,
        })
    }

    /// Replaces the member sinks of each `[sink_groups.NAME]` by one group sink.
    fn sink_groups(
        &mut self,
        groups: &IndexMap<String, raw::RawSinkGroup>,
        mut sinks: Vec<SinkSpec>,
        raw_sinks: &IndexMap<String, toml::Table>,
    ) -> Vec<SinkSpec> {
        use crate::sink::group::{GroupMode, Selector};
        let mut grouped: HashMap<String, String> = HashMap::new();
        for (name, group) in groups {
            let before = self.errors.len();
            if raw_sinks.contains_key(name) {
                self.error(
                    &["sink_groups", name],
                    format!("a sink is named `{name}` too: a group needs a name of its own"),
                );
            }
            if group.sinks.len() < 2 {
                self.error(
                    &["sink_groups", name, "sinks"],
                    "a group needs at least two sinks",
                );
            }
            if group.selector.is_some() && group.mode != GroupMode::LoadBalance {
                self.error(
                    &["sink_groups", name, "selector"],
                    "only for `type = \"load_balance\"`",
                );
            }
            let mut members = Vec::new();
            for (i, member) in group.sinks.iter().enumerate() {
                let key = format!("sinks[{i}]");
                let path = ["sink_groups", name.as_str(), key.as_str()];
                if !raw_sinks.contains_key(member) {
                    let names: Vec<&str> = raw_sinks.keys().map(String::as_str).collect();
                    self.error(&path, undefined("sink", member, &names));
                    continue;
                }
                if let Some(other) = grouped.insert(member.clone(), name.clone()) {
                    self.error(
                        &path,
                        format!("sink `{member}` is already in group `{other}`"),
                    );
                    continue;
                }
                // A member with errors of its own was reported, and is not in `sinks`.
                let Some(spec) = sinks.iter().find(|s| s.name == *member) else {
                    continue;
                };
                if let Some(first) = members.first() {
                    let first: &SinkSpec = first;
                    if spec.channel != first.channel {
                        self.error(&["sinks", member, "channel"], format!("`{}`: the members of group `{name}` take from one channel, `{}` (its first sink's)", spec.channel, first.channel));
                    }
                    if spec.dead_letter != first.dead_letter {
                        self.error(&["sinks", member, "dead_letter"], format!("the members of group `{name}` share their first sink's dead_letter ({})", first.dead_letter.as_deref().unwrap_or("none")));
                    }
                }
                members.push(spec.clone());
            }
            if self.errors.len() > before || members.is_empty() {
                continue;
            }
            let mut spec = members[0].clone();
            spec.name = name.clone();
            spec.line = self.locator.line(&["sink_groups", name]);
            spec.group = Some(SinkGroupSpec {
                mode: group.mode,
                selector: group.selector.unwrap_or(Selector::RoundRobin),
                members,
            });
            sinks.push(spec);
        }
        sinks.retain(|s| !grouped.contains_key(&s.name));
        sinks
    }

    /// Every channel must have a consumer, or events would pile up in it.
    fn check_channel_use(&mut self, consumed: &HashSet<&str>, channels: &[&str]) {
        for name in channels {
            if !consumed.contains(name) {
                self.error(
                    &["channels", name],
                    format!(
                        "no sink takes from channel `{name}`; events put there would never leave"
                    ),
                );
            }
        }
    }

    /// A sink waiting for a batch larger than its channel can hold would only ever get
    /// timed-out partial batches: refuse such a `batch_size`, clamp the default.
    fn check_batches_fit(&mut self, sinks: &mut [SinkSpec], channels: &[ChannelSpec]) {
        for sink in sinks {
            let Some(channel) = channels.iter().find(|c| c.name == sink.channel) else {
                continue;
            };
            let capacity = channel.kind.config().capacity_events();
            if !sink.batch_size_set {
                sink.batch.size = sink.batch.size.min(capacity);
            } else if sink.batch.size > capacity {
                self.error(
                    &["sinks", &sink.name, "batch_size"],
                    format!(
                        "{} is larger than the capacity of channel `{}` ({capacity} events): the batch could never fill",
                        sink.batch.size, channel.name
                    ),
                );
            }
        }
    }

    /// A sink writing into a file a source reads would feed the agent its own output.
    fn check_feedback_loops(&mut self, sources: &[SourceSpec], sinks: &[SinkSpec]) {
        for sink in sinks {
            let Some(written) = sink.kind.config().writes_file() else {
                continue;
            };
            for source in sources {
                if source.kind.config().reads_file(&written) {
                    self.error(
                        &["sinks", &sink.name, "path"],
                        format!(
                            "writes {}, which source `{}` reads: the agent would read its own output in a loop",
                            written.display(),
                            source.name
                        ),
                    );
                }
            }
        }
    }
}

/// Default `batch_bytes` (sources and sinks): a batch is closed at this many bytes of
/// line bodies even when it has fewer than `batch_size` events.
pub const DEFAULT_BATCH_BYTES: usize = 1 << 20;
/// Default `max_line_bytes`.
pub const DEFAULT_MAX_LINE_BYTES: usize = 1 << 20;
/// Largest `max_line_bytes` accepted.
const MAX_LINE_BYTES_LIMIT: usize = 64 << 20;

fn undefined(what: &str, name: &str, defined: &[&str]) -> String {
    format!(
        "{what} `{name}` is not defined (defined: {})",
        if defined.is_empty() {
            "none".to_owned()
        } else {
            defined.join(", ")
        }
    )
}

fn display_path(path: &[&str]) -> String {
    let mut out = String::new();
    for seg in path {
        if seg.parse::<usize>().is_ok() && !out.is_empty() {
            out.push_str(&format!("[{seg}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(seg);
        }
    }
    out
}

pub(crate) fn os_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[plugins.access]
builtin = "combined"

[sources.web]
type = "file"
path = "/var/log/access.log"
plugins = ["access"]
channels = ["main"]

[channels.main]
type = "memory"
capacity = 100

[sinks.out]
type = "console"
channel = "main"
"#;

    fn errors(text: &str) -> Vec<ConfigError> {
        load(text, "t.toml").unwrap_err().0
    }

    #[test]
    fn a_good_config_validates() {
        let spec = load(GOOD, "t.toml").unwrap();
        assert_eq!(spec.sources[0].event_name.as_ref(), "web");
        assert_eq!(spec.channels[0].kind.config().capacity_events(), 100);
        assert_eq!(spec.sources[0].kind.type_name(), "file");
    }

    #[test]
    fn unknown_keys_are_refused_with_their_line() {
        let text = GOOD.replace("capacity = 100", "capacity = 100\ncapasity = 5");
        let e = &errors(&text)[0];
        assert_eq!(e.line, Some(14));
        assert!(e.message.contains("unknown field `capasity`"), "{e}");
    }

    #[test]
    fn undefined_channels_name_the_key_and_line() {
        let text = GOOD.replace("channels = [\"main\"]", "channels = [\"mian\"]");
        let e = &errors(&text)[0];
        assert_eq!(e.path, "sources.web.channels[0]");
        assert_eq!(e.line, Some(9));
        assert!(
            e.message.contains("`mian` is not defined (defined: main)"),
            "{e}"
        );
    }

    #[test]
    fn settings_of_another_source_type_are_refused() {
        let text = GOOD.replace(
            "type = \"file\"",
            "type = \"file\"\ncommand = \"tail -F x\"",
        );
        let e = &errors(&text)[0];
        assert_eq!(e.path, "sources.web.command");
        assert!(e.message.contains("not a setting of a `file` source"));
    }

    #[test]
    fn unknown_builtin_and_bad_enum_values() {
        let text = GOOD.replace(
            "builtin = \"combined\"",
            "builtin = \"nope\"\non_error = \"explode\"",
        );
        let all = errors(&text);
        assert!(all.iter().any(|e| e.path == "plugins.access.builtin"));
        assert!(all.iter().any(|e| e.path == "plugins.access.on_error"));
    }

    #[test]
    fn a_channel_nobody_drains_is_refused() {
        let text = format!("{GOOD}\n[channels.orphan]\ntype = \"memory\"\n");
        let e = errors(&text);
        assert!(
            e.iter()
                .any(|e| e.path == "channels.orphan" && e.message.contains("no sink"))
        );
    }

    #[test]
    fn type_errors_name_their_key_and_line() {
        let text = GOOD.replace("capacity = 100", "capacity = -1");
        let e = &errors(&text)[0];
        assert_eq!(e.path, "channels.main.capacity");
        assert_eq!(e.line, Some(13));
    }

    #[test]
    fn duplicate_keys_name_their_key() {
        let text = GOOD.replace("capacity = 100", "capacity = 100\ncapacity = 5");
        let e = &errors(&text)[0];
        assert_eq!(e.path, "channels.main.capacity");
        assert_eq!(e.line, Some(14));
    }

    #[test]
    fn a_sink_batch_larger_than_its_channel_is_refused() {
        let text = GOOD.replace("type = \"console\"", "type = \"console\"\nbatch_size = 512");
        let e = &errors(&text)[0];
        assert_eq!(e.path, "sinks.out.batch_size");
        assert!(
            e.message
                .contains("capacity of channel `main` (100 events)"),
            "{e}"
        );
    }

    #[test]
    fn a_sink_writing_the_file_its_source_reads_is_refused() {
        let text = GOOD.replace(
            "type = \"console\"",
            "type = \"file\"\npath = \"/var/log/access.log\"",
        );
        let e = &errors(&text)[0];
        assert_eq!(e.path, "sinks.out.path");
        assert!(e.message.contains("source `web` reads"), "{e}");
    }

    #[test]
    fn a_file_source_on_a_directory_or_empty_path_is_refused() {
        for path in ["/tmp", ""] {
            let text = GOOD.replace("/var/log/access.log", path);
            let e = &errors(&text)[0];
            assert_eq!(e.path, "sources.web.path", "{e}");
        }
    }

    #[test]
    fn unknown_types_list_the_known_ones() {
        let text = GOOD.replace("type = \"memory\"", "type = \"memroy\"");
        let e = &errors(&text)[0];
        assert_eq!(e.path, "channels.main.type");
        assert!(e.message.contains("memory, file"), "{e}");
    }

    #[test]
    fn the_embedded_default_validates() {
        load(EMBEDDED_DEFAULT, EMBEDDED_ORIGIN).unwrap();
    }
}
