//! A simulator of the Xero Accounting API 2.0 on loopback, faithful to
//! `shared/reference/ERP_FACTS.md` and to Xero's OpenAPI description: bills
//! (invoices of `Type: ACCPAY`) and payments in Xero's wire format, OAuth2
//! with rotating refresh tokens, lock dates, paid bills that cannot change,
//! idempotency keys, Xero's rate limits and their headers, and faults a
//! test can inject.
//!
//! What it does not model: sales-side features (quotes, credit notes,
//! repeating invoices), currencies other than at rate 1, attachments,
//! contacts and accounts endpoints. `where` is a Dynamic-LINQ-like subset
//! (see `query.rs`): comparisons, `guid()`, `DateTime()`, `Contains` /
//! `StartsWith` / `EndsWith`, `AND`/`OR`/`NOT` and parentheses, over the
//! record's answer shape. Where ERP_FACTS is silent, it follows Xero's
//! documentation as we know it and says so beside the code. Known
//! differences on purpose: a spent refresh token is refused at once (Xero
//! lets it be retried for a 30-minute grace period; stricter here, so a
//! client that works here works there), and a reset drops the connection
//! after the work is done (the answer is lost, the write is not).

mod model;
mod query;
mod wire;

pub use crate::common::Faults;
pub use model::{Account, AccountKind, Organisation};

use crate::common::{Answer, answer, decode, retry_after, to_response, url_decode_pairs};
use crate::oauth::{OAuth, Refused};
use axum::body::Bytes;
use axum::extract::State as Shared_;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::Response;
use model::Books;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The API's base path.
const BASE: &str = "/api.xro/2.0";

/// The simulator's limits and token lifetimes: Xero's, by default.
#[derive(Clone)]
pub struct Config {
    /// 0: any free port. Always 127.0.0.1.
    pub port: u16,
    pub minute_limit: u32,
    pub day_limit: u32,
    pub concurrent_limit: u32,
    pub app_minute_limit: u32,
    pub access_token_ttl: Duration,
    pub refresh_token_ttl: Duration,
    /// How long a key's first answer is replayed.
    pub idempotency_ttl: Duration,
    /// When set, every request and answer is checked against Xero's
    /// OpenAPI description; see [`XeroSim::violations`].
    pub openapi: Option<Arc<crate::openapi::OpenApi>>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            port: 0,
            minute_limit: 60,
            day_limit: 5000,
            concurrent_limit: 5,
            app_minute_limit: 10_000,
            access_token_ttl: Duration::from_secs(30 * 60),
            refresh_token_ttl: Duration::from_secs(60 * 24 * 3600),
            idempotency_ttl: Duration::from_secs(10 * 60),
            openapi: None,
        }
    }
}

/// What the simulator saw.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    /// API calls answered (refused ones included; the token endpoint not).
    pub calls: u64,
    pub by_status: BTreeMap<u16, u64>,
    /// Calls refused for the organisation's own limits.
    pub over_minute: u64,
    pub over_day: u64,
    pub over_concurrent: u64,
    pub over_app_minute: u64,
    /// Calls answered with an injected fault (resets included).
    pub injected: u64,
    /// Calls done whose connection was then dropped before the answer.
    pub resets: u64,
    pub most_at_once: u64,
    pub token_refreshes: u64,
    pub idempotent_replays: u64,
    pub invoices_created: u64,
    pub payments_created: u64,
}

/// One API request as received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    /// Path and query.
    pub path: String,
    pub idempotency_key: Option<String>,
    pub body: Option<Value>,
    pub status: u16,
}

#[derive(Default)]
struct Window {
    minute: VecDeque<Instant>,
    day: VecDeque<Instant>,
    in_flight: u32,
}

struct Replay {
    body: Value,
    status: u16,
    answer: Value,
    at: Instant,
}

