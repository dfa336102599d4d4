//! [`Schema`]: a source as found in its file (its header, where its key, parent, `order_by`
//! and typed columns are), and the header check that builds it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::source::problem::{ColumnRole, Problem, ProblemKind, Problems, did_you_mean};
use crate::source::reader::{Header, RowReader};
use crate::source::{ColumnSpec, Sources};

/// A source as found in its file: its header and where its key, parent and typed columns are.
#[derive(Debug)]
pub struct Schema {
    pub(super) name: String,
    file: PathBuf,
    pub(super) header: Arc<Header>,
    pub(super) key: usize,
    pub(super) parent: Option<(usize, usize)>,
    pub(super) order_by: Vec<usize>,
    pub(super) types: Vec<Option<ColumnSpec>>,
}

impl Schema {
    /// The source's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The source's file.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// The header row.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The key column's name.
    pub fn key_column(&self) -> &str {
        &self.header.names()[self.key]
    }

    /// Whether its rows are ordered by `order_by` columns (a history), not only by line.
    pub fn is_ordered(&self) -> bool {
        !self.order_by.is_empty()
    }

    /// The declared spec of a column, if it was declared.
    pub fn column_spec(&self, column: &str) -> Option<&ColumnSpec> {
        self.types.get(self.header.position(column)?)?.as_ref()
    }

    pub(super) fn problem(&self, line: Option<u64>, kind: ProblemKind) -> Problem {
        Problem {
            source: self.name.clone(),
            file: Some(self.file.clone()),
            line,
            kind,
        }
    }
}

/// Opens a source's file and checks its header against the definition. `None` if the source
/// cannot be used (the problems say why).
pub(crate) fn open_checked(
    sources: &Sources,
    index: usize,
    problems: &mut Problems,
) -> Option<(Schema, RowReader)> {
    let def = &sources.defs[index];
    let reader = match RowReader::open(def) {
        Ok(r) => r,
        Err(p) => {
            problems.push(p);
            return None;
        }
    };
    let header = reader.header().clone();
    let mut ok = true;
    let mut find = |column: &str, role: ColumnRole| -> Option<usize> {
        let found = header.position(column);
        if found.is_none() {
            ok = false;
            problems.push(Problem {
                source: def.name.clone(),
                file: Some(def.file.clone()),
                line: Some(reader.header_line()),
                kind: ProblemKind::MissingColumn {
                    column: column.to_string(),
                    role,
                    header: header.names().to_vec(),
                    suggestion: did_you_mean(column, header.names().iter().map(String::as_str)),
                },
            });
        }
        found
    };
    let key = find(&def.key, ColumnRole::Key);
    let parent = def
        .parent
        .as_ref()
        .map(|p| find(&p.column, ColumnRole::Parent));
    let order_by: Vec<Option<usize>> = def
        .order_by
        .iter()
        .map(|c| find(c, ColumnRole::OrderBy))
        .collect();
    let mut types = vec![None; header.len()];
    for (column, spec) in &def.columns {
        if let Some(i) = find(column, ColumnRole::Typed) {
            types[i] = Some(spec.clone());
        }
    }
    for column in header.duplicates() {
        problems.push(Problem {
            source: def.name.clone(),
            file: Some(def.file.clone()),
            line: Some(reader.header_line()),
            kind: ProblemKind::DuplicateColumn {
                column: column.clone(),
            },
        });
    }
    if !ok {
        return None;
    }
    let schema = Schema {
        name: def.name.clone(),
        file: def.file.clone(),
        header: header.clone(),
        key: key?,
        parent: match parent {
            Some(col) => Some((sources.parent[index]?, col?)),
            None => None,
        },
        order_by: order_by.into_iter().collect::<Option<Vec<_>>>()?,
        types,
    };
    Some((schema, reader))
}
