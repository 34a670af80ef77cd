//! The plugin host: compiles WebAssembly components, instantiates them in a sandbox, and
//! calls them a batch at a time.
//!
//! Life of a plugin: [`PluginEngine::load`] compiles the component and finds its role
//! from its exports → [`Plugin::instantiate`] makes a store, instantiates the component
//! and calls the role's `create` with the plugin's config → [`PluginInstance::process`]
//! is called once per batch on that same instance. A call that traps, runs past its
//! deadline or returns malformed output fails only that batch; the instance is then
//! discarded and a fresh one made before the next batch.

pub mod bindings;
mod cache;
mod cache_trust;
mod engine_config;
pub use engine_config::{Backend, CompileTarget};
mod guest_output;
pub mod pool;
pub mod reload;
mod sandbox;
pub mod signing;
pub mod state;
pub mod watch;
pub mod wire;

use crate::event::{Event, Value};
use crate::metrics::PluginCounters;
use bindings::{cleaner, interceptor, parser, processor, router, types as wit};
use sandbox::HostState;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use wasmtime::component::{Component, HasSelf, Linker, ResourceAny};
use wasmtime::{Engine, Store};
use wire::{BatchEncoder, LinesEncoder, OutputReader, WireError};

/// The WIT package version this host implements.
pub const WIT_PACKAGE: &str = "runnel:plugin";
pub const WIT_VERSION: &str = "0.2.0";

/// How often the epoch advances; deadlines are counted in these ticks.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// The five plugin roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Parser,
    Interceptor,
    Cleaner,
    Processor,
    Router,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Parser,
        Role::Interceptor,
        Role::Cleaner,
        Role::Processor,
        Role::Router,
    ];

    pub fn interface(self) -> &'static str {
        match self {
            Role::Parser => "parser",
            Role::Interceptor => "interceptor",
            Role::Cleaner => "cleaner",
            Role::Processor => "processor",
            Role::Router => "router",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.interface())
    }
}

/// Everything that can go wrong with a plugin, naming the plugin.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("plugin `{plugin}`: cannot read {path}: {source}")]
    Read {
        plugin: String,
        path: String,
        source: std::io::Error,
    },
    #[error("plugin `{plugin}`: not a valid WebAssembly component: {source:#}")]
    Compile {
        plugin: String,
        source: wasmtime::Error,
    },
    #[error(
        "plugin `{plugin}`: exports no Runnel role (expected one of {WIT_PACKAGE}/parser, interceptor, cleaner or router @{WIT_VERSION}); it exports: {exports}"
    )]
    NoRole { plugin: String, exports: String },
    #[error(
        "plugin `{plugin}`: built against {export}, but this agent implements {WIT_PACKAGE}@{WIT_VERSION}"
    )]
    Version { plugin: String, export: String },
    #[error("plugin `{plugin}`: exports more than one role ({roles})")]
    ManyRoles { plugin: String, roles: String },
    #[error("plugin `{plugin}`: cannot be instantiated: {source:#}")]
    Instantiate {
        plugin: String,
        source: wasmtime::Error,
    },
    #[error("plugin `{plugin}`: init failed: {message}")]
    Init { plugin: String, message: String },
    #[error("plugin `{plugin}`: {call} failed: {source:#}")]
    Call {
        plugin: String,
        call: &'static str,
        source: wasmtime::Error,
    },
    #[error("plugin `{plugin}`: malformed output: {source}")]
    Output { plugin: String, source: WireError },
    #[error("plugin `{plugin}`: declares {count} routes; at most 64 are allowed")]
    TooManyRoutes { plugin: String, count: usize },
}

/// Limits that hold for every call of a plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The cap of an instance's linear memories and tables, all of them together.
    pub memory_bytes: usize,
    /// Wall-clock budget of one call; past it the call traps.
    pub call_timeout: Duration,
    /// An instance whose memory grew past this is re-created before its next call
    /// (WebAssembly memory never shrinks); 0: never.
    pub recycle_bytes: usize,
    /// The cap of the plugin's keyed state (keys and values).
    pub state_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory_bytes: 64 << 20,
            call_timeout: Duration::from_secs(5),
            recycle_bytes: 48 << 20,
            state_bytes: 16 << 20,
        }
    }
}

/// Compiles and links plugins. One per agent; cheap to clone.
#[derive(Clone)]
pub struct PluginEngine {
    inner: Arc<EngineInner>,
}

struct EngineInner {
    engine: Engine,
    cache: cache::CompileCache,
    linker: Linker<HostState>,
    hostname: Arc<str>,
    stop_ticker: Arc<AtomicBool>,
}

impl Drop for EngineInner {
    fn drop(&mut self) {
        self.stop_ticker.store(true, Ordering::Relaxed);
    }
}

