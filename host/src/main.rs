use clap::Parser;
use runnel::channel::file::wal;
use runnel::cli::{ChannelCommand, Cli, Command, ForwardCommand, LogFormat, PluginCommand};
use runnel::config::{self, AgentSpec, ConfigErrors};
use runnel::plugin::signing;
use runnel::topology::Topology;
use std::process::ExitCode;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    limit_malloc_arenas();
    let cli = Cli::parse();
    init_logging(&cli);
    match cli.command {
        Command::Run { config } => {
            let spec = match load(config.as_deref()) {
                Ok(spec) => spec,
                Err(errors) => return report(&errors),
            };
            run(spec)
        }
        Command::Validate { config } => {
            let spec = match load(config.as_deref()) {
                Ok(spec) => spec,
                Err(errors) => return report(&errors),
            };
            let origin = spec.origin.clone();
            match Topology::check(spec) {
                Ok(_) => {
                    println!("{origin}: ok");
                    ExitCode::SUCCESS
                }
                Err(errors) => report(&errors),
            }
        }
        Command::Channel { command } => channel_tool(command),
        Command::Plugin {
            command: PluginCommand::Test(args),
        } => match runnel::plugin_test::run(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::from(2)
            }
        },
        Command::Plugin {
            command:
                PluginCommand::New {
                    name,
                    lang,
                    role,
                    dir,
                },
        } => {
            let dir = dir.unwrap_or_else(|| std::path::PathBuf::from(&name));
            match runnel::scaffold::create(lang, role.into(), &name, &dir) {
                Ok(files) => {
                    println!(
                        "wrote {} files into {}; next: {}/build.sh",
                        files.len(),
                        dir.display(),
                        dir.display()
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Plugin {
            command:
                PluginCommand::Compile {
                    plugin,
                    builtins: _,
                    target,
                    out,
                    sign,
                },
        } => match compile_plugins(plugin.as_deref(), target, &out, sign.as_deref()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::from(2)
            }
        },
        Command::Plugin {
            command: PluginCommand::Bench(args),
        } => match runnel::plugin_test::bench(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::from(2)
            }
        },
        Command::Forward {
            command: ForwardCommand::Keygen { out },
        } => match runnel::forward::keygen() {
            Ok(key) => match out {
                None => {
                    print!("{key}");
                    ExitCode::SUCCESS
                }
                Some(out) => match runnel::forward::write_key(&out, &key) {
                    Ok(()) => {
                        println!("key written to {}", out.display());
                        ExitCode::SUCCESS
                    }
                    Err(e) => {
                        eprintln!("error: {e:#}");
                        ExitCode::from(2)
                    }
                },
            },
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::from(2)
            }
        },
        Command::Plugin {
            command: PluginCommand::Keygen { out },
        } => signing_tool(signing::keygen(&out).map(|public| {
            format!(
                "private key: {} (keep it secret)\npublic key:  {} (list it in [agent] trusted_keys)",
                out.display(),
                public.display()
            )
        })),
        Command::Plugin {
            command: PluginCommand::Sign { plugin, key },
        } => signing_tool(
            signing::sign(&plugin, &key).map(|sig| format!("signed: {}", sig.display())),
        ),
    }
}

/// `runnel plugin compile (PLUGIN | --builtins) [--target T] --out OUT [--sign KEY]`.
#[cfg(feature = "compiler")]
fn compile_plugins(
    plugin: Option<&std::path::Path>,
    target: Option<runnel::plugin::CompileTarget>,
    out: &std::path::Path,
    sign: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    use anyhow::Context as _;
    use runnel::plugin::{Backend, CompileTarget, PluginEngine};
    let engine = match target {
        Some(target) => PluginEngine::for_target(target)?,
        None => PluginEngine::new(std::sync::Arc::from("compile"), None, Backend::Auto)?,
    };
    let cpu = target.map_or("this machine", |t| t.name());
    // Cranelift's riscv64 code for SIMD needs the vector extension, which a target
    // without host detection does not assume.
    let hint = |e: anyhow::Error| match target {
        Some(CompileTarget::Riscv64gc) => e.context(
            "riscv64 code for this plugin needs the vector extension; `--target pulley` \
             makes code for every riscv64 board",
        ),
        _ => e,
    };
    let Some(plugin) = plugin else {
        for (name, compiled) in runnel::builtin::precompile_into(&engine, out).map_err(hint)? {
            let how = if compiled {
                "compiled"
            } else {
                "unchanged (the agent already embeds it)"
            };
            println!("{name}: {how}");
        }
        println!("written to {} (for {cpu})", out.display());
        return Ok(());
    };
    let wasm = std::fs::read(plugin).with_context(|| format!("read {}", plugin.display()))?;
    let code = engine
        .precompile_plugin(&wasm)
        .map_err(anyhow::Error::from)
        .with_context(|| format!("compile {} for {cpu}", plugin.display()))
        .map_err(hint)?;
    runnel::files::replace_shared(out, &[&code])
        .with_context(|| format!("write {}", out.display()))?;
    println!("{} compiled for {cpu}: {}", plugin.display(), out.display());
    if let Some(key) = sign {
        println!("signed: {}", signing::sign(out, key)?.display());
    }
    Ok(())
}

