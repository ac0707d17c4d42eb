//! What each backend is doing: the registry behind `pg_stat_activity`, `pg_cancel_backend` and
//! `pg_terminate_backend`.
//!
//! A backend (a client session, or a WAL sender serving a standby) registers when its connection has
//! started up and leaves when it ends. A session publishes its state as it goes, as PostgreSQL's
//! `track_activities` does: `active` with the statement's text when a statement starts, then `idle`,
//! `idle in transaction` or `idle in transaction (aborted)` when it is ready for the next one. That is
//! one uncontended mutex per backend, taken twice per statement; a prepared statement's text is shared,
//! not copied.
//!
//! While a backend blocks, it shows a wait event: a row lock (`Lock`/`transactionid`), its commit's WAL
//! flush (`LWLock`/`WALWrite`), a synchronous standby's confirmation (`IPC`/`SyncRep`). The engine's
//! blocking points publish them through a thread-local handle ([`waiting`]), so the lock manager and the
//! commit pipeline need not know about sessions; on a thread that is not a backend it does nothing.
//!
//! The same thread-local carries the running statement's time limits ([`Limits`]): `statement_timeout` as
//! a deadline, and `lock_timeout`. Row-lock waits end at either ([`lock_timeout_error`],
//! [`statement_timeout_error`]); long loops (scans, joins, pg_sleep) call [`check_interrupts`], which also
//! sees a cancel, now and then.
//!
//! Cancel and terminate act on the flags the session already checks: cancel sets its running
//! transaction's cancel flag (as a CancelRequest does); terminate also marks the backend and shuts the
//! read side of its socket, so an idle session wakes from its read, and the session ends with FATAL 57P01
//! as PostgreSQL's does.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::error::{Error, Result, SqlState};

/// The running transaction's cancel flag, as a session publishes it (None between transactions).
pub type CancelSlot = Arc<Mutex<Option<Arc<AtomicBool>>>>;

/// Every registered backend, by pid.
#[derive(Default)]
pub struct Registry {
    backends: Mutex<BTreeMap<i32, Arc<Backend>>>,
}

impl Registry {
    pub fn add(&self, backend: Arc<Backend>) {
        lock(&self.backends).insert(backend.pid, backend);
    }

    pub fn remove(&self, pid: i32) {
        lock(&self.backends).remove(&pid);
    }

    pub fn get(&self, pid: i32) -> Option<Arc<Backend>> {
        lock(&self.backends).get(&pid).cloned()
    }

    /// Every backend, in pid order.
    pub fn list(&self) -> Vec<Arc<Backend>> {
        lock(&self.backends).values().cloned().collect()
    }
}

/// What kind of process PostgreSQL would show (`backend_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Client,
    WalSender,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Client => "client backend",
            Kind::WalSender => "walsender",
        }
    }
}

/// `pg_stat_activity.state`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Active,
    Idle,
    IdleInTransaction,
    IdleInTransactionAborted,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::Active => "active",
            State::Idle => "idle",
            State::IdleInTransaction => "idle in transaction",
            State::IdleInTransactionAborted => "idle in transaction (aborted)",
        }
    }
}

/// What a blocked backend waits for (`wait_event_type`, `wait_event`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Wait {
    None = 0,
    /// A row lock another transaction holds.
    Lock = 1,
    /// Its commit record's WAL flush.
    WalWrite = 2,
    /// A synchronous standby's confirmation of its commit.
    SyncRep = 3,
    /// A WAL sender with nothing to do.
    WalSenderMain = 4,
    /// pg_sleep.
    PgSleep = 5,
}

impl Wait {
    fn from_u8(v: u8) -> Wait {
        match v {
            1 => Wait::Lock,
            2 => Wait::WalWrite,
            3 => Wait::SyncRep,
            4 => Wait::WalSenderMain,
            5 => Wait::PgSleep,
            _ => Wait::None,
        }
    }

    /// (wait_event_type, wait_event), PostgreSQL 15's names.
    pub fn names(self) -> Option<(&'static str, &'static str)> {
        match self {
            Wait::None => None,
            Wait::Lock => Some(("Lock", "transactionid")),
            Wait::WalWrite => Some(("LWLock", "WALWrite")),
            Wait::SyncRep => Some(("IPC", "SyncRep")),
            Wait::WalSenderMain => Some(("Activity", "WalSenderMain")),
            Wait::PgSleep => Some(("Timeout", "PgSleep")),
        }
    }
}

/// One backend's published state.
pub struct Backend {
    pub pid: i32,
    pub kind: Kind,
    /// When the connection started (µs since 2000-01-01).
    pub started: i64,
    /// The client's address; None for a Unix-domain socket.
    pub client: Option<SocketAddr>,
    pub user: String,
    pub database: String,
    pub application_name: String,
    info: Mutex<Info>,
    wait: AtomicU8,
    cancel: CancelSlot,
    terminated: AtomicBool,
    /// Shuts the read side of the backend's socket.
    close_read: Box<dyn Fn() + Send + Sync>,
}

