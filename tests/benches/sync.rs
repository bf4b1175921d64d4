//! Sync engine benchmark: a bulk re-sync of 10,000 new documents, into a
//! file-backed store (WAL, every outcome durable before it is reported).
//!
//! `cargo bench -p ledgerbridge-tests --bench sync` runs it three ways and
//! prints, for each, documents per second end to end and ERP calls per
//! document:
//! - through a connector that does no I/O (the scripted test connector,
//!   50 items a call): the host's own cost (store, scheduling, sandbox);
//! - the same with one item a call (`limits.items_per_call: 1`): what
//!   every document cost before contract 0.2's batches;
//! - through the CSV connector, its files on disk (each entry written,
//!   synced and renamed), with the rate per slice of 1,000 (the cost per
//!   document does not grow with what is already synced) and where the
//!   host's time goes.
//!
//! `LEDGERBRIDGE_BENCH_DOCS` sets the number of documents;
//! `LEDGERBRIDGE_BENCH_CASES` picks cases (`batched,single,csv`, all by
//! default), to profile one alone.

use ledgerbridge::model::LimitOverrides;
use ledgerbridge::sync::{Engine, Selection, WorkerConfig};
use ledgerbridge_tests::*;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

const DOCS: usize = 10_000;

/// One bulk re-sync of `docs` new documents through `plugin`; prints and
/// returns documents per second.
async fn resync(
    label: &str,
    docs: usize,
    plugin: &str,
    limits: LimitOverrides,
    detail: bool,
) -> f64 {
    let tmp = tempfile::tempdir().unwrap();
    let engine = durable_engine(tmp.path(), "acme").await;
    let batch: Vec<_> = (0..docs)
        .map(|i| doc_json("acme", &format!("d{i:06}"), "approved", "10.00"))
        .collect();
    let t = Instant::now();
    for chunk in batch.chunks(1000) {
        import(&engine, serde_json::json!({"documents": chunk}))
            .await
            .unwrap();
    }
    let import_time = t.elapsed();
    let erp = tmp.path().join("erp");
    std::fs::create_dir_all(&erp).unwrap();
    let mut c = connection("c", "acme", plugin, Some(&erp));
    c.limits = limits;
    engine.put_connection(c).await.unwrap();

    let (run, _) = engine
        .request_resync("c", Selection::All, false)
        .await
        .unwrap();
    let store_before = engine.store_busy();
    let started = Instant::now();
    let mut marks: Vec<(usize, Duration)> = Vec::new();
    let mut next = 1000;
    let summary = engine
        .finish_run(&run, |s| {
            let done = s.total - s.pending - s.waiting;
            while done >= next && next <= docs {
                marks.push((next, started.elapsed()));
                next += 1000;
            }
        })
        .await
        .unwrap();
    let total = started.elapsed();
    assert_eq!(summary.created, docs, "{summary:?}");
    let s = &engine.stats;
    let calls = s.plugin_calls.load(Ordering::Relaxed);
    let rate = docs as f64 / total.as_secs_f64();
    println!(
        "{label}: {docs} documents in {total:.2?}: {rate:.0} documents/s; {calls} ERP calls, {:.3} per document",
        calls as f64 / docs as f64
    );
    if detail {
        println!(
            "  import: {docs} documents validated and stored in {import_time:.2?} ({:.0}/s)",
            docs as f64 / import_time.as_secs_f64()
        );
        print!("  per 1,000 documents (documents/s):");
        let mut prev = Duration::ZERO;
        for (_, at) in &marks {
            print!(" {:.0}", 1000.0 / (*at - prev).as_secs_f64());
            prev = *at;
        }
        println!();
        where_time_goes(&engine, total, store_before);
    }
    rate
}

fn where_time_goes(engine: &Arc<Engine>, total: Duration, before: (u64, Duration)) {
    let (calls, busy) = engine.store_busy();
    let (calls, busy) = (calls - before.0, busy - before.1);
    println!(
        "  store, during the re-sync: {calls} requests holding the database {busy:.2?} ({:.0}% of the run)",
        100.0 * busy.as_secs_f64() / total.as_secs_f64()
    );
    let s = &engine.stats;
    let per = |ns: &std::sync::atomic::AtomicU64, n: &std::sync::atomic::AtomicU64| {
        Duration::from_nanos(ns.load(Ordering::Relaxed) / n.load(Ordering::Relaxed).max(1))
    };
    println!(
        "  plugin calls: {:.2?} each (instantiation and file I/O included)",
        per(&s.plugin_ns, &s.plugin_calls)
    );
    println!(
        "  claims: {} ({:.2?} each); up to {} groups of jobs at once",
        s.claims.load(Ordering::Relaxed),
        per(&s.claim_ns, &s.claims),
        WorkerConfig::default().concurrency
    );
}

fn main() {
    let docs: usize = std::env::var("LEDGERBRIDGE_BENCH_DOCS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DOCS);
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let cases =
        std::env::var("LEDGERBRIDGE_BENCH_CASES").unwrap_or_else(|_| "batched,single,csv".into());
    let run = |case: &str| cases.split(',').any(|c| c.trim() == case);
    tokio.block_on(async {
        println!("ledgerbridge sync benchmark: bulk re-sync of {docs} new documents");
        println!("(file-backed SQLite store in WAL mode; every outcome durable)\n");
        let mut rates = (None, None);
        if run("batched") {
            rates.0 = Some(
                resync(
                    "no-I/O connector, batches of 50",
                    docs,
                    SCRIPTED,
                    LimitOverrides::default(),
                    true,
                )
                .await,
            );
        }
        if run("single") {
            rates.1 = Some(
                resync(
                    "no-I/O connector, one item a call",
                    docs,
                    SCRIPTED,
                    LimitOverrides {
                        items_per_call: Some(1),
                        ..LimitOverrides::default()
                    },
                    false,
                )
                .await,
            );
        }
        if let (Some(batched), Some(single)) = rates {
            println!("  batches are {:.1}x faster end to end\n", batched / single);
        }
        if run("csv") {
            resync(
                "CSV connector, files on disk, batches of 50",
                docs,
                "csv",
                LimitOverrides::default(),
                true,
            )
            .await;
        }
    });
}
