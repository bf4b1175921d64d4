//! The `bindgen!` of each contract version the host runs. The current one
//! (`wit/`, world `ledgerbridge:connector/plugin@0.2.0`) is this module's
//! root; the frozen ones live in submodules named after their directory
//! (`wit/since_v0.1.0/` → [`v0_1`]). The `wasi:*` interfaces are the ones
//! wasmtime-wasi and wasmtime-wasi-http implement; only each contract's own
//! types and `log` are generated here.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "ledgerbridge:connector/plugin",
    exports: { default: async },
    with: {
        "wasi:http": wasmtime_wasi_http::p2::bindings::http,
        "wasi:io": wasmtime_wasi::p2::bindings::io,
        "wasi:clocks": wasmtime_wasi::p2::bindings::clocks,
        "wasi:filesystem": wasmtime_wasi::p2::bindings::filesystem,
    },
    additional_derives: [PartialEq],
});

pub use self::ledgerbridge::connector::ledger::*;
pub use self::ledgerbridge::connector::log::Level;

/// Contract 0.1.0, frozen: one item per operation, the values in an
/// interface named `types`, no `limits` in the descriptor.
pub mod v0_1 {
    wasmtime::component::bindgen!({
        path: "../wit/since_v0.1.0",
        world: "ledgerbridge:connector/plugin",
        exports: { default: async },
        with: {
            "wasi:http": wasmtime_wasi_http::p2::bindings::http,
            "wasi:io": wasmtime_wasi::p2::bindings::io,
            "wasi:clocks": wasmtime_wasi::p2::bindings::clocks,
        },
        additional_derives: [PartialEq],
    });

    pub use self::ledgerbridge::connector::types::*;
}
