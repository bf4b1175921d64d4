//! `ledgerbridge demo`: the sync engine and a built-in connector on sample
//! bills and payments, with every step printed: the CSV connector writing
//! files, or (`--erp xero`, `--erp quickbooks`) the Xero or QuickBooks
//! Online connector against a simulator the demo starts on loopback.

use anyhow::Context as _;
use ledgerbridge::intake;
use ledgerbridge::model::{Connection, LimitOverrides, Mappings, TrackingMapping};
use ledgerbridge::runtime::Runtime;
use ledgerbridge::store::{Store, now_ms};
use ledgerbridge::sync::{Engine, RetryPolicy, WorkerConfig};
use serde_json::json;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

const TENANT: &str = "demo";
const CONNECTION: &str = "demo-csv";
const XERO_CONNECTION: &str = "demo-xero";
const QUICKBOOKS_CONNECTION: &str = "demo-quickbooks";
const CLIENT: (&str, &str) = ("ledgerbridge-demo", "demo-client-secret");

fn document(
    id: &str,
    number: &str,
    vendor: &str,
    lines: &[(&str, &str, &str)],
    status: &str,
) -> serde_json::Value {
    let total: i64 = lines
        .iter()
        .map(|l| ledgerbridge_sdk::money::from_decimal(l.1, "USD").unwrap())
        .sum();
    json!({
        "tenant_id": TENANT, "id": id, "number": number,
        "vendor": {"id": format!("v-{}", vendor.to_lowercase().replace(' ', "-")), "name": vendor},
        "issue_date": "2026-11-02", "due_date": "2026-12-02", "currency": "USD",
        "lines": lines.iter().map(|(d, a, c)| json!({"description": d, "amount": a, "category": c, "department": "ops"})).collect::<Vec<_>>(),
        "total": ledgerbridge_sdk::money::to_decimal(total, "USD"),
        "status": status,
    })
}

fn documents() -> Vec<serde_json::Value> {
    vec![
        document(
            "doc-1001",
            "INV-7731",
            "Acme Paper",
            &[("Copier paper, 40 boxes", "480.00", "office")],
            "approved",
        ),
        document(
            "doc-1002",
            "A-2209",
            "Northwind Freight",
            &[
                ("Freight October", "1250.50", "freight"),
                ("Fuel surcharge", "99.00", "freight"),
            ],
            "approved",
        ),
        document(
            "doc-1003",
            "55120",
            "Contoso Cleaning",
            &[("Office cleaning, November", "385.00", "cleaning")],
            "approved",
        ),
        document(
            "doc-1004",
            "Q4-118",
            "Fabrikam Software",
            &[("Licences, Q4", "2400.00", "software")],
            "approved",
        ),
        document(
            "doc-1005",
            "T-77",
            "Blue Yonder Airways",
            &[("Flights, sales offsite", "912.40", "travel")],
            "approved",
        ),
    ]
}

/// The demo's engine: an in-memory store, quick retries, tenant `demo`.
async fn demo_engine(runtime: Arc<Runtime>) -> anyhow::Result<Arc<Engine>> {
    let retry = RetryPolicy {
        base: Duration::from_millis(200),
        ..RetryPolicy::default()
    };
    let engine = Arc::new(Engine::new(
        Store::open_in_memory()?,
        runtime,
        retry,
        WorkerConfig::default(),
    ));
    engine.add_tenant(TENANT).await?;
    Ok(engine)
}

/// The demo's mappings: categories office, freight, cleaning and software
/// to `accounts`, department ops to `tracking`, funding account operating
/// to `bank`.
pub(crate) fn demo_mappings(accounts: [&str; 4], tracking: (&str, &str), bank: &str) -> Mappings {
    Mappings {
        categories: ["office", "freight", "cleaning", "software"]
            .into_iter()
            .zip(accounts)
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect(),
        departments: [(
            "ops".to_string(),
            TrackingMapping {
                category: tracking.0.into(),
                option: tracking.1.into(),
            },
        )]
        .into(),
        bank_accounts: [("operating".to_string(), bank.to_string())].into(),
        vendors: Default::default(),
    }
}

