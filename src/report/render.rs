//! How every report is written, in one place: report.md, `plan estimate` and verify's evidence
//! pack all use these. One HTML escape ([`escape`]), one number format with thousands separators
//! ([`thousands`]) and one for shares ([`percent`]), one Markdown table writer ([`Table`]) that
//! escapes every cell, and the one set of formats a rendered report comes in ([`Format`]).
//!
//! It depends on nothing else in the crate, so any module that writes a report can use it.

use std::fmt::{Display, Write as _};

/// The formats of a rendered report: `plan estimate --format` and `verify --format` take the
/// same set. (`plan validate --format` is not one of these: it prints a problem list as text or
/// JSON, with no Markdown or HTML of its own.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Md,
    Json,
    Html,
}

impl Format {
    /// Every format, in the order the command line lists them.
    pub const ALL: [Format; 3] = [Format::Md, Format::Json, Format::Html];

    /// Its name on the command line, which is also its file extension: `md`, `json`, `html`.
    pub fn name(self) -> &'static str {
        match self {
            Format::Md => "md",
            Format::Json => "json",
            Format::Html => "html",
        }
    }
}

/// `text` as HTML text or attribute value: `&`, `<`, `>`, `"` and `'` escaped.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A number with thousands separators: `6509` → `6,509`, `-12345` → `-12,345`,
/// `1234567.50` → `1,234,567.50`. Takes any integer or decimal (whatever prints as
/// `[-]digits[.digits]`); only the whole part is grouped, and other text comes back as it is.
pub fn thousands(n: impl Display) -> String {
    let text = n.to_string();
    let (sign, rest) = match text.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", text.as_str()),
    };
    let whole = rest.bytes().take_while(u8::is_ascii_digit).count();
    let (digits, tail) = rest.split_at(whole);
    let mut out = String::with_capacity(text.len() + whole / 3);
    out.push_str(sign);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (whole - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out.push_str(tail);
    out
}

/// `7.5%` of a fraction (0.075).
pub fn percent(fraction: f64) -> String {
    format!("{:.1}%", fraction * 100.0)
}

/// How a column of a Markdown table is aligned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    Left,
    Right,
}

/// A Markdown table written into a `String`: the header at [`Table::new`], then a row at a
/// time. Every cell is escaped (`|` as `\|`, a line break as a space), so no value can break
/// the table; an empty cell is written `| |`.
pub struct Table<'a> {
    out: &'a mut String,
    columns: usize,
}

impl<'a> Table<'a> {
    /// Writes the header row (names escaped like any cell) and the alignment row.
    pub fn new(out: &'a mut String, columns: &[(&str, Align)]) -> Self {
        let mut table = Table {
            out,
            columns: columns.len(),
        };
        let names: Vec<&str> = columns.iter().map(|(name, _)| *name).collect();
        table.row(&names);
        for (_, align) in columns {
            table.out.push_str(match align {
                Align::Left => "|---",
                Align::Right => "|---:",
            });
        }
        table.out.push_str("|\n");
        table
    }

    /// Writes one row; it has as many cells as the table has columns.
    pub fn row(&mut self, cells: &[&str]) {
        debug_assert_eq!(cells.len(), self.columns, "a row of {cells:?}");
        for text in cells {
            self.out.push_str("| ");
            if !text.is_empty() {
                let _ = write!(self.out, "{} ", cell(text));
            }
        }
        self.out.push_str("|\n");
    }
}

/// `text` made safe for a Markdown table cell or any one-line element (a heading, a list item):
/// `|` escaped, a line break made a space. [`Table`] does it to every cell.
pub fn cell(text: &str) -> String {
    text.replace('|', r"\|").replace(['\n', '\r'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_is_escaped() {
        assert_eq!(
            escape(r#"<a href="x">Tom & Jerry's</a>"#),
            "&lt;a href=&quot;x&quot;&gt;Tom &amp; Jerry&#39;s&lt;/a&gt;"
        );
        assert_eq!(
            escape("&amp;"),
            "&amp;amp;",
            "escaped once per call, not undone"
        );
        assert_eq!(escape("plain text, é"), "plain text, é");
    }

    #[test]
    fn numbers_get_thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(6509u64), "6,509");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(thousands(-12_345i64), "-12,345");
        assert_eq!(thousands(-999), "-999");
        assert_eq!(thousands(i64::MIN), "-9,223,372,036,854,775,808");
        assert_eq!(thousands(u64::MAX), "18,446,744,073,709,551,615");
        let amount: rust_decimal::Decimal = "-1234567.50".parse().unwrap();
        assert_eq!(thousands(amount), "-1,234,567.50");
        assert_eq!(thousands(0.25), "0.25");
        assert_eq!(thousands(12345.5), "12,345.5");
        assert_eq!(thousands("n/a"), "n/a");
        assert_eq!(percent(0.075), "7.5%");
        assert_eq!(percent(0.0), "0.0%");
    }

    #[test]
    fn tables_escape_their_cells() {
        let mut out = String::new();
        let mut table = Table::new(&mut out, &[("name", Align::Left), ("n", Align::Right)]);
        table.row(&["a | b", "1"]);
        table.row(&["two\nlines\r\n", ""]);
        table.row(&["", "`x || y`"]);
        assert_eq!(
            out,
            "| name | n |\n|---|---:|\n| a \\| b | 1 |\n| two lines   | |\n| | `x \\|\\| y` |\n"
        );
        let mut out = String::new();
        Table::new(&mut out, &[("", Align::Left), ("", Align::Left)]).row(&["State", "ok"]);
        assert_eq!(out, "| | |\n|---|---|\n| State | ok |\n");
    }

    #[test]
    fn formats_are_named_as_on_the_command_line() {
        let names: Vec<&str> = Format::ALL.iter().map(|f| f.name()).collect();
        assert_eq!(names, ["md", "json", "html"]);
    }
}
