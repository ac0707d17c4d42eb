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
//! A row that transactions only add to (`UPDATE t SET c = c + e WHERE pk = ...`, the value never read back)
//! is locked in Increment mode, which several transactions hold at once: each adds its change to the
//! newest version when it commits, under the WAL append lock, so the changes commute and none is lost. A
//! hot counter row (pgbench's branch balance) then serializes nobody. A holder that needs the value after
//! all upgrades to Exclusive; see [`Entry::verdict`].
//!
//! A transaction about to wait records whom it waits for, then walks the wait-for graph from there. If the
//! walk comes back to itself, waiting would deadlock: it gets SQLSTATE 40P01 at once, and the others go on.
//! (PostgreSQL first sleeps `deadlock_timeout`, one second; checking at each wait costs a short walk.)

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

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
    /// A row some transactions only add to (`SET c = c + e`, never read back): compatible with itself.
    /// A holder that comes to need the row's value upgrades to Exclusive (see [`LockManager::acquire`]).
    Increment,
}

struct Waiter {
    xid: u64,
    mode: LockMode,
    /// A holder of Increment asking for Exclusive.
    upgrade: bool,
    cv: Arc<Condvar>,
}

#[derive(Default)]
struct Entry {
    holders: Vec<(u64, LockMode)>,
    /// Waiting requests in arrival order.
    waiters: Vec<Waiter>,
}

/// Whether a request can be granted now, or whom it waits for.
enum Verdict {
    Grant,
    Wait(Vec<u64>),
}

impl Entry {
    fn upgrading(&self, xid: u64) -> bool {
        self.waiters.iter().any(|w| w.upgrade && w.xid == xid)
    }

    /// Decides a request of `xid` for `mode`.
    ///
    /// Increment holders share the row; each adds its change to the newest version when it commits. A
    /// holder that needs the value (to read it, or to write the row some other way) upgrades to Exclusive:
    /// that is granted once every other holder is an incrementer that is itself waiting to upgrade. Those
    /// cannot commit before they get the row in turn, so their changes come after the upgrader's, and two
    /// upgraders never wait for each other. A new incrementer queues behind waiting writers and upgraders,
    /// so they are not starved.
    fn verdict(&self, xid: u64, mode: LockMode) -> Verdict {
        let mine = self.holders.iter().find(|(x, _)| *x == xid).map(|(_, m)| *m);
        let others = || self.holders.iter().filter(|(x, _)| *x != xid);
        let blockers = |f: &dyn Fn(u64, LockMode) -> bool| -> Vec<u64> {
            others().filter(|(x, m)| f(*x, *m)).map(|(x, _)| *x).collect()
        };
        let blocked = match (mode, mine) {
            (_, Some(LockMode::Exclusive)) => vec![],
            (LockMode::Increment, Some(LockMode::Increment)) => vec![],
            (LockMode::Shared, _) => blockers(&|_, m| m != LockMode::Shared),
            (LockMode::Exclusive, Some(LockMode::Increment)) => {
                blockers(&|x, m| !(m == LockMode::Increment && self.upgrading(x)))
            }
            (LockMode::Exclusive, _) => blockers(&|_, _| true),
            (LockMode::Increment, _) => {
                let mut b = blockers(&|_, m| m != LockMode::Increment);
                b.extend(
                    self.waiters
                        .iter()
                        .filter(|w| w.xid != xid && (w.upgrade || w.mode != LockMode::Increment))
                        .map(|w| w.xid),
                );
                b
            }
        };
        if blocked.is_empty() {
            Verdict::Grant
        } else {
            Verdict::Wait(blocked)
        }
    }

