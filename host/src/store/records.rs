//! Tenants, connections, documents, payments, entries, the integration log
//! and Requires attention.

use super::rows::{AttentionItem, EntryRow, LogRow, LoggedOperation, NewJob};
use super::{Store, now_ms};
use super::{exec, query_row};
use crate::model::{Connection, Document, Payment, Target};
use anyhow::{Context as _, bail};
use rusqlite::{OptionalExtension, params};
use std::collections::HashMap;

/// Decides the jobs a change causes, inside the transaction that records it.
pub type JobPlan<T> = Box<dyn FnOnce(Option<&T>, &T, &[Connection]) -> Vec<NewJob> + Send>;

/// Decides what an incoming payment keeps of the one already recorded
/// (`None` for a new payment), or refuses the change; run inside the
/// transaction that records it.
pub type PaymentMerge = fn(Option<&Payment>, Payment) -> anyhow::Result<Payment>;

/// What [`Store::record`] did.
#[derive(Debug, Clone, Default)]
pub struct Recorded {
    /// The jobs the changes caused.
    pub jobs: Vec<NewJob>,
    /// How many of them were new syncs (the rest merged into queued ones).
    pub new_jobs: usize,
}

/// Everything a job reads, in one call.
#[derive(Debug, Clone, Default)]
pub struct JobContext {
    pub connection: Option<Connection>,
    pub document: Option<Document>,
    /// The document's bill entry in the connection.
    pub bill_entry: Option<EntryRow>,
    /// The document's payments, oldest first (payment jobs only).
    pub payments: Vec<Payment>,
    /// Their entries in the connection, by payment id.
    pub payment_entries: std::collections::HashMap<String, EntryRow>,
}

impl Store {
    /// What each of `jobs` (a group's) needs to run, read in one go.
    pub async fn job_contexts(&self, jobs: &[super::Job]) -> anyhow::Result<Vec<JobContext>> {
        let jobs = jobs.to_vec();
        self.with(move |db| {
            let tx = db.savepoint()?;
            // A group's jobs share their connection: read and parse it once.
            let mut connections: HashMap<String, Option<Connection>> = HashMap::new();
            let mut out = Vec::with_capacity(jobs.len());
            for job in &jobs {
                let connection = match connections.get(&job.connection_id) {
                    Some(c) => c.clone(),
                    None => {
                        let c = connection_in(&tx, &job.connection_id)?;
                        connections.insert(job.connection_id.clone(), c.clone());
                        c
                    }
                };
                out.push(context_in(&tx, job, connection)?);
            }
            Ok(out)
        })
        .await
    }

    /// Adds a tenant; adding one that exists is a no-op.
    pub async fn add_tenant(&self, id: &str) -> anyhow::Result<()> {
        let id = id.to_string();
        self.with(move |db| {
            exec(
                db,
                "INSERT INTO tenants (id, created_at) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
                params![id, now_ms()],
            )?;
            Ok(())
        })
        .await
    }

    /// Whether the tenant exists.
    pub async fn tenant_exists(&self, id: &str) -> anyhow::Result<bool> {
        let id = id.to_string();
        self.with(move |db| {
            Ok(db
                .query_row("SELECT 1 FROM tenants WHERE id = ?1", [id], |_| Ok(()))
                .optional()?
                .is_some())
        })
        .await
    }

