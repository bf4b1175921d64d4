//! Funding accounts and their check numbers (C1-C3), and Failed to export
//! (L3).

use super::{Store, exec, now_ms, query_row};
use crate::model::{Payment, PaymentMethod};
use rusqlite::{OptionalExtension, params};
use serde::Serialize;

/// A funding account's check numbering.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FundingAccount {
    pub tenant_id: String,
    pub id: String,
    /// The number the next check gets, unless it is already used.
    pub next_check_number: u64,
    /// The highest number issued, to a payment or found used in an ERP.
    pub last_issued: Option<u64>,
    /// How many numbers were issued.
    pub issued: usize,
}

/// A payment the ERP rejected (L3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FailedExport {
    pub connection_id: String,
    pub tenant_id: String,
    pub payment_id: String,
    pub document_id: String,
    pub error: String,
    pub check_number: Option<u64>,
    /// The bank id an operator set, if any (else the connection's mapping).
    pub bank_id: Option<String>,
    /// For a check: the funding account's next free number.
    pub suggested_check_number: Option<u64>,
    pub created_at: i64,
}

/// A funding account has no check number left to issue: a person must act
/// (the engine sends the payment to Requires attention, not to a retry).
#[derive(Debug, Clone, thiserror::Error)]
#[error("funding account {0} has no check number left below {MAX_CHECK_NUMBER}")]
pub struct ChecksExhausted(pub String);

/// Numbers a funding account starts at when no operator set one.
const FIRST_CHECK_NUMBER: u64 = 1;

/// The largest check number: 15 digits, exact in every JSON reader (below
/// 2^53) and far from overflowing the store's 64-bit integers.
pub const MAX_CHECK_NUMBER: u64 = 999_999_999_999_999;

fn check_range(field: &str, n: u64) -> anyhow::Result<()> {
    if n == 0 || n > MAX_CHECK_NUMBER {
        return Err(super::invalid(
            field,
            format!("{n} is outside 1..={MAX_CHECK_NUMBER}"),
        ));
    }
    Ok(())
}

fn next_in(db: &rusqlite::Connection, tenant: &str, fa: &str) -> rusqlite::Result<u64> {
    let next: Option<i64> = query_row(
        db,
        "SELECT next_check_number FROM funding_accounts WHERE tenant_id = ?1 AND id = ?2",
        params![tenant, fa],
        |r| r.get(0),
    )
    .optional()?;
    Ok(next.map_or(FIRST_CHECK_NUMBER, |n| n as u64))
}

fn issued(
    db: &rusqlite::Connection,
    tenant: &str,
    fa: &str,
    n: u64,
) -> rusqlite::Result<Option<Option<String>>> {
    query_row(
        db,
        "SELECT payment_id FROM check_numbers WHERE tenant_id = ?1 AND funding_account = ?2 AND number = ?3",
        params![tenant, fa, n as i64],
        |r| r.get::<_, Option<String>>(0),
    )
    .optional()
}

/// The first number from `from` on that is not issued and not in `skip`.
fn first_free(
    db: &rusqlite::Connection,
    tenant: &str,
    fa: &str,
    from: u64,
    skip: &[u64],
) -> rusqlite::Result<u64> {
    let mut n = from;
    while skip.contains(&n) || issued(db, tenant, fa, n)?.is_some() {
        n = n.saturating_add(1);
    }
    Ok(n)
}

fn set_payment_check(
    db: &rusqlite::Connection,
    tenant: &str,
    payment: &str,
    n: Option<u64>,
) -> rusqlite::Result<()> {
    exec(
        db,
        "UPDATE payments SET body = json_set(body, '$.check_number', ?3), updated_at = ?4
         WHERE tenant_id = ?1 AND id = ?2",
        params![tenant, payment, n.map(|n| n as i64), now_ms()],
    )?;
    Ok(())
}