    /// Wakes the waiters that may be able to go now: the first, the requests of the same shared kind
    /// (Shared or Increment) right after it, and every upgrader. Waking everyone would send a herd of
    /// threads to the lock table to find it taken.
    fn wake_next(&self) {
        let first = self.waiters.first().map(|w| w.mode);
        let mut run = true;
        for (i, w) in self.waiters.iter().enumerate() {
            run &= i == 0 || (Some(w.mode) == first && w.mode != LockMode::Exclusive && !w.upgrade);
            if run || w.upgrade {
                w.cv.notify_one();
            }
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
        let limits = crate::activity::limits();
        let lock_deadline = limits.lock_timeout.map(|d| Instant::now() + d);
        loop {
            let entry = t.locks.entry(key.clone()).or_default();
            let mine = entry.holders.iter().position(|(x, _)| *x == xid);
            let upgrade =
                mode == LockMode::Exclusive && mine.is_some_and(|i| entry.holders[i].1 == LockMode::Increment);
            let blocked = match entry.verdict(xid, mode) {
                Verdict::Grant => {
                    if let Some(c) = &cv {
                        entry.waiters.retain(|w| !Arc::ptr_eq(&w.cv, c));
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
                Verdict::Wait(blocked) => blocked,
            };
            let c = cv.get_or_insert_with(|| Arc::new(Condvar::new())).clone();
            if !entry.waiters.iter().any(|w| Arc::ptr_eq(&w.cv, &c)) {
                entry.waiters.push(Waiter { xid, mode, upgrade, cv: c.clone() });
                if upgrade {
                    // Other upgraders may now go: let them look again.
                    for w in entry.waiters.iter().filter(|w| w.upgrade && w.xid != xid) {
                        w.cv.notify_one();
                    }
                }
            }
            t.waits_for.insert(xid, blocked);
            // statement_timeout and lock_timeout end the wait as a cancel does, with their own errors.
            let now = Instant::now();
            let timed_out = if limits.deadline.is_some_and(|d| now >= d) {
                Some(crate::activity::statement_timeout_error())
            } else if lock_deadline.is_some_and(|d| now >= d) {
                Some(crate::activity::lock_timeout_error())
            } else {
                None
            };
            if deadlocked(&t.waits_for, xid) || cancel.load(Ordering::Relaxed) || timed_out.is_some() {
                t.waits_for.remove(&xid);
                if let Some(e) = t.locks.get_mut(key) {
                    e.waiters.retain(|w| !Arc::ptr_eq(&w.cv, &c));
                    // This request gives up: let the next ones look again.
                    e.wake_next();
                }
                if let Some(e) = timed_out {
                    return Err(e);
                }
                if cancel.load(Ordering::Relaxed) {
                    return Err(Error::new(SqlState::QUERY_CANCELED, "canceling statement due to user request"));
                }
                return Err(Error::new(SqlState::DEADLOCK_DETECTED, "deadlock detected").with_detail(format!(
                    "Transaction {xid} waits for a lock held by a transaction that waits, directly or not, for {xid}."
                )));
            }
            // Wake up now and then to notice a cancel request, and at the first time limit.
            let mut nap = Duration::from_millis(100);
            for d in [limits.deadline, lock_deadline].into_iter().flatten() {
                nap = nap.min(d.saturating_duration_since(now) + Duration::from_millis(1));
            }
            let _waiting = crate::activity::waiting(crate::activity::Wait::Lock);
            t = c.wait_timeout(t, nap).unwrap_or_else(|e| e.into_inner()).0;
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
        LockKey::Row(1, Key::One(Value::Int(k)))
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
    fn incrementers_share_and_upgraders_take_turns() {
        let m = Arc::new(LockManager::default());
        let no = AtomicBool::new(false);
        m.acquire(1, &row(1), LockMode::Increment, &no).unwrap();
        m.acquire(2, &row(1), LockMode::Increment, &no).unwrap();
        // 1 upgrades: it waits for 2, an incrementer that might still commit.
        let m1 = m.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        let t = std::thread::spawn(move || {
            m1.acquire(1, &row(1), LockMode::Exclusive, &AtomicBool::new(false)).unwrap();
            tx.send(()).unwrap();
            std::thread::sleep(Duration::from_millis(100));
            m1.release_all(1);
        });
        assert!(rx.recv_timeout(Duration::from_millis(200)).is_err(), "1 upgraded past a plain incrementer");
        // 2 upgrades too: it goes first (1 only waits), no deadlock; 1 follows once 2 is done.
        m.acquire(2, &row(1), LockMode::Exclusive, &no).unwrap();
        assert!(rx.recv_timeout(Duration::from_millis(200)).is_err(), "two holders of Exclusive");
        // A writer from outside gets the row once the upgrader is done.
        m.release_all(2);
        rx.recv_timeout(Duration::from_secs(5)).expect("1 upgraded once 2 was gone");
        m.acquire(3, &row(1), LockMode::Exclusive, &no).unwrap();
        t.join().unwrap();
        m.release_all(3);
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
