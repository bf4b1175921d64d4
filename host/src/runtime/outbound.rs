//! The outbound-HTTP policy of one call: only the connection's allowed
//! entries (scheme, host and port) are reachable, the connection's credentials
//! are added by the host to requests to them, nothing the guest reads back
//! carries a credential value, at most a few requests are in flight at once,
//! and every request has bounded timeouts (an epoch deadline cannot interrupt
//! a guest waiting in a host call).
//!
//! It is the wasi-http `send_request` hook, the one place every outgoing
//! request passes, and it is tested on its own without a guest.

use super::capture::{Capture, clip};
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use hyper::body::{Body, Frame, SizeHint};
use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmtime_wasi_http::{
    DEFAULT_FORBIDDEN_HEADERS, Error as HttpError, ForbiddenHeaderFilter, RequestOptions, WasiBody,
    WasiHttpHooks,
};

/// Requests of one call in flight at once (connecting, waiting or reading the
/// response); further requests of the call wait for a free slot.
pub const MAX_REQUESTS_PER_CALL: usize = 8;
/// Requests of one connection in flight at once, over all its concurrent
/// calls.
pub const MAX_REQUESTS_PER_CONNECTION: usize = 16;
/// Requests of one call that may wait for a slot; more are refused at once,
/// so that waiting requests (their headers and bodies are host memory) are
/// bounded too.
pub const MAX_WAITING_PER_CALL: usize = 64;
/// Longest piece of plugin-controlled text (a host name, a URL) the host
/// quotes in its own log lines.
const MAX_QUOTED: usize = 200;
/// Credential values shorter than this are not redacted from responses:
/// too short to be a secret, and redacting them would mangle ordinary text.
pub const MIN_REDACTED_SECRET: usize = 8;

/// A URL scheme an allowed entry may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheme {
    Http,
    Https,
}

impl Scheme {
    fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// Where a plugin may send requests, and so where the host sends the
/// connection's credentials.
///
/// - `https://api.xero.com` or `api.xero.com`: https to port 443;
/// - `https://erp.example:8443`: https to port 8443;
/// - `http://127.0.0.1:8080`: plain http, allowed to loopback only
///   (127.0.0.0/8, `localhost`, `[::1]`), for simulators and tests;
/// - a bare loopback entry (`127.0.0.1:8080`, `localhost`) admits http and
///   https to that port (without a port: each scheme's default port).
///
/// A request matches only when its scheme, host (case-insensitive) and port
/// (the scheme's default when the URL has none) are those of an entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedHost {
    /// `None` when written without a scheme.
    scheme: Option<Scheme>,
    /// Lower case; an IPv6 address without its brackets.
    host: String,
    /// `None`: the request's scheme's default port.
    port: Option<u16>,
}

impl AllowedHost {
    /// Parses an entry (see [`AllowedHost`]). Paths, queries, wildcards,
    /// user names and other schemes are refused, naming the entry, so that an
    /// operator's typo is never silently widened.
    pub fn parse(text: &str) -> Result<AllowedHost, String> {
        let shown = clip(text, MAX_QUOTED);
        let t = text.trim();
        let hint =
            "write `api.example.com`, `https://api.example.com:8443` or `http://127.0.0.1:8080`";
        let (scheme, rest) = match t.split_once("://") {
            Some((s, rest)) => match s.to_ascii_lowercase().as_str() {
                "https" => (Some(Scheme::Https), rest),
                "http" => (Some(Scheme::Http), rest),
                _ => {
                    return Err(format!(
                        "`{shown}`: only `https://` (or `http://` to loopback) may be allowed"
                    ));
                }
            },
            None => (None, t),
        };
        if rest.is_empty() {
            return Err(format!("`{shown}` names no host ({hint})"));
        }
        if let Some(c) = rest.chars().find(|c| "/?#".contains(*c)) {
            return Err(format!(
                "`{shown}` has a path, query or fragment (`{c}`): an entry is a scheme, host and port only ({hint})"
            ));
        }
        if rest.contains('@') {
            return Err(format!(
                "`{shown}` has a user name: credentials go in the connection's `credentials` ({hint})"
            ));
        }
        if rest.contains('*') {
            return Err(format!(
                "`{shown}` has a wildcard: name each host exactly ({hint})"
            ));
        }
        let (host, port) = if let Some(inner) = rest.strip_prefix('[') {
            let (h, after) = inner
                .split_once(']')
                .ok_or_else(|| format!("`{shown}` has an unclosed `[`"))?;
            if h.parse::<Ipv6Addr>().is_err() {
                return Err(format!("`{shown}`: `[{h}]` is not an IPv6 address"));
            }
            let port = match after.strip_prefix(':') {
                Some(p) => Some(p),
                None if after.is_empty() => None,
                None => return Err(format!("`{shown}` is not a host ({hint})")),
            };
            (h.to_ascii_lowercase(), port)
        } else {
            let (h, port) = match rest.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (rest, None),
            };
            let valid = !h.is_empty()
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b));
            if !valid {
                return Err(format!("`{shown}` is not a host ({hint})"));
            }
            (h.to_ascii_lowercase(), port)
        };
        let port = port
            .map(|p| match p.parse::<u16>() {
                Ok(n) if n > 0 && !p.starts_with('+') => Ok(n),
                _ => Err(format!("`{shown}` has a bad port `{}`", clip(p, 20))),
            })
            .transpose()?;
        if scheme == Some(Scheme::Http) && !is_loopback(&host) {
            return Err(format!(
                "`{shown}`: plain http is allowed only to loopback (127.0.0.0/8, localhost, [::1]); credentials go to other hosts over https only: write `https://{}`",
                clip(rest, MAX_QUOTED)
            ));
        }
        Ok(AllowedHost { scheme, host, port })
    }

    /// Whether a request to `scheme://host:port` is this entry.
    fn admits(&self, scheme: Scheme, host: &str, port: u16) -> bool {
        let scheme_ok = match self.scheme {
            Some(s) => s == scheme,
            None => scheme == Scheme::Https || is_loopback(&self.host),
        };
        scheme_ok
            && self.host.eq_ignore_ascii_case(host)
            && self.port.unwrap_or(scheme.default_port()) == port
    }
}

