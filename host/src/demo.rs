//! `ledgerbridge demo`: the built-in CSV connector on sample bills and
//! payments, through the sandboxed runtime, with every step printed.

use anyhow::{Context as _, bail};
use ledgerbridge::builtin;
use ledgerbridge::runtime::bindings::{
    Bill, BillLine, BillStatus, Entry, Payment, PaymentMethod, Tracking, Vendor,
};
use ledgerbridge::runtime::{
    CallError, CallOutcome, Operation, Plugin, Reply, Runtime, Sandbox, describe_connector_error,
};
use std::path::Path;

fn bill(id: &str, number: &str, vendor: &str, lines: &[(&str, i64, &str)]) -> Bill {
    let lines: Vec<BillLine> = lines
        .iter()
        .map(|(desc, amount, account)| BillLine {
            description: desc.to_string(),
            amount: *amount,
            account_code: account.to_string(),
            tracking: vec![Tracking {
                category: "Department".into(),
                option: "Operations".into(),
            }],
            tax_code: Some("NONE".into()),
        })
        .collect();
    Bill {
        document_id: id.into(),
        number: number.into(),
        vendor: Vendor {
            id: format!("v-{}", vendor.to_lowercase().replace(' ', "-")),
            name: vendor.into(),
        },
        issue_date: "2026-11-02".into(),
        due_date: "2026-12-02".into(),
        currency: "USD".into(),
        total: lines.iter().map(|l| l.amount).sum(),
        lines,
        status: BillStatus::Approved,
    }
}

fn entry_of(outcome: &CallOutcome) -> anyhow::Result<Option<Entry>> {
    match &outcome.result {
        Ok(Reply::Found(e)) => Ok(e.clone()),
        Ok(Reply::Entry(e)) => Ok(Some(e.clone())),
        Ok(other) => bail!("unexpected reply {other:?}"),
        Err(e) => bail!("{e}"),
    }
}

/// Looks the bill up, then creates or updates it: the shape of every sync.
async fn sync_bill(
    rt: &Runtime,
    plugin: &Plugin,
    sandbox: &Sandbox,
    b: &Bill,
    attempt: &str,
) -> anyhow::Result<()> {
    let key = |op: &str| format!("demo:{}:{op}:{attempt}", b.document_id);
    let found = rt
        .call(
            plugin,
            sandbox,
            &key("lookup"),
            Operation::LookupBill {
                bill: b.clone(),
                known_id: None,
            },
        )
        .await;
    let op = match entry_of(&found)? {
        None => Operation::CreateBill { bill: b.clone() },
        Some(entry) => Operation::UpdateBill {
            entry,
            bill: b.clone(),
        },
    };
    let name = op.name();
    let outcome = rt.call(plugin, sandbox, &key(name), op).await;
    let total = ledgerbridge_money(b.total);
    match &outcome.result {
        Ok(Reply::Entry(e)) => println!(
            "  {:<12} {:<9} {:<18} {total:>10}  -> {name}, entry {} version {}",
            b.document_id,
            b.number,
            b.vendor.name,
            e.id,
            e.version.as_deref().unwrap_or("-")
        ),
        Err(CallError::Connector(c)) => println!(
            "  {:<12} {:<9} {:<18} {total:>10}  -> {name} refused: {}",
            b.document_id,
            b.number,
            b.vendor.name,
            describe_connector_error(c)
        ),
        Err(e) => bail!("{name} of {} failed: {e}", b.document_id),
        Ok(other) => bail!("unexpected reply {other:?}"),
    }
    for line in &outcome.logs {
        println!("      plugin log: {}", line.message);
    }
    Ok(())
}

