//! The file system through the kernel: real system calls on the mount, then a power cut
//! (or a clean stop), then what the backing directory holds. Needs /dev/fuse and root
//! (CI has both); fails, saying so, without them.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};

struct Mounted {
    child: Child,
    stdout: BufReader<ChildStdout>,
    mount: PathBuf,
}

impl Mounted {
    fn new(disk: &Path, mount: &Path) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_runnel-powercut"))
            .arg(disk)
            .arg(mount)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        assert_eq!(
            line.trim(),
            "mounted",
            "runnel-powercut could not mount (needs /dev/fuse and root)"
        );
        Self {
            child,
            stdout,
            mount: mount.to_path_buf(),
        }
    }

    /// Sends `signal`, waits for the exit; returns the last line printed.
    fn stop(mut self, signal: &str) -> String {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        assert!(self.child.wait().unwrap().success());
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
        assert!(!mounts.contains(self.mount.to_str().unwrap()), "{mounts}");
        line.trim().to_owned()
    }
}

fn dirs() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let (disk, mount) = (dir.path().join("disk"), dir.path().join("mount"));
    std::fs::create_dir(&disk).unwrap();
    std::fs::create_dir(&mount).unwrap();
    (dir, disk, mount)
}

#[test]
fn a_power_cut_keeps_exactly_what_was_fsynced() {
    let (_dir, disk, mount) = dirs();
    let fs = Mounted::new(&disk, &mount);
    let m = &fs.mount;
    std::fs::create_dir(m.join("wal")).unwrap();
    let mut log = std::fs::File::create(m.join("wal/log")).unwrap();
    log.write_all(b"first ").unwrap();
    log.sync_data().unwrap();
    log.write_all(b"second ").unwrap();
    log.sync_all().unwrap();
    log.write_all(b"lost").unwrap();
    // Reads see what is not synced yet (the page cache).
    assert_eq!(
        std::fs::read(m.join("wal/log")).unwrap(),
        b"first second lost"
    );
    assert_eq!(std::fs::metadata(m.join("wal/log")).unwrap().len(), 17);
    // A rewrite in place, not synced, is lost: the old bytes stay.
    log.write_all_at(b"FIRST", 0).unwrap();
    // A file never synced exists (metadata) and is empty.
    std::fs::write(m.join("never-synced"), b"gone").unwrap();
    // Written, closed, never synced, then deleted: nothing to lose.
    std::fs::write(m.join("deleted"), b"gone too").unwrap();
    std::fs::remove_file(m.join("deleted")).unwrap();
    drop(log);

    assert_eq!(fs.stop("-USR1"), "power cut: dropped 13 bytes in 2 files");
    assert_eq!(
        std::fs::read(disk.join("wal/log")).unwrap(),
        b"first second "
    );
    assert_eq!(std::fs::read(disk.join("never-synced")).unwrap(), b"");
    assert!(!disk.join("deleted").exists());
}

#[test]
fn a_file_renamed_over_another_is_written_first_and_truncation_is_metadata() {
    let (_dir, disk, mount) = dirs();
    let fs = Mounted::new(&disk, &mount);
    let m = &fs.mount;
    // The first version has nothing to replace: it is not written before the rename.
    std::fs::write(m.join("positions.tmp"), b"v1").unwrap();
    std::fs::rename(m.join("positions.tmp"), m.join("positions")).unwrap();
    std::fs::write(m.join("positions.tmp"), b"v2").unwrap();
    std::fs::rename(m.join("positions.tmp"), m.join("positions")).unwrap();
    // A truncation reaches the disk at once; the unsynced write before it is cut.
    let file = std::fs::File::create(m.join("segment")).unwrap();
    file.write_all_at(b"0123456789", 0).unwrap();
    file.sync_data().unwrap();
    file.write_all_at(b"abcdefghij", 10).unwrap();
    file.set_len(4).unwrap();
    assert_eq!(std::fs::read(m.join("segment")).unwrap(), b"0123");
    drop(file);

    assert_eq!(fs.stop("-USR1"), "power cut: dropped 0 bytes in 0 files");
    assert_eq!(std::fs::read(disk.join("positions")).unwrap(), b"v2");
    assert_eq!(std::fs::read(disk.join("segment")).unwrap(), b"0123");
}

#[test]
fn a_clean_stop_writes_everything_back_and_the_disk_mounts_again() {
    let (_dir, disk, mount) = dirs();
    let fs = Mounted::new(&disk, &mount);
    std::fs::write(fs.mount.join("state"), b"kept").unwrap();
    assert_eq!(fs.stop("-TERM"), "unmounted: wrote back 4 bytes of 1 files");
    assert_eq!(std::fs::read(disk.join("state")).unwrap(), b"kept");

    let fs = Mounted::new(&disk, &mount);
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(fs.mount.join("state"))
        .unwrap();
    assert_eq!(std::fs::read(fs.mount.join("state")).unwrap(), b"kept");
    file.write_all(b" and more").unwrap();
    drop(file);
    assert_eq!(
        std::fs::read(fs.mount.join("state")).unwrap(),
        b"kept and more"
    );
    assert_eq!(fs.stop("-USR1"), "power cut: dropped 9 bytes in 1 files");
    assert_eq!(std::fs::read(disk.join("state")).unwrap(), b"kept");
}
