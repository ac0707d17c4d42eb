//! Values and column types: what a row is made of.
//!
//! A [`Value`] is one field of a row. Rows and keys are shared slices of values ([`Shared<Value>`], one
//! pointer wide), because the persistent maps that hold tables copy their nodes on write, and copying an
//! entry must only bump a reference count. Values order totally (NULL after everything, floats by IEEE
//! total order), so any column list can be a key.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use crate::encoding::{Decoder, Encoder};
use crate::error::Result;
use crate::storage::shared::{Shared, SharedStr};

/// A row: the column values in table order.
pub type Row = Shared<Value>;

/// A key: the primary-key values of a row (or its hidden row id), or an index entry. It reads as the
/// slice of its values.
///
/// Every row in a table's tree has a key, and most keys are one value (an integer primary key, a hidden
/// row id), so a one-value key is held inline, in the tree's leaf entry, rather than in an allocation of
/// its own: a row then costs one allocation (its values) instead of two, which is about a sixth of the
/// memory a pgbench_accounts row takes and of the time a snapshot takes to load. Longer keys share a
/// [`Shared`] slice (one pointer, so that a key is a value's 16 bytes). Equality, order and hash are those of
/// the slice, however the key is held.
#[derive(Clone)]
pub enum Key {
    One(Value),
    Many(Shared<Value>),
}

const _: () = assert!(std::mem::size_of::<Key>() == 16, "a key is a Value's size (the Many arm uses its niche)");

impl Key {
    /// The key of a row with these primary-key (or index) values.
    pub fn from_values(mut values: Vec<Value>) -> Key {
        if values.len() == 1 {
            Key::One(values.pop().expect("one value"))
        } else {
            Key::Many(values.into())
        }
    }
}

impl std::ops::Deref for Key {
    type Target = [Value];

    fn deref(&self) -> &[Value] {
        match self {
            Key::One(v) => std::slice::from_ref(v),
            Key::Many(vs) => vs,
        }
    }
}

impl std::borrow::Borrow<[Value]> for Key {
    fn borrow(&self) -> &[Value] {
        self
    }
}

impl From<Vec<Value>> for Key {
    fn from(values: Vec<Value>) -> Key {
        Key::from_values(values)
    }
}

impl From<&[Value]> for Key {
    fn from(values: &[Value]) -> Key {
        match values {
            [v] => Key::One(v.clone()),
            _ => Key::Many(values.into()),
        }
    }
}

impl From<Shared<Value>> for Key {
    fn from(values: Shared<Value>) -> Key {
        match &*values {
            [v] => Key::One(v.clone()),
            _ => Key::Many(values),
        }
    }
}

impl FromIterator<Value> for Key {
    fn from_iter<I: IntoIterator<Item = Value>>(iter: I) -> Key {
        let mut it = iter.into_iter();
        let Some(first) = it.next() else { return Key::Many(Shared::from_vec(Vec::new())) };
        match it.next() {
            None => Key::One(first),
            Some(second) => {
                let mut values = vec![first, second];
                values.extend(it);
                Key::Many(values.into())
            }
        }
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Key) -> bool {
        **self == **other
    }
}

impl Eq for Key {}

impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Key) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Key {
    fn cmp(&self, other: &Key) -> Ordering {
        (**self).cmp(&**other)
    }
}

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        (**self).hash(state)
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        (**self).fmt(f)
    }
}

/// A column type, with PostgreSQL's names and OIDs.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum DataType {
    Bool,
    Int2,
    Int4,
    Int8,
    Float4,
    Float8,
    /// numeric(precision, scale), or unconstrained numeric.
    Numeric(Option<(u32, u32)>),
    Text,
    /// varchar(n), or unconstrained varchar.
    Varchar(Option<u32>),
    /// char(n), blank-padded.
    Char(u32),
    Bytea,
    Date,
    Timestamp,
    TimestampTz,
    Interval,
    Oid,
}

