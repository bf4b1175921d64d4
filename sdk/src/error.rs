use crate::{CallError, ConnectorError, DuplicateCheck, RateLimit, ValidationError};

impl ConnectorError {
    /// A rejected field; `field` names it as the host's document does.
    pub fn validation(field: impl Into<String>, message: impl Into<String>) -> Self {
        ConnectorError::Validation(ValidationError {
            field: field.into(),
            message: message.into(),
        })
    }

    /// Throttled; retry after `retry_after_ms` when the ERP said.
    pub fn rate_limited(retry_after_ms: Option<u64>, message: impl Into<String>) -> Self {
        ConnectorError::RateLimited(RateLimit {
            retry_after_ms,
            message: message.into(),
        })
    }

    /// The ERP already uses `check_number`.
    pub fn duplicate_check_number(check_number: u64, message: impl Into<String>) -> Self {
        ConnectorError::DuplicateCheckNumber(DuplicateCheck {
            check_number,
            message: message.into(),
        })
    }

    /// The answer for a call this connector does not implement. The host only
    /// calls what [`crate::Descriptor::capabilities`] declares, so this is
    /// seen only when a plugin declares a capability it lacks.
    pub fn unsupported(call: &str) -> Self {
        ConnectorError::validation(
            "connector",
            format!("this connector does not implement `{call}`"),
        )
    }

    /// Classifies an HTTP status that is not a success into the contract's
    /// cases, for answers the connector has no more specific reading of:
    /// 401/403 unauthorized, 404 not-found, 409 conflict, 429 rate-limited,
    /// 5xx and 408 unavailable, any other 4xx validation.
    pub fn from_status(
        status: u16,
        retry_after_ms: Option<u64>,
        message: impl Into<String>,
    ) -> Self {
        let message = message.into();
        match status {
            401 | 403 => ConnectorError::Unauthorized(message),
            404 => ConnectorError::NotFound(message),
            409 => ConnectorError::Conflict(message),
            429 => ConnectorError::rate_limited(retry_after_ms, message),
            408 | 500..=599 => ConnectorError::Unavailable(message),
            _ => ConnectorError::validation("", message),
        }
    }
}

impl CallError {
    /// Classifies an HTTP status for a request that carried a whole batch
    /// and failed as a whole: 401/403 unauthorized, 429 rate-limited,
    /// anything else unavailable (retried). An ERP that rejects the batch's
    /// content (a 400 naming elements) is better answered per item.
    pub fn from_status(
        status: u16,
        retry_after_ms: Option<u64>,
        message: impl Into<String>,
    ) -> Self {
        let message = message.into();
        match status {
            401 | 403 => CallError::Unauthorized(message),
            429 => CallError::RateLimited(RateLimit {
                retry_after_ms,
                message,
            }),
            _ => CallError::Unavailable(message),
        }
    }
}
