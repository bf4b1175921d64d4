//! P2, P6, P7, P8: the hostile plugin attacks the host's outbound HTTP, its
//! log capture and its reply bounds. Each attack runs through the runtime
//! (`Runtime::call`) against live loopback servers, beside a positive
//! control, so a test cannot pass because the attack was never made.

use ledgerbridge::runtime::bindings::ConnectorError;
use ledgerbridge::runtime::{
    AllowedHost, CallError, Credential, Limits, LogSource, MAX_ENTRY_ID_BYTES, MAX_HOST_LOG_BYTES,
    MAX_MESSAGE_BYTES, MAX_REQUESTS_PER_CALL, MAX_REQUESTS_PER_CONNECTION, Operation, PluginFault,
    Reply, Sandbox,
};
use ledgerbridge_tests::*;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

const SECRET: &str = "Bearer s3cret-token-0123456789";

fn hostile(connection: &str, mode: &str) -> Sandbox {
    Sandbox {
        tenant_id: "t1".into(),
        connection_id: connection.into(),
        settings: vec![("mode".into(), mode.into())],
        ..Sandbox::default()
    }
}

fn with_target(mut s: Sandbox, allowed: &[&str], url: &str) -> Sandbox {
    s.allowed_hosts = allowed
        .iter()
        .map(|a| AllowedHost::parse(a).unwrap())
        .collect();
    s.credentials = vec![Credential::new("authorization", SECRET).unwrap()];
    s.settings.push(("target-url".into(), url.into()));
    s
}

fn lookup() -> Operation {
    Operation::LookupBill {
        bill: sample_bill("doc-1"),
        known_id: None,
    }
}

fn entry_id(result: &Result<Reply, CallError>) -> String {
    match result {
        Ok(Reply::Found(Some(e))) => e.id.clone(),
        other => panic!("expected an entry, got {other:?}"),
    }
}

fn all_logs(logs: &[ledgerbridge::runtime::LogLine]) -> String {
    logs.iter()
        .map(|l| l.message.as_str())
        .collect::<Vec<_>>()
        .join("\n")
}

fn authorizations(r: &Recorder) -> Vec<String> {
    r.received()
        .iter()
        .flat_map(|got| got.headers.clone())
        .filter(|(k, _)| k == "authorization")
        .map(|(_, v)| v)
        .collect()
}

/// Reads one request's head from `sock`; its header lines.
async fn read_head(sock: &mut tokio::net::TcpStream) -> Vec<(String, String)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match sock.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    String::from_utf8_lossy(&buf)
        .split("\r\n")
        .skip(1)
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect()
}

/// A loopback server that accepts connections and never answers, holding
/// every socket open: what an ERP that hangs looks like.
struct Holder {
    addr: String,
    accepted: watch::Receiver<usize>,
    task: tokio::task::JoinHandle<()>,
}

