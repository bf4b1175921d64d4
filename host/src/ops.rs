//! The operator commands: tenants, connections, import, sync, bulk re-sync,
//! the integration log, Requires attention, locks and the worker.

use anyhow::{Context as _, bail};
use ledgerbridge::intake;
use ledgerbridge::model::{Connection, Target};
use ledgerbridge::store::{LogRow, RunSummary};
use ledgerbridge::sync::{Engine, Selection, WorkerReport};
use std::io::IsTerminal;
use std::path::Path;
use std::sync::Arc;

fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

/// An epoch-milliseconds time as RFC 3339 (UTC).
fn rfc3339(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(t).to_string()
}

pub async fn add_tenant(engine: &Engine, id: &str) -> anyhow::Result<()> {
    engine.add_tenant(id).await?;
    println!("tenant {id}");
    Ok(())
}

pub async fn add_connection(engine: &Engine, file: &Path) -> anyhow::Result<()> {
    let c: Connection = intake::parse_connection(&read(file)?).with_context(|| {
        format!(
            "{} is not a connection (see README.md, Running it for tenants)",
            file.display()
        )
    })?;
    let id = c.id.clone();
    engine.put_connection(c).await?;
    let saved = engine.connection(&id).await?;
    match saved.directory {
        Some(d) => println!("connection {id} saved; it is granted {d}"),
        None => println!("connection {id} saved"),
    }
    Ok(())
}

/// Prints `items` as one pretty JSON array (`--json`): the HTTP API's
/// item shape, so a script reads the same fields either way.
fn print_json<T: serde::Serialize>(items: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(items)?);
    Ok(())
}

pub async fn list_connections(engine: &Engine, json: bool) -> anyhow::Result<()> {
    let all = engine.connections(None).await?;
    if json {
        return print_json(&all);
    }
    if all.is_empty() {
        println!("no connections; add one with `ledgerbridge connection add FILE.json`");
    }
    for s in all {
        let (c, bills, payments) = (s.connection, s.bill_entries, s.payment_entries);
        println!(
            "{:<20} tenant {:<12} plugin {:<10} {:<8} {bills} bill entries, {payments} payment entries",
            c.id,
            c.tenant_id,
            c.plugin,
            if c.enabled { "enabled" } else { "disabled" }
        );
    }
    Ok(())
}

pub async fn set_enabled(engine: &Engine, id: &str, enabled: bool) -> anyhow::Result<()> {
    let changed = engine.set_enabled(id, enabled).await?;
    if !enabled {
        println!(
            "connection {id} disabled (its history is kept; nothing syncs until it is enabled)"
        );
    } else if changed > 0 {
        println!(
            "connection {id} enabled; {changed} documents changed while it was disabled and were not synced: run `ledgerbridge resync --connection {id} --all` to bring them in"
        );
    } else {
        println!("connection {id} enabled");
    }
    Ok(())
}

pub async fn resume(engine: &Engine, id: &str) -> anyhow::Result<()> {
    if engine.resume(id).await? {
        println!("connection {id} resumed: its syncs run again now");
    } else {
        println!("connection {id} was not paused");
    }
    Ok(())
}

pub async fn import(engine: &Engine, file: &Path) -> anyhow::Result<()> {
    let batch = intake::parse_batch(&read(file)?)?;
    let i = engine.import(batch).await?;
    print!(
        "imported {} documents and {} payments; {} syncs queued",
        i.documents, i.payments, i.queued
    );
    if i.merged > 0 {
        print!(" ({} more merged into syncs already queued)", i.merged);
    }
    println!();
    Ok(())
}

fn print_summary(s: &RunSummary) {
    print!(
        "{} results: {} created, {} updated, {} unchanged, {} skipped (booked), {} skipped (not due), {} failed",
        s.total, s.created, s.updated, s.unchanged, s.skipped_booked, s.skipped, s.failed
    );
    if s.blocked > 0 {
        print!(", {} payments blocked by their bill", s.blocked);
    }
    if s.cancelled > 0 {
        print!(", {} cancelled", s.cancelled);
    }
    if s.pending > 0 {
        print!(", {} not in yet", s.pending);
    }
    println!();
}

