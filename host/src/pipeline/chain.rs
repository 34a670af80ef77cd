//! A source's chain of plugin steps. Every step sees the events the previous one kept;
//! a router, if any, is last and decides where each event goes.

use crate::config::OnError;
use crate::event::{Event, error_tags};
use crate::internal_events::{EventsFailed, PluginCallFailed, StepCounters, StepProcessed};
use crate::plugin::{PluginInstance, Role, Verdict};

/// One plugin in a chain, with its error policy.
pub struct Step {
    instance: PluginInstance,
    component: String,
    on_error: OnError,
    keep_body: bool,
    counters: StepCounters,
}

impl Step {
    pub fn new(instance: PluginInstance, source: &str, on_error: OnError, keep_body: bool) -> Self {
        let component = format!("step.{source}.{}", instance.plugin().name());
        Self {
            counters: StepCounters::new(&component),
            instance,
            component,
            on_error,
            keep_body,
        }
    }

    pub fn role(&self) -> Role {
        self.instance.plugin().role()
    }

    pub fn routes(&self) -> &[String] {
        self.instance.routes()
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
}

/// The steps of one source, in order.
pub struct Chain {
    steps: Vec<Step>,
    verdicts: Vec<Verdict>,
}

impl Chain {
    /// `steps` must hold at most one router, and only last (checked by the topology).
    pub fn new(steps: Vec<Step>) -> Self {
        Self {
            steps,
            verdicts: Vec::new(),
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
    pub fn run(&mut self, mut events: Vec<Event>) -> ChainOutput {
        let mut dead_letter = Vec::new();
        let mut masks = Vec::new();
        for step in &mut self.steps {
            if events.is_empty() {
                break;
            }
            let n_in = events.len() as u64;
            let result = step.instance.process(&mut events, &mut self.verdicts);
            if let Err(error) = &result {
                PluginCallFailed {
                    step: &step.component,
                    events: n_in,
                    error,
                }
                .emit(&step.counters);
                let message = error.to_string();
                self.verdicts.clear();
                self.verdicts.resize(events.len(), Verdict::Failed(message));
            }
            let tag = match (&result, step.role()) {
                (Ok(()), Role::Parser) => error_tags::PARSE_ERROR,
                _ => error_tags::PLUGIN_ERROR,
            };
            let is_router = step.role() == Role::Router;
            let clear_body = step.role() == Role::Parser && !step.keep_body;
            let (mut dropped, mut failed) = (0u64, 0u64);
            let mut first_error: Option<String> = None;
            let mut verdicts = self.verdicts.drain(..);
            events.retain_mut(|event| match verdicts.next() {
                Some(Verdict::Keep) | None => {
                    if clear_body {
                        event.body = Vec::new();
                    }
                    true
                }
                Some(Verdict::Route(mask)) => {
                    masks.push(mask);
                    true
                }
                Some(Verdict::Drop) => {
                    dropped += 1;
                    false
                }
                Some(Verdict::Failed(message)) => {
                    failed += 1;
                    let keep = handle_failure(step, event, tag, &message, &mut dead_letter);
                    if keep && is_router {
                        masks.push(0);
                    }
                    first_error.get_or_insert(message);
                    keep
                }
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
    event
        .tags
        .set(error_tags::ERROR_STEP, step.instance.plugin().name());
    if step.on_error == OnError::DeadLetter {
        dead.push(std::mem::take(event));
        return false;
    }
    true
}
