//! PostgreSQL-compatible answers for INSERT ... ON CONFLICT: a UNIQUE column (or a constraint named by ON
//! CONSTRAINT) as the arbiter, conflicts with other constraints left as errors, and DO UPDATE refusing to
//! touch one row twice in a statement, through tokio-postgres against a real server.

mod common;

use common::sql::{connect, count, error, rows};
use common::TestServer;

async fn setup(c: &tokio_postgres::Client) {
    c.batch_execute("CREATE TABLE oc (id int PRIMARY KEY, tag text UNIQUE, n int); INSERT INTO oc VALUES (1, 'x', 0)")
        .await
        .expect("setup");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_conflict_on_a_unique_column() {
    let server = TestServer::start();
    let c = connect(&server).await;
    setup(&c).await;
    assert_eq!(
        rows(&c, "INSERT INTO oc VALUES (3, 'x', 0) ON CONFLICT (tag) DO UPDATE SET n = oc.n + 1 RETURNING *").await,
        vec!["1|x|1"]
    );
    assert_eq!(
        rows(&c, "INSERT INTO oc VALUES (3, 'x', 0) ON CONFLICT (tag) DO UPDATE SET n = excluded.id RETURNING *").await,
        vec!["1|x|3"]
    );
    assert_eq!(count(&c, "INSERT INTO oc VALUES (4, 'x', 0) ON CONFLICT (tag) DO NOTHING").await, 0);
    // No conflict: the row goes in.
    assert_eq!(
        rows(&c, "INSERT INTO oc VALUES (2, 'y', 0) ON CONFLICT (tag) DO UPDATE SET n = oc.n + 1 RETURNING *").await,
        vec!["2|y|0"]
    );
    // The WHERE of DO UPDATE can skip the row.
    assert_eq!(
        count(&c, "INSERT INTO oc VALUES (5, 'y', 0) ON CONFLICT (tag) DO UPDATE SET n = 9 WHERE oc.n > 0").await,
        0
    );
    assert_eq!(rows(&c, "SELECT * FROM oc ORDER BY id").await, vec!["1|x|3", "2|y|0"]);

    // Only the arbiter's conflicts are handled: a primary key taken while the target is (tag) is an
    // error, for DO UPDATE and DO NOTHING alike, and a tag taken while the target is (id) too.
    let taken_pk = ("23505".to_string(), "duplicate key value violates unique constraint \"oc_pkey\"".to_string());
    assert_eq!(error(&c, "INSERT INTO oc VALUES (1, 'z', 0) ON CONFLICT (tag) DO UPDATE SET n = 7").await, taken_pk);
    assert_eq!(error(&c, "INSERT INTO oc VALUES (1, 'z', 0) ON CONFLICT (tag) DO NOTHING").await, taken_pk);
    assert_eq!(
        error(&c, "INSERT INTO oc VALUES (9, 'x', 0) ON CONFLICT (id) DO NOTHING").await,
        ("23505".into(), "duplicate key value violates unique constraint \"oc_tag_key\"".into())
    );
    // Without a target DO NOTHING skips any conflict.
    assert_eq!(count(&c, "INSERT INTO oc VALUES (1, 'z', 0), (9, 'x', 0) ON CONFLICT DO NOTHING").await, 0);
    assert_eq!(rows(&c, "SELECT * FROM oc ORDER BY id").await, vec!["1|x|3", "2|y|0"]);

    // A row this transaction wrote is found through its own state.
    c.batch_execute("BEGIN; UPDATE oc SET tag = 'w' WHERE id = 2").await.expect("begin");
    assert_eq!(
        rows(&c, "INSERT INTO oc VALUES (6, 'w', 0) ON CONFLICT (tag) DO UPDATE SET n = 5 RETURNING *").await,
        vec!["2|w|5"]
    );
    assert_eq!(count(&c, "INSERT INTO oc VALUES (7, 'y', 0) ON CONFLICT (tag) DO NOTHING").await, 1);
    c.batch_execute("COMMIT").await.expect("commit");
    assert_eq!(rows(&c, "SELECT * FROM oc ORDER BY id").await, vec!["1|x|3", "2|w|5", "7|y|0"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_conflict_on_constraint() {
    let server = TestServer::start();
    let c = connect(&server).await;
    setup(&c).await;
    assert_eq!(
        rows(&c, "INSERT INTO oc VALUES (3, 'x', 0) ON CONFLICT ON CONSTRAINT oc_tag_key DO UPDATE SET n = oc.n + 1 RETURNING *")
            .await,
        vec!["1|x|1"]
    );
    assert_eq!(
        rows(&c, "INSERT INTO oc VALUES (1, 'q', 0) ON CONFLICT ON CONSTRAINT oc_pkey DO UPDATE SET n = oc.n + 1 RETURNING *")
            .await,
        vec!["1|x|2"]
    );
    assert_eq!(count(&c, "INSERT INTO oc VALUES (4, 'x', 0) ON CONFLICT ON CONSTRAINT oc_tag_key DO NOTHING").await, 0);
    assert_eq!(
        error(&c, "INSERT INTO oc VALUES (4, 'x', 0) ON CONFLICT ON CONSTRAINT oc_nope DO NOTHING").await,
        ("42704".into(), "constraint \"oc_nope\" for table \"oc\" does not exist".into())
    );
    // A unique index made by CREATE UNIQUE INDEX is inferred from columns, but is not a constraint.
    c.batch_execute("CREATE TABLE ui (a int, b int); CREATE UNIQUE INDEX ui_b ON ui (b); INSERT INTO ui VALUES (1, 1)")
        .await
        .expect("unique index");
    assert_eq!(
        rows(&c, "INSERT INTO ui VALUES (2, 1) ON CONFLICT (b) DO UPDATE SET a = ui.a + 10 RETURNING *").await,
        vec!["11|1"]
    );
    assert_eq!(error(&c, "INSERT INTO ui VALUES (2, 1) ON CONFLICT ON CONSTRAINT ui_b DO NOTHING").await.0, "42704");
    assert_eq!(rows(&c, "SELECT * FROM oc ORDER BY id").await, vec!["1|x|2"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn do_update_cannot_affect_a_row_twice() {
    let server = TestServer::start();
    let c = connect(&server).await;
    setup(&c).await;
    let twice = |sql: &'static str| {
        let c = &c;
        async move {
            let e = c.simple_query(sql).await.expect_err(sql);
            let d = e.as_db_error().unwrap_or_else(|| panic!("{sql}: {e:?}"));
            (d.code().code().to_string(), d.message().to_string(), d.hint().map(str::to_string))
        }
    };
    let expected = (
        "21000".to_string(),
        "ON CONFLICT DO UPDATE command cannot affect row a second time".to_string(),
        Some(
            "Ensure that no rows proposed for insertion within the same command have duplicate constrained values."
                .to_string(),
        ),
    );
    assert_eq!(
        twice("INSERT INTO oc VALUES (5, 'a', 0), (5, 'b', 0) ON CONFLICT (id) DO UPDATE SET tag = excluded.tag").await,
        expected
    );
    assert_eq!(
        twice("INSERT INTO oc VALUES (5, 'a', 0), (6, 'a', 0) ON CONFLICT (tag) DO UPDATE SET n = oc.n + 1").await,
        expected
    );
    // An existing row proposed twice is updated once, then refused.
    assert_eq!(
        twice("INSERT INTO oc VALUES (7, 'x', 0), (8, 'x', 0) ON CONFLICT (tag) DO UPDATE SET n = oc.n + 1").await,
        expected
    );
    assert_eq!(rows(&c, "SELECT * FROM oc ORDER BY id").await, vec!["1|x|0"]);
    // DO NOTHING skips the second row instead.
    assert_eq!(count(&c, "INSERT INTO oc VALUES (5, 'a', 0), (5, 'b', 0) ON CONFLICT (id) DO NOTHING").await, 1);
    // Separate statements may update the same row.
    c.batch_execute(
        "BEGIN; INSERT INTO oc VALUES (6, 'c', 0) ON CONFLICT (id) DO UPDATE SET n = oc.n + 1; \
         INSERT INTO oc VALUES (6, 'c', 0) ON CONFLICT (id) DO UPDATE SET n = oc.n + 1; COMMIT",
    )
    .await
    .expect("two statements");
    assert_eq!(rows(&c, "SELECT * FROM oc ORDER BY id").await, vec!["1|x|0", "5|a|0", "6|c|1"]);
}
