//! External sort: records are sorted in chunks in memory; a chunk that fills up is written as a
//! sorted run to a temporary file; runs are k-way merged (at most [`FAN_IN`] at a time).
//! Nothing touches the disk while everything fits in one chunk.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::PathBuf;
use std::sync::Arc;

/// The most runs merged at once; more are first merged down into bigger runs.
pub(crate) const FAN_IN: usize = 64;
const RUN_READ_BUFFER: usize = 64 * 1024;
const RUN_WRITE_BUFFER: usize = 256 * 1024;

/// A record the sorter can hold and spill.
pub(crate) trait Spillable: Ord + Clone + Send + Sync + Sized {
    fn encode(&self, out: &mut Vec<u8>);
    fn decode(input: &mut Decoder<'_>) -> io::Result<Self>;
    /// Estimated bytes in memory.
    fn mem_size(&self) -> usize;
    /// A summary of the sort key (see [`Prefix`]): `a.prefix() < b.prefix()` implies `a < b`;
    /// equal prefixes say nothing. Sorting compares these inline numbers first, which avoids
    /// chasing pointers for most comparisons.
    fn prefix(&self) -> u128;
}

/// Builds an order-preserving 16-byte prefix of a sort key made of strings and numbers:
/// strings are escaped (`0x00` → `0x00 0xFF`) and terminated (`0x00 0x01`) so that comparing
/// the concatenated bytes compares the tuple; what does not fit is cut off.
pub(crate) struct Prefix {
    bytes: [u8; 16],
    len: usize,
}

impl Prefix {
    pub(crate) fn new() -> Self {
        Prefix {
            bytes: [0; 16],
            len: 0,
        }
    }

    fn put(&mut self, b: u8) {
        if self.len < 16 {
            self.bytes[self.len] = b;
            self.len += 1;
        }
    }

    pub(crate) fn str(mut self, s: &str) -> Self {
        for b in s.bytes().take(16) {
            if b == 0 {
                self.put(0);
                self.put(0xFF);
            } else {
                self.put(b);
            }
        }
        self.put(0);
        self.put(1);
        self
    }

    pub(crate) fn u64(mut self, v: u64) -> Self {
        for b in v.to_be_bytes() {
            self.put(b);
        }
        self
    }

    pub(crate) fn value(&self) -> u128 {
        u128::from_be_bytes(self.bytes)
    }
}

/// Sorts by prefix first, then by the full order on ties; returns the sorted positions.
fn sorted_order<T: Spillable>(items: &[T]) -> Vec<(u128, u32)> {
    let mut order: Vec<(u128, u32)> = items
        .iter()
        .enumerate()
        .map(|(i, t)| (t.prefix(), i as u32))
        .collect();
    order.sort_unstable_by(|a, b| {
        a.0.cmp(&b.0)
            .then_with(|| items[a.1 as usize].cmp(&items[b.1 as usize]))
    });
    order
}

/// Sorts `items` in place (prefix first, then the full order), moving each item once.
fn sort_items<T: Spillable>(items: &mut [T]) {
    let mut perm: Vec<u32> = sorted_order(items).into_iter().map(|(_, i)| i).collect();
    // Apply the permutation (position k receives the item at perm[k]) cycle by cycle.
    for i in 0..perm.len() {
        let mut cur = i;
        while perm[cur] as usize != i {
            let next = perm[cur] as usize;
            items.swap(cur, next);
            perm[cur] = cur as u32;
            cur = next;
        }
        perm[cur] = cur as u32;
    }
}

/// Where spilled runs go: a private temporary directory, created on first use.
#[derive(Debug)]
pub(crate) struct Spill {
    base: Option<PathBuf>,
    dir: Option<tempfile::TempDir>,
    next: u64,
    pub(crate) bytes_written: u64,
    pub(crate) runs_written: u64,
}

impl Spill {
    pub(crate) fn new(base: Option<PathBuf>) -> Self {
        Spill {
            base,
            dir: None,
            next: 0,
            bytes_written: 0,
            runs_written: 0,
        }
    }

