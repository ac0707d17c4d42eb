//! Checkpoint snapshots: the whole database state at one WAL position, in one file.
//!
//! A snapshot is written from a [`DbState`] clone in the background while commits go on (the clone never
//! changes). The file is `snapshots/<position>.snap`:
//!
//! ```text
//! "TNDMSNAP" | snapshot format | system id | position | next oid | table count
//! per table: definition | row count | keys stored? | chunk count | chunks
//!   chunk: byte length (u32) | row count | rows
//!   row:   [key values, only if keys are stored] | "same as the row before" bits | the other values
//! sequences
//! CRC32C of everything before it
//! ```
//!
//! It is written to a temporary name, fsynced, renamed and the directory fsynced; only then does the
//! control file point at it. Loading checks the trailer CRC before decoding anything.
//!
//! The format is shaped by what a snapshot is for: a standby is created by copying one, and a server
//! starts by loading one, so its size and its decoding speed are most of the time that takes.
//!
//! - A row stores only the values that differ from the row before it in the same chunk (one bit per column
//!   says which), and an integer that differs is stored as the difference. A pgbench_accounts row (aid,
//!   bid, abalance, an 84-byte filler) takes 3 bytes instead of about 100, and equal values decode to one
//!   shared value (a text repeated down a column is stored once in memory).
//! - The key of a table with a primary key is not stored: it is the row's primary-key values. (The writer
//!   checks that; a table where it would not hold stores its keys.)
//! - Rows come in chunks of at most [`CHUNK_ROWS`], in key order, that decode independently: loading
//!   decodes chunks on every core and packs each straight into leaves of the table's tree, which is then
//!   built bottom-up without inserting a row (see `storage/tree.rs`).

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};

use crate::encoding::{Decoder, Encoder};
use crate::error::{Error, Result};
use crate::failpoint;
use crate::storage::catalog::{SequenceDef, TableDef};
use crate::storage::state::{DbState, SequenceValue, TableData};
use crate::storage::tree::{Leaves, Tree};
use crate::storage::value::{decode_values, encode_values, Key, Row, Value};
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

/// The snapshot file format this tandem writes and reads.
pub const SNAPSHOT_FORMAT: u32 = 2;

/// The most rows in one chunk.
pub const CHUNK_ROWS: usize = 16384;

/// Value tag (beyond [`Value`]'s own) for an integer stored as the difference from the row before.
const INT_DELTA: u8 = 0xF0;

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
    e.u32(SNAPSHOT_FORMAT);
    e.u64(system_id);
    e.u64(lsn.0);
    e.u32(state.next_oid);
    e.var(state.tables.len() as u64);
    let mut total = 0u64;
    let mut chunk = Encoder::default();
    for table in state.tables.values() {
        let def = &table.def;
        def.encode(&mut e);
        e.var(table.rows.len() as u64);
        let store_keys = match &def.primary_key {
            None => true,
            Some(pk) => !table.rows.iter().all(|(k, r)| {
                k.len() == pk.columns.len()
                    && pk.columns.iter().zip(k.iter()).all(|(&c, v)| r.get(c).is_some_and(|x| same(x, v)))
            }),
        };
        e.bool(store_keys);
        let chunks = table.rows.len().div_ceil(CHUNK_ROWS);
        e.var(chunks as u64);
        let mut rows = table.rows.iter();
        for c in 0..chunks {
            let n = CHUNK_ROWS.min(table.rows.len() - c * CHUNK_ROWS);
            chunk.buf.clear();
            chunk.var(n as u64);
            let mut prev: Option<&Row> = None;
            for (k, r) in rows.by_ref().take(n) {
                if store_keys {
                    encode_values(&mut chunk, k);
                }
                encode_row(&mut chunk, r, prev.map(|p| &p[..]));
                prev = Some(r);
            }
            e.u32(chunk.buf.len() as u32);
            e.buf.extend_from_slice(&chunk.buf);
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

/// A row as its differences from `prev`: a bit per column for "same value", then each other value.
fn encode_row(e: &mut Encoder, row: &[Value], prev: Option<&[Value]>) {
    e.var(row.len() as u64);
    let prev = prev.filter(|p| p.len() == row.len());
    let mut bits = 0u8;
    for (i, v) in row.iter().enumerate() {
        if prev.is_some_and(|p| same(&p[i], v)) {
            bits |= 1 << (i % 8);
        }
        if i % 8 == 7 || i + 1 == row.len() {
            e.u8(bits);
            bits = 0;
        }
    }
    for (i, v) in row.iter().enumerate() {
        match (prev.map(|p| &p[i]), v) {
            (Some(p), v) if same(p, v) => {}
            (Some(Value::Int(p)), Value::Int(v)) => {
                e.u8(INT_DELTA);
                e.svar(v.wrapping_sub(*p));
            }
            _ => v.encode(e),
        }
    }
}

/// Identical values, not merely equal ones: `1.0` and `1.00` compare equal as numerics but print differently.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Null, Value::Null) => true,
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::Int(x), Value::Int(y)) => x == y,
        (Value::Float(x), Value::Float(y)) => x.to_bits() == y.to_bits(),
        (Value::Numeric(x), Value::Numeric(y)) => {
            let (x, y) = (x.get(), y.get());
            let (xm, xs, ym, ys) = (x.mantissa, x.scale, y.mantissa, y.scale);
            xm == ym && xs == ys
        }
        (Value::Text(x), Value::Text(y)) => x == y,
        (Value::Bytes(x), Value::Bytes(y)) => x == y,
        (Value::Date(x), Value::Date(y)) => x == y,
        (Value::Timestamp(x), Value::Timestamp(y)) => x == y,
        (Value::TimestampTz(x), Value::TimestampTz(y)) => x == y,
        // Field by field: `1 mon` and `30 days` compare equal but are different values.
        (Value::Interval(x), Value::Interval(y)) => x == y,
        _ => false,
    }
}