impl std::fmt::Display for AllowedHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(s) = self.scheme {
            write!(f, "{}://", s.as_str())?;
        }
        if self.host.contains(':') {
            write!(f, "[{}]", self.host)?;
        } else {
            f.write_str(&self.host)?;
        }
        match self.port {
            Some(p) => write!(f, ":{p}"),
            None => Ok(()),
        }
    }
}

/// Loopback: 127.0.0.0/8, `localhost` (any case) and `::1`.
pub(crate) fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<Ipv4Addr>().is_ok_and(|a| a.is_loopback())
        || host.parse::<Ipv6Addr>().is_ok_and(|a| a.is_loopback())
}

/// A header the host adds to every request to an allowed host, for example
/// `Authorization: Bearer …`. Its value never enters the guest.
#[derive(Clone)]
pub struct Credential {
    /// Header name.
    pub header: HeaderName,
    /// Header value, marked sensitive.
    pub value: HeaderValue,
    /// Set when an allowed host answers `401` to a request that carried
    /// this credential: the host's own proof that the ERP refused it, which
    /// a plugin's word (`unauthorized`) is not.
    refused: Option<Arc<std::sync::atomic::AtomicBool>>,
}

impl Credential {
    /// A credential header; the value is marked sensitive so it is not logged.
    pub fn new(header: &str, value: &str) -> Result<Credential, String> {
        let header = HeaderName::try_from(header)
            .map_err(|_| format!("`{}` is not a header name", clip(header, MAX_QUOTED)))?;
        let mut value = HeaderValue::try_from(value)
            .map_err(|_| format!("the value for `{header}` is not a valid header value"))?;
        value.set_sensitive(true);
        Ok(Credential {
            header,
            value,
            refused: None,
        })
    }

    /// This credential, reporting to `flag` when an allowed host answers
    /// `401` to a request carrying it.
    pub fn watched(mut self, flag: Arc<std::sync::atomic::AtomicBool>) -> Credential {
        self.refused = Some(flag);
        self
    }

    /// The byte strings that must not reach the guest: the whole value and,
    /// for `<scheme> <token>` values (`Bearer …`, `Basic …`), the token alone.
    fn secrets(&self) -> impl Iterator<Item = &[u8]> {
        let whole = self.value.as_bytes();
        let token = whole
            .iter()
            .rposition(|&b| b == b' ')
            .map(|i| &whole[i + 1..]);
        std::iter::once(whole)
            .chain(token)
            .filter(|s| s.len() >= MIN_REDACTED_SECRET)
    }
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credential({}: ***)", self.header)
    }
}

/// Each connection's share of in-flight requests, shared by its concurrent
/// calls. Lives in the runtime; an entry lives as long as a call of its
/// connection holds it.
#[derive(Default)]
pub(crate) struct ConnectionSlots {
    by_connection: Mutex<SlotMap>,
}

#[derive(Default)]
struct SlotMap {
    /// Each connection's semaphore, with its size.
    live: HashMap<(String, String), (Weak<Semaphore>, usize)>,
    /// Size at which dead entries are swept next.
    sweep_at: usize,
}

impl ConnectionSlots {
    /// The semaphore of `tenant`'s connection `connection`, letting
    /// `at_once` requests (at most [`MAX_REQUESTS_PER_CONNECTION`]) be in
    /// flight. Limits changed while calls run take effect for the calls
    /// that start after all of those ended.
    pub(crate) fn of(&self, tenant: &str, connection: &str, at_once: usize) -> Arc<Semaphore> {
        let at_once = at_once.clamp(1, MAX_REQUESTS_PER_CONNECTION);
        let mut map = self.by_connection.lock().unwrap_or_else(|e| e.into_inner());
        let key = (tenant.to_string(), connection.to_string());
        if let Some((s, size)) = map.live.get(&key)
            && let Some(s) = s.upgrade()
            && (*size == at_once || s.available_permits() < *size)
        {
            return s;
        }
        if map.live.len() >= map.sweep_at {
            map.live.retain(|_, (w, _)| w.strong_count() > 0);
            map.sweep_at = (map.live.len() * 2).max(64);
        }
        let s = Arc::new(Semaphore::new(at_once));
        map.live.insert(key, (Arc::downgrade(&s), at_once));
        s
    }
}

