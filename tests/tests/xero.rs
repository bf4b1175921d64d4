//! The Xero connector against the Xero simulator, through the engine
//! (issue 11; SPEC X1, B1, D2, P2, R1, R2, M2). Every request the connector
//! sends and every answer the simulator gives is checked against Xero's
//! official OpenAPI file, undeclared properties included; each test ends
//! by asserting no violation was seen.

use ledgerbridge::model::{Connection, OAuth2, TrackingMapping};
use ledgerbridge::sync::{Engine, RetryPolicy, Selection, WorkerConfig};
use ledgerbridge_sim::openapi::OpenApi;
use ledgerbridge_sim::xero::{Config, Faults, Organisation, XeroSim};
use ledgerbridge_tests::*;
use serde_json::Value;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

const CLIENT: &str = "ledgerbridge-test-client";
const SECRET: &str = "a-client-secret-of-some-length";

/// Xero's OpenAPI file, read once for every test.
fn openapi() -> Arc<OpenApi> {
    static SPEC: OnceLock<Arc<OpenApi>> = OnceLock::new();
    SPEC.get_or_init(|| {
        Arc::new(OpenApi::xero().expect("Xero's OpenAPI file (../shared/reference)"))
    })
    .clone()
}

/// A simulated Xero with one organisation and a grant for our client.
struct Erp {
    sim: XeroSim,
    org: String,
}

impl Erp {
    async fn start() -> Erp {
        Erp::start_with(Config::default()).await
    }

    async fn start_with(config: Config) -> Erp {
        let sim = XeroSim::start(Config {
            openapi: Some(openapi()),
            ..config
        })
        .await
        .unwrap();
        let org = sim.add_organisation(Organisation::demo());
        sim.add_client(CLIENT, SECRET);
        Erp { sim, org }
    }

    /// A Xero connection of `tenant` to this organisation, with a fresh
    /// grant: categories `office` → 453 (Office Expenses) and `freight` →
    /// 425 (Freight & Courier), department `ops` → tracking Region/North,
    /// funding account `operating` → bank account 090.
    fn connection(&self, id: &str, tenant: &str) -> Connection {
        let mut c = connection(id, tenant, "xero", None);
        c.settings = [
            ("tenant-id".to_string(), self.org.clone()),
            ("api-url".to_string(), self.sim.api_url()),
        ]
        .into();
        c.allowed_hosts = vec![format!("http://{}", self.sim.addr())];
        c.mappings.categories = [("office", "453"), ("freight", "425")]
            .into_iter()
            .map(|(a, b)| (a.into(), b.into()))
            .collect();
        c.mappings.departments = [(
            "ops".to_string(),
            TrackingMapping {
                category: "Region".into(),
                option: "North".into(),
            },
        )]
        .into();
        c.mappings.bank_accounts = [("operating".to_string(), "090".to_string())].into();
        c.oauth2 = Some(OAuth2 {
            token_url: self.sim.token_url(),
            client_id: CLIENT.into(),
            client_secret: SECRET.into(),
            refresh_token: Some(self.sim.grant(CLIENT, &self.org)),
        });
        c
    }

    /// The organisation's bills (ACCPAY invoices).
    fn bills(&self) -> Vec<Value> {
        self.sim
            .invoices(&self.org)
            .into_iter()
            .filter(|i| i["Type"] == "ACCPAY")
            .collect()
    }

    /// The live bills whose `Url` names `document`.
    fn bills_of(&self, document: &str) -> Vec<Value> {
        let suffix = format!("/{document}");
        self.bills()
            .into_iter()
            .filter(|i| i["Url"].as_str().is_some_and(|u| u.ends_with(&suffix)))
            .filter(|i| !matches!(i["Status"].as_str(), Some("DELETED" | "VOIDED")))
            .collect()
    }

    /// No request or answer broke Xero's OpenAPI description.
    fn assert_faithful(&self) {
        let v = self.sim.violations();
        assert!(v.is_empty(), "OpenAPI violations: {v:#?}");
    }
}

/// An engine with tenant `acme` and a Xero connection `xero` to `erp`.
async fn xero_engine(erp: &Erp) -> (Arc<Engine>, Connection) {
    let engine = engine();
    engine.add_tenant("acme").await.unwrap();
    let c = erp.connection("xero", "acme");
    engine.put_connection(c.clone()).await.unwrap();
    (engine, c)
}

