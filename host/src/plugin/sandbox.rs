//! What a plugin's store holds and what the host grants it: a WASI context that grants
//! nothing (no preopened directories, no environment, no arguments, no stdin, no
//! sockets, frozen clocks) but standard output and error, which are captured into the
//! agent's log ([`GuestOutput`]), a memory cap, and the `runnel:plugin/host` imports.

use super::bindings::{host, state, types};
use super::guest_output::GuestOutput;
use super::state::{Staged, StateCommit, StateStore};
use crate::event::Level;
use crate::metrics::PluginCounters;
use std::sync::Arc;
use std::time::Duration;
use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, StoreLimits, StoreLimitsBuilder};
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
            limits: Limiter {
                limits: StoreLimitsBuilder::new()
                    .memory_size(memory_bytes)
                    .instances(64)
                    .tables(64)
                    .memories(16)
                    .build(),
                memory_bytes: 0,
            },
            plugin,
            hostname,
            counters,
            stdout,
            stderr,
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

    /// Linear memory the instance has grown to (all its memories): WebAssembly memory
    /// never shrinks, so this only goes up until the instance is re-created.
    pub fn memory_bytes(&self) -> usize {
        self.limits.memory_bytes
    }

    /// Logs what the plugin wrote to its standard output and error since the last time.
    pub fn drain_output(&self) {
        self.stdout.drain_to_log(&self.plugin, "stdout");
        self.stderr.drain_to_log(&self.plugin, "stderr");
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

/// The store's limits, which also keep count of the memory the instance grew to.
pub(super) struct Limiter {
    limits: StoreLimits,
    memory_bytes: usize,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allow = self.limits.memory_growing(current, desired, maximum)?;
        if allow {
            self.memory_bytes += desired.saturating_sub(current);
        }
        Ok(allow)
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.limits.memory_grow_failed(error)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.limits.table_growing(current, desired, maximum)
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.limits.table_grow_failed(error)
    }

    fn instances(&self) -> usize {
        self.limits.instances()
    }

    fn tables(&self) -> usize {
        self.limits.tables()
    }

    fn memories(&self) -> usize {
        self.limits.memories()
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
