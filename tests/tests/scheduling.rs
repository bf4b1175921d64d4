//! Issue 9: rate limits (R2) and fair scheduling (R5), through the engine's
//! public API, the real runtime and, for the limits, a test ERP that
//! enforces them by its own count over HTTP on loopback.

use ledgerbridge::model::LimitOverrides;
use ledgerbridge::store::now_ms;
use ledgerbridge::sync::{Engine, Selection};
use ledgerbridge_tests::metered::{MeterLimits, MeteredErp};
use ledgerbridge_tests::*;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// A connection `id` of `tenant` to the metered ERP, with `limits` (and
/// the ERP's 5 calls at once when they say nothing of it).
async fn metered_connection(
    engine: &Engine,
    id: &str,
    tenant: &str,
    erp: &MeteredErp,
    limits: LimitOverrides,
) {
    let mut c = connection(id, tenant, METERED, None);
    c.settings.insert("base-url".into(), erp.base_url.clone());
    c.allowed_hosts = vec![erp.base_url.trim_start_matches("http://").to_string()];
    c.limits = LimitOverrides {
        calls_at_once: limits.calls_at_once.or(Some(5)),
        ..limits
    };
    engine.put_connection(c).await.unwrap();
}

/// Runs a worker in the background; `stop` ends it.
fn worker(
    engine: &Arc<Engine>,
) -> (
    tokio::sync::watch::Sender<bool>,
    tokio::task::JoinHandle<()>,
) {
    let (stop, rx) = tokio::sync::watch::channel(false);
    let e = engine.clone();
    let h = tokio::spawn(async move {
        e.run_worker(false, rx).await.unwrap();
    });
    (stop, h)
}

