//! The engine: the commit pipeline, checkpoints and recovery around one WAL and one database state.
//!
//! ```text
//!   Transaction::commit ─┬─ append commit record (WAL lock) ──▶ apply to `latest` ──▶ release row locks
//!                        │                                         │ a clone per commit
//!                        │                                         ▼
//!                        └─ CommitTicket::wait ◀── acknowledged ◀── pending queue ◀── flushed (+ acks)
//!                                                    │
//!                                                    ▼ publish the clone as `visible`
//! ```
//!
//! Two states matter. `latest` has every commit that reached the WAL, in WAL order; writers read the
//! newest version of a row they lock from it. `visible` has every commit that is acknowledged; every
//! snapshot is a clone of it. Only a holder of the WAL's append lock replaces `latest` (a commit, a
//! sequence step, a WAL failure's rollback, a checkpoint's read of it), so a commit builds its new state
//! without holding `latest`'s own mutex, and sessions reading the newest rows do not wait for it. A commit moves from one to the other only when its position is durable at
//! the level the [`Durability`] policy asks for: today, flushed to the local disk; with synchronous
//! replication, also confirmed by the standbys. So no session ever sees a transaction that a crash could
//! still take back, and a committer's own next transaction sees its commit (invariant 2 of the design).
//!
//! A WAL write failure rolls `latest` back to the last durable commit, fails every commit after it and
//! dooms every transaction that may have read them (their write sets were built on versions that no longer
//! exist); readers go on with `visible`, which never held the lost commits.
//!
//! Recovery loads the snapshot the control file names, checks the checkpoint record it starts from, and
//! replays commit records to the end of the log (see [`crate::wal::reader`] on torn tails and corruption).

use std::collections::VecDeque;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::activity;
use crate::control::{new_system_id, ClusterState, ControlFile};
use crate::error::{Error, Result, SqlState};
use crate::recovery::Replay;
use crate::snapshot;
use crate::storage::state::DbState;
use crate::txn::lock::LockManager;
use crate::txn::{Isolation, Transaction};
use crate::wal::record::{CheckpointInfo, RecordKind};
use crate::wal::segment;
use crate::wal::writer::{lock, FlushListener, Wal};
use crate::wal::Lsn;

/// The lock file that keeps a second server out of a data directory.
pub const PID_FILE: &str = "tandem.pid";

/// The file whose presence makes a data directory start as a standby.
pub const STANDBY_SIGNAL: &str = "standby.signal";

/// The file whose presence keeps an old primary from accepting writes (see [`Engine::fence`]).
pub const FENCED_FILE: &str = "fenced";

/// The WAL folder inside a data directory.
pub const WAL_DIR: &str = "pg_wal";

/// Settings of the engine.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Checkpoint after this much WAL.
    pub checkpoint_wal_bytes: u64,
    /// Checkpoint at least this often while there is new WAL.
    pub checkpoint_interval: Duration,
    /// How many old segments to keep renamed for reuse.
    pub spare_segments: u64,
    /// Run the background checkpointer.
    pub background_checkpoints: bool,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            checkpoint_wal_bytes: 256 << 20,
            checkpoint_interval: Duration::from_secs(300),
            spare_segments: 4,
            background_checkpoints: true,
        }
    }
}

/// How far a commit must get before it is acknowledged: PostgreSQL's `synchronous_commit` levels.
///
/// `Off` returns to the client at once and `Local` once the commit is flushed here; the remote levels also
/// wait for the synchronous standbys to have written, flushed or applied it. Whatever the level, commits
/// are acknowledged and become visible in WAL order (a prefix of the log), so a commit that needs less
/// never overtakes one that needs more.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub enum SyncLevel {
    Off,
    Local,
    RemoteWrite,
    #[default]
    RemoteFlush,
    RemoteApply,
}

impl SyncLevel {
    /// Parses a `synchronous_commit` value as PostgreSQL does (`on`, `off`, booleans, the level names).
    pub fn parse(value: &str) -> Option<SyncLevel> {
        Some(match value.trim().to_ascii_lowercase().as_str() {
            "off" | "false" | "no" | "0" => SyncLevel::Off,
            "local" => SyncLevel::Local,
            "remote_write" => SyncLevel::RemoteWrite,
            "on" | "true" | "yes" | "1" | "remote_flush" => SyncLevel::RemoteFlush,
            "remote_apply" => SyncLevel::RemoteApply,
            _ => return None,
        })
    }

    /// The name SHOW prints.
    pub fn name(self) -> &'static str {
        match self {
            SyncLevel::Off => "off",
            SyncLevel::Local => "local",
            SyncLevel::RemoteWrite => "remote_write",
            SyncLevel::RemoteFlush => "on",
            SyncLevel::RemoteApply => "remote_apply",
        }
    }
}

/// The positions up to which commits of each level may be acknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Acks {
    pub local: Lsn,
    pub write: Lsn,
    pub flush: Lsn,
    pub apply: Lsn,
    /// The synchronous standbys are missing and commits no longer wait for them
    /// (`synchronous_standby_timeout`): remote levels are acknowledged on the local flush.
    pub degraded: bool,
}

impl Acks {
    /// Every level acknowledged at the local flush.
    pub fn local(flushed: Lsn) -> Acks {
        Acks { local: flushed, write: flushed, flush: flushed, apply: flushed, degraded: false }
    }

    /// The position a commit of `level` may be acknowledged up to.
    pub fn at(&self, level: SyncLevel) -> Lsn {
        match level {
            SyncLevel::Off | SyncLevel::Local => self.local,
            SyncLevel::RemoteWrite => self.write.min(self.local),
            SyncLevel::RemoteFlush => self.flush.min(self.local),
            SyncLevel::RemoteApply => self.apply.min(self.local),
        }
    }
}

/// Decides how far commits are acknowledged, given how far the WAL is flushed locally. Synchronous
/// replication plugs in here.
pub trait Durability: Send + Sync {
    /// The positions up to which commits of each level may be acknowledged.
    fn acks(&self, local_flushed: Lsn) -> Acks;
}

/// Commits are acknowledged once flushed locally.
pub struct LocalFlush;

