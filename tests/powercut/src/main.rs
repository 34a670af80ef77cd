//! `runnel-powercut BACKING MOUNTPOINT`: mounts MOUNTPOINT over the directory BACKING (the
//! "disk"), keeping every file's written data in memory until that file is fsynced.
//! It prints `mounted` once the mount is ready, then waits for a signal:
//! - SIGUSR1, the power cut: every write not fsynced is dropped, the mount goes away, and
//!   it prints `power cut: dropped BYTES bytes in FILES files`;
//! - SIGTERM or SIGINT, a clean stop: what is unsynced is written to BACKING (as an
//!   unmount syncs), the mount goes away, and it prints
//!   `unmounted: wrote back BYTES bytes of FILES files`.
//!
//! Either way BACKING then holds what a disk would, and the same command mounts it again.
//! See README.md for what the model covers and what it does not.

mod fs;
mod unsynced;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use fuser::{Config, MountOption};
use nix::sys::signal::{SigSet, Signal};

fn main() -> ExitCode {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let [backing, mountpoint] = args.as_slice() else {
        eprintln!("usage: runnel-powercut BACKING_DIR MOUNTPOINT");
        return ExitCode::from(2);
    };
    match run(backing, mountpoint) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("runnel-powercut: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(backing: &Path, mountpoint: &Path) -> Result<(), String> {
    let filesystem = fs::PowerCutFs::new(backing)
        .map_err(|e| format!("backing directory {}: {e}", backing.display()))?;
    // The signals are taken by `wait` below: blocked before the file system's thread
    // starts, so that thread inherits the mask and never takes them.
    let mut signals = SigSet::empty();
    for signal in [Signal::SIGUSR1, Signal::SIGTERM, Signal::SIGINT] {
        signals.add(signal);
    }
    signals
        .thread_block()
        .map_err(|e| format!("block signals: {e}"))?;

    let mut config = Config::default();
    config.mount_options = vec![
        MountOption::FSName("runnel-powercut".to_owned()),
        MountOption::DefaultPermissions,
    ];
    let session = fuser::spawn_mount(filesystem.clone(), mountpoint, &config)
        .map_err(|e| format!("mount {}: {e}", mountpoint.display()))?;
    println!("mounted");
    let _ = std::io::stdout().flush();

    let signal = signals
        .wait()
        .map_err(|e| format!("wait for a signal: {e}"))?;
    let said = if signal == Signal::SIGUSR1 {
        let dropped = filesystem.cut();
        format!(
            "power cut: dropped {} bytes in {} files",
            dropped.bytes, dropped.files
        )
    } else {
        let written = filesystem
            .write_back()
            .map_err(|e| format!("write back to {}: {e}", backing.display()))?;
        format!(
            "unmounted: wrote back {} bytes of {} files",
            written.bytes, written.files
        )
    };
    // A lazy unmount: it succeeds even while a (killed) process still holds a file open;
    // those get errors from now on.
    nix::mount::umount2(mountpoint, nix::mount::MntFlags::MNT_DETACH)
        .map_err(|e| format!("unmount {}: {e}", mountpoint.display()))?;
    // The session's thread ends with the process (joining it could wait for the last
    // holder of an open file).
    std::mem::forget(session);
    println!("{said}");
    let _ = std::io::stdout().flush();
    Ok(())
}
