//! The host's record of an entry ([`EntryRow`]) and the WIT contract's
//! entry, each into the other.

use crate::model::{Connection, Target};
use crate::runtime::bindings as wit;
use crate::store::EntryRow;

/// An entry state's name in the host's record and the log.
pub fn entry_state(s: wit::EntryState) -> &'static str {
    match s {
        wit::EntryState::Open => "open",
        wit::EntryState::Paid => "paid",
        wit::EntryState::Booked => "booked",
        wit::EntryState::Voided => "voided",
        wit::EntryState::Deleted => "deleted",
    }
}

/// The entry the host knows of, as the contract passes it to an update.
pub fn to_wit(row: &EntryRow) -> wit::Entry {
    let state = match row.state.as_deref() {
        Some("paid") => wit::EntryState::Paid,
        Some("booked") => wit::EntryState::Booked,
        Some("voided") => wit::EntryState::Voided,
        Some("deleted") => wit::EntryState::Deleted,
        _ => wit::EntryState::Open,
    };
    wit::Entry {
        id: row.entry_id.clone().unwrap_or_default(),
        version: row.version.clone(),
        state,
        total: None,
    }
}

/// Takes into `row` what the ERP answered of the entry; `hash` is the
/// content the ERP now has, when known (D3).
pub fn learn(row: &mut EntryRow, e: &wit::Entry, hash: Option<String>) {
    row.entry_id = Some(e.id.clone());
    row.version = e.version.clone();
    row.state = Some(entry_state(e.state).to_string());
    row.content_hash = hash;
}

/// The record of an entry the host knows nothing of yet.
pub fn blank(conn: &Connection, target: Target, subject: &str, document: &str) -> EntryRow {
    EntryRow {
        connection_id: conn.id.clone(),
        target: target.as_str().into(),
        subject_id: subject.into(),
        document_id: document.into(),
        ..EntryRow::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_learnt_converts_back_as_it_was() {
        for state in [
            wit::EntryState::Open,
            wit::EntryState::Paid,
            wit::EntryState::Booked,
            wit::EntryState::Voided,
            wit::EntryState::Deleted,
        ] {
            let e = wit::Entry {
                id: "E1".into(),
                version: Some("3".into()),
                state,
                total: None,
            };
            let mut row = EntryRow::default();
            learn(&mut row, &e, Some("h".into()));
            assert_eq!(row.content_hash.as_deref(), Some("h"));
            assert_eq!(to_wit(&row), e);
        }
    }
}
