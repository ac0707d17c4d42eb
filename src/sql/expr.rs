//! Bound expressions and their evaluation.
//!
//! The planner turns sqlparser's expressions into [`Expr`]: names are resolved to positions in the input
//! row (or in an enclosing query's row, for correlated subqueries), parameters to their index, functions
//! to their name with checked arity. Evaluation is a plain recursive walk over one row, with SQL's
//! three-valued logic: NULL is `Value::Null`, and AND/OR follow the truth tables rather than
//! short-circuiting on NULL.

use std::cmp::Ordering;
use std::sync::Arc;

use crate::error::{Error, Result, SqlState};
use crate::sql::execute::{self, Env};
use crate::sql::functions;
use crate::sql::interval;
use crate::sql::plan::Plan;
use crate::sql::types::{self, round_decimal};
use crate::storage::value::{DataType, Decimal, Value, USECS_PER_DAY};

/// A binary operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Concat,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    And,
    Or,
}

/// A bound expression.
#[derive(Clone, Debug)]
pub enum Expr {
    Const(Value),
    /// A field of the input row.
    Column(usize),
    /// A field of an enclosing query's row: (levels up, starting at 1; position).
    Outer(usize, usize),
    /// A parameter, `$n` is index n-1.
    Param(usize),
    Binary(BinOp, Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Neg(Box<Expr>),
    IsNull(Box<Expr>, bool),
    /// IS [NOT] DISTINCT FROM; the flag is true for NOT DISTINCT.
    IsDistinct(Box<Expr>, Box<Expr>, bool),
    /// [NOT] LIKE / ILIKE: (value, pattern, negated, case-insensitive).
    Like(Box<Expr>, Box<Expr>, bool, bool),
    /// `~`, `~*`, `!~`, `!~*`: (value, pattern, negated, case-insensitive).
    Regex(Box<Expr>, Box<Expr>, bool, bool),
    InList(Box<Expr>, Vec<Expr>, bool),
    InSubquery(Box<Expr>, Box<Plan>, bool),
    Exists(Box<Plan>, bool),
    Subquery(Box<Plan>),
    /// `ARRAY(subquery)`: the first column of every row, as an array in its text form (`{a,b}`).
    ArraySubquery(Box<Plan>),
    Case {
        operand: Option<Box<Expr>>,
        whens: Vec<(Expr, Expr)>,
        otherwise: Option<Box<Expr>>,
    },
    Cast(Box<Expr>, DataType),
    Call(Arc<str>, Vec<Expr>),
}

impl Expr {
    /// Evaluates the expression over one row.
    pub fn eval(&self, row: &[Value], env: &Env) -> Result<Value> {
        Ok(match self {
            Expr::Const(v) => v.clone(),
            Expr::Column(i) => row.get(*i).cloned().ok_or_else(|| Error::internal("column out of range"))?,
            Expr::Outer(up, i) => env
                .outer
                .len()
                .checked_sub(*up)
                .and_then(|l| env.outer[l].get(*i))
                .cloned()
                .ok_or_else(|| Error::internal("outer column out of range"))?,
            Expr::Param(i) => {
                env.params.get(*i).cloned().ok_or_else(|| {
                    Error::new(SqlState::PROTOCOL_VIOLATION, format!("there is no parameter ${}", i + 1))
                })?
            }
            Expr::Binary(BinOp::And, a, b) => {
                let a = truth(&a.eval(row, env)?)?;
                if a == Some(false) {
                    return Ok(Value::Bool(false));
                }
                match (a, truth(&b.eval(row, env)?)?) {
                    (_, Some(false)) => Value::Bool(false),
                    (Some(true), Some(true)) => Value::Bool(true),
                    _ => Value::Null,
                }
            }
            Expr::Binary(BinOp::Or, a, b) => {
                let a = truth(&a.eval(row, env)?)?;
                if a == Some(true) {
                    return Ok(Value::Bool(true));
                }
                match (a, truth(&b.eval(row, env)?)?) {
                    (_, Some(true)) => Value::Bool(true),
                    (Some(false), Some(false)) => Value::Bool(false),
                    _ => Value::Null,
                }
            }
            Expr::Binary(op, a, b) => binary(*op, a.eval(row, env)?, b.eval(row, env)?)?,
            Expr::Not(e) => match truth(&e.eval(row, env)?)? {
                Some(b) => Value::Bool(!b),
                None => Value::Null,
            },
            Expr::Neg(e) => match e.eval(row, env)? {
                Value::Null => Value::Null,
                Value::Int(i) => Value::Int(i.checked_neg().ok_or_else(overflow)?),
                Value::Float(f) => Value::Float(-f),
                Value::Numeric(d) => {
                    let d = d.get();
                    Value::numeric(Decimal { mantissa: -d.mantissa, scale: d.scale })
                }
                Value::Interval(i) => Value::interval(interval::negate(&i).ok_or_else(interval_overflow)?),
                v => return Err(operator_error("-", &v)),
            },
            Expr::IsNull(e, negated) => Value::Bool(e.eval(row, env)?.is_null() != *negated),
            Expr::IsDistinct(a, b, not) => {
                let (a, b) = (a.eval(row, env)?, b.eval(row, env)?);
                let same = match (a.is_null(), b.is_null()) {
                    (true, true) => true,
                    (false, false) => compare(&a, &b)? == Ordering::Equal,
                    _ => false,
                };
                Value::Bool(same == *not)
            }
            Expr::Like(e, p, negated, ci) => match (e.eval(row, env)?, p.eval(row, env)?) {
                (Value::Null, _) | (_, Value::Null) => Value::Null,
                (v, p) => {
                    let (v, p) = (text_of(&v), text_of(&p));
                    let m = if *ci { like(&v.to_lowercase(), &p.to_lowercase()) } else { like(&v, &p) };
                    Value::Bool(m != *negated)
                }
            },
            Expr::Regex(e, p, negated, ci) => match (e.eval(row, env)?, p.eval(row, env)?) {
                (Value::Null, _) | (_, Value::Null) => Value::Null,
                (v, p) => {
                    let re = regex::RegexBuilder::new(&text_of(&p)).case_insensitive(*ci).build().map_err(|e| {
                        Error::new(SqlState::INVALID_PARAMETER_VALUE, format!("invalid regular expression: {e}"))
                    })?;
                    Value::Bool(re.is_match(&text_of(&v)) != *negated)
                }
            },
            Expr::InList(e, list, negated) => {
                let v = e.eval(row, env)?;
                let mut items = Vec::with_capacity(list.len());
                for x in list {
                    items.push(x.eval(row, env)?);
                }
                in_values(&v, items.iter(), *negated)?
            }
            Expr::InSubquery(e, plan, negated) => {
                let v = e.eval(row, env)?;
                let rows = execute::run_subquery(plan, row, env)?;
                in_values(&v, rows.iter().filter_map(|r| r.first()), *negated)?
            }
            Expr::Exists(plan, negated) => {
                let rows = execute::run_subquery(plan, row, env)?;
                Value::Bool(rows.is_empty() == *negated)
            }
            Expr::Subquery(plan) => {
                let rows = execute::run_subquery(plan, row, env)?;
                if rows.len() > 1 {
                    return Err(Error::new(
                        SqlState::CARDINALITY_VIOLATION,
                        "more than one row returned by a subquery used as an expression",
                    ));
                }
                rows.into_iter().next().and_then(|r| r.into_iter().next()).unwrap_or(Value::Null)
            }
            Expr::ArraySubquery(plan) => {
                let rows = execute::run_subquery(plan, row, env)?;
                Value::text(&array_text(rows.iter().map(|r| r.first().unwrap_or(&Value::Null))))
            }
            Expr::Case { operand, whens, otherwise } => {
                let op = match operand {
                    Some(o) => Some(o.eval(row, env)?),
                    None => None,
                };
                for (cond, result) in whens {
                    let c = cond.eval(row, env)?;
                    let hit = match &op {
                        Some(o) => !o.is_null() && !c.is_null() && compare(o, &c)? == Ordering::Equal,
                        None => truth(&c)? == Some(true),
                    };
                    if hit {
                        return result.eval(row, env);
                    }
                }
                match otherwise {
                    Some(e) => e.eval(row, env)?,
                    None => Value::Null,
                }
            }
            Expr::Cast(e, ty) => types::cast(e.eval(row, env)?, ty)?,
            Expr::Call(name, args) => {
                let mut values = Vec::with_capacity(args.len());
                for a in args {
                    values.push(a.eval(row, env)?);
                }
                functions::call(name, values, env)?
            }
        })
    }

