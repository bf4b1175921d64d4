//! Helpers for ledgerbridge's end-to-end tests: the test plugins' paths, one
//! shared runtime, sample documents, and a loopback HTTP server that records
//! what it receives.

pub mod metered;

use ledgerbridge::model::{Connection, LimitOverrides, Mappings, TrackingMapping};
use ledgerbridge::runtime::bindings::{
    Bill, BillLine, BillStatus, Payment, PaymentMethod, Tracking, Vendor,
};
use ledgerbridge::runtime::{Plugin, Runtime, RuntimeConfig};
use ledgerbridge::store::Store;
use ledgerbridge::sync::{Engine, RetryPolicy, WorkerConfig};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// The hostile test plugin (`tests/plugins/hostile`).
pub const HOSTILE: &str = env!("TEST_PLUGIN_HOSTILE");
/// The scripted test plugin (`tests/plugins/scripted`).
pub const SCRIPTED: &str = env!("TEST_PLUGIN_SCRIPTED");
/// A plugin that creates payment entries but cannot modify them
/// (`tests/plugins/create-only`).
pub const CREATE_ONLY: &str = env!("TEST_PLUGIN_CREATE_ONLY");
/// A plugin that mints its own entry ids and keeps a ledger of creates
/// (`tests/plugins/minting`), so duplicates can be counted, and of its
/// calls (`calls` in its directory), so calls can be counted.
pub const MINTING: &str = env!("TEST_PLUGIN_MINTING");
/// The connector for the metered test ERP ([`metered`]), one request per
/// operation (`tests/plugins/metered`).
pub const METERED: &str = env!("TEST_PLUGIN_METERED");
/// A connector built for contract 0.1.0 from `wit/since_v0.1.0/` alone
/// (`tests/plugins/legacy`).
pub const LEGACY: &str = env!("TEST_PLUGIN_LEGACY");
/// A plugin built for contract 0.3.0 (`tests/plugins/future-contract`).
pub const FUTURE_CONTRACT: &str = env!("TEST_PLUGIN_FUTURE_CONTRACT");

/// Where the tests cache compiled plugins, so each is compiled once.
pub fn cache_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/plugin-cache")
}

/// One runtime for the whole test binary, as a host process has.
pub fn runtime() -> &'static Arc<Runtime> {
    static RT: OnceLock<Arc<Runtime>> = OnceLock::new();
    RT.get_or_init(|| {
        Arc::new(
            Runtime::new(RuntimeConfig {
                cache_dir: Some(cache_dir()),
                ..RuntimeConfig::default()
            })
            .expect("the runtime starts"),
        )
    })
}

/// Loads a plugin file into the shared runtime.
pub async fn load(path: &str) -> Arc<Plugin> {
    runtime()
        .load_file(std::path::Path::new(path))
        .await
        .unwrap_or_else(|e| panic!("loading {path}: {e}"))
}

/// Loads the built-in CSV plugin into the shared runtime.
pub async fn load_csv() -> Arc<Plugin> {
    runtime()
        .load(ledgerbridge::builtin::CSV.wasm.to_vec(), "built-in csv")
        .await
        .expect("the built-in CSV plugin loads")
}

/// A two-line approved bill totalling 150.00 USD.
pub fn sample_bill(document_id: &str) -> Bill {
    Bill {
        document_id: document_id.into(),
        number: format!("INV-{document_id}"),
        vendor: Vendor {
            id: "v-1".into(),
            name: "Acme, \"Paper\" Co".into(),
            erp_id: None,
        },
        issue_date: "2026-11-01".into(),
        due_date: "2026-12-01".into(),
        currency: "USD".into(),
        lines: vec![
            BillLine {
                description: "Paper".into(),
                amount: 10_000,
                account_code: "6100".into(),
                tracking: vec![Tracking {
                    category: "Department".into(),
                    option: "Ops".into(),
                }],
                tax_code: Some("NONE".into()),
            },
            BillLine {
                description: "Delivery, express".into(),
                amount: 5_000,
                account_code: "6300".into(),
                tracking: vec![],
                tax_code: None,
            },
        ],
        total: 15_000,
        status: BillStatus::Approved,
    }
}

/// A check payment of the whole of `bill`.
pub fn sample_payment(payment_id: &str, bill: &Bill, check_number: Option<u64>) -> Payment {
    Payment {
        payment_id: payment_id.into(),
        document_id: bill.document_id.clone(),
        bill_entry_id: bill.document_id.clone(),
        bill_number: bill.number.clone(),
        vendor: bill.vendor.clone(),
        amount: bill.total,
        currency: bill.currency.clone(),
        date: "2026-11-20".into(),
        method: if check_number.is_some() {
            PaymentMethod::Check
        } else {
            PaymentMethod::Ach
        },
        bank_account: "1010".into(),
        check_number,
    }
}

