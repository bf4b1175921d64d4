//! A simulator of the QuickBooks Online Accounting API v3 on loopback,
//! faithful to `shared/reference/ERP_FACTS.md` and to Intuit's schemas
//! (`shared/reference/quickbooks/*.xsd`): bills and bill payments in the
//! JSON wire format, `SyncToken` and 5010 on a stale one, the books'
//! closing date with 6200/6210, duplicate check numbers (6140), vendors
//! (6240 on a duplicate name), `requestid` replay, queries, `POST /batch`
//! (30 items), QuickBooks' limits answered 429, OAuth2 with rotating
//! refresh tokens, and faults a test can inject.
//!
//! What it does not model: items, customers and the sales side, journal
//! entries, attachments, change data capture, reports, currencies other
//! than at rate 1, and the XML format. Where ERP_FACTS is silent it follows
//! Intuit's documentation as we know it, and says so beside the code (the
//! code of a batch of more than 30 items is such a guess). Stricter than
//! QuickBooks on purpose: a spent refresh token is refused at once, and a
//! `requestid` reused for another request is refused (600) rather than
//! answered with the first request's answer.
//!
//! With [`Config::xsd`] set, every JSON request and answer is checked
//! against the schemas' element names ([`crate::xsd`]) and each drift kept
//! in [`QuickBooksSim::violations`]; vendor bodies pass unchecked, as
//! `Vendor`'s type is in a schema the reference set does not hold.

mod model;
mod query;

pub use crate::common::Faults;
pub use model::{Account, AccountKind, Company};

use crate::common::{Answer, answer, retry_after, to_response, url_decode_pairs};
use crate::oauth::{OAuth, Refused};
use axum::body::Bytes;
use axum::extract::State as Shared_;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::Response;
use model::{Op, QbError};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The API's path: `/v3/company/{realmId}/...`.
const BASE: &str = "/v3/company/";
/// Intuit's token endpoint's path.
const TOKEN_PATH: &str = "/oauth2/v1/tokens/bearer";

/// The simulator's limits and token lifetimes: QuickBooks', by default.
#[derive(Clone)]
pub struct Config {
    /// 0: any free port. Always 127.0.0.1.
    pub port: u16,
    /// Requests a minute per company; a batch's items count one each.
    pub minute_limit: u32,
    /// Batch requests a minute per company.
    pub batch_minute_limit: u32,
    /// Requests in flight per company.
    pub concurrent_limit: u32,
    /// Items one batch may carry.
    pub batch_items: usize,
    pub access_token_ttl: Duration,
    pub refresh_token_ttl: Duration,
    /// How long a `requestid`'s answer is replayed.
    pub request_id_ttl: Duration,
    /// When set, every request and answer body is checked against Intuit's
    /// schemas; see [`QuickBooksSim::violations`].
    pub xsd: Option<Arc<crate::xsd::Xsd>>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            port: 0,
            minute_limit: 500,
            batch_minute_limit: 40,
            concurrent_limit: 10,
            batch_items: 30,
            access_token_ttl: Duration::from_secs(3600),
            refresh_token_ttl: Duration::from_secs(100 * 24 * 3600),
            request_id_ttl: Duration::from_secs(30 * 60),
            xsd: None,
        }
    }
}

/// What the simulator saw.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    /// API requests answered (refused ones included; the token endpoint not).
    pub calls: u64,
    pub by_status: BTreeMap<u16, u64>,
    /// Requests refused for the company's limits.
    pub over_minute: u64,
    pub over_batch_minute: u64,
    pub over_concurrent: u64,
    /// Requests answered with an injected fault (resets included).
    pub injected: u64,
    /// Requests done whose connection was then dropped before the answer.
    pub resets: u64,
    pub most_at_once: u64,
    pub token_refreshes: u64,
    /// Requests answered from an earlier one with the same `requestid`.
    pub request_replays: u64,
    pub batch_requests: u64,
    pub batch_items: u64,
    pub bills_created: u64,
    pub bill_payments_created: u64,
    pub vendors_created: u64,
    /// Requests without `minorversion`.
    pub without_minor_version: u64,
}

/// One API request as received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    /// Path (after `/v3/company/{realm}`) and query, decoded.
    pub path: String,
    pub request_id: Option<String>,
    pub minor_version: Option<String>,
    /// A JSON body.
    pub body: Option<Value>,
    /// A text body (`POST /query`).
    pub text: Option<String>,
    pub status: u16,
}

