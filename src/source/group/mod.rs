//! Grouping rows into units: external sorts by root key, merge-joins, the unit stream.
//!
//! [`group`] reads, checks and sorts every source (see the `source` module doc for the passes),
//! then [`Grouping`] merges the sorted sources into one [`Unit`] per root row. The seams:
//! - `schema`: [`Schema`], a source as found in its file, and the header check that builds it;
//! - `unit`: [`Unit`], [`Records`], [`Record`], what callers read of a unit;
//! - `check`: the checks of one row (key and parent present, typed cells);
//! - `pipeline`: the parallel preparation: one task per source on worker threads, each
//!   reading, checking and sorting its rows, and the shared one-chunk memory budget;
//! - `join`: the two ways a deeper child's rows learn their root key from the parent's key
//!   index (one pass in parent key order, or two passes and two sorts);
//! - `records`: the records the external sorts spill (rows, links, lines, key index
//!   entries) and the typed `order_by` values;
//! - here: the options, the report and the [`Grouping`] stream, the final merge.

mod check;
mod join;
mod pipeline;
mod records;
mod schema;
mod unit;

use std::cmp::Ordering;
use std::collections::HashSet;
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};

use super::Sources;
use super::problem::{Problem, ProblemKind, Problems};
use super::sort::{SortedIter, Spill};

#[cfg(test)]
pub(crate) use join::ALWAYS_SORT_LINKS;
use pipeline::{Prepare, Shared};
use records::RowRec;
pub use schema::Schema;
pub(crate) use schema::open_checked;
pub use unit::{Record, Records, Unit};

/// How to group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupOptions {
    /// Only the first N units (in root key order); `None` for all.
    pub sample: Option<u64>,
    /// Rows a sort holds in memory before it spills a run to disk.
    pub chunk_rows: usize,
    /// Estimated bytes a sort holds in memory before it spills a run to disk.
    pub chunk_bytes: usize,
    /// Where the temporary directory for runs goes (default: the system's temp dir).
    pub temp_dir: Option<PathBuf>,
    /// Problems kept per (source, kind, column); the rest are only counted.
    pub max_problems_per_kind: usize,
}

impl Default for GroupOptions {
    fn default() -> Self {
        GroupOptions {
            sample: None,
            chunk_rows: 500_000,
            chunk_bytes: 256 << 20,
            temp_dir: None,
            max_problems_per_kind: 1000,
        }
    }
}

/// What grouping did, once the stream is over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupReport {
    /// Every problem, in (file, line) order, then "N more" counts for capped kinds.
    pub problems: Vec<Problem>,
    /// Rows per source, in definition order.
    pub sources: Vec<SourceStats>,
    /// Units handed out.
    pub units: u64,
    /// Bytes written to temporary runs.
    pub spilled_bytes: u64,
    /// Temporary runs written.
    pub spilled_runs: u64,
}

/// Row counts of one source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceStats {
    /// The source.
    pub name: String,
    /// Rows read that were well-formed (right width, UTF-8, key and parent present).
    pub rows_read: u64,
    /// Rows handed out in units.
    pub rows_grouped: u64,
}

/// The stream of units: an `Iterator<Item = Unit>`. Construct it with [`group`].
///
/// It is `Send`, so it can feed an async executor from a blocking thread. Problems accumulate
/// while it runs; [`Grouping::finish`] gives them all.
pub struct Grouping {
    schemas: Arc<Vec<Schema>>,
    root: usize,
    root_iter: Option<SortedIter<RowRec>>,
    children: Vec<ChildStream>,
    problems: Problems,
    rows_read: Vec<u64>,
    rows_grouped: Vec<u64>,
    sample: Option<u64>,
    units: u64,
    previous: Option<(String, u64)>,
    done: bool,
    // Last, so that runs are closed before the directories go.
    spills: Vec<Spill>,
}

struct ChildStream {
    source: usize,
    parent_is_root: bool,
    iter: SortedIter<RowRec>,
    head: Option<RowRec>,
    /// Lines of rows whose key an earlier row has: left out (the first one is kept).
    duplicates: HashSet<u64>,
}

impl ChildStream {
    fn peek(&mut self) -> io::Result<Option<&RowRec>> {
        while self.head.is_none() {
            match self.iter.next().transpose()? {
                Some(rec) if self.duplicates.contains(&rec.row.line()) => {}
                Some(rec) => self.head = Some(rec),
                None => break,
            }
        }
        Ok(self.head.as_ref())
    }
}

/// Reads, checks and sorts every source, and returns the stream of units.
///
/// The sorting work happens here (it reads every file); the final merge happens as the
/// stream is iterated. If a file or a needed column is missing, the stream is empty and the
/// problems say why.
pub fn group(sources: &Sources, options: &GroupOptions) -> Grouping {
    let n = sources.defs.len();
    let mut g = Grouping {
        schemas: Arc::new(Vec::new()),
        root: sources.root,
        root_iter: None,
        children: Vec::new(),
        problems: Problems::new(options.max_problems_per_kind),
        rows_read: vec![0; n],
        rows_grouped: vec![0; n],
        sample: options.sample,
        units: 0,
        previous: None,
        done: true,
        spills: Vec::new(),
    };
    let mut schemas = Vec::with_capacity(n);
    let mut readers = Vec::with_capacity(n);
    for i in 0..n {
        if let Some((schema, reader)) = open_checked(sources, i, &mut g.problems) {
            schemas.push(schema);
            readers.push(Some(reader));
        }
    }
    if schemas.len() < n || options.sample == Some(0) {
        return g;
    }
    g.schemas = Arc::new(schemas);
    let prep = Prepare {
        sources,
        schemas: &g.schemas,
        chunk_rows: options.chunk_rows.max(1),
        chunk_bytes: options.chunk_bytes.max(1),
        max_problems: options.max_problems_per_kind,
        temp_dir: options.temp_dir.clone(),
        kept: Mutex::new((0, 0)),
        kept_max: (options.chunk_rows.max(1), options.chunk_bytes.max(1)),
        limit: None,
        state: Mutex::new(Shared::default()),
        ready: Condvar::new(),
    };
    match prep.run(
        readers,
        options.sample,
        &mut g.problems,
        &mut g.rows_read,
        &mut g.spills,
    ) {
        Ok((root_iter, children)) => {
            g.root_iter = Some(root_iter);
            g.children = children;
            g.done = false;
        }
        Err(e) => g.problems.push(Problem {
            source: sources.root().name.clone(),
            file: None,
            line: None,
            kind: ProblemKind::TempIo {
                error: e.to_string(),
            },
        }),
    }
    g
}

