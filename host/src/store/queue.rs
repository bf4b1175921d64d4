//! The queue as the scheduler sees it (R2, R5): which connections have due
//! work, claims per connection, pauses, and what operators are shown.
//!
//! Claims are per connection, as a queue shared by many tenants should be
//! (DESIGN: "Fair queues"): the engine decides how many of each
//! connection's jobs to take, in which order; the store takes them, best
//! priority first, inside one transaction that counts the connection's
//! running jobs again, so two workers (or two processes) claiming at once
//! never run more of a connection's jobs than its calls at once.

use super::rows::{Job, Priority};
use super::{Store, exec, now_ms, query_row};
use crate::model::{Connection, LimitOverrides};
use rusqlite::{OptionalExtension, params};
use serde::Serialize;
use std::collections::{BTreeMap, HashSet};

/// What paused a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PausedBy {
    /// Its ERP answered `rate-limited`: nothing is sent until the pause ends.
    Erp,
    /// Its own call budget (R2) has no call left until then: calls already
    /// paid for may still be made.
    Budget,
}

impl PausedBy {
    /// The name in SQL.
    pub fn as_str(self) -> &'static str {
        match self {
            PausedBy::Erp => "erp",
            PausedBy::Budget => "budget",
        }
    }
}

/// A connection with due work, as a claim sees it.
#[derive(Debug, Clone)]
pub struct DueConnection {
    pub id: String,
    /// Its connector (a built-in name or a path).
    pub plugin: String,
    pub limits: LimitOverrides,
    /// Its groups of jobs running now, in every worker (a job claimed
    /// before groups existed counts as one).
    pub running_groups: usize,
    /// Its due queued jobs (counted up to 1,600: every call at once of the
    /// largest batches).
    pub due: usize,
    /// The best priority among them.
    pub best: Priority,
}

/// One connection's queue and budget, for operators (`status`).
#[derive(Debug, Clone, Serialize)]
pub struct ConnectionStatus {
    pub id: String,
    pub tenant_id: String,
    pub plugin: String,
    pub enabled: bool,
    /// Queued jobs by priority (`funding_complete`, `automatic`, `bulk`)
    /// and target, as `"<priority> <target>"`.
    pub queued: BTreeMap<String, usize>,
    /// Queued jobs due now (the rest wait for a retry time).
    pub due: usize,
    pub running: usize,
    /// Payments waiting for their bill entry (A5).
    pub waiting: usize,
    /// Payments blocked by their bill.
    pub blocked: usize,
    /// As recorded here: the connection's own; `Engine::status` reports
    /// the ones it runs by (its connector's, lowered by these).
    pub limits: LimitOverrides,
    /// Calls in the last minute (over the workers that reported in the
    /// last two minutes) and the last 24 hours (as each worker last
    /// reported them): what is left of the budget, near enough.
    pub calls_last_minute: u64,
    pub calls_last_day: u64,
    /// Paused until (ms since the epoch), and why.
    pub paused_until: Option<i64>,
    pub paused_reason: Option<String>,
    /// Why the ERP refused the connection's OAuth2 grant, when it did: the
    /// connection needs re-authorisation (P2).
    pub needs_reauthorisation: Option<String>,
    /// The plugin version the connection runs now (set by `Engine::status`;
    /// `None` when it cannot be loaded).
    pub plugin_version: Option<crate::model::PluginVersion>,
    /// Why the newest build of its plugin was refused while the old
    /// version serves on (P3), or why none can be loaded.
    pub plugin_refused: Option<String>,
}

impl Store {
    /// The connections that have queued jobs due now and are not paused,
    /// with their running jobs and best priority. A disabled connection's
    /// jobs are claimed too: the executor ends them, not synced.
    pub async fn due_connections(&self) -> anyhow::Result<Vec<DueConnection>> {
        self.with(|db| {
            let now = now_ms();
            let conns: Vec<(String, String)> = {
                let mut stmt = db.prepare_cached(
                    "SELECT id, config FROM connections
                     WHERE paused_until IS NULL OR paused_until <= ?1 ORDER BY id",
                )?;
                stmt.query_map([now], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<Result<_, _>>()?
            };
            let mut out = Vec::new();
            for (id, config) in conns {
                let best: Option<i64> = query_row(
                    db,
                    "SELECT priority FROM jobs WHERE state = 'queued' AND connection_id = ?1 AND +due_at <= ?2
                     ORDER BY priority LIMIT 1",
                    params![id, now],
                    |r| r.get(0),
                )
                .optional()?;
                let Some(best) = best else { continue };
                let due: i64 = query_row(
                    db,
                    "SELECT COUNT(*) FROM (SELECT 1 FROM jobs WHERE state = 'queued' AND connection_id = ?1
                       AND +due_at <= ?2 LIMIT ?3)",
                    params![id, now, MOST_DUE_COUNTED as i64],
                    |r| r.get(0),
                )?;
                let running = running_groups(db, &id, None)?;
                out.push(DueConnection {
                    id,
                    plugin: plugin_of(&config),
                    limits: limits_of(&config),
                    running_groups: running,
                    due: due as usize,
                    best: Priority::from_i64(best),
                });
            }
            Ok(out)
        })
        .await
    }

