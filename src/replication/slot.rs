//! Physical replication slots: named positions that hold WAL for a standby that is away.
//!
//! A slot is a WAL consumer: the WAL writer recycles no segment at or after its `restart_lsn`. A
//! persistent slot lives in `pg_replslot/<name>` (position and CRC, written atomically) and survives
//! restarts; a temporary slot lives as long as the connection that made it (pg_basebackup's). A WAL
//! sender streaming for a slot moves its position to what the standby has flushed.
//!
//! Holding WAL forever for a standby that never returns would fill the disk, so a slot may hold at most
//! `max_slot_wal_keep_size`; past that it is marked lost, stops holding WAL, and a standby that comes back
//! to it is told that the WAL it needs is gone.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::control::write_atomically;
use crate::engine::Engine;
use crate::error::{Error, Result, SqlState};
use crate::wal::writer::lock;
use crate::wal::Lsn;

/// The folder of persistent slots in a data directory.
pub const SLOT_DIR: &str = "pg_replslot";

/// A slot as pg_replication_slots shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Slot {
    pub name: String,
    pub temporary: bool,
    pub restart_lsn: Option<Lsn>,
    /// The pid of the WAL sender using it.
    pub active_pid: Option<i32>,
    /// The pid of the connection that made a temporary slot.
    owner: Option<i32>,
    pub lost: bool,
}

/// Every slot of a server.
pub struct Slots {
    engine: Arc<Engine>,
    dir: PathBuf,
    slots: Mutex<BTreeMap<String, Slot>>,
    /// The most WAL a slot may hold, in bytes (None: no limit, PostgreSQL's -1).
    pub max_keep: Option<u64>,
}

fn consumer(name: &str) -> String {
    format!("slot {name}")
}

fn check_name(name: &str) -> Result<()> {
    if name.is_empty()
        || name.len() > 63
        || !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        return Err(Error::new(
            SqlState::INVALID_PARAMETER_VALUE,
            format!("replication slot name \"{name}\" is invalid"),
        )
        .with_hint(
            "Replication slot names may only contain lower case letters, numbers, and the underscore character.",
        ));
    }
    Ok(())
}

impl Slots {
    /// Loads the persistent slots of a data directory and holds their WAL.
    pub fn load(engine: Arc<Engine>, max_keep: Option<u64>) -> Result<Slots> {
        let dir = engine.dir().join(SLOT_DIR);
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(format!("could not create \"{}\"", dir.display()), e))?;
        let mut slots = BTreeMap::new();
        for entry in
            std::fs::read_dir(&dir).map_err(|e| Error::io(format!("could not read \"{}\"", dir.display()), e))?
        {
            let entry = entry.map_err(|e| Error::io("could not read pg_replslot", e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".tmp") || check_name(&name).is_err() {
                continue;
            }
            let bytes =
                std::fs::read(entry.path()).map_err(|e| Error::io(format!("could not read slot \"{name}\""), e))?;
            if bytes.len() != 13
                || crc32c::crc32c(&bytes[..9]) != u32::from_le_bytes(bytes[9..13].try_into().expect("4"))
            {
                return Err(Error::corrupted(format!(
                    "replication slot file \"{}\" is damaged",
                    entry.path().display()
                )));
            }
            let lsn = Lsn(u64::from_le_bytes(bytes[..8].try_into().expect("8")));
            let lost = bytes[8] != 0;
            let restart_lsn = (lsn != Lsn::INVALID).then_some(lsn);
            if let (Some(l), false) = (restart_lsn, lost) {
                engine.wal().set_consumer(&consumer(&name), Some(l));
            }
            slots.insert(
                name.clone(),
                Slot { name, temporary: false, restart_lsn, active_pid: None, owner: None, lost },
            );
        }
        Ok(Slots { engine, dir, slots: Mutex::new(slots), max_keep })
    }

    fn persist(dir: &Path, slot: &Slot) -> Result<()> {
        if slot.temporary {
            return Ok(());
        }
        let mut bytes = slot.restart_lsn.unwrap_or(Lsn::INVALID).0.to_le_bytes().to_vec();
        bytes.push(slot.lost as u8);
        let crc = crc32c::crc32c(&bytes);
        bytes.extend_from_slice(&crc.to_le_bytes());
        write_atomically(dir, &slot.name, &bytes)
    }

    /// Creates a slot. With `reserve_wal` it holds WAL from the current position at once.
    pub fn create(&self, name: &str, temporary: bool, reserve_wal: bool, owner: i32) -> Result<Slot> {
        check_name(name)?;
        let mut slots = lock(&self.slots);
        if slots.contains_key(name) {
            return Err(Error::new(SqlState::DUPLICATE_OBJECT, format!("replication slot \"{name}\" already exists")));
        }
        let restart_lsn = reserve_wal.then(|| self.engine.wal().flushed());
        let slot = Slot {
            name: name.to_string(),
            temporary,
            restart_lsn,
            active_pid: None,
            owner: temporary.then_some(owner),
            lost: false,
        };
        Self::persist(&self.dir, &slot)?;
        if let Some(l) = restart_lsn {
            self.engine.wal().set_consumer(&consumer(name), Some(l));
        }
        slots.insert(name.to_string(), slot.clone());
        Ok(slot)
    }