fn money(v: &Value) -> String {
    format!("{:.2}", v.as_f64().unwrap_or(f64::NAN))
}

/// X1, A1, A2, A3: an approved bill becomes an ACCPAY invoice; a change
/// updates it in place, keeping its line by `LineItemID`; a payment becomes
/// a Xero payment from the mapped bank account and pays the bill.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x1_approve_change_and_pay_round_trip_in_xeros_wire_format() {
    let erp = Erp::start().await;
    let (engine, _) = xero_engine(&erp).await;
    import(
        &engine,
        serde_json::json!({"documents": [doc_json("acme", "d1", "approved", "120.50")]}),
    )
    .await
    .unwrap();
    settle(&engine).await;
    let bills = erp.bills_of("d1");
    assert_eq!(bills.len(), 1, "{:#?}", erp.bills());
    let bill = &bills[0];
    assert_eq!(bill["InvoiceNumber"], "INV-d1");
    assert_eq!(bill["Contact"]["Name"], "Acme Paper");
    assert_eq!(bill["Status"], "AUTHORISED");
    assert_eq!(money(&bill["Total"]), "120.50");
    assert_eq!(bill["LineItems"][0]["AccountCode"], "453");
    assert_eq!(bill["LineItems"][0]["Tracking"][0]["Name"], "Region");
    let invoice_id = bill["InvoiceID"].as_str().unwrap().to_string();
    let line_id = bill["LineItems"][0]["LineItemID"]
        .as_str()
        .unwrap()
        .to_string();
    let log = engine.log_of("acme", "d1", Some("xero")).await.unwrap();
    assert_eq!(log[0].entry_id.as_deref(), Some(invoice_id.as_str()));

    // A2: the amount changes.
    import(
        &engine,
        serde_json::json!({"documents": [doc_json("acme", "d1", "approved", "130.00")]}),
    )
    .await
    .unwrap();
    settle(&engine).await;
    let bills = erp.bills_of("d1");
    assert_eq!(bills.len(), 1, "updated in place, not duplicated");
    assert_eq!(bills[0]["InvoiceID"], invoice_id.as_str());
    assert_eq!(money(&bills[0]["Total"]), "130.00");
    assert_eq!(
        bills[0]["LineItems"][0]["LineItemID"],
        line_id.as_str(),
        "the line was kept by its LineItemID, not deleted and added"
    );

    // A3: paid in full.
    import(
        &engine,
        serde_json::json!({"payments": [payment_json("acme", "p1", "d1", "130.00")]}),
    )
    .await
    .unwrap();
    settle(&engine).await;
    let payments = erp.sim.payments(&erp.org);
    assert_eq!(payments.len(), 1, "{payments:#?}");
    assert_eq!(money(&payments[0]["Amount"]), "130.00");
    assert!(
        payments[0]["Reference"].as_str().unwrap().ends_with("p1"),
        "the payment's reference names it: {}",
        payments[0]["Reference"]
    );
    assert_eq!(erp.bills_of("d1")[0]["Status"], "PAID");
    assert!(engine.attention(None).await.unwrap().is_empty());
    // Every write carried an idempotency key (D2).
    for r in erp.sim.requests() {
        if r.method != "GET" {
            assert!(
                r.idempotency_key
                    .as_deref()
                    .is_some_and(|k| !k.is_empty() && k.len() <= 128),
                "{} {} without an Idempotency-Key",
                r.method,
                r.path
            );
        }
    }
    erp.assert_faithful();
}

