//! The WAL receiver: the standby's end of streaming replication.
//!
//! One thread keeps a connection to the primary (`primary_conninfo`): it checks that the primary is the
//! same database system and timeline, asks for WAL from the end of its own log, writes what arrives at the
//! same positions into its own `pg_wal/` (so its segment files are byte-identical to the primary's), and
//! fdatasyncs whenever it has drained the socket. Opening a segment starts the creation of the next one in
//! the background (as the primary's flusher does), so a segment boundary costs no zero-fill. Each flush is
//! announced to the WAL (which wakes the startup process) and reported to the primary in a status update
//! with the write, flush and apply positions; status updates also go out every
//! `wal_receiver_status_interval` and when a keepalive asks.
//!
//! Any failure — refused connection, primary restart, network cut, nothing heard for
//! `wal_receiver_timeout` — ends that connection; the loop reconnects with exponential backoff, and the
//! last error stays visible in [`ReceiverStatus`] (pg_stat_wal_receiver, `tandem status`) until streaming
//! resumes. A standby never reports itself healthy while it is not streaming.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::engine::{Engine, WAL_DIR};
use crate::error::{Error, Result, SqlState};
use crate::replication::client::{data_row, server_error, startup_packet, TextRow};
use crate::replication::protocol::{self, io, CopyMessage, Msg, StandbyStatus};
use crate::server::stream::Stream;
use crate::wal::segment;
use crate::wal::writer::lock;
use crate::wal::Lsn;

/// How long a read waits for the primary when there is nothing else to do.
const IDLE_POLL: Duration = Duration::from_millis(200);
/// How long a read waits while replay is behind the flush (to report its progress promptly).
const APPLY_POLL: Duration = Duration::from_millis(1);

/// Where and how the standby streams from.
#[derive(Clone, Debug)]
pub struct ReceiverConfig {
    pub host: String,
    pub port: u16,
    /// The name the primary knows this standby by (pg_stat_replication.application_name).
    pub application_name: String,
    pub wal_receiver_timeout: Duration,
    pub status_interval: Duration,
    /// The longest wait between reconnection attempts.
    pub max_retry_interval: Duration,
    /// The primary's replication slot for this standby (primary_slot_name), if any.
    pub slot: Option<String>,
}

impl ReceiverConfig {
    /// Settings for a primary at host:port, with PostgreSQL's default timeouts.
    pub fn new(host: &str, port: u16, application_name: &str) -> Self {
        ReceiverConfig {
            host: host.to_string(),
            port,
            application_name: application_name.to_string(),
            wal_receiver_timeout: Duration::from_secs(60),
            status_interval: Duration::from_secs(10),
            max_retry_interval: Duration::from_secs(5),
            slot: None,
        }
    }

    /// Reads `host`, `port` and `application_name` from a libpq-style conninfo string.
    pub fn from_conninfo(conninfo: &str) -> Result<Self> {
        let mut kv = HashMap::new();
        for part in conninfo.split_whitespace() {
            let (k, v) = part.split_once('=').ok_or_else(|| {
                Error::new(
                    SqlState::CONFIG_FILE_ERROR,
                    format!("invalid primary_conninfo \"{conninfo}\": \"{part}\" is not key=value"),
                )
            })?;
            kv.insert(k.to_string(), v.trim_matches('\'').to_string());
        }
        let host = kv.get("host").cloned().unwrap_or_else(|| "127.0.0.1".into());
        let port = match kv.get("port") {
            Some(p) => p.parse().map_err(|_| {
                Error::new(SqlState::CONFIG_FILE_ERROR, format!("invalid port \"{p}\" in primary_conninfo"))
            })?,
            None => 5433,
        };
        let name = kv.get("application_name").cloned().unwrap_or_else(|| "standby".into());
        Ok(ReceiverConfig::new(&host, port, &name))
    }
}

/// What pg_stat_wal_receiver shows.
#[derive(Clone, Debug, Default)]
pub struct ReceiverStatus {
    /// starting, streaming, waiting (to reconnect), stopping.
    pub status: String,
    pub receive_start_lsn: Lsn,
    pub receive_start_tli: u32,
    pub written_lsn: Lsn,
    pub flushed_lsn: Lsn,
    pub received_tli: u32,
    pub last_msg_send_time: Option<i64>,
    pub last_msg_receipt_time: Option<i64>,
    pub latest_end_lsn: Lsn,
    pub latest_end_time: Option<i64>,
    pub sender_host: String,
    pub sender_port: u16,
    /// The primary's slot this standby streams from.
    pub slot_name: Option<String>,
    /// Why the last connection failed, until streaming resumes.
    pub last_error: Option<String>,
}