/// When `document`'s payment entry was created in connection `xero`,
/// waiting for it up to a minute.
async fn payment_created_at(engine: &Engine, document: &str) -> i64 {
    let t0 = Instant::now();
    loop {
        let log = engine.log_of("acme", document, Some("xero")).await.unwrap();
        if let Some(r) = log
            .iter()
            .find(|r| r.target == "payment" && r.outcome == "created")
        {
            return r.at;
        }
        if t0.elapsed() > Duration::from_secs(60) {
            let status = engine.status(Some("acme")).await.unwrap();
            panic!("{document}'s payment entry never came: {log:?}\n{status:?}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A metered ERP of `at_once` calls at once, a minute's limit that never
/// binds, each call taking `latency_ms`.
async fn erp(at_once: usize, latency_ms: u64) -> MeteredErp {
    MeteredErp::start(MeterLimits {
        at_once,
        per_minute: 10_000,
        latency: Duration::from_millis(latency_ms),
    })
    .await
}

/// How many of the bulk documents `bulk00000..` (the first `n`) had their
/// entry created in connection `xero` before `at`.
async fn bulk_created_before(engine: &Engine, n: usize, at: i64) -> usize {
    let mut before = 0;
    for i in 0..n {
        let log = engine
            .log_of("acme", &format!("bulk{i:05}"), Some("xero"))
            .await
            .unwrap();
        before += log
            .iter()
            .filter(|r| r.outcome == "created" && r.at < at)
            .count();
    }
    before
}

/// A worker process's engine over the store at `db`, with `worker`.
fn process(db: &std::path::Path, worker: ledgerbridge::sync::WorkerConfig) -> Arc<Engine> {
    Arc::new(Engine::new(
        ledgerbridge::store::Store::open(db).unwrap(),
        runtime().clone(),
        ledgerbridge::sync::RetryPolicy::default(),
        worker,
    ))
}

/// R2: a bulk re-sync of 2,000 documents (4,000 calls: a lookup and a
/// create each) against an ERP that allows 5 calls at once and 3,600 a
/// minute, counted by the ERP itself over a rolling minute. The host makes
/// no call over either limit, and the run finishes. (The minute's budget
/// binds: 4,000 calls do not fit in one minute.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r2_a_bulk_resync_makes_no_call_over_the_erps_limits() {
    let erp = MeteredErp::start(MeterLimits {
        at_once: 5,
        per_minute: 3600,
        latency: Duration::from_millis(5),
    })
    .await;
    let engine = engine();
    engine.add_tenant("acme").await.unwrap();
    import_all(&engine, docs("acme", "d", 2000)).await;
    // Added after the documents: only the bulk re-sync queues their syncs.
    let limits = LimitOverrides {
        calls_at_once: Some(5),
        calls_per_minute: Some(3600),
        ..LimitOverrides::default()
    };
    metered_connection(&engine, "xero", "acme", &erp, limits).await;
    let (run, queued) = engine
        .request_resync("xero", Selection::All, false)
        .await
        .unwrap();
    assert_eq!(queued, 2000);
    let started = Instant::now();
    settle(&engine).await;
    let took = started.elapsed();
    let s = engine.run_summary(&run).await.unwrap();
    assert_eq!((s.created, s.failed, s.pending), (2000, 0, 0), "{s:?}");
    let m = erp.meter();
    assert_eq!(
        m.over_at_once.load(Ordering::SeqCst),
        0,
        "calls over the ERP's 5 at once"
    );
    assert_eq!(
        m.over_minute.load(Ordering::SeqCst),
        0,
        "calls over the ERP's 3,600 a minute"
    );
    assert!(m.most_at_once.load(Ordering::SeqCst) <= 5);
    assert_eq!(
        m.calls.load(Ordering::SeqCst),
        4000,
        "a lookup and a create per document, nothing retried"
    );
    assert_eq!(erp.entries(), 2000);
    // The minute's budget was what bound: more than a minute went by.
    assert!(
        took > Duration::from_secs(55),
        "4,000 calls at 3,600 a minute took only {took:?}"
    );
    let status = engine.status(Some("acme")).await.unwrap();
    assert!(status[0].paused_until.is_none());
}

/// R5: while connection A re-syncs 10,000 documents, funding-complete
/// payments on another tenant's connection B and on A itself are synced
/// at once: the order of the log shows they went ahead of the bulk work
/// queued before them, which is still far from done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r5_funding_complete_payments_go_ahead_of_a_bulk_resync() {
    let engine = engine();
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    for t in ["a", "b"] {
        engine.add_tenant(t).await.unwrap();
    }
    engine
        .put_connection(connection("csv-a", "a", "csv", Some(dir_a.path())))
        .await
        .unwrap();
    engine
        .put_connection(connection("csv-b", "b", "csv", Some(dir_b.path())))
        .await
        .unwrap();
    // The bills the payments pay are in the ERPs already.
    import(
        &engine,
        serde_json::json!({"documents": [
            doc_json("a", "pay-a", "approved", "10.00"),
            doc_json("b", "pay-b", "approved", "10.00"),
        ]}),
    )
    .await
    .unwrap();
    settle(&engine).await;
    engine.set_enabled("csv-a", false).await.unwrap();
    import_all(&engine, docs("a", "bulk", 10_000)).await;
    engine.set_enabled("csv-a", true).await.unwrap();
    let (run, queued) = engine
        .request_resync("csv-a", Selection::All, false)
        .await
        .unwrap();
    assert_eq!(queued, 10_001);

    let (stop, w) = worker(&engine);
    // Let the bulk run get going.
    while engine.run_summary(&run).await.unwrap().created < 200 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let funded = |tenant: &str, doc: &str| {
        let mut p = payment_json(tenant, &format!("p-{doc}"), doc, "10.00");
        p["disbursement_status"] = "funding_complete".into();
        p
    };
    let at = now_ms();
    import(
        &engine,
        serde_json::json!({"payments": [funded("a", "pay-a"), funded("b", "pay-b")]}),
    )
    .await
    .unwrap();
    let created = |tenant: &'static str, doc: &'static str| {
        let engine = engine.clone();
        async move {
            loop {
                let log = engine.log_of(tenant, doc, None).await.unwrap();
                if let Some(r) = log
                    .iter()
                    .find(|r| r.target == "payment" && r.outcome == "created")
                {
                    return r.at;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    let (done_a, done_b) = tokio::time::timeout(Duration::from_secs(120), async {
        tokio::join!(created("a", "pay-a"), created("b", "pay-b"))
    })
    .await
    .expect("both payment entries are created while the bulk run goes on");
    let progress = engine.run_summary(&run).await.unwrap();
    stop.send(true).unwrap();
    w.await.unwrap();

    // Order: between the payments' arrival and their entries, A's bulk
    // work went on only with the jobs already running (at most its calls
    // at once, each a batch of the CSV connector's 50 items per call) and a
    // claim's worth more, not the 9,800 queued before them.
    let bulk_between = |until: i64| {
        let engine = engine.clone();
        async move {
            let mut n = 0;
            for i in 0..10_000 {
                let log = engine
                    .log_of("a", &format!("bulk{i:05}"), Some("csv-a"))
                    .await
                    .unwrap();
                n += log.iter().filter(|r| r.at > at && r.at < until).count();
            }
            n
        }
    };
    let at_once = LimitOverrides::default().calls_at_once() as usize * 50;
    let before_a = bulk_between(done_a).await;
    assert!(
        before_a <= 3 * at_once,
        "{before_a} bulk jobs of A finished before A's funding-complete payment"
    );
    // B's payment waited for no bulk work at all: its bill is in, so the
    // sync is one job on a connection of its own.
    assert!(done_b - at < 10_000, "B's payment took {} ms", done_b - at);
    assert!(
        progress.pending > 5_000,
        "the bulk run was still far from done when the payments were in: {progress:?}"
    );
}

/// R5: a `rate-limited` answer pauses the whole connection until its
/// `Retry-After`, not just the job that got it: no call reaches the ERP
/// meanwhile, `status` shows the pause with when it resumes, and the
/// connection resumes by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r5_a_rate_limited_answer_pauses_the_connection_until_retry_after() {
    let erp = erp(5, 1).await;
    let engine = engine();
    engine.add_tenant("acme").await.unwrap();
    metered_connection(&engine, "xero", "acme", &erp, LimitOverrides::default()).await;
    erp.refuse_next(1, 429, 3, "minute");
    let t0 = Instant::now();
    import_all(&engine, docs("acme", "d", 20)).await;
    let (stop, w) = worker(&engine);
    // The pause shows while it lasts.
    let status = loop {
        let s = engine.status(Some("acme")).await.unwrap().remove(0);
        if s.paused_until.is_some() || t0.elapsed() > Duration::from_secs(20) {
            break s;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let until = status.paused_until.expect("the connection shows as paused");
    assert!(
        until > now_ms() && until <= now_ms() + 3_100,
        "paused until {until}"
    );
    assert!(status.paused_reason.unwrap().contains("rate-limited"));
    while engine.pending().await.unwrap() != (false, false, None) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.send(true).unwrap();
    w.await.unwrap();
    // The refusal came first; every other call waited out the 3 seconds
    // (calls already in flight at the refusal excepted: at most 4 more).
    let arrivals = erp.arrivals();
    let refused_at = arrivals[0];
    let during = arrivals
        .iter()
        .filter(|t| t.duration_since(refused_at) < Duration::from_millis(2_900))
        .count();
    assert!(during <= 1 + 4, "{during} calls arrived during the pause");
    assert_eq!(erp.meter().over_at_once.load(Ordering::SeqCst), 0);
    assert!(
        arrivals.len() >= 40,
        "every document synced after the pause"
    );
    assert_eq!(erp.entries(), 20);
    assert!(
        engine.status(Some("acme")).await.unwrap()[0]
            .paused_until
            .is_none(),
        "resumed"
    );
}

/// R5: a daily-limit answer (`Retry-After` of an hour, as Xero gives when
/// the day's calls are spent) shows the connection paused until the
/// window's end, and no job runs on it meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r5_a_daily_limit_answer_shows_the_connection_paused_until_the_windows_end() {
    let erp = erp(5, 1).await;
    let engine = engine();
    engine.add_tenant("acme").await.unwrap();
    metered_connection(&engine, "xero", "acme", &erp, LimitOverrides::default()).await;
    erp.refuse_next(1, 429, 3600, "day");
    import_all(&engine, docs("acme", "d", 3)).await;
    let (stop, w) = worker(&engine);
    let t0 = Instant::now();
    let status = loop {
        let s = engine.status(Some("acme")).await.unwrap().remove(0);
        if s.paused_until.is_some() || t0.elapsed() > Duration::from_secs(20) {
            break s;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let until = status.paused_until.expect("the connection shows as paused");
    let hour = 3_600_000;
    assert!(
        (until - now_ms() - hour).abs() < 5_000,
        "paused until {until}, not an hour from now"
    );
    // Nothing more reaches the ERP: the other jobs wait out the window.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let calls = erp.meter().calls.load(Ordering::SeqCst);
    assert!(
        calls <= 3,
        "{calls} calls reached the ERP after its daily limit"
    );
    let s = engine.status(Some("acme")).await.unwrap().remove(0);
    assert_eq!(s.running, 0);
    assert_eq!(s.queued.values().sum::<usize>(), 3, "{s:?}");
    stop.send(true).unwrap();
    w.await.unwrap();
}

/// R2: the connection's own daily budget. With 350 calls a day (35 at
/// once, the rest spread over the day, one every 4.7 minutes), 40 documents
/// (80 calls) get 35 calls, and the connection pauses until a call is free
/// instead of making a 36th: the ERP never sees a call over budget. Jobs
/// that looked their entry up wait for the create's share; a stopping worker
/// ends their wait (no attempt counted) and stops at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r2_a_spent_daily_budget_pauses_the_connection() {
    let erp = erp(5, 1).await;
    let engine = engine();
    engine.add_tenant("acme").await.unwrap();
    let limits = LimitOverrides {
        calls_per_day: Some(350),
        ..LimitOverrides::default()
    };
    metered_connection(&engine, "xero", "acme", &erp, limits).await;
    import_all(&engine, docs("acme", "d", 40)).await;
    let (stop, w) = worker(&engine);
    let t0 = Instant::now();
    let status = loop {
        let s = engine.status(Some("acme")).await.unwrap().remove(0);
        if s.paused_until.is_some() || t0.elapsed() > Duration::from_secs(30) {
            break s;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(10), w)
        .await
        .expect("the worker stops without waiting for budget")
        .unwrap();
    let until = status.paused_until.expect("paused by its own budget");
    assert!(
        until - now_ms() > 200_000,
        "a call is free only minutes later"
    );
    assert!(status.paused_reason.unwrap().contains("350 a day"));
    assert_eq!(erp.meter().calls.load(Ordering::SeqCst), 35);
    // Every document is in the ERP or queued, none failed.
    let s = engine.status(Some("acme")).await.unwrap().remove(0);
    assert_eq!(
        erp.entries() + s.queued.values().sum::<usize>(),
        40,
        "{s:?}"
    );
    assert!(engine.attention(Some("xero")).await.unwrap().is_empty());
}

/// R2 with two worker processes (two engines, each with its own store
/// handle) on one store: together they keep within the connection's
/// budget, each taking half of the minute's, while calls at once are
/// counted in the store over both. 700 documents are 1,400 calls: more
/// than the 1,200 a minute the ERP allows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r2_two_worker_processes_keep_within_one_budget() {
    use ledgerbridge::sync::WorkerConfig;
    let erp = MeteredErp::start(MeterLimits {
        at_once: 5,
        per_minute: 1200,
        latency: Duration::from_millis(5),
    })
    .await;
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("shared.db");
    let config = WorkerConfig {
        lease: Duration::from_secs(1),
        ..WorkerConfig::default()
    };
    let (a, b) = (process(&db, config), process(&db, config));
    a.add_tenant("acme").await.unwrap();
    import_all(&a, docs("acme", "d", 700)).await;
    let limits = LimitOverrides {
        calls_at_once: Some(5),
        calls_per_minute: Some(1200),
        ..LimitOverrides::default()
    };
    metered_connection(&a, "xero", "acme", &erp, limits).await;
    let (stop_a, wa) = worker(&a);
    let (stop_b, wb) = worker(&b);
    // Both know of each other (each beats every 200 ms) before work comes.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (run, _) = b
        .request_resync("xero", Selection::All, false)
        .await
        .unwrap();
    let started = Instant::now();
    loop {
        let s = a.run_summary(&run).await.unwrap();
        if s.pending == 0 && s.waiting == 0 {
            assert_eq!((s.created, s.failed), (700, 0), "{s:?}");
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(300), "{s:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for s in [stop_a, stop_b] {
        s.send(true).unwrap();
    }
    wa.await.unwrap();
    wb.await.unwrap();
    let m = erp.meter();
    assert_eq!(
        m.over_at_once.load(Ordering::SeqCst),
        0,
        "over the ERP's 5 at once"
    );
    assert_eq!(
        m.over_minute.load(Ordering::SeqCst),
        0,
        "over the ERP's 1,200 a minute"
    );
    assert_eq!(m.calls.load(Ordering::SeqCst), 1400);
    assert_eq!(erp.entries(), 700);
}

/// A manual sync whose ERP answers rate-limited for an hour: the caller
/// hears at once that the result is deferred and until when (the
/// connection shows paused), instead of waiting the hour out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r5_a_sync_deferred_by_a_pause_returns_saying_until_when() {
    let (engine, _) = scripted_engine(
        "acme",
        &[
            ("create-bill", "rate-limited"),
            ("retry-after-ms", "3600000"),
        ],
    )
    .await;
    import(
        &engine,
        serde_json::json!({"documents": [doc_json("acme", "d1", "approved", "10.00")]}),
    )
    .await
    .unwrap();
    // The automatic sync meets the rate limit first.
    let run = engine
        .request_sync("acme", "d1", "s", ledgerbridge::model::Target::Bill, false)
        .await
        .unwrap();
    let s = tokio::time::timeout(Duration::from_secs(30), engine.finish_run(&run, |_| {}))
        .await
        .expect("finish_run returns while the connection is paused")
        .unwrap();
    assert_eq!((s.pending, s.failed), (1, 0), "{s:?}");
    let until = engine
        .run_deferred_until(&run)
        .await
        .unwrap()
        .expect("deferred");
    assert!(
        (until - now_ms() - 3_600_000).abs() < 60_000,
        "deferred until {until}"
    );
    let status = engine.status(Some("acme")).await.unwrap().remove(0);
    assert!(
        status.paused_until.is_some_and(|p| p >= until - 60_000),
        "{status:?}"
    );
}

/// While a connection's work is due but not claimable (its one call at
/// once in use), the worker waits for the running job or the usual poll,
/// never polling the queue in a tight loop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r5_due_work_that_cannot_be_claimed_is_not_polled_in_a_tight_loop() {
    let erp = erp(1, 400).await;
    let engine = engine();
    engine.add_tenant("acme").await.unwrap();
    let limits = LimitOverrides {
        calls_at_once: Some(1),
        ..LimitOverrides::default()
    };
    metered_connection(&engine, "xero", "acme", &erp, limits).await;
    import_all(&engine, docs("acme", "d", 5)).await;
    let (stop, w) = worker(&engine);
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.send(true).unwrap();
    w.await.unwrap();
    let claims = engine.stats.claims.load(Ordering::Relaxed);
    assert!(claims < 100, "{claims} claims in 2 s");
    assert_eq!(erp.meter().over_at_once.load(Ordering::SeqCst), 0);
}

/// `worker --until-idle` (here `settle`) ends when what is left waits for
/// a paused connection (an hour), and a disabled connection's queued
/// syncs end, not synced, instead of keeping the worker waiting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p4_until_idle_ends_with_paused_and_disabled_connections() {
    let (engine, _) = scripted_engine(
        "acme",
        &[
            ("create-bill", "rate-limited"),
            ("retry-after-ms", "3600000"),
        ],
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    engine
        .put_connection(connection("csv", "acme", "csv", Some(dir.path())))
        .await
        .unwrap();
    import_all(&engine, docs("acme", "d", 3)).await;
    engine.set_enabled("csv", false).await.unwrap();
    tokio::time::timeout(Duration::from_secs(60), settle(&engine))
        .await
        .expect("the worker stops although syncs are left for later");
    let status = engine.status(Some("acme")).await.unwrap();
    let csv = status.iter().find(|c| c.id == "csv").unwrap();
    assert_eq!(csv.queued.values().sum::<usize>(), 0, "{csv:?}");
    let log = engine.log_of("acme", "d00000", Some("csv")).await.unwrap();
    assert!(
        log.iter()
            .any(|r| r.error.as_deref().is_some_and(|e| e.contains("disabled"))),
        "{log:?}"
    );
    let scripted = status.iter().find(|c| c.id == "s").unwrap();
    assert!(
        scripted.paused_until.is_some() && scripted.queued.values().sum::<usize>() == 3,
        "{scripted:?}"
    );
}

/// Finding of the issue 9 attack (R5): a connection with a slow ERP and 16
/// calls at once held every hand of the worker, so another tenant's sync
/// waited for one of its slow calls to end. A connection now holds at most
/// three quarters of them: the other tenant's entry is in before the slow
/// ERP has answered a single call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r5_a_slow_erp_does_not_hold_every_hand() {
    let erp = MeteredErp::start(MeterLimits {
        at_once: 16,
        per_minute: 10_000,
        latency: Duration::from_secs(3),
    })
    .await;
    let engine = engine();
    for t in ["slow", "victim"] {
        engine.add_tenant(t).await.unwrap();
    }
    let limits = LimitOverrides {
        calls_at_once: Some(16),
        ..LimitOverrides::default()
    };
    metered_connection(&engine, "slow-erp", "slow", &erp, limits).await;
    let dir = tempfile::tempdir().unwrap();
    engine
        .put_connection(connection("csv", "victim", "csv", Some(dir.path())))
        .await
        .unwrap();
    import_all(&engine, docs("slow", "s", 40)).await;
    let (stop, w) = worker(&engine);
    // The slow connection's calls are under way.
    let t0 = Instant::now();
    while engine.status(Some("slow")).await.unwrap()[0].running < 12 {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "the slow connection never had 12 calls under way"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    import_all(&engine, docs("victim", "v", 1)).await;
    loop {
        let log = engine
            .log_of("victim", "v00000", Some("csv"))
            .await
            .unwrap();
        if log.iter().any(|r| r.outcome == "created") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let slow_done = erp.meter().created.load(Ordering::SeqCst);
    stop.send(true).unwrap();
    w.await.unwrap();
    assert_eq!(
        slow_done, 0,
        "the other tenant's sync waited for the slow ERP"
    );
}

/// Waits until `connection` of `tenant` shows as paused.
async fn until_paused(engine: &Engine, tenant: &str) -> i64 {
    let t0 = Instant::now();
    loop {
        let s = engine.status(Some(tenant)).await.unwrap().remove(0);
        if let Some(until) = s.paused_until {
            return until;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "never paused: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Findings of the issue 9 attack (R5): a sync requested on a paused
/// connection waited for the pause (a day) instead of saying until when;
/// and an operator could not lift a pause. `resume` lifts it and the
/// syncs waiting for it run at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r5_a_sync_on_a_paused_connection_returns_and_resume_lifts_the_pause() {
    let erp = erp(5, 1).await;
    let engine = engine();
    engine.add_tenant("acme").await.unwrap();
    metered_connection(&engine, "xero", "acme", &erp, LimitOverrides::default()).await;
    erp.refuse_next(1, 429, 3600, "day");
    import_all(&engine, docs("acme", "d", 1)).await;
    let (stop, w) = worker(&engine);
    let until = until_paused(&engine, "acme").await;
    stop.send(true).unwrap();
    w.await.unwrap();
    import_all(&engine, docs("acme", "e", 1)).await;
    let run = engine
        .request_sync(
            "acme",
            "e00000",
            "xero",
            ledgerbridge::model::Target::Bill,
            false,
        )
        .await
        .unwrap();
    let s = tokio::time::timeout(Duration::from_secs(30), engine.finish_run(&run, |_| {}))
        .await
        .expect("a sync on a paused connection returns")
        .unwrap();
    assert_eq!(s.pending, 1);
    let deferred = engine
        .run_deferred_until(&run)
        .await
        .unwrap()
        .expect("deferred");
    assert!(
        (deferred - until).abs() < 1_000,
        "deferred until {deferred}, paused until {until}"
    );

    assert!(engine.resume("xero").await.unwrap());
    assert!(!engine.resume("xero").await.unwrap(), "not paused any more");
    assert!(
        engine.status(Some("acme")).await.unwrap()[0]
            .paused_until
            .is_none()
    );
    tokio::time::timeout(Duration::from_secs(30), settle(&engine))
        .await
        .expect("the syncs that waited for the pause run at once");
    assert_eq!(erp.entries(), 2);
}

/// Finding of the issue 9 attack (A4, R5): a funding-complete payment
/// waiting for its bill lost its priority when the bill's success merged it
/// into a bulk re-sync's payment job queued meanwhile, and ran after the
/// whole bulk run. The merged job keeps the best priority.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r5_a_released_payment_keeps_its_priority_when_merged_into_bulk_work() {
    let erp = erp(5, 5).await;
    let engine = engine();
    engine.add_tenant("acme").await.unwrap();
    import_all(&engine, docs("acme", "bulk", 60)).await;
    metered_connection(&engine, "xero", "acme", &erp, LimitOverrides::default()).await;
    // The payment's bill meets a rate limit: the payment waits for it.
    erp.refuse_next(1, 429, 2, "minute");
    let mut p = payment_json("acme", "p-x", "x", "10.00");
    p["disbursement_status"] = "funding_complete".into();
    import(&engine, serde_json::json!({"documents": [doc_json("acme", "x", "approved", "10.00")], "payments": [p]}))
        .await
        .unwrap();
    let (stop, w) = worker(&engine);
    until_paused(&engine, "acme").await;
    // Meanwhile a bulk re-sync queues every document, x's payment too.
    engine
        .request_resync("xero", Selection::All, false)
        .await
        .unwrap();
    let paid = payment_created_at(&engine, "x").await;
    stop.send(true).unwrap();
    w.await.unwrap();
    let before = bulk_created_before(&engine, 60, paid).await;
    // Without the priority kept, all 60 go first; with it, only those
    // already running and what runs beside the bill and the payment.
    assert!(
        before < 30,
        "{before} bulk entries were created before the funding-complete payment"
    );
}

/// A funding-complete payment whose bill is queued as bulk work raises the
/// bill to its own priority: the payment does not wait behind the bulk run
/// for its bill (A4, R5).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r5_a_payment_raises_its_queued_bill_to_its_priority() {
    let erp = erp(5, 5).await;
    let engine = engine();
    engine.add_tenant("acme").await.unwrap();
    import_all(&engine, docs("acme", "bulk", 60)).await;
    metered_connection(&engine, "xero", "acme", &erp, LimitOverrides::default()).await;
    engine
        .request_resync("xero", Selection::All, false)
        .await
        .unwrap();
    // The first call meets a rate limit: everything waits 2 s, meanwhile
    // the last document's disbursement completes.
    erp.refuse_next(1, 429, 2, "minute");
    let (stop, w) = worker(&engine);
    until_paused(&engine, "acme").await;
    let mut p = payment_json("acme", "p-last", "bulk00059", "10.00");
    p["disbursement_status"] = "funding_complete".into();
    import(&engine, serde_json::json!({"payments": [p]}))
        .await
        .unwrap();
    let paid = payment_created_at(&engine, "bulk00059").await;
    stop.send(true).unwrap();
    w.await.unwrap();
    let before = bulk_created_before(&engine, 59, paid).await;
    // Without the bill raised, all 59 go first; with it, only those already
    // running and what runs beside the bill and the payment.
    assert!(
        before < 30,
        "{before} bulk entries were created before the funding-complete payment's"
    );
}

/// R2: calls at once hold over two worker processes sharing a store, with
/// a plugin that sends its requests concurrently (each awaited). The engine
/// runs no more of a connection's jobs at once than its calls at once over
/// every process, and under a budget a call has one request in flight at a
/// time. (A plugin that abandons requests can still leave one in flight at
/// the ERP after its call ends: see the README.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r2_calls_at_once_hold_across_processes_with_a_bursting_plugin() {
    use ledgerbridge::sync::WorkerConfig;
    let erp = MeteredErp::start(MeterLimits {
        at_once: 100,
        per_minute: 100_000,
        latency: Duration::from_millis(150),
    })
    .await;
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("shared.db");
    // One job at a time each: the two jobs run in two processes.
    let config = WorkerConfig {
        concurrency: 1,
        lease: Duration::from_secs(2),
        ..WorkerConfig::default()
    };
    let (a, b) = (process(&db, config), process(&db, config));
    a.add_tenant("acme").await.unwrap();
    let mut c = connection("flood", "acme", HOSTILE, None);
    for (k, v) in [
        ("mode", "request-burst".to_string()),
        ("count", "8".into()),
        ("target-url", format!("{}/bills/x", erp.base_url)),
    ] {
        c.settings.insert(k.into(), v);
    }
    c.allowed_hosts = vec![erp.base_url.trim_start_matches("http://").to_string()];
    c.limits.calls_at_once = Some(2);
    a.put_connection(c).await.unwrap();
    import_all(&a, docs("acme", "d", 4)).await;
    let (stop_a, wa) = worker(&a);
    let (stop_b, wb) = worker(&b);
    let t0 = Instant::now();
    while a.pending().await.unwrap() != (false, false, None)
        && t0.elapsed() < Duration::from_secs(60)
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for s in [stop_a, stop_b] {
        s.send(true).unwrap();
    }
    wa.await.unwrap();
    wb.await.unwrap();
    let most = erp.meter().most_at_once.load(Ordering::SeqCst);
    assert!(
        erp.meter().calls.load(Ordering::SeqCst) >= 4,
        "every job reached the ERP"
    );
    assert!(
        most <= 2,
        "{most} requests in flight at once with calls_at_once 2"
    );
}
