//! Builds the running agent from a validated config and runs it: sources → workers
//! (plugin chains) → channels → sinks, with a graceful shutdown that drains everything
//! and a config reload on SIGHUP that changes only what changed (`reload.rs`).

mod reload;
mod running;

use crate::builtin;
use crate::channel::{Capacity, Channel, FullPolicy, MemoryChannel};
use crate::config::{
    AgentSpec, ConfigError, ConfigErrors, PluginCode, PluginSpec, SinkSpec, SourceSpec,
};
use crate::pipeline::{Chain, Selector, Step, Worker};
use crate::plugin::pool::InstancePool;
use crate::plugin::reload::PluginSet;
use crate::plugin::signing::TrustedKeys;
use crate::plugin::{PluginEngine, PluginError, Role};
use crate::sink::Sink;
use crate::sink::group::Members;
use crate::summary::Summary;
use indexmap::IndexMap;
use running::Running;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// After a forced stop, how long tasks get to notice it.
const HARD_STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// A built agent, ready to run: every plugin compiled and initialised.
pub struct Topology {
    spec: AgentSpec,
    plugins: Arc<PluginSet>,
    sources: Vec<(SourceSpec, Worker)>,
    channels: IndexMap<String, Channel>,
    sinks: Vec<(SinkSpec, Sink)>,
}

/// Compiles the plugins some source's chain uses (each component once; from the
/// compile cache when it has them). Declared but unused plugins are not loaded.
fn load_plugins(spec: &AgentSpec, engine: &PluginEngine) -> Result<PluginSet, ConfigErrors> {
    let trust = match &spec.trusted_keys {
        Some(keys) => Some(TrustedKeys::load(keys).map_err(|e| {
            ConfigErrors(vec![error_at(
                spec,
                None,
                "agent.trusted_keys",
                e.to_string(),
            )])
        })?),
        None => None,
    };
    let plugins = PluginSet::new(engine.clone(), trust, spec.data_dir.join("state"));
    let mut errors = Vec::new();
    for p in used_plugins(spec) {
        let loaded = load_plugin(&plugins, p).and_then(|(plugin, wasm, load)| {
            plugins
                .insert(p.clone(), plugin, &wasm, load)
                .map_err(|e| e.to_string())
        });
        if let Err(e) = loaded {
            errors.push(error_at(spec, p.line, &format!("plugins.{}", p.name), e));
        }
    }
    if errors.is_empty() {
        Ok(plugins)
    } else {
        Err(ConfigErrors(errors))
    }
}

/// The plugins some source's chain uses (the others are declared but not loaded).
fn used_plugins(spec: &AgentSpec) -> impl Iterator<Item = &PluginSpec> {
    spec.plugins.iter().filter(|p| {
        let used = spec.sources.iter().any(|s| s.plugins.contains(&p.name));
        if !used {
            tracing::warn!(plugin = %p.name, "declared but used by no source: not loaded");
        }
        used
    })
}

/// Reads (and, when required, checks the signature of) plugin `p`'s code and compiles
/// it; returns the plugin, its bytes and how long that took.
fn load_plugin<'a>(
    plugins: &PluginSet,
    p: &'a PluginSpec,
) -> Result<
    (
        crate::plugin::Plugin,
        std::borrow::Cow<'a, [u8]>,
        std::time::Duration,
    ),
    String,
> {
    let started = std::time::Instant::now();
    let (plugin, bytes) = match &p.code {
        PluginCode::Builtin(name) => {
            let Some(b) = builtin::find(name) else {
                unreachable!("builtin names are checked by config validation")
            };
            let plugin = plugins
                .engine()
                .load(&p.name, b.code(), &p.config, p.limits);
            (plugin, std::borrow::Cow::Borrowed(b.wasm))
        }
        PluginCode::Path(path) => {
            let bytes = std::fs::read(path).map_err(|source| {
                PluginError::Read {
                    plugin: p.name.clone(),
                    path: path.display().to_string(),
                    source,
                }
                .to_string()
            })?;
            let code = plugins
                .code_of_file(path, &bytes)
                .map_err(|e| format!("plugin `{}`: {e}", p.name))?;
            let plugin = plugins.engine().load(&p.name, code, &p.config, p.limits);
            (plugin, std::borrow::Cow::Owned(bytes))
        }
    };
    let plugin = plugin.map_err(|e| e.to_string())?;
    Ok((plugin, bytes, started.elapsed()))
}

