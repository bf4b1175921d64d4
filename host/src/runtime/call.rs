//! One operation on one plugin: a fresh store and instance, the connection's
//! limits, the deadline, and the answer classified for the host's policy.

use super::Runtime;
use super::bindings::{
    self as wit, Bill, Capabilities, ConnectorError, Context, Descriptor, Entry, Payment, Setting,
};
use super::bounds;
use super::capture::LogLine;
use super::fs::CallFs;
use super::outbound::Outbound;
use super::plugin::{Exports, Plugin};
use super::quota::HostMemoryExceeded;
use super::sandbox::{Sandbox, StoreState};
use super::v0_1;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use wasmtime::component::{Instance, InstancePre};
use wasmtime::{PoolConcurrencyLimitError, Store, UpdateDeadline};

/// An operation of the contract.
#[derive(Debug, Clone)]
pub enum Operation {
    /// `lookup-bill`.
    LookupBill {
        bill: Bill,
        known_id: Option<String>,
    },
    /// `create-bill`.
    CreateBill { bill: Bill },
    /// `update-bill`.
    UpdateBill { entry: Entry, bill: Bill },
    /// `lookup-payment`.
    LookupPayment {
        payment: Payment,
        known_id: Option<String>,
    },
    /// `create-payment`.
    CreatePayment { payment: Payment },
    /// `update-payment`.
    UpdatePayment { entry: Entry, payment: Payment },
    /// `check-numbers-in-use`.
    CheckNumbersInUse {
        bank_account: String,
        first: u64,
        count: u32,
    },
}

impl Operation {
    /// The contract's name of the operation.
    pub fn name(&self) -> &'static str {
        match self {
            Operation::LookupBill { .. } => "lookup-bill",
            Operation::CreateBill { .. } => "create-bill",
            Operation::UpdateBill { .. } => "update-bill",
            Operation::LookupPayment { .. } => "lookup-payment",
            Operation::CreatePayment { .. } => "create-payment",
            Operation::UpdatePayment { .. } => "update-payment",
            Operation::CheckNumbersInUse { .. } => "check-numbers-in-use",
        }
    }

    fn needs(&self) -> Capabilities {
        match self {
            Operation::LookupBill { .. }
            | Operation::CreateBill { .. }
            | Operation::UpdateBill { .. } => Capabilities::empty(),
            Operation::LookupPayment { .. } | Operation::CreatePayment { .. } => {
                Capabilities::PAYMENTS
            }
            Operation::UpdatePayment { .. } => {
                Capabilities::PAYMENTS | Capabilities::UPDATE_PAYMENTS
            }
            Operation::CheckNumbersInUse { .. } => Capabilities::CHECK_NUMBERS_IN_USE,
        }
    }
}

/// A successful answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// From a lookup: the entry, or `None` when the ERP has none.
    Found(Option<Entry>),
    /// From a create or update: the entry as it now is.
    Entry(Entry),
    /// From `check-numbers-in-use`.
    CheckNumbers(Vec<u64>),
}

/// The plugin failed in a way no ERP caused. Each fails this one operation
/// only; the next call gets a fresh instance.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PluginFault {
    /// The call ran past its deadline and was interrupted.
    #[error("the plugin ran past its {0:?} deadline and was stopped")]
    Deadline(Duration),
    /// The plugin tried to grow its memory past the limit.
    #[error("the plugin exceeded its memory limit of {0} bytes")]
    MemoryLimit(usize),
    /// The plugin trapped (a panic, an `unreachable`, an out-of-bounds access).
    #[error("the plugin crashed: {0}")]
    Trap(String),
    /// The plugin could not be instantiated.
    #[error("the plugin could not be instantiated: {0}")]
    Instantiate(String),
    /// The plugin answered something the contract does not allow: another
    /// number of results than items, a limit of zero items per call.
    #[error("the plugin broke the contract: {0}")]
    Contract(String),
    /// The plugin returned a value over its bound (an entry id, a list):
    /// refused whole, before anything stores it.
    #[error("the plugin's reply is too large: {what} over {limit} {unit}")]
    ReplyTooLarge {
        /// What was too large, for example `entry id`.
        what: &'static str,
        /// The bound.
        limit: usize,
        /// The bound's unit, for example `bytes`.
        unit: &'static str,
    },
}

