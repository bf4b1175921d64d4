//! Requests to the QuickBooks Online Accounting API v3 and the reading of
//! its answers at the level of a whole request: authentication, limits,
//! outages. What a `Fault` of one item means is `faults.rs`.
//!
//! The host adds `Authorization: Bearer …` (the connection's OAuth2 access
//! token) to every request; this connector never sees it.

use ledgerbridge_sdk::http::{self, Request, Response};
use ledgerbridge_sdk::{CallError, ConnectorError, Context, RateLimit, log};
use serde_json::{Value, json};

/// Intuit's production API host; a connection may name another (the
/// sandbox, or the simulator).
pub const DEFAULT_API_URL: &str = "https://quickbooks.api.intuit.com";
/// The minor version asked for on every call (75 is the oldest Intuit
/// still serves).
pub const MINOR_VERSION: &str = "75";
/// Items this connector puts in one `POST /batch`. QuickBooks takes 30,
/// allows 40 batches a minute, and may count each item against its 500
/// requests a minute: at 12 items, 40 batches (480 items) keep under both.
pub const BATCH_ITEMS: usize = 12;
/// QuickBooks' limit on a `requestid`.
const MAX_REQUEST_ID: usize = 50;

/// Why a request failed as a whole.
#[derive(Debug, Clone)]
pub enum Failure {
    /// Nothing was done for any item: the host retries or pauses.
    Call(CallError),
    /// The same answer for every item (a bad setting, a refused request).
    Each(ConnectorError),
}

impl From<CallError> for Failure {
    fn from(e: CallError) -> Self {
        Failure::Call(e)
    }
}

/// One item's answer in a batch: its entity or `QueryResponse`, or the
/// errors of its `Fault` with the fault's type.
pub type ItemAnswer = Result<Value, (String, Vec<Value>)>;

/// One company's API, as a connection names it.
pub struct Qbo<'a> {
    base: String,
    minor: String,
    ctx: &'a Context,
}

