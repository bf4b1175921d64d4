//! The plugin registry (P3, P5): every version of every connector this host
//! can run (the built-in ones, those installed in the plugins directory, and
//! the files connections name by path) and which one a connection runs.
//!
//! A connection names a plugin by name (following its latest version), by
//! name and version (pinned), or by path. Replacing a version is one map
//! update under a lock; an operation holds the `Arc<Plugin>` it started
//! with, so what is running finishes on the version it began on and what
//! starts after the swap runs the new one. Reloads of one file are
//! serialized, and a file that cannot be loaded leaves the version it held
//! serving, with the reason kept for the connection's status.

use super::Runtime;
use super::plugin::{LoadError, Plugin};
use crate::builtin::{self, BuiltinPlugin};
use crate::model::PluginVersion;
use semver::{Version, VersionReq};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How many hex digits of a plugin's SHA-256 name a build in logs and lists.
pub const SHORT_DIGEST: usize = 12;

/// The longest `plugin` field (a path, at most).
pub const MAX_REF_BYTES: usize = 4096;

/// How a connection names its plugin (the `plugin` field).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PluginRef {
    /// A plugin by name: the newest version that `want` allows, among the
    /// built-in one and those installed.
    Named {
        /// The name it describes itself by (`csv`).
        name: String,
        /// Which versions it may run.
        want: Want,
    },
    /// A `.wasm` file by path, reloaded when it changes (under `--watch`).
    File(PathBuf),
}

/// Which versions of a named plugin a connection may run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Want {
    /// The newest (`csv`).
    Latest,
    /// Exactly this one, build metadata aside (`csv@0.2.0`).
    Exact(Version),
    /// The newest matching a semver requirement (`csv@^0.2`, `csv@~0.2.1`).
    Matching(VersionReq),
}

impl Want {
    fn allows(&self, v: &Version) -> bool {
        match self {
            Want::Latest => true,
            Want::Exact(x) => x.cmp_precedence(v).is_eq(),
            Want::Matching(req) => req.matches(v),
        }
    }
}

impl std::fmt::Display for Want {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Want::Latest => f.write_str("the latest version"),
            Want::Exact(v) => write!(f, "version {v}"),
            Want::Matching(r) => write!(f, "a version matching {r}"),
        }
    }
}