impl Store {
    /// C1: the check number of payment `payment_id` drawn on funding account
    /// `fa`: the one it already has, else the next free one, skipping
    /// `used_in_erp` (recorded as used, so they are never issued). One
    /// transaction on the store's single thread, under unique constraints:
    /// no number is issued twice, none is skipped but the ERP's.
    pub async fn assign_check_number(
        &self,
        tenant: &str,
        fa: &str,
        payment_id: &str,
        used_in_erp: Vec<u64>,
    ) -> anyhow::Result<u64> {
        let (t, f, p) = (tenant.to_string(), fa.to_string(), payment_id.to_string());
        self.with(move |db| {
            let tx = db.savepoint()?;
            let held: Option<i64> = query_row(
                &tx,
                "SELECT number FROM check_numbers WHERE tenant_id = ?1 AND payment_id = ?2",
                params![t, p],
                |r| r.get(0),
            )
            .optional()?;
            if let Some(n) = held {
                return Ok(n as u64);
            }
            let next = next_in(&tx, &t, &f)?;
            for &u in used_in_erp.iter().filter(|&&u| u >= next && u <= MAX_CHECK_NUMBER) {
                exec(
                    &tx,
                    "INSERT INTO check_numbers (tenant_id, funding_account, number, payment_id, issued_at, reason)
                     VALUES (?1, ?2, ?3, NULL, ?4, 'in-use') ON CONFLICT DO NOTHING",
                    params![t, f, u as i64, now_ms()],
                )?;
            }
            let n = first_free(&tx, &t, &f, next, &[])?;
            if n > MAX_CHECK_NUMBER {
                return Err(ChecksExhausted(f.clone()).into());
            }
            exec(
                &tx,
                "INSERT INTO check_numbers (tenant_id, funding_account, number, payment_id, issued_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![t, f, n as i64, p, now_ms()],
            )?;
            exec(
                &tx,
                "INSERT INTO funding_accounts (tenant_id, id, next_check_number) VALUES (?1, ?2, ?3)
                 ON CONFLICT (tenant_id, id) DO UPDATE SET next_check_number = excluded.next_check_number",
                params![t, f, (n + 1) as i64],
            )?;
            set_payment_check(&tx, &t, &p, Some(n))?;
            tx.commit()?;
            Ok(n)
        })
        .await
    }

    /// Who holds check number `n` of funding account `fa`: `None` when it
    /// is free, `Some(None)` when the ERP uses or rejected it, else the
    /// payment it was issued to.
    pub async fn check_number_holder(
        &self,
        tenant: &str,
        fa: &str,
        n: u64,
    ) -> anyhow::Result<Option<Option<String>>> {
        let (t, f) = (tenant.to_string(), fa.to_string());
        self.with(move |db| Ok(issued(db, &t, &f, n.min(i64::MAX as u64))?))
            .await
    }

    /// C3: the ERP rejected `n` as already used: it is never issued or
    /// accepted again, whatever edits follow. A payment holding it keeps it
    /// in its body until an operator edits it, but no longer owns the
    /// number, so an edit cannot free it.
    pub async fn mark_check_rejected(&self, tenant: &str, fa: &str, n: u64) -> anyhow::Result<()> {
        let (t, f) = (tenant.to_string(), fa.to_string());
        self.with(move |db| {
            if n > MAX_CHECK_NUMBER {
                return Ok(());
            }
            exec(
                db,
                "INSERT INTO check_numbers (tenant_id, funding_account, number, payment_id, issued_at, reason)
                 VALUES (?1, ?2, ?3, NULL, ?4, 'rejected')
                 ON CONFLICT (tenant_id, funding_account, number) DO UPDATE SET payment_id = NULL, reason = 'rejected'",
                params![t, f, n as i64, now_ms()],
            )?;
            Ok(())
        })
        .await
    }

    /// Clears numbers a connector reported used in the ERP (never numbers
    /// issued to payments, nor numbers the ERP rejected, which stay the
    /// ERP's) from `first` to `last`, after a connector reported numbers
    /// wrongly. Returns how many were cleared.
    pub async fn clear_checks_marked_used(
        &self,
        tenant: &str,
        fa: &str,
        first: u64,
        last: u64,
    ) -> anyhow::Result<usize> {
        let (t, f) = (tenant.to_string(), fa.to_string());
        self.with(move |db| {
            check_range("first", first)?;
            check_range("last", last)?;
            if last < first {
                return Err(super::invalid("last", format!("{last} is below first {first}")));
            }
            Ok(exec(
                db,
                "DELETE FROM check_numbers WHERE tenant_id = ?1 AND funding_account = ?2 AND payment_id IS NULL
                   AND COALESCE(reason, 'in-use') != 'rejected' AND number BETWEEN ?3 AND ?4",
                params![t, f, first as i64, last as i64],
            )?)
        })
        .await
    }

