//! The filters migrations need. Every one accepts `""` (and `none`); the typed ones (`decimal`,
//! `int`, `date`, `datetime`) give `none` for an empty or blank cell, so an optional empty
//! column leaves its field out of the rendered object. Errors never quote the value: they give
//! its length and shape (`99/99/9999`).

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Datelike, FixedOffset, NaiveDate, NaiveDateTime, TimeZone, Timelike};
use minijinja::value::{Kwargs, Rest, ValueKind};
use minijinja::{Environment, Error, ErrorKind, Value};
use rust_decimal::{Decimal, RoundingStrategy};

use super::value::{Mode, as_exact, decimal_value};

/// The filters this module adds or replaces, for messages.
pub(super) const PLAN_FILTERS: &str =
    "decimal, int, date, datetime, default, mask, trim, upper, lower";

/// What a filter found wrong, attached to the engine's error so the caller gets it back whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct FilterFailure {
    pub filter: &'static str,
    pub problem: String,
}

impl fmt::Display for FilterFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.filter, self.problem)
    }
}

impl std::error::Error for FilterFailure {}

fn fail(filter: &'static str, problem: impl Into<String>) -> Error {
    let failure = FilterFailure {
        filter,
        problem: problem.into(),
    };
    Error::new(ErrorKind::InvalidOperation, failure.to_string()).with_source(failure)
}

/// The shape of a value, safe to show for personal data: `12 characters, shape "99,999.99"`.
/// Digits become `9`, letters `A`/`a`, anything else is kept; cut at 24 characters.
pub(super) fn shape(raw: &str) -> String {
    const MAX: usize = 24;
    let mut out = String::new();
    let mut count = 0;
    for c in raw.chars() {
        if count < MAX {
            out.push(if c.is_numeric() {
                '9'
            } else if c.is_alphabetic() {
                if c.is_uppercase() { 'A' } else { 'a' }
            } else {
                c
            });
        } else if count == MAX {
            out.push('…');
        }
        count += 1;
    }
    let unit = if count == 1 {
        "character"
    } else {
        "characters"
    };
    format!("{count} {unit}, shape \"{out}\"")
}

/// A filter's input, sorted.
enum Input<'v> {
    /// `none` or a blank string.
    Empty,
    /// Text, trimmed.
    Text(&'v str),
    Int(i128),
    Exact(Decimal),
    Float(f64),
    Other(ValueKind),
}

fn input(v: &Value) -> Result<Input<'_>, Error> {
    Ok(match v.kind() {
        ValueKind::Undefined => return Err(Error::from(ErrorKind::UndefinedError)),
        ValueKind::None => Input::Empty,
        ValueKind::String => match v.as_str().unwrap_or_default().trim() {
            "" => Input::Empty,
            s => Input::Text(s),
        },
        ValueKind::Number if v.is_integer() => match i128::try_from(v.clone()) {
            Ok(i) => Input::Int(i),
            Err(_) => Input::Other(ValueKind::Number),
        },
        ValueKind::Number => match f64::try_from(v.clone()) {
            Ok(f) => Input::Float(f),
            Err(_) => Input::Other(ValueKind::Number),
        },
        ValueKind::Plain => match as_exact(v) {
            Some(d) => Input::Exact(d),
            None => Input::Other(ValueKind::Plain),
        },
        kind => Input::Other(kind),
    })
}

fn wrong_kind(filter: &'static str, kind: ValueKind) -> Error {
    fail(filter, format!("expects text or a number, got {kind}"))
}

