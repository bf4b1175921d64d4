//! The strict OpenAPI check, against Xero's real description
//! (`../shared/reference/xero/xero_accounting.yaml`), catches what an
//! ordinary validator lets pass and passes what Xero really sends.

use ledgerbridge_sim::openapi::OpenApi;
use serde_json::{Value, json};
use std::sync::OnceLock;

fn spec() -> &'static OpenApi {
    static S: OnceLock<OpenApi> = OnceLock::new();
    S.get_or_init(|| OpenApi::xero().expect("Xero's OpenAPI file (../shared/reference)"))
}

const UUID: &str = "d4956132-ed94-4dd7-9eaa-aa22dfdf06f2";

fn bill() -> Value {
    json!({"Invoices": [{"Type": "ACCPAY", "Contact": {"Name": "Acme"}, "Date": "2026-01-15", "DueDate": "2026-02-15",
        "InvoiceNumber": "A-1", "Url": "https://ap.example/bills/1", "CurrencyCode": "USD", "Status": "AUTHORISED",
        "LineAmountTypes": "Inclusive",
        "LineItems": [{"Description": "Paper", "Quantity": 1, "UnitAmount": 10.5, "AccountCode": "453", "TaxType": "INPUT",
                       "Tracking": [{"Name": "Region", "Option": "North"}]},
                      {"Description": "Ink", "Quantity": 2.5, "UnitAmount": 4, "AccountCode": "453", "TaxType": "INPUT"}]}]})
}

fn put_invoices(body: &Value) -> Vec<String> {
    spec().check_request("PUT", "/Invoices", "summarizeErrors=false", Some(body))
}

fn assert_flags(v: &[String], needles: &[&str]) {
    assert!(
        v.iter().any(|m| needles.iter().all(|n| m.contains(n))),
        "no violation containing {needles:?} in {v:#?}"
    );
}

#[test]
fn the_check_is_send_and_sync() {
    fn shareable<T: Send + Sync>() {}
    shareable::<OpenApi>();
}

#[test]
fn a_real_bill_passes() {
    assert_eq!(put_invoices(&bill()), Vec::<String>::new());
    assert_eq!(
        spec().check_request(
            "PUT",
            "/Invoices",
            "summarizeErrors=false&unitdp=4",
            Some(&bill())
        ),
        Vec::<String>::new()
    );
    // The server base may be left on.
    assert_eq!(
        spec().check_request("PUT", "/api.xro/2.0/Invoices", "", Some(&bill())),
        Vec::<String>::new()
    );
}

#[test]
fn an_invented_property_is_flagged_with_its_path() {
    let mut b = bill();
    b["Invoices"][0]["LineItems"][1]["AcountCode"] = "453".into();
    b["Invoices"][0]["DocumentId"] = "d1".into();
    let v = put_invoices(&b);
    assert_eq!(v.len(), 2, "{v:#?}");
    assert_flags(
        &v,
        &[
            "PUT /Invoices request: $.Invoices[0].LineItems[1].AcountCode: property not declared by LineItem",
        ],
    );
    assert_flags(
        &v,
        &["$.Invoices[0].DocumentId: property not declared by Invoice"],
    );
    // Deep inside too: the tracking of a line.
    let mut b = bill();
    b["Invoices"][0]["LineItems"][0]["Tracking"][0]["OptionName"] = "North".into();
    assert_flags(
        &put_invoices(&b),
        &[
            "$.Invoices[0].LineItems[0].Tracking[0].OptionName",
            "not declared by LineItemTracking",
        ],
    );
}

#[test]
fn a_wrong_enum_is_flagged() {
    let mut b = bill();
    b["Invoices"][0]["Type"] = "BILL".into();
    let v = put_invoices(&b);
    assert_eq!(v.len(), 1, "{v:#?}");
    assert_flags(
        &v,
        &["$.Invoices[0].Type", "\"BILL\" is not one of", "\"ACCPAY\""],
    );
    let mut b = bill();
    b["Invoices"][0]["LineAmountTypes"] = "GST inclusive".into();
    assert_flags(
        &put_invoices(&b),
        &["$.Invoices[0].LineAmountTypes", "not one of"],
    );
}

