//! The session time zone (`SET TimeZone`, `SET TIME ZONE`): timestamptz values are instants (µs since
//! 2000-01-01 UTC) and are shown, read and split into fields in the session's zone, as in PostgreSQL.
//!
//! Zones come from the system's tz database (`/usr/share/zoneinfo`, TZif files, version 2 or later: the
//! 64-bit transition times); `UTC`, `GMT`, `Z` and `Etc/UTC` need no file. A zone is loaded once per process
//! and shared. The offset at an instant is the type of the last transition before it (before the first,
//! the first standard-time type); after the last transition in the file the last type stays (the files
//! carry transitions up to 2037). Local times are turned back into instants with the offset in force at
//! them, so a local time in a DST gap moves forward and one in an overlap takes the earlier instant's
//! offset.
//!
//! The zone in force is thread-local: a session runs on its own thread and sets it before each statement
//! (`Session::execute_prepared`), so value formatting and casts, which know nothing of sessions, read it
//! through [`offset_at`] and [`to_utc`]. Threads that never set one work in UTC.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use crate::error::{Error, Result, SqlState};

/// Seconds between 1970-01-01 and 2000-01-01.
const PG_EPOCH_UNIX: i64 = 946_684_800;

/// A time zone: its transitions (Unix seconds) and the UTC offset (seconds) from each on.
#[derive(Debug)]
pub struct Zone {
    pub name: String,
    transitions: Vec<i64>,
    offsets: Vec<i32>,
    /// The offset before the first transition.
    initial: i32,
}

impl Zone {
    fn utc(name: &str) -> Zone {
        Zone { name: name.to_string(), transitions: Vec::new(), offsets: Vec::new(), initial: 0 }
    }

    /// Whether the zone is UTC at every instant.
    pub fn is_utc(&self) -> bool {
        self.initial == 0 && self.offsets.iter().all(|&o| o == 0)
    }

    /// The UTC offset in seconds at an instant (µs since 2000-01-01 UTC).
    pub fn offset(&self, usecs: i64) -> i32 {
        let unix = usecs.div_euclid(1_000_000) + PG_EPOCH_UNIX;
        match self.transitions.partition_point(|&t| t <= unix) {
            0 => self.initial,
            i => self.offsets[i - 1],
        }
    }

    /// The instant of a local time (µs since 2000-01-01, read on this zone's clocks).
    pub fn to_utc(&self, local: i64) -> i64 {
        let guess = local - self.offset(local) as i64 * 1_000_000;
        local - self.offset(guess) as i64 * 1_000_000
    }
}

/// Reads a TZif file (version 2 or later).
fn parse_tzif(name: &str, data: &[u8]) -> Option<Zone> {
    let header = |at: usize| -> Option<[usize; 6]> {
        if data.get(at..at + 4)? != b"TZif" {
            return None;
        }
        let mut counts = [0usize; 6];
        for (i, c) in counts.iter_mut().enumerate() {
            let o = at + 20 + i * 4;
            *c = u32::from_be_bytes(data.get(o..o + 4)?.try_into().ok()?) as usize;
        }
        Some(counts)
    };
    // Counts: isutcnt, isstdcnt, leapcnt, timecnt, typecnt, charcnt.
    let [isut, isstd, leap, time, types, chars] = header(0)?;
    if data.get(4).copied()? < b'2' {
        return None;
    }
    let v1 = time * 5 + types * 6 + chars + leap * 8 + isstd + isut;
    let at = 44 + v1;
    let [isut, isstd, leap, time, types, chars] = header(at)?;
    let _ = (isut, isstd, leap, chars);
    let mut p = at + 44;
    // Sized by what is read, not by the counts the file claims.
    let mut transitions = Vec::new();
    for _ in 0..time {
        transitions.push(i64::from_be_bytes(data.get(p..p + 8)?.try_into().ok()?));
        p += 8;
    }
    let index = data.get(p..p + time)?.to_vec();
    p += time;
    let mut kinds = Vec::new();
    for _ in 0..types {
        let off = i32::from_be_bytes(data.get(p..p + 4)?.try_into().ok()?);
        let dst = *data.get(p + 4)? != 0;
        kinds.push((off, dst));
        p += 6;
    }
    let offsets = index.iter().map(|&i| kinds.get(i as usize).map(|k| k.0)).collect::<Option<Vec<_>>>()?;
    let initial = kinds.iter().find(|k| !k.1).or(kinds.first()).map_or(0, |k| k.0);
    Some(Zone { name: name.to_string(), transitions, offsets, initial })
}

