//! The position file: where each followed file has been read to, as far as the
//! channels hold it. JSON, replaced atomically (a temporary file in the same directory,
//! then a rename), so a crash leaves either the old or the new file, never half of one.
//! It is not fsynced: a position that lags only means lines are read again.

use super::tracked::Fingerprint;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The format's version, written into the file and checked when reading it.
const VERSION: u32 = 1;

/// One followed file's position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    pub dev: u64,
    pub inode: u64,
    pub fingerprint: Fingerprint,
    /// Bytes of the file whose lines are safely in the channels (always a line end).
    pub offset: u64,
    /// The path the file last had (informational: files are matched by identity).
    pub path: PathBuf,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PositionFile {
    version: u32,
    files: Vec<Entry>,
}

/// Reads the position file: `Ok(None)` when there is none (a first start), an error
/// naming the path when it cannot be read or parsed.
pub fn load(path: &Path) -> Result<Option<Vec<Entry>>, String> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(format!(
                "cannot read the position file {}: {e}",
                path.display()
            ));
        }
    };
    let file: PositionFile = serde_json::from_slice(&bytes)
        .map_err(|e| format!("the position file {} is corrupt: {e}", path.display()))?;
    if file.version != VERSION {
        return Err(format!(
            "the position file {} has version {}, expected {VERSION}",
            path.display(),
            file.version
        ));
    }
    Ok(Some(file.files))
}

/// Replaces the position file with `entries`, atomically; creates its directory.
pub fn save(path: &Path, entries: &[Entry]) -> std::io::Result<()> {
    let file = PositionFile {
        version: VERSION,
        files: entries.to_vec(),
    };
    let json = serde_json::to_vec_pretty(&file).map_err(std::io::Error::other)?;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".tmp");
    let tmp = dir.join(tmp_name);
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(&json)?;
    f.write_all(b"\n")?;
    drop(f);
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(inode: u64, offset: u64) -> Entry {
        Entry {
            dev: 7,
            inode,
            fingerprint: Fingerprint::of(b"first line\n"),
            offset,
            path: PathBuf::from(format!("/var/log/app/{inode}.log")),
        }
    }

    #[test]
    fn round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/dir/app.positions.json");
        assert_eq!(load(&path).unwrap(), None);
        let entries = vec![entry(1, 10), entry(2, 0)];
        save(&path, &entries).unwrap();
        assert_eq!(load(&path).unwrap(), Some(entries));
        // Replaced as a whole, leaving no temporary file behind.
        save(&path, &[entry(3, 5)]).unwrap();
        assert_eq!(load(&path).unwrap(), Some(vec![entry(3, 5)]));
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["app.positions.json"]);
    }

    #[test]
    fn a_stale_temporary_file_does_not_matter() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.json");
        // A crash mid-write leaves a partial temporary file; the real one is intact.
        save(&path, &[entry(1, 1)]).unwrap();
        std::fs::write(dir.path().join("p.json.tmp"), "{\"version\":1,\"fi").unwrap();
        assert_eq!(load(&path).unwrap(), Some(vec![entry(1, 1)]));
        save(&path, &[entry(1, 2)]).unwrap();
        assert_eq!(load(&path).unwrap(), Some(vec![entry(1, 2)]));
    }

    #[test]
    fn corrupt_files_are_an_error_naming_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.json");
        std::fs::write(&path, "{not json").unwrap();
        let e = load(&path).unwrap_err();
        assert!(e.contains("corrupt") && e.contains("p.json"), "{e}");
        std::fs::write(&path, "{\"version\":9,\"files\":[]}").unwrap();
        assert!(load(&path).unwrap_err().contains("version 9"));
    }
}
