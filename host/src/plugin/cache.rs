//! Compiled components, kept so that nothing is compiled twice: in memory for the life
//! of the engine (several plugin entries using one component compile it once), and on
//! disk across restarts (`<data_dir>/plugin-cache`).
//!
//! A cache file is named by its key: the SHA-256 of the engine's compatibility hash
//! (wasmtime's version and every setting that changes the code it makes) and of the
//! component's bytes, so a new wasmtime or another engine setting never reads an old
//! file. The file is `MAGIC ‖ key ‖ code ‖ tag`, where `code` is what
//! [`Component::serialize`] made and `tag` the agent's HMAC-SHA-256 of everything
//! before it (see [`super::cache_trust`]); it is written to a temporary file and
//! renamed. Before the code is handed to wasmtime, the key in the file must be the key
//! of the component being loaded and the tag must verify: a file that fails is removed
//! and the component compiled again.
//!
//! Trust: see [`super::cache_trust`] — the directory must be the agent's own (else the
//! cache is not used) and every entry must carry this agent's tag for this component.

use super::cache_trust::{TAG_LEN, TrustedDir};
use crate::builtin::Precompiled;
use ring::digest::{Context, SHA256};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};
use wasmtime::Engine;
use wasmtime::component::Component;

/// The start of a cache file (the second format: the first had no key and no tag).
const MAGIC: &[u8; 8] = b"RNLCWAS2";
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
    /// `dir`, once checked and its key loaded (at the first component not found in
    /// memory); `None` when it cannot be trusted: then nothing is kept on disk.
    disk: OnceLock<Option<TrustedDir>>,
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
            disk: OnceLock::new(),
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
        let disk = self.disk();
        if let Some(disk) = disk
            && let Some(component) = read(engine, disk, &key)
        {
            lock(&self.loaded).insert(key, component.clone());
            return Ok((component, Origin::Disk));
        }
        let component = compile()?;
        if let Some(disk) = disk
            && let Err(e) = write(&component, disk, &key)
        {
            tracing::warn!(
                "cannot keep the compiled plugin: {e:#} (it is compiled again at the next start)"
            );
        }
        lock(&self.loaded).insert(key, component.clone());
        Ok((component, Origin::Compiled))
    }

    /// The cache directory, checked (once) and with its key; `None` without one or when
    /// it cannot be trusted (said once, as a warning).
    fn disk(&self) -> Option<&TrustedDir> {
        self.disk
            .get_or_init(|| {
                let dir = self.dir.as_ref()?;
                TrustedDir::open(dir)
                    .inspect_err(|e| {
                        tracing::warn!(
                            "the plugin compile cache is not used: {e}; plugins are compiled at every start"
                        )
                    })
                    .ok()
            })
            .as_ref()
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

/// Reads the cache file of `key`; `None` (after removing one that cannot be used) when
/// there is none or it is not this agent's entry for this component and engine.
fn read(engine: &Engine, disk: &TrustedDir, key: &[u8; 32]) -> Option<Component> {
    let file = disk.dir.join(file_name(key));
    let bytes = match std::fs::read(&file) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!("cannot read the compiled plugin {}: {e}", file.display());
            return None;
        }
    };
    let component = match entry_code(disk, key, &bytes) {
        Ok(code) => {
            // SAFETY: `Component::deserialize` trusts its input to be code that
            // `Component::serialize` made for a compatible engine. `entry_code` verified
            // this agent's HMAC over the file, made with a key only the agent's user can
            // read (see `cache_trust`), so these are the bytes `write` stored from
            // `Component::serialize`; the key in the header, also under the HMAC, binds
            // them to these component bytes and this engine's compatibility hash, and
            // wasmtime checks its own version and settings header again.
            match unsafe { Component::deserialize(engine, code) } {
                Ok(c) => Some(c),
                Err(e) => {
                    tracing::warn!(
                        "the compiled plugin {} does not load ({e:#}); compiling again",
                        file.display()
                    );
                    None
                }
            }
        }
        Err(why) => {
            tracing::warn!(
                "the compiled plugin {} is refused: {why}; compiling again",
                file.display()
            );
            None
        }
    };
    if component.is_none() {
        let _ = std::fs::remove_file(&file);
    }
    component
}

/// The code of a cache file's `bytes`, if they are this agent's entry for `key`.
fn entry_code<'a>(
    disk: &TrustedDir,
    key: &[u8; 32],
    bytes: &'a [u8],
) -> Result<&'a [u8], &'static str> {
    let body_len = bytes
        .len()
        .checked_sub(TAG_LEN)
        .filter(|&n| n > HEADER_LEN && &bytes[..MAGIC.len()] == MAGIC)
        .ok_or("damaged or of an older format")?;
    let (body, tag) = bytes.split_at(body_len);
    if !disk.verify(body, tag) {
        return Err("it was not written by this agent (its HMAC does not verify), or is damaged");
    }
    if body[MAGIC.len()..HEADER_LEN] != key[..] {
        return Err("it holds the code of another component or engine");
    }
    Ok(&body[HEADER_LEN..])
}

