//! What the compile cache trusts, and why. Loading compiled code runs it as native code
//! without the checks compiling makes, so a cache entry is as powerful as the agent:
//! whoever can make the agent load an entry of their choosing runs their code in it,
//! whatever `require_signed` says about plugin files. An entry is therefore used only
//! when all of these hold:
//!
//! - **The directory is the agent's own**: owned by the agent's user and writable by
//!   nobody else (it is created 0700). A directory another user owns, or that its
//!   group or others can write (0777, a shared `/tmp` path), is not used at all: the
//!   agent warns and compiles every plugin at each start. This stops other local users.
//! - **The entry was written by this agent**: it ends with an HMAC-SHA-256 of its
//!   contents under a secret key kept next to the directory (`<cache dir>.key`, 32
//!   random bytes, 0600, which must be the agent user's and readable by nobody else or
//!   the cache is not used). Someone who can write the directory but not read the key —
//!   a loosened ACL, a directory on a shared volume, files restored from elsewhere —
//!   cannot make an entry that verifies, and cannot swap in a key of their own (it
//!   would not be the agent user's file).
//! - **The entry is for this component and this engine**: its header holds the key it
//!   is filed under, the SHA-256 of the engine's compatibility hash and of the
//!   component's bytes, and the HMAC covers the header. An entry copied or renamed
//!   over another's name — another plugin's code under a signed plugin's name — is
//!   refused, removed, and the plugin compiled from its own (verified) bytes.
//!
//! The agent's own user and root are not defended against: they can read the key, and
//! change the agent's binary or config anyway.

use ring::hmac;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// A cache directory that passed the checks, with the agent's key for its entries.
pub struct TrustedDir {
    pub dir: PathBuf,
    key: hmac::Key,
}

/// Why a cache directory is not used.
#[derive(Debug, thiserror::Error)]
pub enum UntrustedDir {
    #[error("cannot create {dir}: {source}")]
    Create { dir: String, source: std::io::Error },
    #[error("cannot read {dir}: {source}")]
    Stat { dir: String, source: std::io::Error },
    #[error("{dir} is not a directory")]
    NotDirectory { dir: String },
    #[error("{dir} belongs to uid {owner}, not to the agent's user (uid {ours})")]
    NotOurs { dir: String, owner: u32, ours: u32 },
    #[error(
        "{dir} is writable by its group or others (mode {mode:04o}): whoever can write it could make the agent run their code"
    )]
    Writable { dir: String, mode: u32 },
    #[error("its key {path}: {reason}")]
    Key { path: String, reason: String },
}

/// Bytes of an entry's tag.
pub const TAG_LEN: usize = 32;
const KEY_LEN: usize = 32;

impl TrustedDir {
    /// Creates `dir` (0700) if needed, checks it and loads (or makes) its key.
    pub fn open(dir: &Path) -> Result<Self, UntrustedDir> {
        let name = || dir.display().to_string();
        crate::files::create_private_dir_all(dir).map_err(|source| UntrustedDir::Create {
            dir: name(),
            source,
        })?;
        let meta = std::fs::metadata(dir).map_err(|source| UntrustedDir::Stat {
            dir: name(),
            source,
        })?;
        if !meta.is_dir() {
            return Err(UntrustedDir::NotDirectory { dir: name() });
        }
        check_private(&meta, 0o022).map_err(|e| match e {
            NotPrivate::Owner(owner) => UntrustedDir::NotOurs {
                dir: name(),
                owner,
                ours: euid(),
            },
            NotPrivate::Mode(mode) => UntrustedDir::Writable { dir: name(), mode },
        })?;
        let path = key_path(dir);
        let key = load_or_make_key(&path).map_err(|reason| UntrustedDir::Key {
            path: path.display().to_string(),
            reason,
        })?;
        Ok(Self {
            dir: dir.to_owned(),
            key: hmac::Key::new(hmac::HMAC_SHA256, &key),
        })
    }

    /// The tag of an entry whose contents are `parts`, one after another.
    pub fn tag(&self, parts: &[&[u8]]) -> [u8; TAG_LEN] {
        let mut ctx = hmac::Context::with_key(&self.key);
        for part in parts {
            ctx.update(part);
        }
        let mut tag = [0; TAG_LEN];
        tag.copy_from_slice(ctx.sign().as_ref());
        tag
    }

    /// Whether `tag` is this agent's tag of `data` (compared in constant time).
    pub fn verify(&self, data: &[u8], tag: &[u8]) -> bool {
        hmac::verify(&self.key, data, tag).is_ok()
    }
}

/// Where the key of the cache in `dir` lives: next to it, `<dir>.key`.
pub fn key_path(dir: &Path) -> PathBuf {
    let mut name = dir.components().collect::<PathBuf>().into_os_string();
    name.push(".key");
    PathBuf::from(name)
}

enum NotPrivate {
    Owner(u32),
    Mode(u32),
}

