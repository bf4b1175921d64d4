//! What the HTTP API keeps (issue 13): its tokens (only a digest of each
//! secret) and the answers to writes sent with an `Idempotency-Key`. The
//! engine decides who a token is and when an answer is replayed; these
//! are its transactions.

use super::{Store, exec, now_ms, query_row};
use rusqlite::{OptionalExtension, params};
use serde::Serialize;

/// A token as listed: never its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiToken {
    pub id: String,
    /// `None`: an admin token.
    pub tenant_id: Option<String>,
    pub label: String,
    pub created_at: i64,
    pub rotated_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

/// Where a write under an idempotency key stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdempotencyBegin {
    /// First seen (or abandoned long enough ago): do it.
    New,
    /// Answered before: the same answer again.
    Replay { status: u16, body: String },
    /// The key was used for a different request.
    Mismatch,
    /// The first request is still being answered.
    InProgress,
}

fn token_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ApiToken> {
    Ok(ApiToken {
        id: r.get(0)?,
        tenant_id: r.get(1)?,
        label: r.get(2)?,
        created_at: r.get(3)?,
        rotated_at: r.get(4)?,
        revoked_at: r.get(5)?,
    })
}

const TOKEN_COLUMNS: &str = "id, tenant_id, label, created_at, rotated_at, revoked_at";

/// An idempotency key's row: the request's digest, the answer's status
/// and body once answered, and when it was begun.
type KeyRow = (Vec<u8>, Option<i64>, Option<String>, i64);

impl Store {
    /// Records a new token (its tenant must exist; `None` for admin).
    pub async fn insert_token(
        &self,
        id: &str,
        tenant: Option<&str>,
        label: &str,
        secret_sha256: [u8; 32],
    ) -> anyhow::Result<ApiToken> {
        let (id, tenant, label) = (
            id.to_string(),
            tenant.map(str::to_string),
            label.to_string(),
        );
        self.with(move |db| {
            exec(
                db,
                "INSERT INTO api_tokens (id, tenant_id, label, secret_sha256, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![id, tenant, label, secret_sha256.to_vec(), now_ms()],
            )?;
            Ok(query_row(
                db,
                &format!("SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE id = ?1"),
                [&id],
                token_row,
            )?)
        })
        .await
    }

    /// Token `id` and the digest of its secret.
    pub async fn token(&self, id: &str) -> anyhow::Result<Option<(ApiToken, Vec<u8>)>> {
        let id = id.to_string();
        self.with(move |db| {
            Ok(query_row(
                db,
                &format!("SELECT {TOKEN_COLUMNS}, secret_sha256 FROM api_tokens WHERE id = ?1"),
                [&id],
                |r| Ok((token_row(r)?, r.get::<_, Vec<u8>>(6)?)),
            )
            .optional()?)
        })
        .await
    }