    fn create(&mut self) -> io::Result<(PathBuf, File)> {
        if self.dir.is_none() {
            let mut b = tempfile::Builder::new();
            b.prefix("mambu-migrate-sort-");
            self.dir = Some(match &self.base {
                Some(base) => b.tempdir_in(base)?,
                None => b.tempdir()?,
            });
        }
        let dir = self.dir.as_ref().expect("created above");
        self.next += 1;
        let path = dir.path().join(format!("run-{:06}.bin", self.next));
        let file = File::create(&path)?;
        self.runs_written += 1;
        Ok((path, file))
    }
}

/// A sorted run on disk, deleted when dropped.
#[derive(Debug)]
pub(crate) struct RunFile {
    path: PathBuf,
}

impl Drop for RunFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Accumulates records; spills a sorted run whenever `chunk_rows` or `chunk_bytes` is reached.
///
/// Input that arrives in order (as most extracts do, by parent key) is not sorted again: a
/// chunk found in order is written as it is, and appended to the run before it when it
/// continues it, so a file in order becomes one run and its merge a plain read.
pub(crate) struct Sorter<T> {
    items: Vec<T>,
    bytes: usize,
    runs: Vec<RunFile>,
    chunk_rows: usize,
    chunk_bytes: usize,
    /// Whether `items` are in order, each not less than the one before.
    in_order: bool,
    /// The run chunks in order are appended to, with its last record.
    open: Option<(RunFile, BufWriter<File>, T)>,
    /// Encoding buffer.
    buf: Vec<u8>,
}

impl<T: Spillable> Sorter<T> {
    pub(crate) fn new(chunk_rows: usize, chunk_bytes: usize) -> Self {
        Sorter {
            items: Vec::new(),
            bytes: 0,
            runs: Vec::new(),
            chunk_rows: chunk_rows.max(1),
            chunk_bytes: chunk_bytes.max(1),
            in_order: true,
            open: None,
            buf: Vec::new(),
        }
    }

    pub(crate) fn push(&mut self, item: T, spill: &mut Spill) -> io::Result<()> {
        // In order since the last chunk was written: straight to its run, nothing held.
        if self.items.is_empty()
            && let Some((_, w, last)) = &mut self.open
            && item >= *last
        {
            let mut buf = std::mem::take(&mut self.buf);
            write_record(w, &mut buf, &item, spill)?;
            self.buf = buf;
            *last = item;
            return Ok(());
        }
        if self.in_order && self.items.last().is_some_and(|last| item < *last) {
            self.in_order = false;
        }
        self.bytes += item.mem_size();
        self.items.push(item);
        if self.items.len() >= self.chunk_rows || self.bytes >= self.chunk_bytes {
            self.spill_chunk(spill)?;
        }
        Ok(())
    }

    /// Bytes and rows held in memory now.
    pub(crate) fn held(&self) -> (usize, usize) {
        (self.bytes, self.items.len())
    }

    /// Whether a run was written already.
    pub(crate) fn spilled(&self) -> bool {
        !self.runs.is_empty() || self.open.is_some()
    }

    fn spill_chunk(&mut self, spill: &mut Spill) -> io::Result<()> {
        if self.items.is_empty() {
            return Ok(());
        }
        let in_order = std::mem::replace(&mut self.in_order, true);
        self.bytes = 0;
        if !in_order {
            let order = sorted_order(&self.items);
            let items = &self.items;
            let run =
                write_run::<T, &T>(order.iter().map(|&(_, i)| Ok(&items[i as usize])), spill)?;
            self.runs.push(run);
            // The capacity stays for the next chunk.
            self.items.clear();
            return Ok(());
        }
        let continues = self
            .open
            .as_ref()
            .is_some_and(|(_, _, last)| self.items[0] >= *last);
        if !continues {
            self.close_open()?;
            let (path, file) = spill.create()?;
            let w = BufWriter::with_capacity(RUN_WRITE_BUFFER, file);
            let last = self.items[0].clone();
            self.open = Some((RunFile { path }, w, last));
        }
        let (_, w, last) = self.open.as_mut().expect("opened above");
        for item in &self.items {
            write_record(w, &mut self.buf, item, spill)?;
        }
        *last = self.items.pop().expect("not empty");
        self.items.clear();
        Ok(())
    }

    /// Ends the run chunks were appended to.
    fn close_open(&mut self) -> io::Result<()> {
        if let Some((run, mut w, _)) = self.open.take() {
            w.flush()?;
            self.runs.push(run);
        }
        Ok(())
    }

