//! The WAL reader: reads records back in order and finds where the log ends.
//!
//! Recovery, the standby's startup process and the WAL sender all read through here. A record is accepted
//! only if its header names its own position, its `prev` links to the record before, and its CRC checks.
//! The first record that fails is where the log ends.
//!
//! What lies beyond that point decides between two very different cases:
//!
//! - a torn tail: the server crashed while writing, the last record is partly on disk, and nothing valid
//!   follows. This is the normal end of a log after a crash; the tail is cut and the server goes on.
//! - corruption: a valid record follows the bad one, so WAL that was once complete has been damaged.
//!   Nothing after it can be trusted, but nothing may be thrown away either: the server refuses to start,
//!   names the segment file and offset, and changes no file.
//!
//! [`WalReader::find_valid_after`] tells them apart by scanning the remaining segment files for any valid
//! record. Each record's self-position makes the scan cheap (an 8-byte compare per offset) and sure
//! (recycled segments hold records whose positions are elsewhere).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::wal::lsn::Lsn;
use crate::wal::record::{Header, Record, HEADER_LEN};
use crate::wal::segment;

/// The timelines a WAL spans: (timeline, first position on it), oldest first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Timelines(pub Vec<(u32, Lsn)>);

impl Timelines {
    /// A single timeline from the start of the log.
    pub fn single(tli: u32) -> Self {
        Timelines(vec![(tli, Lsn(0))])
    }

    /// The timeline whose file holds a segment: the newest that began at or before the segment's end.
    pub fn for_segment(&self, segno: u64, segment_size: u64) -> u32 {
        let seg_end = Lsn((segno + 1) * segment_size);
        self.0.iter().rev().find(|(_, begin)| *begin < seg_end).map_or(self.0[0].0, |(t, _)| *t)
    }

    /// The newest timeline.
    pub fn current(&self) -> u32 {
        self.0.last().map_or(1, |(t, _)| *t)
    }
}

/// Reads WAL records from segment files.
pub struct WalReader {
    dir: PathBuf,
    segment_size: u64,
    timelines: Timelines,
    pos: Lsn,
    prev: Lsn,
    /// Read-ahead: the bytes at `[window_start, window_start + window.len())`.
    window: Vec<u8>,
    window_start: Lsn,
    file: Option<(u64, File)>,
    /// Never read at or past this position (the flushed end, on a standby).
    limit: Option<Lsn>,
}

const READ_CHUNK: usize = 1 << 20;

impl WalReader {
    /// A reader positioned at `start`. `prev` is the position of the record before (INVALID if unknown).
    pub fn new(dir: &Path, segment_size: u64, timelines: Timelines, start: Lsn, prev: Lsn) -> Self {
        WalReader {
            dir: dir.to_path_buf(),
            segment_size,
            timelines,
            pos: start,
            prev,
            window: Vec::new(),
            window_start: start,
            file: None,
            limit: None,
        }
    }

    /// The position of the next record.
    pub fn position(&self) -> Lsn {
        self.pos
    }

    /// The segment size in bytes.
    pub fn segment_size(&self) -> u64 {
        self.segment_size
    }

    /// The position of the last record read.
    pub fn prev(&self) -> Lsn {
        self.prev
    }

    /// Sets the position past which nothing is read. Read-ahead from before is dropped: it may hold bytes
    /// read before they were written.
    pub fn set_limit(&mut self, limit: Option<Lsn>) {
        if limit != self.limit {
            self.limit = limit;
            self.window.clear();
            self.window_start = self.pos;
        }
    }

    /// Replaces the timeline list (after a timeline switch).
    pub fn set_timelines(&mut self, timelines: Timelines) {
        self.timelines = timelines;
        self.window.clear();
        self.window_start = self.pos;
        self.file = None;
    }

    /// The path of the segment file holding a position.
    pub fn segment_path(&self, lsn: Lsn) -> PathBuf {
        let segno = lsn.segment(self.segment_size);
        let tli = self.timelines.for_segment(segno, self.segment_size);
        self.dir.join(segment::file_name(tli, segno, self.segment_size))
    }

    /// Reads raw WAL bytes at `at`, never past the end of its segment; 0 if the segment file is missing.
    pub fn read_raw(&mut self, at: Lsn, buf: &mut [u8]) -> Result<usize> {
        self.read_segment(at, buf)
    }

