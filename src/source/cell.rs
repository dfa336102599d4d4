//! Typed cells: the declared type of a column, the parsed [`Value`], and the shape of a value
//! that may not be shown.

use std::fmt;

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime};
use rust_decimal::Decimal;

/// The date format used when a plan declares `date` without one.
pub const DEFAULT_DATE_FORMAT: &str = "%Y-%m-%d";
/// The datetime format used when a plan declares `datetime` without one.
pub const DEFAULT_DATETIME_FORMAT: &str = "%Y-%m-%dT%H:%M:%S";

/// The declared type of a column. Formats are chrono `strftime` patterns.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum CellType {
    /// Any text, kept as it is (no trimming).
    #[default]
    Text,
    /// An exact decimal number (`-12.50`), parsed with `rust_decimal`: never a float.
    Decimal,
    /// A signed 64-bit integer.
    Int,
    /// A calendar date in the given format, e.g. `%d/%m/%Y` or `%Y%m%d`.
    Date { format: String },
    /// A date and time in the given format. If the format has an offset (`%z`, `%:z`), the value
    /// is a [`Value::DateTimeTz`], otherwise a [`Value::DateTime`].
    DateTime { format: String },
    /// `true/false`, `yes/no`, `y/n`, `t/f`, `1/0` (any case).
    Bool,
}

impl CellType {
    /// A date in [`DEFAULT_DATE_FORMAT`].
    pub fn date() -> Self {
        CellType::Date {
            format: DEFAULT_DATE_FORMAT.to_string(),
        }
    }

    /// A date in `format`.
    pub fn date_in(format: &str) -> Self {
        CellType::Date {
            format: format.to_string(),
        }
    }

    /// A datetime in [`DEFAULT_DATETIME_FORMAT`].
    pub fn datetime() -> Self {
        CellType::DateTime {
            format: DEFAULT_DATETIME_FORMAT.to_string(),
        }
    }

    /// A datetime in `format`.
    pub fn datetime_in(format: &str) -> Self {
        CellType::DateTime {
            format: format.to_string(),
        }
    }

    /// What a valid cell of this type is, for messages: "a date in format %d/%m/%Y".
    pub fn describe(&self) -> String {
        match self {
            CellType::Text => "text".to_string(),
            CellType::Decimal => "a decimal number".to_string(),
            CellType::Int => "an integer".to_string(),
            CellType::Date { format } => format!("a date in format {format}"),
            CellType::DateTime { format } => format!("a datetime in format {format}"),
            CellType::Bool => "a boolean (true/false, yes/no, y/n, 1/0)".to_string(),
        }
    }
}

/// A parsed cell. Text borrows from the row; everything else is owned.
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    /// An empty cell in a typed (non-text) column.
    Null,
    /// A text cell, as it is in the file (possibly empty).
    Text(&'a str),
    /// An exact decimal.
    Decimal(Decimal),
    /// An integer.
    Int(i64),
    /// A date.
    Date(NaiveDate),
    /// A datetime without offset.
    DateTime(NaiveDateTime),
    /// A datetime with an offset (the format had `%z` or `%:z`).
    DateTimeTz(DateTime<FixedOffset>),
    /// A boolean.
    Bool(bool),
}

/// A cell that does not parse as its declared type. It holds no part of the value, so it is
/// safe to log; [`Problem`](super::Problem) adds the value or its [`shape`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CellError {
    /// What was expected, from [`CellType::describe`].
    pub expected: String,
}

impl fmt::Display for CellError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "not {}", self.expected)
    }
}

impl std::error::Error for CellError {}

/// Parses one cell as `ty`.
///
/// Text is returned as it is. For the other types, surrounding ASCII whitespace is ignored and
/// an empty cell is [`Value::Null`].
pub fn parse_cell<'a>(raw: &'a str, ty: &CellType) -> Result<Value<'a>, CellError> {
    if let CellType::Text = ty {
        return Ok(Value::Text(raw));
    }
    let s = raw.trim_matches(|c: char| c.is_ascii_whitespace());
    if s.is_empty() {
        return Ok(Value::Null);
    }
    let bad = || CellError {
        expected: ty.describe(),
    };
    match ty {
        CellType::Text => unreachable!("handled above"),
        CellType::Decimal => parse_decimal(s).map(Value::Decimal).ok_or_else(bad),
        CellType::Int => {
            if !plain_number(s, false) {
                return Err(bad());
            }
            s.parse::<i64>().map(Value::Int).map_err(|_| bad())
        }
        CellType::Date { format } => iso_date(s, format)
            .or_else(|| NaiveDate::parse_from_str(s, format).ok())
            .map(Value::Date)
            .ok_or_else(bad),
        CellType::DateTime { format } => {
            if format_has_offset(format) {
                DateTime::parse_from_str(s, format)
                    .map(Value::DateTimeTz)
                    .map_err(|_| bad())
            } else {
                NaiveDateTime::parse_from_str(s, format)
                    .map(Value::DateTime)
                    .map_err(|_| bad())
            }
        }
        CellType::Bool => match s.to_ascii_lowercase().as_str() {
            "true" | "t" | "yes" | "y" | "1" => Ok(Value::Bool(true)),
            "false" | "f" | "no" | "n" | "0" => Ok(Value::Bool(false)),
            _ => Err(bad()),
        },
    }
}

/// `YYYY-MM-DD` in the default format, without chrono's format parser (what it would give;
/// anything else, including an impossible date, is left to chrono).
fn iso_date(s: &str, format: &str) -> Option<NaiveDate> {
    let b = s.as_bytes();
    if format != DEFAULT_DATE_FORMAT || b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| {
        b[r].iter().try_fold(0u32, |n, &c| {
            c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0'))
        })
    };
    NaiveDate::from_ymd_opt(num(0..4)? as i32, num(5..7)?, num(8..10)?)
}

