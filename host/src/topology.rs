//! Builds the running agent from a validated config and runs it: sources → workers
//! (plugin chains) → channels → sinks, with a graceful shutdown that drains everything.

use crate::builtin;
use crate::channel::{Capacity, Channel, FullPolicy, MemoryChannel};
use crate::config::{AgentSpec, ConfigError, ConfigErrors, PluginCode, SourceSpec};
use crate::pipeline::{Chain, Selector, Step, Worker};
use crate::plugin::reload::PluginSet;
use crate::plugin::signing::TrustedKeys;
use crate::plugin::{PluginEngine, PluginError, Role};
use crate::sink::Sink;
use crate::source::{Batcher, Recovered, SourceContext};
use crate::summary::Summary;
use indexmap::IndexMap;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// After a forced stop, how long tasks get to notice it.
const HARD_STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// A built agent, ready to run: every plugin compiled and initialised.
pub struct Topology {
    spec: AgentSpec,
    plugins: Arc<PluginSet>,
    sources: Vec<(SourceSpec, Worker)>,
    channels: IndexMap<String, Channel>,
    sinks: Vec<Sink>,
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
    let mut plugins = PluginSet::new(engine.clone(), trust, spec.data_dir.join("state"));
    let mut errors = Vec::new();
    for p in &spec.plugins {
        if !spec.sources.iter().any(|s| s.plugins.contains(&p.name)) {
            tracing::warn!(plugin = %p.name, "declared but used by no source: not loaded");
            continue;
        }
        let started = std::time::Instant::now();
        let wasm = match &p.code {
            PluginCode::Builtin(name) => match builtin::find(name) {
                Some(b) => Ok(std::borrow::Cow::Borrowed(b.wasm)),
                None => unreachable!("builtin names are checked by config validation"),
            },
            PluginCode::Path(path) => std::fs::read(path)
                .map(std::borrow::Cow::Owned)
                .map_err(|source| {
                    PluginError::Read {
                        plugin: p.name.clone(),
                        path: path.display().to_string(),
                        source,
                    }
                    .to_string()
                })
                .and_then(|wasm| {
                    plugins
                        .check_signature(path, &wasm)
                        .map(|()| wasm)
                        .map_err(|e| format!("plugin `{}`: {e}", p.name))
                }),
        };
        let loaded = wasm.and_then(|wasm| {
            let plugin = engine
                .load(&p.name, &wasm, &p.config, p.limits)
                .map_err(|e| e.to_string())?;
            Ok((plugin, wasm))
        });
        match loaded {
            Ok((plugin, wasm)) => {
                if let Err(e) = plugins.insert(p.clone(), plugin, &wasm, started.elapsed()) {
                    errors.push(error_at(
                        spec,
                        p.line,
                        &format!("plugins.{}", p.name),
                        e.to_string(),
                    ));
                }
            }
            Err(e) => errors.push(error_at(spec, p.line, &format!("plugins.{}", p.name), e)),
        }
    }
    if errors.is_empty() {
        Ok(plugins)
    } else {
        Err(ConfigErrors(errors))
    }
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
        let engine = PluginEngine::new(spec.hostname.clone(), cache_dir).map_err(|e| {
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
                Ok(Channel::new(MemoryChannel::new(
                    &c.name,
                    Capacity {
                        events: config.capacity_events(),
                        bytes: usize::MAX,
                    },
                    FullPolicy::Block,
                )))
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
            match build_worker(&spec, s, &plugins, &channels) {
                Ok(worker) => sources.push((s.clone(), worker)),
                Err(mut e) => errors.append(&mut e),
            }
        }
        if !errors.is_empty() {
            return Err(ConfigErrors(errors));
        }
        let mut sinks = Vec::new();
        for s in &spec.sinks {
            match s.kind.config().build(&s.name) {
                Ok(service) => sinks.push(Sink::new(
                    s,
                    channels[&s.channel].clone(),
                    s.dead_letter.as_ref().map(|d| channels[d].clone()),
                    service,
                )),
                Err(e) => errors.push(error_at(
                    &spec,
                    s.line,
                    &format!("sinks.{}", s.name),
                    format!("{e:#}"),
                )),
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
    /// what is left. Returns the number of accepted events that were not delivered
    /// (0 on a clean stop).
    pub async fn run(self, stop: CancellationToken) -> anyhow::Result<usize> {
        let Topology {
            spec,
            plugins,
            sources,
            channels,
            sinks,
        } = self;
        let runtime = tokio::runtime::Handle::current();
        // Plugin reloads (file changes, SIGHUP, the admin endpoint) stop with this. The
        // endpoint binds first: an address in use stops the agent before anything runs.
        let stop_reloads = CancellationToken::new();
        let admin = match spec.admin_listen {
            Some(addr) => {
                Some(crate::admin::serve(addr, plugins.clone(), stop_reloads.clone()).await?)
            }
            None => None,
        };
        // Cancelled when the agent must stop without waiting for a clean drain.
        let hard_stop = CancellationToken::new();
        let mut sink_tasks = tokio::task::JoinSet::new();
        for sink in sinks {
            sink_tasks.spawn(sink.run(hard_stop.clone()));
        }
        let summary = Summary::new(spec.summary_interval);
        let summary_task = summary.clone().spawn();

        let stop_sources = CancellationToken::new();
        let mut source_tasks = tokio::task::JoinSet::new();
        let mut worker_threads = Vec::new();
        for (s, worker) in sources {
            let recovered = Recovered::merge(
                worker
                    .selector
                    .channels()
                    .iter()
                    .flat_map(|c| c.checkpoints(&s.name)),
            );
            let (handle, thread) = worker.spawn(&s.name, runtime.clone())?;
            worker_threads.push(thread);
            let batcher = Batcher::new(
                &s.name,
                s.event_name.clone(),
                s.batch,
                s.max_line_bytes,
                handle,
                hard_stop.clone(),
            );
            source_tasks.spawn(s.kind.config().run(SourceContext {
                name: s.name.as_str().into(),
                batcher,
                shutdown: stop_sources.clone(),
                data_dir: spec.data_dir.clone(),
                recovered,
            }));
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
        let reloads = tokio::spawn(crate::plugin::watch::run(
            plugins.clone(),
            spec.watch_plugins,
            stop_reloads.clone(),
        ));
        tracing::info!(agent = %spec.name, sources = source_tasks.len(), sinks = sink_tasks.len(), "runnel started");

        let signal = shutdown_signal();
        tokio::pin!(signal);
        loop {
            tokio::select! {
                _ = &mut signal => {
                    tracing::info!("shutdown requested; draining");
                    break;
                }
                _ = stop.cancelled() => break,
                done = source_tasks.join_next() => match done {
                    Some(_) => continue,
                    None => {
                        tracing::info!("every source has ended; draining");
                        break;
                    }
                },
            }
        }
        stop_sources.cancel();
        stop_reloads.cancel();
        let _ = reloads.await;
        let _ = saver.await;
        if let Some(admin) = admin {
            let _ = admin.await;
        }

        // Drain: sources flush, workers finish their queues, channels close and sinks
        // empty them — all within the shutdown timeout. A second signal, or the timeout,
        // stops waiting: blocked hand-overs give up (their events are counted as lost),
        // sinks stop retrying and roll their batches back.
        let drain = async {
            while source_tasks.join_next().await.is_some() {}
            for thread in worker_threads {
                let _ = tokio::task::spawn_blocking(move || thread.join()).await;
            }
            for channel in channels.values() {
                channel.close();
            }
            while sink_tasks.join_next().await.is_some() {}
        };
        tokio::pin!(drain);
        let clean = tokio::select! {
            _ = &mut drain => true,
            _ = tokio::time::sleep(spec.shutdown_timeout) => {
                tracing::error!(timeout_secs = spec.shutdown_timeout.as_secs(), "could not drain before the shutdown timeout; stopping");
                false
            }
            _ = shutdown_signal() => {
                tracing::warn!("second shutdown request; stopping without draining");
                false
            }
        };
        if !clean {
            hard_stop.cancel();
            for channel in channels.values() {
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
        // What the drained batches changed in the plugins' state.
        let saving = plugins.clone();
        let _ = tokio::task::spawn_blocking(move || saving.save_states()).await;
        // Events left in a memory channel are lost; in a durable one they wait on disk
        // for the next start.
        let mut undelivered = 0u64;
        for channel in channels.values() {
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

fn build_worker(
    spec: &AgentSpec,
    s: &SourceSpec,
    plugins: &PluginSet,
    channels: &IndexMap<String, Channel>,
) -> Result<Worker, Vec<ConfigError>> {
    let mut errors = Vec::new();
    let mut steps = Vec::new();
    for (i, name) in s.plugins.iter().enumerate() {
        let Some(pool) = plugins.pool(name) else {
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
    let selector = Selector::new(
        &s.name,
        used.iter().map(|n| channels[n].clone()).collect(),
        default,
        dead_letter,
        routes,
    );
    Ok(Worker { chain, selector })
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