    /// Whether the expression refers to no row at all (so it can be computed once, e.g. a key to look up).
    /// Whether the expression runs a subquery (reads tables).
    pub fn has_subquery(&self) -> bool {
        match self {
            Expr::Const(_) | Expr::Column(_) | Expr::Outer(..) | Expr::Param(_) => false,
            Expr::InSubquery(..) | Expr::Exists(..) | Expr::Subquery(_) | Expr::ArraySubquery(_) => true,
            Expr::Binary(_, a, b) | Expr::IsDistinct(a, b, _) | Expr::Like(a, b, ..) | Expr::Regex(a, b, ..) => {
                a.has_subquery() || b.has_subquery()
            }
            Expr::Not(e) | Expr::Neg(e) | Expr::IsNull(e, _) | Expr::Cast(e, _) => e.has_subquery(),
            Expr::InList(e, l, _) => e.has_subquery() || l.iter().any(Expr::has_subquery),
            Expr::Case { operand, whens, otherwise } => {
                operand.as_ref().is_some_and(|o| o.has_subquery())
                    || whens.iter().any(|(a, b)| a.has_subquery() || b.has_subquery())
                    || otherwise.as_ref().is_some_and(|o| o.has_subquery())
            }
            Expr::Call(_, args) => args.iter().any(Expr::has_subquery),
        }
    }