impl DataType {
    /// The PostgreSQL type OID.
    pub fn oid(&self) -> u32 {
        match self {
            DataType::Bool => 16,
            DataType::Bytea => 17,
            DataType::Int8 => 20,
            DataType::Int2 => 21,
            DataType::Int4 => 23,
            DataType::Text => 25,
            DataType::Oid => 26,
            DataType::Float4 => 700,
            DataType::Float8 => 701,
            DataType::Char(_) => 1042,
            DataType::Varchar(_) => 1043,
            DataType::Date => 1082,
            DataType::Timestamp => 1114,
            DataType::TimestampTz => 1184,
            DataType::Interval => 1186,
            DataType::Numeric(_) => 1700,
        }
    }

    /// The type as `format_type` prints it: `integer`, `character(84)`, `numeric(10,2)`.
    pub fn sql_name(&self) -> String {
        match self {
            DataType::Bool => "boolean".into(),
            DataType::Int2 => "smallint".into(),
            DataType::Int4 => "integer".into(),
            DataType::Int8 => "bigint".into(),
            DataType::Float4 => "real".into(),
            DataType::Float8 => "double precision".into(),
            DataType::Numeric(None) => "numeric".into(),
            DataType::Numeric(Some((p, s))) => format!("numeric({p},{s})"),
            DataType::Text => "text".into(),
            DataType::Varchar(None) => "character varying".into(),
            DataType::Varchar(Some(n)) => format!("character varying({n})"),
            DataType::Char(n) => format!("character({n})"),
            DataType::Bytea => "bytea".into(),
            DataType::Date => "date".into(),
            DataType::Timestamp => "timestamp without time zone".into(),
            DataType::TimestampTz => "timestamp with time zone".into(),
            DataType::Interval => "interval".into(),
            DataType::Oid => "oid".into(),
        }
    }

    pub(crate) fn encode(&self, e: &mut Encoder) {
        match self {
            DataType::Bool => e.u8(0),
            DataType::Int2 => e.u8(1),
            DataType::Int4 => e.u8(2),
            DataType::Int8 => e.u8(3),
            DataType::Float4 => e.u8(4),
            DataType::Float8 => e.u8(5),
            DataType::Numeric(None) => e.u8(6),
            DataType::Numeric(Some((p, s))) => {
                e.u8(7);
                e.var(*p as u64);
                e.var(*s as u64);
            }
            DataType::Text => e.u8(8),
            DataType::Varchar(None) => e.u8(9),
            DataType::Varchar(Some(n)) => {
                e.u8(10);
                e.var(*n as u64);
            }
            DataType::Char(n) => {
                e.u8(11);
                e.var(*n as u64);
            }
            DataType::Bytea => e.u8(12),
            DataType::Date => e.u8(13),
            DataType::Timestamp => e.u8(14),
            DataType::TimestampTz => e.u8(15),
            DataType::Oid => e.u8(16),
            DataType::Interval => e.u8(17),
        }
    }

    pub(crate) fn decode(d: &mut Decoder) -> Result<DataType> {
        Ok(match d.u8()? {
            0 => DataType::Bool,
            1 => DataType::Int2,
            2 => DataType::Int4,
            3 => DataType::Int8,
            4 => DataType::Float4,
            5 => DataType::Float8,
            6 => DataType::Numeric(None),
            7 => DataType::Numeric(Some((d.var()? as u32, d.var()? as u32))),
            8 => DataType::Text,
            9 => DataType::Varchar(None),
            10 => DataType::Varchar(Some(d.var()? as u32)),
            11 => DataType::Char(d.var()? as u32),
            12 => DataType::Bytea,
            13 => DataType::Date,
            14 => DataType::Timestamp,
            15 => DataType::TimestampTz,
            16 => DataType::Oid,
            17 => DataType::Interval,
            t => return Err(d.malformed(format!("unknown data type tag {t}"))),
        })
    }
}

/// An exact decimal: `mantissa * 10^-scale`.
///
/// Packed to 4-byte alignment (20 bytes, not 32: an `i128` would align it to 16), as it is boxed in a
/// [`Value`] when it does not fit inline ([`Num`]). Fields are read by copy (`let m = d.mantissa;`), never
/// by reference.
#[derive(Clone, Copy, Debug)]
#[repr(C, packed(4))]
pub struct Decimal {
    pub mantissa: i128,
    pub scale: u32,
}

