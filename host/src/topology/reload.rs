//! Reloading the whole config (SIGHUP): the file is read and validated again, and the
//! running agent is changed into what it says, component by component, diffed by name
//! and settings (line numbers aside):
//!
//! - what is unchanged keeps running, untouched: its events do not pause;
//! - new and changed plugins are loaded (compiled, instantiated, `create`d) first, off
//!   the event path, and every new source's chain and routes are checked; if anything
//!   fails the reload is refused with errors naming the key and line, and nothing
//!   changes;
//! - then sources that are removed or changed (settings, a plugin of their chain, one of
//!   their channels) stop: they flush and their workers put what they hold into the
//!   channels;
//! - sinks that are removed or changed stop taking batches and deliver those in flight;
//!   what they did not take stays in the channel for their successor;
//! - channels that are removed or changed close: a memory channel's sinks first deliver
//!   what it holds (within `shutdown_timeout`; what is left after it is counted as lost),
//!   a file channel keeps it on disk, and a changed one is opened again with its new
//!   settings (its log still holds what was not delivered);
//! - then the new and changed channels, sinks and sources start, in that order.
//!
//! Settings of `[agent]` other than `shutdown_timeout` apply at the next restart (a
//! warning says which).

use super::running::Running;
use super::{build_sink, build_worker, load_plugin, stand_in, used_plugins};
use crate::channel::Channel;
use crate::config::{self, AgentSpec, ConfigError, ConfigErrors, SourceSpec};
use crate::plugin::reload::{PluginEntry, PluginSet};
use crate::source::SourceType;
use indexmap::IndexMap;
use std::collections::BTreeSet;
use std::sync::Arc;

/// What a config reload did (logged, and the answer of `POST /config/reload`).
#[derive(Debug, Clone, serde::Serialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum Outcome {
    /// The agent runs the embedded default: there is no file to read again.
    NoFile,
    /// The new config is not valid (each error names its key and line); the running
    /// one stays.
    Refused { errors: Vec<String> },
    /// What changed was stopped and started.
    Reloaded {
        sources_started: BTreeSet<String>,
        sources_stopped: BTreeSet<String>,
        sinks_started: BTreeSet<String>,
        sinks_stopped: BTreeSet<String>,
        channels_opened: BTreeSet<String>,
        channels_closed: BTreeSet<String>,
        plugins_changed: BTreeSet<String>,
    },
}

impl Outcome {
    /// Whether the set of plugins changed (their files are then watched anew).
    pub fn plugins_changed(&self) -> bool {
        matches!(self, Outcome::Reloaded { plugins_changed, .. } if !plugins_changed.is_empty())
    }
}

/// Reads the config file again and applies what changed.
pub async fn reload_config(running: &mut Running) -> Outcome {
    let Some(path) = running.spec.config_path.clone() else {
        tracing::info!("the agent runs the embedded default config: nothing to reload");
        return Outcome::NoFile;
    };
    let mut new = match config::load_file(&path) {
        Ok(spec) => spec,
        Err(errors) => return refused(&errors),
    };
    keep_restart_only_settings(&running.spec, &mut new);

    // Load what is new or changed, off the event path.
    let plugins = running.plugins.clone();
    let candidate = new.clone();
    let prepared = tokio::task::spawn_blocking(move || prepare_plugins(&plugins, &candidate)).await;
    let PreparedPlugins {
        entries,
        changed: changed_plugins,
    } = match prepared {
        Ok(Ok(prepared)) => prepared,
        Ok(Err(errors)) => return refused(&errors),
        Err(e) => {
            let error = format!("loading its plugins failed: {e}");
            tracing::error!("config reload refused: {error}");
            return Outcome::Refused {
                errors: vec![error],
            };
        }
    };
    let mut diff = Diff::between(&running.spec, &new, &changed_plugins);
    // A source that has ended (its input did) is not run again because a channel or a
    // plugin of its changed: it would read its input again.
    diff.sources_start.retain(|name| {
        let old = running.spec.sources.iter().find(|o| o.name == *name);
        let now = new.sources.iter().find(|n| n.name == *name);
        let unchanged = matches!((old, now), (Some(o), Some(n)) if o.unlined() == n.unlined());
        let rerun = !(unchanged && running.has_ended(name));
        if !rerun {
            tracing::info!(source = %name, "source has ended: not started again by the config reload");
        }
        rerun
    });
    // Only what runs can be stopped (a source that ended and was not run again is in
    // the config, not among the running).
    diff.sources_stop
        .retain(|name| running.sources.contains_key(name));
    diff.sinks_stop
        .retain(|name| running.sinks.contains_key(name));
    // A source kept as it runs keeps its settings in the running config.
    for s in &mut new.sources {
        if diff.sources_kept.contains(&s.name)
            && let Some(old) = running.spec.sources.iter().find(|o| o.name == s.name)
        {
            *s = old.clone();
        }
    }

    // Every chain to start must build before anything stops (channels stand in).
    let stand_ins = stand_in_channels(&new);
    let pools = |name: &str| entries.get(name).map(|e| e.pool().clone());
    let mut errors = Vec::new();
    for s in new
        .sources
        .iter()
        .filter(|s| diff.sources_start.contains(&s.name))
    {
        if let Err(mut e) = build_worker(&new, s, &pools, &stand_ins) {
            errors.append(&mut e);
        }
    }
    if !errors.is_empty() {
        return refused(&ConfigErrors(errors));
    }

    if diff.is_empty() {
        running.plugins.replace(entries);
        running.spec = new;
    } else {
        apply(running, new, entries, &diff).await;
    }
    tracing::info!(
        sources_started = ?diff.sources_start,
        sources_stopped = ?diff.sources_stop,
        sinks_started = ?diff.sinks_start,
        sinks_stopped = ?diff.sinks_stop,
        channels_opened = ?diff.channels_open,
        channels_closed = ?diff.channels_close,
        plugins_changed = ?changed_plugins,
        "config reloaded"
    );
    Outcome::Reloaded {
        sources_started: diff.sources_start,
        sources_stopped: diff.sources_stop,
        sinks_started: diff.sinks_start,
        sinks_stopped: diff.sinks_stop,
        channels_opened: diff.channels_open,
        channels_closed: diff.channels_close,
        plugins_changed: changed_plugins,
    }
}