/// Decodes the chunk of a table at `range` (byte offsets) of `body` into `out` (emptied first, reused).
fn decode_chunk(
    body: &[u8],
    range: (usize, usize),
    def: &TableDef,
    store_keys: bool,
    mut out: Vec<(Key, Row)>,
) -> Result<Vec<(Key, Row)>> {
    let mut d = Decoder::at(&body[..range.1], range.0, "snapshot");
    let n = d.var()?;
    if n > CHUNK_ROWS as u64 {
        return Err(d.malformed(format!("a chunk of {n} rows")));
    }
    out.clear();
    out.reserve(n as usize);
    let ncols = def.columns.len();
    let mut cur: Vec<Value> = Vec::with_capacity(ncols);
    for _ in 0..n {
        let key = if store_keys { Some(decode_values(&mut d)?) } else { None };
        let len = d.var()?;
        if len != ncols as u64 {
            return Err(d.malformed(format!("row of {len} values in table {}", def.name)));
        }
        let first = cur.is_empty();
        let bits = d.take(ncols.div_ceil(8))?;
        for i in 0..ncols {
            if bits[i / 8] & (1 << (i % 8)) != 0 {
                if first {
                    return Err(d.malformed("the first row of a chunk refers to a row before it"));
                }
                continue;
            }
            let v = if d.remaining() > 0 && body[d.position()] == INT_DELTA {
                d.u8()?;
                let delta = d.svar()?;
                match cur.get(i) {
                    Some(Value::Int(p)) if !first => Value::Int(p.wrapping_add(delta)),
                    _ => return Err(d.malformed("an integer difference without an integer before it")),
                }
            } else {
                Value::decode(&mut d)?
            };
            if first {
                cur.push(v);
            } else {
                cur[i] = v;
            }
        }
        let row: Row = Row::from(&cur[..]);
        let key: Key = match key {
            Some(k) => k.into(),
            None => match &def.primary_key {
                Some(pk) => match pk.columns[..] {
                    [c] => Key::One(cur[c].clone()),
                    _ => pk.columns.iter().map(|&c| cur[c].clone()).collect(),
                },
                None => return Err(d.malformed(format!("table {} has neither keys nor a primary key", def.name))),
            },
        };
        out.push((key, row));
    }
    if d.position() != range.1 {
        return Err(d.malformed(format!("chunk ends at byte {}, not at {}", d.position(), range.1)));
    }
    Ok(out)
}

/// Loads the snapshot at `lsn`, checking that it belongs to this system and position.
pub fn read(data_dir: &Path, system_id: u64, lsn: Lsn) -> Result<DbState> {
    open(data_dir, system_id, lsn)?.decode()
}

/// A snapshot file read into memory whose checksum, format, system and position were checked, not yet
/// decoded. A standby checks its snapshot this way before it starts, then decodes it in the background.
pub struct Checked {
    bytes: Vec<u8>,
}

