//! P6, P7: what one call may use is bounded, and one plugin cannot starve
//! another connection: the instance pool, memory (all memories, tables and
//! what the host holds for the plugin), the granted directory's files and
//! bytes, links, and file operations that take long. Each attack comes from
//! the hostile plugin (or a component built here) with a positive control
//! beside it, so a test cannot pass because the attack never happened.

use ledgerbridge::runtime::{
    CallError, Limits, LoadError, LogSource, MAX_CORE_INSTANCES_PER_PLUGIN,
    MAX_MEMORIES_PER_PLUGIN, Operation, PluginFault, Reply, Runtime, RuntimeConfig, Sandbox,
};
use ledgerbridge_tests::*;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The call's outer timer gives a call stuck in a host call this long past
/// its deadline (`GRACE` in `host/src/runtime/call.rs`).
const GRACE: Duration = Duration::from_secs(1);

/// Slack for a loaded machine when checking that a stopped call did not run
/// on unbounded; far below what an unbounded operation takes.
const SLACK: Duration = Duration::from_secs(2);

fn hostile(mode: &str, settings: &[(&str, &str)]) -> Sandbox {
    let mut all = vec![("mode".to_string(), mode.to_string())];
    all.extend(settings.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Sandbox {
        tenant_id: "t1".into(),
        connection_id: "c1".into(),
        settings: all,
        ..Sandbox::default()
    }
}

fn granted(mut sandbox: Sandbox, dir: &Path, limits: Limits) -> Sandbox {
    sandbox.directory = Some(dir.to_path_buf());
    sandbox.limits = limits;
    sandbox
}

fn lookup() -> Operation {
    Operation::LookupBill {
        bill: sample_bill("doc-1"),
        known_id: None,
    }
}

fn entry_id(result: &Result<Reply, CallError>) -> String {
    match result {
        Ok(Reply::Found(Some(e))) => e.id.clone(),
        other => panic!("expected an entry, got {other:?}"),
    }
}

fn validation_message(result: &Result<Reply, CallError>) -> String {
    match result {
        Err(CallError::Connector(ledgerbridge::runtime::bindings::ConnectorError::Validation(
            v,
        ))) => v.message.clone(),
        other => panic!("expected a validation answer, got {other:?}"),
    }
}

fn host_logged(out: &ledgerbridge::runtime::CallOutcome, words: &str) -> bool {
    out.logs
        .iter()
        .any(|l| l.source == LogSource::Host && l.message.contains(words))
}

/// The number in "after N ..." of a refusal message.
fn after(message: &str) -> u64 {
    message
        .split("after ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count in {message:?}"))
}

/// A component of `empty` instances of an empty core module and
/// `with_memory` instances of a module with one memory and one table.
fn component(empty: u32, with_memory: u32) -> Vec<u8> {
    use wasm_encoder::{
        Component, InstanceSection, MemorySection, MemoryType, Module, ModuleArg, ModuleSection,
        RefType, TableSection, TableType,
    };
    let mut c = Component::new();
    c.section(&ModuleSection(&Module::new()));
    let mut m = Module::new();
    let mut tables = TableSection::new();
    tables.table(TableType {
        element_type: RefType::FUNCREF,
        table64: false,
        minimum: 1,
        maximum: None,
        shared: false,
    });
    m.section(&tables);
    let mut memories = MemorySection::new();
    memories.memory(MemoryType {
        minimum: 1,
        maximum: None,
        memory64: false,
        shared: false,
        page_size_log2: None,
    });
    m.section(&memories);
    c.section(&ModuleSection(&m));
    let mut instances = InstanceSection::new();
    for _ in 0..empty {
        instances.instantiate(0, Vec::<(&str, ModuleArg)>::new());
    }
    for _ in 0..with_memory {
        instances.instantiate(1, Vec::<(&str, ModuleArg)>::new());
    }
    c.section(&instances);
    c.finish()
}

// ---- item 3: the instance pool ---------------------------------------------