    /// Every token (of `tenant`, when given; admin tokens with `Some("")`
    /// never match), oldest first.
    pub async fn tokens(&self, tenant: Option<&str>) -> anyhow::Result<Vec<ApiToken>> {
        let tenant = tenant.map(str::to_string);
        self.with(move |db| {
            let mut stmt = db.prepare_cached(&format!(
                "SELECT {TOKEN_COLUMNS} FROM api_tokens
                 WHERE (?1 IS NULL OR tenant_id = ?1) ORDER BY created_at, id"
            ))?;
            let rows = stmt.query_map([tenant], token_row)?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    /// Revokes token `id`; false when there is none (or it was revoked).
    pub async fn revoke_token(&self, id: &str) -> anyhow::Result<bool> {
        let id = id.to_string();
        self.with(move |db| {
            Ok(exec(
                db,
                "UPDATE api_tokens SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
                params![id, now_ms()],
            )? == 1)
        })
        .await
    }

    /// Gives token `id` a new secret (the old one stops working at once);
    /// false when there is no such live token.
    pub async fn rotate_token(&self, id: &str, secret_sha256: [u8; 32]) -> anyhow::Result<bool> {
        let id = id.to_string();
        self.with(move |db| {
            Ok(exec(
                db,
                "UPDATE api_tokens SET secret_sha256 = ?2, rotated_at = ?3
                 WHERE id = ?1 AND revoked_at IS NULL",
                params![id, secret_sha256.to_vec(), now_ms()],
            )? == 1)
        })
        .await
    }

    /// Starts a write under `key` in `scope` for a request of digest
    /// `request`: one transaction, so two requests racing on one key do
    /// the work once. A first request under way for longer than
    /// `abandoned_after_ms` (its process died) is taken over; a key older
    /// than `keep_ms` is forgotten (a request under it is new again), and a
    /// few such keys are dropped each time.
    pub async fn idempotency_begin(
        &self,
        scope: &str,
        key: &str,
        request: [u8; 32],
        abandoned_after_ms: i64,
        keep_ms: i64,
    ) -> anyhow::Result<IdempotencyBegin> {
        let (scope, key) = (scope.to_string(), key.to_string());
        self.with(move |db| {
            let now = now_ms();
            let tx = db.savepoint()?;
            let db = &*tx;
            exec(
                db,
                "DELETE FROM idempotency_keys WHERE rowid IN
                   (SELECT rowid FROM idempotency_keys WHERE created_at < ?1 LIMIT 64)",
                params![now - keep_ms],
            )?;
            let row: Option<KeyRow> = query_row(
                db,
                "SELECT request_sha256, status, body, created_at FROM idempotency_keys
                 WHERE scope = ?1 AND key = ?2",
                params![scope, key],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()?;
            let row = row.filter(|(_, _, _, at)| now - at <= keep_ms);
            let begun = match row {
                None => {
                    exec(
                        db,
                        "INSERT INTO idempotency_keys (scope, key, request_sha256, created_at)
                         VALUES (?1, ?2, ?3, ?4)
                         ON CONFLICT (scope, key) DO UPDATE SET request_sha256 = excluded.request_sha256,
                           status = NULL, body = NULL, created_at = excluded.created_at",
                        params![scope, key, request.to_vec(), now],
                    )?;
                    IdempotencyBegin::New
                }
                Some((digest, _, _, _)) if digest != request => IdempotencyBegin::Mismatch,
                Some((_, Some(status), body, _)) => IdempotencyBegin::Replay {
                    status: u16::try_from(status).unwrap_or(500),
                    body: body.unwrap_or_default(),
                },
                Some((_, None, _, at)) if now - at > abandoned_after_ms => {
                    exec(
                        db,
                        "UPDATE idempotency_keys SET created_at = ?3 WHERE scope = ?1 AND key = ?2",
                        params![scope, key, now],
                    )?;
                    IdempotencyBegin::New
                }
                Some(_) => IdempotencyBegin::InProgress,
            };
            tx.commit()?;
            Ok(begun)
        })
        .await
    }

    /// Keeps the answer to the write under `key`.
    pub async fn idempotency_finish(
        &self,
        scope: &str,
        key: &str,
        status: u16,
        body: &str,
    ) -> anyhow::Result<()> {
        let (scope, key, body) = (scope.to_string(), key.to_string(), body.to_string());
        self.with(move |db| {
            exec(
                db,
                "UPDATE idempotency_keys SET status = ?3, body = ?4 WHERE scope = ?1 AND key = ?2",
                params![scope, key, status, body],
            )?;
            Ok(())
        })
        .await
    }

    /// Forgets the write under `key` (it failed on the host's side: a
    /// retry may do it again).
    pub async fn idempotency_forget(&self, scope: &str, key: &str) -> anyhow::Result<()> {
        let (scope, key) = (scope.to_string(), key.to_string());
        self.with(move |db| {
            exec(
                db,
                "DELETE FROM idempotency_keys WHERE scope = ?1 AND key = ?2 AND status IS NULL",
                params![scope, key],
            )?;
            Ok(())
        })
        .await
    }

    /// Every tenant id, in order.
    pub async fn tenants(&self) -> anyhow::Result<Vec<String>> {
        self.with(|db| {
            let mut stmt = db.prepare_cached("SELECT id FROM tenants ORDER BY id")?;
            let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    /// The connection a run's jobs belong to, if the run exists.
    pub async fn run_connection(&self, run: &str) -> anyhow::Result<Option<String>> {
        let run = run.to_string();
        self.with(move |db| {
            Ok(query_row(
                db,
                "SELECT connection_id FROM jobs WHERE run_id = ?1 LIMIT 1",
                [&run],
                |r| r.get(0),
            )
            .optional()?)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::super::{IdempotencyBegin, Store};

    /// Idempotency keys are kept for `keep_ms` only: an older one is
    /// forgotten (the request is new again) and old keys are dropped, so
    /// the table does not grow for ever.
    #[tokio::test]
    async fn idempotency_keys_expire() {
        let s = Store::open_in_memory().unwrap();
        let day = 86_400_000;
        let begin = |key: &'static str, keep: i64| {
            let s = s.clone();
            async move {
                s.idempotency_begin("acme", key, [1; 32], 60_000, keep)
                    .await
                    .unwrap()
            }
        };
        assert!(matches!(begin("k1", day).await, IdempotencyBegin::New));
        s.idempotency_finish("acme", "k1", 200, "{}").await.unwrap();
        assert!(matches!(
            begin("k1", day).await,
            IdempotencyBegin::Replay { .. }
        ));
        for k in ["k2", "k3"] {
            assert!(matches!(begin(k, day).await, IdempotencyBegin::New));
            s.idempotency_finish("acme", k, 200, "{}").await.unwrap();
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
        // With a retention of 1 ms, k1 is new again and the others dropped.
        assert!(matches!(begin("k1", 1).await, IdempotencyBegin::New));
        let left = s
            .with(|db| {
                Ok(
                    db.query_row("SELECT COUNT(*) FROM idempotency_keys", [], |r| {
                        r.get::<_, i64>(0)
                    })?,
                )
            })
            .await
            .unwrap();
        assert_eq!(left, 1, "only k1, begun again");
        // More expired keys than one request drops: the one asked for is
        // still forgotten.
        let keys: Vec<&'static str> = (0..70)
            .map(|i| &*Box::leak(format!("x{i}").into_boxed_str()))
            .collect();
        for k in &keys {
            assert!(matches!(begin(k, day).await, IdempotencyBegin::New));
            s.idempotency_finish("acme", k, 200, "{}").await.unwrap();
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
        assert!(matches!(begin("x69", 1).await, IdempotencyBegin::New));
    }
}