    /// The sorted result: in memory when nothing was spilled and `in_memory` allows it,
    /// otherwise as runs on disk (merged down to at most [`FAN_IN`]).
    pub(crate) fn finish(mut self, in_memory: bool, spill: &mut Spill) -> io::Result<Sorted<T>> {
        if !self.spilled() && in_memory {
            if !self.in_order {
                sort_items(&mut self.items);
            }
            return Ok(Sorted::Memory(Arc::new(self.items)));
        }
        self.spill_chunk(spill)?;
        self.close_open()?;
        let mut runs = std::mem::take(&mut self.runs);
        while runs.len() > FAN_IN {
            let rest = runs.split_off(FAN_IN);
            let group = Arc::new(std::mem::replace(&mut runs, rest));
            let merged = write_run::<T, T>(Merge::<T>::open(&group)?, spill)?;
            drop(group);
            runs.push(merged);
        }
        Ok(Sorted::Runs(Arc::new(runs)))
    }
}

fn write_record<T: Spillable>(
    w: &mut BufWriter<File>,
    buf: &mut Vec<u8>,
    item: &T,
    spill: &mut Spill,
) -> io::Result<()> {
    buf.clear();
    item.encode(buf);
    w.write_all(&(buf.len() as u32).to_le_bytes())?;
    w.write_all(buf)?;
    spill.bytes_written += 4 + buf.len() as u64;
    Ok(())
}

fn write_run<T: Spillable, R: std::borrow::Borrow<T>>(
    items: impl Iterator<Item = io::Result<R>>,
    spill: &mut Spill,
) -> io::Result<RunFile> {
    let (path, file) = spill.create()?;
    let run = RunFile { path };
    let mut w = BufWriter::with_capacity(RUN_WRITE_BUFFER, file);
    let mut buf = Vec::with_capacity(256);
    for item in items {
        write_record(&mut w, &mut buf, item?.borrow(), spill)?;
    }
    w.flush()?;
    Ok(run)
}

/// A sorted sequence, readable any number of times.
#[derive(Clone)]
pub(crate) enum Sorted<T> {
    Memory(Arc<Vec<T>>),
    Runs(Arc<Vec<RunFile>>),
}

impl<T: Spillable> Sorted<T> {
    /// Iterates in order. Dropping every `Sorted` and iterator deletes the runs.
    pub(crate) fn iter(&self) -> io::Result<SortedIter<T>> {
        Ok(match self {
            Sorted::Memory(v) => SortedIter::Memory {
                items: v.clone(),
                pos: 0,
            },
            Sorted::Runs(runs) => SortedIter::Merge(Merge::open(runs)?),
        })
    }

    /// Iterates in order, moving the records out when nothing else shares them.
    pub(crate) fn into_iter(self) -> io::Result<SortedIter<T>> {
        match self {
            Sorted::Memory(v) => match Arc::try_unwrap(v) {
                Ok(v) => Ok(SortedIter::Owned(v.into_iter())),
                Err(v) => Ok(SortedIter::Memory { items: v, pos: 0 }),
            },
            runs => runs.iter(),
        }
    }

    /// Whether it is held in memory.
    #[cfg(test)]
    pub(crate) fn in_memory(&self) -> bool {
        matches!(self, Sorted::Memory(_))
    }
}

/// Iterator over a [`Sorted`]; yields `Err` if a run cannot be read.
pub(crate) enum SortedIter<T> {
    Memory { items: Arc<Vec<T>>, pos: usize },
    Owned(std::vec::IntoIter<T>),
    Merge(Merge<T>),
}

impl<T: Spillable> Iterator for SortedIter<T> {
    type Item = io::Result<T>;

    fn next(&mut self) -> Option<io::Result<T>> {
        match self {
            SortedIter::Memory { items, pos } => {
                let item = items.get(*pos)?.clone();
                *pos += 1;
                Some(Ok(item))
            }
            SortedIter::Owned(it) => it.next().map(Ok),
            SortedIter::Merge(m) => m.next(),
        }
    }
}

/// K-way merge of runs with a binary heap of run numbers, ordered by each run's current
/// record (prefix first): one record and one read buffer per run in memory.
pub(crate) struct Merge<T> {
    _runs: Arc<Vec<RunFile>>,
    readers: Vec<RunReader>,
    heads: Vec<Option<(u128, T)>>,
    heap: Vec<usize>,
    failed: bool,
}

impl<T: Spillable> Merge<T> {
    fn open(runs: &Arc<Vec<RunFile>>) -> io::Result<Self> {
        let mut m = Merge {
            _runs: runs.clone(),
            readers: Vec::with_capacity(runs.len()),
            heads: Vec::with_capacity(runs.len()),
            heap: Vec::with_capacity(runs.len()),
            failed: false,
        };
        for (i, run) in runs.iter().enumerate() {
            let mut r = RunReader {
                input: BufReader::with_capacity(RUN_READ_BUFFER, File::open(&run.path)?),
                buf: Vec::new(),
            };
            let head = r.next::<T>()?.map(|t| (t.prefix(), t));
            if head.is_some() {
                m.heap.push(i);
            }
            m.heads.push(head);
            m.readers.push(r);
        }
        for i in (0..m.heap.len() / 2).rev() {
            m.sift_down(i);
        }
        Ok(m)
    }

