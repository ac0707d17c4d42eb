//! Row and table locks, and deadlock detection.
//!
//! Writers lock what they change: a row (by table and key), a unique-index value, a table (shared for DML,
//! exclusive for DDL) or a table name (for CREATE). Readers take no locks at all: they read snapshots.
//!
//! Locks are released when the transaction's commit record has been appended to the WAL, before it is
//! flushed (early lock release). The next writer of a hot row therefore waits for a memcpy, not for an
//! fdatasync and a standby round trip; it reads the newest version, which is in the WAL ahead of its own
//! commit, so it can never become durable before the version it built on.
//!
//! A transaction about to wait records whom it waits for, then walks the wait-for graph from there. If the
//! walk comes back to itself, waiting would deadlock: it gets SQLSTATE 40P01 at once, and the others go on.
//! (PostgreSQL first sleeps `deadlock_timeout`, one second; checking at each wait costs a short walk.)

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use crate::error::{Error, Result, SqlState};
use crate::storage::catalog::Oid;
use crate::storage::value::Key;
use crate::wal::writer::lock;

/// What can be locked.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum LockKey {
    /// A whole table: shared for row changes, exclusive for DDL.
    Table(Oid),
    /// A table name, so two transactions cannot create the same table.
    Name(Arc<str>),
    /// A row, by table and key.
    Row(Oid, Key),
    /// A value of a unique index, by index oid.
    Unique(Oid, Key),
}

/// A lock mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockMode {
    Shared,
    Exclusive,
}

#[derive(Default)]
struct Entry {
    holders: Vec<(u64, LockMode)>,
    /// Waiting requests in arrival order.
    waiters: Vec<(LockMode, Arc<Condvar>)>,
}

impl Entry {
    /// Wakes the waiters that may be able to go now: the first, and the shared requests right after a
    /// shared first. Waking everyone would send a herd of threads to the lock table to find it taken.
    fn wake_next(&self) {
        let mut shared_run = true;
        for (i, (mode, cv)) in self.waiters.iter().enumerate() {
            if i > 0 && !(shared_run && *mode == LockMode::Shared) {
                break;
            }
            shared_run &= *mode == LockMode::Shared;
            cv.notify_one();
        }
    }
}

#[derive(Default)]
struct Table {
    locks: HashMap<LockKey, Entry>,
    /// For each waiting transaction, the transactions it waits for.
    waits_for: HashMap<u64, Vec<u64>>,
    /// The keys each transaction holds.
    held: HashMap<u64, Vec<LockKey>>,
}

/// The lock table of a server.
#[derive(Default)]
pub struct LockManager {
    table: Mutex<Table>,
}

impl LockManager {
    /// Acquires a lock for transaction `xid`, waiting as long as needed. Fails with 40P01 if waiting would
    /// deadlock, or 57014 if `cancel` is set while waiting.
    pub fn acquire(&self, xid: u64, key: &LockKey, mode: LockMode, cancel: &AtomicBool) -> Result<()> {
        let mut t = lock(&self.table);
        let mut cv: Option<Arc<Condvar>> = None;
        loop {
            let entry = t.locks.entry(key.clone()).or_default();
            let mine = entry.holders.iter().position(|(x, _)| *x == xid);
            let others: Vec<u64> = entry.holders.iter().filter(|(x, _)| *x != xid).map(|(x, _)| *x).collect();
            let compatible = match (mode, mine) {
                (_, Some(i)) if entry.holders[i].1 == LockMode::Exclusive => true,
                (LockMode::Shared, _) => entry.holders.iter().all(|(x, m)| *x == xid || *m == LockMode::Shared),
                (LockMode::Exclusive, _) => others.is_empty(),
            };
            if compatible {
                if let Some(c) = &cv {
                    entry.waiters.retain(|(_, w)| !Arc::ptr_eq(w, c));
                }
                match mine {
                    Some(i) => {
                        if mode == LockMode::Exclusive {
                            entry.holders[i].1 = LockMode::Exclusive;
                        }
                    }
                    None => {
                        entry.holders.push((xid, mode));
                        t.held.entry(xid).or_default().push(key.clone());
                    }
                }
                t.waits_for.remove(&xid);
                return Ok(());
            }
            let c = cv.get_or_insert_with(|| Arc::new(Condvar::new())).clone();
            if !entry.waiters.iter().any(|(_, w)| Arc::ptr_eq(w, &c)) {
                entry.waiters.push((mode, c.clone()));
            }
            t.waits_for.insert(xid, others);
            if deadlocked(&t.waits_for, xid) || cancel.load(Ordering::Relaxed) {
                t.waits_for.remove(&xid);
                if let Some(e) = t.locks.get_mut(key) {
                    e.waiters.retain(|(_, w)| !Arc::ptr_eq(w, &c));
                    // This request gives up: let the next one try.
                    if e.holders.is_empty() {
                        e.wake_next();
                    }
                }
                if cancel.load(Ordering::Relaxed) {
                    return Err(Error::new(SqlState::QUERY_CANCELED, "canceling statement due to user request"));
                }
                return Err(Error::new(SqlState::DEADLOCK_DETECTED, "deadlock detected").with_detail(format!(
                    "Transaction {xid} waits for a lock held by a transaction that waits, directly or not, for {xid}."
                )));
            }
            // Wake up now and then to notice a cancel request.
            t = c.wait_timeout(t, Duration::from_millis(100)).unwrap_or_else(|e| e.into_inner()).0;
        }
    }

