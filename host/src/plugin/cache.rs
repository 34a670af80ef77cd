//! Compiled components, kept so that nothing is compiled twice: in memory for the life
//! of the engine (several plugin entries using one component compile it once), and on
//! disk across restarts (`<data_dir>/plugin-cache`).
//!
//! A cache file is named by the SHA-256 of the component's bytes and of the engine's
//! compatibility hash (wasmtime's version and every setting that changes the code it
//! makes), so a new wasmtime or another engine setting never reads an old file. The
//! file is `MAGIC ‖ SHA-256(code) ‖ code`, where `code` is what
//! [`Component::serialize`] made; it is written to a temporary file and renamed, and
//! its checksum is verified before the code is handed to wasmtime. A file that does not
//! verify is removed and the component compiled again.
//!
//! Trust: loading compiled code runs it without the checks compiling would make, so
//! the cache directory must be writable by the agent only — the same trust as the
//! config and the plugin files it names.

use crate::builtin::Precompiled;
use ring::digest::{Context, SHA256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use wasmtime::Engine;
use wasmtime::component::Component;

const MAGIC: &[u8; 8] = b"RNLCWASM";
const HEADER_LEN: usize = MAGIC.len() + 32;
/// The start of a builtin's code compiled at build time (see [`CompileCache::precompile`]).
const PRECOMPILED_MAGIC: &[u8; 8] = b"RNLPRE02";

/// Where a component came from when it was asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Compiled now.
    Compiled,
    /// Compiled when the agent was built (a builtin plugin).
    Precompiled,
    /// Read from the cache directory.
    Disk,
    /// Compiled ahead of time by `runnel plugin compile`, and signed.
    Signed,
    /// Already loaded by this engine.
    Memory,
}

pub struct CompileCache {
    dir: Option<PathBuf>,
    /// The engine's compatibility hash, folded into every key.
    engine_key: [u8; 32],
    loaded: Mutex<HashMap<[u8; 32], Component>>,
}

impl CompileCache {
    /// A cache for `engine`, kept on disk in `dir` (none: in memory only).
    pub fn new(engine: &Engine, dir: Option<PathBuf>) -> Self {
        #[cfg(feature = "compiler")]
        let engine_key = engine_key(engine);
        // An agent without the compiler compiles nothing, so it keeps nothing on disk.
        #[cfg(not(feature = "compiler"))]
        let (engine_key, dir) = {
            let _ = (engine, dir);
            ([0; 32], None)
        };
        Self {
            dir,
            engine_key,
            loaded: Mutex::new(HashMap::new()),
        }
    }

    /// The compiled form of `wasm`, from memory, the code `precompiled` with the agent,
    /// disk, or `compile`.
    pub fn get(
        &self,
        engine: &Engine,
        wasm: &[u8],
        precompiled: Option<Precompiled>,
        compile: impl FnOnce() -> wasmtime::Result<Component>,
    ) -> wasmtime::Result<(Component, Origin)> {
        let key = self.key(wasm);
        if let Some(c) = lock(&self.loaded).get(&key) {
            return Ok((c.clone(), Origin::Memory));
        }
        if let Some(component) = precompiled.and_then(|p| embedded(engine, wasm, p)) {
            lock(&self.loaded).insert(key, component.clone());
            return Ok((component, Origin::Precompiled));
        }
        let file = self.dir.as_ref().map(|d| d.join(file_name(&key)));
        if let Some(file) = &file
            && let Some(component) = read(engine, file)
        {
            lock(&self.loaded).insert(key, component.clone());
            return Ok((component, Origin::Disk));
        }
        let component = compile()?;
        if let Some(file) = &file
            && let Err(e) = write(&component, file)
        {
            tracing::warn!(
                "cannot keep the compiled plugin in {}: {e:#} (it is compiled again at the next start)",
                file.display()
            );
        }
        lock(&self.loaded).insert(key, component.clone());
        Ok((component, Origin::Compiled))
    }

