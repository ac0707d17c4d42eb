//! Transactions: private write sets over snapshots, row locks, isolation levels, commit.
//!
//! A transaction reads from `state`: a snapshot of the acknowledged database with its own writes applied
//! (a persistent-map clone, so taking it is O(1)). Its writes are also recorded as redo [`Op`]s; commit
//! appends them as one WAL record and applies them to the engine's `latest` state.
//!
//! Writing a row first locks it. With the lock held, the writer looks at the newest version of the row
//! (from `latest`, which includes commits not yet acknowledged):
//!
//! - READ COMMITTED (the default): the statement works on the newest version and re-checks its WHERE
//!   against it, as PostgreSQL's EvalPlanQual does; each statement starts from a fresh snapshot.
//! - REPEATABLE READ: if the newest version is not the one in the transaction's snapshot, another
//!   transaction changed the row since: SQLSTATE 40001. Versions are compared by identity: each write
//!   makes a new `Arc`, so an unchanged row is the very same allocation in both states.
//!
//! Under READ COMMITTED, an UPDATE that only adds to a row it names by primary key (`SET c = c + e`) is
//! deferred: the transaction takes the row's Increment lock (shared with other incrementers, see
//! [`lock`]) and keeps a [`Change`]; commit applies it to the newest version under the WAL append lock, and
//! the commit record carries the resulting row like any other. Nothing reads the row in between: a
//! statement of the same transaction that could read it first materializes its increments (upgrading the
//! lock, applying them to the newest version as an ordinary write), so what the transaction sees is what
//! it commits.
//!
//! A transaction that wrote nothing but read a newest version (a re-check that found the row no longer
//! matched) still waits, at commit, until what it read is acknowledged: nothing it reported can then be
//! taken back by a crash.

pub mod lock;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::engine::{CommitTicket, Core, SyncLevel};
use crate::error::{Error, Result, SqlState};
use crate::storage::catalog::{Oid, SequenceDef, TableDef};
use crate::storage::state::{AlterOp, DbState, Op, SequenceValue, TableData};
use crate::storage::value::{Key, Row, Value};
use crate::wal::record::{encode_commit, RecordKind};
use crate::wal::writer::lock as lock_mutex;
use crate::wal::Lsn;
use lock::{LockKey, LockMode};

/// The rows a transaction wrote. One entry per row written, so a bulk COPY hashes every key it loads:
/// hashed with [`KeyHasher`], as the set is private to one transaction (no other client's keys can make
/// its buckets collide).
type Written = HashSet<(Oid, Key), std::hash::BuildHasherDefault<KeyHasher>>;

/// A multiply-and-rotate hasher (as rustc's FxHasher), several times cheaper than the default SipHash on
/// short keys; not resistant to chosen collisions, so used only where one client hashes its own keys.
#[derive(Default)]
struct KeyHasher(u64);

impl std::hash::Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.write_u64(u64::from_le_bytes(c.try_into().expect("8 bytes")));
        }
        for &b in chunks.remainder() {
            self.write_u64(b as u64);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }

    fn write_u8(&mut self, n: u8) {
        self.write_u64(n as u64);
    }

    fn write_u32(&mut self, n: u32) {
        self.write_u64(n as u64);
    }

    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// Transaction isolation levels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isolation {
    ReadCommitted,
    RepeatableRead,
}

/// A savepoint: the transaction as it was.
#[derive(Clone)]
pub struct Savepoint {
    state: DbState,
    ops: usize,
    written: Written,
    increments: Vec<Increment>,
}

/// A deferred change to a row that does not depend on other columns than those it changes, and commutes
/// with others of its kind (adding to a number): the new version from any version. It fails as the
/// statement would have (overflow, NOT NULL).
pub type Change = Arc<dyn Fn(&Row) -> Result<Row> + Send + Sync>;

/// The deferred changes of a transaction to one row, in statement order.
#[derive(Clone)]
struct Increment {
    table: Oid,
    key: Key,
    changes: Vec<Change>,
}

/// A row with deferred changes applied, in order.
fn apply_changes<'a>(changes: impl IntoIterator<Item = &'a Change>, mut row: Row) -> Result<Row> {
    for c in changes {
        row = c(&row)?;
    }
    Ok(row)
}

/// A commit record's payload and its CRC.
fn encode(ops: &[Op]) -> (Vec<u8>, u32) {
    let payload = encode_commit(ops);
    let crc = crc32c::crc32c(&payload);
    (payload, crc)
}

