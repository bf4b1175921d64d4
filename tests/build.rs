//! Builds the test plugins (tests/plugins/) for wasm32-wasip2 and hands the
//! tests their paths.

use std::path::Path;

fn main() {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let root = here.parent().unwrap();
    let names = [
        "test-hostile",
        "test-scripted",
        "test-future-contract",
        "test-create-only",
        "test-minting",
        "test-metered",
        "test-legacy",
    ];
    let built = ledgerbridge_plugin_build::build(
        &here.join("plugins"),
        &names,
        &[&root.join("sdk"), &root.join("wit")],
    );
    for (name, path) in names.iter().zip(built) {
        let var = name
            .trim_start_matches("test-")
            .replace('-', "_")
            .to_uppercase();
        println!("cargo:rustc-env=TEST_PLUGIN_{var}={}", path.display());
    }
}