fn ledgerbridge_money(minor: i64) -> String {
    format!("{}.{:02} USD", minor / 100, (minor % 100).abs())
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

pub async fn run(rt: &Runtime, dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let dir = dir.canonicalize()?;
    let plugin = rt
        .load(builtin::CSV.wasm.to_vec(), "built-in csv plugin")
        .await
        .context("loading the built-in CSV plugin")?;
    println!(
        "Loaded the {} connector {} (contract {}), compiled in {:.1?}{}.",
        plugin.descriptor.name,
        plugin.descriptor.version,
        plugin.contract_version,
        plugin.compile_time,
        if plugin.from_cache { " from cache" } else { "" }
    );
    let sandbox = Sandbox {
        tenant_id: "demo-tenant".into(),
        connection_id: "demo-csv".into(),
        directory: Some(dir.clone()),
        ..Sandbox::default()
    };
    println!(
        "The connection is granted {} (the plugin sees it as /data).\n",
        dir.display()
    );

    let mut bills = vec![
        bill(
            "doc-1001",
            "INV-7731",
            "Acme Paper",
            &[("Copier paper, 40 boxes", 48_000, "6100")],
        ),
        bill(
            "doc-1002",
            "A-2209",
            "Northwind Freight",
            &[
                ("Freight October", 125_050, "6300"),
                ("Fuel surcharge", 9_900, "6300"),
            ],
        ),
        bill(
            "doc-1003",
            "55120",
            "Contoso Cleaning",
            &[("Office cleaning, November", 38_500, "6400")],
        ),
        bill(
            "doc-1004",
            "Q4-118",
            "Fabrikam Software",
            &[("Licences, Q4", 240_000, "6500")],
        ),
    ];
    println!("1. Approved bills become bill entries:");
    for b in &bills {
        sync_bill(rt, &plugin, &sandbox, b, "1").await?;
    }

    println!("\n2. Paid bills get payment entries:");
    let payments = [
        ("pay-9001", &bills[0], PaymentMethod::Check, Some(10_001u64)),
        ("pay-9002", &bills[2], PaymentMethod::Ach, None),
    ];
    for (id, b, method, check) in payments {
        let p = Payment {
            payment_id: id.into(),
            document_id: b.document_id.clone(),
            bill_entry_id: b.document_id.clone(),
            bill_number: b.number.clone(),
            vendor: b.vendor.clone(),
            amount: b.total,
            currency: b.currency.clone(),
            date: "2026-11-20".into(),
            method,
            bank_account: "1010".into(),
            check_number: check,
        };
        let found = rt
            .call(
                &plugin,
                &sandbox,
                &format!("demo:{id}:lookup"),
                Operation::LookupPayment {
                    payment: p.clone(),
                    known_id: None,
                },
            )
            .await;
        let op = match entry_of(&found)? {
            None => Operation::CreatePayment { payment: p.clone() },
            Some(entry) => Operation::UpdatePayment {
                entry,
                payment: p.clone(),
            },
        };
        let name = op.name();
        let outcome = rt
            .call(&plugin, &sandbox, &format!("demo:{id}:{name}"), op)
            .await;
        let e = entry_of(&outcome)?.context("no entry returned")?;
        println!(
            "  {id:<12} for {:<9} {:>12} {}{}  -> {name}, entry {}",
            b.document_id,
            ledgerbridge_money(p.amount),
            format!("{method:?}").to_lowercase(),
            check.map(|n| format!(" #{n}")).unwrap_or_default(),
            e.id
        );
    }

    println!("\n3. An accountant books doc-1002 in the ERP (the demo sets its Booked column).");
    mark_booked(&dir.join("bills/doc-1002.csv"))?;
    println!("\n4. Details change; changed bills are updated, the booked one is refused:");
    bills[1].lines[0].amount += 1_000;
    bills[1].total += 1_000;
    bills[3].due_date = "2026-12-15".into();
    for b in [&bills[1], &bills[3]] {
        sync_bill(rt, &plugin, &sandbox, b, "2").await?;
    }

    println!("\nFiles written:");
    for sub in ["bills", "payments", "checks"] {
        let mut paths = Vec::new();
        collect(&dir.join(sub), &mut paths);
        paths.sort();
        for p in paths {
            println!("  {}", p.display());
        }
    }
    println!(
        "\nOpen {}/bills/doc-1001.csv to see the layout (plugins/csv/README.md explains it).",
        dir.display()
    );
    Ok(())
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
