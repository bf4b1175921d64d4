//! Bindings generated from `wit/connector.wit` (world `plugin`), including
//! the `wasi:http` and `wasi:io` interfaces the [`crate::http`] client uses.
#![allow(missing_docs, clippy::all)]

wit_bindgen::generate!({
    path: "../wit",
    world: "ledgerbridge:connector/plugin",
    generate_all,
    pub_export_macro: true,
    export_macro_name: "__export_plugin",
    default_bindings_module: "ledgerbridge_sdk::bindings",
    runtime_path: "ledgerbridge_sdk::__private::wit_bindgen::rt",
});
