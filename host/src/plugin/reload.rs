//! Hot reload: a configured plugin's code can be replaced while the agent runs.
//!
//! Every configured plugin lives in a [`PluginSlot`]: the version serving now and a
//! generation number. [`PluginSet::reload`] reads the plugin's file again, compiles it
//! (through the compile cache), instantiates it and calls `create` once to prove it
//! works — all off the event path — and only then swaps it into the slot. Chain steps
//! look at the slot's generation before each batch and move to the new version between
//! batches, so a batch is processed by one version, whole, and no event is lost or
//! processed twice by a swap. A version that fails to load is refused: the old one keeps
//! serving, and the refusal is logged, counted and shown by [`PluginSet::status`].

use super::pool::InstancePool;
use super::signing::{SignatureError, TrustedKeys};
use super::state::StateStore;
use super::{Code, Plugin, PluginEngine, PluginError, Role};
use crate::config::{PluginCode, PluginSpec};
use crate::metrics::{Counter, PluginCounters, Registry};
use indexmap::IndexMap;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// One plugin's current version, shared by every step that runs it.
pub struct PluginSlot {
    current: RwLock<Plugin>,
    generation: AtomicU64,
}

impl PluginSlot {
    /// A slot holding `plugin` (generation 1).
    pub fn new(plugin: Plugin) -> Self {
        Self {
            current: RwLock::new(plugin),
            generation: AtomicU64::new(1),
        }
    }

    /// Changes every time a new version is swapped in.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The version serving now, and its generation.
    pub fn current(&self) -> (Plugin, u64) {
        let plugin = self
            .current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        (plugin, self.generation())
    }

    fn swap(&self, plugin: Plugin) -> u64 {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = plugin;
        self.generation.fetch_add(1, Ordering::AcqRel) + 1
    }
}

/// Why a reload did not swap in a new version.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("no plugin `{0}` is configured")]
    Unknown(String),
    #[error("plugin `{0}` is built in: only plugins loaded from a file can be reloaded")]
    Builtin(String),
    #[error(transparent)]
    Load(#[from] PluginError),
    #[error("plugin `{plugin}`: {source}")]
    Signature {
        plugin: String,
        source: SignatureError,
    },
    #[error("plugin `{plugin}`: the new version is a {new}, the running one a {old}")]
    RoleChanged {
        plugin: String,
        old: Role,
        new: Role,
    },
    #[error(
        "plugin `{plugin}`: the new version's routes ({new}) differ from the running one's ({old}); restart the agent to change routes"
    )]
    RoutesChanged {
        plugin: String,
        old: String,
        new: String,
    },
}

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reloaded {
    /// A new version serves from the next batch on.
    Swapped { version: u64 },
    /// The file holds the version already serving.
    Unchanged { version: u64 },
}

/// A plugin as `GET /plugins` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct PluginStatus {
    pub name: String,
    pub role: String,
    /// `builtin:NAME` or the file's path.
    pub code: String,
    /// 1 at start, one more for each version swapped in.
    pub version: u64,
    /// SHA-256 of the component serving now.
    pub sha256: String,
    /// When it was loaded, in seconds since the Unix epoch.
    pub loaded_at: f64,
    pub load_ms: f64,
    pub reloads: u64,
    pub refused: u64,
    /// Why the last reload was refused, while that version is not replaced.
    pub last_error: Option<String>,
}

/// A loaded plugin: its settings, the slot its versions are swapped in, the instances
/// the sources share, its state and its status.
pub struct PluginEntry {
    spec: PluginSpec,
    slot: Arc<PluginSlot>,
    pool: Arc<InstancePool>,
    /// The plugin's keyed state: every version of the plugin uses this one.
    state: Arc<StateStore>,
    status: Mutex<PluginStatus>,
    reloads: Counter,
    refused: Counter,
    /// One reload at a time per plugin.
    reloading: Mutex<()>,
}

/// The agent's plugins by name, and how to reload them.
pub struct PluginSet {
    engine: PluginEngine,
    /// Instances kept per plugin at most (one per core: more could not run at once).
    instances_per_plugin: usize,
    /// Where each plugin's keyed state is saved (`<data_dir>/state`).
    state_dir: PathBuf,
    /// The keys plugin files must be signed with (`require_signed`).
    trust: Option<TrustedKeys>,
    entries: RwLock<IndexMap<String, Arc<PluginEntry>>>,
}

impl PluginEntry {
    /// The instances of the plugin, shared by every source that uses it.
    pub fn pool(&self) -> &Arc<InstancePool> {
        &self.pool
    }

    /// Whether the plugin was loaded from settings equal to `spec` (lines aside).
    pub fn has_settings(&self, spec: &PluginSpec) -> bool {
        self.spec.unlined() == spec.unlined()
    }
}

