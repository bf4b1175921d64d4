//! The one `bindgen!` of the contract (world `ledgerbridge:connector/plugin`).
//! The `wasi:*` interfaces are the ones wasmtime-wasi and wasmtime-wasi-http
//! implement; only the contract's own types and `log` are generated here.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "ledgerbridge:connector/plugin",
    exports: { default: async },
    with: {
        "wasi:http": wasmtime_wasi_http::p2::bindings::http,
        "wasi:io": wasmtime_wasi::p2::bindings::io,
        "wasi:clocks": wasmtime_wasi::p2::bindings::clocks,
    },
    additional_derives: [PartialEq],
});

pub use self::ledgerbridge::connector::log::Level;
pub use self::ledgerbridge::connector::types::*;