#[derive(Default)]
struct Window {
    /// One instant per request, a batch's items each counting.
    minute: VecDeque<Instant>,
    batches: VecDeque<Instant>,
    in_flight: u32,
}

struct Replay {
    request: String,
    status: u16,
    answer: Value,
    at: Instant,
}

struct State {
    companies: HashMap<String, Company>,
    windows: HashMap<String, Window>,
    oauth: OAuth,
    replays: HashMap<(String, String), Replay>,
    faults: Faults,
    rng: fastrand::Rng,
    burst_left: u32,
    stats: Stats,
    requests: Vec<Recorded>,
    violations: Vec<String>,
    offset: Duration,
    next_realm: u64,
    lie: Option<(BatchLie, u32)>,
    refuse_queries_naming: Option<String>,
}

/// A lie the simulator tells in the answers of the next batches that
/// write two items or more: how a connector is tested against an ERP (or
/// something between) that mixes answers up. QuickBooks itself does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchLie {
    /// The first two answers trade `bId`s.
    SwapBIds,
    /// The second answer carries the first one's `bId`.
    DuplicateBId,
}

impl State {
    fn now(&self) -> Instant {
        Instant::now() + self.offset
    }
}

struct Shared {
    config: Config,
    state: Mutex<State>,
}

impl Shared {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

struct Handle {
    shared: Arc<Shared>,
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// A running simulated QuickBooks Online. Cheap to clone; it serves until
/// the last clone is dropped.
#[derive(Clone)]
pub struct QuickBooksSim(Arc<Handle>);

/// `time` as QuickBooks stamps its answers.
fn time() -> String {
    chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.3f%:z")
        .to_string()
}

/// A `Fault` answer.
fn fault(status: u16, kind: &str, errors: &[QbError]) -> Answer {
    answer(
        status,
        json!({"Fault": {"Error": errors.iter().map(QbError::json).collect::<Vec<_>>(), "type": kind}, "time": time()}),
    )
}

fn fault_of(
    status: u16,
    kind: &str,
    code: &'static str,
    message: &'static str,
    detail: &str,
) -> Answer {
    fault(
        status,
        kind,
        &[QbError {
            code,
            message,
            detail: detail.into(),
            element: String::new(),
        }],
    )
}

impl QuickBooksSim {
    /// Starts serving on 127.0.0.1.
    pub async fn start(config: Config) -> anyhow::Result<QuickBooksSim> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", config.port)).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            config,
            state: Mutex::new(State {
                companies: HashMap::new(),
                windows: HashMap::new(),
                oauth: OAuth::default(),
                replays: HashMap::new(),
                faults: Faults::default(),
                rng: fastrand::Rng::with_seed(0),
                burst_left: 0,
                stats: Stats::default(),
                requests: Vec::new(),
                violations: Vec::new(),
                offset: Duration::ZERO,
                next_realm: 9_341_455_000_000_001,
                lie: None,
                refuse_queries_naming: None,
            }),
        });
        let app = axum::Router::new()
            .fallback(serve)
            .with_state(shared.clone());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
        });
        Ok(QuickBooksSim(Arc::new(Handle {
            shared,
            addr,
            stop: Some(stop),
        })))
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.shared.state()
    }

    pub fn addr(&self) -> SocketAddr {
        self.0.addr
    }

    /// `http://127.0.0.1:PORT`: the API's host, as the connector's
    /// `api-url` setting takes it (it adds `/v3/company/{realm}`).
    pub fn api_url(&self) -> String {
        format!("http://{}", self.0.addr)
    }

    /// `http://127.0.0.1:PORT/oauth2/v1/tokens/bearer`.
    pub fn token_url(&self) -> String {
        format!("http://{}{TOKEN_PATH}", self.0.addr)
    }

    /// Adds a company; returns its realm id.
    pub fn add_company(&self, company: Company) -> String {
        let mut s = self.state();
        let id = s.next_realm.to_string();
        s.next_realm += 1;
        s.companies.insert(id.clone(), company);
        id
    }

    /// Registers an app.
    pub fn add_client(&self, client_id: &str, client_secret: &str) {
        self.state().oauth.add_client(client_id, client_secret);
    }

    /// A refresh token for `client_id` to the company `realm`, as the
    /// consent flow would give it.
    pub fn grant(&self, client_id: &str, realm: &str) -> String {
        let mut s = self.state();
        let expires = s.now() + self.0.shared.config.refresh_token_ttl;
        s.oauth.grant(client_id, realm, expires)
    }

    fn company<T>(&self, realm: &str, f: impl FnOnce(&mut Company) -> T) -> Option<T> {
        self.state().companies.get_mut(realm).map(f)
    }

    /// Closes the books up to `date` (`None` opens them); `password`: the
    /// closing date is password-protected (6210 instead of 6200).
    pub fn set_book_close_date(&self, realm: &str, date: Option<&str>, password: bool) {
        self.company(realm, |c| {
            c.book_close_date = date.map(str::to_string);
            c.close_password = password;
        });
    }

    /// Every bill, as `GET /bill/{id}` answers it.
    pub fn bills(&self, realm: &str) -> Vec<Value> {
        self.company(realm, |c| c.bills.iter().map(|b| c.bill_json(b)).collect())
            .unwrap_or_default()
    }

    /// Every bill payment, voided ones included.
    pub fn bill_payments(&self, realm: &str) -> Vec<Value> {
        self.company(realm, |c| {
            c.payments.iter().map(|p| c.payment_json(p)).collect()
        })
        .unwrap_or_default()
    }

    pub fn vendors(&self, realm: &str) -> Vec<Value> {
        self.company(realm, |c| {
            c.vendors.iter().map(|v| c.vendor_json(v)).collect()
        })
        .unwrap_or_default()
    }

    /// A person adds a vendor in QuickBooks; its id.
    pub fn add_vendor(&self, realm: &str, name: &str) -> anyhow::Result<String> {
        self.company(realm, |c| c.save_vendor(&json!({ "DisplayName": name })))
            .ok_or_else(|| anyhow::anyhow!("no company {realm}"))?
            .map(|v| v["Id"].as_str().unwrap_or_default().to_string())
            .map_err(|e| anyhow::anyhow!("QuickBooks refuses the vendor: {}", e.detail))
    }

    /// A bill entered in QuickBooks by another hand (a person, an earlier
    /// installation), validated as `POST /bill` would; its id.
    pub fn add_bill(&self, realm: &str, bill: Value) -> anyhow::Result<String> {
        self.company(realm, |c| c.save_bill(&bill, Op::Create))
            .ok_or_else(|| anyhow::anyhow!("no company {realm}"))?
            .map(|v| v["Id"].as_str().unwrap_or_default().to_string())
            .map_err(|e| {
                anyhow::anyhow!("QuickBooks refuses the bill: {} ({})", e.message, e.detail)
            })
    }

    /// A person edits the bill in QuickBooks (its SyncToken moves on).
    pub fn edit_bill(&self, realm: &str, id: &str) -> anyhow::Result<()> {
        self.company(realm, |c| c.edit_bill(id))
            .ok_or_else(|| anyhow::anyhow!("no company {realm}"))?
            .map_err(|e| anyhow::anyhow!(e))
    }

    /// A person deletes the bill in QuickBooks.
    pub fn delete_bill(&self, realm: &str, id: &str) -> anyhow::Result<()> {
        self.company(realm, |c| {
            let token = c
                .bill(id)
                .map(|b| c.bill_json(b)["SyncToken"].clone())
                .unwrap_or_default();
            c.save_bill(&json!({"Id": id, "SyncToken": token}), Op::Delete)
        })
        .ok_or_else(|| anyhow::anyhow!("no company {realm}"))?
        .map(|_| ())
        .map_err(|e| anyhow::anyhow!("QuickBooks refuses the deletion: {}", e.detail))
    }

    /// A person writes a check in QuickBooks from bank account `bank`
    /// paying `amount` of the bill; the bill payment's id.
    pub fn write_check(
        &self,
        realm: &str,
        bill_id: &str,
        bank: &str,
        amount: &str,
        check_number: &str,
    ) -> anyhow::Result<String> {
        self.company(realm, |c| {
            let vendor = c
                .bill(bill_id)
                .map(|b| c.bill_json(b)["VendorRef"].clone())
                .unwrap_or_default();
            let amount: Value = serde_json::from_str(amount).unwrap_or(Value::Null);
            c.save_payment(
                &json!({
                    "VendorRef": vendor, "PayType": "Check", "DocNumber": check_number,
                    "CheckPayment": {"BankAccountRef": {"value": bank}},
                    "TotalAmt": amount, "Line": [{"Amount": amount, "LinkedTxn": [{"TxnId": bill_id, "TxnType": "Bill"}]}],
                }),
                Op::Create,
                false,
            )
        })
        .ok_or_else(|| anyhow::anyhow!("no company {realm}"))?
        .map(|v| v["Id"].as_str().unwrap_or_default().to_string())
        .map_err(|e| anyhow::anyhow!("QuickBooks refuses the check: {}", e.detail))
    }

    /// Every access token issued so far expires now.
    pub fn expire_access_tokens(&self) {
        let mut s = self.state();
        let past = s.now() - Duration::from_secs(1);
        s.oauth.expire_access(past);
    }

    /// The user disconnected the app: every grant is refused from now on.
    pub fn revoke_grants(&self) {
        self.state().oauth.revoke();
    }

    pub fn set_faults(&self, faults: Faults) {
        let mut s = self.state();
        s.rng = fastrand::Rng::with_seed(faults.seed);
        s.burst_left = faults.burst_429;
        s.faults = faults;
    }

    /// Tells `lie` in the answers to the next `times` batches of two
    /// writes or more (the writes are done as asked).
    pub fn lie(&self, lie: BatchLie, times: u32) {
        self.state().lie = (times > 0).then_some((lie, times));
    }

    /// Whether the lie of [`QuickBooksSim::lie`] is still to be told.
    pub fn lie_pending(&self) -> bool {
        self.state().lie.is_some()
    }

    /// Every query whose text holds `text` is refused (4000), as
    /// QuickBooks refuses a query it cannot parse; `None` stops it.
    pub fn refuse_queries_naming(&self, text: Option<&str>) {
        self.state().refuse_queries_naming = text.map(str::to_string);
    }

    /// Moves the simulator's clock forward (token expiry, rate windows).
    pub fn set_clock_offset(&self, d: Duration) {
        self.state().offset = d;
    }

    pub fn stats(&self) -> Stats {
        self.state().stats.clone()
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.state().requests.clone()
    }

    /// What the schema checks found in requests and answers.
    pub fn violations(&self) -> Vec<String> {
        self.state().violations.clone()
    }
}

