//! The field scan: chosen cells of every record of one file, in parallel chunks, with no sort
//! and no row kept. It is what `plan estimate` reads the extract with.
//!
//! The file is mapped into memory and cut at line breaks into one chunk per thread. A record
//! with no quote is split on the delimiter where it lies (the common case, at close to `memchr`
//! speed); a record with a quote goes through csv-core, so quoted delimiters and line breaks
//! read exactly as [`RowReader`](super::RowReader) reads them. If a cut fell inside a quoted
//! line break (a chunk ends inside a record), the file is scanned again in one piece.
//!
//! Rows are checked as the grouping checks them: a record whose width differs from the
//! header's, or that is not UTF-8, is reported as a problem instead of a row.

use std::fs::File;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use memchr::{memchr, memchr2, memrchr};

/// What the scan reads of a file.
#[derive(Debug, Clone)]
pub struct ScanSpec {
    /// The cell delimiter.
    pub delimiter: u8,
    /// Cells a record must have (the header's width).
    pub width: usize,
    /// The columns handed to the visitor, in this order.
    pub wanted: Vec<usize>,
    /// Chunks (threads) at most; small files are read in one.
    pub threads: usize,
    /// Bytes mapped at once per thread ([`WINDOW`] unless a test wants it small).
    pub window: usize,
}

impl ScanSpec {
    /// Reads `wanted` of records `width` cells wide, on every core.
    pub fn new(delimiter: u8, width: usize, wanted: Vec<usize>) -> Self {
        ScanSpec {
            delimiter,
            width,
            wanted,
            threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            window: WINDOW,
        }
    }
}

/// A record the scan could not hand over (it is left out, as the grouping leaves it out).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowProblem {
    /// The record has `found` cells, not the header's width.
    Width { found: usize },
    /// The record is not UTF-8.
    Utf8,
}

/// One record, as the visitor sees it.
#[derive(Debug)]
pub enum Scanned<'a> {
    /// A well-formed record: its byte offset in the file and the wanted cells (UTF-8: the whole
    /// record was checked).
    Row { offset: u64, cells: &'a [&'a [u8]] },
    /// A record left out.
    Problem { offset: u64, problem: RowProblem },
}

/// What a scan found besides what the visitors saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanTotals {
    /// Data records (the header and blank lines not counted).
    pub records: u64,
    /// The file's size.
    pub bytes: u64,
}

