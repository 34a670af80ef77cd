//! Counters: one registry for the agent, keyed by component and metric name. Components
//! look their counters up once, when they are built, and then only add to atomics.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// A monotonically increasing count.
#[derive(Clone, Debug, Default)]
pub struct Counter(Arc<AtomicU64>);

impl Counter {
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// The agent's counters, keyed by (component, metric). Components are named
/// `kind.name` (`source.web`, `step.web.combined`, `channel.main`, `sink.out`,
/// `route.web.error`).
#[derive(Default)]
pub struct Registry {
    counters: Mutex<BTreeMap<(String, String), Counter>>,
}

impl Registry {
    /// The process-wide registry.
    pub fn global() -> &'static Registry {
        static GLOBAL: OnceLock<Registry> = OnceLock::new();
        GLOBAL.get_or_init(Registry::default)
    }

    /// The counter `metric` of `component`, created at zero on first use.
    pub fn counter(&self, component: &str, metric: &str) -> Counter {
        let mut counters = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        counters
            .entry((component.to_owned(), metric.to_owned()))
            .or_default()
            .clone()
    }

    /// Every counter and its value, sorted by component then metric.
    pub fn snapshot(&self) -> Vec<(String, String, u64)> {
        let counters = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        counters
            .iter()
            .map(|((c, m), v)| (c.clone(), m.clone(), v.get()))
            .collect()
    }
}

/// Distinct counter names one plugin step may create; more go to `plugin.overflow`.
const MAX_PLUGIN_COUNTERS: usize = 256;
/// Longest counter name a plugin may use; longer ones go to `plugin.overflow`.
const MAX_COUNTER_NAME: usize = 128;

/// The counters a plugin bumps through `host.counter`, reported as
/// `plugin.<name>` metrics of its step. A plugin cannot grow the registry without
/// bound: names are capped in number and length.
pub struct PluginCounters {
    component: String,
    cache: Mutex<BTreeMap<String, Counter>>,
}

impl PluginCounters {
    pub fn new(component: String) -> Self {
        Self {
            component,
            cache: Mutex::new(BTreeMap::new()),
        }
    }

    pub fn add(&self, name: &str, delta: u64) {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(counter) = cache.get(name) {
            counter.add(delta);
            return;
        }
        if cache.len() >= MAX_PLUGIN_COUNTERS || name.len() > MAX_COUNTER_NAME {
            Registry::global()
                .counter(&self.component, "plugin.overflow")
                .add(delta);
            return;
        }
        let counter = Registry::global().counter(&self.component, &format!("plugin.{name}"));
        counter.add(delta);
        cache.insert(name.to_owned(), counter);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_counter_names_are_capped() {
        let counters = PluginCounters::new("step.test.capped".into());
        for i in 0..MAX_PLUGIN_COUNTERS + 10 {
            counters.add(&format!("n{i}"), 1);
        }
        counters.add(&"x".repeat(MAX_COUNTER_NAME + 1), 5);
        let snapshot = Registry::global().snapshot();
        let mine: Vec<_> = snapshot
            .iter()
            .filter(|(c, _, _)| c == "step.test.capped")
            .collect();
        assert_eq!(mine.len(), MAX_PLUGIN_COUNTERS + 1);
        assert!(
            mine.iter()
                .any(|(_, m, v)| m == "plugin.overflow" && *v == 15)
        );
    }

    #[test]
    fn counters_are_shared_by_key() {
        let registry = Registry::default();
        registry.counter("sink.a", "events").add(2);
        registry.counter("sink.a", "events").add(3);
        assert_eq!(registry.counter("sink.a", "events").get(), 5);
        assert_eq!(
            registry.snapshot(),
            vec![("sink.a".into(), "events".into(), 5)]
        );
    }
}
