//! Synchronous replication with real server processes: `synchronous_standby_names` in every form gives
//! PostgreSQL's sync_priority and sync_state (the cases of PostgreSQL's 007_sync_rep test); commits wait
//! for the standby at each `synchronous_commit` level and stay invisible while they wait; a cancelled wait
//! says where the transaction stands; `synchronous_standby_timeout` falls back to asynchronous with a
//! WARNING and a flag; a standby far behind in catch-up does not hold commits back until it is within one
//! WAL segment (Greenplum's rule).

mod common;

use std::time::{Duration, Instant};

use common::{Node, TempDir};

const STATES: &str = "select application_name, sync_priority, sync_state from pg_stat_replication order by 1";

fn set_names(primary: &Node, value: &str) {
    primary.sql(&format!("alter system set synchronous_standby_names = '{value}'"));
    assert_eq!(primary.sql("select pg_reload_conf()"), "t");
}

fn expect_states(primary: &Node, setting: Option<&str>, expected: &[&str]) {
    if let Some(v) = setting {
        set_names(primary, v);
    }
    let want = expected.join("\n");
    let got = primary.wait_for(STATES, &want, 15);
    assert_eq!(got, want, "sync states for {setting:?}");
    // Commits go through when enough candidates are connected (with fewer they wait, as in PostgreSQL).
    if !setting.is_some_and(|s| s.starts_with('6')) {
        primary.sql("insert into t select coalesce(max(id), 0) + 1 from t");
    }
}

#[test]
fn sync_state_for_every_form_of_synchronous_standby_names() {
    let tmp = TempDir::new("sync-states");
    let primary = Node::primary(tmp.path().join("primary"), &[]);
    primary.sql("create table t (id int primary key)");
    let s1 = Node::standby(&primary, tmp.path().join("s1"), "standby1", &[]);
    let _s2 = Node::standby(&primary, tmp.path().join("s2"), "standby2", &[]);
    let _s3 = Node::standby(&primary, tmp.path().join("s3"), "standby3", &[]);
    primary.wait_for("select count(*) from pg_stat_replication where state = 'streaming'", "3", 15);

    // Without synchronous_standby_names every standby is async.
    expect_states(&primary, None, &["standby1|0|async", "standby2|0|async", "standby3|0|async"]);
    expect_states(
        &primary,
        Some("standby1,standby2"),
        &["standby1|1|sync", "standby2|2|potential", "standby3|0|async"],
    );
    expect_states(&primary, Some("*"), &["standby1|1|sync", "standby2|1|potential", "standby3|1|potential"]);
    expect_states(
        &primary,
        Some("2(standby1,standby2,standby3)"),
        &["standby1|1|sync", "standby2|2|sync", "standby3|3|potential"],
    );
    expect_states(
        &primary,
        Some("6(standby4,standby0,standby3,standby2)"),
        &["standby1|0|async", "standby2|4|sync", "standby3|3|sync"],
    );
    expect_states(
        &primary,
        Some("2(standby1,*,standby2)"),
        &["standby1|1|sync", "standby2|2|sync", "standby3|2|potential"],
    );
    expect_states(&primary, Some("2(*)"), &["standby1|1|sync", "standby2|1|sync", "standby3|1|potential"]);
    expect_states(
        &primary,
        Some("FIRST 2 (standby1, standby2)"),
        &["standby1|1|sync", "standby2|2|sync", "standby3|0|async"],
    );
    expect_states(
        &primary,
        Some("ANY 2(standby1, standby2)"),
        &["standby1|1|quorum", "standby2|1|quorum", "standby3|0|async"],
    );
    expect_states(&primary, Some("ANY 2(*)"), &["standby1|1|quorum", "standby2|1|quorum", "standby3|1|quorum"]);

    // A potential standby takes over when the sync one goes away.
    set_names(&primary, "FIRST 1 (standby1, standby2, standby3)");
    expect_states(&primary, None, &["standby1|1|sync", "standby2|2|potential", "standby3|3|potential"]);
    assert!(s1.stop("fast"));
    expect_states(&primary, None, &["standby2|2|sync", "standby3|3|potential"]);
    assert_eq!(primary.sql("show synchronous_standby_names"), "FIRST 1 (standby1, standby2, standby3)");
    // Bad values are refused and change nothing.
    let err = primary.try_sql("alter system set synchronous_standby_names = 'ANY s1'").unwrap_err();
    assert!(err.contains("invalid value for parameter \"synchronous_standby_names\""), "{err}");
    let err = primary.try_sql("set synchronous_standby_names = '*'").unwrap_err();
    assert!(err.contains("cannot be changed now"), "{err}");
    let err = primary.try_sql("alter system set no_such_setting = 1").unwrap_err();
    assert!(err.contains("unrecognized configuration parameter"), "{err}");
}

