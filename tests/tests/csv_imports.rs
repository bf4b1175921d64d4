//! The CSV connector's import-ready files (issue 10 item 5): the entries a
//! batch wrote go, in one append, to the day's file in the column layout of
//! Xero's or QuickBooks Online's bill import, as the connection's
//! `import-layout` setting picks; an item that fails adds nothing; a repeat
//! of the same create adds nothing; changes go to a file of their own.

use ledgerbridge::runtime::bindings::ConnectorError;
use ledgerbridge::runtime::{CallError, Item, Operation, Reply};
use ledgerbridge_tests::*;

/// The day the connector writes under: today, UTC.
fn today() -> String {
    let days = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        / 86_400;
    let d = ledgerbridge_sdk::dates::Ymd::from_epoch_days(days as i64);
    format!("{:04}-{:02}-{:02}", d.year, d.month, d.day)
}

async fn csv_with(settings: &[(&str, &str)]) -> Csv {
    let mut csv = Csv::new().await;
    csv.sandbox.settings = settings
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    csv
}

fn creates(ids: &[&str]) -> Vec<Item> {
    ids.iter()
        .map(|id| Item {
            key: format!("key-{id}"),
            operation: Operation::CreateBill {
                bill: sample_bill(id),
            },
        })
        .collect()
}

async fn batch(csv: &Csv, items: Vec<Item>) -> Vec<Result<Reply, CallError>> {
    runtime()
        .call_batch(&csv.plugin, &csv.sandbox, items)
        .await
        .result
        .expect("one result per item")
}