/// Compiles a component, turning a panic inside the compiler into an error: a plugin
/// the compiler cannot handle (a Cranelift bug, a CPU feature its code needs and this
/// CPU lacks) fails to load, with its name; it never takes the agent down.
#[cfg(feature = "compiler")]
fn compile(engine: &Engine, bytes: &[u8]) -> wasmtime::Result<Component> {
    catch_compiler_panic(|| Component::new(engine, bytes))
}

/// An agent built without the compiler runs only precompiled code.
#[cfg(not(feature = "compiler"))]
fn compile(_: &Engine, _: &[u8]) -> wasmtime::Result<Component> {
    Err(wasmtime::Error::msg(NO_COMPILER))
}

#[cfg(not(feature = "compiler"))]
const NO_COMPILER: &str = "this agent is built without the compiler: it runs only code \
    compiled ahead of time for this CPU (the builtins it embeds, and plugins compiled \
    by `runnel plugin compile --target` and signed)";

/// Runs a compilation, turning a panic inside the compiler into an error.
#[cfg(feature = "compiler")]
fn catch_compiler_panic<T>(compile: impl FnOnce() -> wasmtime::Result<T>) -> wasmtime::Result<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(compile)).unwrap_or_else(|panic| {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "no message".to_owned());
        Err(wasmtime::Error::msg(format!(
            "the compiler failed ({what}); if this CPU lacks a feature the plugin's code \
                 needs, `plugin_backend = \"pulley\"` in [agent] runs it on the interpreter"
        )))
    })
}

/// A plugin's code, as the engine loads it.
#[derive(Clone, Copy)]
pub enum Code<'a> {
    /// A component (`.wasm`): compiled by the engine, unless its cache holds it compiled
    /// already or the agent embeds it `precompiled` (a builtin).
    Component {
        wasm: &'a [u8],
        precompiled: Option<crate::builtin::Precompiled>,
    },
    /// Code `runnel plugin compile` made ahead of time, whose signature verified. It
    /// runs as native code, without the checks compiling makes: never loaded unsigned.
    Compiled(signing::Signed<'a>),
}

impl<'a> Code<'a> {
    /// A file's code: precompiled code (wasmtime's format) needs `signed` (its
    /// signature verified); anything else is taken as a component.
    pub fn of_file(
        path: &std::path::Path,
        bytes: &'a [u8],
        signed: Option<signing::Signed<'a>>,
    ) -> Result<Self, signing::SignatureError> {
        if Engine::detect_precompiled(bytes).is_none() {
            return Ok(Code::Component {
                wasm: bytes,
                precompiled: None,
            });
        }
        signed
            .map(Code::Compiled)
            .ok_or_else(|| signing::SignatureError::CompiledUnsigned {
                path: path.display().to_string(),
            })
    }
}

impl PluginEngine {
    /// An engine whose compiled components are kept in `cache_dir` across restarts
    /// (none: compiled at every start, each component once), running plugin code on
    /// `backend` (resolved here: see [`Backend::resolve`]).
    pub fn new(
        hostname: Arc<str>,
        cache_dir: Option<std::path::PathBuf>,
        backend: Backend,
    ) -> anyhow::Result<Self> {
        let resolved = backend.resolve().map_err(anyhow::Error::msg)?;
        if resolved == Backend::Pulley {
            tracing::info!(
                configured = backend.name(),
                "plugins run on Pulley, wasmtime's interpreter{}",
                if backend == Backend::Auto {
                    ": this CPU lacks the vector extension Cranelift's code needs"
                } else {
                    ""
                }
            );
        }
        let engine = Engine::new(&engine_config::engine_config(resolved))?;
        Self::with_engine(engine, hostname, cache_dir)
    }

    /// An engine that compiles plugins for `target` (`runnel plugin compile --target`).
    /// It cannot run them unless `target` is this CPU's kind.
    pub fn for_target(target: engine_config::CompileTarget) -> anyhow::Result<Self> {
        let engine = Engine::new(&engine_config::cross_engine_config(target)?).map_err(|e| {
            anyhow::anyhow!(
                "cannot compile for {}: {e} (an agent built without the `all-arch` feature \
                 compiles only for its own CPU)",
                target.name()
            )
        })?;
        Self::with_engine(engine, Arc::from("compile"), None)
    }

