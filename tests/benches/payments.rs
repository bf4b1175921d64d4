//! Payment latency benchmark (A4, R5): check payments whose funding
//! completes arrive at 100 a second; how long until each one's payment entry
//! exists, alone and while a bulk re-sync of 10,000 documents runs on the
//! same connection or on another tenant's.
//!
//! `cargo bench -p ledgerbridge-tests --bench payments` prints, for each
//! case, the median, 90th and 99th percentile and the worst latency from
//! recording "funding complete" to the log line of the created payment
//! entry, and the queue depth of both connections once a second. The log
//! line is written after the plugin's create call returned and the outcome
//! was committed, so the figures are upper bounds of "to the create call".
//! The real CSV connector is used; each payment also gets its check number
//! (with the connector asked which numbers are in use).

use ledgerbridge::store::now_ms;
use ledgerbridge::sync::{Engine, Selection};
use ledgerbridge_tests::*;
use std::sync::Arc;
use std::time::{Duration, Instant};

const RATE: u64 = 100;
const SECONDS: u64 = 20;
const BULK: usize = 10_000;

#[derive(Clone, Copy, PartialEq)]
enum Bulk {
    None,
    SameConnection,
    OtherConnection,
}

fn main() {
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    println!(
        "ledgerbridge payment latency: {} check payments, funding complete at {RATE}/s, CSV connector\n",
        RATE * SECONDS
    );
    for (bulk, name) in [
        (Bulk::None, "no bulk run"),
        (Bulk::SameConnection, "bulk re-sync of 10,000 documents on the same connection"),
        (Bulk::OtherConnection, "bulk re-sync of 10,000 documents on another tenant's connection"),
    ] {
        println!("== {name}");
        tokio.block_on(case(bulk));
        println!();
    }
}

async fn queued(engine: &Engine, connection: &str) -> usize {
    engine
        .status(None)
        .await
        .unwrap()
        .into_iter()
        .find(|c| c.id == connection)
        .map_or(0, |c| c.queued.values().sum::<usize>() + c.running)
}

async fn case(bulk: Bulk) {
    let n = (RATE * SECONDS) as usize;
    let tmp = tempfile::tempdir().unwrap();
    let engine: Arc<Engine> = durable_engine(tmp.path(), "acme").await;
    engine.store.add_tenant("other").await.unwrap();
    let (erp, other_erp) = (tmp.path().join("erp"), tmp.path().join("erp-other"));
    for d in [&erp, &other_erp] {
        std::fs::create_dir_all(d).unwrap();
    }
    engine.put_connection(connection("csv", "acme", "csv", Some(&erp))).await.unwrap();
    engine
        .put_connection(connection("csv-other", "other", "csv", Some(&other_erp)))
        .await
        .unwrap();
    engine.store.set_next_check_number("acme", "operating", 10_000).await.unwrap();
    // The bills exist first (A5 is measured elsewhere).
    let docs: Vec<_> = (0..n).map(|i| doc_json("acme", &format!("d{i:05}"), "approved", "10.00")).collect();
    for chunk in docs.chunks(1000) {
        import(&engine, serde_json::json!({"documents": chunk})).await.unwrap();
    }
    settle(&engine).await;
    if bulk != Bulk::None {
        let (tenant, conn) = match bulk {
            Bulk::SameConnection => ("acme", "csv"),
            _ => ("other", "csv-other"),
        };
        engine.set_enabled(conn, false).await.unwrap();
        let docs: Vec<_> =
            (0..BULK).map(|i| doc_json(tenant, &format!("bulk{i:05}"), "approved", "10.00")).collect();
        for chunk in docs.chunks(1000) {
            import(&engine, serde_json::json!({"documents": chunk})).await.unwrap();
        }
        engine.set_enabled(conn, true).await.unwrap();
        engine.request_resync(conn, Selection::All, false).await.unwrap();
    }

    let (stop, rx) = tokio::sync::watch::channel(false);
    let worker = {
        let e = engine.clone();
        tokio::spawn(async move { e.run_worker(false, rx).await })
    };
    // Queue depth once a second, while the payments arrive and are synced.
    let (depth_stop, mut depth_rx) = tokio::sync::watch::channel(false);
    let depth = {
        let e = engine.clone();
        tokio::spawn(async move {
            let mut samples = Vec::new();
            let start = Instant::now();
            loop {
                samples.push((start.elapsed().as_secs(), queued(&e, "csv").await, queued(&e, "csv-other").await));
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = depth_rx.changed() => break,
                }
            }
            samples
        })
    };
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
    // Until the last payment entry exists (the bulk run may go on).
    let mut latencies = Vec::with_capacity(n);
    for (i, t0) in sent.iter().enumerate() {
        loop {
            let log = engine.store.log_of("acme", &format!("d{i:05}"), Some("csv")).await.unwrap();
            if let Some(row) = log.iter().find(|r| r.target == "payment" && r.outcome == "created") {
                latencies.push(row.at - t0);
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    depth_stop.send(true).unwrap();
    let samples = depth.await.unwrap();
    let left = (queued(&engine, "csv").await, queued(&engine, "csv-other").await);
    stop.send(true).unwrap();
    worker.await.unwrap().unwrap();

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
    let line: Vec<String> = samples.iter().map(|(s, a, b)| format!("{s}s {a}/{b}")).collect();
    println!("queue depth (queued + running), csv/csv-other, once a second: {}", line.join(", "));
    println!("left when the last payment entry was in: csv {}, csv-other {}", left.0, left.1);
}
