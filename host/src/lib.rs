//! Runnel: a WebAssembly-extensible edge log agent.

pub mod builtin;
pub mod channel;
pub mod config;
pub mod encoding;
pub mod event;
pub mod metrics;
pub mod plugin;
