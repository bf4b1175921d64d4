//! The QuickBooks Online connector against the QuickBooks simulator,
//! through the engine (issue 12; SPEC X2, B1, C3, D2, R1, R2, M2). Every
//! request body the connector sends and every answer the simulator gives
//! is checked against Intuit's schemas (each JSON element name must exist
//! for its entity); each test ends by asserting no violation was seen.

use ledgerbridge::model::{Connection, OAuth2, Target, TrackingMapping};
use ledgerbridge::sync::{Engine, RetryPolicy, Selection, WorkerConfig};
use ledgerbridge_sim::quickbooks::{BatchLie, Company, Config, Faults, QuickBooksSim};
use ledgerbridge_sim::xsd::Xsd;
use ledgerbridge_tests::*;
use serde_json::{Value, json};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

const CLIENT: &str = "ledgerbridge-test-client";
const SECRET: &str = "a-client-secret-of-some-length";
const T: &str = "acme";
const QB: &str = "qb";

/// Intuit's schemas, read once for every test.
fn xsd() -> Arc<Xsd> {
    static XSD: OnceLock<Arc<Xsd>> = OnceLock::new();
    XSD.get_or_init(|| Arc::new(Xsd::quickbooks().expect("Intuit's schemas (../shared/reference)")))
        .clone()
}

/// A simulated QuickBooks Online with the demo company and a grant.
struct Erp {
    sim: QuickBooksSim,
    realm: String,
}

impl Erp {
    async fn start() -> Erp {
        Erp::start_with(Config::default()).await
    }

    async fn start_with(config: Config) -> Erp {
        let sim = QuickBooksSim::start(Config {
            xsd: Some(xsd()),
            ..config
        })
        .await
        .unwrap();
        let realm = sim.add_company(Company::demo());
        sim.add_client(CLIENT, SECRET);
        Erp { sim, realm }
    }

    /// A QuickBooks connection of tenant `acme`: categories `office` → 60
    /// (Office Supplies) and `freight` → 61, department `ops` → class 101
    /// (Operations), funding account `operating` → bank account 35
    /// (Checking), AP vendor `v-1` → QuickBooks vendor 56 (Acme Paper).
    fn connection(&self) -> Connection {
        let mut c = connection(QB, T, "quickbooks", None);
        c.settings = [
            ("realm-id".to_string(), self.realm.clone()),
            ("api-url".to_string(), self.sim.api_url()),
        ]
        .into();
        c.allowed_hosts = vec![format!("http://{}", self.sim.addr())];
        c.mappings.categories = [("office", "60"), ("freight", "61")]
            .into_iter()
            .map(|(a, b)| (a.into(), b.into()))
            .collect();
        c.mappings.departments = [(
            "ops".to_string(),
            TrackingMapping {
                category: "Class".into(),
                option: "101".into(),
            },
        )]
        .into();
        c.mappings.bank_accounts = [("operating".to_string(), "35".to_string())].into();
        c.mappings.vendors = [("v-1".to_string(), "56".to_string())].into();
        c.oauth2 = Some(OAuth2 {
            token_url: self.sim.token_url(),
            client_id: CLIENT.into(),
            client_secret: SECRET.into(),
            refresh_token: Some(self.sim.grant(CLIENT, &self.realm)),
        });
        c
    }

    /// The bills whose memo names `document` (in its first part).
    fn bills_of(&self, document: &str) -> Vec<Value> {
        let marker = format!("ledgerbridge document {document}");
        self.sim
            .bills(&self.realm)
            .into_iter()
            .filter(|b| {
                b["PrivateNote"]
                    .as_str()
                    .and_then(|n| n.split(';').next())
                    .is_some_and(|p| p.trim() == marker)
            })
            .collect()
    }

    fn bill_of(&self, document: &str) -> Value {
        let b = self.bills_of(document);
        assert_eq!(b.len(), 1, "{document}: {b:#?}");
        b[0].clone()
    }

    /// No request or answer used an element name Intuit's schemas lack.
    fn assert_faithful(&self) {
        let v = self.sim.violations();
        assert!(v.is_empty(), "schema violations: {v:#?}");
        let s = self.sim.stats();
        assert_eq!(s.without_minor_version, 0, "minorversion on every call");
    }
}

async fn qb_engine(erp: &Erp) -> Arc<Engine> {
    let engine = engine();
    engine.add_tenant(T).await.unwrap();
    engine.put_connection(erp.connection()).await.unwrap();
    engine
}

fn money(v: &Value) -> String {
    format!("{:.2}", v.as_f64().unwrap_or(f64::NAN))
}

fn check(id: &str, document: &str, amount: &str) -> Value {
    let mut p = payment_json(T, id, document, amount);
    p["method"] = "check".into();
    p["disbursement_status"] = "funding_complete".into();
    p
}

