//! The engine's API: what an operator or the AP product does that is not a
//! sync itself (tenants, connections, documents, the integration log,
//! Requires attention, booked locks, funding accounts, Failed to export,
//! runs), as methods of the engine. The CLI and the HTTP API are thin
//! layers over these and over the sync methods in the module above; the
//! store is the engine's own (DESIGN: "The engine is the one API").
//!
//! Each method checks the ids it is given, that what they name exists, and
//! that it belongs together (a connection of the tenant named), and fails
//! with an [`EngineError`] a caller maps to a status or an exit code without
//! reading its text. Store failures stay `anyhow` errors: the host's own.

use super::Engine;
use crate::model::{Connection, Document, Payment, Target, check_id};
use crate::store::{AttentionItem, EntryRow, FailedExport, FundingAccount, LogRow, RunSummary};

/// Why the engine refused a request: each is the caller's to fix.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EngineError {
    /// A field of the request is malformed (an id, a range).
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    #[error("no tenant {0}")]
    NoTenant(String),
    #[error("no connection {0}")]
    NoConnection(String),
    #[error("no document {document} for tenant {tenant}")]
    NoDocument { tenant: String, document: String },
    #[error("connection {connection} belongs to tenant {owner}, not {tenant}")]
    OtherTenant {
        connection: String,
        owner: String,
        tenant: String,
    },
    #[error("connection {0} is disabled")]
    Disabled(String),
    #[error(
        "target payment: document {0} is not paid or marked as paid, so it has no payment entry to sync"
    )]
    NotPaid(String),
    #[error("target payment: connection {0} does not sync payments")]
    PaymentsOff(String),
    #[error(
        "no attention item for document {document}, target {target}, in connection {connection}"
    )]
    NoAttentionItem {
        connection: String,
        document: String,
        target: &'static str,
    },
    #[error("payment {payment} is not in Failed to export for connection {connection}")]
    NotFailed { payment: String, connection: String },
    #[error("no payment {payment} of document {document}")]
    NoPayment { document: String, payment: String },
    #[error("no token {0}")]
    NoToken(String),
    #[error("no run {0}")]
    NoRun(String),
    #[error("the {target} entry of {subject} in connection {connection} has no booked lock")]
    NoLock {
        connection: String,
        subject: String,
        target: &'static str,
    },
}

/// A connection that cannot be stored (V1, P4): every problem, by field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("connection {id} is not valid, nothing was stored:\n  {}", .problems.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("\n  "))]
pub struct InvalidConnection {
    pub id: String,
    pub problems: Vec<crate::intake::FieldError>,
}

impl EngineError {
    fn invalid(field: &str, message: impl Into<String>) -> EngineError {
        EngineError::Invalid {
            field: field.to_string(),
            message: message.into(),
        }
    }
}

/// A connection with how many entries it holds.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ConnectionSummary {
    /// The connection (its credentials are never serialised).
    pub connection: Connection,
    pub bill_entries: usize,
    pub payment_entries: usize,
}

fn id(field: &str, value: &str) -> Result<(), EngineError> {
    check_id(value).map_err(|m| EngineError::invalid(field, m))
}

impl Engine {
    /// Adds tenant `id` (adding one that exists is not an error).
    pub async fn add_tenant(&self, id_: &str) -> anyhow::Result<()> {
        id("tenant_id", id_)?;
        self.store.add_tenant(id_).await
    }

    /// Whether tenant `id` exists.
    pub async fn tenant_exists(&self, id_: &str) -> anyhow::Result<bool> {
        id("tenant_id", id_)?;
        self.store.tenant_exists(id_).await
    }

    /// Tenant `id`, or [`EngineError::NoTenant`].
    pub async fn require_tenant(&self, id_: &str) -> anyhow::Result<()> {
        if !self.tenant_exists(id_).await? {
            return Err(EngineError::NoTenant(id_.to_string()).into());
        }
        Ok(())
    }

    /// Connection `id`, credentials included (they never serialise), or
    /// [`EngineError::NoConnection`].
    pub async fn connection(&self, id_: &str) -> anyhow::Result<Connection> {
        id("connection", id_)?;
        Ok(self
            .store
            .connection(id_)
            .await?
            .ok_or_else(|| EngineError::NoConnection(id_.to_string()))?)
    }

    /// Connection `id` when it is `tenant`'s: another tenant's is refused
    /// as if it did not exist to this tenant's eyes, but named plainly.
    pub async fn tenant_connection(&self, tenant: &str, id_: &str) -> anyhow::Result<Connection> {
        self.require_tenant(tenant).await?;
        let c = self.connection(id_).await?;
        if c.tenant_id != tenant {
            return Err(EngineError::OtherTenant {
                connection: c.id,
                owner: c.tenant_id,
                tenant: tenant.to_string(),
            }
            .into());
        }
        Ok(c)
    }