/// What one call's outbound policy is made of, besides its timeout and log.
pub(crate) struct Outbound {
    /// The connection's allowed entries.
    pub allowed: Arc<[AllowedHost]>,
    /// The connection's credential headers.
    pub credentials: Arc<[Credential]>,
    /// The connection's share of in-flight requests
    /// ([`MAX_REQUESTS_PER_CONNECTION`]); `None` when nothing is allowed.
    pub connection_slots: Option<Arc<Semaphore>>,
    /// The call's deadline: a request waiting for a slot gives up then.
    pub deadline: Instant,
    /// The connection's call budget (R2), if it has one.
    pub budget: Option<super::Budget>,
}

/// The policy for one call.
#[derive(Clone)]
pub struct OutboundPolicy {
    allowed: Arc<[AllowedHost]>,
    credentials: Arc<[Credential]>,
    /// The credential values, as searched for in responses.
    secrets: Arc<[Vec<u8>]>,
    /// Upper bound of each of connect, first-byte and between-bytes waits.
    timeout: Duration,
    capture: Capture,
    /// The call's and its connection's shares of in-flight requests;
    /// `None` when nothing is allowed.
    slots: Option<Slots>,
    deadline: Instant,
    budget: Option<CallBudget>,
}

/// A call's use of its connection's budget: the first request was paid for
/// by the engine before the call.
#[derive(Clone)]
struct CallBudget {
    budget: super::Budget,
    prepaid: Arc<std::sync::atomic::AtomicBool>,
}

/// The longest a request waits for its connection's budget before it is
/// answered `429` without being sent: a pace, not a pause.
pub const MAX_BUDGET_WAIT: Duration = Duration::from_secs(5);

impl CallBudget {
    /// Takes one request's share, waiting up to [`MAX_BUDGET_WAIT`] (and
    /// never past `deadline`); else how long the plugin should wait.
    async fn take(&self, deadline: Instant) -> Result<(), Duration> {
        if self
            .prepaid
            .swap(false, std::sync::atomic::Ordering::Relaxed)
        {
            return Ok(());
        }
        let give_up = (Instant::now() + MAX_BUDGET_WAIT).min(deadline);
        loop {
            match self.budget.0.take() {
                Ok(()) => return Ok(()),
                Err(wait) if Instant::now() + wait <= give_up => {
                    tokio::time::sleep(wait.max(Duration::from_millis(1))).await;
                }
                Err(wait) => return Err(wait),
            }
        }
    }
}

/// The answer to a request the connection's budget held back: a `429` as
/// the ERP would give, with `Retry-After`, so the plugin reports
/// `rate-limited` and the host pauses the connection.
fn held_back(wait: Duration) -> http::Response<WasiBody> {
    use http_body_util::BodyExt;
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let body = format!(
        "not sent: the connection's call budget (calls a minute or a day) has no room for {secs} s"
    );
    let mut res = http::Response::new(
        http_body_util::Full::new(bytes::Bytes::from(body))
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *res.status_mut() = http::StatusCode::TOO_MANY_REQUESTS;
    res.headers_mut().insert(
        http::header::RETRY_AFTER,
        http::HeaderValue::from(secs.max(1)),
    );
    res.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain"),
    );
    res
}

impl OutboundPolicy {
    /// The policy of one call: `outbound`'s entries and credentials, waits
    /// bounded by `timeout`, denials noted in `capture`.
    pub(crate) fn new(outbound: Outbound, timeout: Duration, capture: Capture) -> Self {
        let mut secrets: Vec<Vec<u8>> = outbound
            .credentials
            .iter()
            .flat_map(|c| c.secrets().map(<[u8]>::to_vec))
            .collect();
        secrets.sort();
        secrets.dedup();
        OutboundPolicy {
            allowed: outbound.allowed,
            credentials: outbound.credentials,
            secrets: secrets.into(),
            timeout,
            capture,
            slots: outbound.connection_slots.map(|connection| Slots {
                outstanding: Arc::new(Semaphore::new(MAX_REQUESTS_PER_CALL + MAX_WAITING_PER_CALL)),
                // Under a call budget (R2) a call has one request in flight
                // at a time: the engine runs no more of a connection's jobs
                // at once than its calls at once, counted over every worker
                // process, so that bound holds for requests too.
                call: Arc::new(Semaphore::new(if outbound.budget.is_some() {
                    1
                } else {
                    MAX_REQUESTS_PER_CALL
                })),
                connection,
            }),
            deadline: outbound.deadline,
            budget: outbound.budget.map(|budget| CallBudget {
                budget,
                prepaid: Arc::new(std::sync::atomic::AtomicBool::new(true)),
            }),
        }
    }

    fn deny(&self, why: String) -> Result<(), HttpError> {
        self.capture.host_line(why);
        Err(HttpError::HttpRequestDenied)
    }

