//! Issue 14: the plugin registry and hot reload (P3, P5). A plugin file is
//! replaced while syncs stream through the engine: no operation fails, each
//! attempt ran on exactly one version, its log line says which, and what
//! starts after a swap runs the new version. A broken build leaves the old
//! version serving and says why; several quick writes make one reload;
//! a connection pins a version or follows the newest.
//!
//! Versions are told apart with no rebuild: the minting test connector
//! carries a tag (`build-AAAAAAAA`) in its version and in every id it
//! mints, and each variant here is its component with those bytes
//! replaced (same length). Each test has a runtime and compile cache of its
//! own, so pruning never touches the other tests' cache.

use ledgerbridge::runtime::{
    Registry, ReloadEvent, ReloadOutcome, Runtime, RuntimeConfig, WatchHandle,
};
use ledgerbridge::store::{LogRow, Store};
use ledgerbridge::sync::{Engine, RetryPolicy, WorkerConfig};
use ledgerbridge_tests::*;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::Receiver;

const TAG: &str = "build-AAAAAAAA";
const VERSION: &str = "1.0.0+build-AAAAAAAA";
const DEBOUNCE: Duration = Duration::from_millis(50);

/// The minting connector as build `tag` (one letter, repeated) of
/// `version` (`1.0.0`, same length).
fn variant(version: &str, tag: char) -> Vec<u8> {
    let tag_text = format!("build-{}", tag.to_string().repeat(8));
    let full = format!("{version}+{tag_text}");
    assert_eq!(full.len(), VERSION.len(), "a variant keeps the length");
    let bytes = std::fs::read(MINTING).unwrap();
    assert!(
        bytes
            .windows(VERSION.len())
            .any(|w| w == VERSION.as_bytes()),
        "the minting connector carries its tag in its version"
    );
    let replaced = replace_all(&bytes, VERSION.as_bytes(), full.as_bytes());
    replace_all(&replaced, TAG.as_bytes(), tag_text.as_bytes())
}

fn replace_all(hay: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = hay.to_vec();
    let mut i = 0;
    while i + from.len() <= out.len() {
        if &out[i..i + from.len()] == from {
            out[i..i + from.len()].copy_from_slice(to);
            i += from.len();
        } else {
            i += 1;
        }
    }
    out
}

fn mkfifo(path: &Path) {
    assert!(
        std::process::Command::new("mkfifo")
            .arg(path)
            .status()
            .unwrap()
            .success()
    );
}

/// Prunes the host's cache off the async workers, failing the test if it
/// takes longer than `limit` (a FIFO or an endless file read would).
async fn prunes_within(h: &Host, limit: Duration) {
    let registry = h.engine.registry().clone();
    tokio::time::timeout(
        limit,
        tokio::task::spawn_blocking(move || registry.prune_cache()),
    )
    .await
    .expect("pruning reads no more than a plugin may be, and never waits on a FIFO")
    .unwrap();
}

/// The tag letter a version or a minted id carries.
fn tag_of(text: &str) -> char {
    let i = text
        .find("build-")
        .unwrap_or_else(|| panic!("no tag in {text}"));
    text[i + 6..].chars().next().unwrap()
}

struct Host {
    engine: Arc<Engine>,
    events: Receiver<ReloadEvent>,
    _watch: Option<WatchHandle>,
    dir: tempfile::TempDir,
}

impl Host {
    /// An engine with tenant `acme`, a registry over `plugins` (when
    /// given), and a runtime and cache of its own.
    async fn new(plugins: bool) -> Host {
        Host::with_retry(
            plugins,
            RetryPolicy {
                max_attempts: 3,
                base: Duration::from_millis(20),
                cap: Duration::from_millis(200),
            },
        )
        .await
    }