/// The part of a backend's state that changes per statement.
#[derive(Clone)]
pub struct Info {
    pub state: State,
    /// The running statement's text, or the last one's once idle.
    pub query: Arc<str>,
    pub query_start: Option<i64>,
    /// When the current transaction started; None outside one.
    pub xact_start: Option<i64>,
    pub state_change: i64,
}

/// A backend as `pg_stat_activity` shows it at one moment.
pub struct Snapshot {
    pub info: Info,
    pub wait: Wait,
}

impl Backend {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        pid: i32,
        kind: Kind,
        client: Option<SocketAddr>,
        user: &str,
        database: &str,
        application_name: &str,
        cancel: CancelSlot,
        close_read: Box<dyn Fn() + Send + Sync>,
    ) -> Backend {
        let now = now_usecs();
        let state = if kind == Kind::WalSender { State::Active } else { State::Idle };
        Backend {
            pid,
            kind,
            started: now,
            client,
            user: user.to_string(),
            database: database.to_string(),
            application_name: application_name.to_string(),
            info: Mutex::new(Info {
                state,
                query: Arc::from(""),
                query_start: None,
                xact_start: None,
                state_change: now,
            }),
            wait: AtomicU8::new(if kind == Kind::WalSender { Wait::WalSenderMain as u8 } else { Wait::None as u8 }),
            cancel,
            terminated: AtomicBool::new(false),
            close_read,
        }
    }

    /// A statement starts.
    pub fn start(&self, query: Arc<str>) {
        let now = now_usecs();
        let mut i = lock(&self.info);
        if i.xact_start.is_none() {
            i.xact_start = Some(now);
        }
        i.state = State::Active;
        i.query = query;
        i.query_start = Some(now);
        i.state_change = now;
    }

    /// The backend is ready for the next statement, in this state.
    pub fn ready(&self, state: State) {
        let mut i = lock(&self.info);
        if i.state == state {
            return;
        }
        if state == State::Idle {
            i.xact_start = None;
        }
        i.state = state;
        i.state_change = now_usecs();
    }

    /// For a WAL sender: the replication command it runs.
    pub fn set_query(&self, query: &str) {
        let now = now_usecs();
        let mut i = lock(&self.info);
        i.query = Arc::from(query);
        i.query_start = Some(now);
        i.state_change = now;
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot { info: lock(&self.info).clone(), wait: Wait::from_u8(self.wait.load(Ordering::Relaxed)) }
    }

    fn set_wait(&self, wait: Wait) {
        self.wait.store(wait as u8, Ordering::Relaxed);
    }

    /// Cancels the running statement, if any (as a CancelRequest does). Returns false if none runs.
    pub fn cancel(&self) -> bool {
        match lock(&self.cancel).as_ref() {
            Some(flag) => {
                flag.store(true, Ordering::Relaxed);
                true
            }
            None => false,
        }
    }

    /// Ends the backend: cancels what it runs and wakes it from reading its client.
    pub fn terminate(&self) {
        self.terminated.store(true, Ordering::Relaxed);
        self.cancel();
        (self.close_read)();
    }

    pub fn terminated(&self) -> bool {
        self.terminated.load(Ordering::Relaxed)
    }
}

thread_local! {
    static CURRENT: RefCell<Option<Arc<Backend>>> = const { RefCell::new(None) };
    static LIMITS: Cell<Limits> = const { Cell::new(Limits { deadline: None, lock_timeout: None }) };
}

/// The running statement's time limits: `statement_timeout` as a deadline, and `lock_timeout`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Limits {
    pub deadline: Option<Instant>,
    pub lock_timeout: Option<Duration>,
}

/// Sets this thread's statement limits (a session does at each statement, and clears them after).
pub fn set_limits(limits: Limits) {
    LIMITS.with(|l| l.set(limits));
}

pub fn limits() -> Limits {
    LIMITS.with(Cell::get)
}

pub fn statement_timeout_error() -> Error {
    Error::new(SqlState::QUERY_CANCELED, "canceling statement due to statement timeout")
}

pub fn lock_timeout_error() -> Error {
    Error::new(SqlState("55P03"), "canceling statement due to lock timeout")
}

/// Fails if the running statement has been cancelled or terminated, or has run past `statement_timeout`.
/// Long loops (scans, joins, pg_sleep) call it now and then; blocking waits watch the same conditions.
pub fn check_interrupts() -> Result<()> {
    if limits().deadline.is_some_and(|d| Instant::now() >= d) {
        return Err(statement_timeout_error());
    }
    if cancel_requested() {
        return Err(Error::new(SqlState::QUERY_CANCELED, "canceling statement due to user request"));
    }
    Ok(())
}

