//! Keyed state the host keeps for each configured plugin (`runnel:plugin/state`): one
//! namespace per plugin, shared by all its instances, so it outlives an instance that
//! traps and a version swapped in by a reload. A call's changes are staged
//! ([`Staged`]) and applied only when the call succeeds, as one numbered
//! [`StateCommit`].
//!
//! ## Durable with the batches it belongs to
//! A commit is live at once (the next call sees it) but durable only with the batch
//! whose processing made it: the pipeline worker collects a batch's commits in a
//! [`StateJournal`], puts them into a durable channel's log in the same record as the
//! batch (and the source's read positions), and only then applies them to the store's
//! *durable copy* ([`StateJournal::applied`]). The state file is written from that copy,
//! never from the live state, so it never holds the effect of a batch that a crash could
//! still lose; at start the store reads its file and then the commits the channels' logs
//! hold beyond it ([`StateStore::recover`]). After a `kill -9` the state is therefore
//! exactly that of the batches in the channels: a line read again after the crash is
//! counted once. (Two sources changing the same key can interleave; then a key is exact
//! up to the batches in flight at the crash.)
//!
//! The file, `<data_dir>/state/<plugin>.state`, is written every second while the state
//! changes, when the agent stops, and — fsynced — whenever a file channel starts a new
//! log segment ([`save_all_synced`]), so the commits of a deleted segment are always in
//! it. Layout: `MAGIC`, `watermark u64`, then per entry `key len u32, key, version u64,
//! present u8` and, when present, `value len u32, value`; then a CRC-32 of everything
//! before it. Every commit numbered up to `watermark` is in the file; deleted keys are
//! kept (not present) while their deletion is newer than it.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

const MAGIC: &[u8; 8] = b"RNLSTAT2";
/// The first layout: entries without versions or deletions.
const MAGIC_V1: &[u8; 8] = b"RNLSTAT1";

/// The changes of one successful call, numbered in commit order per plugin. `None`:
/// deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateCommit {
    pub plugin: Arc<str>,
    pub version: u64,
    pub changes: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

/// One plugin's state.
pub struct StateStore {
    plugin: Arc<str>,
    cap_bytes: usize,
    path: Option<PathBuf>,
    live: Mutex<Live>,
    durable: Mutex<Durable>,
    dirty: AtomicBool,
}

/// What calls see.
#[derive(Default)]
struct Live {
    map: HashMap<Vec<u8>, Vec<u8>>,
    bytes: usize,
    /// The number of the last commit.
    version: u64,
}

impl Live {
    /// Sets `key` to `value` (`None`: deletes it), keeping the byte count.
    fn change(&mut self, key: &[u8], value: &Option<Vec<u8>>) {
        let old = match value {
            Some(v) => {
                self.bytes += key.len() + v.len();
                self.map.insert(key.to_vec(), v.clone())
            }
            None => self.map.remove(key),
        };
        if let Some(old) = old {
            self.bytes -= key.len() + old.len();
        }
    }
}

/// What is durable: the commits of batches in their channels, with the version that
/// last changed each key (deletions kept while newer than the watermark).
#[derive(Default)]
struct Durable {
    map: HashMap<Vec<u8>, Versioned>,
    /// Commits made but not yet applied here (their batches are on their way).
    pending: BTreeSet<u64>,
    /// The last commit made.
    committed: u64,
    /// Every commit up to this one is applied (or in the file read at start).
    watermark: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Versioned {
    version: u64,
    value: Option<Vec<u8>>,
}

impl Durable {
    /// Whether a change of `key` made by commit `version` is newer than what is kept.
    fn is_newer(&self, key: &[u8], version: u64) -> bool {
        self.map.get(key).is_none_or(|v| v.version < version)
    }

    /// Applies `commit`'s changes to keys it is newer for.
    fn apply(&mut self, commit: &StateCommit) {
        for (key, value) in &commit.changes {
            if self.is_newer(key, commit.version) {
                self.map.insert(
                    key.clone(),
                    Versioned {
                        version: commit.version,
                        value: value.clone(),
                    },
                );
            }
        }
    }

