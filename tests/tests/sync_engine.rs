//! The sync engine through its public surface (intake, engine, store
//! queries), with the real CSV connector and the scripted test plugin.
//! Each test names the SPEC behaviours it shows.

use ledgerbridge::model::Target;
use ledgerbridge::store::{AttentionKind, JobOutcome};
use ledgerbridge::sync::{EngineError, Selection};
use ledgerbridge_tests::*;
use serde_json::json;
use std::path::Path;

const T: &str = "acme";

fn files(dir: &Path, sub: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir.join(sub))
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn csv_text(dir: &Path, rel: &str) -> String {
    std::fs::read_to_string(dir.join(rel)).unwrap()
}

fn set_booked(path: &Path) {
    let text = std::fs::read_to_string(path)
        .unwrap()
        .replace(",\r\n", ",yes\r\n");
    std::fs::write(path, text).unwrap();
}

async fn setup_csv() -> (
    std::sync::Arc<ledgerbridge::sync::Engine>,
    tempfile::TempDir,
) {
    csv_engine(T).await
}

#[tokio::test]
async fn a1_approval_creates_the_bill_entry_in_every_enabled_connection() {
    let e = engine();
    e.add_tenant(T).await.unwrap();
    e.add_tenant("other").await.unwrap();
    let dirs: Vec<_> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    e.put_connection(connection("one", T, "csv", Some(dirs[0].path())))
        .await
        .unwrap();
    e.put_connection(connection("two", T, "csv", Some(dirs[1].path())))
        .await
        .unwrap();
    let mut off = connection("off", T, "csv", Some(dirs[2].path()));
    off.enabled = false;
    e.put_connection(off).await.unwrap();
    e.put_connection(connection("theirs", "other", "csv", Some(dirs[3].path())))
        .await
        .unwrap();

    // Awaiting approval: nothing yet.
    import(
        &e,
        json!({"documents": [doc_json(T, "d1", "awaiting_approval", "100.00")]}),
    )
    .await
    .unwrap();
    settle(&e).await;
    assert!(files(dirs[0].path(), "bills").is_empty());

    let queued = import(
        &e,
        json!({"documents": [doc_json(T, "d1", "approved", "100.00")]}),
    )
    .await
    .unwrap();
    assert_eq!(
        queued, 2,
        "one bill job per enabled connection of the tenant"
    );
    settle(&e).await;
    assert_eq!(files(dirs[0].path(), "bills"), ["d1.csv"]);
    assert_eq!(files(dirs[1].path(), "bills"), ["d1.csv"]);
    assert!(
        files(dirs[2].path(), "bills").is_empty(),
        "a disabled connection gets nothing (P4)"
    );
    assert!(
        files(dirs[3].path(), "bills").is_empty(),
        "another tenant's connection gets nothing"
    );
    let entry = e.entry("one", Target::Bill, "d1").await.unwrap().unwrap();
    assert_eq!(entry.entry_id.as_deref(), Some("d1"));
    let log = e.log_of(T, "d1", Some("one")).await.unwrap();
    assert_eq!(log.len(), 1);
    assert_eq!(
        (log[0].trigger.as_str(), log[0].outcome.as_str()),
        ("approved", "created")
    );
}

#[tokio::test]
async fn a1_sync_before_approval_syncs_as_soon_as_the_document_exists() {
    let e = engine();
    e.add_tenant(T).await.unwrap();
    let (early, late) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut c = connection("early", T, "csv", Some(early.path()));
    c.sync_before_approval = true;
    e.put_connection(c).await.unwrap();
    e.put_connection(connection("late", T, "csv", Some(late.path())))
        .await
        .unwrap();
    import(
        &e,
        json!({"documents": [doc_json(T, "d1", "draft", "10.00")]}),
    )
    .await
    .unwrap();
    settle(&e).await;
    assert_eq!(files(early.path(), "bills"), ["d1.csv"]);
    assert!(files(late.path(), "bills").is_empty());
}

