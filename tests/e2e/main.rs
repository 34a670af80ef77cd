//! End-to-end tests: each runs the real `runnel` binary on a config, with real files,
//! commands and data from tests/data, and checks what comes out.

mod common;
mod config_reload;

mod apache_corpus;
mod default_config;
mod defects;
mod delivery;
mod durable;
mod exec_tail;
mod file_modes;
mod file_sink;
mod forward;
mod hostile_wasm;
mod http_source;
mod journald;
mod json_roundtrip;
mod kafka;
mod listeners;
mod mqtt;
mod peer;
mod plugin_backend;
mod plugin_cache;
mod plugin_limits;
mod plugin_sdks;
mod powercut;
mod precompiled;
mod processor;
mod reload;
mod signing;
mod sink_groups;
mod sources;
mod spooldir;
mod state;
mod syslog;
mod systemd_unit;
mod taildir;
mod tcp_source;
mod trap;
mod validate;
mod webhdfs;
