//! The store's side of sealed secrets (O2, issue 13): connection
//! credentials and OAuth2 grants are written sealed and read opened, each
//! bound to its column and connection; nothing else in the store sees a
//! key.
//!
//! The key ring lives on the store's thread (every SQL statement of the
//! store runs there), installed when the thread starts, so the functions
//! that read and write rows seal and open without a key being passed
//! through each of them.

use crate::seal::{Keyring, SealError};
use anyhow::Context as _;
use rusqlite::{Connection as Db, params};
use std::cell::RefCell;
use std::sync::Arc;

thread_local! {
    static KEYS: RefCell<Option<Arc<Keyring>>> = const { RefCell::new(None) };
}

/// Makes `keys` the ring of the calling thread (the store's).
pub(super) fn install(keys: Arc<Keyring>) {
    KEYS.with(|k| *k.borrow_mut() = Some(keys));
}

fn ring() -> anyhow::Result<Arc<Keyring>> {
    KEYS.with(|k| k.borrow().clone())
        .context("no seal key on this thread (a store function ran off the store's thread)")
}

/// Where a secret is kept: its associated data.
fn place(column: &str, connection: &str) -> String {
    format!("{column}:{connection}")
}

/// `plain` sealed for `column` of `connection`'s row.
pub(super) fn seal(column: &str, connection: &str, plain: &str) -> anyhow::Result<String> {
    Ok(ring()?.seal(plain, &place(column, connection)))
}

/// The value of `column` of `connection`'s row, opened.
pub(super) fn open(column: &str, connection: &str, value: &str) -> anyhow::Result<String> {
    Ok(ring()?
        .open(value, &place(column, connection))
        .with_context(|| format!("{column} of connection {connection}"))?
        .into_plain())
}

/// [`open`] of a column that may be NULL.
pub(super) fn open_opt(
    column: &str,
    connection: &str,
    value: Option<String>,
) -> anyhow::Result<Option<String>> {
    value.map(|v| open(column, connection, &v)).transpose()
}

/// The sealed columns: (table, column, the column naming the connection).
const SEALED: &[(&str, &str, &str)] = &[
    ("connections", "credentials", "id"),
    ("oauth_grants", "client_secret", "connection_id"),
    ("oauth_grants", "refresh_token", "connection_id"),
    ("oauth_grants", "access_token", "connection_id"),
];

/// The name of a sealed column as its values are bound (`table.column`).
pub(super) fn column(table: &str, column: &str) -> String {
    format!("{table}.{column}")
}

/// Seals under the current key every secret kept in clear (by a version
/// before sealing) or under an earlier key, in one transaction; how many.
/// A secret sealed with a key the ring lacks fails the whole (nothing is
/// changed), naming the key: the operator gave the wrong key. One that
/// does not open (changed, or moved from another row) is left as it is
/// and fails only its own connection's reads.
pub(super) fn reseal_all(db: &mut Db, keys: &Keyring) -> anyhow::Result<usize> {
    let tx = db.transaction()?;
    let mut n = 0;
    for (table, col, id_col) in SEALED {
        let name = column(table, col);
        let rows: Vec<(String, String)> = {
            let mut stmt = tx.prepare(&format!(
                "SELECT {id_col}, {col} FROM {table} WHERE {col} IS NOT NULL"
            ))?;
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<_, _>>()?
        };
        for (id, value) in rows {
            if keys.is_current(&value) {
                continue;
            }
            let at = place(&name, &id);
            let opened = match keys.open(&value, &at) {
                Ok(o) => o,
                Err(SealError::Damaged) => {
                    tracing::warn!(connection = %id, column = %name, "a sealed secret does not open; that connection's reads fail until it is set again");
                    continue;
                }
                Err(e) => return Err(e).with_context(|| format!("{name} of connection {id}")),
            };
            if opened.stale() {
                tx.execute(
                    &format!("UPDATE {table} SET {col} = ?2 WHERE {id_col} = ?1"),
                    params![id, keys.seal(&opened.into_plain(), &at)],
                )?;
                n += 1;
            }
        }
    }
    tx.commit()?;
    Ok(n)
}