async fn import(engine: &Engine, batch: serde_json::Value) -> anyhow::Result<()> {
    let batch = intake::parse_batch(&batch.to_string())?;
    engine.import(batch).await?;
    Ok(())
}

async fn settle(engine: &Arc<Engine>) -> anyhow::Result<()> {
    let (_tx, rx) = tokio::sync::watch::channel(false);
    engine.run_worker(true, rx).await.map(|_| ())
}

/// Prints what happened to each document since `since`.
async fn report(engine: &Engine, since: i64) -> anyhow::Result<()> {
    report_of(engine, CONNECTION, since).await
}

/// Prints what happened to each document in `connection` since `since`.
async fn report_of(engine: &Engine, connection: &str, since: i64) -> anyhow::Result<()> {
    for id in engine.document_ids(TENANT).await? {
        for row in engine.log_of(TENANT, &id, Some(connection)).await? {
            if row.at < since {
                continue;
            }
            let detail = match (&row.entry_id, &row.error) {
                (_, Some(e)) => e.clone(),
                (Some(e), None) => format!("entry {e}"),
                _ => String::new(),
            };
            println!(
                "  {id:<9} {:<8} {:<16} {:<15} {detail}",
                row.target, row.trigger, row.outcome
            );
        }
    }
    Ok(())
}

/// Marks every row of a bill file booked, as an accountant closing the
/// period would (the `Booked` column is the last one).
fn mark_booked(path: &Path) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut out = String::new();
    for (i, line) in text.split_inclusive("\r\n").enumerate() {
        let body = line.trim_end_matches("\r\n");
        if i > 0 && body.ends_with(',') {
            out.push_str(body);
            out.push_str("yes\r\n");
        } else {
            out.push_str(line);
        }
    }
    std::fs::write(path, out).with_context(|| format!("writing {}", path.display()))
}

