//! Who is calling: the `Authorization: Bearer` token, checked on every
//! request but health, readiness and the API description.

use super::AppState;
use super::problem::Problem;
use crate::sync::access::Caller;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::header;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// The caller of a request with a valid token.
#[derive(Clone)]
pub struct Auth(pub Caller);

impl FromRequestParts<AppState> for Auth {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Problem> {
        // Checked once, by `layer`, before the body was read.
        if let Some(Auth(c)) = parts.extensions.get::<Auth>() {
            return Ok(Auth(c.clone()));
        }
        let presented = presented_token(&parts.headers).ok_or_else(Problem::unauthorized)?;
        match state.engine.authenticate(presented).await {
            Ok(Some(caller)) => Ok(Auth(caller)),
            Ok(None) => Err(Problem::unauthorized()),
            Err(e) => Err(Problem::internal(&e)),
        }
    }
}

/// Checks the token of every request under `/v1/` from its headers alone,
/// before anything reads its body: a client without a valid token gets
/// `401` at once, never a `100 Continue`, and cannot make the server hold
/// megabytes of body for it. The caller is kept for the handlers.
pub async fn layer(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    if !req.uri().path().starts_with("/v1/") {
        return next.run(req).await;
    }
    let Some(presented) = presented_token(req.headers()) else {
        return Problem::unauthorized().into_response();
    };
    match state.engine.authenticate(presented).await {
        Ok(Some(caller)) => {
            req.extensions_mut().insert(Auth(caller));
            next.run(req).await
        }
        Ok(None) => Problem::unauthorized().into_response(),
        Err(e) => Problem::internal(&e).into_response(),
    }
}

/// The bearer token of a request's one `Authorization` header (the scheme
/// in any case, RFC 9110); none when the header is missing or repeated.
pub fn presented_token(headers: &axum::http::HeaderMap) -> Option<&str> {
    let mut all = headers.get_all(header::AUTHORIZATION).iter();
    let (Some(v), None) = (all.next(), all.next()) else {
        return None;
    };
    let v = v.to_str().ok()?.trim_start();
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

impl Auth {
    /// The caller, if it may reach tenant `tenant`'s data. Another
    /// tenant's data is "not found": never a hint that it exists.
    pub fn tenant(&self, tenant: &str) -> Result<(), Problem> {
        if self.0.reaches(tenant) {
            Ok(())
        } else {
            Err(Problem::not_found(format!("no tenant {tenant}")))
        }
    }

    /// The caller, if it holds an admin token.
    pub fn admin(&self) -> Result<(), Problem> {
        match self.0 {
            Caller::Admin { .. } => Ok(()),
            Caller::Tenant { .. } => Err(Problem::forbidden(
                "this needs an admin token: a tenant's token reaches that tenant's data only",
            )),
        }
    }
}
