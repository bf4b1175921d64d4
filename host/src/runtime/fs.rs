//! The host's filesystem layer over a granted directory (P6, P7): a quota on
//! the files and bytes the directory may hold, no symbolic or hard links, a
//! cap on the descriptors one call may hold open, and no file operation on
//! the runtime's worker threads.
//!
//! wasmtime-wasi implements `wasi:filesystem`; this module shadows the
//! functions that create, grow, shrink or remove something
//! (`open-at` with `create` or `truncate`, `write`, `write-via-stream`,
//! `append-via-stream`, `set-size`, `create-directory-at`, `unlink-file-at`,
//! `remove-directory-at`, `rename-at`, `symlink-at`, `link-at`) and
//! delegates every other one to wasmtime-wasi. Each shadowed operation runs
//! as one closure on the blocking pool that takes the directory's lock,
//! checks the quota, does the system call through `cap-primitives` (the same
//! sandboxed path resolution wasmtime-wasi uses) and records the change, so
//! the running total stays exact even when the call is stopped at its
//! deadline while the closure runs.
//!
//! Usage is kept in memory per directory: counted once per process by a
//! scan, then updated by this layer. Files removed by someone else (an
//! operator cleaning up) are noticed by a rescan before a write is refused
//! (at most one rescan per [`RESCAN_AFTER`]).

use super::sandbox::StoreState;
use cap_primitives::fs::{self as cap, FollowSymlinks, MetadataExt as _};
use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use wasmtime::StoreContextMut;
use wasmtime::component::{Linker, Resource};
use wasmtime_wasi::filesystem::{Descriptor, Dir, File, FsPerms, OpenMode};
use wasmtime_wasi::p2::DynOutputStream;
use wasmtime_wasi::p2::bindings::filesystem::types::{
    DescriptorFlags, ErrorCode, Filesize, HostDescriptor, OpenFlags, PathFlags,
};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError, StreamResult};

/// The `wasi:filesystem/types` instance wasmtime-wasi 48 defines.
const FILESYSTEM_TYPES: &str = "wasi:filesystem/types@0.2.12";

/// Descriptors one call may hold open at once (the preopen included).
pub const MAX_OPEN_DESCRIPTORS: usize = 128;

/// The shortest time between two rescans of a directory.
pub const RESCAN_AFTER: Duration = Duration::from_secs(10);

/// What a granted directory may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskQuota {
    /// Bytes of regular files (their sizes, as `stat` reports them).
    pub bytes: u64,
    /// Entries: files, directories and anything else, at any depth.
    pub files: u64,
}

/// What a directory holds, as this layer counts it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Bytes of regular files.
    pub bytes: u64,
    /// Entries at any depth.
    pub files: u64,
}

/// One granted directory's usage, shared by every call granted it.
pub(crate) struct DirUsage {
    root: PathBuf,
    state: Mutex<Counted>,
}

struct Counted {
    usage: Usage,
    scanned_at: Instant,
}

impl DirUsage {
    fn lock(&self) -> MutexGuard<'_, Counted> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The usage as now counted.
    pub(crate) fn usage(&self) -> Usage {
        self.lock().usage
    }

    /// Whether `more` fits in `quota`; before refusing, recounts the
    /// directory if the count may be stale.
    fn admits(&self, c: &mut Counted, quota: DiskQuota, more: Usage) -> bool {
        let fits = |u: Usage| {
            u.files.saturating_add(more.files) <= quota.files
                && u.bytes.saturating_add(more.bytes) <= quota.bytes
        };
        if fits(c.usage) {
            return true;
        }
        if c.scanned_at.elapsed() >= RESCAN_AFTER
            && let Ok(u) = scan(&self.root)
        {
            c.usage = u;
            c.scanned_at = Instant::now();
        }
        fits(c.usage)
    }
}

/// Every granted directory's usage, by canonical path.
#[derive(Default)]
pub(crate) struct Registry {
    dirs: Mutex<HashMap<PathBuf, Arc<DirUsage>>>,
}

