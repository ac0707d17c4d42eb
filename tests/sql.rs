//! The SQL dialect through tokio-postgres (simple and extended protocol, prepared statements, COPY,
//! transactions) against a real server process, including the SQLSTATEs clients rely on.

mod common;

use common::TestServer;
use futures_util::{SinkExt, StreamExt};
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

async fn connect(server: &TestServer) -> Client {
    let (client, conn) = tokio_postgres::connect(&server.conninfo(), NoTls).await.expect("connect");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

/// The rows of a simple query, as text (None for NULL).
async fn rows(c: &Client, sql: &str) -> Vec<Vec<Option<String>>> {
    let msgs = c.simple_query(sql).await.unwrap_or_else(|e| panic!("{sql}: {e:?}"));
    msgs.into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some((0..r.len()).map(|i| r.get(i).map(str::to_string)).collect()),
            _ => None,
        })
        .collect()
}

/// The single value of a simple query.
async fn one(c: &Client, sql: &str) -> String {
    let r = rows(c, sql).await;
    r.first().and_then(|row| row.first().cloned().flatten()).unwrap_or_else(|| format!("<no value: {r:?}>"))
}

async fn sqlstate(c: &Client, sql: &str) -> String {
    match c.simple_query(sql).await {
        Ok(_) => "00000".into(),
        Err(e) => e.as_db_error().map(|d| d.code().code().to_string()).unwrap_or_else(|| format!("{e:?}")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_features() {
    let server = TestServer::start();
    let c = connect(&server).await;
    c.batch_execute(
        "CREATE TABLE dept (id int PRIMARY KEY, name text NOT NULL UNIQUE);
         CREATE TABLE emp (id bigint PRIMARY KEY, name varchar(20) NOT NULL, dept int, salary numeric(8,2), hired date,
                           active boolean DEFAULT true, code char(3), score real, blob bytea, seen timestamptz);
         INSERT INTO dept VALUES (1, 'eng'), (2, 'ops'), (3, 'empty');
         INSERT INTO emp (id, name, dept, salary, hired, code, score) VALUES
           (1, 'ann', 1, 100.50, '2020-01-15', 'a', 1.5),
           (2, 'bob', 1, 80, '2021-06-01', 'b', 2.25),
           (3, 'cid', 2, 120, '2019-03-31', 'c', NULL),
           (4, 'dee', NULL, NULL, NULL, NULL, NULL);",
    )
    .await
    .expect("setup");

    assert_eq!(
        rows(&c, "SELECT name FROM emp WHERE dept = 1 ORDER BY salary DESC").await,
        vec![vec![Some("ann".into())], vec![Some("bob".into())]]
    );
    assert_eq!(one(&c, "SELECT count(*) FROM emp WHERE salary BETWEEN 90 AND 130").await, "2");
    assert_eq!(
        one(&c, "SELECT string_agg(name, ',') FROM (SELECT name FROM emp ORDER BY id LIMIT 2 OFFSET 1) s").await,
        "bob,cid"
    );
    assert_eq!(
        rows(&c, "SELECT d.name, count(e.id), sum(e.salary), avg(e.salary), min(e.hired), max(e.name) FROM dept d LEFT JOIN emp e ON e.dept = d.id GROUP BY d.name HAVING count(e.id) >= 0 ORDER BY 1").await,
        vec![
            vec![Some("empty".into()), Some("0".into()), None, None, None, None],
            vec![Some("eng".into()), Some("2".into()), Some("180.50".into()), Some("90.2500000000000000".into()), Some("2020-01-15".into()), Some("bob".into())],
            vec![Some("ops".into()), Some("1".into()), Some("120.00".into()), Some("120.0000000000000000".into()), Some("2019-03-31".into()), Some("cid".into())],
        ]
    );
    assert_eq!(one(&c, "SELECT count(*) FROM emp e JOIN dept d ON d.id = e.dept").await, "3");
    assert_eq!(one(&c, "SELECT name FROM emp WHERE dept IN (SELECT id FROM dept WHERE name = 'ops')").await, "cid");
    assert_eq!(
        one(&c, "SELECT count(*) FROM dept d WHERE NOT EXISTS (SELECT 1 FROM emp e WHERE e.dept = d.id)").await,
        "1"
    );
    assert_eq!(one(&c, "SELECT (SELECT max(id) FROM emp) + 1").await, "5");
    assert_eq!(rows(&c, "SELECT DISTINCT dept FROM emp WHERE dept IS NOT NULL ORDER BY dept").await.len(), 2);
    assert_eq!(rows(&c, "SELECT id FROM dept UNION SELECT dept FROM emp WHERE dept IS NOT NULL").await.len(), 3);
    assert_eq!(rows(&c, "SELECT id FROM dept UNION ALL SELECT 1").await.len(), 4);
    assert_eq!(one(&c, "SELECT sum(x) FROM generate_series(1, 10) AS x").await, "55");
    assert_eq!(one(&c, "SELECT CASE WHEN salary > 100 THEN 'high' WHEN salary IS NULL THEN 'none' ELSE 'low' END FROM emp WHERE id = 2").await, "low");
    assert_eq!(one(&c, "SELECT count(*) FROM emp WHERE name LIKE '_n%' OR name ILIKE 'B%'").await, "2");
    assert_eq!(one(&c, "SELECT coalesce(salary, -1) FROM emp WHERE id = 4").await, "-1");
    assert_eq!(one(&c, "SELECT upper(name) || lower('X') || length(name) || substr('abcdef', 2, 3) || replace('aXa', 'X', '-') || trim('  t  ') FROM emp WHERE id = 1").await, "ANNx3bcda-at");
    assert_eq!(
        one(&c, "SELECT abs(-3) + round(2.567, 2) + ceil(1.2) + floor(1.8) + mod(7, 3) + power(2, 3)").await,
        "17.57"
    );
    assert_eq!(one(&c, "SELECT extract(year FROM hired) FROM emp WHERE id = 3").await, "2019");
    assert_eq!(one(&c, "SELECT hired + 1 FROM emp WHERE id = 3").await, "2019-04-01");
    assert_eq!(one(&c, "SELECT now() = CURRENT_TIMESTAMP").await, "t");
    assert_eq!(one(&c, "SELECT '42'::int + CAST('8' AS bigint)").await, "50");
    assert_eq!(one(&c, "SELECT code || '|' FROM emp WHERE id = 1").await, "a  |");
    assert_eq!(one(&c, "SELECT 'id' || id || '-' || id * 2 FROM emp WHERE id = 1").await, "id1-2");
    assert_eq!(one(&c, "SELECT active FROM emp WHERE id = 4").await, "t");
    assert_eq!(one(&c, "SELECT NULL IS NULL AND (NULL = 1) IS NULL").await, "t");
    assert_eq!(one(&c, "SELECT 7 / 2 + 7 % 2").await, "4");
    assert!(one(&c, "SELECT version()").await.starts_with("PostgreSQL 15"));
    assert_eq!(one(&c, "SELECT pg_is_in_recovery()").await, "f");
    assert!(one(&c, "SELECT pg_current_wal_lsn()").await.contains('/'));
    assert_eq!(one(&c, "SELECT pg_wal_lsn_diff(pg_current_wal_flush_lsn(), pg_current_wal_flush_lsn())").await, "0");
    assert!(one(&c, "SELECT pg_backend_pid()").await.parse::<i32>().is_ok());
    assert_eq!(one(&c, "SELECT current_setting('server_version_num')").await, "150000");

    // DML: RETURNING, ON CONFLICT, INSERT ... SELECT, DEFAULT.
    assert_eq!(one(&c, "INSERT INTO dept VALUES (4, 'qa') RETURNING id * 10").await, "40");
    assert_eq!(sqlstate(&c, "INSERT INTO dept VALUES (4, 'dup') ON CONFLICT DO NOTHING").await, "00000");
    assert_eq!(one(&c, "INSERT INTO dept VALUES (4, 'qa2') ON CONFLICT (id) DO UPDATE SET name = excluded.name || '!' RETURNING name").await, "qa2!");
    c.simple_query("INSERT INTO emp (id, name) SELECT id + 100, name FROM dept WHERE id > 2")
        .await
        .expect("insert select");
    assert_eq!(one(&c, "SELECT count(*) FROM emp WHERE id > 100 AND active").await, "2");
    assert_eq!(
        one(&c, "UPDATE emp SET salary = coalesce(salary, 0) + 1 WHERE id > 100 RETURNING salary").await,
        "1.00"
    );
    assert_eq!(one(&c, "DELETE FROM emp WHERE id > 100 RETURNING name").await, "empty");

    // EXPLAIN shows the access paths.
    let plan = rows(&c, "EXPLAIN SELECT * FROM emp WHERE id = 3").await;
    assert!(format!("{plan:?}").contains("Primary Key Lookup on emp"), "{plan:?}");
    let plan = rows(&c, "EXPLAIN SELECT * FROM emp WHERE id >= 2 AND id < 4").await;
    assert!(format!("{plan:?}").contains("Primary Key Range Scan on emp"), "{plan:?}");
    c.simple_query("CREATE INDEX emp_dept ON emp (dept)").await.expect("create index");
    let plan = rows(&c, "EXPLAIN SELECT name FROM emp WHERE dept = 1").await;
    assert!(format!("{plan:?}").contains("Index Scan using emp_dept on emp"), "{plan:?}");
    assert_eq!(one(&c, "SELECT count(*) FROM emp WHERE dept = 1").await, "2");
    let plan = rows(&c, "EXPLAIN SELECT name FROM emp WHERE salary > 1").await;
    assert!(format!("{plan:?}").contains("Seq Scan on emp"), "{plan:?}");

    // DDL.
    c.batch_execute(
        "CREATE TABLE IF NOT EXISTS dept (x int);
         ALTER TABLE emp ADD COLUMN bonus int DEFAULT 7;
         ALTER TABLE emp DROP COLUMN score;
         ALTER TABLE emp RENAME TO staff;
         CREATE UNIQUE INDEX staff_name ON staff (name);
         DROP INDEX staff_name;
         TRUNCATE dept;
         DROP TABLE IF EXISTS nothing_here, dept;
         VACUUM ANALYZE staff;
         CHECKPOINT;",
    )
    .await
    .expect("ddl");
    assert_eq!(one(&c, "SELECT sum(bonus) FROM staff").await, "28");
    assert_eq!(one(&c, "SELECT count(*) FROM information_schema.columns WHERE table_name = 'staff'").await, "10");
    assert_eq!(one(&c, "SELECT table_name FROM information_schema.tables").await, "staff");

    // Sequences: serial columns, CREATE SEQUENCE, nextval/currval/setval (not undone by ROLLBACK).
    c.batch_execute(
        "CREATE TABLE notes (id serial PRIMARY KEY, body text); CREATE SEQUENCE ticket START WITH 10 INCREMENT BY 5",
    )
    .await
    .expect("sequences");
    assert_eq!(one(&c, "INSERT INTO notes (body) VALUES ('a'), ('b') RETURNING id").await, "1");
    assert_eq!(one(&c, "SELECT currval('notes_id_seq')").await, "2");
    assert_eq!(one(&c, "SELECT nextval('ticket')").await, "10");
    c.batch_execute("BEGIN; SELECT nextval('ticket'); ROLLBACK").await.expect("rollback");
    assert_eq!(one(&c, "SELECT nextval('ticket')").await, "20");
    assert_eq!(one(&c, "SELECT setval('ticket', 100)").await, "100");
    assert_eq!(one(&c, "SELECT nextval('ticket')").await, "105");
    c.batch_execute("DROP TABLE notes; DROP SEQUENCE ticket").await.expect("drop");
    assert_eq!(sqlstate(&c, "SELECT nextval('notes_id_seq')").await, "42P01");

    // Settings.
    c.simple_query("SET application_name = 'tests'").await.expect("set");
    assert_eq!(one(&c, "SHOW application_name").await, "tests");
    c.simple_query("RESET ALL").await.expect("reset");
    assert_eq!(one(&c, "SHOW DateStyle").await, "ISO, MDY");
    assert!(rows(&c, "SHOW ALL").await.len() > 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extended_protocol_and_copy() {
    let server = TestServer::start();
    let c = connect(&server).await;
    c.batch_execute("CREATE TABLE kv (k int PRIMARY KEY, v text, n bigint, f double precision, b bool)")
        .await
        .expect("create");
    let insert = c.prepare("INSERT INTO kv VALUES ($1, $2, $3, $4, $5)").await.expect("prepare");
    assert_eq!(insert.params().len(), 5);
    for i in 0..10i32 {
        c.execute(&insert, &[&i, &format!("v{i}"), &(i as i64 * 1000), &(i as f64 / 2.0), &(i % 2 == 0)])
            .await
            .expect("insert");
    }
    let stmt = c.prepare("SELECT v, n, f, b FROM kv WHERE k = $1").await.expect("prepare select");
    let row = c.query_one(&stmt, &[&7i32]).await.expect("select");
    assert_eq!(row.get::<_, String>(0), "v7");
    assert_eq!(row.get::<_, i64>(1), 7000);
    assert_eq!(row.get::<_, f64>(2), 3.5);
    assert!(!row.get::<_, bool>(3));
    // Untyped parameters take their types from context.
    let rows = c.query("UPDATE kv SET n = n + $1 WHERE k >= $2 RETURNING k", &[&1i64, &8i32]).await.expect("update");
    assert_eq!(rows.len(), 2);
    let n: i64 = c.query_one("SELECT sum(n) FROM kv", &[]).await.expect("sum").get(0);
    assert_eq!(n, 45002);

    // COPY in and out.
    let sink = c.copy_in("COPY kv (k, v) FROM STDIN").await.expect("copy in");
    let mut sink = Box::pin(sink);
    sink.send(bytes::Bytes::from_static(b"100\thundred\n101\t\\N\n")).await.expect("copy data");
    let copied = sink.as_mut().finish().await.expect("copy finish");
    assert_eq!(copied, 2);
    let stream = c
        .copy_out("COPY (SELECT k, v AS value FROM kv WHERE k >= 100 ORDER BY k) TO STDOUT WITH (FORMAT csv, HEADER)")
        .await
        .expect("copy out");
    let chunks: Vec<_> = stream.collect().await;
    let data: Vec<u8> = chunks.into_iter().flat_map(|c| c.expect("chunk").to_vec()).collect();
    assert_eq!(String::from_utf8_lossy(&data), "k,value\n100,hundred\n101,\n");

    // Transactions and savepoints.
    c.batch_execute("BEGIN; INSERT INTO kv (k) VALUES (200); SAVEPOINT s; INSERT INTO kv (k) VALUES (201); ROLLBACK TO SAVEPOINT s; COMMIT").await.expect("txn");
    assert_eq!(c.query("SELECT k FROM kv WHERE k >= 200", &[]).await.expect("q").len(), 1);
    c.batch_execute("START TRANSACTION ISOLATION LEVEL REPEATABLE READ; DELETE FROM kv WHERE k = 200; ROLLBACK")
        .await
        .expect("rollback");
    assert_eq!(c.query("SELECT k FROM kv WHERE k >= 200", &[]).await.expect("q").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlstates() {
    let server = TestServer::start();
    let c = connect(&server).await;
    c.batch_execute("CREATE TABLE t (id int PRIMARY KEY, name text NOT NULL)").await.expect("create");
    c.batch_execute("INSERT INTO t VALUES (1, 'a')").await.expect("insert");
    assert_eq!(sqlstate(&c, "SELEC 1").await, "42601");
    assert_eq!(sqlstate(&c, "SELECT * FROM missing").await, "42P01");
    assert_eq!(sqlstate(&c, "SELECT nope FROM t").await, "42703");
    assert_eq!(sqlstate(&c, "INSERT INTO t VALUES (1, 'dup')").await, "23505");
    assert_eq!(sqlstate(&c, "INSERT INTO t VALUES (2, NULL)").await, "23502");
    assert_eq!(sqlstate(&c, "SELECT 1 / 0").await, "22012");
    assert_eq!(sqlstate(&c, "SELECT convert_from('\\xff'::bytea, 'UTF8')").await, "22021");
    // An error in a block aborts it until ROLLBACK.
    c.batch_execute("BEGIN").await.expect("begin");
    assert_eq!(sqlstate(&c, "SELECT 1 / 0").await, "22012");
    assert_eq!(sqlstate(&c, "SELECT 1").await, "25P02");
    c.batch_execute("ROLLBACK").await.expect("rollback");
    assert_eq!(sqlstate(&c, "SELECT 1").await, "00000");
    // A multi-statement query is one implicit transaction: an error undoes the statements before it.
    assert_eq!(sqlstate(&c, "INSERT INTO t VALUES (5, 'x'); INSERT INTO t VALUES (6, NULL)").await, "23502");
    assert_eq!(one(&c, "SELECT count(*) FROM t WHERE id = 5").await, "0");
    c.batch_execute("INSERT INTO t VALUES (5, 'x'); INSERT INTO t VALUES (6, 'y')").await.expect("batch");
    c.batch_execute(
        "INSERT INTO t VALUES (7, 'z'); BEGIN; INSERT INTO t VALUES (8, 'w'); COMMIT; INSERT INTO t VALUES (9, 'v')",
    )
    .await
    .expect("batch with a block");
    assert_eq!(one(&c, "SELECT count(*) FROM t WHERE id >= 5").await, "5");
    c.batch_execute("DELETE FROM t WHERE id >= 5").await.expect("cleanup");
    // The session stays usable after every error.
    assert_eq!(one(&c, "SELECT count(*) FROM t").await, "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runaway_statements_fail_and_the_session_goes_on() {
    let server = TestServer::start();
    let c = connect(&server).await;
    // A join that considers 10^12 pairs passes the work limit (54000) instead of running for hours.
    let pairs = "SELECT count(*) FROM generate_series(1, 1000000) a JOIN generate_series(1, 1000000) b ON a + b < 0";
    assert_eq!(sqlstate(&c, pairs).await, "54000");
    assert_eq!(sqlstate(&c, "SELECT count(*) FROM generate_series(1, 10000000000)").await, "54000");
    assert_eq!(one(&c, "SELECT count(*) FROM generate_series(5, 5, -1)").await, "1");
    // A text over PostgreSQL's 1 GB field limit is refused before it is built.
    assert_eq!(sqlstate(&c, "SELECT length(repeat(repeat('x', 1000000), 2000))").await, "54000");
    assert_eq!(sqlstate(&c, "SELECT lpad('x', 2000000000, 'ab')").await, "54000");
    assert_eq!(sqlstate(&c, "SELECT replace(repeat('x', 100000), 'x', repeat('y', 20000))").await, "54000");
    // Below it, the whole text, as PostgreSQL gives it.
    assert_eq!(one(&c, "SELECT length(repeat('ab', 2000000))").await, "4000000");
    assert_eq!(one(&c, "SELECT length(rpad('', 3000000, 'xy'))").await, "3000000");
    // LIKE takes time linear in the pattern's `%`s, not exponential.
    let like = format!("SELECT repeat('a', 5000) LIKE '{}b'", "%a".repeat(60));
    assert_eq!(one(&c, &like).await, "f");
    assert_eq!(one(&c, "SELECT 1").await, "1");
}

/// Statements nested as deeply as tandem allows run (on the session's stack, with room to spare); deeper
/// ones get 54001, as PostgreSQL's `max_stack_depth` gives it, and the server and the session go on. Before
/// the check, a chain of 1,200 additions overflowed a session thread's stack and aborted the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_statements_fail_cleanly() {
    let server = TestServer::start();
    let c = connect(&server).await;
    c.batch_execute("CREATE TABLE t (a int PRIMARY KEY, b int); INSERT INTO t VALUES (1, 1);").await.expect("setup");
    let chain = |n: usize, op: &str| vec!["1"; n].join(op);
    // At the limit (10,000 counted tokens: SELECT and 9,999 additions).
    assert_eq!(one(&c, &format!("SELECT {}", chain(9_999, "+"))).await, "9999");
    let ors = (0..4_990).map(|i| format!("a = {i}")).collect::<Vec<_>>().join(" OR ");
    assert_eq!(one(&c, &format!("SELECT count(*) FROM t WHERE {ors}")).await, "1");
    let update = format!("UPDATE t SET b = {} WHERE a = 1", vec!["b"; 9_990].join(" + "));
    c.batch_execute(&update).await.expect("deep update");
    assert_eq!(one(&c, "SELECT b FROM t").await, "9990");
    let subqueries = format!("SELECT {}1{}", "(SELECT ".repeat(60), ")".repeat(60));
    assert_eq!(one(&c, &subqueries).await, "1");
    // Over it: refused before the tree is built, by the simple and the extended protocol alike.
    let deep = format!("SELECT {}", chain(200_000, "+"));
    assert_eq!(sqlstate(&c, &deep).await, "54001");
    let err = c.prepare(&deep).await.expect_err("prepare too deep");
    assert_eq!(err.code().map(|s| s.code()), Some("54001"));
    assert_eq!(sqlstate(&c, &format!("SELECT {}1{}", "(".repeat(400), ")".repeat(400))).await, "54001");
    // Long lists are not deep.
    let list = (0..100_000).map(|i| i.to_string()).collect::<Vec<_>>().join(",");
    assert_eq!(one(&c, &format!("SELECT 99999 IN ({list})")).await, "t");
    assert_eq!(one(&c, "SELECT 1").await, "1");
    assert_eq!(one(&connect(&server).await, "SELECT b FROM t").await, "9990");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_a_lock_wait() {
    let server = TestServer::start();
    let a = connect(&server).await;
    let b = connect(&server).await;
    a.batch_execute("CREATE TABLE r (id int PRIMARY KEY, v int); INSERT INTO r VALUES (1, 0)").await.expect("setup");
    a.batch_execute("BEGIN; UPDATE r SET v = 1 WHERE id = 1").await.expect("lock the row");
    let token = b.cancel_token();
    let waiter = tokio::spawn(async move { b.simple_query("UPDATE r SET v = 2 WHERE id = 1").await.map(|_| ()) });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    token.cancel_query(NoTls).await.expect("send cancel");
    let result = waiter.await.expect("join");
    let code = result.err().and_then(|e| e.as_db_error().map(|d| d.code().code().to_string()));
    assert_eq!(code.as_deref(), Some("57014"));
    a.batch_execute("COMMIT").await.expect("commit");
    assert_eq!(one(&a, "SELECT v FROM r").await, "1");
}

/// `ALTER TABLE ... ADD PRIMARY KEY` re-keys a table loaded without one (pgbench's last loading step): rows in
/// any order come back in key order; a duplicate or a NULL refuses the key and leaves the table as it was; rows
/// loaded by COPY and updated in the same transaction (no row lock for a fresh row id) keep their changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_primary_key_re_keys_a_table() {
    let server = TestServer::start();
    let c = connect(&server).await;
    c.batch_execute(
        "CREATE TABLE acc (aid int, v text); INSERT INTO acc VALUES (3, 'c'), (1, 'a'), (2, 'b'), (1, 'dup')",
    )
    .await
    .expect("setup");
    assert_eq!(sqlstate(&c, "ALTER TABLE acc ADD PRIMARY KEY (aid)").await, "23505");
    assert_eq!(one(&c, "SELECT count(*) FROM acc").await, "4");
    c.batch_execute("DELETE FROM acc WHERE v = 'dup'; INSERT INTO acc VALUES (NULL, 'n')").await.expect("fix");
    assert_eq!(sqlstate(&c, "ALTER TABLE acc ADD PRIMARY KEY (aid)").await, "23502");
    c.batch_execute("DELETE FROM acc WHERE aid IS NULL; ALTER TABLE acc ADD PRIMARY KEY (aid)").await.expect("pk");
    let all: Vec<String> = rows(&c, "SELECT aid, v FROM acc").await.into_iter().map(|r| format!("{r:?}")).collect();
    assert_eq!(
        all,
        [r#"[Some("1"), Some("a")]"#, r#"[Some("2"), Some("b")]"#, r#"[Some("3"), Some("c")]"#],
        "rows in key order"
    );
    assert_eq!(one(&c, "SELECT v FROM acc WHERE aid = 2").await, "b");
    assert_eq!(sqlstate(&c, "INSERT INTO acc VALUES (2, 'again')").await, "23505");

    // A bulk load into a keyless table, changed in its own transaction before the key is added.
    c.batch_execute("CREATE TABLE big (aid int, bal int); BEGIN").await.expect("begin");
    let data: String = (1..=20_000).rev().map(|i| format!("{i}\t0\n")).collect();
    let sink = c.copy_in("COPY big FROM STDIN").await.expect("copy");
    futures_util::pin_mut!(sink);
    sink.send(bytes::Bytes::from(data)).await.expect("send");
    sink.finish().await.expect("finish");
    c.batch_execute("UPDATE big SET bal = aid WHERE aid % 1000 = 0; COMMIT; ALTER TABLE big ADD PRIMARY KEY (aid)")
        .await
        .expect("update and key");
    assert_eq!(one(&c, "SELECT sum(bal) FROM big").await, (1..=20).map(|i| i * 1000).sum::<i64>().to_string());
    assert_eq!(one(&c, "SELECT min(aid) || ',' || max(aid) || ',' || count(*) FROM big").await, "1,20000,20000");
    assert_eq!(one(&c, "SELECT bal FROM big WHERE aid = 7000").await, "7000");
}

/// A prepared statement keeps its plan between executions, and plans again once the catalog changed: a
/// table dropped and created with another layout, a column renamed (then the rename rolled back), an index
/// created under a query.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_plans_follow_the_catalog() {
    let server = TestServer::start();
    let c = connect(&server).await;
    c.batch_execute("CREATE TABLE t (id int PRIMARY KEY, v int); INSERT INTO t VALUES (1, 10), (2, 20);")
        .await
        .expect("setup");
    let get = c.prepare("SELECT v FROM t WHERE id = $1").await.expect("prepare select");
    let add = c.prepare("UPDATE t SET v = v + $1 WHERE id = $2").await.expect("prepare update");
    let put = c.prepare("INSERT INTO t (id, v) VALUES ($1, $2)").await.expect("prepare insert");
    let by_v = c.prepare("SELECT id FROM t WHERE v = $1").await.expect("prepare by value");
    let v = |id: i32| {
        let (c, get) = (&c, &get);
        async move { c.query_one(get, &[&id]).await.expect("select").get::<_, i32>(0) }
    };
    for _ in 0..3 {
        c.execute(&add, &[&1i32, &1i32]).await.expect("update");
    }
    assert_eq!(v(1).await, 13);

    // Same names, another layout: v is now the third column, and the rows are new.
    c.batch_execute(
        "DROP TABLE t; CREATE TABLE t (id int PRIMARY KEY, pad text, v int); INSERT INTO t VALUES (1, 'x', 100);",
    )
    .await
    .expect("recreate");
    assert_eq!(v(1).await, 100);
    c.execute(&add, &[&5i32, &1i32]).await.expect("update after recreate");
    c.execute(&put, &[&2i32, &200i32]).await.expect("insert after recreate");
    assert_eq!(v(1).await, 105);
    assert_eq!(one(&c, "SELECT pad || ':' || v FROM t WHERE id = 1").await, "x:105");
    assert_eq!(one(&c, "SELECT coalesce(pad, 'null') || ':' || v FROM t WHERE id = 2").await, "null:200");

    // A rename inside a transaction is seen by that transaction's plans, and forgotten with it.
    c.batch_execute("BEGIN; ALTER TABLE t RENAME COLUMN v TO w;").await.expect("rename");
    let err = c.query_one(&get, &[&1i32]).await.expect_err("v is gone inside the transaction");
    assert_eq!(err.as_db_error().map(|d| d.code().code()), Some("42703"), "{err:?}");
    c.batch_execute("ROLLBACK").await.expect("rollback");
    assert_eq!(v(1).await, 105);

    // An index created between two executions: the same answer either way.
    let ids = |want: i32| {
        let (c, by_v) = (&c, &by_v);
        async move {
            let rows = c.query(by_v, &[&want]).await.expect("by value");
            rows.iter().map(|r| r.get::<_, i32>(0)).collect::<Vec<_>>()
        }
    };
    assert_eq!(ids(200).await, vec![2]);
    c.batch_execute("CREATE INDEX t_v ON t (v)").await.expect("index");
    assert_eq!(ids(200).await, vec![2]);
    assert_eq!(ids(105).await, vec![1]);
}

/// The same text parsed again (each `query` with a string prepares it anew, as drivers' one-shot queries
/// and `pgbench -M extended` do) is described and planned against the catalog of its own moment: after
/// DDL, inside a transaction that changed the table, and after that transaction rolled back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reparsed_statements_follow_the_catalog() {
    let server = TestServer::start();
    let c = connect(&server).await;
    c.batch_execute("CREATE TABLE r (id int PRIMARY KEY, v int); INSERT INTO r VALUES (1, 10);").await.expect("setup");
    let q = "SELECT * FROM r WHERE id = $1";
    async fn shape(c: &Client, q: &str) -> (Vec<String>, usize) {
        let stmt = c.prepare(q).await.expect("prepare");
        let row = c.query_one(&stmt, &[&1i32]).await.expect("query");
        (stmt.columns().iter().map(|col| col.name().to_string()).collect(), row.len())
    }
    let width = |c| shape(c, q);
    for _ in 0..3 {
        assert_eq!(width(&c).await, (vec!["id".to_string(), "v".to_string()], 2));
    }
    c.batch_execute("ALTER TABLE r ADD COLUMN w text DEFAULT 'x'").await.expect("add column");
    assert_eq!(width(&c).await, (vec!["id".to_string(), "v".to_string(), "w".to_string()], 3));
    c.batch_execute("BEGIN; ALTER TABLE r DROP COLUMN v;").await.expect("drop column in a transaction");
    assert_eq!(width(&c).await, (vec!["id".to_string(), "w".to_string()], 2));
    c.batch_execute("ROLLBACK").await.expect("rollback");
    assert_eq!(width(&c).await, (vec!["id".to_string(), "v".to_string(), "w".to_string()], 3));
    c.batch_execute("DROP TABLE r").await.expect("drop");
    let err = c.prepare(q).await.expect_err("the table is gone");
    assert_eq!(err.as_db_error().map(|d| d.code().code()), Some("42P01"), "{err:?}");
    // Another parameter type declared for the same text is its own entry.
    c.batch_execute("CREATE TABLE r (id bigint PRIMARY KEY); INSERT INTO r VALUES (7);").await.expect("recreate");
    let typed = c.prepare_typed("SELECT id FROM r WHERE id = $1", &[tokio_postgres::types::Type::INT8]).await;
    let row = c.query_one(&typed.expect("prepare typed"), &[&7i64]).await.expect("typed query");
    assert_eq!(row.get::<_, i64>(0), 7);
}

/// Statements of one shape sent with other literals on the simple protocol each get their own answer,
/// whether the shape's plan serves them (literals that are only values) or they are planned one by one
/// (literals that decide the plan: ORDER BY and GROUP BY positions, typed strings, regclass names).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_of_one_shape_with_other_literals() {
    let server = TestServer::start();
    let c = connect(&server).await;
    c.batch_execute(
        "CREATE TABLE s (id int PRIMARY KEY, n bigint, d date, t text);
         CREATE TABLE s2 (x int);
         INSERT INTO s VALUES (1, 10, '2020-01-01', 'a'), (2, -20, '2021-06-30', 'b'), (3, 30, '2022-12-31', 'c');",
    )
    .await
    .expect("setup");
    let mut expect = [10i64, -20, 30];
    // Values: point reads and increments, positive and negative, several rounds of one shape each.
    for round in 0..3i64 {
        for id in 1..=3i64 {
            let delta = if (round + id) % 2 == 0 { 7 * id } else { -11 * id };
            c.simple_query(&format!("UPDATE s SET n = n + {delta} WHERE id = {id}")).await.expect("update");
            expect[id as usize - 1] += delta;
        }
        for id in 1..=3i64 {
            assert_eq!(one(&c, &format!("SELECT n FROM s WHERE id = {id}")).await, expect[id as usize - 1].to_string());
        }
    }
    // Numbers past int4 and decimals change the literal's type, strings compare with dates.
    assert_eq!(one(&c, "SELECT n + 1 FROM s WHERE id = 1").await, (expect[0] + 1).to_string());
    assert_eq!(one(&c, "SELECT n + 3000000000 FROM s WHERE id = 1").await, (expect[0] + 3_000_000_000).to_string());
    assert_eq!(one(&c, "SELECT n + 1.5 FROM s WHERE id = 1").await, (expect[0] as f64 + 1.5).to_string());
    assert_eq!(one(&c, "SELECT count(*) FROM s WHERE d > '2021-01-01'").await, "2");
    assert_eq!(one(&c, "SELECT count(*) FROM s WHERE d > '2019-01-01'").await, "3");
    assert_eq!(one(&c, "SELECT 'x' || t FROM s WHERE id = 2").await, "xb");
    assert_eq!(one(&c, "SELECT 'it''s ' || t FROM s WHERE id = 3").await, "it's c");
    // Positions and limits decide the plan.
    let ids = |sql: &'static str| {
        let c = &c;
        async move { rows(c, sql).await.into_iter().map(|r| r[0].clone().unwrap_or_default()).collect::<Vec<_>>() }
    };
    assert_eq!(ids("SELECT id, t FROM s ORDER BY 1 DESC").await, ["3", "2", "1"]);
    assert_eq!(ids("SELECT t, id FROM s ORDER BY 2 DESC").await, ["c", "b", "a"]);
    assert_eq!(ids("SELECT t, id FROM s ORDER BY 1").await, ["a", "b", "c"]);
    assert_eq!(ids("SELECT id FROM s ORDER BY id LIMIT 1").await, ["1"]);
    assert_eq!(ids("SELECT id FROM s ORDER BY id LIMIT 2").await, ["1", "2"]);
    assert_eq!(ids("SELECT id FROM s ORDER BY id LIMIT 2 OFFSET 2").await, ["3"]);
    assert_eq!(ids("SELECT id % 2, count(*) FROM s GROUP BY 1 ORDER BY 1").await, ["0", "1"]);
    assert_eq!(ids("SELECT count(*), id % 2 FROM s GROUP BY 2 ORDER BY 2").await, ["1", "2"]);
    assert_eq!(one(&c, "SELECT d + 1 FROM s WHERE id = 1").await, "2020-01-02");
    assert_eq!(one(&c, "SELECT DATE '2020-01-01' < d FROM s WHERE id = 1").await, "f");
    assert_eq!(one(&c, "SELECT DATE '2019-01-01' < d FROM s WHERE id = 1").await, "t");
    let (s_oid, s2_oid) = (one(&c, "SELECT 's'::regclass::oid").await, one(&c, "SELECT 's2'::regclass::oid").await);
    assert_ne!(s_oid, s2_oid);
    // Writes of one shape.
    for id in 4..=6 {
        c.simple_query(&format!("INSERT INTO s VALUES ({id}, {}, '2023-01-0{id}', 'r{id}')", -id))
            .await
            .expect("insert");
    }
    assert_eq!(one(&c, "SELECT sum(n) FROM s WHERE id >= 4").await, "-15");
    assert_eq!(one(&c, "SELECT d FROM s WHERE id = 5").await, "2023-01-05");
    c.simple_query("DELETE FROM s WHERE id = 5").await.expect("delete");
    c.simple_query("DELETE FROM s WHERE id = 6").await.expect("delete");
    assert_eq!(ids("SELECT id FROM s WHERE id > 3").await, ["4"]);
}
