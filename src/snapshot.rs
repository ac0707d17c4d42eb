//! Checkpoint snapshots: the whole database state at one WAL position, in one file.
//!
//! A snapshot is written from a [`DbState`] clone in the background while commits go on (the clone never
//! changes). The file is `snapshots/<position>.snap`:
//!
//! ```text
//! "TNDMSNAP" | format version | system id | position | next oid | table count
//! per table: definition | row count | (key, row)...
//! CRC32C of everything before it
//! ```
//!
//! It is written to a temporary name, fsynced, renamed and the directory fsynced; only then does the
//! control file point at it. Loading checks the trailer CRC before decoding anything.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use imbl::OrdMap;

use crate::control::FORMAT_VERSION;
use crate::encoding::{Decoder, Encoder};
use crate::error::{Error, Result};
use crate::failpoint;
use crate::storage::catalog::{SequenceDef, TableDef};
use crate::storage::state::{DbState, SequenceValue, TableData};
use crate::storage::value::{decode_values, decode_values_like, encode_values, Row};
use crate::wal::segment::sync_dir;
use crate::wal::Lsn;

const MAGIC: &[u8; 8] = b"TNDMSNAP";

/// The folder of snapshots inside a data directory.
pub const SNAPSHOT_DIR: &str = "snapshots";

/// The file name of the snapshot for a checkpoint at `lsn`.
pub fn file_name(lsn: Lsn) -> String {
    format!("{:016X}.snap", lsn.0)
}

/// The path of the snapshot for a checkpoint at `lsn`.
pub fn path(data_dir: &Path, lsn: Lsn) -> PathBuf {
    data_dir.join(SNAPSHOT_DIR).join(file_name(lsn))
}

struct CrcWriter<W: Write> {
    inner: W,
    crc: u32,
}

