//! Scalar functions: the string, math and date functions of the SQL dialect, the session and WAL
//! information functions, and the catalog helpers psql calls (`format_type`, `pg_table_is_visible`,
//! `pg_get_indexdef`, ...).
//!
//! Functions are looked up by their lower-case name without a `pg_catalog.` prefix. [`return_type`] gives
//! the planner the result type (for RowDescription and for parameter inference); [`call`] evaluates.
//! Strict functions return NULL on any NULL argument, as in PostgreSQL; the few that are not strict
//! (coalesce, concat, greatest, least) say so.

use std::str::FromStr;

use crate::error::{Error, Result, SqlState};
use crate::sql::execute::Env;
use crate::sql::expr::{compare, text_of};
use crate::sql::types::{self, round_decimal};
use crate::storage::value::{DataType, Decimal, Value};
use crate::wal::Lsn;

/// How many arguments a function takes, for those whose PostgreSQL signatures are fixed: a call with another
/// count is "function does not exist" there, and must not run here with arguments silently dropped. None for
/// functions not checked.
fn arity(name: &str) -> Option<(usize, usize)> {
    const MANY: usize = usize::MAX;
    Some(match name {
        "now"
        | "pi"
        | "random"
        | "clock_timestamp"
        | "statement_timestamp"
        | "transaction_timestamp"
        | "version"
        | "pg_backend_pid"
        | "pg_is_in_recovery"
        | "gen_random_uuid"
        | "pg_current_wal_lsn"
        | "pg_current_wal_flush_lsn"
        | "pg_current_wal_insert_lsn"
        | "pg_last_wal_receive_lsn"
        | "pg_last_wal_replay_lsn"
        | "pg_last_xact_replay_timestamp"
        | "pg_reload_conf" => (0, 0),
        "lower" | "upper" | "initcap" | "reverse" | "char_length" | "character_length" | "octet_length"
        | "bit_length" | "ascii" | "chr" | "md5" | "abs" | "sign" | "sqrt" | "cbrt" | "exp" | "ln" | "log10"
        | "degrees" | "radians" | "ceil" | "ceiling" | "floor" | "factorial" | "scale" | "quote_ident"
        | "quote_literal" | "quote_nullable" | "isfinite" | "justify_days" | "justify_hours" | "justify_interval"
        | "setseed" | "pg_size_pretty" | "nextval" | "currval" | "to_timestamp" | "length" => (1, 1),
        "repeat" | "left" | "right" | "strpos" | "starts_with" | "mod" | "power" | "pow" | "div" | "gcd" | "lcm"
        | "pg_wal_lsn_diff" | "like_escape" | "date_part" | "nullif" | "to_char" | "encode" | "decode" | "timezone" => {
            (2, 2)
        }
        "split_part" | "translate" | "replace" | "make_date" | "date_bin" => (3, 3),
        "width_bucket" => (4, 4),
        "make_timestamp" => (6, 6),
        "round" | "trunc" | "log" | "trim" | "btrim" | "ltrim" | "rtrim" | "age" | "similar_to_escape" => (1, 2),
        "lpad" | "rpad" | "substr" | "substring" | "setval" | "date_trunc" => (2, 3),
        "overlay" => (3, 4),
        "concat" | "coalesce" | "greatest" | "least" | "format" | "num_nulls" | "num_nonnulls" => (1, MANY),
        "concat_ws" => (2, MANY),
        _ => return None,
    })
}

/// The result type of a function given its argument types, or None if there is no such function.
pub fn return_type(name: &str, args: &[DataType]) -> Option<DataType> {
    if arity(name).is_some_and(|(min, max)| !(min..=max).contains(&args.len())) {
        return None;
    }
    let first = args.first().cloned().unwrap_or(DataType::Text);
    Some(match name {
        "lower"
        | "upper"
        | "trim"
        | "btrim"
        | "ltrim"
        | "rtrim"
        | "replace"
        | "concat"
        | "substr"
        | "substring"
        | "left"
        | "right"
        | "repeat"
        | "lpad"
        | "rpad"
        | "md5"
        | "initcap"
        | "reverse"
        | "to_char"
        | "version"
        | "current_setting"
        | "format_type"
        | "pg_get_userbyid"
        | "pg_get_indexdef"
        | "pg_get_constraintdef"
        | "pg_get_expr"
        | "current_schema"
        | "current_user"
        | "current_database"
        | "session_user"
        | "user"
        | "pg_current_wal_lsn"
        | "pg_current_wal_flush_lsn"
        | "pg_current_wal_insert_lsn"
        | "pg_last_wal_receive_lsn"
        | "pg_last_wal_replay_lsn"
        | "quote_ident"
        | "obj_description"
        | "col_description"
        | "pg_get_statisticsobjdef_columns"
        | "chr"
        | "split_part"
        | "pg_encoding_to_char"
        | "inet_server_addr"
        | "array_to_string"
        | "convert_from"
        | "pg_size_pretty"
        | "pg_get_function_result"
        | "pg_get_function_arguments"
        | "shobj_description"
        | "pg_tablespace_location"
        | "set_config"
        | "pg_drop_replication_slot"
        | "pg_sleep"
        | "translate"
        | "regexp_replace"
        | "format"
        | "encode"
        | "gen_random_uuid"
        | "setseed" => DataType::Text,
        "concat_ws" | "quote_literal" | "quote_nullable" | "substring_regex" | "overlay" | "like_escape"
        | "similar_to_escape" => DataType::Text,
        "cbrt" | "log10" => DataType::Float8,
        "num_nonnulls" | "num_nulls" | "bit_length" | "width_bucket" | "scale" => DataType::Int4,
        "isfinite" => DataType::Bool,
        "div" | "factorial" => DataType::Numeric(None),
        "justify_days" | "justify_hours" | "justify_interval" => DataType::Interval,
        "make_timestamp" => DataType::Timestamp,
        "date_bin" => match args.get(1) {
            Some(DataType::TimestampTz) => DataType::TimestampTz,
            _ => DataType::Timestamp,
        },
        "gcd" | "lcm" => match first {
            DataType::Int2 | DataType::Int4 | DataType::Int8
                if args.iter().all(|t| matches!(t, DataType::Int2 | DataType::Int4 | DataType::Int8)) =>
            {
                first
            }
            _ => DataType::Numeric(None),
        },
        "decode" => DataType::Bytea,
        "age" => DataType::Interval,
        "to_timestamp" => DataType::TimestampTz,
        "make_date" => DataType::Date,
        "length" | "char_length" | "character_length" | "octet_length" | "strpos" | "position" | "pg_backend_pid"
        | "array_position" | "array_upper" | "ascii" => DataType::Int4,
        "pg_is_in_recovery"
        | "pg_cancel_backend"
        | "pg_terminate_backend"
        | "pg_reload_conf"
        | "pg_promote"
        | "tandem_fence"
        | "tandem_fenced"
        | "tandem_sync_fallback"
        | "pg_table_is_visible"
        | "pg_relation_is_publishable"
        | "starts_with"
        | "pg_has_role"
        | "has_table_privilege"
        | "has_database_privilege"
        | "has_schema_privilege"
        | "pg_function_is_visible"
        | "pg_type_is_visible" => DataType::Bool,
        "nextval"
        | "currval"
        | "setval"
        | "pg_relation_size"
        | "pg_total_relation_size"
        | "pg_table_size"
        | "pg_indexes_size"
        | "pg_database_size" => DataType::Int8,
        "pg_wal_lsn_diff" => DataType::Numeric(None),
        "pg_last_xact_replay_timestamp" => DataType::TimestampTz,
        "now" | "current_timestamp" | "statement_timestamp" | "transaction_timestamp" | "clock_timestamp" => {
            DataType::TimestampTz
        }
        "current_date" => DataType::Date,
        "date_trunc" => args.get(1).cloned().unwrap_or(DataType::Timestamp),
        "date_part" => DataType::Float8,
        "timezone" => match args.get(1) {
            Some(DataType::Timestamp) => DataType::TimestampTz,
            _ => DataType::Timestamp,
        },
        "extract" => DataType::Numeric(None),
        "abs" | "round" | "ceil" | "ceiling" | "floor" | "trunc" | "sign" | "mod" => match first {
            DataType::Int2 | DataType::Int4 | DataType::Int8
                if !matches!(name, "round" | "trunc") || args.len() == 1 =>
            {
                first
            }
            DataType::Float4 | DataType::Float8 => DataType::Float8,
            _ => DataType::Numeric(None),
        },
        "power" | "pow" | "sqrt" | "exp" | "ln" | "log" | "random" | "pi" | "degrees" | "radians" => DataType::Float8,
        "coalesce" | "nullif" | "greatest" | "least" => {
            args.iter().find(|t| **t != DataType::Text).cloned().unwrap_or(first)
        }
        "current_schemas" => DataType::Text,
        _ => return None,
    })
}

