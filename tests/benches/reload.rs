//! Hot-reload benchmark (issue 14, P3): from the moment a plugin file is
//! written to the end of the first operation served by the new version.
//!
//! `cargo bench -p ledgerbridge-tests --bench reload` runs a CSV connection
//! whose plugin is a file, watched with the default debounce (50 ms), and
//! writes 20 new builds of the built-in CSV connector to it, each its
//! component with a custom section of its own (new bytes, so each is
//! compiled: the compile cache cannot help). After each write it syncs a
//! document after another until one runs on the new build, and prints the
//! median and maximum of that time over the 20 reloads, and where it went:
//! the debounce (from the first change seen to the reload starting),
//! compiling, checking (contract, pre-link, `describe`), the swap, and the
//! rest (the OS reporting the write, the first operation itself).

use ledgerbridge::runtime::{
    DEFAULT_DEBOUNCE, Registry, ReloadEvent, ReloadOutcome, Runtime, RuntimeConfig,
};
use ledgerbridge::store::Store;
use ledgerbridge::sync::{Engine, RetryPolicy, WorkerConfig};
use ledgerbridge_tests::*;
use std::sync::Arc;
use std::time::{Duration, Instant};

const RELOADS: usize = 20;

/// The CSV connector with a custom section `ledgerbridge-bench` holding `n`:
/// the same code, other bytes.
fn build(n: usize) -> Vec<u8> {
    fn leb(mut v: usize, out: &mut Vec<u8>) {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(b);
                return;
            }
            out.push(b | 0x80);
        }
    }
    let name = b"ledgerbridge-bench";
    let payload = n.to_le_bytes();
    let mut body = Vec::new();
    leb(name.len(), &mut body);
    body.extend_from_slice(name);
    body.extend_from_slice(&payload);
    let mut out = ledgerbridge::builtin::CSV.wasm.to_vec();
    out.push(0);
    leb(body.len(), &mut out);
    out.extend(body);
    out
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn median_max(mut v: Vec<Duration>) -> (f64, f64) {
    v.sort();
    (ms(v[v.len() / 2]), ms(*v.last().unwrap()))
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(bench());
}

async fn bench() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = Arc::new(
        Runtime::new(RuntimeConfig {
            cache_dir: Some(dir.path().join("cache")),
            ..RuntimeConfig::default()
        })
        .unwrap(),
    );
    let registry = Arc::new(Registry::new(runtime, None));
    let engine = Arc::new(Engine::with_registry(
        Store::open(&dir.path().join("bench.db")).unwrap(),
        registry.clone(),
        RetryPolicy::default(),
        WorkerConfig::default(),
    ));
    engine.add_tenant("acme").await.unwrap();
    let file = dir.path().join("build/csv.wasm");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::create_dir_all(dir.path().join("erp")).unwrap();
    std::fs::write(&file, build(0)).unwrap();
    engine
        .put_connection(connection(
            "csv",
            "acme",
            file.to_str().unwrap(),
            Some(&dir.path().join("erp")),
        ))
        .await
        .unwrap();
    let mut events = registry.subscribe();
    let _watch = engine.watch_plugins(DEFAULT_DEBOUNCE).await.unwrap();

    let mut doc = 0usize;
    // One sync; the digest of the version its log line names.
    let mut sync = async || -> String {
        doc += 1;
        let id = format!("d{doc:05}");
        import(
            &engine,
            serde_json::json!({"documents": [doc_json("acme", &id, "approved", "10.00")]}),
        )
        .await
        .unwrap();
        settle(&engine).await;
        let log = engine.log_of("acme", &id, None).await.unwrap();
        let row = log.last().expect("a log line");
        assert_eq!(row.outcome, "created", "{row:?}");
        row.plugin
            .as_ref()
            .expect("the plugin version")
            .digest
            .clone()
    };
    let mut serving = sync().await;
    println!(
        "hot reload of the CSV connector ({} KiB), debounce {} ms, {RELOADS} reloads, each a new build (compiled, no cache):",
        ledgerbridge::builtin::CSV.wasm.len() / 1024,
        DEFAULT_DEBOUNCE.as_millis()
    );
    let (mut total, mut waited, mut compile, mut check, mut swap, mut rest) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    let mut ops_on_old = 0;
    for n in 1..=RELOADS {
        let bytes = build(n);
        let t0 = Instant::now();
        std::fs::write(&file, &bytes).unwrap();
        // Operations go on while the build is reloaded; the first one that
        // runs the new build ends the measurement.
        loop {
            let digest = sync().await;
            if digest != serving {
                serving = digest;
                break;
            }
            ops_on_old += 1;
        }
        let elapsed = t0.elapsed();
        let event: ReloadEvent = loop {
            let e = events.recv().await.unwrap();
            if matches!(e.outcome, ReloadOutcome::Loaded { .. }) {
                break e;
            }
        };
        total.push(elapsed);
        waited.push(event.waited);
        compile.push(event.compile);
        check.push(event.check);
        swap.push(event.swap);
        rest.push(elapsed.saturating_sub(event.waited + event.compile + event.check + event.swap));
        // Let the watch settle between reloads.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (m, x) = median_max(total);
    println!("  write -> first operation on the new build: median {m:.1} ms, max {x:.1} ms");
    for (what, v) in [
        ("debounce (first change seen -> reload starts)", waited),
        ("compile (cranelift)", compile),
        ("check (contract, pre-link, describe)", check),
        ("swap", swap),
        ("rest (the OS reporting the write, the operation)", rest),
    ] {
        let (m, x) = median_max(v);
        println!("    {what:<50} median {m:>7.2} ms, max {x:>7.2} ms");
    }
    println!("  operations served by the old build meanwhile: {ops_on_old}, none failed");
}