impl<W: Write> Write for CrcWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.crc = crc32c::crc32c_append(self.crc, &buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Writes the snapshot of `state` at `lsn` durably into `data_dir/snapshots/`. Returns its size in bytes.
pub fn write(data_dir: &Path, system_id: u64, lsn: Lsn, state: &DbState) -> Result<u64> {
    let dir = data_dir.join(SNAPSHOT_DIR);
    let final_path = dir.join(file_name(lsn));
    let tmp = dir.join(format!("{}.tmp", file_name(lsn)));
    let io = |e| Error::io(format!("could not write snapshot \"{}\"", tmp.display()), e);
    let file = File::create(&tmp).map_err(io)?;
    let mut w = CrcWriter { inner: BufWriter::with_capacity(1 << 20, file), crc: 0 };
    let mut e = Encoder::default();
    e.buf.extend_from_slice(MAGIC);
    e.u32(FORMAT_VERSION);
    e.u64(system_id);
    e.u64(lsn.0);
    e.u32(state.next_oid);
    e.var(state.tables.len() as u64);
    let mut total = 0u64;
    for table in state.tables.values() {
        table.def.encode(&mut e);
        e.var(table.rows.len() as u64);
        for (k, r) in table.rows.iter() {
            encode_values(&mut e, k);
            encode_values(&mut e, r);
            if e.buf.len() >= 1 << 20 {
                w.write_all(&e.buf).map_err(io)?;
                total += e.buf.len() as u64;
                e.buf.clear();
            }
        }
    }
    e.var(state.sequences.len() as u64);
    for def in state.sequences.values() {
        def.encode(&mut e);
        let v = state.sequence_values.get(&def.id).copied().unwrap_or(SequenceValue { last: def.start, called: false });
        e.svar(v.last);
        e.bool(v.called);
    }
    w.write_all(&e.buf).map_err(io)?;
    total += e.buf.len() as u64;
    let crc = w.crc;
    let mut file = w.inner.into_inner().map_err(|e| io(e.into_error()))?;
    file.write_all(&crc.to_le_bytes()).map_err(io)?;
    failpoint::check("snapshot_fsync")?;
    file.sync_all().map_err(io)?;
    drop(file);
    fs::rename(&tmp, &final_path).map_err(io)?;
    sync_dir(&dir)?;
    Ok(total + 4)
}

/// Loads the snapshot at `lsn`, checking that it belongs to this system and position.
pub fn read(data_dir: &Path, system_id: u64, lsn: Lsn) -> Result<DbState> {
    let path = path(data_dir, lsn);
    let bytes = fs::read(&path).map_err(|e| Error::io(format!("could not read snapshot \"{}\"", path.display()), e))?;
    if bytes.len() < 36 || &bytes[..8] != MAGIC {
        return Err(Error::corrupted(format!("\"{}\" is not a tandem snapshot", path.display())));
    }
    let (body, crc) = bytes.split_at(bytes.len() - 4);
    if crc32c::crc32c(body) != u32::from_le_bytes(crc.try_into().expect("4 bytes")) {
        return Err(Error::corrupted(format!("incorrect checksum in snapshot \"{}\"", path.display())));
    }
    let mut d = Decoder::new(&body[8..], "snapshot");
    let version = d.u32()?;
    if version != FORMAT_VERSION {
        return Err(Error::corrupted(format!(
            "snapshot \"{}\" has format version {version}, this tandem reads {FORMAT_VERSION}",
            path.display()
        )));
    }
    let sysid = d.u64()?;
    if sysid != system_id {
        return Err(Error::corrupted(format!(
            "snapshot \"{}\" belongs to database system {sysid}, but the control file is of system {system_id}",
            path.display()
        )));
    }
    let at = Lsn(d.u64()?);
    if at != lsn {
        return Err(Error::corrupted(format!("snapshot \"{}\" is of position {at}, expected {lsn}", path.display())));
    }
    let mut state = DbState::new();
    state.next_oid = d.u32()?;
    let ntables = d.count()?;
    for _ in 0..ntables {
        let def = Arc::new(TableDef::decode(&mut d)?);
        let nrows = d.var()?;
        let mut rows = Vec::with_capacity(nrows.min(d.remaining() as u64) as usize);
        let mut prev: Option<Row> = None;
        for _ in 0..nrows {
            let key = decode_values(&mut d)?;
            let row = decode_values_like(&mut d, prev.as_deref())?;
            prev = Some(row.clone());
            if row.len() != def.columns.len() {
                return Err(d.malformed(format!("row of {} values in table {}", row.len(), def.name)));
            }
            rows.push((key, row));
        }
        let data = if def.indexes.is_empty() {
            TableData { def: def.clone(), rows: OrdMap::from_iter(rows), indexes: OrdMap::new() }
        } else {
            crate::storage::state::rebuild_table(def.clone(), rows)
        };
        state.names.insert(Arc::from(def.name.as_str()), def.id);
        state.tables.insert(def.id, data);
    }
    let nseq = d.count()?;
    for _ in 0..nseq {
        let def = Arc::new(SequenceDef::decode(&mut d)?);
        let value = SequenceValue { last: d.svar()?, called: d.bool()? };
        state.names.insert(Arc::from(def.name.as_str()), def.id);
        state.sequence_values.insert(def.id, value);
        state.sequences.insert(def.id, def);
    }
    d.finish()?;
    Ok(state)
}

/// Removes every snapshot except the one at `keep`, and leftover temporary files.
pub fn remove_others(data_dir: &Path, keep: Lsn) -> Result<()> {
    let dir = data_dir.join(SNAPSHOT_DIR);
    let keep = file_name(keep);
    for entry in fs::read_dir(&dir).map_err(|e| Error::io(format!("could not read \"{}\"", dir.display()), e))? {
        let entry = entry.map_err(|e| Error::io(format!("could not read \"{}\"", dir.display()), e))?;
        if entry.file_name().to_str() != Some(keep.as_str()) {
            let _ = fs::remove_file(entry.path());
        }
    }
    Ok(())
}
