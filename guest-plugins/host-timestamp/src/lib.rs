//! `host-timestamp`: Flume's host and timestamp interceptors in one.
//!
//! Every event gets the tag `host` (or the name in `tag`) set to the name of the host the
//! agent runs on, and events without a timestamp get the time the batch passed through
//! the plugin (nanoseconds since the Unix epoch, from the host's clock). Events that
//! already carry both are kept as they are.
//!
//! Fields: none are read or written.
//!
//! Config (all optional):
//!
//! - `tag` (string, default `"host"`): the tag to set.
//! - `hostname` (string): the value to set instead of the agent's host name.
//! - `overwrite` (bool, default false): replace timestamps that events already have.

use runnel_plugin_sdk::interceptor::{Action, InterceptOutput};
use runnel_plugin_sdk::types::{Batch, Patch, Range};
use runnel_plugin_sdk::{Config, EventRef, Output, events};

/// The config keys.
const KEYS: &[&str] = &["tag", "hostname", "overwrite"];

const NO_TAGS: Range = Range { start: 0, len: 0 };

/// A configured interceptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostTimestamp {
    tag: String,
    hostname: String,
    overwrite: bool,
}

impl HostTimestamp {
    /// Reads the config; `host_name` is asked for the host's name only when the config
    /// does not set `hostname`. Errors name the offending key.
    pub fn new(config: &Config, host_name: impl FnOnce() -> String) -> Result<Self, String> {
        Self::build(config, host_name).map_err(|e| format!("host-timestamp: {e}"))
    }

    fn build(config: &Config, host_name: impl FnOnce() -> String) -> Result<Self, String> {
        config.deny_unknown(KEYS)?;
        let tag = non_empty(config, "tag")?.unwrap_or("host").to_owned();
        let hostname = match non_empty(config, "hostname")? {
            Some(name) => name.to_owned(),
            None => host_name(),
        };
        if hostname.is_empty() {
            return Err("the agent reports an empty host name; set `hostname`".into());
        }
        Ok(Self {
            tag,
            hostname,
            overwrite: config.bool("overwrite")?.unwrap_or(false),
        })
    }

    /// One action per event of `batch`; `now` is the batch's time in nanoseconds.
    pub fn intercept(&self, batch: &Batch, now: i64) -> InterceptOutput {
        let mut out = Output::new();
        let mut host_tag = None;
        let actions = events(batch)
            .map(|event| {
                let tag = self.needs_tag(event);
                let timestamp = self.needs_timestamp(event, now);
                if !tag && timestamp.is_none() {
                    return Action::Keep;
                }
                let tags = if tag {
                    // Every patch shares the one tag written for the batch.
                    *host_tag.get_or_insert_with(|| {
                        out.tags([(self.tag.as_str(), self.hostname.as_str())])
                    })
                } else {
                    NO_TAGS
                };
                Action::Patch(Patch {
                    fields: None,
                    tags,
                    level: None,
                    timestamp,
                    name: None,
                    body: None,
                })
            })
            .collect();
        InterceptOutput {
            data: out.finish(),
            actions,
        }
    }

    fn needs_tag(&self, event: EventRef<'_>) -> bool {
        event.tag(&self.tag) != Some(self.hostname.as_bytes())
    }

    /// The timestamp to set, if any.
    fn needs_timestamp(&self, event: EventRef<'_>, now: i64) -> Option<i64> {
        match event.timestamp() {
            None => Some(now),
            Some(ts) if self.overwrite && ts != now => Some(now),
            Some(_) => None,
        }
    }
}

/// A string config value that, when set, is not empty.
fn non_empty<'c>(config: &'c Config, key: &str) -> Result<Option<&'c str>, String> {
    match config.str(key)? {
        Some("") => Err(format!("config: `{key}` must not be empty")),
        value => Ok(value),
    }
}

#[cfg(target_arch = "wasm32")]
mod component {
    use runnel_plugin_sdk::host;
    use runnel_plugin_sdk::interceptor::{Guest, GuestInstance, Instance, InterceptOutput};
    use runnel_plugin_sdk::types::{Batch, Tree};

    struct Plugin;

    impl Guest for Plugin {
        type Instance = super::HostTimestamp;
    }

    impl GuestInstance for super::HostTimestamp {
        fn create(config: Tree) -> Result<Instance, String> {
            let config = runnel_plugin_sdk::Config::from_tree(&config)
                .map_err(|e| format!("host-timestamp: {e}"))?;
            Ok(Instance::new(super::HostTimestamp::new(
                &config,
                host::hostname,
            )?))
        }

        fn intercept(&self, input: Batch) -> InterceptOutput {
            super::HostTimestamp::intercept(self, &input, host::now())
        }

        /// No fields: only tags and timestamps are looked at.
        fn reads(&self) -> Option<Vec<String>> {
            Some(Vec::new())
        }
    }

    runnel_plugin_sdk::export_interceptor!(Plugin with_types_in runnel_plugin_sdk::bindings::interceptor);
}

#[cfg(test)]
mod tests {
    use super::*;
    use runnel_plugin_sdk::{BatchBuilder, Value, span_str};

    const NOW: i64 = 1_714_557_600_000_000_000;

    fn config(members: Vec<(&str, Value)>) -> Config {
        Config::from_members(members)
    }

