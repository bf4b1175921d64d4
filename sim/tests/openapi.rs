//! The strict OpenAPI check catches what an ordinary validator lets pass.

use ledgerbridge_sim::openapi::OpenApi;
use serde_json::json;
use std::sync::OnceLock;

fn spec() -> &'static OpenApi {
    static S: OnceLock<OpenApi> = OnceLock::new();
    S.get_or_init(|| OpenApi::xero().unwrap())
}

fn bill() -> serde_json::Value {
    json!({"Invoices": [{"Type": "ACCPAY", "Contact": {"Name": "Acme"}, "Date": "2026-01-15", "DueDate": "2026-02-15",
        "InvoiceNumber": "A-1", "Url": "https://ap.example/bills/1", "CurrencyCode": "USD", "Status": "AUTHORISED",
        "LineAmountTypes": "Inclusive",
        "LineItems": [{"Description": "Paper", "Quantity": 1, "UnitAmount": 10.5, "AccountCode": "453", "TaxType": "INPUT",
                       "Tracking": [{"Name": "Region", "Option": "North"}]}]}]})
}

#[test]
fn a_real_bill_passes() {
    assert_eq!(
        spec().check_request(
            "PUT",
            "/Invoices",
            "summarizeErrors=false&unitdp=4",
            Some(&bill())
        ),
        Vec::<String>::new()
    );
}

#[test]
fn an_invented_property_is_flagged_with_its_path() {
    let mut b = bill();
    b["Invoices"][0]["LineItems"][0]["AcountCode"] = "453".into();
    b["Invoices"][0]["DocumentId"] = "d1".into();
    let v = spec().check_request("PUT", "/Invoices", "", Some(&b));
    assert!(
        v.iter()
            .any(|m| m.contains("$.Invoices[0].LineItems[0].AcountCode")
                && m.contains("not declared by LineItem")),
        "{v:?}"
    );
    assert!(
        v.iter().any(|m| m.contains("$.Invoices[0].DocumentId")),
        "{v:?}"
    );
}

#[test]
fn wrong_enums_types_and_dates_are_flagged() {
    let mut b = bill();
    b["Invoices"][0]["Type"] = "BILL".into();
    b["Invoices"][0]["LineItems"][0]["Quantity"] = "one".into();
    b["Invoices"][0]["Date"] = "15/01/2026".into();
    let v = spec().check_request("PUT", "/Invoices", "", Some(&b));
    assert_eq!(v.len(), 3, "{v:?}");
    let mut ok = bill();
    ok["Invoices"][0]["Date"] = "/Date(1539993600000+0000)/".into();
    assert!(
        spec()
            .check_request("PUT", "/Invoices", "", Some(&ok))
            .is_empty()
    );
}

#[test]
fn query_parameters_must_be_declared() {
    let v = spec().check_request("GET", "/Invoices", "InvoiceNumber=A-1", None);
    assert!(v.iter().any(|m| m.contains("`InvoiceNumber`")), "{v:?}");
    assert!(
        spec()
            .check_request(
                "GET",
                "/Invoices",
                "InvoiceNumbers=A-1,B-2&page=1&pageSize=100",
                None
            )
            .is_empty()
    );
    let v = spec().check_request("PUT", "/Payments", "unitdp=4", None);
    assert!(!v.is_empty(), "PUT /Payments declares no unitdp");
    assert!(!spec().check_request("GET", "/Nothing", "", None).is_empty());
}

#[test]
fn undeclared_properties_pass_only_where_xeros_own_examples_show_them() {
    let answer = json!({"Id": "900c500b-e83c-4ce2-902a-b8ba04751748", "Status": "OK", "ProviderName": "x", "DateTimeUTC": "/Date(1552326816230)/",
        "Invoices": [{"Type": "ACCPAY", "InvoiceID": "d4956132-ed94-4dd7-9eaa-aa22dfdf06f2", "DateString": "2018-10-20T00:00:00",
                      "Date": "/Date(1539993600000+0000)/", "Status": "AUTHORISED", "Total": 46.0}]});
    assert_eq!(
        spec().check_response("GET", "/Invoices", 200, &answer),
        Vec::<String>::new()
    );
    let mut bad = answer.clone();
    bad["Invoices"][0]["FooString"] = "x".into();
    let v = spec().check_response("GET", "/Invoices", 200, &bad);
    assert!(v.iter().any(|m| m.contains("FooString")), "{v:?}");
}

#[test]
fn payments_and_validation_errors_have_their_shapes() {
    let pay = json!({"Payments": [{"Invoice": {"InvoiceID": "d4956132-ed94-4dd7-9eaa-aa22dfdf06f2"}, "Account": {"Code": "090"},
        "Date": "2026-01-20", "Amount": 100.5, "Reference": "x"}]});
    assert!(
        spec()
            .check_request("PUT", "/Payments", "summarizeErrors=false", Some(&pay))
            .is_empty()
    );
    let error = json!({"ErrorNumber": 10, "Type": "ValidationException", "Message": "A validation exception occurred",
        "Elements": [{"ValidationErrors": [{"Message": "Account code '9' is not a valid code for this document."}]}]});
    assert_eq!(
        spec().check_response("PUT", "/Invoices", 400, &error),
        Vec::<String>::new()
    );
}