pub async fn run(runtime: Arc<Runtime>, dir: &Path) -> anyhow::Result<()> {
    let erp = dir.join("erp");
    std::fs::create_dir_all(&erp).with_context(|| format!("creating {}", erp.display()))?;
    let erp = erp.canonicalize()?;
    let engine = demo_engine(runtime).await?;
    let mappings = demo_mappings(
        ["6100", "6300", "6400", "6500"],
        ("Department", "Operations"),
        "1010",
    );
    engine
        .put_connection(Connection {
            id: CONNECTION.into(),
            tenant_id: TENANT.into(),
            plugin: "csv".into(),
            enabled: true,
            // The day's new and changed bills, ready for Xero's bill import.
            settings: [("import-layout".to_string(), "xero".to_string())].into(),
            credentials: Default::default(),
            allowed_hosts: vec![],
            directory: Some(erp.display().to_string()),
            mappings,
            default_bank_account: Some("1010".into()),
            sync_bills: true,
            sync_payments: true,
            sync_before_approval: false,
            limits: LimitOverrides::default(),
            oauth2: None,
        })
        .await?;
    println!(
        "Tenant `{TENANT}` has connection `{CONNECTION}`: the built-in CSV connector, granted"
    );
    println!("{} (the plugin sees it as /data).\n", erp.display());

    println!(
        "1. Five bills are approved; each becomes a bill entry (A1). `travel` has no GL account mapping:"
    );
    let t = now_ms();
    import(&engine, json!({"documents": documents()})).await?;
    settle(&engine).await?;
    report(&engine, t).await?;

    println!(
        "\n2. doc-1001 is paid by check (its funding completes) and doc-1003 is marked paid: payment entries follow (A3, A4):"
    );
    // The ERP's own checks are near 100: ours start at 10001 (C2).
    engine
        .set_next_check_number(TENANT, "operating", 10_001)
        .await?;
    let t = now_ms();
    let mut docs = documents();
    docs[2]["status"] = "paid".into();
    import(
        &engine,
        json!({"documents": [docs[2].clone()], "payments": [{"tenant_id": TENANT, "id": "pay-9001", "document_id": "doc-1001",
            "amount": "480.00", "date": "2026-11-20", "method": "check", "funding_account": "operating",
            "disbursement_status": "funding_complete"}]}),
    )
    .await?;
    settle(&engine).await?;
    report(&engine, t).await?;

    println!(
        "\n3. An accountant books doc-1002 in the ERP (the demo sets its Booked column), and two bills change (A2):"
    );
    mark_booked(&erp.join("bills/doc-1002.csv"))?;
    let t = now_ms();
    docs[1]["lines"][0]["amount"] = "1260.50".into();
    docs[1]["total"] = "1359.50".into();
    docs[3]["due_date"] = "2026-12-15".into();
    import(
        &engine,
        json!({"documents": [docs[1].clone(), docs[3].clone()]}),
    )
    .await?;
    settle(&engine).await?;
    report(&engine, t).await?;

    println!("\n4. Requires attention:");
    for a in engine.attention(Some(CONNECTION)).await? {
        println!(
            "  {} {}: {}\n      how to fix: {}",
            a.document_id, a.target, a.message, a.hint
        );
    }

    println!("\n5. The integration log of doc-1002:");
    for row in engine.log_of(TENANT, "doc-1002", None).await? {
        println!("  {} {} -> {}", row.trigger, row.target, row.outcome);
        for op in &row.operations {
            println!("      {:<14} {}", op.operation, op.result);
        }
    }

    println!("\nFiles in {}:", erp.display());
    for sub in ["bills", "payments", "checks", "imports"] {
        let mut paths = Vec::new();
        collect(&erp.join(sub), &mut paths);
        paths.sort();
        for p in paths {
            println!("  {}", p.strip_prefix(&erp).unwrap_or(&p).display());
        }
    }
    println!(
        "\nplugins/csv/README.md explains the layout (imports/ holds the day's bills in Xero's bill import layout); README.md shows how to run ledgerbridge for your own tenants."
    );
    Ok(())
}