/// Scans `path`: `visit` is called for every data record of one chunk with that chunk's state
/// (made by `make`); the states come back in file order. `progress` grows by the bytes read.
pub fn scan<V: Send>(
    path: &Path,
    spec: &ScanSpec,
    progress: &AtomicU64,
    make: impl Fn() -> V + Sync,
    visit: impl Fn(&mut V, Scanned<'_>) + Sync,
) -> io::Result<(Vec<V>, ScanTotals)> {
    let file = File::open(path)?;
    let len = file.metadata()?.len() as usize;
    let totals = |records| ScanTotals {
        records,
        bytes: len as u64,
    };
    if len == 0 {
        return Ok((vec![make()], totals(0)));
    }
    let start = data_start(&file, len, spec.delimiter)?;
    let cuts = cuts(&file, start, len, spec.threads.max(1))?;
    let last = cuts.len() - 2;
    let results: Vec<io::Result<(V, Range)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = cuts
            .windows(2)
            .enumerate()
            .map(|(i, w)| {
                let (make, visit, file) = (&make, &visit, &file);
                let (from, to) = (w[0], w[1]);
                scope.spawn(move || {
                    let mut state = make();
                    let range = scan_range(file, from, to, i == last, spec, progress, &mut |s| {
                        visit(&mut state, s)
                    })?;
                    Ok((state, range))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("scan thread"))
            .collect()
    });
    let results = results.into_iter().collect::<io::Result<Vec<_>>>()?;
    if results.iter().any(|(_, r)| r.cut_inside_record) {
        // A cut fell inside a quoted line break: read the file again in one piece.
        progress.fetch_sub((len - start) as u64, Ordering::Relaxed);
        let mut state = make();
        let range = scan_range(&file, start, len, true, spec, progress, &mut |s| {
            visit(&mut state, s)
        })?;
        return Ok((vec![state], totals(range.records)));
    }
    let records = results.iter().map(|(_, r)| r.records).sum();
    Ok((
        results.into_iter().map(|(v, _)| v).collect(),
        totals(records),
    ))
}

/// Bytes of the file mapped at once per thread (the resident memory a scan takes is about
/// this times the threads, whatever the file's size).
pub const WINDOW: usize = 32 << 20;
/// Map offsets are aligned to this (a multiple of every platform's page size).
const ALIGN: usize = 64 << 10;

/// Maps `len` bytes of `file` from `offset` (aligned to [`ALIGN`]).
fn map(file: &File, offset: usize, len: usize) -> io::Result<memmap2::Mmap> {
    // SAFETY: the map is only read. An extract changed by another process while it is
    // scanned gives wrong counts, not undefined behaviour in the code it is handed to: every
    // cell is checked as UTF-8 before it becomes text.
    unsafe {
        memmap2::MmapOptions::new()
            .offset(offset as u64)
            .len(len)
            .populate()
            .map(file)
    }
}

/// Whole lines of a file from a position, mapped.
struct Lines {
    mapped: memmap2::Mmap,
    from: usize,
    len: usize,
    /// The lines reach the end of the range (the last may then have no line break).
    at_end: bool,
}

impl Lines {
    /// The lines of `pos..to` that fit in `window` bytes; `None` when not one whole line does.
    fn map(file: &File, pos: usize, to: usize, window: usize) -> io::Result<Option<Lines>> {
        let map_start = pos - pos % ALIGN;
        let map_end = to.min(map_start + window);
        let mapped = map(file, map_start, map_end - map_start)?;
        let from = pos - map_start;
        let at_end = map_end == to;
        let len = if at_end {
            mapped.len() - from
        } else {
            memrchr(b'\n', &mapped[from..]).map_or(0, |i| i + 1)
        };
        Ok((len > 0).then_some(Lines {
            mapped,
            from,
            len,
            at_end,
        }))
    }

    fn text(&self) -> &[u8] {
        &self.mapped[self.from..self.from + self.len]
    }
}

struct Range {
    records: u64,
    /// The range ended inside a record (only possible when a cut fell in a quoted line
    /// break).
    cut_inside_record: bool,
}

/// Scans `from..to` of the file, window by window.
#[allow(clippy::too_many_arguments)]
fn scan_range(
    file: &File,
    from: usize,
    to: usize,
    eof: bool,
    spec: &ScanSpec,
    progress: &AtomicU64,
    visit: &mut dyn FnMut(Scanned<'_>),
) -> io::Result<Range> {
    let mut records = 0;
    let mut pos = from;
    let mut window = spec.window.max(2 * ALIGN);
    while pos < to {
        let Some(lines) = Lines::map(file, pos, to, window)? else {
            // One record longer than the window.
            window *= 2;
            continue;
        };
        let (usable, at_end) = (lines.text().len(), lines.at_end);
        let chunk = scan_chunk(
            lines.text(),
            pos as u64,
            spec,
            at_end && eof,
            progress,
            visit,
        );
        records += chunk.records;
        match chunk.stopped_at {
            None => pos += usable,
            Some(_) if at_end => {
                return Ok(Range {
                    records,
                    cut_inside_record: true,
                });
            }
            // One record longer than the window.
            Some(0) => window *= 2,
            Some(at) => pos += at,
        }
    }
    Ok(Range {
        records,
        cut_inside_record: false,
    })
}

/// Where the data records start: after a BOM, blank lines and the header record.
fn data_start(file: &File, len: usize, delimiter: u8) -> io::Result<usize> {
    let head = map(file, 0, len.min(WINDOW))?;
    let bytes: &[u8] = &head;
    let bom = if bytes.starts_with(&[0xEF, 0xBB, 0xBF]) {
        3
    } else {
        0
    };
    let mut reader = csv_core::ReaderBuilder::new().delimiter(delimiter).build();
    let mut out = vec![0u8; 4096];
    let mut ends = vec![0usize; 64];
    let mut at = bom;
    loop {
        let (result, nin, _, _) = reader.read_record(&bytes[at..], &mut out, &mut ends);
        at += nin;
        match result {
            csv_core::ReadRecordResult::OutputFull => out.resize(out.len() * 2, 0),
            csv_core::ReadRecordResult::OutputEndsFull => ends.resize(ends.len() * 2, 0),
            // A header longer than the window is taken for the whole file.
            csv_core::ReadRecordResult::InputEmpty => {
                if at >= bytes.len() {
                    return Ok(len);
                }
            }
            csv_core::ReadRecordResult::Record | csv_core::ReadRecordResult::End => {
                return Ok(at.min(len));
            }
        }
    }
}

/// Range boundaries: `start`, a line break near every `(len - start) / n`, `len`.
fn cuts(file: &File, start: usize, len: usize, n: usize) -> io::Result<Vec<usize>> {
    // Ranges under 8 MiB are not worth a thread.
    let n = n.min((len - start) / (8 << 20)).max(1);
    let mut cuts = vec![start];
    for i in 1..n {
        let at = start + (len - start) * i / n;
        let prev = *cuts.last().expect("starts with start");
        if at <= prev {
            continue;
        }
        let map_start = at - at % ALIGN;
        let piece = map(file, map_start, (len - map_start).min(WINDOW))?;
        match memchr(b'\n', &piece[at - map_start..]) {
            Some(nl) if at + nl + 1 < len => cuts.push(at + nl + 1),
            _ => break,
        }
    }
    cuts.push(len);
    cuts.dedup();
    Ok(cuts)
}

struct Chunk {
    records: u64,
    /// Where a record starts that the chunk ends inside of (only when not at the end of the
    /// file): the next window starts there.
    stopped_at: Option<usize>,
}

fn scan_chunk(
    chunk: &[u8],
    base: u64,
    spec: &ScanSpec,
    eof: bool,
    progress: &AtomicU64,
    visit: &mut dyn FnMut(Scanned<'_>),
) -> Chunk {
    let split = Split::new(spec);
    // When the whole chunk is UTF-8, so is every record of it (cuts fall on ASCII bytes).
    let all_utf8 = simdutf8::basic::from_utf8(chunk).is_ok();
    let mut cells: Vec<&[u8]> = vec![b""; spec.wanted.len()];
    let mut quoted = Quoted::new(spec.delimiter);
    let mut records = 0u64;
    let mut pos = 0usize;
    while pos < chunk.len() {
        // A block of whole lines; with no quote in it, every line of it is a record.
        let mut block_end = (pos + BLOCK).min(chunk.len());
        if block_end < chunk.len() {
            block_end =
                memchr(b'\n', &chunk[block_end..]).map_or(chunk.len(), |i| block_end + i + 1);
        }
        if let Some(quotes) = split.simple(&chunk[pos..block_end]) {
            let block = &chunk[pos..block_end];
            let at = base + pos as u64;
            records += split.block(block, at, all_utf8, quotes, &mut cells, visit);
            progress.fetch_add(block.len() as u64, Ordering::Relaxed);
            pos = block_end;
            continue;
        }
        // Record by record: csv-core reads the records holding a quote.
        let block_start = pos;
        while pos < block_end {
            let at = pos;
            let rest = &chunk[pos..];
            // The line, unless a quote or a bare `\r` (csv-core ends a record there too) means
            // csv-core must read the record.
            let (line, next) = match memchr2(b'\n', b'"', rest) {
                Some(i) if rest[i] == b'"' => (None, 0),
                Some(i) => (Some(&rest[..i]), pos + i + 1),
                None => (Some(rest), chunk.len()),
            };
            let line = line
                .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
                .filter(|l| memchr(b'\r', l).is_none());
            let Some(line) = line else {
                let Some((nin, fields)) = quoted.read(rest, eof) else {
                    progress.fetch_add((at - block_start) as u64, Ordering::Relaxed);
                    return Chunk {
                        records,
                        stopped_at: Some(at),
                    };
                };
                pos += nin.max(1);
                if fields > 0 {
                    records += 1;
                    let offset = base + at as u64;
                    let scanned = if fields != spec.width {
                        Scanned::Problem {
                            offset,
                            problem: RowProblem::Width { found: fields },
                        }
                    } else {
                        match quoted.cells(&spec.wanted, all_utf8) {
                            Some(c) => {
                                visit(Scanned::Row { offset, cells: &c });
                                continue;
                            }
                            None => Scanned::Problem {
                                offset,
                                problem: RowProblem::Utf8,
                            },
                        }
                    };
                    visit(scanned);
                }
                continue;
            };
            pos = next;
            if !line.is_empty() {
                records += 1;
                split.line(line, base + at as u64, all_utf8, &mut cells, visit);
            }
        }
        // csv-core may end a record past the block.
        progress.fetch_add((pos - block_start) as u64, Ordering::Relaxed);
    }
    Chunk {
        records,
        stopped_at: None,
    }
}

/// Lines are handled in blocks of about this many bytes.
const BLOCK: usize = 1 << 20;

/// Splits a record with no quote.
struct Split {
    delimiter: u8,
    width: usize,
    /// For each column up to the last wanted one, its place among the wanted cells.
    slot: Vec<usize>,
    /// A column wanted twice (a source whose key is also its parent column): (its first
    /// place, a later one), the later filled from the first.
    repeats: Vec<(usize, usize)>,
}

impl Split {
    fn new(spec: &ScanSpec) -> Self {
        let max = spec.wanted.iter().max().map_or(0, |m| m + 1);
        let mut slot = vec![usize::MAX; max];
        let mut repeats = Vec::new();
        for (i, &c) in spec.wanted.iter().enumerate() {
            if slot[c] == usize::MAX {
                slot[c] = i;
            } else {
                repeats.push((slot[c], i));
            }
        }
        Split {
            delimiter: spec.delimiter,
            width: spec.width,
            slot,
            repeats,
        }
    }

    fn line<'a>(
        &self,
        line: &'a [u8],
        offset: u64,
        all_utf8: bool,
        cells: &mut Vec<&'a [u8]>,
        visit: &mut dyn FnMut(Scanned<'_>),
    ) {
        // One pass, eight bytes at a time: every delimiter counted, the first ones (up to the
        // last wanted column) placed.
        let want = self.slot.len().min(MAX_PLACED);
        let mut ends = [0usize; MAX_PLACED];
        let found = delimiters(line, self.delimiter, &mut ends[..want]) + 1;
        self.cells(line, offset, all_utf8, false, &ends, found, cells, visit);
    }

    /// Whether [`Split::block`] reads `block` exactly as csv-core would: every quote opens a
    /// cell (after a delimiter or a line break, or right after a closing quote: `""`) or closes
    /// one (before a delimiter, a line break, `\r\n`, an opening quote or the end), every `\r`
    /// outside quotes comes before a `\n`, and no quote is open at the end (blocks end at a line
    /// break or at the end of the file, so a record ends there unless a quote is open). Anything else
    /// (a quote inside an unquoted cell, a bare `\r`, text after a closing quote) is left to
    /// csv-core, record by record. `Some(quotes)`: accepted, holding a quote.
    fn simple(&self, block: &[u8]) -> Option<bool> {
        if memchr2(b'"', b'\r', block).is_none() {
            return Some(false);
        }
        if self.slot.len() > MAX_PLACED {
            return None;
        }
        let (mut inside, mut after_structure, mut after_closing) = (0u64, 1u64, 0u64);
        let (mut closing_pending, mut return_pending) = (false, false);
        let mut at = 0;
        while at < block.len() {
            let m = marks(&block[at..], self.delimiter);
            // Past the last byte of the block: what may follow a closing quote or a `\r`.
            let end = if block.len() - at < 64 {
                1u64 << (block.len() - at)
            } else {
                0
            };
            let quoted = prefix_xor(m.quotes) ^ inside;
            let opening = m.quotes & quoted;
            let closing = m.quotes & !quoted;
            let structure = (m.newlines | m.delimiters) & !quoted;
            let returns = m.returns & !quoted;
            let follows = structure | returns | opening | end;
            if opening & !((structure << 1) | after_structure | (closing << 1) | after_closing) != 0
                || (closing_pending && follows & 1 == 0)
                || closing & !(follows >> 1) & !(1 << 63) != 0
                || (return_pending && (m.newlines | end) & 1 == 0)
                || returns & !((m.newlines | end) >> 1) & !(1 << 63) != 0
            {
                return None;
            }
            closing_pending = closing >> 63 == 1;
            return_pending = returns >> 63 == 1;
            after_structure = structure >> 63;
            after_closing = closing >> 63;
            inside = 0u64.wrapping_sub(quoted >> 63);
            at += 64;
        }
        (inside == 0).then(|| memchr(b'"', block).is_some())
    }

    /// Splits a block of whole records that [`Split::simple`] accepted, 64 bytes at a time:
    /// line breaks, delimiters and quotes are found together, quoted ones left aside, and each
    /// record is handed over as its line break is met, its delimiters already counted and
    /// placed. Returns the records (non-empty lines).
    fn block<'a>(
        &self,
        block: &'a [u8],
        base: u64,
        all_utf8: bool,
        quotes: bool,
        cells: &mut Vec<&'a [u8]>,
        visit: &mut dyn FnMut(Scanned<'_>),
    ) -> u64 {
        let want = self.slot.len().min(MAX_PLACED);
        let mut ends = [0usize; MAX_PLACED];
        let mut found = 0usize;
        let mut start = 0usize;
        let mut records = 0u64;
        let mut inside = 0u64;
        let mut at = 0usize;
        let mut line = |start: usize, end: usize, found: usize, ends: &[usize; MAX_PLACED]| {
            let line = &block[start..end];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.is_empty() {
                return;
            }
            records += 1;
            self.cells(
                line,
                base + start as u64,
                all_utf8,
                quotes,
                ends,
                found,
                cells,
                visit,
            );
        };
        while at < block.len() {
            let m = marks(&block[at..], self.delimiter);
            let quoted = prefix_xor(m.quotes) ^ inside;
            inside = 0u64.wrapping_sub(quoted >> 63);
            let (mut newlines, mut delimiters) = (m.newlines & !quoted, m.delimiters & !quoted);
            loop {
                // The delimiters before the next line break (or to the end of these 64 bytes):
                // the first ones placed, the rest counted.
                let before = if newlines == 0 {
                    u64::MAX
                } else {
                    (newlines & newlines.wrapping_neg()) - 1
                };
                let mut mine = delimiters & before;
                while found < want && mine != 0 {
                    ends[found] = at + mine.trailing_zeros() as usize - start;
                    found += 1;
                    mine &= mine - 1;
                }
                found += mine.count_ones() as usize;
                if newlines == 0 {
                    break;
                }
                let i = at + newlines.trailing_zeros() as usize;
                line(start, i, found + 1, &ends);
                found = 0;
                start = i + 1;
                delimiters &= !((before << 1) | 1);
                newlines &= newlines - 1;
            }
            at += 64;
        }
        if start < block.len() {
            line(start, block.len(), found + 1, &ends);
        }
        records
    }

    /// Hands over a line whose first delimiters are at `ends` and which has `found` cells.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    fn cells<'a>(
        &self,
        line: &'a [u8],
        offset: u64,
        all_utf8: bool,
        quotes: bool,
        ends: &[usize; MAX_PLACED],
        found: usize,
        cells: &mut Vec<&'a [u8]>,
        visit: &mut dyn FnMut(Scanned<'_>),
    ) {
        let want = self.slot.len().min(MAX_PLACED);
        if found != self.width {
            return visit(Scanned::Problem {
                offset,
                problem: RowProblem::Width { found },
            });
        }
        if !all_utf8 && simdutf8::basic::from_utf8(line).is_err() {
            return visit(Scanned::Problem {
                offset,
                problem: RowProblem::Utf8,
            });
        }
        let mut start = 0;
        for (column, &slot) in self.slot.iter().enumerate() {
            let end = if column + 1 == self.width {
                line.len()
            } else if column < want {
                ends[column]
            } else {
                memchr(self.delimiter, &line[start..]).map_or(line.len(), |i| start + i)
            };
            if slot != usize::MAX {
                cells[slot] = &line[start..end];
            }
            start = end + 1;
        }
        for &(first, again) in &self.repeats {
            cells[again] = cells[first];
        }
        // A quoted cell (only in blocks [`Split::simple`] accepted with `quotes`) is its text.
        let mut escaped = false;
        if quotes {
            for cell in cells.iter_mut() {
                if let [b'"', text @ .., b'"'] = *cell {
                    *cell = text;
                    escaped |= text.contains(&b'"');
                }
            }
        }
        if escaped {
            // `""` stands for `"`.
            let owned: Vec<Vec<u8>> = cells.iter().map(|c| unescape(c)).collect();
            let unescaped: Vec<&[u8]> = owned.iter().map(Vec::as_slice).collect();
            return visit(Scanned::Row {
                offset,
                cells: &unescaped,
            });
        }
        visit(Scanned::Row { offset, cells })
    }
}

/// Delimiters placed by one pass of [`delimiters`]; columns past it are found with `memchr`.
const MAX_PLACED: usize = 64;

/// Where the bytes that give a CSV text its structure are among 64 bytes: bit `i` is byte `i`.
struct Marks {
    newlines: u64,
    delimiters: u64,
    quotes: u64,
    returns: u64,
}

/// The [`Marks`] of the first 64 bytes of `bytes` (fewer at its end).
#[inline]
fn marks(bytes: &[u8], delimiter: u8) -> Marks {
    let mut buf = [0u8; 64];
    let bytes: &[u8; 64] = match bytes.first_chunk::<64>() {
        Some(b) => b,
        None => {
            // The tail: zero bytes are none of them (a delimiter is never NUL).
            buf[..bytes.len()].copy_from_slice(bytes);
            &buf
        }
    };
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{
            __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_set1_epi8,
        };
        // SAFETY: SSE2 is part of every x86-64 CPU; each 16-byte load at 16 * k lies within
        // the 64-byte array.
        unsafe {
            let wanted = [b'\n', delimiter, b'"', b'\r'].map(|b| _mm_set1_epi8(b as i8));
            let mut masks = [0u64; 4];
            for k in 0..4 {
                let v = _mm_loadu_si128(bytes.as_ptr().add(16 * k).cast::<__m128i>());
                for (mask, &w) in masks.iter_mut().zip(&wanted) {
                    *mask |= u64::from(_mm_movemask_epi8(_mm_cmpeq_epi8(v, w)) as u16) << (16 * k);
                }
            }
            let [newlines, delimiters, quotes, returns] = masks;
            Marks {
                newlines,
                delimiters,
                quotes,
                returns,
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let mark = |x: u8| {
            bytes
                .iter()
                .enumerate()
                .fold(0u64, |m, (i, &b)| m | (u64::from(b == x) << i))
        };
        Marks {
            newlines: mark(b'\n'),
            delimiters: mark(delimiter),
            quotes: mark(b'"'),
            returns: mark(b'\r'),
        }
    }
}

/// Bit `i` of the result: an odd number of bits `0..=i` of `x` are set (inside quotes, when
/// `x` marks the quotes).
#[inline]
fn prefix_xor(mut x: u64) -> u64 {
    for shift in [1, 2, 4, 8, 16, 32] {
        x ^= x << shift;
    }
    x
}

/// A quoted cell's text with `""` read as `"`.
fn unescape(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut quote = false;
    for &b in text {
        if b == b'"' && quote {
            quote = false;
            continue;
        }
        quote = b == b'"';
        out.push(b);
    }
    out
}

/// Counts `delimiter` in `line` and writes the positions of the first `placed.len()` of them.
fn delimiters(line: &[u8], delimiter: u8, placed: &mut [usize]) -> usize {
    const LOW: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    let splat = u64::from_ne_bytes([delimiter; 8]);
    let mut found = 0usize;
    let words = line.chunks_exact(8);
    let tail = words.remainder();
    for (w, word) in words.enumerate() {
        let x = u64::from_le_bytes(word.try_into().expect("8 bytes")) ^ splat;
        // The high bit of each byte that is zero in `x` (equal to the delimiter), exactly.
        let mut mask = !(((x & LOW) + LOW) | x | LOW);
        while mask != 0 && found < placed.len() {
            placed[found] = w * 8 + (mask.trailing_zeros() / 8) as usize;
            found += 1;
            mask &= mask - 1;
        }
        found += mask.count_ones() as usize;
    }
    let base = line.len() - tail.len();
    for (i, &b) in tail.iter().enumerate() {
        if b == delimiter {
            if found < placed.len() {
                placed[found] = base + i;
            }
            found += 1;
        }
    }
    found
}

/// Reads one record with csv-core (for records holding a quote).
struct Quoted {
    reader: csv_core::Reader,
    out: Vec<u8>,
    ends: Vec<usize>,
    fields: usize,
}

impl Quoted {
    fn new(delimiter: u8) -> Self {
        Quoted {
            reader: csv_core::ReaderBuilder::new().delimiter(delimiter).build(),
            out: vec![0; 1024],
            ends: vec![0; 64],
            fields: 0,
        }
    }

    /// Reads the record at the start of `input`: the bytes it took and its number of cells
    /// (0 for a blank line); `None` when `input` ends inside it and more input would follow.
    fn read(&mut self, input: &[u8], at_eof: bool) -> Option<(usize, usize)> {
        let mut nin_total = 0;
        let mut nout_total = 0;
        let mut nend_total = 0;
        loop {
            let (result, nin, nout, nend) = self.reader.read_record(
                &input[nin_total..],
                &mut self.out[nout_total..],
                &mut self.ends[nend_total..],
            );
            nin_total += nin;
            nout_total += nout;
            nend_total += nend;
            match result {
                csv_core::ReadRecordResult::OutputFull => {
                    let n = self.out.len() * 2;
                    self.out.resize(n, 0);
                }
                csv_core::ReadRecordResult::OutputEndsFull => {
                    let n = self.ends.len() * 2;
                    self.ends.resize(n, 0);
                }
                csv_core::ReadRecordResult::InputEmpty => {
                    if nin_total < input.len() {
                        continue;
                    }
                    if !at_eof {
                        self.reader.reset();
                        return None;
                    }
                    // End of the file: finish the record.
                    let (result, _, nout, nend) = self.reader.read_record(
                        &[],
                        &mut self.out[nout_total..],
                        &mut self.ends[nend_total..],
                    );
                    nend_total += nend;
                    let _ = nout;
                    let _ = result;
                    self.fields = nend_total;
                    self.reader.reset();
                    return Some((nin_total, nend_total));
                }
                csv_core::ReadRecordResult::Record => {
                    self.fields = nend_total;
                    return Some((nin_total, nend_total));
                }
                csv_core::ReadRecordResult::End => {
                    self.fields = 0;
                    return Some((nin_total.max(input.len()), 0));
                }
            }
        }
    }

    /// The wanted cells of the record just read, `None` if one of its cells is not UTF-8
    /// (not looked at when the whole window is known to be UTF-8: unquoting removes ASCII
    /// bytes only).
    fn cells(&self, wanted: &[usize], known_utf8: bool) -> Option<Vec<&[u8]>> {
        let cell = |i: usize| -> Option<&[u8]> {
            let start = if i == 0 { 0 } else { self.ends[i - 1] };
            Some(&self.out[start..self.ends[i]])
        };
        if !known_utf8
            && (0..self.fields)
                .any(|i| cell(i).is_some_and(|c| simdutf8::basic::from_utf8(c).is_err()))
        {
            return None;
        }
        wanted.iter().map(|&i| cell(i)).collect()
    }
}

/// Offsets of the records of `path` whose cell `column` is one of `values`: a substring
/// search for each value (at memory speed), each hit checked by reading its line as a record.
/// For picking a few rows out of a large file; a hit inside a quoted line break is read from
/// that line, so rows of such files may be missed, never invented (the cell must match).
pub fn find_records(
    path: &Path,
    delimiter: u8,
    column: usize,
    values: &[Vec<u8>],
) -> io::Result<Vec<u64>> {
    let file = File::open(path)?;
    let len = file.metadata()?.len() as usize;
    let mut found = std::collections::BTreeSet::new();
    if len == 0 || values.is_empty() {
        return Ok(Vec::new());
    }
    let start = data_start(&file, len, delimiter)?;
    let finders: Vec<memchr::memmem::Finder<'_>> = values
        .iter()
        .filter(|v| !v.is_empty())
        .map(|v| memchr::memmem::Finder::new(v.as_slice()))
        .collect();
    let mut pos = start;
    let mut window = WINDOW;
    while pos < len {
        let Some(lines) = Lines::map(&file, pos, len, window)? else {
            window *= 2;
            continue;
        };
        let text = lines.text();
        let usable = text.len();
        for (finder, value) in finders.iter().zip(values) {
            for hit in finder.find_iter(text) {
                let line = memrchr(b'\n', &text[..hit]).map_or(0, |i| i + 1);
                if let Some(record) = first_record(&text[line..], delimiter)
                    && record.get(column) == Some(value.as_slice())
                {
                    found.insert((pos + line) as u64);
                }
            }
        }
        pos += usable;
    }
    Ok(found.into_iter().collect())
}

/// The first record of `bytes`, any width (`None` if there is none or it does not parse).
pub fn first_record(bytes: &[u8], delimiter: u8) -> Option<csv::ByteRecord> {
    csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(delimiter)
        .from_reader(bytes)
        .byte_records()
        .next()?
        .ok()
}

/// The whole record at `offset` of `path`, its cells as text (for rendering a sample).
pub fn record_at(path: &Path, offset: u64, delimiter: u8) -> io::Result<Vec<u8>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = File::open(path)?;
    file.seek(SeekFrom::Start(offset))?;
    let mut reader = csv_core::ReaderBuilder::new().delimiter(delimiter).build();
    let mut raw = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut out = vec![0u8; 64 * 1024];
    let mut ends = vec![0usize; 1024];
    loop {
        let n = file.read(&mut buf)?;
        let mut at = 0;
        loop {
            let (result, nin, _, _) = reader.read_record(&buf[at..n], &mut out, &mut ends);
            raw.extend_from_slice(&buf[at..at + nin]);
            at += nin;
            match result {
                csv_core::ReadRecordResult::OutputFull => out.resize(out.len() * 2, 0),
                csv_core::ReadRecordResult::OutputEndsFull => ends.resize(ends.len() * 2, 0),
                csv_core::ReadRecordResult::InputEmpty if n > 0 => break,
                _ => return Ok(raw),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn scan_text(text: &[u8], wanted: &[usize], width: usize, threads: usize) -> Vec<String> {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(text).unwrap();
        let spec = ScanSpec {
            threads,
            window: 256 << 10,
            ..ScanSpec::new(b',', width, wanted.to_vec())
        };
        let progress = AtomicU64::new(0);
        let (states, totals) = scan(
            f.path(),
            &spec,
            &progress,
            Vec::new,
            |v: &mut Vec<String>, s| match s {
                Scanned::Row { offset, cells } => v.push(format!(
                    "{offset}:{}",
                    cells
                        .iter()
                        .map(|c| String::from_utf8_lossy(c))
                        .collect::<Vec<_>>()
                        .join("|")
                )),
                Scanned::Problem { offset, problem } => v.push(format!("{offset}:{problem:?}")),
            },
        )
        .unwrap();
        let rows: Vec<String> = states.into_iter().flatten().collect();
        assert_eq!(totals.records as usize, rows.len());
        assert!(progress.load(Ordering::Relaxed) <= text.len() as u64);
        rows
    }

    #[test]
    fn plain_quoted_crlf_bom_and_problems() {
        let text =
            "\u{feff}a,b,c\r\nk1,p1,x\r\n\r\nk2,\"p,2\",\"line\nbreak\"\nk3,p3\nk4,\"p\"\"4\",z";
        let rows = scan_text(text.as_bytes(), &[1, 0], 3, 1);
        assert_eq!(
            rows,
            vec![
                "10:p1|k1".to_string(),
                "21:p,2|k2".to_string(),
                "43:Width { found: 2 }".to_string(),
                "49:p\"4|k4".to_string(),
            ]
        );
    }

    /// A column wanted twice (a source keyed by its parent column: one row per parent) is
    /// handed over in both places, quoted or not.
    #[test]
    fn a_column_wanted_twice_fills_both_places() {
        let text = "id,v\nk1,x\n\"k,2\",y\nk3,\"z\"\n";
        for threads in [1, 2] {
            let rows = scan_text(text.as_bytes(), &[0, 0, 1], 2, threads);
            assert_eq!(rows, ["5:k1|k1|x", "10:k,2|k,2|y", "18:k3|k3|z"]);
        }
    }

    #[test]
    fn blocks_with_well_formed_quotes_are_split_by_masks_and_the_rest_left_to_csv_core() {
        let split = Split::new(&ScanSpec::new(b',', 3, vec![0, 1]));
        let long = "x".repeat(70);
        for accepted in [
            "a,b,c\n".to_string(),
            "a,\"b,\n\"\"b\",c\r\n\"\",\"\"\"\",\"\"\n".to_string(),
            format!("a,\"{long}\",c\nd,\"{long}\"\"\",\"e\"\r\n"),
            "a,b,\"c\"".to_string(),
        ] {
            assert!(split.simple(accepted.as_bytes()).is_some(), "{accepted:?}");
        }
        for refused in [
            "a,b\"c,d\n",
            "a,\"b\"c,d\n",
            "a,b\rc\n",
            "a,\"b\n",
            "a,\"b\"\rc\n",
        ] {
            assert!(split.simple(refused.as_bytes()).is_none(), "{refused:?}");
        }
        let quoted = format!("k,p,q\n1,\"{long}\",\"x\"\"y\"\n\"2\",\"a\nb\",z\r\n");
        assert_eq!(
            scan_text(quoted.as_bytes(), &[0, 1, 2], 3, 1),
            vec![
                format!("6:1|{long}|x\"y"),
                format!("{}:2|a\nb|z", 6 + long.len() + 12)
            ]
        );
    }

    #[test]
    fn prefix_xor_marks_what_lies_between_quotes() {
        assert_eq!(prefix_xor(0b1001_0010_0010), 0b0111_0001_1110);
        assert_eq!(unescape(b"a\"\"b\"\""), b"a\"b\"");
    }

    #[test]
    fn invalid_utf8_is_a_problem() {
        let mut text = b"a,b\nk1,ok\nk2,".to_vec();
        text.extend_from_slice(&[0xC3, 0x28]);
        text.extend_from_slice(b"\nk3,\"q\xff\"\n");
        let rows = scan_text(&text, &[0, 1], 2, 1);
        assert_eq!(rows, vec!["4:k1|ok", "10:Utf8", "16:Utf8"]);
    }

    #[test]
    fn chunks_agree_with_one_piece_even_when_a_cut_falls_in_quotes() {
        // Big enough for several chunks; every 7th record holds a quoted line break.
        let mut text = String::from("id,parent,note\n");
        for i in 0..400_000 {
            if i % 7 == 0 {
                text.push_str(&format!("k{i},p{},\"a\nb,{i}\"\n", i % 13));
            } else {
                text.push_str(&format!("k{i},p{},plain {i}\n", i % 13));
            }
        }
        let one = scan_text(text.as_bytes(), &[0, 2], 3, 1);
        let many = scan_text(text.as_bytes(), &[0, 2], 3, 4);
        assert_eq!(one.len(), 400_000);
        assert_eq!(one, many);
        // One long quoted cell spanning the middle of the file forces the one-piece rescan.
        let mut text = String::from("id,parent,note\nk0,p,\"");
        text.push_str(&"x\n".repeat(6 << 20));
        text.push_str("\"\nk1,p,y\n");
        let rows = scan_text(text.as_bytes(), &[0], 3, 2);
        assert_eq!(rows.len(), 2);
        assert!(rows[1].ends_with(":k1"));
    }

    #[test]
    fn small_windows_read_what_the_csv_crate_reads() {
        // Records of every shape, some longer than a window, across many windows.
        let mut text = String::from("id,parent,note\n");
        for i in 0..60_000 {
            match i % 1001 {
                0 | 13 | 500 => {
                    text.push_str(&format!("k{i},p,\"a\nb,\"\"{i}\"\"\"\r\n"));
                }
                5 => text.push_str(&format!("k{i},p,\"{}\"\n", "long,\n".repeat(50_000))),
                7 | 300 => text.push('\n'),
                _ => text.push_str(&format!("k{i},p{i},plain\n")),
            }
        }
        let expected: Vec<String> = csv::ReaderBuilder::new()
            .from_reader(text.as_bytes())
            .records()
            .map(|r| {
                let r = r.unwrap();
                format!("{}|{}", &r[2], &r[0])
            })
            .collect();
        for threads in [1, 3] {
            let rows: Vec<String> = scan_text(text.as_bytes(), &[2, 0], 3, threads)
                .into_iter()
                .map(|r| r.split_once(':').unwrap().1.to_string())
                .collect();
            assert_eq!(rows.len(), expected.len());
            assert!(rows == expected, "{threads} threads");
        }
    }

    #[test]
    fn delimiters_are_counted_and_placed_like_a_plain_search() {
        let lines: Vec<Vec<u8>> = vec![
            b"".to_vec(),
            b",".to_vec(),
            b"a,b,c".to_vec(),
            b",,,,,,,,,,,,,,,,,,,".to_vec(),
            "é,ü,\u{80},x\u{ff}y,,z".as_bytes().to_vec(),
            (0..=255u8).collect(),
            b"TX-00000001,LN-000001,REPAYMENT,2206.66,2025-04-12,,".to_vec(),
        ];
        for line in &lines {
            for d in [b',', b';', b'\t', 0x80] {
                let all: Vec<usize> = memchr::memchr_iter(d, line).collect();
                for placed_len in [0, 1, 3, 64] {
                    let mut placed = vec![0; placed_len];
                    assert_eq!(delimiters(line, d, &mut placed), all.len());
                    let n = placed_len.min(all.len());
                    assert_eq!(&placed[..n], &all[..n]);
                }
            }
        }
    }

    #[test]
    fn find_records_picks_rows_by_a_cell() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(b"id,loan,n\ns1,L1,1\ns2,L10,2\ns3,\"L1\",3\ns4,x,L1\n")
            .unwrap();
        let found = find_records(f.path(), b',', 1, &[b"L1".to_vec()]).unwrap();
        assert_eq!(found, vec![10, 27]);
        assert!(find_records(f.path(), b',', 1, &[]).unwrap().is_empty());
    }

    #[test]
    fn record_at_reads_one_whole_record() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(b"a,b\nk1,\"x\ny\"\nk2,z\n").unwrap();
        assert_eq!(record_at(f.path(), 4, b',').unwrap(), b"k1,\"x\ny\"\n");
        assert_eq!(record_at(f.path(), 13, b',').unwrap(), b"k2,z\n");
    }
}
