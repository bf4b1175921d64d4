//! Contract 0.2's batches through the engine (issue 10): a bulk re-sync
//! costs the ERP a call per batch, not two per document; every item of a
//! batch gets its own outcome, log line and attention item; a plugin built
//! for contract 0.1 still syncs, one item a call; a plugin that answers
//! another number of results than items faults that call only.

use ledgerbridge::sync::Selection;
use ledgerbridge_tests::*;

/// The minting connector's record of its calls: `(operation, items)`.
fn calls(dir: &std::path::Path) -> Vec<(String, usize)> {
    std::fs::read_to_string(dir.join("calls"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (op, n) = l.split_once(' ')?;
            Some((op.to_string(), n.parse().ok()?))
        })
        .collect()
}

/// Entries the minting connector created per reference of `kind`.
fn creates(dir: &std::path::Path, kind: &str) -> Vec<usize> {
    std::fs::read_dir(dir.join("refs"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|f| {
            f.file_name()
                .to_string_lossy()
                .starts_with(&format!("{kind}-"))
        })
        .map(|f| {
            std::fs::read_to_string(f.path())
                .unwrap_or_default()
                .lines()
                .count()
        })
        .collect()
}

/// Issue 10: a bulk re-sync of 2,000 new documents through a connector
/// that takes 50 items a call makes at most 40 lookup calls and 40 create
/// calls for the bills (it was 4,000 calls), each of at most 50 items, and
/// every document gets exactly one entry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn m2_a_bulk_resync_of_2000_documents_makes_a_call_per_batch_not_per_document() {
    let engine = engine();
    engine.add_tenant("acme").await.unwrap();
    let erp = tempfile::tempdir().unwrap();
    let mut c = connection("m", "acme", MINTING, Some(erp.path()));
    c.enabled = false;
    engine.put_connection(c.clone()).await.unwrap();
    import_all(&engine, docs("acme", "d", 2000)).await;
    c.enabled = true;
    engine.put_connection(c).await.unwrap();
    let (run, queued) = engine
        .request_resync("m", Selection::All, false)
        .await
        .unwrap();
    assert_eq!(queued, 2000);
    settle(&engine).await;

    let summary = engine.run_summary(&run).await.unwrap();
    assert_eq!(summary.created, 2000, "{summary:?}");
    let calls = calls(erp.path());
    let of = |op: &str| -> Vec<usize> {
        calls
            .iter()
            .filter(|(o, _)| o == op)
            .map(|(_, n)| *n)
            .collect()
    };
    let (lookups, creates_) = (of("lookup-bills"), of("create-bills"));
    assert!(
        lookups.len() <= 40 && creates_.len() <= 40,
        "{} lookup calls and {} create calls for 2,000 documents",
        lookups.len(),
        creates_.len()
    );
    assert!(
        lookups.iter().chain(&creates_).all(|n| *n <= 50),
        "a call carried more than the connector's 50 items: {calls:?}"
    );
    assert_eq!(lookups.iter().sum::<usize>(), 2000);
    assert_eq!(creates_.iter().sum::<usize>(), 2000);
    let made = creates(erp.path(), "bill");
    assert_eq!(made.len(), 2000, "an entry for every document");
    assert!(made.iter().all(|n| *n == 1), "no document has two entries");
    let stats = &engine.stats;
    assert!(
        stats
            .plugin_calls
            .load(std::sync::atomic::Ordering::Relaxed)
            <= 80,
        "the engine counted more plugin calls than the connector saw"
    );
}