    /// Reads up to `buf.len()` bytes at `at` from one segment file; 0 if the file is missing.
    fn read_segment(&mut self, at: Lsn, buf: &mut [u8]) -> Result<usize> {
        let segno = at.segment(self.segment_size);
        if self.file.as_ref().map(|(s, _)| *s) != Some(segno) {
            let path = self.segment_path(at);
            match File::open(&path) {
                Ok(f) => self.file = Some((segno, f)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    self.file = None;
                    return Ok(0);
                }
                Err(e) => return Err(Error::io(format!("could not open WAL segment \"{}\"", path.display()), e)),
            }
        }
        let off = at.segment_offset(self.segment_size);
        let n = buf.len().min((self.segment_size - off) as usize);
        let (_, f) = self.file.as_ref().expect("opened above");
        let mut done = 0;
        while done < n {
            match f.read_at(&mut buf[done..n], off + done as u64) {
                Ok(0) => break,
                Ok(k) => done += k,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::io(format!("could not read WAL at {at}"), e)),
            }
        }
        Ok(done)
    }

    /// The bytes `[at, at + n)`, or None where the WAL (or the limit) ends first.
    fn bytes(&mut self, at: Lsn, n: usize) -> Result<Option<&[u8]>> {
        let want_end = at.0 + n as u64;
        if self.limit.is_some_and(|l| want_end > l.0) {
            return Ok(None);
        }
        let win_end = self.window_start.0 + self.window.len() as u64;
        if at < self.window_start || at.0 > win_end {
            self.window.clear();
            self.window_start = at;
        } else if at.0 - self.window_start.0 > READ_CHUNK as u64 {
            let drop = (at.0 - self.window_start.0) as usize;
            self.window.drain(..drop);
            self.window_start = at;
        }
        while self.window_start.0 + (self.window.len() as u64) < want_end {
            let have_end = Lsn(self.window_start.0 + self.window.len() as u64);
            let mut want = (want_end - have_end.0).max(READ_CHUNK as u64) as usize;
            if let Some(l) = self.limit {
                want = want.min((l.0 - have_end.0) as usize);
            }
            let old = self.window.len();
            self.window.resize(old + want, 0);
            let got = {
                let mut tmp = std::mem::take(&mut self.window);
                let r = self.read_segment(have_end, &mut tmp[old..]);
                self.window = tmp;
                r?
            };
            self.window.truncate(old + got);
            if got == 0 {
                return Ok(None);
            }
        }
        let from = (at.0 - self.window_start.0) as usize;
        Ok(Some(&self.window[from..from + n]))
    }

    /// The next valid record, or None at the end of the log.
    pub fn next_record(&mut self) -> Result<Option<Record>> {
        let at = self.pos;
        let Some(hb) = self.bytes(at, HEADER_LEN)? else { return Ok(None) };
        let header = Header::parse(hb);
        if !header.plausible_at(at) || (self.prev != Lsn::INVALID && header.prev != self.prev) {
            return Ok(None);
        }
        let len = header.len;
        let Some(bytes) = self.bytes(at, len)? else { return Ok(None) };
        let Some(rec) = header.verify(bytes) else { return Ok(None) };
        self.prev = rec.lsn;
        self.pos = rec.end();
        Ok(Some(rec))
    }

    /// Looks for a valid record anywhere after `from` in the segment files that exist. Returns its position.
    pub fn find_valid_after(&mut self, from: Lsn) -> Result<Option<Lsn>> {
        let saved_limit = self.limit.take();
        let result = self.scan_after(from);
        self.limit = saved_limit;
        result
    }

    fn scan_after(&mut self, from: Lsn) -> Result<Option<Lsn>> {
        let size = self.segment_size;
        let segments = segment::list(&self.dir, size)?;
        let last_segno = segments.iter().map(|(_, s, _)| *s).max().unwrap_or(0);
        let mut segno = from.segment(size);
        let mut buf = vec![0u8; size as usize];
        while segno <= last_segno {
            let seg_start = Lsn(segno * size);
            let got = self.read_segment(seg_start, &mut buf)?;
            let first = if segno == from.segment(size) { from.segment_offset(size) as usize + 1 } else { 0 };
            let mut candidates = Vec::new();
            let mut off = first;
            while off + 16 <= got {
                let v = u64::from_le_bytes(buf[off + 8..off + 16].try_into().expect("8 bytes"));
                if v == seg_start.0 + off as u64 {
                    candidates.push(Lsn(v));
                }
                off += 1;
            }
            for at in candidates {
                let Some(hb) = self.bytes(at, HEADER_LEN)? else { continue };
                let header = Header::parse(hb);
                if !header.plausible_at(at) {
                    continue;
                }
                let len = header.len;
                if let Some(bytes) = self.bytes(at, len)? {
                    if header.verify(bytes).is_some() {
                        return Ok(Some(at));
                    }
                }
            }
            segno += 1;
        }
        Ok(None)
    }
}