impl PluginSet {
    pub fn new(engine: PluginEngine, trust: Option<TrustedKeys>, state_dir: PathBuf) -> Self {
        Self {
            engine,
            state_dir,
            instances_per_plugin: std::thread::available_parallelism().map_or(1, |n| n.get()),
            trust,
            entries: RwLock::new(IndexMap::new()),
        }
    }

    /// The engine the plugins are compiled with.
    pub fn engine(&self) -> &PluginEngine {
        &self.engine
    }

    /// The code in the plugin file `path` (its `bytes`): refused unless it carries a
    /// trusted signature when signatures are required — and always, when it is
    /// precompiled code (see [`Code::of_file`]).
    pub fn code_of_file<'a>(
        &self,
        path: &Path,
        bytes: &'a [u8],
    ) -> Result<Code<'a>, SignatureError> {
        let signed = match &self.trust {
            Some(trust) => Some(trust.verify(path, bytes)?),
            None => None,
        };
        Code::of_file(path, bytes, signed)
    }

    /// Adds a plugin loaded at start (see [`PluginSet::entry`]).
    pub fn insert(
        &self,
        spec: PluginSpec,
        plugin: Plugin,
        wasm: &[u8],
        load: Duration,
    ) -> Result<(), PluginError> {
        let entry = self.entry(spec, plugin, wasm, load)?;
        self.write().insert(entry.spec.name.clone(), entry);
        Ok(())
    }

    /// A plugin loaded from `spec`'s code (`wasm`, taking `load`), not yet in the set:
    /// makes its first instance (which calls `create`) and the pool the sources share.
    /// It keeps its state in the store of the plugin of that name already in the set,
    /// if there is one (the state outlives a change of the plugin's settings).
    pub fn entry(
        &self,
        spec: PluginSpec,
        plugin: Plugin,
        wasm: &[u8],
        load: Duration,
    ) -> Result<Arc<PluginEntry>, PluginError> {
        let component = format!("plugin.{}", spec.name);
        let counters = Arc::new(PluginCounters::new(component.clone()));
        let state = match self.read().get(&spec.name) {
            Some(running) => running.state.clone(),
            None => StateStore::open(
                &spec.name,
                Some(self.state_dir.join(format!("{}.state", spec.name))),
                spec.limits.state_bytes,
            ),
        };
        let plugin = plugin.with_state(state.clone());
        let first = plugin.instantiate(counters.clone())?;
        let r = Registry::global();
        let status = PluginStatus {
            name: spec.name.clone(),
            role: plugin.role().to_string(),
            code: describe(&spec.code),
            version: 1,
            sha256: sha256_hex(wasm),
            loaded_at: now_secs(),
            load_ms: load.as_secs_f64() * 1000.0,
            reloads: 0,
            refused: 0,
            last_error: None,
        };
        let slot = Arc::new(PluginSlot::new(plugin));
        let pool = Arc::new(InstancePool::new(
            slot.clone(),
            counters,
            first,
            self.instances_per_plugin,
        ));
        Ok(Arc::new(PluginEntry {
            spec: spec.clone(),
            slot,
            pool,
            state,
            status: Mutex::new(status),
            reloads: r.counter(&component, "reloads"),
            refused: r.counter(&component, "reloads_refused"),
            reloading: Mutex::new(()),
        }))
    }

    /// The names of the plugins loaded now.
    pub fn names(&self) -> Vec<String> {
        self.read().keys().cloned().collect()
    }

    /// The plugin `name` as loaded now.
    pub fn get(&self, name: &str) -> Option<Arc<PluginEntry>> {
        self.read().get(name).cloned()
    }

    /// Replaces the set's plugins with `entries` (a config reload): the plugins no
    /// longer in it save their state and are dropped once no source uses them.
    pub fn replace(&self, entries: IndexMap<String, Arc<PluginEntry>>) {
        let old = std::mem::replace(&mut *self.write(), entries);
        for (name, entry) in old {
            if self
                .get(&name)
                .is_none_or(|e| !Arc::ptr_eq(&e.state, &entry.state))
            {
                entry.state.save_if_changed();
            }
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, IndexMap<String, Arc<PluginEntry>>> {
        self.entries.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, IndexMap<String, Arc<PluginEntry>>> {
        self.entries.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The instances of plugin `name`, shared by every source that uses it.
    pub fn pool(&self, name: &str) -> Option<Arc<InstancePool>> {
        self.read().get(name).map(|e| e.pool.clone())
    }

    /// The file behind each file plugin, by plugin name.
    pub fn files(&self) -> Vec<(String, PathBuf)> {
        self.read()
            .values()
            .filter_map(|e| match &e.spec.code {
                PluginCode::Path(p) => Some((e.spec.name.clone(), p.clone())),
                PluginCode::Builtin(_) => None,
            })
            .collect()
    }

    pub fn status(&self) -> Vec<PluginStatus> {
        self.read()
            .values()
            .map(|e| lock(&e.status).clone())
            .collect()
    }

    /// Reads `name`'s file again and swaps the new version in if it loads, instantiates
    /// and passes `create`. Blocking (compiles); call it off the event path.
    pub fn reload(&self, name: &str) -> Result<Reloaded, ReloadError> {
        let entry = self
            .get(name)
            .ok_or_else(|| ReloadError::Unknown(name.to_owned()))?;
        let _one_at_a_time = lock(&entry.reloading);
        let outcome = self.try_reload(&entry);
        let mut status = lock(&entry.status);
        match &outcome {
            Ok(Reloaded::Swapped { version }) => {
                entry.reloads.add(1);
                status.reloads += 1;
                status.last_error = None;
                tracing::info!(
                    plugin = name,
                    version,
                    sha256 = %status.sha256,
                    load_ms = format!("{:.1}", status.load_ms),
                    "plugin reloaded: the new version serves from the next batch"
                );
            }
            Ok(Reloaded::Unchanged { .. }) => {}
            Err(e) => {
                entry.refused.add(1);
                status.refused += 1;
                status.last_error = Some(e.to_string());
                tracing::error!(
                    plugin = name,
                    version = status.version,
                    "reload refused: {e}; the running version keeps serving"
                );
            }
        }
        outcome
    }

    fn try_reload(&self, entry: &PluginEntry) -> Result<Reloaded, ReloadError> {
        let name = &entry.spec.name;
        let path = match &entry.spec.code {
            PluginCode::Path(p) => p,
            PluginCode::Builtin(_) => return Err(ReloadError::Builtin(name.clone())),
        };
        let started = Instant::now();
        let wasm = std::fs::read(path).map_err(|source| PluginError::Read {
            plugin: name.clone(),
            path: path.display().to_string(),
            source,
        })?;
        let sha256 = sha256_hex(&wasm);
        {
            let status = lock(&entry.status);
            if status.sha256 == sha256 {
                return Ok(Reloaded::Unchanged {
                    version: status.version,
                });
            }
        }
        let code = self
            .code_of_file(path, &wasm)
            .map_err(|source| ReloadError::Signature {
                plugin: name.clone(),
                source,
            })?;
        let spec = &entry.spec;
        let plugin = self
            .engine
            .load(name, code, &spec.config, spec.limits)?
            .with_state(entry.state.clone());
        let (running, _) = entry.slot.current();
        if plugin.role() != running.role() {
            return Err(ReloadError::RoleChanged {
                plugin: name.clone(),
                old: running.role(),
                new: plugin.role(),
            });
        }
        // Instantiated and created once here, so a version that cannot start never
        // reaches a pipeline; the routes of a router must stay what the channels were
        // wired for.
        let probe = Arc::new(PluginCounters::new(format!("plugin.{name}.reload")));
        let new_routes = plugin.instantiate(probe)?.routes().to_vec();
        if plugin.role() == Role::Router {
            let old_routes = entry.pool.routes();
            if new_routes != old_routes {
                return Err(ReloadError::RoutesChanged {
                    plugin: name.clone(),
                    old: old_routes.join(", "),
                    new: new_routes.join(", "),
                });
            }
        }
        let generation = entry.slot.swap(plugin);
        let mut status = lock(&entry.status);
        status.version = generation;
        status.sha256 = sha256;
        status.loaded_at = now_secs();
        status.load_ms = started.elapsed().as_secs_f64() * 1000.0;
        Ok(Reloaded::Swapped {
            version: generation,
        })
    }

    /// Applies the state commits a durable channel's log holds (read at its open) to
    /// the plugins' states: those the state files do not have yet.
    pub fn recover_states(&self, commits: &[Arc<super::state::StateCommit>]) {
        for commit in commits {
            match self.read().get(&*commit.plugin) {
                Some(entry) => entry.state.recover(commit),
                None => tracing::warn!(
                    plugin = %commit.plugin,
                    "a channel holds state changes of a plugin no longer configured; ignored"
                ),
            }
        }
    }

    /// Saves every plugin's keyed state that changed since the last save.
    pub fn save_states(&self) {
        for entry in self.read().values() {
            entry.state.save_if_changed();
        }
    }

    /// Reloads every plugin loaded from a file (SIGHUP); refusals are logged.
    pub fn reload_all(&self) {
        for (name, _) in self.files() {
            let _ = self.reload(&name);
        }
    }

    /// The plugins whose file (or its signature) is `path`, as the watcher reports it.
    pub fn plugins_at(&self, path: &Path) -> Vec<String> {
        self.files()
            .into_iter()
            .filter(|(_, p)| {
                crate::source::same_file(p, path)
                    || crate::source::same_file(&super::signing::signature_path(p), path)
            })
            .map(|(n, _)| n)
            .collect()
    }
}

fn describe(code: &PluginCode) -> String {
    match code {
        PluginCode::Builtin(name) => format!("builtin:{name}"),
        PluginCode::Path(p) => p.display().to_string(),
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    crate::files::hex(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref())
}

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
