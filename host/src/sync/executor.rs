//! One job: the document as it is now, mapped for the connection, through
//! the plugin's lookup / create / update, following the three rules of M3,
//! with booked locks (B1-B3), deduplication (D1-D3) and the classification
//! of failures (R1, R3). Its outcome is stored in one transaction.

use super::Engine;
use super::keys::{self, digest, update_key};
use super::mapping::{self, MappingError};
use super::plain::{Verdict, verdict};
use crate::model::{
    Connection, Document, DocumentStatus, LimitOverrides, Payment, PaymentMethod, Target, Trigger,
};
use crate::runtime::bindings as wit;
use crate::runtime::{
    CallError, LogLine, Operation as Call, Plugin, Reply, Sandbox, describe_connector_error,
};
use crate::store::{
    Attention, AttentionChange, AttentionKind, EntryRow, FinishedJob, Job, JobOutcome, NewJob,
    Operation, now_ms,
};
use std::sync::Arc;
use std::time::Duration;

fn entry_state(s: wit::EntryState) -> &'static str {
    match s {
        wit::EntryState::Open => "open",
        wit::EntryState::Paid => "paid",
        wit::EntryState::Booked => "booked",
        wit::EntryState::Voided => "voided",
        wit::EntryState::Deleted => "deleted",
    }
}

fn to_wit(row: &EntryRow) -> wit::Entry {
    let state = match row.state.as_deref() {
        Some("paid") => wit::EntryState::Paid,
        Some("booked") => wit::EntryState::Booked,
        Some("voided") => wit::EntryState::Voided,
        Some("deleted") => wit::EntryState::Deleted,
        _ => wit::EntryState::Open,
    };
    wit::Entry {
        id: row.erp_id.clone().unwrap_or_default(),
        version: row.version.clone(),
        state,
        total: None,
    }
}

fn learn(row: &mut EntryRow, e: &wit::Entry, hash: Option<String>) {
    row.erp_id = Some(e.id.clone());
    row.version = e.version.clone();
    row.state = Some(entry_state(e.state).to_string());
    row.content_hash = hash;
}

/// Why a subject was not synced.
enum Failure {
    Call(CallError),
    Mapping(MappingError),
    /// The host itself failed (its store): not the ERP's fault nor the
    /// plugin's; the job is left to be run again.
    Host(anyhow::Error),
}

/// One entry to bring in line: a bill entry, or one payment's entry.
struct Subject {
    target: Target,
    subject_id: String,
    bill: Option<wit::Bill>,
    payment: Option<wit::Payment>,
    hash: String,
}

impl Subject {
    fn lookup(&self, known: Option<String>) -> Call {
        match (&self.bill, &self.payment) {
            (Some(b), _) => Call::LookupBill {
                bill: b.clone(),
                known_id: known,
            },
            (_, Some(p)) => Call::LookupPayment {
                payment: p.clone(),
                known_id: known,
            },
            _ => unreachable!("a subject is a bill or a payment"),
        }
    }
    fn create(&self) -> Call {
        match (&self.bill, &self.payment) {
            (Some(b), _) => Call::CreateBill { bill: b.clone() },
            (_, Some(p)) => Call::CreatePayment { payment: p.clone() },
            _ => unreachable!("a subject is a bill or a payment"),
        }
    }
    fn update(&self, entry: wit::Entry) -> Call {
        match (&self.bill, &self.payment) {
            (Some(b), _) => Call::UpdateBill {
                entry,
                bill: b.clone(),
            },
            (_, Some(p)) => Call::UpdatePayment {
                entry,
                payment: p.clone(),
            },
            _ => unreachable!("a subject is a bill or a payment"),
        }
    }
}

/// The calls of one attempt, with what they answered and logged.
struct Attempt<'a> {
    engine: &'a Engine,
    job: &'a Job,
    plugin: Arc<Plugin>,
    sandbox: Sandbox,
    operations: Vec<Operation>,
    logs: Vec<LogLine>,
    /// Lookups made so far in this attempt: each is a request of its own.
    lookups: u32,
    /// The connection's limits, for its call budget (R2).
    limits: LimitOverrides,
    /// Whether the next call is paid for (the claim paid for the first).
    prepaid: bool,
}