fn concurrent_delete() -> Error {
    Error::new(SqlState::SERIALIZATION_FAILURE, "could not serialize access due to concurrent delete")
}

/// A transaction.
pub struct Transaction {
    core: Arc<Core>,
    xid: u64,
    isolation: Isolation,
    /// The snapshot the transaction (RR) or statement (RC) started from.
    base: DbState,
    base_version: u64,
    /// `base` with this transaction's writes applied.
    state: DbState,
    ops: Vec<Op>,
    /// Rows this transaction wrote (its own versions are in `state`).
    written: Written,
    /// Rows this transaction added to without reading them, applied at commit (not in `state`).
    increments: Vec<Increment>,
    /// Rows whose upgrade from Increment failed (a deadlock, a cancel): another transaction may have read
    /// them meanwhile, so a commit that still carries an increment of one of them fails.
    failed_upgrades: HashSet<(Oid, Key)>,
    /// Tables this transaction locked exclusively (created, truncated, altered): no one else can write
    /// them, so its own state is the newest version of every row.
    exclusive: HashSet<Oid>,
    epoch: u64,
    /// The newest WAL position whose effects this transaction may have read from `latest`.
    read_dependency: Lsn,
    /// Set from outside to cancel a lock wait or commit wait.
    cancel: Arc<AtomicBool>,
    /// How far the commit must get before it is acknowledged (`synchronous_commit`).
    sync_level: SyncLevel,
    finished: bool,
}

impl Transaction {
    pub(crate) fn begin(core: Arc<Core>, isolation: Isolation) -> Transaction {
        let xid = core.next_xid.fetch_add(1, Ordering::Relaxed);
        let epoch = core.epoch.load(Ordering::Acquire);
        let (base, base_version) = {
            let v = core.visible.read().unwrap_or_else(|e| e.into_inner());
            (v.state.clone(), v.version)
        };
        Transaction {
            core,
            xid,
            isolation,
            state: base.clone(),
            base,
            base_version,
            ops: Vec::new(),
            written: Written::default(),
            increments: Vec::new(),
            failed_upgrades: HashSet::new(),
            exclusive: HashSet::new(),
            epoch,
            read_dependency: Lsn::INVALID,
            cancel: Arc::new(AtomicBool::new(false)),
            sync_level: SyncLevel::default(),
            finished: false,
        }
    }

    /// The transaction id.
    pub fn xid(&self) -> u64 {
        self.xid
    }

    /// The isolation level.
    pub fn isolation(&self) -> Isolation {
        self.isolation
    }

    /// What this transaction reads: its snapshot with its own writes.
    pub fn state(&self) -> &DbState {
        &self.state
    }

    /// Whether the transaction has written anything.
    pub fn has_writes(&self) -> bool {
        !self.ops.is_empty() || !self.increments.is_empty()
    }

    /// Whether the transaction holds deferred increments that a read must materialize first.
    pub fn has_increments(&self) -> bool {
        !self.increments.is_empty()
    }

    /// Sets how far the commit must get before it is acknowledged (`synchronous_commit`).
    pub fn set_sync_level(&mut self, level: SyncLevel) {
        self.sync_level = level;
    }

    /// The flag that cancels this transaction's waits.
    pub fn cancel_flag(&self) -> Arc<AtomicBool> {
        self.cancel.clone()
    }

    /// Starts a new statement: under READ COMMITTED, takes a fresh snapshot (keeping the transaction's
    /// own writes).
    pub fn begin_statement(&mut self) -> Result<()> {
        self.cancel.store(false, Ordering::Relaxed);
        if self.isolation != Isolation::ReadCommitted {
            return Ok(());
        }
        let (base, version) = {
            let v = self.core.visible.read().unwrap_or_else(|e| e.into_inner());
            if v.version == self.base_version {
                return Ok(());
            }
            (v.state.clone(), v.version)
        };
        let mut state = base.clone();
        for op in &self.ops {
            state.apply(op)?;
        }
        self.base = base;
        self.base_version = version;
        self.state = state;
        Ok(())
    }

    /// Refuses writes on a standby, as PostgreSQL's hot standby does.
    fn check_writable(&self) -> Result<()> {
        if self.core.in_recovery.load(Ordering::Acquire) {
            return Err(Error::new(
                SqlState::READ_ONLY_SQL_TRANSACTION,
                "cannot execute a write in a read-only transaction",
            )
            .with_detail("This server is a standby in recovery; writes go to the primary."));
        }
        self.check_not_fenced()
    }