fn error_at(spec: &AgentSpec, line: Option<usize>, path: &str, message: String) -> ConfigError {
    ConfigError {
        origin: spec.origin.clone(),
        line,
        path: path.to_owned(),
        message,
    }
}

impl Topology {
    /// Builds everything, opening channels (a file channel recovers its log); errors
    /// name the config key and line they come from.
    pub fn build(spec: AgentSpec) -> Result<Self, ConfigErrors> {
        Self::build_with(spec, true)
    }

    /// Builds everything but opens no channel (memory stand-ins of the same capacity):
    /// what `runnel validate` checks, without touching the data directory.
    pub fn check(spec: AgentSpec) -> Result<Self, ConfigErrors> {
        Self::build_with(spec, false)
    }

    fn build_with(spec: AgentSpec, open_channels: bool) -> Result<Self, ConfigErrors> {
        let cache_dir = spec
            .plugin_cache
            .then(|| spec.data_dir.join("plugin-cache"));
        let engine = PluginEngine::new(spec.hostname.clone(), cache_dir, spec.plugin_backend)
            .map_err(|e| {
                ConfigErrors(vec![error_at(
                    &spec,
                    None,
                    "",
                    format!("cannot start the WebAssembly engine: {e:#}"),
                )])
            })?;
        let plugins = load_plugins(&spec, &engine)?;
        let mut errors = Vec::new();
        let mut channels: IndexMap<String, Channel> = IndexMap::new();
        for c in &spec.channels {
            let config = c.kind.config();
            let built = if open_channels {
                config.build(&c.name, &spec.data_dir)
            } else {
                Ok(stand_in(c))
            };
            match built {
                Ok(channel) => {
                    // Plugin state changes stored with batches the state files lack.
                    plugins.recover_states(&channel.state_commits());
                    channels.insert(c.name.clone(), channel);
                }
                Err(e) => errors.push(error_at(
                    &spec,
                    c.line,
                    &format!("channels.{}", c.name),
                    format!("{e:#}"),
                )),
            }
        }
        if !errors.is_empty() {
            return Err(ConfigErrors(errors));
        }
        let mut sources = Vec::new();
        for s in &spec.sources {
            match build_worker(&spec, s, &|name| plugins.pool(name), &channels) {
                Ok(worker) => sources.push((s.clone(), worker)),
                Err(mut e) => errors.append(&mut e),
            }
        }
        if !errors.is_empty() {
            return Err(ConfigErrors(errors));
        }
        let mut sinks = Vec::new();
        for s in &spec.sinks {
            match build_sink(&spec, s, &channels) {
                Ok(sink) => sinks.push((s.clone(), sink)),
                Err(e) => errors.push(e),
            }
        }
        if !errors.is_empty() {
            return Err(ConfigErrors(errors));
        }
        Ok(Self {
            spec,
            plugins: Arc::new(plugins),
            sources,
            channels,
            sinks,
        })
    }

