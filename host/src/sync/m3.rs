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
        let mut current = row.entry_id.as_ref().map(|_| to_wit(&row));
        if let Some(known) = row.entry_id.clone()
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
                    row.entry_id = None;
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
                        .call(&lookup, s.lookup(row.entry_id.clone()))
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
                            row.entry_id = None;
                            row.content_hash = None;
                            forgot = true;
                        }
                    }
                }
                // The ERP lost it (deleted there): rule 3, create it again.
                Err(CallError::Connector(wit::ConnectorError::NotFound(_))) => {
                    row.entry_id = None;
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
                let ours = row.idempotency_key.is_some();
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
                    row.entry_id.is_none() && row.content_hash.as_deref() == Some(s.hash.as_str());
                let key = match &row.idempotency_key {
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
                row.idempotency_key = Some(key.clone());
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Priority;
    use crate::sync::outcome::conclude;
    use crate::sync::retry::RetryPolicy;
    use std::collections::VecDeque;

    /// A connector that answers from a script, and remembers what it was
    /// asked, in order, with the intents recorded between the calls.
    #[derive(Default)]
    struct Fake {
        script: VecDeque<(&'static str, Result<Reply, CallError>)>,
        /// `call <operation> <key>`, `intent <key>`, `note <what>`.
        events: Vec<String>,
        keys: Vec<String>,
        /// The entry an update was based on, per update.
        updated_from: Vec<wit::Entry>,
        fail_intent: bool,
    }

    impl Fake {
        fn answers(script: Vec<(&'static str, Result<Reply, CallError>)>) -> Fake {
            Fake {
                script: script.into(),
                ..Fake::default()
            }
        }

        fn calls(&self) -> Vec<&str> {
            self.events
                .iter()
                .filter_map(|e| e.strip_prefix("call "))
                .map(|e| e.split(' ').next().unwrap())
                .collect()
        }
    }

    impl Port for Fake {
        async fn call(&mut self, key: &str, op: Call) -> Result<Reply, CallError> {
            let (want, reply) = self
                .script
                .pop_front()
                .unwrap_or_else(|| panic!("an unexpected call: {}", op.name()));
            assert_eq!(op.name(), want, "the calls so far: {:?}", self.events);
            if let Call::UpdateBill { entry, .. } = &op {
                self.updated_from.push(entry.clone());
            }
            self.events.push(format!("call {} {key}", op.name()));
            self.keys.push(key.to_string());
            reply
        }

        fn note(&mut self, what: &str, _result: String) {
            self.events.push(format!("note {what}"));
        }

        async fn record_intent(&mut self, row: &EntryRow) -> anyhow::Result<()> {
            if self.fail_intent {
                anyhow::bail!("the job's lease was lost");
            }
            self.events.push(format!(
                "intent {}",
                row.idempotency_key.as_deref().unwrap()
            ));
            Ok(())
        }
    }

    fn job(trigger: Trigger) -> Job {
        Job {
            id: 7,
            connection_id: "c".into(),
            tenant_id: "t".into(),
            document_id: "d1".into(),
            target: Target::Bill,
            trigger,
            force: false,
            attempts: 0,
            run_id: None,
            lease_owner: "w".into(),
            priority: Priority::Automatic,
        }
    }

    fn subject() -> Subject {
        let bill = wit::Bill {
            document_id: "d1".into(),
            number: "INV-1".into(),
            vendor: wit::Vendor {
                id: "v".into(),
                name: "Acme".into(),
                erp_id: None,
            },
            issue_date: "2026-11-01".into(),
            due_date: "2026-12-01".into(),
            currency: "USD".into(),
            lines: vec![],
            total: 1000,
            status: wit::BillStatus::Approved,
        };
        Subject {
            target: Target::Bill,
            subject_id: "d1".into(),
            content: Content::Bill(bill),
            hash: "new-hash".into(),
        }
    }

    fn entry(version: &str, state: wit::EntryState) -> wit::Entry {
        wit::Entry {
            id: "E1".into(),
            version: Some(version.into()),
            state,
            total: None,
        }
    }

    fn open(version: &str) -> wit::Entry {
        entry(version, wit::EntryState::Open)
    }

    /// The host's record of an entry it synced with content `hash`.
    fn known(hash: &str) -> EntryRow {
        EntryRow {
            connection_id: "c".into(),
            target: "bill".into(),
            subject_id: "d1".into(),
            document_id: "d1".into(),
            entry_id: Some("E1".into()),
            version: Some("1".into()),
            state: Some("open".into()),
            content_hash: Some(hash.into()),
            idempotency_key: Some("old-key".into()),
            ..EntryRow::default()
        }
    }

    fn blank() -> EntryRow {
        EntryRow {
            connection_id: "c".into(),
            target: "bill".into(),
            subject_id: "d1".into(),
            document_id: "d1".into(),
            ..EntryRow::default()
        }
    }

    fn connector(e: wit::ConnectorError) -> Result<Reply, CallError> {
        Err(CallError::Connector(e))
    }

    async fn run(
        trigger: Trigger,
        port: &mut Fake,
        row: EntryRow,
        can_update: bool,
    ) -> Result<Synced, Failure> {
        EntrySync::for_job(&job(trigger))
            .run(port, &subject(), row, can_update)
            .await
    }

    /// M3 rule 1 with D3: a manual sync looks the entry up; the ERP has
    /// this content already, so nothing is sent.
    #[tokio::test]
    async fn m3_found_with_the_same_content_is_unchanged() {
        let mut port = Fake::answers(vec![("lookup-bill", Ok(Reply::Found(Some(open("1")))))]);
        let s = run(Trigger::Manual, &mut port, known("new-hash"), true)
            .await
            .unwrap();
        assert_eq!(s.outcome, JobOutcome::Unchanged);
        assert_eq!(port.calls(), ["lookup-bill"]);
        // An automatic sync trusts the host's record: no call at all.
        let mut port = Fake::default();
        let s = run(Trigger::Changed, &mut port, known("new-hash"), true)
            .await
            .unwrap();
        assert_eq!(s.outcome, JobOutcome::Unchanged);
        assert!(port.calls().is_empty());
    }

    /// M3 rule 1: the entry exists: it is updated to the document as it is,
    /// based on the version the lookup found.
    #[tokio::test]
    async fn m3_found_with_other_content_is_updated() {
        let mut port = Fake::answers(vec![
            ("lookup-bill", Ok(Reply::Found(Some(open("4"))))),
            ("update-bill", Ok(Reply::Entry(open("5")))),
        ]);
        let s = run(Trigger::Bulk, &mut port, known("old-hash"), true)
            .await
            .unwrap();
        assert_eq!(s.outcome, JobOutcome::Updated);
        assert_eq!(port.updated_from[0].version.as_deref(), Some("4"));
        assert_eq!(s.row.version.as_deref(), Some("5"));
        assert_eq!(s.row.content_hash.as_deref(), Some("new-hash"));
        assert_eq!(
            port.keys[1],
            update_key("c", "bill", "d1", "new-hash", Some("4"))
        );
        assert!(!s.forgot);
    }

    /// M3 rule 3 with D2: not found: the intent is recorded before the
    /// create, which is sent with the intent's key.
    #[tokio::test]
    async fn m3_not_found_records_the_intent_then_creates() {
        let mut port = Fake::answers(vec![
            ("lookup-bill", Ok(Reply::Found(None))),
            ("create-bill", Ok(Reply::Entry(open("1")))),
        ]);
        let s = run(Trigger::Approved, &mut port, blank(), true)
            .await
            .unwrap();
        assert_eq!(s.outcome, JobOutcome::Created);
        let key = s.row.idempotency_key.clone().unwrap();
        assert_eq!(port.events[1], format!("intent {key}"));
        assert_eq!(port.events[2], format!("call create-bill {key}"));
        assert_eq!(s.row.entry_id.as_deref(), Some("E1"));
        assert_eq!(s.row.content_hash.as_deref(), Some("new-hash"));

        // A retry of the same create (same content, no entry since) keeps
        // the key.
        let mut port = Fake::answers(vec![
            ("lookup-bill", Ok(Reply::Found(None))),
            ("create-bill", Ok(Reply::Entry(open("1")))),
        ]);
        let mut retry = blank();
        retry.idempotency_key = Some(key.clone());
        retry.content_hash = Some("new-hash".into());
        run(Trigger::Retry, &mut port, retry, true).await.unwrap();
        assert_eq!(port.keys[1], key);
    }

    /// D2: the create is never sent when its intent cannot be recorded.
    #[tokio::test]
    async fn m3_no_create_without_its_intent() {
        let mut port = Fake::answers(vec![("lookup-bill", Ok(Reply::Found(None)))]);
        port.fail_intent = true;
        let r = run(Trigger::Approved, &mut port, blank(), true).await;
        assert!(matches!(r, Err(Failure::Host(_))), "{r:?}");
        assert_eq!(port.calls(), ["lookup-bill"]);
    }

    /// M3 rule 2, B1-B2: booked in the ERP (found so, or answered so by an
    /// update or a create): locked, neither updated nor created.
    #[tokio::test]
    async fn m3_booked_is_locked_never_updated_or_replaced() {
        let booked = entry("2", wit::EntryState::Booked);
        let mut port = Fake::answers(vec![("lookup-bill", Ok(Reply::Found(Some(booked))))]);
        let s = run(Trigger::Manual, &mut port, known("old-hash"), true)
            .await
            .unwrap();
        assert_eq!(s.outcome, JobOutcome::SkippedBooked);
        assert!(s.row.booked);
        assert_eq!(port.calls(), ["lookup-bill"]);

        let mut port = Fake::answers(vec![(
            "update-bill",
            connector(wit::ConnectorError::Booked(
                "period closed 2026-09-30".into(),
            )),
        )]);
        let s = run(Trigger::Changed, &mut port, known("old-hash"), true)
            .await
            .unwrap();
        assert_eq!(s.outcome, JobOutcome::SkippedBooked);
        assert_eq!(
            s.row.booked_reason.as_deref(),
            Some("period closed 2026-09-30")
        );

        // A locked entry is not even looked up again.
        let mut port = Fake::default();
        let s = run(Trigger::Manual, &mut port, s.row, true).await.unwrap();
        assert_eq!(s.outcome, JobOutcome::SkippedBooked);
        assert!(port.calls().is_empty());
    }

    /// A stale version: the entry is read again and updated once more, as
    /// a new request with a key of its own (D2).
    #[tokio::test]
    async fn m3_a_conflict_looks_up_again_and_updates_the_fresh_version() {
        let mut port = Fake::answers(vec![
            (
                "update-bill",
                connector(wit::ConnectorError::Conflict("stale".into())),
            ),
            ("lookup-bill", Ok(Reply::Found(Some(open("9"))))),
            ("update-bill", Ok(Reply::Entry(open("10")))),
        ]);
        let s = run(Trigger::Changed, &mut port, known("old-hash"), true)
            .await
            .unwrap();
        assert_eq!(s.outcome, JobOutcome::Updated);
        assert_eq!(port.updated_from[0].version.as_deref(), Some("1"));
        assert_eq!(port.updated_from[1].version.as_deref(), Some("9"));
        assert_ne!(port.keys[0], port.keys[2]);
        assert_eq!(s.row.version.as_deref(), Some("10"));
    }

    /// The ERP lost the entry (deleted there): rule 3, it is created again
    /// with a new key, and the old mapping is forgotten.
    #[tokio::test]
    async fn m3_not_found_on_update_creates_again_with_a_new_key() {
        let mut port = Fake::answers(vec![
            (
                "update-bill",
                connector(wit::ConnectorError::NotFound("gone".into())),
            ),
            ("lookup-bill", Ok(Reply::Found(None))),
            ("create-bill", Ok(Reply::Entry(open("1")))),
        ]);
        let s = run(Trigger::Changed, &mut port, known("old-hash"), true)
            .await
            .unwrap();
        assert_eq!(s.outcome, JobOutcome::Created);
        assert!(s.forgot);
        let key = s.row.idempotency_key.as_deref().unwrap();
        assert_ne!(key, "old-key");
        assert_eq!(port.events[2], format!("intent {key}"));
        assert_eq!(port.keys[2], key);
    }

    /// A manual sync whose lookup finds nothing forgets the entry and
    /// creates it (M3 rule 3).
    #[tokio::test]
    async fn m3_a_manual_sync_of_an_entry_deleted_in_the_erp_creates_it() {
        let mut port = Fake::answers(vec![
            ("lookup-bill", Ok(Reply::Found(None))),
            ("lookup-bill", Ok(Reply::Found(None))),
            ("create-bill", Ok(Reply::Entry(open("1")))),
        ]);
        let s = run(Trigger::Manual, &mut port, known("new-hash"), true)
            .await
            .unwrap();
        assert_eq!(s.outcome, JobOutcome::Created);
        assert!(s.forgot);
        // Each lookup is a request of its own.
        assert_ne!(port.keys[0], port.keys[1]);
    }

    /// The outcome of a failed call, folded as the executor does.
    async fn failing_with(e: wit::ConnectorError, attempts: u32) -> crate::store::FinishedJob {
        let mut port = Fake::answers(vec![
            ("lookup-bill", Ok(Reply::Found(None))),
            ("create-bill", connector(e)),
        ]);
        let mut j = job(Trigger::Approved);
        j.attempts = attempts;
        let r = EntrySync::for_job(&j)
            .run(&mut port, &subject(), blank(), true)
            .await;
        assert!(matches!(r, Err(Failure::Call(_))), "{r:?}");
        conclude(&RetryPolicy::default(), &j, "fake", vec![], vec![], vec![r])
    }

    /// R3: a validation error fails the job for a person to fix; no retry.
    #[tokio::test]
    async fn m3_validation_fails_and_is_not_retried() {
        let f = failing_with(
            wit::ConnectorError::Validation(wit::ValidationError {
                field: "lines[0].account-code".into(),
                message: "GL account 6100 does not exist".into(),
            }),
            0,
        )
        .await;
        assert_eq!(f.outcome, JobOutcome::Failed);
        assert_eq!(f.retry_at, None);
        let crate::store::AttentionChange::Set(a) = &f.attention else {
            panic!("no attention item: {:?}", f.attention)
        };
        assert_eq!(a.kind, crate::store::AttentionKind::Failed);
        assert!(a.message.contains("6100"), "{}", a.message);
    }

    /// R1: rate-limited and unavailable are retried (not before the ERP's
    /// retry-after), until the last attempt, after which a person is asked.
    #[tokio::test]
    async fn m3_rate_limited_and_unavailable_are_retried() {
        let limited = || {
            wit::ConnectorError::RateLimited(wit::RateLimit {
                retry_after_ms: Some(60_000),
                message: "slow down".into(),
            })
        };
        let before = now_ms();
        let f = failing_with(limited(), 0).await;
        assert_eq!(f.outcome, JobOutcome::Retrying);
        assert!(f.retry_at.unwrap() >= before + 60_000, "{:?}", f.retry_at);
        assert_eq!(f.attention, crate::store::AttentionChange::Leave);

        let f = failing_with(wit::ConnectorError::Unavailable("503".into()), 1).await;
        assert_eq!(f.outcome, JobOutcome::Retrying);
        assert!(f.retry_at.is_some());

        let last = RetryPolicy::default().max_attempts - 1;
        let f = failing_with(limited(), last).await;
        assert_eq!(f.outcome, JobOutcome::Failed);
        let crate::store::AttentionChange::Set(a) = &f.attention else {
            panic!("no attention item")
        };
        assert_eq!(a.kind, crate::store::AttentionKind::GaveUp);
    }
}
