//! The pre-parser: statements sqlparser cannot read, recognized before it runs.
//!
//! `VACUUM [ANALYZE] ...`, `ANALYZE ...` and `CHECKPOINT` are maintenance commands with nothing to parse
//! that matters. `COPY` has options sqlparser rejects (`WITH (freeze on)`) and a data stream that is not
//! SQL at all, so its whole grammar lives here: `COPY table [(columns)] FROM STDIN | TO STDOUT [[WITH]
//! (option [value], ...)]` with PostgreSQL's older unparenthesized options too, and `COPY (query) TO
//! STDOUT`. Everything else goes to sqlparser.

use crate::error::{Error, Result, SqlState};

/// A statement as the pre-parser sees it.
#[derive(Clone, Debug)]
pub enum Parsed {
    /// VACUUM or ANALYZE: accepted, nothing to do (tables are in memory).
    Maintenance(&'static str),
    Checkpoint,
    Copy(CopyStmt),
    /// `ALTER SYSTEM SET name = value` (Some) or `ALTER SYSTEM RESET name | ALL` (None; ALL is `all`).
    AlterSystem {
        name: String,
        value: Option<String>,
    },
    /// Everything else, for sqlparser.
    Sql,
}

/// Where COPY's data comes from or goes to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CopySource {
    Table {
        name: String,
        columns: Vec<String>,
    },
    /// `COPY (query) TO STDOUT`.
    Query(String),
}

/// A parsed COPY statement.
#[derive(Clone, Debug)]
pub struct CopyStmt {
    pub source: CopySource,
    /// FROM STDIN (true) or TO STDOUT.
    pub from: bool,
    pub csv: bool,
    pub header: bool,
    pub delimiter: char,
    pub null: String,
    pub quote: char,
}

fn syntax(near: &str) -> Error {
    Error::new(SqlState::SYNTAX_ERROR, format!("syntax error at or near \"{near}\""))
}

/// Splits text into words, quoted strings, and punctuation.
fn tokens(sql: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let chars: Vec<char> = sql.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '\'' || c == '"' {
            let mut s = String::from(c);
            i += 1;
            loop {
                match chars.get(i) {
                    None => return Err(Error::new(SqlState::SYNTAX_ERROR, "unterminated quoted string")),
                    Some(&q) if q == c && chars.get(i + 1) == Some(&c) => {
                        s.push(c);
                        i += 2;
                    }
                    Some(&q) if q == c => {
                        s.push(c);
                        i += 1;
                        break;
                    }
                    Some(&x) => {
                        s.push(x);
                        i += 1;
                    }
                }
            }
            out.push(s);
        } else if c.is_alphanumeric() || c == '_' || c == '.' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_alphanumeric() || chars[i] == '_' || chars[i] == '.' || chars[i] == '$')
            {
                i += 1;
            }
            out.push(chars[start..i].iter().collect());
        } else {
            out.push(c.to_string());
            i += 1;
        }
    }
    while out.last().is_some_and(|t| t == ";") {
        out.pop();
    }
    Ok(out)
}

fn unquote_ident(t: &str) -> String {
    if t.starts_with('"') && t.len() >= 2 {
        t[1..t.len() - 1].replace("\"\"", "\"")
    } else {
        t.to_lowercase()
    }
}

fn unquote_string(t: &str) -> Result<String> {
    if t.starts_with('\'') && t.len() >= 2 {
        Ok(t[1..t.len() - 1].replace("''", "'"))
    } else {
        Err(syntax(t))
    }
}

fn first_word(sql: &str) -> String {
    sql.trim_start().split(|c: char| !c.is_alphanumeric() && c != '_').next().unwrap_or("").to_lowercase()
}

/// Looks at one statement's text.
pub fn preparse(sql: &str) -> Result<Parsed> {
    match first_word(sql).as_str() {
        "vacuum" => Ok(Parsed::Maintenance("VACUUM")),
        "analyze" | "analyse" => Ok(Parsed::Maintenance("ANALYZE")),
        "checkpoint" => {
            let toks = tokens(sql)?;
            if toks.len() != 1 {
                return Err(syntax(toks.get(1).map_or("", |s| s.as_str())));
            }
            Ok(Parsed::Checkpoint)
        }
        "copy" => parse_copy(sql).map(Parsed::Copy),
        "alter" => {
            let toks = tokens(sql)?;
            if toks.get(1).is_some_and(|t| t.eq_ignore_ascii_case("system")) {
                parse_alter_system(&toks)
            } else {
                Ok(Parsed::Sql)
            }
        }
        _ => Ok(Parsed::Sql),
    }
}

