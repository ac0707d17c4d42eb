//! Statement shapes: a session's cache of parsed statements (simple Query and Parse), keyed by their text
//! with the literals taken out.
//!
//! Clients on the simple protocol (psql, `pgbench -M simple`, most ORMs' unprepared calls) send the same
//! few statements over and over with different constants in them. Parsing is a sixth of the CPU a point
//! SELECT costs, so a session remembers each statement it parsed under its *shape*, the text with every
//! literal replaced by a marker of its kind:
//!
//! ```text
//!   SELECT abalance FROM pgbench_accounts WHERE aid = 41870;
//!   SELECT abalance FROM pgbench_accounts WHERE aid = ␀i;            ── shape (key)
//!                                                      └─ literals: ["41870"]
//! ```
//!
//! A statement of a known shape is not parsed again: the cached syntax tree is cloned and its literals
//! replaced by the new ones, which gives exactly the tree sqlparser would have built, because the parser
//! never looks inside a number or a string to decide what to build. That rests on two precautions:
//!
//! - The scanner here finds only literals whose extent it is sure of, as sqlparser's tokenizer reads them:
//!   plain integers (`42`), plain decimals (`4.2`), and standard strings (`'it''s'`). Whatever it is less
//!   sure of (a backslash, an `E'...'` or dollar-quoted string, a block comment, `1e5`, `.5`, a NUL) makes
//!   the whole statement uncacheable; it is parsed every time, as before.
//! - The first time a shape is seen, its tree must account for every literal the scanner found: each one a
//!   value node at the very line and column the scanner saw it, with the same text. A literal the parser
//!   kept somewhere else (a type modifier such as `varchar(10)` is a plain integer in the tree) fails the
//!   check, and the shape is remembered as uncacheable.
//!
//! The cache is per session (no lock), bounded, and forgets everything when full.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::rc::Rc;

use sqlparser::ast::{self, Value, ValueWithSpan, Visit, VisitMut, Visitor, VisitorMut};

use crate::sql::session::PlanSlot;

/// How many shapes a session remembers before starting over.
const MAX_SHAPES: usize = 256;

/// Statements longer than this are parsed every time (a long statement is rarely repeated).
const MAX_SHAPE_BYTES: usize = 4096;

/// The kinds of literal a shape abstracts over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// Digits only.
    Integer,
    /// Digits, a point, digits.
    Decimal,
    /// A standard single-quoted string.
    String,
}

/// A literal the scanner found.
#[derive(Debug, PartialEq, Eq)]
struct Literal<'a> {
    kind: Kind,
    /// The literal's text as written (a string with its quotes and doubled quotes).
    text: &'a str,
    /// Where it starts, as sqlparser counts: 1-based line and column (in characters).
    line: u64,
    column: u64,
}

impl Literal<'_> {
    /// The value node sqlparser makes of this literal.
    fn value(&self) -> Value {
        match self.kind {
            Kind::Integer | Kind::Decimal => Value::Number(self.text.to_string(), false),
            Kind::String => Value::SingleQuotedString(self.text[1..self.text.len() - 1].replace("''", "'")),
        }
    }
}

/// A known shape: the tree of the first statement seen of it, where its literals are in that tree, and
/// the plans a session made for the shape (see [`crate::sql::session`]: a statement whose literals only
/// ever become values is planned once per shape, its literals standing for parameters).
pub struct Template {
    pub tree: ast::Statement,
    /// Where each literal of `tree` starts (line, column), in source order.
    pub spans: Vec<(u64, u64)>,
    pub plans: PlanSlot,
}

/// A statement of a known shape: the shape's template and this statement's literals, in source order.
#[derive(Clone)]
pub struct Shaped {
    pub template: Rc<Template>,
    pub literals: Vec<Value>,
}

impl std::fmt::Debug for Shaped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.tree())
    }
}