/// Why an operation produced no reply.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CallError {
    /// The connector's classified answer (booked, validation, ...).
    #[error("{}", describe_connector_error(.0))]
    Connector(ConnectorError),
    /// The plugin misbehaved.
    #[error(transparent)]
    Fault(#[from] PluginFault),
    /// The call was not made: the connection's call budget (R2) has no
    /// room for this long, or the connection is paused. Nothing reached the
    /// plugin or the ERP.
    #[error("not sent: the connection's call budget has no room for {0:.0?} (or it is paused)")]
    HeldBack(Duration),
    /// The plugin does not declare the capability the operation needs.
    #[error("the {plugin} connector does not support {operation}")]
    Unsupported {
        /// The plugin's name.
        plugin: String,
        /// The operation.
        operation: &'static str,
    },
}

/// The connector's answer in plain words, for logs and messages.
pub fn describe_connector_error(e: &ConnectorError) -> String {
    match e {
        ConnectorError::Booked(m) => format!("booked in the ERP: {m}"),
        ConnectorError::NotFound(m) => format!("not found in the ERP: {m}"),
        ConnectorError::Conflict(m) => format!("changed in the ERP meanwhile: {m}"),
        ConnectorError::DuplicateCheckNumber(d) => {
            format!(
                "check number {} is already used in the ERP: {}",
                d.check_number, d.message
            )
        }
        ConnectorError::Validation(v) => format!("the ERP rejected {}: {}", v.field, v.message),
        ConnectorError::RateLimited(r) => format!("rate limited by the ERP: {}", r.message),
        ConnectorError::Unavailable(m) => format!("the ERP is unavailable: {m}"),
        ConnectorError::Unauthorized(m) => format!("the ERP refused the credentials: {m}"),
    }
}

/// The result of one operation with what the plugin logged meanwhile.
#[derive(Debug, Clone)]
pub struct CallOutcome {
    /// The answer.
    pub result: Result<Reply, CallError>,
    /// What the plugin logged and printed, and host notes about it.
    pub logs: Vec<LogLine>,
    /// Wall time of the whole call, instantiation included.
    pub elapsed: Duration,
}

/// The marker error the epoch callback raises at the deadline.
#[derive(Debug)]
struct DeadlineExceeded;

impl std::fmt::Display for DeadlineExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("deadline exceeded")
    }
}

impl std::error::Error for DeadlineExceeded {}

/// A store for one call under `sandbox`, with its limiter and a deadline
/// at `deadline`.
fn new_store(
    rt: &Runtime,
    sandbox: &Sandbox,
    fs: Option<CallFs>,
    deadline: Instant,
) -> Result<Store<StoreState>, PluginFault> {
    let outbound = Outbound {
        allowed: Arc::from(sandbox.allowed_hosts.clone()),
        credentials: Arc::from(sandbox.credentials.clone()),
        // Nothing can be sent without an allowed host: no slots to share.
        connection_slots: (!sandbox.allowed_hosts.is_empty()).then(|| {
            rt.outbound.of(
                &sandbox.tenant_id,
                &sandbox.connection_id,
                sandbox.limits.calls_at_once,
            )
        }),
        budget: sandbox.budget.clone(),
        deadline,
    };
    let state = StoreState::new(sandbox, outbound, fs)
        .map_err(|e| PluginFault::Instantiate(format!("{e:#}")))?;
    let mut store = Store::new(&rt.engine, state);
    store.limiter(|s| &mut s.limiter);
    store.set_epoch_deadline(1);
    // Yield at every tick so a busy plugin never starves other tasks on the
    // same thread, and stop it once its wall time is up.
    store.epoch_deadline_callback(move |_| {
        if Instant::now() >= deadline {
            Err(wasmtime::Error::new(DeadlineExceeded))
        } else {
            Ok(UpdateDeadline::Yield(1))
        }
    });
    Ok(store)
}

/// Instantiation failed (as opposed to the call trapping).
#[derive(Debug)]
struct InstantiateFailed(String);

impl std::fmt::Display for InstantiateFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for InstantiateFailed {}

