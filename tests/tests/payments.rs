//! Payments and check numbers: funding complete (A4), check-number
//! sequencing (C1-C3) and Failed to export with edit and Export (L3).

use ledgerbridge::model::Target;
use ledgerbridge_tests::*;
use serde_json::json;
use std::collections::BTreeSet;

const T: &str = "acme";

fn check(id: &str, document: &str, status: Option<&str>) -> serde_json::Value {
    let mut p = payment_json(T, id, document, "10.00");
    p["method"] = "check".into();
    if let Some(s) = status {
        p["disbursement_status"] = s.into();
    }
    p
}

#[tokio::test]
async fn a4_funding_complete_starts_the_payment_sync_at_once() {
    let (e, dir) = csv_engine(T).await;
    import(
        &e,
        json!({"documents": [doc_json(T, "d1", "approved", "10.00")]}),
    )
    .await
    .unwrap();
    settle(&e).await;

    // Initiated: nothing yet. Failed: nothing either.
    assert_eq!(
        import(
            &e,
            json!({"payments": [check("p1", "d1", Some("initiated"))]})
        )
        .await
        .unwrap(),
        0
    );
    assert_eq!(
        import(&e, json!({"payments": [check("p2", "d1", Some("failed"))]}))
            .await
            .unwrap(),
        0
    );
    settle(&e).await;
    assert!(!dir.path().join("payments/p1.csv").exists());

    // Funding complete: the sync is queued by the same transaction and runs.
    assert_eq!(
        import(
            &e,
            json!({"payments": [check("p1", "d1", Some("funding_complete"))]})
        )
        .await
        .unwrap(),
        1
    );
    settle(&e).await;
    assert!(dir.path().join("payments/p1.csv").exists());
    assert!(
        !dir.path().join("payments/p2.csv").exists(),
        "a failed disbursement is not synced"
    );
    let log = e.log_of(T, "d1", None).await.unwrap();
    let last = log.last().unwrap();
    assert_eq!(
        (
            last.trigger.as_str(),
            last.target.as_str(),
            last.outcome.as_str()
        ),
        ("funding_complete", "payment", "created")
    );
    // The check number was assigned at funding (C1), and re-importing the
    // payment keeps it.
    let text = std::fs::read_to_string(dir.path().join("payments/p1.csv")).unwrap();
    assert!(text.contains(",check,1,1,"), "{text}");
    import(
        &e,
        json!({"payments": [check("p1", "d1", Some("funding_complete"))]}),
    )
    .await
    .unwrap();
    assert_eq!(
        e.payments_of(T, "d1")
            .await
            .unwrap()
            .iter()
            .find(|p| p.id == "p1")
            .unwrap()
            .check_number,
        Some(1)
    );
}

#[tokio::test]
async fn c1_concurrent_assignments_are_unique_and_leave_no_gaps() {
    let (e, store) = engine_with_store();
    e.add_tenant(T).await.unwrap();
    e.set_next_check_number(T, "operating", 5000).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..300 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .assign_check_number(T, "operating", &format!("p{i}"), Vec::new())
                .await
                .unwrap()
        }));
    }
    let mut numbers = Vec::new();
    for t in tasks {
        numbers.push(t.await.unwrap());
    }
    let unique: BTreeSet<_> = numbers.iter().copied().collect();
    assert_eq!(unique.len(), 300, "every number unique");
    assert_eq!(
        unique.into_iter().collect::<Vec<_>>(),
        (5000..5300).collect::<Vec<_>>(),
        "none skipped"
    );
    // Asking again for a payment gives its number, not a new one.
    assert_eq!(
        store
            .assign_check_number(T, "operating", "p7", Vec::new())
            .await
            .unwrap(),
        numbers[7]
    );
    assert_eq!(
        e.funding_account(T, "operating")
            .await
            .unwrap()
            .next_check_number,
        5300
    );

    // Through the engine: 40 check payments funded at once, all synced with
    // distinct numbers.
    let dir = tempfile::tempdir().unwrap();
    e.put_connection(connection("csv", T, "csv", Some(dir.path())))
        .await
        .unwrap();
    let docs: Vec<_> = (0..40)
        .map(|i| doc_json(T, &format!("d{i}"), "approved", "10.00"))
        .collect();
    import(&e, json!({"documents": docs})).await.unwrap();
    settle(&e).await;
    let pays: Vec<_> = (0..40)
        .map(|i| check(&format!("q{i}"), &format!("d{i}"), Some("funding_complete")))
        .collect();
    import(&e, json!({"payments": pays})).await.unwrap();
    settle(&e).await;
    let markers: BTreeSet<String> = std::fs::read_dir(dir.path().join("checks/1010"))
        .unwrap()
        .map(|f| f.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(markers.len(), 40);
    assert!(e.failed_exports(None).await.unwrap().is_empty());
}