    /// Runs until SIGINT/SIGTERM (or `stop`), or until every source has ended; then
    /// drains: sources flush, workers finish their chains, channels close, sinks deliver
    /// what is left. SIGHUP reloads the config file (only what changed is stopped and
    /// started again) and every plugin file. Returns the number of accepted events that
    /// were not delivered (0 on a clean stop).
    pub async fn run(self, stop: CancellationToken) -> anyhow::Result<usize> {
        let Topology {
            spec,
            plugins,
            sources,
            channels,
            sinks,
        } = self;
        // Plugin reloads (file changes, the admin endpoint) stop with this. The endpoint
        // binds first: an address in use stops the agent before anything runs.
        let stop_reloads = CancellationToken::new();
        let (reload_requests, mut reload_asked) = mpsc::channel(4);
        let admin = match spec.admin_listen {
            Some(addr) => Some(
                crate::admin::serve(
                    addr,
                    spec.admin_token.as_ref().map(|t| Arc::from(t.0.as_str())),
                    plugins.clone(),
                    reload_requests,
                    stop_reloads.clone(),
                )
                .await?,
            ),
            None => None,
        };
        let (ended_tx, mut ended) = mpsc::unbounded_channel();
        let shutdown_timeout = spec.shutdown_timeout;
        let summary = Summary::new(spec.summary_interval);
        let mut running = Running::new(spec, plugins.clone(), channels, ended_tx);
        for (spec, sink) in sinks {
            running.start_sink(spec, sink);
        }
        let summary_task = summary.clone().spawn();
        for (s, worker) in sources {
            running.start_source(s, worker)?;
        }
        // Plugins' keyed state is saved every second while it changes, and at the end.
        let saver = {
            let plugins = plugins.clone();
            let stop = stop_reloads.clone();
            tokio::spawn(async move {
                let mut every = tokio::time::interval(std::time::Duration::from_secs(1));
                loop {
                    tokio::select! {
                        _ = every.tick() => {}
                        _ = stop.cancelled() => return,
                    }
                    let plugins = plugins.clone();
                    let _ = tokio::task::spawn_blocking(move || plugins.save_states()).await;
                }
            })
        };
        let mut watcher = Watcher::spawn(&plugins, running.spec.watch_plugins, &stop_reloads);
        tracing::info!(agent = %running.spec.name, sources = running.sources.len(), sinks = running.sinks.len(), "runnel started");
        crate::systemd::notify("READY=1");
        crate::systemd::spawn_watchdog();

        let signal = shutdown_signal();
        tokio::pin!(signal);
        let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!("cannot listen for SIGHUP: {e}; the config cannot be reloaded");
                None
            }
        };
        while !running.all_sources_ended() {
            tokio::select! {
                _ = &mut signal => {
                    tracing::info!("shutdown requested; draining");
                    break;
                }
                _ = stop.cancelled() => break,
                Some(id) = ended.recv() => {
                    running.source_ended(id);
                }
                Some(()) = async { hangup.as_mut()?.recv().await } => {
                    tracing::info!("SIGHUP: reloading the config and every plugin file");
                    crate::systemd::notify("RELOADING=1");
                    reload_everything(&mut running, &mut watcher, &stop_reloads).await;
                    crate::systemd::notify("READY=1");
                }
                Some(reply) = reload_asked.recv() => {
                    tracing::info!("POST /config/reload: reloading the config and every plugin file");
                    let outcome = reload_everything(&mut running, &mut watcher, &stop_reloads).await;
                    let _ = reply.send(outcome);
                }
            }
        }
        if running.all_sources_ended() {
            tracing::info!("every source has ended; draining");
        }
        crate::systemd::notify("STOPPING=1");
        stop_reloads.cancel();
        watcher.stop().await;
        let _ = saver.await;
        if let Some(admin) = admin {
            let _ = admin.await;
        }

        // Drain: sources flush, workers finish their queues, channels close and sinks
        // empty them — all within the shutdown timeout. A second signal, or the timeout,
        // stops waiting: blocked hand-overs give up (their events are counted as lost),
        // sinks stop retrying and roll their batches back.
        let hard_stop = running.hard_stop.clone();
        let channels: Vec<Channel> = running.channels.values().cloned().collect();
        {
            let drain = running.drain();
            tokio::pin!(drain);
            let clean = tokio::select! {
                _ = &mut drain => true,
                _ = tokio::time::sleep(shutdown_timeout) => {
                    tracing::error!(timeout_secs = shutdown_timeout.as_secs(), "could not drain before the shutdown timeout; stopping");
                    false
                }
                _ = shutdown_signal() => {
                    tracing::warn!("second shutdown request; stopping without draining");
                    false
                }
            };
            if !clean {
                hard_stop.cancel();
                for channel in &channels {
                    channel.close();
                }
                if tokio::time::timeout(HARD_STOP_GRACE, &mut drain)
                    .await
                    .is_err()
                {
                    tracing::error!(
                        "some tasks did not stop within {HARD_STOP_GRACE:?}; exiting anyway"
                    );
                }
            }
        }
        // What the drained batches changed in the plugins' state.
        let saving = plugins.clone();
        let _ = tokio::task::spawn_blocking(move || saving.save_states()).await;
        // Events left in a memory channel are lost; in a durable one they wait on disk
        // for the next start.
        let mut undelivered = 0u64;
        for channel in &channels {
            let left = channel.len() as u64;
            if channel.is_durable() {
                if left > 0 {
                    tracing::warn!(
                        channel = channel.name(),
                        events = left,
                        "events not delivered yet stay in the durable channel; they are delivered after the next start"
                    );
                }
            } else {
                undelivered += left;
            }
        }
        let lost = crate::internal_events::lost_counter();
        lost.add(undelivered);
        if lost.get() > 0 {
            tracing::error!(
                events = lost.get(),
                "events accepted by sources were not delivered"
            );
        }
        summary_task.abort();
        summary.print_final();
        Ok(lost.get() as usize)
    }
}

