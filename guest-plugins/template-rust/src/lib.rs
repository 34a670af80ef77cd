//! A template for Runnel plugins written in Rust: an interceptor that adds fixed fields
//! to every event and drops events whose body is empty.
//!
//! ```toml
//! [plugins.enrich]
//! path = "target/wasm32-wasip2/release/runnel_plugin_template.wasm"
//! [plugins.enrich.config]
//! fields = { env = "prod", site = "plant-3" }
//! ```
//!
//! Build: `cargo build --release --target wasm32-wasip2 -p runnel-plugin-template`.
//! Try it: `printf 'a\n\nb\n' | runnel plugin test target/.../runnel_plugin_template.wasm
//! --config 'fields = { env = "prod" }'`.
//!
//! The shape to keep: the logic lives in plain functions over the SDK types (so `cargo
//! test` runs it natively), and the `component` module only wires it to the exports.

use runnel_plugin_sdk::interceptor::{Action, InterceptOutput};
use runnel_plugin_sdk::types::{Batch, FieldsUpdate, Patch, Range};
use runnel_plugin_sdk::{Config, Output, Value, events};

/// The configured plugin: built once in `create`, used for every batch.
#[derive(Debug)]
pub struct Enrich {
    fields: Vec<(String, Value)>,
}

impl Enrich {
    pub fn new(config: &Config) -> Result<Self, String> {
        config.deny_unknown(&["fields"])?;
        let fields = config
            .table("fields")?
            .map(<[_]>::to_vec)
            .unwrap_or_default();
        Ok(Self { fields })
    }

    /// One action per input event, in order.
    pub fn intercept(&self, batch: &Batch) -> InterceptOutput {
        let mut out = Output::new();
        // The added fields are the same for every event: write them once and let every
        // patch point at the same tree.
        let added = out.tree(&Value::Object(self.fields.clone()));
        let actions = events(batch)
            .map(|event| {
                if event.body().is_empty() {
                    Action::Drop
                } else {
                    Action::Patch(merge(added))
                }
            })
            .collect();
        InterceptOutput {
            data: out.finish(),
            actions,
        }
    }
}

fn merge(fields: Range) -> Patch {
    Patch {
        fields: Some(FieldsUpdate::Merge(fields)),
        tags: Range { start: 0, len: 0 },
        level: None,
        timestamp: None,
        name: None,
        body: None,
    }
}

#[cfg(target_arch = "wasm32")]
mod component {
    use runnel_plugin_sdk::interceptor::{Guest, GuestInstance, Instance, InterceptOutput};
    use runnel_plugin_sdk::types::{Batch, Tree};

    struct Plugin;

    impl Guest for Plugin {
        type Instance = super::Enrich;
    }

    impl GuestInstance for super::Enrich {
        fn create(config: Tree) -> Result<Instance, String> {
            let config = runnel_plugin_sdk::Config::from_tree(&config)?;
            Ok(Instance::new(super::Enrich::new(&config)?))
        }

        fn intercept(&self, input: Batch) -> InterceptOutput {
            super::Enrich::intercept(self, &input)
        }

        /// The fields this plugin reads, so the host sends only those: none here (it
        /// adds fields and looks at bodies). `None` would send every field.
        fn reads(&self) -> Option<Vec<String>> {
            Some(Vec::new())
        }
    }

    runnel_plugin_sdk::export_interceptor!(Plugin with_types_in runnel_plugin_sdk::bindings::interceptor);
}

#[cfg(test)]
mod tests {
    use super::*;
    use runnel_plugin_sdk::{BatchBuilder, decode_value};

    #[test]
    fn adds_the_configured_fields_and_drops_empty_bodies() {
        let config = Config::from_members(vec![(
            "fields",
            Value::Object(vec![("env".into(), Value::Str("prod".into()))]),
        )]);
        let plugin = Enrich::new(&config).unwrap();
        let mut builder = BatchBuilder::new();
        builder.event(b"hello", &Value::Object(vec![]));
        builder.event(b"", &Value::Object(vec![]));
        let out = plugin.intercept(&builder.finish());
        assert!(matches!(out.actions[1], Action::Drop));
        let Action::Patch(Patch {
            fields: Some(FieldsUpdate::Merge(range)),
            ..
        }) = out.actions[0]
        else {
            panic!("expected a merge patch");
        };
        let added = decode_value(&out.data.arena, &out.data.nodes, range).unwrap();
        assert_eq!(
            added,
            Value::Object(vec![("env".into(), Value::Str("prod".into()))])
        );
    }

    #[test]
    fn unknown_config_keys_are_refused() {
        let config = Config::from_members([("feilds", Value::Null)]);
        assert!(
            Enrich::new(&config)
                .unwrap_err()
                .contains("unknown key `feilds`")
        );
    }
}
