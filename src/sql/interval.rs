//! The `interval` type: PostgreSQL's text form in and out, and its arithmetic with timestamps and dates.
//!
//! An interval keeps months, days and microseconds apart ([`Interval`]), because a month is not a fixed
//! number of days: `timestamp '2024-01-31' + interval '1 month'` is February 29th, and adding `1 day` then
//! `24 hours` is the same here only because tandem's time zone is UTC. Input takes PostgreSQL's forms:
//! `1 year 2 mons 3 days 04:05:06.5`, `-2 hours`, `1.5 days`, `3 weeks ago`, `@ 1 minute`, a bare number
//! of seconds, and ISO 8601 `P1Y2M3DT4H5M6S`. A fraction moves down to the smaller units (a month is 30
//! days, a day 24 hours), as PostgreSQL does. Output is IntervalStyle `postgres`.

use crate::sql::types::{civil_from_days, days_from_civil, UNIX_TO_PG_DAYS};
use crate::storage::value::{Interval, USECS_PER_DAY};

const USECS_PER_SEC: f64 = 1_000_000.0;

/// Adds `n` of `unit` to an interval under construction (months, days, microseconds).
fn add_unit(acc: &mut (f64, f64, f64), n: f64, unit: &str) -> Option<()> {
    let (months, days, micros) = acc;
    let secs = |k: f64| Some(k * USECS_PER_SEC);
    let m = |u: &str, names: &[&str]| names.contains(&u);
    if m(unit, &["us", "usec", "usecs", "microsecond", "microseconds", "microsecon"]) {
        *micros += n;
    } else if m(unit, &["ms", "msec", "msecs", "millisecond", "milliseconds", "millisecon"]) {
        *micros += n * 1000.0;
    } else if m(unit, &["s", "sec", "secs", "second", "seconds"]) {
        *micros += secs(n)?;
    } else if m(unit, &["m", "min", "mins", "minute", "minutes"]) {
        *micros += secs(n * 60.0)?;
    } else if m(unit, &["h", "hr", "hrs", "hour", "hours"]) {
        *micros += secs(n * 3600.0)?;
    } else if m(unit, &["d", "day", "days"]) {
        *days += n;
    } else if m(unit, &["w", "week", "weeks"]) {
        *days += n * 7.0;
    } else if m(unit, &["mon", "mons", "month", "months"]) {
        *months += n;
    } else if m(unit, &["y", "yr", "yrs", "year", "years"]) {
        *months += n * 12.0;
    } else if m(unit, &["decade", "decades"]) {
        *months += n * 120.0;
    } else if m(unit, &["century", "centuries"]) {
        *months += n * 1200.0;
    } else if m(unit, &["millennium", "millennia", "millenniums"]) {
        *months += n * 12000.0;
    } else {
        return None;
    }
    Some(())
}

/// Whole months, days and microseconds, each fraction moved down a unit; None if out of range.
fn settle(months: f64, days: f64, micros: f64) -> Option<Interval> {
    let whole_months = months.trunc();
    let days = days + (months - whole_months) * 30.0;
    let whole_days = days.trunc();
    let micros = (micros + (days - whole_days) * USECS_PER_DAY as f64).round();
    let fits = |v: f64, max: f64| v.is_finite() && v.abs() <= max;
    if !fits(whole_months, i32::MAX as f64) || !fits(whole_days, i32::MAX as f64) || !fits(micros, 9.2e18) {
        return None;
    }
    Some(Interval { months: whole_months as i32, days: whole_days as i32, micros: micros as i64 })
}

