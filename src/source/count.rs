//! The counting pass: rows per source without parsing cells, at close to `wc -l` speed.

use std::fs::File;
use std::io::{self, Read};
use std::path::PathBuf;

use super::Sources;
use super::group::open_checked;
use super::problem::{Problem, ProblemKind, Problems};

/// Rows per source and units, from [`count`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CountReport {
    /// One entry per source, in definition order (a source whose file or header is unusable
    /// is left out, with a problem saying why).
    pub sources: Vec<SourceCount>,
    /// Units: the rows of the root source.
    pub units: u64,
    /// Missing files and header problems.
    pub problems: Vec<Problem>,
}

/// The size of one source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceCount {
    /// The source.
    pub name: String,
    /// Its file.
    pub file: PathBuf,
    /// Data records (the header and blank lines are not counted; a quoted line break does
    /// not start a record).
    pub rows: u64,
    /// The file's size.
    pub bytes: u64,
}

/// Checks every file's header and counts its records, files in parallel.
///
/// Counting scans bytes for line breaks and quotes only; rows are not checked (a row with the
/// wrong number of cells still counts). It agrees with [`RowReader`](super::RowReader) on well
/// formed files, except that a bare `\r` (old Mac line ends) does not end a record here.
pub fn count(sources: &Sources) -> CountReport {
    let results: Vec<(Option<SourceCount>, Vec<Problem>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..sources.defs.len())
            .map(|i| scope.spawn(move || count_one(sources, i)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("counting thread"))
            .collect()
    });
    let mut problems = Problems::new(usize::MAX);
    let mut counts = Vec::new();
    let mut units = 0;
    for (i, (c, p)) in results.into_iter().enumerate() {
        problems.extend(p);
        if let Some(c) = c {
            if i == sources.root {
                units = c.rows;
            }
            counts.push(c);
        }
    }
    CountReport {
        sources: counts,
        units,
        problems: problems.finish(),
    }
}

fn count_one(sources: &Sources, index: usize) -> (Option<SourceCount>, Vec<Problem>) {
    let def = &sources.defs[index];
    let mut problems = Problems::new(usize::MAX);
    if open_checked(sources, index, &mut problems).is_none() {
        return (None, problems.finish());
    }
    match count_records(&def.file, def.delimiter) {
        Ok((records, bytes)) => {
            let count = SourceCount {
                name: def.name.clone(),
                file: def.file.clone(),
                rows: records.saturating_sub(1),
                bytes,
            };
            (Some(count), problems.finish())
        }
        Err(e) => {
            problems.push(Problem {
                source: def.name.clone(),
                file: Some(def.file.clone()),
                line: None,
                kind: ProblemKind::Unreadable {
                    error: e.to_string(),
                },
            });
            (None, problems.finish())
        }
    }
}

/// Records (header included) and bytes in a file.
pub(crate) fn count_records(path: &std::path::Path, delimiter: u8) -> io::Result<(u64, u64)> {
    let mut file = File::open(path)?;
    let mut buf = vec![0u8; 256 * 1024];
    let mut scanner = Scanner::new(delimiter);
    let mut bytes = 0u64;
    let mut first = true;
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        bytes += n as u64;
        let mut chunk = &buf[..n];
        if first {
            first = false;
            chunk = chunk.strip_prefix(&[0xEF, 0xBB, 0xBF]).unwrap_or(chunk);
        }
        scanner.scan(chunk);
    }
    Ok((scanner.finish(), bytes))
}

/// A quote-aware record counter with csv-core's rules: a quote opens quoting only at the start
/// of a cell, `""` inside quotes is a quote, blank lines are no records.
struct Scanner {
    delimiter: u8,
    in_quotes: bool,
    /// Inside quotes, a `"` ended the previous chunk: the next byte says whether it was `""`.
    pending_quote: bool,
    /// The last byte scanned (for "is this quote at the start of a cell?").
    last: u8,
    /// The current record has something other than `\r`.
    content: bool,
    records: u64,
}

fn non_blank(bytes: &[u8]) -> bool {
    bytes.iter().any(|&b| b != b'\r')
}

impl Scanner {
    fn new(delimiter: u8) -> Self {
        Scanner {
            delimiter,
            in_quotes: false,
            pending_quote: false,
            last: b'\n',
            content: false,
            records: 0,
        }
    }

    fn finish(self) -> u64 {
        self.records + u64::from(self.content)
    }

