//! pg_stat_activity, pg_cancel_backend and pg_terminate_backend against a real server process, with psql
//! and tokio-postgres as the clients: a session holding a row lock shows `idle in transaction`, the one
//! waiting for it shows the Lock wait event with its statement; cancelling the waiter ends its statement,
//! terminating a session ends it with FATAL 57P01 (idle or in the middle of pg_sleep) and releases its
//! locks. statement_timeout, lock_timeout and idle_in_transaction_session_timeout end what they should, with
//! PostgreSQL's errors.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Node, TempDir};

/// Runs one statement in its own psql process (it waits until the statement ends).
fn spawn_psql(node: &Node, app: &str, sql: &str) -> Child {
    Command::new("psql")
        .args(["-h", "127.0.0.1", "-p", &node.port.to_string(), "-U", "postgres", "-X", "-At", "-c", sql])
        .env("PGAPPNAME", app)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run psql")
}

/// Waits for a psql child to end (at most 10 s); returns its stderr.
fn finish(child: Child) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut child = child;
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "psql did not end");
        std::thread::sleep(Duration::from_millis(20));
    }
    String::from_utf8_lossy(&child.wait_with_output().unwrap().stderr).to_string()
}

/// A tokio-postgres session with an application_name (its connection runs on `rt`).
fn connect(rt: &tokio::runtime::Runtime, node: &Node, app: &str) -> tokio_postgres::Client {
    let conninfo = format!("host=127.0.0.1 port={} user=postgres dbname=postgres application_name={app}", node.port);
    rt.block_on(async move {
        let (client, conn) = tokio_postgres::connect(&conninfo, tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(conn);
        client
    })
}

const ROW: &str = "select coalesce(wait_event_type, '-'), coalesce(wait_event, '-'), state, query, backend_type \
                   from pg_stat_activity where application_name = ";

#[test]
fn sessions_are_listed_cancelled_and_terminated() {
    let tmp = TempDir::new("activity");
    let node = Node::primary(tmp.path().join("primary"), &[]);
    node.sql("create table t (id int primary key, v int)");
    node.sql("insert into t values (1, 0)");

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let holder = connect(&rt, &node, "holder");
    rt.block_on(holder.batch_execute("begin; update t set v = 1 where id = 1")).unwrap();

    // The holder is idle in its transaction, waiting for its client; the waiter waits for the row lock.
    let waiter = spawn_psql(&node, "waiter", "update t set v = 2 where id = 1");
    let want = "Lock|transactionid|active|update t set v = 2 where id = 1|client backend";
    assert_eq!(node.wait_for(&format!("{ROW}'waiter'"), want, 10), want);
    assert_eq!(
        node.sql(&format!("{ROW}'holder'")),
        "Client|ClientRead|idle in transaction|begin; update t set v = 1 where id = 1|client backend"
    );
    assert_eq!(
        node.sql(
            "select xact_start is not null, xact_start <= query_start, backend_start <= xact_start, \
             client_addr, client_port > 0, datname, usename from pg_stat_activity where application_name = 'holder'"
        ),
        "t|t|t|127.0.0.1|t|postgres|postgres"
    );
    // The session asking sees itself, active.
    assert_eq!(
        node.sql("select state, pid = pg_backend_pid() from pg_stat_activity where query like '%pg_backend_pid%'"),
        "active|t"
    );

    // Cancelling the waiter ends its statement, not the holder's transaction.
    let pid = node.sql("select pid from pg_stat_activity where application_name = 'waiter'");
    assert_eq!(node.sql(&format!("select pg_cancel_backend({pid})")), "t");
    let err = finish(waiter);
    assert!(err.contains("canceling statement due to user request"), "{err}");
    assert_eq!(node.sql("select count(*) from pg_stat_activity where application_name = 'waiter'"), "0");

    // Terminating a session in pg_sleep: FATAL 57P01 at once, not after the sleep.
    let sleeper = spawn_psql(&node, "sleeper", "select pg_sleep(60)");
    let want = "Timeout|PgSleep|active|select pg_sleep(60)|client backend";
    assert_eq!(node.wait_for(&format!("{ROW}'sleeper'"), want, 10), want);
    let pid = node.sql("select pid from pg_stat_activity where application_name = 'sleeper'");
    let started = Instant::now();
    assert_eq!(node.sql(&format!("select pg_terminate_backend({pid}, 5000)")), "t");
    let err = finish(sleeper);
    assert!(started.elapsed() < Duration::from_secs(5), "terminate took {:?}", started.elapsed());
    assert!(err.contains("FATAL:  terminating connection due to administrator command"), "{err}");
    assert!(!err.contains("ERROR"), "a terminated statement reports FATAL only: {err}");

    // Terminating the idle holder ends its session and rolls its transaction back, releasing the lock.
    let pid = node.sql("select pid from pg_stat_activity where application_name = 'holder'");
    assert_eq!(node.sql(&format!("select pg_terminate_backend({pid}, 5000)")), "t");
    // Its client learns it when it next speaks (tokio-postgres reads the FATAL, or finds the socket closed).
    assert!(rt.block_on(async { holder.batch_execute("commit").await }).is_err());
    assert_eq!(node.sql("select v from t"), "0");
    node.sql("update t set v = 3 where id = 1");
    assert_eq!(node.sql("select v from t"), "3");

    // Bad targets: not a backend (a WARNING and false), a negative timeout, cancelling oneself.
    let out = common::psql_output(node.port, &["-At", "-c", "select pg_cancel_backend(1)"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "f");
    assert!(String::from_utf8_lossy(&out.stderr).contains("WARNING:  PID 1 is not a PostgreSQL backend process"));
    let err = node.try_sql(&format!("select pg_terminate_backend({pid}, -1)")).unwrap_err();
    assert!(err.contains("\"timeout\" must not be negative"), "{err}");
    let err = node.try_sql("select pg_cancel_backend(pg_backend_pid())").unwrap_err();
    assert!(err.contains("canceling statement due to user request"), "{err}");
    assert_eq!(node.sql("select pg_cancel_backend(null) is null"), "t");
}

/// Runs SQL with psql (one `-c` per statement); returns (elapsed, stdout, stderr).
fn timed_psql(node: &Node, statements: &[&str]) -> (Duration, String, String) {
    let mut args = vec!["-At".to_string()];
    for s in statements {
        args.extend(["-c".to_string(), s.to_string()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let started = Instant::now();
    let out = common::psql_output(node.port, &args);
    let text = |b: &[u8]| String::from_utf8_lossy(b).to_string();
    (started.elapsed(), text(&out.stdout), text(&out.stderr))
}

#[test]
fn timeouts_end_statements_lock_waits_and_idle_transactions() {
    let tmp = TempDir::new("timeouts");
    let node = Node::primary(tmp.path().join("primary"), &[]);
    node.sql("create table t (id int primary key, v int)");
    node.sql("insert into t select g, 0 from generate_series(1, 4000) g");
    assert_eq!(node.sql("show lock_timeout"), "0");
    let (_, out, _) = timed_psql(
        &node,
        &["set statement_timeout = '5s'", "show statement_timeout", "set app.tag = 'a b'", "show app.tag"],
    );
    assert_eq!(out, "SET\n5s\nSET\na b\n");
    let (_, out, _) = timed_psql(&node, &["show transaction isolation level", "show time zone"]);
    assert_eq!(out, "read committed\nEtc/UTC\n");

    // statement_timeout ends a sleep and a long join, each well before it would have finished.
    let (took, _, err) = timed_psql(&node, &["set statement_timeout = '300ms'", "select pg_sleep(10)"]);
    assert!(err.contains("ERROR:  canceling statement due to statement timeout"), "{err}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    let join = "select count(*) from t a, t b where a.v + b.v + a.id * b.id = 0";
    let (took, _, err) = timed_psql(&node, &["set statement_timeout = 200", join]);
    assert!(err.contains("canceling statement due to statement timeout"), "{err}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    // Each statement has its own: a fast one after a SET is not affected.
    // A CancelRequest (psql's Ctrl-C) stops the same join.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let client = connect(&rt, &node, "canceller");
    let started = Instant::now();
    let err = rt.block_on(async {
        let token = client.cancel_token();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let _ = token.cancel_query(tokio_postgres::NoTls).await;
        });
        client.simple_query(join).await.unwrap_err()
    });
    let db = err.as_db_error().map(|d| (d.code().code().to_string(), d.message().to_string()));
    assert_eq!(db, Some(("57014".into(), "canceling statement due to user request".into())));
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    let (_, out, err) = timed_psql(&node, &["set statement_timeout = '1s'", "select pg_sleep(0.2)", "select 7"]);
    assert!(out.trim().ends_with("\n7") && err.is_empty(), "{out}{err}");
    let (_, _, err) = timed_psql(&node, &["set statement_timeout = 'soon'"]);
    assert!(err.contains("invalid value for parameter \"statement_timeout\": \"soon\""), "{err}");

    // lock_timeout and statement_timeout end a row-lock wait; the holder keeps its lock.
    let holder = connect(&rt, &node, "holder");
    rt.block_on(holder.batch_execute("begin; update t set v = 1 where id = 1")).unwrap();
    let (took, _, err) = timed_psql(&node, &["set lock_timeout = '200ms'", "update t set v = 2 where id = 1"]);
    assert!(err.contains("ERROR:  canceling statement due to lock timeout"), "{err}");
    assert!(took >= Duration::from_millis(200) && took < Duration::from_secs(5), "{took:?}");
    let (_, _, err) = timed_psql(&node, &["set statement_timeout = '200ms'", "update t set v = 2 where id = 1"]);
    assert!(err.contains("canceling statement due to statement timeout"), "{err}");
    rt.block_on(holder.batch_execute("commit")).unwrap();
    assert_eq!(node.sql("select v from t where id = 1"), "1");

    // idle_in_transaction_session_timeout ends a session left idle in its transaction, rolling it back.
    let idle = connect(&rt, &node, "idle");
    rt.block_on(
        idle.batch_execute("set idle_in_transaction_session_timeout = '300ms'; begin; update t set v = 3 where id = 1"),
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(800));
    assert!(rt.block_on(idle.batch_execute("commit")).is_err(), "the idle session outlived its timeout");
    assert_eq!(node.sql("select v from t where id = 1"), "1");
    let (took, _, err) = timed_psql(&node, &["set lock_timeout = '2s'", "update t set v = 4 where id = 1"]);
    assert!(err.is_empty() && took < Duration::from_secs(2), "the lock was not released: {err}");
    // psql sees the FATAL with PostgreSQL's code and message.
    let (_, _, err) =
        timed_psql(&node, &["set idle_in_transaction_session_timeout = 200", "begin", "\\! sleep 0.5", "select 1"]);
    assert!(err.contains("FATAL:  terminating connection due to idle-in-transaction timeout"), "{err}");
    // Outside a transaction an idle session is left alone.
    let (_, out, err) =
        timed_psql(&node, &["set idle_in_transaction_session_timeout = 200", "\\! sleep 0.5", "select 8"]);
    assert!(out.trim().ends_with("\n8") && err.is_empty(), "{out}{err}");
}
