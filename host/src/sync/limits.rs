//! The limits a connection runs with (R2): its connector's, which state the
//! ERP's (calls at once, a minute, a day; items per call of each kind),
//! lowered by the connection's own overrides. Never raised by them: an ERP
//! refuses what it does not allow whatever an operator writes.

use crate::model::LimitOverrides;
use crate::runtime::Operation;
use crate::runtime::bindings as wit;

/// `overrides` within what the connector `declared` (when its plugin is
/// loaded; the overrides alone before).
pub(crate) fn effective(
    overrides: &LimitOverrides,
    declared: Option<&wit::Limits>,
) -> LimitOverrides {
    let Some(d) = declared else {
        return overrides.clone();
    };
    let lower = |o: Option<u32>, d: Option<u32>| match (o, d) {
        (Some(o), Some(d)) => Some(o.min(d)),
        (o, d) => o.or(d),
    };
    LimitOverrides {
        calls_at_once: lower(overrides.calls_at_once, Some(d.calls_at_once)),
        calls_per_minute: lower(overrides.calls_per_minute, d.calls_per_minute),
        calls_per_day: lower(overrides.calls_per_day, d.calls_per_day),
        items_per_call: Some(group_size(overrides, declared) as u32),
        ..overrides.clone()
    }
}

/// The most items one call of `op` carries: the connector's items per call
/// for its kind, lowered by the connection's. One, for check numbers and
/// for a connector not loaded yet.
pub(crate) fn items_per_call(
    limits: &LimitOverrides,
    declared: Option<&wit::Limits>,
    op: &Operation,
) -> usize {
    let Some(d) = declared else { return 1 };
    let kind = match op {
        Operation::LookupBill { .. } | Operation::LookupPayment { .. } => d.lookups_per_call,
        Operation::CreateBill { .. } | Operation::CreatePayment { .. } => d.creates_per_call,
        Operation::UpdateBill { .. } | Operation::UpdatePayment { .. } => d.updates_per_call,
        Operation::CheckNumbersInUse { .. } => 1,
    };
    kind.min(limits.items_per_call.unwrap_or(u32::MAX)).max(1) as usize
}

/// How many jobs of a connection run together as one group: its largest
/// items per call, so a group's calls of each kind fill a batch at most.
pub(crate) fn group_size(limits: &LimitOverrides, declared: Option<&wit::Limits>) -> usize {
    let Some(d) = declared else { return 1 };
    d.lookups_per_call
        .max(d.creates_per_call)
        .max(d.updates_per_call)
        .min(limits.items_per_call.unwrap_or(u32::MAX))
        .max(1) as usize
}

/// How many of a connection's `at_once` groups bulk work may hold (R5):
/// all but one, so a funding-complete payment or an automatic sync never
/// waits for a bulk group to end (a connection of one call at once gives
/// bulk work that one).
pub(crate) fn bulk_groups(at_once: usize) -> usize {
    at_once.saturating_sub(1).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// R5: bulk work leaves one call at once to everything else.
    #[test]
    fn r5_bulk_work_leaves_one_call_at_once_free() {
        assert_eq!(bulk_groups(5), 4);
        assert_eq!(bulk_groups(2), 1);
        assert_eq!(
            bulk_groups(1),
            1,
            "a connection of one call at once still syncs"
        );
    }

    fn xero() -> wit::Limits {
        wit::Limits {
            calls_at_once: 5,
            calls_per_minute: Some(60),
            calls_per_day: Some(5000),
            lookups_per_call: 50,
            creates_per_call: 50,
            updates_per_call: 25,
        }
    }

    /// R2: the ERP's limits are the default; a connection may lower them,
    /// never raise them.
    #[test]
    fn r2_the_connectors_limits_are_the_default_and_overrides_only_lower_them() {
        let none = LimitOverrides::default();
        let e = effective(&none, Some(&xero()));
        assert_eq!(
            (e.calls_at_once, e.calls_per_minute, e.calls_per_day),
            (Some(5), Some(60), Some(5000))
        );
        let lower = LimitOverrides {
            calls_at_once: Some(2),
            calls_per_minute: Some(30),
            calls_per_day: Some(9000),
            items_per_call: Some(10),
            ..LimitOverrides::default()
        };
        let e = effective(&lower, Some(&xero()));
        assert_eq!(
            (e.calls_at_once, e.calls_per_minute, e.calls_per_day),
            (Some(2), Some(30), Some(5000))
        );
        assert_eq!(e.items_per_call, Some(10));
        let wide = LimitOverrides {
            items_per_call: Some(100),
            ..LimitOverrides::default()
        };
        assert_eq!(
            effective(&wide, Some(&xero())).items_per_call,
            Some(50),
            "what it runs by, not what was asked"
        );
        let create = Operation::CreateBill {
            bill: wit::Bill {
                document_id: "d".into(),
                number: "1".into(),
                vendor: wit::Vendor {
                    id: "v".into(),
                    name: "V".into(),
                    erp_id: None,
                },
                issue_date: "2026-01-01".into(),
                due_date: "2026-01-31".into(),
                currency: "USD".into(),
                lines: vec![],
                total: 0,
                status: wit::BillStatus::Approved,
            },
        };
        assert_eq!(items_per_call(&none, Some(&xero()), &create), 50);
        assert_eq!(items_per_call(&lower, Some(&xero()), &create), 10);
        assert_eq!(group_size(&none, Some(&xero())), 50);
        assert_eq!(group_size(&lower, Some(&xero())), 10);
        // Before the plugin is loaded: the connection's own, one item a call.
        assert_eq!(effective(&lower, None), lower);
        assert_eq!(items_per_call(&none, None, &create), 1);
    }
}
