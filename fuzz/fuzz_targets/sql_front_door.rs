//! The SQL front door: any text goes through the pre-parser and sqlparser ([`session::parse`]); each
//! statement is then described (planned, which binds its names and infers its parameter types), bound with
//! parameters decoded as the wire's Bind decodes them, and executed, all inside one transaction that is
//! rolled back at the end, against a database with tables, primary keys and indexes. An error is an
//! answer; a panic (or an abort, a hang, running out of memory) is a bug. Statements run under a small
//! work limit, so that a legitimately expensive one fails fast with 54000 as the server would fail it.
//!
//! Input: `SQL [NUL PARAM]...`, the SQL text (invalid UTF-8 replaced) and then the parameters, each `N` for
//! NULL, `B` and the bytes of a binary value, or else text. Everything after the first NUL is also the
//! data of a COPY FROM STDIN.
//!
//! Each input's text is also checked against the shape cache ([`shape`]): respelled with other literals
//! and parsed through a cache that saw the original, it must give the tree sqlparser builds directly. And a
//! query whose shape's plan a session kept must answer, respelled with literals of the same types, what
//! the respelled text answers planned by itself.
//!
//! Nothing is ever committed, so every input starts from the same database: transaction control and
//! CHECKPOINT are parsed and planned but not run. The one database lives in a temporary directory for the
//! whole fuzzing process and is removed when it exits.

#![no_main]

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use sqlparser::ast::Statement;
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::{Parser, ParserError};
use tandem::engine::{Engine, EngineConfig, InitOptions};
use tandem::server::format;
use tandem::sql::session::{self, Outcome, Session, Stmt};
use tandem::sql::shape::{self, ShapeCache};
use tandem::storage::value::Value;

/// The database every input runs against: the tables pgbench makes, psql's catalog, and a table with a
/// composite primary key, a unique and a plain index, and a serial column.
const SCHEMA: &str = "
    CREATE TABLE pgbench_branches (bid int NOT NULL, bbalance int, filler char(88)) WITH (fillfactor=100);
    CREATE TABLE pgbench_tellers (tid int NOT NULL, bid int, tbalance int, filler char(84)) WITH (fillfactor=100);
    CREATE TABLE pgbench_accounts (aid int NOT NULL, bid int, abalance int, filler char(84)) WITH (fillfactor=100);
    CREATE TABLE pgbench_history (tid int, bid int, aid int, delta int, mtime timestamp, filler char(22));
    ALTER TABLE pgbench_branches ADD PRIMARY KEY (bid);
    ALTER TABLE pgbench_tellers ADD PRIMARY KEY (tid);
    ALTER TABLE pgbench_accounts ADD PRIMARY KEY (aid);
    INSERT INTO pgbench_branches VALUES (1, 0, NULL), (2, -5, 'x');
    INSERT INTO pgbench_tellers SELECT g, 1 + g % 2, 0 FROM generate_series(1, 20) AS g;
    INSERT INTO pgbench_accounts SELECT g, 1 + g % 2, g * 3, '' FROM generate_series(1, 100) AS g;
    INSERT INTO pgbench_history VALUES (1, 1, 1, 5, '2024-01-02 03:04:05', NULL);
    CREATE TABLE t (a int PRIMARY KEY, b text, c numeric(10,2) DEFAULT 0);
    CREATE INDEX t_b ON t (b);
    INSERT INTO t VALUES (1, 'x', 1.5), (2, 'y', NULL), (3, NULL, -9), (4, 'x', 100);
    CREATE TABLE k (x bigint, y varchar(10), z timestamptz, d date, f double precision, r real, s smallint,
                    o boolean NOT NULL DEFAULT true, bin bytea, PRIMARY KEY (x, y));
    CREATE UNIQUE INDEX k_z ON k (z);
    INSERT INTO k VALUES (1, 'a', '2024-01-01 00:00:00+00', '2024-02-29', 1.5, -0.5, 7, false, '\\x00ff'),
                         (-1, 'b', NULL, NULL, 'NaN', 'Infinity', NULL, true, NULL);
