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
fn demo_runs_the_engine_on_the_csv_plugin() {
    let dir = tempfile::tempdir().unwrap();
    let out = ledgerbridge(&["demo", "--dir", dir.path().to_str().unwrap()], &cache());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("doc-1001  bill     approved         created         entry doc-1001"),
        "{stdout}"
    );
    // The day's bills, ready for Xero's bill import (issue 10).
    assert!(stdout.contains("imports/bills-xero-"), "{stdout}");
    assert!(
        stdout.contains("doc-1005  bill     approved         failed          lines[0].category"),
        "{stdout}"
    );
    assert!(
        stdout.contains("doc-1001  payment  funding_complete created         entry pay-9001"),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "doc-1002  bill     changed          skipped_booked  not synced: the entry is booked"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("doc-1004  bill     changed          updated"),
        "{stdout}"
    );
    assert!(
        stdout.contains("how to fix: Map category `travel`"),
        "{stdout}"
    );
    for f in [
        "bills/doc-1001.csv",
        "payments/pay-9001.csv",
        "checks/1010/10001",
    ] {
        assert!(dir.path().join("erp").join(f).exists(), "{f} missing");
        assert!(stdout.contains(f), "{f} not printed");
    }
}

#[test]
fn operators_run_it_for_a_tenant_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("lb.db");
    let erp = dir.path().join("erp");
    std::fs::create_dir_all(&erp).unwrap();
    let run = |args: &[&str]| {
        let mut all = vec!["--db", db.to_str().unwrap()];
        all.extend_from_slice(args);
        ledgerbridge(&all, &cache())
    };
    let conn = serde_json::json!({"id": "acme-csv", "tenant_id": "acme", "plugin": "csv",
        "directory": erp.display().to_string(), "mappings": {"categories": {"office": "6100"}}});
    std::fs::write(dir.path().join("conn.json"), conn.to_string()).unwrap();
    let doc = |id: &str, cat: &str| {
        serde_json::json!({"tenant_id": "acme", "id": id, "number": "N1",
        "vendor": {"id": "v", "name": "V"}, "issue_date": "2026-11-02", "due_date": "2026-12-02", "currency": "USD",
        "lines": [{"description": "x", "amount": "5.00", "category": cat}], "total": "5.00", "status": "approved"})
    };
    std::fs::write(
        dir.path().join("docs.json"),
        serde_json::json!({"documents": [doc("d1", "office"), doc("d2", "travel")]}).to_string(),
    )
    .unwrap();

    assert!(run(&["tenant", "add", "acme"]).status.success());
    let added = run(&[
        "connection",
        "add",
        dir.path().join("conn.json").to_str().unwrap(),
    ]);
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );
    let imported = run(&["import", dir.path().join("docs.json").to_str().unwrap()]);
    assert!(
        String::from_utf8_lossy(&imported.stdout)
            .contains("imported 2 documents and 0 payments; 2 syncs queued")
    );
    assert!(run(&["worker", "--until-idle"]).status.success());
    assert!(erp.join("bills/d1.csv").exists());

    let attention = String::from_utf8_lossy(&run(&["attention"]).stdout).into_owned();
    assert!(
        attention.contains("acme-csv d2 bill") && attention.contains("how to fix"),
        "{attention}"
    );
    let log = String::from_utf8_lossy(&run(&["log", "d1", "--connection", "acme-csv"]).stdout)
        .into_owned();
    assert!(
        log.contains("created") && log.contains("lookup-bill") && log.contains("create-bill"),
        "{log}"
    );
    let sync = String::from_utf8_lossy(&run(&["sync", "d1", "--connection", "acme-csv"]).stdout)
        .into_owned();
    assert!(
        sync.contains("d1               bill     unchanged"),
        "{sync}"
    );
    let refused = run(&[
        "sync",
        "d1",
        "--connection",
        "acme-csv",
        "--target",
        "payment",
    ]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("not paid or marked as paid"));
    let resynced = run(&["resync", "--connection", "acme-csv", "--all", "--each"]);
    let resync = String::from_utf8_lossy(&resynced.stdout).into_owned();
    assert!(
        resync.contains(
            "2 results: 0 created, 0 updated, 1 unchanged, 0 skipped (booked), 0 skipped (not due), 1 failed"
        ),
        "{resync}"
    );
    // Issue 7 item 20: a run with a failed result exits non-zero.
    assert!(!resynced.status.success());
    assert!(String::from_utf8_lossy(&resynced.stderr).contains("1 of 2 results failed"));
    assert!(
        run(&["dismiss", "d2", "--connection", "acme-csv"])
            .status
            .success()
    );
    assert!(
        String::from_utf8_lossy(&run(&["attention"]).stdout).contains("nothing requires attention")
    );

    // Bad input: named field, nothing stored.
    std::fs::write(
        dir.path().join("bad.json"),
        r#"{"documents": [{"tenant_id": "acme", "id": "d3"}]}"#,
    )
    .unwrap();
    let bad = run(&["import", dir.path().join("bad.json").to_str().unwrap()]);
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("documents[0].number: is required") && err.contains("nothing was stored"),
        "{err}"
    );
    // Funding accounts and Failed to export.
    assert!(
        run(&[
            "funding-account",
            "set-next",
            "operating",
            "10000",
            "--tenant",
            "acme"
        ])
        .status
        .success()
    );
    let fa = String::from_utf8_lossy(
        &run(&["funding-account", "show", "operating", "--tenant", "acme"]).stdout,
    )
    .into_owned();
    assert!(fa.contains("next check number  10000"), "{fa}");
    assert!(
        String::from_utf8_lossy(&run(&["failed-exports"]).stdout)
            .contains("no payment failed to export")
    );
    let edit = run(&[
        "edit-export",
        "nope",
        "--tenant",
        "acme",
        "--bank-id",
        "1020",
    ]);
    let stderr = String::from_utf8_lossy(&edit.stderr);
    assert!(
        stderr.contains("no payment nope for tenant acme"),
        "{stderr}"
    );

    assert!(run(&["connection", "disable", "acme-csv"]).status.success());
    let list = String::from_utf8_lossy(&run(&["connection", "list"]).stdout).into_owned();
    assert!(
        list.contains("disabled") && list.contains("1 bill entries"),
        "{list}"
    );
}

