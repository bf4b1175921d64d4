//! P1, P2: a plugin's faults and attacks fail its own operation and nothing
//! else. Each test runs a real attack from the hostile plugin, with a
//! positive control so it cannot pass because the attack never happened.

use ledgerbridge::runtime::{
    AllowedHost, CallError, Credential, Limits, LogSource, Operation, PluginFault, Reply, Sandbox,
};
use ledgerbridge_tests::*;
use std::time::{Duration, Instant};

fn hostile_sandbox(mode: &str) -> Sandbox {
    Sandbox {
        tenant_id: "t1".into(),
        connection_id: "c1".into(),
        settings: vec![("mode".into(), mode.into())],
        ..Sandbox::default()
    }
}

fn lookup() -> Operation {
    Operation::LookupBill {
        bill: sample_bill("doc-1"),
        known_id: None,
    }
}

fn validation_message(result: &Result<Reply, CallError>) -> String {
    match result {
        Err(CallError::Connector(ledgerbridge::runtime::bindings::ConnectorError::Validation(
            v,
        ))) => v.message.clone(),
        other => panic!("expected a validation answer, got {other:?}"),
    }
}

#[tokio::test(flavor = "current_thread")]
async fn p1_endless_loop_hits_the_deadline_and_the_host_stays_responsive() {
    let rt = runtime();
    let plugin = load(HOSTILE).await;
    let mut looping = hostile_sandbox("loop");
    looping.limits = Limits {
        deadline: Duration::from_millis(700),
        ..Limits::default()
    };
    let ok = hostile_sandbox("ok");

    // On one thread, the well-behaved call can only finish while the loop is
    // still running if the looping plugin yields.
    let started = Instant::now();
    let (stuck, fine) = tokio::join!(rt.call(&plugin, &looping, "k1", lookup()), async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let out = rt.call(&plugin, &ok, "k2", lookup()).await;
        (out, started.elapsed())
    });
    assert_eq!(
        stuck.result,
        Err(CallError::Fault(PluginFault::Deadline(
            Duration::from_millis(700)
        )))
    );
    assert!(
        stuck.elapsed >= Duration::from_millis(700),
        "stopped early: {:?}",
        stuck.elapsed
    );
    assert!(
        stuck
            .logs
            .iter()
            .any(|l| l.source == LogSource::Host && l.message.contains("deadline"))
    );
    let (fine, finished_at) = fine;
    assert!(
        matches!(fine.result, Ok(Reply::Found(Some(_)))),
        "{:?}",
        fine.result
    );
    assert!(
        finished_at < stuck.elapsed,
        "the other call waited for the loop: {finished_at:?} vs {:?}",
        stuck.elapsed
    );

    // The next call on the same plugin gets a fresh instance and works.
    let next = rt.call(&plugin, &ok, "k3", lookup()).await;
    assert!(matches!(next.result, Ok(Reply::Found(Some(_)))));
}

#[tokio::test]
async fn p1_memory_growth_is_stopped_at_the_limit() {
    let rt = runtime();
    let plugin = load(HOSTILE).await;
    let mut grow = hostile_sandbox("grow");
    grow.limits = Limits {
        memory_bytes: 32 << 20,
        ..Limits::default()
    };
    let out = rt.call(&plugin, &grow, "k", lookup()).await;
    assert_eq!(
        out.result,
        Err(CallError::Fault(PluginFault::MemoryLimit(32 << 20)))
    );

    // Control: the same code hoarding 8 MiB under the same limit completes,
    // so it is the limit that stopped the first call, not a bug.
    grow.settings.push(("mib".into(), "8".into()));
    let small = rt.call(&plugin, &grow, "k", lookup()).await;
    assert!(
        matches!(&small.result, Ok(Reply::Found(Some(e))) if e.id == "hoarded 8 MiB"),
        "{:?}",
        small.result
    );

    let after = rt
        .call(&plugin, &hostile_sandbox("ok"), "k", lookup())
        .await;
    assert!(matches!(after.result, Ok(Reply::Found(Some(_)))));
}

#[tokio::test]
async fn p1_a_panic_fails_one_call_and_its_message_is_captured() {
    let rt = runtime();
    let plugin = load(HOSTILE).await;
    let out = rt
        .call(&plugin, &hostile_sandbox("panic"), "k", lookup())
        .await;
    assert!(
        matches!(out.result, Err(CallError::Fault(PluginFault::Trap(_)))),
        "{:?}",
        out.result
    );
    assert!(
        out.logs
            .iter()
            .any(|l| l.source == LogSource::Stderr && l.message.contains("panics on purpose")),
        "{:?}",
        out.logs
    );
    let after = rt
        .call(&plugin, &hostile_sandbox("ok"), "k", lookup())
        .await;
    assert!(matches!(after.result, Ok(Reply::Found(Some(_)))));
}