impl Registry {
    /// The usage of `dir`, counted by a scan the first time it is asked for.
    /// Known under the path it was asked by and under its canonical path,
    /// so two spellings of one directory share one count.
    pub(crate) async fn get(&self, dir: &Path) -> io::Result<Arc<DirUsage>> {
        if let Some(u) = self.lock().get(dir) {
            return Ok(u.clone());
        }
        let root = tokio::fs::canonicalize(dir).await?;
        let known = self.lock().get(&root).cloned();
        let usage = match known {
            Some(u) => u,
            None => {
                let counted = {
                    let root = root.clone();
                    tokio::task::spawn_blocking(move || scan(&root))
                        .await
                        .map_err(io::Error::other)??
                };
                Arc::new(DirUsage {
                    root: root.clone(),
                    state: Mutex::new(Counted {
                        usage: counted,
                        scanned_at: Instant::now(),
                    }),
                })
            }
        };
        // Two first calls may both scan; the first to finish is kept.
        let mut dirs = self.lock();
        let usage = dirs.entry(root).or_insert(usage).clone();
        dirs.insert(dir.to_path_buf(), usage.clone());
        Ok(usage)
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<PathBuf, Arc<DirUsage>>> {
        self.dirs.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Counts what `root` holds, without following symbolic links.
pub fn scan(root: &Path) -> io::Result<Usage> {
    let mut usage = Usage::default();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let meta = entry.metadata()?;
            usage.files += 1;
            if meta.is_dir() {
                pending.push(entry.path());
            } else if meta.is_file() {
                usage.bytes += meta.len();
            }
        }
    }
    Ok(usage)
}

/// The filesystem side of one call: the directory's usage and its quota.
#[derive(Clone)]
pub(crate) struct CallFs {
    pub(crate) usage: Arc<DirUsage>,
    pub(crate) quota: DiskQuota,
}

/// The error a plugin sees when the quota refuses an operation (`EDQUOT`,
/// `quota` in WASI).
fn over_quota() -> io::Error {
    io::Error::from_raw_os_error(libc::EDQUOT)
}

/// The WASI error code of `e`: wasmtime-wasi's mapping, and `quota` for
/// `EDQUOT`, which it does not map.
fn code(e: io::Error) -> ErrorCode {
    if e.raw_os_error() == Some(libc::EDQUOT) {
        ErrorCode::Quota
    } else {
        ErrorCode::from(e)
    }
}

/// What the host logs for the plugin's operator when the quota refuses.
fn refusal_note(fs: &CallFs, what: &str) -> String {
    let u = fs.usage.usage();
    format!(
        "refused {what}: the connection's directory is at its quota ({} of {} files, {} of {} bytes)",
        u.files, fs.quota.files, u.bytes, fs.quota.bytes
    )
}

/// Adds the shadowing functions to `linker`, which already holds
/// wasmtime-wasi's. Needs `allow_shadowing(true)`.
pub(crate) fn add_to_linker(linker: &mut Linker<StoreState>) -> wasmtime::Result<()> {
    let mut i = linker.instance(FILESYSTEM_TYPES)?;

    i.func_wrap_async(
        "[method]descriptor.open-at",
        |mut store: StoreContextMut<'_, StoreState>,
         (fd, path_flags, path, oflags, flags): (
            Resource<Descriptor>,
            PathFlags,
            String,
            OpenFlags,
            DescriptorFlags,
        )| {
            Box::new(async move {
                let open = open_descriptors(store.data_mut());
                if open >= MAX_OPEN_DESCRIPTORS {
                    store.data_mut().capture.host_line(format!(
                        "refused to open {path}: the plugin holds {open} open descriptors, the most a call may"
                    ));
                    return Ok((Err(ErrorCode::InsufficientMemory),));
                }
                let quota_applies = oflags.intersects(OpenFlags::CREATE | OpenFlags::TRUNCATE);
                let fs = store.data().fs.clone();
                let (Some(fs), true) = (fs, quota_applies) else {
                    let mut view = store.data_mut().filesystem_view();
                    return lift(
                        HostDescriptor::open_at(&mut view, fd, path_flags, path, oflags, flags)
                            .await,
                    );
                };
                let dir = match dir_of(store.data_mut(), &fd) {
                    Ok(d) => d,
                    Err(e) => return Ok((Err(e),)),
                };
                let shown = path.clone();
                let opened = blocking({
                    let fs = fs.clone();
                    move || open_with_quota(&fs, &dir, path_flags, &path, oflags, flags)
                })
                .await;
                match opened {
                    Ok(d) => Ok((Ok(store.data_mut().table().push(d)?),)),
                    Err(e) => {
                        note_refusal(store.data_mut(), &fs, &e, &format!("to create {shown}"));
                        Ok((Err(code(e)),))
                    }
                }
            })
        },
    )?;

    i.func_wrap_async(
        "[method]descriptor.write",
        |mut store: StoreContextMut<'_, StoreState>,
         (fd, buf, offset): (Resource<Descriptor>, Vec<u8>, Filesize)| {
            Box::new(async move {
                let Some(fs) = store.data().fs.clone() else {
                    let mut view = store.data_mut().filesystem_view();
                    return lift(HostDescriptor::write(&mut view, fd, buf, offset).await);
                };
                let file = match file_of(store.data_mut(), &fd, true) {
                    Ok(f) => f,
                    Err(e) => return Ok((Err(e),)),
                };
                let len = buf.len();
                let written = blocking({
                    let fs = fs.clone();
                    move || {
                        grow(
                            &fs,
                            &file,
                            |_| offset.saturating_add(len as u64),
                            |f, _| std::os::unix::fs::FileExt::write_at(f, &buf, offset),
                        )
                    }
                })
                .await;
                match written {
                    Ok(n) => Ok((Ok(n as Filesize),)),
                    Err(e) => {
                        note_refusal(
                            store.data_mut(),
                            &fs,
                            &e,
                            &format!("a write of {len} bytes"),
                        );
                        Ok((Err(code(e)),))
                    }
                }
            })
        },
    )?;

    i.func_wrap_async(
        "[method]descriptor.set-size",
        |mut store: StoreContextMut<'_, StoreState>,
         (fd, size): (Resource<Descriptor>, Filesize)| {
            Box::new(async move {
                let Some(fs) = store.data().fs.clone() else {
                    let mut view = store.data_mut().filesystem_view();
                    return lift(HostDescriptor::set_size(&mut view, fd, size).await);
                };
                let file = match file_of(store.data_mut(), &fd, true) {
                    Ok(f) => f,
                    Err(e) => return Ok((Err(e),)),
                };
                let done = blocking({
                    let fs = fs.clone();
                    move || grow(&fs, &file, |_| size, |f, _| f.set_len(size))
                })
                .await;
                match done {
                    Ok(()) => Ok((Ok(()),)),
                    Err(e) => {
                        note_refusal(
                            store.data_mut(),
                            &fs,
                            &e,
                            &format!("to set a file's size to {size} bytes"),
                        );
                        Ok((Err(code(e)),))
                    }
                }
            })
        },
    )?;

    for (name, append) in [
        ("[method]descriptor.write-via-stream", false),
        ("[method]descriptor.append-via-stream", true),
    ] {
        if append {
            i.func_wrap(
                name,
                |mut store: StoreContextMut<'_, StoreState>, (fd,): (Resource<Descriptor>,)| {
                    stream(store.data_mut(), fd, Mode::Append)
                },
            )?;
        } else {
            i.func_wrap(
                name,
                |mut store: StoreContextMut<'_, StoreState>,
                 (fd, offset): (Resource<Descriptor>, Filesize)| {
                    stream(store.data_mut(), fd, Mode::At(offset))
                },
            )?;
        }
    }