";

/// The work limit of each statement, in bytes.
const WORK_LIMIT: u64 = 64 << 20;

struct Database {
    engine: Arc<Engine>,
}

static DIR: OnceLock<PathBuf> = OnceLock::new();

extern "C" fn remove_dir() {
    if let Some(dir) = DIR.get() {
        let _ = std::fs::remove_dir_all(dir);
    }
}

fn database() -> &'static Database {
    static DB: OnceLock<Database> = OnceLock::new();
    DB.get_or_init(|| {
        let dir = DIR.get_or_init(|| std::env::temp_dir().join(format!("tandem-fuzz-{}", std::process::id())));
        let _ = std::fs::remove_dir_all(dir);
        // SAFETY: registers a plain function, run once at process exit.
        unsafe { libc::atexit(remove_dir) };
        Engine::init(dir, &InitOptions { segment_size: 1 << 20 }).expect("init the fuzz database");
        let config = EngineConfig { background_checkpoints: false, ..EngineConfig::default() };
        let engine = Arc::new(Engine::open(dir, config).expect("open the fuzz database"));
        let mut s = new_session(&engine);
        for stmt in session::parse(SCHEMA).expect("schema parses") {
            s.execute(&stmt, &[]).unwrap_or_else(|e| panic!("schema: {}", e.message));
        }
        Database { engine }
    })
}

fn new_session(engine: &Arc<Engine>) -> Session {
    let settings = session::default_settings(engine, "postgres", "fuzz", "UTF8");
    let mut s = Session::new(engine.clone(), 1, "postgres", "postgres", settings);
    // A statement that passes the work limit fails (54000) as it would in the server; a small limit keeps
    // each input fast and the fuzzer far below its memory limit.
    s.ctx.work_limit = WORK_LIMIT;
    s
}

/// Statements that would end the transaction, or write outside it.
fn skipped(stmt: &Stmt) -> bool {
    match stmt {
        Stmt::Checkpoint => true,
        Stmt::Sql(s) => matches!(
            s.as_ref(),
            Statement::StartTransaction { .. } | Statement::Commit { .. } | Statement::Rollback { savepoint: None, .. }
        ),
        _ => false,
    }
}

/// Decodes the parameters as Bind would: NULL, binary, or text, for the types the planner inferred.
fn bind(raw: &[&[u8]], types: &[tandem::storage::value::DataType]) -> Option<Vec<Value>> {
    types
        .iter()
        .enumerate()
        .map(|(i, ty)| match raw.get(i) {
            None | Some([b'N', ..]) => Some(Value::Null),
            Some([b'B', bytes @ ..]) => format::decode_param(Some(bytes), ty, true).ok(),
            Some(text) => format::decode_param(Some(text), ty, false).ok(),
        })
        .collect()
}

fn begin(s: &mut Session, begin: &Stmt) {
    s.execute(begin, &[]).unwrap_or_else(|e| panic!("BEGIN: {}", e.message));
}

fn parse_directly(text: &str) -> Result<Vec<Statement>, ParserError> {
    Parser::parse_sql(&PostgreSqlDialect {}, text)
}

/// Through a cache that has parsed `text`, the text respelled parses to the tree the parser builds.
fn shapes_agree(text: &str) {
    let mut cache = ShapeCache::default();
    if cache.parse(text, parse_directly).is_err() {
        return;
    }
    let Some(other) = shape::respell(text) else { return };
    let cached = cache.parse(&other, parse_directly).map(shape::without_spans);
    let direct = parse_directly(&other).map(shape::without_spans);
    assert_eq!(cached.ok(), direct.ok(), "respelled: {other:?}");
}