/// B1, B2: an approved bill dated on or before the organisation's period
/// lock date is booked: the change is not sent again, the entry is locked,
/// and the attention item names the lock date.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b1_a_date_inside_the_lock_date_is_booked_and_locked() {
    let erp = Erp::start().await;
    let (engine, _) = xero_engine(&erp).await;
    import(
        &engine,
        serde_json::json!({"documents": [doc_json("acme", "d1", "approved", "50.00")]}),
    )
    .await
    .unwrap();
    settle(&engine).await;
    assert_eq!(erp.bills_of("d1").len(), 1);
    // The accountant closes November.
    erp.sim.set_lock_dates(&erp.org, Some("2026-11-30"), None);
    import(
        &engine,
        serde_json::json!({"documents": [doc_json("acme", "d1", "approved", "55.00"), doc_json("acme", "d2", "approved", "10.00")]}),
    )
    .await
    .unwrap();
    settle(&engine).await;
    assert_eq!(
        money(&erp.bills_of("d1")[0]["Total"]),
        "50.00",
        "not changed"
    );
    assert!(
        erp.bills_of("d2").is_empty(),
        "not created inside the lock date"
    );
    for d in ["d1", "d2"] {
        let log = engine.log_of("acme", d, Some("xero")).await.unwrap();
        let last = log.last().unwrap();
        assert_eq!(last.outcome, "skipped_booked", "{d}: {last:?}");
        assert!(
            last.error.as_deref().unwrap_or("").contains("2026-11-30"),
            "{d}: the lock date is named: {last:?}"
        );
    }
    // B2: a later change is not sent at all.
    let writes = erp.sim.requests().len();
    import(
        &engine,
        serde_json::json!({"documents": [doc_json("acme", "d1", "approved", "56.00")]}),
    )
    .await
    .unwrap();
    settle(&engine).await;
    assert_eq!(
        erp.sim.requests().len(),
        writes,
        "nothing sent to a locked entry"
    );
    erp.assert_faithful();
}

/// B1: a bill paid in Xero (by a person there) is booked: a change to the
/// document is not sent, and the entry is locked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b1_a_change_to_a_bill_paid_in_xero_is_booked() {
    let erp = Erp::start().await;
    let (engine, _) = xero_engine(&erp).await;
    import(
        &engine,
        serde_json::json!({"documents": [doc_json("acme", "d1", "approved", "80.00"), doc_json("acme", "d2", "approved", "80.00")]}),
    )
    .await
    .unwrap();
    settle(&engine).await;
    let d1 = erp.bills_of("d1")[0]["InvoiceID"]
        .as_str()
        .unwrap()
        .to_string();
    let d2 = erp.bills_of("d2")[0]["InvoiceID"]
        .as_str()
        .unwrap()
        .to_string();
    erp.sim.pay(&erp.org, &d1, "80.00", "2026-11-10").unwrap();
    erp.sim.pay(&erp.org, &d2, "30.00", "2026-11-10").unwrap();
    import(
        &engine,
        serde_json::json!({"documents": [doc_json("acme", "d1", "approved", "90.00"), doc_json("acme", "d2", "approved", "90.00")]}),
    )
    .await
    .unwrap();
    settle(&engine).await;
    for d in ["d1", "d2"] {
        assert_eq!(
            money(&erp.bills_of(d)[0]["Total"]),
            "80.00",
            "{d} not changed"
        );
        let log = engine.log_of("acme", d, Some("xero")).await.unwrap();
        assert_eq!(log.last().unwrap().outcome, "skipped_booked", "{d}");
    }
    erp.assert_faithful();
}

/// V1, L2: a GL account Xero does not have is a validation error naming
/// the field in the host's terms, with Xero's message; the others of the
/// batch are created.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn l2_an_unknown_account_code_names_the_line_and_keeps_xeros_message() {
    let erp = Erp::start().await;
    let engine = engine();
    engine.add_tenant("acme").await.unwrap();
    let mut c = erp.connection("xero", "acme");
    c.mappings
        .categories
        .insert("freight".into(), "9999".into());
    engine.put_connection(c).await.unwrap();
    let mut bad = doc_json("acme", "bad", "approved", "10.00");
    bad["lines"] = serde_json::json!([
        {"description": "Paper", "amount": "4.00", "category": "office"},
        {"description": "Courier", "amount": "6.00", "category": "freight"}
    ]);
    import(
        &engine,
        serde_json::json!({"documents": [bad, doc_json("acme", "good", "approved", "10.00")]}),
    )
    .await
    .unwrap();
    settle(&engine).await;
    assert_eq!(erp.bills_of("good").len(), 1);
    assert!(erp.bills_of("bad").is_empty());
    let attention = engine.attention(Some("xero")).await.unwrap();
    assert_eq!(attention.len(), 1, "{attention:?}");
    assert!(
        attention[0].message.contains("lines[1].account-code")
            && attention[0].message.contains("9999"),
        "{}",
        attention[0].message
    );
    erp.assert_faithful();
}