#[tokio::test]
async fn a2_d1_d3_changes_update_duplicates_coalesce_identical_content_is_skipped() {
    let (e, dir) = setup_csv().await;
    // D1: the same event twice before the worker runs makes one sync.
    import(
        &e,
        json!({"documents": [doc_json(T, "d1", "approved", "100.00")]}),
    )
    .await
    .unwrap();
    import(
        &e,
        json!({"documents": [doc_json(T, "d1", "approved", "100.00")]}),
    )
    .await
    .unwrap();
    settle(&e).await;
    let log = e.log_of(T, "d1", None).await.unwrap();
    assert_eq!(log.len(), 1, "{log:?}");

    // A2: a change of amount updates the entry.
    import(
        &e,
        json!({"documents": [doc_json(T, "d1", "approved", "120.00")]}),
    )
    .await
    .unwrap();
    settle(&e).await;
    assert!(csv_text(dir.path(), "bills/d1.csv").contains(",120.00,"));
    let log = e.log_of(T, "d1", None).await.unwrap();
    assert_eq!(
        (log[1].trigger.as_str(), log[1].outcome.as_str()),
        ("changed", "updated")
    );

    // D3: a manual sync with nothing changed sends nothing; forced, it does.
    let run = e
        .request_sync(T, "d1", "csv", Target::Bill, false)
        .await
        .unwrap();
    let s = e.finish_run(&run, |_| {}).await.unwrap();
    assert_eq!(s.unchanged, 1);
    let last = e.log_of(T, "d1", None).await.unwrap().pop().unwrap();
    assert!(
        last.operations
            .iter()
            .all(|o| !o.operation.contains("update")),
        "{:?}",
        last.operations
    );
    let run = e
        .request_sync(T, "d1", "csv", Target::Bill, true)
        .await
        .unwrap();
    assert_eq!(e.finish_run(&run, |_| {}).await.unwrap().updated, 1);
    assert!(
        csv_text(dir.path(), "bills/d1.csv").contains(",3,"),
        "version 3 after the forced update"
    );
}

#[tokio::test]
async fn a3_a5_payments_follow_their_bill() {
    let (e, dir) = setup_csv().await;
    import(
        &e,
        json!({"documents": [doc_json(T, "d1", "approved", "50.00")]}),
    )
    .await
    .unwrap();
    // The payment arrives before the bill is synced: it waits, the bill goes
    // first, the payment follows by itself.
    import(
        &e,
        json!({"payments": [payment_json(T, "p1", "d1", "50.00")]}),
    )
    .await
    .unwrap();
    let run = e
        .request_sync(T, "d1", "csv", Target::Payment, false)
        .await
        .unwrap();
    let s = e.finish_run(&run, |_| {}).await.unwrap();
    settle(&e).await;
    assert_eq!(s.failed, 0, "{s:?}");
    assert_eq!(files(dir.path(), "bills"), ["d1.csv"]);
    assert_eq!(files(dir.path(), "payments"), ["p1.csv"]);
    let p = e
        .entry("csv", Target::Payment, "p1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(p.entry_id.as_deref(), Some("p1"));
    assert!(csv_text(dir.path(), "payments/p1.csv").contains("p1,d1,d1,INV-d1,"));

    // A3: a document marked paid without a payment gets one for its total.
    let mut c = connection("csv", T, "csv", Some(dir.path()));
    c.default_bank_account = Some("1010".into());
    e.put_connection(c).await.unwrap();
    import(
        &e,
        json!({"documents": [doc_json(T, "d2", "approved", "75.00")]}),
    )
    .await
    .unwrap();
    settle(&e).await;
    import(
        &e,
        json!({"documents": [doc_json(T, "d2", "paid", "75.00")]}),
    )
    .await
    .unwrap();
    settle(&e).await;
    assert!(files(dir.path(), "payments").contains(&"d2%3Amarked-paid.csv".to_string()));
}

#[tokio::test]
async fn a5_a_payment_whose_bill_fails_is_blocked_with_the_bills_reason() {
    let e = engine();
    e.add_tenant(T).await.unwrap();
    let mut c = connection("s", T, SCRIPTED, None);
    c.settings.insert("create-bill".into(), "validation".into());
    e.put_connection(c.clone()).await.unwrap();
    import(
        &e,
        json!({"documents": [doc_json(T, "d1", "approved", "50.00")]}),
    )
    .await
    .unwrap();
    import(
        &e,
        json!({"payments": [payment_json(T, "p1", "d1", "50.00")]}),
    )
    .await
    .unwrap();
    let run = e
        .request_sync(T, "d1", "s", Target::Payment, false)
        .await
        .unwrap();
    let s = e.finish_run(&run, |_| {}).await.unwrap();
    settle(&e).await;
    assert!(s.failed >= 1, "{s:?}");
    let items = e.attention(Some("s")).await.unwrap();
    let pay = items
        .iter()
        .find(|a| a.target == "payment")
        .expect("the payment is listed");
    assert!(
        pay.message.starts_with("blocked:") && pay.message.contains("scripted validation"),
        "{}",
        pay.message
    );
    assert_eq!(pay.kind, AttentionKind::Blocked);
    assert!(
        items
            .iter()
            .any(|a| a.target == "bill" && a.kind == AttentionKind::Failed)
    );

    // The bill is fixed; re-syncing what needs attention syncs the bill and
    // the payment follows by itself.
    c.settings.remove("create-bill");
    e.put_connection(c).await.unwrap();
    let (run, _) = e
        .request_resync("s", Selection::Attention, false)
        .await
        .unwrap();
    e.finish_run(&run, |_| {}).await.unwrap();
    settle(&e).await;
    assert!(
        e.entry("s", Target::Payment, "p1")
            .await
            .unwrap()
            .and_then(|p| p.entry_id)
            .is_some()
    );
    assert!(
        e.attention(Some("s")).await.unwrap().is_empty(),
        "L2: items leave on success"
    );
}

#[tokio::test]
async fn m1_the_payment_target_is_refused_unless_paid() {
    let (e, _dir) = setup_csv().await;
    import(
        &e,
        json!({"documents": [doc_json(T, "d1", "approved", "50.00")]}),
    )
    .await
    .unwrap();
    let err = e
        .request_sync(T, "d1", "csv", Target::Payment, false)
        .await
        .unwrap_err();
    assert_eq!(
        err.downcast_ref::<EngineError>(),
        Some(&EngineError::NotPaid("d1".into()))
    );
    assert!(
        err.to_string().contains("not paid or marked as paid"),
        "{err}"
    );
    let err = e
        .request_sync(T, "nope", "csv", Target::Bill, false)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no document nope"), "{err}");
    let err = e
        .request_sync("other", "d1", "csv", Target::Bill, false)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("no document d1 for tenant other"),
        "{err}"
    );
}