    async fn with_retry(plugins: bool, retry: RetryPolicy) -> Host {
        let dir = tempfile::tempdir().unwrap();
        let runtime = Arc::new(
            Runtime::new(RuntimeConfig {
                cache_dir: Some(dir.path().join("cache")),
                max_instances: 16,
                ..RuntimeConfig::default()
            })
            .unwrap(),
        );
        let registry = Arc::new(Registry::new(
            runtime,
            plugins.then(|| dir.path().join("plugins")),
        ));
        let engine = Arc::new(Engine::with_registry(
            Store::open_in_memory().unwrap(),
            registry.clone(),
            retry,
            WorkerConfig::default(),
        ));
        engine.add_tenant("acme").await.unwrap();
        let events = registry.subscribe();
        std::fs::create_dir_all(dir.path().join("erp")).unwrap();
        std::fs::create_dir_all(dir.path().join("build")).unwrap();
        Host {
            engine,
            events,
            _watch: None,
            dir,
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// A connection `id` running `plugin`, granted a directory of its own.
    async fn connect(&self, id: &str, plugin: &str) {
        let erp = self.path(&format!("erp/{id}"));
        std::fs::create_dir_all(&erp).unwrap();
        self.engine
            .put_connection(connection(id, "acme", plugin, Some(&erp)))
            .await
            .unwrap();
    }

    async fn watch(&mut self) {
        self._watch = Some(self.engine.watch_plugins(DEBOUNCE).await.unwrap());
    }

    /// The next reload of anything but an unchanged file, within 10 s.
    async fn next_event(&mut self) -> ReloadEvent {
        loop {
            let e = tokio::time::timeout(Duration::from_secs(10), self.events.recv())
                .await
                .expect("a reload within 10 s")
                .expect("the registry's events");
            if !matches!(e.outcome, ReloadOutcome::Unchanged) {
                return e;
            }
        }
    }

    /// Connection `id`'s status, as the engine reports it.
    async fn status(&self, id: &str) -> ledgerbridge::store::ConnectionStatus {
        self.engine
            .status(Some("acme"))
            .await
            .unwrap()
            .into_iter()
            .find(|c| c.id == id)
            .unwrap()
    }

    /// Syncs `doc` (imported now) and returns its log line in `conn`.
    async fn sync_in(&self, conn: &str, doc: &str) -> LogRow {
        import(
            &self.engine,
            serde_json::json!({"documents": [doc_json("acme", doc, "approved", "10.00")]}),
        )
        .await
        .unwrap();
        settle(&self.engine).await;
        let log = self.engine.log_of("acme", doc, Some(conn)).await.unwrap();
        assert_eq!(log.len(), 1, "{log:?}");
        log.into_iter().next().unwrap()
    }

    /// The next reload of the file at `rel` (under the test's directory).
    async fn event_for(&mut self, rel: &str) -> ReloadEvent {
        loop {
            let e = self.next_event().await;
            if e.path.ends_with(rel) {
                return e;
            }
        }
    }

    /// Syncs `doc` (imported now) and returns its one log line.
    async fn sync(&self, doc: &str) -> LogRow {
        import(
            &self.engine,
            serde_json::json!({"documents": [doc_json("acme", doc, "approved", "10.00")]}),
        )
        .await
        .unwrap();
        settle(&self.engine).await;
        let log = self.engine.log_of("acme", doc, None).await.unwrap();
        assert_eq!(log.len(), 1, "{log:?}");
        log.into_iter().next().unwrap()
    }
}

/// The tag of the version a log line says ran it, checked against the tag
/// of the id the create answered: one version ran the whole attempt.
fn ran_on(row: &LogRow) -> char {
    assert_eq!(row.outcome, "created", "{row:?}");
    let v = row
        .plugin
        .as_ref()
        .expect("the log names the plugin version");
    assert_eq!(v.name, "minting");
    assert_eq!(v.digest.len(), 12);
    let tag = tag_of(&v.version);
    let minted = row.entry_id.as_deref().expect("an entry id");
    assert_eq!(
        tag_of(minted),
        tag,
        "the entry was minted by the version the log names: {row:?}"
    );
    tag
}

fn loaded_tag(e: &ReloadEvent) -> char {
    match &e.outcome {
        ReloadOutcome::Loaded { now, .. } => tag_of(&now.version),
        other => panic!("expected a reload, got {other:?}"),
    }
}

/// P3: while documents stream through a running worker, the connection's
/// plugin file is replaced three times. No attempt fails; each ran on one
/// version (the tag of the id it minted is that of the version its log line
/// names); every document imported after a swap was seen ran on that
/// version or a later one; and every version served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p3_a_plugin_replaced_while_syncs_stream_fails_no_operation() {
    let mut h = Host::new(false).await;
    let file = h.path("build/minting.wasm");
    std::fs::write(&file, variant("1.0.0", 'A')).unwrap();
    h.connect("m", file.to_str().unwrap()).await;
    h.watch().await;
    let (stop, rx) = tokio::sync::watch::channel(false);
    let worker = {
        let e = h.engine.clone();
        tokio::spawn(async move { e.run_worker(false, rx).await })
    };
    // (document, the oldest version it may run on)
    let mut imported: Vec<(String, char)> = Vec::new();
    let mut current = 'A';
    for next in ['B', 'C', 'D', 'E'] {
        for i in 0..12 {
            let id = format!("{current}{i:02}");
            import(
                &h.engine,
                serde_json::json!({"documents": [doc_json("acme", &id, "approved", "10.00")]}),
            )
            .await
            .unwrap();
            imported.push((id, current));
            tokio::time::sleep(Duration::from_millis(15)).await;
        }
        if next == 'E' {
            break;
        }
        // Written in place, as `cp` does, while syncs run.
        std::fs::write(&file, variant("1.0.0", next)).unwrap();
        let e = h.next_event().await;
        assert_eq!(loaded_tag(&e), next);
        current = next;
    }
    // Everything imported is synced.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    for (doc, _) in &imported {
        while h.engine.log_of("acme", doc, None).await.unwrap().is_empty() {
            assert!(std::time::Instant::now() < deadline, "{doc} never synced");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    stop.send(true).unwrap();
    worker.await.unwrap().unwrap();
    let mut seen = std::collections::BTreeSet::new();
    for (doc, oldest) in &imported {
        let log = h.engine.log_of("acme", doc, None).await.unwrap();
        assert_eq!(log.len(), 1, "one attempt, no failure: {log:?}");
        let tag = ran_on(&log[0]);
        assert!(
            tag >= *oldest,
            "{doc} was imported after version {oldest} was swapped in, and ran on {tag}"
        );
        seen.insert(tag);
    }
    assert!(seen.contains(&'D'), "the last version served: {seen:?}");
    assert!(seen.len() >= 3, "the versions took turns serving: {seen:?}");
}

/// P3: a broken build (garbage; a component for a contract this host does
/// not accept; one that traps in `describe`; a file written in two steps, read when half written) leaves
/// the old version serving, and the reason is in the reload's event and the
/// connection's status; the whole file reloads, and the status clears.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p3_a_broken_build_leaves_the_old_version_serving_and_says_why() {
    let mut h = Host::new(false).await;
    let file = h.path("build/minting.wasm");
    std::fs::write(&file, variant("1.0.0", 'A')).unwrap();
    h.connect("m", file.to_str().unwrap()).await;
    h.watch().await;
    let half = variant("1.0.0", 'B');
    let broken: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "garbage",
            b"this is not wasm at all".to_vec(),
            "not a WebAssembly component",
        ),
        (
            "contract",
            std::fs::read(FUTURE_CONTRACT).unwrap(),
            "ledgerbridge:connector@0.3.0",
        ),
        (
            "half",
            half[..half.len() / 2].to_vec(),
            "not a WebAssembly component",
        ),
    ];
    for (n, (what, bytes, why)) in broken.into_iter().enumerate() {
        std::fs::write(&file, &bytes).unwrap();
        let e = h.next_event().await;
        match &e.outcome {
            ReloadOutcome::Refused { message, serving } => {
                assert!(message.contains(why), "{what}: {message}");
                assert_eq!(tag_of(&serving.as_ref().unwrap().version), 'A', "{what}");
            }
            other => panic!("{what}: {other:?}"),
        }
        let s = h.status("m").await;
        let refused = s.plugin_refused.expect("the status says why");
        assert!(refused.contains(why), "{what}: {refused}");
        assert_eq!(tag_of(&s.plugin_version.unwrap().version), 'A');
        assert_eq!(ran_on(&h.sync(&format!("old{n}")).await), 'A', "{what}");
    }
    // The second step of the half-written file: the rest of it.
    use std::io::Write as _;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&file)
        .unwrap();
    f.write_all(&half[half.len() / 2..]).unwrap();
    drop(f);
    assert_eq!(loaded_tag(&h.next_event().await), 'B');
    let s = h.status("m").await;
    assert_eq!(s.plugin_refused, None, "fixed: nothing to report");
    assert_eq!(tag_of(&s.plugin_version.unwrap().version), 'B');
    assert_eq!(ran_on(&h.sync("new").await), 'B');
}