/// `[-]h:m[:s[.frac]]` as microseconds.
fn parse_time(t: &str) -> Option<f64> {
    let (neg, t) = match t.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let parts: Vec<&str> = t.split(':').collect();
    if !(2..=3).contains(&parts.len()) || parts.iter().any(|p| p.is_empty()) {
        return None;
    }
    let h: f64 = parts[0].parse().ok().filter(|_| parts[0].bytes().all(|b| b.is_ascii_digit()))?;
    let m: f64 = parts[1].parse().ok().filter(|_| parts[1].bytes().all(|b| b.is_ascii_digit()))?;
    let s: f64 = match parts.get(2) {
        Some(p) if p.bytes().all(|b| b.is_ascii_digit() || b == b'.') => p.parse().ok()?,
        Some(_) => return None,
        None => 0.0,
    };
    let v = ((h * 60.0 + m) * 60.0 + s) * USECS_PER_SEC;
    Some(if neg { -v } else { v })
}

/// ISO 8601 `P[nY][nM][nW][nD][T[nH][nM][nS]]`.
fn parse_iso(t: &str) -> Option<Interval> {
    let mut acc = (0.0, 0.0, 0.0);
    let mut in_time = false;
    let mut num = String::new();
    for c in t[1..].chars() {
        match c {
            't' if num.is_empty() => in_time = true,
            '0'..='9' | '.' | '-' | '+' => num.push(c),
            _ => {
                let n: f64 = num.parse().ok()?;
                let unit = match (c, in_time) {
                    ('y', false) => "year",
                    ('m', false) => "month",
                    ('w', false) => "week",
                    ('d', false) => "day",
                    ('h', true) => "hour",
                    ('m', true) => "minute",
                    ('s', true) => "second",
                    _ => return None,
                };
                add_unit(&mut acc, n, unit)?;
                num.clear();
            }
        }
    }
    if !num.is_empty() || t.len() == 1 {
        return None;
    }
    settle(acc.0, acc.1, acc.2)
}

/// Parses PostgreSQL's text input for an interval.
pub fn parse(s: &str) -> Option<Interval> {
    let lower = s.trim().to_ascii_lowercase();
    let t = lower.strip_prefix('@').unwrap_or(&lower).trim();
    if t.starts_with('p') {
        return parse_iso(t);
    }
    let (t, ago) = match t.strip_suffix("ago") {
        Some(rest) => (rest.trim_end(), true),
        None => (t, false),
    };
    // Split "1day" and "1 day" alike into numbers and words.
    let mut tokens: Vec<String> = Vec::new();
    for word in t.split_whitespace() {
        if word.contains(':') {
            tokens.push(word.to_string());
            continue;
        }
        let mut cur = String::new();
        for c in word.chars() {
            let alpha = c.is_ascii_alphabetic();
            if !cur.is_empty() && alpha != cur.chars().all(|x| x.is_ascii_alphabetic()) {
                tokens.push(std::mem::take(&mut cur));
            }
            cur.push(c);
        }
        if !cur.is_empty() {
            tokens.push(cur);
        }
    }
    if tokens.is_empty() {
        return None;
    }
    let mut acc = (0.0, 0.0, 0.0);
    let mut i = 0;
    while i < tokens.len() {
        let tok = &tokens[i];
        if tok.contains(':') {
            acc.2 += parse_time(tok)?;
            i += 1;
            continue;
        }
        let n: f64 = tok.parse().ok().filter(|_| tok.bytes().any(|b| b.is_ascii_digit()))?;
        match tokens.get(i + 1) {
            Some(unit) if unit.chars().all(|c| c.is_ascii_alphabetic()) => {
                add_unit(&mut acc, n, unit)?;
                i += 2;
            }
            // A number alone is seconds.
            _ => {
                acc.2 += n * USECS_PER_SEC;
                i += 1;
            }
        }
    }
    let sign = if ago { -1.0 } else { 1.0 };
    settle(acc.0 * sign, acc.1 * sign, acc.2 * sign)
}

