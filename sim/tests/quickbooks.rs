//! The QuickBooks simulator behaves as ERP_FACTS.md says QuickBooks Online
//! does, over real HTTP on loopback, every request and answer checked
//! against Intuit's schemas (issue 12).

mod common;

use ledgerbridge_sim::quickbooks::{Company, Config, Faults, QuickBooksSim};
use ledgerbridge_sim::xsd::Xsd;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

struct Qb {
    sim: QuickBooksSim,
    realm: String,
    access: String,
    refresh: String,
}

const BASIC: &str = "Basic Y2xpZW50OnNlY3JldA=="; // client:secret

async fn token(sim: &QuickBooksSim, refresh: &str) -> (u16, Value) {
    let body = format!("grant_type=refresh_token&refresh_token={refresh}");
    let (s, _, v) = common::http(
        sim.addr(),
        "POST",
        "/oauth2/v1/tokens/bearer",
        &[
            ("authorization", BASIC),
            ("content-type", "application/x-www-form-urlencoded"),
        ],
        Some(&body),
    )
    .await;
    (s, v)
}

async fn company_with(config: Config) -> Qb {
    let sim = QuickBooksSim::start(Config {
        xsd: Some(Arc::new(Xsd::quickbooks().unwrap())),
        ..config
    })
    .await
    .unwrap();
    sim.add_client("client", "secret");
    let realm = sim.add_company(Company::demo());
    let grant = sim.grant("client", &realm);
    let (status, t) = token(&sim, &grant).await;
    assert_eq!(status, 200, "{t}");
    Qb {
        access: t["access_token"].as_str().unwrap().to_string(),
        refresh: t["refresh_token"].as_str().unwrap().to_string(),
        sim,
        realm,
    }
}

async fn company() -> Qb {
    company_with(Config::default()).await
}

impl Qb {
    /// A call to `/v3/company/{realm}{path}` with `minorversion=75`.
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let sep = if path.contains('?') { '&' } else { '?' };
        let path = format!("/v3/company/{}{path}{sep}minorversion=75", self.realm);
        let auth = format!("Bearer {}", self.access);
        let body = body.map(|b| b.to_string());
        let (s, _, v) = common::http(
            self.sim.addr(),
            method,
            &path,
            &[
                ("authorization", &auth),
                ("accept", "application/json"),
                ("content-type", "application/json"),
            ],
            body.as_deref(),
        )
        .await;
        (s, v)
    }

    async fn query(&self, q: &str) -> (u16, Value) {
        let path = format!("/v3/company/{}/query?minorversion=75", self.realm);
        let auth = format!("Bearer {}", self.access);
        let (s, _, v) = common::http(
            self.sim.addr(),
            "POST",
            &path,
            &[
                ("authorization", &auth),
                ("content-type", "application/text"),
            ],
            Some(q),
        )
        .await;
        (s, v)
    }

    /// Nothing the simulator sent or received left Intuit's schemas.
    fn assert_faithful(&self) {
        let v = self.sim.violations();
        assert!(v.is_empty(), "schema violations: {v:#?}");
    }
}

fn bill(doc: &str, date: &str, amount: f64) -> Value {
    json!({
        "VendorRef": {"value": "56"},
        "TxnDate": date,
        "DocNumber": doc,
        "PrivateNote": "ledgerbridge document 1",
        "Line": [{
            "Amount": amount,
            "DetailType": "AccountBasedExpenseLineDetail",
            "AccountBasedExpenseLineDetail": {"AccountRef": {"value": "60"}, "TaxCodeRef": {"value": "NON"}}
        }]
    })
}

fn check(bill_id: &str, number: &str, bank: &str, amount: f64) -> Value {
    json!({
        "VendorRef": {"value": "56"},
        "PayType": "Check",
        "TotalAmt": amount,
        "TxnDate": "2026-03-02",
        "DocNumber": number,
        "CheckPayment": {"BankAccountRef": {"value": bank}, "PrintStatus": "PrintComplete"},
        "Line": [{"Amount": amount, "LinkedTxn": [{"TxnId": bill_id, "TxnType": "Bill"}]}]
    })
}