    pub fn is_row_independent(&self) -> bool {
        match self {
            Expr::Const(_) | Expr::Param(_) | Expr::Outer(..) => true,
            Expr::Column(_) | Expr::InSubquery(..) | Expr::Exists(..) | Expr::Subquery(_) | Expr::ArraySubquery(_) => {
                false
            }
            Expr::Binary(_, a, b) | Expr::IsDistinct(a, b, _) | Expr::Like(a, b, ..) | Expr::Regex(a, b, ..) => {
                a.is_row_independent() && b.is_row_independent()
            }
            Expr::Not(e) | Expr::Neg(e) | Expr::IsNull(e, _) | Expr::Cast(e, _) => e.is_row_independent(),
            Expr::InList(e, l, _) => e.is_row_independent() && l.iter().all(Expr::is_row_independent),
            Expr::Case { operand, whens, otherwise } => {
                operand.as_ref().is_none_or(|o| o.is_row_independent())
                    && whens.iter().all(|(a, b)| a.is_row_independent() && b.is_row_independent())
                    && otherwise.as_ref().is_none_or(|o| o.is_row_independent())
            }
            Expr::Call(name, args) => !functions::is_volatile(name) && args.iter().all(Expr::is_row_independent),
        }
    }
}

fn interval_overflow() -> Error {
    Error::new(SqlState("22008"), "interval out of range")
}

fn overflow() -> Error {
    Error::new(SqlState::NUMERIC_VALUE_OUT_OF_RANGE, "integer out of range")
}

fn operator_error(op: &str, v: &Value) -> Error {
    Error::new(
        SqlState::UNDEFINED_FUNCTION,
        format!("operator does not exist: {op} {}", types::type_of_value(v).sql_name()),
    )
}

/// The truth value of a boolean (None for NULL).
pub fn truth(v: &Value) -> Result<Option<bool>> {
    match v {
        Value::Bool(b) => Ok(Some(*b)),
        Value::Null => Ok(None),
        Value::Text(s) => match types::parse_value(s, &DataType::Bool)? {
            Value::Bool(b) => Ok(Some(b)),
            _ => Ok(None),
        },
        v => Err(Error::new(
            SqlState::DATATYPE_MISMATCH,
            format!("argument of WHERE must be type boolean, not type {}", types::type_of_value(v).sql_name()),
        )),
    }
}

/// A value as text (for string operators applied to other types).
/// An array's text form, as PostgreSQL prints it: `{a,b}`, an element quoted when it is empty, holds a
/// delimiter, brace, quote, backslash or space, or spells NULL; a null element as NULL.
pub fn array_text<'a>(items: impl Iterator<Item = &'a Value>) -> String {
    let mut out = String::from("{");
    for (i, v) in items.enumerate() {
        if i > 0 {
            out.push(',');
        }
        if v.is_null() {
            out.push_str("NULL");
            continue;
        }
        let t = text_of(v);
        let quote = t.is_empty()
            || t.eq_ignore_ascii_case("null")
            || t.chars().any(|c| matches!(c, '{' | '}' | ',' | '"' | '\\') || c.is_ascii_whitespace());
        if quote {
            out.push('"');
            for c in t.chars() {
                if matches!(c, '"' | '\\') {
                    out.push('\\');
                }
                out.push(c);
            }
            out.push('"');
        } else {
            out.push_str(&t);
        }
    }
    out.push('}');
    out
}

