//! A small blocking HTTP client over `wasi:http/outgoing-handler`.
//!
//! The host checks every request against the connection's allowed hosts and
//! adds the connection's credentials itself; a connector never sets an
//! `Authorization` header (the host refuses it) and never sees the token.

use crate::ConnectorError;
use crate::bindings::wasi::http::outgoing_handler;
use crate::bindings::wasi::http::types::{
    ErrorCode, Fields, IncomingBody, Method, OutgoingBody, OutgoingRequest, RequestOptions, Scheme,
};
use crate::bindings::wasi::io::streams::StreamError;

/// Largest response body the client reads (16 MiB); larger ones fail.
pub const MAX_RESPONSE_BYTES: usize = 16 << 20;

/// An outgoing request. Build it, then [`Request::send`].
#[derive(Debug, Clone)]
pub struct Request {
    method: Method,
    url: String,
    headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
    timeout_ms: Option<u64>,
}

/// A response, with its body read in full.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Why a request got no response.
#[derive(Debug, Clone, PartialEq)]
pub enum HttpError {
    /// The URL could not be parsed.
    BadUrl(String),
    /// The host refused the request: its scheme, host or port is not one
    /// the connection allows (plain `http` only to loopback), its method is
    /// `TRACE` or `CONNECT`, or a header is reserved to the host.
    Denied(String),
    /// Timeouts, refused connections, DNS, TLS, protocol errors.
    Transport(String),
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HttpError::BadUrl(m) => write!(f, "bad URL: {m}"),
            HttpError::Denied(m) => write!(f, "request denied by the host: {m}"),
            HttpError::Transport(m) => write!(f, "transport error: {m}"),
        }
    }
}

impl From<HttpError> for ConnectorError {
    /// Transport errors are transient (`unavailable`); a denied request or a
    /// bad URL is the connection's configuration (`validation` of
    /// `settings.base-url`), which retrying cannot fix.
    fn from(e: HttpError) -> Self {
        match e {
            HttpError::Transport(m) => ConnectorError::Unavailable(m),
            other => ConnectorError::validation("settings.base-url", other.to_string()),
        }
    }
}

impl Request {
    fn new(method: Method, url: impl Into<String>) -> Self {
        Request {
            method,
            url: url.into(),
            headers: Vec::new(),
            body: None,
            timeout_ms: None,
        }
    }

    /// A GET request.
    pub fn get(url: impl Into<String>) -> Self {
        Self::new(Method::Get, url)
    }

    /// A POST request.
    pub fn post(url: impl Into<String>) -> Self {
        Self::new(Method::Post, url)
    }

    /// A PUT request.
    pub fn put(url: impl Into<String>) -> Self {
        Self::new(Method::Put, url)
    }

    /// A DELETE request.
    pub fn delete(url: impl Into<String>) -> Self {
        Self::new(Method::Delete, url)
    }

    /// Adds a header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets a raw body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = Some(body.into());
        self
    }

    /// Sets a JSON body and the JSON content type and accept headers.
    pub fn json(self, value: &serde_json::Value) -> Self {
        self.header("content-type", "application/json")
            .header("accept", "application/json")
            .body(value.to_string())
    }

    /// Bounds connecting and waiting for the first byte (the host also
    /// bounds them, and keeps the lower of the two).
    pub fn timeout_ms(mut self, ms: u64) -> Self {
        self.timeout_ms = Some(ms);
        self
    }

    /// Sends the request and reads the whole response.
    pub fn send(self) -> Result<Response, HttpError> {
        let (scheme, authority, path) = split_url(&self.url)?;
        let fields: Vec<(String, Vec<u8>)> = self
            .headers
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.as_bytes().to_vec()))
            .collect();
        let headers = Fields::from_list(&fields)
            .map_err(|e| HttpError::Denied(format!("header refused: {e:?}")))?;
        let request = OutgoingRequest::new(headers);
        request
            .set_method(&self.method)
            .and_then(|_| request.set_scheme(Some(&scheme)))
            .and_then(|_| request.set_authority(Some(authority)))
            .and_then(|_| request.set_path_with_query(Some(path)))
            .map_err(|_| HttpError::BadUrl(self.url.clone()))?;
        let outgoing_body = request
            .body()
            .map_err(|_| HttpError::Transport("request body taken twice".into()))?;
        let options = self.timeout_ms.map(|ms| {
            let o = RequestOptions::new();
            let ns = ms.saturating_mul(1_000_000);
            let _ = o.set_connect_timeout(Some(ns));
            let _ = o.set_first_byte_timeout(Some(ns));
            let _ = o.set_between_bytes_timeout(Some(ns));
            o
        });
        let future = outgoing_handler::handle(request, options).map_err(error_code)?;
        if let Some(bytes) = &self.body {
            let stream = outgoing_body
                .write()
                .map_err(|_| HttpError::Transport("request body stream taken twice".into()))?;
            for chunk in bytes.chunks(4096) {
                stream
                    .blocking_write_and_flush(chunk)
                    .map_err(|e| HttpError::Transport(format!("writing the body: {e:?}")))?;
            }
            drop(stream);
        }
        OutgoingBody::finish(outgoing_body, None).map_err(error_code)?;

        future.subscribe().block();
        let response = match future.get() {
            Some(Ok(Ok(r))) => r,
            Some(Ok(Err(code))) => return Err(error_code(code)),
            Some(Err(())) | None => {
                return Err(HttpError::Transport("response taken twice".into()));
            }
        };
        let status = response.status();
        let headers = response
            .headers()
            .entries()
            .into_iter()
            .map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned()))
            .collect();
        let incoming = response
            .consume()
            .map_err(|_| HttpError::Transport("response body taken twice".into()))?;
        let body = read_body(&incoming)?;
        drop(incoming);
        Ok(Response {
            status,
            headers,
            body,
        })
    }
}