impl Attempt<'_> {
    /// A key for this attempt's next lookup: reads are distinct requests.
    fn lookup_key(&mut self, target: &str, subject: &str) -> String {
        self.lookups += 1;
        digest(&[
            &self.job.connection_id,
            target,
            subject,
            "lookup",
            &self.job.id.to_string(),
            &self.job.attempts.to_string(),
            &self.lookups.to_string(),
        ])
    }

    /// Makes one plugin call: every call goes through here. It first takes
    /// a call's share of the connection's budget (R2), waiting for one if
    /// need be; a `rate-limited` answer pauses the whole connection (R5).
    async fn call(&mut self, key: &str, op: Call) -> Result<Reply, CallError> {
        let name = op.name();
        let prepaid = std::mem::take(&mut self.prepaid);
        if let Err(wait) = self
            .engine
            .pace(&self.job.connection_id, &self.limits, prepaid)
            .await
        {
            let e = CallError::HeldBack(wait);
            self.note(name, format!("error: {e}"));
            return Err(e);
        }
        let started = std::time::Instant::now();
        let out = self
            .engine
            .runtime
            .call(&self.plugin, &self.sandbox, key, op)
            .await;
        let stats = &self.engine.stats;
        stats.plugin_ns.fetch_add(
            started.elapsed().as_nanos() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        stats
            .plugin_calls
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.logs.extend(out.logs);
        if let Err(CallError::Connector(wit::ConnectorError::RateLimited(r))) = &out.result {
            let after = r
                .retry_after_ms
                .map_or(self.engine.retry.base, Duration::from_millis)
                .min(MAX_RETRY_AFTER);
            let until = now_ms().saturating_add(after.as_millis() as i64);
            let reason = format!("the ERP answered rate-limited: {}", r.message);
            self.engine
                .pause(
                    &self.job.connection_id,
                    &self.limits,
                    until,
                    crate::store::PausedBy::Erp,
                    &reason,
                )
                .await;
        }
        let result = match &out.result {
            Ok(Reply::Found(None)) => "none".to_string(),
            Ok(Reply::Found(Some(e))) => format!("found {} ({})", e.id, entry_state(e.state)),
            Ok(Reply::Entry(e)) => format!(
                "ok: {} version {}",
                e.id,
                e.version.as_deref().unwrap_or("-")
            ),
            Ok(Reply::CheckNumbers(n)) => format!("{} in use", n.len()),
            Err(e) => format!("error: {e}"),
        };
        self.operations.push(Operation {
            operation: name.to_string(),
            result,
        });
        out.result
    }

    fn note(&mut self, what: &str, result: String) {
        self.operations.push(Operation {
            operation: what.to_string(),
            result,
        });
    }

    /// Brings one entry in line with the document (M3), starting from the
    /// host's record `row`.
    async fn sync(
        &mut self,
        s: &Subject,
        mut row: EntryRow,
        can_update: bool,
    ) -> Result<(JobOutcome, EntryRow, bool), Failure> {
        let conn = &self.job.connection_id;
        let target = s.target.as_str();
        let mut forgot = false;
        // B2: never update, never replace a booked entry.
        if row.booked {
            self.note(
                "skip",
                format!(
                    "not synced: the entry is booked in the ERP ({})",
                    row.booked_reason.as_deref().unwrap_or("booked")
                ),
            );
            return Ok((JobOutcome::SkippedBooked, row, false));
        }
        // M2, M3: a manual or bulk sync always asks the ERP whether the
        // entry exists; the content hash (D3) only skips an update of an
        // entry the lookup found. Automatic syncs trust the host's record
        // and learn of a deleted entry from the update's not-found.
        let manual = matches!(self.job.trigger, Trigger::Manual | Trigger::Bulk);
        let mut current = row.erp_id.as_ref().map(|_| to_wit(&row));
        if let Some(known) = row.erp_id.clone()
            && manual
        {
            let key = self.lookup_key(target, &s.subject_id);
            match self
                .call(&key, s.lookup(Some(known)))
                .await
                .map_err(Failure::Call)?
            {
                Reply::Found(Some(e)) if e.state == wit::EntryState::Booked => {
                    let hash = row.content_hash.clone();
                    learn(&mut row, &e, hash);
                    return Ok(self.lock(row, "the entry is booked in the ERP".into()));
                }
                Reply::Found(Some(e)) => {
                    let hash = row.content_hash.clone();
                    learn(&mut row, &e, hash);
                    current = Some(e);
                }
                Reply::Found(None) => {
                    self.note("forget", "the ERP no longer has this entry".into());
                    row.erp_id = None;
                    row.version = None;
                    row.content_hash = None;
                    forgot = true;
                    current = None;
                }
                Reply::Entry(_) | Reply::CheckNumbers(_) => {
                    return Err(Failure::Call(CallError::Connector(
                        wit::ConnectorError::Unavailable(
                            "the connector answered a lookup with something else".into(),
                        ),
                    )));
                }
            }
        }
        if let Some(entry) = current {
            // D3: the ERP has exactly this already.
            if !self.job.force && row.content_hash.as_deref() == Some(s.hash.as_str()) {
                self.note("skip", "unchanged since the last sync".into());
                return Ok((JobOutcome::Unchanged, row, forgot));
            }
            if !can_update {
                self.note(
                    "skip",
                    "the ERP cannot modify this entry; it was not replaced".into(),
                );
                return Ok((JobOutcome::Unchanged, row, forgot));
            }
            let key = update_key(
                conn,
                target,
                &s.subject_id,
                &s.hash,
                entry.version.as_deref(),
            );
            match self.call(&key, s.update(entry)).await {
                Ok(Reply::Entry(e)) => {
                    learn(&mut row, &e, Some(s.hash.clone()));
                    return Ok((JobOutcome::Updated, row, forgot));
                }
                Err(CallError::Connector(wit::ConnectorError::Booked(m))) => {
                    return Ok(self.lock(row, m));
                }
                Err(CallError::Connector(wit::ConnectorError::Conflict(_))) => {
                    // Stale version: read the entry again and update once more,
                    // as a new request with a key of its own (D2).
                    let lookup = self.lookup_key(target, &s.subject_id);
                    match self
                        .call(&lookup, s.lookup(row.erp_id.clone()))
                        .await
                        .map_err(Failure::Call)?
                    {
                        Reply::Found(Some(fresh)) => {
                            let key = update_key(
                                conn,
                                target,
                                &s.subject_id,
                                &s.hash,
                                fresh.version.as_deref(),
                            );
                            match self.call(&key, s.update(fresh)).await {
                                Ok(Reply::Entry(e)) => {
                                    learn(&mut row, &e, Some(s.hash.clone()));
                                    return Ok((JobOutcome::Updated, row, forgot));
                                }
                                Err(CallError::Connector(wit::ConnectorError::Booked(m))) => {
                                    return Ok(self.lock(row, m));
                                }
                                Err(e) => return Err(Failure::Call(e)),
                                Ok(_) => {}
                            }
                        }
                        _ => {
                            row.erp_id = None;
                            row.content_hash = None;
                            forgot = true;
                        }
                    }
                }
                // The ERP lost it (deleted there): rule 3, create it again.
                Err(CallError::Connector(wit::ConnectorError::NotFound(_))) => {
                    row.erp_id = None;
                    row.version = None;
                    row.content_hash = None;
                    forgot = true;
                }
                Err(e) => return Err(Failure::Call(e)),
                Ok(_) => {}
            }
        }
        // No entry known: look it up by the reference first (D2), so an
        // entry an earlier attempt created is found, never duplicated.
        let lookup_key = self.lookup_key(target, &s.subject_id);
        match self
            .call(&lookup_key, s.lookup(None))
            .await
            .map_err(Failure::Call)?
        {
            Reply::Found(Some(e)) if e.state == wit::EntryState::Booked => {
                learn(&mut row, &e, None);
                Ok(self.lock(row, "the entry is booked in the ERP".into()))
            }
            Reply::Found(Some(e)) => {
                let ours = row.intent_key.is_some();
                learn(&mut row, &e, None);
                if !can_update {
                    self.note(
                        "skip",
                        "found in the ERP, which cannot modify it; not replaced".into(),
                    );
                    return Ok((
                        if ours {
                            JobOutcome::Created
                        } else {
                            JobOutcome::Unchanged
                        },
                        row,
                        forgot,
                    ));
                }
                let key = update_key(conn, target, &s.subject_id, &s.hash, e.version.as_deref());
                match self.call(&key, s.update(e)).await {
                    Ok(Reply::Entry(e)) => {
                        learn(&mut row, &e, Some(s.hash.clone()));
                        // An entry our own earlier attempt created counts as created.
                        Ok((
                            if ours {
                                JobOutcome::Created
                            } else {
                                JobOutcome::Updated
                            },
                            row,
                            forgot,
                        ))
                    }
                    Err(CallError::Connector(wit::ConnectorError::Booked(m))) => {
                        Ok(self.lock(row, m))
                    }
                    Err(e) => Err(Failure::Call(e)),
                    Ok(_) => Err(Failure::Call(CallError::Connector(
                        wit::ConnectorError::Unavailable(
                            "the connector answered an update with something else".into(),
                        ),
                    ))),
                }
            }
            Reply::Found(None) => {
                // D2: the intent is stored before the ERP is called; a retry,
                // or a restart after a crash, reuses its key.
                // The same create (same content, no entry since) reuses its
                // key; any other create is a new request with a new key.
                let same =
                    row.erp_id.is_none() && row.content_hash.as_deref() == Some(s.hash.as_str());
                let key = match &row.intent_key {
                    Some(k) if same => k.clone(),
                    _ => digest(&[
                        conn,
                        target,
                        &s.subject_id,
                        "create",
                        &now_ms().to_string(),
                        &self.job.id.to_string(),
                    ]),
                };
                row.intent_key = Some(key.clone());
                row.content_hash = Some(s.hash.clone());
                self.engine
                    .store
                    .record_intent(row.clone(), self.job)
                    .await
                    .map_err(Failure::Host)?;
                match self.call(&key, s.create()).await {
                    Ok(Reply::Entry(e)) => {
                        learn(&mut row, &e, Some(s.hash.clone()));
                        Ok((JobOutcome::Created, row, forgot))
                    }
                    Err(CallError::Connector(wit::ConnectorError::Booked(m))) => {
                        Ok(self.lock(row, m))
                    }
                    Err(e) => Err(Failure::Call(e)),
                    Ok(_) => Err(Failure::Call(CallError::Connector(
                        wit::ConnectorError::Unavailable(
                            "the connector answered a create with something else".into(),
                        ),
                    ))),
                }
            }
            Reply::Entry(_) | Reply::CheckNumbers(_) => Err(Failure::Call(CallError::Connector(
                wit::ConnectorError::Unavailable(
                    "the connector answered a lookup with something else".into(),
                ),
            ))),
        }
    }

    /// B1, B2: records the lock; nothing is sent for this entry again.
    fn lock(&mut self, mut row: EntryRow, reason: String) -> (JobOutcome, EntryRow, bool) {
        self.note(
            "lock",
            format!("not synced: the entry is booked in the ERP ({reason})"),
        );
        row.booked = true;
        row.booked_reason = Some(reason);
        row.state = Some("booked".into());
        (JobOutcome::SkippedBooked, row, false)
    }
}