/// The elements of an array in its text form (the inverse of [`array_text`]); None for text that is not
/// an array.
pub fn array_items(text: &str) -> Option<Vec<Option<String>>> {
    let inner = text.trim().strip_prefix('{')?.strip_suffix('}')?;
    let mut items = Vec::new();
    if inner.trim().is_empty() {
        return Some(items);
    }
    let mut chars = inner.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_ascii_whitespace()) {
            chars.next();
        }
        let mut item = String::new();
        let mut quoted = false;
        if chars.peek() == Some(&'"') {
            quoted = true;
            chars.next();
            loop {
                match chars.next()? {
                    '"' => break,
                    '\\' => item.push(chars.next()?),
                    c => item.push(c),
                }
            }
        }
        while let Some(&c) = chars.peek() {
            if c == ',' {
                break;
            }
            chars.next();
            if quoted {
                if !c.is_ascii_whitespace() {
                    return None;
                }
            } else if c == '\\' {
                item.push(chars.next()?);
            } else if matches!(c, '{' | '}' | '"') {
                return None;
            } else {
                item.push(c);
            }
        }
        let item = if quoted { item } else { item.trim_end().to_string() };
        items.push(if !quoted && item.eq_ignore_ascii_case("null") { None } else { Some(item) });
        if chars.next().is_none() {
            return Some(items);
        }
    }
}

pub fn text_of(v: &Value) -> String {
    match v {
        Value::Text(s) => s.to_string(),
        v => types::format_value(v, &types::type_of_value(v)).unwrap_or_default(),
    }
}

/// An operand of `||` as text: its cast to text.
fn concat_text(v: Value) -> Result<String> {
    Ok(match v {
        Value::Text(s) => s.to_string(),
        v => text_of(&types::cast(v, &DataType::Text)?),
    })
}

/// Compares two non-NULL values, coercing text to the other side's type as PostgreSQL does with
/// literals of unknown type.
pub fn compare(a: &Value, b: &Value) -> Result<Ordering> {
    Ok(match (a, b) {
        (Value::Text(s), other) | (other, Value::Text(s)) if !matches!(other, Value::Text(_) | Value::Null) => {
            let parsed = types::parse_value(s, &types::type_of_value(other))?;
            if matches!(a, Value::Text(_)) {
                parsed.cmp(other)
            } else {
                other.cmp(&parsed)
            }
        }
        (Value::Text(x), Value::Text(y)) => x.trim_end_matches(' ').cmp(y.trim_end_matches(' ')).then(x.cmp(y)),
        _ => a.cmp(b),
    })
}