    i.func_wrap_async(
        "[method]descriptor.create-directory-at",
        |mut store: StoreContextMut<'_, StoreState>, (fd, path): (Resource<Descriptor>, String)| {
            Box::new(async move {
                let Some(fs) = store.data().fs.clone() else {
                    let mut view = store.data_mut().filesystem_view();
                    return lift(HostDescriptor::create_directory_at(&mut view, fd, path).await);
                };
                let dir = match dir_of(store.data_mut(), &fd) {
                    Ok(d) => d,
                    Err(e) => return Ok((Err(e),)),
                };
                let shown = path.clone();
                let done = blocking({
                    let fs = fs.clone();
                    move || {
                        let mut c = fs.usage.lock();
                        if !fs
                            .usage
                            .admits(&mut c, fs.quota, Usage { files: 1, bytes: 0 })
                        {
                            return Err(over_quota());
                        }
                        cap::create_dir(&dir, Path::new(&path), &cap::DirOptions::new())?;
                        c.usage.files += 1;
                        Ok(())
                    }
                })
                .await;
                match done {
                    Ok(()) => Ok((Ok(()),)),
                    Err(e) => {
                        note_refusal(
                            store.data_mut(),
                            &fs,
                            &e,
                            &format!("to create directory {shown}"),
                        );
                        Ok((Err(code(e)),))
                    }
                }
            })
        },
    )?;

    i.func_wrap_async(
        "[method]descriptor.unlink-file-at",
        |mut store: StoreContextMut<'_, StoreState>, (fd, path): (Resource<Descriptor>, String)| {
            Box::new(async move {
                let Some(fs) = store.data().fs.clone() else {
                    let mut view = store.data_mut().filesystem_view();
                    return lift(HostDescriptor::unlink_file_at(&mut view, fd, path).await);
                };
                let dir = match dir_of(store.data_mut(), &fd) {
                    Ok(d) => d,
                    Err(e) => return Ok((Err(e),)),
                };
                let done = blocking(move || {
                    let mut c = fs.usage.lock();
                    let path = Path::new(&path);
                    let meta = cap::stat(&dir, path, FollowSymlinks::No)?;
                    cap::remove_file(&dir, path)?;
                    release(&mut c.usage, &meta);
                    Ok(())
                })
                .await;
                Ok((done.map_err(code),))
            })
        },
    )?;

    i.func_wrap_async(
        "[method]descriptor.remove-directory-at",
        |mut store: StoreContextMut<'_, StoreState>, (fd, path): (Resource<Descriptor>, String)| {
            Box::new(async move {
                let Some(fs) = store.data().fs.clone() else {
                    let mut view = store.data_mut().filesystem_view();
                    return lift(HostDescriptor::remove_directory_at(&mut view, fd, path).await);
                };
                let dir = match dir_of(store.data_mut(), &fd) {
                    Ok(d) => d,
                    Err(e) => return Ok((Err(e),)),
                };
                let done = blocking(move || {
                    let mut c = fs.usage.lock();
                    cap::remove_dir(&dir, Path::new(&path))?;
                    c.usage.files = c.usage.files.saturating_sub(1);
                    Ok(())
                })
                .await;
                Ok((done.map_err(code),))
            })
        },
    )?;

    i.func_wrap_async(
        "[method]descriptor.rename-at",
        |mut store: StoreContextMut<'_, StoreState>,
         (fd, old_path, new_fd, new_path): (
            Resource<Descriptor>,
            String,
            Resource<Descriptor>,
            String,
        )| {
            Box::new(async move {
                let Some(fs) = store.data().fs.clone() else {
                    let mut view = store.data_mut().filesystem_view();
                    return lift(
                        HostDescriptor::rename_at(&mut view, fd, old_path, new_fd, new_path).await,
                    );
                };
                let (old_dir, new_dir) = match (
                    dir_of(store.data_mut(), &fd),
                    dir_of(store.data_mut(), &new_fd),
                ) {
                    (Ok(a), Ok(b)) => (a, b),
                    (Err(e), _) | (_, Err(e)) => return Ok((Err(e),)),
                };
                let done = blocking(move || {
                    let mut c = fs.usage.lock();
                    let (from, to) = (Path::new(&old_path), Path::new(&new_path));
                    let moved = cap::stat(&old_dir, from, FollowSymlinks::No)?;
                    let replaced = cap::stat(&new_dir, to, FollowSymlinks::No)
                        .ok()
                        .filter(|r| (r.dev(), r.ino()) != (moved.dev(), moved.ino()));
                    cap::rename(&old_dir, from, &new_dir, to)?;
                    if let Some(r) = replaced {
                        release(&mut c.usage, &r);
                    }
                    Ok(())
                })
                .await;
                Ok((done.map_err(code),))
            })
        },
    )?;

    // A stream's failed write reaches the guest as an `error` resource; the
    // guest asks for its code here. A quota refusal is `quota`.
    i.func_wrap(
        "filesystem-error-code",
        |mut store: StoreContextMut<'_, StoreState>, (err,): (Resource<wasmtime::Error>,)| {
            let err = store.data_mut().table().get(&err)?;
            Ok((err.downcast_ref::<io::Error>().map(|e| {
                if e.raw_os_error() == Some(libc::EDQUOT) {
                    ErrorCode::Quota
                } else {
                    ErrorCode::from(e)
                }
            }),))
        },
    )?;

    i.func_wrap(
        "[method]descriptor.symlink-at",
        |mut store: StoreContextMut<'_, StoreState>,
         (_fd, target, path): (Resource<Descriptor>, String, String)| {
            store.data_mut().capture.host_line(format!(
                "refused to create symbolic link {path} -> {target}: plugins may not create links"
            ));
            Ok((Err::<(), _>(ErrorCode::NotPermitted),))
        },
    )?;

    i.func_wrap(
        "[method]descriptor.link-at",
        |mut store: StoreContextMut<'_, StoreState>,
         (_fd, _flags, old_path, _new_fd, new_path): (
            Resource<Descriptor>,
            PathFlags,
            String,
            Resource<Descriptor>,
            String,
        )| {
            store.data_mut().capture.host_line(format!(
                "refused to create hard link {new_path} -> {old_path}: plugins may not create links"
            ));
            Ok((Err::<(), _>(ErrorCode::NotPermitted),))
        },
    )?;
    Ok(())
}

