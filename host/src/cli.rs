//! The command line: `runnel run`, `runnel validate`, `runnel plugin test`.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// `runnel --version`: the version, the build's target, profile, builtins and features.
const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("RUNNEL_BUILD_INFO"),
    ")"
);

#[derive(Debug, Parser)]
#[command(
    name = "runnel",
    version,
    long_version = LONG_VERSION,
    about = "A WebAssembly-extensible edge log agent"
)]
pub struct Cli {
    /// How the agent's own logs are written (to standard error).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Log filter (tracing's EnvFilter syntax), e.g. `info` or `runnel=debug`. RUNNEL_LOG
    /// overrides it.
    #[arg(long, global = true, default_value = "info")]
    pub log_level: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the agent.
    Run {
        /// The config file; without it, the embedded default config.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Check a config: syntax, unknown keys, references, and every plugin a source uses compiled and
    /// initialised. Exits non-zero with every problem listed.
    Validate {
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Tools for plugin authors.
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
    /// Tools for the `forward` sink and source.
    Forward {
        #[command(subcommand)]
        command: ForwardCommand,
    },
    /// Tools for durable (`file`) channels: look inside, check, repair. Run them on a
    /// channel's directory while the agent is stopped (the log is locked while open).
    Channel {
        #[command(subcommand)]
        command: ChannelCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum ForwardCommand {
    /// Makes a new shared key (64 hex digits) for an edge and its collector, for the
    /// file both configs name as `key_file`: written to OUT (created readable by its
    /// owner only; never overwritten), or printed when OUT is not given.
    Keygen {
        #[arg(long)]
        out: Option<std::path::PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ChannelCommand {
    /// Segments, records, events and bytes the channel holds, and how many are still
    /// to be delivered.
    Inspect {
        /// The channel's directory (`<data_dir>/channels/<name>` by default).
        path: PathBuf,
        /// The agent's config: then the pending events are also shown per sink that
        /// reads the channel (the sinks of one channel share its events).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Verifies every record's checksum (and, with the key, its authentication tag).
    /// Exits non-zero when something is damaged. With --repair: cuts a torn tail and
    /// blanks corrupt records, with a report, so the channel opens clean.
    Fsck {
        path: PathBuf,
        #[arg(long)]
        repair: bool,
        /// The encryption key file, for an encrypted channel.
        #[arg(long)]
        key_file: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Run a plugin (after others, with `--after`) on lines or JSON events from standard
    /// input and print the events that come out (JSON lines on standard output; drops,
    /// errors and routes are reported too).
    Test(PluginTest),
    /// Time a plugin (after others, with `--after`) on lines or JSON events from
    /// standard input, as a source runs it: ns/event, events/s, start-up, peak memory.
    /// With `--after`, the cost of PLUGIN alone is the chain minus its `--after` part.
    Bench(PluginBench),
    /// Start a plugin project: NAME/ with the plugin (a working example of its role),
    /// the SDK, the contract and a `build.sh` that installs what it needs and builds
    /// NAME.wasm, ready for `runnel plugin test`.
    New {
        name: String,
        #[arg(long, value_enum)]
        lang: crate::scaffold::Lang,
        #[arg(long, value_enum, default_value_t = RoleArg::Interceptor)]
        role: RoleArg,
        /// Where to write it (default: ./NAME).
        #[arg(long)]
        dir: Option<std::path::PathBuf>,
    },
    /// Compile plugins ahead of time, for this machine or (with `--target`) another
    /// CPU: a plugin (PLUGIN.wasm → OUT, which an agent loads like a component once it
    /// is signed: `--sign KEY` or `runnel plugin sign`), or with `--builtins` the shipped
    /// plugins, as `STEM.cwasm` files in the directory OUT that the agent's build embeds
    /// when `RUNNEL_PRECOMPILED_DIR=OUT` (scripts/build-release.sh and
    /// scripts/package.sh do both), so that the agent does not compile them at start.
    Compile {
        /// The plugin (a WebAssembly component) to compile.
        #[arg(required_unless_present = "builtins", conflicts_with = "builtins")]
        plugin: Option<PathBuf>,
        /// Compile the builtin plugins.
        #[arg(long)]
        builtins: bool,
        /// The CPU to compile for (default: this machine, with its optional features);
        /// code for a named CPU uses only what every CPU of its kind has. `pulley`:
        /// bytecode for wasmtime's interpreter, for riscv64 boards without the vector
        /// extension.
        #[arg(long, value_enum)]
        target: Option<crate::plugin::CompileTarget>,
        /// The file to write (a plugin), or the directory (--builtins).
        #[arg(long)]
        out: PathBuf,
        /// Sign what is written with this private key (`runnel plugin keygen`): writes
        /// OUT.sig.
        #[arg(long, conflicts_with = "builtins")]
        sign: Option<PathBuf>,
    },
    /// Make an Ed25519 key pair for signing plugins: the private key at OUT (readable
    /// by its owner only) and the public key at OUT.pub, for `[agent] trusted_keys`.
    Keygen {
        #[arg(long)]
        out: std::path::PathBuf,
    },
    /// Sign a plugin file with a private key made by `keygen`: writes PLUGIN.sig, which
    /// agents with `require_signed = true` check at every load and reload.
    Sign {
        plugin: std::path::PathBuf,
        #[arg(long)]
        key: std::path::PathBuf,
    },
}

#[derive(Debug, Args)]
pub struct PluginBench {
    #[command(flatten)]
    pub chain: ChainArgs,
    /// Events per call.
    #[arg(long, default_value_t = 1024)]
    pub batch_size: usize,
    /// Times the input is run through (after one warm-up run); figures are the median
    /// of the rounds, with their range.
    #[arg(long, default_value_t = 5)]
    pub rounds: usize,
}

/// A plugin role, as `plugin new --role` takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RoleArg {
    Parser,
    Interceptor,
    Cleaner,
    Router,
    Processor,
}

impl From<RoleArg> for crate::plugin::Role {
    fn from(role: RoleArg) -> Self {
        match role {
            RoleArg::Parser => Self::Parser,
            RoleArg::Interceptor => Self::Interceptor,
            RoleArg::Cleaner => Self::Cleaner,
            RoleArg::Router => Self::Router,
            RoleArg::Processor => Self::Processor,
        }
    }
}

#[derive(Debug, Args)]
pub struct PluginTest {
    #[command(flatten)]
    pub chain: ChainArgs,
    /// Lines per call.
    #[arg(long, default_value_t = 256)]
    pub batch_size: usize,
}

/// The plugins `plugin test` and `plugin bench` run, and what their input is.
#[derive(Debug, Clone, Args)]
pub struct ChainArgs {
    /// A .wasm component, or the name of a builtin plugin (e.g. `combined`).
    pub plugin: String,
    /// The plugin's config: a TOML file, or inline TOML (`'pattern = "..."'`).
    #[arg(long, short)]
    pub config: Option<String>,
    /// Run PLUGIN after these (in the order given), e.g. a parser in front of an
    /// interceptor: `--after combined`. A plugin's config follows `::` (a TOML file or
    /// inline TOML): `--after 'regex::pattern = "(?P<msg>.*)"'`.
    #[arg(long, value_name = "PLUGIN[::CONFIG]")]
    pub after: Vec<String>,
    /// Standard input holds whole events, one JSON object per line, in the form the
    /// `json` format writes (`name`, `timestamp`, `level`, `tags`, `fields`, `body`; all
    /// optional), instead of raw lines.
    #[arg(long)]
    pub events_json: bool,
    /// Memory cap of each plugin instance, MiB (the agent's `memory_mb`; JavaScript
    /// plugins want 128).
    #[arg(long, default_value_t = 64)]
    pub memory_mb: usize,
}