/// P3: a build written as cargo and editors do (truncated, written in
/// pieces, renamed over) within the debounce makes one reload, of the
/// whole file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p3_several_quick_writes_make_one_reload() {
    let mut h = Host::new(false).await;
    let file = h.path("build/minting.wasm");
    std::fs::write(&file, variant("1.0.0", 'A')).unwrap();
    h.connect("m", file.to_str().unwrap()).await;
    h.watch().await;
    let b = variant("1.0.0", 'B');
    let c = variant("1.0.0", 'C');
    use std::io::Write as _;
    let mut f = std::fs::File::create(&file).unwrap();
    for piece in b.chunks(b.len() / 4 + 1) {
        f.write_all(piece).unwrap();
        f.flush().unwrap();
        std::thread::sleep(Duration::from_millis(5));
    }
    drop(f);
    let tmp = h.path("build/.minting.wasm.tmp");
    std::fs::write(&tmp, &c).unwrap();
    std::fs::rename(&tmp, &file).unwrap();
    assert_eq!(loaded_tag(&h.next_event().await), 'C');
    // Nothing else comes: one reload.
    let more = tokio::time::timeout(Duration::from_millis(500), h.next_event()).await;
    assert!(
        more.is_err(),
        "a second reload: {:?}",
        more.map(|e| e.outcome)
    );
    assert_eq!(ran_on(&h.sync("d1").await), 'C');
}

