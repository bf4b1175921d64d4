//! Hot reload (P3): the plugins directory, its folders, and the directory of
//! every file a connection names by path are watched (the `notify` crate);
//! changes to one file are debounced (an editor's or cargo's several writes
//! make one reload), then the file is reloaded by [`Registry::reload`], off
//! the async workers for the compile, one reload of a file at a time.
//!
//! Each directory is watched on its own, one level deep, as the registry
//! reads no deeper: a link in the plugins directory to `/` costs nothing.
//! A watched directory removed and made again (`cargo clean`, a folder
//! moved in) loses its OS watch; every second the directories are checked
//! and one that is another directory now is watched afresh and its files
//! reloaded.
//!
//! The debounce is a quiet period per file, kept here rather than in a
//! debouncer crate: the reload needs the time of the first change (the
//! benchmark's "debounce" figure) and runs as an async task.

use super::registry::{Registry, ReloadOutcome};
use notify::event::{AccessKind, AccessMode, EventKind, ModifyKind};
use notify::{RecursiveMode, Watcher as _};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

/// The quiet period after a file's last change before it is reloaded.
pub const DEFAULT_DEBOUNCE: Duration = Duration::from_millis(50);

/// How often the watched directories are checked for having been replaced.
const RECHECK: Duration = Duration::from_secs(1);

/// The OS watch, and the directories it covers.
pub(crate) struct Watching {
    watcher: notify::RecommendedWatcher,
    /// Where the OS watch sends changes (kept to make the watch afresh).
    tx: Changes,
    /// Each watched directory and what it was when watched (device and
    /// inode; `None` while it is missing).
    dirs: HashMap<PathBuf, Option<(u64, u64)>>,
}

/// Watching stops when this is dropped.
pub struct WatchHandle {
    registry: Arc<Registry>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for WatchHandle {
    fn drop(&mut self) {
        self.task.abort();
        *self
            .registry
            .watcher
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = None;
    }
}

/// Whether an event may have changed a file's bytes: not our own reads.
fn changes(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) | EventKind::Other => false,
        EventKind::Modify(ModifyKind::Metadata(_)) => false,
        _ => true,
    }
}

type Changes = tokio::sync::mpsc::UnboundedSender<(PathBuf, Instant)>;

/// An OS watch that sends each changed path, with when.
fn os_watch(tx: Changes) -> notify::Result<notify::RecommendedWatcher> {
    notify::recommended_watcher(move |got: notify::Result<notify::Event>| match got {
        // The OS dropped events (its queue overflowed): everything is
        // looked at again. An empty path says so.
        Ok(event) if event.need_rescan() => {
            let _ = tx.send((PathBuf::new(), Instant::now()));
        }
        Ok(event) if changes(&event.kind) => {
            let at = Instant::now();
            for p in event.paths {
                let _ = tx.send((p, at));
            }
        }
        Ok(_) => {}
        Err(e) => tracing::warn!("watching plugin files: {e}"),
    })
}

/// Which directory `dir` is now (it may have been removed and made again).
fn identity(dir: &Path) -> Option<(u64, u64)> {
    let m = std::fs::metadata(dir).ok().filter(|m| m.is_dir())?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt as _;
        Some((m.dev(), m.ino()))
    }
    #[cfg(not(unix))]
    {
        let _ = m;
        Some((0, 0))
    }
}

/// The folders of the plugins directory: real directories, not hidden.
fn folders(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| e.path())
        .collect()
}

