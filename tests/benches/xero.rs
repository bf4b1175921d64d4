//! Xero benchmark (issue 11): a bulk re-sync of 10,000 new bills into one
//! simulated Xero organisation, within Xero's real limits (5 calls at once,
//! 60 a minute, 5,000 a day), through the built-in Xero connector and the
//! host's OAuth2, against the Xero simulator on loopback.
//!
//! `cargo bench -p ledgerbridge-tests --bench xero` prints the ERP calls
//! made (counted by the simulator), the wall time (paced by the host's call
//! budget: the simulator runs on the real clock), the minutes those calls
//! need at 60 a minute and the share of the day's 5,000, beside what one
//! call per document would need. `LEDGERBRIDGE_BENCH_DOCS` sets the number
//! of bills (10,000 by default); at 60 calls a minute the default run takes
//! about seven minutes.

use ledgerbridge::model::{OAuth2, TrackingMapping};
use ledgerbridge::sync::Selection;
use ledgerbridge_sim::xero::{Config, Organisation, XeroSim};
use ledgerbridge_tests::*;
use std::time::Instant;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let docs: usize = std::env::var("LEDGERBRIDGE_BENCH_DOCS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let sim = XeroSim::start(Config::default()).await.unwrap();
    let org = sim.add_organisation(Organisation::demo());
    sim.add_client("bench", "bench-client-secret");
    let tmp = tempfile::tempdir().unwrap();
    let engine = durable_engine(tmp.path(), "acme").await;
    let mut c = connection("xero", "acme", "xero", None);
    c.settings = [
        ("tenant-id".to_string(), org.clone()),
        ("api-url".to_string(), sim.api_url()),
    ]
    .into();
    c.allowed_hosts = vec![format!("http://{}", sim.addr())];
    c.mappings.categories = [("office".to_string(), "453".to_string())].into();
    c.mappings.departments = [(
        "ops".to_string(),
        TrackingMapping {
            category: "Region".into(),
            option: "North".into(),
        },
    )]
    .into();
    c.oauth2 = Some(OAuth2 {
        token_url: sim.token_url(),
        client_id: "bench".into(),
        client_secret: "bench-client-secret".into(),
        refresh_token: Some(sim.grant("bench", &org)),
    });
    c.enabled = false;
    engine.put_connection(c.clone()).await.unwrap();
    let batch: Vec<_> = (0..docs)
        .map(|i| doc_json("acme", &format!("x{i:06}"), "approved", "10.00"))
        .collect();
    for chunk in batch.chunks(1000) {
        import(&engine, serde_json::json!({"documents": chunk}))
            .await
            .unwrap();
    }
    c.enabled = true;
    c.oauth2.as_mut().unwrap().refresh_token = None;
    engine.put_connection(c).await.unwrap();
    let (run, _) = engine
        .request_resync("xero", Selection::All, false)
        .await
        .unwrap();
    let started = Instant::now();
    let mut next = 1000;
    let summary = engine
        .finish_run(&run, |s| {
            let done = s.total - s.pending - s.waiting;
            while done >= next && next <= docs {
                eprintln!(
                    "  {next} documents done after {:.0?}, {} calls to Xero",
                    started.elapsed(),
                    sim.stats().calls
                );
                next += 1000;
            }
        })
        .await
        .unwrap();
    let took = started.elapsed();
    assert_eq!(summary.created, docs, "{summary:?}");
    assert_eq!(sim.invoices(&org).len(), docs);
    let stats = sim.stats();
    let calls = stats.calls;
    let single = 2 * docs as u64;
    println!(
        "xero: {docs} bills re-synced in {took:.1?} of wall time (paced by the host's budget); {calls} calls to Xero, {:.3} per bill; {} refused for Xero's own limits (minute {}, day {}, at once {}); {} token refreshes",
        calls as f64 / docs as f64,
        stats.over_minute + stats.over_day + stats.over_concurrent,
        stats.over_minute,
        stats.over_day,
        stats.over_concurrent,
        stats.token_refreshes,
    );
    println!(
        "xero: at 60 calls a minute those {calls} calls need {:.1} minutes and {:.1}% of a day's 5,000; one call per document (a lookup and a create per bill, {single} calls) would need {:.0} minutes and {:.1} days of Xero's daily limit",
        calls as f64 / 60.0,
        calls as f64 / 50.0,
        single as f64 / 60.0,
        single as f64 / 5000.0,
    );
}
