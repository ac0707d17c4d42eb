//! Base backups: a consistent copy of a running primary, as the BASE_BACKUP replication command streams
//! it and as `tandem basebackup` (and `init-standby`) receives it.
//!
//! A tandem data directory is small: the control file, one checkpoint snapshot, and the WAL after it.
//! So a base backup is a checkpoint, then a tar stream of exactly those files, taken while commits go on:
//!
//! ```text
//! checkpoint at B ─▶ hold WAL from B ─▶ tar: tandem.control, snapshots/B.snap, [pg_wal/ B..E] ─▶ end E
//! ```
//!
//! The snapshot is a file that never changes once written, so copying it needs no coordination with the
//! writers; WAL segments are copied only up to the flushed position E (bytes past it could be records the
//! primary has not made durable, which a standby must never replay), and the rest of the last segment is
//! sent as zeros. A standby started on the copy replays from B to E and then streams from E; a slot
//! created before the backup holds the WAL in between until it connects.
//!
//! The stream is PostgreSQL 15's BASE_BACKUP format (result sets, then CopyOut with 'n' archive, 'd' tar
//! data, 'p' progress, 'm' manifest), so pg_basebackup 15 can take a backup of tandem too.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::engine::{STANDBY_SIGNAL, WAL_DIR};
use crate::error::{Error, Result, SqlState};
use crate::replication::client::{read_results, server_error, Conn, TextRow};
use crate::replication::protocol::{io, read_message, write_rows, Msg, INT8, OID, TEXT};
use crate::replication::walsender::ReplicationContext;
use crate::snapshot::SNAPSHOT_DIR;
use crate::wal::segment;
use crate::wal::Lsn;

const BLOCK: usize = 512;
const CHUNK: usize = 256 * 1024;

/// A ustar header for a file or directory.
fn tar_header(name: &str, size: u64, dir: bool) -> [u8; BLOCK] {
    let mut h = [0u8; BLOCK];
    let name = if dir && !name.ends_with('/') { format!("{name}/") } else { name.to_string() };
    let nb = name.as_bytes();
    h[..nb.len().min(100)].copy_from_slice(&nb[..nb.len().min(100)]);
    let octal = |h: &mut [u8; BLOCK], at: usize, len: usize, v: u64| {
        let s = format!("{:0width$o}\0", v, width = len - 1);
        h[at..at + len].copy_from_slice(s.as_bytes());
    };
    octal(&mut h, 100, 8, if dir { 0o700 } else { 0o600 });
    octal(&mut h, 108, 8, 0);
    octal(&mut h, 116, 8, 0);
    octal(&mut h, 124, 12, size);
    let mtime = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    octal(&mut h, 136, 12, mtime);
    h[156] = if dir { b'5' } else { b'0' };
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| b as u32).sum();
    let s = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(s.as_bytes());
    h
}

/// Sends CopyData messages of tar bytes, with progress reports and an optional rate limit.
struct TarOut<'a, W: Write> {
    out: &'a mut W,
    done: u64,
    progress: bool,
    max_rate: Option<u64>,
    started: Instant,
}

impl<W: Write> TarOut<'_, W> {
    fn data(&mut self, bytes: &[u8]) -> Result<()> {
        for chunk in bytes.chunks(CHUNK) {
            self.out.write_all(&Msg::new(b'd').u8(b'd').bytes(chunk).finish()).map_err(io)?;
            self.done += chunk.len() as u64;
            if self.progress {
                self.out.write_all(&Msg::new(b'd').u8(b'p').i64(self.done as i64).finish()).map_err(io)?;
            }
            if let Some(rate) = self.max_rate {
                let due = Duration::from_secs_f64(self.done as f64 / rate as f64);
                if let Some(wait) = due.checked_sub(self.started.elapsed()) {
                    self.out.flush().map_err(io)?;
                    std::thread::sleep(wait);
                }
            }
        }
        Ok(())
    }

    fn file(&mut self, name: &str, size: u64, mut read: impl FnMut(u64, &mut [u8]) -> Result<usize>) -> Result<()> {
        self.data(&tar_header(name, size, false))?;
        let mut buf = vec![0u8; CHUNK];
        let mut at = 0;
        while at < size {
            let want = ((size - at) as usize).min(CHUNK);
            let n = read(at, &mut buf[..want])?;
            if n == 0 {
                return Err(Error::internal(format!("\"{name}\" ended at {at} of {size} bytes during the backup")));
            }
            self.data(&buf[..n])?;
            at += n as u64;
        }
        let pad = (BLOCK - (size as usize % BLOCK)) % BLOCK;
        self.data(&vec![0u8; pad])
    }

    fn dir(&mut self, name: &str) -> Result<()> {
        self.data(&tar_header(name, 0, true))
    }
}