/// Whether a function's result changes from call to call (so it cannot be computed once per statement).
pub fn is_volatile(name: &str) -> bool {
    matches!(
        name,
        "random"
            | "setseed"
            | "gen_random_uuid"
            | "nextval"
            | "setval"
            | "clock_timestamp"
            | "pg_drop_replication_slot"
            | "pg_sleep"
            | "pg_cancel_backend"
            | "pg_terminate_backend"
    )
}

fn not_strict(name: &str) -> bool {
    matches!(
        name,
        "coalesce"
            | "concat"
            | "greatest"
            | "least"
            | "nullif"
            | "current_setting"
            | "pg_get_expr"
            | "set_config"
            | "format"
            | "concat_ws"
            | "quote_nullable"
            | "num_nonnulls"
            | "num_nulls"
    )
}

fn arg_error(name: &str) -> Error {
    Error::new(SqlState::UNDEFINED_FUNCTION, format!("function {name} has wrong arguments"))
        .with_hint("No function matches the given name and argument types.")
}

fn int_arg(v: &Value) -> Result<i64> {
    match types::cast(v.clone(), &DataType::Int8)? {
        Value::Int(i) => Ok(i),
        _ => Err(Error::new(SqlState::INVALID_PARAMETER_VALUE, "integer argument expected")),
    }
}

fn float_arg(v: &Value) -> Result<f64> {
    match types::cast(v.clone(), &DataType::Float8)? {
        Value::Float(f) => Ok(f),
        _ => Err(Error::new(SqlState::INVALID_PARAMETER_VALUE, "number argument expected")),
    }
}

fn numeric_arg(v: &Value) -> Result<Decimal> {
    match types::cast(v.clone(), &DataType::Numeric(None))? {
        Value::Numeric(d) => Ok(d.get()),
        _ => Err(Error::new(SqlState::INVALID_PARAMETER_VALUE, "numeric argument expected")),
    }
}

/// The escape of LIKE ... ESCAPE and SIMILAR TO ... ESCAPE: none (empty) or one character.
fn escape_char(escape: &str) -> Result<Option<char>> {
    let mut chars = escape.chars();
    match (chars.next(), chars.next()) {
        (None, _) => Ok(None),
        (Some(c), None) => Ok(Some(c)),
        _ => Err(Error::new(SqlState("22025"), "invalid escape string")
            .with_hint("Escape string must be empty or one character.")),
    }
}

/// A LIKE pattern with escape character `escape` rewritten to use backslash, LIKE's own escape (PostgreSQL's
/// like_escape): the escape becomes `\`, and a backslash that is not escaped is doubled.
fn like_escape(pattern: &str, escape: &str) -> Result<String> {
    let Some(e) = escape_char(escape)? else {
        return Ok(pattern.replace('\\', "\\\\"));
    };
    if e == '\\' {
        return Ok(pattern.to_string());
    }
    let mut out = String::with_capacity(pattern.len() + 4);
    let mut after_escape = false;
    for c in pattern.chars() {
        if c == e && !after_escape {
            out.push('\\');
            after_escape = true;
            continue;
        }
        if c == '\\' && !after_escape {
            out.push('\\');
        }
        out.push(c);
        after_escape = false;
    }
    Ok(out)
}

/// A SIMILAR TO pattern as a regular expression matching the whole text, as PostgreSQL's
/// similar_to_escape writes it: `%` is `.*`, `_` is `.`, groups do not capture, `.`, `^`, `$` and `\` are
/// literal, bracket expressions pass through, and the escape character quotes what follows it.
fn similar_to_escape(pattern: &str, escape: &str) -> Result<String> {
    let e = escape_char(escape)?;
    let mut out = String::from("^(?:");
    let (mut after_escape, mut in_class, mut quotes) = (false, false, 0);
    for c in pattern.chars() {
        if after_escape {
            if c == '"' && !in_class {
                // The separators of SUBSTRING(... SIMILAR ...): at most two.
                match quotes {
                    0 => out.push_str("){1,1}?("),
                    1 => out.push_str("){1,1}(?:"),
                    _ => {
                        return Err(Error::new(
                            SqlState("2200C"),
                            "SQL regular expression may not contain more than two escape-double-quote separators",
                        ))
                    }
                }
                quotes += 1;
            } else if c.is_ascii() && !matches!(c, '<' | '>') {
                // A class escape such as \d, as PostgreSQL allows, or a quoted punctuation mark (but `\<`
                // and `\>` are word boundaries to the regex crate, so those two go as themselves).
                out.push('\\');
                out.push(c);
            } else {
                out.push_str(&regex::escape(&c.to_string()));
            }
            after_escape = false;
        } else if Some(c) == e {
            after_escape = true;
        } else if in_class {
            if c == '\\' {
                out.push('\\');
            }
            out.push(c);
            if c == ']' {
                in_class = false;
            }
        } else {
            match c {
                '[' => {
                    out.push('[');
                    in_class = true;
                }
                '%' => out.push_str(".*"),
                '_' => out.push('.'),
                '(' => out.push_str("(?:"),
                '\\' | '.' | '^' | '$' => {
                    out.push('\\');
                    out.push(c);
                }
                c => out.push(c),
            }
        }
    }
    out.push_str(")$");
    Ok(out)
}

/// make_date's and make_timestamp's date (a negative year is BC): its astronomical year (1 BC is 0) and its
/// days since 1970-01-01, refused outside PostgreSQL's dates or when no such day exists.
fn civil_date(y: i64, m: i64, d: i64) -> Result<(i64, i64)> {
    let year = if y < 0 { y.saturating_add(1) } else { y };
    // The first date is 4714-11-24 BC (the Julian day 0).
    if !types::DATE_YEARS.contains(&year) || (year == *types::DATE_YEARS.start() && (m, d) < (11, 24)) {
        return Err(Error::new(SqlState("22008"), format!("date out of range: {year}-{m:02}-{d:02}")));
    }
    let days = types::days_from_civil(year, m, d);
    let back = types::civil_from_days(days);
    if y == 0 || !(1..=12).contains(&m) || back.1 != m || back.2 != d {
        return Err(Error::new(SqlState("22008"), format!("date field value out of range: {y}-{m:02}-{d:02}")));
    }
    Ok((year, days))
}

/// Two numerics as mantissas at their common scale, and that scale.
fn aligned(x: Decimal, y: Decimal) -> Result<(i128, i128, u32)> {
    let scale = x.scale.max(y.scale);
    let overflow = || Error::new(SqlState::NUMERIC_VALUE_OUT_OF_RANGE, "value overflows numeric format");
    Ok((x.rescale_up(scale).ok_or_else(overflow)?.mantissa, y.rescale_up(scale).ok_or_else(overflow)?.mantissa, scale))
}

fn gcd(mut x: i128, mut y: i128) -> i128 {
    while y != 0 {
        (x, y) = (y, x % y);
    }
    x.abs()
}

/// justify_days (30 days make a month), justify_hours (24 hours make a day) and justify_interval (both),
/// with PostgreSQL's rule that the parts end up with one sign.
fn justify(name: &str, i: crate::storage::value::Interval) -> Result<crate::storage::value::Interval> {
    const DAY: i64 = 86_400_000_000;
    let range = || Error::new(SqlState::NUMERIC_VALUE_OUT_OF_RANGE, "interval out of range");
    let (mut months, mut days, mut micros) = (i.months as i64, i.days as i64, i.micros);
    let whole_months = |months: &mut i64, days: &mut i64| {
        *months += *days / 30;
        *days %= 30;
    };
    let whole_days = |days: &mut i64, micros: &mut i64| {
        *days += *micros / DAY;
        *micros %= DAY;
    };
    // One sign for months and what follows them (days, then the time when days are 0).
    let month_sign = |months: &mut i64, days: &mut i64, micros: i64| {
        if *months > 0 && (*days < 0 || (*days == 0 && micros < 0)) {
            *days += 30;
            *months -= 1;
        } else if *months < 0 && (*days > 0 || (*days == 0 && micros > 0)) {
            *days -= 30;
            *months += 1;
        }
    };
    // One sign for days and the time.
    let day_sign = |days: &mut i64, micros: &mut i64| {
        if *days > 0 && *micros < 0 {
            *micros += DAY;
            *days -= 1;
        } else if *days < 0 && *micros > 0 {
            *micros -= DAY;
            *days += 1;
        }
    };
    match name {
        "justify_days" => {
            whole_months(&mut months, &mut days);
            month_sign(&mut months, &mut days, 0);
        }
        "justify_hours" => {
            whole_days(&mut days, &mut micros);
            day_sign(&mut days, &mut micros);
        }
        _ => {
            if (days > 0 && micros > 0) || (days < 0 && micros < 0) {
                whole_months(&mut months, &mut days);
            }
            whole_days(&mut days, &mut micros);
            whole_months(&mut months, &mut days);
            month_sign(&mut months, &mut days, micros);
            day_sign(&mut days, &mut micros);
        }
    }
    Ok(crate::storage::value::Interval {
        months: i32::try_from(months).map_err(|_| range())?,
        days: i32::try_from(days).map_err(|_| range())?,
        micros,
    })
}

