//! Builds the built-in connector plugins (plugins/) for wasm32-wasip2 and
//! tells the crate where they are, for `include_bytes!`.

use std::path::Path;

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf();
    let built = ledgerbridge_plugin_build::build(
        &root.join("plugins"),
        &[
            "ledgerbridge-csv",
            "ledgerbridge-xero",
            "ledgerbridge-quickbooks",
        ],
        &[&root.join("sdk"), &root.join("wit")],
    );
    println!(
        "cargo:rustc-env=LEDGERBRIDGE_PLUGIN_CSV={}",
        built[0].display()
    );
    println!(
        "cargo:rustc-env=LEDGERBRIDGE_PLUGIN_XERO={}",
        built[1].display()
    );
    println!(
        "cargo:rustc-env=LEDGERBRIDGE_PLUGIN_QUICKBOOKS={}",
        built[2].display()
    );
}
