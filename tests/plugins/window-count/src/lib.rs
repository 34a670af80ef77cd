//! `window-count`: a test fixture processor. Per input event, by its body: `DROP` drops
//! it, `TWICE` keeps it twice, `PATCH` keeps it with the field `patched = true`, any
//! other body keeps it unchanged. Every `tick` emits one new event named `window` with
//! the field `count`: the events seen since the previous tick (none when there were none).
//!
//! Config: none.

use runnel_plugin_sdk::processor::{Emit, ProcessOutput};
use runnel_plugin_sdk::types::{Batch, Event, FieldsUpdate, Level, Patch, Range};
use runnel_plugin_sdk::{Output, events};
use std::cell::Cell;

const NO_TAGS: Range = Range { start: 0, len: 0 };

#[derive(Default)]
pub struct WindowCount {
    seen: Cell<u64>,
}

impl WindowCount {
    pub fn process(&self, batch: &Batch) -> ProcessOutput {
        let mut out = Output::new();
        let mut emitted = Vec::with_capacity(batch.events.len());
        for (i, event) in events(batch).enumerate() {
            self.seen.set(self.seen.get() + 1);
            let i = i as u32;
            match event.body() {
                b"DROP" => {}
                b"TWICE" => emitted.extend([Emit::Keep(i), Emit::Keep(i)]),
                b"PATCH" => {
                    let mut obj = out.object();
                    obj.bool("patched", true);
                    let fields = obj.finish();
                    emitted.push(Emit::Patched((
                        i,
                        Patch {
                            fields: Some(FieldsUpdate::Merge(fields)),
                            tags: NO_TAGS,
                            level: None,
                            timestamp: None,
                            name: None,
                            body: None,
                        },
                    )));
                }
                _ => emitted.push(Emit::Keep(i)),
            }
        }
        ProcessOutput {
            data: out.finish(),
            events: emitted,
        }
    }

    pub fn tick(&self, now: i64) -> ProcessOutput {
        let mut out = Output::new();
        let mut emitted = Vec::new();
        let count = self.seen.replace(0);
        if count > 0 {
            let name = out.span(b"window");
            let body = out.span(b"");
            let mut obj = out.object();
            obj.int("count", count as i64);
            let fields = obj.finish();
            emitted.push(Emit::New(Event {
                name,
                timestamp: Some(now),
                level: Level::Info,
                body,
                fields,
                tags: NO_TAGS,
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
        type Instance = super::WindowCount;
    }

    impl GuestInstance for super::WindowCount {
        fn create(config: Tree) -> Result<Instance, String> {
            runnel_plugin_sdk::Config::from_tree(&config)?.deny_unknown(&[])?;
            Ok(Instance::new(super::WindowCount::default()))
        }

        fn reads(&self) -> Option<Vec<String>> {
            Some(Vec::new())
        }

        fn process(&self, input: Batch) -> ProcessOutput {
            super::WindowCount::process(self, &input)
        }

        fn tick(&self, now: i64) -> ProcessOutput {
            super::WindowCount::tick(self, now)
        }
    }

    runnel_plugin_sdk::export_processor!(Plugin with_types_in runnel_plugin_sdk::bindings::processor);
}

#[cfg(test)]
mod tests {
    use super::*;
    use runnel_plugin_sdk::{BatchBuilder, Value};

    #[test]
    fn markers_choose_what_goes_on_and_ticks_count() {
        let mut b = BatchBuilder::new();
        for body in ["a", "DROP", "TWICE", "PATCH"] {
            b.event(body, &Value::object(Vec::<(&str, Value)>::new()));
        }
        let w = WindowCount::default();
        let out = w.process(&b.finish());
        let kinds: Vec<String> = out
            .events
            .iter()
            .map(|e| match e {
                Emit::Keep(i) => format!("keep {i}"),
                Emit::Patched((i, _)) => format!("patch {i}"),
                Emit::New(_) => "new".into(),
            })
            .collect();
        assert_eq!(kinds, ["keep 0", "keep 2", "keep 2", "patch 3"]);
        assert_eq!(w.tick(7).events.len(), 1);
        assert!(w.tick(8).events.is_empty(), "nothing seen since");
    }
}