/// `[+-]digits[.digits]`, exactly, into a `Decimal` (no exponent, no separators, no rounding).
fn parse_decimal(s: &str) -> Option<Decimal> {
    if !plain_number(s, true) {
        return None;
    }
    Decimal::from_str_exact(s).ok()
}

/// An optional sign, then digits, with at most one `.` (when `fraction`) and at least one digit.
fn plain_number(s: &str, fraction: bool) -> bool {
    let body = s.strip_prefix(['+', '-']).unwrap_or(s);
    let mut digits = 0;
    let mut dots = 0;
    for b in body.bytes() {
        match b {
            b'0'..=b'9' => digits += 1,
            b'.' if fraction => dots += 1,
            _ => return false,
        }
    }
    digits > 0 && dots <= 1
}

/// Whether a chrono format parses an offset (`%z`, `%:z`, `%::z`, `%#z`).
fn format_has_offset(format: &str) -> bool {
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            continue;
        }
        for spec in chars.by_ref() {
            match spec {
                ':' | '#' | '-' | '_' | '0' | '^' => continue,
                'z' => return true,
                _ => break,
            }
        }
    }
    false
}

/// The shape of a value, safe to show for personal data: digits become `9`, letters `A`/`a`,
/// anything else is kept; long values are cut at 40 characters.
///
/// `shape("31/02/1985") == "99/99/9999"`, `shape("Jean-Luc") == "Aaaa-Aaa"`.
pub fn shape(raw: &str) -> String {
    const MAX: usize = 40;
    let mut out = String::new();
    for (i, c) in raw.chars().enumerate() {
        if i == MAX {
            out.push('…');
            break;
        }
        out.push(if c.is_numeric() {
            '9'
        } else if c.is_alphabetic() {
            if c.is_uppercase() { 'A' } else { 'a' }
        } else {
            c
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    #[test]
    fn decimals_are_exact() {
        let a = parse_cell("0.1", &CellType::Decimal).unwrap();
        let b = parse_cell("0.2", &CellType::Decimal).unwrap();
        match (a, b) {
            (Value::Decimal(a), Value::Decimal(b)) => assert_eq!(a + b, dec!(0.3)),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            parse_cell("12345678901234.56", &CellType::Decimal).unwrap(),
            Value::Decimal(dec!(12345678901234.56))
        );
        assert_eq!(
            parse_cell(" -7.50 ", &CellType::Decimal).unwrap(),
            Value::Decimal(dec!(-7.50))
        );
        for bad in ["1e5", "1,5", "1_000", "abc", "1.2.3", "-", "."] {
            assert!(parse_cell(bad, &CellType::Decimal).is_err(), "{bad}");
        }
        assert_eq!(parse_cell("", &CellType::Decimal).unwrap(), Value::Null);
    }

    #[test]
    fn ints_bools_text() {
        assert_eq!(parse_cell("+42", &CellType::Int).unwrap(), Value::Int(42));
        assert_eq!(parse_cell("-3", &CellType::Int).unwrap(), Value::Int(-3));
        assert!(parse_cell("4.0", &CellType::Int).is_err());
        assert!(parse_cell("99999999999999999999", &CellType::Int).is_err());
        for t in ["true", "TRUE", "Y", "yes", "1", "t"] {
            assert_eq!(parse_cell(t, &CellType::Bool).unwrap(), Value::Bool(true));
        }
        for f in ["false", "No", "n", "0", "F"] {
            assert_eq!(parse_cell(f, &CellType::Bool).unwrap(), Value::Bool(false));
        }
        assert!(parse_cell("maybe", &CellType::Bool).is_err());
        assert_eq!(
            parse_cell(" a ", &CellType::Text).unwrap(),
            Value::Text(" a ")
        );
        assert_eq!(parse_cell("", &CellType::Text).unwrap(), Value::Text(""));
    }

    #[test]
    fn dates_and_datetimes() {
        let d = NaiveDate::from_ymd_opt(2024, 1, 31).unwrap();
        assert_eq!(
            parse_cell("2024-01-31", &CellType::date()).unwrap(),
            Value::Date(d)
        );
        assert_eq!(
            parse_cell("31/01/2024", &CellType::date_in("%d/%m/%Y")).unwrap(),
            Value::Date(d)
        );
        assert_eq!(
            parse_cell("20240131", &CellType::date_in("%Y%m%d")).unwrap(),
            Value::Date(d)
        );
        let err = parse_cell("31/02/2024", &CellType::date_in("%d/%m/%Y")).unwrap_err();
        assert_eq!(err.to_string(), "not a date in format %d/%m/%Y");
        assert!(parse_cell("2024-01-31", &CellType::date_in("%d/%m/%Y")).is_err());

        let dt = d.and_hms_opt(10, 5, 0).unwrap();
        assert_eq!(
            parse_cell("2024-01-31T10:05:00", &CellType::datetime()).unwrap(),
            Value::DateTime(dt)
        );
        match parse_cell(
            "2024-01-31 10:05:00 +02:00",
            &CellType::datetime_in("%Y-%m-%d %H:%M:%S %:z"),
        )
        .unwrap()
        {
            Value::DateTimeTz(v) => {
                assert_eq!(v.naive_local(), dt);
                assert_eq!(v.offset().local_minus_utc(), 7200);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn shapes_hide_values() {
        assert_eq!(shape("31/02/1985"), "99/99/9999");
        assert_eq!(shape("Jean-Luc É"), "Aaaa-Aaa A");
        assert_eq!(shape(&"x".repeat(50)).chars().count(), 41);
    }
}