    fn less(&self, a: usize, b: usize) -> bool {
        let (pa, ta) = self.heads[a]
            .as_ref()
            .expect("a run in the heap has a head");
        let (pb, tb) = self.heads[b]
            .as_ref()
            .expect("a run in the heap has a head");
        pa.cmp(pb).then_with(|| ta.cmp(tb)).then(a.cmp(&b)) == std::cmp::Ordering::Less
    }

    fn sift_down(&mut self, mut i: usize) {
        let n = self.heap.len();
        loop {
            let (l, r) = (2 * i + 1, 2 * i + 2);
            let mut smallest = i;
            if l < n && self.less(self.heap[l], self.heap[smallest]) {
                smallest = l;
            }
            if r < n && self.less(self.heap[r], self.heap[smallest]) {
                smallest = r;
            }
            if smallest == i {
                return;
            }
            self.heap.swap(i, smallest);
            i = smallest;
        }
    }
}

impl<T: Spillable> Iterator for Merge<T> {
    type Item = io::Result<T>;

    fn next(&mut self) -> Option<io::Result<T>> {
        if self.failed {
            return None;
        }
        let run = *self.heap.first()?;
        let (_, item) = self.heads[run]
            .take()
            .expect("a run in the heap has a head");
        match self.readers[run].next::<T>() {
            Ok(Some(next)) => self.heads[run] = Some((next.prefix(), next)),
            Ok(None) => {
                let last = self.heap.pop().expect("not empty");
                if !self.heap.is_empty() {
                    self.heap[0] = last;
                }
            }
            Err(e) => {
                self.failed = true;
                return Some(Err(e));
            }
        }
        self.sift_down(0);
        Some(Ok(item))
    }
}

struct RunReader {
    input: BufReader<File>,
    buf: Vec<u8>,
}

impl RunReader {
    fn next<T: Spillable>(&mut self) -> io::Result<Option<T>> {
        let mut len = [0u8; 4];
        match self.input.read_exact(&mut len) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e),
        }
        self.buf.resize(u32::from_le_bytes(len) as usize, 0);
        self.input.read_exact(&mut self.buf)?;
        let mut d = Decoder { input: &self.buf };
        T::decode(&mut d).map(Some)
    }
}

/// Reads what [`put_str`] and friends wrote.
pub(crate) struct Decoder<'a> {
    input: &'a [u8],
}

fn corrupt() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, "corrupt sort run")
}

impl Decoder<'_> {
    pub(crate) fn bytes(&mut self, n: usize) -> io::Result<&[u8]> {
        if self.input.len() < n {
            return Err(corrupt());
        }
        let (head, rest) = self.input.split_at(n);
        self.input = rest;
        Ok(head)
    }

    pub(crate) fn u8(&mut self) -> io::Result<u8> {
        Ok(self.bytes(1)?[0])
    }

    pub(crate) fn u32(&mut self) -> io::Result<u32> {
        Ok(u32::from_le_bytes(
            self.bytes(4)?.try_into().expect("4 bytes"),
        ))
    }

    pub(crate) fn u64(&mut self) -> io::Result<u64> {
        Ok(u64::from_le_bytes(
            self.bytes(8)?.try_into().expect("8 bytes"),
        ))
    }

    pub(crate) fn varint(&mut self) -> io::Result<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            v |= u64::from(b & 0x7F) << shift;
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err(corrupt())
    }

    pub(crate) fn str(&mut self) -> io::Result<&str> {
        let n = self.varint()? as usize;
        std::str::from_utf8(self.bytes(n)?).map_err(|_| corrupt())
    }
}

pub(crate) fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

pub(crate) fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

