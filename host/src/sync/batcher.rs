//! Batching: the jobs of one group (due jobs of one connection, claimed
//! together) run side by side, each through its own M3 machine, and their
//! plugin calls meet here. When every job of the group is waiting (on a
//! call or an intent) or done, the waiting intents are recorded in one
//! transaction, then the waiting calls go out: gathered by operation, up to
//! the connector's items per call, each batch one plugin call. Each item's
//! answer goes back to its own job, so an item that fails is retried or
//! sent to Requires attention on its own; its batch-mates never see it.
//!
//! Exactly-once is per item as before (D2): an item's create intent is
//! recorded before the call that carries it, and a retry looks the item up
//! by reference first (those lookups are batched too).

use super::Engine;
use super::limits::items_per_call;
use super::retry::MAX_RETRY_AFTER;
use super::tokens::TokenError;
use crate::model::LimitOverrides;
use crate::runtime::bindings as wit;
use crate::runtime::{
    BatchOutcome, CallError, Item, LogLine, LogSource, Operation, Plugin, PluginFault, Reply,
    Sandbox,
};
use crate::store::{EntryRow, Job, PausedBy, now_ms};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, oneshot};

/// What a job's calls go out with: the same for every job of a group,
/// unless the connection changed under it.
pub(super) struct Setup {
    pub connection: String,
    pub plugin: Arc<Plugin>,
    pub sandbox: Sandbox,
    /// The connection's effective limits (R2).
    pub limits: LimitOverrides,
    /// The connection as its job read it: jobs whose connection reads the
    /// same share a setup, and only calls of one setup share a batch.
    pub fingerprint: String,
    /// The connection's OAuth2 client, when the host holds its tokens (P2).
    pub oauth2: Option<crate::model::OAuth2>,
}

/// One item's answer.
pub(super) struct Answer {
    pub result: Result<Reply, CallError>,
    /// The call's log lines that concern this item (see [`attribute`]).
    pub logs: Vec<LogLine>,
    /// The items of the call that carried it (0: not sent).
    pub batch: usize,
    /// The call's idempotency key.
    pub call_key: String,
}

struct Waiting {
    setup: Arc<Setup>,
    subject: String,
    item: Item,
    reply: oneshot::Sender<Answer>,
}

struct Intent {
    row: EntryRow,
    job: Job,
    reply: oneshot::Sender<anyhow::Result<()>>,
}

struct State {
    /// Jobs computing (neither waiting nor done).
    running: usize,
    /// Jobs not done.
    left: usize,
    calls: Vec<Waiting>,
    intents: Vec<Intent>,
    /// The group's first call was paid for by its claim (R2).
    prepaid: bool,
}

/// The meeting point of one group's calls.
pub(super) struct Batcher<'e> {
    engine: &'e Engine,
    state: Mutex<State>,
    wake: Notify,
    setups: Mutex<Vec<Arc<Setup>>>,
}