    fn check_not_fenced(&self) -> Result<()> {
        match self.core.fenced.read().unwrap_or_else(|e| e.into_inner()).as_ref() {
            Some(reason) => Err(Error::new(
                SqlState::READ_ONLY_SQL_TRANSACTION,
                "cannot execute a write: this server is a former primary and has been fenced",
            )
            .with_detail(reason.clone())
            .with_hint(
                "Write to the new primary. Stop this server and make it the new primary's standby with tandem rewind (or a fresh tandem init-standby).",
            )),
            None => Ok(()),
        }
    }

    fn lock(&self, key: LockKey, mode: LockMode) -> Result<()> {
        if mode == LockMode::Exclusive || matches!(key, LockKey::Table(_)) {
            self.check_writable()?;
        }
        self.core.locks.acquire(self.xid, &key, mode, &self.cancel)
    }

    /// Locks a table for row changes (shared with other writers, exclusive of DDL).
    pub fn lock_table_for_write(&self, table: Oid) -> Result<()> {
        self.lock(LockKey::Table(table), LockMode::Shared)
    }

    /// The newest version of a row, from the engine's latest state (call with the row locked).
    fn newest(&mut self, table: Oid, key: &Key) -> Option<Row> {
        if self.owns(table, key) {
            return self.state.row(table, key).cloned();
        }
        let latest = lock_mutex(&self.core.latest);
        let row = latest.row(table, key).cloned();
        let changed = match (&row, self.base.row(table, key)) {
            (Some(a), Some(b)) => !Row::ptr_eq(a, b),
            (None, None) => false,
            _ => true,
        };
        drop(latest);
        if changed {
            // The version may belong to a commit not yet acknowledged.
            self.read_dependency = self.read_dependency.max(self.core.wal.insert_lsn());
        }
        row
    }

    /// Whether this transaction's own state has the newest version of a row.
    fn owns(&self, table: Oid, key: &Key) -> bool {
        self.exclusive.contains(&table) || self.written.contains(&(table, key.clone()))
    }

    /// Locks a row for UPDATE or DELETE and returns its newest version (None if it is gone). Under
    /// REPEATABLE READ, a row changed since the snapshot gives 40001.
    pub fn lock_row(&mut self, table: Oid, key: &Key) -> Result<Option<Row>> {
        self.lock_table_for_write(table)?;
        self.materialize(table, key)?;
        self.lock(LockKey::Row(table, key.clone()), LockMode::Exclusive)?;
        let newest = self.newest(table, key);
        if self.isolation == Isolation::RepeatableRead && !self.owns(table, key) {
            let same = match (&newest, self.base.row(table, key)) {
                (Some(a), Some(b)) => Row::ptr_eq(a, b),
                (None, None) => true,
                _ => false,
            };
            if !same {
                return Err(Error::new(
                    SqlState::SERIALIZATION_FAILURE,
                    "could not serialize access due to concurrent update",
                ));
            }
        }
        Ok(newest)
    }

    fn table(&self, table: Oid) -> Result<&TableData> {
        self.state
            .table_by_id(table)
            .ok_or_else(|| Error::new(SqlState::UNDEFINED_TABLE, format!("relation with oid {table} does not exist")))
    }

    /// A fresh hidden row id for a table without a primary key.
    pub fn next_rowid(&self) -> i64 {
        self.core.next_rowid.fetch_add(1, Ordering::Relaxed)
    }

