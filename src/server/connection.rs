//! One client connection: the PostgreSQL v3 protocol state machine, on its own OS thread.
//!
//! The engine blocks (row-lock waits, commit flushes), so every connection gets a thread and uses
//! blocking I/O: a session waiting for its commit to be durable stalls nobody else, and many sessions
//! waiting at once is exactly what lets group commit cover them with one fdatasync.
//!
//! Framing is read here (so a length is checked before anything is allocated: an oversized query gets
//! 54000 and its bytes are skipped, a nonsensical length closes the connection); message bodies are
//! decoded with every field checked ([`super::frontend`]) and replies are encoded with the `pgwire` crate's
//! message codec. A bug that panics ends only its own session. Extended-protocol errors
//! discard messages until Sync, as PostgreSQL does.

use std::collections::HashMap;
use std::io::{BufReader, BufWriter, Read, Write};
use std::rc::Rc;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use pgwire::messages::copy::{CopyData, CopyDone, CopyInResponse, CopyOutResponse};
use pgwire::messages::data::{DataRow, FieldDescription, NoData, ParameterDescription, RowDescription};
use pgwire::messages::extendedquery::{BindComplete, CloseComplete, ParseComplete};
use pgwire::messages::response::{
    CommandComplete, EmptyQueryResponse, ErrorResponse, NoticeResponse, ReadyForQuery, TransactionStatus,
};
use pgwire::messages::startup::{Authentication, BackendKeyData, ParameterStatus, SecretKey};
use pgwire::messages::Message;

use crate::activity::{self, Backend, Kind, State};
use crate::error::{Error, Result, SqlState};
use crate::server::format;
use crate::server::frontend::{self, Frontend, Startup};
use crate::server::scheduling::Scheduling;
use crate::server::stream::Stream;
use crate::server::Shared;
use crate::sql::session::{self, Outcome, PlanSlot, Session, Stmt, TxnStatus, MAX_QUERY_BYTES};
use crate::storage::value::{DataType, Value};

/// Messages other than queries and COPY data are small; anything larger is a broken client.
const MAX_OTHER_MESSAGE: usize = 1 << 30;

/// A prepared statement (shared with its portals: the AST is never copied per execution).
#[derive(Clone)]
struct Prepared {
    stmt: Rc<Stmt>,
    /// Its text, as pg_stat_activity shows it while it runs.
    text: Arc<str>,
    /// Its plan, kept between executions (by all its portals).
    plan: Rc<PlanSlot>,
    param_types: Vec<DataType>,
    /// Its result columns (shared with its portals: a Bind copies no column names).
    columns: Option<Rc<[(String, DataType)]>>,
}

/// Statements a session has parsed with the Parse message, by text and declared parameter types, with the
/// catalog version they were described against. Drivers that do not name their statements send Parse,
/// Bind, Execute for every statement (`pgbench -M extended`, most drivers' one-shot queries): a Parse of a
/// text seen before under the same catalog reuses its tree, description and plan instead of planning twice
/// more (once to describe, once to execute).
#[derive(Default)]
struct ParseCache {
    /// By text: (declared parameter types, catalog version, the statement).
    entries: HashMap<String, Vec<(Vec<u32>, u64, Prepared)>>,
}

/// How many statement texts a session's [`ParseCache`] keeps before starting over.
const MAX_PARSED: usize = 256;

impl ParseCache {
    fn get(&self, query: &str, types: &[u32], catalog: u64) -> Option<Prepared> {
        let found = self.entries.get(query)?.iter().find(|(t, v, _)| t == types && *v == catalog);
        found.map(|(_, _, p)| p.clone())
    }

    fn put(&mut self, query: String, types: Vec<u32>, catalog: u64, prep: &Prepared) {
        if self.entries.len() >= MAX_PARSED {
            self.entries.clear();
        }
        let variants = self.entries.entry(query).or_default();
        variants.retain(|(t, _, _)| *t != types);
        variants.push((types, catalog, prep.clone()));
    }
}

/// A bound portal.
struct Portal {
    stmt: Rc<Stmt>,
    text: Arc<str>,
    plan: Rc<PlanSlot>,
    params: Vec<Value>,
    columns: Option<Rc<[(String, DataType)]>>,
    binary: Vec<bool>,
}