/// A request, read.
struct Request {
    method: Method,
    realm: String,
    /// Lowercased path segments after the realm (`["bill"]`, `["bill", "145"]`).
    segments: Vec<String>,
    query: HashMap<String, String>,
    json: Option<Value>,
    text: Option<String>,
}

async fn serve(
    Shared_(shared): Shared_<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    if path == TOKEN_PATH {
        let cfg = &shared.config;
        let mut s = shared.state();
        let now = s.now();
        let (status, mut b, refreshed) = s.oauth.token_endpoint(
            &method,
            &headers,
            &body,
            now,
            (cfg.access_token_ttl, cfg.refresh_token_ttl),
        );
        if refreshed {
            s.stats.token_refreshes += 1;
            b["x_refresh_token_expires_in"] = cfg.refresh_token_ttl.as_secs().into();
            // Intuit's answer spells it in lower case.
            b["token_type"] = "bearer".into();
        }
        return to_response(answer(status, b));
    }
    let Some(rest) = path.strip_prefix(BASE) else {
        return to_response(fault_of(
            404,
            "ValidationFault",
            "500",
            "Unsupported Operation",
            &format!("Operation {path} is not supported."),
        ));
    };
    let mut parts = rest.split('/').filter(|p| !p.is_empty());
    let realm = parts.next().unwrap_or_default().to_string();
    let segments: Vec<String> = parts.map(|p| p.to_ascii_lowercase()).collect();
    let raw_query = uri.query().unwrap_or("").to_string();
    let query = url_decode_pairs(&raw_query);
    let is_text = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/text") || t.starts_with("text/"));
    let (json, text) = if body.is_empty() {
        (None, None)
    } else if is_text {
        (None, Some(String::from_utf8_lossy(&body).into_owned()))
    } else {
        (serde_json::from_slice(&body).ok(), None)
    };
    let req = Request {
        method: method.clone(),
        realm,
        segments,
        query,
        json,
        text,
    };
    let unreadable = !body.is_empty() && req.json.is_none() && req.text.is_none();
    if let (Some(xsd), Some(b)) = (&shared.config.xsd, &req.json) {
        let root = match req.segments.first().map(String::as_str) {
            Some("batch") => Some("IntuitBatchRequest"),
            Some("bill") => Some("Bill"),
            Some("billpayment") => Some("BillPayment"),
            Some("vendor") => Some("Vendor"),
            _ => None,
        };
        if let Some(root) = root {
            let v = xsd.check(root, b);
            shared.state().violations.extend(
                v.into_iter()
                    .map(|v| format!("request {method} {path}: {v}")),
            );
        }
    }
    let (answer, reset) = api(&shared, &req, &headers, unreadable).await;
    {
        let mut s = shared.state();
        s.stats.calls += 1;
        *s.stats.by_status.entry(answer.status).or_default() += 1;
        if !req.query.contains_key("minorversion") {
            s.stats.without_minor_version += 1;
        }
        let shown_path = format!(
            "/{}{}",
            req.segments.join("/"),
            if raw_query.is_empty() {
                String::new()
            } else {
                format!("?{}", crate::common::decode(&raw_query))
            }
        );
        s.requests.push(Recorded {
            method: method.to_string(),
            path: shown_path,
            request_id: req.query.get("requestid").cloned(),
            minor_version: req.query.get("minorversion").cloned(),
            body: req.json.clone(),
            text: req.text.clone(),
            status: answer.status,
        });
    }
    if let Some(xsd) = &shared.config.xsd
        && answer.body.is_object()
    {
        let v = xsd.check("IntuitResponse", &answer.body);
        shared.state().violations.extend(
            v.into_iter()
                .map(|v| format!("answer to {method} {path}: {v}")),
        );
    }
    if reset {
        return crate::common::reset();
    }
    to_response(answer)
}

