//! Runs one job: reads what it needs, checks the connection can run it,
//! maps the document for the connection, and brings each of its entries in
//! line (`m3`): the bill entry, or the entry of each payment
//! due (with its check number). What it decided is stored by the engine in
//! one transaction.

use super::Engine;
use super::attempt::Attempt;
use super::batcher::{Batcher, Setup};
use super::checks::assign_check_number;
use super::convert::blank;
use super::due::{not_due_reason, not_wanted_reason, payments_to_sync};
use super::keys;
use super::m3::{Content, EntrySync, Subject};
use super::mapping;
use super::outcome::{Failure, conclude, failed, finished, skipped};
use crate::model::{PaymentMethod, Target};
use crate::runtime::bindings as wit;
use crate::runtime::{CallError, describe_connector_error};
use crate::store::{FinishedJob, Job, JobContext, JobOutcome, NewJob, now_ms};

/// What the executor decided.
pub(super) enum Step {
    Finished(Box<FinishedJob>),
    /// A payment waits for its bill (A5).
    WaitForBill(NewJob),
}

impl From<FinishedJob> for Step {
    fn from(f: FinishedJob) -> Step {
        Step::Finished(Box::new(f))
    }
}

/// Runs `job` from what the store holds for it (`ctx`), its calls going
/// out with its group's (`batcher`), and decides its outcome.
pub(super) async fn run<'e>(
    engine: &'e Engine,
    job: &Job,
    ctx: JobContext,
    batcher: &Batcher<'e>,
) -> anyhow::Result<Step> {
    let Some(conn) = ctx.connection else {
        return Ok(failed(
            job,
            format!("connection {} no longer exists", job.connection_id),
            "Nothing to do.",
        )
        .into());
    };
    if !conn.enabled {
        let mut f = finished(job, JobOutcome::Failed);
        f.error = Some(format!("not synced: connection {} is disabled", conn.id));
        return Ok(f.into());
    }
    let Some(doc) = ctx.document else {
        return Ok(failed(
            job,
            format!("document {} is not recorded", job.document_id),
            "Import the document, then re-sync.",
        )
        .into());
    };
    // A1, M1-M3: unless the connection syncs before approval, a document
    // that is not approved never gets a bill entry, on any path. Decided
    // here, on the document as it is now, so every path obeys it.
    if !super::policy::bill_wanted(&conn, &doc) && job.target == Target::Bill {
        return Ok(skipped(job, not_wanted_reason(&conn, &doc)).into());
    }
    let plugin = match engine.connectors.plugin(&conn).await {
        Ok(p) => p,
        Err(e) => {
            return Ok(super::outcome::plugin_unavailable(
                &engine.retry,
                job,
                format!(
                    "the connector plugin `{}` cannot be loaded: {e:#}",
                    conn.plugin
                ),
                "Fix or replace the connection's plugin, then re-sync.",
            )
            .into());
        }
    };
    if let Err(m) = engine.check_grant_now(&conn) {
        return Ok(failed(
            job,
            m,
            "Give the connection a directory of its own, away from the host's store, cache and plugin files, and run workers with the store and cache the connection was added with.",
        )
        .into());
    }
    let limits = engine.limits_of(&conn.plugin, &conn.limits);
    let sandbox = match super::connectors::sandbox(&conn, &limits) {
        Ok(mut s) => {
            s.budget = Some(crate::runtime::Budget(engine.budgets.of(&conn.id, &limits)));
            s
        }
        Err(e) => {
            return Ok(failed(
                job,
                format!("the connection's settings are invalid: {e}"),
                "Fix the connection's settings.",
            )
            .into());
        }
    };
    let mut attempt = Attempt {
        engine,
        job,
        setup: batcher.setup(Setup {
            connection: conn.id.clone(),
            plugin,
            sandbox,
            fingerprint: serde_json::to_string(&conn).unwrap_or_default(),
            oauth2: conn.oauth2.clone(),
            limits,
        }),
        batcher,
        operations: Vec::new(),
        logs: Vec::new(),
    };
    let mut machine = EntrySync::for_job(job);
    let mut results = Vec::new();
    let mut exports = Vec::new();
    match job.target {
        Target::Bill => {
            let subject = match mapping::bill(&doc, &conn) {
                Ok(bill) => Ok(Subject {
                    target: Target::Bill,
                    subject_id: doc.id.clone(),
                    hash: keys::content_hash(&keys::canonical_bill(&bill)),
                    content: Content::Bill(bill),
                }),
                Err(m) => Err(Failure::Mapping(m)),
            };
            let row = ctx.bill_entry;
            results.push(match subject {
                Ok(s) => {
                    let row = row.unwrap_or_else(|| blank(&conn, Target::Bill, &doc.id, &doc.id));
                    machine.run(&mut attempt, &s, row, true).await
                }
                Err(f) => Err(f),
            });
        }
        Target::Payment => {
            let due = payments_to_sync(ctx.payments.clone(), &doc, &conn);
            if due.is_empty() {
                return Ok(skipped(job, not_due_reason(&ctx.payments)).into());
            }
            let Some(bill_id) = ctx.bill_entry.as_ref().and_then(|e| e.entry_id.clone()) else {
                return Ok(Step::WaitForBill(NewJob {
                    connection_id: conn.id.clone(),
                    tenant_id: doc.tenant_id.clone(),
                    document_id: doc.id.clone(),
                    target: Target::Bill,
                    trigger: job.trigger,
                    force: false,
                    due_at: now_ms(),
                    run_id: job.run_id.clone(),
                    // The bill goes ahead with its payment's priority.
                    priority: job.priority,
                }));
            };
            let capabilities = attempt.setup.plugin.descriptor.capabilities;
            let can_update = capabilities.contains(wit::Capabilities::UPDATE_PAYMENTS);
            let ask_erp = capabilities.contains(wit::Capabilities::CHECK_NUMBERS_IN_USE);
            let mut entries = ctx.payment_entries;
            for mut p in due {
                let mut mapped = mapping::payment(&p, &doc, &bill_id, &conn);
                // C1, C3: a check gets its number when it is funded, skipping
                // any the ERP says it already uses.
                if let Ok(wp) = &mut mapped
                    && p.method == PaymentMethod::Check
                    && p.check_number.is_none()
                {
                    match assign_check_number(&mut attempt, &p, &wp.bank_account, ask_erp).await {
                        Ok(n) => {
                            p.check_number = Some(n);
                            wp.check_number = Some(n);
                        }
                        Err(f) => {
                            results.push(Err(f));
                            continue;
                        }
                    }
                }
                let subject = mapped.map(|payment| Subject {
                    target: Target::Payment,
                    subject_id: p.id.clone(),
                    hash: keys::content_hash(&keys::canonical_payment(&payment)),
                    content: Content::Payment(payment),
                });
                let row = entries.remove(&p.id);
                let result = match subject {
                    Ok(s) => {
                        let row =
                            row.unwrap_or_else(|| blank(&conn, Target::Payment, &p.id, &doc.id));
                        machine.run(&mut attempt, &s, row, can_update).await
                    }
                    Err(m) => Err(Failure::Mapping(m)),
                };
                // L3: what the ERP rejected is listed in Failed to export until
                // an export succeeds; a check number it already uses is never
                // issued again (C3).
                match &result {
                    Ok(_) => exports.push((p.id.clone(), None)),
                    Err(Failure::Call(CallError::Connector(c))) => {
                        // Only the number this payment was sent with can be
                        // the one the ERP rejected; any other a connector
                        // names is not believed (it may be another's).
                        if let wit::ConnectorError::DuplicateCheckNumber(d) = c
                            && p.check_number == Some(d.check_number)
                        {
                            engine
                                .store
                                .mark_check_rejected(
                                    &doc.tenant_id,
                                    &p.funding_account,
                                    d.check_number,
                                )
                                .await?;
                        }
                        if matches!(
                            c,
                            wit::ConnectorError::DuplicateCheckNumber(_)
                                | wit::ConnectorError::Validation(_)
                        ) {
                            exports.push((p.id.clone(), Some(describe_connector_error(c))));
                        }
                    }
                    Err(Failure::Mapping(m)) => {
                        exports.push((p.id.clone(), Some(format!("{}: {}", m.field, m.message))))
                    }
                    Err(Failure::Call(_)) => {}
                    Err(Failure::Host(_)) => {}
                }
                results.push(result);
            }
        }
    }
    // The host's own failure: nothing is concluded; the job runs again.
    if let Some(pos) = results
        .iter()
        .position(|r| matches!(r, Err(Failure::Host(_))))
        && let Err(Failure::Host(e)) = results.swap_remove(pos)
    {
        return Err(e.context("the host could not record the sync"));
    }
    let plugin_name = attempt.setup.plugin.descriptor.name.clone();
    let version = crate::model::PluginVersion::of(&attempt.setup.plugin);
    let mut finished = conclude(
        &engine.retry,
        job,
        &plugin_name,
        attempt.operations,
        attempt.logs,
        results,
    );
    finished.failed_exports = exports;
    // Every operation of one attempt ran on this one version (a job holds
    // its plugin from start to end; a reload meanwhile does not touch it).
    if !finished.operations.is_empty() {
        finished.plugin = Some(version);
    }
    Ok(finished.into())
}
