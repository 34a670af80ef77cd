//! `runnel plugin test`: a plugin (behind others, with `--after`), lines or JSON events
//! from stdin, the events that come out to stdout; `runnel plugin bench`: the same chain
//! timed.

use crate::builtin;
use crate::cli::{ChainArgs, PluginBench, PluginTest};
use crate::config::{OnError, toml_to_value};
use crate::encoding::{self, Format};
use crate::event::{Event, Value};
use crate::metrics::PluginCounters;
use crate::pipeline::{Chain, ChainOutput, Step};
use crate::plugin::Backend;
use crate::plugin::pool::InstancePool;
use crate::plugin::reload::PluginSlot;
use crate::plugin::{Limits, Plugin, PluginEngine, Role};
use anyhow::{Context, bail};
use std::io::{BufRead, Write};
use std::sync::Arc;

/// The source name test events get (when `--events-json` does not name one).
const SOURCE: &str = "stdin";

pub fn run(args: &PluginTest) -> anyhow::Result<()> {
    let engine = PluginEngine::new(Arc::from("plugin-test"), cache_dir(), Backend::Auto)?;
    let (plugins, mut chain) = build(&engine, &args.chain)?;
    let routes = chain.routes().to_vec();
    for plugin in &plugins {
        eprintln!("plugin `{}`: role {}", plugin.name(), plugin.role());
    }
    if !routes.is_empty() {
        eprintln!("routes: {}", routes.join(", "));
    }

    let mut input = stdin_events(args.chain.events_json);
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let (mut seen, mut emitted) = (0usize, 0usize);
    loop {
        let batch = input
            .by_ref()
            .take(args.batch_size.max(1))
            .collect::<anyhow::Result<Vec<_>>>()?;
        if batch.is_empty() {
            break;
        }
        seen += batch.len();
        emitted += write(&mut out, chain.run(batch), &routes)?;
    }
    emitted += write(
        &mut out,
        chain.tick(std::time::Instant::now(), true),
        &routes,
    )?;
    out.flush()?;
    let what = if args.chain.events_json {
        "events"
    } else {
        "lines"
    };
    eprintln!(
        "{seen} {what} in, {emitted} events out{}",
        match seen.checked_sub(emitted) {
            Some(dropped) => format!(", {dropped} dropped"),
            None => format!(", {} more than in", emitted - seen),
        }
    );
    Ok(())
}

/// `PLUGIN[::CONFIG]` as the plugin and its config, if any.
fn plugin_spec(spec: &str) -> (&str, Option<&str>) {
    match spec.split_once("::") {
        Some((plugin, config)) if !config.is_empty() => (plugin, Some(config)),
        Some((plugin, _)) => (plugin, None),
        None => (spec, None),
    }
}

/// The plugins `args` names (`--after`, then PLUGIN) and a chain of them, as a source
/// runs it.
fn build(engine: &PluginEngine, args: &ChainArgs) -> anyhow::Result<(Vec<Plugin>, Chain)> {
    let limits = limits(args.memory_mb);
    let mut plugins = Vec::new();
    for spec in &args.after {
        let (plugin, config) = plugin_spec(spec);
        plugins.push(load(engine, plugin, config, limits)?);
    }
    plugins.push(load(engine, &args.plugin, args.config.as_deref(), limits)?);
    if let Some(router) = plugins[..plugins.len() - 1]
        .iter()
        .find(|p| p.role() == Role::Router)
    {
        bail!(
            "`{}` is a router: a router must be the last plugin (test it as PLUGIN, not with --after)",
            router.name()
        );
    }
    let mut steps = Vec::new();
    for plugin in &plugins {
        let counters = Arc::new(PluginCounters::new(format!("step.test.{}", plugin.name())));
        let instance = plugin.instantiate(counters.clone())?;
        let slot = Arc::new(PluginSlot::new(plugin.clone()));
        let pool = Arc::new(InstancePool::new(slot, counters, instance, 1));
        let step = Step::new(pool, "test", OnError::Tag, true);
        // A processor's windows are flushed by the final tick, after the last batch.
        steps.push(match plugin.role() {
            Role::Processor => step.ticking(std::time::Duration::from_secs(3600)),
            _ => step,
        });
    }
    Ok((plugins, Chain::new(steps)))
}

/// The default limits with the memory cap asked for.
fn limits(memory_mb: usize) -> Limits {
    Limits {
        memory_bytes: memory_mb.clamp(1, 4096) << 20,
        ..Limits::default()
    }
}