    /// A funding account's numbering (created on first use, at 1).
    pub async fn funding_account(&self, tenant: &str, fa: &str) -> anyhow::Result<FundingAccount> {
        let (t, f) = (tenant.to_string(), fa.to_string());
        self.with(move |db| {
            let next = next_in(db, &t, &f)?;
            let (last, count): (Option<i64>, i64) = query_row(
                db,
                "SELECT MAX(number), COUNT(*) FROM check_numbers WHERE tenant_id = ?1 AND funding_account = ?2",
                params![t, f],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            Ok(FundingAccount {
                next_check_number: first_free(db, &t, &f, next, &[])?,
                tenant_id: t,
                id: f,
                last_issued: last.map(|n| n as u64),
                issued: count as usize,
            })
        })
        .await
    }

    /// C2: sets the next check number, refusing one at or below a number
    /// already issued.
    pub async fn set_next_check_number(
        &self,
        tenant: &str,
        fa: &str,
        next: u64,
    ) -> anyhow::Result<()> {
        let (t, f) = (tenant.to_string(), fa.to_string());
        self.with(move |db| {
            check_range("next_check_number", next)?;
            // Only numbers the host issued to payments bind: a number
            // merely marked used in the ERP, or given to a payment by hand
            // in Failed to export, is skipped when reached, not a floor.
            let last: Option<i64> = query_row(
                db,
                "SELECT MAX(number) FROM check_numbers WHERE tenant_id = ?1 AND funding_account = ?2
                   AND payment_id IS NOT NULL AND COALESCE(reason, '') != 'edited'",
                params![t, f],
                |r| r.get(0),
            )?;
            if let Some(last) = last
                && next <= last as u64
            {
                return Err(super::invalid(
                    "next_check_number",
                    format!(
                        "{next} is at or below {last}, already issued from funding account {f}; choose a number above {last}"
                    ),
                ));
            }
            exec(
                db,
                "INSERT INTO funding_accounts (tenant_id, id, next_check_number) VALUES (?1, ?2, ?3)
                 ON CONFLICT (tenant_id, id) DO UPDATE SET next_check_number = excluded.next_check_number",
                params![t, f, next as i64],
            )?;
            Ok(())
        })
        .await
    }

    /// L3: edits a payment before it is exported again: a new check number
    /// (refused if issued from the same funding account to anything else)
    /// and/or a bank id. Returns the payment as it now is.
    pub async fn edit_payment(
        &self,
        tenant: &str,
        payment_id: &str,
        check_number: Option<u64>,
        bank_id: Option<String>,
    ) -> anyhow::Result<Payment> {
        let (t, p) = (tenant.to_string(), payment_id.to_string());
        self.with(move |db| {
            let tx = db.savepoint()?;
            let body: Option<String> = query_row(
                &tx,
                "SELECT body FROM payments WHERE tenant_id = ?1 AND id = ?2",
                params![t, p],
                |r| r.get(0),
            )
            .optional()?;
            let Some(body) = body else {
                return Err(super::Refused::NotFound(format!("no payment {p} for tenant {t}")).into());
            };
            // L3: only a payment the ERP rejected is edited; any other is
            // synced (or not) as the AP product says.
            let failed: bool = query_row(
                &tx,
                "SELECT EXISTS (SELECT 1 FROM failed_exports WHERE tenant_id = ?1 AND payment_id = ?2)",
                params![t, p],
                |r| r.get(0),
            )?;
            if !failed {
                return Err(super::Refused::NotFound(format!(
                    "payment {p} is not in Failed to export; only a payment the ERP rejected can be edited"
                ))
                .into());
            }
            let mut payment: Payment = serde_json::from_str(&body)?;
            if let Some(n) = check_number {
                if payment.method != PaymentMethod::Check {
                    return Err(super::invalid("check_number", format!("payment {p} is not a check")));
                }
                check_range("check_number", n)?;
                match issued(&tx, &t, &payment.funding_account, n)? {
                    Some(Some(holder)) if holder == p => {}
                    Some(Some(holder)) => {
                        return Err(super::invalid(
                            "check_number",
                            format!(
                                "{n} is already issued from funding account {} to payment {holder}",
                                payment.funding_account
                            ),
                        ));
                    }
                    Some(None) => {
                        return Err(super::invalid(
                            "check_number",
                            format!(
                                "{n} is already used in the ERP for funding account {}",
                                payment.funding_account
                            ),
                        ));
                    }
                    None => {}
                }
                exec(&tx, "DELETE FROM check_numbers WHERE tenant_id = ?1 AND payment_id = ?2", params![t, p])?;
                // A number given by hand is held (allocation skips it when it
                // gets there) but moves neither the sequence nor the floor
                // of set-next: a typo far ahead must not skip thousands of
                // numbers, nor leave the account unable to be set (C1, C2).
                exec(
                    &tx,
                    "INSERT INTO check_numbers (tenant_id, funding_account, number, payment_id, issued_at, reason)
                     VALUES (?1, ?2, ?3, ?4, ?5, 'edited')",
                    params![t, payment.funding_account, n as i64, p, now_ms()],
                )?;
                payment.check_number = Some(n);
            }
            if let Some(b) = bank_id {
                if let Err(m) = crate::model::check_id(&b) {
                    return Err(super::invalid("bank_id", m));
                }
                payment.bank_id = Some(b);
            }
            exec(
                &tx,
                "UPDATE payments SET body = ?3, updated_at = ?4 WHERE tenant_id = ?1 AND id = ?2",
                params![t, p, serde_json::to_string(&payment)?, now_ms()],
            )?;
            tx.commit()?;
            Ok(payment)
        })
        .await
    }

    /// L3: Failed to export, one connection's or everyone's, with each
    /// payment's check number, bank id and a suggested check number.
    pub async fn failed_exports(
        &self,
        connection_id: Option<&str>,
    ) -> anyhow::Result<Vec<FailedExport>> {
        let c = connection_id.map(str::to_string);
        self.with(move |db| {
            let mut stmt = db.prepare_cached(
                "SELECT f.connection_id, f.tenant_id, f.payment_id, f.document_id, f.error, f.created_at, p.body
                 FROM failed_exports f JOIN payments p ON p.tenant_id = f.tenant_id AND p.id = f.payment_id
                 WHERE (?1 IS NULL OR f.connection_id = ?1) ORDER BY f.created_at, f.payment_id",
            )?;
            let rows: Vec<(FailedExport, String)> = stmt
                .query_map(params![c], |r| {
                    Ok((
                        FailedExport {
                            connection_id: r.get(0)?,
                            tenant_id: r.get(1)?,
                            payment_id: r.get(2)?,
                            document_id: r.get(3)?,
                            error: r.get(4)?,
                            created_at: r.get(5)?,
                            check_number: None,
                            bank_id: None,
                            suggested_check_number: None,
                        },
                        r.get(6)?,
                    ))
                })?
                .collect::<Result<_, _>>()?;
            drop(stmt);
            let mut out = Vec::new();
            for (mut f, body) in rows {
                let p: Payment = serde_json::from_str(&body)?;
                f.check_number = p.check_number;
                f.bank_id = p.bank_id.clone();
                if p.method == PaymentMethod::Check {
                    let next = next_in(db, &f.tenant_id, &p.funding_account)?;
                    f.suggested_check_number = Some(first_free(db, &f.tenant_id, &p.funding_account, next, &[])?);
                }
                out.push(f);
            }
            Ok(out)
        })
        .await
    }
}

/// Records (`Some(error)`) or clears (`None`) a payment's Failed to export
/// item, inside a job's outcome transaction.
pub(super) fn record_failed_export(
    db: &rusqlite::Connection,
    connection: &str,
    tenant: &str,
    document: &str,
    payment: &str,
    error: Option<&str>,
) -> rusqlite::Result<()> {
    match error {
        Some(e) => exec(
            db,
            "INSERT INTO failed_exports (connection_id, tenant_id, payment_id, document_id, error, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (connection_id, payment_id) DO UPDATE SET error = excluded.error",
            params![connection, tenant, payment, document, e, now_ms()],
        )?,
        None => exec(
            db,
            "DELETE FROM failed_exports WHERE connection_id = ?1 AND payment_id = ?2",
            params![connection, payment],
        )?,
    };
    Ok(())
}