fn code(v: &Value) -> &str {
    v["Fault"]["Error"][0]["code"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn x2_sync_token_counts_updates_and_a_stale_one_is_5010() {
    let q = company().await;
    let (s, created) = q
        .call("POST", "/bill", Some(bill("INV-1", "2026-03-01", 100.0)))
        .await;
    assert_eq!(s, 200, "{created}");
    let b = &created["Bill"];
    assert_eq!(b["SyncToken"], "0");
    assert_eq!(b["TotalAmt"], 100.0);
    let id = b["Id"].as_str().unwrap();
    let mut update = bill("INV-1", "2026-03-01", 150.0);
    update["Id"] = id.into();
    update["SyncToken"] = "0".into();
    let (s, v) = q.call("POST", "/bill", Some(update.clone())).await;
    assert_eq!(
        (s, v["Bill"]["SyncToken"].as_str()),
        (200, Some("1")),
        "{v}"
    );
    // The same update again carries a stale token.
    let (s, v) = q.call("POST", "/bill", Some(update)).await;
    assert_eq!((s, code(&v)), (400, "5010"), "{v}");
    assert_eq!(v["Fault"]["type"], "ValidationFault");
    // A read gives the current one.
    let (s, v) = q.call("GET", &format!("/bill/{id}"), None).await;
    assert_eq!((s, v["Bill"]["SyncToken"].as_str()), (200, Some("1")));
    assert_eq!(v["Bill"]["TotalAmt"], 150.0);
    // An unknown id is 610.
    let (s, v) = q.call("GET", "/bill/999999", None).await;
    assert_eq!((s, code(&v)), (400, "610"), "{v}");
    assert_eq!(q.sim.stats().without_minor_version, 0);
    q.assert_faithful();
}

#[tokio::test]
async fn c3_a_check_number_used_from_the_same_bank_account_is_6140_voided_ones_too() {
    let q = company().await;
    let (_, a) = q
        .call("POST", "/bill", Some(bill("A", "2026-03-01", 100.0)))
        .await;
    let (_, b) = q
        .call("POST", "/bill", Some(bill("B", "2026-03-01", 100.0)))
        .await;
    let a = a["Bill"]["Id"].as_str().unwrap().to_string();
    let b = b["Bill"]["Id"].as_str().unwrap().to_string();
    let (s, p) = q
        .call("POST", "/billpayment", Some(check(&a, "1001", "35", 40.0)))
        .await;
    assert_eq!(s, 200, "{p}");
    assert_eq!(p["BillPayment"]["DocNumber"], "1001");
    assert_eq!(p["BillPayment"]["PayType"], "Check");
    let (s, v) = q
        .call("POST", "/billpayment", Some(check(&b, "1001", "35", 40.0)))
        .await;
    assert_eq!((s, code(&v)), (400, "6140"), "{v}");
    let detail = v["Fault"]["Error"][0]["Detail"].as_str().unwrap();
    assert!(detail.contains("DocNumber=1001"), "{detail}");
    // Another bank account has its own numbers.
    let (s, v) = q
        .call("POST", "/billpayment", Some(check(&b, "1001", "36", 40.0)))
        .await;
    assert_eq!(s, 200, "{v}");
    // A voided check keeps its number.
    let p = &p["BillPayment"];
    let void = json!({"Id": p["Id"], "SyncToken": p["SyncToken"], "sparse": true});
    let (s, v) = q
        .call(
            "POST",
            "/billpayment?operation=update&include=void",
            Some(void),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["BillPayment"]["TotalAmt"], 0.0);
    let (s, v) = q
        .call("POST", "/billpayment", Some(check(&b, "1001", "35", 10.0)))
        .await;
    assert_eq!((s, code(&v)), (400, "6140"), "{v}");
    // QuickBooks' documented bypass.
    let (s, v) = q
        .call(
            "POST",
            "/billpayment?include=allowduplicatedocnum",
            Some(check(&b, "1001", "35", 10.0)),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    // Overpaying a bill is refused (6000, naming the line).
    let (s, v) = q
        .call("POST", "/billpayment", Some(check(&a, "1002", "35", 500.0)))
        .await;
    assert_eq!((s, code(&v)), (400, "6000"), "{v}");
    q.assert_faithful();
}

#[tokio::test]
async fn b1_the_closing_date_refuses_6200_or_6210_with_a_password() {
    let q = company().await;
    let (_, open) = q
        .call("POST", "/bill", Some(bill("OPEN", "2026-01-15", 10.0)))
        .await;
    q.sim
        .set_book_close_date(&q.realm, Some("2026-01-31"), false);
    let (s, v) = q
        .call("POST", "/bill", Some(bill("C", "2026-01-31", 10.0)))
        .await;
    assert_eq!((s, code(&v)), (400, "6200"), "{v}");
    // An update of a bill dated in the closed period too.
    let b = &open["Bill"];
    let mut update = bill("OPEN", "2026-01-15", 20.0);
    update["Id"] = b["Id"].clone();
    update["SyncToken"] = b["SyncToken"].clone();
    let (s, v) = q.call("POST", "/bill", Some(update)).await;
    assert_eq!((s, code(&v)), (400, "6200"), "{v}");
    q.sim
        .set_book_close_date(&q.realm, Some("2026-01-31"), true);
    let (s, v) = q
        .call("POST", "/bill", Some(bill("C", "2026-01-02", 10.0)))
        .await;
    assert_eq!((s, code(&v)), (400, "6210"), "{v}");
    // After the date, fine; and Preferences tells the date.
    let (s, _) = q
        .call("POST", "/bill", Some(bill("C", "2026-02-01", 10.0)))
        .await;
    assert_eq!(s, 200);
    let (s, v) = q.call("GET", "/preferences", None).await;
    assert_eq!(s, 200);
    assert_eq!(
        v["Preferences"]["AccountingInfoPrefs"]["BookCloseDate"],
        "2026-01-31"
    );
    q.assert_faithful();
}

#[tokio::test]
async fn vendors_are_found_by_display_name_and_a_duplicate_name_is_6240() {
    let q = company().await;
    let (s, v) = q
        .query("select * from Vendor where DisplayName = 'Acme Paper'")
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["QueryResponse"]["Vendor"][0]["Id"], "56");
    let (s, v) = q
        .call(
            "POST",
            "/vendor",
            Some(json!({"DisplayName": "acme paper"})),
        )
        .await;
    assert_eq!((s, code(&v)), (400, "6240"), "{v}");
    let (s, v) = q
        .call(
            "POST",
            "/vendor",
            Some(json!({"DisplayName": "Umbrella Corp"})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    // A bill naming a vendor that does not exist: invalid reference.
    let mut b = bill("X", "2026-03-01", 1.0);
    b["VendorRef"]["value"] = "424242".into();
    let (s, v) = q.call("POST", "/bill", Some(b)).await;
    assert_eq!((s, code(&v)), (400, "2500"), "{v}");
    q.assert_faithful();
}

#[tokio::test]
async fn a_requestid_replays_its_answer_and_refuses_another_body_600() {
    let q = company().await;
    let body = bill("R-1", "2026-03-01", 5.0);
    let (s1, a1) = q
        .call("POST", "/bill?requestid=abc-1", Some(body.clone()))
        .await;
    let (s2, a2) = q.call("POST", "/bill?requestid=abc-1", Some(body)).await;
    assert_eq!((s1, s2), (200, 200));
    assert_eq!(a1["Bill"]["Id"], a2["Bill"]["Id"]);
    assert_eq!(q.sim.bills(&q.realm).len(), 1, "done once");
    assert_eq!(q.sim.stats().request_replays, 1);
    let (s, v) = q
        .call(
            "POST",
            "/bill?requestid=abc-1",
            Some(bill("R-2", "2026-03-01", 5.0)),
        )
        .await;
    assert_eq!((s, code(&v)), (400, "600"), "{v}");
    let long = "x".repeat(51);
    let (s, v) = q
        .call(
            "POST",
            &format!("/bill?requestid={long}"),
            Some(bill("R-3", "2026-03-01", 5.0)),
        )
        .await;
    assert_eq!((s, code(&v)), (400, "2050"), "{v}");
    q.assert_faithful();
}

#[tokio::test]
async fn a_batch_answers_per_bid_items_independent_and_at_most_30() {
    let q = company().await;
    let items: Vec<Value> = vec![
        json!({"bId": "a", "operation": "create", "Bill": bill("B-1", "2026-03-01", 1.0)}),
        json!({"bId": "b", "Query": "select * from Bill where DocNumber = 'B-1'"}),
        json!({"bId": "c", "operation": "create", "Bill": {"VendorRef": {"value": "56"}}}),
        json!({"bId": "d", "Query": "select count(*) from Vendor"}),
    ];
    let (s, v) = q
        .call("POST", "/batch", Some(json!({"BatchItemRequest": items})))
        .await;
    assert_eq!(s, 200, "{v}");
    let answers: HashMap<&str, &Value> = v["BatchItemResponse"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["bId"].as_str().unwrap(), a))
        .collect();
    assert_eq!(answers.len(), 4);
    assert!(answers["a"]["Bill"]["Id"].is_string());
    // Items run independently: the query does not see the create beside it...
    // (ERP_FACTS: "one cannot see another's result") — it ran in order here,
    // so it may; what matters is that each item answers on its own.
    assert!(answers["b"]["QueryResponse"].is_object());
    assert_eq!(code(answers["c"]), "2020", "{}", answers["c"]);
    assert_eq!(answers["d"]["QueryResponse"]["totalCount"], 3);
    // 31 items: the whole batch is refused.
    let many: Vec<Value> = (0..31)
        .map(|i| json!({"bId": i.to_string(), "Query": "select * from Bill"}))
        .collect();
    let (s, v) = q
        .call("POST", "/batch", Some(json!({"BatchItemRequest": many})))
        .await;
    assert_eq!(s, 400, "{v}");
    assert!(
        v["Fault"]["Error"][0]["Detail"]
            .as_str()
            .unwrap()
            .contains("at most 30")
    );
    q.assert_faithful();
}

#[tokio::test]
async fn r2_limits_answer_429_throttle_exceeded_per_minute_per_batch_minute_and_at_once() {
    // Minute: batch items count one each against the 500.
    let q = company_with(Config {
        minute_limit: 40,
        ..Config::default()
    })
    .await;
    let items: Vec<Value> = (0..30)
        .map(|i| json!({"bId": i.to_string(), "Query": "select * from Bill"}))
        .collect();
    let (s, _) = q
        .call(
            "POST",
            "/batch",
            Some(json!({"BatchItemRequest": items.clone()})),
        )
        .await;
    assert_eq!(s, 200);
    let (s, v) = q
        .call("POST", "/batch", Some(json!({"BatchItemRequest": items})))
        .await;
    assert_eq!(s, 429, "{v}");
    assert_eq!(code(&v), "003001");
    assert_eq!(v["Fault"]["type"], "ThrottleExceeded");
    assert_eq!(q.sim.stats().over_minute, 1);

    // 40 batch requests a minute, however small.
    let q = company().await;
    let one = json!({"BatchItemRequest": [{"bId": "1", "Query": "select * from Bill"}]});
    for _ in 0..40 {
        let (s, _) = q.call("POST", "/batch", Some(one.clone())).await;
        assert_eq!(s, 200);
    }
    let (s, _) = q.call("POST", "/batch", Some(one)).await;
    assert_eq!(s, 429);
    assert_eq!(q.sim.stats().over_batch_minute, 1);
    // Single calls still go through.
    let (s, _) = q.call("GET", "/preferences", None).await;
    assert_eq!(s, 200);

    // 10 at once: calls held 2.5 s so twelve overlap even on a loaded machine.
    let q = Arc::new(company().await);
    q.sim.set_faults(Faults {
        latency: Duration::from_millis(2500),
        ..Faults::default()
    });
    let calls: Vec<_> = (0..12)
        .map(|_| {
            let q = q.clone();
            tokio::spawn(async move { q.call("GET", "/preferences", None).await.0 })
        })
        .collect();
    let mut statuses = Vec::new();
    for c in calls {
        statuses.push(c.await.unwrap());
    }
    let throttled = statuses.iter().filter(|s| **s == 429).count();
    assert!(throttled >= 2, "{statuses:?}");
    assert_eq!(q.sim.stats().most_at_once, 10);
    q.assert_faithful();
}

#[tokio::test]
async fn oauth_tokens_rotate_and_expired_or_foreign_ones_are_refused() {
    let q = company().await;
    // The refresh token rotates: the new one works, the spent one does not.
    let (s, t) = token(&q.sim, &q.refresh).await;
    assert_eq!(s, 200, "{t}");
    assert!(t["x_refresh_token_expires_in"].as_u64().unwrap() > 0);
    assert_eq!(t["token_type"], "bearer");
    let (s, v) = token(&q.sim, &q.refresh).await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(v["error"], "invalid_grant");
    // An expired access token is 401 AuthenticationFault.
    q.sim.expire_access_tokens();
    let (s, v) = q.call("GET", "/preferences", None).await;
    assert_eq!(s, 401, "{v}");
    assert_eq!(v["Fault"]["type"], "AuthenticationFault");
    assert_eq!(code(&v), "3200");
    // A fresh token, on another company's realm: 403.
    let (s, t) = token(&q.sim, t["refresh_token"].as_str().unwrap()).await;
    assert_eq!(s, 200, "{t}");
    let fresh = Qb {
        access: t["access_token"].as_str().unwrap().to_string(),
        realm: q.sim.add_company(Company::demo()),
        refresh: String::new(),
        sim: q.sim.clone(),
    };
    let (s, v) = fresh.call("GET", "/preferences", None).await;
    assert_eq!(s, 403, "{v}");
    assert_eq!(v["Fault"]["type"], "AuthorizationFault");
    q.assert_faithful();
}

#[tokio::test]
async fn queries_answer_like_quickbooks_and_bad_ones_are_4000() {
    let q = company().await;
    // An empty result has no entity key.
    let (s, v) = q.query("select * from Bill where DocNumber = 'none'").await;
    assert_eq!(s, 200);
    assert_eq!(v["QueryResponse"].get("Bill"), None, "{v}");
    for bad in [
        "select * from",
        "select * from Bill where",
        "select * from Bill where DocNumber = 'x' or Id = '1'",
        "delete from Bill",
        "select * from Bill where DocNumber = 'unterminated",
    ] {
        let (s, v) = q.query(bad).await;
        assert_eq!(s, 400, "{bad}: {v}");
        assert_eq!(v["Fault"]["type"], "ValidationFault", "{bad}");
        assert!(matches!(code(&v), "4000" | "4001"), "{bad}: {v}");
    }
    let (s, v) = q.query("select * from Bill maxresults 1001").await;
    assert_eq!(s, 400, "{v}");
    // IN, ordering and paging.
    for n in ["P-1", "P-2", "P-3"] {
        q.call("POST", "/bill", Some(bill(n, "2026-03-01", 1.0)))
            .await;
    }
    let (_, v) = q
        .query("select * from Bill where DocNumber in ('P-1', 'P-3') orderby DocNumber desc")
        .await;
    let docs: Vec<&str> = v["QueryResponse"]["Bill"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["DocNumber"].as_str().unwrap())
        .collect();
    assert_eq!(docs, ["P-3", "P-1"]);
    let (_, v) = q
        .query("select * from Bill startposition 2 maxresults 1")
        .await;
    assert_eq!(v["QueryResponse"]["Bill"].as_array().unwrap().len(), 1);
    assert_eq!(v["QueryResponse"]["startPosition"], 2);
    q.assert_faithful();
}

#[tokio::test]
async fn injected_faults_do_nothing_and_fail_writes_lets_reads_through() {
    let q = company().await;
    q.sim.set_faults(Faults {
        fail_writes: 2,
        ..Faults::default()
    });
    let (s, v) = q
        .call("POST", "/bill", Some(bill("F", "2026-03-01", 1.0)))
        .await;
    assert_eq!(s, 503, "{v}");
    assert_eq!(v["Fault"]["type"], "SystemFault");
    let (s, _) = q.query("select * from Bill").await;
    assert_eq!(s, 200, "reads go on");
    let (s, _) = q
        .call("POST", "/bill", Some(bill("F", "2026-03-01", 1.0)))
        .await;
    assert_eq!(s, 503);
    assert!(q.sim.bills(&q.realm).is_empty(), "nothing done");
    let (s, _) = q
        .call("POST", "/bill", Some(bill("F", "2026-03-01", 1.0)))
        .await;
    assert_eq!(s, 200);
    assert_eq!(q.sim.stats().injected, 2);
    // Bodies that are not JSON are named, not guessed at.
    let auth = format!("Bearer {}", q.access);
    let (s, _, v) = common::http(
        q.sim.addr(),
        "POST",
        &format!("/v3/company/{}/bill?minorversion=75", q.realm),
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
        ],
        Some("{not json"),
    )
    .await;
    assert_eq!((s, code(&v)), (400, "2010"), "{v}");
    q.assert_faithful();
}
