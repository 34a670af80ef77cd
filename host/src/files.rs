//! Small file helpers shared by every part of the agent that keeps state on disk.
//!
//! What the agent keeps for itself (channel logs and ledgers, positions, cursors,
//! plugin state, the compile cache, keys it makes) is private: files are created 0600
//! and directories 0700, whatever the umask, through [`private_file`],
//! [`create_private_dir_all`] and [`replace`]. What it writes for users (a `file`
//! sink's output, signatures, public keys, precompiled plugins) follows the umask
//! ([`replace_shared`]).

use std::collections::HashSet;
use std::fs::{DirBuilder, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The mode of the files the agent keeps for itself.
pub const PRIVATE_FILE_MODE: u32 = 0o600;
/// The mode of the directories the agent makes for itself.
pub const PRIVATE_DIR_MODE: u32 = 0o700;

/// Options that create a file readable and writable by its owner only (the mode applies
/// when the file is created; add `read`/`write`/`create` as needed).
pub fn private_file() -> OpenOptions {
    let mut options = OpenOptions::new();
    options.mode(PRIVATE_FILE_MODE);
    options
}

/// Creates `dir` and its missing parents, each new one accessible by its owner only
/// (directories that exist are left as they are).
pub fn create_private_dir_all(dir: &Path) -> std::io::Result<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(PRIVATE_DIR_MODE)
        .create(dir)
}

/// Replaces the file at `path` with `parts`, one after another: written to a temporary
/// file next to it, then renamed over it, so a crash leaves the old file or the new one,
/// never half of one (and a process watching the file never reads half of one). Creates
/// the directory. The file is private (0600, a new directory 0700). Not fsynced: a
/// `kill -9` keeps it, a power cut may not ([`replace_synced`]).
pub fn replace(path: &Path, parts: &[&[u8]]) -> std::io::Result<()> {
    replace_with(path, parts, false, Access::Private)
}

/// Like [`replace`], and durable when it returns: the new file is fsynced before the
/// rename, and its directory after.
pub fn replace_synced(path: &Path, parts: &[&[u8]]) -> std::io::Result<()> {
    replace_with(path, parts, true, Access::Private)
}

/// Like [`replace`], for a file made for users (a signature, a public key, a compiled
/// plugin): its mode and its new directory's follow the umask.
pub fn replace_shared(path: &Path, parts: &[&[u8]]) -> std::io::Result<()> {
    replace_with(path, parts, false, Access::Shared)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Access {
    Private,
    Shared,
}

/// Warns (once per path in the process) when the key file `path` can be read or written
/// by its group or others: `what` names the key, the message the file and its mode.
pub fn warn_if_not_private(path: &Path, what: &str) {
    static WARNED: Mutex<Option<HashSet<PathBuf>>> = Mutex::new(None);
    let Ok(meta) = std::fs::metadata(path) else {
        return; // reading it fails with its own error
    };
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 == 0 {
        return;
    }
    let mut warned = WARNED.lock().unwrap_or_else(|p| p.into_inner());
    if warned
        .get_or_insert_with(HashSet::new)
        .insert(path.to_path_buf())
    {
        tracing::warn!(
            "the {what} {} has mode {mode:04o}: its group or others can read it; make it readable by the agent only (chmod 600)",
            path.display()
        );
    }
}

/// A secret file's bytes without trailing `\r`/`\n`; an error when it cannot be read or
/// is empty.
pub fn read_secret(path: &Path) -> Result<Vec<u8>, String> {
    let mut bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        bytes.pop();
    }
    if bytes.is_empty() {
        return Err("is empty".to_owned());
    }
    Ok(bytes)
}

