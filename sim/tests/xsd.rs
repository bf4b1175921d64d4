//! The XSD checker against Intuit's own schemas: shapes QuickBooks documents
//! answer with pass, and every kind of drift is named (issue 12).

use ledgerbridge_sim::xsd::Xsd;
use serde_json::json;

fn xsd() -> Xsd {
    Xsd::quickbooks().expect("Intuit's schemas load")
}

#[test]
fn the_schemas_hold_the_entities_and_inheritance_the_connector_uses() {
    let x = xsd();
    for e in [
        "Bill",
        "BillPayment",
        "Vendor",
        "Preferences",
        "IntuitResponse",
        "IntuitBatchRequest",
    ] {
        assert!(x.has_element(e), "{e}");
    }
    // Bill → PurchaseByVendor → Transaction → IntuitEntity.
    assert!(x.has_child("Bill", "VendorRef"));
    assert!(x.has_child("Bill", "DocNumber"));
    assert!(x.has_child("Bill", "SyncToken"));
    assert!(x.has_child("Bill", "sparse"));
    assert!(x.has_child("BillPayment", "CheckPayment"));
    assert!(!x.has_child("Bill", "CheckNumber"));
    // Vendor's type is in IntuitNamesTypes.xsd, which the reference set
    // does not hold: vendor bodies pass unchecked, and this says so.
    assert!(x.has_element("Vendor") && !x.defines("Vendor"));
    assert!(x.defines("Bill") && x.defines("BillPayment") && x.defines("ReferenceType"));
}

#[test]
fn a_bill_as_quickbooks_documents_it_passes() {
    let bill = json!({
        "Id": "146", "SyncToken": "2", "domain": "QBO", "sparse": false,
        "MetaData": {"CreateTime": "2026-01-05T10:00:00-08:00", "LastUpdatedTime": "2026-01-05T10:00:00-08:00"},
        "VendorRef": {"value": "56", "name": "Acme Paper"},
        "APAccountRef": {"value": "33"},
        "TxnDate": "2026-01-05", "DueDate": "2026-02-04",
        "DocNumber": "INV-1", "PrivateNote": "ledgerbridge document 7",
        "CurrencyRef": {"value": "USD"},
        "TotalAmt": 120.5, "Balance": 120.5,
        "Line": [{
            "Id": "1", "LineNum": 1, "Amount": 120.5, "Description": "paper",
            "DetailType": "AccountBasedExpenseLineDetail",
            "AccountBasedExpenseLineDetail": {
                "AccountRef": {"value": "60"}, "ClassRef": {"value": "101"},
                "TaxCodeRef": {"value": "NON"}, "BillableStatus": "NotBillable"
            }
        }],
        "LinkedTxn": [{"TxnId": "9", "TxnType": "BillPaymentCheck"}]
    });
    assert_eq!(xsd().check("Bill", &bill), Vec::<String>::new());
}

#[test]
fn answers_batches_queries_and_faults_pass() {
    let x = xsd();
    let answer = json!({
        "BatchItemResponse": [
            {"bId": "0", "Bill": {"Id": "1", "SyncToken": "0", "VendorRef": {"value": "56"}}},
            {"bId": "1", "QueryResponse": {"Bill": [{"Id": "2"}], "startPosition": 1, "maxResults": 1}},
            {"bId": "2", "Fault": {"type": "ValidationFault", "Error": [
                {"Message": "Stale Object Error", "Detail": "…", "code": "5010", "element": ""}
            ]}}
        ],
        "time": "2026-01-05T10:00:00.000-08:00"
    });
    assert_eq!(x.check("IntuitResponse", &answer), Vec::<String>::new());
    let request = json!({"BatchItemRequest": [
        {"bId": "0", "operation": "create", "Bill": {"VendorRef": {"value": "56"}}},
        {"bId": "1", "Query": "select * from Bill where DocNumber = 'X'"}
    ]});
    assert_eq!(
        x.check("IntuitBatchRequest", &request),
        Vec::<String>::new()
    );
    let empty = json!({"QueryResponse": {}, "time": "2026-01-05T10:00:00Z"});
    assert_eq!(x.check("IntuitResponse", &empty), Vec::<String>::new());
    let single = json!({"Preferences": {"AccountingInfoPrefs": {"BookCloseDate": "2025-12-31"}}});
    assert_eq!(x.check("IntuitResponse", &single), Vec::<String>::new());
}

#[test]
fn a_check_bill_payment_passes() {
    let payment = json!({
        "VendorRef": {"value": "56"}, "PayType": "Check", "TotalAmt": 10,
        "TxnDate": "2026-01-06", "DocNumber": "1001", "PrivateNote": "ledgerbridge payment 3",
        "CheckPayment": {"BankAccountRef": {"value": "35"}, "PrintStatus": "PrintComplete"},
        "Line": [{"Amount": 10, "LinkedTxn": [{"TxnId": "146", "TxnType": "Bill"}]}]
    });
    assert_eq!(xsd().check("BillPayment", &payment), Vec::<String>::new());
}

