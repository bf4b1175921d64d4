//! X3, B1: the CSV connector through the host: create, look up, update,
//! booked refused, stale versions, payments, check numbers, and the files on
//! disk in the documented layout.

use ledgerbridge::runtime::bindings::{ConnectorError, Entry, EntryState};
use ledgerbridge::runtime::{CallError, Operation, Reply};
use ledgerbridge_tests::*;
use std::path::Path;

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn set_booked(p: &Path) {
    let text = read(p).replace(",\r\n", ",yes\r\n");
    // The header row does not end with a comma, so only data rows change.
    std::fs::write(p, text).unwrap();
}

#[tokio::test]
async fn x3_bill_round_trip_create_lookup_update() {
    let csv = Csv::new().await;
    let bill = sample_bill("doc-1");

    assert_eq!(
        csv.call(
            "k0",
            Operation::LookupBill {
                bill: bill.clone(),
                known_id: None
            }
        )
        .await,
        Ok(Reply::Found(None))
    );
    let created = csv
        .entry("k1", Operation::CreateBill { bill: bill.clone() })
        .await;
    assert_eq!(created.id, "doc-1");
    assert_eq!(created.version.as_deref(), Some("1"));
    assert_eq!(created.state, EntryState::Open);
    assert_eq!(created.total, Some(15_000));

    // The file is the documented layout, one row per line, quoting intact.
    let text = read(&csv.path("bills/doc-1.csv"));
    let mut rows = text.split("\r\n");
    assert_eq!(
        rows.next().unwrap(),
        "Reference,InvoiceNumber,Supplier,SupplierId,Date,DueDate,Currency,Total,Line,Description,AccountCode,Amount,TaxCode,Tracking,Version,IdempotencyKey,Booked"
    );
    assert_eq!(
        rows.next().unwrap(),
        "doc-1,INV-doc-1,\"Acme, \"\"Paper\"\" Co\",v-1,2026-11-01,2026-12-01,USD,150.00,1,Paper,6100,100.00,NONE,Department=Ops,1,k1,"
    );
    assert_eq!(
        rows.next().unwrap(),
        "doc-1,INV-doc-1,\"Acme, \"\"Paper\"\" Co\",v-1,2026-11-01,2026-12-01,USD,150.00,2,\"Delivery, express\",6300,50.00,,,1,k1,"
    );

    // Lookup by reference and by the known id both find it.
    let by_ref = csv
        .entry(
            "k2",
            Operation::LookupBill {
                bill: bill.clone(),
                known_id: None,
            },
        )
        .await;
    assert_eq!(by_ref, created);
    let by_id = csv
        .entry(
            "k3",
            Operation::LookupBill {
                bill: sample_bill("other"),
                known_id: Some("doc-1".into()),
            },
        )
        .await;
    assert_eq!(by_id, created);

    // Update in place: new amounts, version 2, the same single file.
    let mut changed = bill.clone();
    changed.lines[0].amount = 12_000;
    changed.total = 17_000;
    let updated = csv
        .entry(
            "k4",
            Operation::UpdateBill {
                entry: created.clone(),
                bill: changed,
            },
        )
        .await;
    assert_eq!(updated.version.as_deref(), Some("2"));
    assert_eq!(updated.total, Some(17_000));
    assert!(read(&csv.path("bills/doc-1.csv")).contains(",170.00,1,Paper,6100,120.00,"));
    let names: Vec<_> = std::fs::read_dir(csv.path("bills"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["doc-1.csv"], "no temporary file is left behind");
}

#[tokio::test]
async fn b1_a_row_marked_booked_refuses_updates_with_booked() {
    let csv = Csv::new().await;
    let bill = sample_bill("doc-b");
    let created = csv
        .entry("k1", Operation::CreateBill { bill: bill.clone() })
        .await;
    set_booked(&csv.path("bills/doc-b.csv"));
    let before = read(&csv.path("bills/doc-b.csv"));

    let found = csv
        .entry(
            "k2",
            Operation::LookupBill {
                bill: bill.clone(),
                known_id: None,
            },
        )
        .await;
    assert_eq!(found.state, EntryState::Booked);
    let refused = csv
        .call(
            "k3",
            Operation::UpdateBill {
                entry: created,
                bill,
            },
        )
        .await;
    assert!(
        matches!(
            refused,
            Err(CallError::Connector(ConnectorError::Booked(_)))
        ),
        "{refused:?}"
    );
    assert_eq!(
        read(&csv.path("bills/doc-b.csv")),
        before,
        "a booked file is never rewritten"
    );
}

#[tokio::test]
async fn x3_stale_version_is_a_conflict_and_idempotent_create_replays() {
    let csv = Csv::new().await;
    let bill = sample_bill("doc-c");
    let v1 = csv
        .entry("create-1", Operation::CreateBill { bill: bill.clone() })
        .await;
    // The same operation again (a retry after a lost answer) answers as before.
    let again = csv
        .entry("create-1", Operation::CreateBill { bill: bill.clone() })
        .await;
    assert_eq!(again, v1);
    // A different create for the same reference is refused, not duplicated.
    let dup = csv
        .call("create-2", Operation::CreateBill { bill: bill.clone() })
        .await;
    assert!(
        matches!(&dup, Err(CallError::Connector(ConnectorError::Validation(v))) if v.field == "document-id"),
        "{dup:?}"
    );

    let _v2 = csv
        .entry(
            "u1",
            Operation::UpdateBill {
                entry: v1.clone(),
                bill: bill.clone(),
            },
        )
        .await;
    let stale = csv
        .call(
            "u2",
            Operation::UpdateBill {
                entry: v1,
                bill: bill.clone(),
            },
        )
        .await;
    assert!(
        matches!(
            stale,
            Err(CallError::Connector(ConnectorError::Conflict(_)))
        ),
        "{stale:?}"
    );

    let missing = Entry {
        id: "nope".into(),
        version: None,
        state: EntryState::Open,
        total: None,
    };
    let nf = csv
        .call(
            "u3",
            Operation::UpdateBill {
                entry: missing,
                bill,
            },
        )
        .await;
    assert!(
        matches!(nf, Err(CallError::Connector(ConnectorError::NotFound(_)))),
        "{nf:?}"
    );
}

#[tokio::test]
async fn x3_references_cannot_escape_the_directory() {
    let csv = Csv::new().await;
    let bill = sample_bill("../../escape/..\\x y");
    let e = csv
        .entry("k", Operation::CreateBill { bill: bill.clone() })
        .await;
    assert_eq!(e.id, "../../escape/..\\x y");
    assert!(
        csv.path("bills/%2E%2E%2F%2E%2E%2Fescape%2F%2E%2E%5Cx%20y.csv")
            .exists()
    );
    let found = csv
        .entry(
            "k2",
            Operation::LookupBill {
                bill,
                known_id: None,
            },
        )
        .await;
    assert_eq!(found.id, e.id);
}

#[tokio::test]
async fn x3_payments_round_trip_with_check_numbers() {
    let csv = Csv::new().await;
    let bill = sample_bill("doc-p");
    csv.entry("b", Operation::CreateBill { bill: bill.clone() })
        .await;
    let pay = sample_payment("pay-1", &bill, Some(1001));

    assert_eq!(
        csv.call(
            "l",
            Operation::LookupPayment {
                payment: pay.clone(),
                known_id: None
            }
        )
        .await,
        Ok(Reply::Found(None))
    );
    let created = csv
        .entry(
            "c",
            Operation::CreatePayment {
                payment: pay.clone(),
            },
        )
        .await;
    assert_eq!(created.id, "pay-1");
    assert_eq!(created.total, Some(15_000));
    let text = read(&csv.path("payments/pay-1.csv"));
    assert!(text.contains("pay-1,doc-p,doc-p,INV-doc-p,"), "{text}");
    assert!(text.contains(",150.00,USD,1010,check,1001,1,c,"), "{text}");
    assert_eq!(read(&csv.path("checks/1010/1001")), "pay-1");

    // Another payment may not take check 1001 on the same account.
    let other = sample_payment("pay-2", &bill, Some(1001));
    let dup = csv
        .call(
            "c2",
            Operation::CreatePayment {
                payment: other.clone(),
            },
        )
        .await;
    match dup {
        Err(CallError::Connector(ConnectorError::DuplicateCheckNumber(d))) => {
            assert_eq!(d.check_number, 1001);
            assert!(d.message.contains("pay-1"), "{}", d.message);
        }
        other => panic!("expected duplicate-check-number, got {other:?}"),
    }
    assert!(
        !csv.path("payments/pay-2.csv").exists(),
        "nothing is partly stored"
    );

    // Numbers in use, including one reserved by hand.
    std::fs::write(csv.path("checks/1010/1003"), "written by the accountant").unwrap();
    let used = csv
        .call(
            "n",
            Operation::CheckNumbersInUse {
                bank_account: "1010".into(),
                first: 1000,
                count: 10,
            },
        )
        .await;
    assert_eq!(used, Ok(Reply::CheckNumbers(vec![1001, 1003])));

    // Moving pay-1 to check 1002 frees 1001.
    let mut moved = pay.clone();
    moved.check_number = Some(1002);
    let updated = csv
        .entry(
            "u",
            Operation::UpdatePayment {
                entry: created,
                payment: moved,
            },
        )
        .await;
    assert_eq!(updated.version.as_deref(), Some("2"));
    assert!(!csv.path("checks/1010/1001").exists());
    assert_eq!(read(&csv.path("checks/1010/1002")), "pay-1");
    let created2 = csv
        .entry("c3", Operation::CreatePayment { payment: other })
        .await;
    assert_eq!(created2.id, "pay-2");

    // A payment for a bill with no entry is refused, naming the field.
    let orphan = sample_payment("pay-3", &sample_bill("never-synced"), None);
    let r = csv
        .call("c4", Operation::CreatePayment { payment: orphan })
        .await;
    assert!(
        matches!(&r, Err(CallError::Connector(ConnectorError::Validation(v))) if v.field == "bill-entry-id"),
        "{r:?}"
    );
}

#[tokio::test]
async fn x3_a_broken_file_is_reported_naming_the_file() {
    let csv = Csv::new().await;
    std::fs::create_dir_all(csv.path("bills")).unwrap();
    std::fs::write(csv.path("bills/doc-x.csv"), "Reference,Nope\r\ndoc-x,1\r\n").unwrap();
    let r = csv
        .call(
            "k",
            Operation::LookupBill {
                bill: sample_bill("doc-x"),
                known_id: None,
            },
        )
        .await;
    match r {
        Err(CallError::Connector(ConnectorError::Validation(v))) => {
            assert_eq!(v.field, "csv-file");
            assert!(
                v.message.contains("/data/bills/doc-x.csv") && v.message.contains("Version"),
                "{}",
                v.message
            );
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn x3_without_a_granted_directory_the_error_says_so() {
    let mut csv = Csv::new().await;
    csv.sandbox.directory = None;
    let r = csv
        .call(
            "k",
            Operation::CreateBill {
                bill: sample_bill("d"),
            },
        )
        .await;
    match r {
        Err(CallError::Connector(ConnectorError::Validation(v))) => {
            assert_eq!(v.field, "csv-directory");
            assert!(v.message.contains("grant a directory"), "{}", v.message);
        }
        other => panic!("{other:?}"),
    }
}
