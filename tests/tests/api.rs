//! The HTTP API (issue 13), over real HTTP on loopback: every SPEC flow
//! through it with the CSV connector, tenant isolation on every endpoint
//! (taken from the served OpenAPI description, so a new endpoint cannot be
//! forgotten), bad input named and never stored, idempotency keys, and the
//! committed OpenAPI file kept equal to the served one.

use ledgerbridge::api::{ServeOptions, serve};
use ledgerbridge_tests::*;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One HTTP/1.1 request (`Connection: close`): status, headers, body.
async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> (u16, HashMap<String, String>, Value) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let body = body.unwrap_or("");
    let mut req = format!("{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n");
    if !headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("content-length"))
    {
        req.push_str(&format!("content-length: {}\r\n", body.len()));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    // The server may answer (413) and close before reading a large body.
    let _ = s.write_all(req.as_bytes()).await;
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw).await;
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

/// A server over a fresh engine (worker running), an admin token, and a
/// client.
struct Api {
    addr: SocketAddr,
    admin: String,
    _dirs: Vec<tempfile::TempDir>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    served: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

const BODY_LIMIT: usize = 1 << 20;

impl Api {
    async fn start() -> Api {
        let e = engine();
        let (_, admin) = e.create_token(None, "test admin").await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = tokio::spawn(serve(
            e.clone(),
            listener,
            ServeOptions {
                worker: true,
                body_limit: BODY_LIMIT,
            },
            async move {
                let _ = stopped.await;
            },
        ));
        Api {
            addr,
            admin,
            _dirs: Vec::new(),
            stop: Some(stop),
            served: Some(served),
        }
    }

    async fn call(
        &self,
        token: &str,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let auth = format!("Bearer {token}");
        let text = body.map(|b| b.to_string());
        let mut h = vec![("authorization", auth.as_str())];
        if text.is_some() {
            h.push(("content-type", "application/json"));
        }
        let (s, _, v) = http(self.addr, method, path, &h, text.as_deref()).await;
        (s, v)
    }

    /// A tenant with a CSV connection `<tenant>-csv` and a token of its own.
    async fn tenant(&mut self, tenant: &str) -> String {
        let admin = self.admin.clone();
        let (s, v) = self
            .call(&admin, "POST", "/v1/tenants", Some(json!({"id": tenant})))
            .await;
        assert_eq!(s, 201, "{v}");
        let dir = tempfile::tempdir().unwrap();
        let c = json!({"plugin": "csv", "directory": dir.path().display().to_string(),
            "mappings": {"categories": {"office": "6100", "freight": "6300"},
                "departments": {"ops": {"category": "Department", "option": "Ops"}},
                "bank_accounts": {"operating": "1010"}}});
        self._dirs.push(dir);
        let (s, v) = self
            .call(
                &admin,
                "PUT",
                &format!("/v1/tenants/{tenant}/connections/{tenant}-csv"),
                Some(c),
            )
            .await;
        assert_eq!(s, 200, "{v}");
        let (s, v) = self
            .call(
                &admin,
                "POST",
                &format!("/v1/tenants/{tenant}/tokens"),
                Some(json!({"label": "the AP product"})),
            )
            .await;
        assert_eq!(s, 201, "{v}");
        v["token"].as_str().unwrap().to_string()
    }

    fn dir(&self, i: usize) -> &std::path::Path {
        self._dirs[i].path()
    }

