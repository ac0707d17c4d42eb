//! The control file, `tandem.control`: which system this is and where recovery starts.
//!
//! It holds the system identifier (fixed at init, shared by a primary and its standbys), the format
//! version, the WAL segment size, the current timeline, the position of the latest checkpoint record and
//! the server state. It ends with a CRC32C. It is only ever replaced whole: written to a temporary file,
//! fsynced, renamed over the old one, and the directory fsynced, so after a crash it is either the old
//! version or the new one.

use std::fs;
use std::io::Write;
use std::path::Path;

use crate::encoding::{Decoder, Encoder};
use crate::error::{Error, Result, SqlState};
use crate::failpoint;
use crate::wal::segment::sync_dir;
use crate::wal::Lsn;

/// The control file's name in the data directory.
pub const CONTROL_FILE: &str = "tandem.control";

const MAGIC: &[u8; 8] = b"TNDMCTRL";

/// The on-disk format version this build reads and writes (control file, snapshots, WAL records).
pub const FORMAT_VERSION: u32 = 1;

/// What the server was doing when the control file was last written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClusterState {
    /// Cleanly shut down.
    ShutDown,
    /// Running as a primary (if found at start: it crashed).
    InProduction,
    /// Running as a standby, replaying WAL.
    InArchiveRecovery,
}

impl ClusterState {
    fn to_u8(self) -> u8 {
        match self {
            ClusterState::ShutDown => 0,
            ClusterState::InProduction => 1,
            ClusterState::InArchiveRecovery => 2,
        }
    }

    fn from_u8(b: u8) -> Option<Self> {
        match b {
            0 => Some(ClusterState::ShutDown),
            1 => Some(ClusterState::InProduction),
            2 => Some(ClusterState::InArchiveRecovery),
            _ => None,
        }
    }

    /// The name pg_controldata would print.
    pub fn name(self) -> &'static str {
        match self {
            ClusterState::ShutDown => "shut down",
            ClusterState::InProduction => "in production",
            ClusterState::InArchiveRecovery => "in archive recovery",
        }
    }
}

/// The contents of `tandem.control`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControlFile {
    pub system_id: u64,
    pub segment_size: u64,
    pub timeline: u32,
    /// The position of the latest checkpoint record; its snapshot holds the state just before it.
    pub checkpoint: Lsn,
    pub state: ClusterState,
}

impl ControlFile {
    fn encode(&self) -> Vec<u8> {
        let mut e = Encoder::default();
        e.buf.extend_from_slice(MAGIC);
        e.u32(FORMAT_VERSION);
        e.u64(self.system_id);
        e.u64(self.segment_size);
        e.u32(self.timeline);
        e.u64(self.checkpoint.0);
        e.u8(self.state.to_u8());
        let crc = crc32c::crc32c(&e.buf);
        e.u32(crc);
        e.buf
    }

    /// Reads and checks the control file of a data directory.
    pub fn read(dir: &Path) -> Result<ControlFile> {
        let path = dir.join(CONTROL_FILE);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut err = Error::new(
                    SqlState::CONFIG_FILE_ERROR,
                    format!("\"{}\" is not a tandem data directory: {CONTROL_FILE} is missing", dir.display()),
                );
                if dir.join("PG_VERSION").exists() {
                    err = err.with_detail("It holds a PG_VERSION file: it looks like a PostgreSQL data directory.");
                }
                return Err(err.with_hint("Create a data directory with \"tandem init -D DIR\"."));
            }
            Err(e) => return Err(Error::io(format!("could not read \"{}\"", path.display()), e)),
        };
        if bytes.len() < 12 || &bytes[..8] != MAGIC {
            return Err(Error::new(
                SqlState::CONFIG_FILE_ERROR,
                format!("\"{}\" is not a tandem control file (wrong magic number)", path.display()),
            ));
        }
        let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
        if version != FORMAT_VERSION {
            return Err(Error::new(
                SqlState::CONFIG_FILE_ERROR,
                format!(
                    "data directory \"{}\" has format version {version}, but this tandem reads version {FORMAT_VERSION}",
                    dir.display()
                ),
            )
            .with_hint("Use the tandem release that created it, or make a new data directory."));
        }
        let (body, crc) = bytes.split_at(bytes.len() - 4);
        if crc32c::crc32c(body) != u32::from_le_bytes(crc.try_into().expect("4 bytes")) {
            return Err(Error::corrupted(format!("incorrect checksum in control file \"{}\"", path.display())));
        }
        let mut d = Decoder::new(&body[12..], "control file");
        let system_id = d.u64()?;
        let segment_size = d.u64()?;
        let timeline = d.u32()?;
        let checkpoint = Lsn(d.u64()?);
        let state = d.u8()?;
        d.finish()?;
        let state = ClusterState::from_u8(state).ok_or_else(|| d.malformed(format!("unknown state {state}")))?;
        crate::wal::segment::check_segment_size(segment_size)?;
        Ok(ControlFile { system_id, segment_size, timeline, checkpoint, state })
    }

    /// Replaces the control file atomically and durably.
    pub fn write(&self, dir: &Path) -> Result<()> {
        write_atomically(dir, CONTROL_FILE, &self.encode())
    }
}

/// Writes a file atomically: temporary file, fsync, rename, fsync the directory.
pub fn write_atomically(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    let path = dir.join(name);
    let io = |what: &str, e| Error::io(format!("could not {what} \"{}\"", tmp.display()), e);
    let mut f = fs::File::create(&tmp).map_err(|e| io("create", e))?;
    f.write_all(bytes).map_err(|e| io("write", e))?;
    failpoint::check("control_fsync")?;
    f.sync_all().map_err(|e| io("fsync", e))?;
    drop(f);
    failpoint::check("control_rename")?;
    fs::rename(&tmp, &path).map_err(|e| io("rename", e))?;
    sync_dir(dir)
}

/// A new system identifier: the time of init in seconds and microseconds, and the pid, as PostgreSQL does.
pub fn new_system_id() -> u64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    (now.as_secs() << 32) | ((now.subsec_micros() as u64) << 12) | (std::process::id() as u64 & 0xFFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_checks() {
        let dir = std::env::temp_dir().join(format!("tandem-control-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let c = ControlFile {
            system_id: 42,
            segment_size: 16 << 20,
            timeline: 3,
            checkpoint: Lsn(0x1000028),
            state: ClusterState::InProduction,
        };
        c.write(&dir).unwrap();
        assert_eq!(ControlFile::read(&dir).unwrap(), c);
        let mut bytes = fs::read(dir.join(CONTROL_FILE)).unwrap();
        bytes[20] ^= 1;
        fs::write(dir.join(CONTROL_FILE), &bytes).unwrap();
        assert!(ControlFile::read(&dir).unwrap_err().message.contains("checksum"));
        bytes[8] = 9;
        fs::write(dir.join(CONTROL_FILE), &bytes).unwrap();
        assert!(ControlFile::read(&dir).unwrap_err().message.contains("format version 9"));
        fs::remove_dir_all(&dir).unwrap();
    }
}
