//! A source's chain of plugin steps. Every step sees the events the previous one kept;
//! a router, if any, is last and decides where each event goes.

use super::breaker::{self, Breaker};
use crate::config::OnError;
use crate::event::{Event, error_tags};
use crate::internal_events::{EventsFailed, PluginCallFailed, StepCounters, StepProcessed};
use crate::plugin::pool::InstancePool;
use crate::plugin::state::StateJournal;
use crate::plugin::{PluginInstance, Role, Verdict};
use std::sync::Arc;

/// One plugin in a chain, with its error policy. The plugin's instances are shared with
/// the other sources that use it ([`InstancePool`]); the counters, error policy and
/// circuit breaker are this source's own.
pub struct Step {
    pool: Arc<InstancePool>,
    plugin: Arc<str>,
    role: Role,
    call_timeout: std::time::Duration,
    /// The plugin version this step last ran (a new one resets the breaker).
    generation: u64,
    component: String,
    on_error: OnError,
    keep_body: bool,
    counters: StepCounters,
    breaker: Breaker,
    /// A processor's `tick` schedule.
    tick: Option<Tick>,
}

struct Tick {
    every: std::time::Duration,
    next: std::time::Instant,
}

impl Step {
    pub fn new(pool: Arc<InstancePool>, source: &str, on_error: OnError, keep_body: bool) -> Self {
        let (plugin, generation) = pool.slot().current();
        let component = format!("step.{source}.{}", plugin.name());
        Self {
            counters: StepCounters::new(&component),
            plugin: Arc::from(plugin.name()),
            role: plugin.role(),
            call_timeout: plugin.limits().call_timeout,
            generation,
            pool,
            component,
            on_error,
            keep_body,
            breaker: Breaker::default(),
            tick: None,
        }
    }

    /// Calls the processor's `tick` every `every`.
    pub fn ticking(mut self, every: std::time::Duration) -> Self {
        self.tick = Some(Tick {
            every,
            next: std::time::Instant::now() + every,
        });
        self
    }

    /// Notices a reloaded version (the pool hands out only instances of the newest):
    /// it gets its chance at once, whatever the breaker said of the old one.
    fn refresh(&mut self) {
        let generation = self.pool.slot().generation();
        if generation != self.generation {
            self.generation = generation;
            self.breaker = Breaker::default();
        }
    }

    pub fn role(&self) -> Role {
        self.role
    }

    pub fn routes(&self) -> &[String] {
        self.pool.routes()
    }
}

/// Where the events of one batch go after the chain.
#[derive(Debug, Default)]
pub struct ChainOutput {
    /// The events that came through, in order.
    pub events: Vec<Event>,
    /// One route mask per event when the chain ends with a router (bit i: route i; 0 for
    /// none); empty otherwise.
    pub masks: Vec<u64>,
    /// Events a step with `on_error = "dead-letter"` could not handle.
    pub dead_letter: Vec<Event>,
    /// The plugin state changes made on the way: durable with the batch.
    pub state: StateJournal,
}

/// The steps of one source, in order.
pub struct Chain {
    steps: Vec<Step>,
    verdicts: Vec<Verdict>,
    /// The verdicts of one call while a failed batch is split.
    scratch: Vec<Verdict>,
}

/// How much retrying one batch's failures may cost before the events still unresolved
/// are all handed to `on_error`: a plugin that fails every call (or spins to its
/// deadline) must not hold the pipeline for long.
struct Isolation {
    calls_ok: u32,
    failed_calls: u32,
    failed_time: std::time::Duration,
    max_calls: u32,
    max_time: std::time::Duration,
}

impl Isolation {
    /// Enough to single out a few bad events in a batch of `n` (each costs about one
    /// failed call per halving), and one event that runs into the call deadline at every
    /// halving.
    fn for_batch(n: usize, call_timeout: std::time::Duration) -> Self {
        let depth = usize::BITS - n.leading_zeros();
        Self {
            calls_ok: 0,
            failed_calls: 0,
            failed_time: std::time::Duration::ZERO,
            max_calls: 8 * depth + 8,
            max_time: call_timeout * (depth + 1),
        }
    }

    fn exhausted(&self) -> bool {
        self.failed_calls >= self.max_calls || self.failed_time >= self.max_time
    }
}