/// D1, D2: entries the ERP made but the host never recorded (a crash
/// between Xero's answer and the host's commit, here a store that lost
/// them) are found by lookup, by the document's `Url`, and not created
/// again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d2_entries_made_before_a_crash_are_found_by_lookup_not_duplicated() {
    let erp = Erp::start().await;
    let (first, _) = xero_engine(&erp).await;
    let three = || {
        let docs: Vec<Value> = ["d1", "d2", "d3"]
            .iter()
            .map(|d| doc_json("acme", d, "approved", "20.00"))
            .collect();
        serde_json::json!({ "documents": docs })
    };
    import(&first, three()).await.unwrap();
    settle(&first).await;
    assert_eq!(erp.bills().len(), 3);
    // The host's record is lost; the documents come again.
    let (second, _) = xero_engine(&erp).await;
    import(&second, three()).await.unwrap();
    settle(&second).await;
    for d in ["d1", "d2", "d3"] {
        assert_eq!(erp.bills_of(d).len(), 1, "{d} has one entry");
        let log = second.log_of("acme", d, Some("xero")).await.unwrap();
        assert!(
            log.iter().all(|r| r
                .operations
                .iter()
                .all(|o| !o.operation.starts_with("create"))),
            "{d} was not created again: {log:?}"
        );
    }
    erp.assert_faithful();
}

/// M2, M3, R4: a bulk re-sync of 1,000 documents where Xero already has
/// some (found and updated), some paid there (booked, left alone), some
/// deleted or voided there (created again) and the rest new (created):
/// each gets its outcome, every document ends with exactly one live bill,
/// in a small fraction of a call per document.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn m2_a_bulk_resync_of_1000_documents_gets_each_the_right_outcome() {
    let erp = Erp::start().await;
    let ids: Vec<String> = (0..1000).map(|i| format!("b{i:04}")).collect();
    let docs = |range: std::ops::Range<usize>| serde_json::json!({"documents": ids[range].iter().map(|d| doc_json("acme", d, "approved", "10.00")).collect::<Vec<_>>()});
    // An earlier installation synced the first 300.
    let (earlier, _) = xero_engine(&erp).await;
    import(&earlier, docs(0..300)).await.unwrap();
    settle(&earlier).await;
    assert_eq!(erp.bills().len(), 300);
    // In Xero: 40 are paid, 30 deleted or voided.
    for d in &ids[0..40] {
        let id = erp.bills_of(d)[0]["InvoiceID"]
            .as_str()
            .unwrap()
            .to_string();
        erp.sim.pay(&erp.org, &id, "10.00", "2026-11-05").unwrap();
    }
    for d in &ids[40..70] {
        let id = erp.bills_of(d)[0]["InvoiceID"]
            .as_str()
            .unwrap()
            .to_string();
        erp.sim.delete_invoice(&erp.org, &id).unwrap();
    }
    let calls_before = erp.sim.stats().calls;
    // This installation knows none of it: a bulk re-sync of all 1,000.
    let engine = engine();
    engine.add_tenant("acme").await.unwrap();
    let mut c = erp.connection("xero", "acme");
    c.enabled = false;
    engine.put_connection(c.clone()).await.unwrap();
    import(&engine, docs(0..1000)).await.unwrap();
    c.enabled = true;
    c.oauth2.as_mut().unwrap().refresh_token = None;
    engine.put_connection(c).await.unwrap();
    let (run, queued) = engine
        .request_resync("xero", Selection::All, false)
        .await
        .unwrap();
    assert_eq!(queued, 1000);
    settle(&engine).await;
    let s = engine.run_summary(&run).await.unwrap();
    assert_eq!(s.skipped_booked, 40, "{s:?}");
    assert_eq!(s.updated, 230, "{s:?}");
    assert_eq!(s.created, 730, "{s:?}");
    assert_eq!(s.failed, 0, "{s:?}");
    for d in &ids {
        assert_eq!(erp.bills_of(d).len(), 1, "{d} has exactly one live bill");
    }
    let calls = erp.sim.stats().calls - calls_before;
    assert!(
        calls <= 120,
        "{calls} calls to Xero for 1,000 documents (one per document would be 2,000)"
    );
    let stats = erp.sim.stats();
    assert_eq!(
        (stats.over_minute, stats.over_day, stats.over_concurrent),
        (0, 0, 0),
        "the host kept within Xero's limits"
    );
    erp.assert_faithful();
}

