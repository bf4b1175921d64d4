//! `ledgerbridge dev PLUGIN_CRATE_DIR`: a plugin developer's inner loop
//! (P3). It builds the crate for `wasm32-wasip2`, runs the connector against
//! a local target (a directory, or a Xero or QuickBooks Online simulator it
//! starts) on a few sample documents, and prints what every operation
//! answered; then it watches the crate's sources, rebuilds on every save,
//! and the host reloads the new build in place (the same hot reload as
//! `serve --watch`) and runs the samples again.

use crate::demo::demo_mappings;
use anyhow::Context as _;
use ledgerbridge::intake;
use ledgerbridge::model::{Connection, LimitOverrides, OAuth2};
use ledgerbridge::runtime::{Registry, ReloadOutcome, Runtime};
use ledgerbridge::store::Store;
use ledgerbridge::sync::{Engine, RetryPolicy, WorkerConfig};
use notify::Watcher as _;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

const TENANT: &str = "dev";
const CONNECTION: &str = "dev";

/// What the connector is run against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Target {
    /// A directory granted to the connection (a file-based connector).
    Dir,
    /// A Xero simulator started here.
    Xero,
    /// A QuickBooks Online simulator started here.
    Quickbooks,
}

/// `dev`'s options.
pub struct Options {
    pub crate_dir: PathBuf,
    pub target: Target,
    pub dir: Option<PathBuf>,
    pub settings: Vec<(String, String)>,
    pub release: bool,
    pub once: bool,
    pub debounce: Duration,
}

pub async fn run(runtime: Arc<Runtime>, o: Options) -> anyhow::Result<()> {
    let manifest = o.crate_dir.join("Cargo.toml");
    let manifest = std::fs::canonicalize(&manifest).with_context(|| {
        format!(
            "{}: no Cargo.toml there; name a plugin crate's directory",
            o.crate_dir.display()
        )
    })?;
    ledgerbridge_plugin_build::install_target().map_err(anyhow::Error::msg)?;
    eprintln!("building {} for wasm32-wasip2 ...", manifest.display());
    let wasm = build(&manifest, o.release).await?;
    let registry = Arc::new(Registry::new(runtime, None));
    let engine = Arc::new(Engine::with_registry(
        Store::open_in_memory()?,
        registry.clone(),
        RetryPolicy {
            max_attempts: 2,
            base: Duration::from_millis(200),
            cap: Duration::from_secs(1),
        },
        WorkerConfig::default(),
    ));
    engine.add_tenant(TENANT).await?;
    let (connection, _simulator) = connection(&o, &manifest, &wasm).await?;
    engine
        .put_connection(connection)
        .await
        .context("the plugin cannot run as a connection")?;
    let mut events = registry.subscribe();
    let _watching = engine.watch_plugins(o.debounce).await?;
    let mut round = 1;
    // As stored (made canonical): the one file the registry watches.
    let plugin = engine.connection(CONNECTION).await?.plugin;
    let ok = samples(&engine, &plugin, round).await?;
    if o.once {
        return if ok {
            Ok(())
        } else {
            anyhow::bail!("a sample failed (see above)")
        };
    }

    // The sources: any file of the crate but target/ and hidden ones.
    let (tx, mut changes) = tokio::sync::mpsc::unbounded_channel::<()>();
    let root = manifest.parent().unwrap_or(Path::new(".")).to_path_buf();
    let root_seen = root.clone();
    let mut sources = notify::recommended_watcher(move |got: notify::Result<notify::Event>| {
        if let Ok(e) = got
            && !matches!(
                e.kind,
                notify::EventKind::Access(_)
                    | notify::EventKind::Modify(notify::event::ModifyKind::Metadata(_))
            )
            && e.paths.iter().any(|p| {
                // Hidden parts below the crate only (the crate itself may
                // live under `~/.work`).
                p.strip_prefix(&root_seen).is_ok_and(|rel| {
                    !rel.starts_with("target")
                        && !rel
                            .components()
                            .any(|c| c.as_os_str().to_string_lossy().starts_with('.'))
                })
            })
        {
            let _ = tx.send(());
        }
    })?;
    sources.watch(&root, notify::RecursiveMode::Recursive)?;
    println!(
        "\nwatching {}: save a source file to rebuild and reload; Ctrl-C stops",
        root.display()
    );
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(()),
            Some(()) = changes.recv() => {
                // An editor's burst of writes makes one build.
                while let Ok(Some(())) =
                    tokio::time::timeout(Duration::from_millis(200), changes.recv()).await
                {}
                eprintln!("\nsources changed: rebuilding ...");
                if let Err(e) = build(&manifest, o.release).await {
                    println!("{e:#}; the build before it serves on");
                }
            }
            event = events.recv() => {
                let Ok(event) = event else { continue };
                match event.outcome {
                    ReloadOutcome::Loaded { now, .. } => {
                        println!(
                            "\nreloaded: {now} serves now (waited {} ms, compiled in {} ms, checked in {} ms)",
                            event.waited.as_millis(),
                            event.compile.as_millis(),
                            event.check.as_millis()
                        );
                        round += 1;
                        samples(&engine, &plugin, round).await?;
                    }
                    ReloadOutcome::Refused { message, serving } => println!(
                        "\nthe new build was refused, {} serves on: {message}",
                        serving.map(|s| s.to_string()).unwrap_or_else(|| "nothing".into())
                    ),
                    ReloadOutcome::Unchanged | ReloadOutcome::Removed { .. } => {}
                }
            }
        }
    }
}