struct Conn {
    reader: BufReader<Stream>,
    writer: BufWriter<Stream>,
    out: BytesMut,
    /// FATAL 57P01 has been sent.
    told_terminated: bool,
    /// The thread's scheduling policy (a session's follows its client; see [`crate::server::scheduling`]).
    scheduling: Scheduling,
}

fn io_err(e: std::io::Error) -> Error {
    Error::io("connection", e)
}

impl Conn {
    fn send(&mut self, m: impl Message) -> Result<()> {
        // Nothing follows a FATAL.
        if self.told_terminated {
            return Ok(());
        }
        m.encode(&mut self.out).map_err(|e| Error::internal(format!("encoding a message: {e}")))?;
        if self.out.len() > 64 * 1024 {
            self.push()?;
        }
        Ok(())
    }

    fn push(&mut self) -> Result<()> {
        self.writer.write_all(&self.out).map_err(io_err)?;
        self.out.clear();
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        self.push()?;
        self.writer.flush().map_err(io_err)?;
        self.scheduling.replied();
        Ok(())
    }

    fn read_exact(&mut self, buf: &mut [u8]) -> Result<()> {
        self.reader.read_exact(buf).map_err(io_err)
    }

    fn skip(&mut self, mut n: usize) -> Result<()> {
        let mut buf = vec![0u8; 64 * 1024];
        while n > 0 {
            let k = n.min(buf.len());
            self.read_exact(&mut buf[..k])?;
            n -= k;
        }
        Ok(())
    }

    fn error(&mut self, e: &Error) -> Result<()> {
        // A statement pg_terminate_backend stopped ends the session: FATAL instead of its error.
        if activity::terminating() {
            return self.terminated();
        }
        self.error_with("ERROR", e)
    }

    /// Tells the client its session was ended by pg_terminate_backend (once).
    fn terminated(&mut self) -> Result<()> {
        let e = Error::new(SqlState("57P01"), "terminating connection due to administrator command");
        self.error_with("FATAL", &e)?;
        self.told_terminated = true;
        Ok(())
    }

    fn error_with(&mut self, severity: &str, e: &Error) -> Result<()> {
        let mut fields = vec![
            (b'S', severity.to_string()),
            (b'V', severity.to_string()),
            (b'C', e.code.0.to_string()),
            (b'M', e.message.clone()),
        ];
        if let Some(d) = &e.detail {
            fields.push((b'D', d.clone()));
        }
        if let Some(h) = &e.hint {
            fields.push((b'H', h.clone()));
        }
        self.send(ErrorResponse::new(fields))
    }

    fn notice(&mut self, msg: &str) -> Result<()> {
        self.notice_with("NOTICE", "00000", msg)
    }

    fn notice_with(&mut self, severity: &str, code: &str, msg: &str) -> Result<()> {
        let fields = vec![
            (b'S', severity.to_string()),
            (b'V', severity.to_string()),
            (b'C', code.to_string()),
            (b'M', msg.to_string()),
        ];
        self.send(NoticeResponse::new(fields))
    }

    /// Sends the notices and warnings a session has produced.
    fn send_notices(&mut self, session: &mut Session) -> Result<()> {
        for n in std::mem::take(&mut session.notices) {
            self.notice(&n)?;
        }
        let raised = std::mem::take(&mut *session.ctx.warnings.borrow_mut());
        for w in std::mem::take(&mut session.warnings).into_iter().chain(raised) {
            self.notice_with("WARNING", "01000", &w)?;
        }
        Ok(())
    }

    /// Reads one message after startup: its type byte and its whole frame (type, length, body).
    fn read_message(&mut self) -> Result<Option<(u8, BytesMut)>> {
        let mut head = [0u8; 5];
        match self.reader.read_exact(&mut head) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            // The read timeout is set only while a session is idle in a transaction.
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                return Err(Error::new(SqlState("25P03"), "terminating connection due to idle-in-transaction timeout"))
            }
            Err(e) => return Err(io_err(e)),
        }
        let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
        if len < 4 {
            return Err(Error::new(SqlState::PROTOCOL_VIOLATION, format!("invalid message length {len}")));
        }
        let body = len - 4;
        if head[0] == b'Q' && body > MAX_QUERY_BYTES {
            self.skip(body)?;
            return Ok(Some((0, BytesMut::new())));
        }
        if body > MAX_OTHER_MESSAGE {
            return Err(Error::new(SqlState::PROTOCOL_VIOLATION, format!("invalid message length {len}")));
        }
        let mut frame = BytesMut::with_capacity(len + 1);
        frame.put_slice(&head);
        frame.resize(len + 1, 0);
        self.read_exact(&mut frame[5..])?;
        Ok(Some((head[0], frame)))
    }
}

