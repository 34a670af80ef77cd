//! The live summary: every interval, a few lines on standard error with what went in and
//! out of every source, plugin step, route, channel and sink, and the errors.

use crate::metrics::Registry;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// When the last summary was rendered, and the counters then.
type LastRender = (Instant, BTreeMap<(String, String), u64>);

#[derive(Clone)]
pub struct Summary {
    interval: Option<Duration>,
    last: Arc<Mutex<LastRender>>,
}

impl Summary {
    pub fn new(interval: Option<Duration>) -> Self {
        Self {
            interval,
            last: Arc::new(Mutex::new((Instant::now(), BTreeMap::new()))),
        }
    }

    pub fn spawn(self) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let Some(interval) = self.interval else {
                return;
            };
            let mut ticker = tokio::time::interval(interval);
            ticker.tick().await;
            loop {
                ticker.tick().await;
                eprint!("{}", self.render("summary"));
            }
        })
    }

    pub fn print_final(&self) {
        if self.interval.is_some() {
            eprint!("{}", self.render("final"));
        }
    }

    /// Renders counters grouped per component, with rates since the last render.
    pub fn render(&self, title: &str) -> String {
        let snapshot = Registry::global().snapshot();
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let elapsed = last.0.elapsed().as_secs_f64().max(1e-9);
        let mut out = format!("── runnel {title} ──\n");
        let mut grouped: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for (component, metric, value) in &snapshot {
            if *value == 0 && metric != "events_out" && metric != "events" {
                continue;
            }
            let prev = last
                .1
                .get(&(component.clone(), metric.clone()))
                .copied()
                .unwrap_or(0);
            let rate = (value - prev.min(*value)) as f64 / elapsed;
            let text = if metric.starts_with("events") && rate > 0.0 {
                format!("{metric}={value} ({rate:.0}/s)")
            } else {
                format!("{metric}={value}")
            };
            grouped.entry(component).or_default().push(text);
        }
        for (component, metrics) in grouped {
            out.push_str(&format!("  {component:<28} {}\n", metrics.join("  ")));
        }
        last.0 = Instant::now();
        last.1 = snapshot.into_iter().map(|(c, m, v)| ((c, m), v)).collect();
        out
    }
}
