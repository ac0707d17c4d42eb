//! The WAL sender: the primary's end of a replication connection.
//!
//! After the startup packet, a replication connection runs replication commands (IDENTIFY_SYSTEM, SHOW,
//! TIMELINE_HISTORY, slots, START_REPLICATION, BASE_BACKUP) one at a time, like a tiny SQL session.
//! START_REPLICATION turns the connection into a CopyBoth stream in both directions at once:
//!
//! ```text
//!   sender thread:  WAL flushed locally ──pread──▶ XLogData 'w' (≤128 KiB, within one segment) ──▶ standby
//!                   idle ──▶ keepalive 'k' (reply requested after wal_sender_timeout / 2 without a reply)
//!   reader thread:  standby ──▶ status 'r' (write / flush / apply) ──▶ shared positions ──▶ monitoring, syncrep
//! ```
//!
//! Replies are not synchronized with sends, so a second thread reads them (as neon's safekeeper runs two
//! tasks); only the sender thread writes to the socket. Garbage in the stream ends that connection and
//! nothing else. While connected, the sender holds the WAL its standby has not flushed (as a WAL
//! consumer), so a checkpoint cannot recycle a segment under it.

use std::collections::HashMap;
use std::io::{BufReader, BufWriter, Write};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::engine::{Engine, WAL_DIR};
use crate::error::{Error, Result, SqlState};
use crate::replication::client::{literal, Conn};
use crate::replication::protocol::{
    self, error_message, io, read_message, ready, write_rows, Command, CopyMessage, Msg, INT4, TEXT,
};
use crate::replication::slot::Slots;
use crate::replication::syncrep::SyncRep;
use crate::replication::walreceiver::{ReceiverConfig, ReceiverStatus, WalReceiver};
use crate::server::stream::Stream;
use crate::settings::ServerSettings;
use crate::wal::reader::WalReader;
use crate::wal::segment;
use crate::wal::writer::lock;
use crate::wal::Lsn;

/// The largest XLogData payload, as PostgreSQL's MAX_SEND_SIZE.
const MAX_SEND: usize = 128 * 1024;

/// Settings of WAL senders.
#[derive(Clone, Debug)]
pub struct SenderConfig {
    /// End a stream whose standby sent nothing for this long.
    pub wal_sender_timeout: Duration,
    /// Send a keepalive after this long without sending anything.
    pub keepalive_interval: Duration,
    /// The most WAL a replication slot may hold, in bytes (None: no limit).
    pub max_slot_wal_keep_size: Option<u64>,
}

impl Default for SenderConfig {
    fn default() -> Self {
        SenderConfig {
            wal_sender_timeout: Duration::from_secs(60),
            keepalive_interval: Duration::from_secs(1),
            max_slot_wal_keep_size: None,
        }
    }
}

/// What pg_stat_replication shows of one WAL sender.
pub struct SenderInfo {
    pub pid: i32,
    pub application_name: String,
    pub client_addr: String,
    pub client_port: i32,
    pub backend_start: i64,
    /// startup, catchup, streaming, backup, stopping.
    pub state: Mutex<&'static str>,
    pub sent: AtomicU64,
    pub write: AtomicU64,
    pub flush: AtomicU64,
    pub apply: AtomicU64,
    /// When the last status update arrived (PostgreSQL timestamp), 0 if none.
    pub reply_time: AtomicI64,
    /// The last measured write, flush and replay lags in microseconds (-1: not measured yet): the time
    /// between sending WAL and hearing that the standby wrote, flushed or applied it.
    pub lags: [AtomicI64; 3],
    /// When recent positions were sent, oldest first, to measure the lags against.
    sent_at: Mutex<std::collections::VecDeque<(Lsn, Instant)>>,
}

impl SenderInfo {
    /// Whether the standby has caught up once and streams (PostgreSQL's `streaming` state).
    pub fn is_streaming(&self) -> bool {
        *lock(&self.state) == "streaming"
    }