/// X2, A1-A3, D2, P2: an approved bill becomes a `Bill` (lines with
/// AccountRef and ClassRef, the vendor by its mapped id); a change is a
/// full update carrying the current SyncToken; a check payment is a
/// `BillPayment` with `PayType` Check, the check number in `DocNumber`,
/// drawn on the mapped bank account and linked to the bill. Every write
/// carries a `requestid`, every call `minorversion`; an access token that
/// expires on the way is refreshed with nothing failing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x2_approve_change_and_pay_by_check_in_quickbooks_wire_format() {
    let erp = Erp::start().await;
    let engine = qb_engine(&erp).await;
    engine
        .set_next_check_number(T, "operating", 5001)
        .await
        .unwrap();
    import(
        &engine,
        json!({"documents": [doc_json(T, "d1", "approved", "120.50")]}),
    )
    .await
    .unwrap();
    settle(&engine).await;
    let bill = erp.bill_of("d1");
    assert_eq!(bill["DocNumber"], "INV-d1");
    assert_eq!(bill["VendorRef"]["value"], "56");
    assert_eq!(bill["SyncToken"], "0");
    assert_eq!(money(&bill["TotalAmt"]), "120.50");
    let line = &bill["Line"][0]["AccountBasedExpenseLineDetail"];
    assert_eq!(line["AccountRef"]["value"], "60");
    assert_eq!(line["ClassRef"]["value"], "101");
    let id = bill["Id"].as_str().unwrap().to_string();
    let log = engine.log_of(T, "d1", Some(QB)).await.unwrap();
    assert_eq!(log[0].entry_id.as_deref(), Some(id.as_str()));

    // A2: the amount changes; the token expired meanwhile.
    erp.sim.expire_access_tokens();
    import(
        &engine,
        json!({"documents": [doc_json(T, "d1", "approved", "130.00")]}),
    )
    .await
    .unwrap();
    settle(&engine).await;
    let bill = erp.bill_of("d1");
    assert_eq!(bill["Id"], id.as_str(), "updated in place");
    assert_eq!(bill["SyncToken"], "1");
    assert_eq!(money(&bill["TotalAmt"]), "130.00");
    let update = erp
        .sim
        .requests()
        .into_iter()
        .filter_map(|r| r.body)
        .flat_map(|b| {
            b["BatchItemRequest"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .find(|i| i["operation"] == "update")
        .expect("an update was sent");
    assert_eq!(update["Bill"]["Id"], id.as_str());
    assert_eq!(update["Bill"]["SyncToken"], "0", "the token it had read");

    // A3: paid by check.
    import(&engine, json!({"payments": [check("p1", "d1", "130.00")]}))
        .await
        .unwrap();
    settle(&engine).await;
    let payments = erp.sim.bill_payments(&erp.realm);
    assert_eq!(payments.len(), 1, "{payments:#?}");
    let p = &payments[0];
    assert_eq!(p["PayType"], "Check");
    assert_eq!(p["DocNumber"], "5001");
    assert_eq!(p["CheckPayment"]["BankAccountRef"]["value"], "35");
    // The AP product printed and mailed the check: QuickBooks must not
    // queue it for printing again.
    assert_eq!(p["CheckPayment"]["PrintStatus"], "PrintComplete");
    assert_eq!(p["Line"][0]["LinkedTxn"][0]["TxnId"], id.as_str());
    assert_eq!(p["Line"][0]["LinkedTxn"][0]["TxnType"], "Bill");
    assert_eq!(money(&p["TotalAmt"]), "130.00");
    assert_eq!(money(&erp.bill_of("d1")["Balance"]), "0.00");
    assert!(engine.attention(None).await.unwrap().is_empty());
    for r in erp.sim.requests() {
        let writes = r.body.as_ref().is_some_and(|b| {
            b["BatchItemRequest"]
                .as_array()
                .is_some_and(|i| i.iter().any(|i| i.get("Query").is_none()))
        });
        if writes {
            assert!(
                r.request_id
                    .as_deref()
                    .is_some_and(|k| !k.is_empty() && k.len() <= 50),
                "{} {} without a requestid",
                r.method,
                r.path
            );
        }
    }
    let stats = erp.sim.stats();
    assert_eq!(
        stats.token_refreshes, 2,
        "the first token and one after expiry"
    );
    assert!(stats.by_status.get(&401).copied().unwrap_or(0) >= 1);
    erp.assert_faithful();
}

/// X2, M3: the bill changed in QuickBooks since the host read it (its
/// SyncToken moved on): QuickBooks answers 5010, the host reads the bill
/// again and updates it with the fresh token. One bill, the new amount.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x2_a_stale_sync_token_is_read_again_and_updated_with_no_duplicate() {
    let erp = Erp::start().await;
    let engine = qb_engine(&erp).await;
    import(
        &engine,
        json!({"documents": [doc_json(T, "d1", "approved", "40.00")]}),
    )
    .await
    .unwrap();
    settle(&engine).await;
    let id = erp.bill_of("d1")["Id"].as_str().unwrap().to_string();
    erp.sim.edit_bill(&erp.realm, &id).unwrap();
    erp.sim.edit_bill(&erp.realm, &id).unwrap();
    import(
        &engine,
        json!({"documents": [doc_json(T, "d1", "approved", "45.00")]}),
    )
    .await
    .unwrap();
    settle(&engine).await;
    let bill = erp.bill_of("d1");
    assert_eq!(money(&bill["TotalAmt"]), "45.00");
    assert_eq!(bill["SyncToken"], "3", "two edits there, then ours");
    assert_eq!(erp.sim.bills(&erp.realm).len(), 1, "no duplicate");
    let log = engine.log_of(T, "d1", Some(QB)).await.unwrap();
    let last = log.last().unwrap();
    assert_eq!(last.outcome, "updated", "{last:?}");
    assert!(engine.attention(None).await.unwrap().is_empty());
    erp.assert_faithful();
}

/// C3, L3: the check was numbered 1001 and its export failed (QuickBooks
/// refused writes for a while); meanwhile a bookkeeper wrote check 1001
/// by hand. QuickBooks refuses the number (6140): the payment goes to
/// Failed to export with its number and the next free one suggested; it
/// is edited and exported, and QuickBooks has one bill payment for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c3_a_check_number_quickbooks_already_uses_is_failed_edited_and_exported_once() {
    let erp = Erp::start().await;
    let engine = Arc::new(Engine::new(
        ledgerbridge::store::Store::open_in_memory().unwrap(),
        runtime().clone(),
        RetryPolicy {
            max_attempts: 2,
            base: Duration::from_millis(20),
            cap: Duration::from_millis(50),
        },
        WorkerConfig::default(),
    ));
    engine.add_tenant(T).await.unwrap();
    engine.put_connection(erp.connection()).await.unwrap();
    engine
        .set_next_check_number(T, "operating", 1001)
        .await
        .unwrap();
    import(
        &engine,
        json!({"documents": [doc_json(T, "d1", "approved", "10.00"), doc_json(T, "d2", "approved", "25.00")]}),
    )
    .await
    .unwrap();
    settle(&engine).await;
    erp.sim.set_faults(Faults {
        fail_writes: 100,
        ..Faults::default()
    });
    import(&engine, json!({"payments": [check("p1", "d1", "10.00")]}))
        .await
        .unwrap();
    settle(&engine).await;
    let numbered = engine.payments_of(T, "d1").await.unwrap()[0].check_number;
    assert_eq!(numbered, Some(1001));
    assert!(erp.sim.bill_payments(&erp.realm).is_empty());
    // By hand in QuickBooks: check 1001 from Checking, for d2's bill.
    erp.sim.set_faults(Faults::default());
    let d2 = erp.bill_of("d2")["Id"].as_str().unwrap().to_string();
    erp.sim
        .write_check(&erp.realm, &d2, "35", "25.00", "1001")
        .unwrap();
    // Its retries spent while QuickBooks refused writes, it waits in
    // Requires attention; an operator re-syncs it.
    assert_eq!(engine.attention(Some(QB)).await.unwrap().len(), 1);
    engine
        .request_resync(QB, Selection::Documents(vec!["d1".into()]), false)
        .await
        .unwrap();
    settle(&engine).await;
    let failed = engine.failed_exports(Some(QB)).await.unwrap();
    assert_eq!(failed.len(), 1, "{failed:?}");
    let f = &failed[0];
    assert_eq!((f.payment_id.as_str(), f.check_number), ("p1", Some(1001)));
    // The contract's duplicate-check-number, not a plain validation: the
    // engine marks 1001 used in the ERP so it is never issued again.
    assert!(
        f.error
            .starts_with("check number 1001 is already used in the ERP"),
        "{}",
        f.error
    );
    assert_eq!(f.suggested_check_number, Some(1002));
    assert_eq!(
        erp.sim.bill_payments(&erp.realm).len(),
        1,
        "only the hand-written one"
    );

    let edited = engine.edit_export(T, "p1", Some(1002), None).await.unwrap();
    assert_eq!(edited.check_number, Some(1002));
    assert_eq!(
        engine
            .check_number_holder(T, "operating", 1001)
            .await
            .unwrap(),
        Some(None),
        "1001 stays marked used in QuickBooks"
    );
    let run = engine.request_export("p1", QB).await.unwrap();
    let s = engine.finish_run(&run, |_| {}).await.unwrap();
    assert_eq!(s.created, 1, "{s:?}");
    let ours: Vec<Value> = erp
        .sim
        .bill_payments(&erp.realm)
        .into_iter()
        .filter(|p| p["PrivateNote"] == "ledgerbridge payment p1")
        .collect();
    assert_eq!(ours.len(), 1, "{ours:#?}");
    assert_eq!(ours[0]["DocNumber"], "1002");
    assert!(engine.failed_exports(Some(QB)).await.unwrap().is_empty());
    let entry = engine
        .entry(QB, Target::Payment, "p1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(entry.entry_id.as_deref(), ours[0]["Id"].as_str());
    erp.assert_faithful();
}

/// C3: numbers QuickBooks already has on checks from the bank account
/// are skipped when a check is numbered (`check-numbers-in-use`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c3_check_numbers_quickbooks_already_uses_are_skipped() {
    let erp = Erp::start().await;
    let engine = qb_engine(&erp).await;
    engine
        .set_next_check_number(T, "operating", 7001)
        .await
        .unwrap();
    import(
        &engine,
        json!({"documents": [doc_json(T, "d1", "approved", "10.00"), doc_json(T, "d2", "approved", "30.00")]}),
    )
    .await
    .unwrap();
    settle(&engine).await;
    let d2 = erp.bill_of("d2")["Id"].as_str().unwrap().to_string();
    for (n, bank) in [("7001", "35"), ("7002", "35"), ("7003", "36")] {
        erp.sim
            .write_check(&erp.realm, &d2, bank, "1.00", n)
            .unwrap();
    }
    import(&engine, json!({"payments": [check("p1", "d1", "10.00")]}))
        .await
        .unwrap();
    settle(&engine).await;
    let n = engine.payments_of(T, "d1").await.unwrap()[0].check_number;
    assert_eq!(
        n,
        Some(7003),
        "7001 and 7002 are used from Checking; 7003 only from Savings"
    );
    assert!(engine.failed_exports(Some(QB)).await.unwrap().is_empty());
    erp.assert_faithful();
}

