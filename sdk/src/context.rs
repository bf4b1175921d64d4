use crate::{ConnectorError, Context, Limits};

impl Context {
    /// The value of setting `name`, if the connection has it.
    pub fn setting(&self, name: &str) -> Option<&str> {
        self.settings
            .iter()
            .find(|s| s.name == name)
            .map(|s| s.value.as_str())
    }

    /// This context with `key` as its idempotency key: what a single-item
    /// operation of a batch is given, so it sends its item's own key.
    pub fn for_item(&self, key: &str) -> Context {
        Context {
            idempotency_key: key.to_string(),
            ..self.clone()
        }
    }

    /// The value of setting `name`, or a validation error naming
    /// `settings.<name>` when it is missing or empty.
    pub fn require_setting(&self, name: &str) -> Result<&str, ConnectorError> {
        match self.setting(name) {
            Some(v) if !v.trim().is_empty() => Ok(v),
            _ => Err(ConnectorError::validation(
                format!("settings.{name}"),
                format!("the connection has no `{name}` setting"),
            )),
        }
    }
}

impl Default for Limits {
    /// Eight calls at once, no limit a minute or a day, ten items per call:
    /// what suits a connector that implements only the single-item
    /// operations (the SDK makes one ERP request per item, and a call's
    /// deadline covers them all). Raise the items per call when the
    /// connector sends a batch in one request; state the ERP's own limits.
    fn default() -> Self {
        Limits {
            calls_at_once: 8,
            calls_per_minute: None,
            calls_per_day: None,
            lookups_per_call: 10,
            creates_per_call: 10,
            updates_per_call: 10,
        }
    }
}