/// P5: `plugin check` says a 0.1 plugin was built for the older contract,
/// which still runs, one item a call.
#[test]
fn plugin_check_names_an_older_contract() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap();
    let legacy = ledgerbridge_plugin_build::build_into(
        &root.join("tests/plugins"),
        &["test-legacy"],
        &root.join("target/wasm"),
    )
    .remove(0);
    let out = ledgerbridge(&["plugin", "check", legacy.to_str().unwrap()], &cache());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("contract:         ledgerbridge:connector@0.1.0 (an older contract, still run: one item per call"),
        "{stdout}"
    );
    assert!(
        stdout.contains("items per call: 1 lookups, 1 creates, 1 updates"),
        "{stdout}"
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
        stdout.contains("contract:         ledgerbridge:connector@0.2.0\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "limits:           8 calls at once; items per call: 50 lookups, 50 creates, 50 updates"
        ),
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

/// Runs the CLI in `dir` on the store `dir/lb.db` (a relative directory in
/// a connection is resolved there): whether it succeeded, its stdout and
/// its stderr.
fn in_dir(dir: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let db = dir.join("lb.db");
    let mut all = vec!["--db", db.to_str().unwrap()];
    all.extend_from_slice(args);
    let out = Command::new(env!("CARGO_BIN_EXE_ledgerbridge"))
        .args(&all)
        .env("LEDGERBRIDGE_CACHE_DIR", cache())
        .current_dir(dir)
        .output()
        .expect("the binary runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Issue 7 items 15, 16 and 20: what an operator sees from the command line.
#[test]
fn operators_get_named_errors_exit_codes_times_and_summaries() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("erp")).unwrap();
    let run = |args: &[&str]| in_dir(dir.path(), args);
    assert!(run(&["tenant", "add", "acme"]).0);
    let (ok, _, err) = run(&["tenant", "add", ".."]);
    assert!(!ok && err.contains("tenant_id: `..` is not an id"), "{err}");
    // Item 16: stored absolute.
    let conn = serde_json::json!({"id": "c", "tenant_id": "acme", "plugin": "csv", "directory": "erp",
        "mappings": {"categories": {"office": "6100"}}});
    std::fs::write(dir.path().join("conn.json"), conn.to_string()).unwrap();
    let (ok, out, err) = run(&["connection", "add", "conn.json"]);
    assert!(ok, "{err}");
    let abs = dir.path().join("erp").canonicalize().unwrap();
    assert!(out.contains(&abs.display().to_string()), "{out}");
    // Item 15: the CSV connector without a directory.
    let bare = serde_json::json!({"id": "c2", "tenant_id": "acme", "plugin": "csv"});
    std::fs::write(dir.path().join("bare.json"), bare.to_string()).unwrap();
    let (ok, _, err) = run(&["connection", "add", "bare.json"]);
    assert!(!ok && err.contains("directory:"), "{err}");

    let doc = |id: &str, cat: &str, amount: &str| {
        serde_json::json!({"tenant_id": "acme", "id": id, "number": "N1",
        "vendor": {"id": "v", "name": "V"}, "issue_date": "2026-11-02", "due_date": "2026-12-02", "currency": "USD",
        "lines": [{"description": "x", "amount": amount, "category": cat}], "total": amount, "status": "approved"})
    };
    let write = |name: &str, v: serde_json::Value| {
        std::fs::write(dir.path().join(name), v.to_string()).unwrap();
    };
    write(
        "a.json",
        serde_json::json!({"documents": [doc("d1", "office", "5.00"), doc("bad", "travel", "5.00")]}),
    );
    write(
        "b.json",
        serde_json::json!({"documents": [doc("d1", "office", "6.00")]}),
    );
    // Item 20: import counts what it really queued.
    let (_, out, _) = run(&["import", "a.json"]);
    assert!(out.contains("2 syncs queued"), "{out}");
    let (_, out, _) = run(&["import", "b.json"]);
    assert!(out.contains("0 syncs queued (1 more merged"), "{out}");
    // The worker ends with a summary.
    let (ok, out, _) = run(&["worker", "--until-idle"]);
    assert!(ok);
    assert!(
        out.contains("worker stopped: 2 syncs run (1 created, 1 failed)"),
        "{out}"
    );
    // A failed sync exits non-zero; a good one zero.
    let (ok, _, err) = run(&["sync", "bad", "--connection", "c"]);
    assert!(!ok && err.contains("1 of 1 results failed"), "{err}");
    assert!(run(&["sync", "d1", "--connection", "c"]).0);
    // Times are RFC 3339.
    let (_, log, _) = run(&["log", "d1", "--tenant", "acme"]);
    let first = log.lines().next().unwrap_or_default();
    assert!(
        first.len() > 20
            && first.as_bytes()[4] == b'-'
            && first.as_bytes()[10] == b'T'
            && first.contains('Z'),
        "{log}"
    );
    // Unknown tenants and connections are named, never a SQL error.
    for (args, want) in [
        (
            vec!["attention", "--connection", "nope"],
            "no connection nope",
        ),
        (
            vec!["failed-exports", "--connection", "nope"],
            "no connection nope",
        ),
        (
            vec!["log", "d1", "--connection", "nope"],
            "no connection nope",
        ),
        (vec!["log", "d1", "--tenant", "ghost"], "no tenant ghost"),
        (
            vec![
                "funding-account",
                "set-next",
                "op",
                "5",
                "--tenant",
                "ghost",
            ],
            "no tenant ghost",
        ),
        (
            vec!["funding-account", "show", "..", "--tenant", "acme"],
            "funding_account:",
        ),
        (
            vec![
                "funding-account",
                "set-next",
                "op",
                "9223372036854775807",
                "--tenant",
                "acme",
            ],
            "next_check_number:",
        ),
        (
            vec!["sync", "d1", "--connection", "nope"],
            "no connection nope",
        ),
        (
            vec!["resync", "--connection", "nope", "--all"],
            "no connection nope",
        ),
        (
            vec!["unlock", "d1", "--connection", "nope"],
            "no connection nope",
        ),
    ] {
        let (ok, _, err) = run(&args);
        assert!(!ok, "{args:?} succeeded");
        assert!(
            err.contains(want) && !err.contains("FOREIGN KEY"),
            "{args:?}: {err}"
        );
    }
    // Enabling says what changed meanwhile, and how to catch up.
    assert!(run(&["connection", "disable", "c"]).0);
    write(
        "c.json",
        serde_json::json!({"documents": [doc("d9", "office", "1.00")]}),
    );
    assert!(run(&["import", "c.json"]).0);
    let (ok, out, _) = run(&["connection", "enable", "c"]);
    assert!(ok);
    assert!(
        out.contains("1 documents changed while it was disabled")
            && out.contains("resync --connection c --all"),
        "{out}"
    );
}

/// Issue 9 (R2, R5): `status` shows each connection's queue by kind and its
/// budget; limits out of range are refused naming the field; an unknown
/// tenant is named.
#[test]
fn operators_see_queues_and_budgets_and_bad_limits_are_named() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("erp")).unwrap();
    let run = |args: &[&str]| in_dir(dir.path(), args);
    assert!(run(&["tenant", "add", "acme"]).0);
    for (field, value) in [
        ("calls_at_once", 0u64),
        ("calls_at_once", 17),
        ("calls_per_day", 349),
        ("calls_per_minute", 0),
        ("calls_per_day", 2_000_000_000),
    ] {
        let conn = serde_json::json!({"id": "c", "tenant_id": "acme", "plugin": "csv", "directory": "erp",
            "limits": {field: value}});
        std::fs::write(dir.path().join("c.json"), conn.to_string()).unwrap();
        let (ok, _, err) = run(&["connection", "add", "c.json"]);
        assert!(
            !ok && err.contains(&format!("limits.{field}")),
            "{field}={value}: {err}"
        );
    }
    let conn = serde_json::json!({"id": "c", "tenant_id": "acme", "plugin": "csv", "directory": "erp",
        "mappings": {"categories": {"office": "6100"}},
        "limits": {"calls_at_once": 5, "calls_per_minute": 60, "calls_per_day": 5000}});
    std::fs::write(dir.path().join("c.json"), conn.to_string()).unwrap();
    assert!(run(&["connection", "add", "c.json"]).0);
    let docs: Vec<_> = (1..=2)
        .map(|i| {
            serde_json::json!({"tenant_id": "acme", "id": format!("d{i}"), "number": format!("INV-{i}"),
            "vendor": {"id": "v", "name": "V"}, "issue_date": "2026-11-02", "due_date": "2026-12-02",
            "currency": "USD", "lines": [{"description": "x", "amount": "1.00", "category": "office"}],
            "total": "1.00", "status": "approved"})
        })
        .collect();
    std::fs::write(
        dir.path().join("d.json"),
        serde_json::json!({"documents": docs}).to_string(),
    )
    .unwrap();
    assert!(run(&["import", "d.json"]).0);
    let (ok, out, err) = run(&["status"]);
    assert!(ok, "{err}");
    assert!(out.contains("c (tenant acme, plugin csv): active"), "{out}");
    assert!(
        out.contains("queued 2: 2 automatic bill (2 due now)"),
        "{out}"
    );
    assert!(
        out.contains("budget: 5 calls at once; 0 calls paid in the last minute (of 60); 0 in the last 24 hours (of 5000)"),
        "{out}"
    );
    let (ok, out, _) = run(&["status", "--json", "--tenant", "acme"]);
    assert!(ok);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v[0]["queued"]["automatic bill"], 2);
    let (ok, _, err) = run(&["status", "--tenant", "nope"]);
    assert!(!ok && err.contains("no tenant nope"), "{err}");
    let (ok, _, err) = run(&["status", "--tenant", "../x"]);
    assert!(!ok && err.contains("tenant_id:"), "{err}");
    // After the sync, the calls are counted and nothing is queued.
    assert!(run(&["worker", "--until-idle"]).0);
    let (_, out, _) = run(&["status"]);
    assert!(out.contains("queued 0 (0 due now); running 0"), "{out}");
}