fn replace_with(path: &Path, parts: &[&[u8]], sync: bool, access: Access) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut options = match access {
        Access::Private => {
            create_private_dir_all(dir)?;
            private_file()
        }
        Access::Shared => {
            std::fs::create_dir_all(dir)?;
            OpenOptions::new()
        }
    };
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(format!(".tmp{}", std::process::id()));
    let tmp = dir.join(tmp_name);
    let written = (|| {
        let mut f = options.write(true).create(true).truncate(true).open(&tmp)?;
        for part in parts {
            f.write_all(part)?;
        }
        if sync {
            f.sync_all()?;
        }
        drop(f);
        std::fs::rename(&tmp, path)?;
        if sync {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// Reading the agent's own little-endian binary formats (checkpoints, plugin state
/// files) off the front of a byte slice: each read advances the slice, `None` when it
/// is too short.
pub mod le {
    pub fn slice<'a>(r: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        let head = r.get(..n)?;
        *r = &r[n..];
        Some(head)
    }

    pub fn array<const N: usize>(r: &mut &[u8]) -> Option<[u8; N]> {
        let (head, rest) = r.split_first_chunk::<N>()?;
        *r = rest;
        Some(*head)
    }

    pub fn u8(r: &mut &[u8]) -> Option<u8> {
        array::<1>(r).map(|[b]| b)
    }

    pub fn u16(r: &mut &[u8]) -> Option<u16> {
        array(r).map(u16::from_le_bytes)
    }

    pub fn u32(r: &mut &[u8]) -> Option<u32> {
        array(r).map(u32::from_le_bytes)
    }

    pub fn u64(r: &mut &[u8]) -> Option<u64> {
        array(r).map(u64::from_le_bytes)
    }
}

/// Lower-case hexadecimal digits of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 0xf) as usize] as char);
    }
    s
}

/// The bytes of hexadecimal `text` (either case); `None` if it is not.
pub fn unhex(text: &[u8]) -> Option<Vec<u8>> {
    fn digit(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    if !text.len().is_multiple_of(2) {
        return None;
    }
    text.chunks_exact(2)
        .map(|p| Some(digit(p[0])? << 4 | digit(p[1])?))
        .collect()
}

/// A 32-byte key from a key file's contents: 32 raw bytes, or 64 hex digits (either
/// case) optionally followed by whitespace or a newline.
pub fn parse_key(contents: &[u8]) -> Result<[u8; 32], String> {
    if contents.len() == 32 {
        let mut key = [0u8; 32];
        key.copy_from_slice(contents);
        return Ok(key);
    }
    let trimmed = contents.trim_ascii();
    if trimmed.len() != 64 {
        return Err(format!(
            "expected 32 raw bytes or 64 hex digits, found {} bytes",
            contents.len()
        ));
    }
    let mut bytes = unhex(trimmed).ok_or_else(|| "not a hexadecimal key".to_owned())?;
    let mut key = [0u8; 32];
    key.copy_from_slice(&bytes);
    bytes.fill(0);
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_refuses_non_hex() {
        assert_eq!(hex(&[0, 0xab, 0xff]), "00abff");
        assert_eq!(unhex(b"00ABff"), Some(vec![0, 0xab, 0xff]));
        assert_eq!(unhex(b"0g"), None);
        assert_eq!(unhex(b"abc"), None);
    }

    /// Runs `f` with the umask 022 (the usual one; the test process may have another).
    fn with_umask_022<T>(f: impl FnOnce() -> T) -> T {
        static UMASK: Mutex<()> = Mutex::new(());
        let _one_at_a_time = UMASK.lock().unwrap_or_else(|p| p.into_inner());
        // SAFETY: umask only swaps the process's file mode mask; it cannot fail.
        let old = unsafe { libc::umask(0o022) };
        let out = f();
        // SAFETY: as above, restoring the mask found.
        unsafe { libc::umask(old) };
        out
    }

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn what_the_agent_keeps_is_private_and_what_it_shares_follows_the_umask() {
        let dir = tempfile::tempdir().unwrap();
        with_umask_022(|| {
            let private = dir.path().join("state/sub/positions.json");
            replace(&private, &[b"{}"]).unwrap();
            replace_synced(&private, &[b"{}"]).unwrap();
            assert_eq!(mode(&private), 0o600);
            assert_eq!(mode(&dir.path().join("state")), 0o700);
            assert_eq!(mode(&dir.path().join("state/sub")), 0o700);
            let made = dir.path().join("made");
            create_private_dir_all(&made).unwrap();
            assert_eq!(mode(&made), 0o700);
            let file = made.join("f");
            private_file()
                .write(true)
                .create_new(true)
                .open(&file)
                .unwrap();
            assert_eq!(mode(&file), 0o600);
            let shared = dir.path().join("out/plugin.sig");
            replace_shared(&shared, &[b"sig"]).unwrap();
            assert_eq!(mode(&shared), 0o644);
            assert_eq!(mode(&dir.path().join("out")), 0o755);
        });
    }

    #[test]
    fn replace_creates_the_directory_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/f");
        replace(&path, &[b"one", b"two"]).unwrap();
        replace(&path, &[b"three"]).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"three");
        assert_eq!(
            std::fs::read_dir(path.parent().unwrap()).unwrap().count(),
            1
        );
    }
}