fn read_body(incoming: &IncomingBody) -> Result<Vec<u8>, HttpError> {
    let stream = incoming
        .stream()
        .map_err(|_| HttpError::Transport("response stream taken twice".into()))?;
    let mut body = Vec::new();
    loop {
        match stream.blocking_read(64 * 1024) {
            Ok(chunk) => {
                body.extend_from_slice(&chunk);
                if body.len() > MAX_RESPONSE_BYTES {
                    return Err(HttpError::Transport(format!(
                        "response body over {MAX_RESPONSE_BYTES} bytes"
                    )));
                }
            }
            Err(StreamError::Closed) => return Ok(body),
            Err(StreamError::LastOperationFailed(e)) => {
                return Err(HttpError::Transport(format!(
                    "reading the response: {}",
                    e.to_debug_string()
                )));
            }
        }
    }
}

fn error_code(code: ErrorCode) -> HttpError {
    match code {
        ErrorCode::HttpRequestDenied => HttpError::Denied(
            "the connection does not allow this request (its scheme, host, port or method); the host's log says why"
                .into(),
        ),
        other => HttpError::Transport(format!("{other:?}")),
    }
}

fn split_url(url: &str) -> Result<(Scheme, &str, &str), HttpError> {
    let bad = || HttpError::BadUrl(url.to_string());
    let (scheme, rest) = url.split_once("://").ok_or_else(bad)?;
    let scheme = match scheme.to_ascii_lowercase().as_str() {
        "http" => Scheme::Http,
        "https" => Scheme::Https,
        _ => return Err(bad()),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() {
        return Err(bad());
    }
    Ok((scheme, authority, path))
}

impl Response {
    /// The first header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body parsed as JSON; an unparsable body is `unavailable` (ERPs
    /// answer HTML from proxies during outages).
    pub fn json(&self) -> Result<serde_json::Value, ConnectorError> {
        serde_json::from_slice(&self.body).map_err(|e| {
            ConnectorError::Unavailable(format!(
                "status {}: the body is not JSON ({e}): {}",
                self.status,
                self.text_lossy(200)
            ))
        })
    }

    /// The body as text, cut to `max` characters, for messages.
    pub fn text_lossy(&self, max: usize) -> String {
        String::from_utf8_lossy(&self.body)
            .chars()
            .take(max)
            .collect()
    }

    /// `Retry-After` in milliseconds, as seconds or an HTTP-date (RFC
    /// 9110); huge values saturate (the host bounds what it honours). An
    /// answer that names no usable wait is `None`.
    pub fn retry_after_ms(&self) -> Option<u64> {
        retry_after_ms(self.header("retry-after")?, std::time::SystemTime::now())
    }
}

/// A `Retry-After` value in milliseconds from `now`.
pub fn retry_after_ms(value: &str, now: std::time::SystemTime) -> Option<u64> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(secs.saturating_mul(1000));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(
        at.duration_since(now)
            .unwrap_or_default()
            .as_millis()
            .min(u128::from(u64::MAX)) as u64,
    )
}

#[cfg(test)]
mod tests {
    use super::retry_after_ms;
    use std::time::{Duration, UNIX_EPOCH};

    /// Finding of the issue 9 attack (R1): an HTTP-date was ignored (the
    /// plugin retried at once) and a huge number of seconds wrapped around
    /// to a few hundred milliseconds.
    #[test]
    fn retry_after_in_seconds_or_as_an_http_date() {
        let now = UNIX_EPOCH + Duration::from_secs(1_795_334_400); // 2026-11-22T08:00:00Z
        assert_eq!(retry_after_ms("120", now), Some(120_000));
        assert_eq!(retry_after_ms(" 0 ", now), Some(0));
        assert_eq!(retry_after_ms("18446744073709552", now), Some(u64::MAX));
        assert_eq!(
            retry_after_ms("Sun, 22 Nov 2026 09:00:00 GMT", now),
            Some(3_600_000)
        );
        assert_eq!(
            retry_after_ms("Sun, 22 Nov 2026 07:00:00 GMT", now),
            Some(0),
            "in the past"
        );
        assert_eq!(retry_after_ms("soon", now), None);
        assert_eq!(retry_after_ms("-5", now), None);
    }
}
