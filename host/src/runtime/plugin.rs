//! Loading a plugin: compile (or take the precompiled copy from the cache),
//! check the contract version before anything runs, pre-link once, and ask
//! the plugin to describe itself.

use super::Runtime;
use super::bindings::{self, Descriptor};
use super::call::{self, CallError};
use super::contract::{self, ContractError};
use super::sandbox::StoreState;
use super::sandbox::{Limits, Sandbox};
use sha2::{Digest, Sha256};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::component::{Component, InstancePre};

/// The largest plugin file the host reads: 64 MiB (a Python connector built
/// with componentize-py is about 40 MiB).
pub const MAX_PLUGIN_BYTES: u64 = 64 << 20;

/// Why a plugin file cannot be run.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read {path}: {message}")]
    Read {
        /// The file.
        path: String,
        /// The OS's reason.
        message: String,
    },
    /// Not a WebAssembly component (a core module, another format, corrupt).
    #[error("{source_name} is not a WebAssembly component: {message}")]
    NotAComponent {
        /// Where the bytes came from.
        source_name: String,
        /// wasmtime's reason.
        message: String,
    },
    /// The component has more core instances, memories or tables than any
    /// one plugin may (see [`super::MAX_CORE_INSTANCES_PER_PLUGIN`]).
    #[error("{source_name} is larger than a plugin may be: {message}")]
    TooLarge {
        /// Where the bytes came from.
        source_name: String,
        /// wasmtime's count and the limit.
        message: String,
    },
    /// The component is not a plugin for an accepted contract version.
    #[error("{source_name}: {error}")]
    Contract {
        /// Where the bytes came from.
        source_name: String,
        /// What is wrong.
        error: ContractError,
    },
    /// It imports something the host does not provide.
    #[error("{source_name} imports something the host does not provide: {message}")]
    Link {
        /// Where the bytes came from.
        source_name: String,
        /// wasmtime's reason, naming the import.
        message: String,
    },
    /// `describe` failed.
    #[error("{source_name}: describe failed: {error}")]
    Describe {
        /// Where the bytes came from.
        source_name: String,
        /// The failure.
        error: CallError,
    },
}

/// A loaded plugin version: compiled, checked, pre-linked and described.
/// Cheap to share; every operation instantiates it afresh.
pub struct Plugin {
    /// What the plugin says it is.
    pub descriptor: Descriptor,
    /// The contract version it was built for.
    pub contract_version: String,
    /// SHA-256 of the component's bytes, hex: identifies the version.
    pub digest: String,
    /// Where it was loaded from, for messages.
    pub source: String,
    /// How long compiling (or loading the cached compiled copy) took.
    pub compile_time: Duration,
    /// Whether the compiled copy came from the cache.
    pub from_cache: bool,
    pub(crate) pre: InstancePre<StoreState>,
    /// Where the contract's exports are, to bind an instance made from `pre`.
    pub(crate) exports: Exports,
}

/// Where a plugin's exports are, by the contract version it was built for.
pub(crate) enum Exports {
    /// The current contract (batches).
    Current(bindings::PluginIndices),
    /// Contract 0.1.0 (one item per operation).
    V0_1(bindings::v0_1::PluginIndices),
}

impl Exports {
    fn new(version: &str, pre: &InstancePre<StoreState>) -> wasmtime::Result<Exports> {
        Ok(if version == contract::V0_1 {
            Exports::V0_1(bindings::v0_1::PluginIndices::new(pre)?)
        } else {
            Exports::Current(bindings::PluginIndices::new(pre)?)
        })
    }
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("name", &self.descriptor.name)
            .field("version", &self.descriptor.version)
            .field("contract_version", &self.contract_version)
            .field("source", &self.source)
            .finish()
    }
}

impl Runtime {
    /// Loads the plugin at `path`.
    pub async fn load_file(&self, path: &Path) -> Result<Arc<Plugin>, LoadError> {
        let bytes = read_plugin_file(path).await?;
        self.load(bytes, &path.display().to_string()).await
    }