/// Builds the crate and returns its component's path (from cargo's own
/// account of what it built).
async fn build(manifest: &Path, release: bool) -> anyhow::Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = std::process::Command::new(cargo);
    cmd.args(["build", "--target", ledgerbridge_plugin_build::TARGET])
        .arg("--message-format=json-render-diagnostics")
        .arg("--manifest-path")
        .arg(manifest);
    if release {
        cmd.arg("--release");
    }
    ledgerbridge_plugin_build::scrub_env(&mut cmd);
    cmd.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit());
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await?
        .context("running cargo")?;
    let mut built = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(m) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if m["reason"] != "compiler-artifact" {
            continue;
        }
        let ours = m["manifest_path"]
            .as_str()
            .is_some_and(|p| Path::new(p) == manifest);
        for f in m["filenames"].as_array().into_iter().flatten() {
            if let Some(f) = f.as_str().filter(|f| f.ends_with(".wasm")) {
                built.push((ours, PathBuf::from(f)));
            }
        }
    }
    if !out.status.success() {
        anyhow::bail!("the build failed (cargo's errors are above)");
    }
    built.sort_by_key(|(ours, _)| !*ours);
    built
        .into_iter()
        .next()
        .map(|(_, p)| p)
        .context("cargo built no .wasm: is the crate a `cdylib`?")
}

/// The connection the plugin runs as, and the simulator it talks to (kept
/// alive as long as `dev` runs).
async fn connection(
    o: &Options,
    manifest: &Path,
    wasm: &Path,
) -> anyhow::Result<(Connection, Option<Box<dyn std::any::Any + Send>>)> {
    let mut c = Connection {
        id: CONNECTION.into(),
        tenant_id: TENANT.into(),
        plugin: wasm.display().to_string(),
        enabled: true,
        settings: Default::default(),
        credentials: Default::default(),
        allowed_hosts: vec![],
        directory: None,
        mappings: demo_mappings(
            ["6100", "6300", "6400", "6500"],
            ("Department", "Ops"),
            "1010",
        ),
        default_bank_account: None,
        sync_bills: true,
        sync_payments: true,
        sync_before_approval: false,
        limits: LimitOverrides::default(),
        oauth2: None,
    };
    let mut simulator: Option<Box<dyn std::any::Any + Send>> = None;
    let (client, secret) = ("ledgerbridge-dev", "dev-client-secret");
    match o.target {
        Target::Dir => {
            let dir = o.dir.clone().unwrap_or_else(|| {
                manifest
                    .parent()
                    .unwrap_or(Path::new("."))
                    .join("target/ledgerbridge-dev")
            });
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            println!("the connector is granted {}", dir.display());
            c.directory = Some(dir.display().to_string());
        }
        Target::Xero => {
            use ledgerbridge_sim::xero::{Config, Organisation, XeroSim};
            let sim = XeroSim::start(Config::default()).await?;
            let org = sim.add_organisation(Organisation::demo());
            sim.add_client(client, secret);
            c.oauth2 = Some(OAuth2 {
                token_url: sim.token_url(),
                client_id: client.into(),
                client_secret: secret.into(),
                refresh_token: Some(sim.grant(client, &org)),
            });
            c.settings = [
                ("tenant-id".to_string(), org),
                ("api-url".into(), sim.api_url()),
            ]
            .into();
            c.allowed_hosts = vec![format!("http://{}", sim.addr())];
            c.mappings = demo_mappings(["453", "425", "408", "485"], ("Region", "North"), "090");
            println!("a Xero simulator serves {}", sim.api_url());
            simulator = Some(Box::new(sim));
        }
        Target::Quickbooks => {
            use ledgerbridge_sim::quickbooks::{Company, Config, QuickBooksSim};
            let sim = QuickBooksSim::start(Config::default()).await?;
            let realm = sim.add_company(Company::demo());
            sim.add_client(client, secret);
            c.oauth2 = Some(OAuth2 {
                token_url: sim.token_url(),
                client_id: client.into(),
                client_secret: secret.into(),
                refresh_token: Some(sim.grant(client, &realm)),
            });
            c.settings = [
                ("realm-id".to_string(), realm),
                ("api-url".into(), sim.api_url()),
                ("create-vendors".into(), "true".into()),
            ]
            .into();
            c.allowed_hosts = vec![format!("http://{}", sim.addr())];
            c.mappings = demo_mappings(["60", "61", "63", "62"], ("Class", "101"), "35");
            println!("a QuickBooks Online simulator serves {}", sim.api_url());
            simulator = Some(Box::new(sim));
        }
    }
    for (k, v) in &o.settings {
        c.settings.insert(k.clone(), v.clone());
    }
    Ok((c, simulator))
}

