//! Deferred increments (`UPDATE t SET n = n + e WHERE pk = ...` under READ COMMITTED) through a real
//! server: incrementers of one row do not wait for each other, nothing is lost, and whatever a
//! transaction reads back is what it commits, as with PostgreSQL's row locks.

mod common;

use std::time::Duration;

use common::TestServer;
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

async fn connect(server: &TestServer) -> Client {
    let (client, conn) = tokio_postgres::connect(&server.conninfo(), NoTls).await.expect("connect");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

async fn one(c: &Client, sql: &str) -> String {
    let msgs = c.simple_query(sql).await.unwrap_or_else(|e| panic!("{sql}: {e:?}"));
    msgs.into_iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some(r.get(0).unwrap_or("NULL").to_string()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("{sql}: no row"))
}

fn code(e: &tokio_postgres::Error) -> String {
    e.as_db_error().map(|d| d.code().code().to_string()).unwrap_or_else(|| format!("{e:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incrementers_share_a_row_and_lose_nothing() {
    let server = TestServer::start();
    let a = connect(&server).await;
    let b = connect(&server).await;
    a.batch_execute(
        "CREATE TABLE c (id int PRIMARY KEY, n int NOT NULL, m numeric(10,2), note text);
         INSERT INTO c VALUES (1, 0, 0, 'x'), (2, 2147483600, 0, 'y')",
    )
    .await
    .unwrap();

    // A holds an increment of row 1; B's increment of the same row does not wait for it.
    a.batch_execute("BEGIN; UPDATE c SET n = n + 5, m = m - 1.25 WHERE id = 1").await.unwrap();
    let n = tokio::time::timeout(Duration::from_secs(5), b.execute("UPDATE c SET n = 7 + n WHERE id = $1", &[&1i32]))
        .await
        .expect("B waited for A's increment")
        .unwrap();
    assert_eq!(n, 1);
    assert_eq!(one(&b, "SELECT n FROM c WHERE id = 1").await, "7");
    // Reading the row back in A applies A's increment to the newest version (B's).
    assert_eq!(one(&a, "SELECT n || ' ' || m FROM c WHERE id = 1").await, "12 -1.25");
    a.batch_execute("COMMIT").await.unwrap();
    assert_eq!(one(&b, "SELECT n || ' ' || m FROM c WHERE id = 1").await, "12 -1.25");

    // An increment of a missing row counts nothing; RETURNING and other WHEREs take the locking path.
    assert_eq!(b.execute("UPDATE c SET n = n + 1 WHERE id = 99", &[]).await.unwrap(), 0);
    assert_eq!(one(&b, "UPDATE c SET n = n + 1 WHERE id = 1 RETURNING n").await, "13");

    // Overflow is the statement's error when the newest version already overflows...
    let e = b.batch_execute("UPDATE c SET n = n + 100 WHERE id = 2").await.unwrap_err();
    assert_eq!(code(&e), "22003");
    // ... and the commit's when another increment made it overflow meanwhile; nothing is lost.
    a.batch_execute("BEGIN; UPDATE c SET n = n + 40 WHERE id = 2").await.unwrap();
    b.batch_execute("UPDATE c SET n = n + 40 WHERE id = 2").await.unwrap();
    let e = a.batch_execute("COMMIT").await.unwrap_err();
    assert_eq!(code(&e), "22003");
    assert_eq!(one(&b, "SELECT n FROM c WHERE id = 2").await, "2147483640");

    // A rollback to a savepoint forgets the increment; the rest commits.
    a.batch_execute(
        "BEGIN; UPDATE c SET n = n + 1 WHERE id = 1; SAVEPOINT s; UPDATE c SET n = n + 100 WHERE id = 1;
         ROLLBACK TO s; UPDATE c SET n = n + 1 WHERE id = 1; COMMIT",
    )
    .await
    .unwrap();
    assert_eq!(one(&b, "SELECT n FROM c WHERE id = 1").await, "15");

    // A writer that needs the row waits for the incrementers, then sees their sum.
    a.batch_execute("BEGIN; UPDATE c SET n = n + 10 WHERE id = 1").await.unwrap();
    let writer = tokio::spawn(async move {
        b.batch_execute("UPDATE c SET note = 'w' || n WHERE id = 1").await.unwrap();
        b
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!writer.is_finished(), "the writer did not wait for the incrementer");
    a.batch_execute("COMMIT").await.unwrap();
    let b = writer.await.unwrap();
    assert_eq!(one(&b, "SELECT note FROM c WHERE id = 1").await, "w25");

    // A DELETE by an incrementer waits for the other incrementers, whose changes are then deleted too.
    a.batch_execute("BEGIN; UPDATE c SET n = n + 1 WHERE id = 1").await.unwrap();
    b.batch_execute("BEGIN; UPDATE c SET n = n + 1 WHERE id = 1").await.unwrap();
    let deleter = tokio::spawn(async move {
        let n = a.execute("DELETE FROM c WHERE id = 1 AND n = 27", &[]).await.unwrap();
        a.batch_execute("COMMIT").await.unwrap();
        n
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!deleter.is_finished(), "the delete did not wait for the other incrementer");
    b.batch_execute("COMMIT").await.unwrap();
    assert_eq!(deleter.await.unwrap(), 1);
    assert_eq!(one(&b, "SELECT count(*) FROM c WHERE id = 1").await, "0");

    // Under REPEATABLE READ an increment is an ordinary update: a concurrent one gives 40001.
    b.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT 1").await.unwrap();
    let c = connect(&server).await;
    c.batch_execute("UPDATE c SET n = n + 1 WHERE id = 2").await.unwrap();
    let e = b.batch_execute("UPDATE c SET n = n + 1 WHERE id = 2").await.unwrap_err();
    assert_eq!(code(&e), "40001");
    b.batch_execute("ROLLBACK").await.unwrap();
}

/// Many sessions take numbers from one counter (`n = n + 1`, then read n back) in transactions: each
/// number is handed out once, none is skipped, and nobody gets a deadlock, as with PostgreSQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_back_after_increment_hands_out_each_number_once() {
    let server = TestServer::start();
    let setup = connect(&server).await;
    setup
        .batch_execute("CREATE TABLE counter (id int PRIMARY KEY, n bigint); INSERT INTO counter VALUES (1, 0)")
        .await
        .unwrap();
    const SESSIONS: usize = 12;
    const EACH: usize = 40;
    let mut tasks = Vec::new();
    for s in 0..SESSIONS {
        let c = connect(&server).await;
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            for i in 0..EACH {
                c.batch_execute("BEGIN").await.unwrap();
                c.execute("UPDATE counter SET n = n + 1 WHERE id = 1", &[]).await.unwrap();
                // Some transactions add twice before reading, some read at once.
                if (s + i) % 3 == 0 {
                    c.execute("UPDATE counter SET n = n + 1 WHERE id = 1", &[]).await.unwrap();
                }
                let n: i64 = c.query_one("SELECT n FROM counter WHERE id = 1", &[]).await.unwrap().get(0);
                c.batch_execute("COMMIT").await.unwrap();
                got.push(n);
                if (s + i) % 3 == 0 {
                    got.push(n - 1);
                }
            }
            got
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort_unstable();
    let expected: Vec<i64> = (1..=all.len() as i64).collect();
    assert_eq!(all, expected, "numbers handed out twice or skipped");
    assert_eq!(one(&setup, "SELECT n FROM counter").await, all.len().to_string());
}

/// Increments that are never read back, from many sessions at once, commit without waiting for one
/// another; the sums agree and the log holds the full rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blind_increments_survive_a_crash() {
    let mut server = TestServer::start();
    let setup = connect(&server).await;
    setup
        .batch_execute(
            "CREATE TABLE branches (bid int PRIMARY KEY, bbalance int);
             CREATE TABLE history (bid int, delta int);
             INSERT INTO branches VALUES (1, 0), (2, 0)",
        )
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for s in 0..8i32 {
        let c = connect(&server).await;
        tasks.push(tokio::spawn(async move {
            for i in 0..50i32 {
                let (bid, delta) = (1 + (s + i) % 2, (s * 7 + i) % 11 - 5);
                c.batch_execute("BEGIN").await.unwrap();
                c.execute("UPDATE branches SET bbalance = bbalance + $1 WHERE bid = $2", &[&delta, &bid])
                    .await
                    .unwrap();
                c.execute("INSERT INTO history VALUES ($1, $2)", &[&bid, &delta]).await.unwrap();
                c.batch_execute("COMMIT").await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    drop(setup);
    server.kill();
    server.launch();
    let c = connect(&server).await;
    for bid in 1..=2 {
        let balance = one(&c, &format!("SELECT bbalance FROM branches WHERE bid = {bid}")).await;
        let sum = one(&c, &format!("SELECT coalesce(sum(delta), 0) FROM history WHERE bid = {bid}")).await;
        assert_eq!(balance, sum, "branch {bid}");
    }
    assert_eq!(one(&c, "SELECT count(*) FROM history").await, "400");
}