impl Holder {
    async fn start() -> Holder {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (tx, accepted) = watch::channel(0);
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((sock, _)) = listener.accept().await {
                held.push(sock);
                tx.send_replace(held.len());
            }
        });
        Holder {
            addr,
            accepted,
            task,
        }
    }

    fn accepted(&self) -> usize {
        *self.accepted.borrow()
    }

    /// Closes every held connection and stops listening: the requests held
    /// fail, and those not yet sent are refused.
    fn release(&self) {
        self.task.abort();
    }

    /// Waits until `n` connections were accepted (a safety net of 60 s
    /// against a hang, not a timing assertion).
    async fn wait_for(&self, n: usize) {
        let mut rx = self.accepted.clone();
        tokio::time::timeout(Duration::from_secs(60), rx.wait_for(|&got| got >= n))
            .await
            .expect("the requests reached the holding server")
            .unwrap();
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A loopback server that echoes each request back: its authorization and
/// x-plugin headers as response headers, and every request header in a
/// chunked body cut in the middle of the credential.
async fn echo_server() -> (String, Arc<std::sync::Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let sink = sink.clone();
            tokio::spawn(async move {
                let headers = read_head(&mut sock).await;
                let get = |name: &str| {
                    headers
                        .iter()
                        .find(|(k, _)| k == name)
                        .map_or(String::new(), |(_, v)| v.clone())
                };
                let auth = get("authorization");
                sink.lock().unwrap().push(auth.clone());
                let body: String = headers.iter().map(|(k, v)| format!("{k}: {v}\n")).collect();
                // Cut the body inside the credential, so redaction must see
                // across chunks.
                let cut = body.find("s3cret").map_or(body.len() / 2, |i| i + 3);
                let (a, b) = body.split_at(cut);
                let response = format!(
                    "HTTP/1.1 200 OK\r\nx-echo-authorization: {auth}\r\nx-echo-plugin: {}\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n{:x}\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\n\r\n",
                    get("x-plugin"),
                    a.len(),
                    b.len()
                );
                let _ = sock.write_all(response.as_bytes()).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    (addr, seen)
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

// Item 11 (issue 8), item 14 (issue 7).
#[tokio::test]
async fn p8_credentials_go_only_to_the_exact_port_of_an_allowed_entry() {
    let rt = runtime();
    let plugin = load(HOSTILE).await;
    let attacker = Recorder::start().await;
    let erp = Recorder::start().await;
    let erp_port = erp.addr.rsplit_once(':').unwrap().1;
    let attacker_port = attacker.addr.rsplit_once(':').unwrap().1;
    let allowed = ["LOCALHOST".to_string(), format!("localhost:{erp_port}")];
    let allowed: Vec<&str> = allowed.iter().map(String::as_str).collect();

    // The attack: the bare `LOCALHOST` entry does not open every port.
    let steal = with_target(
        hostile("c1", "http"),
        &allowed,
        &format!("http://LocalHost:{attacker_port}/steal"),
    );
    let out = rt.call(&plugin, &steal, "k", lookup()).await;
    match &out.result {
        Err(CallError::Connector(ConnectorError::Validation(v))) => {
            assert!(v.message.contains("denied"), "{v:?}")
        }
        other => panic!("expected a denied request, got {other:?}"),
    }
    assert!(
        attacker.received().is_empty(),
        "the server on another port got {:?}",
        attacker.received()
    );
    assert!(
        out.logs
            .iter()
            .any(|l| l.source == LogSource::Host && l.message.contains(attacker_port)),
        "{:?}",
        out.logs
    );

    // Control: the exact entry, named in another case, gets the credential.
    let fine = with_target(
        hostile("c1", "http"),
        &allowed,
        &format!("http://LocalHost:{erp_port}/ok"),
    );
    let out = rt.call(&plugin, &fine, "k", lookup()).await;
    assert_eq!(entry_id(&out.result), "status 200");
    assert_eq!(authorizations(&erp), [SECRET]);
}

#[tokio::test]
async fn p8_plain_http_to_an_allowed_remote_host_is_denied_not_sent() {
    let rt = runtime();
    let plugin = load(HOSTILE).await;
    let call = |url: &str| {
        let mut s = with_target(hostile("c1", "http"), &["erp.invalid"], url);
        s.limits = Limits {
            http_timeout: Duration::from_secs(3),
            ..Limits::default()
        };
        s
    };
    let out = rt
        .call(&plugin, &call("http://erp.invalid/x"), "k", lookup())
        .await;
    match &out.result {
        Err(CallError::Connector(ConnectorError::Validation(v))) => {
            assert!(v.message.contains("denied"), "{v:?}")
        }
        other => panic!("plain http must be denied, got {other:?}"),
    }
    // Control: https to the same entry passes the policy and fails only at
    // the network (the name does not resolve), so it is not denied.
    let out = rt
        .call(&plugin, &call("https://erp.invalid/x"), "k", lookup())
        .await;
    assert!(
        matches!(
            &out.result,
            Err(CallError::Connector(ConnectorError::Unavailable(_)))
        ),
        "{:?}",
        out.result
    );
    // And the entry itself cannot ask for plain http to a remote host.
    let err = AllowedHost::parse("http://erp.invalid").unwrap_err();
    assert!(err.contains("loopback"), "{err}");
}

// Item 12.
#[tokio::test]
async fn p2_trace_and_connect_are_refused() {
    let rt = runtime();
    let plugin = load(HOSTILE).await;
    let erp = Recorder::start().await;
    let s = with_target(
        hostile("c1", "trace"),
        &[&erp.addr],
        &format!("http://{}/x", erp.addr),
    );
    let out = rt.call(&plugin, &s, "k", lookup()).await;
    // Control: the GET beside them went out, with the credential.
    assert_eq!(
        entry_id(&out.result),
        "TRACE=ErrorCode::HttpRequestDenied CONNECT=ErrorCode::HttpRequestDenied GET=200"
    );
    let lines: Vec<String> = erp
        .received()
        .iter()
        .map(|r| r.request_line.clone())
        .collect();
    assert_eq!(lines, ["GET /x HTTP/1.1"]);
    assert_eq!(authorizations(&erp), [SECRET]);
}

#[tokio::test]
async fn p2_a_credential_the_erp_reflects_never_reaches_the_plugin() {
    let rt = runtime();
    let plugin = load(HOSTILE).await;
    let (addr, seen) = echo_server().await;
    let s = with_target(
        hostile("c1", "reflect"),
        &[&addr],
        &format!("http://{addr}/echo"),
    );
    let out = rt.call(&plugin, &s, "k", lookup()).await;
    assert_eq!(entry_id(&out.result), "status 200");
    // Control: the ERP got the credential and reflected the request: the
    // plugin read its own header back, in a header and in the body.
    assert_eq!(*seen.lock().unwrap(), [SECRET]);
    let logs = all_logs(&out.logs);
    assert!(
        logs.contains("\"x-echo-plugin\", \"hostile\""),
        "no echo header seen:\n{logs}"
    );
    assert!(
        logs.contains("x-plugin: hostile"),
        "no echo body seen:\n{logs}"
    );
    // The credential itself, in neither.
    assert!(
        !logs.contains("s3cret"),
        "the plugin read the credential:\n{logs}"
    );
    assert!(!logs.contains("x-echo-authorization"), "{logs}");
    assert!(
        logs.contains("authorization: ******"),
        "the body was redacted in place:\n{logs}"
    );
}

// Item 4 (issue 8): in-flight requests are capped per call and per
// connection; another connection reaches its ERP meanwhile (P7).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p7_a_request_flood_holds_few_sockets_and_other_connections_reach_their_erp() {
    let rt = runtime();
    let plugin = load(HOSTILE).await;
    let erp = Recorder::start().await;
    let control = with_target(
        hostile("other", "http"),
        &[&erp.addr],
        &format!("http://{}/ok", erp.addr),
    );

    // One flooding call, then three at once of one connection.
    for (calls, cap) in [(1, MAX_REQUESTS_PER_CALL), (3, MAX_REQUESTS_PER_CONNECTION)] {
        let holder = Holder::start().await;
        let mut flood = with_target(
            hostile(&format!("greedy-{calls}"), "request-flood"),
            &[&holder.addr],
            &format!("http://{}/hold", holder.addr),
        );
        flood.settings.push(("count".into(), "2000".into()));
        // Long enough that no call ends, and frees its slots, before the
        // holding server lets go.
        flood.limits = Limits {
            deadline: Duration::from_secs(120),
            http_timeout: Duration::from_secs(120),
            ..Limits::default()
        };
        let before = open_fds();
        let floods: Vec<_> = (0..calls)
            .map(|i| {
                let (rt, plugin, flood) = (rt.clone(), plugin.clone(), flood.clone());
                tokio::spawn(
                    async move { rt.call(&plugin, &flood, &format!("k{i}"), lookup()).await },
                )
            })
            .collect();

        // The flood is under way: its first requests are connected and held.
        holder.wait_for(cap).await;
        // Control: another connection's request reaches its own ERP now.
        let out = rt.call(&plugin, &control, "c", lookup()).await;
        assert_eq!(
            entry_id(&out.result),
            "status 200",
            "{calls} flooding calls"
        );
        // The host holds a bounded number of sockets (both ends are in this
        // process: the calls' and the holding server's).
        let during = open_fds();
        let in_flight = holder.accepted();
        holder.release();
        assert!(
            in_flight <= cap,
            "{calls} flooding calls of one connection had {in_flight} requests in flight (cap {cap})"
        );
        assert!(
            during <= before + 2 * MAX_REQUESTS_PER_CONNECTION + 64,
            "{calls} flooding calls: {before} open files before, {during} during"
        );
        // Control: each call really started its 2000 requests.
        for call in floods {
            let out = call.await.unwrap();
            let id = entry_id(&out.result);
            assert!(id.starts_with("started 2000, refused 0"), "{id}");
        }
    }
    assert_eq!(erp.received().len(), 2);
}

// Items 1 and 2 (issue 8): host lines have their own bound.
#[tokio::test]
async fn p6_a_flood_of_denied_requests_keeps_the_log_within_its_bound() {
    let rt = runtime();
    let plugin = load(HOSTILE).await;
    let mut s = with_target(hostile("c1", "denied-flood"), &["127.0.0.1:9"], "unused");
    s.limits = Limits {
        log_bytes: 16 << 10,
        // 20,000 requests take a while in a debug build on a busy machine.
        deadline: Duration::from_secs(600),
        ..Limits::default()
    };
    let out = rt.call(&plugin, &s, "k", lookup()).await;
    // Control: the 20,000 requests were made and each was denied.
    assert_eq!(entry_id(&out.result), "denied 20000 of 20000");
    let kept = out
        .logs
        .iter()
        .filter(|l| l.source == LogSource::Host && l.message.starts_with("denied a request"))
        .count();
    assert!(kept > 0, "the first denials are logged");
    let total: usize = out.logs.iter().map(|l| l.message.len()).sum();
    assert!(
        total <= (16 << 10) + MAX_HOST_LOG_BYTES + 1024,
        "the log holds {total} bytes"
    );
    let note = format!("{} more host lines dropped", 20_000 - kept);
    assert!(
        out.logs.iter().any(|l| l.message.starts_with(&note)),
        "no `{note}` in {:?}",
        out.logs.last()
    );
    // Each kept line quotes the plugin's 4 KB host name briefly.
    assert!(
        out.logs
            .iter()
            .filter(|l| l.source == LogSource::Host)
            .all(|l| l.message.len() <= 1024)
    );
}

// Items 6 and 8 (issue 8): everything a plugin returns is bounded.
#[tokio::test]
async fn p6_oversized_replies_fail_their_call_and_host_memory_stays_modest() {
    let rt = runtime();
    let plugin = load(HOSTILE).await;
    let big = |mode: &str| {
        let mut s = hostile("c1", mode);
        s.limits = Limits {
            memory_bytes: 256 << 20,
            ..Limits::default()
        };
        s
    };
    let checks = |count| Operation::CheckNumbersInUse {
        bank_account: "1010".into(),
        first: 1000,
        count,
    };
    // Controls first: normal replies pass, and warm up the runtime.
    let ok = rt.call(&plugin, &big("ok"), "k", lookup()).await;
    assert_eq!(entry_id(&ok.result), "fine");
    let mut small = big("big-id");
    small.settings.push(("bytes".into(), "20".into()));
    let small = rt.call(&plugin, &small, "k", lookup()).await;
    assert_eq!(entry_id(&small.result), "i".repeat(20));
    let few = rt.call(&plugin, &big("ok"), "k", checks(100)).await;
    assert_eq!(few.result, Ok(Reply::CheckNumbers(vec![1000, 1001, 1002])));

    let before = rss_kib();
    // A 50 MB entry id.
    let id = rt.call(&plugin, &big("big-id"), "k", lookup()).await;
    // A 60 MiB error message.
    let message = rt.call(&plugin, &big("big-message"), "k", lookup()).await;
    // A million check numbers, asked for 100.
    let many = rt
        .call(&plugin, &big("many-checks"), "k", checks(100))
        .await;
    // Measured while the three outcomes are still held.
    let after = rss_kib();

    assert_eq!(
        id.result,
        Err(CallError::Fault(PluginFault::ReplyTooLarge {
            what: "entry id",
            limit: MAX_ENTRY_ID_BYTES,
            unit: "bytes"
        }))
    );
    assert!(
        id.logs
            .last()
            .is_some_and(|l| l.message.contains("entry id over 256 bytes")),
        "{:?}",
        id.logs
    );
    match &message.result {
        Err(CallError::Connector(ConnectorError::Unavailable(m))) => {
            assert!(m.len() <= MAX_MESSAGE_BYTES + 100, "{} bytes kept", m.len());
            assert!(
                m.ends_with(&format!("was {} bytes]", 60 << 20)),
                "{}",
                &m[m.len() - 80..]
            );
        }
        other => panic!("expected the message cut, got {other:?}"),
    }
    assert!(
        matches!(
            &many.result,
            Err(CallError::Fault(PluginFault::ReplyTooLarge {
                what: "check-number list",
                limit: 100,
                ..
            }))
        ),
        "{:?}",
        many.result
    );
    let grown_mib = after.saturating_sub(before) / 1024;
    assert!(
        grown_mib < 64,
        "the host's memory grew by {grown_mib} MiB holding three refused replies"
    );

    // The runtime still serves the next call.
    let next = rt.call(&plugin, &big("ok"), "k", lookup()).await;
    assert_eq!(entry_id(&next.result), "fine");
}
