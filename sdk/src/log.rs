//! Logging into the host. Lines are captured per operation and shown in the
//! document's integration log, tagged with tenant, connection and plugin.
//! The host bounds how much one operation may log.

use crate::bindings::ledgerbridge::connector::log as host;

pub use host::Level;

/// Logs `message` at `level`.
pub fn log(level: Level, message: impl AsRef<str>) {
    host::log(level, message.as_ref());
}

/// Logs at debug level.
pub fn debug(message: impl AsRef<str>) {
    log(Level::Debug, message)
}

/// Logs at info level.
pub fn info(message: impl AsRef<str>) {
    log(Level::Info, message)
}

/// Logs at warn level.
pub fn warn(message: impl AsRef<str>) {
    log(Level::Warn, message)
}

/// Logs at error level.
pub fn error(message: impl AsRef<str>) {
    log(Level::Error, message)
}