/// B1, B2: with the books closed through 2026-11-30, a change to a bill
/// dated inside the closed period (QuickBooks: 6200) and a new bill dated
/// there are booked; the attention names the closing date; a later change
/// is not sent at all. A password-protected close (6210) is booked too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b1_a_date_on_or_before_the_closing_date_is_booked_and_locked() {
    let erp = Erp::start().await;
    let engine = qb_engine(&erp).await;
    import(
        &engine,
        json!({"documents": [doc_json(T, "d1", "approved", "50.00")]}),
    )
    .await
    .unwrap();
    settle(&engine).await;
    erp.sim
        .set_book_close_date(&erp.realm, Some("2026-11-30"), false);
    import(
        &engine,
        json!({"documents": [doc_json(T, "d1", "approved", "55.00"), doc_json(T, "d2", "approved", "10.00")]}),
    )
    .await
    .unwrap();
    settle(&engine).await;
    assert_eq!(
        money(&erp.bill_of("d1")["TotalAmt"]),
        "50.00",
        "not changed"
    );
    assert!(
        erp.bills_of("d2").is_empty(),
        "not created in a closed period"
    );
    for d in ["d1", "d2"] {
        let log = engine.log_of(T, d, Some(QB)).await.unwrap();
        let last = log.last().unwrap();
        assert_eq!(last.outcome, "skipped_booked", "{d}: {last:?}");
        assert!(
            last.error.as_deref().unwrap_or("").contains("2026-11-30"),
            "{d}: the closing date is named: {last:?}"
        );
    }
    let sent = erp.sim.requests().len();
    import(
        &engine,
        json!({"documents": [doc_json(T, "d1", "approved", "56.00")]}),
    )
    .await
    .unwrap();
    settle(&engine).await;
    assert_eq!(
        erp.sim.requests().len(),
        sent,
        "nothing sent to a locked entry"
    );
    // 6210: closed with a password.
    erp.sim
        .set_book_close_date(&erp.realm, Some("2026-11-30"), true);
    import(
        &engine,
        json!({"documents": [doc_json(T, "d3", "approved", "10.00")]}),
    )
    .await
    .unwrap();
    settle(&engine).await;
    let log = engine.log_of(T, "d3", Some(QB)).await.unwrap();
    let last = log.last().unwrap();
    assert_eq!(last.outcome, "skipped_booked", "{last:?}");
    assert!(
        last.error.as_deref().unwrap_or("").contains("password"),
        "{last:?}"
    );
    erp.assert_faithful();
}