impl<'e> Batcher<'e> {
    /// A batcher for a group of `jobs` jobs, all running from the start.
    pub fn new(engine: &'e Engine, jobs: usize) -> Batcher<'e> {
        Batcher {
            engine,
            state: Mutex::new(State {
                running: jobs,
                left: jobs,
                calls: Vec::new(),
                intents: Vec::new(),
                prepaid: true,
            }),
            wake: Notify::new(),
            setups: Mutex::new(Vec::new()),
        }
    }

    /// The group's setup equal to `setup` (same connection, as read, and
    /// same plugin), or `setup` itself when it is the first such.
    pub fn setup(&self, setup: Setup) -> Arc<Setup> {
        let mut setups = self.setups.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(same) = setups.iter().find(|s| {
            s.connection == setup.connection
                && s.fingerprint == setup.fingerprint
                && s.limits == setup.limits
                && Arc::ptr_eq(&s.plugin, &setup.plugin)
        }) {
            return same.clone();
        }
        let setup = Arc::new(setup);
        setups.push(setup.clone());
        setup
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic elsewhere cannot leave the counts half-changed: every
        // change is one statement under the lock.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A job of the group is done (whatever its result).
    pub fn done(&self) {
        let mut s = self.state();
        s.running -= 1;
        s.left -= 1;
        drop(s);
        self.wake.notify_one();
    }

    /// Sends `operation` (for `subject`, a document's or payment's id) with
    /// the next batch, and waits for its answer.
    pub async fn call(
        &self,
        setup: &Arc<Setup>,
        subject: &str,
        key: String,
        operation: Operation,
    ) -> Answer {
        let (reply, answer) = oneshot::channel();
        {
            let mut s = self.state();
            s.calls.push(Waiting {
                setup: setup.clone(),
                subject: subject.to_string(),
                item: Item { key, operation },
                reply,
            });
            s.running -= 1;
        }
        self.wake.notify_one();
        answer.await.unwrap_or_else(|_| Answer {
            result: Err(CallError::HeldBack(Duration::ZERO)),
            logs: Vec::new(),
            batch: 0,
            call_key: String::new(),
        })
    }

    /// Records a create's intent (D2) with the others waiting, in one
    /// transaction, before the call that carries the create.
    pub async fn record_intent(&self, row: EntryRow, job: &Job) -> anyhow::Result<()> {
        let (reply, answer) = oneshot::channel();
        {
            let mut s = self.state();
            s.intents.push(Intent {
                row,
                job: job.clone(),
                reply,
            });
            s.running -= 1;
        }
        self.wake.notify_one();
        answer
            .await
            .unwrap_or_else(|_| Err(anyhow::anyhow!("the batch stopped before recording")))
    }

    /// Answers `n` waiting jobs: they compute again from here.
    fn resume(&self, n: usize) {
        self.state().running += n;
    }

    /// Runs the group's calls until every job is done.
    pub async fn drive(&self) {
        enum Work {
            Intents(Vec<Intent>),
            Calls(Vec<Waiting>),
        }
        loop {
            let notified = self.wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let work = {
                let mut s = self.state();
                if s.left == 0 {
                    return;
                }
                if s.running > 0 {
                    None
                } else if !s.intents.is_empty() {
                    Some(Work::Intents(std::mem::take(&mut s.intents)))
                } else if !s.calls.is_empty() {
                    Some(Work::Calls(std::mem::take(&mut s.calls)))
                } else {
                    None
                }
            };
            match work {
                None => notified.await,
                Some(Work::Intents(intents)) => self.record(intents).await,
                Some(Work::Calls(calls)) => {
                    let batches = gather(calls);
                    // One call at a time: a group counts once against the
                    // connection's calls at once (R2).
                    for batch in batches {
                        self.send(batch).await;
                    }
                }
            }
        }
    }

    async fn record(&self, intents: Vec<Intent>) {
        let rows = intents
            .iter()
            .map(|i| (i.row.clone(), i.job.clone()))
            .collect();
        let results = self.engine.store.record_intents(rows).await;
        self.resume(intents.len());
        match results {
            Ok(results) => {
                for (intent, r) in intents.into_iter().zip(results) {
                    let _ = intent.reply.send(r.map_err(anyhow::Error::msg));
                }
            }
            Err(e) => {
                let why = format!("{e:#}");
                for intent in intents {
                    let _ = intent.reply.send(Err(anyhow::anyhow!("{why}")));
                }
            }
        }
    }

    /// One call: its share of the budget (R2), the plugin call, a pause
    /// when the ERP throttled (R5), and each item's answer to its job.
    async fn send(&self, batch: Vec<Waiting>) {
        let engine = self.engine;
        let setup = batch[0].setup.clone();
        let prepaid = std::mem::take(&mut self.state().prepaid);
        let n = batch.len();
        if let Err(wait) = engine.pace(&setup.connection, &setup.limits, prepaid).await {
            self.resume(n);
            for w in batch {
                let _ = w.reply.send(Answer {
                    result: Err(CallError::HeldBack(wait)),
                    logs: Vec::new(),
                    batch: 0,
                    call_key: String::new(),
                });
            }
            return;
        }
        let started = std::time::Instant::now();
        let (names, replies, items): (Vec<[String; 2]>, Vec<_>, Vec<Item>) = batch
            .into_iter()
            .map(|w| ([w.subject, w.item.key.clone()], w.reply, w.item))
            .fold((vec![], vec![], vec![]), |mut acc, (s, r, i)| {
                acc.0.push(s);
                acc.1.push(r);
                acc.2.push(i);
                acc
            });
        let single = matches!(
            items.as_slice(),
            [Item {
                operation: Operation::CheckNumbersInUse { .. },
                ..
            }]
        );
        let (results, logs, call_key) = if single {
            let Item { key, operation } = items.into_iter().next().expect("one item");
            let (result, logs) = self.plugin_call(&setup, &key, operation).await;
            (vec![result], logs, key)
        } else {
            // Kept to send alone should the plugin fault on the batch.
            let alone = (n > 1).then(|| items.clone());
            let out = self.plugin_batch(&setup, items).await;
            match (out.result, alone) {
                (Ok(each), _) => (each, out.logs, out.key),
                // A plugin that faults on a batch (a trap on one item's
                // data, a wrong count, a reply over its bounds, its memory
                // limit) must not drag the items it could have handled:
                // each goes again alone, a create looked up first. Not a
                // deadline: a slow ERP would make that n deadlines; those
                // items are retried later.
                (Err(CallError::Fault(fault)), Some(alone))
                    if !matches!(
                        fault,
                        PluginFault::Deadline(_) | PluginFault::Instantiate(_)
                    ) =>
                {
                    self.count_call(started);
                    return self
                        .one_by_one(&setup, alone, names, replies, &fault, out.logs)
                        .await;
                }
                (Err(e), _) => (vec![Err(e); n], out.logs, out.key),
            }
        };
        self.count_call(started);
        self.pause_if_throttled(&setup, &results).await;
        let mut lines = attribute(&logs, &names);
        self.resume(n);
        for (i, (reply, result)) in replies.into_iter().zip(results).enumerate() {
            let _ = reply.send(Answer {
                result,
                logs: std::mem::take(&mut lines[i]),
                batch: n,
                call_key: call_key.clone(),
            });
        }
    }

    fn count_call(&self, started: std::time::Instant) {
        let stats = &self.engine.stats;
        stats.plugin_ns.fetch_add(
            started.elapsed().as_nanos() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        stats
            .plugin_calls
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// A `rate-limited` answer pauses the whole connection (R5).
    async fn pause_if_throttled(&self, setup: &Setup, results: &[Result<Reply, CallError>]) {
        let Some(r) = results.iter().find_map(|r| match r {
            Err(CallError::Connector(wit::ConnectorError::RateLimited(r))) => Some(r),
            _ => None,
        }) else {
            return;
        };
        let engine = self.engine;
        let after = r
            .retry_after_ms
            .map_or(engine.retry.base, Duration::from_millis)
            .min(MAX_RETRY_AFTER);
        let until = now_ms().saturating_add(after.as_millis() as i64);
        let reason = format!("the ERP answered rate-limited: {}", r.message);
        engine
            .pause(
                &setup.connection,
                &setup.limits,
                until,
                PausedBy::Erp,
                &reason,
            )
            .await;
    }

    /// Sends each item of a batch the plugin faulted on in a call of its
    /// own (each paced by the budget), so only the item that causes the
    /// fault fails; every item's log shows the batch's fault first.
    async fn one_by_one(
        &self,
        setup: &Arc<Setup>,
        items: Vec<Item>,
        names: Vec<[String; 2]>,
        replies: Vec<oneshot::Sender<Answer>>,
        fault: &PluginFault,
        batch_logs: Vec<LogLine>,
    ) {
        let n = items.len();
        tracing::warn!(
            connection = %setup.connection,
            items = n,
            "the plugin faulted on a batch ({fault}); its items go again one by one"
        );
        let shared = attribute(&batch_logs, &names);
        let mut answers = Vec::with_capacity(n);
        for (item, mut logs) in items.into_iter().zip(shared) {
            // The ERP may have made a create before the plugin faulted: it
            // is looked up first (D2), and sent again only when not found.
            if let Some(lookup) = lookup_of(&item) {
                match self.alone(setup, lookup, fault, &mut logs).await {
                    (Ok(Reply::Found(None)), _) => {}
                    (Ok(Reply::Found(Some(entry))), key) => {
                        answers.push(Answer {
                            result: Ok(Reply::Entry(entry)),
                            logs,
                            batch: 1,
                            call_key: key,
                        });
                        continue;
                    }
                    (other, key) => {
                        answers.push(Answer {
                            result: other,
                            logs,
                            batch: 1,
                            call_key: key,
                        });
                        continue;
                    }
                }
            }
            let (result, key) = self.alone(setup, item, fault, &mut logs).await;
            answers.push(Answer {
                result,
                logs,
                batch: 1,
                call_key: key,
            });
        }
        self.resume(n);
        for (reply, answer) in replies.into_iter().zip(answers) {
            let _ = reply.send(answer);
        }
    }
}

impl Batcher<'_> {
    /// The sandbox of one call: the setup's, with the connection's OAuth2
    /// access token as `Authorization` when it has one (P2), and that
    /// token. `rejected`: a token the ERP just refused.
    async fn authorised(
        &self,
        setup: &Setup,
        rejected: Option<&str>,
    ) -> Result<(Sandbox, Option<Authorised>), CallError> {
        let Some(oauth2) = &setup.oauth2 else {
            return Ok((setup.sandbox.clone(), None));
        };
        let token = self
            .engine
            .tokens
            .access(&self.engine.store, &setup.connection, oauth2, rejected)
            .await
            .map_err(|e| {
                CallError::Connector(match e {
                    TokenError::Refused(m) => wit::ConnectorError::Unauthorized(m),
                    TokenError::Unavailable(m) => wit::ConnectorError::Unavailable(format!(
                        "no OAuth2 access token could be obtained: {m}"
                    )),
                })
            })?;
        let refused = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let bearer = crate::runtime::Credential::new("authorization", &format!("Bearer {token}"))
            .map_err(|m| CallError::Connector(wit::ConnectorError::Unauthorized(m)))?
            .watched(refused.clone());
        let mut sandbox = setup.sandbox.clone();
        sandbox
            .credentials
            .retain(|c| c.header != http::header::AUTHORIZATION);
        sandbox.credentials.push(bearer);
        Ok((sandbox, Some(Authorised { token, refused })))
    }
    /// A batch call to the plugin. Under OAuth2, items the ERP answered
    /// `unauthorized` (the whole call, or some items when the token expired
    /// during it) go once more with a refreshed token (P2).
    async fn plugin_batch(&self, setup: &Setup, items: Vec<Item>) -> BatchOutcome {
        let runtime = &self.engine.runtime;
        let (sandbox, token) = match self.authorised(setup, None).await {
            Ok(s) => s,
            Err(e) => return BatchOutcome::refused(e, &items),
        };
        let Some(auth) = token else {
            return runtime.call_batch(&setup.plugin, &sandbox, items).await;
        };
        let kept = items.clone();
        let mut out = runtime.call_batch(&setup.plugin, &sandbox, items).await;
        // Only the ERP's own 401, seen by the host, earns a refresh: a
        // plugin answering `unauthorized` whatever the ERP said must not
        // make the host storm the token endpoint.
        if !auth.erp_refused() {
            return out;
        }
        let again: Vec<usize> = match &out.result {
            Err(e) if unauthorized(e) => (0..kept.len()).collect(),
            Ok(each) => (0..each.len())
                .filter(|&i| each[i].as_ref().is_err_and(unauthorized))
                .collect(),
            Err(_) => Vec::new(),
        };
        if again.is_empty() {
            return out;
        }
        let (sandbox, _) = match self.authorised(setup, Some(&auth.token)).await {
            Ok(s) => s,
            Err(e) => {
                out.logs.push(LogLine::host(format!("{e}")));
                return out;
            }
        };
        out.logs.push(LogLine::host(format!(
            "the ERP refused the access token; refreshed it and sent {} item(s) once more",
            again.len()
        )));
        let retry: Vec<Item> = again.iter().map(|&i| kept[i].clone()).collect();
        let second = runtime.call_batch(&setup.plugin, &sandbox, retry).await;
        out.logs.extend(second.logs);
        out.result = match (out.result, second.result) {
            (Err(_), second) => second,
            (Ok(mut each), Ok(answers)) => {
                for (i, a) in again.into_iter().zip(answers) {
                    each[i] = a;
                }
                Ok(each)
            }
            (Ok(mut each), Err(e)) => {
                for i in again {
                    each[i] = Err(e.clone());
                }
                Ok(each)
            }
        };
        out.key = if out.key.is_empty() {
            second.key
        } else {
            out.key
        };
        out
    }

    /// A single call to the plugin (check numbers in use), with the same
    /// OAuth2 handling as [`Self::plugin_batch`].
    async fn plugin_call(
        &self,
        setup: &Setup,
        key: &str,
        operation: Operation,
    ) -> (Result<Reply, CallError>, Vec<LogLine>) {
        let runtime = &self.engine.runtime;
        let (sandbox, token) = match self.authorised(setup, None).await {
            Ok(s) => s,
            Err(e) => return (Err(e), Vec::new()),
        };
        let out = runtime
            .call(&setup.plugin, &sandbox, key, operation.clone())
            .await;
        let Some(auth) = token else {
            return (out.result, out.logs);
        };
        if !auth.erp_refused() || !out.result.as_ref().is_err_and(unauthorized) {
            return (out.result, out.logs);
        }
        let mut logs = out.logs;
        match self.authorised(setup, Some(&auth.token)).await {
            Ok((sandbox, _)) => {
                logs.push(LogLine::host(
                    "the ERP refused the access token; refreshed it and called once more".into(),
                ));
                let again = runtime.call(&setup.plugin, &sandbox, key, operation).await;
                logs.extend(again.logs);
                (again.result, logs)
            }
            Err(e) => (Err(e), logs),
        }
    }

    /// One item in a call of its own, paced by the budget; its log lines
    /// are added to `logs`.
    async fn alone(
        &self,
        setup: &Setup,
        item: Item,
        fault: &PluginFault,
        logs: &mut Vec<LogLine>,
    ) -> (Result<Reply, CallError>, String) {
        if let Err(wait) = self
            .engine
            .pace(&setup.connection, &setup.limits, false)
            .await
        {
            return (Err(CallError::HeldBack(wait)), String::new());
        }
        let started = std::time::Instant::now();
        let out = self.plugin_batch(setup, vec![item]).await;
        self.count_call(started);
        let result = match out.result {
            Ok(mut one) => one.pop().unwrap_or(Err(CallError::Fault(fault.clone()))),
            Err(e) => Err(e),
        };
        self.pause_if_throttled(setup, std::slice::from_ref(&result))
            .await;
        logs.extend(out.logs);
        (result, out.key)
    }
}

/// The access token a call went out with, and whether the ERP answered
/// it `401`.
struct Authorised {
    token: String,
    refused: Arc<std::sync::atomic::AtomicBool>,
}

impl Authorised {
    fn erp_refused(&self) -> bool {
        self.refused.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Whether the ERP refused the credentials.
fn unauthorized(e: &CallError) -> bool {
    matches!(
        e,
        CallError::Connector(wit::ConnectorError::Unauthorized(_))
    )
}

/// The lookup by reference of a create item, with a key of its own.
fn lookup_of(item: &Item) -> Option<Item> {
    let operation = match &item.operation {
        Operation::CreateBill { bill } => Operation::LookupBill {
            bill: bill.clone(),
            known_id: None,
        },
        Operation::CreatePayment { payment } => Operation::LookupPayment {
            payment: payment.clone(),
            known_id: None,
        },
        _ => return None,
    };
    Some(Item {
        key: crate::runtime::call_key([item.key.as_str(), "lookup after a fault"]),
        operation,
    })
}

/// The waiting calls as batches: by connection setup and operation, in the
/// order they came, each at most the connector's items per call.
fn gather(calls: Vec<Waiting>) -> Vec<Vec<Waiting>> {
    let mut batches: Vec<Vec<Waiting>> = Vec::new();
    let mut open: Vec<(usize, usize)> = Vec::new(); // (batch index, its limit)
    for w in calls {
        let declared = &w.setup.plugin.descriptor.limits;
        let most = items_per_call(&w.setup.limits, Some(declared), &w.item.operation);
        let fits = open.iter().position(|&(b, limit)| {
            let first = &batches[b][0];
            batches[b].len() < limit
                && Arc::ptr_eq(&first.setup, &w.setup)
                && first.item.operation.name() == w.item.operation.name()
        });
        match fits {
            Some(o) => batches[open[o].0].push(w),
            None => {
                open.push((batches.len(), most));
                batches.push(vec![w]);
            }
        }
    }
    batches
}

/// Which of a call's log lines each of its items gets: a line that names
/// an item (its document's or payment's id, or its idempotency key) goes to
/// that item; a line naming none of them (and the host's own lines) to
/// every item. A call of one item gets them all.
fn attribute(logs: &[LogLine], items: &[[String; 2]]) -> Vec<Vec<LogLine>> {
    if items.len() == 1 {
        return vec![logs.to_vec()];
    }
    // One pass over each line for every item's names at once.
    let names: Vec<(&str, usize)> = items
        .iter()
        .enumerate()
        .flat_map(|(i, names)| names.iter().map(move |n| (n.as_str(), i)))
        .filter(|(n, _)| !n.is_empty())
        .collect();
    let Ok(finder) = aho_corasick::AhoCorasick::new(names.iter().map(|(n, _)| n)) else {
        return vec![logs.to_vec(); items.len()];
    };
    let mut out = vec![Vec::new(); items.len()];
    for line in logs {
        let mut named: Vec<usize> = Vec::new();
        if line.source != LogSource::Host {
            let text = &line.message;
            for m in finder.find_overlapping_iter(text) {
                if whole(text, m.start(), m.end()) {
                    named.push(names[m.pattern().as_usize()].1);
                }
            }
            named.sort_unstable();
            named.dedup();
        }
        if named.is_empty() {
            for o in &mut out {
                o.push(line.clone());
            }
        } else {
            for i in named {
                out[i].push(line.clone());
            }
        }
    }
    out
}

/// Whether `text[start..end]` stands as a whole: not inside a longer run
/// of letters and digits.
fn whole(text: &str, start: usize, end: usize) -> bool {
    // Ids hold `-` and `_` too: `d1` is not in `d1-a`.
    let edge = |c: Option<char>| c.is_none_or(|c| !(c.is_alphanumeric() || c == '-' || c == '_'));
    edge(text[..start].chars().next_back()) && edge(text[end..].chars().next())
}

/// Whether `text` names `word` as a whole (`d4` is not in `caad40e`, nor
/// `INV-7` in `INV-70`).
#[cfg(test)]
fn mentions(text: &str, word: &str) -> bool {
    !word.is_empty()
        && text
            .match_indices(word)
            .any(|(at, _)| whole(text, at, at + word.len()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::LogLevel;

    #[test]
    fn a_name_is_mentioned_only_as_a_whole() {
        assert!(mentions("created bills/d4.csv", "d4"));
        assert!(mentions("d4", "d4"));
        assert!(!mentions("key 3ddb2138ea220caad40e0d7", "d4"));
        assert!(!mentions("created INV-70", "INV-7"));
        assert!(mentions("created INV-7, INV-70", "INV-7"));
        assert!(!mentions("created d1-a", "d1"));
        assert!(mentions("wrote /data/bills/d1.csv", "d1"));
        assert!(!mentions("anything", ""));
    }

    fn line(source: LogSource, message: &str) -> LogLine {
        LogLine {
            source,
            level: LogLevel::Info,
            message: message.into(),
        }
    }

    /// L1: each document's log shows the lines of a shared call that are
    /// about it, and the call's general lines, not its batch-mates' lines.
    #[test]
    fn l1_a_batch_calls_log_lines_go_to_the_items_they_name() {
        let items = [
            ["d1".to_string(), "k1".to_string()],
            ["d2".to_string(), "k2".to_string()],
        ];
        let logs = [
            line(LogSource::Plugin, "created d1"),
            line(LogSource::Plugin, "create-bill key k2"),
            line(LogSource::Plugin, "sent 2 invoices"),
            line(LogSource::Host, "denied a request to d1.example"),
        ];
        let out = attribute(&logs, &items);
        let messages = |i: usize| {
            out[i]
                .iter()
                .map(|l| l.message.as_str())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            messages(0),
            [
                "created d1",
                "sent 2 invoices",
                "denied a request to d1.example"
            ]
        );
        assert_eq!(
            messages(1),
            [
                "create-bill key k2",
                "sent 2 invoices",
                "denied a request to d1.example"
            ]
        );
        assert_eq!(attribute(&logs, &items[..1])[0].len(), 4);
    }
}
