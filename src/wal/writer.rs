//! The WAL writer: appends records in memory and makes them durable in groups.
//!
//! ```text
//!  committers ──append──▶ [ in-memory tail: records since the last write ] ◀─ one lock, held for a memcpy
//!                                    │ the flusher swaps the tail out
//!                                    ▼
//!                 pwrite into segment files ──▶ fdatasync ──▶ flushed LSN advances ──▶ listener
//! ```
//!
//! Appending only copies bytes under the lock and assigns the record its position, so committers never
//! wait for the disk to append. One flusher thread takes everything appended so far, writes it, and issues
//! one fdatasync per touched segment: that fdatasync covers every record appended before the swap, however
//! many transactions they belong to. While it waits on the disk, new records pile up for the next group,
//! so the group size grows by itself with the load (group commit).
//!
//! A failed write or fdatasync loses the whole unflushed tail: the writer rewinds its insert position to
//! the last flushed byte, tells the listener (which fails the commits in that tail and rolls its state
//! back), and before writing again overwrites the failed region with zeros. That matters: a record of the
//! failed group that did reach the disk must never be read back later as if it had been committed.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, Weak};
use std::thread::JoinHandle;

use crate::error::{Error, Result};
use crate::failpoint;
use crate::wal::lsn::Lsn;
use crate::wal::record::{frame, now_micros, Framing, RecordKind, HEADER_LEN, MAX_RECORD_LEN};
use crate::wal::segment;

/// Told when WAL becomes durable, or when a write fails.
pub trait FlushListener: Send + Sync {
    /// Everything before `upto` is on disk.
    fn flushed(&self, upto: Lsn);
    /// Writing failed; everything from `flushed` on is gone. Called with the append lock held, so no
    /// record is appended until the listener has rolled back.
    fn failed(&self, flushed: Lsn, err: &Error);
}

/// Where a record landed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Appended {
    pub start: Lsn,
    pub end: Lsn,
}

struct AppendState {
    timeline: u32,
    buf: Vec<u8>,
    /// The position of `buf[0]`.
    buf_start: Lsn,
    /// The position of the next record.
    insert: Lsn,
    /// The position of the last record appended (the next record's `prev`).
    last_record: Lsn,
    shutdown: bool,
    /// The flusher is waiting for work (so an append must wake it).
    flusher_idle: bool,
}

struct FlushState {
    flushed: Lsn,
    /// The start of the last record before `flushed`.
    flushed_last_record: Lsn,
    /// How many write failures there have been.
    failures: u64,
    /// A region a failed write may have touched; zeroed before the next write.
    broken: Option<(Lsn, Lsn)>,
    /// The last error, for those who ask why.
    last_error: Option<Error>,
    /// Bumped by [`Wal::kick`] to wake waiters whatever the flush position.
    kicks: u64,
}

struct Shared {
    dir: PathBuf,
    segment_size: u64,
    append: Mutex<AppendState>,
    /// `AppendState::insert`, published for readers that must not wait for the append lock (a session
    /// asking how far the WAL goes while a commit holds the lock). Written only under the lock.
    insert: AtomicU64,
    work: Condvar,
    flush: Mutex<FlushState>,
    flushed_cv: Condvar,
    listener: OnceLock<Weak<dyn FlushListener>>,
    /// Serializes creating and recycling segment files.
    segment_files: Mutex<()>,
    preallocating: AtomicBool,
    /// How many groups the flusher has made durable (one fdatasync per touched segment each).
    flushes: AtomicU64,
    /// Positions that consumers (standbys, slots, base backups) still need, by name.
    consumers: Mutex<HashMap<String, Lsn>>,
}

/// The write-ahead log of a running server.
pub struct Wal {
    shared: Arc<Shared>,
    flusher: Mutex<Option<JoinHandle<()>>>,
}

/// The append lock: while held, records can be appended and their order is the WAL order.
pub struct AppendGuard<'a> {
    st: MutexGuard<'a, AppendState>,
    shared: &'a Shared,
    appended: bool,
}