impl Shaped {
    /// The statement's tree: the template's with this statement's literals put in.
    pub fn tree(&self) -> ast::Statement {
        substitute(self.template.tree.clone(), &self.literals)
    }
}

/// What parsing through the cache gives.
pub enum Parsed {
    /// Trees from the parser (a text that cannot be cached: several statements, an unsure literal).
    Trees(Vec<ast::Statement>),
    /// One statement of a known shape.
    Shaped(Shaped),
}

/// A session's cache of statement shapes.
#[derive(Default)]
pub struct ShapeCache {
    /// Shape → its template, or None if the shape cannot be cached.
    shapes: HashMap<String, Option<Rc<Template>>>,
}

impl ShapeCache {
    /// Parses one statement's text, from the cache when its shape is known. `parse` is the real parser;
    /// it runs on a cache miss and whenever the text cannot be cached.
    pub fn parse<E>(
        &mut self,
        text: &str,
        parse: impl FnOnce(&str) -> Result<Vec<ast::Statement>, E>,
    ) -> Result<Vec<ast::Statement>, E> {
        Ok(match self.parse_shaped(text, parse)? {
            Parsed::Trees(trees) => trees,
            Parsed::Shaped(s) => vec![s.tree()],
        })
    }

    /// As [`parse`](Self::parse), but a statement of a known (or newly learnt) shape comes back as its
    /// template and literals, its tree not yet made.
    pub fn parse_shaped<E>(
        &mut self,
        text: &str,
        parse: impl FnOnce(&str) -> Result<Vec<ast::Statement>, E>,
    ) -> Result<Parsed, E> {
        let Some((key, literals)) = scan(text) else { return parse(text).map(Parsed::Trees) };
        if let Some(cached) = self.shapes.get(&key) {
            return match cached {
                Some(template) => Ok(Parsed::Shaped(Shaped {
                    template: template.clone(),
                    literals: literals.iter().map(Literal::value).collect(),
                })),
                None => parse(text).map(Parsed::Trees),
            };
        }
        let mut stmts = parse(text)?;
        let template = match stmts.as_slice() {
            [only] if accounts_for(only, &literals) => Some(Rc::new(Template {
                tree: only.clone(),
                spans: literals.iter().map(|l| (l.line, l.column)).collect(),
                plans: PlanSlot::default(),
            })),
            _ => None,
        };
        if self.shapes.len() >= MAX_SHAPES {
            self.shapes.clear();
        }
        self.shapes.insert(key, template.clone());
        Ok(match template {
            Some(template) => {
                stmts.clear();
                Parsed::Shaped(Shaped { template, literals: literals.iter().map(Literal::value).collect() })
            }
            None => Parsed::Trees(stmts),
        })
    }
}

/// Whether a character continues a word (an identifier or keyword) in sqlparser's PostgreSQL dialect.
fn word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '$'
}

