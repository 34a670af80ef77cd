//! Channel throughput: one producer task putting batches and one consumer task taking
//! (limits = the batch size) and committing, concurrently, on a 2-worker multi-thread
//! tokio runtime. Channels: memory, and file with `fsync = "batch"` (an fsync per put),
//! `"interval"` (the default 1 s) and `"never"`. Events are the 10,000 real access-log
//! lines (`tests/data/apache_access/apache_logs`) as bodies only ("raw"), and the same
//! lines after the `combined` parser ("parsed": body plus the parser's fields; parsed in
//! chunks of the batch size, so that a put is one parser call's output, as in the
//! agent). `rec B/ev`: the file channel's record bytes per event.
//!
//! Run with `cargo bench -p runnel --bench channel` (`-- TEXT`: only the rows whose
//! "channel events batch" label contains TEXT, e.g. `-- "never parsed"`).
//! Each row is the best of 3 rounds; a round is 200,000 events, or fewer when 200,000
//! would take more than `MAX_ROUND` (fsync per put of small batches): the `events`
//! column says how many. The batches are built before the clock starts; the consumer
//! drops what it takes (after commit), as a sink does. MB/s counts body bytes only
//! (10^6 bytes). The file channels live under `target/bench/channel` (the repo's
//! filesystem, printed) and are wiped before each round. A memcpy of the same body bytes
//! is measured in the same run as a machine-independent reference.

use runnel::channel::file::FileChannelConfig;
use runnel::channel::{Capacity, Channel, ChannelConfig, FullPolicy, MemoryChannel, TakeLimits};
use runnel::event::Event;
use runnel::metrics::PluginCounters;
use runnel::plugin::{Limits, PluginEngine, Verdict};
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

const ROUNDS: usize = 3;
const EVENTS_PER_ROUND: usize = 200_000;
/// A round stops putting after this long (it then has fewer events than above).
const MAX_ROUND: Duration = Duration::from_secs(3);
const TAKE_TIMEOUT: Duration = Duration::from_millis(10);