    /// Notes that everything before `lsn` has been sent now.
    fn record_send(&self, lsn: Lsn) {
        let mut q = lock(&self.sent_at);
        if q.back().is_none_or(|(l, _)| *l < lsn) {
            if q.len() >= 1024 {
                q.pop_front();
            }
            q.push_back((lsn, Instant::now()));
        }
    }

    /// Measures the lags from a status update: for each reported position, the age of the newest send
    /// it covers.
    fn record_reply(&self, positions: [Lsn; 3]) {
        let mut q = lock(&self.sent_at);
        for (lag, pos) in self.lags.iter().zip(positions) {
            if let Some((_, at)) = q.iter().rev().find(|(l, _)| *l <= pos) {
                lag.store(at.elapsed().as_micros() as i64, Ordering::Relaxed);
            }
        }
        // Everything the standby has applied is measured for good.
        while q.len() > 1 && q.front().is_some_and(|(l, _)| *l <= positions[2]) {
            q.pop_front();
        }
    }

    /// A lag as PostgreSQL prints an interval (`00:00:00.001234`), or None if not measured.
    pub fn lag_text(&self, i: usize) -> Option<String> {
        let us = self.lags[i].load(Ordering::Relaxed);
        (us >= 0).then(|| {
            let secs = us / 1_000_000;
            format!("{:02}:{:02}:{:02}.{:06}", secs / 3600, secs / 60 % 60, secs % 60, us % 1_000_000)
        })
    }
}

/// What every WAL sender of a server shares.
pub struct ReplicationContext {
    pub engine: Arc<Engine>,
    pub config: SenderConfig,
    pub slots: Slots,
    /// The server-wide settings (`ALTER SYSTEM`, `pg_reload_conf()`).
    pub settings: Arc<ServerSettings>,
    /// The synchronous replication policy, installed as the engine's durability policy.
    pub syncrep: Arc<SyncRep>,
    /// The WAL sender array: connected senders in the order they started streaming.
    senders: Arc<Mutex<Vec<Arc<SenderInfo>>>>,
    /// On a standby: how its WAL receiver is doing.
    receiver: Mutex<Option<Arc<Mutex<ReceiverStatus>>>>,
    /// On a standby: the running WAL receiver and the settings it was started with.
    walreceiver: Mutex<Option<(WalReceiver, ReceiverConfig)>>,
}

impl ReplicationContext {
    /// The replication state of a server: its slots (loaded from disk) and its WAL senders.
    pub fn new(
        engine: Arc<Engine>,
        config: SenderConfig,
        settings: Arc<ServerSettings>,
    ) -> Result<Arc<ReplicationContext>> {
        let slots = Slots::load(engine.clone(), config.max_slot_wal_keep_size)?;
        let senders = Arc::new(Mutex::new(Vec::new()));
        let syncrep = Arc::new(SyncRep::new(senders.clone(), engine.wal().segment_size()));
        let ctx = Arc::new(ReplicationContext {
            engine,
            config,
            slots,
            settings,
            syncrep,
            senders,
            receiver: Mutex::new(None),
            walreceiver: Mutex::new(None),
        });
        ctx.apply_settings()?;
        ctx.engine.set_durability(ctx.syncrep.clone());
        // Every 20 ms, check whether commits waited too long for the synchronous standbys.
        let weak = Arc::downgrade(&ctx);
        let _ = std::thread::Builder::new().name("syncrep-timeout".into()).spawn(move || loop {
            std::thread::sleep(Duration::from_millis(20));
            let Some(ctx) = weak.upgrade() else { return };
            let local = ctx.engine.wal().flushed();
            if let Some(msg) = ctx.syncrep.check_timeout(local, ctx.engine.standby_wait()) {
                eprintln!("tandem: {msg}");
                ctx.engine.recompute_acks();
            }
        });
        // Once a second, invalidate slots that hold more WAL than allowed.
        let weak = Arc::downgrade(&ctx);
        let _ = std::thread::Builder::new().name("slot-limit".into()).spawn(move || loop {
            std::thread::sleep(Duration::from_secs(1));
            let Some(ctx) = weak.upgrade() else { return };
            for name in ctx.slots.enforce_limit() {
                eprintln!("tandem: replication slot \"{name}\" invalidated: it held more than max_slot_wal_keep_size");
            }
        });
        Ok(ctx)
    }