#[cfg(not(feature = "compiler"))]
fn compile_plugins(
    _: Option<&std::path::Path>,
    _: Option<runnel::plugin::CompileTarget>,
    _: &std::path::Path,
    _: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    anyhow::bail!("this agent is built without the compiler (the `compiler` feature)")
}

fn signing_tool(result: Result<String, signing::SignatureError>) -> ExitCode {
    match result {
        Ok(message) => {
            println!("{message}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

/// The sinks of `spec` that read the file channel whose log is `dir`, and what is
/// pending for them.
fn print_readers(spec: &AgentSpec, dir: &std::path::Path, pending: u64) {
    use runnel::channel::ChannelType;
    let same = |a: &std::path::Path| runnel::source::same_file(a, dir);
    let Some(channel) = spec.channels.iter().find(|c| match &c.kind {
        ChannelType::File(f) => same(&f.dir(&c.name, &spec.data_dir)),
        _ => false,
    }) else {
        println!("no file channel of {} keeps its log here", spec.origin);
        return;
    };
    let sinks: Vec<&str> = spec
        .sinks
        .iter()
        .filter(|s| s.channel == channel.name)
        .map(|s| s.name.as_str())
        .collect();
    println!("channel `{}` of {}", channel.name, spec.origin);
    for sink in &sinks {
        println!("  sink `{sink}`: {pending} events pending");
    }
    if sinks.len() > 1 {
        println!("  (the sinks of a channel share its events: each takes some of them)");
    }
}

fn channel_tool(command: ChannelCommand) -> ExitCode {
    let result = match command {
        ChannelCommand::Inspect { path, config } => wal::inspect(&path).map(|summary| {
            print!("{summary}");
            if let Some(config) = config {
                match load(Some(&config)) {
                    Ok(spec) => print_readers(&spec, &path, summary.pending_items),
                    Err(errors) => return report(&errors),
                }
            }
            ExitCode::SUCCESS
        }),
        ChannelCommand::Fsck {
            path,
            repair,
            key_file,
        } => key_file
            .as_deref()
            .map(wal::Cipher::from_key_file)
            .transpose()
            .and_then(|cipher| wal::fsck(&path, cipher.as_ref(), repair))
            .map(|report| {
                print!("{report}");
                if report.is_clean() || (repair && report.repaired) {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(1)
                }
            }),
    };
    result.unwrap_or_else(|e| {
        eprintln!("error: {e}");
        ExitCode::from(2)
    })
}

fn load(path: Option<&std::path::Path>) -> Result<AgentSpec, ConfigErrors> {
    match path {
        Some(path) => config::load_file(path),
        None => config::load(config::EMBEDDED_DEFAULT, config::EMBEDDED_ORIGIN),
    }
}

fn report(errors: &ConfigErrors) -> ExitCode {
    eprintln!("{errors}");
    eprintln!(
        "config is invalid ({} problem{})",
        errors.0.len(),
        if errors.0.len() == 1 { "" } else { "s" }
    );
    ExitCode::from(2)
}

fn run(spec: AgentSpec) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(async move {
        let topology = match Topology::build(spec) {
            Ok(t) => t,
            Err(errors) => return report(&errors),
        };
        match topology.run(CancellationToken::new()).await {
            Ok(0) => ExitCode::SUCCESS,
            Ok(_) => ExitCode::FAILURE,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        }
    });
    // A stdin read cannot be cancelled; do not wait for the next line or EOF to exit.
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    code
}

/// glibc gives every thread that allocates its own malloc arena (up to 8 per core);
/// with tokio's worker and blocking threads and one worker per source that is several
/// MiB of resident memory for nothing on an edge host. Two arenas measured 6–11 MiB less
/// peak RSS on the end-to-end benchmarks at no CPU cost. `MALLOC_ARENA_MAX` in the
/// environment still wins.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: `mallopt` only sets an allocator parameter; it is called first thing
        // in `main`, before the agent starts any thread.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
}

fn init_logging(cli: &Cli) {
    // The Kafka client narrates every leader lookup at info: its warnings are enough,
    // unless a filter names it.
    let filter = EnvFilter::try_from_env("RUNNEL_LOG").unwrap_or_else(|_| {
        if cli.log_level.contains("rskafka") {
            EnvFilter::new(&cli.log_level)
        } else {
            EnvFilter::new(format!("{},rskafka=warn", cli.log_level))
        }
    });
    // Colours only for a terminal: a log file or journald gets plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}
