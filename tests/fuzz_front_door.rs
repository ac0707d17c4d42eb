//! Property tests standing in for fuzzing in CI: the SQL front door (pre-parser, parser, planner) and the
//! wire decoder must turn any input into a result or an error, never a panic.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use tandem::sql::planner::Planner;
use tandem::sql::session::{parse, Stmt};
use tandem::sql::{dml, planner};
use tandem::storage::catalog::{ColumnDef, IndexDef, PrimaryKey, TableDef};
use tandem::storage::state::{DbState, Op};
use tandem::storage::value::DataType;

fn state() -> DbState {
    let mut s = DbState::new();
    let col =
        |name: &str, ty: DataType| ColumnDef { name: name.into(), ty, not_null: false, default: Some("0".into()) };
    let def = TableDef {
        id: 20000,
        name: "t".into(),
        columns: vec![col("a", DataType::Int4), col("b", DataType::Text), col("c", DataType::Numeric(Some((10, 2))))],
        primary_key: Some(PrimaryKey { name: "t_pkey".into(), index_id: 20001, columns: vec![0] }),
        indexes: vec![IndexDef { id: 20002, name: "t_b".into(), columns: vec![1], unique: false, constraint: false }],
    };
    s.apply(&Op::CreateTable(Arc::new(def))).expect("create table");
    s
}

const TOKENS: &[&str] = &[
    "SELECT",
    "INSERT INTO t",
    "UPDATE t SET",
    "DELETE FROM t",
    "VALUES",
    "FROM",
    "t",
    "pg_class",
    "WHERE",
    "a",
    "b",
    "c",
    "=",
    "<",
    "+",
    "-",
    "*",
    "/",
    "(",
    ")",
    ",",
    "'x'",
    "1",
    "$1",
    "$2",
    "NULL",
    "AND",
    "OR",
    "NOT",
    "IN",
    "EXISTS",
    "GROUP BY",
    "ORDER BY",
    "HAVING",
    "LIMIT",
    "count(*)",
    "sum(a)",
    "JOIN",
    "LEFT JOIN",
    "ON",
    "AS",
    "x",
    "CASE WHEN",
    "THEN",
    "ELSE",
    "END",
    "::int",
    "::text",
    "UNION",
    "DISTINCT",
    "generate_series(1, 3)",
    "RETURNING",
    "*",
    ";",
    "COPY",
    "VACUUM",
    "CHECKPOINT",
    "BEGIN",
    "COMMIT",
    "LIKE",
    "BETWEEN",
    "IS",
    "coalesce(",
    "~",
    "||",
    "1.5",
    "-9",
];

fn plan_all(sql: &str, state: &DbState) {
    let Ok(stmts) = parse(sql) else { return };
    for stmt in stmts {
        let Stmt::Sql(s) = stmt else { continue };
        let mut p = Planner::new(state, &[]);
        let _ = match s.as_ref() {
            sqlparser::ast::Statement::Query(q) => p.query(q).map(|_| ()),
            sqlparser::ast::Statement::Insert(i) => dml::plan_insert(&mut p, i).map(|_| ()),
            sqlparser::ast::Statement::Update(u) => dml::plan_update(&mut p, u).map(|_| ()),
            sqlparser::ast::Statement::Delete(d) => dml::plan_delete(&mut p, d).map(|_| ()),
            _ => Ok(()),
        };
        let _ = planner::conjuncts;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, .. ProptestConfig::default() })]

    #[test]
    fn sql_front_door_never_panics(tokens in proptest::collection::vec(0..TOKENS.len(), 0..24)) {
        let sql: Vec<&str> = tokens.iter().map(|&i| TOKENS[i]).collect();
        plan_all(&sql.join(" "), &state());
    }

    #[test]
    fn sql_front_door_survives_arbitrary_text(sql in "\\PC{0,80}") {
        plan_all(&sql, &state());
    }
}

/// Inputs the cargo-fuzz targets found (kept in fuzz/seeds/): each must plan to an error, not panic.
#[test]
fn fuzz_findings_plan_to_errors() {
    let state = state();
    let findings = [
        // A parameter number far past what Bind can carry sized the parameter list to match.
        "SELECT * FROM t WHERE $811111111111111111 * 1 % $1",
        "SELECT $65536",
        "SELECT $0",
    ];
    for sql in findings {
        let stmts = parse(sql).expect("parses");
        let Some(Stmt::Sql(s)) = stmts.first() else { panic!("{sql}: not SQL") };
        let sqlparser::ast::Statement::Query(q) = s.as_ref() else { panic!("{sql}: not a query") };
        let e = Planner::new(&state, &[]).query(q).err();
        assert!(e.is_some(), "{sql} planned");
    }
    let stmts = parse("SELECT $65535::int").expect("parses");
    let Some(Stmt::Sql(s)) = stmts.first() else { panic!("not SQL") };
    let sqlparser::ast::Statement::Query(q) = s.as_ref() else { panic!("not a query") };
    let mut p = Planner::new(&state, &[]);
    assert!(p.query(q).is_ok());
    assert_eq!(p.param_types().len(), 65535);
}

fn login(port: u16) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let mut body = 196608u32.to_be_bytes().to_vec();
    body.extend_from_slice(b"user\0postgres\0database\0postgres\0\0");
    let mut msg = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    msg.extend_from_slice(&body);
    s.write_all(&msg).expect("startup");
    let mut buf = [0u8; 4096];
    let mut seen = Vec::new();
    while !seen.windows(6).any(|w| w == b"Z\0\0\0\x05I") {
        let n = s.read(&mut buf).expect("login");
        assert!(n > 0, "closed during login");
        seen.extend_from_slice(&buf[..n]);
    }
    s
}

#[test]
fn wire_decoder_survives_random_messages() {
    let server = common::TestServer::start();
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig { cases: 200, ..ProptestConfig::default() });
    let message = (
        prop_oneof![
            Just(b'Q'),
            Just(b'P'),
            Just(b'B'),
            Just(b'D'),
            Just(b'E'),
            Just(b'C'),
            Just(b'S'),
            Just(b'H'),
            Just(b'd'),
            any::<u8>()
        ],
        proptest::collection::vec(any::<u8>(), 0..64),
    );
    runner
        .run(&proptest::collection::vec(message, 1..6), |msgs| {
            let mut s = login(server.port);
            for (kind, body) in msgs {
                let mut m = vec![kind];
                m.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
                m.extend_from_slice(&body);
                if s.write_all(&m).is_err() {
                    break;
                }
            }
            let _ = s.write_all(b"S\0\0\0\x04");
            let _ = s.shutdown(std::net::Shutdown::Write);
            let mut sink = Vec::new();
            let _ = s.read_to_end(&mut sink);
            Ok(())
        })
        .expect("random messages");
    // The server is still there and serving.
    assert_eq!(server.psql("SELECT 1"), "1");
    assert!(!server.log().contains("panicked"), "a session panicked:\n{}", server.log());
}
