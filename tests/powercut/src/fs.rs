//! The file system: a passthrough to the backing directory (the "disk") that keeps each
//! file's written data in memory until that file is fsynced. See README.md for the model.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::{self, File, Metadata, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, LockOwner,
    OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty,
    ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request, TimeOrNow, WriteFlags,
};

use crate::unsynced::Unsynced;

/// How long the kernel may cache names and attributes: nothing changes the backing
/// directory behind the mount's back while it is mounted.
const TTL: Duration = Duration::from_secs(1);

/// What a power cut or a clean stop did: bytes and files.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    pub bytes: u64,
    pub files: u64,
}

/// Clones share one state: the FUSE session gets one, the thread that cuts the power
/// keeps another.
#[derive(Clone)]
pub struct PowerCutFs {
    state: Arc<Mutex<State>>,
}

struct State {
    nodes: HashMap<u64, Node>,
    /// Backing inode number → our inode number, for the files that still have a name.
    by_disk_ino: HashMap<u64, u64>,
    next_ino: u64,
    handles: HashMap<u64, Handle>,
    next_fh: u64,
    /// Set by the power cut: from then on nothing reaches the disk.
    cut: bool,
}

struct Node {
    /// Where it is in the backing directory (its last name).
    path: PathBuf,
    /// The kernel's references (lookups not yet forgotten).
    lookups: u64,
    /// Open handles.
    open: u64,
    /// The backing file, read-write, while the file is open or holds unsynced data.
    file: Option<File>,
    unsynced: Unsynced,
}

enum Handle {
    File,
    Dir(Vec<(u64, FileType, OsString)>),
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl PowerCutFs {
    pub fn new(backing: &Path) -> io::Result<Self> {
        let root = fs::canonicalize(backing)?;
        let meta = fs::metadata(&root)?;
        let mut nodes = HashMap::new();
        nodes.insert(INodeNo::ROOT.0, Node::new(root));
        Ok(Self {
            state: Arc::new(Mutex::new(State {
                nodes,
                by_disk_ino: HashMap::from([(meta.ino(), INodeNo::ROOT.0)]),
                next_ino: INodeNo::ROOT.0 + 1,
                handles: HashMap::new(),
                next_fh: 1,
                cut: false,
            })),
        })
    }

    /// The power cut: every write not fsynced is dropped, and nothing reaches the disk
    /// any more (every later operation fails with EIO).
    pub fn cut(&self) -> Tally {
        let mut state = lock(&self.state);
        state.cut = true;
        let mut dropped = Tally::default();
        for node in state.nodes.values_mut() {
            if !node.unsynced.is_empty() {
                dropped.bytes += node.unsynced.bytes();
                dropped.files += 1;
                node.unsynced = Unsynced::default();
            }
        }
        dropped
    }

    /// A clean stop: everything unsynced is written to the disk (as unmounting does),
    /// then, as after a cut, nothing more is.
    pub fn write_back(&self) -> io::Result<Tally> {
        let mut state = lock(&self.state);
        let mut written = Tally::default();
        for node in state.nodes.values_mut() {
            if !node.unsynced.is_empty() {
                written.bytes += node.unsynced.bytes();
                written.files += 1;
                node.sync()?;
            }
        }
        state.cut = true;
        Ok(written)
    }

    /// The state, unless the power was cut (EIO then, as from a dead disk).
    fn live(&self) -> Result<MutexGuard<'_, State>, Errno> {
        let state = lock(&self.state);
        if state.cut {
            return Err(Errno::EIO);
        }
        Ok(state)
    }
}

impl Node {
    fn new(path: PathBuf) -> Self {
        Self {
            path,
            lookups: 0,
            open: 0,
            file: None,
            unsynced: Unsynced::default(),
        }
    }

    fn metadata(&self) -> io::Result<Metadata> {
        match &self.file {
            Some(f) => f.metadata(),
            None => fs::symlink_metadata(&self.path),
        }
    }