impl Durability for LocalFlush {
    fn acks(&self, local_flushed: Lsn) -> Acks {
        Acks::local(local_flushed)
    }
}

const PENDING: u8 = 0;
const ACKED: u8 = 1;
const FAILED: u8 = 2;
/// Acknowledged without the synchronous standby it asked for (see [`Acks::degraded`]).
const ACKED_DEGRADED: u8 = 3;

/// The fate of one commit, shared by its ticket and the pending queue. The waiting thread parks until
/// its commit is decided.
///
/// Waking is spread out: the acknowledging thread decides every commit of a group at once (one atomic
/// store each), puts the parked committers on a wake queue and unparks only the first few; each committer
/// that wakes unparks a few more before it returns. The flusher is back at the disk after a couple of
/// wake-ups instead of one system call per committer, and the wake-ups of a large group run in parallel.
pub(crate) struct CommitSlot {
    status: AtomicU8,
    waiter: Mutex<Option<std::thread::Thread>>,
}

/// How many parked committers each waker wakes.
const WAKE_FANOUT: usize = 2;

impl CommitSlot {
    /// Decides the commit; returns its parked committer, if any, for the caller to wake.
    fn decide(&self, status: u8) -> Option<std::thread::Thread> {
        self.status.store(status, Ordering::Release);
        lock(&self.waiter).take()
    }
}

impl Core {
    /// Queues parked committers to be woken and wakes the first few.
    fn wake(&self, threads: Vec<std::thread::Thread>) {
        if threads.is_empty() {
            return;
        }
        lock(&self.wake_queue).extend(threads);
        self.wake_some();
    }

    /// Wakes up to [`WAKE_FANOUT`] queued committers.
    fn wake_some(&self) {
        let batch: Vec<std::thread::Thread> = {
            let mut q = lock(&self.wake_queue);
            let n = q.len().min(WAKE_FANOUT);
            q.drain(..n).collect()
        };
        for t in batch {
            t.unpark();
        }
    }
}

struct Pending {
    end: Lsn,
    level: SyncLevel,
    since: Instant,
    state: DbState,
    slot: Arc<CommitSlot>,
}

/// The acknowledged state and its position.
#[derive(Clone)]
pub struct Visible {
    pub state: DbState,
    /// The end of the last commit it includes.
    pub lsn: Lsn,
    /// Bumped at every publication, so a transaction can tell its snapshot is still current.
    pub version: u64,
}

struct Pipeline {
    pending: VecDeque<Pending>,
    flushed: Lsn,
    acked: Lsn,
    last_error: Option<Error>,
}

/// What the engine shares with transactions and background threads.
pub(crate) struct Core {
    pub(crate) dir: PathBuf,
    pub(crate) system_id: u64,
    pub(crate) wal: Wal,
    /// Every commit appended to the WAL. Locked after the WAL append lock, never before.
    pub(crate) latest: Mutex<DbState>,
    pub(crate) visible: RwLock<Visible>,
    pipeline: Mutex<Pipeline>,
    pipeline_cv: Condvar,
    /// Parked committers whose commits are decided, waiting to be woken (see [`CommitSlot`]).
    wake_queue: Mutex<VecDeque<std::thread::Thread>>,
    pub(crate) locks: LockManager,
    pub(crate) next_xid: AtomicU64,
    pub(crate) next_rowid: AtomicI64,
    /// Bumped by every WAL write failure; transactions from an older epoch may not commit writes.
    pub(crate) epoch: AtomicU64,
    durability: RwLock<Arc<dyn Durability>>,
    control: Mutex<ControlFile>,
    checkpoint_lock: Mutex<()>,
    spare_segments: u64,
    last_checkpoint: Mutex<(Lsn, Instant)>,
    /// A commit since the latest checkpoint altered a table: replaying it may rebuild a whole table, so a
    /// base backup takes a new checkpoint rather than leave that to the standby. Set and cleared under
    /// the WAL append lock; at open, set if recovery replayed such a commit (always on a standby).
    pub(crate) altered_since_checkpoint: AtomicBool,
    shutdown: AtomicBool,
    /// A standby: replaying WAL, refusing writes.
    pub(crate) in_recovery: AtomicBool,
    replay_status: Mutex<ReplayStatus>,
    /// The state is whole: false only while a standby's startup process still loads its snapshot.
    consistent: AtomicBool,
    /// Promotion asked for: the startup process finishes recovery once it has applied what it has.
    promote_requested: AtomicBool,
    /// The outcome of the last promotion (the new timeline), for the thread that asked.
    promotion: Mutex<Option<Result<u32>>>,
    promotion_cv: Condvar,
    /// The standby now follows a new timeline: the startup process re-reads the history.
    timelines_changed: AtomicBool,
    /// Why this server was fenced (a standby was promoted in its place), if it was: writes are refused.
    pub(crate) fenced: RwLock<Option<String>>,
    pid_file: PidFile,
}

/// How far a standby's startup process has replayed.
#[derive(Clone, Copy, Debug, Default)]
pub struct ReplayStatus {
    /// The end of the last record applied.
    pub applied: Lsn,
    /// The commit time of the last transaction applied (µs since 2000-01-01), if any.
    pub last_commit_time: Option<i64>,
}

/// A running database engine over one data directory.
pub struct Engine {
    core: Arc<Core>,
    checkpointer: Mutex<Option<JoinHandle<()>>>,
    startup: Mutex<Option<JoinHandle<()>>>,
    config: EngineConfig,
}

/// A commit on its way to acknowledgement.
pub struct CommitTicket {
    core: Option<Arc<Core>>,
    slot: Option<Arc<CommitSlot>>,
    level: SyncLevel,
    /// The end of the commit record (or, for a transaction that wrote nothing, the newest position whose
    /// effects it may have read).
    pub lsn: Lsn,
}

impl CommitTicket {
    pub(crate) fn done() -> Self {
        CommitTicket { core: None, slot: None, level: SyncLevel::Local, lsn: Lsn::INVALID }
    }

    pub(crate) fn pending(core: Arc<Core>, slot: Arc<CommitSlot>, level: SyncLevel, lsn: Lsn) -> Self {
        CommitTicket { core: Some(core), slot: Some(slot), level, lsn }
    }