    /// Checks the unique indexes of `table` for `row` at `key`, locking each unique value.
    fn check_unique(&mut self, table: Oid, key: &Key, row: &[Value], old: Option<&Row>) -> Result<()> {
        let def = self.table(table)?.def.clone();
        for index in def.indexes.iter().filter(|i| i.unique) {
            let values: Vec<Value> = index.columns.iter().map(|&c| row[c].clone()).collect();
            if values.iter().any(Value::is_null) {
                continue;
            }
            if let Some(old) = old {
                if index.columns.iter().all(|&c| old[c] == row[c]) {
                    continue;
                }
            }
            let ukey: Key = values.clone().into();
            self.lock(LockKey::Unique(index.id, ukey.clone()), LockMode::Exclusive)?;
            let conflict = |state: &DbState| -> bool {
                let Some(t) = state.table_by_id(table) else { return false };
                let Some(map) = t.indexes.get(&index.id) else { return false };
                let from: Key = values.clone().into();
                map.range(from..)
                    .take_while(|(e, _)| e[..values.len()] == values[..])
                    .any(|(e, _)| e[values.len()..] != key[..])
            };
            let mut found = conflict(&self.state);
            if !found && !self.exclusive.contains(&table) {
                let latest = lock_mutex(&self.core.latest).clone();
                // Rows this transaction changed are judged by its own state.
                found = conflict(&latest) && {
                    let t = latest.table_by_id(table).and_then(|t| t.indexes.get(&index.id).cloned());
                    let from: Key = values.clone().into();
                    t.is_some_and(|m| {
                        m.range(from..).take_while(|(e, _)| e[..values.len()] == values[..]).any(|(e, _)| {
                            let other: Key = e[values.len()..].to_vec().into();
                            !self.written.contains(&(table, other))
                        })
                    })
                };
            }
            if found {
                let cols: Vec<&str> = index.columns.iter().map(|&c| def.columns[c].name.as_str()).collect();
                let vals: Vec<String> = values.iter().map(display_value).collect();
                return Err(Error::new(
                    SqlState::UNIQUE_VIOLATION,
                    format!("duplicate key value violates unique constraint \"{}\"", index.name),
                )
                .with_detail(format!(
                    "Key ({})=({}) already exists.",
                    cols.join(", "),
                    vals.join(", ")
                )));
            }
        }
        Ok(())
    }

    /// Whether a row exists, seen by this transaction or committed by another (call with the row locked).
    pub fn exists(&mut self, table: Oid, key: &Key) -> bool {
        if self.owns(table, key) {
            self.state.row(table, key).is_some()
        } else {
            self.state.row(table, key).is_some() || self.newest(table, key).is_some()
        }
    }

    /// The key of the row holding `values` in a unique index, judged as [`check_unique`](Self::check_unique)
    /// judges conflicts: rows this transaction wrote by its own state, others by the newest committed
    /// state. The holder can change until the caller locks the row, so it checks the locked version.
    pub fn unique_holder(&self, table: Oid, index: Oid, values: &[Value]) -> Option<Key> {
        let holders = |state: &DbState| -> Vec<Key> {
            let Some(map) = state.table_by_id(table).and_then(|t| t.indexes.get(&index)) else { return vec![] };
            let from: Key = values.to_vec().into();
            map.range(from..)
                .take_while(|(e, _)| e[..values.len()] == values[..])
                .map(|(e, _)| e[values.len()..].to_vec().into())
                .collect()
        };
        if self.exclusive.contains(&table) {
            return holders(&self.state).into_iter().next();
        }
        let own = holders(&self.state).into_iter().find(|k| self.written.contains(&(table, k.clone())));
        own.or_else(|| {
            let latest = lock_mutex(&self.core.latest).clone();
            holders(&latest).into_iter().find(|k| !self.written.contains(&(table, k.clone())))
        })
    }

    /// Inserts a row. The key is the primary key's values (or a hidden row id). Fails with 23505 if the
    /// key or a unique value exists, seen by this transaction or committed by another.
    pub fn insert(&mut self, table: Oid, row: Row) -> Result<Key> {
        self.lock_table_for_write(table)?;
        let def = self.table(table)?.def.clone();
        if row.len() != def.columns.len() {
            return Err(Error::internal(format!("row of {} values for table {}", row.len(), def.name)));
        }
        let key: Key = match &def.primary_key {
            Some(pk) => {
                let key: Vec<Value> = pk.columns.iter().map(|&c| row[c].clone()).collect();
                if let Some(i) = key.iter().position(Value::is_null) {
                    return Err(not_null(&def, pk.columns[i]));
                }
                let key: Key = key.into();
                self.materialize(table, &key)?;
                self.lock(LockKey::Row(table, key.clone()), LockMode::Exclusive)?;
                if self.exists(table, &key) {
                    let cols: Vec<&str> = pk.columns.iter().map(|&c| def.columns[c].name.as_str()).collect();
                    let vals: Vec<String> = key.iter().map(display_value).collect();
                    return Err(Error::new(
                        SqlState::UNIQUE_VIOLATION,
                        format!("duplicate key value violates unique constraint \"{}\"", pk.name),
                    )
                    .with_detail(format!(
                        "Key ({})=({}) already exists.",
                        cols.join(", "),
                        vals.join(", ")
                    )));
                }
                key
            }
            // A fresh hidden row id takes no row lock: no other transaction can name the row before this
            // one commits, and locks are released when it does. (A bulk COPY into a table without a primary
            // key, like pgbench's load, would otherwise fill the lock table with one entry per row.)
            None => vec![Value::Int(self.next_rowid())].into(),
        };
        self.check_unique(table, &key, &row, None)?;
        self.write(Op::Put { table, key: key.clone(), row })?;
        Ok(key)
    }