impl<'a> Qbo<'a> {
    /// The API of the connection's company (`realm-id`).
    pub fn of(ctx: &'a Context) -> Result<Qbo<'a>, ConnectorError> {
        let realm = ctx.require_setting("realm-id")?.trim();
        if realm.is_empty() || !realm.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ConnectorError::validation(
                "settings.realm-id",
                format!("`{realm}` is not a QuickBooks company id (digits only)"),
            ));
        }
        let api = ctx
            .setting("api-url")
            .filter(|v| !v.trim().is_empty())
            .unwrap_or(DEFAULT_API_URL)
            .trim()
            .trim_end_matches('/');
        let host = api
            .strip_prefix("https://")
            .or_else(|| api.strip_prefix("http://"));
        match host {
            None => {
                return Err(ConnectorError::validation(
                    "settings.api-url",
                    format!("`{api}` is not an http(s) URL"),
                ));
            }
            // The connector adds `/v3/company/{realm}/...`: a path or query
            // here would only ever be answered 404 (and look like an outage).
            Some(h) if h.is_empty() || h.contains(['/', '?', '#', '@']) => {
                return Err(ConnectorError::validation(
                    "settings.api-url",
                    format!(
                        "`{api}` must be the API's scheme and host only, like {DEFAULT_API_URL}"
                    ),
                ));
            }
            Some(_) => {}
        }
        let minor = ctx
            .setting("minor-version")
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .unwrap_or(MINOR_VERSION);
        if minor.len() > 3 || !minor.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ConnectorError::validation(
                "settings.minor-version",
                format!("`{minor}` is not a minor version number"),
            ));
        }
        Ok(Qbo {
            base: format!("{api}/v3/company/{realm}"),
            minor: minor.to_string(),
            ctx,
        })
    }

    /// The `requestid` of one write of this call: a digest of the host's
    /// key, what the write is for, and its body. A retry of the same call
    /// sends the same request again under the same id (QuickBooks answers
    /// it from the first); a different body never reuses an id (which
    /// QuickBooks refuses).
    fn request_id(&self, purpose: &str, body: &str) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(self.ctx.idempotency_key.as_bytes());
        h.update([0]);
        h.update(purpose.as_bytes());
        h.update([0]);
        h.update(body.as_bytes());
        let hex: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
        hex[..MAX_REQUEST_ID.min(hex.len())].to_string()
    }

    fn url(&self, path: &str, query: &[(&str, &str)]) -> String {
        let mut s = form_urlencoded::Serializer::new(String::new());
        s.append_pair("minorversion", &self.minor);
        for (k, v) in query {
            s.append_pair(k, v);
        }
        format!("{}{path}?{}", self.base, s.finish())
    }

    /// `GET {path}` answered 2xx, as JSON.
    pub fn get(&self, path: &str) -> Result<Value, Failure> {
        let r = Request::get(self.url(path, &[]))
            .header("accept", "application/json")
            .send();
        read(r, &format!("GET {path}"))
    }

    /// `POST /batch` with `items` (at most [`BATCH_ITEMS`]; each gets its
    /// `bId`, its index). The answer of each item, in the items' order.
    pub fn batch(&self, purpose: &str, items: Vec<Value>) -> Result<Vec<ItemAnswer>, Failure> {
        let n = items.len();
        let items: Vec<Value> = items
            .into_iter()
            .enumerate()
            .map(|(i, mut v)| {
                v["bId"] = i.to_string().into();
                v
            })
            .collect();
        let body = json!({ "BatchItemRequest": items });
        let text = body.to_string();
        let writes = items.iter().any(|i| i.get("Query").is_none());
        let url = if writes {
            self.url("/batch", &[("requestid", &self.request_id(purpose, &text))])
        } else {
            self.url("/batch", &[])
        };
        let r = Request::post(url).json(&body).send();
        let answer = read(r, &format!("POST /batch ({purpose})"))?;
        let Some(list) = answer.get("BatchItemResponse").and_then(Value::as_array) else {
            return Err(CallError::Unavailable(format!(
                "POST /batch ({purpose}): QuickBooks' answer has no BatchItemResponse"
            ))
            .into());
        };
        let mut out: Vec<Option<ItemAnswer>> = vec![None; n];
        for r in list {
            let Some(i) = r
                .get("bId")
                .and_then(Value::as_str)
                .and_then(|b| b.parse::<usize>().ok())
                .filter(|i| *i < n)
            else {
                continue;
            };
            if out[i].is_some() {
                // Which answer is the item's? Neither can be trusted.
                return Err(CallError::Unavailable(format!(
                    "POST /batch ({purpose}): QuickBooks answered item {i} twice"
                ))
                .into());
            }
            out[i] = Some(match r.get("Fault") {
                Some(f) => Err((
                    f.get("type")
                        .and_then(Value::as_str)
                        .unwrap_or("ValidationFault")
                        .to_string(),
                    f.get("Error")
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default(),
                )),
                None => Ok(r.clone()),
            });
        }
        if out.iter().any(Option::is_none) {
            return Err(CallError::Unavailable(format!(
                "POST /batch ({purpose}): QuickBooks answered {} of {n} items",
                list.len()
            ))
            .into());
        }
        Ok(out.into_iter().flatten().collect())
    }

    /// Runs `queries` in as few batches as they fit, each page by page
    /// (a full page of [`PAGE`] asks for the next); every record found,
    /// and which queries QuickBooks refused. A query refused does not fail
    /// the others: only the items it was asked for get its error.
    pub fn queries(&self, entity: &str, queries: &[Query]) -> Result<Found, CallError> {
        let mut found = Found::default();
        let mut queries = queries.to_vec();
        // (query, start position, pages read so far)
        let mut pending: Vec<(usize, usize, usize)> = (0..queries.len()).map(|q| (q, 1, 0)).collect();
        while !pending.is_empty() {
            let mut next = Vec::new();
            for chunk in pending.chunks(BATCH_ITEMS) {
                let items = chunk
                    .iter()
                    .map(|&(q, start, _)| {
                        json!({ "Query": format!(
                            "{} startposition {start} maxresults {PAGE}",
                            queries[q].text
                        ) })
                    })
                    .collect();
                let answers = match self.batch("query", items) {
                    Ok(a) => a,
                    Err(Failure::Call(e)) => return Err(e),
                    Err(Failure::Each(e)) => {
                        for &(q, _, _) in chunk {
                            found.failed.push((q, queries[q].refused(e.clone())));
                        }
                        continue;
                    }
                };
                for (&(q, start, pages), a) in chunk.iter().zip(answers) {
                    match a {
                        Ok(v) => {
                            let page = v
                                .get("QueryResponse")
                                .and_then(|r| r.get(entity))
                                .and_then(Value::as_array)
                                .cloned()
                                .unwrap_or_default();
                            let full = page.len() >= PAGE;
                            found.records.extend(page);
                            if !full {
                            } else if pages + 1 < MAX_PAGES {
                                next.push((q, start + PAGE, pages + 1));
                            } else {
                                found.failed.push((
                                    q,
                                    ConnectorError::Unavailable(format!(
                                        "QuickBooks keeps answering full pages to `{}` (over {} records)",
                                        queries[q].text,
                                        PAGE * MAX_PAGES
                                    )),
                                ));
                            }
                        }
                        Err((kind, errors)) => {
                            let e = crate::faults::plain(&kind, &errors);
                            let again = match e {
                                ConnectorError::Validation(_) => queries[q].split(),
                                _ => None,
                            };
                            match again {
                                Some(each) => {
                                    log::warn(format!(
                                        "QuickBooks refused `{}`; its values are asked again one by one",
                                        queries[q].text.chars().take(200).collect::<String>()
                                    ));
                                    for one in each {
                                        next.push((queries.len(), 1, 0));
                                        queries.push(one);
                                    }
                                }
                                None => found.failed.push((q, queries[q].refused(e))),
                            }
                        }
                    }
                }
            }
            pending = next;
        }
        found.values = queries.iter().map(|q| q.values.clone()).collect();
        Ok(found)
    }

    /// The books' closing date (`Preferences.AccountingInfoPrefs.BookCloseDate`).
    pub fn book_close_date(&self) -> Result<Option<String>, Failure> {
        let p = self.get("/preferences")?;
        Ok(p.get("Preferences")
            .and_then(|p| p.get("AccountingInfoPrefs"))
            .and_then(|a| a.get("BookCloseDate"))
            .and_then(Value::as_str)
            .map(|d| d.chars().take(10).collect()))
    }
}