/// One request as the server received it.
#[derive(Debug, Clone)]
pub struct Received {
    /// Request line, for example `GET /x HTTP/1.1`.
    pub request_line: String,
    /// Header lines, names lower-cased.
    pub headers: Vec<(String, String)>,
}

/// A loopback HTTP/1.1 server answering `200 ok` to everything and
/// recording what it received.
pub struct Recorder {
    /// `127.0.0.1:<port>`.
    pub addr: String,
    received: Arc<Mutex<Vec<Received>>>,
}

impl Recorder {
    /// Starts the server on an ephemeral loopback port.
    pub async fn start() -> Recorder {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let received = Arc::new(Mutex::new(Vec::new()));
        let sink = received.clone();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let sink = sink.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match sock.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let text = String::from_utf8_lossy(&buf).to_string();
                    let mut lines = text.split("\r\n");
                    let request_line = lines.next().unwrap_or_default().to_string();
                    let headers = lines
                        .take_while(|l| !l.is_empty())
                        .filter_map(|l| l.split_once(':'))
                        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
                        .collect();
                    sink.lock().unwrap().push(Received {
                        request_line,
                        headers,
                    });
                    let _ = sock
                        .write_all(
                            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                        )
                        .await;
                });
            }
        });
        Recorder { addr, received }
    }

    /// Everything received so far.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

/// An engine over a fresh in-memory store, with quick retries.
pub fn engine() -> Arc<Engine> {
    engine_with_store().0
}

/// [`engine`], with a handle on its store: for the tests of the store
/// itself (claims, leases, check-number allocation), which nothing above
/// the engine may reach.
pub fn engine_with_store() -> (Arc<Engine>, Store) {
    let retry = RetryPolicy {
        max_attempts: 3,
        base: Duration::from_millis(20),
        cap: Duration::from_millis(200),
    };
    let store = Store::open_in_memory().unwrap();
    let engine = Arc::new(Engine::new(
        store.clone(),
        runtime().clone(),
        retry,
        WorkerConfig::default(),
    ));
    (engine, store)
}

/// An engine over a durable store in `dir` (production retries), with
/// tenant `tenant`: what the benchmarks measure.
pub async fn durable_engine(dir: &std::path::Path, tenant: &str) -> Arc<Engine> {
    let store = Store::open(&dir.join("bench.db")).unwrap();
    let engine = Arc::new(Engine::new(
        store,
        runtime().clone(),
        RetryPolicy::default(),
        WorkerConfig::default(),
    ));
    engine.add_tenant(tenant).await.unwrap();
    engine
}

/// A quick engine with tenant `tenant` and a CSV connection `csv` granted
/// a fresh directory (returned, so it lives as long as the test needs).
pub async fn csv_engine(tenant: &str) -> (Arc<Engine>, tempfile::TempDir) {
    let (e, _, dir) = csv_engine_with_store(tenant).await;
    (e, dir)
}

/// [`csv_engine`], with a handle on its store (see [`engine_with_store`]).
pub async fn csv_engine_with_store(tenant: &str) -> (Arc<Engine>, Store, tempfile::TempDir) {
    let (e, store) = engine_with_store();
    e.add_tenant(tenant).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    e.put_connection(connection("csv", tenant, "csv", Some(dir.path())))
        .await
        .unwrap();
    (e, store, dir)
}

/// A connection of tenant `tenant` with the usual mappings: categories
/// `office` → 6100 and `freight` → 6300, department `ops`, funding account
/// `operating` → bank account 1010.
pub fn connection(
    id: &str,
    tenant: &str,
    plugin: &str,
    directory: Option<&std::path::Path>,
) -> Connection {
    Connection {
        id: id.into(),
        tenant_id: tenant.into(),
        plugin: plugin.into(),
        enabled: true,
        settings: Default::default(),
        credentials: Default::default(),
        allowed_hosts: vec![],
        directory: directory.map(|d| d.display().to_string()),
        mappings: Mappings {
            categories: [("office", "6100"), ("freight", "6300")]
                .into_iter()
                .map(|(a, b)| (a.into(), b.into()))
                .collect(),
            departments: [(
                "ops".to_string(),
                TrackingMapping {
                    category: "Department".into(),
                    option: "Ops".into(),
                },
            )]
            .into(),
            bank_accounts: [("operating".to_string(), "1010".to_string())].into(),
            vendors: Default::default(),
        },
        default_bank_account: None,
        sync_bills: true,
        sync_payments: true,
        sync_before_approval: false,
        limits: LimitOverrides::default(),
        oauth2: None,
    }
}

