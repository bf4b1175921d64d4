//! What the simulators share: answers, query strings, dropped connections.

use axum::body::{Body, Bytes};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::Value;
use std::collections::HashMap;
use std::time::Duration;

/// An answer: status, JSON body, extra headers.
pub(crate) struct Answer {
    pub status: u16,
    pub body: Value,
    pub headers: Vec<(&'static str, String)>,
}

pub(crate) fn answer(status: u16, body: Value) -> Answer {
    Answer {
        status,
        body,
        headers: Vec::new(),
    }
}

pub(crate) fn to_response(a: Answer) -> Response {
    let mut r = Response::builder()
        .status(StatusCode::from_u16(a.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("content-type", "application/json; charset=utf-8");
    for (k, v) in a.headers {
        r = r.header(k, v);
    }
    r.body(Body::from(a.body.to_string()))
        .unwrap_or_else(|_| Response::new(Body::empty()))
}

/// An answer whose body fails at once: hyper drops the connection
/// mid-answer, after the work was done (the answer is lost).
pub(crate) fn reset() -> Response {
    let body = Body::from_stream(futures::stream::once(async {
        Err::<Bytes, _>(std::io::Error::other("connection reset by the simulator"))
    }));
    Response::builder()
        .status(200)
        .header("content-length", "1000")
        .body(body)
        .unwrap_or_else(|_| Response::new(Body::empty()))
}

/// `a=b&c=d`, percent-decoded (`+` as a space).
pub(crate) fn url_decode_pairs(text: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for pair in text.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        out.insert(decode(k), decode(v));
    }
    out
}

/// Percent-decoding, `+` as a space.
pub(crate) fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Seconds until a rolling window of `len` admits another call.
pub(crate) fn retry_after(
    window: &std::collections::VecDeque<std::time::Instant>,
    len: std::time::Duration,
    now: std::time::Instant,
) -> u64 {
    window.front().map_or(1, |t| {
        (*t + len).saturating_duration_since(now).as_secs() + 1
    })
}

/// Faults a test injects into a simulator, deterministic for a seed.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Added to every API call, while it counts as in flight.
    pub latency: Duration,
    /// The share of API calls answered 500 or 503 without doing anything.
    pub error_rate: f64,
    /// The share of API calls whose connection is dropped before an answer.
    /// These are done first (a write is saved), so the client cannot know:
    /// the case idempotency keys and lookups exist for.
    pub reset_rate: f64,
    /// The next this many API calls are answered 429 (minute).
    pub burst_429: u32,
    /// The next this many writes are answered 503 without doing anything,
    /// while reads go on (an ERP in maintenance).
    pub fail_writes: u32,
    pub seed: u64,
}