    /// Replaces the row at `key` (locked by [`lock_row`](Self::lock_row)). If the primary key changes,
    /// the row moves to its new key.
    pub fn update(&mut self, table: Oid, key: &Key, row: Row) -> Result<Key> {
        let def = self.table(table)?.def.clone();
        let old = self.state.row(table, key).cloned();
        let new_key: Key = match &def.primary_key {
            Some(pk) => {
                let k: Vec<Value> = pk.columns.iter().map(|&c| row[c].clone()).collect();
                if let Some(i) = k.iter().position(Value::is_null) {
                    return Err(not_null(&def, pk.columns[i]));
                }
                k.into()
            }
            None => key.clone(),
        };
        if new_key != *key {
            self.delete(table, key)?;
            return self.insert(table, row);
        }
        self.check_unique(table, key, &row, old.as_ref())?;
        self.write(Op::Put { table, key: key.clone(), row })?;
        Ok(new_key)
    }

    /// Adds to the row at `key` without reading it (READ COMMITTED only): `change` makes the new version
    /// from whichever version is newest when the transaction commits. Returns whether the row exists (the
    /// statement's count). The change is tried on the newest version now, so that its errors come from
    /// the statement.
    pub fn increment(&mut self, table: Oid, key: &Key, change: Change) -> Result<bool> {
        self.lock_table_for_write(table)?;
        if self.isolation != Isolation::ReadCommitted || self.owns(table, key) {
            let Some(row) = self.lock_row(table, key)? else { return Ok(false) };
            let row = change(&row)?;
            self.update(table, key, row)?;
            return Ok(true);
        }
        self.lock(LockKey::Row(table, key.clone()), LockMode::Increment)?;
        let Some(row) = self.newest(table, key) else { return Ok(false) };
        let at = self.increment_of(table, key);
        apply_changes(at.iter().flat_map(|&i| &self.increments[i].changes).chain([&change]), row)?;
        match at {
            Some(i) => self.increments[i].changes.push(change),
            None => self.increments.push(Increment { table, key: key.clone(), changes: vec![change] }),
        }
        Ok(true)
    }

    /// Applies this transaction's deferred increments of a row, if it has any, as an ordinary write: the
    /// row lock is upgraded to Exclusive, and the changes apply to the newest version.
    fn materialize(&mut self, table: Oid, key: &Key) -> Result<()> {
        let Some(i) = self.increment_of(table, key) else { return Ok(()) };
        if let Err(e) = self.lock(LockKey::Row(table, key.clone()), LockMode::Exclusive) {
            self.failed_upgrades.insert((table, key.clone()));
            return Err(e);
        }
        let inc = self.increments.remove(i);
        // Only another upgrader of the row can have deleted it meanwhile.
        let row = apply_changes(&inc.changes, self.newest(table, key).ok_or_else(concurrent_delete)?)?;
        self.write(Op::Put { table, key: key.clone(), row })
    }

    /// The position of this transaction's deferred increments of a row, if it has any.
    fn increment_of(&self, table: Oid, key: &Key) -> Option<usize> {
        self.increments.iter().position(|x| x.table == table && x.key == *key)
    }

    /// Materializes every deferred increment: called before a statement that may read what they change.
    pub fn materialize_all(&mut self) -> Result<()> {
        while let Some(x) = self.increments.first() {
            let (table, key) = (x.table, x.key.clone());
            self.materialize(table, &key)?;
        }
        Ok(())
    }

    /// Deletes the row at `key` (locked by [`lock_row`](Self::lock_row)).
    pub fn delete(&mut self, table: Oid, key: &Key) -> Result<()> {
        self.write(Op::Delete { table, key: key.clone() })
    }

