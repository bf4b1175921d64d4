use crate::{ConnectorError, Context};

impl Context {
    /// The value of setting `name`, if the connection has it.
    pub fn setting(&self, name: &str) -> Option<&str> {
        self.settings
            .iter()
            .find(|s| s.name == name)
            .map(|s| s.value.as_str())
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
