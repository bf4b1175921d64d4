//! The jobs of a manual or bulk sync (M1, M2).

use crate::model::{Connection, Document, DocumentStatus, Target, Trigger};
use crate::store::{NewJob, now_ms};

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
