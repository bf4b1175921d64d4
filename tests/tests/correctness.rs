//! The defects found when the engine was tried as a demanding operator
//! (issue 7) and attacked with a lying plugin (issue 8), each shown through
//! the library API with the real CSV connector or the scripted test plugin.
//! Each test names its item and the SPEC behaviour it protects.

use ledgerbridge::model::Target;
use ledgerbridge::store::{Store, StoreOptions};
use ledgerbridge::sync::{Engine, RetryPolicy, Selection, WorkerConfig};
use ledgerbridge_tests::*;
use serde_json::json;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

const T: &str = "acme";

fn files(dir: &Path, sub: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir.join(sub))
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".csv"))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn check(id: &str, document: &str) -> serde_json::Value {
    let mut p = payment_json(T, id, document, "10.00");
    p["method"] = "check".into();
    p["disbursement_status"] = "funding_complete".into();
    p
}

/// An engine over a file store in `dir`, with quick retries and a short lease.
fn file_engine(dir: &Path, options: StoreOptions) -> Arc<Engine> {
    Arc::new(Engine::new(
        Store::open_with(&dir.join("lb.db"), options).unwrap(),
        runtime().clone(),
        RetryPolicy {
            max_attempts: 3,
            base: Duration::from_millis(20),
            cap: Duration::from_millis(200),
        },
        WorkerConfig {
            lease: Duration::from_secs(1),
            ..WorkerConfig::default()
        },
    ))
}

/// Item 1 (P4, O1): a connection's tenant never changes, and no tenant is
/// granted a directory another tenant's connection has.
#[tokio::test]
async fn item1_a_connection_never_moves_to_another_tenant() {
    let e = engine();
    e.add_tenant("a").await.unwrap();
    e.add_tenant("b").await.unwrap();
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    e.put_connection(connection("b-csv", "b", "csv", Some(db.path())))
        .await
        .unwrap();
    // Tenant A takes B's connection id: refused, B keeps it.
    let err = e
        .put_connection(connection("b-csv", "a", "csv", Some(da.path())))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("id:") && err.contains("another tenant"),
        "{err}"
    );
    let kept = e.connection("b-csv").await.unwrap();
    assert_eq!(kept.tenant_id, "b");
    assert_eq!(
        Path::new(kept.directory.as_deref().unwrap()),
        db.path().canonicalize().unwrap()
    );
    // B's directory, or one inside it, granted to A: refused.
    let inside = db.path().join("sub");
    std::fs::create_dir(&inside).unwrap();
    for dir in [db.path(), inside.as_path()] {
        let err = e
            .put_connection(connection("a-csv", "a", "csv", Some(dir)))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("directory:") && err.contains("another tenant"),
            "{err}"
        );
    }
    assert!(e.connection("a-csv").await.is_err());
    // Its own directory is fine; B may still replace its own connection.
    e.put_connection(connection("a-csv", "a", "csv", Some(da.path())))
        .await
        .unwrap();
    e.put_connection(connection("b-csv", "b", "csv", Some(db.path())))
        .await
        .unwrap();
}

