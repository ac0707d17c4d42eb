//! pg_stat_activity, pg_cancel_backend and pg_terminate_backend against a real server process, with psql
//! and tokio-postgres as the clients: a session holding a row lock shows `idle in transaction`, the one
//! waiting for it shows the Lock wait event with its statement; cancelling the waiter ends its statement,
//! terminating a session ends it with FATAL 57P01 (idle or in the middle of pg_sleep) and releases its
//! locks.

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

const ROW: &str = "select coalesce(wait_event_type, '-'), coalesce(wait_event, '-'), state, query, backend_type \
                   from pg_stat_activity where application_name = ";

#[test]
fn sessions_are_listed_cancelled_and_terminated() {
    let tmp = TempDir::new("activity");
    let node = Node::primary(tmp.path().join("primary"), &[]);
    node.sql("create table t (id int primary key, v int)");
    node.sql("insert into t values (1, 0)");

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let holder = rt.block_on(async {
        let (client, conn) = tokio_postgres::connect(
            &format!("host=127.0.0.1 port={} user=postgres dbname=postgres application_name=holder", node.port),
            tokio_postgres::NoTls,
        )
        .await
        .unwrap();
        tokio::spawn(conn);
        client.batch_execute("begin").await.unwrap();
        client.batch_execute("update t set v = 1 where id = 1").await.unwrap();
        client
    });

    // The holder is idle in its transaction, waiting for its client; the waiter waits for the row lock.
    let waiter = spawn_psql(&node, "waiter", "update t set v = 2 where id = 1");
    let want = "Lock|transactionid|active|update t set v = 2 where id = 1|client backend";
    assert_eq!(node.wait_for(&format!("{ROW}'waiter'"), want, 10), want);
    assert_eq!(
        node.sql(&format!("{ROW}'holder'")),
        "Client|ClientRead|idle in transaction|update t set v = 1 where id = 1|client backend"
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