/// Names what stopped a call: the deadline (also when it passed while
/// instantiating), the memory limit (the limiter saw the refused growth; the
/// trap itself is the guest's abort), an instantiation failure, or any other
/// trap.
pub(crate) fn classify(
    err: wasmtime::Error,
    store: Option<&Store<StoreState>>,
    sandbox: &Sandbox,
) -> PluginFault {
    if err.is::<DeadlineExceeded>() {
        PluginFault::Deadline(sandbox.limits.deadline)
    } else if store.is_some_and(|s| s.data().limiter.hit) || err.is::<HostMemoryExceeded>() {
        PluginFault::MemoryLimit(sandbox.limits.memory_bytes)
    } else if let Some(InstantiateFailed(m)) = err.downcast_ref::<InstantiateFailed>() {
        PluginFault::Instantiate(m.clone())
    } else {
        PluginFault::Trap(format!("{e:#}", e = err))
    }
}

/// The longest wait between two tries when the instance pool is full.
const POOL_RETRY_MAX: Duration = Duration::from_millis(50);

/// Instantiates `pre` in a fresh store (left in `slot`, for the caller to
/// read its limiter and log), before `deadline`. A pool momentarily full
/// with other calls' instances is waited for, not blamed on the plugin; a
/// deadline or the memory limit hit while instantiating is reported as
/// such, anything else as an instantiation failure.
pub(crate) async fn instantiate(
    rt: &Runtime,
    pre: &InstancePre<StoreState>,
    sandbox: &Sandbox,
    fs: Option<CallFs>,
    deadline: Instant,
    slot: &mut Option<Store<StoreState>>,
) -> wasmtime::Result<Instance> {
    let mut wait = Duration::from_millis(1);
    loop {
        // A failed instantiation may leave parts of the instance in its
        // store: every try starts from a fresh one.
        *slot = None;
        let mut store = new_store(rt, sandbox, fs.clone(), deadline)
            .map_err(|f| wasmtime::Error::new(InstantiateFailed(f.to_string())))?;
        let result = pre.instantiate_async(&mut store).await;
        let store = slot.insert(store);
        match result {
            Ok(instance) => return Ok(instance),
            Err(e) if e.is::<PoolConcurrencyLimitError>() => {
                if Instant::now() + wait >= deadline {
                    store.data().capture.host_line(format!(
                        "the host's instance pool stayed full until the deadline ({e}); the call was not started"
                    ));
                    return Err(wasmtime::Error::new(DeadlineExceeded));
                }
                rt.pool_waits.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(POOL_RETRY_MAX);
            }
            Err(e) if e.is::<DeadlineExceeded>() || store.data().limiter.hit => return Err(e),
            Err(e) => return Err(wasmtime::Error::new(InstantiateFailed(format!("{e:#}")))),
        }
    }
}

/// Calls `describe` on a fresh instance of `pre`.
pub(crate) async fn describe(
    rt: &Runtime,
    pre: &InstancePre<StoreState>,
    exports: &Exports,
    sandbox: &Sandbox,
) -> Result<Descriptor, CallError> {
    let _permit = rt
        .permits
        .acquire()
        .await
        .expect("the pool's semaphore is never closed");
    let deadline = Instant::now() + sandbox.limits.deadline;
    let mut slot = None;
    let run = async {
        let instance = instantiate(rt, pre, sandbox, None, deadline, &mut slot).await?;
        let store = slot.as_mut().expect("instantiate leaves its store");
        match exports {
            Exports::Current(indices) => {
                let plugin = indices.load(&mut *store, &instance)?;
                plugin
                    .ledgerbridge_connector_connector()
                    .call_describe(store)
                    .await
            }
            Exports::V0_1(indices) => {
                let plugin = indices.load(&mut *store, &instance)?;
                plugin
                    .ledgerbridge_connector_connector()
                    .call_describe(store)
                    .await
                    .map(v0_1::descriptor)
            }
        }
    };
    match tokio::time::timeout(sandbox.limits.deadline + GRACE, run).await {
        Ok(Ok(d)) => bounds::descriptor(d).map_err(CallError::Fault),
        Ok(Err(e)) => Err(bounds::fault(classify(e, slot.as_ref(), sandbox)).into()),
        Err(_) => Err(PluginFault::Deadline(sandbox.limits.deadline).into()),
    }
}

/// Beyond the deadline, how long the outer timer waits before giving up on a
/// call stuck in a host call (where the epoch cannot interrupt it).
const GRACE: Duration = Duration::from_secs(1);