    /// Loads a plugin from its bytes; `source` names it in messages.
    pub async fn load(&self, bytes: Vec<u8>, source: &str) -> Result<Arc<Plugin>, LoadError> {
        let source = source.to_string();
        if let Err(message) = sniff(&bytes) {
            return Err(LoadError::NotAComponent {
                source_name: source,
                message,
            });
        }
        let digest = hex(&Sha256::digest(&bytes));
        let engine = self.engine.clone();
        let cache = self.config.cache_dir.clone();
        let started = Instant::now();
        let (component, from_cache) = {
            let digest = digest.clone();
            let source = source.clone();
            tokio::task::spawn_blocking(move || compile(&engine, &bytes, &digest, cache.as_deref()))
                .await
                .map_err(|e| LoadError::NotAComponent {
                    source_name: source.clone(),
                    message: e.to_string(),
                })?
                .map_err(|message| {
                    // The pooling allocator checks the per-component maxima
                    // when the component is compiled or deserialized.
                    if message.contains("in the pooling allocator") {
                        LoadError::TooLarge {
                            source_name: source,
                            message,
                        }
                    } else {
                        LoadError::NotAComponent {
                            source_name: source,
                            message,
                        }
                    }
                })?
        };
        let compile_time = started.elapsed();

        // The version is read from the export's name before any instance exists.
        let contract_version =
            contract::check(&self.engine, &component).map_err(|error| LoadError::Contract {
                source_name: source.clone(),
                error,
            })?;
        // Pre-linking checks every import; the exports are then found by the
        // contract version's own bindings.
        let link_error = |e: wasmtime::Error| LoadError::Link {
            source_name: source.clone(),
            message: format!("{e:#}"),
        };
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(link_error)?;
        let exports = Exports::new(&contract_version, &pre).map_err(link_error)?;
        let sandbox = Sandbox {
            limits: Limits {
                deadline: Duration::from_secs(5),
                ..Limits::default()
            },
            ..Sandbox::default()
        };
        let descriptor = call::describe(self, &pre, &exports, &sandbox)
            .await
            .map_err(|error| LoadError::Describe {
                source_name: source.clone(),
                error,
            })?;
        Ok(Arc::new(Plugin {
            descriptor,
            contract_version,
            digest,
            source,
            compile_time,
            from_cache,
            exports,
            pre,
        }))
    }
}

/// Reads a plugin file: only a regular file of sane size, so that
/// `/dev/zero` or a FIFO named as a plugin cannot eat memory or hang the
/// host.
pub(crate) async fn read_plugin_file(path: &Path) -> Result<Vec<u8>, LoadError> {
    let owned = path.to_path_buf();
    tokio::task::spawn_blocking(move || read_bounded(&owned))
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r)
        .map_err(|message| LoadError::Read {
            path: path.display().to_string(),
            message,
        })
}

/// Reads a plugin file, whatever is there: opened without blocking (a FIFO
/// never waits for a writer), only a regular file, and never more than
/// [`MAX_PLUGIN_BYTES`] read whatever size it claims (a `/proc` file says
/// 0 and never ends).
pub(crate) fn read_bounded(path: &Path) -> Result<Vec<u8>, String> {
    use std::io::Read as _;
    let mut open = std::fs::OpenOptions::new();
    open.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        open.custom_flags(libc::O_NONBLOCK);
    }
    let file = open.open(path).map_err(|e| e.to_string())?;
    let meta = file.metadata().map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    if meta.len() > MAX_PLUGIN_BYTES {
        return Err(format!(
            "{} bytes; a plugin may be at most {MAX_PLUGIN_BYTES} bytes",
            meta.len()
        ));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(MAX_PLUGIN_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > MAX_PLUGIN_BYTES {
        return Err(format!(
            "it grew past {MAX_PLUGIN_BYTES} bytes while being read"
        ));
    }
    Ok(bytes)
}

/// The engine's half of a cache file's name: a compiled copy is only ever
/// loaded by an engine that can run it.
fn engine_key(engine: &wasmtime::Engine) -> String {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut h);
    format!("{:016x}", h.finish())
}

/// Which unused compiled copies pruning removes. A compiled copy is
/// unused when no version in the registry has its digest; it is kept a
/// while all the same, because a build switched back to (or another host
/// sharing the cache directory) loads it from the cache instead of
/// compiling. Loading a copy from the cache marks it used (its time).
#[derive(Debug, Clone)]
pub struct PrunePolicy {
    /// The most recently used unused copies kept, at most.
    pub keep_unused: usize,
    /// Unused copies not used for this long go whatever their number.
    pub unused_for: Duration,
    /// Copies made by another engine (another build of the host) not used
    /// for this long go.
    pub foreign_for: Duration,
}