    fn plugin(members: Vec<(&str, Value)>) -> HostTimestamp {
        HostTimestamp::new(&config(members), || "gw-7".to_owned()).expect("valid config")
    }

    /// An action decoded: `None` for keep, otherwise the tags and timestamp it sets.
    type Change = Option<(Vec<(String, String)>, Option<i64>)>;

    fn changes(output: &InterceptOutput) -> Vec<Change> {
        let data = &output.data;
        output
            .actions
            .iter()
            .map(|action| match action {
                Action::Keep => None,
                Action::Drop => panic!("host-timestamp never drops"),
                Action::Patch(p) => {
                    assert!(p.fields.is_none() && p.level.is_none());
                    assert!(p.name.is_none() && p.body.is_none());
                    let start = p.tags.start as usize;
                    let tags = data.tags[start..start + p.tags.len as usize]
                        .iter()
                        .map(|t| {
                            (
                                span_str(&data.arena, t.key).into_owned(),
                                span_str(&data.arena, t.value).into_owned(),
                            )
                        })
                        .collect();
                    Some((tags, p.timestamp))
                }
            })
            .collect()
    }

    fn host(tag: &str, value: &str) -> Vec<(String, String)> {
        vec![(tag.to_owned(), value.to_owned())]
    }

    fn sample_batch() -> Batch {
        let mut b = BatchBuilder::new();
        let fields = Value::Object(vec![]);
        b.event("no tag, no time", &fields);
        b.event("tag and time", &fields)
            .tag("host", "gw-7")
            .timestamp(5);
        b.event("other host, time", &fields)
            .tag("host", "db-1")
            .timestamp(6);
        b.event("tag, no time", &fields)
            .tag("env", "prod")
            .tag("host", "gw-7");
        b.finish()
    }

    #[test]
    fn sets_host_tag_and_missing_timestamps() {
        let out = plugin(vec![]).intercept(&sample_batch(), NOW);
        assert_eq!(
            changes(&out),
            vec![
                Some((host("host", "gw-7"), Some(NOW))),
                None,
                Some((host("host", "gw-7"), None)),
                Some((vec![], Some(NOW))),
            ]
        );
        // The tag is written once and shared by the patches.
        assert_eq!(out.data.tags.len(), 1);
    }

    #[test]
    fn overwrite_replaces_every_timestamp() {
        let out = plugin(vec![("overwrite", Value::Bool(true))]).intercept(&sample_batch(), NOW);
        assert_eq!(
            changes(&out),
            vec![
                Some((host("host", "gw-7"), Some(NOW))),
                Some((vec![], Some(NOW))),
                Some((host("host", "gw-7"), Some(NOW))),
                Some((vec![], Some(NOW))),
            ]
        );
        let mut b = BatchBuilder::new();
        b.event("already now", &Value::Null)
            .timestamp(NOW)
            .tag("host", "gw-7");
        assert_eq!(
            changes(&plugin(vec![("overwrite", Value::Bool(true))]).intercept(&b.finish(), NOW)),
            vec![None]
        );
    }

    #[test]
    fn tag_name_and_hostname_come_from_config() {
        let mut asked = false;
        let p = HostTimestamp::new(
            &config(vec![
                ("tag", Value::Str("agent".into())),
                ("hostname", Value::Str("edge-3".into())),
            ]),
            || {
                asked = true;
                "unused".to_owned()
            },
        )
        .unwrap();
        assert!(!asked, "the host is not asked when `hostname` is set");
        let out = p.intercept(&sample_batch(), NOW);
        assert_eq!(
            changes(&out),
            vec![
                Some((host("agent", "edge-3"), Some(NOW))),
                Some((host("agent", "edge-3"), None)),
                Some((host("agent", "edge-3"), None)),
                Some((host("agent", "edge-3"), Some(NOW))),
            ]
        );
    }

    #[test]
    fn unchanged_batches_write_nothing() {
        let mut b = BatchBuilder::new();
        for i in 0..10 {
            b.event("x", &Value::Null).timestamp(i).tag("host", "gw-7");
        }
        let out = plugin(vec![]).intercept(&b.finish(), NOW);
        assert!(out.actions.iter().all(|a| matches!(a, Action::Keep)));
        assert!(out.data.tags.is_empty() && out.data.arena.is_empty());
        assert!(
            plugin(vec![])
                .intercept(&BatchBuilder::new().finish(), NOW)
                .actions
                .is_empty()
        );
    }

    #[test]
    fn bad_config_names_the_key() {
        let err = |members| HostTimestamp::new(&config(members), || "h".into()).unwrap_err();
        assert!(
            err(vec![("host", Value::Null)])
                .starts_with("host-timestamp: config: unknown key `host`")
        );
        assert_eq!(
            err(vec![("tag", Value::Str(String::new()))]),
            "host-timestamp: config: `tag` must not be empty"
        );
        assert_eq!(
            err(vec![("hostname", Value::Int(1))]),
            "host-timestamp: config: `hostname` must be a string, got integer"
        );
        assert_eq!(
            err(vec![("overwrite", Value::Str("yes".into()))]),
            "host-timestamp: config: `overwrite` must be a boolean, got string"
        );
        assert_eq!(
            HostTimestamp::new(&Config::empty(), String::new).unwrap_err(),
            "host-timestamp: the agent reports an empty host name; set `hostname`"
        );
    }
}