/// R1, R2, D1, D2: with 20% of calls failing (500/503), bursts of 429,
/// and 10% of calls whose connection drops after Xero did the work (the
/// answer lost between the ERP and the host's commit), every document is
/// synced exactly once, the host never goes over Xero's own limits, and
/// nothing is left for a person.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r1_r2_faults_and_429_bursts_end_with_every_document_synced_once() {
    let erp = Erp::start().await;
    erp.sim.set_faults(Faults {
        latency: Duration::from_millis(5),
        error_rate: 0.2,
        reset_rate: 0.1,
        burst_429: 3,
        seed: 7,
        ..Faults::default()
    });
    let store = ledgerbridge::store::Store::open_in_memory().unwrap();
    let engine = Arc::new(Engine::new(
        store,
        runtime().clone(),
        RetryPolicy {
            max_attempts: 12,
            base: Duration::from_millis(50),
            cap: Duration::from_millis(500),
        },
        WorkerConfig::default(),
    ));
    engine.add_tenant("acme").await.unwrap();
    engine
        .put_connection(erp.connection("xero", "acme"))
        .await
        .unwrap();
    let ids: Vec<String> = (0..120).map(|i| format!("f{i:03}")).collect();
    import(
        &engine,
        serde_json::json!({"documents": ids.iter().map(|d| doc_json("acme", d, "approved", "10.00")).collect::<Vec<_>>()}),
    )
    .await
    .unwrap();
    settle(&engine).await;
    for d in &ids {
        assert_eq!(erp.bills_of(d).len(), 1, "{d} synced exactly once");
    }
    assert!(engine.attention(None).await.unwrap().is_empty());
    let stats = erp.sim.stats();
    assert!(stats.injected > 0, "faults were injected: {stats:?}");
    assert!(
        stats.resets > 0,
        "answers were lost after the work: {stats:?}"
    );
    assert_eq!(stats.invoices_created, 120, "none made twice: {stats:?}");
    assert_eq!(
        (stats.over_minute, stats.over_day, stats.over_concurrent),
        (0, 0, 0),
        "{stats:?}"
    );
    erp.assert_faithful();
}

/// P2: an access token that expires mid-run (Xero answers 401) is
/// refreshed by the host and the call sent once more: nothing fails; the
/// rotated refresh token is kept (a second expiry refreshes again).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p2_an_expired_access_token_is_refreshed_mid_run_with_nothing_failing() {
    let erp = Erp::start().await;
    let (engine, _) = xero_engine(&erp).await;
    for round in 0..3 {
        import(
            &engine,
            serde_json::json!({"documents": (0..5).map(|i| doc_json("acme", &format!("r{round}-{i}"), "approved", "10.00")).collect::<Vec<_>>()}),
        )
        .await
        .unwrap();
        settle(&engine).await;
        erp.sim.expire_access_tokens();
    }
    assert_eq!(erp.bills().len(), 15);
    assert!(engine.attention(None).await.unwrap().is_empty());
    let stats = erp.sim.stats();
    assert_eq!(
        stats.token_refreshes, 3,
        "the first token and one per expiry"
    );
    assert!(
        stats.by_status.get(&401).copied().unwrap_or(0) >= 2,
        "Xero refused the expired tokens: {stats:?}"
    );
    erp.assert_faithful();
}

/// P2, O2: two workers (two engines over one store, as two processes)
/// share one grant: after each expiry one refresh serves both, and the
/// rotated refresh token is not lost. (That their refreshes never race is
/// shown below, at the token source, where the race can be forced.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p2_two_workers_refreshing_at_once_do_not_lose_the_rotated_token() {
    let erp = Erp::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.db");
    let open = || {
        Arc::new(Engine::new(
            ledgerbridge::store::Store::open(&path).unwrap(),
            runtime().clone(),
            RetryPolicy::default(),
            WorkerConfig::default(),
        ))
    };
    let (a, b) = (open(), open());
    a.add_tenant("acme").await.unwrap();
    a.put_connection(erp.connection("xero", "acme"))
        .await
        .unwrap();
    for round in 0..2 {
        import(
            &a,
            serde_json::json!({"documents": (0..40).map(|i| doc_json("acme", &format!("w{round}-{i:02}"), "approved", "10.00")).collect::<Vec<_>>()}),
        )
        .await
        .unwrap();
        tokio::join!(settle(&a), settle(&b));
        erp.sim.expire_access_tokens();
    }
    assert_eq!(erp.bills().len(), 80);
    assert!(a.attention(None).await.unwrap().is_empty());
    assert_eq!(
        erp.sim.stats().token_refreshes,
        2,
        "one refresh per expiry, whichever worker did it"
    );
    erp.assert_faithful();
}