    /// Every connection (only `tenant`'s when given), with its entry counts.
    pub async fn connections(
        &self,
        tenant: Option<&str>,
    ) -> anyhow::Result<Vec<ConnectionSummary>> {
        if let Some(t) = tenant {
            self.require_tenant(t).await?;
        }
        let mut out = Vec::new();
        for c in self.store.connections().await? {
            if tenant.is_some_and(|t| c.tenant_id != t) {
                continue;
            }
            let (bill_entries, payment_entries) = self.store.entry_counts(&c.id).await?;
            out.push(ConnectionSummary {
                connection: c,
                bill_entries,
                payment_entries,
            });
        }
        Ok(out)
    }

    /// Tenant `tenant`'s document `id`, or [`EngineError::NoDocument`].
    pub async fn document(&self, tenant: &str, id_: &str) -> anyhow::Result<Document> {
        self.require_tenant(tenant).await?;
        id("document", id_)?;
        Ok(self
            .store
            .document(tenant, id_)
            .await?
            .ok_or_else(|| EngineError::NoDocument {
                tenant: tenant.to_string(),
                document: id_.to_string(),
            })?)
    }

    /// A tenant's document ids.
    pub async fn document_ids(&self, tenant: &str) -> anyhow::Result<Vec<String>> {
        self.require_tenant(tenant).await?;
        self.store.document_ids(tenant).await
    }

    /// The payments recorded against a tenant's document.
    pub async fn payments_of(&self, tenant: &str, document: &str) -> anyhow::Result<Vec<Payment>> {
        self.require_tenant(tenant).await?;
        id("document", document)?;
        self.store.payments_of(tenant, document).await
    }

    /// A document's integration log (L1), oldest first; only one of the
    /// tenant's connections when given.
    pub async fn log_of(
        &self,
        tenant: &str,
        document: &str,
        connection: Option<&str>,
    ) -> anyhow::Result<Vec<LogRow>> {
        // A document the tenant does not have is not found, not an empty log.
        self.document(tenant, document).await?;
        if let Some(c) = connection {
            self.tenant_connection(tenant, c).await?;
        }
        self.store.log_of(tenant, document, connection).await
    }

    /// What Requires attention (L2), only in `connection` when given.
    pub async fn attention(&self, connection: Option<&str>) -> anyhow::Result<Vec<AttentionItem>> {
        if let Some(c) = connection {
            self.connection(c).await?;
        }
        self.store.attention(connection).await
    }

    /// Dismisses an attention item, or [`EngineError::NoAttentionItem`].
    pub async fn dismiss(
        &self,
        connection: &str,
        document: &str,
        target: Target,
    ) -> anyhow::Result<()> {
        self.connection(connection).await?;
        id("document", document)?;
        if !self.store.dismiss(connection, document, target).await? {
            return Err(EngineError::NoAttentionItem {
                connection: connection.to_string(),
                document: document.to_string(),
                target: target.as_str(),
            }
            .into());
        }
        Ok(())
    }

    /// Clears a booked lock (B3) once the period is reopened in the ERP, or
    /// [`EngineError::NoLock`].
    pub async fn unlock(
        &self,
        connection: &str,
        subject: &str,
        target: Target,
    ) -> anyhow::Result<()> {
        self.connection(connection).await?;
        id("subject", subject)?;
        if !self.store.clear_lock(connection, target, subject).await? {
            return Err(EngineError::NoLock {
                connection: connection.to_string(),
                subject: subject.to_string(),
                target: target.as_str(),
            }
            .into());
        }
        Ok(())
    }

    /// The host's record of an entry.
    pub async fn entry(
        &self,
        connection: &str,
        target: Target,
        subject: &str,
    ) -> anyhow::Result<Option<EntryRow>> {
        self.connection(connection).await?;
        self.store.entry(connection, target, subject).await
    }

    /// Every entry the host records in `connection`.
    pub async fn entries(&self, connection: &str) -> anyhow::Result<Vec<EntryRow>> {
        self.connection(connection).await?;
        self.store.entries(connection).await
    }

    /// A funding account's check numbering (C1, C2).
    pub async fn funding_account(
        &self,
        tenant: &str,
        account: &str,
    ) -> anyhow::Result<FundingAccount> {
        self.require_tenant(tenant).await?;
        id("funding_account", account)?;
        self.store.funding_account(tenant, account).await
    }

    /// Sets a funding account's next check number (C2).
    pub async fn set_next_check_number(
        &self,
        tenant: &str,
        account: &str,
        next: u64,
    ) -> anyhow::Result<()> {
        self.require_tenant(tenant).await?;
        id("funding_account", account)?;
        self.store
            .set_next_check_number(tenant, account, next)
            .await
    }