    /// Polls a run until it is done; its results.
    async fn finish(&self, token: &str, tenant: &str, run: &str) -> Value {
        for _ in 0..400 {
            let (s, v) = self
                .call(
                    token,
                    "GET",
                    &format!("/v1/tenants/{tenant}/runs/{run}"),
                    None,
                )
                .await;
            assert_eq!(s, 200, "{v}");
            if v["done"] == true {
                let (_, r) = self
                    .call(
                        token,
                        "GET",
                        &format!("/v1/tenants/{tenant}/runs/{run}/results"),
                        None,
                    )
                    .await;
                return r;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("run {run} did not finish");
    }

    /// The last log line of a document, once its outcome is one of `want`.
    async fn settled(&self, token: &str, tenant: &str, doc: &str, n: usize) -> Vec<Value> {
        for _ in 0..400 {
            let (s, v) = self
                .call(
                    token,
                    "GET",
                    &format!("/v1/tenants/{tenant}/documents/{doc}/log"),
                    None,
                )
                .await;
            if s == 200 && v["items"].as_array().is_some_and(|i| i.len() >= n) {
                return v["items"].as_array().unwrap().clone();
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("{doc}: fewer than {n} log lines");
    }

    async fn shutdown(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.served.take().unwrap().await.unwrap().unwrap();
    }
}

fn doc(id: &str, amount: &str) -> Value {
    let mut d = doc_json("x", id, "approved", amount);
    d.as_object_mut().unwrap().remove("tenant_id");
    d
}

/// Every SPEC flow over HTTP with the CSV connector: approve → bill,
/// change → update, pay → payment, booked → lock → clear, a duplicate
/// check number → Failed to export → edit → Export, a bulk re-sync polled
/// to its end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_flow_round_trips_over_http() {
    let mut api = Api::start().await;
    let acme = api.tenant("acme").await;
    let erp = api.dir(0).to_path_buf();
    // A1: approve → bill.
    let (s, v) = api
        .call(
            &acme,
            "POST",
            "/v1/tenants/acme/documents",
            Some(json!({"documents": [doc("d1", "100.00"), doc("d2", "50.00")]})),
        )
        .await;
    assert_eq!((s, v["documents"].clone()), (200, json!(2)), "{v}");
    let log = api.settled(&acme, "acme", "d1", 1).await;
    assert_eq!(log[0]["outcome"], "created", "{log:?}");
    assert!(erp.join("bills/d1.csv").exists());
    // A2: change → update.
    let (s, _) = api
        .call(
            &acme,
            "POST",
            "/v1/tenants/acme/documents",
            Some(doc("d1", "120.00")),
        )
        .await;
    assert_eq!(s, 200);
    let log = api.settled(&acme, "acme", "d1", 2).await;
    assert_eq!(log[1]["outcome"], "updated", "{log:?}");
    // A3/A4: pay by check; the disbursement completes by event.
    let mut p = payment_json("x", "p1", "d1", "120.00");
    p.as_object_mut().unwrap().remove("tenant_id");
    p["method"] = "check".into();
    p["disbursement_status"] = "initiated".into();
    let (s, v) = api
        .call(&acme, "POST", "/v1/tenants/acme/payments", Some(p))
        .await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = api
        .call(
            &acme,
            "POST",
            "/v1/tenants/acme/disbursement-events",
            Some(json!({"document_id": "d1", "payment_id": "p1", "disbursement_status": "funding_complete"})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let log = api.settled(&acme, "acme", "d1", 3).await;
    assert!(
        log.iter()
            .any(|l| l["target"] == "payment" && l["outcome"] == "created"),
        "{log:?}"
    );
    let (s, fa) = api
        .call(
            &acme,
            "GET",
            "/v1/tenants/acme/funding-accounts/operating",
            None,
        )
        .await;
    assert_eq!((s, fa["issued"].clone()), (200, json!(1)), "{fa}");
    // B1-B3: the accountant books d2's bill; a change is not synced but
    // locked; the lock is listed and cleared.
    let bill = erp.join("bills/d2.csv");
    let text = std::fs::read_to_string(&bill)
        .unwrap()
        .replace(",\r\n", ",yes\r\n");
    std::fs::write(&bill, text).unwrap();
    let (s, _) = api
        .call(
            &acme,
            "POST",
            "/v1/tenants/acme/documents",
            Some(doc("d2", "55.00")),
        )
        .await;
    assert_eq!(s, 200);
    let log = api.settled(&acme, "acme", "d2", 2).await;
    assert_eq!(log[1]["outcome"], "skipped_booked", "{log:?}");
    let (s, locks) = api
        .call(
            &acme,
            "GET",
            "/v1/tenants/acme/connections/acme-csv/locks",
            None,
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(locks["items"][0]["subject_id"], "d2", "{locks}");
    let (s, _) = api
        .call(
            &acme,
            "DELETE",
            "/v1/tenants/acme/connections/acme-csv/locks/bill/d2",
            None,
        )
        .await;
    assert_eq!(s, 204);
    let (_, locks) = api
        .call(
            &acme,
            "GET",
            "/v1/tenants/acme/connections/acme-csv/locks",
            None,
        )
        .await;
    assert_eq!(locks["items"], json!([]));
    // C3: the ERP refuses a check number it already holds (a connection
    // of the test connector that does so; the CSV connector's numbers are
    // asked about before each is issued, so it never refuses one) →
    // Failed to export → edited → exported once.
    let scripted = |refuse: bool| {
        let mut c = json!({"plugin": SCRIPTED,
            "mappings": {"categories": {"office": "6100"},
                "departments": {"ops": {"category": "Department", "option": "Ops"}},
                "bank_accounts": {"operating": "1010"}}});
        if refuse {
            c["settings"] = json!({"create-payment": "duplicate-check-number"});
        }
        c
    };
    let admin = api.admin.clone();
    let (s, v) = api
        .call(
            &admin,
            "PUT",
            "/v1/tenants/acme/connections/acme-s",
            Some(scripted(true)),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = api
        .call(
            &acme,
            "POST",
            "/v1/tenants/acme/documents",
            Some(doc("d3", "10.00")),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    api.settled(&acme, "acme", "d3", 2).await;
    let mut p = payment_json("x", "p3", "d3", "10.00");
    p.as_object_mut().unwrap().remove("tenant_id");
    p["method"] = "check".into();
    p["disbursement_status"] = "funding_complete".into();
    let (s, v) = api
        .call(&acme, "POST", "/v1/tenants/acme/payments", Some(p))
        .await;
    assert_eq!(s, 200, "{v}");
    let mut failed = Value::Null;
    for _ in 0..400 {
        let (_, v) = api
            .call(&acme, "GET", "/v1/tenants/acme/failed-exports", None)
            .await;
        if v["items"].as_array().is_some_and(|i| !i.is_empty()) {
            failed = v;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(failed["items"][0]["payment_id"], "p3", "{failed}");
    assert_eq!(failed["items"][0]["connection_id"], "acme-s", "{failed}");
    let next = failed["items"][0]["suggested_check_number"].clone();
    assert!(next.is_u64(), "{failed}");
    // The ERP takes checks again.
    let (s, v) = api
        .call(
            &admin,
            "PUT",
            "/v1/tenants/acme/connections/acme-s",
            Some(scripted(false)),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = api
        .call(
            &acme,
            "PATCH",
            "/v1/tenants/acme/failed-exports/p3",
            Some(json!({"check_number": next})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let (s, run) = api
        .call(
            &acme,
            "POST",
            "/v1/tenants/acme/connections/acme-s/failed-exports/p3/export",
            None,
        )
        .await;
    assert_eq!(s, 202, "{run}");
    let results = api
        .finish(&acme, "acme", run["run_id"].as_str().unwrap())
        .await;
    assert_eq!(results["items"][0]["outcome"], "created", "{results}");
    let (_, failed) = api
        .call(&acme, "GET", "/v1/tenants/acme/failed-exports", None)
        .await;
    assert_eq!(failed["items"], json!([]));
    assert!(
        erp.join("payments/p3.csv").exists(),
        "the CSV connection's too"
    );
    // M1: one document now; M2: a bulk re-sync, polled to its end.
    let (s, run) = api
        .call(
            &acme,
            "POST",
            "/v1/tenants/acme/connections/acme-csv/documents/d1/sync",
            Some(json!({"force": true})),
        )
        .await;
    assert_eq!(s, 202, "{run}");
    let r = api
        .finish(&acme, "acme", run["run_id"].as_str().unwrap())
        .await;
    assert_eq!(r["items"][0]["document_id"], "d1", "{r}");
    let (s, run) = api
        .call(
            &acme,
            "POST",
            "/v1/tenants/acme/connections/acme-csv/runs",
            Some(json!({"force": true})),
        )
        .await;
    assert_eq!(s, 202, "{run}");
    assert!(run["total"].as_u64().unwrap() >= 3, "{run}");
    let r = api
        .finish(&acme, "acme", run["run_id"].as_str().unwrap())
        .await;
    let items = r["items"].as_array().unwrap();
    assert!(items.iter().all(|i| i["state"] == "done"), "{r}");
    // The connection's queue and budget.
    let (s, st) = api
        .call(
            &acme,
            "GET",
            "/v1/tenants/acme/connections/acme-csv/status",
            None,
        )
        .await;
    assert_eq!(s, 200, "{st}");
    assert_eq!(st["id"], "acme-csv");
    api.shutdown().await;
}