/// Splits a statement into its shape and its literals, or None if it is not certain where every literal
/// begins and ends.
fn scan(text: &str) -> Option<(String, Vec<Literal<'_>>)> {
    if text.len() > MAX_SHAPE_BYTES || text.contains(['\0', '\\']) || text.contains("/*") {
        return None;
    }
    let mut key = String::with_capacity(text.len());
    let mut literals = Vec::new();
    let mut chars = text.char_indices().peekable();
    let (mut line, mut column) = (1u64, 1u64);
    // Advances over one character, keeping sqlparser's line and column.
    let step = |c: char, line: &mut u64, column: &mut u64| {
        if c == '\n' {
            *line += 1;
            *column = 1;
        } else {
            *column += 1;
        }
    };
    let mut previous: Option<char> = None;
    while let Some((i, c)) = chars.next() {
        let (start_line, start_column) = (line, column);
        step(c, &mut line, &mut column);
        match c {
            '\'' => {
                // A prefixed string (E'', B'', X'', N'', U&'') is another kind of literal.
                if previous.is_some_and(|p| word_char(p) || p == '&' || p == '\'') {
                    return None;
                }
                let mut end = None;
                while let Some((j, d)) = chars.next() {
                    step(d, &mut line, &mut column);
                    if d == '\'' {
                        if chars.peek().is_some_and(|&(_, e)| e == '\'') {
                            chars.next();
                            column += 1;
                            continue;
                        }
                        end = Some(j);
                        break;
                    }
                }
                let end = end?;
                // Strings separated by a newline are one string in SQL; leave that to the parser.
                if text[end + 1..].trim_start().starts_with('\'') {
                    return None;
                }
                literals.push(Literal {
                    kind: Kind::String,
                    text: &text[i..=end],
                    line: start_line,
                    column: start_column,
                });
                key.push_str("\0s");
                previous = Some('\'');
                continue;
            }
            '"' => {
                key.push(c);
                let mut closed = false;
                for (_, d) in chars.by_ref() {
                    step(d, &mut line, &mut column);
                    key.push(d);
                    if d == '"' {
                        closed = true;
                        break;
                    }
                }
                if !closed {
                    return None;
                }
                // A doubled quote inside reopens at once, which the next round handles the same way.
            }
            '-' if chars.peek().is_some_and(|&(_, d)| d == '-') => {
                key.push(c);
                for (_, d) in chars.by_ref() {
                    step(d, &mut line, &mut column);
                    key.push(d);
                    if d == '\n' {
                        break;
                    }
                }
                previous = Some('\n');
                continue;
            }
            '$' if !previous.is_some_and(word_char) => {
                // `$1` is a parameter; anything else is a dollar quote.
                if !chars.peek().is_some_and(|&(_, d)| d.is_ascii_digit()) {
                    return None;
                }
                key.push(c);
            }
            '.' if chars.peek().is_some_and(|&(_, d)| d.is_ascii_digit()) && !previous.is_some_and(word_char) => {
                return None;
            }
            c if c.is_ascii_digit() && !previous.is_some_and(|p| word_char(p) || p == '.') => {
                let mut end = i + 1;
                let mut kind = Kind::Integer;
                loop {
                    match chars.peek().copied() {
                        Some((j, d)) if d.is_ascii_digit() => {
                            chars.next();
                            column += 1;
                            end = j + 1;
                        }
                        Some((j, '.')) if kind == Kind::Integer => {
                            let after = text[j + 1..].chars().next();
                            if !after.is_some_and(|d| d.is_ascii_digit()) {
                                return None;
                            }
                            chars.next();
                            column += 1;
                            end = j + 1;
                            kind = Kind::Decimal;
                        }
                        _ => break,
                    }
                }
                // `1e5`, `1_000`, `1.2.3`, `5abc`: not a plain number.
                if chars.peek().is_some_and(|&(_, d)| word_char(d) || d == '.' || d == '\'') {
                    return None;
                }
                literals.push(Literal { kind, text: &text[i..end], line: start_line, column: start_column });
                key.push_str(if kind == Kind::Integer { "\0i" } else { "\0d" });
                previous = Some('0');
                continue;
            }
            _ => key.push(c),
        }
        previous = Some(c);
    }
    Some((key, literals))
}

/// The statement with every literal the scanner finds spelled differently but of the same kind, or None
/// if it cannot be cached. For differential testing: through a cache that has seen `text`, the respelled
/// statement must parse to the tree the parser builds from it directly.
pub fn respell(text: &str) -> Option<String> {
    respell_with(text, |kind, n| match (kind, n % 2) {
        (Kind::Integer, 0) => "7",
        (Kind::Integer, _) => "1234567890123",
        (Kind::Decimal, 0) => "0.5",
        (Kind::Decimal, _) => "98765.4321",
        (Kind::String, 0) => "''",
        (Kind::String, _) => "'it''s a\nlonger one é'",
    })
}