/// This run's prefix for sample ids, so that the entries a directory or a
/// simulator kept from an earlier run are not mistaken for this run's.
fn session() -> &'static str {
    static S: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    S.get_or_init(|| format!("s{:x}", (now_ms() / 1000) % 0xf_ffff))
}

fn document(round: u32, n: u32, amount: &str, category: &str) -> serde_json::Value {
    let vendor = ["Acme Paper", "Northwind Freight", "Contoso Supplies"][(n as usize - 1) % 3];
    json!({
        "tenant_id": TENANT, "id": format!("{}-r{round}-doc-{n}", session()), "number": format!("DEV-{round}-{n}"),
        "vendor": {"id": format!("v-{n}"), "name": vendor},
        "issue_date": "2026-11-02", "due_date": "2026-12-02", "currency": "USD",
        "lines": [{"description": "Sample line", "amount": amount, "category": category, "department": "ops"}],
        "total": amount, "status": "approved"
    })
}

/// Round `round` of samples: three new bills, a change to one of them, and
/// a payment of it when the connector takes payments; prints each
/// attempt's operations and answers. Returns whether all of it synced.
async fn samples(engine: &Arc<Engine>, plugin: &str, round: u32) -> anyhow::Result<bool> {
    println!("\nround {round}: three approved bills");
    let docs = vec![
        document(round, 1, "480.00", "office"),
        document(round, 2, "1250.50", "freight"),
        document(round, 3, "99.00", "office"),
    ];
    let mut ok = step(engine, json!({ "documents": docs }), round).await?;
    println!(
        "round {round}: bill {}-r{round}-doc-1 changed (480.00 -> 520.00)",
        session()
    );
    ok &= step(
        engine,
        json!({ "documents": [document(round, 1, "520.00", "office")] }),
        round,
    )
    .await?;
    let pays = engine.registry().resolve_text(plugin).await.is_ok_and(|p| {
        p.descriptor
            .capabilities
            .contains(ledgerbridge::runtime::bindings::Capabilities::PAYMENTS)
    });
    if pays {
        println!("round {round}: a payment of {}-r{round}-doc-1", session());
        ok &= step(
            engine,
            json!({ "payments": [{
                "tenant_id": TENANT, "id": format!("{}-r{round}-pay-1", session()), "document_id": format!("{}-r{round}-doc-1", session()),
                "amount": "520.00", "date": "2026-11-20", "method": "ach", "funding_account": "operating"
            }]}),
            round,
        )
        .await?;
    }
    Ok(ok)
}

/// Imports `batch`, syncs it, and prints the new log lines of the round's
/// documents.
async fn step(engine: &Arc<Engine>, batch: serde_json::Value, round: u32) -> anyhow::Result<bool> {
    let since = now_ms();
    engine
        .import(intake::parse_batch(&batch.to_string())?)
        .await?;
    let (_tx, rx) = tokio::sync::watch::channel(false);
    engine.run_worker(true, rx).await?;
    let mut ok = true;
    let prefix = format!("{}-r{round}-", session());
    for id in engine.document_ids(TENANT).await? {
        if !id.starts_with(&prefix) {
            continue;
        }
        for row in engine.log_of(TENANT, &id, Some(CONNECTION)).await? {
            if row.at < since {
                continue;
            }
            ok &= !matches!(row.outcome.as_str(), "failed" | "blocked" | "retrying");
            println!(
                "  {id:<18} {:<8} {:<15} {}{}",
                row.target,
                row.outcome,
                row.entry_id
                    .as_deref()
                    .map(|e| format!("entry {e}"))
                    .unwrap_or_default(),
                row.plugin
                    .as_ref()
                    .map(|p| format!("  [{p}]"))
                    .unwrap_or_default()
            );
            for op in &row.operations {
                println!("      {:<18} {}", op.operation, op.result);
            }
            if let Some(e) = &row.error {
                println!("      error: {e}");
            }
            for l in row.plugin_log.as_array().into_iter().flatten() {
                println!(
                    "      {} {}: {}",
                    l["source"].as_str().unwrap_or("plugin"),
                    l["level"].as_str().unwrap_or(""),
                    l["message"].as_str().unwrap_or("")
                );
            }
        }
    }
    Ok(ok)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
