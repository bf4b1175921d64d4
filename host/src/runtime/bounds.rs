//! Bounds on everything a plugin hands back (P6), applied where its reply
//! enters the host, before anything copies, logs or stores it.
//!
//! A value over its bound is a plugin fault of that one operation
//! ([`PluginFault::ReplyTooLarge`]); messages are the exception: they are
//! cut, with a marker, since the rest of the answer is still worth having.
//! Wasmtime has lifted the reply into host memory by then (one copy, bounded
//! by the call's memory limit, freed at once); what the bounds stop is the
//! copies after it: the integration log, the store, attention items.

use super::bindings::{ConnectorError, Descriptor, Entry};
use super::call::{CallError, PluginFault, Reply};

/// Longest entry id accepted from a plugin.
pub const MAX_ENTRY_ID_BYTES: usize = 256;
/// Longest entry version token accepted from a plugin.
pub const MAX_ENTRY_VERSION_BYTES: usize = 128;
/// Longest field name of a validation error.
pub const MAX_FIELD_BYTES: usize = 256;
/// Longest message kept from a plugin's error; longer ones are cut.
pub const MAX_MESSAGE_BYTES: usize = 4096;
/// Longest wait a rate-limited answer may ask for (a day); longer ones are
/// clamped.
pub const MAX_RETRY_AFTER_MS: u64 = 24 * 60 * 60 * 1000;
/// Longest name and version in a plugin's descriptor.
pub const MAX_DESCRIPTOR_NAME_BYTES: usize = 64;
/// Most settings a descriptor may declare.
pub const MAX_DESCRIPTOR_SETTINGS: usize = 64;
/// Longest setting name and setting description in a descriptor.
pub const MAX_SETTING_NAME_BYTES: usize = 128;
/// Longest setting description in a descriptor.
pub const MAX_SETTING_DESCRIPTION_BYTES: usize = 1024;

fn too_large(what: &'static str, limit: usize, unit: &'static str) -> PluginFault {
    PluginFault::ReplyTooLarge { what, limit, unit }
}

fn at_most(text: &str, limit: usize, what: &'static str) -> Result<(), PluginFault> {
    if text.len() > limit {
        return Err(too_large(what, limit, "bytes"));
    }
    Ok(())
}

/// Cuts `message` to [`MAX_MESSAGE_BYTES`] with a marker saying how long it was.
fn cut(message: &mut String) {
    cut_to(message, MAX_MESSAGE_BYTES);
}

fn cut_to(message: &mut String, limit: usize) {
    if message.len() <= limit {
        return;
    }
    let was = message.len();
    let mut at = limit;
    while !message.is_char_boundary(at) {
        at -= 1;
    }
    message.truncate(at);
    message.shrink_to_fit();
    message.push_str(&format!(" …[cut: the plugin's message was {was} bytes]"));
}

fn entry(e: &Entry) -> Result<(), PluginFault> {
    at_most(&e.id, MAX_ENTRY_ID_BYTES, "entry id")?;
    if let Some(v) = &e.version {
        at_most(v, MAX_ENTRY_VERSION_BYTES, "entry version")?;
    }
    Ok(())
}

/// A successful reply, within its bounds; `asked` is the count a
/// `check-numbers-in-use` asked for.
fn reply(reply: Reply, asked: Option<u32>) -> Result<Reply, PluginFault> {
    match &reply {
        Reply::Found(Some(e)) | Reply::Entry(e) => entry(e)?,
        Reply::Found(None) => {}
        Reply::CheckNumbers(numbers) => {
            let asked = asked.unwrap_or(0) as usize;
            if numbers.len() > asked {
                return Err(too_large(
                    "check-number list",
                    asked,
                    "numbers (the count the host asked about)",
                ));
            }
        }
    }
    Ok(reply)
}

/// A connector error with its messages cut and its other values bounded.
fn connector_error(mut e: ConnectorError) -> Result<ConnectorError, PluginFault> {
    match &mut e {
        ConnectorError::Booked(m)
        | ConnectorError::NotFound(m)
        | ConnectorError::Conflict(m)
        | ConnectorError::Unavailable(m)
        | ConnectorError::Unauthorized(m) => cut(m),
        ConnectorError::DuplicateCheckNumber(d) => cut(&mut d.message),
        ConnectorError::Validation(v) => {
            at_most(&v.field, MAX_FIELD_BYTES, "validation field name")?;
            cut(&mut v.message);
        }
        ConnectorError::RateLimited(r) => {
            cut(&mut r.message);
            r.retry_after_ms = r.retry_after_ms.map(|ms| ms.min(MAX_RETRY_AFTER_MS));
        }
    }
    Ok(e)
}

