//! The OAuth2 refresh-token exchange (RFC 6749 §6) with an ERP's token
//! endpoint: one request, its answer read into typed outcomes. When to
//! refresh, and keeping the rotated token, is the engine's (`sync::tokens`).

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use std::time::Duration;

/// The most of a token endpoint's answer that is read.
const MAX_ANSWER: usize = 64 * 1024;
/// The longest a token request may take, connecting included.
const TIMEOUT: Duration = Duration::from_secs(30);
/// Access tokens are refreshed this long before they expire.
pub const EARLY: Duration = Duration::from_secs(60);

/// What a refresh obtained.
pub struct Refreshed {
    pub access_token: String,
    /// The refresh token to use next time: the ERP's new one when it
    /// rotates them (Xero does, on every use), else the one sent.
    pub refresh_token: String,
    pub expires_in: Duration,
}

/// Why a refresh failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefreshError {
    /// The ERP refused the grant or the client (`invalid_grant`,
    /// `invalid_client`...): only a person re-authorising the app helps.
    #[error("the ERP refused the connection's OAuth2 grant: {0}")]
    Refused(String),
    /// The endpoint could not be reached or failed: try again later.
    #[error("the ERP's token endpoint is unavailable: {0}")]
    Unavailable(String),
}

/// Whether `url` may receive a client secret: https, or plain http to
/// loopback (simulators and tests), as for plugins' requests (P8).
pub fn check_token_url(url: &str) -> Result<http::Uri, String> {
    let uri: http::Uri = url
        .parse()
        .map_err(|_| format!("`{}` is not a URL", crate::runtime::clip(url, 200)))?;
    let host = uri.host().unwrap_or("");
    match uri.scheme_str() {
        Some("https") if !host.is_empty() => Ok(uri),
        Some("http") if crate::runtime::is_loopback(host) => Ok(uri),
        Some("http") => Err(format!(
            "`{}`: the client secret goes over https only (plain http to loopback only)",
            crate::runtime::clip(url, 200)
        )),
        _ => Err(format!(
            "`{}` is not an https URL",
            crate::runtime::clip(url, 200)
        )),
    }
}