/// PostgreSQL's largest field, 1 GB: no function builds a longer text.
const MAX_FIELD_BYTES: usize = (1 << 30) - 1;

/// Accounts for the text a function that multiplies its input (repeat, lpad, replace) is about to build:
/// refused past the largest field, as PostgreSQL refuses it, and charged to the statement's work.
fn build(env: &Env, bytes: usize) -> Result<()> {
    if bytes > MAX_FIELD_BYTES {
        return Err(Error::new(SqlState::PROGRAM_LIMIT_EXCEEDED, "requested length too large"));
    }
    env.session.charge(bytes)
}

fn lsn_text(lsn: Lsn) -> Value {
    Value::text(&lsn.to_string())
}

/// Calls a function.
pub fn call(name: &str, args: Vec<Value>, env: &Env) -> Result<Value> {
    if !not_strict(name) && args.iter().any(Value::is_null) {
        return Ok(Value::Null);
    }
    let a = |i: usize| args.get(i).cloned().ok_or_else(|| arg_error(name));
    let s = |i: usize| -> Result<String> { Ok(text_of(&a(i)?)) };
    Ok(match name {
        "lower" => Value::text(&s(0)?.to_lowercase()),
        "upper" => Value::text(&s(0)?.to_uppercase()),
        "initcap" => {
            let mut out = String::new();
            let mut start = true;
            for c in s(0)?.chars() {
                out.extend(if start { c.to_uppercase().collect::<Vec<_>>() } else { c.to_lowercase().collect() });
                start = !c.is_alphanumeric();
            }
            Value::text(&out)
        }
        "reverse" => Value::text(&s(0)?.chars().rev().collect::<String>()),
        "length" | "char_length" | "character_length" => match a(0)? {
            Value::Bytes(b) => Value::Int(b.len() as i64),
            v => Value::Int(text_of(&v).chars().count() as i64),
        },
        "octet_length" => Value::Int(s(0)?.len() as i64),
        "ascii" => Value::Int(s(0)?.chars().next().map_or(0, |c| c as i64)),
        "chr" => {
            let c = int_arg(&a(0)?)?;
            match u32::try_from(c).ok().and_then(char::from_u32) {
                Some(c) if c != '\0' => Value::text(&c.to_string()),
                _ => {
                    return Err(Error::new(
                        SqlState::PROGRAM_LIMIT_EXCEEDED,
                        format!("requested character too large for encoding: {c}"),
                    ))
                }
            }
        }
        "trim" | "btrim" | "ltrim" | "rtrim" => {
            let chars: Vec<char> = if args.len() > 1 { s(1)?.chars().collect() } else { vec![' '] };
            let v = s(0)?;
            let v = match name {
                "ltrim" => v.trim_start_matches(&chars[..]),
                "rtrim" => v.trim_end_matches(&chars[..]),
                _ => v.trim_matches(&chars[..]),
            };
            Value::text(v)
        }
        "replace" => {
            let (v, from, to) = (s(0)?, s(1)?, s(2)?);
            // An empty search string matches nowhere in PostgreSQL (Rust's replace would match between every char).
            if from.is_empty() {
                return Ok(Value::text(&v));
            }
            let hits = v.matches(&from).count();
            build(env, v.len() - hits * from.len() + hits.saturating_mul(to.len()))?;
            Value::text(&v.replace(&from, &to))
        }
        "translate" => {
            let (from, to): (Vec<char>, Vec<char>) = (s(1)?.chars().collect(), s(2)?.chars().collect());
            let out: String = s(0)?
                .chars()
                .filter_map(|c| match from.iter().position(|f| *f == c) {
                    Some(i) => to.get(i).copied(),
                    None => Some(c),
                })
                .collect();
            Value::text(&out)
        }
        "concat" => Value::text(&args.iter().filter(|v| !v.is_null()).map(text_of).collect::<String>()),
        "substr" | "substring" => {
            let chars: Vec<char> = s(0)?.chars().collect();
            let start = int_arg(&a(1)?)?;
            let end = match args.get(2) {
                Some(l) => {
                    let l = int_arg(l)?;
                    if l < 0 {
                        return Err(Error::new(SqlState::SUBSTRING_ERROR, "negative substring length not allowed"));
                    }
                    start.saturating_add(l)
                }
                None => i64::MAX,
            };
            let (from, to) = (start.max(1) - 1, end.max(1) - 1);
            let (from, to) = (from.min(chars.len() as i64) as usize, to.min(chars.len() as i64) as usize);
            Value::text(&chars[from..to.max(from)].iter().collect::<String>())
        }
        "left" | "right" => {
            let chars: Vec<char> = s(0)?.chars().collect();
            let n = int_arg(&a(1)?)?;
            let len = chars.len() as i64;
            let k = if n >= 0 { n.min(len) } else { (len + n).max(0) } as usize;
            let out: String =
                if name == "left" { chars[..k].iter().collect() } else { chars[chars.len() - k..].iter().collect() };
            Value::text(&out)
        }
        "repeat" => {
            let (v, n) = (s(0)?, usize::try_from(int_arg(&a(1)?)?).unwrap_or(0));
            build(env, v.len().saturating_mul(n))?;
            Value::text(&v.repeat(n))
        }
        "lpad" | "rpad" => {
            let v: Vec<char> = s(0)?.chars().collect();
            let n = usize::try_from(int_arg(&a(1)?)?).unwrap_or(0);
            let fill: Vec<char> = if args.len() > 2 { s(2)?.chars().collect() } else { vec![' '] };
            if v.len() >= n || fill.is_empty() {
                return Ok(Value::text(&v[..n.min(v.len())].iter().collect::<String>()));
            }
            build(env, n.saturating_mul(fill.iter().chain(&v).map(|c| c.len_utf8()).max().unwrap_or(1)))?;
            let pad: String = fill.iter().cycle().take(n - v.len()).collect();
            let v: String = v.iter().collect();
            Value::text(&if name == "lpad" { pad + &v } else { v + &pad })
        }
        "strpos" | "position" => {
            let (h, n) = (s(0)?, s(1)?);
            Value::Int(h.find(&n).map_or(0, |i| h[..i].chars().count() as i64 + 1))
        }
        "starts_with" => Value::Bool(s(0)?.starts_with(&s(1)?)),
        "split_part" => {
            let n = int_arg(&a(2)?)?;
            let text = s(0)?;
            let parts: Vec<&str> = text.split(&s(1)?).collect();
            Value::text(if n >= 1 { parts.get(n as usize - 1).copied().unwrap_or("") } else { "" })
        }
        "quote_ident" => Value::text(&crate::sql::formatting::quote_ident(&s(0)?)),
        "coalesce" => args.into_iter().find(|v| !v.is_null()).unwrap_or(Value::Null),
        "nullif" => {
            let (x, y) = (a(0)?, a(1)?);
            if !x.is_null() && !y.is_null() && compare(&x, &y)? == std::cmp::Ordering::Equal {
                Value::Null
            } else {
                x
            }
        }
        "greatest" | "least" => {
            let mut best: Option<Value> = None;
            for v in args.into_iter().filter(|v| !v.is_null()) {
                let better = match &best {
                    None => true,
                    Some(b) => {
                        let o = compare(&v, b)?;
                        if name == "greatest" {
                            o.is_gt()
                        } else {
                            o.is_lt()
                        }
                    }
                };
                if better {
                    best = Some(v);
                }
            }
            best.unwrap_or(Value::Null)
        }
        "abs" => match a(0)? {
            Value::Int(i) => Value::Int(
                i.checked_abs()
                    .ok_or_else(|| Error::new(SqlState::NUMERIC_VALUE_OUT_OF_RANGE, "integer out of range"))?,
            ),
            Value::Numeric(d) => {
                let d = d.get();
                Value::numeric(Decimal { mantissa: d.mantissa.abs(), scale: d.scale })
            }
            v => Value::Float(float_arg(&v)?.abs()),
        },
        "sign" => match a(0)? {
            Value::Int(i) => Value::Int(i.signum()),
            v => Value::Float(float_arg(&v)?.signum()),
        },
        "round" | "trunc" => {
            let places = if args.len() > 1 { int_arg(&a(1)?)?.clamp(-100, 30) } else { 0 };
            let trunc = name == "trunc";
            match a(0)? {
                Value::Int(i) if args.len() == 1 => Value::Int(i),
                // round(int, places) is round(numeric, places) in PostgreSQL.
                Value::Int(i) => {
                    Value::numeric(round_places(Decimal { mantissa: i as i128, scale: 0 }, places, trunc)?)
                }
                Value::Numeric(d) => Value::numeric(round_places(d.get(), places, trunc)?),
                v => {
                    let f = float_arg(&v)?;
                    let k = 10f64.powi(places as i32);
                    Value::Float(match () {
                        _ if trunc => (f * k).trunc() / k,
                        // round(float8) is rint(): halves go to the even neighbour.
                        _ if args.len() == 1 => f.round_ties_even(),
                        _ => (f * k).round() / k,
                    })
                }
            }
        }
        "ceil" | "ceiling" | "floor" => match a(0)? {
            Value::Int(i) => Value::Int(i),
            Value::Numeric(d) => {
                let f = d.get().to_f64();
                let r = if name == "floor" { f.floor() } else { f.ceil() };
                Value::numeric(Decimal { mantissa: r as i128, scale: 0 })
            }
            v => {
                let f = float_arg(&v)?;
                Value::Float(if name == "floor" { f.floor() } else { f.ceil() })
            }
        },
        "mod" => crate::sql::expr::binary(crate::sql::expr::BinOp::Mod, a(0)?, a(1)?)?,
        "power" | "pow" => {
            let (x, y) = (float_arg(&a(0)?)?, float_arg(&a(1)?)?);
            if x == 0.0 && y < 0.0 {
                return Err(Error::new(
                    SqlState::INVALID_ARGUMENT_FOR_POWER_FUNCTION,
                    "zero raised to a negative power is undefined",
                ));
            }
            if x < 0.0 && y.fract() != 0.0 {
                return Err(Error::new(
                    SqlState::INVALID_ARGUMENT_FOR_POWER_FUNCTION,
                    "a negative number raised to a non-integer power yields a complex result",
                ));
            }
            Value::Float(x.powf(y))
        }
        "sqrt" => {
            let f = float_arg(&a(0)?)?;
            if f < 0.0 {
                return Err(Error::new(
                    SqlState::INVALID_ARGUMENT_FOR_POWER_FUNCTION,
                    "cannot take square root of a negative number",
                ));
            }
            Value::Float(f.sqrt())
        }
        "exp" => Value::Float(float_arg(&a(0)?)?.exp()),
        "ln" | "log" => {
            let positive = |f: f64| {
                if f == 0.0 {
                    return Err(Error::new(SqlState::INVALID_ARGUMENT_FOR_LOGARITHM, "cannot take logarithm of zero"));
                }
                if f < 0.0 {
                    return Err(Error::new(
                        SqlState::INVALID_ARGUMENT_FOR_LOGARITHM,
                        "cannot take logarithm of a negative number",
                    ));
                }
                Ok(f)
            };
            match args.len() {
                1 => {
                    let f = positive(float_arg(&a(0)?)?)?;
                    Value::Float(if name == "ln" { f.ln() } else { f.log10() })
                }
                // log(base, x), in double precision here (numeric in PostgreSQL).
                2 if name == "log" => {
                    let (base, x) = (positive(float_arg(&a(0)?)?)?, positive(float_arg(&a(1)?)?)?);
                    if base == 1.0 {
                        return Err(Error::new(SqlState::DIVISION_BY_ZERO, "division by zero"));
                    }
                    // Through log2, which gave exact answers where ln or log10 missed (log(5, 125), log(10, 0.001)).
                    Value::Float(x.log2() / base.log2())
                }
                _ => return Err(arg_error(name)),
            }
        }
        "pi" => Value::Float(std::f64::consts::PI),
        "degrees" => Value::Float(float_arg(&a(0)?)?.to_degrees()),
        "radians" => Value::Float(float_arg(&a(0)?)?.to_radians()),
        // splitmix64: 53 random bits make a double in [0, 1).
        "random" => {
            let state = env.session.random.get().wrapping_add(0x9E37_79B9_7F4A_7C15);
            env.session.random.set(state);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            Value::Float((z >> 11) as f64 / (1u64 << 53) as f64)
        }
        // The same seed gives the same sequence in this session (not PostgreSQL's numbers: its generator
        // differs).
        "setseed" => {
            let seed = float_arg(&a(0)?)?;
            if !(-1.0..=1.0).contains(&seed) {
                return Err(Error::new(
                    SqlState::INVALID_PARAMETER_VALUE,
                    format!("setseed parameter {seed} is out of allowed range [-1,1]"),
                ));
            }
            env.session.random.set((seed * (1u64 << 53) as f64) as i64 as u64);
            Value::text("")
        }
        "now" | "current_timestamp" | "transaction_timestamp" => Value::TimestampTz(env.session.now),
        "statement_timestamp" | "clock_timestamp" => Value::TimestampTz(types::now_usecs()),
        "current_date" => types::cast(Value::TimestampTz(env.session.now), &DataType::Date)?,
        "timezone" => {
            let zone = crate::sql::timezone::load(&s(0)?).map_err(|_| {
                Error::new(
                    SqlState::INVALID_PARAMETER_VALUE,
                    format!("time zone \"{}\" not recognized", s(0).unwrap_or_default()),
                )
            })?;
            match a(1)? {
                Value::Null => Value::Null,
                Value::Timestamp(t) => Value::TimestampTz(zone.to_utc(t)),
                v => match types::cast(v, &DataType::TimestampTz)? {
                    Value::TimestampTz(t) => Value::Timestamp(t + zone.offset(t) as i64 * 1_000_000),
                    _ => Value::Null,
                },
            }
        }
        "date_part" | "extract" => {
            let field = s(0)?.to_lowercase();
            match date_part(&field, &a(1)?, name == "extract")? {
                None => Value::Null,
                // extract() is numeric in PostgreSQL 15, date_part() double precision.
                Some((mantissa, scale)) if name == "extract" => Value::numeric(Decimal { mantissa, scale }),
                Some((mantissa, scale)) => Value::Float(mantissa as f64 / 10f64.powi(scale as i32)),
            }
        }
        "date_trunc" => {
            let field = s(0)?.to_lowercase();
            date_trunc(&field, a(1)?)?
        }
        "version" => Value::text(&version()),
        "current_setting" => {
            let n = s(0)?;
            match env.session.current_setting(&n) {
                Some(v) => Value::text(&v),
                None if args.get(1).is_some_and(|m| matches!(m, Value::Bool(true))) => Value::Null,
                None => return Err(crate::sql::params::unrecognized(&n)),
            }
        }
        "set_config" => a(1)?,
        "pg_backend_pid" => Value::Int(env.session.pid as i64),
        "pg_is_in_recovery" => Value::Bool(env.session.engine.in_recovery()),
        "tandem_sync_fallback" => Value::Bool(env.session.replication.as_ref().is_some_and(|r| r.syncrep.degraded())),
        "tandem_fence" => {
            env.session.engine.fence(&s(0)?)?;
            Value::Bool(true)
        }
        "tandem_fenced" => Value::Bool(env.session.engine.fenced().is_some()),
        "pg_sleep" => {
            let secs = match args.as_slice() {
                [Value::Null] => return Ok(Value::Null),
                [v] => float_arg(v)?,
                _ => return Err(arg_error(name)),
            };
            let _waiting = crate::activity::waiting(crate::activity::Wait::PgSleep);
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs_f64(secs.clamp(0.0, 1e9));
            while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
                crate::activity::check_interrupts()?;
                std::thread::sleep(left.min(std::time::Duration::from_millis(10)));
            }
            Value::text("")
        }
        "pg_cancel_backend" | "pg_terminate_backend" => {
            let terminate = name == "pg_terminate_backend";
            if args.is_empty() || args.len() > 1 + terminate as usize {
                return Err(arg_error(name));
            }
            if matches!(args[0], Value::Null) {
                return Ok(Value::Null);
            }
            let pid = int_arg(&args[0])?;
            let timeout_ms = match args.get(1) {
                Some(v) if terminate && !matches!(v, Value::Null) => int_arg(v)?,
                _ => 0,
            };
            if timeout_ms < 0 {
                return Err(Error::new(SqlState::INVALID_PARAMETER_VALUE, "\"timeout\" must not be negative"));
            }
            let registry = env.session.activity.as_ref();
            let Some(backend) = registry.and_then(|r| r.get(pid as i32)) else {
                env.session.warnings.borrow_mut().push(format!("PID {pid} is not a PostgreSQL backend process"));
                return Ok(Value::Bool(false));
            };
            if terminate {
                backend.terminate();
            } else if pid == env.session.pid as i64 {
                return Err(Error::new(SqlState::QUERY_CANCELED, "canceling statement due to user request"));
            } else {
                backend.cancel();
            }
            if terminate && timeout_ms > 0 && pid != env.session.pid as i64 {
                let deadline = std::time::Instant::now() + std::time::Duration::from_millis(timeout_ms as u64);
                let registry = registry.expect("the backend was found in it");
                while registry.get(pid as i32).is_some() {
                    if std::time::Instant::now() >= deadline {
                        env.session
                            .warnings
                            .borrow_mut()
                            .push(format!("backend with PID {pid} did not terminate within {timeout_ms} milliseconds"));
                        return Ok(Value::Bool(false));
                    }
                    std::thread::sleep(std::time::Duration::from_millis(2));
                }
            }
            Value::Bool(true)
        }
        "pg_promote" => {
            let wait = !matches!(args.first(), Some(Value::Bool(false)));
            let secs = match args.get(1) {
                Some(v) => int_arg(v)?.max(1) as u64,
                None => 60,
            };
            let ctx = env
                .session
                .replication
                .as_ref()
                .ok_or_else(|| Error::new(SqlState("55000"), "recovery is not in progress"))?;
            if wait {
                match ctx.promote(std::time::Duration::from_secs(secs)) {
                    Ok(_) => Value::Bool(true),
                    Err(e) if e.code == SqlState("57014") => Value::Bool(false),
                    Err(e) => return Err(e),
                }
            } else {
                let ctx = ctx.clone();
                if !ctx.engine.in_recovery() {
                    return Err(Error::new(SqlState("55000"), "recovery is not in progress"));
                }
                std::thread::spawn(move || {
                    if let Err(e) = ctx.promote(std::time::Duration::from_secs(secs)) {
                        eprintln!("tandem: promotion failed: {e}");
                    }
                });
                Value::Bool(true)
            }
        }
        // void in PostgreSQL, whose text output is empty.
        "pg_drop_replication_slot" => {
            let ctx = env.session.replication.as_ref().ok_or_else(|| {
                Error::new(
                    SqlState::UNDEFINED_OBJECT,
                    format!("replication slot \"{}\" does not exist", s(0).unwrap_or_default()),
                )
            })?;
            ctx.slots.drop_slot(&s(0)?)?;
            Value::text("")
        }
        "pg_reload_conf" => match &env.session.replication {
            Some(r) => {
                r.reload()?;
                Value::Bool(true)
            }
            None => Value::Bool(false),
        },
        "pg_current_wal_lsn" | "pg_current_wal_insert_lsn" => lsn_text(env.session.engine.wal().insert_lsn()),
        "pg_current_wal_flush_lsn" => lsn_text(env.session.engine.wal().flushed()),
        // On a primary these are NULL, as in PostgreSQL.
        "pg_last_wal_receive_lsn" if env.session.engine.in_recovery() => lsn_text(env.session.engine.wal().flushed()),
        "pg_last_wal_replay_lsn" if env.session.engine.in_recovery() => {
            lsn_text(env.session.engine.replay_status().applied)
        }
        "pg_last_wal_receive_lsn" | "pg_last_wal_replay_lsn" => Value::Null,
        "pg_last_xact_replay_timestamp" => match env.session.engine.replay_status().last_commit_time {
            Some(t) if env.session.engine.in_recovery() => Value::TimestampTz(t),
            _ => Value::Null,
        },
        "pg_wal_lsn_diff" => {
            let parse = |v: String| {
                Lsn::from_str(&v).map_err(|_| {
                    Error::new(
                        SqlState::INVALID_TEXT_REPRESENTATION,
                        format!("invalid input syntax for type pg_lsn: \"{v}\""),
                    )
                })
            };
            let (x, y) = (parse(s(0)?)?, parse(s(1)?)?);
            Value::numeric(Decimal { mantissa: x.0 as i128 - y.0 as i128, scale: 0 })
        }
        "current_schema" => Value::text("public"),
        "current_schemas" => Value::text("{pg_catalog,public}"),
        "current_user" | "session_user" | "user" | "pg_get_userbyid" => Value::text(&env.session.user),
        "current_database" => Value::text(&env.session.database),
        "pg_encoding_to_char" => Value::text("UTF8"),
        "pg_table_is_visible"
        | "pg_relation_is_publishable"
        | "pg_has_role"
        | "has_table_privilege"
        | "has_database_privilege"
        | "has_schema_privilege"
        | "pg_function_is_visible"
        | "pg_type_is_visible" => Value::Bool(name != "pg_relation_is_publishable"),
        "array_position" => {
            // Arrays are carried in their text form, `{a,b,c}`.
            let arr = s(0)?;
            let needle = s(1)?;
            let items: Vec<&str> =
                arr.trim_start_matches('{').trim_end_matches('}').split(',').map(|x| x.trim_matches('"')).collect();
            items.iter().position(|x| *x == needle).map_or(Value::Null, |i| Value::Int(i as i64 + 1))
        }
        "array_upper" => {
            let arr = s(0)?;
            let inner = arr.trim_start_matches('{').trim_end_matches('}');
            if inner.is_empty() {
                Value::Null
            } else {
                Value::Int(inner.split(',').count() as i64)
            }
        }
        // pg_proc is empty (tandem has no user-defined functions), so these never describe one.
        "obj_description"
        | "col_description"
        | "shobj_description"
        | "inet_server_addr"
        | "pg_get_function_result"
        | "pg_get_function_arguments" => Value::Null,
        "pg_tablespace_location" => Value::text(""),
        "pg_relation_size" | "pg_total_relation_size" => Value::Int(0),
        // Tables live in memory, in trees shared between versions: no file holds one table, so there is
        // no size to report for it (NULL, which psql's \dt+ shows as blank).
        "pg_table_size" | "pg_indexes_size" => Value::Null,
        "pg_database_size" => database_size(&a(0)?, env)?,
        "pg_size_pretty" => Value::text(&size_pretty(int_arg(&a(0)?)?)),
        "format_type" => {
            let oid = int_arg(&a(0)?)?;
            let typmod = match args.get(1) {
                Some(Value::Null) | None => -1,
                Some(v) => int_arg(v)?,
            };
            match crate::sql::catalog::type_by_oid(oid as u32, typmod) {
                Some(t) => Value::text(&t),
                None => Value::text("???"),
            }
        }
        "pg_get_indexdef" => {
            crate::sql::catalog::index_def(env.state, int_arg(&a(0)?)? as u32).map_or(Value::Null, |s| Value::text(&s))
        }
        "pg_get_constraintdef" => crate::sql::catalog::constraint_def(env.state, int_arg(&a(0)?)? as u32)
            .map_or(Value::Null, |s| Value::text(&s)),
        "pg_get_expr" => match a(0)? {
            Value::Null => Value::Null,
            v => v,
        },
        "pg_get_statisticsobjdef_columns" => Value::Null,
        "nextval" | "currval" | "setval" => sequence_call(name, &args, env)?,
        "md5" => Value::text(&crate::sql::formatting::md5_hex(s(0)?.as_bytes())),
        "regexp_replace" => {
            let flags = if args.len() > 3 { s(3)? } else { String::new() };
            let replaced = regexp_replace(&s(0)?, &s(1)?, &s(2)?, &flags)?;
            build(env, replaced.len())?;
            Value::text(&replaced)
        }
        "format" => {
            let Some(Value::Text(f)) = args.first() else { return Err(arg_error(name)) };
            Value::text(&crate::sql::formatting::format(f, &args[1..])?)
        }
        "encode" => {
            let Value::Bytes(b) = a(0)? else { return Err(arg_error(name)) };
            Value::text(&crate::sql::formatting::encode(&b, &s(1)?)?)
        }
        "decode" => Value::Bytes(crate::sql::formatting::decode(&s(0)?, &s(1)?)?.into()),
        "gen_random_uuid" => {
            let mut b = [0u8; 16];
            // SAFETY: getrandom writes at most the 16 bytes of the buffer it is given.
            let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
            if n != 16 {
                return Err(Error::internal("getrandom failed"));
            }
            b[6] = (b[6] & 0x0f) | 0x40;
            b[8] = (b[8] & 0x3f) | 0x80;
            let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
            Value::text(&format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..]))
        }
        "to_timestamp" => {
            let secs = match types::cast(a(0)?, &DataType::Float8)? {
                Value::Float(f) if f.is_finite() && f.abs() < 2.1e11 => f,
                _ => return Err(Error::new(SqlState("22008"), "timestamp out of range")),
            };
            Value::TimestampTz(((secs - 946_684_800.0) * 1e6).round() as i64)
        }
        "concat_ws" if args.len() < 2 => return Err(arg_error(name)),
        "concat_ws" => match args.split_first() {
            None | Some((Value::Null, _)) => Value::Null,
            Some((sep, rest)) => {
                Value::text(&rest.iter().filter(|v| !v.is_null()).map(text_of).collect::<Vec<_>>().join(&text_of(sep)))
            }
        },
        "quote_literal" => Value::text(&crate::sql::formatting::quote_literal(&s(0)?)),
        "quote_nullable" => match a(0)? {
            Value::Null => Value::text("NULL"),
            v => Value::text(&crate::sql::formatting::quote_literal(&text_of(&v))),
        },
        "num_nonnulls" | "num_nulls" => {
            let nulls = args.iter().filter(|v| v.is_null()).count();
            Value::Int(if name == "num_nulls" { nulls } else { args.len() - nulls } as i64)
        }
        "bit_length" => match a(0)? {
            Value::Bytes(b) => Value::Int(b.len() as i64 * 8),
            v => Value::Int(text_of(&v).len() as i64 * 8),
        },
        // Rust's cube root, which can differ from the C library's in the last digit (glibc's cbrt(27) is
        // 3.0000000000000004, PostgreSQL's answer there; this one says 3).
        "cbrt" => Value::Float(float_arg(&a(0)?)?.cbrt()),
        "log10" => return call("log", args, env),
        "gcd" | "lcm" if args.iter().any(|v| !matches!(v, Value::Int(_))) => {
            let (x, y, scale) = aligned(numeric_arg(&a(0)?)?, numeric_arg(&a(1)?)?)?;
            let overflow = || Error::new(SqlState::NUMERIC_VALUE_OUT_OF_RANGE, "value overflows numeric format");
            let g = gcd(x, y);
            let mantissa = if name == "gcd" {
                g
            } else if x == 0 || y == 0 {
                0
            } else {
                (x / g).checked_mul(y).ok_or_else(overflow)?.abs()
            };
            Value::numeric(Decimal { mantissa, scale })
        }
        "gcd" | "lcm" => {
            let (x, y) = (int_arg(&a(0)?)?, int_arg(&a(1)?)?);
            let range = || Error::new(SqlState::NUMERIC_VALUE_OUT_OF_RANGE, "bigint out of range");
            let g = gcd(x as i128, y as i128);
            let r = if name == "gcd" {
                g
            } else if x == 0 || y == 0 {
                0
            } else {
                (x as i128 / g * y as i128).abs()
            };
            Value::Int(i64::try_from(r).map_err(|_| range())?)
        }
        "div" => {
            let (x, y, _) = aligned(numeric_arg(&a(0)?)?, numeric_arg(&a(1)?)?)?;
            if y == 0 {
                return Err(Error::new(SqlState::DIVISION_BY_ZERO, "division by zero"));
            }
            Value::numeric(Decimal { mantissa: x / y, scale: 0 })
        }
        "factorial" => {
            let n = int_arg(&a(0)?)?;
            if n < 0 {
                return Err(Error::new(
                    SqlState::NUMERIC_VALUE_OUT_OF_RANGE,
                    "factorial of a negative number is undefined",
                ));
            }
            let mut f: i128 = 1;
            for k in 2..=n as i128 {
                f = f.checked_mul(k).ok_or_else(|| {
                    Error::new(SqlState::NUMERIC_VALUE_OUT_OF_RANGE, "value overflows numeric format")
                })?;
            }
            Value::numeric(Decimal { mantissa: f, scale: 0 })
        }
        "scale" => Value::Int(numeric_arg(&a(0)?)?.scale as i64),
        "width_bucket" => {
            let (x, lo, hi) = (float_arg(&a(0)?)?, float_arg(&a(1)?)?, float_arg(&a(2)?)?);
            let count = int_arg(&a(3)?)?;
            let bad = |m: &str| Error::new(SqlState("2201G"), m.to_string());
            if count <= 0 || count > i32::MAX as i64 {
                return Err(bad("count must be greater than zero"));
            }
            if x.is_nan() || lo.is_nan() || hi.is_nan() {
                return Err(bad("operand, lower bound, and upper bound cannot be NaN"));
            }
            if !lo.is_finite() || !hi.is_finite() {
                return Err(bad("lower and upper bounds must be finite"));
            }
            let bucket = |pos: f64, width: f64| ((count as f64 * (pos / width)).floor() as i64 + 1).min(count);
            Value::Int(match lo.partial_cmp(&hi) {
                Some(std::cmp::Ordering::Less) if x < lo => 0,
                Some(std::cmp::Ordering::Less) if x >= hi => count + 1,
                Some(std::cmp::Ordering::Less) => bucket(x - lo, hi - lo),
                Some(std::cmp::Ordering::Greater) if x > lo => 0,
                Some(std::cmp::Ordering::Greater) if x <= hi => count + 1,
                Some(std::cmp::Ordering::Greater) => bucket(lo - x, lo - hi),
                _ => return Err(bad("lower bound cannot equal upper bound")),
            })
        }
        // Dates, timestamps and intervals here are always finite (tandem has no infinity for them).
        "isfinite" => Value::Bool(match a(0)? {
            Value::Float(f) => f.is_finite(),
            _ => true,
        }),
        "justify_days" | "justify_hours" | "justify_interval" => {
            let i = match types::cast(a(0)?, &DataType::Interval)? {
                Value::Interval(i) => i,
                _ => return Err(arg_error(name)),
            };
            Value::interval(justify(name, *i)?)
        }
        "make_timestamp" => {
            let (y, m, d) = (int_arg(&a(0)?)?, int_arg(&a(1)?)?, int_arg(&a(2)?)?);
            let (h, mi, sec) = (int_arg(&a(3)?)?, int_arg(&a(4)?)?, float_arg(&a(5)?)?);
            let (year, days) = civil_date(y, m, d)?;
            let usecs = (sec * 1e6).round();
            // 24:00:00 is allowed, as in PostgreSQL; nothing later.
            if !(0..=24).contains(&h)
                || !(0..60).contains(&mi)
                || !(0.0..=60e6).contains(&usecs)
                || (h == 24 && (mi > 0 || usecs > 0.0))
            {
                return Err(Error::new(
                    SqlState("22008"),
                    format!("time field value out of range: {h}:{mi:02}:{sec:02}"),
                ));
            }
            // PostgreSQL's last timestamp is in 294276.
            if year > 294_276 {
                return Err(Error::new(
                    SqlState("22008"),
                    format!("timestamp out of range: {y}-{m:02}-{d:02} {h}:{mi:02}:{sec:02}"),
                ));
            }
            Value::Timestamp((days - 10957) * 86_400_000_000 + (h * 3600 + mi * 60) * 1_000_000 + usecs as i64)
        }
        "date_bin" => {
            let stride = match types::cast(a(0)?, &DataType::Interval)? {
                Value::Interval(i) => i,
                _ => return Err(arg_error(name)),
            };
            if stride.months != 0 {
                return Err(Error::new(
                    SqlState::FEATURE_NOT_SUPPORTED,
                    "timestamps cannot be binned into intervals containing months or years",
                ));
            }
            let step = stride.days as i64 * 86_400_000_000 + stride.micros;
            if step <= 0 {
                return Err(Error::new(SqlState("22008"), "stride must be greater than zero"));
            }
            let (source, origin) = (a(1)?, a(2)?);
            let tz = matches!(source, Value::TimestampTz(_));
            let ty = if tz { DataType::TimestampTz } else { DataType::Timestamp };
            let instant = |v: Value| -> Result<i64> {
                match types::cast(v, &ty)? {
                    Value::Timestamp(t) | Value::TimestampTz(t) => Ok(t),
                    _ => Err(arg_error(name)),
                }
            };
            let (t, o) = (instant(source)?, instant(origin)?);
            let range = || Error::new(SqlState("22008"), "timestamp out of range");
            let diff = t.checked_sub(o).ok_or_else(range)?;
            let mut delta = diff - diff % step;
            // Before the origin, a bin starts at or before the source, as for those after it.
            if diff < 0 && diff % step != 0 {
                delta -= step;
            }
            let bin = o.checked_add(delta).ok_or_else(range)?;
            if tz {
                Value::TimestampTz(bin)
            } else {
                Value::Timestamp(bin)
            }
        }
        "overlay" => {
            let (v, with): (Vec<char>, String) = (s(0)?.chars().collect(), s(1)?);
            let from = int_arg(&a(2)?)?;
            let len = match args.get(3) {
                Some(l) => int_arg(l)?,
                None => with.chars().count() as i64,
            };
            // substring(s, 1, from - 1) || with || substring(s, from + len), as PostgreSQL defines it (so a
            // negative length repeats part of s).
            if from < 1 {
                return Err(Error::new(SqlState::SUBSTRING_ERROR, "negative substring length not allowed"));
            }
            let head = ((from - 1) as usize).min(v.len());
            let tail = from.saturating_add(len).saturating_sub(1).clamp(0, v.len() as i64) as usize;
            build(env, (v.len() * 2).saturating_add(with.len()))?;
            let mut out: String = v[..head].iter().collect();
            out.push_str(&with);
            out.extend(&v[tail..]);
            Value::text(&out)
        }
        "substring_regex" => {
            let (v, pattern) = (s(0)?, s(1)?);
            let re = regex::Regex::new(&pattern)
                .map_err(|e| Error::new(SqlState("2201B"), format!("invalid regular expression: {e}")))?;
            match re.captures(&v) {
                None => Value::Null,
                // The first parenthesized part if the pattern has one, else the whole match.
                Some(c) if c.len() > 1 => c.get(1).map_or(Value::Null, |m| Value::text(m.as_str())),
                Some(c) => Value::text(c.get(0).map_or("", |m| m.as_str())),
            }
        }
        "like_escape" => Value::text(&like_escape(&s(0)?, &s(1)?)?),
        "similar_to_escape" => {
            let escape = if args.len() > 1 { s(1)? } else { "\\".to_string() };
            Value::text(&similar_to_escape(&s(0)?, &escape)?)
        }
        "make_date" => {
            let (y, m, d) = (int_arg(&a(0)?)?, int_arg(&a(1)?)?, int_arg(&a(2)?)?);
            let (_, days) = civil_date(y, m, d)?;
            Value::Date((days - 10957) as i32)
        }
        "age" => {
            let instant = |v: Value| -> Result<i64> {
                match v {
                    Value::Timestamp(t) => Ok(t),
                    Value::TimestampTz(t) => Ok(crate::sql::timezone::to_local(t)),
                    v => match types::cast(v, &DataType::Timestamp)? {
                        Value::Timestamp(t) => Ok(t),
                        _ => Err(arg_error("age")),
                    },
                }
            };
            let (x, y) = if args.len() == 1 {
                let today = crate::sql::timezone::to_local(env.session.now).div_euclid(86_400_000_000) * 86_400_000_000;
                (today, instant(a(0)?)?)
            } else {
                (instant(a(0)?)?, instant(a(1)?)?)
            };
            Value::interval(age(x, y))
        }
        "to_char" => {
            let template = s(1)?;
            match a(0)? {
                Value::Timestamp(t) => Value::text(&crate::sql::formatting::format_time(t, &template)),
                Value::TimestampTz(t) => {
                    Value::text(&crate::sql::formatting::format_time(crate::sql::timezone::to_local(t), &template))
                }
                Value::Date(d) => Value::text(&crate::sql::formatting::format_time(
                    d as i64 * crate::storage::value::USECS_PER_DAY,
                    &template,
                )),
                v @ (Value::Int(_) | Value::Numeric(_) | Value::Float(_)) => {
                    let d = match types::cast(v, &DataType::Numeric(None))? {
                        Value::Numeric(d) => d.get(),
                        _ => return Err(arg_error(name)),
                    };
                    Value::text(&crate::sql::formatting::format_number(d, &template)?)
                }
                _ => return Err(arg_error(name)),
            }
        }
        "convert_from" => match a(0)? {
            Value::Bytes(b) => Value::text(std::str::from_utf8(&b).map_err(|e| {
                Error::new(
                    SqlState::CHARACTER_NOT_IN_REPERTOIRE,
                    format!(
                        "invalid byte sequence for encoding \"UTF8\": 0x{:02x}",
                        b.get(e.valid_up_to()).copied().unwrap_or(0)
                    ),
                )
            })?),
            v => Value::text(&text_of(&v)),
        },
        "array_to_string" => Value::text(s(0)?.trim_start_matches('{').trim_end_matches('}')),
        "__unsupported" => {
            return Err(Error::new(SqlState::FEATURE_NOT_SUPPORTED, format!("{} is not supported", s(0)?)))
        }
        _ => return Err(Error::new(SqlState::UNDEFINED_FUNCTION, format!("function {name}() does not exist"))),
    })
}

