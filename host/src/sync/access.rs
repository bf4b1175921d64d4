//! Who may use the HTTP API (issue 13): tokens, made and checked here.
//!
//! A token is `lbt_<id>_<secret>`: the id names it in lists and logs, the
//! secret (32 random bytes) proves it. Only the SHA-256 of the secret is
//! stored (a secret of 256 random bits needs no slow hash), so a token is
//! shown once, when made or rotated, and a copy of the store holds none.
//! A tenant token reaches that tenant's data only; an admin token manages
//! tenants, connections and tokens, and may read every tenant's data.

use super::Engine;
use super::api::EngineError;
use crate::model::check_id;
use crate::store::{ApiToken, IdempotencyBegin};
use base64::Engine as _;
use sha2::{Digest, Sha256};

const PREFIX: &str = "lbt_";

/// How long an `Idempotency-Key` is remembered: a retry within a day gets
/// the first answer; after that the key is new again.
pub const IDEMPOTENCY_KEEP_MS: i64 = 24 * 60 * 60 * 1000;

/// How long a label may be.
const MAX_LABEL: usize = 200;

/// Who made a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// Manages the installation; reads every tenant.
    Admin { token: String },
    /// Reaches tenant `tenant` only.
    Tenant { tenant: String, token: String },
}

impl Caller {
    /// Whether the caller may reach tenant `tenant`'s data.
    pub fn reaches(&self, tenant: &str) -> bool {
        match self {
            Caller::Admin { .. } => true,
            Caller::Tenant { tenant: t, .. } => t == tenant,
        }
    }

    /// The scope its idempotency keys live in.
    pub fn scope(&self) -> String {
        match self {
            Caller::Admin { .. } => "admin".into(),
            Caller::Tenant { tenant, .. } => format!("tenant:{tenant}"),
        }
    }

    /// The id of the token it used.
    pub fn token_id(&self) -> &str {
        match self {
            Caller::Admin { token } | Caller::Tenant { token, .. } => token,
        }
    }
}

fn random_bytes<const N: usize>() -> [u8; N] {
    use chacha20poly1305::aead::OsRng;
    use chacha20poly1305::aead::rand_core::RngCore;
    let mut b = [0u8; N];
    OsRng.fill_bytes(&mut b);
    b
}

fn digest(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// Equal in time that does not depend on where they differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn new_secret() -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random_bytes::<32>())
}

impl Engine {
    /// Makes a token for `tenant` (`None`: an admin token). The token is
    /// returned here only.
    pub async fn create_token(
        &self,
        tenant: Option<&str>,
        label: &str,
    ) -> anyhow::Result<(ApiToken, String)> {
        if let Some(t) = tenant {
            self.require_tenant(t).await?;
        }
        let label = label.trim();
        if label.chars().count() > MAX_LABEL || label.chars().any(char::is_control) {
            return Err(EngineError::Invalid {
                field: "label".into(),
                message: format!("at most {MAX_LABEL} characters, no control characters"),
            }
            .into());
        }
        let id: String = random_bytes::<8>()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let secret = new_secret();
        let token = self
            .store
            .insert_token(&id, tenant, label, digest(&secret))
            .await?;
        Ok((token, format!("{PREFIX}{id}_{secret}")))
    }

    /// Who `presented` is, if it is a live token.
    pub async fn authenticate(&self, presented: &str) -> anyhow::Result<Option<Caller>> {
        let Some((id, secret)) = presented
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split_once('_'))
        else {
            return Ok(None);
        };
        if id.len() != 16 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(None);
        }
        let Some((token, stored)) = self.store.token(id).await? else {
            return Ok(None);
        };
        if token.revoked_at.is_some() || !same(&stored, &digest(secret)) {
            return Ok(None);
        }
        Ok(Some(match token.tenant_id {
            None => Caller::Admin { token: token.id },
            Some(tenant) => Caller::Tenant {
                tenant,
                token: token.id,
            },
        }))
    }

    /// The tokens (of `tenant`, when given), secrets never included.
    pub async fn tokens(&self, tenant: Option<&str>) -> anyhow::Result<Vec<ApiToken>> {
        if let Some(t) = tenant {
            self.require_tenant(t).await?;
        }
        self.store.tokens(tenant).await
    }

    /// Token `id` as listed.
    pub async fn token(&self, id: &str) -> anyhow::Result<ApiToken> {
        token_id(id)?;
        Ok(self
            .store
            .token(id)
            .await?
            .ok_or_else(|| EngineError::NoToken(id.to_string()))?
            .0)
    }

    /// Revokes token `id`: it stops working at once.
    pub async fn revoke_token(&self, id: &str) -> anyhow::Result<()> {
        token_id(id)?;
        if !self.store.revoke_token(id).await? {
            return Err(EngineError::NoToken(id.to_string()).into());
        }
        Ok(())
    }

    /// Gives token `id` a new secret, returned here only; the old one
    /// stops working at once.
    pub async fn rotate_token(&self, id: &str) -> anyhow::Result<String> {
        token_id(id)?;
        let secret = new_secret();
        if !self.store.rotate_token(id, digest(&secret)).await? {
            return Err(EngineError::NoToken(id.to_string()).into());
        }
        Ok(format!("{PREFIX}{id}_{secret}"))
    }

    /// Every tenant.
    pub async fn tenants(&self) -> anyhow::Result<Vec<String>> {
        self.store.tenants().await
    }

    /// The connection run `run` belongs to.
    pub async fn run_connection(&self, run: &str) -> anyhow::Result<String> {
        check_id(run).map_err(|m| EngineError::Invalid {
            field: "run".into(),
            message: m,
        })?;
        Ok(self
            .store
            .run_connection(run)
            .await?
            .ok_or_else(|| EngineError::NoRun(run.to_string()))?)
    }

    /// Starts a write under an idempotency key (see
    /// [`crate::store::Store::idempotency_begin`]); a first request under
    /// way for over a minute is taken to have died; keys are kept for a
    /// day ([`IDEMPOTENCY_KEEP_MS`]).
    pub async fn idempotency_begin(
        &self,
        scope: &str,
        key: &str,
        request: [u8; 32],
    ) -> anyhow::Result<IdempotencyBegin> {
        self.store
            .idempotency_begin(scope, key, request, 60_000, IDEMPOTENCY_KEEP_MS)
            .await
    }

    /// Keeps the answer given under an idempotency key.
    pub async fn idempotency_finish(
        &self,
        scope: &str,
        key: &str,
        status: u16,
        body: &str,
    ) -> anyhow::Result<()> {
        self.store
            .idempotency_finish(scope, key, status, body)
            .await
    }

    /// Forgets a write under an idempotency key that failed on the host's
    /// side, so a retry does it.
    pub async fn idempotency_forget(&self, scope: &str, key: &str) -> anyhow::Result<()> {
        self.store.idempotency_forget(scope, key).await
    }
}

fn token_id(id: &str) -> Result<(), EngineError> {
    if id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err(EngineError::Invalid {
            field: "token".into(),
            message: format!("`{}` is not a token id (16 hex digits)", id.escape_debug()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::same;

    #[test]
    fn same_compares_whole() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"ab"));
    }
}