/// The demo against a Xero simulator: the Xero connector, the host's
/// OAuth2 (P2), batches, a lock date and a bill paid in Xero (B1).
pub async fn run_xero(runtime: Arc<Runtime>) -> anyhow::Result<()> {
    use ledgerbridge::model::OAuth2;
    use ledgerbridge_sim::xero::{Config, Organisation, XeroSim};
    let sim = XeroSim::start(Config::default()).await?;
    let org = sim.add_organisation(Organisation::demo());
    let (client, secret) = CLIENT;
    sim.add_client(client, secret);
    let refresh_token = sim.grant(client, &org);
    println!(
        "A Xero simulator serves {} (OAuth2 token endpoint {}); organisation {org}.",
        sim.api_url(),
        sim.token_url()
    );
    let engine = demo_engine(runtime).await?;
    let mappings = demo_mappings(["453", "425", "408", "485"], ("Region", "North"), "090");
    engine
        .put_connection(erp_connection(
            XERO_CONNECTION,
            "xero",
            [("tenant-id", org.clone()), ("api-url", sim.api_url())],
            sim.addr(),
            mappings,
            "090",
            OAuth2 {
                token_url: sim.token_url(),
                client_id: client.into(),
                client_secret: secret.into(),
                refresh_token: Some(refresh_token),
            },
        ))
        .await?;
    println!(
        "Tenant `{TENANT}` has connection `{XERO_CONNECTION}`: the built-in Xero connector. The host holds its OAuth2 grant and adds the access token to the connector's requests; the connector never sees it.\n"
    );
    println!(
        "1. Five bills are approved and sent to Xero in one batch (`travel` has no GL account mapping):"
    );
    let t = now_ms();
    import(&engine, json!({"documents": documents()})).await?;
    settle(&engine).await?;
    report_of(&engine, XERO_CONNECTION, t).await?;

    println!(
        "\n2. doc-1001 is paid (ACH); its payment becomes a Xero payment from bank account 090:"
    );
    let t = now_ms();
    import(
        &engine,
        json!({"payments": [{"tenant_id": TENANT, "id": "pay-9001", "document_id": "doc-1001",
            "amount": "480.00", "date": "2026-11-20", "method": "ach", "funding_account": "operating",
            "disbursement_status": "funding_complete"}]}),
    )
    .await?;
    settle(&engine).await?;
    report_of(&engine, XERO_CONNECTION, t).await?;

    println!(
        "\n3. In Xero, an accountant sets the period lock date to 2026-11-30 and someone pays doc-1004 there; then three bills change:"
    );
    let d4 = entry_of(&engine, XERO_CONNECTION, "doc-1004").await?;
    if let Some(id) = d4 {
        sim.pay(&org, &id, "2400.00", "2026-11-21")?;
    }
    sim.set_lock_dates(&org, Some("2026-11-30"), None);
    sim.expire_access_tokens();
    let t = now_ms();
    let mut docs = documents();
    docs[1]["lines"][0]["amount"] = "1260.50".into();
    docs[1]["total"] = "1359.50".into();
    docs[3]["due_date"] = "2026-12-15".into();
    docs[2]["issue_date"] = "2026-12-01".into();
    import(
        &engine,
        json!({"documents": [docs[1].clone(), docs[2].clone(), docs[3].clone()]}),
    )
    .await?;
    settle(&engine).await?;
    report_of(&engine, XERO_CONNECTION, t).await?;
    println!(
        "   (Xero's access token had expired meanwhile: the host refreshed it and stored the rotated refresh token first.)"
    );

    println!("\n4. Requires attention:");
    for a in engine.attention(Some(XERO_CONNECTION)).await? {
        println!(
            "  {} {}: {}\n      how to fix: {}",
            a.document_id, a.target, a.message, a.hint
        );
    }

    println!("\n5. What Xero holds:");
    for inv in sim.invoices(&org) {
        let s = |k: &str| inv[k].as_str().unwrap_or("").to_string();
        let n = |k: &str| format!("{:.2}", inv[k].as_f64().unwrap_or(0.0));
        println!(
            "  {:<8} {:<11} total {:>8}  due {:>8}  {}",
            s("InvoiceNumber"),
            s("Status"),
            n("Total"),
            n("AmountDue"),
            s("Url")
        );
    }
    let stats = sim.stats();
    println!(
        "\n{} calls to Xero's API ({} token refreshes); none over its limits ({} refused for a limit).",
        stats.calls,
        stats.token_refreshes,
        stats.over_minute + stats.over_day + stats.over_concurrent
    );
    println!(
        "plugins/xero/README.md explains how each of Xero's answers is read; `ledgerbridge-sim xero` runs this simulator for your own plugin."
    );
    Ok(())
}

/// A connection to an ERP simulator on `addr`, the host holding its OAuth2
/// grant.
fn erp_connection<const N: usize>(
    id: &str,
    plugin: &str,
    settings: [(&str, String); N],
    addr: std::net::SocketAddr,
    mappings: Mappings,
    bank: &str,
    oauth2: ledgerbridge::model::OAuth2,
) -> Connection {
    Connection {
        id: id.into(),
        tenant_id: TENANT.into(),
        plugin: plugin.into(),
        enabled: true,
        settings: settings
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
        credentials: Default::default(),
        allowed_hosts: vec![format!("http://{addr}")],
        directory: None,
        mappings,
        default_bank_account: Some(bank.into()),
        sync_bills: true,
        sync_payments: true,
        sync_before_approval: false,
        limits: LimitOverrides::default(),
        oauth2: Some(oauth2),
    }
}

