//! Payment latency benchmark (A4): check payments whose funding completes
//! arrive at 100 a second; how long until each one's payment entry exists.
//!
//! `cargo bench -p ledgerbridge-tests --bench payments` prints the median,
//! 90th and 99th percentile and the worst latency from recording "funding
//! complete" to the log line of the created payment entry. That line is
//! written after the plugin's create call returned and the outcome was
//! committed, so the figures are upper bounds of "to the create call". The
//! real CSV connector is used; each payment also gets its check number
//! (with the connector asked which numbers are in use).

use ledgerbridge::store::now_ms;
use ledgerbridge_tests::*;
use std::time::{Duration, Instant};

const RATE: u64 = 100;
const SECONDS: u64 = 20;

fn main() {
    let n = (RATE * SECONDS) as usize;
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    tokio.block_on(async {
        let tmp = tempfile::tempdir().unwrap();
        let engine = durable_engine(tmp.path(), "acme").await;
        let erp = tmp.path().join("erp");
        std::fs::create_dir_all(&erp).unwrap();
        engine.put_connection(connection("csv", "acme", "csv", Some(&erp))).await.unwrap();
        engine.store.set_next_check_number("acme", "operating", 10_000).await.unwrap();
        // The bills exist first (A5 is measured elsewhere).
        let docs: Vec<_> = (0..n).map(|i| doc_json("acme", &format!("d{i:05}"), "approved", "10.00")).collect();
        for chunk in docs.chunks(1000) {
            import(&engine, serde_json::json!({"documents": chunk})).await.unwrap();
        }
        settle(&engine).await;

        let (stop, rx) = tokio::sync::watch::channel(false);
        let worker = {
            let e = engine.clone();
            tokio::spawn(async move { e.run_worker(false, rx).await })
        };
        println!("ledgerbridge payment latency: {n} check payments, funding complete at {RATE}/s, CSV connector\n");
        let mut sent = Vec::with_capacity(n);
        let start = Instant::now();
        for i in 0..n {
            let due = start + Duration::from_micros(i as u64 * 1_000_000 / RATE);
            tokio::time::sleep_until(due.into()).await;
            let mut p = payment_json("acme", &format!("p{i:05}"), &format!("d{i:05}"), "10.00");
            p["method"] = "check".into();
            p["disbursement_status"] = "funding_complete".into();
            sent.push(now_ms());
            import(&engine, serde_json::json!({"payments": [p]})).await.unwrap();
        }
        let offered = start.elapsed();
        // Let the last ones finish.
        loop {
            let (queued, running, _) = engine.store.pending().await.unwrap();
            if !queued && !running {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        stop.send(true).unwrap();
        worker.await.unwrap().unwrap();

        let mut latencies = Vec::with_capacity(n);
        for (i, t0) in sent.iter().enumerate() {
            let log = engine.store.log_of("acme", &format!("d{i:05}"), Some("csv")).await.unwrap();
            let row = log.iter().find(|r| r.target == "payment" && r.outcome == "created").expect("every payment entry is created");
            latencies.push(row.at - t0);
        }
        latencies.sort_unstable();
        let pct = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
        println!("offered {n} payments in {offered:.2?} ({:.0}/s)", n as f64 / offered.as_secs_f64());
        println!(
            "funding complete -> payment entry created: median {} ms, p90 {} ms, p99 {} ms, max {} ms",
            pct(0.5),
            pct(0.9),
            pct(0.99),
            latencies.last().unwrap()
        );
        let markers = std::fs::read_dir(erp.join("checks/1010")).unwrap().count();
        println!("check numbers issued: {markers} distinct (10000..{})", 10_000 + markers - 1);
    });
}