fn status_of(s: TxnStatus) -> TransactionStatus {
    match s {
        TxnStatus::Idle => TransactionStatus::Idle,
        TxnStatus::InBlock => TransactionStatus::Transaction,
        TxnStatus::Failed => TransactionStatus::Error,
    }
}

/// Serves one connection until it ends.
pub fn serve(stream: Stream, shared: Arc<Shared>) {
    let peer = stream.describe();
    stream.set_nodelay();
    let (Ok(r), Ok(w)) = (stream.try_clone(), stream.try_clone()) else { return };
    let mut conn = Conn {
        reader: BufReader::with_capacity(64 * 1024, r),
        writer: BufWriter::with_capacity(64 * 1024, w),
        out: BytesMut::new(),
        told_terminated: false,
        scheduling: Scheduling::start("normal"),
    };
    // A bug that panics ends this session only; the registration guard closes it properly.
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(&mut conn, &shared, stream)));
    let Ok(outcome) = outcome else {
        tracing::error!(%peer, "session ended by an internal error (panic)");
        let _ = conn.error(&Error::internal("internal error; the session was closed"));
        let _ = conn.flush();
        return;
    };
    match outcome {
        Ok(()) => tracing::debug!(%peer, "connection closed"),
        Err(e) => {
            tracing::info!(%peer, error = %e.message, "connection ended");
            if e.code == SqlState::PROTOCOL_VIOLATION {
                let _ = conn.error(&e);
                let _ = conn.flush();
            }
        }
    }
}

/// Reads the startup packet, answering SSL and GSS requests with 'N'. Returns None for a cancel request.
fn startup(conn: &mut Conn, shared: &Shared) -> Result<Option<HashMap<String, String>>> {
    loop {
        let mut len = [0u8; 4];
        conn.read_exact(&mut len)?;
        let len = u32::from_be_bytes(len) as usize;
        if !(8..=10_000).contains(&len) {
            return Err(Error::new(SqlState::PROTOCOL_VIOLATION, format!("invalid length of startup packet: {len}")));
        }
        let mut body = vec![0u8; len - 4];
        conn.read_exact(&mut body)?;
        match frontend::decode_startup(&body)? {
            Startup::EncryptionRequest => {
                conn.writer.write_all(b"N").map_err(io_err)?;
                conn.writer.flush().map_err(io_err)?;
            }
            Startup::Cancel { pid, key } => {
                shared.cancel(pid, key);
                return Ok(None);
            }
            Startup::Params(params) => return Ok(Some(params)),
        }
    }
}