/// Adds every plan filter to `env`. `mode` decides what `decimal` yields; `default_offset` is
/// the offset `datetime` gives a date-time that has none.
pub(super) fn register(env: &mut Environment<'static>, mode: Mode, default_offset: Zone) {
    env.add_filter("decimal", move |value: &Value, kwargs: Kwargs| {
        decimal(value, kwargs, mode)
    });
    env.add_filter("int", int);
    env.add_filter("date", date);
    env.add_filter(
        "datetime",
        move |value: &Value, format: Option<String>, kwargs: Kwargs| {
            datetime(value, format.as_deref(), kwargs, default_offset)
        },
    );
    env.add_filter("default", default);
    env.add_filter("mask", mask);
    env.add_filter("trim", |v: &Value| {
        text_op("trim", v, |s| s.trim().to_string())
    });
    env.add_filter("upper", |v: &Value| text_op("upper", v, str::to_uppercase));
    env.add_filter("lower", |v: &Value| text_op("lower", v, str::to_lowercase));
}

/// `decimal`, `decimal(comma=true)`, `decimal(thousands=true)`, `decimal(places=2)`.
fn decimal(value: &Value, kwargs: Kwargs, mode: Mode) -> Result<Value, Error> {
    let comma: bool = kwargs.get::<Option<bool>>("comma")?.unwrap_or(false);
    let thousands: bool = kwargs.get::<Option<bool>>("thousands")?.unwrap_or(false);
    let places: Option<u32> = kwargs.get("places")?;
    kwargs.assert_all_used()?;
    decimal_with(value, comma, thousands, places, mode)
}

/// [`decimal`] once its arguments are read.
fn decimal_with(
    value: &Value,
    comma: bool,
    thousands: bool,
    places: Option<u32>,
    mode: Mode,
) -> Result<Value, Error> {
    let d = match input(value)? {
        Input::Empty => return Ok(Value::from(())),
        Input::Text(s) => parse_decimal(s, comma, thousands).map_err(|p| fail("decimal", p))?,
        Input::Int(i) => Decimal::try_from_i128_with_scale(i, 0)
            .map_err(|_| fail("decimal", "out of range (more than 28 digits)"))?,
        Input::Exact(d) => d,
        // A float's shortest text: what was written, if it came from a literal.
        Input::Float(f) => Decimal::from_str(&f.to_string())
            .map_err(|_| fail("decimal", "a float out of range"))?,
        Input::Other(kind) => return Err(wrong_kind("decimal", kind)),
    };
    let d = match places {
        Some(p) if p > 28 => return Err(fail("decimal", "places must be 28 or less")),
        Some(p) => {
            let mut r = d.round_dp_with_strategy(p, RoundingStrategy::MidpointAwayFromZero);
            r.rescale(p);
            r
        }
        None => d,
    };
    Ok(decimal_value(d, mode))
}

/// Parses `[+-]digits[sep digits]`, strictly: no exponent, no spaces inside, the decimal
/// separator `.` (or `,` with `comma`), thousands separators (the other one) only with
/// `thousands`, and then in groups of three.
pub(super) fn parse_decimal(s: &str, comma: bool, thousands: bool) -> Result<Decimal, String> {
    let (point, group) = if comma { (',', '.') } else { ('.', ',') };
    let not_a_number = || {
        let mut message = format!("not a decimal number ({})", shape(s));
        if !comma && !thousands && s.contains(',') {
            message.push_str(
                "; `,` is read as the decimal separator only with decimal(comma=true), \
                 as a thousands separator only with decimal(thousands=true)",
            );
        } else if !thousands && s.contains(group) {
            message.push_str(&format!(
                "; `{group}` is read as a thousands separator only with decimal(thousands=true)"
            ));
        }
        message
    };
    let (negative, body) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let (int_part, frac_part) = match body.split_once(point) {
        Some((i, f)) => (i, Some(f)),
        None => (body, None),
    };
    let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    let int_digits: String = if thousands && int_part.contains(group) {
        let mut groups = int_part.split(group);
        let first = groups.next().unwrap_or_default();
        if !(digits(first) && first.len() <= 3) {
            return Err(not_a_number());
        }
        let mut out = first.to_string();
        for g in groups {
            if !(digits(g) && g.len() == 3) {
                return Err(not_a_number());
            }
            out.push_str(g);
        }
        out
    } else if digits(int_part) {
        int_part.to_string()
    } else {
        return Err(not_a_number());
    };
    if let Some(f) = frac_part
        && !digits(f)
    {
        return Err(not_a_number());
    }
    let text = match frac_part {
        Some(f) => format!("{}{int_digits}.{f}", if negative { "-" } else { "" }),
        None => format!("{}{int_digits}", if negative { "-" } else { "" }),
    };
    Decimal::from_str_exact(&text)
        .map_err(|_| format!("out of range ({}): at most 28 digits", shape(s)))
}