/// Writes the cache file of `key` whole (see [`crate::files::replace`]).
fn write(component: &Component, disk: &TrustedDir, key: &[u8; 32]) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let code = component.serialize()?;
    let tag = disk.tag(&[MAGIC, key, &code]);
    let file = disk.dir.join(file_name(key));
    crate::files::replace(&file, &[MAGIC, key, &code, &tag])
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
    use std::path::Path;

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

    /// A cache directory in a temporary directory (its key is kept next to it).
    fn cache_dir() -> (tempfile::TempDir, PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("plugin-cache");
        (tmp, dir)
    }

    /// The one cache file in `dir`.
    fn only_file(dir: &Path) -> PathBuf {
        let files: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(files.len(), 1, "{files:?}");
        files[0].clone()
    }

    #[test]
    fn compiled_once_then_from_memory_then_from_disk() {
        let (_tmp, dir) = cache_dir();
        let engine = engine();
        let wasm = EMPTY_COMPONENT.to_vec();
        let cache = CompileCache::new(&engine, Some(dir.clone()));
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
        let cache = CompileCache::new(&engine, Some(dir.clone()));
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
        let (_tmp, dir) = cache_dir();
        let engine = engine();
        let wasm = EMPTY_COMPONENT.to_vec();
        CompileCache::new(&engine, Some(dir.clone()))
            .get(&engine, &wasm, None, || compile(&engine, &wasm))
            .unwrap();
        let file = only_file(&dir);
        let mut bytes = std::fs::read(&file).unwrap();
        for at in [HEADER_LEN + 3, bytes.len() - 40, bytes.len() - 10] {
            bytes[at] ^= 0xFF;
            std::fs::write(&file, &bytes).unwrap();
            let cache = CompileCache::new(&engine, Some(dir.clone()));
            let (_, o) = cache
                .get(&engine, &wasm, None, || compile(&engine, &wasm))
                .unwrap();
            assert_eq!(o, Origin::Compiled, "byte {at} changed");
            bytes = std::fs::read(&file).unwrap();
        }
        // Written again, intact.
        let cache = CompileCache::new(&engine, Some(dir.clone()));
        let (_, o) = cache
            .get(&engine, &wasm, None, || panic!("not cached"))
            .unwrap();
        assert_eq!(o, Origin::Disk);
    }

    /// Component A's cache file replaced by component B's (the compiled code of another
    /// plugin copied over a signed plugin's): refused, and A compiled from its own bytes.
    #[test]
    fn another_components_entry_under_a_components_name_is_refused() {
        let (_tmp, dir) = cache_dir();
        let engine = engine();
        let a = EMPTY_COMPONENT;
        let b = OTHER_COMPONENT;
        let dir_a = dir.join("a");
        let dir_b = dir.join("b");
        for (wasm, dir) in [(a, &dir_a), (b, &dir_b)] {
            CompileCache::new(&engine, Some(dir.clone()))
                .get(&engine, wasm, None, || compile(&engine, wasm))
                .unwrap();
        }
        // Both caches share one key here (the same parent): B's file carries a tag
        // this agent made, only for another component.
        let file_a = only_file(&dir_a);
        std::fs::copy(only_file(&dir_b), &file_a).unwrap();
        let cache = CompileCache::new(&engine, Some(dir_a.clone()));
        let mut compiled = None;
        let (_, o) = cache
            .get(&engine, a, None, || {
                compiled = Some(a);
                compile(&engine, a)
            })
            .unwrap();
        assert_eq!(o, Origin::Compiled);
        assert_eq!(compiled, Some(a), "A compiled from A's bytes");
        // The file now holds A's code again.
        let (_, o) = CompileCache::new(&engine, Some(dir_a.clone()))
            .get(&engine, a, None, || panic!("not cached"))
            .unwrap();
        assert_eq!(o, Origin::Disk);
    }

    /// An entry that is not this agent's (forged by someone who can write the directory
    /// but not read the key; here: written under another key) is refused.
    #[test]
    fn an_entry_made_without_the_agents_key_is_refused() {
        let (_tmp, dir) = cache_dir();
        let engine = engine();
        let wasm = EMPTY_COMPONENT;
        CompileCache::new(&engine, Some(dir.clone()))
            .get(&engine, wasm, None, || compile(&engine, wasm))
            .unwrap();
        let file = only_file(&dir);
        let entry = std::fs::read(&file).unwrap();
        // A new key (the old one removed): the entry's tag no longer verifies.
        std::fs::remove_file(super::super::cache_trust::key_path(&dir)).unwrap();
        let (_, o) = CompileCache::new(&engine, Some(dir.clone()))
            .get(&engine, wasm, None, || compile(&engine, wasm))
            .unwrap();
        assert_eq!(o, Origin::Compiled);
        // Rewritten under the new key; the old entry copied back is refused again.
        std::fs::write(&file, &entry).unwrap();
        let (_, o) = CompileCache::new(&engine, Some(dir.clone()))
            .get(&engine, wasm, None, || compile(&engine, wasm))
            .unwrap();
        assert_eq!(o, Origin::Compiled);
    }

    /// A cache directory its group or others can write is not used: every component is
    /// compiled, nothing is read from it or written to it.
    #[test]
    fn a_directory_others_can_write_is_not_used() {
        use std::os::unix::fs::PermissionsExt;
        let (_tmp, dir) = cache_dir();
        let engine = engine();
        let wasm = EMPTY_COMPONENT;
        CompileCache::new(&engine, Some(dir.clone()))
            .get(&engine, wasm, None, || compile(&engine, wasm))
            .unwrap();
        let file = only_file(&dir);
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let (_, o) = CompileCache::new(&engine, Some(dir.clone()))
            .get(&engine, wasm, None, || compile(&engine, wasm))
            .unwrap();
        assert_eq!(o, Origin::Compiled, "a 0777 directory is not read");
        std::fs::remove_file(&file).unwrap();
        CompileCache::new(&engine, Some(dir.clone()))
            .get(&engine, wasm, None, || compile(&engine, wasm))
            .unwrap();
        assert!(!file.exists(), "nor written");
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
