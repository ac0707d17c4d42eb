//! COPY's data formats: PostgreSQL's text format (tab-separated, backslash escapes, `\N` for NULL, an
//! optional `\.` end marker) and CSV (quotes, optional header). Decoding yields fields as text, which the
//! session converts with each column's type; encoding takes values already formatted as text.

use crate::error::{Error, Result, SqlState};
use crate::sql::preparse::CopyStmt;

/// Decodes COPY data into rows of fields (None for NULL).
pub fn decode(stmt: &CopyStmt, data: &[u8]) -> Result<Vec<Vec<Option<String>>>> {
    let text = std::str::from_utf8(data).map_err(|e| {
        Error::new(
            SqlState::CHARACTER_NOT_IN_REPERTOIRE,
            format!(
                "invalid byte sequence for encoding \"UTF8\": 0x{:02x}",
                data.get(e.valid_up_to()).copied().unwrap_or(0)
            ),
        )
    })?;
    if stmt.csv {
        return decode_csv(stmt, text);
    }
    let mut rows = Vec::new();
    for (n, line) in text.split('\n').enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line == "\\." {
            break;
        }
        if line.is_empty() && n + 1 == text.split('\n').count() {
            break;
        }
        let mut fields = Vec::new();
        for raw in line.split(stmt.delimiter) {
            if raw == stmt.null {
                fields.push(None);
            } else {
                fields.push(Some(unescape(raw)));
            }
        }
        rows.push(fields);
    }
    Ok(rows)
}

fn unescape(raw: &str) -> String {
    if !raw.contains('\\') {
        return raw.to_string();
    }
    let mut out = String::with_capacity(raw.len());
    let mut it = raw.chars().peekable();
    while let Some(c) = it.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match it.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('b') => out.push('\u{8}'),
            Some('f') => out.push('\u{c}'),
            Some('v') => out.push('\u{b}'),
            Some(d @ '0'..='7') => {
                let mut v = d.to_digit(8).unwrap_or(0);
                for _ in 0..2 {
                    match it.peek().and_then(|c| c.to_digit(8)) {
                        Some(x) => {
                            v = v * 8 + x;
                            it.next();
                        }
                        None => break,
                    }
                }
                out.push(char::from_u32(v).unwrap_or('?'));
            }
            Some(x) => out.push(x),
            None => {}
        }
    }
    out
}

fn decode_csv(stmt: &CopyStmt, text: &str) -> Result<Vec<Vec<Option<String>>>> {
    let mut rows = Vec::new();
    let mut chars = text.chars().peekable();
    let mut first = true;
    loop {
        if chars.peek().is_none() {
            break;
        }
        let mut fields = Vec::new();
        let mut field = String::new();
        let mut quoted = false;
        let mut in_quotes = false;
        let mut raw_line = String::new();
        loop {
            let Some(c) = chars.next() else {
                if in_quotes {
                    return Err(Error::new(SqlState("22P04"), "unterminated CSV quoted field"));
                }
                break;
            };
            raw_line.push(c);
            if in_quotes {
                if c == stmt.quote {
                    if chars.peek() == Some(&stmt.quote) {
                        chars.next();
                        field.push(c);
                    } else {
                        in_quotes = false;
                    }
                } else {
                    field.push(c);
                }
            } else if c == stmt.quote {
                in_quotes = true;
                quoted = true;
            } else if c == stmt.delimiter {
                fields.push(csv_field(std::mem::take(&mut field), quoted, stmt));
                quoted = false;
            } else if c == '\n' {
                break;
            } else if c != '\r' {
                field.push(c);
            }
        }
        if raw_line.trim_end() == "\\." {
            break;
        }
        fields.push(csv_field(field, quoted, stmt));
        if first && stmt.header {
            first = false;
            continue;
        }
        first = false;
        rows.push(fields);
    }
    Ok(rows)
}

fn csv_field(f: String, quoted: bool, stmt: &CopyStmt) -> Option<String> {
    if !quoted && f == stmt.null {
        None
    } else {
        Some(f)
    }
}

/// Encodes one row for COPY TO.
pub fn encode_row(stmt: &CopyStmt, fields: &[Option<String>], out: &mut Vec<u8>) {
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            let mut b = [0; 4];
            out.extend_from_slice(stmt.delimiter.encode_utf8(&mut b).as_bytes());
        }
        match f {
            None => out.extend_from_slice(stmt.null.as_bytes()),
            Some(s) if stmt.csv => {
                let needs = s.is_empty() && stmt.null.is_empty()
                    || s.contains(stmt.delimiter)
                    || s.contains(stmt.quote)
                    || s.contains('\n')
                    || s.contains('\r');
                if needs {
                    let q = stmt.quote.to_string();
                    out.extend_from_slice(q.as_bytes());
                    out.extend_from_slice(s.replace(&q, &format!("{q}{q}")).as_bytes());
                    out.extend_from_slice(q.as_bytes());
                } else {
                    out.extend_from_slice(s.as_bytes());
                }
            }
            Some(s) => {
                for c in s.chars() {
                    match c {
                        '\\' => out.extend_from_slice(b"\\\\"),
                        '\n' => out.extend_from_slice(b"\\n"),
                        '\r' => out.extend_from_slice(b"\\r"),
                        '\t' => out.extend_from_slice(b"\\t"),
                        c if c == stmt.delimiter => {
                            out.push(b'\\');
                            let mut b = [0; 4];
                            out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
                        }
                        c => {
                            let mut b = [0; 4];
                            out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
                        }
                    }
                }
            }
        }
    }
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::preparse::{preparse, Parsed};

    fn stmt(sql: &str) -> CopyStmt {
        match preparse(sql) {
            Ok(Parsed::Copy(c)) => c,
            _ => panic!("not a copy: {sql}"),
        }
    }

    #[test]
    fn text_rows() {
        let s = stmt("copy t from stdin");
        let rows = decode(&s, b"1\t1\t0\t\n2\t\\N\ta\\tb\t\n\\.\n").unwrap_or_default();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0], vec![Some("1".into()), Some("1".into()), Some("0".into()), Some("".into())]);
        assert_eq!(rows[1][1], None);
        assert_eq!(rows[1][2].as_deref(), Some("a\tb"));
    }

    #[test]
    fn csv_rows() {
        let s = stmt("copy t from stdin with (format csv, header)");
        let rows = decode(&s, b"a,b\n1,\"x,\"\"y\"\"\"\n2,\n").unwrap_or_default();
        assert_eq!(rows, vec![vec![Some("1".into()), Some("x,\"y\"".into())], vec![Some("2".into()), None]]);
        let mut out = Vec::new();
        encode_row(&s, &[Some("x,y".into()), None], &mut out);
        assert_eq!(out, b"\"x,y\",\n");
    }
}