/// `int`: whole numbers only (`"12.0"` is an error, not 12).
fn int(value: &Value) -> Result<Value, Error> {
    let out_of_range = || fail("int", "out of range for a 64-bit integer");
    let i: i64 = match input(value)? {
        Input::Empty => return Ok(Value::from(())),
        Input::Text(s) => {
            let body = s.strip_prefix(['+', '-']).unwrap_or(s);
            if body.is_empty() || !body.bytes().all(|b| b.is_ascii_digit()) {
                let whole = if s.contains(['.', ',']) {
                    "not a whole number"
                } else {
                    "not an integer"
                };
                return Err(fail("int", format!("{whole} ({})", shape(s))));
            }
            s.parse().map_err(|_| out_of_range())?
        }
        Input::Int(i) => i64::try_from(i).map_err(|_| out_of_range())?,
        Input::Exact(d) if d.fract().is_zero() => {
            rust_decimal::prelude::ToPrimitive::to_i64(&d).ok_or_else(out_of_range)?
        }
        Input::Float(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => f as i64,
        Input::Exact(_) | Input::Float(_) => return Err(fail("int", "not a whole number")),
        Input::Other(kind) => return Err(wrong_kind("int", kind)),
    };
    Ok(Value::from(i))
}

/// The text a date filter parses: trimmed text, or an integer's digits (`20240115`).
fn date_text<'v>(
    filter: &'static str,
    value: &'v Value,
) -> Result<Option<std::borrow::Cow<'v, str>>, Error> {
    Ok(match input(value)? {
        Input::Empty => None,
        Input::Text(s) => Some(s.into()),
        Input::Int(i) => Some(i.to_string().into()),
        Input::Exact(_) | Input::Float(_) => return Err(wrong_kind(filter, ValueKind::Number)),
        Input::Other(kind) => return Err(wrong_kind(filter, kind)),
    })
}

/// `date` / `date("%d/%m/%Y")`: a `YYYY-MM-DD` string.
fn date(value: &Value, format: Option<String>) -> Result<Value, Error> {
    date_with(value, format.as_deref())
}

/// [`date`] once its argument is read.
fn date_with(value: &Value, format: Option<&str>) -> Result<Value, Error> {
    let Some(s) = date_text("date", value)? else {
        return Ok(Value::from(()));
    };
    let parsed = match format {
        Some(f) => NaiveDate::parse_from_str(&s, f)
            .or_else(|_| NaiveDateTime::parse_from_str(&s, f).map(|d| d.date()))
            .or_else(|_| DateTime::parse_from_str(&s, f).map(|d| d.date_naive()))
            .map_err(|_| format!("not a date in format {f} ({})", shape(&s))),
        None => iso_date(&s)
            .ok_or(())
            .or_else(|_| NaiveDate::parse_from_str(&s, "%Y-%m-%d"))
            .or_else(|_| DateTime::parse_from_rfc3339(&s).map(|d| d.date_naive()))
            .or_else(|_| NaiveDateTime::parse_from_str(&s, "%Y-%m-%dT%H:%M:%S%.f").map(|d| d.date()))
            .map_err(|_| {
                format!(
                    "not an ISO date (YYYY-MM-DD or RFC 3339) ({}); give the format: date(\"%d/%m/%Y\")",
                    shape(&s)
                )
            }),
    };
    let d = parsed.map_err(|p| fail("date", p))?;
    Ok(Value::from(format_date(d)))
}

