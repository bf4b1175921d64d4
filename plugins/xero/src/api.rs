//! Requests to the Xero Accounting API 2.0 and the reading of its answers
//! at the level of a whole request: authentication, rate limits, outages.
//! What an element of an answer means is `answers.rs`.
//!
//! The host adds `Authorization: Bearer …` (the connection's OAuth2 access
//! token) to every request; this connector never sees it.

use ledgerbridge_sdk::http::{self, Request, Response};
use ledgerbridge_sdk::{CallError, ConnectorError, Context, RateLimit, log};
use serde_json::Value;

/// Xero's own API base; a connection may name another (the simulator).
pub const DEFAULT_API_URL: &str = "https://api.xero.com/api.xro/2.0";
/// Xero's limit on an `Idempotency-Key`.
const MAX_KEY: usize = 128;
/// Invoices a page of `GET /Invoices` holds (Xero's most is 1,000; 100 is
/// its default and keeps answers small).
pub const PAGE_SIZE: usize = 100;
/// Pages read for one lookup at most: a vendor number shared by more than
/// a thousand bills is not a lookup this connector can settle.
const MAX_PAGES: usize = 10;

/// Why a request failed as a whole.
#[derive(Debug, Clone)]
pub enum Failure {
    /// Nothing was done for any item: the host retries or pauses.
    Call(CallError),
    /// The same answer for every item (a bad setting, a 400 about the
    /// request itself, a 404).
    Each(ConnectorError),
}

impl From<CallError> for Failure {
    fn from(e: CallError) -> Self {
        Failure::Call(e)
    }
}

/// One organisation's API, as a connection names it.
pub struct Xero<'a> {
    base: String,
    tenant: &'a str,
    ctx: &'a Context,
}