    /// Adds or replaces a connection (already validated). A connection's
    /// tenant never changes: replacing one under another tenant is refused
    /// here too, inside the transaction, whatever the caller checked.
    pub async fn put_connection(&self, c: Connection) -> anyhow::Result<()> {
        self.with(move |db| {
            let tx = db.savepoint()?;
            let owner: Option<String> = query_row(
                &tx,
                "SELECT tenant_id FROM connections WHERE id = ?1",
                [&c.id],
                |r| r.get(0),
            )
            .optional()?;
            if let Some(owner) = owner
                && owner != c.tenant_id
            {
                bail!(
                    "id: connection {} belongs to another tenant; choose another id",
                    c.id
                );
            }
            let config = serde_json::to_string(&c)?;
            let credentials = super::secrets::seal(
                CREDENTIALS,
                &c.id,
                &serde_json::to_string(&c.credentials)?,
            )?;
            exec(
                &tx,
                "INSERT INTO connections (id, tenant_id, enabled, config, credentials, created_at, disabled_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, CASE WHEN ?3 THEN NULL ELSE ?6 END)
                 ON CONFLICT (id) DO UPDATE SET
                   disabled_at = CASE WHEN excluded.enabled THEN NULL
                                      WHEN enabled THEN excluded.created_at ELSE disabled_at END,
                   enabled = excluded.enabled, config = excluded.config,
                   credentials = excluded.credentials",
                params![c.id, c.tenant_id, c.enabled, config, credentials, now_ms()],
            )?;
            super::tokens::put_grant(&tx, &c.id, c.oauth2.as_ref())?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// How many of a tenant's documents changed (or arrived) since `since`.
    pub async fn documents_changed_since(
        &self,
        tenant_id: &str,
        since: i64,
    ) -> anyhow::Result<usize> {
        let t = tenant_id.to_string();
        self.with(move |db| {
            Ok(query_row(
                db,
                "SELECT COUNT(*) FROM documents WHERE tenant_id = ?1 AND updated_at >= ?2",
                params![t, since],
                |r| r.get::<_, i64>(0),
            )? as usize)
        })
        .await
    }

    /// The connection `id`, credentials included.
    pub async fn connection(&self, id: &str) -> anyhow::Result<Option<Connection>> {
        let id = id.to_string();
        self.with(move |db| connection_in(db, &id)).await
    }

    /// Every connection, credentials included.
    pub async fn connections(&self) -> anyhow::Result<Vec<Connection>> {
        self.with(|db| all_connections(db, None)).await
    }

    /// Enables or disables a connection (P4); its history stays. Returns
    /// `None` when there is no such connection, else when it was disabled
    /// (`Some(None)` if it was not).
    pub async fn set_connection_enabled(
        &self,
        id: &str,
        enabled: bool,
    ) -> anyhow::Result<Option<Option<i64>>> {
        let id = id.to_string();
        self.with(move |db| {
            let tx = db.savepoint()?;
            let Some((config, disabled_at)): Option<(String, Option<i64>)> = tx
                .query_row(
                    "SELECT config, disabled_at FROM connections WHERE id = ?1",
                    [&id],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?
            else {
                return Ok(None);
            };
            let mut value: serde_json::Value = serde_json::from_str(&config)?;
            value["enabled"] = serde_json::Value::Bool(enabled);
            exec(
                &tx,
                "UPDATE connections SET enabled = ?2, config = ?3,
                   disabled_at = CASE WHEN ?2 THEN NULL ELSE COALESCE(disabled_at, ?4) END WHERE id = ?1",
                params![id, enabled, value.to_string(), now_ms()],
            )?;
            tx.commit()?;
            Ok(Some(disabled_at))
        })
        .await
    }

    /// Records documents and payments, and the jobs each change causes, in
    /// one transaction: all of them or none (V1). Each payment is first
    /// merged with the one recorded, by `merge`.
    pub async fn record(
        &self,
        documents: Vec<(Document, JobPlan<Document>)>,
        payments: Vec<(Payment, JobPlan<Payment>)>,
        merge: PaymentMerge,
    ) -> anyhow::Result<Recorded> {
        self.with(move |db| {
            let tx = db.savepoint()?;
            let mut queued = Vec::new();
            let mut new_jobs = 0;
            for (doc, plan) in documents {
                let previous = document_in(&tx, &doc.tenant_id, &doc.id)?;
                let conns = all_connections(&tx, Some(&doc.tenant_id))?;
                exec(&tx,
                    "INSERT INTO documents (tenant_id, id, status, body, updated_at) VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (tenant_id, id) DO UPDATE SET status = excluded.status,
                       body = excluded.body, updated_at = excluded.updated_at",
                    params![doc.tenant_id, doc.id, doc.status.as_str(), serde_json::to_string(&doc)?, now_ms()],
                )?;
                let jobs = plan(previous.as_ref(), &doc, &conns);
                for j in &jobs {
                    new_jobs += usize::from(super::jobs::enqueue_in(&tx, j)?);
                }
                queued.extend(jobs);
            }
            for (payment, plan) in payments {
                if document_in(&tx, &payment.tenant_id, &payment.document_id)?.is_none() {
                    return Err(super::invalid(
                        "document_id",
                        format!(
                            "payment {}: no document {} for tenant {}",
                            payment.id, payment.document_id, payment.tenant_id
                        ),
                    ));
                }
                let previous: Option<Payment> = tx
                    .query_row(
                        "SELECT body FROM payments WHERE tenant_id = ?1 AND id = ?2",
                        params![payment.tenant_id, payment.id],
                        |r| r.get::<_, String>(0),
                    )
                    .optional()?
                    .map(|b| serde_json::from_str(&b))
                    .transpose()?;
                if let Some(p) = &previous
                    && p.document_id != payment.document_id
                {
                    return Err(super::invalid(
                        "document_id",
                        format!(
                            "payment {}: it belongs to document {}, not {}",
                            payment.id, p.document_id, payment.document_id
                        ),
                    ));
                }
                let payment = merge(previous.as_ref(), payment)?;
                let conns = all_connections(&tx, Some(&payment.tenant_id))?;
                exec(&tx,
                    "INSERT INTO payments (tenant_id, id, document_id, body, updated_at) VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (tenant_id, id) DO UPDATE SET body = excluded.body, updated_at = excluded.updated_at",
                    params![payment.tenant_id, payment.id, payment.document_id, serde_json::to_string(&payment)?, now_ms()],
                )?;
                // A guard for concurrent imports; the engine checked first.
                let (paid, total): (i64, i64) = query_row(
                    &tx,
                    "SELECT (SELECT COALESCE(SUM(json_extract(p.body, '$.amount')), 0) FROM payments p
                              WHERE p.tenant_id = ?1 AND p.document_id = ?2
                                AND COALESCE(json_extract(p.body, '$.disbursement_status'), '') != 'failed'),
                            (SELECT json_extract(d.body, '$.total') FROM documents d
                              WHERE d.tenant_id = ?1 AND d.id = ?2)",
                    params![payment.tenant_id, payment.document_id],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )?;
                if paid > total {
                    return Err(super::invalid(
                        "amount",
                        format!(
                            "payment {}: with the payments already recorded, document {} would be paid more than its total",
                            payment.id, payment.document_id
                        ),
                    ));
                }
                let jobs = plan(previous.as_ref(), &payment, &conns);
                for j in &jobs {
                    new_jobs += usize::from(super::jobs::enqueue_in(&tx, j)?);
                }
                queued.extend(jobs);
            }
            tx.commit()?;
            Ok(Recorded { jobs: queued, new_jobs })
        })
        .await
    }

    /// The document, if recorded.
    pub async fn document(&self, tenant_id: &str, id: &str) -> anyhow::Result<Option<Document>> {
        let (t, i) = (tenant_id.to_string(), id.to_string());
        self.with(move |db| {
            let tx = db.savepoint()?;
            document_in(&tx, &t, &i)
        })
        .await
    }

    /// The payments recorded against a document, oldest first.
    pub async fn payments_of(
        &self,
        tenant_id: &str,
        document_id: &str,
    ) -> anyhow::Result<Vec<Payment>> {
        let (t, d) = (tenant_id.to_string(), document_id.to_string());
        self.with(move |db| {
            let mut stmt = db.prepare_cached(
                "SELECT body FROM payments WHERE tenant_id = ?1 AND document_id = ?2 ORDER BY updated_at, id",
            )?;
            let rows = stmt.query_map(params![t, d], |r| r.get::<_, String>(0))?;
            rows.map(|b| Ok(serde_json::from_str(&b?)?)).collect()
        })
        .await
    }

    /// Ids of a tenant's documents, all of them.
    pub async fn document_ids(&self, tenant_id: &str) -> anyhow::Result<Vec<String>> {
        let t = tenant_id.to_string();
        self.with(move |db| {
            let mut stmt =
                db.prepare_cached("SELECT id FROM documents WHERE tenant_id = ?1 ORDER BY id")?;
            let rows = stmt.query_map([t], |r| r.get::<_, String>(0))?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    /// The host's record of an entry.
    pub async fn entry(
        &self,
        connection_id: &str,
        target: Target,
        subject_id: &str,
    ) -> anyhow::Result<Option<EntryRow>> {
        let (c, s) = (connection_id.to_string(), subject_id.to_string());
        self.with(move |db| entry_in(db, &c, target, &s)).await
    }

    /// The entries of a connection, for checks and reports.
    pub async fn entries(&self, connection_id: &str) -> anyhow::Result<Vec<EntryRow>> {
        let c = connection_id.to_string();
        self.with(move |db| {
            let mut stmt = db.prepare_cached(&format!(
                "SELECT {ENTRY_COLUMNS} FROM entries WHERE connection_id = ?1 ORDER BY target, subject_id"
            ))?;
            let rows = stmt.query_map([c], entry_from_row)?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    /// Counts a connection's entries that have an ERP id, per target.
    pub async fn entry_counts(&self, connection_id: &str) -> anyhow::Result<(usize, usize)> {
        let c = connection_id.to_string();
        self.with(move |db| {
            let count = |t: &str| -> anyhow::Result<usize> {
                Ok(query_row(db,
                    "SELECT COUNT(*) FROM entries WHERE connection_id = ?1 AND target = ?2 AND entry_id IS NOT NULL",
                    params![c, t],
                    |r| r.get::<_, i64>(0),
                )? as usize)
            };
            Ok((count("bill")?, count("payment")?))
        })
        .await
    }

    /// Records the idempotency key of a create about to be sent (D2), so a
    /// crash between the ERP's answer and the host's commit is recovered by
    /// looking up, and a retry reuses the key.
    ///
    /// The intent's `content_hash` is the hash of the create's content, so a
    /// retry reuses the key only for the same request. Refused when `job`'s
    /// lease was lost (its worker stalled and another took the job): then
    /// no ERP call may follow from this attempt.
    pub async fn record_intent(&self, entry: EntryRow, job: &super::Job) -> anyhow::Result<()> {
        let job = job.clone();
        self.with(move |db| intent(db, &entry, &job)).await
    }

    /// [`Store::record_intent`] for several creates in one transaction
    /// (the creates of one batched call), each kept or refused on its own:
    /// one result per intent, in order.
    pub async fn record_intents(
        &self,
        intents: Vec<(EntryRow, super::Job)>,
    ) -> anyhow::Result<Vec<Result<(), String>>> {
        self.with(move |db| {
            Ok(intents
                .iter()
                .map(|(entry, job)| intent(db, entry, job).map_err(|e| format!("{e:#}")))
                .collect())
        })
        .await
    }

    /// Clears a booked lock after the operator reopened the period (B3).
    /// Returns whether there was a lock.
    pub async fn clear_lock(
        &self,
        connection_id: &str,
        target: Target,
        subject_id: &str,
    ) -> anyhow::Result<bool> {
        let (c, s) = (connection_id.to_string(), subject_id.to_string());
        self.with(move |db| {
            let n = exec(db,
                "UPDATE entries SET booked = 0, booked_reason = NULL, content_hash = NULL, updated_at = ?4
                 WHERE connection_id = ?1 AND target = ?2 AND subject_id = ?3 AND booked = 1",
                params![c, target.as_str(), s, now_ms()],
            )?;
            Ok(n > 0)
        })
        .await
    }

    /// A document's integration log, oldest first; one connection or all.
    pub async fn log_of(
        &self,
        tenant_id: &str,
        document_id: &str,
        connection_id: Option<&str>,
    ) -> anyhow::Result<Vec<LogRow>> {
        let (t, d, c) = (
            tenant_id.to_string(),
            document_id.to_string(),
            connection_id.map(str::to_string),
        );
        self.with(move |db| {
            let mut stmt = db.prepare_cached(
                "SELECT at, connection_id, document_id, trigger, target, operations, outcome, entry_id, error, plugin_log, plugin
                 FROM integration_log WHERE tenant_id = ?1 AND document_id = ?2 AND (?3 IS NULL OR connection_id = ?3)
                 ORDER BY id",
            )?;
            let rows = stmt.query_map(params![t, d, c], |r| {
                Ok((
                    LogRow {
                        at: r.get(0)?,
                        connection_id: r.get(1)?,
                        document_id: r.get(2)?,
                        trigger: r.get(3)?,
                        target: r.get(4)?,
                        operations: Vec::new(),
                        outcome: r.get(6)?,
                        entry_id: r.get(7)?,
                        error: r.get(8)?,
                        plugin_log: serde_json::Value::Null,
                        plugin: None,
                    },
                    r.get::<_, String>(5)?,
                    r.get::<_, String>(9)?,
                    r.get::<_, Option<String>>(10)?,
                ))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (mut log, ops, plugin_log, plugin) = row?;
                log.plugin = plugin.map(|p| serde_json::from_str(&p)).transpose().context("a log row's plugin version")?;
                log.operations = serde_json::from_str::<Vec<LoggedOperation>>(&ops).context("a log row's operations")?;
                log.plugin_log = serde_json::from_str(&plugin_log).context("a log row's plugin log")?;
                out.push(log);
            }
            Ok(out)
        })
        .await
    }

    /// Requires attention: one connection's items, or everyone's.
    pub async fn attention(
        &self,
        connection_id: Option<&str>,
    ) -> anyhow::Result<Vec<AttentionItem>> {
        let c = connection_id.map(str::to_string);
        self.with(move |db| {
            let mut stmt = db.prepare_cached(
                "SELECT connection_id, tenant_id, document_id, target, message, hint, created_at, kind
                 FROM attention WHERE (?1 IS NULL OR connection_id = ?1) ORDER BY created_at, document_id",
            )?;
            let rows = stmt.query_map(params![c], |r| {
                Ok(AttentionItem {
                    kind: super::rows::AttentionKind::parse(&r.get::<_, String>(7)?),
                    connection_id: r.get(0)?,
                    tenant_id: r.get(1)?,
                    document_id: r.get(2)?,
                    target: r.get(3)?,
                    message: r.get(4)?,
                    hint: r.get(5)?,
                    created_at: r.get(6)?,
                })
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    /// Dismisses an attention item (L2). Returns whether there was one.
    pub async fn dismiss(
        &self,
        connection_id: &str,
        document_id: &str,
        target: Target,
    ) -> anyhow::Result<bool> {
        let (c, d) = (connection_id.to_string(), document_id.to_string());
        self.with(move |db| {
            Ok(exec(db,
                "DELETE FROM attention WHERE connection_id = ?1 AND document_id = ?2 AND target = ?3",
                params![c, d, target.as_str()],
            )? > 0)
        })
        .await
    }
}

/// The sealed column of a connection's credentials.
const CREDENTIALS: &str = "connections.credentials";

/// A connection as stored; `credentials` sealed (`None`: not read).
pub(super) fn parse_connection(
    config: &str,
    credentials: Option<&str>,
    enabled: bool,
) -> anyhow::Result<Connection> {
    let mut c: Connection = serde_json::from_str(config).context("a stored connection")?;
    if let Some(sealed) = credentials {
        let plain = super::secrets::open(CREDENTIALS, &c.id, sealed)?;
        c.credentials =
            serde_json::from_str(&plain).context("a stored connection's credentials")?;
    }
    c.enabled = enabled;
    Ok(c)
}

fn all_connections(
    db: &rusqlite::Connection,
    tenant: Option<&str>,
) -> anyhow::Result<Vec<Connection>> {
    let mut stmt = db.prepare_cached(
        "SELECT config, credentials, enabled FROM connections WHERE (?1 IS NULL OR tenant_id = ?1) ORDER BY id",
    )?;
    let rows = stmt.query_map(params![tenant], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, bool>(2)?,
        ))
    })?;
    rows.map(|r| {
        let (config, creds, enabled) = r?;
        parse_connection(&config, Some(&creds), enabled)
    })
    .collect()
}

fn document_in(
    tx: &rusqlite::Connection,
    tenant: &str,
    id: &str,
) -> anyhow::Result<Option<Document>> {
    query_row(
        tx,
        "SELECT body FROM documents WHERE tenant_id = ?1 AND id = ?2",
        params![tenant, id],
        |r| r.get::<_, String>(0),
    )
    .optional()?
    .map(|b| serde_json::from_str(&b).context("a stored document"))
    .transpose()
}

pub(super) const ENTRY_COLUMNS: &str = "connection_id, target, subject_id, document_id, entry_id, version, state, content_hash, idempotency_key, booked, booked_reason";

pub(super) fn entry_from_row(r: &rusqlite::Row) -> rusqlite::Result<EntryRow> {
    Ok(EntryRow {
        connection_id: r.get(0)?,
        target: r.get(1)?,
        subject_id: r.get(2)?,
        document_id: r.get(3)?,
        entry_id: r.get(4)?,
        version: r.get(5)?,
        state: r.get(6)?,
        content_hash: r.get(7)?,
        idempotency_key: r.get(8)?,
        booked: r.get(9)?,
        booked_reason: r.get(10)?,
    })
}

pub(super) fn entry_in(
    db: &rusqlite::Connection,
    c: &str,
    target: Target,
    s: &str,
) -> anyhow::Result<Option<EntryRow>> {
    Ok(db
        .query_row(
            &format!("SELECT {ENTRY_COLUMNS} FROM entries WHERE connection_id = ?1 AND target = ?2 AND subject_id = ?3"),
            params![c, target.as_str(), s],
            entry_from_row,
        )
        .optional()?)
}

/// Records one create's intent, in a savepoint of its own.
fn intent(db: &mut rusqlite::Connection, entry: &EntryRow, job: &super::Job) -> anyhow::Result<()> {
    let tx = db.savepoint()?;
    let held: bool = query_row(
        &tx,
        "SELECT EXISTS (SELECT 1 FROM jobs WHERE id = ?1 AND state = 'running' AND lease_owner = ?2)",
        params![job.id, job.lease_owner],
        |r| r.get(0),
    )?;
    if !held {
        bail!(
            "the job's lease was lost (another worker took it); this attempt stops before calling the ERP"
        );
    }
    exec(&tx,
        "INSERT INTO entries (connection_id, target, subject_id, document_id, idempotency_key, content_hash, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (connection_id, target, subject_id) DO UPDATE SET idempotency_key = excluded.idempotency_key,
           content_hash = excluded.content_hash, updated_at = excluded.updated_at",
        params![entry.connection_id, entry.target, entry.subject_id, entry.document_id, entry.idempotency_key,
            entry.content_hash, now_ms()],
    )?;
    tx.commit()?;
    Ok(())
}

/// Connection `id` as stored, if it exists.
fn connection_in(tx: &rusqlite::Connection, id: &str) -> anyhow::Result<Option<Connection>> {
    query_row(
        tx,
        "SELECT config, credentials, enabled FROM connections WHERE id = ?1",
        [id],
        |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, bool>(2)?,
            ))
        },
    )
    .optional()?
    .map(|(config, creds, enabled)| parse_connection(&config, Some(&creds), enabled))
    .transpose()
}

/// What `job` needs to run, with its `connection`.
fn context_in(
    tx: &rusqlite::Connection,
    job: &super::Job,
    connection: Option<Connection>,
) -> anyhow::Result<JobContext> {
    let (c, t, d) = (&job.connection_id, &job.tenant_id, &job.document_id);
    let document = document_in(tx, t, d)?;
    let bill_entry = entry_in(tx, c, Target::Bill, d)?;
    let mut ctx = JobContext {
        connection,
        document,
        bill_entry,
        ..JobContext::default()
    };
    if job.target == Target::Payment {
        let mut stmt = tx.prepare_cached(
            "SELECT body FROM payments WHERE tenant_id = ?1 AND document_id = ?2 ORDER BY updated_at, id",
        )?;
        let rows = stmt.query_map(params![t, d], |r| r.get::<_, String>(0))?;
        for b in rows {
            ctx.payments.push(serde_json::from_str(&b?)?);
        }
        drop(stmt);
        for p in &ctx.payments {
            if let Some(e) = entry_in(tx, c, Target::Payment, &p.id)? {
                ctx.payment_entries.insert(p.id.clone(), e);
            }
        }
    }
    Ok(ctx)
}