    /// Applies the reloadable settings that belong to replication.
    fn apply_settings(&self) -> Result<()> {
        let timeout = crate::settings::parse_duration(&self.settings.get("synchronous_standby_timeout"))
            .unwrap_or(Duration::ZERO);
        self.syncrep.configure(&self.settings.get("synchronous_standby_names"), timeout)?;
        self.engine.recompute_acks();
        Ok(())
    }

    /// `pg_reload_conf()`: re-reads the settings files and applies what changed. A standby whose
    /// `primary_conninfo` changed reconnects to the new primary without a restart.
    pub fn reload(&self) -> Result<Vec<(String, String)>> {
        let changed = self.settings.reload()?;
        self.apply_settings()?;
        for (k, v) in &changed {
            eprintln!("tandem: parameter \"{k}\" changed to \"{v}\"");
            if k == "primary_conninfo" && !v.is_empty() && self.engine.in_recovery() {
                let slot = lock(&self.walreceiver).as_ref().and_then(|(_, c)| c.slot.clone());
                let mut config = ReceiverConfig::from_conninfo(v)?;
                config.slot = slot;
                self.start_receiver(config);
            }
        }
        Ok(changed)
    }

    /// Starts (or restarts) the standby's WAL receiver.
    pub fn start_receiver(&self, config: ReceiverConfig) {
        self.stop_receiver();
        eprintln!("tandem: streaming from the primary at {}:{}", config.host, config.port);
        let rx = WalReceiver::start(self.engine.clone(), config.clone());
        self.set_receiver(Some(rx.status_handle()));
        *lock(&self.walreceiver) = Some((rx, config));
    }

    /// Stops the WAL receiver, if one runs.
    pub fn stop_receiver(&self) {
        let old = lock(&self.walreceiver).take();
        if let Some((rx, _)) = old {
            rx.stop();
        }
    }

    /// Promotes this standby (`tandem promote`, `pg_promote()`): stops the WAL receiver, then lets the
    /// engine apply what was received and start a new timeline. Returns the new timeline. If promotion
    /// fails, the receiver is started again.
    pub fn promote(&self, timeout: Duration) -> Result<u32> {
        if !self.engine.in_recovery() {
            return Err(Error::new(SqlState("55000"), "recovery is not in progress")
                .with_hint("Only a standby can be promoted."));
        }
        let config = lock(&self.walreceiver).as_ref().map(|(_, c)| c.clone());
        self.stop_receiver();
        match self.engine.promote(timeout) {
            Ok(tli) => {
                self.set_receiver(None);
                if let Some(c) = config {
                    self.fence_old_primary(c, tli);
                }
                Ok(tli)
            }
            Err(e) => {
                if let Some(c) = config {
                    self.start_receiver(c);
                }
                Err(e)
            }
        }
    }

    /// After a promotion: tells the old primary, as soon as it can be reached (now, or once a cut link
    /// heals), that it has been replaced, so it refuses writes (`tandem_fence()`). Stops once the old
    /// primary is fenced, or turns out to be a standby (it was rebuilt).
    fn fence_old_primary(&self, old: ReceiverConfig, tli: u32) {
        let reason = format!(
            "timeline {tli} was promoted at {} on the server that streamed from {}:{}",
            self.engine.wal().flushed(),
            old.host,
            old.port
        );
        let engine = Arc::downgrade(&self.engine);
        let _ = std::thread::Builder::new().name("fencer".into()).spawn(move || loop {
            if engine.upgrade().is_none() {
                return;
            }
            let attempt =
                Conn::session(&old.host, old.port, "tandem fencer", Some(Duration::from_secs(5))).and_then(|mut c| {
                    let (_, rows) = c.query("select pg_is_in_recovery(), tandem_fenced()")?;
                    let row = rows.first().cloned().unwrap_or_default();
                    let flag = |i: usize| row.get(i).cloned().flatten().as_deref() == Some("t");
                    if flag(0) || flag(1) {
                        return Ok(true);
                    }
                    c.query(&format!("select tandem_fence({})", literal(&reason)))?;
                    eprintln!("tandem: fenced the old primary at {}:{}", old.host, old.port);
                    Ok(true)
                });
            if attempt.unwrap_or(false) {
                return;
            }
            std::thread::sleep(Duration::from_millis(500));
        });
    }

