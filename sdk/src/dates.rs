//! Dates as the contract carries them (`YYYY-MM-DD`) and as ERPs send them
//! (Xero's `/Date(1539993600000+0000)/`).

/// A checked calendar date.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Ymd {
    pub year: i32,
    pub month: u32,
    pub day: u32,
}

impl Ymd {
    /// Parses `YYYY-MM-DD`, checking the day exists (no 2026-02-30).
    pub fn parse(text: &str) -> Result<Ymd, String> {
        let bad = || format!("`{text}` is not a date (YYYY-MM-DD)");
        let b = text.as_bytes();
        if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
            return Err(bad());
        }
        let year: i32 = text[0..4].parse().map_err(|_| bad())?;
        let month: u32 = text[5..7].parse().map_err(|_| bad())?;
        let day: u32 = text[8..10].parse().map_err(|_| bad())?;
        if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
            return Err(bad());
        }
        Ok(Ymd { year, month, day })
    }

    /// Days since 1970-01-01.
    pub fn to_epoch_days(self) -> i64 {
        // Howard Hinnant's days_from_civil.
        let y = i64::from(self.year) - i64::from(self.month <= 2);
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let m = i64::from(self.month);
        let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(self.day) - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        era * 146_097 + doe - 719_468
    }

    /// The date `days` after 1970-01-01.
    pub fn from_epoch_days(days: i64) -> Ymd {
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let year = (yoe + era * 400 + i64::from(month <= 2)) as i32;
        Ymd { year, month, day }
    }
}

impl std::fmt::Display for Ymd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

fn days_in_month(year: i32, month: u32) -> u32 {
    match month {
        4 | 6 | 9 | 11 => 30,
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        _ => 31,
    }
}

/// Xero's `/Date(1539993600000+0000)/` as `YYYY-MM-DD` (UTC).
pub fn from_ms_json_date(text: &str) -> Result<String, String> {
    let inner = text
        .strip_prefix("/Date(")
        .and_then(|t| t.strip_suffix(")/"))
        .ok_or_else(|| format!("`{text}` is not a /Date(ms)/ value"))?;
    let ms_text = inner
        .find(['+', '-'])
        .filter(|&i| i > 0)
        .map_or(inner, |i| &inner[..i]);
    let ms: i64 = ms_text
        .parse()
        .map_err(|_| format!("`{text}` is not a /Date(ms)/ value"))?;
    Ok(Ymd::from_epoch_days(ms.div_euclid(86_400_000)).to_string())
}

/// `YYYY-MM-DD` as Xero's `/Date(ms+0000)/`.
pub fn to_ms_json_date(date: &str) -> Result<String, String> {
    let d = Ymd::parse(date)?;
    Ok(format!("/Date({}+0000)/", d.to_epoch_days() * 86_400_000))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip() {
        assert_eq!(
            from_ms_json_date("/Date(1539993600000+0000)/").unwrap(),
            "2018-10-20"
        );
        assert_eq!(
            to_ms_json_date("2018-10-20").unwrap(),
            "/Date(1539993600000+0000)/"
        );
        assert!(Ymd::parse("2026-02-29").is_err());
        assert!(Ymd::parse("2024-02-29").is_ok());
        assert!(Ymd::parse("2026-1-05").is_err());
        for d in [-1000, 0, 19_000, 60_000] {
            assert_eq!(Ymd::from_epoch_days(d).to_epoch_days(), d);
        }
    }
}
