//! SQL types at the edges: text input and output of values, casts, and the mapping from sqlparser's type
//! names to storage [`DataType`]s.
//!
//! Every value crosses the wire as PostgreSQL's text format (the clients this server targets ask for
//! text), so the one pair `parse_value` / `format_value` serves bound parameters, COPY, literals cast
//! with `::type`, and result rows alike. Dates and timestamps count from 2000-01-01 as PostgreSQL does;
//! the civil-calendar conversions are Howard Hinnant's algorithms. The session time zone is UTC.

use sqlparser::ast;

use crate::error::{Error, Result, SqlState};
use crate::storage::shared::Shared;
use crate::storage::value::{DataType, Decimal, Value};

/// Days from 1970-01-01 to 2000-01-01.
pub const UNIX_TO_PG_DAYS: i64 = 10957;
const USECS_PER_DAY: i64 = 86_400_000_000;

/// The longest char(n) or varchar(n), PostgreSQL's.
const MAX_CHAR_LENGTH: u32 = 10_485_760;

/// Maps a type name from the SQL text to a storage type. `serial` types map to their integer type; the
/// caller gives them a default from a sequence.
pub fn data_type(ty: &ast::DataType) -> Result<DataType> {
    use ast::DataType as T;
    // PostgreSQL's bounds on a declared length: char(n) pads every value to n characters.
    let char_len = |l: &Option<ast::CharacterLength>, name: &str| match l {
        Some(ast::CharacterLength::IntegerLength { length: 0, .. }) => {
            Err(Error::new(SqlState::INVALID_PARAMETER_VALUE, format!("length for type {name} must be at least 1")))
        }
        Some(ast::CharacterLength::IntegerLength { length, .. }) => match u32::try_from(*length) {
            Ok(n) if n <= MAX_CHAR_LENGTH => Ok(Some(n)),
            _ => Err(Error::new(
                SqlState::INVALID_PARAMETER_VALUE,
                format!("length for type {name} cannot exceed {MAX_CHAR_LENGTH}"),
            )),
        },
        _ => Ok(None),
    };
    Ok(match ty {
        T::SmallInt(_) | T::Int2(_) => DataType::Int2,
        T::Int(_) | T::Integer(_) | T::Int4(_) => DataType::Int4,
        T::BigInt(_) | T::Int8(_) => DataType::Int8,
        T::Bool | T::Boolean => DataType::Bool,
        T::Text | T::String(_) => DataType::Text,
        T::Varchar(l) | T::CharacterVarying(l) | T::CharVarying(l) => DataType::Varchar(char_len(l, "varchar")?),
        T::Char(l) | T::Character(l) => DataType::Char(char_len(l, "char")?.unwrap_or(1)),
        T::Real | T::Float4 => DataType::Float4,
        T::Double(_) | T::DoublePrecision | T::Float8 | T::Float64 => DataType::Float8,
        T::Float(info) => match info {
            ast::ExactNumberInfo::Precision(p) if *p <= 24 => DataType::Float4,
            _ => DataType::Float8,
        },
        T::Numeric(info) | T::Decimal(info) | T::Dec(info) => match info {
            ast::ExactNumberInfo::None => DataType::Numeric(None),
            ast::ExactNumberInfo::Precision(p) => DataType::Numeric(Some((*p as u32, 0))),
            ast::ExactNumberInfo::PrecisionAndScale(p, s) => DataType::Numeric(Some((*p as u32, (*s).max(0) as u32))),
        },
        T::Date => DataType::Date,
        T::Timestamp(_, ast::TimezoneInfo::WithTimeZone | ast::TimezoneInfo::Tz) => DataType::TimestampTz,
        T::Timestamp(_, _) | T::Datetime(_) => DataType::Timestamp,
        T::Bytea => DataType::Bytea,
        T::Interval { .. } => DataType::Interval,
        T::Regclass => DataType::Oid,
        // Arrays travel in their text form (`{1,2}`); only catalog queries use them.
        T::Array(_) => DataType::Text,
        T::Custom(name, modifiers) => {
            let n = name.0.last().map(|p| p.to_string().to_lowercase()).unwrap_or_default();
            let n = n.trim_matches('"');
            match n {
                "serial" | "serial4" | "int4" => DataType::Int4,
                "bigserial" | "serial8" | "int8" => DataType::Int8,
                "smallserial" | "serial2" | "int2" => DataType::Int2,
                "oid" | "regclass" | "regtype" | "regproc" | "regnamespace" | "xid" => DataType::Oid,
                "timestamptz" => DataType::TimestampTz,
                "float4" => DataType::Float4,
                "float8" => DataType::Float8,
                "bool" => DataType::Bool,
                "name" | "text" | "char" | "bpchar" | "pg_lsn" => DataType::Text,
                "varchar" => DataType::Varchar(modifiers.first().and_then(|m| m.to_string().parse().ok())),
                _ => {
                    return Err(Error::new(SqlState::UNDEFINED_OBJECT, format!("type \"{n}\" does not exist")));
                }
            }
        }
        other => {
            return Err(Error::new(SqlState::FEATURE_NOT_SUPPORTED, format!("type {other} is not supported")));
        }
    })
}