/// X2: an AP vendor QuickBooks does not have, with no mapping and vendor
/// creation off, is never sent as another vendor: it needs attention, on
/// `vendor`, with what to do. With `create-vendors` on, the vendor is
/// created once and used by every bill of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x2_an_unknown_vendor_needs_attention_with_a_hint_never_a_wrong_vendor() {
    let erp = Erp::start().await;
    let engine = engine();
    engine.add_tenant(T).await.unwrap();
    let mut c = erp.connection();
    c.mappings.vendors.clear();
    engine.put_connection(c.clone()).await.unwrap();
    let from = |id: &str, vendor: &str, name: &str| {
        let mut d = doc_json(T, id, "approved", "10.00");
        d["vendor"] = json!({"id": vendor, "name": name});
        d
    };
    import(
        &engine,
        json!({"documents": [from("d1", "v-9", "Umbrella Corp"), from("d2", "v-1", "Acme Paper")]}),
    )
    .await
    .unwrap();
    settle(&engine).await;
    assert!(erp.bills_of("d1").is_empty());
    assert_eq!(
        erp.bill_of("d2")["VendorRef"]["value"],
        "56",
        "found by DisplayName"
    );
    let attention = engine.attention(Some(QB)).await.unwrap();
    assert_eq!(attention.len(), 1, "{attention:?}");
    let a = &attention[0];
    assert!(
        a.message.contains("vendor") && a.message.contains("Umbrella Corp"),
        "{}",
        a.message
    );
    assert!(
        a.message.contains("mappings.vendors") && a.message.contains("create-vendors"),
        "what to do: {}",
        a.message
    );
    // Vendor creation allowed: created once, for both its bills.
    c.settings.insert("create-vendors".into(), "true".into());
    // (The grant the store holds is kept: its refresh token has rotated.)
    c.oauth2.as_mut().unwrap().refresh_token = None;
    engine.put_connection(c).await.unwrap();
    import(
        &engine,
        json!({"documents": [from("d3", "v-9", "Umbrella Corp")]}),
    )
    .await
    .unwrap();
    engine
        .request_resync(QB, Selection::Documents(vec!["d1".into()]), false)
        .await
        .unwrap();
    settle(&engine).await;
    let vendor = erp.bill_of("d1")["VendorRef"]["value"].clone();
    assert_eq!(erp.bill_of("d3")["VendorRef"]["value"], vendor);
    let umbrellas = erp
        .sim
        .vendors(&erp.realm)
        .into_iter()
        .filter(|v| v["DisplayName"] == "Umbrella Corp")
        .count();
    assert_eq!(umbrellas, 1);
    assert!(engine.attention(Some(QB)).await.unwrap().is_empty());
    erp.assert_faithful();
}