fn run(conn: &mut Conn, shared: &Arc<Shared>, stream: Stream) -> Result<()> {
    let Some(params) = startup(conn, shared)? else { return Ok(()) };
    let user = params.get("user").cloned().unwrap_or_else(|| "postgres".into());
    let database = params.get("database").cloned().unwrap_or_else(|| user.clone());
    let app = params.get("application_name").cloned().unwrap_or_default();
    let encoding = params.get("client_encoding").cloned().unwrap_or_else(|| "UTF8".into());
    let encoding = if encoding.eq_ignore_ascii_case("utf8") || encoding.eq_ignore_ascii_case("unicode") {
        "UTF8".to_string()
    } else {
        encoding
    };
    if params.get("replication").is_some_and(|r| r != "false" && r != "0" && r != "off") {
        if params.get("replication").is_some_and(|r| r == "database") {
            let e = Error::new(SqlState::FEATURE_NOT_SUPPORTED, "logical replication is not supported");
            conn.error(&e)?;
            return conn.flush();
        }
        let walsender_stream = stream.try_clone().map_err(io_err)?;
        let closer = read_closer(&stream)?;
        let peer = stream.peer();
        let (pid, _) = shared.register(stream, true);
        let _registered = Registration { shared, pid };
        let backend = Arc::new(Backend::new(pid, Kind::WalSender, peer, &user, "", &app, Arc::default(), closer));
        shared.activity.add(backend.clone());
        let _entered = activity::enter(backend);
        return crate::replication::walsender::serve(walsender_stream, &params, pid, shared.replication.clone());
    }
    if !shared.engine.consistent() {
        let e = Error::new(SqlState::CANNOT_CONNECT_NOW, "the database system is not yet accepting connections")
            .with_detail("Consistent recovery state has not been yet reached.");
        conn.error_with("FATAL", &e)?;
        return conn.flush();
    }
    conn.scheduling = Scheduling::start(&shared.replication.settings.get("session_scheduling"));
    if let Some(fd) = conn.reader.get_ref().tcp_fd() {
        // The reader's socket lives as long as `conn`, and so as long as its scheduling.
        conn.scheduling.follow_client(fd, &shared.replication.settings.get("session_placement"));
    }
    let closer = read_closer(&stream)?;
    let peer = stream.peer();
    let port = stream.local_port();
    let (pid, secret) = shared.register(stream, false);
    let _registered = Registration { shared, pid };
    let mut settings = session::default_settings(&shared.engine, &user, &app, &encoding);
    if let Some(port) = port {
        settings.push(("port".into(), port.to_string()));
    }
    for (k, v) in &params {
        if matches!(k.as_str(), "datestyle" | "timezone" | "search_path" | "extra_float_digits") {
            settings.retain(|(x, _)| !x.eq_ignore_ascii_case(k));
            settings.push((k.clone(), v.clone()));
        }
    }
    let mut session = Session::new(shared.engine.clone(), pid, &user, &database, settings);
    session.set_replication(shared.replication.clone());
    session.set_activity(shared.activity.clone());
    let backend =
        Arc::new(Backend::new(pid, Kind::Client, peer, &user, &database, &app, session.cancel.clone(), closer));
    shared.activity.add(backend.clone());
    let _entered = activity::enter(backend.clone());
    match serve_session(conn, &mut session, pid, secret, &backend) {
        // pg_terminate_backend: the session was woken from its read, or ended the statement it ran.
        _ if backend.terminated() => {
            conn.terminated()?;
            conn.flush()
        }
        r => r,
    }
}

/// Shuts the read side of a connection's socket, for pg_terminate_backend.
fn read_closer(stream: &Stream) -> Result<Box<dyn Fn() + Send + Sync>> {
    let s = stream.try_clone().map_err(io_err)?;
    Ok(Box::new(move || {
        let _ = s.shutdown(std::net::Shutdown::Read);
    }))
}

/// What pg_stat_activity shows of a session ready for its next statement.
fn activity_state(s: TxnStatus) -> State {
    match s {
        TxnStatus::Idle => State::Idle,
        TxnStatus::InBlock => State::IdleInTransaction,
        TxnStatus::Failed => State::IdleInTransactionAborted,
    }
}

/// Removes a session from the registry when it ends, however it ends.
struct Registration<'a> {
    shared: &'a Shared,
    pid: i32,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        self.shared.deregister(self.pid);
    }
}

