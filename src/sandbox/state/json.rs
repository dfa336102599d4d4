//! Reading request bodies and writing answers: object and string fields, exact decimals and
//! money, date-times checked against the tenant's zone and written in Mambu's format.

use std::str::FromStr;

use chrono::{DateTime, FixedOffset, SecondsFormat};
use rust_decimal::Decimal;
use serde_json::{Map, Value};

use super::zone::{DateError, Zone, offset_message};
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

/// A date-time field of a v2 body, checked against the tenant's zone; `None` when absent.
pub(super) fn optional_datetime(
    doc: Option<&Value>,
    field: &str,
    zone: Zone,
) -> Result<Option<DateTime<FixedOffset>>, ApiError> {
    match doc.and_then(|d| d.get(field)) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => datetime(v, field, zone).map(Some),
    }
}

/// A date-time of a v2 body (`source` names where it sits), with the offset the tenant's zone
/// has at that date and time.
pub(super) fn datetime(
    v: &Value,
    source: &str,
    zone: Zone,
) -> Result<DateTime<FixedOffset>, ApiError> {
    let format_error = || {
        ApiError::new(
            axum::http::StatusCode::BAD_REQUEST,
            4,
            "INVALID_DATE_TIME_FORMAT",
        )
        .at(source)
    };
    match zone.parse(v.as_str().ok_or_else(format_error)?) {
        Ok(at) => Ok(at),
        Err(DateError::Format) => Err(format_error()),
        // Mambu names the value, not the field.
        Err(DateError::Offset { local, expected }) => Err(ApiError::invalid_parameters(
            offset_message(local, expected),
        )),
    }
}

pub(super) fn format_datetime(at: DateTime<FixedOffset>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, false)
}

/// Now in the tenant's zone, as Mambu writes it.
pub(super) fn now(zone: Zone) -> String {
    format_datetime(zone.now())
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