/// Decrements a company's requests in flight when an answer is done.
struct InFlight<'a> {
    shared: &'a Shared,
    realm: String,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if let Some(w) = self.shared.state().windows.get_mut(&self.realm) {
            w.in_flight = w.in_flight.saturating_sub(1);
        }
    }
}

/// QuickBooks' answer over a limit (it sends no `Retry-After`).
fn throttled() -> Answer {
    fault_of(
        429,
        "ThrottleExceeded",
        "003001",
        "message=ThrottleExceeded; errorCode=003001; statusCode=429",
        "The request limit was reached. Please try again later.",
    )
}

/// Authentication, faults, limits, then the operation. Returns the answer
/// and whether to drop the connection instead.
async fn api(
    shared: &Shared,
    req: &Request,
    headers: &HeaderMap,
    unreadable: bool,
) -> (Answer, bool) {
    let cfg = &shared.config;
    let items = if req.segments.first().map(String::as_str) == Some("batch") {
        req.json
            .as_ref()
            .and_then(|b| b.get("BatchItemRequest"))
            .and_then(Value::as_array)
            .map_or(1, |a| a.len().max(1))
    } else {
        1
    };
    let (latency, reset) = {
        let mut s = shared.state();
        let now = s.now();
        let grant = match s.oauth.bearer(headers, now) {
            Ok(g) => g,
            Err(Refused::Unknown) => {
                return (
                    fault_of(
                        401,
                        "AuthenticationFault",
                        "3200",
                        "message=AuthenticationFailed; errorCode=003200; statusCode=401",
                        "Token invalid",
                    ),
                    false,
                );
            }
            Err(Refused::Expired(_)) => {
                return (
                    fault_of(
                        401,
                        "AuthenticationFault",
                        "3200",
                        "message=AuthenticationFailed; errorCode=003200; statusCode=401",
                        "Token expired",
                    ),
                    false,
                );
            }
        };
        if !grant.tenants.contains(&req.realm) || !s.companies.contains_key(&req.realm) {
            return (
                fault_of(
                    403,
                    "AuthorizationFault",
                    "3100",
                    "message=ApplicationAuthorizationFailed; errorCode=003100; statusCode=403",
                    "The app is not authorized for this company (realm).",
                ),
                false,
            );
        }
        // Injected faults: nothing is done (a reset is decided now and
        // happens after the work).
        if s.burst_left > 0 {
            s.burst_left -= 1;
            s.stats.injected += 1;
            return (throttled(), false);
        }
        if s.faults.fail_writes > 0 && writes(req) {
            s.faults.fail_writes -= 1;
            s.stats.injected += 1;
            return (
                fault_of(
                    503,
                    "SystemFault",
                    "10000",
                    "Service Unavailable",
                    "The service is unavailable; try again later.",
                ),
                false,
            );
        }
        let roll = s.rng.f64();
        if roll < s.faults.error_rate {
            s.stats.injected += 1;
            let a = if s.rng.bool() {
                fault_of(
                    500,
                    "SystemFault",
                    "10000",
                    "An application error has occurred while processing your request",
                    "System Failure Error: An unexpected error occurred while accessing or saving your data.",
                )
            } else {
                fault_of(
                    503,
                    "SystemFault",
                    "10000",
                    "Service Unavailable",
                    "The service is unavailable; try again later.",
                )
            };
            return (a, false);
        }
        let reset = s.rng.f64() < s.faults.reset_rate;
        if reset {
            s.stats.injected += 1;
            s.stats.resets += 1;
        }
        let minute = Duration::from_secs(60);
        let w = s.windows.entry(req.realm.clone()).or_default();
        while w.minute.front().is_some_and(|t| *t + minute <= now) {
            w.minute.pop_front();
        }
        while w.batches.front().is_some_and(|t| *t + minute <= now) {
            w.batches.pop_front();
        }
        let batch = items > 1 || req.segments.first().map(String::as_str) == Some("batch");
        let over = if w.in_flight >= cfg.concurrent_limit {
            Some(("concurrent", 1))
        } else if w.minute.len() + items > cfg.minute_limit as usize {
            Some(("minute", retry_after(&w.minute, minute, now)))
        } else if batch && w.batches.len() >= cfg.batch_minute_limit as usize {
            Some(("batch", retry_after(&w.batches, minute, now)))
        } else {
            None
        };
        if let Some((which, _)) = over {
            match which {
                "concurrent" => s.stats.over_concurrent += 1,
                "minute" => s.stats.over_minute += 1,
                _ => s.stats.over_batch_minute += 1,
            }
            return (throttled(), false);
        }
        for _ in 0..items {
            w.minute.push_back(now);
        }
        if batch {
            w.batches.push_back(now);
        }
        w.in_flight += 1;
        let at_once = u64::from(w.in_flight);
        s.stats.most_at_once = s.stats.most_at_once.max(at_once);
        (s.faults.latency, reset)
    };
    let _in_flight = InFlight {
        shared,
        realm: req.realm.clone(),
    };
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let a = if unreadable {
        fault_of(
            400,
            "ValidationFault",
            "2010",
            "Request has invalid or unsupported property",
            "The request body is not valid JSON",
        )
    } else {
        replayed(shared, req)
    };
    (a, reset)
}