    fn scan(&mut self, buf: &[u8]) {
        if buf.is_empty() {
            return;
        }
        let mut pos = 0;
        if self.pending_quote {
            self.pending_quote = false;
            if buf[0] == b'"' {
                pos = 1;
            } else {
                self.in_quotes = false;
            }
        }
        if !self.in_quotes && pos == 0 && self.fast(buf) {
            return;
        }
        while pos < buf.len() {
            if self.in_quotes {
                match memchr::memchr(b'"', &buf[pos..]) {
                    None => break,
                    Some(off) => {
                        let i = pos + off;
                        match buf.get(i + 1) {
                            Some(b'"') => pos = i + 2,
                            Some(_) => {
                                self.in_quotes = false;
                                pos = i + 1;
                            }
                            None => {
                                self.pending_quote = true;
                                break;
                            }
                        }
                    }
                }
            } else {
                match memchr::memchr2(b'\n', b'"', &buf[pos..]) {
                    None => {
                        self.content = self.content || non_blank(&buf[pos..]);
                        break;
                    }
                    Some(off) => {
                        let i = pos + off;
                        self.content = self.content || non_blank(&buf[pos..i]);
                        if buf[i] == b'\n' {
                            self.records += u64::from(self.content);
                            self.content = false;
                        } else {
                            self.content = true;
                            let before = if i > 0 { buf[i - 1] } else { self.last };
                            if matches!(before, b'\n' | b'\r') || before == self.delimiter {
                                self.in_quotes = true;
                            }
                        }
                        pos = i + 1;
                    }
                }
            }
        }
        self.last = buf[buf.len() - 1];
    }

    /// A chunk with no quote and no blank line inside: count line breaks with SIMD-friendly
    /// loops. Returns false (having done nothing) when the chunk needs the careful scan.
    fn fast(&mut self, buf: &[u8]) -> bool {
        if memchr::memchr(b'"', buf).is_some()
            || memchr::memmem::find(buf, b"\n\n").is_some()
            || memchr::memmem::find(buf, b"\n\r\n").is_some()
        {
            return false;
        }
        let breaks = count_byte(buf, b'\n');
        if breaks == 0 {
            self.content = self.content || non_blank(buf);
        } else {
            let first = memchr::memchr(b'\n', buf).expect("there is one");
            let last = memchr::memrchr(b'\n', buf).expect("there is one");
            let first_counts = self.content || non_blank(&buf[..first]);
            self.records += u64::from(first_counts) + breaks - 1;
            self.content = non_blank(&buf[last + 1..]);
        }
        self.last = buf[buf.len() - 1];
        true
    }
}

/// Occurrences of `needle`, in blocks the compiler vectorises.
fn count_byte(buf: &[u8], needle: u8) -> u64 {
    let mut total = 0u64;
    for block in buf.chunks(255 * 64) {
        let mut lanes = [0u8; 64];
        let mut it = block.chunks_exact(64);
        for chunk in &mut it {
            for (lane, &b) in lanes.iter_mut().zip(chunk) {
                *lane += u8::from(b == needle);
            }
        }
        total += lanes.iter().map(|&l| u64::from(l)).sum::<u64>();
        total += it.remainder().iter().filter(|&&b| b == needle).count() as u64;
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records_in_chunks(data: &[u8], chunk: usize) -> u64 {
        let mut s = Scanner::new(b',');
        let data = data.strip_prefix(&[0xEF, 0xBB, 0xBF]).unwrap_or(data);
        for c in data.chunks(chunk) {
            s.scan(c);
        }
        s.finish()
    }

    #[test]
    fn counts_like_the_reader() {
        let cases: &[(&[u8], u64)] = &[
            (b"", 0),
            (b"h\n", 1),
            (b"h", 1),
            (b"h\r\n1\r\n2\r\n", 3),
            (b"h\n\n1\n\r\n2", 3),
            (b"h\n\"a\nb\",1\n\"x\"\"\n\",2\n", 3),
            (b"h\nab\"c,d\n\"e\"\"\"\"\n\"\n", 3),
            (b"\xEF\xBB\xBF\"h\nh\"\n1\n", 2),
            (b"h\n\"\"\n", 2),
            (b"h\n\"unterminated\n", 2),
        ];
        for &(data, want) in cases {
            for chunk in [1, 2, 3, 5, 1000] {
                assert_eq!(
                    records_in_chunks(data, chunk),
                    want,
                    "{:?} by {chunk}",
                    String::from_utf8_lossy(data)
                );
            }
        }
    }

    #[test]
    fn count_byte_matches_naive() {
        let data: Vec<u8> = (0..100_000u32)
            .map(|i| if i % 7 == 0 { b'\n' } else { b'x' })
            .collect();
        let naive = data.iter().filter(|&&b| b == b'\n').count() as u64;
        assert_eq!(count_byte(&data, b'\n'), naive);
    }
}