    /// Checks `request` against the allowed entries and, when allowed, adds
    /// the credentials. Returns the error the guest will see otherwise.
    pub fn admit<B>(&self, request: &mut http::Request<B>) -> Result<(), HttpError> {
        let method = request.method();
        if *method == Method::TRACE || *method == Method::CONNECT {
            return self.deny(format!(
                "denied a {method} request: the method can reflect the request, credentials included, back to the plugin"
            ));
        }
        let uri = request.uri();
        let shown = || clip(&uri.to_string(), MAX_QUOTED);
        let scheme = match uri.scheme_str() {
            Some(s) if s.eq_ignore_ascii_case("https") => Scheme::Https,
            Some(s) if s.eq_ignore_ascii_case("http") => Scheme::Http,
            _ => {
                return self.deny(format!(
                    "denied a request to {}: not http or https",
                    shown()
                ));
            }
        };
        let (Some(authority), Some(host)) = (uri.authority(), uri.host()) else {
            return Err(HttpError::HttpRequestUriInvalid);
        };
        if authority.as_str().contains('@') {
            return self.deny(format!(
                "denied a request to {}: a URL may not carry a user name",
                shown()
            ));
        }
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port = uri.port_u16().unwrap_or(scheme.default_port());
        let target = format!("{}://{}:{port}", scheme.as_str(), clip(host, MAX_QUOTED));
        if !self.allowed.iter().any(|a| a.admits(scheme, host, port)) {
            return self.deny(format!(
                "denied a request to {target}: not an allowed scheme, host and port of this connection (allowed: {})",
                self.allowed_list()
            ));
        }
        // Parsing refuses `http://` entries for remote hosts; checked again
        // here because this is where a credential would leave in clear.
        if scheme == Scheme::Http && !is_loopback(host) {
            return self.deny(format!(
                "denied a request to {target}: plain http is allowed only to loopback"
            ));
        }
        let headers = request.headers_mut();
        for c in self.credentials.iter() {
            headers.insert(c.header.clone(), c.value.clone());
        }
        Ok(())
    }

    fn allowed_list(&self) -> String {
        if self.allowed.is_empty() {
            return "none".into();
        }
        let list = self
            .allowed
            .iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join(", ");
        clip(&list, 4 * MAX_QUOTED)
    }

    /// The guest's timeouts, each bounded by the host's.
    pub fn bound(&self, options: Option<RequestOptions>) -> RequestOptions {
        let o = options.unwrap_or_default();
        let cap = |t: Option<Duration>| Some(t.map_or(self.timeout, |t| t.min(self.timeout)));
        RequestOptions {
            connect_timeout: cap(o.connect_timeout),
            first_byte_timeout: cap(o.first_byte_timeout),
            between_bytes_timeout: cap(o.between_bytes_timeout),
        }
    }

    /// A request's way to a slot of the call and of the connection: refused
    /// at once when [`MAX_WAITING_PER_CALL`] requests of the call already
    /// wait, else a wait until the call's deadline. The slot is held as long
    /// as the request's connection is open, so sockets are bounded whatever
    /// the guest does.
    fn slot(
        &self,
    ) -> Result<impl Future<Output = Result<Slot, HttpError>> + Send + 'static, HttpError> {
        let Some(slots) = &self.slots else {
            return Err(HttpError::HttpRequestDenied);
        };
        let Ok(outstanding) = slots.outstanding.clone().try_acquire_owned() else {
            self.capture.host_line(format!(
                "refused a request: {MAX_WAITING_PER_CALL} requests of this call already wait for one of its {MAX_REQUESTS_PER_CALL} slots"
            ));
            return Err(HttpError::ConnectionLimitReached);
        };
        let (call, connection) = (slots.call.clone(), slots.connection.clone());
        let deadline = self.deadline;
        let capture = self.capture.clone();
        Ok(async move {
            let acquire = async {
                let call = call.acquire_owned().await.ok()?;
                let connection = connection.acquire_owned().await.ok()?;
                Some(Slot {
                    _outstanding: outstanding,
                    _call: call,
                    _connection: connection,
                })
            };
            match tokio::time::timeout_at(deadline.into(), acquire).await {
                Ok(Some(slot)) => Ok(slot),
                Ok(None) => Err(HttpError::InternalError(Some(
                    "request slots closed".into(),
                ))),
                Err(_) => {
                    capture.host_line(format!(
                        "a request waited for a free slot until the call's deadline (at most {MAX_REQUESTS_PER_CALL} requests of a call and {MAX_REQUESTS_PER_CONNECTION} of a connection are in flight at once)"
                    ));
                    Err(HttpError::ConnectionLimitReached)
                }
            }
        })
    }

    /// Removes every field whose name or value holds a credential value.
    fn strip(secrets: &[Vec<u8>], headers: &mut HeaderMap) -> usize {
        if secrets.is_empty() {
            return 0;
        }
        let tainted: Vec<HeaderName> = headers
            .iter()
            .filter(|(name, value)| {
                secrets.iter().any(|s| {
                    contains(value.as_bytes(), s)
                        || contains(name.as_str().as_bytes(), &s.to_ascii_lowercase())
                })
            })
            .map(|(name, _)| name.clone())
            .collect();
        for name in &tainted {
            headers.remove(name);
        }
        tainted.len()
    }
}

