//! The QuickBooks vendor of each AP vendor: the connection's mapping
//! (`mappings.vendors`, arriving as the vendor's `erp-id`) when present,
//! else the vendor whose `DisplayName` is the AP vendor's name, created
//! when the connection's `create-vendors` setting allows. Never a guess:
//! an unknown vendor is a `validation` of `vendor` with what to do.

use crate::api::{Failure, Found, Qbo, Query};
use crate::faults;
use ledgerbridge_sdk::*;
use serde_json::{Value, json};

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
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let result = crate::bills::find(
        qbo,
        "Vendor",
        &Query::any_of("Vendor", "DisplayName", "vendor", &names),
    )?;
    let found: Vec<(String, String)> = result
        .records
        .iter()
        .filter_map(|v| {
            let id = v.get("Id").and_then(Value::as_str).unwrap_or_default();
            let name = v
                .get("DisplayName")
                .and_then(Value::as_str)
                .unwrap_or_default();
            (!id.is_empty()).then(|| (name.to_string(), id.to_string()))
        })
        .collect();
    let failed = |name: &str, result: &Found| result.failure(name);
    let lookup = |name: &str, found: &[(String, String)]| {
        found
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, id)| id.clone())
    };
    let mut made: Vec<(String, Result<String, ConnectorError>)> = Vec::new();
    if create {
        let missing: Vec<&str> = names
            .iter()
            .map(String::as_str)
            .filter(|n| failed(n, &result).is_none() && lookup(n, &found).is_none())
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
                            Ok(v) => {
                                let v = v.get("Vendor").cloned().unwrap_or_default();
                                // Never a wrong vendor: an answer for another
                                // item (a mixed-up `bId`) fails the call.
                                let answered = v
                                    .get("DisplayName")
                                    .and_then(Value::as_str)
                                    .unwrap_or_default();
                                if answered.trim() != n.trim() {
                                    return Err(CallError::Unavailable(format!(
                                        "QuickBooks answered the new vendor '{n}' with vendor '{answered}'"
                                    )));
                                }
                                v.get("Id")
                                    .and_then(Value::as_str)
                                    .filter(|id| !id.is_empty())
                                    .map(str::to_string)
                                    .ok_or_else(|| {
                                        ConnectorError::Unavailable(
                                            "QuickBooks answered a new vendor without an Id".into(),
                                        )
                                    })
                            }
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
            let name = v.name.trim();
            if let Some(e) = failed(name, &result) {
                return Err(e);
            }
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
