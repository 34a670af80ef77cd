//! Keyed state the host keeps for each configured plugin (`runnel:plugin/state`): one
//! namespace per plugin, shared by all its instances, so it outlives an instance that
//! traps and a version swapped in by a reload. A call's changes are staged
//! ([`Staged`]) and applied only when the call succeeds.
//!
//! Saved in `<data_dir>/state/<plugin>.state` every second while it changes and when
//! the agent stops: `MAGIC`, then per entry `key len u32, key, value len u32, value`,
//! then a CRC-32 of everything before it; written to a temporary file and renamed. A
//! `kill -9` or power cut loses at most the last second of changes (it is not written
//! in the same commit as the channel's records).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

const MAGIC: &[u8; 8] = b"RNLSTAT1";

/// One plugin's state.
pub struct StateStore {
    plugin: String,
    cap_bytes: usize,
    path: Option<PathBuf>,
    entries: Mutex<Entries>,
    dirty: AtomicBool,
}

#[derive(Default)]
struct Entries {
    map: HashMap<Vec<u8>, Vec<u8>>,
    bytes: usize,
}

/// The changes one call made, applied when it succeeds. `None`: deleted.
#[derive(Default)]
pub struct Staged {
    changes: HashMap<Vec<u8>, Option<Vec<u8>>>,
    /// How many bytes the state grows by if these changes apply.
    delta: isize,
}

impl Staged {
    /// `delta` after staging `key` with an entry of `size` bytes (`None`: deleted).
    fn delta_with(&self, entries: &Entries, key: &[u8], size: Option<usize>) -> isize {
        let size_of = |v: Option<&Vec<u8>>| v.map_or(0, |v| key.len() + v.len()) as isize;
        let stored = size_of(entries.map.get(key));
        let before = match self.changes.get(key) {
            Some(change) => size_of(change.as_ref()) - stored,
            None => 0,
        };
        let after = size.map_or(0, |s| s as isize) - stored;
        self.delta - before + after
    }
}

impl StateStore {
    /// The state of `plugin`, read from `path` when it exists there (an unreadable or
    /// damaged file is reported and the state starts empty).
    pub fn open(plugin: &str, path: Option<PathBuf>, cap_bytes: usize) -> Self {
        let entries = match path.as_deref().map(read) {
            Some(Ok(entries)) => entries,
            Some(Err(e)) => {
                tracing::error!(plugin, "{e}; the plugin's state starts empty");
                Entries::default()
            }
            None => Entries::default(),
        };
        Self {
            plugin: plugin.to_owned(),
            cap_bytes,
            path,
            entries: Mutex::new(entries),
            dirty: AtomicBool::new(false),
        }
    }

    /// `key`'s value as `staged` sees it.
    pub fn get(&self, staged: &Staged, key: &[u8]) -> Option<Vec<u8>> {
        match staged.changes.get(key) {
            Some(change) => change.clone(),
            None => self.lock().map.get(key).cloned(),
        }
    }

    /// Stages `key = value`; refused if the state would grow past its cap.
    pub fn set(&self, staged: &mut Staged, key: Vec<u8>, value: Vec<u8>) -> Result<(), String> {
        let entries = self.lock();
        let delta = staged.delta_with(&entries, &key, Some(key.len() + value.len()));
        if entries.bytes as isize + delta > self.cap_bytes as isize {
            return Err(format!(
                "the state of plugin `{}` would grow past its cap of {} bytes",
                self.plugin, self.cap_bytes
            ));
        }
        drop(entries);
        staged.delta = delta;
        staged.changes.insert(key, Some(value));
        Ok(())
    }

    pub fn delete(&self, staged: &mut Staged, key: Vec<u8>) {
        staged.delta = staged.delta_with(&self.lock(), &key, None);
        staged.changes.insert(key, None);
    }

    /// Applies what a successful call staged.
    pub fn commit(&self, staged: &mut Staged) {
        if staged.changes.is_empty() {
            return;
        }
        let mut entries = self.lock();
        staged.delta = 0;
        for (k, change) in staged.changes.drain() {
            let old = match change {
                Some(v) => {
                    entries.bytes += k.len() + v.len();
                    entries.map.insert(k.clone(), v)
                }
                None => entries.map.remove(&k),
            };
            if let Some(old) = old {
                entries.bytes -= k.len() + old.len();
            }
        }
        self.dirty.store(true, Ordering::Release);
    }

