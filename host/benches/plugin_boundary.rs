//! The cost of the WASM boundary: the `combined` parser run as a WebAssembly component
//! through the agent's plugin host, against the very same parsing code compiled natively,
//! at batch sizes 1, 64, 512 (the agent's default) and 1024, on the 10,000 real
//! access-log lines.
//!
//! Run with `cargo bench -p runnel --bench plugin_boundary` (scripts/bench.sh runs it).
//! Columns, all in ns per event:
//! - native: `runnel_plugin_combined::parse_lines` called directly (input built per batch);
//! - wasm call: encode the batch, call the component, lift and check its output;
//! - wasm step: the agent's whole parser step, output applied to host events.

use runnel::event::Event;
use runnel::metrics::PluginCounters;
use runnel::plugin::{Limits, PluginEngine, PluginInstance, Verdict};
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

const ROUNDS: usize = 5;
const MIN_EVENTS_PER_ROUND: usize = 200_000;

fn main() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/data/apache_access/apache_logs"
    );
    let text = std::fs::read_to_string(path).expect("the vendored access log (tests/data)");
    let name: Arc<str> = Arc::from("bench");
    let events: Vec<Event> = text
        .lines()
        .map(|l| Event::from_body(name.clone(), l.as_bytes().to_vec()))
        .collect();

    let engine = PluginEngine::new(Arc::from("bench"), None, runnel::plugin::Backend::Cranelift)
        .expect("engine");
    let builtin = runnel::builtin::find("combined").expect("builtin combined");
    let plugin = engine
        .load(
            "combined",
            builtin.code(),
            &runnel::event::Value::Object(Default::default()),
            Limits::default(),
        )
        .expect("compiles");
    let mut instance = plugin
        .instantiate(Arc::new(PluginCounters::new("bench.combined".into())))
        .expect("instantiates");

    println!(
        "combined parser, ns/event over {} real access-log lines (best of {ROUNDS} rounds)",
        events.len()
    );
    println!(
        "{:>6} {:>10} {:>10} {:>10} {:>14}",
        "batch", "native", "wasm call", "wasm step", "wasm/native"
    );
    for batch in [1usize, 64, 512, 1024] {
        let native = best(|| native_round(&events, batch));
        let call = best(|| call_round(&mut instance, &events, batch));
        let step = best(|| step_round(&mut instance, &events, batch));
        println!(
            "{batch:>6} {native:>10.0} {call:>10.0} {step:>10.0} {:>13.0}%",
            100.0 * native / call
        );
    }
    println!(
        "(wasm/native: the component's throughput as a share of native throughput, wasm call column)"
    );
}

/// The best ns/event of several rounds.
fn best(mut round: impl FnMut() -> (Duration, usize)) -> f64 {
    (0..ROUNDS)
        .map(|_| {
            let (time, n) = round();
            time.as_nanos() as f64 / n as f64
        })
        .fold(f64::INFINITY, f64::min)
}

fn passes(events: &[Event]) -> usize {
    MIN_EVENTS_PER_ROUND.div_ceil(events.len())
}

fn native_round(events: &[Event], batch: usize) -> (Duration, usize) {
    let mut n = 0;
    let start = Instant::now();
    for _ in 0..passes(events) {
        for chunk in events.chunks(batch) {
            let bodies: Vec<&[u8]> = chunk.iter().map(|e| e.body.as_slice()).collect();
            let lines = runnel_plugin_sdk::lines(&bodies);
            let out = runnel_plugin_combined::parse_lines(black_box(&lines));
            n += black_box(out.results.len());
        }
    }
    (start.elapsed(), n)
}

fn call_round(instance: &mut PluginInstance, events: &[Event], batch: usize) -> (Duration, usize) {
    let mut n = 0;
    let start = Instant::now();
    for _ in 0..passes(events) {
        for chunk in events.chunks(batch) {
            n += instance
                .parse_detached(chunk)
                .expect("a parser")
                .expect("call succeeds");
        }
    }
    (start.elapsed(), n)
}

fn step_round(instance: &mut PluginInstance, events: &[Event], batch: usize) -> (Duration, usize) {
    let mut n = 0;
    let mut verdicts = Vec::new();
    let mut elapsed = Duration::ZERO;
    for _ in 0..passes(events) {
        for chunk in events.chunks(batch) {
            let mut fresh = chunk.to_vec();
            let start = Instant::now();
            instance
                .process(&mut fresh, &mut verdicts)
                .expect("call succeeds");
            elapsed += start.elapsed();
            n += verdicts.iter().filter(|v| **v == Verdict::Keep).count();
            black_box(&fresh);
        }
    }
    (elapsed, n)
}