#[test]
fn a_wrong_type_is_flagged() {
    let mut b = bill();
    b["Invoices"][0]["LineItems"][0]["Quantity"] = "one".into();
    b["Invoices"][0]["Contact"] = json!("Acme");
    b["Invoices"][0]["LineItems"][1]["Tracking"] = json!({"Name": "Region"});
    let v = put_invoices(&b);
    assert_eq!(v.len(), 3, "{v:#?}");
    assert_flags(
        &v,
        &["$.Invoices[0].LineItems[0].Quantity: expected a number, got a string"],
    );
    assert_flags(
        &v,
        &["$.Invoices[0].Contact: expected an object, got a string"],
    );
    assert_flags(
        &v,
        &["$.Invoices[0].LineItems[1].Tracking: expected an array, got an object"],
    );
    // Not a list of invoices at all.
    assert_flags(
        &put_invoices(&json!({"Invoices": {}})),
        &["$.Invoices: expected an array"],
    );
    assert_flags(&put_invoices(&json!([])), &["$: expected an object"]);
    assert_flags(
        &put_invoices(&json!({"Invoices": [{"Total": null}]})),
        &["$.Invoices[0].Total: null"],
    );
}

#[test]
fn dates_take_both_of_xeros_forms_and_nothing_else() {
    for ok in [
        "2026-01-15",
        "2026-01-15T00:00:00",
        "/Date(1539993600000+0000)/",
        "/Date(1539993600000)/",
    ] {
        let mut b = bill();
        b["Invoices"][0]["Date"] = ok.into();
        b["Invoices"][0]["DueDate"] = ok.into();
        assert_eq!(put_invoices(&b), Vec::<String>::new(), "{ok}");
    }
    for bad in [
        "15/01/2026",
        "2026-13-01",
        "Jan 15 2026",
        "/Date(soon)/",
        "",
    ] {
        let mut b = bill();
        b["Invoices"][0]["Date"] = bad.into();
        let v = put_invoices(&b);
        assert_eq!(v.len(), 1, "{bad}: {v:#?}");
        assert_flags(&v, &["$.Invoices[0].Date", "neither YYYY-MM-DD"]);
    }
}

#[test]
fn uuids_and_max_lengths_are_checked() {
    let mut b = bill();
    b["Invoices"][0]["Contact"] = json!({"ContactID": "acme"});
    assert_flags(
        &put_invoices(&b),
        &["$.Invoices[0].Contact.ContactID", "`acme` is not a UUID"],
    );
    b["Invoices"][0]["Contact"] = json!({"ContactID": UUID});
    assert_eq!(put_invoices(&b), Vec::<String>::new());
    // Invoice.Reference and LineItem.Description carry no maxLength; the
    // contact's name does (255).
    b["Invoices"][0]["Contact"] = json!({"Name": "x".repeat(256)});
    assert_flags(
        &put_invoices(&b),
        &["$.Invoices[0].Contact.Name: longer than 255 characters"],
    );
}

#[test]
fn query_parameters_must_be_declared_and_well_typed() {
    let v = spec().check_request("GET", "/Invoices", "InvoiceNumber=A-1", None);
    assert_flags(
        &v,
        &[
            "GET /Invoices request: query parameter `InvoiceNumber` is not declared by GET /Invoices",
        ],
    );
    assert_eq!(
        spec().check_request(
            "GET",
            "/Invoices",
            &format!("InvoiceNumbers=A-1,B-2&IDs={UUID},{UUID}&page=1&pageSize=100&Statuses=AUTHORISED&where=Type%3D%3D%22ACCPAY%22&summaryOnly=false"),
            None
        ),
        Vec::<String>::new()
    );
    let v = spec().check_request(
        "GET",
        "/Invoices",
        "page=first&summaryOnly=yes&IDs=abc",
        None,
    );
    assert_eq!(v.len(), 3, "{v:#?}");
    assert_flags(&v, &["`page`", "not an integer"]);
    assert_flags(&v, &["`summaryOnly`", "not true or false"]);
    assert_flags(&v, &["`IDs`", "`abc` is not a UUID"]);
    let v = spec().check_request("GET", "/Invoices", "Page=2", None);
    assert_flags(&v, &["`Page` is not declared", "spells it `page`"]);
    let v = spec().check_request("PUT", "/Payments", "unitdp=4", None);
    assert_flags(&v, &["`unitdp` is not declared by PUT /Payments"]);
}

#[test]
fn summarize_errors_is_taken_on_a_batch() {
    for q in [
        "summarizeErrors=false",
        "summarizeErrors=true",
        "?summarizeErrors=false",
    ] {
        assert_eq!(
            spec().check_request("PUT", "/Invoices", q, Some(&bill())),
            Vec::<String>::new(),
            "{q}"
        );
    }
    assert_flags(
        &spec().check_request("PUT", "/Invoices", "summarizeErrors=no", Some(&bill())),
        &["`summarizeErrors`", "not true or false"],
    );
}

