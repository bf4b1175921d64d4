//! The Xero simulator behaves as ERP_FACTS.md says Xero does, over real
//! HTTP on loopback, each answer checked against Xero's OpenAPI file.

mod common;

use ledgerbridge_sim::openapi::OpenApi;
use ledgerbridge_sim::xero::{Config, Organisation, XeroSim};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;

/// One HTTP/1.1 request to the simulator (`Connection: close`).
async fn http(
    sim: &XeroSim,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> (u16, HashMap<String, String>, Value) {
    common::http(sim.addr(), method, path, headers, body).await
}

struct Org {
    sim: XeroSim,
    org: String,
    access: String,
}

const BASIC: &str = "Basic Y2xpZW50OnNlY3JldA=="; // client:secret

async fn refresh(sim: &XeroSim, token: &str) -> (u16, Value) {
    let body = format!("grant_type=refresh_token&refresh_token={token}");
    let (s, _, v) = http(
        sim,
        "POST",
        "/connect/token",
        &[
            ("authorization", BASIC),
            ("content-type", "application/x-www-form-urlencoded"),
        ],
        Some(&body),
    )
    .await;
    (s, v)
}

async fn org_with(config: Config) -> Org {
    let sim = XeroSim::start(Config {
        openapi: Some(Arc::new(OpenApi::xero().unwrap())),
        ..config
    })
    .await
    .unwrap();
    let org = sim.add_organisation(Organisation::demo());
    sim.add_client("client", "secret");
    let grant = sim.grant("client", &org);
    let (status, t) = refresh(&sim, &grant).await;
    assert_eq!(status, 200, "{t}");
    Org {
        access: t["access_token"].as_str().unwrap().to_string(),
        sim,
        org,
    }
}

impl Org {
    async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        key: Option<&str>,
    ) -> (u16, HashMap<String, String>, Value) {
        let bearer = format!("Bearer {}", self.access);
        let mut h = vec![
            ("authorization", bearer.as_str()),
            ("xero-tenant-id", self.org.as_str()),
            ("accept", "application/json"),
            ("content-type", "application/json"),
        ];
        if let Some(k) = key {
            h.push(("idempotency-key", k));
        }
        let body = body.map(|b| b.to_string());
        http(
            &self.sim,
            method,
            &format!("/api.xro/2.0{path}"),
            &h,
            body.as_deref(),
        )
        .await
    }

    fn faithful(&self) {
        let v = self.sim.violations();
        assert!(v.is_empty(), "{v:#?}");
    }
}

fn bill(number: &str, account: &str) -> Value {
    json!({"Type": "ACCPAY", "Contact": {"Name": "Acme Paper"}, "Date": "2026-11-02", "DueDate": "2026-12-02",
           "InvoiceNumber": number, "Status": "AUTHORISED", "LineAmountTypes": "NoTax", "CurrencyCode": "USD",
           "LineItems": [{"Description": "Paper", "Quantity": 1, "UnitAmount": 100.0, "AccountCode": account}]})
}

/// A body of one invoice, as the description declares it.
fn one(invoice: Value) -> Value {
    json!({ "Invoices": [invoice] })
}

#[tokio::test]
async fn refresh_tokens_rotate_and_a_spent_one_is_refused() {
    let sim = XeroSim::start(Config::default()).await.unwrap();
    let org = sim.add_organisation(Organisation::demo());
    sim.add_client("client", "secret");
    let grant = sim.grant("client", &org);
    let (s, first) = refresh(&sim, &grant).await;
    assert_eq!(s, 200);
    assert_ne!(first["refresh_token"], grant.as_str());
    let (s, spent) = refresh(&sim, &grant).await;
    assert_eq!((s, spent["error"].as_str()), (400, Some("invalid_grant")));
    let (s, _) = refresh(&sim, first["refresh_token"].as_str().unwrap()).await;
    assert_eq!(s, 200, "the rotated token works");
    assert_eq!(sim.stats().token_refreshes, 2);
}

