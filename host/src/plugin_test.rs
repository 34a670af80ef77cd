//! `runnel plugin test`: a plugin (behind others, with `--after`), lines or JSON events
//! from stdin, the events that come out to stdout.

use crate::builtin;
use crate::cli::PluginTest;
use crate::config::{OnError, toml_to_value};
use crate::encoding::{self, Format};
use crate::event::{Event, Value};
use crate::metrics::PluginCounters;
use crate::pipeline::{Chain, ChainOutput, Step};
use crate::plugin::pool::InstancePool;
use crate::plugin::reload::PluginSlot;
use crate::plugin::{Limits, Plugin, PluginEngine, Role};
use anyhow::{Context, bail};
use std::io::{BufRead, Write};
use std::sync::Arc;

/// The source name test events get (when `--events-json` does not name one).
const SOURCE: &str = "stdin";

pub fn run(args: &PluginTest) -> anyhow::Result<()> {
    let engine = PluginEngine::new(Arc::from("plugin-test"), None)?;
    let mut plugins = Vec::new();
    for spec in &args.after {
        let (plugin, config) = spec.split_once("::").unwrap_or((spec, ""));
        plugins.push(load(
            &engine,
            plugin,
            Some(config).filter(|c| !c.is_empty()),
        )?);
    }
    plugins.push(load(&engine, &args.plugin, args.config.as_deref())?);
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
    let mut chain = Chain::new(steps);
    let routes = chain.routes().to_vec();
    for plugin in &plugins {
        eprintln!("plugin `{}`: role {}", plugin.name(), plugin.role());
    }
    if !routes.is_empty() {
        eprintln!("routes: {}", routes.join(", "));
    }

    let name: Arc<str> = Arc::from(SOURCE);
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().split(b'\n').enumerate();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let (mut seen, mut emitted) = (0usize, 0usize);
    loop {
        let mut batch = Vec::with_capacity(args.batch_size);
        for (n, line) in lines.by_ref().take(args.batch_size.max(1)) {
            let mut line = line.context("reading stdin")?;
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            batch.push(if args.events_json {
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                encoding::decode_json_event(&line, &name)
                    .map_err(|e| anyhow::anyhow!("stdin line {}: {e}", n + 1))?
            } else {
                Event::from_body(name.clone(), line)
            });
        }
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
    let what = if args.events_json { "events" } else { "lines" };
    eprintln!(
        "{seen} {what} in, {emitted} events out{}",
        match seen.checked_sub(emitted) {
            Some(dropped) => format!(", {dropped} dropped"),
            None => format!(", {} more than in", emitted - seen),
        }
    );
    Ok(())
}

/// A builtin plugin by name (unless a file of that name exists), else a `.wasm` file.
fn load(engine: &PluginEngine, plugin: &str, config: Option<&str>) -> anyhow::Result<Plugin> {
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
        Some(b) if !path.exists() => {
            engine.load(b.name, b.wasm, b.precompiled(), &config, Limits::default())?
        }
        _ => engine.load_file(plugin, path, &config, Limits::default())?,
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
