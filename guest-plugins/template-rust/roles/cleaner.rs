//! A Runnel cleaner in Rust: masks the fields named in `fields` (default: `user` and
//! `password`), keeping their last `keep` characters (default 0).
//!
//! Try it: `echo '{"fields":{"user":"ann","n":1}}' | runnel plugin test PLUGIN.wasm --events-json`

use runnel_plugin_sdk::cleaner::CleanOutput;
use runnel_plugin_sdk::types::Batch;
use runnel_plugin_sdk::{Config, Output, events, merge_patch};

/// The configured plugin: built once in `create`, used for every batch.
#[derive(Debug)]
pub struct Mask {
    fields: Vec<String>,
    keep: usize,
}

impl Mask {
    pub fn new(config: &Config) -> Result<Self, String> {
        config.deny_unknown(&["fields", "keep"])?;
        Ok(Self {
            fields: config
                .strings("fields")?
                .unwrap_or_else(|| vec!["user".into(), "password".into()]),
            keep: config.int("keep")?.unwrap_or(0).max(0) as usize,
        })
    }

    /// The fields this plugin reads (the host sends only those).
    pub fn reads(&self) -> Vec<String> {
        self.fields.clone()
    }

    /// One patch (or none) per event, in order.
    pub fn clean(&self, batch: &Batch) -> CleanOutput {
        let mut out = Output::new();
        let patches = events(batch)
            .map(|event| {
                let masked: Vec<(&str, String)> = self
                    .fields
                    .iter()
                    .filter_map(|name| {
                        let value = event.field(&[name])?.as_str()?;
                        let chars = value.chars().count();
                        let tail: String = value.chars().skip(chars.saturating_sub(self.keep)).collect();
                        let hidden = chars - tail.chars().count();
                        Some((name.as_str(), "*".repeat(hidden) + &tail))
                    })
                    .collect();
                if masked.is_empty() {
                    return None;
                }
                let mut fields = out.object();
                for (name, value) in &masked {
                    fields.str(*name, value);
                }
                Some(merge_patch(fields.finish()))
            })
            .collect();
        CleanOutput {
            data: out.finish(),
            patches,
        }
    }
}

#[cfg(target_arch = "wasm32")]
mod component {
    use runnel_plugin_sdk::cleaner::{CleanOutput, Guest, GuestInstance, Instance};
    use runnel_plugin_sdk::types::{Batch, Tree};

    struct Plugin;

    impl Guest for Plugin {
        type Instance = super::Mask;
    }

    impl GuestInstance for super::Mask {
        fn create(config: Tree) -> Result<Instance, String> {
            let config = runnel_plugin_sdk::Config::from_tree(&config)?;
            Ok(Instance::new(super::Mask::new(&config)?))
        }

        fn clean(&self, input: Batch) -> CleanOutput {
            super::Mask::clean(self, &input)
        }

        fn reads(&self) -> Option<Vec<String>> {
            Some(super::Mask::reads(self))
        }
    }

    runnel_plugin_sdk::export_cleaner!(Plugin with_types_in runnel_plugin_sdk::bindings::cleaner);
}

#[cfg(test)]
mod tests {
    use super::*;
    use runnel_plugin_sdk::{BatchBuilder, Value};

    #[test]
    fn named_text_fields_are_masked() {
        let plugin = Mask::new(&Config::empty()).unwrap();
        let mut builder = BatchBuilder::new();
        builder.event(b"", &Value::Object(vec![("user".into(), Value::Str("ann".into()))]));
        builder.event(b"", &Value::Object(vec![("n".into(), Value::Int(1))]));
        let out = plugin.clean(&builder.finish());
        assert!(out.patches[0].is_some());
        assert!(out.patches[1].is_none());
    }
}