#[tokio::test]
async fn an_expired_access_token_is_answered_401_and_every_answer_has_the_limit_headers() {
    let o = org_with(Config::default()).await;
    let (s, h, _) = o.call("GET", "/Organisation", None, None).await;
    assert_eq!(s, 200);
    for k in [
        "x-minlimit-remaining",
        "x-daylimit-remaining",
        "x-appminlimit-remaining",
    ] {
        assert!(h.contains_key(k), "{k} missing: {h:?}");
    }
    assert_eq!(h["x-minlimit-remaining"], "59");
    o.sim.expire_access_tokens();
    let (s, h, _) = o.call("GET", "/Organisation", None, None).await;
    assert_eq!(s, 401);
    assert!(
        h.contains_key("x-minlimit-remaining"),
        "on refusals too: {h:?}"
    );
    o.faithful();
}

#[tokio::test]
async fn summarize_errors_false_saves_the_good_elements_and_the_default_saves_none() {
    let o = org_with(Config::default()).await;
    let body = json!({"Invoices": [bill("A-1", "453"), bill("A-2", "9999")]});
    let (s, _, all_or_nothing) = o.call("PUT", "/Invoices", Some(body.clone()), None).await;
    assert_eq!(s, 400);
    assert_eq!(all_or_nothing["Type"], "ValidationException");
    assert!(o.sim.invoices(&o.org).is_empty(), "nothing saved");
    let (s, _, each) = o
        .call("PUT", "/Invoices?summarizeErrors=false", Some(body), None)
        .await;
    assert_eq!(s, 200);
    let els = each["Invoices"].as_array().unwrap();
    assert_eq!(els[0]["StatusAttributeString"], "OK");
    assert_eq!(els[1]["StatusAttributeString"], "ERROR");
    assert_eq!(
        els[1]["ValidationErrors"][0]["Message"],
        "Account code '9999' is not a valid code for this document."
    );
    assert_eq!(o.sim.invoices(&o.org).len(), 1);
    assert_eq!(els[0]["Total"], json!(100.0));
    assert!(els[0]["Date"].as_str().unwrap().starts_with("/Date("));
    assert_eq!(els[0]["DateString"], "2026-11-02T00:00:00");
    o.faithful();
}

#[tokio::test]
async fn an_update_keeps_lines_by_id_adds_new_ones_and_deletes_those_left_out() {
    let o = org_with(Config::default()).await;
    let mut b = bill("U-1", "453");
    b["LineItems"] = json!([
        {"Description": "a", "Quantity": 1, "UnitAmount": 10, "AccountCode": "453"},
        {"Description": "b", "Quantity": 1, "UnitAmount": 20, "AccountCode": "453"}
    ]);
    let (_, _, made) = o.call("PUT", "/Invoices", Some(one(b)), None).await;
    let inv = &made["Invoices"][0];
    let id = inv["InvoiceID"].as_str().unwrap();
    let keep = inv["LineItems"][0]["LineItemID"].as_str().unwrap();
    let update = json!({"InvoiceID": id, "LineItems": [
        {"LineItemID": keep, "Description": "a2", "Quantity": 1, "UnitAmount": 11, "AccountCode": "453"},
        {"Description": "c", "Quantity": 2, "UnitAmount": 5, "AccountCode": "453"}
    ]});
    let (s, _, got) = o
        .call(
            "POST",
            "/Invoices",
            Some(json!({"Invoices": [update]})),
            None,
        )
        .await;
    assert_eq!(s, 200, "{got}");
    let lines = got["Invoices"][0]["LineItems"].as_array().unwrap();
    assert_eq!(lines.len(), 2, "line b was left out and deleted");
    assert_eq!(lines[0]["LineItemID"], keep);
    assert_eq!(lines[0]["Description"], "a2");
    assert_eq!(got["Invoices"][0]["Total"], json!(21.0));
    o.faithful();
}