/// Where `plugin test` and `plugin bench` keep compiled plugins: `RUNNEL_CACHE_DIR`, or
/// `~/.cache/runnel/plugin-cache` (none without a home directory).
fn cache_dir() -> Option<std::path::PathBuf> {
    std::env::var_os("RUNNEL_CACHE_DIR")
        .map(std::path::PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .map(|home| std::path::Path::new(&home).join(".cache/runnel/plugin-cache"))
        })
}

/// Standard input as events: its lines (without their line end) or, with `json`, one
/// JSON event per line that is not blank.
fn stdin_events(json: bool) -> impl Iterator<Item = anyhow::Result<Event>> {
    let name: Arc<str> = Arc::from(SOURCE);
    std::io::stdin()
        .lock()
        .split(b'\n')
        .enumerate()
        .filter_map(move |(n, line)| {
            let mut line = match line.context("reading stdin") {
                Ok(line) => line,
                Err(e) => return Some(Err(e)),
            };
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            read_event(line, n, json, &name).transpose()
        })
}

/// Line `n` (0-based) of the input as an event: a raw line, or a JSON event (`None` for
/// a blank line).
fn read_event(
    line: Vec<u8>,
    n: usize,
    json: bool,
    name: &Arc<str>,
) -> anyhow::Result<Option<Event>> {
    if !json {
        return Ok(Some(Event::from_body(name.clone(), line)));
    }
    if line.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    encoding::decode_json_event(&line, name)
        .map(Some)
        .map_err(|e| anyhow::anyhow!("stdin line {}: {e}", n + 1))
}

/// `runnel plugin bench`: the chain over the whole input, batch by batch, as a source
/// would run it, round after round; the cost of PLUGIN alone is each round minus a
/// round of its `--after` plugins alone on the same input, run right after it. Figures
/// are the median of the rounds, with their range.
pub fn bench(args: &PluginBench) -> anyhow::Result<()> {
    let input = stdin_events(args.chain.events_json).collect::<anyhow::Result<Vec<_>>>()?;
    if input.is_empty() {
        bail!("no input: give lines (or --events-json events) on standard input");
    }
    let events = input.len();
    let batch = args.batch_size.max(1);
    let rounds = args.rounds.max(1);

    let started = Usage::now();
    let engine = PluginEngine::new(Arc::from("plugin-bench"), cache_dir(), Backend::Auto)?;
    let (plugins, mut chain) = build(&engine, &args.chain)?;
    let startup = Usage::now().since(&started);
    // The reference: the `--after` plugins alone.
    let mut reference = match args.chain.after.split_last() {
        None => None,
        Some((last, before)) => {
            let (plugin, config) = plugin_spec(last);
            let reference = ChainArgs {
                plugin: plugin.to_owned(),
                config: config.map(str::to_owned),
                after: before.to_vec(),
                ..args.chain.clone()
            };
            Some(build(&engine, &reference)?.1)
        }
    };

    // One pass over the input, timed.
    let run = |chain: &mut Chain| -> (Spent, usize) {
        let mut out = 0;
        let before = Usage::now();
        for part in input.chunks(batch) {
            out += chain.run(part.to_vec()).events.len();
        }
        out += chain.tick(std::time::Instant::now(), true).events.len();
        (Usage::now().since(&before), out)
    };
    // Once to warm up (instances grown to the batch size), then the rounds, the chain and
    // its reference alternating, so that a change in the machine's speed hits both.
    run(&mut chain);
    if let Some(reference) = reference.as_mut() {
        run(reference);
    }
    let per_event = |u: &Spent| u.cpu_ns as f64 / events as f64;
    let (mut whole, mut alone, mut wall_ns, mut out) = (Vec::new(), Vec::new(), 0, 0);
    for _ in 0..rounds {
        let (spent, n) = run(&mut chain);
        whole.push(per_event(&spent));
        wall_ns += spent.wall_ns;
        out += n;
        if let Some(reference) = reference.as_mut() {
            alone.push(per_event(&run(reference).0));
        }
    }
    let names: Vec<&str> = plugins.iter().map(|p| p.name()).collect();
    println!("chain            {}", names.join(" → "));
    println!("input            {events} events × {rounds} rounds, batches of {batch}");
    println!(
        "start-up         {:.0} ms CPU, {:.0} ms wall (load, compile or cache, instantiate, create)",
        startup.cpu_ns as f64 / 1e6,
        startup.wall_ns as f64 / 1e6
    );
    println!(
        "chain            {} ns/event CPU, {:.0} events/s, {} events out per round",
        Spread::of(&whole),
        (events * rounds) as f64 / (wall_ns as f64 / 1e9),
        out / rounds
    );
    if !alone.is_empty() {
        let minus: Vec<f64> = whole.iter().zip(&alone).map(|(w, a)| w - a).collect();
        println!("--after alone    {} ns/event CPU", Spread::of(&alone));
        println!(
            "{:<16} {} ns/event CPU (chain minus --after alone, round by round)",
            plugins[plugins.len() - 1].name(),
            Spread::of(&minus)
        );
    }
    println!("peak RSS         {} MiB", Usage::peak_rss_kib() / 1024);
    Ok(())
}

