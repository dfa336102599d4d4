//! Streaming CSV reading: BOM, CRLF/LF, quoting (csv-core), exact start line of every record,
//! UTF-8 checked per record.

use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustc_hash::FxHashMap;

use super::SourceDef;
use super::problem::{Problem, ProblemKind};

/// The read buffer of every open source file.
pub(crate) const READ_BUFFER: usize = 256 * 1024;

/// The column names of a source, from its header row (names are trimmed, a BOM removed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    names: Vec<String>,
    index: FxHashMap<String, usize>,
    duplicates: Vec<String>,
}

impl Header {
    /// A header from column names; when a name repeats, the first position wins.
    pub fn new(names: Vec<String>) -> Self {
        let mut index = FxHashMap::with_capacity_and_hasher(names.len(), Default::default());
        let mut duplicates = Vec::new();
        for (i, n) in names.iter().enumerate() {
            if index.contains_key(n) {
                duplicates.push(n.clone());
            } else {
                index.insert(n.clone(), i);
            }
        }
        Header {
            names,
            index,
            duplicates,
        }
    }

    /// The names, in file order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The position of a column.
    pub fn position(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied()
    }

    /// The number of columns.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether the header has no column.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Names that appear more than once.
    pub fn duplicates(&self) -> &[String] {
        &self.duplicates
    }
}

/// One record of a source file: its cells (as text) and the line where it starts.
///
/// A cell is either present (possibly empty: `a,,b`) or missing (`get` returns `None`). Rows
/// delivered by [`RowReader`] always have exactly as many cells as the header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    line: u64,
    text: Box<str>,
    ends: Box<[u32]>,
}

impl Row {
    /// A row from cells (mainly for tests and callers that build rows by hand).
    pub fn new<S: AsRef<str>>(line: u64, cells: &[S]) -> Self {
        let mut text = String::new();
        let mut ends = Vec::with_capacity(cells.len());
        for c in cells {
            text.push_str(c.as_ref());
            ends.push(text.len() as u32);
        }
        Row {
            line,
            text: text.into(),
            ends: ends.into(),
        }
    }

    pub(crate) fn from_parts(line: u64, text: Box<str>, ends: Box<[u32]>) -> Self {
        Row { line, text, ends }
    }

    pub(crate) fn parts(&self) -> (&str, &[u32]) {
        (&self.text, &self.ends)
    }

    /// The physical line where the record starts (1-based; the header is line 1).
    pub fn line(&self) -> u64 {
        self.line
    }

    /// The number of cells.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether the row has no cell.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The cell at `index`, `None` if the row has no such cell.
    pub fn get(&self, index: usize) -> Option<&str> {
        let end = *self.ends.get(index)? as usize;
        let start = if index == 0 {
            0
        } else {
            self.ends[index - 1] as usize
        };
        Some(&self.text[start..end])
    }

    /// The cells in order.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        (0..self.len()).map(|i| self.get(i).unwrap_or_default())
    }

    /// An estimate of the memory this row takes.
    pub(crate) fn mem_size(&self) -> usize {
        std::mem::size_of::<Row>() + self.text.len() + self.ends.len() * 4
    }
}

/// Reads one source file record by record, without holding it in memory.
///
/// Handles a UTF-8 BOM, LF or CRLF line ends, quoted cells with delimiters, doubled quotes and
/// line breaks, and skips blank lines. Yields `Err` for a record that cannot be a row (wrong
/// number of cells, invalid UTF-8) and goes on; an I/O error is yielded once and ends the
/// stream.
pub struct RowReader {
    source: String,
    path: PathBuf,
    input: BufReader<File>,
    core: csv_core::Reader,
    /// Line breaks consumed outside csv-core (blank lines and the `\n` of a CRLF).
    skipped_lines: u64,
    header: Arc<Header>,
    header_line: u64,
    fields: Vec<u8>,
    ends: Vec<usize>,
    finished: bool,
}

