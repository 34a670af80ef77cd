//! What a plugin's store holds and what the host grants it: a WASI context that grants
//! nothing (no preopened directories, no environment, no arguments, no stdin, no
//! sockets, frozen clocks) but standard output and error, which are captured into the
//! agent's log ([`GuestOutput`]), a memory cap ([`Limiter`]), and the
//! `runnel:plugin/host` imports.

use super::bindings::{host, state, types};
use super::guest_output::{GuestOutput, OutputBudget};
use super::state::{Staged, StateCommit, StateStore};
use crate::event::Level;
use crate::metrics::PluginCounters;
use std::sync::Arc;
use std::time::Duration;
use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{
    HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView,
};

/// Per-store state of one plugin instance.
pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(super) limits: Limiter,
    plugin: Arc<str>,
    hostname: Arc<str>,
    counters: Arc<PluginCounters>,
    stdout: GuestOutput,
    stderr: GuestOutput,
    /// How much of the plugin's output may still be logged (shared by its instances).
    output_budget: Arc<OutputBudget>,
    state: Arc<StateStore>,
    /// The state changes of the call in progress.
    staged: Staged,
}

impl HostState {
    pub fn new(
        plugin: Arc<str>,
        hostname: Arc<str>,
        counters: Arc<PluginCounters>,
        memory_bytes: usize,
        state: Arc<StateStore>,
        output_budget: Arc<OutputBudget>,
    ) -> Self {
        let stdout = GuestOutput::default();
        let stderr = GuestOutput::default();
        let wasi = WasiCtxBuilder::new()
            .wall_clock(FrozenClock)
            .monotonic_clock(FrozenClock)
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .build();
        Self {
            wasi,
            table: ResourceTable::new(),
            limits: Limiter::new(memory_bytes),
            plugin,
            hostname,
            counters,
            stdout,
            stderr,
            output_budget,
            state,
            staged: Staged::default(),
        }
    }

    /// Applies the state changes of the call that ended (if it succeeded; returns them
    /// as a commit if there were any) or drops them.
    pub fn end_call(&mut self, succeeded: bool) -> Option<StateCommit> {
        if succeeded {
            self.state.commit(&mut self.staged)
        } else {
            self.staged = Staged::default();
            None
        }
    }

    /// What the instance has grown to: all its linear memories and tables together.
    /// WebAssembly memory and tables never shrink, so this only goes up until the
    /// instance is re-created.
    pub fn memory_bytes(&self) -> usize {
        self.limits.held_bytes()
    }

    /// Logs what the plugin wrote to its standard output and error since the last time.
    pub fn drain_output(&self) {
        self.stdout
            .drain_to_log(&self.plugin, "stdout", &self.output_budget);
        self.stderr
            .drain_to_log(&self.plugin, "stderr", &self.output_budget);
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Core instances a store may hold. A Rust guest has a handful; a component that links
/// several modules (componentize-py links CPython's shared libraries) a few dozen.
/// Instances hold no memory of their own beyond their memories and tables, counted below.
const MAX_INSTANCES: usize = 64;
/// Linear memories a store may hold: components from every toolchain we know of use
/// one (the WASI adapter and linked libraries import the main module's memory).
const MAX_MEMORIES: usize = 4;
/// Tables a store may hold (wit-component's shims define small tables of their own).
const MAX_TABLES: usize = 64;
/// Elements one table may grow to. A Rust guest's function table holds hundreds, an
/// interpreter's (CPython, SpiderMonkey) tens of thousands.
const MAX_TABLE_ELEMENTS: usize = 1 << 20;
/// Host bytes one table element takes: wasmtime stores a pointer per element (see
/// [`ResourceLimiter::table_growing`]).
const TABLE_ELEMENT_BYTES: usize = std::mem::size_of::<usize>();

/// The store's limits: `memory_mb` is the cap of everything the guest can make the host
/// allocate for it — every linear memory and every table of the store together — not of
/// each memory. A creation or growth past the cap is refused: at instantiation that
/// fails the instance; in a call `memory.grow` / `table.grow` return -1 inside the guest
/// (a Rust guest then aborts: a trap), and the call fails like any plugin failure.
pub(super) struct Limiter {
    /// The cap of `memory_bytes + table_bytes`.
    cap: usize,
    memory_bytes: usize,
    table_bytes: usize,
}

impl Limiter {
    pub(super) fn new(cap: usize) -> Self {
        Self {
            cap,
            memory_bytes: 0,
            table_bytes: 0,
        }
    }

    /// What the store's memories and tables hold, in bytes. A growth that the limiter
    /// allowed but the allocator then failed stays counted: the count errs high.
    pub(super) fn held_bytes(&self) -> usize {
        self.memory_bytes + self.table_bytes
    }

    /// Whether `extra` more bytes fit under the cap.
    fn fits(&self, extra: usize) -> bool {
        self.held_bytes()
            .checked_add(extra)
            .is_some_and(|total| total <= self.cap)
    }
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // wasmtime asks even for a growth past the memory's declared maximum (and then
        // fails it): refused here so that it is never counted.
        let extra = desired.saturating_sub(current);
        if maximum.is_some_and(|max| desired > max) || !self.fits(extra) {
            return Ok(false);
        }
        self.memory_bytes += extra;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > MAX_TABLE_ELEMENTS || maximum.is_some_and(|max| desired > max) {
            return Ok(false);
        }
        let extra = desired.saturating_sub(current) * TABLE_ELEMENT_BYTES;
        if !self.fits(extra) {
            return Ok(false);
        }
        self.table_bytes += extra;
        Ok(true)
    }

    fn instances(&self) -> usize {
        MAX_INSTANCES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }
}

/// The WASI clocks a plugin sees: stopped at the epoch. Time comes from `host.now`.
struct FrozenClock;

impl HostWallClock for FrozenClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl HostMonotonicClock for FrozenClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

impl types::Host for HostState {}

impl state::Host for HostState {
    fn get(&mut self, key: Vec<u8>) -> Option<Vec<u8>> {
        self.state.get(&self.staged, &key)
    }