    /// The backing file, opened read-write on first use.
    fn backing(&mut self) -> io::Result<&File> {
        if self.file.is_none() {
            self.file = Some(OpenOptions::new().read(true).write(true).open(&self.path)?);
        }
        Ok(self.file.as_ref().expect("just opened"))
    }

    /// Makes the unsynced data durable: written to the backing file.
    fn sync(&mut self) -> io::Result<()> {
        if self.unsynced.is_empty() {
            return Ok(());
        }
        let writes = self.unsynced.take();
        let file = self.backing()?;
        for (offset, data) in writes {
            file.write_all_at(&data, offset)?;
        }
        Ok(())
    }

    /// Closes the backing file once nothing needs it.
    fn close_if_idle(&mut self) {
        if self.open == 0 && self.unsynced.is_empty() {
            self.file = None;
        }
    }

    fn attr(&self, ino: u64, meta: &Metadata) -> FileAttr {
        let time = |secs: i64, nsecs: i64| {
            UNIX_EPOCH
                + Duration::from_secs(u64::try_from(secs).unwrap_or(0))
                + Duration::from_nanos(u64::try_from(nsecs).unwrap_or(0))
        };
        FileAttr {
            ino: INodeNo(ino),
            size: self.unsynced.len_over(meta.len()),
            blocks: meta.blocks(),
            atime: time(meta.atime(), meta.atime_nsec()),
            mtime: time(meta.mtime(), meta.mtime_nsec()),
            ctime: time(meta.ctime(), meta.ctime_nsec()),
            crtime: UNIX_EPOCH,
            kind: FileType::from_std(meta.file_type()).unwrap_or(FileType::RegularFile),
            perm: (meta.mode() & 0o7777) as u16,
            nlink: u32::try_from(meta.nlink()).unwrap_or(u32::MAX),
            uid: meta.uid(),
            gid: meta.gid(),
            rdev: u32::try_from(meta.rdev()).unwrap_or(0),
            blksize: 4096,
            flags: 0,
        }
    }
}

impl State {
    fn node(&mut self, ino: INodeNo) -> Result<&mut Node, Errno> {
        self.nodes.get_mut(&ino.0).ok_or(Errno::ENOENT)
    }

    fn child(&mut self, parent: INodeNo, name: &OsStr) -> Result<PathBuf, Errno> {
        Ok(self.node(parent)?.path.join(name))
    }

    /// Our inode for the backing file at `path` (a new one for a file not seen yet).
    fn intern(&mut self, path: PathBuf, meta: &Metadata) -> u64 {
        if let Some(&ino) = self.by_disk_ino.get(&meta.ino())
            && let Some(node) = self.nodes.get_mut(&ino)
        {
            node.path = path;
            return ino;
        }
        let ino = self.next_ino;
        self.next_ino += 1;
        self.nodes.insert(ino, Node::new(path));
        self.by_disk_ino.insert(meta.ino(), ino);
        ino
    }

    /// Looks `path` up, counting a kernel reference: the reply to an entry request.
    fn entry(&mut self, path: PathBuf) -> Result<FileAttr, Errno> {
        let meta = fs::symlink_metadata(&path)?;
        let ino = self.intern(path, &meta);
        let node = self.nodes.get_mut(&ino).expect("interned");
        node.lookups += 1;
        Ok(node.attr(ino, &meta))
    }

    /// The file at `path` loses a name; when it was its last, its data goes with it.
    fn unlinked(&mut self, meta: &Metadata) {
        if meta.nlink() > 1 && !meta.is_dir() {
            return;
        }
        if let Some(ino) = self.by_disk_ino.remove(&meta.ino())
            && let Some(node) = self.nodes.get_mut(&ino)
        {
            node.unsynced = Unsynced::default();
            node.close_if_idle();
        }
    }