fn refused(errors: &ConfigErrors) -> Outcome {
    crate::metrics::Registry::global()
        .counter("agent", "config_reloads_refused")
        .add(1);
    for e in &errors.0 {
        tracing::error!("config reload refused: {e}");
    }
    tracing::error!("the running config stays in force");
    Outcome::Refused {
        errors: errors.0.iter().map(ToString::to_string).collect(),
    }
}

/// `[agent]` settings a running agent cannot change: the old ones stay, with a warning.
fn keep_restart_only_settings(old: &AgentSpec, new: &mut AgentSpec) {
    macro_rules! keep {
        ($($field:ident),+) => {$(
            if old.$field != new.$field {
                tracing::warn!(
                    setting = concat!("agent.", stringify!($field)),
                    "changed in the config file; applies at the next restart"
                );
                new.$field = old.$field.clone();
            }
        )+};
    }
    keep!(
        name,
        hostname,
        data_dir,
        plugin_cache,
        watch_plugins,
        admin_listen,
        trusted_keys,
        summary_interval
    );
}

/// The plugins a new config uses, ready to replace the running ones.
struct PreparedPlugins {
    /// The running ones whose settings did not change, and the others loaded anew
    /// (their state carries over by name).
    entries: IndexMap<String, Arc<PluginEntry>>,
    /// The plugins that are new, changed or gone.
    changed: BTreeSet<String>,
}

fn prepare_plugins(plugins: &PluginSet, new: &AgentSpec) -> Result<PreparedPlugins, ConfigErrors> {
    let mut entries = IndexMap::new();
    let mut changed = BTreeSet::new();
    let mut errors = Vec::new();
    for p in used_plugins(new) {
        if let Some(entry) = plugins.get(&p.name).filter(|e| e.has_settings(p)) {
            entries.insert(p.name.clone(), entry);
            continue;
        }
        changed.insert(p.name.clone());
        let loaded = load_plugin(plugins, p).and_then(|(plugin, wasm, load)| {
            plugins
                .entry(p.clone(), plugin, &wasm, load)
                .map_err(|e| e.to_string())
        });
        match loaded {
            Ok(entry) => {
                entries.insert(p.name.clone(), entry);
            }
            Err(e) => errors.push(ConfigError {
                origin: new.origin.clone(),
                line: p.line,
                path: format!("plugins.{}", p.name),
                message: e,
            }),
        }
    }
    for name in plugins.names() {
        if !entries.contains_key(&name) {
            changed.insert(name);
        }
    }
    if errors.is_empty() {
        Ok(PreparedPlugins { entries, changed })
    } else {
        Err(ConfigErrors(errors))
    }
}

/// Memory channels standing in for the new config's channels, to check its chains.
fn stand_in_channels(spec: &AgentSpec) -> IndexMap<String, Channel> {
    spec.channels
        .iter()
        .map(|c| (c.name.clone(), stand_in(c)))
        .collect()
}