/// `YYYY-MM-DD` exactly, without chrono's format parser (the common case, several times per
/// rendered call).
fn iso_date(s: &str) -> Option<NaiveDate> {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        b[r].iter().try_fold(0u32, |n, &c| {
            c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0'))
        })
    };
    NaiveDate::from_ymd_opt(num(0..4)? as i32, num(5..7)?, num(8..10)?)
}

/// `%Y-%m-%d`.
fn format_date(d: NaiveDate) -> String {
    if (0..=9999).contains(&d.year()) {
        format!("{:04}-{:02}-{:02}", d.year(), d.month(), d.day())
    } else {
        d.format("%Y-%m-%d").to_string()
    }
}

/// `%Y-%m-%dT%H:%M:%S%:z`.
fn format_datetime(dt: DateTime<FixedOffset>) -> String {
    if !(0..=9999).contains(&dt.year()) {
        return dt.format("%Y-%m-%dT%H:%M:%S%:z").to_string();
    }
    let offset = dt.offset().local_minus_utc();
    let sign = if offset < 0 { '-' } else { '+' };
    let offset = offset.unsigned_abs() / 60;
    format!(
        "{}T{:02}:{:02}:{:02}{sign}{:02}:{:02}",
        format_date(dt.date_naive()),
        dt.hour(),
        dt.minute(),
        dt.second(),
        offset / 60,
        offset % 60
    )
}

/// Parses a UTC offset: `+02:00`, `-0530`, `Z` or `UTC`.
pub(super) fn parse_offset(s: &str) -> Option<FixedOffset> {
    match s.trim() {
        "Z" | "z" | "UTC" => FixedOffset::east_opt(0),
        t => FixedOffset::from_str(t).ok(),
    }
}

/// The time zone a date-time without an offset is taken in: a fixed offset, or an IANA zone
/// whose offset depends on the date (daylight saving). Mambu refuses a date-time whose offset
/// is not the one its tenant's zone had at that instant (`../shared/mambu-api.md` §8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Zone {
    Fixed(FixedOffset),
    Named(chrono_tz::Tz),
}

impl Zone {
    pub const UTC: Zone = Zone::Named(chrono_tz::UTC);

    /// `+02:00`, `Z`, `UTC`, or an IANA name (`Europe/Lisbon`).
    pub fn parse(text: &str) -> Option<Zone> {
        parse_offset(text)
            .map(Zone::Fixed)
            .or_else(|| text.trim().parse::<chrono_tz::Tz>().ok().map(Zone::Named))
    }

    /// A local date-time in this zone, with the offset in force then. In the hour the clocks
    /// skip it does not exist: an error saying so. In the hour they repeat, the first one.
    pub fn at(self, local: NaiveDateTime) -> Result<DateTime<FixedOffset>, String> {
        match self {
            Zone::Fixed(offset) => offset
                .from_local_datetime(&local)
                .single()
                .ok_or_else(|| "out of range".to_owned()),
            Zone::Named(tz) => match tz.from_local_datetime(&local) {
                chrono::LocalResult::Single(dt) => Ok(dt.fixed_offset()),
                chrono::LocalResult::Ambiguous(first, _) => Ok(first.fixed_offset()),
                chrono::LocalResult::None => Err(format!(
                    "{} does not exist in {}: the clocks skip that hour (daylight saving); correct the time in the data",
                    local.format("%Y-%m-%d %H:%M"),
                    tz.name()
                )),
            },
        }
    }

    /// `dt` as this zone shows it.
    pub fn show(self, dt: DateTime<FixedOffset>) -> DateTime<FixedOffset> {
        match self {
            Zone::Fixed(offset) => dt.with_timezone(&offset),
            Zone::Named(tz) => dt.with_timezone(&tz).fixed_offset(),
        }
    }

