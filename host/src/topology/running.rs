//! The running agent's components, each startable and stoppable on its own: what the
//! shutdown drains and what a config reload changes.

use crate::channel::Channel;
use crate::config::{AgentSpec, SinkSpec, SourceSpec};
use crate::pipeline::Worker;
use crate::plugin::reload::PluginSet;
use crate::sink::Sink;
use crate::source::{Batcher, Recovered, SourceContext};
use indexmap::IndexMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A source and the worker thread that runs its chain.
pub struct RunningSource {
    /// Reported on `ended` when the source's task ends.
    id: u64,
    stop: CancellationToken,
    task: JoinHandle<()>,
    worker: std::thread::JoinHandle<()>,
    /// The source's task has ended (its input did, or it was stopped).
    pub ended: bool,
}

pub struct RunningSink {
    pub spec: SinkSpec,
    /// Stops taking batches; those in flight are still delivered.
    stop: CancellationToken,
    /// Stops retrying: batches in flight are rolled back.
    abort: CancellationToken,
    task: JoinHandle<()>,
}

/// Everything the agent runs now.
pub struct Running {
    pub spec: AgentSpec,
    pub plugins: Arc<PluginSet>,
    pub channels: IndexMap<String, Channel>,
    pub sources: IndexMap<String, RunningSource>,
    pub sinks: IndexMap<String, RunningSink>,
    runtime: tokio::runtime::Handle,
    /// Cancelled when the agent must stop without waiting for a clean drain.
    pub hard_stop: CancellationToken,
    ended: mpsc::UnboundedSender<u64>,
    next_id: u64,
}

impl Running {
    /// Nothing running yet; a source whose task ends reports its id on `ended`.
    pub fn new(
        spec: AgentSpec,
        plugins: Arc<PluginSet>,
        channels: IndexMap<String, Channel>,
        ended: mpsc::UnboundedSender<u64>,
    ) -> Self {
        Self {
            spec,
            plugins,
            channels,
            sources: IndexMap::new(),
            sinks: IndexMap::new(),
            runtime: tokio::runtime::Handle::current(),
            hard_stop: CancellationToken::new(),
            ended,
            next_id: 0,
        }
    }

    /// Starts a source with its worker: it resumes from the positions its channels
    /// hold (and its own position file).
    pub fn start_source(&mut self, spec: SourceSpec, worker: Worker) -> std::io::Result<()> {
        let recovered = Recovered::merge(
            worker
                .selector
                .channels()
                .iter()
                .flat_map(|c| c.checkpoints(&spec.name)),
        );
        let channels = worker.selector.channels().to_vec();
        let (handle, thread) = worker.spawn(&spec.name, self.runtime.clone())?;
        let batcher = Batcher::new(
            &spec.name,
            spec.event_name.clone(),
            spec.batch,
            spec.max_line_bytes,
            handle,
            self.hard_stop.clone(),
        )
        .with_tags(spec.add_tags.clone())
        .with_channels(&channels);
        let stop = CancellationToken::new();
        let run = spec.kind.config().run(SourceContext {
            name: spec.name.as_str().into(),
            batcher,
            shutdown: stop.clone(),
            data_dir: self.spec.data_dir.clone(),
            recovered,
        });
        let id = self.next_id;
        self.next_id += 1;
        let ended = self.ended.clone();
        let task = tokio::spawn(async move {
            run.await;
            let _ = ended.send(id);
        });
        self.sources.insert(
            spec.name,
            RunningSource {
                id,
                stop,
                task,
                worker: thread,
                ended: false,
            },
        );
        Ok(())
    }

    /// Marks the source whose task reported `id` as ended; false if it is not running
    /// (it was stopped by a reload).
    pub fn source_ended(&mut self, id: u64) -> bool {
        match self.sources.values_mut().find(|s| s.id == id) {
            Some(source) => {
                source.ended = true;
                true
            }
            None => false,
        }
    }

    /// Whether the source `name` runs and its task has ended.
    pub fn has_ended(&self, name: &str) -> bool {
        self.sources.get(name).is_some_and(|s| s.ended)
    }

    pub fn all_sources_ended(&self) -> bool {
        self.sources.values().all(|s| s.ended)
    }

    /// Stops the source `name`: it flushes its last batch, its worker runs the chain on
    /// what is queued and puts it into the channels, then both end.
    pub async fn stop_source(&mut self, name: &str) {
        let Some(source) = self.sources.shift_remove(name) else {
            return;
        };
        source.stop.cancel();
        let _ = source.task.await;
        let worker = source.worker;
        let _ = tokio::task::spawn_blocking(move || worker.join()).await;
    }

    /// Starts delivering from the sink's channel.
    pub fn start_sink(&mut self, spec: SinkSpec, sink: Sink) {
        let stop = CancellationToken::new();
        let abort = self.hard_stop.child_token();
        let task = tokio::spawn(sink.run(stop.clone(), abort.clone()));
        self.sinks.insert(
            spec.name.clone(),
            RunningSink {
                spec,
                stop,
                abort,
                task,
            },
        );
    }

    /// Stops the sink `name`: no new batch is taken; those in flight are delivered
    /// within `timeout`, or rolled back into the channel after it.
    pub async fn stop_sink(&mut self, name: &str, timeout: Duration) {
        let Some(sink) = self.sinks.shift_remove(name) else {
            return;
        };
        sink.stop.cancel();
        finish_sink(sink, timeout).await;
    }

    /// Closes the channel `name` and waits for its sinks to deliver what it holds
    /// (within `timeout`; what is left after it is counted as lost when the channel
    /// does not survive a restart). The sinks and the channel are gone after.
    pub async fn drain_channel(&mut self, name: &str, timeout: Duration) {
        let Some(channel) = self.channels.shift_remove(name) else {
            return;
        };
        channel.close();
        let readers: Vec<String> = self
            .sinks
            .values()
            .filter(|s| s.spec.channel == name)
            .map(|s| s.spec.name.clone())
            .collect();
        for reader in readers {
            if let Some(sink) = self.sinks.shift_remove(&reader) {
                if channel.is_durable() {
                    // What it holds waits on disk: no need to deliver it first.
                    sink.stop.cancel();
                }
                finish_sink(sink, timeout).await;
            }
        }
        if !channel.is_durable() && !channel.is_empty() {
            crate::internal_events::EventsLost {
                count: channel.len() as u64,
                at: name,
                reason: &"the channel was removed by a config reload before its sinks delivered what it held",
            }
            .emit();
        }
    }

    /// Stops every source, waits for the workers, closes the channels and waits for the
    /// sinks to deliver what is left (the shutdown's drain).
    pub async fn drain(&mut self) {
        let names: Vec<String> = self.sources.keys().cloned().collect();
        for source in self.sources.values() {
            source.stop.cancel();
        }
        for name in names {
            self.stop_source(&name).await;
        }
        for channel in self.channels.values() {
            channel.close();
        }
        for (_, sink) in self.sinks.drain(..) {
            let _ = sink.task.await;
        }
    }
}

async fn finish_sink(sink: RunningSink, timeout: Duration) {
    let RunningSink { abort, task, .. } = sink;
    tokio::pin!(task);
    if tokio::time::timeout(timeout, &mut task).await.is_err() {
        abort.cancel();
        let _ = task.await;
    }
}