#[tokio::test]
async fn m2_m3_m4_bulk_resync_updates_what_exists_creates_what_does_not_and_never_replaces_a_booked_entry()
 {
    let e = engine();
    e.add_tenant(T).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Documents recorded before the connection exists: no automatic syncs.
    let docs: Vec<_> = (0..30)
        .map(|i| {
            doc_json(
                T,
                &format!("d{i:02}"),
                if i % 3 == 0 { "paid" } else { "approved" },
                "10.00",
            )
        })
        .collect();
    let pays: Vec<_> = (0..30)
        .step_by(3)
        .map(|i| payment_json(T, &format!("p{i:02}"), &format!("d{i:02}"), "10.00"))
        .collect();
    import(&e, json!({"documents": docs, "payments": pays}))
        .await
        .unwrap();
    // The ERP already has d00..d09 (an earlier integration made them), d05 booked.
    let seed = tempfile::tempdir().unwrap();
    let s = engine();
    s.add_tenant(T).await.unwrap();
    s.put_connection(connection("seed", T, "csv", Some(dir.path())))
        .await
        .unwrap();
    let early: Vec<_> = (0..10)
        .map(|i| doc_json(T, &format!("d{i:02}"), "approved", "9.00"))
        .collect();
    import(&s, json!({"documents": early})).await.unwrap();
    settle(&s).await;
    set_booked(&dir.path().join("bills/d05.csv"));
    let booked_before = csv_text(dir.path(), "bills/d05.csv");
    drop(seed);

    e.put_connection(connection("csv", T, "csv", Some(dir.path())))
        .await
        .unwrap();
    let (run, n) = e
        .request_resync("csv", Selection::All, false)
        .await
        .unwrap();
    assert_eq!(n, 30);
    let mut progress = Vec::new();
    let summary = e
        .finish_run(&run, |s| progress.push(s.clone()))
        .await
        .unwrap();
    // M4: a result per entry and a summary: 30 bills + 10 payments.
    assert_eq!(summary.total, 40, "{summary:?}");
    assert_eq!(summary.updated, 9, "{summary:?}"); // d00..d09 but the booked d05
    assert_eq!(summary.skipped_booked, 1, "{summary:?}");
    assert_eq!(summary.created, 20 + 10, "{summary:?}"); // d10..d29, and the payments
    assert_eq!(summary.failed, 0, "{summary:?}");
    assert!(!progress.is_empty());
    // M3 rule 2: the booked entry is neither updated nor replaced.
    assert_eq!(csv_text(dir.path(), "bills/d05.csv"), booked_before);
    assert_eq!(files(dir.path(), "bills").len(), 30);
    assert_eq!(files(dir.path(), "payments").len(), 10);
    let d05 = e.entry("csv", Target::Bill, "d05").await.unwrap().unwrap();
    assert!(d05.booked);
    // Rule 1: the existing entries now match the documents as they are.
    assert!(csv_text(dir.path(), "bills/d01.csv").contains(",10.00,"));
    let results = e.run_results(&run).await.unwrap();
    assert_eq!(results.len(), 40);
    let d05_result = results
        .iter()
        .find(|r| r.0 == "d05" && r.1 == "bill")
        .unwrap();
    assert_eq!(
        d05_result.3.as_deref(),
        Some(JobOutcome::SkippedBooked.as_str())
    );
}