/// pg_size_pretty: bytes below 10 kB, then the largest unit (kB, MB, GB, TB, PB) that keeps the number
/// under 20,480 (before rounding), rounded half away from zero.
fn size_pretty(size: i64) -> String {
    if size.unsigned_abs() < 10 * 1024 {
        return format!("{size} bytes");
    }
    // Keep one more bit than the unit needs, for rounding (dividing, so negative sizes mirror positive).
    let mut v = size / 512;
    for (i, unit) in ["kB", "MB", "GB", "TB", "PB"].iter().enumerate() {
        if v.unsigned_abs() < 20 * 1024 - 1 || i == 4 {
            let rounded = (v + if v < 0 { -1 } else { 1 }) / 2;
            return format!("{rounded} {unit}");
        }
        v /= 1024;
    }
    unreachable!("the last unit returns")
}

/// pg_database_size: the size of the database's image on disk, the latest checkpoint's snapshot (a
/// tandem database is that file plus the WAL after it). By name or by oid, of the one database there is.
fn database_size(db: &Value, env: &Env) -> Result<Value> {
    let named = match db {
        Value::Int(oid) => matches!(*oid, 5 | 16384),
        v => {
            let n = text_of(v);
            n == "postgres" || n == env.session.database
        }
    };
    if !named {
        return Err(Error::new(SqlState("3D000"), format!("database \"{}\" does not exist", text_of(db))));
    }
    let dir = env.session.engine.dir().join(crate::snapshot::SNAPSHOT_DIR);
    let newest = std::fs::read_dir(&dir)
        .map_err(|e| Error::io(format!("could not read \"{}\"", dir.display()), e))?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".snap"))
        .max_by_key(|e| e.file_name());
    Ok(Value::Int(newest.and_then(|e| e.metadata().ok()).map_or(0, |m| m.len() as i64)))
}