/// The rows of an import file (header first), parsed as CSV.
fn rows(csv: &Csv, file: &str) -> Vec<Vec<String>> {
    let path = csv.path(&format!("imports/{file}"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(text.as_bytes())
        .records()
        .map(|r| r.unwrap().iter().map(str::to_string).collect())
        .collect()
}

#[tokio::test]
async fn x3_a_batch_of_creates_writes_one_xero_bill_import_of_its_lines() {
    let csv = csv_with(&[("import-layout", "xero")]).await;
    let results = batch(&csv, creates(&["d1", "d2", "d3"])).await;
    assert!(
        results.iter().all(|r| matches!(r, Ok(Reply::Entry(_)))),
        "{results:?}"
    );
    for d in ["d1", "d2", "d3"] {
        assert!(csv.path(&format!("bills/{d}.csv")).exists());
    }
    let rows = rows(&csv, &format!("bills-xero-{}.csv", today()));
    assert_eq!(
        rows[0],
        [
            "*ContactName",
            "EmailAddress",
            "POAddressLine1",
            "POAddressLine2",
            "POAddressLine3",
            "POAddressLine4",
            "POCity",
            "PORegion",
            "POPostalCode",
            "POCountry",
            "*InvoiceNumber",
            "*InvoiceDate",
            "*DueDate",
            "InventoryItemCode",
            "Description",
            "*Quantity",
            "*UnitAmount",
            "*AccountCode",
            "*TaxType",
            "TrackingName1",
            "TrackingOption1",
            "TrackingName2",
            "TrackingOption2",
            "Currency"
        ]
    );
    // Two lines a bill, three bills.
    assert_eq!(rows.len(), 1 + 6, "{rows:?}");
    let first = &rows[1];
    let col = |name: &str| rows[0].iter().position(|c| c == name).unwrap();
    assert_eq!(first[col("*ContactName")], "Acme, \"Paper\" Co");
    assert_eq!(first[col("*InvoiceNumber")], "INV-d1");
    assert_eq!(first[col("*InvoiceDate")], "2026-11-01");
    assert_eq!(first[col("*DueDate")], "2026-12-01");
    assert_eq!(first[col("Description")], "Paper");
    assert_eq!(first[col("*Quantity")], "1");
    assert_eq!(first[col("*UnitAmount")], "100.00");
    assert_eq!(first[col("*AccountCode")], "6100");
    assert_eq!(first[col("*TaxType")], "NONE");
    assert_eq!(first[col("TrackingName1")], "Department");
    assert_eq!(first[col("TrackingOption1")], "Ops");
    assert_eq!(first[col("Currency")], "USD");
    assert_eq!(rows[2][col("*UnitAmount")], "50.00");
    assert_eq!(rows[2][col("Description")], "Delivery, express");

    // A second call appends to the same file, without a second header.
    batch(&csv, creates(&["d4"])).await;
    let again = self::rows(&csv, &format!("bills-xero-{}.csv", today()));
    assert_eq!(again.len(), 1 + 8);
    assert_eq!(again.iter().filter(|r| r[0] == "*ContactName").count(), 1);
}

#[tokio::test]
async fn x3_quickbooks_layout_with_the_regions_date_format() {
    let csv = csv_with(&[
        ("import-layout", "quickbooks"),
        ("import-date-format", "DD/MM/YYYY"),
    ])
    .await;
    batch(&csv, creates(&["q1"])).await;
    let rows = rows(&csv, &format!("bills-quickbooks-{}.csv", today()));
    assert_eq!(
        rows[0],
        [
            "Bill No",
            "Vendor",
            "Bill Date",
            "Due Date",
            "Terms",
            "Location",
            "Memo",
            "Account",
            "Line Description",
            "Line Amount",
            "Line Tax Code",
            "Currency Code"
        ]
    );
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[1][0], "INV-q1");
    assert_eq!(rows[1][2], "01/11/2026");
    assert_eq!(rows[1][3], "01/12/2026");
    assert_eq!(rows[1][7], "6100");
    assert_eq!(rows[1][9], "100.00");
}

/// One item of the batch fails (its reference has an entry another create
/// made): it answers its own error, the others are created, and only they
/// are in the import file. A repeat of the same creates adds no rows.
#[tokio::test]
async fn x3_only_what_a_call_wrote_is_in_the_import_file() {
    let csv = csv_with(&[("import-layout", "xero")]).await;
    batch(&csv, creates(&["taken"])).await;
    let mut items = creates(&["a1", "taken", "a2"]);
    items[1].key = "another-key".into();
    let results = batch(&csv, items).await;
    assert!(matches!(results[0], Ok(Reply::Entry(_))));
    assert!(
        matches!(&results[1], Err(CallError::Connector(ConnectorError::Validation(v))) if v.field == "document-id"),
        "{results:?}"
    );
    assert!(matches!(results[2], Ok(Reply::Entry(_))));
    let file = format!("bills-xero-{}.csv", today());
    let numbers = |csv: &Csv| {
        rows(csv, &file)
            .iter()
            .skip(1)
            .map(|r| r[10].clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        numbers(&csv),
        [
            "INV-taken",
            "INV-taken",
            "INV-a1",
            "INV-a1",
            "INV-a2",
            "INV-a2"
        ]
    );
    // The same creates again (a retry after a lost answer): entries as
    // before, nothing appended.
    let again = batch(&csv, creates(&["a1", "a2"])).await;
    assert!(again.iter().all(|r| matches!(r, Ok(Reply::Entry(_)))));
    assert_eq!(numbers(&csv).len(), 6);
}

#[tokio::test]
async fn x3_changes_go_to_the_days_changed_file_and_none_writes_no_imports() {
    let csv = csv_with(&[("import-layout", "xero")]).await;
    let created = batch(&csv, creates(&["c1"])).await;
    let Ok(Reply::Entry(entry)) = &created[0] else {
        panic!("{created:?}")
    };
    let mut bill = sample_bill("c1");
    bill.lines.truncate(1);
    let updated = batch(
        &csv,
        vec![Item {
            key: "upd".into(),
            operation: Operation::UpdateBill {
                entry: entry.clone(),
                bill,
            },
        }],
    )
    .await;
    assert!(matches!(updated[0], Ok(Reply::Entry(_))), "{updated:?}");
    let changed = rows(&csv, &format!("changed-bills-xero-{}.csv", today()));
    assert_eq!(changed.len(), 2, "{changed:?}");

    let plain = csv_with(&[]).await;
    batch(&plain, creates(&["n1"])).await;
    assert!(plain.path("bills/n1.csv").exists());
    assert!(
        !plain.path("imports").exists(),
        "no import files by default"
    );
}

/// A layout the connector does not know is the connection's error: each
/// item answers it, naming the setting, and nothing is written.
#[tokio::test]
async fn v1_an_unknown_layout_is_a_validation_error_naming_the_setting() {
    let csv = csv_with(&[("import-layout", "sage")]).await;
    let results = batch(&csv, creates(&["s1", "s2"])).await;
    for r in &results {
        assert!(
            matches!(r, Err(CallError::Connector(ConnectorError::Validation(v))) if v.field == "settings.import-layout" && v.message.contains("sage")),
            "{results:?}"
        );
    }
    assert!(!csv.path("bills/s1.csv").exists());
}

/// Calls of one connection run at once, each in an instance of its own,
/// and append to the same day's file: their rows stay whole, the header
/// single, every entry's lines there once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x3_calls_at_once_append_whole_rows_and_one_header() {
    let csv = std::sync::Arc::new(csv_with(&[("import-layout", "xero")]).await);
    let calls: Vec<_> = (0..8)
        .map(|c| {
            let csv = csv.clone();
            tokio::spawn(async move {
                let ids: Vec<String> = (0..10).map(|i| format!("c{c}-{i}")).collect();
                let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
                let results = batch(&csv, creates(&ids)).await;
                assert!(
                    results.iter().all(|r| matches!(r, Ok(Reply::Entry(_)))),
                    "{results:?}"
                );
            })
        })
        .collect();
    for c in calls {
        c.await.unwrap();
    }
    let rows = rows(&csv, &format!("bills-xero-{}.csv", today()));
    assert_eq!(
        rows.iter().filter(|r| r[0] == "*ContactName").count(),
        1,
        "one header"
    );
    assert!(rows.iter().all(|r| r.len() == 24), "every row whole");
    assert_eq!(rows.len(), 1 + 8 * 10 * 2);
    let mut numbers: Vec<&str> = rows[1..].iter().map(|r| r[10].as_str()).collect();
    numbers.sort();
    numbers.dedup();
    assert_eq!(numbers.len(), 80, "every bill, once (two lines each)");
    assert!(
        !csv.path("imports/.append.lock").exists(),
        "the lock is released"
    );
}

/// The folder's append lock: while another call holds it, a call waits
/// (up to 5 s), then leaves its rows out and says so in its log; its
/// entries are written. A lock left by a call that stopped (older than
/// 30 s) is taken over.
#[tokio::test]
async fn x3_the_append_lock_is_waited_for_and_a_stale_one_taken_over() {
    let csv = csv_with(&[("import-layout", "xero")]).await;
    std::fs::create_dir_all(csv.path("imports")).unwrap();
    let lock = csv.path("imports/.append.lock");
    std::fs::write(&lock, b"").unwrap();
    let out = runtime()
        .call_batch(&csv.plugin, &csv.sandbox, creates(&["held"]))
        .await;
    assert!(
        matches!(out.result.as_deref(), Ok([Ok(Reply::Entry(_))])),
        "{:?}",
        out.result
    );
    assert!(csv.path("bills/held.csv").exists());
    assert!(
        !csv.path(&format!("imports/bills-xero-{}.csv", today()))
            .exists(),
        "nothing appended while another call held the lock"
    );
    assert!(
        out.logs
            .iter()
            .any(|l| l.message.contains("held by another call")),
        "{:?}",
        out.logs
    );
    // A lock a stopped call left a minute ago.
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(60);
    std::fs::File::options()
        .write(true)
        .open(&lock)
        .unwrap()
        .set_modified(old)
        .unwrap();
    batch(&csv, creates(&["after"])).await;
    let rows = rows(&csv, &format!("bills-xero-{}.csv", today()));
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert!(!lock.exists(), "released");
}
