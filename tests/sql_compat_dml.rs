//! PostgreSQL-compatible answers for INSERT column counts, FETCH FIRST, and aggregate modifiers (FILTER,
//! and the ones not implemented refused rather than ignored), through tokio-postgres against a real server.

mod common;

use common::sql::{connect, error, one, rows};
use common::TestServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insert_column_counts() {
    let server = TestServer::start();
    let c = connect(&server).await;
    c.batch_execute("CREATE TABLE t (a int, b int, c int)").await.expect("setup");
    let more_targets = ("42601".to_string(), "INSERT has more target columns than expressions".to_string());
    let more_exprs = ("42601".to_string(), "INSERT has more expressions than target columns".to_string());
    assert_eq!(error(&c, "INSERT INTO t (a, b) VALUES (5)").await, more_targets);
    assert_eq!(error(&c, "INSERT INTO t (a) VALUES (1, 2)").await, more_exprs);
    assert_eq!(error(&c, "INSERT INTO t (a, b) SELECT 1").await, more_targets);
    assert_eq!(error(&c, "INSERT INTO t (a) SELECT 1, 2").await, more_exprs);
    assert_eq!(error(&c, "INSERT INTO t VALUES (1, 2, 3, 4)").await, more_exprs);
    assert_eq!(rows(&c, "SELECT count(*) FROM t").await, vec!["0"]);
    // Without a column list, trailing columns take their defaults.
    c.batch_execute("INSERT INTO t VALUES (1); INSERT INTO t SELECT 2, 3").await.expect("short rows");
    assert_eq!(rows(&c, "SELECT a, b, c FROM t ORDER BY a").await, vec!["1||", "2|3|"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_first_limits() {
    let server = TestServer::start();
    let c = connect(&server).await;
    let q = "SELECT x FROM generate_series(1, 5) AS x ORDER BY x";
    assert_eq!(rows(&c, &format!("{q} FETCH FIRST 2 ROWS ONLY")).await, vec!["1", "2"]);
    assert_eq!(rows(&c, &format!("{q} FETCH NEXT 1 ROW ONLY")).await, vec!["1"]);
    assert_eq!(rows(&c, &format!("{q} FETCH FIRST ROW ONLY")).await, vec!["1"]);
    assert_eq!(rows(&c, &format!("{q} OFFSET 3 ROWS FETCH FIRST 5 ROWS ONLY")).await, vec!["4", "5"]);
    assert_eq!(rows(&c, &format!("{q} OFFSET 1 ROWS FETCH FIRST 2 ROWS ONLY")).await, vec!["2", "3"]);
    assert!(rows(&c, &format!("{q} FETCH FIRST 0 ROWS ONLY")).await.is_empty());
    assert_eq!(error(&c, &format!("{q} FETCH FIRST 2 ROWS WITH TIES")).await.0, "0A000");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregate_filter_and_modifiers() {
    let server = TestServer::start();
    let c = connect(&server).await;
    let v = "FROM (VALUES (1, 'a'), (2, 'b'), (3, 'c'), (3, 'd')) v(x, s)";
    assert_eq!(rows(&c, &format!("SELECT count(*) FILTER (WHERE x > 1) {v}")).await, vec!["3"]);
    assert_eq!(
        rows(
            &c,
            &format!(
                "SELECT count(x) FILTER (WHERE x > 1), sum(x) FILTER (WHERE x < 3), avg(x) FILTER (WHERE x = 3),
                        min(x) FILTER (WHERE x > 1), max(x) FILTER (WHERE x < 3),
                        string_agg(s, ',') FILTER (WHERE x <> 2), count(DISTINCT x) FILTER (WHERE x > 1),
                        sum(x) FILTER (WHERE false), count(*) {v}"
            )
        )
        .await,
        vec!["3|3|3.0000000000000000|2|2|a,c,d|2||4"]
    );
    assert_eq!(
        rows(&c, &format!("SELECT x, count(*) FILTER (WHERE s > 'c') {v} GROUP BY x ORDER BY x")).await,
        vec!["1|0", "2|0", "3|1"]
    );
    assert_eq!(error(&c, &format!("SELECT string_agg(s, ',' ORDER BY s DESC) {v}")).await.0, "0A000");
    // The same aggregate as a window function (tests/sql_compat.rs::window_functions has the rest).
    assert_eq!(rows(&c, &format!("SELECT x, count(*) OVER () {v} ORDER BY s")).await, vec!["1|4", "2|4", "3|4", "3|4"]);
    assert_eq!(error(&c, &format!("SELECT sum(DISTINCT x) {v}")).await, ("00000".into(), String::new()));
    assert_eq!(rows(&c, &format!("SELECT sum(DISTINCT x), count(DISTINCT x) {v}")).await, vec!["6|3"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_conflict_needs_a_unique_target() {
    let server = TestServer::start();
    let c = connect(&server).await;
    c.batch_execute("CREATE TABLE oc (id int PRIMARY KEY, tag text UNIQUE, n int); INSERT INTO oc VALUES (1, 'x', 0)")
        .await
        .expect("setup");
    assert_eq!(
        error(&c, "INSERT INTO oc VALUES (2, 'y', 0) ON CONFLICT (n) DO NOTHING").await,
        ("42P10".into(), "there is no unique or exclusion constraint matching the ON CONFLICT specification".into())
    );
    assert_eq!(error(&c, "INSERT INTO oc VALUES (2, 'y', 0) ON CONFLICT (id, n) DO NOTHING").await.0, "42P10");
    assert_eq!(rows(&c, "SELECT count(*) FROM oc").await, vec!["1"]);
    assert_eq!(
        rows(&c, "INSERT INTO oc VALUES (1, 'z', 0) ON CONFLICT (id) DO UPDATE SET n = oc.n + 1 RETURNING *").await,
        vec!["1|x|1"]
    );
}

#[tokio::test]
async fn update_from_and_delete_using() {
    let server = TestServer::start();
    let c = connect(&server).await;
    c.simple_query(
        "CREATE TABLE acct (id int PRIMARY KEY, bal int, owner text); CREATE TABLE pay (acct int, amount int); \
         INSERT INTO acct VALUES (1, 100, 'ann'), (2, 200, 'bob'), (3, 300, 'cy'); \
         INSERT INTO pay VALUES (1, 10), (2, 20), (2, 5), (9, 1)",
    )
    .await
    .unwrap();
    // Expected rows are PostgreSQL 15's. A target row joined to several rows is changed once.
    assert_eq!(
        rows(&c, "UPDATE acct a SET bal = a.bal + p.amount FROM pay p WHERE p.acct = a.id AND p.amount > 6 RETURNING a.id, a.bal, p.amount").await,
        vec!["1|110|10", "2|220|20"]
    );
    c.simple_query(
        "UPDATE acct SET owner = upper(owner) FROM (SELECT acct FROM pay GROUP BY acct HAVING count(*) > 1) s WHERE s.acct = acct.id",
    )
    .await
    .unwrap();
    assert_eq!(rows(&c, "SELECT * FROM acct ORDER BY id").await, vec!["1|110|ann", "2|220|BOB", "3|300|cy"]);
    assert_eq!(
        rows(&c, "DELETE FROM pay USING acct WHERE pay.acct = acct.id AND acct.owner = 'ann' RETURNING pay.*").await,
        vec!["1|10"]
    );
    let r = c
        .query(
            "UPDATE acct SET bal = x.v FROM (VALUES ($1::int, $2::int)) x(k, v) WHERE acct.id = x.k",
            &[&3i32, &33i32],
        )
        .await;
    assert!(r.is_ok(), "{r:?}");
    assert_eq!(one(&c, "SELECT bal FROM acct WHERE id = 3").await, "33");
    assert_eq!(rows(&c, "DELETE FROM acct a USING pay p WHERE a.id = p.acct RETURNING a.id").await, vec!["2"]);
    assert_eq!(rows(&c, "SELECT id FROM acct ORDER BY id").await, vec!["1", "3"]);
    assert_eq!(error(&c, "UPDATE acct SET bal = 0 FROM acct WHERE true").await.0, "42712");
}
