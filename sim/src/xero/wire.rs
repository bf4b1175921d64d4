//! Xero's date forms: `/Date(1539993600000+0000)/` in answers, with
//! `DateString` beside it; `YYYY-MM-DD` in requests.

use serde_json::Value;

/// `YYYY-MM-DD` as Xero's `/Date(ms+0000)/`.
pub fn json_date(day: &str) -> Value {
    match chrono::NaiveDate::parse_from_str(day, "%Y-%m-%d") {
        Ok(d) => {
            let ms = d
                .and_hms_opt(0, 0, 0)
                .map_or(0, |t| t.and_utc().timestamp_millis());
            Value::String(format!("/Date({ms}+0000)/"))
        }
        Err(_) => Value::Null,
    }
}

/// Milliseconds since the epoch as `YYYY-MM-DD` (UTC).
pub fn ms_date(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|d| d.date_naive().format("%Y-%m-%d").to_string())
        .unwrap_or_else(|| "1970-01-01".into())
}

/// The milliseconds of a `/Date(ms[+zone])/`.
pub fn date_ms(text: &str) -> Option<i64> {
    let inner = text.strip_prefix("/Date(")?.strip_suffix(")/")?;
    // A leading minus belongs to the number; a later `+`/`-` starts the zone.
    let end = inner
        .char_indices()
        .skip(1)
        .find(|(_, c)| *c == '+' || *c == '-')
        .map_or(inner.len(), |(i, _)| i);
    inner[..end].parse().ok()
}