    /// Clears the numbers from `first` to `last` marked used in the ERP
    /// (never numbers issued to payments nor rejected by the ERP); returns
    /// how many.
    pub async fn clear_checks_marked_used(
        &self,
        tenant: &str,
        account: &str,
        first: u64,
        last: u64,
    ) -> anyhow::Result<usize> {
        self.require_tenant(tenant).await?;
        id("funding_account", account)?;
        if first > last {
            return Err(
                EngineError::invalid("first", format!("{first} is after last ({last})")).into(),
            );
        }
        self.store
            .clear_checks_marked_used(tenant, account, first, last)
            .await
    }

    /// Who holds check number `number` of a funding account: `None` when
    /// it was never issued, `Some(None)` when it is marked used in the ERP,
    /// else the payment's id.
    pub async fn check_number_holder(
        &self,
        tenant: &str,
        account: &str,
        number: u64,
    ) -> anyhow::Result<Option<Option<String>>> {
        self.require_tenant(tenant).await?;
        id("funding_account", account)?;
        self.store
            .check_number_holder(tenant, account, number)
            .await
    }

    /// Payments in Failed to export (L3), only `connection`'s when given.
    pub async fn failed_exports(
        &self,
        connection: Option<&str>,
    ) -> anyhow::Result<Vec<FailedExport>> {
        if let Some(c) = connection {
            self.connection(c).await?;
        }
        self.store.failed_exports(connection).await
    }

    /// Changes the check number and/or bank id of a payment in Failed to
    /// export (P6); refused for any other payment.
    pub async fn edit_export(
        &self,
        tenant: &str,
        payment: &str,
        check_number: Option<u64>,
        bank_id: Option<String>,
    ) -> anyhow::Result<Payment> {
        if check_number.is_none() && bank_id.is_none() {
            return Err(EngineError::invalid(
                "edit",
                "say what to change: a check number and/or a bank id",
            )
            .into());
        }
        self.require_tenant(tenant).await?;
        id("payment", payment)?;
        if let Some(b) = &bank_id {
            id("bank_id", b)?;
        }
        self.store
            .edit_payment(tenant, payment, check_number, bank_id)
            .await
    }

    /// Where a manual or bulk run stands.
    pub async fn run_summary(&self, run: &str) -> anyhow::Result<RunSummary> {
        self.store.run_summary(run).await
    }

    /// Cancels a run (M2): its syncs not yet started end as `cancelled`;
    /// those under way finish, and one carrying a change the AP product sent
    /// still runs. Returns how many were cancelled.
    pub async fn cancel_run(&self, run: &str) -> anyhow::Result<usize> {
        self.run_connection(run).await?;
        let n = self.store.cancel_run(run).await?;
        tracing::info!(run, cancelled = n, "run cancelled");
        Ok(n)
    }

    /// Each result of a run: document, target, state, outcome, error.
    #[allow(clippy::type_complexity)]
    pub async fn run_results(
        &self,
        run: &str,
    ) -> anyhow::Result<Vec<(String, String, String, Option<String>, Option<String>)>> {
        self.store.run_results(run).await
    }

    /// Whether any sync is queued, whether any runs, and when the next is
    /// due.
    pub async fn pending(&self) -> anyhow::Result<(bool, bool, Option<i64>)> {
        self.store.pending().await
    }

    /// The store's busy time and requests served, for benchmarks.
    pub fn store_busy(&self) -> (u64, std::time::Duration) {
        self.store.busy()
    }
}

impl Engine {
    /// A disbursement event of the AP product (A4): payment `payment` of
    /// `document` moved to `status`. Recorded as the payment sent again
    /// with its new status, so it goes through the same checks and jobs.
    pub async fn disbursement_event(
        &self,
        tenant: &str,
        document: &str,
        payment: &str,
        status: crate::model::DisbursementStatus,
    ) -> anyhow::Result<super::Imported> {
        // Named as the event names them.
        id("document_id", document)?;
        id("payment_id", payment)?;
        let doc = self.document(tenant, document).await?;
        let p = self
            .store
            .payments_of(tenant, document)
            .await?
            .into_iter()
            .find(|p| p.id == payment)
            .ok_or_else(|| EngineError::NoPayment {
                document: document.to_string(),
                payment: payment.to_string(),
            })?;
        let amount =
            serde_json::Value::String(ledgerbridge_sdk::money::to_decimal(p.amount, &doc.currency));
        let input = crate::intake::PaymentInput {
            payment: Payment {
                disbursement_status: Some(status),
                ..p
            },
            amount,
            at: "event".into(),
        };
        self.import(crate::intake::Batch {
            documents: Vec::new(),
            payments: vec![input],
        })
        .await
    }
}