/// P2, L2: a refresh token Xero refuses (the user disconnected the app)
/// puts the connection in "needs re-authorisation": an attention item with
/// the fix; after the operator stores a new grant, a re-sync goes through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p2_a_refused_grant_needs_reauthorisation_and_a_new_grant_fixes_it() {
    let erp = Erp::start().await;
    let (engine, mut c) = xero_engine(&erp).await;
    erp.sim.revoke_grants();
    import(
        &engine,
        serde_json::json!({"documents": [doc_json("acme", "d1", "approved", "10.00")]}),
    )
    .await
    .unwrap();
    settle(&engine).await;
    let attention = engine.attention(Some("xero")).await.unwrap();
    assert_eq!(attention.len(), 1);
    assert!(
        attention[0].message.contains("needs re-authorisation")
            && attention[0].message.contains("invalid_grant"),
        "{}",
        attention[0].message
    );
    let status = engine.status(Some("acme")).await.unwrap();
    assert!(
        status[0]
            .needs_reauthorisation
            .as_deref()
            .is_some_and(|m| m.contains("invalid_grant")),
        "status shows it: {:?}",
        status[0].needs_reauthorisation
    );
    assert!(
        attention[0].hint.to_lowercase().contains("re-authorise"),
        "{}",
        attention[0].hint
    );
    assert!(erp.bills().is_empty());
    // The user connects the app again; the operator stores the new grant.
    c.oauth2.as_mut().unwrap().refresh_token = Some(erp.sim.grant(CLIENT, &erp.org));
    engine.put_connection(c).await.unwrap();
    engine
        .request_resync("xero", Selection::Attention, false)
        .await
        .unwrap();
    settle(&engine).await;
    assert_eq!(erp.bills_of("d1").len(), 1);
    assert!(engine.attention(None).await.unwrap().is_empty());
    let status = engine.status(Some("acme")).await.unwrap();
    assert_eq!(status[0].needs_reauthorisation, None);
    erp.assert_faithful();
}

/// V1: a connection's OAuth2 settings are checked, each error naming its
/// field, and nothing is stored; the secrets never serialise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_oauth2_settings_are_checked_and_secrets_never_serialise() {
    let erp = Erp::start().await;
    let engine = engine();
    engine.add_tenant("acme").await.unwrap();
    let good = erp.connection("xero", "acme");
    let mut c = good.clone();
    c.oauth2.as_mut().unwrap().token_url = "http://identity.xero.com/connect/token".into();
    let e = engine.put_connection(c).await.unwrap_err().to_string();
    assert!(e.contains("oauth2.token_url"), "{e}");
    let mut c = good.clone();
    c.oauth2.as_mut().unwrap().refresh_token = None;
    let e = engine.put_connection(c).await.unwrap_err().to_string();
    assert!(e.contains("oauth2.refresh_token"), "{e}");
    let mut c = good.clone();
    c.credentials
        .insert("Authorization".into(), "Bearer x".into());
    let e = engine.put_connection(c).await.unwrap_err().to_string();
    assert!(e.contains("credentials.authorization"), "{e}");
    assert!(engine.connection("xero").await.is_err(), "nothing stored");
    engine.put_connection(good.clone()).await.unwrap();
    let shown = serde_json::to_string(&engine.connection("xero").await.unwrap()).unwrap();
    assert!(!shown.contains(SECRET), "{shown}");
    let token = good.oauth2.unwrap().refresh_token.unwrap();
    assert!(!shown.contains(&token), "{shown}");
}

