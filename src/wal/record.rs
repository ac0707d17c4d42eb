//! WAL records: the framing every record has, and how it is checked.
//!
//! ```text
//!  0      4      8             16            24            32            40   41
//!  +------+------+-------------+-------------+-------------+-------------+----+------------+
//!  | crc  | len  | lsn         | prev        | xid         | time        |kind| payload... |
//!  +------+------+-------------+-------------+-------------+-------------+----+------------+
//! ```
//!
//! - `crc` is CRC32C of every byte after it (length included, so a torn length cannot pass).
//! - `len` is the whole record's length, header included.
//! - `lsn` is the record's own position. Recycled segment files still hold records from their previous
//!   life; those carry another position and so can never be mistaken for records here, and a scan for
//!   valid records past a bad one (which tells corruption from a torn tail) can trust what it finds.
//! - `prev` is the position of the record before, a chain recovery follows.
//! - `xid` is the transaction id (0 for records of no transaction), `time` microseconds since
//!   2000-01-01 UTC, as PostgreSQL timestamps count.
//!
//! Records are packed back to back and span segment boundaries freely: a segment is just a window onto
//! the byte stream, so a position is the same on every server that holds the same WAL.

use crate::encoding::{Decoder, Encoder};
use crate::error::{Error, Result};
use crate::storage::state::Op;
use crate::wal::lsn::Lsn;

/// The size of a record header.
pub const HEADER_LEN: usize = 41;

/// The largest record tandem writes or accepts: 1 GiB.
pub const MAX_RECORD_LEN: usize = 1 << 30;

/// What a record is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum RecordKind {
    /// A committed transaction's whole redo.
    Commit = 1,
    /// A checkpoint: the state as of this record's position is in a snapshot file.
    Checkpoint = 2,
    /// The first record of a new timeline, written at a promotion.
    TimelineSwitch = 3,
}

impl RecordKind {
    fn from_u8(b: u8) -> Option<RecordKind> {
        match b {
            1 => Some(RecordKind::Commit),
            2 => Some(RecordKind::Checkpoint),
            3 => Some(RecordKind::TimelineSwitch),
            _ => None,
        }
    }
}

/// A record read back from the WAL.
#[derive(Clone, Debug)]
pub struct Record {
    pub lsn: Lsn,
    pub prev: Lsn,
    pub xid: u64,
    pub time: i64,
    pub kind: RecordKind,
    pub payload: Vec<u8>,
}

impl Record {
    /// The position just past this record.
    pub fn end(&self) -> Lsn {
        self.lsn.plus((HEADER_LEN + self.payload.len()) as u64)
    }
}

/// The header fields a writer chooses for a record.
pub struct Framing {
    pub lsn: Lsn,
    pub prev: Lsn,
    pub xid: u64,
    pub time: i64,
    pub kind: RecordKind,
}

/// Builds a record's bytes. The payload's CRC is computed by the caller ahead of time (outside the WAL
/// lock) and combined with the header's here.
pub fn frame(out: &mut Vec<u8>, f: Framing, payload: &[u8], payload_crc: u32) {
    let Framing { lsn, prev, xid, time, kind } = f;
    let len = (HEADER_LEN + payload.len()) as u32;
    let mut header = [0u8; HEADER_LEN];
    header[4..8].copy_from_slice(&len.to_le_bytes());
    header[8..16].copy_from_slice(&lsn.0.to_le_bytes());
    header[16..24].copy_from_slice(&prev.0.to_le_bytes());
    header[24..32].copy_from_slice(&xid.to_le_bytes());
    header[32..40].copy_from_slice(&time.to_le_bytes());
    header[40] = kind as u8;
    // Combining CRCs costs a few microseconds whatever the length; for small payloads, running the
    // (hardware) CRC over the payload again is cheaper.
    let crc = if payload.len() < 64 << 10 {
        crc32c::crc32c_append(crc32c::crc32c(&header[4..]), payload)
    } else {
        crc32c::crc32c_combine(crc32c::crc32c(&header[4..]), payload_crc, payload.len())
    };
    header[0..4].copy_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&header);
    out.extend_from_slice(payload);
}

/// The parts of a header, before the payload is checked.
pub struct Header {
    pub crc: u32,
    pub len: usize,
    pub lsn: Lsn,
    pub prev: Lsn,
    pub xid: u64,
    pub time: i64,
    pub kind: u8,
}

