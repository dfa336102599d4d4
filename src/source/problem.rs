//! Problems found in source definitions and files: collected, never thrown.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;

/// One thing wrong with a source, located as precisely as possible.
///
/// `Display` gives `file:line: source: message`. No personal data is ever stored in a problem:
/// a bad cell of a personal column keeps only the value's [`shape`](super::shape).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The source's name (for a definition problem, the source being defined).
    pub source: String,
    /// The source's file, when the problem is in a file.
    pub file: Option<PathBuf>,
    /// The physical line where the record starts (1-based, the header is line 1).
    pub line: Option<u64>,
    /// What is wrong.
    pub kind: ProblemKind,
}

/// Why a column is required.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnRole {
    /// The source's key column.
    Key,
    /// The column holding the parent's key.
    Parent,
    /// An `order_by` column.
    OrderBy,
    /// A column with a declared type.
    Typed,
}

impl fmt::Display for ColumnRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ColumnRole::Key => "key",
            ColumnRole::Parent => "parent",
            ColumnRole::OrderBy => "order_by",
            ColumnRole::Typed => "typed",
        })
    }
}

/// What is wrong. See [`ProblemKind::code`] for a stable short name of each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProblemKind {
    /// Two sources have the same name.
    DuplicateSource,
    /// The unit (root) source is not defined.
    UnknownRoot { suggestion: Option<String> },
    /// The root source must not have a parent.
    RootHasParent,
    /// A parent names a source that is not defined.
    UnknownParent {
        parent: String,
        suggestion: Option<String>,
    },
    /// Parents form a loop.
    ParentCycle { path: Vec<String> },
    /// A source has no parent and is not the root: it would belong to no unit.
    NotUnderRoot { root: String },
    /// Anything else wrong with a definition (an empty key name, a bad delimiter).
    BadDefinition { message: String },
    /// The file cannot be opened.
    MissingFile { error: String },
    /// Reading the file failed midway.
    Unreadable { error: String },
    /// The file is UTF-16 (it has a UTF-16 byte order mark).
    Utf16,
    /// The file has no header row.
    EmptyFile,
    /// A column the definition needs is not in the header.
    MissingColumn {
        column: String,
        role: ColumnRole,
        header: Vec<String>,
        suggestion: Option<String>,
    },
    /// A header name appears twice; the first one is used.
    DuplicateColumn { column: String },
    /// The record does not have as many cells as the header (the row is left out).
    RowWidth { expected: usize, found: usize },
    /// The key or parent cell is empty or missing (the row is left out).
    EmptyKey { column: String, role: ColumnRole },
    /// The record is not valid UTF-8 (the row is left out).
    InvalidUtf8 { column: Option<String> },
    /// A cell does not parse as its declared type (the row is kept; rendering it will fail).
    BadCell {
        column: String,
        expected: String,
        /// The value, or `None` when the column is personal.
        value: Option<String>,
        /// The value's shape (digits `9`, letters `A`/`a`).
        shape: String,
    },
    /// A second row with the same key (the first one is kept).
    DuplicateKey { key: String, first_line: u64 },
    /// A child row whose parent key matches no parent row (the row is left out).
    Orphan {
        parent: String,
        column: String,
        key: String,
    },
    /// Writing or reading the sort's temporary files failed; grouping stopped.
    TempIo { error: String },
    /// More problems of one kind than the collector keeps: only the count is kept.
    More {
        code: &'static str,
        column: Option<String>,
        count: u64,
    },
}