fn in_values<'a>(v: &Value, items: impl Iterator<Item = &'a Value>, negated: bool) -> Result<Value> {
    if v.is_null() {
        return Ok(Value::Null);
    }
    let mut saw_null = false;
    for x in items {
        if x.is_null() {
            saw_null = true;
        } else if compare(v, x)? == Ordering::Equal {
            return Ok(Value::Bool(!negated));
        }
    }
    Ok(if saw_null { Value::Null } else { Value::Bool(negated) })
}

/// SQL LIKE with `%`, `_` and backslash escapes.
///
/// Greedy, and on a mismatch it retries from the last `%` one character further on: whatever an earlier
/// `%` could still absorb, the last one can too, so only the last is ever revisited and the cost is at
/// most the product of the two lengths. (Backtracking into every `%` takes exponential time on a pattern
/// such as `%a%a%a%a%a%b`: one query could keep a session busy for ever.)
pub fn like(s: &str, p: &str) -> bool {
    let s: Vec<char> = s.chars().collect();
    let p: Vec<char> = p.chars().collect();
    // The pattern item at `i`: None for `%`, else the character it matches (None for `_`) and its length.
    let item = |i: usize| match p[i] {
        '%' => None,
        '_' => Some((None, 1)),
        '\\' if i + 1 < p.len() => Some((Some(p[i + 1]), 2)),
        c => Some((Some(c), 1)),
    };
    let (mut si, mut pi) = (0, 0);
    // Where to retry from: the pattern just after the last `%`, and the text that `%` stopped at.
    let mut retry: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() {
            match item(pi) {
                None => {
                    pi += 1;
                    retry = Some((pi, si));
                    continue;
                }
                Some((c, len)) if c.is_none_or(|c| c == s[si]) => {
                    pi += len;
                    si += 1;
                    continue;
                }
                Some(_) => {}
            }
        }
        let Some((rp, rs)) = retry else { return false };
        retry = Some((rp, rs + 1));
        (pi, si) = (rp, rs + 1);
    }
    p[pi..].iter().all(|c| *c == '%')
}

fn to_decimal(v: &Value) -> Option<Decimal> {
    match v {
        Value::Int(i) => Some(Decimal { mantissa: *i as i128, scale: 0 }),
        Value::Numeric(d) => Some(d.get()),
        _ => None,
    }
}

fn to_float(v: &Value) -> Option<f64> {
    match v {
        Value::Int(i) => Some(*i as f64),
        Value::Float(f) => Some(*f),
        Value::Numeric(d) => Some(d.get().to_f64()),
        _ => None,
    }
}

fn div_zero() -> Error {
    Error::new(SqlState::DIVISION_BY_ZERO, "division by zero")
}