    /// `wasm` compiled for embedding in the agent's binary (see [`Precompiled`]):
    /// `PRECOMPILED_MAGIC ‖ SHA-256(wasm) ‖ code`. The hash binds the code to these
    /// exact component bytes; the engine's settings are not in it, because the code may
    /// be made for another CPU (`plugin compile --builtins --target`): wasmtime's own
    /// header check decides whether the running engine can use it.
    #[cfg(feature = "compiler")]
    pub fn precompile(&self, engine: &Engine, wasm: &[u8]) -> wasmtime::Result<Vec<u8>> {
        let code = engine.precompile_component(wasm)?;
        Ok([PRECOMPILED_MAGIC.as_slice(), &checksum(wasm), &code].concat())
    }

    /// Whether `precompiled` holds `wasm` compiled for this engine.
    #[cfg(feature = "compiler")]
    pub fn fits(&self, engine: &Engine, wasm: &[u8], precompiled: Precompiled) -> bool {
        embedded(engine, wasm, precompiled).is_some()
    }

    fn key(&self, wasm: &[u8]) -> [u8; 32] {
        let mut ctx = Context::new(&SHA256);
        ctx.update(&self.engine_key);
        ctx.update(wasm);
        let mut key = [0; 32];
        key.copy_from_slice(ctx.finish().as_ref());
        key
    }
}

/// The component in `precompiled`, if it was made by [`CompileCache::precompile`]
/// from `wasm`, for an engine and a CPU like this one.
fn embedded(engine: &Engine, wasm: &[u8], precompiled: Precompiled) -> Option<Component> {
    let code = precompiled
        .code()
        .strip_prefix(PRECOMPILED_MAGIC.as_slice())?
        .strip_prefix(checksum(wasm).as_slice())?;
    // SAFETY: `Component::deserialize` trusts its input to be code that wasmtime made.
    // A `Precompiled` is only made by `crate::builtin` from bytes embedded in the
    // agent's own binary at build time (`runnel plugin compile --builtins`, i.e.
    // `CompileCache::precompile`), as trusted as the agent's code; the hash just
    // checked binds them to these component bytes, and wasmtime checks its version, the
    // engine's settings, the target and the CPU's features in the code's header.
    match unsafe { Component::deserialize(engine, code) } {
        Ok(component) => Some(component),
        Err(e) => {
            tracing::debug!("the builtin's code compiled with the agent does not fit: {e:#}");
            None
        }
    }
}

fn file_name(key: &[u8; 32]) -> String {
    format!("{}.cwasm", crate::files::hex(key))
}

fn checksum(code: &[u8]) -> [u8; 32] {
    let mut sum = [0; 32];
    sum.copy_from_slice(ring::digest::digest(&SHA256, code).as_ref());
    sum
}

/// Reads a cache file; `None` (after removing a damaged one) when it cannot be used.
fn read(engine: &Engine, file: &Path) -> Option<Component> {
    let bytes = match std::fs::read(file) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!("cannot read the compiled plugin {}: {e}", file.display());
            return None;
        }
    };
    let intact = bytes.len() > HEADER_LEN
        && &bytes[..MAGIC.len()] == MAGIC
        && bytes[MAGIC.len()..HEADER_LEN] == checksum(&bytes[HEADER_LEN..]);
    let component = if intact {
        // SAFETY: `Component::deserialize` trusts its input to be code that
        // `Component::serialize` made for a compatible engine. These bytes are exactly
        // what `write` stored from `Component::serialize` (the SHA-256 checksum above
        // verified them, so a torn or corrupted file never gets here); the file name
        // binds them to this engine's compatibility hash, and wasmtime checks its own
        // version and settings header again. The cache directory is the agent's own
        // (see the module documentation): nobody else writes these files.
        unsafe { Component::deserialize(engine, &bytes[HEADER_LEN..]) }.ok()
    } else {
        None
    };
    if component.is_none() {
        tracing::warn!(
            "the compiled plugin {} is damaged or stale; compiling again",
            file.display()
        );
        let _ = std::fs::remove_file(file);
    }
    component
}