/// Reads the snapshot at `lsn` and checks everything but its contents: the cheap part of [`read`].
pub fn open(data_dir: &Path, system_id: u64, lsn: Lsn) -> Result<Checked> {
    let path = path(data_dir, lsn);
    let bytes = fs::read(&path).map_err(|e| Error::io(format!("could not read snapshot \"{}\"", path.display()), e))?;
    if bytes.len() < 36 || &bytes[..8] != MAGIC {
        return Err(Error::corrupted(format!("\"{}\" is not a tandem snapshot", path.display())));
    }
    let (body, crc) = bytes.split_at(bytes.len() - 4);
    if crc32c::crc32c(body) != u32::from_le_bytes(crc.try_into().expect("4 bytes")) {
        return Err(Error::corrupted(format!("incorrect checksum in snapshot \"{}\"", path.display())));
    }
    let mut d = Decoder::at(body, 8, "snapshot");
    let version = d.u32()?;
    if version != SNAPSHOT_FORMAT {
        return Err(Error::corrupted(format!(
            "snapshot \"{}\" has format version {version}, this tandem reads {SNAPSHOT_FORMAT}",
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
    Ok(Checked { bytes })
}

/// Where the contents start: after the magic, format, system id and position.
const HEADER: usize = 8 + 4 + 8 + 8;

impl Checked {
    /// Decodes the whole state.
    pub fn decode(self) -> Result<DbState> {
        failpoint::check("snapshot_decode")?;
        let body = &self.bytes[..self.bytes.len() - 4];
        let mut d = Decoder::at(body, HEADER, "snapshot");
        let mut state = DbState::new();
        state.next_oid = d.u32()?;
        let ntables = d.count()?;
        for _ in 0..ntables {
            let def = Arc::new(TableDef::decode(&mut d)?);
            let ncols = def.columns.len();
            let positions =
                def.primary_key.iter().flat_map(|pk| &pk.columns).chain(def.indexes.iter().flat_map(|i| &i.columns));
            if let Some(bad) = positions.copied().find(|&c| c >= ncols) {
                return Err(d.malformed(format!("table {} indexes column {bad} of {ncols}", def.name)));
            }
            let nrows = d.var()?;
            let store_keys = d.bool()?;
            let nchunks = d.count()?;
            let mut chunks = Vec::with_capacity(nchunks);
            for _ in 0..nchunks {
                let len = d.u32()? as usize;
                let start = d.position();
                d.take(len)?;
                chunks.push((start, start + len));
            }
            let data = load_table(body, def.clone(), store_keys, &chunks)?;
            if data.rows.len() as u64 != nrows {
                return Err(d.malformed(format!(
                    "table {} has {} distinct rows, its header says {nrows}",
                    def.name,
                    data.rows.len()
                )));
            }
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
        // The catalog was filled in place rather than by `apply`.
        state.catalog_changed();
        Ok(state)
    }
}

/// Builds one table from its chunks. A chunk's rows are sorted by key, so they need no inserting: decoders
/// on every core each take the next chunk, decode it and pack its rows into full leaves of the table's
/// tree ([`Leaves`]); this thread puts the chunks back in order and stacks the tree's branches on them.
/// Rows out of key order (within or across chunks) are a corrupt snapshot, not a tree to build.
fn load_table(body: &[u8], def: Arc<TableDef>, store_keys: bool, chunks: &[(usize, usize)]) -> Result<TableData> {
    let out_of_order = |at: usize| {
        Error::corrupted(format!("malformed snapshot: rows of table {} out of key order at row {at}", def.name))
    };
    // A chunk's leaves, and the decode buffer back for the next chunk.
    type Packed = (Leaves<Key, Row>, Vec<(Key, Row)>);
    let pack = |i: usize, buf: Vec<(Key, Row)>| -> Result<Packed> {
        let mut rows = decode_chunk(body, chunks[i], &def, store_keys, buf)?;
        let leaves = Leaves::pack(rows.drain(..)).map_err(|e| out_of_order(i * CHUNK_ROWS + e.at))?;
        Ok((leaves, rows))
    };
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 4).min(chunks.len());
    let mut packed: Vec<Option<Leaves<Key, Row>>> = Vec::with_capacity(chunks.len());
    if workers <= 1 {
        let mut buf = Vec::new();
        for i in 0..chunks.len() {
            let (leaves, emptied) = pack(i, buf)?;
            packed.push(Some(leaves));
            buf = emptied;
        }
    } else {
        packed.resize_with(chunks.len(), || None);
        let next = AtomicUsize::new(0);
        let failed = AtomicBool::new(false);
        std::thread::scope(|scope| {
            let (tx, rx) = mpsc::sync_channel::<(usize, Result<Leaves<Key, Row>>)>(workers * 4);
            for _ in 0..workers {
                let tx = tx.clone();
                let (next, failed, pack) = (&next, &failed, &pack);
                scope.spawn(move || {
                    // One decode buffer per decoder, reused: a fresh 16384-row buffer for every chunk would be a
                    // fresh mapping of memory, page faults and all.
                    let mut buf = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= chunks.len() || failed.load(Ordering::Relaxed) {
                            return;
                        }
                        let result = match pack(i, std::mem::take(&mut buf)) {
                            Ok((leaves, emptied)) => {
                                buf = emptied;
                                Ok(leaves)
                            }
                            Err(e) => Err(e),
                        };
                        if tx.send((i, result)).is_err() {
                            return;
                        }
                    }
                });
            }
            drop(tx);
            for (i, result) in rx {
                match result {
                    Ok(leaves) => packed[i] = Some(leaves),
                    Err(e) => {
                        failed.store(true, Ordering::Relaxed);
                        return Err(e);
                    }
                }
            }
            Ok(())
        })?;
    }
    let rows = Tree::from_leaves(packed.into_iter().flatten()).map_err(|e| out_of_order(e.at))?;
    Ok(TableData::with_rows(def.clone(), rows))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::catalog::{ColumnDef, IndexDef, PrimaryKey};
    use crate::storage::state::Op;
    use crate::storage::value::{DataType, Decimal};

    fn column(name: &str, ty: DataType) -> ColumnDef {
        ColumnDef { name: name.into(), ty, not_null: false, default: None }
    }

    /// Two tables: one keyed by a primary key over more rows than a chunk holds (so loading runs in
    /// parallel), with values that must come back identical (1.0 and 1.00, integer differences that
    /// overflow, texts that repeat and change, NULLs); one without a primary key and with an index.
    fn sample(rows: i64) -> DbState {
        let mut state = DbState::new();
        let t1 = TableDef {
            id: 20000,
            name: "t1".into(),
            columns: vec![
                column("k", DataType::Int8),
                column("n", DataType::Numeric(None)),
                column("s", DataType::Text),
                column("f", DataType::Float8),
                column("i", DataType::Int8),
            ],
            primary_key: Some(PrimaryKey { name: "t1_pkey".into(), index_id: 20001, columns: vec![0] }),
            indexes: vec![],
        };
        let t2 = TableDef {
            id: 20002,
            name: "t2".into(),
            columns: vec![column("a", DataType::Int4), column("b", DataType::Text)],
            primary_key: None,
            indexes: vec![IndexDef {
                id: 20003,
                name: "t2_b".into(),
                columns: vec![1],
                unique: false,
                constraint: false,
            }],
        };
        state.apply(&Op::CreateTable(Arc::new(t1))).unwrap();
        state.apply(&Op::CreateTable(Arc::new(t2))).unwrap();
        for k in 0..rows {
            let n = Decimal { mantissa: if k % 3 == 0 { 10 } else { 100 }, scale: if k % 3 == 0 { 1 } else { 2 } };
            let s = if k % 7 == 0 { Value::Null } else { Value::text(&format!("text {}", k / 5)) };
            let i = match k % 4 {
                0 => Value::Int(i64::MIN),
                1 => Value::Int(i64::MAX),
                2 => Value::Null,
                _ => Value::Int(k),
            };
            let row: Row = vec![Value::Int(k), Value::numeric(n), s, Value::Float(k as f64 / 3.0), i].into();
            state.apply(&Op::Put { table: 20000, key: vec![Value::Int(k)].into(), row }).unwrap();
        }
        for r in 0..100i64 {
            let row: Row = vec![Value::Int(r % 3), Value::text(if r % 2 == 0 { "even" } else { "odd" })].into();
            state.apply(&Op::Put { table: 20002, key: vec![Value::Int(r * 10)].into(), row }).unwrap();
        }
        state
    }

    fn dump(state: &DbState) -> String {
        state.tables.values().map(|t| format!("{:?}\n{:?}\n{:?}\n", t.def, t.rows, t.indexes)).collect()
    }

    #[test]
    fn round_trip_keeps_every_value_identical() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join(SNAPSHOT_DIR)).unwrap();
        let state = sample(3 * CHUNK_ROWS as i64 + 17);
        write(dir.path(), 7, Lsn(0x1000), &state).unwrap();
        let loaded = read(dir.path(), 7, Lsn(0x1000)).unwrap();
        assert_eq!(dump(&loaded), dump(&state));
        assert_eq!(loaded.next_oid, state.next_oid);
    }

    #[test]
    fn damaged_bytes_give_errors_not_panics() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join(SNAPSHOT_DIR)).unwrap();
        write(dir.path(), 7, Lsn(0x1000), &sample(300)).unwrap();
        let file = path(dir.path(), Lsn(0x1000));
        let good = fs::read(&file).unwrap();
        let body_len = good.len() - 4;
        let mut errors = 0;
        for at in (8..body_len).step_by(7) {
            let mut bad = good.clone();
            bad[at] ^= 0x5A;
            let crc = crc32c::crc32c(&bad[..body_len]);
            bad[body_len..].copy_from_slice(&crc.to_le_bytes());
            fs::write(&file, &bad).unwrap();
            errors += read(dir.path(), 7, Lsn(0x1000)).is_err() as usize;
        }
        assert!(errors > 0);
    }
}
