//! HTTP API ingest benchmark (issue 13): documents a second accepted and
//! durable (each answer comes after the store's commit), sent one a request
//! and in batches of 100, by many clients at once on keep-alive
//! connections; and the latency of `GET` on a document's log, idle and
//! under that load.
//!
//! `cargo bench -p ledgerbridge-tests --bench api` runs `ledgerbridge
//! serve`'s router over a SQLite store file on loopback, with no worker
//! (ingest alone: syncing is measured by the `sync` bench).
//! `LEDGERBRIDGE_BENCH_DOCS` sets the documents of each phase (4,000 by
//! default).

use ledgerbridge::api::{ServeOptions, serve};
use ledgerbridge_tests::*;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// One keep-alive HTTP/1.1 connection.
struct Client {
    stream: BufReader<TcpStream>,
    token: String,
}

impl Client {
    async fn connect(addr: SocketAddr, token: &str) -> Client {
        let s = TcpStream::connect(addr).await.unwrap();
        s.set_nodelay(true).unwrap();
        Client {
            stream: BufReader::new(s),
            token: token.to_string(),
        }
    }

    /// Sends a request and reads its whole answer: the status and body.
    async fn call(&mut self, method: &str, path: &str, body: Option<&str>) -> (u16, Vec<u8>) {
        let body = body.unwrap_or("");
        let req = format!(
            "{method} {path} HTTP/1.1\r\nhost: bench\r\nauthorization: Bearer {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            self.token,
            body.len()
        );
        self.stream
            .get_mut()
            .write_all(req.as_bytes())
            .await
            .unwrap();
        let mut line = String::new();
        self.stream.read_line(&mut line).await.unwrap();
        let status: u16 = line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let mut length = 0usize;
        loop {
            line.clear();
            self.stream.read_line(&mut line).await.unwrap();
            if line == "\r\n" || line.is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                length = v.trim().parse().unwrap();
            }
        }
        let mut out = vec![0; length];
        self.stream.read_exact(&mut out).await.unwrap();
        (status, out)
    }
}

fn doc(id: &str) -> Value {
    let mut d = doc_json("x", id, "approved", "10.00");
    d.as_object_mut().unwrap().remove("tenant_id");
    d
}

/// `docs` documents sent by `clients` clients at once, `per_request` a
/// request; documents a second.
async fn ingest(
    addr: SocketAddr,
    token: &str,
    prefix: &str,
    docs: usize,
    clients: usize,
    per_request: usize,
) -> f64 {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let token = token.to_string();
        let prefix = prefix.to_string();
        tasks.push(tokio::spawn(async move {
            let mut client = Client::connect(addr, &token).await;
            let mine: Vec<usize> = (c..docs).step_by(clients).collect();
            for chunk in mine.chunks(per_request) {
                let body = if per_request == 1 {
                    doc(&format!("{prefix}{:06}", chunk[0])).to_string()
                } else {
                    let d: Vec<Value> = chunk
                        .iter()
                        .map(|i| doc(&format!("{prefix}{i:06}")))
                        .collect();
                    json!({ "documents": d }).to_string()
                };
                let (s, b) = client
                    .call("POST", "/v1/tenants/acme/documents", Some(&body))
                    .await;
                assert_eq!(s, 200, "{}", String::from_utf8_lossy(&b));
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    docs as f64 / started.elapsed().as_secs_f64()
}

/// `GET` of a document's log, `n` times, until `stop`: each latency.
async fn log_latencies(
    addr: SocketAddr,
    token: &str,
    stop: Option<tokio::sync::watch::Receiver<bool>>,
    n: usize,
) -> Vec<Duration> {
    let mut client = Client::connect(addr, token).await;
    let mut out = Vec::new();
    while out.len() < n || stop.as_ref().is_some_and(|s| !*s.borrow()) {
        let t = Instant::now();
        let (s, b) = client
            .call("GET", "/v1/tenants/acme/documents/seed/log", None)
            .await;
        assert_eq!(s, 200, "{}", String::from_utf8_lossy(&b));
        out.push(t.elapsed());
        if stop.is_some() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    out
}

fn percentiles(mut d: Vec<Duration>) -> String {
    d.sort();
    let at = |p: f64| d[((d.len() as f64 * p) as usize).min(d.len() - 1)];
    format!(
        "p50 {:.2} ms, p99 {:.2} ms ({} requests)",
        at(0.50).as_secs_f64() * 1e3,
        at(0.99).as_secs_f64() * 1e3,
        d.len()
    )
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let docs: usize = std::env::var("LEDGERBRIDGE_BENCH_DOCS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4_000);
    let tmp = tempfile::tempdir().unwrap();
    let erp = tempfile::tempdir().unwrap();
    let engine = durable_engine(tmp.path(), "acme").await;
    engine
        .put_connection(connection("acme-csv", "acme", "csv", Some(erp.path())))
        .await
        .unwrap();
    let (_, token) = engine.create_token(Some("acme"), "bench").await.unwrap();
    // A document with a log of a few syncs, read under load.
    import(
        &engine,
        json!({"documents": [doc_json("acme", "seed", "approved", "10.00")]}),
    )
    .await
    .unwrap();
    settle(&engine).await;
    import(
        &engine,
        json!({"documents": [doc_json("acme", "seed", "approved", "12.00")]}),
    )
    .await
    .unwrap();
    settle(&engine).await;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(
        engine.clone(),
        listener,
        ServeOptions {
            worker: false,
            ..ServeOptions::default()
        },
        async move {
            let _ = stopped.await;
        },
    ));

    println!("API ingest into a SQLite store file, no worker, {docs} documents a phase:");
    let idle = log_latencies(addr, &token, None, 200).await;
    println!("  GET a document's log, idle: {}", percentiles(idle));
    let mut phase = 0;
    for (clients, per_request) in [(1, 1), (8, 1), (32, 1), (1, 100), (8, 100)] {
        phase += 1;
        let (tx, rx) = tokio::sync::watch::channel(false);
        let reader = {
            let token = token.clone();
            tokio::spawn(async move { log_latencies(addr, &token, Some(rx), 0).await })
        };
        let rate = ingest(
            addr,
            &token,
            &format!("p{phase}-"),
            docs,
            clients,
            per_request,
        )
        .await;
        let _ = tx.send(true);
        let under = reader.await.unwrap();
        println!(
            "  {clients:>2} clients, {per_request:>3} a request: {rate:>8.0} documents/s; GET log meanwhile: {}",
            percentiles(under)
        );
    }
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}