    /// Whether every date-time this zone renders carries the offset the tenant's zone has at
    /// that instant: the same zone, or a fixed offset the tenant's zone never leaves (checked
    /// in January and July of 2000 to 2040). Otherwise why not, and the fix.
    pub fn agrees_with(self, tenant: chrono_tz::Tz) -> Result<(), String> {
        let offsets = |tz: chrono_tz::Tz| -> Vec<i32> {
            let mut seen: Vec<i32> = (2000..=2040)
                .flat_map(|year| [1, 7].map(|month| (year, month)))
                .filter_map(|(year, month)| {
                    let at = NaiveDate::from_ymd_opt(year, month, 1)?.and_hms_opt(12, 0, 0)?;
                    Some(
                        tz.from_utc_datetime(&at)
                            .fixed_offset()
                            .offset()
                            .local_minus_utc(),
                    )
                })
                .collect();
            seen.sort_unstable();
            seen.dedup();
            seen
        };
        let fix = format!("set the plan's `timezone: {}`", tenant.name());
        match self {
            // Another name for UTC (`Etc/UTC`) is UTC; any other zone is not the tenant's.
            Zone::Named(tz) if tz == tenant || offsets(tz) == [0] && offsets(tenant) == [0] => {
                Ok(())
            }
            Zone::Named(tz) => Err(format!(
                "the plan's time zone {} is not the tenant's ({}): Mambu would refuse its date-times; {fix}",
                tz.name(),
                tenant.name()
            )),
            Zone::Fixed(offset) if offsets(tenant) == [offset.local_minus_utc()] => Ok(()),
            Zone::Fixed(offset) => Err(format!(
                "the plan's fixed offset {offset} is not always the tenant's ({}, whose offset changes with the date): Mambu would refuse the date-times of part of the year; {fix}",
                tenant.name()
            )),
        }
    }
}

/// Either a date-time with its offset, or one without.
enum Parsed {
    Aware(DateTime<FixedOffset>),
    Naive(NaiveDateTime),
}

fn parse_datetime(s: &str, format: Option<&str>) -> Option<Parsed> {
    let naive_date = |d: NaiveDate| d.and_hms_opt(0, 0, 0).map(Parsed::Naive);
    match format {
        Some(f) => DateTime::parse_from_str(s, f)
            .ok()
            .map(Parsed::Aware)
            .or_else(|| NaiveDateTime::parse_from_str(s, f).ok().map(Parsed::Naive))
            .or_else(|| NaiveDate::parse_from_str(s, f).ok().and_then(naive_date)),
        None => iso_date(s)
            .and_then(naive_date)
            .or_else(|| DateTime::parse_from_rfc3339(s).ok().map(Parsed::Aware))
            .or_else(|| {
                ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"]
                    .iter()
                    .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
                    .map(Parsed::Naive)
            })
            .or_else(|| {
                NaiveDate::parse_from_str(s, "%Y-%m-%d")
                    .ok()
                    .and_then(naive_date)
            }),
    }
}

/// `datetime`, `datetime("%d/%m/%Y %H:%M")`, `datetime(tz="+02:00")`: Mambu's
/// `2024-01-15T00:00:00+00:00`. A date is midnight. A value without an offset is taken in
/// `tz` (default: the engine's); a value with one keeps it, or is converted to `tz` when given.
/// Fractions of a second are dropped.
fn datetime(
    value: &Value,
    format: Option<&str>,
    kwargs: Kwargs,
    default_offset: Zone,
) -> Result<Value, Error> {
    let tz: Option<String> = kwargs.get("tz")?;
    kwargs.assert_all_used()?;
    datetime_with(value, format, tz.as_deref(), default_offset)
}

