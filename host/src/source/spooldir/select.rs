//! Which files of the spool directory are picked, and in what order: names (include,
//! ignore, hidden files, the done and changed suffixes), readiness (a completion suffix,
//! or a quiet period without change) and the consumption order. Pure functions, apart
//! from [`list`], which reads the directory.

use serde::Deserialize;
use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};
use tokio::time::Instant;

/// The suffix a file that changed while being read is renamed with (never picked).
pub const CHANGED_SUFFIX: &str = ".CHANGED";

/// The order ready files are read in (Flume's `consumeOrder`).
#[derive(PartialEq, Eq, Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Order {
    /// Oldest modification time first (ties by path).
    Oldest,
    /// Youngest modification time first (ties by path).
    Youngest,
    /// By path, byte-wise.
    Name,
}

/// The name rules: which file names are candidates at all.
#[derive(Debug, Clone)]
pub struct Names {
    pub include: glob::Pattern,
    pub ignore: Vec<glob::Pattern>,
    pub done_suffix: String,
    pub completion_suffix: Option<String>,
    /// Read files that symbolic links in the directory point to (else links are
    /// skipped, and listed in [`Listing::symlinks`]).
    pub follow_symlinks: bool,
}

const MATCH: glob::MatchOptions = glob::MatchOptions {
    case_sensitive: true,
    require_literal_separator: true,
    require_literal_leading_dot: false,
};

impl Names {
    /// Whether a file called `name` may be read: not hidden, not marked done or changed,
    /// ending with the completion suffix when one is set, matched by `include` and by no
    /// `ignore` pattern.
    pub fn eligible(&self, name: &str) -> bool {
        if name.starts_with('.')
            || name.ends_with(&self.done_suffix)
            || name.ends_with(CHANGED_SUFFIX)
        {
            return false;
        }
        if let Some(suffix) = &self.completion_suffix
            && (!name.ends_with(suffix.as_str()) || name.len() == suffix.len())
        {
            return false;
        }
        self.include.matches_with(name, MATCH)
            && !self.ignore.iter().any(|p| p.matches_with(name, MATCH))
    }
}

/// A regular file found in the spool directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub path: PathBuf,
    pub size: u64,
    pub mtime: SystemTime,
    pub id: (u64, u64),
}

/// What listing the directory found: eligible files, what could not be read, and the
/// symbolic links skipped (not following them).
#[derive(Debug, Default)]
pub struct Listing {
    pub found: Vec<Found>,
    pub errors: Vec<(PathBuf, String)>,
    pub symlinks: Vec<PathBuf>,
}

/// Lists the eligible regular files of `dir` (and of its subdirectories, not hidden
/// ones, when `recursive`). Blocking.
pub fn list(dir: &Path, names: &Names, recursive: bool) -> Listing {
    let mut listing = Listing::default();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        let entries = match std::fs::read_dir(&d) {
            Ok(e) => e,
            Err(e) => {
                let message = format!("cannot list the spool directory {}: {e}", d.display());
                listing.errors.push((d, message));
                continue;
            }
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let path = entry.path();
            let file_type = entry.file_type();
            let is_dir = file_type.as_ref().is_ok_and(|t| t.is_dir());
            if is_dir {
                if recursive && !name.starts_with('.') {
                    dirs.push(path);
                }
                continue;
            }
            if !names.eligible(&name) {
                continue;
            }
            // A link may point anywhere the agent can read: only followed when asked
            // (then the file it points to is read, and the link renamed or deleted).
            if !names.follow_symlinks && file_type.as_ref().is_ok_and(|t| t.is_symlink()) {
                listing.symlinks.push(path);
                continue;
            }
            match std::fs::metadata(&path) {
                Ok(m) if m.is_file() => listing.found.push(Found {
                    mtime: m.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                    size: m.len(),
                    id: (m.dev(), m.ino()),
                    path,
                }),
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    let message = format!("cannot read {}: {e}", path.display());
                    listing.errors.push((path, message));
                }
            }
        }
    }
    listing
}

/// A file's size and modification time as first seen unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observed {
    pub size: u64,
    pub mtime: SystemTime,
    /// When the source first saw the file with this size and time.
    pub since: Instant,
}

/// Remembers what each file looked like at the scans, to tell when it is quiet.
#[derive(Debug, Default)]
pub struct Quiet {
    seen: HashMap<PathBuf, Observed>,
}

impl Quiet {
    /// Records this scan's files (forgetting those gone) and returns the ready ones.
    pub fn ready(
        &mut self,
        found: Vec<Found>,
        quiet: Duration,
        completion_suffix: bool,
        now: Instant,
        wall: SystemTime,
    ) -> Vec<Found> {
        let mut seen = HashMap::with_capacity(found.len());
        let mut ready = Vec::new();
        for f in found {
            let before = self.seen.get(&f.path).copied();
            let observed = match before {
                Some(o) if o.size == f.size && o.mtime == f.mtime => o,
                _ => Observed {
                    size: f.size,
                    mtime: f.mtime,
                    since: now,
                },
            };
            if completion_suffix || is_ready(before.as_ref(), &observed, quiet, now, wall) {
                ready.push(f.clone());
            }
            seen.insert(f.path, observed);
        }
        self.seen = seen;
        ready
    }
}