struct State {
    books: HashMap<String, Books>,
    windows: HashMap<String, Window>,
    app_minute: VecDeque<Instant>,
    oauth: OAuth,
    replays: HashMap<(String, String), Replay>,
    faults: Faults,
    rng: fastrand::Rng,
    burst_left: u32,
    stats: Stats,
    requests: Vec<Recorded>,
    violations: Vec<String>,
    offset: Duration,
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

impl State {
    fn now(&self) -> Instant {
        Instant::now() + self.offset
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

/// A running simulated Xero. Cheap to clone; it serves until the last
/// clone is dropped.
#[derive(Clone)]
pub struct XeroSim(Arc<Handle>);

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl XeroSim {
    /// Starts serving on 127.0.0.1.
    pub async fn start(config: Config) -> anyhow::Result<XeroSim> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", config.port)).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            config,
            state: Mutex::new(State {
                books: HashMap::new(),
                windows: HashMap::new(),
                app_minute: VecDeque::new(),
                oauth: OAuth::default(),
                replays: HashMap::new(),
                faults: Faults::default(),
                rng: fastrand::Rng::with_seed(0),
                burst_left: 0,
                stats: Stats::default(),
                requests: Vec::new(),
                violations: Vec::new(),
                offset: Duration::ZERO,
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
        Ok(XeroSim(Arc::new(Handle {
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

    /// `http://127.0.0.1:PORT/api.xro/2.0`.
    pub fn api_url(&self) -> String {
        format!("http://{}{BASE}", self.0.addr)
    }

    /// `http://127.0.0.1:PORT/connect/token`.
    pub fn token_url(&self) -> String {
        format!("http://{}/connect/token", self.0.addr)
    }

    /// Adds an organisation; returns its tenant id (`xero-tenant-id`).
    pub fn add_organisation(&self, org: Organisation) -> String {
        let id = uuid::Uuid::new_v4().to_string();
        self.state()
            .books
            .insert(id.clone(), Books::new(id.clone(), org));
        id
    }

    /// Registers an app.
    pub fn add_client(&self, client_id: &str, client_secret: &str) {
        self.state().oauth.add_client(client_id, client_secret);
    }

    /// A refresh token for `client_id` to `tenant_id`, as the consent flow
    /// would give it.
    pub fn grant(&self, client_id: &str, tenant_id: &str) -> String {
        let mut s = self.state();
        let expires = s.now() + self.0.shared.config.refresh_token_ttl;
        s.oauth.grant(client_id, tenant_id, expires)
    }

    pub fn set_lock_dates(&self, tenant_id: &str, period: Option<&str>, end_of_year: Option<&str>) {
        if let Some(b) = self.state().books.get_mut(tenant_id) {
            b.org.period_lock_date = period.map(str::to_string);
            b.org.end_of_year_lock_date = end_of_year.map(str::to_string);
        }
    }

    /// Every invoice, as `GET /Invoices/{id}` answers it.
    pub fn invoices(&self, tenant_id: &str) -> Vec<Value> {
        let s = self.state();
        s.books.get(tenant_id).map_or_else(Vec::new, |b| {
            b.invoices.iter().map(|i| b.invoice_json(i, true)).collect()
        })
    }

    /// Every payment, deleted ones included.
    pub fn payments(&self, tenant_id: &str) -> Vec<Value> {
        let s = self.state();
        s.books.get(tenant_id).map_or_else(Vec::new, |b| {
            b.payments.iter().map(|p| b.payment_json(p)).collect()
        })
    }

    /// A person records a payment in Xero (from bank account 090); what
    /// Xero would say when it refuses it.
    pub fn pay(
        &self,
        tenant_id: &str,
        invoice_id: &str,
        amount: &str,
        date: &str,
    ) -> anyhow::Result<String> {
        let mut s = self.state();
        let b = s
            .books
            .get_mut(tenant_id)
            .ok_or_else(|| anyhow::anyhow!("no organisation {tenant_id}"))?;
        let el = json!({"Invoice": {"InvoiceID": invoice_id}, "Account": {"Code": "090"}, "Date": date, "Amount": amount, "Reference": "paid in Xero"});
        b.save_payment(&el, now_ms(), false)
            .map_err(|e| anyhow::anyhow!("Xero refuses the payment: {}", e.join("; ")))
    }

    /// A person deletes the invoice in Xero (voids it when approved).
    pub fn delete_invoice(&self, tenant_id: &str, invoice_id: &str) -> anyhow::Result<()> {
        let mut s = self.state();
        let b = s
            .books
            .get_mut(tenant_id)
            .ok_or_else(|| anyhow::anyhow!("no organisation {tenant_id}"))?;
        let status = b.invoice(invoice_id).map(|i| i.status.clone());
        let to = match status.as_deref() {
            Some("AUTHORISED") => "VOIDED",
            _ => "DELETED",
        };
        let el = json!({"InvoiceID": invoice_id, "Status": to});
        b.save_invoice(&el, false, now_ms(), false, true)
            .map(|_| ())
            .map_err(|e| anyhow::anyhow!("Xero refuses the deletion: {}", e.join("; ")))
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

    /// What the OpenAPI checks found in requests and answers.
    pub fn violations(&self) -> Vec<String> {
        self.state().violations.clone()
    }
}

fn problem(status: u16, title: &str, detail: &str) -> Answer {
    answer(
        status,
        json!({"Type": null, "Title": title, "Status": status, "Detail": detail, "Instance": uuid::Uuid::new_v4().to_string(), "Extensions": {}}),
    )
}

/// Xero's `ValidationException` without elements.
fn validation(message: &str) -> Answer {
    answer(
        400,
        json!({"ErrorNumber": 10, "Type": "ValidationException", "Message": message}),
    )
}

async fn serve(
    Shared_(shared): Shared_<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    if path == "/connect/token" {
        return to_response(token_endpoint(&shared, &method, &headers, &body));
    }
    let Some(rel) = path.strip_prefix(BASE) else {
        return to_response(problem(
            404,
            "Not Found",
            "The resource you're looking for cannot be found",
        ));
    };
    let rel = rel.to_string();
    let query = uri.query().unwrap_or("").to_string();
    let parsed: Option<Value> = if body.is_empty() {
        None
    } else {
        serde_json::from_slice(&body).ok()
    };
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    if let Some(spec) = &shared.config.openapi {
        let v = spec.check_request(method.as_str(), &rel, &query, parsed.as_ref());
        shared.state().violations.extend(v);
    }
    let (mut answer, reset) = api(
        &shared,
        &method,
        &rel,
        &query,
        &headers,
        &body,
        parsed.clone(),
    )
    .await;
    let tenant = headers.get("xero-tenant-id").and_then(|v| v.to_str().ok());
    remaining(&shared, tenant, &mut answer);
    {
        let mut s = shared.state();
        s.stats.calls += 1;
        *s.stats.by_status.entry(answer.status).or_default() += 1;
        s.requests.push(Recorded {
            method: method.to_string(),
            path: if query.is_empty() {
                rel.clone()
            } else {
                format!("{rel}?{query}")
            },
            idempotency_key: key,
            body: parsed,
            status: answer.status,
        });
    }
    if let Some(spec) = &shared.config.openapi {
        let v = spec.check_response(method.as_str(), &rel, answer.status, &answer.body);
        shared.state().violations.extend(v);
    }
    if reset {
        // The work is done; the answer never arrives.
        return crate::common::reset();
    }
    to_response(answer)
}

/// The OAuth2 token endpoint: refresh-token grants, rotating.
fn token_endpoint(shared: &Shared, method: &Method, headers: &HeaderMap, body: &[u8]) -> Answer {
    let cfg = &shared.config;
    let mut s = shared.state();
    let now = s.now();
    let (status, mut body, refreshed) = s.oauth.token_endpoint(
        method,
        headers,
        body,
        now,
        (cfg.access_token_ttl, cfg.refresh_token_ttl),
    );
    if refreshed {
        s.stats.token_refreshes += 1;
        body["scope"] = "offline_access accounting.transactions accounting.settings.read".into();
    }
    answer(status, body)
}

/// Decrements an organisation's calls in flight when an answer is done.
struct InFlight<'a> {
    shared: &'a Shared,
    org: String,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if let Some(w) = self.shared.state().windows.get_mut(&self.org) {
            w.in_flight = w.in_flight.saturating_sub(1);
        }
    }
}

/// An API call: authentication, faults, limits, then the operation.
/// Returns the answer and whether to drop the connection instead.
async fn api(
    shared: &Shared,
    method: &Method,
    rel: &str,
    query: &str,
    headers: &HeaderMap,
    raw: &[u8],
    body: Option<Value>,
) -> (Answer, bool) {
    let cfg = &shared.config;
    let tenant = headers
        .get("xero-tenant-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let (org, latency, reset) = {
        let mut s = shared.state();
        let now = s.now();
        let grant = match s.oauth.bearer(headers, now) {
            Ok(g) => g,
            Err(Refused::Unknown) => {
                return (
                    problem(401, "Unauthorized", "AuthenticationUnsuccessful"),
                    false,
                );
            }
            Err(Refused::Expired(ago)) => {
                // Xero names the moment, as `MM/dd/yyyy HH:mm:ss` (UTC).
                let at = chrono::Utc::now()
                    + chrono::Duration::from_std(s.offset).unwrap_or_default()
                    - chrono::Duration::from_std(ago).unwrap_or_default();
                let detail = format!(
                    "TokenExpired: token expired at {}",
                    at.format("%m/%d/%Y %H:%M:%S")
                );
                return (problem(401, "Unauthorized", &detail), false);
            }
        };
        let Some(org) = tenant.filter(|t| grant.tenants.contains(t) && s.books.contains_key(t))
        else {
            return (
                // Xero's own words for a missing or unconnected tenant.
                problem(403, "Forbidden", "AuthenticationUnsuccessful"),
                false,
            );
        };
        // Injected faults: nothing is done (a reset is decided now and
        // happens after the work).
        if s.burst_left > 0 {
            s.burst_left -= 1;
            s.stats.injected += 1;
            let mut a = problem(429, "Too Many Requests", "Rate limit exceeded");
            a.headers.push(("retry-after", "1".into()));
            a.headers.push(("x-rate-limit-problem", "minute".into()));
            return (a, false);
        }
        if s.faults.fail_writes > 0 && (*method == Method::PUT || *method == Method::POST) {
            s.faults.fail_writes -= 1;
            s.stats.injected += 1;
            return (
                problem(503, "Service Unavailable", "The organisation is offline"),
                false,
            );
        }
        let roll = s.rng.f64();
        if roll < s.faults.error_rate {
            s.stats.injected += 1;
            let a = if s.rng.bool() {
                problem(500, "Internal Server Error", "An error occurred in Xero")
            } else {
                problem(503, "Service Unavailable", "The organisation is offline")
            };
            return (a, false);
        }
        let reset = s.rng.f64() < s.faults.reset_rate;
        if reset {
            s.stats.injected += 1;
            s.stats.resets += 1;
        }
        // Limits, counted over rolling windows.
        let minute = Duration::from_secs(60);
        let day = Duration::from_secs(24 * 3600);
        while s.app_minute.front().is_some_and(|t| *t + minute <= now) {
            s.app_minute.pop_front();
        }
        let remaining_app =
            cfg.app_minute_limit as usize - s.app_minute.len().min(cfg.app_minute_limit as usize);
        let app_after = retry_after(&s.app_minute, minute, now);
        let w = s.windows.entry(org.clone()).or_default();
        while w.minute.front().is_some_and(|t| *t + minute <= now) {
            w.minute.pop_front();
        }
        while w.day.front().is_some_and(|t| *t + day <= now) {
            w.day.pop_front();
        }
        let over = if remaining_app == 0 {
            Some(("appminute", app_after))
        } else if w.in_flight >= cfg.concurrent_limit {
            Some(("concurrent", 1))
        } else if w.minute.len() >= cfg.minute_limit as usize {
            Some(("minute", retry_after(&w.minute, minute, now)))
        } else if w.day.len() >= cfg.day_limit as usize {
            Some(("day", retry_after(&w.day, day, now)))
        } else {
            None
        };
        if let Some((which, after)) = over {
            match which {
                "appminute" => s.stats.over_app_minute += 1,
                "concurrent" => s.stats.over_concurrent += 1,
                "minute" => s.stats.over_minute += 1,
                _ => s.stats.over_day += 1,
            }
            let mut a = problem(429, "Too Many Requests", "Rate limit exceeded");
            a.headers.push(("retry-after", after.to_string()));
            a.headers.push(("x-rate-limit-problem", which.into()));
            return (a, false);
        }
        w.minute.push_back(now);
        w.day.push_back(now);
        w.in_flight += 1;
        let at_once = u64::from(w.in_flight);
        s.app_minute.push_back(now);
        s.stats.most_at_once = s.stats.most_at_once.max(at_once);
        (org, s.faults.latency, reset)
    };
    let _in_flight = InFlight {
        shared,
        org: org.clone(),
    };
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let a = if body.is_none() && !raw.is_empty() {
        validation("The request body is not valid JSON")
    } else {
        operation(shared, &org, method, rel, query, headers, body)
    };
    (a, reset)
}

/// Xero's `X-*Limit-Remaining` headers, on every API answer (refusals
/// included): what is left of the organisation's minute and day and of
/// the app's minute.
fn remaining(shared: &Shared, org: Option<&str>, a: &mut Answer) {
    let cfg = &shared.config;
    let s = shared.state();
    let w = org.and_then(|o| s.windows.get(o));
    let left = |limit: u32, used: usize| (limit as usize).saturating_sub(used).to_string();
    a.headers.push((
        "x-minlimit-remaining",
        left(cfg.minute_limit, w.map_or(0, |w| w.minute.len())),
    ));
    a.headers.push((
        "x-daylimit-remaining",
        left(cfg.day_limit, w.map_or(0, |w| w.day.len())),
    ));
    a.headers.push((
        "x-appminlimit-remaining",
        left(cfg.app_minute_limit, s.app_minute.len()),
    ));
}

/// The envelope every successful answer has.
fn envelope(key: &str, items: Value) -> Value {
    json!({
        "Id": uuid::Uuid::new_v4().to_string(),
        "Status": "OK",
        "ProviderName": "ledgerbridge Xero simulator",
        "DateTimeUTC": format!("/Date({})/", now_ms()),
        key: items,
    })
}

fn operation(
    shared: &Shared,
    org: &str,
    method: &Method,
    rel: &str,
    query: &str,
    headers: &HeaderMap,
    body: Option<Value>,
) -> Answer {
    let q = url_decode_pairs(query);
    let segments: Vec<&str> = rel.trim_matches('/').split('/').collect();
    let write = *method == Method::PUT || *method == Method::POST;
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    // The key's check, the work and the answer kept happen under one lock,
    // so two requests racing with one key do the work once: the second
    // waits and replays the first's answer.
    let mut s = shared.state();
    if write && let Some(k) = &key {
        if k.len() > 128 {
            return validation("The Idempotency-Key may be at most 128 characters");
        }
        let now = s.now();
        let ttl = shared.config.idempotency_ttl;
        s.replays.retain(|_, r| r.at + ttl > now);
        let seen = s.replays.get(&(org.to_string(), k.clone())).map(|r| {
            (
                Some(&r.body) == body.as_ref() || (r.body.is_null() && body.is_none()),
                r.status,
                r.answer.clone(),
            )
        });
        match seen {
            Some((true, status, answer_body)) => {
                s.stats.idempotent_replays += 1;
                return answer(status, answer_body);
            }
            Some((false, _, _)) => {
                return validation("The Idempotency-Key was already used with a different request");
            }
            None => {}
        }
    }
    let a = route(&mut s, org, method, &segments, &q, headers, body.as_ref());
    if write
        && let Some(k) = key
        && a.status < 500
        && a.status != 429
    {
        let now = s.now();
        s.replays.insert(
            (org.to_string(), k),
            Replay {
                body: body.unwrap_or(Value::Null),
                status: a.status,
                answer: a.body.clone(),
                at: now,
            },
        );
    }
    a
}

fn route(
    s: &mut State,
    org: &str,
    method: &Method,
    segments: &[&str],
    q: &HashMap<String, String>,
    headers: &HeaderMap,
    body: Option<&Value>,
) -> Answer {
    let summarize = q.get("summarizeErrors").map(String::as_str) != Some("false");
    let unitdp4 = q.get("unitdp").map(String::as_str) == Some("4");
    match (method.as_str(), segments) {
        ("PUT", ["Invoices"]) => {
            return write_invoices(s, org, body, None, true, summarize, unitdp4);
        }
        ("POST", ["Invoices"]) => {
            return write_invoices(s, org, body, None, false, summarize, unitdp4);
        }
        ("POST", ["Invoices", id]) => {
            return write_invoices(
                s,
                org,
                body,
                Some(id.to_string()),
                false,
                summarize,
                unitdp4,
            );
        }
        ("PUT", ["Payments"]) => return write_payments(s, org, body, summarize),
        _ => {}
    }
    let Some(books) = s.books.get_mut(org) else {
        return problem(403, "Forbidden", "Unknown organisation");
    };
    match (method.as_str(), segments) {
        ("GET", ["Organisation"]) => {
            let o = &books.org;
            let date = |d: &Option<String>| d.as_deref().map_or(Value::Null, wire::json_date);
            let b = envelope(
                "Organisations",
                json!([{
                    "OrganisationID": books.id,
                    "Name": o.name,
                    "LegalName": o.name,
                    "PaysTax": true,
                    "Version": "US",
                    "OrganisationType": "COMPANY",
                    "BaseCurrency": o.base_currency,
                    "CountryCode": "US",
                    "IsDemoCompany": false,
                    "OrganisationStatus": "ACTIVE",
                    "FinancialYearEndDay": 31,
                    "FinancialYearEndMonth": 12,
                    "PeriodLockDate": date(&o.period_lock_date),
                    "EndOfYearLockDate": date(&o.end_of_year_lock_date),
                    "CreatedDateUTC": format!("/Date({})/", now_ms()),
                    "Timezone": "EASTERNSTANDARDTIME",
                    "OrganisationEntityType": "COMPANY",
                    "Edition": "BUSINESS",
                    "Class": "PREMIUM",
                    "Addresses": [], "Phones": [], "ExternalLinks": [], "PaymentTerms": {},
                }]),
            );
            answer(200, strip_nulls(b))
        }
        ("GET", ["Invoices"]) => list_invoices(books, q, headers),
        // Xero takes an InvoiceNumber in place of the InvoiceID here.
        ("GET", ["Invoices", id]) => match books
            .invoice(id)
            .or_else(|| books.invoices.iter().find(|i| i.number == decode(id)))
        {
            Some(i) => answer(
                200,
                envelope("Invoices", json!([books.invoice_json(i, true)])),
            ),
            None => problem(
                404,
                "Not Found",
                "The resource you're looking for cannot be found",
            ),
        },
        ("GET", ["Payments"]) => list_payments(books, q, headers),
        ("GET", ["Payments", id]) => match books
            .payments
            .iter()
            .find(|p| p.id.eq_ignore_ascii_case(id))
        {
            Some(p) => answer(200, envelope("Payments", json!([books.payment_json(p)]))),
            None => problem(
                404,
                "Not Found",
                "The resource you're looking for cannot be found",
            ),
        },
        ("POST", ["Payments", id]) => {
            let el = body
                .and_then(|b| {
                    b.get("Payments")
                        .and_then(|p| p.get(0))
                        .cloned()
                        .or(Some(b.clone()))
                })
                .unwrap_or(Value::Null);
            if el.get("Status").and_then(Value::as_str) != Some("DELETED") {
                return validation(
                    "Payments cannot be modified; a payment can only be deleted (Status DELETED)",
                );
            }
            match books.delete_payment(id, now_ms()) {
                Ok(()) => {
                    let p = books
                        .payments
                        .iter()
                        .find(|p| p.id.eq_ignore_ascii_case(id))
                        .cloned();
                    answer(
                        200,
                        envelope("Payments", json!([p.map(|p| books.payment_json(&p))])),
                    )
                }
                Err(m) => validation(&m),
            }
        }
        _ => problem(
            404,
            "Not Found",
            "The resource you're looking for cannot be found",
        ),
    }
}

/// Drops null-valued fields (Xero leaves unset fields out).
fn strip_nulls(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, strip_nulls(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(strip_nulls).collect()),
        other => other,
    }
}

/// `If-Modified-Since` as milliseconds: RFC 3339 (`2020-02-06T12:17:43.202-08:00`),
/// a zoneless `2020-02-06T12:17:43` (UTC), or an HTTP date.
fn modified_since(headers: &HeaderMap) -> Result<Option<i64>, Answer> {
    let Some(v) = headers.get("if-modified-since") else {
        return Ok(None);
    };
    let t = v.to_str().unwrap_or("").trim();
    let ms = chrono::DateTime::parse_from_rfc3339(t)
        .map(|d| d.timestamp_millis())
        .or_else(|_| chrono::DateTime::parse_from_rfc2822(t).map(|d| d.timestamp_millis()))
        .or_else(|_| {
            chrono::NaiveDateTime::parse_from_str(t, "%Y-%m-%dT%H:%M:%S%.f")
                .map(|d| d.and_utc().timestamp_millis())
        })
        .or_else(|_| {
            chrono::NaiveDate::parse_from_str(t, "%Y-%m-%d").map(|d| {
                d.and_hms_opt(0, 0, 0)
                    .unwrap_or_default()
                    .and_utc()
                    .timestamp_millis()
            })
        });
    match ms {
        Ok(ms) => Ok(Some(ms)),
        Err(_) => Err(validation(&format!(
            "The If-Modified-Since header '{t}' is not a valid date"
        ))),
    }
}

/// A `where` filter for records with `fields`, or Xero's 400.
fn where_of(
    q: &HashMap<String, String>,
    fields: &'static [&'static str],
) -> Result<Option<query::Where>, Answer> {
    q.get("where")
        .filter(|w| !w.trim().is_empty())
        .map(|w| query::parse(w, fields))
        .transpose()
        .map_err(|m| validation(&m))
}

/// Keeps the records `filter` passes; Xero's 400 for one it cannot judge.
fn filtered(items: Vec<Value>, filter: &Option<query::Where>) -> Result<Vec<Value>, Answer> {
    let Some(f) = filter else { return Ok(items) };
    let mut out = Vec::new();
    for v in items {
        if f.matches(&v).map_err(|m| validation(&m))? {
            out.push(v);
        }
    }
    Ok(out)
}

/// `order=Field [ASC|DESC]` over records in their answer shape.
fn ordered(
    items: &mut [Value],
    q: &HashMap<String, String>,
    fields: &[&str],
) -> Result<(), Answer> {
    let Some(order) = q.get("order").filter(|o| !o.trim().is_empty()) else {
        return Ok(());
    };
    let mut parts = order.split_whitespace();
    let field = parts.next().unwrap_or("").to_string();
    let desc = parts.next().is_some_and(|d| d.eq_ignore_ascii_case("DESC"));
    if !fields.iter().any(|f| f.eq_ignore_ascii_case(&field)) {
        return Err(validation(&format!(
            "No property or field '{field}' exists to order by"
        )));
    }
    let key = |v: &Value| -> (i64, f64, String) {
        let x = v.get(&field).cloned().unwrap_or(Value::Null);
        match &x {
            Value::String(s) => match wire::date_ms(s) {
                Some(ms) => (ms, 0.0, String::new()),
                None => (0, 0.0, s.to_lowercase()),
            },
            Value::Number(n) => (0, n.as_f64().unwrap_or(0.0), String::new()),
            _ => (0, 0.0, String::new()),
        }
    };
    items.sort_by(|a, b| {
        let (ka, kb) = (key(a), key(b));
        let o =
            ka.0.cmp(&kb.0)
                .then(ka.1.partial_cmp(&kb.1).unwrap_or(std::cmp::Ordering::Equal))
                .then(ka.2.cmp(&kb.2));
        if desc { o.reverse() } else { o }
    });
    Ok(())
}

/// `GET /Invoices` with Xero's filters; line items only on paged reads
/// (as Xero's documentation of `page` says).
fn list_invoices(books: &Books, q: &HashMap<String, String>, headers: &HeaderMap) -> Answer {
    let list = |k: &str| -> Option<Vec<String>> {
        q.get(k).map(|v| {
            v.split(',')
                .map(|x| x.trim().trim_matches('"').to_string())
                .filter(|x| !x.is_empty())
                .collect()
        })
    };
    let ids = list("IDs");
    let numbers = list("InvoiceNumbers");
    let statuses = list("Statuses");
    let contacts = list("ContactIDs");
    let search = q
        .get("searchTerm")
        .or_else(|| q.get("SearchTerm"))
        .map(|s| s.to_lowercase());
    let filter = match where_of(q, query::INVOICE_FIELDS) {
        Ok(f) => f,
        Err(a) => return a,
    };
    let since = match modified_since(headers) {
        Ok(s) => s,
        Err(a) => return a,
    };
    for (name, l) in [("IDs", &ids), ("ContactIDs", &contacts)] {
        if let Some(l) = l
            && let Some(bad) = l.iter().find(|i| uuid::Uuid::parse_str(i).is_err())
        {
            return validation(&format!("'{bad}' is not a valid GUID in {name}"));
        }
    }
    let mut found: Vec<&model::Invoice> = books
        .invoices
        .iter()
        .filter(|i| {
            ids.as_ref()
                .is_none_or(|l| l.iter().any(|x| x.eq_ignore_ascii_case(&i.id)))
        })
        .filter(|i| numbers.as_ref().is_none_or(|l| l.contains(&i.number)))
        .filter(|i| statuses.as_ref().is_none_or(|l| l.contains(&i.status)))
        .filter(|i| {
            contacts
                .as_ref()
                .is_none_or(|l| l.iter().any(|x| x.eq_ignore_ascii_case(&i.contact_id)))
        })
        .filter(|i| since.is_none_or(|t| i.updated_ms >= t))
        .filter(|i| {
            search
                .as_ref()
                .is_none_or(|s| i.number.to_lowercase().contains(s.as_str()))
        })
        .collect();
    found.sort_by_key(|i| i.updated_ms);
    let all: Vec<Value> = found.iter().map(|i| books.invoice_json(i, true)).collect();
    let mut all = match filtered(all, &filter) {
        Ok(a) => a,
        Err(a) => return a,
    };
    if let Err(a) = ordered(&mut all, q, query::INVOICE_FIELDS) {
        return a;
    }
    let page: Option<usize> = q
        .get("page")
        .and_then(|p| p.parse().ok())
        .filter(|p| *p >= 1);
    let size: usize = q
        .get("pageSize")
        .and_then(|p| p.parse().ok())
        .unwrap_or(100)
        .clamp(1, 1000);
    let body = match page {
        Some(p) => {
            let total = all.len();
            let items: Vec<Value> = all.into_iter().skip((p - 1) * size).take(size).collect();
            let mut b = envelope("Invoices", items.into());
            b["pagination"] = json!({"page": p, "pageSize": size, "pageCount": total.div_ceil(size), "itemCount": total});
            b
        }
        None => envelope(
            "Invoices",
            all.into_iter()
                .map(|mut v| {
                    v["LineItems"] = json!([]);
                    v
                })
                .collect::<Vec<_>>()
                .into(),
        ),
    };
    answer(200, body)
}

/// `GET /Payments` with `where`, `order` and `If-Modified-Since`.
fn list_payments(books: &Books, q: &HashMap<String, String>, headers: &HeaderMap) -> Answer {
    let filter = match where_of(q, query::PAYMENT_FIELDS) {
        Ok(f) => f,
        Err(a) => return a,
    };
    let since = match modified_since(headers) {
        Ok(s) => s,
        Err(a) => return a,
    };
    let items: Vec<Value> = books
        .payments
        .iter()
        .filter(|p| since.is_none_or(|t| p.updated_ms >= t))
        .map(|p| books.payment_json(p))
        .collect();
    let mut items = match filtered(items, &filter) {
        Ok(i) => i,
        Err(a) => return a,
    };
    if let Err(a) = ordered(&mut items, q, query::PAYMENT_FIELDS) {
        return a;
    }
    answer(200, envelope("Payments", items.into()))
}

/// The elements of a write body: `{"Invoices": [...]}` or one object.
fn elements(body: Option<&Value>, key: &str) -> Result<Vec<Value>, Answer> {
    match body {
        Some(Value::Object(m)) if m.contains_key(key) => match &m[key] {
            Value::Array(a) => Ok(a.clone()),
            _ => Err(validation(&format!("{key} must be a list"))),
        },
        Some(v @ Value::Object(_)) => Ok(vec![v.clone()]),
        _ => Err(validation(
            "The request body is missing or is not an object",
        )),
    }
}

/// An element Xero refused, echoed with its errors (`HasErrors` on
/// invoices, `HasValidationErrors` on payments, as their schemas name it).
fn refused(el: &Value, errors: &[String], flag: &str) -> Value {
    let mut e = el.clone();
    if !e.is_object() {
        e = json!({});
    }
    e[flag] = true.into();
    e["StatusAttributeString"] = "ERROR".into();
    e["ValidationErrors"] = errors.iter().map(|m| json!({"Message": m})).collect();
    e
}

fn write_invoices(
    s: &mut State,
    org: &str,
    body: Option<&Value>,
    path_id: Option<String>,
    create_only: bool,
    summarize: bool,
    unitdp4: bool,
) -> Answer {
    let mut els = match elements(body, "Invoices") {
        Ok(e) => e,
        Err(a) => return a,
    };
    if let Some(id) = path_id {
        for e in &mut els {
            e["InvoiceID"] = id.clone().into();
        }
    }
    let books = s.books.get_mut(org).expect("checked");
    let now = now_ms();
    if summarize {
        // All or nothing: any element's error refuses the request.
        let checks: Vec<Result<String, Vec<String>>> = els
            .iter()
            .map(|e| books.save_invoice(e, create_only, now, true, unitdp4))
            .collect();
        if let Some(refusal) = all_or_nothing(&els, &checks, "HasErrors") {
            return refusal;
        }
    }
    let mut out = Vec::new();
    let mut created = 0;
    for e in &els {
        let new = e.get("InvoiceID").is_none();
        match books.save_invoice(e, create_only, now, false, unitdp4) {
            Ok(id) => {
                created += u64::from(new);
                let inv = books.invoice(&id).expect("saved");
                let mut v = books.invoice_json(inv, true);
                v["StatusAttributeString"] = "OK".into();
                out.push(v);
            }
            Err(m) => out.push(refused(e, &m, "HasErrors")),
        }
    }
    s.stats.invoices_created += created;
    answer(200, envelope("Invoices", out.into()))
}

/// With `summarizeErrors` (Xero's default), any element's error refuses
/// the whole request: a 400 `ValidationException` echoing every element,
/// the refused ones with their errors; nothing is saved.
fn all_or_nothing<T>(
    els: &[Value],
    checks: &[Result<T, Vec<String>>],
    flag: &str,
) -> Option<Answer> {
    if checks.iter().all(Result::is_ok) {
        return None;
    }
    let elements: Vec<Value> = els
        .iter()
        .zip(checks)
        .map(|(e, c)| match c {
            Err(m) => refused(e, m, flag),
            Ok(_) => e.clone(),
        })
        .collect();
    Some(answer(
        400,
        json!({"ErrorNumber": 10, "Type": "ValidationException", "Message": "A validation exception occurred", "Elements": elements}),
    ))
}

fn write_payments(s: &mut State, org: &str, body: Option<&Value>, summarize: bool) -> Answer {
    let els = match elements(body, "Payments") {
        Ok(e) => e,
        Err(a) => return a,
    };
    let books = s.books.get_mut(org).expect("checked");
    let now = now_ms();
    if summarize {
        let checks: Vec<_> = els
            .iter()
            .map(|e| books.save_payment(e, now, true))
            .collect();
        if let Some(refusal) = all_or_nothing(&els, &checks, "HasValidationErrors") {
            return refusal;
        }
    }
    let mut out = Vec::new();
    let mut created = 0;
    for e in &els {
        match books.save_payment(e, now, false) {
            Ok(id) => {
                created += 1;
                let p = books
                    .payments
                    .iter()
                    .find(|p| p.id == id)
                    .expect("saved")
                    .clone();
                let mut v = books.payment_json(&p);
                v["StatusAttributeString"] = "OK".into();
                out.push(v);
            }
            Err(m) => out.push(refused(e, &m, "HasValidationErrors")),
        }
    }
    s.stats.payments_created += created;
    answer(200, envelope("Payments", out.into()))
}