/// Applies an arithmetic, comparison or concatenation operator to two values.
pub fn binary(op: BinOp, a: Value, b: Value) -> Result<Value> {
    use BinOp::*;
    if op == Concat {
        // bytea || bytea is bytea; any other operand is concatenated as its `::text`, as PostgreSQL's
        // anytextcat does (so `true || 'x'` is `truex`).
        return Ok(match (a, b) {
            (Value::Null, _) | (_, Value::Null) => Value::Null,
            (Value::Bytes(x), Value::Bytes(y)) => {
                Value::Bytes(x.iter().chain(y.iter()).copied().collect::<Vec<u8>>().into())
            }
            (a, b) => Value::text(&(concat_text(a)? + &concat_text(b)?)),
        });
    }
    if a.is_null() || b.is_null() {
        return Ok(Value::Null);
    }
    if matches!(op, Eq | Ne | Lt | Le | Gt | Ge) {
        let o = compare(&a, &b)?;
        return Ok(Value::Bool(match op {
            Eq => o == Ordering::Equal,
            Ne => o != Ordering::Equal,
            Lt => o == Ordering::Less,
            Le => o != Ordering::Greater,
            Gt => o == Ordering::Greater,
            _ => o != Ordering::Less,
        }));
    }
    // Text operands of arithmetic are untyped literals: read them as numbers.
    let num = |v: Value| -> Result<Value> {
        match v {
            Value::Text(s) => match types::parse_value(&s, &DataType::Int8) {
                Ok(v) => Ok(v),
                Err(_) => types::parse_value(&s, &DataType::Numeric(None)),
            },
            v => Ok(v),
        }
    };
    let (a, b) = (num(a)?, num(b)?);
    if let Some(r) = interval_binary(op, &a, &b) {
        return r;
    }
    match (&a, &b) {
        (Value::Int(x), Value::Int(y)) => {
            let (x, y) = (*x, *y);
            let r = match op {
                Add => x.checked_add(y),
                Sub => x.checked_sub(y),
                Mul => x.checked_mul(y),
                Div => {
                    if y == 0 {
                        return Err(div_zero());
                    }
                    x.checked_div(y)
                }
                Mod => {
                    if y == 0 {
                        return Err(div_zero());
                    }
                    // i64::MIN % -1 overflows in the machine; the remainder is 0, as PostgreSQL gives it.
                    Some(x.checked_rem(y).unwrap_or(0))
                }
                _ => None,
            };
            r.map(Value::Int).ok_or_else(overflow)
        }
        (Value::Float(_), _) | (_, Value::Float(_)) => {
            let (Some(x), Some(y)) = (to_float(&a), to_float(&b)) else { return Err(operator_error("+", &a)) };
            Ok(Value::Float(match op {
                Add => x + y,
                Sub => x - y,
                Mul => x * y,
                Div => {
                    if y == 0.0 {
                        return Err(div_zero());
                    }
                    x / y
                }
                Mod => {
                    if y == 0.0 {
                        return Err(div_zero());
                    }
                    x % y
                }
                _ => return Err(Error::internal("bad float operator")),
            }))
        }
        (Value::Numeric(_), _) | (_, Value::Numeric(_)) => {
            let (Some(x), Some(y)) = (to_decimal(&a), to_decimal(&b)) else { return Err(operator_error("+", &a)) };
            decimal_op(op, x, y)
        }
        (Value::Date(d), Value::Int(n)) if matches!(op, Add | Sub) => {
            let n = if op == Add { *n } else { -*n };
            Ok(Value::Date(d.checked_add(i32::try_from(n).map_err(|_| overflow())?).ok_or_else(overflow)?))
        }
        (Value::Date(x), Value::Date(y)) if op == Sub => Ok(Value::Int(*x as i64 - *y as i64)),
        _ => {
            let op = match op {
                Add => "+",
                Sub => "-",
                Mul => "*",
                Div => "/",
                _ => "%",
            };
            let name = |v: &Value| types::type_of_value(v).sql_name();
            Err(Error::new(
                SqlState::UNDEFINED_FUNCTION,
                format!("operator does not exist: {} {op} {}", name(&a), name(&b)),
            )
            .with_hint(
                "No operator matches the given name and argument types. You might need to add explicit type casts.",
            ))
        }
    }
}