/// One file of the backup, for the manifest.
struct ManifestEntry {
    path: String,
    size: u64,
}

/// Serves BASE_BACKUP on a replication connection.
pub fn send(
    ctx: &ReplicationContext,
    out: &mut impl Write,
    options: &[(String, Option<String>)],
    pid: i32,
) -> Result<()> {
    let mut progress = false;
    let mut include_wal = false;
    let mut manifest = false;
    let mut max_rate = None;
    for (name, value) in options {
        match name.as_str() {
            "LABEL" | "CHECKPOINT" | "WAIT" | "NOWAIT" | "TABLESPACE_MAP" | "VERIFY_CHECKSUMS"
            | "MANIFEST_CHECKSUMS" => {}
            "PROGRESS" => progress = value.as_deref() != Some("0") && value.as_deref() != Some("false"),
            "WAL" => include_wal = value.as_deref() != Some("0") && value.as_deref() != Some("false"),
            "MANIFEST" => manifest = matches!(value.as_deref(), Some("yes") | Some("force-encode") | None),
            "TARGET" if value.as_deref() == Some("client") => {}
            "TARGET" => {
                return Err(Error::new(
                    SqlState::FEATURE_NOT_SUPPORTED,
                    format!("backup target \"{}\" is not supported", value.clone().unwrap_or_default()),
                ))
            }
            "MAX_RATE" => {
                let kb: u64 = value
                    .as_deref()
                    .and_then(|v| v.parse().ok())
                    .filter(|v| (32..=1_048_576).contains(v))
                    .ok_or_else(|| {
                        Error::new(SqlState::INVALID_PARAMETER_VALUE, "MAX_RATE must be between 32 and 1048576 kB/s")
                    })?;
                max_rate = Some(kb * 1024);
            }
            other => {
                return Err(Error::new(SqlState::SYNTAX_ERROR, format!("unrecognized base backup option \"{other}\"")))
            }
        }
    }
    let engine = &ctx.engine;
    let backup = engine.backup_start(&format!("basebackup {pid}"))?;
    let seg = engine.wal().segment_size();
    let tli = backup.timeline.to_string();
    write_rows(
        out,
        &[("recptr", TEXT), ("tli", INT8)],
        &[vec![Some(backup.checkpoint.to_string()), Some(tli.clone())]],
        "SELECT",
    )?;
    let snapshot_len = backup.snapshot.metadata().map_err(|e| Error::io("could not stat the snapshot", e))?.len();
    let estimate = backup.control.len() as u64
        + snapshot_len
        + if include_wal { engine.wal().flushed().0.saturating_sub(backup.checkpoint.segment_start(seg).0) } else { 0 };
    write_rows(
        out,
        &[("spcoid", OID), ("spclocation", TEXT), ("size", INT8)],
        &[vec![None, None, progress.then(|| (estimate / 1024).to_string())]],
        "SELECT",
    )?;
    out.write_all(&Msg::new(b'H').u8(0).i16(0).finish()).map_err(io)?;
    out.write_all(&Msg::new(b'd').u8(b'n').cstr("base.tar").cstr("").finish()).map_err(io)?;
    let mut tar = TarOut { out, done: 0, progress, max_rate, started: Instant::now() };
    let mut files = Vec::new();
    for d in [WAL_DIR, SNAPSHOT_DIR, crate::replication::slot::SLOT_DIR] {
        tar.dir(d)?;
    }
    let control = backup.control.clone();
    tar.file(crate::control::CONTROL_FILE, control.len() as u64, |at, buf| {
        let rest = &control[at as usize..];
        let n = rest.len().min(buf.len());
        buf[..n].copy_from_slice(&rest[..n]);
        Ok(n)
    })?;
    files.push(ManifestEntry { path: crate::control::CONTROL_FILE.into(), size: control.len() as u64 });
    let snap_path = format!("{SNAPSHOT_DIR}/{}", backup.snapshot_name);
    let snap = &backup.snapshot;
    tar.file(&snap_path, snapshot_len, |at, buf| {
        snap.read_at(buf, at).map_err(|e| Error::io("could not read the snapshot", e))
    })?;
    files.push(ManifestEntry { path: snap_path, size: snapshot_len });
    let mut end = engine.wal().flushed();
    if include_wal {
        let wal_dir = engine.dir().join(WAL_DIR);
        for segno in backup.checkpoint.segment(seg)..=end.segment(seg) {
            let name = segment::file_name(backup.timeline, segno, seg);
            let file = File::open(wal_dir.join(&name))
                .map_err(|e| Error::io(format!("could not open WAL segment \"{name}\" for the backup"), e))?;
            // Only flushed bytes: the rest of the last segment goes as zeros.
            let valid = end.0.saturating_sub(segno * seg).min(seg);
            tar.file(&format!("{WAL_DIR}/{name}"), seg, |at, buf| {
                if at >= valid {
                    buf.fill(0);
                    return Ok(buf.len());
                }
                let n = buf.len().min((valid - at) as usize);
                file.read_exact_at(&mut buf[..n], at)
                    .map_err(|e| Error::io(format!("could not read \"{name}\""), e))?;
                Ok(n)
            })?;
            files.push(ManifestEntry { path: format!("{WAL_DIR}/{name}"), size: seg });
        }
    } else {
        end = engine.wal().flushed();
    }
    tar.data(&[0u8; 2 * BLOCK])?;
    let out = tar.out;
    if manifest {
        out.write_all(&Msg::new(b'd').u8(b'm').finish()).map_err(io)?;
        let entries: Vec<String> = files
            .iter()
            .map(|f| format!("{{ \"Path\": \"{}\", \"Size\": {}, \"Last-Modified\": \"\" }}", f.path, f.size))
            .collect();
        let json = format!(
            "{{ \"PostgreSQL-Backup-Manifest-Version\": 1,\n\"Files\": [\n{} ],\n\"WAL-Ranges\": [\n{{ \"Timeline\": {}, \"Start-LSN\": \"{}\", \"End-LSN\": \"{}\" }}\n] }}\n",
            entries.join(",\n"),
            backup.timeline,
            backup.checkpoint,
            end
        );
        out.write_all(&Msg::new(b'd').u8(b'd').bytes(json.as_bytes()).finish()).map_err(io)?;
    }
    out.write_all(&Msg::new(b'c').finish()).map_err(io)?;
    write_rows(out, &[("recptr", TEXT), ("tli", INT8)], &[vec![Some(end.to_string()), Some(tli)]], "SELECT")?;
    out.write_all(&Msg::new(b'C').cstr("BASE_BACKUP").finish()).map_err(io)
}

