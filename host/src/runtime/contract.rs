//! Which contract version a plugin was built for, read from the component's
//! exports before anything is instantiated.

use wasmtime::Engine;
use wasmtime::component::Component;

/// The package every plugin exports its connector from.
pub const PACKAGE: &str = "ledgerbridge:connector";

/// The contract versions this host runs, newest first. The newest is
/// `wit/connector.wit`; each older one is frozen in `wit/since_vX.Y.Z/`
/// with bindings of its own ([`super::bindings::v0_1`]).
pub const ACCEPTED: &[&str] = &["0.2.0", "0.1.0"];

/// Contract 0.1.0: one item per operation.
pub const V0_1: &str = "0.1.0";

/// Why a component is not a plugin this host can run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContractError {
    /// The component exports no `ledgerbridge:connector/connector` interface.
    #[error(
        "not a ledgerbridge connector plugin: the component exports no `{PACKAGE}/connector` interface (it exports: {exports})"
    )]
    NotAConnector {
        /// What it exports instead, comma separated.
        exports: String,
    },
    /// Built for a contract version this host does not run.
    #[error(
        "the plugin was built for contract {PACKAGE}@{found}; this host accepts {}",
        named(.accepted)
    )]
    Incompatible {
        /// The plugin's version.
        found: String,
        /// The host's accepted versions, comma separated.
        accepted: String,
    },
}

/// `0.2.0, 0.1.0` as `ledgerbridge:connector@0.2.0 or ledgerbridge:connector@0.1.0`.
fn named(versions: &str) -> String {
    versions
        .split(", ")
        .map(|v| format!("{PACKAGE}@{v}"))
        .collect::<Vec<_>>()
        .join(" or ")
}

/// The contract version `component` exports its connector for, if this host
/// accepts it.
pub fn check(engine: &Engine, component: &Component) -> Result<String, ContractError> {
    let ty = component.component_type();
    let names: Vec<String> = ty
        .exports(engine)
        .map(|(name, _)| name.to_string())
        .collect();
    let prefix = format!("{PACKAGE}/connector@");
    // A plugin exporting several versions runs as the newest this host
    // accepts (a plugin keeping 0.1 for older hosts still batches here).
    let exported: Vec<&str> = names
        .iter()
        .filter_map(|n| n.strip_prefix(&prefix))
        .collect();
    if let Some(v) = ACCEPTED.iter().find(|v| exported.contains(v)) {
        return Ok(v.to_string());
    }
    let found = exported
        .first()
        .copied()
        .ok_or_else(|| ContractError::NotAConnector {
            exports: if names.is_empty() {
                "nothing".into()
            } else {
                names.join(", ")
            },
        })?;
    if ACCEPTED.contains(&found) {
        Ok(found.to_string())
    } else {
        Err(ContractError::Incompatible {
            found: found.to_string(),
            accepted: ACCEPTED.join(", "),
        })
    }
}