/// Whether a type name from the SQL text is one of the serial pseudo-types.
pub fn is_serial(ty: &ast::DataType) -> bool {
    if let ast::DataType::Custom(name, _) = ty {
        let n = name.to_string().to_lowercase();
        return matches!(n.as_str(), "serial" | "serial4" | "bigserial" | "serial8" | "smallserial" | "serial2");
    }
    false
}

fn invalid(ty: &str, s: &str) -> Error {
    Error::new(SqlState::INVALID_TEXT_REPRESENTATION, format!("invalid input syntax for type {ty}: \"{s}\""))
}

/// Parses PostgreSQL's text format of a value of type `ty`.
pub fn parse_value(s: &str, ty: &DataType) -> Result<Value> {
    let t = s.trim();
    Ok(match ty {
        DataType::Bool => match t.to_ascii_lowercase().as_str() {
            "t" | "true" | "yes" | "on" | "1" | "y" => Value::Bool(true),
            "f" | "false" | "no" | "off" | "0" | "n" => Value::Bool(false),
            _ => return Err(invalid("boolean", s)),
        },
        DataType::Int2 | DataType::Int4 | DataType::Int8 | DataType::Oid => {
            let v: i64 = t.parse().map_err(|_| match t.parse::<i128>() {
                Ok(_) => out_of_range(ty),
                Err(_) => invalid(int_name(ty), s),
            })?;
            check_int(v, ty)?
        }
        DataType::Float4 | DataType::Float8 => Value::Float(match t.to_ascii_lowercase().as_str() {
            "nan" => f64::NAN,
            "infinity" | "inf" => f64::INFINITY,
            "-infinity" | "-inf" => f64::NEG_INFINITY,
            _ => t.parse().map_err(|_| invalid("double precision", s))?,
        }),
        DataType::Numeric(tm) => coerce_numeric(parse_decimal(t).ok_or_else(|| invalid("numeric", s))?, *tm)?,
        DataType::Text => Value::text(s),
        DataType::Varchar(n) => coerce_text(s, ty, *n, false)?,
        DataType::Char(n) => coerce_text(s, ty, Some(*n), true)?,
        DataType::Bytea => Value::Bytes(parse_bytea(s)?),
        DataType::Date => Value::Date(parse_date(t).ok_or_else(|| invalid_dt("date", s))?),
        // A timestamp without time zone ignores an offset written after it, as PostgreSQL does.
        DataType::Timestamp => Value::Timestamp(parse_timestamp_parts(t).ok_or_else(|| invalid_dt("timestamp", s))?.0),
        DataType::Interval => Value::interval(crate::sql::interval::parse(t).ok_or_else(|| {
            Error::new(SqlState("22007"), format!("invalid input syntax for type interval: \"{s}\""))
        })?),
        DataType::TimestampTz => {
            Value::TimestampTz(parse_timestamp(t).ok_or_else(|| invalid_dt("timestamp with time zone", s))?)
        }
    })
}

fn invalid_dt(ty: &str, s: &str) -> Error {
    Error::new(SqlState::INVALID_DATETIME_FORMAT, format!("invalid input syntax for type {ty}: \"{s}\""))
}

