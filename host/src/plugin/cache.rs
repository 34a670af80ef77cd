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

use ring::digest::{Context, SHA256};
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use wasmtime::Engine;
use wasmtime::component::Component;

const MAGIC: &[u8; 8] = b"RNLCWASM";
const HEADER_LEN: usize = MAGIC.len() + 32;

/// Where a component came from when it was asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Compiled now.
    Compiled,
    /// Read from the cache directory.
    Disk,
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
        let mut hasher = DigestHasher(Context::new(&SHA256));
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let mut engine_key = [0; 32];
        engine_key.copy_from_slice(hasher.0.finish().as_ref());
        Self {
            dir,
            engine_key,
            loaded: Mutex::new(HashMap::new()),
        }
    }

    /// The compiled form of `wasm`, from memory, disk, or `compile`.
    pub fn get(
        &self,
        engine: &Engine,
        wasm: &[u8],
        compile: impl FnOnce() -> wasmtime::Result<Component>,
    ) -> wasmtime::Result<(Component, Origin)> {
        let key = self.key(wasm);
        if let Some(c) = lock(&self.loaded).get(&key) {
            return Ok((c.clone(), Origin::Memory));
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

    fn key(&self, wasm: &[u8]) -> [u8; 32] {
        let mut ctx = Context::new(&SHA256);
        ctx.update(&self.engine_key);
        ctx.update(wasm);
        let mut key = [0; 32];
        key.copy_from_slice(ctx.finish().as_ref());
        key
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
struct DigestHasher(Context);

impl Hasher for DigestHasher {
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
            .get(&engine, &wasm, || compile(&engine, &wasm))
            .unwrap();
        assert_eq!(o, Origin::Compiled);
        let (_, o) = cache
            .get(&engine, &wasm, || panic!("compiled twice"))
            .unwrap();
        assert_eq!(o, Origin::Memory);
        // A new engine (a restart) reads what the first one wrote.
        let engine = engine_again();
        let cache = CompileCache::new(&engine, Some(dir.path().to_path_buf()));
        let (_, o) = cache.get(&engine, &wasm, || panic!("not cached")).unwrap();
        assert_eq!(o, Origin::Disk);
    }

    fn engine_again() -> Engine {
        engine()
    }

    #[test]
    fn a_damaged_file_is_removed_and_the_component_compiled_again() {
        let dir = tempfile::tempdir().unwrap();
        let engine = engine();
        let wasm = EMPTY_COMPONENT.to_vec();
        CompileCache::new(&engine, Some(dir.path().to_path_buf()))
            .get(&engine, &wasm, || compile(&engine, &wasm))
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
            .get(&engine, &wasm, || compile(&engine, &wasm))
            .unwrap();
        assert_eq!(o, Origin::Compiled);
        // Written again, intact.
        let cache = CompileCache::new(&engine, Some(dir.path().to_path_buf()));
        let (_, o) = cache.get(&engine, &wasm, || panic!("not cached")).unwrap();
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