    pub(crate) fn read_dependency(core: Arc<Core>, lsn: Lsn) -> Self {
        CommitTicket { core: Some(core), slot: None, level: SyncLevel::Local, lsn }
    }

    /// Whether the commit was acknowledged without the synchronous standby its level asked for, because
    /// the standby was missing for longer than `synchronous_standby_timeout`.
    pub fn degraded(&self) -> bool {
        self.slot.as_ref().is_some_and(|s| s.status.load(Ordering::Acquire) == ACKED_DEGRADED)
    }

    /// Waits until the commit is acknowledged (durable and visible), or fails.
    pub fn wait(&self) -> Result<()> {
        self.wait_cancelable(&AtomicBool::new(false))
    }

    /// Waits like [`wait`](Self::wait), but gives up when `cancel` is set. Giving up does not undo the
    /// commit: it is in the WAL and becomes visible once acknowledged.
    pub fn wait_cancelable(&self, cancel: &AtomicBool) -> Result<()> {
        let Some(core) = &self.core else { return Ok(()) };
        // pg_stat_activity shows the wait: for the WAL flush, then (once flushed here) for the standby.
        let wait_event = || {
            if self.level > SyncLevel::Local && core.wal.flushed() >= self.lsn {
                activity::Wait::SyncRep
            } else {
                activity::Wait::WalWrite
            }
        };
        let mut waiting: Option<activity::Waiting> = None;
        if let Some(slot) = &self.slot {
            *lock(&slot.waiter) = Some(std::thread::current());
            while slot.status.load(Ordering::Acquire) == PENDING && !cancel.load(Ordering::Relaxed) {
                match &waiting {
                    None => waiting = Some(activity::waiting(activity::Wait::WalWrite)),
                    Some(w) => w.set(wait_event()),
                }
                std::thread::park_timeout(Duration::from_millis(100));
            }
            // Pass the wake-up on to committers of the same group.
            core.wake_some();
            // The common case needs no shared lock at all.
            if matches!(slot.status.load(Ordering::Acquire), ACKED | ACKED_DEGRADED) {
                return Ok(());
            }
        }
        let mut p = lock(&core.pipeline);
        loop {
            match &self.slot {
                Some(slot) => match slot.status.load(Ordering::Acquire) {
                    ACKED | ACKED_DEGRADED => return Ok(()),
                    FAILED => {
                        let cause = p.last_error.as_ref().map_or("WAL write failed".into(), |e| e.message.clone());
                        return Err(Error::new(SqlState::IO_ERROR, format!("could not commit: {cause}"))
                            .with_detail("The transaction was not committed."));
                    }
                    _ => {}
                },
                None if p.acked >= self.lsn => return Ok(()),
                None => {}
            }
            if cancel.load(Ordering::Relaxed) {
                if self.level > SyncLevel::Local && p.flushed >= self.lsn {
                    return Err(Error::new(
                        SqlState::QUERY_CANCELED,
                        "canceling wait for synchronous replication due to user request",
                    )
                    .with_detail(
                        "The transaction is in the WAL and becomes visible once the synchronous standby confirms it.",
                    ));
                }
                return Err(Error::new(
                    SqlState::QUERY_CANCELED,
                    "canceling wait for commit acknowledgement due to user request",
                )
                .with_detail("The transaction is in the WAL and becomes visible once it is acknowledged."));
            }
            if waiting.is_none() {
                waiting = Some(activity::waiting(activity::Wait::WalWrite));
            }
            p = core.pipeline_cv.wait_timeout(p, Duration::from_millis(100)).unwrap_or_else(|e| e.into_inner()).0;
        }
    }
}

impl FlushListener for Core {
    fn flushed(&self, upto: Lsn) {
        let mut p = lock(&self.pipeline);
        p.flushed = upto;
        p.last_error = None;
        self.advance(&mut p);
    }

    fn failed(&self, flushed: Lsn, err: &Error) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        let mut latest = lock(&self.latest);
        let mut p = lock(&self.pipeline);
        p.last_error = Some(err.clone());
        while p.pending.back().is_some_and(|x| x.end > flushed) {
            let lost = p.pending.pop_back().expect("checked");
            if let Some(t) = lost.slot.decide(FAILED) {
                t.unpark();
            }
        }
        *latest = match p.pending.back() {
            Some(x) => x.state.clone(),
            None => read(&self.visible).state.clone(),
        };
        drop(latest);
        drop(p);
        self.pipeline_cv.notify_all();
    }
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|e| e.into_inner())
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|e| e.into_inner())
}

impl Core {
    /// Acknowledges every pending commit the durability policy allows, in WAL order, publishing the state
    /// of the last one.
    fn advance(&self, p: &mut Pipeline) {
        let acks = read(&self.durability).acks(p.flushed);
        let mut newest = None;
        let mut parked = Vec::new();
        while let Some(front) = p.pending.front() {
            if front.end > acks.at(front.level) {
                break;
            }
            let x = p.pending.pop_front().expect("checked");
            let status = if acks.degraded && x.level > SyncLevel::Local { ACKED_DEGRADED } else { ACKED };
            parked.extend(x.slot.decide(status));
            newest = Some((x.state, x.end));
        }
        if let Some((state, lsn)) = newest {
            p.acked = p.acked.max(lsn);
            let mut v = write(&self.visible);
            v.version += 1;
            v.state = state;
            v.lsn = lsn;
        }
        if p.pending.is_empty() {
            // Everything appended up to the flush is acknowledged (commits are queued before the WAL
            // append lock is released, so none can be flushed without being queued).
            p.acked = p.acked.max(p.flushed);
        }
        self.wake(parked);
        self.pipeline_cv.notify_all();
    }

    /// Queues a commit appended at `end` whose resulting state is `state`. Called with the WAL append lock
    /// held, so the queue stays in WAL order.
    pub(crate) fn enqueue(&self, end: Lsn, level: SyncLevel, state: DbState) -> Arc<CommitSlot> {
        let slot = Arc::new(CommitSlot { status: AtomicU8::new(PENDING), waiter: Mutex::new(None) });
        let level = level.max(SyncLevel::Local);
        let pending = Pending { end, level, since: Instant::now(), state, slot: slot.clone() };
        lock(&self.pipeline).pending.push_back(pending);
        slot
    }