/// Writes a cache file whole (see [`crate::files::replace`]).
fn write(component: &Component, file: &Path) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let code = component.serialize()?;
    crate::files::replace(file, &[MAGIC, &checksum(&code), &code])
        .with_context(|| format!("write {}", file.display()))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Feeds what a `Hash` implementation writes into a SHA-256 (stable across runs,
/// unlike the standard library's hashers).
/// The engine's compatibility hash (wasmtime's version and every setting that changes
/// the code it makes), as SHA-256.
#[cfg(feature = "compiler")]
fn engine_key(engine: &Engine) -> [u8; 32] {
    use std::hash::Hash as _;
    let mut hasher = DigestHasher(Context::new(&SHA256));
    engine.precompile_compatibility_hash().hash(&mut hasher);
    let mut key = [0; 32];
    key.copy_from_slice(hasher.0.finish().as_ref());
    key
}

#[cfg(feature = "compiler")]
struct DigestHasher(Context);

#[cfg(feature = "compiler")]
impl std::hash::Hasher for DigestHasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    fn finish(&self) -> u64 {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The smallest component: its preamble only.
    const EMPTY_COMPONENT: &[u8] = b"\0asm\x0d\x00\x01\x00";

    fn engine() -> Engine {
        let mut config = wasmtime::Config::new();
        config.wasm_component_model(true);
        Engine::new(&config).unwrap()
    }

    fn compile(engine: &Engine, wasm: &[u8]) -> wasmtime::Result<Component> {
        Component::new(engine, wasm)
    }

    #[test]
    fn compiled_once_then_from_memory_then_from_disk() {
        let dir = tempfile::tempdir().unwrap();
        let engine = engine();
        let wasm = EMPTY_COMPONENT.to_vec();
        let cache = CompileCache::new(&engine, Some(dir.path().to_path_buf()));
        let (_, o) = cache
            .get(&engine, &wasm, None, || compile(&engine, &wasm))
            .unwrap();
        assert_eq!(o, Origin::Compiled);
        let (_, o) = cache
            .get(&engine, &wasm, None, || panic!("compiled twice"))
            .unwrap();
        assert_eq!(o, Origin::Memory);
        // A new engine (a restart) reads what the first one wrote.
        let engine = engine_again();
        let cache = CompileCache::new(&engine, Some(dir.path().to_path_buf()));
        let (_, o) = cache
            .get(&engine, &wasm, None, || panic!("not cached"))
            .unwrap();
        assert_eq!(o, Origin::Disk);
    }

    fn engine_again() -> Engine {
        engine()
    }

    /// `EMPTY_COMPONENT` with a custom section: another component.
    const OTHER_COMPONENT: &[u8] = b"\0asm\x0d\x00\x01\x00\x00\x02\x01x";

    #[test]
    fn precompiled_code_is_used_only_for_its_component_and_engine() {
        let engine = engine();
        let cache = CompileCache::new(&engine, None);
        let code = cache.precompile(&engine, EMPTY_COMPONENT).unwrap();
        let precompiled = Precompiled::for_test(Vec::leak(code));
        let (_, o) = cache
            .get(&engine, EMPTY_COMPONENT, Some(precompiled), || {
                panic!("compiled")
            })
            .unwrap();
        assert_eq!(o, Origin::Precompiled);
        assert!(cache.fits(&engine, EMPTY_COMPONENT, precompiled));
        // Not for another component: compiled instead.
        assert!(!cache.fits(&engine, OTHER_COMPONENT, precompiled));
        let (_, o) = cache
            .get(&engine, OTHER_COMPONENT, Some(precompiled), || {
                compile(&engine, OTHER_COMPONENT)
            })
            .unwrap();
        assert_eq!(o, Origin::Compiled);
        // Not for an engine with other settings either.
        let mut config = wasmtime::Config::new();
        config.wasm_component_model(true).epoch_interruption(true);
        let other = Engine::new(&config).unwrap();
        let other_cache = CompileCache::new(&other, None);
        assert!(!other_cache.fits(&other, EMPTY_COMPONENT, precompiled));
        let (_, o) = other_cache
            .get(&other, EMPTY_COMPONENT, Some(precompiled), || {
                compile(&other, EMPTY_COMPONENT)
            })
            .unwrap();
        assert_eq!(o, Origin::Compiled);
        // Damaged code is refused by its key or by wasmtime, never run.
        let mut damaged = cache.precompile(&engine, EMPTY_COMPONENT).unwrap();
        damaged[PRECOMPILED_MAGIC.len()] ^= 1;
        let damaged = Precompiled::for_test(Vec::leak(damaged));
        assert!(!cache.fits(&engine, EMPTY_COMPONENT, damaged));
    }

    /// `plugin compile --builtins --target`: code made by another engine for a baseline
    /// CPU of this machine's kind fits the agent's engine (whatever this CPU has more);
    /// code for another kind of CPU never does.
    #[cfg(all(feature = "all-arch", target_arch = "x86_64"))]
    #[test]
    fn code_compiled_for_a_cpu_of_this_kind_fits_and_for_another_kind_does_not() {
        use crate::plugin::engine_config::{
            Backend, CompileTarget, cross_engine_config, engine_config,
        };
        let native = Engine::new(&engine_config(Backend::Cranelift)).unwrap();
        let pulley = Engine::new(&engine_config(Backend::Pulley)).unwrap();
        for (target, fits_native, fits_pulley) in [
            (CompileTarget::X86_64, true, false),
            (CompileTarget::Aarch64, false, false),
            (CompileTarget::Pulley, false, true),
        ] {
            let cross = Engine::new(&cross_engine_config(target).unwrap()).unwrap();
            let code = CompileCache::new(&cross, None)
                .precompile(&cross, EMPTY_COMPONENT)
                .unwrap();
            let code = Precompiled::for_test(Vec::leak(code));
            let fits = |engine: &Engine| {
                CompileCache::new(engine, None).fits(engine, EMPTY_COMPONENT, code)
            };
            assert_eq!(fits(&native), fits_native, "{target:?} on Cranelift");
            assert_eq!(fits(&pulley), fits_pulley, "{target:?} on Pulley");
        }
    }

    #[test]
    fn a_damaged_file_is_removed_and_the_component_compiled_again() {
        let dir = tempfile::tempdir().unwrap();
        let engine = engine();
        let wasm = EMPTY_COMPONENT.to_vec();
        CompileCache::new(&engine, Some(dir.path().to_path_buf()))
            .get(&engine, &wasm, None, || compile(&engine, &wasm))
            .unwrap();
        let file = std::fs::read_dir(dir.path())
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        let mut bytes = std::fs::read(&file).unwrap();
        let n = bytes.len();
        bytes[n - 10] ^= 0xFF;
        std::fs::write(&file, &bytes).unwrap();
        let cache = CompileCache::new(&engine, Some(dir.path().to_path_buf()));
        let (_, o) = cache
            .get(&engine, &wasm, None, || compile(&engine, &wasm))
            .unwrap();
        assert_eq!(o, Origin::Compiled);
        // Written again, intact.
        let cache = CompileCache::new(&engine, Some(dir.path().to_path_buf()));
        let (_, o) = cache
            .get(&engine, &wasm, None, || panic!("not cached"))
            .unwrap();
        assert_eq!(o, Origin::Disk);
    }

    #[test]
    fn another_engine_setting_is_another_key() {
        let a = engine();
        let mut config = wasmtime::Config::new();
        config.wasm_component_model(true).epoch_interruption(true);
        let b = Engine::new(&config).unwrap();
        let wasm = EMPTY_COMPONENT.to_vec();
        let ka = CompileCache::new(&a, None).key(&wasm);
        let kb = CompileCache::new(&b, None).key(&wasm);
        assert_ne!(ka, kb);
    }
}