/// P3: the registry holds several versions side by side; a connection that
/// names the plugin follows the newest, one that pins a version keeps it,
/// and a version dropped into the plugins directory while watching is
/// taken by the followers at once. `plugins()` says who runs what; a
/// requirement no version meets is refused naming the versions there are;
/// a removed version leaves the registry, and pruning takes its compiled
/// copy from the cache while keeping those of the versions still there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p3_connections_pin_a_version_or_follow_the_newest() {
    let mut h = Host::new(true).await;
    let registry = h.engine.registry().clone();
    for (version, tag) in [("1.0.0", 'A'), ("1.2.0", 'C')] {
        let f = h.path(&format!("build/{tag}.wasm"));
        std::fs::write(&f, variant(version, tag)).unwrap();
        let (listed, already) = registry.add(&f, false).await.unwrap();
        assert!(!already);
        assert_eq!(
            Path::new(listed.path.as_deref().unwrap()),
            h.path(&format!("plugins/minting/{version}.wasm"))
                .canonicalize()
                .unwrap()
        );
    }
    // The same file again is already there; other bytes for a version
    // installed are refused.
    assert!(
        registry
            .add(&h.path("build/A.wasm"), false)
            .await
            .unwrap()
            .1
    );
    std::fs::write(h.path("build/A2.wasm"), variant("1.0.0", 'Z')).unwrap();
    let e = registry
        .add(&h.path("build/A2.wasm"), false)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("already installed") && e.contains("--replace"),
        "{e}"
    );

    h.connect("follow", "minting").await;
    h.connect("pinned", "minting@1.0.0").await;
    h.connect("caret", "minting@~1.0").await;
    let e = h
        .engine
        .put_connection(connection("none", "acme", "minting@^2", None))
        .await
        .unwrap_err();
    let e = format!("{e:#}");
    assert!(
        e.contains("plugin") && e.contains("1.0.0+build-AAAAAAAA") && e.contains("1.2.0"),
        "{e}"
    );
    h.watch().await;

    let synced = |h: &Host, conn: &'static str, doc: &'static str| {
        let e = h.engine.clone();
        async move {
            import(
                &e,
                serde_json::json!({"documents": [doc_json("acme", doc, "approved", "10.00")]}),
            )
            .await
            .unwrap();
            settle(&e).await;
            ran_on(&e.log_of("acme", doc, Some(conn)).await.unwrap()[0])
        }
    };
    assert_eq!(synced(&h, "follow", "d1").await, 'C');
    assert_eq!(synced(&h, "pinned", "d1").await, 'A');
    assert_eq!(synced(&h, "caret", "d1").await, 'A');

    // A newer version dropped in by hand (not through `add`).
    std::fs::write(h.path("plugins/minting-1.3.wasm"), variant("1.3.0", 'D')).unwrap();
    assert_eq!(loaded_tag(&h.next_event().await), 'D');
    assert_eq!(synced(&h, "follow", "d2").await, 'D');
    assert_eq!(synced(&h, "pinned", "d2").await, 'A');

    // A broken file in minting's folder is reported to the connections that
    // follow minting (D serves on); one in another folder is not theirs.
    std::fs::create_dir_all(h.path("plugins/other")).unwrap();
    std::fs::write(h.path("plugins/other/x.wasm"), b"junk").unwrap();
    assert!(matches!(
        h.event_for("plugins/other/x.wasm").await.outcome,
        ReloadOutcome::Refused { .. }
    ));
    assert_eq!(h.status("follow").await.plugin_refused, None);
    std::fs::write(h.path("plugins/minting/2.0.0.wasm"), b"junk").unwrap();
    assert!(matches!(
        h.event_for("plugins/minting/2.0.0.wasm").await.outcome,
        ReloadOutcome::Refused { .. }
    ));
    let why = h
        .status("follow")
        .await
        .plugin_refused
        .expect("the broken build is reported");
    assert!(
        why.contains("minting/2.0.0.wasm") && why.contains("not a WebAssembly component"),
        "{why}"
    );
    assert_eq!(synced(&h, "follow", "d2b").await, 'D');
    for junk in ["plugins/other/x.wasm", "plugins/minting/2.0.0.wasm"] {
        std::fs::remove_file(h.path(junk)).unwrap();
        assert!(matches!(
            h.event_for(junk).await.outcome,
            ReloadOutcome::Removed { .. }
        ));
    }
    assert_eq!(
        h.status("follow").await.plugin_refused,
        None,
        "removed: nothing to report"
    );

    let listing = h.engine.plugins().await.unwrap();
    let users = |tag: char| -> Vec<String> {
        listing
            .iter()
            .find(|l| l.version.name == "minting" && tag_of(&l.version.version) == tag)
            .map(|l| l.connections.clone())
            .unwrap_or_default()
    };
    assert_eq!(users('D'), ["follow"]);
    assert_eq!(users('A'), ["caret", "pinned"]);
    assert!(users('C').is_empty());
    assert!(
        listing
            .iter()
            .any(|l| l.version.name == "csv" && l.version.source == "built-in")
    );

    // Removed: the followers go back to the newest left.
    let digest = |tag: char| -> String {
        listing
            .iter()
            .find(|l| l.version.name == "minting" && tag_of(&l.version.version) == tag)
            .map(|l| l.version.digest.clone())
            .unwrap()
    };
    let cache = h.path("cache");
    let cached = |d: &str| -> bool {
        std::fs::read_dir(&cache)
            .unwrap()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with(d))
    };
    let (a, c, d) = (digest('A'), digest('C'), digest('D'));
    assert!(cached(&a) && cached(&c) && cached(&d));
    std::fs::remove_file(h.path("plugins/minting-1.3.wasm")).unwrap();
    assert!(matches!(
        h.next_event().await.outcome,
        ReloadOutcome::Removed { .. }
    ));
    assert_eq!(synced(&h, "follow", "d3").await, 'C');
    // Pruned at once: the removed version's compiled copy goes, and the
    // refused build Z's; those of A, C and the built-in plugins stay. (By
    // default the 32 newest unused copies stay a day, for a build switched
    // back to.)
    let now = ledgerbridge::runtime::PrunePolicy {
        keep_unused: 0,
        unused_for: Duration::ZERO,
        ..Default::default()
    };
    assert_eq!(registry.prune_cache(), 0, "kept a while by default");
    assert_eq!(registry.prune_cache_with(&now), 2);
    assert!(cached(&a) && cached(&c) && !cached(&d));
    let left = std::fs::read_dir(&cache).unwrap().count();
    assert_eq!(left, 2 + ledgerbridge::builtin::ALL.len());
    assert_eq!(synced(&h, "pinned", "d3").await, 'A');
}

