//! The wasmtime settings of the agent's engine, and which backend runs plugin code.
//!
//! - **Cranelift** compiles plugins to machine code (the default: fastest).
//! - **Pulley**, wasmtime's portable interpreter, runs the same plugins on any CPU
//!   (about 10× slower; BENCHMARKS.md). The agent picks it by itself on a riscv64 CPU
//!   without the vector extension (most RISC-V boards in the field): Cranelift's riscv64
//!   code for SIMD — which the shipped plugins use, and which wasmtime also emits for
//!   small `memory.copy`s — needs it, and compiling for such a CPU panics inside
//!   Cranelift instead of failing.
//!
//! `[agent] plugin_backend` (`auto`, `cranelift`, `pulley`) chooses; for commands
//! without a config (`plugin test`, `plugin bench`, `plugin compile`) the environment
//! variable `RUNNEL_PLUGIN_BACKEND` does.

use serde::Deserialize;

/// Which backend runs plugin code, as configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// Cranelift where it can run every plugin, Pulley elsewhere (see the module).
    #[default]
    Auto,
    Cranelift,
    Pulley,
}

impl Backend {
    /// The backend to use: an explicit choice, else `RUNNEL_PLUGIN_BACKEND`, else what
    /// this CPU supports. `Err` names an unknown value of the variable.
    ///
    /// An agent built without the compiler runs the builtins as `scripts/package.sh`
    /// precompiled them: on riscv64 that is Pulley bytecode (it runs on every board), so
    /// there `Auto` is Pulley whatever the CPU.
    pub fn resolve(self) -> Result<Backend, String> {
        let chosen = match self {
            Backend::Auto => match std::env::var("RUNNEL_PLUGIN_BACKEND") {
                Ok(v) if v == "cranelift" => Backend::Cranelift,
                Ok(v) if v == "pulley" => Backend::Pulley,
                Ok(v) if v == "auto" || v.is_empty() => Backend::Auto,
                Ok(v) => {
                    return Err(format!(
                        "RUNNEL_PLUGIN_BACKEND={v:?}: must be auto, cranelift or pulley"
                    ));
                }
                Err(_) => Backend::Auto,
            },
            explicit => explicit,
        };
        Ok(match chosen {
            Backend::Auto if cfg!(all(target_arch = "riscv64", not(feature = "compiler"))) => {
                Backend::Pulley
            }
            Backend::Auto if cranelift_runs_every_plugin() => Backend::Cranelift,
            Backend::Auto => Backend::Pulley,
            explicit => explicit,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Backend::Auto => "auto",
            Backend::Cranelift => "cranelift",
            Backend::Pulley => "pulley",
        }
    }
}

/// A CPU `runnel plugin compile --target` makes code for (Linux; wasmtime checks only
/// the architecture and the operating system, so the code serves glibc and musl builds
/// alike). Compiled for a baseline CPU of its architecture: code the device's engine
/// accepts whatever optional features its CPU has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CompileTarget {
    #[value(name = "x86_64")]
    X86_64,
    Aarch64,
    /// Native riscv64 code needs the vector extension for the SIMD most plugins use;
    /// for boards without it, `pulley`.
    #[value(name = "riscv64gc", alias = "riscv64")]
    Riscv64gc,
    /// Bytecode for Pulley, wasmtime's interpreter: runs on any 64-bit little-endian
    /// CPU whose agent picks Pulley (riscv64 without the vector extension, or
    /// `plugin_backend = "pulley"`).
    Pulley,
}

impl CompileTarget {
    /// The target triple wasmtime compiles for.
    pub fn triple(self) -> &'static str {
        match self {
            CompileTarget::X86_64 => "x86_64-unknown-linux-gnu",
            CompileTarget::Aarch64 => "aarch64-unknown-linux-gnu",
            CompileTarget::Riscv64gc => "riscv64gc-unknown-linux-gnu",
            CompileTarget::Pulley => "pulley64",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            CompileTarget::X86_64 => "x86_64",
            CompileTarget::Aarch64 => "aarch64",
            CompileTarget::Riscv64gc => "riscv64gc",
            CompileTarget::Pulley => "pulley",
        }
    }
}

/// Whether Cranelift can compile every plugin for this CPU: everywhere but on a riscv64
/// CPU without the vector extension.
fn cranelift_runs_every_plugin() -> bool {
    #[cfg(target_arch = "riscv64")]
    {
        // The `v` bit of AT_HWCAP (a bit per single-letter extension), as Cranelift's
        // own host detection reads it.
        // SAFETY: getauxval only reads the process's auxiliary vector; it takes and
        // returns plain integers.
        let hwcap = unsafe { libc::getauxval(libc::AT_HWCAP) };
        hwcap & (1 << (b'v' - b'a')) != 0
    }
    #[cfg(not(target_arch = "riscv64"))]
    {
        true
    }
}

/// The settings every plugin is compiled and run with, for a resolved backend
/// (`Backend::resolve`; `Auto` is taken as Cranelift).
pub fn engine_config(backend: Backend) -> wasmtime::Config {
    let mut config = base_config();
    if backend == Backend::Pulley {
        // The interpreter for this machine's pointer width and byte order.
        let target = if cfg!(target_endian = "big") {
            "pulley64be"
        } else {
            "pulley64"
        };
        if let Err(e) = config.target(target) {
            tracing::error!("cannot select Pulley ({target}): {e}; using Cranelift");
        }
    }
    config
}

/// The settings of an engine that compiles plugins for `target` (another CPU, or a
/// baseline one of this CPU's kind) but runs none: the same settings as the agent's
/// engine on that CPU, so that its engine accepts the code.
pub fn cross_engine_config(target: CompileTarget) -> anyhow::Result<wasmtime::Config> {
    let mut config = base_config();
    config.target(target.triple()).map_err(|e| {
        anyhow::anyhow!(
            "this agent cannot compile for {} ({e}); it is built without the `all-arch` feature",
            target.name()
        )
    })?;
    Ok(config)
}

/// What every engine of the agent has, wherever its code runs.
fn base_config() -> wasmtime::Config {
    let mut config = wasmtime::Config::new();
    config.wasm_component_model(true).epoch_interruption(true);
    config
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_choices_win_and_auto_is_cranelift_here() {
        assert_eq!(Backend::Pulley.resolve(), Ok(Backend::Pulley));
        assert_eq!(Backend::Cranelift.resolve(), Ok(Backend::Cranelift));
        if std::env::var_os("RUNNEL_PLUGIN_BACKEND").is_none() && !cfg!(target_arch = "riscv64") {
            assert_eq!(Backend::Auto.resolve(), Ok(Backend::Cranelift));
        }
        let pulley = wasmtime::Engine::new(&engine_config(Backend::Pulley)).unwrap();
        assert!(pulley.is_pulley());
        let native = wasmtime::Engine::new(&engine_config(Backend::Cranelift)).unwrap();
        assert!(!native.is_pulley());
    }
}