    /// Claims, for each [`ClaimPlan`], up to `groups` groups of up to
    /// `size` of its due jobs, best priority first (then due time, bills
    /// before payments), leased to `worker` until `lease_until`. Never more
    /// than `most_groups` of the connection's groups run (its calls at once),
    /// counted again here over every worker; never two jobs of one document
    /// at once (a manual and an automatic sync of it never overlap). The
    /// result keeps the plan's order, so the engine's rotation over
    /// connections decides who runs first.
    pub async fn claim(
        &self,
        worker: &str,
        plan: Vec<ClaimPlan>,
        lease_until: i64,
    ) -> anyhow::Result<Vec<Vec<Job>>> {
        let worker = worker.to_string();
        self.with(move |db| {
            let tx = db.savepoint()?;
            let now = now_ms();
            let mut claimed = Vec::new();
            for p in plan {
                let unpaused: Option<i64> = query_row(
                    &tx,
                    "SELECT 1 FROM connections WHERE id = ?1
                       AND (paused_until IS NULL OR paused_until <= ?2)",
                    params![p.connection, now],
                    |r| r.get(0),
                )
                .optional()?;
                if unpaused.is_none() {
                    continue;
                }
                let running = running_groups(&tx, &p.connection, None)?;
                let bulk_running = running_groups(&tx, &p.connection, Some(Priority::Bulk))?;
                let grouping = Grouping {
                    groups: p.groups.min(p.most_groups.saturating_sub(running)),
                    size: p.size.max(1),
                    bulk_groups: p.most_bulk_groups.saturating_sub(bulk_running),
                    into: None,
                };
                claimed.extend(take(
                    &tx,
                    &worker,
                    &p.connection,
                    grouping,
                    lease_until,
                    now,
                )?);
            }
            tx.commit()?;
            Ok(claimed)
        })
        .await
    }

    /// Claims up to `n` more of the connection's due jobs into the running
    /// group whose jobs are `group` (a group that lingered for more work).
    pub async fn claim_into(
        &self,
        worker: &str,
        group: &[Job],
        n: usize,
        lease_until: i64,
    ) -> anyhow::Result<Vec<Job>> {
        let worker = worker.to_string();
        let Some(first) = group.first() else {
            return Ok(Vec::new());
        };
        let (connection, first, priority) = (first.connection_id.clone(), first.id, first.priority);
        self.with(move |db| {
            let tx = db.savepoint()?;
            let now = now_ms();
            let id: Option<String> = query_row(
                &tx,
                "SELECT claim_group FROM jobs WHERE id = ?1 AND state = 'running' AND lease_owner = ?2",
                params![first, worker],
                |r| r.get(0),
            )
            .optional()?
            .flatten();
            let paused: Option<i64> = query_row(
                &tx,
                "SELECT 1 FROM connections WHERE id = ?1 AND paused_until > ?2",
                params![connection, now],
                |r| r.get(0),
            )
            .optional()?;
            let Some(id) = id.filter(|_| paused.is_none()) else {
                return Ok(Vec::new());
            };
            // Only jobs of the group's own priority join it.
            let grouping = Grouping {
                groups: 1,
                size: n,
                bulk_groups: 1,
                into: Some((id, priority)),
            };
            let jobs = take(&tx, &worker, &connection, grouping, lease_until, now)?.concat();
            tx.commit()?;
            Ok(jobs)
        })
        .await
    }

    /// Pauses `connection` until `until` (ms since the epoch), by `by`,
    /// with `reason`, unless it already is until later (R5). Every
    /// worker's claims skip it until then.
    pub async fn pause_connection(
        &self,
        connection: &str,
        until: i64,
        by: PausedBy,
        reason: &str,
    ) -> anyhow::Result<()> {
        let (c, r) = (connection.to_string(), reason.to_string());
        self.with(move |db| {
            exec(
                db,
                "UPDATE connections SET paused_until = ?2, paused_by = ?3, paused_reason = ?4
                 WHERE id = ?1 AND (paused_until IS NULL OR paused_until < ?2)",
                params![c, until, by.as_str(), r],
            )?;
            Ok(())
        })
        .await
    }