/// Records one query page asks for (QuickBooks' most).
pub const PAGE: usize = 1000;
/// Pages read of one query before the answer is taken as broken.
const MAX_PAGES: usize = 50;
/// Values one `IN (...)` query carries (QuickBooks' queries are limited
/// in length).
const PER_QUERY: usize = 50;

/// One query (without its paging) and what it asks about: the values it
/// names, and the host's field those values are (for its error).
#[derive(Debug, Clone)]
pub struct Query {
    pub text: String,
    pub values: Vec<String>,
    pub field: &'static str,
    /// For an `IN (...)` query, its entity and element: refused, it is
    /// asked again one value at a time, so one bad value fails only itself.
    pub one_by_one: Option<(String, String)>,
}

impl Query {
    /// `select * from {entity} where {element} in (...)` for `values`, in
    /// queries of [`PER_QUERY`]; `field` is the host's name of the values.
    pub fn any_of(
        entity: &str,
        element: &str,
        field: &'static str,
        values: &[String],
    ) -> Vec<Query> {
        let mut values = values.to_vec();
        values.sort_unstable();
        values.dedup();
        values
            .chunks(PER_QUERY)
            .map(|c| Query {
                text: format!(
                    "select * from {entity} where {element} in ({})",
                    c.iter().map(|v| quoted(v)).collect::<Vec<_>>().join(", ")
                ),
                values: c.to_vec(),
                field,
                one_by_one: (c.len() > 1).then(|| (entity.to_string(), element.to_string())),
            })
            .collect()
    }