#[tokio::test]
async fn b1_b2_b3_a_booked_entry_is_locked_until_the_operator_clears_it() {
    let (e, dir) = setup_csv().await;
    import(
        &e,
        json!({"documents": [doc_json(T, "d1", "approved", "10.00")]}),
    )
    .await
    .unwrap();
    settle(&e).await;
    set_booked(&dir.path().join("bills/d1.csv"));

    import(
        &e,
        json!({"documents": [doc_json(T, "d1", "approved", "11.00")]}),
    )
    .await
    .unwrap();
    settle(&e).await;
    let entry = e.entry("csv", Target::Bill, "d1").await.unwrap().unwrap();
    assert!(entry.booked, "B1: the booked answer records a lock");
    let log = e.log_of(T, "d1", None).await.unwrap();
    assert_eq!(log.last().unwrap().outcome, "skipped_booked");

    // B2: later changes send nothing at all, and say why.
    import(
        &e,
        json!({"documents": [doc_json(T, "d1", "approved", "12.00")]}),
    )
    .await
    .unwrap();
    settle(&e).await;
    let last = e.log_of(T, "d1", None).await.unwrap().pop().unwrap();
    assert_eq!(last.outcome, "skipped_booked");
    assert!(
        last.operations.iter().all(|o| o.operation == "skip"),
        "no ERP call: {:?}",
        last.operations
    );
    assert!(
        last.error
            .as_deref()
            .unwrap()
            .contains("not synced: the entry is booked in the ERP")
    );
    assert!(csv_text(dir.path(), "bills/d1.csv").contains(",10.00,"));

    // B3: the accountant reopens the period, the operator clears the lock.
    let text = csv_text(dir.path(), "bills/d1.csv").replace(",yes\r\n", ",\r\n");
    std::fs::write(dir.path().join("bills/d1.csv"), text).unwrap();
    assert!(e.unlock("csv", "d1", Target::Bill).await.is_ok());
    let run = e
        .request_sync(T, "d1", "csv", Target::Bill, false)
        .await
        .unwrap();
    assert_eq!(e.finish_run(&run, |_| {}).await.unwrap().updated, 1);
    assert!(csv_text(dir.path(), "bills/d1.csv").contains(",12.00,"));
}

#[tokio::test]
async fn l1_l2_the_log_records_each_attempt_and_attention_says_how_to_fix() {
    let (e, _dir) = setup_csv().await;
    let mut bad = doc_json(T, "d1", "approved", "10.00");
    bad["lines"][0]["category"] = "travel".into();
    import(
        &e,
        json!({"documents": [bad.clone(), doc_json(T, "d2", "approved", "5.00")]}),
    )
    .await
    .unwrap();
    settle(&e).await;

    let items = e.attention(Some("csv")).await.unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].document_id, "d1");
    assert!(
        items[0]
            .message
            .contains("category `travel` has no GL account"),
        "{}",
        items[0].message
    );
    assert!(
        items[0].hint.contains("mappings.categories"),
        "{}",
        items[0].hint
    );

    let ok = e.log_of(T, "d2", Some("csv")).await.unwrap();
    assert_eq!(ok.len(), 1);
    let row = &ok[0];
    assert_eq!(
        (
            row.trigger.as_str(),
            row.target.as_str(),
            row.outcome.as_str()
        ),
        ("approved", "bill", "created")
    );
    assert_eq!(row.entry_id.as_deref(), Some("d2"));
    let ops: Vec<_> = row
        .operations
        .iter()
        .map(|o| o.operation.as_str())
        .collect();
    assert_eq!(ops, ["lookup-bill", "create-bill"]);
    assert!(
        row.plugin_log
            .to_string()
            .contains("created /data/bills/d2.csv"),
        "{}",
        row.plugin_log
    );

    // Fixing the mapping and re-syncing clears the item (L2).
    let mut c = connection("csv", T, "csv", Some(_dir.path()));
    c.mappings.categories.insert("travel".into(), "6700".into());
    e.put_connection(c).await.unwrap();
    let (run, n) = e
        .request_resync("csv", Selection::Attention, false)
        .await
        .unwrap();
    assert_eq!(n, 1);
    assert_eq!(e.finish_run(&run, |_| {}).await.unwrap().created, 1);
    assert!(e.attention(Some("csv")).await.unwrap().is_empty());

    // An item can also be dismissed.
    bad["id"] = "d3".into();
    import(&e, json!({"documents": [{"tenant_id": T, "id": "d3", "number": "X", "vendor": {"id": "v", "name": "V"},
        "issue_date": "2026-11-02", "due_date": "2026-12-02", "currency": "USD",
        "lines": [{"description": "x", "amount": "1.00", "category": "unknown"}], "total": "1.00", "status": "approved"}]}))
    .await
    .unwrap();
    settle(&e).await;
    assert!(e.dismiss("csv", "d3", Target::Bill).await.is_ok());
    assert!(e.attention(Some("csv")).await.unwrap().is_empty());
}

