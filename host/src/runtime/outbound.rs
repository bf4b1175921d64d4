//! The outbound-HTTP policy of one call: only the connection's allowed hosts
//! are reachable, the connection's credentials are added by the host to
//! requests to them, and every request has bounded timeouts (an epoch
//! deadline cannot interrupt a guest waiting in a host call).
//!
//! It is the wasi-http `send_request` hook, the one place every outgoing
//! request passes, and it is tested on its own without a guest.

use super::capture::Capture;
use http::{HeaderName, HeaderValue};
use std::sync::Arc;
use std::time::Duration;
use wasmtime_wasi_http::{
    DEFAULT_FORBIDDEN_HEADERS, Error as HttpError, ForbiddenHeaderFilter, RequestOptions, WasiBody,
    WasiHttpHooks,
};

/// A host the plugin may call: `api.xero.com` (any port) or `127.0.0.1:8080`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedHost {
    host: String,
    port: Option<u16>,
}

impl AllowedHost {
    /// Parses `host` or `host:port` (IPv6 as `[::1]:8080`). Schemes and paths
    /// are refused so that an operator's typo is not silently widened.
    pub fn parse(text: &str) -> Result<AllowedHost, String> {
        let t = text.trim();
        if t.is_empty() || t.contains("://") || t.contains('/') || t.contains('*') {
            return Err(format!(
                "`{text}` is not a host (write `api.example.com` or `127.0.0.1:8080`)"
            ));
        }
        let (host, port) = if let Some(rest) = t.strip_prefix('[') {
            let (h, after) = rest
                .split_once(']')
                .ok_or_else(|| format!("`{text}` has an unclosed `[`"))?;
            let port = match after.strip_prefix(':') {
                Some(p) => Some(p),
                None if after.is_empty() => None,
                None => return Err(format!("`{text}` is not a host")),
            };
            (h.to_string(), port)
        } else {
            match t.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), Some(p)),
                None => (t.to_string(), None),
            }
        };
        let port = port
            .map(|p| {
                p.parse::<u16>()
                    .map_err(|_| format!("`{text}` has a bad port `{p}`"))
            })
            .transpose()?;
        Ok(AllowedHost {
            host: host.to_ascii_lowercase(),
            port,
        })
    }

    fn matches(&self, host: &str, port: u16) -> bool {
        self.host.eq_ignore_ascii_case(host) && self.port.is_none_or(|p| p == port)
    }
}

impl std::fmt::Display for AllowedHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        match self.port {
            Some(p) => write!(f, "{host}:{p}"),
            None => f.write_str(&host),
        }
    }
}

/// A header the host adds to every request to an allowed host, for example
/// `Authorization: Bearer …`. Its value never enters the guest.
#[derive(Clone)]
pub struct Credential {
    /// Header name.
    pub header: HeaderName,
    /// Header value, marked sensitive.
    pub value: HeaderValue,
}

impl Credential {
    /// A credential header; the value is marked sensitive so it is not logged.
    pub fn new(header: &str, value: &str) -> Result<Credential, String> {
        let header =
            HeaderName::try_from(header).map_err(|_| format!("`{header}` is not a header name"))?;
        let mut value = HeaderValue::try_from(value)
            .map_err(|_| format!("the value for `{header}` is not a valid header value"))?;
        value.set_sensitive(true);
        Ok(Credential { header, value })
    }
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credential({}: ***)", self.header)
    }
}

/// The policy for one call.
#[derive(Clone)]
pub struct OutboundPolicy {
    allowed: Arc<[AllowedHost]>,
    credentials: Arc<[Credential]>,
    /// Upper bound of each of connect, first-byte and between-bytes waits.
    timeout: Duration,
    capture: Capture,
}

impl OutboundPolicy {
    /// A policy allowing `allowed`, adding `credentials`, bounding waits by `timeout`.
    pub fn new(
        allowed: Arc<[AllowedHost]>,
        credentials: Arc<[Credential]>,
        timeout: Duration,
        capture: Capture,
    ) -> Self {
        OutboundPolicy {
            allowed,
            credentials,
            timeout,
            capture,
        }
    }