#[tokio::test]
async fn c2_the_next_number_can_be_raised_never_lowered_below_what_was_issued() {
    let (e, store) = engine_with_store();
    e.add_tenant(T).await.unwrap();
    e.set_next_check_number(T, "operating", 10_000)
        .await
        .unwrap();
    assert_eq!(
        store
            .assign_check_number(T, "operating", "p1", vec![])
            .await
            .unwrap(),
        10_000
    );
    for refused in [9_999, 10_000] {
        let err = e
            .set_next_check_number(T, "operating", refused)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("next_check_number:") && err.contains("already issued"),
            "{err}"
        );
    }
    e.set_next_check_number(T, "operating", 20_000)
        .await
        .unwrap();
    assert_eq!(
        store
            .assign_check_number(T, "operating", "p2", vec![])
            .await
            .unwrap(),
        20_000
    );
    let fa = e.funding_account(T, "operating").await.unwrap();
    assert_eq!(
        (fa.next_check_number, fa.last_issued, fa.issued),
        (20_001, Some(20_000), 2)
    );
}

#[tokio::test]
async fn c3_numbers_the_erp_already_uses_are_skipped() {
    let e = engine();
    e.add_tenant(T).await.unwrap();
    let mut c = connection("s", T, SCRIPTED, None);
    c.settings
        .insert("used-checks".into(), "100,101,103".into());
    e.put_connection(c).await.unwrap();
    e.set_next_check_number(T, "operating", 100).await.unwrap();
    import(&e, json!({"documents": [doc_json(T, "d1", "approved", "10.00"), doc_json(T, "d2", "approved", "10.00")]}))
        .await
        .unwrap();
    settle(&e).await;
    import(
        &e,
        json!({"payments": [check("p1", "d1", Some("funding_complete"))]}),
    )
    .await
    .unwrap();
    settle(&e).await;
    import(
        &e,
        json!({"payments": [check("p2", "d2", Some("funding_complete"))]}),
    )
    .await
    .unwrap();
    settle(&e).await;
    let n = |d: &'static str, p: &'static str| {
        let e = e.clone();
        async move {
            e.payments_of(T, d)
                .await
                .unwrap()
                .into_iter()
                .find(|x| x.id == p)
                .unwrap()
                .check_number
        }
    };
    assert_eq!(n("d1", "p1").await, Some(102));
    assert_eq!(n("d2", "p2").await, Some(104));
    let log = e.log_of(T, "d1", None).await.unwrap();
    assert!(
        log.last()
            .unwrap()
            .operations
            .iter()
            .any(|o| o.operation == "check-numbers-in-use")
    );
}