/// The result of a call, bounded: an oversized reply becomes a fault, long
/// messages are cut, and so are fault texts that quote the plugin (a trap's
/// backtrace names the plugin's own functions).
pub(crate) fn result(
    result: Result<Reply, CallError>,
    asked: Option<u32>,
) -> Result<Reply, CallError> {
    match result {
        Ok(r) => reply(r, asked).map_err(CallError::Fault),
        Err(CallError::Connector(e)) => match connector_error(e) {
            Ok(e) => Err(CallError::Connector(e)),
            Err(f) => Err(CallError::Fault(f)),
        },
        Err(CallError::Fault(f)) => Err(CallError::Fault(fault(f))),
        Err(other) => Err(other),
    }
}

/// A fault whose text is cut to [`MAX_MESSAGE_BYTES`].
pub(crate) fn fault(mut f: PluginFault) -> PluginFault {
    match &mut f {
        PluginFault::Trap(m) | PluginFault::Instantiate(m) => cut(m),
        _ => {}
    }
    f
}

/// Most items one call may carry, whatever a descriptor says: the replies
/// of a call stay small, and one call's deadline covers them all.
pub const MAX_ITEMS_PER_CALL: u32 = 100;

/// A plugin's descriptor, within its bounds. Its limits must allow at least
/// one call and one item; larger ones than the host runs are lowered to the
/// host's (calls at once to [`LimitOverrides::CALLS_AT_ONCE`], items per
/// call to [`MAX_ITEMS_PER_CALL`]); calls a day are raised to the host's
/// least ([`LimitOverrides::CALLS_PER_DAY`]).
///
/// [`LimitOverrides::CALLS_PER_DAY`]: crate::model::LimitOverrides::CALLS_PER_DAY
///
/// [`LimitOverrides::CALLS_AT_ONCE`]: crate::model::LimitOverrides::CALLS_AT_ONCE
pub(crate) fn descriptor(mut d: Descriptor) -> Result<Descriptor, PluginFault> {
    let l = &mut d.limits;
    for (name, value) in [
        ("calls-at-once", l.calls_at_once),
        ("calls-per-minute", l.calls_per_minute.unwrap_or(1)),
        ("calls-per-day", l.calls_per_day.unwrap_or(1)),
        ("lookups-per-call", l.lookups_per_call),
        ("creates-per-call", l.creates_per_call),
        ("updates-per-call", l.updates_per_call),
    ] {
        if value == 0 {
            return Err(PluginFault::Contract(format!(
                "the descriptor's limits.{name} is 0; it must be at least 1"
            )));
        }
    }
    // Under 350 a day the budget's pace leaves a job waiting past its
    // longest wait between its lookup and its create, for ever; the ERP's
    // own `429`s then pause the connection instead.
    let least_a_day = *crate::model::LimitOverrides::CALLS_PER_DAY.start() as u32;
    l.calls_per_day = l.calls_per_day.map(|d| d.max(least_a_day));
    let most_at_once = *crate::model::LimitOverrides::CALLS_AT_ONCE.end() as u32;
    l.calls_at_once = l.calls_at_once.min(most_at_once);
    for n in [
        &mut l.lookups_per_call,
        &mut l.creates_per_call,
        &mut l.updates_per_call,
    ] {
        *n = (*n).min(MAX_ITEMS_PER_CALL);
    }
    at_most(&d.name, MAX_DESCRIPTOR_NAME_BYTES, "plugin name")?;
    at_most(&d.version, MAX_DESCRIPTOR_NAME_BYTES, "plugin version")?;
    if d.settings.len() > MAX_DESCRIPTOR_SETTINGS {
        return Err(too_large(
            "settings list",
            MAX_DESCRIPTOR_SETTINGS,
            "settings",
        ));
    }
    for s in &d.settings {
        at_most(&s.name, MAX_SETTING_NAME_BYTES, "setting name")?;
        at_most(
            &s.description,
            MAX_SETTING_DESCRIPTION_BYTES,
            "setting description",
        )?;
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::bindings::{
        Capabilities, EntryState, Limits, RateLimit, SettingSpec, ValidationError,
    };

    fn entry_with(id: &str, version: Option<&str>) -> Entry {
        Entry {
            id: id.into(),
            version: version.map(Into::into),
            state: EntryState::Open,
            total: None,
        }
    }

    #[test]
    fn p6_oversized_ids_and_versions_are_faults_and_normal_ones_pass() {
        let ok = entry_with(&"i".repeat(MAX_ENTRY_ID_BYTES), Some("3"));
        assert_eq!(
            result(Ok(Reply::Entry(ok.clone())), None),
            Ok(Reply::Entry(ok))
        );
        let big = entry_with(&"i".repeat(MAX_ENTRY_ID_BYTES + 1), None);
        assert_eq!(
            result(Ok(Reply::Found(Some(big))), None),
            Err(CallError::Fault(PluginFault::ReplyTooLarge {
                what: "entry id",
                limit: MAX_ENTRY_ID_BYTES,
                unit: "bytes"
            }))
        );
        let v = entry_with("1", Some(&"v".repeat(MAX_ENTRY_VERSION_BYTES + 1)));
        assert!(matches!(
            result(Ok(Reply::Entry(v)), None),
            Err(CallError::Fault(PluginFault::ReplyTooLarge {
                what: "entry version",
                ..
            }))
        ));
    }

    #[test]
    fn p6_check_numbers_are_at_most_the_count_asked_for() {
        let fine = Reply::CheckNumbers(vec![1, 2, 3]);
        assert_eq!(result(Ok(fine.clone()), Some(3)), Ok(fine));
        let over = Reply::CheckNumbers(vec![1, 2, 3, 4]);
        assert!(matches!(
            result(Ok(over), Some(3)),
            Err(CallError::Fault(PluginFault::ReplyTooLarge {
                limit: 3,
                ..
            }))
        ));
    }

    #[test]
    fn p6_messages_are_cut_with_a_marker_and_other_values_bounded() {
        let long = "é".repeat(MAX_MESSAGE_BYTES);
        let Err(CallError::Connector(ConnectorError::Unavailable(m))) = result(
            Err(CallError::Connector(ConnectorError::Unavailable(
                long.clone(),
            ))),
            None,
        ) else {
            panic!("still an unavailable answer")
        };
        assert!(m.len() < MAX_MESSAGE_BYTES + 100, "{}", m.len());
        assert!(m.ends_with(&format!("was {} bytes]", long.len())), "{m}");

        let rl = ConnectorError::RateLimited(RateLimit {
            retry_after_ms: Some(u64::MAX),
            message: "slow down".into(),
        });
        let Err(CallError::Connector(ConnectorError::RateLimited(r))) =
            result(Err(CallError::Connector(rl)), None)
        else {
            panic!()
        };
        assert_eq!(r.retry_after_ms, Some(MAX_RETRY_AFTER_MS));
        assert_eq!(r.message, "slow down");

        let field = ConnectorError::Validation(ValidationError {
            field: "f".repeat(MAX_FIELD_BYTES + 1),
            message: "m".into(),
        });
        assert!(matches!(
            result(Err(CallError::Connector(field)), None),
            Err(CallError::Fault(PluginFault::ReplyTooLarge {
                what: "validation field name",
                ..
            }))
        ));
        let trap = fault(PluginFault::Trap("t".repeat(1 << 20)));
        assert!(matches!(trap, PluginFault::Trap(m) if m.len() < MAX_MESSAGE_BYTES + 100));
    }

    #[test]
    fn p6_descriptors_are_bounded() {
        let d = |settings: usize, name_len: usize| Descriptor {
            name: "n".repeat(name_len),
            version: "1.0.0".into(),
            capabilities: Capabilities::empty(),
            settings: (0..settings)
                .map(|i| SettingSpec {
                    name: format!("s{i}"),
                    description: "d".into(),
                    required: false,
                })
                .collect(),
            limits: Limits {
                calls_at_once: 5,
                calls_per_minute: Some(60),
                calls_per_day: None,
                lookups_per_call: 50,
                creates_per_call: 50,
                updates_per_call: 50,
            },
        };
        assert!(descriptor(d(3, 10)).is_ok());
        assert!(descriptor(d(MAX_DESCRIPTOR_SETTINGS + 1, 10)).is_err());
        assert!(descriptor(d(1, MAX_DESCRIPTOR_NAME_BYTES + 1)).is_err());
    }

    /// Limits of zero are refused; larger ones than the host runs lowered.
    #[test]
    fn p6_descriptor_limits_are_at_least_one_and_at_most_the_hosts() {
        let with = |f: fn(&mut Limits)| {
            let mut limits = Limits {
                calls_at_once: 5,
                calls_per_minute: Some(60),
                calls_per_day: Some(5000),
                lookups_per_call: 50,
                creates_per_call: 50,
                updates_per_call: 50,
            };
            f(&mut limits);
            descriptor(Descriptor {
                name: "x".into(),
                version: "1".into(),
                capabilities: Capabilities::empty(),
                settings: vec![],
                limits,
            })
        };
        let err = with(|l| l.creates_per_call = 0).unwrap_err();
        assert!(
            err.to_string().contains("limits.creates-per-call is 0"),
            "{err}"
        );
        assert!(with(|l| l.calls_per_minute = Some(0)).is_err());
        assert!(with(|l| l.calls_at_once = 0).is_err());
        let big = with(|l| {
            l.calls_at_once = u32::MAX;
            l.lookups_per_call = u32::MAX;
        })
        .unwrap();
        assert_eq!(big.limits.calls_at_once, 16);
        assert_eq!(big.limits.lookups_per_call, MAX_ITEMS_PER_CALL);
        assert_eq!(big.limits.creates_per_call, 50);
        let few = with(|l| l.calls_per_day = Some(2)).unwrap();
        assert_eq!(
            few.limits.calls_per_day,
            Some(350),
            "a day's budget the host can keep to"
        );
    }
}
