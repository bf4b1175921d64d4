//! One attempt at a job: the plugin calls it makes, through one function
//! ([`Attempt::call`]) that sends each with its group's next batch (see
//! `batcher`, which paces calls by the connection's budget, R2) and records
//! each for the log (L1).

use super::Engine;
use super::batcher::{Batcher, Setup};
use super::convert::entry_state;
use super::m3::Port;
use crate::runtime::{CallError, LogLine, Operation as Call, Reply};
use crate::store::{EntryRow, Job, LoggedOperation};
use std::sync::Arc;

/// The calls of one attempt, with what they answered and logged.
pub(super) struct Attempt<'a, 'e> {
    pub engine: &'e Engine,
    pub job: &'a Job,
    pub setup: Arc<Setup>,
    pub batcher: &'a Batcher<'e>,
    pub operations: Vec<LoggedOperation>,
    pub logs: Vec<LogLine>,
}

/// The document or payment a call is about, for its log lines.
fn subject(op: &Call) -> &str {
    match op {
        Call::LookupBill { bill, .. }
        | Call::CreateBill { bill }
        | Call::UpdateBill { bill, .. } => &bill.document_id,
        Call::LookupPayment { payment, .. }
        | Call::CreatePayment { payment }
        | Call::UpdatePayment { payment, .. } => &payment.payment_id,
        Call::CheckNumbersInUse { .. } => "",
    }
}

impl Attempt<'_, '_> {
    /// Makes one plugin call, as an item of the group's next batch: every
    /// call goes through here.
    pub async fn call(&mut self, key: &str, op: Call) -> Result<Reply, CallError> {
        let name = op.name();
        let about = subject(&op).to_string();
        let answer = self
            .batcher
            .call(&self.setup, &about, key.to_string(), op)
            .await;
        self.logs.extend(answer.logs);
        let mut result = match &answer.result {
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
        if answer.batch > 1 {
            result.push_str(&format!(
                " (one of {} items in call {})",
                answer.batch, answer.call_key
            ));
        }
        self.operations.push(LoggedOperation {
            operation: name.to_string(),
            result,
        });
        answer.result
    }

    /// Records an operation that sent nothing, for the log.
    pub fn note(&mut self, what: &str, result: String) {
        self.operations.push(LoggedOperation {
            operation: what.to_string(),
            result,
        });
    }
}

impl Port for Attempt<'_, '_> {
    async fn call(&mut self, key: &str, op: Call) -> Result<Reply, CallError> {
        Attempt::call(self, key, op).await
    }

    fn note(&mut self, what: &str, result: String) {
        Attempt::note(self, what, result)
    }

    async fn record_intent(&mut self, row: &EntryRow) -> anyhow::Result<()> {
        self.batcher.record_intent(row.clone(), self.job).await
    }
}
