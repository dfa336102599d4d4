//! The checks of one row as it is read: readable, key and parent key present (or the row is
//! left out), typed cells that parse (or a problem, the row stays).

use super::Schema;
use crate::source::cell::{parse_cell, shape};
use crate::source::problem::{ColumnRole, Problem, ProblemKind};
use crate::source::reader::Row;

/// A record read, checked: the row if it is well-formed, and what is wrong with it.
pub(super) struct Checked {
    pub(super) row: Option<Row>,
    pub(super) problems: Vec<Problem>,
}

/// A record's problems: unreadable, no key or parent key (then it is left out), bad typed
/// cells (it stays).
pub(super) fn check_row(schema: &Schema, item: Result<Row, Problem>) -> Checked {
    let row = match item {
        Ok(row) => row,
        Err(p) => {
            return Checked {
                row: None,
                problems: vec![p],
            };
        }
    };
    let empty = |col: usize| row.get(col).is_none_or(str::is_empty);
    let missing = if empty(schema.key) {
        Some((schema.key, ColumnRole::Key))
    } else {
        schema
            .parent
            .map(|(_, c)| (c, ColumnRole::Parent))
            .filter(|&(c, _)| empty(c))
    };
    if let Some((col, role)) = missing {
        let column = schema.header.names()[col].clone();
        let p = schema.problem(Some(row.line()), ProblemKind::EmptyKey { column, role });
        return Checked {
            row: None,
            problems: vec![p],
        };
    }
    let mut problems = Vec::new();
    for (i, spec) in schema.types.iter().enumerate() {
        let Some(spec) = spec else { continue };
        let raw = row.get(i).unwrap_or_default();
        if let Err(e) = parse_cell(raw, &spec.cell_type) {
            let kind = ProblemKind::BadCell {
                column: schema.header.names()[i].clone(),
                expected: e.expected,
                value: (!spec.personal).then(|| raw.to_string()),
                shape: shape(raw),
            };
            problems.push(schema.problem(Some(row.line()), kind));
        }
    }
    Checked {
        row: Some(row),
        problems,
    }
}