/// The text with other literals of the same types (small integers, decimals, strings): a statement that
/// can share a shape's plan with the original (for differential tests of [`crate::sql::session`]'s shape
/// plans).
pub fn respell_alike(text: &str) -> Option<String> {
    respell_with(text, |kind, n| match (kind, n % 2) {
        (Kind::Integer, 0) => "3",
        (Kind::Integer, _) => "0",
        (Kind::Decimal, _) => "2.25",
        (Kind::String, 0) => "'b'",
        (Kind::String, _) => "'2021-06-30'",
    })
}

fn respell_with(text: &str, pick: impl Fn(Kind, usize) -> &'static str) -> Option<String> {
    let (key, literals) = scan(text)?;
    let mut out = String::with_capacity(text.len() + 8 * literals.len());
    let mut lits = literals.iter().enumerate();
    let mut rest = key.as_str();
    while let Some(i) = rest.find('\0') {
        out.push_str(&rest[..i]);
        let (n, lit) = lits.next()?;
        out.push_str(pick(lit.kind, n));
        rest = &rest[i + 2..];
    }
    out.push_str(rest);
    Some(out)
}

/// A tree's debug form without its spans, for differential testing: a tree reused from the cache keeps the
/// spans of the text it was first parsed from (nothing reads them); everything else must be identical.
pub fn without_spans(stmts: Vec<ast::Statement>) -> String {
    let s = format!("{stmts:?}");
    let mut out = String::new();
    for part in s.split("span: Span(") {
        out.push_str(part.split_once("))").map_or(part, |x| x.1));
    }
    out
}

/// Collects the number and string value nodes of a tree, in visiting order, with where each starts.
struct Collect(Vec<(Value, u64, u64)>);

impl Visitor for Collect {
    type Break = ();

    fn pre_visit_value(&mut self, v: &ValueWithSpan) -> ControlFlow<()> {
        if matches!(v.value, Value::Number(..) | Value::SingleQuotedString(_)) {
            self.0.push((v.value.clone(), v.span.start.line, v.span.start.column));
        }
        ControlFlow::Continue(())
    }
}

/// Whether the tree's number and string nodes are exactly the scanned literals, in source order.
fn accounts_for(stmt: &ast::Statement, literals: &[Literal]) -> bool {
    let mut found = Collect(Vec::with_capacity(literals.len()));
    let _ = Visit::visit(stmt, &mut found);
    found.0.len() == literals.len()
        && found
            .0
            .iter()
            .zip(literals)
            .all(|((value, line, column), lit)| *line == lit.line && *column == lit.column && *value == lit.value())
}

/// Replaces the number and string nodes of a tree, in visiting order, by the given literals.
struct Substitute<'a>(std::slice::Iter<'a, Value>);

impl VisitorMut for Substitute<'_> {
    type Break = ();

    fn pre_visit_value(&mut self, v: &mut ValueWithSpan) -> ControlFlow<()> {
        if matches!(v.value, Value::Number(..) | Value::SingleQuotedString(_)) {
            if let Some(lit) = self.0.next() {
                v.value = lit.clone();
            }
        }
        ControlFlow::Continue(())
    }
}

