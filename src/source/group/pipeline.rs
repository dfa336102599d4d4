//! The parallel preparation: [`Prepare`] runs one [`Task`] per source on worker threads (a
//! deeper child as soon as its parent's key index is ready), each reading, checking and sorting
//! its rows in a [`Work`], within one shared chunk of memory for sorted results.

use std::collections::HashSet;
use std::io;
use std::path::PathBuf;
use std::sync::{Condvar, Mutex};

use super::check::{Checked, check_row};
use super::records::{KeyRec, NO_PARENT, OrderVal, RowRec};
use super::{ChildStream, Schema};
use crate::source::Sources;
use crate::source::problem::{ProblemKind, Problems};
use crate::source::reader::{Row, RowReader};
use crate::source::sort::{Sorted, SortedIter, Sorter, Spill, Spillable};

/// The first phase: read, check and sort every source, each source on a worker thread as soon
/// as the key index of its parent is ready.
pub(super) struct Prepare<'a> {
    pub(super) sources: &'a Sources,
    pub(super) schemas: &'a [Schema],
    pub(super) chunk_rows: usize,
    pub(super) chunk_bytes: usize,
    pub(super) max_problems: usize,
    pub(super) temp_dir: Option<PathBuf>,
    /// Rows and bytes of sorted results kept in memory (at most one chunk together).
    pub(super) kept: Mutex<(usize, usize)>,
    /// One chunk: what results kept in memory may hold together.
    pub(super) kept_max: (usize, usize),
    /// With a sample, the N-th distinct root key: rows of later units are not kept.
    pub(super) limit: Option<String>,
    /// What the workers share: the key indexes of sources with children, as they are done.
    pub(super) state: Mutex<Shared>,
    pub(super) ready: Condvar,
}

#[derive(Default)]
pub(super) struct Shared {
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
pub(super) struct Work<'p> {
    pub(super) prep: &'p Prepare<'p>,
    pub(super) source: usize,
    pub(super) problems: Problems,
    pub(super) spill: Spill,
    rows_read: u64,
}

impl<'p> Prepare<'p> {
    pub(super) fn run(
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

    pub(super) fn wanted(&self, root_key: &str) -> bool {
        self.limit.as_deref().is_none_or(|l| root_key <= l)
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
    pub(super) fn sorter<T: Spillable>(&self) -> Sorter<T> {
        Sorter::new(self.prep.chunk_rows, self.prep.chunk_bytes)
    }

    /// Finishes a sort, in memory if it fits in what is left of the one-chunk budget.
    pub(super) fn finish<T: Spillable>(
        &mut self,
        sorter: Sorter<T>,
    ) -> io::Result<(Sorted<T>, usize, usize)> {
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

    pub(super) fn release(&mut self, rows: usize, bytes: usize) {
        let mut kept = self.prep.kept.lock().expect("not poisoned");
        kept.0 -= rows;
        kept.1 -= bytes;
    }

    /// Reads the source's well-formed rows, reporting the others and bad typed cells.
    ///
    /// The file is parsed and its cells checked on a thread of its own, a batch of rows ahead
    /// of `each`: the two halves of the work of a large source run side by side.
    pub(super) fn read(
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
}