/// Scripts notice a failure: a run with a failed or blocked result exits
/// non-zero (issue 7 item 20), and so does one left deferred (its syncs
/// wait for a retry time or a paused connection), saying until when.
async fn fail_if_failed(engine: &Engine, run: &str, s: &RunSummary) -> anyhow::Result<()> {
    if s.pending > 0 {
        let when = engine
            .run_deferred_until(run)
            .await?
            .map_or_else(|| "later".to_string(), |t| format!("at {}", rfc3339(t)));
        bail!(
            "{} of {} results are not in yet: they run again {when} (a retry, or the connection is paused: see `ledgerbridge status`), in a running `ledgerbridge worker`",
            s.pending,
            s.total
        );
    }
    if s.failed + s.blocked > 0 {
        bail!(
            "{} of {} results failed; `ledgerbridge attention` says how to fix each",
            s.failed + s.blocked,
            s.total
        );
    }
    Ok(())
}

async fn print_results(engine: &Engine, run: &str) -> anyhow::Result<()> {
    for (doc, target, state, outcome, error) in engine.run_results(run).await? {
        let outcome = outcome.unwrap_or(state);
        match error {
            Some(e) if outcome != "created" && outcome != "updated" && outcome != "unchanged" => {
                println!("  {doc:<16} {target:<8} {outcome:<15} {e}")
            }
            _ => println!("  {doc:<16} {target:<8} {outcome}"),
        }
    }
    Ok(())
}

pub async fn sync_one(
    engine: &Arc<Engine>,
    document: &str,
    connection_id: &str,
    target: Target,
    force: bool,
) -> anyhow::Result<()> {
    let tenant = engine.connection(connection_id).await?.tenant_id;
    let run = engine
        .request_sync(&tenant, document, connection_id, target, force)
        .await?;
    let summary = engine.finish_run(&run, |_| {}).await?;
    print_results(engine, &run).await?;
    print_summary(&summary);
    fail_if_failed(engine, &run, &summary).await
}

pub async fn resync(
    engine: &Arc<Engine>,
    connection: &str,
    selection: Selection,
    force: bool,
    show_each: bool,
) -> anyhow::Result<()> {
    let (run, docs) = engine.request_resync(connection, selection, force).await?;
    eprintln!("re-syncing {docs} documents in {connection}");
    let tty = std::io::stderr().is_terminal();
    let mut last = std::time::Instant::now();
    let summary = engine
        .finish_run(&run, |s| {
            let done = s.total - s.pending - s.waiting;
            if tty {
                let width = 30;
                let filled = (done * width).checked_div(s.total).unwrap_or(width);
                eprint!(
                    "\r[{}{}] {done}/{} results  created {}  updated {}  unchanged {}  booked {}  skipped {}  failed {}   ",
                    "#".repeat(filled),
                    "-".repeat(width - filled),
                    s.total,
                    s.created,
                    s.updated,
                    s.unchanged,
                    s.skipped_booked,
                    s.skipped,
                    s.failed + s.blocked
                );
            } else if last.elapsed() >= std::time::Duration::from_secs(2) {
                last = std::time::Instant::now();
                eprintln!("{done}/{} results done", s.total);
            }
        })
        .await?;
    if tty {
        eprintln!();
    }
    if show_each {
        print_results(engine, &run).await?;
    }
    print_summary(&summary);
    fail_if_failed(engine, &run, &summary).await
}

fn print_log(rows: &[LogRow]) {
    if rows.is_empty() {
        println!("no sync attempts recorded");
    }
    for r in rows {
        println!(
            "{} {:<14} {:<8} {:<16} {:<15} {}",
            rfc3339(r.at),
            r.connection_id,
            r.target,
            r.trigger,
            r.outcome,
            r.entry_id
                .as_deref()
                .map(|e| format!("entry {e}"))
                .unwrap_or_default()
        );
        if let Some(p) = &r.plugin {
            println!("    plugin {p}");
        }
        for op in &r.operations {
            println!("    {:<20} {}", op.operation, op.result);
        }
        if let Some(e) = &r.error {
            println!("    error: {e}");
        }
        if let Some(lines) = r.plugin_log.as_array() {
            for l in lines {
                println!(
                    "    {} {}: {}",
                    l["source"].as_str().unwrap_or("plugin"),
                    l["level"].as_str().unwrap_or(""),
                    l["message"].as_str().unwrap_or("")
                );
            }
        }
    }
}

pub async fn log(
    engine: &Engine,
    document: &str,
    tenant_id: Option<&str>,
    connection_id: Option<&str>,
    json: bool,
) -> anyhow::Result<()> {
    let tenant_id = match (tenant_id, connection_id) {
        (Some(t), _) => t.to_string(),
        (None, Some(c)) => engine.connection(c).await?.tenant_id,
        (None, None) => {
            bail!("name the document's tenant with --tenant (or a connection with --connection)")
        }
    };
    engine.document(&tenant_id, document).await?;
    let rows = engine.log_of(&tenant_id, document, connection_id).await?;
    if json {
        return print_json(&rows);
    }
    print_log(&rows);
    Ok(())
}

