//! Lexical helpers: splitting a string into text and `{{ … }}` parts, and finding the filter and
//! test names an expression uses. Both skip string literals, so `{{ "}}" }}` and `'a|b'` are
//! handled; everything else (the grammar) is minijinja's job.

/// One piece of a templated string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Piece<'s> {
    /// Literal text, already trimmed by any `{{-` / `-}}` next to it.
    Text(&'s str),
    /// The source of one `{{ … }}` (without the braces and whitespace-control dashes), with
    /// its byte offset in the whole string.
    Expr { source: &'s str, offset: usize },
}

/// A problem found while splitting: a message and the byte offset where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct SplitError {
    pub message: String,
    pub offset: usize,
}

/// Splits `s` into text and expressions. Statements (`{% %}`) and comments (`{# #}`) are
/// refused: a plan value is data, and an expression (`a if c else b`) covers the need.
pub(super) fn split(s: &str) -> Result<Vec<Piece<'_>>, SplitError> {
    let bytes = s.as_bytes();
    let mut pieces = Vec::new();
    let mut text_start = 0;
    let mut trim_next_text = false;
    let mut i = 0;
    while i + 1 < bytes.len() {
        if bytes[i] != b'{' {
            i += 1;
            continue;
        }
        match bytes[i + 1] {
            b'{' => {}
            b'%' | b'#' => {
                return Err(SplitError {
                    message: format!(
                        "`{{{}` is not supported in plan templates: use one `{{{{ expression }}}}` \
                         (e.g. `{{{{ a if cond else b }}}}`)",
                        bytes[i + 1] as char
                    ),
                    offset: i,
                });
            }
            _ => {
                i += 1;
                continue;
            }
        }
        // `{{` at i.
        let mut text = &s[text_start..i];
        if trim_next_text {
            text = text.trim_start();
        }
        let mut start = i + 2;
        if bytes.get(start) == Some(&b'-') {
            text = text.trim_end();
            start += 1;
        }
        if !text.is_empty() {
            pieces.push(Piece::Text(text));
        }
        let end = find_close(bytes, start).ok_or_else(|| SplitError {
            message: "`{{` is not closed by `}}`".to_string(),
            offset: i,
        })?;
        let mut source = &s[start..end];
        trim_next_text = false;
        if let Some(stripped) = source.strip_suffix('-') {
            source = stripped;
            trim_next_text = true;
        }
        pieces.push(Piece::Expr {
            source,
            offset: start,
        });
        i = end + 2;
        text_start = i;
    }
    let mut text = &s[text_start.min(s.len())..];
    if trim_next_text {
        text = text.trim_start();
    }
    if !text.is_empty() {
        pieces.push(Piece::Text(text));
    }
    Ok(pieces)
}

/// The index of the `}}` closing an expression that starts at `from`: the first one outside
/// string literals and outside `{ … }` map literals.
fn find_close(bytes: &[u8], from: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut quote: Option<u8> = None;
    let mut i = from;
    while i < bytes.len() {
        let b = bytes[i];
        if let Some(q) = quote {
            if b == b'\\' {
                i += 1;
            } else if b == q {
                quote = None;
            }
        } else {
            match b {
                b'\'' | b'"' => quote = Some(b),
                b'{' => depth += 1,
                b'}' if depth > 0 => depth -= 1,
                b'}' if bytes.get(i + 1) == Some(&b'}') => return Some(i),
                _ => {}
            }
        }
        i += 1;
    }
    None
}

/// A name used as a filter (`x | name`) or a test (`x is name`, `x is not name`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Use<'s> {
    Filter(&'s str),
    Test(&'s str),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token<'s> {
    Ident(&'s str),
    Punct(u8),
    Other,
}

/// The filters and tests an expression names, in order (names given as strings, as in
/// `map('upper')`, are not found: minijinja reports those when it runs).
pub(super) fn uses(expr: &str) -> Vec<Use<'_>> {
    let tokens = tokens(expr);
    let mut out = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        match tokens[i] {
            Token::Punct(b'|') => {
                if let Some(Token::Ident(name)) = tokens.get(i + 1) {
                    out.push(Use::Filter(name));
                    i += 1;
                }
            }
            // `x.is` is an attribute, not the operator.
            Token::Ident("is") if i > 0 && tokens[i - 1] != Token::Punct(b'.') => {
                let mut j = i + 1;
                if tokens.get(j) == Some(&Token::Ident("not")) {
                    j += 1;
                }
                if let Some(Token::Ident(name)) = tokens.get(j) {
                    out.push(Use::Test(name));
                    i = j;
                }
            }
            _ => {}
        }
        i += 1;
    }
    out
}

fn tokens(expr: &str) -> Vec<Token<'_>> {
    let bytes = expr.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'\'' || b == b'"' {
            i += 1;
            while i < bytes.len() && bytes[i] != b {
                if bytes[i] == b'\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push(Token::Other);
        } else if b.is_ascii_alphabetic() || b == b'_' {
            let start = i;
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                i += 1;
            }
            out.push(Token::Ident(&expr[start..i]));
        } else if b.is_ascii_digit() {
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                i += 1;
            }
            out.push(Token::Other);
        } else if b.is_ascii_whitespace() {
            i += 1;
        } else {
            out.push(if b.is_ascii() {
                Token::Punct(b)
            } else {
                Token::Other
            });
            i += 1;
            // skip the rest of a multi-byte character
            while i < bytes.len() && (bytes[i] & 0xC0) == 0x80 {
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exprs(s: &str) -> Vec<&str> {
        split(s)
            .unwrap()
            .into_iter()
            .filter_map(|p| match p {
                Piece::Expr { source, .. } => Some(source),
                Piece::Text(_) => None,
            })
            .collect()
    }

    #[test]
    fn splits_text_and_expressions() {
        assert_eq!(split("plain").unwrap(), vec![Piece::Text("plain")]);
        assert_eq!(
            split("a {{ x }}b").unwrap(),
            vec![
                Piece::Text("a "),
                Piece::Expr {
                    source: " x ",
                    offset: 4
                },
                Piece::Text("b")
            ]
        );
        assert_eq!(
            exprs("{{ '}}' }}{{ {'a': {'b': 1}} }}"),
            vec![" '}}' ", " {'a': {'b': 1}} "]
        );
        assert_eq!(exprs(r#"{{ "a\"}}" }}"#), vec![r#" "a\"}}" "#]);
        assert_eq!(
            split("stray }} {").unwrap(),
            vec![Piece::Text("stray }} {")]
        );
        assert_eq!(
            split("a  {{- x -}}  b").unwrap(),
            vec![
                Piece::Text("a"),
                Piece::Expr {
                    source: " x ",
                    offset: 6
                },
                Piece::Text("b")
            ]
        );
    }

    #[test]
    fn refuses_statements_and_unclosed() {
        assert!(
            split("{% if x %}y{% endif %}")
                .unwrap_err()
                .message
                .contains("{%")
        );
        assert!(split("{# note #}").is_err());
        assert_eq!(split("ab {{ x").unwrap_err().offset, 3);
    }

    #[test]
    fn finds_filters_and_tests() {
        assert_eq!(
            uses("a | decimal(comma=true) | default('|x') is not none and b is odd"),
            vec![
                Use::Filter("decimal"),
                Use::Filter("default"),
                Use::Test("none"),
                Use::Test("odd")
            ]
        );
        assert_eq!(uses("x.is"), vec![]);
    }
}
