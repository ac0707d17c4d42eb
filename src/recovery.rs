//! The redo loop: how a state is rebuilt from a snapshot and the WAL after it.
//!
//! Crash recovery runs it to the end of the log and stops there ([`Replay::to_end`]). A standby's startup
//! process runs the very same loop without end ([`Replay::follow`]): it applies every complete record
//! below the position its WAL receiver has flushed, then sleeps until more arrives. Promotion is the
//! moment the loop is told to stop. One loop for all three means a standby's state at position L is built
//! by exactly the code that rebuilds the primary's own state at L after a crash.

use std::path::Path;

use crate::control::ControlFile;
use crate::engine::WAL_DIR;
use crate::error::{Error, Result};
use crate::snapshot;
use crate::storage::state::{DbState, Op};
use crate::wal::reader::{Timelines, WalReader};
use crate::wal::record::{bad_payload, decode_commit, CheckpointInfo, Record, RecordKind};
use crate::wal::Lsn;

/// A record with its decoded operations (none for records that change no state).
type Decoded = (Record, Vec<crate::storage::state::Op>);

fn decode(mut rec: Record) -> Result<Decoded> {
    if rec.kind != RecordKind::Commit {
        return Ok((rec, Vec::new()));
    }
    let ops = decode_commit(&rec.payload).map_err(|e| bad_payload(&rec, e))?;
    rec.payload = Vec::new();
    Ok((rec, ops))
}

/// A state being rebuilt from the WAL.
pub struct Replay {
    state: DbState,
    reader: WalReader,
    /// The commit time of the last transaction applied (for pg_last_xact_replay_timestamp).
    last_commit_time: Option<i64>,
    /// The last checkpoint record passed, with the state at it: where a standby can take a restartpoint.
    checkpoint: Option<(Lsn, DbState)>,
    /// Whether a replayed commit altered a table ([`Op::Alter`]).
    altered: bool,
}

/// A reader at the checkpoint the control file names, past its checkpoint record (checked to be one, of
/// this system).
fn open_reader(dir: &Path, control: &ControlFile) -> Result<WalReader> {
    let mut reader = WalReader::new(
        &dir.join(WAL_DIR),
        control.segment_size,
        crate::wal::timeline::timelines(&dir.join(WAL_DIR), control.timeline)?,
        control.checkpoint,
        Lsn::INVALID,
    );
    let first = reader.next_record()?;
    let Some(first) = first.filter(|r| r.kind == RecordKind::Checkpoint) else {
        let path = reader.segment_path(control.checkpoint);
        return Err(Error::corrupted(format!(
            "could not locate a valid checkpoint record at {} (segment file \"{}\", offset {})",
            control.checkpoint,
            path.display(),
            control.checkpoint.segment_offset(control.segment_size)
        ))
        .with_detail("The control file points at a WAL position that holds no checkpoint record of this system."));
    };
    let info = CheckpointInfo::decode(&first.payload)?;
    if info.system_id != control.system_id {
        return Err(Error::corrupted(format!(
            "WAL file is from a different database system: WAL file database system identifier is {}, control file database system identifier is {}",
            info.system_id, control.system_id
        )));
    }
    Ok(reader)
}

/// At the end of the readable WAL: fine if nothing valid follows, corruption if a valid record does.
fn check_tail(reader: &mut WalReader) -> Result<()> {
    let end = reader.position();
    let Some(valid) = reader.find_valid_after(end)? else { return Ok(()) };
    let path = reader.segment_path(end);
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("?").to_string();
    Err(Error::corrupted(format!(
        "WAL is corrupt: invalid record at {end} in segment file {name} at offset {}, but a valid record follows at {valid}",
        end.segment_offset(reader.segment_size()),
    ))
    .with_detail("Nothing was changed. The WAL after the damaged record cannot be replayed safely.")
    .with_hint(
        "Restore the damaged segment from a standby (its pg_wal holds the same bytes), or rebuild this server from a base backup.",
    ))
}

impl Replay {
    /// Loads the snapshot the control file names and checks the checkpoint record it starts from.
    pub fn start(dir: &Path, control: &ControlFile) -> Result<Replay> {
        Replay::from_snapshot(dir, control, snapshot::open(dir, control.system_id, control.checkpoint)?)
    }

    /// [`start`](Self::start) from a snapshot file already read and checked.
    pub fn from_snapshot(dir: &Path, control: &ControlFile, snapshot: snapshot::Checked) -> Result<Replay> {
        let reader = open_reader(dir, control)?;
        let state = snapshot.decode()?;
        Ok(Replay { state, reader, last_commit_time: None, checkpoint: None, altered: false })
    }

    /// The end of the valid WAL after the checkpoint, and the position of the last record before it, found
    /// without applying anything: where a standby's WAL receiver starts while its snapshot still loads.
    /// Damage before the end is reported as [`to_end`](Self::to_end) reports it.
    pub fn wal_end(dir: &Path, control: &ControlFile) -> Result<(Lsn, Lsn)> {
        let mut reader = open_reader(dir, control)?;
        while reader.next_record()?.is_some() {}
        check_tail(&mut reader)?;
        Ok((reader.position(), reader.prev()))
    }