/// A wasmtime-wasi answer as the component function's result: error codes
/// go to the guest, anything else traps.
fn lift<T>(r: Result<T, wasmtime_wasi::p2::FsError>) -> wasmtime::Result<(Result<T, ErrorCode>,)> {
    match r {
        Ok(v) => Ok((Ok(v),)),
        Err(e) => Ok((Err(e.downcast()?),)),
    }
}

/// Runs `f` on the blocking pool. Once started it runs to its end even if
/// the call is dropped meanwhile, so the accounting inside stays exact.
async fn blocking<R: Send + 'static>(
    f: impl FnOnce() -> io::Result<R> + Send + 'static,
) -> io::Result<R> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(io::Error::other)?
}

/// How many descriptors the call holds open.
fn open_descriptors(state: &mut StoreState) -> usize {
    state
        .table()
        .iter_mut()
        .filter(|e| (**e).is::<Descriptor>())
        .count()
}

fn dir_of(
    state: &mut StoreState,
    fd: &Resource<Descriptor>,
) -> Result<Arc<std::fs::File>, ErrorCode> {
    match state.table().get(fd) {
        Ok(Descriptor::Dir(d)) if d.perms == FsPerms::ReadWrite => Ok(d.dir.clone()),
        Ok(Descriptor::Dir(_)) => Err(ErrorCode::NotPermitted),
        Ok(Descriptor::File(_)) => Err(ErrorCode::NotDirectory),
        Err(_) => Err(ErrorCode::BadDescriptor),
    }
}