/// Reloads the config file, then every plugin file (SIGHUP, `POST /config/reload`).
async fn reload_everything(
    running: &mut Running,
    watcher: &mut Watcher,
    stop_reloads: &CancellationToken,
) -> reload::Outcome {
    let outcome = reload::reload_config(running).await;
    let plugins = running.plugins.clone();
    if outcome.plugins_changed() {
        // Other plugin files to watch.
        watcher.stop().await;
        *watcher = Watcher::spawn(&plugins, running.spec.watch_plugins, stop_reloads);
    }
    let _ = tokio::task::spawn_blocking(move || plugins.reload_all()).await;
    outcome
}

/// A request of the admin endpoint for a config reload, answered with what it did.
pub type ReloadRequest = tokio::sync::oneshot::Sender<reload::Outcome>;

pub use reload::Outcome as ReloadOutcome;

/// The plugin file watcher (`plugin::watch`), restarted when a config reload changes
/// which files there are.
struct Watcher {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Watcher {
    fn spawn(plugins: &Arc<PluginSet>, watch_files: bool, parent: &CancellationToken) -> Self {
        let stop = parent.child_token();
        let task = tokio::spawn(crate::plugin::watch::run(
            plugins.clone(),
            watch_files,
            stop.clone(),
        ));
        Self { stop, task }
    }