/// `status`: each connection's queue, budget and pause.
pub async fn status(engine: &Engine, tenant: Option<&str>, json: bool) -> anyhow::Result<()> {
    let all = engine.status(tenant).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&all)?);
        return Ok(());
    }
    if all.is_empty() {
        println!("no connections");
    }
    for c in all {
        let state = match (&c.paused_until, c.enabled) {
            (_, false) => "disabled".to_string(),
            _ if c.needs_reauthorisation.is_some() => format!(
                "needs re-authorisation: {} (store a new oauth2.refresh_token with `connection add`, then re-sync Requires attention)",
                c.needs_reauthorisation.as_deref().unwrap_or_default()
            ),
            (Some(until), true) => format!(
                "paused until {} ({})",
                rfc3339(*until),
                c.paused_reason.as_deref().unwrap_or("no reason recorded")
            ),
            (None, true) => "active".to_string(),
        };
        println!(
            "{} (tenant {}, plugin {}): {state}",
            c.id, c.tenant_id, c.plugin
        );
        if let Some(v) = &c.plugin_version {
            println!("    runs {v}");
        }
        if let Some(why) = &c.plugin_refused {
            println!("    plugin: {why}");
        }
        let queued: usize = c.queued.values().sum();
        let kinds: Vec<String> = c.queued.iter().map(|(k, n)| format!("{n} {k}")).collect();
        println!(
            "    queued {queued}{} ({} due now); running {}; waiting for their bill {}; blocked {}",
            if kinds.is_empty() {
                String::new()
            } else {
                format!(": {}", kinds.join(", "))
            },
            c.due,
            c.running,
            c.waiting,
            c.blocked
        );
        let of = |n: Option<u32>| n.map_or("no limit".to_string(), |n| format!("of {n}"));
        println!(
            "    budget: {} calls at once; {} calls paid in the last minute ({}); {} in the last 24 hours ({})",
            c.limits.calls_at_once(),
            c.calls_last_minute,
            of(c.limits.calls_per_minute),
            c.calls_last_day,
            of(c.limits.calls_per_day),
        );
    }
    Ok(())
}

pub async fn attention(
    engine: &Engine,
    connection_id: Option<&str>,
    json: bool,
) -> anyhow::Result<()> {
    let items = engine.attention(connection_id).await?;
    if json {
        return print_json(&items);
    }
    if items.is_empty() {
        println!("nothing requires attention");
    }
    for a in items {
        println!(
            "{} {} {} ({}, since {})",
            a.connection_id,
            a.document_id,
            a.target,
            a.tenant_id,
            rfc3339(a.created_at)
        );
        println!("    {}", a.message);
        println!("    how to fix: {}", a.hint);
    }
    Ok(())
}

pub async fn dismiss(
    engine: &Engine,
    document: &str,
    connection_id: &str,
    target: Target,
) -> anyhow::Result<()> {
    engine.dismiss(connection_id, document, target).await?;
    println!("dismissed");
    Ok(())
}

pub async fn unlock(
    engine: &Engine,
    subject: &str,
    connection_id: &str,
    target: Target,
) -> anyhow::Result<()> {
    engine.unlock(connection_id, subject, target).await?;
    println!(
        "lock cleared: the next sync of {subject} updates its {} entry",
        target.as_str()
    );
    Ok(())
}

pub async fn worker(engine: &Arc<Engine>, until_idle: bool) -> anyhow::Result<()> {
    let (tx, rx) = tokio::sync::watch::channel(false);
    // Ctrl-C or SIGTERM (a container stopping) stop it cleanly: running
    // syncs finish, nothing is left for lease recovery, and no stop of an
    // operator's counts as a crash toward quarantine.
    let stopper = tokio::spawn(async move {
        #[cfg(unix)]
        {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = async {
                    match term.as_mut() {
                        Some(t) => { t.recv().await; }
                        None => std::future::pending::<()>().await,
                    }
                } => {}
            }
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
        let _ = tx.send(true);
    });
    eprintln!(
        "worker running{}",
        if until_idle {
            " until no sync is left"
        } else {
            "; Ctrl-C or SIGTERM stops it once its running syncs finish"
        }
    );
    let report = engine.run_worker(until_idle, rx).await?;
    stopper.abort();
    print_report(&report);
    Ok(())
}