/// Whether a request writes (a batch with any item but a query).
fn writes(req: &Request) -> bool {
    match req.segments.first().map(String::as_str) {
        _ if req.method != Method::POST => false,
        Some("query") => false,
        Some("batch") => req
            .json
            .as_ref()
            .and_then(|b| b.get("BatchItemRequest"))
            .and_then(Value::as_array)
            .is_some_and(|items| items.iter().any(|i| i.get("Query").is_none())),
        _ => true,
    }
}

/// The operation under its `requestid`: the check, the work and the answer
/// kept happen under one lock, so two racing requests do the work once.
fn replayed(shared: &Shared, req: &Request) -> Answer {
    let mut s = shared.state();
    let key = req.query.get("requestid").cloned();
    let fingerprint = format!(
        "{} {} {} {}",
        req.method,
        req.segments.join("/"),
        req.json.as_ref().map(Value::to_string).unwrap_or_default(),
        req.text.clone().unwrap_or_default()
    );
    if let Some(k) = &key {
        if k.chars().count() > 50 {
            return fault_of(
                400,
                "ValidationFault",
                "2050",
                "String length is either shorter or longer than supported by specification",
                "requestid may be at most 50 characters",
            );
        }
        let now = s.now();
        let ttl = shared.config.request_id_ttl;
        s.replays.retain(|_, r| r.at + ttl > now);
        match s.replays.get(&(req.realm.clone(), k.clone())) {
            Some(r) if r.request == fingerprint => {
                let a = answer(r.status, r.answer.clone());
                s.stats.request_replays += 1;
                return a;
            }
            Some(_) => {
                return fault_of(
                    400,
                    "ValidationFault",
                    "600",
                    "Duplicate request id",
                    &format!("The requestid {k} was already used with another request"),
                );
            }
            None => {}
        }
    }
    let a = route(shared, &mut s, req);
    if let Some(k) = key
        && a.status < 500
        && a.status != 429
    {
        let now = s.now();
        s.replays.insert(
            (req.realm.clone(), k),
            Replay {
                request: fingerprint,
                status: a.status,
                answer: a.body.clone(),
                at: now,
            },
        );
    }
    a
}