fn file_of(
    state: &mut StoreState,
    fd: &Resource<Descriptor>,
    write: bool,
) -> Result<Arc<std::fs::File>, ErrorCode> {
    match state.table().get(fd) {
        Ok(Descriptor::File(f)) if write && f.perms.write_not_permitted() => {
            Err(ErrorCode::NotPermitted)
        }
        Ok(Descriptor::File(f)) => Ok(f.file.clone()),
        Ok(Descriptor::Dir(_)) => Err(ErrorCode::BadDescriptor),
        Err(_) => Err(ErrorCode::BadDescriptor),
    }
}

/// Logs a quota refusal for the operator, in the call's log.
fn note_refusal(state: &mut StoreState, fs: &CallFs, e: &io::Error, what: &str) {
    if e.raw_os_error() == Some(libc::EDQUOT) {
        let note = refusal_note(fs, what);
        state.capture.host_line(note);
    }
}

/// Takes what `meta` counted out of `usage`.
fn release(usage: &mut Usage, meta: &cap::Metadata) {
    usage.files = usage.files.saturating_sub(1);
    if meta.is_file() {
        usage.bytes = usage.bytes.saturating_sub(meta.len());
    }
}

/// Runs `op` on `file` under the directory's lock. `end` says, from the
/// file's size before, how long `op` may make it: refused when the growth
/// does not fit; counted by the size it really changed by.
fn grow<R>(
    fs: &CallFs,
    file: &std::fs::File,
    end: impl FnOnce(u64) -> u64,
    op: impl FnOnce(&std::fs::File, u64) -> io::Result<R>,
) -> io::Result<R> {
    let mut c = fs.usage.lock();
    let before = file.metadata()?.len();
    let more = Usage {
        files: 0,
        bytes: end(before).saturating_sub(before),
    };
    if more.bytes > 0 && !fs.usage.admits(&mut c, fs.quota, more) {
        return Err(over_quota());
    }
    let r = op(file, before);
    let after = file.metadata()?.len();
    c.usage.bytes = c.usage.bytes.saturating_add(after).saturating_sub(before);
    r
}