    /// The acknowledged position.
    pub(crate) fn acked(&self) -> Lsn {
        lock(&self.pipeline).acked
    }
}

/// What a base backup copies: the control file as of a checkpoint, and that checkpoint's snapshot.
pub struct BackupStart {
    pub checkpoint: Lsn,
    pub timeline: u32,
    pub control: Vec<u8>,
    pub snapshot: File,
    pub snapshot_name: String,
}

/// What `init` makes.
#[derive(Clone, Debug)]
pub struct InitOptions {
    pub segment_size: u64,
}

impl Default for InitOptions {
    fn default() -> Self {
        InitOptions { segment_size: segment::DEFAULT_SEGMENT_SIZE }
    }
}

/// Whether a directory is missing or empty.
fn is_empty_dir(dir: &Path) -> Result<bool> {
    match fs::read_dir(dir) {
        Ok(mut it) => Ok(it.next().is_none()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(Error::io(format!("could not read directory \"{}\"", dir.display()), e)),
    }
}

/// The data directory's lock file, held (flock) for as long as the server runs.
struct PidFile {
    file: File,
    path: PathBuf,
    created: bool,
}

/// Takes the data directory's lock file, refusing if another live server holds it. Nothing is written
/// to it until [`PidFile::claim`], so a start that fails (say, on a corrupt WAL) changes no file.
fn lock_data_dir(dir: &Path) -> Result<PidFile> {
    let path = dir.join(PID_FILE);
    let created = !path.exists();
    let file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| Error::io(format!("could not open lock file \"{}\"", path.display()), e))?;
    if file.try_lock().is_err() {
        let other = fs::read_to_string(&path).unwrap_or_default();
        let pid = other.lines().next().unwrap_or("?").trim().to_string();
        return Err(Error::new(
            SqlState::OBJECT_IN_USE,
            format!(
                "lock file \"{}\" is held: another server (PID {pid}) is running in data directory \"{}\"",
                path.display(),
                dir.display()
            ),
        )
        .with_hint("Stop that server first, or use another data directory."));
    }
    Ok(PidFile { file, path, created })
}

impl PidFile {
    /// Writes this process's pid into the lock file.
    fn claim(&self) -> Result<()> {
        let mut f = &self.file;
        self.file.set_len(0).map_err(|e| Error::io("could not write lock file", e))?;
        writeln!(f, "{}", std::process::id()).map_err(|e| Error::io("could not write lock file", e))
    }

    /// Adds the address the server listens on, as the lock file's second line: `tandem start --detach` waits
    /// for it to know that its own server (not another process on the port) is up.
    fn listening(&self, addr: &str) -> Result<()> {
        let mut f = &self.file;
        writeln!(f, "{addr}").map_err(|e| Error::io("could not write lock file", e))
    }

    /// Gives the lock up after a failed start, removing the file if this start created it.
    fn abandon(self) {
        if self.created {
            let _ = fs::remove_file(&self.path);
        }
    }
}

impl Engine {
    /// Creates a new data directory: control file, the first WAL segment with a checkpoint record, and
    /// an empty snapshot. Refuses a directory that is not empty.
    pub fn init(dir: &Path, options: &InitOptions) -> Result<u64> {
        segment::check_segment_size(options.segment_size)?;
        if !is_empty_dir(dir)? {
            return Err(Error::new(
                SqlState::CONFIG_FILE_ERROR,
                format!("directory \"{}\" exists but is not empty", dir.display()),
            )
            .with_hint("Remove it or empty it, or run init with another directory."));
        }
        let io = |what: &Path, e| Error::io(format!("could not create directory \"{}\"", what.display()), e);
        fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        let wal_dir = dir.join(WAL_DIR);
        fs::create_dir_all(&wal_dir).map_err(|e| io(&wal_dir, e))?;
        let snap_dir = dir.join(snapshot::SNAPSHOT_DIR);
        fs::create_dir_all(&snap_dir).map_err(|e| io(&snap_dir, e))?;
        for d in [dir, &wal_dir, &snap_dir] {
            let _ = fs::set_permissions(d, std::os::unix::fs::PermissionsExt::from_mode(0o700));
        }
        let system_id = new_system_id();
        let timeline = 1;
        // The log starts at the first segment, as PostgreSQL's does.
        let start = Lsn(options.segment_size);
        let wal = Wal::open(&wal_dir, options.segment_size, timeline, start, Lsn::INVALID)?;
        let info = CheckpointInfo { system_id, timeline };
        let rec = wal.append(RecordKind::Checkpoint, 0, &info.encode())?;
        wal.wait_flushed(rec.end)?;
        wal.shutdown();
        snapshot::write(dir, system_id, rec.start, &DbState::new())?;
        ControlFile {
            system_id,
            segment_size: options.segment_size,
            timeline,
            checkpoint: rec.start,
            state: ClusterState::ShutDown,
        }
        .write(dir)?;
        segment::sync_dir(dir)?;
        Ok(system_id)
    }