impl RowReader {
    /// Opens the file of `def` and reads its header row.
    // A problem is big (160 bytes) but opening fails at most once per file.
    #[allow(clippy::result_large_err)]
    pub fn open(def: &SourceDef) -> Result<RowReader, Problem> {
        Self::open_path(&def.name, &def.file, def.delimiter)
    }

    #[allow(clippy::result_large_err)]
    pub(crate) fn open_path(
        source: &str,
        path: &Path,
        delimiter: u8,
    ) -> Result<RowReader, Problem> {
        let problem = |line, kind| Problem {
            source: source.to_string(),
            file: Some(path.to_path_buf()),
            line,
            kind,
        };
        let file = File::open(path).map_err(|e| {
            problem(
                None,
                ProblemKind::MissingFile {
                    error: e.to_string(),
                },
            )
        })?;
        if file.metadata().is_ok_and(|m| m.is_dir()) {
            return Err(problem(
                None,
                ProblemKind::MissingFile {
                    error: "it is a directory".to_string(),
                },
            ));
        }
        let mut reader = RowReader {
            source: source.to_string(),
            path: path.to_path_buf(),
            input: BufReader::with_capacity(READ_BUFFER, file),
            core: csv_core::ReaderBuilder::new().delimiter(delimiter).build(),
            skipped_lines: 0,
            header: Arc::new(Header::new(Vec::new())),
            header_line: 1,
            fields: vec![0; 1024],
            ends: vec![0; 64],
            finished: false,
        };
        let unreadable = |e: io::Error| {
            problem(
                None,
                ProblemKind::Unreadable {
                    error: e.to_string(),
                },
            )
        };
        // Byte order marks: skip UTF-8's, refuse UTF-16.
        let head = reader.input.fill_buf().map_err(unreadable)?;
        if head.starts_with(&[0xEF, 0xBB, 0xBF]) {
            reader.input.consume(3);
        } else if head.starts_with(&[0xFF, 0xFE]) || head.starts_with(&[0xFE, 0xFF]) {
            return Err(problem(Some(1), ProblemKind::Utf16));
        }
        let Some((line, len, n)) = reader.read_record().map_err(unreadable)? else {
            return Err(problem(None, ProblemKind::EmptyFile));
        };
        let text = std::str::from_utf8(&reader.fields[..len])
            .ok()
            .filter(|t| cells_are_utf8(t, &reader.ends[..n]))
            .ok_or_else(|| problem(Some(line), ProblemKind::InvalidUtf8 { column: None }))?;
        let mut start = 0;
        let names = reader.ends[..n]
            .iter()
            .map(|&end| {
                let name = text[start..end].trim().to_string();
                start = end;
                name
            })
            .collect();
        reader.header = Arc::new(Header::new(names));
        reader.header_line = line;
        Ok(reader)
    }

    /// The header row.
    pub fn header(&self) -> &Arc<Header> {
        &self.header
    }

    /// The line of the header row (1 unless blank lines precede it).
    pub fn header_line(&self) -> u64 {
        self.header_line
    }

    /// Reads the next record into `fields`/`ends`: `(start line, bytes, cells)`.
    fn read_record(&mut self) -> io::Result<Option<(u64, usize, usize)>> {
        // Skip line breaks between records ourselves, so we know where the record starts.
        loop {
            let buf = self.input.fill_buf()?;
            if buf.is_empty() {
                return Ok(None);
            }
            let skip = buf
                .iter()
                .take_while(|&&b| b == b'\n' || b == b'\r')
                .count();
            self.skipped_lines += buf[..skip].iter().filter(|&&b| b == b'\n').count() as u64;
            let more = skip == buf.len();
            self.input.consume(skip);
            if !more {
                break;
            }
        }
        let line = self.core.line() + self.skipped_lines;
        let (mut out, mut nends) = (0, 0);
        loop {
            let input = self.input.fill_buf()?;
            let (res, nin, nout, nend) =
                self.core
                    .read_record(input, &mut self.fields[out..], &mut self.ends[nends..]);
            self.input.consume(nin);
            out += nout;
            nends += nend;
            match res {
                csv_core::ReadRecordResult::InputEmpty => {}
                csv_core::ReadRecordResult::OutputFull => {
                    let len = self.fields.len();
                    self.fields.resize(len * 2, 0);
                }
                csv_core::ReadRecordResult::OutputEndsFull => {
                    let len = self.ends.len();
                    self.ends.resize(len * 2, 0);
                }
                csv_core::ReadRecordResult::Record => return Ok(Some((line, out, nends))),
                csv_core::ReadRecordResult::End => return Ok(None),
            }
        }
    }

