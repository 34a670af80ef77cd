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
    /// Events with their route mask (0: no route chosen, or no router).
    pub routed: Vec<(Event, u64)>,
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

    /// Runs every step on `events`. Nothing is lost: every event ends in the output,
    /// in the dead letters, or in a step's `events_dropped` count.
    pub fn run(&mut self, mut events: Vec<Event>) -> ChainOutput {
        let mut out = ChainOutput::default();
        let mut masks: Option<Vec<u64>> = None;
        for step in &mut self.steps {
            if events.is_empty() {
                break;
            }
            let n_in = events.len() as u64;
            let result = step.instance.process(&mut events, &mut self.verdicts);
            let mut kept = Vec::with_capacity(events.len());
            let mut dropped = 0u64;
            let mut failed = 0u64;
            let mut first_error: Option<String> = None;
            match result {
                Ok(()) => {
                    let is_router = step.role() == Role::Router;
                    let clear_body = step.role() == Role::Parser && !step.keep_body;
                    let mut step_masks = Vec::new();
                    for (mut event, verdict) in events.drain(..).zip(self.verdicts.drain(..)) {
                        match verdict {
                            Verdict::Keep => {
                                if clear_body {
                                    event.body = Vec::new();
                                }
                                kept.push(event);
                            }
                            Verdict::Route(mask) => {
                                kept.push(event);
                                step_masks.push(mask);
                            }
                            Verdict::Drop => dropped += 1,
                            Verdict::Failed(message) => {
                                failed += 1;
                                let tag = if step.role() == Role::Parser {
                                    error_tags::PARSE_ERROR
                                } else {
                                    error_tags::PLUGIN_ERROR
                                };
                                if let Some(event) =
                                    handle_failure(step, event, tag, &message, &mut out.dead_letter)
                                {
                                    if is_router {
                                        step_masks.push(0);
                                    }
                                    kept.push(event);
                                }
                                first_error.get_or_insert(message);
                            }
                        }
                    }
                    if is_router {
                        masks = Some(step_masks);
                    }
                }
                Err(error) => {
                    PluginCallFailed {
                        step: &step.component,
                        events: n_in,
                        error: &error,
                    }
                    .emit(&step.counters);
                    let message = error.to_string();
                    for event in events.drain(..) {
                        failed += 1;
                        if let Some(event) = handle_failure(
                            step,
                            event,
                            error_tags::PLUGIN_ERROR,
                            &message,
                            &mut out.dead_letter,
                        ) {
                            kept.push(event);
                        }
                    }
                    first_error = Some(message);
                }
            }
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
                events_out: kept.len() as u64,
                dropped: dropped + dropped_by_policy,
            }
            .emit(&step.counters);
            events = kept;
        }
        let masks = masks.unwrap_or_default();
        out.routed = events
            .into_iter()
            .enumerate()
            .map(|(i, e)| (e, masks.get(i).copied().unwrap_or(0)))
            .collect();
        out
    }
}

/// Applies the step's `on_error` to an event it could not handle; returns the event when
/// it goes on down the chain.
fn handle_failure(
    step: &Step,
    mut event: Event,
    tag: &str,
    message: &str,
    dead: &mut Vec<Event>,
) -> Option<Event> {
    match step.on_error {
        OnError::Drop => None,
        OnError::Tag | OnError::DeadLetter => {
            event.tags.set(tag, message);
            event
                .tags
                .set(error_tags::ERROR_STEP, step.instance.plugin().name());
            if step.on_error == OnError::DeadLetter {
                dead.push(event);
                None
            } else {
                Some(event)
            }
        }
    }
}