/// Runs `step` on `events`, appending one verdict per event to `out`. A failed call is
/// retried on each half of the events, down to single events, so only the events that
/// make the plugin fail get [`Verdict::CallFailed`] (within the [`Isolation`] budget).
fn process_isolating(
    step: &Step,
    instance: &mut PluginInstance,
    events: &mut [Event],
    out: &mut Vec<Verdict>,
    scratch: &mut Vec<Verdict>,
    isolation: &mut Isolation,
) {
    let started = std::time::Instant::now();
    match instance.process(events, scratch) {
        Ok(()) => {
            isolation.calls_ok += 1;
            out.append(scratch);
        }
        Err(error) => {
            isolation.failed_calls += 1;
            isolation.failed_time += started.elapsed();
            PluginCallFailed {
                step: &step.component,
                events: events.len() as u64,
                error: &error,
            }
            .emit(&step.counters);
            if events.len() == 1 || isolation.exhausted() {
                let message = error.to_string();
                out.extend(std::iter::repeat_n(
                    Verdict::CallFailed(message),
                    events.len(),
                ));
            } else {
                let (front, back) = events.split_at_mut(events.len() / 2);
                process_isolating(step, instance, front, out, scratch, isolation);
                process_isolating(step, instance, back, out, scratch, isolation);
            }
        }
    }
}

impl Chain {
    /// `steps` must hold at most one router, and only last (checked by the topology).
    pub fn new(steps: Vec<Step>) -> Self {
        Self {
            steps,
            verdicts: Vec::new(),
            scratch: Vec::new(),
        }
    }

    /// The router's routes, when the chain ends with one.
    pub fn routes(&self) -> &[String] {
        match self.steps.last() {
            Some(step) if step.role() == Role::Router => step.routes(),
            _ => &[],
        }
    }

    /// Runs every step on `events`, in place. Nothing is lost: every event ends in the
    /// output, in the dead letters, or in a step's `events_dropped` count.
    pub fn run(&mut self, events: Vec<Event>) -> ChainOutput {
        self.run_from(0, events)
    }

    /// When the next processor tick is due, if any step ticks.
    pub fn next_tick(&self) -> Option<std::time::Instant> {
        self.steps
            .iter()
            .filter_map(|s| s.tick.as_ref().map(|t| t.next))
            .min()
    }

    /// Calls `tick` on the processors due at `now` (all of them with `all`: the final
    /// flush when the agent stops) and runs what they emit through the rest of the chain.
    pub fn tick(&mut self, now: std::time::Instant, all: bool) -> ChainOutput {
        let mut output = ChainOutput::default();
        let wall = crate::event::now_ns();
        for i in 0..self.steps.len() {
            let step = &mut self.steps[i];
            let Some(tick) = &mut step.tick else { continue };
            if !all && now < tick.next {
                continue;
            }
            tick.next = now + tick.every;
            let emitted = match step.pool.lease().and_then(|mut instance| {
                let emitted = instance.tick(wall);
                output.state.append(&mut instance.take_journal());
                emitted
            }) {
                Ok(events) => events,
                Err(error) => {
                    PluginCallFailed {
                        step: &step.component,
                        events: 0,
                        error: &error,
                    }
                    .emit(&step.counters);
                    continue;
                }
            };
            if emitted.is_empty() {
                continue;
            }
            let mut out = self.run_from(i + 1, emitted);
            output.events.extend(out.events);
            output.masks.extend(out.masks);
            output.dead_letter.extend(out.dead_letter);
            output.state.append(&mut out.state);
        }
        output
    }