#[tokio::test]
async fn l3_a_duplicate_check_number_is_edited_and_exported_once() {
    let e = engine();
    e.add_tenant(T).await.unwrap();
    let mut c = connection("s", T, SCRIPTED, None);
    c.settings
        .insert("create-payment".into(), "duplicate-check-number".into());
    e.put_connection(c.clone()).await.unwrap();
    e.set_next_check_number(T, "operating", 1001).await.unwrap();
    import(&e, json!({"documents": [doc_json(T, "d1", "approved", "10.00"), doc_json(T, "d2", "approved", "10.00")]}))
        .await
        .unwrap();
    settle(&e).await;
    import(
        &e,
        json!({"payments": [check("p1", "d1", Some("funding_complete"))]}),
    )
    .await
    .unwrap();
    settle(&e).await;

    // Rejected: listed with its check number and a suggested free one.
    let failed = e.failed_exports(Some("s")).await.unwrap();
    assert_eq!(failed.len(), 1, "{failed:?}");
    let f = &failed[0];
    assert_eq!((f.payment_id.as_str(), f.check_number), ("p1", Some(1001)));
    assert!(
        f.error.contains("check number 1001 is already used"),
        "{}",
        f.error
    );
    assert_eq!(f.suggested_check_number, Some(1002));
    assert!(
        e.entry("s", Target::Payment, "p1")
            .await
            .unwrap()
            .and_then(|x| x.entry_id)
            .is_none()
    );

    // Another payment's number, or one the ERP uses, is refused as an edit.
    import(
        &e,
        json!({"payments": [check("p2", "d2", Some("funding_complete"))]}),
    )
    .await
    .unwrap();
    settle(&e).await;
    let p2 = e.payments_of(T, "d2").await.unwrap()[0]
        .check_number
        .unwrap();
    let err = e
        .edit_export(T, "p1", Some(p2), None)
        .await
        .unwrap_err()
        .to_string();
    // (p2 was rejected too, so its number is the ERP's now, not p2's.)
    assert!(
        err.starts_with("check_number:") && err.contains(&p2.to_string()),
        "{err}"
    );

    // Edited to a free number and a new bank id, then exported: one entry,
    // and the log shows both attempts.
    c.settings.remove("create-payment");
    e.put_connection(c).await.unwrap();
    let free = e.failed_exports(Some("s")).await.unwrap()[0]
        .suggested_check_number
        .unwrap();
    let edited = e
        .edit_export(T, "p1", Some(free), Some("1020".into()))
        .await
        .unwrap();
    assert_eq!(
        (edited.check_number, edited.bank_id.as_deref()),
        (Some(free), Some("1020"))
    );
    let run = e.request_export("p1", "s").await.unwrap();
    let s = e.finish_run(&run, |_| {}).await.unwrap();
    assert_eq!(s.created, 1, "{s:?}");
    assert!(
        e.failed_exports(Some("s"))
            .await
            .unwrap()
            .iter()
            .all(|f| f.payment_id != "p1")
    );
    let entry = e.entry("s", Target::Payment, "p1").await.unwrap().unwrap();
    assert_eq!(entry.entry_id.as_deref(), Some("SP-p1"));
    let payment_log: Vec<_> = e
        .log_of(T, "d1", None)
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.target == "payment")
        .map(|r| r.outcome)
        .collect();
    assert_eq!(payment_log, ["failed", "created"]);
    let err = e.request_export("p1", "s").await.unwrap_err().to_string();
    assert!(err.contains("not in Failed to export"), "{err}");
}

#[tokio::test]
async fn m2_a_payment_entry_the_erp_cannot_modify_is_reported_never_duplicated() {
    let e = engine();
    e.add_tenant(T).await.unwrap();
    e.put_connection(connection("x", T, CREATE_ONLY, None))
        .await
        .unwrap();
    import(&e, json!({"documents": [doc_json(T, "d1", "paid", "10.00")], "payments": [payment_json(T, "p1", "d1", "10.00")]}))
        .await
        .unwrap();
    settle(&e).await;
    assert_eq!(
        e.entry("x", Target::Payment, "p1")
            .await
            .unwrap()
            .unwrap()
            .entry_id
            .as_deref(),
        Some("P-p1")
    );

    // The payment changes; a bulk re-sync cannot modify its entry there, and
    // says so, and creates no second one.
    import(
        &e,
        json!({"payments": [{"tenant_id": T, "id": "p1", "document_id": "d1", "amount": "9.00",
        "date": "2026-11-21", "method": "ach", "funding_account": "operating"}]}),
    )
    .await
    .unwrap();
    settle(&e).await;
    let (run, _) = e
        .request_resync("x", ledgerbridge::sync::Selection::All, false)
        .await
        .unwrap();
    let s = e.finish_run(&run, |_| {}).await.unwrap();
    assert_eq!((s.created, s.failed), (0, 0), "{s:?}");
    let log = e.log_of(T, "d1", Some("x")).await.unwrap();
    let creates = log
        .iter()
        .flat_map(|r| &r.operations)
        .filter(|o| o.operation == "create-payment")
        .count();
    assert_eq!(creates, 1, "never duplicated: {log:?}");
    let last = log.iter().rev().find(|r| r.target == "payment").unwrap();
    assert!(
        last.operations
            .iter()
            .any(|o| o.result.contains("the ERP cannot modify this entry")),
        "{:?}",
        last.operations
    );
}