/// Options of a backup taken by tandem's own client.
#[derive(Clone, Debug, Default)]
pub struct FetchOptions {
    /// Print a progress bar on stderr (when it is a terminal).
    pub progress: bool,
    /// Bytes per second, at most.
    pub max_rate: Option<u64>,
    /// The name the standby will stream as.
    pub application_name: String,
}

/// What a finished backup covers.
#[derive(Clone, Debug)]
pub struct Fetched {
    pub system_id: u64,
    pub start: Lsn,
    pub end: Lsn,
    pub bytes: u64,
}

/// Extracts a tar stream into a directory, fsyncing every file.
struct Untar {
    dir: PathBuf,
    pending: Vec<u8>,
    file: Option<(File, u64)>,
    skip: u64,
    done: bool,
}

impl Untar {
    fn feed(&mut self, mut data: &[u8]) -> Result<()> {
        while !data.is_empty() && !self.done {
            if let Some((f, left)) = &mut self.file {
                let n = (*left as usize).min(data.len());
                f.write_all(&data[..n]).map_err(|e| Error::io("could not write a backup file", e))?;
                *left -= n as u64;
                data = &data[n..];
                if *left == 0 {
                    f.sync_all().map_err(|e| Error::io("could not fsync a backup file", e))?;
                    self.file = None;
                }
                continue;
            }
            if self.skip > 0 {
                let n = (self.skip as usize).min(data.len());
                self.skip -= n as u64;
                data = &data[n..];
                continue;
            }
            let n = (BLOCK - self.pending.len()).min(data.len());
            self.pending.extend_from_slice(&data[..n]);
            data = &data[n..];
            if self.pending.len() < BLOCK {
                continue;
            }
            let h = std::mem::take(&mut self.pending);
            if h.iter().all(|&b| b == 0) {
                self.done = true;
                break;
            }
            let name_end = h[..100].iter().position(|&b| b == 0).unwrap_or(100);
            let name = String::from_utf8_lossy(&h[..name_end]).trim_end_matches('/').to_string();
            if name.is_empty() || name.starts_with('/') || name.split('/').any(|p| p == "..") {
                return Err(Error::new(
                    SqlState::PROTOCOL_VIOLATION,
                    format!("invalid file name \"{name}\" in the backup"),
                ));
            }
            let size_field = String::from_utf8_lossy(&h[124..136]);
            let size = u64::from_str_radix(size_field.trim_matches(|c: char| c == '\0' || c == ' '), 8)
                .map_err(|_| Error::new(SqlState::PROTOCOL_VIOLATION, "invalid file size in the backup"))?;
            let path = self.dir.join(&name);
            if h[156] == b'5' {
                std::fs::create_dir_all(&path)
                    .map_err(|e| Error::io(format!("could not create \"{}\"", path.display()), e))?;
            } else {
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).map_err(|e| Error::io("could not create a directory", e))?;
                }
                let f = File::create(&path)
                    .map_err(|e| Error::io(format!("could not create \"{}\"", path.display()), e))?;
                self.file = Some((f, size));
                if size == 0 {
                    self.file = None;
                }
                // The padding after the contents.
                self.skip = (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64;
            }
        }
        Ok(())
    }
}