fn int_name(ty: &DataType) -> &'static str {
    match ty {
        DataType::Int2 => "smallint",
        DataType::Int8 => "bigint",
        DataType::Oid => "oid",
        _ => "integer",
    }
}

fn out_of_range(ty: &DataType) -> Error {
    Error::new(SqlState::NUMERIC_VALUE_OUT_OF_RANGE, format!("{} out of range", int_name(ty)))
}

/// Checks an integer against the bounds of its column type.
pub fn check_int(v: i64, ty: &DataType) -> Result<Value> {
    let ok = match ty {
        DataType::Int2 => i16::try_from(v).is_ok(),
        DataType::Int4 => i32::try_from(v).is_ok(),
        DataType::Oid => u32::try_from(v).is_ok(),
        _ => true,
    };
    if ok {
        Ok(Value::Int(v))
    } else {
        Err(out_of_range(ty))
    }
}

fn coerce_text(s: &str, ty: &DataType, n: Option<u32>, pad: bool) -> Result<Value> {
    let Some(n) = n else { return Ok(Value::text(s)) };
    let len = s.chars().count();
    let n = n as usize;
    if len > n {
        // PostgreSQL allows the excess to be blanks, which it cuts.
        if s.chars().skip(n).all(|c| c == ' ') {
            return Ok(Value::text(&s.chars().take(n).collect::<String>()));
        }
        let name = if pad { "character" } else { "character varying" };
        return Err(Error::new(SqlState::STRING_DATA_RIGHT_TRUNCATION, format!("value too long for type {name}({n})")));
    }
    let _ = ty;
    if pad && len < n {
        let mut out = String::with_capacity(s.len() + n - len);
        out.push_str(s);
        out.extend(std::iter::repeat_n(' ', n - len));
        return Ok(Value::text(&out));
    }
    Ok(Value::text(s))
}

/// The largest exponent a numeric literal may have, PostgreSQL's (`1e1000`).
const MAX_NUMERIC_EXPONENT: i64 = 1000;

/// Parses a decimal number such as `-12.50` or `1e3`.
pub fn parse_decimal(s: &str) -> Option<Decimal> {
    let s = s.trim();
    let (mant, exp) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], s[i + 1..].parse::<i64>().ok()?),
        None => (s, 0),
    };
    if !(-MAX_NUMERIC_EXPONENT..=MAX_NUMERIC_EXPONENT).contains(&exp) {
        return None;
    }
    let (neg, digits) = match mant.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, mant.strip_prefix('+').unwrap_or(mant)),
    };
    let (int, frac) = match digits.find('.') {
        Some(i) => (&digits[..i], &digits[i + 1..]),
        None => (digits, ""),
    };
    if int.is_empty() && frac.is_empty() || !int.chars().chain(frac.chars()).all(|c| c.is_ascii_digit()) {
        return None;
    }
    let mut mantissa: i128 = 0;
    for c in int.chars().chain(frac.chars()) {
        mantissa = mantissa.checked_mul(10)?.checked_add((c as u8 - b'0') as i128)?;
    }
    let mut scale = frac.len() as i64 - exp;
    // A zero never overflows: it takes no scale from a positive exponent.
    if mantissa == 0 {
        scale = scale.max(0);
    }
    while scale < 0 {
        mantissa = mantissa.checked_mul(10)?;
        scale += 1;
    }
    Some(Decimal { mantissa: if neg { -mantissa } else { mantissa }, scale: u32::try_from(scale).ok()? })
}

/// Rounds a decimal to a numeric(p,s) type, checking its precision.
pub fn coerce_numeric(d: Decimal, tm: Option<(u32, u32)>) -> Result<Value> {
    let Some((p, s)) = tm else { return Ok(Value::numeric(d)) };
    let d = round_decimal(d, s);
    let digits = d.mantissa.unsigned_abs().to_string().len() as u32;
    if d.mantissa != 0 && digits > p {
        return Err(Error::new(SqlState::NUMERIC_VALUE_OUT_OF_RANGE, "numeric field overflow").with_detail(format!(
            "A field with precision {p}, scale {s} must round to an absolute value less than 10^{}.",
            p - s
        )));
    }
    Ok(Value::numeric(d))
}