/// Runs an INSERT in its own psql process at a `synchronous_commit` level; returns the child.
fn spawn_insert(node: &Node, level: &str, id: i64) -> std::process::Child {
    std::process::Command::new("psql")
        .args(["-h", "127.0.0.1", "-p", &node.port.to_string(), "-U", "postgres", "-X", "-At"])
        .args(["-v", "ON_ERROR_STOP=1", "-c", &format!("set synchronous_commit = {level}")])
        .args(["-c", &format!("insert into t values ({id})"), "postgres"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run psql")
}

/// Times one INSERT at a level; returns the time and psql's stderr (warnings).
fn timed_insert(node: &Node, level: &str, id: i64) -> (Duration, String) {
    let started = Instant::now();
    let out = spawn_insert(node, level, id).wait_with_output().expect("psql");
    assert!(out.status.success(), "insert {id} at {level}: {}", String::from_utf8_lossy(&out.stderr));
    (started.elapsed(), String::from_utf8_lossy(&out.stderr).to_string())
}

#[test]
fn commits_wait_for_the_standby_at_each_level() {
    let tmp = TempDir::new("sync-levels");
    let primary = Node::primary(tmp.path().join("primary"), &[]);
    primary.sql("create table t (id int primary key)");
    let standby = Node::standby(&primary, tmp.path().join("standby"), "mirror", &[]);
    set_names(&primary, "*");
    primary.wait_for(STATES, "mirror|1|sync", 15);

    // remote_apply: the row is on the standby when the commit returns.
    for id in 1..=20 {
        timed_insert(&primary, "remote_apply", id);
        assert_eq!(standby.sql(&format!("select count(*) from t where id = {id}")), "1", "row {id} not applied");
    }

    // A stopped standby blocks commits under `on`; `local` does not wait for it.
    standby.signal(libc::SIGSTOP);
    let (took, _) = timed_insert(&primary, "local", 100);
    assert!(took < Duration::from_secs(2), "local commit took {took:?}");
    let mut waiting = spawn_insert(&primary, "on", 101);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(waiting.try_wait().unwrap().is_none(), "commit under `on` returned while the standby was stopped");
    // Visibility follows acknowledgement: no other session sees the waiting commit.
    assert_eq!(primary.sql("select count(*) from t where id = 101"), "0");
    // pg_stat_activity shows why: the commit waits for the synchronous standby; the WAL sender is listed.
    let want = "IPC|SyncRep|active";
    let got = primary.wait_for(
        "select wait_event_type, wait_event, state from pg_stat_activity where query = 'insert into t values (101)'",
        want,
        10,
    );
    assert_eq!(got, want);
    assert_eq!(
        primary.sql(
            "select usename, application_name, datname is null, query like 'START_REPLICATION%' \
             from pg_stat_activity where backend_type = 'walsender'"
        ),
        "tandem|mirror|t|t"
    );

    // A cancelled wait says the transaction is in the WAL and becomes visible once the standby confirms.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let cancel_msg = rt.block_on(async {
        let (client, conn) = tokio_postgres::connect(
            &format!("host=127.0.0.1 port={} user=postgres dbname=postgres", primary.port),
            tokio_postgres::NoTls,
        )
        .await
        .unwrap();
        tokio::spawn(conn);
        let token = client.cancel_token();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let _ = token.cancel_query(tokio_postgres::NoTls).await;
        });
        let err = client.simple_query("insert into t values (102)").await.unwrap_err();
        let db = err.as_db_error().expect("a server error").clone();
        format!("{}|{}|{}", db.code().code(), db.message(), db.detail().unwrap_or(""))
    });
    assert!(cancel_msg.starts_with("57014|canceling wait for synchronous replication"), "{cancel_msg}");
    assert!(
        cancel_msg.contains("in the WAL and becomes visible once the synchronous standby confirms"),
        "{cancel_msg}"
    );
    assert_eq!(primary.sql("select count(*) from t where id in (101, 102)"), "0");

    standby.signal(libc::SIGCONT);
    let out = waiting.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(primary.wait_for("select count(*) from t where id in (101, 102)", "2", 10), "2");

    // synchronous_standby_timeout: after it, commits fall back to asynchronous with a WARNING and a flag.
    primary.sql("alter system set synchronous_standby_timeout = '1s'");
    primary.sql("select pg_reload_conf()");
    standby.signal(libc::SIGSTOP);
    let (took, warning) = timed_insert(&primary, "on", 200);
    assert!(took >= Duration::from_millis(900), "fell back after {took:?}, before the timeout");
    assert!(warning.contains("WARNING") && warning.contains("synchronous_standby_timeout"), "{warning}");
    assert_eq!(primary.sql("select sync_fallback from pg_stat_replication"), "t");
    assert!(primary.log().contains("acknowledging commits without them"), "{}", primary.log());
    let status = std::process::Command::new(common::tandem_bin())
        .args(["status", "-p", &primary.port.to_string()])
        .output()
        .unwrap();
    let status = String::from_utf8_lossy(&status.stdout).to_string();
    assert!(status.contains("SYNC FALLBACK"), "{status}");
    let (took, _) = timed_insert(&primary, "on", 201);
    assert!(took < Duration::from_secs(2), "degraded commit took {took:?}");
    standby.signal(libc::SIGCONT);
    assert_eq!(primary.wait_for("select tandem_sync_fallback()", "f", 10), "f");
    assert!(primary.log().contains("commits wait for them again"));
    primary.sql("alter system reset synchronous_standby_timeout");
    primary.sql("select pg_reload_conf()");

    // remote_write returns once the standby wrote the WAL, before its (slow) fdatasync; `on` waits for it.
    assert!(standby.stop("fast"));
    standby.start(&[("TANDEM_FAILPOINTS", "walreceiver_fsync=sleep(1000)")]);
    primary.wait_for("select state from pg_stat_replication", "streaming", 15);
    std::thread::sleep(Duration::from_millis(2500));
    let (write_took, _) = timed_insert(&primary, "remote_write", 300);
    std::thread::sleep(Duration::from_millis(1500));
    let (flush_took, _) = timed_insert(&primary, "on", 301);
    assert!(write_took < Duration::from_millis(700), "remote_write took {write_took:?}");
    assert!(flush_took >= Duration::from_millis(900), "on took {flush_took:?} with a 1 s standby fdatasync");
}