/// Issue 10: one batch of updates with mixed answers (most updated, one
/// booked, one rejected, one the ERP lost, one changed meanwhile): each
/// item gets its own outcome, log line and attention item; the others are
/// unaffected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn l1_l2_each_item_of_a_mixed_batch_gets_its_own_outcome_log_line_and_attention() {
    let (engine, mut c) = scripted_engine("acme", &[]).await;
    let ids: Vec<String> = (0..10).map(|i| format!("d{i}")).collect();
    let batch = |amount: &str| serde_json::json!({"documents": ids.iter().map(|d| doc_json("acme", d, "approved", amount)).collect::<Vec<_>>()});
    import(&engine, batch("10.00")).await.unwrap();
    settle(&engine).await;
    for d in &ids {
        let log = engine.log_of("acme", d, None).await.unwrap();
        assert_eq!(log.last().unwrap().outcome, "created", "{d}: {log:?}");
    }

    // The same ten change; the ERP answers each update differently.
    for (op, answer) in [
        ("update-bill:d3", "booked"),
        ("update-bill:d4", "validation"),
        ("update-bill:d5", "not-found"),
        ("update-bill:d6", "conflict"),
        ("lookup-bill:d6", "found"),
    ] {
        c.settings.insert(op.into(), answer.into());
    }
    engine.put_connection(c.clone()).await.unwrap();
    import(&engine, batch("12.00")).await.unwrap();
    settle(&engine).await;

    let last = |d: &str| {
        let engine = engine.clone();
        let d = d.to_string();
        async move { engine.log_of("acme", &d, None).await.unwrap() }
    };
    // The ten updates went out together.
    let d0 = last("d0").await;
    let update = d0.last().unwrap();
    assert_eq!(update.outcome, "updated", "{d0:?}");
    assert!(
        update
            .operations
            .iter()
            .any(|o| o.result.contains("one of 10 items in call")),
        "{:?}",
        update.operations
    );
    for d in ["d0", "d1", "d2", "d7", "d8", "d9"] {
        assert_eq!(last(d).await.last().unwrap().outcome, "updated", "{d}");
    }
    assert_eq!(last("d3").await.last().unwrap().outcome, "skipped_booked");
    let d4 = last("d4").await;
    assert_eq!(d4.last().unwrap().outcome, "failed");
    assert!(
        d4.last()
            .unwrap()
            .error
            .as_deref()
            .unwrap_or_default()
            .contains("scripted validation for update-bill"),
        "{d4:?}"
    );
    // The ERP lost d5's entry: it is created again.
    assert_eq!(last("d5").await.last().unwrap().outcome, "created");
    // d6 changed meanwhile each time: retried on its own until it gave up.
    let d6 = last("d6").await;
    assert!(
        d6.iter().filter(|r| r.outcome == "retrying").count() >= 1,
        "{d6:?}"
    );
    let attention = engine.attention(Some("s")).await.unwrap();
    let mut flagged: Vec<&str> = attention.iter().map(|a| a.document_id.as_str()).collect();
    flagged.sort();
    assert_eq!(flagged, ["d4", "d6"], "{attention:?}");
    // Each document's log line carries its own key, not its batch-mates'.
    for d in ["d0", "d4"] {
        let log = last(d).await;
        let keys = logged_keys(&log[log.len() - 1..], "update-bill");
        assert_eq!(keys.len(), 1, "{d}: {keys:?} {:#?}", log.last());
    }
}

/// Issue 10 item 2: a plugin built for contract 0.1.0 (from
/// `wit/since_v0.1.0/` alone) still syncs bills and payments through the
/// engine, one item a call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p5_a_plugin_built_for_contract_0_1_still_syncs() {
    let engine = engine();
    engine.add_tenant("acme").await.unwrap();
    let erp = tempfile::tempdir().unwrap();
    engine
        .put_connection(connection("old", "acme", LEGACY, Some(erp.path())))
        .await
        .unwrap();
    let mut pay = payment_json("acme", "p1", "d1", "10.00");
    pay["disbursement_status"] = "funding_complete".into();
    import(
        &engine,
        serde_json::json!({"documents": [doc_json("acme", "d1", "approved", "10.00"), doc_json("acme", "d2", "approved", "5.00")],
            "payments": [pay]}),
    )
    .await
    .unwrap();
    settle(&engine).await;
    for (file, id) in [
        ("bill-d1", "L-bill-d1"),
        ("bill-d2", "L-bill-d2"),
        ("payment-p1", "L-payment-p1"),
    ] {
        let text = std::fs::read_to_string(erp.path().join(file)).unwrap();
        assert!(text.starts_with(&format!("{id} 1 ")), "{file}: {text}");
    }
    // A change updates the entry (version 2).
    import(
        &engine,
        serde_json::json!({"documents": [doc_json("acme", "d2", "approved", "6.00")]}),
    )
    .await
    .unwrap();
    settle(&engine).await;
    let log = engine.log_of("acme", "d2", None).await.unwrap();
    assert_eq!(log.last().unwrap().outcome, "updated", "{log:?}");
    assert!(
        !log.last()
            .unwrap()
            .operations
            .iter()
            .any(|o| o.result.contains("items in call")),
        "a 0.1 plugin gets one item a call"
    );
    let text = std::fs::read_to_string(erp.path().join("bill-d2")).unwrap();
    assert!(text.starts_with("L-bill-d2 2 "), "{text}");
    assert!(engine.attention(Some("old")).await.unwrap().is_empty());
}