impl Registry {
    /// Starts watching: the plugins directory (made if missing) and its
    /// folders, and the directories of the files named by path loaded so
    /// far; files loaded later are added when they are. Each file is
    /// reloaded `debounce` after its last change; what each reload did is
    /// sent to [`Registry::subscribe`]rs and logged. Must be called within
    /// a tokio runtime.
    pub fn watch(self: &Arc<Self>, debounce: Duration) -> anyhow::Result<WatchHandle> {
        use anyhow::Context as _;
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<(PathBuf, Instant)>();
        let watcher = os_watch(tx.clone()).context("starting the plugin file watch")?;
        *self.watcher.lock().unwrap_or_else(|e| e.into_inner()) = Some(Watching {
            watcher,
            tx,
            dirs: HashMap::new(),
        });
        if let Some(dir) = self.dir() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("creating the plugins directory {}", dir.display()))?;
            self.watch_dir(dir)
                .with_context(|| format!("watching {}", dir.display()))?;
            for f in folders(dir) {
                let _ = self.watch_dir(&f);
            }
        }
        for f in self.named_files() {
            self.watch_file(&f);
        }
        let weak = Arc::downgrade(self);
        let task = tokio::spawn(debounced(weak, rx, debounce));
        Ok(WatchHandle {
            registry: self.clone(),
            task,
        })
    }

    /// Watches `dir` (one level), when watching and not already.
    fn watch_dir(&self, dir: &Path) -> notify::Result<()> {
        let mut w = self.watcher.lock().unwrap_or_else(|e| e.into_inner());
        let Some(w) = w.as_mut() else {
            return Ok(());
        };
        if w.dirs.contains_key(dir) {
            return Ok(());
        }
        let id = identity(dir);
        w.watcher.watch(dir, RecursiveMode::NonRecursive)?;
        w.dirs.insert(dir.to_path_buf(), id);
        Ok(())
    }

    /// Adds `file`'s directory to the watch, when watching.
    pub(super) fn watch_file(&self, file: &Path) {
        let Some(parent) = file.parent() else {
            return;
        };
        if let Err(e) = self.watch_dir(parent) {
            tracing::warn!(
                plugin = %file.display(),
                "cannot watch the plugin's directory; it will not be reloaded when it changes: {e}"
            );
        }
    }

    /// The watched directories that are not what they were when watched
    /// (removed, made again, replaced): each is watched afresh. Returns
    /// them.
    fn rewatch(&self) -> Vec<PathBuf> {
        let mut w = self.watcher.lock().unwrap_or_else(|e| e.into_inner());
        let Some(w) = w.as_mut() else {
            return Vec::new();
        };
        let changed: Vec<PathBuf> = w
            .dirs
            .iter()
            .filter(|(dir, was)| identity(dir) != **was)
            .map(|(dir, _)| dir.clone())
            .collect();
        if changed.is_empty() {
            return changed;
        }
        // A fresh OS watch of every directory: the old one's state for a
        // directory removed under it cannot be relied on.
        let mut watcher = match os_watch(w.tx.clone()) {
            Ok(watcher) => watcher,
            Err(e) => {
                tracing::warn!("cannot watch plugin files again: {e}");
                return Vec::new();
            }
        };
        for (dir, was) in w.dirs.iter_mut() {
            *was = identity(dir);
            if was.is_some()
                && let Err(e) = watcher.watch(dir, RecursiveMode::NonRecursive)
            {
                tracing::warn!(dir = %dir.display(), "cannot watch plugin files again: {e}");
            }
        }
        w.watcher = watcher;
        changed
    }

    /// A change to a watched directory itself (removed, moved away): it
    /// is taken as gone, and watched afresh when it is there again (a new
    /// directory may have the old one's inode number).
    fn lost(&self, path: &Path) {
        let mut w = self.watcher.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(was) = w.as_mut().and_then(|w| w.dirs.get_mut(path)) {
            *was = None;
        }
    }

    /// Every watched directory taken as replaced: the next check watches
    /// them afresh and reloads their files.
    fn lost_all(&self) {
        let mut w = self.watcher.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(w) = w.as_mut() {
            for was in w.dirs.values_mut() {
                *was = None;
            }
        }
    }

    /// What to reload when directory `dir` was replaced: its plugin files,
    /// and those the registry held there (gone now, perhaps).
    fn files_in(&self, dir: &Path) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = self
            .installed_files()
            .into_iter()
            .chain(self.named_files())
            .chain(self.installed_paths())
            .filter(|f| f.parent() == Some(dir) || (self.dir() == Some(dir) && f.starts_with(dir)))
            .collect();
        files.sort();
        files.dedup();
        files
    }
}

/// Collects changes per file and reloads each once it has been quiet for
/// `debounce`.
async fn debounced(
    registry: Weak<Registry>,
    mut changes: tokio::sync::mpsc::UnboundedReceiver<(PathBuf, Instant)>,
    debounce: Duration,
) {
    // Per path: the first change and the last one.
    let mut pending: HashMap<PathBuf, (Instant, Instant)> = HashMap::new();
    let mut recheck = tokio::time::interval(RECHECK);
    recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let next = pending.values().map(|(_, last)| *last + debounce).min();
        let wake = tokio::time::Instant::from_std(
            next.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600)),
        );
        tokio::select! {
            got = changes.recv() => {
                let Some((path, at)) = got else { return };
                let Some(r) = registry.upgrade() else { return };
                if path.as_os_str().is_empty() {
                    tracing::warn!("plugin file changes were lost by the OS: looking at every watched directory again");
                    r.lost_all();
                    continue;
                }
                r.lost(&path);
                // A folder made in the plugins directory: files written into
                // it before its OS watch was in place send no event of their
                // own, so the folder is listed once it is quiet.
                if r.holds(&path) || r.is_installed_folder(&path) {
                    pending
                        .entry(path)
                        .and_modify(|(_, last)| *last = at)
                        .or_insert((at, at));
                }
            }
            _ = recheck.tick() => {
                let Some(r) = registry.upgrade() else { return };
                let now = Instant::now();
                for dir in r.rewatch() {
                    tracing::info!(dir = %dir.display(), "a watched plugin directory was replaced: watching it again");
                    if r.dir() == Some(dir.as_path()) {
                        for f in folders(&dir) {
                            let _ = r.watch_dir(&f);
                        }
                    }
                    for f in r.files_in(&dir) {
                        pending.entry(f).or_insert((now, now));
                    }
                }
            }
            _ = tokio::time::sleep_until(wake), if next.is_some() => {
                let now = Instant::now();
                let ready: Vec<PathBuf> = pending
                    .iter()
                    .filter(|(_, (_, last))| *last + debounce <= now)
                    .map(|(p, _)| p.clone())
                    .collect();
                for path in ready {
                    let Some((first, _)) = pending.remove(&path) else { continue };
                    let Some(r) = registry.upgrade() else { return };
                    // One task per reload; the registry serializes those of
                    // one file, in the order they were started.
                    tokio::spawn(async move {
                        let files = if r.is_installed_folder(&path) {
                            let _ = r.watch_dir(&path);
                            r.files_in(&path)
                        } else {
                            vec![path]
                        };
                        let mut loaded = false;
                        for f in files {
                            let event = r.reload(&f, Some(first)).await;
                            loaded |= matches!(event.outcome, ReloadOutcome::Loaded { .. });
                        }
                        if loaded {
                            // The replaced build's compiled copy may be
                            // garbage now.
                            let _ = tokio::task::spawn_blocking(move || r.prune_cache()).await;
                        }
                    });
                }
            }
        }
    }
}