    async fn stop(&mut self) {
        self.stop.cancel();
        let _ = (&mut self.task).await;
    }
}

/// A memory channel of `c`'s capacity in events, standing in for it where chains are
/// checked without opening channels (`validate`, a config reload before it applies).
fn stand_in(c: &crate::config::ChannelSpec) -> Channel {
    let capacity = Capacity {
        events: c.kind.config().capacity_events(),
        bytes: usize::MAX,
    };
    Channel::new(MemoryChannel::new(&c.name, capacity, FullPolicy::Block))
}

/// A sink reading its channel (and writing refused batches to its dead-letter channel).
fn build_sink(
    spec: &AgentSpec,
    s: &SinkSpec,
    channels: &IndexMap<String, Channel>,
) -> Result<Sink, ConfigError> {
    let missing = |name: &str| {
        error_at(
            spec,
            s.line,
            &format!("sinks.{}", s.name),
            format!("its channel `{name}` is not open"),
        )
    };
    let channel = channels
        .get(&s.channel)
        .ok_or_else(|| missing(&s.channel))?;
    let dead_letter = match &s.dead_letter {
        Some(d) => Some(channels.get(d).ok_or_else(|| missing(d))?.clone()),
        None => None,
    };
    let build = |s: &SinkSpec| {
        s.kind
            .config()
            .build(&s.name, &spec.data_dir)
            .map_err(|e| error_at(spec, s.line, &format!("sinks.{}", s.name), format!("{e:#}")))
    };
    let Some(group) = &s.group else {
        return Ok(Sink::new(s, channel.clone(), dead_letter, build(s)?));
    };
    let members = group
        .members
        .iter()
        .map(|m| Ok((m.name.clone(), build(m)?)))
        .collect::<Result<Vec<_>, ConfigError>>()?;
    let members = Members::new(members, group.mode, group.selector, s.retry);
    Ok(Sink::with_members(s, channel.clone(), dead_letter, members))
}

/// A source's worker: its chain of steps over the plugins' shared instances (`pools`
/// finds them by plugin name) and the selector over its channels.
fn build_worker(
    spec: &AgentSpec,
    s: &SourceSpec,
    pools: &dyn Fn(&str) -> Option<Arc<InstancePool>>,
    channels: &IndexMap<String, Channel>,
) -> Result<Worker, Vec<ConfigError>> {
    let mut errors = Vec::new();
    let mut steps = Vec::new();
    for (i, name) in s.plugins.iter().enumerate() {
        let Some(pool) = pools(name) else {
            continue;
        };
        let (plugin, _) = pool.slot().current();
        let pspec = spec
            .plugins
            .iter()
            .find(|p| &p.name == name)
            .expect("validated reference");
        if plugin.role() == Role::Router && i + 1 != s.plugins.len() {
            errors.push(error_at(
                spec,
                s.line,
                &format!("sources.{}.plugins[{i}]", s.name),
                format!("router `{name}` must be the last plugin of the chain"),
            ));
            continue;
        }
        let step = Step::new(pool.clone(), &s.name, pspec.on_error, pspec.keep_body);
        match (pspec.tick, plugin.role()) {
            (Some(every), Role::Processor) => steps.push(step.ticking(every)),
            (Some(_), role) => errors.push(error_at(
                spec,
                pspec.line,
                &format!("plugins.{name}.tick_ms"),
                format!("only processors tick; `{name}` is a {role}"),
            )),
            (None, _) => steps.push(step),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let chain = Chain::new(steps);

    // The distinct channels of this source, and index lists into them.
    let mut used: Vec<String> = Vec::new();
    let mut index = |name: &String| match used.iter().position(|u| u == name) {
        Some(i) => i,
        None => {
            used.push(name.clone());
            used.len() - 1
        }
    };
    let default: Vec<usize> = s.channels.iter().map(&mut index).collect();
    let dead_letter: Vec<usize> = s.dead_letter.iter().map(&mut index).collect();
    let router_routes = chain.routes().to_vec();
    for r in &s.routes {
        if !router_routes.contains(&r.name) {
            errors.push(error_at(
                spec,
                r.line,
                &format!("sources.{}.routes.{}", s.name, r.name),
                if router_routes.is_empty() {
                    "this source's chain has no router, so it has no routes".to_owned()
                } else {
                    format!(
                        "the router has no route `{}` (its routes: {})",
                        r.name,
                        router_routes.join(", ")
                    )
                },
            ));
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let routes: Vec<(String, Vec<usize>)> = router_routes
        .iter()
        .map(|name| {
            let targets = s
                .routes
                .iter()
                .find(|r| &r.name == name)
                .map(|r| r.channels.iter().map(&mut index).collect())
                .unwrap_or_default();
            (name.clone(), targets)
        })
        .collect();
    let mut selected = Vec::new();
    for n in &used {
        match channels.get(n) {
            Some(c) => selected.push(c.clone()),
            None => errors.push(error_at(
                spec,
                s.line,
                &format!("sources.{}", s.name),
                format!("its channel `{n}` is not open"),
            )),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let selector = Selector::new(&s.name, selected, default, dead_letter, routes);
    Ok(Worker {
        chain,
        selector,
        batch: s.batch,
    })
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(mut int), Ok(mut term)) => {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
        }
        _ => std::future::pending().await,
    }
}