impl AppendGuard<'_> {
    /// Appends one record and returns where it landed. The payload's CRC32C is passed in, computed
    /// before the lock was taken.
    pub fn append(&mut self, kind: RecordKind, xid: u64, payload: &[u8], payload_crc: u32) -> Result<Appended> {
        if HEADER_LEN + payload.len() > MAX_RECORD_LEN {
            return Err(Error::new(
                crate::error::SqlState::PROGRAM_LIMIT_EXCEEDED,
                format!("WAL record of {} bytes exceeds the limit of {MAX_RECORD_LEN}", payload.len()),
            ));
        }
        if self.st.shutdown {
            return Err(Error::new(crate::error::SqlState::ADMIN_SHUTDOWN, "the WAL writer is shut down"));
        }
        let start = self.st.insert;
        let prev = self.st.last_record;
        let framing = Framing { lsn: start, prev, xid, time: now_micros(), kind };
        frame(&mut self.st.buf, framing, payload, payload_crc);
        let end = start.plus((HEADER_LEN + payload.len()) as u64);
        self.st.insert = end;
        self.shared.insert.store(end.0, Ordering::Release);
        self.st.last_record = start;
        self.appended = true;
        Ok(Appended { start, end })
    }

    /// The position the next record will get.
    pub fn insert_lsn(&self) -> Lsn {
        self.st.insert
    }

    /// The timeline being written.
    pub fn timeline(&self) -> u32 {
        self.st.timeline
    }
}

impl Drop for AppendGuard<'_> {
    fn drop(&mut self) {
        // A busy flusher looks for more work before it sleeps: only an idle one needs waking.
        if self.appended && self.st.flusher_idle {
            self.shared.work.notify_one();
        }
    }
}

impl Wal {
    /// Opens the WAL for appending at `end` (the end of the log recovery found), whose last record starts at
    /// `last_record`.
    pub fn open(dir: &Path, segment_size: u64, timeline: u32, end: Lsn, last_record: Lsn) -> Result<Wal> {
        segment::check_segment_size(segment_size)?;
        let shared = Arc::new(Shared {
            dir: dir.to_path_buf(),
            segment_size,
            append: Mutex::new(AppendState {
                timeline,
                buf: Vec::with_capacity(1 << 20),
                buf_start: end,
                insert: end,
                last_record,
                shutdown: false,
                flusher_idle: false,
            }),
            insert: AtomicU64::new(end.0),
            work: Condvar::new(),
            flush: Mutex::new(FlushState {
                flushed: end,
                flushed_last_record: last_record,
                failures: 0,
                broken: None,
                last_error: None,
                kicks: 0,
            }),
            flushed_cv: Condvar::new(),
            listener: OnceLock::new(),
            segment_files: Mutex::new(()),
            preallocating: AtomicBool::new(false),
            flushes: AtomicU64::new(0),
            consumers: Mutex::new(HashMap::new()),
        });
        segment::ensure(dir, timeline, end.segment(segment_size), segment_size)?;
        let flusher_shared = shared.clone();
        let flusher = std::thread::Builder::new()
            .name("wal-flusher".into())
            .spawn(move || Flusher::new(flusher_shared).run())
            .map_err(|e| Error::io("could not start the WAL flusher", e))?;
        Ok(Wal { shared, flusher: Mutex::new(Some(flusher)) })
    }

    /// Sets who hears about flushes and failures (held weakly: the listener usually owns the WAL). Only
    /// the first call counts.
    pub fn set_listener(&self, listener: Weak<dyn FlushListener>) {
        let _ = self.shared.listener.set(listener);
    }