    fn write(&mut self, op: Op) -> Result<()> {
        self.check_writable()?;
        self.state.apply(&op)?;
        match &op {
            Op::Put { table, key, .. } | Op::Delete { table, key } => {
                self.written.insert((*table, key.clone()));
            }
            _ => {}
        }
        self.ops.push(op);
        Ok(())
    }

    /// A fresh oid for a new table or index.
    pub fn allocate_oid(&mut self) -> Oid {
        let latest = lock_mutex(&self.core.latest).next_oid;
        let oid = self.state.next_oid.max(latest);
        // Reserve it in this transaction's view; commit moves `latest` past it too.
        self.state.next_oid = oid + 1;
        oid
    }

    /// Locks a relation name and tells whether it is in use: in this transaction's view, or by another
    /// transaction's commit since this transaction's snapshot.
    fn name_taken(&self, name: &str) -> Result<bool> {
        self.lock(LockKey::Name(Arc::from(name)), LockMode::Exclusive)?;
        if self.state.names.contains_key(name) {
            return Ok(true);
        }
        let latest = lock_mutex(&self.core.latest).names.get(name).copied();
        Ok(latest.is_some() && latest != self.base.names.get(name).copied())
    }

    /// Creates a table. Its oid (and its indexes' oids) must come from [`allocate_oid`](Self::allocate_oid).
    pub fn create_table(&mut self, def: TableDef) -> Result<()> {
        if self.name_taken(&def.name)? {
            return Err(Error::new(SqlState::DUPLICATE_TABLE, format!("relation \"{}\" already exists", def.name)));
        }
        self.lock(LockKey::Table(def.id), LockMode::Exclusive)?;
        self.exclusive.insert(def.id);
        let next_oid = self.state.next_oid;
        self.write(Op::CreateTable(Arc::new(def)))?;
        self.state.next_oid = self.state.next_oid.max(next_oid);
        Ok(())
    }

    /// Locks a table exclusively for DDL and checks it still exists.
    pub fn lock_table_for_ddl(&mut self, table: Oid) -> Result<()> {
        let own: Vec<Key> = self.increments.iter().filter(|x| x.table == table).map(|x| x.key.clone()).collect();
        for key in own {
            self.materialize(table, &key)?;
        }
        self.lock(LockKey::Table(table), LockMode::Exclusive)?;
        self.exclusive.insert(table);
        let exists = lock_mutex(&self.core.latest).tables.contains_key(&table);
        if !exists && !self.state.tables.contains_key(&table) {
            return Err(Error::new(SqlState::UNDEFINED_TABLE, format!("relation with oid {table} does not exist")));
        }
        Ok(())
    }

    /// Drops a table.
    pub fn drop_table(&mut self, table: Oid) -> Result<()> {
        self.lock_table_for_ddl(table)?;
        if let Some(t) = self.state.table_by_id(table) {
            let name: Arc<str> = Arc::from(t.def.name.as_str());
            self.lock(LockKey::Name(name), LockMode::Exclusive)?;
        }
        self.write(Op::DropTable(table))
    }

    /// Removes every row of a table.
    pub fn truncate(&mut self, table: Oid) -> Result<()> {
        self.lock_table_for_ddl(table)?;
        self.write(Op::Truncate(table))
    }

    /// Changes a table's definition.
    pub fn alter_table(&mut self, table: Oid, op: AlterOp) -> Result<()> {
        self.lock_table_for_ddl(table)?;
        if let AlterOp::RenameTable(name) = &op {
            if self.name_taken(name)? {
                return Err(Error::new(SqlState::DUPLICATE_TABLE, format!("relation \"{name}\" already exists")));
            }
        }
        self.write(Op::Alter { table, op })
    }

    /// Creates a sequence (its oid from [`allocate_oid`](Self::allocate_oid)).
    pub fn create_sequence(&mut self, def: SequenceDef) -> Result<()> {
        if self.name_taken(&def.name)? {
            return Err(Error::new(SqlState::DUPLICATE_TABLE, format!("relation \"{}\" already exists", def.name)));
        }
        if def.increment == 0 {
            return Err(Error::new(SqlState::INVALID_PARAMETER_VALUE, "INCREMENT must not be zero"));
        }
        if def.min > def.max || def.start < def.min || def.start > def.max {
            return Err(Error::new(
                SqlState::INVALID_PARAMETER_VALUE,
                format!(
                    "START value ({}) cannot be outside MINVALUE ({}) and MAXVALUE ({})",
                    def.start, def.min, def.max
                ),
            ));
        }
        self.write(Op::CreateSequence(Arc::new(def)))
    }