impl ProblemKind {
    /// A stable short name, e.g. `"duplicate_key"`, for reports and tests.
    pub fn code(&self) -> &'static str {
        match self {
            ProblemKind::DuplicateSource => "duplicate_source",
            ProblemKind::UnknownRoot { .. } => "unknown_root",
            ProblemKind::RootHasParent => "root_has_parent",
            ProblemKind::UnknownParent { .. } => "unknown_parent",
            ProblemKind::ParentCycle { .. } => "parent_cycle",
            ProblemKind::NotUnderRoot { .. } => "not_under_root",
            ProblemKind::BadDefinition { .. } => "bad_definition",
            ProblemKind::MissingFile { .. } => "missing_file",
            ProblemKind::Unreadable { .. } => "unreadable",
            ProblemKind::Utf16 => "utf16",
            ProblemKind::EmptyFile => "empty_file",
            ProblemKind::MissingColumn { .. } => "missing_column",
            ProblemKind::DuplicateColumn { .. } => "duplicate_column",
            ProblemKind::RowWidth { .. } => "row_width",
            ProblemKind::EmptyKey { .. } => "empty_key",
            ProblemKind::InvalidUtf8 { .. } => "invalid_utf8",
            ProblemKind::BadCell { .. } => "bad_cell",
            ProblemKind::DuplicateKey { .. } => "duplicate_key",
            ProblemKind::Orphan { .. } => "orphan",
            ProblemKind::TempIo { .. } => "temp_io",
            ProblemKind::More { .. } => "more",
        }
    }

    /// The column the problem is about, if any.
    pub fn column(&self) -> Option<&str> {
        match self {
            ProblemKind::MissingColumn { column, .. }
            | ProblemKind::DuplicateColumn { column }
            | ProblemKind::EmptyKey { column, .. }
            | ProblemKind::BadCell { column, .. }
            | ProblemKind::Orphan { column, .. } => Some(column),
            ProblemKind::InvalidUtf8 { column } | ProblemKind::More { column, .. } => {
                column.as_deref()
            }
            _ => None,
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.file, self.line) {
            (Some(file), Some(line)) => write!(f, "{}:{line}: ", file.display())?,
            (Some(file), None) => write!(f, "{}: ", file.display())?,
            _ => {}
        }
        write!(f, "{}: ", self.source)?;
        let did_you_mean = |f: &mut fmt::Formatter<'_>, s: &Option<String>| match s {
            Some(s) => write!(f, " (did you mean {s:?}?)"),
            None => Ok(()),
        };
        match &self.kind {
            ProblemKind::DuplicateSource => write!(f, "source defined twice"),
            ProblemKind::UnknownRoot { suggestion } => {
                write!(f, "the unit source is not defined")?;
                did_you_mean(f, suggestion)
            }
            ProblemKind::RootHasParent => write!(f, "the unit source cannot have a parent"),
            ProblemKind::UnknownParent { parent, suggestion } => {
                write!(f, "parent source {parent:?} is not defined")?;
                did_you_mean(f, suggestion)
            }
            ProblemKind::ParentCycle { path } => {
                write!(f, "parents form a loop: {}", path.join(" -> "))
            }
            ProblemKind::NotUnderRoot { root } => {
                write!(f, "has no parent, so belongs to no {root} unit")
            }
            ProblemKind::BadDefinition { message } => f.write_str(message),
            ProblemKind::MissingFile { error } => write!(f, "cannot open the file: {error}"),
            ProblemKind::Unreadable { error } => write!(f, "reading failed: {error}"),
            ProblemKind::Utf16 => write!(f, "the file is UTF-16; save it as UTF-8"),
            ProblemKind::EmptyFile => write!(f, "the file is empty (no header row)"),
            ProblemKind::MissingColumn {
                column,
                role,
                header,
                suggestion,
            } => {
                write!(f, "{role} column {column:?} is not in the header")?;
                did_you_mean(f, suggestion)?;
                write!(f, "; the header has: {}", header.join(", "))
            }
            ProblemKind::DuplicateColumn { column } => {
                write!(
                    f,
                    "column {column:?} appears twice in the header; the first is used"
                )
            }
            ProblemKind::RowWidth { expected, found } => {
                let what = if found < expected { "short" } else { "long" };
                write!(f, "{what} row: {found} cells, the header has {expected}")
            }
            ProblemKind::EmptyKey { column, role } => {
                write!(f, "{role} column {column:?} is empty")
            }
            ProblemKind::InvalidUtf8 { column: Some(c) } => {
                write!(f, "column {c:?} is not valid UTF-8")
            }
            ProblemKind::InvalidUtf8 { column: None } => write!(f, "not valid UTF-8"),
            ProblemKind::BadCell {
                column,
                expected,
                value,
                shape,
            } => {
                write!(f, "column {column:?}: not {expected}")?;
                match value {
                    Some(v) => write!(f, ": {v:?}"),
                    None => write!(f, " (shape {shape:?}; value withheld: personal data)"),
                }
            }
            ProblemKind::DuplicateKey { key, first_line } => {
                write!(f, "duplicate key {key:?} (first at line {first_line})")
            }
            ProblemKind::Orphan {
                parent,
                column,
                key,
            } => write!(
                f,
                "no {parent} row with key {key:?} (from column {column:?}): missing, or left out above"
            ),
            ProblemKind::TempIo { error } => {
                write!(f, "temporary sort files failed, grouping stopped: {error}")
            }
            ProblemKind::More {
                code,
                column,
                count,
            } => {
                write!(f, "{count} more {code} problems")?;
                match column {
                    Some(c) => write!(f, " in column {c:?}"),
                    None => Ok(()),
                }
            }
        }
    }
}