/// The semaphores of one call's requests.
#[derive(Clone)]
struct Slots {
    /// Requests in flight or waiting.
    outstanding: Arc<Semaphore>,
    /// Requests of the call in flight.
    call: Arc<Semaphore>,
    /// Requests of the connection in flight, over its calls.
    connection: Arc<Semaphore>,
}

/// A request's share of the call's and the connection's in-flight requests.
struct Slot {
    _outstanding: OwnedSemaphorePermit,
    _call: OwnedSemaphorePermit,
    _connection: OwnedSemaphorePermit,
}

impl WasiHttpHooks for OutboundPolicy {
    // The credential headers are the host's: a guest may not set them, so it
    // can neither read them back nor substitute its own.
    fn forbidden_header_filter(&mut self) -> ForbiddenHeaderFilter {
        let reserved: Vec<HeaderName> = self.credentials.iter().map(|c| c.header.clone()).collect();
        Arc::new(move |name| {
            DEFAULT_FORBIDDEN_HEADERS.contains(name)
                || *name == http::header::AUTHORIZATION
                || reserved.contains(name)
        })
    }

    fn send_request(
        &mut self,
        mut request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> Box<
        dyn Future<
                Output = Result<
                    (
                        http::Response<WasiBody>,
                        Box<dyn Future<Output = Result<(), HttpError>> + Send>,
                    ),
                    HttpError,
                >,
            > + Send,
    > {
        _ = fut;
        let slot = self.admit(&mut request).and_then(|()| self.slot());
        let options = self.bound(options);
        let secrets = self.secrets.clone();
        let capture = self.capture.clone();
        let (budget, deadline) = (self.budget.clone(), self.deadline);
        let watched: Vec<_> = self
            .credentials
            .iter()
            .filter_map(|c| c.refused.clone())
            .collect();
        Box::new(async move {
            use http_body_util::BodyExt;
            let slot = slot?.await?;
            if let Some(budget) = budget
                && let Err(wait) = budget.take(deadline).await
            {
                capture.host_line(format!(
                    "held back a request: the connection's call budget has no room for {wait:.1?}; answered 429 without sending it"
                ));
                let io = async move {
                    drop(slot);
                    Ok(())
                };
                return Ok((
                    held_back(wait),
                    Box::new(io) as Box<dyn Future<Output = _> + Send>,
                ));
            }
            let (res, io) =
                wasmtime_wasi_http::default_send_request(request, Some(options)).await?;
            if res.status() == http::StatusCode::UNAUTHORIZED {
                for flag in &watched {
                    flag.store(true, std::sync::atomic::Ordering::Relaxed);
                }
            }
            let (mut parts, body) = res.into_parts();
            if OutboundPolicy::strip(&secrets, &mut parts.headers) > 0 {
                capture.host_line(
                    "removed response headers that held a credential value: the ERP reflects credentials"
                        .into(),
                );
            }
            let body = if secrets.is_empty() {
                body.boxed_unsync()
            } else {
                Redacting::new(body.boxed_unsync(), secrets).boxed_unsync()
            };
            // The slot goes with the connection's I/O, which owns the socket.
            let io = async move {
                let _slot = slot;
                io.await
            };
            Ok((
                http::Response::from_parts(parts, body),
                Box::new(io) as Box<dyn Future<Output = _> + Send>,
            ))
        })
    }
}

/// Whether `needle` occurs in `hay`.
fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

/// Overwrites every occurrence of each of `secrets` in `buf` with `*`.
fn redact(buf: &mut [u8], secrets: &[Vec<u8>]) {
    for s in secrets {
        let Some(&first) = s.first() else { continue };
        let mut i = 0;
        while i + s.len() <= buf.len() {
            match buf[i..=buf.len() - s.len()]
                .iter()
                .position(|&b| b == first)
            {
                None => break,
                Some(k) => {
                    let at = i + k;
                    if buf[at..at + s.len()] == s[..] {
                        buf[at..at + s.len()].fill(b'*');
                        i = at + s.len();
                    } else {
                        i = at + 1;
                    }
                }
            }
        }
    }
}

/// A response body with every credential value overwritten by `*` of the
/// same length (so `content-length` still holds), including a value split
/// across chunks: the last `longest - 1` bytes of each chunk are held back
/// until the next one shows whether they begin a credential. Trailers holding
/// a credential value are removed.
struct Redacting {
    inner: WasiBody,
    secrets: Arc<[Vec<u8>]>,
    /// Redacted bytes not yet handed on.
    held: Vec<u8>,
    /// How many bytes may begin an unfinished credential value.
    keep: usize,
    /// Trailers that wait for the held bytes to go first.
    trailers: Option<HeaderMap>,
    ended: bool,
}

impl Redacting {
    fn new(inner: WasiBody, secrets: Arc<[Vec<u8>]>) -> Self {
        let keep = secrets.iter().map(Vec::len).max().unwrap_or(1) - 1;
        Redacting {
            inner,
            secrets,
            held: Vec::new(),
            keep,
            trailers: None,
            ended: false,
        }
    }