fn serve_session(conn: &mut Conn, session: &mut Session, pid: i32, secret: i32, backend: &Backend) -> Result<()> {
    conn.send(Authentication::Ok)?;
    for name in session::REPORTED {
        let value = session.ctx.setting(name).unwrap_or("").to_string();
        conn.send(ParameterStatus::new(name.to_string(), value))?;
    }
    conn.send(BackendKeyData::new(pid, SecretKey::I32(secret)))?;
    conn.send(ReadyForQuery::new(status_of(session.status())))?;
    conn.flush()?;
    let mut prepared: HashMap<String, Prepared> = HashMap::new();
    let mut portals: HashMap<String, Portal> = HashMap::new();
    let mut parsed = ParseCache::default();
    let mut skip_to_sync = false;
    let mut read_timeout = None;
    loop {
        if backend.terminated() {
            return Ok(());
        }
        // idle_in_transaction_session_timeout: a session idle in a transaction that long is ended.
        let idle_limit = session.idle_in_transaction_timeout().filter(|_| session.status() != TxnStatus::Idle);
        if idle_limit != read_timeout {
            conn.reader.get_ref().set_read_timeout(idle_limit).map_err(io_err)?;
            read_timeout = idle_limit;
        }
        let waited = conn.reader.buffer().is_empty();
        let next = conn.read_message();
        conn.scheduling.received(waited);
        let next = match next {
            Err(e) if e.code == SqlState("25P03") => {
                conn.error_with("FATAL", &e)?;
                return conn.flush();
            }
            next => next?,
        };
        let Some((kind, frame)) = next else { return Ok(()) };
        if kind == 0 {
            conn.error(&Error::new(
                SqlState::PROGRAM_LIMIT_EXCEEDED,
                format!("query is too long (more than {} bytes)", MAX_QUERY_BYTES),
            ))?;
            conn.send(ReadyForQuery::new(status_of(session.status())))?;
            conn.flush()?;
            continue;
        }
        let msg = match frontend::decode(kind, &frame[5..]) {
            Ok(m) => m,
            // Text that is not UTF-8 is the statement's error; anything else breaks the protocol.
            Err(e) if e.code == SqlState::CHARACTER_NOT_IN_REPERTOIRE => {
                conn.error(&e)?;
                if kind == b'Q' {
                    conn.send(ReadyForQuery::new(status_of(session.status())))?;
                    conn.flush()?;
                } else {
                    skip_to_sync = true;
                }
                continue;
            }
            Err(e) => return Err(e),
        };
        if skip_to_sync && !matches!(msg, Frontend::Sync) {
            continue;
        }
        match msg {
            Frontend::Query(q) => {
                backend.start(Arc::from(q.as_str()));
                simple_query(conn, session, &q)?;
                backend.ready(activity_state(session.status()));
                conn.send(ReadyForQuery::new(status_of(session.status())))?;
                conn.flush()?;
            }
            Frontend::Parse { name: pname, query, types } => {
                let catalog = session.catalog_version();
                if let Some(prep) = parsed.get(&query, &types, catalog) {
                    prepared.insert(pname, prep);
                    conn.send(ParseComplete::new())?;
                    continue;
                }
                let r = (|| -> Result<Prepared> {
                    let mut stmts = session.parse(&query)?;
                    if stmts.len() > 1 {
                        return Err(Error::new(
                            SqlState::SYNTAX_ERROR,
                            "cannot insert multiple commands into a prepared statement",
                        ));
                    }
                    let stmt = stmts.pop().unwrap_or(Stmt::Empty);
                    let (param_types, columns) = session.describe(&stmt, &types)?;
                    Ok(Prepared {
                        stmt: Rc::new(stmt),
                        text: Arc::from(query.as_str()),
                        plan: Rc::default(),
                        param_types,
                        columns: columns.map(Rc::from),
                    })
                })();
                match r {
                    Ok(prep) => {
                        parsed.put(query, types, catalog, &prep);
                        prepared.insert(pname, prep);
                        conn.send(ParseComplete::new())?;
                    }
                    Err(e) => {
                        conn.error(&e)?;
                        skip_to_sync = true;
                    }
                }
            }
            Frontend::Bind { portal: portal_name, statement, formats, params: values, result_formats } => {
                let r = (|| -> Result<Portal> {
                    let name = statement.clone();
                    let prep = prepared.get(&name).ok_or_else(|| {
                        Error::new(SqlState("26000"), format!("prepared statement \"{name}\" does not exist"))
                    })?;
                    if values.len() != prep.param_types.len() {
                        return Err(Error::new(
                            SqlState::PROTOCOL_VIOLATION,
                            format!(
                                "bind message supplies {} parameters, but prepared statement \"{name}\" requires {}",
                                values.len(),
                                prep.param_types.len()
                            ),
                        ));
                    }
                    let mut params = Vec::with_capacity(values.len());
                    for (i, (p, ty)) in values.iter().zip(&prep.param_types).enumerate() {
                        let fmt = match formats.len() {
                            0 => 0,
                            1 => formats[0],
                            _ => formats.get(i).copied().unwrap_or(0),
                        };
                        params.push(format::decode_param(p.as_deref(), ty, fmt == 1)?);
                    }
                    let ncols = prep.columns.as_ref().map_or(0, |c| c.len());
                    let binary = (0..ncols)
                        .map(|i| match result_formats.len() {
                            0 => false,
                            1 => result_formats[0] == 1,
                            _ => result_formats.get(i) == Some(&1),
                        })
                        .collect();
                    Ok(Portal {
                        stmt: prep.stmt.clone(),
                        text: prep.text.clone(),
                        plan: prep.plan.clone(),
                        params,
                        columns: prep.columns.clone(),
                        binary,
                    })
                })();
                match r {
                    Ok(portal) => {
                        portals.insert(portal_name, portal);
                        conn.send(BindComplete::new())?;
                    }
                    Err(e) => {
                        conn.error(&e)?;
                        skip_to_sync = true;
                    }
                }
            }
            Frontend::Describe { kind: target, name } => {
                let r: Result<()> = if target == b'S' {
                    match prepared.get(&name) {
                        Some(p) => {
                            conn.send(ParameterDescription::new(p.param_types.iter().map(DataType::oid).collect()))?;
                            describe_rows(conn, p.columns.as_deref(), &[])
                        }
                        None => {
                            Err(Error::new(SqlState("26000"), format!("prepared statement \"{name}\" does not exist")))
                        }
                    }
                } else {
                    match portals.get(&name) {
                        Some(p) => {
                            let (cols, bin) = (p.columns.clone(), p.binary.clone());
                            describe_rows(conn, cols.as_deref(), &bin)
                        }
                        None => Err(Error::new(SqlState("34000"), format!("portal \"{name}\" does not exist"))),
                    }
                };
                if let Err(e) = r {
                    conn.error(&e)?;
                    skip_to_sync = true;
                }
            }
            Frontend::Execute { portal: name, .. } => {
                let Some(portal) = portals.get_mut(&name) else {
                    conn.error(&Error::new(SqlState("34000"), format!("portal \"{name}\" does not exist")))?;
                    skip_to_sync = true;
                    continue;
                };
                backend.start(portal.text.clone());
                let outcome = session.execute_prepared(&portal.stmt, &portal.params, Some(&portal.plan));
                if !send_outcome(conn, session, outcome, &portal.binary, false)? {
                    skip_to_sync = true;
                }
            }
            Frontend::Close { kind: target, name } => {
                if target == b'S' {
                    prepared.remove(&name);
                } else {
                    portals.remove(&name);
                }
                conn.send(CloseComplete::new())?;
            }
            Frontend::Sync => {
                skip_to_sync = false;
                portals.remove("");
                backend.ready(activity_state(session.status()));
                conn.send(ReadyForQuery::new(status_of(session.status())))?;
                conn.flush()?;
            }
            Frontend::Flush => conn.flush()?,
            Frontend::Terminate => return Ok(()),
            // COPY data after an aborted COPY is discarded, as PostgreSQL does.
            Frontend::CopyData(_) | Frontend::CopyDone | Frontend::CopyFail(_) => {}
        }
    }
}