/// Whether `meta` is the agent user's and has none of the `forbidden` mode bits.
fn check_private(meta: &std::fs::Metadata, forbidden: u32) -> Result<(), NotPrivate> {
    if meta.uid() != euid() {
        return Err(NotPrivate::Owner(meta.uid()));
    }
    if meta.mode() & forbidden != 0 {
        return Err(NotPrivate::Mode(meta.mode() & 0o7777));
    }
    Ok(())
}

fn euid() -> u32 {
    // SAFETY: geteuid takes no arguments, touches no memory and cannot fail.
    unsafe { libc::geteuid() }
}

/// The key at `path`, made first if there is none (by this process or, racing with
/// it, another agent using the same directory: the first one's key wins).
fn load_or_make_key(path: &Path) -> Result<[u8; KEY_LEN], String> {
    if let Some(key) = read_key(path)? {
        return Ok(key);
    }
    make_key(path).map_err(|e| format!("cannot create it: {e}"))?;
    read_key(path)?.ok_or_else(|| "vanished as it was created".to_owned())
}

/// The key at `path` (none if there is no file), if it is a regular file of the agent's
/// user that nobody else can read or write, of the right length.
fn read_key(path: &Path) -> Result<Option<[u8; KEY_LEN]>, String> {
    use std::io::Read;
    let mut file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot open it: {e}")),
    };
    let meta = file.metadata().map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("is not a regular file".to_owned());
    }
    check_private(&meta, 0o077).map_err(|e| match e {
        NotPrivate::Owner(owner) => {
            format!(
                "belongs to uid {owner}, not to the agent's user (uid {})",
                euid()
            )
        }
        NotPrivate::Mode(mode) => {
            format!("its mode is {mode:04o}: it must be readable by its owner only (0600)")
        }
    })?;
    let mut key = [0; KEY_LEN];
    let mut rest = Vec::new();
    file.read_exact(&mut key)
        .and_then(|()| file.read_to_end(&mut rest))
        .map_err(|e| format!("cannot read it: {e}"))?;
    if !rest.is_empty() {
        return Err(format!("holds more than {KEY_LEN} bytes"));
    }
    Ok(Some(key))
}

/// Writes a new random key to `path` unless one is there: written whole to a temporary
/// file (0600), then linked to its name, which fails if another process got there first.
fn make_key(path: &Path) -> std::io::Result<()> {
    use ring::rand::SecureRandom;
    use std::io::Write;
    let mut key = [0; KEY_LEN];
    ring::rand::SystemRandom::new()
        .fill(&mut key)
        .map_err(|_| std::io::Error::other("no random bytes from the system"))?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let _ = std::fs::remove_file(&tmp);
    let made = (|| {
        let mut f = crate::files::private_file()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        f.write_all(&key)?;
        f.sync_all()?;
        match std::fs::hard_link(&tmp, path) {
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
            other => other,
        }
    })();
    let _ = std::fs::remove_file(&tmp);
    made
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn chmod(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn the_directory_is_created_private_with_a_private_key() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data/plugin-cache");
        let trusted = TrustedDir::open(&dir).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        let key = tmp.path().join("data/plugin-cache.key");
        assert_eq!(key_path(&dir), key);
        assert_eq!(mode(&key), 0o600);
        // The same key the next time: tags verify across restarts.
        let tag = trusted.tag(&[b"entry"]);
        assert!(TrustedDir::open(&dir).unwrap().verify(b"entry", &tag));
        assert!(!TrustedDir::open(&dir).unwrap().verify(b"entrx", &tag));
    }

    #[test]
    fn a_directory_others_can_write_is_not_used() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("plugin-cache");
        std::fs::create_dir(&dir).unwrap();
        for mode in [0o777, 0o775, 0o1777] {
            chmod(&dir, mode);
            let e = TrustedDir::open(&dir).err().expect("refused");
            assert!(matches!(e, UntrustedDir::Writable { .. }), "{mode:o}: {e}");
        }
        chmod(&dir, 0o755);
        TrustedDir::open(&dir).unwrap();
    }

    #[test]
    fn a_key_others_can_read_or_a_symlinked_key_is_not_used() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("plugin-cache");
        TrustedDir::open(&dir).unwrap();
        let key = key_path(&dir);
        chmod(&key, 0o644);
        let e = TrustedDir::open(&dir).err().expect("refused");
        assert!(e.to_string().contains("0644"), "{e}");
        std::fs::remove_file(&key).unwrap();
        let elsewhere = tmp.path().join("chosen.key");
        std::fs::write(&elsewhere, [7u8; KEY_LEN]).unwrap();
        chmod(&elsewhere, 0o600);
        std::os::unix::fs::symlink(&elsewhere, &key).unwrap();
        assert!(TrustedDir::open(&dir).is_err(), "a symlink is not the key");
    }
}