impl Decimal {
    /// The same number with at least `scale` fractional digits, if it fits.
    pub fn rescale_up(self, scale: u32) -> Option<Decimal> {
        if scale <= self.scale {
            return Some(self);
        }
        let factor = 10i128.checked_pow(scale - self.scale)?;
        Some(Decimal { mantissa: self.mantissa.checked_mul(factor)?, scale })
    }

    /// The number as a float (for comparisons with floats and for math functions).
    pub fn to_f64(self) -> f64 {
        self.mantissa as f64 / 10f64.powi(self.scale as i32)
    }
}

impl PartialEq for Decimal {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Decimal {}

impl PartialOrd for Decimal {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Decimal {
    fn cmp(&self, other: &Self) -> Ordering {
        let scale = self.scale.max(other.scale);
        match (self.rescale_up(scale), other.rescale_up(scale)) {
            (Some(a), Some(b)) => {
                let (x, y) = (a.mantissa, b.mantissa);
                x.cmp(&y)
            }
            _ => self.to_f64().total_cmp(&other.to_f64()),
        }
    }
}

impl Hash for Decimal {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // Equal numbers must hash alike whatever their scale: strip trailing zeros.
        let (mut m, mut s) = (self.mantissa, if self.mantissa == 0 { 0 } else { self.scale });
        while s > 0 && m % 10 == 0 {
            m /= 10;
            s -= 1;
        }
        m.hash(state);
        s.hash(state);
    }
}

/// A numeric as a [`Value`] holds it, in the value's second word: inline when its mantissa fits 64 bits and
/// its scale a byte (the scale sits beside the value's tag, so the value stays two words and a result of
/// arithmetic costs no allocation), boxed otherwise. The choice depends only on the number's mantissa and
/// scale. Read it with [`Num::get`].
#[derive(Clone)]
pub struct Num(NumRepr);

#[derive(Clone)]
enum NumRepr {
    Inline { scale: u8, mantissa: i64 },
    Boxed(Arc<Decimal>),
}

impl Num {
    pub fn new(d: Decimal) -> Num {
        let (mantissa, scale) = (d.mantissa, d.scale);
        match (i64::try_from(mantissa), u8::try_from(scale)) {
            (Ok(mantissa), Ok(scale)) => Num(NumRepr::Inline { scale, mantissa }),
            _ => Num(NumRepr::Boxed(Arc::new(d))),
        }
    }

    /// The number.
    #[inline]
    pub fn get(&self) -> Decimal {
        match &self.0 {
            NumRepr::Inline { scale, mantissa } => Decimal { mantissa: *mantissa as i128, scale: *scale as u32 },
            NumRepr::Boxed(d) => **d,
        }
    }
}

impl fmt::Debug for Num {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.get().fmt(f)
    }
}

impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.scale == 0 {
            return write!(f, "{}", { self.mantissa });
        }
        let neg = self.mantissa < 0;
        let digits = self.mantissa.unsigned_abs().to_string();
        let scale = self.scale as usize;
        let padded =
            if digits.len() <= scale { format!("{}{}", "0".repeat(scale + 1 - digits.len()), digits) } else { digits };
        let (int, frac) = padded.split_at(padded.len() - scale);
        write!(f, "{}{int}.{frac}", if neg { "-" } else { "" })
    }
}

/// One field of a row.
#[derive(Clone, Debug)]
pub enum Value {
    Null,
    Bool(bool),
    /// Any integer type (int2, int4, int8, oid); the column type bounds it.
    Int(i64),
    /// float4 or float8.
    Float(f64),
    /// numeric: inline when it fits a 64-bit mantissa and a one-byte scale, else boxed (see [`Num`]).
    Numeric(Num),
    /// text, varchar, char.
    Text(SharedStr),
    Bytes(Shared<u8>),
    /// Days since 2000-01-01, as PostgreSQL counts them.
    Date(i32),
    /// Microseconds since 2000-01-01 00:00:00.
    Timestamp(i64),
    /// Microseconds since 2000-01-01 00:00:00 UTC.
    TimestampTz(i64),
    /// Boxed, so that a value is two words.
    Interval(Arc<Interval>),
}