/// Item 2 (V1): a payment's amount is read in its document's currency, and
/// no document is paid more than its total.
#[tokio::test]
async fn item2_payments_are_read_in_their_documents_currency_and_never_exceed_the_total() {
    let (e, _dir) = csv_engine(T).await;
    let mut yen = doc_json(T, "jpy", "approved", "480");
    yen["currency"] = "JPY".into();
    let mut kwd = doc_json(T, "kwd", "approved", "1.234");
    kwd["currency"] = "KWD".into();
    import(
        &e,
        json!({"documents": [yen], "payments": [payment_json(T, "py", "jpy", "480")]}),
    )
    .await
    .unwrap();
    import(
        &e,
        json!({"documents": [kwd], "payments": [payment_json(T, "pk", "kwd", "1.234")]}),
    )
    .await
    .unwrap();
    assert_eq!(e.payments_of(T, "jpy").await.unwrap()[0].amount, 480);
    assert_eq!(e.payments_of(T, "kwd").await.unwrap()[0].amount, 1_234);

    // Over the total, with what is recorded: refused naming the field, and
    // nothing of the batch stored.
    let err = import(
        &e,
        json!({"documents": [doc_json(T, "other", "approved", "5.00")],
               "payments": [payment_json(T, "py2", "jpy", "1")]}),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(err.contains("payments[0].amount"), "{err}");
    assert!(e.document(T, "other").await.is_err());
    assert_eq!(e.payments_of(T, "jpy").await.unwrap().len(), 1);
    // Decimals a currency does not have are refused.
    let err = import(
        &e,
        json!({"payments": [payment_json(T, "py3", "jpy", "0.5")]}),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(err.contains("payments[0].amount"), "{err}");
    // Replacing a payment is not paying twice.
    import(
        &e,
        json!({"payments": [payment_json(T, "py", "jpy", "480")]}),
    )
    .await
    .unwrap();
}

/// Item 3 (C1, C3): a number the ERP rejected is never issued or accepted
/// again, whatever edits follow; only a payment in Failed to export can be
/// edited; bank ids follow the id rule; set-next cannot overflow.
#[tokio::test]
async fn item3_a_rejected_check_number_is_never_issued_or_accepted_again() {
    let e = engine();
    e.add_tenant(T).await.unwrap();
    let mut c = connection("s", T, SCRIPTED, None);
    // The scripted ERP rejects check 1001 as already used.
    c.settings
        .insert("create-payment".into(), "duplicate-check-number".into());
    e.put_connection(c.clone()).await.unwrap();
    e.set_next_check_number(T, "operating", 1001).await.unwrap();
    import(&e, json!({"documents": [doc_json(T, "d1", "approved", "10.00"), doc_json(T, "d2", "approved", "10.00"), doc_json(T, "d3", "approved", "10.00")]}))
        .await
        .unwrap();
    settle(&e).await;
    import(&e, json!({"payments": [check("p1", "d1")]}))
        .await
        .unwrap();
    settle(&e).await;
    let failed = e.failed_exports(Some("s")).await.unwrap();
    assert_eq!(failed[0].check_number, Some(1001));

    // p1 moves to another number; 1001 must not become free again.
    e.edit_export(T, "p1", Some(1050), None).await.unwrap();
    c.settings.remove("create-payment");
    e.put_connection(c.clone()).await.unwrap();
    let run = e.request_export("p1", "s").await.unwrap();
    assert_eq!(e.finish_run(&run, |_| {}).await.unwrap().created, 1);
    // A second rejected payment cannot be given 1001 by an operator...
    c.settings
        .insert("create-payment".into(), "duplicate-check-number".into());
    e.put_connection(c.clone()).await.unwrap();
    import(&e, json!({"payments": [check("p2", "d2")]}))
        .await
        .unwrap();
    settle(&e).await;
    let err = e
        .edit_export(T, "p2", Some(1001), None)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("check_number:") && err.contains("used in the ERP"),
        "{err}"
    );
    // ...and it is never issued to a new payment either.
    c.settings.remove("create-payment");
    e.put_connection(c.clone()).await.unwrap();
    e.clear_checks_marked_used(T, "operating", 1, 1000)
        .await
        .unwrap();
    import(&e, json!({"payments": [check("p3", "d3")]}))
        .await
        .unwrap();
    settle(&e).await;
    let p3 = e.payments_of(T, "d3").await.unwrap()[0]
        .check_number
        .unwrap();
    assert_ne!(p3, 1001);

    // Edit-export applies only to a payment in Failed to export.
    let err = e
        .edit_export(T, "p3", Some(4000), None)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("not in Failed to export"), "{err}");
    // A bank id is checked like every other id.
    for bad in ["../x", "", "a b"] {
        let err = e
            .edit_export(T, "p2", None, Some(bad.into()))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("bank_id:"), "{bad:?}: {err}");
    }
    // set-next cannot overflow the store's integers.
    for n in [9_223_372_036_854_775_807u64, u64::MAX, 0] {
        let err = e
            .set_next_check_number(T, "operating", n)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("next_check_number:"), "{n}: {err}");
    }
}