/// A document as the AP product sends it: one `office` line of `amount`.
pub fn doc_json(tenant: &str, id: &str, status: &str, amount: &str) -> serde_json::Value {
    serde_json::json!({
        "tenant_id": tenant, "id": id, "number": format!("INV-{id}"),
        "vendor": {"id": "v-1", "name": "Acme Paper"},
        "issue_date": "2026-11-02", "due_date": "2026-12-02", "currency": "USD",
        "lines": [{"description": "Paper", "amount": amount, "category": "office", "department": "ops"}],
        "total": amount, "status": status
    })
}

/// A payment of `amount` against `document`.
pub fn payment_json(tenant: &str, id: &str, document: &str, amount: &str) -> serde_json::Value {
    serde_json::json!({
        "tenant_id": tenant, "id": id, "document_id": document, "amount": amount,
        "date": "2026-11-20", "method": "ach", "funding_account": "operating"
    })
}

/// `n` approved documents of 10.00 of `tenant`, ids `<prefix>00000`, ...
pub fn docs(tenant: &str, prefix: &str, n: usize) -> Vec<serde_json::Value> {
    (0..n)
        .map(|i| doc_json(tenant, &format!("{prefix}{i:05}"), "approved", "10.00"))
        .collect()
}

/// Imports `docs` a thousand at a time.
pub async fn import_all(engine: &Engine, docs: Vec<serde_json::Value>) {
    for chunk in docs.chunks(1000) {
        import(engine, serde_json::json!({"documents": chunk}))
            .await
            .unwrap();
    }
}

/// Validates and records a batch.
pub async fn import(engine: &Engine, batch: serde_json::Value) -> anyhow::Result<usize> {
    let batch = ledgerbridge::intake::parse_batch(&batch.to_string())?;
    Ok(engine.import(batch).await?.queued)
}

/// Runs the worker until nothing is queued or running.
pub async fn settle(engine: &Arc<Engine>) {
    let (_tx, rx) = tokio::sync::watch::channel(false);
    engine.run_worker(true, rx).await.expect("the worker runs");
}

/// The built-in CSV connector called through the host runtime, granted a
/// fresh directory: what the CSV connector's tests drive.
pub struct Csv {
    pub plugin: Arc<Plugin>,
    pub sandbox: ledgerbridge::runtime::Sandbox,
    pub dir: tempfile::TempDir,
}

impl Csv {
    /// The connector with a fresh granted directory.
    pub async fn new() -> Csv {
        let dir = tempfile::tempdir().unwrap();
        let sandbox = ledgerbridge::runtime::Sandbox {
            tenant_id: "t1".into(),
            connection_id: "csv-1".into(),
            directory: Some(dir.path().to_path_buf()),
            ..ledgerbridge::runtime::Sandbox::default()
        };
        Csv {
            plugin: load_csv().await,
            sandbox,
            dir,
        }
    }

    /// Runs one operation with idempotency key `key`.
    pub async fn call(
        &self,
        key: &str,
        op: ledgerbridge::runtime::Operation,
    ) -> Result<ledgerbridge::runtime::Reply, ledgerbridge::runtime::CallError> {
        runtime()
            .call(&self.plugin, &self.sandbox, key, op)
            .await
            .result
    }

    /// Runs an operation that must answer an entry.
    pub async fn entry(
        &self,
        key: &str,
        op: ledgerbridge::runtime::Operation,
    ) -> ledgerbridge::runtime::bindings::Entry {
        use ledgerbridge::runtime::Reply;
        match self.call(key, op).await {
            Ok(Reply::Entry(e)) | Ok(Reply::Found(Some(e))) => e,
            other => panic!("expected an entry, got {other:?}"),
        }
    }

    /// A path inside the granted directory.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }
}

/// An engine with tenant `tenant` and a connection `s` of the scripted test
/// plugin with `settings`; the connection is returned to be changed later.
pub async fn scripted_engine(tenant: &str, settings: &[(&str, &str)]) -> (Arc<Engine>, Connection) {
    let e = engine();
    e.add_tenant(tenant).await.unwrap();
    let mut c = connection("s", tenant, SCRIPTED, None);
    for (k, v) in settings {
        c.settings.insert(k.to_string(), v.to_string());
    }
    e.put_connection(c.clone()).await.unwrap();
    (e, c)
}

/// The idempotency keys a scripted plugin logged for operation `op`
/// (`create-bill`, `update-bill`, ...), in order.
pub fn logged_keys(log: &[ledgerbridge::store::LogRow], op: &str) -> Vec<String> {
    log.iter()
        .flat_map(|r| r.plugin_log.as_array().cloned().unwrap_or_default())
        .filter_map(|l| {
            l["message"]
                .as_str()?
                .strip_prefix(&format!("{op} key "))
                .map(str::to_string)
        })
        .collect()
}