/// Rounds (or, for trunc, cuts) a numeric to `places` fractional digits; negative places round to tens,
/// hundreds and so on, as PostgreSQL's round(numeric, int) and trunc(numeric, int) do.
fn round_places(d: Decimal, places: i64, trunc: bool) -> Result<Decimal> {
    let cut = |d: Decimal, scale: u32| -> Decimal {
        if trunc {
            let digits = d.scale.saturating_sub(scale);
            let m = 10i128.checked_pow(digits).map_or(0, |div| d.mantissa / div);
            Decimal { mantissa: m, scale: d.scale.min(scale) }.rescale_up(scale).unwrap_or(d)
        } else {
            round_decimal(d, scale)
        }
    };
    if places >= 0 {
        return Ok(cut(d, places as u32));
    }
    let tens = places.unsigned_abs() as u32;
    // Dividing by 10^tens is only a larger scale: cut that to an integer, then multiply back.
    let q = cut(Decimal { mantissa: d.mantissa, scale: d.scale.saturating_add(tens) }, 0);
    if q.mantissa == 0 {
        return Ok(q);
    }
    10i128
        .checked_pow(tens)
        .and_then(|k| q.mantissa.checked_mul(k))
        .map(|mantissa| Decimal { mantissa, scale: 0 })
        .ok_or_else(|| Error::new(SqlState::NUMERIC_VALUE_OUT_OF_RANGE, "value overflows numeric format"))
}

