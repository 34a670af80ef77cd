//! A Runnel router in Rust: sends events whose `status` field is 500 or more to the
//! route `alerts` (configure the route's channels in the source:
//! `routes = { alerts = [...] }`).
//!
//! Try it: `runnel plugin test PLUGIN.wasm --after combined < access.log`

use runnel_plugin_sdk::types::Batch;
use runnel_plugin_sdk::{Config, NodeValue, events};

/// The configured plugin: built once in `create`, used for every batch.
#[derive(Debug)]
pub struct Alerts {
    min_status: i64,
}

/// The routes, in the order of their bits in a mask.
pub const ROUTES: &[&str] = &["alerts"];

impl Alerts {
    pub fn new(config: &Config) -> Result<Self, String> {
        config.deny_unknown(&["min_status"])?;
        Ok(Self {
            min_status: config.int("min_status")?.unwrap_or(500),
        })
    }

    /// One route mask per event: bit 0 is `alerts`; 0 sends the event to the source's
    /// default channels.
    pub fn route(&self, batch: &Batch) -> Vec<u64> {
        events(batch)
            .map(|event| match event.field(&["status"]).map(|s| s.value()) {
                Some(NodeValue::Int(status)) if status >= self.min_status => 1,
                _ => 0,
            })
            .collect()
    }
}

#[cfg(target_arch = "wasm32")]
mod component {
    use runnel_plugin_sdk::router::{Guest, GuestInstance, Instance};
    use runnel_plugin_sdk::types::{Batch, Tree};

    struct Plugin;

    impl Guest for Plugin {
        type Instance = super::Alerts;
    }

    impl GuestInstance for super::Alerts {
        fn create(config: Tree) -> Result<Instance, String> {
            let config = runnel_plugin_sdk::Config::from_tree(&config)?;
            Ok(Instance::new(super::Alerts::new(&config)?))
        }

        fn routes(&self) -> Vec<String> {
            super::ROUTES.iter().map(|r| r.to_string()).collect()
        }

        fn route(&self, input: Batch) -> Vec<u64> {
            super::Alerts::route(self, &input)
        }

        /// The fields this plugin reads, so the host sends only those (`None`: all).
        fn reads(&self) -> Option<Vec<String>> {
            Some(vec!["status".into()])
        }
    }

    runnel_plugin_sdk::export_router!(Plugin with_types_in runnel_plugin_sdk::bindings::router);
}

#[cfg(test)]
mod tests {
    use super::*;
    use runnel_plugin_sdk::{BatchBuilder, Value};

    #[test]
    fn server_errors_go_to_alerts() {
        let plugin = Alerts::new(&Config::empty()).unwrap();
        let mut builder = BatchBuilder::new();
        for status in [200, 503, 404] {
            builder.event(b"", &Value::Object(vec![("status".into(), Value::Int(status))]));
        }
        assert_eq!(plugin.route(&builder.finish()), vec![0, 1, 0]);
    }
}