#[tokio::test]
async fn r1_transient_failures_are_retried_with_backoff_then_need_a_person() {
    let e = engine();
    e.add_tenant(T).await.unwrap();
    let mut c = connection("s", T, SCRIPTED, None);
    c.settings
        .insert("create-bill".into(), "unavailable".into());
    e.put_connection(c.clone()).await.unwrap();
    import(
        &e,
        json!({"documents": [doc_json(T, "d1", "approved", "50.00")]}),
    )
    .await
    .unwrap();
    settle(&e).await;
    let log = e.log_of(T, "d1", None).await.unwrap();
    let outcomes: Vec<_> = log.iter().map(|r| r.outcome.as_str()).collect();
    assert_eq!(
        outcomes,
        ["retrying", "retrying", "failed"],
        "3 attempts in all"
    );
    assert!(log[0].error.as_deref().unwrap().contains("attempt 1 of 3"));
    let items = e.attention(Some("s")).await.unwrap();
    assert!(
        items[0].message.starts_with("gave up after 3 attempts"),
        "{}",
        items[0].message
    );

    // Retry-After is honoured: item22_retry_after_sets_the_stored_due_time_and_is_clamped
    // (tests/correctness.rs) checks the stored due time, not a sleep.
    let _ = c;
}

#[tokio::test]
async fn r3_validation_and_unauthorized_answers_are_not_retried() {
    for answer in ["validation", "unauthorized"] {
        let e = engine();
        e.add_tenant(T).await.unwrap();
        let mut c = connection("s", T, SCRIPTED, None);
        c.settings.insert("create-bill".into(), answer.into());
        e.put_connection(c).await.unwrap();
        import(
            &e,
            json!({"documents": [doc_json(T, "d1", "approved", "50.00")]}),
        )
        .await
        .unwrap();
        settle(&e).await;
        let log = e.log_of(T, "d1", None).await.unwrap();
        assert_eq!(log.len(), 1, "{answer}: one attempt only");
        assert_eq!(log[0].outcome, "failed");
        assert_eq!(e.attention(Some("s")).await.unwrap().len(), 1);
    }
}

#[tokio::test]
async fn d1_a_manual_and_an_automatic_sync_racing_make_one_entry() {
    let (e, dir) = setup_csv().await;
    for round in 0..5 {
        let id = format!("race{round}");
        import(
            &e,
            json!({"documents": [doc_json(T, &id, "approved", "10.00")]}),
        )
        .await
        .unwrap();
        let run = e
            .request_sync(T, &id, "csv", Target::Bill, true)
            .await
            .unwrap();
        let (_, s) = tokio::join!(settle(&e), e.finish_run(&run, |_| {}));
        s.unwrap();
    }
    settle(&e).await;
    assert_eq!(files(dir.path(), "bills").len(), 5);
    for round in 0..5 {
        let log = e.log_of(T, &format!("race{round}"), None).await.unwrap();
        let created = log.iter().filter(|r| r.outcome == "created").count();
        assert_eq!(created, 1, "{log:?}");
        assert!(log.iter().all(|r| r.outcome != "failed"), "{log:?}");
    }
}

#[tokio::test]
async fn v1_bad_input_names_the_field_and_stores_nothing() {
    let (e, dir) = setup_csv().await;
    let mut bad = doc_json(T, "d2", "approved", "10.00");
    bad["due_date"] = "2026-13-01".into();
    let err = ledgerbridge::intake::parse_batch(
        &json!({"documents": [doc_json(T, "d1", "approved", "1.00"), bad]}).to_string(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("documents[1].due_date"), "{err}");

    // A valid batch naming an unknown tenant is refused whole too.
    let err = import(&e, json!({"documents": [doc_json(T, "d1", "approved", "1.00"), doc_json("ghost", "d9", "approved", "1.00")]}))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no tenant ghost"), "{err}");
    // So is a payment for a document that does not exist.
    let err = import(&e, json!({"documents": [doc_json(T, "d1", "approved", "1.00")], "payments": [payment_json(T, "p", "nope", "1.00")]}))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("document_id"), "{err}");
    settle(&e).await;
    assert!(
        e.document(T, "d1").await.is_err(),
        "nothing was partly stored"
    );
    assert!(files(dir.path(), "bills").is_empty());

    // A connection with bad settings is refused naming them.
    let mut c = connection("bad", T, "csv", Some(Path::new("/nonexistent/dir")));
    c.allowed_hosts = vec!["https://api.xero.com/api.xro".into()];
    let err = e.put_connection(c).await.unwrap_err().to_string();
    assert!(
        err.contains("allowed_hosts[0]") && err.contains("directory"),
        "{err}"
    );
    assert!(e.connection("bad").await.is_err());
}

