//! WAL segment files: names, creation, preallocation and recycling.
//!
//! The log is cut into segment files of a fixed power-of-two size (16 MiB by default, chosen at init),
//! named as PostgreSQL names them (`000000010000000000000004`): eight hex digits of timeline, then the
//! segment number in two groups of eight. A segment is created whole before anything is written to it (zero-filled in a temporary
//! file, fsynced, then linked into place), so an fdatasync of WAL data never has to update the file's
//! size or block map. Old segments are recycled: renamed to a future segment's name, their stale bytes
//! harmless because every record carries its own position.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::failpoint;

/// The smallest and largest segment sizes, as PostgreSQL allows.
pub const MIN_SEGMENT_SIZE: u64 = 1 << 20;
pub const MAX_SEGMENT_SIZE: u64 = 1 << 30;
pub const DEFAULT_SEGMENT_SIZE: u64 = 16 << 20;

/// Checks a segment size: a power of two from 1 MiB to 1 GiB.
pub fn check_segment_size(size: u64) -> Result<()> {
    if !size.is_power_of_two() || !(MIN_SEGMENT_SIZE..=MAX_SEGMENT_SIZE).contains(&size) {
        return Err(Error::new(
            crate::error::SqlState::INVALID_PARAMETER_VALUE,
            format!("invalid WAL segment size {size}: must be a power of two between 1MB and 1GB"),
        ));
    }
    Ok(())
}

/// Parses a segment size such as `16MB`, `1GB`, `16777216`.
pub fn parse_segment_size(s: &str) -> Result<u64> {
    let t = s.trim();
    let (num, mult) = if let Some(n) = t.strip_suffix("GB") {
        (n, 1u64 << 30)
    } else if let Some(n) = t.strip_suffix("MB") {
        (n, 1 << 20)
    } else if let Some(n) = t.strip_suffix("kB") {
        (n, 1 << 10)
    } else {
        (t, 1)
    };
    let n: u64 = num.trim().parse().map_err(|_| {
        Error::new(crate::error::SqlState::INVALID_PARAMETER_VALUE, format!("invalid WAL segment size \"{s}\""))
    })?;
    let size = n.checked_mul(mult).unwrap_or(0);
    check_segment_size(size)?;
    Ok(size)
}

/// Prints a segment size as `SHOW wal_segment_size` does: `16MB`, `1GB`.
pub fn format_segment_size(size: u64) -> String {
    if size >= 1 << 30 && size.is_multiple_of(1 << 30) {
        format!("{}GB", size >> 30)
    } else {
        format!("{}MB", size >> 20)
    }
}

/// The file name of a segment: `%08X%08X%08X` of timeline, high and low part of the segment number.
pub fn file_name(timeline: u32, segno: u64, segment_size: u64) -> String {
    let per_id = 0x1_0000_0000u64 / segment_size;
    format!("{:08X}{:08X}{:08X}", timeline, segno / per_id, segno % per_id)
}

/// Parses a segment file name into (timeline, segment number).
pub fn parse_file_name(name: &str, segment_size: u64) -> Option<(u32, u64)> {
    if name.len() != 24 || !name.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let tli = u32::from_str_radix(&name[0..8], 16).ok()?;
    let hi = u64::from_str_radix(&name[8..16], 16).ok()?;
    let lo = u64::from_str_radix(&name[16..24], 16).ok()?;
    let per_id = 0x1_0000_0000u64 / segment_size;
    if lo >= per_id {
        return None;
    }
    Some((tli, hi * per_id + lo))
}

/// The segments in a WAL directory: (timeline, segment number, path), sorted by segment then timeline.
pub fn list(dir: &Path, segment_size: u64) -> Result<Vec<(u32, u64, PathBuf)>> {
    let mut out = Vec::new();
    for entry in
        fs::read_dir(dir).map_err(|e| Error::io(format!("could not read directory \"{}\"", dir.display()), e))?
    {
        let entry = entry.map_err(|e| Error::io(format!("could not read directory \"{}\"", dir.display()), e))?;
        let name = entry.file_name();
        if let Some((tli, segno)) = name.to_str().and_then(|n| parse_file_name(n, segment_size)) {
            out.push((tli, segno, entry.path()));
        }
    }
    out.sort_by_key(|(tli, segno, _)| (*segno, *tli));
    Ok(out)
}