/// nextval, currval and setval. The sequence is named by text (`'s'`, `'public.s'`) or by oid (`'s'::regclass`).
fn sequence_call(name: &str, args: &[Value], env: &Env) -> Result<Value> {
    let id = match args.first() {
        Some(Value::Int(oid)) => *oid as u32,
        Some(v) => {
            let text = text_of(v);
            let n = text.rsplit('.').next().unwrap_or("").trim_matches('"').to_string();
            env.state
                .sequence(&n)
                .map(|d| d.id)
                .ok_or_else(|| Error::new(SqlState::UNDEFINED_TABLE, format!("relation \"{text}\" does not exist")))?
        }
        None => return Err(arg_error(name)),
    };
    if name == "currval" {
        return env
            .session
            .currvals
            .borrow()
            .get(&id)
            .map(|v| Value::Int(*v))
            .ok_or_else(|| Error::new(SqlState("55000"), "currval of sequence is not yet defined in this session"));
    }
    let cell = env
        .txn
        .ok_or_else(|| Error::new(SqlState::FEATURE_NOT_SUPPORTED, format!("{name}() cannot be called here")))?;
    let mut txn = cell.try_borrow_mut().map_err(|_| Error::internal("transaction in use"))?;
    let value = if name == "nextval" {
        txn.nextval(id)?
    } else {
        let v = int_arg(args.get(1).ok_or_else(|| arg_error(name))?)?;
        let called = match args.get(2) {
            Some(Value::Bool(b)) => *b,
            _ => true,
        };
        txn.setval(id, v, called)?
    };
    env.session.currvals.borrow_mut().insert(id, value);
    Ok(Value::Int(value))
}