fn describe_rows(conn: &mut Conn, columns: Option<&[(String, DataType)]>, binary: &[bool]) -> Result<()> {
    match columns {
        Some(cols) => conn.send(row_description(cols, binary)),
        None => conn.send(NoData::new()),
    }
}

fn row_description(cols: &[(String, DataType)], binary: &[bool]) -> RowDescription {
    RowDescription::new(
        cols.iter()
            .enumerate()
            .map(|(i, (name, ty))| {
                FieldDescription::new(
                    name.clone(),
                    0,
                    0,
                    ty.oid(),
                    format::type_size(ty),
                    format::type_modifier(ty),
                    binary.get(i).copied().unwrap_or(false) as i16,
                )
            })
            .collect(),
    )
}

fn simple_query(conn: &mut Conn, session: &mut Session, sql: &str) -> Result<()> {
    let stmts = match session.parse_simple(sql) {
        Ok(s) => s,
        Err(e) => {
            // A parse error inside a transaction block aborts it, as in PostgreSQL.
            if session.status() == TxnStatus::InBlock {
                session.statement_failed();
            }
            return conn.error(&e);
        }
    };
    let batch = stmts.len() > 1;
    if batch {
        session.begin_batch();
    }
    for stmt in stmts {
        let outcome = session.execute(&stmt, &[]);
        if !send_outcome(conn, session, outcome, &[], true)? {
            break;
        }
    }
    if batch {
        let ended = session.end_batch();
        conn.send_notices(session)?;
        if let Err(e) = ended {
            conn.error(&e)?;
        }
    }
    Ok(())
}

