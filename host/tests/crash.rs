//! D1 under a crash: the host is killed with SIGKILL in the middle of a bulk
//! re-sync of 1,200 documents, restarted, and left to finish. Every document
//! ends with exactly one bill entry (and one payment entry where paid), none
//! is missing, nothing needs attention.
//!
//! The connector is the minting test connector (`tests/plugins/minting`): it
//! mints its own entry ids, as every ERP does, and records every create
//! under its reference, so a duplicate entry shows as two creates for one
//! reference (files or rows keyed by the reference alone could not show one).
//! It takes 50 items a call (contract 0.2), so the kill lands with batches
//! in flight: exactly-once holds per item (issue 10).

use ledgerbridge::model::Target;
use ledgerbridge::store::Store;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const DOCS: usize = 1200;

fn lb(db: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ledgerbridge"));
    // A short lease: the restarted worker takes the killed one's jobs back
    // two seconds after its last heartbeat.
    c.arg("--db")
        .arg(db)
        .args(["--lease-secs", "2"])
        .args(args)
        .env(
            "LEDGERBRIDGE_CACHE_DIR",
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/plugin-cache"),
        );
    c
}

/// The minting test connector, built like the tests crate builds it.
fn minting_plugin() -> std::path::PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    ledgerbridge_plugin_build::build_into(
        &root.join("tests/plugins"),
        &["test-minting"],
        &root.join("target/wasm"),
    )
    .remove(0)
}