impl Default for PrunePolicy {
    fn default() -> Self {
        PrunePolicy {
            keep_unused: 32,
            unused_for: Duration::from_secs(24 * 3600),
            foreign_for: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

impl Runtime {
    /// Removes from the compile cache the compiled copies `policy` lets go:
    /// this engine's whose digest is not in `keep` beyond the newest
    /// `keep_unused` or unused for `unused_for`, other engines' unused for
    /// `foreign_for`, and temporary files a crash left. Returns how many
    /// files went. Only files named as the cache names them are touched. A
    /// compiled copy is mapped when loaded: removing the file does not
    /// disturb a process running it, and another process that loads it
    /// later only pays a compile.
    pub fn prune_cache(
        &self,
        keep: &std::collections::HashSet<String>,
        policy: &PrunePolicy,
    ) -> usize {
        let Some(dir) = &self.config.cache_dir else {
            return 0;
        };
        let Ok(entries) = std::fs::read_dir(dir) else {
            return 0;
        };
        let ours = engine_key(&self.engine);
        let age = |e: &std::fs::DirEntry| {
            e.metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .unwrap_or_default()
        };
        // The cache writes lowercase hex only.
        let hexes = |t: &str, n: usize| {
            t.len() == n
                && t.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        };
        let mut unused = Vec::new();
        let mut gone = Vec::new();
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some((digest, rest)) = name.split_once('-') else {
                continue;
            };
            if !hexes(digest, 64) {
                continue;
            }
            if let Some(key) = rest.strip_suffix(".cwasm").filter(|k| hexes(k, 16)) {
                if key == ours {
                    if !keep.contains(digest) {
                        unused.push((age(&e), e.path()));
                    }
                } else if age(&e) > policy.foreign_for {
                    gone.push(e.path());
                }
            } else if let Some((key, pid)) = rest.split_once(".tmp")
                && hexes(key, 16)
                && !pid.is_empty()
                && pid.bytes().all(|b| b.is_ascii_digit())
                && age(&e) > Duration::from_secs(3600)
            {
                gone.push(e.path());
            }
        }
        // Newest first: the first `keep_unused` stay unless too old.
        unused.sort();
        for (i, (age, path)) in unused.into_iter().enumerate() {
            if i >= policy.keep_unused || age > policy.unused_for {
                gone.push(path);
            }
        }
        gone.into_iter()
            .filter(|p| std::fs::remove_file(p).is_ok())
            .count()
    }
}

/// Compiles `bytes`, through the cache when there is one. The cache key joins
/// the component's digest with the engine's compatibility hash, so a cached
/// copy is only ever loaded by an engine that can run it.
fn compile(
    engine: &wasmtime::Engine,
    bytes: &[u8],
    digest: &str,
    cache: Option<&Path>,
) -> Result<(Component, bool), String> {
    let Some(dir) = cache else {
        return Component::new(engine, bytes)
            .map(|c| (c, false))
            .map_err(|e| format!("{e:#}"));
    };
    let path: PathBuf = dir.join(format!("{digest}-{}.cwasm", engine_key(engine)));
    if path.exists() {
        // SAFETY: the file was written by `compile` below, from a component
        // this host compiled, into a directory the host owns; the key checks
        // the engine's compatibility.
        if let Ok(c) = unsafe { Component::deserialize_file(engine, &path) } {
            // Marked used, for pruning (see `PrunePolicy`).
            if let Ok(f) = std::fs::File::options().write(true).open(&path) {
                let _ = f.set_modified(std::time::SystemTime::now());
            }
            return Ok((c, true));
        }
    }
    let component = Component::new(engine, bytes).map_err(|e| format!("{e:#}"))?;
    // A cache that cannot be written only costs time; the plugin still runs.
    if let Ok(serialized) = component.serialize()
        && std::fs::create_dir_all(dir).is_ok()
    {
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        if std::fs::write(&tmp, serialized).is_ok() {
            let _ = std::fs::rename(&tmp, &path);
        }
    }
    Ok((component, false))
}

/// Names the common wrong files before the compiler sees them: not wasm at
/// all, or a core module built for the wrong target.
fn sniff(bytes: &[u8]) -> Result<(), String> {
    if bytes.len() < 8 || &bytes[0..4] != b"\0asm" {
        return Err("the file does not start with the WebAssembly header `\\0asm`".into());
    }
    // Bytes 4..8: version 1 with layer 0 is a core module; components use layer 1.
    if bytes[4..8] == [1, 0, 0, 0] {
        return Err(
            "it is a core WebAssembly module, not a component: build the plugin with `cargo build --target wasm32-wasip2`"
                .into(),
        );
    }
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
