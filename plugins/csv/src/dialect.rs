//! The connector's CSV dialect, read and written with the `csv` crate: RFC
//! 4180, CRLF line ends, fields quoted only when they must be (a comma, a
//! quote or a line break); and the cell escaping that keeps a spreadsheet
//! from running a value as a formula (OWASP "CSV Injection").
//!
//! Escaping, in one rule each way:
//! - **writing**: a value gets one leading `'` when it starts with `'`, or
//!   when (after any leading spaces) it starts with a character a spreadsheet
//!   takes as the start of a formula, unless it is a plain decimal number
//!   (`-5.00`: a spreadsheet reads it as the number it is);
//! - **reading**: a cell that starts with `'` loses exactly one `'`.
//!
//! So every value reads back as it was written: a value starting with `'`
//! was always given a second one.

use std::borrow::Cow;

/// Characters that make a spreadsheet read a cell as a formula: OWASP's list
/// (`=`, `+`, `-`, `@`, tab, carriage return), the line feed, and the
/// full-width forms of the first four, which some spreadsheets fold to the
/// ASCII ones.
fn starts_a_formula(c: char) -> bool {
    matches!(
        c,
        '=' | '+'
            | '-'
            | '@'
            | '\t'
            | '\r'
            | '\n'
            | '\u{FF1D}'
            | '\u{FF0B}'
            | '\u{FF0D}'
            | '\u{FF20}'
    )
}

/// `12`, `-5.00`, `-0.05`: what the connector writes in its amount columns.
/// Nothing but an optional `-`, digits, and optionally `.` and digits, so a
/// spreadsheet can only read it as a number.
fn is_plain_number(v: &str) -> bool {
    let unsigned = v.strip_prefix('-').unwrap_or(v);
    let (whole, frac) = match unsigned.split_once('.') {
        Some((w, f)) => (w, Some(f)),
        None => (unsigned, None),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    digits(whole) && frac.is_none_or(digits)
}

/// A value as its cell is written (see the module's rule).
pub fn escape(value: &str) -> Cow<'_, str> {
    let quoted = value.starts_with('\'');
    let formula = value
        .trim_start_matches(' ')
        .chars()
        .next()
        .is_some_and(starts_a_formula)
        && !is_plain_number(value);
    if quoted || formula {
        Cow::Owned(format!("'{value}"))
    } else {
        Cow::Borrowed(value)
    }
}

/// A cell as the value it holds: one leading `'` removed.
pub fn unescape(cell: &str) -> &str {
    cell.strip_prefix('\'').unwrap_or(cell)
}

/// Writes a whole file: the header as it is, then every row's values
/// escaped.
pub fn write(header: &[&str], rows: &[Vec<&str>]) -> Vec<u8> {
    let mut w = ::csv::WriterBuilder::new()
        .terminator(::csv::Terminator::CRLF)
        .quote_style(::csv::QuoteStyle::Necessary)
        .from_writer(Vec::with_capacity(256 * (rows.len() + 1)));
    // Writing to a Vec cannot fail, and every row has the header's length.
    w.write_record(header)
        .expect("a CSV row is written to memory");
    for row in rows {
        w.write_record(row.iter().map(|v| escape(v).into_owned()))
            .expect("a CSV row is written to memory");
    }
    w.into_inner().expect("a CSV file is written to memory")
}

/// Parses a whole file into its header (names trimmed) and its rows of
/// values (unescaped, not trimmed). Lines whose cells are all blank are
/// skipped, as are blank lines. A UTF-8 byte-order mark (spreadsheets write
/// one) is ignored, as the `csv` crate does; a cell that is not UTF-8 (a
/// file saved in a legacy code page) is read with U+FFFD for what cannot be
/// decoded, so the columns the connector needs, which are ASCII, still
/// read.
pub fn parse(bytes: &[u8]) -> Result<(Vec<String>, Vec<Vec<String>>), String> {
    // RFC 4180 quotes come in pairs; an odd count means a quote was opened
    // and never closed, and the reader would take the rest of the file into
    // one cell (and with it any later row's `Booked` mark).
    if bytes.iter().filter(|&&b| b == b'"').count() % 2 == 1 {
        return Err("a quote (`\"`) is opened and never closed".into());
    }
    let mut r = ::csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(bytes);
    let mut header = None;
    let mut rows = Vec::new();
    let mut record = ::csv::ByteRecord::new();
    loop {
        match r.read_byte_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => return Err(e.to_string()),
        }
        if record.iter().all(|c| c.trim_ascii().is_empty()) {
            continue;
        }
        let cells = record.iter().map(|c| String::from_utf8_lossy(c));
        if header.is_none() {
            header = Some(cells.map(|c| c.trim().to_string()).collect());
        } else {
            rows.push(cells.map(|c| unescape(&c).to_string()).collect());
        }
    }
    Ok((header.unwrap_or_default(), rows))
}