/// Makes `backend` the one this thread's wait events are published on (until the guard drops).
pub fn enter(backend: Arc<Backend>) -> Entered {
    CURRENT.with(|c| *c.borrow_mut() = Some(backend));
    Entered(())
}

/// Clears the thread's backend when dropped.
pub struct Entered(());

impl Drop for Entered {
    fn drop(&mut self) {
        CURRENT.with(|c| *c.borrow_mut() = None);
    }
}

/// Sets the text this thread's backend shows as its query (a WAL sender's replication command).
pub fn set_query(query: &str) {
    CURRENT.with(|c| {
        if let Some(b) = c.borrow().as_ref() {
            b.set_query(query);
        }
    });
}

/// Whether the statement this thread's backend runs has been asked to stop (pg_cancel_backend, a
/// CancelRequest, pg_terminate_backend).
pub fn cancel_requested() -> bool {
    CURRENT.with(|c| {
        c.borrow()
            .as_ref()
            .is_some_and(|b| b.terminated() || lock(&b.cancel).as_ref().is_some_and(|f| f.load(Ordering::Relaxed)))
    })
}

/// Whether this thread's backend has been ended by pg_terminate_backend.
pub fn terminating() -> bool {
    CURRENT.with(|c| c.borrow().as_ref().is_some_and(|b| b.terminated()))
}

/// Publishes that this thread's backend waits for `wait`, until the guard drops (or [`Waiting::set`]
/// changes it). Does nothing on a thread that is not a backend.
pub fn waiting(wait: Wait) -> Waiting {
    let backend = CURRENT.with(|c| c.borrow().clone());
    if let Some(b) = &backend {
        b.set_wait(wait);
    }
    Waiting(backend)
}

/// A published wait event; cleared on drop.
pub struct Waiting(Option<Arc<Backend>>);

impl Waiting {
    pub fn set(&self, wait: Wait) {
        if let Some(b) = &self.0 {
            b.set_wait(wait);
        }
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        if let Some(b) = &self.0 {
            b.set_wait(Wait::None);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Now, in µs since 2000-01-01 (PostgreSQL's timestamp epoch).
fn now_usecs() -> i64 {
    crate::sql::types::now_usecs()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend() -> Arc<Backend> {
        let slot: CancelSlot = Arc::new(Mutex::new(None));
        Arc::new(Backend::new(7, Kind::Client, None, "u", "db", "app", slot, Box::new(|| {})))
    }

    #[test]
    fn states_and_transaction_start() {
        let b = backend();
        assert_eq!(b.snapshot().info.state, State::Idle);
        b.start(Arc::from("BEGIN"));
        let s = b.snapshot().info;
        assert_eq!((s.state, &*s.query), (State::Active, "BEGIN"));
        let xact = s.xact_start.expect("a statement starts a transaction");
        b.ready(State::IdleInTransaction);
        b.start(Arc::from("SELECT 1"));
        let s = b.snapshot().info;
        assert_eq!(s.xact_start, Some(xact), "the transaction started with its first statement");
        assert_eq!(&*s.query, "SELECT 1");
        b.ready(State::Idle);
        let s = b.snapshot().info;
        assert_eq!((s.state, s.xact_start, &*s.query), (State::Idle, None, "SELECT 1"));
    }

    #[test]
    fn wait_events_need_an_entered_backend() {
        let b = backend();
        {
            let _w = waiting(Wait::Lock);
            assert_eq!(b.snapshot().wait, Wait::None, "this thread is not the backend's yet");
        }
        let _entered = enter(b.clone());
        {
            let w = waiting(Wait::WalWrite);
            assert_eq!(b.snapshot().wait, Wait::WalWrite);
            w.set(Wait::SyncRep);
            assert_eq!(b.snapshot().wait.names(), Some(("IPC", "SyncRep")));
        }
        assert_eq!(b.snapshot().wait, Wait::None);
    }

    #[test]
    fn cancel_needs_a_running_transaction_and_terminate_marks() {
        let slot: CancelSlot = Arc::new(Mutex::new(None));
        let closed = Arc::new(AtomicBool::new(false));
        let c = closed.clone();
        let b = Backend::new(
            8,
            Kind::Client,
            None,
            "u",
            "db",
            "",
            slot.clone(),
            Box::new(move || c.store(true, Ordering::Relaxed)),
        );
        assert!(!b.cancel());
        let flag = Arc::new(AtomicBool::new(false));
        *slot.lock().unwrap() = Some(flag.clone());
        assert!(b.cancel());
        assert!(flag.load(Ordering::Relaxed));
        b.terminate();
        assert!(b.terminated() && closed.load(Ordering::Relaxed));
    }
}
