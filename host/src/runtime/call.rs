//! One operation on one plugin: a fresh store and instance, the connection's
//! limits, the deadline, and the answer classified for the host's policy.

use super::Runtime;
use super::bindings::{
    Bill, Capabilities, ConnectorError, Context, Descriptor, Entry, Payment, PluginIndices,
    PluginPre, Setting,
};
use super::bounds;
use super::capture::LogLine;
use super::fs::CallFs;
use super::outbound::Outbound;
use super::plugin::Plugin;
use super::quota::HostMemoryExceeded;
use super::sandbox::{Sandbox, StoreState};
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
    pre: &PluginPre<StoreState>,
    sandbox: &Sandbox,
) -> Result<Descriptor, CallError> {
    let _permit = rt
        .permits
        .acquire()
        .await
        .expect("the pool's semaphore is never closed");
    let deadline = Instant::now() + sandbox.limits.deadline;
    let indices = PluginIndices::new(pre.instance_pre())
        .map_err(|e| PluginFault::Instantiate(format!("{e:#}")))?;
    let mut slot = None;
    let run = async {
        let instance =
            instantiate(rt, pre.instance_pre(), sandbox, None, deadline, &mut slot).await?;
        let store = slot.as_mut().expect("instantiate leaves its store");
        let plugin = indices.load(&mut *store, &instance)?;
        plugin
            .ledgerbridge_connector_connector()
            .call_describe(store)
            .await
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

impl Runtime {
    /// Runs `op` on `plugin` under `sandbox`, with `idempotency_key` in the
    /// plugin's context. Never panics on plugin behaviour: every fault is a
    /// [`CallError::Fault`] of this call alone.
    pub async fn call(
        &self,
        plugin: &Plugin,
        sandbox: &Sandbox,
        idempotency_key: &str,
        op: Operation,
    ) -> CallOutcome {
        let started = Instant::now();
        let needs = op.needs();
        if !plugin.descriptor.capabilities.contains(needs) {
            return CallOutcome {
                result: Err(CallError::Unsupported {
                    plugin: plugin.descriptor.name.clone(),
                    operation: op.name(),
                }),
                logs: Vec::new(),
                elapsed: started.elapsed(),
            };
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
                    return CallOutcome {
                        result: Err(PluginFault::Instantiate(format!(
                            "cannot grant directory {}: {e}",
                            dir.display()
                        ))
                        .into()),
                        logs: Vec::new(),
                        elapsed: started.elapsed(),
                    };
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
            idempotency_key: idempotency_key.to_string(),
        };
        let asked = match &op {
            Operation::CheckNumbersInUse { count, .. } => Some(*count),
            _ => None,
        };
        let deadline = Instant::now() + sandbox.limits.deadline;
        let mut slot = None;
        let attempt = async {
            let instance = instantiate(
                self,
                plugin.pre.instance_pre(),
                sandbox,
                fs,
                deadline,
                &mut slot,
            )
            .await?;
            let store = slot.as_mut().expect("instantiate leaves its store");
            run(&plugin.indices, store, &instance, &ctx, op).await
        };
        let result = match tokio::time::timeout(sandbox.limits.deadline + GRACE, attempt).await {
            Ok(Ok(Ok(reply))) => Ok(reply),
            Ok(Ok(Err(connector))) => Err(CallError::Connector(connector)),
            Ok(Err(e)) => Err(CallError::Fault(classify(e, slot.as_ref(), sandbox))),
            Err(_) => Err(CallError::Fault(PluginFault::Deadline(
                sandbox.limits.deadline,
            ))),
        };
        let result = bounds::result(result, asked);
        let Some(store) = slot else {
            return CallOutcome {
                result,
                logs: Vec::new(),
                elapsed: started.elapsed(),
            };
        };
        let capture = store.data().capture.clone();
        if let Err(CallError::Fault(f)) = &result {
            capture.fault_line(f.to_string());
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
        CallOutcome {
            result,
            logs,
            elapsed: started.elapsed(),
        }
    }
}

type Answer = wasmtime::Result<Result<Reply, ConnectorError>>;

async fn run(
    indices: &PluginIndices,
    store: &mut Store<StoreState>,
    instance: &Instance,
    ctx: &Context,
    op: Operation,
) -> Answer {
    let instance = indices.load(&mut *store, instance)?;
    let c = instance.ledgerbridge_connector_connector();
    match op {
        Operation::LookupBill { bill, known_id } => c
            .call_lookup_bill(&mut *store, ctx, &bill, known_id.as_deref())
            .await
            .map(|r| r.map(Reply::Found)),
        Operation::CreateBill { bill } => c
            .call_create_bill(&mut *store, ctx, &bill)
            .await
            .map(|r| r.map(Reply::Entry)),
        Operation::UpdateBill { entry, bill } => c
            .call_update_bill(&mut *store, ctx, &entry, &bill)
            .await
            .map(|r| r.map(Reply::Entry)),
        Operation::LookupPayment { payment, known_id } => c
            .call_lookup_payment(&mut *store, ctx, &payment, known_id.as_deref())
            .await
            .map(|r| r.map(Reply::Found)),
        Operation::CreatePayment { payment } => c
            .call_create_payment(&mut *store, ctx, &payment)
            .await
            .map(|r| r.map(Reply::Entry)),
        Operation::UpdatePayment { entry, payment } => c
            .call_update_payment(&mut *store, ctx, &entry, &payment)
            .await
            .map(|r| r.map(Reply::Entry)),
        Operation::CheckNumbersInUse {
            bank_account,
            first,
            count,
        } => c
            .call_check_numbers_in_use(&mut *store, ctx, &bank_account, first, count)
            .await
            .map(|r| r.map(Reply::CheckNumbers)),
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
        let r = instance
            .ledgerbridge_connector_connector()
            .call_lookup_bill(&mut store, &ctx, bill, None)
            .await
            .expect("call");
        assert_eq!(r, Ok(None));
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