/// [`datetime`] once its arguments are read.
fn datetime_with(
    value: &Value,
    format: Option<&str>,
    tz: Option<&str>,
    default_offset: Zone,
) -> Result<Value, Error> {
    let tz = match tz {
        Some(t) => Some(Zone::parse(t).ok_or_else(|| {
            fail(
                "datetime",
                "tz must be an offset like +02:00, -05:30 or Z, or a time zone like Europe/Lisbon",
            )
        })?),
        None => None,
    };
    let Some(s) = date_text("datetime", value)? else {
        return Ok(Value::from(()));
    };
    let parsed = parse_datetime(&s, format).ok_or_else(|| {
        let expected = match format {
            Some(f) => format!("a date-time in format {f}"),
            None => "an ISO date or date-time".to_string(),
        };
        fail("datetime", format!("not {expected} ({})", shape(&s)))
    })?;
    let dt = match parsed {
        Parsed::Aware(dt) => match tz {
            Some(tz) => tz.show(dt),
            None => dt,
        },
        Parsed::Naive(naive) => tz
            .unwrap_or(default_offset)
            .at(naive)
            .map_err(|e| fail("datetime", e))?,
    };
    Ok(Value::from(format_datetime(dt)))
}

/// `default(x)`: `x` when the value is undefined, `none` or `""` (minijinja's own `default`
/// only replaces undefined). Without an argument, `""`.
fn default(value: &Value, args: Rest<Value>) -> Result<Value, Error> {
    // `Rest`, not `Option<Value>`: an `Option` would take `default(none)` for no argument.
    let other = match args.as_slice() {
        [] => Value::from(""),
        [other] => other.clone(),
        _ => return Err(Error::from(ErrorKind::TooManyArguments)),
    };
    let empty = value.is_undefined() || value.is_none() || value.as_str() == Some("");
    Ok(if empty { other } else { value.clone() })
}

/// `mask`: keeps the first character of each word, the rest become `*`:
/// `Ada Lovelace` → `A** L*******`. Whitespace is kept; numbers are masked as their text.
fn mask(value: &Value) -> Result<Value, Error> {
    let text = match value.kind() {
        ValueKind::Undefined => return Err(Error::from(ErrorKind::UndefinedError)),
        ValueKind::None => return Ok(Value::from(())),
        ValueKind::String => value.as_str().unwrap_or_default().to_string(),
        ValueKind::Number | ValueKind::Bool | ValueKind::Plain => value.to_string(),
        kind => return Err(wrong_kind("mask", kind)),
    };
    Ok(Value::from(mask_text(&text)))
}

/// `trim`, `upper`, `lower`: text only; `none` stays `none`.
fn text_op(
    filter: &'static str,
    value: &Value,
    op: impl Fn(&str) -> String,
) -> Result<Value, Error> {
    match value.kind() {
        ValueKind::Undefined => Err(Error::from(ErrorKind::UndefinedError)),
        ValueKind::None => Ok(Value::from(())),
        ValueKind::String => Ok(Value::from(op(value.as_str().unwrap_or_default()))),
        kind => Err(fail(filter, format!("expects text, got {kind}"))),
    }
}

/// The `mask` rule: the first character of each word, the rest `*` (`"Ada Lovelace"` →
/// `"A** L*******"`), for showing personal data in reports.
pub fn mask_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut word_start = true;
    for c in text.chars() {
        if c.is_whitespace() {
            out.push(c);
            word_start = true;
        } else if word_start {
            out.push(c);
            word_start = false;
        } else {
            out.push('*');
        }
    }
    out
}

/// One plan filter with its arguments read from literals: a step of a [`Chain`].
#[derive(Debug, Clone, PartialEq)]
enum Call {
    Decimal {
        comma: bool,
        thousands: bool,
        places: Option<u32>,
    },
    Int,
    Date(Option<String>),
    Datetime {
        format: Option<String>,
        tz: Option<String>,
    },
    Trim,
    Upper,
    Lower,
}

/// An expression that is one variable through plan filters with literal arguments
/// (`transactions.amount | decimal`, `loans.disbursed_on | datetime("%d/%m/%Y")`), applied to
/// a cell's text by calling the filters directly: what the engine gives for it, without the
/// engine. Only for value expressions ([`Mode::Value`]).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Chain {
    calls: Vec<Call>,
    default_offset: Zone,
}