/// P6: a plugin that answers another number of results than the items it
/// was given faults that call, and every item of it is retried on its own
/// terms; nothing of the answer is guessed at or stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p6_a_batch_answered_with_the_wrong_count_is_a_plugin_fault() {
    use ledgerbridge::runtime::{CallError, Item, Operation, PluginFault};
    let plugin = load(HOSTILE).await;
    for mode in ["too-few-results", "too-many-results"] {
        let sandbox = ledgerbridge::runtime::Sandbox {
            settings: vec![("mode".into(), mode.into())],
            ..Default::default()
        };
        let items = (0..3)
            .map(|i| Item {
                key: format!("k{i}"),
                operation: Operation::LookupBill {
                    bill: sample_bill(&format!("d{i}")),
                    known_id: None,
                },
            })
            .collect();
        let out = runtime().call_batch(&plugin, &sandbox, items).await;
        match &out.result {
            Err(CallError::Fault(PluginFault::Contract(m))) => {
                assert!(m.contains("results for 3 items"), "{mode}: {m}")
            }
            other => panic!("{mode}: {other:?}"),
        }
        assert!(
            out.logs
                .iter()
                .any(|l| l.message.contains("broke the contract")),
            "{mode}: the fault is in the call's log: {:?}",
            out.logs
        );
    }
}

/// R2: a connection runs by the limits its connector states for the ERP,
/// which its own `limits` may lower, never raise; `status` shows them.
#[tokio::test]
async fn r2_a_connection_runs_by_its_connectors_limits_and_may_only_lower_them() {
    let engine = engine();
    engine.add_tenant("acme").await.unwrap();
    let erp = tempfile::tempdir().unwrap();
    let mut c = connection("m", "acme", MINTING, Some(erp.path()));
    let limits = |c: &ledgerbridge::model::Connection| {
        let engine = engine.clone();
        let c = c.clone();
        async move {
            engine.put_connection(c).await.unwrap();
            let l = engine.status(Some("acme")).await.unwrap().remove(0).limits;
            (l.calls_at_once, l.calls_per_minute)
        }
    };
    // The minting connector states 8 at once and no minute's limit.
    assert_eq!(limits(&c).await, (Some(8), None));
    c.limits.calls_at_once = Some(16);
    assert_eq!(limits(&c).await, (Some(8), None), "raised past the ERP's");
    c.limits.calls_at_once = Some(2);
    c.limits.calls_per_minute = Some(30);
    assert_eq!(limits(&c).await, (Some(2), Some(30)));
}

/// The SDK's batch default (a connector that implements only single
/// items): each item is sent with its own key; once the ERP throttles, the
/// items after it are not sent (each would spend a call and fail the same
/// way) and answer the same `rate-limited`, to be retried.
#[tokio::test]
async fn r5_the_sdk_loop_stops_a_batch_at_the_first_throttle() {
    use ledgerbridge::runtime::bindings::ConnectorError;
    use ledgerbridge::runtime::{CallError, Item, Operation, Reply};
    let plugin = load(SCRIPTED).await;
    let sandbox = ledgerbridge::runtime::Sandbox {
        settings: vec![("create-bill:d1".into(), "rate-limited".into())],
        ..Default::default()
    };
    let items = (0..4)
        .map(|i| Item {
            key: format!("key-{i}"),
            operation: Operation::CreateBill {
                bill: sample_bill(&format!("d{i}")),
            },
        })
        .collect();
    let out = runtime().call_batch(&plugin, &sandbox, items).await;
    let results = out.result.expect("a result per item");
    assert!(matches!(results[0], Ok(Reply::Entry(_))), "{results:?}");
    for r in &results[1..] {
        assert!(
            matches!(r, Err(CallError::Connector(ConnectorError::RateLimited(_)))),
            "{results:?}"
        );
    }
    let sent: Vec<&str> = out
        .logs
        .iter()
        .filter_map(|l| l.message.strip_prefix("create-bill key "))
        .collect();
    assert_eq!(
        sent,
        ["key-0", "key-1"],
        "each item's own key, none after the throttle"
    );
}