    /// The state as of [`position`](Self::position).
    pub fn state(&self) -> &DbState {
        &self.state
    }

    /// Gives the state up.
    pub fn into_state(self) -> DbState {
        self.state
    }

    /// The position of the next record to apply (the end of everything applied).
    pub fn position(&self) -> Lsn {
        self.reader.position()
    }

    /// The position of the last record applied.
    pub fn prev(&self) -> Lsn {
        self.reader.prev()
    }

    /// The commit time of the last transaction applied, in microseconds since 2000-01-01.
    pub fn last_commit_time(&self) -> Option<i64> {
        self.last_commit_time
    }

    /// Whether a commit replayed since the snapshot altered a table. A primary that has replayed such a
    /// commit at its start takes a new checkpoint for its next base backup rather than having the standby
    /// replay the alteration (see `Engine::backup_start`).
    pub fn altered(&self) -> bool {
        self.altered
    }

    /// The last checkpoint record replayed since the previous call, and the state at it.
    pub fn take_checkpoint(&mut self) -> Option<(Lsn, DbState)> {
        self.checkpoint.take()
    }

    /// Reads further WAL along new timelines (a standby that follows its primary onto a new timeline).
    pub fn set_timelines(&mut self, timelines: Timelines) {
        self.reader.set_timelines(timelines);
    }

    fn apply(&mut self, rec: &Record) -> Result<()> {
        if rec.kind == RecordKind::Checkpoint {
            self.checkpoint = Some((rec.lsn, self.state.clone()));
        }
        if rec.kind == RecordKind::Commit {
            let ops = decode_commit(&rec.payload).map_err(|e| bad_payload(rec, e))?;
            for op in &ops {
                self.state.apply(op).map_err(|e| bad_payload(rec, e))?;
                self.altered |= matches!(op, Op::Alter { .. });
            }
            if rec.xid != 0 {
                self.last_commit_time = Some(rec.time);
            }
        }
        Ok(())
    }

    /// Crash recovery: applies records to the end of the log. A bad record with valid records after it is
    /// corruption, reported with its segment file and offset.
    ///
    /// Reading and decoding run on a second thread, a batch of records ahead of applying, so a long replay
    /// uses two cores.
    pub fn to_end(&mut self) -> Result<()> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Result<Vec<Decoded>>>(8);
        let reader = &mut self.reader;
        let state = &mut self.state;
        let last_commit_time = &mut self.last_commit_time;
        let altered = &mut self.altered;
        std::thread::scope(|scope| {
            scope.spawn(move || loop {
                let mut batch = Vec::with_capacity(256);
                let mut bytes = 0;
                let mut ended = false;
                while bytes < 4 << 20 && batch.len() < 4096 {
                    match reader.next_record() {
                        Ok(Some(rec)) => {
                            bytes += rec.payload.len();
                            let decoded = decode(rec);
                            let failed = decoded.is_err();
                            match decoded {
                                Ok(d) => batch.push(d),
                                Err(e) => {
                                    let _ = tx.send(Err(e));
                                }
                            }
                            if failed {
                                return;
                            }
                        }
                        Ok(None) => {
                            ended = true;
                            break;
                        }
                        Err(e) => {
                            let _ = tx.send(Err(e));
                            return;
                        }
                    }
                }
                if !batch.is_empty() && tx.send(Ok(batch)).is_err() {
                    return;
                }
                if ended {
                    return;
                }
            });
            for batch in rx {
                for (rec, ops) in batch? {
                    for op in &ops {
                        state.apply(op).map_err(|e| bad_payload(&rec, e))?;
                        *altered |= matches!(op, Op::Alter { .. });
                    }
                    if rec.kind == RecordKind::Commit && rec.xid != 0 {
                        *last_commit_time = Some(rec.time);
                    }
                }
            }
            Ok::<(), Error>(())
        })?;
        while let Some(rec) = self.reader.next_record()? {
            self.apply(&rec)?;
        }
        check_tail(&mut self.reader)
    }

    /// Applies every complete record that ends at or before `flushed`. Returns how many it applied.
    pub fn apply_available(&mut self, flushed: Lsn) -> Result<usize> {
        self.reader.set_limit(Some(flushed));
        let mut n = 0;
        while let Some(rec) = self.reader.next_record()? {
            self.apply(&rec)?;
            n += 1;
        }
        Ok(n)
    }

    /// The standby's startup loop: applies WAL as it is flushed, forever. `wait(position)` blocks until
    /// WAL is flushed past `position` and returns the new flushed position, or None to stop (promotion,
    /// shutdown). `applied` is called after each batch with the new state and position.
    pub fn follow(
        &mut self,
        mut wait: impl FnMut(Lsn) -> Option<Lsn>,
        mut applied: impl FnMut(&DbState, Lsn, Option<i64>),
    ) -> Result<()> {
        while let Some(flushed) = wait(self.position()) {
            if self.apply_available(flushed)? > 0 {
                applied(&self.state, self.position(), self.last_commit_time);
            }
        }
        Ok(())
    }
}
