//! `runnel plugin test`: one plugin, lines from stdin, events to stdout.

use crate::builtin;
use crate::cli::PluginTest;
use crate::config::{OnError, toml_to_value};
use crate::encoding::Format;
use crate::event::{Event, Value};
use crate::metrics::PluginCounters;
use crate::pipeline::{Chain, Step};
use crate::plugin::pool::InstancePool;
use crate::plugin::reload::PluginSlot;
use crate::plugin::{Limits, PluginEngine};
use anyhow::Context;
use std::io::{BufRead, Write};
use std::sync::Arc;

pub fn run(args: &PluginTest) -> anyhow::Result<()> {
    let config = match &args.config {
        None => Value::Object(Default::default()),
        Some(c) => {
            let text = if std::path::Path::new(c).is_file() {
                std::fs::read_to_string(c).with_context(|| format!("reading {c}"))?
            } else {
                c.clone()
            };
            let table: toml::Table =
                toml::from_str(&text).context("the plugin config is not a TOML table")?;
            toml_to_value(&toml::Value::Table(table))
        }
    };
    let hostname: Arc<str> = Arc::from("plugin-test");
    let engine = PluginEngine::new(hostname, None)?;
    let plugin = match builtin::find(&args.plugin) {
        Some(b) if !std::path::Path::new(&args.plugin).exists() => {
            engine.load(b.name, b.wasm, b.precompiled(), &config, Limits::default())?
        }
        _ => engine.load_file(
            &args.plugin,
            std::path::Path::new(&args.plugin),
            &config,
            Limits::default(),
        )?,
    };
    let counters = Arc::new(PluginCounters::new(format!("step.test.{}", plugin.name())));
    let instance = plugin.instantiate(counters.clone())?;
    let slot = Arc::new(PluginSlot::new(plugin.clone()));
    let pool = Arc::new(InstancePool::new(slot, counters, instance, 1));
    let mut chain = Chain::new(vec![Step::new(pool, "test", OnError::Tag, true)]);
    let routes = chain.routes().to_vec();
    eprintln!(
        "plugin `{}`: role {}{}",
        plugin.name(),
        plugin.role(),
        if routes.is_empty() {
            String::new()
        } else {
            format!(", routes: {}", routes.join(", "))
        }
    );

    let name: Arc<str> = Arc::from("stdin");
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().split(b'\n');
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let (mut seen, mut emitted) = (0usize, 0usize);
    loop {
        let mut batch = Vec::with_capacity(args.batch_size);
        for line in lines.by_ref().take(args.batch_size.max(1)) {
            let mut line = line.context("reading stdin")?;
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            batch.push(Event::from_body(name.clone(), line));
        }
        if batch.is_empty() {
            break;
        }
        seen += batch.len();
        let output = chain.run(batch);
        let mut buf = Vec::new();
        let masks = output.masks;
        for (i, mut event) in output.events.into_iter().enumerate() {
            let mask = masks.get(i).copied().unwrap_or(0);
            if !routes.is_empty() {
                let chosen: Vec<&str> = (0..routes.len())
                    .filter(|i| mask & (1 << i) != 0)
                    .map(|i| routes[i].as_str())
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
            emitted += 1;
        }
        out.write_all(&buf)?;
    }
    out.flush()?;
    eprintln!(
        "{seen} lines in, {emitted} events out, {} dropped",
        seen - emitted
    );
    Ok(())
}
