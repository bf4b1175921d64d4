//! `Idempotency-Key` on every write (Codat's and Stripe's convention), in
//! one layer so no endpoint can miss it: a retry of the same request (same
//! method, path, query and body, by the same tenant or by an admin) within
//! a day gets the first answer again, marked `Idempotent-Replayed: true`,
//! and does nothing more; the same key with another request is refused. Only
//! a success is remembered (Stripe's rule): a refused request (4xx) stored
//! nothing and may depend on data that arrives later, a failure (5xx) or a
//! write whose client went away before the answer may not have run; their
//! keys are forgotten so a retry is checked and run again.

use super::AppState;
use super::auth::Auth;
use super::input::too_large;
use super::problem::Problem;
use crate::store::IdempotencyBegin;
use crate::sync::Engine;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// The longest `Idempotency-Key` taken.
const MAX_KEY: usize = 255;

/// Writes whose answer holds a secret (a token): the answer is never
/// stored, so a key cannot be honoured there and is refused rather than
/// ignored.
fn answer_holds_a_secret(method: &Method, path: &str) -> bool {
    method == Method::POST && (path.ends_with("/tokens") || path.ends_with("/rotate"))
}

/// Forgets the key if the write is dropped before its answer is kept (the
/// client went away): a retry then runs instead of waiting for ever.
struct Pending {
    engine: Arc<Engine>,
    scope: String,
    key: String,
    armed: bool,
}

impl Drop for Pending {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let (engine, scope, key) = (
            self.engine.clone(),
            std::mem::take(&mut self.scope),
            std::mem::take(&mut self.key),
        );
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                if let Err(e) = engine.idempotency_forget(&scope, &key).await {
                    tracing::warn!("could not forget an abandoned Idempotency-Key: {e:#}");
                }
            });
        }
    }
}

/// The layer: see the module's documentation.
pub async fn layer(
    State((state, limit)): State<(AppState, usize)>,
    req: Request,
    next: Next,
) -> Response {
    if !matches!(*req.method(), Method::POST | Method::PUT | Method::PATCH) {
        return next.run(req).await;
    }
    let Some(raw) = req.headers().get("idempotency-key") else {
        return next.run(req).await;
    };
    let key = match raw.to_str().map(str::trim) {
        Ok(k) if !k.is_empty() && k.len() <= MAX_KEY && k.chars().all(|c| !c.is_control()) => {
            k.to_string()
        }
        _ => {
            return Problem::invalid(
                "Idempotency-Key",
                format!("1 to {MAX_KEY} visible characters"),
            )
            .into_response();
        }
    };
    if req.headers().get_all("idempotency-key").iter().count() > 1 {
        return Problem::invalid("Idempotency-Key", "give one key, not several").into_response();
    }
    if answer_holds_a_secret(req.method(), req.uri().path()) {
        return Problem::invalid(
            "Idempotency-Key",
            "not taken here: the answer holds a token, which is shown once and never stored; list the tokens to see whether the first request made one",
        )
        .into_response();
    }
    // The caller's scope, as the auth layer found it (every write is
    // under `/v1/`, where a request without a valid token never gets here).
    let Some(Auth(caller)) = req.extensions().get::<Auth>().cloned() else {
        return next.run(req).await;
    };
    let (parts, body) = req.into_parts();
    let bytes = match axum::body::to_bytes(body, limit).await {
        Ok(b) => b,
        Err(_) => return too_large().into_response(),
    };
    let mut digest = Sha256::new();
    digest.update(parts.method.as_str());
    digest.update([0]);
    digest.update(parts.uri.path_and_query().map_or("", |p| p.as_str()));
    digest.update([0]);
    digest.update(&bytes);
    let digest: [u8; 32] = digest.finalize().into();
    let scope = caller.scope();
    match state.engine.idempotency_begin(&scope, &key, digest).await {
        Err(e) => Problem::internal(&e).into_response(),
        Ok(IdempotencyBegin::Mismatch) => Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency_key_reused",
            "this Idempotency-Key was used for a different request; use a new key for a new request",
        )
        .into_response(),
        Ok(IdempotencyBegin::InProgress) => Problem::new(
            StatusCode::CONFLICT,
            "idempotency_key_in_progress",
            "the first request with this Idempotency-Key is still being answered; retry shortly",
        )
        .with_retry_after(1)
        .into_response(),
        Ok(IdempotencyBegin::Replay { status, body }) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
            let mut r = (status, body).into_response();
            let ct = if status.is_success() {
                "application/json"
            } else {
                "application/problem+json"
            };
            r.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
            r.headers_mut()
                .insert("idempotent-replayed", HeaderValue::from_static("true"));
            r
        }
        Ok(IdempotencyBegin::New) => {
            let mut pending = Pending {
                engine: state.engine.clone(),
                scope: scope.clone(),
                key: key.clone(),
                armed: true,
            };
            let response = next
                .run(Request::from_parts(parts, Body::from(bytes)))
                .await;
            let (rparts, rbody) = response.into_parts();
            // The API's answers are small JSON; a body that cannot be read
            // is not kept (the key is forgotten, so a retry runs).
            let Ok(rbytes) = axum::body::to_bytes(rbody, usize::MAX).await else {
                return Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "the answer could not be read")
                    .into_response();
            };
            let kept = if !rparts.status.is_success() {
                state.engine.idempotency_forget(&scope, &key).await
            } else {
                state
                    .engine
                    .idempotency_finish(
                        &scope,
                        &key,
                        rparts.status.as_u16(),
                        &String::from_utf8_lossy(&rbytes),
                    )
                    .await
            };
            match kept {
                Ok(()) => pending.armed = false,
                Err(e) => {
                    tracing::warn!("could not keep the answer under an Idempotency-Key: {e:#}")
                }
            }
            Response::from_parts(rparts, Body::from(rbytes))
        }
    }
}