/// Item 4: sums that overflowed made `import` panic.
#[tokio::test]
async fn item4_overflowing_amounts_are_refused_never_a_panic() {
    let (e, _dir) = csv_engine(T).await;
    let mut d = doc_json(T, "d1", "approved", "1.00");
    d["lines"] = json!([
        {"description": "a", "amount": "92233720368547758.07", "category": "office"},
        {"description": "b", "amount": "92233720368547758.07", "category": "office"}]);
    let err = import(&e, json!({"documents": [d]})).await.unwrap_err();
    assert!(err.to_string().contains("lines[0].amount"), "{err}");
}

/// Item 5 (M2, M3 rule 3): a bulk re-sync asks the ERP whether each entry
/// exists; entries deleted in the ERP are created again, not reported
/// unchanged from the content hash.
#[tokio::test]
async fn item5_a_bulk_resync_recreates_entries_deleted_in_the_erp() {
    let (e, dir) = csv_engine(T).await;
    let docs: Vec<_> = (0..6)
        .map(|i| doc_json(T, &format!("d{i}"), "approved", "10.00"))
        .collect();
    let pays: Vec<_> = (0..3)
        .map(|i| payment_json(T, &format!("p{i}"), &format!("d{i}"), "10.00"))
        .collect();
    import(&e, json!({"documents": docs, "payments": pays}))
        .await
        .unwrap();
    settle(&e).await;
    assert_eq!(files(dir.path(), "bills").len(), 6);
    assert_eq!(files(dir.path(), "payments").len(), 3);
    // An accountant deletes entries by hand in the ERP.
    for f in ["bills/d1.csv", "bills/d4.csv", "payments/p2.csv"] {
        std::fs::remove_file(dir.path().join(f)).unwrap();
    }
    let (run, _) = e
        .request_resync("csv", Selection::All, false)
        .await
        .unwrap();
    let s = e.finish_run(&run, |_| {}).await.unwrap();
    assert_eq!((s.created, s.unchanged, s.failed), (3, 6, 0), "{s:?}");
    assert_eq!(files(dir.path(), "bills").len(), 6);
    assert_eq!(files(dir.path(), "payments").len(), 3);
}

/// Item 6 (A1, M1, M2): unless the connection syncs before approval, a
/// document that is not approved never gets a bill entry, on any path, and
/// the result says why.
#[tokio::test]
async fn item6_drafts_never_get_a_bill_entry_on_any_path() {
    let (e, dir) = csv_engine(T).await;
    import(
        &e,
        json!({"documents": [doc_json(T, "draft", "draft", "10.00"), doc_json(T, "waiting", "awaiting_approval", "10.00")]}),
    )
    .await
    .unwrap();
    settle(&e).await;
    let run = e
        .request_sync(T, "draft", "csv", Target::Bill, true)
        .await
        .unwrap();
    let s = e.finish_run(&run, |_| {}).await.unwrap();
    assert_eq!((s.skipped, s.created), (1, 0), "{s:?}");
    let results = e.run_results(&run).await.unwrap();
    assert!(
        results[0].4.as_deref().unwrap().contains("draft"),
        "{results:?}"
    );
    let (run, _) = e
        .request_resync("csv", Selection::All, false)
        .await
        .unwrap();
    let s = e.finish_run(&run, |_| {}).await.unwrap();
    assert_eq!((s.total, s.skipped, s.created), (2, 2, 0), "{s:?}");
    assert!(files(dir.path(), "bills").is_empty());
    // With sync before approval on, they are synced.
    let mut c = e.connection("csv").await.unwrap();
    c.sync_before_approval = true;
    e.put_connection(c).await.unwrap();
    let (run, _) = e
        .request_resync("csv", Selection::All, false)
        .await
        .unwrap();
    assert_eq!(e.finish_run(&run, |_| {}).await.unwrap().created, 2);
}

