//! `md5(text)`, `to_char(value, format)`, `format(fmt, ...)`, `encode`/`decode`: PostgreSQL's results for
//! what clients use them for.
//!
//! `md5` is RFC 1321, written out here (one small function is not worth a dependency). `to_char` knows
//! PostgreSQL's common template patterns: for times `YYYY`, `YY`, `MM`, `Mon`, `Month`, `DD`, `DDD`, `D`,
//! `Dy`, `Day`, `HH`/`HH12`, `HH24`, `MI`, `SS`, `MS`, `US`, `AM`/`PM`, `Q`, the `FM` prefix (no padding) and
//! double-quoted literal text; for numbers `9`, `0`, `.`, `D`, `,`, `G`, `FM`, `S`, `MI`, `PR`. Anything else
//! in a template is copied, as PostgreSQL copies characters that are not patterns.

use crate::error::{Error, Result, SqlState};
use crate::sql::expr::text_of;
use crate::sql::types::{civil_from_days, UNIX_TO_PG_DAYS};
use crate::storage::value::{Decimal, Value, USECS_PER_DAY};

/// A text as an SQL string literal, as quote_literal and format's %L write it: quotes doubled, and with
/// backslashes doubled under an `E` prefix when it has any.
pub fn quote_literal(t: &str) -> String {
    if t.contains('\\') {
        format!("E'{}'", t.replace('\\', "\\\\").replace('\'', "''"))
    } else {
        format!("'{}'", t.replace('\'', "''"))
    }
}

/// An identifier quoted only if it needs to be (quote_ident, format's `%I`).
pub fn quote_ident(v: &str) -> String {
    let plain = !v.is_empty()
        && !v.starts_with(|c: char| c.is_ascii_digit())
        && v.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if plain {
        v.to_string()
    } else {
        format!("\"{}\"", v.replace('"', "\"\""))
    }
}

/// format(fmt, args...): `%s` (text, NULL as nothing), `%I` (identifier), `%L` (literal, NULL unquoted),
/// `%%`, each optionally numbered (`%2$s`).
pub fn format(fmt: &str, args: &[Value]) -> Result<String> {
    let bad = |m: &str| Error::new(SqlState::INVALID_PARAMETER_VALUE, m.to_string());
    let mut out = String::new();
    let mut next = 0usize;
    let mut chars = fmt.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut spec = String::new();
        while let Some(&d) = chars.peek() {
            if d.is_ascii_digit() || d == '$' {
                spec.push(d);
                chars.next();
            } else {
                break;
            }
        }
        let kind = chars.next().ok_or_else(|| bad("unterminated format() type specifier"))?;
        if kind == '%' && spec.is_empty() {
            out.push('%');
            continue;
        }
        let index = match spec.strip_suffix('$') {
            Some(n) => {
                n.parse::<usize>()
                    .ok()
                    .filter(|&n| n >= 1)
                    .ok_or_else(|| bad("format specifies argument 0, but arguments are numbered from 1"))?
                    - 1
            }
            None if spec.is_empty() => next,
            None => return Err(bad("unrecognized format() type specifier")),
        };
        next = index + 1;
        let v = args.get(index).ok_or_else(|| bad("too few arguments for format()"))?;
        match kind {
            's' => out.push_str(&if v.is_null() { String::new() } else { text_of(v) }),
            'I' if v.is_null() => {
                return Err(Error::new(SqlState("22004"), "null values cannot be formatted as an SQL identifier"))
            }
            'I' => out.push_str(&quote_ident(&text_of(v))),
            'L' if v.is_null() => out.push_str("NULL"),
            'L' => out.push_str(&quote_literal(&text_of(v))),
            other => return Err(bad(&format!("unrecognized format() type specifier \"{other}\""))),
        }
    }
    Ok(out)
}