#[tokio::test]
async fn p1_no_file_outside_the_grant_can_be_read_or_written() {
    let rt = runtime();
    let plugin = load(HOSTILE).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("inside.txt"), "granted content").unwrap();
    let mut sandbox = hostile_sandbox("read-outside");
    sandbox.directory = Some(dir.path().to_path_buf());
    let out = rt.call(&plugin, &sandbox, "k", lookup()).await;
    // The control read succeeded (the message quotes it), every escape failed.
    let msg = validation_message(&out.result);
    assert!(
        msg.contains("granted content") && msg.contains("every outside path denied"),
        "{msg}"
    );

    sandbox.settings = vec![("mode".into(), "write-outside".into())];
    let _ = std::fs::remove_file("/tmp/ledgerbridge-hostile-was-here");
    let out = rt.call(&plugin, &sandbox, "k", lookup()).await;
    validation_message(&out.result);
    assert!(
        dir.path().join("written-inside.txt").exists(),
        "control write inside the grant failed"
    );
    assert!(!std::path::Path::new("/tmp/ledgerbridge-hostile-was-here").exists());

    // Without a grant, not even /data exists.
    let mut ungranted = hostile_sandbox("read-outside");
    ungranted.directory = None;
    let msg = validation_message(&rt.call(&plugin, &ungranted, "k", lookup()).await.result);
    assert!(msg.contains("cannot read the granted file"), "{msg}");
}

#[tokio::test]
async fn p1_requests_go_only_to_allowed_hosts() {
    let rt = runtime();
    let plugin = load(HOSTILE).await;
    let allowed = Recorder::start().await;
    let forbidden = Recorder::start().await;

    let mut sandbox = hostile_sandbox("http");
    sandbox.allowed_hosts = vec![AllowedHost::parse(&allowed.addr).unwrap()];
    // Control: the allowed host is reached.
    sandbox
        .settings
        .push(("target-url".into(), format!("http://{}/ok", allowed.addr)));
    let out = rt.call(&plugin, &sandbox, "k", lookup()).await;
    assert!(
        matches!(&out.result, Ok(Reply::Found(Some(e))) if e.id == "status 200"),
        "{:?}",
        out.result
    );
    assert_eq!(allowed.received().len(), 1);

    // The forbidden host is live, and gets nothing.
    sandbox.settings[1].1 = format!("http://{}/steal", forbidden.addr);
    let out = rt.call(&plugin, &sandbox, "k", lookup()).await;
    let msg = validation_message(&out.result);
    assert!(msg.contains("denied"), "{msg}");
    assert!(
        out.logs
            .iter()
            .any(|l| l.source == LogSource::Host && l.message.contains(&forbidden.addr))
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        forbidden.received().is_empty(),
        "the forbidden host got {:?}",
        forbidden.received()
    );
}

#[tokio::test]
async fn p1_raw_sockets_are_refused() {
    let rt = runtime();
    let plugin = load(HOSTILE).await;
    let live = Recorder::start().await;
    let mut sandbox = hostile_sandbox("socket");
    sandbox.allowed_hosts = vec![AllowedHost::parse(&live.addr).unwrap()];
    sandbox
        .settings
        .push(("target-addr".into(), live.addr.clone()));
    let out = rt.call(&plugin, &sandbox, "k", lookup()).await;
    validation_message(&out.result);
    // Control: the address is live for anyone allowed to connect.
    tokio::net::TcpStream::connect(&live.addr).await.unwrap();
}

#[tokio::test]
async fn p2_the_plugin_never_sees_the_credential_the_host_adds() {
    let rt = runtime();
    let plugin = load(HOSTILE).await;
    let erp = Recorder::start().await;
    let mut sandbox = hostile_sandbox("credentials");
    sandbox.allowed_hosts = vec![AllowedHost::parse(&erp.addr).unwrap()];
    sandbox.credentials = vec![Credential::new("authorization", "Bearer s3cret-token").unwrap()];
    sandbox
        .settings
        .push(("target-url".into(), format!("http://{}/api", erp.addr)));
    let out = rt.call(&plugin, &sandbox, "k", lookup()).await;

    // No environment, no arguments.
    assert!(
        matches!(&out.result, Ok(Reply::Found(Some(e))) if e.id == "env=0 args=0"),
        "{:?}",
        out.result
    );
    // The ERP received the credential, exactly once and the host's value.
    let got = erp.received();
    assert_eq!(got.len(), 1, "{got:?}");
    let auth: Vec<_> = got[0]
        .headers
        .iter()
        .filter(|(k, _)| k == "authorization")
        .collect();
    assert_eq!(auth.len(), 1);
    assert_eq!(auth[0].1, "Bearer s3cret-token");
    assert!(
        got[0]
            .headers
            .iter()
            .any(|(k, v)| k == "x-plugin" && v == "hostile")
    );
    // The plugin could not set it itself, and nothing it saw contains it.
    let logs: String = out
        .logs
        .iter()
        .map(|l| l.message.as_str())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(logs.contains("setting authorization refused"), "{logs}");
    assert!(logs.contains("my request"), "{logs}");
    assert!(
        !logs.contains("s3cret"),
        "the plugin saw the credential:\n{logs}"
    );
}

#[tokio::test]
async fn p1_output_and_logs_are_bounded() {
    let rt = runtime();
    let plugin = load(HOSTILE).await;
    let mut sandbox = hostile_sandbox("flood");
    sandbox.limits = Limits {
        log_bytes: 16 << 10,
        ..Limits::default()
    };
    let out = rt.call(&plugin, &sandbox, "k", lookup()).await;
    assert!(
        matches!(&out.result, Ok(Reply::Found(Some(e))) if e.id == "flooded"),
        "{:?}",
        out.result
    );
    let kept: usize = out
        .logs
        .iter()
        .filter(|l| l.source != LogSource::Host)
        .map(|l| l.message.len())
        .sum();
    assert!(kept <= 16 << 10, "kept {kept} bytes");
    assert!(
        out.logs.iter().any(|l| l.source == LogSource::Plugin),
        "the first lines are kept"
    );
    assert!(out.logs.last().unwrap().message.contains("dropped"));
}