/// Issue 12: the QuickBooks demo's story end to end: bills in batches,
/// vendors created, a check number QuickBooks already has → Failed to
/// export → edited → exported once, a closed period → booked.
#[test]
fn demo_runs_the_quickbooks_connector_against_its_simulator() {
    let out = ledgerbridge(&["demo", "--erp", "quickbooks"], &cache());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for line in [
        "doc-1001  bill     approved         created         entry",
        "doc-1005  bill     approved         failed          lines[0].category",
        "doc-1001  payment  bulk             failed          check number 1001 is already used in the ERP",
        "pay-9001 check 1001 : ",
        "suggested next free number: 1002",
        "doc-1001  payment  manual           created         entry",
        "doc-1002  bill     changed          skipped_booked  not synced: the entry is booked in the ERP (the books are closed in QuickBooks through 2026-11-30",
        "Check check 1002     480.00  ledgerbridge payment pay-9001",
        "none over its limits (0 refused for a limit)",
    ] {
        assert!(stdout.contains(line), "missing {line:?} in:\n{stdout}");
    }
    // Check 1001 is the bookkeeper's; ours is written once, as 1002.
    assert_eq!(
        stdout.matches("ledgerbridge payment pay-9001").count(),
        1,
        "{stdout}"
    );
}

/// O2 from the command line: `seal-key new` makes a key; a store sealed
/// with one key file is refused with another, naming the key it needs;
/// after a rotation (the new key first, the old after) and `seal-key
/// reseal`, the new key alone opens it; a key and a key file both given,
/// or a bad key, are refused.
#[test]
fn operators_make_and_rotate_seal_keys() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    let erp = dir.path().join("erp");
    std::fs::create_dir_all(&keys).unwrap();
    std::fs::create_dir_all(&erp).unwrap();
    let db = dir.path().join("lb.db");
    let new_key = || {
        let out = ledgerbridge(&["seal-key", "new"], &cache());
        assert!(out.status.success());
        let k = String::from_utf8(out.stdout).unwrap().trim().to_string();
        assert_eq!(k.len(), 44, "{k}");
        k
    };
    let (old, new) = (new_key(), new_key());
    assert_ne!(old, new);
    let file = |name: &str, text: &str| {
        let p = keys.join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    };
    let old_file = file("old.key", &format!("{old}\n"));
    let new_file = file("new.key", &format!("{new}\n"));
    let both_file = file("both.key", &format!("{new}\n# until resealed\n{old}\n"));
    let run = |key_file: &str, args: &[&str]| {
        let mut all = vec!["--db", db.to_str().unwrap(), "--seal-key-file", key_file];
        all.extend_from_slice(args);
        ledgerbridge(&all, &cache())
    };
    let conn = |directory: &std::path::Path| {
        serde_json::json!({"id": "c1", "tenant_id": "acme", "plugin": "csv",
            "directory": directory.display().to_string(),
            "credentials": {"api-key": "cli-secret-4471"}})
        .to_string()
    };
    assert!(run(&old_file, &["tenant", "add", "acme"]).status.success());
    // P8: the key file is the host's own, like the store.
    let near = run(
        &old_file,
        &["connection", "add", &file("near.json", &conn(&keys))],
    );
    let err = String::from_utf8_lossy(&near.stderr);
    assert!(!near.status.success() && err.contains("old.key"), "{err}");
    let conn_file = file("conn.json", &conn(&erp));
    let added = run(&old_file, &["connection", "add", &conn_file]);
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );
    assert!(
        !dir.path().join("lb.db.seal-key").exists(),
        "the given key, no other"
    );
    let refused = run(&new_file, &["connection", "list"]);
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(
        err.contains("sealed with key") && err.contains("LEDGERBRIDGE_SEAL_KEY"),
        "{err}"
    );
    let resealed = run(&both_file, &["seal-key", "reseal"]);
    let out = String::from_utf8_lossy(&resealed.stdout);
    assert!(
        resealed.status.success(),
        "{}",
        String::from_utf8_lossy(&resealed.stderr)
    );
    assert!(out.contains("may now be removed"), "{out}");
    assert!(run(&new_file, &["connection", "list"]).status.success());
    let both = Command::new(env!("CARGO_BIN_EXE_ledgerbridge"))
        .args([
            "--db",
            db.to_str().unwrap(),
            "--seal-key-file",
            &new_file,
            "connection",
            "list",
        ])
        .env("LEDGERBRIDGE_CACHE_DIR", cache())
        .env("LEDGERBRIDGE_SEAL_KEY", &new)
        .output()
        .unwrap();
    assert!(!both.status.success());
    assert!(String::from_utf8_lossy(&both.stderr).contains("both set"));
    let bad = run(&file("bad.key", "not a key\n"), &["connection", "list"]);
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        !bad.status.success() && err.contains("line 1") && err.contains("base64"),
        "{err}"
    );
}