/// The zone called `name`, loaded once per process; 22023 for a name the tz database does not have.
pub fn load(name: &str) -> Result<Arc<Zone>> {
    static CACHE: OnceLock<Mutex<HashMap<String, Arc<Zone>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(z) = cache.lock().unwrap_or_else(|e| e.into_inner()).get(name) {
        return Ok(z.clone());
    }
    let bad = || {
        Error::new(SqlState::INVALID_PARAMETER_VALUE, format!("invalid value for parameter \"TimeZone\": \"{name}\""))
    };
    let zone = if ["utc", "gmt", "z", "etc/utc", "etc/gmt", "zulu", "universal"].contains(&name.to_lowercase().as_str())
    {
        Zone::utc(name)
    } else {
        let safe = !name.is_empty()
            && !name.starts_with('/')
            && !name.split('/').any(|part| part.is_empty() || part.starts_with('.'))
            && name.chars().all(|c| c.is_ascii_alphanumeric() || "/_+-".contains(c));
        if !safe {
            return Err(bad());
        }
        let data = std::fs::read(std::path::Path::new("/usr/share/zoneinfo").join(name)).map_err(|_| bad())?;
        parse_tzif(name, &data).ok_or_else(bad)?
    };
    let zone = Arc::new(zone);
    cache.lock().unwrap_or_else(|e| e.into_inner()).insert(name.to_string(), zone.clone());
    Ok(zone)
}

thread_local! {
    static CURRENT: RefCell<Option<Arc<Zone>>> = const { RefCell::new(None) };
}

/// Makes `zone` the zone of this thread's statements (None: UTC).
pub fn set_current(zone: Option<Arc<Zone>>) {
    CURRENT.with(|c| *c.borrow_mut() = zone);
}

/// The current zone's UTC offset at an instant, in seconds.
pub fn offset_at(usecs: i64) -> i32 {
    CURRENT.with(|c| c.borrow().as_ref().map_or(0, |z| z.offset(usecs)))
}

/// The instant of a local time in the current zone.
pub fn to_utc(local: i64) -> i64 {
    CURRENT.with(|c| c.borrow().as_ref().map_or(local, |z| z.to_utc(local)))
}

/// The local time (in the current zone) of an instant.
pub fn to_local(usecs: i64) -> i64 {
    usecs + offset_at(usecs) as i64 * 1_000_000
}

/// A UTC offset as PostgreSQL prints it after a time: `+00`, `-05`, `+05:30`, `-00:01:15`.
pub fn format_offset(secs: i32) -> String {
    let sign = if secs < 0 { '-' } else { '+' };
    let a = secs.unsigned_abs();
    let (h, m, s) = (a / 3600, a / 60 % 60, a % 60);
    match (m, s) {
        (0, 0) => format!("{sign}{h:02}"),
        (_, 0) => format!("{sign}{h:02}:{m:02}"),
        _ => format!("{sign}{h:02}:{m:02}:{s:02}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(y: i64, m: i64, d: i64, h: i64) -> i64 {
        (crate::sql::types::days_from_civil(y, m, d) - 10957) * 86_400_000_000 + h * 3_600_000_000
    }

    #[test]
    fn new_york_keeps_daylight_saving_time() {
        let z = load("America/New_York").expect("the tz database (package tzdata; .ci/run installs it)");
        assert_eq!(z.offset(at(2024, 1, 15, 12)), -5 * 3600);
        assert_eq!(z.offset(at(2024, 7, 15, 12)), -4 * 3600);
        // 2024-03-10 07:00 UTC is 03:00 EDT, one hour after the clocks moved.
        assert_eq!(z.offset(at(2024, 3, 10, 6)), -5 * 3600);
        assert_eq!(z.offset(at(2024, 3, 10, 7)), -4 * 3600);
        assert_eq!(z.to_utc(at(2024, 7, 15, 8)), at(2024, 7, 15, 12));
        assert_eq!(format_offset(-4 * 3600), "-04");
        assert_eq!(format_offset(5 * 3600 + 1800), "+05:30");
    }

    #[test]
    fn a_file_that_is_not_tzif_or_is_cut_short_is_refused() {
        assert!(parse_tzif("x", b"not a tz file").is_none());
        let data = std::fs::read("/usr/share/zoneinfo/America/New_York").expect("tz database");
        for cut in [10, 44, 100, data.len() / 2] {
            assert!(parse_tzif("x", &data[..cut]).is_none(), "cut at {cut}");
        }
        // A header claiming four billion transitions reserves nothing before it reads them.
        let mut huge = data.clone();
        huge[32..36].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(parse_tzif("x", &huge).is_none());
    }

    #[test]
    fn names_outside_the_database_are_refused() {
        for bad in ["../../etc/passwd", "/etc/passwd", "Mars/Olympus_Mons", "", "a//b"] {
            assert_eq!(load(bad).unwrap_err().code.0, "22023", "{bad}");
        }
        assert_eq!(load("UTC").unwrap().offset(0), 0);
    }
}