/// Takes a base backup of the primary at host:port into `dir` (which must be empty or absent).
pub fn fetch(host: &str, port: u16, dir: &Path, options: &FetchOptions) -> Result<Fetched> {
    if std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some()) {
        return Err(Error::new(
            SqlState::CONFIG_FILE_ERROR,
            format!("directory \"{}\" exists but is not empty", dir.display()),
        ));
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::io(format!("could not create \"{}\"", dir.display()), e))?;
    let mut conn = Conn::replication(host, port, &options.application_name)?;
    let (_, ident) = conn.query("IDENTIFY_SYSTEM")?;
    let system_id: u64 =
        ident.first().and_then(|r| r.first().cloned().flatten()).and_then(|s| s.parse().ok()).unwrap_or(0);
    let mut cmd = String::from("BASE_BACKUP ( LABEL 'tandem basebackup', PROGRESS, WAL");
    if let Some(rate) = options.max_rate {
        cmd.push_str(&format!(", MAX_RATE {}", (rate / 1024).clamp(32, 1_048_576)));
    }
    cmd.push_str(", MANIFEST 'no' )");
    conn.send_query(&cmd)?;
    let (_, start_row) = read_results(&mut conn.input, true)?;
    let start: Lsn = start_row
        .first()
        .and_then(|r| r.first().cloned().flatten())
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| Error::new(SqlState::PROTOCOL_VIOLATION, "BASE_BACKUP sent no start position"))?;
    let total_kb: u64 =
        start_row.get(1).and_then(|r| r.get(2).cloned().flatten()).and_then(|s| s.parse().ok()).unwrap_or(0);
    let mut untar = Untar { dir: dir.to_path_buf(), pending: Vec::new(), file: None, skip: 0, done: false };
    let show = options.progress && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let mut bytes = 0u64;
    let mut in_manifest = false;
    loop {
        let Some((kind, body)) = read_message(&mut conn.input, 64 << 20)? else {
            return Err(Error::new(SqlState("08006"), "the primary closed the connection during the backup"));
        };
        match (kind, body.first()) {
            (b'd', Some(b'n')) => {}
            (b'd', Some(b'd')) if !in_manifest => {
                bytes += body.len() as u64 - 1;
                untar.feed(&body[1..])?;
            }
            (b'd', Some(b'd')) => {}
            (b'd', Some(b'm')) => in_manifest = true,
            (b'd', Some(b'p')) if show && body.len() >= 9 => {
                let done = i64::from_be_bytes(body[1..9].try_into().expect("8 bytes")) as u64 / 1024;
                let pct = (done * 100).checked_div(total_kb).unwrap_or(0).min(100);
                eprint!("\r{done}/{total_kb} kB ({pct}%)");
            }
            (b'd', _) => {}
            (b'c', _) => break,
            (b'E', _) => return Err(server_error(&body)),
            _ => {}
        }
    }
    if show {
        eprintln!();
    }
    let (_, end_rows) = read_results(&mut conn.input, false)?;
    let end: Lsn = end_rows
        .first()
        .and_then(|r| r.first().cloned().flatten())
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| Error::new(SqlState::PROTOCOL_VIOLATION, "BASE_BACKUP sent no end position"))?;
    conn.close();
    if !untar.done || untar.file.is_some() {
        return Err(Error::new(SqlState::PROTOCOL_VIOLATION, "the backup's tar stream ended early"));
    }
    for d in [dir.to_path_buf(), dir.join(WAL_DIR), dir.join(SNAPSHOT_DIR)] {
        segment::sync_dir(&d)?;
    }
    Ok(Fetched { system_id, start, end, bytes })
}