    /// Opens a data directory: takes its lock, recovers, and starts the WAL writer and checkpointer. A
    /// directory holding `standby.signal` opens as a standby: read-only, with a startup process that keeps
    /// replaying the WAL its receiver writes into `pg_wal/`.
    ///
    /// A primary loads its snapshot and replays its WAL before this returns. A standby returns as soon as
    /// its snapshot file and WAL are checked and the end of its WAL is found: its startup process loads the
    /// snapshot in the background, so the WAL receiver streams (and a synchronous primary's commits are
    /// protected) while it loads. Until it has loaded and caught up with its local WAL, the standby is not
    /// [`consistent`](Engine::consistent) and sessions are refused, as PostgreSQL's hot standby refuses
    /// them before its consistent recovery point.
    pub fn open(dir: &Path, config: EngineConfig) -> Result<Engine> {
        let control = ControlFile::read(dir)?;
        let standby = dir.join(STANDBY_SIGNAL).exists();
        let pid_file = lock_data_dir(dir)?;
        let wal_dir = dir.join(WAL_DIR);
        let started = Instant::now();
        let opened = if standby {
            snapshot::open(dir, control.system_id, control.checkpoint).and_then(|snap| {
                let (end, prev) = Replay::wal_end(dir, &control)?;
                let wal = Wal::open(&wal_dir, control.segment_size, control.timeline, end, prev)?;
                Ok((Startup::Load(snap), wal))
            })
        } else {
            Replay::start(dir, &control).and_then(|mut replay| {
                log_loaded(control.checkpoint, &replay, started);
                let redo = Instant::now();
                replay.to_end()?;
                tracing::info!(end = %replay.position(), seconds = redo.elapsed().as_secs_f64(), "redo done");
                let wal =
                    Wal::open(&wal_dir, control.segment_size, control.timeline, replay.position(), replay.prev())?;
                Ok((Startup::Replayed(Box::new(replay)), wal))
            })
        };
        let (replay, wal) = match opened {
            Ok(r) => r,
            Err(e) => {
                pid_file.abandon();
                return Err(e);
            }
        };
        pid_file.claim()?;
        let end = wal.flushed();
        // A loading standby shows an empty state (no session sees it) and has applied nothing yet.
        let (state, applied, last_commit_time) = match &replay {
            Startup::Replayed(r) => (r.state().clone(), end, r.last_commit_time()),
            Startup::Load(_) => (DbState::new(), control.checkpoint, None),
        };
        // Whether the WAL after the checkpoint alters a table: a standby does not know yet (it has not
        // replayed), so its first base backup after a promotion checkpoints.
        let altered = match &replay {
            Startup::Replayed(r) => r.altered(),
            Startup::Load(_) => true,
        };
        let next_rowid = state.max_rowid() + 1;
        let cluster_state = if standby { ClusterState::InArchiveRecovery } else { ClusterState::InProduction };
        let core = Arc::new(Core {
            dir: dir.to_path_buf(),
            system_id: control.system_id,
            wal,
            latest: Mutex::new(state.clone()),
            visible: RwLock::new(Visible { state, lsn: applied, version: 0 }),
            pipeline: Mutex::new(Pipeline { pending: VecDeque::new(), flushed: end, acked: end, last_error: None }),
            pipeline_cv: Condvar::new(),
            wake_queue: Mutex::new(VecDeque::new()),
            locks: LockManager::default(),
            next_xid: AtomicU64::new(1),
            next_rowid: AtomicI64::new(next_rowid),
            epoch: AtomicU64::new(0),
            durability: RwLock::new(Arc::new(LocalFlush)),
            control: Mutex::new(ControlFile { state: cluster_state, ..control.clone() }),
            checkpoint_lock: Mutex::new(()),
            spare_segments: config.spare_segments,
            last_checkpoint: Mutex::new((control.checkpoint, Instant::now())),
            altered_since_checkpoint: AtomicBool::new(altered),
            shutdown: AtomicBool::new(false),
            in_recovery: AtomicBool::new(standby),
            replay_status: Mutex::new(ReplayStatus { applied, last_commit_time }),
            consistent: AtomicBool::new(matches!(replay, Startup::Replayed(_))),
            promote_requested: AtomicBool::new(false),
            promotion: Mutex::new(None),
            promotion_cv: Condvar::new(),
            timelines_changed: AtomicBool::new(false),
            fenced: RwLock::new(fs::read_to_string(dir.join(FENCED_FILE)).ok().map(|r| r.trim().to_string())),
            pid_file,
        });
        let listener: std::sync::Weak<dyn FlushListener> = Arc::downgrade(&core) as _;
        core.wal.set_listener(listener);
        lock(&core.control).write(dir)?;
        let engine = Engine { core, checkpointer: Mutex::new(None), startup: Mutex::new(None), config: config.clone() };
        if standby {
            engine.start_startup_process(replay);
        } else if config.background_checkpoints {
            engine.start_checkpointer(config);
        }
        Ok(engine)
    }

    /// The standby's startup process: applies WAL as the receiver flushes it, publishes each batch as the
    /// visible state, and takes a restartpoint (a checkpoint of the replayed state) at checkpoint records.
    ///
    /// Given a snapshot rather than a replay, it first loads the snapshot and applies the WAL already
    /// flushed, then marks the standby consistent. If that fails the server cannot serve at all, and the
    /// process exits, as PostgreSQL's postmaster does when its startup process fails.
    fn start_startup_process(&self, startup: Startup) {
        let core = self.core.clone();
        let handle = std::thread::Builder::new().name("startup".into()).spawn(move || {
            let mut replay = match startup {
                Startup::Replayed(replay) => *replay,
                Startup::Load(snap) => match load_standby(&core, snap) {
                    Ok(replay) => replay,
                    Err(e) => {
                        eprintln!("tandem: FATAL: the startup process could not load the standby's snapshot: {e}");
                        std::process::exit(1);
                    }
                },
            };
            // Loaded: from here on this thread is what replay lag waits for (not before: the load would
            // take CPU from the primary it shares a machine with while a standby is being created).
            crate::priority::favour_replay_thread();
            crate::priority::favour_replay_process();
            let mut restartpoint: Option<JoinHandle<()>> = None;
            // A flushed position that held no complete record past the replayed one (the receiver flushed
            // part of a record): wait for WAL beyond it, not beyond the replayed position, or the loop
            // would spin until the rest arrives.
            let mut incomplete = Lsn::default();
            while !core.shutdown.load(Ordering::Acquire) && core.in_recovery.load(Ordering::Acquire) {
                if core.timelines_changed.swap(false, Ordering::AcqRel) {
                    match crate::wal::timeline::timelines(&core.dir.join(WAL_DIR), core.wal.timeline()) {
                        Ok(t) => replay.set_timelines(t),
                        Err(e) => eprintln!("tandem: startup process: could not read the timeline history: {e}"),
                    }
                }
                let promoting = core.promote_requested.load(Ordering::Acquire);
                let flushed = if promoting {
                    core.wal.flushed()
                } else {
                    core.wal.wait_flushed_beyond(replay.position().max(incomplete), Duration::from_millis(100))
                };
                match replay.apply_available(flushed) {
                    Ok(0) => incomplete = flushed,
                    Ok(_) => {
                        incomplete = Lsn::default();
                        publish_replayed(&core, &replay);
                        if let Some((at, state)) = replay.take_checkpoint() {
                            if restartpoint.as_ref().is_none_or(|h| h.is_finished()) {
                                let core = core.clone();
                                restartpoint = std::thread::Builder::new()
                                    .name("restartpoint".into())
                                    .spawn(move || {
                                        crate::priority::plain_thread_priority();
                                        if let Err(e) = take_restartpoint(&core, at, &state) {
                                            eprintln!("tandem: restartpoint at {at} failed: {e}");
                                        }
                                    })
                                    .ok();
                            }
                        }
                    }
                    Err(e) => {
                        eprintln!("tandem: startup process: replay failed at {}: {e}", replay.position());
                        if promoting {
                            core.promote_requested.store(false, Ordering::Release);
                            *lock(&core.promotion) = Some(Err(e));
                            core.promotion_cv.notify_all();
                        }
                        std::thread::sleep(Duration::from_secs(1));
                        continue;
                    }
                }
                if promoting {
                    if let Some(h) = restartpoint.take() {
                        let _ = h.join();
                    }
                    let outcome = finish_recovery(&core, &replay);
                    if let Err(e) = &outcome {
                        eprintln!("tandem: promotion failed: {e}");
                    }
                    core.promote_requested.store(false, Ordering::Release);
                    let done = outcome.is_ok();
                    if done {
                        // A primary now: its sessions are not favoured over other processes.
                        crate::priority::plain_process_priority();
                    }
                    *lock(&core.promotion) = Some(outcome);
                    core.promotion_cv.notify_all();
                    if done {
                        break;
                    }
                }
            }
            if let Some(h) = restartpoint {
                let _ = h.join();
            }
        });
        *lock(&self.startup) = handle.ok();
    }

