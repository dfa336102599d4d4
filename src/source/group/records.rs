//! The records the external sorts spill: rows on their way to a unit ([`RowRec`]), a deeper
//! child's links to its parent ([`LinkRec`]) and root keys by line ([`LineRec`]), key index
//! entries ([`KeyRec`]), each with its order and encoding, and the typed `order_by` values
//! ([`OrderVal`]) rows sort by.

use std::cmp::Ordering;
use std::io;

use chrono::{Datelike, NaiveDate, NaiveDateTime};
use rust_decimal::Decimal;

use crate::source::ColumnSpec;
use crate::source::cell::{Value, parse_cell};
use crate::source::reader::Row;
use crate::source::sort::{Decoder, Prefix, Spillable, put_str, put_u32, put_u64, put_varint};

/// No parent column (a root row).
pub(super) const NO_PARENT: u32 = u32::MAX;

/// A row on its way to a unit, with its sort key: (root key, parent key, order_by, line).
/// The parent key is read from the row's own cell.
#[derive(Debug, Clone)]
pub(super) struct RowRec {
    pub(super) root: String,
    pub(super) parent_col: u32,
    pub(super) order: Vec<OrderVal>,
    pub(super) row: Row,
}

impl RowRec {
    pub(super) fn parent(&self) -> &str {
        self.row.get(self.parent_col as usize).unwrap_or_default()
    }

    fn sort_key(&self) -> (&str, &str, &[OrderVal], u64) {
        (&self.root, self.parent(), &self.order, self.row.line())
    }
}

impl PartialEq for RowRec {
    fn eq(&self, other: &Self) -> bool {
        self.sort_key() == other.sort_key()
    }
}

impl Eq for RowRec {}

impl PartialOrd for RowRec {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for RowRec {
    fn cmp(&self, other: &Self) -> Ordering {
        self.sort_key().cmp(&other.sort_key())
    }
}

impl Spillable for RowRec {
    fn encode(&self, out: &mut Vec<u8>) {
        put_str(out, &self.root);
        put_varint(out, u64::from(self.parent_col));
        put_varint(out, self.order.len() as u64);
        for v in &self.order {
            v.encode(out);
        }
        put_varint(out, self.row.line());
        let (text, ends) = self.row.parts();
        put_str(out, text);
        put_varint(out, ends.len() as u64);
        let mut start = 0;
        for &e in ends {
            put_varint(out, u64::from(e - start));
            start = e;
        }
    }

    fn decode(d: &mut Decoder<'_>) -> io::Result<Self> {
        let root = d.str()?.to_string();
        let parent_col = d.varint()? as u32;
        let n = d.varint()? as usize;
        let order = (0..n)
            .map(|_| OrderVal::decode(d))
            .collect::<io::Result<_>>()?;
        let line = d.varint()?;
        let text: Box<str> = d.str()?.into();
        let n = d.varint()? as usize;
        let mut end = 0u32;
        let ends: Box<[u32]> = (0..n)
            .map(|_| {
                end += d.varint()? as u32;
                Ok(end)
            })
            .collect::<io::Result<_>>()?;
        if ends.last().is_some_and(|&e| e as usize != text.len())
            || ends.iter().any(|&e| !text.is_char_boundary(e as usize))
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "corrupt sort run",
            ));
        }
        Ok(RowRec {
            root,
            parent_col,
            order,
            row: Row::from_parts(line, text, ends),
        })
    }

    fn mem_size(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.root.len()
            + self.order.len() * std::mem::size_of::<OrderVal>()
            + self.row.mem_size()
    }

    fn prefix(&self) -> u128 {
        Prefix::new().str(&self.root).str(self.parent()).value()
    }
}

/// A deeper child's link to its parent: (parent key, line), with the row's own key.
#[derive(Debug, Clone)]
pub(super) struct LinkRec {
    pub(super) parent: String,
    pub(super) line: u64,
    pub(super) key: String,
}

impl PartialEq for LinkRec {
    fn eq(&self, other: &Self) -> bool {
        (&self.parent, self.line) == (&other.parent, other.line)
    }
}

impl Eq for LinkRec {}

impl PartialOrd for LinkRec {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for LinkRec {
    fn cmp(&self, other: &Self) -> Ordering {
        (&self.parent, self.line).cmp(&(&other.parent, other.line))
    }
}

impl Spillable for LinkRec {
    fn encode(&self, out: &mut Vec<u8>) {
        put_str(out, &self.parent);
        put_varint(out, self.line);
        put_str(out, &self.key);
    }

    fn decode(d: &mut Decoder<'_>) -> io::Result<Self> {
        Ok(LinkRec {
            parent: d.str()?.to_string(),
            line: d.varint()?,
            key: d.str()?.to_string(),
        })
    }

    fn mem_size(&self) -> usize {
        std::mem::size_of::<Self>() + self.parent.len() + self.key.len()
    }

    fn prefix(&self) -> u128 {
        Prefix::new().str(&self.parent).u64(self.line).value()
    }
}

/// A deeper child row's root key, by line (lines are unique within a source).
#[derive(Debug, Clone)]
pub(super) struct LineRec {
    pub(super) line: u64,
    pub(super) root: String,
}

impl PartialEq for LineRec {
    fn eq(&self, other: &Self) -> bool {
        self.line == other.line
    }
}

impl Eq for LineRec {}

impl PartialOrd for LineRec {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for LineRec {
    fn cmp(&self, other: &Self) -> Ordering {
        self.line.cmp(&other.line)
    }
}

impl Spillable for LineRec {
    fn encode(&self, out: &mut Vec<u8>) {
        put_varint(out, self.line);
        put_str(out, &self.root);
    }

