//! Reading request bodies and writing answers: object and string fields, exact decimals and
//! money, dates in Mambu's format, now and today.

use std::str::FromStr;

use chrono::{DateTime, FixedOffset, Months, SecondsFormat, Utc};
use rust_decimal::Decimal;
use serde_json::{Map, Value};

use crate::sandbox::error::ApiError;

pub(super) fn object(body: &Value) -> Result<&Map<String, Value>, ApiError> {
    body.as_object().ok_or_else(|| {
        ApiError::new(axum::http::StatusCode::BAD_REQUEST, 4, "INVALID_PARAMETERS")
            .at("body: a JSON object is expected")
    })
}

/// The body minus fields Mambu sets itself (read-only in the spec: ignored when sent).
pub(super) fn writable(doc: &Map<String, Value>, read_only: &[&str]) -> Map<String, Value> {
    doc.iter()
        .filter(|(k, _)| !read_only.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

pub(super) fn optional_str<'a>(
    doc: &'a Map<String, Value>,
    field: &str,
) -> Result<Option<&'a str>, ApiError> {
    match doc.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.as_str())),
        Some(_) => Err(ApiError::invalid_parameters(field)),
    }
}

pub(super) fn required_str<'a>(
    doc: &'a Map<String, Value>,
    field: &str,
) -> Result<&'a str, ApiError> {
    match optional_str(doc, field)? {
        Some(s) if !s.trim().is_empty() => Ok(s),
        _ => Err(ApiError::missing(field)),
    }
}

pub(super) fn required_decimal(doc: &Map<String, Value>, field: &str) -> Result<Decimal, ApiError> {
    match doc.get(field) {
        None | Some(Value::Null) => Err(ApiError::missing(field)),
        Some(v) => decimal(v).ok_or_else(|| ApiError::invalid_parameters(field)),
    }
}

/// A JSON number as an exact decimal (the body is parsed with arbitrary precision, so
/// `937.50` stays `937.50`).
pub fn decimal(v: &Value) -> Option<Decimal> {
    let Value::Number(n) = v else { return None };
    let text = n.to_string();
    Decimal::from_str(&text)
        .or_else(|_| Decimal::from_scientific(&text))
        .ok()
}

/// A decimal as a JSON number, without going through a float.
pub fn money(d: Decimal) -> Value {
    serde_json::from_str(&d.normalize().to_string()).unwrap_or(Value::Null)
}

pub(super) fn optional_datetime(
    doc: Option<&Value>,
    field: &str,
) -> Result<Option<DateTime<FixedOffset>>, ApiError> {
    match doc.and_then(|d| d.get(field)) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => parse_datetime(v).map(Some).ok_or_else(|| {
            ApiError::new(
                axum::http::StatusCode::BAD_REQUEST,
                4,
                "INVALID_DATE_TIME_FORMAT",
            )
            .at(field)
        }),
    }
}

pub(super) fn parse_datetime(v: &Value) -> Option<DateTime<FixedOffset>> {
    DateTime::parse_from_rfc3339(v.as_str()?).ok()
}

pub(super) fn format_datetime(at: DateTime<FixedOffset>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, false)
}

pub(super) fn now_datetime() -> DateTime<FixedOffset> {
    Utc::now().fixed_offset()
}

pub(super) fn now() -> String {
    format_datetime(now_datetime())
}

pub(super) fn today() -> DateTime<FixedOffset> {
    let date = Utc::now().date_naive();
    date.and_hms_opt(0, 0, 0)
        .map(|d| d.and_utc().fixed_offset())
        .unwrap_or_else(now_datetime)
}

pub(super) fn add_months(at: DateTime<FixedOffset>, months: u32) -> DateTime<FixedOffset> {
    at.checked_add_months(Months::new(months)).unwrap_or(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_keeps_its_decimals_exactly() {
        let v: Value = serde_json::from_str("937.10").unwrap();
        assert_eq!(decimal(&v), Some(Decimal::new(93710, 2)));
        assert_eq!(
            money(Decimal::new(1, 1) + Decimal::new(2, 1)).to_string(),
            "0.3"
        );
    }
}
