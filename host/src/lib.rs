//! Runnel: a WebAssembly-extensible edge log agent.
//!
//! An event's path: a [`source`] reads lines → its batcher makes events and batches →
//! the source's [`pipeline`] worker runs the [`plugin`] chain (parsers, interceptors,
//! cleaners, a router) → the selector puts events into [`channel`]s → a [`sink`] takes
//! them in a transaction, [`encoding`] turns them into bytes, and it commits once written.

pub mod admin;
pub mod bearer;
pub mod builtin;
pub mod channel;
pub mod cli;
pub mod compress;
pub mod config;
pub mod encoding;
pub mod event;
pub mod files;
pub mod forward;
pub mod internal_events;
pub mod metrics;
pub mod pipeline;
pub mod plugin;
pub mod plugin_test;
pub mod scaffold;
pub mod sink;
pub mod source;
pub mod summary;
pub mod systemd;
pub mod template;
pub mod topology;