/// P2, O2: many tasks in two processes (two token sources over two store
/// handles on one file) asking for a connection's token at once spend its
/// refresh token once: one refresh, one access token for all. Xero
/// rotates refresh tokens, so a second refresh with the spent one would be
/// refused and the connection would need re-authorisation. The rotated
/// token is kept: the next expiry refreshes again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p2_o2_concurrent_refreshes_in_two_processes_spend_the_refresh_token_once() {
    use ledgerbridge::store::Store;
    use ledgerbridge::sync::tokens::Tokens;
    let erp = Erp::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.db");
    let engine = Arc::new(Engine::new(
        Store::open(&path).unwrap(),
        runtime().clone(),
        RetryPolicy::default(),
        WorkerConfig::default(),
    ));
    engine.add_tenant("acme").await.unwrap();
    let c = erp.connection("xero", "acme");
    engine.put_connection(c.clone()).await.unwrap();
    let oauth2 = c.oauth2.unwrap();
    let processes: Vec<(Store, Tokens)> = (0..2)
        .map(|_| (Store::open(&path).unwrap(), Tokens::default()))
        .collect();
    let round = || async {
        let asks = processes.iter().flat_map(|(store, tokens)| {
            (0..4).map(|_| tokens.access(store, "xero", &oauth2, None))
        });
        futures::future::join_all(asks).await
    };
    let first = round().await;
    let token = first[0].clone().expect("a token");
    assert!(first.iter().all(|t| t.as_ref() == Ok(&token)), "{first:?}");
    assert_eq!(erp.sim.stats().token_refreshes, 1);
    // Xero refuses that token: each asks again naming it; one refresh.
    let (store, tokens) = &processes[1];
    let again = tokens
        .access(store, "xero", &oauth2, Some(&token))
        .await
        .unwrap();
    assert_ne!(again, token);
    let second = round().await;
    assert!(
        second.iter().all(|t| t.as_ref() == Ok(&again)),
        "{second:?}"
    );
    assert_eq!(erp.sim.stats().token_refreshes, 2);
}

/// X1: a vendor the connection maps to a Xero contact is sent by its
/// `ContactID` (Xero's name for it wins); one it does not map goes by
/// name, which Xero matches or creates; a mapped contact Xero does not
/// have is a validation error on `vendor`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x1_a_mapped_vendor_goes_by_contact_id_and_others_by_name() {
    let contact = "6d42f03b-181f-43e3-93fb-2025c012de92";
    let mut org = Organisation::demo();
    org.contacts = vec![(contact.to_string(), "ACME PAPER LTD".to_string())];
    let sim = XeroSim::start(Config {
        openapi: Some(openapi()),
        ..Config::default()
    })
    .await
    .unwrap();
    let id = sim.add_organisation(org);
    sim.add_client(CLIENT, SECRET);
    let erp = Erp { sim, org: id };
    let engine = engine();
    engine.add_tenant("acme").await.unwrap();
    let mut c = erp.connection("xero", "acme");
    c.mappings.vendors = [("v-1".to_string(), contact.to_string())].into();
    c.mappings
        .vendors
        .insert("v-9".into(), "1f0a7f0e-0000-4000-8000-000000000000".into());
    engine.put_connection(c).await.unwrap();
    let mut other = doc_json("acme", "d2", "approved", "10.00");
    other["vendor"] = serde_json::json!({"id": "v-2", "name": "Northwind Freight"});
    let mut unknown = doc_json("acme", "d3", "approved", "10.00");
    unknown["vendor"] = serde_json::json!({"id": "v-9", "name": "Gone Ltd"});
    import(
        &engine,
        serde_json::json!({"documents": [doc_json("acme", "d1", "approved", "10.00"), other, unknown]}),
    )
    .await
    .unwrap();
    settle(&engine).await;
    let d1 = &erp.bills_of("d1")[0];
    assert_eq!(d1["Contact"]["ContactID"], contact);
    assert_eq!(d1["Contact"]["Name"], "ACME PAPER LTD");
    assert_eq!(
        erp.bills_of("d2")[0]["Contact"]["Name"],
        "Northwind Freight"
    );
    let put = erp
        .sim
        .requests()
        .into_iter()
        .find(|r| r.method == "PUT")
        .unwrap();
    let sent = put.body.unwrap();
    assert!(
        sent["Invoices"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["Contact"] == serde_json::json!({"ContactID": contact})),
        "{sent}"
    );
    let attention = engine.attention(Some("xero")).await.unwrap();
    assert_eq!(attention.len(), 1, "{attention:?}");
    assert_eq!(attention[0].document_id, "d3");
    assert!(
        attention[0].message.contains("vendor"),
        "{}",
        attention[0].message
    );
    erp.assert_faithful();
}