    /// Drops a sequence.
    pub fn drop_sequence(&mut self, seq: Oid) -> Result<()> {
        self.lock(LockKey::Table(seq), LockMode::Exclusive)?;
        if let Some(def) = self.state.sequences.get(&seq).cloned() {
            self.lock(LockKey::Name(Arc::from(def.name.as_str())), LockMode::Exclusive)?;
        }
        self.write(Op::DropSequence(seq))
    }

    /// Advances a sequence and returns its new value. Like PostgreSQL's nextval this is not undone by a
    /// rollback: the new position goes to the WAL at once, in a record of its own.
    pub fn nextval(&mut self, seq: Oid) -> Result<i64> {
        self.set_sequence(seq, |def, cur| {
            if !cur.called {
                return Ok((cur.last, true));
            }
            let next = cur.last.checked_add(def.increment);
            match next {
                Some(n) if n >= def.min && n <= def.max => Ok((n, true)),
                _ if def.cycle => Ok((if def.increment > 0 { def.min } else { def.max }, true)),
                _ => Err(Error::new(
                    SqlState("2200H"),
                    format!(
                        "nextval: reached {} value of sequence \"{}\" ({})",
                        if def.increment > 0 { "maximum" } else { "minimum" },
                        def.name,
                        if def.increment > 0 { def.max } else { def.min }
                    ),
                )),
            }
        })
    }

    /// Sets a sequence's position, as PostgreSQL's setval does (not undone by a rollback).
    pub fn setval(&mut self, seq: Oid, value: i64, called: bool) -> Result<i64> {
        self.set_sequence(seq, |def, _| {
            if value < def.min || value > def.max {
                return Err(Error::new(
                    SqlState::NUMERIC_VALUE_OUT_OF_RANGE,
                    format!(
                        "setval: value {value} is out of bounds for sequence \"{}\" ({}..{})",
                        def.name, def.min, def.max
                    ),
                ));
            }
            Ok((value, called))
        })
    }

    fn set_sequence(
        &mut self,
        seq: Oid,
        step: impl Fn(&SequenceDef, SequenceValue) -> Result<(i64, bool)>,
    ) -> Result<i64> {
        self.check_writable()?;
        let undefined = || Error::new(SqlState::UNDEFINED_TABLE, format!("sequence with oid {seq} does not exist"));
        let committed = lock_mutex(&self.core.latest).sequences.contains_key(&seq);
        if !committed {
            // Created by this transaction: it advances inside the transaction.
            let def = self.state.sequences.get(&seq).cloned().ok_or_else(undefined)?;
            let cur = self.state.sequence_values.get(&seq).copied().ok_or_else(undefined)?;
            let (value, called) = step(&def, cur)?;
            self.write(Op::SetSequence { seq, value, called })?;
            return Ok(value);
        }
        let mut wal = self.core.wal.lock();
        let mut latest = lock_mutex(&self.core.latest);
        let def = latest.sequences.get(&seq).cloned().ok_or_else(undefined)?;
        let cur = latest.sequence_values.get(&seq).copied().ok_or_else(undefined)?;
        let (value, called) = step(&def, cur)?;
        let op = Op::SetSequence { seq, value, called };
        let payload = encode_commit(std::slice::from_ref(&op));
        let appended = wal.append(RecordKind::Commit, 0, &payload, crc32c::crc32c(&payload))?;
        latest.apply(&op)?;
        // Queued like a commit, so that a WAL failure rolls it back with everything after it.
        self.core.enqueue(appended.end, SyncLevel::Local, latest.clone());
        drop(latest);
        drop(wal);
        self.state.sequence_values.insert(seq, SequenceValue { last: value, called });
        Ok(value)
    }

    /// Marks a savepoint.
    pub fn savepoint(&self) -> Savepoint {
        Savepoint {
            state: self.state.clone(),
            ops: self.ops.len(),
            written: self.written.clone(),
            increments: self.increments.clone(),
        }
    }