/// LEB128: 7 bits a byte, low first.
pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub(crate) fn put_str(out: &mut Vec<u8>, s: &str) {
    put_varint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
    struct Item(String, u64);

    impl Spillable for Item {
        fn encode(&self, out: &mut Vec<u8>) {
            put_str(out, &self.0);
            put_u64(out, self.1);
        }
        fn decode(d: &mut Decoder<'_>) -> io::Result<Self> {
            Ok(Item(d.str()?.to_string(), d.u64()?))
        }
        fn mem_size(&self) -> usize {
            32 + self.0.len()
        }
        fn prefix(&self) -> u128 {
            Prefix::new().str(&self.0).u64(self.1).value()
        }
    }

    #[test]
    fn prefixes_keep_the_order() {
        let keys = [
            "",
            "\0",
            "\0\0",
            "a",
            "a\0",
            "a\0b",
            "ab",
            "abcdefghijklmnopq",
            "abcdefghijklmnopr",
            "b",
        ];
        let mut items: Vec<Item> = keys
            .iter()
            .flat_map(|k| [Item(k.to_string(), 2), Item(k.to_string(), 1)])
            .collect();
        for a in &items {
            for b in &items {
                if a.prefix() < b.prefix() {
                    assert!(a < b, "{a:?} {b:?}");
                }
            }
        }
        let mut want = items.clone();
        want.sort();
        items.reverse();
        sort_items(&mut items);
        assert_eq!(items, want);
    }

    fn shuffled(n: u64) -> Vec<Item> {
        (0..n)
            .map(|i| Item(format!("k{:05}", (i * 7919) % n), i))
            .collect()
    }

    #[test]
    fn small_input_stays_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        let mut spill = Spill::new(Some(dir.path().to_path_buf()));
        let mut s = Sorter::new(1000, 1 << 20);
        for it in shuffled(500) {
            s.push(it, &mut spill).unwrap();
        }
        let sorted = s.finish(true, &mut spill).unwrap();
        assert!(sorted.in_memory());
        assert_eq!(spill.runs_written, 0);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        let got: Vec<Item> = sorted.iter().unwrap().map(Result::unwrap).collect();
        let mut want = shuffled(500);
        want.sort();
        assert_eq!(got, want);
    }

    #[test]
    fn input_in_order_is_one_run_and_nearly_in_order_a_few() {
        let dir = tempfile::tempdir().unwrap();
        let mut spill = Spill::new(Some(dir.path().to_path_buf()));
        let mut want: Vec<Item> = (0..1000).map(|i| Item(format!("k{i:05}"), i)).collect();
        let mut s = Sorter::new(7, 1 << 20);
        for it in want.clone() {
            s.push(it, &mut spill).unwrap();
        }
        let sorted = s.finish(true, &mut spill).unwrap();
        assert_eq!(spill.runs_written, 1);
        let got: Vec<Item> = sorted.iter().unwrap().map(Result::unwrap).collect();
        assert_eq!(got, want);
        // Two descents: three runs, whatever the chunk; the merge gives the order back.
        let mut input = want.clone();
        input.swap(500, 900);
        let mut s = Sorter::new(7, 1 << 20);
        for it in input {
            s.push(it, &mut spill).unwrap();
        }
        let before = spill.runs_written;
        let sorted = s.finish(true, &mut spill).unwrap();
        assert!(spill.runs_written - before <= 4, "{}", spill.runs_written);
        let got: Vec<Item> = sorted.iter().unwrap().map(Result::unwrap).collect();
        want.sort();
        assert_eq!(got, want);
    }

    #[test]
    fn spills_merges_down_and_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let mut spill = Spill::new(Some(dir.path().to_path_buf()));
        // 7 rows per chunk, 1000 rows: 143 runs, more than FAN_IN, so a merge-down happens.
        let mut s = Sorter::new(7, 1 << 20);
        for it in shuffled(1000) {
            s.push(it, &mut spill).unwrap();
        }
        let sorted = s.finish(true, &mut spill).unwrap();
        assert!(!sorted.in_memory());
        assert!(spill.runs_written > 143);
        let mut want = shuffled(1000);
        want.sort();
        for _ in 0..2 {
            let got: Vec<Item> = sorted.iter().unwrap().map(Result::unwrap).collect();
            assert_eq!(got, want);
        }
        drop(sorted);
        let tmp = std::fs::read_dir(dir.path())
            .unwrap()
            .next()
            .unwrap()
            .unwrap();
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
        drop(spill);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
