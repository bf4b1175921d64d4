//! The `ledgerbridge` command line, run as a user runs it.

use std::process::Command;

fn ledgerbridge(args: &[&str], cache: &std::path::Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ledgerbridge"))
        .args(args)
        .env("LEDGERBRIDGE_CACHE_DIR", cache)
        .output()
        .expect("the binary runs")
}

fn cache() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/plugin-cache")
}

#[test]
fn demo_syncs_sample_documents_through_the_csv_plugin() {
    let dir = tempfile::tempdir().unwrap();
    let out = ledgerbridge(&["demo", "--dir", dir.path().to_str().unwrap()], &cache());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("-> create-bill, entry doc-1001"),
        "{stdout}"
    );
    assert!(
        stdout.contains("-> create-payment, entry pay-9001"),
        "{stdout}"
    );
    assert!(
        stdout.contains("update-bill refused: booked in the ERP"),
        "{stdout}"
    );
    assert!(
        stdout.contains("-> update-bill, entry doc-1004 version 2"),
        "{stdout}"
    );
    for f in [
        "bills/doc-1001.csv",
        "bills/doc-1004.csv",
        "payments/pay-9001.csv",
        "checks/1010/10001",
    ] {
        assert!(dir.path().join(f).exists(), "{f} missing");
        assert!(stdout.contains(f), "{f} not printed");
    }
    // Run again: everything exists now, so it updates rather than duplicates.
    let again = ledgerbridge(&["demo", "--dir", dir.path().to_str().unwrap()], &cache());
    let stdout = String::from_utf8_lossy(&again.stdout);
    assert!(again.status.success());
    assert!(!stdout.contains("create-bill"), "{stdout}");
    assert_eq!(
        std::fs::read_dir(dir.path().join("bills")).unwrap().count(),
        4
    );
}

#[test]
fn plugin_check_describes_a_plugin() {
    let out = ledgerbridge(
        &["plugin", "check", env!("LEDGERBRIDGE_PLUGIN_CSV")],
        &cache(),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("name:             csv"), "{stdout}");
    assert!(
        stdout.contains("contract:         ledgerbridge:connector@0.1.0"),
        "{stdout}"
    );
    assert!(
        stdout.contains("capabilities:     bills, payments, update-payments, check-numbers-in-use"),
        "{stdout}"
    );
}

#[test]
fn plugin_check_explains_a_bad_file_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.wasm");
    std::fs::write(&junk, "hello").unwrap();
    let out = ledgerbridge(&["plugin", "check", junk.to_str().unwrap()], &cache());
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("error: ") && stderr.contains("junk.wasm") && stderr.contains("header"),
        "{stderr}"
    );
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
}