    fn set(&mut self, key: Vec<u8>, value: Vec<u8>) -> Result<(), String> {
        self.state.set(&mut self.staged, key, value)
    }

    fn delete(&mut self, key: Vec<u8>) {
        self.state.delete(&mut self.staged, key);
    }
}

impl host::Host for HostState {
    fn log(&mut self, level: types::Level, message: String) {
        let plugin = &*self.plugin;
        match super::wire::level_from_wit(level) {
            Level::Trace => tracing::trace!(plugin, "{message}"),
            Level::Debug => tracing::debug!(plugin, "{message}"),
            Level::Info | Level::Unknown => tracing::info!(plugin, "{message}"),
            Level::Warn => tracing::warn!(plugin, "{message}"),
            Level::Error | Level::Fatal => tracing::error!(plugin, "{message}"),
        }
    }

    fn counter(&mut self, name: String, delta: u64) {
        self.counters.add(&name, delta);
    }

    fn now(&mut self) -> i64 {
        crate::event::now_ns()
    }

    fn hostname(&mut self) -> String {
        self.hostname.to_string()
    }
}

#[cfg(test)]
#[path = "../../../tests/e2e/hostile_wasm.rs"]
mod hostile_wasm;

#[cfg(test)]
mod tests {
    use super::hostile_wasm::{Attack, core_module};
    use super::*;
    use wasmtime::{Engine, Instance, Module, Store};

    const MIB: usize = 1 << 20;

    /// Runs `attack` in a store capped at `cap_mib` MiB: its result (1: a growth was
    /// refused) or the instantiation error, what the store's memories and tables hold
    /// by the limiter's count, and the cap.
    fn run(attack: Attack, cap_mib: usize) -> (Result<i32, String>, usize, usize) {
        let engine = Engine::default();
        let module = Module::new(&engine, core_module(attack)).unwrap();
        let mut store = Store::new(&engine, Limiter::new(cap_mib * MIB));
        store.limiter(|l| l);
        let result = Instance::new(&mut store, &module, &[])
            .map_err(|e| format!("{e:#}"))
            .and_then(|instance| {
                let f = instance
                    .get_typed_func::<(), i32>(&mut store, "attack")
                    .unwrap();
                f.call(&mut store, ()).map_err(|e| format!("{e:#}"))
            });
        let counted = store.data().held_bytes();
        (result, counted, cap_mib * MIB)
    }

    #[test]
    fn many_memories_together_stay_under_the_cap() {
        // Four memories (the most a store may have), each grown by up to 32 MiB: with a
        // cap of 32 MiB for the store, the growth past it is refused inside the guest.
        let (result, held, cap) = run(
            Attack::Memories {
                count: 4,
                mib_each: 32,
            },
            32,
        );
        assert_eq!(result, Ok(1), "a growth was refused");
        assert!(held <= cap, "{held} bytes held, cap {cap}");
        assert!(held > cap - 2 * MIB, "grew up to the cap: {held}");
    }

    #[test]
    fn sixteen_memories_are_refused_at_instantiation() {
        let (result, held, _) = run(
            Attack::Memories {
                count: 16,
                mib_each: 1,
            },
            64,
        );
        let error = result.unwrap_err();
        assert!(error.contains("memory"), "{error}");
        assert!(held <= 4 * 2 * (64 << 10), "{held}");
    }

    #[test]
    fn a_huge_table_grow_is_refused_inside_the_guest() {
        let (result, held, _) = run(
            Attack::Table {
                elements: 400_000_000,
            },
            64,
        );
        assert_eq!(result, Ok(1), "table.grow gave -1");
        assert!(held < MIB, "{held}");
    }

    #[test]
    fn memories_and_tables_share_one_cap() {
        let mut limiter = Limiter::new(4 * MIB);
        assert!(limiter.memory_growing(0, 3 * MIB, None).unwrap());
        // 200,000 elements are 1.6 MB of host memory: past the 1 MiB left.
        assert!(!limiter.table_growing(0, 200_000, None).unwrap());
        assert!(limiter.table_growing(0, 100_000, None).unwrap());
        assert_eq!(
            limiter.held_bytes(),
            3 * MIB + 100_000 * TABLE_ELEMENT_BYTES
        );
        // The memory cannot take what the table holds.
        assert!(!limiter.memory_growing(3 * MIB, 4 * MIB, None).unwrap());
        // Element count cap, whatever the bytes.
        let mut roomy = Limiter::new(usize::MAX / 2);
        assert!(
            !roomy
                .table_growing(0, MAX_TABLE_ELEMENTS + 1, None)
                .unwrap()
        );
        // A growth past the declared maximum fails in wasmtime and is not counted.
        assert!(!roomy.memory_growing(0, 2 * MIB, Some(MIB)).unwrap());
        assert_eq!(roomy.held_bytes(), 0);
    }
}