fn print_report(r: &WorkerReport) {
    let outcomes: Vec<String> = r.outcomes.iter().map(|(k, v)| format!("{v} {k}")).collect();
    println!(
        "worker stopped: {} syncs run ({})",
        r.jobs(),
        if outcomes.is_empty() {
            "none".into()
        } else {
            outcomes.join(", ")
        }
    );
    if r.recovered > 0 {
        println!(
            "  {} syncs taken back from workers that had stopped",
            r.recovered
        );
    }
    if r.quarantined > 0 {
        println!(
            "  {} syncs quarantined after crashing their workers: see `ledgerbridge attention`",
            r.quarantined
        );
    }
    if r.host_errors > 0 {
        println!(
            "  {} syncs hit a failure of the host (its store) and will run again: see the log above",
            r.host_errors
        );
    }
}

pub async fn show_funding_account(
    engine: &Engine,
    tenant_id: &str,
    id: &str,
    json: bool,
) -> anyhow::Result<()> {
    let fa = engine.funding_account(tenant_id, id).await?;
    if json {
        return print_json(&fa);
    }
    println!("funding account {} (tenant {})", fa.id, fa.tenant_id);
    println!("  next check number  {}", fa.next_check_number);
    match fa.last_issued {
        Some(n) => println!(
            "  last issued        {n} ({} numbers issued or found used in the ERP)",
            fa.issued
        ),
        None => println!("  last issued        none yet"),
    }
    Ok(())
}

pub async fn set_next_check_number(
    engine: &Engine,
    tenant_id: &str,
    id: &str,
    next: u64,
) -> anyhow::Result<()> {
    engine.set_next_check_number(tenant_id, id, next).await?;
    println!("funding account {id}: the next check gets number {next}");
    Ok(())
}

pub async fn clear_checks_marked_used(
    engine: &Engine,
    tenant_id: &str,
    id: &str,
    first: u64,
    last: u64,
) -> anyhow::Result<()> {
    let n = engine
        .clear_checks_marked_used(tenant_id, id, first, last)
        .await?;
    println!(
        "funding account {id}: {n} numbers from {first} to {last} are no longer marked used in the ERP (numbers issued to payments are kept)"
    );
    Ok(())
}

pub async fn failed_exports(
    engine: &Engine,
    connection_id: Option<&str>,
    json: bool,
) -> anyhow::Result<()> {
    let items = engine.failed_exports(connection_id).await?;
    if json {
        return print_json(&items);
    }
    if items.is_empty() {
        println!("no payment failed to export");
    }
    for f in items {
        println!(
            "{} payment {} (document {}, tenant {})",
            f.connection_id, f.payment_id, f.document_id, f.tenant_id
        );
        println!("    {}", f.error);
        let check = f
            .check_number
            .map(|n| n.to_string())
            .unwrap_or_else(|| "-".into());
        let bank = f.bank_id.as_deref().unwrap_or("(the connection's mapping)");
        println!("    check number {check}, bank id {bank}");
        if let Some(s) = f.suggested_check_number {
            println!(
                "    suggested: ledgerbridge edit-export {} --tenant {} --check-number {s}, then ledgerbridge export {} --connection {}",
                f.payment_id, f.tenant_id, f.payment_id, f.connection_id
            );
        }
    }
    Ok(())
}

pub async fn edit_export(
    engine: &Engine,
    tenant_id: &str,
    payment: &str,
    check_number: Option<u64>,
    bank_id: Option<String>,
) -> anyhow::Result<()> {
    if check_number.is_none() && bank_id.is_none() {
        bail!("say what to change: --check-number N and/or --bank-id ID");
    }
    let p = engine
        .edit_export(tenant_id, payment, check_number, bank_id)
        .await?;
    println!(
        "payment {}: check number {}, bank id {}; `export` sends it again",
        p.id,
        p.check_number
            .map(|n| n.to_string())
            .unwrap_or_else(|| "-".into()),
        p.bank_id.as_deref().unwrap_or("(the connection's mapping)")
    );
    Ok(())
}

pub async fn export(
    engine: &Arc<Engine>,
    payment: &str,
    connection_id: &str,
) -> anyhow::Result<()> {
    let run = engine.request_export(payment, connection_id).await?;
    let summary = engine.finish_run(&run, |_| {}).await?;
    print_results(engine, &run).await?;
    print_summary(&summary);
    fail_if_failed(engine, &run, &summary).await
}