/// Rounds (half away from zero) or extends a decimal to exactly `scale` fractional digits.
pub fn round_decimal(d: Decimal, scale: u32) -> Decimal {
    if d.scale <= scale {
        return d.rescale_up(scale).unwrap_or(d);
    }
    // An i128 holds under 39 digits, so cutting more than 38 leaves less than half a unit: zero.
    let cut = d.scale - scale;
    if cut > 38 {
        return Decimal { mantissa: 0, scale };
    }
    let div = 10u128.pow(cut);
    let q = d.mantissa / div as i128;
    let r = d.mantissa.unsigned_abs() % div;
    // `r >= div - r` is `2r >= div` without overflowing when div is 10^38.
    let q = if r >= div - r { q + d.mantissa.signum() } else { q };
    Decimal { mantissa: q, scale }
}

fn parse_bytea(s: &str) -> Result<Shared<u8>> {
    if let Some(hex) = s.strip_prefix("\\x") {
        let bytes: Option<Vec<u8>> =
            (0..hex.len() / 2).map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()).collect();
        return match bytes {
            Some(b) if hex.len() % 2 == 0 => Ok(b.into()),
            _ => Err(invalid("bytea", s)),
        };
    }
    parse_bytea_escape(s).map(Into::into).ok_or_else(|| invalid("bytea", s))
}

/// Reads bytea's escape format: `\\` for a backslash, `\ooo` (octal) for any byte, other bytes as they are.
pub fn parse_bytea_escape(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' {
            if b.get(i + 1) == Some(&b'\\') {
                out.push(b'\\');
                i += 2;
            } else {
                out.push(s.get(i + 1..i + 4).and_then(|o| u8::from_str_radix(o, 8).ok())?);
                i += 4;
            }
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Some(out)
}

/// Days since 1970-01-01 of a civil date.
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

/// The civil date of a count of days since 1970-01-01.
pub fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719468;
    let era = if z >= 0 { z } else { z - 146096 } / 146097;
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// The years a date may have, PostgreSQL's (4713 BC to 5874897 AD); the calendar arithmetic would
/// overflow far beyond them.
pub const DATE_YEARS: std::ops::RangeInclusive<i64> = -4713..=5_874_897;

/// A trailing era, ` BC` or ` AD` (any case), taken off: the rest, and whether it was BC.
fn strip_era(s: &str) -> (&str, bool) {
    let t = s.trim_end();
    let era = |suffix: &str| {
        t.len() > 2
            && t.is_char_boundary(t.len() - 2)
            && t[t.len() - 2..].eq_ignore_ascii_case(suffix)
            && t[..t.len() - 2].ends_with(char::is_whitespace)
    };
    if era("BC") {
        (t[..t.len() - 2].trim_end(), true)
    } else if era("AD") {
        (t[..t.len() - 2].trim_end(), false)
    } else {
        (s, false)
    }
}

/// Reads `YYYY-MM-DD [BC|AD]`. There is no year 0: 1 BC is the astronomical year 0, as in PostgreSQL.
fn parse_date(s: &str) -> Option<i32> {
    let (s, bc) = strip_era(s);
    parse_date_in(s, bc)
}

fn parse_date_in(s: &str, bc: bool) -> Option<i32> {
    let mut parts = s.splitn(3, '-');
    let y: i64 = parts.next()?.parse().ok()?;
    if y == 0 {
        return None;
    }
    let y = if bc { 1 - y } else { y };
    let m: i64 = parts.next()?.parse().ok()?;
    let d: i64 = parts.next()?.trim().parse().ok()?;
    if !DATE_YEARS.contains(&y) || !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let days = days_from_civil(y, m, d);
    if civil_from_days(days) != (y, m, d) {
        return None;
    }
    i32::try_from(days - UNIX_TO_PG_DAYS).ok()
}