#[tokio::test]
async fn paid_bills_and_lock_dates_refuse_changes_and_payments_check_the_amount_due() {
    let o = org_with(Config::default()).await;
    let (_, _, made) = o
        .call("PUT", "/Invoices", Some(one(bill("P-1", "453"))), None)
        .await;
    let id = made["Invoices"][0]["InvoiceID"]
        .as_str()
        .unwrap()
        .to_string();
    let pay = |amount: f64| json!({"Payments": [{"Invoice": {"InvoiceID": id}, "Account": {"Code": "090"}, "Date": "2026-11-10", "Amount": amount, "Reference": "r"}]});
    let (_, _, over) = o
        .call(
            "PUT",
            "/Payments?summarizeErrors=false",
            Some(pay(150.0)),
            None,
        )
        .await;
    assert_eq!(
        over["Payments"][0]["ValidationErrors"][0]["Message"],
        "Payment amount exceeds the amount outstanding on this document"
    );
    let (s, _, part) = o.call("PUT", "/Payments", Some(pay(40.0)), None).await;
    assert_eq!(s, 200, "{part}");
    let change = json!({"InvoiceID": id, "DueDate": "2026-12-30"});
    let (s, _, refused) = o
        .call("POST", &format!("/Invoices/{id}"), Some(one(change)), None)
        .await;
    assert_eq!(s, 400);
    assert_eq!(
        refused["Elements"][0]["ValidationErrors"][0]["Message"],
        "Invoice not of valid status for modification"
    );
    let (s, _, _) = o.call("PUT", "/Payments", Some(pay(60.0)), None).await;
    assert_eq!(s, 200);
    let inv = &o.sim.invoices(&o.org)[0];
    assert_eq!(inv["Status"], "PAID");
    assert_eq!(inv["AmountDue"], json!(0.0));
    // A lock date refuses an approved bill dated on or before it.
    o.sim.set_lock_dates(&o.org, Some("2026-11-30"), None);
    let (s, _, locked) = o
        .call("PUT", "/Invoices", Some(one(bill("L-1", "453"))), None)
        .await;
    assert_eq!(s, 400);
    assert_eq!(
        locked["Elements"][0]["ValidationErrors"][0]["Message"],
        "The document date cannot be before the period lock date, currently set at 30-Nov-2026"
    );
    let mut draft = bill("L-2", "453");
    draft["Status"] = "DRAFT".into();
    let (s, _, _) = o.call("PUT", "/Invoices", Some(one(draft)), None).await;
    assert_eq!(s, 200, "a draft may still be saved in a locked period");
    o.faithful();
}

#[tokio::test]
async fn an_idempotency_key_replays_the_first_answer_and_refuses_another_body() {
    let o = org_with(Config::default()).await;
    let (s1, _, a1) = o
        .call(
            "PUT",
            "/Invoices",
            Some(one(bill("I-1", "453"))),
            Some("k-1"),
        )
        .await;
    let (s2, _, a2) = o
        .call(
            "PUT",
            "/Invoices",
            Some(one(bill("I-1", "453"))),
            Some("k-1"),
        )
        .await;
    assert_eq!((s1, s2), (200, 200));
    assert_eq!(
        a1["Invoices"][0]["InvoiceID"],
        a2["Invoices"][0]["InvoiceID"]
    );
    assert_eq!(o.sim.invoices(&o.org).len(), 1, "done once");
    assert_eq!(o.sim.stats().idempotent_replays, 1);
    let (s3, _, _) = o
        .call(
            "PUT",
            "/Invoices",
            Some(one(bill("I-2", "453"))),
            Some("k-1"),
        )
        .await;
    assert_eq!(s3, 400);
    let long = "k".repeat(129);
    let (s4, _, _) = o
        .call(
            "PUT",
            "/Invoices",
            Some(one(bill("I-3", "453"))),
            Some(&long),
        )
        .await;
    assert_eq!(s4, 400, "keys are at most 128 characters");
    o.faithful();
}

