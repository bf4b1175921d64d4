//! What a fresh-context attacker found after issues 7 and 8 were fixed,
//! each reproduced through the library API and held fixed. Numbers refer
//! to the attack report in the closing note.

use ledgerbridge::model::Target;
use ledgerbridge::sync::Selection;
use ledgerbridge_tests::*;
use serde_json::json;
use std::path::Path;

const T: &str = "acme";

fn check(id: &str, document: &str) -> serde_json::Value {
    let mut p = payment_json(T, id, document, "10.00");
    p["method"] = "check".into();
    p["disbursement_status"] = "funding_complete".into();
    p
}

/// Attack 1 and 11 (P8): a plugin file inside any connection's grant would
/// let that connection's plugin swap in code, so it is refused, in either
/// order; a plugin path is stored absolute.
#[tokio::test]
async fn a1_a11_no_plugin_file_lies_in_a_grant_and_paths_are_stored_absolute() {
    let e = engine();
    e.add_tenant("a").await.unwrap();
    e.add_tenant("b").await.unwrap();
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    e.put_connection(connection("ca", "a", "csv", Some(da.path())))
        .await
        .unwrap();
    let inside = da.path().join("plugin.wasm");
    std::fs::copy(SCRIPTED, &inside).unwrap();
    let err = e
        .put_connection(connection(
            "cb",
            "b",
            inside.to_str().unwrap(),
            Some(db.path()),
        ))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("plugin:") && err.contains("inside a directory granted"),
        "{err}"
    );
    // The other order: B's plugin first, then a grant around it.
    let outside = db.path().join("p.wasm");
    std::fs::copy(SCRIPTED, &outside).unwrap();
    let theirs = tempfile::tempdir().unwrap();
    e.put_connection(connection(
        "cb",
        "b",
        outside.to_str().unwrap(),
        Some(theirs.path()),
    ))
    .await
    .unwrap();
    let err = e
        .put_connection(connection("ca2", "a", "csv", Some(db.path())))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("holds another connection's plugin file"),
        "{err}"
    );
    let saved = e.connection("cb").await.unwrap();
    assert_eq!(Path::new(&saved.plugin), outside.canonicalize().unwrap());
}

/// Attack 2 (P8): a grant is checked again when its plugin runs: a
/// directory swapped for a link after the connection was added is refused.
#[tokio::test]
async fn a2_a_grant_swapped_for_a_link_is_refused_when_the_plugin_runs() {
    let (e, dir) = csv_engine(T).await;
    let granted = e.connection("csv").await.unwrap().directory.unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    std::fs::remove_dir(&granted).unwrap();
    std::os::unix::fs::symlink(elsewhere.path(), &granted).unwrap();
    import(
        &e,
        json!({"documents": [doc_json(T, "d1", "approved", "1.00")]}),
    )
    .await
    .unwrap();
    settle(&e).await;
    let items = e.attention(Some("csv")).await.unwrap();
    assert!(
        items[0].message.contains("a link was put in its place"),
        "{items:?}"
    );
    assert!(
        std::fs::read_dir(elsewhere.path())
            .unwrap()
            .next()
            .is_none()
    );
    drop(dir);
}

/// Attack 3 (C1, C3): a rejected number cannot be cleared and re-issued; a
/// connector naming another number as rejected is not believed; a check's
/// funding account cannot change; a rejected number is not exported again.
#[tokio::test]
async fn a3_check_numbers_cannot_be_issued_twice_by_any_path() {
    let (e, _) = scripted_engine(T, &[("create-payment", "duplicate-check-number")]).await;
    import(&e, json!({"documents": [doc_json(T, "d0", "approved", "10.00"), doc_json(T, "d1", "approved", "10.00")],
                      "payments": [check("p0", "d0"), check("p1", "d1")]}))
    .await
    .unwrap();
    settle(&e).await;
    // Both rejected (1 and 2): clearing "used" numbers never frees them.
    assert_eq!(
        e.clear_checks_marked_used(T, "operating", 1, 2)
            .await
            .unwrap(),
        0
    );
    let err = e
        .edit_export(T, "p0", Some(2), None)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("used in the ERP"), "{err}");
    // Exported again without an edit: refused, the number is the ERP's.
    let err = e.request_export("p0", "s").await.unwrap_err().to_string();
    assert!(err.starts_with("check_number:"), "{err}");
    // A check's funding account cannot change under its number.
    let mut moved = check("p0", "d0");
    moved["funding_account"] = "reserve".into();
    let err = import(&e, json!({"payments": [moved]}))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("funding_account"), "{err}");
}

/// Attack 3b: a duplicate-check-number answer naming a number the payment
/// was not sent with (an ACH payment, or another payment's number) is not
/// believed.
#[tokio::test]
async fn a3b_a_rejection_of_a_number_not_sent_is_not_believed() {
    let (e, mut c) = scripted_engine(T, &[]).await;
    import(&e, json!({"documents": [doc_json(T, "d0", "approved", "10.00"), doc_json(T, "d1", "approved", "10.00")],
                      "payments": [check("p0", "d0")]}))
    .await
    .unwrap();
    settle(&e).await;
    let n = e.payments_of(T, "d0").await.unwrap()[0]
        .check_number
        .unwrap();
    // The scripted ERP rejects an ACH payment "with check 1001" (its
    // default number when the payment has none).
    c.settings
        .insert("create-payment".into(), "duplicate-check-number".into());
    e.put_connection(c).await.unwrap();
    import(
        &e,
        json!({"payments": [payment_json(T, "a1", "d1", "10.00")]}),
    )
    .await
    .unwrap();
    settle(&e).await;
    assert_eq!(
        e.check_number_holder(T, "operating", n).await.unwrap(),
        Some(Some("p0".to_string())),
        "p0 keeps its number"
    );
    assert_eq!(
        e.check_number_holder(T, "operating", 1001).await.unwrap(),
        None
    );
}

