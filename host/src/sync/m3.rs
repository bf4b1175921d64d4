//! M3: brings one entry in line with the document. The entry exists:
//! update it (unless the ERP has this content already, D3); it is booked:
//! lock it, never update or replace it (B1-B3); it does not exist: look it
//! up by reference, record the intent, create it (D2). A stale version is
//! read again and updated as a new request; an entry the ERP lost is
//! created again, with a new key.
//!
//! The machine reaches the world only through a [`Port`]: the plugin call,
//! a note for the log, and the intent record. So it runs without wasm or
//! SQLite in tests.

use super::convert::{learn, to_wit};
use super::keys::{digest, update_key};
use super::outcome::{Failure, Synced};
use crate::model::{Target, Trigger};
use crate::runtime::bindings as wit;
use crate::runtime::{CallError, Operation as Call, Reply};
use crate::store::{EntryRow, Job, JobOutcome, now_ms};

/// What the machine needs of the world.
pub(crate) trait Port {
    /// Makes one plugin call, recording it for the log.
    async fn call(&mut self, key: &str, op: Call) -> Result<Reply, CallError>;
    /// Records an operation that sent nothing (a skip, a lock), for the log.
    fn note(&mut self, what: &str, result: String);
    /// Records the idempotency key of a create before it is sent (D2). An
    /// error stops the attempt before the create.
    async fn record_intent(&mut self, row: &EntryRow) -> anyhow::Result<()>;
}

/// One entry to bring in line: a bill entry, or one payment's entry.
#[derive(Debug, Clone)]
pub struct Subject {
    pub target: Target,
    /// The document's id (bill) or the payment's id (payment).
    pub subject_id: String,
    pub content: Content,
    /// The content hash of what is sent (D3).
    pub hash: String,
}

/// What a subject sends.
#[derive(Debug, Clone)]
pub enum Content {
    Bill(wit::Bill),
    Payment(wit::Payment),
}

impl Subject {
    fn lookup(&self, known: Option<String>) -> Call {
        match &self.content {
            Content::Bill(b) => Call::LookupBill {
                bill: b.clone(),
                known_id: known,
            },
            Content::Payment(p) => Call::LookupPayment {
                payment: p.clone(),
                known_id: known,
            },
        }
    }

    fn create(&self) -> Call {
        match &self.content {
            Content::Bill(b) => Call::CreateBill { bill: b.clone() },
            Content::Payment(p) => Call::CreatePayment { payment: p.clone() },
        }
    }

    fn update(&self, entry: wit::Entry) -> Call {
        match &self.content {
            Content::Bill(b) => Call::UpdateBill {
                entry,
                bill: b.clone(),
            },
            Content::Payment(p) => Call::UpdatePayment {
                entry,
                payment: p.clone(),
            },
        }
    }
}

/// The machine for one job's subjects: what of the job decides the path
/// and the keys, and the lookups made so far (each a request of its own).
#[derive(Debug, Clone)]
pub struct EntrySync {
    connection: String,
    job_id: i64,
    attempts: u32,
    /// A manual or bulk sync: always ask the ERP first (M2, M3).
    manual: bool,
    /// Send the update even when the content hash matches (D3).
    force: bool,
    lookups: u32,
}

impl EntrySync {
    /// The machine for `job`'s attempt.
    pub fn for_job(job: &Job) -> EntrySync {
        EntrySync {
            connection: job.connection_id.clone(),
            job_id: job.id,
            attempts: job.attempts,
            manual: matches!(job.trigger, Trigger::Manual | Trigger::Bulk),
            force: job.force,
            lookups: 0,
        }
    }

    /// A key for this attempt's next lookup: reads are distinct requests.
    fn lookup_key(&mut self, target: &str, subject: &str) -> String {
        self.lookups += 1;
        digest(&[
            &self.connection,
            target,
            subject,
            "lookup",
            &self.job_id.to_string(),
            &self.attempts.to_string(),
            &self.lookups.to_string(),
        ])
    }