/// `open-at` with `create` or `truncate`, as wasmtime-wasi does it, with the
/// new file counted and a truncated one's bytes released.
fn open_with_quota(
    fs: &CallFs,
    dir: &std::fs::File,
    path_flags: PathFlags,
    path: &str,
    oflags: OpenFlags,
    flags: DescriptorFlags,
) -> io::Result<Descriptor> {
    let invalid = || io::Error::from_raw_os_error(libc::EINVAL);
    if oflags.contains(OpenFlags::DIRECTORY) {
        // A directory cannot be created or truncated by `open-at`.
        return Err(invalid());
    }
    if flags.intersects(
        DescriptorFlags::FILE_INTEGRITY_SYNC
            | DescriptorFlags::DATA_INTEGRITY_SYNC
            | DescriptorFlags::REQUESTED_WRITE_SYNC,
    ) {
        return Err(io::Error::from_raw_os_error(libc::ENOTSUP));
    }
    let follow = if path_flags.contains(PathFlags::SYMLINK_FOLLOW) {
        FollowSymlinks::Yes
    } else {
        FollowSymlinks::No
    };
    let mut opts = cap::OpenOptions::new();
    let mut mode = OpenMode::WRITE;
    opts.write(true);
    if oflags.contains(OpenFlags::CREATE) {
        if oflags.contains(OpenFlags::EXCLUSIVE) {
            opts.create_new(true);
        } else {
            opts.create(true);
        }
    }
    if oflags.contains(OpenFlags::TRUNCATE) {
        opts.truncate(true);
    }
    if flags.contains(DescriptorFlags::READ) {
        opts.read(true);
        mode |= OpenMode::READ;
    }
    opts._cap_fs_ext_follow(follow);

    let path = Path::new(path);
    let mut c = fs.usage.lock();
    let existing = cap::stat(dir, path, follow).ok();
    if existing.is_none()
        && oflags.contains(OpenFlags::CREATE)
        && !fs
            .usage
            .admits(&mut c, fs.quota, Usage { files: 1, bytes: 0 })
    {
        return Err(over_quota());
    }
    let file = cap::open(dir, path, &opts)?;
    let meta = file.metadata()?;
    match &existing {
        None => c.usage.files += 1,
        Some(old) if old.is_file() => {
            c.usage.bytes = (c.usage.bytes + meta.len()).saturating_sub(old.len());
        }
        Some(_) => {}
    }
    drop(c);
    if meta.is_dir() {
        return Ok(Descriptor::Dir(Dir::new(
            file,
            FsPerms::ReadWrite,
            mode,
            false,
        )));
    }
    Ok(Descriptor::File(File::new(
        file,
        FsPerms::ReadWrite,
        mode,
        false,
    )))
}

#[derive(Clone, Copy)]
enum Mode {
    At(u64),
    Append,
}

/// `write-via-stream` / `append-via-stream`: a stream whose every write
/// goes through the quota.
fn stream(
    state: &mut StoreState,
    fd: Resource<Descriptor>,
    mode: Mode,
) -> wasmtime::Result<(Result<Resource<DynOutputStream>, ErrorCode>,)> {
    let Some(fs) = state.fs.clone() else {
        let mut view = state.filesystem_view();
        return lift(match mode {
            Mode::At(offset) => HostDescriptor::write_via_stream(&mut view, fd, offset),
            Mode::Append => HostDescriptor::append_via_stream(&mut view, fd),
        });
    };
    let file = match state.table().get(&fd)? {
        Descriptor::File(f) if f.perms.write_not_permitted() => {
            return Ok((Err(ErrorCode::NotPermitted),));
        }
        Descriptor::File(f) => f.file.clone(),
        Descriptor::Dir(_) => return Ok((Err(ErrorCode::BadDescriptor),)),
    };
    let s: DynOutputStream = Box::new(QuotaStream {
        fs,
        file,
        mode,
        state: WriteState::Ready,
        capture: state.capture.clone(),
    });
    Ok((Ok(state.table().push(s)?),))
}