#[tokio::test]
async fn m3_an_entry_deleted_in_the_erp_is_created_again_and_a_stale_version_is_read_again() {
    let (e, dir) = setup_csv().await;
    import(&e, json!({"documents": [doc_json(T, "d1", "approved", "10.00"), doc_json(T, "d2", "approved", "10.00")]}))
        .await
        .unwrap();
    settle(&e).await;

    // Someone deleted d1's entry in the ERP: the update answers not-found,
    // and rule 3 creates it again from the document as it is now.
    std::fs::remove_file(dir.path().join("bills/d1.csv")).unwrap();
    import(
        &e,
        json!({"documents": [doc_json(T, "d1", "approved", "11.00")]}),
    )
    .await
    .unwrap();
    settle(&e).await;
    let last = e.log_of(T, "d1", None).await.unwrap().pop().unwrap();
    assert_eq!(last.outcome, "created", "{last:?}");
    let ops: Vec<_> = last
        .operations
        .iter()
        .map(|o| o.operation.as_str())
        .collect();
    assert_eq!(ops, ["update-bill", "lookup-bill", "create-bill"]);
    assert!(csv_text(dir.path(), "bills/d1.csv").contains(",11.00,"));

    // An accountant edited d2 meanwhile (its version moved on): the update is
    // refused as stale, the entry is read again and updated once more.
    let text = csv_text(dir.path(), "bills/d2.csv").replace(",1,", ",7,");
    std::fs::write(dir.path().join("bills/d2.csv"), text).unwrap();
    import(
        &e,
        json!({"documents": [doc_json(T, "d2", "approved", "12.00")]}),
    )
    .await
    .unwrap();
    settle(&e).await;
    let last = e.log_of(T, "d2", None).await.unwrap().pop().unwrap();
    assert_eq!(last.outcome, "updated", "{last:?}");
    let ops: Vec<_> = last
        .operations
        .iter()
        .map(|o| o.operation.as_str())
        .collect();
    assert_eq!(ops, ["update-bill", "lookup-bill", "update-bill"]);
    assert!(csv_text(dir.path(), "bills/d2.csv").contains(",12.00,"));
    assert_eq!(
        e.entry("csv", Target::Bill, "d2")
            .await
            .unwrap()
            .unwrap()
            .version
            .as_deref(),
        Some("8")
    );
}

/// D1, issue 7 item 12: a worker is known by a unique id and its heartbeat,
/// not by a process id (which means nothing across PID namespaces: a live
/// worker in another container looked dead). A worker that beats keeps its
/// jobs whatever its process; one that stops beating loses them once their
/// lease runs out, and that counts as a crash of the job.
#[tokio::test]
async fn d1_a_live_workers_jobs_are_never_taken_a_silent_ones_are() {
    let (e, store, _dir) = csv_engine_with_store(T).await;
    import(
        &e,
        json!({"documents": [doc_json(T, "d1", "approved", "10.00"), doc_json(T, "d2", "approved", "10.00")]}),
    )
    .await
    .unwrap();
    let now = ledgerbridge::store::now_ms;
    // A worker in another PID namespace: its label's pid means nothing here.
    store
        .register_worker("w-elsewhere", "other-container:1")
        .await
        .unwrap();
    let claimed = store
        .claim("w-elsewhere", one_group(1), now() + 60_000)
        .await
        .unwrap()
        .concat();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].lease_owner, "w-elsewhere");
    // Recovery leaves it alone, and it cannot be claimed twice.
    assert_eq!(
        store
            .recover(30_000, 3, ledgerbridge::sync::notices::quarantined)
            .await
            .unwrap(),
        (0, 0)
    );
    let other = store
        .claim("w-here", one_group(10), now() + 60_000)
        .await
        .unwrap()
        .concat();
    assert!(other.iter().all(|j| j.id != claimed[0].id));
    // A worker that stops beating: once the lease runs out its job is taken
    // back (and counted as a crash, since the worker is gone too).
    store.register_worker("w-silent", "gone:2").await.unwrap();
    import(
        &e,
        json!({"documents": [doc_json(T, "d3", "approved", "10.00")]}),
    )
    .await
    .unwrap();
    let lost = store
        .claim("w-silent", one_group(1), now() - 1)
        .await
        .unwrap()
        .concat();
    assert_eq!(lost.len(), 1);
    assert_eq!(
        store
            .recover(0, 3, ledgerbridge::sync::notices::quarantined)
            .await
            .unwrap(),
        (1, 0),
        "only the silent worker's job"
    );
    let again = store
        .claim("w-here", one_group(10), now() + 60_000)
        .await
        .unwrap()
        .concat();
    assert!(
        again
            .iter()
            .any(|j| j.id == lost[0].id && j.document_id == lost[0].document_id)
    );
}