    /// Drops a slot that no sender is using.
    pub fn drop_slot(&self, name: &str) -> Result<()> {
        let mut slots = lock(&self.slots);
        let slot = slots.get(name).ok_or_else(|| {
            Error::new(SqlState::UNDEFINED_OBJECT, format!("replication slot \"{name}\" does not exist"))
        })?;
        if let Some(pid) = slot.active_pid {
            return Err(Error::new(
                SqlState::OBJECT_IN_USE,
                format!("replication slot \"{name}\" is active for PID {pid}"),
            ));
        }
        slots.remove(name);
        self.engine.wal().set_consumer(&consumer(name), None);
        let _ = std::fs::remove_file(self.dir.join(name));
        Ok(())
    }

    /// A slot by name.
    pub fn get(&self, name: &str) -> Option<Slot> {
        lock(&self.slots).get(name).cloned()
    }

    /// Every slot.
    pub fn list(&self) -> Vec<Slot> {
        lock(&self.slots).values().cloned().collect()
    }

    /// Marks a slot as used by a WAL sender, refusing a slot that is lost or already in use.
    pub fn acquire(&self, name: &str, pid: i32) -> Result<Slot> {
        let mut slots = lock(&self.slots);
        let slot = slots.get_mut(name).ok_or_else(|| {
            Error::new(SqlState::UNDEFINED_OBJECT, format!("replication slot \"{name}\" does not exist"))
        })?;
        if let Some(other) = slot.active_pid.filter(|p| *p != pid) {
            return Err(Error::new(
                SqlState::OBJECT_IN_USE,
                format!("replication slot \"{name}\" is active for PID {other}"),
            ));
        }
        if slot.lost {
            return Err(Error::new(
                SqlState::OBJECT_IN_USE,
                format!("cannot read from replication slot \"{name}\": it has been invalidated because it exceeded the maximum reserved size"),
            ));
        }
        slot.active_pid = Some(pid);
        Ok(slot.clone())
    }

    /// Moves a slot's position forward (to what its standby has flushed).
    pub fn advance(&self, name: &str, lsn: Lsn) -> Result<()> {
        let mut slots = lock(&self.slots);
        let Some(slot) = slots.get_mut(name) else { return Ok(()) };
        if slot.lost || slot.restart_lsn.is_some_and(|r| r >= lsn) {
            return Ok(());
        }
        let seg = self.engine.wal().segment_size();
        let crossed = slot.restart_lsn.is_none_or(|r| r.segment(seg) != lsn.segment(seg));
        slot.restart_lsn = Some(lsn);
        self.engine.wal().set_consumer(&consumer(name), Some(lsn));
        // Persisting at segment boundaries is enough: a slot only ever holds whole segments.
        if crossed {
            Self::persist(&self.dir, slot)?;
        }
        Ok(())
    }

    /// A WAL sender lets go of its slots; a connection's temporary slots are dropped.
    pub fn release_all(&self, pid: i32) {
        let mut slots = lock(&self.slots);
        let temporary: Vec<String> = slots.values().filter(|s| s.owner == Some(pid)).map(|s| s.name.clone()).collect();
        for name in temporary {
            slots.remove(&name);
            self.engine.wal().set_consumer(&consumer(&name), None);
        }
        for slot in slots.values_mut().filter(|s| s.active_pid == Some(pid)) {
            slot.active_pid = None;
            let _ = Self::persist(&self.dir, slot);
        }
    }

    /// Invalidates slots that hold more WAL than `max_keep`. Returns the names it invalidated.
    pub fn enforce_limit(&self) -> Vec<String> {
        let Some(max) = self.max_keep else { return Vec::new() };
        let insert = self.engine.wal().insert_lsn();
        let mut lost = Vec::new();
        let mut slots = lock(&self.slots);
        for slot in slots.values_mut().filter(|s| !s.lost && s.active_pid.is_none()) {
            if slot.restart_lsn.is_some_and(|r| insert.0.saturating_sub(r.0) > max) {
                slot.lost = true;
                self.engine.wal().set_consumer(&consumer(&slot.name), None);
                let _ = Self::persist(&self.dir, slot);
                lost.push(slot.name.clone());
            }
        }
        lost
    }

    /// pg_replication_slots' wal_status for a slot: reserved, extended, lost.
    pub fn wal_status(&self, slot: &Slot) -> &'static str {
        if slot.lost {
            return "lost";
        }
        match (slot.restart_lsn, self.max_keep) {
            (Some(r), Some(max)) if self.engine.wal().insert_lsn().0.saturating_sub(r.0) > max / 2 => "extended",
            _ => "reserved",
        }
    }
}
