//! Timelines: the history a promotion leaves behind.
//!
//! Promotion ends timeline T at the end of the replayed WAL, position X, and starts T+1 there. It writes
//! `pg_wal/{T+1:08X}.history` in PostgreSQL's format — the parent's history plus the line
//! `T<tab>X<tab>reason` — and copies the part of the segment holding X that lies before X from T's file
//! into T+1's, so the switch segment reads whole under the new timeline's name (as PostgreSQL does).
//!
//! A reader of a WAL that spans timelines maps each segment to the newest timeline that began at or before
//! the segment's end ([`Timelines`]); the history file is where that map comes from.

use std::fs::{self, OpenOptions};
use std::io::Read;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::wal::reader::Timelines;
use crate::wal::segment;
use crate::wal::Lsn;

/// The history file of a timeline.
pub fn history_file_name(tli: u32) -> String {
    format!("{tli:08X}.history")
}

fn history_path(wal_dir: &Path, tli: u32) -> PathBuf {
    wal_dir.join(history_file_name(tli))
}

/// Parses a history file: (timeline, the position where it ended), oldest first.
pub fn parse_history(text: &str) -> Result<Vec<(u32, Lsn)>> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields = line.split_whitespace();
        let bad = || Error::corrupted(format!("invalid line in timeline history: \"{line}\""));
        let tli: u32 = fields.next().and_then(|t| t.parse().ok()).ok_or_else(bad)?;
        let end: Lsn = fields.next().and_then(|l| l.parse().ok()).ok_or_else(bad)?;
        if out.last().is_some_and(|&(t, e): &(u32, Lsn)| t >= tli || e > end) {
            return Err(bad());
        }
        out.push((tli, end));
    }
    Ok(out)
}