/// `serve`: the HTTP API until Ctrl-C or SIGTERM.
pub async fn serve(
    engine: Arc<Engine>,
    listen: std::net::SocketAddr,
    options: ledgerbridge::api::ServeOptions,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    let addr = listener.local_addr()?;
    eprintln!(
        "serving the API on http://{addr}{}; Ctrl-C or SIGTERM stops it once requests and running syncs finish",
        if options.worker {
            " with a worker"
        } else {
            " (no worker)"
        }
    );
    ledgerbridge::api::serve(engine, listener, options, stop_signal()).await?;
    eprintln!("stopped");
    Ok(())
}

/// Ctrl-C or SIGTERM (a container stopping).
async fn stop_signal() {
    #[cfg(unix)]
    {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = async {
                match term.as_mut() {
                    Some(t) => { t.recv().await; }
                    None => std::future::pending::<()>().await,
                }
            } => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

pub async fn create_token(
    engine: &Engine,
    tenant: Option<&str>,
    label: &str,
) -> anyhow::Result<()> {
    let (t, token) = engine.create_token(tenant, label).await?;
    eprintln!(
        "{} token {} made; it is shown this once:",
        match &t.tenant_id {
            Some(tenant) => format!("tenant {tenant}'s"),
            None => "an admin".into(),
        },
        t.id
    );
    println!("{token}");
    Ok(())
}

pub async fn list_tokens(engine: &Engine, tenant: Option<&str>, json: bool) -> anyhow::Result<()> {
    let tokens = engine.tokens(tenant).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&tokens)?);
        return Ok(());
    }
    if tokens.is_empty() {
        println!("no tokens");
    }
    for t in tokens {
        println!(
            "{}  {:<12} {:<8} {}",
            t.id,
            t.tenant_id.as_deref().unwrap_or("(admin)"),
            if t.revoked_at.is_some() {
                "revoked"
            } else {
                "live"
            },
            t.label
        );
    }
    Ok(())
}

pub async fn rotate_token(engine: &Engine, id: &str) -> anyhow::Result<()> {
    let token = engine.rotate_token(id).await?;
    eprintln!(
        "token {id} rotated; the old secret no longer works. The new token, shown this once:"
    );
    println!("{token}");
    Ok(())
}

pub async fn revoke_token(engine: &Engine, id: &str) -> anyhow::Result<()> {
    engine.revoke_token(id).await?;
    println!("token {id} revoked");
    Ok(())
}

/// `plugin list`: every version, where it came from, who runs it.
pub async fn list_plugins(engine: &Engine, json: bool) -> anyhow::Result<()> {
    let all = engine.plugins().await?;
    if json {
        return print_json(&all);
    }
    if let Some(dir) = engine.registry().dir() {
        println!("plugins directory: {}", dir.display());
    }
    for p in &all {
        let v = &p.version;
        if let Some(r) = &v.refused
            && v.name.is_empty()
        {
            println!("(refused) {}", r.message);
            if !p.connections.is_empty() {
                println!(
                    "    named by: {} (they cannot run)",
                    p.connections.join(", ")
                );
            }
            continue;
        }
        println!(
            "{:<12} {:<16} contract {:<6} {} {}{}",
            v.name,
            v.version,
            v.contract,
            v.digest,
            v.source,
            v.path
                .as_deref()
                .map(|p| format!(" {p}"))
                .unwrap_or_default()
        );
        if !p.connections.is_empty() {
            println!("    used by: {}", p.connections.join(", "));
        }
        if let Some(r) = &v.refused {
            println!(
                "    its newest build was refused at {} (this version serves on): {}",
                rfc3339(r.at),
                r.message
            );
        }
    }
    Ok(())
}

/// `plugin add`: check and install.
pub async fn add_plugin(
    registry: &ledgerbridge::runtime::Registry,
    file: &Path,
    replace: bool,
) -> anyhow::Result<()> {
    let (p, already) = registry.add(file, replace).await?;
    let pruned = registry.prune_cache();
    println!(
        "{} {} {} (contract {}, {}) {}",
        if already {
            "already installed:"
        } else {
            "installed"
        },
        p.name,
        p.version,
        p.contract,
        p.digest,
        p.path.as_deref().unwrap_or_default()
    );
    if let Some(b) = ledgerbridge::builtin::find(&p.name) {
        println!(
            "note: a version of the built-in `{}` connector: every connection that names `{}` runs the newest version there is (pin one, `{}@<version>`, to keep another)",
            b.name, b.name, b.name
        );
    }
    if pruned > 0 {
        println!("pruned {pruned} compiled plugin(s) no version uses from the cache");
    }
    Ok(())
}
