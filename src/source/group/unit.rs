//! What callers read: a [`Unit`], the [`Records`] of one source in it, one [`Record`].

use std::sync::Arc;

use super::Schema;
use crate::source::cell::{CellError, Value, parse_cell};
use crate::source::reader::Row;

/// One unit: a root row and every row hanging under it, by source.
#[derive(Debug)]
pub struct Unit {
    pub(super) key: String,
    pub(super) schemas: Arc<Vec<Schema>>,
    pub(super) root: usize,
    /// By source index; the root's slot holds the root row.
    pub(super) rows: Vec<Vec<Row>>,
}

impl Unit {
    /// The root row's key (the client id).
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The root row.
    pub fn root(&self) -> Record<'_> {
        Record {
            schema: &self.schemas[self.root],
            row: &self.rows[self.root][0],
        }
    }

    /// All rows of a source in this unit, ordered by (parent key, `order_by`, line); `None`
    /// if there is no such source.
    pub fn rows(&self, source: &str) -> Option<Records<'_>> {
        let i = self.schemas.iter().position(|s| s.name == source)?;
        Some(Records {
            schema: &self.schemas[i],
            rows: &self.rows[i],
        })
    }

    /// The rows of `source` that hang directly under `parent` (e.g. the transactions of one
    /// loan), in `order_by` order; empty if `source` is not a child of `parent`'s source.
    pub fn children<'a>(&'a self, source: &str, parent: &Record<'_>) -> Records<'a> {
        let Some(i) = self.schemas.iter().position(|s| s.name == source) else {
            return Records {
                schema: &self.schemas[self.root],
                rows: &[],
            };
        };
        let schema = &self.schemas[i];
        let rows = &self.rows[i];
        let Some((p, col)) = schema.parent else {
            return Records { schema, rows: &[] };
        };
        if self.schemas[p].name != parent.schema.name {
            return Records { schema, rows: &[] };
        }
        let key = parent.key();
        let start = rows.partition_point(|r| r.get(col).unwrap_or_default() < key);
        let end = start + rows[start..].partition_point(|r| r.get(col) == Some(key));
        Records {
            schema,
            rows: &rows[start..end],
        }
    }

    /// Every row of the unit with its path (`clients/CL-1/loans/LN-2`, as step instances name
    /// their rows), each parent before its children.
    pub fn row_paths(&self) -> Vec<(Record<'_>, String)> {
        let root = self.root();
        let mut out = vec![(root, format!("{}/{}", root.schema.name, root.key()))];
        let mut i = 0;
        while i < out.len() {
            let (parent, path) = (out[i].0, out[i].1.clone());
            let at = self
                .schemas
                .iter()
                .position(|s| s.name == parent.schema.name);
            for schema in self.schemas.iter() {
                if schema.parent.map(|(p, _)| p) == at && at.is_some() {
                    for child in self.children(&schema.name, &parent).iter() {
                        let child_path = format!("{path}/{}/{}", schema.name, child.key());
                        out.push((child, child_path));
                    }
                }
            }
            i += 1;
        }
        out
    }

    /// Rows in the unit, root included.
    pub fn row_count(&self) -> usize {
        self.rows.iter().map(Vec::len).sum()
    }
}

/// The rows of one source in a unit.
#[derive(Debug, Clone, Copy)]
pub struct Records<'a> {
    schema: &'a Schema,
    rows: &'a [Row],
}

impl<'a> Records<'a> {
    /// The source.
    pub fn schema(&self) -> &'a Schema {
        self.schema
    }

    /// How many rows.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The row at `index`.
    pub fn get(&self, index: usize) -> Option<Record<'a>> {
        Some(Record {
            schema: self.schema,
            row: self.rows.get(index)?,
        })
    }

    /// The rows in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = Record<'a>> + 'a {
        let schema = self.schema;
        self.rows.iter().map(move |row| Record { schema, row })
    }
}

impl<'a> IntoIterator for Records<'a> {
    type Item = Record<'a>;
    type IntoIter = Box<dyn ExactSizeIterator<Item = Record<'a>> + 'a>;

    fn into_iter(self) -> Self::IntoIter {
        Box::new(self.iter())
    }
}

/// One row of a unit, with its source: cells by column name, typed values.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    schema: &'a Schema,
    row: &'a Row,
}

impl<'a> Record<'a> {
    /// The source.
    pub fn schema(&self) -> &'a Schema {
        self.schema
    }

    /// The raw row (cells in header order).
    pub fn row(&self) -> &'a Row {
        self.row
    }

    /// The line where the record starts in its file.
    pub fn line(&self) -> u64 {
        self.row.line()
    }

    /// The row's key.
    pub fn key(&self) -> &'a str {
        self.row.get(self.schema.key).unwrap_or_default()
    }

    /// The parent's key, for a child row.
    pub fn parent_key(&self) -> Option<&'a str> {
        self.row.get(self.schema.parent?.1)
    }

    /// A cell as text; `None` if there is no such column.
    pub fn get(&self, column: &str) -> Option<&'a str> {
        self.row.get(self.schema.header.position(column)?)
    }

    /// A cell parsed as its declared type (text if undeclared); `None` if no such column.
    pub fn value(&self, column: &str) -> Option<Result<Value<'a>, CellError>> {
        let i = self.schema.header.position(column)?;
        let raw = self.row.get(i)?;
        Some(match &self.schema.types[i] {
            Some(spec) => parse_cell(raw, &spec.cell_type),
            None => Ok(Value::Text(raw)),
        })
    }
}