/// A query of a shape whose plan a session keeps, sent again with other literals of the same types, gives
/// what the same text gives planned by itself: the shape's plan (its literals as parameters) must never
/// stand for a statement it does not plan exactly. Queries only, so nothing changes between the runs;
/// texts that read the clock, random numbers or sequences are left out.
fn shape_plans_agree(engine: &Arc<Engine>, text: &str, control: &[Stmt]) {
    const VOLATILE: [&str; 9] = ["now", "current", "time", "clock", "random", "val", "pg_", "txid", "age"];
    let lower = text.to_lowercase();
    if VOLATILE.iter().any(|v| lower.contains(v)) {
        return;
    }
    let Some(other) = shape::respell_alike(text) else { return };
    let mut a = new_session(engine);
    let Ok(first) = a.parse_simple(text) else { return };
    let [Stmt::Shaped(shaped)] = first.as_slice() else { return };
    if !matches!(shaped.template.tree, Statement::Query(_)) {
        return;
    }
    begin(&mut a, &control[0]);
    let _ = a.execute(&first[0], &[]);
    let _ = a.execute(&control[1], &[]);
    let (Ok(again), Ok(direct)) = (a.parse_simple(&other), session::parse(&other)) else { return };
    let (Some(again), Some(direct)) = (again.first(), direct.first()) else { return };
    let mut b = new_session(engine);
    begin(&mut a, &control[0]);
    begin(&mut b, &control[0]);
    let x = summary(a.execute(again, &[]));
    let y = summary(b.execute(direct, &[]));
    let _ = a.execute(&control[1], &[]);
    let _ = b.execute(&control[1], &[]);
    assert_eq!(x, y, "first {text:?}, then {other:?}");
}

/// What a statement gave, for comparison: its rows, or its error's SQLSTATE.
fn summary(outcome: tandem::error::Result<Outcome>) -> String {
    match outcome {
        Ok(Outcome::Rows { columns, rows, tag }) => format!("{columns:?} {rows:?} {tag}"),
        Ok(Outcome::Command(tag)) => tag,
        Ok(_) => "other".into(),
        Err(e) => e.code.0.to_string(),
    }
}

// Each input runs on a thread with a session thread's stack, as the server runs statements.
fuzz_target!(|data: &[u8]| {
    std::thread::scope(|scope| {
        let worker = std::thread::Builder::new()
            .stack_size(tandem::sql::depth::SESSION_STACK_BYTES)
            .spawn_scoped(scope, || one_input(data))
            .expect("a thread for the input");
        if let Err(panic) = worker.join() {
            std::panic::resume_unwind(panic);
        }
    });
});

fn one_input(data: &[u8]) {
    let db = database();
    let (sql, tail) = match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let text = String::from_utf8_lossy(sql);
    shapes_agree(&text);
    let Ok(stmts) = session::parse(&text) else { return };
    let raw: Vec<&[u8]> = if tail.is_empty() { Vec::new() } else { tail.split(|b| *b == 0).collect() };
    let control = session::parse("BEGIN; ROLLBACK").expect("BEGIN; ROLLBACK parses");
    shape_plans_agree(&db.engine, &text, &control);
    let mut s = new_session(&db.engine);
    begin(&mut s, &control[0]);
    for stmt in &stmts {
        // As the extended protocol does: plan to learn the parameter types, then bind. A statement that
        // does not plan runs without parameters, as a simple query would.
        let params = match s.describe(stmt, &[]) {
            Ok((types, _columns)) => match bind(&raw, &types) {
                Some(params) => params,
                None => continue,
            },
            Err(_) => Vec::new(),
        };
        if skipped(stmt) {
            continue;
        }
        let outcome = match s.execute(stmt, &params) {
            Ok(Outcome::CopyIn { stmt, .. }) => s.copy_in(&stmt, tail).map(|_| ()),
            other => other.map(|_| ()),
        };
        if outcome.is_err() {
            // The block is aborted: start a new one, so that the next statements run too.
            let _ = s.execute(&control[1], &[]);
            begin(&mut s, &control[0]);
        }
    }
    let _ = s.execute(&control[1], &[]);
}
