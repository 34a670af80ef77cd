//! A Runnel interceptor in Rust: keeps the events whose `status` field is at least
//! `min_status` (default 400) and adds `class` = "client" (4xx) or "server" (5xx and up).
//! The same plugin as the Python template's, so the two can be compared.
//!
//! Build: `./build.sh` (in a project made by `runnel plugin new --lang rust`), or
//! `cargo build --release --target wasm32-wasip2 -p runnel-plugin-template` here.
//! Try it: `runnel plugin test PLUGIN.wasm --after combined < access.log`.
//!
//! The shape to keep: the logic lives in plain functions over the SDK types (so `cargo
//! test` runs it natively), and the `component` module only wires it to the exports.

use runnel_plugin_sdk::interceptor::{Action, InterceptOutput};
use runnel_plugin_sdk::types::{Batch, Range};
use runnel_plugin_sdk::{Config, NodeValue, Output, events, merge_patch};

/// The configured plugin: built once in `create`, used for every batch.
#[derive(Debug)]
pub struct StatusClass {
    min_status: i64,
}

impl StatusClass {
    pub fn new(config: &Config) -> Result<Self, String> {
        config.deny_unknown(&["min_status"])?;
        Ok(Self {
            min_status: config.int("min_status")?.unwrap_or(400),
        })
    }

    /// One action per input event, in order.
    pub fn intercept(&self, batch: &Batch) -> InterceptOutput {
        let mut out = Output::new();
        // Two possible additions: write each once, and point every patch at one of them.
        let client = class(&mut out, "client");
        let server = class(&mut out, "server");
        let actions = events(batch)
            .map(|event| match event.field(&["status"]).map(|s| s.value()) {
                Some(NodeValue::Int(status)) if status >= self.min_status => {
                    Action::Patch(merge_patch(if status < 500 { client } else { server }))
                }
                _ => Action::Drop,
            })
            .collect();
        InterceptOutput {
            data: out.finish(),
            actions,
        }
    }
}

/// The object `{"class": value}` in `out`.
fn class(out: &mut Output, value: &str) -> Range {
    let mut object = out.object();
    object.str("class", value);
    object.finish()
}

#[cfg(target_arch = "wasm32")]
mod component {
    use runnel_plugin_sdk::interceptor::{Guest, GuestInstance, Instance, InterceptOutput};
    use runnel_plugin_sdk::types::{Batch, Tree};

    struct Plugin;

    impl Guest for Plugin {
        type Instance = super::StatusClass;
    }

    impl GuestInstance for super::StatusClass {
        fn create(config: Tree) -> Result<Instance, String> {
            let config = runnel_plugin_sdk::Config::from_tree(&config)?;
            Ok(Instance::new(super::StatusClass::new(&config)?))
        }

        fn intercept(&self, input: Batch) -> InterceptOutput {
            super::StatusClass::intercept(self, &input)
        }

        /// The fields this plugin reads, so the host sends only those (`None`: all).
        fn reads(&self) -> Option<Vec<String>> {
            Some(vec!["status".into()])
        }
    }

    runnel_plugin_sdk::export_interceptor!(Plugin with_types_in runnel_plugin_sdk::bindings::interceptor);
}

#[cfg(test)]
mod tests {
    use super::*;
    use runnel_plugin_sdk::types::{FieldsUpdate, Patch};
    use runnel_plugin_sdk::{BatchBuilder, Value, decode_value};

    fn status(code: i64) -> Value {
        Value::Object(vec![("status".into(), Value::Int(code))])
    }

    #[test]
    fn keeps_errors_with_their_class_and_drops_the_rest() {
        let plugin = StatusClass::new(&Config::empty()).unwrap();
        let mut builder = BatchBuilder::new();
        builder.event(b"a", &status(200));
        builder.event(b"b", &status(404));
        builder.event(b"c", &status(503));
        builder.event(b"d", &Value::Object(vec![]));
        let out = plugin.intercept(&builder.finish());
        let classes: Vec<Option<Value>> = out
            .actions
            .iter()
            .map(|a| match a {
                Action::Drop => None,
                Action::Patch(Patch {
                    fields: Some(FieldsUpdate::Merge(range)),
                    ..
                }) => Some(decode_value(&out.data.arena, &out.data.nodes, *range).unwrap()),
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        let class = |c: &str| Some(Value::Object(vec![("class".into(), Value::Str(c.into()))]));
        assert_eq!(classes, vec![None, class("client"), class("server"), None]);
    }

    #[test]
    fn unknown_config_keys_are_refused() {
        let config = Config::from_members([("min_stauts", Value::Int(1))]);
        assert!(
            StatusClass::new(&config)
                .unwrap_err()
                .contains("unknown key `min_stauts`")
        );
    }
}
