//! Conversions between JSON and template values, and the exact decimal that travels between
//! them without ever being a float.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use minijinja::Value;
use minijinja::value::{DynObject, Object, ObjectRepr, ValueKind};
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;

/// What the values of one environment are for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    /// Rendering JSON: decimals are [`Exact`], so their digits reach the JSON text unchanged.
    Value,
    /// Evaluating `when:` conditions: decimals are plain numbers, so `x | decimal > 0`
    /// compares as numbers (an [`Exact`] only compares with another [`Exact`]).
    Condition,
}

/// An exact decimal inside templates (`loans.amount | decimal`). It renders as its digits
/// (`937.50`), turns into a JSON number with the same digits, is false when zero, and compares
/// with other exact decimals. Arithmetic on it is an error, not a float.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Exact(pub Decimal);

impl Object for Exact {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }

    fn is_true(self: &Arc<Self>) -> bool {
        !self.0.is_zero()
    }

    fn custom_cmp(self: &Arc<Self>, other: &DynObject) -> Option<Ordering> {
        Some(self.0.cmp(&other.downcast_ref::<Self>()?.0))
    }

    fn render(self: &Arc<Self>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// A decimal as the template value `mode` wants.
pub(super) fn decimal_value(d: Decimal, mode: Mode) -> Value {
    match mode {
        Mode::Value => Value::from_object(Exact(d)),
        Mode::Condition => match (d.fract().is_zero(), d.to_i64()) {
            (true, Some(i)) => Value::from(i),
            _ => Value::from(d.to_f64().unwrap_or(f64::NAN)),
        },
    }
}

/// The exact decimal a value holds, if it is one.
pub(super) fn as_exact(v: &Value) -> Option<Decimal> {
    v.downcast_object_ref::<Exact>().map(|e| e.0)
}

/// A JSON value (a saved step output) as a template value. Integers stay integers, other
/// numbers become exact decimals (floats only beyond `rust_decimal`'s range).
pub(super) fn json_to_value(v: &serde_json::Value, mode: Mode) -> Value {
    match v {
        serde_json::Value::Null => Value::from(()),
        serde_json::Value::Bool(b) => Value::from(*b),
        serde_json::Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                let text = n.to_string();
                match Decimal::from_str(&text).or_else(|_| Decimal::from_scientific(&text)) {
                    Ok(d) => decimal_value(d, mode),
                    Err(_) => Value::from(n.as_f64().unwrap_or(f64::NAN)),
                }
            }
        }
        serde_json::Value::String(s) => Value::from(s.as_str()),
        serde_json::Value::Array(items) => Value::from(
            items
                .iter()
                .map(|i| json_to_value(i, mode))
                .collect::<Vec<_>>(),
        ),
        serde_json::Value::Object(map) => Value::from(
            map.iter()
                .map(|(k, v)| (k.as_str(), json_to_value(v, mode)))
                .collect::<BTreeMap<_, _>>(),
        ),
    }
}

/// Why a template value has no JSON form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum NotJson {
    /// It is (or holds) an undefined value.
    Undefined,
    /// It is of a kind JSON cannot hold (a function, bytes, a non-finite number…).
    Kind(String),
}

/// A template value as JSON. Exact decimals and big integers keep their digits (the JSON
/// number is built from their text: `serde_json`'s `arbitrary_precision`).
pub(super) fn value_to_json(v: &Value) -> Result<serde_json::Value, NotJson> {
    Ok(match v.kind() {
        ValueKind::Undefined => return Err(NotJson::Undefined),
        ValueKind::None => serde_json::Value::Null,
        ValueKind::Bool => serde_json::Value::Bool(v.is_true()),
        ValueKind::String => serde_json::Value::String(v.as_str().unwrap_or_default().to_string()),
        ValueKind::Number => serde_json::Value::Number(number_to_json(v)?),
        ValueKind::Seq | ValueKind::Iterable => {
            let iter = v
                .try_iter()
                .map_err(|_| NotJson::Kind(v.kind().to_string()))?;
            serde_json::Value::Array(iter.map(|i| value_to_json(&i)).collect::<Result<_, _>>()?)
        }
        ValueKind::Map => {
            let object = v
                .as_object()
                .ok_or_else(|| NotJson::Kind("map".to_string()))?;
            let pairs = object
                .try_iter_pairs()
                .ok_or_else(|| NotJson::Kind("map".to_string()))?;
            let mut map = serde_json::Map::new();
            for (key, value) in pairs {
                let key = match key.as_str() {
                    Some(s) => s.to_string(),
                    None => key.to_string(),
                };
                map.insert(key, value_to_json(&value)?);
            }
            serde_json::Value::Object(map)
        }
        ValueKind::Plain => match as_exact(v) {
            Some(d) => serde_json::Value::Number(decimal_to_json(d)),
            None => return Err(NotJson::Kind("an object".to_string())),
        },
        kind => return Err(NotJson::Kind(kind.to_string())),
    })
}

fn number_to_json(v: &Value) -> Result<serde_json::Number, NotJson> {
    if v.is_integer() {
        if let Ok(i) = i64::try_from(v.clone()) {
            return Ok(i.into());
        }
        if let Ok(u) = u64::try_from(v.clone()) {
            return Ok(u.into());
        }
        let text = match i128::try_from(v.clone()) {
            Ok(i) => i.to_string(),
            Err(_) => u128::try_from(v.clone())
                .map_err(|_| NotJson::Kind("number".into()))?
                .to_string(),
        };
        return serde_json::Number::from_str(&text).map_err(|_| NotJson::Kind("number".into()));
    }
    let f = f64::try_from(v.clone()).map_err(|_| NotJson::Kind("number".into()))?;
    serde_json::Number::from_f64(f).ok_or_else(|| NotJson::Kind("a non-finite number".into()))
}

/// An exact decimal as a JSON number with the same digits (`937.50` stays `937.50`).
pub(super) fn decimal_to_json(d: Decimal) -> serde_json::Number {
    serde_json::Number::from_str(&d.to_string()).expect("a decimal's text is a JSON number")
}

/// A template value as text, for interpolation (`"Loan {{ loans.loan_id }}"`): strings as
/// they are, `none` as nothing, anything else as its JSON text (`true`, `12.50`, `[1,2]`).
pub(super) fn value_to_text(v: &Value) -> Result<Cow<'_, str>, NotJson> {
    if let Some(s) = v.as_str() {
        return Ok(Cow::Borrowed(s));
    }
    Ok(match value_to_json(v)? {
        serde_json::Value::Null => Cow::Borrowed(""),
        serde_json::Value::String(s) => Cow::Owned(s),
        other => Cow::Owned(other.to_string()),
    })
}
