//! OAuth2 access tokens of connections (P2, O2): obtained and refreshed by
//! the host, never seen by a plugin.
//!
//! A token is refreshed when it is about to expire, or when the ERP
//! answered `unauthorized` to the token in use. One worker refreshes a
//! connection's grant at a time: in this process a per-connection lock,
//! across processes a lease in the store. The rotated refresh token is
//! stored (durably, naming the grant's generation it replaces) before the
//! new access token is used, so two workers refreshing at once never lose
//! it: the second finds the first's token instead of spending a refresh
//! token the ERP already rotated away. An ERP that refuses the grant puts
//! the connection in "needs re-authorisation".

use crate::model::OAuth2;
use crate::oauth::{self, RefreshError};
use crate::store::{Store, now_ms};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long a worker's refresh lease lasts: longer than a token request
/// may take.
const LEASE: Duration = Duration::from_secs(45);
/// How long a worker waits for another's refresh before giving up.
const WAIT: Duration = Duration::from_secs(60);

/// Why no access token could be had.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenError {
    /// The connection needs re-authorisation by a person.
    Refused(String),
    /// Try again later.
    Unavailable(String),
}

/// The access tokens of this process's connections.
pub struct Tokens {
    /// This process, as named in leases.
    worker: String,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl Default for Tokens {
    fn default() -> Self {
        Tokens {
            worker: format!("{}-{}", std::process::id(), uuid::Uuid::new_v4()),
            locks: Mutex::default(),
        }
    }
}

impl Tokens {
    fn lock_of(&self, connection: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
        locks.entry(connection.to_string()).or_default().clone()
    }

    /// An access token for `connection`: the one held while it is good
    /// and is not `rejected` (the token the ERP just answered 401 to),
    /// else a fresh one.
    pub async fn access(
        &self,
        store: &Store,
        connection: &str,
        oauth2: &OAuth2,
        rejected: Option<&str>,
    ) -> Result<String, TokenError> {
        let store_err = |e: anyhow::Error| TokenError::Unavailable(format!("the store: {e:#}"));
        let give_up = tokio::time::Instant::now() + WAIT;
        loop {
            let usable = |g: &crate::store::Grant| -> Option<String> {
                let token = g.access_token.as_ref()?;
                let fresh = g
                    .access_expires_at
                    .is_some_and(|t| t > now_ms() + oauth::EARLY.as_millis() as i64);
                (fresh && Some(token.as_str()) != rejected).then(|| token.clone())
            };
            let grant = store.grant(connection).await.map_err(store_err)?;
            let Some(grant) = grant else {
                return Err(TokenError::Refused(format!(
                    "connection {connection} has no OAuth2 grant stored"
                )));
            };
            if let Some(why) = grant.refused {
                return Err(TokenError::Refused(why));
            }
            if let Some(token) = usable(&grant) {
                return Ok(token);
            }
            let lock = self.lock_of(connection);
            let _held = lock.lock().await;
            // Another task of this process may have refreshed meanwhile.
            let Some(grant) = store.grant(connection).await.map_err(store_err)? else {
                continue;
            };
            if grant.refused.is_some() {
                continue;
            }
            if let Some(token) = usable(&grant) {
                return Ok(token);
            }
            let until = now_ms() + LEASE.as_millis() as i64;
            if !store
                .lease_refresh(connection, grant.generation, &self.worker, until)
                .await
                .map_err(store_err)?
            {
                // Another process refreshes it (or the grant changed):
                // read again shortly.
                drop(_held);
                if tokio::time::Instant::now() >= give_up {
                    return Err(TokenError::Unavailable(format!(
                        "another worker has been refreshing connection {connection}'s token for over {WAIT:?}"
                    )));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            let answer = oauth::refresh(
                &oauth2.token_url,
                &oauth2.client_id,
                &grant.client_secret,
                &grant.refresh_token,
            )
            .await;
            match answer {
                Ok(r) => {
                    let expires = now_ms() + r.expires_in.as_millis() as i64;
                    let stored = store
                        .store_refreshed(
                            connection,
                            grant.generation,
                            &r.refresh_token,
                            &r.access_token,
                            expires,
                        )
                        .await;
                    match stored {
                        Ok(true) => {
                            tracing::info!(connection, "refreshed the OAuth2 access token");
                            return Ok(r.access_token);
                        }
                        // Replaced by an operator meanwhile: use theirs.
                        Ok(false) => continue,
                        Err(e) => {
                            // Not stored: the new token is not used, so the
                            // ERP's next answer tells whether the old one
                            // still holds (some ERPs keep it a while).
                            let _ = store.release_refresh(connection, &self.worker).await;
                            return Err(store_err(e));
                        }
                    }
                }
                Err(RefreshError::Refused(why)) => {
                    let why = format!(
                        "connection {connection} needs re-authorisation: the ERP refused its OAuth2 grant ({why})"
                    );
                    store
                        .refuse_grant(connection, grant.generation, &why)
                        .await
                        .map_err(store_err)?;
                    tracing::warn!(connection, "{why}");
                    return Err(TokenError::Refused(why));
                }
                Err(RefreshError::Unavailable(why)) => {
                    let _ = store.release_refresh(connection, &self.worker).await;
                    return Err(TokenError::Unavailable(why));
                }
            }
        }
    }
}
