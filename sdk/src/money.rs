//! Amounts in minor units and their decimal form on the wire.
//!
//! The contract carries amounts as whole minor units (`s64`), so nothing is
//! rounded between host and connector. ERPs speak decimals (`"12.34"`, `12.34`);
//! these helpers convert exactly, without floating point.

/// The largest amount, in minor units, anywhere in the contract:
/// 999,999,999,999,999 (about ten trillion dollars). Below 2^53, so it stays
/// exact as a JSON number in every language; sums of such amounts fit `i64`.
pub const MAX_AMOUNT: i64 = 999_999_999_999_999;

/// Digits after the decimal point of ISO 4217 currency `code` (0 for JPY, 3
/// for KWD, 2 for USD), or `None` for a code that is not a currency of
/// ISO 4217 (or one, like gold `XAU`, that has no minor unit).
pub fn currency_digits(code: &str) -> Option<u32> {
    iso_currency::Currency::from_code(code)?
        .exponent()
        .map(u32::from)
}

/// Digits after the decimal point in `currency` (ISO 4217): 0 for JPY, 3 for
/// KWD, 2 for most, and 2 for a code ISO 4217 does not know.
pub fn minor_digits(currency: &str) -> u32 {
    currency_digits(&currency.to_ascii_uppercase()).unwrap_or(2)
}

/// `1234` USD → `"12.34"`; `-5` USD → `"-0.05"`; `1234` JPY → `"1234"`.
pub fn to_decimal(amount: i64, currency: &str) -> String {
    let digits = minor_digits(currency);
    if digits == 0 {
        return amount.to_string();
    }
    let scale = 10u64.pow(digits);
    let sign = if amount < 0 { "-" } else { "" };
    let abs = amount.unsigned_abs();
    format!(
        "{sign}{}.{:0width$}",
        abs / scale,
        abs % scale,
        width = digits as usize
    )
}

/// `"12.34"` USD → `1234`. Refuses more decimals than the currency has
/// (rather than rounding), signs other than a leading `-`, and overflow.
pub fn from_decimal(text: &str, currency: &str) -> Result<i64, String> {
    let digits = minor_digits(currency) as usize;
    let t = text.trim();
    let (negative, t) = match t.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, t),
    };
    let (whole, frac) = t.split_once('.').unwrap_or((t, ""));
    let frac = frac.trim_end_matches('0');
    let valid = !whole.is_empty()
        && whole.bytes().all(|b| b.is_ascii_digit())
        && frac.bytes().all(|b| b.is_ascii_digit());
    if !valid {
        return Err(format!("`{text}` is not a decimal amount"));
    }
    if frac.len() > digits {
        return Err(format!(
            "`{text}` has more than {digits} decimals for {currency}"
        ));
    }
    let mut minor: i64 = whole
        .parse::<i64>()
        .ok()
        .and_then(|w| w.checked_mul(10i64.pow(digits as u32)))
        .ok_or_else(|| format!("`{text}` is too large"))?;
    if !frac.is_empty() {
        let f: i64 = frac
            .parse()
            .map_err(|_| format!("`{text}` is not a decimal amount"))?;
        minor = minor
            .checked_add(f * 10i64.pow((digits - frac.len()) as u32))
            .ok_or_else(|| format!("`{text}` is too large"))?;
    }
    if minor > MAX_AMOUNT {
        return Err(format!(
            "`{text}` is over the largest amount, {}",
            to_decimal(MAX_AMOUNT, currency)
        ));
    }
    Ok(if negative { -minor } else { minor })
}

/// A JSON number (as ERPs send amounts) in minor units, read from its decimal
/// text so that `12.34` never becomes `12.339999`.
pub fn from_json(value: &serde_json::Value, currency: &str) -> Result<i64, String> {
    match value {
        serde_json::Value::Number(n) => from_decimal(&n.to_string(), currency),
        serde_json::Value::String(s) => from_decimal(s, currency),
        other => Err(format!("`{other}` is not an amount")),
    }
}

/// The amount as a JSON number with the currency's decimals (`12.34`).
pub fn to_json(amount: i64, currency: &str) -> serde_json::Value {
    let text = to_decimal(amount, currency);
    serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_decimals() {
        assert_eq!(to_decimal(1234, "USD"), "12.34");
        assert_eq!(to_decimal(-5, "USD"), "-0.05");
        assert_eq!(to_decimal(1234, "JPY"), "1234");
        assert_eq!(to_decimal(1234, "KWD"), "1.234");
        assert_eq!(from_decimal("12.34", "USD"), Ok(1234));
        assert_eq!(from_decimal("12.3", "USD"), Ok(1230));
        assert_eq!(from_decimal("12.340", "USD"), Ok(1234));
        assert_eq!(from_decimal("-0.05", "USD"), Ok(-5));
        assert_eq!(from_decimal("7", "USD"), Ok(700));
        assert!(from_decimal("12.345", "USD").is_err());
        assert!(from_decimal("1e3", "USD").is_err());
        assert!(from_decimal("", "USD").is_err());
        assert!(from_decimal("99999999999999999999", "USD").is_err());
        assert!(from_decimal("92233720368547758.07", "USD").is_err());
        assert_eq!(from_decimal("9999999999999.99", "USD"), Ok(MAX_AMOUNT));
        assert!(from_decimal("10000000000000.00", "USD").is_err());
        assert_eq!(currency_digits("JPY"), Some(0));
        assert_eq!(currency_digits("KWD"), Some(3));
        assert_eq!(currency_digits("USD"), Some(2));
        assert_eq!(currency_digits("ZZZ"), None);
        assert_eq!(from_decimal("1.234", "KWD"), Ok(1234));
        assert_eq!(from_decimal("480", "JPY"), Ok(480));
        let v: serde_json::Value = serde_json::from_str("12.34").unwrap();
        assert_eq!(from_json(&v, "USD"), Ok(1234));
        assert_eq!(to_json(1234, "USD").to_string(), "12.34");
    }
}