#[test]
fn drift_is_named_with_its_path() {
    let x = xsd();
    let bill = json!({
        "VendorRef": {"value": "56", "label": "x"},
        "CheckNumber": "1",
        "TxnDate": "05/01/2026",
        "TotalAmt": "120.50",
        "DocNumber": null,
        "VendorRef2": 1,
        "Line": {"Amount": 1},
        "CurrencyRef": "USD",
        "GlobalTaxCalculation": "Sometimes",
        "sparse": "yes"
    });
    let v = x.check("Bill", &bill);
    let has = |needle: &str| v.iter().any(|l| l.contains(needle));
    assert!(
        has("Bill.VendorRef.label: ReferenceType has no element or attribute label"),
        "{v:#?}"
    );
    assert!(
        has("Bill.CheckNumber: Bill has no element or attribute CheckNumber"),
        "{v:#?}"
    );
    assert!(
        has("Bill.TxnDate: a string where date needs a date"),
        "{v:#?}"
    );
    assert!(
        has("Bill.TotalAmt: a string where decimal needs a number"),
        "{v:#?}"
    );
    assert!(has("Bill.DocNumber: null"), "{v:#?}");
    assert!(has("Bill.VendorRef2"), "{v:#?}");
    // QuickBooks sends a list even of one: a reader of `Line` as an array
    // would see none in a lone object.
    assert!(
        has("Bill.Line: an object where Bill takes a list of Line"),
        "{v:#?}"
    );
    assert!(
        has("Bill.CurrencyRef: a string where type ReferenceType needs an object"),
        "{v:#?}"
    );
    assert!(
        has("Bill.GlobalTaxCalculation: \"Sometimes\" is not one of"),
        "{v:#?}"
    );
    assert!(
        has("Bill.sparse: a string where boolean needs true or false"),
        "{v:#?}"
    );
    assert_eq!(v.len(), 10, "{v:#?}");
    // An array where the schema allows one.
    let v = x.check("Bill", &json!({"VendorRef": [{"value": "1"}]}));
    assert_eq!(
        v,
        vec!["Bill.VendorRef: an array where Bill allows one VendorRef"]
    );
    // Wrong key inside a fault, and an unknown root.
    let v = x.check(
        "IntuitResponse",
        &json!({"Fault": {"Error": [{"Code": "1"}]}}),
    );
    assert_eq!(
        v,
        vec!["IntuitResponse.Fault.Error[0].Code: Error has no element or attribute Code"]
    );
    assert_eq!(
        x.check("Bills", &json!({})),
        vec!["Bills: no such element in the schemas"]
    );
    // The lowercase shape some SDKs print is not QuickBooks' JSON.
    assert!(!x.check("IntuitResponse", &json!({"fault": {}})).is_empty());
}

#[test]
fn hostile_depth_is_bounded() {
    let mut v = json!({"value": "1"});
    for _ in 0..200 {
        v = json!({"Line": [v]});
    }
    let out = xsd().check("Bill", &json!({"Line": [{"Line": [v]}]}));
    assert!(!out.is_empty());
}

#[test]
fn drift_inside_a_batch_item_is_named() {
    let request = json!({"BatchItemRequest": [
        {"bId": "0", "operation": "create", "Bill": {"Remarks": "x", "VendorRef": {"value": "56"}}}
    ]});
    assert_eq!(
        xsd().check("IntuitBatchRequest", &request),
        vec![
            "IntuitBatchRequest.BatchItemRequest[0].Bill.Remarks: Bill has no element or attribute Remarks"
        ]
    );
}

/// One alternative only of a choice (a line's detail, a payment's kind, a
/// batch item's answer), and timestamps checked whole.
#[test]
fn alternatives_of_one_choice_and_timestamps_are_checked() {
    let x = xsd();
    let payment = json!({
        "VendorRef": {"value": "56"}, "PayType": "Check", "TotalAmt": 1.0,
        "CheckPayment": {"BankAccountRef": {"value": "35"}},
        "CreditCardPayment": {"CCAccountRef": {"value": "41"}},
        "Line": [{"Amount": 1.0, "LinkedTxn": [{"TxnId": "1", "TxnType": "Bill"}]}]
    });
    let v = x.check("BillPayment", &payment);
    assert!(
        v.iter().any(|l| l.contains("CheckPayment")
            && l.contains("CreditCardPayment")
            && l.contains("one only")),
        "{v:#?}"
    );
    let answer = json!({"BatchItemResponse": [{
        "bId": "0",
        "Bill": {"Id": "1"},
        "Fault": {"Error": [{"Message": "m", "code": "6000"}], "type": "ValidationFault"}
    }], "time": "2026-11-22T10:00:00.000-08:00"});
    let v = x.check("IntuitResponse", &answer);
    assert!(
        v.iter()
            .any(|l| l.contains("Bill and Fault") || l.contains("Fault and Bill")),
        "{v:#?}"
    );
    for bad in ["2026-11-22Tnonsense", "2026-11-22T25:00:00", "2026-11-22"] {
        let v = x.check(
            "IntuitResponse",
            &json!({"BatchItemResponse": [], "time": bad}),
        );
        assert!(
            v.iter()
                .any(|l| l.contains("time") && l.contains("dateTime")),
            "{bad}: {v:#?}"
        );
    }
    for good in [
        "2026-11-22T10:00:00.000-08:00",
        "2026-11-22T10:00:00Z",
        "2026-11-22T10:00:00",
    ] {
        let v = x.check(
            "IntuitResponse",
            &json!({"BatchItemResponse": [], "time": good}),
        );
        assert!(v.is_empty(), "{good}: {v:#?}");
    }
}
