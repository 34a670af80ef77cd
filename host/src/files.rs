//! Small file helpers shared by every part of the agent that keeps state on disk.

use std::io::Write;
use std::path::Path;

/// Replaces the file at `path` with `parts`, one after another: written to a temporary
/// file next to it, then renamed over it, so a crash leaves the old file or the new one,
/// never half of one (and a process watching the file never reads half of one). Creates
/// the directory. Not fsynced: a `kill -9` keeps it, a power cut may not ([`replace_synced`]).
pub fn replace(path: &Path, parts: &[&[u8]]) -> std::io::Result<()> {
    replace_with(path, parts, false)
}

/// Like [`replace`], and durable when it returns: the new file is fsynced before the
/// rename, and its directory after.
pub fn replace_synced(path: &Path, parts: &[&[u8]]) -> std::io::Result<()> {
    replace_with(path, parts, true)
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

fn replace_with(path: &Path, parts: &[&[u8]], sync: bool) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(format!(".tmp{}", std::process::id()));
    let tmp = dir.join(tmp_name);
    let written = (|| {
        let mut f = std::fs::File::create(&tmp)?;
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