    fn problem(&self, line: Option<u64>, kind: ProblemKind) -> Problem {
        Problem {
            source: self.source.clone(),
            file: Some(self.path.clone()),
            line,
            kind,
        }
    }
}

impl Iterator for RowReader {
    type Item = Result<Row, Problem>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.finished {
            return None;
        }
        let (line, len, n) = match self.read_record() {
            Ok(Some(r)) => r,
            Ok(None) => {
                self.finished = true;
                return None;
            }
            Err(e) => {
                self.finished = true;
                return Some(Err(self.problem(
                    None,
                    ProblemKind::Unreadable {
                        error: e.to_string(),
                    },
                )));
            }
        };
        let bytes = &self.fields[..len];
        let text = match std::str::from_utf8(bytes) {
            Ok(t) if cells_are_utf8(t, &self.ends[..n]) => t,
            Ok(t) => {
                // Valid as a whole, but a cell boundary splits a character: that cell is not.
                let cell = self.ends[..n]
                    .iter()
                    .position(|&end| !t.is_char_boundary(end));
                let column = cell.and_then(|c| self.header.names().get(c).cloned());
                return Some(Err(
                    self.problem(Some(line), ProblemKind::InvalidUtf8 { column })
                ));
            }
            Err(e) => {
                let cell = self.ends[..n].partition_point(|&end| end <= e.valid_up_to());
                let column = self.header.names().get(cell).cloned();
                return Some(Err(
                    self.problem(Some(line), ProblemKind::InvalidUtf8 { column })
                ));
            }
        };
        if n != self.header.len() {
            let kind = ProblemKind::RowWidth {
                expected: self.header.len(),
                found: n,
            };
            return Some(Err(self.problem(Some(line), kind)));
        }
        let ends: Box<[u32]> = self.ends[..n].iter().map(|&e| e as u32).collect();
        Some(Ok(Row::from_parts(line, text.into(), ends)))
    }
}