/// Parses `YYYY-MM-DD[ T]HH:MM:SS[.ffffff][+TZ]` into microseconds since 2000-01-01 (UTC for offsets).
/// None for what is not a timestamp, or one too far from 2000 for 64 bits of microseconds.
/// Reads a time with time zone: with an offset written after it, that offset; without, the session's zone.
fn parse_timestamp(s: &str) -> Option<i64> {
    let (local, offset) = parse_timestamp_parts(s)?;
    Some(match offset {
        Some(secs) => local.checked_sub(secs * 1_000_000)?,
        None => crate::sql::timezone::to_utc(local),
    })
}

/// Reads a time as written (µs since 2000-01-01 on the clock it names) and the UTC offset written after it
/// (seconds east), if any.
fn parse_timestamp_parts(s: &str) -> Option<(i64, Option<i64>)> {
    let (s, bc) = strip_era(s.trim());
    let (date, rest) = match s.find([' ', 'T']) {
        Some(i) => (&s[..i], s[i + 1..].trim()),
        None => (s, ""),
    };
    let days = parse_date_in(date, bc)? as i64;
    let usecs = days.checked_mul(USECS_PER_DAY)?;
    if rest.is_empty() {
        return Some((usecs, None));
    }
    let (time, offset) = match rest.find(['+', '-', 'Z', 'z']) {
        Some(i) => (&rest[..i], Some(&rest[i..])),
        None => (rest, None),
    };
    let mut tp = time.trim().splitn(3, ':');
    let h: i64 = tp.next()?.parse().ok()?;
    let mi: i64 = tp.next()?.parse().ok()?;
    let sec: f64 = tp.next().unwrap_or("0").parse().ok()?;
    if !(0..=24).contains(&h) || !(0..=59).contains(&mi) || !(0.0..61.0).contains(&sec) {
        return None;
    }
    let usecs = usecs.checked_add((h * 3600 + mi * 60) * 1_000_000 + (sec * 1_000_000.0).round() as i64)?;
    let offset = match offset {
        None => None,
        Some(off) if off.eq_ignore_ascii_case("z") => Some(0),
        Some(off) => {
            let sign = if off.starts_with('-') { -1 } else { 1 };
            let mut op = off[1..].splitn(2, ':');
            let oh: i64 = op.next()?.parse().ok()?;
            let om: i64 = op.next().unwrap_or("0").parse().ok()?;
            // PostgreSQL's limit on a UTC offset.
            if !(0..=15).contains(&oh) || !(0..=59).contains(&om) {
                return None;
            }
            Some(sign * (oh * 3600 + om * 60))
        }
    };
    Some((usecs, offset))
}

/// Formats a date (days since 2000-01-01) as `YYYY-MM-DD`, with ` BC` before year 1.
pub fn format_date(days: i32) -> String {
    let (date, bc) = date_and_era(days);
    if bc {
        date + " BC"
    } else {
        date
    }
}

/// A date's `YYYY-MM-DD`, in years of its era, and whether that era is BC (astronomical year 0 is 1 BC).
fn date_and_era(days: i32) -> (String, bool) {
    let (y, m, d) = civil_from_days(days as i64 + UNIX_TO_PG_DAYS);
    let (year, bc) = if y <= 0 { (1 - y, true) } else { (y, false) };
    (format!("{year:04}-{m:02}-{d:02}"), bc)
}

/// Formats a timestamp (µs since 2000-01-01) as PostgreSQL's ISO style does.
pub fn format_timestamp(usecs: i64) -> String {
    let days = usecs.div_euclid(USECS_PER_DAY);
    let rem = usecs.rem_euclid(USECS_PER_DAY);
    let (h, mi, s, us) = (rem / 3_600_000_000, rem / 60_000_000 % 60, rem / 1_000_000 % 60, rem % 1_000_000);
    let (date, bc) = date_and_era(days as i32);
    let mut out = format!("{date} {h:02}:{mi:02}:{s:02}");
    if us != 0 {
        let frac = format!("{us:06}");
        out.push('.');
        out.push_str(frac.trim_end_matches('0'));
    }
    if bc {
        out.push_str(" BC");
    }
    out
}

/// Microseconds since 2000-01-01 UTC, now.
pub fn now_usecs() -> i64 {
    let since_unix =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0);
    since_unix - UNIX_TO_PG_DAYS * USECS_PER_DAY
}