/// Arithmetic with an interval (sql::interval): with times, with each other, scaled by numbers. None if
/// neither operand is an interval or no such operator exists (the caller reports it).
fn interval_binary(op: BinOp, a: &Value, b: &Value) -> Option<Result<Value>> {
    use BinOp::*;
    let involved = matches!(a, Value::Interval(_)) || matches!(b, Value::Interval(_));
    if !(involved || op == Sub && is_time(a) && is_time(b)) {
        return None;
    }
    let r = (|| -> Result<Option<Value>> {
        Ok(Some(match (a, b) {
            (Value::Timestamp(t) | Value::TimestampTz(t), Value::Interval(i)) if matches!(op, Add | Sub) => {
                let i = if op == Add { **i } else { interval::negate(i).ok_or_else(interval_overflow)? };
                if matches!(a, Value::Timestamp(_)) {
                    Value::Timestamp(interval::add_to_timestamp(*t, &i).ok_or_else(interval_overflow)?)
                } else {
                    // Months and days go by the session's calendar (a day across a DST change is 23 or 25
                    // hours), the time part by the clock, as in PostgreSQL.
                    let calendar = crate::storage::value::Interval { micros: 0, ..i };
                    let local = crate::sql::timezone::to_local(*t);
                    let moved = interval::add_to_timestamp(local, &calendar).ok_or_else(interval_overflow)?;
                    let t = crate::sql::timezone::to_utc(moved).checked_add(i.micros).ok_or_else(interval_overflow)?;
                    Value::TimestampTz(t)
                }
            }
            (Value::Interval(_), Value::Timestamp(_) | Value::TimestampTz(_) | Value::Date(_)) if op == Add => {
                return interval_binary(op, b, a).transpose()
            }
            (Value::Date(d), Value::Interval(_)) if matches!(op, Add | Sub) => {
                return interval_binary(op, &Value::Timestamp(*d as i64 * USECS_PER_DAY), b).transpose()
            }
            (Value::Timestamp(x) | Value::TimestampTz(x), Value::Timestamp(y) | Value::TimestampTz(y)) if op == Sub => {
                Value::interval(interval::between(*x, *y).ok_or_else(interval_overflow)?)
            }
            (Value::Interval(x), Value::Interval(y)) if matches!(op, Add | Sub) => {
                let y = if op == Add { **y } else { interval::negate(y).ok_or_else(interval_overflow)? };
                Value::interval(interval::add(x, &y).ok_or_else(interval_overflow)?)
            }
            (Value::Interval(i), n) | (n, Value::Interval(i))
                if op == Mul || (op == Div && matches!(a, Value::Interval(_))) =>
            {
                let Some(f) = to_float(n) else { return Ok(None) };
                if op == Div && f == 0.0 {
                    return Err(div_zero());
                }
                let f = if op == Div { 1.0 / f } else { f };
                Value::interval(interval::scale(i, f).ok_or_else(interval_overflow)?)
            }
            _ => return Ok(None),
        }))
    })();
    r.transpose()
}

fn is_time(v: &Value) -> bool {
    matches!(v, Value::Timestamp(_) | Value::TimestampTz(_))
}

fn decimal_op(op: BinOp, x: Decimal, y: Decimal) -> Result<Value> {
    let scale = x.scale.max(y.scale);
    let (Some(xs), Some(ys)) = (x.rescale_up(scale), y.rescale_up(scale)) else {
        return Err(Error::new(SqlState::NUMERIC_VALUE_OUT_OF_RANGE, "value overflows numeric format"));
    };
    let of = || Error::new(SqlState::NUMERIC_VALUE_OUT_OF_RANGE, "value overflows numeric format");
    Ok(Value::numeric(match op {
        BinOp::Add => Decimal { mantissa: xs.mantissa.checked_add(ys.mantissa).ok_or_else(of)?, scale },
        BinOp::Sub => Decimal { mantissa: xs.mantissa.checked_sub(ys.mantissa).ok_or_else(of)?, scale },
        BinOp::Mul => {
            let d = Decimal { mantissa: x.mantissa.checked_mul(y.mantissa).ok_or_else(of)?, scale: x.scale + y.scale };
            if d.scale > 16 {
                round_decimal(d, 16)
            } else {
                d
            }
        }
        BinOp::Div => {
            if ys.mantissa == 0 {
                return Err(div_zero());
            }
            // PostgreSQL keeps at least 16 significant fractional digits; so do we, within i128.
            let out_scale = x.scale.max(y.scale).clamp(16, 20);
            let num = xs.rescale_up(scale + out_scale + 1).ok_or_else(of)?;
            let q = Decimal { mantissa: num.mantissa / ys.mantissa, scale: out_scale + 1 };
            trim_scale(round_decimal(q, out_scale), x.scale.max(y.scale))
        }
        BinOp::Mod => {
            if ys.mantissa == 0 {
                return Err(div_zero());
            }
            Decimal { mantissa: xs.mantissa % ys.mantissa, scale }
        }
        _ => return Err(Error::internal("bad numeric operator")),
    }))
}