/// A plugin that faults on a batch (here: it traps on one item's data)
/// does not drag that batch's other items down: they go again one by one,
/// and only the item that causes the fault fails, is retried on its own
/// and ends in Requires attention.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p7_a_fault_on_one_items_data_fails_that_item_alone() {
    let (engine, _) = scripted_engine("acme", &[("panic-on", "d2")]).await;
    let ids = ["d0", "d1", "d2", "d3", "d4"];
    import(
        &engine,
        serde_json::json!({"documents": ids.iter().map(|d| doc_json("acme", d, "approved", "10.00")).collect::<Vec<_>>()}),
    )
    .await
    .unwrap();
    settle(&engine).await;
    for d in ["d0", "d1", "d3", "d4"] {
        let log = engine.log_of("acme", d, None).await.unwrap();
        assert_eq!(log.last().unwrap().outcome, "created", "{d}: {log:?}");
        assert!(
            log[0]
                .plugin_log
                .to_string()
                .contains("scripted panic on d2")
                || log[0].plugin_log.to_string().contains("crashed"),
            "{d}: the batch's fault shows in its log: {}",
            log[0].plugin_log
        );
    }
    let attention = engine.attention(Some("s")).await.unwrap();
    let flagged: Vec<&str> = attention.iter().map(|a| a.document_id.as_str()).collect();
    assert_eq!(flagged, ["d2"], "{attention:?}");
}

/// D2 after a fault: the ERP made a batch's entries, then the plugin
/// trapped before answering. The items go again one by one, each looked up
/// first, so none is created twice, even by a connector that keys creates
/// by the call's key (an ERP with one key per request).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d2_a_fault_after_the_erp_made_a_batch_duplicates_nothing() {
    let engine = engine();
    engine.add_tenant("acme").await.unwrap();
    let erp = tempfile::tempdir().unwrap();
    let mut c = connection("m", "acme", MINTING, Some(erp.path()));
    c.settings.insert("dedupe".into(), "call".into());
    c.settings
        .insert("trap-after-batch-create".into(), "yes".into());
    engine.put_connection(c).await.unwrap();
    import_all(&engine, docs("acme", "d", 5)).await;
    settle(&engine).await;
    let made = creates(erp.path(), "bill");
    assert_eq!(made, [1, 1, 1, 1, 1], "one entry each, none twice");
    for i in 0..5 {
        let log = engine
            .log_of("acme", &format!("d{i:05}"), None)
            .await
            .unwrap();
        assert_eq!(log.last().unwrap().outcome, "created", "{log:?}");
    }
}

/// R2: a group's batches go out one at a time, so a connection of one
/// call at once never has two calls in flight, even when a group's jobs
/// need different operations in the same round (updates of known entries
/// beside lookups of new ones).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r2_a_groups_calls_go_out_one_at_a_time() {
    let engine = engine();
    engine.add_tenant("acme").await.unwrap();
    let erp = tempfile::tempdir().unwrap();
    let mut c = connection("m", "acme", MINTING, Some(erp.path()));
    c.limits.calls_at_once = Some(1);
    engine.put_connection(c).await.unwrap();
    import_all(&engine, docs("acme", "a", 5)).await;
    settle(&engine).await;
    // Five known entries change, five new documents come.
    let mut changed = docs("acme", "a", 5);
    for d in &mut changed {
        d["due_date"] = "2026-12-24".into();
    }
    changed.extend(docs("acme", "b", 5));
    import_all(&engine, changed).await;
    settle(&engine).await;
    let calls = std::fs::read_to_string(erp.path().join("calls")).unwrap();
    let mut open = 0;
    for line in calls.lines() {
        if line.starts_with("end ") {
            open -= 1;
        } else {
            open += 1;
            assert_eq!(open, 1, "two calls at once:\n{calls}");
        }
    }
    assert!(calls.contains("update-bills"), "{calls}");
}

/// P6: an update answered with another entry than the one sent would
/// rewire the host's record to another bill: that item's plugin fault, its
/// batch-mate unaffected.
#[tokio::test]
async fn p6_an_update_answered_with_another_entry_is_a_plugin_fault() {
    use ledgerbridge::runtime::bindings::{Entry, EntryState};
    use ledgerbridge::runtime::{CallError, Item, Operation, PluginFault, Reply};
    let plugin = load(SCRIPTED).await;
    let sandbox = ledgerbridge::runtime::Sandbox {
        settings: vec![("update-bill:d1".into(), "another-id".into())],
        ..Default::default()
    };
    let update = |d: &str| Item {
        key: format!("k-{d}"),
        operation: Operation::UpdateBill {
            entry: Entry {
                id: format!("E-{d}"),
                version: Some("1".into()),
                state: EntryState::Open,
                total: None,
            },
            bill: sample_bill(d),
        },
    };
    let out = runtime()
        .call_batch(&plugin, &sandbox, vec![update("d0"), update("d1")])
        .await;
    let results = out.result.expect("a result per item");
    assert!(
        matches!(&results[0], Ok(Reply::Entry(e)) if e.id == "E-d0"),
        "{results:?}"
    );
    assert!(
        matches!(&results[1], Err(CallError::Fault(PluginFault::Contract(m))) if m.contains("E-d1-other")),
        "{results:?}"
    );
}