#[tokio::test]
async fn over_the_minute_limit_xero_answers_429_with_retry_after_and_the_problem() {
    let o = org_with(Config {
        minute_limit: 3,
        ..Config::default()
    })
    .await;
    for _ in 0..3 {
        assert_eq!(o.call("GET", "/Organisation", None, None).await.0, 200);
    }
    let (s, h, _) = o.call("GET", "/Organisation", None, None).await;
    assert_eq!(s, 429);
    assert_eq!(h["x-rate-limit-problem"], "minute");
    assert!(h["retry-after"].parse::<u64>().unwrap() >= 1);
    assert_eq!(o.sim.stats().over_minute, 1);
}

#[tokio::test]
async fn a_tenant_the_token_does_not_cover_is_forbidden() {
    let o = org_with(Config::default()).await;
    let other = o.sim.add_organisation(Organisation::demo());
    let bearer = format!("Bearer {}", o.access);
    let (s, _, _) = http(
        &o.sim,
        "GET",
        "/api.xro/2.0/Organisation",
        &[("authorization", &bearer), ("xero-tenant-id", &other)],
        None,
    )
    .await;
    assert_eq!(s, 403);
}

/// An invoice's id from a write answer.
fn id_of(answer: &Value) -> String {
    answer["Invoices"][0]["InvoiceID"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn lookups_filter_by_where_search_term_modified_since_and_number() {
    let o = org_with(Config::default()).await;
    let (_, _, a) = o
        .call("PUT", "/Invoices", Some(one(bill("W AND 1", "453"))), None)
        .await;
    let mut draft = bill("W-2", "453");
    draft["Status"] = "DRAFT".into();
    o.call("PUT", "/Invoices", Some(one(draft)), None).await;
    let q = |w: &str| {
        let mut s = String::new();
        for b in w.bytes() {
            match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' => s.push(b as char),
                _ => s.push_str(&format!("%{b:02X}")),
            }
        }
        s
    };
    let count = |v: &Value| v["Invoices"].as_array().map_or(0, Vec::len);
    let (s, _, got) = o
        .call(
            "GET",
            &format!(
                "/Invoices?where={}",
                q(r#"Type=="ACCPAY" AND InvoiceNumber=="W AND 1""#)
            ),
            None,
            None,
        )
        .await;
    assert_eq!((s, count(&got)), (200, 1), "{got}");
    assert_eq!(got["Invoices"][0]["InvoiceID"], id_of(&a));
    let (_, _, got) = o
        .call(
            "GET",
            &format!(
                "/Invoices?where={}",
                q(r#"Status=="DRAFT" OR Status=="AUTHORISED""#)
            ),
            None,
            None,
        )
        .await;
    assert_eq!(count(&got), 2);
    let (_, _, got) = o
        .call(
            "GET",
            &format!(
                "/Invoices?where={}",
                q("Date >= DateTime(2026, 11, 02) AND AmountDue > 99")
            ),
            None,
            None,
        )
        .await;
    assert_eq!(count(&got), 2);
    let (s, _, bad) = o
        .call(
            "GET",
            &format!("/Invoices?where={}", q(r#"Nonsense=="x""#)),
            None,
            None,
        )
        .await;
    assert_eq!(
        (s, bad["Type"].as_str()),
        (400, Some("ValidationException"))
    );
    let (_, _, got) = o.call("GET", "/Invoices?searchTerm=w-2", None, None).await;
    assert_eq!(count(&got), 1);
    let (_, _, got) = o
        .call("GET", "/Invoices?Statuses=DRAFT&page=1", None, None)
        .await;
    assert_eq!(count(&got), 1);
    assert_eq!(
        got["Invoices"][0]["LineItems"].as_array().map(Vec::len),
        Some(1),
        "paged reads carry line items"
    );
    // By number in place of the id.
    let (s, _, got) = o.call("GET", "/Invoices/W-2", None, None).await;
    assert_eq!((s, count(&got)), (200, 1));
    // If-Modified-Since: nothing changed after a moment in the future.
    let later = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let bearer = format!("Bearer {}", o.access);
    let (s, _, got) = http(
        &o.sim,
        "GET",
        "/api.xro/2.0/Invoices",
        &[
            ("authorization", &bearer),
            ("xero-tenant-id", &o.org),
            ("accept", "application/json"),
            ("if-modified-since", &later),
        ],
        None,
    )
    .await;
    assert_eq!((s, count(&got)), (200, 0));
    o.faithful();
}

#[tokio::test]
async fn totals_follow_line_amount_types_tax_rates_and_currency_digits() {
    let o = org_with(Config::default()).await;
    let mut b = bill("T-1", "453");
    b["LineAmountTypes"] = "Exclusive".into();
    b["LineItems"] = json!([{"Description": "x", "Quantity": 3, "UnitAmount": 33.33, "AccountCode": "453", "TaxType": "INPUT"}]);
    let (s, _, got) = o.call("PUT", "/Invoices", Some(one(b.clone())), None).await;
    assert_eq!(s, 200, "{got}");
    let i = &got["Invoices"][0];
    assert_eq!(
        (&i["SubTotal"], &i["TotalTax"], &i["Total"]),
        (&json!(99.99), &json!(10.0), &json!(109.99))
    );
    b["LineAmountTypes"] = "Inclusive".into();
    b["InvoiceNumber"] = "T-2".into();
    let (_, _, got) = o.call("PUT", "/Invoices", Some(one(b.clone())), None).await;
    let i = &got["Invoices"][0];
    assert_eq!(
        (&i["SubTotal"], &i["TotalTax"], &i["Total"]),
        (&json!(90.9), &json!(9.09), &json!(99.99))
    );
    b["LineAmountTypes"] = "NoTax".into();
    b["CurrencyCode"] = "JPY".into();
    b["InvoiceNumber"] = "T-3".into();
    b["LineItems"][0]["UnitAmount"] = json!(1000.4);
    let (_, _, got) = o.call("PUT", "/Invoices", Some(one(b.clone())), None).await;
    assert_eq!(
        got["Invoices"][0]["Total"],
        json!(3001),
        "yen have no decimals"
    );
    // Without unitdp=4 Xero keeps two decimals of a unit amount.
    b["CurrencyCode"] = "USD".into();
    b["InvoiceNumber"] = "T-4".into();
    b["LineItems"][0]["UnitAmount"] = json!(1.2345);
    let (_, _, got) = o.call("PUT", "/Invoices", Some(one(b.clone())), None).await;
    assert_eq!(
        got["Invoices"][0]["LineItems"][0]["UnitAmount"],
        json!(1.23)
    );
    let (_, _, got) = o
        .call("PUT", "/Invoices?unitdp=4", Some(one(b)), None)
        .await;
    assert_eq!(
        got["Invoices"][0]["LineItems"][0]["UnitAmount"],
        json!(1.2345)
    );
    o.faithful();
}

#[tokio::test]
async fn validation_uses_xeros_messages_and_names_resolve_to_one_contact() {
    let o = org_with(Config::default()).await;
    let mut b = bill("V-1", "453");
    b["LineItems"][0]["TaxType"] = "BOGUS".into();
    b["LineItems"][0]["Tracking"] = json!([{"Name": "Region", "Option": "East"}, {"Name": "Colour", "Option": "Red"}, {"Name": "Department", "Option": "Sales"}]);
    b["CurrencyCode"] = "GBP".into();
    let (s, _, got) = o
        .call("PUT", "/Invoices?summarizeErrors=false", Some(one(b)), None)
        .await;
    assert_eq!(s, 200);
    let messages: Vec<&str> = got["Invoices"][0]["ValidationErrors"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["Message"].as_str())
        .collect();
    for m in [
        "The TaxType code 'BOGUS' does not exist or cannot be used for this type of transaction.",
        "A line item can have at most two tracking categories",
        "The TrackingOption 'East' does not exist for TrackingCategory 'Region'.",
        "The TrackingCategory 'Colour' does not exist.",
        "The currency code 'GBP' is not enabled for this organisation",
    ] {
        assert!(messages.contains(&m), "{m} not in {messages:?}");
    }
    let mut b = bill("V-2", "453");
    b["Type"] = "BILL".into();
    b["Date"] = "02/11/2026".into();
    let (s, _, got) = o.call("PUT", "/Invoices", Some(one(b)), None).await;
    assert_eq!(s, 400);
    assert_eq!(got["Elements"][0]["HasErrors"], true);
    assert_eq!(
        got["Elements"][0]["InvoiceNumber"], "V-2",
        "the element is echoed"
    );
    let mut b = bill("V-3", "453");
    b["Contact"] = json!({"ContactID": "6d1f3c9e-0000-4000-8000-000000000001"});
    let (s, _, _) = o.call("PUT", "/Invoices", Some(one(b)), None).await;
    assert_eq!(s, 400, "a ContactID must exist");
    // By name: the same contact each time; duplicates of a bill number are accepted.
    let (_, _, a) = o
        .call("PUT", "/Invoices", Some(one(bill("D-1", "453"))), None)
        .await;
    let (s, _, b) = o
        .call("PUT", "/Invoices", Some(one(bill("D-1", "453"))), None)
        .await;
    assert_eq!(s, 200, "bill numbers are not unique");
    assert_eq!(
        a["Invoices"][0]["Contact"]["ContactID"],
        b["Invoices"][0]["Contact"]["ContactID"]
    );
    // The check flags only what this test sent wrong on purpose (and Xero's
    // echo of it).
    for v in o.sim.violations() {
        assert!(v.contains("02/11/2026") || v.contains("BILL"), "{v}");
    }
}

#[tokio::test]
async fn payments_need_an_approved_bill_and_a_bank_account_and_are_deleted_not_changed() {
    let o = org_with(Config::default()).await;
    let mut d = bill("PD-1", "453");
    d["Status"] = "DRAFT".into();
    let (_, _, draft) = o.call("PUT", "/Invoices", Some(one(d)), None).await;
    let (_, _, approved) = o
        .call("PUT", "/Invoices", Some(one(bill("PD-2", "453"))), None)
        .await;
    let pay = |id: &str, account: &str, amount: f64| json!({"Payments": [{"Invoice": {"InvoiceID": id}, "Account": {"Code": account}, "Date": "2026-11-10", "Amount": amount}]});
    let (s, _, got) = o
        .call(
            "PUT",
            "/Payments",
            Some(pay(&id_of(&draft), "090", 10.0)),
            None,
        )
        .await;
    assert_eq!(s, 400);
    assert_eq!(
        got["Elements"][0]["ValidationErrors"][0]["Message"],
        "Payments can only be made against Authorised documents"
    );
    let (s, _, _) = o
        .call(
            "PUT",
            "/Payments",
            Some(pay(&id_of(&approved), "453", 10.0)),
            None,
        )
        .await;
    assert_eq!(s, 400, "not from an expense account");
    let (s, _, paid) = o
        .call(
            "PUT",
            "/Payments",
            Some(pay(&id_of(&approved), "090", 100.0)),
            None,
        )
        .await;
    assert_eq!(s, 200, "{paid}");
    let pid = paid["Payments"][0]["PaymentID"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, _, inv) = o
        .call(
            "GET",
            &format!("/Invoices/{}", id_of(&approved)),
            None,
            None,
        )
        .await;
    let inv = &inv["Invoices"][0];
    assert_eq!(inv["Status"], "PAID");
    assert_eq!(inv["Payments"][0]["PaymentID"], pid.as_str());
    assert!(inv["FullyPaidOnDate"].as_str().is_some());
    let (s, _, _) = o
        .call(
            "POST",
            &format!("/Payments/{pid}"),
            Some(json!({"Payments": [{"Reference": "changed"}]})),
            None,
        )
        .await;
    assert_eq!(s, 400, "payments cannot be modified");
    let (s, _, _) = o
        .call(
            "POST",
            &format!("/Payments/{pid}"),
            Some(json!({"Payments": [{"Status": "DELETED"}]})),
            None,
        )
        .await;
    assert_eq!(s, 200);
    let inv = o
        .sim
        .invoices(&o.org)
        .into_iter()
        .find(|i| i["InvoiceID"] == id_of(&approved))
        .unwrap();
    assert_eq!(
        (inv["Status"].as_str(), &inv["AmountDue"]),
        (Some("AUTHORISED"), &json!(100.0))
    );
    let (_, _, list) = o.call("GET", "/Payments", None, None).await;
    assert_eq!(list["Payments"][0]["Status"], "DELETED");
    // A person pays and deletes in Xero.
    o.sim
        .pay(&o.org, &id_of(&approved), "30.00", "2026-11-11")
        .unwrap();
    assert!(
        o.sim.delete_invoice(&o.org, &id_of(&approved)).is_err(),
        "part-paid: cannot void"
    );
    o.sim.delete_invoice(&o.org, &id_of(&draft)).unwrap();
    let gone = o
        .sim
        .invoices(&o.org)
        .into_iter()
        .find(|i| i["InvoiceID"] == id_of(&draft))
        .unwrap();
    assert_eq!(gone["Status"], "DELETED");
    o.faithful();
}

#[tokio::test]
async fn bad_input_gets_xeros_error_shapes_and_never_breaks_the_simulator() {
    let o = org_with(Config::default()).await;
    let bearer = format!("Bearer {}", o.access);
    let h = [
        ("authorization", bearer.as_str()),
        ("xero-tenant-id", o.org.as_str()),
        ("content-type", "application/json"),
    ];
    let (s, _, v) = http(
        &o.sim,
        "PUT",
        "/api.xro/2.0/Invoices",
        &h,
        Some("{not json"),
    )
    .await;
    assert_eq!((s, v["ErrorNumber"].as_i64()), (400, Some(10)));
    let (s, _, _) = http(&o.sim, "GET", "/api.xro/2.0/Nowhere", &h, None).await;
    assert_eq!(s, 404);
    let (s, _, _) = http(&o.sim, "GET", "/elsewhere", &h, None).await;
    assert_eq!(s, 404);
    let (s, _, v) = http(
        &o.sim,
        "GET",
        "/api.xro/2.0/Invoices?where=%22%22%22",
        &h,
        None,
    )
    .await;
    assert_eq!(s, 400, "{v}");
    for odd in [
        json!({"Invoices": [{"Type": "ACCPAY", "Date": "/Date()/", "DueDate": "/Date(-)/", "Contact": {"Name": "x"}}]}),
        json!({"Invoices": "x"}),
        json!([1, 2]),
        json!({"Invoices": [null, 3]}),
    ] {
        let (s, _, _) = http(
            &o.sim,
            "POST",
            "/api.xro/2.0/Invoices",
            &h,
            Some(&odd.to_string()),
        )
        .await;
        assert_eq!(s, 400, "{odd}");
    }
    let (s, _, v) = http(
        &o.sim,
        "GET",
        "/api.xro/2.0/Organisation",
        &[("xero-tenant-id", o.org.as_str())],
        None,
    )
    .await;
    assert_eq!((s, v["Title"].as_str()), (401, Some("Unauthorized")));
    let (s, _, v) = http(
        &o.sim,
        "GET",
        "/api.xro/2.0/Organisation",
        &[("authorization", bearer.as_str())],
        None,
    )
    .await;
    assert_eq!(
        (s, v["Detail"].as_str()),
        (403, Some("AuthenticationUnsuccessful"))
    );
    assert_eq!(
        o.call("GET", "/Organisation", None, None).await.0,
        200,
        "still serving"
    );
}

#[tokio::test]
async fn revoked_and_expired_grants_are_refused_and_a_bad_client_is_unauthorised() {
    let sim = XeroSim::start(Config::default()).await.unwrap();
    let org = sim.add_organisation(Organisation::demo());
    sim.add_client("client", "secret");
    let old = sim.grant("client", &org);
    sim.set_clock_offset(std::time::Duration::from_secs(61 * 24 * 3600));
    assert_eq!(refresh(&sim, &old).await.0, 400, "60 days unused: expired");
    let grant = sim.grant("client", &org);
    let (s, t) = refresh(&sim, &grant).await;
    assert_eq!(s, 200);
    assert_eq!(t["expires_in"], 1800);
    let (s, _, v) = http(
        &sim,
        "POST",
        "/connect/token",
        &[("authorization", "Basic Y2xpZW50Ondyb25n")],
        Some("grant_type=refresh_token&refresh_token=x"),
    )
    .await;
    assert_eq!((s, v["error"].as_str()), (401, Some("invalid_client")));
    sim.revoke_grants();
    let (s, v) = refresh(&sim, t["refresh_token"].as_str().unwrap()).await;
    assert_eq!((s, v["error"].as_str()), (400, Some("invalid_grant")));
}

#[tokio::test]
async fn faults_and_the_concurrency_limit_refuse_without_doing_the_work() {
    use ledgerbridge_sim::xero::Faults;
    use std::time::Duration;
    let o = org_with(Config::default()).await;
    // Six at once against five allowed: one is refused as concurrent. Each
    // call is held long enough that all six overlap on a busy machine.
    o.sim.set_faults(Faults {
        latency: Duration::from_millis(2500),
        ..Faults::default()
    });
    let calls: Vec<_> = (0..6)
        .map(|_| o.call("GET", "/Organisation", None, None))
        .collect();
    let got = futures::future::join_all(calls).await;
    let refused: Vec<_> = got.iter().filter(|(s, _, _)| *s == 429).collect();
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0].1["x-rate-limit-problem"], "concurrent");
    assert_eq!(o.sim.stats().over_concurrent, 1);
    assert_eq!(o.sim.stats().most_at_once, 5);
    o.sim.set_faults(Faults {
        burst_429: 2,
        ..Faults::default()
    });
    for _ in 0..2 {
        let (s, h, _) = o
            .call("PUT", "/Invoices", Some(one(bill("F-1", "453"))), None)
            .await;
        assert_eq!((s, h["x-rate-limit-problem"].as_str()), (429, "minute"));
    }
    o.sim.set_faults(Faults {
        error_rate: 1.0,
        seed: 7,
        ..Faults::default()
    });
    let (s, _, _) = o
        .call("PUT", "/Invoices", Some(one(bill("F-2", "453"))), None)
        .await;
    assert!(s == 500 || s == 503);
    assert!(
        o.sim.invoices(&o.org).is_empty(),
        "injected refusals do nothing"
    );
    assert_eq!(o.sim.stats().injected, 3);
    assert_eq!(
        o.sim.stats().over_minute,
        0,
        "injected 429s are not the simulator's own"
    );
    // A reset: the work is done, the answer is lost.
    o.sim.set_faults(Faults {
        reset_rate: 1.0,
        ..Faults::default()
    });
    let (s, _, _) = o
        .call("PUT", "/Invoices", Some(one(bill("F-3", "453"))), None)
        .await;
    assert_ne!(s, 200, "no answer arrives");
    assert_eq!(o.sim.invoices(&o.org).len(), 1);
}

#[tokio::test]
async fn one_idempotency_key_sent_twice_at_once_does_the_work_once() {
    use ledgerbridge_sim::xero::Faults;
    let o = org_with(Config::default()).await;
    o.sim.set_faults(Faults {
        latency: std::time::Duration::from_millis(100),
        ..Faults::default()
    });
    let a = o.call(
        "PUT",
        "/Invoices",
        Some(one(bill("R-1", "453"))),
        Some("race"),
    );
    let b = o.call(
        "PUT",
        "/Invoices",
        Some(one(bill("R-1", "453"))),
        Some("race"),
    );
    let (a, b) = tokio::join!(a, b);
    assert_eq!((a.0, b.0), (200, 200));
    assert_eq!(
        a.2["Invoices"][0]["InvoiceID"],
        b.2["Invoices"][0]["InvoiceID"]
    );
    assert_eq!(o.sim.invoices(&o.org).len(), 1);
    assert_eq!(o.sim.stats().invoices_created, 1);
}