/// P7, issue 8 item 1: a job that was running each time its worker died is
/// quarantined after the third, not retried into a crash loop.
#[tokio::test]
async fn p7_a_job_that_keeps_crashing_its_worker_is_quarantined() {
    let (e, store, _dir) = csv_engine_with_store(T).await;
    import(
        &e,
        json!({"documents": [doc_json(T, "d1", "approved", "10.00")]}),
    )
    .await
    .unwrap();
    let now = ledgerbridge::store::now_ms;
    for crash in 1..=3 {
        let worker = format!("w{crash}");
        store.register_worker(&worker, "doomed").await.unwrap();
        let claimed = store
            .claim(&worker, one_group(1), now() - 1)
            .await
            .unwrap()
            .concat();
        assert_eq!(
            claimed.len(),
            1,
            "crash {crash}: the job is claimable again"
        );
        // The worker dies: its lease has expired, and its last heartbeat
        // is older than the (zero) time a worker may stay silent.
        tokio::time::sleep(std::time::Duration::from_millis(3)).await;
        let (taken, quarantined) = store
            .recover(0, 3, ledgerbridge::sync::notices::quarantined)
            .await
            .unwrap();
        assert_eq!(taken, 1);
        assert_eq!(quarantined, usize::from(crash == 3), "crash {crash}");
    }
    assert!(
        store
            .claim("w4", one_group(1), now() + 1000)
            .await
            .unwrap()
            .concat()
            .is_empty()
    );
    let items = e.attention(Some("csv")).await.unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].kind, AttentionKind::Quarantined);
    assert!(
        items[0].message.contains("crashed the worker"),
        "{}",
        items[0].message
    );
    let log = e.log_of(T, "d1", None).await.unwrap();
    assert_eq!(log.last().unwrap().outcome, "failed");
}

#[tokio::test]
async fn d2_a_create_keeps_its_idempotency_key_across_retries() {
    let e = engine();
    e.add_tenant(T).await.unwrap();
    let mut c = connection("s", T, SCRIPTED, None);
    c.settings
        .insert("create-bill".into(), "unavailable".into());
    e.put_connection(c.clone()).await.unwrap();
    import(
        &e,
        json!({"documents": [doc_json(T, "d1", "approved", "10.00")]}),
    )
    .await
    .unwrap();
    settle(&e).await;
    // The intent was stored before the first call and survived three failures.
    let key = e
        .entry("s", Target::Bill, "d1")
        .await
        .unwrap()
        .unwrap()
        .idempotency_key
        .expect("intent recorded");
    assert_eq!(key.len(), 32);
    c.settings.remove("create-bill");
    e.put_connection(c).await.unwrap();
    let (run, _) = e
        .request_resync("s", Selection::Attention, false)
        .await
        .unwrap();
    assert_eq!(e.finish_run(&run, |_| {}).await.unwrap().created, 1);
    let entry = e.entry("s", Target::Bill, "d1").await.unwrap().unwrap();
    assert_eq!(
        entry.idempotency_key.as_deref(),
        Some(key.as_str()),
        "the retry reused the key"
    );
    assert_eq!(entry.entry_id.as_deref(), Some("S-d1"));
}

#[tokio::test]
async fn p1_a_connections_own_deadline_reaches_the_sandbox() {
    let e = engine();
    e.add_tenant(T).await.unwrap();
    let mut c = connection("h", T, HOSTILE, None);
    c.settings.insert("mode".into(), "loop".into());
    c.limits.deadline_ms = Some(300);
    e.put_connection(c).await.unwrap();
    import(
        &e,
        json!({"documents": [doc_json(T, "d1", "approved", "10.00")]}),
    )
    .await
    .unwrap();
    settle(&e).await;
    let log = e.log_of(T, "d1", None).await.unwrap();
    assert_eq!(
        log.len(),
        3,
        "a deadline is transient: retried, then given up: {log:?}"
    );
    assert!(
        log[0]
            .error
            .as_deref()
            .unwrap()
            .contains("took longer than 300ms"),
        "{:?}",
        log[0].error
    );
    let items = e.attention(Some("h")).await.unwrap();
    assert!(
        items[0].message.starts_with("gave up after 3 attempts"),
        "{}",
        items[0].message
    );
    // Issue 8 item 7: the plugin failed, not the ERP, and the hint says so.
    assert!(
        items[0].hint.contains("hostile connector plugin") && !items[0].hint.contains("ERP kept"),
        "{}",
        items[0].hint
    );
}

