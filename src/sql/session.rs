//! A client session: its transaction state, settings, and the dispatch of each statement.
//!
//! ```text
//!            BEGIN                       error
//!   Idle ──────────────▶ InBlock ───────────────────▶ Failed
//!    ▲   ◀────────────── │  ▲ │  ◀── ROLLBACK TO ──────┘ │
//!    │   COMMIT/ROLLBACK    └─┘ statements              │
//!    └──────────────────────────────── ROLLBACK/COMMIT ─┘
//! ```
//!
//! Outside a block each statement runs in its own transaction, committed (and waited for until durable)
//! before the statement reports success. In a failed block every statement but ROLLBACK (or COMMIT,
//! which then rolls back) gets 25P02, as in PostgreSQL; ReadyForQuery reports the state as I/T/E.
//!
//! Statements are parsed once ([`parse`]) and executed with parameter values ([`Session::execute`]);
//! [`Session::describe`] plans without running to report parameter and result types, which is what the
//! extended protocol's Parse/Describe need.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use sqlparser::ast;
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

use crate::engine::{Engine, SyncLevel};
use crate::error::{Error, Result, SqlState};
use crate::sql::copy;
use crate::sql::ddl;
use crate::sql::depth;
use crate::sql::dml;
use crate::sql::execute::{self, Env, SessionCtx};
use crate::sql::functions;
use crate::sql::planner::{self, ident, name_parts, Planner};
use crate::sql::preparse::{self, CopySource, CopyStmt, Parsed};
use crate::sql::shape::{self, ShapeCache};
use crate::sql::types;
use crate::storage::state::DbState;
use crate::storage::value::{DataType, Value};
use crate::txn::{Isolation, Savepoint, Transaction};

/// A parsed statement.
#[derive(Clone, Debug)]
pub enum Stmt {
    Sql(Box<ast::Statement>),
    /// A statement of a known shape, from a simple Query (its tree is made only if it must be planned).
    Shaped(Box<shape::Shaped>),
    Maintenance(&'static str),
    Checkpoint,
    Copy(CopyStmt),
    /// `ALTER SYSTEM SET` / `RESET` (value None).
    AlterSystem {
        name: String,
        value: Option<String>,
    },
    /// An empty query string.
    Empty,
}

impl Stmt {
    /// The statement's tree as far as its kind and names go (a shaped statement's template, whose
    /// literals may be another statement's).
    fn kind(&self) -> Option<&ast::Statement> {
        match self {
            Stmt::Sql(s) => Some(s),
            Stmt::Shaped(s) => Some(&s.template.tree),
            _ => None,
        }
    }
}

/// What running a statement produced.
pub enum Outcome {
    /// Rows and their description.
    Rows {
        columns: Vec<(String, DataType)>,
        rows: Vec<Vec<Value>>,
        tag: String,
    },
    /// A command with no rows.
    Command(String),
    /// COPY FROM STDIN: the caller collects the data and calls [`Session::copy_in`].
    CopyIn {
        stmt: CopyStmt,
        columns: usize,
    },
    /// COPY TO STDOUT: the encoded data.
    CopyOut {
        columns: usize,
        data: Vec<u8>,
        tag: String,
    },
    Empty,
}

/// The transaction status ReadyForQuery reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxnStatus {
    Idle,
    InBlock,
    Failed,
}

/// The largest statement text accepted.
pub const MAX_QUERY_BYTES: usize = 100 << 20;