/// One item of a call: its idempotency key and its operation.
#[derive(Debug, Clone)]
pub struct Item {
    /// The item's key: the same for every retry of the same intent.
    pub key: String,
    /// What to do.
    pub operation: Operation,
}

/// The result of a call of several items of one operation.
#[derive(Debug, Clone)]
pub struct BatchOutcome {
    /// One result per item, in order; or the call's error when nothing was
    /// done for any item (the ERP refused the credentials, throttled or
    /// failed the request, the plugin faulted, the budget held it back).
    pub result: Result<Vec<Result<Reply, CallError>>, CallError>,
    /// What the plugin logged and printed, and host notes about it.
    pub logs: Vec<LogLine>,
    /// Wall time of the whole call, instantiation included.
    pub elapsed: Duration,
    /// The call's idempotency key, derived from its items' keys.
    pub key: String,
    /// Plugin calls made: 1, or one per item for a 0.1 plugin.
    pub calls: usize,
}

impl BatchOutcome {
    /// A call not made: `error` answers it as a whole.
    pub fn refused(error: CallError, items: &[Item]) -> BatchOutcome {
        BatchOutcome {
            result: Err(error),
            logs: Vec::new(),
            elapsed: Duration::ZERO,
            key: call_key(items.iter().map(|i| i.key.as_str())),
            calls: 0,
        }
    }
}

/// The items of one call, in the contract's shapes.
enum Batch {
    LookupBills(Vec<wit::BillLookup>),
    CreateBills(Vec<wit::BillCreate>),
    UpdateBills(Vec<wit::BillUpdate>),
    LookupPayments(Vec<wit::PaymentLookup>),
    CreatePayments(Vec<wit::PaymentCreate>),
    UpdatePayments(Vec<wit::PaymentUpdate>),
}

/// What one plugin call carries.
enum Invocation {
    Batch(Batch),
    CheckNumbers {
        bank_account: String,
        first: u64,
        count: u32,
    },
}

impl Batch {
    fn len(&self) -> usize {
        match self {
            Batch::LookupBills(v) => v.len(),
            Batch::CreateBills(v) => v.len(),
            Batch::UpdateBills(v) => v.len(),
            Batch::LookupPayments(v) => v.len(),
            Batch::CreatePayments(v) => v.len(),
            Batch::UpdatePayments(v) => v.len(),
        }
    }

    /// The items as one batch, when they are all of one entry operation.
    fn of(items: Vec<Item>) -> Option<Batch> {
        let first = items.first()?.operation.name();
        if items.iter().any(|i| i.operation.name() != first) {
            return None;
        }
        macro_rules! gather {
            ($variant:ident, $pattern:pat => $item:expr) => {
                Batch::$variant(
                    items
                        .into_iter()
                        .filter_map(|Item { key, operation }| match operation {
                            $pattern => Some($item(key)),
                            _ => None,
                        })
                        .collect(),
                )
            };
        }
        Some(match items[0].operation {
            Operation::LookupBill { .. } => {
                gather!(LookupBills, Operation::LookupBill { bill, known_id } =>
                    |key| wit::BillLookup { key, bill, known_id })
            }
            Operation::CreateBill { .. } => {
                gather!(CreateBills, Operation::CreateBill { bill } =>
                    |key| wit::BillCreate { key, bill })
            }
            Operation::UpdateBill { .. } => {
                gather!(UpdateBills, Operation::UpdateBill { entry, bill } =>
                    |key| wit::BillUpdate { key, entry, bill })
            }
            Operation::LookupPayment { .. } => {
                gather!(LookupPayments, Operation::LookupPayment { payment, known_id } =>
                    |key| wit::PaymentLookup { key, payment, known_id })
            }
            Operation::CreatePayment { .. } => {
                gather!(CreatePayments, Operation::CreatePayment { payment } =>
                    |key| wit::PaymentCreate { key, payment })
            }
            Operation::UpdatePayment { .. } => {
                gather!(UpdatePayments, Operation::UpdatePayment { entry, payment } =>
                    |key| wit::PaymentUpdate { key, entry, payment })
            }
            Operation::CheckNumbersInUse { .. } => return None,
        })
    }
}

/// The entry an operation names, which its answer must be: an update's
/// entry, a lookup's known id.
fn named_entry(op: &Operation) -> Option<String> {
    match op {
        Operation::UpdateBill { entry, .. } | Operation::UpdatePayment { entry, .. } => {
            Some(entry.id.clone())
        }
        Operation::LookupBill { known_id, .. } | Operation::LookupPayment { known_id, .. } => {
            known_id.clone()
        }
        _ => None,
    }
}

