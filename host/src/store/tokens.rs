//! Each connection's OAuth2 grant (P2, O2): the refresh token the host
//! holds, the access token it last obtained, and the lease one worker takes
//! to refresh them. The engine decides when to refresh (`sync::tokens`);
//! these are its transactions.

use super::secrets::{open, open_opt, seal};
use super::{Store, exec, now_ms, query_row};
use crate::model::OAuth2;
use anyhow::bail;
use rusqlite::{OptionalExtension, params};

/// A connection's grant as stored.
#[derive(Clone)]
pub struct Grant {
    pub client_secret: String,
    pub refresh_token: String,
    pub access_token: Option<String>,
    /// Unix ms.
    pub access_expires_at: Option<i64>,
    /// Why the ERP refused the grant, when it did.
    pub refused: Option<String>,
    /// Counts rotations; a write names the one it read.
    pub generation: i64,
}

impl std::fmt::Debug for Grant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Grant")
            .field("access_expires_at", &self.access_expires_at)
            .field("refused", &self.refused)
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

const CLIENT_SECRET: &str = "oauth_grants.client_secret";
const REFRESH_TOKEN: &str = "oauth_grants.refresh_token";
const ACCESS_TOKEN: &str = "oauth_grants.access_token";

/// Stores `c`'s grant with the connection, in its transaction: a new
/// refresh token replaces the grant (the user re-authorised the app); a
/// change without one keeps the token the host holds (it may have rotated
/// since). A connection without `oauth2` keeps no grant.
pub(super) fn put_grant(
    tx: &rusqlite::Connection,
    connection: &str,
    oauth2: Option<&OAuth2>,
) -> anyhow::Result<()> {
    let Some(o) = oauth2 else {
        exec(
            tx,
            "DELETE FROM oauth_grants WHERE connection_id = ?1",
            [connection],
        )?;
        return Ok(());
    };
    let held: Option<String> = query_row(
        tx,
        "SELECT client_secret FROM oauth_grants WHERE connection_id = ?1",
        [connection],
        |r| r.get(0),
    )
    .optional()?;
    let secret = match (o.client_secret.is_empty(), held) {
        (false, _) => o.client_secret.clone(),
        (true, Some(held)) => open(CLIENT_SECRET, connection, &held)?,
        (true, None) => bail!(
            "oauth2.client_secret: required: the client secret of the app registered with the ERP"
        ),
    };
    match &o.refresh_token {
        Some(token) => {
            exec(
                tx,
                "INSERT INTO oauth_grants (connection_id, client_secret, refresh_token, updated_at)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (connection_id) DO UPDATE SET
                   client_secret = excluded.client_secret, refresh_token = excluded.refresh_token,
                   access_token = NULL, access_expires_at = NULL, refused = NULL,
                   refreshing_until = NULL, refreshing_by = NULL,
                   generation = generation + 1, updated_at = excluded.updated_at",
                params![
                    connection,
                    seal(CLIENT_SECRET, connection, &secret)?,
                    seal(REFRESH_TOKEN, connection, token)?,
                    now_ms()
                ],
            )?;
        }
        None => {
            let n = exec(
                tx,
                "UPDATE oauth_grants SET client_secret = ?2, updated_at = ?3 WHERE connection_id = ?1",
                params![
                    connection,
                    seal(CLIENT_SECRET, connection, &secret)?,
                    now_ms()
                ],
            )?;
            if n == 0 {
                bail!(
                    "oauth2.refresh_token: required: the refresh token the ERP gave when the user authorised the app"
                );
            }
        }
    }
    Ok(())
}

impl Store {
    /// The grant of `connection`, if it has one.
    pub async fn grant(&self, connection: &str) -> anyhow::Result<Option<Grant>> {
        let c = connection.to_string();
        self.with(move |db| {
            let row = query_row(
                db,
                "SELECT client_secret, refresh_token, access_token, access_expires_at, refused, generation
                 FROM oauth_grants WHERE connection_id = ?1",
                [&c],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, Option<String>>(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                    ))
                },
            )
            .optional()?;
            row.map(|(secret, refresh, access, expires, refused, generation)| {
                Ok(Grant {
                    client_secret: open(CLIENT_SECRET, &c, &secret)?,
                    refresh_token: open(REFRESH_TOKEN, &c, &refresh)?,
                    access_token: open_opt(ACCESS_TOKEN, &c, access)?,
                    access_expires_at: expires,
                    refused,
                    generation,
                })
            })
            .transpose()
        })
        .await
    }

    /// Takes the lease to refresh `connection`'s grant of `generation`
    /// until `until` (Unix ms) for `worker`: false when another worker
    /// holds it or the grant changed since it was read.
    pub async fn lease_refresh(
        &self,
        connection: &str,
        generation: i64,
        worker: &str,
        until: i64,
    ) -> anyhow::Result<bool> {
        let (c, w) = (connection.to_string(), worker.to_string());
        self.with(move |db| {
            Ok(exec(
                db,
                "UPDATE oauth_grants SET refreshing_until = ?3, refreshing_by = ?4
                 WHERE connection_id = ?1 AND generation = ?2 AND refused IS NULL
                   AND (refreshing_until IS NULL OR refreshing_until < ?5 OR refreshing_by = ?4)",
                params![c, generation, until, w, now_ms()],
            )? == 1)
        })
        .await
    }

    /// Stores what a refresh of the grant of `generation` obtained, and
    /// ends the lease: false (nothing stored) when the grant changed since.
    /// Durable before the caller uses the access token (O2).
    pub async fn store_refreshed(
        &self,
        connection: &str,
        generation: i64,
        refresh_token: &str,
        access_token: &str,
        access_expires_at: i64,
    ) -> anyhow::Result<bool> {
        let (c, r, a) = (
            connection.to_string(),
            refresh_token.to_string(),
            access_token.to_string(),
        );
        self.with(move |db| {
            Ok(exec(
                db,
                "UPDATE oauth_grants SET refresh_token = ?3, access_token = ?4, access_expires_at = ?5,
                   refreshing_until = NULL, refreshing_by = NULL,
                   generation = generation + 1, updated_at = ?6
                 WHERE connection_id = ?1 AND generation = ?2",
                params![
                    c,
                    generation,
                    seal(REFRESH_TOKEN, &c, &r)?,
                    seal(ACCESS_TOKEN, &c, &a)?,
                    access_expires_at,
                    now_ms()
                ],
            )? == 1)
        })
        .await
    }

    /// Records that the ERP refused the grant of `generation`: the
    /// connection needs re-authorisation.
    pub async fn refuse_grant(
        &self,
        connection: &str,
        generation: i64,
        why: &str,
    ) -> anyhow::Result<()> {
        let (c, w) = (connection.to_string(), why.to_string());
        self.with(move |db| {
            exec(
                db,
                "UPDATE oauth_grants SET refused = ?3, access_token = NULL,
                   refreshing_until = NULL, refreshing_by = NULL, updated_at = ?4
                 WHERE connection_id = ?1 AND generation = ?2",
                params![c, generation, w, now_ms()],
            )?;
            Ok(())
        })
        .await
    }

    /// Ends `worker`'s lease on `connection`'s grant without a change.
    pub async fn release_refresh(&self, connection: &str, worker: &str) -> anyhow::Result<()> {
        let (c, w) = (connection.to_string(), worker.to_string());
        self.with(move |db| {
            exec(
                db,
                "UPDATE oauth_grants SET refreshing_until = NULL, refreshing_by = NULL
                 WHERE connection_id = ?1 AND refreshing_by = ?2",
                params![c, w],
            )?;
            Ok(())
        })
        .await
    }
}
