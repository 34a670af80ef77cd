//! What happens to a spooled file once every line of it is in the channels: renamed
//! with the done suffix, or deleted; and to one that changed while being read: renamed
//! with [`CHANGED_SUFFIX`](super::select::CHANGED_SUFFIX). A rename never replaces an
//! existing file.

use std::ffi::OsString;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// How a finished file was put away.
#[derive(Debug, PartialEq, Eq)]
pub enum Finished {
    Renamed(PathBuf),
    /// The name with the suffix was taken by another file: renamed to the first free
    /// `NAME.N<suffix>` instead.
    RenamedAside {
        taken: PathBuf,
        to: PathBuf,
    },
    Deleted,
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = OsString::from(path.as_os_str());
    name.push(suffix);
    PathBuf::from(name)
}

/// Renames `path` (the file `id`) to `path + suffix`; when that name is taken by another
/// file, to the first free `path.N + suffix`. A target that is the same file (a rename
/// done as a link, interrupted) just loses the old name. Blocking.
pub fn rename(path: &Path, id: (u64, u64), suffix: &str) -> std::io::Result<Finished> {
    let target = with_suffix(path, suffix);
    let mut to = target.clone();
    for n in 1u32.. {
        match std::fs::symlink_metadata(&to) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
            Err(e) => return Err(e),
            Ok(m) if (m.dev(), m.ino()) == id => {
                std::fs::remove_file(path)?;
                return Ok(Finished::Renamed(to));
            }
            Ok(_) => {
                if n > 10_000 {
                    return Err(std::io::Error::other(format!(
                        "{} and 10000 alternatives exist",
                        target.display()
                    )));
                }
                to = with_suffix(path, &format!(".{n}{suffix}"));
            }
        }
    }
    std::fs::rename(path, &to)?;
    Ok(if to == target {
        Finished::Renamed(to)
    } else {
        Finished::RenamedAside { taken: target, to }
    })
}

pub fn delete(path: &Path) -> std::io::Result<Finished> {
    std::fs::remove_file(path)?;
    Ok(Finished::Deleted)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(path: &Path) -> (u64, u64) {
        let m = std::fs::metadata(path).unwrap();
        (m.dev(), m.ino())
    }

    #[test]
    fn renames_never_replace_another_file() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.log");
        std::fs::write(&a, "first\n").unwrap();
        assert_eq!(
            rename(&a, id(&a), ".COMPLETED").unwrap(),
            Finished::Renamed(dir.path().join("a.log.COMPLETED"))
        );
        // The same name again, for other content: set aside, nothing overwritten.
        std::fs::write(&a, "second\n").unwrap();
        let got = rename(&a, id(&a), ".COMPLETED").unwrap();
        assert_eq!(
            got,
            Finished::RenamedAside {
                taken: dir.path().join("a.log.COMPLETED"),
                to: dir.path().join("a.log.1.COMPLETED"),
            }
        );
        let read = |n: &str| std::fs::read_to_string(dir.path().join(n)).unwrap();
        assert_eq!(read("a.log.COMPLETED"), "first\n");
        assert_eq!(read("a.log.1.COMPLETED"), "second\n");
        assert!(!a.exists());

        // Both names for one file (a hard link): the old name goes.
        std::fs::write(&a, "third\n").unwrap();
        let i = id(&a);
        std::fs::hard_link(&a, dir.path().join("a.log.2.COMPLETED")).unwrap();
        assert_eq!(
            rename(&a, i, ".COMPLETED").unwrap(),
            Finished::Renamed(dir.path().join("a.log.2.COMPLETED"))
        );
        assert!(!a.exists());
        // A vanished file is an error naming nothing silently.
        assert!(rename(&a, i, ".COMPLETED").is_err());
        assert!(delete(&a).is_err());
    }
}
