//! Values on the wire: parameters in and result fields out, in text or binary format.
//!
//! psql and pgbench use text for everything; drivers such as tokio-postgres send typed parameters and
//! ask for results in binary. Binary covers the fixed-width types and the byte-string types; numeric
//! stays text-only (a client asking for binary numeric gets 0A000).

use crate::error::{Error, Result, SqlState};
use crate::sql::types;
use crate::storage::value::{DataType, Interval, Value};

fn bad_utf8() -> Error {
    Error::new(SqlState::CHARACTER_NOT_IN_REPERTOIRE, "invalid byte sequence for encoding \"UTF8\"")
}

/// Decodes one bound parameter.
pub fn decode_param(bytes: Option<&[u8]>, ty: &DataType, binary: bool) -> Result<Value> {
    let Some(b) = bytes else { return Ok(Value::Null) };
    if !binary {
        let s = std::str::from_utf8(b).map_err(|_| bad_utf8())?;
        if s.contains('\0') {
            return Err(bad_utf8());
        }
        return types::parse_value(s, ty);
    }
    let fixed = |n: usize| -> Result<&[u8]> {
        if b.len() == n {
            Ok(b)
        } else {
            Err(Error::new(
                SqlState("22P03"),
                format!("incorrect binary data format in bind parameter ({} bytes for {})", b.len(), ty.sql_name()),
            ))
        }
    };
    Ok(match ty {
        DataType::Bool => Value::Bool(fixed(1)?[0] != 0),
        DataType::Int2 => Value::Int(i16::from_be_bytes([fixed(2)?[0], b[1]]) as i64),
        DataType::Int4 => Value::Int(i32::from_be_bytes(fixed(4)?.try_into().map_err(|_| bad_utf8())?) as i64),
        DataType::Oid => Value::Int(u32::from_be_bytes(fixed(4)?.try_into().map_err(|_| bad_utf8())?) as i64),
        DataType::Int8 => Value::Int(i64::from_be_bytes(fixed(8)?.try_into().map_err(|_| bad_utf8())?)),
        DataType::Float4 => Value::Float(f32::from_be_bytes(fixed(4)?.try_into().map_err(|_| bad_utf8())?) as f64),
        DataType::Float8 => Value::Float(f64::from_be_bytes(fixed(8)?.try_into().map_err(|_| bad_utf8())?)),
        DataType::Text | DataType::Varchar(_) | DataType::Char(_) => {
            types::parse_value(std::str::from_utf8(b).map_err(|_| bad_utf8())?, ty)?
        }
        DataType::Bytea => Value::Bytes(b.into()),
        DataType::Date => Value::Date(i32::from_be_bytes(fixed(4)?.try_into().map_err(|_| bad_utf8())?)),
        DataType::Timestamp => Value::Timestamp(i64::from_be_bytes(fixed(8)?.try_into().map_err(|_| bad_utf8())?)),
        DataType::TimestampTz => Value::TimestampTz(i64::from_be_bytes(fixed(8)?.try_into().map_err(|_| bad_utf8())?)),
        // PostgreSQL's binary interval: microseconds (8 bytes), days (4), months (4).
        DataType::Interval => {
            let b = fixed(16)?;
            let int = |r: std::ops::Range<usize>| b[r].iter().fold(0i64, |acc, x| (acc << 8) | *x as i64);
            Value::interval(Interval {
                micros: int(0..8),
                days: int(8..12) as u32 as i32,
                months: int(12..16) as u32 as i32,
            })
        }
        DataType::Numeric(_) => {
            return Err(Error::new(SqlState::FEATURE_NOT_SUPPORTED, "binary numeric parameters are not supported"))
        }
    })
}

/// Encodes one result field (None for NULL).
pub fn encode_field(v: &Value, ty: &DataType, binary: bool) -> Result<Option<Vec<u8>>> {
    if v.is_null() {
        return Ok(None);
    }
    if !binary {
        return Ok(types::format_value(v, ty).map(String::into_bytes));
    }
    let v = types::cast(v.clone(), ty)?;
    Ok(Some(match (ty, &v) {
        (DataType::Bool, Value::Bool(b)) => vec![*b as u8],
        (DataType::Int2, Value::Int(i)) => (*i as i16).to_be_bytes().to_vec(),
        (DataType::Int4, Value::Int(i)) => (*i as i32).to_be_bytes().to_vec(),
        (DataType::Oid, Value::Int(i)) => (*i as u32).to_be_bytes().to_vec(),
        (DataType::Int8, Value::Int(i)) => i.to_be_bytes().to_vec(),
        (DataType::Float4, Value::Float(f)) => (*f as f32).to_be_bytes().to_vec(),
        (DataType::Float8, Value::Float(f)) => f.to_be_bytes().to_vec(),
        (DataType::Bytea, Value::Bytes(b)) => b.to_vec(),
        (DataType::Date, Value::Date(d)) => d.to_be_bytes().to_vec(),
        (DataType::Timestamp | DataType::TimestampTz, Value::Timestamp(t) | Value::TimestampTz(t)) => {
            t.to_be_bytes().to_vec()
        }
        (DataType::Interval, Value::Interval(i)) => {
            [&i.micros.to_be_bytes()[..], &i.days.to_be_bytes(), &i.months.to_be_bytes()].concat()
        }
        (DataType::Numeric(_), _) => {
            return Err(Error::new(SqlState::FEATURE_NOT_SUPPORTED, "binary numeric results are not supported"))
        }
        (_, v) => types::format_value(v, ty).unwrap_or_default().into_bytes(),
    }))
}

/// The type size RowDescription reports.
pub fn type_size(ty: &DataType) -> i16 {
    match ty {
        DataType::Bool => 1,
        DataType::Int2 => 2,
        DataType::Int4 | DataType::Float4 | DataType::Date | DataType::Oid => 4,
        DataType::Int8 | DataType::Float8 | DataType::Timestamp | DataType::TimestampTz => 8,
        DataType::Interval => 16,
        _ => -1,
    }
}

/// The type modifier RowDescription reports.
pub fn type_modifier(ty: &DataType) -> i32 {
    match ty {
        DataType::Varchar(Some(n)) | DataType::Char(n) => *n as i32 + 4,
        DataType::Numeric(Some((p, s))) => (((*p as i32) << 16) | *s as i32) + 4,
        _ => -1,
    }
}