impl Header {
    /// Reads a header from the first [`HEADER_LEN`] bytes.
    pub fn parse(b: &[u8]) -> Header {
        let u64_at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        Header {
            crc: u32::from_le_bytes(b[0..4].try_into().expect("4 bytes")),
            len: u32::from_le_bytes(b[4..8].try_into().expect("4 bytes")) as usize,
            lsn: Lsn(u64_at(8)),
            prev: Lsn(u64_at(16)),
            xid: u64_at(24),
            time: u64_at(32) as i64,
            kind: b[40],
        }
    }

    /// Whether the header is plausible for a record at `at`: its own position, a sane length, a known kind.
    pub fn plausible_at(&self, at: Lsn) -> bool {
        self.lsn == at
            && self.len >= HEADER_LEN
            && self.len <= MAX_RECORD_LEN
            && RecordKind::from_u8(self.kind).is_some()
    }

    /// Checks the CRC over the record's bytes (header included) and builds the record.
    pub fn verify(&self, bytes: &[u8]) -> Option<Record> {
        if bytes.len() != self.len || crc32c::crc32c(&bytes[4..]) != self.crc {
            return None;
        }
        Some(Record {
            lsn: self.lsn,
            prev: self.prev,
            xid: self.xid,
            time: self.time,
            kind: RecordKind::from_u8(self.kind)?,
            payload: bytes[HEADER_LEN..].to_vec(),
        })
    }
}

/// Encodes a commit record's payload: the transaction's redo operations.
pub fn encode_commit(ops: &[Op]) -> Vec<u8> {
    let mut e = Encoder::default();
    e.var(ops.len() as u64);
    for op in ops {
        op.encode(&mut e);
    }
    e.buf
}

/// Decodes a commit record's payload.
pub fn decode_commit(payload: &[u8]) -> Result<Vec<Op>> {
    let mut d = Decoder::new(payload, "commit record");
    let n = d.count()?;
    let mut ops = Vec::with_capacity(n);
    for _ in 0..n {
        ops.push(Op::decode(&mut d)?);
    }
    d.finish()?;
    Ok(ops)
}

/// A checkpoint record's payload: which system and timeline wrote it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckpointInfo {
    pub system_id: u64,
    pub timeline: u32,
}

impl CheckpointInfo {
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Encoder::default();
        e.u64(self.system_id);
        e.u32(self.timeline);
        e.buf
    }

    pub fn decode(payload: &[u8]) -> Result<CheckpointInfo> {
        let mut d = Decoder::new(payload, "checkpoint record");
        let info = CheckpointInfo { system_id: d.u64()?, timeline: d.u32()? };
        d.finish()?;
        Ok(info)
    }
}

/// Microseconds since 2000-01-01 00:00:00 UTC, PostgreSQL's epoch.
pub fn now_micros() -> i64 {
    const PG_EPOCH_UNIX_SECS: i64 = 946_684_800;
    let since_unix = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    since_unix.as_micros() as i64 - PG_EPOCH_UNIX_SECS * 1_000_000
}

/// An error for a record that decoded badly although its CRC was right: a bug or a foreign WAL.
pub fn bad_payload(rec: &Record, err: Error) -> Error {
    Error::corrupted(format!("WAL record at {} ({:?}) does not decode: {}", rec.lsn, rec.kind, err.message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_and_verify() {
        let payload = b"hello world".to_vec();
        let mut out = Vec::new();
        let at = Lsn(0x1000028);
        let f = Framing { lsn: at, prev: Lsn(0x1000000), xid: 7, time: 99, kind: RecordKind::Commit };
        frame(&mut out, f, &payload, crc32c::crc32c(&payload));
        let h = Header::parse(&out);
        assert!(h.plausible_at(at));
        assert!(!h.plausible_at(Lsn(0x1000029)));
        let rec = h.verify(&out).unwrap();
        assert_eq!(rec.payload, payload);
        assert_eq!(rec.end(), at.plus(out.len() as u64));
        for i in 0..out.len() {
            let mut bad = out.clone();
            bad[i] ^= 0x40;
            let h = Header::parse(&bad);
            assert!(!h.plausible_at(at) || h.verify(&bad).is_none(), "flip at byte {i} passed");
        }
    }
}
