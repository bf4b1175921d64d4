//! The Xero simulator behaves as ERP_FACTS.md says Xero does, over real
//! HTTP on loopback, each answer checked against Xero's OpenAPI file.

use ledgerbridge_sim::openapi::OpenApi;
use ledgerbridge_sim::xero::{Config, Organisation, XeroSim};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One HTTP/1.1 request (`Connection: close`): status, headers, body.
async fn http(
    sim: &XeroSim,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> (u16, HashMap<String, String>, Value) {
    let mut s = tokio::net::TcpStream::connect(sim.addr()).await.unwrap();
    let body = body.unwrap_or("");
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nhost: {}\r\nconnection: close\r\ncontent-length: {}\r\n",
        sim.addr(),
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (
        status,
        headers,
        serde_json::from_str(rest).unwrap_or(Value::Null),
    )
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