/// X2: a vendor number longer than QuickBooks' 21 characters: `DocNumber`
/// holds its first 21, the memo the whole number, and lookup still finds
/// the bill (no duplicate after the host's record is lost).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x2_a_vendor_number_over_21_characters_is_cut_and_kept_whole_in_the_memo() {
    let erp = Erp::start().await;
    let long = "INV-2026-11-ACME-PAPER-000123";
    let mut d = doc_json(T, "d1", "approved", "10.00");
    d["number"] = long.into();
    let first = qb_engine(&erp).await;
    import(&first, json!({"documents": [d.clone()]}))
        .await
        .unwrap();
    settle(&first).await;
    let bill = erp.bill_of("d1");
    assert_eq!(bill["DocNumber"], &long[..21]);
    assert!(bill["PrivateNote"].as_str().unwrap().contains(long));
    let second = qb_engine(&erp).await;
    import(&second, json!({"documents": [d]})).await.unwrap();
    settle(&second).await;
    assert_eq!(
        erp.sim.bills(&erp.realm).len(),
        1,
        "found again, not duplicated"
    );
    erp.assert_faithful();
}

/// D2, X2: a vendor number is free text, and the memo holds the whole of
/// a long one. One that reads `; ledgerbridge document d2` must not make
/// d2's lookup take d1's bill (and then overwrite it with d2).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d2_a_vendor_number_naming_another_document_never_takes_its_bill() {
    let erp = Erp::start().await;
    let engine = qb_engine(&erp).await;
    // d2's number is d1's DocNumber (its first 21 characters), so d2's
    // lookup by DocNumber finds d1's bill, whose memo then names d2.
    let short = "B-0000000000000000021";
    assert_eq!(short.len(), 21);
    let mut d1 = doc_json(T, "d1", "approved", "10.00");
    d1["number"] = format!("{short}; ledgerbridge document d2").into();
    import(&engine, json!({"documents": [d1]})).await.unwrap();
    settle(&engine).await;
    let mut d2 = doc_json(T, "d2", "approved", "20.00");
    d2["number"] = short.into();
    import(&engine, json!({"documents": [d2]})).await.unwrap();
    settle(&engine).await;
    let (b1, b2) = (erp.bill_of("d1"), erp.bill_of("d2"));
    assert_ne!(b1["Id"], b2["Id"]);
    assert_eq!(money(&b1["TotalAmt"]), "10.00", "d1's bill untouched");
    assert_eq!(money(&b2["TotalAmt"]), "20.00");
    assert_eq!(erp.sim.bills(&erp.realm).len(), 2);
    for (d, b) in [("d1", &b1), ("d2", &b2)] {
        let entry = engine.entry(QB, Target::Bill, d).await.unwrap().unwrap();
        assert_eq!(entry.entry_id.as_deref(), b["Id"].as_str(), "{d}");
    }
    erp.assert_faithful();
}