/// What the executor decided.
pub(super) enum Step {
    Finished(Box<FinishedJob>),
    /// A payment waits for its bill (A5).
    WaitForBill(NewJob),
}

fn finished(job: &Job, outcome: JobOutcome) -> FinishedJob {
    FinishedJob::new(job.clone(), outcome)
}

fn failed(job: &Job, message: String, hint: &str) -> Step {
    let mut f = finished(job, JobOutcome::Failed);
    f.attention =
        AttentionChange::Set(Attention::new(AttentionKind::Failed, message.clone(), hint));
    f.error = Some(message);
    Step::Finished(Box::new(f))
}

/// Runs `job` and decides its outcome.
pub(super) async fn run(engine: &Engine, job: &Job) -> anyhow::Result<Step> {
    let ctx = engine.store.job_context(job).await?;
    let Some(conn) = ctx.connection else {
        return Ok(failed(
            job,
            format!("connection {} no longer exists", job.connection_id),
            "Nothing to do.",
        ));
    };
    if !conn.enabled {
        let mut f = finished(job, JobOutcome::Failed);
        f.error = Some(format!("not synced: connection {} is disabled", conn.id));
        return Ok(Step::Finished(Box::new(f)));
    }
    let Some(doc) = ctx.document else {
        return Ok(failed(
            job,
            format!("document {} is not recorded", job.document_id),
            "Import the document, then re-sync.",
        ));
    };
    // A1, M1-M3: unless the connection syncs before approval, a document
    // that is not approved never gets a bill entry, on any path. Decided
    // here, on the document as it is now, so every path obeys it.
    if !super::policy::bill_wanted(&conn, &doc) && job.target == Target::Bill {
        return Ok(skipped(job, not_wanted_reason(&conn, &doc)));
    }
    let plugin = match engine.connectors.plugin(&engine.runtime, &conn).await {
        Ok(p) => p,
        Err(e) => {
            return Ok(failed(
                job,
                format!(
                    "the connector plugin `{}` cannot be loaded: {e:#}",
                    conn.plugin
                ),
                "Fix or replace the connection's plugin, then re-sync.",
            ));
        }
    };
    if let Err(m) = engine.check_grant_now(&conn) {
        return Ok(failed(
            job,
            m,
            "Give the connection a directory of its own, away from the host's store, cache and plugin files, and run workers with the store and cache the connection was added with.",
        ));
    }
    let sandbox = match super::connectors::sandbox(&conn) {
        Ok(mut s) => {
            s.budget = Some(crate::runtime::Budget(
                engine.budgets.of(&conn.id, &conn.limits),
            ));
            s
        }
        Err(e) => {
            return Ok(failed(
                job,
                format!("the connection's settings are invalid: {e}"),
                "Fix the connection's settings.",
            ));
        }
    };
    let mut attempt = Attempt {
        engine,
        job,
        plugin,
        sandbox,
        operations: Vec::new(),
        logs: Vec::new(),
        lookups: 0,
        limits: conn.limits.clone(),
        prepaid: true,
    };
    let mut results = Vec::new();
    let mut exports = Vec::new();
    match job.target {
        Target::Bill => {
            let subject = match mapping::bill(&doc, &conn) {
                Ok(bill) => Ok(Subject {
                    target: Target::Bill,
                    subject_id: doc.id.clone(),
                    hash: keys::content_hash(&keys::canonical_bill(&bill)),
                    bill: Some(bill),
                    payment: None,
                }),
                Err(m) => Err(Failure::Mapping(m)),
            };
            let row = ctx.bill_entry;
            results.push(match subject {
                Ok(s) => {
                    attempt
                        .sync(
                            &s,
                            row.unwrap_or_else(|| blank(&conn, Target::Bill, &doc.id, &doc.id)),
                            true,
                        )
                        .await
                }
                Err(f) => Err(f),
            });
        }
        Target::Payment => {
            let due = payments_to_sync(ctx.payments.clone(), &doc, &conn);
            if due.is_empty() {
                return Ok(skipped(job, not_due_reason(&ctx.payments)));
            }
            let Some(bill_id) = ctx.bill_entry.as_ref().and_then(|e| e.erp_id.clone()) else {
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
            let can_update = attempt
                .plugin
                .descriptor
                .capabilities
                .contains(wit::Capabilities::UPDATE_PAYMENTS);
            let ask_erp = attempt
                .plugin
                .descriptor
                .capabilities
                .contains(wit::Capabilities::CHECK_NUMBERS_IN_USE);
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
                    bill: None,
                    payment: Some(payment),
                });
                let row = entries.remove(&p.id);
                let result = match subject {
                    Ok(s) => {
                        attempt
                            .sync(
                                &s,
                                row.unwrap_or_else(|| {
                                    blank(&conn, Target::Payment, &p.id, &doc.id)
                                }),
                                can_update,
                            )
                            .await
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
    let plugin_name = attempt.plugin.descriptor.name.clone();
    let mut finished = conclude(
        engine,
        job,
        &plugin_name,
        attempt.operations,
        attempt.logs,
        results,
    );
    finished.failed_exports = exports;
    Ok(Step::Finished(Box::new(finished)))
}

/// A job that is not run, on purpose, with its reason (M4).
fn skipped(job: &Job, reason: String) -> Step {
    let mut f = finished(job, JobOutcome::Skipped);
    f.error = Some(reason);
    Step::Finished(Box::new(f))
}

fn not_wanted_reason(conn: &Connection, doc: &Document) -> String {
    if !conn.sync_bills {
        format!("not synced: connection {} does not sync bills", conn.id)
    } else {
        format!(
            "not synced: the document is {} and connection {} syncs only approved documents (sync_before_approval is off)",
            doc.status.as_str().replace('_', " "),
            conn.id
        )
    }
}

fn not_due_reason(payments: &[Payment]) -> String {
    use crate::model::DisbursementStatus as D;
    let states: Vec<String> = payments
        .iter()
        .map(|p| match p.disbursement_status {
            Some(D::Initiated) => format!("{}: disbursement initiated, not funded yet", p.id),
            Some(D::Failed) => format!("{}: disbursement failed", p.id),
            _ => format!("{}: not due", p.id),
        })
        .collect();
    if states.is_empty() {
        "not synced: the document has no payment and is not marked as paid".into()
    } else {
        format!("not synced: no payment is due ({})", states.join("; "))
    }
}

/// The check number for `p`: its own if issued, else the funding account's
/// next free one, skipping what the ERP reports in use when it can say.
async fn assign_check_number(
    attempt: &mut Attempt<'_>,
    p: &Payment,
    bank_account: &str,
    ask_erp: bool,
) -> Result<u64, Failure> {
    let store = &attempt.engine.store;
    let store_error = Failure::Host;
    let mut in_use = Vec::new();
    if ask_erp {
        let next = store
            .funding_account(&p.tenant_id, &p.funding_account)
            .await
            .map_err(store_error)?
            .next_check_number;
        let key = digest(&[
            &attempt.job.connection_id,
            &p.id,
            "check-numbers",
            &next.to_string(),
        ]);
        let op = Call::CheckNumbersInUse {
            bank_account: bank_account.to_string(),
            first: next,
            count: CHECK_LOOKAHEAD,
        };
        if let Reply::CheckNumbers(n) = attempt.call(&key, op).await.map_err(Failure::Call)? {
            // Only numbers inside the range asked about are believed; a
            // connector that answers others is at fault, and is ignored.
            let asked = next..next.saturating_add(u64::from(CHECK_LOOKAHEAD));
            let (inside, outside): (Vec<u64>, Vec<u64>) =
                n.into_iter().partition(|n| asked.contains(n));
            if !outside.is_empty() {
                attempt.note(
                    "check-numbers-in-use",
                    format!(
                        "plugin fault: {} numbers outside {}..{} were answered and ignored",
                        outside.len(),
                        asked.start,
                        asked.end
                    ),
                );
            }
            in_use = inside;
        }
    }
    store
        .assign_check_number(&p.tenant_id, &p.funding_account, &p.id, in_use)
        .await
        .map_err(|e| match e.downcast_ref::<crate::store::ChecksExhausted>() {
            Some(x) => Failure::Mapping(MappingError {
                field: "funding_account".into(),
                message: x.to_string(),
                hint: format!(
                    "Set the next check number of funding account {} lower with `funding-account set-next` (above the last issued), or clear numbers wrongly marked used with `funding-account clear-used`; then re-sync.",
                    x.0
                ),
            }),
            None => store_error(e),
        })
}

/// How many numbers ahead the ERP is asked about.
const CHECK_LOOKAHEAD: u32 = 100;

fn blank(conn: &Connection, target: Target, subject: &str, document: &str) -> EntryRow {
    EntryRow {
        connection_id: conn.id.clone(),
        target: target.as_str().into(),
        subject_id: subject.into(),
        document_id: document.into(),
        ..EntryRow::default()
    }
}

/// The payments of a document; a document marked paid with none recorded
/// gets one for its total, dated today, from the connection's default bank
/// account (A3: paid outside the product).
fn payments_to_sync(mut payments: Vec<Payment>, doc: &Document, conn: &Connection) -> Vec<Payment> {
    if payments.is_empty() && doc.status == DocumentStatus::Paid {
        let today = ledgerbridge_sdk::dates::Ymd::from_epoch_days(now_ms().div_euclid(86_400_000))
            .to_string();
        payments.push(Payment {
            tenant_id: doc.tenant_id.clone(),
            id: format!("{}{}", doc.id, crate::intake::MARKED_PAID_SUFFIX),
            document_id: doc.id.clone(),
            amount: doc.total,
            date: today,
            method: PaymentMethod::Ach,
            funding_account: conn.default_bank_account.clone().unwrap_or_default(),
            check_number: None,
            bank_id: None,
            disbursement_status: None,
        });
    }
    payments.retain(Payment::ready);
    payments
}

/// Folds the subjects' results into one outcome for the job.
fn conclude(
    engine: &Engine,
    job: &Job,
    plugin: &str,
    operations: Vec<Operation>,
    logs: Vec<LogLine>,
    results: Vec<Result<(JobOutcome, EntryRow, bool), Failure>>,
) -> FinishedJob {
    let mut f = finished(job, JobOutcome::Unchanged);
    f.operations = operations;
    f.plugin_log = serde_json::to_string(&logs).unwrap_or_else(|_| "[]".into());
    let rank = |o: JobOutcome| match o {
        JobOutcome::Created => 3,
        JobOutcome::Updated => 2,
        JobOutcome::SkippedBooked => 1,
        _ => 0,
    };
    let mut failure = None;
    for r in results {
        match r {
            Ok((outcome, row, forgot)) => {
                if forgot && row.erp_id.is_none() {
                    f.forget.push((row.target.clone(), row.subject_id.clone()));
                }
                if rank(outcome) > rank(f.outcome) {
                    f.outcome = outcome;
                }
                f.entries.push(row);
            }
            Err(e) => failure = failure.or(Some(e)),
        }
    }
    if f.outcome == JobOutcome::SkippedBooked {
        let reason = f
            .entries
            .iter()
            .find_map(|e| e.booked_reason.clone())
            .unwrap_or_default();
        f.error = Some(format!(
            "not synced: the entry is booked in the ERP ({reason})"
        ));
    }
    let Some(failure) = failure else { return f };
    let mut kind = AttentionKind::Failed;
    let (verdict, message) = match failure {
        Failure::Mapping(m) => (
            Verdict::Attention {
                message: format!("{}: {}", m.field, m.message),
                hint: m.hint,
            },
            None,
        ),
        Failure::Call(e) => {
            let v = verdict(&e);
            (v, Some(e))
        }
        Failure::Host(e) => {
            kind = AttentionKind::HostFault;
            (
                Verdict::Attention {
                    message: format!("the host failed: {e:#}"),
                    hint: "Check the host's store and logs, then re-sync.".into(),
                },
                None,
            )
        }
    };
    let plugin_at_fault = matches!(message, Some(CallError::Fault(_)));
    match verdict {
        Verdict::Retry { after, message: m } if job.attempts + 1 < engine.retry.max_attempts => {
            f.outcome = JobOutcome::Retrying;
            let wait = engine.retry.backoff(job.attempts, after);
            f.retry_at =
                Some(now_ms().saturating_add(wait.as_millis().min(i64::MAX as u128) as i64));
            f.error = Some(format!(
                "{m} (attempt {} of {}, next in {wait:.1?})",
                job.attempts + 1,
                engine.retry.max_attempts
            ));
        }
        Verdict::Retry { message: m, .. } => {
            f.outcome = JobOutcome::Failed;
            let text = format!("gave up after {} attempts: {m}", job.attempts + 1);
            f.error = Some(text.clone());
            let hint = if plugin_at_fault {
                format!(
                    "The {plugin} connector plugin kept failing (not the ERP): check its deadline and memory limits in the connection, or report it to the plugin's author; then re-sync."
                )
            } else {
                "The ERP kept failing for a while; check its status page and the connection, then re-sync.".into()
            };
            f.attention = AttentionChange::Set(Attention::new(AttentionKind::GaveUp, text, hint));
        }
        Verdict::Attention { message: m, hint } => {
            f.outcome = JobOutcome::Failed;
            f.error = Some(m.clone());
            f.attention = AttentionChange::Set(Attention::new(kind, m, hint));
        }
    }
    if let Some(CallError::Connector(c)) = &message {
        tracing::debug!(
            job = job.id,
            "connector answered {}",
            describe_connector_error(c)
        );
    }
    f
}

/// The longest wait an ERP (or a plugin) can ask for: a day.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);

/// Exponential backoff with jitter, honouring the ERP's retry-after (R1).
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts in all, the first included, before a person is asked.
    pub max_attempts: u32,
    /// The wait after the first failure; doubled after each.
    pub base: Duration,
    /// The longest wait.
    pub cap: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 6,
            base: Duration::from_secs(2),
            cap: Duration::from_secs(600),
        }
    }
}