    /// Writes the state out if it changed since the last time (and has a file).
    pub fn save_if_changed(&self) {
        let Some(path) = &self.path else { return };
        if !self.dirty.swap(false, Ordering::AcqRel) {
            return;
        }
        let bytes = encode(&self.lock());
        if let Err(e) = crate::files::replace(path, &[&bytes]) {
            self.dirty.store(true, Ordering::Release);
            tracing::error!(plugin = %self.plugin, "cannot save the plugin's state to {}: {e}", path.display());
        }
    }

    /// Bytes held (keys and values).
    pub fn bytes(&self) -> usize {
        self.lock().bytes
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn encode(entries: &Entries) -> Vec<u8> {
    let mut out = Vec::with_capacity(entries.bytes + 16 * entries.map.len() + 12);
    out.extend_from_slice(MAGIC);
    for (k, v) in &entries.map {
        out.extend_from_slice(&(k.len() as u32).to_le_bytes());
        out.extend_from_slice(k);
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
        out.extend_from_slice(v);
    }
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

fn read(path: &Path) -> Result<Entries, String> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Entries::default()),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let damaged = || format!("{} is damaged", path.display());
    let (body, crc) = bytes
        .split_last_chunk::<4>()
        .filter(|(body, _)| body.starts_with(MAGIC))
        .ok_or_else(damaged)?;
    if crc32fast::hash(body) != u32::from_le_bytes(*crc) {
        return Err(damaged());
    }
    let mut rest = &body[MAGIC.len()..];
    let mut entries = Entries::default();
    let take = |rest: &mut &[u8]| -> Option<Vec<u8>> {
        let (len, tail) = rest.split_first_chunk::<4>()?;
        let len = u32::from_le_bytes(*len) as usize;
        let value = tail.get(..len)?.to_vec();
        *rest = &tail[len..];
        Some(value)
    };
    while !rest.is_empty() {
        let key = take(&mut rest).ok_or_else(damaged)?;
        let value = take(&mut rest).ok_or_else(damaged)?;
        entries.bytes += key.len() + value.len();
        entries.map.insert(key, value);
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staged_changes_apply_only_on_commit_and_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/p.state");
        let store = StateStore::open("p", Some(path.clone()), 1 << 20);
        let mut call = Staged::default();
        store.set(&mut call, b"a".to_vec(), b"1".to_vec()).unwrap();
        assert_eq!(
            store.get(&call, b"a"),
            Some(b"1".to_vec()),
            "a call sees its own changes"
        );
        assert_eq!(
            store.get(&Staged::default(), b"a"),
            None,
            "others do not, yet"
        );
        // A failed call's changes are dropped with its staging.
        drop(call);
        assert_eq!(store.get(&Staged::default(), b"a"), None);
        let mut call = Staged::default();
        store.set(&mut call, b"a".to_vec(), b"2".to_vec()).unwrap();
        store.set(&mut call, b"b".to_vec(), b"3".to_vec()).unwrap();
        store.delete(&mut call, b"b".to_vec());
        store.commit(&mut call);
        assert_eq!(store.bytes(), 2);
        store.save_if_changed();
        let again = StateStore::open("p", Some(path.clone()), 1 << 20);
        assert_eq!(again.get(&Staged::default(), b"a"), Some(b"2".to_vec()));
        assert_eq!(again.get(&Staged::default(), b"b"), None);
        // A damaged file is reported and the state starts empty.
        let mut bytes = std::fs::read(&path).unwrap();
        let n = bytes.len();
        bytes[n - 6] ^= 1;
        std::fs::write(&path, bytes).unwrap();
        let damaged = StateStore::open("p", Some(path), 1 << 20);
        assert_eq!(damaged.bytes(), 0);
    }

    #[test]
    fn the_cap_counts_keys_and_values_and_refuses_past_it() {
        let store = StateStore::open("p", None, 10);
        let mut call = Staged::default();
        store
            .set(&mut call, b"key".to_vec(), b"12345".to_vec())
            .unwrap(); // 8 bytes
        // Replacing the same key counts the new size only.
        store
            .set(&mut call, b"key".to_vec(), b"1234567".to_vec())
            .unwrap(); // 10 bytes
        assert!(store.set(&mut call, b"k2".to_vec(), b"x".to_vec()).is_err());
        store.commit(&mut call);
        assert_eq!(store.bytes(), 10);
        let mut call = Staged::default();
        store.delete(&mut call, b"key".to_vec());
        store.set(&mut call, b"k2".to_vec(), b"x".to_vec()).unwrap();
        store.commit(&mut call);
        assert_eq!(store.bytes(), 3);
    }
}