/// Creates per (kind, reference), from the connector's record of each.
fn creates(erp: &Path) -> std::collections::HashMap<(String, String), usize> {
    let mut out = std::collections::HashMap::new();
    for f in std::fs::read_dir(erp.join("refs"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let name = f.file_name().to_string_lossy().into_owned();
        let Some((kind, reference)) = name.split_once('-') else {
            continue;
        };
        let text = std::fs::read_to_string(f.path()).unwrap_or_default();
        out.insert(
            (kind.to_string(), reference.to_string()),
            text.lines().count(),
        );
    }
    out
}

fn count(erp: &Path, kind: &str) -> usize {
    creates(erp).keys().filter(|(k, _)| k == kind).count()
}

fn ok(mut c: Command) -> String {
    let out = c.output().expect("runs");
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn d1_kill_9_during_a_bulk_resync_with_two_worker_processes_leaves_exactly_one_entry_each() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("lb.db");
    let erp = tmp.path().join("erp");
    std::fs::create_dir_all(&erp).unwrap();

    let docs: Vec<_> = (0..DOCS)
        .map(|i| {
            serde_json::json!({
                "tenant_id": "acme", "id": format!("d{i:05}"), "number": format!("INV-{i}"),
                "vendor": {"id": "v-1", "name": "Acme"}, "issue_date": "2026-11-02", "due_date": "2026-12-02",
                "currency": "USD", "lines": [{"description": "Paper", "amount": "10.00", "category": "office"}],
                "total": "10.00", "status": if i % 3 == 0 { "paid" } else { "approved" }
            })
        })
        .collect();
    let payments: Vec<_> = (0..DOCS)
        .step_by(3)
        .map(|i| serde_json::json!({"tenant_id": "acme", "id": format!("p{i:05}"), "document_id": format!("d{i:05}"),
            "amount": "10.00", "date": "2026-11-20", "method": "ach", "funding_account": "operating"}))
        .collect();
    std::fs::write(
        tmp.path().join("docs.json"),
        serde_json::json!({"documents": docs, "payments": payments}).to_string(),
    )
    .unwrap();
    let conn = serde_json::json!({
        "id": "csv", "tenant_id": "acme", "plugin": minting_plugin().display().to_string(),
        "directory": erp.display().to_string(),
        "mappings": {"categories": {"office": "6100"}, "bank_accounts": {"operating": "1010"}}
    });
    std::fs::write(tmp.path().join("conn.json"), conn.to_string()).unwrap();

    ok(lb(&db, &["tenant", "add", "acme"]));
    // Documents first, then the connection: nothing syncs until the re-sync.
    ok(lb(
        &db,
        &["import", tmp.path().join("docs.json").to_str().unwrap()],
    ));
    ok(lb(
        &db,
        &[
            "connection",
            "add",
            tmp.path().join("conn.json").to_str().unwrap(),
        ],
    ));

    let mut child = lb(&db, &["resync", "--connection", "csv", "--all"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    // A second worker process on the same store, started once the re-sync
    // has queued its jobs: the two share them (issue 9).
    while count(&erp, "bill") < DOCS / 10 {
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "the re-sync made no progress"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let second_log = tmp.path().join("second.log");
    let mut second = lb(&db, &["worker", "--until-idle"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&second_log).unwrap())
        .spawn()
        .unwrap();
    while count(&erp, "bill") < DOCS / 4 {
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "the re-sync made no progress"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the re-sync ended before it could be killed"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let at_kill = count(&erp, "bill");
    assert!(
        at_kill < DOCS,
        "killed too late to test anything ({at_kill} of {DOCS} done)"
    );

    // The second worker takes the killed one's jobs back once their
    // leases run out, and finishes the run.
    let status = second.wait().unwrap();
    assert!(
        status.success(),
        "the second worker failed: {}",
        std::fs::read_to_string(&second_log).unwrap_or_default()
    );
    let out = ok(lb(&db, &["worker", "--until-idle"]));
    let _ = out;

    // The run went out in batches: far fewer create calls than documents.
    let calls = std::fs::read_to_string(erp.join("calls")).unwrap_or_default();
    let batched: Vec<usize> = calls
        .lines()
        .filter_map(|l| l.strip_prefix("create-bills "))
        .filter_map(|n| n.parse().ok())
        .collect();
    assert!(
        batched.len() < DOCS / 5 && batched.iter().any(|n| *n > 1),
        "{} create calls for {DOCS} documents: {batched:?}",
        batched.len()
    );

    let creates = creates(&erp);
    let twice: Vec<_> = creates.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "entries created more than once: {twice:?}"
    );
    assert_eq!(count(&erp, "bill"), DOCS, "a bill entry for every document");
    assert_eq!(
        count(&erp, "payment"),
        DOCS / 3,
        "a payment entry for every paid document"
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = Store::open(&db).unwrap();
        let entries = store.entries("csv").await.unwrap();
        let bills = entries
            .iter()
            .filter(|e| e.target == "bill" && e.entry_id.is_some())
            .count();
        let pays = entries
            .iter()
            .filter(|e| e.target == "payment" && e.entry_id.is_some())
            .count();
        assert_eq!(
            (bills, pays),
            (DOCS, DOCS / 3),
            "the host records exactly one entry each"
        );
        for i in (0..DOCS).step_by(97) {
            let e = store
                .entry("csv", Target::Bill, &format!("d{i:05}"))
                .await
                .unwrap()
                .unwrap();
            let minted = std::fs::read_to_string(erp.join(format!("refs/bill-d{i:05}"))).unwrap();
            assert_eq!(
                e.entry_id.as_deref(),
                minted.split(' ').next(),
                "the host records the id the ERP minted"
            );
        }
        let attention = store.attention(Some("csv")).await.unwrap();
        assert!(attention.is_empty(), "{attention:?}");
        let (queued, running, _) = store.pending().await.unwrap();
        assert!(!queued && !running, "nothing left queued or running");
    });
}

/// The hostile test connector, built like the tests crate builds it.
fn hostile_plugin() -> std::path::PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    ledgerbridge_plugin_build::build_into(
        &root.join("tests/plugins"),
        &["test-hostile"],
        &root.join("target/wasm"),
    )
    .remove(0)
}

/// P7 (issue 8 item 1): a job that takes its worker down each time is not
/// retried into a crash loop. Here the worker dies by SIGKILL while the job
/// runs (a plugin stuck in a loop, within a long deadline); after the third
/// worker died running it, the next worker quarantines it: Requires
/// attention, "the plugin crashed the worker", and it is not run again.
#[test]
fn p7_a_job_running_when_three_workers_died_is_quarantined() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("lb.db");
    let conn = serde_json::json!({
        "id": "h", "tenant_id": "acme", "plugin": hostile_plugin().display().to_string(),
        "settings": {"mode": "loop"}, "limits": {"deadline_ms": 600000},
        "mappings": {"categories": {"office": "6100"}}
    });
    std::fs::write(tmp.path().join("conn.json"), conn.to_string()).unwrap();
    let doc = serde_json::json!({"documents": [{
        "tenant_id": "acme", "id": "d1", "number": "INV-1", "vendor": {"id": "v", "name": "V"},
        "issue_date": "2026-11-02", "due_date": "2026-12-02", "currency": "USD",
        "lines": [{"description": "x", "amount": "1.00", "category": "office"}],
        "total": "1.00", "status": "approved"}]});
    std::fs::write(tmp.path().join("docs.json"), doc.to_string()).unwrap();
    ok(lb(&db, &["tenant", "add", "acme"]));
    ok(lb(
        &db,
        &[
            "connection",
            "add",
            tmp.path().join("conn.json").to_str().unwrap(),
        ],
    ));
    ok(lb(
        &db,
        &["import", tmp.path().join("docs.json").to_str().unwrap()],
    ));

    let watch = rusqlite::Connection::open(&db).unwrap();
    let running_in = |since: i64| -> bool {
        watch
            .query_row(
                "SELECT COUNT(*) FROM jobs j JOIN workers w ON w.id = j.lease_owner
                 WHERE j.state = 'running' AND w.started_at >= ?1",
                [since],
                |r| r.get::<_, i64>(0),
            )
            .unwrap()
            > 0
    };
    for death in 1..=3 {
        let since = ledgerbridge::store::now_ms();
        let mut worker = lb(&db, &["worker"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Until the job runs in this worker (taken back from the last one
        // once its lease ran out).
        let started = Instant::now();
        while !running_in(since) {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "death {death}: never ran"
            );
            assert!(
                worker.try_wait().unwrap().is_none(),
                "the worker ended by itself"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        worker.kill().unwrap();
        worker.wait().unwrap();
    }
    // The next worker quarantines it instead of running it; bounded, so a
    // failure cannot hang the suite on the looping plugin.
    let mut last = lb(&db, &["worker", "--until-idle"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while last.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(60) {
            last.kill().unwrap();
            panic!("the job ran again instead of being quarantined");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = last.wait_with_output().unwrap();
    let out = String::from_utf8_lossy(&out.stdout);
    assert!(out.contains("1 syncs quarantined"), "{out}");
    let attention = ok(lb(&db, &["attention"]));
    assert!(
        attention.contains("crashed the worker") && attention.contains("h d1 bill"),
        "{attention}"
    );
    let log = ok(lb(&db, &["log", "d1", "--tenant", "acme"]));
    assert!(log.contains("quarantined"), "{log}");
}