/// The operation a write asks for (`operation=...&include=void`).
fn op_of(operation: Option<&str>, include: Option<&str>, has_id: bool) -> Result<Op, String> {
    match (operation, include) {
        (Some("delete"), _) => Ok(Op::Delete),
        (Some("update"), Some("void")) => Ok(Op::Void),
        (Some("update"), _) => Ok(Op::Update),
        (Some("create"), _) => Ok(Op::Create),
        (None, _) if has_id => Ok(Op::Update),
        (None, _) => Ok(Op::Create),
        (Some(other), _) => Err(format!("operation {other} is not supported")),
    }
}

fn route(shared: &Shared, s: &mut State, req: &Request) -> Answer {
    let segs: Vec<&str> = req.segments.iter().map(String::as_str).collect();
    let method = req.method.as_str();
    if segs == ["batch"] && method == "POST" {
        return batch(shared, s, req);
    }
    if segs == ["query"] {
        let q = match (method, &req.text) {
            ("POST", Some(t)) => Some(t.clone()),
            ("GET", _) => req.query.get("query").cloned(),
            _ => None,
        };
        let Some(q) = q else {
            return fault_of(
                400,
                "ValidationFault",
                "4000",
                "Error parsing query",
                "QueryParserError: no query (POST it as application/text, or GET with ?query=)",
            );
        };
        let company = s.companies.get(&req.realm).expect("checked");
        return match run_query(company, &q) {
            Ok(v) => answer(200, json!({"QueryResponse": v, "time": time()})),
            Err(e) => fault(400, "ValidationFault", &[e]),
        };
    }
    let company = s.companies.get_mut(&req.realm).expect("checked");
    let entity = match segs.first().copied() {
        Some("bill") => "Bill",
        Some("billpayment") => "BillPayment",
        Some("vendor") => "Vendor",
        Some("preferences") if method == "GET" => {
            return answer(
                200,
                json!({"Preferences": company.preferences_json(), "time": time()}),
            );
        }
        _ => {
            return fault_of(
                400,
                "ValidationFault",
                "500",
                "Unsupported Operation",
                &format!("Operation {method} /{} is not supported.", segs.join("/")),
            );
        }
    };
    if method == "GET" {
        let Some(id) = segs.get(1) else {
            return fault_of(
                400,
                "ValidationFault",
                "500",
                "Unsupported Operation",
                "an id is needed",
            );
        };
        let found = company
            .entities(entity)
            .unwrap_or_default()
            .into_iter()
            .find(|v| v["Id"].as_str() == Some(id));
        return match found {
            Some(v) => answer(200, json!({entity: v, "time": time()})),
            None => fault(400, "ValidationFault", &[model::not_found(entity, id)]),
        };
    }
    if method != "POST" || segs.len() != 1 {
        return fault_of(
            400,
            "ValidationFault",
            "500",
            "Unsupported Operation",
            "only POST writes",
        );
    }
    let Some(body) = &req.json else {
        return fault_of(
            400,
            "ValidationFault",
            "2020",
            "Required param missing, need to supply the required value for the API",
            "The request has no body",
        );
    };
    let r = write(
        &mut s.stats,
        company,
        entity,
        body,
        req.query.get("operation").map(String::as_str),
        req.query.get("include").map(String::as_str),
    );
    match r {
        Ok(v) => answer(200, json!({entity: v, "time": time()})),
        Err(e) => fault(400, "ValidationFault", &[e]),
    }
}