    fn new_handle(&mut self, handle: Handle) -> u64 {
        let fh = self.next_fh;
        self.next_fh += 1;
        self.handles.insert(fh, handle);
        fh
    }

    fn attr_of(&mut self, ino: INodeNo) -> Result<FileAttr, Errno> {
        let node = self.node(ino)?;
        let meta = node.metadata()?;
        Ok(node.attr(ino.0, &meta))
    }
}

/// A reply that can carry an error.
trait ErrorReply {
    fn fail(self, e: Errno);
}

macro_rules! error_reply {
    ($($t:ty),*) => {
        $(impl ErrorReply for $t {
            fn fail(self, e: Errno) {
                self.error(e)
            }
        })*
    };
}
error_reply!(
    ReplyAttr,
    ReplyCreate,
    ReplyData,
    ReplyEmpty,
    ReplyEntry,
    ReplyOpen,
    ReplyStatfs,
    ReplyWrite
);

/// Runs `op`; replies with its value through `ok`, or with its error.
fn answer<R: ErrorReply, T>(
    reply: R,
    op: impl FnOnce() -> Result<T, Errno>,
    ok: impl FnOnce(R, T),
) {
    match op() {
        Ok(v) => ok(reply, v),
        Err(e) => reply.fail(e),
    }
}

/// `answer(reply, || { block }, ok)`.
macro_rules! reply {
    ($reply:ident, $result:expr, $ok:expr) => {
        answer($reply, || $result, $ok)
    };
}