fn substitute(mut stmt: ast::Statement, literals: &[Value]) -> ast::Statement {
    let _ = VisitMut::visit(&mut stmt, &mut Substitute(literals.iter()));
    stmt
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlparser::dialect::PostgreSqlDialect;
    use sqlparser::parser::{Parser, ParserError};

    fn parser(text: &str) -> Result<Vec<ast::Statement>, ParserError> {
        Parser::parse_sql(&PostgreSqlDialect {}, text)
    }

    /// Parses through the cache, and checks the tree is the one the parser builds from the text itself;
    /// then the same for the text respelled.
    fn check(cache: &mut ShapeCache, text: &str) {
        for text in std::iter::once(text.to_string()).chain(respell(text)) {
            let cached = cache.parse(&text, parser).map(without_spans);
            let direct = parser(&text).map(without_spans);
            assert_eq!(cached.ok(), direct.ok(), "{text}");
        }
    }

    #[test]
    fn the_shape_takes_out_plain_literals() {
        let (key, lits) = scan("SELECT a FROM t WHERE b = 12 AND c = 'it''s' AND d = 3.50 -- 7\n").unwrap_or_default();
        assert_eq!(key, "SELECT a FROM t WHERE b = \0i AND c = \0s AND d = \0d -- 7\n");
        let respelled = respell("SELECT a FROM t WHERE b = 12 AND c = 'x' AND d = 3.50 AND e = '' AND f = 12");
        assert_eq!(
            respelled.as_deref(),
            Some("SELECT a FROM t WHERE b = 7 AND c = 'it''s a\nlonger one é' AND d = 0.5 AND e = 'it''s a\nlonger one é' AND f = 7")
        );
        let texts: Vec<&str> = lits.iter().map(|l| l.text).collect();
        assert_eq!(texts, ["12", "'it''s'", "3.50"]);
        assert_eq!((lits[1].line, lits[1].column), (1, 38));
        // Digits inside words and parameters stay in the shape.
        let (key, lits) = scan("SELECT t1.c2 FROM t1 WHERE x = $1").unwrap_or_default();
        assert_eq!((key.as_str(), lits.len()), ("SELECT t1.c2 FROM t1 WHERE x = $1", 0));
    }

    #[test]
    fn what_the_scanner_is_unsure_of_is_not_cached() {
        for text in [
            "SELECT E'a'",
            "SELECT 'a\\'",
            "SELECT $$x$$",
            "SELECT 1e5",
            "SELECT .5",
            "SELECT 1_000",
            "SELECT 5abc",
            "SELECT 'a' \n 'b'",
            "SELECT /* 1 */ 2",
            "SELECT 'open",
            "SELECT \"open",
        ] {
            assert!(scan(text).is_none(), "{text}");
        }
    }

    #[test]
    fn a_cached_shape_builds_the_tree_the_parser_would() {
        let mut cache = ShapeCache::default();
        let texts = [
            "SELECT abalance FROM pgbench_accounts WHERE aid = 1;",
            "SELECT abalance FROM pgbench_accounts WHERE aid = 987654321;",
            "UPDATE t SET v = v + -5, s = 'x' WHERE k = 3",
            "UPDATE t SET v = v + -12345, s = 'it''s\nlong' WHERE k = 99",
            "INSERT INTO h VALUES (1, 2.5, 'a', CURRENT_TIMESTAMP)",
            "INSERT INTO h VALUES (10, 20.75, '', CURRENT_TIMESTAMP)",
            "SELECT a FROM t ORDER BY 1 LIMIT 10",
            "SELECT a FROM t ORDER BY 2 LIMIT 20",
            "SELECT 'é' || \"Col\"\"x\" FROM t WHERE z = 'ü'",
            "SELECT 'ñ' || \"Col\"\"x\" FROM t WHERE z = 'abc'",
            "SELECT DATE '2020-01-01' + 1",
            "SELECT DATE '1999-12-31' + 300",
            "SELECT 99999999999999999999999999999999999999999",
            "SELECT 1",
        ];
        for text in texts {
            check(&mut cache, text);
        }
        // The second of each pair came from the cache.
        assert!(cache.shapes.values().filter(|t| t.is_some()).count() >= 6);
    }

    #[test]
    fn literals_the_tree_keeps_elsewhere_make_the_shape_uncacheable() {
        let mut cache = ShapeCache::default();
        for text in ["CREATE TABLE t (a varchar(10))", "CREATE TABLE t (a varchar(20))", "SET x = 5", "SET x = 6"] {
            check(&mut cache, text);
        }
        let key = scan("CREATE TABLE t (a varchar(10))").map(|x| x.0).unwrap_or_default();
        assert!(matches!(cache.shapes.get(&key), Some(None)));
    }
}
