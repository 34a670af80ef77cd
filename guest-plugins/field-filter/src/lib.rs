//! `field-filter`: keeps or drops events by comparing one field with a value.
//!
//! ```toml
//! [plugins.server-errors]
//! builtin = "field-filter"
//! [plugins.server-errors.config]
//! field = "http.status"
//! op = "ge"
//! value = 500
//! action = "keep"
//! ```
//!
//! Only the one field is read from each event (the rest of its fields are skipped, not
//! decoded), so the filter is cheap on hot paths.
//!
//! Config:
//!
//! - `field` (required): a top-level field name, or a dotted path `a.b.c` into nested
//!   objects. When the path leads nowhere, a top-level field literally named `a.b.c` is
//!   used if there is one.
//! - `op` (required): `eq`, `ne`, `lt`, `le`, `gt`, `ge` (numbers numerically, across
//!   integers and floats; strings by bytes; booleans with `eq`/`ne` only), `contains`
//!   and `prefix` (string fields only), `exists` and `missing` (any type, `null` too).
//!   A field of another kind than the value does not match, except with `ne`, which
//!   matches every present field that is not equal.
//! - `value` (required except for `exists` and `missing`, where it is not allowed): an
//!   integer, float, string or boolean.
//! - `action` (default `"keep"`): `"keep"` keeps the matching events and drops the rest;
//!   `"drop"` drops the matching events and keeps the rest.
//!
//! An event without the field does not match (except with `missing`).
//!
//! Fields: none are written; actions are keep or drop only.

pub mod predicate;

use predicate::Predicate;
use runnel_plugin_sdk::interceptor::{Action, InterceptOutput};
use runnel_plugin_sdk::types::{Batch, Nodes, OutputData};
use runnel_plugin_sdk::{Config, EventRef, events};

/// The config keys.
const KEYS: &[&str] = &["field", "op", "value", "action"];

/// A configured filter.
#[derive(Debug, Clone)]
pub struct FieldFilter {
    /// The config `field` as written.
    name: String,
    /// `name` split on dots.
    path: Vec<String>,
    predicate: Predicate,
    /// Drop the matching events (`action = "drop"`) rather than keep them.
    drop_matching: bool,
}

impl FieldFilter {
    /// Reads the config; errors name the offending key.
    pub fn new(config: &Config) -> Result<Self, String> {
        Self::build(config).map_err(|e| format!("field-filter: {e}"))
    }

    fn build(config: &Config) -> Result<Self, String> {
        config.deny_unknown(KEYS)?;
        let name = config.str("field")?.ok_or("config: `field` is required")?;
        let path: Vec<String> = name.split('.').map(str::to_owned).collect();
        if path.iter().any(String::is_empty) {
            return Err(format!(
                "config: `field` must be a name or a dotted path like a.b.c, got `{name}`"
            ));
        }
        let op = config.str("op")?.ok_or("config: `op` is required")?;
        let predicate = Predicate::new(op, config.get("value"))?;
        let drop_matching = match config.str("action")?.unwrap_or("keep") {
            "keep" => false,
            "drop" => true,
            other => {
                return Err(format!(
                    "config: `action` must be \"keep\" or \"drop\", got `{other}`"
                ));
            }
        };
        Ok(Self {
            name: name.to_owned(),
            path,
            predicate,
            drop_matching,
        })
    }

    /// One keep or drop per event of `batch`.
    /// The top-level fields the filter looks at: the path's first name, and the whole
    /// name (a top-level field literally named `a.b.c`).
    pub fn reads(&self) -> Vec<String> {
        let mut names = vec![self.path[0].clone()];
        if self.name != self.path[0] {
            names.push(self.name.clone());
        }
        names
    }

    pub fn intercept(&self, batch: &Batch) -> InterceptOutput {
        InterceptOutput {
            data: OutputData {
                arena: Vec::new(),
                nodes: Nodes::new(),
                tags: Vec::new(),
            },
            actions: events(batch).map(|event| self.action(event)).collect(),
        }
    }

    /// Whether the event matches.
    pub fn matches(&self, event: EventRef<'_>) -> bool {
        let node = event.field(&self.path).or_else(|| {
            // A top-level member whose name holds the dots.
            (self.path.len() > 1)
                .then(|| event.fields()?.get(&self.name))
                .flatten()
        });
        let found = node.map(|n| (n.value(), n.as_bytes().unwrap_or_default()));
        self.predicate
            .matches(found.as_ref().map(|(value, bytes)| (value, *bytes)))
    }

    fn action(&self, event: EventRef<'_>) -> Action {
        if self.matches(event) != self.drop_matching {
            Action::Keep
        } else {
            Action::Drop
        }
    }
}

#[cfg(target_arch = "wasm32")]
mod component {
    use runnel_plugin_sdk::interceptor::{Guest, GuestInstance, Instance, InterceptOutput};
    use runnel_plugin_sdk::types::{Batch, Tree};

    struct Plugin;

    impl Guest for Plugin {
        type Instance = super::FieldFilter;
    }

    impl GuestInstance for super::FieldFilter {
        fn create(config: Tree) -> Result<Instance, String> {
            let config = runnel_plugin_sdk::Config::from_tree(&config)
                .map_err(|e| format!("field-filter: {e}"))?;
            Ok(Instance::new(super::FieldFilter::new(&config)?))
        }

        fn intercept(&self, input: Batch) -> InterceptOutput {
            super::FieldFilter::intercept(self, &input)
        }

        fn reads(&self) -> Option<Vec<String>> {
            Some(super::FieldFilter::reads(self))
        }
    }

    runnel_plugin_sdk::export_interceptor!(Plugin with_types_in runnel_plugin_sdk::bindings::interceptor);
}

#[cfg(test)]
mod tests;
