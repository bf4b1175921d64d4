//! Amounts as Xero keeps them: exact decimals, here in ten-thousandths
//! (Xero takes up to four decimal places for unit amounts).

use serde_json::Value;

/// An amount in ten-thousandths.
pub type Amount = i64;

/// A JSON number (or numeric string) with at most `max_dp` decimals.
pub fn parse_amount(v: &Value, max_dp: u32) -> Option<Amount> {
    let text = match v {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.trim().to_string(),
        _ => return None,
    };
    // serde_json writes whole floats as `12.0` and may use exponents.
    let text = if text.contains(['e', 'E']) {
        let f: f64 = text.parse().ok()?;
        format!("{f:.4}")
    } else {
        text
    };
    let (neg, t) = match text.strip_prefix('-') {
        Some(t) => (true, t),
        None => (false, text.as_str()),
    };
    let (whole, frac) = t.split_once('.').unwrap_or((t, ""));
    let frac = frac.trim_end_matches('0');
    if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) || whole.len() > 14 {
        return None;
    }
    if frac.len() > max_dp.min(4) as usize || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut f = frac.to_string();
    while f.len() < 4 {
        f.push('0');
    }
    let a: i64 = whole.parse::<i64>().ok()? * 10_000 + f.parse::<i64>().ok()?;
    Some(if neg { -a } else { a })
}

/// `x` (ten-thousandths) rounded half away from zero to `digits` decimals.
pub fn round_to(x: i128, digits: u32) -> i128 {
    let step = 10i128.pow(4 - digits.min(4));
    let half = step / 2;
    let r = if x >= 0 {
        (x + half) / step
    } else {
        (x - half) / step
    };
    r * step
}

/// An amount as a JSON number with `dp` decimals.
pub fn to_json(a: Amount, dp: u32) -> Value {
    let dp = dp.min(4);
    let neg = a < 0;
    let abs = a.unsigned_abs();
    let whole = abs / 10_000;
    let frac = abs % 10_000;
    let frac = frac / 10u64.pow(4 - dp);
    let text = if dp == 0 {
        format!("{}{whole}", if neg { "-" } else { "" })
    } else {
        format!(
            "{}{whole}.{frac:0width$}",
            if neg { "-" } else { "" },
            width = dp as usize
        )
    };
    serde_json::from_str(&text).unwrap_or(Value::String(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_are_exact() {
        assert_eq!(parse_amount(&serde_json::json!(12.34), 2), Some(123_400));
        assert_eq!(
            parse_amount(&serde_json::json!("12.3456"), 4),
            Some(123_456)
        );
        assert_eq!(parse_amount(&serde_json::json!(12.345), 2), None);
        assert_eq!(parse_amount(&serde_json::json!(-5), 2), Some(-50_000));
        assert_eq!(round_to(123_456, 2), 123_500);
        assert_eq!(round_to(-123_450, 2), -123_500);
        assert_eq!(to_json(123_400, 2).to_string(), "12.34");
        assert_eq!(to_json(4_800_000, 0).to_string(), "480");
    }
}