/// `ALTER SYSTEM SET name { = | TO } value [, ...] | DEFAULT` and `ALTER SYSTEM RESET name | ALL`.
fn parse_alter_system(toks: &[String]) -> Result<Parsed> {
    let at = |i: usize| toks.get(i).map_or("", |s| s.as_str());
    let name = |t: &str| if t.starts_with('"') { unquote_ident(t) } else { t.to_ascii_lowercase() };
    match at(2).to_ascii_lowercase().as_str() {
        "reset" if toks.len() == 4 => Ok(Parsed::AlterSystem { name: name(at(3)), value: None }),
        "set" if toks.len() >= 6 && (at(4) == "=" || at(4).eq_ignore_ascii_case("to")) => {
            let values = &toks[5..];
            if values.len() == 1 && values[0].eq_ignore_ascii_case("default") {
                return Ok(Parsed::AlterSystem { name: name(at(3)), value: None });
            }
            let mut parts = Vec::new();
            for (i, v) in values.iter().enumerate() {
                if i % 2 == 1 {
                    if v != "," {
                        return Err(syntax(v));
                    }
                    continue;
                }
                parts.push(if v.starts_with('\'') { unquote_string(v)? } else { v.clone() });
            }
            if values.len().is_multiple_of(2) {
                return Err(Error::new(SqlState::SYNTAX_ERROR, "syntax error at end of input"));
            }
            Ok(Parsed::AlterSystem { name: name(at(3)), value: Some(parts.join(", ")) })
        }
        _ => Err(syntax(toks.get(3).or(toks.get(2)).map_or("SYSTEM", |s| s.as_str()))),
    }
}

