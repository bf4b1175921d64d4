//! The connector plugins built into the `ledgerbridge` binary. `build.rs`
//! compiles them from `plugins/` for wasm32-wasip2; their bytes are embedded
//! so that the binary runs with no files beside it.

/// A built-in plugin: its name and its component's bytes.
#[derive(Debug, Clone, Copy)]
pub struct BuiltinPlugin {
    /// The connector's name, as its `describe` gives it.
    pub name: &'static str,
    /// The component.
    pub wasm: &'static [u8],
    /// Whether a connection must grant it a directory. (Contract 0.1 cannot
    /// say so itself; the host knows it of its own connectors.)
    pub needs_directory: bool,
}

/// The CSV connector (`plugins/csv`).
pub const CSV: BuiltinPlugin = BuiltinPlugin {
    name: "csv",
    wasm: include_bytes!(env!("LEDGERBRIDGE_PLUGIN_CSV")),
    needs_directory: true,
};

/// The Xero connector (`plugins/xero`).
pub const XERO: BuiltinPlugin = BuiltinPlugin {
    name: "xero",
    wasm: include_bytes!(env!("LEDGERBRIDGE_PLUGIN_XERO")),
    needs_directory: false,
};

/// The QuickBooks Online connector (`plugins/quickbooks`).
pub const QUICKBOOKS: BuiltinPlugin = BuiltinPlugin {
    name: "quickbooks",
    wasm: include_bytes!(env!("LEDGERBRIDGE_PLUGIN_QUICKBOOKS")),
    needs_directory: false,
};

/// Every built-in plugin.
pub const ALL: &[BuiltinPlugin] = &[CSV, XERO, QUICKBOOKS];

/// The built-in plugin called `name`.
pub fn find(name: &str) -> Option<BuiltinPlugin> {
    ALL.iter().copied().find(|p| p.name == name)
}