/// Attack 4 (D2): a create that differs from the one an intent was
/// recorded for (an entry deleted in the ERP, created again) has a key of
/// its own.
#[tokio::test]
async fn a4_a_new_create_never_reuses_an_old_creates_key() {
    let (e, mut c) = scripted_engine(T, &[]).await;
    import(
        &e,
        json!({"documents": [doc_json(T, "d1", "approved", "10.00")]}),
    )
    .await
    .unwrap();
    settle(&e).await;
    // Deleted in the ERP: the update answers not-found, the entry is
    // created again.
    c.settings.insert("update-bill".into(), "not-found".into());
    e.put_connection(c).await.unwrap();
    import(
        &e,
        json!({"documents": [doc_json(T, "d1", "approved", "11.00")]}),
    )
    .await
    .unwrap();
    settle(&e).await;
    let log = e.log_of(T, "d1", None).await.unwrap();
    let creates = logged_keys(&log, "create-bill");
    assert_eq!(creates.len(), 2, "{log:?}");
    assert_ne!(creates[0], creates[1], "the re-create is a new request");
}

/// Attack 5 (V1): a document's total cannot drop below what was paid, nor
/// its currency change under its payments.
#[tokio::test]
async fn a5_a_documents_total_and_currency_must_fit_its_payments() {
    let (e, _dir) = csv_engine(T).await;
    import(
        &e,
        json!({"documents": [doc_json(T, "d1", "approved", "100.00")],
                      "payments": [payment_json(T, "p1", "d1", "100.00")]}),
    )
    .await
    .unwrap();
    let err = import(
        &e,
        json!({"documents": [doc_json(T, "d1", "approved", "10.00")]}),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(err.contains("documents[0].total"), "{err}");
    let mut yen = doc_json(T, "d1", "approved", "100");
    yen["currency"] = "JPY".into();
    let err = import(&e, json!({"documents": [yen]}))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("documents[0].currency"), "{err}");
    assert_eq!(e.document(T, "d1").await.unwrap().total, 10_000);
}

/// Attack 6 (A5, M4): a payment whose bill is skipped (a draft) is blocked
/// with the reason instead of waiting for ever, so a run ends.
#[tokio::test]
async fn a6_a_payment_of_a_skipped_bill_is_blocked_not_waiting_for_ever() {
    let (e, _dir) = csv_engine(T).await;
    import(
        &e,
        json!({"documents": [doc_json(T, "dr", "draft", "10.00")],
                      "payments": [payment_json(T, "p1", "dr", "10.00")]}),
    )
    .await
    .unwrap();
    settle(&e).await;
    let (run, _) = e
        .request_resync("csv", Selection::All, false)
        .await
        .unwrap();
    let s = e.finish_run(&run, |_| {}).await.unwrap();
    assert_eq!(
        (s.skipped, s.blocked, s.waiting, s.pending),
        (1, 1, 0, 0),
        "{s:?}"
    );
    let items = e.attention(Some("csv")).await.unwrap();
    assert!(
        items
            .iter()
            .any(|a| a.target == "payment" && a.message.contains("draft")),
        "{items:?}"
    );
}

/// Attack 8 (C3, L2): a funding account out of numbers sends the payment to
/// a person, once, instead of retrying for ever.
#[tokio::test]
async fn a8_no_check_number_left_needs_a_person_not_a_loop() {
    let (e, _dir) = csv_engine(T).await;
    e.set_next_check_number(T, "operating", 999_999_999_999_999)
        .await
        .unwrap();
    import(&e, json!({"documents": [doc_json(T, "d0", "approved", "10.00"), doc_json(T, "d1", "approved", "10.00")],
                      "payments": [check("p0", "d0"), check("p1", "d1")]}))
    .await
    .unwrap();
    settle(&e).await;
    let items = e.attention(Some("csv")).await.unwrap();
    assert!(
        items
            .iter()
            .any(|a| a.message.contains("no check number left")),
        "{items:?}"
    );
    let mut synced = 0;
    for p in ["p0", "p1"] {
        synced += usize::from(
            e.entry("csv", Target::Payment, p)
                .await
                .unwrap()
                .and_then(|x| x.entry_id)
                .is_some(),
        );
    }
    assert_eq!(
        synced, 1,
        "the last number went to one check; the other waits for a person"
    );
}

/// Attacks 12 and 15 (V1): payment ids may not take the host's own
/// `:marked-paid` form; invisible characters that reorder text are refused.
#[tokio::test]
async fn a12_a15_reserved_ids_and_invisible_characters_are_refused() {
    let (e, _dir) = csv_engine(T).await;
    let mut d = doc_json(T, "d1", "approved", "1.00");
    d["vendor"]["name"] = "Acme\u{202E}repaP".into();
    let err = import(&e, json!({"documents": [d]}))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("vendor.name"), "{err}");
    import(
        &e,
        json!({"documents": [doc_json(T, "x0", "paid", "1.00")]}),
    )
    .await
    .unwrap();
    let err = import(
        &e,
        json!({"payments": [payment_json(T, "x0:marked-paid", "x0", "1.00")]}),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(err.contains("payments[0].id"), "{err}");
}