const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// encode(bytea, 'hex' | 'base64' | 'escape'), as PostgreSQL writes them (base64 in lines of 76).
pub fn encode(data: &[u8], format: &str) -> Result<String> {
    Ok(match format.to_lowercase().as_str() {
        "hex" => data.iter().map(|b| format!("{b:02x}")).collect(),
        "base64" => {
            let mut out = String::new();
            for (i, chunk) in data.chunks(3).enumerate() {
                if i > 0 && i.is_multiple_of(19) {
                    out.push('\n');
                }
                let n = chunk.iter().fold(0u32, |n, b| n << 8 | *b as u32) << (8 * (3 - chunk.len()));
                for k in 0..4 {
                    if k <= chunk.len() {
                        out.push(BASE64[(n >> (18 - 6 * k) & 63) as usize] as char);
                    } else {
                        out.push('=');
                    }
                }
            }
            out
        }
        "escape" => {
            let mut out = String::new();
            for &b in data {
                match b {
                    b'\\' => out.push_str("\\\\"),
                    0 | 0x80..=0xff => out.push_str(&format!("\\{b:03o}")),
                    b => out.push(b as char),
                }
            }
            out
        }
        other => {
            return Err(Error::new(SqlState::INVALID_PARAMETER_VALUE, format!("unrecognized encoding: \"{other}\"")))
        }
    })
}

/// decode(text, 'hex' | 'base64' | 'escape').
pub fn decode(text: &str, format: &str) -> Result<Vec<u8>> {
    let bad = |m: String| Error::new(SqlState::INVALID_PARAMETER_VALUE, m);
    match format.to_lowercase().as_str() {
        "hex" => {
            let digits: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
            if !digits.len().is_multiple_of(2) {
                return Err(bad("invalid hexadecimal data: odd number of digits".into()));
            }
            digits
                .chunks(2)
                .map(|p| {
                    std::str::from_utf8(p)
                        .ok()
                        .and_then(|h| u8::from_str_radix(h, 16).ok())
                        .ok_or_else(|| bad(format!("invalid hexadecimal digit: \"{}\"", String::from_utf8_lossy(p))))
                })
                .collect()
        }
        "base64" => {
            let mut out = Vec::new();
            let (mut acc, mut bits) = (0u32, 0u32);
            for c in text.bytes().filter(|b| !b.is_ascii_whitespace()) {
                if c == b'=' {
                    break;
                }
                let v = BASE64.iter().position(|&x| x == c).ok_or_else(|| {
                    bad(format!("invalid symbol \"{}\" found while decoding base64 sequence", c as char))
                })? as u32;
                acc = acc << 6 | v;
                bits += 6;
                if bits >= 8 {
                    bits -= 8;
                    out.push((acc >> bits & 0xff) as u8);
                }
            }
            Ok(out)
        }
        "escape" => {
            crate::sql::types::parse_bytea_escape(text).ok_or_else(|| bad("invalid input syntax for type bytea".into()))
        }
        other => Err(bad(format!("unrecognized encoding: \"{other}\""))),
    }
}