    fn take_held(&mut self, upto: usize) -> Bytes {
        let rest = self.held.split_off(upto);
        Bytes::from(std::mem::replace(&mut self.held, rest))
    }
}

impl Body for Redacting {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        let this = &mut *self;
        loop {
            if this.ended {
                if !this.held.is_empty() {
                    let all = this.held.len();
                    return Poll::Ready(Some(Ok(Frame::data(this.take_held(all)))));
                }
                return Poll::Ready(this.trailers.take().map(|t| Ok(Frame::trailers(t))));
            }
            match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
                None => this.ended = true,
                Some(Err(e)) => return Poll::Ready(Some(Err(e))),
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => {
                        this.held.extend_from_slice(&data);
                        redact(&mut this.held, &this.secrets);
                        let ready = this.held.len().saturating_sub(this.keep);
                        if ready > 0 {
                            return Poll::Ready(Some(Ok(Frame::data(this.take_held(ready)))));
                        }
                    }
                    Err(frame) => {
                        if let Ok(mut trailers) = frame.into_trailers() {
                            OutboundPolicy::strip(&this.secrets, &mut trailers);
                            this.trailers = Some(trailers);
                        }
                        // Trailers end the body.
                        this.ended = true;
                    }
                },
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended && self.held.is_empty() && self.trailers.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        // Redaction keeps lengths, so the size is the inner body's plus what
        // is held.
        let inner = self.inner.size_hint();
        let held = self.held.len() as u64;
        let mut hint = SizeHint::new();
        hint.set_lower(inner.lower().saturating_add(held));
        if let Some(upper) = inner.upper() {
            hint.set_upper(upper.saturating_add(held));
        }
        hint
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    fn policy_with(allowed: &[&str], slots: Option<Arc<Semaphore>>) -> (OutboundPolicy, Capture) {
        let capture = Capture::new(64 * 1024);
        let allowed: Vec<AllowedHost> = allowed
            .iter()
            .map(|a| AllowedHost::parse(a).unwrap())
            .collect();
        let creds = vec![Credential::new("authorization", "Bearer s3cret-token").unwrap()];
        (
            OutboundPolicy::new(
                Outbound {
                    allowed: allowed.into(),
                    credentials: creds.into(),
                    connection_slots: slots,
                    deadline: Instant::now() + Duration::from_secs(30),
                    budget: None,
                },
                Duration::from_secs(5),
                capture.clone(),
            ),
            capture,
        )
    }

    fn policy(allowed: &[&str]) -> (OutboundPolicy, Capture) {
        policy_with(allowed, None)
    }

    fn request(uri: &str) -> http::Request<()> {
        http::Request::builder().uri(uri).body(()).unwrap()
    }

    fn assert_denied(p: &OutboundPolicy, uri: &str) {
        let mut r = request(uri);
        assert!(
            matches!(p.admit(&mut r), Err(HttpError::HttpRequestDenied)),
            "{uri} must be denied"
        );
        assert!(
            r.headers().get("authorization").is_none(),
            "{uri} got the credential"
        );
    }

    fn assert_admitted(p: &OutboundPolicy, uri: &str) {
        let mut r = request(uri);
        p.admit(&mut r)
            .unwrap_or_else(|e| panic!("{uri} must be admitted: {e:?}"));
        assert_eq!(r.headers()["authorization"], "Bearer s3cret-token", "{uri}");
    }

    #[test]
    fn p1_only_allowed_hosts_pass_and_only_they_get_credentials() {
        let (p, capture) = policy(&["api.xero.com", "127.0.0.1:8080"]);
        assert_admitted(&p, "https://api.xero.com/api.xro/2.0/Invoices");
        assert_admitted(&p, "http://127.0.0.1:8080/x");
        for denied in [
            "http://127.0.0.1:8081/x",
            "https://evil.example/",
            "https://api.xero.com.evil.example/",
            "http://localhost:8080/",
        ] {
            assert_denied(&p, denied);
        }
        assert!(
            capture
                .lines()
                .iter()
                .any(|l| l.message.contains("evil.example"))
        );
    }

    #[test]
    fn p8_credentials_only_to_the_exact_scheme_host_and_port_over_https() {
        let (p, _) = policy(&[
            "api.xero.com",
            "https://erp.example:8443",
            "LOCALHOST",
            "http://127.0.0.1:9000",
        ]);
        // A bare remote entry is https on 443, nothing else.
        assert_admitted(&p, "https://API.Xero.com/x");
        assert_admitted(&p, "https://api.xero.com:443/x");
        assert_denied(&p, "http://api.xero.com/x");
        assert_denied(&p, "http://api.xero.com:443/x");
        assert_denied(&p, "https://api.xero.com:8443/x");
        // An entry's port is exact.
        assert_admitted(&p, "https://erp.example:8443/x");
        assert_denied(&p, "https://erp.example/x");
        assert_denied(&p, "http://erp.example:8443/x");
        // A bare loopback entry without a port: each scheme's default port,
        // never another port, whatever the case of the name.
        assert_admitted(&p, "http://LocalHost/x");
        assert_admitted(&p, "https://localhost/x");
        assert_denied(&p, "http://LocalHost:18081/x");
        assert_denied(&p, "https://localhost:8443/x");
        // An http entry admits http to its port only.
        assert_admitted(&p, "http://127.0.0.1:9000/x");
        assert_denied(&p, "https://127.0.0.1:9000/x");
        assert_denied(&p, "http://127.0.0.2:9000/x");
        // User names in the URL, other schemes.
        assert_denied(&p, "https://user:pw@api.xero.com/x");
        assert_denied(&p, "ftp://api.xero.com/x");
    }