/// What a reload stops and starts, by name.
#[derive(Debug, Default)]
struct Diff {
    /// Changed, but kept running with the settings it has (stdin).
    sources_kept: BTreeSet<String>,
    sources_stop: BTreeSet<String>,
    sources_start: BTreeSet<String>,
    sinks_stop: BTreeSet<String>,
    sinks_start: BTreeSet<String>,
    channels_close: BTreeSet<String>,
    channels_open: BTreeSet<String>,
}

impl Diff {
    fn between(old: &AgentSpec, new: &AgentSpec, changed_plugins: &BTreeSet<String>) -> Self {
        let (channels_close, channels_open) = changes(
            &old.channels,
            &new.channels,
            |c| &c.name,
            |o, n| o.unlined() != n.unlined(),
        );
        let reopened = |name: &String| channels_close.contains(name);
        let (mut sources_stop, mut sources_start) = changes(
            &old.sources,
            &new.sources,
            |s| &s.name,
            |o, n| {
                o.unlined() != n.unlined()
                    || o.plugins.iter().any(|p| changed_plugins.contains(p))
                    || channels_of(o).any(reopened)
            },
        );
        // Standard input cannot be handed to a successor without losing what is being
        // read: a changed stdin source keeps running as it is, unless its channels are
        // reopened (then the line being read may be lost).
        let mut sources_kept = BTreeSet::new();
        for s in &old.sources {
            let changed = sources_stop.contains(&s.name) && sources_start.contains(&s.name);
            if changed && matches!(s.kind, SourceType::Stdin(_)) && !channels_of(s).any(reopened) {
                tracing::warn!(
                    source = %s.name,
                    "a stdin source is not restarted by a config reload; its changes apply at the next restart"
                );
                sources_stop.remove(&s.name);
                sources_start.remove(&s.name);
                sources_kept.insert(s.name.clone());
            }
        }
        let (sinks_stop, sinks_start) = changes(
            &old.sinks,
            &new.sinks,
            |s| &s.name,
            |o, n| {
                o.unlined() != n.unlined()
                    || reopened(&o.channel)
                    || o.dead_letter.as_ref().is_some_and(reopened)
            },
        );
        Diff {
            sources_kept,
            sources_stop,
            sources_start,
            sinks_stop,
            sinks_start,
            channels_close,
            channels_open,
        }
    }

    fn is_empty(&self) -> bool {
        self.sources_stop.is_empty()
            && self.sources_start.is_empty()
            && self.sinks_stop.is_empty()
            && self.sinks_start.is_empty()
            && self.channels_close.is_empty()
            && self.channels_open.is_empty()
    }
}

/// What stops and what starts among `old` and `new` components, by name: removed and
/// `changed` ones stop, changed and added ones start.
fn changes<T>(
    old: &[T],
    new: &[T],
    name: impl Fn(&T) -> &String,
    changed: impl Fn(&T, &T) -> bool,
) -> (BTreeSet<String>, BTreeSet<String>) {
    let (mut stop, mut start) = (BTreeSet::new(), BTreeSet::new());
    for o in old {
        match new.iter().find(|n| name(n) == name(o)) {
            Some(n) if !changed(o, n) => {}
            Some(_) => {
                stop.insert(name(o).clone());
                start.insert(name(o).clone());
            }
            None => {
                stop.insert(name(o).clone());
            }
        }
    }
    for n in new {
        if !old.iter().any(|o| name(o) == name(n)) {
            start.insert(name(n).clone());
        }
    }
    (stop, start)
}

/// Every channel a source puts into.
fn channels_of(s: &SourceSpec) -> impl Iterator<Item = &String> {
    s.channels
        .iter()
        .chain(&s.dead_letter)
        .chain(s.routes.iter().flat_map(|r| &r.channels))
}