    /// Takes the append lock.
    pub fn lock(&self) -> AppendGuard<'_> {
        AppendGuard { st: lock(&self.shared.append), shared: &self.shared, appended: false }
    }

    /// Appends one record on its own.
    pub fn append(&self, kind: RecordKind, xid: u64, payload: &[u8]) -> Result<Appended> {
        let crc = crc32c::crc32c(payload);
        self.lock().append(kind, xid, payload, crc)
    }

    /// How many write groups have been made durable so far: commits per group is group commit at work.
    pub fn flush_count(&self) -> u64 {
        self.shared.flushes.load(Ordering::Relaxed)
    }

    /// The position up to which the WAL is on disk.
    pub fn flushed(&self) -> Lsn {
        lock(&self.shared.flush).flushed
    }

    /// The position the next record will get.
    pub fn insert_lsn(&self) -> Lsn {
        Lsn(self.shared.insert.load(Ordering::Acquire))
    }

    /// The segment size in bytes.
    pub fn segment_size(&self) -> u64 {
        self.shared.segment_size
    }

    /// The WAL directory.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// The timeline being written.
    pub fn timeline(&self) -> u32 {
        lock(&self.shared.append).timeline
    }

    /// The last write error, if the WAL is failing.
    pub fn last_error(&self) -> Option<Error> {
        lock(&self.shared.flush).last_error.clone()
    }

    /// Waits until everything before `lsn` is on disk. Fails if a write failure lost that position.
    pub fn wait_flushed(&self, lsn: Lsn) -> Result<()> {
        let mut st = lock(&self.shared.flush);
        let failures = st.failures;
        while st.flushed < lsn {
            if st.failures != failures {
                return Err(st.last_error.clone().unwrap_or_else(|| Error::internal("WAL write failed")));
            }
            st = self.shared.flushed_cv.wait(st).unwrap_or_else(|e| e.into_inner());
        }
        Ok(())
    }

    /// On a standby: the WAL receiver has written and fsynced everything before `upto` (at the same
    /// positions as the primary), and `last_record` is the start of the last complete record it knows of.
    pub fn note_received_flush(&self, upto: Lsn) {
        {
            let mut f = lock(&self.shared.flush);
            if upto <= f.flushed {
                return;
            }
            f.flushed = upto;
        }
        self.shared.flushed_cv.notify_all();
    }

    /// Names segment files after timeline `timeline` from now on (a standby following its primary).
    pub fn set_timeline(&self, timeline: u32) {
        lock(&self.shared.append).timeline = timeline;
    }

    /// Starts writing timeline `timeline` at `end` (the end of the replayed WAL), when a standby becomes a
    /// primary.
    pub fn switch_timeline(&self, timeline: u32, end: Lsn, last_record: Lsn) -> Result<()> {
        segment::ensure(&self.shared.dir, timeline, end.segment(self.shared.segment_size), self.shared.segment_size)?;
        lock(&self.shared.append).timeline = timeline;
        self.reset_end(end, last_record);
        Ok(())
    }

    /// Moves the append position to the end of replayed WAL, when a standby becomes a primary.
    pub fn reset_end(&self, end: Lsn, last_record: Lsn) {
        let mut st = lock(&self.shared.append);
        let mut f = lock(&self.shared.flush);
        st.buf.clear();
        st.buf_start = end;
        st.insert = end;
        self.shared.insert.store(end.0, Ordering::Release);
        st.last_record = last_record;
        f.flushed = end;
        f.flushed_last_record = last_record;
    }

    /// Waits until the WAL is flushed past `lsn`, `timeout` passes, or someone calls [`kick`](Self::kick);
    /// returns the flushed position.
    pub fn wait_flushed_beyond(&self, lsn: Lsn, timeout: std::time::Duration) -> Lsn {
        let st = lock(&self.shared.flush);
        let kicks = st.kicks;
        let (st, _) = self
            .shared
            .flushed_cv
            .wait_timeout_while(st, timeout, |f| f.flushed <= lsn && f.kicks == kicks)
            .unwrap_or_else(|e| e.into_inner());
        st.flushed
    }

    /// Wakes every thread in [`wait_flushed_beyond`](Self::wait_flushed_beyond) (e.g. the startup process
    /// when promotion is asked for).
    pub fn kick(&self) {
        lock(&self.shared.flush).kicks += 1;
        self.shared.flushed_cv.notify_all();
    }

    /// Records that a consumer still needs WAL from `lsn` on (None forgets the consumer).
    pub fn set_consumer(&self, name: &str, lsn: Option<Lsn>) {
        let mut c = lock(&self.shared.consumers);
        match lsn {
            Some(l) => {
                c.insert(name.to_string(), l);
            }
            None => {
                c.remove(name);
            }
        }
    }

    /// The oldest position any consumer needs.
    pub fn oldest_consumer(&self) -> Option<Lsn> {
        lock(&self.shared.consumers).values().min().copied()
    }

    /// Recycles (or removes) every segment wholly before `keep`, and before the position every consumer
    /// still needs. Keeps at most `max_spare` recycled segments for reuse. Returns how many it recycled
    /// and how many it removed.
    pub fn recycle_before(&self, keep: Lsn, max_spare: u64) -> Result<(usize, usize)> {
        let keep = self.oldest_consumer().map_or(keep, |c| c.min(keep));
        let keep_segno = keep.segment(self.shared.segment_size);
        // On a standby the receiver writes the WAL, so the end is what it has flushed, not the insert
        // position (which stays where recovery began).
        let (timeline, insert_segno) = {
            let st = lock(&self.shared.append);
            let end = st.insert.max(lock(&self.shared.flush).flushed);
            (st.timeline, end.segment(self.shared.segment_size))
        };
        let _files = lock(&self.shared.segment_files);
        let segments = segment::list(&self.shared.dir, self.shared.segment_size)?;
        let mut next_future = insert_segno + 1;
        let (mut recycled, mut removed) = (0, 0);
        for (_, segno, path) in segments.iter().filter(|(_, segno, _)| *segno < keep_segno) {
            let _ = segno;
            while next_future <= insert_segno + max_spare
                && self.shared.dir.join(segment::file_name(timeline, next_future, self.shared.segment_size)).exists()
            {
                next_future += 1;
            }
            if next_future <= insert_segno + max_spare
                && segment::recycle(&self.shared.dir, path, timeline, next_future, self.shared.segment_size)?
            {
                recycled += 1;
                next_future += 1;
            } else {
                if path.exists() {
                    std::fs::remove_file(path)
                        .map_err(|e| Error::io(format!("could not remove WAL segment \"{}\"", path.display()), e))?;
                }
                removed += 1;
            }
        }
        if recycled + removed > 0 {
            segment::sync_dir(&self.shared.dir)?;
        }
        Ok((recycled, removed))
    }

    /// Makes sure segment `segno` of `timeline` exists at full size (a standby's WAL receiver, which writes
    /// the segments itself), serialized with recycling so a recycled file never replaces a created one.
    pub fn ensure_segment(&self, timeline: u32, segno: u64) -> Result<()> {
        ensure_segment(&self.shared, timeline, segno)
    }

    /// Creates segment `segno` in the background, unless a creation is already under way.
    pub fn preallocate(&self, timeline: u32, segno: u64) {
        preallocate(&self.shared, timeline, segno);
    }

    /// Flushes what is pending, stops the flusher and refuses further appends.
    pub fn shutdown(&self) {
        lock(&self.shared.append).shutdown = true;
        self.shared.work.notify_all();
        if let Some(h) = lock(&self.flusher).take() {
            let _ = h.join();
        }
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Locks a mutex, ignoring poisoning: every critical section here leaves its state consistent.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Makes sure a segment exists, under the lock that serializes creating and recycling segment files.
fn ensure_segment(shared: &Shared, timeline: u32, segno: u64) -> Result<()> {
    let _files = lock(&shared.segment_files);
    segment::ensure(&shared.dir, timeline, segno, shared.segment_size).map(|_| ())
}

/// Creates the next segment in the background, so whoever writes WAL (the flusher, a standby's receiver)
/// rarely waits for a 16 MB file to be zero-filled and fsynced.
fn preallocate(shared: &Arc<Shared>, timeline: u32, segno: u64) {
    if shared.preallocating.swap(true, Ordering::AcqRel) {
        return;
    }
    let worker = shared.clone();
    let spawned = std::thread::Builder::new().name("wal-prealloc".into()).spawn(move || {
        crate::priority::plain_thread_priority();
        let _ = ensure_segment(&worker, timeline, segno);
        worker.preallocating.store(false, Ordering::Release);
    });
    if spawned.is_err() {
        shared.preallocating.store(false, Ordering::Release);
    }
}

/// The flusher thread's state: the segment files it has open.
struct Flusher {
    shared: Arc<Shared>,
    files: HashMap<(u32, u64), File>,
}

impl Flusher {
    fn new(shared: Arc<Shared>) -> Self {
        Flusher { shared, files: HashMap::new() }
    }

    fn run(mut self) {
        let mut spare = Vec::with_capacity(1 << 20);
        loop {
            let (start, data, last_record, timeline) = {
                let mut st = lock(&self.shared.append);
                while st.buf.is_empty() && !st.shutdown {
                    st.flusher_idle = true;
                    st = self.shared.work.wait(st).unwrap_or_else(|e| e.into_inner());
                    st.flusher_idle = false;
                }
                if st.buf.is_empty() {
                    return;
                }
                let data = std::mem::replace(&mut st.buf, std::mem::take(&mut spare));
                let start = st.buf_start;
                st.buf_start = st.insert;
                (start, data, st.last_record, st.timeline)
            };
            let end = start.plus(data.len() as u64);
            match self.write_and_sync(timeline, start, &data) {
                Ok(()) => {
                    self.shared.flushes.fetch_add(1, Ordering::Relaxed);
                    {
                        let mut f = lock(&self.shared.flush);
                        f.flushed = end;
                        f.flushed_last_record = last_record;
                        f.last_error = None;
                    }
                    self.shared.flushed_cv.notify_all();
                    if let Some(l) = self.shared.listener.get().and_then(Weak::upgrade) {
                        l.flushed(end);
                    }
                }
                Err(err) => self.fail(start, end, err),
            }
            spare = data;
            spare.clear();
        }
    }

    fn fail(&mut self, start: Lsn, end: Lsn, err: Error) {
        // Files may be in an unknown state after a failed fsync: reopen them next time.
        self.files.clear();
        let mut st = lock(&self.shared.append);
        let mut f = lock(&self.shared.flush);
        let lost_end = st.insert.max(end);
        debug_assert_eq!(f.flushed, start);
        f.broken = Some(match f.broken {
            Some((a, b)) => (a.min(f.flushed), b.max(lost_end)),
            None => (f.flushed, lost_end),
        });
        f.failures += 1;
        f.last_error = Some(err.clone());
        st.buf.clear();
        st.buf_start = f.flushed;
        st.insert = f.flushed;
        self.shared.insert.store(f.flushed.0, Ordering::Release);
        st.last_record = f.flushed_last_record;
        let flushed = f.flushed;
        drop(f);
        self.shared.flushed_cv.notify_all();
        if let Some(l) = self.shared.listener.get().and_then(Weak::upgrade) {
            l.failed(flushed, &err);
        }
        drop(st);
        eprintln!("tandem: WAL write failed, {} bytes of unflushed WAL discarded: {err}", lost_end.0 - flushed.0);
    }

    fn file(&mut self, timeline: u32, segno: u64) -> Result<&File> {
        if !self.files.contains_key(&(timeline, segno)) {
            let size = self.shared.segment_size;
            ensure_segment(&self.shared, timeline, segno)?;
            let path = self.shared.dir.join(segment::file_name(timeline, segno, size));
            let f = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .map_err(|e| Error::io(format!("could not open WAL segment \"{}\"", path.display()), e))?;
            self.files.retain(|&(_, s), _| s + 1 >= segno);
            self.files.insert((timeline, segno), f);
            preallocate(&self.shared, timeline, segno + 1);
        }
        Ok(&self.files[&(timeline, segno)])
    }

    fn write_at(&mut self, timeline: u32, mut at: Lsn, mut data: &[u8], touched: &mut Vec<u64>) -> Result<()> {
        let size = self.shared.segment_size;
        while !data.is_empty() {
            let segno = at.segment(size);
            let off = at.segment_offset(size);
            let n = ((size - off) as usize).min(data.len());
            failpoint::check("wal_write")?;
            let name = segment::file_name(timeline, segno, size);
            self.file(timeline, segno)?
                .write_all_at(&data[..n], off)
                .map_err(|e| Error::io(format!("could not write to WAL segment {name} at offset {off}"), e))?;
            if !touched.contains(&segno) {
                touched.push(segno);
            }
            data = &data[n..];
            at = at.plus(n as u64);
        }
        Ok(())
    }

    fn write_and_sync(&mut self, timeline: u32, start: Lsn, data: &[u8]) -> Result<()> {
        let mut touched = Vec::new();
        let broken = lock(&self.shared.flush).broken;
        if let Some((from, to)) = broken {
            let zeros = vec![0u8; (to.0 - from.0) as usize];
            self.write_at(timeline, from, &zeros, &mut touched)?;
        }
        self.write_at(timeline, start, data, &mut touched)?;
        for segno in touched {
            failpoint::check("wal_fsync")?;
            let name = segment::file_name(timeline, segno, self.shared.segment_size);
            self.file(timeline, segno)?
                .sync_data()
                .map_err(|e| Error::io(format!("could not fdatasync WAL segment {name}"), e))?;
        }
        if broken.is_some() {
            lock(&self.shared.flush).broken = None;
        }
        Ok(())
    }
}