    #[test]
    fn p8_plain_http_to_a_remote_host_cannot_be_allowed() {
        let err = AllowedHost::parse("http://api.xero.com").unwrap_err();
        assert!(
            err.contains("http://api.xero.com") && err.contains("loopback"),
            "{err}"
        );
        for loopback in [
            "http://127.0.0.1:8080",
            "http://127.9.9.9",
            "http://LOCALHOST:1",
            "http://[::1]:80",
        ] {
            AllowedHost::parse(loopback).unwrap_or_else(|e| panic!("{loopback}: {e}"));
        }
        // Not loopback, whatever it looks like.
        for remote in [
            "http://localhost.evil.example",
            "http://128.0.0.1",
            "http://[::2]",
        ] {
            assert!(AllowedHost::parse(remote).is_err(), "{remote}");
        }
    }

    #[test]
    fn p2_reflecting_methods_are_refused() {
        let (p, capture) = policy(&["api.xero.com"]);
        for method in [Method::TRACE, Method::CONNECT] {
            let mut r = http::Request::builder()
                .method(method.clone())
                .uri("https://api.xero.com/x")
                .body(())
                .unwrap();
            assert!(matches!(p.admit(&mut r), Err(HttpError::HttpRequestDenied)));
            assert!(r.headers().get("authorization").is_none());
        }
        assert!(capture.lines().iter().any(|l| l.message.contains("TRACE")));
        // Control: the same request as a GET passes.
        assert_admitted(&p, "https://api.xero.com/x");
    }

    #[test]
    fn p2_guest_cannot_set_credential_headers() {
        let (mut p, _) = policy(&["api.xero.com"]);
        let filter = p.forbidden_header_filter();
        assert!(filter(&http::header::AUTHORIZATION));
        assert!(!filter(&HeaderName::from_static("xero-tenant-id")));
    }

    #[test]
    fn p2_response_headers_holding_a_credential_are_removed() {
        let (p, _) = policy(&["api.xero.com"]);
        let mut h = HeaderMap::new();
        h.insert("x-echo-auth", "Bearer s3cret-token".parse().unwrap());
        h.insert("x-echo-token", "token=s3cret-token;".parse().unwrap());
        h.insert("content-type", "application/json".parse().unwrap());
        assert_eq!(OutboundPolicy::strip(&p.secrets, &mut h), 2);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("content-type"));
    }

    #[test]
    fn short_credential_values_are_not_redacted() {
        let c = Credential::new("x-key", "Bearer abc").unwrap();
        // The whole value is long enough; the token alone is not.
        assert_eq!(c.secrets().collect::<Vec<_>>(), [b"Bearer abc".as_slice()]);
        let c = Credential::new("x-key", "short").unwrap();
        assert_eq!(c.secrets().count(), 0);
    }

    #[tokio::test]
    async fn p2_a_credential_is_redacted_from_a_body_even_split_across_chunks() {
        let secrets: Arc<[Vec<u8>]> =
            vec![b"Bearer s3cret-token".to_vec(), b"s3cret-token".to_vec()].into();
        let text =
            b"{\"echo\": \"Bearer s3cret-token\", \"again\": \"s3cret-token\", \"ok\": \"s3cret\"}";
        // Every way of cutting the body in two, and byte by byte.
        let mut cuts: Vec<Vec<Vec<u8>>> = (0..=text.len())
            .map(|i| vec![text[..i].to_vec(), text[i..].to_vec()])
            .collect();
        cuts.push(text.iter().map(|b| vec![*b]).collect());
        for chunks in cuts {
            let inner = Chunks(chunks.into_iter().map(Bytes::from).collect()).boxed_unsync();
            let out = Redacting::new(inner, secrets.clone())
                .collect()
                .await
                .unwrap()
                .to_bytes();
            assert_eq!(out.len(), text.len(), "lengths are kept");
            let out = String::from_utf8(out.to_vec()).unwrap();
            assert!(!out.contains("s3cret-token"), "{out}");
            // Control: text that is not the credential passes untouched.
            assert!(out.contains("\"ok\": \"s3cret\""), "{out}");
            assert!(out.contains("\"echo\": \"*******************\""), "{out}");
        }
    }

    /// A body of the given chunks.
    struct Chunks(std::collections::VecDeque<Bytes>);