/// The text of version().
pub fn version() -> String {
    format!("PostgreSQL {} on {}-linux, compiled by rustc, 64-bit", crate::SERVER_VERSION, std::env::consts::ARCH)
}

/// A field of a date, time or interval as an exact decimal (mantissa, scale), as PostgreSQL 15's extract
/// gives it: seconds with six decimals, milliseconds with three, everything else whole. `of_date`: a date
/// has no time of day to extract (PostgreSQL's extract refuses it; date_part reads the date as midnight).
fn date_part(field: &str, v: &Value, of_date: bool) -> Result<Option<(i128, u32)>> {
    if let Value::Interval(i) = v {
        return crate::sql::interval::part(i, field).map(Some).ok_or_else(|| {
            Error::new(SqlState::INVALID_PARAMETER_VALUE, format!("unit \"{field}\" not recognized for type interval"))
        });
    }
    let (usecs, date) = match v {
        Value::Null => return Ok(None),
        Value::Date(d) => (*d as i64 * 86_400_000_000, of_date),
        Value::Timestamp(t) => (*t, false),
        // The fields of a time with time zone are those of the session's clocks.
        Value::TimestampTz(t) => (crate::sql::timezone::to_local(*t), false),
        v => match types::cast(v.clone(), &DataType::Timestamp)? {
            Value::Timestamp(t) => (t, false),
            _ => return Ok(None),
        },
    };
    let days = usecs.div_euclid(86_400_000_000);
    let rem = usecs.rem_euclid(86_400_000_000) as i128;
    let (y, m, d) = types::civil_from_days(days + 10957);
    let (y, m, d) = (y as i128, m as i128, d as i128);
    let dow = (days + 6).rem_euclid(7) as i128;
    let isodow = if dow == 0 { 7 } else { dow };
    let doy = (days + 10957 - types::days_from_civil(y as i64, 1, 1) + 1) as i128;
    let in_minute = rem % 60_000_000;
    let whole = |n: i128| (n, 0u32);
    let time = |part: (i128, u32)| -> Result<(i128, u32)> {
        if date {
            return Err(Error::new(
                SqlState::FEATURE_NOT_SUPPORTED,
                format!("unit \"{field}\" not supported for type date"),
            ));
        }
        Ok(part)
    };
    Ok(Some(match field {
        "year" | "years" => whole(if y > 0 { y } else { y - 1 }),
        "month" | "months" | "mon" | "mons" => whole(m),
        "day" | "days" => whole(d),
        "hour" | "hours" => time(whole(rem / 3_600_000_000))?,
        "minute" | "minutes" => time(whole(rem / 60_000_000 % 60))?,
        "second" | "seconds" => time((in_minute, 6))?,
        "millisecond" | "milliseconds" => time((in_minute, 3))?,
        "microsecond" | "microseconds" => time(whole(in_minute))?,
        "epoch" if date => whole(usecs as i128 / 1_000_000 + 946_684_800),
        "epoch" => {
            let instant = if let Value::TimestampTz(t) = v { *t } else { usecs };
            (instant as i128 + 946_684_800_000_000, 6)
        }
        "dow" => whole(dow),
        "isodow" => whole(isodow),
        "doy" => whole(doy),
        "quarter" => whole((m - 1) / 3 + 1),
        "decade" | "decades" => whole(if y >= 0 { y / 10 } else { -((8 - (y - 1)) / 10) }),
        "century" | "centuries" => whole(if y > 0 { (y + 99) / 100 } else { -((99 - (y - 1)) / 100) }),
        "millennium" | "millennia" => whole(if y > 0 { (y + 999) / 1000 } else { -((999 - (y - 1)) / 1000) }),
        "week" | "weeks" => whole(iso_week(y, doy, isodow).1),
        "isoyear" => whole(iso_week(y, doy, isodow).0),
        _ => {
            let ty = if date { "date".into() } else { types::type_of_value(v).sql_name() };
            return Err(Error::new(
                SqlState::INVALID_PARAMETER_VALUE,
                format!("unit \"{field}\" not recognized for type {ty}"),
            ));
        }
    }))
}

