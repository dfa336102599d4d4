//! Grouping rows into units: external sorts by root key, merge-joins, the unit stream.

use std::cmp::Ordering;
use std::collections::HashSet;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};

use chrono::{Datelike, NaiveDate, NaiveDateTime};
use rust_decimal::Decimal;

use super::cell::{CellError, Value, parse_cell, shape};
use super::problem::{ColumnRole, Problem, ProblemKind, Problems, did_you_mean};
use super::reader::{Header, Row, RowReader};
use super::sort::{
    Decoder, Prefix, Sorted, SortedIter, Sorter, Spill, Spillable, put_str, put_u32, put_u64,
    put_varint,
};
use super::{ColumnSpec, Sources};

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

/// A source as found in its file: its header and where its key, parent and typed columns are.
#[derive(Debug)]
pub struct Schema {
    name: String,
    file: PathBuf,
    header: Arc<Header>,
    key: usize,
    parent: Option<(usize, usize)>,
    order_by: Vec<usize>,
    types: Vec<Option<ColumnSpec>>,
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

    /// The declared spec of a column, if it was declared.
    pub fn column_spec(&self, column: &str) -> Option<&ColumnSpec> {
        self.types.get(self.header.position(column)?)?.as_ref()
    }

    fn problem(&self, line: Option<u64>, kind: ProblemKind) -> Problem {
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

/// One unit: a root row and every row hanging under it, by source.
#[derive(Debug)]
pub struct Unit {
    key: String,
    schemas: Arc<Vec<Schema>>,
    root: usize,
    /// By source index; the root's slot holds the root row.
    rows: Vec<Vec<Row>>,
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

/// The first phase: read, check and sort every source, each source on a worker thread as soon
/// as the key index of its parent is ready.
struct Prepare<'a> {
    sources: &'a Sources,
    schemas: &'a [Schema],
    chunk_rows: usize,
    chunk_bytes: usize,
    max_problems: usize,
    temp_dir: Option<PathBuf>,
    /// Rows and bytes of sorted results kept in memory (at most one chunk together).
    kept: Mutex<(usize, usize)>,
    /// One chunk: what results kept in memory may hold together.
    kept_max: (usize, usize),
    /// With a sample, the N-th distinct root key: rows of later units are not kept.
    limit: Option<String>,
    /// What the workers share: the key indexes of sources with children, as they are done.
    state: Mutex<Shared>,
    ready: Condvar,
}

#[derive(Default)]
struct Shared {
    /// Sources not started yet, in the order they are taken.
    waiting: Vec<usize>,
    /// By source: its key index, once done (`None` inside when it failed).
    key_maps: Vec<Option<Option<Sorted<KeyRec>>>>,
    /// Tasks done, with what they give.
    done: Vec<Task>,
}

/// One source's work: what it found and what it gives to the merge.
struct Task {
    source: usize,
    problems: Problems,
    spill: Spill,
    rows_read: u64,
    result: io::Result<TaskOutput>,
}

enum TaskOutput {
    Root(Sorted<RowRec>),
    Child {
        rows: Sorted<RowRec>,
        duplicates: HashSet<u64>,
    },
}

/// A task's working state.
struct Work<'p> {
    prep: &'p Prepare<'p>,
    source: usize,
    problems: Problems,
    spill: Spill,
    rows_read: u64,
}

/// Out-of-order parent keys a deeper child may have before its rows are joined to their
/// roots the general way (two passes and two sorts): each one rescans the parent's key index.
const MAX_DESCENTS: u32 = 16;

/// Tests set it to take the general way always, to compare the two.
#[cfg(test)]
pub(crate) static ALWAYS_SORT_LINKS: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

impl<'p> Prepare<'p> {
    fn run(
        mut self,
        mut readers: Vec<Option<RowReader>>,
        sample: Option<u64>,
        problems: &mut Problems,
        rows_read: &mut [u64],
        spills: &mut Vec<Spill>,
    ) -> io::Result<(SortedIter<RowRec>, Vec<ChildStream>)> {
        let n = self.schemas.len();
        let root = self.sources.root;
        let mut tasks: Vec<Option<Task>> = (0..n).map(|_| None).collect();
        self.state.lock().expect("not poisoned").key_maps = (0..n).map(|_| None).collect();
        // With a sample, the root goes first: its N-th key bounds what children keep.
        if let Some(count) = sample {
            let reader = readers[root].take().expect("opened");
            let task = self.task(root, reader, None);
            if let Ok(TaskOutput::Root(sorted)) = &task.result {
                self.limit = nth_root(sorted, count)?;
            }
            tasks[root] = Some(task);
        }
        // Sources with children first (their children wait for them), then the largest.
        let mut waiting: Vec<usize> = self.sources.order.clone();
        waiting.retain(|&s| readers[s].is_some());
        let size = |s: usize| std::fs::metadata(&self.sources.defs[s].file).map_or(0, |m| m.len());
        waiting.sort_by_key(|&s| {
            (
                self.sources.children[s].is_empty(),
                std::cmp::Reverse(size(s)),
            )
        });
        {
            let mut state = self.state.lock().expect("not poisoned");
            state.waiting = waiting;
        }
        let readers = Mutex::new(readers);
        let workers = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(n);
        // Sorts fill side by side now: each gets its share of the memory of one.
        self.chunk_rows = (self.chunk_rows / workers).max(1);
        self.chunk_bytes = (self.chunk_bytes / workers).max(1);
        let prep = &self;
        std::thread::scope(|scope| {
            for _ in 0..workers {
                let readers = &readers;
                scope.spawn(move || prep.worker(readers));
            }
        });
        let state = self.state.into_inner().expect("not poisoned");
        for task in state.done {
            let s = task.source;
            tasks[s] = Some(task);
        }
        // Problems in the order one thread would have found them: source by source.
        let mut root_sorted = None;
        let mut children = Vec::new();
        let mut failed = None;
        for &s in &self.sources.order {
            let Some(task) = tasks[s].take() else {
                continue;
            };
            problems.absorb(task.problems);
            rows_read[s] = task.rows_read;
            spills.push(task.spill);
            match task.result {
                Ok(TaskOutput::Root(sorted)) => root_sorted = Some(sorted),
                Ok(TaskOutput::Child { rows, duplicates }) => children.push(ChildStream {
                    source: s,
                    parent_is_root: self.schemas[s].parent.is_some_and(|(p, _)| p == root),
                    iter: rows.into_iter()?,
                    head: None,
                    duplicates,
                }),
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        if let Some(e) = failed {
            return Err(e);
        }
        let root_sorted = root_sorted.ok_or_else(|| io::Error::other("the root was not read"))?;
        Ok((root_sorted.into_iter()?, children))
    }

    /// Takes sources whose parent's key index is ready, until none is left.
    fn worker(&self, readers: &Mutex<Vec<Option<RowReader>>>) {
        loop {
            let (s, parent_map) = {
                let mut state = self.state.lock().expect("not poisoned");
                loop {
                    if state.waiting.is_empty() {
                        return;
                    }
                    let runnable =
                        state
                            .waiting
                            .iter()
                            .position(|&s| match self.schemas[s].parent {
                                Some((p, _)) if p != self.sources.root => {
                                    state.key_maps[p].is_some()
                                }
                                _ => true,
                            });
                    if let Some(i) = runnable {
                        let s = state.waiting.remove(i);
                        let map = match self.schemas[s].parent {
                            Some((p, _)) if p != self.sources.root => state.key_maps[p].clone(),
                            _ => None,
                        };
                        break (s, map);
                    }
                    state = self.ready.wait(state).expect("not poisoned");
                }
            };
            let reader = readers.lock().expect("not poisoned")[s]
                .take()
                .expect("opened");
            let task = self.task(s, reader, parent_map);
            let mut state = self.state.lock().expect("not poisoned");
            state.done.push(task);
            self.ready.notify_all();
        }
    }

    /// Reads and sorts one source. `parent_map` is the key index of a deeper child's parent
    /// (`Some(None)` if the parent failed).
    fn task(
        &self,
        source: usize,
        reader: RowReader,
        parent_map: Option<Option<Sorted<KeyRec>>>,
    ) -> Task {
        let mut work = Work {
            prep: self,
            source,
            problems: Problems::new(self.max_problems),
            spill: Spill::new(self.temp_dir.clone()),
            rows_read: 0,
        };
        let result = work.run(reader, parent_map);
        if result.is_err() || self.sources.children[source].is_empty() {
            // Children that wait for this index are told it failed (or need none).
            let mut state = self.state.lock().expect("not poisoned");
            if state.key_maps[source].is_none() {
                state.key_maps[source] = Some(None);
            }
            self.ready.notify_all();
        }
        Task {
            source,
            problems: work.problems,
            spill: work.spill,
            rows_read: work.rows_read,
            result,
        }
    }

    fn publish(&self, source: usize, map: Sorted<KeyRec>) {
        let mut state = self.state.lock().expect("not poisoned");
        state.key_maps[source] = Some(Some(map));
        self.ready.notify_all();
    }

    fn wanted(&self, root_key: &str) -> bool {
        self.limit.as_deref().is_none_or(|l| root_key <= l)
    }
}

/// A record read, checked: the row if it is well-formed, and what is wrong with it.
struct Checked {
    row: Option<Row>,
    problems: Vec<Problem>,
}

/// A record's problems: unreadable, no key or parent key (then it is left out), bad typed
/// cells (it stays).
fn check_row(schema: &Schema, item: Result<Row, Problem>) -> Checked {
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

/// With a sample: the N-th distinct root key.
fn nth_root(sorted: &Sorted<RowRec>, n: u64) -> io::Result<Option<String>> {
    let mut distinct = 0;
    let mut last: Option<String> = None;
    for rec in sorted.iter()? {
        let rec = rec?;
        if last.as_deref() != Some(rec.root.as_str()) {
            distinct += 1;
            if distinct == n {
                return Ok(Some(rec.root.clone()));
            }
            last = Some(rec.root);
        }
    }
    Ok(None)
}

impl Work<'_> {
    fn sorter<T: Spillable>(&self) -> Sorter<T> {
        Sorter::new(self.prep.chunk_rows, self.prep.chunk_bytes)
    }

    /// Finishes a sort, in memory if it fits in what is left of the one-chunk budget.
    fn finish<T: Spillable>(&mut self, sorter: Sorter<T>) -> io::Result<(Sorted<T>, usize, usize)> {
        let (bytes, rows) = sorter.held();
        let fits = !sorter.spilled() && {
            let mut kept = self.prep.kept.lock().expect("not poisoned");
            let fits =
                kept.0 + rows <= self.prep.kept_max.0 && kept.1 + bytes <= self.prep.kept_max.1;
            if fits {
                kept.0 += rows;
                kept.1 += bytes;
            }
            fits
        };
        let sorted = sorter.finish(fits, &mut self.spill)?;
        if fits {
            Ok((sorted, rows, bytes))
        } else {
            Ok((sorted, 0, 0))
        }
    }

    fn release(&mut self, rows: usize, bytes: usize) {
        let mut kept = self.prep.kept.lock().expect("not poisoned");
        kept.0 -= rows;
        kept.1 -= bytes;
    }

    /// Reads the source's well-formed rows, reporting the others and bad typed cells.
    ///
    /// The file is parsed and its cells checked on a thread of its own, a batch of rows ahead
    /// of `each`: the two halves of the work of a large source run side by side.
    fn read(
        &mut self,
        reader: RowReader,
        mut each: impl FnMut(Row, &mut Spill) -> io::Result<()>,
    ) -> io::Result<()> {
        const BATCH: usize = 1024;
        let schema = &self.prep.schemas[self.source];
        std::thread::scope(|scope| {
            let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<Checked>>(4);
            scope.spawn(move || {
                let mut batch = Vec::with_capacity(BATCH);
                for item in reader {
                    batch.push(check_row(schema, item));
                    if batch.len() == BATCH {
                        let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
                        if tx.send(full).is_err() {
                            return;
                        }
                    }
                }
                let _ = tx.send(batch);
            });
            for batch in rx {
                for checked in batch {
                    self.problems.extend(checked.problems);
                    if let Some(row) = checked.row {
                        self.rows_read += 1;
                        each(row, &mut self.spill)?;
                    }
                }
            }
            Ok(())
        })
    }

    fn run(
        &mut self,
        reader: RowReader,
        parent_map: Option<Option<Sorted<KeyRec>>>,
    ) -> io::Result<TaskOutput> {
        let prep = self.prep;
        let schemas = prep.schemas;
        let s = self.source;
        let schema = &schemas[s];
        let Some((parent, parent_col)) = schema.parent else {
            let mut sorter = self.sorter::<RowRec>();
            self.read(reader, |row, spill| {
                let key = row.get(schema.key).unwrap_or_default().to_string();
                sorter.push(
                    RowRec {
                        root: key,
                        parent_col: NO_PARENT,
                        order: Vec::new(),
                        row,
                    },
                    spill,
                )
            })?;
            let (sorted, ..) = self.finish(sorter)?;
            return Ok(TaskOutput::Root(sorted));
        };
        let order_vals = |row: &Row| -> Vec<OrderVal> {
            schema
                .order_by
                .iter()
                .map(|&c| OrderVal::of(row, c, &schema.types[c]))
                .collect()
        };
        let mut rows = self.sorter::<RowRec>();
        let mut keys = self.sorter::<KeyRec>();
        if parent == prep.sources.root {
            self.read(reader, |row, spill| {
                let parent_key = row.get(parent_col).unwrap_or_default().to_string();
                let key = KeyRec {
                    key: row.get(schema.key).unwrap_or_default().to_string(),
                    line: row.line(),
                    root: parent_key.clone(),
                };
                keys.push(key, spill)?;
                if prep.wanted(&parent_key) {
                    let order = order_vals(&row);
                    let rec = RowRec {
                        root: parent_key,
                        parent_col: parent_col as u32,
                        order,
                        row,
                    };
                    rows.push(rec, spill)?;
                }
                Ok(())
            })?;
        } else {
            let map = parent_map
                .flatten()
                .ok_or_else(|| io::Error::other("the parent's key index is missing"))?;
            match self.join_in_order(reader, &map, &order_vals)? {
                Some((r, k)) => (rows, keys) = (r, k),
                None => {
                    // Too far from parent order: start again the general way.
                    self.problems = Problems::new(prep.max_problems);
                    self.rows_read = 0;
                    let reader = match RowReader::open(&prep.sources.defs[s]) {
                        Ok(r) => r,
                        Err(p) => {
                            self.problems.push(p);
                            return Err(io::Error::other("the file could not be read again"));
                        }
                    };
                    self.join_sorted(reader, &map, &order_vals, &mut rows, &mut keys)?;
                }
            }
        }
        let (keys, key_rows, key_bytes) = self.finish(keys)?;
        let mut first: Option<KeyRec> = None;
        let mut duplicates = HashSet::new();
        for k in keys.iter()? {
            let k = k?;
            match &first {
                Some(f) if f.key == k.key => {
                    let kind = ProblemKind::DuplicateKey {
                        key: k.key.clone(),
                        first_line: f.line,
                    };
                    self.problems.push(schema.problem(Some(k.line), kind));
                    duplicates.insert(k.line);
                }
                _ => first = Some(k),
            }
        }
        if prep.sources.children[s].is_empty() {
            drop(keys);
            self.release(key_rows, key_bytes);
        } else {
            prep.publish(s, keys);
        }
        let (rows, ..) = self.finish(rows)?;
        Ok(TaskOutput::Child { rows, duplicates })
    }

    /// A deeper child whose file is (nearly) in parent key order: each row's root is found by
    /// walking the parent's key index alongside, in one pass. `None` if the file has more than
    /// [`MAX_DESCENTS`] parent keys out of order.
    #[allow(clippy::type_complexity)]
    fn join_in_order(
        &mut self,
        reader: RowReader,
        map: &Sorted<KeyRec>,
        order_vals: &dyn Fn(&Row) -> Vec<OrderVal>,
    ) -> io::Result<Option<(Sorter<RowRec>, Sorter<KeyRec>)>> {
        #[cfg(test)]
        if ALWAYS_SORT_LINKS.load(std::sync::atomic::Ordering::Relaxed) {
            return Ok(None);
        }
        let prep = self.prep;
        let s = self.source;
        let schema = &prep.schemas[s];
        let (_, parent_col) = schema.parent.expect("a child");
        let mut rows = self.sorter::<RowRec>();
        let mut keys = self.sorter::<KeyRec>();
        let mut map_iter = map.iter()?;
        let mut current = map_iter.next().transpose()?;
        let mut previous = String::new();
        let mut descents = 0;
        let mut gave_up = false;
        // Orphans are reported in (parent key, line) order, as the general way does: the
        // first ones are kept, the others counted.
        let cap = prep.max_problems.max(1);
        let mut orphans: std::collections::BinaryHeap<(String, u64)> =
            std::collections::BinaryHeap::new();
        let mut orphan_count = 0u64;
        let result = self.read(reader, |row, spill| {
            let line = row.line();
            let key = row.get(schema.key).unwrap_or_default().to_string();
            let parent_key = row.get(parent_col).unwrap_or_default();
            if parent_key < previous.as_str() {
                descents += 1;
                if descents > MAX_DESCENTS {
                    // Stops the reading; the general way starts again.
                    gave_up = true;
                    return Err(io::Error::other("out of parent key order"));
                }
                map_iter = map.iter()?;
                current = map_iter.next().transpose()?;
            }
            if previous != parent_key {
                previous.clear();
                previous.push_str(parent_key);
            }
            while current
                .as_ref()
                .is_some_and(|c| c.key.as_str() < parent_key)
            {
                current = map_iter.next().transpose()?;
            }
            match &current {
                Some(c) if c.key == parent_key => {
                    let root = c.root.clone();
                    let k = KeyRec {
                        key,
                        line,
                        root: root.clone(),
                    };
                    keys.push(k, spill)?;
                    if !root.is_empty() && prep.wanted(&root) {
                        let rec = RowRec {
                            root,
                            parent_col: parent_col as u32,
                            order: order_vals(&row),
                            row,
                        };
                        rows.push(rec, spill)?;
                    }
                }
                _ => {
                    orphan_count += 1;
                    let entry = (parent_key.to_string(), line);
                    if orphans.len() < cap {
                        orphans.push(entry);
                    } else if orphans.peek().is_some_and(|top| entry < *top) {
                        orphans.pop();
                        orphans.push(entry);
                    }
                    let k = KeyRec {
                        key,
                        line,
                        root: String::new(),
                    };
                    keys.push(k, spill)?;
                }
            }
            Ok(())
        });
        if gave_up {
            return Ok(None);
        }
        result?;
        let kept = orphans.into_sorted_vec();
        let unlisted = orphan_count - kept.len() as u64;
        for (parent_key, line) in kept {
            self.problems
                .push(orphan(prep.schemas, s, line, &parent_key));
        }
        for _ in 0..unlisted {
            self.problems.push(orphan(prep.schemas, s, 0, ""));
        }
        Ok(Some((rows, keys)))
    }

    /// A deeper child in any order. Pass 1: (parent key, line, key) of each row, sorted by
    /// parent key and merge-joined with the parent's key index, gives (line, root key), sorted
    /// by line. Only these small records are sorted twice, not the rows. Pass 2 reads the file
    /// again and gives each row its root key.
    fn join_sorted(
        &mut self,
        reader: RowReader,
        map: &Sorted<KeyRec>,
        order_vals: &dyn Fn(&Row) -> Vec<OrderVal>,
        rows: &mut Sorter<RowRec>,
        keys: &mut Sorter<KeyRec>,
    ) -> io::Result<()> {
        let prep = self.prep;
        let s = self.source;
        let schema = &prep.schemas[s];
        let (_, parent_col) = schema.parent.expect("a child");
        let mut links = self.sorter::<LinkRec>();
        self.read(reader, |row, spill| {
            let link = LinkRec {
                parent: row.get(parent_col).unwrap_or_default().to_string(),
                line: row.line(),
                key: row.get(schema.key).unwrap_or_default().to_string(),
            };
            links.push(link, spill)
        })?;
        let (links, links_rows, links_bytes) = self.finish(links)?;
        let mut roots = self.sorter::<LineRec>();
        let mut map_iter = map.iter()?;
        let mut current = map_iter.next().transpose()?;
        for link in links.into_iter()? {
            let link = link?;
            while current.as_ref().is_some_and(|c| c.key < link.parent) {
                current = map_iter.next().transpose()?;
            }
            match &current {
                Some(c) if c.key == link.parent => {
                    // An empty root: the parent is an orphan (reported), so is this.
                    if !c.root.is_empty() && prep.wanted(&c.root) {
                        let root = LineRec {
                            line: link.line,
                            root: c.root.clone(),
                        };
                        roots.push(root, &mut self.spill)?;
                    }
                    let key = KeyRec {
                        key: link.key,
                        line: link.line,
                        root: c.root.clone(),
                    };
                    keys.push(key, &mut self.spill)?;
                }
                _ => {
                    let p = orphan(prep.schemas, s, link.line, &link.parent);
                    self.problems.push(p);
                    // Indexed with no root, so that its own children are not reported again.
                    let key = KeyRec {
                        key: link.key,
                        line: link.line,
                        root: String::new(),
                    };
                    keys.push(key, &mut self.spill)?;
                }
            }
        }
        drop(map_iter);
        self.release(links_rows, links_bytes);
        let (roots, roots_rows, roots_bytes) = self.finish(roots)?;
        match RowReader::open(&prep.sources.defs[s]) {
            Err(p) => self.problems.push(p),
            Ok(again) => {
                let mut roots_iter = roots.into_iter()?;
                let mut current = roots_iter.next().transpose()?;
                for row in again.filter_map(Result::ok) {
                    while current.as_ref().is_some_and(|c| c.line < row.line()) {
                        current = roots_iter.next().transpose()?;
                    }
                    let Some(c) = current.as_ref().filter(|c| c.line == row.line()) else {
                        continue;
                    };
                    let rec = RowRec {
                        root: c.root.clone(),
                        parent_col: parent_col as u32,
                        order: order_vals(&row),
                        row,
                    };
                    rows.push(rec, &mut self.spill)?;
                }
            }
        }
        self.release(roots_rows, roots_bytes);
        Ok(())
    }
}

/// No parent column (a root row).
const NO_PARENT: u32 = u32::MAX;

/// A row on its way to a unit, with its sort key: (root key, parent key, order_by, line).
/// The parent key is read from the row's own cell.
#[derive(Debug, Clone)]
struct RowRec {
    root: String,
    parent_col: u32,
    order: Vec<OrderVal>,
    row: Row,
}

impl RowRec {
    fn parent(&self) -> &str {
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
struct LinkRec {
    parent: String,
    line: u64,
    key: String,
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
struct LineRec {
    line: u64,
    root: String,
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
struct KeyRec {
    key: String,
    line: u64,
    root: String,
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
enum OrderVal {
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
    fn of(row: &Row, column: usize, spec: &Option<ColumnSpec>) -> Self {
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