fn parse_copy(sql: &str) -> Result<CopyStmt> {
    let body = sql.trim_start()[4..].trim_start();
    let (source, rest) = if body.starts_with('(') {
        // COPY (query) TO: find the matching parenthesis outside quotes.
        let mut depth = 0;
        let mut quote: Option<char> = None;
        let mut end = None;
        for (i, c) in body.char_indices() {
            match quote {
                Some(q) if c == q => quote = None,
                Some(_) => {}
                None if c == '\'' || c == '"' => quote = Some(c),
                None if c == '(' => depth += 1,
                None if c == ')' => {
                    depth -= 1;
                    if depth == 0 {
                        end = Some(i);
                        break;
                    }
                }
                None => {}
            }
        }
        let end = end.ok_or_else(|| syntax("("))?;
        (CopySource::Query(body[1..end].to_string()), tokens(&body[end + 1..])?)
    } else {
        let toks = tokens(body)?;
        let mut it = toks.into_iter().peekable();
        let name = it.next().ok_or_else(|| syntax("COPY"))?;
        let name = name.rsplit('.').next().map(unquote_ident).unwrap_or_default();
        let mut columns = Vec::new();
        if it.peek().is_some_and(|t| t == "(") {
            it.next();
            loop {
                let t = it.next().ok_or_else(|| syntax("("))?;
                if t == ")" {
                    break;
                }
                if t != "," {
                    columns.push(unquote_ident(&t));
                }
            }
        }
        (CopySource::Table { name, columns }, it.collect())
    };
    let mut stmt =
        CopyStmt { source, from: false, csv: false, header: false, delimiter: '\t', null: "\\N".into(), quote: '"' };
    let mut it = rest.into_iter().peekable();
    match it.next().map(|t| t.to_lowercase()).as_deref() {
        Some("from") => stmt.from = true,
        Some("to") => {}
        other => return Err(syntax(other.unwrap_or(""))),
    }
    match it.next().map(|t| t.to_lowercase()).as_deref() {
        Some("stdin") if stmt.from => {}
        Some("stdout") if !stmt.from => {}
        Some(other) => {
            return Err(Error::new(
                SqlState::FEATURE_NOT_SUPPORTED,
                format!("COPY to or from a file (\"{other}\") is not supported"),
            )
            .with_hint("Use COPY ... FROM STDIN or TO STDOUT, or psql's \\copy."))
        }
        None => return Err(syntax("")),
    }
    if matches!(stmt.source, CopySource::Query(_)) && stmt.from {
        return Err(syntax("FROM"));
    }
    let mut delimiter_set = false;
    if it.peek().is_some_and(|t| t.eq_ignore_ascii_case("with")) {
        it.next();
    }
    if it.peek().is_some_and(|t| t == "(") {
        it.next();
        loop {
            let Some(name) = it.next() else { return Err(syntax("(")) };
            if name == ")" {
                break;
            }
            if name == "," {
                continue;
            }
            let mut value = None;
            if it.peek().is_some_and(|t| t != "," && t != ")") {
                value = it.next();
            }
            let flag = |v: &Option<String>| -> Result<bool> {
                match v.as_deref().map(str::to_lowercase).as_deref() {
                    None | Some("on") | Some("true") | Some("1") => Ok(true),
                    Some("off") | Some("false") | Some("0") => Ok(false),
                    Some(x) if x.starts_with('\'') => Ok(matches!(x, "'on'" | "'true'" | "'1'")),
                    Some(x) => {
                        Err(Error::new(SqlState::SYNTAX_ERROR, format!("{name} requires a Boolean value, not \"{x}\"")))
                    }
                }
            };
            match name.to_lowercase().as_str() {
                "format" => match value.as_deref().map(|v| v.trim_matches('\'').to_lowercase()).as_deref() {
                    Some("csv") => stmt.csv = true,
                    Some("text") => stmt.csv = false,
                    Some(f) => {
                        return Err(Error::new(
                            SqlState::FEATURE_NOT_SUPPORTED,
                            format!("COPY format \"{f}\" is not supported"),
                        ))
                    }
                    None => return Err(syntax("format")),
                },
                "header" => stmt.header = flag(&value)?,
                "freeze" => {
                    flag(&value)?;
                }
                "delimiter" => {
                    let d = unquote_string(value.as_deref().unwrap_or(""))?;
                    stmt.delimiter = one_char(&d, "delimiter")?;
                    delimiter_set = true;
                }
                "null" => stmt.null = unquote_string(value.as_deref().unwrap_or(""))?,
                "quote" => stmt.quote = one_char(&unquote_string(value.as_deref().unwrap_or(""))?, "quote")?,
                "encoding" | "escape" | "force_quote" | "force_not_null" | "force_null" => {}
                other => return Err(Error::new(SqlState::SYNTAX_ERROR, format!("option \"{other}\" not recognized"))),
            }
        }
    } else {
        while let Some(t) = it.next() {
            match t.to_lowercase().as_str() {
                "csv" => stmt.csv = true,
                "header" => stmt.header = true,
                "binary" => return Err(Error::new(SqlState::FEATURE_NOT_SUPPORTED, "COPY BINARY is not supported")),
                "freeze" => {}
                "delimiter" | "null" | "quote" => {
                    let mut v = it.next().unwrap_or_default();
                    if v.eq_ignore_ascii_case("as") {
                        v = it.next().unwrap_or_default();
                    }
                    let s = unquote_string(&v)?;
                    match t.to_lowercase().as_str() {
                        "delimiter" => {
                            stmt.delimiter = one_char(&s, "delimiter")?;
                            delimiter_set = true;
                        }
                        "null" => stmt.null = s,
                        _ => stmt.quote = one_char(&s, "quote")?,
                    }
                }
                other => return Err(syntax(other)),
            }
        }
    }
    if it.next().is_some() {
        return Err(syntax(")"));
    }
    if stmt.csv {
        if !delimiter_set {
            stmt.delimiter = ',';
        }
        if stmt.null == "\\N" {
            stmt.null = String::new();
        }
    }
    Ok(stmt)
}

fn one_char(s: &str, what: &str) -> Result<char> {
    let mut c = s.chars();
    match (c.next(), c.next()) {
        (Some(x), None) => Ok(x),
        _ => {
            Err(Error::new(SqlState::FEATURE_NOT_SUPPORTED, format!("COPY {what} must be a single one-byte character")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pgbench_copy() {
        let Ok(Parsed::Copy(c)) = preparse("copy pgbench_accounts from stdin with (freeze on)") else {
            panic!("not a copy")
        };
        assert!(c.from && !c.csv);
        assert_eq!(c.source, CopySource::Table { name: "pgbench_accounts".into(), columns: vec![] });
    }

    #[test]
    fn psql_copy() {
        let Ok(Parsed::Copy(c)) = preparse("COPY  t ( a, b ) TO STDOUT with (format csv, header)") else {
            panic!("not a copy")
        };
        assert!(!c.from && c.csv && c.header && c.delimiter == ',');
        let Ok(Parsed::Copy(c)) = preparse("copy (select 1) to stdout csv header") else { panic!("not a copy") };
        assert_eq!(c.source, CopySource::Query("select 1".into()));
        assert!(matches!(preparse("vacuum analyze pgbench_branches"), Ok(Parsed::Maintenance(_))));
    }
}