/// regexp_replace: PostgreSQL's replacement text (`\\1` for a group, `\\&` for the match) and flags (`g` for
/// every match, `i` to ignore case).
fn regexp_replace(text: &str, pattern: &str, replacement: &str, flags: &str) -> Result<String> {
    if let Some(f) = flags.chars().find(|c| !"gi".contains(*c)) {
        return Err(Error::new(
            SqlState::INVALID_PARAMETER_VALUE,
            format!("invalid regular expression option: \"{f}\""),
        ));
    }
    let pattern = if flags.contains('i') { format!("(?i){pattern}") } else { pattern.to_string() };
    let re = regex::Regex::new(&pattern)
        .map_err(|e| Error::new(SqlState("2201B"), format!("invalid regular expression: {e}")))?;
    let mut rep = String::new();
    let mut chars = replacement.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, chars.peek().copied()) {
            ('\\', Some(d)) if d.is_ascii_digit() => {
                chars.next();
                rep.push_str(&format!("${{{d}}}"));
            }
            ('\\', Some('&')) => {
                chars.next();
                rep.push_str("${0}");
            }
            ('\\', Some('\\')) => {
                chars.next();
                rep.push('\\');
            }
            ('$', _) => rep.push_str("$$"),
            (c, _) => rep.push(c),
        }
    }
    Ok(if flags.contains('g') { re.replace_all(text, rep.as_str()) } else { re.replace(text, rep.as_str()) }
        .into_owned())
}

/// age(x, y): x - y in years, months and days by the calendar (a day count that goes negative borrows the
/// length of the earlier date's month, as PostgreSQL's timestamp_age does), then the time of day.
fn age(x: i64, y: i64) -> crate::storage::value::Interval {
    let negative = x < y;
    let (a, b) = if negative { (y, x) } else { (x, y) };
    let split = |t: i64| {
        let days = t.div_euclid(86_400_000_000);
        let (yy, mm, dd) = types::civil_from_days(days + 10957);
        (yy, mm, dd, t.rem_euclid(86_400_000_000))
    };
    let (ay, am, ad, at) = split(a);
    let (by, bm, bd, bt) = split(b);
    let (mut years, mut months, mut days, mut micros) = (ay - by, am - bm, ad - bd, at - bt);
    if micros < 0 {
        micros += 86_400_000_000;
        days -= 1;
    }
    if days < 0 {
        // Borrow the length of the earlier date's month.
        let next = if bm == 12 { types::days_from_civil(by + 1, 1, 1) } else { types::days_from_civil(by, bm + 1, 1) };
        days += next - types::days_from_civil(by, bm, 1);
        months -= 1;
    }
    if months < 0 {
        months += 12;
        years -= 1;
    }
    let sign = if negative { -1 } else { 1 };
    crate::storage::value::Interval {
        months: (sign * (years * 12 + months)) as i32,
        days: (sign * days) as i32,
        micros: sign * micros,
    }
}

/// The ISO 8601 year and week of a day, given its calendar year, day of the year and ISO day of the week
/// (Monday 1): week 1 is the one with the year's first Thursday.
fn iso_week(year: i128, doy: i128, isodow: i128) -> (i128, i128) {
    let weeks_in = |y: i128| {
        // A year has 53 weeks when it starts on a Thursday, or on a Wednesday in a leap year.
        let jan1 = (types::days_from_civil(y as i64, 1, 1) + 4).rem_euclid(7) as i128; // 0 = Monday
        let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
        if jan1 == 3 || (jan1 == 2 && leap) {
            53
        } else {
            52
        }
    };
    let week = (doy - isodow + 10) / 7;
    if week < 1 {
        (year - 1, weeks_in(year - 1))
    } else if week > weeks_in(year) {
        (year + 1, 1)
    } else {
        (year, week)
    }
}

fn date_trunc(field: &str, v: Value) -> Result<Value> {
    let (usecs, tz) = match v {
        Value::Timestamp(t) => (t, false),
        Value::TimestampTz(t) => (crate::sql::timezone::to_local(t), true),
        Value::Date(d) => (d as i64 * 86_400_000_000, false),
        _ => return Err(Error::new(SqlState::DATATYPE_MISMATCH, "date_trunc needs a timestamp")),
    };
    let day = 86_400_000_000i64;
    let days = usecs.div_euclid(day);
    let (y, m, _) = types::civil_from_days(days + 10957);
    let t = match field {
        "year" => (types::days_from_civil(y, 1, 1) - 10957) * day,
        "month" => (types::days_from_civil(y, m, 1) - 10957) * day,
        "day" => days * day,
        "hour" => usecs - usecs.rem_euclid(3_600_000_000),
        "minute" => usecs - usecs.rem_euclid(60_000_000),
        "second" => usecs - usecs.rem_euclid(1_000_000),
        _ => {
            return Err(Error::new(SqlState::INVALID_PARAMETER_VALUE, format!("unit \"{field}\" not recognized")));
        }
    };
    Ok(if tz { Value::TimestampTz(crate::sql::timezone::to_utc(t)) } else { Value::Timestamp(t) })
}