/// Issue 13 item 7: the listing commands print JSON for scripts with
/// `--json`, in the HTTP API's item shape, and never a credential.
#[test]
fn listing_commands_print_json_for_scripts() {
    let dir = tempfile::tempdir().unwrap();
    let erp = dir.path().join("erp");
    std::fs::create_dir_all(&erp).unwrap();
    let conn = serde_json::json!({"id": "acme-csv", "tenant_id": "acme", "plugin": "csv",
        "directory": erp.display().to_string(), "credentials": {"api-key": "json-secret-9931"},
        "mappings": {"categories": {"office": "6100"}}});
    std::fs::write(dir.path().join("conn.json"), conn.to_string()).unwrap();
    let doc = |id: &str, cat: &str| {
        serde_json::json!({"tenant_id": "acme", "id": id, "number": "N1",
        "vendor": {"id": "v", "name": "V"}, "issue_date": "2026-11-02", "due_date": "2026-12-02", "currency": "USD",
        "lines": [{"description": "x", "amount": "5.00", "category": cat}], "total": "5.00", "status": "approved"})
    };
    std::fs::write(
        dir.path().join("docs.json"),
        serde_json::json!({"documents": [doc("d1", "office"), doc("d2", "travel")]}).to_string(),
    )
    .unwrap();
    for args in [
        &["tenant", "add", "acme"][..],
        &["connection", "add", "conn.json"],
        &["import", "docs.json"],
        &["worker", "--until-idle"],
    ] {
        let (ok, _, err) = in_dir(dir.path(), args);
        assert!(ok, "{args:?}: {err}");
    }
    let json = |args: &[&str]| -> serde_json::Value {
        let (ok, out, err) = in_dir(dir.path(), args);
        assert!(ok, "{args:?}: {err}");
        assert!(
            !out.contains("json-secret-9931"),
            "{args:?} shows a credential"
        );
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"))
    };
    let c = json(&["connection", "list", "--json"]);
    assert_eq!(c[0]["connection"]["id"], "acme-csv", "{c}");
    assert_eq!(c[0]["bill_entries"], 1, "{c}");
    let log = json(&["log", "d1", "--tenant", "acme", "--json"]);
    assert_eq!(log[0]["outcome"], "created", "{log}");
    assert_eq!(log[0]["connection_id"], "acme-csv", "{log}");
    let a = json(&["attention", "--json"]);
    assert_eq!(a.as_array().map(Vec::len), Some(1), "{a}");
    assert_eq!(a[0]["document_id"], "d2", "{a}");
    assert!(a[0]["hint"].as_str().is_some_and(|h| !h.is_empty()), "{a}");
    assert_eq!(json(&["failed-exports", "--json"]), serde_json::json!([]));
    let s = json(&["status", "--json"]);
    assert!(s.is_array() || s.is_object(), "{s}");
    let f = json(&[
        "funding-account",
        "show",
        "operating",
        "--tenant",
        "acme",
        "--json",
    ]);
    assert_eq!(
        (f["id"].clone(), f["next_check_number"].clone()),
        ("operating".into(), 1.into()),
        "{f}"
    );
    let t = json(&["token", "list", "--json"]);
    assert_eq!(t, serde_json::json!([]));
}

