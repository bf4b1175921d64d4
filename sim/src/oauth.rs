//! OAuth2 as Xero's and Intuit's identity services do it for a server app:
//! registered clients authenticate with HTTP Basic at a token endpoint,
//! refresh tokens rotate on every use, access tokens are Bearer tokens with
//! a lifetime. Shared by the simulators; each keeps one [`OAuth`] in its
//! state and answers its token endpoint with [`OAuth::token_endpoint`].

use axum::http::{HeaderMap, Method};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// What a token gives access to.
pub(crate) struct Grant {
    pub client: String,
    /// Organisations (Xero tenants, QuickBooks realms) it reaches.
    pub tenants: Vec<String>,
    pub expires: Instant,
}

/// Why a Bearer token is refused.
pub(crate) enum Refused {
    /// No such token (or none sent).
    Unknown,
    /// The token expired this long ago.
    Expired(Duration),
}

/// Clients, refresh tokens and access tokens.
#[derive(Default)]
pub(crate) struct OAuth {
    clients: HashMap<String, String>,
    refresh: HashMap<String, Grant>,
    access: HashMap<String, Grant>,
}

/// A fresh opaque token.
pub(crate) fn token() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

impl OAuth {
    pub fn add_client(&mut self, id: &str, secret: &str) {
        self.clients.insert(id.into(), secret.into());
    }

    /// A refresh token for `client` to `tenant`, as the consent flow gives.
    pub fn grant(&mut self, client: &str, tenant: &str, expires: Instant) -> String {
        let t = token();
        self.refresh.insert(
            t.clone(),
            Grant {
                client: client.into(),
                tenants: vec![tenant.into()],
                expires,
            },
        );
        t
    }

    /// Every access token issued so far expires at `at`.
    pub fn expire_access(&mut self, at: Instant) {
        for g in self.access.values_mut() {
            g.expires = at;
        }
    }

    /// The user disconnected the app: every token is refused from now on.
    pub fn revoke(&mut self) {
        self.refresh.clear();
        self.access.clear();
    }

    /// The grant of the request's `Authorization: Bearer` token at `now`.
    pub fn bearer(&self, headers: &HeaderMap, now: Instant) -> Result<&Grant, Refused> {
        let grant = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .and_then(|b| self.access.get(b))
            .ok_or(Refused::Unknown)?;
        if grant.expires <= now {
            return Err(Refused::Expired(
                now.saturating_duration_since(grant.expires),
            ));
        }
        Ok(grant)
    }

    /// The token endpoint: a refresh-token grant, rotating. Answers the
    /// status and body, and whether a refresh happened.
    pub fn token_endpoint(
        &mut self,
        method: &Method,
        headers: &HeaderMap,
        body: &[u8],
        now: Instant,
        ttl: (Duration, Duration),
    ) -> (u16, Value, bool) {
        use base64::Engine as _;
        if *method != Method::POST {
            return (405, json!({"error": "invalid_request"}), false);
        }
        let client = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Basic "))
            .and_then(|b| {
                base64::engine::general_purpose::STANDARD
                    .decode(b.trim())
                    .ok()
            })
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|t| {
                t.split_once(':')
                    .map(|(a, b)| (a.to_string(), b.to_string()))
            });
        let Some((id, _)) = client.filter(|(id, secret)| self.clients.get(id) == Some(secret))
        else {
            return (401, json!({"error": "invalid_client"}), false);
        };
        let form = crate::common::url_decode_pairs(&String::from_utf8_lossy(body));
        if form.get("grant_type").map(String::as_str) != Some("refresh_token") {
            return (400, json!({"error": "unsupported_grant_type"}), false);
        }
        let presented = form.get("refresh_token").cloned().unwrap_or_default();
        let valid = self
            .refresh
            .get(&presented)
            .is_some_and(|g| g.client == id && g.expires > now);
        if !valid {
            return (400, json!({"error": "invalid_grant"}), false);
        }
        // Rotation: the used token is spent.
        let Some(used) = self.refresh.remove(&presented) else {
            return (400, json!({"error": "invalid_grant"}), false);
        };
        let (access, refresh) = (token(), token());
        let (access_ttl, refresh_ttl) = ttl;
        self.access.insert(
            access.clone(),
            Grant {
                client: id.clone(),
                tenants: used.tenants.clone(),
                expires: now + access_ttl,
            },
        );
        self.refresh.insert(
            refresh.clone(),
            Grant {
                client: id,
                tenants: used.tenants,
                expires: now + refresh_ttl,
            },
        );
        (
            200,
            json!({
                "access_token": access,
                "expires_in": access_ttl.as_secs(),
                "token_type": "Bearer",
                "refresh_token": refresh,
            }),
            true,
        )
    }
}