/// The history of timeline `tli` as read from `pg_wal/` (empty for a timeline without a history file).
pub fn read_history(wal_dir: &Path, tli: u32) -> Result<Vec<(u32, Lsn)>> {
    match fs::read_to_string(history_path(wal_dir, tli)) {
        Ok(text) => parse_history(&text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(Error::io(format!("could not read timeline history of timeline {tli}"), e)),
    }
}

/// The timelines a reader of timeline `tli`'s WAL goes through, from its history.
pub fn timelines_from_history(history: &[(u32, Lsn)], tli: u32) -> Timelines {
    let mut spans = Vec::new();
    let mut begin = Lsn(0);
    for &(t, end) in history {
        spans.push((t, begin));
        begin = end;
    }
    spans.push((tli, begin));
    Timelines(spans)
}

/// The timelines of `tli`, read from its history file.
pub fn timelines(wal_dir: &Path, tli: u32) -> Result<Timelines> {
    Ok(timelines_from_history(&read_history(wal_dir, tli)?, tli))
}

/// Where timeline `parent` ended according to the history of `tli` (None if it is not an ancestor).
pub fn switch_point(history: &[(u32, Lsn)], parent: u32) -> Option<Lsn> {
    history.iter().find(|(t, _)| *t == parent).map(|(_, e)| *e)
}

/// Writes the history file of `new_tli`, which branched off `parent` at `at` (temporary file, fsync,
/// rename, fsync the directory).
pub fn write_history(wal_dir: &Path, new_tli: u32, parent: u32, at: Lsn, reason: &str) -> Result<()> {
    let mut text = fs::read_to_string(history_path(wal_dir, parent)).unwrap_or_default();
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(&format!("{parent}\t{at}\t{reason}\n"));
    crate::control::write_atomically(wal_dir, &history_file_name(new_tli), text.as_bytes())
}

/// Saves a history file received from a primary (TIMELINE_HISTORY) into `pg_wal/`.
pub fn save_history(wal_dir: &Path, tli: u32, content: &str) -> Result<()> {
    parse_history(content)?;
    crate::control::write_atomically(wal_dir, &history_file_name(tli), content.as_bytes())
}

/// At promotion: gives the segment holding `at` the new timeline's name. Nothing on the old timeline lies
/// beyond `at` (promotion applied every complete record received; what follows is at most a torn record,
/// which the new timeline overwrites), so the file itself can move: a rename, where copying its first
/// part and syncing it took tens of milliseconds on the path of `tandem promote`. PostgreSQL, which
/// copies, renames the old file to `.partial` for the same reason: the old name must not look like a
/// complete segment of the old timeline. Falls back to [`copy_switch_segment`] when the new name exists.
pub fn move_switch_segment(wal_dir: &Path, segment_size: u64, old_tli: u32, new_tli: u32, at: Lsn) -> Result<()> {
    let segno = at.segment(segment_size);
    let from = wal_dir.join(segment::file_name(old_tli, segno, segment_size));
    let to = wal_dir.join(segment::file_name(new_tli, segno, segment_size));
    let full = fs::metadata(&from).is_ok_and(|m| m.len() == segment_size);
    if !full || fs::metadata(&to).is_ok() {
        return copy_switch_segment(wal_dir, segment_size, old_tli, new_tli, at);
    }
    fs::rename(&from, &to).map_err(|e| Error::io(format!("could not rename \"{}\"", from.display()), e))?;
    segment::sync_dir(wal_dir)
}

/// Copies the bytes of the segment holding `at` that lie before `at` from `old_tli`'s file into
/// `new_tli`'s (created if needed), and fsyncs it.
///
/// This is on the path of `tandem promote`, so it avoids what is slow: the bytes move inside the kernel
/// (copy_file_range), and a new file's remaining space is reserved with fallocate, which reads as zeros,
/// instead of being written with 16 MiB of zeros first. A partly written file never takes the segment's
/// name: it is built under a temporary name and linked into place.
pub fn copy_switch_segment(wal_dir: &Path, segment_size: u64, old_tli: u32, new_tli: u32, at: Lsn) -> Result<()> {
    let segno = at.segment(segment_size);
    let upto = at.segment_offset(segment_size);
    let from = wal_dir.join(segment::file_name(old_tli, segno, segment_size));
    let to = wal_dir.join(segment::file_name(new_tli, segno, segment_size));
    let existing = fs::metadata(&to).is_ok();
    if existing && upto == 0 {
        return segment::ensure(wal_dir, new_tli, segno, segment_size).map(|_| ());
    }
    let target = if existing { to.clone() } else { wal_dir.join(format!("xlogtemp.{}.switch", std::process::id())) };
    let io = |what: &str, path: &Path, e| Error::io(format!("could not {what} \"{}\"", path.display()), e);
    let mut dst = OpenOptions::new()
        .write(true)
        .create(!existing)
        .truncate(!existing)
        .open(&target)
        .map_err(|e| io("open", &target, e))?;
    if upto > 0 {
        let src = fs::File::open(&from).map_err(|e| io("open", &from, e))?;
        let copied = std::io::copy(&mut src.take(upto), &mut dst).map_err(|e| io("copy into", &target, e))?;
        if copied != upto {
            return Err(Error::corrupted(format!(
                "WAL segment \"{}\" is shorter ({copied} bytes) than the switch point {at} needs",
                from.display()
            )));
        }
    }
    if !existing {
        // SAFETY: fallocate on a file descriptor we own, with a length that fits in off_t.
        let rc = unsafe { libc::fallocate(dst.as_raw_fd(), 0, 0, segment_size as libc::off_t) };
        if rc != 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EOPNOTSUPP) {
                let _ = fs::remove_file(&target);
                return Err(io("allocate", &target, e));
            }
            dst.set_len(segment_size).map_err(|e| io("extend", &target, e))?;
        }
    }
    dst.sync_all().map_err(|e| io("fsync", &target, e))?;
    drop(dst);
    if !existing {
        let linked = fs::hard_link(&target, &to);
        let _ = fs::remove_file(&target);
        linked.map_err(|e| io("install WAL segment", &to, e))?;
        segment::sync_dir(wal_dir)?;
    }
    Ok(())
}

/// The newest timeline that has a history file in `pg_wal/`, or `tli` if none is newer.
pub fn newest(wal_dir: &Path, tli: u32) -> u32 {
    let mut t = tli;
    while history_path(wal_dir, t + 1).exists() {
        t += 1;
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_round_trip() {
        let h = parse_history("1\t0/3000000\tno recovery target specified\n2\t0/5000A28\tx\n").unwrap();
        assert_eq!(h, vec![(1, Lsn(0x3000000)), (2, Lsn(0x5000A28))]);
        let t = timelines_from_history(&h, 3);
        assert_eq!(t.0, vec![(1, Lsn(0)), (2, Lsn(0x3000000)), (3, Lsn(0x5000A28))]);
        assert_eq!(switch_point(&h, 2), Some(Lsn(0x5000A28)));
        assert!(parse_history("2\t0/1\n1\t0/2\n").is_err());
        assert!(parse_history("x\n").is_err());
    }
}