    /// Promotes a standby: the startup process applies all WAL received so far, the WAL continues on a new
    /// timeline from the end of it (history file written, switch segment copied), the control file says so,
    /// `standby.signal` goes, and writes are accepted. The WAL receiver must be stopped first. Returns the
    /// new timeline.
    pub fn promote(&self, timeout: Duration) -> Result<u32> {
        if !self.in_recovery() {
            return Err(Error::new(SqlState("55000"), "recovery is not in progress")
                .with_hint("Only a standby can be promoted."));
        }
        *lock(&self.core.promotion) = None;
        self.core.promote_requested.store(true, Ordering::Release);
        self.core.wal.kick();
        let deadline = Instant::now() + timeout;
        let mut outcome = lock(&self.core.promotion);
        while outcome.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Error::new(
                    SqlState("57014"),
                    format!("server did not promote within {} seconds", timeout.as_secs()),
                ));
            }
            outcome = self.core.promotion_cv.wait_timeout(outcome, left).unwrap_or_else(|e| e.into_inner()).0;
        }
        let tli = outcome.take().expect("checked")?;
        drop(outcome);
        if let Some(h) = lock(&self.startup).take() {
            let _ = h.join();
        }
        if self.config.background_checkpoints {
            self.start_checkpointer(self.config.clone());
        }
        Ok(tli)
    }

    /// Fences this primary: a standby was (or is being) promoted in its place. Writes are refused from now
    /// on, and after a restart too (`DIR/fenced` holds the reason); commits waiting for acknowledgement
    /// fail, since the new primary may not have them. Removing the file (or rebuilding the server as a
    /// standby) lifts it.
    pub fn fence(&self, reason: &str) -> Result<()> {
        if self.in_recovery() {
            return Err(Error::new(SqlState("55000"), "a standby cannot be fenced: it accepts no writes"));
        }
        crate::control::write_atomically(&self.core.dir, FENCED_FILE, format!("{reason}\n").as_bytes())?;
        let first = write(&self.core.fenced).replace(reason.to_string()).is_none();
        if first {
            eprintln!("tandem: fenced: {reason}; writes are refused from now on");
        }
        let acked = lock(&self.core.pipeline).acked;
        let err = Error::new(SqlState::READ_ONLY_SQL_TRANSACTION, format!("this server has been fenced: {reason}"));
        self.core.failed(acked, &err);
        Ok(())
    }

    /// Why this server is fenced, if it is.
    pub fn fenced(&self) -> Option<String> {
        read(&self.core.fenced).clone()
    }

    /// On a standby: the primary moved to timeline `tli`, whose history (already in `pg_wal/`) shows where
    /// the current timeline ended; WAL from `from` on (at or before that point) is streamed under the new
    /// timeline. Copies the switch segment's first part when `from` is inside it, so that segment reads
    /// whole under the new timeline's name, and records the new timeline.
    pub fn follow_timeline(&self, tli: u32, from: Lsn) -> Result<()> {
        let wal_dir = self.core.dir.join(WAL_DIR);
        let old = self.core.wal.timeline();
        let history = crate::wal::timeline::read_history(&wal_dir, tli)?;
        let switch = crate::wal::timeline::switch_point(&history, old).ok_or_else(|| {
            Error::new(SqlState("08006"), format!("timeline {old} is not in the history of timeline {tli}"))
        })?;
        let seg = self.core.wal.segment_size();
        if from.segment(seg) == switch.segment(seg) {
            crate::wal::timeline::copy_switch_segment(&wal_dir, seg, old, tli, from)?;
        }
        self.core.wal.set_timeline(tli);
        {
            let mut control = lock(&self.core.control);
            let mut next = control.clone();
            next.timeline = tli;
            next.write(&self.core.dir)?;
            *control = next;
        }
        self.core.timelines_changed.store(true, Ordering::Release);
        Ok(())
    }

    fn start_checkpointer(&self, config: EngineConfig) {
        let core = self.core.clone();
        let handle = std::thread::Builder::new().name("checkpointer".into()).spawn(move || {
            while !core.shutdown.load(Ordering::Acquire) {
                std::thread::sleep(Duration::from_millis(200));
                let (last, when) = *lock(&core.last_checkpoint);
                let insert = core.wal.insert_lsn();
                let due = insert.0.saturating_sub(last.0) >= config.checkpoint_wal_bytes
                    || (when.elapsed() >= config.checkpoint_interval && insert.0 > last.0 + 64);
                let fenced = read(&core.fenced).is_some();
                if due && !fenced && !core.shutdown.load(Ordering::Acquire) {
                    if let Err(e) = checkpoint(&core) {
                        eprintln!("tandem: checkpoint failed: {e}");
                        *lock(&core.last_checkpoint) = (last, Instant::now());
                    }
                }
            }
        });
        *lock(&self.checkpointer) = handle.ok();
    }

    /// Begins a transaction.
    pub fn begin(&self, isolation: Isolation) -> Transaction {
        Transaction::begin(self.core.clone(), isolation)
    }

    /// A snapshot of the acknowledged state, for reading outside a transaction.
    pub fn snapshot(&self) -> Visible {
        read(&self.core.visible).clone()
    }

    /// Writes a checkpoint now and returns its position. On a standby, where only the startup process
    /// writes, this returns the latest restartpoint.
    pub fn checkpoint(&self) -> Result<Lsn> {
        if self.in_recovery() {
            return Ok(lock(&self.core.control).checkpoint);
        }
        checkpoint(&self.core)
    }

    /// Starts a base backup: checkpoints, then holds the WAL from the checkpoint on (as `consumer`) and
    /// opens the checkpoint's snapshot, so nothing the backup needs can be removed while it is copied.
    ///
    /// When less than [`BACKUP_REUSE_WAL`] bytes of WAL were written since the latest checkpoint, and no
    /// table was altered since (replaying `ALTER TABLE ... ADD PRIMARY KEY` rebuilds the table from one
    /// small record), that checkpoint is used as it is: the standby replays that little WAL faster than a
    /// new snapshot of the whole database could be written (PostgreSQL's fast checkpoint is cheap when
    /// little is dirty; a tandem checkpoint always writes everything).
    pub fn backup_start(&self, consumer: &str) -> Result<BackupStart> {
        if self.in_recovery() {
            return Err(Error::new(SqlState("55000"), "recovery is in progress")
                .with_hint("Base backups are taken from the primary."));
        }
        let last = lock(&self.core.control).checkpoint;
        if self.core.wal.flushed().0.saturating_sub(last.0) > BACKUP_REUSE_WAL
            || self.core.altered_since_checkpoint.load(Ordering::Acquire)
        {
            checkpoint(&self.core)?;
        }
        let _one = lock(&self.core.checkpoint_lock);
        let control = lock(&self.core.control).clone();
        self.core.wal.set_consumer(consumer, Some(control.checkpoint));
        let path = snapshot::path(&self.core.dir, control.checkpoint);
        let file = File::open(&path).map_err(|e| Error::io(format!("could not open \"{}\"", path.display()), e))?;
        let control_path = self.core.dir.join(crate::control::CONTROL_FILE);
        let control_bytes = fs::read(&control_path)
            .map_err(|e| Error::io(format!("could not read \"{}\"", control_path.display()), e))?;
        Ok(BackupStart {
            checkpoint: control.checkpoint,
            timeline: control.timeline,
            control: control_bytes,
            snapshot: file,
            snapshot_name: snapshot::file_name(control.checkpoint),
        })
    }

    /// Replaces the durability policy (synchronous replication installs its own).
    pub fn set_durability(&self, policy: Arc<dyn Durability>) {
        *write(&self.core.durability) = policy;
        self.recompute_acks();
    }

    /// Re-evaluates which commits are acknowledged, e.g. after a standby reported progress.
    pub fn recompute_acks(&self) {
        let mut p = lock(&self.core.pipeline);
        self.core.advance(&mut p);
    }

    /// How long the oldest commit has been waiting for the standbys after its local flush, if one is.
    pub fn standby_wait(&self) -> Option<Duration> {
        let p = lock(&self.core.pipeline);
        p.pending.front().filter(|x| x.end <= p.flushed).map(|x| x.since.elapsed())
    }

    /// The WAL.
    pub fn wal(&self) -> &Wal {
        &self.core.wal
    }

    /// The system identifier.
    /// Records in the lock file that the server listens on `addr` (see `tandem start --detach`).
    pub fn announce_listening(&self, addr: std::net::SocketAddr) -> Result<()> {
        self.core.pid_file.listening(&addr.to_string())
    }

    pub fn system_id(&self) -> u64 {
        self.core.system_id
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.core.dir
    }

    /// The position up to which commits are acknowledged.
    pub fn acked_lsn(&self) -> Lsn {
        self.core.acked()
    }

    /// The control file as last written.
    pub fn control(&self) -> ControlFile {
        lock(&self.core.control).clone()
    }

    /// Whether this server is a standby (replaying WAL, refusing writes).
    pub fn in_recovery(&self) -> bool {
        self.core.in_recovery.load(Ordering::Acquire)
    }

    /// Whether the state is whole and sessions may read it: false only while a standby loads its
    /// snapshot (see [`open`](Engine::open)).
    pub fn consistent(&self) -> bool {
        self.core.consistent.load(Ordering::Acquire)
    }

    /// How far the startup process has replayed (on a primary: the end of recovery).
    pub fn replay_status(&self) -> ReplayStatus {
        *lock(&self.core.replay_status)
    }

    /// Shuts down cleanly: waits for pending commits, checkpoints, marks the control file shut down. A
    /// standby stops replaying and keeps its last restartpoint.
    pub fn shutdown(&self) -> Result<()> {
        if self.core.shutdown.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        if let Some(h) = lock(&self.checkpointer).take() {
            let _ = h.join();
        }
        if let Some(h) = lock(&self.startup).take() {
            let _ = h.join();
        }
        // A standby keeps its last restartpoint; a fenced primary writes nothing more, so that its WAL can
        // still be cut back to where the new primary's timeline branched off (tandem rewind).
        if self.in_recovery() || self.fenced().is_some() {
            self.core.wal.shutdown();
            return Ok(());
        }
        let result = checkpoint(&self.core);
        self.core.wal.shutdown();
        result?;
        let mut control = lock(&self.core.control);
        control.state = ClusterState::ShutDown;
        control.write(&self.core.dir)
    }

    /// Stops at once, as a crash would (nothing more is written; recovery runs at the next open).
    pub fn halt(&self) {
        self.core.shutdown.store(true, Ordering::Release);
        if let Some(h) = lock(&self.checkpointer).take() {
            let _ = h.join();
        }
        if let Some(h) = lock(&self.startup).take() {
            let _ = h.join();
        }
        self.core.wal.shutdown();
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.halt();
    }
}