/// The collector: keeps at most `cap` problems per (source, kind, column), counts the rest, so
/// that a file where every row is wrong does not fill memory.
#[derive(Debug)]
pub(crate) struct Problems {
    list: Vec<Problem>,
    seen: HashMap<(String, &'static str, Option<String>), u64>,
    cap: u64,
}

impl Problems {
    pub(crate) fn new(cap: usize) -> Self {
        Problems {
            list: Vec::new(),
            seen: HashMap::new(),
            cap: cap.max(1) as u64,
        }
    }

    pub(crate) fn push(&mut self, problem: Problem) {
        let key = (
            problem.source.clone(),
            problem.kind.code(),
            problem.kind.column().map(str::to_string),
        );
        let n = self.seen.entry(key).or_default();
        *n += 1;
        if *n <= self.cap {
            self.list.push(problem);
        }
    }

    /// Takes over what `other` collected, as if its problems had been pushed here in its order
    /// (the capped ones counted, not kept).
    pub(crate) fn absorb(&mut self, other: Problems) {
        let mut listed: HashMap<(String, &'static str, Option<String>), u64> = HashMap::new();
        for p in other.list {
            let key = (
                p.source.clone(),
                p.kind.code(),
                p.kind.column().map(str::to_string),
            );
            *listed.entry(key).or_default() += 1;
            self.push(p);
        }
        for (key, n) in other.seen {
            let unlisted = n - listed.get(&key).copied().unwrap_or(0);
            if unlisted > 0 {
                *self.seen.entry(key).or_default() += unlisted;
            }
        }
    }

    pub(crate) fn extend(&mut self, problems: impl IntoIterator<Item = Problem>) {
        for p in problems {
            self.push(p);
        }
    }

    pub(crate) fn list(&self) -> &[Problem] {
        &self.list
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// All problems, in (file, line) order, followed for each capped kind by a `More` count.
    pub(crate) fn finish(mut self) -> Vec<Problem> {
        self.list
            .sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
        let mut more: Vec<Problem> = self
            .seen
            .into_iter()
            .filter(|(_, n)| *n > self.cap)
            .map(|((source, code, column), n)| Problem {
                source,
                file: None,
                line: None,
                kind: ProblemKind::More {
                    code,
                    column,
                    count: n - self.cap,
                },
            })
            .collect();
        more.sort_by(|a, b| (&a.source, a.kind.code()).cmp(&(&b.source, b.kind.code())));
        for p in &mut more {
            if let Some(first) = self.list.iter().find(|q| q.source == p.source) {
                p.file = first.file.clone();
            }
        }
        self.list.extend(more);
        self.list
    }
}

/// The closest candidate to `wanted` by edit distance (case and `_`/`-`/space insensitive),
/// if it is close enough to be a plausible typo.
pub(crate) fn did_you_mean<'a>(
    wanted: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    let norm = |s: &str| -> Vec<char> {
        s.chars()
            .filter(|c| !matches!(c, '_' | '-' | ' '))
            .flat_map(char::to_lowercase)
            .collect()
    };
    let w = norm(wanted);
    let limit = (w.len() / 3).max(1);
    candidates
        .into_iter()
        .filter(|c| *c != wanted)
        .map(|c| (edit_distance(&w, &norm(c)), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c.to_string())
}

/// Levenshtein distance.
fn edit_distance(a: &[char], b: &[char]) -> usize {
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.iter().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions() {
        let header = ["client_id", "first_name", "last_name", "birth_date"];
        assert_eq!(
            did_you_mean("clientid", header).as_deref(),
            Some("client_id")
        );
        assert_eq!(
            did_you_mean("Client-ID", header).as_deref(),
            Some("client_id")
        );
        assert_eq!(
            did_you_mean("frist_name", header).as_deref(),
            Some("first_name")
        );
        assert_eq!(did_you_mean("amount", header), None);
    }

    #[test]
    fn collector_caps_per_kind_and_column() {
        let mut p = Problems::new(2);
        for line in 0..5 {
            p.push(Problem {
                source: "loans".into(),
                file: Some("loans.csv".into()),
                line: Some(line + 2),
                kind: ProblemKind::EmptyKey {
                    column: "loan_id".into(),
                    role: ColumnRole::Key,
                },
            });
        }
        let all = p.finish();
        assert_eq!(all.len(), 3);
        assert_eq!(
            all[2].to_string(),
            "loans.csv: loans: 3 more empty_key problems in column \"loan_id\""
        );
    }
}