/// A plan to claim one group of up to `n` of connection `csv`'s jobs.
fn one_group(n: usize) -> Vec<ledgerbridge::store::ClaimPlan> {
    vec![ledgerbridge::store::ClaimPlan {
        connection: "csv".into(),
        groups: 1,
        size: n,
        most_groups: 8,
        most_bulk_groups: 7,
    }]
}

/// R2 with batches (issue 10): a connection's calls at once bound its
/// running groups, however many jobs each carries, counted in the store
/// over every worker; jobs a lingering group takes in join it and count
/// nothing more.
#[tokio::test]
async fn r2_calls_at_once_bound_running_groups_not_jobs() {
    let (e, store, _dir) = csv_engine_with_store(T).await;
    let docs: Vec<_> = (0..30)
        .map(|i| doc_json(T, &format!("d{i:02}"), "approved", "10.00"))
        .collect();
    import(&e, json!({ "documents": docs })).await.unwrap();
    let now = ledgerbridge::store::now_ms;
    store.register_worker("w", "here:1").await.unwrap();
    let plan = |groups, size| {
        vec![ledgerbridge::store::ClaimPlan {
            connection: "csv".into(),
            groups,
            size,
            most_groups: 2,
            most_bulk_groups: 1,
        }]
    };
    let first = store.claim("w", plan(1, 10), now() + 60_000).await.unwrap();
    assert_eq!(first.iter().map(Vec::len).collect::<Vec<_>>(), [10]);
    // Two at once: one more group, of one job, whatever was asked.
    let second = store.claim("w", plan(5, 1), now() + 60_000).await.unwrap();
    assert_eq!(second.iter().map(Vec::len).collect::<Vec<_>>(), [1]);
    let third = store.claim("w", plan(5, 1), now() + 60_000).await.unwrap();
    assert!(third.is_empty(), "a third group ran: {third:?}");
    // The first group takes in five more: still two groups.
    let more = store
        .claim_into("w", &first[0], 5, now() + 60_000)
        .await
        .unwrap();
    assert_eq!(more.len(), 5);
    let fourth = store.claim("w", plan(1, 1), now() + 60_000).await.unwrap();
    assert!(fourth.is_empty(), "joining made a group: {fourth:?}");
    // Another worker's claim counts the same groups.
    store.register_worker("w2", "there:2").await.unwrap();
    assert!(
        store
            .claim("w2", plan(1, 10), now() + 60_000)
            .await
            .unwrap()
            .is_empty()
    );
}

/// R5 with batches: a group's jobs share their priority, so a
/// funding-complete payment never waits in a group of bulk work; and bulk
/// work leaves one of the connection's calls at once to everything else.
#[tokio::test]
async fn r5_groups_share_a_priority_and_bulk_work_leaves_a_call_free() {
    let (e, store, _dir) = csv_engine_with_store(T).await;
    e.set_enabled("csv", false).await.unwrap();
    let docs: Vec<_> = (0..30)
        .map(|i| doc_json(T, &format!("d{i:02}"), "approved", "10.00"))
        .collect();
    import(&e, json!({ "documents": docs })).await.unwrap();
    e.set_enabled("csv", true).await.unwrap();
    e.request_resync("csv", ledgerbridge::sync::Selection::All, false)
        .await
        .unwrap();
    let now = ledgerbridge::store::now_ms;
    store.register_worker("w", "here:1").await.unwrap();
    let plan = |groups| {
        vec![ledgerbridge::store::ClaimPlan {
            connection: "csv".into(),
            groups,
            size: 10,
            most_groups: 3,
            most_bulk_groups: 2,
        }]
    };
    use ledgerbridge::store::Priority::{Bulk, FundingComplete};
    let shape = |groups: &Vec<Vec<ledgerbridge::store::Job>>| {
        groups
            .iter()
            .map(|g| (g.len(), g[0].priority))
            .collect::<Vec<_>>()
    };
    // Bulk work alone: two of the three calls at once.
    let bulk = store.claim("w", plan(8), now() + 60_000).await.unwrap();
    assert_eq!(shape(&bulk), [(10, Bulk), (10, Bulk)]);
    // A funding-complete payment comes due: the third is its own, and it
    // is in a group of its own even when bulk work is due beside it.
    let mut pay = payment_json(T, "p1", "d29", "10.00");
    pay["disbursement_status"] = "funding_complete".into();
    import(&e, json!({ "payments": [pay] })).await.unwrap();
    let groups = store.claim("w", plan(8), now() + 60_000).await.unwrap();
    assert_eq!(shape(&groups), [(1, FundingComplete)]);
    assert!(
        store
            .claim("w", plan(8), now() + 60_000)
            .await
            .unwrap()
            .is_empty(),
        "three groups run"
    );
}
