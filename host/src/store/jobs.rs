//! The durable job queue: enqueue (coalescing), claim (with a lease), finish
//! (the outcome and everything it changes, in one transaction), recovery of
//! jobs whose worker died.

use super::rows::{
    Attention, AttentionChange, AttentionKind, BillFacts, FinishedJob, Job, JobOutcome, JobState,
    NewJob, PaymentWait, Priority, RunSummary, WaitingPayments,
};
use super::{Store, now_ms};
use super::{exec, query_row};
use crate::model::{Target, Trigger};
use rusqlite::{OptionalExtension, params};

/// Queues `job`, coalescing with a queued job for the same connection,
/// document and target (D1: events delivered twice make one sync). Returns
/// whether a new sync was queued (`false`: merged into a queued one).
pub(super) fn enqueue_in(db: &rusqlite::Connection, job: &NewJob) -> anyhow::Result<bool> {
    let queued = query_row(
        db,
        "SELECT 1 FROM jobs WHERE state = 'queued' AND connection_id = ?1 AND document_id = ?2 AND target = ?3",
        params![job.connection_id, job.document_id, job.target.as_str()],
        |_| Ok(()),
    )
    .optional()?
    .is_some();
    exec(db,
        "INSERT INTO jobs (connection_id, tenant_id, document_id, target, trigger, force, state, due_at, run_id,
           created_at, priority, carries_event)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'queued', ?7, ?8, ?9, ?10, ?11)
         ON CONFLICT (connection_id, document_id, target) WHERE state = 'queued' DO UPDATE SET
           trigger = excluded.trigger,
           carries_event = carries_event OR excluded.carries_event,
           force = force OR excluded.force,
           due_at = MIN(due_at, excluded.due_at),
           run_id = COALESCE(excluded.run_id, run_id),
           priority = MIN(priority, excluded.priority)",
        params![
            job.connection_id,
            job.tenant_id,
            job.document_id,
            job.target.as_str(),
            job.trigger.as_str(),
            job.force,
            job.due_at,
            job.run_id,
            now_ms(),
            job.priority.as_i64(),
            !matches!(job.trigger, Trigger::Manual | Trigger::Bulk)
        ],
    )?;
    Ok(!queued)
}

pub(super) fn job_from_row(r: &rusqlite::Row) -> rusqlite::Result<Job> {
    let target: String = r.get(4)?;
    let trigger: String = r.get(5)?;
    Ok(Job {
        id: r.get(0)?,
        connection_id: r.get(1)?,
        tenant_id: r.get(2)?,
        document_id: r.get(3)?,
        target: Target::parse(&target).unwrap_or(Target::Bill),
        trigger: Trigger::parse(&trigger).unwrap_or(Trigger::Retry),
        force: r.get(6)?,
        attempts: r.get::<_, i64>(7)? as u32,
        run_id: r.get(8)?,
        lease_owner: r.get(9)?,
        priority: Priority::from_i64(r.get(10)?),
    })
}

pub(super) const JOB_COLUMNS: &str = "id, connection_id, tenant_id, document_id, target, trigger, force, attempts, run_id, COALESCE(lease_owner, ''), priority";

impl Store {
    /// Queues jobs (coalescing), in one transaction. Returns how many new
    /// syncs were queued (the rest merged into syncs already queued).
    pub async fn enqueue(&self, jobs: Vec<NewJob>) -> anyhow::Result<usize> {
        self.with(move |db| {
            let tx = db.savepoint()?;
            let mut new = 0;
            for j in &jobs {
                new += usize::from(enqueue_in(&tx, j)?);
            }
            tx.commit()?;
            Ok(new)
        })
        .await
    }