/// After the lie was told: each document's bill has its amount and its
/// vendor (created once), and the host recorded it as the document's.
async fn records_each_its_own(
    erp: &Erp,
    engine: &Arc<Engine>,
    lie: BatchLie,
    docs: &[(&str, &str, &str)],
) {
    settle(engine).await;
    assert!(!erp.sim.lie_pending(), "{lie:?} told");
    let vendor_id = |name: &str| -> Value {
        let v: Vec<Value> = erp
            .sim
            .vendors(&erp.realm)
            .into_iter()
            .filter(|v| v["DisplayName"] == name)
            .collect();
        assert_eq!(v.len(), 1, "{lie:?}: {name} created once");
        v[0]["Id"].clone()
    };
    for (d, vendor, amount) in docs {
        let bill = erp.bill_of(d);
        assert_eq!(money(&bill["TotalAmt"]), *amount, "{lie:?} {d}");
        assert_eq!(bill["VendorRef"]["value"], vendor_id(vendor), "{lie:?} {d}");
        let entry = engine.entry(QB, Target::Bill, d).await.unwrap().unwrap();
        assert_eq!(
            entry.entry_id.as_deref(),
            bill["Id"].as_str(),
            "{lie:?} {d}"
        );
    }
    assert_eq!(erp.sim.bills(&erp.realm).len(), docs.len(), "{lie:?}");
}

/// D2, X2: an answer to a batch that is not the item's (a `bId` traded
/// or given twice, by the ERP or something between) is never recorded:
/// the call fails as unavailable, the host looks the items up and each
/// document ends with its own bill, and a new vendor is never another's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d2_a_batch_answer_mixed_up_between_items_records_no_wrong_entry() {
    for lie in [BatchLie::SwapBIds, BatchLie::DuplicateBId] {
        let erp = Erp::start().await;
        let engine = engine();
        engine.add_tenant(T).await.unwrap();
        let mut c = erp.connection();
        c.settings.insert("create-vendors".into(), "true".into());
        c.mappings.vendors.clear();
        engine.put_connection(c).await.unwrap();
        let from = |id: &str, vendor: &str, amount: &str| {
            let mut d = doc_json(T, id, "approved", amount);
            d["vendor"] = json!({"id": vendor, "name": format!("Vendor {vendor}")});
            d
        };
        // The new vendors' batch is answered with the lie.
        erp.sim.lie(lie, 1);
        import(
            &engine,
            json!({"documents": [from("d1", "v-7", "10.00"), from("d2", "v-8", "20.00")]}),
        )
        .await
        .unwrap();
        const TWO: &[(&str, &str, &str)] =
            &[("d1", "Vendor v-7", "10.00"), ("d2", "Vendor v-8", "20.00")];
        records_each_its_own(&erp, &engine, lie, TWO).await;
        // Then a batch of new bills (their vendors known by now).
        erp.sim.lie(lie, 1);
        import(
            &engine,
            json!({"documents": [from("d3", "v-7", "30.00"), from("d4", "v-8", "40.00")]}),
        )
        .await
        .unwrap();
        const FOUR: &[(&str, &str, &str)] = &[
            ("d1", "Vendor v-7", "10.00"),
            ("d2", "Vendor v-8", "20.00"),
            ("d3", "Vendor v-7", "30.00"),
            ("d4", "Vendor v-8", "40.00"),
        ];
        records_each_its_own(&erp, &engine, lie, FOUR).await;
        // Then a batch of updates (a forced re-sync).
        erp.sim.lie(lie, 1);
        engine
            .request_resync(QB, Selection::All, true)
            .await
            .unwrap();
        records_each_its_own(&erp, &engine, lie, FOUR).await;
        erp.assert_faithful();
    }
}

/// X2, V1: numbers and vendor names with a backslash or a quote are
/// quoted in queries as QuickBooks reads them (found again, never made
/// twice), and a query QuickBooks refuses fails only the documents it
/// asked about, naming their field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x2_queries_quote_backslashes_and_a_refused_query_fails_only_its_documents() {
    let erp = Erp::start().await;
    let mut c = erp.connection();
    c.settings.insert("create-vendors".into(), "true".into());
    let from = |id: &str, number: &str, vendor: &str, name: &str| {
        let mut d = doc_json(T, id, "approved", "10.00");
        d["number"] = number.into();
        d["vendor"] = json!({"id": vendor, "name": name});
        d
    };
    let docs = json!({"documents": [
        from("d1", "ENDS\\", "v-1", "Acme Paper"),
        from("d2", "O'Neil\\'s", "v-9", "Back\\slash Co"),
        from("d3", "INV-3", "v-8", "Trailing\\"),
        from("d4", "INV-4", "v-1", "Acme Paper"),
    ]});
    let first = engine();
    first.add_tenant(T).await.unwrap();
    first.put_connection(c.clone()).await.unwrap();
    import(&first, docs.clone()).await.unwrap();
    settle(&first).await;
    assert!(first.attention(Some(QB)).await.unwrap().is_empty());
    // The host's records are lost: every bill and vendor is found again.
    let second = engine();
    second.add_tenant(T).await.unwrap();
    c.oauth2.as_mut().unwrap().refresh_token = Some(erp.sim.grant(CLIENT, &erp.realm));
    second.put_connection(c.clone()).await.unwrap();
    import(&second, docs).await.unwrap();
    settle(&second).await;
    assert!(second.attention(Some(QB)).await.unwrap().is_empty());
    assert_eq!(erp.sim.bills(&erp.realm).len(), 4, "none made twice");
    for d in ["d1", "d2", "d3", "d4"] {
        erp.bill_of(d);
    }
    for name in ["Back\\slash Co", "Trailing\\"] {
        let n = erp
            .sim
            .vendors(&erp.realm)
            .into_iter()
            .filter(|v| v["DisplayName"] == name)
            .count();
        assert_eq!(n, 1, "vendor {name} made once");
    }
    // QuickBooks refuses the query that names INV-6: d6 needs attention on
    // its number; d5 and d7, asked about in the same batch, are synced.
    erp.sim.refuse_queries_naming(Some("'INV-6'"));
    let third = engine();
    third.add_tenant(T).await.unwrap();
    c.oauth2.as_mut().unwrap().refresh_token = Some(erp.sim.grant(CLIENT, &erp.realm));
    third.put_connection(c).await.unwrap();
    let mut many: Vec<Value> = (5..=7)
        .map(|i| doc_json(T, &format!("d{i}"), "approved", "10.00"))
        .collect();
    // One query per 50 numbers: INV-6 among others would fail them too.
    many[1]["number"] = "INV-6".into();
    import(&third, json!({"documents": many})).await.unwrap();
    settle(&third).await;
    assert!(erp.bills_of("d6").is_empty());
    erp.bill_of("d5");
    erp.bill_of("d7");
    let attention = third.attention(Some(QB)).await.unwrap();
    assert!(
        attention
            .iter()
            .any(|a| a.document_id == "d6" && a.message.contains("number")),
        "{attention:?}"
    );
    erp.assert_faithful();
}