    /// Makes a WAL receiver's status visible (pg_stat_wal_receiver).
    pub fn set_receiver(&self, status: Option<Arc<Mutex<ReceiverStatus>>>) {
        *lock(&self.receiver) = status;
    }

    /// The WAL receiver's status, on a standby.
    pub fn receiver_status(&self) -> Option<ReceiverStatus> {
        lock(&self.receiver).as_ref().map(|s| lock(s).clone())
    }

    /// The WAL senders connected now.
    pub fn senders(&self) -> Vec<Arc<SenderInfo>> {
        lock(&self.senders).clone()
    }

    /// At a clean shutdown, after the shutdown checkpoint: waits (at most `patience`) until every standby
    /// that streams has flushed the WAL up to `end`, as PostgreSQL's WAL senders do before they exit. The
    /// standby then holds the primary's whole history, so a planned switchover (stop the primary, promote
    /// the standby) leaves the old primary nothing to rewind. A client that reports no flush position
    /// (pg_receivewal without --synchronous) counts once it has written `end`. Returns the application
    /// names of the standbys still behind when the patience ran out.
    pub fn drain_senders(&self, end: Lsn, patience: Duration) -> Vec<String> {
        let deadline = Instant::now() + patience;
        loop {
            let behind: Vec<String> = self
                .senders()
                .iter()
                .filter(|s| matches!(*lock(&s.state), "streaming" | "catchup"))
                .filter(|s| {
                    let (write, flush) = (s.write.load(Ordering::Relaxed), s.flush.load(Ordering::Relaxed));
                    let done = if flush == 0 { write } else { flush };
                    Lsn(done) < end
                })
                .map(|s| s.application_name.clone())
                .collect();
            if behind.is_empty() || Instant::now() >= deadline {
                return behind;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// Removes a sender from the registry and releases its WAL when the connection ends.
struct Registration {
    ctx: Arc<ReplicationContext>,
    info: Arc<SenderInfo>,
    consumer: String,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.ctx.engine.wal().set_consumer(&self.consumer, None);
        lock(&self.ctx.senders).retain(|s| !Arc::ptr_eq(s, &self.info));
        self.ctx.slots.release_all(self.info.pid);
        self.ctx.engine.recompute_acks();
    }
}

/// Serves a replication connection whose startup packet has been read. Its slots are released (and its
/// temporary slots dropped) when it ends, however it ends.
pub fn serve(stream: Stream, params: &HashMap<String, String>, pid: i32, ctx: Arc<ReplicationContext>) -> Result<()> {
    let result = serve_connection(stream, params, pid, ctx.clone());
    ctx.slots.release_all(pid);
    result
}

fn serve_connection(
    stream: Stream,
    params: &HashMap<String, String>,
    pid: i32,
    ctx: Arc<ReplicationContext>,
) -> Result<()> {
    let peer = stream.peer();
    let info = Arc::new(SenderInfo {
        pid,
        application_name: params.get("application_name").cloned().unwrap_or_default(),
        client_addr: peer.map(|p| p.ip().to_string()).unwrap_or_default(),
        client_port: peer.map(|p| p.port() as i32).unwrap_or(-1),
        backend_start: protocol::now(),
        state: Mutex::new("startup"),
        sent: AtomicU64::new(0),
        write: AtomicU64::new(0),
        flush: AtomicU64::new(0),
        apply: AtomicU64::new(0),
        reply_time: AtomicI64::new(0),
        lags: [AtomicI64::new(-1), AtomicI64::new(-1), AtomicI64::new(-1)],
        sent_at: Mutex::new(std::collections::VecDeque::new()),
    });
    let mut out = BufWriter::with_capacity(256 * 1024, stream.try_clone().map_err(io)?);
    let mut input = BufReader::with_capacity(64 * 1024, stream.try_clone().map_err(io)?);
    let mut hello = Msg::new(b'R').i32(0).finish();
    let user = params.get("user").cloned().unwrap_or_else(|| "postgres".into());
    // The same reported settings as an SQL session, with the encoding a physical WAL sender reports.
    let settings = crate::sql::session::default_settings(&ctx.engine, &user, &info.application_name, "SQL_ASCII");
    for (k, v) in settings.iter().filter(|(k, _)| crate::sql::session::REPORTED.contains(&k.as_str())) {
        hello.extend(Msg::new(b'S').cstr(k).cstr(v).finish());
    }
    hello.extend(Msg::new(b'K').i32(pid).i32(0).finish());
    hello.extend(ready());
    out.write_all(&hello).map_err(io)?;
    out.flush().map_err(io)?;
    let mut registration: Option<Registration> = None;
    loop {
        let Some((kind, body)) = read_message(&mut input, 1 << 20)? else { return Ok(()) };
        match kind {
            b'Q' => {
                let text = String::from_utf8_lossy(body.strip_suffix(&[0]).unwrap_or(&body)).into_owned();
                crate::activity::set_query(&text);
                let result = Command::parse(&text).and_then(|cmd| match cmd {
                    Command::StartReplication { slot, start, timeline } => {
                        let reg = registration.get_or_insert_with(|| {
                            lock(&ctx.senders).push(info.clone());
                            Registration { ctx: ctx.clone(), info: info.clone(), consumer: format!("walsender {pid}") }
                        });
                        let slot = match slot {
                            Some(name) => Some(ctx.slots.acquire(&name, pid)?.name),
                            None => None,
                        };
                        let request = StartRequest { start, timeline, slot };
                        stream_wal(&ctx, reg, &stream, &mut out, &mut input, &request)
                    }
                    other => run_command(&ctx, &mut out, other, pid),
                });
                if let Err(e) = result {
                    // A stream that failed mid-way has already said why and closed the socket.
                    if e.code == SqlState::PROTOCOL_VIOLATION || e.code == SqlState::IO_ERROR {
                        let _ = out.write_all(&error_message(&e));
                        let _ = out.flush();
                        return Err(e);
                    }
                    out.write_all(&error_message(&e)).map_err(io)?;
                }
                out.write_all(&ready()).map_err(io)?;
                out.flush().map_err(io)?;
            }
            b'X' => return Ok(()),
            other => {
                let e = Error::new(
                    SqlState::PROTOCOL_VIOLATION,
                    format!("invalid message type \"{}\" on a replication connection", other as char),
                );
                let _ = out.write_all(&error_message(&e));
                let _ = out.flush();
                return Err(e);
            }
        }
    }
}

fn run_command(ctx: &ReplicationContext, out: &mut impl Write, cmd: Command, pid: i32) -> Result<()> {
    let engine = &ctx.engine;
    match cmd {
        Command::IdentifySystem => write_rows(
            out,
            &[("systemid", TEXT), ("timeline", INT4), ("xlogpos", TEXT), ("dbname", TEXT)],
            &[vec![
                Some(engine.system_id().to_string()),
                Some(engine.wal().timeline().to_string()),
                Some(engine.wal().flushed().to_string()),
                None,
            ]],
            "IDENTIFY_SYSTEM",
        ),
        Command::Show(name) => {
            let value = match name.as_str() {
                "wal_segment_size" => segment::format_segment_size(engine.wal().segment_size()),
                "data_directory_mode" => "0700".into(),
                "server_version" => crate::SERVER_VERSION.into(),
                "integer_datetimes" => "on".into(),
                "wal_sender_timeout" => format!("{}ms", ctx.config.wal_sender_timeout.as_millis()),
                _ => {
                    return Err(Error::new(
                        SqlState::UNDEFINED_OBJECT,
                        format!("unrecognized configuration parameter \"{name}\""),
                    ))
                }
            };
            let column: &'static str = match name.as_str() {
                "wal_segment_size" => "wal_segment_size",
                "data_directory_mode" => "data_directory_mode",
                "server_version" => "server_version",
                "integer_datetimes" => "integer_datetimes",
                _ => "wal_sender_timeout",
            };
            write_rows(out, &[(column, TEXT)], &[vec![Some(value)]], "SHOW")
        }
        Command::TimelineHistory(tli) => {
            let name = format!("{tli:08X}.history");
            let path = engine.dir().join(WAL_DIR).join(&name);
            let content = std::fs::read_to_string(&path)
                .map_err(|e| Error::new(SqlState("58P01"), format!("could not open file \"{WAL_DIR}/{name}\": {e}")))?;
            write_rows(
                out,
                &[("filename", TEXT), ("content", TEXT)],
                &[vec![Some(name), Some(content)]],
                "TIMELINE_HISTORY",
            )
        }
        Command::CreateSlot { name, temporary, reserve_wal } => {
            let slot = ctx.slots.create(&name, temporary, reserve_wal, pid)?;
            write_rows(
                out,
                &[("slot_name", TEXT), ("consistent_point", TEXT), ("snapshot_name", TEXT), ("output_plugin", TEXT)],
                &[vec![Some(slot.name), Some(slot.restart_lsn.unwrap_or(Lsn::INVALID).to_string()), None, None]],
                "CREATE_REPLICATION_SLOT",
            )
        }
        Command::DropSlot { name } => {
            ctx.slots.drop_slot(&name)?;
            out.write_all(&Msg::new(b'C').cstr("DROP_REPLICATION_SLOT").finish()).map_err(io)
        }
        Command::ReadSlot { name } => {
            let row = match ctx.slots.get(&name) {
                Some(s) => vec![
                    Some("physical".to_string()),
                    s.restart_lsn.map(|l| l.to_string()),
                    s.restart_lsn.map(|_| engine.wal().timeline().to_string()),
                ],
                None => vec![None, None, None],
            };
            write_rows(
                out,
                &[("slot_type", TEXT), ("restart_lsn", TEXT), ("restart_tli", protocol::INT8)],
                &[row],
                "READ_REPLICATION_SLOT",
            )
        }
        Command::BaseBackup(options) => crate::replication::basebackup::send(ctx, out, &options, pid),
        Command::StartReplication { .. } => Err(Error::internal("START_REPLICATION handled by the caller")),
    }
}

/// What the reader thread learned from the standby.
#[derive(Default)]
struct Replies {
    done: AtomicBool,
    closed: AtomicBool,
    reply_requested: AtomicBool,
    error: Mutex<Option<Error>>,
    last_reply: Mutex<Option<Instant>>,
}

/// What START_REPLICATION asked for.
struct StartRequest {
    start: Lsn,
    timeline: Option<u32>,
    slot: Option<String>,
}

fn stream_wal(
    ctx: &Arc<ReplicationContext>,
    reg: &Registration,
    stream: &Stream,
    out: &mut BufWriter<Stream>,
    input: &mut BufReader<Stream>,
    request: &StartRequest,
) -> Result<()> {
    let StartRequest { start, timeline, slot } = request;
    let (start, timeline, slot) = (*start, *timeline, slot.as_deref());
    let engine = &ctx.engine;
    let wal = engine.wal();
    let current_tli = wal.timeline();
    let wal_dir = engine.dir().join(WAL_DIR);
    let history = crate::wal::timeline::read_history(&wal_dir, current_tli)?;
    if let Some(t) = timeline {
        // An older timeline of this server's history is served up to where it ended.
        let known = t == current_tli || crate::wal::timeline::switch_point(&history, t).is_some_and(|end| start <= end);
        if !known {
            return Err(Error::new(
                SqlState::INVALID_PARAMETER_VALUE,
                format!("requested timeline {t} is not in this server's history"),
            ));
        }
    }
    let timelines = crate::wal::timeline::timelines_from_history(&history, current_tli);
    let flushed = wal.flushed();
    if start > flushed {
        return Err(Error::new(
            SqlState::INVALID_PARAMETER_VALUE,
            format!("requested starting point {start} is ahead of the WAL flush position of this server {flushed}"),
        ));
    }
    let seg_size = wal.segment_size();
    // Hold the WAL from here on, then make sure it is still there.
    wal.set_consumer(&reg.consumer, Some(start));
    let mut reader = WalReader::new(&wal_dir, seg_size, timelines.clone(), start, Lsn::INVALID);
    let mut probe = [0u8; 1];
    if start < flushed && reader.read_raw(start, &mut probe)? == 0 {
        return Err(Error::new(
            SqlState("58P01"),
            format!(
                "requested WAL segment {} has already been removed",
                segment::file_name(
                    timelines.for_segment(start.segment(seg_size), seg_size),
                    start.segment(seg_size),
                    seg_size
                )
            ),
        ));
    }
    out.write_all(&Msg::new(b'W').u8(0).i16(0).finish()).map_err(io)?;
    out.flush().map_err(io)?;
    let info = &reg.info;
    info.sent.store(start.0, Ordering::Relaxed);
    *lock(&info.state) = if start >= wal.flushed() { "streaming" } else { "catchup" };
    if let Some(name) = slot {
        ctx.slots.advance(name, start)?;
    }

    let replies = Arc::new(Replies::default());
    *lock(&replies.last_reply) = Some(Instant::now());
    // The reply reader takes the command reader (and whatever it has buffered) and hands it back when
    // the standby ends the stream with CopyDone.
    let reader_thread = {
        let replies = replies.clone();
        let info = info.clone();
        let engine = ctx.engine.clone();
        let mut taken = std::mem::replace(input, BufReader::new(stream.try_clone().map_err(io)?));
        std::thread::Builder::new()
            .name("walsender-replies".into())
            .spawn(move || {
                read_replies(&mut taken, &replies, &info, &engine);
                taken
            })
            .map_err(|e| Error::io("could not start a thread", e))?
    };

    let mut pos = start;
    let mut buf = vec![0u8; MAX_SEND];
    let mut last_send = Instant::now();
    let mut asked = false;
    let timeout = ctx.config.wal_sender_timeout;
    let result = loop {
        if replies.closed.load(Ordering::Acquire) {
            break lock(&replies.error).take().map_or(Ok(()), Err);
        }
        if replies.done.load(Ordering::Acquire) {
            *lock(&info.state) = "stopping";
            let mut end = Msg::new(b'c').finish();
            end.extend(Msg::new(b'C').cstr("START_STREAMING").finish());
            out.write_all(&end).map_err(io)?;
            break Ok(());
        }
        let flushed = wal.flushed();
        if pos < flushed {
            let seg_end = Lsn((pos.segment(seg_size) + 1) * seg_size);
            let want = (flushed.0.min(seg_end.0) - pos.0).min(MAX_SEND as u64) as usize;
            let n = reader.read_raw(pos, &mut buf[..want])?;
            if n == 0 {
                break Err(Error::new(
                    SqlState("58P01"),
                    format!(
                        "requested WAL segment {} has already been removed",
                        segment::file_name(
                            timelines.for_segment(pos.segment(seg_size), seg_size),
                            pos.segment(seg_size),
                            seg_size
                        )
                    ),
                ));
            }
            let msg = Msg::new(b'd')
                .u8(b'w')
                .i64(pos.0 as i64)
                .i64(flushed.0 as i64)
                .i64(protocol::now())
                .bytes(&buf[..n])
                .finish();
            out.write_all(&msg).map_err(io)?;
            pos = pos.plus(n as u64);
            info.sent.store(pos.0, Ordering::Relaxed);
            info.record_send(pos);
            if pos >= wal.flushed() {
                out.flush().map_err(io)?;
            }
            last_send = Instant::now();
            continue;
        }
        let since_reply = lock(&replies.last_reply).map_or(Duration::ZERO, |t| t.elapsed());
        if !timeout.is_zero() && since_reply > timeout {
            break Err(Error::new(
                SqlState::ADMIN_SHUTDOWN,
                "terminating walsender process due to replication timeout",
            ));
        }
        let want_reply = !timeout.is_zero() && since_reply > timeout / 2 && !asked;
        if want_reply
            || replies.reply_requested.swap(false, Ordering::AcqRel)
            || last_send.elapsed() >= ctx.config.keepalive_interval
        {
            asked |= want_reply;
            let msg = Msg::new(b'd').u8(b'k').i64(pos.0 as i64).i64(protocol::now()).u8(want_reply as u8).finish();
            out.write_all(&msg).map_err(io)?;
            out.flush().map_err(io)?;
            last_send = Instant::now();
        }
        if since_reply < timeout / 2 {
            asked = false;
        }
        // Hold what the standby has not flushed yet (or, for clients that report no flush, not received).
        let standby_flush = Lsn(info.flush.load(Ordering::Relaxed));
        let held = standby_flush.max(start.segment_start(seg_size));
        wal.set_consumer(&reg.consumer, Some(held.min(pos)));
        if let Some(name) = slot {
            let at = if standby_flush == Lsn::INVALID { start } else { standby_flush.min(pos) };
            ctx.slots.advance(name, at)?;
        }
        wal.wait_flushed_beyond(pos, Duration::from_millis(100));
    };
    if let Err(e) = &result {
        // Say why, then unblock the reply reader: the connection is over.
        let _ = out.write_all(&error_message(e));
        let _ = out.flush();
        let _ = stream.shutdown(std::net::Shutdown::Both);
        return Err(Error { code: SqlState::PROTOCOL_VIOLATION, ..e.clone() });
    }
    if let Ok(taken) = reader_thread.join() {
        *input = taken;
    }
    result
}

fn read_replies(input: &mut BufReader<Stream>, replies: &Replies, info: &SenderInfo, engine: &Engine) {
    loop {
        let msg = read_message(input, 1 << 20);
        let outcome = match msg {
            Ok(Some((b'd', body))) => match CopyMessage::decode(&body) {
                Ok(CopyMessage::Status(s)) => {
                    info.write.store(s.write.0, Ordering::Relaxed);
                    info.flush.store(s.flush.0, Ordering::Relaxed);
                    info.apply.store(s.apply.0, Ordering::Relaxed);
                    info.reply_time.store(protocol::now(), Ordering::Relaxed);
                    info.record_reply([s.write, s.flush, s.apply]);
                    // Caught up once (everything flushed here has reached the standby): streaming from now on.
                    if s.flush.max(s.write) >= engine.wal().flushed() {
                        let mut state = lock(&info.state);
                        if *state == "catchup" {
                            *state = "streaming";
                        }
                    }
                    *lock(&replies.last_reply) = Some(Instant::now());
                    // The standby's progress may acknowledge commits waiting for it.
                    engine.recompute_acks();
                    if s.reply_requested {
                        replies.reply_requested.store(true, Ordering::Release);
                    }
                    Ok(true)
                }
                Ok(CopyMessage::HotStandbyFeedback) => {
                    *lock(&replies.last_reply) = Some(Instant::now());
                    Ok(true)
                }
                Ok(_) => Err(Error::new(SqlState::PROTOCOL_VIOLATION, "unexpected message from a standby")),
                Err(e) => Err(e),
            },
            Ok(Some((b'c', _))) => {
                replies.done.store(true, Ordering::Release);
                return;
            }
            Ok(Some((b'X', _))) | Ok(None) => Ok(false),
            Ok(Some((other, _))) => Err(Error::new(
                SqlState::PROTOCOL_VIOLATION,
                format!("invalid standby message type \"{}\"", other as char),
            )),
            Err(e) => Err(e),
        };
        match outcome {
            Ok(true) => {}
            Ok(false) => {
                replies.closed.store(true, Ordering::Release);
                return;
            }
            Err(e) => {
                *lock(&replies.error) = Some(e);
                replies.closed.store(true, Ordering::Release);
                return;
            }
        }
    }
}