impl Chain {
    /// The chain of `source` when it is `variable` followed by one or more filters this module
    /// can call directly, each with no arguments or with the literal arguments it takes;
    /// `None` for anything else.
    pub(super) fn parse(source: &str, variable: &str, default_offset: Zone) -> Option<Chain> {
        let mut p = Parser {
            rest: source.trim(),
        };
        p.rest = p.rest.strip_prefix(variable)?;
        let mut calls = Vec::new();
        while !p.rest.trim_start().is_empty() {
            p.skip();
            p.rest = p.rest.strip_prefix('|')?;
            p.skip();
            let name = p.ident()?;
            p.skip();
            let args = if p.rest.starts_with('(') {
                p.rest = &p.rest[1..];
                p.args()?
            } else {
                Args::default()
            };
            calls.push(Call::new(name, args)?);
        }
        if calls.is_empty() {
            return None;
        }
        Some(Chain {
            calls,
            default_offset,
        })
    }

    /// The value of the expression for a cell holding `cell`.
    pub(super) fn apply(&self, cell: &str) -> Result<Value, Error> {
        let mut value = Value::from(cell);
        for call in &self.calls {
            value = match call {
                Call::Decimal {
                    comma,
                    thousands,
                    places,
                } => decimal_with(&value, *comma, *thousands, *places, Mode::Value)?,
                Call::Int => int(&value)?,
                Call::Date(format) => date_with(&value, format.as_deref())?,
                Call::Datetime { format, tz } => datetime_with(
                    &value,
                    format.as_deref(),
                    tz.as_deref(),
                    self.default_offset,
                )?,
                Call::Trim => text_op("trim", &value, |s| s.trim().to_string())?,
                Call::Upper => text_op("upper", &value, str::to_uppercase)?,
                Call::Lower => text_op("lower", &value, str::to_lowercase)?,
            };
        }
        Ok(value)
    }
}

/// A literal argument.
#[derive(Debug, Clone, PartialEq)]
enum Literal {
    Str(String),
    Bool(bool),
    Int(u32),
}

#[derive(Default)]
struct Args {
    positional: Vec<Literal>,
    named: Vec<(String, Literal)>,
}

impl Call {
    fn new(name: &str, args: Args) -> Option<Call> {
        let Args { positional, named } = args;
        // A name given twice: left to the engine.
        for (i, (n, _)) in named.iter().enumerate() {
            if named[..i].iter().any(|(m, _)| m == n) {
                return None;
            }
        }
        let no_args = positional.is_empty() && named.is_empty();
        let one_string = |positional: Vec<Literal>| -> Option<Option<String>> {
            match positional.as_slice() {
                [] => Some(None),
                [Literal::Str(s)] => Some(Some(s.clone())),
                _ => None,
            }
        };
        Some(match name {
            "decimal" if positional.is_empty() => {
                let (mut comma, mut thousands, mut places) = (false, false, None);
                for (n, v) in named {
                    match (n.as_str(), v) {
                        ("comma", Literal::Bool(b)) => comma = b,
                        ("thousands", Literal::Bool(b)) => thousands = b,
                        ("places", Literal::Int(i)) => places = Some(i),
                        _ => return None,
                    }
                }
                Call::Decimal {
                    comma,
                    thousands,
                    places,
                }
            }
            "int" if no_args => Call::Int,
            "date" if named.is_empty() => Call::Date(one_string(positional)?),
            "datetime" => {
                let format = one_string(positional)?;
                let mut tz = None;
                for (n, v) in named {
                    match (n.as_str(), v) {
                        ("tz", Literal::Str(s)) => tz = Some(s),
                        _ => return None,
                    }
                }
                Call::Datetime { format, tz }
            }
            "trim" if no_args => Call::Trim,
            "upper" if no_args => Call::Upper,
            "lower" if no_args => Call::Lower,
            _ => return None,
        })
    }
}

