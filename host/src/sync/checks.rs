//! Check numbers (C1, C3): a check gets its number when it is funded, the
//! funding account's next free one, skipping what the ERP says it already
//! uses, when the connector can say.

use super::attempt::Attempt;
use super::keys::digest;
use super::mapping::MappingError;
use super::outcome::Failure;
use crate::model::Payment;
use crate::runtime::{Operation as Call, Reply};

/// How many numbers ahead the ERP is asked about.
pub const CHECK_LOOKAHEAD: u32 = 100;

/// The check number for `p`: its own if issued, else the funding account's
/// next free one, skipping what the ERP reports in use when it can say
/// (`ask_erp`), through `bank_account` (the ERP's code for the account).
pub(super) async fn assign_check_number(
    attempt: &mut Attempt<'_, '_>,
    p: &Payment,
    bank_account: &str,
    ask_erp: bool,
) -> Result<u64, Failure> {
    let store = &attempt.engine.store;
    let store_error = Failure::Host;
    let mut in_use = Vec::new();
    if ask_erp {
        let next = store
            .funding_account(&p.tenant_id, &p.funding_account)
            .await
            .map_err(store_error)?
            .next_check_number;
        let key = digest(&[
            &attempt.job.connection_id,
            &p.id,
            "check-numbers",
            &next.to_string(),
        ]);
        let op = Call::CheckNumbersInUse {
            bank_account: bank_account.to_string(),
            first: next,
            count: CHECK_LOOKAHEAD,
        };
        if let Reply::CheckNumbers(n) = attempt.call(&key, op).await.map_err(Failure::Call)? {
            let (inside, outside) = believed(n, next);
            if let Some(asked) = outside {
                attempt.note("check-numbers-in-use", asked);
            }
            in_use = inside;
        }
    }
    store
        .assign_check_number(&p.tenant_id, &p.funding_account, &p.id, in_use)
        .await
        .map_err(|e| match e.downcast_ref::<crate::store::ChecksExhausted>() {
            Some(x) => Failure::Mapping(MappingError {
                field: "funding_account".into(),
                message: x.to_string(),
                hint: format!(
                    "Set the next check number of funding account {} lower with `funding-account set-next` (above the last issued), or clear numbers wrongly marked used with `funding-account clear-used`; then re-sync.",
                    x.0
                ),
            }),
            None => store_error(e),
        })
}

/// Of the numbers a connector answered in use, asked from `next` on, those
/// believed: only numbers inside the range asked about. A connector that
/// answers others is at fault, and is ignored: the note for the log says so.
fn believed(answered: Vec<u64>, next: u64) -> (Vec<u64>, Option<String>) {
    let asked = next..next.saturating_add(u64::from(CHECK_LOOKAHEAD));
    let (inside, outside): (Vec<u64>, Vec<u64>) =
        answered.into_iter().partition(|n| asked.contains(n));
    let note = (!outside.is_empty()).then(|| {
        format!(
            "plugin fault: {} numbers outside {}..{} were answered and ignored",
            outside.len(),
            asked.start,
            asked.end
        )
    });
    (inside, note)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bound what a plugin hands back: numbers outside the range asked
    /// about are not believed.
    #[test]
    fn c1_only_numbers_inside_the_range_asked_are_believed() {
        let (inside, note) = believed(vec![1000, 1042, 1099, 1100, 5, u64::MAX], 1000);
        assert_eq!(inside, [1000, 1042, 1099]);
        assert_eq!(
            note.as_deref(),
            Some("plugin fault: 3 numbers outside 1000..1100 were answered and ignored")
        );
        assert_eq!(believed(vec![7], 7), (vec![7], None));
        // The range's end saturates rather than overflowing.
        assert_eq!(believed(vec![u64::MAX - 1], u64::MAX - 1).0, [u64::MAX - 1]);
    }
}