/// X1, D1: Xero does not keep a vendor's invoice number unique, nor does
/// the host rely on it: two documents with the same number get a bill
/// each, and a lookup (after the host lost its records) finds each its own
/// by the `Url` that names the document.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d1_bills_sharing_a_vendor_number_are_told_apart_by_their_document() {
    let erp = Erp::start().await;
    let same = || {
        let docs: Vec<Value> = ["s1", "s2"]
            .iter()
            .enumerate()
            .map(|(i, d)| {
                let mut doc = doc_json("acme", d, "approved", &format!("{}.00", 10 + i));
                doc["number"] = "INV-SAME".into();
                doc
            })
            .collect();
        serde_json::json!({ "documents": docs })
    };
    let (first, _) = xero_engine(&erp).await;
    import(&first, same()).await.unwrap();
    settle(&first).await;
    assert_eq!(erp.bills().len(), 2);
    let (second, _) = xero_engine(&erp).await;
    import(&second, same()).await.unwrap();
    settle(&second).await;
    assert_eq!(erp.bills().len(), 2, "nothing duplicated");
    for (d, total) in [("s1", "10.00"), ("s2", "11.00")] {
        let b = erp.bills_of(d);
        assert_eq!(b.len(), 1);
        assert_eq!(money(&b[0]["Total"]), total, "{d} kept its own amount");
        let log = second.log_of("acme", d, Some("xero")).await.unwrap();
        assert_eq!(
            log.last().unwrap().entry_id.as_deref(),
            b[0]["InvoiceID"].as_str(),
            "{d} was matched to its own bill"
        );
    }
    erp.assert_faithful();
}

/// A3, X1: Xero cannot modify a payment; a changed payment is reported as
/// not replaced and never duplicated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a3_a_changed_payment_is_reported_and_never_duplicated() {
    let erp = Erp::start().await;
    let (engine, _) = xero_engine(&erp).await;
    import(
        &engine,
        serde_json::json!({"documents": [doc_json("acme", "d1", "approved", "100.00")],
                           "payments": [payment_json("acme", "p1", "d1", "40.00")]}),
    )
    .await
    .unwrap();
    settle(&engine).await;
    assert_eq!(erp.sim.payments(&erp.org).len(), 1);
    let mut changed = payment_json("acme", "p1", "d1", "45.00");
    changed["date"] = "2026-11-21".into();
    import(&engine, serde_json::json!({ "payments": [changed] }))
        .await
        .unwrap();
    settle(&engine).await;
    let payments = erp.sim.payments(&erp.org);
    assert_eq!(payments.len(), 1, "{payments:#?}");
    assert_eq!(money(&payments[0]["Amount"]), "40.00");
    let log = engine.log_of("acme", "d1", Some("xero")).await.unwrap();
    let last = log.last().unwrap();
    assert_eq!(last.target, "payment");
    assert!(
        last.operations
            .iter()
            .any(|o| o.result.contains("cannot modify")),
        "{last:?}"
    );
    erp.assert_faithful();
}

/// D1, D2: bills made before the connection's `document-url` changed are
/// still found by lookup (their Url ends with the document's id), not
/// created again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d2_a_changed_document_url_still_finds_earlier_bills() {
    let erp = Erp::start().await;
    let (first, _) = xero_engine(&erp).await;
    let docs = || serde_json::json!({"documents": [doc_json("acme", "u1", "approved", "10.00")]});
    import(&first, docs()).await.unwrap();
    settle(&first).await;
    let engine = engine();
    engine.add_tenant("acme").await.unwrap();
    let mut c = erp.connection("xero", "acme");
    c.settings.insert(
        "document-url".into(),
        "https://ap.example.com/bills/{document-id}".into(),
    );
    engine.put_connection(c).await.unwrap();
    import(&engine, docs()).await.unwrap();
    settle(&engine).await;
    assert_eq!(erp.bills().len(), 1, "{:#?}", erp.bills());
    erp.assert_faithful();
}

/// P2, P7: a plugin that answers `unauthorized` whatever the ERP said
/// cannot make the host refresh the connection's token on every call (a
/// storm on the ERP's token endpoint, rotating the grant each time): a
/// token obtained in the last minute is not refreshed again for a 401.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p2_p7_a_plugin_crying_unauthorized_cannot_storm_the_token_endpoint() {
    let erp = Erp::start().await;
    let engine = engine();
    engine.add_tenant("acme").await.unwrap();
    let mut c = erp.connection("liar", "acme");
    c.plugin = SCRIPTED.into();
    c.settings = [("lookup-bill".to_string(), "unauthorized".to_string())].into();
    c.limits.items_per_call = Some(1);
    engine.put_connection(c).await.unwrap();
    import_all(&engine, docs("acme", "u", 10)).await;
    settle(&engine).await;
    assert_eq!(engine.attention(Some("liar")).await.unwrap().len(), 10);
    let refreshes = erp.sim.stats().token_refreshes;
    assert_eq!(
        refreshes, 1,
        "one token for the run, not one per call the plugin cried 401 on"
    );
}