async fn apply(
    running: &mut Running,
    new: AgentSpec,
    entries: IndexMap<String, Arc<PluginEntry>>,
    diff: &Diff,
) {
    let timeout = new.shutdown_timeout;
    for name in &diff.sources_stop {
        running.stop_source(name).await;
    }
    // Sinks on channels that stay (a sink on a closing channel goes with it).
    for name in &diff.sinks_stop {
        let on_closing = running
            .sinks
            .get(name)
            .is_some_and(|s| diff.channels_close.contains(&s.spec.channel));
        if !on_closing {
            running.stop_sink(name, timeout).await;
        }
    }
    for name in &diff.channels_close {
        running.drain_channel(name, timeout).await;
    }
    running.plugins.replace(entries);
    running.spec = new;
    let spec = running.spec.clone();
    for c in spec
        .channels
        .iter()
        .filter(|c| diff.channels_open.contains(&c.name))
    {
        match c.kind.config().build(&c.name, &spec.data_dir) {
            Ok(channel) => {
                running.channels.insert(c.name.clone(), channel);
            }
            Err(e) => tracing::error!(
                "{}: cannot open channel `{}` after the config reload: {e:#}; its sources and sinks do not start",
                spec.origin,
                c.name
            ),
        }
    }
    for s in spec
        .sinks
        .iter()
        .filter(|s| diff.sinks_start.contains(&s.name))
    {
        match build_sink(&spec, s, &running.channels) {
            Ok(sink) => running.start_sink(s.clone(), sink),
            Err(e) => tracing::error!("config reload: sink not started: {e}"),
        }
    }
    let plugins = running.plugins.clone();
    for s in spec
        .sources
        .iter()
        .filter(|s| diff.sources_start.contains(&s.name))
    {
        let worker = build_worker(&spec, s, &|name| plugins.pool(name), &running.channels);
        let started = match worker {
            Ok(worker) => running
                .start_source(s.clone(), worker)
                .map_err(|e| e.to_string()),
            Err(errors) => Err(errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")),
        };
        if let Err(e) = started {
            tracing::error!(source = %s.name, "config reload: source not started: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
[plugins.keep]
builtin = "field-filter"
[plugins.keep.config]
field = "app"
op = "eq"
value = "a"
action = "keep"

[sources.one]
type = "generator"
plugins = ["keep"]
channels = ["main"]

[sources.two]
type = "generator"
channels = ["other"]

[channels.main]
type = "memory"

[channels.other]
type = "memory"

[sinks.out]
type = "console"
channel = "main"

[sinks.out2]
type = "console"
channel = "other"
"#;

    fn spec(text: &str) -> AgentSpec {
        config::load(text, "test").unwrap()
    }

    fn names(set: &BTreeSet<String>) -> Vec<&str> {
        set.iter().map(String::as_str).collect()
    }

    #[test]
    fn the_same_settings_on_other_lines_change_nothing() {
        let moved = format!("\n\n# a comment\n{BASE}");
        let diff = Diff::between(&spec(BASE), &spec(&moved), &BTreeSet::new());
        assert!(diff.is_empty(), "{diff:?}");
    }

    #[test]
    fn a_changed_plugin_restarts_the_sources_whose_chains_use_it() {
        let changed = BTreeSet::from(["keep".to_owned()]);
        let diff = Diff::between(&spec(BASE), &spec(BASE), &changed);
        assert_eq!(names(&diff.sources_stop), ["one"]);
        assert_eq!(names(&diff.sources_start), ["one"]);
        assert!(diff.sinks_stop.is_empty() && diff.channels_close.is_empty());
    }

    #[test]
    fn a_changed_channel_is_reopened_with_everything_on_it() {
        let new = BASE.replace(
            "[channels.other]\ntype = \"memory\"",
            "[channels.other]\ntype = \"memory\"\ncapacity = 500",
        );
        let diff = Diff::between(&spec(BASE), &spec(&new), &BTreeSet::new());
        assert_eq!(names(&diff.channels_close), ["other"]);
        assert_eq!(names(&diff.channels_open), ["other"]);
        assert_eq!(names(&diff.sources_stop), ["two"]);
        assert_eq!(names(&diff.sources_start), ["two"]);
        assert_eq!(names(&diff.sinks_stop), ["out2"]);
        assert_eq!(names(&diff.sinks_start), ["out2"]);
    }

    #[test]
    fn removed_and_added_components_stop_and_start() {
        let new = BASE
            .replace(
                "[sources.two]\ntype = \"generator\"\nchannels = [\"other\"]\n",
                "",
            )
            .replace(
                "[channels.other]\ntype = \"memory\"\n",
                "[channels.third]\ntype = \"memory\"\n",
            )
            .replace("channel = \"other\"", "channel = \"third\"");
        let diff = Diff::between(&spec(BASE), &spec(&new), &BTreeSet::new());
        assert_eq!(names(&diff.sources_stop), ["two"]);
        assert!(diff.sources_start.is_empty());
        assert_eq!(names(&diff.channels_close), ["other"]);
        assert_eq!(names(&diff.channels_open), ["third"]);
        assert_eq!(names(&diff.sinks_stop), ["out2"]);
        assert_eq!(names(&diff.sinks_start), ["out2"]);
    }
}