/// Exchanges `refresh_token` for an access token at `token_url`, the
/// client authenticated with HTTP Basic (as Xero and Intuit ask).
pub async fn refresh(
    token_url: &str,
    client_id: &str,
    client_secret: &str,
    refresh_token: &str,
) -> Result<Refreshed, RefreshError> {
    use base64::Engine as _;
    let uri = check_token_url(token_url).map_err(RefreshError::Refused)?;
    let form = form_urlencoded::Serializer::new(String::new())
        .append_pair("grant_type", "refresh_token")
        .append_pair("refresh_token", refresh_token)
        .finish();
    let basic =
        base64::engine::general_purpose::STANDARD.encode(format!("{client_id}:{client_secret}"));
    let authority = uri.authority().map(|a| a.to_string()).unwrap_or_default();
    let mut auth = http::HeaderValue::try_from(format!("Basic {basic}")).map_err(|_| {
        RefreshError::Refused("the client id or secret is not valid header text".into())
    })?;
    auth.set_sensitive(true);
    let request = http::Request::post(uri)
        .header(http::header::HOST, authority)
        .header(http::header::AUTHORIZATION, auth)
        .header(
            http::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .header(http::header::ACCEPT, "application/json")
        .body(
            Full::new(Bytes::from(form))
                .map_err(|never| match never {})
                .boxed_unsync(),
        )
        .map_err(|e| RefreshError::Refused(format!("cannot build the request: {e}")))?;
    let options = wasmtime_wasi_http::RequestOptions {
        connect_timeout: Some(TIMEOUT),
        first_byte_timeout: Some(TIMEOUT),
        between_bytes_timeout: Some(TIMEOUT),
    };
    let exchange = async {
        let (res, io) = wasmtime_wasi_http::default_send_request(request, Some(options))
            .await
            .map_err(|e| RefreshError::Unavailable(format!("{e:?}")))?;
        let io = tokio::spawn(io);
        let status = res.status().as_u16();
        let body = Limited::new(res.into_body(), MAX_ANSWER)
            .collect()
            .await
            .map_err(|e| RefreshError::Unavailable(format!("reading the answer: {e}")))?
            .to_bytes();
        io.abort();
        Ok::<_, RefreshError>((status, body))
    };
    let (status, body) = tokio::time::timeout(TIMEOUT, exchange)
        .await
        .map_err(|_| RefreshError::Unavailable(format!("no answer within {TIMEOUT:?}")))??;
    read_answer(status, &body, refresh_token)
}

/// Reads a token endpoint's answer (RFC 6749 §5.1, §5.2).
fn read_answer(status: u16, body: &[u8], sent: &str) -> Result<Refreshed, RefreshError> {
    let json: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    let text = |k: &str| {
        json.as_ref()
            .and_then(|j| j.get(k))
            .and_then(|v| v.as_str())
            .map(str::to_string)
    };
    if !(200..300).contains(&status) {
        let error = text("error");
        let shown = match (&error, text("error_description")) {
            (Some(e), Some(d)) => format!("HTTP {status}, {e}: {}", crate::runtime::clip(&d, 200)),
            (Some(e), None) => format!("HTTP {status}, {e}"),
            _ => format!(
                "HTTP {status}: {}",
                crate::runtime::clip(&String::from_utf8_lossy(body), 200)
            ),
        };
        // RFC 6749 §5.2: these mean the grant or the client is bad; a
        // retry cannot help. Anything else (429, 5xx) may pass.
        let refused = matches!(
            error.as_deref(),
            Some(
                "invalid_grant"
                    | "invalid_client"
                    | "unauthorized_client"
                    | "unsupported_grant_type"
                    | "invalid_scope"
            )
        ) || matches!(status, 400 | 401 | 403);
        return Err(if refused {
            RefreshError::Refused(shown)
        } else {
            RefreshError::Unavailable(shown)
        });
    }
    let bad = |why: &str| RefreshError::Unavailable(format!("the token endpoint's answer {why}"));
    let access_token = text("access_token").ok_or_else(|| bad("has no access_token"))?;
    if access_token.is_empty()
        || access_token.len() > 16 * 1024
        || http::HeaderValue::try_from(format!("Bearer {access_token}")).is_err()
    {
        return Err(bad("has an access_token that cannot be sent as a header"));
    }
    let refresh_token = match text("refresh_token") {
        Some(r) if !r.is_empty() && r.len() <= 16 * 1024 => r,
        Some(_) => return Err(bad("has an empty or oversized refresh_token")),
        None => sent.to_string(),
    };
    // An endpoint's word on expiry is bounded: never so short that every
    // call refreshes, never longer than a day.
    let expires_in = json
        .as_ref()
        .and_then(|j| j.get("expires_in"))
        .and_then(|v| {
            v.as_u64()
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        })
        .unwrap_or(1800)
        .clamp(EARLY.as_secs() + 30, 86_400);
    Ok(Refreshed {
        access_token,
        refresh_token,
        expires_in: Duration::from_secs(expires_in),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_read_into_outcomes() {
        let ok = read_answer(
            200,
            br#"{"access_token":"a1","expires_in":1800,"token_type":"Bearer","refresh_token":"r2"}"#,
            "r1",
        )
        .unwrap();
        assert_eq!(
            (ok.access_token.as_str(), ok.refresh_token.as_str()),
            ("a1", "r2")
        );
        assert_eq!(ok.expires_in, Duration::from_secs(1800));
        // No rotation: the sent token stays.
        let same = read_answer(200, br#"{"access_token":"a1","expires_in":5}"#, "r1").unwrap();
        assert_eq!(same.refresh_token, "r1");
        assert_eq!(
            same.expires_in,
            Duration::from_secs(90),
            "too short is raised"
        );
        assert!(matches!(
            read_answer(400, br#"{"error":"invalid_grant"}"#, "r1"),
            Err(RefreshError::Refused(m)) if m.contains("invalid_grant")
        ));
        assert!(matches!(
            read_answer(503, b"down", "r1"),
            Err(RefreshError::Unavailable(_))
        ));
        assert!(matches!(
            read_answer(429, b"{}", "r1"),
            Err(RefreshError::Unavailable(_))
        ));
        assert!(matches!(
            read_answer(200, b"{}", "r1"),
            Err(RefreshError::Unavailable(_))
        ));
        assert!(matches!(
            read_answer(200, b"{\"access_token\":\"a\\nb\"}", "r1"),
            Err(RefreshError::Unavailable(_))
        ));
    }

    #[test]
    fn the_secret_goes_over_https_or_to_loopback_only() {
        assert!(check_token_url("https://identity.xero.com/connect/token").is_ok());
        assert!(check_token_url("http://127.0.0.1:9000/connect/token").is_ok());
        assert!(check_token_url("http://identity.xero.com/connect/token").is_err());
        assert!(check_token_url("ftp://x/y").is_err());
        assert!(check_token_url("not a url").is_err());
    }
}