    impl Body for Chunks {
        type Data = Bytes;
        type Error = HttpError;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
            Poll::Ready(self.0.pop_front().map(|b| Ok(Frame::data(b))))
        }
    }

    #[tokio::test]
    async fn p6_requests_wait_for_a_slot_of_the_call_and_of_the_connection() {
        let connection = Arc::new(Semaphore::new(MAX_REQUESTS_PER_CONNECTION));
        let (a, _) = policy_with(&["api.xero.com"], Some(connection.clone()));
        let (b, _) = policy_with(&["api.xero.com"], Some(connection.clone()));
        let mut held = Vec::new();
        for _ in 0..MAX_REQUESTS_PER_CALL {
            held.push(a.slot().unwrap().await.unwrap());
        }
        // The call's own slots are taken: its next request waits.
        let next = tokio::spawn(a.slot().unwrap());
        tokio::task::yield_now().await;
        assert!(!next.is_finished());
        // Another call of the connection takes the connection's remaining slots.
        for _ in 0..MAX_REQUESTS_PER_CONNECTION - MAX_REQUESTS_PER_CALL {
            held.push(b.slot().unwrap().await.unwrap());
        }
        assert_eq!(connection.available_permits(), 0);
        // A slot freed by the first call goes to its waiting request.
        held.remove(0);
        let slot = next.await.unwrap();
        assert!(slot.is_ok());
    }

    #[tokio::test]
    async fn a_request_waiting_past_the_deadline_gets_an_error() {
        let connection = Arc::new(Semaphore::new(0));
        let capture = Capture::new(1024);
        let p = OutboundPolicy::new(
            Outbound {
                allowed: Arc::from(vec![AllowedHost::parse("api.xero.com").unwrap()]),
                credentials: Arc::from(Vec::new()),
                connection_slots: Some(connection),
                deadline: Instant::now() + Duration::from_millis(20),
                budget: None,
            },
            Duration::from_secs(5),
            capture.clone(),
        );
        assert!(matches!(
            p.slot().unwrap().await,
            Err(HttpError::ConnectionLimitReached)
        ));
        assert!(capture.lines().iter().any(|l| l.message.contains("slot")));
    }

    #[tokio::test]
    async fn p6_waiting_requests_are_bounded_too() {
        let (p, capture) = policy_with(&["api.xero.com"], Some(Arc::new(Semaphore::new(0))));
        // Requests waiting for a slot (here none is ever free) hold their
        // place; one more than the bound is refused at once.
        let waiting: Vec<_> = (0..MAX_REQUESTS_PER_CALL + MAX_WAITING_PER_CALL)
            .map(|_| p.slot().unwrap())
            .collect();
        assert!(matches!(p.slot(), Err(HttpError::ConnectionLimitReached)));
        assert!(
            capture
                .lines()
                .iter()
                .any(|l| l.message.contains("already wait"))
        );
        // A request that gives up frees its place.
        drop(waiting);
        assert!(p.slot().is_ok());
    }

    #[test]
    fn connections_share_slots_and_others_do_not() {
        let slots = ConnectionSlots::default();
        let a1 = slots.of("t", "a", MAX_REQUESTS_PER_CONNECTION);
        let a2 = slots.of("t", "a", MAX_REQUESTS_PER_CONNECTION);
        let b = slots.of("t", "b", MAX_REQUESTS_PER_CONNECTION);
        assert!(Arc::ptr_eq(&a1, &a2));
        assert!(!Arc::ptr_eq(&a1, &b));
        assert_eq!(a1.available_permits(), MAX_REQUESTS_PER_CONNECTION);
    }

    #[test]
    fn host_log_lines_quote_plugin_text_briefly() {
        let (p, capture) = policy(&["api.xero.com"]);
        let long = format!("https://{}.example/", "a".repeat(4000));
        assert_denied(&p, &long);
        let line = &capture.lines()[0].message;
        assert!(line.len() < 2 * MAX_QUOTED + 300, "{} bytes", line.len());
    }

    #[test]
    fn timeouts_are_bounded_by_the_host() {
        let (p, _) = policy(&[]);
        let o = p.bound(Some(RequestOptions {
            connect_timeout: Some(Duration::from_secs(600)),
            first_byte_timeout: Some(Duration::from_millis(10)),
            between_bytes_timeout: None,
        }));
        assert_eq!(o.connect_timeout, Some(Duration::from_secs(5)));
        assert_eq!(o.first_byte_timeout, Some(Duration::from_millis(10)));
        assert_eq!(o.between_bytes_timeout, Some(Duration::from_secs(5)));
    }

    #[test]
    fn allowed_host_parsing_names_the_problem() {
        for (bad, says) in [
            ("https://api.xero.com/api.xro", "path"),
            ("https://api.xero.com/", "path"),
            ("api.xero.com?x=1", "path"),
            ("*.xero.com", "wildcard"),
            ("https://user:pw@api.xero.com", "user name"),
            ("ftp://api.xero.com", "only `https://`"),
            ("h:99999", "bad port"),
            ("h:0", "bad port"),
            ("h:", "bad port"),
            ("https://", "no host"),
            ("api xero.com", "not a host"),
            ("[::1", "unclosed"),
        ] {
            let err = AllowedHost::parse(bad).unwrap_err();
            assert!(
                err.contains(says) && err.contains(bad.trim()),
                "{bad}: {err}"
            );
        }
        for (good, shown) in [
            ("[::1]:80", "[::1]:80"),
            ("API.Xero.com", "api.xero.com"),
            ("HTTPS://API.Xero.com:8443", "https://api.xero.com:8443"),
            ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
            ("127.0.0.1:8080", "127.0.0.1:8080"),
        ] {
            assert_eq!(AllowedHost::parse(good).unwrap().to_string(), shown);
        }
    }
}