/// The demo against a QuickBooks Online simulator: bills in batches,
/// vendors found or created, a check whose number QuickBooks already has
/// going to Failed to export, edited and exported (C3), and a closed period
/// (B1).
pub async fn run_quickbooks(runtime: Arc<Runtime>) -> anyhow::Result<()> {
    use ledgerbridge::model::OAuth2;
    use ledgerbridge::sync::Selection;
    use ledgerbridge_sim::quickbooks::{Company, Config, Faults, QuickBooksSim};
    let sim = QuickBooksSim::start(Config::default()).await?;
    let realm = sim.add_company(Company::demo());
    let (client, secret) = CLIENT;
    sim.add_client(client, secret);
    let refresh_token = sim.grant(client, &realm);
    println!(
        "A QuickBooks Online simulator serves {} (OAuth2 token endpoint {}); company (realm) {realm}.",
        sim.api_url(),
        sim.token_url()
    );
    let engine = demo_engine(runtime).await?;
    let mappings = demo_mappings(["60", "61", "63", "62"], ("Class", "101"), "35");
    engine
        .put_connection(erp_connection(
            QUICKBOOKS_CONNECTION,
            "quickbooks",
            [
                ("realm-id", realm.clone()),
                ("api-url", sim.api_url()),
                ("create-vendors", "true".to_string()),
            ],
            sim.addr(),
            mappings,
            "35",
            OAuth2 {
                token_url: sim.token_url(),
                client_id: client.into(),
                client_secret: secret.into(),
                refresh_token: Some(refresh_token),
            },
        ))
        .await?;
    engine
        .set_next_check_number(TENANT, "operating", 1001)
        .await?;
    println!(
        "Tenant `{TENANT}` has connection `{QUICKBOOKS_CONNECTION}`: the built-in QuickBooks Online connector, allowed to create vendors it cannot find by name. Checks from funding account `operating` (QuickBooks' Checking, 35) start at 1001.\n"
    );
    println!(
        "1. Five bills are approved and sent to QuickBooks in batches (Acme Paper exists there; the other vendors are created; `travel` has no GL account mapping):"
    );
    let t = now_ms();
    import(&engine, json!({"documents": documents()})).await?;
    settle(&engine).await?;
    report_of(&engine, QUICKBOOKS_CONNECTION, t).await?;

    println!(
        "\n2. doc-1001 is paid by check while QuickBooks refuses writes (maintenance): the payment is numbered 1001 and retried with backoff, then waits in Requires attention."
    );
    sim.set_faults(Faults {
        fail_writes: u32::MAX,
        ..Faults::default()
    });
    let t = now_ms();
    import(
        &engine,
        json!({"payments": [{"tenant_id": TENANT, "id": "pay-9001", "document_id": "doc-1001",
            "amount": "480.00", "date": "2026-11-20", "method": "check", "funding_account": "operating",
            "disbursement_status": "funding_complete"}]}),
    )
    .await?;
    settle(&engine).await?;
    report_of(&engine, QUICKBOOKS_CONNECTION, t).await?;

    println!(
        "\n3. Meanwhile a bookkeeper writes check 1001 by hand in QuickBooks, from Checking, for doc-1003's bill. QuickBooks is back; the operator re-syncs what needs attention, and QuickBooks refuses 1001 as a duplicate (6140):"
    );
    sim.set_faults(Faults::default());
    if let Some(bill) = entry_of(&engine, QUICKBOOKS_CONNECTION, "doc-1003").await? {
        sim.write_check(&realm, &bill, "35", "385.00", "1001")?;
    }
    let t = now_ms();
    engine
        .request_resync(QUICKBOOKS_CONNECTION, Selection::Attention, false)
        .await?;
    settle(&engine).await?;
    report_of(&engine, QUICKBOOKS_CONNECTION, t).await?;
    println!("   Failed to export:");
    for f in engine.failed_exports(Some(QUICKBOOKS_CONNECTION)).await? {
        println!(
            "  {} check {} : {}\n      suggested next free number: {}",
            f.payment_id,
            f.check_number.map_or("-".into(), |n| n.to_string()),
            f.error,
            f.suggested_check_number
                .map_or("-".into(), |n| n.to_string())
        );
        if let Some(n) = f.suggested_check_number {
            println!("   The operator edits the check number to {n} and presses Export:");
            engine
                .edit_export(TENANT, &f.payment_id, Some(n), None)
                .await?;
            let t = now_ms();
            let run = engine
                .request_export(&f.payment_id, QUICKBOOKS_CONNECTION)
                .await?;
            engine.finish_run(&run, |_| {}).await?;
            report_of(&engine, QUICKBOOKS_CONNECTION, t).await?;
        }
    }

    println!(
        "\n4. An accountant closes the books through 2026-11-30 in QuickBooks; then doc-1002 changes:"
    );
    sim.set_book_close_date(&realm, Some("2026-11-30"), false);
    sim.expire_access_tokens();
    let t = now_ms();
    let mut docs = documents();
    docs[1]["lines"][0]["amount"] = "1260.50".into();
    docs[1]["total"] = "1359.50".into();
    import(&engine, json!({"documents": [docs[1].clone()]})).await?;
    settle(&engine).await?;
    report_of(&engine, QUICKBOOKS_CONNECTION, t).await?;
    println!(
        "   (QuickBooks' access token had expired meanwhile: the host refreshed it and stored the rotated refresh token first.)"
    );

    println!("\n5. Requires attention:");
    for a in engine.attention(Some(QUICKBOOKS_CONNECTION)).await? {
        println!(
            "  {} {}: {}\n      how to fix: {}",
            a.document_id, a.target, a.message, a.hint
        );
    }

    println!("\n6. What QuickBooks holds:");
    for b in sim.bills(&realm) {
        let s = |k: &str| b[k].as_str().unwrap_or("").to_string();
        println!(
            "  Bill {:<4} {:<8} {:<20} total {:>8}  balance {:>8}  SyncToken {}",
            s("Id"),
            s("DocNumber"),
            b["VendorRef"]["name"].as_str().unwrap_or(""),
            format!("{:.2}", b["TotalAmt"].as_f64().unwrap_or(0.0)),
            format!("{:.2}", b["Balance"].as_f64().unwrap_or(0.0)),
            s("SyncToken")
        );
    }
    for p in sim.bill_payments(&realm) {
        let s = |k: &str| p[k].as_str().unwrap_or("").to_string();
        println!(
            "  BillPayment {:<4} {} check {:<6} {:>8}  {}",
            s("Id"),
            s("PayType"),
            s("DocNumber"),
            format!("{:.2}", p["TotalAmt"].as_f64().unwrap_or(0.0)),
            s("PrivateNote")
        );
    }
    let stats = sim.stats();
    println!(
        "\n{} calls to QuickBooks' API ({} batches of {} items, {} token refreshes); none over its limits ({} refused for a limit).",
        stats.calls,
        stats.batch_requests,
        stats.batch_items,
        stats.token_refreshes,
        stats.over_minute + stats.over_batch_minute + stats.over_concurrent
    );
    println!(
        "plugins/quickbooks/README.md explains how each of QuickBooks' answers is read; `ledgerbridge-sim quickbooks` runs this simulator for your own plugin."
    );
    Ok(())
}

/// The bill entry id of `document` in `connection`.
async fn entry_of(
    engine: &Engine,
    connection: &str,
    document: &str,
) -> anyhow::Result<Option<String>> {
    Ok(engine
        .log_of(TENANT, document, Some(connection))
        .await?
        .iter()
        .rev()
        .find_map(|r| r.entry_id.clone()))
}

fn collect(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            collect(&p, out);
        } else {
            out.push(p);
        }
    }
}
