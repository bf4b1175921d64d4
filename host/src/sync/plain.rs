//! Failures in plain words, with how to fix them (L2), and whether a retry
//! can help (R1, R3).

use crate::runtime::bindings::ConnectorError;
use crate::runtime::{CallError, PluginFault, describe_connector_error};
use std::time::Duration;

/// What the policy does with a failure.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Transient: try again, not before `after` when the ERP said.
    Retry {
        after: Option<Duration>,
        message: String,
    },
    /// A person must act.
    Attention { message: String, hint: String },
}

/// Classifies a failed call.
pub fn verdict(e: &CallError) -> Verdict {
    match e {
        CallError::Connector(c) => connector(c),
        CallError::Fault(PluginFault::Deadline(d)) => Verdict::Retry {
            after: None,
            message: format!("the connector took longer than {d:?} and was stopped"),
        },
        CallError::Fault(f) => Verdict::Attention {
            message: f.to_string(),
            hint: "This is a fault in the connector plugin, not in the document: report it to the plugin's author. Re-sync once a fixed plugin is installed.".into(),
        },
        CallError::HeldBack(d) => Verdict::Retry {
            after: Some(*d),
            message: e.to_string(),
        },
        CallError::Unsupported { .. } => Verdict::Attention {
            message: e.to_string(),
            hint: "Turn off the switch that asks for this in the connection, or use a connector that supports it.".into(),
        },
    }
}

fn connector(c: &ConnectorError) -> Verdict {
    let message = describe_connector_error(c);
    match c {
        ConnectorError::RateLimited(r) => Verdict::Retry { after: r.retry_after_ms.map(Duration::from_millis), message },
        ConnectorError::Unavailable(_) | ConnectorError::Conflict(_) => Verdict::Retry { after: None, message },
        ConnectorError::Validation(v) => Verdict::Attention { hint: validation_hint(&v.field), message },
        ConnectorError::Unauthorized(_) => Verdict::Attention {
            message,
            hint: "Re-authorise the connection with the ERP (its token expired or was revoked): store the connection again with a new oauth2.refresh_token from the user's consent (or new credentials), then re-sync Requires attention.".into(),
        },
        ConnectorError::DuplicateCheckNumber(d) => Verdict::Attention {
            message,
            hint: format!(
                "Give the payment another check number than {} and export it again; raise the funding account's next check number above the ERP's.",
                d.check_number
            ),
        },
        ConnectorError::Booked(_) => Verdict::Attention {
            message,
            hint: "Reopen the period in the ERP and clear the lock, or leave the entry as it is.".into(),
        },
        ConnectorError::NotFound(_) => Verdict::Attention {
            message,
            hint: "The ERP no longer has what the connector asked for; re-sync to create it again.".into(),
        },
    }
}

fn validation_hint(field: &str) -> String {
    let f = field.to_ascii_lowercase();
    if f.contains("account") {
        "Check the GL account mapping in the connection (the code must exist in the ERP), then re-sync.".into()
    } else if f.contains("date") {
        "Check the document's dates against the ERP's lock dates; reopen the period or change the date, then re-sync.".into()
    } else if f.starts_with("settings") || f.contains("directory") {
        "Fix the connection's settings, then re-sync.".into()
    } else if f.contains("vendor") || f.contains("contact") {
        "Check that the vendor exists in the ERP, then re-sync.".into()
    } else {
        "Correct the field named in the message in the document or the connection, then re-sync."
            .into()
    }
}