/// Splits a query string into statements at semicolons outside quotes and comments.
fn split(sql: &str) -> Vec<&str> {
    let b = sql.as_bytes();
    let mut out = Vec::new();
    let (mut start, mut i) = (0, 0);
    while i < b.len() {
        match b[i] {
            b'\'' | b'"' => {
                let q = b[i];
                i += 1;
                while i < b.len() && b[i] != q {
                    i += 1;
                }
            }
            b'-' if b.get(i + 1) == Some(&b'-') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i + 1 < b.len() && !(b[i] == b'*' && b[i + 1] == b'/') {
                    i += 1;
                }
                i += 1;
            }
            b'$' => {
                // A dollar quote: $tag$ ... $tag$.
                if let Some(end) = sql[i + 1..].find('$') {
                    let tag = &sql[i..i + end + 2];
                    let inner = &sql[i + 1..i + end + 1];
                    if inner.chars().all(|c| c.is_alphanumeric() || c == '_')
                        && inner.chars().next().is_none_or(|c| !c.is_ascii_digit())
                    {
                        if let Some(close) = sql[i + tag.len()..].find(tag) {
                            i += tag.len() + close + tag.len() - 1;
                        }
                    }
                }
            }
            b';' => {
                out.push(&sql[start..=i]);
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    if start < sql.len() {
        out.push(&sql[start..]);
    }
    out.into_iter().filter(|s| !is_blank(s)).collect()
}

fn is_blank(s: &str) -> bool {
    let mut rest = s.trim();
    loop {
        rest = rest.trim_start_matches(';').trim_start();
        if let Some(r) = rest.strip_prefix("--") {
            rest = r.split_once('\n').map_or("", |x| x.1);
        } else if let Some(r) = rest.strip_prefix("/*") {
            rest = r.split_once("*/").map_or("", |x| x.1);
        } else {
            return rest.is_empty();
        }
    }
}

fn syntax_error(e: sqlparser::parser::ParserError) -> Error {
    if matches!(e, sqlparser::parser::ParserError::RecursionLimitExceeded) {
        return depth::too_deep();
    }
    let msg = e.to_string();
    let near = msg.split("found: ").nth(1).map(|s| s.split(" at Line").next().unwrap_or(s).trim().to_string());
    match near {
        Some(n) if n == "EOF" => Error::new(SqlState::SYNTAX_ERROR, "syntax error at end of input"),
        Some(n) => Error::new(SqlState::SYNTAX_ERROR, format!("syntax error at or near \"{n}\"")),
        None => Error::new(SqlState::SYNTAX_ERROR, msg.trim_start_matches("sql parser error: ").to_string()),
    }
}

/// sqlparser on one statement's text, with tandem's recursion limit (see [`depth`]).
pub fn parse_sql(piece: &str) -> std::result::Result<Vec<ast::Statement>, sqlparser::parser::ParserError> {
    Parser::new(&PostgreSqlDialect {})
        .with_recursion_limit(depth::MAX_PARSER_RECURSION)
        .try_with_sql(piece)?
        .parse_statements()
}

/// Parses a query string into statements.
pub fn parse(sql: &str) -> Result<Vec<Stmt>> {
    parse_with(sql, |piece| Ok(parse_sql(piece)?.into_iter().map(|s| Stmt::Sql(Box::new(s))).collect()))
}

/// Parses a query string into statements with `parse_sql` for what is SQL to sqlparser.
fn parse_with(
    sql: &str,
    mut parse_sql: impl FnMut(&str) -> std::result::Result<Vec<Stmt>, sqlparser::parser::ParserError>,
) -> Result<Vec<Stmt>> {
    if sql.len() > MAX_QUERY_BYTES {
        return Err(Error::new(SqlState::PROGRAM_LIMIT_EXCEEDED, "statement is too long"));
    }
    let mut out = Vec::new();
    for piece in split(sql) {
        match preparse::preparse(piece)? {
            Parsed::Maintenance(t) => out.push(Stmt::Maintenance(t)),
            Parsed::Checkpoint => out.push(Stmt::Checkpoint),
            Parsed::AlterSystem { name, value } => out.push(Stmt::AlterSystem { name, value }),
            Parsed::Copy(c) => out.push(Stmt::Copy(c)),
            Parsed::Sql => {
                depth::check(piece)?;
                out.extend(parse_sql(piece).map_err(syntax_error)?);
            }
        }
    }
    if out.is_empty() {
        out.push(Stmt::Empty);
    }
    Ok(out)
}

/// The settings a session starts with; the GUC_REPORT ones are sent as ParameterStatus. A standby reports
/// itself read-only (`in_hot_standby`, `default_transaction_read_only`), as PostgreSQL does, so that libpq's
/// `target_session_attrs` can tell a primary from a standby.
pub fn default_settings(
    engine: &Engine,
    user: &str,
    application_name: &str,
    client_encoding: &str,
) -> Vec<(String, String)> {
    let read_only = if engine.in_recovery() { "on" } else { "off" };
    let segment_size = crate::wal::segment::format_segment_size(engine.wal().segment_size());
    let mut settings: Vec<(String, String)> = [
        ("application_name", application_name),
        ("client_encoding", client_encoding),
        ("DateStyle", "ISO, MDY"),
        ("default_transaction_read_only", read_only),
        ("in_hot_standby", read_only),
        ("integer_datetimes", "on"),
        ("IntervalStyle", "postgres"),
        ("is_superuser", "on"),
        ("server_encoding", "UTF8"),
        ("server_version", crate::SERVER_VERSION),
        ("session_authorization", user),
        ("standard_conforming_strings", "on"),
        ("TimeZone", "Etc/UTC"),
        ("search_path", "\"$user\", public"),
        ("transaction_isolation", "read committed"),
        ("default_transaction_isolation", "read committed"),
        ("transaction_read_only", read_only),
        ("max_connections", "100"),
        ("data_directory_mode", "0700"),
        ("server_version_num", "150000"),
        ("lc_collate", "C.UTF-8"),
        ("lc_ctype", "C.UTF-8"),
        ("synchronous_commit", "on"),
        ("statement_timeout", "0"),
        ("lock_timeout", "0"),
        ("idle_in_transaction_session_timeout", "0"),
        ("extra_float_digits", "1"),
        ("max_identifier_length", "63"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    settings.push(("wal_segment_size".into(), segment_size));
    settings
}

/// What Describe reports: the parameter types, and the result columns if the statement returns rows.
pub type Description = (Vec<DataType>, Option<Vec<(String, DataType)>>);

/// The settings whose changes are reported to the client as ParameterStatus (PostgreSQL's GUC_REPORT set).
pub const REPORTED: &[&str] = &[
    "application_name",
    "client_encoding",
    "DateStyle",
    "default_transaction_read_only",
    "in_hot_standby",
    "integer_datetimes",
    "IntervalStyle",
    "is_superuser",
    "server_encoding",
    "server_version",
    "session_authorization",
    "standard_conforming_strings",
    "TimeZone",
];

/// A statement PREPAREd in SQL: the statement, its parameter types, its kept plan.
type SqlPrepared = (Rc<Stmt>, Vec<DataType>, Rc<PlanSlot>);

/// A session.
pub struct Session {
    engine: Arc<Engine>,
    txn: Option<Transaction>,
    status: TxnStatus,
    savepoints: Vec<(String, Savepoint)>,
    pub ctx: SessionCtx,
    /// Reported settings changed by the last statement, for the wire layer to send as ParameterStatus.
    pub reported: Vec<(String, String)>,
    /// Whether a multi-statement query is running (its statements share an implicit transaction).
    batch: bool,
    /// Notices produced by the last statement, for the wire layer to send.
    pub notices: Vec<String>,
    /// Warnings produced by the last statement (sent with severity WARNING).
    pub warnings: Vec<String>,
    /// `synchronous_commit` as SET in this session (None: the server's default).
    sync_commit: Option<SyncLevel>,
    /// The last commit made with `synchronous_commit = off`, not waited for yet.
    async_commit: Option<crate::engine::CommitTicket>,
    /// The cancel flag of the running transaction, for cancel requests from other connections.
    pub cancel: Arc<Mutex<Option<Arc<AtomicBool>>>>,
    /// The trees of statements parsed before, by shape.
    shapes: ShapeCache,
    /// `statement_timeout` and `lock_timeout` as SET (None: 0, no limit), read at each statement.
    statement_timeout: Option<std::time::Duration>,
    lock_timeout: Option<std::time::Duration>,
    /// The zone of `TimeZone`, made the thread's at each statement (None: UTC; see `sql::timezone`).
    zone: Option<Arc<crate::sql::timezone::Zone>>,
    idle_in_transaction_timeout: Option<std::time::Duration>,
    /// Statements prepared with PREPARE: the statement, its parameter types, its kept plan.
    sql_prepared: std::collections::HashMap<String, SqlPrepared>,
}

impl Session {
    /// Gives the session the server's replication state, for pg_stat_replication and friends.
    pub fn set_replication(&mut self, replication: Arc<crate::replication::walsender::ReplicationContext>) {
        let default = replication.settings.synchronous_commit();
        self.ctx.replication = Some(replication);
        self.put_setting("synchronous_commit", default.name().into());
    }

    /// Gives the session the server's registry of backends, for pg_stat_activity and friends.
    pub fn set_activity(&mut self, activity: Arc<crate::activity::Registry>) {
        self.ctx.activity = Some(activity);
    }

    /// Parses a query string (a simple Query's, or a Parse message's), reusing the trees of statements of
    /// the same shape this session parsed before.
    pub fn parse(&mut self, sql: &str) -> Result<Vec<Stmt>> {
        parse_with(sql, |piece| {
            Ok(self.shapes.parse(piece, parse_sql)?.into_iter().map(|s| Stmt::Sql(Box::new(s))).collect())
        })
    }

    /// Parses a simple Query's string: as [`parse`](Self::parse), but a statement of a known shape stays
    /// its shape and literals, for [`run_shaped`](Self::run_shaped).
    pub fn parse_simple(&mut self, sql: &str) -> Result<Vec<Stmt>> {
        parse_with(sql, |piece| {
            Ok(match self.shapes.parse_shaped(piece, parse_sql)? {
                shape::Parsed::Trees(trees) => trees.into_iter().map(|s| Stmt::Sql(Box::new(s))).collect(),
                shape::Parsed::Shaped(shaped) => vec![Stmt::Shaped(Box::new(shaped))],
            })
        })
    }

    /// The `synchronous_commit` level this session commits with.
    pub fn sync_level(&self) -> SyncLevel {
        self.sync_commit.unwrap_or_else(|| {
            self.ctx.replication.as_ref().map_or(SyncLevel::default(), |r| r.settings.synchronous_commit())
        })
    }

    /// A new session.
    pub fn new(engine: Arc<Engine>, pid: i32, user: &str, database: &str, settings: Vec<(String, String)>) -> Session {
        let ctx = SessionCtx {
            engine: engine.clone(),
            now: 0,
            pid,
            user: user.into(),
            database: database.into(),
            settings,
            currvals: Default::default(),
            replication: None,
            activity: None,
            warnings: Default::default(),
            work_tables: Default::default(),
            work: Default::default(),
            work_limit: execute::default_work_limit(),
            random: std::cell::Cell::new(execute::random_seed()),
        };
        let ctx_zone = ctx.setting("TimeZone").and_then(|z| crate::sql::timezone::load(z).ok()).filter(|z| !z.is_utc());
        Session {
            engine,
            txn: None,
            status: TxnStatus::Idle,
            savepoints: Vec::new(),
            batch: false,
            reported: Vec::new(),
            ctx,
            notices: Vec::new(),
            warnings: Vec::new(),
            sync_commit: None,
            async_commit: None,
            cancel: Arc::new(Mutex::new(None)),
            shapes: ShapeCache::default(),
            statement_timeout: None,
            // A zone the client asked for at connection start (JDBC sends its JVM's).
            zone: ctx_zone,
            lock_timeout: None,
            idle_in_transaction_timeout: None,
            sql_prepared: Default::default(),
        }
    }

    /// PREPARE, EXECUTE and DEALLOCATE: statements prepared in SQL, by name, for this session. (The
    /// protocol's named statements, from Parse messages, are the wire layer's and a separate namespace.)
    fn prepared_sql(&mut self, tree: ast::Statement) -> Result<Outcome> {
        let not_found =
            |name: &str| Error::new(SqlState("26000"), format!("prepared statement \"{name}\" does not exist"));
        match tree {
            ast::Statement::Prepare { name, data_types, statement } => {
                let name = ident(&name);
                if self.sql_prepared.contains_key(&name) {
                    return Err(Error::new(SqlState("42P05"), format!("prepared statement \"{name}\" already exists")));
                }
                let declared =
                    data_types.iter().map(|t| types::data_type(t).map(|t| t.oid())).collect::<Result<Vec<_>>>()?;
                let stmt = Stmt::Sql(statement);
                let (param_types, _) = self.describe(&stmt, &declared)?;
                self.sql_prepared.insert(name, (Rc::new(stmt), param_types, Rc::default()));
                Ok(Outcome::Command("PREPARE".into()))
            }
            ast::Statement::Execute { name: Some(name), parameters, immediate: false, .. } => {
                let name = name_parts(&name).join(".");
                let (stmt, param_types, plan) =
                    self.sql_prepared.get(&name).cloned().ok_or_else(|| not_found(&name))?;
                if parameters.len() != param_types.len() {
                    return Err(Error::new(
                        SqlState::SYNTAX_ERROR,
                        format!("wrong number of parameters for prepared statement \"{name}\""),
                    )
                    .with_detail(format!(
                        "Expected {} parameters but got {}.",
                        param_types.len(),
                        parameters.len()
                    )));
                }
                // The arguments are expressions: evaluate them as a SELECT would, then take the declared types.
                let mut values = Vec::with_capacity(parameters.len());
                if !parameters.is_empty() {
                    let list = parameters.iter().map(|e| e.to_string()).collect::<Vec<_>>().join(", ");
                    let select = self.parse(&format!("SELECT {list}"))?.pop().unwrap_or(Stmt::Empty);
                    let row = match self.execute_statement(&select, &[], None)? {
                        Outcome::Rows { mut rows, .. } if rows.len() == 1 => rows.pop().unwrap_or_default(),
                        _ => return Err(Error::internal("EXECUTE arguments did not evaluate to one row")),
                    };
                    for (v, ty) in row.into_iter().zip(&param_types) {
                        values.push(types::cast(v, ty)?);
                    }
                }
                self.execute_statement(&stmt, &values, Some(&plan))
            }
            ast::Statement::Deallocate { name, .. } => {
                let name = ident(&name);
                if name.eq_ignore_ascii_case("all") {
                    self.sql_prepared.clear();
                    return Ok(Outcome::Command("DEALLOCATE ALL".into()));
                }
                self.sql_prepared.remove(&name).ok_or_else(|| not_found(&name))?;
                Ok(Outcome::Command("DEALLOCATE".into()))
            }
            other => Err(Error::new(
                SqlState::FEATURE_NOT_SUPPORTED,
                format!("statement is not supported: {}", other.to_string().chars().take(60).collect::<String>()),
            )),
        }
    }

    /// `idle_in_transaction_session_timeout` as SET (None: 0, no limit).
    pub fn idle_in_transaction_timeout(&self) -> Option<std::time::Duration> {
        self.idle_in_transaction_timeout
    }

    /// The transaction status for ReadyForQuery.
    pub fn status(&self) -> TxnStatus {
        self.status
    }

    fn begin_txn(&mut self, isolation: Isolation) {
        // A session sees its own commits: an unwaited `synchronous_commit = off` commit is waited for
        // here. Its failure, if any, is lost, as with PostgreSQL's asynchronous commit.
        if let Some(ticket) = self.async_commit.take() {
            let _ = ticket.wait();
        }
        let txn = self.engine.begin(isolation);
        if let Ok(mut c) = self.cancel.lock() {
            *c = Some(txn.cancel_flag());
        }
        self.ctx.now = types::now_usecs();
        self.txn = Some(txn);
    }

    fn end_txn(&mut self, commit: bool) -> Result<()> {
        self.savepoints.clear();
        self.status = TxnStatus::Idle;
        let Some(mut txn) = self.txn.take() else { return Ok(()) };
        let flag = txn.cancel_flag();
        let level = self.sync_level();
        txn.set_sync_level(level);
        let result = if commit {
            match txn.commit() {
                Ok(ticket) if level == SyncLevel::Off => {
                    self.async_commit = Some(ticket);
                    Ok(())
                }
                Ok(ticket) => {
                    let r = ticket.wait_cancelable(&flag);
                    if r.is_ok() && ticket.degraded() {
                        self.warnings.push(
                            "the synchronous standby did not confirm this commit within synchronous_standby_timeout: \
                             it was acknowledged without the standby"
                                .into(),
                        );
                    }
                    r
                }
                Err(e) => Err(e),
            }
        } else {
            txn.rollback();
            Ok(())
        };
        if let Ok(mut c) = self.cancel.lock() {
            *c = None;
        }
        result
    }

    fn default_isolation(&self) -> Isolation {
        match self.ctx.setting("default_transaction_isolation") {
            Some(s) if s.contains("repeatable") || s.contains("serializable") => Isolation::RepeatableRead,
            _ => Isolation::ReadCommitted,
        }
    }

    /// The catalog version of the state [`describe`](Self::describe) would read: the transaction's, or
    /// the newest visible one outside a transaction. Equal versions describe a statement alike.
    pub fn catalog_version(&self) -> u64 {
        match &self.txn {
            Some(t) => t.state().catalog_version(),
            None => self.engine.snapshot().state.catalog_version(),
        }
    }

    /// Reports the parameter types and result columns of a statement without running it.
    pub fn describe(&self, stmt: &Stmt, declared: &[u32]) -> Result<Description> {
        let visible;
        let state: &DbState = match &self.txn {
            Some(t) => t.state(),
            None => {
                visible = self.engine.snapshot().state;
                &visible
            }
        };
        let mut p = Planner::new(state, declared);
        let columns = match stmt {
            Stmt::Sql(s) => match s.as_ref() {
                ast::Statement::Query(q) => Some(p.query(q)?.columns),
                ast::Statement::Insert(i) => dml::plan_insert(&mut p, i)?.returning.map(|r| r.columns),
                ast::Statement::Update(u) => dml::plan_update(&mut p, u)?.returning.map(|r| r.columns),
                ast::Statement::Delete(d) => dml::plan_delete(&mut p, d)?.returning.map(|r| r.columns),
                ast::Statement::ShowVariable { variable } => Some(show_columns(variable)),
                ast::Statement::Explain { .. } => Some(vec![("QUERY PLAN".into(), DataType::Text)]),
                _ => None,
            },
            _ => None,
        };
        Ok((p.param_types(), columns))
    }

    /// Runs a statement with parameter values.
    pub fn execute(&mut self, stmt: &Stmt, params: &[Value]) -> Result<Outcome> {
        self.execute_prepared(stmt, params, None)
    }

    /// Runs a prepared statement with parameter values, reusing the plan kept in `plan` when the catalog
    /// and the parameters' types are those it was made for, as PostgreSQL's plan cache does.
    ///
    /// A plan depends on nothing else: the planner reads only the catalog (table definitions, names,
    /// sequences) of the state, never its rows or the session's settings, and evaluates nothing.
    pub fn execute_prepared(&mut self, stmt: &Stmt, params: &[Value], plan: Option<&PlanSlot>) -> Result<Outcome> {
        // statement_timeout counts from here; both limits end with the statement.
        crate::activity::set_limits(crate::activity::Limits {
            deadline: self.statement_timeout.map(|d| std::time::Instant::now() + d),
            lock_timeout: self.lock_timeout,
        });
        // Kept after the statement: its rows are written out on this thread in the session's zone.
        crate::sql::timezone::set_current(self.zone.clone());
        let outcome = self.execute_statement(stmt, params, plan);
        crate::activity::set_limits(crate::activity::Limits::default());
        outcome
    }

    fn execute_statement(&mut self, stmt: &Stmt, params: &[Value], plan: Option<&PlanSlot>) -> Result<Outcome> {
        self.notices.clear();
        self.warnings.clear();
        if let Stmt::AlterSystem { name, value } = stmt {
            return self.alter_system(name, value.as_deref());
        }
        if let Some(s) = stmt.kind() {
            match s {
                ast::Statement::StartTransaction { modes, .. } => return self.begin(modes),
                ast::Statement::Commit { .. } => return self.commit(),
                ast::Statement::Rollback { savepoint: None, .. } => {
                    if self.status == TxnStatus::Idle && self.txn.is_none() {
                        self.notices.push("there is no transaction in progress".into());
                    }
                    self.end_txn(false)?;
                    return Ok(Outcome::Command("ROLLBACK".into()));
                }
                ast::Statement::Rollback { savepoint: Some(name), .. } => return self.rollback_to(&ident(name)),
                ast::Statement::Prepare { .. } | ast::Statement::Execute { .. } | ast::Statement::Deallocate { .. } => {
                    // The real tree: a shaped statement's template may carry another statement's literals.
                    let tree = match stmt {
                        Stmt::Shaped(sh) => sh.tree(),
                        _ => s.clone(),
                    };
                    return self.prepared_sql(tree);
                }
                _ => {}
            }
        }
        if matches!(stmt, Stmt::Empty) {
            return Ok(Outcome::Empty);
        }
        if self.status == TxnStatus::Failed {
            return Err(Error::new(
                SqlState::IN_FAILED_SQL_TRANSACTION,
                "current transaction is aborted, commands ignored until end of transaction block",
            ));
        }
        if self.txn.is_none() {
            self.begin_txn(self.default_isolation());
        }
        // Outside a block, a statement commits by itself, unless it is part of a multi-statement query.
        let per_statement = self.status == TxnStatus::Idle && !self.batch;
        let result = self.run(stmt, params, plan);
        match (&result, per_statement) {
            (Ok(Outcome::CopyIn { .. }), _) => {}
            (Ok(_), true) => self.end_txn(true)?,
            (Ok(_), false) => {}
            (Err(_), true) => self.end_txn(false)?,
            (Err(_), false) if self.status == TxnStatus::Idle => self.end_txn(false)?,
            (Err(_), false) => self.status = TxnStatus::Failed,
        }
        result
    }

    /// Starts a multi-statement simple query: its statements share one implicit transaction, as in
    /// PostgreSQL (a BEGIN inside turns it into an explicit block; a COMMIT inside ends it).
    pub fn begin_batch(&mut self) {
        self.batch = true;
    }

    /// Ends a multi-statement query, committing its implicit transaction if one is open.
    pub fn end_batch(&mut self) -> Result<()> {
        self.batch = false;
        if self.status == TxnStatus::Idle && self.txn.is_some() {
            return self.end_txn(true);
        }
        Ok(())
    }

    fn begin(&mut self, modes: &[ast::TransactionMode]) -> Result<Outcome> {
        if self.status != TxnStatus::Idle {
            self.notices.push("there is already a transaction in progress".into());
            return Ok(Outcome::Command("BEGIN".into()));
        }
        let mut isolation = self.default_isolation();
        for m in modes {
            if let ast::TransactionMode::IsolationLevel(l) = m {
                isolation = match l {
                    ast::TransactionIsolationLevel::RepeatableRead | ast::TransactionIsolationLevel::Serializable => {
                        Isolation::RepeatableRead
                    }
                    _ => Isolation::ReadCommitted,
                };
            }
        }
        if self.txn.is_none() {
            self.begin_txn(isolation);
        }
        self.status = TxnStatus::InBlock;
        Ok(Outcome::Command("BEGIN".into()))
    }

    fn commit(&mut self) -> Result<Outcome> {
        match self.status {
            TxnStatus::Idle if self.txn.is_some() => {
                self.end_txn(true)?;
                Ok(Outcome::Command("COMMIT".into()))
            }
            TxnStatus::Idle => {
                self.notices.push("there is no transaction in progress".into());
                Ok(Outcome::Command("COMMIT".into()))
            }
            TxnStatus::Failed => {
                self.end_txn(false)?;
                Ok(Outcome::Command("ROLLBACK".into()))
            }
            TxnStatus::InBlock => {
                self.end_txn(true)?;
                Ok(Outcome::Command("COMMIT".into()))
            }
        }
    }

    fn rollback_to(&mut self, name: &str) -> Result<Outcome> {
        let Some(pos) = self.savepoints.iter().rposition(|(n, _)| n == name) else {
            if self.status == TxnStatus::Idle {
                return Err(Error::new(
                    SqlState::NO_ACTIVE_SQL_TRANSACTION,
                    "ROLLBACK TO SAVEPOINT can only be used in transaction blocks",
                ));
            }
            self.status = TxnStatus::Failed;
            return Err(Error::new(SqlState::INVALID_SAVEPOINT, format!("savepoint \"{name}\" does not exist")));
        };
        self.savepoints.truncate(pos + 1);
        if let (Some(txn), Some((_, sp))) = (self.txn.as_mut(), self.savepoints.last()) {
            txn.rollback_to(sp);
        }
        self.status = TxnStatus::InBlock;
        Ok(Outcome::Command("ROLLBACK".into()))
    }

    /// Finishes a COPY FROM STDIN with its data.
    pub fn copy_in(&mut self, stmt: &CopyStmt, data: &[u8]) -> Result<Outcome> {
        let result = self.copy_in_rows(stmt, data);
        let implicit = self.status == TxnStatus::Idle;
        match (&result, implicit) {
            (Ok(_), true) => self.end_txn(true)?,
            (Ok(_), false) => {}
            (Err(_), true) => self.end_txn(false)?,
            (Err(_), false) => self.status = TxnStatus::Failed,
        }
        result
    }

    /// Ends a statement that failed outside the executor (a COPY the client abandoned, a parse error): rolls back an implicit transaction, or marks a block failed.
    pub fn statement_failed(&mut self) {
        if self.status == TxnStatus::Idle {
            let _ = self.end_txn(false);
        } else {
            self.status = TxnStatus::Failed;
        }
    }

    fn copy_in_rows(&mut self, stmt: &CopyStmt, data: &[u8]) -> Result<Outcome> {
        let txn = self.txn.as_mut().ok_or_else(|| Error::internal("COPY without a transaction"))?;
        let CopySource::Table { name, columns } = &stmt.source else {
            return Err(Error::internal("COPY FROM a query"));
        };
        let def = txn
            .state()
            .table(name)
            .map(|t| t.def.clone())
            .ok_or_else(|| Error::new(SqlState::UNDEFINED_TABLE, format!("relation \"{name}\" does not exist")))?;
        let targets = copy_targets(&def, columns)?;
        let rows = copy::decode(stmt, data)?;
        let mut n = 0u64;
        for (line, fields) in rows.into_iter().enumerate() {
            if fields.len() != targets.len() {
                let what = if fields.len() < targets.len() {
                    "missing data for column"
                } else {
                    "extra data after last expected column"
                };
                return Err(Error::new(SqlState("22P04"), what.to_string())
                    .with_detail(format!("COPY {name}, line {}", line + 1)));
            }
            let mut row = vec![Value::Null; def.columns.len()];
            for (f, &c) in fields.into_iter().zip(&targets) {
                if let Some(text) = f {
                    row[c] = types::parse_value(&text, &def.columns[c].ty).map_err(|e| {
                        e.with_detail(format!("COPY {name}, line {}, column {}", line + 1, def.columns[c].name))
                    })?;
                }
            }
            for (c, col) in def.columns.iter().enumerate() {
                if row[c].is_null()
                    && (col.not_null || def.primary_key.as_ref().is_some_and(|pk| pk.columns.contains(&c)))
                {
                    return Err(Error::new(
                        SqlState::NOT_NULL_VIOLATION,
                        format!(
                            "null value in column \"{}\" of relation \"{name}\" violates not-null constraint",
                            col.name
                        ),
                    ));
                }
            }
            txn.insert(def.id, row.into())?;
            n += 1;
        }
        Ok(Outcome::Command(format!("COPY {n}")))
    }

    fn env<'a>(&'a self, state: &'a DbState, params: &'a [Value]) -> Env<'a> {
        Env { state, params, outer: Vec::new(), session: &self.ctx, txn: None }
    }

    fn run(&mut self, stmt: &Stmt, params: &[Value], plan: Option<&PlanSlot>) -> Result<Outcome> {
        let txn = self.txn.as_mut().ok_or_else(|| Error::internal("no transaction"))?;
        txn.begin_statement()?;
        // A statement that may read what the transaction's deferred increments change materializes them
        // first. UPDATE and INSERT decide once planned (see `fresh_state`); a savepoint reads nothing.
        let keeps = matches!(stmt.kind(), Some(s) if matches!(s,
            ast::Statement::Update(_) | ast::Statement::Insert(_)
                | ast::Statement::Savepoint { .. } | ast::Statement::ReleaseSavepoint { .. }));
        if !keeps {
            txn.materialize_all()?;
        }
        let state = txn.state().clone();
        self.ctx.work.set(0);
        match stmt {
            Stmt::Empty => Ok(Outcome::Empty),
            Stmt::Maintenance(tag) => {
                if *tag == "VACUUM" && self.status == TxnStatus::InBlock {
                    return Err(Error::new(
                        SqlState::ACTIVE_SQL_TRANSACTION,
                        "VACUUM cannot run inside a transaction block",
                    ));
                }
                Ok(Outcome::Command(tag.to_string()))
            }
            Stmt::Checkpoint => {
                self.engine.checkpoint()?;
                Ok(Outcome::Command("CHECKPOINT".into()))
            }
            Stmt::Copy(c) => self.copy_start(c, &state, params),
            Stmt::AlterSystem { .. } => Err(Error::internal("ALTER SYSTEM runs outside a transaction")),
            Stmt::Sql(s) => self.run_sql(s, &state, params, plan),
            Stmt::Shaped(s) => self.run_shaped(s, &state),
        }
    }

    fn copy_start(&mut self, c: &CopyStmt, state: &DbState, params: &[Value]) -> Result<Outcome> {
        if c.from {
            let CopySource::Table { name, columns } = &c.source else {
                return Err(Error::internal("COPY FROM a query"));
            };
            let def = state
                .table(name)
                .map(|t| t.def.clone())
                .ok_or_else(|| Error::new(SqlState::UNDEFINED_TABLE, format!("relation \"{name}\" does not exist")))?;
            let n = copy_targets(&def, columns)?.len();
            return Ok(Outcome::CopyIn { stmt: c.clone(), columns: n });
        }
        // The query's column names, for a header.
        let mut query_names = Vec::new();
        let (cols, rows) = match &c.source {
            CopySource::Query(q) => {
                let stmts = parse_sql(q).map_err(syntax_error)?;
                let [ast::Statement::Query(query)] = stmts.as_slice() else {
                    return Err(Error::new(SqlState::SYNTAX_ERROR, "COPY (query) needs a single SELECT"));
                };
                let planned = Planner::new(state, &[]).query(query)?;
                let rows = execute::run(&planned.plan, &self.env(state, params))?;
                query_names = planned.columns.iter().map(|c| Some(c.0.clone())).collect();
                (planned.columns.into_iter().map(|c| c.1).collect::<Vec<_>>(), rows)
            }
            CopySource::Table { name, columns } => {
                let t = state.table(name).ok_or_else(|| {
                    Error::new(SqlState::UNDEFINED_TABLE, format!("relation \"{name}\" does not exist"))
                })?;
                let targets = copy_targets(&t.def, columns)?;
                let rows = t.rows.values().map(|r| targets.iter().map(|&i| r[i].clone()).collect()).collect();
                (targets.iter().map(|&i| t.def.columns[i].ty.clone()).collect(), rows)
            }
        };
        let mut data = Vec::new();
        if c.header && c.csv {
            let names: Vec<Option<String>> = match &c.source {
                CopySource::Table { name, columns } => {
                    let def =
                        state.table(name).map(|t| t.def.clone()).ok_or_else(|| Error::internal("table vanished"))?;
                    copy_targets(&def, columns)?.iter().map(|&i| Some(def.columns[i].name.clone())).collect()
                }
                CopySource::Query(_) => std::mem::take(&mut query_names),
            };
            copy::encode_row(c, &names, &mut data);
        }
        let n = rows.len();
        for r in rows {
            let fields: Vec<Option<String>> = r.iter().zip(&cols).map(|(v, t)| types::format_value(v, t)).collect();
            copy::encode_row(c, &fields, &mut data);
        }
        Ok(Outcome::CopyOut { columns: cols.len(), data, tag: format!("COPY {n}") })
    }

    /// Runs a planned query, INSERT, UPDATE or DELETE.
    fn run_planned(&mut self, plan: &Planned, state: &DbState, params: &[Value]) -> Result<Outcome> {
        let txn = self.txn.as_mut().ok_or_else(|| Error::internal("no transaction"))?;
        match plan {
            Planned::Query(planned) => {
                let cell = std::cell::RefCell::new(txn);
                let env = Env { state, params, outer: Vec::new(), session: &self.ctx, txn: Some(&cell) };
                let rows = execute::run(&planned.plan, &env)?;
                let tag = format!("SELECT {}", rows.len());
                Ok(Outcome::Rows { columns: planned.columns.clone(), rows, tag })
            }
            Planned::Insert(plan) => {
                let fresh = fresh_state(txn, dml::insert_reads(plan))?;
                let state = fresh.as_ref().unwrap_or(state);
                let mut planner = Planner::new(state, &[]);
                planner.params = params.iter().map(|v| Some(types::type_of_value(v))).collect();
                let cell = std::cell::RefCell::new(txn);
                let env = Env { state, params, outer: Vec::new(), session: &self.ctx, txn: Some(&cell) };
                let r = dml::insert(&cell, plan, &env, &mut planner)?;
                write_outcome(format!("INSERT 0 {}", r.count), r, plan.returning.as_ref())
            }
            Planned::Update(plan) => {
                let deferred = match txn.isolation() {
                    Isolation::ReadCommitted => dml::increment_only(plan),
                    Isolation::RepeatableRead => None,
                };
                let fresh = fresh_state(txn, deferred.is_none())?;
                let state = fresh.as_ref().unwrap_or(state);
                let cell = std::cell::RefCell::new(txn);
                let env = Env { state, params, outer: Vec::new(), session: &self.ctx, txn: Some(&cell) };
                let r = match deferred {
                    Some(addends) => dml::increment(&cell, plan, addends, &env)?,
                    None => dml::update_or_delete(&cell, plan, &env, false)?,
                };
                write_outcome(format!("UPDATE {}", r.count), r, plan.returning.as_ref())
            }
            Planned::Delete(plan) => {
                let cell = std::cell::RefCell::new(txn);
                let env = Env { state, params, outer: Vec::new(), session: &self.ctx, txn: Some(&cell) };
                let r = dml::update_or_delete(&cell, plan, &env, true)?;
                write_outcome(format!("DELETE {}", r.count), r, plan.returning.as_ref())
            }
        }
    }

    /// Runs a statement of a known shape (see [`crate::sql::shape`]).
    ///
    /// Clients on the simple protocol send the same statements with other constants in them. Such a
    /// query, INSERT, UPDATE or DELETE is planned once per shape, its literals standing for parameters,
    /// and each statement of the shape runs that plan with its own literals as the parameters' values.
    /// The shape's plan is trusted only once it proved to be the statement's own: the first statement of
    /// the shape (for a catalog version and literal types) is planned both ways, and the shape's plan kept
    /// only if every literal was planned as a value and binding the literals to it gives exactly the
    /// statement's own plan. A literal that decides what the plan is rather than being a value in it (an
    /// ORDER BY position, a regclass name, a typed string) fails that, and the shape's statements are then
    /// planned one by one, as before.
    fn run_shaped(&mut self, shaped: &shape::Shaped, state: &DbState) -> Result<Outcome> {
        use ast::Statement as S;
        if !matches!(shaped.template.tree, S::Query(_) | S::Insert(_) | S::Update(_) | S::Delete(_)) {
            return self.run_sql(&shaped.tree(), state, &[], None);
        }
        let (literals, types): (Vec<Value>, Vec<DataType>) =
            shaped.literals.iter().map(planner::literal_value).collect::<Result<Vec<_>>>()?.into_iter().unzip();
        let catalog = state.catalog_version();
        let slot = &shaped.template.plans;
        match slot.get(catalog, &types) {
            Some(Some(plan)) => return self.run_planned(&plan, state, &literals),
            Some(None) => {
                return self.run_planned(&plan_statement(&mut Planner::new(state, &[]), &shaped.tree())?, state, &[])
            }
            None => {}
        }
        let own = plan_statement(&mut Planner::new(state, &[]), &shaped.tree())?;
        let mut planner = Planner::new(state, &[]);
        planner.params = types.iter().cloned().map(Some).collect();
        planner.slots =
            Some(planner::Slots { spans: shaped.template.spans.clone(), used: vec![false; literals.len()] });
        let general = plan_statement(&mut planner, &shaped.template.tree).ok().filter(|general| {
            planner.slots.as_ref().is_some_and(|s| s.used.iter().all(|&u| u))
                && planner.params.len() == literals.len()
                && binds_to(general, &own, &literals)
        });
        match general {
            Some(general) => {
                let general = Rc::new(general);
                slot.put(catalog, types, Some(general.clone()));
                self.run_planned(&general, state, &literals)
            }
            None => {
                slot.put(catalog, types, None);
                self.run_planned(&own, state, &[])
            }
        }
    }

    fn run_sql(
        &mut self,
        s: &ast::Statement,
        state: &DbState,
        params: &[Value],
        cache: Option<&PlanSlot>,
    ) -> Result<Outcome> {
        use ast::Statement as S;
        let types: Vec<DataType> = params.iter().map(types::type_of_value).collect();
        let mut planner = Planner::new(state, &[]);
        planner.params = types.iter().cloned().map(Some).collect();
        match s {
            S::Query(_) | S::Insert(_) | S::Update(_) | S::Delete(_) => {
                let plan = match cache {
                    Some(slot) => match slot.get(state.catalog_version(), &types) {
                        Some(Some(plan)) => plan,
                        _ => {
                            let plan = Rc::new(plan_statement(&mut planner, s)?);
                            slot.put(state.catalog_version(), types, Some(plan.clone()));
                            plan
                        }
                    },
                    None => Rc::new(plan_statement(&mut planner, s)?),
                };
                self.run_planned(&plan, state, params)
            }
            S::Explain { statement, .. } => {
                let plan = match statement.as_ref() {
                    S::Query(q) => planner.query(q)?.plan,
                    S::Update(u) => {
                        let p = dml::plan_update(&mut planner, u)?;
                        crate::sql::plan::Plan::Table {
                            table: p.def.id,
                            name: p.def.name.clone(),
                            access: p.access,
                            filter: p.filter,
                        }
                    }
                    S::Delete(d) => {
                        let p = dml::plan_delete(&mut planner, d)?;
                        crate::sql::plan::Plan::Table {
                            table: p.def.id,
                            name: p.def.name.clone(),
                            access: p.access,
                            filter: p.filter,
                        }
                    }
                    other => {
                        return Err(Error::new(
                            SqlState::FEATURE_NOT_SUPPORTED,
                            format!("EXPLAIN {other} is not supported"),
                        ))
                    }
                };
                let rows = plan.explain().into_iter().map(|l| vec![Value::text(&l)]).collect::<Vec<_>>();
                let tag = format!("EXPLAIN {}", rows.len());
                Ok(Outcome::Rows { columns: vec![("QUERY PLAN".into(), DataType::Text)], rows, tag })
            }
            S::CreateTable(ct) => self.ddl(|txn| ddl::create_table(txn, ct)),
            S::Drop { object_type, if_exists, names, .. } => {
                self.ddl(|txn| ddl::drop(txn, object_type, *if_exists, names))
            }
            S::Truncate(t) => self.ddl(|txn| ddl::truncate(txn, t)),
            S::AlterTable(at) => self.ddl(|txn| ddl::alter_table(txn, at)),
            S::CreateIndex(ci) => self.ddl(|txn| ddl::create_index(txn, ci)),
            S::CreateSequence { name, if_not_exists, sequence_options, .. } => {
                self.ddl(|txn| ddl::create_sequence(txn, name, *if_not_exists, sequence_options))
            }
            S::Savepoint { name } => {
                if self.status != TxnStatus::InBlock {
                    return Err(Error::new(
                        SqlState::NO_ACTIVE_SQL_TRANSACTION,
                        "SAVEPOINT can only be used in transaction blocks",
                    ));
                }
                let sp = self.txn.as_ref().map(|t| t.savepoint()).ok_or_else(|| Error::internal("no transaction"))?;
                self.savepoints.push((ident(name), sp));
                Ok(Outcome::Command("SAVEPOINT".into()))
            }
            S::ReleaseSavepoint { name } => {
                let n = ident(name);
                let pos = self.savepoints.iter().rposition(|(x, _)| *x == n).ok_or_else(|| {
                    Error::new(SqlState::INVALID_SAVEPOINT, format!("savepoint \"{n}\" does not exist"))
                })?;
                self.savepoints.truncate(pos);
                Ok(Outcome::Command("RELEASE".into()))
            }
            S::Set(set) => self.set(set),
            S::ShowVariable { variable } => self.show(variable),
            S::Reset(r) => {
                let defaults = default_settings(&self.engine, &self.ctx.user, "", "UTF8");
                match &r.reset {
                    ast::Reset::ConfigurationParameter(n) => {
                        let name = name_parts(n).join(".");
                        if !name.eq_ignore_ascii_case("synchronous_commit") {
                            crate::sql::params::settable(&name)?;
                        }
                        match defaults.iter().find(|(k, _)| k.eq_ignore_ascii_case(&name)) {
                            Some((_, v)) => self.put_setting(&name, v.clone()),
                            // A custom setting stays, empty, as PostgreSQL keeps its placeholder.
                            None if crate::sql::params::find(&name).is_none() => self.put_setting(&name, String::new()),
                            // Back to the server's value or PostgreSQL's default.
                            None => self.ctx.settings.retain(|(k, _)| !k.eq_ignore_ascii_case(&name)),
                        }
                    }
                    _ => {
                        let keep = |k: &str| {
                            matches!(k, "application_name" | "client_encoding")
                                || defaults.iter().any(|(d, _)| d.eq_ignore_ascii_case(k))
                                || crate::sql::params::find(k)
                                    .is_some_and(|p| p.context != crate::sql::params::Context::User)
                        };
                        self.ctx.settings.retain(|(k, _)| keep(k) || crate::sql::params::find(k).is_none());
                        for (k, v) in self.ctx.settings.iter_mut() {
                            if !keep(k) {
                                v.clear();
                            }
                        }
                        for (k, v) in defaults
                            .into_iter()
                            .filter(|(k, _)| !matches!(k.as_str(), "application_name" | "client_encoding"))
                        {
                            self.put_setting(&k, v);
                        }
                    }
                }
                let all = !matches!(&r.reset, ast::Reset::ConfigurationParameter(n)
                    if !name_parts(n).join(".").eq_ignore_ascii_case("synchronous_commit"));
                if all {
                    self.sync_commit = None;
                    self.put_setting("synchronous_commit", self.sync_level().name().into());
                }
                Ok(Outcome::Command("RESET".into()))
            }
            S::Discard { .. } => Ok(Outcome::Command("DISCARD ALL".into())),
            S::Comment { .. } => Ok(Outcome::Command("COMMENT".into())),
            S::Vacuum(_) => Ok(Outcome::Command("VACUUM".into())),
            S::Analyze(_) => Ok(Outcome::Command("ANALYZE".into())),
            other => Err(Error::new(
                SqlState::FEATURE_NOT_SUPPORTED,
                format!("statement is not supported: {}", other.to_string().chars().take(60).collect::<String>()),
            )),
        }
    }

    fn ddl(&mut self, f: impl FnOnce(&mut Transaction) -> Result<ddl::DdlResult>) -> Result<Outcome> {
        let txn = self.txn.as_mut().ok_or_else(|| Error::internal("no transaction"))?;
        let r = f(txn)?;
        self.notices.extend(r.notices);
        Ok(Outcome::Command(r.tag))
    }

    /// `ALTER SYSTEM`: writes postgresql.auto.conf; `pg_reload_conf()` applies it.
    fn alter_system(&mut self, name: &str, value: Option<&str>) -> Result<Outcome> {
        if self.status != TxnStatus::Idle || self.batch {
            return Err(Error::new(
                SqlState::ACTIVE_SQL_TRANSACTION,
                "ALTER SYSTEM cannot run inside a transaction block",
            ));
        }
        let ctx = self.ctx.replication.as_ref().ok_or_else(|| {
            Error::new(SqlState::FEATURE_NOT_SUPPORTED, "ALTER SYSTEM needs a server with a data directory")
        })?;
        ctx.settings.alter_system(name, value)?;
        Ok(Outcome::Command("ALTER SYSTEM".into()))
    }

    fn put_setting(&mut self, name: &str, value: String) {
        if name.eq_ignore_ascii_case("timezone") {
            // Checked by SET before it gets here; a zone unknown at connection start leaves UTC.
            self.zone = crate::sql::timezone::load(&value).ok().filter(|z| !z.is_utc());
        }
        let limit = || crate::settings::parse_duration(&value).filter(|d| !d.is_zero());
        if name.eq_ignore_ascii_case("statement_timeout") {
            self.statement_timeout = limit();
        } else if name.eq_ignore_ascii_case("lock_timeout") {
            self.lock_timeout = limit();
        } else if name.eq_ignore_ascii_case("idle_in_transaction_session_timeout") {
            self.idle_in_transaction_timeout = limit();
        }
        if let Some(r) = REPORTED.iter().find(|r| r.eq_ignore_ascii_case(name)) {
            self.reported.push((r.to_string(), value.clone()));
        }
        match self.ctx.settings.iter_mut().find(|(k, _)| k.eq_ignore_ascii_case(name)) {
            Some((_, v)) => *v = value,
            None => self.ctx.settings.push((name.to_string(), value)),
        }
    }

    fn set(&mut self, set: &ast::Set) -> Result<Outcome> {
        match set {
            ast::Set::SingleAssignment { variable, values, .. } => {
                let name = name_parts(variable).join(".");
                let value = values
                    .iter()
                    .map(|v| match v {
                        ast::Expr::Value(x) => match &x.value {
                            ast::Value::SingleQuotedString(s) => s.clone(),
                            other => other.to_string(),
                        },
                        ast::Expr::Identifier(i) => i.value.clone(),
                        other => other.to_string(),
                    })
                    .collect::<Vec<_>>()
                    .join(", ");
                if name.eq_ignore_ascii_case("synchronous_commit") {
                    let level = SyncLevel::parse(&value).ok_or_else(|| {
                        Error::new(
                            SqlState::INVALID_PARAMETER_VALUE,
                            format!("invalid value for parameter \"synchronous_commit\": \"{value}\""),
                        )
                        .with_hint("Available values: local, remote_write, remote_apply, on, off.")
                    })?;
                    self.sync_commit = Some(level);
                    self.put_setting("synchronous_commit", level.name().into());
                    return Ok(Outcome::Command("SET".into()));
                }
                if crate::settings::ServerSettings::is_known(&name) {
                    return Err(Error::new(SqlState("55P02"), format!("parameter \"{name}\" cannot be changed now"))
                        .with_hint("Use ALTER SYSTEM SET and SELECT pg_reload_conf()."));
                }
                let timeout = ["statement_timeout", "lock_timeout", "idle_in_transaction_session_timeout"]
                    .iter()
                    .any(|t| name.eq_ignore_ascii_case(t));
                if timeout && crate::settings::parse_duration(&value).is_none() {
                    return Err(Error::new(
                        SqlState::INVALID_PARAMETER_VALUE,
                        format!("invalid value for parameter \"{name}\": \"{value}\""),
                    )
                    .with_hint("Valid units for this parameter are \"ms\", \"s\", \"min\" and \"h\"."));
                }
                let name = crate::sql::params::settable(&name)?;
                if name == "TimeZone" {
                    crate::sql::timezone::load(&value)?;
                }
                self.put_setting(&name, value);
                Ok(Outcome::Command("SET".into()))
            }
            ast::Set::SetTimeZone { value, .. } => {
                let value = value.to_string().trim_matches('\'').to_string();
                let value = if value.eq_ignore_ascii_case("local") || value.eq_ignore_ascii_case("default") {
                    "Etc/UTC".to_string()
                } else {
                    value
                };
                crate::sql::timezone::load(&value)?;
                self.put_setting("TimeZone", value);
                Ok(Outcome::Command("SET".into()))
            }
            ast::Set::SetTransaction { modes, session, .. } => {
                for m in modes {
                    if let ast::TransactionMode::IsolationLevel(l) = m {
                        let v = match l {
                            ast::TransactionIsolationLevel::RepeatableRead => "repeatable read",
                            ast::TransactionIsolationLevel::Serializable => "serializable",
                            _ => "read committed",
                        };
                        if *session {
                            self.put_setting("default_transaction_isolation", v.into());
                        }
                    }
                }
                Ok(Outcome::Command("SET".into()))
            }
            _ => Ok(Outcome::Command("SET".into())),
        }
    }

    fn show(&self, variable: &[ast::Ident]) -> Result<Outcome> {
        let name = show_name(variable);
        if name.eq_ignore_ascii_case("all") {
            // Every PostgreSQL parameter with its value here, and the custom settings this session made.
            let mut settings: Vec<(String, String)> = crate::sql::params::all()
                .map(|p| (p.name.to_string(), self.ctx.current_setting(p.name).unwrap_or_default()))
                .collect();
            settings.extend(self.ctx.settings.iter().filter(|(k, _)| crate::sql::params::find(k).is_none()).cloned());
            settings.sort_by_key(|(k, _)| k.to_lowercase());
            let rows = settings
                .into_iter()
                .map(|(k, v)| vec![Value::text(&k), Value::text(&v), Value::text("")])
                .collect::<Vec<_>>();
            let tag = format!("SHOW {}", rows.len());
            let _ = tag;
            return Ok(Outcome::Rows { columns: show_columns(variable), rows, tag: "SHOW".into() });
        }
        let value = match name.to_lowercase().as_str() {
            "server_version" => crate::SERVER_VERSION.split(' ').next().unwrap_or("15").to_string(),
            "synchronous_commit" => self.sync_level().name().to_string(),
            _ => self.ctx.current_setting(&name).ok_or_else(|| crate::sql::params::unrecognized(&name))?,
        };
        Ok(Outcome::Rows { columns: show_columns(variable), rows: vec![vec![Value::text(&value)]], tag: "SHOW".into() })
    }
}

/// The setting SHOW names: `SHOW TRANSACTION ISOLATION LEVEL` (words) is transaction_isolation, and
/// `SHOW my.setting` (a qualified name, as SET writes it) keeps its dot.
fn show_name(variable: &[ast::Ident]) -> String {
    let words = variable.iter().map(|i| i.value.clone()).collect::<Vec<_>>();
    match words.join(" ").to_lowercase().as_str() {
        "transaction isolation level" => "transaction_isolation".into(),
        "time zone" => "TimeZone".into(),
        "session authorization" => "session_authorization".into(),
        _ => words.join("."),
    }
}

fn show_columns(variable: &[ast::Ident]) -> Vec<(String, DataType)> {
    let name = show_name(variable).to_lowercase();
    if name == "all" {
        return vec![
            ("name".into(), DataType::Text),
            ("setting".into(), DataType::Text),
            ("description".into(), DataType::Text),
        ];
    }
    // PostgreSQL heads the column with the parameter's own spelling (SHOW datestyle gives "DateStyle").
    let name = crate::sql::params::find(&name).map_or(name, |p| p.name.to_string());
    vec![(name, DataType::Text)]
}

fn write_outcome(tag: String, r: dml::WriteResult, returning: Option<&dml::Returning>) -> Result<Outcome> {
    Ok(match returning {
        Some(ret) => Outcome::Rows { columns: ret.columns.clone(), rows: r.rows, tag },
        None => Outcome::Command(tag),
    })
}

/// A statement's plan kept between executions: a prepared statement's (see
/// [`Session::execute_prepared`]), or a statement shape's (see [`Session::run_shaped`]).
#[derive(Default)]
pub struct PlanSlot(RefCell<Option<CachedPlan>>);

struct CachedPlan {
    /// The catalog version of the state it was planned against.
    catalog: u64,
    /// The types of the parameter values it was planned with.
    params: Vec<DataType>,
    /// None: a shape whose plan cannot stand for its statements (each statement is planned itself).
    plan: Option<Rc<Planned>>,
}

impl PlanSlot {
    /// What the slot holds for this catalog and these parameter types, if anything.
    fn get(&self, catalog: u64, params: &[DataType]) -> Option<Option<Rc<Planned>>> {
        let slot = self.0.borrow();
        let c = slot.as_ref().filter(|c| c.catalog == catalog && c.params == params)?;
        Some(c.plan.clone())
    }

    fn put(&self, catalog: u64, params: Vec<DataType>, plan: Option<Rc<Planned>>) {
        *self.0.borrow_mut() = Some(CachedPlan { catalog, params, plan });
    }
}

/// A statement's plan.
#[derive(Debug)]
enum Planned {
    Query(crate::sql::planner::Query),
    Insert(dml::InsertPlan),
    Update(dml::WritePlan),
    Delete(dml::WritePlan),
}

/// Plans a query, INSERT, UPDATE or DELETE.
fn plan_statement(planner: &mut Planner, s: &ast::Statement) -> Result<Planned> {
    use ast::Statement as S;
    Ok(match s {
        S::Query(q) => Planned::Query(planner.query(q)?),
        S::Insert(i) => Planned::Insert(dml::plan_insert(planner, i)?),
        S::Update(u) => Planned::Update(dml::plan_update(planner, u)?),
        S::Delete(d) => Planned::Delete(dml::plan_delete(planner, d)?),
        other => return Err(Error::internal(format!("no plan for {other}"))),
    })
}

/// Whether the shape's plan, its parameters bound to a statement's literals, is the statement's own plan.
/// Compared as printed, with each `Param(i)` printed as the constant it is bound to, and a negated integer
/// constant folded as the planner folds a negative literal.
fn binds_to(shape: &Planned, own: &Planned, literals: &[Value]) -> bool {
    let bound = rewrite(&format!("{shape:?}"), "Param(", ")", |i| {
        literals.get(i.parse::<usize>().ok()?).map(|v| format!("Const({v:?})"))
    });
    fold_negation(&bound) == fold_negation(&format!("{own:?}"))
}

/// `Neg(Const(Int(n)))` printed as `Const(Int(-n))`.
fn fold_negation(printed: &str) -> String {
    rewrite(printed, "Neg(Const(Int(", ")))", |n| {
        Some(format!("Const(Int({}))", n.parse::<i64>().ok()?.checked_neg()?))
    })
}

/// `printed` with every `open`…`close` whose text between them `replace` maps replaced by what it gives;
/// the others are left as they are.
fn rewrite(printed: &str, open: &str, close: &str, replace: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(printed.len());
    let mut rest = printed;
    while let Some(at) = rest.find(open) {
        out.push_str(&rest[..at]);
        let after = &rest[at + open.len()..];
        match after.find(close).and_then(|end| Some((end, replace(&after[..end])?))) {
            Some((end, with)) => {
                out.push_str(&with);
                rest = &after[end + close.len()..];
            }
            None => {
                out.push_str(open);
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

fn copy_targets(def: &crate::storage::catalog::TableDef, columns: &[String]) -> Result<Vec<usize>> {
    if columns.is_empty() {
        return Ok((0..def.columns.len()).collect());
    }
    columns
        .iter()
        .map(|c| {
            def.column_index(c).ok_or_else(|| {
                Error::new(
                    SqlState::UNDEFINED_COLUMN,
                    format!("column \"{c}\" of relation \"{}\" does not exist", def.name),
                )
            })
        })
        .collect()
}

/// The version string, for the server banner.
pub fn server_version() -> String {
    functions::version()
}

/// For a statement that reads tables (`reads`) in a transaction with deferred increments: materializes
/// them and returns the statement's new view. None when there is nothing to do.
fn fresh_state(txn: &mut Transaction, reads: bool) -> Result<Option<DbState>> {
    if !reads || !txn.has_increments() {
        return Ok(None);
    }
    txn.materialize_all()?;
    Ok(Some(txn.state().clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printed_plans_are_bound_and_folded() {
        let numbered = |i: &str| i.parse::<usize>().ok().map(|i| format!("<{i}>"));
        assert_eq!(
            rewrite("Param(1), Param(10), Param(x), Param(2", "Param(", ")", numbered),
            "<1>, <10>, Param(x), Param(2"
        );
        assert_eq!(
            fold_negation("Neg(Const(Int(5))), Neg(Const(Int(-3))), Neg(Const(Int(9)), Neg(Param(0))"),
            "Const(Int(-5)), Const(Int(3)), Neg(Const(Int(9)), Neg(Param(0))"
        );
    }
}
