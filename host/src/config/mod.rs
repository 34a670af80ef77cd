//! The agent config: parse (TOML, unknown keys refused) → validate (every reference
//! resolved, every setting in range) → typed specs that the topology builds from.
//! Every error names its key path and line.

mod locate;
mod raw;

pub use locate::Locator;

use crate::builtin;
use crate::encoding::Format;
use crate::event::{Map, Value};
use crate::plugin::Limits;
use raw::{RawConfig, RawPlugin, RawSink, RawSource, SinkType, SourceType};
use std::collections::HashSet;
use std::fmt;
use std::path::PathBuf;
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
    pub name: String,
    pub hostname: Arc<str>,
    pub summary_interval: Option<Duration>,
    pub shutdown_timeout: Duration,
    pub plugins: Vec<PluginSpec>,
    pub sources: Vec<SourceSpec>,
    pub channels: Vec<ChannelSpec>,
    pub sinks: Vec<SinkSpec>,
}

#[derive(Debug, Clone)]
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

#[derive(Debug, Clone)]
pub struct PluginSpec {
    pub name: String,
    pub line: Option<usize>,
    pub code: PluginCode,
    pub config: Value,
    pub on_error: OnError,
    /// Parsers: keep the raw body after a successful parse.
    pub keep_body: bool,
    pub limits: Limits,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchSpec {
    pub size: usize,
    pub timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadFrom {
    Start,
    End,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SourceKind {
    Exec {
        command: String,
        backoff_initial: Duration,
        backoff_max: Duration,
    },
    File {
        path: PathBuf,
        read_from: ReadFrom,
        poll_interval: Duration,
        /// Stop at the end of the file instead of following it (Fluent Bit's
        /// `Exit_On_Eof`): for replaying a file, and for benchmarks.
        exit_on_eof: bool,
    },
    Stdin,
    Generator(GeneratorSpec),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GeneratedKind {
    Access,
    App,
    Syslog,
}

impl GeneratedKind {
    const NAMES: [(&'static str, GeneratedKind); 3] = [
        ("access", GeneratedKind::Access),
        ("app", GeneratedKind::App),
        ("syslog", GeneratedKind::Syslog),
    ];
}

#[derive(Debug, Clone, PartialEq)]
pub struct GeneratorSpec {
    /// Concurrent simulated applications.
    pub apps: usize,
    /// Lines per second per application; `None`: as fast as the pipeline takes them.
    pub rate: Option<f64>,
    /// Lines per application before it stops; `None`: forever.
    pub count: Option<u64>,
    pub kinds: Vec<GeneratedKind>,
    pub seed: u64,
}

#[derive(Debug, Clone)]
pub struct RouteSpec {
    pub name: String,
    pub line: Option<usize>,
    pub channels: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct SourceSpec {
    pub name: String,
    pub line: Option<usize>,
    pub event_name: Arc<str>,
    pub kind: SourceKind,
    pub plugins: Vec<String>,
    pub channels: Vec<String>,
    pub dead_letter: Vec<String>,
    pub routes: Vec<RouteSpec>,
    pub batch: BatchSpec,
    pub max_line_bytes: usize,
}

#[derive(Debug, Clone)]
pub struct ChannelSpec {
    pub name: String,
    pub capacity: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SinkKind {
    Console { format: Format, stream: Stream },
    File { path: PathBuf, format: Format },
}

#[derive(Debug, Clone)]
pub struct SinkSpec {
    pub name: String,
    pub channel: String,
    pub batch: BatchSpec,
    pub kind: SinkKind,
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
            path: String::new(),
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
    load(&text, &origin)
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
            .filter_map(|(name, c)| {
                let raw::ChannelType::Memory = c.kind;
                let capacity = c.capacity.unwrap_or(10_000);
                if capacity == 0 {
                    self.error(&["channels", name, "capacity"], "must be at least 1");
                    return None;
                }
                Some(ChannelSpec {
                    name: name.clone(),
                    capacity,
                })
            })
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
        for (name, s) in &raw.sources {
            if let Some(spec) = self.source(name, s, &channel_names, &plugin_names, &plugins) {
                sources.push(spec);
            }
        }
        let mut sinks = Vec::new();
        for (name, s) in &raw.sinks {
            if let Some(spec) = self.sink(name, s, &channel_names) {
                sinks.push(spec);
            }
        }
        self.check_channel_use(&raw, &channel_names);

        if !self.errors.is_empty() {
            return Err(ConfigErrors(self.errors));
        }
        Ok(AgentSpec {
            origin: self.origin.to_owned(),
            name: raw.agent.name.unwrap_or_else(|| hostname.to_string()),
            hostname,
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
            },
        })
    }

    fn batch(
        &mut self,
        section: &str,
        name: &str,
        size: Option<usize>,
        timeout_ms: Option<u64>,
        default_timeout: u64,
    ) -> BatchSpec {
        let size = size.unwrap_or(512);
        if size == 0 {
            self.error(&[section, name, "batch_size"], "must be at least 1");
        }
        BatchSpec {
            size: size.max(1),
            timeout: Duration::from_millis(timeout_ms.unwrap_or(default_timeout)),
        }
    }

    fn refs(&mut self, path: &[&str], names: &[String], defined: &[&str], what: &str) {
        for (i, n) in names.iter().enumerate() {
            if !defined.contains(&n.as_str()) {
                let index = i.to_string();
                let mut p = path.to_vec();
                p.push(&index);
                self.error(
                    &p,
                    format!(
                        "{what} `{n}` is not defined (defined: {})",
                        if defined.is_empty() {
                            "none".to_owned()
                        } else {
                            defined.join(", ")
                        }
                    ),
                );
            }
        }
    }

    fn source(
        &mut self,
        name: &str,
        s: &RawSource,
        channels: &[&str],
        plugin_names: &[&str],
        plugins: &[PluginSpec],
    ) -> Option<SourceSpec> {
        let errors_before = self.errors.len();
        let kind = self.source_kind(name, s);
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
            self.error(
                &["sources", name],
                "set `channels`: where this source's events go",
            );
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
        let batch = self.batch("sources", name, s.batch_size, s.batch_timeout_ms, 200);
        let max_line_bytes = s.max_line_bytes.unwrap_or(1 << 20);
        if max_line_bytes < 16 {
            self.error(&["sources", name, "max_line_bytes"], "must be at least 16");
        }
        let kind = kind?;
        if self.errors.len() > errors_before {
            return None;
        }
        Some(SourceSpec {
            name: name.to_owned(),
            line: self.locator.line(&["sources", name]),
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
        })
    }

    fn source_kind(&mut self, name: &str, s: &RawSource) -> Option<SourceKind> {
        let only = |v: &mut Self, present: &[(&str, bool)]| {
            for (key, set) in present {
                if *set {
                    v.error(
                        &["sources", name, key],
                        format!(
                            "`{key}` is not a setting of a `{}` source",
                            type_name(s.kind)
                        ),
                    );
                }
            }
        };
        let exec_keys = [
            ("command", s.command.is_some()),
            ("restart_backoff_ms", s.restart_backoff_ms.is_some()),
            ("restart_backoff_max_ms", s.restart_backoff_max_ms.is_some()),
        ];
        let file_keys = [
            ("path", s.path.is_some()),
            ("read_from", s.read_from.is_some()),
            ("poll_interval_ms", s.poll_interval_ms.is_some()),
            ("exit_on_eof", s.exit_on_eof.is_some()),
        ];
        let gen_keys = [
            ("apps", s.apps.is_some()),
            ("rate", s.rate.is_some()),
            ("count", s.count.is_some()),
            ("kinds", s.kinds.is_some()),
            ("seed", s.seed.is_some()),
        ];
        match s.kind {
            SourceType::Exec => {
                only(self, &file_keys);
                only(self, &gen_keys);
                let Some(command) = s.command.clone().filter(|c| !c.trim().is_empty()) else {
                    self.error(&["sources", name], "an exec source needs `command`");
                    return None;
                };
                let initial = s.restart_backoff_ms.unwrap_or(1000).max(1);
                let max = s.restart_backoff_max_ms.unwrap_or(30_000).max(initial);
                Some(SourceKind::Exec {
                    command,
                    backoff_initial: Duration::from_millis(initial),
                    backoff_max: Duration::from_millis(max),
                })
            }
            SourceType::File => {
                only(self, &exec_keys);
                only(self, &gen_keys);
                let Some(path) = s.path.clone() else {
                    self.error(&["sources", name], "a file source needs `path`");
                    return None;
                };
                let read_from = match s.read_from.as_deref() {
                    None | Some("end") => ReadFrom::End,
                    Some("start") => ReadFrom::Start,
                    Some(other) => {
                        self.error(
                            &["sources", name, "read_from"],
                            format!("unknown value `{other}` (expected start or end)"),
                        );
                        return None;
                    }
                };
                Some(SourceKind::File {
                    path: PathBuf::from(path),
                    read_from,
                    poll_interval: Duration::from_millis(s.poll_interval_ms.unwrap_or(250).max(10)),
                    exit_on_eof: s.exit_on_eof.unwrap_or(false),
                })
            }
            SourceType::Stdin => {
                only(self, &exec_keys);
                only(self, &file_keys);
                only(self, &gen_keys);
                Some(SourceKind::Stdin)
            }
            SourceType::Generator => {
                only(self, &exec_keys);
                only(self, &file_keys);
                let apps = s.apps.unwrap_or(4);
                if apps == 0 || apps > 10_000 {
                    self.error(&["sources", name, "apps"], "must be between 1 and 10000");
                    return None;
                }
                let rate = match s.rate {
                    None => Some(10.0),
                    Some(0.0) => None,
                    Some(r) if r.is_finite() && (0.001..=10_000_000.0).contains(&r) => Some(r),
                    Some(_) => {
                        self.error(&["sources", name, "rate"], "must be between 0.001 and 10000000 lines per second, or 0 for as fast as possible");
                        return None;
                    }
                };
                let mut kinds = Vec::new();
                for (i, k) in s
                    .kinds
                    .clone()
                    .unwrap_or_else(|| vec!["access".into(), "app".into(), "syslog".into()])
                    .iter()
                    .enumerate()
                {
                    match GeneratedKind::NAMES.iter().find(|(n, _)| n == k) {
                        Some((_, kind)) => kinds.push(*kind),
                        None => self.error(
                            &["sources", name, "kinds", &i.to_string()],
                            format!("unknown kind `{k}` (expected access, app or syslog)"),
                        ),
                    }
                }
                if kinds.is_empty() {
                    self.error(&["sources", name, "kinds"], "name at least one kind");
                    return None;
                }
                Some(SourceKind::Generator(GeneratorSpec {
                    apps,
                    rate,
                    count: s.count,
                    kinds,
                    seed: s.seed.unwrap_or(0x5eed),
                }))
            }
        }
    }

    fn sink(&mut self, name: &str, s: &RawSink, channels: &[&str]) -> Option<SinkSpec> {
        let errors_before = self.errors.len();
        if !channels.contains(&s.channel.as_str()) {
            self.error(
                &["sinks", name, "channel"],
                format!(
                    "channel `{}` is not defined (defined: {})",
                    s.channel,
                    if channels.is_empty() {
                        "none".to_owned()
                    } else {
                        channels.join(", ")
                    }
                ),
            );
        }
        let format = match s.format.as_deref().map(str::parse::<Format>) {
            None => None,
            Some(Ok(f)) => Some(f),
            Some(Err(e)) => {
                self.error(&["sinks", name, "format"], e);
                None
            }
        };
        let batch = self.batch("sinks", name, s.batch_size, s.batch_timeout_ms, 1000);
        let kind = match s.kind {
            SinkType::Console => {
                if s.path.is_some() {
                    self.error(
                        &["sinks", name, "path"],
                        "`path` is not a setting of a `console` sink",
                    );
                }
                let stream = match s.stream.as_deref() {
                    None | Some("stdout") => Stream::Stdout,
                    Some("stderr") => Stream::Stderr,
                    Some(other) => {
                        self.error(
                            &["sinks", name, "stream"],
                            format!("unknown value `{other}` (expected stdout or stderr)"),
                        );
                        Stream::Stdout
                    }
                };
                SinkKind::Console {
                    format: format.unwrap_or(Format::Human),
                    stream,
                }
            }
            SinkType::File => {
                if s.stream.is_some() {
                    self.error(
                        &["sinks", name, "stream"],
                        "`stream` is not a setting of a `file` sink",
                    );
                }
                let Some(path) = &s.path else {
                    self.error(&["sinks", name], "a file sink needs `path`");
                    return None;
                };
                SinkKind::File {
                    path: PathBuf::from(path),
                    format: format.unwrap_or(Format::Json),
                }
            }
        };
        if self.errors.len() > errors_before {
            return None;
        }
        Some(SinkSpec {
            name: name.to_owned(),
            channel: s.channel.clone(),
            batch,
            kind,
        })
    }

    /// Every channel must have a producer and a consumer, or events would pile up in it
    /// (or it would never be fed).
    fn check_channel_use(&mut self, raw: &RawConfig, channels: &[&str]) {
        let consumed: HashSet<&str> = raw.sinks.values().map(|s| s.channel.as_str()).collect();
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
}

fn type_name(kind: SourceType) -> &'static str {
    match kind {
        SourceType::Exec => "exec",
        SourceType::File => "file",
        SourceType::Stdin => "stdin",
        SourceType::Generator => "generator",
    }
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

fn os_hostname() -> String {
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
        assert_eq!(spec.channels[0].capacity, 100);
        assert!(matches!(
            spec.sources[0].kind,
            SourceKind::File {
                read_from: ReadFrom::End,
                ..
            }
        ));
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
    fn the_embedded_default_validates() {
        load(EMBEDDED_DEFAULT, EMBEDDED_ORIGIN).unwrap();
    }
}
