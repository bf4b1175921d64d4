//! Hot reload (P3): the plugins directory and every file a connection names
//! by path are watched (the `notify` crate); changes to one file are
//! debounced (an editor's or cargo's several writes make one reload), then
//! the file is reloaded by [`Registry::reload`], off the async workers for
//! the compile, one reload of a file at a time.
//!
//! The debounce is a quiet period per file, kept here rather than in a
//! debouncer crate: the reload needs the time of the first change (the
//! benchmark's "debounce" figure) and runs as an async task.

use super::registry::Registry;
use notify::event::{AccessKind, AccessMode, EventKind, ModifyKind};
use notify::{RecursiveMode, Watcher as _};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

/// The quiet period after a file's last change before it is reloaded.
pub const DEFAULT_DEBOUNCE: Duration = Duration::from_millis(50);

/// The OS watch, and the directories it covers.
pub(crate) struct Watching {
    watcher: notify::RecommendedWatcher,
    /// Directories of files named by path, watched one level deep (a file
    /// replaced by a rename or a hard link, as cargo does, is seen only
    /// through its directory).
    dirs: HashSet<PathBuf>,
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

impl Registry {
    /// Starts watching: the plugins directory (made if missing) and the
    /// files named by path loaded so far; files loaded later are added
    /// when they are. Each file is reloaded `debounce` after its last
    /// change; what each reload did is sent to [`Registry::subscribe`]rs
    /// and logged. Must be called within a tokio runtime.
    pub fn watch(self: &Arc<Self>, debounce: Duration) -> anyhow::Result<WatchHandle> {
        use anyhow::Context as _;
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<(PathBuf, Instant)>();
        let watcher =
            notify::recommended_watcher(move |got: notify::Result<notify::Event>| match got {
                Ok(event) if changes(&event.kind) => {
                    let at = Instant::now();
                    for p in event.paths {
                        let _ = tx.send((p, at));
                    }
                }
                Ok(_) => {}
                Err(e) => tracing::warn!("watching plugin files: {e}"),
            })
            .context("starting the plugin file watch")?;
        let mut watching = Watching {
            watcher,
            dirs: HashSet::new(),
        };
        if let Some(dir) = self.dir() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("creating the plugins directory {}", dir.display()))?;
            watching
                .watcher
                .watch(dir, RecursiveMode::Recursive)
                .with_context(|| format!("watching {}", dir.display()))?;
        }
        *self.watcher.lock().unwrap_or_else(|e| e.into_inner()) = Some(watching);
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

    /// Adds `file`'s directory to the watch, when watching.
    pub(super) fn watch_file(&self, file: &Path) {
        let mut w = self.watcher.lock().unwrap_or_else(|e| e.into_inner());
        let Some(w) = w.as_mut() else {
            return;
        };
        let Some(parent) = file.parent() else {
            return;
        };
        if w.dirs.contains(parent) || self.dir().is_some_and(|d| parent.starts_with(d)) {
            return;
        }
        match w.watcher.watch(parent, RecursiveMode::NonRecursive) {
            Ok(()) => {
                w.dirs.insert(parent.to_path_buf());
            }
            Err(e) => tracing::warn!(
                plugin = %file.display(),
                "cannot watch the plugin's directory; it will not be reloaded when it changes: {e}"
            ),
        }
    }
}

/// Collects changes per file and reloads each once it has been quiet for
/// `debounce`.
async fn debounced(
    registry: Weak<Registry>,
    mut changes: tokio::sync::mpsc::UnboundedReceiver<(PathBuf, Instant)>,
    debounce: Duration,
) {
    // Per file: the first change and the last one.
    let mut pending: HashMap<PathBuf, (Instant, Instant)> = HashMap::new();
    loop {
        let next = pending.values().map(|(_, last)| *last + debounce).min();
        let wake = tokio::time::Instant::from_std(
            next.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600)),
        );
        tokio::select! {
            got = changes.recv() => {
                let Some((path, at)) = got else { return };
                let Some(r) = registry.upgrade() else { return };
                // A folder made in the plugins directory: files written into
                // it before the OS watch on it was in place send no event of
                // their own, so the folder is listed once it is quiet.
                if r.holds(&path) || r.is_installed_folder(&path) {
                    pending
                        .entry(path)
                        .and_modify(|(_, last)| *last = at)
                        .or_insert((at, at));
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
                        let files = if path.is_dir() {
                            r.installed_files().into_iter().filter(|f| f.parent() == Some(&path)).collect()
                        } else {
                            vec![path]
                        };
                        let mut loaded = false;
                        for f in files {
                            let event = r.reload(&f, Some(first)).await;
                            loaded |= matches!(event.outcome, super::registry::ReloadOutcome::Loaded { .. });
                        }
                        if loaded {
                            // The replaced build's compiled copy is garbage now.
                            let _ = tokio::task::spawn_blocking(move || r.prune_cache()).await;
                        }
                    });
                }
            }
        }
    }
}