/// Item 7 (D2): update → conflict → lookup → update sends the second update
/// with a key of its own; a retry of the same update keeps its key.
#[tokio::test]
async fn item7_an_update_after_a_conflict_has_its_own_idempotency_key() {
    let (e, mut c) = scripted_engine(T, &[]).await;
    import(
        &e,
        json!({"documents": [doc_json(T, "d1", "approved", "10.00")]}),
    )
    .await
    .unwrap();
    settle(&e).await;
    c.settings.insert("update-bill".into(), "conflict".into());
    c.settings.insert("lookup-bill".into(), "found".into());
    e.put_connection(c).await.unwrap();
    import(
        &e,
        json!({"documents": [doc_json(T, "d1", "approved", "12.00")]}),
    )
    .await
    .unwrap();
    settle(&e).await;
    let log = e.log_of(T, "d1", None).await.unwrap();
    assert_eq!(log.len(), 4, "created, then three attempts: {log:?}");
    let (first, second) = (
        logged_keys(&log[1..2], "update-bill"),
        logged_keys(&log[2..3], "update-bill"),
    );
    assert_eq!(
        first.len(),
        2,
        "update, conflict, lookup, update: {first:?}"
    );
    assert_ne!(
        first[0], first[1],
        "the update after the conflict is a new request"
    );
    assert_eq!(
        first, second,
        "a retry of the same requests keeps their keys"
    );
}

/// Item 9: when the store's transaction cannot begin (another process holds
/// the write lock), nothing runs, and the caller hears why.
#[tokio::test]
async fn item9_a_transaction_that_cannot_begin_runs_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lb.db");
    let store = Store::open_with(
        &path,
        StoreOptions {
            busy_timeout: Duration::from_millis(200),
            ..StoreOptions::default()
        },
    )
    .unwrap();
    let holder = rusqlite::Connection::open(&path).unwrap();
    holder.execute_batch("BEGIN IMMEDIATE").unwrap();
    // Release the lock after the store's BEGIN gave up but while a statement
    // run outside a transaction would still be waiting for it.
    let releaser = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        holder.execute_batch("COMMIT").unwrap();
    });
    let result = store.add_tenant("ghost").await;
    releaser.join().unwrap();
    let err = result.expect_err("the write lock was held").to_string();
    assert!(err.contains("could not begin"), "{err}");
    assert!(
        !store.tenant_exists("ghost").await.unwrap(),
        "a caller told 'not stored' must find nothing stored"
    );
}