/// D2, M3: QuickBooks answers a query 1,000 records at most: a lookup
/// whose number 1,005 other bills share reads on, page by page, and finds
/// the bill an earlier installation made instead of making another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d2_a_lookup_reads_past_a_full_page_of_1000_bills() {
    let erp = Erp::start().await;
    let bill = |note: &str| {
        json!({"VendorRef": {"value": "56"}, "DocNumber": "1", "TxnDate": "2026-11-02",
            "PrivateNote": note,
            "Line": [{"Amount": 9.0, "DetailType": "AccountBasedExpenseLineDetail",
                "AccountBasedExpenseLineDetail": {"AccountRef": {"value": "60"}}}]})
    };
    for i in 0..1005 {
        erp.sim
            .add_bill(&erp.realm, bill(&format!("another bill {i}")))
            .unwrap();
    }
    erp.sim
        .add_bill(&erp.realm, bill("ledgerbridge document d1"))
        .unwrap();
    let engine = qb_engine(&erp).await;
    let mut d = doc_json(T, "d1", "approved", "10.00");
    d["number"] = "1".into();
    import(&engine, json!({"documents": [d]})).await.unwrap();
    settle(&engine).await;
    assert_eq!(
        erp.sim.bills(&erp.realm).len(),
        1006,
        "found, not made again"
    );
    assert_eq!(
        money(&erp.bill_of("d1")["TotalAmt"]),
        "10.00",
        "and updated"
    );
    erp.assert_faithful();
}

/// V1: a connection whose `api-url` has a path or a query is refused
/// naming the setting, not retried as an outage when QuickBooks answers
/// 404.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_an_api_url_with_a_path_is_refused_naming_the_setting() {
    let erp = Erp::start().await;
    let engine = engine();
    engine.add_tenant(T).await.unwrap();
    let mut c = erp.connection();
    c.settings
        .insert("api-url".into(), format!("{}/v3", erp.sim.api_url()));
    engine.put_connection(c).await.unwrap();
    import(
        &engine,
        json!({"documents": [doc_json(T, "d1", "approved", "10.00")]}),
    )
    .await
    .unwrap();
    settle(&engine).await;
    let attention = engine.attention(Some(QB)).await.unwrap();
    assert_eq!(attention.len(), 1, "{attention:?}");
    assert!(
        attention[0].message.contains("settings.api-url"),
        "{}",
        attention[0].message
    );
    assert_eq!(erp.sim.stats().calls, 0, "nothing sent");
}