/// Where a server's state stands when `Engine::open` hands over: replayed to the end of the WAL (a
/// primary), or a checked snapshot file the standby's startup process has yet to load.
enum Startup {
    Replayed(Box<Replay>),
    Load(snapshot::Checked),
}

fn log_loaded(at: Lsn, replay: &Replay, started: Instant) {
    let rows: usize = replay.state().tables.values().map(|t| t.rows.len()).sum();
    tracing::info!(%at, rows, seconds = started.elapsed().as_secs_f64(), "snapshot loaded");
}

/// A standby's first step: decodes its snapshot, applies the WAL flushed so far, publishes that state
/// and opens for read-only sessions.
fn load_standby(core: &Core, snap: snapshot::Checked) -> Result<Replay> {
    let started = Instant::now();
    let control = lock(&core.control).clone();
    let mut replay = Replay::from_snapshot(&core.dir, &control, snap)?;
    log_loaded(control.checkpoint, &replay, started);
    replay.apply_available(core.wal.flushed())?;
    publish_replayed(core, &replay);
    core.consistent.store(true, Ordering::Release);
    tracing::info!(
        at = %replay.position(),
        seconds = started.elapsed().as_secs_f64(),
        "consistent recovery state reached; database system is ready to accept read only connections"
    );
    Ok(replay)
}

