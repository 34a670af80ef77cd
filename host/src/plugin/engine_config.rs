//! The wasmtime settings of the agent's engine. `build.rs` includes this file too: it
//! precompiles the builtin plugins with exactly these settings, so that the agent can
//! use that code instead of compiling them at start.

/// The settings every plugin is compiled and run with.
pub fn engine_config() -> wasmtime::Config {
    let mut config = wasmtime::Config::new();
    config.wasm_component_model(true).epoch_interruption(true);
    config
}