impl Grouping {
    /// The problems found so far (unsorted; [`Grouping::finish`] sorts them).
    pub fn problems(&self) -> &[Problem] {
        self.problems.list()
    }

    /// Whether no problem was found so far.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }

    /// The schema of a source (its header, for writing rows back out).
    pub fn schema(&self, source: &str) -> Option<&Schema> {
        self.schemas.iter().find(|s| s.name == source)
    }

    /// Units handed out so far.
    pub fn units(&self) -> u64 {
        self.units
    }

    /// Ends the stream (without reading the rest) and reports.
    pub fn finish(self) -> GroupReport {
        let names: Vec<String> = if self.schemas.is_empty() {
            Vec::new()
        } else {
            self.schemas.iter().map(|s| s.name.clone()).collect()
        };
        GroupReport {
            sources: names
                .into_iter()
                .enumerate()
                .map(|(i, name)| SourceStats {
                    name,
                    rows_read: self.rows_read[i],
                    rows_grouped: self.rows_grouped[i],
                })
                .collect(),
            units: self.units,
            spilled_bytes: self.spills.iter().map(|s| s.bytes_written).sum(),
            spilled_runs: self.spills.iter().map(|s| s.runs_written).sum(),
            problems: self.problems.finish(),
        }
    }

    fn next_unit(&mut self) -> io::Result<Option<Unit>> {
        if self.sample.is_some_and(|n| self.units >= n) {
            self.drain()?;
            return Ok(None);
        }
        let root_iter = self.root_iter.as_mut().expect("set when not done");
        let root = loop {
            let Some(rec) = root_iter.next().transpose()? else {
                self.drain()?;
                return Ok(None);
            };
            match &self.previous {
                Some((key, first_line)) if *key == rec.root => {
                    let kind = ProblemKind::DuplicateKey {
                        key: key.clone(),
                        first_line: *first_line,
                    };
                    let p = self.schemas[self.root].problem(Some(rec.row.line()), kind);
                    self.problems.push(p);
                }
                _ => break rec,
            }
        };
        self.previous = Some((root.root.clone(), root.row.line()));
        let mut rows = vec![Vec::new(); self.schemas.len()];
        for child in &mut self.children {
            while let Some(head) = child.peek()? {
                match head.root.cmp(&root.root) {
                    Ordering::Greater => break,
                    Ordering::Equal => {
                        let rec = child.head.take().expect("peeked");
                        rows[child.source].push(rec.row);
                    }
                    Ordering::Less => {
                        let rec = child.head.take().expect("peeked");
                        if child.parent_is_root {
                            self.problems.push(orphan(
                                &self.schemas,
                                child.source,
                                rec.row.line(),
                                rec.parent(),
                            ));
                        }
                    }
                }
            }
        }
        for (i, r) in rows.iter().enumerate() {
            self.rows_grouped[i] += r.len() as u64;
        }
        self.rows_grouped[self.root] += 1;
        rows[self.root].push(root.row);
        self.units += 1;
        Ok(Some(Unit {
            key: root.root,
            schemas: self.schemas.clone(),
            root: self.root,
            rows,
        }))
    }

    /// After the last unit: what is left in child streams has no root row.
    fn drain(&mut self) -> io::Result<()> {
        for child in &mut self.children {
            while child.peek()?.is_some() {
                let rec = child.head.take().expect("peeked");
                if child.parent_is_root {
                    self.problems.push(orphan(
                        &self.schemas,
                        child.source,
                        rec.row.line(),
                        rec.parent(),
                    ));
                }
            }
        }
        Ok(())
    }
}

impl Iterator for Grouping {
    type Item = Unit;

    fn next(&mut self) -> Option<Unit> {
        if self.done {
            return None;
        }
        match self.next_unit() {
            Ok(Some(unit)) => Some(unit),
            Ok(None) => {
                self.done = true;
                self.root_iter = None;
                self.children.clear();
                None
            }
            Err(e) => {
                self.done = true;
                self.root_iter = None;
                self.children.clear();
                self.problems.push(Problem {
                    source: self.schemas[self.root].name.clone(),
                    file: None,
                    line: None,
                    kind: ProblemKind::TempIo {
                        error: e.to_string(),
                    },
                });
                None
            }
        }
    }
}

fn orphan(schemas: &[Schema], source: usize, line: u64, parent_key: &str) -> Problem {
    let schema = &schemas[source];
    let (parent, col) = schema.parent.expect("a child source");
    schema.problem(
        Some(line),
        ProblemKind::Orphan {
            parent: schemas[parent].name.clone(),
            column: schema.header.names()[col].clone(),
            key: parent_key.to_string(),
        },
    )
}
