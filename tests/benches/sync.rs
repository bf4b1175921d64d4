//! Sync engine benchmark: a bulk re-sync of 10,000 documents through the CSV
//! connector, into a file-backed store, every entry durable.
//!
//! `cargo bench -p ledgerbridge-tests --bench sync` prints documents per
//! second end to end, the rate per slice of 1,000 (to show the cost per
//! document does not grow with what is already synced, the CSV files
//! included), and where the host's time per operation goes.

use ledgerbridge::sync::{Selection, WorkerConfig};
use ledgerbridge_tests::*;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

const DOCS: usize = 10_000;

fn main() {
    let docs: usize = std::env::var("LEDGERBRIDGE_BENCH_DOCS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DOCS);
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    tokio.block_on(async {
        let tmp = tempfile::tempdir().unwrap();
        let engine = durable_engine(tmp.path(), "acme").await;
        let batch: Vec<_> = (0..docs).map(|i| doc_json("acme", &format!("d{i:06}"), "approved", "10.00")).collect();
        let t = Instant::now();
        for chunk in batch.chunks(1000) {
            import(&engine, serde_json::json!({"documents": chunk})).await.unwrap();
        }
        let import_time = t.elapsed();
        let erp = tmp.path().join("erp");
        std::fs::create_dir_all(&erp).unwrap();
        engine.put_connection(connection("csv", "acme", "csv", Some(&erp))).await.unwrap();

        println!("ledgerbridge sync benchmark: bulk re-sync of {docs} documents through the CSV connector");
        println!("(file-backed SQLite store in WAL mode; each CSV entry written, synced and renamed)\n");
        println!("import: {docs} documents validated and stored in {import_time:.2?} ({:.0}/s)", docs as f64 / import_time.as_secs_f64());

        let (run, _) = engine.request_resync("csv", Selection::All, false).await.unwrap();
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
        println!(
            "re-sync: {docs} documents in {total:.2?}: {:.0} documents/s end to end",
            docs as f64 / total.as_secs_f64()
        );
        print!("per 1,000 documents (documents/s):");
        let mut prev = Duration::ZERO;
        for (_, at) in &marks {
            print!(" {:.0}", 1000.0 / (*at - prev).as_secs_f64());
            prev = *at;
        }
        println!();

        let (calls, busy) = engine.store_busy();
        println!("store: {calls} calls holding the database {busy:.2?} in all ({:.0}% of the run)", 100.0 * busy.as_secs_f64() / total.as_secs_f64());
        let s = &engine.stats;
        let per = |ns: &std::sync::atomic::AtomicU64, n: &std::sync::atomic::AtomicU64| {
            Duration::from_nanos(ns.load(Ordering::Relaxed) / n.load(Ordering::Relaxed).max(1))
        };
        let jobs = s.jobs.load(Ordering::Relaxed).max(1);
        let plugin_per_job = Duration::from_nanos(s.plugin_ns.load(Ordering::Relaxed) / jobs);
        let job = per(&s.job_ns, &s.jobs);
        println!("\nper document (one job; {} concurrent):", WorkerConfig::default().concurrency);
        println!("  job wall time           {job:>10.2?}");
        println!("  plugin calls            {plugin_per_job:>10.2?}  ({:.1} calls per job, {:.2?} each, instantiation and file I/O included)",
            s.plugin_calls.load(Ordering::Relaxed) as f64 / jobs as f64, per(&s.plugin_ns, &s.plugin_calls));
        println!("  store and policy        {:>10.2?}  (entry reads, the intent, the outcome's transaction)", job.saturating_sub(plugin_per_job));
        println!("  claiming (per claim)    {:>10.2?}  ({} claims)", per(&s.claim_ns, &s.claims), s.claims.load(Ordering::Relaxed));
    });
}