fn run_query(company: &Company, q: &str) -> Result<Value, QbError> {
    let parsed = query::parse(q).map_err(|e| QbError {
        code: e.code,
        message: if e.code == "4000" {
            "Error parsing query"
        } else {
            "Invalid query"
        },
        detail: e.detail,
        element: String::new(),
    })?;
    Ok(parsed.answer(company.entities(&parsed.entity).unwrap_or_default()))
}

/// One write of an entity.
fn write(
    stats: &mut Stats,
    company: &mut Company,
    entity: &str,
    body: &Value,
    operation: Option<&str>,
    include: Option<&str>,
) -> Result<Value, QbError> {
    let op = op_of(operation, include, body.get("Id").is_some()).map_err(|m| QbError {
        code: "500",
        message: "Unsupported Operation",
        detail: m,
        element: String::new(),
    })?;
    let allow_duplicate =
        include.is_some_and(|i| i.split(',').any(|x| x == "allowduplicatedocnum"));
    let r = match entity {
        "Bill" => company.save_bill(body, op),
        "BillPayment" => company.save_payment(body, op, allow_duplicate),
        _ if op == Op::Create => company.save_vendor(body),
        _ => Err(QbError {
            code: "500",
            message: "Unsupported Operation",
            detail: "this simulator only creates vendors".into(),
            element: String::new(),
        }),
    };
    if r.is_ok() && op == Op::Create {
        match entity {
            "Bill" => stats.bills_created += 1,
            "BillPayment" => stats.bill_payments_created += 1,
            _ => stats.vendors_created += 1,
        }
    }
    r
}