/// A time span as PostgreSQL keeps it: months, days and microseconds, each counted apart (a month is not
/// a fixed number of days). Ordered and compared by [`Interval::span`], as PostgreSQL does: `1 mon` equals
/// `30 days`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Interval {
    pub months: i32,
    pub days: i32,
    pub micros: i64,
}

/// Microseconds in a day.
pub const USECS_PER_DAY: i64 = 86_400_000_000;

impl Interval {
    /// The span PostgreSQL compares by: a month as 30 days, a day as 24 hours, in microseconds.
    pub fn span(&self) -> i128 {
        (self.months as i128 * 30 + self.days as i128) * USECS_PER_DAY as i128 + self.micros as i128
    }
}

const _: () = assert!(std::mem::size_of::<Value>() == 16, "a Value is a tag and one word; see storage::shared");

impl Value {
    /// A text value.
    pub fn text(s: &str) -> Value {
        Value::Text(SharedStr::from(s))
    }

    /// A numeric value.
    pub fn numeric(d: Decimal) -> Value {
        Value::Numeric(Num::new(d))
    }

    /// An interval value.
    pub fn interval(i: Interval) -> Value {
        Value::Interval(Arc::new(i))
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    fn rank(&self) -> u8 {
        match self {
            Value::Bool(_) => 0,
            Value::Int(_) | Value::Float(_) | Value::Numeric(_) => 1,
            Value::Text(_) => 2,
            Value::Bytes(_) => 3,
            Value::Date(_) => 4,
            Value::Timestamp(_) => 5,
            Value::TimestampTz(_) => 6,
            Value::Interval(_) => 7,
            Value::Null => 8,
        }
    }

    pub(crate) fn encode(&self, e: &mut Encoder) {
        match self {
            Value::Null => e.u8(0),
            Value::Bool(false) => e.u8(1),
            Value::Bool(true) => e.u8(2),
            Value::Int(v) => {
                e.u8(3);
                e.svar(*v);
            }
            Value::Float(v) => {
                e.u8(4);
                e.u64(v.to_bits());
            }
            Value::Numeric(d) => {
                let d = d.get();
                e.u8(5);
                e.u64(d.mantissa as u64);
                e.u64((d.mantissa >> 64) as u64);
                e.var(d.scale as u64);
            }
            Value::Text(s) => {
                e.u8(6);
                e.str(s);
            }
            Value::Bytes(b) => {
                e.u8(7);
                e.bytes(b);
            }
            Value::Date(v) => {
                e.u8(8);
                e.svar(*v as i64);
            }
            Value::Timestamp(v) => {
                e.u8(9);
                e.svar(*v);
            }
            Value::TimestampTz(v) => {
                e.u8(10);
                e.svar(*v);
            }
            Value::Interval(i) => {
                e.u8(11);
                e.svar(i.months as i64);
                e.svar(i.days as i64);
                e.svar(i.micros);
            }
        }
    }

    pub(crate) fn decode(d: &mut Decoder) -> Result<Value> {
        Ok(match d.u8()? {
            0 => Value::Null,
            1 => Value::Bool(false),
            2 => Value::Bool(true),
            3 => Value::Int(d.svar()?),
            4 => Value::Float(f64::from_bits(d.u64()?)),
            5 => {
                let lo = d.u64()? as u128;
                let hi = d.u64()? as u128;
                let scale = d.var()?;
                if scale > 1000 {
                    return Err(d.malformed(format!("numeric scale {scale}")));
                }
                Value::numeric(Decimal { mantissa: ((hi << 64) | lo) as i128, scale: scale as u32 })
            }
            6 => Value::Text(SharedStr::from(d.str()?)),
            7 => Value::Bytes(Shared::copy_from_slice(d.bytes()?)),
            8 => {
                let v = d.svar()?;
                Value::Date(i32::try_from(v).map_err(|_| d.malformed(format!("date {v} out of range")))?)
            }
            9 => Value::Timestamp(d.svar()?),
            10 => Value::TimestampTz(d.svar()?),
            11 => {
                let mut field = |what: &str| -> Result<i32> {
                    let v = d.svar()?;
                    i32::try_from(v).map_err(|_| d.malformed(format!("interval {what} {v} out of range")))
                };
                let (months, days) = (field("months")?, field("days")?);
                Value::interval(Interval { months, days, micros: d.svar()? })
            }
            t => return Err(d.malformed(format!("unknown value tag {t}"))),
        })
    }
}

/// Encodes a row or key: a count and the values.
pub(crate) fn encode_values(e: &mut Encoder, values: &[Value]) {
    e.var(values.len() as u64);
    for v in values {
        v.encode(e);
    }
}

/// Decodes what [`encode_values`] wrote.
pub(crate) fn decode_values(d: &mut Decoder) -> Result<Shared<Value>> {
    let n = d.count()?;
    let mut values = Vec::with_capacity(n);
    for _ in 0..n {
        values.push(Value::decode(d)?);
    }
    Ok(values.into())
}

impl PartialEq for Value {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Value {}

impl PartialOrd for Value {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Value {
    fn cmp(&self, other: &Self) -> Ordering {
        use Value::*;
        match (self, other) {
            (Bool(a), Bool(b)) => a.cmp(b),
            (Int(a), Int(b)) => a.cmp(b),
            (Float(a), Float(b)) => a.total_cmp(b),
            (Int(a), Float(b)) => (*a as f64).total_cmp(b),
            (Float(a), Int(b)) => a.total_cmp(&(*b as f64)),
            (Numeric(a), Numeric(b)) => a.get().cmp(&b.get()),
            (Int(a), Numeric(b)) => Decimal { mantissa: *a as i128, scale: 0 }.cmp(&b.get()),
            (Numeric(a), Int(b)) => a.get().cmp(&Decimal { mantissa: *b as i128, scale: 0 }),
            (Float(a), Numeric(b)) => a.total_cmp(&b.get().to_f64()),
            (Numeric(a), Float(b)) => a.get().to_f64().total_cmp(b),
            (Text(a), Text(b)) => a.cmp(b),
            (Bytes(a), Bytes(b)) => a.cmp(b),
            (Date(a), Date(b)) => a.cmp(b),
            (Timestamp(a), Timestamp(b)) => a.cmp(b),
            (TimestampTz(a), TimestampTz(b)) => a.cmp(b),
            (Interval(a), Interval(b)) => a.span().cmp(&b.span()),
            (Null, Null) => Ordering::Equal,
            _ => self.rank().cmp(&other.rank()),
        }
    }
}

impl Hash for Value {
    fn hash<H: Hasher>(&self, state: &mut H) {
        match self {
            Value::Null => 0u8.hash(state),
            Value::Bool(b) => b.hash(state),
            // Numbers that compare equal must hash alike across Int, Float and Numeric.
            Value::Int(i) => Decimal { mantissa: *i as i128, scale: 0 }.hash(state),
            Value::Float(f) if f.fract() == 0.0 && f.abs() < 1e18 => {
                Decimal { mantissa: *f as i128, scale: 0 }.hash(state)
            }
            Value::Float(f) => f.to_bits().hash(state),
            Value::Numeric(d) => d.get().hash(state),
            Value::Text(s) => s.hash(state),
            Value::Bytes(b) => b.hash(state),
            Value::Date(d) => d.hash(state),
            Value::Timestamp(t) | Value::TimestampTz(t) => t.hash(state),
            Value::Interval(i) => i.span().hash(state),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::hash_map::DefaultHasher;

    fn hash<T: Hash + ?Sized>(v: &T) -> u64 {
        let mut h = DefaultHasher::new();
        v.hash(&mut h);
        h.finish()
    }

    #[test]
    fn values_round_trip() {
        let values: Vec<Value> = vec![
            Value::Null,
            Value::Bool(true),
            Value::Int(-42),
            Value::Float(1.5),
            Value::numeric(Decimal { mantissa: -12345, scale: 2 }),
            Value::text("abc"),
            Value::Bytes(Shared::copy_from_slice(b"\x00\xff")),
            Value::Date(-3),
            Value::Timestamp(1_000_000),
            Value::TimestampTz(-1),
            Value::interval(Interval { months: -14, days: 3, micros: i64::MIN + 1 }),
        ];
        let mut e = Encoder::default();
        encode_values(&mut e, &values);
        let mut d = Decoder::new(&e.buf, "row");
        let back = decode_values(&mut d).unwrap();
        assert_eq!(&back[..], &values[..]);
        // Equal values compare equal; an interval's fields come back as they were, not just its span.
        assert!(
            matches!(back[10], Value::Interval(ref i) if **i == Interval { months: -14, days: 3, micros: i64::MIN + 1 })
        );
    }

    #[test]
    fn ordering() {
        assert!(Value::Int(1) < Value::Int(2));
        assert!(Value::Int(5) < Value::Null);
        assert_eq!(
            Value::numeric(Decimal { mantissa: 150, scale: 2 }),
            Value::numeric(Decimal { mantissa: 15, scale: 1 })
        );
        assert!(Value::Int(1) < Value::Float(1.5));
        let iv = |months, days, micros| Value::interval(Interval { months, days, micros });
        assert_eq!(iv(1, 0, 0), iv(0, 30, 0), "a month compares as 30 days, as in PostgreSQL");
        assert!(iv(0, 1, 0) < iv(0, 0, USECS_PER_DAY + 1));
        assert_eq!(Decimal { mantissa: -5, scale: 3 }.to_string(), "-0.005");
        assert_eq!(Decimal { mantissa: 12345, scale: 2 }.to_string(), "123.45");
    }

    #[test]
    fn numerics_inline_or_boxed_are_their_numbers() {
        let inline = |v: &Value| matches!(v, Value::Numeric(Num(NumRepr::Inline { .. })));
        let small = Decimal { mantissa: i64::MIN as i128, scale: 255 };
        let wide = Decimal { mantissa: i64::MAX as i128 + 1, scale: 0 };
        let deep = Decimal { mantissa: 10i128.pow(30), scale: 256 };
        assert!(inline(&Value::numeric(small)) && inline(&Value::numeric(Decimal { mantissa: 0, scale: 0 })));
        assert!(!inline(&Value::numeric(wide)) && !inline(&Value::numeric(deep)));
        for d in [small, wide, deep] {
            let Value::Numeric(n) = Value::numeric(d) else { unreachable!() };
            let back = n.get();
            let (m, s, bm, bs) = (d.mantissa, d.scale, back.mantissa, back.scale);
            assert_eq!((bm, bs), (m, s));
        }
        // The same number held both ways: equal, same hash, and ordered by value.
        let one_inline = Value::numeric(Decimal { mantissa: 1, scale: 0 });
        let one_boxed = Value::numeric(Decimal { mantissa: 10i128.pow(30), scale: 30 });
        assert!(inline(&one_inline) && !inline(&one_boxed));
        assert_eq!(one_inline, one_boxed);
        assert_eq!(hash(&one_inline), hash(&one_boxed));
        assert!(Value::numeric(wide) > Value::Int(i64::MAX) && Value::numeric(small) < Value::Int(0));
        let mut e = Encoder::default();
        let values = vec![one_inline, Value::numeric(wide), Value::numeric(deep)];
        encode_values(&mut e, &values);
        assert_eq!(&decode_values(&mut Decoder::new(&e.buf, "row")).unwrap()[..], &values[..]);
    }

    #[test]
    fn keys_are_their_values_however_held() {
        let one: Key = vec![Value::Int(7)].into();
        assert!(matches!(one, Key::One(_)), "a one-value key is held inline");
        let many_one = Key::Many(vec![Value::Int(7)].into());
        assert_eq!(one, many_one);
        assert_eq!(hash(&one), hash(&many_one));
        assert_eq!(hash(&one), hash(<Key as std::borrow::Borrow<[Value]>>::borrow(&one)));
        let pair: Key = [Value::Int(7), Value::text("a")].into_iter().collect();
        assert!(matches!(pair, Key::Many(_)));
        assert!(one < pair, "a key orders as its slice: a prefix first");
        assert!(Key::from(&[Value::Int(8)][..]) > pair);
        assert_eq!(&*Key::from(Row::from(vec![Value::Null])), &[Value::Null]);
        let empty: Key = std::iter::empty().collect();
        assert!(empty.is_empty() && empty < one);
    }
}