/// Formats a float as PostgreSQL 15 does (shortest round-trip form).
pub fn format_float(f: f64, single: bool) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "Infinity".into() } else { "-Infinity".into() };
    }
    let s = if single { (f as f32).to_string() } else { f.to_string() };
    let exp = if f != 0.0 { f.abs().log10().floor() as i32 } else { 0 };
    if !(-4..16).contains(&exp) {
        let e = if single { format!("{:e}", f as f32) } else { format!("{f:e}") };
        // Rust prints 1e20; PostgreSQL prints 1e+20.
        return match e.split_once('e') {
            Some((m, x)) if !x.starts_with('-') => format!("{m}e+{x:0>2}"),
            Some((m, x)) => format!("{m}e-{:0>2}", &x[1..]),
            None => e,
        };
    }
    s
}

/// Formats a value in PostgreSQL's text format. NULL has no text form (the wire sends a -1 length).
pub fn format_value(v: &Value, ty: &DataType) -> Option<String> {
    Some(match v {
        Value::Null => return None,
        Value::Bool(b) => if *b { "t" } else { "f" }.into(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => format_float(*f, *ty == DataType::Float4),
        Value::Numeric(d) => d.get().to_string(),
        Value::Text(s) => s.to_string(),
        Value::Bytes(b) => {
            let mut s = String::with_capacity(2 + b.len() * 2);
            s.push_str("\\x");
            for x in b.iter() {
                s.push_str(&format!("{x:02x}"));
            }
            s
        }
        Value::Date(d) => format_date(*d),
        Value::Timestamp(t) => format_timestamp(*t),
        Value::TimestampTz(t) => {
            // Shown on the session's clocks, with their offset.
            let off = crate::sql::timezone::offset_at(*t);
            let local = format_timestamp(t + off as i64 * 1_000_000);
            let offset = crate::sql::timezone::format_offset(off);
            // The era comes last, after the offset, as PostgreSQL writes it.
            match local.strip_suffix(" BC") {
                Some(time) => format!("{time}{offset} BC"),
                None => format!("{local}{offset}"),
            }
        }
        Value::Interval(i) => crate::sql::interval::format(i),
    })
}

/// The type a value naturally has, for expressions whose type is not known from a column.
pub fn type_of_value(v: &Value) -> DataType {
    match v {
        Value::Null | Value::Text(_) => DataType::Text,
        Value::Bool(_) => DataType::Bool,
        Value::Int(i) if i32::try_from(*i).is_ok() => DataType::Int4,
        Value::Int(_) => DataType::Int8,
        Value::Float(_) => DataType::Float8,
        Value::Numeric(_) => DataType::Numeric(None),
        Value::Bytes(_) => DataType::Bytea,
        Value::Date(_) => DataType::Date,
        Value::Timestamp(_) => DataType::Timestamp,
        Value::TimestampTz(_) => DataType::TimestampTz,
        Value::Interval(_) => DataType::Interval,
    }
}

/// Casts a value to a type, as `::type` and assignment to a column do.
pub fn cast(v: Value, ty: &DataType) -> Result<Value> {
    Ok(match (v, ty) {
        (Value::Null, _) => Value::Null,
        (Value::Text(s), ty) => parse_value(&s, ty)?,
        (Value::Int(i), DataType::Int2 | DataType::Int4 | DataType::Int8 | DataType::Oid) => check_int(i, ty)?,
        (Value::Int(i), DataType::Float4 | DataType::Float8) => Value::Float(i as f64),
        (Value::Int(i), DataType::Numeric(tm)) => coerce_numeric(Decimal { mantissa: i as i128, scale: 0 }, *tm)?,
        (Value::Int(i), DataType::Bool) => Value::Bool(i != 0),
        (Value::Float(f), DataType::Int2 | DataType::Int4 | DataType::Int8 | DataType::Oid) => {
            if !f.is_finite() || f.abs() > 9.2e18 {
                return Err(out_of_range(ty));
            }
            check_int(f.round_ties_even() as i64, ty)?
        }
        (Value::Float(f), DataType::Float4 | DataType::Float8) => Value::Float(f),
        (Value::Float(f), DataType::Numeric(tm)) => {
            let d = parse_decimal(&format!("{f}")).ok_or_else(|| invalid("numeric", &f.to_string()))?;
            coerce_numeric(d, *tm)?
        }
        (Value::Numeric(d), DataType::Int2 | DataType::Int4 | DataType::Int8 | DataType::Oid) => {
            let r = round_decimal(d.get(), 0);
            let v = i64::try_from(r.mantissa).map_err(|_| out_of_range(ty))?;
            check_int(v, ty)?
        }
        (Value::Numeric(d), DataType::Float4 | DataType::Float8) => Value::Float(d.get().to_f64()),
        (Value::Numeric(d), DataType::Numeric(tm)) => coerce_numeric(d.get(), *tm)?,
        (Value::Bool(b), DataType::Bool) => Value::Bool(b),
        (Value::Bool(b), DataType::Int4 | DataType::Int8) => Value::Int(b as i64),
        (Value::Date(d), DataType::Date) => Value::Date(d),
        (Value::Date(d), DataType::Timestamp) => Value::Timestamp(d as i64 * USECS_PER_DAY),
        // Between local times and instants, on the session's clocks.
        (Value::Date(d), DataType::TimestampTz) => {
            Value::TimestampTz(crate::sql::timezone::to_utc(d as i64 * USECS_PER_DAY))
        }
        (Value::Timestamp(t), DataType::Date) => Value::Date(t.div_euclid(USECS_PER_DAY) as i32),
        (Value::TimestampTz(t), DataType::Date) => {
            Value::Date(crate::sql::timezone::to_local(t).div_euclid(USECS_PER_DAY) as i32)
        }
        (Value::Timestamp(t), DataType::Timestamp) => Value::Timestamp(t),
        (Value::TimestampTz(t), DataType::Timestamp) => Value::Timestamp(crate::sql::timezone::to_local(t)),
        (Value::Timestamp(t), DataType::TimestampTz) => Value::TimestampTz(crate::sql::timezone::to_utc(t)),
        (Value::TimestampTz(t), DataType::TimestampTz) => Value::TimestampTz(t),
        (Value::Bytes(b), DataType::Bytea) => Value::Bytes(b),
        (Value::Interval(i), DataType::Interval) => Value::Interval(i),
        // A boolean's text cast spells the word; its output format (on the wire) stays `t`/`f`.
        (Value::Bool(b), DataType::Text | DataType::Varchar(_) | DataType::Char(_)) => {
            parse_value(if b { "true" } else { "false" }, ty)?
        }
        (v, DataType::Text | DataType::Varchar(_) | DataType::Char(_)) => {
            let src = type_of_value(&v);
            let s = format_value(&v, &src).unwrap_or_default();
            parse_value(&s, ty)?
        }
        (v, ty) => {
            return Err(Error::new(
                SqlState::DATATYPE_MISMATCH,
                format!("cannot cast type {} to {}", type_of_value(&v).sql_name(), ty.sql_name()),
            ))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip() {
        assert_eq!(format_date(0), "2000-01-01");
        assert_eq!(parse_date("2024-02-29").map(format_date).as_deref(), Some("2024-02-29"));
        assert!(parse_date("2023-02-29").is_none());
        let ts = parse_timestamp("2021-03-04 05:06:07.25").unwrap_or_default();
        assert_eq!(format_timestamp(ts), "2021-03-04 05:06:07.25");
        assert_eq!(parse_timestamp("2000-01-01 01:00-01:30"), Some(9_000_000_000));
        assert_eq!(parse_timestamp_parts("2000-01-01 01:00-01:30"), Some((3_600_000_000, Some(-5400))));
    }

    #[test]
    fn rounding_away_38_digits_or_more_does_not_overflow() {
        // Found by the wire_decoder fuzz target: a 38-digit remainder doubled overflowed an i128.
        let round = |s: &str, scale| parse_decimal(s).map(|d| round_decimal(d, scale)).map(|d| (d.mantissa, d.scale));
        assert_eq!(round("0.0099999999999999999999999999999999999999", 2), Some((1, 2)));
        assert_eq!(round("-0.0049999999999999999999999999999999999999", 2), Some((0, 2)));
        assert_eq!(round("-0.125", 2), Some((-13, 2)));
        assert_eq!(round("0.124", 2), Some((12, 2)));
        let d = round_decimal(Decimal { mantissa: i128::MAX, scale: 60 }, 2);
        assert_eq!((d.mantissa, d.scale), (0, 2));
        let d = round_decimal(Decimal { mantissa: i128::MIN + 1, scale: 40 }, 2);
        assert_eq!((d.mantissa, d.scale), (-2, 2));
        assert!(parse_value("0.0099999999999999999999999999999999999999", &DataType::Numeric(Some((10, 2)))).is_ok());
    }

    #[test]
    fn dates_and_times_far_out_are_errors() {
        // Found by the wire_decoder fuzz target: the year's days in microseconds overflowed.
        let far = "994000-000004-000000000000000013 80009660013 8000966909709*7";
        assert!(parse_value(far, &DataType::Timestamp).is_err());
        for s in ["5874898-01-01", "-9223372036854775808-01-01", "9223372036854775807-12-31"] {
            assert!(parse_date(s).is_none(), "{s}");
        }
        for s in [
            "294300-01-01 00:00",
            "2000-01-01 -9223372036854775807:00",
            "2000-01-01 00:-9223372036854775807",
            "2000-01-01 00:00+9223372036854775807",
            "2000-01-01 00:00-16:00",
        ] {
            assert!(parse_timestamp(s).is_none(), "{s}");
        }
        assert!(parse_timestamp("5874897-12-31").is_none());
    }

    #[test]
    fn character_lengths_are_bounded() {
        let char_of = |length| ast::DataType::Char(Some(ast::CharacterLength::IntegerLength { length, unit: None }));
        // char(n) pads every value to n characters: PostgreSQL's bound keeps that from exhausting memory.
        assert_eq!(data_type(&char_of(2_000_000_000)).err().map(|e| e.code), Some(SqlState::INVALID_PARAMETER_VALUE));
        assert_eq!(data_type(&char_of(0)).err().map(|e| e.code), Some(SqlState::INVALID_PARAMETER_VALUE));
        assert_eq!(data_type(&char_of(10_485_760)).ok(), Some(DataType::Char(10_485_760)));
    }

    #[test]
    fn numeric_exponents_are_bounded() {
        // Found by the wire_decoder fuzz target: a zero with a huge exponent scaled up for ever.
        let zeros = format!("{}e00001405586195", "0".repeat(50));
        assert!(parse_value(&zeros, &DataType::Numeric(None)).is_err());
        assert!(parse_decimal("1e-2147483648").is_none());
        assert!(parse_decimal("1e-9223372036854775808").is_none());
        assert_eq!(parse_decimal("0e1000"), Some(Decimal { mantissa: 0, scale: 0 }));
        assert_eq!(parse_decimal("0.00e-1"), Some(Decimal { mantissa: 0, scale: 3 }));
        assert_eq!(parse_decimal("12e-3"), Some(Decimal { mantissa: 12, scale: 3 }));
        assert_eq!(parse_decimal("-12e2"), Some(Decimal { mantissa: -1200, scale: 0 }));
        assert!(parse_decimal("1e1001").is_none());
    }

    #[test]
    fn text_types() {
        assert_eq!(parse_value("ab", &DataType::Char(4)).ok(), Some(Value::text("ab  ")));
        let err = parse_value("abcdef", &DataType::Varchar(Some(3))).err().map(|e| e.code);
        assert_eq!(err, Some(SqlState::STRING_DATA_RIGHT_TRUNCATION));
        assert_eq!(
            parse_value("99999999999", &DataType::Int4).err().map(|e| e.code),
            Some(SqlState::NUMERIC_VALUE_OUT_OF_RANGE)
        );
        assert_eq!(
            parse_value("1.005", &DataType::Numeric(Some((5, 2))))
                .ok()
                .map(|v| format_value(&v, &DataType::Numeric(None))),
            Some(Some("1.01".into()))
        );
        assert_eq!(format_float(1e20, false), "1e+20");
        assert_eq!(format_float(0.1, false), "0.1");
    }
}