impl Filesystem for PowerCutFs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        reply!(
            reply,
            {
                let mut state = self.live()?;
                let path = state.child(parent, name)?;
                state.entry(path)
            },
            |r: ReplyEntry, attr| r.entry(&TTL, &attr, Generation(0))
        );
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        let mut state = lock(&self.state);
        let Some(node) = state.nodes.get_mut(&ino.0) else {
            return;
        };
        node.lookups = node.lookups.saturating_sub(nlookup);
        if ino != INodeNo::ROOT && node.lookups == 0 && node.open == 0 && node.unsynced.is_empty() {
            state.nodes.remove(&ino.0);
            state.by_disk_ino.retain(|_, i| *i != ino.0);
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        reply!(reply, self.live()?.attr_of(ino), |r: ReplyAttr, attr| r
            .attr(&TTL, &attr));
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        reply!(
            reply,
            {
                let mut state = self.live()?;
                let node = state.node(ino)?;
                if let Some(mode) = mode {
                    fs::set_permissions(&node.path, fs::Permissions::from_mode(mode & 0o7777))?;
                }
                if uid.is_some() || gid.is_some() {
                    std::os::unix::fs::lchown(&node.path, uid, gid)?;
                }
                if let Some(size) = size {
                    // Metadata: the disk's length changes at once; what was unsynced past
                    // it is gone.
                    node.backing()?.set_len(size)?;
                    node.unsynced.truncate(size);
                }
                if atime.is_some() || mtime.is_some() {
                    let at = |t: TimeOrNow| match t {
                        TimeOrNow::SpecificTime(t) => t,
                        TimeOrNow::Now => SystemTime::now(),
                    };
                    let mut times = fs::FileTimes::new();
                    if let Some(t) = atime {
                        times = times.set_accessed(at(t));
                    }
                    if let Some(t) = mtime {
                        times = times.set_modified(at(t));
                    }
                    File::open(&node.path)?.set_times(times)?;
                }
                node.close_if_idle();
                state.attr_of(ino)
            },
            |r: ReplyAttr, attr| r.attr(&TTL, &attr)
        );
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        reply!(
            reply,
            Ok(fs::read_link(&self.live()?.node(ino)?.path)?),
            |r: ReplyData, target: PathBuf| r.data(target.as_os_str().as_encoded_bytes())
        );
    }

    fn mkdir(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        reply!(
            reply,
            {
                let mut state = self.live()?;
                let path = state.child(parent, name)?;
                fs::DirBuilder::new()
                    .mode(mode & !umask & 0o7777)
                    .create(&path)?;
                state.entry(path)
            },
            |r: ReplyEntry, attr| r.entry(&TTL, &attr, Generation(0))
        );
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        reply!(
            reply,
            {
                let mut state = self.live()?;
                let path = state.child(parent, name)?;
                let meta = fs::symlink_metadata(&path)?;
                fs::remove_file(&path)?;
                state.unlinked(&meta);
                Ok(())
            },
            |r: ReplyEmpty, ()| r.ok()
        );
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        reply!(
            reply,
            {
                let mut state = self.live()?;
                let path = state.child(parent, name)?;
                let meta = fs::symlink_metadata(&path)?;
                fs::remove_dir(&path)?;
                state.unlinked(&meta);
                Ok(())
            },
            |r: ReplyEmpty, ()| r.ok()
        );
    }

    fn symlink(
        &self,
        _req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        reply!(
            reply,
            {
                let mut state = self.live()?;
                let path = state.child(parent, link_name)?;
                std::os::unix::fs::symlink(target, &path)?;
                state.entry(path)
            },
            |r: ReplyEntry, attr| r.entry(&TTL, &attr, Generation(0))
        );
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        reply!(
            reply,
            {
                if !(flags - RenameFlags::RENAME_NOREPLACE).is_empty() {
                    return Err(Errno::EINVAL);
                }
                let mut state = self.live()?;
                let from = state.child(parent, name)?;
                let to = state.child(newparent, newname)?;
                let moved = fs::symlink_metadata(&from)?;
                let replaced = fs::symlink_metadata(&to).ok();
                if replaced.is_some() && flags.contains(RenameFlags::RENAME_NOREPLACE) {
                    return Err(Errno::EEXIST);
                }
                // ext4's auto_da_alloc: a file renamed over another has its data written
                // before the rename commits, so "write a temporary file, rename it over
                // the old one" never leaves an empty file.
                if replaced.as_ref().is_some_and(|m| m.is_file())
                    && let Some(&ino) = state.by_disk_ino.get(&moved.ino())
                    && let Some(node) = state.nodes.get_mut(&ino)
                {
                    node.sync()?;
                }
                fs::rename(&from, &to)?;
                if let Some(replaced) = replaced
                    && replaced.ino() != moved.ino()
                {
                    state.unlinked(&replaced);
                }
                // Every name under a moved directory moves with it.
                for node in state.nodes.values_mut() {
                    if let Ok(rest) = node.path.strip_prefix(&from) {
                        node.path = if rest.as_os_str().is_empty() {
                            to.clone()
                        } else {
                            to.join(rest)
                        };
                    }
                }
                Ok(())
            },
            |r: ReplyEmpty, ()| r.ok()
        );
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        reply!(
            reply,
            {
                let mut state = self.live()?;
                let node = state.node(ino)?;
                node.backing()?;
                node.open += 1;
                Ok(state.new_handle(Handle::File))
            },
            |r: ReplyOpen, fh| r.opened(FileHandle(fh), FopenFlags::empty())
        );
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        reply!(
            reply,
            {
                let mut state = self.live()?;
                let path = state.child(parent, name)?;
                let mut options = OpenOptions::new();
                options.read(true).write(true).mode(mode & !umask & 0o7777);
                if flags & libc::O_EXCL != 0 {
                    options.create_new(true);
                } else {
                    options.create(true);
                }
                let file = options.open(&path)?;
                let attr = state.entry(path)?;
                let node = state.node(attr.ino)?;
                if flags & libc::O_TRUNC != 0 {
                    file.set_len(0)?;
                    node.unsynced.truncate(0);
                }
                node.file.get_or_insert(file);
                node.open += 1;
                let fh = state.new_handle(Handle::File);
                Ok((state.attr_of(attr.ino)?, fh))
            },
            |r: ReplyCreate, (attr, fh)| r.created(
                &TTL,
                &attr,
                Generation(0),
                FileHandle(fh),
                FopenFlags::empty()
            )
        );
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        reply!(
            reply,
            {
                let mut state = self.live()?;
                let node = state.node(ino)?;
                let durable_len = node.metadata()?.len();
                let len = node.unsynced.len_over(durable_len);
                let n = len.saturating_sub(offset).min(u64::from(size)) as usize;
                let mut buf = vec![0; n];
                let on_disk = durable_len.saturating_sub(offset).min(n as u64) as usize;
                if on_disk > 0 {
                    node.backing()?.read_exact_at(&mut buf[..on_disk], offset)?;
                }
                node.unsynced.overlay(offset, &mut buf);
                Ok(buf)
            },
            |r: ReplyData, buf: Vec<u8>| r.data(&buf)
        );
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        reply!(
            reply,
            {
                let mut state = self.live()?;
                let node = state.node(ino)?;
                node.unsynced.write(offset, data);
                // O_SYNC/O_DSYNC: each write is synced before it returns.
                if flags.0 & libc::O_DSYNC != 0 {
                    node.sync()?;
                }
                Ok(u32::try_from(data.len()).unwrap_or(u32::MAX))
            },
            |r: ReplyWrite, n| r.written(n)
        );
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        // close(2) makes nothing durable.
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        // Also after a cut: the kernel releases what a killed process held.
        let mut state = lock(&self.state);
        state.handles.remove(&fh.0);
        if let Some(node) = state.nodes.get_mut(&ino.0) {
            node.open = node.open.saturating_sub(1);
            node.close_if_idle();
        }
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        reply!(
            reply,
            Ok(self.live()?.node(ino)?.sync()?),
            |r: ReplyEmpty, ()| r.ok()
        );
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        reply!(
            reply,
            {
                let mut state = self.live()?;
                let path = state.node(ino)?.path.clone();
                let mut entries = vec![
                    (ino.0, FileType::Directory, OsString::from(".")),
                    (ino.0, FileType::Directory, OsString::from("..")),
                ];
                for entry in fs::read_dir(&path)? {
                    let entry = entry?;
                    let meta = entry.metadata()?;
                    let kind =
                        FileType::from_std(meta.file_type()).unwrap_or(FileType::RegularFile);
                    let child = state.intern(entry.path(), &meta);
                    entries.push((child, kind, entry.file_name()));
                }
                Ok(state.new_handle(Handle::Dir(entries)))
            },
            |r: ReplyOpen, fh| r.opened(FileHandle(fh), FopenFlags::empty())
        );
    }

    fn readdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let state = lock(&self.state);
        let Some(Handle::Dir(entries)) = state.handles.get(&fh.0) else {
            return reply.error(Errno::EBADF);
        };
        for (i, (ino, kind, name)) in entries.iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(*ino), i as u64 + 1, *kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        lock(&self.state).handles.remove(&fh.0);
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        // Metadata is durable at once (see README.md).
        reply!(reply, self.live().map(drop), |r: ReplyEmpty, ()| r.ok());
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        reply!(
            reply,
            {
                let root = self.live()?.node(INodeNo::ROOT)?.path.clone();
                nix::sys::statvfs::statvfs(&root).map_err(|e| Errno::from_i32(e as i32))
            },
            |r: ReplyStatfs, s: nix::sys::statvfs::Statvfs| r.statfs(
                s.blocks(),
                s.blocks_free(),
                s.blocks_available(),
                s.files(),
                s.files_free(),
                u32::try_from(s.block_size()).unwrap_or(4096),
                u32::try_from(s.name_max()).unwrap_or(255),
                u32::try_from(s.fragment_size()).unwrap_or(4096),
            )
        );
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: fuser::AccessFlags, reply: ReplyEmpty) {
        reply.ok();
    }
}