/// The MD5 digest of `data`, in lower-case hex.
pub fn md5_hex(data: &[u8]) -> String {
    const S: [u32; 64] = [
        7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 5, 9, 14, 20, 5, 9, 14, 20, 5, 9, 14, 20, 5, 9, 14,
        20, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21, 6,
        10, 15, 21,
    ];
    // K[i] = floor(2^32 * |sin(i + 1)|).
    let k: Vec<u32> = (0..64).map(|i| ((i as f64 + 1.0).sin().abs() * 4_294_967_296.0) as u32).collect();
    let mut msg = data.to_vec();
    let bits = (data.len() as u64).wrapping_mul(8);
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&bits.to_le_bytes());
    let mut h: [u32; 4] = [0x6745_2301, 0xefcd_ab89, 0x98ba_dcfe, 0x1032_5476];
    for chunk in msg.chunks_exact(64) {
        let w: Vec<u32> = chunk.chunks_exact(4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
        let [mut a, mut b, mut c, mut d] = h;
        for i in 0..64 {
            let (f, g) = match i / 16 {
                0 => ((b & c) | (!b & d), i),
                1 => ((d & b) | (!d & c), (5 * i + 1) % 16),
                2 => (b ^ c ^ d, (3 * i + 5) % 16),
                _ => (c ^ (b | !d), (7 * i) % 16),
            };
            let rotated = a.wrapping_add(f).wrapping_add(k[i]).wrapping_add(w[g]).rotate_left(S[i]);
            (a, d, c) = (d, c, b);
            b = b.wrapping_add(rotated);
        }
        for (x, y) in h.iter_mut().zip([a, b, c, d]) {
            *x = x.wrapping_add(y);
        }
    }
    h.iter().flat_map(|x| x.to_le_bytes()).map(|b| format!("{b:02x}")).collect()
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const DAYS: [&str; 7] = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"];

/// A template pattern and what it prints (given the pattern as written, for its letter case).
type Pattern<'a> = (&'static str, &'a dyn Fn(&str) -> String);

/// `to_char(timestamp, template)`; `usecs` counts from 2000-01-01.
pub fn format_time(usecs: i64, template: &str) -> String {
    let day = usecs.div_euclid(USECS_PER_DAY);
    let time = usecs.rem_euclid(USECS_PER_DAY);
    let (y, m, d) = civil_from_days(day + UNIX_TO_PG_DAYS);
    let dow = (day + 6).rem_euclid(7) as usize; // 2000-01-01 was a Saturday
    let doy = day + UNIX_TO_PG_DAYS - crate::sql::types::days_from_civil(y, 1, 1) + 1;
    let (hour, minute) = (time / 3_600_000_000, time / 60_000_000 % 60);
    let (second, micro) = (time / 1_000_000 % 60, time % 1_000_000);
    let hour12 = if hour % 12 == 0 { 12 } else { hour % 12 };
    let mut out = String::new();
    let mut rest = template;
    while !rest.is_empty() {
        if let Some(quoted) = rest.strip_prefix('"') {
            let end = quoted.find('"').unwrap_or(quoted.len());
            out.push_str(&quoted[..end]);
            rest = quoted.get(end + 1..).unwrap_or("");
            continue;
        }
        let (fm, body) = match rest.strip_prefix("FM").or_else(|| rest.strip_prefix("fm")) {
            Some(b) => (true, b),
            None => (false, rest),
        };
        let num = |v: i64, width: usize| if fm { v.to_string() } else { format!("{v:0width$}") };
        let name = |s: &str, width: usize| if fm { s.to_string() } else { format!("{s:<width$}") };
        let cased = |s: &str, pat: &str| {
            if pat.chars().all(|c| c.is_ascii_uppercase()) {
                s.to_uppercase()
            } else if pat.chars().all(|c| c.is_ascii_lowercase()) {
                s.to_lowercase()
            } else {
                s.to_string()
            }
        };
        // Longest patterns first.
        let patterns: [Pattern; 29] = [
            ("YYYY", &|_| num(y, 4)),
            ("HH24", &|_| num(hour, 2)),
            ("HH12", &|_| num(hour12, 2)),
            ("MONTH", &|p| cased(&name(MONTHS[m as usize - 1], 9), p)),
            ("Month", &|p| cased(&name(MONTHS[m as usize - 1], 9), p)),
            ("month", &|p| cased(&name(MONTHS[m as usize - 1], 9), p)),
            ("DAY", &|p| cased(&name(DAYS[dow], 9), p)),
            ("Day", &|p| cased(&name(DAYS[dow], 9), p)),
            ("day", &|p| cased(&name(DAYS[dow], 9), p)),
            ("YYY", &|_| num(y % 1000, 3)),
            ("MON", &|p| cased(&MONTHS[m as usize - 1][..3], p)),
            ("Mon", &|p| cased(&MONTHS[m as usize - 1][..3], p)),
            ("mon", &|p| cased(&MONTHS[m as usize - 1][..3], p)),
            ("DDD", &|_| num(doy, 3)),
            ("DY", &|p| cased(&DAYS[dow][..3], p)),
            ("Dy", &|p| cased(&DAYS[dow][..3], p)),
            ("dy", &|p| cased(&DAYS[dow][..3], p)),
            ("YY", &|_| num(y % 100, 2)),
            ("MM", &|_| num(m, 2)),
            ("DD", &|_| num(d, 2)),
            ("HH", &|_| num(hour12, 2)),
            ("MI", &|_| num(minute, 2)),
            ("SS", &|_| num(second, 2)),
            ("MS", &|_| num(micro / 1000, 3)),
            ("US", &|_| num(micro, 6)),
            ("AM", &|_| if hour < 12 { "AM" } else { "PM" }.into()),
            ("PM", &|_| if hour < 12 { "AM" } else { "PM" }.into()),
            ("Q", &|_| ((m - 1) / 3 + 1).to_string()),
            ("D", &|_| (dow + 1).to_string()),
        ];
        match patterns.iter().find(|(p, _)| body.starts_with(p)) {
            Some((p, f)) => {
                out.push_str(&f(p));
                rest = &body[p.len()..];
            }
            None => {
                let c = rest.chars().next().unwrap_or(' ');
                out.push(c);
                rest = &rest[c.len_utf8()..];
            }
        }
    }
    out
}

/// `to_char(number, template)` for templates of `9`, `0`, `.`/`D`, `,`/`G`, with `FM`, `S`, `MI`, `PR`.
pub fn format_number(value: Decimal, template: &str) -> Result<String> {
    let fm = template.contains("FM") || template.contains("fm");
    let t: String = template.replace("FM", "").replace("fm", "");
    let (sign_lead, t) = match t.strip_prefix('S') {
        Some(r) => (true, r.to_string()),
        None => (false, t),
    };
    let (mi, pr) = (t.ends_with("MI"), t.ends_with("PR"));
    let t = t.trim_end_matches("MI").trim_end_matches("PR").to_string();
    if t.chars().any(|c| !matches!(c, '9' | '0' | '.' | 'D' | ',' | 'G')) {
        return Err(Error::new(
            SqlState::FEATURE_NOT_SUPPORTED,
            format!(
                "to_char number template \"{template}\" is not supported (9, 0, ., D, comma, G, FM, S, MI, PR are)"
            ),
        ));
    }
    let point = t.find(['.', 'D']);
    let (int_t, frac_t) = match point {
        Some(i) => (&t[..i], &t[i + 1..]),
        None => (&t[..], ""),
    };
    let frac_digits = frac_t.chars().filter(|c| matches!(c, '9' | '0')).count() as u32;
    let rounded = crate::sql::types::round_decimal(value, frac_digits);
    let neg = rounded.mantissa < 0;
    let digits = rounded.mantissa.unsigned_abs().to_string();
    let digits = format!("{digits:0>width$}", width = frac_digits as usize + 1);
    let (int_digits, frac_digits_s) = digits.split_at(digits.len() - frac_digits as usize);
    let int_slots = int_t.chars().filter(|c| matches!(c, '9' | '0')).count();
    let int_digits = int_digits.trim_start_matches('0');
    if int_digits.len() > int_slots {
        // PostgreSQL prints # for every slot when the number does not fit (after the sign's blank).
        let hashes: String = t.chars().map(|c| if matches!(c, '9' | '0') { '#' } else { c }).collect();
        return Ok(if fm { hashes } else { format!(" {hashes}") });
    }
    // Fill the integer slots from the right.
    let mut out: Vec<char> = Vec::new();
    let mut ds = int_digits.chars().rev();
    for c in int_t.chars().rev() {
        match c {
            '9' | '0' => match ds.next() {
                Some(dg) => out.push(dg),
                None if c == '0' => out.push('0'),
                None => out.push(' '),
            },
            ',' | 'G' => out.push(','),
            _ => {}
        }
    }
    out.reverse();
    let mut int_part: String = out.into_iter().collect();
    // A separator with no digit before it is blank.
    while let Some(pos) = int_part.find(|c: char| c != ' ') {
        if int_part[pos..].starts_with(',') {
            int_part.replace_range(pos..pos + 1, " ");
        } else {
            break;
        }
    }
    if int_part.trim().is_empty() && int_slots > 0 && frac_digits == 0 {
        // A zero shows as 0 in its last slot.
        int_part.pop();
        int_part.push('0');
    }
    let mut s = int_part;
    if point.is_some() {
        s.push('.');
        s.push_str(frac_digits_s);
    }
    let sign = if neg {
        "-"
    } else if sign_lead {
        "+"
    } else {
        ""
    };
    let s = if mi {
        format!("{s}{}", if neg { "-" } else { " " })
    } else if pr {
        if neg {
            let first = s.find(|c: char| c != ' ').unwrap_or(s.len());
            format!("{}<{}>", &s[..first], &s[first..])
        } else {
            format!(" {s} ")
        }
    } else {
        // The sign goes just before the first digit; without one, a blank is kept for it.
        let first = s.find(|c: char| c != ' ').unwrap_or(s.len());
        let (pad, body) = s.split_at(first);
        if sign.is_empty() && !sign_lead {
            format!("{pad} {body}")
        } else {
            format!("{pad}{sign}{body}")
        }
    };
    Ok(if fm { s.trim().to_string() } else { s })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md5_known_digests() {
        assert_eq!(md5_hex(b""), "d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(md5_hex(b"abc"), "900150983cd24fb0d6963f7d28e17f72");
        assert_eq!(md5_hex(b"The quick brown fox jumps over the lazy dog"), "9e107d9d372bb6826bd81d3542a419d6");
        assert_eq!(md5_hex(&[b'a'; 200]), md5_hex(&[b'a'; 200]));
        assert_ne!(md5_hex(&[b'a'; 64]), md5_hex(&[b'a'; 65]));
    }

    #[test]
    fn times_as_postgresql_formats_them() {
        // 2024-02-29 13:05:09.123456, a Thursday.
        let day = crate::sql::types::days_from_civil(2024, 2, 29) - UNIX_TO_PG_DAYS;
        let t = day * USECS_PER_DAY + ((13 * 60 + 5) * 60 + 9) * 1_000_000 + 123_456;
        assert_eq!(format_time(t, "YYYY-MM-DD HH24:MI:SS"), "2024-02-29 13:05:09");
        assert_eq!(format_time(t, "Dy, DD Mon YYYY HH12:MI AM"), "Thu, 29 Feb 2024 01:05 PM");
        assert_eq!(format_time(t, "FMMonth FMDD"), "February 29");
        assert_eq!(format_time(t, "Month"), "February ");
        assert_eq!(format_time(t, "DAY \"is day\" D, DDD, Q"), "THURSDAY  is day 5, 060, 1");
        assert_eq!(format_time(t, "MS US"), "123 123456");
    }

    #[test]
    fn numbers_as_postgresql_formats_them() {
        let n = |s: &str| crate::sql::types::parse_decimal(s).unwrap();
        assert_eq!(format_number(n("1234.5"), "9999.99").unwrap(), " 1234.50");
        assert_eq!(format_number(n("-1234.5"), "9999.99").unwrap(), "-1234.50");
        assert_eq!(format_number(n("1234.5"), "FM9,999.00").unwrap(), "1,234.50");
        assert_eq!(format_number(n("5"), "000").unwrap(), " 005");
        assert_eq!(format_number(n("42"), "FM999").unwrap(), "42");
        // Compared with PostgreSQL 15's output for the same calls.
        assert_eq!(format_number(n("12345"), "999").unwrap(), " ###");
        assert_eq!(format_number(n("-5"), "999PR").unwrap(), "  <5>");
        assert_eq!(format_number(n("5"), "999PR").unwrap(), "   5 ");
        assert_eq!(format_number(n("-5"), "999MI").unwrap(), "  5-");
        assert_eq!(format_number(n("5"), "S999").unwrap(), "  +5");
        assert_eq!(format_number(n("1234567"), "9,999,999").unwrap(), " 1,234,567");
        assert_eq!(format_number(n("12"), "9,999").unwrap(), "    12");
        assert_eq!(format_number(n("0.5"), "9.99").unwrap(), "  .50");
        assert_eq!(format_number(n("0.5"), "0.99").unwrap(), " 0.50");
        assert_eq!(format_number(n("-0.5"), "FM0.00").unwrap(), "-0.50");
        assert_eq!(format_number(n("0"), "999").unwrap(), "   0");
        assert!(format_number(n("1"), "L999").is_err());
    }
}