#[test]
fn a_standby_far_behind_does_not_block_commits_until_within_one_segment() {
    let tmp = TempDir::new("sync-catchup");
    let primary = Node::primary(tmp.path().join("primary"), &["--wal-segment-size", "1MB"]);
    primary.sql("create table t (id int primary key, pad text)");
    let standby = Node::standby(&primary, tmp.path().join("standby"), "mirror", &[]);
    set_names(&primary, "mirror");
    assert!(standby.stop("fast"));
    // With the standby gone, `local` commits (which do not wait for it) build up 6 MB of WAL.
    for batch in 0..6 {
        primary.sql(&format!(
            "set synchronous_commit = local; insert into t select {batch} * 100000 + g + 1, repeat('x', 900) \
             from generate_series(0, 999) g"
        ));
    }
    // The standby comes back slowly (each 128 kB write stalls 150 ms): far behind, it holds nothing back.
    standby.start(&[("TANDEM_FAILPOINTS", "walreceiver_write=sleep(150)")]);
    primary.wait_for("select state from pg_stat_replication", "catchup", 15);
    let started = Instant::now();
    let (took, _) = timed_insert(&primary, "on", 1_000_000);
    assert!(took < Duration::from_secs(2), "commit waited {took:?} for a standby in catch-up");
    let state = primary.sql("select state, sync_state from pg_stat_replication");
    assert!(started.elapsed() < Duration::from_secs(3) && state.starts_with("catchup"), "{state}");
    // Once it has caught up, commits wait for it again.
    primary.wait_for("select state from pg_stat_replication", "streaming", 60);
    primary.wait_for(STATES, "mirror|1|sync", 10);
    standby.signal(libc::SIGSTOP);
    let mut waiting = spawn_insert(&primary, "on", 1_000_001);
    std::thread::sleep(Duration::from_millis(1000));
    assert!(waiting.try_wait().unwrap().is_none(), "commit did not wait for the caught-up standby");
    standby.signal(libc::SIGCONT);
    assert!(waiting.wait().unwrap().success());
}