    /// This `IN (...)` query as one query per value.
    fn split(&self) -> Option<Vec<Query>> {
        let (entity, element) = self.one_by_one.as_ref()?;
        Some(
            self.values
                .iter()
                .flat_map(|v| Query::any_of(entity, element, self.field, std::slice::from_ref(v)))
                .collect(),
        )
    }

    /// This query's error, naming its field when QuickBooks named none.
    fn refused(&self, e: ConnectorError) -> ConnectorError {
        match e {
            ConnectorError::Validation(v) if v.field.is_empty() || v.field == "request" => {
                ConnectorError::validation(self.field, v.message)
            }
            other => other,
        }
    }
}

/// What a set of queries found: every record, and the queries refused.
#[derive(Debug, Default)]
pub struct Found {
    pub records: Vec<Value>,
    /// (query, its error)
    failed: Vec<(usize, ConnectorError)>,
    /// Each query's values.
    values: Vec<Vec<String>>,
}

impl Found {
    /// The error of a query that asked about `value`, if one was refused.
    pub fn failure(&self, value: &str) -> Option<ConnectorError> {
        self.failed
            .iter()
            .find(|(q, _)| self.values[*q].iter().any(|v| v == value))
            .map(|(_, e)| e.clone())
    }

    /// The first refusal, if any query was refused.
    pub fn first_failure(&self) -> Option<ConnectorError> {
        self.failed.first().map(|(_, e)| e.clone())
    }
}

/// `'…'` in a query: a backslash escapes the next character, so quotes
/// and backslashes are escaped.
pub fn quoted(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
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
        401 => Err(CallError::Unauthorized(format!(
            "QuickBooks answered 401 to {what}: the access token is expired or invalid ({})",
            detail()
        ))
        .into()),
        403 => Err(CallError::Unauthorized(format!(
            "QuickBooks answered 403 to {what}: the app is not authorized for this company (setting realm-id) or lacks the accounting scope ({})",
            detail()
        ))
        .into()),
        429 => Err(CallError::RateLimited(RateLimit {
            retry_after_ms: r.retry_after_ms(),
            message: format!(
                "QuickBooks refused {what}: over its limits for the company (500 requests and 40 batches a minute, 10 at once): {}",
                detail()
            ),
        })
        .into()),
        400 => match r.json().ok().and_then(|j| j.get("Fault").cloned()) {
            Some(f) => {
                let kind = f.get("type").and_then(Value::as_str).unwrap_or("ValidationFault");
                let errors = f
                    .get("Error")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                Err(Failure::Each(crate::faults::plain(kind, &errors)))
            }
            None => Err(Failure::Each(ConnectorError::validation(
                "request",
                format!("QuickBooks refused {what}: {}", detail()),
            ))),
        },
        s => Err(CallError::Unavailable(format!(
            "QuickBooks answered {s} to {what}: {}",
            detail()
        ))
        .into()),
    }
}

/// What QuickBooks said, short: the first error's message and detail.
fn detail(r: &Response) -> String {
    if let Ok(j) = r.json() {
        let fault = j.get("Fault").or_else(|| j.get("fault"));
        let first = fault
            .and_then(|f| f.get("Error").or_else(|| f.get("error")))
            .and_then(|e| e.get(0));
        if let Some(e) = first {
            let text = |k: &str, k2: &str| {
                e.get(k)
                    .or_else(|| e.get(k2))
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string()
            };
            let s = format!(
                "{} ({})",
                text("Message", "message"),
                text("Detail", "detail")
            );
            return s.chars().take(300).collect();
        }
    }
    r.text_lossy(300)
}