#[test]
fn unknown_operations_and_bodies_are_flagged() {
    assert_flags(
        &spec().check_request("GET", "/Nothing", "", None),
        &["GET /Nothing request: no such path in the description"],
    );
    assert_flags(
        &spec().check_request("PATCH", "/Invoices", "", None),
        &["the description has no PATCH for /Invoices"],
    );
    // A literal segment wins over a template.
    assert_eq!(
        spec().check_request("GET", &format!("/Invoices/{UUID}/History"), "", None),
        Vec::<String>::new()
    );
    assert_eq!(
        spec().check_request("GET", &format!("/Invoices/{UUID}"), "unitdp=4", None),
        Vec::<String>::new()
    );
    assert_flags(
        &spec().check_request("GET", "/Invoices", "", Some(&json!({}))),
        &["takes no body"],
    );
    assert_flags(
        &spec().check_request("PUT", "/Invoices", "", None),
        &["requires a JSON body"],
    );
    assert_flags(
        &spec().check_response("GET", "/Nothing", 200, &json!({})),
        &["GET /Nothing answer 200: no such path"],
    );
}

#[test]
fn the_descriptions_own_example_of_get_invoices_passes() {
    let examples = spec().examples("GET", "/Invoices", 200);
    assert!(!examples.is_empty());
    for e in &examples {
        assert!(e["Invoices"].as_array().is_some_and(|a| !a.is_empty()));
        assert_eq!(
            spec().check_response("GET", "/Invoices", 200, e),
            Vec::<String>::new()
        );
    }
    // And edited by one invented property it does not.
    let mut e = examples[0].clone();
    e["Invoices"][0]["LineItems"] = json!([{"Description": "x", "Colour": "red"}]);
    assert_flags(
        &spec().check_response("GET", "/Invoices", 200, &e),
        &[
            "GET /Invoices answer 200: $.Invoices[0].LineItems[0].Colour: property not declared by LineItem",
        ],
    );
}

#[test]
fn the_descriptions_own_examples_pass_but_for_its_known_slips() {
    // Where Xero's file contradicts itself (its example against its schema).
    const SLIPS: &[&str] = &[
        "ReceiptNumber: expected a string, got a number",
        "BatchPayment.IsReconciled: expected a boolean, got a string",
        "BatchPayment.TotalAmount: expected a number, got a string",
        "$.Budgets: expected an array, got an object",
        "/Allocations/",
        "/History answer 400: $: expected an object, got a string",
        "Contact.Addresses[0]: null",
        "Contact.Phones[1]: null",
        "$.BankTransfers[0].Amount: expected a number, got a string",
    ];
    let text = std::fs::read_to_string(reference()).expect("the reference file");
    let doc: Value = serde_yaml_ng::from_str(&text).expect("YAML");
    let (mut checked, mut slips) = (0, 0);
    for (template, item) in doc["paths"].as_object().expect("paths") {
        let path: String = template
            .split('/')
            .map(|s| if s.starts_with('{') { UUID } else { s })
            .collect::<Vec<_>>()
            .join("/");
        for (method, op) in item.as_object().expect("path item") {
            let Some(responses) = op.get("responses").and_then(Value::as_object) else {
                continue;
            };
            let mut found = Vec::new();
            let body = op.get("requestBody").map(|b| match b["$ref"].as_str() {
                Some(r) => doc.pointer(&r[1..]).expect("$ref"),
                None => b,
            });
            if let Some(e) = body.and_then(|b| b.pointer("/content/application~1json/example")) {
                checked += 1;
                found.extend(spec().check_request(method, &path, "", Some(e)));
            }
            for status in responses.keys() {
                let status: u16 = status.parse().expect("a status");
                for e in spec().examples(method, &path, status) {
                    checked += 1;
                    found.extend(spec().check_response(method, &path, status, e));
                }
            }
            for v in found {
                assert!(SLIPS.iter().any(|s| v.contains(s)), "{v}");
                slips += 1;
            }
        }
    }
    assert!(checked > 250, "{checked} examples");
    assert!(slips < 40, "{slips} slips");
}

fn reference() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .map(|d| d.join("shared/reference/xero/xero_accounting.yaml"))
        .find(|p| p.is_file())
        .expect("../shared/reference/xero/xero_accounting.yaml")
}

#[test]
fn undeclared_properties_pass_only_where_xeros_own_examples_show_them() {
    let answer = json!({"Id": "900c500b-e83c-4ce2-902a-b8ba04751748", "Status": "OK", "ProviderName": "x", "DateTimeUTC": "/Date(1552326816230)/",
        "Invoices": [{"Type": "ACCPAY", "InvoiceID": UUID, "DateString": "2018-10-20T00:00:00", "DueDateString": "2018-11-20T00:00:00",
                      "Date": "/Date(1539993600000+0000)/", "Status": "AUTHORISED", "Total": 46.0}]});
    assert_eq!(
        spec().check_response("GET", "/Invoices", 200, &answer),
        Vec::<String>::new()
    );
    let mut bad = answer.clone();
    bad["Invoices"][0]["FooString"] = "x".into();
    // `DateString` is shown on invoices, not on their lines.
    bad["Invoices"][0]["LineItems"] = json!([{"DateString": "2018-10-20T00:00:00"}]);
    let v = spec().check_response("GET", "/Invoices", 200, &bad);
    assert_eq!(v.len(), 2, "{v:#?}");
    assert_flags(
        &v,
        &["$.Invoices[0].FooString: property not declared by Invoice"],
    );
    assert_flags(
        &v,
        &["$.Invoices[0].LineItems[0].DateString: property not declared by LineItem"],
    );
}