/// PostgreSQL's output (IntervalStyle `postgres`): `1 year 2 mons 3 days 04:05:06.5`, `-1 days`, `00:00:00`.
pub fn format(i: &Interval) -> String {
    let mut parts = Vec::new();
    let (years, mons) = (i.months / 12, i.months % 12);
    // After a negative field, a positive one is written with its `+`, as PostgreSQL does.
    let mut after_negative = false;
    let mut unit = |n: i64, one: &str, many: &str| {
        if n != 0 {
            let plus = if after_negative && n > 0 { "+" } else { "" };
            parts.push(format!("{plus}{n} {}", if n == 1 { one } else { many }));
            after_negative |= n < 0;
        }
    };
    unit(years as i64, "year", "years");
    unit(mons as i64, "mon", "mons");
    unit(i.days as i64, "day", "days");
    if i.micros != 0 || parts.is_empty() {
        let sign = match i.micros {
            m if m < 0 => "-",
            m if m > 0 && (i.months < 0 || i.days < 0) => "+",
            _ => "",
        };
        let us = i.micros.unsigned_abs();
        let (secs, frac) = (us / 1_000_000, us % 1_000_000);
        let mut time = format!("{sign}{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60);
        if frac != 0 {
            time.push_str(format!(".{frac:06}").trim_end_matches('0'));
        }
        parts.push(time);
    }
    parts.join(" ")
}

/// Adds an interval to a time in microseconds since 2000-01-01: months by the calendar (the day clamped
/// to the month's last), then days, then microseconds. None on overflow.
pub fn add_to_timestamp(t: i64, i: &Interval) -> Option<i64> {
    let mut t = t;
    if i.months != 0 {
        let (day, time) = (t.div_euclid(USECS_PER_DAY), t.rem_euclid(USECS_PER_DAY));
        let (y, m, d) = civil_from_days(day + UNIX_TO_PG_DAYS);
        let total = y.checked_mul(12)?.checked_add(m - 1)?.checked_add(i.months as i64)?;
        let (ny, nm) = (total.div_euclid(12), total.rem_euclid(12) + 1);
        let last = days_from_civil(if nm == 12 { ny + 1 } else { ny }, if nm == 12 { 1 } else { nm + 1 }, 1)
            - days_from_civil(ny, nm, 1);
        t = (days_from_civil(ny, nm, d.min(last)) - UNIX_TO_PG_DAYS).checked_mul(USECS_PER_DAY)?.checked_add(time)?;
    }
    t.checked_add((i.days as i64).checked_mul(USECS_PER_DAY)?)?.checked_add(i.micros)
}

/// The interval between two times in microseconds (`a - b`): whole days and the rest, as PostgreSQL's
/// timestamp subtraction gives.
pub fn between(a: i64, b: i64) -> Option<Interval> {
    let d = a.checked_sub(b)?;
    Some(Interval { months: 0, days: i32::try_from(d / USECS_PER_DAY).ok()?, micros: d % USECS_PER_DAY })
}

pub fn negate(i: &Interval) -> Option<Interval> {
    Some(Interval { months: i.months.checked_neg()?, days: i.days.checked_neg()?, micros: i.micros.checked_neg()? })
}

pub fn add(a: &Interval, b: &Interval) -> Option<Interval> {
    Some(Interval {
        months: a.months.checked_add(b.months)?,
        days: a.days.checked_add(b.days)?,
        micros: a.micros.checked_add(b.micros)?,
    })
}

/// Multiplies each field, moving fractions down (a month is 30 days, a day 24 hours).
pub fn scale(i: &Interval, f: f64) -> Option<Interval> {
    settle(i.months as f64 * f, i.days as f64 * f, i.micros as f64 * f)
}

/// A field of an interval as extract() gives it: an exact decimal (mantissa, scale), as in PostgreSQL 15
/// (seconds with six decimals, milliseconds with three). The epoch counts a year as 365.25 days and a month
/// as 30, as PostgreSQL does.
pub fn part(i: &Interval, field: &str) -> Option<(i128, u32)> {
    let in_minute = (i.micros % 60_000_000) as i128;
    let day = USECS_PER_DAY as i128;
    let (years, months) = ((i.months / 12) as i128, (i.months % 12) as i128);
    Some(match field {
        "epoch" => (years * 31_557_600_000_000 + months * 30 * day + i.days as i128 * day + i.micros as i128, 6),
        "millennium" | "millennia" => (years / 1000, 0),
        "century" | "centuries" => (years / 100, 0),
        "decade" | "decades" => (years / 10, 0),
        "year" | "years" => (years, 0),
        "quarter" => (months / 3 + 1, 0),
        "month" | "months" | "mon" | "mons" => (months, 0),
        "day" | "days" => (i.days as i128, 0),
        "hour" | "hours" => ((i.micros / 3_600_000_000) as i128, 0),
        "minute" | "minutes" => ((i.micros / 60_000_000 % 60) as i128, 0),
        "second" | "seconds" => (in_minute, 6),
        "millisecond" | "milliseconds" => (in_minute, 3),
        "microsecond" | "microseconds" => (in_minute, 0),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(input: &str) -> String {
        parse(input).map(|i| format(&i)).unwrap_or_else(|| "invalid".into())
    }

    #[test]
    fn text_in_and_out_as_postgresql_prints_it() {
        for (input, out) in [
            ("1 day", "1 day"),
            ("2 days", "2 days"),
            ("-1 day", "-1 days"),
            ("1 year 2 months 3 days 04:05:06", "1 year 2 mons 3 days 04:05:06"),
            ("1.5 days", "1 day 12:00:00"),
            ("1.5 seconds", "00:00:01.5"),
            ("90 minutes", "01:30:00"),
            ("36 hours", "36:00:00"),
            ("1 day -1 hour", "1 day -01:00:00"),
            ("3 weeks ago", "-21 days"),
            ("@ 1 minute", "00:01:00"),
            ("10", "00:00:10"),
            ("1h30m", "01:30:00"),
            ("P1Y2M3DT4H5M6S", "1 year 2 mons 3 days 04:05:06"),
            ("0", "00:00:00"),
            ("-1 year -2 mons +3 days", "-1 years -2 mons +3 days"),
            ("-1 day +1 hour", "-1 days +01:00:00"),
            ("1 mon", "1 mon"),
            ("0.5 mon", "15 days"),
            ("100 ms", "00:00:00.1"),
        ] {
            assert_eq!(round_trip(input), out, "{input}");
        }
        for bad in ["", "day", "1 fortnight", "1:2:3:4", "P", "1 day 2 nonsense", "a1"] {
            assert!(parse(bad).is_none(), "{bad:?} parsed");
        }
    }

    #[test]
    fn calendar_arithmetic() {
        // Times count from 2000-01-01, as PostgreSQL's do.
        let day = |y, m, d| (days_from_civil(y, m, d) - UNIX_TO_PG_DAYS) * USECS_PER_DAY;
        assert_eq!(day(2000, 1, 1), 0);
        let month = Interval { months: 1, days: 0, micros: 0 };
        // The day is clamped to the month's last: January 31st plus a month is February 29th in 2024.
        assert_eq!(add_to_timestamp(day(2024, 1, 31), &month), Some(day(2024, 2, 29)));
        assert_eq!(add_to_timestamp(day(2023, 12, 15), &month), Some(day(2024, 1, 15)));
        let back = negate(&Interval { months: 14, days: 1, micros: 1 }).unwrap();
        // Months by the calendar first, then days, then microseconds.
        assert_eq!(add_to_timestamp(day(2024, 3, 1), &back), Some(day(2022, 12, 31) - 1));
        let d = between(day(2024, 1, 2) + 3_600_000_000, day(2024, 1, 1)).unwrap();
        assert_eq!(format(&d), "1 day 01:00:00");
        assert_eq!(format(&between(day(2024, 1, 1), day(2024, 1, 2)).unwrap()), "-1 days");
        assert_eq!(format(&scale(&parse("1 day").unwrap(), 1.5).unwrap()), "1 day 12:00:00");
        assert_eq!(part(&parse("1 day 01:00:00").unwrap(), "epoch"), Some((90_000_000_000, 6)));
        assert_eq!(part(&parse("1 year").unwrap(), "epoch"), Some((31_557_600_000_000, 6)), "365.25 days");
        assert_eq!(parse("1 mon").unwrap().span(), parse("30 days").unwrap().span());
    }
}