/// A call's key: its one item's key, or a digest of its items' keys in
/// order, so a retry of the same call sends the same key.
pub fn call_key<'a>(keys: impl IntoIterator<Item = &'a str>) -> String {
    use sha2::{Digest, Sha256};
    let keys: Vec<&str> = keys.into_iter().collect();
    if let [one] = keys.as_slice() {
        return (*one).to_string();
    }
    let mut h = Sha256::new();
    h.update(b"ledgerbridge call\n");
    for k in &keys {
        h.update(k.as_bytes());
        h.update(b"\n");
    }
    h.finalize()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// What a plugin answered, before bounds.
enum Answered {
    Items(Vec<Result<Reply, ConnectorError>>),
    CheckNumbers(Vec<u64>),
}

impl Runtime {
    /// Runs `op` on `plugin` under `sandbox`, with `idempotency_key` in the
    /// plugin's context: a call of one item. Never panics on plugin
    /// behaviour: every fault is a [`CallError::Fault`] of this call alone.
    pub async fn call(
        &self,
        plugin: &Plugin,
        sandbox: &Sandbox,
        idempotency_key: &str,
        op: Operation,
    ) -> CallOutcome {
        if let Operation::CheckNumbersInUse {
            bank_account,
            first,
            count,
        } = op
        {
            let invocation = Invocation::CheckNumbers {
                bank_account,
                first,
                count,
            };
            let (result, logs, elapsed) = self
                .invoke(
                    plugin,
                    sandbox,
                    idempotency_key,
                    invocation,
                    "check-numbers-in-use",
                )
                .await;
            return CallOutcome {
                result: result.and_then(|mut r| r.pop().expect("one answer")),
                logs,
                elapsed,
            };
        }
        let item = Item {
            key: idempotency_key.to_string(),
            operation: op,
        };
        let out = self.call_batch(plugin, sandbox, vec![item]).await;
        CallOutcome {
            result: out
                .result
                .and_then(|mut r| r.pop().expect("one result per item")),
            logs: out.logs,
            elapsed: out.elapsed,
        }
    }

    /// Runs `items`, all of one entry operation, on `plugin` in one call
    /// (or, for a 0.1 plugin, one call per item), and answers one result per
    /// item. A plugin answering another number of results faults the call.
    /// Never panics on plugin behaviour.
    pub async fn call_batch(
        &self,
        plugin: &Plugin,
        sandbox: &Sandbox,
        items: Vec<Item>,
    ) -> BatchOutcome {
        let started = Instant::now();
        let key = call_key(items.iter().map(|i| i.key.as_str()));
        let outcome = |result, logs, calls| BatchOutcome {
            result,
            logs,
            elapsed: started.elapsed(),
            key: key.clone(),
            calls,
        };
        let Some(first) = items.first() else {
            return outcome(Ok(Vec::new()), Vec::new(), 0);
        };
        let name = first.operation.name();
        let needs = first.operation.needs();
        if !plugin.descriptor.capabilities.contains(needs) {
            return outcome(
                Err(CallError::Unsupported {
                    plugin: plugin.descriptor.name.clone(),
                    operation: name,
                }),
                Vec::new(),
                0,
            );
        }
        if matches!(plugin.exports, Exports::V0_1(_)) && items.len() > 1 {
            // Contract 0.1 has one item per call.
            let mut results = Vec::with_capacity(items.len());
            let mut logs = Vec::new();
            let mut calls = 0;
            for item in items {
                let one = Box::pin(self.call_batch(plugin, sandbox, vec![item])).await;
                logs.extend(one.logs);
                calls += one.calls;
                results.push(match one.result {
                    Ok(mut r) => r.pop().expect("one result per item"),
                    Err(e) => Err(e),
                });
            }
            return outcome(Ok(results), logs, calls);
        }
        // The entry each item names: an update's, a lookup's known id.
        let named: Vec<Option<String>> = items.iter().map(|i| named_entry(&i.operation)).collect();
        let Some(batch) = Batch::of(items) else {
            return outcome(
                Err(CallError::Unsupported {
                    plugin: plugin.descriptor.name.clone(),
                    operation: "a call mixing operations",
                }),
                Vec::new(),
                0,
            );
        };
        let (result, mut logs, _) = self
            .invoke(plugin, sandbox, &key, Invocation::Batch(batch), name)
            .await;
        // An update or a lookup by id answered with another entry would
        // rewire the host's record: that item's plugin fault, not stored.
        let result = result.map(|each| {
            each.into_iter()
                .zip(&named)
                .map(|(r, named)| match (&r, named) {
                    (Ok(Reply::Entry(e) | Reply::Found(Some(e))), Some(id)) if e.id != *id => {
                        let fault = PluginFault::Contract(format!(
                            "{name} answered entry {:?} for entry {id:?}",
                            e.id
                        ));
                        logs.push(LogLine {
                            source: super::LogSource::Host,
                            level: super::LogLevel::Error,
                            message: format!("plugin fault: {fault}"),
                        });
                        Err(CallError::Fault(fault))
                    }
                    _ => r,
                })
                .collect()
        });
        outcome(result, logs, 1)
    }

    /// One plugin call: a fresh store and instance under `sandbox`'s limits,
    /// the deadline, and the answer within its bounds.
    async fn invoke(
        &self,
        plugin: &Plugin,
        sandbox: &Sandbox,
        key: &str,
        invocation: Invocation,
        name: &'static str,
    ) -> (
        Result<Vec<Result<Reply, CallError>>, CallError>,
        Vec<LogLine>,
        Duration,
    ) {
        let started = Instant::now();
        let needs = match &invocation {
            Invocation::CheckNumbers { .. } => Capabilities::CHECK_NUMBERS_IN_USE,
            Invocation::Batch(_) => Capabilities::empty(),
        };
        if !plugin.descriptor.capabilities.contains(needs) {
            return (
                Err(CallError::Unsupported {
                    plugin: plugin.descriptor.name.clone(),
                    operation: name,
                }),
                Vec::new(),
                started.elapsed(),
            );
        }
        let _permit = self
            .permits
            .acquire()
            .await
            .expect("the pool's semaphore is never closed");
        let fs = match &sandbox.directory {
            Some(dir) => match self.disk.get(dir).await {
                Ok(usage) => Some(CallFs {
                    usage,
                    quota: sandbox.limits.disk_quota(),
                }),
                Err(e) => {
                    return (
                        Err(PluginFault::Instantiate(format!(
                            "cannot grant directory {}: {e}",
                            dir.display()
                        ))
                        .into()),
                        Vec::new(),
                        started.elapsed(),
                    );
                }
            },
            None => None,
        };
        let ctx = Context {
            tenant_id: sandbox.tenant_id.clone(),
            connection_id: sandbox.connection_id.clone(),
            settings: sandbox
                .settings
                .iter()
                .map(|(name, value)| Setting {
                    name: name.clone(),
                    value: value.clone(),
                })
                .collect(),
            idempotency_key: key.to_string(),
        };
        let (asked, items) = match &invocation {
            Invocation::CheckNumbers { count, .. } => (Some(*count), 1),
            Invocation::Batch(b) => (None, b.len()),
        };
        let deadline = Instant::now() + sandbox.limits.deadline;
        let mut slot = None;
        let attempt = async {
            let instance = instantiate(self, &plugin.pre, sandbox, fs, deadline, &mut slot).await?;
            let store = slot.as_mut().expect("instantiate leaves its store");
            run(&plugin.exports, store, &instance, &ctx, invocation).await
        };
        let result = match tokio::time::timeout(sandbox.limits.deadline + GRACE, attempt).await {
            Ok(Ok(Ok(Answered::Items(items)))) => Ok(items
                .into_iter()
                .map(|r| bounds::result(r.map_err(CallError::Connector), None))
                .collect()),
            Ok(Ok(Ok(Answered::CheckNumbers(numbers)))) => {
                bounds::result(Ok(Reply::CheckNumbers(numbers)), asked).map(|r| vec![Ok(r)])
            }
            Ok(Ok(Err(connector))) => {
                bounds::result(Err(CallError::Connector(connector)), None).map(|r| vec![Ok(r)])
            }
            Ok(Err(e)) => Err(CallError::Fault(classify(e, slot.as_ref(), sandbox))),
            Err(_) => Err(CallError::Fault(PluginFault::Deadline(
                sandbox.limits.deadline,
            ))),
        };
        // One result per item, always: any other count is the plugin's
        // fault, never a guess at which item an answer was for.
        let result = result.and_then(|r| {
            if r.len() == items {
                Ok(r)
            } else {
                Err(CallError::Fault(PluginFault::Contract(format!(
                    "{name}s answered {} results for {items} items",
                    r.len()
                ))))
            }
        });
        let Some(store) = slot else {
            return (result, Vec::new(), started.elapsed());
        };
        let capture = store.data().capture.clone();
        match &result {
            Err(CallError::Fault(f)) => capture.fault_line(f.to_string()),
            Ok(each) => {
                for r in each {
                    if let Err(CallError::Fault(f)) = r {
                        capture.fault_line(f.to_string());
                    }
                }
            }
            Err(_) => {}
        }
        let logs = capture.lines();
        for line in &logs {
            tracing::debug!(
                tenant = %sandbox.tenant_id,
                connection = %sandbox.connection_id,
                plugin = %plugin.descriptor.name,
                source = ?line.source,
                level = ?line.level,
                "{}",
                line.message
            );
        }
        (result, logs, started.elapsed())
    }
}

type Answer = wasmtime::Result<Result<Answered, ConnectorError>>;

/// The call's error, in the per-item error's terms (the same cases).
fn whole(e: wit::CallError) -> ConnectorError {
    match e {
        wit::CallError::RateLimited(r) => ConnectorError::RateLimited(r),
        wit::CallError::Unavailable(m) => ConnectorError::Unavailable(m),
        wit::CallError::Unauthorized(m) => ConnectorError::Unauthorized(m),
    }
}

fn found(r: Vec<Result<Option<Entry>, ConnectorError>>) -> Answered {
    Answered::Items(r.into_iter().map(|r| r.map(Reply::Found)).collect())
}

fn entries(r: Vec<Result<Entry, ConnectorError>>) -> Answered {
    Answered::Items(r.into_iter().map(|r| r.map(Reply::Entry)).collect())
}

async fn run(
    exports: &Exports,
    store: &mut Store<StoreState>,
    instance: &Instance,
    ctx: &Context,
    invocation: Invocation,
) -> Answer {
    let indices = match exports {
        Exports::Current(indices) => indices,
        Exports::V0_1(indices) => return run_v0_1(indices, store, instance, ctx, invocation).await,
    };
    let instance = indices.load(&mut *store, instance)?;
    let c = instance.ledgerbridge_connector_connector();
    let s = &mut *store;
    Ok(match invocation {
        Invocation::Batch(Batch::LookupBills(items)) => {
            c.call_lookup_bills(s, ctx, &items).await?.map(found)
        }
        Invocation::Batch(Batch::CreateBills(items)) => {
            c.call_create_bills(s, ctx, &items).await?.map(entries)
        }
        Invocation::Batch(Batch::UpdateBills(items)) => {
            c.call_update_bills(s, ctx, &items).await?.map(entries)
        }
        Invocation::Batch(Batch::LookupPayments(items)) => {
            c.call_lookup_payments(s, ctx, &items).await?.map(found)
        }
        Invocation::Batch(Batch::CreatePayments(items)) => {
            c.call_create_payments(s, ctx, &items).await?.map(entries)
        }
        Invocation::Batch(Batch::UpdatePayments(items)) => {
            c.call_update_payments(s, ctx, &items).await?.map(entries)
        }
        Invocation::CheckNumbers {
            bank_account,
            first,
            count,
        } => {
            return Ok(c
                .call_check_numbers_in_use(s, ctx, &bank_account, first, count)
                .await?
                .map(Answered::CheckNumbers));
        }
    }
    .map_err(whole))
}

/// The only item of a call to a 0.1 plugin.
fn only<T>(mut items: Vec<T>) -> wasmtime::Result<T> {
    match (items.pop(), items.is_empty()) {
        (Some(item), true) => Ok(item),
        _ => Err(wasmtime::Error::msg(
            "a contract 0.1 plugin takes one item per call",
        )),
    }
}

/// A call to a 0.1 plugin: one item, its values converted, its error that
/// item's.
async fn run_v0_1(
    indices: &super::bindings::v0_1::PluginIndices,
    store: &mut Store<StoreState>,
    instance: &Instance,
    ctx: &Context,
    invocation: Invocation,
) -> Answer {
    let instance = indices.load(&mut *store, instance)?;
    let c = instance.ledgerbridge_connector_connector();
    let s = &mut *store;
    let ctx = &v0_1::context(ctx);
    let item = |r: Result<Reply, _>| Ok(Answered::Items(vec![r.map_err(v0_1::error)]));
    let found = |r: Result<Option<_>, _>| item(r.map(|e| Reply::Found(e.map(v0_1::entry))));
    let entry = |r: Result<_, _>| item(r.map(|e| Reply::Entry(v0_1::entry(e))));
    match invocation {
        Invocation::Batch(Batch::LookupBills(items)) => {
            let i = only(items)?;
            let bill = v0_1::bill(&i.bill);
            Ok(found(
                c.call_lookup_bill(s, ctx, &bill, i.known_id.as_deref())
                    .await?,
            ))
        }
        Invocation::Batch(Batch::CreateBills(items)) => {
            let i = only(items)?;
            Ok(entry(
                c.call_create_bill(s, ctx, &v0_1::bill(&i.bill)).await?,
            ))
        }
        Invocation::Batch(Batch::UpdateBills(items)) => {
            let i = only(items)?;
            let (e, bill) = (v0_1::entry_to_old(&i.entry), v0_1::bill(&i.bill));
            Ok(entry(c.call_update_bill(s, ctx, &e, &bill).await?))
        }
        Invocation::Batch(Batch::LookupPayments(items)) => {
            let i = only(items)?;
            let p = v0_1::payment(&i.payment);
            Ok(found(
                c.call_lookup_payment(s, ctx, &p, i.known_id.as_deref())
                    .await?,
            ))
        }
        Invocation::Batch(Batch::CreatePayments(items)) => {
            let i = only(items)?;
            Ok(entry(
                c.call_create_payment(s, ctx, &v0_1::payment(&i.payment))
                    .await?,
            ))
        }
        Invocation::Batch(Batch::UpdatePayments(items)) => {
            let i = only(items)?;
            let (e, p) = (v0_1::entry_to_old(&i.entry), v0_1::payment(&i.payment));
            Ok(entry(c.call_update_payment(s, ctx, &e, &p).await?))
        }
        Invocation::CheckNumbers {
            bank_account,
            first,
            count,
        } => Ok(c
            .call_check_numbers_in_use(s, ctx, &bank_account, first, count)
            .await?
            .map(Answered::CheckNumbers)
            .map_err(v0_1::error)),
    }
}

/// Per-phase times of one `lookup-bill`, for the benchmark's breakdown.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, Default)]
pub struct Phases {
    pub store: Duration,
    pub instantiate: Duration,
    pub call: Duration,
    pub drop: Duration,
}

impl Runtime {
    /// Times the phases of one `lookup-bill` (the benchmark's breakdown).
    #[doc(hidden)]
    pub async fn time_phases(&self, plugin: &Plugin, sandbox: &Sandbox, bill: &Bill) -> Phases {
        let t0 = Instant::now();
        let deadline = Instant::now() + sandbox.limits.deadline;
        let mut store = new_store(self, sandbox, None, deadline).expect("store");
        let ctx = Context {
            tenant_id: sandbox.tenant_id.clone(),
            connection_id: sandbox.connection_id.clone(),
            settings: Vec::new(),
            idempotency_key: "k".into(),
        };
        let t1 = Instant::now();
        let instance = plugin
            .pre
            .instantiate_async(&mut store)
            .await
            .expect("instantiate");
        let t2 = Instant::now();
        let Exports::Current(indices) = &plugin.exports else {
            panic!("time_phases times a plugin built for the current contract");
        };
        let item = wit::BillLookup {
            key: "k".into(),
            bill: bill.clone(),
            known_id: None,
        };
        let r = indices
            .load(&mut store, &instance)
            .expect("exports")
            .ledgerbridge_connector_connector()
            .call_lookup_bills(&mut store, &ctx, &[item])
            .await
            .expect("call");
        assert_eq!(r, Ok(vec![Ok(None)]));
        let t3 = Instant::now();
        let _ = instance;
        drop(store);
        let t4 = Instant::now();
        Phases {
            store: t1 - t0,
            instantiate: t2 - t1,
            call: t3 - t2,
            drop: t4 - t3,
        }
    }
}