/// A small reader of what [`Chain::parse`] accepts.
struct Parser<'s> {
    rest: &'s str,
}

impl<'s> Parser<'s> {
    fn skip(&mut self) {
        self.rest = self.rest.trim_start_matches([' ', '\t', '\n', '\r']);
    }

    fn ident(&mut self) -> Option<&'s str> {
        let end = self
            .rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(self.rest.len());
        let (name, rest) = self.rest.split_at(end);
        if !name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
            return None;
        }
        self.rest = rest;
        Some(name)
    }

    /// Arguments up to and with the closing `)`.
    fn args(&mut self) -> Option<Args> {
        let mut args = Args::default();
        self.skip();
        if let Some(rest) = self.rest.strip_prefix(')') {
            self.rest = rest;
            return Some(args);
        }
        loop {
            self.skip();
            let save = self.rest;
            let named = match self.ident() {
                Some(name) => {
                    self.skip();
                    if self.rest.starts_with('=') && !self.rest.starts_with("==") {
                        self.rest = &self.rest[1..];
                        self.skip();
                        Some(name.to_string())
                    } else {
                        self.rest = save;
                        None
                    }
                }
                None => None,
            };
            let literal = self.literal()?;
            match named {
                Some(name) => args.named.push((name, literal)),
                // A positional argument after a named one: left to the engine.
                None if !args.named.is_empty() => return None,
                None => args.positional.push(literal),
            }
            self.skip();
            if let Some(rest) = self.rest.strip_prefix(',') {
                self.rest = rest;
                continue;
            }
            self.rest = self.rest.strip_prefix(')')?;
            return Some(args);
        }
    }

    /// A string without escapes, `true`, `false`, or digits.
    fn literal(&mut self) -> Option<Literal> {
        let quote = self.rest.chars().next()?;
        if quote == '\'' || quote == '"' {
            let body = &self.rest[1..];
            let end = body.find(quote)?;
            let text = &body[..end];
            if text.contains('\\') {
                return None;
            }
            self.rest = &body[end + 1..];
            return Some(Literal::Str(text.to_string()));
        }
        let end = self
            .rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
            .unwrap_or(self.rest.len());
        let (word, rest) = self.rest.split_at(end);
        let literal = match word {
            "true" => Literal::Bool(true),
            "false" => Literal::Bool(false),
            w if !w.is_empty() && w.bytes().all(|b| b.is_ascii_digit()) => {
                Literal::Int(w.parse().ok()?)
            }
            _ => return None,
        };
        self.rest = rest;
        Some(literal)
    }
}

#[cfg(test)]
mod fast_paths {
    use super::*;

    #[test]
    fn hand_formatting_and_parsing_agree_with_chrono() {
        for (date, offset) in [
            ("2024-02-29", 0),
            ("0001-01-01", 19_800),
            ("9999-12-31", -34_200),
            ("1970-06-15", -3_600),
            ("2025-11-30", 45 * 60),
        ] {
            let d = iso_date(date).unwrap();
            assert_eq!(Some(d), NaiveDate::parse_from_str(date, "%Y-%m-%d").ok());
            assert_eq!(format_date(d), d.format("%Y-%m-%d").to_string());
            let tz = FixedOffset::east_opt(offset).unwrap();
            let dt = tz
                .from_local_datetime(&d.and_hms_opt(7, 5, 9).unwrap())
                .unwrap();
            assert_eq!(
                format_datetime(dt),
                dt.format("%Y-%m-%dT%H:%M:%S%:z").to_string()
            );
        }
        for not_iso in [
            "2024-2-29",
            "2024-02-30",
            "20240229",
            "2024/02/29",
            "２０２４-01-01",
            "",
        ] {
            assert_eq!(iso_date(not_iso), None, "{not_iso}");
        }
    }
}