/// Publishes what the startup process has replayed as the visible (and latest) state.
fn publish_replayed(core: &Core, replay: &Replay) {
    let pos = replay.position();
    {
        let mut v = write(&core.visible);
        v.version += 1;
        v.state = replay.state().clone();
        v.lsn = pos;
    }
    *lock(&core.latest) = replay.state().clone();
    *lock(&core.replay_status) = ReplayStatus { applied: pos, last_commit_time: replay.last_commit_time() };
}

/// Ends recovery at the end of the replayed WAL and starts a new timeline there (see [`Engine::promote`]).
fn finish_recovery(core: &Core, replay: &Replay) -> Result<u32> {
    use crate::wal::timeline;
    let end = replay.position();
    let wal_dir = core.dir.join(WAL_DIR);
    let old = core.wal.timeline();
    let new = timeline::newest(&wal_dir, old) + 1;
    timeline::write_history(&wal_dir, new, old, end, "no recovery target specified")?;
    timeline::move_switch_segment(&wal_dir, core.wal.segment_size(), old, new, end)?;
    core.wal.switch_timeline(new, end, replay.prev())?;
    {
        let mut control = lock(&core.control);
        let mut next = control.clone();
        next.timeline = new;
        next.state = ClusterState::InProduction;
        next.write(&core.dir)?;
        *control = next;
    }
    let signal = core.dir.join(STANDBY_SIGNAL);
    fs::remove_file(&signal).map_err(|e| Error::io(format!("could not remove \"{}\"", signal.display()), e))?;
    segment::sync_dir(&core.dir)?;
    publish_replayed(core, replay);
    {
        let mut p = lock(&core.pipeline);
        p.flushed = end;
        p.acked = end;
    }
    core.next_rowid.fetch_max(replay.state().max_rowid() + 1, Ordering::AcqRel);
    *lock(&core.last_checkpoint) = (lock(&core.control).checkpoint, Instant::now());
    core.in_recovery.store(false, Ordering::Release);
    eprintln!("tandem: promoted: timeline {new} starts at {end} (timeline {old} ended there); accepting writes");
    Ok(new)
}

/// Writes a checkpoint: a record in the WAL, the state just before it in a snapshot, then the control file.
fn checkpoint(core: &Core) -> Result<Lsn> {
    let _one = lock(&core.checkpoint_lock);
    let timeline = core.wal.timeline();
    let payload = CheckpointInfo { system_id: core.system_id, timeline }.encode();
    let crc = crc32c::crc32c(&payload);
    let (rec, state) = {
        let mut g = core.wal.lock();
        let latest = lock(&core.latest);
        let rec = g.append(RecordKind::Checkpoint, 0, &payload, crc)?;
        core.altered_since_checkpoint.store(false, Ordering::Release);
        (rec, latest.clone())
    };
    core.wal.wait_flushed(rec.end)?;
    snapshot::write(&core.dir, core.system_id, rec.start, &state)?;
    {
        let mut control = lock(&core.control);
        let mut next = control.clone();
        next.checkpoint = rec.start;
        next.timeline = timeline;
        next.write(&core.dir)?;
        *control = next;
    }
    snapshot::remove_others(&core.dir, rec.start)?;
    core.wal.recycle_before(rec.start, core.spare_segments)?;
    *lock(&core.last_checkpoint) = (rec.start, Instant::now());
    Ok(rec.start)
}

/// How much WAL after the latest checkpoint a base backup replays rather than taking a new checkpoint.
pub const BACKUP_REUSE_WAL: u64 = 16 << 20;

/// A standby's checkpoint: the replayed state at a checkpoint record, saved as a snapshot and named in the
/// control file, so a restart replays from there and older WAL can go.
fn take_restartpoint(core: &Core, at: Lsn, state: &DbState) -> Result<()> {
    let _one = lock(&core.checkpoint_lock);
    if at <= lock(&core.control).checkpoint {
        return Ok(());
    }
    snapshot::write(&core.dir, core.system_id, at, state)?;
    {
        let mut control = lock(&core.control);
        let mut next = control.clone();
        next.checkpoint = at;
        next.write(&core.dir)?;
        *control = next;
    }
    snapshot::remove_others(&core.dir, at)?;
    core.wal.recycle_before(at, core.spare_segments)?;
    *lock(&core.last_checkpoint) = (at, Instant::now());
    Ok(())
}