/// Most bytes one stream write may carry (what `check-write` grants).
const STREAM_WRITE_CAPACITY: usize = 64 << 10;

enum WriteState {
    Ready,
    Waiting(tokio::task::JoinHandle<io::Result<usize>>),
    Failed(io::Error),
    Closed,
}

/// A file's output stream, writing through the quota on the blocking pool.
struct QuotaStream {
    fs: CallFs,
    file: Arc<std::fs::File>,
    mode: Mode,
    state: WriteState,
    capture: super::capture::Capture,
}

impl QuotaStream {
    fn start(&self, buf: bytes::Bytes) -> tokio::task::JoinHandle<io::Result<usize>> {
        let (fs, file, mode) = (self.fs.clone(), self.file.clone(), self.mode);
        tokio::task::spawn_blocking(move || {
            let len = buf.len() as u64;
            let at = move |size: u64| match mode {
                Mode::At(p) => p,
                Mode::Append => size,
            };
            grow(
                &fs,
                &file,
                |size| at(size).saturating_add(len),
                |f, size| {
                    std::os::unix::fs::FileExt::write_all_at(f, &buf, at(size))?;
                    Ok(buf.len())
                },
            )
        })
    }

    fn finished(&mut self, r: Result<io::Result<usize>, tokio::task::JoinError>) {
        self.state = match r {
            Ok(Ok(n)) => {
                if let Mode::At(p) = &mut self.mode {
                    *p += n as u64;
                }
                WriteState::Ready
            }
            Ok(Err(e)) => {
                if e.raw_os_error() == Some(libc::EDQUOT) {
                    self.capture.host_line(refusal_note(&self.fs, "a write"));
                }
                WriteState::Failed(e)
            }
            Err(e) => WriteState::Failed(io::Error::other(e)),
        };
    }

    fn take_failure(&mut self) -> StreamError {
        match std::mem::replace(&mut self.state, WriteState::Closed) {
            WriteState::Failed(e) => StreamError::LastOperationFailed(e.into()),
            _ => StreamError::Closed,
        }
    }
}

#[async_trait::async_trait]
impl OutputStream for QuotaStream {
    fn write(&mut self, buf: bytes::Bytes) -> StreamResult<()> {
        match self.state {
            WriteState::Ready => {}
            WriteState::Closed => return Err(StreamError::Closed),
            WriteState::Failed(_) => return Err(self.take_failure()),
            WriteState::Waiting(_) => {
                return Err(StreamError::trap(
                    "write not permitted: check-write not called first",
                ));
            }
        }
        if buf.len() > STREAM_WRITE_CAPACITY {
            return Err(StreamError::trap("write larger than check-write allowed"));
        }
        self.state = WriteState::Waiting(self.start(buf));
        Ok(())
    }

    async fn blocking_write_and_flush(&mut self, buf: bytes::Bytes) -> StreamResult<()> {
        self.ready().await;
        match self.state {
            WriteState::Ready => {}
            WriteState::Closed => return Err(StreamError::Closed),
            WriteState::Failed(_) => return Err(self.take_failure()),
            WriteState::Waiting(_) => unreachable!("ready() waited for the write"),
        }
        let r = self.start(buf).await;
        self.finished(r);
        match self.state {
            WriteState::Ready => Ok(()),
            _ => Err(self.take_failure()),
        }
    }

    fn flush(&mut self) -> StreamResult<()> {
        match self.state {
            WriteState::Ready | WriteState::Waiting(_) => Ok(()),
            WriteState::Closed => Err(StreamError::Closed),
            WriteState::Failed(_) => Err(self.take_failure()),
        }
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        match self.state {
            WriteState::Ready => Ok(STREAM_WRITE_CAPACITY),
            WriteState::Waiting(_) => Ok(0),
            WriteState::Closed => Err(StreamError::Closed),
            WriteState::Failed(_) => Err(self.take_failure()),
        }
    }

    async fn cancel(&mut self) {
        if let WriteState::Waiting(task) = std::mem::replace(&mut self.state, WriteState::Closed) {
            let _ = task.await;
        }
    }
}

#[async_trait::async_trait]
impl Pollable for QuotaStream {
    async fn ready(&mut self) {
        if let WriteState::Waiting(task) = &mut self.state {
            let r = task.await;
            self.finished(r);
        }
    }
}
