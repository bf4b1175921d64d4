//! Running a plugin built for contract 0.1.0: the current contract's values
//! converted to 0.1's and back. 0.1 has one item per operation and no
//! limits in its descriptor; the values are otherwise the same.

use super::bindings as now;
use super::bindings::v0_1 as old;

/// What a 0.1 plugin's descriptor implies: one item per call, and the
/// host's defaults for the rest.
pub(crate) fn limits() -> now::Limits {
    now::Limits {
        calls_at_once: crate::model::LimitOverrides::DEFAULT_CALLS_AT_ONCE,
        calls_per_minute: None,
        calls_per_day: None,
        lookups_per_call: 1,
        creates_per_call: 1,
        updates_per_call: 1,
    }
}

pub(crate) fn descriptor(d: old::Descriptor) -> now::Descriptor {
    let mut capabilities = now::Capabilities::empty();
    for (o, n) in [
        (old::Capabilities::PAYMENTS, now::Capabilities::PAYMENTS),
        (
            old::Capabilities::UPDATE_PAYMENTS,
            now::Capabilities::UPDATE_PAYMENTS,
        ),
        (
            old::Capabilities::CHECK_NUMBERS_IN_USE,
            now::Capabilities::CHECK_NUMBERS_IN_USE,
        ),
    ] {
        if d.capabilities.contains(o) {
            capabilities |= n;
        }
    }
    now::Descriptor {
        name: d.name,
        version: d.version,
        capabilities,
        settings: d
            .settings
            .into_iter()
            .map(|s| now::SettingSpec {
                name: s.name,
                description: s.description,
                required: s.required,
            })
            .collect(),
        limits: limits(),
    }
}

pub(crate) fn context(c: &now::Context) -> old::Context {
    old::Context {
        tenant_id: c.tenant_id.clone(),
        connection_id: c.connection_id.clone(),
        settings: c
            .settings
            .iter()
            .map(|s| old::Setting {
                name: s.name.clone(),
                value: s.value.clone(),
            })
            .collect(),
        idempotency_key: c.idempotency_key.clone(),
    }
}

fn vendor(v: &now::Vendor) -> old::Vendor {
    old::Vendor {
        id: v.id.clone(),
        name: v.name.clone(),
    }
}

pub(crate) fn bill(b: &now::Bill) -> old::Bill {
    old::Bill {
        document_id: b.document_id.clone(),
        number: b.number.clone(),
        vendor: vendor(&b.vendor),
        issue_date: b.issue_date.clone(),
        due_date: b.due_date.clone(),
        currency: b.currency.clone(),
        lines: b
            .lines
            .iter()
            .map(|l| old::BillLine {
                description: l.description.clone(),
                amount: l.amount,
                account_code: l.account_code.clone(),
                tracking: l
                    .tracking
                    .iter()
                    .map(|t| old::Tracking {
                        category: t.category.clone(),
                        option: t.option.clone(),
                    })
                    .collect(),
                tax_code: l.tax_code.clone(),
            })
            .collect(),
        total: b.total,
        status: match b.status {
            now::BillStatus::Draft => old::BillStatus::Draft,
            now::BillStatus::AwaitingApproval => old::BillStatus::AwaitingApproval,
            now::BillStatus::Approved => old::BillStatus::Approved,
            now::BillStatus::Paid => old::BillStatus::Paid,
        },
    }
}

pub(crate) fn payment(p: &now::Payment) -> old::Payment {
    old::Payment {
        payment_id: p.payment_id.clone(),
        document_id: p.document_id.clone(),
        bill_entry_id: p.bill_entry_id.clone(),
        bill_number: p.bill_number.clone(),
        vendor: vendor(&p.vendor),
        amount: p.amount,
        currency: p.currency.clone(),
        date: p.date.clone(),
        method: match p.method {
            now::PaymentMethod::Check => old::PaymentMethod::Check,
            now::PaymentMethod::Ach => old::PaymentMethod::Ach,
            now::PaymentMethod::Wire => old::PaymentMethod::Wire,
            now::PaymentMethod::Card => old::PaymentMethod::Card,
        },
        bank_account: p.bank_account.clone(),
        check_number: p.check_number,
    }
}

fn state_to_old(s: now::EntryState) -> old::EntryState {
    match s {
        now::EntryState::Open => old::EntryState::Open,
        now::EntryState::Paid => old::EntryState::Paid,
        now::EntryState::Booked => old::EntryState::Booked,
        now::EntryState::Voided => old::EntryState::Voided,
        now::EntryState::Deleted => old::EntryState::Deleted,
    }
}

pub(crate) fn entry_to_old(e: &now::Entry) -> old::Entry {
    old::Entry {
        id: e.id.clone(),
        version: e.version.clone(),
        state: state_to_old(e.state),
        total: e.total,
    }
}

pub(crate) fn entry(e: old::Entry) -> now::Entry {
    now::Entry {
        id: e.id,
        version: e.version,
        state: match e.state {
            old::EntryState::Open => now::EntryState::Open,
            old::EntryState::Paid => now::EntryState::Paid,
            old::EntryState::Booked => now::EntryState::Booked,
            old::EntryState::Voided => now::EntryState::Voided,
            old::EntryState::Deleted => now::EntryState::Deleted,
        },
        total: e.total,
    }
}

pub(crate) fn error(e: old::ConnectorError) -> now::ConnectorError {
    use now::ConnectorError as N;
    use old::ConnectorError as O;
    match e {
        O::Booked(m) => N::Booked(m),
        O::NotFound(m) => N::NotFound(m),
        O::Conflict(m) => N::Conflict(m),
        O::DuplicateCheckNumber(d) => N::DuplicateCheckNumber(now::DuplicateCheck {
            check_number: d.check_number,
            message: d.message,
        }),
        O::Validation(v) => N::Validation(now::ValidationError {
            field: v.field,
            message: v.message,
        }),
        O::RateLimited(r) => N::RateLimited(now::RateLimit {
            retry_after_ms: r.retry_after_ms,
            message: r.message,
        }),
        O::Unavailable(m) => N::Unavailable(m),
        O::Unauthorized(m) => N::Unauthorized(m),
    }
}
