//! A Runnel processor in Rust: passes every event on and counts them by level; every
//! `tick_ms` (set it in the plugin's section of the agent config) and when the agent
//! stops, it emits one `level-counts` event with the counts of the window.
//!
//! Try it: `runnel plugin test PLUGIN.wasm --after combined < access.log`

use runnel_plugin_sdk::processor::{Emit, ProcessOutput};
use runnel_plugin_sdk::types::{Batch, Event, Level, Range};
use runnel_plugin_sdk::{Config, Output, events, level_name};
use std::cell::RefCell;

/// The configured plugin: built once in `create`, used for every batch.
#[derive(Debug, Default)]
pub struct LevelCounts {
    /// Events per level since the last tick, in the order first seen.
    counts: RefCell<Vec<(Level, i64)>>,
}

impl LevelCounts {
    pub fn new(config: &Config) -> Result<Self, String> {
        config.deny_unknown(&[])?;
        Ok(Self::default())
    }

    /// Every input event goes on, in order.
    pub fn process(&self, batch: &Batch) -> ProcessOutput {
        let mut counts = self.counts.borrow_mut();
        for event in events(batch) {
            let level = event.level();
            match counts.iter_mut().find(|(l, _)| *l == level) {
                Some((_, n)) => *n += 1,
                None => counts.push((level, 1)),
            }
        }
        ProcessOutput {
            data: Output::new().finish(),
            events: (0..batch.events.len() as u32).map(Emit::Keep).collect(),
        }
    }

    /// One new event with the window's counts, if it saw any.
    pub fn tick(&self, now: i64) -> ProcessOutput {
        let mut out = Output::new();
        let mut emitted = Vec::new();
        let counts = std::mem::take(&mut *self.counts.borrow_mut());
        if !counts.is_empty() {
            let name = out.span(b"level-counts");
            let body = out.span(b"");
            let mut fields = out.object();
            for (level, n) in counts {
                fields.int(level_name(level), n);
            }
            let fields = fields.finish();
            emitted.push(Emit::New(Event {
                name,
                timestamp: Some(now),
                level: Level::Info,
                body,
                fields,
                tags: Range { start: 0, len: 0 },
            }));
        }
        ProcessOutput {
            data: out.finish(),
            events: emitted,
        }
    }
}

#[cfg(target_arch = "wasm32")]
mod component {
    use runnel_plugin_sdk::processor::{Guest, GuestInstance, Instance, ProcessOutput};
    use runnel_plugin_sdk::types::{Batch, Tree};

    struct Plugin;

    impl Guest for Plugin {
        type Instance = super::LevelCounts;
    }

    impl GuestInstance for super::LevelCounts {
        fn create(config: Tree) -> Result<Instance, String> {
            let config = runnel_plugin_sdk::Config::from_tree(&config)?;
            Ok(Instance::new(super::LevelCounts::new(&config)?))
        }

        /// No fields: the level travels anyway.
        fn reads(&self) -> Option<Vec<String>> {
            Some(Vec::new())
        }

        fn process(&self, input: Batch) -> ProcessOutput {
            super::LevelCounts::process(self, &input)
        }

        fn tick(&self, now: i64) -> ProcessOutput {
            super::LevelCounts::tick(self, now)
        }
    }

    runnel_plugin_sdk::export_processor!(Plugin with_types_in runnel_plugin_sdk::bindings::processor);
}

#[cfg(test)]
mod tests {
    use super::*;
    use runnel_plugin_sdk::{BatchBuilder, Value};

    #[test]
    fn counts_levels_until_the_tick() {
        let plugin = LevelCounts::new(&Config::empty()).unwrap();
        let mut builder = BatchBuilder::new();
        builder.event(b"", &Value::Object(vec![])).level(Level::Warn);
        builder.event(b"", &Value::Object(vec![])).level(Level::Info);
        let out = plugin.process(&builder.finish());
        assert_eq!(out.events.len(), 2);
        assert_eq!(plugin.tick(5).events.len(), 1);
        assert!(plugin.tick(6).events.is_empty());
    }
}