/// fsyncs a directory, so that a file created or renamed in it survives a crash.
pub fn sync_dir(dir: &Path) -> Result<()> {
    failpoint::check("fsync_dir")?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(format!("could not fsync directory \"{}\"", dir.display()), e))
}

/// Makes sure a segment file exists at full size; creates it zero-filled if not. Returns whether it created
/// it. The new file appears atomically and never replaces an existing one.
pub fn ensure(dir: &Path, timeline: u32, segno: u64, segment_size: u64) -> Result<bool> {
    let path = dir.join(file_name(timeline, segno, segment_size));
    if let Ok(meta) = fs::metadata(&path) {
        if meta.len() == segment_size {
            return Ok(false);
        }
        return Err(Error::corrupted(format!(
            "WAL segment \"{}\" has size {}, expected {segment_size}",
            path.display(),
            meta.len()
        )));
    }
    // A name of this call's own: two creators of one segment in a process (a halted engine's preallocation
    // thread and the next engine's writer, in tests) sharing a name would truncate each other's file, and one
    // could link the other's half-written file as the segment.
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!("xlogtemp.{}.{segno}.{n}", std::process::id()));
    let io = |e| Error::io(format!("could not create WAL segment \"{}\"", tmp.display()), e);
    {
        let mut f = OpenOptions::new().write(true).create(true).truncate(true).open(&tmp).map_err(io)?;
        let zeros = vec![0u8; 1 << 20];
        let mut left = segment_size;
        while left > 0 {
            let n = left.min(zeros.len() as u64) as usize;
            failpoint::check("wal_prealloc")?;
            f.write_all(&zeros[..n]).map_err(io)?;
            left -= n as u64;
        }
        f.sync_all().map_err(io)?;
    }
    // hard_link fails if the name exists: a racing creator's file is never replaced.
    let created = match fs::hard_link(&tmp, &path) {
        Ok(()) => true,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => false,
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            return Err(Error::io(format!("could not install WAL segment \"{}\"", path.display()), e));
        }
    };
    let _ = fs::remove_file(&tmp);
    sync_dir(dir)?;
    Ok(created)
}

/// Renames an old segment to a future segment's name, unless that name exists; removes it otherwise.
pub fn recycle(dir: &Path, old: &Path, timeline: u32, future_segno: u64, segment_size: u64) -> Result<bool> {
    let new = dir.join(file_name(timeline, future_segno, segment_size));
    if !new.exists() && fs::metadata(old).map(|m| m.len() == segment_size).unwrap_or(false) {
        fs::rename(old, &new)
            .map_err(|e| Error::io(format!("could not recycle WAL segment \"{}\"", old.display()), e))?;
        return Ok(true);
    }
    fs::remove_file(old).map_err(|e| Error::io(format!("could not remove WAL segment \"{}\"", old.display()), e))?;
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_as_postgres() {
        let size = 16 << 20;
        assert_eq!(file_name(1, 4, size), "000000010000000000000004");
        assert_eq!(file_name(1, 256, size), "000000010000000100000000");
        assert_eq!(parse_file_name("000000010000000100000000", size), Some((1, 256)));
        assert_eq!(parse_file_name("0000000100000001000001000", size), None);
        assert_eq!(parse_file_name("000000010000000000000100", size), None);
        assert_eq!(file_name(2, 4096, 1 << 20), "000000020000000100000000");
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_segment_size("16MB").unwrap(), 16 << 20);
        assert_eq!(parse_segment_size("1GB").unwrap(), 1 << 30);
        assert_eq!(parse_segment_size("1048576").unwrap(), 1 << 20);
        assert!(parse_segment_size("3MB").is_err());
        assert!(parse_segment_size("2GB").is_err());
        assert!(parse_segment_size("512kB").is_err());
        assert!(parse_segment_size("x").is_err());
        assert_eq!(format_segment_size(16 << 20), "16MB");
        assert_eq!(format_segment_size(1 << 30), "1GB");
    }
}
