//! The QuickBooks vendor of each AP vendor: the connection's mapping
//! (`mappings.vendors`, arriving as the vendor's `erp-id`) when present,
//! else the vendor whose `DisplayName` is the AP vendor's name, created
//! when the connection's `create-vendors` setting allows. Never a guess:
//! an unknown vendor is a `validation` of `vendor` with what to do.

use crate::api::{Failure, Qbo, quoted};
use crate::faults;
use ledgerbridge_sdk::*;
use serde_json::{Value, json};

/// Names one query asks about (QuickBooks' queries are limited in length).
const NAMES_PER_QUERY: usize = 50;

/// Whether the connection lets the connector create vendors.
pub fn may_create(ctx: &Context) -> Result<bool, ConnectorError> {
    match ctx.setting("create-vendors").map(str::trim) {
        None | Some("") | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(other) => Err(ConnectorError::validation(
            "settings.create-vendors",
            format!("`{other}` is not true or false"),
        )),
    }
}

/// The QuickBooks vendor id of each vendor, in order.
pub fn resolve(
    qbo: &Qbo,
    ctx: &Context,
    vendors: &[&Vendor],
) -> Result<Vec<Result<String, ConnectorError>>, CallError> {
    let create = match may_create(ctx) {
        Ok(c) => c,
        Err(e) => return Ok(vec![Err(e); vendors.len()]),
    };
    let mut names: Vec<&str> = vendors
        .iter()
        .filter(|v| v.erp_id.is_none())
        .map(|v| v.name.trim())
        .collect();
    names.sort_unstable();
    names.dedup();
    let mut found: Vec<(String, String)> = Vec::new();
    let mut failed: Option<ConnectorError> = None;
    if !names.is_empty() {
        let queries: Vec<String> = names
            .chunks(NAMES_PER_QUERY)
            .map(|c| {
                format!(
                    "select * from Vendor where DisplayName in ({}) maxresults 1000",
                    c.iter().map(|n| quoted(n)).collect::<Vec<_>>().join(", ")
                )
            })
            .collect();
        match qbo.queries("Vendor", &queries) {
            Ok(lists) => {
                for v in lists.into_iter().flatten() {
                    let name = v
                        .get("DisplayName")
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    let id = v.get("Id").and_then(Value::as_str).unwrap_or_default();
                    if !id.is_empty() {
                        found.push((name.to_string(), id.to_string()));
                    }
                }
            }
            Err(Failure::Call(e)) => return Err(e),
            Err(Failure::Each(e)) => failed = Some(e),
        }
    }
    let lookup = |name: &str, found: &[(String, String)]| {
        found
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, id)| id.clone())
    };
    let mut made: Vec<(String, Result<String, ConnectorError>)> = Vec::new();
    if failed.is_none() && create {
        let missing: Vec<&str> = names
            .iter()
            .copied()
            .filter(|n| lookup(n, &found).is_none())
            .collect();
        for chunk in missing.chunks(crate::api::BATCH_ITEMS) {
            let items = chunk
                .iter()
                .map(|n| json!({"operation": "create", "Vendor": {"DisplayName": n}}))
                .collect();
            match qbo.batch("vendors", items) {
                Ok(answers) => {
                    for (n, a) in chunk.iter().zip(answers) {
                        let r = match a {
                            Ok(v) => v
                                .get("Vendor")
                                .and_then(|v| v.get("Id"))
                                .and_then(Value::as_str)
                                .map(str::to_string)
                                .ok_or_else(|| {
                                    ConnectorError::Unavailable(
                                        "QuickBooks answered a new vendor without an Id".into(),
                                    )
                                }),
                            Err((kind, errors)) => Err(match faults::plain(&kind, &errors) {
                                ConnectorError::Validation(v) => ConnectorError::validation(
                                    "vendor",
                                    format!(
                                        "QuickBooks would not create vendor '{n}' ({}). A customer or employee may have that name, or a vendor of another spelling: map the AP vendor to its QuickBooks vendor id in the connection's mappings.vendors",
                                        v.message
                                    ),
                                ),
                                other => other,
                            }),
                        };
                        if r.is_ok() {
                            log::info(format!("created vendor '{n}' in QuickBooks"));
                        }
                        made.push((n.to_string(), r));
                    }
                }
                Err(Failure::Call(e)) => return Err(e),
                Err(Failure::Each(e)) => {
                    for n in chunk {
                        made.push((n.to_string(), Err(e.clone())));
                    }
                }
            }
        }
    }
    Ok(vendors
        .iter()
        .map(|v| {
            if let Some(id) = &v.erp_id {
                return Ok(id.clone());
            }
            if let Some(e) = &failed {
                return Err(e.clone());
            }
            let name = v.name.trim();
            if let Some(id) = lookup(name, &found) {
                return Ok(id);
            }
            if let Some((_, r)) = made.iter().find(|(n, _)| n == name) {
                return r.clone();
            }
            Err(ConnectorError::validation(
                "vendor",
                format!(
                    "QuickBooks has no vendor named '{name}'. Map AP vendor {} to its QuickBooks vendor id in the connection's mappings.vendors, or set the connection's setting create-vendors to true to have it created",
                    v.id
                ),
            ))
        })
        .collect())
}