    /// Records a job that is decided before it runs (a skip, with its
    /// reason), so a run has one result per document and target (M4).
    pub async fn record_decided(
        &self,
        jobs: Vec<(NewJob, JobOutcome, String)>,
    ) -> anyhow::Result<()> {
        self.with(move |db| {
            let tx = db.savepoint()?;
            let now = now_ms();
            for (j, outcome, reason) in &jobs {
                exec(&tx,
                    "INSERT INTO jobs (connection_id, tenant_id, document_id, target, trigger, force, state, due_at,
                       run_id, outcome, error, created_at, finished_at, priority)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'done', ?7, ?8, ?9, ?10, ?7, ?7, ?11)",
                    params![j.connection_id, j.tenant_id, j.document_id, j.target.as_str(), j.trigger.as_str(),
                        j.force, now, j.run_id, outcome.as_str(), reason, j.priority.as_i64()],
                )?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// Registers a worker (a fresh unique id) with its first heartbeat.
    pub async fn register_worker(&self, id: &str, label: &str) -> anyhow::Result<()> {
        let (id, label) = (id.to_string(), label.to_string());
        self.with(move |db| {
            let now = now_ms();
            exec(
                db,
                "INSERT INTO workers (id, label, started_at, heartbeat_at) VALUES (?1, ?2, ?3, ?3)
                 ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at",
                params![id, label, now],
            )?;
            Ok(())
        })
        .await
    }

    /// A worker's heartbeat: it lives, and still runs `jobs`, whose leases
    /// run until `lease_until`. Jobs it no longer names (dropped after a
    /// failure) keep their old lease, which runs out so another worker can
    /// take them back.
    pub async fn heartbeat(
        &self,
        worker: &str,
        jobs: Vec<i64>,
        lease_until: i64,
    ) -> anyhow::Result<()> {
        let worker = worker.to_string();
        self.with(move |db| {
            exec(db, "UPDATE workers SET heartbeat_at = ?2 WHERE id = ?1", params![worker, now_ms()])?;
            for id in jobs {
                exec(db,
                    "UPDATE jobs SET lease_until = ?3 WHERE id = ?1 AND lease_owner = ?2 AND state = 'running'",
                    params![id, worker, lease_until],
                )?;
            }
            Ok(())
        })
        .await
    }

    /// A worker stops cleanly.
    pub async fn deregister_worker(&self, worker: &str) -> anyhow::Result<()> {
        let worker = worker.to_string();
        self.with(move |db| {
            exec(db, "DELETE FROM workers WHERE id = ?1", [worker])?;
            Ok(())
        })
        .await
    }

    /// Puts a job this worker could not finish (the host failed, not the
    /// ERP) back in the queue, due at `due_at`, keeping its attempts.
    pub async fn release(&self, job: &Job, due_at: i64, why: &str) -> anyhow::Result<()> {
        let (id, owner, why) = (job.id, job.lease_owner.clone(), why.to_string());
        let (c, d, t) = (
            job.connection_id.clone(),
            job.document_id.clone(),
            job.target,
        );
        self.with(move |db| {
            let tx = db.savepoint()?;
            let queued: Option<i64> = query_row(&tx,
                "SELECT id FROM jobs WHERE state = 'queued' AND connection_id = ?1 AND document_id = ?2 AND target = ?3",
                params![c, d, t.as_str()], |r| r.get(0)).optional()?;
            if let Some(q) = queued {
                exec(&tx,
                    "UPDATE jobs SET run_id = COALESCE(run_id, (SELECT run_id FROM jobs WHERE id = ?1)),
                       priority = MIN(priority, (SELECT priority FROM jobs WHERE id = ?1)) WHERE id = ?2",
                    params![id, q])?;
                exec(&tx, "DELETE FROM jobs WHERE id = ?1 AND lease_owner = ?2 AND state = 'running'", params![id, owner])?;
            } else {
                exec(&tx,
                    "UPDATE jobs SET state = 'queued', lease_until = NULL, lease_owner = NULL, due_at = ?3, error = ?4
                     WHERE id = ?1 AND lease_owner = ?2 AND state = 'running'",
                    params![id, owner, due_at, why])?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// Takes back running jobs whose lease ran out: their worker died, or
    /// dropped them after a failure of its own. A job whose worker died
    /// (its heartbeat is older than `dead_after_ms`, or it is gone) while
    /// running it counts a crash; at `quarantine_after` crashes the job is
    /// failed and listed in Requires attention instead of being run again,
    /// so a job that takes its worker down cannot do it forever (P7).
    /// Returns how many jobs were taken back and how many quarantined.
    /// `notice(crashes)` is a quarantined job's Requires attention item, in
    /// the engine's words.
    pub async fn recover(
        &self,
        dead_after_ms: i64,
        quarantine_after: u32,
        notice: fn(i64) -> Attention,
    ) -> anyhow::Result<(usize, usize)> {
        self.with(move |db| {
            let tx = db.savepoint()?;
            let now = now_ms();
            let expired: Vec<(Job, bool, i64)> = {
                let mut stmt = tx.prepare_cached(&format!(
                    "SELECT {JOB_COLUMNS}, j.crashes,
                       NOT EXISTS (SELECT 1 FROM workers w WHERE w.id = j.lease_owner AND w.heartbeat_at >= ?2)
                     FROM jobs j WHERE state = 'running' AND (lease_until IS NULL OR lease_until < ?1)"
                ))?;
                let rows = stmt.query_map(params![now, now - dead_after_ms], |r| {
                    Ok((job_from_row(r)?, r.get::<_, bool>(12)?, r.get::<_, i64>(11)?))
                })?;
                rows.collect::<Result<_, _>>()?
            };
            let mut quarantined = 0;
            for (job, dead, crashes) in &expired {
                let crashes = crashes + i64::from(*dead);
                if *dead && crashes >= i64::from(quarantine_after) {
                    quarantined += 1;
                    quarantine(&tx, job, crashes, &notice(crashes), now)?;
                    continue;
                }
                // A newer event may have queued the same sync meanwhile: the
                // two coalesce, keeping the older job's run.
                let queued: Option<i64> = tx
                    .query_row(
                        "SELECT id FROM jobs WHERE state = 'queued' AND connection_id = ?1 AND document_id = ?2 AND target = ?3",
                        params![job.connection_id, job.document_id, job.target.as_str()],
                        |r| r.get(0),
                    )
                    .optional()?;
                if let Some(q) = queued {
                    exec(&tx,
                        "UPDATE jobs SET run_id = COALESCE((SELECT run_id FROM jobs WHERE id = ?1), run_id),
                           crashes = MAX(crashes, ?3), priority = MIN(priority, (SELECT priority FROM jobs WHERE id = ?1))
                         WHERE id = ?2",
                        params![job.id, q, crashes],
                    )?;
                    exec(&tx, "DELETE FROM jobs WHERE id = ?1", [job.id])?;
                } else {
                    exec(&tx,
                        "UPDATE jobs SET state = 'queued', lease_until = NULL, lease_owner = NULL, due_at = ?2,
                           crashes = ?3 WHERE id = ?1",
                        params![job.id, now, crashes],
                    )?;
                }
            }
            // Workers silent for long are gone; their jobs were taken above.
            exec(&tx, "DELETE FROM workers WHERE heartbeat_at < ?1", [now - dead_after_ms])?;
            tx.commit()?;
            Ok((expired.len(), quarantined))
        })
        .await
    }

    /// Stores everything a finished attempt changes, in one transaction: the
    /// job's new state, the entry, the log line, the attention item, and the
    /// payments waiting on a bill, each as `f` says (the engine decided;
    /// see `sync::finish`).
    /// Returns `false` when the job was no longer this worker's (its lease
    /// ran out and another worker took it): then only the log line is kept,
    /// and the other worker's run decides the outcome.
    pub async fn finish(&self, f: FinishedJob) -> anyhow::Result<bool> {
        self.with(move |db| finish(db, &f)).await
    }

    /// [`Store::finish`] for several jobs in one transaction (the jobs of
    /// one batch), each in a savepoint of its own, so one that cannot be
    /// stored rolls back alone: one result per job, in order.
    pub async fn finish_all(
        &self,
        finished: Vec<FinishedJob>,
    ) -> anyhow::Result<Vec<Result<bool, String>>> {
        self.with(move |db| {
            Ok(finished
                .iter()
                .map(|f| finish(db, f).map_err(|e| format!("{e:#}")))
                .collect())
        })
        .await
    }

    /// A payment job whose bill entry is missing (A5): gathers what is
    /// known of its bill job, lets `decide` choose, and carries that out, in
    /// one transaction: the payment waits (queueing `bill_job` if asked) or
    /// is blocked. Nothing happens when the job's lease was lost.
    pub async fn wait_for_bill(
        &self,
        payment_job: Job,
        bill_job: NewJob,
        decide: impl FnOnce(&BillFacts) -> PaymentWait + Send + 'static,
    ) -> anyhow::Result<()> {
        self.with(move |db| {
            let tx = db.savepoint()?;
            if !holds_lease(&tx, &payment_job)? {
                return Ok(());
            }
            let active: bool = tx
                .query_row(
                    "SELECT 1 FROM jobs WHERE connection_id = ?1 AND document_id = ?2 AND target = 'bill'
                       AND state IN ('queued', 'running')",
                    params![bill_job.connection_id, bill_job.document_id],
                    |_| Ok(()),
                )
                .optional()?
                .is_some();
            let failed_in_run: Option<String> = match &payment_job.run_id {
                Some(run) if !active => tx
                    .query_row(
                        "SELECT COALESCE(error, 'unknown error') FROM jobs WHERE run_id = ?1 AND connection_id = ?2
                           AND document_id = ?3 AND target = 'bill'
                           AND (state = ?4 OR outcome = ?5) ORDER BY id DESC LIMIT 1",
                        params![run, payment_job.connection_id, payment_job.document_id,
                            JobState::Failed.as_str(), JobOutcome::Skipped.as_str()],
                        |r| r.get(0),
                    )
                    .optional()?,
                _ => None,
            };
            let now = now_ms();
            match decide(&BillFacts { active, failed_in_run }) {
                PaymentWait::Block(a) => {
                    exec(&tx,
                        "UPDATE jobs SET state = ?2, outcome = ?3, lease_until = NULL, error = ?4,
                           finished_at = ?5 WHERE id = ?1",
                        params![payment_job.id, JobState::Blocked.as_str(), JobOutcome::Blocked.as_str(),
                            a.message, now],
                    )?;
                    log_line(&tx, &payment_job, now, &[], JobOutcome::Blocked.as_str(), None,
                        Some(&a.message), "[]", None)?;
                    set_attention(&tx, &payment_job.connection_id, &payment_job.tenant_id,
                        &payment_job.document_id, Target::Payment.as_str(), &a, now)?;
                }
                PaymentWait::Wait { queue_bill, reason, log_note } => {
                    if queue_bill {
                        enqueue_in(&tx, &bill_job)?;
                    } else {
                        // The bill queued already goes ahead with its
                        // payment's priority (R5: a funding-complete payment
                        // does not wait behind bulk work for its bill).
                        exec(&tx,
                            "UPDATE jobs SET priority = MIN(priority, ?3)
                             WHERE connection_id = ?1 AND document_id = ?2 AND target = 'bill' AND state = 'queued'",
                            params![bill_job.connection_id, bill_job.document_id, bill_job.priority.as_i64()],
                        )?;
                    }
                    exec(&tx,
                        "UPDATE jobs SET state = ?2, outcome = ?3, lease_until = NULL, error = ?4 WHERE id = ?1",
                        params![payment_job.id, JobState::Waiting.as_str(), JobOutcome::Waiting.as_str(), reason],
                    )?;
                    log_line(&tx, &payment_job, now, &[], JobOutcome::Waiting.as_str(), None,
                        Some(&log_note), "[]", None)?;
                }
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// Where a manual or bulk run stands.
    pub async fn run_summary(&self, run_id: &str) -> anyhow::Result<RunSummary> {
        let run = run_id.to_string();
        self.with(move |db| {
            let mut stmt = db.prepare_cached(
                "SELECT state, COALESCE(outcome, ''), COUNT(*) FROM jobs WHERE run_id = ?1 GROUP BY 1, 2",
            )?;
            let mut s = RunSummary::default();
            let rows = stmt.query_map([run], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?)))?;
            for row in rows {
                let (state, outcome, n) = row?;
                s.count(JobState::parse(&state), JobOutcome::parse(&outcome), n as usize);
            }
            Ok(s)
        })
        .await
    }

    /// Cancels a run (M2): its syncs not yet started (queued, waiting for
    /// their bill, or waiting to be retried) end as `cancelled`. Syncs under
    /// way finish; a sync that also carries an event (queued by one, or an
    /// event merged into it) goes on, since the change it carries would
    /// otherwise never reach the ERP. Returns how many were cancelled.
    pub async fn cancel_run(&self, run_id: &str) -> anyhow::Result<usize> {
        let run = run_id.to_string();
        self.with(move |db| {
            let n = exec(
                db,
                "UPDATE jobs SET state = 'done', outcome = ?2, error = 'the run was cancelled',
                   finished_at = ?3, lease_until = NULL, lease_owner = NULL
                 WHERE run_id = ?1 AND state IN ('queued', 'waiting') AND carries_event = 0",
                params![run, JobOutcome::Cancelled.as_str(), now_ms()],
            )?;
            Ok(n)
        })
        .await
    }

    /// Each job of a run: document, target, state, outcome, error.
    pub async fn run_results(
        &self,
        run_id: &str,
    ) -> anyhow::Result<Vec<(String, String, String, Option<String>, Option<String>)>> {
        let run = run_id.to_string();
        self.with(move |db| {
            let mut stmt = db.prepare_cached(
                "SELECT document_id, target, state, outcome, error FROM jobs
                 WHERE run_id = ?1 AND COALESCE(outcome, '') != ?2 ORDER BY document_id, target",
            )?;
            let rows = stmt.query_map(params![run, JobOutcome::Coalesced.as_str()], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    /// Whether any job is queued, whether any is running, and when the
    /// queued work can next be claimed: its earliest due time on a
    /// connection not paused then (a pause ends at `paused_until`).
    pub async fn pending(&self) -> anyhow::Result<(bool, bool, Option<i64>)> {
        self.with(|db| {
            let next: Option<i64> = query_row(
                db,
                "SELECT MIN(MAX(q.due, COALESCE(c.paused_until, 0)))
                 FROM (SELECT connection_id, MIN(due_at) AS due FROM jobs WHERE state = 'queued'
                       GROUP BY connection_id) q
                 LEFT JOIN connections c ON c.id = q.connection_id",
                [],
                |r| r.get(0),
            )?;
            let running: bool = query_row(
                db,
                "SELECT EXISTS (SELECT 1 FROM jobs WHERE state = 'running')",
                [],
                |r| r.get(0),
            )?;
            Ok((next.is_some(), running, next))
        })
        .await
    }
}

/// Sets a document's Requires attention item for `target` (L2).
fn set_attention(
    tx: &rusqlite::Connection,
    connection: &str,
    tenant: &str,
    document: &str,
    target: &str,
    a: &Attention,
    now: i64,
) -> anyhow::Result<()> {
    exec(tx,
        "INSERT INTO attention (connection_id, tenant_id, document_id, target, kind, message, hint, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT (connection_id, document_id, target) DO UPDATE SET
           kind = excluded.kind, message = excluded.message, hint = excluded.hint",
        params![connection, tenant, document, target, a.kind.as_str(), a.message, a.hint, now],
    )?;
    Ok(())
}

/// Whether `job` is still running under its worker's lease.
fn holds_lease(tx: &rusqlite::Connection, job: &Job) -> anyhow::Result<bool> {
    Ok(query_row(
        tx,
        "SELECT 1 FROM jobs WHERE id = ?1 AND state = 'running' AND lease_owner = ?2",
        params![job.id, job.lease_owner],
        |_| Ok(()),
    )
    .optional()?
    .is_some())
}

/// A line of the integration log (L1).
#[allow(clippy::too_many_arguments)]
pub(super) fn log_line(
    tx: &rusqlite::Connection,
    job: &Job,
    at: i64,
    operations: &[super::rows::LoggedOperation],
    outcome: &str,
    entry_id: Option<&str>,
    error: Option<&str>,
    plugin_log: &str,
    plugin: Option<&crate::model::PluginVersion>,
) -> anyhow::Result<()> {
    let plugin = plugin.map(serde_json::to_string).transpose()?;
    exec(tx,
        "INSERT INTO integration_log (tenant_id, connection_id, document_id, at, trigger, target, operations,
           outcome, entry_id, error, plugin_log, plugin)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        params![
            job.tenant_id, job.connection_id, job.document_id, at, job.trigger.as_str(), job.target.as_str(),
            serde_json::to_string(operations)?, outcome, entry_id, error, plugin_log, plugin
        ],
    )?;
    Ok(())
}

/// Fails a job that was running each time one of `crashes` workers stopped
/// without finishing it, and asks a person to look (P7) with `notice`.
fn quarantine(
    tx: &rusqlite::Connection,
    job: &Job,
    crashes: i64,
    notice: &Attention,
    now: i64,
) -> anyhow::Result<()> {
    exec(
        tx,
        "UPDATE jobs SET state = ?5, outcome = ?6, error = ?2, crashes = ?3, lease_until = NULL,
           finished_at = ?4 WHERE id = ?1",
        params![
            job.id,
            notice.message,
            crashes,
            now,
            JobState::Failed.as_str(),
            JobOutcome::Failed.as_str()
        ],
    )?;
    log_line(
        tx,
        job,
        now,
        &[],
        JobOutcome::Failed.as_str(),
        None,
        Some(&notice.message),
        "[]",
        None,
    )?;
    set_attention(
        tx,
        &job.connection_id,
        &job.tenant_id,
        &job.document_id,
        job.target.as_str(),
        notice,
        now,
    )?;
    Ok(())
}

/// Puts a document's waiting or blocked payment jobs back in the queue.
fn release_payments(
    tx: &rusqlite::Connection,
    connection: &str,
    document: &str,
    now: i64,
) -> anyhow::Result<()> {
    // The job that goes on keeps the best priority of those it stands for:
    // a funding-complete payment merged into bulk work is still one (R5).
    // Cached statements: every bill's outcome runs them.
    let best: Option<i64> = query_row(
        tx,
        "SELECT MIN(priority) FROM jobs WHERE connection_id = ?1 AND document_id = ?2 AND target = 'payment'
           AND state IN ('waiting', 'blocked')",
        params![connection, document],
        |r| r.get(0),
    )?;
    if best.is_none() {
        // No payment waits (most bills): nothing to release.
        return Ok(());
    }
    let queued: bool = query_row(
        tx,
        "SELECT 1 FROM jobs WHERE connection_id = ?1 AND document_id = ?2 AND target = 'payment' AND state = 'queued'",
        params![connection, document],
        |_| Ok(()),
    )
    .optional()?
    .is_some();
    if queued {
        // One queued payment job already covers the document's payments.
        exec(tx,
            "UPDATE jobs SET priority = MIN(priority, COALESCE(?3, priority))
             WHERE connection_id = ?1 AND document_id = ?2 AND target = 'payment' AND state = 'queued'",
            params![connection, document, best],
        )?;
        exec(tx,
            "UPDATE jobs SET state = ?4, outcome = ?5, finished_at = ?3
             WHERE connection_id = ?1 AND document_id = ?2 AND target = 'payment' AND state IN ('waiting', 'blocked')",
            params![connection, document, now, JobState::Done.as_str(), JobOutcome::Coalesced.as_str()],
        )?;
        return Ok(());
    }
    let ids: Vec<i64> = {
        let mut stmt = tx.prepare_cached(
            "SELECT id FROM jobs WHERE connection_id = ?1 AND document_id = ?2 AND target = 'payment'
               AND state IN ('waiting', 'blocked') ORDER BY id",
        )?;
        stmt.query_map(params![connection, document], |r| r.get(0))?
            .collect::<Result<_, _>>()?
    };
    for (i, id) in ids.iter().enumerate() {
        if i == 0 {
            exec(
                tx,
                "UPDATE jobs SET state = 'queued', due_at = ?2, error = NULL,
                   priority = MIN(priority, COALESCE(?3, priority)) WHERE id = ?1",
                params![id, now, best],
            )?;
        } else {
            exec(
                tx,
                "UPDATE jobs SET state = ?3, outcome = ?4, finished_at = ?2 WHERE id = ?1",
                params![
                    id,
                    now,
                    JobState::Done.as_str(),
                    JobOutcome::Coalesced.as_str()
                ],
            )?;
        }
    }
    exec(
        tx,
        "DELETE FROM attention WHERE connection_id = ?1 AND document_id = ?2 AND target = 'payment'
           AND kind = ?3",
        params![connection, document, AttentionKind::Blocked.as_str()],
    )?;
    Ok(())
}

/// Stores one finished attempt (see [`Store::finish`]).
fn finish(db: &mut rusqlite::Connection, f: &FinishedJob) -> anyhow::Result<bool> {
    let tx = db.savepoint()?;
    let now = now_ms();
    let job = &f.job;
    let target = job.target.as_str();
    if !holds_lease(&tx, job)? {
        log_line(
            &tx,
            job,
            now,
            &f.operations,
            "lease_lost",
            None,
            Some(
                "this attempt's outcome was discarded: the job's lease ran out and another worker took it",
            ),
            &f.plugin_log,
            f.plugin.as_ref(),
        )?;
        tx.commit()?;
        return Ok(false);
    }

    for (target, subject) in &f.forget {
        exec(
            &tx,
            "DELETE FROM entries WHERE connection_id = ?1 AND target = ?2 AND subject_id = ?3",
            params![job.connection_id, target, subject],
        )?;
    }
    for e in &f.entries {
        exec(&tx,
            "INSERT INTO entries (connection_id, target, subject_id, document_id, entry_id, version, state,
               content_hash, idempotency_key, booked, booked_reason, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
             ON CONFLICT (connection_id, target, subject_id) DO UPDATE SET
               entry_id = excluded.entry_id, version = excluded.version, state = excluded.state,
               content_hash = excluded.content_hash, idempotency_key = excluded.idempotency_key,
               booked = excluded.booked, booked_reason = excluded.booked_reason,
               updated_at = excluded.updated_at",
            params![
                e.connection_id, e.target, e.subject_id, e.document_id, e.entry_id, e.version,
                e.state, e.content_hash, e.idempotency_key, e.booked, e.booked_reason, now
            ],
        )?;
    }

    let state = f.outcome.state();
    let due_at = match state {
        JobState::Queued => f.retry_at.unwrap_or(now),
        _ => now,
    };
    let attempts = job.attempts as i64 + i64::from(f.attempted);
    if state == JobState::Queued {
        // A retry coalesces with a job queued meanwhile for the same sync.
        let queued: Option<i64> = tx
            .query_row(
                "SELECT id FROM jobs WHERE state = 'queued' AND connection_id = ?1 AND document_id = ?2 AND target = ?3",
                params![job.connection_id, job.document_id, target],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(q) = queued {
            exec(
                &tx,
                "UPDATE jobs SET due_at = MIN(due_at, ?2), attempts = MAX(attempts, ?3),
                   run_id = COALESCE(run_id, ?4), priority = MIN(priority, ?5) WHERE id = ?1",
                params![q, due_at, attempts, job.run_id, job.priority.as_i64()],
            )?;
            exec(&tx, "DELETE FROM jobs WHERE id = ?1", [job.id])?;
        } else {
            exec(
                &tx,
                "UPDATE jobs SET state = 'queued', due_at = ?2, attempts = ?3, lease_until = NULL,
                   trigger = 'retry', outcome = ?4, error = ?5 WHERE id = ?1",
                params![job.id, due_at, attempts, f.outcome.as_str(), f.error],
            )?;
        }
    } else {
        exec(&tx,
            "UPDATE jobs SET state = ?2, attempts = ?3, lease_until = NULL, outcome = ?4, error = ?5,
               finished_at = ?6 WHERE id = ?1",
            params![job.id, state.as_str(), attempts, f.outcome.as_str(), f.error, now],
        )?;
    }

    // The log line (L1).
    let entry_id = f.entries.iter().find_map(|e| e.entry_id.clone());
    log_line(
        &tx,
        job,
        now,
        &f.operations,
        f.outcome.as_str(),
        entry_id.as_deref(),
        f.error.as_deref(),
        &f.plugin_log,
        f.plugin.as_ref(),
    )?;

    // Requires attention (L2), as the engine decided.
    match &f.attention {
        AttentionChange::Set(a) => {
            set_attention(
                &tx,
                &job.connection_id,
                &job.tenant_id,
                &job.document_id,
                target,
                a,
                now,
            )?;
        }
        AttentionChange::Resolve => {
            exec(
                &tx,
                "DELETE FROM attention WHERE connection_id = ?1 AND document_id = ?2 AND target = ?3",
                params![job.connection_id, job.document_id, target],
            )?;
        }
        AttentionChange::Leave => {}
    }

    for (payment, error) in &f.failed_exports {
        super::payments::record_failed_export(
            &tx,
            &job.connection_id,
            &job.tenant_id,
            &job.document_id,
            payment,
            error.as_deref(),
        )?;
    }

    // A5: the payments waiting for this bill, as the engine decided.
    match &f.waiting_payments {
        WaitingPayments::Release => {
            release_payments(&tx, &job.connection_id, &job.document_id, now)?;
        }
        WaitingPayments::Block(a) => {
            let blocked = exec(&tx,
                "UPDATE jobs SET state = ?3, outcome = ?4, error = ?5, finished_at = ?6
                 WHERE connection_id = ?1 AND document_id = ?2 AND target = 'payment' AND state = ?7",
                params![job.connection_id, job.document_id, JobState::Blocked.as_str(),
                    JobOutcome::Blocked.as_str(), a.message, now, JobState::Waiting.as_str()],
            )?;
            if blocked > 0 {
                set_attention(
                    &tx,
                    &job.connection_id,
                    &job.tenant_id,
                    &job.document_id,
                    Target::Payment.as_str(),
                    a,
                    now,
                )?;
            }
        }
        WaitingPayments::Leave => {}
    }
    tx.commit()?;
    Ok(true)
}
