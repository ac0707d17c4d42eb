//! The server: accepts PostgreSQL-protocol connections and runs each on its own thread.
//!
//! [`Shared`] is what connections share: the engine, and a registry of live sessions by backend pid with
//! their cancel keys (for CancelRequest, which arrives on a new connection) and their sockets (so a fast
//! shutdown can close them). [`Server::run`] accepts until [`Server::stop`] is called from another thread,
//! then closes every session and shuts the engine down cleanly (checkpoint, control file).

pub mod connection;
pub mod format;
pub mod frontend;
pub mod scheduling;
pub mod stream;

use std::collections::HashMap;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex};

use crate::activity;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::replication::walsender::ReplicationContext;
use stream::{Stream, UnixSocket};

struct Registered {
    secret: i32,
    stream: Stream,
    /// A replication connection: closed after the shutdown checkpoint has been sent (see
    /// [`Server::close_replication`]), not with the sessions.
    replication: bool,
}

/// State shared by all connections.
pub struct Shared {
    pub engine: Arc<Engine>,
    /// WAL senders and replication slots.
    pub replication: Arc<ReplicationContext>,
    next_pid: AtomicI32,
    sessions: Mutex<HashMap<i32, Registered>>,
    /// What each backend is doing (pg_stat_activity), and how to cancel or end it.
    pub activity: Arc<activity::Registry>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    /// Registers a connection: its pid and cancel secret. Its activity is registered once it is known
    /// who connected ([`activity::Registry::add`]).
    fn register(&self, stream: Stream, replication: bool) -> (i32, i32) {
        let pid = self.next_pid.fetch_add(1, Ordering::Relaxed);
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
        let secret = (nanos as i32) ^ pid.wrapping_mul(0x2545_f491);
        lock(&self.sessions).insert(pid, Registered { secret, stream, replication });
        (pid, secret)
    }

    fn deregister(&self, pid: i32) {
        lock(&self.sessions).remove(&pid);
        self.activity.remove(pid);
    }

    /// Handles a CancelRequest: cancels the session's running statement if the key matches.
    fn cancel(&self, pid: i32, secret: i32) {
        let matches = lock(&self.sessions).get(&pid).is_some_and(|r| r.secret == secret);
        if let Some(backend) = self.activity.get(pid).filter(|_| matches) {
            backend.cancel();
        }
    }
}

/// A listening server.
pub struct Server {
    listener: TcpListener,
    /// The Unix-domain sockets, one per directory of `unix_socket_directories`.
    unix: Vec<UnixSocket>,
    shared: Arc<Shared>,
    stopping: Arc<AtomicBool>,
}

impl Server {
    /// Binds the listening socket.
    pub fn bind(addr: SocketAddr, engine: Arc<Engine>, replication: Arc<ReplicationContext>) -> Result<Server> {
        let listener = TcpListener::bind(addr).map_err(|e| Error::io(format!("could not listen on {addr}"), e))?;
        let shared = Arc::new(Shared {
            engine,
            replication,
            next_pid: AtomicI32::new(std::process::id() as i32 * 10 % 1_000_000 + 1000),
            sessions: Mutex::new(HashMap::new()),
            activity: Arc::default(),
        });
        Ok(Server { listener, unix: Vec::new(), shared, stopping: Arc::new(AtomicBool::new(false)) })
    }

    /// Also listens on `DIR/.s.PGSQL.PORT` in each directory, as PostgreSQL's `unix_socket_directories`
    /// (call after [`Server::bind`], so the port is already this server's). Like PostgreSQL, a directory
    /// where the socket cannot be made is logged and skipped; none at all is an error.
    pub fn listen_unix(&mut self, dirs: &[PathBuf]) -> Result<()> {
        let port = self.local_addr()?.port();
        let mut first_error = None;
        for dir in dirs {
            match UnixSocket::bind(dir, port) {
                Ok(s) => self.unix.push(s),
                Err(e) => {
                    tracing::warn!(error = %e.message, "could not listen on a Unix-domain socket");
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) if self.unix.is_empty() => Err(e.with_hint(
                "Set unix_socket_directories in tandem.toml to a writable directory, or to '' for TCP only.",
            )),
            _ => Ok(()),
        }
    }

    /// The Unix-domain socket files the server listens on.
    pub fn socket_paths(&self) -> Vec<PathBuf> {
        self.unix.iter().map(|u| u.path.clone()).collect()
    }

    /// What the connections share.
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> Result<SocketAddr> {
        self.listener.local_addr().map_err(|e| Error::io("listening socket", e))
    }

    /// A handle that stops the server from another thread.
    pub fn stopper(&self) -> Result<Stopper> {
        Ok(Stopper { stopping: self.stopping.clone(), addr: self.local_addr()? })
    }

    /// Accepts connections (TCP on this thread, each Unix socket on one of its own) until stopped, then
    /// closes the sessions. Replication connections stay open, for [`Server::close_replication`].
    pub fn run(&self) {
        std::thread::scope(|scope| {
            for socket in &self.unix {
                scope.spawn(move || self.accept(socket.listener.incoming(), Stream::Unix));
            }
            self.accept(self.listener.incoming(), Stream::Tcp);
            // Stopped: wake the Unix accept loops the way the stopper woke this one.
            for socket in &self.unix {
                let _ = UnixStream::connect(&socket.path);
            }
        });
        for r in lock(&self.shared.sessions).values().filter(|r| !r.replication) {
            let _ = r.stream.shutdown(Shutdown::Both);
        }
    }

    /// Closes the replication connections once the standbys have the WAL up to `end` (the shutdown
    /// checkpoint's), waiting at most `patience`; logs the standbys that did not get it in time.
    pub fn close_replication(&self, end: crate::wal::Lsn, patience: std::time::Duration) {
        let behind = self.shared.replication.drain_senders(end, patience);
        if !behind.is_empty() {
            tracing::warn!(standbys = ?behind, %end, "closing replication connections of standbys that have not flushed the shutdown checkpoint");
        }
        for r in lock(&self.shared.sessions).values() {
            let _ = r.stream.shutdown(Shutdown::Both);
        }
    }

    /// Starts a session for each connection until the server is stopped.
    fn accept<S>(&self, incoming: impl Iterator<Item = std::io::Result<S>>, wrap: fn(S) -> Stream) {
        for stream in incoming {
            if self.stopping.load(Ordering::Acquire) {
                break;
            }
            match stream {
                Ok(s) => self.spawn_session(wrap(s)),
                Err(e) => tracing::warn!(error = %e, "accept failed"),
            }
        }
    }

    fn spawn_session(&self, stream: Stream) {
        let shared = self.shared.clone();
        let spawned = std::thread::Builder::new()
            .name("session".into())
            .stack_size(crate::sql::depth::SESSION_STACK_BYTES)
            .spawn(move || connection::serve(stream, shared));
        if let Err(e) = spawned {
            tracing::error!(error = %e, "could not start a session thread");
        }
    }
}

/// Stops a running server.
#[derive(Clone)]
pub struct Stopper {
    stopping: Arc<AtomicBool>,
    addr: SocketAddr,
}

impl Stopper {
    /// Makes [`Server::run`] return (it wakes the accept loop with a connection of its own).
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::Release);
        let _ = TcpStream::connect(self.addr);
    }
}