    /// Releases every lock of a transaction and wakes those waiting for them.
    pub fn release_all(&self, xid: u64) {
        let mut t = lock(&self.table);
        t.waits_for.remove(&xid);
        let Some(keys) = t.held.remove(&xid) else { return };
        for key in keys {
            if let Some(entry) = t.locks.get_mut(&key) {
                entry.holders.retain(|(x, _)| *x != xid);
                entry.wake_next();
                if entry.holders.is_empty() && entry.waiters.is_empty() {
                    t.locks.remove(&key);
                }
            }
        }
    }

    /// How many lock entries exist (for tests: everything released leaves none).
    pub fn len(&self) -> usize {
        lock(&self.table).locks.len()
    }

    /// Whether no lock is held or awaited.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Whether `start` waits, through the graph, for itself.
fn deadlocked(waits_for: &HashMap<u64, Vec<u64>>, start: u64) -> bool {
    let mut seen = HashSet::new();
    let mut stack: Vec<u64> = waits_for.get(&start).cloned().unwrap_or_default();
    while let Some(x) = stack.pop() {
        if x == start {
            return true;
        }
        if seen.insert(x) {
            if let Some(next) = waits_for.get(&x) {
                stack.extend(next.iter().copied());
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::value::Value;

    fn row(k: i64) -> LockKey {
        LockKey::Row(1, Arc::from(vec![Value::Int(k)]))
    }

    #[test]
    fn shared_and_exclusive() {
        let m = LockManager::default();
        let no = AtomicBool::new(false);
        m.acquire(1, &LockKey::Table(1), LockMode::Shared, &no).unwrap();
        m.acquire(2, &LockKey::Table(1), LockMode::Shared, &no).unwrap();
        m.acquire(1, &row(1), LockMode::Exclusive, &no).unwrap();
        m.acquire(1, &row(1), LockMode::Exclusive, &no).unwrap();
        m.release_all(1);
        m.release_all(2);
        assert!(m.is_empty());
    }

    #[test]
    fn deadlock_is_detected() {
        let m = Arc::new(LockManager::default());
        let no = AtomicBool::new(false);
        m.acquire(1, &row(1), LockMode::Exclusive, &no).unwrap();
        m.acquire(2, &row(2), LockMode::Exclusive, &no).unwrap();
        let m2 = m.clone();
        let t = std::thread::spawn(move || {
            let r = m2.acquire(1, &row(2), LockMode::Exclusive, &AtomicBool::new(false));
            m2.release_all(1);
            r
        });
        std::thread::sleep(Duration::from_millis(50));
        let err = m.acquire(2, &row(1), LockMode::Exclusive, &no).unwrap_err();
        assert_eq!(err.code, SqlState::DEADLOCK_DETECTED);
        m.release_all(2);
        t.join().unwrap().unwrap();
        assert!(m.is_empty());
    }
}