    /// Undoes everything after a savepoint. (Locks taken since are kept until the end, as a safe
    /// simplification.)
    pub fn rollback_to(&mut self, sp: &Savepoint) {
        self.ops.truncate(sp.ops);
        self.written = sp.written.clone();
        self.increments = sp.increments.clone();
        // Under READ COMMITTED the base may have moved since: rebuild from the current base.
        let mut state = self.base.clone();
        let rebuilt = self.ops.iter().try_for_each(|op| state.apply(op));
        self.state = if rebuilt.is_ok() { state } else { sp.state.clone() };
    }

    /// Commits: appends the commit record, applies it to the latest state and releases the locks. The
    /// returned ticket's [`wait`](CommitTicket::wait) returns once the commit is acknowledged.
    pub fn commit(mut self) -> Result<CommitTicket> {
        self.finished = true;
        let result = self.commit_inner();
        self.core.locks.release_all(self.xid);
        result
    }

    fn commit_inner(&mut self) -> Result<CommitTicket> {
        if self.ops.is_empty() && self.increments.is_empty() {
            if self.read_dependency > self.core.acked() {
                return Ok(CommitTicket::read_dependency(self.core.clone(), self.read_dependency));
            }
            return Ok(CommitTicket::done());
        }
        self.check_not_fenced()?;
        if self.increments.iter().any(|x| self.failed_upgrades.contains(&(x.table, x.key.clone()))) {
            return Err(Error::new(
                SqlState::SERIALIZATION_FAILURE,
                "could not serialize access due to concurrent update",
            )
            .with_detail("An earlier statement of this transaction failed while waiting for a row it had updated."));
        }
        // Without increments, the record is encoded before the append lock is taken.
        let encoded = self.increments.is_empty().then(|| encode(&self.ops));
        let mut wal = self.core.wal.lock();
        if self.core.epoch.load(Ordering::Acquire) != self.epoch {
            return Err(Error::new(
                SqlState::SERIALIZATION_FAILURE,
                "could not commit: a WAL write failure discarded commits this transaction may depend on",
            )
            .with_hint("Retry the transaction."));
        }
        // Only a holder of the append lock replaces `latest`, so the lock on `latest` itself is held just
        // to copy it out and to put the new state in: sessions reading the newest rows never wait for the
        // work in between.
        let mut next = lock_mutex(&self.core.latest).clone();
        for op in &self.ops {
            next.apply(op)?;
        }
        for inc in std::mem::take(&mut self.increments) {
            let row = next.row(inc.table, &inc.key).cloned().ok_or_else(concurrent_delete)?;
            let row = apply_changes(&inc.changes, row)?;
            let op = Op::Put { table: inc.table, key: inc.key, row };
            next.apply(&op)?;
            self.ops.push(op);
        }
        next.next_oid = next.next_oid.max(self.state.next_oid);
        let (payload, crc) = encoded.unwrap_or_else(|| encode(&self.ops));
        let appended = wal.append(RecordKind::Commit, self.xid, &payload, crc)?;
        if self.ops.iter().any(|op| matches!(op, Op::Alter { .. })) {
            self.core.altered_since_checkpoint.store(true, Ordering::Release);
        }
        *lock_mutex(&self.core.latest) = next.clone();
        let slot = self.core.enqueue(appended.end, self.sync_level, next);
        drop(wal);
        Ok(CommitTicket::pending(self.core.clone(), slot, self.sync_level, appended.end))
    }

    /// Rolls back: forgets the writes and releases the locks.
    pub fn rollback(mut self) {
        self.finished = true;
        self.core.locks.release_all(self.xid);
    }
}

impl Drop for Transaction {
    fn drop(&mut self) {
        if !self.finished {
            self.core.locks.release_all(self.xid);
        }
    }
}

fn not_null(def: &TableDef, col: usize) -> Error {
    Error::new(
        SqlState::NOT_NULL_VIOLATION,
        format!(
            "null value in column \"{}\" of relation \"{}\" violates not-null constraint",
            def.columns[col].name, def.name
        ),
    )
}

/// A value as an error message shows it.
pub fn display_value(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => if *b { "t" } else { "f" }.into(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => f.to_string(),
        Value::Numeric(d) => d.get().to_string(),
        Value::Text(s) => s.to_string(),
        Value::Bytes(b) => format!("\\x{}", b.iter().map(|x| format!("{x:02x}")).collect::<String>()),
        Value::Date(d) => format!("date {d}"),
        Value::Timestamp(t) | Value::TimestampTz(t) => format!("timestamp {t}"),
        Value::Interval(i) => format!("interval {}", crate::sql::interval::format(i)),
    }
}