    /// Until when `connection` is paused and by what, if it is.
    pub async fn paused(&self, connection: &str) -> anyhow::Result<Option<(i64, PausedBy)>> {
        let c = connection.to_string();
        self.with(move |db| {
            let row: Option<(Option<i64>, Option<String>)> = query_row(
                db,
                "SELECT paused_until, paused_by FROM connections WHERE id = ?1",
                [c],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
            Ok(row.and_then(|(until, by)| {
                let by = match by.as_deref() {
                    Some("erp") => PausedBy::Erp,
                    _ => PausedBy::Budget,
                };
                until.filter(|u| *u > now_ms()).map(|u| (u, by))
            }))
        })
        .await
    }

    /// Lifts `connection`'s pause (an operator's `connection resume`, or
    /// its budget's limits changed; then `only_budget`), and makes its
    /// queued syncs, which waited for the pause's end, due now. Returns
    /// whether it was paused.
    pub async fn clear_pause(&self, connection: &str, only_budget: bool) -> anyhow::Result<bool> {
        let c = connection.to_string();
        self.with(move |db| {
            let tx = db.savepoint()?;
            let now = now_ms();
            let n = exec(
                &tx,
                "UPDATE connections SET paused_until = NULL, paused_by = NULL, paused_reason = NULL
                 WHERE id = ?1 AND paused_until > ?2 AND (NOT ?3 OR paused_by = 'budget')",
                params![c, now, only_budget],
            )?;
            if n > 0 {
                exec(
                    &tx,
                    "UPDATE jobs SET due_at = ?2 WHERE state = 'queued' AND connection_id = ?1 AND due_at > ?2",
                    params![c, now],
                )?;
            }
            tx.commit()?;
            Ok(n > 0)
        })
        .await
    }

    /// When each connection its ERP paused resumes (ms since the epoch):
    /// for the worker's own record of pauses another process made.
    pub async fn pauses(&self) -> anyhow::Result<Vec<(String, i64)>> {
        self.with(|db| {
            let mut stmt = db.prepare_cached(
                "SELECT id, paused_until FROM connections WHERE paused_until > ?1 AND paused_by = 'erp'",
            )?;
            let rows = stmt.query_map([now_ms()], |r| Ok((r.get(0)?, r.get(1)?)))?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    /// How many workers beat in the last `within_ms`: the processes that
    /// share each connection's budget.
    pub async fn live_workers(&self, within_ms: i64) -> anyhow::Result<u32> {
        self.with(move |db| {
            let n: i64 = query_row(
                db,
                "SELECT COUNT(*) FROM workers WHERE heartbeat_at >= ?1",
                [now_ms() - within_ms],
                |r| r.get(0),
            )?;
            Ok(n.clamp(1, i64::from(u32::MAX)) as u32)
        })
        .await
    }

    /// When the rest of `run` is next due, if none of it runs now and all of
    /// it is queued past `before` (a retry time, or a paused connection):
    /// such a run is deferred, and a waiting caller need not wait for it.
    pub async fn run_deferred_until(&self, run: &str, before: i64) -> anyhow::Result<Option<i64>> {
        let run = run.to_string();
        self.with(move |db| {
            let (queued, running, next): (i64, i64, Option<i64>) = query_row(
                db,
                "SELECT COALESCE(SUM(j.state = 'queued'), 0), COALESCE(SUM(j.state = 'running'), 0),
                   MIN(CASE WHEN j.state = 'queued' THEN MAX(j.due_at, COALESCE(c.paused_until, 0)) END)
                 FROM jobs j LEFT JOIN connections c ON c.id = j.connection_id
                 WHERE j.run_id = ?1 AND j.state IN ('queued', 'running')",
                [run],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )?;
            Ok(next.filter(|n| queued > 0 && running == 0 && *n >= before))
        })
        .await
    }

    /// The calls every worker recorded, per connection: in the last minute
    /// (reports of the last minute) and the last day.
    pub async fn recorded_usage(&self) -> anyhow::Result<Vec<(String, u64, u64)>> {
        self.with(|db| {
            let now = now_ms();
            let mut stmt = db.prepare_cached(
                "SELECT connection_id, COALESCE(SUM(CASE WHEN at >= ?1 THEN calls_minute END), 0), SUM(calls_day)
                 FROM connection_usage GROUP BY connection_id",
            )?;
            let rows = stmt.query_map([now - 60_000], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64, r.get::<_, i64>(2)? as u64))
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    /// Records `worker`'s calls in the last minute and day, per connection.
    pub async fn record_usage(
        &self,
        worker: &str,
        usage: Vec<(String, u64, u64)>,
    ) -> anyhow::Result<()> {
        let worker = worker.to_string();
        self.with(move |db| {
            let tx = db.savepoint()?;
            let now = now_ms();
            for (connection, minute, day) in usage {
                exec(
                    &tx,
                    "INSERT INTO connection_usage (connection_id, worker_id, calls_minute, calls_day, at)
                     VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (connection_id, worker_id) DO UPDATE SET calls_minute = excluded.calls_minute,
                       calls_day = excluded.calls_day, at = excluded.at",
                    params![connection, worker, minute as i64, day as i64, now],
                )?;
            }
            // A day's usage of a worker long gone no longer counts.
            exec(&tx, "DELETE FROM connection_usage WHERE at < ?1", [now - 24 * 3600 * 1000])?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// Every connection's queue, budget and pause (R5), for operators.
    pub async fn queue_status(&self) -> anyhow::Result<Vec<ConnectionStatus>> {
        self.with(|db| {
            let now = now_ms();
            let conns: Vec<(Connection, Option<i64>, Option<String>)> = {
                let mut stmt = db.prepare_cached(
                    "SELECT config, enabled, paused_until, paused_reason FROM connections ORDER BY tenant_id, id",
                )?;
                let rows = stmt.query_map([], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, bool>(1)?,
                        r.get::<_, Option<i64>>(2)?,
                        r.get::<_, Option<String>>(3)?,
                    ))
                })?;
                let mut out = Vec::new();
                for row in rows {
                    let (config, enabled, until, reason) = row?;
                    let c = super::records::parse_connection(&config, None, enabled)?;
                    out.push((c, until, reason));
                }
                out
            };
            let mut out = Vec::new();
            for (c, paused_until, paused_reason) in conns {
                let mut s = ConnectionStatus {
                    id: c.id.clone(),
                    tenant_id: c.tenant_id.clone(),
                    plugin: c.plugin.clone(),
                    enabled: c.enabled,
                    queued: BTreeMap::new(),
                    due: 0,
                    running: 0,
                    waiting: 0,
                    blocked: 0,
                    limits: c.limits.clone(),
                    calls_last_minute: 0,
                    calls_last_day: 0,
                    paused_until: paused_until.filter(|u| *u > now),
                    paused_reason: paused_reason.filter(|_| paused_until.is_some_and(|u| u > now)),
                    needs_reauthorisation: query_row(
                        db,
                        "SELECT refused FROM oauth_grants WHERE connection_id = ?1",
                        [&c.id],
                        |r| r.get::<_, Option<String>>(0),
                    )
                    .optional()?
                    .flatten(),
                    plugin_version: None,
                    plugin_refused: None,
                };
                let mut stmt = db.prepare_cached(
                    "SELECT state, priority, target, COUNT(*), SUM(due_at <= ?2) FROM jobs
                     WHERE connection_id = ?1 AND state IN ('queued', 'running', 'waiting', 'blocked')
                     GROUP BY 1, 2, 3",
                )?;
                let rows = stmt.query_map(params![c.id, now], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, i64>(3)? as usize,
                        r.get::<_, i64>(4)? as usize,
                    ))
                })?;
                for row in rows {
                    let (state, priority, target, n, due) = row?;
                    match state.as_str() {
                        "queued" => {
                            let kind = format!("{} {target}", Priority::from_i64(priority).as_str());
                            *s.queued.entry(kind).or_default() += n;
                            s.due += due;
                        }
                        "running" => s.running += n,
                        "waiting" => s.waiting += n,
                        _ => s.blocked += n,
                    }
                }
                drop(stmt);
                let (minute, day): (i64, i64) = query_row(
                    db,
                    "SELECT COALESCE(SUM(CASE WHEN at >= ?2 THEN calls_minute END), 0), COALESCE(SUM(calls_day), 0)
                     FROM connection_usage WHERE connection_id = ?1",
                    params![c.id, now - 120_000],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )?;
                s.calls_last_minute = minute as u64;
                s.calls_last_day = day as u64;
                out.push(s);
            }
            Ok(out)
        })
        .await
    }
}

/// The limits in a connection's stored config (defaults if unreadable:
/// the config was checked when stored).
/// What to claim of one connection (see [`Store::claim`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimPlan {
    pub connection: String,
    /// Groups wanted.
    pub groups: usize,
    /// Jobs per group: the connector's items per call.
    pub size: usize,
    /// Groups of the connection that may run at once: its calls at once.
    pub most_groups: usize,
    /// Groups of bulk work that may run at once (the engine leaves room
    /// for other work beside a bulk run).
    pub most_bulk_groups: usize,
}

/// The connection's groups running now, in every worker; only those of
/// `priority` when given (a group's jobs share their priority).
fn running_groups(
    db: &rusqlite::Connection,
    connection: &str,
    priority: Option<Priority>,
) -> rusqlite::Result<usize> {
    let n: i64 = query_row(
        db,
        "SELECT COUNT(DISTINCT COALESCE(claim_group, 'job ' || id)) FROM jobs
         WHERE state = 'running' AND connection_id = ?1 AND (?2 IS NULL OR priority = ?2)",
        params![connection, priority.map(Priority::as_i64)],
        |r| r.get(0),
    )?;
    Ok(n as usize)
}

/// How [`take`] forms groups.
struct Grouping {
    /// New groups at most.
    groups: usize,
    /// Jobs per group at most.
    size: usize,
    /// New groups of bulk work at most.
    bulk_groups: usize,
    /// Joins this running group (its id and priority) instead.
    into: Option<(String, Priority)>,
}

/// Leases `connection`'s due jobs to `worker`, best first, in groups as
/// `g` says: a group's jobs share their priority (a funding-complete payment
/// never waits in a group of bulk work), and never two jobs of one document
/// (nor one whose document has a job running).
fn take(
    tx: &rusqlite::Connection,
    worker: &str,
    connection: &str,
    g: Grouping,
    lease_until: i64,
    now: i64,
) -> rusqlite::Result<Vec<Vec<Job>>> {
    let n = g.groups * g.size;
    if n == 0 {
        return Ok(Vec::new());
    }
    let only = g.into.as_ref().map(|(_, p)| p.as_i64());
    // `+due_at`: the connection's index gives the order, so a claim reads a
    // few rows however long the queue (with the due-time index SQLite would
    // sort every due job).
    let candidates: Vec<Job> = {
        let mut stmt = tx.prepare_cached(&format!(
            "SELECT {} FROM jobs j WHERE state = 'queued' AND connection_id = ?1 AND +due_at <= ?2
               AND (?4 IS NULL OR priority = ?4)
               AND NOT EXISTS (SELECT 1 FROM jobs r WHERE r.state = 'running'
                   AND r.connection_id = j.connection_id AND r.document_id = j.document_id)
             ORDER BY priority, due_at, target, id LIMIT ?3",
            super::jobs::JOB_COLUMNS
        ))?;
        stmt.query_map(
            params![connection, now, (n * 2) as i64, only],
            super::jobs::job_from_row,
        )?
        .collect::<Result<_, _>>()?
    };
    let mut documents = HashSet::new();
    let mut groups: Vec<Vec<Job>> = Vec::new();
    let (mut id, mut bulk) = (String::new(), 0);
    for mut job in candidates {
        if documents.contains(&job.document_id) {
            continue;
        }
        let new = groups
            .last()
            .is_none_or(|last| last.len() == g.size || last[0].priority != job.priority);
        if new {
            if groups.len() == g.groups {
                break;
            }
            if job.priority == Priority::Bulk {
                // Candidates come best priority first: the rest is bulk too.
                if bulk == g.bulk_groups {
                    break;
                }
                bulk += 1;
            }
            id = match &g.into {
                Some((into, _)) => into.clone(),
                None => uuid::Uuid::new_v4().to_string(),
            };
            groups.push(Vec::new());
        }
        documents.insert(job.document_id.clone());
        exec(
            tx,
            "UPDATE jobs SET state = 'running', lease_until = ?2, lease_owner = ?3, claim_group = ?4
             WHERE id = ?1",
            params![job.id, lease_until, worker, id],
        )?;
        job.lease_owner = worker.to_string();
        groups.last_mut().expect("a group was opened").push(job);
    }
    Ok(groups)
}

/// Due jobs counted per connection: enough for every call at once of the
/// largest batches ([`crate::model::LimitOverrides::CALLS_AT_ONCE`] ×
/// [`crate::runtime::MAX_ITEMS_PER_CALL`]).
pub const MOST_DUE_COUNTED: usize = 1600;

fn plugin_of(config: &str) -> String {
    serde_json::from_str::<serde_json::Value>(config)
        .ok()
        .and_then(|v| v.get("plugin")?.as_str().map(str::to_string))
        .unwrap_or_default()
}

fn limits_of(config: &str) -> LimitOverrides {
    serde_json::from_str::<serde_json::Value>(config)
        .ok()
        .and_then(|v| serde_json::from_value(v.get("limits")?.clone()).ok())
        .unwrap_or_default()
}
