//! Errors as RFC 9457 problem details, the same shape on every endpoint:
//! a stable machine-readable `code`, a message, and for bad input the
//! field (and every field, when several are wrong).

use crate::intake::InvalidInput;
use crate::store::Refused;
use crate::sync::{EngineError, InvalidConnection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// The longest `detail` or error message answered: inputs are echoed in
/// messages, and an answer must not grow with a hostile request.
const MAX_DETAIL: usize = 500;
/// The most field errors answered one by one.
const MAX_ERRORS: usize = 100;

/// `s`, cut to about `max` bytes on a character boundary, marked when cut.
fn clip(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push_str("… (cut)");
    }
    s
}

/// An error answer (`application/problem+json`).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem (`urn:ledgerbridge:problem:<code>`).
    #[serde(rename = "type")]
    pub kind: String,
    /// The kind in words.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// Stable and machine-readable: `unauthorized`, `forbidden`,
    /// `not_found`, `invalid_input`, `conflict`, `payload_too_large`,
    /// `idempotency_key_reused`, `idempotency_key_in_progress`,
    /// `unsupported_media_type`, `method_not_allowed`, `request_timeout`,
    /// `unavailable`,
    /// `internal`.
    pub code: String,
    /// What happened and how to fix it.
    pub detail: String,
    /// The field at fault, for bad input (the first, when several are).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Every field at fault, for bad input.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldProblem>,
    /// Seconds to wait before a retry, sent as `Retry-After`.
    #[serde(skip)]
    pub retry_after: Option<u32>,
}

/// One field of the input and what is wrong with it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FieldProblem {
    /// A path into the input: `documents[0].lines[1].amount`.
    pub field: String,
    pub message: String,
}

impl Problem {
    pub fn new(status: StatusCode, code: &str, detail: impl Into<String>) -> Problem {
        let detail = clip(detail.into(), MAX_DETAIL);
        Problem {
            kind: format!("urn:ledgerbridge:problem:{code}"),
            title: status.canonical_reason().unwrap_or("Error").to_string(),
            status: status.as_u16(),
            code: code.to_string(),
            detail,
            field: None,
            errors: Vec::new(),
            retry_after: None,
        }
    }

    /// Bad input in `field`.
    pub fn invalid(field: &str, message: impl Into<String>) -> Problem {
        let message = message.into();
        Problem::fields(vec![FieldProblem {
            field: field.to_string(),
            message,
        }])
    }

    /// Bad input in each of `errors` (nothing was stored).
    pub fn fields(mut errors: Vec<FieldProblem>) -> Problem {
        // An answer stays small whatever the request held: a batch of
        // thousands of bad items gets the first ones, and says how many.
        let total = errors.len();
        errors.truncate(MAX_ERRORS);
        for e in &mut errors {
            e.field = clip(std::mem::take(&mut e.field), MAX_DETAIL);
            e.message = clip(std::mem::take(&mut e.message), MAX_DETAIL);
        }
        if total > MAX_ERRORS {
            errors.push(FieldProblem {
                field: "(more)".into(),
                message: format!("{} more not shown", total - MAX_ERRORS),
            });
        }
        let detail = match errors.as_slice() {
            _ if total > 1 => format!("{total} fields are not valid; nothing was stored"),
            [one] => format!("{}: {}", one.field, one.message),
            many => format!("{} fields are not valid; nothing was stored", many.len()),
        };
        Problem {
            field: errors.first().map(|e| e.field.clone()),
            errors,
            ..Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_input", detail)
        }
    }

    pub fn not_found(what: impl Into<String>) -> Problem {
        Problem::new(StatusCode::NOT_FOUND, "not_found", what)
    }

    pub fn unauthorized() -> Problem {
        Problem::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid API token is needed: `Authorization: Bearer lbt_…`",
        )
    }

    pub fn forbidden(what: impl Into<String>) -> Problem {
        Problem::new(StatusCode::FORBIDDEN, "forbidden", what)
    }

    /// The host's own failure: logged in full, answered in general.
    pub fn internal(e: &anyhow::Error) -> Problem {
        // The store busy past its wait (another process holds its write
        // lock): the request did nothing and can be retried.
        let busy = e.chain().any(|c| c.is::<crate::store::StoreBusy>());
        if busy {
            tracing::warn!("request refused, the store is busy: {e:#}");
            return Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the store is busy; nothing was changed; retry shortly",
            )
            .with_retry_after(1);
        }
        tracing::error!("request failed: {e:#}");
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the host failed to answer; nothing was changed unless a later read shows it. The host's log has the cause",
        )
    }

    /// An engine error as the caller should see it: a resource of
    /// another tenant is "not found", never named as someone else's.
    pub fn from_engine(e: anyhow::Error) -> Problem {
        if let Some(e) = e.downcast_ref::<EngineError>() {
            return match e {
                EngineError::Invalid { field, message } => Problem::invalid(field, message.clone()),
                EngineError::OtherTenant { connection, .. } => {
                    Problem::not_found(format!("no connection {connection}"))
                }
                EngineError::NoTenant(_)
                | EngineError::NoConnection(_)
                | EngineError::NoDocument { .. }
                | EngineError::NoAttentionItem { .. }
                | EngineError::NoLock { .. }
                | EngineError::NoToken(_)
                | EngineError::NoRun(_) => Problem::not_found(e.to_string()),
                EngineError::Disabled(_) => {
                    Problem::new(StatusCode::CONFLICT, "conflict", e.to_string())
                }
                EngineError::NotPaid(_) | EngineError::PaymentsOff(_) => {
                    Problem::invalid("target", e.to_string())
                }
                EngineError::NotFailed { .. } | EngineError::NoPayment { .. } => {
                    Problem::not_found(e.to_string())
                }
            };
        }
        if let Some(r) = e.downcast_ref::<Refused>() {
            return match r {
                Refused::Invalid { field, message } => Problem::invalid(field, message.clone()),
                Refused::NotFound(what) => Problem::not_found(what.clone()),
            };
        }
        if let Some(c) = e.downcast_ref::<InvalidConnection>() {
            return Problem::fields(
                c.problems
                    .iter()
                    .map(|f| FieldProblem {
                        field: f.field.clone(),
                        message: f.message.clone(),
                    })
                    .collect(),
            );
        }
        if let Some(InvalidInput(errors)) = e.downcast_ref::<InvalidInput>() {
            return Problem::fields(
                errors
                    .iter()
                    .map(|f| FieldProblem {
                        field: f.field.clone(),
                        message: f.message.clone(),
                    })
                    .collect(),
            );
        }
        Problem::internal(&e)
    }
}

impl From<anyhow::Error> for Problem {
    fn from(e: anyhow::Error) -> Problem {
        Problem::from_engine(e)
    }
}

impl Problem {
    /// The same problem, telling the client when to retry.
    pub fn with_retry_after(mut self, seconds: u32) -> Problem {
        self.retry_after = Some(seconds);
        self
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut r = (status, axum::Json(&self)).into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(s) = self.retry_after {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        if status == StatusCode::UNAUTHORIZED {
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        r
    }
}