/// Whether every cell of a record is valid UTF-8 on its own: the record's text is, and no cell
/// boundary falls inside a character (`\xC2,\x80` is valid joined, not cell by cell).
fn cells_are_utf8(text: &str, ends: &[usize]) -> bool {
    ends.iter().all(|&end| text.is_char_boundary(end))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(bytes: &[u8], delimiter: u8) -> (Vec<String>, Vec<Result<Row, Problem>>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.csv");
        std::fs::write(&path, bytes).unwrap();
        let def = SourceDef::new("t", &path, "id").with_delimiter(delimiter);
        let r = RowReader::open(&def).unwrap();
        let header = r.header().names().to_vec();
        (header, r.collect())
    }

    fn cells(row: &Row) -> Vec<&str> {
        row.iter().collect()
    }

    #[test]
    fn bom_crlf_and_lines() {
        let (h, rows) = read(b"\xEF\xBB\xBFid,name\r\n1,a\r\n\r\n2,b\r\n", b',');
        assert_eq!(h, ["id", "name"]);
        let rows: Vec<Row> = rows.into_iter().map(Result::unwrap).collect();
        assert_eq!(rows.len(), 2);
        assert_eq!((rows[0].line(), cells(&rows[0])), (2, vec!["1", "a"]));
        assert_eq!((rows[1].line(), cells(&rows[1])), (4, vec!["2", "b"]));
    }

    #[test]
    fn quotes_newlines_keep_line_numbers() {
        let data = b"id,note\n1,\"a, b\"\n2,\"say \"\"hi\"\"\"\n3,\"two\r\nlines\nthree\"\n4,x";
        let (_, rows) = read(data, b',');
        let rows: Vec<Row> = rows.into_iter().map(Result::unwrap).collect();
        let got: Vec<(u64, Vec<&str>)> = rows.iter().map(|r| (r.line(), cells(r))).collect();
        assert_eq!(
            got,
            vec![
                (2, vec!["1", "a, b"]),
                (3, vec!["2", "say \"hi\""]),
                (4, vec!["3", "two\r\nlines\nthree"]),
                (7, vec!["4", "x"]),
            ]
        );
    }

    #[test]
    fn empty_versus_missing_cells() {
        let (_, rows) = read(b"id,a,b\n1,,\n2,x\n3,x,y,z\n4,\"\",y\n", b',');
        let r0 = rows[0].as_ref().unwrap();
        assert_eq!(
            (r0.get(1), r0.get(2), r0.get(3)),
            (Some(""), Some(""), None)
        );
        match &rows[1] {
            Err(Problem {
                line: Some(3),
                kind:
                    ProblemKind::RowWidth {
                        expected: 3,
                        found: 2,
                    },
                ..
            }) => {}
            other => panic!("{other:?}"),
        }
        let long = rows[2].as_ref().unwrap_err();
        assert_eq!(long.line, Some(4));
        assert!(
            long.to_string()
                .ends_with("t: long row: 4 cells, the header has 3"),
            "{long}"
        );
        assert_eq!(rows[3].as_ref().unwrap().get(1), Some(""));
    }

    #[test]
    fn other_delimiters() {
        let (h, rows) = read(b"id;amount\n1;\"1;5\"\n", b';');
        assert_eq!(h, ["id", "amount"]);
        assert_eq!(cells(rows[0].as_ref().unwrap()), ["1", "1;5"]);
        let (h, rows) = read(b"id\tname\n1\tJos\xC3\xA9 Li\n", b'\t');
        assert_eq!(h, ["id", "name"]);
        assert_eq!(cells(rows[0].as_ref().unwrap()), ["1", "José Li"]);
        let (_, rows) = read(b"id|n\n1|a,b\n", b'|');
        assert_eq!(cells(rows[0].as_ref().unwrap()), ["1", "a,b"]);
    }

    #[test]
    fn invalid_utf8_is_located() {
        let (_, rows) = read(b"id,name\n1,ok\n2,caf\xE9\n3,fine\n", b',');
        assert!(rows[0].is_ok() && rows[2].is_ok());
        let p = rows[1].as_ref().unwrap_err();
        assert_eq!(p.line, Some(3));
        assert_eq!(
            p.kind,
            ProblemKind::InvalidUtf8 {
                column: Some("name".into())
            }
        );
    }

    #[test]
    fn empty_missing_and_utf16_files() {
        let dir = tempfile::tempdir().unwrap();
        let open = |name: &str, bytes: Option<&[u8]>| {
            let path = dir.path().join(name);
            if let Some(b) = bytes {
                std::fs::write(&path, b).unwrap();
            }
            RowReader::open(&SourceDef::new("t", &path, "id"))
                .err()
                .map(|p| p.kind.code())
        };
        assert_eq!(open("none.csv", None), Some("missing_file"));
        assert_eq!(open("empty.csv", Some(b"\n\n")), Some("empty_file"));
        assert_eq!(open("u16.csv", Some(b"\xFF\xFEi\0d\0")), Some("utf16"));
        assert_eq!(open("header.csv", Some(b"id , name\n")), None);
    }
}