/// Items 10 and 11: a store failure is the host's, not the ERP's; the
/// worker logs it, backs off, keeps running, and the job runs again.
#[tokio::test]
async fn item10_item11_store_failures_neither_stop_the_worker_nor_pass_for_the_erps() {
    let dir = tempfile::tempdir().unwrap();
    let e = file_engine(dir.path(), StoreOptions::default());
    e.add_tenant(T).await.unwrap();
    e.put_connection(connection("s", T, SCRIPTED, None))
        .await
        .unwrap();
    let db = rusqlite::Connection::open(dir.path().join("lb.db")).unwrap();
    db.busy_timeout(Duration::from_secs(10)).unwrap();
    // Claims fail for a while (item 10), then recording a create's intent
    // fails (item 11).
    db.execute_batch(
        "CREATE TRIGGER no_claims BEFORE UPDATE OF state ON jobs WHEN NEW.state = 'running'
           BEGIN SELECT RAISE(ABORT, 'injected claim failure'); END;
         CREATE TRIGGER no_intents BEFORE INSERT ON entries WHEN NEW.entry_id IS NULL
           BEGIN SELECT RAISE(ABORT, 'injected store failure'); END;",
    )
    .unwrap();
    import(
        &e,
        json!({"documents": [doc_json(T, "d1", "approved", "10.00")]}),
    )
    .await
    .unwrap();
    let (stop, rx) = tokio::sync::watch::channel(false);
    let worker = {
        let e = e.clone();
        tokio::spawn(async move { e.run_worker(false, rx).await })
    };
    let query = |sql: &str| -> i64 { db.query_row(sql, [], |r| r.get(0)).unwrap() };
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!worker.is_finished(), "a failing claim stopped the worker");
    db.execute_batch("DROP TRIGGER no_claims").unwrap();
    while query("SELECT COUNT(*) FROM jobs WHERE error LIKE '%injected store failure%'") == 0 {
        assert!(!worker.is_finished(), "a failing store stopped the worker");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    db.execute_batch("DROP TRIGGER no_intents").unwrap();
    while query("SELECT COUNT(*) FROM jobs WHERE state = 'done'") == 0 {
        assert!(!worker.is_finished());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.send(true).unwrap();
    let report = worker.await.unwrap().unwrap();
    assert!(report.host_errors >= 1, "{report:?}");
    let log = e.log_of(T, "d1", None).await.unwrap();
    let outcomes: Vec<_> = log.iter().map(|r| r.outcome.as_str()).collect();
    assert_eq!(
        outcomes,
        ["created"],
        "the store's failure is not an ERP attempt"
    );
    assert!(
        log.iter()
            .all(|r| !r.error.as_deref().unwrap_or("").contains("unavailable")),
        "{log:?}"
    );
    assert!(e.attention(None).await.unwrap().is_empty());
}

/// Item 19 (M4): one result per document and target, with a reason for
/// each skip; a failing bill is one failure, its payment is blocked by it.
#[tokio::test]
async fn item19_one_result_per_document_and_target_with_reasons() {
    let (e, _dir) = csv_engine(T).await;
    let mut bad = doc_json(T, "bad", "approved", "10.00");
    bad["lines"][0]["category"] = "unmapped".into();
    let mut initiated = check("pi", "due");
    initiated["disbursement_status"] = "initiated".into();
    import(
        &e,
        json!({"documents": [bad, doc_json(T, "due", "approved", "10.00")],
               "payments": [payment_json(T, "pb", "bad", "10.00"), initiated]}),
    )
    .await
    .unwrap();
    settle(&e).await;
    let (run, n) = e
        .request_resync(
            "csv",
            Selection::Documents(vec!["bad".into(), "bad".into(), "due".into(), "due".into()]),
            false,
        )
        .await
        .unwrap();
    assert_eq!(n, 2, "a document named twice is one document");
    let s = e.finish_run(&run, |_| {}).await.unwrap();
    let results = e.run_results(&run).await.unwrap();
    let seen: Vec<(String, String, String)> = results
        .iter()
        .map(|(d, t, st, o, _)| (d.clone(), t.clone(), o.clone().unwrap_or(st.clone())))
        .collect();
    assert_eq!(
        seen,
        [
            ("bad".into(), "bill".into(), "failed".into()),
            ("bad".into(), "payment".into(), "blocked".into()),
            ("due".into(), "bill".into(), "unchanged".into()),
            ("due".into(), "payment".into(), "skipped".into()),
        ],
        "{results:?}"
    );
    assert!(
        results[3].4.as_deref().unwrap().contains("initiated"),
        "{results:?}"
    );
    assert_eq!(
        (s.failed, s.blocked, s.skipped, s.total),
        (1, 1, 1, 4),
        "{s:?}"
    );
}

/// Item 22 (R1): Retry-After is honoured: the stored due time of the next
/// attempt is at least what the ERP asked; a plugin asking for ~forever is
/// held to a day (issue 8 item 1: it overflowed the due time).
#[tokio::test]
async fn item22_retry_after_sets_the_stored_due_time_and_is_clamped() {
    for (asked, least, most) in [
        (60_000u64, 59_000i64, 61_000i64),
        (i64::MAX as u64, 86_399_000, 86_401_000),
        (u64::MAX, 86_399_000, 86_401_000),
    ] {
        let e = engine();
        e.add_tenant(T).await.unwrap();
        let mut c = connection("s", T, SCRIPTED, None);
        c.settings
            .insert("create-bill".into(), "rate-limited".into());
        c.settings
            .insert("retry-after-ms".into(), asked.to_string());
        e.put_connection(c).await.unwrap();
        import(
            &e,
            json!({"documents": [doc_json(T, "d1", "approved", "10.00")]}),
        )
        .await
        .unwrap();
        let (stop, rx) = tokio::sync::watch::channel(false);
        let worker = {
            let e = e.clone();
            tokio::spawn(async move { e.run_worker(false, rx).await })
        };
        let log = loop {
            let log = e.log_of(T, "d1", None).await.unwrap();
            if !log.is_empty() {
                break log;
            }
            assert!(!worker.is_finished(), "{asked}: the worker stopped");
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        stop.send(true).unwrap();
        worker.await.unwrap().unwrap();
        assert_eq!(log[0].outcome, "retrying");
        let (queued, _, due) = e.pending().await.unwrap();
        let due = due.expect("queued again");
        assert!(queued);
        let wait = due - log[0].at;
        assert!(
            (least..=most).contains(&wait),
            "{asked}: next attempt {wait} ms after the first"
        );
    }
}

/// Issue 8 item 9 (C3, P6): check numbers a plugin was not asked about are
/// ignored; an operator can clear numbers wrongly marked used.
#[tokio::test]
async fn issue8_item9_check_numbers_outside_the_range_asked_are_ignored() {
    let e = engine();
    e.add_tenant(T).await.unwrap();
    let mut c = connection("s", T, SCRIPTED, None);
    c.settings.insert(
        "used-checks".into(),
        "3,1000001,9223372036854775808,18446744073709551615".into(),
    );
    c.settings
        .insert("checks-outside-range".into(), "yes".into());
    e.put_connection(c).await.unwrap();
    import(
        &e,
        json!({"documents": [doc_json(T, "d1", "approved", "10.00")],
                      "payments": [check("p1", "d1")]}),
    )
    .await
    .unwrap();
    settle(&e).await;
    let n = e.payments_of(T, "d1").await.unwrap()[0]
        .check_number
        .unwrap();
    assert_eq!(
        n, 1,
        "3 was asked about and skipped later; the rest ignored"
    );
    let fa = e.funding_account(T, "operating").await.unwrap();
    assert_eq!(fa.last_issued, Some(3), "{fa:?}");
    assert_eq!(fa.next_check_number, 2);
    // The operator clears what the connector wrongly reported, and can set
    // the next number freely above what was issued to payments.
    assert_eq!(
        e.clear_checks_marked_used(T, "operating", 1, 100)
            .await
            .unwrap(),
        1
    );
    e.set_next_check_number(T, "operating", 2).await.unwrap();
    let log = e.log_of(T, "d1", None).await.unwrap();
    assert!(
        log.iter().any(|r| r
            .operations
            .iter()
            .any(|o| o.result.contains("outside") && o.result.contains("ignored"))),
        "{log:?}"
    );
}

/// Item 15, 16 and issue 8 item 13 (V1, P8): connection settings a host
/// must refuse, each naming its field; relative directories are stored
/// absolute; no grant shares files with the host's store.
#[tokio::test]
async fn item15_issue8_item13_connection_settings_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let e = file_engine(dir.path(), StoreOptions::default());
    e.add_tenant(T).await.unwrap();
    let erp = tempfile::tempdir().unwrap();
    let mut cases: Vec<(ledgerbridge::model::Connection, &str)> = vec![
        (connection("c", T, "csv", None), "directory:"),
        (
            connection("c", T, "csv", Some(Path::new("/"))),
            "directory:",
        ),
        (
            connection("c", T, "csv", Some(Path::new("/etc"))),
            "directory:",
        ),
        (connection("c", T, "csv", Some(dir.path())), "directory:"),
    ];
    let mut c = connection("c", T, "csv", Some(erp.path()));
    c.limits.memory_mib = Some(0);
    cases.push((c, "limits.memory_mib"));
    let mut c = connection("c", T, "csv", Some(erp.path()));
    c.limits.deadline_ms = Some(u64::MAX);
    cases.push((c, "limits.deadline_ms"));
    let mut c = connection("c", T, "csv", Some(erp.path()));
    c.limits.http_timeout_ms = Some(0);
    cases.push((c, "limits.http_timeout_ms"));
    cases.push((connection("..", T, "csv", Some(erp.path())), "id:"));
    cases.push((
        connection(&"x".repeat(100_000), T, "csv", Some(erp.path())),
        "id:",
    ));
    cases.push((connection("c", "..", "csv", Some(erp.path())), "tenant_id:"));
    let mut c = connection("c", T, "csv", Some(erp.path()));
    c.settings.insert("x".into(), "a\u{1b}[2J".into());
    cases.push((c, "settings.x"));
    for (c, field) in cases {
        let err = e.put_connection(c).await.unwrap_err().to_string();
        assert!(err.contains(field), "{field}: {err}");
    }
    assert!(e.connections(None).await.unwrap().is_empty());
    // The store's own directory holds the database: never granted. A
    // directory of its own beside it is fine, and stored absolute.
    let own = dir.path().join("erp");
    std::fs::create_dir(&own).unwrap();
    e.put_connection(connection("c", T, "csv", Some(&own.join("../erp"))))
        .await
        .unwrap();
    let saved = e.connection("c").await.unwrap();
    assert_eq!(
        Path::new(saved.directory.as_deref().unwrap()),
        own.canonicalize().unwrap()
    );
}

/// Issue 13 attack, finding 4 (C1, C2): a check number typed by hand in
/// Failed to export far ahead of the sequence (the largest there is)
/// neither skips the numbers between nor leaves the funding account unable
/// to be set: the next payment gets the next number, set-next still works,
/// and the hand-given number is never issued again.
#[tokio::test]
async fn a_check_number_typed_far_ahead_neither_skips_nor_blocks_the_sequence() {
    let e = engine();
    e.add_tenant(T).await.unwrap();
    let mut c = connection("s", T, SCRIPTED, None);
    c.settings
        .insert("create-payment".into(), "duplicate-check-number".into());
    e.put_connection(c.clone()).await.unwrap();
    e.set_next_check_number(T, "operating", 1001).await.unwrap();
    import(&e, json!({"documents": [doc_json(T, "d1", "approved", "10.00"), doc_json(T, "d2", "approved", "10.00"), doc_json(T, "d3", "approved", "10.00")]}))
        .await
        .unwrap();
    settle(&e).await;
    import(&e, json!({"payments": [check("p1", "d1")]}))
        .await
        .unwrap();
    settle(&e).await;
    let top = ledgerbridge::store::MAX_CHECK_NUMBER;
    e.edit_export(T, "p1", Some(top - 1), None).await.unwrap();
    c.settings.remove("create-payment");
    e.put_connection(c.clone()).await.unwrap();
    let fa = e.funding_account(T, "operating").await.unwrap();
    assert_eq!(fa.next_check_number, 1002, "{fa:?}");
    import(&e, json!({"payments": [check("p2", "d2")]}))
        .await
        .unwrap();
    settle(&e).await;
    assert_eq!(
        e.payments_of(T, "d2").await.unwrap()[0].check_number,
        Some(1002)
    );
    e.set_next_check_number(T, "operating", 5000).await.unwrap();
    let err = e
        .set_next_check_number(T, "operating", 1002)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("next_check_number:"), "{err}");
    e.set_next_check_number(T, "operating", top - 1)
        .await
        .unwrap();
    import(&e, json!({"payments": [check("p3", "d3")]}))
        .await
        .unwrap();
    settle(&e).await;
    let p3 = e.payments_of(T, "d3").await.unwrap()[0].check_number;
    assert_eq!(
        p3,
        Some(top),
        "the hand-given number is skipped, never issued again"
    );
}