    /// Every commit up to the returned one is applied.
    fn watermark(&self) -> u64 {
        match self.pending.first() {
            Some(&oldest) => oldest - 1,
            None => self.committed,
        }
        .max(self.watermark)
    }
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
    fn delta_with(&self, live: &Live, key: &[u8], size: Option<usize>) -> isize {
        let size_of = |v: Option<&Vec<u8>>| v.map_or(0, |v| key.len() + v.len()) as isize;
        let stored = size_of(live.map.get(key));
        let before = match self.changes.get(key) {
            Some(change) => size_of(change.as_ref()) - stored,
            None => 0,
        };
        let after = size.map_or(0, |s| s as isize) - stored;
        self.delta - before + after
    }
}

/// The stores of this process that have a file, for [`save_all_synced`].
static STORES: Mutex<Vec<Weak<StateStore>>> = Mutex::new(Vec::new());

/// Saves, fsynced, every plugin state whose durable copy changed: called by a file
/// channel before it starts a new segment, so that no segment is ever deleted while it
/// holds state commits the state files do not.
pub fn save_all_synced() {
    let stores: Vec<Arc<StateStore>> = lock(&STORES).iter().filter_map(Weak::upgrade).collect();
    for store in stores {
        store.save(true);
    }
}

impl StateStore {
    /// The state of `plugin`, read from `path` when it exists there (an unreadable or
    /// damaged file is reported and the state starts empty).
    pub fn open(plugin: &str, path: Option<PathBuf>, cap_bytes: usize) -> Arc<Self> {
        let durable = match path.as_deref().map(read) {
            Some(Ok(durable)) => durable,
            Some(Err(e)) => {
                tracing::error!(plugin, "{e}; the plugin's state starts empty");
                Durable::default()
            }
            None => Durable::default(),
        };
        let mut live = Live {
            version: durable.committed,
            ..Live::default()
        };
        for (key, v) in &durable.map {
            if let Some(value) = &v.value {
                live.bytes += key.len() + value.len();
                live.map.insert(key.clone(), value.clone());
            }
        }
        let store = Arc::new(Self {
            plugin: plugin.into(),
            cap_bytes,
            live: Mutex::new(live),
            durable: Mutex::new(durable),
            dirty: AtomicBool::new(false),
            path,
        });
        if store.path.is_some() {
            let mut stores = lock(&STORES);
            stores.retain(|s| s.strong_count() > 0);
            stores.push(Arc::downgrade(&store));
        }
        store
    }

    pub fn plugin(&self) -> &str {
        &self.plugin
    }

    /// `key`'s value as `staged` sees it.
    pub fn get(&self, staged: &Staged, key: &[u8]) -> Option<Vec<u8>> {
        match staged.changes.get(key) {
            Some(change) => change.clone(),
            None => lock(&self.live).map.get(key).cloned(),
        }
    }

    /// Stages `key = value`; refused if the state would grow past its cap.
    pub fn set(&self, staged: &mut Staged, key: Vec<u8>, value: Vec<u8>) -> Result<(), String> {
        let live = lock(&self.live);
        let delta = staged.delta_with(&live, &key, Some(key.len() + value.len()));
        if live.bytes as isize + delta > self.cap_bytes as isize {
            return Err(format!(
                "the state of plugin `{}` would grow past its cap of {} bytes",
                self.plugin, self.cap_bytes
            ));
        }
        drop(live);
        staged.delta = delta;
        staged.changes.insert(key, Some(value));
        Ok(())
    }

    pub fn delete(&self, staged: &mut Staged, key: Vec<u8>) {
        staged.delta = staged.delta_with(&lock(&self.live), &key, None);
        staged.changes.insert(key, None);
    }

    /// Applies what a successful call staged to the live state; returns the commit,
    /// to be applied to the durable copy once its batch is in its channels.
    pub fn commit(&self, staged: &mut Staged) -> Option<StateCommit> {
        if staged.changes.is_empty() {
            return None;
        }
        let mut live = lock(&self.live);
        staged.delta = 0;
        let mut changes = Vec::with_capacity(staged.changes.len());
        for (k, change) in staged.changes.drain() {
            live.change(&k, &change);
            changes.push((k, change));
        }
        live.version += 1;
        let version = live.version;
        let mut durable = lock(&self.durable);
        durable.pending.insert(version);
        durable.committed = version;
        Some(StateCommit {
            plugin: self.plugin.clone(),
            version,
            changes,
        })
    }

    /// `commit`'s batch is in its channels: its changes are durable.
    pub fn apply_durable(&self, commit: &StateCommit) {
        let mut durable = lock(&self.durable);
        durable.apply(commit);
        durable.pending.remove(&commit.version);
        self.dirty.store(true, Ordering::Release);
    }

