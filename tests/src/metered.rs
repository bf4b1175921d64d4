//! A test double of an ERP's rate limits (R2), served over HTTP on loopback
//! for the `metered` test connector (tests/plugins/metered).
//!
//! It limits as Xero does (ERP_FACTS: calls at once and calls a minute per
//! organisation, a day's limit), counted by its own clock over rolling
//! windows, and answers a call over a limit `429` with `Retry-After` and
//! `X-Rate-Limit-Problem: concurrent | minute | day`. It counts every call,
//! every refusal and the most calls it ever had in flight, so a test can
//! say the host made none over budget. Entries are kept per reference; a
//! create with an idempotency key seen before answers the first entry.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::Response;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The limits the ERP enforces, and how long each call takes.
#[derive(Debug, Clone)]
pub struct MeterLimits {
    pub at_once: usize,
    pub per_minute: usize,
    /// How long each call takes at the ERP.
    pub latency: Duration,
}

/// What the ERP saw.
#[derive(Debug, Default)]
pub struct Meter {
    /// Calls answered (refused ones included).
    pub calls: AtomicUsize,
    /// Calls refused for being over a limit, by the ERP's own count.
    pub over_at_once: AtomicUsize,
    pub over_minute: AtomicUsize,
    /// The most calls in flight at once.
    pub most_at_once: AtomicUsize,
    /// Creates that made a new entry.
    pub created: AtomicUsize,
}

struct Erp {
    limits: MeterLimits,
    meter: Meter,
    in_flight: AtomicUsize,
    /// Times of the calls let through in the last minute.
    window: Mutex<VecDeque<Instant>>,
    /// `(kind, reference)` → entry id; idempotency key → entry id.
    entries: Mutex<HashMap<(String, String), String>>,
    keys: Mutex<HashMap<String, String>>,
    /// Answers queued by the test, served before anything else:
    /// `(status, retry-after seconds, problem)`.
    scripted: Mutex<VecDeque<(u16, u64, &'static str)>>,
    /// When each call arrived (for pause tests).
    arrivals: Mutex<Vec<Instant>>,
}

/// A running metered ERP.
pub struct MeteredErp {
    /// `http://127.0.0.1:<port>`: the connection's `base-url`.
    pub base_url: String,
    erp: Arc<Erp>,
}

impl MeteredErp {
    /// Starts it on an ephemeral loopback port.
    pub async fn start(limits: MeterLimits) -> MeteredErp {
        let erp = Arc::new(Erp {
            limits,
            meter: Meter::default(),
            in_flight: AtomicUsize::new(0),
            window: Mutex::new(VecDeque::new()),
            entries: Mutex::new(HashMap::new()),
            keys: Mutex::new(HashMap::new()),
            scripted: Mutex::new(VecDeque::new()),
            arrivals: Mutex::new(Vec::new()),
        });
        let app = axum::Router::new()
            .route("/{kind}/{reference}", axum::routing::any(handle))
            .with_state(erp.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base_url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        MeteredErp { base_url, erp }
    }

    /// What it saw so far.
    pub fn meter(&self) -> &Meter {
        &self.erp.meter
    }

    /// Entries it holds.
    pub fn entries(&self) -> usize {
        self.erp.entries.lock().unwrap().len()
    }

    /// Answers the next `n` calls with `status`, `Retry-After: secs` and
    /// `X-Rate-Limit-Problem: problem`, as an ERP over a limit the host
    /// cannot see (another app of the organisation, say).
    pub fn refuse_next(&self, n: usize, status: u16, secs: u64, problem: &'static str) {
        let mut s = self.erp.scripted.lock().unwrap();
        for _ in 0..n {
            s.push_back((status, secs, problem));
        }
    }

    /// When each call arrived.
    pub fn arrivals(&self) -> Vec<Instant> {
        self.erp.arrivals.lock().unwrap().clone()
    }
}

fn answer(status: StatusCode, headers: &[(&str, String)], body: String) -> Response {
    let mut r = Response::builder().status(status);
    for (k, v) in headers {
        r = r.header(*k, v);
    }
    r.header("content-type", "application/json")
        .body(Body::from(body))
        .unwrap()
}

fn too_many(secs: u64, problem: &str) -> Response {
    answer(
        StatusCode::TOO_MANY_REQUESTS,
        &[
            ("retry-after", secs.to_string()),
            ("x-rate-limit-problem", problem.to_string()),
        ],
        format!(r#"{{"Title":"Too Many Requests","Detail":"over the {problem} limit"}}"#),
    )
}

async fn handle(
    State(erp): State<Arc<Erp>>,
    Path((kind, reference)): Path<(String, String)>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    let now = Instant::now();
    erp.meter.calls.fetch_add(1, Ordering::SeqCst);
    erp.arrivals.lock().unwrap().push(now);
    if let Some((status, secs, problem)) = erp.scripted.lock().unwrap().pop_front() {
        return answer(
            StatusCode::from_u16(status).unwrap(),
            &[
                ("retry-after", secs.to_string()),
                ("x-rate-limit-problem", problem.to_string()),
            ],
            format!(r#"{{"Detail":"scripted {problem} refusal"}}"#),
        );
    }
    let in_flight = erp.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    erp.meter
        .most_at_once
        .fetch_max(in_flight, Ordering::SeqCst);
    if in_flight > erp.limits.at_once {
        erp.in_flight.fetch_sub(1, Ordering::SeqCst);
        erp.meter.over_at_once.fetch_add(1, Ordering::SeqCst);
        return too_many(1, "concurrent");
    }
    {
        let mut w = erp.window.lock().unwrap();
        while w
            .front()
            .is_some_and(|t| now.duration_since(*t) > Duration::from_secs(60))
        {
            w.pop_front();
        }
        if w.len() >= erp.limits.per_minute {
            let oldest = *w.front().unwrap();
            let secs = 60u64
                .saturating_sub(now.duration_since(oldest).as_secs())
                .max(1);
            drop(w);
            erp.in_flight.fetch_sub(1, Ordering::SeqCst);
            erp.meter.over_minute.fetch_add(1, Ordering::SeqCst);
            return too_many(secs, "minute");
        }
        w.push_back(now);
    }
    tokio::time::sleep(erp.limits.latency).await;
    let key = (kind.clone(), reference.clone());
    let found = erp.entries.lock().unwrap().get(&key).cloned();
    let (status, id) = match (method, found) {
        (Method::GET, Some(id)) | (Method::PUT, Some(id)) => (StatusCode::OK, Some(id)),
        (Method::GET, None) | (Method::PUT, None) => (StatusCode::NOT_FOUND, None),
        (Method::POST, _) => {
            let idem = headers
                .get("idempotency-key")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            let mut keys = erp.keys.lock().unwrap();
            let id = match keys.get(&idem) {
                Some(id) => id.clone(),
                None => {
                    let id = format!("E{}", erp.meter.created.fetch_add(1, Ordering::SeqCst) + 1);
                    keys.insert(idem, id.clone());
                    erp.entries.lock().unwrap().insert(key, id.clone());
                    id
                }
            };
            (StatusCode::OK, Some(id))
        }
        _ => (StatusCode::METHOD_NOT_ALLOWED, None),
    };
    // The call ends here, before its answer is on the wire: the host may
    // send the next one the moment it reads this one.
    erp.in_flight.fetch_sub(1, Ordering::SeqCst);
    match id {
        Some(id) => answer(status, &[], format!(r#"{{"id":"{id}"}}"#)),
        None => answer(status, &[], r#"{"Detail":"not found"}"#.into()),
    }
}