impl RetryPolicy {
    /// The wait before the attempt after `attempts_so_far` failures: between
    /// half and all of base·2ⁿ (capped), and never less than `retry_after`
    /// (itself at most [`MAX_RETRY_AFTER`]).
    pub fn backoff(&self, attempts_so_far: u32, retry_after: Option<Duration>) -> Duration {
        self.backoff_with(attempts_so_far, retry_after, fastrand::f64())
    }

    /// [`RetryPolicy::backoff`] with the jitter given, in `0.0..1.0`.
    pub fn backoff_with(
        &self,
        attempts_so_far: u32,
        retry_after: Option<Duration>,
        jitter: f64,
    ) -> Duration {
        let exp = self
            .base
            .saturating_mul(1u32 << attempts_so_far.min(20))
            .min(self.cap);
        let jittered = exp / 2 + (exp / 2).mul_f64(jitter.clamp(0.0, 1.0));
        jittered.max(retry_after.unwrap_or_default().min(MAX_RETRY_AFTER))
    }
}

/// The jobs for a manual or bulk sync of `doc` in `conn` (M1, M2): the bill
/// entry, and the payment entries when the document is paid or has payments.
pub(super) fn manual_jobs(
    doc: &Document,
    has_payments: bool,
    conn: &Connection,
    target: Option<Target>,
    trigger: Trigger,
    force: bool,
    run_id: &str,
) -> Vec<NewJob> {
    let mut targets = Vec::new();
    match target {
        Some(t) => targets.push(t),
        None => {
            targets.push(Target::Bill);
            if doc.status == DocumentStatus::Paid || has_payments {
                targets.push(Target::Payment);
            }
        }
    }
    targets
        .into_iter()
        .map(|t| NewJob {
            connection_id: conn.id.clone(),
            tenant_id: doc.tenant_id.clone(),
            document_id: doc.id.clone(),
            target: t,
            trigger,
            force,
            due_at: now_ms(),
            run_id: Some(run_id.to_string()),
            priority: super::policy::priority(trigger),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 6,
            base: Duration::from_secs(2),
            cap: Duration::from_secs(60),
        }
    }

    /// Issue 7 item 22: growth, cap, jitter bounds and the Retry-After floor.
    #[test]
    fn r1_backoff_grows_is_capped_jittered_and_honours_retry_after() {
        let p = policy();
        // Jitter spans half to all of base·2ⁿ.
        assert_eq!(p.backoff_with(0, None, 0.0), Duration::from_secs(1));
        assert_eq!(p.backoff_with(0, None, 1.0), Duration::from_secs(2));
        assert_eq!(p.backoff_with(1, None, 1.0), Duration::from_secs(4));
        assert_eq!(p.backoff_with(3, None, 0.5), Duration::from_secs(12));
        // Capped, however many attempts.
        assert_eq!(p.backoff_with(30, None, 1.0), Duration::from_secs(60));
        assert_eq!(p.backoff_with(u32::MAX, None, 0.0), Duration::from_secs(30));
        for n in 0..10 {
            let d = p.backoff(n, None);
            let full = p.base.saturating_mul(1 << n).min(p.cap);
            assert!(d >= full / 2 && d <= full, "{n}: {d:?}");
        }
        // Retry-After is a floor, itself at most a day.
        assert_eq!(
            p.backoff_with(0, Some(Duration::from_secs(90)), 0.0),
            Duration::from_secs(90)
        );
        assert_eq!(
            p.backoff_with(0, Some(Duration::from_millis(u64::MAX)), 0.0),
            MAX_RETRY_AFTER
        );
    }
}