    /// Applies a commit found in a durable channel's log at start, if the state file
    /// does not have it (or newer changes of its keys) already.
    pub fn recover(&self, commit: &StateCommit) {
        let mut live = lock(&self.live);
        let mut durable = lock(&self.durable);
        if commit.version <= durable.watermark {
            return;
        }
        for (key, value) in &commit.changes {
            if !durable.is_newer(key, commit.version) {
                continue;
            }
            live.change(key, value);
        }
        durable.apply(commit);
        live.version = live.version.max(commit.version);
        durable.committed = durable.committed.max(commit.version);
        self.dirty.store(true, Ordering::Release);
    }

    /// Writes the durable copy out if it changed since the last time (and has a file).
    pub fn save_if_changed(&self) {
        self.save(false);
    }

    fn save(&self, synced: bool) {
        let Some(path) = &self.path else { return };
        if !self.dirty.swap(false, Ordering::AcqRel) {
            return;
        }
        let bytes = {
            let mut durable = lock(&self.durable);
            let watermark = durable.watermark();
            // A deletion at or below the watermark is in every file from now on.
            durable
                .map
                .retain(|_, v| v.value.is_some() || v.version > watermark);
            // What `recover` may skip from now on (a deletion forgotten here must not
            // be undone by an older commit found in a log).
            durable.watermark = watermark;
            encode(&durable.map, watermark)
        };
        let written = if synced {
            crate::files::replace_synced(path, &[&bytes])
        } else {
            crate::files::replace(path, &[&bytes])
        };
        if let Err(e) = written {
            self.dirty.store(true, Ordering::Release);
            tracing::error!(plugin = %self.plugin, "cannot save the plugin's state to {}: {e}", path.display());
        }
    }

    /// Bytes held (keys and values).
    pub fn bytes(&self) -> usize {
        lock(&self.live).bytes
    }
}

/// The state commits of one batch's trip through a chain, in call order, with the
/// stores they belong to.
#[derive(Default)]
pub struct StateJournal {
    entries: Vec<(Arc<StateStore>, Arc<StateCommit>)>,
}

impl StateJournal {
    pub fn push(&mut self, store: Arc<StateStore>, commit: StateCommit) {
        self.entries.push((store, Arc::new(commit)));
    }

    pub fn append(&mut self, other: &mut StateJournal) {
        self.entries.append(&mut other.entries);
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The commits, to store with the batch.
    pub fn commits(&self) -> Vec<Arc<StateCommit>> {
        self.entries.iter().map(|(_, c)| c.clone()).collect()
    }

    /// The batch is in its channels (or went nowhere): its commits are durable.
    pub fn applied(self) {
        for (store, commit) in self.entries {
            store.apply_durable(&commit);
        }
    }
}

impl std::fmt::Debug for StateJournal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StateJournal({} commits)", self.entries.len())
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn encode(map: &HashMap<Vec<u8>, Versioned>, watermark: u64) -> Vec<u8> {
    let size: usize = map
        .iter()
        .map(|(k, v)| 17 + k.len() + v.value.as_ref().map_or(0, Vec::len))
        .sum();
    let mut out = Vec::with_capacity(size + 20);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&watermark.to_le_bytes());
    for (k, v) in map {
        out.extend_from_slice(&(k.len() as u32).to_le_bytes());
        out.extend_from_slice(k);
        out.extend_from_slice(&v.version.to_le_bytes());
        match &v.value {
            Some(value) => {
                out.push(1);
                out.extend_from_slice(&(value.len() as u32).to_le_bytes());
                out.extend_from_slice(value);
            }
            None => out.push(0),
        }
    }
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

fn read(path: &Path) -> Result<Durable, String> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Durable::default()),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let damaged = || format!("{} is damaged", path.display());
    let (body, crc) = bytes.split_last_chunk::<4>().ok_or_else(damaged)?;
    let v1 = body.starts_with(MAGIC_V1);
    if !(v1 || body.starts_with(MAGIC)) || crc32fast::hash(body) != u32::from_le_bytes(*crc) {
        return Err(damaged());
    }
    use crate::files::le;
    let mut r = &body[MAGIC.len()..];
    let mut durable = Durable::default();
    if !v1 {
        durable.watermark = le::u64(&mut r).ok_or_else(damaged)?;
    }
    let mut newest = durable.watermark;
    while !r.is_empty() {
        let entry = (|| {
            let n = le::u32(&mut r)? as usize;
            let key = le::slice(&mut r, n)?.to_vec();
            if v1 {
                let n = le::u32(&mut r)? as usize;
                let value = le::slice(&mut r, n)?.to_vec();
                return Some((
                    key,
                    Versioned {
                        version: 0,
                        value: Some(value),
                    },
                ));
            }
            let version = le::u64(&mut r)?;
            let value = match le::u8(&mut r)? {
                0 => None,
                _ => {
                    let n = le::u32(&mut r)? as usize;
                    Some(le::slice(&mut r, n)?.to_vec())
                }
            };
            Some((key, Versioned { version, value }))
        })()
        .ok_or_else(damaged)?;
        newest = newest.max(entry.1.version);
        durable.map.insert(entry.0, entry.1);
    }
    durable.committed = newest;
    Ok(durable)
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
        let commit = store.commit(&mut call).unwrap();
        assert_eq!(store.bytes(), 2);
        // Saved is what is durable: nothing until the commit's batch is in a channel.
        store.save_if_changed();
        assert_eq!(
            StateStore::open("p", Some(path.clone()), 1 << 20).bytes(),
            0
        );
        store.apply_durable(&commit);
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

