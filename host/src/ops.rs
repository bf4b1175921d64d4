//! The operator commands: tenants, connections, import, sync, bulk re-sync,
//! the integration log, Requires attention, locks and the worker.

use anyhow::{Context as _, bail};
use ledgerbridge::intake;
use ledgerbridge::model::{Connection, Target};
use ledgerbridge::store::{LogRow, RunSummary};
use ledgerbridge::sync::{Engine, Selection};
use std::io::IsTerminal;
use std::path::Path;
use std::sync::Arc;

fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

pub async fn add_tenant(engine: &Engine, id: &str) -> anyhow::Result<()> {
    if id.is_empty()
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b))
    {
        bail!("tenant id `{id}` may hold only letters, digits, `.`, `_`, `:` and `-`");
    }
    engine.store.add_tenant(id).await?;
    println!("tenant {id}");
    Ok(())
}

pub async fn add_connection(engine: &Engine, file: &Path) -> anyhow::Result<()> {
    let c: Connection = serde_json::from_str(&read(file)?).with_context(|| {
        format!(
            "{} is not a connection (see README.md, Running it for tenants)",
            file.display()
        )
    })?;
    let id = c.id.clone();
    engine.put_connection(c).await?;
    println!("connection {id} saved");
    Ok(())
}

pub async fn list_connections(engine: &Engine) -> anyhow::Result<()> {
    for c in engine.store.connections().await? {
        let (bills, payments) = engine.store.entry_counts(&c.id).await?;
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
    if !engine.store.set_connection_enabled(id, enabled).await? {
        bail!("no connection {id}");
    }
    println!(
        "connection {id} {}",
        if enabled {
            "enabled"
        } else {
            "disabled (its history is kept)"
        }
    );
    Ok(())
}

pub async fn import(engine: &Engine, file: &Path) -> anyhow::Result<()> {
    let batch = intake::parse_batch(&read(file)?)?;
    let (d, p) = (batch.documents.len(), batch.payments.len());
    let jobs = engine.import(batch).await?;
    println!(
        "imported {d} documents and {p} payments; {} syncs queued",
        jobs.len()
    );
    Ok(())
}

fn print_summary(s: &RunSummary) {
    println!(
        "{} entries: {} created, {} updated, {} unchanged, {} skipped (booked), {} failed",
        s.total, s.created, s.updated, s.unchanged, s.skipped_booked, s.failed
    );
}

async fn print_results(engine: &Engine, run: &str) -> anyhow::Result<()> {
    for (doc, target, state, outcome, error) in engine.store.run_results(run).await? {
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
    connection: &str,
    target: Target,
    force: bool,
) -> anyhow::Result<()> {
    let tenant = engine
        .store
        .connection(connection)
        .await?
        .map(|c| c.tenant_id)
        .with_context(|| format!("no connection {connection}"))?;
    let run = engine
        .request_sync(&tenant, document, connection, target, force)
        .await?;
    let summary = engine.finish_run(&run, |_| {}).await?;
    print_results(engine, &run).await?;
    print_summary(&summary);
    Ok(())
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
                    "\r[{}{}] {done}/{} entries  created {}  updated {}  unchanged {}  booked {}  failed {}   ",
                    "#".repeat(filled),
                    "-".repeat(width - filled),
                    s.total,
                    s.created,
                    s.updated,
                    s.unchanged,
                    s.skipped_booked,
                    s.failed
                );
            } else if last.elapsed() >= std::time::Duration::from_secs(2) {
                last = std::time::Instant::now();
                eprintln!("{done}/{} entries done", s.total);
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
    Ok(())
}

fn print_log(rows: &[LogRow]) {
    if rows.is_empty() {
        println!("no sync attempts recorded");
    }
    for r in rows {
        let when = r.at / 1000;
        println!(
            "{when} {:<14} {:<8} {:<16} {:<15} {}",
            r.connection_id,
            r.target,
            r.trigger,
            r.outcome,
            r.erp_id
                .as_deref()
                .map(|e| format!("entry {e}"))
                .unwrap_or_default()
        );
        for op in &r.operations {
            println!("    {:<20} {}", op.operation, op.result);
        }
        if let Some(e) = &r.error {
            println!("    error: {e}");
        }
        if let Some(lines) = r.plugin_log.as_array() {
            for l in lines {
                println!(
                    "    plugin {}: {}",
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
    tenant: Option<&str>,
    connection: Option<&str>,
) -> anyhow::Result<()> {
    let tenant = match (tenant, connection) {
        (Some(t), _) => t.to_string(),
        (None, Some(c)) => engine
            .store
            .connection(c)
            .await?
            .map(|c| c.tenant_id)
            .with_context(|| format!("no connection {c}"))?,
        (None, None) => {
            bail!("name the document's tenant with --tenant (or a connection with --connection)")
        }
    };
    print_log(&engine.store.log_of(&tenant, document, connection).await?);
    Ok(())
}

pub async fn attention(engine: &Engine, connection: Option<&str>) -> anyhow::Result<()> {
    let items = engine.store.attention(connection).await?;
    if items.is_empty() {
        println!("nothing requires attention");
    }
    for a in items {
        println!(
            "{} {} {} ({})",
            a.connection_id, a.document_id, a.target, a.tenant_id
        );
        println!("    {}", a.message);
        println!("    how to fix: {}", a.hint);
    }
    Ok(())
}

pub async fn dismiss(
    engine: &Engine,
    document: &str,
    connection: &str,
    target: Target,
) -> anyhow::Result<()> {
    if !engine.store.dismiss(connection, document, target).await? {
        bail!(
            "no attention item for document {document}, target {}, in connection {connection}",
            target.as_str()
        );
    }
    println!("dismissed");
    Ok(())
}

pub async fn unlock(
    engine: &Engine,
    subject: &str,
    connection: &str,
    target: Target,
) -> anyhow::Result<()> {
    if !engine.store.clear_lock(connection, target, subject).await? {
        bail!(
            "the {} entry of {subject} in connection {connection} has no booked lock",
            target.as_str()
        );
    }
    println!(
        "lock cleared: the next sync of {subject} updates its {} entry",
        target.as_str()
    );
    Ok(())
}

pub async fn worker(engine: &Arc<Engine>, until_idle: bool) -> anyhow::Result<()> {
    let (tx, rx) = tokio::sync::watch::channel(false);
    let stopper = tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        let _ = tx.send(true);
    });
    eprintln!(
        "worker running{}",
        if until_idle {
            " until no sync is left"
        } else {
            "; Ctrl-C stops it"
        }
    );
    engine.run_worker(until_idle, rx).await?;
    stopper.abort();
    Ok(())
}

pub async fn show_funding_account(engine: &Engine, tenant: &str, id: &str) -> anyhow::Result<()> {
    let fa = engine.store.funding_account(tenant, id).await?;
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
    tenant: &str,
    id: &str,
    next: u64,
) -> anyhow::Result<()> {
    engine.store.set_next_check_number(tenant, id, next).await?;
    println!("funding account {id}: the next check gets number {next}");
    Ok(())
}

pub async fn failed_exports(engine: &Engine, connection: Option<&str>) -> anyhow::Result<()> {
    let items = engine.store.failed_exports(connection).await?;
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
    tenant: &str,
    payment: &str,
    check_number: Option<u64>,
    bank_id: Option<String>,
) -> anyhow::Result<()> {
    if check_number.is_none() && bank_id.is_none() {
        bail!("say what to change: --check-number N and/or --bank-id ID");
    }
    let p = engine
        .store
        .edit_payment(tenant, payment, check_number, bank_id)
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

pub async fn export(engine: &Arc<Engine>, payment: &str, connection: &str) -> anyhow::Result<()> {
    let run = engine.request_export(payment, connection).await?;
    let summary = engine.finish_run(&run, |_| {}).await?;
    print_results(engine, &run).await?;
    print_summary(&summary);
    Ok(())
}