/// P3, P8: the watch survives its directories being replaced (`cargo
/// clean`, a folder moved in), and odd files never hurt the host: an
/// installed plugin that is a symbolic or hard link is refused (a link could
/// lead to a file a plugin can write), a FIFO named `.wasm` is neither read
/// by a reload nor by pruning, a connection naming an installed file by its
/// path follows its reloads, and `plugins()` lists files named by path with
/// the connections running them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p3_replaced_directories_links_and_odd_files() {
    let mut h = Host::new(true).await;
    let file = h.path("build/minting.wasm");
    std::fs::write(&file, variant("1.0.0", 'A')).unwrap();
    h.connect("m", file.to_str().unwrap()).await;
    h.watch().await;

    // The build directory removed and made again.
    std::fs::remove_dir_all(h.path("build")).unwrap();
    std::fs::create_dir_all(h.path("build")).unwrap();
    std::fs::write(&file, variant("1.0.0", 'B')).unwrap();
    assert_eq!(loaded_tag(&h.event_for("build/minting.wasm").await), 'B');
    assert_eq!(ran_on(&h.sync("d1").await), 'B');
    // And again: still watched.
    std::fs::write(&file, variant("1.0.0", 'C')).unwrap();
    assert_eq!(loaded_tag(&h.event_for("build/minting.wasm").await), 'C');

    let listing = h.engine.plugins().await.unwrap();
    let by_path = listing
        .iter()
        .find(|l| l.version.source == "file")
        .expect("a file named by path is listed");
    assert_eq!(by_path.connections, ["m"]);
    assert_eq!(tag_of(&by_path.version.version), 'C');

    // A folder moved into the plugins directory, its file written before.
    std::fs::create_dir_all(h.path("stage/minting")).unwrap();
    std::fs::write(h.path("stage/minting/1.1.0.wasm"), variant("1.1.0", 'D')).unwrap();
    std::fs::rename(h.path("stage/minting"), h.path("plugins/minting")).unwrap();
    assert_eq!(
        loaded_tag(&h.event_for("plugins/minting/1.1.0.wasm").await),
        'D'
    );

    // Links are refused; the version before serves on.
    let link = h.path("plugins/minting/1.5.0.wasm");
    std::os::unix::fs::symlink(&file, &link).unwrap();
    match h.event_for("plugins/minting/1.5.0.wasm").await.outcome {
        ReloadOutcome::Refused { message, .. } => {
            assert!(message.contains("symbolic link"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    let hard = h.path("plugins/minting/1.6.0.wasm");
    std::fs::hard_link(&file, &hard).unwrap();
    match h.event_for("plugins/minting/1.6.0.wasm").await.outcome {
        ReloadOutcome::Refused { message, .. } => {
            assert!(message.contains("hard links"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    h.connect("follow", "minting").await;
    assert_eq!(ran_on(&h.sync_in("m", "d2").await), 'C', "m runs its file");
    let log = h.engine.log_of("acme", "d2", Some("follow")).await.unwrap();
    assert_eq!(ran_on(&log[0]), 'D', "the links are not versions");

    // A FIFO named like a plugin: refused on reload, skipped by pruning.
    let fifo = h.path("plugins/fifo.wasm");
    mkfifo(&fifo);
    match h.event_for("plugins/fifo.wasm").await.outcome {
        ReloadOutcome::Refused { message, .. } => {
            assert!(message.contains("not a regular file"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    prunes_within(&h, Duration::from_secs(10)).await;

    // An installed file named by its path follows its reloads.
    let installed = h.path("plugins/minting/1.1.0.wasm");
    h.connect(
        "bypath",
        installed.canonicalize().unwrap().to_str().unwrap(),
    )
    .await;
    assert_eq!(ran_on(&h.sync_in("bypath", "d3").await), 'D');
    std::fs::write(&installed, variant("1.1.0", 'E')).unwrap();
    assert_eq!(
        loaded_tag(&h.event_for("plugins/minting/1.1.0.wasm").await),
        'E'
    );
    let log = h.sync_in("bypath", "d4").await;
    assert_eq!(ran_on(&log), 'E');
}

/// V1: a bad `plugin` reference is refused with one problem naming the
/// field (not one per check it would fail), and nothing is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_a_bad_plugin_reference_is_one_problem_naming_the_field() {
    let h = Host::new(true).await;
    let long = "x".repeat(5000);
    for (plugin, says) in [
        ("csv\u{1b}[31m", "control character"),
        (long.as_str(), "at most 4096"),
        ("/nonexistent/p.wasm", "No such file"),
        ("csv@garbage!", "neither a version nor a semver requirement"),
        ("csv@^9", "no version of `csv` is a version matching ^9"),
        ("Nope", "not a plugin name"),
    ] {
        let e = h
            .engine
            .put_connection(connection("c", "acme", plugin, Some(&h.path("erp"))))
            .await
            .unwrap_err();
        let invalid = e
            .downcast_ref::<ledgerbridge::sync::InvalidConnection>()
            .unwrap_or_else(|| panic!("{e:#}"));
        let about: Vec<_> = invalid
            .problems
            .iter()
            .filter(|p| p.field == "plugin")
            .collect();
        assert_eq!(about.len(), 1, "{plugin:.40}: {:?}", invalid.problems);
        assert!(about[0].message.contains(says), "{:?}", about[0]);
        assert!(about[0].message.len() < 600, "not echoed whole");
    }
    assert!(h.engine.connection("c").await.is_err(), "nothing stored");
}

/// P3, R1: a plugin missing for a moment (its only version removed while a
/// new one is copied in) makes a sync wait and retry, not fail for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p3_a_plugin_missing_for_a_moment_is_retried() {
    let mut h = Host::with_retry(
        true,
        RetryPolicy {
            max_attempts: 6,
            base: Duration::from_millis(400),
            cap: Duration::from_secs(2),
        },
    )
    .await;
    let registry = h.engine.registry().clone();
    let build = h.path("build/A.wasm");
    std::fs::write(&build, variant("1.0.0", 'A')).unwrap();
    let (listed, _) = registry.add(&build, false).await.unwrap();
    h.connect("follow", "minting").await;
    h.watch().await;
    let installed = std::path::PathBuf::from(listed.path.unwrap());
    std::fs::remove_file(&installed).unwrap();
    assert!(matches!(
        h.event_for("plugins/minting/1.0.0.wasm").await.outcome,
        ReloadOutcome::Removed { .. }
    ));
    import(
        &h.engine,
        serde_json::json!({"documents": [doc_json("acme", "d1", "approved", "10.00")]}),
    )
    .await
    .unwrap();
    let worker = {
        let e = h.engine.clone();
        tokio::spawn(async move { settle(&e).await })
    };
    // The first attempt finds no plugin, and is retried.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let log = h.engine.log_of("acme", "d1", None).await.unwrap();
        if let Some(first) = log.first() {
            assert_eq!(first.outcome, "retrying", "{first:?}");
            assert!(
                first
                    .error
                    .as_deref()
                    .unwrap_or_default()
                    .contains("cannot be loaded"),
                "{first:?}"
            );
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no attempt");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    std::fs::write(h.path("plugins/minting/1.0.1.wasm"), variant("1.0.1", 'B')).unwrap();
    worker.await.unwrap();
    let log = h.engine.log_of("acme", "d1", None).await.unwrap();
    assert_eq!(ran_on(log.last().unwrap()), 'B', "{log:?}");
    assert!(h.engine.attention(None).await.unwrap().is_empty());
}

/// P3, P8: what lies in the plugins directory is never followed or read
/// past what a plugin may be. A folder that is a link to a tenant's granted
/// directory is not a folder of the registry (code written there never
/// runs as an installed plugin); a file that never ends (`/proc`) is
/// refused after 64 MiB, when loaded and when the cache is pruned; a FIFO
/// or a link where `plugin add` installs is replaced by a file of its own,
/// without being read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p8_links_fifos_and_endless_files_in_the_registry_are_not_followed() {
    let mut h = Host::new(true).await;
    let registry = h.engine.registry().clone();
    h.watch().await;
    let grant = h.path("erp/granted");
    std::fs::create_dir_all(&grant).unwrap();
    std::os::unix::fs::symlink(&grant, h.path("plugins/evil")).unwrap();
    // Time for a watch to follow the link, were it followed.
    tokio::time::sleep(Duration::from_millis(300)).await;
    std::fs::write(grant.join("evil.wasm"), variant("2.0.0", 'E')).unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    while let Ok(e) = h.events.try_recv() {
        assert!(
            !matches!(e.outcome, ReloadOutcome::Loaded { .. }),
            "loaded through a linked folder: {e:?}"
        );
    }
    assert!(registry.scan().await.is_empty(), "nothing there to refuse");
    assert!(
        registry.resolve_text("minting").await.is_err(),
        "no version of minting is installed"
    );

    // A file that never ends, named by path and installed.
    let endless = h.path("build/endless.wasm");
    std::os::unix::fs::symlink("/proc/self/pagemap", &endless).unwrap();
    let e = tokio::time::timeout(
        Duration::from_secs(60),
        registry.resolve_text(endless.to_str().unwrap()),
    )
    .await
    .expect("the read is bounded")
    .unwrap_err();
    // Refused, one way or another, having read no more than 64 MiB.
    assert!(format!("{e:#}").contains("cannot read"), "{e:#}");
    std::os::unix::fs::symlink("/proc/self/pagemap", h.path("plugins/pm.wasm")).unwrap();
    prunes_within(&h, Duration::from_secs(60)).await;

    // Where `plugin add` installs: a FIFO, then a link to the same bytes.
    let build = h.path("build/A.wasm");
    std::fs::write(&build, variant("1.0.0", 'A')).unwrap();
    let dest = h.path("plugins/minting/1.0.0.wasm");
    std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
    mkfifo(&dest);
    let (_, already) = tokio::time::timeout(Duration::from_secs(30), registry.add(&build, false))
        .await
        .expect("a FIFO is not read")
        .unwrap();
    assert!(!already);
    assert!(std::fs::symlink_metadata(&dest).unwrap().is_file());
    std::fs::remove_file(&dest).unwrap();
    std::os::unix::fs::symlink(&build, &dest).unwrap();
    let (_, already) = registry.add(&build, false).await.unwrap();
    assert!(!already, "a link is no installed file, whatever its bytes");
    assert!(std::fs::symlink_metadata(&dest).unwrap().is_file());
}