/// Runs one replication command on a server and returns the first row of its result.
pub fn replication_query(host: &str, port: u16, command: &str) -> Result<TextRow> {
    let mut conn = Conn::replication(host, port, "tandem")?;
    let (_, rows) = conn.query(command)?;
    conn.close();
    Ok(rows.into_iter().next().unwrap_or_default())
}

/// Makes a backup directory start as a standby of host:port: `standby.signal`, and `primary_conninfo`
/// (and the slot, if any) in `tandem.toml`.
pub fn write_standby_config(
    dir: &Path,
    host: &str,
    port: u16,
    application_name: &str,
    slot: Option<&str>,
) -> Result<()> {
    let path = dir.join("tandem.toml");
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    let kept: Vec<&str> = text
        .lines()
        .filter(|l| {
            let k = l.split('=').next().unwrap_or("").trim();
            k != "primary_conninfo" && k != "primary_slot_name"
        })
        .collect();
    let mut out = kept.join("\n");
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(&format!("primary_conninfo = 'host={host} port={port} application_name={application_name}'\n"));
    if let Some(s) = slot {
        out.push_str(&format!("primary_slot_name = '{s}'\n"));
    }
    std::fs::write(&path, out).map_err(|e| Error::io(format!("could not write \"{}\"", path.display()), e))?;
    let f = File::create(dir.join(STANDBY_SIGNAL)).map_err(|e| Error::io("could not write standby.signal", e))?;
    f.sync_all().map_err(|e| Error::io("could not fsync standby.signal", e))?;
    segment::sync_dir(dir)
}