impl<'a> Xero<'a> {
    /// The API of the connection's organisation (`tenant-id`).
    pub fn of(ctx: &'a Context) -> Result<Xero<'a>, ConnectorError> {
        let tenant = ctx.require_setting("tenant-id")?;
        let base = ctx
            .setting("api-url")
            .filter(|v| !v.trim().is_empty())
            .unwrap_or(DEFAULT_API_URL)
            .trim()
            .trim_end_matches('/')
            .to_string();
        if !(base.starts_with("https://") || base.starts_with("http://")) {
            return Err(ConnectorError::validation(
                "settings.api-url",
                format!("`{base}` is not an http(s) URL"),
            ));
        }
        Ok(Xero { base, tenant, ctx })
    }

    fn request(&self, r: Request) -> Request {
        r.header("xero-tenant-id", self.tenant)
            .header("accept", "application/json")
    }

    /// The idempotency key sent with writes: the host's, or its digest
    /// when longer than Xero takes.
    fn key(&self) -> String {
        let k = &self.ctx.idempotency_key;
        if k.len() <= MAX_KEY {
            return k.clone();
        }
        use sha2::{Digest, Sha256};
        let digest = Sha256::digest(k.as_bytes());
        digest.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// `GET {path}?{query}` answered 2xx, as JSON.
    pub fn get(&self, path: &str, query: &[(&str, &str)]) -> Result<Value, Failure> {
        let url = format!("{}{path}{}", self.base, encode(query));
        let r = self.request(Request::get(url)).send();
        read(r, &format!("GET {path}"))
    }

    /// `PUT`/`POST {path}?summarizeErrors=false` with `body` and the call's
    /// idempotency key. A 400 ValidationException answer is returned as
    /// JSON too (its elements carry the errors).
    pub fn write(&self, method: &str, path: &str, body: &Value) -> Result<Value, Failure> {
        // Four decimals for unit amounts where Xero takes them (invoices),
        // so currencies of three digits are not rounded.
        let query: &[(&str, &str)] = if path.starts_with("/Invoices") {
            &[("summarizeErrors", "false"), ("unitdp", "4")]
        } else {
            &[("summarizeErrors", "false")]
        };
        let url = format!("{}{path}{}", self.base, encode(query));
        let r = match method {
            "PUT" => Request::put(url),
            _ => Request::post(url),
        };
        let r = self
            .request(r)
            .header("content-type", "application/json")
            .header("idempotency-key", self.key())
            .json(body)
            .send();
        read(r, &format!("{method} {path}"))
    }

    /// Every invoice `GET /Invoices` finds with `query`, page by page.
    pub fn invoices(&self, query: &[(&str, &str)]) -> Result<Vec<Value>, Failure> {
        let mut all = Vec::new();
        let size = PAGE_SIZE.to_string();
        for page in 1..=MAX_PAGES {
            let page_text = page.to_string();
            let mut q = query.to_vec();
            q.push(("page", &page_text));
            q.push(("pageSize", &size));
            let answer = self.get("/Invoices", &q)?;
            let got = match answer.get("Invoices") {
                Some(Value::Array(v)) => v.clone(),
                _ => Vec::new(),
            };
            let n = got.len();
            all.extend(got);
            if n < PAGE_SIZE {
                return Ok(all);
            }
        }
        log::warn(format!(
            "GET /Invoices: more than {} invoices match; only those were read",
            MAX_PAGES * PAGE_SIZE
        ));
        Ok(all)
    }

    /// The organisation's lock dates (`YYYY-MM-DD`): period, end of year.
    pub fn lock_dates(&self) -> Result<(Option<String>, Option<String>), Failure> {
        let answer = self.get("/Organisation", &[])?;
        let org = answer
            .get("Organisations")
            .and_then(|o| o.get(0))
            .cloned()
            .unwrap_or(Value::Null);
        let date = |k: &str| {
            org.get(k)
                .and_then(Value::as_str)
                .and_then(crate::wire::date_of)
        };
        Ok((date("PeriodLockDate"), date("EndOfYearLockDate")))
    }
}

/// A query string, `?a=b&c=d`, or nothing.
fn encode(query: &[(&str, &str)]) -> String {
    if query.is_empty() {
        return String::new();
    }
    let mut s = form_urlencoded::Serializer::new(String::from("?"));
    for (k, v) in query {
        s.append_pair(k, v);
    }
    // form encoding writes spaces as `+`, which Xero's `where` reads as a
    // space too; `%20` is the unambiguous form.
    s.finish().replace('+', "%20")
}

/// An answer read at the level of the request (see the README's table).
fn read(r: Result<Response, http::HttpError>, what: &str) -> Result<Value, Failure> {
    let r = match r {
        Ok(r) => r,
        Err(http::HttpError::Transport(m)) => {
            return Err(CallError::Unavailable(format!("{what}: {m}")).into());
        }
        Err(other) => {
            return Err(Failure::Each(ConnectorError::validation(
                "settings.api-url",
                format!("{what}: {other}"),
            )));
        }
    };
    let detail = || detail(&r);
    match r.status {
        200..=299 => r.json().map_err(|e| match e {
            ConnectorError::Unavailable(m) => CallError::Unavailable(format!("{what}: {m}")).into(),
            other => Failure::Each(other),
        }),
        // A validation exception names its elements: the caller reads them.
        400 if r
            .json()
            .ok()
            .is_some_and(|j| j.get("Elements").is_some_and(Value::is_array)) =>
        {
            r.json().map_err(Failure::Each)
        }
        400 => Err(Failure::Each(ConnectorError::validation(
            "",
            format!("Xero refused {what}: {}", detail()),
        ))),
        401 => Err(CallError::Unauthorized(format!(
            "Xero answered 401 to {what}: the access token is expired or invalid ({})",
            detail()
        ))
        .into()),
        403 => Err(CallError::Unauthorized(format!(
            "Xero answered 403 to {what}: the app is not connected to this organisation (setting tenant-id) or lacks the scope ({})",
            detail()
        ))
        .into()),
        404 => Err(Failure::Each(ConnectorError::NotFound(format!(
            "Xero has no such resource ({what})"
        )))),
        429 => {
            let problem = r.header("x-rate-limit-problem").unwrap_or("unknown");
            let which = match problem {
                "minute" => "60 calls a minute",
                "day" => "5,000 calls a day",
                "concurrent" => "5 calls at once",
                "appminute" => "the app's 10,000 calls a minute",
                _ => "a limit",
            };
            Err(CallError::RateLimited(RateLimit {
                retry_after_ms: r.retry_after_ms(),
                message: format!(
                    "Xero refused {what}: over its limit of {which} for the organisation (X-Rate-Limit-Problem: {problem}; Retry-After: {})",
                    r.header("retry-after").unwrap_or("none")
                ),
            })
            .into())
        }
        s => Err(CallError::Unavailable(format!(
            "Xero answered {s} to {what}: {}",
            detail()
        ))
        .into()),
    }
}

/// What Xero said, short: an error's `Message`/`Detail`, else the text.
fn detail(r: &Response) -> String {
    if let Ok(j) = r.json() {
        for k in ["Message", "Detail", "Title", "error"] {
            if let Some(m) = j.get(k).and_then(Value::as_str) {
                return m.chars().take(300).collect();
            }
        }
    }
    r.text_lossy(300)
}