#[test]
fn payments_pass() {
    let pay = json!({"Payments": [{"Invoice": {"InvoiceID": UUID}, "Account": {"Code": "090"},
        "Date": "2026-01-20", "Amount": 100.5, "Reference": "x"}]});
    assert_eq!(
        spec().check_request("PUT", "/Payments", "summarizeErrors=false", Some(&pay)),
        Vec::<String>::new()
    );
    let mut bad = pay.clone();
    bad["Payments"][0]["Amount"] = "100.50".into();
    bad["Payments"][0]["BankAccount"] = json!({"Code": "090"});
    let v = spec().check_request("PUT", "/Payments", "", Some(&bad));
    assert_eq!(v.len(), 2, "{v:#?}");
    assert_flags(
        &v,
        &["$.Payments[0].Amount: expected a number, got a string"],
    );
    assert_flags(
        &v,
        &["$.Payments[0].BankAccount: property not declared by Payment"],
    );
}

#[test]
fn a_validation_exception_has_its_shape() {
    let error = json!({"ErrorNumber": 10, "Type": "ValidationException", "Message": "A validation exception occurred",
        "Elements": [{"ValidationErrors": [{"Message": "Account code '9' is not a valid code for this document."}]}]});
    assert_eq!(
        spec().check_response("PUT", "/Invoices", 400, &error),
        Vec::<String>::new()
    );
    // An element echoes the invoice sent, with Xero's types.
    let mut echoed = error.clone();
    echoed["Elements"][0]["Type"] = "ACCPAY".into();
    echoed["Elements"][0]["InvoiceNumber"] = "A-1".into();
    echoed["Elements"][0]["LineItems"] = bill()["Invoices"][0]["LineItems"].clone();
    assert_eq!(
        spec().check_response("PUT", "/Invoices", 400, &echoed),
        Vec::<String>::new()
    );
    echoed["Elements"][0]["Type"] = "BILL".into();
    echoed["Elements"][0]["Colour"] = "red".into();
    let v = spec().check_response("PUT", "/Invoices", 400, &echoed);
    assert_eq!(v.len(), 2, "{v:#?}");
    assert_flags(
        &v,
        &["PUT /Invoices answer 400: $.Elements[0].Type", "not one of"],
    );
    assert_flags(
        &v,
        &["$.Elements[0].Colour: property not declared by Element"],
    );
    // A status the description gives no schema is not checked.
    assert_eq!(
        spec().check_response("PUT", "/Invoices", 429, &json!("anything")),
        Vec::<String>::new()
    );
}

#[test]
fn no_input_panics() {
    let odd = [
        json!(null),
        json!(1),
        json!("x"),
        json!([[[[]]]]),
        json!({"Invoices": [null, 1, "x", [], {"LineItems": [null, {"Tracking": [[]]}]}]}),
    ];
    let paths = [
        "",
        "/",
        "//",
        "/Invoices/",
        "/Invoices/%zz",
        "/Invoices?x",
        "/Invoices/é/ü",
        "Invoices",
    ];
    let queries = ["", "&", "=", "%", "a=%", "page=%FF", "IDs=,,", "==&&=="];
    for p in paths {
        for q in queries {
            for b in &odd {
                let _ = spec().check_request("PUT", p, q, Some(b));
                let _ = spec().check_response("GET", p, 200, b);
                let _ = spec().check_response("PUT", p, 400, b);
            }
        }
    }
    let mut deep = json!(1);
    for _ in 0..200 {
        deep = json!({"Invoices": [deep]});
    }
    let _ = put_invoices(&deep);
    assert!(OpenApi::load(std::path::Path::new("/nonexistent.yaml")).is_err());
}

/// A batch of 50 invoices passes as a whole (performance is measured by
/// benchmarks, not asserted in tests).
#[test]
fn a_batch_of_fifty_invoices_passes() {
    let api = OpenApi::xero().expect("Xero's OpenAPI file");
    let mut b = bill();
    let one = b["Invoices"][0].clone();
    b["Invoices"] = Value::Array(vec![one; 50]);
    assert!(
        api.check_request("PUT", "/Invoices", "summarizeErrors=false", Some(&b))
            .is_empty()
    );
}