/// `POST /batch`: each item on its own, in order; a `BatchItemResponse`
/// per `bId`.
fn batch(shared: &Shared, s: &mut State, req: &Request) -> Answer {
    let items = match req
        .json
        .as_ref()
        .and_then(|b| b.get("BatchItemRequest"))
        .and_then(Value::as_array)
    {
        Some(i) if !i.is_empty() => i.clone(),
        _ => {
            return fault_of(
                400,
                "ValidationFault",
                "2020",
                "Required param missing, need to supply the required value for the API",
                "Required parameter BatchItemRequest is missing in the request",
            );
        }
    };
    // ERP_FACTS: at most 30 items. The code is our guess; the message
    // names the limit.
    if items.len() > shared.config.batch_items {
        return fault_of(
            400,
            "ValidationFault",
            "1040",
            "Batch request is too large",
            &format!(
                "The batch has {} items; at most {} are allowed",
                items.len(),
                shared.config.batch_items
            ),
        );
    }
    s.stats.batch_requests += 1;
    s.stats.batch_items += items.len() as u64;
    let company = s.companies.get_mut(&req.realm).expect("checked");
    let mut out = Vec::new();
    let mut seen = Vec::new();
    for item in &items {
        let bid = item
            .get("bId")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let err = |e: QbError| json!({"bId": bid, "Fault": {"Error": [e.json()], "type": "ValidationFault"}});
        if bid.is_empty() || seen.contains(&bid) {
            out.push(err(QbError {
                code: "2020",
                message: "Required param missing, need to supply the required value for the API",
                detail: "Every batch item needs a bId of its own".into(),
                element: "bId".into(),
            }));
            continue;
        }
        seen.push(bid.clone());
        if let Some(q) = item.get("Query").and_then(Value::as_str) {
            if let Some(t) = &s.refuse_queries_naming
                && q.contains(t.as_str())
            {
                out.push(err(QbError {
                    code: "4000",
                    message: "Error parsing query",
                    detail: format!(
                        "QueryParserError: Encountered \"{t}\" (refused by a fault injected)"
                    ),
                    element: String::new(),
                }));
                continue;
            }
            out.push(match run_query(company, q) {
                Ok(v) => json!({"bId": bid, "QueryResponse": v}),
                Err(e) => err(e),
            });
            continue;
        }
        let entity = ["Bill", "BillPayment", "Vendor"]
            .into_iter()
            .find(|e| item.get(*e).is_some());
        let Some(entity) = entity else {
            out.push(err(QbError {
                code: "500",
                message: "Unsupported Operation",
                detail: "The batch item names no supported entity or query".into(),
                element: String::new(),
            }));
            continue;
        };
        let include = item
            .get("optionsData")
            .and_then(Value::as_str)
            .and_then(|o| url_decode_pairs(o).get("include").cloned());
        let r = write(
            &mut s.stats,
            company,
            entity,
            &item[entity],
            item.get("operation").and_then(Value::as_str),
            include.as_deref(),
        );
        out.push(match r {
            Ok(v) => json!({"bId": bid, entity: v}),
            Err(e) => err(e),
        });
    }
    let writes = items.iter().filter(|i| i.get("Query").is_none()).count();
    if writes >= 2
        && out.len() >= 2
        && let Some((lie, times)) = s.lie.take()
    {
        s.lie = (times > 1).then_some((lie, times - 1));
        let first = out[0]["bId"].clone();
        match lie {
            BatchLie::SwapBIds => {
                out[0]["bId"] = out[1]["bId"].clone();
                out[1]["bId"] = first;
            }
            BatchLie::DuplicateBId => out[1]["bId"] = first,
        }
    }
    answer(200, json!({"BatchItemResponse": out, "time": time()}))
}