    fn commit_of(store: &StateStore, changes: &[(&str, Option<&str>)]) -> StateCommit {
        let mut call = Staged::default();
        for (k, v) in changes {
            match v {
                Some(v) => store
                    .set(&mut call, k.as_bytes().to_vec(), v.as_bytes().to_vec())
                    .unwrap(),
                None => store.delete(&mut call, k.as_bytes().to_vec()),
            }
        }
        store.commit(&mut call).unwrap()
    }

    fn value(store: &StateStore, key: &str) -> Option<String> {
        store
            .get(&Staged::default(), key.as_bytes())
            .map(|v| String::from_utf8(v).unwrap())
    }

    #[test]
    fn a_restart_recovers_the_commits_the_file_lacks_and_only_those() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.state");
        let store = StateStore::open("p", Some(path.clone()), 1 << 20);
        let c1 = commit_of(&store, &[("a", Some("1")), ("b", Some("1"))]);
        let c2 = commit_of(&store, &[("a", Some("2")), ("b", None)]);
        let c3 = commit_of(&store, &[("a", Some("3"))]);
        // c1 and c2 are durable and saved; c3's batch was in the channel's log only.
        store.apply_durable(&c1);
        store.apply_durable(&c2);
        store.save_if_changed();
        drop(store);

        let again = StateStore::open("p", Some(path.clone()), 1 << 20);
        assert_eq!(value(&again, "a").as_deref(), Some("2"));
        assert_eq!(value(&again, "b"), None);
        // The log holds c1 to c3 (its last segments): only c3 is news.
        for c in [&c3, &c1, &c2] {
            again.recover(c);
        }
        assert_eq!(value(&again, "a").as_deref(), Some("3"));
        assert_eq!(
            value(&again, "b"),
            None,
            "an older commit does not undo a deletion"
        );
        // New commits are numbered after everything recovered.
        let c4 = commit_of(&again, &[("b", Some("4"))]);
        assert_eq!(c4.version, 4);
        assert_eq!(again.bytes(), 4);
    }

    #[test]
    fn out_of_order_durability_keeps_the_newest_value_and_an_honest_watermark() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.state");
        let store = StateStore::open("p", Some(path.clone()), 1 << 20);
        // Two sources: c1's batch is still on its way when c2's is durable.
        let c1 = commit_of(&store, &[("k", Some("1")), ("x", Some("1"))]);
        let c2 = commit_of(&store, &[("k", Some("2"))]);
        store.apply_durable(&c2);
        store.save_if_changed();
        store.apply_durable(&c1);
        assert_eq!(
            lock(&store.durable).map[&b"k"[..]].value.as_deref(),
            Some(&b"2"[..])
        );
        drop(store);
        // The file was written while c1 was pending: its watermark says so, and c1 from
        // the log is applied at start.
        let again = StateStore::open("p", Some(path), 1 << 20);
        assert_eq!(value(&again, "x"), None);
        again.recover(&c1);
        again.recover(&c2);
        assert_eq!(value(&again, "x").as_deref(), Some("1"));
        assert_eq!(value(&again, "k").as_deref(), Some("2"));
    }
}
