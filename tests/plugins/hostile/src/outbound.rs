//! Attacks on the host's outbound HTTP, its log and its reply bounds (P2, P6,
//! P7, P8). `lookup-bill` with `mode` set to one of these comes here; each
//! reports what it could do, so a test can tell a refused attack from one
//! that was never made.

use ledgerbridge_sdk::bindings::wasi::http::outgoing_handler;
use ledgerbridge_sdk::bindings::wasi::http::types::{
    FutureIncomingResponse, Method, OutgoingRequest, Scheme,
};
use ledgerbridge_sdk::http::{HttpError, Request};
use ledgerbridge_sdk::*;

fn found(id: String) -> Result<Option<Entry>, ConnectorError> {
    Ok(Some(Entry {
        id,
        version: None,
        state: EntryState::Open,
        total: None,
    }))
}

fn number(ctx: &Context, name: &str, default: usize) -> usize {
    ctx.setting(name)
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Starts a request with any method, without waiting for its response.
fn start(method: &Method, url: &str) -> Result<FutureIncomingResponse, String> {
    let (scheme, rest) = url.split_once("://").ok_or("no scheme")?;
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let request =
        OutgoingRequest::new(ledgerbridge_sdk::bindings::wasi::http::types::Fields::new());
    let scheme = if scheme == "https" {
        Scheme::Https
    } else {
        Scheme::Http
    };
    request
        .set_method(method)
        .and_then(|_| request.set_scheme(Some(&scheme)))
        .and_then(|_| request.set_authority(Some(authority)))
        .and_then(|_| request.set_path_with_query(Some(if path.is_empty() { "/" } else { path })))
        .map_err(|_| format!("bad request to {url}"))?;
    outgoing_handler::handle(request, None).map_err(|e| format!("{e:?}"))
}

/// Waits for a started request: its status, or the error code's name.
fn wait(f: &FutureIncomingResponse) -> String {
    f.subscribe().block();
    match f.get() {
        Some(Ok(Ok(r))) => r.status().to_string(),
        Some(Ok(Err(e))) => format!("{e:?}"),
        _ => "no response".into(),
    }
}

/// The attack `mode` names, or `None` when it is not one of these.
pub fn lookup_bill(ctx: &Context, mode: &str) -> Option<Result<Option<Entry>, ConnectorError>> {
    Some(match mode {
        // Methods that make a server send the request back, credentials
        // included; a GET beside them is the control.
        "trace" => {
            let url = match ctx.require_setting("target-url") {
                Ok(u) => u,
                Err(e) => return Some(Err(e)),
            };
            let mut seen = Vec::new();
            for (name, method) in [
                ("TRACE", Method::Trace),
                ("CONNECT", Method::Connect),
                ("GET", Method::Get),
            ] {
                let answer = start(&method, url).map_or_else(|e| e, |f| wait(&f));
                seen.push(format!("{name}={answer}"));
            }
            found(seen.join(" "))
        }
        // Reads back everything the server answers, for a server that echoes
        // the request: what the plugin logs is what it could read.
        "reflect" => {
            let url = match ctx.require_setting("target-url") {
                Ok(u) => u,
                Err(e) => return Some(Err(e)),
            };
            let response = match Request::get(url).header("x-plugin", "hostile").send() {
                Ok(r) => r,
                Err(e) => return Some(Err(e.into())),
            };
            log::info(format!("reflected headers: {:?}", response.headers));
            log::info(format!(
                "reflected body: {}",
                String::from_utf8_lossy(&response.body)
            ));
            found(format!("status {}", response.status))
        }
        // Thousands of requests started at once, none awaited but the first.
        "request-flood" => {
            let url = match ctx.require_setting("target-url") {
                Ok(u) => u,
                Err(e) => return Some(Err(e)),
            };
            let count = number(ctx, "count", 5000);
            let mut started = Vec::with_capacity(count);
            let mut refused = 0;
            for _ in 0..count {
                match start(&Method::Get, url) {
                    Ok(f) => started.push(f),
                    Err(_) => refused += 1,
                }
            }
            let first = started.first().map_or_else(|| "none".into(), wait);
            found(format!(
                "started {}, refused {refused}, first: {first}",
                started.len()
            ))
        }
        // Requests started all at once, then each awaited: a plugin that
        // sends concurrently (and abandons nothing).
        "request-burst" => {
            let url = match ctx.require_setting("target-url") {
                Ok(u) => u,
                Err(e) => return Some(Err(e)),
            };
            let count = number(ctx, "count", 8);
            let started: Vec<_> = (0..count).filter_map(|_| start(&Method::Get, url).ok()).collect();
            let answers: Vec<String> = started.iter().map(wait).collect();
            found(format!("burst of {}: {}", started.len(), answers.join(" ")))
        }
        // Denied requests with 4 KB host names: each makes the host write a
        // log line quoting the host.
        "denied-flood" => {
            let count = number(ctx, "count", 20_000);
            let long = "a".repeat(4000);
            let mut denied = 0;
            for i in 0..count {
                let url = format!("https://h{i}-{long}.invalid/x");
                if let Err(HttpError::Denied(_)) = Request::get(url).send() {
                    denied += 1;
                }
            }
            found(format!("denied {denied} of {count}"))
        }
        // Oversized replies.
        "big-id" => found("i".repeat(number(ctx, "bytes", 50_000_000))),
        "big-message" => Err(ConnectorError::Unavailable("m".repeat(number(
            ctx,
            "bytes",
            60 << 20,
        )))),
        _ => return None,
    })
}

/// `check-numbers-in-use`: a million numbers in mode `many-checks`, else the
/// first few of those asked about (the control).
pub fn check_numbers_in_use(ctx: &Context, first: u64, count: u32) -> Vec<u64> {
    let n = match ctx.setting("mode") {
        Some("many-checks") => 1_000_000,
        _ => u64::from(count.min(3)),
    };
    (first..first.saturating_add(n)).collect()
}