#[tokio::test]
async fn p7_a_component_with_too_many_core_instances_is_refused_when_loaded() {
    let rt = runtime();
    // The attack of the report: hundreds of core instances in one component.
    let big = component(MAX_CORE_INSTANCES_PER_PLUGIN + 475, 0);
    match rt.load(big, "big.wasm").await {
        Err(LoadError::TooLarge { message, .. }) => {
            assert!(message.contains("core module instances"), "{message}");
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    // One over the limit is refused; at the limit the pool has room, and the
    // component gets as far as the contract check (it is no connector).
    let over = component(
        MAX_CORE_INSTANCES_PER_PLUGIN + 1 - MAX_MEMORIES_PER_PLUGIN,
        MAX_MEMORIES_PER_PLUGIN,
    );
    assert!(matches!(
        rt.load(over, "over.wasm").await,
        Err(LoadError::TooLarge { .. })
    ));
    let at = component(
        MAX_CORE_INSTANCES_PER_PLUGIN - MAX_MEMORIES_PER_PLUGIN,
        MAX_MEMORIES_PER_PLUGIN,
    );
    assert!(
        matches!(
            rt.load(at, "at.wasm").await,
            Err(LoadError::Contract { .. })
        ),
        "a component at the limits must pass the pool's check"
    );
    let five_memories = component(0, MAX_MEMORIES_PER_PLUGIN + 1);
    match rt.load(five_memories, "memories.wasm").await {
        Err(LoadError::TooLarge { message, .. }) => {
            assert!(message.contains("memories"), "{message}")
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }

    // Control: a real plugin still loads and runs.
    let plugin = load(HOSTILE).await;
    let out = rt.call(&plugin, &hostile("ok", &[]), "k", lookup()).await;
    assert_eq!(entry_id(&out.result), "fine");
}

/// A runtime of its own, with a pool of `n` instances.
async fn small_runtime(n: u32) -> (Arc<Runtime>, Arc<ledgerbridge::runtime::Plugin>) {
    let rt = Arc::new(
        Runtime::new(RuntimeConfig {
            max_instances: n,
            cache_dir: Some(cache_dir()),
            ..RuntimeConfig::default()
        })
        .unwrap(),
    );
    let plugin = rt.load_file(Path::new(HOSTILE)).await.unwrap();
    (rt, plugin)
}

/// Instances of `bytes` held outside the runtime's permits, in stores of
/// their own, as another tenant's plugins would hold the pool.
async fn hold(rt: &Runtime, bytes: Vec<u8>, count: usize) -> Vec<wasmtime::Store<()>> {
    let component = wasmtime::component::Component::new(rt.engine(), bytes).unwrap();
    let linker = wasmtime::component::Linker::<()>::new(rt.engine());
    let mut held = Vec::new();
    for _ in 0..count {
        let mut store = wasmtime::Store::new(rt.engine(), ());
        linker
            .instantiate_async(&mut store, &component)
            .await
            .expect("the pool holds this many");
        held.push(store);
    }
    // Control: the pool really is full now.
    let mut store = wasmtime::Store::new(rt.engine(), ());
    let refused = linker.instantiate_async(&mut store, &component).await;
    assert!(
        format!("{:#}", refused.expect_err("the pool is full"))
            .contains("maximum concurrent limit"),
    );
    held
}

#[tokio::test]
async fn p7_the_pool_holds_max_instances_of_the_largest_plugin_allowed() {
    let (rt, _) = small_runtime(2).await;
    // Two instances of a component at every per-plugin maximum fit at once.
    let largest = component(
        MAX_CORE_INSTANCES_PER_PLUGIN - MAX_MEMORIES_PER_PLUGIN,
        MAX_MEMORIES_PER_PLUGIN,
    );
    let held = hold(&rt, largest, 2).await;
    assert_eq!(held.len(), 2);
}

#[tokio::test(flavor = "current_thread")]
async fn p7_a_pool_full_for_a_moment_makes_a_call_wait_not_fail() {
    let (rt, plugin) = small_runtime(2).await;
    let mut held = hold(&rt, component(1, 0), 2).await;
    let before = rt.pool_waits();
    let ok = hostile("ok", &[]);
    // On one thread: the call finds the pool full and waits; only then are
    // the other instances released.
    let (out, ()) = tokio::join!(rt.call(&plugin, &ok, "k", lookup()), async { held.clear() });
    assert_eq!(entry_id(&out.result), "fine");
    assert!(
        rt.pool_waits() > before,
        "the call never found the pool full"
    );
}

#[tokio::test]
async fn p7_a_pool_full_until_the_deadline_is_a_deadline_not_a_plugin_fault() {
    let (rt, plugin) = small_runtime(2).await;
    let held = hold(&rt, component(1, 0), 2).await;
    let mut sandbox = hostile("ok", &[]);
    sandbox.limits.deadline = Duration::from_millis(200);
    let out = rt.call(&plugin, &sandbox, "k", lookup()).await;
    assert_eq!(
        out.result,
        Err(CallError::Fault(PluginFault::Deadline(
            Duration::from_millis(200)
        )))
    );
    assert!(host_logged(&out, "pool stayed full"), "{:?}", out.logs);
    drop(held);
    // Control: with the pool free the same call runs.
    let out = rt.call(&plugin, &sandbox, "k", lookup()).await;
    assert_eq!(entry_id(&out.result), "fine");
}

// ---- item 8: memory over everything the call holds -------------------------

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib << 10
}

#[tokio::test]
async fn p6_header_fields_the_host_holds_count_against_the_memory_limit() {
    let rt = runtime();
    let plugin = load(HOSTILE).await;
    // Control: a few small fields are fine.
    let out = rt
        .call(
            &plugin,
            &hostile("header-fields", &[("count", "10"), ("kib", "1")]),
            "k",
            lookup(),
        )
        .await;
    assert_eq!(entry_id(&out.result), "held 10 fields");

    // The attack of the report, with fields just under the host's field
    // size limit: 15,000 fields of 60 KiB (900 MB held by the host) under
    // the default 64 MiB limit.
    let rss = rss_bytes();
    let out = rt
        .call(
            &plugin,
            &hostile("header-fields", &[("kib", "60")]),
            "k",
            lookup(),
        )
        .await;
    assert_eq!(
        out.result,
        Err(CallError::Fault(PluginFault::MemoryLimit(
            Limits::default().memory_bytes
        )))
    );
    let grown = rss_bytes().saturating_sub(rss);
    assert!(grown < 512 << 20, "the host grew by {} MiB", grown >> 20);

    // The report's fields of 120 KiB are over the host's field size limit:
    // the first fails the call.
    let out = rt
        .call(
            &plugin,
            &hostile("header-fields", &[("kib", "120")]),
            "k",
            lookup(),
        )
        .await;
    assert!(
        matches!(&out.result, Err(CallError::Fault(PluginFault::Trap(m))) if m.contains("fields exceeds limit")),
        "{:?}",
        out.result
    );
}

// ---- item 10: the granted directory's quota --------------------------------

fn quota(files: u64, bytes: u64) -> Limits {
    Limits {
        disk_files: files,
        disk_bytes: bytes,
        ..Limits::default()
    }
}

#[tokio::test]
async fn p6_the_directory_quota_bounds_the_files_a_plugin_creates() {
    let rt = runtime();
    let plugin = load(HOSTILE).await;
    // Control: within the quota, every file is created.
    let ok_dir = tempfile::tempdir().unwrap();
    let sandbox = granted(
        hostile("many-files", &[("count", "10")]),
        ok_dir.path(),
        quota(50, 1 << 30),
    );
    let out = rt.call(&plugin, &sandbox, "k", lookup()).await;
    assert_eq!(entry_id(&out.result), "created 10 files");

    // The attack: a million files under a quota of 50.
    let dir = tempfile::tempdir().unwrap();
    let sandbox = granted(hostile("many-files", &[]), dir.path(), quota(50, 1 << 30));
    let out = rt.call(&plugin, &sandbox, "k", lookup()).await;
    let msg = validation_message(&out.result);
    assert_eq!(after(&msg), 49, "{msg}");
    assert!(host_logged(&out, "quota"), "{:?}", out.logs);
    let on_disk = ledgerbridge::runtime::scan_directory(dir.path()).unwrap();
    assert_eq!(on_disk.files, 50);
    assert_eq!(rt.disk_usage(dir.path()).await.unwrap(), on_disk);

    // A retry adds nothing: the usage is the directory's, not the call's.
    // It rewrites the 49 files it has (no new file) and is refused the next.
    let out = rt.call(&plugin, &sandbox, "k", lookup()).await;
    assert_eq!(after(&validation_message(&out.result)), 49);
    assert_eq!(
        ledgerbridge::runtime::scan_directory(dir.path())
            .unwrap()
            .files,
        50
    );
}

#[tokio::test]
async fn p6_the_directory_quota_bounds_the_bytes_a_plugin_writes() {
    let rt = runtime();
    let plugin = load(HOSTILE).await;
    // Control: 256 KiB under a 1 MiB quota.
    let ok_dir = tempfile::tempdir().unwrap();
    let sandbox = granted(
        hostile("many-bytes", &[("kib", "256")]),
        ok_dir.path(),
        quota(100, 1 << 20),
    );
    let out = rt.call(&plugin, &sandbox, "k", lookup()).await;
    assert_eq!(entry_id(&out.result), "wrote 256 KiB");

    // The attack: 4 GiB under the same quota.
    let dir = tempfile::tempdir().unwrap();
    let sandbox = granted(hostile("many-bytes", &[]), dir.path(), quota(100, 1 << 20));
    let out = rt.call(&plugin, &sandbox, "k", lookup()).await;
    let msg = validation_message(&out.result);
    assert!(after(&msg) <= 1024, "{msg}");
    assert!(host_logged(&out, "quota"), "{:?}", out.logs);
    let size = std::fs::metadata(dir.path().join("big.bin")).unwrap().len();
    assert!(size <= 1 << 20, "{size} bytes written");
    assert_eq!(rt.disk_usage(dir.path()).await.unwrap().bytes, size);
}

#[tokio::test]
async fn p6_a_plugin_cannot_create_links() {
    let rt = runtime();
    let plugin = load(HOSTILE).await;
    let dir = tempfile::tempdir().unwrap();
    let sandbox = granted(hostile("links", &[]), dir.path(), Limits::default());
    let out = rt.call(&plugin, &sandbox, "k", lookup()).await;
    let msg = validation_message(&out.result);
    assert!(
        msg.contains("symlink") && msg.contains("hard link"),
        "{msg}"
    );
    // Control: the file the links would point at was written.
    assert!(dir.path().join("target.txt").exists());
    assert!(std::fs::symlink_metadata(dir.path().join("escape")).is_err());
    assert!(std::fs::symlink_metadata(dir.path().join("hard.txt")).is_err());
    assert!(host_logged(&out, "symbolic link"), "{:?}", out.logs);
}

// ---- item 5: file operations hold neither the thread nor the call ----------

#[tokio::test(flavor = "current_thread")]
async fn p7_listing_a_huge_directory_stops_at_the_deadline_and_the_host_stays_responsive() {
    let rt = runtime();
    let plugin = load(HOSTILE).await;
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big");
    std::fs::create_dir(&big).unwrap();
    for i in 0..50_000 {
        std::fs::File::create(big.join(format!("entry-{i:06}"))).unwrap();
    }
    let deadline = Duration::from_millis(300);
    let listing = granted(
        hostile("list-dir", &[]),
        dir.path(),
        Limits {
            deadline,
            ..Limits::default()
        },
    );
    let started = Instant::now();
    let (stuck, (fine, finished_at)) =
        tokio::join!(rt.call(&plugin, &listing, "k1", lookup()), async {
            let out = rt.call(&plugin, &hostile("ok", &[]), "k2", lookup()).await;
            (out, started.elapsed())
        });
    assert_eq!(
        stuck.result,
        Err(CallError::Fault(PluginFault::Deadline(deadline)))
    );
    assert!(
        stuck.elapsed < deadline + GRACE + SLACK,
        "the listing ran on for {:?}",
        stuck.elapsed
    );
    assert_eq!(entry_id(&fine.result), "fine");
    assert!(finished_at < stuck.elapsed);
}

#[tokio::test(flavor = "current_thread")]
async fn p7_a_blocked_file_operation_holds_neither_the_thread_nor_the_call() {
    let rt = runtime();
    let plugin = load(HOSTILE).await;
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());

    // Opening a fifo for reading blocks until a writer comes, as a read on a
    // stalled disk would. `release` lets it go; a watchdog does so after a
    // while whatever happens, so the test ends even when the host is stuck.
    let released = Arc::new(AtomicBool::new(false));
    let release = {
        let (released, fifo) = (released.clone(), fifo.clone());
        move || {
            if !released.swap(true, Ordering::SeqCst) {
                drop(std::fs::OpenOptions::new().write(true).open(&fifo));
            }
        }
    };
    let (stop_watchdog, stopped) = std::sync::mpsc::channel::<()>();
    let watchdog = {
        let release = release.clone();
        std::thread::spawn(move || {
            let _ = stopped.recv_timeout(Duration::from_secs(8));
            release();
        })
    };

    let deadline = Duration::from_millis(300);
    let blocked = granted(
        hostile("read-fifo", &[]),
        dir.path(),
        Limits {
            deadline,
            ..Limits::default()
        },
    );
    let started = dir.path().join("started");
    let (stuck, (fine, released_before_fine)) =
        tokio::join!(rt.call(&plugin, &blocked, "k1", lookup()), async {
            // Once the plugin has marked its start, it is about to block (or
            // blocked). On a runtime thread the blocked operation holds, this
            // loop only gets to look again once the operation has ended.
            while !started.exists() {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            let out = rt.call(&plugin, &hostile("ok", &[]), "k2", lookup()).await;
            (out, released.load(Ordering::SeqCst))
        });
    let released_before_stop = released.load(Ordering::SeqCst);
    release();
    drop(stop_watchdog);
    watchdog.join().unwrap();

    // The other call ran while the file operation was still blocked: it did
    // not hold the runtime's only thread.
    assert_eq!(entry_id(&fine.result), "fine");
    assert!(
        !released_before_fine,
        "the other call waited for the blocked file operation"
    );
    // The blocked call stopped at its deadline, the operation still blocked.
    assert_eq!(
        stuck.result,
        Err(CallError::Fault(PluginFault::Deadline(deadline)))
    );
    assert!(
        !released_before_stop,
        "the call only stopped when the operation ended"
    );
}