/// Issue 14: `dev` builds a plugin crate for wasm32-wasip2, runs it on
/// sample bills (created, then one updated) and a payment, and prints each
/// operation's answer and the plugin version that gave it. The build it
/// made then goes into the registry with `plugin add`, `plugin list` shows
/// it beside the built-in ones, and a connection pins it by version; a
/// file that is no plugin is refused, naming why, and nothing is installed.
#[test]
fn p3_dev_runs_a_plugin_crate_and_plugin_add_installs_its_build() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = tempfile::tempdir().unwrap();
    let erp = dir.path().join("erp");
    // The test plugins' own target directory: their release build is
    // already there when the workspace's tests were built.
    let out = Command::new(env!("CARGO_BIN_EXE_ledgerbridge"))
        .args(["dev", "--release", "--once", "--dir", erp.to_str().unwrap()])
        .arg(root.join("tests/plugins/minting"))
        .env("CARGO_TARGET_DIR", root.join("target/wasm"))
        .env("LEDGERBRIDGE_CACHE_DIR", cache())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for expected in [
        "round 1: three approved bills",
        "bill     created         entry build-AAAAAAAA-",
        "[minting 1.0.0+build-AAAAAAAA (",
        "create-bill        ok: build-AAAAAAAA-",
        "bill     updated",
        "payment  created",
    ] {
        assert!(stdout.contains(expected), "{expected}\n{stdout}");
    }

    let db = dir.path().join("lb.db");
    let run = |args: &[&str]| {
        let mut all = vec!["--db", db.to_str().unwrap()];
        all.extend_from_slice(args);
        ledgerbridge(&all, &cache())
    };
    let built = root.join("target/wasm/wasm32-wasip2/release/test_minting.wasm");
    let out = run(&["plugin", "add", built.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("installed minting 1.0.0+build-AAAAAAAA"),
        "{text}"
    );
    assert!(dir.path().join("lb.db.plugins/minting/1.0.0.wasm").exists());

    let junk = dir.path().join("junk.wasm");
    std::fs::write(&junk, "not a plugin").unwrap();
    let out = run(&["plugin", "add", junk.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("cannot be installed") && err.contains("not a WebAssembly component"),
        "{err}"
    );

    assert!(run(&["tenant", "add", "acme"]).status.success());
    let conn = dir.path().join("c.json");
    std::fs::write(
        &conn,
        serde_json::json!({"id": "m", "tenant_id": "acme", "plugin": "minting@1.0.0",
            "directory": erp.to_str().unwrap()})
        .to_string(),
    )
    .unwrap();
    let out = run(&["connection", "add", conn.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(&["plugin", "list", "--json"]);
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let listed = listed.as_array().unwrap();
    assert_eq!(
        listed.iter().filter(|p| p["source"] == "built-in").count(),
        3,
        "{listed:?}"
    );
    let minting = listed.iter().find(|p| p["name"] == "minting").unwrap();
    assert_eq!(minting["source"], "installed");
    assert_eq!(minting["contract"], "0.2.0");
    assert_eq!(minting["connections"], serde_json::json!(["m"]));
    // The whole list's text form names it and who runs it.
    let out = run(&["plugin", "list"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("used by: m"), "{text}");
    // Nothing of the junk was installed.
    assert!(!text.contains("junk"), "{text}");
}