    fn decode(d: &mut Decoder<'_>) -> io::Result<Self> {
        Ok(LineRec {
            line: d.varint()?,
            root: d.str()?.to_string(),
        })
    }

    fn mem_size(&self) -> usize {
        std::mem::size_of::<Self>() + self.root.len()
    }

    fn prefix(&self) -> u128 {
        Prefix::new().u64(self.line).value()
    }
}

/// A key index entry: (key, line) → root key.
#[derive(Debug, Clone)]
pub(super) struct KeyRec {
    pub(super) key: String,
    pub(super) line: u64,
    pub(super) root: String,
}

impl PartialEq for KeyRec {
    fn eq(&self, other: &Self) -> bool {
        (&self.key, self.line) == (&other.key, other.line)
    }
}

impl Eq for KeyRec {}

impl PartialOrd for KeyRec {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for KeyRec {
    fn cmp(&self, other: &Self) -> Ordering {
        (&self.key, self.line).cmp(&(&other.key, other.line))
    }
}

impl Spillable for KeyRec {
    fn encode(&self, out: &mut Vec<u8>) {
        put_str(out, &self.key);
        put_varint(out, self.line);
        put_str(out, &self.root);
    }

    fn decode(d: &mut Decoder<'_>) -> io::Result<Self> {
        Ok(KeyRec {
            key: d.str()?.to_string(),
            line: d.varint()?,
            root: d.str()?.to_string(),
        })
    }

    fn mem_size(&self) -> usize {
        std::mem::size_of::<Self>() + self.key.len() + self.root.len()
    }

    fn prefix(&self) -> u128 {
        Prefix::new().str(&self.key).u64(self.line).value()
    }
}

/// An `order_by` value: typed when the column is, so dates and amounts sort as such.
/// Empty cells sort first, cells that do not parse last (as text).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum OrderVal {
    Null,
    Bool(bool),
    Int(i64),
    Decimal(Decimal),
    Date(NaiveDate),
    /// Naive, or UTC for a value with an offset.
    DateTime(NaiveDateTime),
    Text(String),
    Invalid(String),
}

impl OrderVal {
    pub(super) fn of(row: &Row, column: usize, spec: &Option<ColumnSpec>) -> Self {
        let raw = row.get(column).unwrap_or_default();
        let Some(spec) = spec else {
            return OrderVal::Text(raw.to_string());
        };
        match parse_cell(raw, &spec.cell_type) {
            Ok(Value::Null) => OrderVal::Null,
            Ok(Value::Text(t)) => OrderVal::Text(t.to_string()),
            Ok(Value::Bool(b)) => OrderVal::Bool(b),
            Ok(Value::Int(i)) => OrderVal::Int(i),
            Ok(Value::Decimal(d)) => OrderVal::Decimal(d),
            Ok(Value::Date(d)) => OrderVal::Date(d),
            Ok(Value::DateTime(d)) => OrderVal::DateTime(d),
            Ok(Value::DateTimeTz(d)) => OrderVal::DateTime(d.naive_utc()),
            Err(_) => OrderVal::Invalid(raw.to_string()),
        }
    }

    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            OrderVal::Null => out.push(0),
            OrderVal::Bool(b) => out.extend([1, *b as u8]),
            OrderVal::Int(i) => {
                out.push(2);
                put_u64(out, *i as u64);
            }
            OrderVal::Decimal(d) => {
                out.push(3);
                out.extend_from_slice(&d.serialize());
            }
            OrderVal::Date(d) => {
                out.push(4);
                put_u32(out, d.num_days_from_ce() as u32);
            }
            OrderVal::DateTime(d) => {
                let utc = d.and_utc();
                out.push(5);
                put_u64(out, utc.timestamp() as u64);
                put_u32(out, utc.timestamp_subsec_nanos());
            }
            OrderVal::Text(s) => {
                out.push(6);
                put_str(out, s);
            }
            OrderVal::Invalid(s) => {
                out.push(7);
                put_str(out, s);
            }
        }
    }

    fn decode(d: &mut Decoder<'_>) -> io::Result<Self> {
        let bad = || io::Error::new(io::ErrorKind::InvalidData, "corrupt sort run");
        Ok(match d.u8()? {
            0 => OrderVal::Null,
            1 => OrderVal::Bool(d.u8()? != 0),
            2 => OrderVal::Int(d.u64()? as i64),
            3 => OrderVal::Decimal(Decimal::deserialize(d.bytes(16)?.try_into().expect("16"))),
            4 => OrderVal::Date(
                NaiveDate::from_num_days_from_ce_opt(d.u32()? as i32).ok_or_else(bad)?,
            ),
            5 => {
                let secs = d.u64()? as i64;
                let nanos = d.u32()?;
                OrderVal::DateTime(
                    chrono::DateTime::from_timestamp(secs, nanos)
                        .ok_or_else(bad)?
                        .naive_utc(),
                )
            }
            6 => OrderVal::Text(d.str()?.to_string()),
            7 => OrderVal::Invalid(d.str()?.to_string()),
            _ => return Err(bad()),
        })
    }
}