    /// Brings one entry in line with the document (M3), starting from the
    /// host's record `row`. `can_update`: the ERP can modify the entry.
    pub(crate) async fn run<P: Port>(
        &mut self,
        port: &mut P,
        s: &Subject,
        mut row: EntryRow,
        can_update: bool,
    ) -> Result<Synced, Failure> {
        let target = s.target.as_str();
        let mut forgot = false;
        let done = |outcome, row, forgot| {
            Ok(Synced {
                outcome,
                row,
                forgot,
            })
        };
        // B2: never update, never replace a booked entry.
        if row.booked {
            port.note(
                "skip",
                format!(
                    "not synced: the entry is booked in the ERP ({})",
                    row.booked_reason.as_deref().unwrap_or("booked")
                ),
            );
            return done(JobOutcome::SkippedBooked, row, false);
        }
        // M2, M3: a manual or bulk sync always asks the ERP whether the
        // entry exists; the content hash (D3) only skips an update of an
        // entry the lookup found. Automatic syncs trust the host's record
        // and learn of a deleted entry from the update's not-found.
        let mut current = row.erp_id.as_ref().map(|_| to_wit(&row));
        if let Some(known) = row.erp_id.clone()
            && self.manual
        {
            let key = self.lookup_key(target, &s.subject_id);
            match port
                .call(&key, s.lookup(Some(known)))
                .await
                .map_err(Failure::Call)?
            {
                Reply::Found(Some(e)) if e.state == wit::EntryState::Booked => {
                    let hash = row.content_hash.clone();
                    learn(&mut row, &e, hash);
                    return Ok(lock(port, row, "the entry is booked in the ERP".into()));
                }
                Reply::Found(Some(e)) => {
                    let hash = row.content_hash.clone();
                    learn(&mut row, &e, hash);
                    current = Some(e);
                }
                Reply::Found(None) => {
                    port.note("forget", "the ERP no longer has this entry".into());
                    row.erp_id = None;
                    row.version = None;
                    row.content_hash = None;
                    forgot = true;
                    current = None;
                }
                Reply::Entry(_) | Reply::CheckNumbers(_) => {
                    return Err(answered_otherwise("a lookup"));
                }
            }
        }
        if let Some(entry) = current {
            // D3: the ERP has exactly this already.
            if !self.force && row.content_hash.as_deref() == Some(s.hash.as_str()) {
                port.note("skip", "unchanged since the last sync".into());
                return done(JobOutcome::Unchanged, row, forgot);
            }
            if !can_update {
                port.note(
                    "skip",
                    "the ERP cannot modify this entry; it was not replaced".into(),
                );
                return done(JobOutcome::Unchanged, row, forgot);
            }
            let key = self.update_key(s, entry.version.as_deref());
            match port.call(&key, s.update(entry)).await {
                Ok(Reply::Entry(e)) => {
                    learn(&mut row, &e, Some(s.hash.clone()));
                    return done(JobOutcome::Updated, row, forgot);
                }
                Err(CallError::Connector(wit::ConnectorError::Booked(m))) => {
                    return Ok(lock(port, row, m));
                }
                Err(CallError::Connector(wit::ConnectorError::Conflict(_))) => {
                    // Stale version: read the entry again and update once more,
                    // as a new request with a key of its own (D2).
                    let lookup = self.lookup_key(target, &s.subject_id);
                    match port
                        .call(&lookup, s.lookup(row.erp_id.clone()))
                        .await
                        .map_err(Failure::Call)?
                    {
                        Reply::Found(Some(fresh)) => {
                            let key = self.update_key(s, fresh.version.as_deref());
                            match port.call(&key, s.update(fresh)).await {
                                Ok(Reply::Entry(e)) => {
                                    learn(&mut row, &e, Some(s.hash.clone()));
                                    return done(JobOutcome::Updated, row, forgot);
                                }
                                Err(CallError::Connector(wit::ConnectorError::Booked(m))) => {
                                    return Ok(lock(port, row, m));
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
        match port
            .call(&lookup_key, s.lookup(None))
            .await
            .map_err(Failure::Call)?
        {
            Reply::Found(Some(e)) if e.state == wit::EntryState::Booked => {
                learn(&mut row, &e, None);
                Ok(lock(port, row, "the entry is booked in the ERP".into()))
            }
            Reply::Found(Some(e)) => {
                // An entry our own earlier attempt created counts as created.
                let ours = row.intent_key.is_some();
                let found = if ours {
                    JobOutcome::Created
                } else {
                    JobOutcome::Updated
                };
                learn(&mut row, &e, None);
                if !can_update {
                    port.note(
                        "skip",
                        "found in the ERP, which cannot modify it; not replaced".into(),
                    );
                    let outcome = if ours {
                        JobOutcome::Created
                    } else {
                        JobOutcome::Unchanged
                    };
                    return done(outcome, row, forgot);
                }
                let key = self.update_key(s, e.version.as_deref());
                match port.call(&key, s.update(e)).await {
                    Ok(Reply::Entry(e)) => {
                        learn(&mut row, &e, Some(s.hash.clone()));
                        done(found, row, forgot)
                    }
                    Err(CallError::Connector(wit::ConnectorError::Booked(m))) => {
                        Ok(lock(port, row, m))
                    }
                    Err(e) => Err(Failure::Call(e)),
                    Ok(_) => Err(answered_otherwise("an update")),
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
                        &self.connection,
                        target,
                        &s.subject_id,
                        "create",
                        &now_ms().to_string(),
                        &self.job_id.to_string(),
                    ]),
                };
                row.intent_key = Some(key.clone());
                row.content_hash = Some(s.hash.clone());
                port.record_intent(&row).await.map_err(Failure::Host)?;
                match port.call(&key, s.create()).await {
                    Ok(Reply::Entry(e)) => {
                        learn(&mut row, &e, Some(s.hash.clone()));
                        done(JobOutcome::Created, row, forgot)
                    }
                    Err(CallError::Connector(wit::ConnectorError::Booked(m))) => {
                        Ok(lock(port, row, m))
                    }
                    Err(e) => Err(Failure::Call(e)),
                    Ok(_) => Err(answered_otherwise("a create")),
                }
            }
            Reply::Entry(_) | Reply::CheckNumbers(_) => Err(answered_otherwise("a lookup")),
        }
    }

    fn update_key(&self, s: &Subject, version: Option<&str>) -> String {
        update_key(
            &self.connection,
            s.target.as_str(),
            &s.subject_id,
            &s.hash,
            version,
        )
    }
}

/// B1, B2: records the lock; nothing is sent for this entry again.
fn lock<P: Port>(port: &mut P, mut row: EntryRow, reason: String) -> Synced {
    port.note(
        "lock",
        format!("not synced: the entry is booked in the ERP ({reason})"),
    );
    row.booked = true;
    row.booked_reason = Some(reason);
    row.state = Some("booked".into());
    Synced {
        outcome: JobOutcome::SkippedBooked,
        row,
        forgot: false,
    }
}

/// The connector answered `what` with a reply of another operation: a
/// plugin's fault, treated as the ERP being unavailable (retried).
fn answered_otherwise(what: &str) -> Failure {
    Failure::Call(CallError::Connector(wit::ConnectorError::Unavailable(
        format!("the connector answered {what} with something else"),
    )))
}