/// A plugin name: a lowercase letter, then lowercase letters, digits, `-`
/// and `_`, at most 64 in all (it names a directory in the registry).
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{}` is not a plugin name: a lowercase letter, then lowercase letters, digits, `-` or `_`, at most 64",
            name.escape_debug()
        ))
    }
}

impl PluginRef {
    /// Reads a connection's `plugin` field: `name`, `name@version`,
    /// `name@<semver requirement>`, or a path (it has a `/` or ends in
    /// `.wasm`).
    pub fn parse(text: &str) -> Result<PluginRef, String> {
        if text.len() > MAX_REF_BYTES {
            return Err(format!(
                "{} bytes; a plugin name or path is at most {MAX_REF_BYTES}",
                text.len()
            ));
        }
        if text.chars().any(char::is_control) {
            return Err(format!("`{}` has a control character", text.escape_debug()));
        }
        if text.trim().is_empty() {
            return Err(
                "empty: name a plugin (`csv`, `csv@0.2.0`) or a plugin file (`/path/to/plugin.wasm`)"
                    .into(),
            );
        }
        if text.contains('/') || text.contains('\\') || text.ends_with(".wasm") {
            return Ok(PluginRef::File(PathBuf::from(text)));
        }
        let (name, want) = match text.split_once('@') {
            None => (text, Want::Latest),
            Some((name, v)) => (
                name,
                match Version::parse(v) {
                    Ok(v) => Want::Exact(v),
                    Err(_) => Want::Matching(VersionReq::parse(v).map_err(|e| {
                        format!(
                            "`{}` is neither a version nor a semver requirement: {e}",
                            v.escape_debug()
                        )
                    })?),
                },
            ),
        };
        check_name(name)?;
        Ok(PluginRef::Named {
            name: name.to_string(),
            want,
        })
    }
}

/// Why no plugin could be found for a reference.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// No built-in or installed plugin has that name.
    #[error("no plugin is called `{name}` (built in: {builtin}; installed: {installed})")]
    NoSuchPlugin {
        /// The name asked for.
        name: String,
        /// The built-in plugins' names.
        builtin: String,
        /// The installed plugins' names, or `none`.
        installed: String,
    },
    /// The plugin exists, in no version the reference allows.
    #[error("no version of `{name}` is {want}: there are {versions}")]
    NoMatchingVersion {
        /// The name asked for.
        name: String,
        /// What was asked for.
        want: String,
        /// The versions there are.
        versions: String,
    },
    /// The plugin could not be loaded.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// An installed file the registry refused.
    #[error("{0}")]
    Refused(String),
}

/// A reload that failed: the version that was serving still is.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Refusal {
    /// The file.
    pub path: String,
    /// When (ms since the epoch).
    pub at: i64,
    /// Why the new file was not taken.
    pub message: String,
}

/// What one reload of a file did.
#[derive(Debug, Clone)]
pub enum ReloadOutcome {
    /// A new version serves from now on (`previous`: the one it replaced).
    Loaded {
        /// The version now serving.
        now: PluginVersion,
        /// The one it replaced, if the file held one.
        previous: Option<PluginVersion>,
    },
    /// The file holds the bytes already loaded: nothing changed.
    Unchanged,
    /// The file could not be loaded; `serving` (if any) serves on.
    Refused {
        /// Why.
        message: String,
        /// The version that serves on.
        serving: Option<PluginVersion>,
    },
    /// An installed file was removed: its version is gone from the
    /// registry (operations running on it finish).
    Removed {
        /// The version it held.
        was: Option<PluginVersion>,
    },
}

/// One reload: which file, what happened, and where the time went.
#[derive(Debug, Clone)]
pub struct ReloadEvent {
    /// The file.
    pub path: PathBuf,
    /// What happened.
    pub outcome: ReloadOutcome,
    /// From the first change seen to the reload starting (the debounce,
    /// and any wait for an earlier reload of the same file).
    pub waited: Duration,
    /// Compiling, or loading the compiled copy from the cache.
    pub compile: Duration,
    /// Checking the contract, pre-linking and `describe`.
    pub check: Duration,
    /// Putting the new version in place.
    pub swap: Duration,
    /// When the reload finished.
    pub done: Instant,
}

/// A version the registry holds, for `plugin list`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Listed {
    /// Its name.
    pub name: String,
    /// Its version (as it describes itself).
    pub version: String,
    /// The contract version it was built for.
    pub contract: String,
    /// Its component's SHA-256, first 12 hex digits.
    pub digest: String,
    /// Where it came from: `built-in`, `installed` or `file`.
    pub source: &'static str,
    /// The file, for installed plugins and files.
    pub path: Option<String>,
    /// Why the file's latest contents were refused, when they were.
    pub refused: Option<Refusal>,
    /// The loaded version itself, to tell which connections run it.
    #[serde(skip)]
    pub plugin: Option<Arc<Plugin>>,
}

impl Listed {
    /// Whether this is the very version `p` (not merely the same bytes
    /// elsewhere).
    pub fn is(&self, p: &Arc<Plugin>) -> bool {
        self.plugin.as_ref().is_some_and(|l| Arc::ptr_eq(l, p))
    }
}

#[derive(Default)]
struct Slot {
    /// The version serving from this file (`None`: none ever loaded).
    plugin: Option<Arc<Plugin>>,
    /// Which load this was: among equal versions the newest load wins.
    seq: u64,
    /// The last reload that failed, while `plugin` served on.
    refused: Option<Refusal>,
}

#[derive(Default)]
struct State {
    /// Files in the plugins directory.
    installed: BTreeMap<PathBuf, Slot>,
    /// Files connections name by path, elsewhere.
    files: BTreeMap<PathBuf, Slot>,
    seq: u64,
}

impl State {
    fn slots(&mut self, installed: bool) -> &mut BTreeMap<PathBuf, Slot> {
        if installed {
            &mut self.installed
        } else {
            &mut self.files
        }
    }
}

/// An installed plugin must be a file of its own: a symbolic or hard link
/// could lead to a file a plugin can write (its granted directory), and so
/// to code that plugin chose running for every connection of the version.
fn own_file(dir: &Path, path: &Path) -> Result<(), String> {
    // Its folder too: a folder that is a link leads anywhere.
    if let Some(folder) = path.parent().filter(|f| *f != dir)
        && std::fs::symlink_metadata(folder).is_ok_and(|m| !m.file_type().is_dir())
    {
        return Err(format!(
            "{} is a symbolic link, not a folder of the plugins directory: an installed plugin must be a file of its own (copy it in, or use `plugin add`)",
            folder.display()
        ));
    }
    let meta = std::fs::symlink_metadata(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if meta.file_type().is_symlink() {
        return Err(format!(
            "{} is a symbolic link: an installed plugin must be a file of its own (copy it in, or use `plugin add`)",
            path.display()
        ));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt as _;
        if meta.is_file() && meta.nlink() > 1 {
            return Err(format!(
                "{} has {} hard links: an installed plugin must be a file of its own (copy it in, or use `plugin add`)",
                path.display(),
                meta.nlink()
            ));
        }
    }
    Ok(())
}

/// Every plugin version this host can run, and the one each reference
/// resolves to now.
pub struct Registry {
    runtime: Arc<Runtime>,
    dir: Option<PathBuf>,
    builtins: Vec<(BuiltinPlugin, tokio::sync::OnceCell<Arc<Plugin>>)>,
    state: Mutex<State>,
    /// One lock per file: reloads of one file never overlap.
    reloading: Mutex<HashMap<PathBuf, Arc<tokio::sync::Mutex<()>>>>,
    events: tokio::sync::broadcast::Sender<ReloadEvent>,
    /// Set while watching: files named by path are added to it when first
    /// loaded.
    pub(super) watcher: Mutex<Option<super::watch::Watching>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").field("dir", &self.dir).finish()
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl PluginVersion {
    /// The version `plugin` is.
    pub fn of(plugin: &Plugin) -> PluginVersion {
        PluginVersion {
            name: plugin.descriptor.name.clone(),
            version: plugin.descriptor.version.clone(),
            digest: plugin.digest.chars().take(SHORT_DIGEST).collect(),
        }
    }
}

/// Whether `path`, under the plugins directory `dir`, is a plugin file the
/// registry holds: a `.wasm` at the top or one directory down, no part of
/// it hidden (temporary files start with `.`).
pub(super) fn is_installed_file(dir: &Path, path: &Path) -> bool {
    let Ok(rest) = path.strip_prefix(dir) else {
        return false;
    };
    let parts: Vec<_> = rest.components().collect();
    !parts.is_empty()
        && parts.len() <= 2
        && parts
            .iter()
            .all(|p| !p.as_os_str().to_string_lossy().starts_with('.'))
        && path.extension().is_some_and(|e| e == "wasm")
}

impl Registry {
    /// A registry of the built-in plugins, those installed in `dir` (when
    /// given; read by [`Registry::scan`]), and files named by path.
    pub fn new(runtime: Arc<Runtime>, dir: Option<PathBuf>) -> Registry {
        // The directory absolute and, when it exists, canonical: watched
        // paths and installed paths compare equal.
        let dir = dir.map(|d| {
            std::fs::canonicalize(&d).unwrap_or_else(|_| std::path::absolute(&d).unwrap_or(d))
        });
        Registry {
            runtime,
            dir,
            builtins: builtin::ALL
                .iter()
                .map(|b| (*b, tokio::sync::OnceCell::new()))
                .collect(),
            state: Mutex::default(),
            reloading: Mutex::default(),
            events: tokio::sync::broadcast::channel(64).0,
            watcher: Mutex::new(None),
        }
    }

    /// The plugins directory, if there is one.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// The runtime plugins are loaded into.
    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }

    /// Every reload from now on, as it happens.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<ReloadEvent> {
        self.events.subscribe()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // Every change to the state is one statement under the lock.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The plugin files in the plugins directory.
    pub fn installed_files(&self) -> Vec<PathBuf> {
        let Some(dir) = &self.dir else {
            return Vec::new();
        };
        let mut files = Vec::new();
        let Ok(top) = std::fs::read_dir(dir) else {
            return files;
        };
        for e in top.flatten() {
            let path = e.path();
            match e.file_type() {
                Ok(t) if t.is_dir() => {
                    if let Ok(inner) = std::fs::read_dir(&path) {
                        files.extend(inner.flatten().map(|e| e.path()));
                    }
                }
                Ok(_) => files.push(path),
                Err(_) => {}
            }
        }
        files.retain(|p| is_installed_file(dir, p));
        files.sort();
        files
    }

    /// Loads every plugin file in the plugins directory (compiled copies
    /// come from the cache); those that cannot be loaded are kept as
    /// refused, with why, and returned.
    pub async fn scan(&self) -> Vec<(PathBuf, String)> {
        let mut refused = Vec::new();
        for path in self.installed_files() {
            let event = self.reload(&path, None).await;
            if let ReloadOutcome::Refused { message, .. } = event.outcome {
                refused.push((path, message));
            }
        }
        refused
    }

    /// The plugin a connection's `plugin` field names now.
    pub async fn resolve_text(&self, text: &str) -> anyhow::Result<Arc<Plugin>> {
        let r = PluginRef::parse(text).map_err(anyhow::Error::msg)?;
        Ok(self.resolve(&r).await?)
    }

    /// The plugin `r` names now: loaded on first use, the newest version
    /// `r` allows.
    pub async fn resolve(&self, r: &PluginRef) -> Result<Arc<Plugin>, ResolveError> {
        match r {
            PluginRef::File(path) => {
                let path = std::path::absolute(path).unwrap_or_else(|_| path.clone());
                let installed = self.is_installed(&path);
                let serving = |r: &Registry| {
                    r.state()
                        .slots(installed)
                        .get(&path)
                        .and_then(|s| s.plugin.clone())
                };
                if let Some(p) = serving(self) {
                    return Ok(p);
                }
                if installed {
                    // An installed file named by its path: the one slot a
                    // reload of it updates.
                    let event = self.reload(&path, None).await;
                    return match (serving(self), event.outcome) {
                        (Some(p), _) => Ok(p),
                        (None, ReloadOutcome::Refused { message, .. }) => {
                            Err(ResolveError::Refused(message))
                        }
                        (None, _) => Err(ResolveError::Refused(format!(
                            "{} is not there",
                            path.display()
                        ))),
                    };
                }
                // First use: load it (serialized with any reload of it).
                let lock = self.file_lock(&path);
                let _held = lock.lock().await;
                if let Some(p) = serving(self) {
                    return Ok(p);
                }
                let plugin = match self.runtime.load_file(&path).await {
                    Ok(p) => p,
                    Err(e) => {
                        // Kept, so that lists and statuses show why.
                        self.state().files.entry(path.clone()).or_default().refused =
                            Some(Refusal {
                                path: path.display().to_string(),
                                at: now_ms(),
                                message: e.to_string(),
                            });
                        self.watch_file(&path);
                        return Err(e.into());
                    }
                };
                {
                    let mut state = self.state();
                    state.seq += 1;
                    let seq = state.seq;
                    state.files.insert(
                        path.clone(),
                        Slot {
                            plugin: Some(plugin.clone()),
                            seq,
                            refused: None,
                        },
                    );
                }
                self.watch_file(&path);
                Ok(plugin)
            }
            PluginRef::Named { name, want } => self.resolve_named(name, want).await,
        }
    }

    async fn builtin(&self, name: &str) -> Option<Result<Arc<Plugin>, LoadError>> {
        let (b, cell) = self.builtins.iter().find(|(b, _)| b.name == name)?;
        Some(
            cell.get_or_try_init(|| async {
                self.runtime
                    .load(b.wasm.to_vec(), &format!("built-in {} plugin", b.name))
                    .await
            })
            .await
            .cloned(),
        )
    }

    async fn resolve_named(&self, name: &str, want: &Want) -> Result<Arc<Plugin>, ResolveError> {
        // Installed versions: (version, seq, plugin).
        let mut found: Vec<(Option<Version>, u64, Arc<Plugin>)> = self
            .state()
            .installed
            .values()
            .filter_map(|s| s.plugin.clone().map(|p| (s.seq, p)))
            .filter(|(_, p)| p.descriptor.name == name)
            .map(|(seq, p)| (Version::parse(&p.descriptor.version).ok(), seq, p))
            .collect();
        if let Some(b) = self.builtin(name).await {
            // Ranked below an installed copy of the same version.
            let b = b?;
            found.push((Version::parse(&b.descriptor.version).ok(), 0, b));
        }
        if found.is_empty() {
            let mut installed: Vec<String> = self
                .state()
                .installed
                .values()
                .filter_map(|s| s.plugin.as_ref().map(|p| p.descriptor.name.clone()))
                .collect();
            installed.sort();
            installed.dedup();
            return Err(ResolveError::NoSuchPlugin {
                name: name.to_string(),
                builtin: builtin::ALL
                    .iter()
                    .map(|b| b.name)
                    .collect::<Vec<_>>()
                    .join(", "),
                installed: if installed.is_empty() {
                    "none".into()
                } else {
                    installed.join(", ")
                },
            });
        }
        // Following the newest takes a prerelease only when there is no
        // release (as cargo's `*` does).
        let stable = found
            .iter()
            .any(|(v, _, _)| v.as_ref().is_some_and(|v| v.pre.is_empty()));
        let best = found
            .iter()
            .filter_map(|(v, seq, p)| v.as_ref().map(|v| (v, *seq, p)))
            .filter(|(v, _, _)| want.allows(v))
            .filter(|(v, _, _)| !(*want == Want::Latest && stable && !v.pre.is_empty()))
            .max_by(|a, b| a.0.cmp_precedence(b.0).then(a.1.cmp(&b.1)));
        match best {
            Some((_, _, p)) => Ok(p.clone()),
            None => {
                let mut versions: Vec<String> = found
                    .iter()
                    .map(|(_, _, p)| p.descriptor.version.clone())
                    .collect();
                versions.sort();
                versions.dedup();
                Err(ResolveError::NoMatchingVersion {
                    name: name.to_string(),
                    want: want.to_string(),
                    versions: versions.join(", "),
                })
            }
        }
    }

    fn file_lock(&self, path: &Path) -> Arc<tokio::sync::Mutex<()>> {
        self.reloading
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(path.to_path_buf())
            .or_default()
            .clone()
    }

    /// The installed files the registry holds a slot for (some may be gone).
    pub(super) fn installed_paths(&self) -> Vec<PathBuf> {
        self.state().installed.keys().cloned().collect()
    }

    /// The files named by path loaded so far.
    pub(super) fn named_files(&self) -> Vec<PathBuf> {
        self.state().files.keys().cloned().collect()
    }

    /// Whether `path` is a plugin file in the plugins directory.
    fn is_installed(&self, path: &Path) -> bool {
        self.dir
            .as_deref()
            .is_some_and(|d| is_installed_file(d, path))
    }

    /// Whether `path` is a folder of the plugins directory (where `plugin
    /// add` puts a plugin's versions).
    pub(super) fn is_installed_folder(&self, path: &Path) -> bool {
        // A real directory: a link to one is never followed.
        self.dir
            .as_deref()
            .is_some_and(|d| path.parent() == Some(d))
            && path
                .file_name()
                .is_some_and(|n| !n.to_string_lossy().starts_with('.'))
            && std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_dir())
    }

    /// Whether the registry holds `path`: a file in the plugins directory,
    /// or one a connection named by path and has loaded.
    pub fn holds(&self, path: &Path) -> bool {
        self.dir
            .as_deref()
            .is_some_and(|d| is_installed_file(d, path))
            || self.state().files.contains_key(path)
    }

    /// Loads `path` again and, if it loads, puts the new version in place
    /// of the one it held; if not, the old version serves on and the
    /// reason is kept. Reloads of one file run one at a time, in order.
    /// `changed`: when the first change was seen, for the timings.
    pub async fn reload(&self, path: &Path, changed: Option<Instant>) -> ReloadEvent {
        let changed = changed.unwrap_or_else(Instant::now);
        let lock = self.file_lock(path);
        let _held = lock.lock().await;
        let started = Instant::now();
        let installed = self.is_installed(path);
        let mut event = ReloadEvent {
            path: path.to_path_buf(),
            outcome: ReloadOutcome::Unchanged,
            waited: started.saturating_duration_since(changed),
            compile: Duration::ZERO,
            check: Duration::ZERO,
            swap: Duration::ZERO,
            done: started,
        };
        let old = self
            .state()
            .slots(installed)
            .get(path)
            .and_then(|s| s.plugin.clone());
        // An installed file removed takes its version out; a file a
        // connection names is kept serving (a build may be re-creating it).
        if installed && std::fs::symlink_metadata(path).is_err() {
            let t = Instant::now();
            let was = self.state().installed.remove(path).and_then(|s| s.plugin);
            event.swap = t.elapsed();
            event.outcome = ReloadOutcome::Removed {
                was: was.as_deref().map(PluginVersion::of),
            };
            return self.finish(event);
        }
        let got: Result<Option<Arc<Plugin>>, String> = async {
            if installed && let Some(dir) = &self.dir {
                own_file(dir, path)?;
            }
            let bytes = super::plugin::read_plugin_file(path)
                .await
                .map_err(|e| e.to_string())?;
            // The same bytes as serve now (an editor touching the file, a
            // rebuild that changed nothing): nothing to load.
            if old
                .as_ref()
                .is_some_and(|o| o.digest == hex(&Sha256::digest(&bytes)))
            {
                return Ok(None);
            }
            let plugin = self
                .runtime
                .load(bytes, &path.display().to_string())
                .await
                .map_err(|e| e.to_string())?;
            if installed {
                // What `plugin add` checks, for files copied in by hand.
                let d = &plugin.descriptor;
                check_name(&d.name)
                    .map_err(|m| format!("{}: describe: name: {m}", path.display()))?;
                Version::parse(&d.version).map_err(|e| {
                    format!(
                        "{}: describe: version: `{}` is not a semver version ({e})",
                        path.display(),
                        d.version.escape_debug()
                    )
                })?;
            }
            Ok(Some(plugin))
        }
        .await;
        match got {
            Ok(None) => {
                // Back to what serves: nothing to report any more.
                if let Some(s) = self.state().slots(installed).get_mut(path) {
                    s.refused = None;
                }
            }
            Ok(Some(plugin)) => {
                event.compile = plugin.compile_time;
                event.check = started.elapsed().saturating_sub(plugin.compile_time);
                let t = Instant::now();
                {
                    let mut state = self.state();
                    state.seq += 1;
                    let seq = state.seq;
                    state.slots(installed).insert(
                        path.to_path_buf(),
                        Slot {
                            plugin: Some(plugin.clone()),
                            seq,
                            refused: None,
                        },
                    );
                }
                event.swap = t.elapsed();
                event.outcome = ReloadOutcome::Loaded {
                    now: PluginVersion::of(&plugin),
                    previous: old.as_deref().map(PluginVersion::of),
                };
            }
            Err(message) => {
                event.check = started.elapsed();
                self.state()
                    .slots(installed)
                    .entry(path.to_path_buf())
                    .or_default()
                    .refused = Some(Refusal {
                    path: path.display().to_string(),
                    at: now_ms(),
                    message: message.clone(),
                });
                event.outcome = ReloadOutcome::Refused {
                    message,
                    serving: old.as_deref().map(PluginVersion::of),
                };
            }
        }
        self.finish(event)
    }

    fn finish(&self, mut event: ReloadEvent) -> ReloadEvent {
        event.done = Instant::now();
        let path = event.path.display().to_string();
        match &event.outcome {
            ReloadOutcome::Loaded { now, previous } => tracing::info!(
                plugin = %path,
                now = %now,
                previous = previous.as_ref().map(|p| p.to_string()).unwrap_or_default(),
                waited_ms = event.waited.as_millis() as u64,
                compile_ms = event.compile.as_millis() as u64,
                check_ms = event.check.as_millis() as u64,
                "plugin reloaded: operations from now on run the new version"
            ),
            ReloadOutcome::Refused {
                message,
                serving: Some(serving),
            } => tracing::warn!(
                plugin = %path,
                serving = %serving,
                "plugin reload refused, the old version serves on: {message}"
            ),
            ReloadOutcome::Refused {
                message,
                serving: None,
            } => tracing::warn!(plugin = %path, "plugin file refused: {message}"),
            ReloadOutcome::Removed { was } => tracing::info!(
                plugin = %path,
                was = was.as_ref().map(|p| p.to_string()).unwrap_or_default(),
                "plugin file removed"
            ),
            ReloadOutcome::Unchanged => tracing::debug!(plugin = %path, "plugin file unchanged"),
        }
        let _ = self.events.send(event.clone());
        event
    }

    /// The reloads refused that concern `r`: the file's own, or, for a
    /// name, those of installed files that held a version of it, or that
    /// never loaded and lie in its folder (`<dir>/<name>/`).
    pub fn refusals(&self, r: &PluginRef) -> Vec<Refusal> {
        let state = self.state();
        match r {
            PluginRef::File(path) => {
                let path = std::path::absolute(path).unwrap_or_else(|_| path.clone());
                state
                    .files
                    .get(&path)
                    .and_then(|s| s.refused.clone())
                    .into_iter()
                    .collect()
            }
            PluginRef::Named { name, .. } => {
                let folder = self.dir.as_ref().map(|d| d.join(name));
                state
                    .installed
                    .iter()
                    .filter(|(path, s)| match &s.plugin {
                        Some(p) => p.descriptor.name == *name,
                        // A file that never loaded: its name is unknown but
                        // for the folder it lies in.
                        None => folder.as_deref().is_some_and(|f| path.parent() == Some(f)),
                    })
                    .filter_map(|(_, s)| s.refused.clone())
                    .collect()
            }
        }
    }

    /// Every version the registry holds: the built-in ones (loaded for
    /// this), those installed, and files connections named, with the
    /// refusals of files that hold none.
    pub async fn list(&self) -> Vec<Listed> {
        let mut out = Vec::new();
        for (b, _) in &self.builtins {
            match self.builtin(b.name).await {
                Some(Ok(p)) => out.push(listed(&p, "built-in", None, None)),
                Some(Err(e)) => {
                    tracing::error!(plugin = b.name, "a built-in plugin cannot be loaded: {e}")
                }
                None => {}
            }
        }
        let state = self.state();
        for (source, slots) in [("installed", &state.installed), ("file", &state.files)] {
            for (path, s) in slots {
                let at = Some(path.display().to_string());
                match &s.plugin {
                    Some(p) => out.push(listed(p, source, at, s.refused.clone())),
                    None => out.push(Listed {
                        name: String::new(),
                        version: String::new(),
                        contract: String::new(),
                        digest: String::new(),
                        source,
                        path: at,
                        refused: s.refused.clone(),
                        plugin: None,
                    }),
                }
            }
        }
        out
    }

    /// Installs the plugin file `file` in the plugins directory as
    /// `<name>/<version>.wasm` after loading it (compiled, contract
    /// checked, described): refused if it cannot run, if its name or
    /// version cannot name a file, or if that version is installed with
    /// other bytes (unless `replace`). Returns what was installed and
    /// whether it was already there.
    pub async fn add(&self, file: &Path, replace: bool) -> anyhow::Result<(Listed, bool)> {
        use anyhow::Context as _;
        let dir = self
            .dir
            .clone()
            .context("this host has no plugins directory (--plugins-dir)")?;
        let plugin = self
            .runtime
            .load_file(file)
            .await
            .with_context(|| format!("{} cannot be installed", file.display()))?;
        let d = &plugin.descriptor;
        check_name(&d.name)
            .map_err(|m| anyhow::anyhow!("{}: describe: name: {m}", file.display()))?;
        let version = Version::parse(&d.version).map_err(|e| {
            anyhow::anyhow!(
                "{}: describe: version: `{}` is not a semver version ({e}): the registry orders versions by it",
                file.display(),
                d.version.escape_debug()
            )
        })?;
        // Build metadata does not make another version (semver): two builds
        // of 1.0.0 share one file, and the second needs --replace.
        let mut plain = version.clone();
        plain.build = semver::BuildMetadata::EMPTY;
        let folder = dir.join(&d.name);
        let dest = folder.join(format!("{plain}.wasm"));
        let bytes = super::plugin::read_plugin_file(file).await?;
        if hex(&Sha256::digest(&bytes)) != plugin.digest {
            anyhow::bail!(
                "{} changed while it was being installed; try again",
                file.display()
            );
        }
        let mut already = false;
        // What is there is read as the loader reads it. One the registry
        // refuses (a link, a FIFO) is replaced by a file of its own.
        if std::fs::symlink_metadata(&dest).is_ok()
            && own_file(&dir, &dest).is_ok()
            && let Ok(there) = super::plugin::read_plugin_file(&dest).await
        {
            if hex(&Sha256::digest(&there)) == plugin.digest {
                already = true;
            } else if !replace {
                anyhow::bail!(
                    "{} {} is already installed ({}) with other bytes: give the new build a new version, or pass --replace",
                    d.name,
                    d.version,
                    dest.display()
                );
            }
        }
        if !already {
            // Written beside and renamed: a watching host never sees half.
            tokio::fs::create_dir_all(&folder)
                .await
                .with_context(|| format!("creating {}", folder.display()))?;
            let tmp = folder.join(format!(".{plain}.wasm.tmp{}", std::process::id()));
            let written = async {
                tokio::fs::write(&tmp, &bytes).await?;
                tokio::fs::File::open(&tmp).await?.sync_all().await?;
                tokio::fs::rename(&tmp, &dest).await
            }
            .await;
            if let Err(e) = written {
                // Nothing half-installed is left behind (a full disk, say).
                let _ = tokio::fs::remove_file(&tmp).await;
                return Err(anyhow::Error::new(e).context(format!("installing {}", dest.display())));
            }
        }
        {
            let mut state = self.state();
            state.seq += 1;
            let seq = state.seq;
            state.installed.insert(
                dest.clone(),
                Slot {
                    plugin: Some(plugin.clone()),
                    seq,
                    refused: None,
                },
            );
        }
        Ok((
            listed(&plugin, "installed", Some(dest.display().to_string()), None),
            already,
        ))
    }

    /// Prunes the compile cache of compiled plugins no version in this
    /// registry uses, under the default [`PrunePolicy`](super::plugin::PrunePolicy)
    /// (see [`Runtime::prune_cache`]). Returns how many files went.
    pub fn prune_cache(&self) -> usize {
        self.prune_cache_with(&super::plugin::PrunePolicy::default())
    }

    /// [`Registry::prune_cache`] under `policy`.
    pub fn prune_cache_with(&self, policy: &super::plugin::PrunePolicy) -> usize {
        let mut keep: HashSet<String> = builtin::ALL
            .iter()
            .map(|b| hex(&Sha256::digest(b.wasm)))
            .collect();
        let files: Vec<PathBuf> = {
            let state = self.state();
            for s in state.installed.values().chain(state.files.values()) {
                if let Some(p) = &s.plugin {
                    keep.insert(p.digest.clone());
                }
            }
            state.files.keys().cloned().collect()
        };
        // What the files hold now, loaded or not yet, read as the loader
        // reads (a FIFO, `/dev/zero` or a `/proc` file named `x.wasm` is
        // never read past what a plugin may be).
        for f in files.into_iter().chain(self.installed_files()) {
            if let Ok(bytes) = super::plugin::read_bounded(&f) {
                keep.insert(hex(&Sha256::digest(&bytes)));
            }
        }
        self.runtime.prune_cache(&keep, policy)
    }
}

fn listed(
    p: &Arc<Plugin>,
    source: &'static str,
    path: Option<String>,
    refused: Option<Refusal>,
) -> Listed {
    Listed {
        name: p.descriptor.name.clone(),
        version: p.descriptor.version.clone(),
        contract: p.contract_version.clone(),
        digest: p.digest.chars().take(SHORT_DIGEST).collect(),
        source,
        path,
        refused,
        plugin: Some(p.clone()),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