/// Whether a file is quiet: unchanged in size and modification time since an earlier
/// scan, and either seen so for `quiet`, or last modified at least `quiet` ago (a file
/// found at start need not be watched for a whole quiet period). Quiet period 0: every
/// file is ready at once.
pub fn is_ready(
    before: Option<&Observed>,
    now_seen: &Observed,
    quiet: Duration,
    now: Instant,
    wall: SystemTime,
) -> bool {
    if quiet.is_zero() {
        return true;
    }
    let Some(before) = before else {
        return false;
    };
    if before.size != now_seen.size || before.mtime != now_seen.mtime {
        return false;
    }
    let watched = now.saturating_duration_since(before.since) >= quiet;
    let old = wall
        .duration_since(now_seen.mtime)
        .is_ok_and(|age| age >= quiet);
    watched || old
}

/// Sorts ready files into reading order: files a previous run had begun (`resumed`)
/// first, then by `order`.
pub fn sort(files: &mut [Found], order: Order, resumed: impl Fn(&Found) -> bool) {
    files.sort_by(|a, b| {
        resumed(b).cmp(&resumed(a)).then_with(|| match order {
            Order::Oldest => a.mtime.cmp(&b.mtime).then_with(|| a.path.cmp(&b.path)),
            Order::Youngest => b.mtime.cmp(&a.mtime).then_with(|| a.path.cmp(&b.path)),
            Order::Name => a.path.cmp(&b.path),
        })
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(include: &str, ignore: &[&str], completion: Option<&str>) -> Names {
        Names {
            include: glob::Pattern::new(include).unwrap(),
            ignore: ignore
                .iter()
                .map(|p| glob::Pattern::new(p).unwrap())
                .collect(),
            done_suffix: ".COMPLETED".into(),
            completion_suffix: completion.map(str::to_owned),
            follow_symlinks: false,
        }
    }

    #[test]
    fn symlinks_are_skipped_unless_followed() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let secret = outside.path().join("secret");
        std::fs::write(&secret, "not for shipping\n").unwrap();
        std::fs::write(dir.path().join("a.log"), "a\n").unwrap();
        std::os::unix::fs::symlink(&secret, dir.path().join("b.log")).unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("sub")).unwrap();
        let mut n = names("*", &[], None);
        let found = |l: &Listing| {
            let mut p: Vec<_> = l.found.iter().map(|f| f.path.clone()).collect();
            p.sort();
            p
        };
        let listing = list(dir.path(), &n, true);
        assert_eq!(found(&listing), [dir.path().join("a.log")]);
        let mut links = listing.symlinks.clone();
        links.sort();
        assert_eq!(links, [dir.path().join("b.log"), dir.path().join("sub")]);
        n.follow_symlinks = true;
        let listing = list(dir.path(), &n, true);
        assert_eq!(
            found(&listing),
            [dir.path().join("a.log"), dir.path().join("b.log")]
        );
        assert!(listing.symlinks.is_empty());
    }

    #[test]
    fn names_include_ignore_hidden_and_suffixes() {
        let n = names("*", &["*.tmp", "skip-*"], None);
        assert!(n.eligible("app.log"));
        assert!(n.eligible("app.log.1"));
        assert!(!n.eligible("app.log.tmp"));
        assert!(!n.eligible("skip-this.log"));
        assert!(!n.eligible(".app.log"), "hidden files are never picked");
        assert!(!n.eligible("app.log.COMPLETED"));
        assert!(!n.eligible("app.log.1.COMPLETED"));
        assert!(!n.eligible("app.log.CHANGED"));
        let n = names("*.log", &[], None);
        assert!(n.eligible("a.log"));
        assert!(!n.eligible("a.txt"));
        // With a completion suffix, only finished files, and the include still applies.
        let n = names("*.done", &[], Some(".done"));
        assert!(n.eligible("a.log.done"));
        assert!(!n.eligible("a.log"));
        assert!(!n.eligible(".done"));
        let n = names("a*", &[], Some(".ready"));
        assert!(n.eligible("a.ready"));
        assert!(!n.eligible("b.ready"));
    }

    fn found(path: &str, size: u64, mtime_secs: u64) -> Found {
        Found {
            path: PathBuf::from(path),
            size,
            mtime: SystemTime::UNIX_EPOCH + Duration::from_secs(mtime_secs),
            id: (1, size),
        }
    }

    #[test]
    fn a_file_is_ready_once_it_stayed_unchanged_for_the_quiet_period() {
        let quiet = Duration::from_secs(5);
        let t0 = Instant::now();
        // The file was modified "now" (wall clock = its mtime): only watching helps.
        let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let mut q = Quiet::default();
        let ready = |q: &mut Quiet, f: Found, at: u64| {
            q.ready(vec![f], quiet, false, t0 + Duration::from_secs(at), wall)
                .len()
        };
        assert_eq!(ready(&mut q, found("/s/a", 10, 1000), 0), 0, "first sight");
        assert_eq!(
            ready(&mut q, found("/s/a", 10, 1000), 3),
            0,
            "quiet for 3 s"
        );
        assert_eq!(ready(&mut q, found("/s/a", 20, 1000), 6), 0, "it grew");
        assert_eq!(ready(&mut q, found("/s/a", 20, 1000), 10), 0, "4 s since");
        assert_eq!(ready(&mut q, found("/s/a", 20, 1000), 11), 1, "5 s since");
        // Same size, touched: the clock starts again.
        assert_eq!(ready(&mut q, found("/s/a", 20, 1001), 12), 0);
        // A file gone from a scan is forgotten.
        assert_eq!(ready(&mut q, found("/s/b", 1, 1000), 13), 0);
        assert_eq!(ready(&mut q, found("/s/a", 20, 1001), 30), 0);
    }

    #[test]
    fn an_old_file_is_ready_at_its_second_sighting_and_suffixes_at_the_first() {
        let quiet = Duration::from_secs(5);
        let t0 = Instant::now();
        let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(2000);
        let mut q = Quiet::default();
        let old = found("/s/old", 10, 100);
        assert!(
            q.ready(vec![old.clone()], quiet, false, t0, wall)
                .is_empty()
        );
        let later = t0 + Duration::from_millis(100);
        assert_eq!(q.ready(vec![old.clone()], quiet, false, later, wall), [old]);
        // An mtime in the future (clock skew) waits for the watched quiet period.
        let future = found("/s/future", 10, 5000);
        let mut q = Quiet::default();
        assert!(
            q.ready(vec![future.clone()], quiet, false, t0, wall)
                .is_empty()
        );
        assert!(
            q.ready(vec![future.clone()], quiet, false, later, wall)
                .is_empty()
        );
        let after = t0 + Duration::from_secs(6);
        assert_eq!(
            q.ready(vec![future.clone()], quiet, false, after, wall)
                .len(),
            1
        );
        // Completion-suffix mode: the name says it is finished.
        let mut q = Quiet::default();
        let fresh = found("/s/a.done", 10, 2000);
        assert_eq!(q.ready(vec![fresh], quiet, true, t0, wall).len(), 1);
        // Quiet period 0: at once.
        let mut q = Quiet::default();
        let fresh = found("/s/a", 10, 2000);
        assert_eq!(
            q.ready(vec![fresh], Duration::ZERO, false, t0, wall).len(),
            1
        );
    }

    #[test]
    fn ordering_puts_resumed_files_first_then_by_order() {
        let files = vec![
            found("/s/c", 1, 30),
            found("/s/a", 2, 20),
            found("/s/b", 3, 10),
            found("/s/d", 4, 10),
        ];
        let paths = |order: Order, resumed: Option<&str>| {
            let mut f = files.clone();
            sort(&mut f, order, |f| Some(f.path.to_str().unwrap()) == resumed);
            f.iter()
                .map(|f| f.path.file_name().unwrap().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("")
        };
        assert_eq!(paths(Order::Oldest, None), "bdac");
        assert_eq!(paths(Order::Youngest, None), "cabd");
        assert_eq!(paths(Order::Name, None), "abcd");
        assert_eq!(paths(Order::Oldest, Some("/s/c")), "cbda");
    }

    #[test]
    fn listing_skips_what_is_not_eligible_and_recurses_when_asked() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for name in ["a.log", "b.log.COMPLETED", ".c.log", "d.tmp"] {
            std::fs::write(d.join(name), "x\n").unwrap();
        }
        std::fs::create_dir(d.join("sub")).unwrap();
        std::fs::write(d.join("sub/e.log"), "x\n").unwrap();
        std::fs::create_dir(d.join(".hidden")).unwrap();
        std::fs::write(d.join(".hidden/f.log"), "x\n").unwrap();
        let n = names("*", &["*.tmp"], None);
        let mut got: Vec<_> = list(d, &n, false)
            .found
            .into_iter()
            .map(|f| f.path.strip_prefix(d).unwrap().to_path_buf())
            .collect();
        assert_eq!(got, [PathBuf::from("a.log")]);
        got = list(d, &n, true)
            .found
            .into_iter()
            .map(|f| f.path.strip_prefix(d).unwrap().to_path_buf())
            .collect();
        got.sort();
        assert_eq!(got, [PathBuf::from("a.log"), PathBuf::from("sub/e.log")]);
        let missing = list(&d.join("nope"), &n, false);
        assert!(missing.errors[0].1.contains("nope"), "{:?}", missing.errors);
    }
}