/// The median of per-round figures, with their range: `median (min–max)`.
struct Spread {
    median: f64,
    min: f64,
    max: f64,
}

impl Spread {
    /// Of a non-empty list.
    fn of(values: &[f64]) -> Self {
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        let mid = sorted.len() / 2;
        let median = if sorted.len().is_multiple_of(2) {
            (sorted[mid - 1] + sorted[mid]) / 2.0
        } else {
            sorted[mid]
        };
        Self {
            median,
            min: sorted[0],
            max: sorted[sorted.len() - 1],
        }
    }
}

impl std::fmt::Display for Spread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:.0} ({:.0}–{:.0})", self.median, self.min, self.max)
    }
}

/// The process's CPU time (user + system) and the wall clock at one moment.
struct Usage {
    cpu_ns: u64,
    at: std::time::Instant,
}

/// What was spent between two [`Usage`]s.
struct Spent {
    cpu_ns: u64,
    wall_ns: u64,
}

impl Usage {
    fn now() -> Self {
        Self {
            cpu_ns: process_cpu_ns(),
            at: std::time::Instant::now(),
        }
    }

    fn since(&self, earlier: &Usage) -> Spent {
        Spent {
            cpu_ns: self.cpu_ns.saturating_sub(earlier.cpu_ns),
            wall_ns: self.at.duration_since(earlier.at).as_nanos() as u64,
        }
    }

    fn peak_rss_kib() -> u64 {
        rusage().ru_maxrss as u64
    }
}

fn rusage() -> libc::rusage {
    // SAFETY: `getrusage` writes a whole `rusage` into the zeroed value it is given and
    // reads nothing else; RUSAGE_SELF is always valid.
    unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    }
}

fn process_cpu_ns() -> u64 {
    let u = rusage();
    let ns = |t: libc::timeval| t.tv_sec as u64 * 1_000_000_000 + t.tv_usec as u64 * 1_000;
    ns(u.ru_utime) + ns(u.ru_stime)
}

/// A builtin plugin by name (unless a file of that name exists), else a `.wasm` file.
fn load(
    engine: &PluginEngine,
    plugin: &str,
    config: Option<&str>,
    limits: Limits,
) -> anyhow::Result<Plugin> {
    let config = match config {
        None => Value::Object(Default::default()),
        Some(c) => {
            let text = if std::path::Path::new(c).is_file() {
                std::fs::read_to_string(c).with_context(|| format!("reading {c}"))?
            } else {
                c.to_owned()
            };
            let table: toml::Table = toml::from_str(&text)
                .with_context(|| format!("the config of `{plugin}` is not a TOML table"))?;
            toml_to_value(&toml::Value::Table(table))
        }
    };
    let path = std::path::Path::new(plugin);
    Ok(match builtin::find(plugin) {
        Some(b) if !path.exists() => engine.load(b.name, b.code(), &config, limits)?,
        _ => engine.load_file(plugin, path, &config, limits)?,
    })
}

/// Writes the events of `output` as JSON lines (with a `routes` tag after a router);
/// returns how many.
fn write(out: &mut impl Write, output: ChainOutput, routes: &[String]) -> anyhow::Result<usize> {
    let mut buf = Vec::new();
    let count = output.events.len();
    for (i, mut event) in output.events.into_iter().enumerate() {
        if !routes.is_empty() {
            let mask = output.masks.get(i).copied().unwrap_or(0);
            let chosen: Vec<&str> = (0..routes.len())
                .filter(|r| mask & (1 << r) != 0)
                .map(|r| routes[r].as_str())
                .collect();
            event.tags.set(
                "routes",
                if chosen.is_empty() {
                    "(default)".to_owned()
                } else {
                    chosen.join(",")
                },
            );
        }
        Format::Json.encode(&event, &mut buf);
    }
    out.write_all(&buf)?;
    Ok(count)
}