/// A running WAL receiver.
pub struct WalReceiver {
    status: Arc<Mutex<ReceiverStatus>>,
    stop: Arc<AtomicBool>,
    /// The current connection, shut down by [`stop`](WalReceiver::stop) so that a blocked read returns at
    /// once (promotion waits for the receiver to be gone).
    socket: Arc<Mutex<Option<Stream>>>,
    handle: Option<JoinHandle<()>>,
}

impl WalReceiver {
    /// Starts receiving WAL for a standby engine.
    pub fn start(engine: Arc<Engine>, config: ReceiverConfig) -> WalReceiver {
        let status = Arc::new(Mutex::new(ReceiverStatus {
            status: "starting".into(),
            sender_host: config.host.clone(),
            sender_port: config.port,
            slot_name: config.slot.clone(),
            ..ReceiverStatus::default()
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let socket = Arc::new(Mutex::new(None));
        let handle = {
            let (status, stop, socket) = (status.clone(), stop.clone(), socket.clone());
            std::thread::Builder::new()
                .name("walreceiver".into())
                .spawn(move || {
                    crate::priority::favour_replay_thread();
                    run(&engine, &config, &status, &stop, &socket)
                })
                .ok()
        };
        WalReceiver { status, stop, socket, handle }
    }

    /// The live status, shared (for monitoring views).
    pub fn status_handle(&self) -> Arc<Mutex<ReceiverStatus>> {
        self.status.clone()
    }

    /// A copy of the current status.
    pub fn status(&self) -> ReceiverStatus {
        lock(&self.status).clone()
    }

    /// Stops the receiver and waits for it.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(s) = lock(&self.socket).as_ref() {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
        if let Some(h) = self.handle.take() {
            h.thread().unpark();
            let _ = h.join();
        }
    }
}

impl Drop for WalReceiver {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn run(
    engine: &Engine,
    config: &ReceiverConfig,
    status: &Mutex<ReceiverStatus>,
    stop: &AtomicBool,
    socket: &Mutex<Option<Stream>>,
) {
    let mut backoff = Duration::from_millis(100);
    while !stop.load(Ordering::Acquire) {
        let started = Instant::now();
        let result = stream_once(engine, config, status, stop, socket);
        *lock(socket) = None;
        {
            let mut s = lock(status);
            s.status = if stop.load(Ordering::Acquire) { "stopping".into() } else { "waiting".into() };
            if let Err(e) = &result {
                s.last_error = Some(match &e.detail {
                    Some(d) => format!("{} ({d})", e.message),
                    None => e.message.clone(),
                });
            }
        }
        if let Err(e) = result {
            eprintln!("tandem: walreceiver: {e}");
        }
        if started.elapsed() > Duration::from_secs(10) {
            backoff = Duration::from_millis(100);
        }
        // Parked, not slept: stopping (promotion waits for it) unparks this thread at once.
        let until = Instant::now() + backoff;
        while !stop.load(Ordering::Acquire) {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            std::thread::park_timeout(left);
        }
        backoff = (backoff * 2).min(config.max_retry_interval);
    }
}

/// The segment files the receiver writes.
struct SegmentWriter {
    dir: std::path::PathBuf,
    segment_size: u64,
    /// Which timeline's file each segment goes to (the switch segment and later: the newest).
    timelines: crate::wal::reader::Timelines,
    open: Option<(u64, File)>,
    dirty: Vec<u64>,
}

impl SegmentWriter {
    fn write(&mut self, wal: &crate::wal::writer::Wal, mut at: Lsn, mut data: &[u8]) -> Result<()> {
        while !data.is_empty() {
            let segno = at.segment(self.segment_size);
            if self.open.as_ref().map(|(s, _)| *s) != Some(segno) {
                self.sync()?;
                let tli = self.timelines.for_segment(segno, self.segment_size);
                wal.ensure_segment(tli, segno)?;
                let path = self.dir.join(segment::file_name(tli, segno, self.segment_size));
                let f = OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(|e| Error::io(format!("could not open WAL segment \"{}\"", path.display()), e))?;
                self.open = Some((segno, f));
                // The next segment is made while this one fills: zero-filling and fsyncing 16 MB inline
                // held replay back by 50-150 ms at every segment boundary.
                wal.preallocate(self.timelines.for_segment(segno + 1, self.segment_size), segno + 1);
            }
            let off = at.segment_offset(self.segment_size);
            let n = ((self.segment_size - off) as usize).min(data.len());
            let (_, f) = self.open.as_ref().expect("opened above");
            crate::failpoint::check("walreceiver_write")?;
            f.write_all_at(&data[..n], off).map_err(|e| Error::io(format!("could not write WAL at {at}"), e))?;
            if !self.dirty.contains(&segno) {
                self.dirty.push(segno);
            }
            data = &data[n..];
            at = at.plus(n as u64);
        }
        Ok(())
    }

    fn sync(&mut self) -> Result<()> {
        if let Some((segno, f)) = &self.open {
            if self.dirty.contains(segno) {
                crate::failpoint::check("walreceiver_fsync")?;
                f.sync_data().map_err(|e| Error::io("could not fdatasync received WAL", e))?;
            }
        }
        // Segments closed earlier were synced when they were left.
        self.dirty.clear();
        Ok(())
    }
}

fn send(out: &mut Stream, bytes: &[u8]) -> Result<()> {
    out.write_all(bytes).map_err(io)
}

/// Sends a standby status update with the write, flush and apply positions.
fn send_status(out: &mut Stream, write: Lsn, flush: Lsn, apply: Lsn) -> Result<()> {
    let st = StandbyStatus { write, flush, apply, time: protocol::now(), reply_requested: false };
    send(out, &Msg::new(b'd').bytes(&st.encode()).finish())
}

/// Runs a simple query on the replication connection; returns its first row.
fn query(input: &mut BufReader<Stream>, out: &mut Stream, q: &str) -> Result<TextRow> {
    send(out, &Msg::new(b'Q').cstr(q).finish())?;
    let mut row = Vec::new();
    let mut error = None;
    loop {
        let Some((kind, body)) = read_blocking(input, &AtomicBool::new(false))? else {
            return Err(Error::new(SqlState::PROTOCOL_VIOLATION, "the primary closed the connection"));
        };
        match kind {
            b'D' => row = data_row(&body)?,
            b'E' => error = Some(server_error(&body)),
            b'Z' => break,
            _ => {}
        }
    }
    error.map_or(Ok(row), Err)
}

fn stream_once(
    engine: &Engine,
    config: &ReceiverConfig,
    status: &Mutex<ReceiverStatus>,
    stop: &AtomicBool,
    socket: &Mutex<Option<Stream>>,
) -> Result<()> {
    let stream = Stream::connect(&config.host, config.port, Duration::from_secs(5), "the primary server")?;
    *lock(socket) = stream.try_clone().ok();
    if stop.load(Ordering::Acquire) {
        return Ok(());
    }
    stream.set_read_timeout(Some(IDLE_POLL)).map_err(io)?;
    let mut polling = IDLE_POLL;
    let mut out = stream.try_clone().map_err(io)?;
    let mut input = BufReader::with_capacity(256 * 1024, stream.try_clone().map_err(io)?);

    let packet = startup_packet(&[
        ("user", "tandem"),
        ("database", "replication"),
        ("replication", "true"),
        ("application_name", config.application_name.as_str()),
    ]);
    send(&mut out, &packet)?;
    loop {
        let Some((kind, body)) = read_blocking(&mut input, stop)? else {
            return Err(Error::new(SqlState("08006"), "the primary closed the connection during startup"));
        };
        match kind {
            b'E' => return Err(server_error(&body)),
            b'Z' => break,
            _ => {}
        }
    }

    let ident = query(&mut input, &mut out, "IDENTIFY_SYSTEM")?;
    let field = |i: usize| ident.get(i).cloned().flatten().unwrap_or_default();
    let primary_id: u64 = field(0).parse().unwrap_or(0);
    if primary_id != engine.system_id() {
        return Err(Error::new(
            SqlState("08006"),
            "database system identifier differs between the primary and standby",
        )
        .with_detail(format!(
            "The primary's identifier is {primary_id}, the standby's identifier is {}.",
            engine.system_id()
        )));
    }
    let primary_tli: u32 = field(1).parse().unwrap_or(0);
    let mut our_tli = engine.wal().timeline();
    let start = engine.wal().flushed();
    if primary_tli < our_tli {
        return Err(Error::new(
            SqlState("08006"),
            format!(
                "the server at {}:{} is on timeline {primary_tli}, older than this standby's timeline {our_tli}",
                config.host, config.port
            ),
        )
        .with_hint("It is a former primary: point primary_conninfo at the current primary."));
    }
    if primary_tli > our_tli {
        // The primary was promoted (or is a promoted standby): follow it onto its timeline if this
        // standby's WAL ends at or before the point where ours branched off.
        let row = query(&mut input, &mut out, &format!("TIMELINE_HISTORY {primary_tli}"))?;
        let content = row.get(1).cloned().flatten().unwrap_or_default();
        let history = crate::wal::timeline::parse_history(&content)?;
        let Some(switch) = crate::wal::timeline::switch_point(&history, our_tli) else {
            return Err(Error::new(
                SqlState("08006"),
                format!(
                    "timeline {our_tli} of this standby is not in the history of the primary's timeline {primary_tli}"
                ),
            ));
        };
        if start > switch {
            return Err(Error::new(
                SqlState("08006"),
                format!(
                    "this standby's WAL reaches {start}, past the point {switch} where the primary's timeline {primary_tli} branched off timeline {our_tli}"
                ),
            )
            .with_hint("Rebuild this standby with tandem rewind or a fresh tandem init-standby."));
        }
        let wal_dir = engine.dir().join(WAL_DIR);
        crate::wal::timeline::save_history(&wal_dir, primary_tli, &content)?;
        engine.follow_timeline(primary_tli, start)?;
        eprintln!("tandem: walreceiver: following the primary onto timeline {primary_tli} (timeline {our_tli} ended at {switch})");
        our_tli = primary_tli;
    }
    if let Some(name) = &config.slot {
        // A standby that follows a new primary (after a promotion) makes its slot there.
        let row = query(&mut input, &mut out, &format!("READ_REPLICATION_SLOT \"{name}\""))?;
        if row.first().cloned().flatten().is_none() {
            query(&mut input, &mut out, &format!("CREATE_REPLICATION_SLOT \"{name}\" PHYSICAL RESERVE_WAL"))?;
            eprintln!("tandem: walreceiver: created replication slot \"{name}\" on the primary");
        }
    }
    let reply = {
        let slot = config.slot.as_ref().map(|s| format!("SLOT \"{s}\" ")).unwrap_or_default();
        send(&mut out, &Msg::new(b'Q').cstr(&format!("START_REPLICATION {slot}{start} TIMELINE {our_tli}")).finish())?;
        loop {
            let Some((kind, body)) = read_blocking(&mut input, stop)? else {
                return Err(Error::new(SqlState("08006"), "the primary closed the connection"));
            };
            match kind {
                b'W' => break Ok(()),
                b'E' => break Err(server_error(&body)),
                _ => {}
            }
        }
    };
    reply?;
    {
        let mut s = lock(status);
        s.status = "streaming".into();
        s.receive_start_lsn = start;
        s.receive_start_tli = our_tli;
        s.received_tli = our_tli;
        s.written_lsn = start;
        s.flushed_lsn = start;
        s.last_error = None;
    }
    let wal_dir = engine.dir().join(WAL_DIR);
    let mut writer = SegmentWriter {
        timelines: crate::wal::timeline::timelines(&wal_dir, our_tli)?,
        dir: wal_dir,
        segment_size: engine.wal().segment_size(),
        open: None,
        dirty: Vec::new(),
    };
    let mut written = start;
    let mut flushed = start;
    let mut last_receipt = Instant::now();
    let mut last_status = Instant::now();
    let mut reported_apply = engine.replay_status().applied;
    // Tell the primary where this standby stands right away.
    send_status(&mut out, start, start, engine.replay_status().applied)?;
    loop {
        if stop.load(Ordering::Acquire) {
            let _ = send(&mut out, &Msg::new(b'c').finish());
            return Ok(());
        }
        // While the startup process is behind the flush, poll often so that its progress reaches the
        // primary quickly (commits under synchronous_commit = remote_apply wait for it).
        let poll = if engine.replay_status().applied < flushed { APPLY_POLL } else { IDLE_POLL };
        if poll != polling {
            stream.set_read_timeout(Some(poll)).map_err(io)?;
            polling = poll;
        }
        let msg = read_polled(&mut input, config.wal_receiver_timeout)?;
        let mut reply_now = false;
        match msg {
            Polled::Closed => return Err(Error::new(SqlState("08006"), "the primary closed the connection")),
            Polled::Nothing => {
                if last_receipt.elapsed() > config.wal_receiver_timeout {
                    return Err(Error::new(SqlState("08006"), "terminating walreceiver due to timeout"));
                }
            }
            Polled::Message(b'd', body) => {
                last_receipt = Instant::now();
                match CopyMessage::decode(&body)? {
                    CopyMessage::XLogData { start, end, time, data } => {
                        if start != written {
                            return Err(Error::new(
                                SqlState::PROTOCOL_VIOLATION,
                                format!("received WAL at {start}, expected {written}"),
                            ));
                        }
                        writer.write(engine.wal(), start, &data)?;
                        written = start.plus(data.len() as u64);
                        let mut s = lock(status);
                        s.written_lsn = written;
                        s.last_msg_send_time = Some(time);
                        s.last_msg_receipt_time = Some(protocol::now());
                        if end > s.latest_end_lsn {
                            s.latest_end_lsn = end;
                            s.latest_end_time = Some(time);
                        }
                    }
                    CopyMessage::Keepalive { end, time, reply_requested } => {
                        let mut s = lock(status);
                        s.last_msg_send_time = Some(time);
                        s.last_msg_receipt_time = Some(protocol::now());
                        if end > s.latest_end_lsn {
                            s.latest_end_lsn = end;
                            s.latest_end_time = Some(time);
                        }
                        reply_now = reply_requested;
                    }
                    _ => return Err(Error::new(SqlState::PROTOCOL_VIOLATION, "unexpected message from the primary")),
                }
            }
            Polled::Message(b'c', _) => {
                let _ = send(&mut out, &Msg::new(b'c').finish());
                return Ok(());
            }
            Polled::Message(b'E', body) => return Err(server_error(&body)),
            Polled::Message(other, _) => {
                return Err(Error::new(
                    SqlState::PROTOCOL_VIOLATION,
                    format!("unexpected message type \"{}\" from the primary", other as char),
                ))
            }
        }
        // Flush once the socket is drained: one fdatasync covers everything received so far. The write
        // position goes out first, so commits under synchronous_commit = remote_write need not wait for
        // the fdatasync.
        if written > flushed && input.buffer().is_empty() {
            send_status(&mut out, written, flushed, engine.replay_status().applied)?;
            writer.sync()?;
            flushed = written;
            engine.wal().note_received_flush(flushed);
            lock(status).flushed_lsn = flushed;
            reply_now = true;
        }
        let applied = engine.replay_status().applied;
        if reply_now || applied > reported_apply || last_status.elapsed() >= config.status_interval {
            reported_apply = applied;
            send_status(&mut out, written, flushed, applied)?;
            last_status = Instant::now();
        }
    }
}

/// What a poll of the connection found.
enum Polled {
    Message(u8, Vec<u8>),
    /// Nothing arrived within the read timeout.
    Nothing,
    Closed,
}

fn timed_out(e: &std::io::Error) -> bool {
    matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)
}

/// Reads one message if one starts within the socket's read timeout. Once a message has started, the rest
/// of it is awaited for up to `patience`, so a read timeout never leaves the stream mid-message.
fn read_polled(input: &mut BufReader<Stream>, patience: Duration) -> Result<Polled> {
    match input.fill_buf() {
        Ok([]) => return Ok(Polled::Closed),
        Ok(_) => {}
        Err(e) if timed_out(&e) || e.kind() == std::io::ErrorKind::Interrupted => return Ok(Polled::Nothing),
        Err(e) => return Err(io(e)),
    }
    let deadline = Instant::now() + patience;
    let mut read_full = |buf: &mut [u8]| -> Result<()> {
        let mut done = 0;
        while done < buf.len() {
            match input.read(&mut buf[done..]) {
                Ok(0) => return Err(Error::new(SqlState("08006"), "the primary closed the connection")),
                Ok(n) => done += n,
                Err(e)
                    if (timed_out(&e) || e.kind() == std::io::ErrorKind::Interrupted) && Instant::now() < deadline => {}
                Err(e) => return Err(io(e)),
            }
        }
        Ok(())
    };
    let mut head = [0u8; 5];
    read_full(&mut head)?;
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    if !(4..=(64 << 20)).contains(&len) {
        return Err(Error::new(SqlState::PROTOCOL_VIOLATION, format!("invalid message length {len} from the primary")));
    }
    let mut body = vec![0u8; len - 4];
    read_full(&mut body)?;
    Ok(Polled::Message(head[0], body))
}

/// Reads a message during the command phase, waiting up to 30 seconds (less if the receiver is stopped).
fn read_blocking(input: &mut BufReader<Stream>, stop: &AtomicBool) -> Result<Option<(u8, Vec<u8>)>> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match read_polled(input, Duration::from_secs(30))? {
            Polled::Message(kind, body) => return Ok(Some((kind, body))),
            Polled::Closed => return Ok(None),
            Polled::Nothing if Instant::now() < deadline && !stop.load(Ordering::Acquire) => {}
            Polled::Nothing => {
                return Err(Error::new(SqlState("08006"), "timed out waiting for the primary"));
            }
        }
    }
}