    fn with_engine(
        engine: Engine,
        hostname: Arc<str>,
        cache_dir: Option<std::path::PathBuf>,
    ) -> anyhow::Result<Self> {
        let cache = cache::CompileCache::new(&engine, cache_dir);
        let mut linker = Linker::<HostState>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
        deny_blocking(&mut linker)?;
        bindings::host::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |s| s)?;
        bindings::types::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |s| s)?;
        bindings::state::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |s| s)?;

        let stop_ticker = Arc::new(AtomicBool::new(false));
        let ticker_engine = engine.weak();
        let stop = stop_ticker.clone();
        std::thread::Builder::new()
            .name("runnel-epoch".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    match ticker_engine.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => break,
                    }
                }
            })?;
        Ok(Self {
            inner: Arc::new(EngineInner {
                engine,
                cache,
                linker,
                hostname,
                stop_ticker,
            }),
        })
    }

    /// `wasm` compiled ahead of time for this engine's target, in the form a builtin's
    /// precompiled code is embedded in the agent (see `crate::builtin`), and whether it
    /// was compiled now (`false`: `embedded` already held it).
    #[cfg(feature = "compiler")]
    pub fn precompile(
        &self,
        wasm: &[u8],
        embedded: Option<crate::builtin::Precompiled>,
    ) -> wasmtime::Result<(Vec<u8>, bool)> {
        let engine = &self.inner.engine;
        let cache = &self.inner.cache;
        match embedded {
            Some(p) if cache.fits(engine, wasm, p) => Ok((p.code().to_vec(), false)),
            _ => Ok((
                catch_compiler_panic(|| cache.precompile(engine, wasm))?,
                true,
            )),
        }
    }

    /// A component compiled ahead of time for this engine's target, as `runnel plugin
    /// compile PLUGIN` writes it (wasmtime's format; loaded as [`Code::Compiled`]).
    #[cfg(feature = "compiler")]
    pub fn precompile_plugin(&self, wasm: &[u8]) -> wasmtime::Result<Vec<u8>> {
        catch_compiler_panic(|| self.inner.engine.precompile_component(wasm))
    }

    /// Compiles `code` (or finds it compiled) and finds its role.
    pub fn load(
        &self,
        name: &str,
        code: Code<'_>,
        config: &Value,
        limits: Limits,
    ) -> Result<Plugin, PluginError> {
        let engine = &self.inner.engine;
        let started = std::time::Instant::now();
        let loaded = match code {
            Code::Component { wasm, precompiled } => {
                self.inner
                    .cache
                    .get(engine, wasm, precompiled, || compile(engine, wasm))
            }
            Code::Compiled(signed) => {
                // SAFETY: `Component::deserialize` trusts its input to be code wasmtime
                // made. A `Signed` is only made by `TrustedKeys::verify`: these bytes
                // carry a valid Ed25519 signature from a key the operator listed in
                // `trusted_keys`, i.e. they are the `runnel plugin compile` output the
                // operator signed — as trusted as the agent's own binary. wasmtime
                // still checks its version, settings and this CPU's features in the
                // code's header and refuses code made for another engine or CPU.
                unsafe { Component::deserialize(engine, signed.bytes()) }
                    .map(|c| (c, cache::Origin::Signed))
            }
        };
        let (component, origin) = loaded.map_err(|source| PluginError::Compile {
            plugin: name.to_owned(),
            source,
        })?;
        tracing::debug!(plugin = name, ?origin, elapsed = ?started.elapsed(), "plugin loaded");
        let role = self.role_of(name, &component)?;
        Ok(Plugin {
            inner: Arc::new(PluginInner {
                recycled: crate::metrics::Registry::global()
                    .counter(&format!("plugin.{name}"), "instances_recycled"),
                output_budget: Arc::new(guest_output::OutputBudget::new(name)),
                name: Arc::from(name),
                role,
                component,
                config: wire::encode_tree(config),
                limits,
                engine: self.clone(),
                // In memory until the agent gives it its own store.
                state: state::StateStore::open(name, None, limits.state_bytes),
            }),
        })
    }

    /// Reads and compiles a component file (precompiled code is refused: nothing has
    /// verified its signature).
    pub fn load_file(
        &self,
        name: &str,
        path: &std::path::Path,
        config: &Value,
        limits: Limits,
    ) -> Result<Plugin, PluginError> {
        let bytes = std::fs::read(path).map_err(|source| PluginError::Read {
            plugin: name.to_owned(),
            path: path.display().to_string(),
            source,
        })?;
        let code = Code::of_file(path, &bytes, None).map_err(|e| PluginError::Compile {
            plugin: name.to_owned(),
            source: wasmtime::Error::msg(e.to_string()),
        })?;
        self.load(name, code, config, limits)
    }

    fn role_of(&self, name: &str, component: &Component) -> Result<Role, PluginError> {
        let ty = component.component_type();
        let exports: Vec<String> = ty
            .exports(&self.inner.engine)
            .map(|(n, _)| n.to_owned())
            .collect();
        let mut found = Vec::new();
        for export in &exports {
            let Some(rest) = export.strip_prefix(&format!("{WIT_PACKAGE}/")) else {
                continue;
            };
            let (iface, version) = rest.split_once('@').unwrap_or((rest, ""));
            let Some(role) = Role::ALL.into_iter().find(|r| r.interface() == iface) else {
                continue;
            };
            if !compatible(version) {
                return Err(PluginError::Version {
                    plugin: name.to_owned(),
                    export: export.clone(),
                });
            }
            found.push(role);
        }
        match found.as_slice() {
            [role] => Ok(*role),
            [] => Err(PluginError::NoRole {
                plugin: name.to_owned(),
                exports: if exports.is_empty() {
                    "nothing".into()
                } else {
                    exports.join(", ")
                },
            }),
            many => Err(PluginError::ManyRoles {
                plugin: name.to_owned(),
                roles: many
                    .iter()
                    .map(Role::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
        }
    }
}

/// The WASI version whose `poll` the host replaces.
const WASI_IO_POLL: &str = "wasi:io/poll@0.2.12";

/// Replaces WASI's blocking waits (`poll`, `pollable.block` — what `sleep` and every
/// blocking read end in) with a trap. Epoch deadlines interrupt wasm code, not a host
/// call that sleeps, so a plugin that waited could hold its worker past `timeout_ms`;
/// plugins have nothing to wait for anyway (no sockets, files or stdin are granted).
fn deny_blocking(linker: &mut Linker<HostState>) -> anyhow::Result<()> {
    linker.allow_shadowing(true);
    let mut poll = linker.instance(WASI_IO_POLL)?;
    for name in ["poll", "[method]pollable.block"] {
        poll.func_new(name, move |_, _, _, _| {
            Err(wasmtime::Error::msg(format!(
                "plugins may not block: `{WASI_IO_POLL}` `{name}` is not granted"
            )))
        })?;
    }
    linker.allow_shadowing(false);
    Ok(())
}

/// Semver compatibility with [`WIT_VERSION`] (0.x: same minor).
fn compatible(version: &str) -> bool {
    let mut ours = WIT_VERSION.split('.');
    let mut theirs = version.split('.');
    match (ours.next(), theirs.next()) {
        (Some("0"), Some("0")) => ours.next() == theirs.next(),
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

/// A compiled plugin: instantiate it as often as needed. Cheap to clone.
#[derive(Clone)]
pub struct Plugin {
    inner: Arc<PluginInner>,
}

struct PluginInner {
    name: Arc<str>,
    /// Instances re-created because their memory grew past `limits.recycle_bytes`.
    recycled: crate::metrics::Counter,
    /// How much of the plugin's standard output and error is still logged.
    output_budget: Arc<guest_output::OutputBudget>,
    role: Role,
    component: Component,
    config: wit::Tree,
    limits: Limits,
    engine: PluginEngine,
    /// The plugin's keyed state (`runnel:plugin/state`), shared by its instances.
    state: Arc<state::StateStore>,
}

impl Plugin {
    /// The same plugin keeping its keyed state in `store` (the agent's per-plugin store,
    /// which outlives reloads).
    pub fn with_state(&self, store: Arc<state::StateStore>) -> Plugin {
        let p = &*self.inner;
        Plugin {
            inner: Arc::new(PluginInner {
                name: p.name.clone(),
                recycled: p.recycled.clone(),
                output_budget: p.output_budget.clone(),
                role: p.role,
                component: p.component.clone(),
                config: p.config.clone(),
                limits: p.limits,
                engine: p.engine.clone(),
                state: store,
            }),
        }
    }

    pub fn name(&self) -> &str {
        &self.inner.name
    }

    pub fn role(&self) -> Role {
        self.inner.role
    }

    pub fn limits(&self) -> Limits {
        self.inner.limits
    }

    /// A running instance, with `create` called. `counters` receives `host.counter`.
    pub fn instantiate(
        &self,
        counters: Arc<PluginCounters>,
    ) -> Result<PluginInstance, PluginError> {
        let live = self.bind(&counters)?;
        Ok(PluginInstance {
            plugin: self.clone(),
            counters,
            live: Some(live),
            lines: LinesEncoder::default(),
            batch: BatchEncoder::default(),
            journal: state::StateJournal::default(),
        })
    }

    fn bind(&self, counters: &Arc<PluginCounters>) -> Result<Live, PluginError> {
        let p = &*self.inner;
        let engine = &p.engine.inner;
        let state = HostState::new(
            p.name.clone(),
            engine.hostname.clone(),
            counters.clone(),
            p.limits.memory_bytes,
            p.state.clone(),
            p.output_budget.clone(),
        );
        let mut store = Store::new(&engine.engine, state);
        store.limiter(|s| &mut s.limits);
        store.set_epoch_deadline(deadline_ticks(p.limits.call_timeout));
        let inst_err = |source| PluginError::Instantiate {
            plugin: p.name.to_string(),
            source,
        };
        let call_err = |source| PluginError::Call {
            plugin: p.name.to_string(),
            call: "create",
            source,
        };
        let init_err = |message| PluginError::Init {
            plugin: p.name.to_string(),
            message,
        };
        let reads_err = |source| PluginError::Call {
            plugin: p.name.to_string(),
            call: "reads",
            source,
        };
        // Instantiates a role's world, calls `create` and asks which fields it `reads`:
        // the same steps for every role that takes events (a parser reads lines; a
        // router also names its routes).
        macro_rules! bind {
            ($World:ty, $exports:ident, $Variant:ident) => {{
                let b = <$World>::instantiate(&mut store, &p.component, &engine.linker)
                    .map_err(inst_err)?;
                let guest = b.$exports().instance();
                let res = guest
                    .call_create(&mut store, &p.config)
                    .map_err(call_err)?
                    .map_err(init_err)?;
                let reads = guest.call_reads(&mut store, res).map_err(reads_err)?;
                (Bound::$Variant(b, res), reads)
            }};
        }
        // What `create` printed (a traceback when it failed) is logged either way.
        let bound = (|| -> Result<(Bound, Option<Vec<String>>), PluginError> {
            Ok(match p.role {
                Role::Parser => {
                    let b =
                        parser::ParserPlugin::instantiate(&mut store, &p.component, &engine.linker)
                            .map_err(inst_err)?;
                    let res = b
                        .runnel_plugin_parser()
                        .instance()
                        .call_create(&mut store, &p.config)
                        .map_err(call_err)?;
                    (Bound::Parser(b, res.map_err(init_err)?), None)
                }
                Role::Interceptor => bind!(
                    interceptor::InterceptorPlugin,
                    runnel_plugin_interceptor,
                    Interceptor
                ),
                Role::Cleaner => bind!(cleaner::CleanerPlugin, runnel_plugin_cleaner, Cleaner),
                Role::Processor => bind!(
                    processor::ProcessorPlugin,
                    runnel_plugin_processor,
                    Processor
                ),
                Role::Router => {
                    let b =
                        router::RouterPlugin::instantiate(&mut store, &p.component, &engine.linker)
                            .map_err(inst_err)?;
                    let guest = b.runnel_plugin_router().instance();
                    let res = guest
                        .call_create(&mut store, &p.config)
                        .map_err(call_err)?
                        .map_err(init_err)?;
                    let routes =
                        guest
                            .call_routes(&mut store, res)
                            .map_err(|source| PluginError::Call {
                                plugin: p.name.to_string(),
                                call: "routes",
                                source,
                            })?;
                    if routes.len() > 64 {
                        return Err(PluginError::TooManyRoutes {
                            plugin: p.name.to_string(),
                            count: routes.len(),
                        });
                    }
                    let reads = guest.call_reads(&mut store, res).map_err(reads_err)?;
                    (Bound::Router(b, res, routes), reads)
                }
            })
        })();
        store.data().drain_output();
        let (bound, reads) = bound?;
        let projection = reads.map(|names| projection(&p.name, names)).transpose()?;
        Ok(Live {
            store,
            bound,
            projection,
        })
    }
}

fn deadline_ticks(timeout: Duration) -> u64 {
    (timeout.as_millis() / EPOCH_TICK.as_millis()).max(1) as u64 + 1
}

enum Bound {
    Parser(parser::ParserPlugin, ResourceAny),
    Interceptor(interceptor::InterceptorPlugin, ResourceAny),
    Cleaner(cleaner::CleanerPlugin, ResourceAny),
    Processor(processor::ProcessorPlugin, ResourceAny),
    Router(router::RouterPlugin, ResourceAny, Vec<String>),
}

struct Live {
    store: Store<HostState>,
    bound: Bound,
    /// The top-level fields the plugin reads (`reads`); `None`: all.
    projection: Option<wire::Projection>,
}

/// Checks what a plugin's `reads` returned.
fn projection(plugin: &str, names: Vec<String>) -> Result<wire::Projection, PluginError> {
    const MAX: usize = 1024;
    if names.len() > MAX {
        return Err(PluginError::Init {
            plugin: plugin.to_owned(),
            message: format!(
                "`reads` names {} fields; at most {MAX} are allowed",
                names.len()
            ),
        });
    }
    Ok(wire::Projection::new(names))
}

/// What a plugin decided for one event.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Pass the event on (changed or not).
    Keep,
    /// The plugin dropped the event (interceptors only).
    Drop,
    /// The plugin could not handle the event; it is unchanged. The message says why.
    Failed(String),
    /// The plugin's call failed on this event alone (a trap, its deadline, output that
    /// breaks the contract); the event is unchanged. Set by the chain, which retries a
    /// failed batch in parts to single such events out.
    CallFailed(String),
    /// The routes chosen (routers only): bit i is route i.
    Route(u64),
}

/// A running plugin instance. Not shared: each pipeline worker owns its own.
pub struct PluginInstance {
    plugin: Plugin,
    counters: Arc<PluginCounters>,
    /// `None` after a failed call: the next call makes a fresh instance first.
    live: Option<Live>,
    lines: LinesEncoder,
    batch: BatchEncoder,
    /// The state commits of the calls since the last [`PluginInstance::take_journal`].
    journal: state::StateJournal,
}

impl PluginInstance {
    /// The state commits of the calls since the last time (the caller's batch's), to
    /// be stored with the batch and applied once it is in its channels.
    pub fn take_journal(&mut self) -> state::StateJournal {
        std::mem::take(&mut self.journal)
    }

    pub fn plugin(&self) -> &Plugin {
        &self.plugin
    }

    /// The router's route names (empty for other roles).
    pub fn routes(&self) -> &[String] {
        match &self.live {
            Some(Live {
                bound: Bound::Router(_, _, routes),
                ..
            }) => routes,
            _ => &[],
        }
    }

    /// Runs the plugin on `events`, changing them in place, and writes one verdict per
    /// event into `verdicts`. On `Err` the call failed as a whole and no event was
    /// changed; the instance is replaced before the next call.
    pub fn process(
        &mut self,
        events: &mut [Event],
        verdicts: &mut Vec<Verdict>,
    ) -> Result<(), PluginError> {
        verdicts.clear();
        if events.is_empty() {
            return Ok(());
        }
        let mut live = self.take_live()?;
        let result = self.call(&mut live, events, verdicts);
        self.put_back(live, &result);
        result
    }

    /// Runs a processor on `events`, replacing them with the events it emitted. On
    /// `Err` the call failed as a whole and `events` are unchanged.
    pub fn process_many(&mut self, events: &mut Vec<Event>) -> Result<(), PluginError> {
        if events.is_empty() {
            return Ok(());
        }
        let mut live = self.take_live()?;
        let result = self.call_processor(&mut live, Some(events), 0);
        self.put_back(live, &result);
        *events = result?;
        Ok(())
    }

    /// A processor's `tick`: the new events it emits at `now` (nanoseconds since the
    /// Unix epoch).
    pub fn tick(&mut self, now: i64) -> Result<Vec<Event>, PluginError> {
        let mut live = self.take_live()?;
        let result = self.call_processor(&mut live, None, now);
        self.put_back(live, &result);
        result
    }

    fn call_processor(
        &mut self,
        live: &mut Live,
        input: Option<&mut Vec<Event>>,
        now: i64,
    ) -> Result<Vec<Event>, PluginError> {
        let p = &*self.plugin.inner;
        let Bound::Processor(b, res) = &live.bound else {
            return Err(PluginError::Output {
                plugin: p.name.to_string(),
                source: WireError::WrongRole("not a processor"),
            });
        };
        live.store
            .set_epoch_deadline(deadline_ticks(p.limits.call_timeout));
        let call_err = |call| {
            move |source| PluginError::Call {
                plugin: p.name.to_string(),
                call,
                source,
            }
        };
        let guest = b.runnel_plugin_processor().instance();
        let out = match &input {
            Some(events) => {
                let batch = self.batch.encode(events, live.projection.as_ref());
                guest
                    .call_process(&mut live.store, *res, batch)
                    .map_err(call_err("process"))?
            }
            None => guest
                .call_tick(&mut live.store, *res, now)
                .map_err(call_err("tick"))?,
        };
        let mut empty = Vec::new();
        let inputs = match input {
            Some(events) => events,
            None => &mut empty,
        };
        emitted(inputs, out).map_err(|source| PluginError::Output {
            plugin: p.name.to_string(),
            source,
        })
    }

    /// The instance to call: the one kept from the last call, or a fresh one.
    fn take_live(&mut self) -> Result<Live, PluginError> {
        match self.live.take() {
            Some(live) => Ok(live),
            None => self.plugin.bind(&self.counters),
        }
    }

    /// Keeps the instance after a call — unless the call failed as a whole (then it
    /// may be in any state) or its memory grew past `recycle_mb` — and logs what it
    /// printed.
    fn put_back<T>(&mut self, mut live: Live, result: &Result<T, PluginError>) {
        // The state changes of the call take effect only if it succeeded.
        if let Some(commit) = live.store.data_mut().end_call(result.is_ok()) {
            self.journal.push(self.plugin.inner.state.clone(), commit);
        }
        let state = live.store.data();
        state.drain_output();
        let recycle = self.plugin.inner.limits.recycle_bytes;
        let grown = recycle > 0 && state.memory_bytes() > recycle;
        match &result {
            // A trap poisons the instance, and one that broke the contract may be in any
            // state: drop it (and its store) here; the next call makes a fresh one.
            Err(PluginError::Call { .. } | PluginError::Output { .. }) => {}
            // Its memory will never shrink: a fresh instance gives it back.
            _ if grown => {
                tracing::debug!(
                    plugin = %self.plugin.inner.name,
                    memory_bytes = state.memory_bytes(),
                    "instance memory past recycle_mb: re-creating the instance"
                );
                self.plugin.inner.recycled.add(1);
            }
            _ => self.live = Some(live),
        }
    }

    /// Calls a parser on the bodies of `events` without applying its output to them:
    /// encoding, the call, and lifting and checking the output. This is the cost of the
    /// boundary plus the guest's work, for benchmarks. `None` for other roles.
    pub fn parse_detached(&mut self, events: &[Event]) -> Option<Result<usize, PluginError>> {
        let live = self.live.as_mut()?;
        let Bound::Parser(b, res) = &live.bound else {
            return None;
        };
        let p = &*self.plugin.inner;
        live.store
            .set_epoch_deadline(deadline_ticks(p.limits.call_timeout));
        let input = self.lines.encode(events);
        let result =
            call_parse(&mut live.store, b, *res, input, &p.name).map(|out| out.results.len());
        Some(result)
    }

    fn call(
        &mut self,
        live: &mut Live,
        events: &mut [Event],
        verdicts: &mut Vec<Verdict>,
    ) -> Result<(), PluginError> {
        let p = &*self.plugin.inner;
        let store = &mut live.store;
        store.set_epoch_deadline(deadline_ticks(p.limits.call_timeout));
        let name = || p.name.to_string();
        let call_err = |call| {
            move |source| PluginError::Call {
                plugin: name(),
                call,
                source,
            }
        };
        let out_err = |source| PluginError::Output {
            plugin: name(),
            source,
        };
        let expect = |what, got: usize| {
            if got == events.len() {
                Ok(())
            } else {
                Err(out_err(WireError::CountMismatch {
                    what,
                    expected: events.len(),
                    got,
                }))
            }
        };
        match &live.bound {
            Bound::Processor(..) => {
                return Err(out_err(WireError::WrongRole(
                    "a processor emits events: the host calls it with process_many",
                )));
            }
            Bound::Parser(b, res) => {
                let out = call_parse(store, b, *res, self.lines.encode(events), &p.name)?;
                expect("parse results", out.results.len())?;
                let reader = OutputReader::new(out.data);
                for (event, result) in events.iter_mut().zip(&out.results) {
                    verdicts.push(apply_parsed(&reader, event, result));
                }
            }
            Bound::Interceptor(b, res) => {
                let input = self.batch.encode(events, live.projection.as_ref());
                let out = b
                    .runnel_plugin_interceptor()
                    .instance()
                    .call_intercept(&mut *store, *res, input)
                    .map_err(call_err("intercept"))?;
                expect("interceptor actions", out.actions.len())?;
                let reader = OutputReader::new(out.data);
                for (event, action) in events.iter_mut().zip(&out.actions) {
                    verdicts.push(match action {
                        interceptor::exports::runnel::plugin::interceptor::Action::Keep => {
                            Verdict::Keep
                        }
                        interceptor::exports::runnel::plugin::interceptor::Action::Drop => {
                            Verdict::Drop
                        }
                        interceptor::exports::runnel::plugin::interceptor::Action::Patch(patch) => {
                            patched(reader.apply_patch(event, patch))
                        }
                    });
                }
            }
            Bound::Cleaner(b, res) => {
                let input = self.batch.encode(events, live.projection.as_ref());
                let out = b
                    .runnel_plugin_cleaner()
                    .instance()
                    .call_clean(&mut *store, *res, input)
                    .map_err(call_err("clean"))?;
                expect("cleaner patches", out.patches.len())?;
                let reader = OutputReader::new(out.data);
                for (event, patch) in events.iter_mut().zip(&out.patches) {
                    verdicts.push(match patch {
                        None => Verdict::Keep,
                        Some(patch) => patched(reader.apply_patch(event, patch)),
                    });
                }
            }
            Bound::Router(b, res, routes) => {
                let input = self.batch.encode(events, live.projection.as_ref());
                let masks = b
                    .runnel_plugin_router()
                    .instance()
                    .call_route(&mut *store, *res, input)
                    .map_err(call_err("route"))?;
                expect("route masks", masks.len())?;
                let valid = if routes.len() == 64 {
                    u64::MAX
                } else {
                    (1u64 << routes.len()) - 1
                };
                for mask in masks {
                    verdicts.push(if mask & !valid == 0 {
                        Verdict::Route(mask)
                    } else {
                        Verdict::Failed(format!(
                            "route mask {mask:#x} names a route beyond the {} declared",
                            routes.len()
                        ))
                    });
                }
            }
        }
        Ok(())
    }
}

/// The events a processor emitted: input events kept (cloned when kept more than once)
/// or patched, and new ones, in its order. Everything is checked before any input event
/// is moved, so on `Err` the input is left as it was.
fn emitted(
    inputs: &mut Vec<Event>,
    out: processor::exports::runnel::plugin::processor::ProcessOutput,
) -> Result<Vec<Event>, WireError> {
    use processor::exports::runnel::plugin::processor::Emit;
    let len = inputs.len();
    let index = |i: u32| {
        if (i as usize) < len {
            Ok(i as usize)
        } else {
            Err(WireError::NoSuchInput { index: i, len })
        }
    };
    // The last time each input is named: it is moved there, cloned before.
    let mut last_use = vec![usize::MAX; len];
    for (at, emit) in out.events.iter().enumerate() {
        match emit {
            Emit::Keep(i) | Emit::Patched((i, _)) => last_use[index(*i)?] = at,
            Emit::New(_) => {}
        }
    }
    let reader = OutputReader::new(out.data);
    let mut result = Vec::with_capacity(out.events.len());
    let mut patched_inputs = Vec::new();
    for emit in &out.events {
        match emit {
            Emit::Keep(i) => result.push(Ok(*i as usize)),
            Emit::Patched((i, patch)) => {
                // Checked on a copy, so a bad patch leaves the input untouched.
                let mut event = inputs[*i as usize].clone();
                reader.apply_patch(&mut event, patch)?;
                patched_inputs.push(event);
                result.push(Err(patched_inputs.len() - 1));
            }
            Emit::New(e) => {
                patched_inputs.push(reader.event(e)?);
                result.push(Err(patched_inputs.len() - 1));
            }
        }
    }
    let mut taken: Vec<Option<Event>> = std::mem::take(inputs).into_iter().map(Some).collect();
    let mut made = patched_inputs.into_iter().map(Some).collect::<Vec<_>>();
    let events = result
        .into_iter()
        .enumerate()
        .map(|(at, source)| match source {
            Ok(i) if last_use[i] == at => taken[i].take().unwrap_or_default(),
            Ok(i) => taken[i].clone().unwrap_or_default(),
            Err(k) => made[k].take().unwrap_or_default(),
        })
        .collect();
    Ok(events)
}

/// One `parse` call: the bodies in, the parser's output out (not yet checked).
fn call_parse(
    store: &mut Store<HostState>,
    bound: &parser::ParserPlugin,
    instance: ResourceAny,
    input: &wit::Lines,
    plugin: &str,
) -> Result<parser::exports::runnel::plugin::parser::ParseOutput, PluginError> {
    bound
        .runnel_plugin_parser()
        .instance()
        .call_parse(store, instance, input)
        .map_err(|source| PluginError::Call {
            plugin: plugin.to_owned(),
            call: "parse",
            source,
        })
}

fn patched(result: Result<(), WireError>) -> Verdict {
    match result {
        Ok(()) => Verdict::Keep,
        Err(e) => Verdict::Failed(format!("malformed patch: {e}")),
    }
}

fn apply_parsed(
    reader: &OutputReader,
    event: &mut Event,
    result: &parser::exports::runnel::plugin::parser::ParseResult,
) -> Verdict {
    use parser::exports::runnel::plugin::parser::ParseResult;
    match result {
        ParseResult::Ok(parsed) => {
            let fields = match reader.object(parsed.fields) {
                Ok(fields) => fields,
                Err(e) => return Verdict::Failed(format!("malformed parse result: {e}")),
            };
            let name = match parsed.name.map(|span| reader.str(span)).transpose() {
                Ok(name) => name,
                Err(e) => return Verdict::Failed(format!("malformed parse result: {e}")),
            };
            if let Err(e) = reader.merge(&mut event.fields, fields) {
                return Verdict::Failed(format!("malformed parse result: {e}"));
            }
            if let Some(level) = parsed.level {
                event.level = wire::level_from_wit(level);
            }
            if let Some(ts) = parsed.timestamp {
                event.timestamp = Some(ts);
            }
            if let Some(name) = name {
                event.name = Arc::from(name);
            }
            Verdict::Keep
        }
        ParseResult::Error(span) => Verdict::Failed(match reader.str(*span) {
            Ok(message) => message.to_owned(),
            Err(e) => format!("parse error (message unreadable: {e})"),
        }),
    }
}