/// Sends what a statement produced. Returns false if it failed.
fn send_outcome(
    conn: &mut Conn,
    session: &mut Session,
    outcome: Result<Outcome>,
    binary: &[bool],
    describe: bool,
) -> Result<bool> {
    conn.send_notices(session)?;
    for (name, value) in std::mem::take(&mut session.reported) {
        conn.send(ParameterStatus::new(name, value))?;
    }
    match outcome {
        Err(e) => {
            conn.error(&e)?;
            Ok(false)
        }
        Ok(Outcome::Empty) => {
            conn.send(EmptyQueryResponse::new())?;
            Ok(true)
        }
        Ok(Outcome::Command(tag)) => {
            conn.send(CommandComplete::new(tag))?;
            Ok(true)
        }
        Ok(Outcome::Rows { columns, rows, tag }) => {
            if describe {
                conn.send(row_description(&columns, binary))?;
            }
            for row in rows {
                let mut data = BytesMut::new();
                for (i, (v, (_, ty))) in row.iter().zip(&columns).enumerate() {
                    match format::encode_field(v, ty, binary.get(i).copied().unwrap_or(false)) {
                        Ok(Some(b)) => {
                            data.put_i32(b.len() as i32);
                            data.put_slice(&b);
                        }
                        Ok(None) => data.put_i32(-1),
                        Err(e) => {
                            conn.error(&e)?;
                            return Ok(false);
                        }
                    }
                }
                conn.send(DataRow::new(data, columns.len() as i16))?;
            }
            conn.send(CommandComplete::new(tag))?;
            Ok(true)
        }
        Ok(Outcome::CopyOut { columns, data, tag }) => {
            conn.send(CopyOutResponse::new(0, columns as i16, vec![0; columns]))?;
            for chunk in data.chunks(64 * 1024) {
                conn.send(CopyData::new(Bytes::copy_from_slice(chunk)))?;
            }
            conn.send(CopyDone::new())?;
            conn.send(CommandComplete::new(tag))?;
            Ok(true)
        }
        Ok(Outcome::CopyIn { stmt, columns }) => {
            conn.send(CopyInResponse::new(0, columns as i16, vec![0; columns]))?;
            conn.flush()?;
            let mut data = Vec::new();
            let mut failed = None;
            loop {
                let Some((kind, frame)) = conn.read_message()? else {
                    session.statement_failed();
                    return Err(Error::new(SqlState::PROTOCOL_VIOLATION, "connection closed during COPY"));
                };
                match kind {
                    b'd' => {
                        if data.len() + frame.len() > MAX_QUERY_BYTES * 10 {
                            failed = Some(Error::new(SqlState::PROGRAM_LIMIT_EXCEEDED, "COPY data is too large"));
                        } else if failed.is_none() {
                            data.extend_from_slice(&frame[5..]);
                        }
                    }
                    b'c' => break,
                    b'f' => {
                        let msg = String::from_utf8_lossy(&frame[5..]).trim_end_matches('\0').to_string();
                        failed = Some(Error::new(SqlState::QUERY_CANCELED, format!("COPY from stdin failed: {msg}")));
                        break;
                    }
                    b'H' | b'S' => {}
                    _ => {
                        failed = Some(Error::new(
                            SqlState::PROTOCOL_VIOLATION,
                            format!("unexpected message type 0x{kind:02x} during COPY from stdin"),
                        ));
                        break;
                    }
                }
            }
            if let Some(e) = failed {
                session.statement_failed();
                conn.error(&e)?;
                return Ok(false);
            }
            let r = session.copy_in(&stmt, &data);
            send_outcome(conn, session, r, &[], false)
        }
    }
}
