//! QuickBooks Online benchmark (issue 12): a bulk re-sync of new bills into
//! one simulated QuickBooks company, within QuickBooks' real limits (10
//! requests at once, 500 a minute with each batch item counted, 40 batch
//! requests a minute, 30 items a batch), through the built-in QuickBooks
//! connector and the host's OAuth2, against the QuickBooks simulator on
//! loopback.
//!
//! `cargo bench -p ledgerbridge-tests --bench quickbooks` prints the calls
//! made (counted by the simulator), the batch items they carried, the wall
//! time (paced by the host's call budget: the simulator runs on the real
//! clock), and the minutes those calls need at 40 a minute, beside what one
//! request per lookup and per create would need at 500 a minute.
//! `LEDGERBRIDGE_BENCH_DOCS` sets the number of bills (1,000 by default,
//! about four minutes).

use ledgerbridge::model::{OAuth2, TrackingMapping};
use ledgerbridge::sync::Selection;
use ledgerbridge_sim::quickbooks::{Company, Config, QuickBooksSim};
use ledgerbridge_tests::*;
use std::time::Instant;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let docs: usize = std::env::var("LEDGERBRIDGE_BENCH_DOCS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000);
    let sim = QuickBooksSim::start(Config::default()).await.unwrap();
    let realm = sim.add_company(Company::demo());
    sim.add_client("bench", "bench-client-secret");
    let tmp = tempfile::tempdir().unwrap();
    let engine = durable_engine(tmp.path(), "acme").await;
    let mut c = connection("quickbooks", "acme", "quickbooks", None);
    c.settings = [
        ("realm-id".to_string(), realm.clone()),
        ("api-url".to_string(), sim.api_url()),
    ]
    .into();
    c.allowed_hosts = vec![format!("http://{}", sim.addr())];
    c.mappings.categories = [("office".to_string(), "60".to_string())].into();
    c.mappings.departments = [(
        "ops".to_string(),
        TrackingMapping {
            category: "Class".into(),
            option: "101".into(),
        },
    )]
    .into();
    c.mappings.vendors = [("v-1".to_string(), "56".to_string())].into();
    c.oauth2 = Some(OAuth2 {
        token_url: sim.token_url(),
        client_id: "bench".into(),
        client_secret: "bench-client-secret".into(),
        refresh_token: Some(sim.grant("bench", &realm)),
    });
    c.enabled = false;
    engine.put_connection(c.clone()).await.unwrap();
    let batch: Vec<_> = (0..docs)
        .map(|i| doc_json("acme", &format!("q{i:06}"), "approved", "10.00"))
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
        .request_resync("quickbooks", Selection::All, false)
        .await
        .unwrap();
    let started = Instant::now();
    let mut next = 250;
    let summary = engine
        .finish_run(&run, |s| {
            let done = s.total - s.pending - s.waiting;
            while done >= next && next <= docs {
                eprintln!(
                    "  {next} documents done after {:.0?}, {} calls to QuickBooks",
                    started.elapsed(),
                    sim.stats().calls
                );
                next += 250;
            }
        })
        .await
        .unwrap();
    let took = started.elapsed();
    assert_eq!(summary.created, docs, "{summary:?}");
    assert_eq!(sim.bills(&realm).len(), docs);
    let stats = sim.stats();
    let calls = stats.calls;
    let single = 2 * docs as u64;
    println!(
        "quickbooks: {docs} bills re-synced in {took:.1?} of wall time (paced by the host's budget); {calls} calls to QuickBooks ({} batches carrying {} items), {:.3} calls per bill; {} refused for QuickBooks' own limits (minute {}, batch minute {}, at once {}); {} token refreshes",
        stats.batch_requests,
        stats.batch_items,
        calls as f64 / docs as f64,
        stats.over_minute + stats.over_batch_minute + stats.over_concurrent,
        stats.over_minute,
        stats.over_batch_minute,
        stats.over_concurrent,
        stats.token_refreshes,
    );
    println!(
        "quickbooks: at 40 batches a minute those {calls} calls need {:.1} minutes; one request per lookup and per create ({single} requests) would need {:.1} minutes at 500 a minute",
        calls as f64 / 40.0,
        single as f64 / 500.0,
    );
}