    /// Runs steps `first..` on `events`.
    fn run_from(&mut self, first: usize, mut events: Vec<Event>) -> ChainOutput {
        let mut dead_letter = Vec::new();
        let mut masks = Vec::new();
        let mut state = StateJournal::default();
        for step in &mut self.steps[first..] {
            if events.is_empty() {
                break;
            }
            step.refresh();
            let n_in = events.len() as u64;
            self.verdicts.clear();
            let now = std::time::Instant::now();
            match step.breaker.allow(now) {
                Ok(()) => {
                    let mut isolation = Isolation::for_batch(events.len(), step.call_timeout);
                    match step.pool.lease() {
                        // A processor's output replaces the batch; a failed call leaves
                        // the batch to on_error (not split: its state sees each event once).
                        Ok(mut instance) if step.role == Role::Processor => {
                            let result = instance.process_many(&mut events);
                            state.append(&mut instance.take_journal());
                            match result {
                                Ok(()) => {
                                    isolation.calls_ok += 1;
                                    self.verdicts.resize(events.len(), Verdict::Keep);
                                }
                                Err(error) => {
                                    isolation.failed_calls += 1;
                                    PluginCallFailed {
                                        step: &step.component,
                                        events: events.len() as u64,
                                        error: &error,
                                    }
                                    .emit(&step.counters);
                                    let message = error.to_string();
                                    self.verdicts.extend(std::iter::repeat_n(
                                        Verdict::CallFailed(message),
                                        events.len(),
                                    ));
                                }
                            }
                        }
                        Ok(mut instance) => {
                            process_isolating(
                                step,
                                &mut instance,
                                &mut events,
                                &mut self.verdicts,
                                &mut self.scratch,
                                &mut isolation,
                            );
                            state.append(&mut instance.take_journal());
                        }
                        // A reloaded version that does not start here: like a failed call.
                        Err(error) => {
                            isolation.failed_calls += 1;
                            PluginCallFailed {
                                step: &step.component,
                                events: events.len() as u64,
                                error: &error,
                            }
                            .emit(&step.counters);
                            let message = error.to_string();
                            self.verdicts.extend(std::iter::repeat_n(
                                Verdict::CallFailed(message),
                                events.len(),
                            ));
                        }
                    }
                    let all_failed = isolation.failed_calls > 0 && isolation.calls_ok == 0;
                    match step.breaker.record(all_failed, std::time::Instant::now()) {
                        Some(breaker::Change::Opened { backoff }) => {
                            step.counters.breaker_opened.add(1);
                            tracing::warn!(
                                step = %step.component,
                                "circuit open: every call failed on {} batches in a row; the plugin is not called for {backoff:?} (its events get on_error)",
                                breaker::OPEN_AFTER
                            );
                        }
                        Some(breaker::Change::Closed) => tracing::info!(
                            step = %step.component,
                            "circuit closed: the plugin works again"
                        ),
                        None => {}
                    }
                }
                Err(left) => {
                    let message = format!(
                        "circuit open: plugin `{}` failed every call on recent batches; retried in {left:.1?}",
                        step.plugin
                    );
                    self.verdicts.extend(std::iter::repeat_n(
                        Verdict::CallFailed(message),
                        events.len(),
                    ));
                }
            }
            let is_router = step.role() == Role::Router;
            let clear_body = step.role() == Role::Parser && !step.keep_body;
            let (mut dropped, mut failed) = (0u64, 0u64);
            let mut first_error: Option<String> = None;
            let mut verdicts = self.verdicts.drain(..);
            let own_failure_tag = if step.role() == Role::Parser {
                error_tags::PARSE_ERROR
            } else {
                error_tags::PLUGIN_ERROR
            };
            events.retain_mut(|event| {
                // A plugin's own verdict on an event (a parser could not parse the line)
                // and a call that failed on the event alone (trap, deadline, bad output).
                let (tag, message) = match verdicts.next() {
                    Some(Verdict::Keep) | None => {
                        if clear_body {
                            event.body = Vec::new();
                        }
                        return true;
                    }
                    Some(Verdict::Route(mask)) => {
                        masks.push(mask);
                        return true;
                    }
                    Some(Verdict::Drop) => {
                        dropped += 1;
                        return false;
                    }
                    Some(Verdict::Failed(message)) => (own_failure_tag, message),
                    Some(Verdict::CallFailed(message)) => (error_tags::PLUGIN_ERROR, message),
                };
                failed += 1;
                let keep = handle_failure(step, event, tag, &message, &mut dead_letter);
                if keep && is_router {
                    masks.push(0);
                }
                first_error.get_or_insert(message);
                keep
            });
            drop(verdicts);
            if failed > 0 {
                EventsFailed {
                    step: &step.component,
                    count: failed,
                    first_error: first_error.as_deref().unwrap_or_default(),
                    action: step.on_error,
                }
                .emit(&step.counters);
            }
            let dropped_by_policy = if step.on_error == OnError::Drop {
                failed
            } else {
                0
            };
            StepProcessed {
                events_in: n_in,
                events_out: events.len() as u64,
                dropped: dropped + dropped_by_policy,
            }
            .emit(&step.counters);
        }
        ChainOutput {
            events,
            masks,
            dead_letter,
            state,
        }
    }
}

/// Applies the step's `on_error` to an event it could not handle; returns whether the
/// event goes on down the chain (otherwise it was moved to the dead letters, or dropped).
fn handle_failure(
    step: &Step,
    event: &mut Event,
    tag: &str,
    message: &str,
    dead: &mut Vec<Event>,
) -> bool {
    if step.on_error == OnError::Drop {
        return false;
    }
    event.tags.set(tag, message);
    event.tags.set(error_tags::ERROR_STEP, &*step.plugin);
    if step.on_error == OnError::DeadLetter {
        dead.push(std::mem::take(event));
        return false;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_isolation_budget_grows_with_the_halvings_a_batch_needs() {
        let second = Duration::from_secs(1);
        let one = Isolation::for_batch(1, second);
        assert_eq!((one.max_calls, one.max_time), (16, 2 * second));
        let big = Isolation::for_batch(512, second);
        // 512 = 2^9: ten levels of halving; a deadline at each is still within budget.
        assert_eq!((big.max_calls, big.max_time), (88, 11 * second));
        let mut spent = Isolation::for_batch(512, second);
        assert!(!spent.exhausted());
        spent.failed_time = 11 * second;
        assert!(spent.exhausted());
        let mut spent = Isolation::for_batch(512, second);
        spent.failed_calls = 88;
        assert!(spent.exhausted());
    }
}