/// Drops trailing fractional zeros down to `min` digits.
fn trim_scale(mut d: Decimal, min: u32) -> Decimal {
    while d.scale > min && d.mantissa % 10 == 0 {
        d.mantissa /= 10;
        d.scale -= 1;
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_patterns() {
        assert!(like("hello", "h%o"));
        assert!(like("hello", "_ello"));
        assert!(!like("hello", "h_o"));
        assert!(like("50%", "50\\%"));
        assert!(!like("50", "50\\%"));
        assert!(like("a\\", "a\\"));
    }

    /// The backtracking definition of LIKE, which the linear matcher must agree with.
    fn like_by_backtracking(s: &[char], p: &[char]) -> bool {
        match p.first() {
            None => s.is_empty(),
            Some('%') => (0..=s.len()).any(|i| like_by_backtracking(&s[i..], &p[1..])),
            Some('_') => !s.is_empty() && like_by_backtracking(&s[1..], &p[1..]),
            Some('\\') if p.len() > 1 => s.first() == Some(&p[1]) && like_by_backtracking(&s[1..], &p[2..]),
            Some(c) => s.first() == Some(c) && like_by_backtracking(&s[1..], &p[1..]),
        }
    }

    fn words(alphabet: &[char], max: usize) -> Vec<Vec<char>> {
        let mut all = vec![vec![]];
        let mut last = vec![vec![]];
        for _ in 0..max {
            last =
                last.iter().flat_map(|w: &Vec<char>| alphabet.iter().map(move |c| [&w[..], &[*c]].concat())).collect();
            all.extend(last.iter().cloned());
        }
        all
    }

    #[test]
    fn like_agrees_with_backtracking_and_takes_linear_time() {
        let texts = words(&['a', 'b', '%'], 5);
        for p in words(&['a', 'b', '%', '_', '\\'], 5) {
            for s in &texts {
                let (st, pt): (String, String) = (s.iter().collect(), p.iter().collect());
                assert_eq!(like(&st, &pt), like_by_backtracking(s, &p), "{st:?} LIKE {pt:?}");
            }
        }
        // Backtracking into every % would not finish these.
        let text = "a".repeat(5000);
        assert!(!like(&text, &format!("{}b", "%a".repeat(50))));
        assert!(like(&text, &"%a".repeat(50)));
    }

    #[test]
    fn arithmetic() {
        assert_eq!(binary(BinOp::Div, Value::Int(7), Value::Int(2)).ok(), Some(Value::Int(3)));
        assert_eq!(
            binary(BinOp::Div, Value::Int(1), Value::Int(0)).err().map(|e| e.code),
            Some(SqlState::DIVISION_BY_ZERO)
        );
        assert_eq!(binary(BinOp::Eq, Value::Int(16467), Value::text("16467")).ok(), Some(Value::Bool(true)));
        // An operator that does not exist is named with both operand types, as PostgreSQL does.
        let e = binary(BinOp::Add, Value::TimestampTz(0), Value::TimestampTz(1)).unwrap_err();
        assert_eq!(
            (e.code, e.message.as_str()),
            (
                SqlState::UNDEFINED_FUNCTION,
                "operator does not exist: timestamp with time zone + timestamp with time zone"
            )
        );
    }
}