/// M2, M3, D2, R2: a bulk re-sync of 1,000 documents where QuickBooks
/// already has 300 (entered by an earlier installation): 230 are found and
/// updated, 40 dated in the closed period are booked, 30 deleted there
/// are created again, and 700 new ones are created; every document ends
/// with exactly one bill, in batches, never over QuickBooks' limits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn m2_a_bulk_resync_of_1000_documents_gets_each_the_right_outcome() {
    let erp = Erp::start().await;
    let ids: Vec<String> = (0..1000).map(|i| format!("b{i:04}")).collect();
    let doc = |i: usize| {
        let mut d = doc_json(T, &ids[i], "approved", "10.00");
        if i < 40 {
            d["issue_date"] = "2026-10-15".into();
        }
        d
    };
    // What an earlier installation left in QuickBooks, as the connector
    // writes it (DocNumber, and the memo naming the document).
    for (i, id) in ids.iter().enumerate().take(300) {
        let date = if i < 40 { "2026-10-15" } else { "2026-11-02" };
        let bill = erp
            .sim
            .add_bill(
                &erp.realm,
                json!({"VendorRef": {"value": "56"}, "DocNumber": format!("INV-{id}"), "TxnDate": date,
                    "PrivateNote": format!("ledgerbridge document {id}"),
                    "Line": [{"Amount": 9.0, "DetailType": "AccountBasedExpenseLineDetail",
                        "AccountBasedExpenseLineDetail": {"AccountRef": {"value": "60"}}}]}),
            )
            .unwrap();
        if (40..70).contains(&i) {
            erp.sim.delete_bill(&erp.realm, &bill).unwrap();
        }
    }
    erp.sim
        .set_book_close_date(&erp.realm, Some("2026-10-31"), false);
    let calls_before = erp.sim.stats().calls;
    let engine = engine();
    engine.add_tenant(T).await.unwrap();
    let mut c = erp.connection();
    c.enabled = false;
    engine.put_connection(c.clone()).await.unwrap();
    for chunk in (0..1000).collect::<Vec<_>>().chunks(500) {
        import(
            &engine,
            json!({"documents": chunk.iter().map(|&i| doc(i)).collect::<Vec<_>>()}),
        )
        .await
        .unwrap();
    }
    c.enabled = true;
    c.oauth2.as_mut().unwrap().refresh_token = None;
    engine.put_connection(c).await.unwrap();
    let (run, queued) = engine
        .request_resync(QB, Selection::All, false)
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
        assert_eq!(erp.bills_of(d).len(), 1, "{d} has exactly one bill");
    }
    let stats = erp.sim.stats();
    let calls = stats.calls - calls_before;
    assert!(
        calls <= 160,
        "{calls} calls to QuickBooks for 1,000 documents"
    );
    assert_eq!(
        (
            stats.over_minute,
            stats.over_batch_minute,
            stats.over_concurrent
        ),
        (0, 0, 0),
        "the host kept within QuickBooks' limits: {stats:?}"
    );
    erp.assert_faithful();
}

/// R1, R2, D1, D2: with 20% of calls failing (500/503), a burst of 429s,
/// and 10% of calls whose connection drops after QuickBooks did the work,
/// every document is synced exactly once (the `requestid` replays the
/// first answer; lookups find the rest), zero calls go over QuickBooks'
/// limits, and nothing is left for a person.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r1_r2_faults_and_429s_end_with_every_document_synced_exactly_once() {
    let erp = Erp::start().await;
    erp.sim.set_faults(Faults {
        latency: Duration::from_millis(5),
        error_rate: 0.2,
        reset_rate: 0.1,
        burst_429: 3,
        seed: 11,
        ..Faults::default()
    });
    let engine = Arc::new(Engine::new(
        ledgerbridge::store::Store::open_in_memory().unwrap(),
        runtime().clone(),
        RetryPolicy {
            max_attempts: 12,
            base: Duration::from_millis(50),
            cap: Duration::from_millis(500),
        },
        WorkerConfig::default(),
    ));
    engine.add_tenant(T).await.unwrap();
    engine.put_connection(erp.connection()).await.unwrap();
    engine
        .set_next_check_number(T, "operating", 3001)
        .await
        .unwrap();
    let ids: Vec<String> = (0..120).map(|i| format!("f{i:03}")).collect();
    import(
        &engine,
        json!({"documents": ids.iter().map(|d| doc_json(T, d, "approved", "10.00")).collect::<Vec<_>>()}),
    )
    .await
    .unwrap();
    settle(&engine).await;
    import(
        &engine,
        json!({"payments": ids[..20].iter().enumerate().map(|(i, d)| check(&format!("p{i}"), d, "10.00")).collect::<Vec<_>>()}),
    )
    .await
    .unwrap();
    settle(&engine).await;
    for d in &ids {
        assert_eq!(erp.bills_of(d).len(), 1, "{d} synced exactly once");
    }
    let payments = erp.sim.bill_payments(&erp.realm);
    assert_eq!(payments.len(), 20, "each payment exactly once");
    let mut numbers: Vec<&str> = payments
        .iter()
        .map(|p| p["DocNumber"].as_str().unwrap())
        .collect();
    numbers.sort_unstable();
    numbers.dedup();
    assert_eq!(numbers.len(), 20, "no check number twice");
    assert!(engine.attention(None).await.unwrap().is_empty());
    let stats = erp.sim.stats();
    assert!(stats.injected > 0 && stats.resets > 0, "{stats:?}");
    assert_eq!(stats.bills_created, 120, "none made twice: {stats:?}");
    assert_eq!(
        (
            stats.over_minute,
            stats.over_batch_minute,
            stats.over_concurrent
        ),
        (0, 0, 0),
        "{stats:?}"
    );
    erp.assert_faithful();
}
