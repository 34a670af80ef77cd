//! The per-source pipeline: batches from a source run through the source's plugin chain
//! on a dedicated worker thread (plugin calls are CPU-bound and synchronous), and the
//! selector puts the results into channels.

mod breaker;
mod chain;
mod selector;
mod worker;

pub use chain::{Chain, ChainOutput, Step};
pub use selector::Selector;
pub use worker::{Worker, WorkerHandle};