#[derive(Clone, Copy)]
enum Kind {
    Memory,
    File(&'static str),
}

impl Kind {
    fn label(self) -> String {
        match self {
            Kind::Memory => "memory".to_owned(),
            Kind::File(fsync) => format!("file fsync={fsync}"),
        }
    }
}

struct Outcome {
    events: usize,
    bytes: usize,
    time: Duration,
}

fn main() {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(manifest.join("../tests/data/apache_access/apache_logs"))
        .expect("the vendored access log (tests/data)");
    let name: Arc<str> = Arc::from("bench");
    let raw: Vec<Event> = text
        .lines()
        .map(|l| Event::from_body(name.clone(), l.as_bytes().to_vec()))
        .collect();
    // As in the agent, a put is one parser call's output: the lines are parsed in
    // chunks of the batch size (10,000 lines: the chunks line up with the puts).
    let parsed: std::collections::HashMap<usize, Vec<Event>> =
        [100, 1000].map(|batch| (batch, parse(&raw, batch))).into();
    let work = manifest.join("../target/bench/channel");
    std::fs::create_dir_all(&work).expect("target/bench/channel");
    let work = work.canonicalize().expect("canonical path");

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");

    println!(
        "channel put+take+commit, 1 producer + 1 consumer task, {}-worker tokio runtime; best of {ROUNDS} rounds",
        2
    );
    println!(
        "events: {} real access-log lines, {:.0} body bytes/event on average",
        raw.len(),
        raw.iter().map(|e| e.body.len()).sum::<usize>() as f64 / raw.len() as f64
    );
    println!(
        "file channels in {} ({})",
        work.display(),
        filesystem_of(&work)
    );
    let (gbps, copied) = memcpy_reference(&raw);
    println!(
        "reference: memcpy of the same body bytes ({:.0} MB per copy): {gbps:.2} GB/s",
        copied as f64 / 1e6
    );
    println!();
    println!(
        "{:<20} {:<7} {:>6} {:>9} {:>12} {:>9} {:>9} {:>10}",
        "channel", "events", "batch", "n/round", "events/s", "MB/s", "ns/event", "rec B/ev"
    );
    // `cargo bench -p runnel --bench channel -- TEXT` runs only the rows whose
    // "channel events batch" label contains TEXT (e.g. `never parsed`).
    let filter = std::env::args().skip(1).find(|a| !a.starts_with("--"));
    let kinds = [
        Kind::Memory,
        Kind::File("batch"),
        Kind::File("interval"),
        Kind::File("never"),
    ];
    for parsed_events in [false, true] {
        for kind in kinds {
            for batch in [100usize, 1000] {
                let (events_label, events) = if parsed_events {
                    ("parsed", &parsed[&batch])
                } else {
                    ("raw", &raw)
                };
                let row = format!("{} {events_label} {batch}", kind.label());
                if !filter.as_ref().is_none_or(|f| row.contains(f.as_str())) {
                    continue;
                }
                let mut best: Option<Outcome> = None;
                for round in 0..ROUNDS {
                    let out = runtime.block_on(run_round(kind, events, batch, &work, round));
                    if best
                        .as_ref()
                        .is_none_or(|b| rate(out.events, out.time) > rate(b.events, b.time))
                    {
                        best = Some(out);
                    }
                }
                let best = best.expect("rounds ran");
                let secs = best.time.as_secs_f64();
                let record = match kind {
                    Kind::Memory => "-".to_owned(),
                    Kind::File(_) => format!("{:.0}", record_bytes_per_event(events, batch)),
                };
                println!(
                    "{:<20} {:<7} {:>6} {:>9} {:>12.0} {:>9.1} {:>9.0} {record:>10}",
                    kind.label(),
                    events_label,
                    batch,
                    best.events,
                    best.events as f64 / secs,
                    best.bytes as f64 / secs / 1e6,
                    secs * 1e9 / best.events as f64,
                );
            }
        }
    }
    let _ = std::fs::remove_dir_all(&work);
}

fn rate(events: usize, time: Duration) -> f64 {
    events as f64 / time.as_secs_f64()
}

/// The lines after the `combined` parser (as the agent's parser step leaves them).
fn parse(raw: &[Event], chunk: usize) -> Vec<Event> {
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
    let mut out = Vec::with_capacity(raw.len());
    let mut verdicts = Vec::new();
    for part in raw.chunks(chunk) {
        let mut fresh = part.to_vec();
        instance
            .process(&mut fresh, &mut verdicts)
            .expect("call succeeds");
        out.extend(
            fresh
                .into_iter()
                .zip(&verdicts)
                .filter(|(_, v)| **v == Verdict::Keep)
                .map(|(e, _)| e),
        );
    }
    assert_eq!(out.len(), raw.len(), "the parser keeps every line");
    out
}

/// The file channel's record bytes per event (its codec) for puts of `batch` events.
fn record_bytes_per_event(events: &[Event], batch: usize) -> f64 {
    let mut encoder = runnel::channel::file::codec::Encoder::default();
    let mut out = Vec::new();
    for part in events.chunks(batch) {
        encoder.encode(part, None, &mut out);
    }
    out.len() as f64 / events.len() as f64
}

fn build(kind: Kind, dir: &Path, data_dir: &Path) -> Channel {
    match kind {
        Kind::Memory => Channel::new(MemoryChannel::new(
            "bench",
            // The memory channel's defaults (`capacity`, `capacity_bytes`).
            Capacity {
                events: 10_000,
                bytes: 16 << 20,
            },
            FullPolicy::Block,
        )),
        Kind::File(fsync) => {
            let text = format!("fsync = \"{fsync}\"\ndir = \"{}\"", dir.display());
            toml::from_str::<FileChannelConfig>(&text)
                .expect("file channel config")
                .build("bench", data_dir)
                .expect("file channel opens")
        }
    }
}

async fn run_round(
    kind: Kind,
    events: &[Event],
    batch: usize,
    work: &Path,
    round: usize,
) -> Outcome {
    let dir: PathBuf = work.join(format!("round-{round}"));
    let _ = std::fs::remove_dir_all(&dir);
    let channel = build(kind, &dir, work);
    // The batches, built before the clock starts.
    let batches: Vec<Vec<Event>> = (0..EVENTS_PER_ROUND.div_ceil(batch))
        .map(|i| {
            (0..batch)
                .map(|j| events[(i * batch + j) % events.len()].clone())
                .collect()
        })
        .collect();

    let start = Instant::now();
    let producer = {
        let channel = channel.clone();
        tokio::spawn(async move {
            for b in batches {
                channel.put(b).await.expect("put");
                if start.elapsed() >= MAX_ROUND {
                    break;
                }
            }
            channel.close();
        })
    };
    let consumer = {
        let channel = channel.clone();
        tokio::spawn(async move {
            let limits = TakeLimits {
                events: batch,
                bytes: usize::MAX / 2,
            };
            let (mut n, mut bytes) = (0usize, 0usize);
            loop {
                let take = channel.take(limits, TAKE_TIMEOUT).await;
                if take.is_empty() {
                    break;
                }
                n += take.len();
                bytes += take.events().iter().map(|e| e.body.len()).sum::<usize>();
                take.commit();
            }
            (n, bytes)
        })
    };
    producer.await.expect("producer");
    let (n, bytes) = consumer.await.expect("consumer");
    let time = start.elapsed();
    drop(channel);
    let _ = std::fs::remove_dir_all(&dir);
    Outcome {
        events: n,
        bytes,
        time,
    }
}

/// GB/s of copying the body bytes of one round's worth of events (contiguous, into a
/// buffer already touched), best of several copies; and the bytes per copy.
fn memcpy_reference(events: &[Event]) -> (f64, usize) {
    let src: Vec<u8> = (0..EVENTS_PER_ROUND)
        .flat_map(|i| events[i % events.len()].body.iter().copied())
        .collect();
    let mut dst = vec![0u8; src.len()];
    let mut best = f64::INFINITY;
    for _ in 0..10 {
        let start = Instant::now();
        dst.copy_from_slice(black_box(&src));
        black_box(&mut dst);
        best = best.min(start.elapsed().as_secs_f64());
    }
    (src.len() as f64 / best / 1e9, src.len())
}

/// The filesystem `path` is on: type and device, from /proc/self/mounts (longest
/// mount point that is a prefix of the path).
fn filesystem_of(path: &Path) -> String {
    let Ok(mounts) = std::fs::read_to_string("/proc/self/mounts") else {
        return "filesystem unknown".to_owned();
    };
    mounts
        .lines()
        .filter_map(|l| {
            let mut parts = l.split_whitespace();
            let (dev, at, fstype) = (parts.next()?, parts.next()?, parts.next()?);
            path.starts_with(at)
                .then(|| (at.len(), format!("{fstype} on {dev}, mounted at {at}")))
        })
        .max_by_key(|(len, _)| *len)
        .map_or_else(|| "filesystem unknown".to_owned(), |(_, s)| s)
}