    /// Checks `request` against the allowed hosts and, when allowed, adds the
    /// credentials. Returns the error the guest will see otherwise.
    pub fn admit<B>(&self, request: &mut http::Request<B>) -> Result<(), HttpError> {
        let uri = request.uri();
        let Some(host) = uri.host() else {
            return Err(HttpError::HttpRequestUriInvalid);
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port = uri
            .port_u16()
            .unwrap_or(if uri.scheme_str() == Some("http") {
                80
            } else {
                443
            });
        if !self.allowed.iter().any(|a| a.matches(host, port)) {
            self.capture.host_line(format!(
                "denied a request to {host}:{port}: not an allowed host of this connection (allowed: {})",
                self.allowed_list()
            ));
            return Err(HttpError::HttpRequestDenied);
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
        self.allowed
            .iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join(", ")
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
        let admitted = self.admit(&mut request);
        let options = self.bound(options);
        Box::new(async move {
            use http_body_util::BodyExt;
            admitted?;
            let (res, io) =
                wasmtime_wasi_http::default_send_request(request, Some(options)).await?;
            Ok((
                res.map(BodyExt::boxed_unsync),
                Box::new(io) as Box<dyn Future<Output = _> + Send>,
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(allowed: &[&str]) -> (OutboundPolicy, Capture) {
        let capture = Capture::new(64 * 1024);
        let allowed: Vec<AllowedHost> = allowed
            .iter()
            .map(|a| AllowedHost::parse(a).unwrap())
            .collect();
        let creds = vec![Credential::new("authorization", "Bearer s3cret").unwrap()];
        (
            OutboundPolicy::new(
                allowed.into(),
                creds.into(),
                Duration::from_secs(5),
                capture.clone(),
            ),
            capture,
        )
    }

    fn request(uri: &str) -> http::Request<()> {
        http::Request::builder().uri(uri).body(()).unwrap()
    }

    #[test]
    fn p1_only_allowed_hosts_pass_and_only_they_get_credentials() {
        let (p, capture) = policy(&["api.xero.com", "127.0.0.1:8080"]);
        let mut ok = request("https://api.xero.com/api.xro/2.0/Invoices");
        p.admit(&mut ok).unwrap();
        assert_eq!(ok.headers()["authorization"], "Bearer s3cret");

        let mut ok_port = request("http://127.0.0.1:8080/x");
        p.admit(&mut ok_port).unwrap();

        for denied in [
            "http://127.0.0.1:8081/x",
            "https://evil.example/",
            "https://api.xero.com.evil.example/",
            "http://localhost:8080/",
        ] {
            let mut r = request(denied);
            assert!(
                matches!(p.admit(&mut r), Err(HttpError::HttpRequestDenied)),
                "{denied} must be denied"
            );
            assert!(
                r.headers().get("authorization").is_none(),
                "{denied} got the credential"
            );
        }
        assert!(
            capture
                .lines()
                .iter()
                .any(|l| l.message.contains("evil.example"))
        );
    }

    #[test]
    fn p2_guest_cannot_set_credential_headers() {
        let (mut p, _) = policy(&["api.xero.com"]);
        let filter = p.forbidden_header_filter();
        assert!(filter(&http::header::AUTHORIZATION));
        assert!(!filter(&HeaderName::from_static("xero-tenant-id")));
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
        assert!(
            AllowedHost::parse("https://api.xero.com")
                .unwrap_err()
                .contains("not a host")
        );
        assert!(AllowedHost::parse("*.xero.com").is_err());
        assert!(
            AllowedHost::parse("h:99999")
                .unwrap_err()
                .contains("bad port")
        );
        assert_eq!(
            AllowedHost::parse("[::1]:80").unwrap().to_string(),
            "[::1]:80"
        );
        assert_eq!(
            AllowedHost::parse("API.Xero.com").unwrap().to_string(),
            "api.xero.com"
        );
    }
}
